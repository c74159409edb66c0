//! Registry backends behind one small interface, each in its own file (or folder, where it has a
//! codec) behind a cargo feature. [`open`] turns a registry URI into one.
//!
//! - `consul` (`consul://`, `consul-unix://`, and `consul-tls://` with feature `tls`): the agent's
//!   service catalog.
//! - `kv`: one backend for every "key = where, value = what" layout, over a [`kv::Store`]:
//!   Consul KV (`consulkv`), etcd v3 (`etcd`, `coredns`) and etcd v2 (`etcd-legacy`, `skydns2`).
//! - `zookeeper`: our own client for the wire protocol, ephemeral nodes kept by a session thread.
//! - `file`: a Prometheus `file_sd` JSON file.

#[cfg(any(feature = "consulkv", feature = "_etcd3"))]
pub mod base64;
#[cfg(feature = "consul")]
pub mod consul;
#[cfg(feature = "consulkv")]
pub mod consulkv;
#[cfg(any(feature = "_etcd2", feature = "_etcd3"))]
pub mod etcd;
#[cfg(feature = "file")]
pub mod file;
#[cfg(feature = "_http")]
pub mod http;
#[cfg(feature = "_kv")]
pub mod kv;
#[cfg(feature = "zookeeper")]
pub mod zookeeper;

use std::fmt;
use std::time::Duration;

use crate::service::Service;

/// A registry adapter. Every call is made from the worker thread, one at a time.
pub trait Backend: Send {
    /// Is the registry there? Called at start (with `-retry-attempts`).
    fn ping(&mut self) -> Result<(), Error>;
    /// Registers (or re-registers: must be idempotent) one service.
    fn register(&mut self, service: &Service) -> Result<(), Error>;
    /// Removes one service. Removing one that is not there is not an error.
    fn deregister(&mut self, service: &Service) -> Result<(), Error>;
    /// The services in this backend's part of the registry (for `-cleanup`), with as much of
    /// each as the registry keeps: always the name and what [`Backend::deregister`] needs.
    fn list(&mut self) -> Result<Vec<Service>, Error>;
    /// Where the registry keeps a service: two services with the same key are the same entry
    /// (a deregister of one removes the other). The service ID by default; the key's path in
    /// the key-value stores, whose keys also carry the name; the node path in ZooKeeper.
    fn key(&self, service: &Service) -> String {
        service.id.clone()
    }
    /// Another handle on the same registry, with a connection of its own, for calls made on
    /// another thread at the same time as this handle's (a sync's registrations, see
    /// `bridge::lanes`). Only backends whose register and deregister keep no state between
    /// calls offer one; the default is `None`: every call stays on this handle.
    fn lane(&self) -> Option<Box<dyn Backend>> {
        None
    }
    /// Whether [`Backend::check`] does anything (Consul): the worker only keeps reporting
    /// Docker health where it does.
    fn has_checks(&self) -> bool {
        false
    }
    /// Reports a container's Docker health to the check of one of its services registered
    /// with `SERVICE_CHECK_DOCKER` (Consul: a TTL check). Backends without checks ignore it.
    fn check(&mut self, service: &Service, health: Health) -> Result<(), Error> {
        let _ = (service, health);
        Ok(())
    }
    /// Called every `-ttl-refresh`: keeps what was registered from expiring (and puts back what
    /// a registry that lost its data no longer has).
    fn refresh(&mut self) -> Result<(), Error> {
        Ok(())
    }
    /// Called after each batch of changes (one event, one sync); backends that write a whole
    /// view at once (the file) do it here.
    fn flush(&mut self) -> Result<(), Error> {
        Ok(())
    }
    /// Called once at shutdown (a ZooKeeper session is closed here).
    fn close(&mut self) {}
    /// Called once before the first ping: how to tell the worker that the registry lost what
    /// this daemon registered (a new ZooKeeper session), so that it registers everything again.
    /// Backends whose entries outlive a connection ignore it.
    fn on_lost(&mut self, notify: Notify) {
        let _ = notify;
    }
}

/// Tells the worker something from another thread (see [`Backend::on_lost`]).
pub type Notify = std::sync::Arc<dyn Fn() + Send + Sync>;

/// A container's HEALTHCHECK status, as the engine reports it (`State.Health.Status`, health
/// events) and as a registry check mirrors it ([`Backend::check`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Health {
    Starting,
    Healthy,
    Unhealthy,
}

impl Health {
    pub fn parse(s: &str) -> Option<Health> {
        match s.trim() {
            "starting" => Some(Health::Starting),
            "healthy" => Some(Health::Healthy),
            "unhealthy" => Some(Health::Unhealthy),
            _ => None,
        }
    }

    /// The engine's word for it.
    pub fn name(self) -> &'static str {
        match self {
            Health::Starting => "starting",
            Health::Healthy => "healthy",
            Health::Unhealthy => "unhealthy",
        }
    }
}

/// A backend failure, already carrying what was being done: `consul: register x: HTTP 400: ...`.
#[derive(Debug)]
pub struct Error(pub String);

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Error {}

/// Why a registry URI could not be opened.
#[derive(Debug, PartialEq, Eq)]
pub enum OpenError {
    /// The URI itself is wrong (exit 2, like any other usage error).
    Usage(String),
    /// The URI is fine but this build or this host cannot serve it (exit 1).
    Setup(String),
}

impl fmt::Display for OpenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OpenError::Usage(s) | OpenError::Setup(s) => f.write_str(s),
        }
    }
}

/// What every backend gets from the command line besides its URI.
#[derive(Debug, Clone, Copy, Default)]
pub struct Options {
    /// `-ttl`: for backends with expiry, how long a service lives unless refreshed.
    #[cfg_attr(not(any(feature = "_etcd2", feature = "_etcd3")), allow(dead_code))]
    pub ttl: Option<Duration>,
}

/// A registry URI split into its parts: `scheme://host:port/path`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Uri {
    pub scheme: String,
    /// `host[:port]`, possibly empty.
    pub authority: String,
    /// Everything from the first `/` after the authority, possibly empty.
    pub path: String,
}

impl Uri {
    pub fn parse(uri: &str) -> Result<Uri, OpenError> {
        let unknown = || OpenError::Setup(format!("unrecognized adapter: {uri}"));
        let (scheme, rest) = uri.split_once(':').ok_or_else(unknown)?;
        if scheme.is_empty() {
            return Err(unknown());
        }
        let rest = rest.strip_prefix("//").unwrap_or(rest);
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        };
        Ok(Uri {
            scheme: scheme.to_ascii_lowercase(),
            authority: authority.to_string(),
            path: path.to_string(),
        })
    }

    /// `host:port` from the authority, `default` when empty; checks the port.
    #[cfg_attr(not(feature = "_http"), allow(dead_code))]
    pub fn host_port(&self, default: &str) -> Result<String, OpenError> {
        let a = if self.authority.is_empty() {
            default
        } else {
            &self.authority
        };
        check_host_port(a).map_err(|e| OpenError::Usage(format!("{}: {e}", self.scheme)))?;
        Ok(a.to_string())
    }

    /// The path without its leading and trailing slashes (`/a/b/` -> `a/b`).
    #[cfg_attr(
        not(any(feature = "skydns2", feature = "coredns", feature = "zookeeper")),
        allow(dead_code)
    )]
    pub fn trimmed_path(&self) -> &str {
        self.path.trim_matches('/')
    }
}

/// Accepts `host`, `host:port`, `[v6]:port`; rejects a bad or zero port.
#[cfg_attr(not(any(feature = "_http", feature = "zookeeper")), allow(dead_code))]
pub fn check_host_port(a: &str) -> Result<(), String> {
    let port = if let Some(rest) = a.strip_prefix('[') {
        let (_, after) = rest
            .split_once(']')
            .ok_or_else(|| format!("bad address {a:?}: unclosed '['"))?;
        after.strip_prefix(':')
    } else {
        a.rsplit_once(':').map(|(_, p)| p)
    };
    if let Some(p) = port {
        match p.parse::<u16>() {
            Ok(n) if n > 0 => {}
            _ => return Err(format!("bad port {p:?} in {a:?}")),
        }
    }
    if a.is_empty() || a.starts_with(':') {
        return Err(format!("bad address {a:?}: no host"));
    }
    Ok(())
}

/// Opens the backend a registry URI names.
pub fn open(uri: &str, options: Options) -> Result<Box<dyn Backend>, OpenError> {
    let u = Uri::parse(uri)?;
    match SCHEMES.iter().find(|s| s.name == u.scheme) {
        Some(Scheme {
            open: Some(open), ..
        }) => open(&u, options),
        Some(s) => Err(OpenError::Setup(format!(
            "adapter {} is not in this build (rebuild with the cargo feature {}): {uri}",
            s.name, s.features
        ))),
        None => Err(OpenError::Setup(format!("unrecognized adapter: {uri}"))),
    }
}

/// Does the URI name a registry where `-ttl` means something (entries that expire)?
pub fn expires(uri: &str) -> bool {
    Uri::parse(uri).is_ok_and(|u| SCHEMES.iter().any(|s| s.name == u.scheme && s.expires))
}

/// Opens one scheme's backend.
type Opener = fn(&Uri, Options) -> Result<Box<dyn Backend>, OpenError>;

/// A registry scheme: its name in the URI, the cargo features that build it, whether its
/// entries expire (`-ttl`), and how to open it when this build has it.
struct Scheme {
    name: &'static str,
    features: &'static str,
    expires: bool,
    open: Option<Opener>,
}

/// Every scheme the project knows, compiled into this build or not.
const SCHEMES: &[Scheme] = &[
    scheme("consul", "consul", false, CONSUL),
    scheme("consul-unix", "consul", false, CONSUL),
    scheme("consul-tls", "consul and tls", false, CONSUL_TLS),
    scheme("consulkv", "consulkv", false, CONSULKV),
    scheme("consulkv-unix", "consulkv", false, CONSULKV),
    scheme("etcd", "etcd", true, ETCD),
    scheme("etcd-legacy", "etcd", true, ETCD_LEGACY),
    scheme("skydns2", "skydns2", true, SKYDNS2),
    scheme("coredns", "coredns", true, COREDNS),
    scheme("zookeeper", "zookeeper", false, ZOOKEEPER),
    scheme("file", "file", false, FILE),
];

const fn scheme(
    name: &'static str,
    features: &'static str,
    expires: bool,
    open: Option<Opener>,
) -> Scheme {
    Scheme {
        name,
        features,
        expires,
        open,
    }
}

// Each opener, or `None` where its feature is not in this build.
#[cfg(feature = "consul")]
const CONSUL: Option<Opener> = Some(|u, _| Ok(Box::new(consul::Consul::from_uri(u)?)));
#[cfg(not(feature = "consul"))]
const CONSUL: Option<Opener> = None;
#[cfg(all(feature = "consul", feature = "tls"))]
const CONSUL_TLS: Option<Opener> = CONSUL;
#[cfg(not(all(feature = "consul", feature = "tls")))]
const CONSUL_TLS: Option<Opener> = None;
#[cfg(feature = "consulkv")]
const CONSULKV: Option<Opener> = Some(|u, _| Ok(Box::new(consulkv::open(u)?)));
#[cfg(not(feature = "consulkv"))]
const CONSULKV: Option<Opener> = None;
#[cfg(feature = "etcd")]
const ETCD: Option<Opener> = Some(|u, o| {
    let layout = kv::Layout::path(&u.path);
    Ok(Box::new(etcd::open(u, layout, o, etcd::v3::V3::new)?))
});
#[cfg(not(feature = "etcd"))]
const ETCD: Option<Opener> = None;
#[cfg(feature = "etcd")]
const ETCD_LEGACY: Option<Opener> = Some(|u, o| {
    let layout = kv::Layout::path(&u.path);
    Ok(Box::new(etcd::open(u, layout, o, etcd::v2::V2::new)?))
});
#[cfg(not(feature = "etcd"))]
const ETCD_LEGACY: Option<Opener> = None;
#[cfg(feature = "skydns2")]
const SKYDNS2: Option<Opener> = Some(|u, o| {
    let layout = kv::Layout::dns(u).map_err(OpenError::Usage)?;
    Ok(Box::new(etcd::open(u, layout, o, etcd::v2::V2::new)?))
});
#[cfg(not(feature = "skydns2"))]
const SKYDNS2: Option<Opener> = None;
#[cfg(feature = "coredns")]
const COREDNS: Option<Opener> = Some(|u, o| {
    let layout = kv::Layout::dns(u).map_err(OpenError::Usage)?;
    Ok(Box::new(etcd::open(u, layout, o, etcd::v3::V3::new)?))
});
#[cfg(not(feature = "coredns"))]
const COREDNS: Option<Opener> = None;
#[cfg(feature = "zookeeper")]
const ZOOKEEPER: Option<Opener> = Some(|u, _| Ok(Box::new(zookeeper::ZooKeeper::from_uri(u)?)));
#[cfg(not(feature = "zookeeper"))]
const ZOOKEEPER: Option<Opener> = None;
#[cfg(feature = "file")]
const FILE: Option<Opener> =
    Some(|u, _| Ok(Box::new(file::File::from_uri(u).map_err(OpenError::Usage)?)));
#[cfg(not(feature = "file"))]
const FILE: Option<Opener> = None;

/// `CONSUL_HTTP_TOKEN`, sent as `X-Consul-Token` and never logged.
#[cfg(any(feature = "consul", feature = "consulkv"))]
pub fn consul_token() -> Option<String> {
    std::env::var("CONSUL_HTTP_TOKEN")
        .ok()
        .filter(|t| !t.is_empty())
}

/// A Consul agent's ping: `GET /v1/status/leader` names a leader.
#[cfg(any(feature = "consul", feature = "consulkv"))]
pub fn consul_leader(http: &http::Client) -> Result<(), String> {
    let leader = http.get("/v1/status/leader").map_err(|e| e.to_string())?;
    match leader.trim().trim_matches('"') {
        "" => Err("no cluster leader".into()),
        _ => Ok(()),
    }
}

/// Where a Consul agent's HTTP API is, for `consul`, `consul-tls`, `consul-unix` and the KV
/// schemes: the URI's host, else `CONSUL_HTTP_ADDR`, else 127.0.0.1:8500; for `-unix`, the
/// socket `path` the caller split off the URI.
#[cfg(any(feature = "consul", feature = "consulkv"))]
pub fn consul_target(u: &Uri, socket: Option<&str>) -> Result<http::Target, OpenError> {
    const DEFAULT_ADDR: &str = "127.0.0.1:8500";
    if let Some(path) = socket {
        if path.is_empty() || !u.authority.is_empty() {
            return Err(OpenError::Usage(format!(
                "{}: no socket path in the registry URI ({}:///path/to/consul.sock)",
                u.scheme, u.scheme
            )));
        }
        return Ok(http::Target::Unix(path.into()));
    }
    let tls = u.scheme.ends_with("-tls");
    let addr = if u.authority.is_empty() {
        let env = std::env::var("CONSUL_HTTP_ADDR")
            .ok()
            .filter(|s| !s.is_empty());
        let a = env.as_deref().unwrap_or(DEFAULT_ADDR);
        let a = a.trim_end_matches('/');
        let a = match (a.split_once("://"), tls) {
            (None, _) => a,
            (Some(("http", rest)), false) | (Some(("https", rest)), true) => rest,
            _ => {
                return Err(OpenError::Usage(format!(
                    "{}: CONSUL_HTTP_ADDR {a:?}: only {}://host:port or host:port here",
                    u.scheme,
                    if tls { "https" } else { "http" }
                )))
            }
        };
        check_host_port(a)
            .map_err(|e| OpenError::Usage(format!("{}: CONSUL_HTTP_ADDR: {e}", u.scheme)))?;
        a.to_string()
    } else {
        u.host_port(DEFAULT_ADDR)?
    };
    #[cfg(feature = "tls")]
    if tls {
        return Ok(http::Target::Tls(
            addr,
            http::TlsFiles::from_env("CONSUL_CACERT", "CONSUL_CLIENT_CERT", "CONSUL_CLIENT_KEY"),
        ));
    }
    Ok(http::Target::Tcp(addr))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_uris_are_one_line_reasons_with_their_exit_class() {
        let err = |s: &str| open(s, Options::default()).err().expect(s);
        assert_eq!(
            err("nosuch://x"),
            OpenError::Setup("unrecognized adapter: nosuch://x".into())
        );
        assert!(matches!(err("no-colon"), OpenError::Setup(_)));
        #[cfg(feature = "consul")]
        assert!(matches!(err("consul://h:99999"), OpenError::Usage(m) if m.contains("bad port")));
        #[cfg(feature = "consulkv")]
        assert!(matches!(err("consulkv://h:8500"), OpenError::Usage(m) if m.contains("prefix")));
        #[cfg(feature = "skydns2")]
        assert!(matches!(err("skydns2://h:2379"), OpenError::Usage(m) if m.contains("domain")));
        #[cfg(feature = "coredns")]
        assert!(matches!(err("coredns://h:2379/"), OpenError::Usage(m) if m.contains("domain")));
        #[cfg(feature = "consul")]
        assert!(matches!(err("consul-unix://"), OpenError::Usage(m) if m.contains("socket")));
    }
}
