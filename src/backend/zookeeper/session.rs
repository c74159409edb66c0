//! The ZooKeeper session thread: the one owner of the connection.
//!
//! The worker's calls come in as [`Input::Call`] and are answered one at a time on the
//! connection. Between them the thread pings every third of the session timeout. When the
//! connection is lost it asks a short-lived *dialer* thread to connect (every server in turn,
//! resuming the session or starting a new one) and keeps answering meanwhile: a call while
//! disconnected fails at once with [`ZkError::Disconnected`], and the worker's outbox tries it
//! again. The dialer hands the new connection back as [`Input::Dialed`]. A session that could
//! not be resumed took its ephemeral nodes with it: the thread tells the worker
//! ([`super::super::Notify`]), which registers everything again.

use std::fmt;
use std::io::{self, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender, SyncSender};
use std::thread;
use std::time::{Duration, Instant};

use super::codec::{self, Frames, In};
use crate::backend::Notify;
use crate::backoff::Backoff;

/// The session timeout asked for; the server clamps it to 2..20 of its ticks (4..40 s by
/// default). Nodes of a daemon that died go this long after its last ping.
pub const SESSION_TIMEOUT_MS: i32 = 10_000;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);

/// Why a ZooKeeper call failed.
#[derive(Debug)]
pub enum ZkError {
    /// Not connected now: the session thread is reconnecting.
    Disconnected,
    /// The server hung up.
    Closed,
    /// No answer within the read timeout.
    NoAnswer(Duration),
    Io(io::Error),
    /// The server answered the request with an error code.
    Refused {
        what: String,
        code: i32,
    },
    /// The session expired (its ephemeral nodes are gone).
    Expired,
    /// Bytes that are not the protocol.
    Protocol(String),
}

impl fmt::Display for ZkError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ZkError::Disconnected => f.write_str("not connected (reconnecting in the background)"),
            ZkError::Closed => f.write_str("the server closed the connection"),
            ZkError::NoAnswer(t) => write!(f, "no answer within {t:?}"),
            ZkError::Io(e) => write!(f, "{e}"),
            ZkError::Refused { what, code } => {
                write!(f, "{what}: {} ({code})", codec::error_name(*code))
            }
            ZkError::Expired => f.write_str("session expired"),
            ZkError::Protocol(m) => f.write_str(m),
        }
    }
}

impl From<io::Error> for ZkError {
    fn from(e: io::Error) -> ZkError {
        ZkError::Io(e)
    }
}

impl From<codec::CodecError> for ZkError {
    fn from(e: codec::CodecError) -> ZkError {
        ZkError::Protocol(e.0)
    }
}

/// What the worker asks of the session.
pub enum Request {
    Ping,
    /// An ephemeral node with this body (taken over from another session if need be), and
    /// the persistent nodes above it.
    Create {
        path: String,
        body: Vec<u8>,
    },
    /// A node, and its parent once that has no children left.
    Delete {
        path: String,
    },
    /// The bodies of every node two levels below `base` (`<base>/<name>/<node>`).
    List {
        base: String,
    },
    /// Ends the session (its ephemeral nodes go at once) and the thread.
    Close,
}

pub type Answer = Result<Vec<Vec<u8>>, ZkError>;

pub enum Input {
    Call(Request, SyncSender<Answer>),
    /// The dialer's result.
    Dialed(Result<Dialed, ZkError>),
}

/// What a session is resumed with.
#[derive(Debug, Clone, Default)]
struct Credentials {
    id: i64,
    passwd: Vec<u8>,
    last_zxid: i64,
}

/// A connection with its session.
pub struct Dialed {
    conn: Conn,
    /// The server's index in the address list.
    at: usize,
    session: Credentials,
    timeout: Duration,
}

struct Conn {
    stream: TcpStream,
    frames: Frames,
}

/// Connects to the first server that answers, starting at `first`, and resumes the session in
/// `creds` (a new one when `creds.id` is 0 or the server no longer knows it).
fn dial(addrs: &[String], first: usize, creds: Credentials) -> Result<Dialed, ZkError> {
    let n = addrs.len().max(1);
    let mut last = ZkError::Protocol("no server address".into());
    for i in 0..n {
        let at = (first + i) % n;
        let addr = addrs.get(at).map(String::as_str).unwrap_or_default();
        match handshake(addr, creds.clone()) {
            Ok((conn, session, timeout)) => {
                return Ok(Dialed {
                    conn,
                    at,
                    session,
                    timeout,
                })
            }
            Err(e) => last = e.context(addr),
        }
    }
    Err(last)
}

impl ZkError {
    fn context(self, addr: &str) -> ZkError {
        match self {
            ZkError::Io(e) => ZkError::Io(io::Error::new(e.kind(), format!("{addr}: {e}"))),
            ZkError::Protocol(m) => ZkError::Protocol(format!("{addr}: {m}")),
            ZkError::NoAnswer(t) => ZkError::Protocol(format!("{addr}: no answer within {t:?}")),
            ZkError::Closed => {
                ZkError::Protocol(format!("{addr}: the server closed the connection"))
            }
            other => other,
        }
    }
}

fn open_stream(addr: &str) -> Result<TcpStream, ZkError> {
    let mut last = io::Error::new(io::ErrorKind::NotFound, "no address");
    for sa in addr.to_socket_addrs()? {
        match TcpStream::connect_timeout(&sa, CONNECT_TIMEOUT) {
            Ok(s) => return Ok(s),
            Err(e) => last = io::Error::new(e.kind(), format!("connect: {e}")),
        }
    }
    Err(ZkError::Io(last))
}

/// How long to wait for an answer: two thirds of the session timeout, so a dead connection is
/// noticed while the session can still be resumed elsewhere.
fn read_timeout(session_timeout: Duration) -> Duration {
    session_timeout * 2 / 3
}

/// One server: TCP, then the session handshake. A session the server no longer knows, or a
/// server that hangs up on our zxid (it lost its data), gets a new session.
fn handshake(addr: &str, mut creds: Credentials) -> Result<(Conn, Credentials, Duration), ZkError> {
    let asked = Duration::from_millis(SESSION_TIMEOUT_MS as u64);
    for _ in 0..3 {
        let stream = open_stream(addr)?;
        let t = read_timeout(asked);
        stream.set_read_timeout(Some(t))?;
        stream.set_write_timeout(Some(t))?;
        let _ = stream.set_nodelay(true);
        let mut conn = Conn {
            stream,
            frames: Frames::default(),
        };
        let hello =
            codec::connect_request(creds.last_zxid, SESSION_TIMEOUT_MS, creds.id, &creds.passwd);
        conn.stream.write_all(&hello)?;
        let frame = match read_frame(&mut conn, t) {
            Ok(f) => f,
            Err(ZkError::Closed) if creds.last_zxid != 0 || creds.id != 0 => {
                log::warn!(
                    "zookeeper: {addr} hung up on session 0x{:x} (zxid 0x{:x}); it may have lost its data: starting a new session",
                    creds.id,
                    creds.last_zxid
                );
                creds = Credentials::default();
                continue;
            }
            Err(e) => return Err(e),
        };
        let c = codec::connect_response(&frame)?;
        if c.timeout_ms <= 0 {
            if creds.id == 0 {
                return Err(ZkError::Protocol("the server granted no session".into()));
            }
            log::warn!(
                "zookeeper: session 0x{:x} expired; starting a new one",
                creds.id
            );
            creds = Credentials::default();
            continue;
        }
        let timeout = Duration::from_millis(c.timeout_ms as u64);
        let _ = conn.stream.set_read_timeout(Some(read_timeout(timeout)));
        creds.id = c.session_id;
        creds.passwd = c.passwd;
        return Ok((conn, creds, timeout));
    }
    Err(ZkError::Protocol("no session after three tries".into()))
}

/// Reads until one whole frame is there; `timeout` is what the socket's read timeout is.
fn read_frame(conn: &mut Conn, timeout: Duration) -> Result<Vec<u8>, ZkError> {
    let mut buf = [0u8; 4096];
    loop {
        if let Some(f) = conn.frames.next_frame()? {
            return Ok(f);
        }
        match conn.stream.read(&mut buf) {
            Ok(0) => {
                conn.frames.clear();
                return Err(ZkError::Closed);
            }
            Ok(n) => conn.frames.push(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                return Err(ZkError::NoAnswer(timeout));
            }
            Err(e) => return Err(ZkError::Io(e)),
        }
    }
}

/// The state the session thread owns.
pub struct Session {
    addrs: Vec<String>,
    /// The server to try first on the next dial (the one that last worked).
    next_addr: usize,
    conn: Option<Conn>,
    creds: Credentials,
    /// The timeout the server granted.
    timeout: Duration,
    xid: i32,
    /// A dialer thread is at work.
    dialing: bool,
    /// When to dial again after a failed dial.
    redial: Backoff,
    /// A dial failed since the last connection (logged once, then at debug level).
    failing: bool,
    redial_at: Option<Instant>,
    next_ping: Instant,
    shown: String,
}

impl Session {
    /// The session of a first, successful dial (made by the caller, at start-up).
    pub fn new(addrs: Vec<String>, dialed: Dialed, shown: String) -> Session {
        let mut s = Session {
            addrs,
            next_addr: 0,
            conn: None,
            creds: Credentials::default(),
            timeout: Duration::from_millis(SESSION_TIMEOUT_MS as u64),
            xid: 0,
            dialing: false,
            redial: Backoff::new(BACKOFF_MIN, BACKOFF_MAX),
            failing: false,
            redial_at: None,
            next_ping: Instant::now(),
            shown,
        };
        s.install(dialed, Instant::now());
        log::info!(
            "zookeeper: session 0x{:x} (timeout {:?})",
            s.creds.id,
            s.timeout
        );
        s
    }

    fn install(&mut self, d: Dialed, now: Instant) {
        self.next_addr = d.at;
        self.creds = d.session;
        self.timeout = d.timeout;
        self.conn = Some(d.conn);
        self.next_ping = now + self.timeout / 3;
        self.redial.reset();
        self.redial_at = None;
        self.failing = false;
    }

    /// The thread's loop: answers calls, pings, and redials through `me` (its own input, for
    /// the dialer's answer). Ends with `Close`, which the backend sends when it is closed or
    /// dropped.
    pub fn run(mut self, rx: Receiver<Input>, me: Sender<Input>, lost: Option<Notify>) {
        loop {
            let now = Instant::now();
            let wake = match (&self.conn, self.redial_at) {
                (Some(_), _) => Some(self.next_ping),
                (None, Some(at)) if !self.dialing => Some(at),
                (None, _) => None,
            };
            let input = match wake {
                Some(at) => match rx.recv_timeout(at.saturating_duration_since(now)) {
                    Ok(i) => Some(i),
                    Err(RecvTimeoutError::Timeout) => None,
                    Err(RecvTimeoutError::Disconnected) => return self.close(),
                },
                None => match rx.recv() {
                    Ok(i) => Some(i),
                    Err(_) => return self.close(),
                },
            };
            match input {
                Some(Input::Call(Request::Close, reply)) => {
                    self.close();
                    let _ = reply.send(Ok(Vec::new()));
                    return;
                }
                Some(Input::Call(req, reply)) => {
                    let answer = self.serve(req);
                    let _ = reply.send(answer);
                }
                Some(Input::Dialed(result)) => self.dialed(result, lost.as_ref()),
                None => {}
            }
            let now = Instant::now();
            if self.conn.is_some() && now >= self.next_ping {
                // A failure is logged where the connection is dropped.
                let _ = self.ping();
            }
            if self.conn.is_none() && !self.dialing && self.redial_at.is_none_or(|at| now >= at) {
                self.start_dial(&me);
            }
        }
    }

    fn start_dial(&mut self, me: &Sender<Input>) {
        let (addrs, first, creds) = (self.addrs.clone(), self.next_addr, self.creds.clone());
        let me = me.clone();
        let spawned = thread::Builder::new()
            .name("zookeeper-dial".into())
            .spawn(move || {
                let _ = me.send(Input::Dialed(dial(&addrs, first, creds)));
            });
        match spawned {
            Ok(_) => self.dialing = true,
            Err(e) => {
                log::error!("{}: cannot start a dialer thread: {e}", self.shown);
                self.redial_at = Some(Instant::now() + self.redial.pause());
            }
        }
    }

    fn dialed(&mut self, result: Result<Dialed, ZkError>, lost: Option<&Notify>) {
        self.dialing = false;
        let now = Instant::now();
        match result {
            Ok(d) => {
                let before = self.creds.id;
                self.install(d, now);
                log::info!(
                    "{}: connected again (session 0x{:x})",
                    self.shown,
                    self.creds.id
                );
                if self.creds.id != before {
                    log::info!(
                        "zookeeper: session 0x{:x} (timeout {:?})",
                        self.creds.id,
                        self.timeout
                    );
                    if let Some(notify) = lost {
                        notify();
                    }
                }
            }
            Err(e) => {
                let pause = self.redial.pause();
                if self.failing {
                    log::debug!("{}: {e}; retry in {pause:?}", self.shown);
                } else {
                    log::warn!(
                        "{}: {e}; retrying with backoff up to {BACKOFF_MAX:?}",
                        self.shown
                    );
                    self.failing = true;
                }
                self.redial_at = Some(now + pause);
            }
        }
    }

    /// Drops a connection that failed (logged once per loss); a session the server expired is
    /// not resumed.
    fn lose(&mut self, e: &ZkError) {
        if self.conn.take().is_some() {
            log::warn!("{}: {e}; reconnecting with backoff", self.shown);
        }
        if matches!(e, ZkError::Expired) {
            self.creds = Credentials::default();
        }
    }

    fn serve(&mut self, req: Request) -> Answer {
        if self.conn.is_none() {
            return Err(ZkError::Disconnected);
        }
        match req {
            Request::Ping => self.ping().map(|()| Vec::new()),
            Request::Create { path, body } => self.create_node(&path, &body).map(|()| Vec::new()),
            Request::Delete { path } => self.delete_node(&path).map(|()| Vec::new()),
            Request::List { base } => self.list(&base),
            Request::Close => Ok(Vec::new()),
        }
    }

    /// Sends one request and reads until its answer; a broken connection is dropped (and
    /// redialled).
    fn call(&mut self, build: impl FnOnce(i32) -> Vec<u8>) -> Result<(i32, Vec<u8>), ZkError> {
        self.xid = self.xid.wrapping_add(1).max(1);
        let xid = self.xid;
        let result = self.exchange(xid, &build(xid));
        match result {
            Ok((codec::SESSION_EXPIRED, _)) => {
                self.lose(&ZkError::Expired);
                Err(ZkError::Expired)
            }
            Ok(a) => Ok(a),
            Err(e) => {
                self.lose(&e);
                Err(e)
            }
        }
    }

    fn exchange(&mut self, xid: i32, frame: &[u8]) -> Result<(i32, Vec<u8>), ZkError> {
        let t = read_timeout(self.timeout);
        let conn = self.conn.as_mut().ok_or(ZkError::Disconnected)?;
        conn.stream.write_all(frame)?;
        loop {
            let frame = read_frame(conn, t)?;
            let r = codec::reply(&frame)?;
            if r.zxid > 0 {
                self.creds.last_zxid = self.creds.last_zxid.max(r.zxid);
            }
            if r.xid == xid {
                let head = frame.len() - r.body.remaining();
                return Ok((r.err, frame[head..].to_vec()));
            }
            if r.xid != codec::XID_PING && r.xid != codec::XID_NOTIFICATION {
                return Err(ZkError::Protocol(format!(
                    "answer to request {} while waiting for {xid}",
                    r.xid
                )));
            }
        }
    }

    fn ping(&mut self) -> Result<(), ZkError> {
        self.next_ping = Instant::now() + self.timeout / 3;
        let result = match self.exchange(codec::XID_PING, &codec::ping()) {
            Ok((codec::OK, _)) => return Ok(()),
            Ok((codec::SESSION_EXPIRED, _)) => ZkError::Expired,
            Ok((code, _)) => ZkError::Refused {
                what: "ping".into(),
                code,
            },
            Err(e) => e,
        };
        self.lose(&result);
        Err(result)
    }

    /// A call whose answer must be OK or one of `allowed`; returns the code and the body.
    fn expect(
        &mut self,
        what: &str,
        allowed: &[i32],
        build: impl FnOnce(i32) -> Vec<u8>,
    ) -> Result<(i32, Vec<u8>), ZkError> {
        let (code, body) = self.call(build)?;
        if code == codec::OK || allowed.contains(&code) {
            Ok((code, body))
        } else {
            Err(ZkError::Refused {
                what: what.to_string(),
                code,
            })
        }
    }

    /// Every persistent node above `path`.
    fn create_parents(&mut self, path: &str) -> Result<(), ZkError> {
        let mut at = 0;
        while let Some(i) = path[at + 1..].find('/') {
            at += 1 + i;
            let parent = &path[..at];
            self.expect(&format!("create {parent}"), &[codec::NODE_EXISTS], |x| {
                codec::create(x, parent, b"", codec::PERSISTENT)
            })?;
        }
        Ok(())
    }

    /// Creates the ephemeral node in this session, taking it over if another session (a
    /// daemon before a restart) still holds it; leaves it alone if it is ours with this body.
    fn create_node(&mut self, path: &str, body: &[u8]) -> Result<(), ZkError> {
        let (code, answer) = self.expect(&format!("get {path}"), &[codec::NO_NODE], |x| {
            codec::read(x, codec::OP_GET_DATA, path)
        })?;
        if code == codec::OK {
            let mut r = In::new(&answer);
            let data = r.buffer()?;
            let stat = codec::stat(&mut r)?;
            if stat.ephemeral_owner == self.creds.id && data == body {
                return Ok(());
            }
            self.expect(&format!("delete {path}"), &[codec::NO_NODE], |x| {
                codec::delete(x, path)
            })?;
        } else {
            self.create_parents(path)?;
        }
        self.expect(&format!("create {path}"), &[], |x| {
            codec::create(x, path, body, codec::EPHEMERAL)
        })?;
        Ok(())
    }

    /// Deletes a service node, and its name node once that has no children left.
    fn delete_node(&mut self, path: &str) -> Result<(), ZkError> {
        self.expect(&format!("delete {path}"), &[codec::NO_NODE], |x| {
            codec::delete(x, path)
        })?;
        if let Some((parent, _)) = path.rsplit_once('/') {
            if !parent.is_empty() {
                self.expect(
                    &format!("delete {parent}"),
                    &[codec::NO_NODE, codec::NOT_EMPTY],
                    |x| codec::delete(x, parent),
                )?;
            }
        }
        Ok(())
    }

    fn children(&mut self, path: &str) -> Result<Vec<String>, ZkError> {
        let (code, body) = self.expect(&format!("children of {path}"), &[codec::NO_NODE], |x| {
            codec::read(x, codec::OP_GET_CHILDREN, path)
        })?;
        if code == codec::NO_NODE {
            return Ok(Vec::new());
        }
        Ok(codec::children(&mut In::new(&body))?)
    }

    /// The bodies of the nodes `<base>/<name>/<node>`.
    fn list(&mut self, base: &str) -> Result<Vec<Vec<u8>>, ZkError> {
        let mut out = Vec::new();
        let top = if base.is_empty() { "/" } else { base };
        for name in self.children(top)? {
            let dir = format!("{base}/{name}");
            for node in self.children(&dir)? {
                let path = format!("{dir}/{node}");
                let (code, body) = self.expect(&format!("get {path}"), &[codec::NO_NODE], |x| {
                    codec::read(x, codec::OP_GET_DATA, &path)
                })?;
                if code == codec::OK {
                    out.push(In::new(&body).buffer()?.to_vec());
                }
            }
        }
        Ok(out)
    }

    /// Ends the session (its ephemeral nodes go with it), waiting briefly for the answer.
    fn close(&mut self) {
        let Some(mut conn) = self.conn.take() else {
            return;
        };
        let t = Duration::from_millis(300);
        let _ = conn.stream.set_read_timeout(Some(t));
        self.xid = self.xid.wrapping_add(1).max(1);
        if conn.stream.write_all(&codec::close(self.xid)).is_ok() {
            let _ = read_frame(&mut conn, t);
        }
        log::info!("zookeeper: session 0x{:x} closed", self.creds.id);
    }
}

/// The first dial, at start-up, from the calling thread.
pub fn first_dial(addrs: &[String]) -> Result<Dialed, ZkError> {
    dial(addrs, 0, Credentials::default())
}
