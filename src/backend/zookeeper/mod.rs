//! ZooKeeper (spec 6.5) through our own client for its wire protocol ([`codec`]).
//!
//! Each service is an ephemeral node `<base>/<name>/<ip>:<port>` holding
//! `{"Name","IP","PublicPort","PrivatePort","ContainerID","Tags","Attrs"}`, under a persistent
//! `<base>/<name>`. Ephemeral nodes live as long as the session, which the session thread
//! ([`session`]) keeps: it owns the connection, answers the worker's calls, pings, and
//! reconnects without blocking the worker. The worker's outbox is the only retry queue: a call
//! made while disconnected fails at once and is tried again there; a session lost for good
//! (expired, or a server that lost its data) is reported to the worker, which registers
//! everything again.
//!
//! A node a stopped daemon left behind is owned by its old session and vanishes when that
//! session times out; registering the same node again takes it over for the current session.
//! At shutdown the session is closed, so the ephemeral nodes go at once.

pub mod codec;
pub mod session;

use std::collections::BTreeMap;
use std::sync::mpsc::{self, Sender};
use std::thread;
use std::time::Duration;

use serde::Serialize;

use self::session::{Input, Request, Session, ZkError};
use super::{Backend, Error, Notify, OpenError, Uri};
use crate::service::Service;

const DEFAULT_ADDR: &str = "127.0.0.1:2181";
/// How long shutdown waits for the session to close before leaving it to time out.
const CLOSE_WAIT: Duration = Duration::from_millis(500);

pub struct ZooKeeper {
    addrs: Vec<String>,
    base: String,
    shown: String,
    /// The session thread's input; `None` until the first ping connects.
    session: Option<Sender<Input>>,
    /// Told when a new session replaced the one the nodes were in.
    lost: Option<Notify>,
    /// A session thread was started before.
    started: bool,
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
            addrs,
            session: None,
            lost: None,
            started: false,
            base: if base.is_empty() {
                String::new()
            } else {
                format!("/{base}")
            },
        })
    }

    fn node_path(&self, s: &Service) -> String {
        format!("{}/{}/{}", self.base, s.name, s.address())
    }

    fn err(&self, what: &str, e: impl std::fmt::Display) -> Error {
        Error(format!("{}: {what}: {e}", self.shown))
    }

    /// One request to the session thread, and its answer. A session thread that is gone
    /// (it cannot end by itself) is started again by the next ping.
    fn call(&mut self, req: Request) -> Result<Vec<Vec<u8>>, ZkError> {
        let tx = self.session.as_ref().ok_or(ZkError::Disconnected)?;
        let (reply, answer) = mpsc::sync_channel(1);
        let answer = tx
            .send(Input::Call(req, reply))
            .ok()
            .and_then(|()| answer.recv().ok());
        answer.unwrap_or_else(|| {
            self.session = None;
            Err(ZkError::Disconnected)
        })
    }

    /// The first connect, from the calling thread (start-up); then the session thread takes
    /// the connection.
    fn start(&mut self) -> Result<(), ZkError> {
        let dialed = session::first_dial(&self.addrs)?;
        let s = Session::new(self.addrs.clone(), dialed, self.shown.clone());
        let (tx, rx) = mpsc::channel();
        let me = tx.clone();
        let lost = self.lost.clone();
        thread::Builder::new()
            .name("zookeeper".into())
            .spawn(move || s.run(rx, me, lost))
            .map_err(|e| ZkError::Protocol(format!("cannot start the session thread: {e}")))?;
        self.session = Some(tx);
        self.started = true;
        Ok(())
    }
}

/// Without `close` (the worker ended some other way), the session thread is still told to end.
impl Drop for ZooKeeper {
    fn drop(&mut self) {
        if let Some(tx) = self.session.take() {
            let (reply, _) = mpsc::sync_channel(1);
            let _ = tx.send(Input::Call(Request::Close, reply));
        }
    }
}

impl Backend for ZooKeeper {
    fn ping(&mut self) -> Result<(), Error> {
        let result = match self.session {
            None => {
                let again = self.started;
                self.start().map(|()| {
                    // A session thread that is gone took its session along: the worker
                    // registers everything in the new one.
                    if let (true, Some(notify)) = (again, &self.lost) {
                        notify();
                    }
                })
            }
            Some(_) => self.call(Request::Ping).map(|_| ()),
        };
        result.map_err(|e| self.err("ping", e))
    }

    fn on_lost(&mut self, notify: Notify) {
        self.lost = Some(notify);
    }

    fn key(&self, s: &Service) -> String {
        self.node_path(s)
    }

    fn register(&mut self, s: &Service) -> Result<(), Error> {
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
        let path = self.node_path(s);
        self.call(Request::Create { path, body })
            .map(|_| ())
            .map_err(|e| self.err(&format!("register {}", s.id), e))
    }

    fn deregister(&mut self, s: &Service) -> Result<(), Error> {
        let path = self.node_path(s);
        self.call(Request::Delete { path })
            .map(|_| ())
            .map_err(|e| self.err(&format!("deregister {}", s.id), e))
    }

    /// Every service node under the base path with a body this project writes. The body has no
    /// service ID: it is left empty (ZooKeeper removes a dead daemon's nodes by itself).
    fn list(&mut self) -> Result<Vec<Service>, Error> {
        let base = self.base.clone();
        let bodies = self
            .call(Request::List { base })
            .map_err(|e| self.err("list", e))?;
        Ok(bodies
            .iter()
            .filter_map(|data| serde_json::from_slice::<Body>(data).ok())
            .map(|b| Service {
                name: b.name,
                ip: b.ip,
                port: b.public_port,
                exposed_port: b.private_port,
                container_id: b.container_id,
                tags: b.tags,
                attrs: b.attrs,
                ..Service::default()
            })
            .collect())
    }

    /// Closes the session, so its nodes go at once; a session thread busy for longer (a ping on
    /// a dead connection) is left, and the nodes go with the session timeout.
    fn close(&mut self) {
        let Some(tx) = self.session.take() else {
            return;
        };
        let (reply, answer) = mpsc::sync_channel(1);
        if tx.send(Input::Call(Request::Close, reply)).is_ok()
            && answer.recv_timeout(CLOSE_WAIT).is_err()
        {
            log::warn!("{}: busy; the session is left to time out", self.shown);
        }
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
        assert_eq!(root.addrs, ["zk1:2181", "zk2:2182"]);
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
