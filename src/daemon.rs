//! The daemon's start-up and shutdown: the threads of [`crate`]'s map, wired together.

use std::net::{IpAddr, ToSocketAddrs};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

use crate::bridge::{self, Bridge, Msg};
use crate::{backend, cli, docker, service, watcher};

/// How long shutdown waits for the worker to finish what it is doing: SIGTERM exits within a
/// second.
const SHUTDOWN_GRACE: Duration = Duration::from_millis(800);
/// With `-deregister-on-shutdown`, the worker removes every service first; `docker stop` gives
/// a container 10 s before SIGKILL.
const SHUTDOWN_GRACE_DEREGISTER: Duration = Duration::from_secs(8);

/// Why the daemon did not run: a usage error found late (a registry URI's parts: exit 2), or
/// anything else (exit 1). Each call site says which.
#[derive(Debug)]
pub enum Fail {
    Usage(String),
    Setup(String),
}

/// Runs the daemon until SIGTERM or SIGINT.
pub fn run(config: cli::Config) -> Result<(), Fail> {
    // Signals first: SIGTERM during start-up (hostname lookup, registry retries) is a clean
    // exit too.
    let mut signals =
        Signals::new([SIGTERM, SIGINT]).map_err(|e| Fail::Setup(format!("signal setup: {e}")))?;
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
        .map_err(|e| Fail::Setup(format!("start signal thread: {e}")))?;

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
    let endpoint = docker::Endpoint::from_env().map_err(|e| match e {
        docker::EnvError::Usage(m) => Fail::Usage(m),
        docker::EnvError::Setup(m) => Fail::Setup(m),
    })?;
    if endpoint.is_tls() {
        // A certificate the engine refuses, or one of its own we do not trust, will not heal
        // by retrying: said now, exit 1. An engine not up yet is waited for, as without TLS.
        if let Err(docker::Error::Io(e)) = docker::Client::new(endpoint.clone()).ping() {
            if e.kind() == std::io::ErrorKind::InvalidData {
                return Err(Fail::Setup(format!("docker: {endpoint}: {e}")));
            }
        }
    }

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
        tags_template: config.tags_template.clone(),
        ip_from_container: config.ip_from_container,
        swarm: config.swarm,
    };

    // The worker's input, made now so that the backend can report a lost session to it.
    let (tx, rx) = mpsc::channel();
    let lost = tx.clone();
    backend.on_lost(std::sync::Arc::new(move || {
        let _ = lost.send(Msg::RegistryLost);
    }));
    if let Some(sig) = ping_backend(backend.as_mut(), &config, &stop_rx).map_err(Fail::Setup)? {
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
            deregister_on_stop: config.deregister_on_stop,
            swarm: config.swarm,
        },
    )
    .with_wake(tx.clone());
    thread::Builder::new()
        .name("worker".into())
        .spawn(move || {
            bridge.run(rx);
            let _ = done_tx.send(());
        })
        .map_err(|e| Fail::Setup(format!("start worker thread: {e}")))?;
    let events_tx = tx.clone();
    let swarm = config.swarm;
    thread::Builder::new()
        .name("events".into())
        .spawn(move || watcher::run(endpoint, events_tx, swarm))
        .map_err(|e| Fail::Setup(format!("start event thread: {e}")))?;

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
