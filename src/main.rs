//! registrator: registers the published ports of running Docker containers as services in a
//! registry, and deregisters them when the containers stop. A drop-in for
//! gliderlabs/registrator (same flags, `SERVICE_*` metadata and registry URIs).
//!
//! # Threads, one per concern
//!
//! ```text
//!   events thread ──Msg::Event / Msg::Sync──┐
//!   (docker::EventStream)                   ├──> mpsc ──> worker thread (bridge::Bridge)
//!   main thread ──Msg::Shutdown─────────────┘             owns docker::Client, the backend,
//!        ^                                                and what is registered
//!        └── mpsc <── signals thread (SIGTERM, SIGINT)      │ (ZooKeeper only)
//!                                                         zookeeper thread: pings the
//!                                                         session, reconnects, re-creates
//! ```
//!
//! - **events** ([`watcher`]): holds the `/events` subscription, reconnects with backoff
//!   when the engine goes away, replays missed events with `since=`, and asks for a full sync
//!   after every (re)connect. Blocks in `read`; no timers.
//! - **worker** ([`bridge`]): applies messages strictly in arrival order, so one container's
//!   events are handled in the engine's order. Inspects containers over its own kept-alive
//!   connection, turns them into services with the pure [`service::services`], and calls the
//!   [`backend::Backend`]. `-resync` and `-ttl-refresh` are deadlines in its `recv_timeout`.
//! - **zookeeper** ([`backend::zookeeper`], that backend only): keeps the session alive with
//!   pings, reconnects with backoff, and creates the ephemeral nodes again in a new session. It
//!   shares the connection with the worker under one lock.
//! - **signals**: turns SIGTERM/SIGINT into a message to main.
//! - **main**: parses the command line ([`cli`]), pings the registry (with `-retry-*`, its
//!   pauses cut short by a signal), starts the worker and events threads, then waits for a
//!   signal, tells the worker to stop and exits 0 within a second.
//!
//! # Where things live
//!
//! - [`docker::http`]: sans-I/O HTTP/1.1 response head and chunked/length body decoder.
//! - [`docker::events`]: event line splitting and decoding (old and new engine shapes).
//! - [`docker::container`]: the inspect JSON fields read, tolerant of nulls and old/new shapes.
//! - [`docker`]: the few lines of socket I/O around those cores.
//! - [`service`]: container + flags -> services (spec section 4), pure.
//! - [`backend`]: the registry interface and URI parsing; one file (or folder) per backend, each
//!   behind a cargo feature: `consul` (+ `tls`), `consulkv`, `etcd`, `skydns2`, `coredns`,
//!   `zookeeper`, `file`. HTTP backends share [`backend::http`]; the key-value ones share
//!   [`backend::kv`].

#[cfg(not(any(
    feature = "consul",
    feature = "consulkv",
    feature = "_etcd2",
    feature = "_etcd3",
    feature = "zookeeper",
    feature = "file"
)))]
compile_error!(
    "no registry backend in this build: enable at least one of the cargo features consul, \
     consulkv, etcd, skydns2, coredns, zookeeper, file (tls alone is not a backend)"
);

mod backend;
mod bridge;
mod cli;
mod docker;
mod service;
mod watcher;

use std::net::{IpAddr, ToSocketAddrs};
use std::process::ExitCode;
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

use crate::bridge::{Bridge, Msg};
use crate::cli::Command;

/// How long shutdown waits for the worker to finish what it is doing: SIGTERM exits within a
/// second.
const SHUTDOWN_GRACE: Duration = Duration::from_millis(800);
/// With `-deregister-on-shutdown`, the worker removes every service first; `docker stop` gives
/// a container 10 s before SIGKILL.
const SHUTDOWN_GRACE_DEREGISTER: Duration = Duration::from_secs(8);

fn main() -> ExitCode {
    let config = match cli::parse(std::env::args_os().skip(1)) {
        Ok(Command::Run(c)) => c,
        Ok(Command::Help) => {
            print!("{}", cli::HELP);
            return ExitCode::SUCCESS;
        }
        Ok(Command::Version) => {
            println!("registrator {}", env!("CARGO_PKG_VERSION"));
            return ExitCode::SUCCESS;
        }
        Err(usage) => {
            eprintln!("registrator: {usage}");
            eprintln!("Usage: registrator [options] <registry URI>  (registrator -help for more)");
            return ExitCode::from(2);
        }
    };
    init_logging();
    match run(*config) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Fail::Setup(e)) => {
            log::error!("{e}");
            ExitCode::from(1)
        }
        Err(Fail::Usage(e)) => {
            eprintln!("registrator: {e}");
            eprintln!("Usage: registrator [options] <registry URI>  (registrator -help for more)");
            ExitCode::from(2)
        }
    }
}

/// Why the daemon did not run: a usage error found late (a registry URI's parts: exit 2), or
/// anything else (exit 1).
enum Fail {
    Usage(String),
    Setup(String),
}

impl From<String> for Fail {
    fn from(s: String) -> Fail {
        Fail::Setup(s)
    }
}

fn run(config: cli::Config) -> Result<(), Fail> {
    // Signals first: SIGTERM during start-up (hostname lookup, registry retries) is a clean
    // exit too.
    let mut signals = Signals::new([SIGTERM, SIGINT]).map_err(|e| format!("signal setup: {e}"))?;
    let (stop_tx, stop_rx) = mpsc::channel::<i32>();
    thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            for sig in signals.forever() {
                if stop_tx.send(sig).is_err() {
                    return;
                }
            }
        })
        .map_err(|e| format!("start signal thread: {e}"))?;

    let options = backend::Options {
        ttl: config.ttl.map(|(ttl, _)| Duration::from_secs(ttl)),
    };
    let mut backend = backend::open(&config.uri, options).map_err(|e| match e {
        backend::OpenError::Usage(m) => Fail::Usage(m),
        backend::OpenError::Setup(m) => Fail::Setup(m),
    })?;
    if config.ttl.is_some() && !backend::expires(&config.uri) {
        log::warn!(
            "-ttl/-ttl-refresh only apply to etcd, etcd-legacy, skydns2 and coredns; ignored for {}",
            config.uri
        );
    }
    let endpoint = docker::Endpoint::from_env()?;

    let hostname = hostname();
    let host_ip = match config.ip {
        Some(_) => None,
        None => resolve(&hostname),
    };
    if config.ip.is_none() && host_ip.is_none() {
        log::warn!(
            "hostname {hostname:?} does not resolve; services bound to 0.0.0.0 are registered as 0.0.0.0 (use -ip)"
        );
    }
    let settings = service::Settings {
        hostname,
        host_ip: host_ip.map(|ip| ip.to_string()),
        ip: config.ip.map(|ip| ip.to_string()),
        internal: config.internal,
        explicit: config.explicit,
        ip_label: config.ip_label.clone(),
        tags: config.tags.clone(),
    };

    if let Some(sig) = ping_backend(backend.as_mut(), &config, &stop_rx)? {
        log::info!("{}: shutting down", signal_name(sig));
        return Ok(());
    }
    // What the registry already holds, and how much of it has this host's IDs (what
    // `-cleanup` would look at).
    match backend.list() {
        Ok(held) => {
            let prefix = format!("{}:", settings.hostname);
            let mine = held.iter().filter(|s| s.id.starts_with(&prefix)).count();
            log::info!(
                "the registry holds {} services here, {mine} with this host's IDs",
                held.len()
            );
        }
        Err(e) => log::warn!("{e}"),
    }

    let (tx, rx) = mpsc::channel();
    let (done_tx, done_rx) = mpsc::channel::<()>();
    let bridge = Bridge::new(
        Box::new(docker::Client::new(endpoint.clone())),
        backend,
        settings,
        bridge::Options {
            deregister: config.deregister,
            resync: config.resync,
            refresh: config.ttl.map(|(_, refresh)| Duration::from_secs(refresh)),
            cleanup: config.cleanup,
            require_healthy: config.require_healthy,
            deregister_on_shutdown: config.deregister_on_shutdown,
        },
    );
    thread::Builder::new()
        .name("worker".into())
        .spawn(move || {
            bridge.run(rx);
            let _ = done_tx.send(());
        })
        .map_err(|e| format!("start worker thread: {e}"))?;
    let events_tx = tx.clone();
    thread::Builder::new()
        .name("events".into())
        .spawn(move || watcher::run(endpoint, events_tx))
        .map_err(|e| format!("start event thread: {e}"))?;

    if let Ok(sig) = stop_rx.recv() {
        log::info!("{}: shutting down", signal_name(sig));
    }
    let _ = tx.send(Msg::Shutdown);
    let grace = if config.deregister_on_shutdown {
        SHUTDOWN_GRACE_DEREGISTER
    } else {
        SHUTDOWN_GRACE
    };
    // A second signal cuts the wait short.
    let until = std::time::Instant::now() + grace;
    loop {
        match done_rx.recv_timeout(Duration::from_millis(50)) {
            Ok(()) | Err(mpsc::RecvTimeoutError::Disconnected) => break,
            Err(mpsc::RecvTimeoutError::Timeout) => {}
        }
        if let Ok(sig) = stop_rx.try_recv() {
            log::warn!(
                "{}: exiting without waiting for the worker",
                signal_name(sig)
            );
            break;
        }
        if std::time::Instant::now() >= until {
            log::warn!("worker still busy after {grace:?}; exiting anyway");
            break;
        }
    }
    Ok(())
}

/// env_logger with `RUST_LOG` (default info), except that the HTTP client crates never log
/// below info: their debug and trace lines print request headers, the Consul token among them.
fn init_logging() {
    struct Guarded(env_logger::Logger);
    impl log::Log for Guarded {
        fn enabled(&self, m: &log::Metadata) -> bool {
            self.0.enabled(m) && !(m.target().starts_with("ureq") && m.level() > log::Level::Info)
        }
        fn log(&self, r: &log::Record) {
            if self.enabled(r.metadata()) {
                self.0.log(r);
            }
        }
        fn flush(&self) {
            self.0.flush();
        }
    }
    let logger =
        env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).build();
    let max = logger.filter();
    if log::set_boxed_logger(Box::new(Guarded(logger))).is_ok() {
        log::set_max_level(max);
    }
}

fn signal_name(sig: i32) -> &'static str {
    if sig == SIGTERM {
        "SIGTERM"
    } else {
        "SIGINT"
    }
}

/// Pings the registry: once, then `-retry-attempts` more times (forever with -1), pausing
/// `-retry-interval` between tries. Returns the signal that stopped it, if one did.
fn ping_backend(
    backend: &mut dyn backend::Backend,
    config: &cli::Config,
    stop: &mpsc::Receiver<i32>,
) -> Result<Option<i32>, String> {
    let mut attempt: u64 = 0;
    loop {
        match backend.ping() {
            Ok(()) => return Ok(None),
            Err(e) => {
                if config.retry_attempts.is_some_and(|n| attempt >= n) {
                    return Err(e.to_string());
                }
                attempt += 1;
                log::warn!("{e}; retry {attempt} in {:?}", config.retry_interval);
                match stop.recv_timeout(config.retry_interval) {
                    Ok(sig) => return Ok(Some(sig)),
                    Err(mpsc::RecvTimeoutError::Timeout) => {}
                    Err(mpsc::RecvTimeoutError::Disconnected) => return Err(e.to_string()),
                }
            }
        }
    }
}

/// The machine's hostname, as the kernel has it.
fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok().filter(|s| !s.is_empty()))
        .unwrap_or_else(|| "localhost".to_string())
}

/// The hostname's address, IPv4 preferred.
fn resolve(hostname: &str) -> Option<IpAddr> {
    let addrs: Vec<IpAddr> = (hostname, 0)
        .to_socket_addrs()
        .ok()?
        .map(|a| a.ip())
        .collect();
    addrs
        .iter()
        .find(|ip| ip.is_ipv4())
        .or_else(|| addrs.first())
        .copied()
}
