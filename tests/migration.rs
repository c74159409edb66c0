//! End to end, what users migrating from gliderlabs master and fayrus rely on (spec/dropin.md,
//! Decisions T): templates in tags. The release daemon against the private engine and Consul of
//! `tests/services.sh` (`tests/run.sh` starts them), asserting on what the agent holds.
//! Containers publish on 127.0.0.1 only; the HTTP servers the tests start for `httpGet` listen
//! on 127.0.0.1.

mod common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use common::*;
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
