//! Our own Docker Engine client: HTTP/1.1 GETs over the Unix socket (or plain TCP), a few lines
//! of I/O around the sans-I/O cores in [`http`] and [`events`]. The daemon never changes
//! anything in Docker.

pub mod container;
pub mod events;
pub mod http;
pub mod swarm;

use std::fmt;
use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::percent;
use container::{Container, Summary};
use events::{Event, EventDecoder};
use http::{Head, Output, ResponseDecoder};

/// Largest non-streaming response body read (a list of many containers stays far below).
const MAX_BODY: usize = 32 * 1024 * 1024;
/// Read/write timeout for ordinary requests. The event stream has none: an engine sends nothing
/// there, not even the response head, until the first event.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
const READ_BUF: usize = 8 * 1024;
/// The event stream has no timeout while idle (an engine is silent between events), but once
/// part of an event has arrived the rest must follow within this: an engine writes an event at
/// once, so a longer gap is a stalled connection.
pub const EVENT_STALL: Duration = Duration::from_secs(10);

/// Container events the daemon subscribes to.
/// `health_status` matches Docker's `health_status: <status>` (the engine matches it as a
/// prefix) and Podman's `health_status`. Podman filters `die` by its internal name `died` (and
/// still sends it as `die`).
/// `kill` is for `-deregister-on-stop` (one more event per stop; ignored without the flag).
const EVENT_FILTER: &str = r#"{"type":["container"],"event":["start","die","died","destroy","remove","pause","unpause","health_status","kill"]}"#;
/// With `-swarm`: also the swarm's service events (`create`, `update`, `remove`, each naming
/// only the service) and node events (a promotion or demotion of this node). A container's own
/// `create` and `update` come too, and are ignored.
const SWARM_EVENT_FILTER: &str = r#"{"type":["container","service","node"],"event":["start","die","died","destroy","remove","pause","unpause","health_status","kill","create","update"]}"#;

/// Where the engine listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Addr {
    Unix(PathBuf),
    Tcp(String),
}

/// How to reach the engine: where, over TLS or not (`DOCKER_TLS_VERIFY`), and the API
/// version prefix of every path (`DOCKER_API_VERSION`).
#[derive(Clone)]
pub struct Endpoint {
    pub addr: Addr,
    #[cfg(feature = "tls")]
    tls: Option<std::sync::Arc<rustls::ClientConfig>>,
    /// `/v1.41`, or empty for the engine's newest API.
    prefix: String,
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.addr {
            Addr::Unix(p) => write!(f, "unix://{}", p.display()),
            Addr::Tcp(a) if self.is_tls() => write!(f, "tcp://{a} (TLS)"),
            Addr::Tcp(a) => write!(f, "tcp://{a}"),
        }
    }
}

/// What is wrong with the engine's environment: a usage error (exit 2) or a setup one (1).
#[derive(Debug, PartialEq, Eq)]
pub enum EnvError {
    Usage(String),
    Setup(String),
}

impl Endpoint {
    /// The engine on a Unix socket, newest API.
    pub fn unix(path: impl Into<PathBuf>) -> Endpoint {
        Endpoint::plain(Addr::Unix(path.into()))
    }

    fn plain(addr: Addr) -> Endpoint {
        Endpoint {
            addr,
            #[cfg(feature = "tls")]
            tls: None,
            prefix: String::new(),
        }
    }

    pub fn is_tls(&self) -> bool {
        #[cfg(feature = "tls")]
        return self.tls.is_some();
        #[cfg(not(feature = "tls"))]
        false
    }

    /// `path` with the API version prefix.
    fn path(&self, path: &str) -> String {
        format!("{}{path}", self.prefix)
    }

    /// From the environment, as go-dockerclient reads it (spec/dropin.md section 3, with
    /// Decisions D1 and D2): `DOCKER_HOST` (unset: `/tmp/docker.sock` when it exists, the
    /// socket mounted into a container, else `/var/run/docker.sock`); `DOCKER_TLS_VERIFY`
    /// non-empty: TLS with `DOCKER_CERT_PATH` (default `$HOME/.docker`) holding `ca.pem`
    /// (required) and `cert.pem` + `key.pem` (sent when both exist); `DOCKER_API_VERSION`.
    pub fn from_env() -> Result<Endpoint, EnvError> {
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        let tls = var("DOCKER_TLS_VERIFY").is_some();
        let addr = match var("DOCKER_HOST") {
            Some(v) => Addr::parse(&v, tls).map_err(EnvError::Setup)?,
            None => {
                let tmp = Path::new("/tmp/docker.sock");
                Addr::Unix(if tmp.exists() {
                    tmp.to_path_buf()
                } else {
                    PathBuf::from("/var/run/docker.sock")
                })
            }
        };
        let mut ep = Endpoint::plain(addr);
        if let Some(v) = var("DOCKER_API_VERSION") {
            let ok = v
                .split('.')
                .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
            if !ok || !v.contains('.') {
                return Err(EnvError::Usage(format!(
                    "DOCKER_API_VERSION={v:?}: expected a version such as 1.41"
                )));
            }
            ep.prefix = format!("/v{v}");
        }
        if tls {
            if let Addr::Unix(p) = &ep.addr {
                return Err(EnvError::Usage(format!(
                    "DOCKER_TLS_VERIFY is set but the engine is the socket {}: TLS needs DOCKER_HOST=tcp://host:port",
                    p.display()
                )));
            }
            ep.set_tls(var("DOCKER_CERT_PATH"), var("HOME"))?;
        }
        Ok(ep)
    }

    #[cfg(feature = "tls")]
    fn set_tls(&mut self, cert_path: Option<String>, home: Option<String>) -> Result<(), EnvError> {
        let dir = match (cert_path, home) {
            (Some(d), _) => PathBuf::from(d),
            (None, Some(h)) => Path::new(&h).join(".docker"),
            (None, None) => {
                return Err(EnvError::Setup(
                    "DOCKER_TLS_VERIFY is set but neither DOCKER_CERT_PATH nor HOME is".into(),
                ))
            }
        };
        let ca = dir.join("ca.pem");
        if !ca.exists() {
            // go-dockerclient would silently skip verifying the engine: never here.
            return Err(EnvError::Setup(format!(
                "DOCKER_TLS_VERIFY is set but {} does not exist: the engine's certificate cannot be verified",
                ca.display()
            )));
        }
        let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
        let client = (cert.exists() && key.exists()).then_some((cert.as_path(), key.as_path()));
        if client.is_none() {
            log::warn!(
                "docker: no cert.pem and key.pem in {}: connecting without a client certificate",
                dir.display()
            );
        }
        let config = crate::tls::client_config(&ca, client)
            .map_err(|e| EnvError::Setup(format!("DOCKER_CERT_PATH: {e}")))?;
        self.tls = Some(config);
        Ok(())
    }

    #[cfg(not(feature = "tls"))]
    fn set_tls(&mut self, _: Option<String>, _: Option<String>) -> Result<(), EnvError> {
        Err(EnvError::Setup(
            "DOCKER_TLS_VERIFY is set but this build has no TLS (cargo feature tls)".into(),
        ))
    }

    fn connect(&self) -> io::Result<Conn> {
        match &self.addr {
            Addr::Unix(p) => UnixStream::connect(p).map(Conn::Unix),
            Addr::Tcp(a) => {
                let s = TcpStream::connect(a)?;
                let _ = s.set_nodelay(true);
                #[cfg(feature = "tls")]
                if let Some(config) = &self.tls {
                    // Bounded like a request: a peer that never answers the handshake.
                    s.set_read_timeout(Some(REQUEST_TIMEOUT))?;
                    s.set_write_timeout(Some(REQUEST_TIMEOUT))?;
                    return crate::tls::wrap(s, config.clone(), a).map(Conn::Net);
                }
                Ok(Conn::Net(crate::tls::Stream::Plain(s)))
            }
        }
    }
}

impl Addr {
    /// A `DOCKER_HOST` value: `unix:///path` or `tcp://host[:port]` (port 2375, 2376 with
    /// TLS, as Docker's CLI defaults).
    pub fn parse(v: &str, tls: bool) -> Result<Addr, String> {
        if let Some(p) = v.strip_prefix("unix://") {
            if p.is_empty() {
                return Err(format!("DOCKER_HOST {v:?}: no socket path"));
            }
            Ok(Addr::Unix(PathBuf::from(p)))
        } else if let Some(a) = v.strip_prefix("tcp://") {
            let a = a.trim_end_matches('/');
            if a.is_empty() || a.contains('/') {
                return Err(format!("DOCKER_HOST {v:?}: expected tcp://host:port"));
            }
            let a = crate::tls::with_port(a, if tls { 2376 } else { 2375 });
            match a.rsplit_once(':').map(|(_, p)| p.parse::<u16>()) {
                Some(Ok(p)) if p > 0 => Ok(Addr::Tcp(a)),
                _ => Err(format!("DOCKER_HOST {v:?}: bad port")),
            }
        } else {
            Err(format!(
                "DOCKER_HOST {v:?}: only unix:///path and tcp://host:port are supported"
            ))
        }
    }
}

enum Conn {
    Unix(UnixStream),
    /// TCP, plain or TLS.
    Net(crate::tls::Stream),
}

impl Conn {
    fn set_timeout(&self, t: Option<Duration>) -> io::Result<()> {
        match self {
            Conn::Unix(s) => {
                s.set_read_timeout(t)?;
                s.set_write_timeout(t)
            }
            Conn::Net(s) => s.set_timeout(t),
        }
    }
}

impl Read for Conn {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Conn::Unix(s) => s.read(buf),
            Conn::Net(s) => s.read(buf),
        }
    }
}

impl Write for Conn {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Conn::Unix(s) => s.write(buf),
            Conn::Net(s) => s.write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            Conn::Unix(s) => s.flush(),
            Conn::Net(s) => s.flush(),
        }
    }
}

#[derive(Debug)]
pub enum Error {
    Io(io::Error),
    Http(http::Error),
    Event(events::Error),
    Json(serde_json::Error),
    /// The engine answered with an error status; the message is the body's `message` or text.
    Status(u16, String),
    BodyTooLarge,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Io(e) => write!(f, "{e}"),
            Error::Http(e) => write!(f, "bad HTTP from engine: {e}"),
            Error::Event(e) => write!(f, "{e}"),
            Error::Json(e) => write!(f, "invalid JSON from engine: {e}"),
            Error::Status(s, m) => write!(f, "HTTP {s}: {m}"),
            Error::BodyTooLarge => write!(f, "response body larger than {MAX_BODY} bytes"),
        }
    }
}

impl std::error::Error for Error {}

impl From<io::Error> for Error {
    fn from(e: io::Error) -> Self {
        Error::Io(e)
    }
}
impl From<http::Error> for Error {
    fn from(e: http::Error) -> Self {
        Error::Http(e)
    }
}
impl From<events::Error> for Error {
    fn from(e: events::Error) -> Self {
        Error::Event(e)
    }
}

fn write_get(conn: &mut Conn, path: &str) -> io::Result<()> {
    let req = format!(
        "GET {path} HTTP/1.1\r\nHost: docker\r\nUser-Agent: registrator/{}\r\nAccept: application/json\r\n\r\n",
        env!("CARGO_PKG_VERSION")
    );
    conn.write_all(req.as_bytes())
}

/// Request/response client with one kept-alive connection.
pub struct Client {
    endpoint: Endpoint,
    conn: Option<Conn>,
    /// The path of a GET already written on `conn` whose response is still to be read
    /// ([`Client::inspect_ahead`]).
    ahead: Option<String>,
    decoder: ResponseDecoder,
    buf: Box<[u8]>,
}

impl Client {
    pub fn new(endpoint: Endpoint) -> Client {
        Client {
            endpoint,
            conn: None,
            ahead: None,
            decoder: ResponseDecoder::new(),
            buf: vec![0; READ_BUF].into_boxed_slice(),
        }
    }

    /// GET `path`; returns the head and the whole body.
    pub fn get(&mut self, path: &str) -> Result<(Head, Vec<u8>), Error> {
        self.get_with(path, |_, body| body.collect())
    }

    /// GET `path`, then `read` takes the body as it is decoded; the connection is kept if the
    /// engine keeps it. A kept-alive connection the engine has closed meanwhile is replaced
    /// once (GET is idempotent).
    fn get_with<T>(
        &mut self,
        path: &str,
        read: impl FnOnce(&Head, &mut Body) -> Result<T, Error>,
    ) -> Result<(Head, T), Error> {
        let reused = self.conn.is_some();
        let (conn, head, pos, end) = match self.start(path) {
            // The engine may have closed the idle connection: over a Unix socket the write
            // fails, over TCP the write succeeds and the read sees the close.
            Err(e @ (Error::Io(_) | Error::Http(http::Error::Truncated))) if reused => {
                log::debug!("docker: kept-alive connection failed ({e}); reconnecting");
                self.conn = None;
                self.start(path)?
            }
            r => r?,
        };
        let mut body = Body {
            conn,
            decoder: &mut self.decoder,
            buf: &mut self.buf,
            pos,
            end,
            data: 0..0,
            done: false,
            total: 0,
            error: None,
        };
        let out = read(&head, &mut body);
        // What the reader left (a JSON value's trailing whitespace) is read to the end.
        while out.is_ok() && !body.done {
            body.data = 0..0;
            body.next()?;
        }
        // Kept only after a whole response (an error status too), never mid-body.
        if head.keep_alive && body.done {
            self.conn = Some(body.conn);
        }
        Ok((head, out?))
    }

    /// Sends GET `path` and reads up to the end of the response head: the connection, the head,
    /// and where in `buf` the bytes read past the head are.
    fn start(&mut self, path: &str) -> Result<(Conn, Head, usize, usize), Error> {
        let sent = match self.ahead.take() {
            Some(p) if p == path => true,
            // The next response on the kept connection answers another request: not that one.
            Some(_) => {
                self.conn = None;
                false
            }
            None => false,
        };
        let mut conn = match self.conn.take() {
            Some(c) => c,
            None => {
                let c = self.endpoint.connect()?;
                c.set_timeout(Some(REQUEST_TIMEOUT))?;
                c
            }
        };
        if !sent {
            write_get(&mut conn, path)?;
        }
        self.decoder.reset();
        loop {
            let n = conn.read(&mut self.buf)?;
            if n == 0 {
                self.decoder.eof()?;
                return Err(Error::Http(http::Error::Truncated));
            }
            // Before the head the decoder takes all it is given.
            match self.decoder.feed(&self.buf[..n])? {
                (used, Some(Output::Head(h))) => return Ok((conn, h, used, n)),
                (_, Some(_)) => return Err(Error::Http(http::Error::Truncated)),
                (_, None) => {}
            }
        }
    }

    /// A JSON answer, parsed while the body arrives, never held whole (answers that grow with
    /// the number of containers or services); `None` for 404 when `missing_ok`. The one JSON
    /// reader of every answer but an inspect (whose text is kept).
    fn get_json<T: serde::de::DeserializeOwned>(
        &mut self,
        path: &str,
        missing_ok: bool,
    ) -> Result<Option<T>, Error> {
        let (_, out) = self.get_with(path, |head, body| {
            if !(200..300).contains(&head.status) {
                let text = body.collect()?;
                if head.status == 404 && missing_ok {
                    return Ok(None);
                }
                return Err(Error::Status(head.status, error_message(&text)));
            }
            serde_json::from_reader(&mut *body)
                .map(Some)
                .map_err(|e| match body.error.take() {
                    Some(inner) => inner,
                    None => Error::Json(e),
                })
        })?;
        Ok(out)
    }

    /// `GET /_ping`. Returns the engine's clock (Unix seconds, from `Date`) when it sent one.
    pub fn ping(&mut self) -> Result<Option<i64>, Error> {
        let path = self.endpoint.path("/_ping");
        let (head, body) = self.get(&path)?;
        if head.status != 200 {
            return Err(Error::Status(head.status, error_message(&body)));
        }
        Ok(head.date)
    }

    /// IDs of the running containers.
    pub fn running(&mut self) -> Result<Vec<String>, Error> {
        // 100 containers list as 85 KB; read whole, that was the daemon's largest allocation.
        let path = self.endpoint.path("/containers/json");
        let list: Vec<Summary> = self.get_json(&path, false)?.unwrap_or_default();
        Ok(list
            .into_iter()
            .map(|s| s.id)
            .filter(|id| !id.is_empty())
            .collect())
    }

    /// Inspects a container by ID or name; `None` when the engine does not know it.
    pub fn inspect(&mut self, id: &str) -> Result<Option<Container>, Error> {
        let path = self.endpoint.path(&inspect_path(id));
        let (head, body) = self.get(&path)?;
        match head.status {
            200..=299 => {
                let mut c: Container = serde_json::from_slice(&body).map_err(Error::Json)?;
                c.raw = body;
                Ok(Some(c))
            }
            404 => Ok(None),
            s => Err(Error::Status(s, error_message(&body))),
        }
    }

    /// `GET /info`: whether this node is in a swarm, and a manager.
    pub fn swarm_info(&mut self) -> Result<swarm::SwarmInfo, Error> {
        let path = self.endpoint.path("/info");
        let info: swarm::Info = self.get_json(&path, true)?.unwrap_or_default();
        Ok(info.swarm)
    }

    /// `GET /nodes/{id}` (managers only): the node's address; `None` for a node not known.
    pub fn node_addr(&mut self, id: &str) -> Result<Option<String>, Error> {
        let path = self
            .endpoint
            .path(&format!("/nodes/{}", percent::encode(id)));
        let node: Option<swarm::Node> = self.get_json(&path, true)?;
        Ok(node.map(|n| n.status.addr))
    }

    /// `GET /services` (managers only; another node gets HTTP 503).
    pub fn services(&mut self) -> Result<Vec<swarm::Service>, Error> {
        let path = self.endpoint.path("/services");
        Ok(self.get_json(&path, false)?.unwrap_or_default())
    }

    /// `GET /services/{id}` (managers only); `None` for a service not known (removed).
    pub fn service(&mut self, id: &str) -> Result<Option<swarm::Service>, Error> {
        let path = self
            .endpoint
            .path(&format!("/services/{}", percent::encode(id)));
        self.get_json(&path, true)
    }

    /// Asks for the inspect of `id` now, on the kept-alive connection, and leaves its answer
    /// there for the [`Client::inspect`] of `id` that follows (HTTP/1.1 pipelining): the
    /// engine prepares it while the caller does something else. Nothing is sent without a
    /// kept connection or with a request already ahead; a failed send drops the connection,
    /// and `inspect` asks again on a new one.
    pub fn inspect_ahead(&mut self, id: &str) {
        if self.ahead.is_some() {
            return;
        }
        let Some(conn) = self.conn.as_mut() else {
            return;
        };
        let path = self.endpoint.path(&inspect_path(id));
        match write_get(conn, &path) {
            Ok(()) => self.ahead = Some(path),
            Err(e) => {
                log::debug!("docker: kept-alive connection failed ({e}); dropped");
                self.conn = None;
            }
        }
    }
}

fn inspect_path(id: &str) -> String {
    format!("/containers/{}/json", percent::encode(id))
}

/// A response body, decoded from the connection as it is read.
struct Body<'c> {
    conn: Conn,
    decoder: &'c mut ResponseDecoder,
    buf: &'c mut [u8],
    /// Read from the connection, not yet decoded: `buf[pos..end]`.
    pos: usize,
    end: usize,
    /// Decoded body bytes not yet taken: `buf[data]`.
    data: std::ops::Range<usize>,
    done: bool,
    total: usize,
    /// The error behind an `io::Error` handed to a reader (serde_json keeps only its text).
    error: Option<Error>,
}

impl Body<'_> {
    /// Decodes the next piece of the body into `data`, or sets `done`.
    fn next(&mut self) -> Result<(), Error> {
        loop {
            if self.pos == self.end {
                // A body that ended exactly at the end of a read is reported on the next feed.
                if let Some(Output::End) = self.decoder.feed(&[])?.1 {
                    self.done = true;
                    return Ok(());
                }
                let n = self.conn.read(self.buf)?;
                if n == 0 {
                    return match self.decoder.eof()? {
                        Some(_) => {
                            self.done = true;
                            Ok(())
                        }
                        None => Err(Error::Http(http::Error::Truncated)),
                    };
                }
                (self.pos, self.end) = (0, n);
            }
            let (used, out) = self.decoder.feed(&self.buf[self.pos..self.end])?;
            self.pos += used;
            match out {
                // The decoder hands out the last bytes it consumed.
                Some(Output::Data(d)) => {
                    self.total += d.len();
                    if self.total > MAX_BODY {
                        return Err(Error::BodyTooLarge);
                    }
                    self.data = self.pos - d.len()..self.pos;
                    return Ok(());
                }
                Some(Output::End) => {
                    self.done = true;
                    return Ok(());
                }
                Some(Output::Head(_)) | None => {}
            }
        }
    }

    /// The rest of the body.
    fn collect(&mut self) -> Result<Vec<u8>, Error> {
        let mut out = Vec::new();
        loop {
            out.extend_from_slice(&self.buf[self.data.clone()]);
            self.data = 0..0;
            if self.done {
                return Ok(out);
            }
            self.next()?;
        }
    }
}

impl Read for Body<'_> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        while self.data.is_empty() && !self.done {
            if let Err(e) = self.next() {
                let text = e.to_string();
                self.error = Some(e);
                return Err(io::Error::other(text));
            }
        }
        let n = self.data.len().min(out.len());
        out[..n].copy_from_slice(&self.buf[self.data.start..self.data.start + n]);
        self.data.start += n;
        Ok(n)
    }
}

/// The `message` of an engine error body, or the body itself, shortened.
fn error_message(body: &[u8]) -> String {
    #[derive(serde::Deserialize)]
    struct Msg {
        message: String,
    }
    match serde_json::from_slice::<Msg>(body) {
        Ok(m) => m.message,
        Err(_) => String::from_utf8_lossy(&body[..body.len().min(256)])
            .trim()
            .to_string(),
    }
}

/// A subscription to `/events`: one connection, the sans-I/O [`EventDecoder`], one read buffer.
pub struct EventStream {
    conn: Conn,
    decoder: EventDecoder,
    buf: Box<[u8]>,
    /// The read timeout ([`EVENT_STALL`]) is set: part of an event is buffered.
    timed: bool,
    /// The stream broke; returned once the events that arrived before the break are taken.
    failed: Option<Error>,
}

impl EventStream {
    /// Sends the subscription (container events from `since`, `seconds.nanos`, if given).
    /// Does not wait for the response head: an engine may send none until the first event.
    /// With `swarm`, service and node events too.
    pub fn open(
        endpoint: &Endpoint,
        since: Option<&str>,
        swarm: bool,
    ) -> Result<EventStream, Error> {
        let mut conn = endpoint.connect()?;
        conn.set_timeout(Some(REQUEST_TIMEOUT))?;
        let filter = if swarm {
            SWARM_EVENT_FILTER
        } else {
            EVENT_FILTER
        };
        let mut path = endpoint.path(&format!("/events?filters={}", percent::encode(filter)));
        if let Some(s) = since {
            path.push_str("&since=");
            path.push_str(&percent::encode(s));
        }
        write_get(&mut conn, &path)?;
        conn.set_timeout(None)?;
        Ok(EventStream {
            conn,
            decoder: EventDecoder::new(),
            buf: vec![0; READ_BUF].into_boxed_slice(),
            timed: false,
            failed: None,
        })
    }

    /// Blocks for the next container event. `Ok(None)` when the engine ended the stream cleanly.
    /// A single event that does not decode is logged and skipped (reconnecting would replay
    /// it forever); broken HTTP framing or a bound exceeded ends the stream.
    pub fn next_event(&mut self) -> Result<Option<Event>, Error> {
        loop {
            match self.decoder.next_event() {
                Ok(Some(ev)) => return Ok(Some(ev)),
                Ok(None) => {}
                Err(e @ (events::Error::Json(_) | events::Error::NoId)) => {
                    log::warn!("docker: skipped an event: {e}");
                    continue;
                }
                Err(e) => return Err(e.into()),
            }
            if let Some(e) = self.failed.take() {
                return Err(e);
            }
            if self.decoder.ended() {
                return Ok(None);
            }
            let mid = self.decoder.mid_event();
            if mid != self.timed {
                self.conn.set_timeout(mid.then_some(EVENT_STALL))?;
                self.timed = mid;
            }
            let n = match self.conn.read(&mut self.buf) {
                Ok(n) => n,
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    return Err(Error::Io(io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!("the engine stalled for {EVENT_STALL:?} in the middle of an event"),
                    )));
                }
                Err(e) => return Err(e.into()),
            };
            if n == 0 {
                self.decoder.eof()?;
                return Ok(None);
            }
            // Events that came in the same read as broken framing are still delivered.
            if let Err(e) = self.decoder.feed(&self.buf[..n]) {
                self.failed = Some(e.into());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fake engine on a Unix socket that accepts one connection and answers each request
    /// with the next canned response, written a few bytes at a time.
    fn fake_engine(responses: Vec<Vec<u8>>) -> (PathBuf, std::thread::JoinHandle<Vec<String>>) {
        use std::io::BufRead;
        // One socket per call: tests run in parallel.
        static CALLS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = CALLS.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let (path, listener) = fake_socket(&format!("engine{n}"));
        let server = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            let mut r = io::BufReader::new(s.try_clone().unwrap());
            let mut paths = Vec::new();
            for resp in responses {
                let mut line = String::new();
                r.read_line(&mut line).unwrap();
                paths.push(line.split(' ').nth(1).unwrap_or("").to_string());
                while line != "\r\n" {
                    line.clear();
                    r.read_line(&mut line).unwrap();
                }
                for piece in resp.chunks(7) {
                    s.write_all(piece).unwrap();
                    s.flush().unwrap();
                }
            }
            paths
        });
        (path, server)
    }

    /// A Unix socket `NAME.sock` to listen on, in this test process's own directory.
    fn fake_socket(name: &str) -> (PathBuf, std::os::unix::net::UnixListener) {
        let dir = std::env::temp_dir().join(format!("rgtr-docker-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let path = dir.join(format!("{name}.sock"));
        let _ = std::fs::remove_file(&path);
        let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
        (path, listener)
    }

    fn chunked(body: &str, size: usize) -> Vec<u8> {
        let mut out = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
        for c in body.as_bytes().chunks(size) {
            out.extend_from_slice(format!("{:x}\r\n", c.len()).as_bytes());
            out.extend_from_slice(c);
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"0\r\n\r\n");
        out
    }

    #[test]
    fn list_is_parsed_as_it_streams_and_the_connection_is_kept() {
        let list: String = (0..50)
            .map(|i| format!(r#"{{"Id":"c{i:02}","Names":["/n{i}"],"Labels":{{"Id":"x"}}}}"#))
            .collect::<Vec<_>>()
            .join(",\n");
        let list = format!("[{list}]\n");
        let error = b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 18\r\n\r\n{\"message\":\"boom\"}".to_vec();
        let ping = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nOK".to_vec();
        let (path, server) = fake_engine(vec![chunked(&list, 13), error, chunked("[]", 1), ping]);
        let mut c = Client::new(Endpoint::unix(path));
        let ids = c.running().unwrap();
        assert_eq!(ids.len(), 50);
        assert_eq!((ids[0].as_str(), ids[49].as_str()), ("c00", "c49"));
        match c.running() {
            Err(Error::Status(500, m)) => assert_eq!(m, "boom"),
            other => panic!("{other:?}"),
        }
        assert_eq!(c.running().unwrap(), Vec::<String>::new());
        c.ping().unwrap();
        assert_eq!(
            server.join().unwrap().len(),
            4,
            "all four over one connection"
        );
    }

    /// A fake engine that answers every inspect on every connection it accepts (up to
    /// `conns`) with the container of that ID; the requests, as (connection, path).
    fn fake_inspects(
        name: &str,
        conns: usize,
    ) -> (PathBuf, std::thread::JoinHandle<Vec<(usize, String)>>) {
        use std::io::BufRead;
        let (path, listener) = fake_socket(name);
        let server = std::thread::spawn(move || {
            let mut seen = Vec::new();
            for n in 0..conns {
                let (mut s, _) = listener.accept().unwrap();
                let mut r = io::BufReader::new(s.try_clone().unwrap());
                loop {
                    let mut line = String::new();
                    // A client that closed with an answer unread resets the connection.
                    if r.read_line(&mut line).unwrap_or(0) == 0 {
                        break;
                    }
                    let path = line.split(' ').nth(1).unwrap_or("").to_string();
                    while line != "\r\n" {
                        line.clear();
                        r.read_line(&mut line).unwrap();
                    }
                    let id = path.trim_start_matches("/containers/");
                    let id = id.trim_end_matches("/json");
                    let body = format!(r#"{{"Id":"{id}","State":{{"Running":true}}}}"#);
                    let resp = format!(
                        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
                        body.len()
                    );
                    seen.push((n, path));
                    // The client may have closed this connection with this answer unread.
                    if resp.as_bytes().chunks(7).any(|p| s.write_all(p).is_err()) {
                        break;
                    }
                }
            }
            seen
        });
        (path, server)
    }

    #[test]
    fn an_inspect_asked_ahead_is_answered_on_the_same_connection() {
        let (path, server) = fake_inspects("ahead", 2);
        let mut c = Client::new(Endpoint::unix(path));
        // Nothing is sent ahead without a kept connection.
        c.inspect_ahead("a");
        assert_eq!(c.inspect("a").unwrap().unwrap().id, "a");
        c.inspect_ahead("b");
        // A second request ahead waits for the first to be read.
        c.inspect_ahead("c");
        assert_eq!(c.inspect("b").unwrap().unwrap().id, "b");
        c.inspect_ahead("c");
        // Another request than the one ahead goes on a new connection: the kept one's next
        // answer is for "c".
        assert_eq!(c.inspect("d").unwrap().unwrap().id, "d");
        assert_eq!(c.inspect("e").unwrap().unwrap().id, "e");
        drop(c);
        let got = server.join().unwrap();
        let got: Vec<(usize, &str)> = got.iter().map(|(n, p)| (*n, p.as_str())).collect();
        assert_eq!(
            got,
            [
                (0, "/containers/a/json"),
                (0, "/containers/b/json"),
                (0, "/containers/c/json"),
                (1, "/containers/d/json"),
                (1, "/containers/e/json"),
            ]
        );
    }

    #[test]
    fn swarm_calls_on_an_engine_in_no_swarm_and_in_one() {
        // Docker 28.5.2's answer to GET /services outside a swarm, as received.
        let refused = include_bytes!("../../tests/data/services-noswarm-28.5.raw").to_vec();
        let services = include_str!("../../tests/data/services-swarm-28.5.json");
        let info = include_bytes!("../../tests/data/info-swarm-28.5.json");
        let answer = |status: &str, body: &[u8]| {
            let head = format!(
                "HTTP/1.1 {status}\r\nContent-Length: {}\r\n\r\n",
                body.len()
            );
            [head.as_bytes(), body].concat()
        };
        let gone = answer(
            "404 Not Found",
            br#"{"message":"service nonexistent not found"}"#,
        );
        // The 503 (HTTP/1.0) closes the connection: last.
        let (path, server) = fake_engine(vec![
            answer("200 OK", info),
            chunked(services, 100),
            gone,
            refused,
        ]);
        let mut c = Client::new(Endpoint::unix(path));
        assert_eq!(c.swarm_info().unwrap().node_addr, "127.0.0.1");
        assert_eq!(c.services().unwrap().len(), 5);
        assert!(c.service("nonexistent").unwrap().is_none());
        match c.services() {
            Err(Error::Status(503, m)) => {
                assert!(m.starts_with("This node is not a swarm manager."), "{m}")
            }
            other => panic!("{other:?}"),
        }
        let paths = server.join().unwrap();
        assert_eq!(
            paths,
            ["/info", "/services", "/services/nonexistent", "/services"]
        );
    }
    #[test]
    fn a_list_cut_short_is_an_error_not_a_shorter_list() {
        let mut cut = chunked(r#"[{"Id":"a"},{"Id":"b"}]"#, 5);
        cut.truncate(cut.len() - 20);
        let (path, server) = fake_engine(vec![cut]);
        let mut c = Client::new(Endpoint::unix(path));
        let r = c.running();
        server.join().unwrap();
        assert!(r.is_err(), "{r:?}");
    }

    #[test]
    fn endpoints() {
        let p = |v| Addr::parse(v, false);
        assert_eq!(
            p("unix:///run/d.sock"),
            Ok(Addr::Unix("/run/d.sock".into()))
        );
        assert_eq!(
            p("tcp://127.0.0.1:2376"),
            Ok(Addr::Tcp("127.0.0.1:2376".into()))
        );
        assert_eq!(p("tcp://docker/"), Ok(Addr::Tcp("docker:2375".into())));
        assert_eq!(p("tcp://[::1]"), Ok(Addr::Tcp("[::1]:2375".into())));
        assert_eq!(p("tcp://[::1]:1"), Ok(Addr::Tcp("[::1]:1".into())));
        assert_eq!(
            Addr::parse("tcp://docker", true),
            Ok(Addr::Tcp("docker:2376".into()))
        );
        for bad in [
            "unix://",
            "tcp://",
            "tcp://h:0",
            "tcp://h:x",
            "tcp://h:1/p",
            "ssh://h",
            "/x",
        ] {
            assert!(p(bad).is_err(), "{bad}");
        }
    }
}
