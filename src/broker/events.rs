//! The dashboard's event stream: every change, numbered, with a short history
//! so a reconnecting reader resumes with `Last-Event-ID`.

use crate::store::Progress;
use serde_json::Value;
use std::collections::VecDeque;
use std::sync::Arc;
use tokio::sync::broadcast;

/// One change, as sent on `GET /events`.
#[derive(Debug, Clone)]
pub struct Event {
    /// Increases by one per event and never repeats for a data dir (it
    /// starts from the clock: `first_event_id`); the SSE `id:`.
    pub id: u64,
    /// `peer`, `command`, `message`, `signal`, `question`, `lease` or `reset`.
    pub kind: &'static str,
    /// The changed object, as JSON text: written once, sent to every reader.
    pub data: String,
    /// The store position of the change: the event may be shown once
    /// everything up to it is saved ([`super::Broker::settled_through`]).
    pub lsn: u64,
}

/// A reader's view of the stream: what it missed, then the live feed.
pub struct EventSubscription {
    /// Events after the reader's `Last-Event-ID` still in the history.
    pub missed: Vec<Arc<Event>>,
    /// True when some events the reader asked for were already forgotten.
    pub gap: bool,
    /// New events as they happen.
    pub live: broadcast::Receiver<Arc<Event>>,
}

/// Where a shared store takes the events of a turn, to ship them to the
/// other nodes with its changes.
pub(super) type Relay = Arc<dyn Fn(&'static str, &Value) + Send + Sync>;

pub(super) struct EventLog {
    progress: Arc<Progress>,
    relay: Option<Relay>,
    next_id: u64,
    history: VecDeque<Arc<Event>>,
    capacity: usize,
    /// Bytes of `data` in `history` (at most [`HISTORY_BYTES`]).
    history_bytes: usize,
    tx: broadcast::Sender<Arc<Event>>,
}

impl Default for EventLog {
    fn default() -> Self {
        EventLog::new(1024, Arc::new(Progress::default()))
    }
}

/// Where a broker starts numbering events: the wall clock in microseconds
/// (milliseconds times 1000). A broker would have to emit over a million
/// events a second, for its whole life, to reach the id its successor starts
/// from, so an id never repeats across restarts of one data dir, nor between
/// nodes; a reader that resumes with an id from before a restart finds it
/// older than the kept history and is told to `resync`. It stays below 2^53
/// (a JavaScript number, the dashboard's) until the year 2255.
fn first_event_id() -> u64 {
    let millis = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(0));
    millis.saturating_mul(1000).max(1)
}

/// The most event data the history keeps, whatever the number of events: a
/// few large messages must not make the history hold gigabytes. A reader
/// resuming from before the oldest kept event gets `resync`.
const HISTORY_BYTES: usize = 32 * 1024 * 1024;

impl EventLog {
    pub(super) fn new(capacity: usize, progress: Arc<Progress>) -> Self {
        let (tx, _) = broadcast::channel(capacity.max(16));
        EventLog {
            progress,
            relay: None,
            next_id: first_event_id(),
            history: VecDeque::new(),
            capacity: capacity.max(1),
            history_bytes: 0,
            tx,
        }
    }

    /// With several nodes: every event is also handed to `relay`. (Ids start
    /// from the clock on every node, so an id handed out by another node
    /// reads as a gap and the reader refetches instead of resuming at the
    /// wrong place.)
    pub(super) fn shared(mut self, relay: Relay) -> Self {
        self.relay = Some(relay);
        self
    }

    /// Records a change made here (shipped to the other nodes, if any).
    /// `data` is written as JSON text once, straight from the object: no
    /// `Value` is built unless another node needs one.
    pub(super) fn push<T: serde::Serialize + ?Sized>(&mut self, kind: &'static str, data: &T) {
        let text = match &self.relay {
            Some(relay) => {
                let value = serde_json::to_value(data).unwrap_or_default();
                relay(kind, &value);
                value.to_string()
            }
            None => serde_json::to_string(data).unwrap_or_else(|_| "null".to_string()),
        };
        self.push_text(kind, text);
    }

    /// Records an event another node made.
    pub(super) fn replay(&mut self, kind: &str, data: Value) {
        let kind = match kind {
            "peer" => "peer",
            "command" => "command",
            "message" => "message",
            "signal" => "signal",
            "question" => "question",
            "reset" => "reset",
            _ => "resync",
        };
        self.push_local(kind, data);
    }

    /// Records an event for this node's readers only.
    pub(super) fn push_local(&mut self, kind: &'static str, data: Value) {
        self.push_text(kind, data.to_string());
    }

    /// Records an event whose data is already JSON text.
    fn push_text(&mut self, kind: &'static str, data: String) {
        let ev = Arc::new(Event {
            id: self.next_id,
            kind,
            data,
            lsn: self.progress.queued(),
        });
        self.next_id += 1;
        self.history_bytes += ev.data.len();
        self.history.push_back(ev.clone());
        while self.history.len() > self.capacity
            || (self.history_bytes > HISTORY_BYTES && self.history.len() > 1)
        {
            let Some(old) = self.history.pop_front() else {
                break;
            };
            self.history_bytes -= old.data.len();
        }
        let _ = self.tx.send(ev);
    }

    pub(super) fn subscribe(&self, last_event_id: Option<u64>) -> EventSubscription {
        let live = self.tx.subscribe();
        let Some(last) = last_event_id else {
            return EventSubscription {
                missed: Vec::new(),
                gap: false,
                live,
            };
        };
        if last == 0 {
            // `since=0`: everything the broker still keeps, with no gap.
            return EventSubscription {
                missed: self.history.iter().cloned().collect(),
                gap: false,
                live,
            };
        }
        let oldest = self.history.front().map_or(self.next_id, |e| e.id);
        // An id from the future was handed out by another broker (another
        // node, or a clock set back): the reader must refetch, then follow
        // from here.
        let from_elsewhere = last >= self.next_id;
        let missed: Vec<_> = if from_elsewhere {
            Vec::new()
        } else {
            self.history
                .iter()
                .filter(|e| e.id > last)
                .cloned()
                .collect()
        };
        EventSubscription {
            gap: last + 1 < oldest || from_elsewhere,
            missed,
            live,
        }
    }
}

impl super::Broker {
    /// Subscribes to the event stream, resuming after `last_event_id` when given.
    pub fn subscribe_events(&self, last_event_id: Option<u64>) -> EventSubscription {
        self.lock().events.subscribe(last_event_id)
    }
}
