//! The binary's command line as a user meets it: exit statuses and one-line reasons. Needs no
//! engine and no registry.

use std::process::{Command, Output};

fn registrator(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_registrator"))
        .args(args)
        .env("DOCKER_HOST", "unix:///nonexistent/docker.sock")
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

#[test]
fn setup_errors_exit_1() {
    for (args, want) in [
        (&["bogus://x"][..], "unrecognized adapter: bogus://x"),
        (&["nocolon"], "unrecognized adapter: nocolon"),
        (&["consul://127.0.0.1:notaport"], "bad port"),
        (&["file://"], "no file name"),
        (&["file:///nonexistent-dir/x.json"], "does not exist"),
        // Nothing listens on port 1: the ping fails after no retries.
        (&["consul://127.0.0.1:1"], "consul: ping"),
    ] {
        let o = registrator(args);
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(1), "{args:?}: {err}");
        assert!(err.contains(want), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{args:?}: {err}");
    }
}
