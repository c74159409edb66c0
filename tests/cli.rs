//! The binary's command line as a user meets it: exit statuses and one-line reasons. Needs no
//! engine and no registry.

use std::process::{Command, Output};

fn registrator(args: &[&str]) -> Output {
    registrator_with(&[], args)
}

fn registrator_with(env: &[(&str, &str)], args: &[&str]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_registrator"));
    cmd.args(args)
        .env("DOCKER_HOST", "unix:///nonexistent/docker.sock")
        .env_remove("CONSUL_HTTP_ADDR");
    for var in ["CONSUL_CACERT", "CONSUL_CLIENT_CERT", "CONSUL_CLIENT_KEY"] {
        cmd.env_remove(var);
    }
    for var in ["ETCD_CA_CERT_FILE", "ETCD_CERT_FILE", "ETCD_KEY_FILE"] {
        cmd.env_remove(var);
    }
    for var in [
        "DOCKER_TLS_VERIFY",
        "DOCKER_CERT_PATH",
        "DOCKER_API_VERSION",
    ] {
        cmd.env_remove(var);
    }
    cmd.envs(env.iter().copied())
        .output()
        .expect("run the binary")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn version_and_help() {
    for v in ["--version", "-version", "-V"] {
        let o = registrator(&[v]);
        assert_eq!(o.status.code(), Some(0));
        assert!(String::from_utf8_lossy(&o.stdout).starts_with("registrator "));
    }
    let o = registrator(&["--help"]);
    assert_eq!(o.status.code(), Some(0));
    let help = String::from_utf8_lossy(&o.stdout);
    for flag in [
        "-ip",
        "-internal",
        "-explicit",
        "-useIpFromLabel",
        "-tags",
        "-resync",
        "-deregister",
        "-ttl ",
        "-ttl-refresh",
        "-retry-attempts",
        "-retry-interval",
        "-cleanup",
    ] {
        assert!(help.contains(flag), "help lists {flag}");
    }
}

#[test]
fn usage_errors_exit_2_with_a_one_line_reason() {
    for args in [
        &[][..],
        &["consul://", "extra"],
        &["-ip", "300.1.1.1", "consul://"],
        &["-deregister", "sometimes", "consul://"],
        &["-ttl", "5", "consul://"],
        &["-retry-interval", "0", "consul://"],
        &["-nope", "consul://"],
        // Registry URIs whose parts are wrong.
        &["consul://127.0.0.1:notaport"],
        &["consul://127.0.0.1:0"],
        &["file://"],
        &["consul-unix://"],
        &["consulkv://127.0.0.1:8500"],
        &["consulkv://127.0.0.1:8500/"],
        &["consulkv-unix:///run/consul.sock"],
        &["etcd://127.0.0.1:99999/services"],
        &["skydns2://127.0.0.1:2379"],
        &["coredns://127.0.0.1:2379/"],
        &["skydns2://127.0.0.1:2379/a..b"],
        &["zookeeper://127.0.0.1:0/services"],
    ] {
        let o = registrator(args);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", stderr(&o));
        let err = stderr(&o);
        let lines: Vec<&str> = err.lines().collect();
        assert_eq!(
            lines.len(),
            2,
            "the reason, then where to find usage: {err}"
        );
        assert!(lines[0].starts_with("registrator: "), "{args:?}: {err}");
        assert!(
            lines[1].starts_with("Usage: registrator"),
            "{args:?}: {err}"
        );
    }
    assert!(stderr(&registrator(&[])).contains("Missing required argument for registry URI."));
}

/// Decisions T4 and D2: a `-tags` template that does not parse and a `DOCKER_API_VERSION` that
/// is not digits and dots are usage errors, found before connecting to anything (the engine's
/// socket does not exist and nothing listens on the registry's port: either would be exit 1),
/// said in one line, the template's with its position.
#[test]
fn bad_tags_template_and_api_version_are_usage_errors() {
    for (env, args, want) in [
        (
            &[][..],
            &["-tags", "{{.Name", "consul://127.0.0.1:1"][..],
            "invalid -tags: template: tags:1:8: unclosed action",
        ),
        (
            &[("DOCKER_API_VERSION", "v1.41")],
            &["consul://127.0.0.1:1"],
            "DOCKER_API_VERSION=\"v1.41\": expected a version such as 1.41",
        ),
    ] {
        let started = std::time::Instant::now();
        let o = registrator_with(env, args);
        let took = started.elapsed();
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {err}");
        let lines: Vec<&str> = err.lines().collect();
        assert_eq!(
            lines.len(),
            2,
            "the reason, then where to find usage: {err}"
        );
        assert_eq!(lines[0], format!("registrator: {want}"));
        assert!(took < std::time::Duration::from_secs(2), "took {took:?}");
    }
}

#[test]
fn setup_errors_exit_1() {
    for (args, want) in [
        (&["bogus://x"][..], "unrecognized adapter: bogus://x"),
        (&["nocolon"], "unrecognized adapter: nocolon"),
        (&["file:///nonexistent-dir/x.json"], "does not exist"),
        // Nothing listens on port 1: the ping fails after no retries.
        (&["consul://127.0.0.1:1"], "consul: ping"),
        (
            &["consulkv://127.0.0.1:1/p"],
            "consulkv http://127.0.0.1:1: ping",
        ),
        (&["etcd://127.0.0.1:1/p"], "etcd http://127.0.0.1:1: ping"),
        (
            &["etcd-legacy://127.0.0.1:1/p"],
            "etcd-legacy http://127.0.0.1:1: ping",
        ),
        (
            &["skydns2://127.0.0.1:1/local"],
            "skydns2 http://127.0.0.1:1: ping",
        ),
        (
            &["coredns://127.0.0.1:1/local"],
            "coredns http://127.0.0.1:1: ping",
        ),
        (
            &["zookeeper://127.0.0.1:1/p"],
            "zookeeper 127.0.0.1:1: ping",
        ),
        (
            &["consul-unix:///nonexistent/consul.sock"],
            "/nonexistent/consul.sock",
        ),
    ] {
        let o = registrator(args);
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(1), "{args:?}: {err}");
        assert!(err.contains(want), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{args:?}: {err}");
    }
}

#[test]
fn tls_files_are_named_when_missing_or_bad() {
    let dir = std::env::temp_dir().join(format!("rgtr-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let junk = dir.join("junk.pem");
    std::fs::write(&junk, "not a certificate\n").unwrap();
    let junk = junk.to_str().unwrap();
    for (env, uri, want) in [
        (
            vec![("CONSUL_CACERT", "/nonexistent/ca.pem")],
            "consul-tls://127.0.0.1:1",
            "CONSUL_CACERT=/nonexistent/ca.pem: No such file",
        ),
        (
            vec![("CONSUL_CACERT", junk)],
            "consul-tls://127.0.0.1:1",
            "no PEM certificate",
        ),
        (
            vec![("CONSUL_CLIENT_CERT", junk)],
            "consul-tls://127.0.0.1:1",
            "CONSUL_CLIENT_CERT is set but",
        ),
        (
            vec![("ETCD_CA_CERT_FILE", "/nonexistent/etcd-ca.pem")],
            "etcd://127.0.0.1:1/p",
            "ETCD_CA_CERT_FILE=/nonexistent/etcd-ca.pem",
        ),
    ] {
        let o = registrator_with(&env, &[uri]);
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(1), "{env:?} {uri}: {err}");
        assert!(err.contains(want), "{env:?} {uri}: {err}");
        assert_eq!(err.lines().count(), 1, "{err}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
