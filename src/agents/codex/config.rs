//! What `cipc codex setup` adds to a Codex `config.toml`, and how it is
//! taken out again: the `[mcp_servers.cipc]` entry and the trust entries of
//! cipc's hooks (`[hooks.state."<key>"]`). Pure functions on a
//! [`toml_edit::DocumentMut`], so comments, order and everything that is
//! not cipc's stay exactly as the person wrote them.

use super::hooks::Trust;
use crate::agents::claude::settings::SERVER_NAME;
use toml_edit::{value, DocumentMut, InlineTable, Item, Table};

/// Why a `config.toml` cannot take cipc's entries: part of it is not the
/// shape Codex documents. Nothing is written.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file is not TOML.
    #[error("it is not valid TOML ({0}); fix it by hand first, nothing was changed")]
    NotToml(String),
    /// A key that must be a table is something else.
    #[error("`{0}` is not a table; fix it by hand, then run setup again")]
    NotTable(String),
}

/// How the MCP entry sends the broker's token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenHeader {
    /// No token.
    None,
    /// `Authorization: Bearer` from this environment variable when Codex
    /// starts (a file the team shares never holds the secret).
    FromEnv(String),
    /// The token itself, in a file that is only this user's.
    Literal(String),
}

/// How long Codex lets one cipc tool call run (its default is 60 s): the
/// longest wait a cipc tool accepts, and a margin.
const TOOL_TIMEOUT_SECS: i64 = (crate::api::MAX_LONG_POLL_MS / 1000) as i64 + 30;

/// Parses a `config.toml` (blank: empty).
pub fn parse(text: &str) -> Result<DocumentMut, ConfigError> {
    text.parse::<DocumentMut>()
        .map_err(|e| ConfigError::NotToml(e.to_string().trim().to_string()))
}

/// Sets `[mcp_servers.cipc]` to the broker at `base` (replacing an older
/// cipc entry), keeping every other server.
pub fn add_mcp(doc: &mut DocumentMut, base: &str, token: &TokenHeader) -> Result<(), ConfigError> {
    let servers = table_at(doc.as_table_mut(), "mcp_servers")?;
    let mut entry = Table::new();
    entry["url"] = value(format!("{}/mcp", base.trim_end_matches('/')));
    // Codex asks before every MCP tool call that is not read-only, and a
    // headless `codex exec` cannot ask at all: cipc's tools are how the
    // session works with others, so they run without asking.
    entry["default_tools_approval_mode"] = value("approve");
    entry["tool_timeout_sec"] = value(TOOL_TIMEOUT_SECS);
    match token {
        TokenHeader::None => {}
        TokenHeader::FromEnv(var) => entry["bearer_token_env_var"] = value(var.as_str()),
        TokenHeader::Literal(t) => {
            let mut headers = InlineTable::new();
            headers.insert("Authorization", format!("Bearer {t}").into());
            entry["http_headers"] = value(headers);
        }
    }
    servers.insert(SERVER_NAME, Item::Table(entry));
    Ok(())
}

/// Takes `[mcp_servers.cipc]` out; an `mcp_servers` table left empty goes too.
pub fn remove_mcp(doc: &mut DocumentMut) -> bool {
    let Some(servers) = doc.get_mut("mcp_servers").and_then(Item::as_table_like_mut) else {
        return false;
    };
    let removed = servers.remove(SERVER_NAME).is_some();
    if servers.is_empty() {
        doc.remove("mcp_servers");
    }
    removed
}

/// Writes a trust entry for each of cipc's hooks.
pub fn add_trust(doc: &mut DocumentMut, trust: &[Trust]) -> Result<(), ConfigError> {
    if trust.is_empty() {
        return Ok(());
    }
    let hooks = table_at(doc.as_table_mut(), "hooks")?;
    let state = table_at(hooks, "state")?;
    for t in trust {
        let mut entry = Table::new();
        entry["trusted_hash"] = value(t.hash.as_str());
        state.insert(&t.key, Item::Table(entry));
    }
    Ok(())
}

/// Takes out the trust entries under `keys`; tables left empty go too.
pub fn remove_trust(doc: &mut DocumentMut, keys: &[String]) -> usize {
    let Some(hooks) = doc.get_mut("hooks").and_then(Item::as_table_like_mut) else {
        return 0;
    };
    let mut removed = 0;
    if let Some(state) = hooks.get_mut("state").and_then(Item::as_table_like_mut) {
        for k in keys {
            removed += usize::from(state.remove(k).is_some());
        }
        if state.is_empty() {
            hooks.remove("state");
        }
    }
    if hooks.is_empty() {
        doc.remove("hooks");
    }
    removed
}

/// The table `key` inside `parent`, created (implicit, so no empty
/// `[header]` is written) when missing.
fn table_at<'a>(parent: &'a mut Table, key: &str) -> Result<&'a mut Table, ConfigError> {
    let item = parent.entry(key).or_insert_with(|| {
        let mut t = Table::new();
        t.set_implicit(true);
        Item::Table(t)
    });
    item.as_table_mut()
        .ok_or_else(|| ConfigError::NotTable(key.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINE: &str =
        "# my settings\nmodel = \"gpt-5.5\"\n\n[mcp_servers.docs]\ncommand = \"docs-mcp\"\n";

    #[test]
    fn the_mcp_entry_is_added_beside_what_is_there_and_taken_out_exactly() {
        let mut doc = parse(MINE).expect("toml");
        add_mcp(
            &mut doc,
            "http://127.0.0.1:7777/",
            &TokenHeader::FromEnv("CIPC_TOKEN".into()),
        )
        .expect("add");
        let text = doc.to_string();
        assert!(
            text.starts_with("# my settings\nmodel = \"gpt-5.5\""),
            "{text}"
        );
        assert!(
            text.contains("[mcp_servers.cipc]\nurl = \"http://127.0.0.1:7777/mcp\""),
            "{text}"
        );
        assert!(
            text.contains("bearer_token_env_var = \"CIPC_TOKEN\""),
            "{text}"
        );
        assert!(
            text.contains("default_tools_approval_mode = \"approve\""),
            "{text}"
        );
        // Twice is once.
        add_mcp(
            &mut doc,
            "http://127.0.0.1:7777/",
            &TokenHeader::FromEnv("CIPC_TOKEN".into()),
        )
        .expect("add");
        assert_eq!(doc.to_string(), text);
        assert!(remove_mcp(&mut doc));
        assert_eq!(doc.to_string(), MINE);
        assert!(!remove_mcp(&mut doc));
    }

    #[test]
    fn a_literal_token_is_sent_as_a_bearer_header() {
        let mut doc = parse("").expect("toml");
        add_mcp(
            &mut doc,
            "http://h:1",
            &TokenHeader::Literal("s3cret".into()),
        )
        .expect("add");
        assert!(
            doc.to_string()
                .contains("http_headers = { Authorization = \"Bearer s3cret\" }"),
            "{doc}"
        );
        remove_mcp(&mut doc);
        assert_eq!(doc.to_string().trim(), "");
    }

    #[test]
    fn trust_entries_are_written_and_only_they_are_removed() {
        let mut doc = parse("[hooks.state.\"/other:stop:0:0\"]\ntrusted_hash = \"sha256:ab\"\n")
            .expect("toml");
        let trust = [Trust {
            key: "/h/hooks.json:pre_tool_use:0:0".into(),
            hash: "sha256:cd".into(),
        }];
        add_trust(&mut doc, &trust).expect("add");
        let text = doc.to_string();
        assert!(
            text.contains(
                "[hooks.state.\"/h/hooks.json:pre_tool_use:0:0\"]\ntrusted_hash = \"sha256:cd\""
            ),
            "{text}"
        );
        assert_eq!(remove_trust(&mut doc, &[trust[0].key.clone()]), 1);
        assert!(doc.to_string().contains("/other:stop:0:0"));
        assert_eq!(remove_trust(&mut doc, &["/other:stop:0:0".into()]), 1);
        assert_eq!(doc.to_string().trim(), "");
    }

    #[test]
    fn a_config_that_is_not_toml_or_has_the_wrong_shape_is_refused() {
        assert!(matches!(parse("model = "), Err(ConfigError::NotToml(_))));
        let mut doc = parse("mcp_servers = 3\n").expect("toml");
        assert!(matches!(
            add_mcp(&mut doc, "http://h:1", &TokenHeader::None),
            Err(ConfigError::NotTable(_))
        ));
    }
}
