//! Shared harness for the end-to-end tests: the real daemon binary against the private engine
//! and the Consul agent that `tests/services.sh` started (its `env` file sets DOCKER_HOST,
//! CONSUL_HTTP_ADDR and RGTR_TEST_DIR; `tests/run.sh` does all of it).
//!
//! The tests share one engine and one agent, so they run one at a time ([`lock`]), and each
//! starts from nothing ([`reset`]). Waiting is polling with a generous deadline: a test asserts
//! what converges, never how fast (figures belong to `tests/bench.sh`).

#![allow(dead_code)]

pub mod fault;

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;

pub const WAIT: Duration = Duration::from_secs(30);

static LOCK: Mutex<()> = Mutex::new(());

/// Serializes the tests (one engine, one agent) and resets both.
pub fn lock() -> MutexGuard<'static, ()> {
    let g = LOCK.lock().unwrap_or_else(|p| p.into_inner());
    reset();
    g
}

/// An environment variable tests/services.sh exports; its absence is a clear failure.
pub fn required(var: &str) -> String {
    match std::env::var(var) {
        Ok(v) if !v.is_empty() => v,
        _ => panic!(
            "{var} is not set: the end-to-end tests need the private Docker engine and Consul \
             from tests/services.sh; run them with tests/run.sh"
        ),
    }
}

/// The private engine's socket. The tests remove every container they find, so anything but
/// the engine tests/services.sh started under RGTR_TEST_DIR is refused.
pub fn docker_host() -> String {
    let host = required("DOCKER_HOST");
    let private = format!("unix://{}/", test_dir().display());
    assert!(
        host.starts_with(&private),
        "DOCKER_HOST={host} is not the private test engine under RGTR_TEST_DIR; the end-to-end \
         tests remove every container, so they only run against tests/services.sh's engine \
         (use tests/run.sh)"
    );
    host
}

/// The test agent's address. The tests deregister every service they find, so an agent that
/// is not tests/services.sh's (node `rgtr-test`) is refused.
pub fn consul_addr() -> String {
    static CHECKED: std::sync::OnceLock<()> = std::sync::OnceLock::new();
    let addr = required("CONSUL_HTTP_ADDR");
    CHECKED.get_or_init(|| {
        let url = format!("http://{addr}/v1/agent/self");
        let text = ureq::get(&url)
            .call()
            .and_then(|mut r| r.body_mut().read_to_string())
            .unwrap_or_else(|e| panic!("GET {url}: {e} (is tests/services.sh's Consul up?)"));
        let v: Value = serde_json::from_str(&text).expect("agent/self JSON");
        assert_eq!(
            v["Config"]["NodeName"], "rgtr-test",
            "CONSUL_HTTP_ADDR={addr} is not the test agent of tests/services.sh; the end-to-end \
             tests deregister every service, so they only run against it (use tests/run.sh)"
        );
    });
    addr
}

pub fn test_dir() -> PathBuf {
    PathBuf::from(required("RGTR_TEST_DIR"))
}

/// A fresh directory `<name><pid>` under the test dir, to mount into a healthchecked container,
/// and the path of the `ok` file in it whose presence makes the check pass (absent at first).
pub fn health_dir(name: &str) -> (PathBuf, PathBuf) {
    let dir = test_dir().join(format!("{name}{}", std::process::id()));
    fs::create_dir_all(&dir).unwrap();
    let ok = dir.join("ok");
    let _ = fs::remove_file(&ok);
    (dir, ok)
}

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Runs the docker CLI against the private engine; panics with its stderr on failure.
pub fn docker(args: &[&str]) -> String {
    docker_try(args).unwrap_or_else(|e| panic!("docker {}: {e}", args.join(" ")))
}

pub fn docker_try(args: &[&str]) -> Result<String, String> {
    docker_on(&docker_host(), args)
}

/// Runs the docker CLI against the engine at `host` (a DOCKER_HOST value): its output, or its
/// stderr on failure.
pub fn docker_on(host: &str, args: &[&str]) -> Result<String, String> {
    let out = Command::new("docker")
        .args(args)
        .env("DOCKER_HOST", host)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run docker: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_string())
    }
}

/// `docker run -d ARGS...`; returns the full container ID.
pub fn run(args: &[&str]) -> String {
    let mut all = vec!["run", "-d"];
    all.extend_from_slice(args);
    docker(&all)
}

/// `docker run -d --name NAME -p 127.0.0.1::80 bb`, the plain test container.
pub fn run_bb(name: &str) -> String {
    run(&["--name", name, "-p", "127.0.0.1::80", "bb"])
}

/// The host port a container's `port` (e.g. `80/tcp`) is published on.
pub fn host_port(container: &str, port: &str) -> u16 {
    let out = docker(&["port", container, port]);
    let line = out.lines().next().unwrap_or_default();
    line.rsplit(':')
        .next()
        .and_then(|p| p.trim().parse().ok())
        .unwrap_or_else(|| panic!("no published port for {container} {port}: {out:?}"))
}

pub fn inspect(container: &str) -> Value {
    let out = docker(&["inspect", container]);
    let v: Value = serde_json::from_str(&out).expect("inspect JSON");
    v[0].clone()
}

/// Services the agent holds, by ID (Consul's own `consul` service left out).
pub fn services() -> BTreeMap<String, Value> {
    let v = consul_get("/v1/agent/services");
    let map: BTreeMap<String, Value> = serde_json::from_value(v).expect("services map");
    map.into_iter().filter(|(id, _)| id != "consul").collect()
}

/// Checks the agent holds, by check ID.
pub fn checks() -> BTreeMap<String, Value> {
    serde_json::from_value(consul_get("/v1/agent/checks")).expect("checks map")
}

pub fn consul_get(path: &str) -> Value {
    let url = format!("http://{}{}", consul_addr(), path);
    let mut resp = ureq::get(&url)
        .call()
        .unwrap_or_else(|e| panic!("GET {url}: {e}"));
    let text = resp.body_mut().read_to_string().expect("consul body");
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("GET {url}: {e}: {text}"))
}

/// Whether the agent holds service `id` (one small request, for tight polling).
pub fn agent_has(id: &str) -> bool {
    let url = format!("http://{}/v1/agent/service/{}", consul_addr(), encode(id));
    match ureq::get(&url).call() {
        Ok(_) => true,
        Err(ureq::Error::StatusCode(404)) => false,
        Err(e) => panic!("GET {url}: {e}"),
    }
}

pub fn consul_put(path: &str) {
    let url = format!("http://{}{}", consul_addr(), path);
    ureq::put(&url)
        .send_empty()
        .unwrap_or_else(|e| panic!("PUT {url}: {e}"));
}

/// No containers on the engine, no services (but Consul's own) in the agent.
pub fn reset() {
    let ids = docker(&["ps", "-aq"]);
    if !ids.is_empty() {
        let mut args = vec!["rm", "-f", "-v"];
        args.extend(ids.split_whitespace());
        docker(&args);
    }
    for net in docker(&["network", "ls", "--filter", "label=rgtr-test", "-q"]).split_whitespace() {
        let _ = docker_try(&["network", "rm", net]);
    }
    for id in services().keys() {
        consul_put(&format!("/v1/agent/service/deregister/{}", encode(id)));
    }
}

pub fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// The machine's hostname as the daemon reads it.
pub fn hostname() -> String {
    fs::read_to_string("/proc/sys/kernel/hostname")
        .expect("hostname")
        .trim()
        .to_string()
}

/// Polls `f` every 50 ms until it returns `Some`, or panics after `WAIT` with `what` and the
/// daemon's log.
pub fn wait_for<T>(what: &str, daemon: Option<&Daemon>, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        if start.elapsed() > WAIT {
            let log = daemon.map(Daemon::log).unwrap_or_default();
            panic!("timed out after {WAIT:?} waiting for {what}\n--- daemon log ---\n{log}");
        }
        thread::sleep(Duration::from_millis(50));
    }
}

/// Waits until the agent's service IDs are exactly `want`, then checks they stay so for a
/// moment (nothing late, nothing stale).
pub fn converge(daemon: &Daemon, want: &[String]) {
    let mut want: Vec<String> = want.to_vec();
    want.sort();
    let mut last = Vec::new();
    wait_for(
        &format!("exactly {} services", want.len()),
        Some(daemon),
        || {
            last = services().into_keys().collect();
            (last == want).then_some(())
        },
    );
    thread::sleep(Duration::from_millis(500));
    let now: Vec<String> = services().into_keys().collect();
    assert_eq!(
        now,
        want,
        "services changed after converging\n{}",
        daemon.log()
    );
}

/// The daemon under test, its log in a file under the test dir.
pub struct Daemon {
    child: Option<Child>,
    pub log_path: PathBuf,
}

impl Daemon {
    pub fn start(args: &[&str]) -> Daemon {
        Daemon::start_on(&docker_host(), args)
    }

    /// Starts the daemon talking to the engine at `engine` (a DOCKER_HOST value).
    pub fn start_on(engine: &str, args: &[&str]) -> Daemon {
        let d = Daemon::spawn(&[("DOCKER_HOST", engine)], args);
        d.wait_subscribed();
        d
    }

    /// Starts the daemon with extra environment and does not wait for anything.
    pub fn spawn(env: &[(&str, &str)], args: &[&str]) -> Daemon {
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let log_path = test_dir().join(format!("daemon-{}-{n}.log", std::process::id()));
        let log = fs::File::create(&log_path).expect("daemon log");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_registrator"));
        cmd.args(args)
            .env("DOCKER_HOST", docker_host())
            .env(
                "RUST_LOG",
                std::env::var("RGTR_LOG").unwrap_or_else(|_| "registrator=debug".into()),
            )
            .env_remove("CONSUL_HTTP_TOKEN")
            // What a test gives a daemon of its own (tests/migration.rs), never inherited.
            .env_remove("DOCKER_TLS_VERIFY")
            .env_remove("DOCKER_CERT_PATH")
            .env_remove("DOCKER_API_VERSION")
            .env_remove("ETCD_ENDPOINTS")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log fd"))
            .stderr(log);
        for (k, v) in env {
            cmd.env(k, v);
        }
        Daemon {
            child: Some(cmd.spawn().expect("start the daemon")),
            log_path,
        }
    }

    pub fn wait_subscribed(&self) {
        wait_for("the daemon to subscribe to events", Some(self), || {
            self.log().contains("listening for events").then_some(())
        });
    }

    /// Waits (bounded) for the daemon to exit by itself.
    pub fn wait_exit(&mut self) -> ExitStatus {
        let child = self.child.as_mut().expect("running");
        let status = wait_for("the daemon to exit", None, || {
            child.try_wait().ok().flatten()
        });
        self.child = None;
        status
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    pub fn log(&self) -> String {
        fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    pub fn is_running(&mut self) -> bool {
        matches!(self.child.as_mut().map(|c| c.try_wait()), Some(Ok(None)))
    }

    /// Sends `signal` and waits (bounded) for the exit; returns the status and how long it took.
    pub fn stop_with(&mut self, signal: &str) -> (ExitStatus, Duration) {
        let mut child = self.child.take().expect("running");
        let start = Instant::now();
        Command::new("kill")
            .args([&format!("-{signal}"), &child.id().to_string()])
            .status()
            .expect("kill");
        loop {
            if let Some(st) = child.try_wait().expect("wait") {
                return (st, start.elapsed());
            }
            if start.elapsed() > Duration::from_secs(10) {
                let _ = child.kill();
                panic!(
                    "daemon did not exit within 10 s of SIG{signal}\n{}",
                    self.log()
                );
            }
            thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// `tests/services.sh <cmd> <dir>` (engine and agent restarts).
pub fn services_sh(cmd: &str) {
    let st = Command::new("bash")
        .arg(repo_root().join("tests/services.sh"))
        .arg(cmd)
        .arg(test_dir())
        .status()
        .expect("run tests/services.sh");
    assert!(st.success(), "tests/services.sh {cmd} failed");
}

/// The private engine's socket path.
fn engine_socket() -> String {
    docker_host().trim_start_matches("unix://").to_string()
}

/// A connection a relay copies through.
trait Stream: std::io::Read + std::io::Write + Send + Sized + 'static {
    fn dup(&self) -> Self;
    fn close(&self);
}

impl Stream for UnixStream {
    fn dup(&self) -> Self {
        self.try_clone().expect("clone a Unix stream")
    }
    fn close(&self) {
        let _ = self.shutdown(std::net::Shutdown::Both);
    }
}

impl Stream for std::net::TcpStream {
    fn dup(&self) -> Self {
        self.try_clone().expect("clone a TCP stream")
    }
    fn close(&self) {
        let _ = self.shutdown(std::net::Shutdown::Both);
    }
}

/// Copies both ways between `a` and `b`, one thread each way; when either side ends, both close.
fn splice<A: Stream, B: Stream>(a: A, b: B) {
    pump(a.dup(), b.dup());
    pump(b, a);
}

fn pump<F: Stream, T: Stream>(mut from: F, mut to: T) {
    thread::spawn(move || {
        let _ = std::io::copy(&mut from, &mut to);
        to.close();
    });
}

/// A Unix-socket relay between the daemon and the real engine that a test can cut (every open
/// connection closed, new ones refused) and restore: the daemon loses the engine while the
/// engine goes on, so events are missed for real.
pub struct CutProxy {
    path: PathBuf,
    state: std::sync::Arc<Mutex<ProxyState>>,
}

struct ProxyState {
    open: bool,
    conns: Vec<UnixStream>,
}

impl CutProxy {
    pub fn start() -> CutProxy {
        let target = engine_socket();
        let path = test_dir().join(format!("proxy-{}.sock", std::process::id()));
        let _ = fs::remove_file(&path);
        let listener = UnixListener::bind(&path).expect("bind proxy socket");
        let state = std::sync::Arc::new(Mutex::new(ProxyState {
            open: true,
            conns: Vec::new(),
        }));
        let st = state.clone();
        thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { continue };
                let mut guard = st.lock().unwrap_or_else(|p| p.into_inner());
                if !guard.open {
                    continue; // dropped: the daemon sees the connection close at once
                }
                let Ok(upstream) = UnixStream::connect(&target) else {
                    continue;
                };
                guard.conns.push(client.dup());
                guard.conns.push(upstream.dup());
                drop(guard);
                splice(client, upstream);
            }
        });
        CutProxy { path, state }
    }

    pub fn docker_host(&self) -> String {
        format!("unix://{}", self.path.display())
    }

    pub fn cut(&self) {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        st.open = false;
        for c in st.conns.drain(..) {
            c.close();
        }
    }

    pub fn restore(&self) {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).open = true;
    }
}

/// A TCP listener on 127.0.0.1 relaying to the engine's Unix socket, so the daemon can be
/// pointed at `tcp://127.0.0.1:<port>` and reach the real engine.
pub fn tcp_relay() -> String {
    let target = engine_socket();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind relay");
    let addr = listener.local_addr().expect("relay address");
    thread::spawn(move || {
        for client in listener.incoming() {
            let Ok(client) = client else { continue };
            if let Ok(upstream) = UnixStream::connect(&target) {
                splice(client, upstream);
            }
        }
    });
    format!("tcp://{addr}")
}

/// Prints a measured figure and appends it to `$RGTR_TEST_DIR/figures.txt`, which
/// `tests/run.sh` shows at the end (only printed when there is no test dir).
pub fn figure(line: &str) {
    eprintln!("FIGURE {line}");
    if let Ok(dir) = std::env::var("RGTR_TEST_DIR") {
        let path = PathBuf::from(dir).join("figures.txt");
        let mut text = fs::read_to_string(&path).unwrap_or_default();
        text.push_str(line);
        text.push('\n');
        let _ = fs::write(path, text);
    }
}
