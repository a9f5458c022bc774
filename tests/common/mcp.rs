//! MCP helpers shared by the MCP tests: reading a cipc tool's answer and
//! calling a tool with rmcp's client.

use rmcp::model::{CallToolRequestParams, CallToolResult};
use rmcp::service::{RunningService, Service};
use rmcp::RoleClient;
use serde_json::Value;

/// A tool's answer: (sentence, JSON, isError). cipc answers a sentence for
/// the model, then the JSON of the broker's answer; a refusal's JSON is the
/// REST error body `{"error": {"code", "reason", "message"}}`, also carried
/// as structured content (checked equal here), so tests branch on
/// [`reason`] rather than on the sentence.
pub fn parse(r: &CallToolResult) -> (String, Value, bool) {
    let text = |i: usize| {
        r.content
            .get(i)
            .and_then(|c| c.as_text())
            .map(|t| t.text.clone())
            .unwrap_or_default()
    };
    let json = serde_json::from_str(&text(1)).unwrap_or(Value::Null);
    let err = r.is_error == Some(true);
    if err {
        assert_eq!(
            r.structured_content.as_ref(),
            Some(&json),
            "a refusal carries its error body as structured content"
        );
        assert_eq!(
            json["error"]["message"],
            text(0),
            "the body's message is the sentence"
        );
    }
    (text(0), json, err)
}

/// The `reason` of a refusal's JSON (`error.reason`), or `""` for an answer
/// that is not a refusal.
pub fn reason(json: &Value) -> &str {
    json["error"]["reason"].as_str().unwrap_or_default()
}

/// Calls `tool` with `args` (a JSON object) and reads its answer.
pub async fn call<S: Service<RoleClient>>(
    client: &RunningService<RoleClient, S>,
    tool: &str,
    args: Value,
) -> (String, Value, bool) {
    let mut p = CallToolRequestParams::new(tool.to_string());
    if let Value::Object(m) = args {
        p = p.with_arguments(m);
    }
    let r = client.call_tool(p).await.expect("tools/call");
    parse(&r)
}
