//! End to end, what users migrating from gliderlabs master, fayrus and simplesurance rely on
//! (spec/dropin.md, Decisions T, F, D and K): templates in tags, fayrus's extensions, the
//! engine over TLS with `DOCKER_API_VERSION`, and `-deregister-on-stop`. The release daemon
//! against the private engine, Consul and etcd of `tests/services.sh` and the TLS-only engine of
//! `tests/docker28.sh start-tls` (`tests/run.sh` starts them all), asserting on what the
//! registries hold. Containers publish on 127.0.0.1 only; the HTTP servers the tests start for
//! `httpGet` listen on 127.0.0.1.

mod common;
#[path = "common/etcd.rs"]
mod etcd;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::io::AsRawFd;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::*;
use etcd::{etcd3, etcd_range};
use serde_json::{json, Value};

fn consul() -> String {
    format!("consul://{}", consul_addr())
}

fn wait_service(d: &Daemon, id: &str) -> Value {
    wait_for(&format!("service {id}"), Some(d), || services().remove(id))
}

fn wait_log(d: &Daemon, text: &str) {
    wait_for(&format!("log line {text:?}"), Some(d), || {
        d.log().contains(text).then_some(())
    });
}

fn env(var: &str) -> String {
    std::env::var(var).unwrap_or_else(|_| {
        panic!("{var} is not set: these tests need tests/services.sh and tests/docker28.sh start-tls (tests/run.sh)")
    })
}

fn now_ns() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_nanos()
}

// ------------------------------------------------------------- templates --

/// The JSON of the spec's HTTP fixture (section 1(c)).
const ALL: &str = r#"{"Additional":{"Country":"United States","Zone":"us-east-1a"},"ip":"203.0.113.7","items":[{"name":"a"},{"name":"b"}],"num":42,"quoted":"a\"b"}"#;

/// A local HTTP server on 127.0.0.1 for `httpGet`: `/all` answers [`ALL`], `/small` the text
/// `small`, `/big` 100 KiB, `/slow` [`ALL`] after 8 s. It records when it accepted each
/// connection.
struct Fixture {
    port: u16,
    accepted: Arc<Mutex<Vec<Instant>>>,
}

impl Fixture {
    fn start() -> Fixture {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the fixture");
        let port = listener.local_addr().unwrap().port();
        let accepted = Arc::new(Mutex::new(Vec::new()));
        let seen = accepted.clone();
        thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { continue };
                seen.lock().unwrap().push(Instant::now());
                thread::spawn(move || Fixture::answer(conn));
            }
        });
        Fixture { port, accepted }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    fn accepted(&self) -> Vec<Instant> {
        self.accepted.lock().unwrap().clone()
    }

    fn answer(mut conn: TcpStream) {
        let _ = conn.set_read_timeout(Some(Duration::from_secs(10)));
        let mut head = Vec::new();
        let mut buf = [0u8; 1024];
        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
            match conn.read(&mut buf) {
                Ok(0) | Err(_) => return,
                Ok(n) => head.extend_from_slice(&buf[..n]),
            }
        }
        let head = String::from_utf8_lossy(&head);
        let body = match head.split_whitespace().nth(1).unwrap_or("") {
            "/all" => ALL.as_bytes().to_vec(),
            "/small" => b"small".to_vec(),
            "/big" => vec![b'a'; 100 * 1024],
            "/slow" => {
                thread::sleep(Duration::from_secs(8));
                ALL.as_bytes().to_vec()
            }
            _ => b"not found".to_vec(),
        };
        let _ = conn.write_all(
            format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            )
            .as_bytes(),
        );
        let _ = conn.write_all(&body);
    }
}

/// T1, T2: `-tags` and a container's `SERVICE_TAGS` are Go templates over its inspect
/// document (Go field names, map keys as fields, the helpers): a label, the first env entry,
/// the container's name and its address on the default network come out as tags, the
/// service's own tags first, then `-tags`, each in written order.
#[test]
fn tags_templates_read_labels_env_name_and_address() {
    let _g = lock();
    let h = hostname();
    let d = Daemon::start(&[
        "-tags",
        "{{.Config.Labels.team}},{{index .Config.Env 0}},{{strSlice .Name 1}},{{.NetworkSettings.Networks.bridge.IPAddress}}",
        &consul(),
    ]);
    run(&[
        "--name",
        "tpl-web",
        "-p",
        "127.0.0.1::80",
        "-l",
        "team=core",
        "-l",
        "SERVICE_TAGS=host-{{.Config.Hostname}},web",
        "-e",
        "ENVIRONMENT=test",
        "bb",
    ]);
    let s = wait_service(&d, &format!("{h}:tpl-web:80"));

    let c = inspect("tpl-web");
    let hostname = c["Config"]["Hostname"].as_str().unwrap();
    let env0 = c["Config"]["Env"][0].as_str().unwrap();
    // The private engine's default network is named `bridge`, as Docker's is.
    let ip = c["NetworkSettings"]["Networks"]["bridge"]["IPAddress"]
        .as_str()
        .unwrap();
    assert_eq!(env0, "ENVIRONMENT=test");
    assert!(!ip.is_empty());
    assert_eq!(
        s["Tags"],
        json!([
            format!("host-{hostname}"),
            "web",
            "core",
            env0,
            "tpl-web",
            ip
        ])
    );
    assert_eq!(
        s["Meta"],
        json!({}),
        "the tags template is not an attribute"
    );
}

/// T5, T6: `httpGet` in `-tags` fetches from a server on 127.0.0.1 and `jsonParse` reads the
/// JSON body. The template is evaluated when the service is built: resyncs of the registered
/// container fetch nothing again.
#[test]
fn tags_template_fetches_json_with_http_get() {
    let _g = lock();
    let h = hostname();
    let srv = Fixture::start();
    let all = srv.url("/all");
    let tags = format!(
        r#"ip-{{{{jsonParse (httpGet "{all}") "ip"}}}},{{{{jsonParse (httpGet "{all}") "Additional::Zone"}}}}"#
    );
    let d = Daemon::start(&["-resync", "1", "-tags", &tags, &consul()]);
    run_bb("fetcher");
    let id = format!("{h}:fetcher:80");
    let s = wait_service(&d, &id);
    assert_eq!(s["Tags"], json!(["ip-203.0.113.7", "us-east-1a"]));
    assert_eq!(srv.accepted().len(), 2, "one GET per call");
    // Two resyncs later: the same tags, no GET since.
    thread::sleep(Duration::from_millis(2500));
    assert_eq!(services()[&id]["Tags"], s["Tags"]);
    assert_eq!(srv.accepted().len(), 2, "fetched again at a resync");
}

/// T5: a server that answers after 8 s: the daemon gives up at its 5 s timeout with a
/// warning, the call renders empty (no tag) and the service registers anyway, before the
/// server would have answered.
#[test]
fn tags_template_http_get_gives_up_after_5_s() {
    let _g = lock();
    let h = hostname();
    let srv = Fixture::start();
    let tags = format!(
        r#"{{{{jsonParse (httpGet "{}") "ip"}}}},fixed"#,
        srv.url("/slow")
    );
    let d = Daemon::start(&["-tags", &tags, &consul()]);
    run_bb("patient");
    let s = wait_service(&d, &format!("{h}:patient:80"));
    let registered = Instant::now();
    let asked = srv.accepted();
    assert_eq!(asked.len(), 1, "one GET");
    let took = registered - asked[0];
    figure(&format!(
        "httpGet slow server: registered {:.2} s after the request arrived (5 s timeout, answer at 8 s)",
        took.as_secs_f64()
    ));
    assert!(
        took >= Duration::from_millis(4900) && took < Duration::from_secs(8),
        "waited {took:?}: the 5 s timeout, not the server's 8 s"
    );
    assert_eq!(s["Tags"], json!(["fixed"]));
    wait_log(&d, "httpGet template function encountered an error");
}

/// T5: a body over 64 KiB is not read: the call renders empty (that tag is absent, where a
/// small body from the same server is a tag) and the service registers.
#[test]
fn tags_template_http_get_drops_a_body_over_64_kib() {
    let _g = lock();
    let h = hostname();
    let srv = Fixture::start();
    let tags = format!(
        r#"{{{{httpGet "{}" | printf "%s"}}}},{{{{httpGet "{}" | printf "%s"}}}},fixed"#,
        srv.url("/small"),
        srv.url("/big")
    );
    let d = Daemon::start(&["-tags", &tags, &consul()]);
    run_bb("greedy");
    let s = wait_service(&d, &format!("{h}:greedy:80"));
    assert_eq!(s["Tags"], json!(["small", "fixed"]));
    let log = d.log();
    let warning = log
        .lines()
        .find(|l| l.contains("httpGet template function encountered an error"))
        .unwrap_or_else(|| panic!("no httpGet warning\n{log}"));
    assert!(warning.contains("/big"), "{warning}");
}

/// T5: a container's own `SERVICE_*TAGS` (label or env) may not call `httpGet`: the server
/// gets no connection at all, not even at each resync; that service is skipped with its
/// reason, and the container's other port, without the template, registers.
#[test]
fn service_tags_template_may_not_call_http_get() {
    let _g = lock();
    let h = hostname();
    let srv = Fixture::start();
    let d = Daemon::start(&["-resync", "1", &consul()]);
    let labelled = run(&[
        "--name",
        "nosy-label",
        "-p",
        "127.0.0.1::80",
        "-p",
        "127.0.0.1::81",
        "-l",
        &format!(
            r#"SERVICE_80_TAGS={{{{httpGet "{}" | printf "%s"}}}}"#,
            srv.url("/all")
        ),
        "bb",
    ]);
    let from_env = run(&[
        "--name",
        "nosy-env",
        "-p",
        "127.0.0.1::80",
        "-e",
        &format!(
            r#"SERVICE_TAGS={{{{jsonParse (httpGet "{}") "ip"}}}}"#,
            srv.url("/all")
        ),
        "bb",
    ]);
    let s = wait_service(&d, &format!("{h}:nosy-label:81"));
    assert_eq!(s["Service"], "bb-81");
    assert_eq!(s["Tags"], json!([]));
    for id in [&labelled, &from_env] {
        let prefix = format!("ignored: {} port 80: tags template: ", &id[..12]);
        wait_for(&format!("log line {prefix:?}..."), Some(&d), || {
            d.log()
                .lines()
                .any(|l| l.contains(&prefix) && l.contains("httpGet is only allowed in -tags"))
                .then_some(())
        });
    }
    // Three resyncs look at both containers again.
    thread::sleep(Duration::from_secs(3));
    assert_eq!(
        srv.accepted().len(),
        0,
        "the daemon connected to the server\n{}",
        d.log()
    );
    let ids: Vec<String> = services().into_keys().collect();
    assert_eq!(ids, [format!("{h}:nosy-label:81")]);
}

// ------------------------------------------------------ fayrus's extensions --

/// F1: `SERVICE_ENABLE_TAG_OVERRIDE=true` is Consul's `EnableTagOverride`, not a Meta key.
#[test]
fn enable_tag_override_is_consuls_field_not_meta() {
    let _g = lock();
    let h = hostname();
    let d = Daemon::start(&[&consul()]);
    run(&[
        "--name",
        "overridable",
        "-p",
        "127.0.0.1::80",
        "-e",
        "SERVICE_ENABLE_TAG_OVERRIDE=true",
        "bb",
    ]);
    run_bb("fixed-tags");
    let s = wait_service(&d, &format!("{h}:overridable:80"));
    assert_eq!(s["EnableTagOverride"], true);
    assert_eq!(s["Meta"], json!({}));
    let s = wait_service(&d, &format!("{h}:fixed-tags:80"));
    assert_eq!(s["EnableTagOverride"], false);
}

/// F2: `-ip-from-container` registers the container's own address on the private bridge
/// (over `-ip`) with the port published on the host.
#[test]
fn ip_from_container_registers_the_containers_address() {
    let _g = lock();
    let h = hostname();
    let d = Daemon::start(&["-ip", "127.0.0.1", "-ip-from-container", &consul()]);
    run_bb("own-ip");
    let s = wait_service(&d, &format!("{h}:own-ip:80"));
    let ip = inspect("own-ip")["NetworkSettings"]["Networks"]["bridge"]["IPAddress"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(!ip.is_empty() && ip != "127.0.0.1", "{ip}");
    assert_eq!(s["Address"], ip);
    assert_eq!(s["Port"], host_port("own-ip", "80/tcp"));
}

/// F3: `SERVICE_<port>_<proto>_<KEY>`: one container port published as tcp and as udp gets a
/// name for each protocol; the udp service is tagged `udp` and its ID ends in `:udp`.
#[test]
fn port_and_protocol_keys_name_tcp_and_udp_apart() {
    let _g = lock();
    let h = hostname();
    let d = Daemon::start(&[&consul()]);
    run(&[
        "--name",
        "both",
        "-p",
        "127.0.0.1::8080/tcp",
        "-p",
        "127.0.0.1::8080/udp",
        "-e",
        "SERVICE_8080_tcp_NAME=web",
        "-e",
        "SERVICE_8080_udp_NAME=dns",
        "bb",
    ]);
    let tcp = wait_service(&d, &format!("{h}:both:8080"));
    let udp = wait_service(&d, &format!("{h}:both:8080:udp"));
    assert_eq!(tcp["Service"], "web");
    assert_eq!(tcp["Port"], host_port("both", "8080/tcp"));
    assert_eq!(tcp["Tags"], json!([]));
    assert_eq!(udp["Service"], "dns");
    assert_eq!(udp["Port"], host_port("both", "8080/udp"));
    assert_eq!(udp["Tags"], json!(["udp"]));
    for s in [&tcp, &udp] {
        assert_eq!(s["Meta"], json!({}));
    }
    converge(
        &d,
        &[format!("{h}:both:8080"), format!("{h}:both:8080:udp")],
    );
}

/// F3: `SERVICE_<lo>-<hi>_<KEY>`, both ends inclusive: `IGNORE` over 10000-10010 leaves out
/// the ports inside (10000, 10005, 10010) and registers those outside (9999, 10011); a range
/// attribute applies only inside its range, and no range key becomes a Meta key.
#[test]
fn port_range_keys_apply_inside_the_range_only() {
    let _g = lock();
    let h = hostname();
    let d = Daemon::start(&[&consul()]);
    let mut args = vec!["--name", "ranged"];
    for p in [
        "127.0.0.1::9999",
        "127.0.0.1::10000",
        "127.0.0.1::10005",
        "127.0.0.1::10010",
        "127.0.0.1::10011",
    ] {
        args.extend(["-p", p]);
    }
    args.extend([
        "-e",
        "SERVICE_10000-10010_IGNORE=1",
        "-e",
        "SERVICE_9990-9999_REGION=low",
        "bb",
    ]);
    let id = run(&args);
    wait_for("the ignored lines of the range", Some(&d), || {
        let log = d.log();
        ["10000", "10005", "10010"]
            .iter()
            .all(|p| log.contains(&format!("{} port {p} has SERVICE_IGNORE", &id[..12])))
            .then_some(())
    });
    converge(
        &d,
        &[format!("{h}:ranged:9999"), format!("{h}:ranged:10011")],
    );
    let all = services();
    let low = &all[&format!("{h}:ranged:9999")];
    let high = &all[&format!("{h}:ranged:10011")];
    assert_eq!(low["Service"], "bb-9999");
    assert_eq!(low["Port"], host_port("ranged", "9999/tcp"));
    assert_eq!(low["Meta"], json!({"region": "low"}));
    assert_eq!(high["Service"], "bb-10011");
    assert_eq!(high["Meta"], json!({}));
}

/// A port on 127.0.0.1 where nothing listens.
fn closed_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// F4: `ETCD_ENDPOINTS` adds endpoints after the URI's host: with the URI's endpoint down at
/// start, the daemon starts on the next one (the real etcd), registers there, and says so.
#[test]
fn etcd_endpoints_fail_over_from_a_dead_first_endpoint() {
    let _g = lock();
    let h = hostname();
    etcd_range("/v3/kv/deleterange", "/migration/");
    let dead = closed_port();
    let d = Daemon::spawn(
        &[("ETCD_ENDPOINTS", &env("ETCD_ADDR"))],
        &[&format!("etcd://127.0.0.1:{dead}/migration")],
    );
    d.wait_subscribed();
    run_bb("failover");
    let key = format!("/migration/bb/{h}:failover:80");
    let want = format!("127.0.0.1:{}", host_port("failover", "80/tcp"));
    wait_for(&format!("etcd key {key}"), Some(&d), || {
        (etcd3("/migration/").get(&key).map(|(v, _)| v) == Some(&want)).then_some(())
    });
    wait_log(
        &d,
        &format!(
            "http://127.0.0.1:{dead} did not answer; using http://{} (ETCD_ENDPOINTS)",
            env("ETCD_ADDR")
        ),
    );
    drop(d);
    etcd_range("/v3/kv/deleterange", "/migration/");
}

/// A listener on 127.0.0.1 that completes no TCP handshake: its accept queue (backlog 0) is
/// kept full by one connection nobody accepts, so the kernel drops every further SYN and a
/// client's connect can only time out.
struct BlackHole {
    _listener: TcpListener,
    _queued: Vec<TcpStream>,
    port: u16,
}

impl BlackHole {
    fn start() -> BlackHole {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        // SAFETY: listen(2) on a socket this process owns; only changes its backlog.
        assert_eq!(unsafe { libc::listen(listener.as_raw_fd(), 0) }, 0);
        let addr: SocketAddr = listener.local_addr().unwrap();
        let mut queued = Vec::new();
        while let Ok(s) = TcpStream::connect_timeout(&addr, Duration::from_millis(300)) {
            queued.push(s);
            assert!(queued.len() < 10, "the listener's queue does not fill up");
        }
        assert!(!queued.is_empty(), "no connection queued");
        BlackHole {
            port: addr.port(),
            _listener: listener,
            _queued: queued,
        }
    }
}

/// F5: `SERVICE_CHECK_TIMEOUT=3s` on a TCP check reaches Consul. Consul 1.8 does not show a
/// TCP check's timeout anywhere (`/v1/agent/checks` and `/v1/health/...` have an empty
/// `Definition`, `/v1/agent/health/service/id/...` one with `"Timeout": "0s"`), so the test
/// watches what the timeout does: the check's target completes no handshake, and the check
/// says `i/o timeout` 3 s after it started (within its 1 s interval of the registration), where
/// Consul's default timeout would take 10 s. The container has no network at all
/// (`--network none`); its exposed port is registered at `-ip` 127.0.0.1 with that number,
/// which is the test's black hole.
#[test]
fn check_timeout_reaches_consul() {
    let _g = lock();
    let h = hostname();
    let hole = BlackHole::start();
    let port = hole.port.to_string();
    let d = Daemon::start(&["-ip", "127.0.0.1", &consul()]);
    run(&[
        "--name",
        "slowcheck",
        "--network",
        "none",
        "--expose",
        &port,
        "-e",
        "SERVICE_CHECK_TCP=true",
        "-e",
        "SERVICE_CHECK_TIMEOUT=3s",
        "-e",
        "SERVICE_CHECK_INTERVAL=1s",
        "bb",
    ]);
    let id = format!("{h}:slowcheck:{port}");
    let s = wait_service(&d, &id);
    let registered = Instant::now();
    assert_eq!(s["Address"], "127.0.0.1");
    assert_eq!(s["Port"], hole.port);
    assert_eq!(s["Meta"], json!({}), "check settings are not Meta");
    let check_id = format!("service:{id}");
    let check = &checks()[&check_id];
    assert_eq!(check["Type"], "tcp");
    let output = format!("dial tcp 127.0.0.1:{port}: i/o timeout");
    wait_for("the check to time out", Some(&d), || {
        (checks()[&check_id]["Output"] == output.as_str()).then_some(())
    });
    let took = registered.elapsed();
    figure(&format!(
        "SERVICE_CHECK_TIMEOUT=3s: the TCP check timed out {:.2} s after the registration (interval 1s)",
        took.as_secs_f64()
    ));
    assert!(
        took >= Duration::from_millis(2900) && took < Duration::from_secs(9),
        "timed out after {took:?}: not the 3 s asked (Consul's default is 10 s)"
    );
    assert_eq!(checks()[&check_id]["Status"], "critical");
}

// ------------------------------------------------------- Docker over TLS --

/// The TLS-only engine of `tests/docker28.sh start-tls` and its client certificates. The
/// tests remove every container on it, so only an engine on 127.0.0.1 whose directory is under
/// RGTR_TEST_DIR is accepted.
fn tls_engine() -> (String, String) {
    let host = env("RGTR_TLS_DOCKER_HOST");
    let dir = env("RGTR_TLS_DOCKER_DIR");
    assert!(
        host.starts_with("tcp://127.0.0.1:") && std::path::Path::new(&dir).starts_with(test_dir()),
        "RGTR_TLS_DOCKER_HOST={host} (dir {dir}) is not tests/docker28.sh's TLS engine under \
         RGTR_TEST_DIR; these tests remove every container on it (use tests/run.sh)"
    );
    (host, env("RGTR_TLS_DOCKER_CERTS"))
}

/// The docker CLI against the TLS engine; panics with its stderr on failure.
fn docker_tls(args: &[&str]) -> String {
    let (host, certs) = tls_engine();
    let out = Command::new("docker")
        .args(args)
        .env("DOCKER_HOST", host)
        .env("DOCKER_TLS_VERIFY", "1")
        .env("DOCKER_CERT_PATH", certs)
        .stdin(Stdio::null())
        .output()
        .expect("run docker");
    assert!(
        out.status.success(),
        "docker {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// No containers on the TLS engine.
fn tls_reset() {
    let ids = docker_tls(&["ps", "-aq"]);
    if !ids.is_empty() {
        let mut args = vec!["rm", "-f", "-v"];
        args.extend(ids.split_whitespace());
        docker_tls(&args);
    }
}

fn tls_host_port(container: &str, port: &str) -> u16 {
    let out = docker_tls(&["port", container, port]);
    out.lines()
        .next()
        .and_then(|l| l.rsplit(':').next())
        .and_then(|p| p.trim().parse().ok())
        .unwrap_or_else(|| panic!("no published port for {container} {port}: {out:?}"))
}

/// The daemon on the TLS engine with the client directory `certs`.
fn spawn_tls(certs: &str, args: &[&str]) -> Daemon {
    let (host, _) = tls_engine();
    Daemon::spawn(
        &[
            ("DOCKER_HOST", &host),
            ("DOCKER_TLS_VERIFY", "1"),
            ("DOCKER_CERT_PATH", certs),
        ],
        args,
    )
}

/// D1: with `DOCKER_TLS_VERIFY` and the right certificates the daemon follows the TLS-only
/// engine and registers its containers.
#[test]
fn docker_over_tls_registers_containers() {
    let _g = lock();
    tls_reset();
    let h = hostname();
    let (host, certs) = tls_engine();
    let d = spawn_tls(&certs, &[&consul()]);
    d.wait_subscribed();
    assert!(
        d.log()
            .contains(&format!("listening for events on {host} (TLS)")),
        "{}",
        d.log()
    );
    docker_tls(&[
        "run",
        "-d",
        "--name",
        "tls-web",
        "-p",
        "127.0.0.1::80",
        "bb",
    ]);
    let s = wait_service(&d, &format!("{h}:tls-web:80"));
    assert_eq!(s["Port"], tls_host_port("tls-web", "80/tcp"));
    assert_eq!(s["Address"], "127.0.0.1");
    docker_tls(&["rm", "-f", "tls-web"]);
    converge(&d, &[]);
}

/// D1: what cannot work is said at start, exit 1, within seconds: the engine's certificate
/// from another CA (`UnknownIssuer`), no `ca.pem` (named; never an unverified connection),
/// no client certificate (the engine's alert). TLS with a `unix://` host is a usage error
/// (exit 2), even with the real engine's socket there.
#[test]
fn docker_tls_refusals_exit_at_start() {
    let _g = lock();
    let (host, certs) = tls_engine();
    let noca = test_dir().join(format!("noca{}", std::process::id()));
    std::fs::create_dir_all(&noca).unwrap();
    for f in ["cert.pem", "key.pem"] {
        std::fs::copy(format!("{certs}/{f}"), noca.join(f)).unwrap();
    }
    let noca = noca.to_str().unwrap().to_string();
    let unix = docker_host();
    for (vars, code, want) in [
        (
            vec![("DOCKER_CERT_PATH", env("RGTR_TLS_DOCKER_BADCA"))],
            1,
            "invalid peer certificate: UnknownIssuer",
        ),
        (
            vec![("DOCKER_CERT_PATH", noca.clone())],
            1,
            "ca.pem does not exist",
        ),
        (
            vec![("DOCKER_CERT_PATH", env("RGTR_TLS_DOCKER_NOCLIENT"))],
            1,
            "BadCertificate",
        ),
        (
            vec![("DOCKER_CERT_PATH", certs.clone()), ("DOCKER_HOST", unix)],
            2,
            "TLS needs DOCKER_HOST=tcp://host:port",
        ),
    ] {
        let mut all: Vec<(&str, &str)> = vec![("DOCKER_HOST", &host), ("DOCKER_TLS_VERIFY", "1")];
        all.extend(vars.iter().map(|(k, v)| (*k, v.as_str())));
        let started = Instant::now();
        let mut d = Daemon::spawn(&all, &[&consul()]);
        let status = d.wait_exit();
        let took = started.elapsed();
        let log = d.log();
        assert_eq!(status.code(), Some(code), "{vars:?}: {log}");
        assert!(log.contains(want), "{vars:?}: {log}");
        assert!(
            took < Duration::from_secs(5),
            "{vars:?}: exit after {took:?}"
        );
        assert!(!log.contains("listening for events"), "{vars:?}: {log}");
    }
    let _ = std::fs::remove_dir_all(&noca);
}

fn docker28_sh(cmd: &str) {
    let st = Command::new("bash")
        .arg(repo_root().join("tests/docker28.sh"))
        .arg(cmd)
        .arg(test_dir())
        .status()
        .expect("run tests/docker28.sh");
    assert!(st.success(), "tests/docker28.sh {cmd} failed");
}

/// D1: the event stream over TLS survives an engine restart: a container that did not
/// survive it is deregistered, the one with a restart policy re-registered with its new
/// port, and one started right after the restart registers.
#[test]
fn docker_tls_engine_restart() {
    let _g = lock();
    tls_reset();
    let h = hostname();
    let (_, certs) = tls_engine();
    let d = spawn_tls(&certs, &[&consul()]);
    d.wait_subscribed();
    let p = "127.0.0.1::80";
    docker_tls(&[
        "run",
        "-d",
        "--name",
        "survivor",
        "--restart",
        "always",
        "-p",
        p,
        "bb",
    ]);
    docker_tls(&["run", "-d", "--name", "casualty", "-p", p, "bb"]);
    converge(
        &d,
        &[format!("{h}:casualty:80"), format!("{h}:survivor:80")],
    );

    let restart = Instant::now();
    docker28_sh("restart-tls-docker");
    docker_tls(&["run", "-d", "--name", "newcomer", "-p", p, "bb"]);
    converge(
        &d,
        &[format!("{h}:newcomer:80"), format!("{h}:survivor:80")],
    );
    figure(&format!(
        "docker TLS engine restart: converged {:.1} s after the restart began",
        restart.elapsed().as_secs_f64()
    ));
    let s = &services()[&format!("{h}:survivor:80")];
    assert_eq!(s["Port"], tls_host_port("survivor", "80/tcp"));
    assert!(d.log().contains("reconnected"), "{}", d.log());
    tls_reset();
}

/// D2: `DOCKER_API_VERSION` prefixes every path: `1.41` works like no version against the
/// engine (Docker 20.10: API 1.12 to 1.41); `1.11`, below its minimum, is refused by the
/// engine on every request with its own message, which the daemon logs while it retries,
/// registering nothing.
#[test]
fn docker_api_version_prefixes_every_path() {
    let _g = lock();
    let h = hostname();
    let d = Daemon::spawn(&[("DOCKER_API_VERSION", "1.41")], &[&consul()]);
    d.wait_subscribed();
    run_bb("versioned");
    let id = format!("{h}:versioned:80");
    wait_service(&d, &id);
    drop(d);
    consul_put(&format!("/v1/agent/service/deregister/{}", encode(&id)));

    // `versioned` still runs; this time nothing registers it.
    let mut d = Daemon::spawn(&[("DOCKER_API_VERSION", "1.11")], &[&consul()]);
    wait_log(&d, "client version 1.11 is too old");
    thread::sleep(Duration::from_secs(2));
    assert!(d.is_running(), "{}", d.log());
    assert!(!d.log().contains("listening for events"), "{}", d.log());
    assert!(services().is_empty(), "{}", d.log());
}

// --------------------------------------------------------- -deregister-on-stop --

/// A bb container whose shell ignores SIGTERM: `docker stop` ends it only with SIGKILL
/// (dockerd's `--init` forwards the TERM to the shell, which traps it).
fn run_stubborn(name: &str) -> String {
    run(&[
        "--name",
        name,
        "-p",
        "127.0.0.1::80",
        "bb",
        "sh",
        "-c",
        r#"trap "" TERM HUP; while :; do sleep 1; done"#,
    ])
}

/// The engine's events of `id` between `since_ns` and now: (action, signal, timeNano).
fn events_of(id: &str, since_ns: u128) -> Vec<(String, String, u128)> {
    let ts = |ns: u128| format!("{}.{:09}", ns / 1_000_000_000, ns % 1_000_000_000);
    let out = docker(&[
        "events",
        "--since",
        &ts(since_ns),
        "--until",
        &ts(now_ns()),
        "--filter",
        &format!("container={id}"),
        "--format",
        "{{json .}}",
    ]);
    out.lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).expect("event JSON");
            (
                v["Action"].as_str().unwrap_or("").to_string(),
                v["Actor"]["Attributes"]["signal"]
                    .as_str()
                    .unwrap_or("")
                    .to_string(),
                u128::from(v["timeNano"].as_u64().expect("timeNano")),
            )
        })
        .collect()
}

/// K1: `docker stop -t 4` of a container that ignores SIGTERM: its service leaves Consul at the
/// stop's `kill` event, while the engine still says the container runs, seconds before its
/// `die`, and stays out through the grace period although a resync runs every second; the
/// container exits only at the SIGKILL (137).
#[test]
fn deregister_on_stop_deregisters_at_the_kill() {
    let _g = lock();
    let h = hostname();
    let d = Daemon::start(&["-deregister-on-stop", "-resync", "1", &consul()]);
    let cid = run_stubborn("stubborn");
    let id = format!("{h}:stubborn:80");
    wait_service(&d, &id);

    let since = now_ns();
    let stopped = Arc::new(AtomicBool::new(false));
    let (watch, done) = (id.clone(), stopped.clone());
    let poller = thread::spawn(move || {
        let deadline = Instant::now() + Duration::from_secs(10);
        while agent_has(&watch) {
            if Instant::now() > deadline {
                return None;
            }
        }
        let gone = now_ns();
        let running = inspect("stubborn")["State"]["Running"] == true;
        // Then until `docker stop` returns: back at a resync?
        let mut back = false;
        while !done.load(Ordering::SeqCst) {
            back |= agent_has(&watch);
            thread::sleep(Duration::from_millis(20));
        }
        Some((gone, running, back))
    });
    docker(&["stop", "-t", "4", "stubborn"]);
    stopped.store(true, Ordering::SeqCst);
    let (gone, running, back) = poller
        .join()
        .unwrap()
        .unwrap_or_else(|| panic!("still registered 10 s after the stop\n{}", d.log()));
    assert!(!back, "registered again in the grace period\n{}", d.log());
    assert!(
        running,
        "the container had exited already when its service went"
    );
    assert_eq!(inspect("stubborn")["State"]["ExitCode"], 137, "SIGKILLed");

    let events = events_of(&cid, since);
    let at = |action: &str, signal: &str| {
        events
            .iter()
            .find(|(a, s, _)| a == action && s == signal)
            .map(|e| e.2)
            .unwrap_or_else(|| panic!("no {action} {signal} in {events:?}"))
    };
    let (kill, die) = (at("kill", "15"), at("die", ""));
    figure(&format!(
        "deregister-on-stop: gone {:.1} ms after kill, {:.2} s before die",
        (gone as f64 - kill as f64) / 1e6,
        (die as f64 - gone as f64) / 1e9
    ));
    assert!(gone > kill, "gone before the kill event?");
    assert!(
        gone - kill < 2_000_000_000,
        "gone {} ms after the kill: not at the kill, within the 4 s grace",
        (gone - kill) / 1_000_000
    );
    assert!(gone < die, "gone only at the die");
    wait_log(&d, &format!("stopping: {}", &cid[..12]));
}

/// K2: a signal other than the stop signal (`docker kill -s HUP`, a reload) changes nothing.
#[test]
fn deregister_on_stop_ignores_other_signals() {
    let _g = lock();
    let h = hostname();
    let d = Daemon::start(&["-deregister-on-stop", &consul()]);
    run_stubborn("reloaded");
    let id = format!("{h}:reloaded:80");
    wait_service(&d, &id);
    docker(&["kill", "-s", "HUP", "reloaded"]);
    // Events are handled in order: once a container started after the HUP is registered,
    // the HUP's kill event has been handled.
    run_bb("marker");
    wait_service(&d, &format!("{h}:marker:80"));
    thread::sleep(Duration::from_secs(2));
    assert!(agent_has(&id), "deregistered by a HUP\n{}", d.log());
    assert_eq!(inspect("reloaded")["State"]["Running"], true);
    assert!(!d.log().contains("stopping:"), "{}", d.log());
}

/// K1, K2: the stop signal is the container's own (`--stop-signal USR1`), remembered also for
/// a container the daemon found running at start: a TERM sent to it is just another signal
/// and changes nothing; `docker stop`, which sends USR1, deregisters while it still runs.
#[test]
fn deregister_on_stop_follows_the_containers_stop_signal() {
    let _g = lock();
    let h = hostname();
    let cid = run(&[
        "--name",
        "usr1",
        "--stop-signal",
        "USR1",
        "-p",
        "127.0.0.1::80",
        "bb",
        "sh",
        "-c",
        r#"trap "" TERM USR1; while :; do sleep 1; done"#,
    ]);
    let d = Daemon::start(&["-deregister-on-stop", &consul()]);
    let id = format!("{h}:usr1:80");
    wait_service(&d, &id);
    docker(&["kill", "-s", "TERM", "usr1"]);
    // Events are handled in order (see deregister_on_stop_ignores_other_signals).
    run_bb("marker");
    wait_service(&d, &format!("{h}:marker:80"));
    assert!(agent_has(&id), "deregistered by a TERM\n{}", d.log());

    let stop = thread::spawn(|| docker(&["stop", "-t", "3", "usr1"]));
    wait_for("the service to go at the USR1", Some(&d), || {
        (!agent_has(&id)).then_some(())
    });
    assert_eq!(inspect("usr1")["State"]["Running"], true);
    stop.join().unwrap();
    let line = format!("stopping: {} (signal 10)", &cid[..12]);
    assert!(d.log().contains(&line), "{}", d.log());
}

/// K3: `docker restart` deregisters at the stop and registers again at the start.
#[test]
fn deregister_on_stop_then_restart_registers_again() {
    let _g = lock();
    let h = hostname();
    let d = Daemon::start(&["-deregister-on-stop", &consul()]);
    let cid = run_stubborn("restarted");
    let id = format!("{h}:restarted:80");
    wait_service(&d, &id);
    docker(&["restart", "-t", "1", "restarted"]);
    wait_log(&d, &format!("stopping: {}", &cid[..12]));
    let s = wait_service(&d, &id);
    assert_eq!(s["Port"], host_port("restarted", "80/tcp"));
    assert_eq!(inspect("restarted")["State"]["Running"], true);
    converge(&d, &[id]);
}

/// K3: under `-deregister on-success` a stop is deliberate, not a failure: the stop
/// deregisters even though the container then exits with 3, which on its own would keep
/// the service.
#[test]
fn deregister_on_stop_under_on_success() {
    let _g = lock();
    let h = hostname();
    let d = Daemon::start(&[
        "-deregister",
        "on-success",
        "-deregister-on-stop",
        &consul(),
    ]);
    run(&[
        "--name",
        "failing",
        "-p",
        "127.0.0.1::80",
        "bb",
        "sh",
        "-c",
        r#"trap "exit 3" TERM; while :; do sleep 1; done"#,
    ]);
    let id = format!("{h}:failing:80");
    wait_service(&d, &id);
    docker(&["stop", "-t", "10", "failing"]);
    assert_eq!(inspect("failing")["State"]["ExitCode"], 3);
    converge(&d, &[]);
}
