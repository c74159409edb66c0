//! The `/events` stream: newline-delimited JSON objects inside the HTTP body, and the few
//! fields of each that the daemon acts on. Sans-I/O like [`super::http`].
//!
//! Engines up to API 1.41 send both the old (`status`, `id`, `from`) and the new (`Type`,
//! `Action`, `Actor`) fields; API 1.52 sends only the new ones. We read the new ones and fall
//! back to the old only when the new are absent.

use serde::Deserialize;
use std::collections::HashMap;
use std::fmt;

/// Largest single event accepted. An event carries every label of its container, so it can be
/// large, but not this large.
pub const MAX_EVENT: usize = 256 * 1024;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    TooLarge,
    Json(String),
    /// A container event without a container ID.
    NoId,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::TooLarge => write!(f, "event larger than {} KiB", MAX_EVENT / 1024),
            Error::Json(e) => write!(f, "invalid event JSON: {e}"),
            Error::NoId => f.write_str("container event without an ID"),
        }
    }
}

impl std::error::Error for Error {}

/// Splits body bytes into lines, one reusable buffer, bounded by [`MAX_EVENT`].
#[derive(Debug, Default)]
pub struct Lines {
    buf: Vec<u8>,
    complete: bool,
}

impl Lines {
    pub fn new() -> Self {
        Self::default()
    }

    /// Consumes bytes up to and including the next `\n`. Returns the count used and whether a
    /// whole line is now available from [`line`](Self::line). The next call starts a new line.
    pub fn feed(&mut self, data: &[u8]) -> Result<(usize, bool), Error> {
        if self.complete {
            self.buf.clear();
            self.complete = false;
        }
        let (used, complete) = match data.iter().position(|&b| b == b'\n') {
            Some(p) => (p + 1, true),
            None => (data.len(), false),
        };
        let body = &data[..if complete { used - 1 } else { used }];
        if self.buf.len() + body.len() > MAX_EVENT {
            self.buf.clear();
            return Err(Error::TooLarge);
        }
        self.buf.extend_from_slice(body);
        self.complete = complete;
        Ok((used, complete))
    }

    /// The current complete line, without its `\n` (and without a trailing `\r`).
    pub fn line(&self) -> &[u8] {
        self.buf.strip_suffix(b"\r").unwrap_or(&self.buf)
    }

    /// Bytes of an unfinished line (a stream that ends here ended mid-event).
    pub fn pending(&self) -> usize {
        if self.complete {
            0
        } else {
            self.buf.len()
        }
    }
}

/// What happened to a container, as far as registration cares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Start,
    Die,
    /// The container is gone (`destroy`; Podman says `remove`).
    Destroy,
    /// Anything else the engine sent; ignored by the worker.
    Other(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub action: Action,
    pub id: String,
    /// Nanoseconds since the epoch, as the engine stamped it (0 when the engine gave none).
    pub time_nano: i64,
    /// `exitCode` attribute of a `die`.
    pub exit_code: Option<i64>,
}

#[derive(Deserialize)]
struct Raw {
    #[serde(rename = "Type")]
    typ: Option<String>,
    #[serde(rename = "Action")]
    action: Option<String>,
    #[serde(rename = "Actor")]
    actor: Option<RawActor>,
    status: Option<String>,
    id: Option<String>,
    time: Option<i64>,
    #[serde(rename = "timeNano")]
    time_nano: Option<i64>,
}

#[derive(Deserialize)]
struct RawActor {
    #[serde(rename = "ID")]
    id: Option<String>,
    #[serde(rename = "Attributes")]
    attributes: Option<HashMap<String, String>>,
}

/// Decodes one event line. Returns `Ok(None)` for events that are not about containers
/// (the engine is asked to filter, but the daemon does not rely on it).
pub fn decode(line: &[u8]) -> Result<Option<Event>, Error> {
    let raw: Raw = serde_json::from_slice(line).map_err(|e| Error::Json(e.to_string()))?;
    if raw.typ.as_deref().is_some_and(|t| t != "container") {
        return Ok(None);
    }
    let (actor_id, attributes) = match raw.actor {
        Some(a) => (a.id, a.attributes.unwrap_or_default()),
        None => (None, HashMap::new()),
    };
    let id = actor_id
        .filter(|s| !s.is_empty())
        .or(raw.id)
        .filter(|s| !s.is_empty())
        .ok_or(Error::NoId)?;
    let action = raw.action.or(raw.status).unwrap_or_default();
    let action = match action.as_str() {
        "start" => Action::Start,
        "die" => Action::Die,
        "destroy" | "remove" => Action::Destroy,
        _ => Action::Other(action),
    };
    let time_nano = raw
        .time_nano
        .or_else(|| raw.time.and_then(|t| t.checked_mul(1_000_000_000)))
        .unwrap_or(0);
    let exit_code = attributes
        .get("exitCode")
        .and_then(|c| c.trim().parse().ok());
    Ok(Some(Event {
        action,
        id,
        time_nano,
        exit_code,
    }))
}

/// `since=` value for a nanosecond timestamp: `seconds.nanoseconds`.
pub fn since_param(time_nano: i64) -> String {
    format!(
        "{}.{:09}",
        time_nano.div_euclid(1_000_000_000),
        time_nano.rem_euclid(1_000_000_000)
    )
}
