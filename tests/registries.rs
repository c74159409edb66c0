//! End to end, every registry but Consul's plain HTTP catalog and the file: the release daemon
//! against the private engine and the real servers `tests/services.sh` started on 127.0.0.1:
//! Consul over TLS (client certificates required) and on a Unix socket, Consul KV, etcd 3.4
//! (v3 gateway and, with `--enable-v2`, the v2 keys API; one plain, one TLS-only), and
//! ZooKeeper 3.8. Each test reads what the server holds with its own API.

mod common;
#[path = "common/etcd.rs"]
mod etcd;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use common::*;
use etcd::{etcd3, etcd_post};
use registrator::backend::base64;
use registrator::backend::zookeeper::codec as zk;
use serde_json::{json, Value};

fn env(var: &str) -> String {
    std::env::var(var).unwrap_or_else(|_| {
        panic!("{var} is not set: these tests need tests/services.sh's servers (tests/run.sh)")
    })
}

fn tls(file: &str) -> String {
    format!("{}/{file}", env("RGTR_TLS_DIR"))
}

/// What a second daemon on the same registry says at start that the registry holds: (all,
/// with this host's IDs). It runs with `-explicit`, so it registers nothing of its own.
fn listed(env: &[(&str, &str)], uri: &str) -> (usize, usize) {
    let d = Daemon::spawn(env, &["-explicit", uri]);
    let line = wait_for("the registry's listing at start", Some(&d), || {
        d.log()
            .lines()
            .find(|l| l.contains("the registry holds"))
            .map(String::from)
    });
    let nums: Vec<usize> = line
        .split_whitespace()
        .filter_map(|w| w.parse().ok())
        .collect();
    assert_eq!(nums.len(), 2, "{line}");
    (nums[0], nums[1])
}

// ------------------------------------------------------------------ etcd --

/// Every leaf under `prefix` in the plain etcd's v2 keys: key -> (value, ttl).
fn etcd2(prefix: &str) -> BTreeMap<String, (String, Option<u64>)> {
    fn walk(n: &Value, out: &mut BTreeMap<String, (String, Option<u64>)>) {
        if let Some(nodes) = n["nodes"].as_array() {
            nodes.iter().for_each(|c| walk(c, out));
        } else if let Some(v) = n["value"].as_str() {
            out.insert(
                n["key"].as_str().unwrap().to_string(),
                (v.to_string(), n["ttl"].as_u64()),
            );
        }
    }
    let url = format!("http://{}/v2/keys{prefix}?recursive=true", env("ETCD_ADDR"));
    let mut out = BTreeMap::new();
    match ureq::get(&url).call() {
        Ok(mut r) => {
            let v: Value = serde_json::from_str(&r.body_mut().read_to_string().unwrap()).unwrap();
            walk(&v["node"], &mut out);
        }
        Err(ureq::Error::StatusCode(404)) => {}
        Err(e) => panic!("GET {url}: {e}"),
    }
    out
}

/// Removes everything under `prefix` from both stores (etcd 3.4 keeps v2 and v3 keys apart).
fn etcd_clear(prefix: &str) {
    let mut end = prefix.as_bytes().to_vec();
    *end.last_mut().unwrap() += 1;
    etcd_post(
        "/v3/kv/deleterange",
        &json!({"key": base64::encode(prefix.as_bytes()), "range_end": base64::encode(&end)}),
    );
    let url = format!(
        "http://{}/v2/keys{}?recursive=true",
        env("ETCD_ADDR"),
        prefix.trim_end_matches('/')
    );
    match ureq::delete(&url).call() {
        Ok(_) | Err(ureq::Error::StatusCode(404)) => {}
        Err(e) => panic!("DELETE {url}: {e}"),
    }
}

fn etcd_uri(scheme: &str, path: &str) -> String {
    format!("{scheme}://{}{path}", env("ETCD_ADDR"))
}

#[test]
fn etcd_v3_keys_values_and_removal() {
    let _g = lock();
    etcd_clear("/v3test/");
    let h = hostname();
    let d = Daemon::start(&[&etcd_uri("etcd", "/v3test")]);
    run_bb("alpha");
    let port = host_port("alpha", "80/tcp");
    let key = format!("/v3test/bb/{h}:alpha:80");
    let want = format!("127.0.0.1:{port}");
    wait_for(&format!("etcd key {key}"), Some(&d), || {
        etcd3("/v3test/")
            .get(&key)
            .filter(|(v, _)| *v == want)
            .map(drop)
    });
    assert_eq!(etcd3("/v3test/")[&key].1, "", "no lease without -ttl");
    assert_eq!(listed(&[], &etcd_uri("etcd", "/v3test")), (1, 1));
    docker(&["rm", "-f", "alpha"]);
    wait_for("the key to go", Some(&d), || {
        etcd3("/v3test/").is_empty().then_some(())
    });
}

#[test]
fn etcd_v3_ttl_lease_is_kept_alive_and_expires_without_the_daemon() {
    let _g = lock();
    etcd_clear("/ttl/");
    let h = hostname();
    let mut d = Daemon::start(&["-ttl", "3", "-ttl-refresh", "1", &etcd_uri("etcd", "/ttl")]);
    run_bb("kept");
    run_bb("dies");
    let kept = format!("/ttl/bb/{h}:kept:80");
    let dies = format!("/ttl/bb/{h}:dies:80");
    wait_for("both keys", Some(&d), || {
        (etcd3("/ttl/").len() == 2).then_some(())
    });
    let lease = etcd3("/ttl/")[&kept].1.clone();
    assert!(!lease.is_empty(), "keys are put with a lease");

    // Twice the TTL later the keys are still there: the lease is kept alive.
    thread::sleep(Duration::from_secs(6));
    let now = etcd3("/ttl/");
    assert!(
        now.contains_key(&kept) && now.contains_key(&dies),
        "{now:?}\n{}",
        d.log()
    );
    assert_eq!(now[&kept].1, lease, "the same lease, kept alive");

    // A container that dies is deregistered at once; its key is gone well within the TTL.
    docker(&["kill", "dies"]);
    wait_for("the dead container's key to go", Some(&d), || {
        (!etcd3("/ttl/").contains_key(&dies)).then_some(())
    });

    // Without the daemon, nothing keeps the lease: the key expires with it.
    d.stop_with("KILL");
    let t = Instant::now();
    wait_for("the key to expire after the daemon is killed", None, || {
        etcd3("/ttl/").is_empty().then_some(())
    });
    eprintln!(
        "key expired {:?} after the daemon was killed (-ttl 3)",
        t.elapsed()
    );
}

#[test]
fn etcd_wiped_while_running_gets_every_service_back() {
    let _g = lock();
    let h = hostname();
    let d = Daemon::start(&["-ttl", "3", "-ttl-refresh", "1", &etcd_uri("etcd", "/wipe")]);
    let l = Daemon::start(&[
        "-ttl",
        "3",
        "-ttl-refresh",
        "1",
        &etcd_uri("etcd-legacy", "/wipe2"),
    ]);
    let names = ["w1", "w2", "w3"];
    for n in names {
        run_bb(n);
    }
    let want: Vec<String> = names
        .iter()
        .map(|n| format!("/wipe/bb/{h}:{n}:80"))
        .collect();
    let want2: Vec<String> = names
        .iter()
        .map(|n| format!("/wipe2/bb/{h}:{n}:80"))
        .collect();
    let keys3 = || etcd3("/wipe/").into_keys().collect::<Vec<_>>();
    let keys2 = || etcd2("/wipe2").into_keys().collect::<Vec<_>>();
    wait_for("three v3 keys", Some(&d), || {
        (keys3() == want).then_some(())
    });
    wait_for("three v2 keys", Some(&l), || {
        (keys2() == want2).then_some(())
    });

    let t = Instant::now();
    services_sh("wipe-etcd");
    let restart = t.elapsed();
    wait_for("every v3 key back after the wipe", Some(&d), || {
        (keys3() == want).then_some(())
    });
    let v3_back = t.elapsed();
    wait_for("every v2 key back after the wipe", Some(&l), || {
        (keys2() == want2).then_some(())
    });
    eprintln!(
        "etcd wiped and restarted in {restart:?}; from the wipe, v3 keys back in {v3_back:?}, v2 \
         keys in {:?} (-ttl-refresh 1)",
        t.elapsed()
    );
    // Put back by the refresh (etcd came back before a call failed) or by the worker's
    // recovery (a refresh failed while etcd was down: everything is registered again).
    for daemon in [&d, &l] {
        let log = daemon.log();
        assert!(
            log.contains("put back") || log.contains("registry reachable again"),
            "{log}"
        );
    }
}

#[test]
fn etcd_legacy_keys_with_ttl() {
    let _g = lock();
    etcd_clear("/legacy/");
    let h = hostname();
    let d = Daemon::start(&[
        "-ttl",
        "30",
        "-ttl-refresh",
        "10",
        &etcd_uri("etcd-legacy", "/legacy"),
    ]);
    run_bb("old");
    let key = format!("/legacy/bb/{h}:old:80");
    let (value, ttl) = wait_for("the v2 key", Some(&d), || etcd2("/legacy").remove(&key));
    assert_eq!(value, format!("127.0.0.1:{}", host_port("old", "80/tcp")));
    assert!(ttl.is_some_and(|t| t <= 30 && t > 20), "ttl {ttl:?}");
    assert_eq!(listed(&[], &etcd_uri("etcd-legacy", "/legacy")), (1, 1));
    docker(&["rm", "-f", "old"]);
    wait_for("the v2 key to go", Some(&d), || {
        (!etcd2("/legacy").contains_key(&key)).then_some(())
    });
}

#[test]
fn skydns2_and_coredns_layouts() {
    let _g = lock();
    etcd_clear("/skydns/");
    let h = hostname();
    let sky = Daemon::start(&[&etcd_uri("skydns2", "/skydns.local")]);
    let core = Daemon::start(&[&etcd_uri("coredns", "/cluster.local")]);
    let cid = run(&[
        "--name",
        "dns",
        "-e",
        "SERVICE_ID=dns-1",
        "-p",
        "127.0.0.1::80",
        "bb",
    ]);
    run_bb("colon");
    let port = host_port("dns", "80/tcp");
    let sky_key = "/skydns/local/skydns/bb/dns-1".to_string();
    let (value, _) = wait_for("the skydns2 record", Some(&sky), || {
        etcd2("/skydns/local/skydns").remove(&sky_key)
    });
    let v: Value = serde_json::from_str(&value).expect("the value is JSON");
    assert_eq!(v, json!({"host": "127.0.0.1", "port": port}));
    let core_key = "/skydns/local/cluster/bb/dns-1".to_string();
    let (value, _) = wait_for("the coredns record", Some(&core), || {
        etcd3("/skydns/local/cluster/").remove(&core_key)
    });
    let v: Value = serde_json::from_str(&value).expect("the value is JSON");
    assert_eq!(v, json!({"host": "127.0.0.1", "port": port}));

    // Two records each: one with the custom ID, one with this host's default ID.
    wait_for("both skydns2 records", Some(&sky), || {
        (etcd2("/skydns/local/skydns").len() == 2).then_some(())
    });
    assert_eq!(listed(&[], &etcd_uri("skydns2", "/skydns.local")), (2, 1));
    wait_for("both coredns records", Some(&core), || {
        (etcd3("/skydns/local/cluster/").len() == 2).then_some(())
    });
    assert_eq!(listed(&[], &etcd_uri("coredns", "/cluster.local")), (2, 1));

    // The default ID (host:container:port) is not a DNS label: a warning says what to set.
    let colon = format!("{h}:colon:80");
    for d in [&sky, &core] {
        wait_for("the warning about the default ID", Some(d), || {
            let log = d.log();
            (log.contains(&format!("service ID \"{colon}\" is not a DNS label"))
                && log.contains("SERVICE_ID"))
            .then_some(())
        });
        assert!(
            !d.log().contains("\"dns-1\" is not"),
            "dns-1 is a fine label"
        );
    }

    docker(&["rm", "-f", &cid]);
    wait_for("both records to go", Some(&sky), || {
        (!etcd2("/skydns/local/skydns").contains_key(&sky_key)
            && !etcd3("/skydns/local/cluster/").contains_key(&core_key))
        .then_some(())
    });
}

/// `etcdctl ARGS` against the TLS-only etcd, with the client certificate; its output.
fn etcdctl_tls(args: &[&str]) -> String {
    let out = Command::new("etcdctl")
        .env("ETCDCTL_API", "3")
        .arg(format!("--endpoints=https://{}", env("ETCD_TLS_ADDR")))
        .args(["--cacert", &tls("ca.pem"), "--cert", &tls("client.pem")])
        .args(["--key", &tls("client-key.pem")])
        .args(args)
        .output()
        .expect("etcdctl");
    assert!(out.status.success(), "etcdctl {args:?}: {out:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn etcd_over_tls_with_client_certificates() {
    let _g = lock();
    etcdctl_tls(&["del", "--prefix", "/tls/"]);
    let h = hostname();
    let uri = format!("etcd://{}/tls", env("ETCD_TLS_ADDR"));
    let d = Daemon::spawn(
        &[
            ("ETCD_CA_CERT_FILE", &tls("ca.pem")),
            ("ETCD_CERT_FILE", &tls("client.pem")),
            ("ETCD_KEY_FILE", &tls("client-key.pem")),
        ],
        &[&uri],
    );
    d.wait_subscribed();
    run_bb("secure");
    let key = format!("/tls/bb/{h}:secure:80");
    let get = || etcdctl_tls(&["get", "--prefix", "/tls/"]);
    let port = host_port("secure", "80/tcp");
    let tls_env = [
        ("ETCD_CA_CERT_FILE", tls("ca.pem")),
        ("ETCD_CERT_FILE", tls("client.pem")),
        ("ETCD_KEY_FILE", tls("client-key.pem")),
    ];
    let tls_env: Vec<(&str, &str)> = tls_env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    wait_for("the key in the TLS etcd", Some(&d), || {
        get()
            .contains(&format!("{key}\n127.0.0.1:{port}"))
            .then_some(())
    });
    assert_eq!(listed(&tls_env, &uri), (1, 1));
    docker(&["rm", "-f", "secure"]);
    wait_for("the key to go", Some(&d), || {
        (!get().contains(&key)).then_some(())
    });

    // A server the given CA did not sign is refused.
    let mut bad = Daemon::spawn(
        &[
            ("ETCD_CA_CERT_FILE", &tls("other-ca.pem")),
            ("ETCD_CERT_FILE", &tls("client.pem")),
            ("ETCD_KEY_FILE", &tls("client-key.pem")),
        ],
        &["-retry-attempts", "0", &uri],
    );
    assert_eq!(bad.wait_exit().code(), Some(1), "{}", bad.log());
    assert!(bad.log().contains("etcd https://"), "{}", bad.log());
}

// ---------------------------------------------------------------- Consul --

#[test]
fn consul_over_tls_requires_and_verifies_certificates() {
    let _g = lock();
    let h = hostname();
    let uri = format!("consul-tls://{}", env("CONSUL_HTTPS_ADDR"));
    let good = [
        ("CONSUL_CACERT", tls("ca.pem")),
        ("CONSUL_CLIENT_CERT", tls("client.pem")),
        ("CONSUL_CLIENT_KEY", tls("client-key.pem")),
    ];
    let spawn = |e: &[(&'static str, String)], args: &[&str]| {
        let e: Vec<(&str, &str)> = e.iter().map(|(k, v)| (*k, v.as_str())).collect();
        Daemon::spawn(&e, args)
    };
    let d = spawn(&good, &[&uri]);
    d.wait_subscribed();
    run_bb("tls");
    let id = format!("{h}:tls:80");
    wait_for(&format!("service {id} via TLS"), Some(&d), || {
        services().remove(&id)
    });
    let env: Vec<(&str, &str)> = good.iter().map(|(k, v)| (*k, v.as_str())).collect();
    assert_eq!(listed(&env, &uri), (1, 1));
    docker(&["rm", "-f", "tls"]);
    wait_for("the service to go", Some(&d), || {
        (!services().contains_key(&id)).then_some(())
    });
    drop(d);

    // The agent requires a client certificate; a server from another CA is not trusted.
    let no_client = [("CONSUL_CACERT", tls("ca.pem"))];
    let other_ca = [
        ("CONSUL_CACERT", tls("other-ca.pem")),
        ("CONSUL_CLIENT_CERT", tls("client.pem")),
        ("CONSUL_CLIENT_KEY", tls("client-key.pem")),
    ];
    // A client certificate with someone else's key is named, not a crash.
    let mismatched = [
        ("CONSUL_CACERT", tls("ca.pem")),
        ("CONSUL_CLIENT_CERT", tls("client.pem")),
        ("CONSUL_CLIENT_KEY", tls("server-key.pem")),
    ];
    let mut bad = spawn(&mismatched, &[&uri]);
    assert_eq!(bad.wait_exit().code(), Some(1), "{}", bad.log());
    let log = bad.log();
    assert!(
        log.contains("CONSUL_CLIENT_KEY=") && log.contains("not a usable certificate and key pair"),
        "{log}"
    );
    for e in [&no_client[..], &other_ca[..]] {
        let mut bad = spawn(e, &["-retry-attempts", "0", &uri]);
        assert_eq!(bad.wait_exit().code(), Some(1), "{e:?}: {}", bad.log());
        assert!(bad.log().contains("consul: ping https://"), "{}", bad.log());
        assert!(!bad.log().contains("panicked"), "{}", bad.log());
    }
}

#[test]
fn consul_on_a_unix_socket() {
    let _g = lock();
    let h = hostname();
    let d = Daemon::start(&[&format!("consul-unix://{}", env("RGTR_CONSUL_SOCK"))]);
    run_bb("sock");
    let id = format!("{h}:sock:80");
    let s = wait_for(&format!("service {id}"), Some(&d), || {
        services().remove(&id)
    });
    assert_eq!(s["Port"], host_port("sock", "80/tcp"));
    let sock = format!("consul-unix://{}", env("RGTR_CONSUL_SOCK"));
    assert_eq!(listed(&[], &sock), (1, 1));
    docker(&["rm", "-f", "sock"]);
    wait_for("the service to go", Some(&d), || {
        (!services().contains_key(&id)).then_some(())
    });
}

/// Consul KV keys under `prefix`: key -> value.
fn consul_kv(prefix: &str) -> BTreeMap<String, String> {
    let url = format!("http://{}/v1/kv/{prefix}?recurse", consul_addr());
    match ureq::get(&url).call() {
        Ok(mut r) => {
            let v: Value = serde_json::from_str(&r.body_mut().read_to_string().unwrap()).unwrap();
            v.as_array()
                .unwrap()
                .iter()
                .map(|e| {
                    let value = base64::decode(e["Value"].as_str().unwrap_or("")).unwrap();
                    (
                        e["Key"].as_str().unwrap().to_string(),
                        String::from_utf8(value).unwrap(),
                    )
                })
                .collect()
        }
        Err(ureq::Error::StatusCode(404)) => BTreeMap::new(),
        Err(e) => panic!("GET {url}: {e}"),
    }
}

#[test]
fn consul_kv_over_http_and_the_socket() {
    let _g = lock();
    let h = hostname();
    for prefix in ["kvtest", "kvsock"] {
        let url = format!("http://{}/v1/kv/{prefix}?recurse", consul_addr());
        ureq::delete(&url).call().expect("clear the prefix");
    }
    let tcp = Daemon::start(&[&format!("consulkv://{}/kvtest", consul_addr())]);
    let sock = Daemon::start(&[&format!(
        "consulkv-unix://{}:/kvsock",
        env("RGTR_CONSUL_SOCK")
    )]);
    run(&["--name", "kv", "-p", "127.0.0.1::6379", "redis"]);
    let want = format!("127.0.0.1:{}", host_port("kv", "6379/tcp"));
    for (d, prefix) in [(&tcp, "kvtest"), (&sock, "kvsock")] {
        let key = format!("{prefix}/redis/{h}:kv:6379");
        let v = wait_for(&format!("KV {key}"), Some(d), || {
            consul_kv(prefix).remove(&key)
        });
        assert_eq!(v, want);
    }
    assert_eq!(
        listed(&[], &format!("consulkv://{}/kvtest", consul_addr())),
        (1, 1)
    );
    let sock = format!("consulkv-unix://{}:/kvsock", env("RGTR_CONSUL_SOCK"));
    assert_eq!(listed(&[], &sock), (1, 1));
    docker(&["rm", "-f", "kv"]);
    wait_for("both keys to go", Some(&tcp), || {
        (consul_kv("kvtest").is_empty() && consul_kv("kvsock").is_empty()).then_some(())
    });
}

// ------------------------------------------------------------- ZooKeeper --

/// A throwaway ZooKeeper session that reads the tree, with the project's own codec.
struct Zk {
    stream: TcpStream,
    frames: zk::Frames,
    xid: i32,
}

impl Zk {
    fn connect() -> Zk {
        let stream = TcpStream::connect(env("ZK_ADDR")).expect("connect to ZooKeeper");
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut z = Zk {
            stream,
            frames: zk::Frames::default(),
            xid: 0,
        };
        z.stream
            .write_all(&zk::connect_request(0, 4000, 0, &[]))
            .unwrap();
        let hello = z.frame();
        assert!(zk::connect_response(&hello).unwrap().timeout_ms > 0);
        z
    }

    fn frame(&mut self) -> Vec<u8> {
        let mut buf = [0u8; 4096];
        loop {
            if let Some(f) = self.frames.next_frame().unwrap() {
                return f;
            }
            let n = self.stream.read(&mut buf).expect("read from ZooKeeper");
            assert!(n > 0, "ZooKeeper closed the connection");
            self.frames.push(&buf[..n]);
        }
    }

    /// The answer's error code and body.
    fn call(&mut self, op: i32, path: &str) -> (i32, Vec<u8>) {
        self.xid += 1;
        self.stream
            .write_all(&zk::read(self.xid, op, path))
            .unwrap();
        loop {
            let f = self.frame();
            let r = zk::reply(&f).unwrap();
            if r.xid == self.xid {
                let head = f.len() - r.body.remaining();
                return (r.err, f[head..].to_vec());
            }
        }
    }

    fn children(&mut self, path: &str) -> Vec<String> {
        match self.call(zk::OP_GET_CHILDREN, path) {
            (zk::NO_NODE, _) => Vec::new(),
            (0, body) => zk::children(&mut zk::In::new(&body)).unwrap(),
            (e, _) => panic!("children {path}: {e}"),
        }
    }

    fn data(&mut self, path: &str) -> Option<Value> {
        match self.call(zk::OP_GET_DATA, path) {
            (zk::NO_NODE, _) => None,
            (0, body) => {
                let data = zk::In::new(&body).buffer().unwrap().to_vec();
                Some(serde_json::from_slice(&data).expect("node body is JSON"))
            }
            (e, _) => panic!("get {path}: {e}"),
        }
    }

    fn owner(&mut self, path: &str) -> Option<i64> {
        match self.call(zk::OP_EXISTS, path) {
            (zk::NO_NODE, _) => None,
            (0, body) => Some(zk::stat(&mut zk::In::new(&body)).unwrap().ephemeral_owner),
            (e, _) => panic!("exists {path}: {e}"),
        }
    }
}

impl Drop for Zk {
    fn drop(&mut self) {
        let _ = self.stream.write_all(&zk::close(self.xid + 1));
    }
}

/// `base/name` -> its service nodes.
fn zk_tree(base: &str) -> BTreeMap<String, Vec<String>> {
    let mut z = Zk::connect();
    z.children(base)
        .into_iter()
        .map(|name| {
            let dir = format!("{base}/{name}");
            let nodes = z.children(&dir);
            (dir, nodes)
        })
        .collect()
}

fn zk_uri(base: &str) -> String {
    format!("zookeeper://{}{base}", env("ZK_ADDR"))
}

#[test]
fn zookeeper_nodes_bodies_and_removal() {
    let _g = lock();
    let base = format!("/zk{}", std::process::id());
    // The first server in the list refuses connections: the client goes on to the next.
    let uri = format!("zookeeper://127.0.0.1:1,{}{base}", env("ZK_ADDR"));
    let mut d = Daemon::start(&["-tags", "t1", &uri]);
    let cid = run(&[
        "--name",
        "zoo",
        "-e",
        "SERVICE_REGION=eu",
        "-p",
        "127.0.0.1::6379",
        "redis",
    ]);
    let port = host_port("zoo", "6379/tcp");
    let node = format!("{base}/redis/127.0.0.1:{port}");
    let body = wait_for(&format!("node {node}"), Some(&d), || {
        Zk::connect().data(&node)
    });
    assert_eq!(
        body,
        json!({"Name": "redis", "IP": "127.0.0.1", "PublicPort": port, "PrivatePort": 6379,
               "ContainerID": cid, "Tags": ["t1"], "Attrs": {"region": "eu"}})
    );
    // The body has no service ID: listed, but not as this host's.
    assert_eq!(listed(&[], &uri), (1, 0));
    let mut z = Zk::connect();
    assert!(
        z.owner(&node).is_some_and(|o| o != 0),
        "the service node is ephemeral"
    );
    assert_eq!(
        z.owner(&format!("{base}/redis")),
        Some(0),
        "the name node is persistent"
    );
    drop(z);

    // The container dies: its node goes, and the name node with it once empty.
    docker(&["kill", "zoo"]);
    wait_for("the node and its empty name node to go", Some(&d), || {
        zk_tree(&base).is_empty().then_some(())
    });

    // SIGTERM closes the session: ephemeral nodes go at once, not after the timeout.
    run_bb("closing");
    wait_for("a node", Some(&d), || {
        (!zk_tree(&base).is_empty()).then_some(())
    });
    let (status, _) = d.stop_with("TERM");
    assert_eq!(status.code(), Some(0));
    let left = zk_tree(&base);
    assert!(left.values().all(Vec::is_empty), "{left:?}");
    let closed = |l: &str| l.contains("zookeeper: session 0x") && l.ends_with(" closed");
    assert!(d.log().lines().any(closed), "{}", d.log());
}

#[test]
fn zookeeper_server_restart_and_session_expiry() {
    let _g = lock();
    let base = format!("/zkr{}", std::process::id());
    let d = Daemon::start(&[&zk_uri(&base)]);
    for n in ["r1", "r2"] {
        run_bb(n);
    }
    let two = || {
        let t = zk_tree(&base);
        (t.values().map(Vec::len).sum::<usize>() == 2).then_some(())
    };
    wait_for("two nodes", Some(&d), two);

    // The server stops (keeping its data); a container starts meanwhile; the server comes
    // back: the daemon reconnects, the old nodes are there and the new one is created.
    services_sh("stop-zk");
    run_bb("r3");
    wait_for("the failed registration to be logged", Some(&d), || {
        d.log().contains("register failed").then_some(())
    });
    services_sh("start-zk");
    let t = Instant::now();
    let three = || {
        let t = zk_tree(&base);
        (t.values().map(Vec::len).sum::<usize>() == 3).then_some(())
    };
    wait_for("all three nodes after the restart", Some(&d), three);
    eprintln!(
        "after ZooKeeper came back: all nodes present in {:?}",
        t.elapsed()
    );
    // The session thread reconnected (the worker's calls only failed meanwhile).
    let log = d.log();
    assert!(log.contains("connected again"), "{log}");
    docker(&["rm", "-f", "r3"]);
    wait_for("two nodes again", Some(&d), two);

    // The daemon is frozen past the session timeout: the server expires the session and drops
    // its nodes. Thawed, the daemon gets a new session and creates every node again.
    let pid = d.pid().to_string();
    Command::new("kill").args(["-STOP", &pid]).status().unwrap();
    let frozen = Instant::now();
    let gone = wait_for("the expired session's nodes to go", None, || {
        (zk_tree(&base).values().map(Vec::len).sum::<usize>() == 0).then(|| frozen.elapsed())
    });
    Command::new("kill").args(["-CONT", &pid]).status().unwrap();
    eprintln!("session expired {gone:?} after the daemon froze");
    let t = Instant::now();
    wait_for("every node in the new session", Some(&d), two);
    eprintln!("nodes back {:?} after the thaw", t.elapsed());
    assert!(
        d.log().contains("expired; starting a new one"),
        "{}",
        d.log()
    );
}

/// A ZooKeeper "server" that accepts connections and never answers: a reconnect that reaches
/// it waits for its handshake until the read timeout (two thirds of the session timeout).
struct BlackHole {
    addr: String,
    /// Per accepted connection: still open (the client has not given up on it).
    open: std::sync::Arc<std::sync::Mutex<Vec<bool>>>,
}

impl BlackHole {
    fn start() -> BlackHole {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().unwrap().to_string();
        let open = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let seen = open.clone();
        thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { return };
                let n = {
                    let mut g = seen.lock().unwrap();
                    g.push(true);
                    g.len() - 1
                };
                let seen = seen.clone();
                // Reads (and drops) the handshake; the end of the stream is the client
                // giving up.
                thread::spawn(move || {
                    let mut buf = [0u8; 512];
                    while matches!(stream.read(&mut buf), Ok(k) if k > 0) {}
                    seen.lock().unwrap()[n] = false;
                });
            }
        });
        BlackHole { addr, open }
    }

    /// Connections accepted so far, and whether each is still open.
    fn connections(&self) -> Vec<bool> {
        self.open.lock().unwrap().clone()
    }
}

#[test]
fn zookeeper_a_docker_event_is_handled_while_a_reconnect_is_in_progress() {
    let _g = lock();
    let base = format!("/zkd{}", std::process::id());
    let hole = BlackHole::start();
    // The real server first; the black hole is where every reconnect gets stuck meanwhile.
    let uri = format!("zookeeper://{},{}{base}", env("ZK_ADDR"), hole.addr);
    let d = Daemon::start(&[&uri]);
    run_bb("d1");
    wait_for("a node", Some(&d), || {
        (!zk_tree(&base).is_empty()).then_some(())
    });
    assert!(
        hole.connections().is_empty(),
        "start-up used the real server"
    );

    // The server stops: the session thread's ping fails, and its reconnect tries the real
    // server (refused) and then the black hole, which holds it for seconds.
    services_sh("stop-zk");
    let before = hole.connections().len();
    let stuck = wait_for("a reconnect to reach the black hole", Some(&d), || {
        let c = hole.connections();
        (c.len() > before && c[c.len() - 1]).then(|| c.len() - 1)
    });
    // A container starts while that reconnect is stuck: the worker handles its event at
    // once (the call fails fast and is kept for a retry), not after the reconnect gives up.
    run_bb("d2");
    let port = host_port("d2", "80/tcp");
    let line = format!("register {}:d2:80", hostname());
    wait_for(
        "the event to be handled (a failed registration)",
        Some(&d),
        || {
            d.log()
                .lines()
                .any(|l| l.contains("register failed") && l.contains(&line))
                .then_some(())
        },
    );
    assert!(
        hole.connections()[stuck],
        "the registration was tried while the reconnect was still stuck\n{}",
        d.log()
    );

    // The server is back: both nodes are there.
    services_sh("start-zk");
    let node = format!("{base}/bb/127.0.0.1:{port}");
    wait_for("both nodes after the server came back", Some(&d), || {
        let t = zk_tree(&base);
        (t.values().map(Vec::len).sum::<usize>() == 2 && Zk::connect().data(&node).is_some())
            .then_some(())
    });
}

#[test]
fn zookeeper_nodes_of_a_killed_daemon_vanish_after_the_session_timeout() {
    let _g = lock();
    let base = format!("/zkk{}", std::process::id());
    let mut d = Daemon::start(&[&zk_uri(&base)]);
    run_bb("k1");
    wait_for("a node", Some(&d), || {
        (!zk_tree(&base).is_empty()).then_some(())
    });
    d.stop_with("KILL");
    let t = Instant::now();
    thread::sleep(Duration::from_secs(2));
    assert!(
        !zk_tree(&base).is_empty(),
        "the node outlives the process until the timeout"
    );
    wait_for("the node to vanish", None, || {
        zk_tree(&base).values().all(Vec::is_empty).then_some(())
    });
    eprintln!(
        "nodes vanished {:?} after kill -9 (session timeout 10 s)",
        t.elapsed()
    );
}
