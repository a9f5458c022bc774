//! MCP helpers shared by the MCP tests: reading a cipc tool's answer and
//! calling a tool with rmcp's client.

use rmcp::model::{CallToolRequestParams, CallToolResult};
use rmcp::service::{RunningService, Service};
use rmcp::RoleClient;
use serde_json::Value;

/// A tool's answer: (sentence, JSON, isError). cipc answers a sentence for
/// the model, then the JSON of the broker's answer.
pub fn parse(r: &CallToolResult) -> (String, Value, bool) {
    let text = |i: usize| {
        r.content
            .get(i)
            .and_then(|c| c.as_text())
            .map(|t| t.text.clone())
            .unwrap_or_default()
    };
    let json = serde_json::from_str(&text(1)).unwrap_or(Value::Null);
    (text(0), json, r.is_error == Some(true))
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
