//! A fault-injecting TCP proxy between the daemon and a registry, on 127.0.0.1: a registry
//! that is slow, half-open, resets connections, or answers errors, rather than one that is
//! simply stopped (which refuses connections).
//!
//! It works on bytes, not on HTTP: a chunk the client writes is a request, the first chunk the
//! registry writes after it is the start of the answer. Every mode change closes the
//! connections open, as a network that changes under a client would (the daemon's next call
//! opens a new one).

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Bytes go through untouched.
    Pass,
    /// Every answer is held this long after its request.
    Delay(Duration),
    /// Connections are accepted and requests read, but nothing is forwarded or answered, and
    /// nothing is closed: the client waits for its own timeout.
    BlackHole,
    /// Requests reach the registry; its answer is cut in the middle by a TCP reset.
    Reset,
    /// Every request is answered `500 Internal Server Error` by the proxy (the registry never
    /// sees it), then the connection is closed.
    Http500,
}

struct State {
    mode: Mode,
    /// Both ends of every open connection, to close them when the mode changes.
    open: Vec<TcpStream>,
}

pub struct FaultProxy {
    addr: String,
    state: Arc<Mutex<State>>,
}

fn lock(s: &Mutex<State>) -> std::sync::MutexGuard<'_, State> {
    s.lock().unwrap_or_else(|p| p.into_inner())
}

impl FaultProxy {
    /// A proxy on 127.0.0.1 (a port of its own) to `upstream` (`127.0.0.1:port`), passing.
    pub fn start(upstream: &str) -> FaultProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the fault proxy");
        let addr = listener.local_addr().expect("proxy address").to_string();
        let state = Arc::new(Mutex::new(State {
            mode: Mode::Pass,
            open: Vec::new(),
        }));
        let (st, upstream) = (state.clone(), upstream.to_string());
        thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { continue };
                let (st, upstream) = (st.clone(), upstream.clone());
                thread::spawn(move || serve(client, &upstream, &st));
            }
        });
        FaultProxy { addr, state }
    }

    /// `127.0.0.1:port`, for the daemon's registry URI.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// From now on, `mode`; the connections open are closed.
    pub fn set(&self, mode: Mode) {
        let mut st = lock(&self.state);
        st.mode = mode;
        for c in st.open.drain(..) {
            let _ = c.shutdown(Shutdown::Both);
        }
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.set(Mode::Pass);
    }
}

fn mode(st: &Mutex<State>) -> Mode {
    lock(st).mode
}

/// One client connection: opened to the registry unless the mode says otherwise.
fn serve(mut client: TcpStream, upstream: &str, st: &Arc<Mutex<State>>) {
    let Ok(c2) = client.try_clone() else { return };
    // The mode and the list of open connections under one lock: a mode change either closes
    // this connection or finds it already serving the new mode.
    let mut guard = lock(st);
    let mode = guard.mode;
    if matches!(mode, Mode::BlackHole | Mode::Http500) {
        if let Ok(c) = c2.try_clone() {
            guard.open.push(c);
        }
    }
    drop(guard);
    match mode {
        Mode::BlackHole => {
            // Read and drop whatever comes, answer nothing, until the client gives up or the
            // mode changes (which closes this end).
            let _ = std::io::copy(&mut client, &mut std::io::sink());
        }
        Mode::Http500 => answer_500(client),
        Mode::Pass | Mode::Delay(_) | Mode::Reset => {
            let Ok(server) = TcpStream::connect(upstream) else {
                return;
            };
            let (Ok(s2), Ok(s3)) = (server.try_clone(), server.try_clone()) else {
                return;
            };
            // Closing the registry's end at a mode change ends both directions; the client's
            // end stays out of the list, so that a reset is the last close of it.
            lock(st).open.push(s2);
            // When the last request was sent on: its answer is held until then + the delay.
            let asked: Arc<Mutex<Option<Instant>>> = Arc::new(Mutex::new(None));
            let (st2, asked2) = (st.clone(), asked.clone());
            thread::spawn(move || requests(client, s3, &st2, &asked2));
            answers(server, c2, st, &asked);
        }
    }
}

/// Client to registry: requests pass, or are swallowed in a black hole, or answered 500.
fn requests(
    mut client: TcpStream,
    mut server: TcpStream,
    st: &Mutex<State>,
    asked: &Mutex<Option<Instant>>,
) {
    let mut buf = [0u8; 16 * 1024];
    loop {
        let n = match client.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        match mode(st) {
            Mode::BlackHole => continue,
            Mode::Http500 => {
                reply_500(&mut client);
                break;
            }
            _ => {}
        }
        *asked.lock().unwrap_or_else(|p| p.into_inner()) = Some(Instant::now());
        if server.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    // The other direction sees the registry's end close and closes the client's.
    let _ = server.shutdown(Shutdown::Both);
}

/// Registry to client: answers pass, or are held, or are cut by a reset.
fn answers(
    mut server: TcpStream,
    mut client: TcpStream,
    st: &Mutex<State>,
    asked: &Mutex<Option<Instant>>,
) {
    let mut buf = [0u8; 16 * 1024];
    loop {
        let n = match server.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let first = asked.lock().unwrap_or_else(|p| p.into_inner()).take();
        match mode(st) {
            Mode::Delay(d) => {
                if let Some(at) = first {
                    if let Some(wait) = (at + d).checked_duration_since(Instant::now()) {
                        thread::sleep(wait);
                    }
                }
            }
            Mode::Reset => {
                let _ = client.write_all(&buf[..n / 2]);
                // Wakes the other direction, which then drops its descriptor of the client's
                // end; this one goes when we return: the last close sends the reset.
                reset(&client);
                return;
            }
            Mode::BlackHole => continue,
            _ => {}
        }
        if client.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    let _ = client.shutdown(Shutdown::Both);
    let _ = server.shutdown(Shutdown::Both);
}

/// Reads requests and answers each with a 500 until the client closes.
fn answer_500(mut client: TcpStream) {
    let mut buf = [0u8; 16 * 1024];
    if let Ok(n) = client.read(&mut buf) {
        if n > 0 {
            reply_500(&mut client);
        }
    }
    let _ = client.shutdown(Shutdown::Both);
}

fn reply_500(client: &mut TcpStream) {
    let body = "rpc error making call: No cluster leader";
    let _ = write!(
        client,
        "HTTP/1.1 500 Internal Server Error\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = client.flush();
}

/// Closes `s` with a TCP reset (RST) rather than a FIN: SO_LINGER on, timeout 0.
fn reset(s: &TcpStream) {
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: a valid socket descriptor, a valid `linger` and its size.
    unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&linger as *const libc::linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        );
    }
    let _ = s.shutdown(Shutdown::Read);
}
