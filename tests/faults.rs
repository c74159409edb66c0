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
