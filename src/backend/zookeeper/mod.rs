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
            super::check_host_port(h).map_err(|e| format!("zookeeper: {e}"))?;
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
            Ok(h) => self.keeper = Some((tx, h)),
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
        let result = if s.conn.is_some() {
            s.ping()
        } else {
            s.connect()
        };
        match result {
            Ok(()) => {
                if failing {
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
    conn: Option<Conn>,
    id: i64,
    passwd: Vec<u8>,
    /// The timeout the server granted.
    timeout: Duration,
    last_zxid: i64,
    xid: i32,
    /// Every ephemeral node wanted, with its body: created again in a new session.
    nodes: BTreeMap<String, Vec<u8>>,
    /// Nodes deregistered while the connection was down: deleted when it is back.
    gone: BTreeSet<String>,
}

impl Session {
    fn new(addrs: Vec<String>) -> Session {
        Session {
            addrs,
            conn: None,
            id: 0,
            passwd: Vec::new(),
            timeout: Duration::from_millis(SESSION_TIMEOUT_MS as u64),
            last_zxid: 0,
            xid: 0,
            nodes: BTreeMap::new(),
            gone: BTreeSet::new(),
        }
    }

    fn open_stream(&self) -> Result<TcpStream, String> {
        let mut last = String::from("no address");
        for a in &self.addrs {
            let sockaddrs = match a.to_socket_addrs() {
                Ok(s) => s,
                Err(e) => {
                    last = format!("{a}: {e}");
                    continue;
                }
            };
            for sa in sockaddrs {
                match TcpStream::connect_timeout(&sa, CONNECT_TIMEOUT) {
                    Ok(s) => return Ok(s),
                    Err(e) => last = format!("connect {a}: {e}"),
                }
            }
        }
        Err(last)
    }

    /// Connects and resumes the session, or starts a new one (creating every node again) when
    /// the old one is gone. Also deletes the nodes deregistered while disconnected.
    fn connect(&mut self) -> Result<(), String> {
        self.conn = None;
        let old = self.id;
        let stream = self.open_stream()?;
        stream
            .set_read_timeout(Some(self.timeout))
            .and_then(|()| stream.set_write_timeout(Some(self.timeout)))
            .map_err(|e| format!("socket setup: {e}"))?;
        let _ = stream.set_nodelay(true);
        let mut conn = Conn {
            stream,
            frames: Frames::default(),
        };
        let hello =
            codec::connect_request(self.last_zxid, SESSION_TIMEOUT_MS, self.id, &self.passwd);
        conn.stream
            .write_all(&hello)
            .map_err(|e| format!("handshake: {e}"))?;
        let frame = read_frame(&mut conn).map_err(|e| format!("handshake: {e}"))?;
        let c = codec::connect_response(&frame).map_err(|e| format!("handshake: {e}"))?;
        if c.timeout_ms <= 0 && self.id == 0 {
            return Err("handshake: the server granted no session".into());
        }
        if c.timeout_ms <= 0 {
            // The server no longer knows the session: start a new one.
            log::warn!(
                "zookeeper: session 0x{:x} expired; starting a new one",
                self.id
            );
            self.id = 0;
            self.passwd.clear();
            return self.connect();
        }
        self.id = c.session_id;
        self.passwd = c.passwd;
        self.timeout = Duration::from_millis(c.timeout_ms as u64);
        let _ = conn.stream.set_read_timeout(Some(self.timeout));
        self.conn = Some(conn);
        if self.id != old {
            log::info!(
                "zookeeper: session 0x{:x} (timeout {:?})",
                self.id,
                self.timeout
            );
            // Nodes deregistered meanwhile died with the old session.
            self.gone.clear();
            if !self.nodes.is_empty() {
                let nodes = self.nodes.clone();
                for (path, body) in &nodes {
                    self.create_node(path, body)?;
                }
                log::info!(
                    "zookeeper: created {} nodes again in the new session",
                    nodes.len()
                );
            }
        }
        for path in std::mem::take(&mut self.gone) {
            if let Err(e) = self.delete_node(&path) {
                self.gone.insert(path);
                return Err(e);
            }
        }
        Ok(())
    }

    /// Sends one request and waits for its answer; a broken connection is dropped (the next
    /// call or the session thread connects again).
    fn call(&mut self, what: &str, build: impl FnOnce(i32) -> Vec<u8>) -> Result<Answer, String> {
        if self.conn.is_none() {
            self.connect()?;
        }
        self.xid = self.xid.wrapping_add(1).max(1);
        let xid = self.xid;
        let result = self.exchange(xid, &build(xid));
        match result {
            Ok(a) if a.err == codec::SESSION_EXPIRED => {
                self.conn = None;
                self.id = 0;
                self.passwd.clear();
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
        let conn = self.conn.as_mut().ok_or("not connected")?;
        conn.stream.write_all(frame).map_err(|e| e.to_string())?;
        loop {
            let frame = read_frame(conn)?;
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
        let conn = self.conn.as_mut().ok_or("not connected")?;
        let result = conn
            .stream
            .write_all(&codec::ping())
            .map_err(|e| e.to_string())
            .and_then(|()| loop {
                let frame = read_frame(conn)?;
                let r = codec::reply(&frame).map_err(|e| e.to_string())?;
                if r.xid == codec::XID_PING {
                    return Ok(r.err);
                }
            });
        match result {
            Ok(codec::OK) => Ok(()),
            Ok(err) => {
                self.conn = None;
                if err == codec::SESSION_EXPIRED {
                    self.id = 0;
                }
                Err(format!("ping: {}", codec::error_name(err)))
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
            let _ = read_frame(&mut conn);
        }
        log::info!("zookeeper: session 0x{:x} closed", self.id);
    }
}

/// Reads until one whole frame is there.
fn read_frame(conn: &mut Conn) -> Result<Vec<u8>, String> {
    let mut buf = [0u8; 4096];
    loop {
        if let Some(f) = conn.frames.next().map_err(|e| e.to_string())? {
            return Ok(f);
        }
        match conn.stream.read(&mut buf) {
            Ok(0) => {
                conn.frames.clear();
                return Err("server closed the connection".into());
            }
            Ok(n) => conn.frames.push(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
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
            // Wanted even if the server is away now: the reconnect creates it.
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
        // Stop the session thread first, so nothing reconnects after the close.
        if let Some((tx, handle)) = self.keeper.take() {
            drop(tx);
            let _ = handle.join();
        }
        self.lock().close();
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
