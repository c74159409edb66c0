//! Delivery to the registry: outages, refusals, retries and their timing, lanes, slowness.

use super::*;

#[test]
fn an_outage_holds_one_change_per_service_and_converges_when_it_ends() {
    let mut w = World::new(Deregister::Always);
    w.start("a", "a", &[]);
    w.start("b", "b", &[]);
    w.down(true);
    w.calls();
    w.start("c", "c", &[]);
    assert_eq!(
        w.calls(),
        ["register h:c:80", "ping"],
        "one try, then a ping"
    );
    // Churn while it is down: nothing is sent, one pending change per service.
    w.exit("a", 0);
    for _ in 0..100 {
        w.exit("c", 0);
        w.start("c", "c", &[]);
    }
    assert!(w.calls().is_empty(), "held, not sent");
    assert_eq!(w.bridge.outbox.len(), 2, "h:a:80 and h:c:80");
    w.retry();
    assert_eq!(w.calls(), ["ping"], "still down: only pinged");
    // It comes back without its data (a dev agent restarted).
    w.reg.0.lock().unwrap().held.clear();
    w.down(false);
    w.retry();
    assert_eq!(w.ids(), ["h:b:80", "h:c:80"]);
    assert!(w.bridge.outbox.is_empty() && !w.bridge.outbox.is_down());
    assert!(w.bridge.next_due().is_none(), "no timer left");
}

#[test]
fn a_call_the_registry_refuses_is_retried_with_backoff_without_holding_others() {
    let mut w = World::new(Deregister::Always);
    w.reg.0.lock().unwrap().refuse = vec!["h:a:80".into()];
    w.start("a", "a", &[]);
    assert!(!w.bridge.outbox.is_down(), "the ping succeeds: no outage");
    assert_eq!(w.calls(), ["register h:a:80", "ping"]);
    w.start("b", "b", &[]);
    assert_eq!(w.ids(), ["h:b:80"], "b is not held back by a");
    assert_eq!(
        w.bridge.next_due(),
        Some(w.now() + RETRY_MIN),
        "first retry"
    );
    // A resync wants the same registration: its backoff is kept, no call is made.
    w.calls();
    assert!(w.handle(Msg::Sync));
    assert_eq!(w.calls(), ["register h:b:80"]);
    assert_eq!(w.bridge.next_due(), Some(w.now() + RETRY_MIN));
    w.later(RETRY_MIN - Duration::from_millis(1));
    assert!(w.calls().is_empty(), "not due yet");
    w.later(Duration::from_millis(1));
    assert_eq!(w.calls(), ["register h:a:80", "ping"], "second try");
    assert_eq!(
        w.bridge.next_due(),
        Some(w.now() + RETRY_MIN * 2),
        "doubled"
    );
    for _ in 0..12 {
        w.retry();
    }
    assert_eq!(w.bridge.next_due(), Some(w.now() + RETRY_MAX), "capped");
    w.reg.0.lock().unwrap().refuse.clear();
    w.retry();
    assert_eq!(w.ids(), ["h:a:80", "h:b:80"]);
    assert!(w.bridge.next_due().is_none());
}

#[test]
fn churn_during_an_outage_leaves_no_pending_work_for_what_never_reached_the_registry() {
    let mut w = World::new(Deregister::Always);
    w.start("a", "a", &[]);
    w.down(true);
    w.start("b", "b", &[]); // fails: the registry may hold it (a timeout after the write)
    for i in 0..500 {
        let id = format!("job{i}");
        w.start(&id, &id, &[]);
        w.exit(&id, 0);
        w.destroy(&id);
    }
    assert!(w.calls().len() <= 3, "held, not sent");
    assert_eq!(
        w.bridge.outbox.keys(),
        ["h:b:80"],
        "one-off containers leave nothing behind"
    );
    w.down(false);
    w.retry();
    assert_eq!(w.ids(), ["h:a:80", "h:b:80"]);
    assert!(w.bridge.outbox.is_empty());
}

#[test]
fn cleanup_missed_during_an_outage_runs_when_the_registry_is_back() {
    let mut w = World::with(Options {
        cleanup: true,
        ..Options::default()
    });
    w.reg
        .0
        .lock()
        .unwrap()
        .held
        .insert("h:gone:80".into(), String::new());
    w.down(true);
    w.start("x", "x", &[]); // fails, and the ping after it: an outage
    assert!(w.bridge.outbox.is_down());
    assert!(w.handle(Msg::Sync));
    assert!(w.bridge.cleanup_due);
    assert_eq!(w.ids(), ["h:gone:80"], "nothing removed during the outage");
    w.down(false);
    w.retry();
    assert_eq!(
        w.ids(),
        ["h:x:80"],
        "h:gone:80 cleaned up once the registry is back"
    );
    assert!(!w.bridge.cleanup_due);
}

#[test]
fn a_registry_that_lost_its_entries_gets_every_wanted_service_again() {
    let mut w = World::new(Deregister::Always);
    w.create("a", "a", &["SERVICE_CHECK_DOCKER=true"], Some("healthy"));
    w.event(Action::Start, "a", None);
    w.start("b", "b", &[]);
    w.start("p", "p", &[]);
    w.state("p", |s| s.paused = true);
    w.event(Action::Pause, "p", None);
    // A new ZooKeeper session: the old one's nodes are gone.
    w.reg.0.lock().unwrap().held.clear();
    w.calls();
    assert!(w.handle(Msg::RegistryLost));
    let mut calls = w.calls();
    calls.sort();
    assert_eq!(
        calls,
        ["check h:a:80 healthy", "register h:a:80", "register h:b:80"],
        "withheld p is not registered; a's check follows its registration"
    );
    assert_eq!(w.ids(), ["h:a:80", "h:b:80"]);

    // Lost during an outage: queued, and made when the registry answers again.
    w.down(true);
    w.start("c", "c", &[]); // fails, then the ping: an outage
    w.reg.0.lock().unwrap().held.clear();
    w.calls();
    assert!(w.handle(Msg::RegistryLost));
    assert!(w.calls().is_empty(), "nothing sent while it is down");
    w.down(false);
    w.retry();
    assert_eq!(w.ids(), ["h:a:80", "h:b:80", "h:c:80"]);
    assert!(w.bridge.outbox.is_empty());
}

#[test]
fn a_retry_counts_from_when_the_failed_call_ended() {
    let mut w = World::new(Deregister::Always);
    let took = Duration::from_secs(10);
    {
        let mut g = w.reg.0.lock().unwrap();
        g.refuse = vec!["h:a:80".into()];
        g.slow = Some((w.clock.clone(), took));
    }
    let before = w.now();
    w.start("a", "a", &[]);
    assert_eq!(w.now(), before + took, "the call took the registry's time");
    assert_eq!(
        w.bridge.next_due(),
        Some(before + took + RETRY_MIN),
        "not from before the call"
    );
}

#[test]
fn a_sync_registers_on_lanes_and_a_die_that_came_meanwhile_follows_the_registration() {
    let mut w = World::new(Deregister::Always);
    {
        let mut g = w.reg.0.lock().unwrap();
        g.lanes = true;
        g.nap = Some(Duration::from_millis(20));
    }
    for i in 0..6 {
        w.create(&format!("c{i}"), &format!("web{i}"), &[], None);
    }
    // The sync, and the die of the last container to be registered, queued behind it as the
    // event reader would queue it while the sync runs.
    let (tx, rx) = std::sync::mpsc::channel();
    tx.send(Msg::Sync).unwrap();
    tx.send(event(Action::Die, "c5", Some(0), Arrival::Live))
        .unwrap();
    tx.send(Msg::Shutdown).unwrap();
    w.bridge.run(rx);
    let g = w.reg.0.lock().unwrap();
    assert_eq!(g.max_in_flight, LANES, "registrations overlapped");
    let at = |call: &str| g.calls.iter().position(|c| c == call).expect(call);
    assert!(at("register h:web5:80") < at("deregister h:web5:80"));
    let held: Vec<&str> = g.held.keys().map(String::as_str).collect();
    assert_eq!(
        held,
        [
            "h:web0:80",
            "h:web1:80",
            "h:web2:80",
            "h:web3:80",
            "h:web4:80"
        ]
    );
}

#[test]
fn a_slow_registry_holds_up_no_event_and_each_entry_keeps_its_order() {
    let (mut w, tx, rx) = World::slow_with_lanes(Duration::from_millis(50));
    // The first call, on the worker (no lanes yet), finds the registry slow.
    w.start("c0", "web0", &[]);
    assert!(w.bridge.outbox.is_slow());
    assert!(w.bridge.lanes.is_some(), "lanes once the registry is slow");
    // Six starts, then the dies of the first (its registration in flight on a lane by then)
    // and of the last (its registration still waiting), queued as the event reader queues
    // them.
    for i in 1..=6 {
        w.create(&format!("c{i}"), &format!("web{i}"), &[], None);
        let id = format!("c{i}");
        tx.send(event(Action::Start, &id, None, Arrival::Live))
            .unwrap();
    }
    for id in ["c1", "c6"] {
        tx.send(event(Action::Die, id, Some(0), Arrival::Live))
            .unwrap();
    }
    tx.send(Msg::Shutdown).unwrap();
    w.bridge.run(rx);
    let g = w.reg.0.lock().unwrap();
    // A worker that waited for each call would begin the k-th registration after k inspects.
    // It went on with the events instead: by the time a lane was free for a third one, every
    // container had been inspected (c0 and the six).
    assert_eq!(g.inspects_at_register.len(), 6, "{:?}", g.calls);
    assert_eq!(g.inspects_at_register[3], 7, "{:?}", g.inspects_at_register);
    assert_eq!(g.max_in_flight, LANES, "calls overlapped");
    // The die of c1, made behind the registration in flight; that of c6 undid a registration
    // that had not gone out: no call at all.
    let at = |call: &str| g.calls.iter().position(|c| c == call).expect(call);
    assert!(at("register h:web1:80") < at("deregister h:web1:80"));
    assert!(!g.calls.iter().any(|c| c.contains("web6")), "{:?}", g.calls);
    let held: Vec<&str> = g.held.keys().map(String::as_str).collect();
    assert_eq!(
        held,
        [
            "h:web0:80",
            "h:web2:80",
            "h:web3:80",
            "h:web4:80",
            "h:web5:80"
        ]
    );
}

#[test]
fn a_lane_that_finished_wakes_the_worker_which_hands_on_what_waits() {
    let (mut w, tx, rx) = World::slow_with_lanes(Duration::from_millis(20));
    drop(tx);
    w.start("c0", "web0", &[]);
    assert!(w.bridge.lanes.is_some(), "lanes once the registry is slow");
    // Two changes go to the lanes at once; the third waits, and the worker returns at once.
    for i in 1..=3 {
        w.start(&format!("c{i}"), &format!("web{i}"), &[]);
    }
    assert_eq!(w.bridge.waiting.len(), 1, "the third waits for a lane");
    // The worker, asleep on its input, is woken by the first lane that finishes, settles it
    // and hands that lane the change that waited.
    let m = rx
        .recv_timeout(Duration::from_secs(5))
        .expect("a lane's wake-up");
    assert!(matches!(m, Msg::Lanes));
    assert!(w.handle(m));
    assert!(w.bridge.waiting.is_empty(), "handed on");
    w.bridge.idle();
    assert_eq!(w.ids().len(), 4);
    // One wake-up until the worker collects, not one per call.
    assert!(rx.try_iter().count() <= 2);
}

#[test]
fn a_registry_down_during_a_sync_on_lanes_holds_the_rest_and_converges() {
    let mut w = World::new(Deregister::Always);
    w.reg.0.lock().unwrap().lanes = true;
    for i in 0..8 {
        w.create(&format!("c{i}"), &format!("web{i}"), &[], None);
    }
    w.down(true);
    assert!(w.handle(Msg::Sync));
    let calls = w.calls();
    let tried = calls.iter().filter(|c| c.starts_with("register")).count();
    assert!(
        (1..=LANES).contains(&tried),
        "only the calls in flight before the outage was known: {calls:?}"
    );
    assert!(w.bridge.outbox.is_down());
    assert_eq!(w.bridge.outbox.len(), 8, "every registration held");
    w.down(false);
    w.retry();
    assert_eq!(w.ids().len(), 8);
    assert!(w.bridge.outbox.is_empty());
}

#[test]
fn a_call_that_got_no_answer_starts_an_outage_without_waiting_for_a_ping() {
    let mut w = World::new(Deregister::Always);
    w.start("a", "a", &[]);
    w.calls();
    // A black hole: the call fails only when its timeout ends.
    w.reg.0.lock().unwrap().slow = Some((w.clock.clone(), super::outbox::NO_ANSWER));
    w.down(true);
    w.start("b", "b", &[]);
    assert_eq!(w.calls(), ["register h:b:80"], "no ping after it");
    assert!(w.bridge.outbox.is_down());
    // A quick failure (refused) is told from a registry down by a ping, as before.
    let mut w = World::new(Deregister::Always);
    w.down(true);
    w.start("b", "b", &[]);
    assert_eq!(w.calls(), ["register h:b:80", "ping"]);
}

#[test]
fn a_slow_registry_is_said_once_and_not_taken_for_a_failing_one() {
    let mut w = World::new(Deregister::Always);
    w.reg.0.lock().unwrap().slow = Some((w.clock.clone(), super::outbox::SLOW * 2));
    for i in 0..5 {
        w.start(&format!("c{i}"), &format!("web{i}"), &[]);
    }
    assert_eq!(w.ids().len(), 5, "slow calls still succeed");
    assert!(!w.bridge.outbox.is_down());
    assert!(w.bridge.outbox.is_slow(), "noted (and logged) once");
    w.reg.0.lock().unwrap().slow = None;
    // A quick answer right after a slow one does not make it prompt again (calls in flight
    // finish in any order); one a while after the last slow one does.
    w.start("c8", "web8", &[]);
    assert!(w.bridge.outbox.is_slow(), "one quick call among slow ones");
    w.later(super::outbox::PROMPT_AFTER);
    w.start("c9", "web9", &[]);
    assert!(!w.bridge.outbox.is_slow(), "quick again");
}
