//! Our own client streams over TCP, plain or TLS (rustls with the `ring` provider, feature
//! `tls`), for the connections that are not a registry's: the Docker engine over
//! `DOCKER_TLS_VERIFY` and `httpGet` of `-tags` over `https://`. The handshake is completed at
//! connect, so a wrong CA or a refused client certificate is an error there, with its reason.

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// A connected stream.
pub enum Stream {
    Plain(TcpStream),
    #[cfg(feature = "tls")]
    Tls(Box<rustls::StreamOwned<rustls::ClientConnection, TcpStream>>),
}

impl Stream {
    fn tcp(&self) -> &TcpStream {
        match self {
            Stream::Plain(s) => s,
            #[cfg(feature = "tls")]
            Stream::Tls(s) => &s.sock,
        }
    }

    pub fn set_timeout(&self, t: Option<Duration>) -> io::Result<()> {
        self.tcp().set_read_timeout(t)?;
        self.tcp().set_write_timeout(t)
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => s.read(buf),
            #[cfg(feature = "tls")]
            Stream::Tls(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => s.write(buf),
            #[cfg(feature = "tls")]
            Stream::Tls(s) => s.write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            Stream::Plain(s) => s.flush(),
            #[cfg(feature = "tls")]
            Stream::Tls(s) => s.flush(),
        }
    }
}

/// `tcp` as is, or wrapped in TLS verified against the system's CA bundle (no client
/// certificate): `httpGet`'s `https://`.
pub fn connect(tcp: TcpStream, tls: bool, host: &str) -> io::Result<Stream> {
    if !tls {
        return Ok(Stream::Plain(tcp));
    }
    #[cfg(feature = "tls")]
    {
        use std::sync::OnceLock;
        static SYSTEM: OnceLock<Result<std::sync::Arc<rustls::ClientConfig>, String>> =
            OnceLock::new();
        let config = SYSTEM
            .get_or_init(|| client_config(std::path::Path::new(SYSTEM_BUNDLE), None))
            .clone()
            .map_err(io::Error::other)?;
        wrap(tcp, config, host)
    }
    #[cfg(not(feature = "tls"))]
    {
        let _ = (tcp, host);
        Err(io::Error::other(
            "https:// needs a build with the tls feature",
        ))
    }
}

/// Where Debian, Alpine and most distributions keep the system's CA bundle.
#[cfg(feature = "tls")]
pub const SYSTEM_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";

/// A client configuration trusting the certificates in `ca` (a PEM file), presenting the
/// certificate and key in `client` when given. Each file named in any error.
#[cfg(feature = "tls")]
pub fn client_config(
    ca: &std::path::Path,
    client: Option<(&std::path::Path, &std::path::Path)>,
) -> Result<std::sync::Arc<rustls::ClientConfig>, String> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};

    let read = |p: &std::path::Path| std::fs::read(p).map_err(|e| format!("{}: {e}", p.display()));
    let certs = |p: &std::path::Path| -> Result<Vec<CertificateDer<'static>>, String> {
        let pem = read(p)?;
        let certs: Vec<_> = CertificateDer::pem_slice_iter(&pem)
            .collect::<Result<_, _>>()
            .map_err(|e| format!("{}: bad PEM: {e}", p.display()))?;
        if certs.is_empty() {
            return Err(format!("{}: no PEM certificate in it", p.display()));
        }
        Ok(certs)
    };
    let mut roots = rustls::RootCertStore::empty();
    let (added, _) = roots.add_parsable_certificates(certs(ca)?);
    if added == 0 {
        return Err(format!("{}: no usable CA certificate in it", ca.display()));
    }
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots);
    let config = match client {
        Some((cert, key)) => {
            let chain = certs(cert)?;
            let key = PrivateKeyDer::from_pem_slice(&read(key)?)
                .map_err(|e| format!("{}: no usable private key: {e}", key.display()))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| format!("{} and its key: {e}", cert.display()))?
        }
        None => builder.with_no_client_auth(),
    };
    Ok(std::sync::Arc::new(config))
}

/// TLS over `tcp` to `host` (a name or an IP address, a port after it is ignored), the
/// handshake completed within the socket's timeouts. A certificate refused either way is an
/// `InvalidData` error; a connection that fails keeps its own kind (a reset, a timeout).
#[cfg(feature = "tls")]
pub fn wrap(
    mut tcp: TcpStream,
    config: std::sync::Arc<rustls::ClientConfig>,
    host: &str,
) -> io::Result<Stream> {
    let name = host_only(host);
    let server = rustls::pki_types::ServerName::try_from(name.to_string()).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{name:?} is not a valid TLS server name"),
        )
    })?;
    let mut conn = rustls::ClientConnection::new(config, server).map_err(io::Error::other)?;
    while conn.is_handshaking() {
        conn.complete_io(&mut tcp)
            .map_err(|e| io::Error::new(e.kind(), format!("TLS handshake with {host}: {e}")))?;
    }
    Ok(Stream::Tls(Box::new(rustls::StreamOwned::new(conn, tcp))))
}

/// `host:port` from `authority`, with `port` when it names none (`[v6]` brackets kept).
pub fn with_port(authority: &str, port: u16) -> String {
    let has_port = match authority.rfind(']') {
        Some(i) => authority[i..].contains(':'),
        None => authority.contains(':'),
    };
    if has_port {
        authority.to_string()
    } else {
        format!("{authority}:{port}")
    }
}

/// `host` of `host:port`, `[v6]:port`, `[v6]`, or a bare host.
#[cfg(feature = "tls")]
fn host_only(authority: &str) -> &str {
    if let Some(rest) = authority.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    match authority.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') && p.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => authority,
    }
}
