//! The HTTP client the registry backends share (Consul, Consul KV, etcd): one keep-alive `ureq`
//! agent per backend, over TCP, TLS (feature `tls`) or a Unix socket, with a bounded timeout and
//! no proxy. Answers come back as the status's class: a 2xx body, or the server's own words.

// Each backend uses the part of this client it needs: a build with fewer backends leaves some
// of it unused. The full build checks that all of it is used.
#![cfg_attr(
    not(all(
        feature = "consul",
        feature = "consulkv",
        feature = "etcd",
        feature = "tls"
    )),
    allow(dead_code)
)]

use std::path::{Path, PathBuf};
use std::time::Duration;

/// How long one call may take, connect to last byte.
const TIMEOUT: Duration = Duration::from_secs(10);
/// Largest answer read (a busy agent's service list, a big etcd range).
const MAX_RESPONSE: u64 = 16 * 1024 * 1024;
/// ureq's input and output buffer, each.
const BUFFER: usize = 8 * 1024;

/// Where a registry's HTTP API is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// `host:port`, plain HTTP.
    Tcp(String),
    /// `host:port` over TLS, with the files from the environment.
    #[cfg(feature = "tls")]
    Tls(String, TlsFiles),
    /// A Unix socket path.
    Unix(PathBuf),
}

/// PEM files for TLS, with the environment variables they come from, for error messages.
#[cfg(feature = "tls")]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// The variables: CA, client certificate, client key.
    pub vars: [&'static str; 3],
    pub ca: Option<PathBuf>,
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
}

#[cfg(feature = "tls")]
impl TlsFiles {
    /// The files named by the variables `ca`, `cert`, `key` (unset or empty: none).
    pub fn from_env(ca: &'static str, cert: &'static str, key: &'static str) -> TlsFiles {
        let var = |name: &'static str| {
            std::env::var_os(name)
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
        };
        TlsFiles {
            vars: [ca, cert, key],
            ca: var(ca),
            cert: var(cert),
            key: var(key),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.ca.is_none() && self.cert.is_none() && self.key.is_none()
    }
}

/// A failed call: the server's answer (status and its words), or no answer.
#[derive(Debug)]
pub enum CallError {
    Status(u16, String),
    Transport(ureq::Error),
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CallError::Status(s, text) => write!(f, "HTTP {s}: {}", shorten(text.trim(), 512)),
            CallError::Transport(e) => write!(f, "{e}"),
        }
    }
}

/// At most `max` bytes of `s`, cut at a character boundary.
pub fn shorten(s: &str, max: usize) -> &str {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

#[derive(Clone)]
pub struct Client {
    agent: ureq::Agent,
    /// `http://host:port`, `https://host:port`, or `http://127.0.0.1` for a socket; then the
    /// endpoints to fail over to (`ETCD_ENDPOINTS`).
    bases: std::sync::Arc<[String]>,
    /// The endpoint in use: the first that answered, kept while it answers.
    current: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    /// What the user knows it by, for messages: the URL, or `unix:///path`.
    shown: String,
    header: Option<(&'static str, String)>,
}

fn agent(config: ureq::config::Config) -> ureq::Agent {
    ureq::Agent::with_parts(
        config,
        ureq::unversioned::transport::DefaultConnector::default(),
        Resolver::default(),
    )
}

/// ureq's resolver runs every request's lookup on a thread of its own (to time it out), even
/// for an IP literal and a kept-alive connection: a thread spawned and joined per registry call.
/// A literal is answered here; names still go to ureq's.
#[derive(Debug, Default)]
struct Resolver(ureq::unversioned::resolver::DefaultResolver);

impl ureq::unversioned::resolver::Resolver for Resolver {
    fn resolve(
        &self,
        uri: &ureq::http::Uri,
        config: &ureq::config::Config,
        timeout: ureq::unversioned::transport::NextTimeout,
    ) -> Result<ureq::unversioned::resolver::ResolvedSocketAddrs, ureq::Error> {
        match literal(uri) {
            Some(addr) => {
                let mut out = self.empty();
                out.push(addr);
                Ok(out)
            }
            None => self.0.resolve(uri, config, timeout),
        }
    }
}

/// The address of a URI whose host is an IP literal.
fn literal(uri: &ureq::http::Uri) -> Option<std::net::SocketAddr> {
    let host = uri.host()?;
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    let ip: std::net::IpAddr = host.parse().ok()?;
    let port = match uri.port_u16() {
        Some(p) => p,
        None if uri.scheme_str() == Some("https") => 443,
        None => 80,
    };
    Some(std::net::SocketAddr::new(ip, port))
}

impl Client {
    pub fn new(target: &Target) -> Result<Client, String> {
        let config = ureq::Agent::config_builder()
            .timeout_global(Some(TIMEOUT))
            .http_status_as_error(false)
            // Registries are local or on the LAN: never route them (and tokens) through a proxy
            // that HTTP_PROXY/ALL_PROXY name for other programs.
            .proxy(None)
            // ureq fills both buffers with zeros up front (128 KiB each by default): a kept-alive
            // connection cost 256 KiB of resident memory. 8 KiB holds our request heads and a
            // registry's response head (the limit most HTTP servers and proxies put on a head);
            // bodies stream through.
            .input_buffer_size(BUFFER)
            .output_buffer_size(BUFFER)
            .user_agent(concat!("registrator/", env!("CARGO_PKG_VERSION")));
        Ok(match target {
            Target::Tcp(addr) => {
                let base = format!("http://{addr}");
                Client::at(agent(config.build()), base)
            }
            #[cfg(feature = "tls")]
            Target::Tls(addr, files) => {
                let tls = tls::config(files)?;
                let base = format!("https://{addr}");
                Client::at(agent(config.tls_config(tls).build()), base)
            }
            Target::Unix(path) => {
                let agent = ureq::Agent::with_parts(
                    config.build(),
                    unix::Connector(path.clone()),
                    Resolver::default(),
                );
                // An IP literal: the resolver answers it without a lookup, and the connector
                // ignores the address anyway.
                let mut c = Client::at(agent, "http://127.0.0.1".into());
                c.shown = format!("unix://{}", path.display());
                c
            }
        })
    }

    fn at(agent: ureq::Agent, base: String) -> Client {
        Client {
            agent,
            shown: base.clone(),
            bases: vec![base].into(),
            current: Default::default(),
            header: None,
        }
    }

    /// More endpoints of the same cluster (`ETCD_ENDPOINTS`: `host:port`, or a URL): a call
    /// that gets no answer from the one in use moves on to the next, and stays there while it
    /// answers. A bare `host:port` takes the scheme of the first endpoint.
    pub fn with_endpoints(mut self, extra: &[String]) -> Client {
        if extra.is_empty() {
            return self;
        }
        let scheme = if self.bases[0].starts_with("https://") {
            "https://"
        } else {
            "http://"
        };
        let mut bases = self.bases.to_vec();
        for e in extra {
            let e = e.trim_end_matches('/');
            bases.push(if e.contains("://") {
                e.to_string()
            } else {
                format!("{scheme}{e}")
            });
        }
        self.shown = bases.join(",");
        self.bases = bases.into();
        self
    }

    /// `call` on the endpoint in use, then on each other one while none answers.
    fn over<T>(&self, call: impl Fn(&str) -> Result<T, CallError>) -> Result<T, CallError> {
        use std::sync::atomic::Ordering;
        let n = self.bases.len();
        let start = self.current.load(Ordering::Relaxed) % n;
        let mut last = None;
        for k in 0..n {
            let i = (start + k) % n;
            match call(&self.bases[i]) {
                Err(CallError::Transport(e)) if n > 1 => {
                    log::debug!("{}: {e}", self.bases[i]);
                    last = Some(e);
                }
                r => {
                    if k > 0 {
                        self.current.store(i, Ordering::Relaxed);
                        log::warn!(
                            "{} did not answer; using {} (ETCD_ENDPOINTS)",
                            self.bases[start],
                            self.bases[i]
                        );
                    }
                    return r;
                }
            }
        }
        Err(CallError::Transport(
            last.unwrap_or(ureq::Error::ConnectionFailed),
        ))
    }

    /// A header sent with every request (an ACL token); its value is never logged.
    pub fn with_header(mut self, name: &'static str, value: Option<String>) -> Client {
        self.header = value.map(|v| (name, v));
        self
    }

    /// The URL or socket, for messages.
    pub fn shown(&self) -> &str {
        &self.shown
    }

    /// The request with the header of [`Client::with_header`], if any.
    fn headed<B>(&self, req: ureq::RequestBuilder<B>) -> ureq::RequestBuilder<B> {
        match &self.header {
            Some((k, v)) => req.header(*k, v),
            None => req,
        }
    }

    pub fn get(&self, path: &str) -> Result<String, CallError> {
        self.over(|base| answer(self.headed(self.agent.get(format!("{base}{path}"))).call()))
    }

    pub fn delete(&self, path: &str) -> Result<String, CallError> {
        self.over(|base| {
            answer(
                self.headed(self.agent.delete(format!("{base}{path}")))
                    .call(),
            )
        })
    }

    /// PUT with a body of `content_type` (or none).
    pub fn put(&self, path: &str, body: Option<(&str, &[u8])>) -> Result<String, CallError> {
        self.over(|base| self.send(self.agent.put(format!("{base}{path}")), body))
    }

    pub fn post(&self, path: &str, body: Option<(&str, &[u8])>) -> Result<String, CallError> {
        self.over(|base| self.send(self.agent.post(format!("{base}{path}")), body))
    }

    fn send(
        &self,
        req: ureq::RequestBuilder<ureq::typestate::WithBody>,
        body: Option<(&str, &[u8])>,
    ) -> Result<String, CallError> {
        let req = self.headed(req);
        answer(match body {
            Some((ctype, b)) => req.content_type(ctype).send(b),
            None => req.send_empty(),
        })
    }
}

/// The body of a 2xx answer; anything else is an error with the server's own words.
fn answer(
    result: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
) -> Result<String, CallError> {
    let mut resp = result.map_err(CallError::Transport)?;
    let status = resp.status().as_u16();
    let text = resp
        .body_mut()
        .with_config()
        .limit(MAX_RESPONSE)
        .read_to_string();
    match text {
        Ok(text) if (200..300).contains(&status) => Ok(text),
        Ok(text) => Err(CallError::Status(status, text)),
        // A success whose body did not arrive whole is not a success.
        Err(e) if (200..300).contains(&status) => Err(CallError::Transport(e)),
        Err(e) => Err(CallError::Status(status, format!("(body unreadable: {e})"))),
    }
}

/// `/a b/c` -> `/a%20b/c`: each segment of a key path percent-encoded, the slashes kept.
pub fn encode_path(path: &str) -> String {
    path.split('/')
        .map(crate::percent::encode)
        .collect::<Vec<_>>()
        .join("/")
}

/// Reads a file the environment named, with the variable and path in any error.
fn read_named(var: &str, path: &Path) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("{var}={}: {e}", path.display()))
}

#[cfg(feature = "tls")]
mod tls {
    //! rustls with the `ring` provider and only the roots the user gives (or the system's
    //! bundle): no compiled-in root store.
    use std::sync::Arc;

    use ureq::tls::{Certificate, ClientCert, PemItem, PrivateKey, RootCerts, TlsConfig};

    use super::{read_named, TlsFiles};

    /// Where Debian, Alpine and most distributions keep the system's CA bundle.
    const SYSTEM_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";

    pub fn config(files: &TlsFiles) -> Result<TlsConfig, String> {
        let [ca_var, cert_var, key_var] = files.vars;
        let client = match (&files.cert, &files.key) {
            (Some(cpath), Some(kpath)) => {
                let chain = certificates(cert_var, cpath)?;
                let pem = read_named(key_var, kpath)?;
                let key = PrivateKey::from_pem(&pem).map_err(|e| {
                    format!("{key_var}={}: no usable private key: {e}", kpath.display())
                })?;
                check_pair(&chain, &pem).map_err(|e| {
                    format!(
                        "{cert_var}={} and {key_var}={}: {e}",
                        cpath.display(),
                        kpath.display()
                    )
                })?;
                Some(ClientCert::new_with_certs(&chain, key))
            }
            (Some(_), None) => return Err(format!("{cert_var} is set but {key_var} is not")),
            (None, Some(_)) => return Err(format!("{key_var} is set but {cert_var} is not")),
            (None, None) => None,
        };
        let roots = match &files.ca {
            Some(path) => certificates(ca_var, path)?,
            None => {
                let path = std::path::Path::new(SYSTEM_BUNDLE);
                if !path.exists() {
                    return Err(format!(
                        "no CA certificate: set {ca_var} (this build carries no root certificates and {SYSTEM_BUNDLE} does not exist)"
                    ));
                }
                certificates("the system CA bundle", path)?
            }
        };
        Ok(TlsConfig::builder()
            .root_certs(RootCerts::new_with_certs(&roots))
            .client_cert(client)
            .unversioned_rustls_crypto_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .build())
    }

    /// What rustls will insist on when it first connects (ureq would panic there): the key loads
    /// and belongs to the first certificate.
    fn check_pair(chain: &[Certificate<'static>], key_pem: &[u8]) -> Result<(), String> {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};
        let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| e.to_string())?;
        let chain = chain
            .iter()
            .map(|c| CertificateDer::from(c.der().to_vec()))
            .collect();
        rustls::sign::CertifiedKey::from_der(chain, key, &rustls::crypto::ring::default_provider())
            .map(drop)
            .map_err(|e| format!("not a usable certificate and key pair: {e}"))
    }

    /// Every certificate in a PEM file; none is an error naming the file.
    fn certificates(
        var: &str,
        path: &std::path::Path,
    ) -> Result<Vec<Certificate<'static>>, String> {
        let pem = read_named(var, path)?;
        let mut certs = Vec::new();
        for item in ureq::tls::parse_pem(&pem) {
            match item {
                Ok(PemItem::Certificate(c)) => certs.push(c),
                Ok(_) => {}
                Err(e) => return Err(format!("{var}={}: bad PEM: {e}", path.display())),
            }
        }
        if certs.is_empty() {
            return Err(format!(
                "{var}={}: no PEM certificate in it",
                path.display()
            ));
        }
        Ok(certs)
    }
}

mod unix {
    //! A ureq connector that reaches the server on a Unix socket whatever the URL's host says.
    use std::io::{self, Read, Write};
    use std::os::unix::net::UnixStream;
    use std::path::PathBuf;

    use ureq::unversioned::transport::{
        Buffers, ConnectionDetails, LazyBuffers, NextTimeout, Transport,
    };
    use ureq::{Error, Timeout};

    #[derive(Debug)]
    pub struct Connector(pub PathBuf);

    impl<In: Transport> ureq::unversioned::transport::Connector<In> for Connector {
        type Out = Socket;

        fn connect(
            &self,
            details: &ConnectionDetails,
            _chained: Option<In>,
        ) -> Result<Option<Socket>, Error> {
            let stream = UnixStream::connect(&self.0).map_err(|e| {
                Error::Io(io::Error::new(
                    e.kind(),
                    format!("{}: {e}", self.0.display()),
                ))
            })?;
            let buffers = LazyBuffers::new(
                details.config.input_buffer_size(),
                details.config.output_buffer_size(),
            );
            Ok(Some(Socket { stream, buffers }))
        }
    }

    #[derive(Debug)]
    pub struct Socket {
        stream: UnixStream,
        buffers: LazyBuffers,
    }

    /// The time left for one read or write; none left is a timeout now.
    fn left(t: NextTimeout) -> Result<Option<std::time::Duration>, Error> {
        match t.not_zero() {
            _ if t.after.is_zero() => Err(Error::Timeout(t.reason)),
            d => Ok(d.map(|d| *d)),
        }
    }

    fn timed_out(e: io::Error, reason: Timeout) -> Error {
        match e.kind() {
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => Error::Timeout(reason),
            _ => Error::Io(e),
        }
    }

    impl Transport for Socket {
        fn buffers(&mut self) -> &mut dyn Buffers {
            &mut self.buffers
        }

        fn transmit_output(&mut self, amount: usize, timeout: NextTimeout) -> Result<(), Error> {
            let t = timeout.for_write();
            self.stream.set_write_timeout(left(t)?)?;
            let output = &self.buffers.output()[..amount];
            self.stream
                .write_all(output)
                .map_err(|e| timed_out(e, t.reason))
        }

        fn await_input(&mut self, timeout: NextTimeout) -> Result<bool, Error> {
            let t = timeout.for_read();
            self.stream.set_read_timeout(left(t)?)?;
            let input = self.buffers.input_append_buf();
            let n = loop {
                match self.stream.read(input) {
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    r => break r.map_err(|e| timed_out(e, t.reason))?,
                }
            };
            self.buffers.input_appended(n);
            Ok(n > 0)
        }

        fn is_open(&mut self) -> bool {
            // Idle and open: a non-blocking read finds nothing. EOF or stray bytes: drop it.
            if self.stream.set_nonblocking(true).is_err() {
                return false;
            }
            let mut b = [0u8; 1];
            let open =
                matches!(self.stream.read(&mut b), Err(e) if e.kind() == io::ErrorKind::WouldBlock);
            open && self.stream.set_nonblocking(false).is_ok()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::literal;

    #[test]
    fn ip_literals_are_answered_without_a_lookup() {
        let at = |u: &str| literal(&u.parse().unwrap()).map(|a| a.to_string());
        assert_eq!(
            at("http://127.0.0.1:18500/v1/agent/services").as_deref(),
            Some("127.0.0.1:18500")
        );
        assert_eq!(
            at("https://[::1]/v1/status/leader").as_deref(),
            Some("[::1]:443")
        );
        assert_eq!(at("http://10.0.0.5/").as_deref(), Some("10.0.0.5:80"));
        assert_eq!(at("http://consul.service:8500/"), None);
        assert_eq!(at("http://localhost:8500/"), None);
    }

    /// Decisions F4: a call the endpoint in use does not answer goes to the next, which is
    /// kept while it answers.
    #[test]
    fn a_silent_endpoint_fails_over_to_the_next_and_stays() {
        use std::io::{Read, Write};
        let server = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = server.local_addr().unwrap().to_string();
        let answers = std::thread::spawn(move || {
            for _ in 0..2 {
                let (mut c, _) = server.accept().unwrap();
                let mut buf = [0u8; 1024];
                let _ = c.read(&mut buf);
                c.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
                    .unwrap();
            }
        });
        // Port 1 on loopback: refused at once.
        let c = super::Client::new(&super::Target::Tcp("127.0.0.1:1".into()))
            .unwrap()
            .with_endpoints(std::slice::from_ref(&addr));
        assert_eq!(c.get("/version").unwrap(), "ok");
        assert_eq!(c.current.load(std::sync::atomic::Ordering::Relaxed), 1);
        assert_eq!(c.get("/version").unwrap(), "ok");
        answers.join().unwrap();
        assert_eq!(c.shown(), format!("http://127.0.0.1:1,http://{addr}"));
    }
}
