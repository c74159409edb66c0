//! The benchmark's own HTTP/1.1 client: one request at a time over a kept-alive stream (the
//! engine's Unix socket or Consul's TCP port), Content-Length and chunked bodies. Each request
//! is one `write` (head and body together), so Nagle never holds half of it back.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixStream;
use std::time::Duration;

pub trait Stream: Read + Write + Send {}
impl<T: Read + Write + Send> Stream for T {}

pub struct Conn {
    r: BufReader<Box<dyn Stream>>,
    line: String,
}

fn bad(what: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.into())
}

impl Conn {
    pub fn unix(path: &str) -> io::Result<Conn> {
        let s = UnixStream::connect(path)?;
        s.set_read_timeout(Some(Duration::from_secs(60)))?;
        Ok(Conn::new(Box::new(s)))
    }

    /// A connection for a stream that is silent between messages: no read timeout.
    pub fn stream(path: &str) -> io::Result<Conn> {
        Ok(Conn::new(Box::new(UnixStream::connect(path)?)))
    }

    pub fn tcp(addr: &str) -> io::Result<Conn> {
        let s = TcpStream::connect(addr)?;
        s.set_nodelay(true)?;
        s.set_read_timeout(Some(Duration::from_secs(60)))?;
        Ok(Conn::new(Box::new(s)))
    }

    fn new(s: Box<dyn Stream>) -> Conn {
        Conn {
            r: BufReader::with_capacity(64 * 1024, s),
            line: String::new(),
        }
    }

    /// Sends a request; returns the status. The body follows with [`Conn::body`] or, for a
    /// stream, chunk by chunk with [`Conn::chunk`].
    pub fn send(&mut self, method: &str, path: &str, body: Option<&[u8]>) -> io::Result<Head> {
        let mut req = format!("{method} {path} HTTP/1.1\r\nHost: localhost\r\n").into_bytes();
        if let Some(b) = body {
            req.extend_from_slice(
                format!(
                    "Content-Type: application/json\r\nContent-Length: {}\r\n",
                    b.len()
                )
                .as_bytes(),
            );
        }
        req.extend_from_slice(b"\r\n");
        if let Some(b) = body {
            req.extend_from_slice(b);
        }
        self.r.get_mut().write_all(&req)?;
        self.head(method == "HEAD")
    }

    /// A whole request: status and body.
    pub fn request(
        &mut self,
        method: &str,
        path: &str,
        body: Option<&[u8]>,
    ) -> io::Result<(u16, Vec<u8>)> {
        let head = self.send(method, path, body)?;
        let mut out = Vec::new();
        self.body(&head, &mut out)?;
        Ok((head.status, out))
    }

    fn read_line(&mut self) -> io::Result<&str> {
        self.line.clear();
        if self.r.read_line(&mut self.line)? == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "connection closed",
            ));
        }
        Ok(self.line.trim_end())
    }

    fn head(&mut self, no_body: bool) -> io::Result<Head> {
        let status_line = self.read_line()?.to_string();
        let status: u16 = status_line
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| bad(format!("status line {status_line:?}")))?;
        let mut head = Head {
            status,
            length: None,
            chunked: false,
        };
        loop {
            let line = self.read_line()?;
            if line.is_empty() {
                break;
            }
            let (name, value) = line.split_once(':').unwrap_or((line, ""));
            let value = value.trim();
            if name.eq_ignore_ascii_case("content-length") {
                head.length = Some(value.parse().map_err(|_| bad("content-length"))?);
            } else if name.eq_ignore_ascii_case("transfer-encoding") {
                head.chunked = value.eq_ignore_ascii_case("chunked");
            }
        }
        if no_body || status == 204 || status == 304 || (100..200).contains(&status) {
            head.length = Some(0);
            head.chunked = false;
        }
        Ok(head)
    }

    pub fn body(&mut self, head: &Head, out: &mut Vec<u8>) -> io::Result<()> {
        if head.chunked {
            while self.chunk(out)? {}
        } else if let Some(n) = head.length {
            let start = out.len();
            out.resize(start + n, 0);
            self.r.read_exact(&mut out[start..])?;
        } else {
            return Err(bad("a response without length on a kept-alive connection"));
        }
        Ok(())
    }

    /// Appends the next chunk's data to `out`; false after the last (empty) chunk.
    pub fn chunk(&mut self, out: &mut Vec<u8>) -> io::Result<bool> {
        let line = self.read_line()?;
        let size = line.split(';').next().unwrap_or("");
        let n = usize::from_str_radix(size.trim(), 16)
            .map_err(|_| bad(format!("chunk size {line:?}")))?;
        if n == 0 {
            while !self.read_line()?.is_empty() {}
            return Ok(false);
        }
        let start = out.len();
        out.resize(start + n, 0);
        self.r.read_exact(&mut out[start..])?;
        if !self.read_line()?.is_empty() {
            return Err(bad("no CRLF after a chunk"));
        }
        Ok(true)
    }
}

pub struct Head {
    pub status: u16,
    length: Option<usize>,
    chunked: bool,
}
