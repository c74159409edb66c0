//! The worker's unit tests: a table engine and a recording registry, time moved by hand.

use super::health::REPORT_EVERY;
use super::lanes::{Lanes, LANES};
use super::outbox::{Op, Outbox, RETRY_MAX, RETRY_MIN};
use super::*;
use crate::backend;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// Containers by ID, as the engine would report them; inspects are counted.
#[derive(Default)]
struct FakeEngine(Arc<Mutex<BTreeMap<String, Container>>>, Arc<AtomicUsize>);

impl Engine for FakeEngine {
    fn running(&mut self) -> Result<Vec<String>, docker::Error> {
        let all = self.0.lock().unwrap();
        Ok(all
            .values()
            .filter(|c| c.state.running)
            .map(|c| c.id.clone())
            .collect())
    }
    /// By ID or by name, as the engine does.
    fn inspect(&mut self, id: &str) -> Result<Option<Container>, docker::Error> {
        self.1.fetch_add(1, Ordering::SeqCst);
        let all = self.0.lock().unwrap();
        Ok(all
            .get(id)
            .or_else(|| all.values().find(|c| c.short_name() == id))
            .cloned())
    }
}

/// What is registered (service ID -> container ID), every call made, and a switch that
/// makes the registry unreachable.
#[derive(Default)]
struct Reg {
    held: BTreeMap<String, String>,
    calls: Vec<String>,
    down: bool,
    /// Entries keyed by name and ID, as the key-value stores key them.
    by_name: bool,
    /// Keys whose registration is refused (an HTTP 400) while the registry is up.
    refuse: Vec<String>,
    /// A registration takes this long on the worker's clock (a slow registry).
    slow: Option<(Hand, Duration)>,
    /// Offers lanes (a handle per thread, as Consul does).
    lanes: bool,
    /// A registration takes this long for real (calls on lanes overlap).
    nap: Option<Duration>,
    in_flight: usize,
    max_in_flight: usize,
}
#[derive(Default, Clone)]
struct Recorder(Arc<Mutex<Reg>>);

fn down() -> backend::Error {
    backend::Error("connection refused".into())
}

impl backend::Backend for Recorder {
    fn ping(&mut self) -> Result<(), backend::Error> {
        let mut g = self.0.lock().unwrap();
        g.calls.push("ping".into());
        if g.down {
            return Err(down());
        }
        Ok(())
    }
    fn register(&mut self, s: &Service) -> Result<(), backend::Error> {
        let key = self.key(s);
        let nap = {
            let mut g = self.0.lock().unwrap();
            g.in_flight += 1;
            g.max_in_flight = g.max_in_flight.max(g.in_flight);
            g.nap
        };
        if let Some(d) = nap {
            std::thread::sleep(d);
        }
        let mut g = self.0.lock().unwrap();
        g.in_flight -= 1;
        g.calls.push(format!("register {key}"));
        if let Some((clock, took)) = &g.slow {
            *clock.0.lock().unwrap() += *took;
        }
        if g.down {
            return Err(down());
        }
        if g.refuse.contains(&key) {
            return Err(backend::Error("HTTP 400: refused".into()));
        }
        g.held.insert(key, s.container_id.clone());
        Ok(())
    }
    fn deregister(&mut self, s: &Service) -> Result<(), backend::Error> {
        let key = self.key(s);
        let mut g = self.0.lock().unwrap();
        g.calls.push(format!("deregister {key}"));
        if g.down {
            return Err(down());
        }
        g.held.remove(&key);
        Ok(())
    }
    fn key(&self, s: &Service) -> String {
        if self.0.lock().unwrap().by_name {
            format!("{}/{}", s.name, s.id)
        } else {
            s.id.clone()
        }
    }
    fn has_checks(&self) -> bool {
        true
    }
    fn lane(&self) -> Option<Box<dyn backend::Backend>> {
        let lanes = self.0.lock().unwrap().lanes;
        lanes.then(|| Box::new(self.clone()) as Box<dyn backend::Backend>)
    }
    fn check(&mut self, s: &Service, h: Health) -> Result<(), backend::Error> {
        let mut g = self.0.lock().unwrap();
        g.calls.push(format!("check {} {}", s.id, h.name()));
        // An agent that lost the service has no check for it either.
        if !g.held.contains_key(&s.id) {
            return Err(backend::Error("unknown check".into()));
        }
        Ok(())
    }
    fn list(&mut self) -> Result<Vec<Service>, backend::Error> {
        let g = self.0.lock().unwrap();
        if g.down {
            return Err(down());
        }
        Ok(g.held
            .keys()
            .map(|id| Service {
                id: id.clone(),
                ..Service::default()
            })
            .collect())
    }
}

/// A clock that moves only when the test says so.
#[derive(Clone)]
struct Hand(Arc<Mutex<Instant>>);

impl Clock for Hand {
    fn now(&self) -> Instant {
        *self.0.lock().unwrap()
    }
}

struct World {
    engine: Arc<Mutex<BTreeMap<String, Container>>>,
    inspected: Arc<AtomicUsize>,
    reg: Recorder,
    bridge: Bridge,
    /// The worker's clock: it moves only by [`World::later`].
    clock: Hand,
}

impl World {
    fn new(mode: Deregister) -> World {
        let engine = Arc::new(Mutex::new(BTreeMap::new()));
        let reg = Recorder::default();
        let settings = Settings {
            hostname: "h".into(),
            ip: Some("127.0.0.1".into()),
            ..Settings::default()
        };
        let opts = Options {
            deregister: mode,
            ..Options::default()
        };
        let inspected = Arc::new(AtomicUsize::new(0));
        let clock = Hand(Arc::new(Mutex::new(Instant::now())));
        let bridge = Bridge::new(
            Box::new(FakeEngine(engine.clone(), inspected.clone())),
            Box::new(reg.clone()),
            settings,
            opts,
        )
        .with_clock(Box::new(clock.clone()));
        World {
            engine,
            inspected,
            reg,
            bridge,
            clock,
        }
    }

    /// Starts (or restarts) container `id` named `name` publishing port 80 and tells the
    /// worker, as the engine's `start` event would.
    fn start(&mut self, id: &str, name: &str, env: &[&str]) {
        self.create(id, name, env, None);
        self.event(Action::Start, id, None);
    }

    /// A running container as the engine has it, without telling the worker; `health` is
    /// its HEALTHCHECK status if it has one.
    fn create(&mut self, id: &str, name: &str, env: &[&str], health: Option<&str>) {
        let mut state = serde_json::json!({"Running": true, "ExitCode": 0});
        if let Some(h) = health {
            state["Health"] = serde_json::json!({"Status": h});
        }
        let j = serde_json::json!({
            "Id": id, "Name": format!("/{name}"),
            "State": state,
            "Config": {"Image": "img", "Env": env, "ExposedPorts": {"80/tcp": {}}},
            "NetworkSettings": {"Ports": {"80/tcp": [{"HostIp": "127.0.0.1", "HostPort": "8080"}]}}
        });
        self.engine
            .lock()
            .unwrap()
            .insert(id.into(), serde_json::from_value(j).unwrap());
    }

    fn with(opts: Options) -> World {
        let mut w = World::new(opts.deregister);
        w.bridge.opts = opts;
        w
    }

    fn state(&mut self, id: &str, f: impl FnOnce(&mut crate::docker::container::State)) {
        f(&mut self.engine.lock().unwrap().get_mut(id).unwrap().state);
    }

    fn health(&mut self, id: &str, h: &str) {
        self.state(id, |s| s.health.as_mut().unwrap().status = h.into());
        self.event(Action::Health(Health::parse(h)), id, None);
    }

    fn down(&self, down: bool) {
        self.reg.0.lock().unwrap().down = down;
    }

    fn calls(&self) -> Vec<String> {
        std::mem::take(&mut self.reg.0.lock().unwrap().calls)
    }

    /// Time passes: `d` later, the worker runs the timers that are due.
    fn later(&mut self, d: Duration) {
        *self.clock.0.lock().unwrap() += d;
        self.bridge.tick();
    }

    /// Long enough for every retry and ping to be due.
    fn retry(&mut self) {
        self.later(RETRY_MAX);
    }

    fn handle(&mut self, msg: Msg) -> bool {
        self.bridge.handle(msg)
    }

    fn exit(&mut self, id: &str, code: i64) {
        if let Some(c) = self.engine.lock().unwrap().get_mut(id) {
            c.state.running = false;
            c.state.exit_code = code;
        }
        self.event(Action::Die, id, Some(code));
    }

    fn destroy(&mut self, id: &str) {
        self.engine.lock().unwrap().remove(id);
        self.event(Action::Destroy, id, None);
    }

    /// A live event (stamped after the subscription).
    fn event(&mut self, action: Action, id: &str, exit_code: Option<i64>) {
        self.arrive(action, id, exit_code, Arrival::Live);
    }

    fn arrive(&mut self, action: Action, id: &str, exit_code: Option<i64>, arrival: Arrival) {
        let ev = Event {
            action,
            id: id.into(),
            time_nano: 1,
            exit_code,
        };
        assert!(self.handle(Msg::Event(ev, arrival)));
    }

    fn now(&self) -> Instant {
        self.clock.now()
    }

    /// Inspects made so far.
    fn inspects(&self) -> usize {
        self.inspected.load(Ordering::SeqCst)
    }

    fn ids(&self) -> Vec<String> {
        self.reg.0.lock().unwrap().held.keys().cloned().collect()
    }
}

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
    let die = Event {
        action: Action::Die,
        id: "c5".into(),
        time_nano: 1,
        exit_code: Some(0),
    };
    tx.send(Msg::Event(die, Arrival::Live)).unwrap();
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
fn a_second_change_to_an_entry_waits_for_the_one_in_flight() {
    let reg = Recorder::default();
    {
        let mut g = reg.0.lock().unwrap();
        g.lanes = true;
        g.nap = Some(Duration::from_millis(30));
    }
    let mut lanes = Lanes::start(&reg, 2).unwrap();
    let mut outbox = Outbox::default();
    let clock = SystemClock;
    let svc = |id: &str| Service {
        id: id.into(),
        ..Service::default()
    };
    for id in ["a", "b"] {
        let op = Op::Register {
            service: svc(id),
            known: false,
        };
        assert!(lanes.wait_for(id).is_empty(), "two lanes: none waited");
        let ready = outbox.admit(id.into(), op, &clock).unwrap();
        assert!(lanes.submit(ready).is_none());
    }
    // What the worker does before a change to "a": wait for the one in flight.
    let done = lanes.wait_for("a");
    assert!(done.iter().any(|d| d.change.key() == "a"));
    assert_eq!(
        reg.0.lock().unwrap().held.get("a").map(String::as_str),
        Some("")
    );
    let rest = lanes.wait_all();
    assert_eq!(done.len() + rest.len(), 2);
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
    w.start("c9", "web9", &[]);
    assert!(!w.bridge.outbox.is_slow(), "quick again");
}
