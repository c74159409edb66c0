//! Registry backends behind one small interface, each in its own file behind a cargo feature.
//! [`open`] turns a registry URI into one.

#[cfg(feature = "consul")]
pub mod consul;
#[cfg(feature = "file")]
pub mod file;

use std::fmt;

use crate::service::Service;

/// A registry adapter. Every call is made from the worker thread, one at a time.
pub trait Backend: Send {
    /// Is the registry there? Called at start (with `-retry-attempts`).
    fn ping(&mut self) -> Result<(), Error>;
    /// Registers (or re-registers: must be idempotent) one service.
    fn register(&mut self, service: &Service) -> Result<(), Error>;
    /// Removes one service. Removing one that is not there is not an error.
    fn deregister(&mut self, service: &Service) -> Result<(), Error>;
    /// IDs of the services in the registry (for `-cleanup`, which the lifecycle work uses).
    #[allow(dead_code)]
    fn list(&mut self) -> Result<Vec<String>, Error>;
    /// Called after each batch of changes (one event, one sync); backends that write a whole
    /// view at once (the file) do it here.
    fn flush(&mut self) -> Result<(), Error> {
        Ok(())
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
    pub fn parse(uri: &str) -> Result<Uri, String> {
        let (scheme, rest) = uri
            .split_once(':')
            .ok_or_else(|| format!("unrecognized adapter: {uri}"))?;
        if scheme.is_empty() {
            return Err(format!("unrecognized adapter: {uri}"));
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
    #[cfg_attr(not(feature = "consul"), allow(dead_code))] // for the network backends
    pub fn host_port(&self, default: &str) -> Result<String, String> {
        let a = if self.authority.is_empty() {
            default
        } else {
            &self.authority
        };
        check_host_port(a).map_err(|e| format!("{}: {e}", self.scheme))?;
        Ok(a.to_string())
    }
}

/// Accepts `host`, `host:port`, `[v6]:port`; rejects a bad or zero port.
#[cfg_attr(not(feature = "consul"), allow(dead_code))] // for the network backends
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

/// Opens the backend a registry URI names. The error is a one-line reason (exit status 1).
pub fn open(uri: &str) -> Result<Box<dyn Backend>, String> {
    let u = Uri::parse(uri)?;
    match u.scheme.as_str() {
        #[cfg(feature = "consul")]
        "consul" => Ok(Box::new(consul::Consul::from_uri(&u)?)),
        #[cfg(feature = "file")]
        "file" => Ok(Box::new(file::File::from_uri(&u)?)),
        s if KNOWN.contains(&s) => Err(format!(
            "adapter {s} is not in this build (rebuild with its cargo feature): {uri}"
        )),
        _ => Err(format!("unrecognized adapter: {uri}")),
    }
}

/// Every scheme the project knows, compiled in or not.
const KNOWN: &[&str] = &[
    "consul",
    "consul-tls",
    "consul-unix",
    "consulkv",
    "consulkv-unix",
    "etcd",
    "etcd-legacy",
    "skydns2",
    "coredns",
    "zookeeper",
    "file",
];
