//! etcd (spec 6.3, 6.4): the v3 JSON gateway (`etcd://`, `coredns://`) and the v2 keys API
//! (`etcd-legacy://`, `skydns2://`), as [`Store`](super::kv::Store)s under the key layouts of
//! [`super::kv`]. `-ttl` is a lease (v3) or a key TTL (v2), kept alive by
//! [`Backend::refresh`](super::Backend::refresh) every `-ttl-refresh`. TLS with
//! `ETCD_CA_CERT_FILE`, `ETCD_CERT_FILE`, `ETCD_KEY_FILE` when the `tls` feature is on.

#[cfg(feature = "_etcd2")]
pub mod v2;
#[cfg(feature = "_etcd3")]
pub mod v3;

use super::http::{Client, Target};
use super::{OpenError, Options, Uri};

const DEFAULT_ADDR: &str = "127.0.0.1:2379";

/// The client for the URI's host (default 127.0.0.1:2379), over TLS when an `ETCD_*` file is
/// set, then the endpoints of `ETCD_ENDPOINTS` (fayrus's variable; Decisions F4).
fn client(u: &Uri) -> Result<Client, OpenError> {
    let addr = u.host_port(DEFAULT_ADDR)?;
    let target = tls_target(u, addr)?;
    let extra = endpoints(&std::env::var("ETCD_ENDPOINTS").unwrap_or_default());
    Ok(Client::new(&target)
        .map_err(|e| OpenError::Setup(format!("{}: {e}", u.scheme)))?
        .with_endpoints(&extra))
}

/// `ETCD_ENDPOINTS`: comma-separated, each trimmed, empty ones dropped.
fn endpoints(v: &str) -> Vec<String> {
    v.split(',')
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .map(String::from)
        .collect()
}

#[cfg(test)]
#[test]
fn etcd_endpoints_n1_to_n6() {
    assert!(endpoints("").is_empty());
    assert_eq!(
        endpoints("etcd2:2379,etcd3:2379"),
        ["etcd2:2379", "etcd3:2379"]
    );
    assert_eq!(
        endpoints(" etcd2:2379 , ,etcd3:2379 "),
        ["etcd2:2379", "etcd3:2379"]
    );
    assert_eq!(endpoints("https://e:2379/"), ["https://e:2379/"]);
}

#[cfg(feature = "tls")]
fn tls_target(_: &Uri, addr: String) -> Result<Target, OpenError> {
    let files =
        super::http::TlsFiles::from_env("ETCD_CA_CERT_FILE", "ETCD_CERT_FILE", "ETCD_KEY_FILE");
    Ok(if files.is_empty() {
        Target::Tcp(addr)
    } else {
        Target::Tls(addr, files)
    })
}

#[cfg(not(feature = "tls"))]
fn tls_target(u: &Uri, addr: String) -> Result<Target, OpenError> {
    for var in ["ETCD_CA_CERT_FILE", "ETCD_CERT_FILE", "ETCD_KEY_FILE"] {
        if std::env::var_os(var).is_some_and(|v| !v.is_empty()) {
            return Err(OpenError::Setup(format!(
                "{}: {var} is set but this build has no TLS (cargo feature tls)",
                u.scheme
            )));
        }
    }
    Ok(Target::Tcp(addr))
}

/// `-ttl` in whole seconds, as etcd takes it.
fn ttl_secs(options: Options) -> Option<u64> {
    options.ttl.map(|d| d.as_secs().max(1))
}

/// A key-value backend on an etcd store (`v3::V3::new` or `v2::V2::new`) at the URI's host.
pub fn open<S: super::kv::Store>(
    u: &Uri,
    layout: super::kv::Layout,
    options: Options,
    store: fn(Client, &str, Option<u64>) -> S,
) -> Result<super::kv::Kv<S>, OpenError> {
    let http = client(u)?;
    Ok(super::kv::Kv::new(
        store(http, &u.scheme, ttl_secs(options)),
        layout,
    ))
}
