//! The benchmark's own HTTP/1.1 client: one request at a time over a kept-alive stream (the
//! engine's Unix socket or Consul's TCP port), decoded by the daemon's own sans-I/O response
//! decoder. Each request is one `write` (head and body together), so Nagle never holds half of
//! it back.

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixStream;
use std::time::Duration;

use registrator::docker::http::{self as decoder, Output, ResponseDecoder};

pub trait Stream: Read + Write + Send {}
impl<T: Read + Write + Send> Stream for T {}

pub struct Conn {
    stream: Box<dyn Stream>,
    decoder: ResponseDecoder,
    buf: Box<[u8]>,
    /// Read, not yet decoded: `buf[pos..end]`.
    pos: usize,
    end: usize,
}

fn bad(e: decoder::Error) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e.to_string())
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

    fn new(stream: Box<dyn Stream>) -> Conn {
        Conn {
            stream,
            decoder: ResponseDecoder::new(),
            buf: vec![0; 64 * 1024].into_boxed_slice(),
            pos: 0,
            end: 0,
        }
    }

    /// Sends a request and reads up to the end of the response head; returns the status. The
    /// body follows with [`Conn::body`] or, for a stream, piece by piece with [`Conn::next`].
    pub fn send(&mut self, method: &str, path: &str, body: Option<&[u8]>) -> io::Result<u16> {
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
        self.stream.write_all(&req)?;
        self.decoder.reset();
        (self.pos, self.end) = (0, 0);
        loop {
            if let Some(Output::Head(h)) = self.decode()? {
                return Ok(h.status);
            }
        }
    }

    /// A whole request: status and body.
    pub fn request(
        &mut self,
        method: &str,
        path: &str,
        body: Option<&[u8]>,
    ) -> io::Result<(u16, Vec<u8>)> {
        let status = self.send(method, path, body)?;
        let mut out = Vec::new();
        while self.next(&mut out)? {}
        Ok((status, out))
    }

    /// Decodes what was read and not yet decoded, reading more first when there is none.
    fn decode(&mut self) -> io::Result<Option<Output<'_>>> {
        if self.pos == self.end {
            let n = self.stream.read(&mut self.buf)?;
            if n == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "connection closed",
                ));
            }
            (self.pos, self.end) = (0, n);
        }
        let (used, out) = self
            .decoder
            .feed(&self.buf[self.pos..self.end])
            .map_err(bad)?;
        self.pos += used;
        Ok(out)
    }

    /// Appends the next piece of the body to `out`; false at its end.
    pub fn next(&mut self, out: &mut Vec<u8>) -> io::Result<bool> {
        loop {
            if self.pos == self.end {
                // A body that ended exactly at the end of a read is reported on the next feed.
                if let (_, Some(Output::End)) = self.decoder.feed(&[]).map_err(bad)? {
                    return Ok(false);
                }
            }
            match self.decode()? {
                Some(Output::Data(d)) => {
                    out.extend_from_slice(d);
                    return Ok(true);
                }
                Some(Output::End) => return Ok(false),
                Some(Output::Head(_)) | None => {}
            }
        }
    }
}
