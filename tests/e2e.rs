//! End to end: the release daemon against the private Docker engine and a real Consul agent,
//! asserting on what the agent holds. Needs `tests/services.sh` (run via `tests/run.sh`).
//! Every test publishes on 127.0.0.1 and sends traffic (Consul's checks) only there.

mod common;

use common::*;
use serde_json::{json, Value};
use std::fs;
use std::thread;
use std::time::Duration;

fn consul() -> String {
    format!("consul://{}", consul_addr())
}

fn svc(id: &str) -> Value {
    services().remove(id).unwrap_or(Value::Null)
}

fn wait_service(d: &Daemon, id: &str) -> Value {
    wait_for(&format!("service {id}"), Some(d), || services().remove(id))
}

fn wait_gone(d: &Daemon, id: &str) {
    wait_for(&format!("service {id} to go"), Some(d), || {
        (!services().contains_key(id)).then_some(())
    });
}

#[test]
fn worked_examples_of_the_spec() {
    let _g = lock();
    let h = hostname();
    let d = Daemon::start(&[&consul()]);

    let redis = run(&["--name", "redis.0", "-p", "127.0.0.1::6379", "redis"]);
    let s = wait_service(&d, &format!("{h}:redis.0:6379"));
    let line = format!("added: {} {h}:redis.0:6379", &redis[..12]);
    wait_for(&format!("log line {line:?}"), Some(&d), || {
        d.log().contains(&line).then_some(())
    });
    assert_eq!(s["Service"], "redis");
    assert_eq!(s["Port"], host_port("redis.0", "6379/tcp"));
    assert_eq!(s["Address"], "127.0.0.1");
    assert_eq!(s["Tags"], json!([]));
    assert_eq!(s["Meta"], json!({}));

    for (name, flag) in [("db.env", "-e"), ("db.label", "-l")] {
        run(&[
            "--name",
            name,
            "-p",
            "127.0.0.1::6379",
            flag,
            "SERVICE_NAME=db",
            flag,
            "SERVICE_TAGS=master,backups",
            flag,
            "SERVICE_REGION=us2",
            "redis",
        ]);
        let s = wait_service(&d, &format!("{h}:{name}:6379"));
        assert_eq!(s["Service"], "db", "{name}");
        assert_eq!(s["Tags"], json!(["master", "backups"]), "{name}");
        assert_eq!(s["Meta"], json!({"region": "us2"}), "{name}");
    }

    run(&[
        "--name",
        "nginx.0",
        "-p",
        "127.0.0.1::443",
        "-p",
        "127.0.0.1::80",
        "nginx",
    ]);
    let https = wait_service(&d, &format!("{h}:nginx.0:443"));
    let http = wait_service(&d, &format!("{h}:nginx.0:80"));
    assert_eq!(https["Service"], "nginx-443");
    assert_eq!(https["Port"], host_port("nginx.0", "443/tcp"));
    assert_eq!(http["Service"], "nginx-80");
    assert_eq!(http["Port"], host_port("nginx.0", "80/tcp"));

    run(&[
        "--name",
        "nginx.1",
        "-p",
        "127.0.0.1::443",
        "-p",
        "127.0.0.1::80",
        "-e",
        "SERVICE_443_NAME=https",
        "-e",
        "SERVICE_443_ID=https.12345",
        "-e",
        "SERVICE_443_SNI=enabled",
        "-e",
        "SERVICE_80_NAME=http",
        "-e",
        "SERVICE_TAGS=www",
        "nginx",
    ]);
    let s = wait_service(&d, "https.12345");
    assert_eq!(s["Service"], "https");
    assert_eq!(s["Port"], host_port("nginx.1", "443/tcp"));
    assert_eq!(s["Tags"], json!(["www"]));
    assert_eq!(s["Meta"], json!({"sni": "enabled"}));
    let s = wait_service(&d, &format!("{h}:nginx.1:80"));
    assert_eq!(s["Service"], "http");
    assert_eq!(s["Port"], host_port("nginx.1", "80/tcp"));
    assert_eq!(s["Tags"], json!(["www"]));
    assert_eq!(s["Meta"], json!({}));

    run(&[
        "--name",
        "dns",
        "-p",
        "127.0.0.1::53/udp",
        "-e",
        "SERVICE_TAGS=a",
        "bb",
    ]);
    let s = wait_service(&d, &format!("{h}:dns:53:udp"));
    assert_eq!(s["Service"], "bb");
    assert_eq!(s["Port"], host_port("dns", "53/udp"));
    assert_eq!(s["Tags"], json!(["a", "udp"]));
}

#[test]
fn labels_beat_env_ignore_and_forced_tags() {
    let _g = lock();
    let h = hostname();
    let d = Daemon::start(&["-tags", "forced,x\\,y", &consul()]);
    run(&[
        "--name",
        "lbe",
        "-p",
        "127.0.0.1::80",
        "-e",
        "SERVICE_NAME=from-env",
        "-l",
        "SERVICE_NAME=from-label",
        "-e",
        "SERVICE_COLOR=red",
        "-l",
        "SERVICE_COLOR=blue",
        "bb",
    ]);
    run(&[
        "--name",
        "ign",
        "-p",
        "127.0.0.1::80",
        "-e",
        "SERVICE_IGNORE=1",
        "bb",
    ]);
    run(&[
        "--name",
        "ign1",
        "-p",
        "127.0.0.1::80",
        "-p",
        "127.0.0.1::81",
        "-l",
        "SERVICE_81_IGNORE=yes",
        "bb",
    ]);
    let s = wait_service(&d, &format!("{h}:lbe:80"));
    assert_eq!(s["Service"], "from-label");
    assert_eq!(s["Meta"], json!({"color": "blue"}));
    assert_eq!(s["Tags"], json!(["forced", "x,y"]));
    let s = wait_service(&d, &format!("{h}:ign1:80"));
    assert_eq!(s["Service"], "bb-80");
    wait_for("the ignored lines", Some(&d), || {
        let log = d.log();
        (log.contains("has SERVICE_IGNORE") && log.matches("ignored: ").count() >= 2).then_some(())
    });
    let ids: Vec<String> = services().into_keys().collect();
    assert_eq!(ids, [format!("{h}:ign1:80"), format!("{h}:lbe:80")]);
}

#[test]
fn explicit_registers_only_named_ports() {
    let _g = lock();
    let h = hostname();
    let d = Daemon::start(&["-explicit", &consul()]);
    run(&[
        "--name",
        "named",
        "-p",
        "127.0.0.1::80",
        "-p",
        "127.0.0.1::81",
        "-e",
        "SERVICE_81_NAME=api",
        "bb",
    ]);
    run_bb("unnamed");
    run(&[
        "--name",
        "marker",
        "-p",
        "127.0.0.1::80",
        "-e",
        "SERVICE_NAME=marker",
        "bb",
    ]);
    wait_service(&d, &format!("{h}:marker:80"));
    let s = wait_service(&d, &format!("{h}:named:81"));
    assert_eq!(s["Service"], "api");
    let ids: Vec<String> = services().into_keys().collect();
    assert_eq!(ids, [format!("{h}:marker:80"), format!("{h}:named:81")]);
}

#[test]
fn internal_registers_container_address_and_exposed_port() {
    let _g = lock();
    let h = hostname();
    let d = Daemon::start(&["-internal", &consul()]);
    let id = run(&[
        "--name",
        "int",
        "--expose",
        "7000",
        "-p",
        "127.0.0.1::80",
        "bb",
    ]);
    // The engine's default network: Docker's `bridge`, or Podman's own.
    let nets = inspect(&id)["NetworkSettings"]["Networks"].clone();
    let ip = nets
        .as_object()
        .and_then(|m| m.values().next())
        .map(|n| n["IPAddress"].clone())
        .unwrap_or_default();
    assert!(ip.as_str().is_some_and(|s| !s.is_empty()), "{nets}");
    for port in [80, 7000] {
        let s = wait_service(&d, &format!("{h}:int:{port}"));
        assert_eq!(s["Address"], ip, "container address");
        assert_eq!(s["Port"], port, "exposed port");
        assert_eq!(s["Service"], format!("bb-{port}"));
    }
}

#[test]
fn user_defined_network_and_host_network() {
    let _g = lock();
    let h = hostname();
    docker(&["network", "create", "--label", "rgtr-test", "rgtr-net"]);
    let d = Daemon::start(&[&consul()]);
    let id = run(&[
        "--name",
        "onnet",
        "--network",
        "rgtr-net",
        "-p",
        "127.0.0.1::80",
        "bb",
    ]);
    let ip = inspect(&id)["NetworkSettings"]["Networks"]["rgtr-net"]["IPAddress"].clone();
    let s = wait_service(&d, &format!("{h}:onnet:80"));
    assert_eq!(s["Address"], ip, "address on the user-defined network");
    assert_eq!(s["Port"], host_port("onnet", "80/tcp"));
    drop(d);

    // -ip wins over the network's address; host networking registers exposed ports as is.
    let d = Daemon::start(&["-ip", "127.0.0.1", &consul()]);
    // The first daemon's registration is still there until the new one re-registers it.
    wait_for("-ip to replace the network address", Some(&d), || {
        (svc(&format!("{h}:onnet:80"))["Address"] == "127.0.0.1").then_some(())
    });
    run(&[
        "--name",
        "hostnet",
        "--network",
        "host",
        "--expose",
        "18081",
        "bb",
    ]);
    let s = wait_service(&d, &format!("{h}:hostnet:18081"));
    assert_eq!(s["Address"], "127.0.0.1");
    assert_eq!(s["Port"], 18081);
}

#[test]
fn consul_checks() {
    let _g = lock();
    let h = hostname();
    let d = Daemon::start(&[&consul()]);
    // A real HTTP server behind 127.0.0.1: Consul's check must reach passing.
    run(&[
        "--name",
        "web",
        "-p",
        "127.0.0.1::80",
        "-e",
        "SERVICE_CHECK_HTTP=/health",
        "-e",
        "SERVICE_CHECK_INTERVAL=1s",
        "-e",
        "SERVICE_CHECK_TIMEOUT=1s",
        "bb",
        "sh",
        "-c",
        "echo ok > /tmp/health && exec httpd -f -p 80 -h /tmp",
    ]);
    run(&[
        "--name",
        "tcp",
        "-p",
        "127.0.0.1::80",
        "-e",
        "SERVICE_CHECK_TCP=true",
        "-e",
        "SERVICE_CHECK_INTERVAL=1s",
        "bb",
        "httpd",
        "-f",
        "-p",
        "80",
        "-h",
        "/tmp",
    ]);
    run(&[
        "--name",
        "script",
        "-p",
        "127.0.0.1::80",
        "-e",
        "SERVICE_CHECK_SCRIPT=test $SERVICE_PORT -gt 0",
        "-e",
        "SERVICE_CHECK_INTERVAL=1s",
        "bb",
    ]);
    run(&[
        "--name",
        "ttl",
        "-p",
        "127.0.0.1::80",
        "-e",
        "SERVICE_CHECK_TTL=30s",
        "bb",
    ]);
    run(&[
        "--name",
        "https",
        "-p",
        "127.0.0.1::443",
        "-e",
        "SERVICE_CHECK_HTTPS=/h",
        "-e",
        "SERVICE_CHECK_TLS_SKIP_VERIFY=true",
        "-e",
        "SERVICE_CHECK_INTERVAL=1s",
        "bb",
    ]);
    run(&[
        "--name",
        "cmd",
        "-p",
        "127.0.0.1::80",
        "-e",
        "SERVICE_CHECK_CMD=/bin/health",
        "-e",
        "SERVICE_CHECK_INTERVAL=1s",
        "bb",
    ]);
    run(&[
        "--name",
        "grpc",
        "-p",
        "127.0.0.1::80",
        "-e",
        "SERVICE_CHECK_GRPC=true",
        "-e",
        "SERVICE_CHECK_INTERVAL=1s",
        "-e",
        "SERVICE_CHECK_DEREGISTER_AFTER=10m",
        "bb",
    ]);

    let check = |name: &str| {
        let id = format!(
            "service:{h}:{name}:{}",
            if name == "https" { 443 } else { 80 }
        );
        wait_for(&format!("check {id}"), Some(&d), || checks().remove(&id))
    };
    let status = |name: &str, want: &str| {
        wait_for(&format!("{name} check {want}"), Some(&d), || {
            let c = check(name);
            (c["Status"] == want).then_some(c)
        })
    };
    let web = status("web", "passing");
    assert_eq!(web["Type"], "http");
    let tcp = status("tcp", "passing");
    assert_eq!(tcp["Type"], "tcp");
    let script = status("script", "passing");
    assert_eq!(
        script["Type"], "script",
        "check_script split into Args and run: {script}"
    );
    let ttl = check("ttl");
    assert_eq!(ttl["Type"], "ttl");
    assert_eq!(ttl["Status"], "critical");
    // Consul 1.8 does not show a check's definition; what each ran shows in its output (the
    // exact registration bodies are unit-tested in backend::consul).
    let ran = |name: &str, want: String| {
        wait_for(
            &format!("{name} check output with {want:?}"),
            Some(&d),
            || {
                let c = check(name);
                c["Output"]
                    .as_str()
                    .is_some_and(|o| o.contains(&want))
                    .then_some(c)
            },
        )
    };
    let https = ran(
        "https",
        format!("https://127.0.0.1:{}/h", host_port("https", "443/tcp")),
    );
    assert_eq!(https["Type"], "http");
    let cmd = ran("cmd", "\"check-cmd\"".into());
    assert_eq!(cmd["Type"], "script");
    let grpc = ran("grpc", format!("127.0.0.1:{}", host_port("grpc", "80/tcp")));
    assert_eq!(grpc["Type"], "grpc");
    // check_* attributes are not Meta.
    assert_eq!(svc(&format!("{h}:web:80"))["Meta"], json!({}));
}

#[test]
fn rejected_registration_is_logged_and_retried_on_resync() {
    let _g = lock();
    let h = hostname();
    let d = Daemon::start(&["-resync", "1", &consul()]);
    run(&[
        "--name",
        "bad",
        "-p",
        "127.0.0.1::80",
        "-e",
        "SERVICE_CHECK_HTTP=/",
        "-e",
        "SERVICE_CHECK_INTERVAL=bogus",
        "bb",
    ]);
    run_bb("good");
    wait_service(&d, &format!("{h}:good:80"));
    let line = format!("register failed: consul: register {h}:bad:80: HTTP 400");
    wait_for(
        "the rejection logged twice (start, then resync)",
        Some(&d),
        || (d.log().matches(&line).count() >= 2).then_some(()),
    );
    assert!(svc(&format!("{h}:bad:80")).is_null());
    let mut d = d;
    assert!(
        d.is_running(),
        "a rejected registration never stops the daemon"
    );
}

#[test]
fn die_restart_and_shutdown() {
    let _g = lock();
    let h = hostname();
    let mut d = Daemon::start(&[&consul()]);
    let cid = run_bb("cycle");
    let id = format!("{h}:cycle:80");
    wait_service(&d, &id);
    docker(&["kill", "cycle"]);
    wait_gone(&d, &id);
    let line = format!("removed: {} {id}", &cid[..12]);
    wait_for(&format!("log line {line:?}"), Some(&d), || {
        d.log().contains(&line).then_some(())
    });
    docker(&["start", "cycle"]);
    let s = wait_service(&d, &id);
    assert_eq!(s["Port"], host_port("cycle", "80/tcp"));
    docker(&["restart", "-t", "0", "cycle"]);
    let port = host_port("cycle", "80/tcp");
    wait_for("the new port after a restart", Some(&d), || {
        (svc(&id)["Port"] == port).then_some(())
    });

    let (status, took) = d.stop_with("TERM");
    eprintln!("SIGTERM -> exit in {took:?}");
    assert_eq!(status.code(), Some(0));
    assert!(
        !svc(&id).is_null(),
        "registrations stay on shutdown (the container still runs)"
    );
}

#[test]
fn deregister_on_success() {
    let _g = lock();
    let h = hostname();
    let d = Daemon::start(&["-deregister", "on-success", &consul()]);
    // PID 1 shells that exit with a chosen code on SIGTERM.
    let prog = |code: u8| format!("trap 'exit {code}' TERM; while true; do sleep 1 & wait; done");
    run(&[
        "--name",
        "fails",
        "-p",
        "127.0.0.1::80",
        "bb",
        "sh",
        "-c",
        &prog(1),
    ]);
    run(&[
        "--name",
        "succeeds",
        "-p",
        "127.0.0.1::80",
        "bb",
        "sh",
        "-c",
        &prog(0),
    ]);
    run_bb("killed");
    for n in ["fails", "succeeds", "killed"] {
        wait_service(&d, &format!("{h}:{n}:80"));
    }
    docker(&["kill", "-s", "TERM", "fails"]);
    docker(&["kill", "-s", "TERM", "succeeds"]);
    docker(&["kill", "killed"]);
    wait_gone(&d, &format!("{h}:succeeds:80"));
    wait_gone(&d, &format!("{h}:killed:80"));
    assert_eq!(inspect("fails")["State"]["ExitCode"], 1);
    wait_for("the kept line", Some(&d), || {
        d.log().contains("exited with code 1").then_some(())
    });
    assert!(
        !svc(&format!("{h}:fails:80")).is_null(),
        "exit 1 keeps the service"
    );
    // Gone for good: deregistered.
    docker(&["rm", "fails"]);
    wait_gone(&d, &format!("{h}:fails:80"));
}

#[test]
fn containers_running_before_start_are_synced() {
    let _g = lock();
    let h = hostname();
    run_bb("early1");
    run_bb("early2");
    let mut d = Daemon::start(&[&consul()]);
    converge(&d, &[format!("{h}:early1:80"), format!("{h}:early2:80")]);
    let (status, took) = d.stop_with("INT");
    eprintln!("SIGINT -> exit in {took:?}");
    assert_eq!(status.code(), Some(0), "{}", d.log());
}

#[test]
fn thirty_started_half_removed_at_once() {
    let _g = lock();
    let h = hostname();
    let d = Daemon::start(&[&consul()]);
    let names: Vec<String> = (0..30).map(|i| format!("many{i:02}")).collect();
    let handles: Vec<_> = names
        .iter()
        .cloned()
        .map(|n| thread::spawn(move || run_bb(&n)))
        .collect();
    for hd in handles {
        hd.join().expect("docker run");
    }
    let all: Vec<String> = names.iter().map(|n| format!("{h}:{n}:80")).collect();
    converge(&d, &all);
    let mut rm = vec!["rm", "-f"];
    rm.extend(names.iter().step_by(2).map(String::as_str));
    docker(&rm);
    let rest: Vec<String> = names
        .iter()
        .skip(1)
        .step_by(2)
        .map(|n| format!("{h}:{n}:80"))
        .collect();
    converge(&d, &rest);
}

#[test]
fn engine_stopped_and_started_while_running() {
    let _g = lock();
    let h = hostname();
    let d = Daemon::start(&[&consul()]);
    run(&[
        "--name",
        "survivor",
        "--restart",
        "always",
        "-p",
        "127.0.0.1::80",
        "bb",
    ]);
    run_bb("casualty");
    converge(
        &d,
        &[format!("{h}:casualty:80"), format!("{h}:survivor:80")],
    );

    services_sh("stop-docker");
    services_sh("start-docker");
    // Started right away, very likely before the daemon's backoff lets it reconnect.
    run_bb("newcomer");
    converge(
        &d,
        &[format!("{h}:newcomer:80"), format!("{h}:survivor:80")],
    );
    let s = svc(&format!("{h}:survivor:80"));
    assert_eq!(
        s["Port"],
        host_port("survivor", "80/tcp"),
        "re-registered with its new port"
    );
    assert!(d.log().contains("reconnected"), "{}", d.log());
}

#[test]
fn missed_events_are_replayed_after_a_lost_connection() {
    let _g = lock();
    let h = hostname();
    let proxy = CutProxy::start();
    let d = Daemon::start_on(&proxy.docker_host(), &[&consul()]);
    run_bb("stays");
    run_bb("dies");
    let restarts = run_bb("restarts");
    converge(
        &d,
        &[
            format!("{h}:dies:80"),
            format!("{h}:restarts:80"),
            format!("{h}:stays:80"),
        ],
    );

    proxy.cut();
    let arrives = run_bb("arrives");
    let dies = inspect("dies")["Id"].as_str().unwrap().to_string();
    docker(&["kill", "dies"]);
    docker(&["restart", "-t", "0", "restarts"]);
    wait_for("the daemon to notice", Some(&d), || {
        d.log().contains("event stream").then_some(())
    });
    thread::sleep(Duration::from_millis(1500));
    proxy.restore();

    converge(
        &d,
        &[
            format!("{h}:arrives:80"),
            format!("{h}:restarts:80"),
            format!("{h}:stays:80"),
        ],
    );
    let s = svc(&format!("{h}:restarts:80"));
    assert_eq!(s["Port"], host_port("restarts", "80/tcp"));
    // The sync alone would converge too; these lines show the missed events were replayed,
    // marked as such, and that the replayed die of the restarted container (running again
    // since, registered by the sync) was checked and ignored instead of flapping its service.
    // (Checked against Docker, whose `restart` sends `die` then `start`; what Podman sends for a
    // restart has not been looked at here, so its pass leaves that part out.)
    let podman = std::env::var("PODMAN_HOST").ok() == std::env::var("DOCKER_HOST").ok();
    let mut lines = vec![
        format!("event: Start {} (Replayed)", &arrives[..12]),
        format!("event: Die {} (Replayed)", &dies[..12]),
    ];
    if !podman {
        lines.push(format!("event: Die {} (Replayed)", &restarts[..12]));
        lines.push(format!(
            "{}: running again; stale die ignored",
            &restarts[..12]
        ));
    }
    for ev in lines {
        wait_for(&format!("replayed {ev:?}"), Some(&d), || {
            let log = d.log();
            let after = &log[log.find("reconnected")?..];
            after.contains(&ev).then_some(())
        });
    }
}

#[test]
fn docker_host_over_tcp() {
    let _g = lock();
    let h = hostname();
    let d = Daemon::start_on(&tcp_relay(), &[&consul()]);
    run_bb("viatcp");
    wait_service(&d, &format!("{h}:viatcp:80"));
    docker(&["rm", "-f", "viatcp"]);
    wait_gone(&d, &format!("{h}:viatcp:80"));
}

#[test]
fn acl_token_is_sent_and_never_logged() {
    let _g = lock();
    let h = hostname();
    let token =
        std::env::var("RGTR_CONSUL_TOKEN").expect("RGTR_CONSUL_TOKEN from tests/services.sh");
    let mut good = Daemon::spawn(&[("CONSUL_HTTP_TOKEN", &token)], &[&consul()]);
    good.wait_subscribed();
    run_bb("tok");
    wait_service(&good, &format!("{h}:tok:80"));
    good.stop_with("TERM");
    consul_put(&format!(
        "/v1/agent/service/deregister/{}",
        encode(&format!("{h}:tok:80"))
    ));

    // A token the agent does not know is refused: so the daemon does send it.
    let bogus = "bogus-secret-token-0f3a";
    let bad = Daemon::spawn(
        &[("CONSUL_HTTP_TOKEN", bogus)],
        &["-resync", "1", &consul()],
    );
    bad.wait_subscribed();
    let line = format!("register failed: consul: register {h}:tok:80: HTTP 403: ACL not found");
    wait_for("the refusal", Some(&bad), || {
        bad.log().contains(&line).then_some(())
    });
    for (d, secret) in [(&good, token.as_str()), (&bad, bogus)] {
        assert!(
            !d.log().contains(secret),
            "the token is never logged:\n{}",
            d.log()
        );
    }
}

#[test]
fn registry_retries_at_start() {
    let _g = lock();
    let h = hostname();
    services_sh("stop-consul");
    let mut gives_up = Daemon::spawn(
        &[],
        &["-retry-attempts", "2", "-retry-interval", "100", &consul()],
    );
    let status = gives_up.wait_exit();
    let log = gives_up.log();
    assert_eq!(status.code(), Some(1), "{log}");
    assert_eq!(
        log.matches("retry ").count(),
        2,
        "two retries after the first ping: {log}"
    );
    assert!(log.contains("consul: ping"), "{log}");

    let waits = Daemon::spawn(
        &[],
        &["-retry-attempts", "-1", "-retry-interval", "200", &consul()],
    );
    wait_for("a few retries", Some(&waits), || {
        (waits.log().matches("retry ").count() >= 3).then_some(())
    });
    services_sh("start-consul");
    waits.wait_subscribed();
    run_bb("late");
    wait_service(&waits, &format!("{h}:late:80"));
}

#[test]
fn deregistering_what_the_agent_lost_is_not_an_error() {
    let _g = lock();
    let h = hostname();
    let d = Daemon::start(&[&consul()]);
    let cid = run_bb("lost");
    wait_service(&d, &format!("{h}:lost:80"));
    services_sh("stop-consul");
    services_sh("start-consul"); // a dev agent starts empty
    docker(&["kill", "lost"]);
    let line = format!("removed: {} {h}:lost:80", &cid[..12]);
    wait_for(&line, Some(&d), || d.log().contains(&line).then_some(()));
    assert!(!d.log().contains("deregister failed"), "{}", d.log());
}

#[test]
fn file_backend_after_churn() {
    let _g = lock();
    let h = hostname();
    let path = test_dir().join("services.json");
    let _ = fs::remove_file(&path);
    let uri = format!("file://{}", path.display());
    let d = Daemon::start(&["-ip", "127.0.0.1", &uri]);
    for i in 0..6 {
        let n = format!("f{i}");
        let mut args = vec![
            "--name",
            n.as_str(),
            "-p",
            "127.0.0.1::80",
            "-e",
            "SERVICE_TAGS=a,b",
            "-l",
            "SERVICE_ODD.KEY=v",
        ];
        args.push("bb");
        run(&args);
    }
    docker(&["rm", "-f", "f1", "f3"]);
    docker(&["restart", "-t", "0", "f5"]);
    let names = ["f0", "f2", "f4", "f5"];
    let want: Vec<(String, Value)> = names
        .iter()
        .map(|n| {
            let target = format!("127.0.0.1:{}", host_port(n, "80/tcp"));
            (format!("{h}:{n}:80"), json!([target]))
        })
        .collect();
    let entries = wait_for(
        "the file to hold f0 f2 f4 f5 at their ports",
        Some(&d),
        || {
            let text = fs::read_to_string(&path).ok()?;
            let v: Value = serde_json::from_str(&text).ok()?;
            let got: Vec<(String, Value)> = v
                .as_array()?
                .iter()
                .map(|e| {
                    let id = e["labels"]["service_id"].as_str().unwrap_or("").to_string();
                    (id, e["targets"].clone())
                })
                .collect();
            (got == want).then_some(v)
        },
    );
    for e in entries.as_array().unwrap() {
        assert_eq!(e["labels"]["service"], "bb");
        assert_eq!(e["labels"]["tags"], ",a,b,");
        assert_eq!(e["labels"]["meta_odd_key"], "v");
    }
}

#[test]
fn paused_containers_leave_and_come_back() {
    let _g = lock();
    let h = hostname();
    let d = Daemon::start(&["-ip", "127.0.0.1", &consul()]);
    run_bb("napper");
    run_bb("awake");
    let id = format!("{h}:napper:80");
    wait_service(&d, &id);
    docker(&["pause", "napper"]);
    wait_gone(&d, &id);
    assert!(svc(&format!("{h}:awake:80")).is_object());
    docker(&["unpause", "napper"]);
    wait_service(&d, &id);
    // Paused while the daemon is away: the sync at start leaves it out.
    drop(d);
    docker(&["pause", "napper"]);
    let d = Daemon::start(&["-ip", "127.0.0.1", "-cleanup", &consul()]);
    converge(&d, &[format!("{h}:awake:80")]);
    docker(&["unpause", "napper"]);
    converge(&d, &[format!("{h}:awake:80"), id]);
}

#[test]
fn shutdown_leaves_services_or_removes_them_when_asked() {
    let _g = lock();
    let h = hostname();
    for n in ["s1", "s2", "s3"] {
        run_bb(n);
    }
    let all: Vec<String> = ["s1", "s2", "s3"]
        .iter()
        .map(|n| format!("{h}:{n}:80"))
        .collect();
    let mut d = Daemon::start(&["-ip", "127.0.0.1", &consul()]);
    converge(&d, &all);
    let (status, took) = d.stop_with("TERM");
    eprintln!("SIGTERM -> exit 0 in {took:?}, services left in place");
    assert_eq!(status.code(), Some(0));
    assert!(took < Duration::from_secs(1), "{took:?}");
    assert_eq!(services().len(), 3);

    let mut d = Daemon::start(&["-ip", "127.0.0.1", "-deregister-on-shutdown", &consul()]);
    converge(&d, &all);
    let (status, took) = d.stop_with("INT");
    eprintln!("SIGINT with -deregister-on-shutdown -> exit 0 in {took:?}");
    assert_eq!(status.code(), Some(0), "{}", d.log());
    assert!(services().is_empty(), "{:?}\n{}", services(), d.log());
    assert_eq!(d.log().matches("removed: ").count(), 3, "{}", d.log());
}

/// Creates and starts a container through the engine's API directly, with what the docker CLI
/// refuses to send (empty label keys, env entries without a name or without `=`).
fn create_raw(name: &str, body: &Value) -> Result<String, String> {
    let sock = docker_host().trim_start_matches("unix://").to_string();
    let curl = |args: &[&str]| {
        let out = std::process::Command::new("curl")
            .args([
                "-sS",
                "--unix-socket",
                &sock,
                "-H",
                "Content-Type: application/json",
            ])
            .args(args)
            .output()
            .expect("curl");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    let created = curl(&[
        "-X",
        "POST",
        "--data-binary",
        &body.to_string(),
        &format!("http://d/containers/create?name={name}"),
    ]);
    let v: Value = serde_json::from_str(&created).unwrap_or_else(|_| panic!("{created}"));
    let id = v["Id"].as_str().ok_or(created.clone())?.to_string();
    curl(&["-X", "POST", &format!("http://d/containers/{id}/start")]);
    Ok(id)
}

#[test]
fn odd_labels_and_env_never_panic() {
    let _g = lock();
    let h = hostname();
    let d = Daemon::start(&["-ip", "127.0.0.1", &consul()]);
    let long = "v".repeat(64 * 1024);
    let long_key = format!("SERVICE_{}", "K".repeat(4096));
    let env_long = format!("SERVICE_LONG={long}");
    let env_long_key = format!("{long_key}=x");
    let label_long = format!("SERVICE_LABEL_LONG={long}");
    let mut args: Vec<&str> = vec!["--name", "odd", "-p", "127.0.0.1::80"];
    for e in [
        "SERVICE_=empty-suffix",
        "SERVICE_99999999999_NAME=overflowing-port",
        "SERVICE_80_=no-key",
        "SERVICE__NAME=double-underscore",
        "SERVICE_NAMÉ=non-ascii-key",
        "SERVICE_TAGS=,,,ünïcødé,\u{1F600},",
        "SERVICE_EMPTY=",
        "SERVICE_CHECK_DOCKER=maybe",
        "SERVICE_80_CHECK_HTTP=",
        &env_long,
        &env_long_key,
    ] {
        args.extend(["-e", e]);
    }
    for l in [
        "SERVICE_=label-empty-suffix",
        "SERVICE_ID=",
        "SERVICE_NAME=ünï",
        "SERVICE_-1_NAME=negative",
        "SERVICE_80_NAME=",
        "ключ=значение",
        &label_long,
    ] {
        args.extend(["-l", l]);
    }
    args.push("bb");
    run(&args);
    // What only the API takes: an empty label name, an env entry without `=`, a tab.
    let mut raw = json!({
        "Image": "bb",
        "Env": ["SERVICE_NAME", "SERVICE_TAGS=a\tb", "SERVICE_8080_NAME=x"],
        "Labels": {"": "empty-key", "SERVICE_": "", "SERVICE_80_ID": ""},
        "ExposedPorts": {"80/tcp": {}},
        "HostConfig": {"PortBindings": {"80/tcp": [{"HostIp": "127.0.0.1", "HostPort": ""}]}}
    });
    if let Err(e) = create_raw("rawodd", &raw) {
        // Podman refuses an empty label name; Docker takes it.
        eprintln!("the engine refused an empty label name: {e}");
        raw["Labels"].as_object_mut().unwrap().remove("");
        create_raw("rawodd", &raw).expect("create without the empty label name");
    }
    run_bb("plain");
    // The daemon is alive, registered the odd ones somehow, and keeps registering.
    wait_service(&d, &format!("{h}:plain:80"));
    let ids = wait_for("three services", Some(&d), || {
        let ids: Vec<String> = services().into_keys().collect();
        (ids.len() >= 3).then_some(ids)
    });
    eprintln!("registered: {ids:?}");
    docker(&["rm", "-f", "odd", "rawodd"]);
    wait_for("the odd services to go", Some(&d), || {
        (services().len() == 1).then_some(())
    });
    let log = d.log();
    assert!(!log.contains("panicked"), "{log}");
}

/// Podman runs HEALTHCHECKs from systemd timers, and there is no systemd here: while this
/// lives, a thread does the timer's job (`podman healthcheck run`) every second. Against
/// Docker it does nothing.
struct HealthTimer(Option<std::sync::Arc<std::sync::atomic::AtomicBool>>);

impl HealthTimer {
    fn start(container: &str) -> HealthTimer {
        let podman = std::env::var("PODMAN_HOST").ok() == std::env::var("DOCKER_HOST").ok();
        let Some(cli) = std::env::var("PODMAN").ok().filter(|_| podman) else {
            return HealthTimer(None);
        };
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (flag, name) = (stop.clone(), container.to_string());
        thread::spawn(move || {
            while !flag.load(std::sync::atomic::Ordering::SeqCst) {
                let _ = std::process::Command::new(&cli)
                    .args(["healthcheck", "run", &name])
                    .output();
                thread::sleep(Duration::from_secs(1));
            }
        });
        HealthTimer(Some(stop))
    }
}

impl Drop for HealthTimer {
    fn drop(&mut self) {
        if let Some(s) = &self.0 {
            s.store(true, std::sync::atomic::Ordering::SeqCst);
        }
    }
}

#[test]
fn require_healthy_follows_health_events() {
    let _g = lock();
    let h = hostname();
    let (dir, ok) = health_dir("hc");
    let d = Daemon::start(&["-ip", "127.0.0.1", "-require-healthy", &consul()]);
    let vol = format!("{}:/h", dir.display());
    run(&[
        "--name",
        "hc",
        "-p",
        "127.0.0.1::80",
        "-v",
        &vol,
        "--health-cmd",
        "test -e /h/ok",
        "--health-interval",
        "1s",
        "--health-retries",
        "1",
        "bb",
    ]);
    let _timer = HealthTimer::start("hc");
    run_bb("nohc");
    let id = format!("{h}:hc:80");
    wait_service(&d, &format!("{h}:nohc:80"));
    assert!(svc(&id).is_null(), "not registered before it is healthy");
    fs::write(&ok, "").unwrap();
    wait_service(&d, &id);
    fs::remove_file(&ok).unwrap();
    wait_gone(&d, &id);
    fs::write(&ok, "").unwrap();
    wait_service(&d, &id);
    assert!(d.log().contains("not healthy"), "{}", d.log());
}
