//! One backend for every registry that is a key-value store with a key per service: Consul KV,
//! etcd v3 and v2, and the SkyDNS 2 / CoreDNS layout on top of etcd. A [`Layout`] says which key
//! and value a service gets; a [`Store`] speaks one store's API.

use std::collections::BTreeMap;

use super::{Backend, Error, Uri};
use crate::service::Service;

/// One key-value store's API. Keys are whole paths (`/services/redis/h:redis:6379`).
pub trait Store: Send {
    /// The store and where it is, for messages: `etcd http://127.0.0.1:2379`.
    fn name(&self) -> &str;
    fn ping(&mut self) -> Result<(), String>;
    fn put(&mut self, key: &str, value: &str) -> Result<(), String>;
    /// Deleting a key that is not there is not an error.
    fn delete(&mut self, key: &str) -> Result<(), String>;
    /// Every key (with its value) under `prefix`.
    fn list(&mut self, prefix: &str) -> Result<Vec<(String, String)>, String>;
    /// Keeps `all` (every key this daemon put, with its value) from expiring; puts back the
    /// ones the store lost. Stores without expiry do nothing.
    fn refresh(&mut self, all: &BTreeMap<String, String>) -> Result<(), String> {
        let _ = all;
        Ok(())
    }
}

/// Which key and value a service gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Layout {
    /// `<prefix>/<name>/<id>` = `<ip>:<port>` (Consul KV, etcd).
    #[cfg_attr(not(any(feature = "consulkv", feature = "etcd")), allow(dead_code))]
    Path { prefix: String },
    /// `/skydns/<domain labels reversed>/<name>/<id>` = `{"host":"<ip>","port":<port>}`.
    #[cfg_attr(not(any(feature = "skydns2", feature = "coredns")), allow(dead_code))]
    Dns { root: String },
}

impl Layout {
    /// A URI's path as a key prefix: `/services/` -> `/services`, none -> `` (keys `/name/id`).
    #[cfg_attr(not(any(feature = "consulkv", feature = "etcd")), allow(dead_code))]
    pub fn path(path: &str) -> Layout {
        let p = path.trim_matches('/');
        Layout::Path {
            prefix: if p.is_empty() {
                String::new()
            } else {
                format!("/{p}")
            },
        }
    }

    /// The URI's path as a DNS domain, required: `/cluster.local` -> `/skydns/local/cluster`.
    #[cfg_attr(not(any(feature = "skydns2", feature = "coredns")), allow(dead_code))]
    pub fn dns(u: &Uri) -> Result<Layout, String> {
        let domain = u.trimmed_path().trim_matches('.');
        if domain.is_empty() {
            return Err(format!(
                "{}: no DNS domain in the registry URI ({}://host:port/cluster.local)",
                u.scheme, u.scheme
            ));
        }
        if domain.contains('/') || domain.split('.').any(str::is_empty) {
            return Err(format!("{}: {domain:?} is not a DNS domain", u.scheme));
        }
        let mut root = String::from("/skydns");
        for label in domain.split('.').rev() {
            root.push('/');
            root.push_str(&label.to_ascii_lowercase());
        }
        Ok(Layout::Dns { root })
    }

    /// Everything this layout writes is under this key.
    fn root(&self) -> &str {
        match self {
            Layout::Path { prefix } => prefix,
            Layout::Dns { root } => root,
        }
    }

    pub fn key(&self, s: &Service) -> String {
        format!("{}/{}/{}", self.root(), s.name, s.id)
    }

    pub fn value(&self, s: &Service) -> String {
        match self {
            Layout::Path { .. } => s.address(),
            Layout::Dns { .. } => serde_json::to_string(&Record {
                host: s.ip.clone(),
                port: s.port,
            })
            .expect("a record serializes"),
        }
    }

    /// A key and value read back, as a service: `None` for keys not of this layout's shape.
    pub fn parse(&self, key: &str, value: &str) -> Option<Service> {
        let rest = key.strip_prefix(self.root())?.strip_prefix('/')?;
        let (name, id) = rest.split_once('/')?;
        if name.is_empty() || id.is_empty() {
            return None;
        }
        let (ip, port) = match self {
            Layout::Path { .. } => {
                let (ip, port) = value.rsplit_once(':')?;
                let ip = ip.trim_start_matches('[').trim_end_matches(']');
                (ip.to_string(), port.parse().ok()?)
            }
            Layout::Dns { .. } => {
                let r: Record = serde_json::from_str(value).ok()?;
                (r.host, r.port)
            }
        };
        Some(Service {
            id: id.to_string(),
            name: name.to_string(),
            ip,
            port,
            ..Service::default()
        })
    }
}

/// A SkyDNS / CoreDNS record.
#[derive(serde::Serialize, serde::Deserialize)]
struct Record {
    host: String,
    port: u16,
}

/// DNS labels are letters, digits and `-`; the default ID `host:container:port` is not.
fn dns_safe(s: &str) -> bool {
    !s.is_empty() && s.len() <= 63 && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

pub struct Kv<S: Store> {
    store: S,
    layout: Layout,
    /// Every key this daemon put and its value: what a refresh keeps alive or puts back.
    put: BTreeMap<String, String>,
}

impl<S: Store> Kv<S> {
    pub fn new(store: S, layout: Layout) -> Kv<S> {
        Kv {
            store,
            layout,
            put: BTreeMap::new(),
        }
    }
}

impl<S: Store> Backend for Kv<S> {
    fn ping(&mut self) -> Result<(), Error> {
        self.store
            .ping()
            .map_err(|e| Error(format!("{}: ping: {e}", self.store.name())))
    }

    fn key(&self, s: &Service) -> String {
        self.layout.key(s)
    }

    fn register(&mut self, s: &Service) -> Result<(), Error> {
        let key = self.layout.key(s);
        let value = self.layout.value(s);
        if !self.put.contains_key(&key) {
            if let Layout::Dns { .. } = self.layout {
                for (what, v) in [("ID", &s.id), ("name", &s.name)] {
                    if !dns_safe(v) {
                        log::warn!(
                            "{}: service {what} {v:?} is not a DNS label (letters, digits, '-'); DNS lookups of it may fail: set SERVICE_{} on the container",
                            self.store.name(),
                            if what == "ID" { "ID" } else { "NAME" }
                        );
                    }
                }
            }
        }
        let result = self.store.put(&key, &value);
        self.put.insert(key, value);
        result.map_err(|e| Error(format!("{}: register {}: {e}", self.store.name(), s.id)))
    }

    fn deregister(&mut self, s: &Service) -> Result<(), Error> {
        let key = self.layout.key(s);
        // No longer wanted whatever happens: a refresh must not keep it alive.
        self.put.remove(&key);
        self.store
            .delete(&key)
            .map_err(|e| Error(format!("{}: deregister {}: {e}", self.store.name(), s.id)))
    }

    fn list(&mut self) -> Result<Vec<Service>, Error> {
        let root = format!("{}/", self.layout.root());
        let kvs = self
            .store
            .list(&root)
            .map_err(|e| Error(format!("{}: list {root}: {e}", self.store.name())))?;
        Ok(kvs
            .iter()
            .filter_map(|(k, v)| self.layout.parse(k, v))
            .collect())
    }

    fn refresh(&mut self) -> Result<(), Error> {
        self.store
            .refresh(&self.put)
            .map_err(|e| Error(format!("{}: refresh: {e}", self.store.name())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn svc() -> Service {
        Service {
            id: "host:redis:6379".into(),
            name: "redis".into(),
            ip: "192.168.1.102".into(),
            port: 32768,
            ..Service::default()
        }
    }

    fn uri(s: &str) -> Uri {
        Uri::parse(s).unwrap()
    }

    #[test]
    fn path_layout() {
        let l = Layout::path("/services/");
        let s = svc();
        assert_eq!(l.key(&s), "/services/redis/host:redis:6379");
        assert_eq!(l.value(&s), "192.168.1.102:32768");
        let back = l.parse(&l.key(&s), &l.value(&s)).unwrap();
        assert_eq!((back.id, back.name, back.port), (s.id, s.name, 32768));
        assert_eq!(l.parse("/other/redis/x", "1.2.3.4:1"), None);
        assert_eq!(l.parse("/services/redis", "1.2.3.4:1"), None);
        assert_eq!(l.parse("/services/redis/x", "nonsense"), None);
        let none = Layout::path("");
        assert_eq!(none.key(&svc()), "/redis/host:redis:6379");
        let v6 = Service {
            ip: "fd00::1".into(),
            ..svc()
        };
        assert_eq!(l.value(&v6), "[fd00::1]:32768");
        assert_eq!(
            l.parse("/services/redis/x", "[fd00::1]:32768").unwrap().ip,
            "fd00::1"
        );
    }

    #[test]
    fn dns_layout() {
        let l = Layout::dns(&uri("skydns2://127.0.0.1:2379/cluster.local")).unwrap();
        let s = svc();
        assert_eq!(l.key(&s), "/skydns/local/cluster/redis/host:redis:6379");
        let v: serde_json::Value = serde_json::from_str(&l.value(&s)).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"host": "192.168.1.102", "port": 32768})
        );
        assert_eq!(
            l.parse(&l.key(&s), &l.value(&s)).unwrap().ip,
            "192.168.1.102"
        );
        assert_eq!(
            Layout::dns(&uri("coredns://h/Skydns.Local.")).unwrap(),
            Layout::Dns {
                root: "/skydns/local/skydns".into()
            }
        );
        for bad in [
            "skydns2://h:1",
            "skydns2://h:1/",
            "skydns2://h/a..b",
            "skydns2://h/a/b",
        ] {
            assert!(Layout::dns(&uri(bad)).is_err(), "{bad}");
        }
    }

    #[test]
    fn dns_safety() {
        assert!(dns_safe("redis-1"));
        assert!(!dns_safe("host:redis:6379"));
        assert!(!dns_safe(""));
        assert!(!dns_safe(&"a".repeat(64)));
    }

    /// A store in memory, to check what the backend asks of it; `down` fails every call.
    #[derive(Default)]
    struct Mem {
        keys: BTreeMap<String, String>,
        refreshed: Vec<usize>,
        down: bool,
    }

    impl Store for Mem {
        fn name(&self) -> &str {
            "mem"
        }
        fn ping(&mut self) -> Result<(), String> {
            Ok(())
        }
        fn put(&mut self, k: &str, v: &str) -> Result<(), String> {
            if self.down {
                return Err("down".into());
            }
            self.keys.insert(k.into(), v.into());
            Ok(())
        }
        fn delete(&mut self, k: &str) -> Result<(), String> {
            if self.down {
                return Err("down".into());
            }
            self.keys.remove(k);
            Ok(())
        }
        fn list(&mut self, prefix: &str) -> Result<Vec<(String, String)>, String> {
            Ok(self
                .keys
                .iter()
                .filter(|(k, _)| k.starts_with(prefix))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect())
        }
        fn refresh(&mut self, all: &BTreeMap<String, String>) -> Result<(), String> {
            if self.down {
                return Err("down".into());
            }
            self.refreshed.push(all.len());
            Ok(())
        }
    }

    /// A backend on a memory store, and two services for it.
    fn two() -> (Kv<Mem>, Service, Service) {
        let b = Service {
            id: "host:web:80".into(),
            name: "web".into(),
            ..svc()
        };
        (Kv::new(Mem::default(), Layout::path("/svc")), svc(), b)
    }

    #[test]
    fn a_failed_delete_is_not_kept_alive_by_a_refresh() {
        let (mut kv, a, b) = two();
        kv.register(&a).unwrap();
        kv.register(&b).unwrap();
        kv.store.down = true;
        assert!(kv.deregister(&a).is_err());
        assert!(kv.refresh().is_err());
        kv.store.down = false;
        // The worker retries the delete; meanwhile a refresh keeps only b alive.
        kv.refresh().unwrap();
        assert_eq!(kv.store.refreshed, [1]);
    }

    #[test]
    fn backend_puts_lists_refreshes_and_deletes() {
        let (mut kv, a, b) = two();
        kv.register(&a).unwrap();
        kv.register(&b).unwrap();
        kv.store.put("/elsewhere/x/y", "1.1.1.1:1").unwrap();
        let mut ids: Vec<_> = kv.list().unwrap().into_iter().map(|s| s.id).collect();
        ids.sort();
        assert_eq!(ids, ["host:redis:6379", "host:web:80"]);
        kv.refresh().unwrap();
        kv.deregister(&a).unwrap();
        kv.refresh().unwrap();
        assert_eq!(kv.store.refreshed, [2, 1]);
        assert_eq!(kv.list().unwrap().len(), 1);
    }
}
