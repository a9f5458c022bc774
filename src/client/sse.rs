//! A Server-Sent Events parser, kept apart from the network so it can be
//! tested on its own: bytes go in as they arrive, whole events come out.
//! It follows the parts of the SSE format the broker uses: `id:`, `event:`,
//! `data:` (several lines joined with `\n`), `:` comments (keep-alives) and
//! blank lines ending an event, with `\n` or `\r\n` line ends.

/// One Server-Sent Event.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SseEvent {
    /// The `id:` field, when sent.
    pub id: Option<String>,
    /// The `event:` field ("message" when absent).
    pub event: String,
    /// The `data:` lines joined with newlines.
    pub data: String,
}

/// Turns a byte stream into events.
#[derive(Debug, Default)]
pub struct SseParser {
    buf: Vec<u8>,
    ev: SseEvent,
    has_data: bool,
}

impl SseParser {
    /// Adds bytes as they arrived (any split, even inside a line).
    pub fn feed(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// The next complete event in what was fed, if there is one. An event
    /// with no `data:` line is dropped, as browsers do.
    pub fn next_event(&mut self) -> Option<SseEvent> {
        while let Some(pos) = self.buf.iter().position(|&b| b == b'\n') {
            let raw: Vec<u8> = self.buf.drain(..=pos).collect();
            let line = String::from_utf8_lossy(&raw);
            let line = line.trim_end_matches(['\n', '\r']);
            if line.is_empty() {
                let ev = std::mem::take(&mut self.ev);
                if std::mem::take(&mut self.has_data) {
                    let mut ev = ev;
                    if ev.event.is_empty() {
                        ev.event = "message".into();
                    }
                    return Some(ev);
                }
                continue;
            }
            if line.starts_with(':') {
                continue;
            }
            let (field, value) = match line.split_once(':') {
                Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
                None => (line, ""),
            };
            match field {
                "id" => self.ev.id = Some(value.to_string()),
                "event" => self.ev.event = value.to_string(),
                "data" => {
                    if self.has_data {
                        self.ev.data.push('\n');
                    }
                    self.ev.data.push_str(value);
                    self.has_data = true;
                }
                _ => {}
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(input: &[&[u8]]) -> Vec<SseEvent> {
        let mut p = SseParser::default();
        let mut out = Vec::new();
        for chunk in input {
            p.feed(chunk);
            while let Some(ev) = p.next_event() {
                out.push(ev);
            }
        }
        out
    }

    #[test]
    fn events_with_ids_names_and_multi_line_data() {
        let got = all(&[b"id: 7\nevent: message\ndata: {\"a\":1}\n\ndata: one\ndata: two\n\n"]);
        assert_eq!(
            got,
            vec![
                SseEvent {
                    id: Some("7".into()),
                    event: "message".into(),
                    data: "{\"a\":1}".into()
                },
                SseEvent {
                    id: None,
                    event: "message".into(),
                    data: "one\ntwo".into()
                },
            ]
        );
    }

    #[test]
    fn any_split_crlf_and_keep_alive_comments() {
        let got = all(&[
            b"id: 1\r\nev",
            b"ent: peer\r\n: keep-alive\r\nda",
            b"ta: x\r",
            b"\n\r\n",
        ]);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].event, "peer");
        assert_eq!(got[0].data, "x");
        assert_eq!(got[0].id.as_deref(), Some("1"));
    }

    #[test]
    fn an_event_without_data_and_an_unfinished_one_yield_nothing() {
        assert!(all(&[b"event: resync\n\n"]).is_empty());
        assert!(all(&[b"data: half"]).is_empty());
        let got = all(&[b"event: ping\n\ndata: after\n\n"]);
        assert_eq!(got[0].event, "message", "fields do not leak across events");
    }
}
