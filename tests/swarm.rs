//! End to end, `-swarm`: the release daemon against a real single-node swarm (a private Docker
//! 28.5 engine that `tests/docker28.sh start-swarm` made a manager, on 127.0.0.1) and the Consul
//! agent of `tests/services.sh`, asserting on what the agent holds. The kernel here has no IPVS,
//! so the ingress routing mesh carries no traffic: an ingress port is checked in the API and in
//! Consul, never connected to; a host-mode port (bound to 127.0.0.1 only: the script's
//! `docker_gwbridge` says so) is connected to.

mod common;

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::thread;
use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};

fn consul() -> String {
    format!("consul://{}", consul_addr())
}

fn env(var: &str) -> String {
    match std::env::var(var) {
        Ok(v) if !v.is_empty() => v,
        _ => panic!(
            "{var} is not set: the swarm tests need tests/docker28.sh start-swarm (tests/run.sh)"
        ),
    }
}

/// The swarm engine (a DOCKER_HOST value); refused unless it is the private one under
/// RGTR_TEST_DIR, since the tests remove every swarm service.
fn swarm_host() -> String {
    let host = env("SWARM_DOCKER_HOST");
    let private = format!("unix://{}/", test_dir().display());
    assert!(
        host.starts_with(&private),
        "SWARM_DOCKER_HOST={host} is not the private swarm under RGTR_TEST_DIR"
    );
    host
}

fn overlay() -> String {
    env("SWARM_OVERLAY")
}

/// The docker CLI against the swarm engine.
fn sd(args: &[&str]) -> String {
    sd_try(args).unwrap_or_else(|e| panic!("docker {}: {e}", args.join(" ")))
}

fn sd_try(args: &[&str]) -> Result<String, String> {
    docker_on(&swarm_host(), args)
}

/// No swarm services and no containers on the swarm engine; nothing in Consul (and the
/// services.sh engine empty: [`lock`]).
fn swarm_lock() -> std::sync::MutexGuard<'static, ()> {
    let g = lock();
    let listed = sd(&["service", "ls", "-q"]);
    if !listed.is_empty() {
        let mut args = vec!["service", "rm"];
        args.extend(listed.split_whitespace());
        sd(&args);
    }
    wait_for("the swarm's task containers to go", None, || {
        sd(&["ps", "-aq"]).is_empty().then_some(())
    });
    for id in services().keys() {
        consul_put(&format!("/v1/agent/service/deregister/{}", encode(id)));
    }
    g
}

/// `docker service create --detach` with what every test service needs (no image lookup, a
/// 1 s stop grace period: busybox httpd ignores SIGTERM), `args` before the image and
/// `cmd` after it.
fn create(name: &str, args: &[&str], image: &str, cmd: &[&str]) -> String {
    let mut all = vec![
        "service",
        "create",
        "--detach",
        "--no-resolve-image",
        "--stop-grace-period",
        "1s",
        "--name",
        name,
    ];
    all.extend_from_slice(args);
    all.push(image);
    all.extend_from_slice(cmd);
    sd(&all)
}

const HTTPD: &[&str] = &["httpd", "-f", "-p", "80", "-h", "/tmp"];

/// The daemon against the swarm engine.
fn daemon(args: &[&str]) -> Daemon {
    let d = Daemon::spawn(&[("DOCKER_HOST", &swarm_host())], args);
    d.wait_subscribed();
    d
}

fn wait_service(d: &Daemon, id: &str) -> Value {
    wait_for(&format!("service {id}"), Some(d), || services().remove(id))
}

fn wait_gone(d: &Daemon, id: &str) {
    wait_for(&format!("service {id} to go"), Some(d), || {
        (!services().contains_key(id)).then_some(())
    });
}

fn wait_log(d: &Daemon, text: &str) {
    wait_for(&format!("log line {text:?}"), Some(d), || {
        d.log().contains(text).then_some(())
    });
}

/// The names of the running task containers of swarm service `service`.
fn tasks(service: &str) -> Vec<String> {
    let filter = format!("label=com.docker.swarm.service.name={service}");
    let out = sd(&["ps", "--filter", &filter, "--format", "{{.Names}}"]);
    let mut names: Vec<String> = out.lines().map(str::to_string).collect();
    names.sort();
    names
}

fn wait_tasks(service: &str, n: usize) -> Vec<String> {
    wait_for(&format!("{n} running tasks of {service}"), None, || {
        let t = tasks(service);
        (t.len() == n).then_some(t)
    })
}

/// The entries of `name` in the agent: (ID, address, port, tags).
fn entries(name: &str) -> Vec<(String, String, u64, Vec<String>)> {
    let mut out: Vec<_> = services()
        .into_iter()
        .filter(|(_, s)| s["Service"] == name)
        .map(|(id, s)| {
            let tags = s["Tags"].as_array().cloned().unwrap_or_default();
            let tags = tags.iter().filter_map(|t| t.as_str().map(str::to_string));
            (
                id,
                s["Address"].as_str().unwrap_or("").to_string(),
                s["Port"].as_u64().unwrap_or(0),
                tags.collect(),
            )
        })
        .collect();
    out.sort();
    out
}

/// An HTTP GET of `/` on 127.0.0.1:`port`: its status line.
fn http_status(port: u16) -> Option<String> {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    s.write_all(b"GET / HTTP/1.0\r\nHost: t\r\n\r\n").ok()?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).ok()?;
    let text = String::from_utf8_lossy(&buf);
    text.lines().next().map(str::to_string)
}

// ------------------------------------------------------------------ tests --

#[test]
fn a_service_with_ingress_and_host_ports() {
    let _g = swarm_lock();
    let h = hostname();
    let ov = overlay();
    // No -ip: the ingress entry takes the node's address (127.0.0.1, as advertised).
    let d = daemon(&["-swarm", &consul()]);
    wait_log(&d, "swarm: this node is a manager");
    create(
        "web",
        &[
            "--network",
            &ov,
            "--publish",
            "published=23080,target=80",
            "--publish",
            "mode=host,published=23081,target=81",
            "--label",
            "SERVICE_80_NAME=www",
            "--label",
            "SERVICE_TAGS=front,v1",
            "--label",
            "SERVICE_CHECK_TCP=true",
            "--container-label",
            "SERVICE_81_NAME=web-direct",
        ],
        "bb",
        &[
            "sh",
            "-c",
            "httpd -p 80 -h /tmp && exec httpd -f -p 81 -h /tmp",
        ],
    );
    let ingress = wait_service(&d, &format!("{h}:web:23080"));
    assert_eq!(ingress["Service"], "www");
    assert_eq!(ingress["Address"], "127.0.0.1", "the node's Status.Addr");
    assert_eq!(ingress["Port"], 23080);
    assert_eq!(ingress["Tags"], json!(["front", "v1"]));
    let check = checks()
        .into_values()
        .find(|c| c["ServiceID"] == format!("{h}:web:23080"));
    assert!(
        check.is_some(),
        "SERVICE_CHECK_TCP of the service's labels: {:?}",
        checks()
    );
    // The host-mode port: its task container, like any container, under the service's name
    // (here its container label's SERVICE_81_NAME), reachable on 127.0.0.1.
    let task = wait_tasks("web", 1).remove(0);
    let direct = wait_service(&d, &format!("{h}:{task}:81"));
    assert_eq!(direct["Service"], "web-direct");
    assert_eq!(direct["Port"], 23081);
    assert_eq!(direct["Address"], "127.0.0.1", "the binding's address");
    let status = wait_for("the host-mode port to answer", Some(&d), || {
        http_status(23081)
    });
    assert!(
        status.contains(" 200 ") || status.contains(" 404 "),
        "{status}"
    );
    // Nothing else: the host-mode port has no service-level entry.
    let mut ids: Vec<String> = services().into_keys().collect();
    ids.sort();
    let mut want = vec![format!("{h}:web:23080"), format!("{h}:{task}:81")];
    want.sort();
    assert_eq!(ids, want, "{}", d.log());
}

#[test]
fn scaling_changes_no_registration() {
    let _g = swarm_lock();
    let h = hostname();
    let d = daemon(&["-swarm", "-ip", "127.0.0.1", &consul()]);
    create(
        "scaled",
        &["--publish", "published=23082,target=80"],
        "bb",
        HTTPD,
    );
    let id = format!("{h}:scaled:23082");
    // No SERVICE_NAME: the service's name.
    assert_eq!(wait_service(&d, &id)["Service"], "scaled");
    let sent = |log: &str| {
        let lines = log.lines().filter(|l| l.contains(&id));
        lines
            .filter(|l| l.contains("added: ") || l.contains("refreshed: "))
            .count()
    };
    let events = |log: &str| log.matches("event: Service").count();
    let (sent_before, events_before) = (sent(&d.log()), events(&d.log()));
    sd(&["service", "scale", "--detach", "scaled=3"]);
    wait_tasks("scaled", 3);
    sd(&["service", "scale", "--detach", "scaled=1"]);
    wait_tasks("scaled", 1);
    thread::sleep(Duration::from_millis(500));
    let log = d.log();
    assert!(
        events(&log) >= events_before + 2,
        "the scale updates were seen:\n{log}"
    );
    assert_eq!(
        sent(&log),
        sent_before,
        "and nothing was sent again:\n{log}"
    );
    assert_eq!(services().into_keys().collect::<Vec<_>>(), [id]);
}

#[test]
fn updating_labels_then_ports_re_registers() {
    let _g = swarm_lock();
    let h = hostname();
    let d = daemon(&["-swarm", "-ip", "127.0.0.1", &consul()]);
    create(
        "upd",
        &[
            "--publish",
            "published=23083,target=80",
            "--label",
            "SERVICE_TAGS=v1",
        ],
        "bb",
        HTTPD,
    );
    let old = format!("{h}:upd:23083");
    assert_eq!(wait_service(&d, &old)["Tags"], json!(["v1"]));
    sd(&[
        "service",
        "update",
        "--detach",
        "--label-add",
        "SERVICE_TAGS=v2",
        "upd",
    ]);
    wait_for("tags v2", Some(&d), || {
        (services().get(&old)?["Tags"] == json!(["v2"])).then_some(())
    });
    sd(&[
        "service",
        "update",
        "--detach",
        "--publish-rm",
        "published=23083,target=80",
        "--publish-add",
        "published=23084,target=80",
        "upd",
    ]);
    let new = format!("{h}:upd:23084");
    converge(&d, std::slice::from_ref(&new));
    assert_eq!(services()[&new]["Tags"], json!(["v2"]));
}

#[test]
fn removing_the_service_deregisters() {
    let _g = swarm_lock();
    let h = hostname();
    let d = daemon(&["-swarm", "-ip", "127.0.0.1", &consul()]);
    create(
        "gone",
        &["--publish", "published=23085,target=80"],
        "bb",
        HTTPD,
    );
    let id = format!("{h}:gone:23085");
    wait_service(&d, &id);
    sd(&["service", "rm", "gone"]);
    wait_gone(&d, &id);
}

#[test]
fn cleanup_at_restart_removes_a_service_removed_meanwhile() {
    let _g = swarm_lock();
    let h = hostname();
    let mut d = daemon(&["-swarm", "-ip", "127.0.0.1", &consul()]);
    create(
        "stays",
        &["--publish", "published=23086,target=80"],
        "bb",
        HTTPD,
    );
    create(
        "leaves",
        &["--publish", "published=23087,target=80"],
        "bb",
        HTTPD,
    );
    let (stays, leaves) = (format!("{h}:stays:23086"), format!("{h}:leaves:23087"));
    wait_service(&d, &stays);
    wait_service(&d, &leaves);
    d.stop_with("KILL");
    sd(&["service", "rm", "leaves"]);
    let d = daemon(&["-swarm", "-ip", "127.0.0.1", "-cleanup", &consul()]);
    wait_log(&d, &format!("cleanup: {leaves}"));
    converge(&d, &[stays]);
}

#[test]
fn a_consul_outage_during_an_update() {
    let _g = swarm_lock();
    let h = hostname();
    let d = daemon(&["-swarm", "-ip", "127.0.0.1", &consul()]);
    create(
        "outage",
        &[
            "--publish",
            "published=23088,target=80",
            "--label",
            "SERVICE_TAGS=before",
        ],
        "bb",
        HTTPD,
    );
    let old = format!("{h}:outage:23088");
    wait_service(&d, &old);
    services_sh("stop-consul");
    sd(&[
        "service",
        "update",
        "--detach",
        "--label-add",
        "SERVICE_TAGS=after",
        "--publish-rm",
        "published=23088,target=80",
        "--publish-add",
        "published=23089,target=80",
        "outage",
    ]);
    // The update's calls fail: held while the agent is down.
    wait_log(&d, "registry unreachable");
    thread::sleep(Duration::from_secs(1));
    services_sh("start-consul"); // a dev agent starts empty
    let new = format!("{h}:outage:23089");
    converge(&d, std::slice::from_ref(&new));
    assert_eq!(services()[&new]["Tags"], json!(["after"]));
    assert!(d.log().contains("registry reachable again"), "{}", d.log());
}

#[test]
fn internal_registers_one_entry_per_replica() {
    let _g = swarm_lock();
    let h = hostname();
    let ov = overlay();
    let d = daemon(&["-swarm", "-internal", &consul()]);
    // redis exposes 6379; the ingress entry is not made with -internal.
    create(
        "replicas",
        &[
            "--replicas",
            "3",
            "--network",
            &ov,
            "--publish",
            "published=23090,target=6379",
        ],
        "redis",
        &["sleep", "1000000"],
    );
    let names = wait_tasks("replicas", 3);
    let want: Vec<String> = names.iter().map(|n| format!("{h}:{n}:6379")).collect();
    converge(&d, &want);
    let got = entries("replicas");
    assert_eq!(got.len(), 3);
    let addrs: std::collections::BTreeSet<&str> =
        got.iter().map(|(_, a, _, _)| a.as_str()).collect();
    assert_eq!(addrs.len(), 3, "three overlay addresses: {got:?}");
    for (id, addr, port, _) in &got {
        assert_eq!(*port, 6379, "{id}");
        let name = id.split(':').nth(1).unwrap();
        let c = sd(&["inspect", name]);
        let c: Value = serde_json::from_str(&c).unwrap();
        let on_overlay = &c[0]["NetworkSettings"]["Networks"][&ov]["IPAddress"];
        assert_eq!(
            on_overlay,
            addr.as_str(),
            "{id}: the overlay address, not ingress"
        );
    }
    // Scaled down: the replicas that stopped go.
    sd(&["service", "scale", "--detach", "replicas=1"]);
    let names = wait_tasks("replicas", 1);
    converge(&d, &[format!("{h}:{}:6379", names[0])]);
}

#[test]
fn on_a_node_in_no_swarm_the_flag_changes_nothing() {
    let _g = lock();
    let h = hostname();
    // tests/services.sh's engine is in no swarm; two resyncs look again.
    let d = Daemon::start(&["-swarm", "-ip", "127.0.0.1", "-resync", "1", &consul()]);
    wait_log(&d, "swarm: this node is in no swarm");
    run_bb("plain");
    let s = wait_service(&d, &format!("{h}:plain:80"));
    assert_eq!(s["Service"], "bb", "the image's name, as without the flag");
    wait_for("two resyncs", Some(&d), || {
        (d.log().matches("resync").count() >= 2).then_some(())
    });
    let log = d.log();
    assert_eq!(log.matches("swarm: ").count(), 1, "said once:\n{log}");
    assert!(!log.contains("ERROR") && !log.contains("WARN"), "{log}");
}

/// `docker service create` (the engine's API, as the CLI calls it) to the service in Consul,
/// over 20 services: the median and the spread, printed (not asserted).
#[test]
fn service_create_to_consul_latency() {
    let _g = swarm_lock();
    let h = hostname();
    let d = daemon(&["-swarm", "-ip", "127.0.0.1", &consul()]);
    let sock = swarm_host().trim_start_matches("unix://").to_string();
    let (mut took, mut created) = (Vec::new(), Vec::new());
    for i in 0..20u16 {
        let port = 23100 + i;
        let name = format!("lat{i}");
        let body = json!({
            "Name": name,
            "TaskTemplate": {
                "ContainerSpec": {"Image": "bb", "Command": HTTPD, "StopGracePeriod": 1_000_000_000u64},
            },
            "Mode": {"Replicated": {"Replicas": 1}},
            "EndpointSpec": {"Ports": [{"Protocol": "tcp", "TargetPort": 80, "PublishedPort": port}]},
        })
        .to_string();
        let id = format!("{h}:{name}:{port}");
        let start = Instant::now();
        let status = post(&sock, "/services/create", &body);
        created.push(start.elapsed());
        assert!(status.contains(" 201 "), "{status}");
        // Polled tightly (wait_for's 50 ms would round the figure).
        while !agent_has(&id) {
            assert!(start.elapsed() < WAIT, "{id} not registered\n{}", d.log());
            thread::sleep(Duration::from_millis(1));
        }
        took.push(start.elapsed());
        sd(&["service", "rm", &name]);
        wait_gone(&d, &id);
    }
    took.sort();
    created.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    figure(&format!(
        "swarm: service create -> in Consul: median {:.1} ms (min {:.1}, max {:.1}) over {} services; the engine's answer to the create alone: median {:.1} ms",
        ms(took[took.len() / 2]),
        ms(took[0]),
        ms(took[took.len() - 1]),
        took.len(),
        ms(created[created.len() / 2]),
    ));
}

/// A POST of JSON to the engine on its socket: the status line.
fn post(sock: &str, path: &str, body: &str) -> String {
    let mut s = UnixStream::connect(sock).expect("connect to the swarm engine");
    let req = format!(
        "POST {path} HTTP/1.1\r\nHost: docker\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).expect("write");
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).expect("read");
    let text = String::from_utf8_lossy(&buf);
    text.lines().next().unwrap_or("").to_string()
}
