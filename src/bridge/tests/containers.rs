//! What the worker makes of containers and their events: exits, replays, sync, cleanup, pause,
//! health.

use super::*;

#[test]
fn on_success_boundaries() {
    for (code, kept) in [
        (0, false),
        (1, true),
        (127, true),
        (128, false),
        (137, false),
        (255, false),
    ] {
        let mut w = World::new(Deregister::OnSuccess);
        w.start("c1", "web", &[]);
        w.exit("c1", code);
        assert_eq!(w.ids().len(), usize::from(kept), "exit {code}");
        w.destroy("c1");
        assert!(
            w.ids().is_empty(),
            "exit {code}: gone for good means deregistered"
        );
    }
    let mut w = World::new(Deregister::OnSuccess);
    w.start("c1", "web", &[]);
    w.engine
        .lock()
        .unwrap()
        .get_mut("c1")
        .unwrap()
        .state
        .running = false;
    w.event(Action::Die, "c1", None);
    assert!(w.ids().is_empty(), "a die without an exit code deregisters");
}

#[test]
fn always_deregisters_on_any_exit() {
    let mut w = World::new(Deregister::Always);
    w.start("c1", "web", &[]);
    assert_eq!(w.ids(), ["h:web:80"]);
    w.exit("c1", 1);
    assert!(w.ids().is_empty());
}

#[test]
fn stale_die_of_a_running_container_is_ignored() {
    let mut w = World::new(Deregister::Always);
    w.start("c1", "web", &[]);
    // Replayed after a reconnect: the container runs again by now.
    let before = w.inspects();
    w.arrive(Action::Die, "c1", Some(0), Arrival::Replayed);
    assert_eq!(w.ids(), ["h:web:80"]);
    assert_eq!(w.inspects(), before + 1, "a replayed die is checked");
    // A replayed die of a container that did stop: deregistered after the check.
    w.state("c1", |s| s.running = false);
    w.arrive(Action::Die, "c1", Some(0), Arrival::Replayed);
    assert!(w.ids().is_empty());
    assert_eq!(w.inspects(), before + 2);
}

#[test]
fn a_live_die_deregisters_at_once_without_an_inspect() {
    let mut w = World::new(Deregister::Always);
    w.start("c1", "web", &[]);
    let before = w.inspects();
    // The engine would still say "running" (it answers only once the container is torn
    // down): a live die is not asked about.
    w.event(Action::Die, "c1", Some(0));
    assert!(w.ids().is_empty());
    assert_eq!(w.inspects(), before, "no inspect");
    // -deregister on-success reads the exit code from the event alone.
    let mut w = World::new(Deregister::OnSuccess);
    w.start("c1", "web", &[]);
    let before = w.inspects();
    w.event(Action::Die, "c1", Some(3));
    assert_eq!(w.ids(), ["h:web:80"], "kept: it failed");
    assert_eq!(w.inspects(), before, "no inspect");
}

#[test]
fn a_service_id_taken_over_is_not_removed_by_its_old_owner() {
    let mut w = World::new(Deregister::OnSuccess);
    w.start("old", "web", &[]);
    w.exit("old", 1); // kept
    w.start("new", "web", &[]); // recreated under the same name: same service ID
    w.destroy("old");
    assert_eq!(w.ids(), ["h:web:80"], "the new container's service stays");
    assert_eq!(w.reg.0.lock().unwrap().held["h:web:80"], "new");
    w.exit("new", 0);
    assert!(w.ids().is_empty());

    let mut w = World::new(Deregister::Always);
    w.start("blue", "blue", &["SERVICE_ID=shared"]);
    w.start("green", "green", &["SERVICE_ID=shared"]);
    w.exit("blue", 0);
    assert_eq!(w.ids(), ["shared"], "green still holds it");
}

#[test]
fn sync_settles_what_changed_while_away() {
    let mut w = World::new(Deregister::OnSuccess);
    w.start("gone", "gone", &[]);
    w.start("exited0", "exited0", &[]);
    w.start("failed", "failed", &[]);
    w.start("stays", "stays", &[]);
    // Meanwhile, unseen by the worker:
    w.engine.lock().unwrap().remove("gone");
    for (id, code) in [("exited0", 0), ("failed", 2)] {
        let mut e = w.engine.lock().unwrap();
        let c = e.get_mut(id).unwrap();
        c.state.running = false;
        c.state.exit_code = code;
    }
    let j = serde_json::json!({
        "Id": "new", "Name": "/new", "State": {"Running": true},
        "Config": {"Image": "img", "ExposedPorts": {"80/tcp": {}}},
        "NetworkSettings": {"Ports": {"80/tcp": [{"HostIp": "127.0.0.1", "HostPort": "9"}]}}
    });
    w.engine
        .lock()
        .unwrap()
        .insert("new".into(), serde_json::from_value(j).unwrap());
    assert!(w.handle(Msg::Sync));
    assert_eq!(w.ids(), ["h:failed:80", "h:new:80", "h:stays:80"]);
    // A second sync changes nothing.
    let calls = w.reg.0.lock().unwrap().calls.len();
    assert!(w.handle(Msg::Sync));
    let g = w.reg.0.lock().unwrap();
    assert!(
        g.calls[calls..].iter().all(|c| c.starts_with("register")),
        "{:?}",
        &g.calls[calls..]
    );
}

#[test]
fn replayed_start_of_a_stopped_container_registers_nothing() {
    let mut w = World::new(Deregister::Always);
    w.start("c1", "web", &[]);
    w.exit("c1", 0);
    w.event(Action::Start, "c1", None);
    assert!(w.ids().is_empty());
    w.event(Action::Start, "unknown", None);
    assert!(w.ids().is_empty());
    assert!(!w.handle(Msg::Shutdown));
}

#[test]
fn cleanup_removes_only_this_hosts_services_of_containers_not_running() {
    let mut w = World::with(Options {
        cleanup: true,
        deregister: Deregister::OnSuccess,
        ..Options::default()
    });
    for id in [
        "h:gone:80",
        "h:gone:53:udp",
        "h:web:80",
        "h:web:81",
        "h:failed:80",
        "other:gone:80",
        "custom",
        "h:gone:x",
        "h:gone:80:tcp",
        "hh:gone:80",
    ] {
        w.reg
            .0
            .lock()
            .unwrap()
            .held
            .insert(id.into(), String::new());
    }
    w.create("w1", "web", &[], None);
    w.create("f1", "failed", &[], None);
    w.state("f1", |s| {
        s.running = false;
        s.exit_code = 3;
    });
    assert!(w.handle(Msg::Sync));
    assert_eq!(
        w.ids(),
        [
            "custom",
            "h:failed:80",
            "h:gone:80:tcp",
            "h:gone:x",
            "h:web:80",
            "h:web:81",
            "hh:gone:80",
            "other:gone:80"
        ]
    );
    assert_eq!(own_container("h:a.b_c-1:8080:udp", "h"), Some("a.b_c-1"));
    assert_eq!(own_container("h:dns:53:sctp", "h"), Some("dns"));
    assert_eq!(own_container("h:dns:53:tcp", "h"), None);
    assert_eq!(own_container("h:-a:80", "h"), None);
    assert_eq!(own_container("h:a:123456", "h"), None);
    assert_eq!(own_container("h::80", "h"), None);
}

#[test]
fn paused_containers_are_deregistered_until_unpaused() {
    let mut w = World::new(Deregister::Always);
    w.start("a", "a", &[]);
    w.state("a", |s| s.paused = true);
    w.event(Action::Pause, "a", None);
    assert!(w.ids().is_empty());
    assert!(w.handle(Msg::Sync), "a sync while paused");
    assert!(w.ids().is_empty());
    w.state("a", |s| s.paused = false);
    w.event(Action::Unpause, "a", None);
    assert_eq!(w.ids(), ["h:a:80"]);
}

#[test]
fn require_healthy_follows_the_healthcheck() {
    let mut w = World::with(Options {
        require_healthy: true,
        ..Options::default()
    });
    w.create("a", "a", &[], Some("starting"));
    w.event(Action::Start, "a", None);
    w.start("plain", "plain", &[]);
    assert_eq!(w.ids(), ["h:plain:80"], "no HEALTHCHECK: as before");
    w.health("a", "healthy");
    assert_eq!(w.ids(), ["h:a:80", "h:plain:80"]);
    w.health("a", "unhealthy");
    assert_eq!(w.ids(), ["h:plain:80"]);
    w.health("a", "healthy");
    assert_eq!(w.ids(), ["h:a:80", "h:plain:80"]);
    // A late event says healthy, inspect says unhealthy: inspect wins.
    w.state("a", |s| {
        s.health.as_mut().unwrap().status = "unhealthy".into()
    });
    w.event(Action::Health(Some(Health::Healthy)), "a", None);
    assert_eq!(w.ids(), ["h:plain:80"]);
}

#[test]
fn docker_health_is_reported_to_the_check() {
    let mut w = World::new(Deregister::Always);
    w.create("a", "a", &["SERVICE_CHECK_DOCKER=true"], Some("starting"));
    w.event(Action::Start, "a", None);
    assert_eq!(w.calls(), ["register h:a:80", "check h:a:80 starting"]);
    w.health("a", "healthy");
    assert_eq!(w.calls(), ["check h:a:80 healthy"], "no second register");
    w.health("a", "unhealthy");
    assert_eq!(w.calls(), ["check h:a:80 unhealthy"]);
    assert_eq!(w.ids(), ["h:a:80"], "registered throughout");
    w.later(REPORT_EVERY);
    assert_eq!(w.calls(), ["check h:a:80 unhealthy"], "reported again");
    // Without a HEALTHCHECK there is nothing to mirror.
    w.start("b", "b", &["SERVICE_CHECK_DOCKER=true"]);
    assert_eq!(w.calls(), ["register h:b:80"]);
    assert!(!docker_check(&w.bridge.registered["b"][0]));
    w.exit("a", 0);
    assert!(w.bridge.health.is_empty());
    assert!(w.bridge.next_due().is_none(), "no report timer left");
}

#[test]
fn shutdown_leaves_services_unless_asked() {
    let mut w = World::new(Deregister::Always);
    w.start("a", "a", &[]);
    assert!(!w.handle(Msg::Shutdown));
    assert_eq!(w.ids(), ["h:a:80"]);
    let mut w = World::with(Options {
        deregister_on_shutdown: true,
        ..Options::default()
    });
    w.start("a", "a", &[]);
    w.start("b", "b", &[]);
    w.reg
        .0
        .lock()
        .unwrap()
        .held
        .insert("other".into(), String::new());
    assert!(!w.handle(Msg::Shutdown));
    assert_eq!(w.ids(), ["other"]);
}

#[test]
fn a_renamed_service_with_the_same_id_leaves_no_old_key() {
    let mut w = World::new(Deregister::Always);
    w.reg.0.lock().unwrap().by_name = true;
    w.start("a", "web", &["SERVICE_ID=w", "SERVICE_NAME=old"]);
    w.down(true);
    w.exit("a", 0);
    w.destroy("a");
    w.start("b", "web", &["SERVICE_ID=w", "SERVICE_NAME=new"]);
    w.down(false);
    w.retry();
    assert_eq!(w.ids(), ["new/w"], "old/w deregistered, new/w registered");
    // Two containers sharing an ID under different names: each its own entry.
    w.start("c", "other", &["SERVICE_ID=w", "SERVICE_NAME=other"]);
    w.exit("c", 0);
    assert_eq!(w.ids(), ["new/w"]);
}

#[test]
fn a_check_the_registry_lost_registers_the_service_again() {
    let mut w = World::new(Deregister::Always);
    w.create("a", "a", &["SERVICE_CHECK_DOCKER=true"], Some("healthy"));
    w.event(Action::Start, "a", None);
    // The agent restarted empty; nothing changed on the host since.
    w.reg.0.lock().unwrap().held.clear();
    w.calls();
    w.later(REPORT_EVERY);
    assert_eq!(
        w.calls(),
        [
            "check h:a:80 healthy",
            "ping",
            "register h:a:80",
            "check h:a:80 healthy"
        ]
    );
    assert_eq!(w.ids(), ["h:a:80"]);
}

#[test]
fn resync_starts_counting_when_the_first_sync_is_done() {
    let mut w = World::with(Options {
        resync: Some(Duration::from_secs(5)),
        ..Options::default()
    });
    w.create("a", "a", &[], None);
    let took = Duration::from_secs(8);
    w.reg.0.lock().unwrap().slow = Some((w.clock.clone(), took));
    let before = w.now();
    assert!(w.handle(Msg::Sync));
    assert_eq!(
        w.bridge.next_due(),
        Some(before + took + Duration::from_secs(5)),
        "a sync longer than -resync is not followed by another at once"
    );
}

/// Decisions K1-K3: `-deregister-on-stop` deregisters at the stop signal's `kill` (or
/// SIGKILL's), never at another signal; `die` then finds nothing; `start` registers again; a
/// sync during the grace period leaves the stopping container out.
#[test]
fn deregister_on_stop_acts_on_the_stop_signal_only() {
    for mode in [Deregister::Always, Deregister::OnSuccess] {
        let mut w = World::with(Options {
            deregister: mode,
            deregister_on_stop: true,
            ..Options::default()
        });
        w.start("a", "a", &[]);
        w.calls();
        // K2: a reload's HUP (and USR1) changes nothing.
        w.event(Action::Kill(Some(1)), "a", None);
        w.event(Action::Kill(Some(10)), "a", None);
        w.event(Action::Kill(None), "a", None);
        assert!(w.calls().is_empty(), "{mode:?}");
        // K1: docker stop's SIGTERM deregisters at once, no inspect, while it still runs.
        let inspects = w.inspected.load(Ordering::SeqCst);
        w.event(Action::Kill(Some(15)), "a", None);
        assert_eq!(w.calls(), ["deregister h:a:80"], "{mode:?}");
        assert_eq!(w.inspected.load(Ordering::SeqCst), inspects);
        // A sync in the grace period does not bring it back.
        assert!(w.handle(Msg::Sync));
        assert!(w.ids().is_empty(), "{mode:?}");
        // K3: the die (exit 143, or any code under on-success) finds nothing; start registers.
        w.exit("a", 143);
        assert!(w.calls().is_empty());
        w.start("a", "a", &[]);
        assert_eq!(w.ids(), ["h:a:80"], "{mode:?}");
        // SIGKILL (a stop's timeout, docker kill, rm -f) deregisters too.
        w.calls();
        w.event(Action::Kill(Some(9)), "a", None);
        assert_eq!(w.calls(), ["deregister h:a:80"]);
    }
    // A container whose stop signal is SIGQUIT: its SIGTERM is not a stop.
    let mut w = World::with(Options {
        deregister_on_stop: true,
        ..Options::default()
    });
    w.create("q", "q", &[], None);
    w.engine
        .lock()
        .unwrap()
        .get_mut("q")
        .unwrap()
        .config
        .stop_signal = "SIGQUIT".into();
    w.event(Action::Start, "q", None);
    w.calls();
    w.event(Action::Kill(Some(15)), "q", None);
    assert!(w.calls().is_empty());
    w.event(Action::Kill(Some(3)), "q", None);
    assert_eq!(w.calls(), ["deregister h:q:80"]);
    // Without the flag a kill changes nothing.
    let mut w = World::new(Deregister::Always);
    w.start("a", "a", &[]);
    w.calls();
    w.event(Action::Kill(Some(15)), "a", None);
    assert!(w.calls().is_empty());
}

/// A process that survives its stop signal is registered again once `STOPPING_FOR` has passed
/// without a `die`; a replayed `kill` (after a reconnect) is not acted on.
#[test]
fn a_container_that_survives_its_stop_signal_comes_back() {
    let mut w = World::with(Options {
        deregister_on_stop: true,
        ..Options::default()
    });
    w.start("a", "a", &[]);
    w.calls();
    w.event(Action::Kill(Some(15)), "a", None);
    assert_eq!(w.calls(), ["deregister h:a:80"]);
    assert!(w.bridge.next_due().is_some(), "a timer to look again");
    w.later(Duration::from_secs(60));
    assert!(w.calls().is_empty(), "still in its grace period");
    w.later(Duration::from_secs(61));
    assert_eq!(w.calls(), ["register h:a:80"]);
    assert!(w.bridge.stopping.is_empty());
    // A replayed kill from before the container's latest start is old news (the harness
    // stamps events at 1 ns past the epoch).
    w.state("a", |st| st.started_at = "2026-01-01T00:00:00Z".into());
    w.arrive(Action::Kill(Some(15)), "a", None, Arrival::Replayed);
    assert!(w.calls().is_empty());
    assert_eq!(w.ids(), ["h:a:80"]);
    // One that may be replayed but is not older than the start counts (a stop just after the
    // daemon subscribed).
    w.state("a", |st| st.started_at = String::new());
    w.arrive(Action::Kill(Some(15)), "a", None, Arrival::Replayed);
    assert_eq!(w.calls(), ["deregister h:a:80"]);
}
