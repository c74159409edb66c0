//! The ZooKeeper client wire protocol (jute), sans I/O: requests are built into byte vectors,
//! answers are cut out of a byte stream by [`Frames`] and decoded from slices. Big-endian
//! integers; a buffer or string is an i32 length (-1: null) and its bytes; every frame is an
//! i32 length and its body.

/// Operation codes of the requests used here.
pub const OP_CREATE: i32 = 1;
pub const OP_DELETE: i32 = 2;
pub const OP_EXISTS: i32 = 3;
pub const OP_GET_DATA: i32 = 4;
pub const OP_GET_CHILDREN: i32 = 8;
pub const OP_PING: i32 = 11;
pub const OP_CLOSE: i32 = -11;

/// Reserved transaction IDs: the server's watch notifications, and pings.
pub const XID_NOTIFICATION: i32 = -1;
pub const XID_PING: i32 = -2;

/// Create flags.
pub const PERSISTENT: i32 = 0;
pub const EPHEMERAL: i32 = 1;

/// Error codes the client acts on.
pub const OK: i32 = 0;
pub const NO_NODE: i32 = -101;
pub const NODE_EXISTS: i32 = -110;
pub const NOT_EMPTY: i32 = -111;
pub const SESSION_EXPIRED: i32 = -112;

/// Largest frame accepted from a server (its own default limit, jute.maxbuffer, is 1 MiB).
pub const MAX_FRAME: usize = 4 * 1024 * 1024;

/// What an error code means, for messages.
pub fn error_name(code: i32) -> &'static str {
    match code {
        OK => "ok",
        -1 => "system error",
        -2 => "runtime inconsistency",
        -3 => "data inconsistency",
        -4 => "connection loss",
        -5 => "marshalling error",
        -6 => "unimplemented",
        -7 => "operation timeout",
        -8 => "bad arguments",
        -13 => "new config no quorum",
        -14 => "reconfig in progress",
        -100 => "API error",
        NO_NODE => "no node",
        -102 => "not authenticated",
        -103 => "bad version",
        -108 => "ephemeral nodes may not have children",
        NODE_EXISTS => "node exists",
        NOT_EMPTY => "node has children",
        SESSION_EXPIRED => "session expired",
        -113 => "invalid callback",
        -114 => "invalid ACL",
        -115 => "authentication failed",
        -118 => "session moved",
        -119 => "server is read-only",
        -120 => "ephemeral on local session",
        -125 => "quota exceeded",
        -127 => "throttled",
        _ => "unknown error",
    }
}

/// A malformed or oversized answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CodecError(pub String);

impl std::fmt::Display for CodecError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

// ------------------------------------------------------------------ writing --

/// A frame being built: the length is filled in by [`Out::finish`].
pub struct Out(Vec<u8>);

impl Default for Out {
    fn default() -> Out {
        Out::new()
    }
}

impl Out {
    pub fn new() -> Out {
        Out(vec![0; 4])
    }
    pub fn i32(mut self, v: i32) -> Out {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }
    pub fn i64(mut self, v: i64) -> Out {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }
    pub fn bool(mut self, v: bool) -> Out {
        self.0.push(u8::from(v));
        self
    }
    pub fn buffer(mut self, b: &[u8]) -> Out {
        // Paths and bodies are far below 2 GiB; the server refuses anything over 1 MiB.
        let len = i32::try_from(b.len()).unwrap_or(i32::MAX);
        self.0.extend_from_slice(&len.to_be_bytes());
        self.0.extend_from_slice(b);
        self
    }
    pub fn string(self, s: &str) -> Out {
        self.buffer(s.as_bytes())
    }
    pub fn finish(mut self) -> Vec<u8> {
        let len = (self.0.len() - 4) as u32;
        self.0[..4].copy_from_slice(&len.to_be_bytes());
        self.0
    }
}

/// The session handshake. `session_id` 0 and an empty password ask for a new session.
pub fn connect_request(last_zxid: i64, timeout_ms: i32, session_id: i64, passwd: &[u8]) -> Vec<u8> {
    Out::new()
        .i32(0) // protocol version
        .i64(last_zxid)
        .i32(timeout_ms)
        .i64(session_id)
        .buffer(passwd)
        .bool(false) // read-only not allowed
        .finish()
}

/// A request frame: header (xid, op) and the op's body.
pub fn request(xid: i32, op: i32, body: impl FnOnce(Out) -> Out) -> Vec<u8> {
    body(Out::new().i32(xid).i32(op)).finish()
}

/// Create `path` with `data`, open to everyone (world:anyone, all permissions).
pub fn create(xid: i32, path: &str, data: &[u8], flags: i32) -> Vec<u8> {
    request(xid, OP_CREATE, |o| {
        o.string(path)
            .buffer(data)
            .i32(1) // one ACL
            .i32(31) // ALL = READ|WRITE|CREATE|DELETE|ADMIN
            .string("world")
            .string("anyone")
            .i32(flags)
    })
}

/// Delete `path` whatever its version.
pub fn delete(xid: i32, path: &str) -> Vec<u8> {
    request(xid, OP_DELETE, |o| o.string(path).i32(-1))
}

/// `exists`, `getData` and `getChildren`: a path, and no watch.
pub fn read(xid: i32, op: i32, path: &str) -> Vec<u8> {
    request(xid, op, |o| o.string(path).bool(false))
}

pub fn ping() -> Vec<u8> {
    request(XID_PING, OP_PING, |o| o)
}

pub fn close(xid: i32) -> Vec<u8> {
    request(xid, OP_CLOSE, |o| o)
}

// ------------------------------------------------------------------ reading --

/// Cuts frames out of the bytes read from a socket.
#[derive(Default)]
pub struct Frames {
    buf: Vec<u8>,
}

impl Frames {
    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// The next whole frame's body, `Ok(None)` when more bytes are needed.
    pub fn next_frame(&mut self) -> Result<Option<Vec<u8>>, CodecError> {
        let Some(head) = self.buf.get(..4) else {
            return Ok(None);
        };
        let len = i32::from_be_bytes([head[0], head[1], head[2], head[3]]);
        let len = usize::try_from(len)
            .ok()
            .filter(|&l| l <= MAX_FRAME)
            .ok_or_else(|| CodecError(format!("bad frame length {len}")))?;
        if self.buf.len() < 4 + len {
            return Ok(None);
        }
        let body = self.buf[4..4 + len].to_vec();
        self.buf.drain(..4 + len);
        Ok(Some(body))
    }

    pub fn clear(&mut self) {
        self.buf.clear();
    }
}

/// Reads jute values from a frame body.
pub struct In<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> In<'a> {
    pub fn new(buf: &'a [u8]) -> In<'a> {
        In { buf, pos: 0 }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], CodecError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.buf.len())
            .ok_or_else(|| CodecError(format!("answer cut short at byte {}", self.pos)))?;
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    pub fn i32(&mut self) -> Result<i32, CodecError> {
        let b = self.take(4)?;
        Ok(i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    pub fn i64(&mut self) -> Result<i64, CodecError> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(i64::from_be_bytes(a))
    }

    pub fn bool(&mut self) -> Result<bool, CodecError> {
        Ok(self.take(1)?[0] != 0)
    }

    /// A buffer; null (-1) reads as empty.
    pub fn buffer(&mut self) -> Result<&'a [u8], CodecError> {
        let len = self.i32()?;
        if len < 0 {
            return Ok(&[]);
        }
        self.take(len as usize)
    }

    pub fn string(&mut self) -> Result<String, CodecError> {
        let b = self.buffer()?;
        String::from_utf8(b.to_vec()).map_err(|_| CodecError("string is not UTF-8".into()))
    }

    pub fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    /// Whether bytes are left (the handshake's optional read-only flag).
    pub fn more(&self) -> bool {
        self.pos < self.buf.len()
    }
}

/// The server's answer to the handshake. A timeout of 0 means the session asked for expired.
#[derive(Debug, PartialEq, Eq)]
pub struct ConnectResponse {
    pub timeout_ms: i32,
    pub session_id: i64,
    pub passwd: Vec<u8>,
}

pub fn connect_response(frame: &[u8]) -> Result<ConnectResponse, CodecError> {
    let mut r = In::new(frame);
    let _protocol = r.i32()?;
    let timeout_ms = r.i32()?;
    let session_id = r.i64()?;
    let passwd = r.buffer()?.to_vec();
    if r.more() {
        let _read_only = r.bool()?;
    }
    Ok(ConnectResponse {
        timeout_ms,
        session_id,
        passwd,
    })
}

/// An answer's header: which request it answers, the zxid it saw, and its error code.
pub struct Reply<'a> {
    pub xid: i32,
    pub zxid: i64,
    pub err: i32,
    pub body: In<'a>,
}

pub fn reply(frame: &[u8]) -> Result<Reply<'_>, CodecError> {
    let mut r = In::new(frame);
    let xid = r.i32()?;
    let zxid = r.i64()?;
    let err = r.i32()?;
    Ok(Reply {
        xid,
        zxid,
        err,
        body: r,
    })
}

/// The parts of a node's `Stat` used here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stat {
    pub ephemeral_owner: i64,
}

pub fn stat(r: &mut In) -> Result<Stat, CodecError> {
    for _ in 0..4 {
        r.i64()?; // czxid, mzxid, ctime, mtime
    }
    for _ in 0..3 {
        r.i32()?; // version, cversion, aversion
    }
    let ephemeral_owner = r.i64()?;
    let _data_length = r.i32()?;
    let _num_children = r.i32()?;
    let _pzxid = r.i64()?;
    Ok(Stat { ephemeral_owner })
}

pub fn children(r: &mut In) -> Result<Vec<String>, CodecError> {
    let n = r.i32()?;
    // Each name takes at least its 4-byte length: a count beyond that is a lie.
    if n < 0 || n as usize > r.buf.len() / 4 {
        return Err(CodecError(format!("bad child count {n}")));
    }
    (0..n).map(|_| r.string()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_frames_byte_for_byte() {
        // exists("/a", false) as xid 7: len 15, xid, op 3, "/a", watch false.
        assert_eq!(
            read(7, OP_EXISTS, "/a"),
            [0, 0, 0, 15, 0, 0, 0, 7, 0, 0, 0, 3, 0, 0, 0, 2, b'/', b'a', 0]
        );
        assert_eq!(ping(), [0, 0, 0, 8, 0xff, 0xff, 0xff, 0xfe, 0, 0, 0, 11]);
        let c = connect_request(5, 10_000, 0, &[]);
        assert_eq!(c.len(), 4 + 4 + 8 + 4 + 8 + 4 + 1);
        assert_eq!(&c[..4], &(c.len() as u32 - 4).to_be_bytes());
        let d = delete(1, "/x");
        assert_eq!(&d[d.len() - 4..], &[0xff; 4]);
        let cr = create(2, "/x", b"{}", EPHEMERAL);
        let mut r = In::new(&cr[4..]);
        assert_eq!((r.i32().unwrap(), r.i32().unwrap()), (2, OP_CREATE));
        assert_eq!(r.string().unwrap(), "/x");
        assert_eq!(r.buffer().unwrap(), b"{}");
        assert_eq!(r.i32().unwrap(), 1);
        assert_eq!(r.i32().unwrap(), 31);
        assert_eq!(r.string().unwrap(), "world");
        assert_eq!(r.string().unwrap(), "anyone");
        assert_eq!(r.i32().unwrap(), EPHEMERAL);
        assert!(!r.more());
    }

    fn connect_answer(timeout: i32, read_only: bool) -> Vec<u8> {
        let o = Out::new().i32(0).i32(timeout).i64(0x1234).buffer(&[9; 16]);
        if read_only {
            o.bool(false).finish()
        } else {
            o.finish()
        }
    }

    #[test]
    fn frames_split_at_every_byte() {
        let mut stream = connect_answer(10_000, true);
        stream.extend(Out::new().i32(XID_PING).i64(-1).i32(0).finish());
        for split in 0..=stream.len() {
            let mut f = Frames::default();
            let mut got = Vec::new();
            for part in [&stream[..split], &stream[split..]] {
                f.push(part);
                while let Some(frame) = f.next_frame().unwrap() {
                    got.push(frame);
                }
            }
            assert_eq!(got.len(), 2, "split at {split}");
            let c = connect_response(&got[0]).unwrap();
            assert_eq!(
                (c.timeout_ms, c.session_id, c.passwd.len()),
                (10_000, 0x1234, 16)
            );
            let r = reply(&got[1]).unwrap();
            assert_eq!((r.xid, r.zxid, r.err), (XID_PING, -1, 0));
        }
        // Servers before 3.5 leave out the read-only flag.
        let old = connect_answer(0, false);
        assert_eq!(connect_response(&old[4..]).unwrap().timeout_ms, 0);
    }

    #[test]
    fn hostile_answers_are_errors_not_panics() {
        let mut f = Frames::default();
        f.push(&[0xff, 0xff, 0xff, 0xff]);
        assert!(f.next_frame().is_err());
        let mut f = Frames::default();
        f.push(&(MAX_FRAME as u32 + 1).to_be_bytes());
        assert!(f.next_frame().is_err());
        assert!(connect_response(&[0, 0, 0]).is_err());
        assert!(reply(&[0; 15]).is_err());
        // A buffer longer than what is there, a child count far beyond the bytes.
        let b = Out::new().i32(100).finish();
        assert!(In::new(&b[4..]).buffer().is_err());
        let b = Out::new().i32(1 << 30).finish();
        assert!(children(&mut In::new(&b[4..])).is_err());
        let b = Out::new().buffer(&[0xff, 0xfe]).finish();
        assert!(In::new(&b[4..]).string().is_err());
        // Every truncation of a real stat is an error.
        let s = Out::new()
            .i64(1)
            .i64(2)
            .i64(3)
            .i64(4)
            .i32(5)
            .i32(6)
            .i32(7)
            .i64(0x77)
            .i32(8)
            .i32(2)
            .i64(9)
            .finish();
        assert_eq!(
            stat(&mut In::new(&s[4..])).unwrap(),
            Stat {
                ephemeral_owner: 0x77
            }
        );
        for cut in 4..s.len() {
            assert!(stat(&mut In::new(&s[4..cut])).is_err());
        }
    }

    #[test]
    fn children_and_null_buffers() {
        let b = Out::new().i32(2).string("a").string("bc").finish();
        assert_eq!(children(&mut In::new(&b[4..])).unwrap(), ["a", "bc"]);
        let null = Out::new().i32(-1).finish();
        assert_eq!(In::new(&null[4..]).buffer().unwrap(), b"");
        assert_eq!(error_name(NO_NODE), "no node");
        assert_eq!(error_name(12345), "unknown error");
    }
}
