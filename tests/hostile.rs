//! A hostile engine: a fake Docker API on a Unix socket whose `/events` connections send
//! broken chunk sizes, a chunk and a line over the bound, invalid JSON, invalid UTF-8, a
//! stalled half event, a head with no body, garbage instead of HTTP, and connection resets.
//! The daemon must log, reconnect, never panic, and keep its memory flat: VmRSS is measured
//! over 1,000 such connections. Pure fake (no real engine needed); the registry is a file.

mod common;

use common::figure;
use std::fs;
use std::io::{Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

/// One valid event first in every connection: it resets the daemon's reconnect backoff, so the
/// test is not paced by it, and checks that events still get through between the bad ones.
const GOOD: &str = r#"{"Type":"container","Action":"start","Actor":{"ID":"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef","Attributes":{}},"time":1,"timeNano":1000000001}"#;

/// What a hostile `/events` connection does after the head and the good event.
#[derive(Debug, Clone, Copy)]
enum Hostile {
    BadChunkSize,
    HugeChunkSize,
    LineOverBound,
    InvalidJson,
    InvalidUtf8,
    HalfEventThenClose,
    HeadOnly,
    Garbage,
    Reset,
    CleanEnd,
}

/// The two that deliver no good event (so the daemon's backoff doubles after them) each
/// follow one that does.
const ROTATION: [Hostile; 10] = [
    Hostile::BadChunkSize,
    Hostile::HeadOnly,
    Hostile::HugeChunkSize,
    Hostile::Garbage,
    Hostile::LineOverBound,
    Hostile::InvalidJson,
    Hostile::InvalidUtf8,
    Hostile::HalfEventThenClose,
    Hostile::Reset,
    Hostile::CleanEnd,
];

fn chunk(data: &[u8]) -> Vec<u8> {
    let mut v = format!("{:x}\r\n", data.len()).into_bytes();
    v.extend_from_slice(data);
    v.extend_from_slice(b"\r\n");
    v
}

const CHUNKED_HEAD: &[u8] =
    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n";

fn respond(mut s: &UnixStream, status: &str, body: &str) {
    let _ = write!(
        s,
        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nDate: Sat, 21 Nov 2026 12:00:00 GMT\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
}

/// Reads one request head byte by byte, after its first bytes `start`, so nothing past it
/// is consumed; returns the path, or `None` when the peer is gone.
fn read_head(mut s: &UnixStream, start: &[u8]) -> Option<String> {
    let mut head = start.to_vec();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if s.read(&mut b).ok()? == 0 {
            return None;
        }
        head.push(b[0]);
    }
    let text = String::from_utf8_lossy(&head);
    text.split_whitespace().nth(1).map(String::from)
}

/// Serves one connection: plain answers to `_ping`, lists and inspects; `/events` gets the
/// next hostile behaviour (or a stall when `stall` is set).
fn serve(mut s: UnixStream, events: &AtomicUsize, inspects: &AtomicUsize, stall: bool) {
    loop {
        // The first bytes say which request it is; a reset must leave the rest unread.
        let mut start = [0u8; 11];
        if s.read_exact(&mut start).is_err() {
            return;
        }
        if &start == b"GET /events" {
            let n = events.fetch_add(1, Ordering::SeqCst);
            let how = ROTATION[n % ROTATION.len()];
            if !stall && matches!(how, Hostile::Reset) {
                // Closed with the rest of the request unread: the peer's read gets a reset.
                let mut out = CHUNKED_HEAD.to_vec();
                out.extend(chunk(format!("{GOOD}\n").as_bytes()));
                out.extend_from_slice(b"5\r\n{\"a\"");
                let _ = s.write_all(&out);
                thread::sleep(Duration::from_millis(20));
                return;
            }
            if read_head(&s, &start).is_none() {
                return;
            }
            hostile_events(s, how, stall);
            return;
        }
        let Some(path) = read_head(&s, &start) else {
            return;
        };
        if path.starts_with("/_ping") {
            respond(&s, "200 OK", "OK");
        } else if path.starts_with("/containers/json") {
            respond(&s, "200 OK", "[]");
        } else if path.starts_with("/containers/") {
            if path.contains("0123456789abcdef") {
                inspects.fetch_add(1, Ordering::SeqCst);
            }
            respond(&s, "404 Not Found", r#"{"message":"No such container"}"#);
        } else {
            respond(&s, "404 Not Found", r#"{"message":"page not found"}"#);
        }
    }
}

fn hostile_events(mut s: UnixStream, how: Hostile, stall: bool) {
    let mut out = CHUNKED_HEAD.to_vec();
    out.extend(chunk(format!("{GOOD}\n").as_bytes()));
    if stall {
        // Half an event, then nothing, with the connection open.
        out.extend(chunk(&GOOD.as_bytes()[..40]));
        let _ = s.write_all(&out);
        thread::sleep(Duration::from_secs(30));
        return;
    }
    match how {
        Hostile::BadChunkSize => out.extend_from_slice(b"zz\r\n{}\r\n"),
        Hostile::HugeChunkSize => out.extend_from_slice(b"fffffffffffffffffffff\r\n"),
        Hostile::LineOverBound => {
            let big = vec![b'x'; 300 * 1024];
            out.extend(chunk(&big));
        }
        Hostile::InvalidJson => out.extend(chunk(b"{\"Type\":\"container\",\"Action\":\n")),
        Hostile::InvalidUtf8 => out.extend(chunk(
            b"{\"Type\":\"container\",\"Action\":\"start\",\"Actor\":{\"ID\":\"\xff\xfe\xfd\"}}\n",
        )),
        Hostile::HalfEventThenClose => out.extend(chunk(&GOOD.as_bytes()[..60])),
        Hostile::HeadOnly => out = CHUNKED_HEAD.to_vec(),
        Hostile::Garbage => out = b"SSH-2.0-OpenSSH_9.2\r\n\x00\x01\x02garbage\r\n\r\n".to_vec(),
        Hostile::Reset => unreachable!("answered before the head is read"),
        Hostile::CleanEnd => out.extend_from_slice(b"0\r\n\r\n"),
    }
    let _ = s.write_all(&out);
    let _ = s.shutdown(std::net::Shutdown::Both);
}

struct Fake {
    dir: PathBuf,
    events: Arc<AtomicUsize>,
    /// Inspects of the good event's container: how many good events got through.
    inspects: Arc<AtomicUsize>,
}

impl Fake {
    fn start(stall: bool) -> Fake {
        static N: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "rgtr-hostile-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).expect("test dir");
        let listener = UnixListener::bind(dir.join("docker.sock")).expect("bind fake engine");
        let events = Arc::new(AtomicUsize::new(0));
        let inspects = Arc::new(AtomicUsize::new(0));
        let (ev, ins) = (events.clone(), inspects.clone());
        thread::spawn(move || {
            for s in listener.incoming().flatten() {
                let (ev, ins) = (ev.clone(), ins.clone());
                thread::spawn(move || serve(s, &ev, &ins, stall));
            }
        });
        Fake {
            dir,
            events,
            inspects,
        }
    }

    fn daemon(&self) -> Daemon {
        let log = self.dir.join("daemon.log");
        let child = Command::new(env!("CARGO_BIN_EXE_registrator"))
            .args(["-ip", "127.0.0.1"])
            .arg(format!(
                "file://{}",
                self.dir.join("services.json").display()
            ))
            .env(
                "DOCKER_HOST",
                format!("unix://{}", self.dir.join("docker.sock").display()),
            )
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(fs::File::create(&log).unwrap())
            .stderr(fs::File::create(&log).unwrap())
            .spawn()
            .expect("start the daemon");
        Daemon { child, log }
    }

    fn wait_events(&self, n: usize, d: &mut Daemon) {
        let start = Instant::now();
        while self.events.load(Ordering::SeqCst) < n {
            assert!(
                d.child.try_wait().unwrap().is_none(),
                "the daemon exited\n{}",
                d.log()
            );
            assert!(
                start.elapsed() < Duration::from_secs(600),
                "only {} event connections after 600 s\n{}",
                self.events.load(Ordering::SeqCst),
                d.log()
            );
            thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Fake {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.dir);
    }
}

struct Daemon {
    child: Child,
    log: PathBuf,
}

impl Daemon {
    fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// (VmRSS, VmHWM) in KiB.
    fn memory(&self) -> (u64, u64) {
        let status = fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.split_whitespace().next())
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| panic!("{name} in /proc status"))
        };
        (field("VmRSS:"), field("VmHWM:"))
    }

    fn stop(mut self) -> String {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let status = self.child.wait().expect("wait");
        let log = self.log();
        assert_eq!(status.code(), Some(0), "{log}");
        log
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn a_thousand_hostile_event_connections() {
    let fake = Fake::start(false);
    let mut d = fake.daemon();
    fake.wait_events(100, &mut d);
    let (rss100, hwm100) = d.memory();
    let t = Instant::now();
    fake.wait_events(1000, &mut d);
    let (rss1000, hwm1000) = d.memory();
    let took = t.elapsed();
    let good = fake.inspects.load(Ordering::SeqCst);
    figure(&format!(
        "hostile engine: VmRSS {rss100} KiB after 100 connections, {rss1000} KiB after 1,000 (VmHWM {hwm100} -> {hwm1000} KiB); 900 connections in {:.1} s; {good} good events got through",
        took.as_secs_f64()
    ));
    // Eight of every ten connections carry a good event before they break.
    assert!(good >= 600, "only {good} good events got through");
    let log = d.stop();
    assert!(!log.contains("panicked"), "{log}");
    for what in [
        "invalid chunk size",
        "chunk larger than",
        "event larger than",
        "invalid event JSON",
        "connection closed in the middle",
        "malformed status line",
        "Connection reset",
        "event stream ended",
    ] {
        assert!(log.contains(what), "no {what:?} in the log\n{log}");
    }
    assert!(
        rss1000 <= rss100 + 256,
        "VmRSS grew from {rss100} to {rss1000} KiB over 900 hostile connections"
    );
}

#[test]
fn a_stalled_half_event_is_given_up_and_the_stream_reopened() {
    let fake = Fake::start(true);
    let mut d = fake.daemon();
    fake.wait_events(2, &mut d);
    let log = d.stop();
    assert!(log.contains("stalled"), "{log}");
}
