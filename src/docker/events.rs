//! The `/events` stream: newline-delimited JSON objects inside the HTTP body, and the few
//! fields of each that the daemon acts on. Sans-I/O like [`super::http`].
//!
//! Engines up to API 1.41 send both the old (`status`, `id`, `from`) and the new (`Type`,
//! `Action`, `Actor`) fields; API 1.52 sends only the new ones. We read the new ones and fall
//! back to the old only when the new are absent.

use serde::Deserialize;
use std::borrow::Cow;
use std::fmt;

use super::http::{self, Output, ResponseDecoder};
use crate::backend::Health;

/// Largest single event accepted. An event carries every label of its container, so it can be
/// large, but not this large.
pub const MAX_EVENT: usize = 256 * 1024;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    Http(http::Error),
    /// The engine refused the subscription.
    Status(u16),
    TooLarge,
    Json(String),
    /// A container event without a container ID.
    NoId,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Http(e) => write!(f, "bad HTTP from engine: {e}"),
            Error::Status(s) => write!(f, "event subscription refused: HTTP {s}"),
            Error::TooLarge => write!(f, "event larger than {} KiB", MAX_EVENT / 1024),
            Error::Json(e) => write!(f, "invalid event JSON: {e}"),
            Error::NoId => f.write_str("container event without an ID"),
        }
    }
}

impl std::error::Error for Error {}

impl From<http::Error> for Error {
    fn from(e: http::Error) -> Self {
        Error::Http(e)
    }
}

/// The whole `/events` response, sans I/O: feed it the bytes read from the socket, take events
/// out. One reusable buffer holds body bytes not yet split into events; it never holds more
/// than one unfinished event ([`MAX_EVENT`]) plus the last input.
#[derive(Debug, Default)]
pub struct EventDecoder {
    http: ResponseDecoder,
    buf: Vec<u8>,
    /// Start of the bytes in `buf` not yet returned as events.
    start: usize,
    /// Bytes after `start` already searched for a newline.
    scanned: usize,
    /// Bytes after the last newline in `buf`: the unfinished event, kept up to date as data
    /// comes so that checking its bound costs nothing per feed.
    tail: usize,
    ended: bool,
}

impl EventDecoder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Takes all of `input`: the response head is checked, body bytes are kept for
    /// [`next_event`](Self::next_event).
    pub fn feed(&mut self, mut input: &[u8]) -> Result<(), Error> {
        if self.start > 0 && self.start * 2 >= self.buf.len() {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        while !input.is_empty() {
            let (used, out) = self.http.feed(input)?;
            input = &input[used..];
            match out {
                Some(Output::Head(h)) if h.status != 200 => return Err(Error::Status(h.status)),
                Some(Output::Data(d)) => {
                    self.tail = match d.iter().rposition(|&b| b == b'\n') {
                        Some(nl) => d.len() - nl - 1,
                        None => self.tail + d.len(),
                    };
                    self.buf.extend_from_slice(d);
                }
                Some(Output::End) => self.ended = true,
                Some(Output::Head(_)) | None => {}
            }
            if self.ended {
                break;
            }
        }
        if let Some(Output::End) = self.http.feed(&[])?.1 {
            self.ended = true;
        }
        // An unfinished event may not grow past the bound.
        if self.tail > MAX_EVENT {
            return Err(Error::TooLarge);
        }
        Ok(())
    }

    /// The peer closed the connection: fine only at the end of the body and of an event.
    pub fn eof(&mut self) -> Result<(), Error> {
        self.http.eof()?;
        self.ended = true;
        if self.buf[self.start..]
            .iter()
            .any(|b| !b.is_ascii_whitespace())
        {
            return Err(Error::Http(http::Error::Truncated));
        }
        Ok(())
    }

    /// Part of an event (or of its HTTP framing) has arrived and the rest has not.
    pub fn mid_event(&self) -> bool {
        self.tail > 0 || self.http.mid_frame()
    }

    /// The body has ended (after the buffered events are taken).
    pub fn ended(&self) -> bool {
        self.ended
    }

    /// The next complete container event, or `None` until more input arrives.
    pub fn next_event(&mut self) -> Result<Option<Event>, Error> {
        loop {
            let from = self.start + self.scanned;
            let Some(nl) = self.buf[from..].iter().position(|&b| b == b'\n') else {
                self.scanned = self.buf.len() - self.start;
                return Ok(None);
            };
            let line_end = from + nl;
            let line = &self.buf[self.start..line_end];
            self.start = line_end + 1;
            self.scanned = 0;
            if line.len() > MAX_EVENT {
                return Err(Error::TooLarge);
            }
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            if let Some(ev) = decode(line)? {
                return Ok(Some(ev));
            }
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
    Pause,
    Unpause,
    /// A signal was sent (`docker stop`, `docker kill -s X`): its number, `None` when the
    /// engine gave none this daemon knows.
    Kill(Option<u8>),
    /// A HEALTHCHECK result changed: Docker's `health_status: healthy`, or Podman's
    /// `health_status` with the status in an attribute. `None` for a status not known here.
    Health(Option<Health>),
    /// Anything else the engine sent; ignored by the worker.
    Other(String),
}

/// What an event is about: a container, or (subscribed with `-swarm` only) a swarm service or
/// node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Container,
    /// `create`, `update`, `remove` of a swarm service; `id` is the service's ID.
    Service,
    /// A swarm node changed (joined, left, was promoted or demoted).
    Node,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub kind: Kind,
    pub action: Action,
    pub id: String,
    /// Nanoseconds since the epoch, as the engine stamped it (0 when the engine gave none).
    pub time_nano: i64,
    /// `exitCode` attribute of a `die`.
    pub exit_code: Option<i64>,
}

/// The fields read from an event. Strings are borrowed from the line where JSON has no escapes,
/// and of the actor's attributes (every label of the container) only `exitCode` is kept.
#[derive(Deserialize)]
struct Raw<'a> {
    #[serde(rename = "Type", borrow)]
    typ: Option<Text<'a>>,
    #[serde(rename = "Action", borrow)]
    action: Option<Text<'a>>,
    #[serde(rename = "Actor", borrow)]
    actor: Option<RawActor<'a>>,
    #[serde(borrow)]
    status: Option<Text<'a>>,
    #[serde(borrow)]
    id: Option<Text<'a>>,
    time: Option<i64>,
    #[serde(rename = "timeNano")]
    time_nano: Option<i64>,
}

#[derive(Deserialize)]
struct RawActor<'a> {
    #[serde(rename = "ID", borrow)]
    id: Option<Text<'a>>,
    #[serde(rename = "Attributes", borrow)]
    attributes: Option<RawAttributes<'a>>,
}

#[derive(Deserialize)]
struct RawAttributes<'a> {
    #[serde(rename = "exitCode", borrow)]
    exit_code: Option<Text<'a>>,
    #[serde(borrow)]
    health_status: Option<Text<'a>>,
    #[serde(borrow)]
    signal: Option<Text<'a>>,
}

/// A JSON string borrowed from the input unless it has escapes. (serde borrows a `Cow` only
/// as a direct field, not inside an `Option`; this newtype makes it direct.)
#[derive(Deserialize, Default)]
struct Text<'a>(#[serde(borrow)] Cow<'a, str>);

/// Decodes one event line. Returns `Ok(None)` for events that are not about containers,
/// swarm services or nodes (the engine is asked to filter, but the daemon does not rely on it).
pub fn decode(line: &[u8]) -> Result<Option<Event>, Error> {
    let raw: Raw = serde_json::from_slice(line).map_err(|e| Error::Json(e.to_string()))?;
    let kind = match raw.typ.as_ref().map(|t| &*t.0) {
        None | Some("container") => Kind::Container,
        Some("service") => Kind::Service,
        Some("node") => Kind::Node,
        Some(_) => return Ok(None),
    };
    let (actor_id, attributes) = match raw.actor {
        Some(a) => (a.id, a.attributes),
        None => (None, None),
    };
    let id = actor_id
        .filter(|s| !s.0.is_empty())
        .or(raw.id)
        .filter(|s| !s.0.is_empty())
        .ok_or(Error::NoId)?
        .0
        .into_owned();
    let (exit_code, health, signal) = match attributes {
        Some(a) => (a.exit_code, a.health_status, a.signal),
        None => (None, None, None),
    };
    let action = raw.action.or(raw.status).unwrap_or_default().0;
    let action = match &*action {
        "start" => Action::Start,
        "die" => Action::Die,
        "destroy" | "remove" => Action::Destroy,
        "pause" => Action::Pause,
        "unpause" => Action::Unpause,
        "kill" => Action::Kill(signal.and_then(|s| signal_number(&s.0))),
        // Podman: the status is an attribute.
        "health_status" => Action::Health(health.and_then(|h| Health::parse(&h.0))),
        a => match a.strip_prefix("health_status:") {
            Some(status) => Action::Health(Health::parse(status)),
            None => Action::Other(action.into_owned()),
        },
    };
    let time_nano = raw
        .time_nano
        .or_else(|| raw.time.and_then(|t| t.checked_mul(1_000_000_000)))
        .unwrap_or(0);
    let exit_code = exit_code.and_then(|c| c.0.trim().parse().ok());
    Ok(Some(Event {
        kind,
        action,
        id,
        time_nano,
        exit_code,
    }))
}

/// A signal as the engine names it (`15`, `SIGTERM`, `TERM`, `sigterm`) as its Linux number
/// (the same on x86 and ARM for these).
pub fn signal_number(s: &str) -> Option<u8> {
    let s = s.trim();
    if let Ok(n) = s.parse::<u8>() {
        return Some(n);
    }
    let upper = s.to_ascii_uppercase();
    let name = upper.strip_prefix("SIG").unwrap_or(&upper);
    const NAMES: &[(&str, u8)] = &[
        ("HUP", 1),
        ("INT", 2),
        ("QUIT", 3),
        ("ILL", 4),
        ("TRAP", 5),
        ("ABRT", 6),
        ("IOT", 6),
        ("BUS", 7),
        ("FPE", 8),
        ("KILL", 9),
        ("USR1", 10),
        ("SEGV", 11),
        ("USR2", 12),
        ("PIPE", 13),
        ("ALRM", 14),
        ("TERM", 15),
        ("STKFLT", 16),
        ("CHLD", 17),
        ("CONT", 18),
        ("STOP", 19),
        ("TSTP", 20),
        ("TTIN", 21),
        ("TTOU", 22),
        ("URG", 23),
        ("XCPU", 24),
        ("XFSZ", 25),
        ("VTALRM", 26),
        ("PROF", 27),
        ("WINCH", 28),
        ("IO", 29),
        ("POLL", 29),
        ("PWR", 30),
        ("SYS", 31),
    ];
    if let Some((_, n)) = NAMES.iter().find(|(n, _)| *n == name) {
        return Some(*n);
    }
    // SIGRTMIN is 34 under glibc and musl; RTMIN+n, RTMAX-n.
    if let Some(rest) = name.strip_prefix("RTMIN") {
        let off: u8 = rest.strip_prefix('+').map_or(Some(0), |n| n.parse().ok())?;
        return 34u8.checked_add(off).filter(|&n| n <= 64);
    }
    if let Some(rest) = name.strip_prefix("RTMAX") {
        let off: u8 = rest.strip_prefix('-').map_or(Some(0), |n| n.parse().ok())?;
        return 64u8.checked_sub(off).filter(|&n| n >= 34);
    }
    None
}

/// `since=` value for a nanosecond timestamp: `seconds.nanoseconds`.
pub fn since_param(time_nano: i64) -> String {
    format!(
        "{}.{:09}",
        time_nano.div_euclid(1_000_000_000),
        time_nano.rem_euclid(1_000_000_000)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Real bytes from Docker 20.10 (API 1.41): head and chunked body of a filtered `/events`
    /// subscription while three containers started, died and were removed.
    const CAPTURED: &[u8] = include_bytes!("../../tests/data/events-engine-20.10.raw");

    /// An API 1.52 event as the Engine API reference shows it: no `status`, `id` or `from`.
    const V152: &str = r#"{"Type":"container","Action":"start","Actor":{"ID":"ede54ee1afda366ab42f824e8a5ffd195155d853ceaec74a927f249ea270c743","Attributes":{"com.example.some-label":"some-label-value","image":"alpine:latest","name":"my-container"}},"scope":"local","time":1461943101,"timeNano":1461943101381709551}"#;

    fn summary(evs: &[Event]) -> Vec<(Action, Option<i64>)> {
        evs.iter()
            .map(|e| (e.action.clone(), e.exit_code))
            .collect()
    }

    /// Feeds `input` in pieces of `step` bytes and collects every event.
    fn events(input: &[u8], step: usize) -> Result<Vec<Event>, Error> {
        let mut d = EventDecoder::new();
        let mut out = Vec::new();
        for piece in input.chunks(step.max(1)) {
            d.feed(piece)?;
            while let Some(ev) = d.next_event()? {
                out.push(ev);
            }
        }
        Ok(out)
    }

    fn chunked(body: &str) -> Vec<u8> {
        let mut v = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
        for part in body.as_bytes().chunks(100) {
            v.extend_from_slice(format!("{:x}\r\n", part.len()).as_bytes());
            v.extend_from_slice(part);
            v.extend_from_slice(b"\r\n");
        }
        v
    }

    /// Real bytes from Docker 28.5.2 (API 1.51), with `kill` subscribed: start, pause,
    /// unpause, kill of HUP/TERM/KILL, die, a health status and destroy.
    const CAPTURED_28: &[u8] = include_bytes!("../../tests/data/events-engine-28.5.raw");

    /// Every event of `raw` decodes alike whether it arrives whole, in pieces of 1 to 63
    /// bytes, or cut in two anywhere.
    fn at_every_split(raw: &[u8]) -> Vec<Event> {
        let all = events(raw, raw.len()).unwrap();
        // Container IDs are 64 hex digits, swarm service and node IDs 25 characters.
        assert!(all.iter().all(|e| {
            let id_len = if e.kind == Kind::Container { 64 } else { 25 };
            e.id.len() == id_len && e.time_nano > 1_700_000_000_000_000_000
        }));
        assert!(all.windows(2).all(|w| w[0].time_nano <= w[1].time_nano));
        for step in 1..64 {
            assert_eq!(events(raw, step).unwrap(), all, "step {step}");
        }
        for cut in 0..=raw.len() {
            let mut d = EventDecoder::new();
            let mut got = Vec::new();
            for piece in [&raw[..cut], &raw[cut..]] {
                d.feed(piece).unwrap();
                while let Some(ev) = d.next_event().unwrap() {
                    got.push(ev);
                }
            }
            assert_eq!(got, all, "cut at {cut}");
        }
        all
    }

    #[test]
    fn captured_engine_stream_at_every_split() {
        use Action::*;
        assert_eq!(
            summary(&at_every_split(CAPTURED)),
            [
                (Start, None),
                (Die, Some(137)),
                (Destroy, None),
                (Start, None),
                (Die, Some(3)),
                (Destroy, None),
                (Start, None)
            ]
        );
        let all = at_every_split(CAPTURED_28);
        let got: Vec<_> = summary(&all).into_iter().take(13).collect();
        assert_eq!(
            got,
            [
                (Start, None),
                (Pause, None),
                (Unpause, None),
                (Kill(Some(1)), None),
                (Die, Some(129)),
                (Start, None),
                (Kill(Some(15)), None),
                (Die, Some(143)),
                (Start, None),
                (Kill(Some(15)), None),
                (Kill(Some(9)), None),
                (Die, Some(143)),
                (Start, None),
            ]
        );
        assert_eq!(all.len(), 25);
        assert!(all
            .iter()
            .any(|e| e.action == Health(Some(crate::backend::Health::Healthy))));
    }

    #[test]
    fn newer_engine_shape() {
        let ev = decode(V152.as_bytes()).unwrap().unwrap();
        assert_eq!(ev.action, Action::Start);
        assert_eq!(
            ev.id,
            "ede54ee1afda366ab42f824e8a5ffd195155d853ceaec74a927f249ea270c743"
        );
        assert_eq!(ev.time_nano, 1_461_943_101_381_709_551);
        let die = r#"{"Type":"container","Action":"die","Actor":{"ID":"abc","Attributes":{"exitCode":"0"}},"time":5}"#;
        let ev = decode(die.as_bytes()).unwrap().unwrap();
        assert_eq!(
            (ev.action, ev.exit_code, ev.time_nano),
            (Action::Die, Some(0), 5_000_000_000)
        );
        // Old engines: status/id only.
        let old = r#"{"status":"destroy","id":"abc","from":"img","time":1}"#;
        assert_eq!(
            decode(old.as_bytes()).unwrap().unwrap().action,
            Action::Destroy
        );
        let podman = r#"{"Type":"container","Action":"remove","Actor":{"ID":"abc"}}"#;
        assert_eq!(
            decode(podman.as_bytes()).unwrap().unwrap().action,
            Action::Destroy
        );
        let health =
            r#"{"Type":"container","Action":"health_status: healthy","Actor":{"ID":"abc"}}"#;
        assert_eq!(
            decode(health.as_bytes()).unwrap().unwrap().action,
            Action::Health(Some(Health::Healthy))
        );
        let podman_health = r#"{"Type":"container","Action":"health_status","Actor":{"ID":"abc","Attributes":{"health_status":"unhealthy"}}}"#;
        assert_eq!(
            decode(podman_health.as_bytes()).unwrap().unwrap().action,
            Action::Health(Some(Health::Unhealthy))
        );
        let odd = r#"{"Type":"container","Action":"health_status: sideways","Actor":{"ID":"abc"}}"#;
        assert_eq!(
            decode(odd.as_bytes()).unwrap().unwrap().action,
            Action::Health(None)
        );
        for (a, want) in [("pause", Action::Pause), ("unpause", Action::Unpause)] {
            let j = format!(r#"{{"Type":"container","Action":"{a}","Actor":{{"ID":"abc"}}}}"#);
            assert_eq!(decode(j.as_bytes()).unwrap().unwrap().action, want);
        }
        // Escaped strings cannot be borrowed; they decode all the same.
        let escaped = r#"{"Type":"cont\u0061iner","Action":"st\u0061rt","Actor":{"ID":"a\u0062c","Attributes":{"exitCode":"\u0033"}}}"#;
        let ev = decode(escaped.as_bytes()).unwrap().unwrap();
        assert_eq!(
            (ev.action, ev.id.as_str(), ev.exit_code),
            (Action::Start, "abc", Some(3))
        );
        let image = r#"{"Type":"image","Action":"pull","Actor":{"ID":"alpine"}}"#;
        assert_eq!(decode(image.as_bytes()).unwrap(), None);
        let body = format!("{V152}\n\n  \n{V152}\r\n");
        assert_eq!(events(&chunked(&body), 7).unwrap().len(), 2);
    }

    #[test]
    fn since_values() {
        assert_eq!(
            since_param(1_461_943_101_381_709_551),
            "1461943101.381709551"
        );
        assert_eq!(since_param(5), "0.000000005");
    }

    #[test]
    fn hostile_streams() {
        let bad_json = chunked("{\"Type\":\"container\",\n");
        assert!(matches!(events(&bad_json, 3), Err(Error::Json(_))));
        let bad_utf8 = {
            let mut v = chunked("");
            let line =
                b"{\"Type\":\"container\",\"Action\":\"start\",\"Actor\":{\"ID\":\"\xff\xfe\"}}\n";
            v.extend_from_slice(format!("{:x}\r\n", line.len()).as_bytes());
            v.extend_from_slice(line);
            v.extend_from_slice(b"\r\n");
            v
        };
        assert!(matches!(events(&bad_utf8, 5), Err(Error::Json(_))));
        let no_id = chunked("{\"Type\":\"container\",\"Action\":\"start\",\"Actor\":{}}\n");
        assert_eq!(events(&no_id, 1), Err(Error::NoId));
        let wrong_types =
            chunked("{\"Type\":\"container\",\"Action\":5,\"Actor\":{\"ID\":\"a\"}}\n");
        assert!(matches!(events(&wrong_types, 1000), Err(Error::Json(_))));
        let not_object = chunked("[1,2,3]\n");
        assert!(matches!(events(&not_object, 1000), Err(Error::Json(_))));

        // One event over the bound, in one line without a newline yet: refused while it grows.
        let huge = chunked(&"x".repeat(MAX_EVENT + 10));
        assert_eq!(events(&huge, 8192), Err(Error::TooLarge));
        let huge_line = chunked(&format!("{}\n", "x".repeat(MAX_EVENT + 10)));
        assert_eq!(events(&huge_line, huge_line.len()), Err(Error::TooLarge));

        let refused = b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 2\r\n\r\n{}";
        assert_eq!(events(refused, 1), Err(Error::Status(500)));
        let bad_chunk = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nxyz\r\n";
        assert_eq!(
            events(bad_chunk, 1),
            Err(Error::Http(http::Error::BadChunkSize))
        );

        // A stalled half event, then the connection closes: truncated, not an event.
        let mut d = EventDecoder::new();
        d.feed(&CAPTURED[..CAPTURED.len() - 40]).unwrap();
        while d.next_event().unwrap().is_some() {}
        assert_eq!(d.eof(), Err(Error::Http(http::Error::Truncated)));
        // A head and no body, then close.
        let mut d = EventDecoder::new();
        d.feed(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
            .unwrap();
        assert_eq!(d.next_event(), Ok(None));
        assert_eq!(d.eof(), Err(Error::Http(http::Error::Truncated)));
        // A clean end of the body.
        let mut end = chunked(&format!("{V152}\n"));
        end.extend_from_slice(b"0\r\n\r\n");
        let mut d = EventDecoder::new();
        d.feed(&end).unwrap();
        assert!(d.next_event().unwrap().is_some());
        assert!(d.ended());
    }

    #[test]
    fn mid_event_is_told_from_idle() {
        let mut d = EventDecoder::new();
        assert!(!d.mid_event(), "before the head");
        d.feed(b"HTTP/1.1 200 OK\r\n").unwrap();
        assert!(d.mid_event(), "half a head");
        d.feed(b"Transfer-Encoding: chunked\r\n\r\n").unwrap();
        assert!(!d.mid_event(), "head, no event yet");
        let line = format!("{V152}\n");
        d.feed(format!("{:x}", line.len()).as_bytes()).unwrap();
        assert!(d.mid_event(), "half a chunk-size line");
        d.feed(b"\r\n").unwrap();
        d.feed(&line.as_bytes()[..10]).unwrap();
        assert!(d.mid_event(), "half an event");
        d.feed(&line.as_bytes()[10..]).unwrap();
        assert!(d.mid_event(), "the chunk's CRLF is missing");
        d.feed(b"\r\n").unwrap();
        assert!(d.next_event().unwrap().is_some());
        assert!(!d.mid_event(), "between events");
    }

    #[test]
    fn buffer_stays_bounded() {
        let mut d = EventDecoder::new();
        d.feed(&chunked("")).unwrap();
        let line = format!("{V152}\n");
        let mut piece = Vec::new();
        piece.extend_from_slice(format!("{:x}\r\n", line.len()).as_bytes());
        piece.extend_from_slice(line.as_bytes());
        piece.extend_from_slice(b"\r\n");
        for _ in 0..10_000 {
            d.feed(&piece).unwrap();
            assert!(d.next_event().unwrap().is_some());
        }
        assert!(d.buf.capacity() < 4 * line.len(), "{}", d.buf.capacity());
    }

    #[test]
    fn kill_carries_its_signal() {
        let line = |sig: &str| {
            format!(
                r#"{{"Type":"container","Action":"kill","Actor":{{"ID":"abc","Attributes":{{"name":"x","signal":"{sig}"}}}},"timeNano":5}}"#
            )
        };
        for (sig, want) in [
            ("15", Some(15)),
            ("1", Some(1)),
            ("SIGQUIT", Some(3)),
            ("bogus", None),
        ] {
            let ev = decode(line(sig).as_bytes()).unwrap().unwrap();
            assert_eq!(ev.action, Action::Kill(want), "{sig}");
        }
        let bare = r#"{"Type":"container","Action":"kill","Actor":{"ID":"abc"}}"#;
        assert_eq!(
            decode(bare.as_bytes()).unwrap().unwrap().action,
            Action::Kill(None)
        );
        for (name, n) in [
            ("TERM", 15),
            ("sigkill", 9),
            ("SIGUSR1", 10),
            ("SIGRTMIN+3", 37),
            ("RTMAX-1", 63),
            ("SIGWINCH", 28),
        ] {
            assert_eq!(signal_number(name), Some(n), "{name}");
        }
        for bad in ["", "SIGNOPE", "RTMIN+99", "300"] {
            assert_eq!(signal_number(bad), None, "{bad}");
        }
    }

    /// Real bytes from Docker 28.5.2 in a swarm, subscribed with the `-swarm` filter, while a
    /// service was created, scaled 1 -> 2 -> 1, given a label, then a host-mode port (a rolling
    /// update), the node given a label, and the service removed (`tests/docker28.sh
    /// capture-swarm`).
    const CAPTURED_SWARM: &[u8] = include_bytes!("../../tests/data/events-swarm-28.5.raw");

    #[test]
    fn captured_swarm_stream_at_every_split() {
        let all = at_every_split(CAPTURED_SWARM);
        let count = |k: Kind| all.iter().filter(|e| e.kind == k).count();
        assert_eq!(
            (
                count(Kind::Service),
                count(Kind::Node),
                count(Kind::Container)
            ),
            (10, 1, 13)
        );
        let service: Vec<&Event> = all.iter().filter(|e| e.kind == Kind::Service).collect();
        assert!(service.iter().all(|e| e.id == service[0].id));
        assert_eq!(service[0].action, Action::Other("create".into()));
        assert_eq!(service[9].action, Action::Destroy, "a service's remove");
        // A container's create, now subscribed to, is nothing the worker acts on.
        assert!(all.contains(&Event {
            action: Action::Other("create".into()),
            ..all
                .iter()
                .find(|e| e.kind == Kind::Container)
                .unwrap()
                .clone()
        }));
    }

    #[test]
    fn event_types() {
        let line = |t: &str| format!(r#"{{"Type":"{t}","Action":"update","Actor":{{"ID":"x"}}}}"#);
        let kind = |t: &str| decode(line(t).as_bytes()).unwrap().map(|e| e.kind);
        assert_eq!(kind("container"), Some(Kind::Container));
        assert_eq!(kind("service"), Some(Kind::Service));
        assert_eq!(kind("node"), Some(Kind::Node));
        for other in [
            "network", "secret", "config", "image", "volume", "plugin", "daemon", "",
        ] {
            assert_eq!(kind(other), None, "{other}");
        }
        let untyped = r#"{"status":"start","id":"abc"}"#;
        assert_eq!(
            decode(untyped.as_bytes()).unwrap().unwrap().kind,
            Kind::Container
        );
    }
}
