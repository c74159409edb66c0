//! The worker's unit tests: a table engine and a recording registry, time moved by hand (this
//! file); what the worker makes of containers and events (`containers.rs`); delivery to a
//! registry that fails, is slow, or takes calls on lanes (`delivery.rs`).

mod containers;
mod delivery;
mod swarm;

use super::health::REPORT_EVERY;
use super::lanes::LANES;
use super::outbox::{RETRY_MAX, RETRY_MIN, SLOW};
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
    /// The engine's inspect count, read as each registration begins.
    inspected: Option<Arc<AtomicUsize>>,
    inspects_at_register: Vec<usize>,
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
            if let Some(n) = g.inspected.as_ref().map(|n| n.load(Ordering::SeqCst)) {
                g.inspects_at_register.push(n);
            }
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

/// An event of container `id`, as the event reader hands it to the worker.
fn event(action: Action, id: &str, exit_code: Option<i64>, arrival: Arrival) -> Msg {
    let ev = Event {
        kind: Kind::Container,
        action,
        id: id.into(),
        time_nano: 1,
        exit_code,
    };
    Msg::Event(ev, arrival)
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

    /// A registry with lanes whose registrations take 1.5 s on the worker's clock (slow) and
    /// `nap` for real, with the engine's inspects counted at each; the worker is told on the
    /// channel returned when a lane finished.
    fn slow_with_lanes(nap: Duration) -> (World, std::sync::mpsc::Sender<Msg>, Receiver<Msg>) {
        let mut w = World::new(Deregister::Always);
        let (tx, rx) = std::sync::mpsc::channel();
        w.bridge.wake = Some(tx.clone());
        {
            let mut g = w.reg.0.lock().unwrap();
            g.lanes = true;
            g.slow = Some((w.clock.clone(), SLOW + SLOW / 2));
            g.nap = Some(nap);
            g.inspected = Some(w.inspected.clone());
        }
        (w, tx, rx)
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
        assert!(self.handle(event(action, id, exit_code, arrival)));
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
