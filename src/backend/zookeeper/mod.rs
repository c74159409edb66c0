//! ZooKeeper (spec 6.5) through our own client for its wire protocol ([`codec`]).
//!
//! Each service is an ephemeral node `<base>/<name>/<ip>:<port>` holding
//! `{"Name","IP","PublicPort","PrivatePort","ContainerID","Tags","Attrs"}`, under a persistent
//! `<base>/<name>`. Ephemeral nodes live as long as the session: a **session thread** pings the
//! server every third of the session timeout, reconnects with backoff when the server goes away,
//! and when the session was lost (expired, or the server lost its data) creates every node
//! again in the new one. The worker's calls and the session thread share the connection under
//! one lock; each request is sent and answered while holding it.
//!
//! A node a stopped daemon left behind is owned by its old session and vanishes when that
//! session times out; registering the same node again takes it over for the current session.
//! At shutdown the session is closed, so the ephemeral nodes go at once.

pub mod codec;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use serde::Serialize;

use self::codec::{Frames, In};
use super::{Backend, Error, OpenError, Uri};
use crate::service::Service;

const DEFAULT_ADDR: &str = "127.0.0.1:2181";
/// The session timeout asked for; the server clamps it to 2..20 of its ticks (4..40 s by
/// default). Nodes of a daemon that died go this long after its last ping.
const SESSION_TIMEOUT_MS: i32 = 10_000;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);

pub struct ZooKeeper {
    session: Arc<Mutex<Session>>,
    base: String,
    shown: String,
    /// The session thread, started with the first session; dropping the sender stops it.
    keeper: Option<(mpsc::Sender<()>, JoinHandle<()>)>,
}

/// The node body (spec 6.5).
#[derive(Serialize, serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Body {
    name: String,
    #[serde(rename = "IP")]
    ip: String,
    public_port: u16,
    private_port: u16,
    #[serde(rename = "ContainerID")]
    container_id: String,
    #[serde(default)]
    tags: Vec<String>,
    #[serde(default)]
    attrs: BTreeMap<String, String>,
}

impl ZooKeeper {
    /// `zookeeper://host:port[,host:port...]/base`.
    pub fn from_uri(u: &Uri) -> Result<ZooKeeper, OpenError> {
        let hosts = if u.authority.is_empty() {
            DEFAULT_ADDR
        } else {
            &u.authority
        };
        let mut addrs = Vec::new();
        for h in hosts.split(',') {
            super::check_host_port(h).map_err(|e| OpenError::Usage(format!("zookeeper: {e}")))?;
            addrs.push(if h.contains(':') && !h.ends_with(']') {
                h.to_string()
            } else {
                format!("{h}:2181")
            });
        }
        let base = u.trimmed_path();
        if base.split('/').any(|p| p == "." || p == "..") || base.contains("//") {
            return Err(OpenError::Usage(format!(
                "zookeeper: {:?} is not a node path",
                u.path
            )));
        }
        Ok(ZooKeeper {
            shown: format!("zookeeper {}", addrs.join(",")),
            session: Arc::new(Mutex::new(Session::new(addrs))),
            base: if base.is_empty() {
                String::new()
            } else {
                format!("/{base}")
            },
            keeper: None,
        })
    }

    fn lock(&self) -> MutexGuard<'_, Session> {
        lock(&self.session)
    }

    fn node_path(&self, s: &Service) -> String {
        format!("{}/{}/{}", self.base, s.name, s.address())
    }

    fn start_keeper(&mut self) {
        if self.keeper.is_some() {
            return;
        }
        let (tx, rx) = mpsc::channel();
        let session = self.session.clone();
        let shown = self.shown.clone();
        match thread::Builder::new()
            .name("zookeeper".into())
            .spawn(move || keep(&session, &rx, &shown))
        {
            Ok(h) => {
                self.keeper = Some((tx, h));
                self.lock().background = true;
            }
            Err(e) => log::error!("{}: cannot start the session thread: {e}", self.shown),
        }
    }

    fn err(&self, what: &str, e: impl std::fmt::Display) -> Error {
        Error(format!("{}: {what}: {e}", self.shown))
    }
}

fn lock(m: &Mutex<Session>) -> MutexGuard<'_, Session> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The session thread: a ping every third of the session timeout; when disconnected, a
/// reconnect with backoff (which also brings the nodes back). Ends when its sender is dropped.
fn keep(session: &Mutex<Session>, stop: &mpsc::Receiver<()>, shown: &str) {
    let mut backoff = BACKOFF_MIN;
    let mut failing = false;
    loop {
        let wait = {
            let s = lock(session);
            if s.conn.is_some() {
                s.timeout / 3
            } else {
                backoff
            }
        };
        match stop.recv_timeout(wait) {
            Err(RecvTimeoutError::Timeout) => {}
            _ => return,
        }
        let mut s = lock(session);
        let reconnecting = s.conn.is_none();
        let result = if !reconnecting {
            s.ping().and_then(|()| {
                if s.pending.is_empty() && s.gone.is_empty() {
                    Ok(())
                } else {
                    s.settle()
                }
            })
        } else {
            s.connect()
        };
        match result {
            Ok(()) => {
                if reconnecting {
                    log::info!("{shown}: connected again (session 0x{:x})", s.id);
                }
                failing = false;
                backoff = BACKOFF_MIN;
            }
            Err(e) => {
                if failing {
                    log::debug!("{shown}: {e}; retry in {backoff:?}");
                } else {
                    log::warn!("{shown}: {e}; reconnecting with backoff");
                }
                failing = true;
                backoff = if s.conn.is_some() {
                    BACKOFF_MIN
                } else {
                    (backoff * 2).min(BACKOFF_MAX)
                };
            }
        }
    }
}

struct Conn {
    stream: TcpStream,
    frames: Frames,
}

/// An answer: the error code and the body after the reply header.
struct Answer {
    err: i32,
    body: Vec<u8>,
}

impl Answer {
    fn ok_or(self, what: &str, allowed: &[i32]) -> Result<Answer, String> {
        if self.err == codec::OK || allowed.contains(&self.err) {
            Ok(self)
        } else {
            Err(format!(
                "{what}: {} ({})",
                codec::error_name(self.err),
                self.err
            ))
        }
    }
}

struct Session {
    addrs: Vec<String>,
    /// The address to try first on the next connect (the one that last worked).
    next_addr: usize,
    conn: Option<Conn>,
    id: i64,
    passwd: Vec<u8>,
    /// The timeout the server granted.
    timeout: Duration,
    last_zxid: i64,
    xid: i32,
    /// The session thread runs: while disconnected, calls fail at once (it reconnects).
    background: bool,
    /// Every ephemeral node wanted, with its body.
    nodes: BTreeMap<String, Vec<u8>>,
    /// Wanted nodes not known to exist in this session (a create failed, or the session is
    /// new): created when the connection allows.
    pending: BTreeSet<String>,
    /// Nodes deregistered while the connection was down: deleted when it is back.
    gone: BTreeSet<String>,
}

/// What [`read_frame`] says when the server hangs up.
const CLOSED: &str = "the server closed the connection";

impl Session {
    fn new(addrs: Vec<String>) -> Session {
        Session {
            addrs,
            next_addr: 0,
            conn: None,
            id: 0,
            passwd: Vec::new(),
            timeout: Duration::from_millis(SESSION_TIMEOUT_MS as u64),
            last_zxid: 0,
            xid: 0,
            background: false,
            nodes: BTreeMap::new(),
            pending: BTreeSet::new(),
            gone: BTreeSet::new(),
        }
    }

    /// How long to wait for an answer: two thirds of the session timeout, so a dead connection
    /// is noticed while the session can still be resumed elsewhere.
    fn read_timeout(&self) -> Duration {
        self.timeout * 2 / 3
    }

    fn open_stream(&self, addr: &str) -> Result<TcpStream, String> {
        let mut last = format!("{addr}: no address");
        let sockaddrs = addr.to_socket_addrs().map_err(|e| format!("{addr}: {e}"))?;
        for sa in sockaddrs {
            match TcpStream::connect_timeout(&sa, CONNECT_TIMEOUT) {
                Ok(s) => return Ok(s),
                Err(e) => last = format!("connect {addr}: {e}"),
            }
        }
        Err(last)
    }

    /// Connects (trying every server, starting with the last good one) and resumes the session
    /// or starts a new one; then creates what is pending and deletes what went meanwhile.
    fn connect(&mut self) -> Result<(), String> {
        self.conn = None;
        let old = self.id;
        let n = self.addrs.len().max(1);
        let mut last = String::from("no server address");
        let mut connected = false;
        for i in 0..n {
            let at = (self.next_addr + i) % n;
            match self.handshake(at) {
                Ok(()) => {
                    self.next_addr = at;
                    connected = true;
                    break;
                }
                Err(e) => last = e,
            }
        }
        if !connected {
            return Err(last);
        }
        if self.id != old {
            log::info!(
                "zookeeper: session 0x{:x} (timeout {:?})",
                self.id,
                self.timeout
            );
            // Nodes deregistered meanwhile died with the old session; every wanted node is
            // created in the new one.
            self.gone.clear();
            self.pending = self.nodes.keys().cloned().collect();
        }
        self.settle()
    }

    /// One server: TCP, then the session handshake. A session the server no longer knows, or a
    /// server that hangs up on our zxid (it lost its data), gets a new session.
    fn handshake(&mut self, at: usize) -> Result<(), String> {
        let addr = self.addrs.get(at).cloned().unwrap_or_default();
        for _ in 0..3 {
            let stream = self.open_stream(&addr)?;
            let t = self.read_timeout();
            stream
                .set_read_timeout(Some(t))
                .and_then(|()| stream.set_write_timeout(Some(t)))
                .map_err(|e| format!("{addr}: socket setup: {e}"))?;
            let _ = stream.set_nodelay(true);
            let mut conn = Conn {
                stream,
                frames: Frames::default(),
            };
            let hello =
                codec::connect_request(self.last_zxid, SESSION_TIMEOUT_MS, self.id, &self.passwd);
            let answer = conn
                .stream
                .write_all(&hello)
                .map_err(|e| e.to_string())
                .and_then(|()| read_frame(&mut conn, t));
            let frame = match answer {
                Ok(f) => f,
                Err(e) if e == CLOSED && (self.last_zxid != 0 || self.id != 0) => {
                    log::warn!(
                        "zookeeper: {addr} hung up on session 0x{:x} (zxid 0x{:x}); it may have lost its data: starting a new session",
                        self.id,
                        self.last_zxid
                    );
                    self.new_session();
                    continue;
                }
                Err(e) => return Err(format!("{addr}: handshake: {e}")),
            };
            let c =
                codec::connect_response(&frame).map_err(|e| format!("{addr}: handshake: {e}"))?;
            if c.timeout_ms <= 0 {
                if self.id == 0 {
                    return Err(format!("{addr}: handshake: the server granted no session"));
                }
                log::warn!(
                    "zookeeper: session 0x{:x} expired; starting a new one",
                    self.id
                );
                self.new_session();
                continue;
            }
            self.id = c.session_id;
            self.passwd = c.passwd;
            self.timeout = Duration::from_millis(c.timeout_ms as u64);
            let _ = conn.stream.set_read_timeout(Some(self.read_timeout()));
            self.conn = Some(conn);
            return Ok(());
        }
        Err(format!("{addr}: handshake: no session after three tries"))
    }

    fn new_session(&mut self) {
        self.id = 0;
        self.passwd.clear();
        self.last_zxid = 0;
    }

    /// Creates the pending nodes and deletes the gone ones. A node the server refuses stays
    /// pending (logged); a lost connection stops it all.
    fn settle(&mut self) -> Result<(), String> {
        for path in std::mem::take(&mut self.gone) {
            if let Err(e) = self.delete_node(&path) {
                self.gone.insert(path);
                if self.conn.is_none() {
                    return Err(e);
                }
                log::warn!("zookeeper: {e}");
            }
        }
        let pending = std::mem::take(&mut self.pending);
        let mut created = 0;
        for path in &pending {
            let Some(body) = self.nodes.get(path).cloned() else {
                continue;
            };
            match self.create_node(path, &body) {
                Ok(()) => created += 1,
                Err(e) => {
                    self.pending.insert(path.clone());
                    if self.conn.is_none() {
                        self.pending.extend(pending.iter().cloned());
                        return Err(e);
                    }
                    log::warn!("zookeeper: {e}");
                }
            }
        }
        if created > 0 {
            log::info!("zookeeper: created {created} pending nodes");
        }
        Ok(())
    }

    /// Sends one request and waits for its answer; a broken connection is dropped (the next
    /// call or the session thread connects again).
    fn call(&mut self, what: &str, build: impl FnOnce(i32) -> Vec<u8>) -> Result<Answer, String> {
        if self.conn.is_none() {
            if self.background {
                return Err(format!(
                    "{what}: not connected (reconnecting in the background)"
                ));
            }
            self.connect()?;
        }
        self.xid = self.xid.wrapping_add(1).max(1);
        let xid = self.xid;
        let result = self.exchange(xid, &build(xid));
        match result {
            Ok(a) if a.err == codec::SESSION_EXPIRED => {
                self.conn = None;
                self.new_session();
                Err(format!("{what}: session expired"))
            }
            Ok(a) => Ok(a),
            Err(e) => {
                self.conn = None;
                Err(format!("{what}: {e}"))
            }
        }
    }

    fn exchange(&mut self, xid: i32, frame: &[u8]) -> Result<Answer, String> {
        let t = self.read_timeout();
        let conn = self.conn.as_mut().ok_or("not connected")?;
        conn.stream.write_all(frame).map_err(|e| e.to_string())?;
        loop {
            let frame = read_frame(conn, t)?;
            let r = codec::reply(&frame).map_err(|e| e.to_string())?;
            if r.zxid > 0 {
                self.last_zxid = self.last_zxid.max(r.zxid);
            }
            if r.xid == xid {
                let head = frame.len() - r.body.remaining();
                return Ok(Answer {
                    err: r.err,
                    body: frame[head..].to_vec(),
                });
            }
            if r.xid != codec::XID_PING && r.xid != codec::XID_NOTIFICATION {
                return Err(format!(
                    "answer to request {} while waiting for {xid}",
                    r.xid
                ));
            }
        }
    }

    fn ping(&mut self) -> Result<(), String> {
        match self.exchange(codec::XID_PING, &codec::ping()) {
            Ok(a) if a.err == codec::OK => Ok(()),
            Ok(a) => {
                self.conn = None;
                if a.err == codec::SESSION_EXPIRED {
                    self.new_session();
                }
                Err(format!("ping: {}", codec::error_name(a.err)))
            }
            Err(e) => {
                self.conn = None;
                Err(format!("ping: {e}"))
            }
        }
    }

    /// Every persistent node above `path`.
    fn create_parents(&mut self, path: &str) -> Result<(), String> {
        let mut at = 0;
        while let Some(i) = path[at + 1..].find('/') {
            at += 1 + i;
            let parent = &path[..at];
            self.call("create", |x| {
                codec::create(x, parent, b"", codec::PERSISTENT)
            })?
            .ok_or(&format!("create {parent}"), &[codec::NODE_EXISTS])?;
        }
        Ok(())
    }

    /// Creates the ephemeral node in this session, taking it over if another session (a
    /// daemon before a restart) still holds it; leaves it alone if it is ours with this body.
    fn create_node(&mut self, path: &str, body: &[u8]) -> Result<(), String> {
        let a = self
            .call("exists", |x| codec::read(x, codec::OP_EXISTS, path))?
            .ok_or(&format!("exists {path}"), &[codec::NO_NODE])?;
        if a.err == codec::OK {
            let stat = codec::stat(&mut In::new(&a.body)).map_err(|e| e.to_string())?;
            if stat.ephemeral_owner == self.id && self.nodes.get(path).is_some_and(|b| b == body) {
                return Ok(());
            }
            self.call("delete", |x| codec::delete(x, path))?
                .ok_or(&format!("delete {path}"), &[codec::NO_NODE])?;
        } else {
            self.create_parents(path)?;
        }
        self.call("create", |x| codec::create(x, path, body, codec::EPHEMERAL))?
            .ok_or(&format!("create {path}"), &[])?;
        Ok(())
    }

    /// Deletes a service node, and its name node once that has no children left.
    fn delete_node(&mut self, path: &str) -> Result<(), String> {
        self.call("delete", |x| codec::delete(x, path))?
            .ok_or(&format!("delete {path}"), &[codec::NO_NODE])?;
        if let Some((parent, _)) = path.rsplit_once('/') {
            if !parent.is_empty() {
                self.call("delete", |x| codec::delete(x, parent))?.ok_or(
                    &format!("delete {parent}"),
                    &[codec::NO_NODE, codec::NOT_EMPTY],
                )?;
            }
        }
        Ok(())
    }

    fn children(&mut self, path: &str) -> Result<Vec<String>, String> {
        let a = self
            .call("children", |x| codec::read(x, codec::OP_GET_CHILDREN, path))?
            .ok_or(&format!("children of {path}"), &[codec::NO_NODE])?;
        if a.err == codec::NO_NODE {
            return Ok(Vec::new());
        }
        codec::children(&mut In::new(&a.body)).map_err(|e| e.to_string())
    }

    fn data(&mut self, path: &str) -> Result<Option<Vec<u8>>, String> {
        let a = self
            .call("get", |x| codec::read(x, codec::OP_GET_DATA, path))?
            .ok_or(&format!("get {path}"), &[codec::NO_NODE])?;
        if a.err == codec::NO_NODE {
            return Ok(None);
        }
        Ok(Some(
            In::new(&a.body)
                .buffer()
                .map_err(|e| e.to_string())?
                .to_vec(),
        ))
    }

    /// Ends the session (its ephemeral nodes go with it), waiting briefly for the answer.
    fn close(&mut self) {
        let Some(mut conn) = self.conn.take() else {
            return;
        };
        let _ = conn
            .stream
            .set_read_timeout(Some(Duration::from_millis(300)));
        self.xid = self.xid.wrapping_add(1).max(1);
        if conn.stream.write_all(&codec::close(self.xid)).is_ok() {
            let _ = read_frame(&mut conn, Duration::from_millis(300));
        }
        log::info!("zookeeper: session 0x{:x} closed", self.id);
    }
}

/// Reads until one whole frame is there; `timeout` is what the socket's read timeout is.
fn read_frame(conn: &mut Conn, timeout: Duration) -> Result<Vec<u8>, String> {
    let mut buf = [0u8; 4096];
    loop {
        if let Some(f) = conn.frames.next_frame().map_err(|e| e.to_string())? {
            return Ok(f);
        }
        match conn.stream.read(&mut buf) {
            Ok(0) => {
                conn.frames.clear();
                return Err(CLOSED.into());
            }
            Ok(n) => conn.frames.push(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return Err(format!("no answer within {timeout:?}"));
            }
            Err(e) => return Err(e.to_string()),
        }
    }
}

impl Backend for ZooKeeper {
    fn ping(&mut self) -> Result<(), Error> {
        let result = {
            let mut s = self.lock();
            if s.conn.is_some() {
                s.ping()
            } else {
                s.connect()
            }
        };
        result.map_err(|e| self.err("ping", e))?;
        self.start_keeper();
        Ok(())
    }

    fn key(&self, s: &Service) -> String {
        self.node_path(s)
    }

    fn register(&mut self, s: &Service) -> Result<(), Error> {
        let path = self.node_path(s);
        let body = serde_json::to_vec(&Body {
            name: s.name.clone(),
            ip: s.ip.clone(),
            public_port: s.port,
            private_port: s.exposed_port,
            container_id: s.container_id.clone(),
            tags: s.tags.clone(),
            attrs: s.attrs.clone(),
        })
        .map_err(|e| self.err("register", e))?;
        let result = {
            let mut session = self.lock();
            session.gone.remove(&path);
            let r = session.create_node(&path, &body);
            // Wanted even if the server is away now: the session thread creates it.
            if r.is_err() {
                session.pending.insert(path.clone());
            } else {
                session.pending.remove(&path);
            }
            session.nodes.insert(path.clone(), body);
            r
        };
        result.map_err(|e| self.err(&format!("register {}", s.id), e))
    }

    fn deregister(&mut self, s: &Service) -> Result<(), Error> {
        let path = self.node_path(s);
        let result = {
            let mut session = self.lock();
            session.nodes.remove(&path);
            session.pending.remove(&path);
            let r = session.delete_node(&path);
            if r.is_err() {
                session.gone.insert(path);
            }
            r
        };
        result.map_err(|e| self.err(&format!("deregister {}", s.id), e))
    }

    /// Every service node under the base path with a body this project writes. The body has no
    /// service ID: it is left empty (ZooKeeper removes a dead daemon's nodes by itself).
    fn list(&mut self) -> Result<Vec<Service>, Error> {
        let base = if self.base.is_empty() {
            "/"
        } else {
            &self.base
        }
        .to_string();
        let mut out = Vec::new();
        let mut s = self.lock();
        let names = s.children(&base).map_err(|e| self.err("list", e))?;
        for name in names {
            let dir = format!("{}/{name}", self.base);
            for node in s.children(&dir).map_err(|e| self.err("list", e))? {
                let path = format!("{dir}/{node}");
                let Some(data) = s.data(&path).map_err(|e| self.err("list", e))? else {
                    continue;
                };
                if let Ok(b) = serde_json::from_slice::<Body>(&data) {
                    out.push(Service {
                        name: b.name,
                        ip: b.ip,
                        port: b.public_port,
                        exposed_port: b.private_port,
                        container_id: b.container_id,
                        tags: b.tags,
                        attrs: b.attrs,
                        ..Service::default()
                    });
                }
            }
        }
        Ok(out)
    }

    fn close(&mut self) {
        // Stop the session thread (it sees the closed channel at its next wake-up; not waited
        // for: it may be in a reconnect, and shutdown must stay quick).
        self.keeper.take();
        // Close the session unless the session thread holds it for a while (a reconnect):
        // then the nodes go with the session timeout instead.
        for _ in 0..30 {
            match self.session.try_lock() {
                Ok(mut s) => return s.close(),
                Err(std::sync::TryLockError::Poisoned(p)) => return p.into_inner().close(),
                Err(std::sync::TryLockError::WouldBlock) => {
                    thread::sleep(Duration::from_millis(10))
                }
            }
        }
        log::warn!(
            "{}: busy reconnecting; the session is left to time out",
            self.shown
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uris_and_paths() {
        let z = |s: &str| ZooKeeper::from_uri(&Uri::parse(s).unwrap());
        let zk = z("zookeeper://127.0.0.1:2181/services/").unwrap();
        assert_eq!(zk.base, "/services");
        let svc = Service {
            name: "redis".into(),
            ip: "10.0.0.1".into(),
            port: 6379,
            ..Service::default()
        };
        assert_eq!(zk.node_path(&svc), "/services/redis/10.0.0.1:6379");
        let root = z("zookeeper://zk1,zk2:2182").unwrap();
        assert_eq!(root.base, "");
        assert_eq!(root.lock().addrs, ["zk1:2181", "zk2:2182"]);
        assert_eq!(root.node_path(&svc), "/redis/10.0.0.1:6379");
        assert!(z("zookeeper://h:0/x").is_err());
        assert!(z("zookeeper://h/a/../b").is_err());
    }

    #[test]
    fn body_is_the_reference_shape() {
        let b = Body {
            name: "redis".into(),
            ip: "10.0.0.1".into(),
            public_port: 32768,
            private_port: 6379,
            container_id: "abc".into(),
            tags: vec!["a".into()],
            attrs: BTreeMap::from([("k".into(), "v".into())]),
        };
        assert_eq!(
            serde_json::to_value(&b).unwrap(),
            serde_json::json!({"Name":"redis","IP":"10.0.0.1","PublicPort":32768,
                "PrivatePort":6379,"ContainerID":"abc","Tags":["a"],"Attrs":{"k":"v"}})
        );
    }
}
