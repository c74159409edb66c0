//! Faults during churn, against the real engine and the real registries: the registry must
//! converge to exactly the services of the running containers, with no restart of the daemon
//! (but where the daemon itself is killed). Every test prints (and appends to
//! `$RGTR_TEST_DIR/figures.txt`, which `tests/run.sh` shows) the time to converge after the
//! last fault or command, and the counts of lost and stale services, which must both be 0.
//!
//! Churn: 50 containers named `<prefix>NN` started by three threads, with every third run
//! followed by `rm -f` of one started twice as long ago and every fifth by `stop -t 0` of one
//! three times as old, so the end state mixes running, stopped and removed containers, and
//! the removals reach back to containers started before a fault.

mod common;

use std::collections::BTreeSet;
use std::fs;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use common::*;

/// How long a registry stays down in the outage tests.
const OUTAGE: Duration = Duration::from_secs(20);
/// The longest a test waits for convergence before it counts what is lost and stale.
const SETTLE: Duration = Duration::from_secs(60);

fn consul() -> String {
    format!("consul://{}", consul_addr())
}

struct Churn {
    done: Arc<AtomicUsize>,
    threads: Vec<thread::JoinHandle<()>>,
}

impl Churn {
    /// Starts `n` containers in the background over roughly `span`, removing and stopping some
    /// of them as it goes. Failed docker commands (the engine is being restarted) are skipped.
    fn start(prefix: &str, n: usize, span: Duration) -> Churn {
        let next = Arc::new(AtomicUsize::new(0));
        let done = Arc::new(AtomicUsize::new(0));
        let workers = 3;
        let pause = span * workers as u32 / n as u32;
        let threads = (0..workers)
            .map(|_| {
                let (next, done, prefix) = (next.clone(), done.clone(), prefix.to_string());
                thread::spawn(move || loop {
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    if i >= n {
                        return;
                    }
                    let name = format!("{prefix}{i:02}");
                    let _ =
                        docker_try(&["run", "-d", "--name", &name, "-p", "127.0.0.1::80", "bb"]);
                    if i % 3 == 2 {
                        let _ = docker_try(&["rm", "-f", &format!("{prefix}{:02}", i / 2)]);
                    }
                    if i % 5 == 4 {
                        let _ = docker_try(&["stop", "-t", "0", &format!("{prefix}{:02}", i / 3)]);
                    }
                    done.fetch_add(1, Ordering::SeqCst);
                    thread::sleep(pause);
                })
            })
            .collect();
        Churn { done, threads }
    }

    fn wait_progress(&self, k: usize) {
        wait_for(&format!("{k} churn steps"), None, || {
            (self.done.load(Ordering::SeqCst) >= k).then_some(())
        });
    }

    fn finish(self) {
        for t in self.threads {
            t.join().expect("churn thread");
        }
    }
}

/// The default service IDs of the running containers whose names start with `prefix`.
fn running_ids(prefix: &str) -> BTreeSet<String> {
    let h = hostname();
    docker(&["ps", "--format", "{{.Names}}"])
        .lines()
        .filter(|n| n.starts_with(prefix))
        .map(|n| format!("{h}:{n}:80"))
        .collect()
}

fn consul_ids() -> BTreeSet<String> {
    services().into_keys().collect()
}

/// Polls until the registry (`have`) holds exactly the running containers' services, checks
/// it stays so for a second, and records the figures. Fails with the lost and stale counts.
fn settle(
    what: &str,
    d: &Daemon,
    prefix: &str,
    from: Instant,
    have: impl Fn() -> BTreeSet<String>,
) {
    let want = running_ids(prefix);
    let started = Instant::now();
    let mut got = have();
    while got != want && started.elapsed() < SETTLE {
        thread::sleep(Duration::from_millis(50));
        got = have();
    }
    let took = from.elapsed();
    let lost = want.difference(&got).count();
    let stale = got.difference(&want).count();
    let line = format!(
        "{what}: {} running, converged {:.2} s after the last fault or command; lost {lost}, stale {stale}",
        want.len(),
        took.as_secs_f64()
    );
    figure(&line);
    assert!(
        lost == 0 && stale == 0,
        "{line}\nlost: {:?}\nstale: {:?}\n--- daemon log ---\n{}",
        want.difference(&got).collect::<Vec<_>>(),
        got.difference(&want).collect::<Vec<_>>(),
        d.log()
    );
    thread::sleep(Duration::from_secs(1));
    assert_eq!(have(), want, "changed after converging\n{}", d.log());
}

#[test]
fn killed_during_churn_then_restarted_with_cleanup() {
    let _g = lock();
    let mut d = Daemon::start(&["-ip", "127.0.0.1", &consul()]);
    let churn = Churn::start("kill", 50, Duration::from_secs(10));
    churn.wait_progress(20);
    let (status, _) = d.stop_with("KILL");
    assert_eq!(status.code(), None, "killed by the signal");
    churn.finish();
    let stale_before = consul_ids().difference(&running_ids("kill")).count();
    // What cleanup must never touch: another host's service, and a custom ID.
    let h = hostname();
    let foreign = [format!("other{h}:kill99:80"), "custom-kill".to_string()];
    for id in &foreign {
        let body = format!(r#"{{"ID":"{id}","Name":"x","Address":"127.0.0.1","Port":1}}"#);
        ureq::put(&format!(
            "http://{}/v1/agent/service/register",
            consul_addr()
        ))
        .content_type("application/json")
        .send(body.as_bytes())
        .expect("register a foreign service");
    }
    let from = Instant::now();
    let d = Daemon::start(&["-ip", "127.0.0.1", "-cleanup", &consul()]);
    let ours = || {
        let mut ids = consul_ids();
        for id in &foreign {
            assert!(ids.remove(id), "cleanup removed {id}");
        }
        ids
    };
    settle(
        "kill -9 during churn of 50, restart with -cleanup",
        &d,
        "kill",
        from,
        ours,
    );
    figure(&format!(
        "kill -9 during churn: the killed daemon left {stale_before} stale services; the new one's cleanup removed them"
    ));
    assert!(stale_before > 0, "the test should leave something to clean");
    assert!(d.log().contains("cleanup: "), "{}", d.log());
}

/// Stops a registry (a `tests/services.sh` command) once churn is under way, keeps it down for
/// [`OUTAGE`] and until the churn has ended, starts it again, and measures from there.
fn outage_during_churn(
    what: &str,
    d: &Daemon,
    prefix: &str,
    registry: &str,
    have: impl Fn() -> BTreeSet<String>,
) {
    let churn = Churn::start(prefix, 50, Duration::from_secs(12));
    churn.wait_progress(10);
    services_sh(&format!("stop-{registry}"));
    let down = Instant::now();
    thread::sleep(OUTAGE);
    churn.finish();
    services_sh(&format!("start-{registry}"));
    let from = Instant::now();
    settle(
        &format!(
            "{what} stopped {:.0} s during churn of 50 (measured from its start)",
            from.duration_since(down).as_secs_f64()
        ),
        d,
        prefix,
        from,
        have,
    );
    assert!(d.log().contains("registry unreachable"), "{}", d.log());
    assert!(d.log().contains("registry reachable again"), "{}", d.log());
}

#[test]
fn consul_stopped_for_20_s_during_churn() {
    let _g = lock();
    let d = Daemon::start(&["-ip", "127.0.0.1", &consul()]);
    // A dev agent: it comes back empty, so everything must be registered again.
    outage_during_churn("Consul", &d, "cout", "consul", consul_ids);
}

fn etcd_ids(prefix: &str) -> BTreeSet<String> {
    let out = Command::new("etcdctl")
        .args([
            "--endpoints",
            &std::env::var("ETCD_ADDR").expect("ETCD_ADDR from tests/services.sh"),
            "get",
            "--prefix",
            "--keys-only",
            prefix,
        ])
        .env("ETCDCTL_API", "3")
        .output()
        .expect("run etcdctl");
    assert!(
        out.status.success(),
        "etcdctl: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // By ID, as the other registries; a second key with the same ID (an old name left behind)
    // shows up as a stale `duplicate:` entry.
    let mut ids = BTreeSet::new();
    for key in String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.is_empty())
    {
        let id = key.rsplit('/').next().unwrap_or(key).to_string();
        if !ids.insert(id.clone()) {
            ids.insert(format!("duplicate:{key}"));
        }
    }
    ids
}

#[test]
fn etcd_stopped_for_20_s_during_churn() {
    let _g = lock();
    let prefix = format!("/faults{}", std::process::id());
    let uri = format!(
        "etcd://{}{prefix}",
        std::env::var("ETCD_ADDR").expect("ETCD_ADDR from tests/services.sh")
    );
    let d = Daemon::start(&["-ip", "127.0.0.1", &uri]);
    let keys = || etcd_ids(&format!("{prefix}/"));
    outage_during_churn("etcd", &d, "eout", "etcd", keys);
}

#[test]
fn engine_restarted_during_churn() {
    let _g = lock();
    let d = Daemon::start(&["-ip", "127.0.0.1", &consul()]);
    let churn = Churn::start("eng", 50, Duration::from_secs(20));
    churn.wait_progress(15);
    services_sh("restart-docker");
    churn.finish();
    let from = Instant::now();
    settle(
        "engine restarted during churn of 50",
        &d,
        "eng",
        from,
        consul_ids,
    );
    assert!(d.log().contains("reconnected"), "{}", d.log());
}

/// A container whose HEALTHCHECK is `test -e /h/ok` on a directory the test controls.
fn healthchecked(name: &str, dir: &std::path::Path, env: &[&str]) -> String {
    let vol = format!("{}:/h", dir.display());
    let mut args = vec![
        "--name",
        name,
        "-p",
        "127.0.0.1::80",
        "-v",
        &vol,
        "--health-cmd",
        "test -e /h/ok",
        "--health-interval",
        "1s",
        "--health-timeout",
        "1s",
        "--health-retries",
        "1",
        // Failures before the first pass do not count: it stays `starting` until then.
        "--health-start-period",
        "60s",
    ];
    for e in env {
        args.extend(["-e", e]);
    }
    args.extend(["bb", "httpd", "-f", "-p", "80", "-h", "/tmp"]);
    run(&args)
}

#[test]
fn health_flapping_registers_deregisters_and_mirrors_the_check() {
    let _g = lock();
    let h = hostname();
    let (dir, ok) = health_dir("health");
    let id = format!("{h}:flap:80");
    let present = |want: bool| {
        let id = id.clone();
        move || (consul_ids().contains(&id) == want).then_some(())
    };

    // -require-healthy: registered only while healthy.
    let d = Daemon::start(&["-ip", "127.0.0.1", "-require-healthy", &consul()]);
    healthchecked("flap", &dir, &[]);
    run_bb("plain");
    wait_for("the container without a HEALTHCHECK", Some(&d), || {
        consul_ids()
            .contains(&format!("{h}:plain:80"))
            .then_some(())
    });
    thread::sleep(Duration::from_secs(2));
    assert!(!consul_ids().contains(&id), "not registered while starting");
    for round in 0..2 {
        fs::write(&ok, "").unwrap();
        let t = Instant::now();
        wait_for("registered once healthy", Some(&d), present(true));
        figure(&format!(
            "health round {round}: registered {:.2} s after the check was made to pass",
            t.elapsed().as_secs_f64()
        ));
        fs::remove_file(&ok).unwrap();
        let t = Instant::now();
        wait_for("deregistered once unhealthy", Some(&d), present(false));
        figure(&format!(
            "health round {round}: deregistered {:.2} s after the check was made to fail",
            t.elapsed().as_secs_f64()
        ));
    }
    drop(d);
    reset();

    // SERVICE_CHECK_DOCKER: registered throughout, Consul's TTL check says what Docker says.
    let d = Daemon::start(&["-ip", "127.0.0.1", &consul()]);
    healthchecked("flap", &dir, &["SERVICE_CHECK_DOCKER=true"]);
    wait_for("registered", Some(&d), present(true));
    let check = format!("service:{id}");
    let status = || {
        checks()
            .get(&check)
            .map(|c| c["Status"].as_str().unwrap_or("").to_string())
    };
    assert_eq!(status().as_deref(), Some("critical"), "starting");
    for want in ["passing", "critical", "passing", "critical"] {
        if want == "passing" {
            fs::write(&ok, "").unwrap();
        } else {
            fs::remove_file(&ok).unwrap();
        }
        let t = Instant::now();
        wait_for(&format!("the check to be {want}"), Some(&d), || {
            (status().as_deref() == Some(want)).then_some(())
        });
        figure(&format!(
            "SERVICE_CHECK_DOCKER: check {want} {:.2} s after the HEALTHCHECK was made to {}",
            t.elapsed().as_secs_f64(),
            if want == "passing" { "pass" } else { "fail" }
        ));
        assert!(consul_ids().contains(&id), "registered throughout");
    }
    let c = &checks()[&check];
    assert!(
        c["Output"].as_str().unwrap_or("").contains("unhealthy"),
        "{c}"
    );
}

// ------------------------------------------------------------- registries that misbehave --

/// How long one registry call may take in the daemon (`src/backend/http.rs`): the longest the
/// Docker side may wait on the registry at a time.
const REGISTRY_TIMEOUT: Duration = Duration::from_secs(10);

/// The daemon's log lines, each stamped when this test first saw it (read every 10 ms).
struct LogTimes {
    lines: Arc<std::sync::Mutex<Vec<(Instant, String)>>>,
    stop: Arc<std::sync::atomic::AtomicBool>,
}

impl LogTimes {
    fn follow(path: std::path::PathBuf) -> LogTimes {
        let lines = Arc::new(std::sync::Mutex::new(Vec::new()));
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (l, s) = (lines.clone(), stop.clone());
        thread::spawn(move || {
            let mut seen = 0;
            while !s.load(Ordering::SeqCst) {
                let text = fs::read_to_string(&path).unwrap_or_default();
                // Whole lines only.
                let upto = text.rfind('\n').map_or(0, |i| i + 1);
                if upto > seen {
                    let now = Instant::now();
                    let mut g = l.lock().unwrap();
                    for line in text[seen..upto].lines() {
                        g.push((now, line.to_string()));
                    }
                    seen = upto;
                }
                thread::sleep(Duration::from_millis(10));
            }
        });
        LogTimes { lines, stop }
    }

    /// When a line containing `needle` was first seen.
    fn first(&self, needle: &str) -> Option<Instant> {
        let g = self.lines.lock().unwrap();
        g.iter().find(|(_, l)| l.contains(needle)).map(|(t, _)| *t)
    }

    /// Lines at `level` (`WARN`, `ERROR`) seen between `from` and `to`.
    fn at_level(&self, level: &str, from: Instant, to: Instant) -> Vec<String> {
        let g = self.lines.lock().unwrap();
        g.iter()
            .filter(|(t, l)| *t >= from && *t <= to && l.starts_with(&format!("[{level}")))
            .map(|(_, l)| l.clone())
            .collect()
    }
}

impl Drop for LogTimes {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

fn vm_rss_kib(pid: u32) -> u64 {
    let st = fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    st.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// Containers started one after another (`docker run` returned at the instant noted), for
/// the time from each start to the daemon taking up its event.
fn start_noted(prefix: &str, n: usize, pause: Duration) -> Vec<(String, Instant)> {
    (0..n)
        .map(|i| {
            let name = format!("{prefix}{i:02}");
            let id = docker(&["run", "-d", "--name", &name, "-p", "127.0.0.1::80", "bb"]);
            let at = Instant::now();
            if i % 3 == 2 {
                docker(&["rm", "-f", &format!("{prefix}{:02}", i / 2)]);
            }
            thread::sleep(pause);
            (id.trim().to_string(), at)
        })
        .collect()
}

/// The registry behind a [`fault::FaultProxy`] misbehaves in `mode` for `span` while 30
/// containers churn, then behaves again. Shows, and asserts:
/// - convergence afterwards, nothing lost or stale;
/// - no container's `start` waited longer than the registry timeout (plus the log's 10 ms
///   reading and a second's slack) before the daemon took it up; with a slow registry that
///   holds only where the daemon makes the calls on lanes (`laned`, Consul), and the wait is
///   printed for the others (see below);
/// - RSS flat: after convergence within 512 KiB of before the fault;
/// - the log says what happened once per fault: the line that says so exactly once, and at
///   most `max_noise` warnings and errors in all, however many calls failed (a call cut when
///   the proxy closes its connections at the switch back counts among them).
#[allow(clippy::too_many_arguments)]
fn misbehaving(
    what: &str,
    prefix: &str,
    upstream: &str,
    uri: impl Fn(&str) -> String,
    mode: fault::Mode,
    span: Duration,
    have: impl Fn() -> BTreeSet<String>,
    max_noise: usize,
    laned: bool,
) {
    let proxy = fault::FaultProxy::start(upstream);
    let d = Daemon::start(&["-ip", "127.0.0.1", &uri(proxy.addr())]);
    let log = LogTimes::follow(d.log_path.clone());
    // A few before the fault, registered normally.
    let mut started = start_noted(prefix, 5, Duration::from_millis(100));
    settle(
        &format!("{what}: before the fault"),
        &d,
        prefix,
        Instant::now(),
        &have,
    );
    let rss_before = vm_rss_kib(d.pid());
    proxy.set(mode);
    let fault = Instant::now();
    // 25 more, started over the fault (a `docker run` takes some 0.4 s here).
    let more_prefix = format!("{prefix}f");
    let pause = (span / 25).saturating_sub(Duration::from_millis(400));
    let churn = thread::spawn(move || start_noted(&more_prefix, 25, pause));
    thread::sleep(span);
    proxy.set(fault::Mode::Pass);
    let fault_for = fault.elapsed();
    // The churn may go on after the fault: convergence counts from its last command.
    started.extend(churn.join().expect("churn thread"));
    let end = Instant::now();
    settle(
        &format!(
            "{what} for {:.0} s during churn of 30",
            fault_for.as_secs_f64()
        ),
        &d,
        prefix,
        end,
        &have,
    );
    let rss_after = vm_rss_kib(d.pid());
    // From each start to the daemon's "event: Start <id>" line.
    let mut worst = Duration::ZERO;
    for (id, at) in &started {
        let short = &id[..12.min(id.len())];
        let seen = log
            .first(&format!("event: Start {short}"))
            .unwrap_or_else(|| panic!("no start event of {short} in the log\n{}", d.log()));
        worst = worst.max(seen.saturating_duration_since(*at));
    }
    let noise: Vec<String> = [
        log.at_level("WARN", fault, Instant::now()),
        log.at_level("ERROR", fault, Instant::now()),
    ]
    .concat();
    let line = format!(
        "{what}: Docker side waited at most {:.2} s for a start event; RSS {rss_before} -> {rss_after} KiB; {} warnings and errors logged",
        worst.as_secs_f64(),
        noise.len()
    );
    figure(&line);
    // A slow registry: from the first slow call on, Consul's calls are made on lanes and the
    // worker goes on with the events. The other backends make every call on the worker, so
    // the events of a churn wait behind the calls of the ones before: printed above, not
    // bounded, for them.
    if laned || !matches!(mode, fault::Mode::Delay(_)) {
        assert!(
            worst <= REGISTRY_TIMEOUT + Duration::from_secs(1),
            "{line}\n{}",
            d.log()
        );
    }
    assert!(rss_after <= rss_before + 512, "{line}");
    assert!(noise.len() <= max_noise, "{line}\n{}", noise.join("\n"));
    // What happened, said once.
    let says = match mode {
        fault::Mode::Delay(_) => "registry slow",
        _ => "registry unreachable",
    };
    let said = noise.iter().filter(|l| l.contains(says)).count();
    assert_eq!(said, 1, "{says:?} once\n{}\n{}", noise.join("\n"), d.log());
}

fn consul_via(addr: &str) -> String {
    format!("consul://{addr}")
}

#[test]
fn consul_answering_2_s_late_during_churn() {
    let _g = lock();
    misbehaving(
        "Consul answering 2 s late",
        "cdel",
        &consul_addr(),
        consul_via,
        fault::Mode::Delay(Duration::from_secs(2)),
        Duration::from_secs(10),
        consul_ids,
        3,
        true,
    );
}

#[test]
fn consul_a_black_hole_during_churn() {
    let _g = lock();
    misbehaving(
        "Consul a black hole",
        "cbh",
        &consul_addr(),
        consul_via,
        fault::Mode::BlackHole,
        Duration::from_secs(15),
        consul_ids,
        3,
        true,
    );
}

#[test]
fn consul_resetting_mid_answer_during_churn() {
    let _g = lock();
    misbehaving(
        "Consul resetting connections mid-answer",
        "crst",
        &consul_addr(),
        consul_via,
        fault::Mode::Reset,
        Duration::from_secs(10),
        consul_ids,
        3,
        true,
    );
}

#[test]
fn consul_answering_500_for_10_s_during_churn() {
    let _g = lock();
    misbehaving(
        "Consul answering 500",
        "c500",
        &consul_addr(),
        consul_via,
        fault::Mode::Http500,
        Duration::from_secs(10),
        consul_ids,
        3,
        true,
    );
}

fn etcd_addr() -> String {
    let a = std::env::var("ETCD_ADDR").expect("ETCD_ADDR from tests/services.sh");
    a.trim_start_matches("http://").to_string()
}

/// etcd v3 behind the proxy: `uri` and the key reader for a prefix of this test's own.
fn etcd_case(tag: &str) -> (impl Fn(&str) -> String, impl Fn() -> BTreeSet<String>) {
    let prefix = format!("/{tag}{}", std::process::id());
    let p2 = prefix.clone();
    (
        move |addr: &str| format!("etcd://{addr}{p2}"),
        move || etcd_ids(&format!("{prefix}/")),
    )
}

#[test]
fn etcd_answering_2_s_late_during_churn() {
    let _g = lock();
    let (uri, keys) = etcd_case("edel");
    misbehaving(
        "etcd answering 2 s late",
        "edel",
        &etcd_addr(),
        uri,
        fault::Mode::Delay(Duration::from_secs(2)),
        Duration::from_secs(10),
        keys,
        3,
        false,
    );
}

#[test]
fn etcd_a_black_hole_during_churn() {
    let _g = lock();
    let (uri, keys) = etcd_case("ebh");
    misbehaving(
        "etcd a black hole",
        "ebh",
        &etcd_addr(),
        uri,
        fault::Mode::BlackHole,
        Duration::from_secs(15),
        keys,
        3,
        false,
    );
}

#[test]
fn etcd_resetting_mid_answer_during_churn() {
    let _g = lock();
    let (uri, keys) = etcd_case("erst");
    misbehaving(
        "etcd resetting connections mid-answer",
        "erst",
        &etcd_addr(),
        uri,
        fault::Mode::Reset,
        Duration::from_secs(10),
        keys,
        3,
        false,
    );
}

#[test]
fn etcd_answering_500_for_10_s_during_churn() {
    let _g = lock();
    let (uri, keys) = etcd_case("e500");
    misbehaving(
        "etcd answering 500",
        "e500",
        &etcd_addr(),
        uri,
        fault::Mode::Http500,
        Duration::from_secs(10),
        keys,
        3,
        false,
    );
}
