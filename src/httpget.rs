//! `httpGet` of `-tags` templates (spec/dropin.md Decisions T5): one GET, 5 s in all, at most
//! 64 KiB of body, the body returned whatever the status (as Go's helper does), empty on any
//! failure with a warning. No redirects, no proxy variables, no cache. Only the operator's
//! `-tags` reaches this: a container's `SERVICE_*TAGS` get no transport. Plain `http://` in
//! every build; `https://` in builds with `tls`, verified against the system's CA bundle.
//! The response goes through the same sans-I/O decoder as the engine's answers.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use crate::docker::http::{Output, ResponseDecoder};

pub const TIMEOUT: Duration = Duration::from_secs(5);
pub const MAX_BODY: usize = 64 * 1024;

/// The body at `url`, or nothing (and a warning saying why).
pub fn get(url: &str) -> Vec<u8> {
    match fetch(url, TIMEOUT) {
        Ok(b) => b,
        Err(e) => {
            log::warn!("httpGet template function encountered an error: GET {url}: {e}");
            Vec::new()
        }
    }
}

/// Scheme, `host:port` to connect to, the `Host` header value, and the request target.
fn split_url(url: &str) -> Result<(bool, String, &str, &str), String> {
    let (tls, rest) = if let Some(r) = url.strip_prefix("http://") {
        (false, r)
    } else if let Some(r) = url.strip_prefix("https://") {
        (true, r)
    } else {
        return Err("only http:// and https:// URLs".into());
    };
    let rest = rest.split('#').next().unwrap_or(rest);
    let (authority, path) = match rest.find(['/', '?']) {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    if authority.is_empty() || authority.contains('@') || path.contains([' ', '\r', '\n']) {
        return Err("malformed URL".into());
    }
    let addr = crate::tls::with_port(authority, if tls { 443 } else { 80 });
    Ok((tls, addr, authority, path))
}

/// The addresses of `host:port`, looked up on a thread of its own so that a slow resolver
/// counts against the deadline (an IP address needs no lookup).
fn resolve(addr: &str, within: Duration) -> Result<Vec<std::net::SocketAddr>, String> {
    if let Ok(a) = addr.parse::<std::net::SocketAddr>() {
        return Ok(vec![a]);
    }
    let (tx, rx) = std::sync::mpsc::channel();
    let name = addr.to_string();
    std::thread::Builder::new()
        .name("httpget-resolve".into())
        .spawn(move || {
            let _ = tx.send(name.to_socket_addrs().map(Iterator::collect::<Vec<_>>));
        })
        .map_err(|e| format!("resolve {addr}: {e}"))?;
    match rx.recv_timeout(within) {
        Ok(Ok(a)) => Ok(a),
        Ok(Err(e)) => Err(format!("resolve {addr}: {e}")),
        Err(_) => Err(format!("resolve {addr}: no answer in time")),
    }
}

fn fetch(url: &str, timeout: Duration) -> Result<Vec<u8>, String> {
    let deadline = Instant::now() + timeout;
    let left = || {
        deadline
            .checked_duration_since(Instant::now())
            .filter(|d| !d.is_zero())
            .ok_or_else(|| format!("no answer within {} s", timeout.as_secs()))
    };
    let (tls, addr, host, path) = split_url(url)?;
    let target = if path.starts_with('/') {
        path.to_string()
    } else {
        format!("/{path}")
    };
    let addrs = resolve(&addr, left()?)?;
    let mut last = format!("{addr}: no address");
    let mut conn = None;
    for a in addrs {
        match TcpStream::connect_timeout(&a, left()?) {
            Ok(s) => {
                conn = Some(s);
                break;
            }
            Err(e) => last = format!("connect {a}: {e}"),
        }
    }
    let tcp = conn.ok_or(last)?;
    // The handshake too is bounded by what is left.
    tcp.set_read_timeout(Some(left()?))
        .map_err(|e| e.to_string())?;
    tcp.set_write_timeout(Some(left()?))
        .map_err(|e| e.to_string())?;
    let request = format!(
        "GET {target} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: registrator/{}\r\nAccept: */*\r\nConnection: close\r\n\r\n",
        env!("CARGO_PKG_VERSION")
    );
    let mut stream = crate::tls::connect(tcp, tls, host).map_err(|e| e.to_string())?;
    stream
        .set_timeout(Some(left()?))
        .map_err(|e| e.to_string())?;
    stream
        .write_all(request.as_bytes())
        .map_err(|e| e.to_string())?;
    let mut decoder = ResponseDecoder::new();
    let mut buf = [0u8; 4096];
    let mut body = Vec::new();
    loop {
        stream
            .set_timeout(Some(left()?))
            .map_err(|e| e.to_string())?;
        let n = match stream.read(&mut buf) {
            Ok(n) => n,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return Err(format!("no answer within {} s", timeout.as_secs()))
            }
            Err(e) => return Err(e.to_string()),
        };
        if n == 0 {
            return match decoder.eof().map_err(|e| e.to_string())? {
                Some(_) => Ok(body),
                None if body.is_empty() => Err("connection closed before an answer".into()),
                None => Ok(body),
            };
        }
        let mut input = &buf[..n];
        while !input.is_empty() {
            let (used, out) = decoder.feed(input).map_err(|e| e.to_string())?;
            input = &input[used..];
            match out {
                Some(Output::Data(d)) => {
                    if body.len() + d.len() > MAX_BODY {
                        return Err(format!("body larger than {} KiB", MAX_BODY / 1024));
                    }
                    body.extend_from_slice(d);
                }
                Some(Output::End) => return Ok(body),
                Some(Output::Head(_)) => {}
                None if used == 0 => break,
                None => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_split_into_address_host_and_target() {
        assert_eq!(
            split_url("http://127.0.0.1:8080/all?x=1#f"),
            Ok((false, "127.0.0.1:8080".into(), "127.0.0.1:8080", "/all?x=1"))
        );
        assert_eq!(
            split_url("http://example.org"),
            Ok((false, "example.org:80".into(), "example.org", "/"))
        );
        assert_eq!(
            split_url("https://[::1]/x"),
            Ok((true, "[::1]:443".into(), "[::1]", "/x"))
        );
        // A query without a path keeps its query: GET /?x=1.
        assert_eq!(
            split_url("http://h?x=1"),
            Ok((false, "h:80".into(), "h", "?x=1"))
        );
        assert!(split_url("ftp://x/").is_err());
        assert!(split_url("http://user@x/").is_err());
        assert!(split_url("http:///x").is_err());
    }
}
