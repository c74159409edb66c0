//! The worker: the one thread that owns what is registered and talks to the backend.
//!
//! It receives [`Msg`]s in the order the event reader saw them, so the events of one container
//! are applied in the engine's order. Timers (`-resync`) are deadlines in `recv_timeout`; with
//! none set the thread sleeps in `recv` and wakes only for work.

use std::collections::HashMap;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use crate::backend::Backend;
use crate::cli::Deregister;
use crate::docker::container::{id12, Container};
use crate::docker::events::{Action, Event};
use crate::docker::{self, Client};
use crate::service::{self, Service, Settings};

/// What the worker asks of the engine; [`Client`] in the daemon, a table in the tests.
pub trait Engine: Send {
    /// IDs of the running containers.
    fn running(&mut self) -> Result<Vec<String>, docker::Error>;
    /// A container by ID or name; `None` when the engine does not know it.
    fn inspect(&mut self, id: &str) -> Result<Option<Container>, docker::Error>;
}

impl Engine for Client {
    fn running(&mut self) -> Result<Vec<String>, docker::Error> {
        Client::running(self)
    }
    fn inspect(&mut self, id: &str) -> Result<Option<Container>, docker::Error> {
        Client::inspect(self, id)
    }
}

pub enum Msg {
    /// A container event, in stream order.
    Event(Event),
    /// (Re)connected to the engine: reconcile with a full sync.
    Sync,
    Shutdown,
}

pub struct Bridge {
    docker: Box<dyn Engine>,
    backend: Box<dyn Backend>,
    settings: Settings,
    deregister: Deregister,
    resync: Option<Duration>,
    /// `-ttl-refresh`, when `-ttl` is set.
    refresh: Option<Duration>,
    /// Container ID -> the services registered (or kept) for it.
    registered: HashMap<String, Vec<Service>>,
}

impl Bridge {
    pub fn new(
        docker: Box<dyn Engine>,
        backend: Box<dyn Backend>,
        settings: Settings,
        deregister: Deregister,
        resync: Option<Duration>,
        refresh: Option<Duration>,
    ) -> Bridge {
        Bridge {
            docker,
            backend,
            settings,
            deregister,
            resync,
            refresh,
            registered: HashMap::new(),
        }
    }

    /// Runs until `Shutdown` or until every sender is gone. The timers (`-resync`, and
    /// `-ttl-refresh`) start with the first message (the first sync) and fire even while
    /// messages keep coming.
    pub fn run(mut self, rx: Receiver<Msg>) {
        let mut next_resync: Option<Instant> = None;
        let mut next_refresh: Option<Instant> = None;
        let after = |d: Option<Duration>| d.and_then(|d| Instant::now().checked_add(d));
        loop {
            let now = Instant::now();
            if next_resync.is_some_and(|at| now >= at) {
                log::debug!("resync");
                self.sync(true);
                self.flush();
                next_resync = after(self.resync);
                continue;
            }
            if next_refresh.is_some_and(|at| now >= at) {
                if let Err(e) = self.backend.refresh() {
                    log::error!("{e}");
                }
                next_refresh = after(self.refresh);
                continue;
            }
            let msg = match [next_resync, next_refresh].into_iter().flatten().min() {
                Some(at) => match rx.recv_timeout(at.saturating_duration_since(now)) {
                    Ok(m) => m,
                    Err(RecvTimeoutError::Timeout) => continue,
                    Err(RecvTimeoutError::Disconnected) => break,
                },
                None => match rx.recv() {
                    Ok(m) => m,
                    Err(_) => break,
                },
            };
            if !self.handle(msg) {
                break;
            }
            if next_resync.is_none() {
                next_resync = after(self.resync);
            }
            if next_refresh.is_none() {
                next_refresh = after(self.refresh);
            }
        }
        self.backend.close();
    }

    /// Applies one message and flushes the backend; false on `Shutdown`.
    pub fn handle(&mut self, msg: Msg) -> bool {
        match msg {
            Msg::Event(ev) => self.event(ev),
            Msg::Sync => self.sync(false),
            Msg::Shutdown => return false,
        }
        self.flush();
        true
    }

    fn flush(&mut self) {
        if let Err(e) = self.backend.flush() {
            log::error!("{e}");
        }
    }

    fn event(&mut self, ev: Event) {
        log::debug!("event: {:?} {}", ev.action, id12(&ev.id));
        match ev.action {
            Action::Start => self.add(&ev.id, false),
            Action::Die => self.died(&ev.id, ev.exit_code),
            Action::Destroy => self.remove(&ev.id),
            Action::Other(_) => {}
        }
    }

    /// Inspects a container and registers its services (again), dropping any it no longer has.
    /// `quiet` (timer resyncs) keeps lines that would repeat every time at debug level.
    fn add(&mut self, id: &str, quiet: bool) {
        let c = match self.docker.inspect(id) {
            Ok(Some(c)) => c,
            Ok(None) => {
                log::debug!("{}: gone before it could be inspected", id12(id));
                self.remove(id);
                return;
            }
            Err(e) => {
                log::error!("docker: inspect {}: {e}", id12(id));
                return;
            }
        };
        if !c.state.running {
            // A replayed `start` of a container that has stopped since: its `die` follows.
            log::debug!("{}: not running", id12(id));
            return;
        }
        self.register(&c, quiet);
    }

    fn register(&mut self, c: &Container, quiet: bool) {
        let peer_ip = self.peer_ip(c);
        let (services, ignored) = service::services(c, &self.settings, peer_ip.as_deref());
        for reason in ignored {
            if quiet {
                log::debug!("ignored: {reason}");
            } else {
                log::info!("ignored: {reason}");
            }
        }
        let old = self.registered.remove(&c.id).unwrap_or_default();
        let dropped: Vec<Service> = old
            .iter()
            .filter(|o| !services.iter().any(|n| n.id == o.id))
            .cloned()
            .collect();
        self.deregister(&c.id, &dropped);
        let id = id12(&c.id);
        for s in &services {
            let known = old.contains(s);
            match self.backend.register(s) {
                Ok(()) if known => log::debug!("refreshed: {id} {}", s.id),
                Ok(()) => log::info!("added: {id} {}", s.id),
                Err(e) => log::error!("register failed: {e}"),
            }
        }
        if !services.is_empty() {
            self.registered.insert(c.id.clone(), services);
        }
    }

    /// The IP of the container a `container:<x>` network mode points at.
    fn peer_ip(&mut self, c: &Container) -> Option<String> {
        let peer = c.host_config.network_mode.strip_prefix("container:")?;
        match self.docker.inspect(peer) {
            Ok(Some(p)) => p.ip(None).map(str::to_string),
            Ok(None) => {
                log::warn!("{}: network container {peer} not found", id12(&c.id));
                None
            }
            Err(e) => {
                log::warn!("docker: inspect network container {peer}: {e}");
                None
            }
        }
    }

    /// A container stopped with `exit_code`: deregister, unless `-deregister on-success` and it
    /// failed (1..=127), which keeps its services until it is gone.
    fn died(&mut self, id: &str, exit_code: Option<i64>) {
        if !self.registered.contains_key(id) {
            return;
        }
        if let Some(code) = exit_code.filter(|&c| self.keeps(c)) {
            log::info!(
                "kept: {} exited with code {code} (-deregister on-success)",
                id12(id)
            );
            return;
        }
        // A replayed `die` of a container that has been started again since: its `start`
        // follows in the stream, so removing now would only make the service flap.
        if let Ok(Some(c)) = self.docker.inspect(id) {
            if c.state.running {
                log::debug!("{}: running again; stale die ignored", id12(id));
                return;
            }
        }
        self.remove(id);
    }

    /// `-deregister on-success` keeps the services of a container that failed (1..=127).
    fn keeps(&self, exit_code: i64) -> bool {
        self.deregister == Deregister::OnSuccess && (1..=127).contains(&exit_code)
    }

    fn remove(&mut self, id: &str) {
        if let Some(services) = self.registered.remove(id) {
            self.deregister(id, &services);
        }
    }

    /// Deregisters services container `id` no longer has, except IDs another known container
    /// holds now (a recreated container with the same name, a shared `SERVICE_ID`).
    fn deregister(&mut self, id: &str, services: &[Service]) {
        for s in services {
            let taken = self
                .registered
                .iter()
                .any(|(other, list)| other != id && list.iter().any(|o| o.id == s.id));
            if taken {
                log::debug!(
                    "{}: {} now belongs to another container; left in place",
                    id12(id),
                    s.id
                );
                continue;
            }
            match self.backend.deregister(s) {
                Ok(()) => log::info!("removed: {} {}", id12(id), s.id),
                Err(e) => log::error!("deregister failed: {e}"),
            }
        }
    }

    /// Registers every running container again and settles the ones known here that are not
    /// running any more (as their `die` would have).
    fn sync(&mut self, quiet: bool) {
        let running = match self.docker.running() {
            Ok(r) => r,
            Err(e) => {
                log::error!("docker: list containers: {e}");
                return;
            }
        };
        log::debug!("sync: {} running containers", running.len());
        for id in &running {
            self.add(id, quiet);
        }
        let stale: Vec<String> = self
            .registered
            .keys()
            .filter(|id| !running.contains(id))
            .cloned()
            .collect();
        for id in stale {
            match self.docker.inspect(&id) {
                Ok(None) => self.remove(&id),
                Ok(Some(c)) if c.state.running => self.register(&c, quiet),
                // Not running: settled as its `die` would have been (quietly: it repeats).
                Ok(Some(c)) if self.keeps(c.state.exit_code) => {}
                Ok(Some(_)) => self.remove(&id),
                Err(e) => log::error!("docker: inspect {}: {e}", id12(&id)),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend;
    use std::collections::BTreeMap;
    use std::sync::{Arc, Mutex};

    /// Containers by ID, as the engine would report them.
    #[derive(Default)]
    struct FakeEngine(Arc<Mutex<BTreeMap<String, Container>>>);

    impl Engine for FakeEngine {
        fn running(&mut self) -> Result<Vec<String>, docker::Error> {
            let all = self.0.lock().unwrap();
            Ok(all
                .values()
                .filter(|c| c.state.running)
                .map(|c| c.id.clone())
                .collect())
        }
        fn inspect(&mut self, id: &str) -> Result<Option<Container>, docker::Error> {
            Ok(self.0.lock().unwrap().get(id).cloned())
        }
    }

    /// Service ID -> container ID of what is registered, and every call made.
    type Calls = (BTreeMap<String, String>, Vec<String>);
    #[derive(Default, Clone)]
    struct Recorder(Arc<Mutex<Calls>>);

    impl backend::Backend for Recorder {
        fn ping(&mut self) -> Result<(), backend::Error> {
            Ok(())
        }
        fn register(&mut self, s: &Service) -> Result<(), backend::Error> {
            let mut g = self.0.lock().unwrap();
            g.0.insert(s.id.clone(), s.container_id.clone());
            g.1.push(format!("register {}", s.id));
            Ok(())
        }
        fn deregister(&mut self, s: &Service) -> Result<(), backend::Error> {
            let mut g = self.0.lock().unwrap();
            g.0.remove(&s.id);
            g.1.push(format!("deregister {}", s.id));
            Ok(())
        }
        fn list(&mut self) -> Result<Vec<Service>, backend::Error> {
            let g = self.0.lock().unwrap();
            Ok(g.0
                .keys()
                .map(|id| Service {
                    id: id.clone(),
                    ..Service::default()
                })
                .collect())
        }
    }

    struct World {
        engine: Arc<Mutex<BTreeMap<String, Container>>>,
        reg: Recorder,
        bridge: Bridge,
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
            let bridge = Bridge::new(
                Box::new(FakeEngine(engine.clone())),
                Box::new(reg.clone()),
                settings,
                mode,
                None,
                None,
            );
            World {
                engine,
                reg,
                bridge,
            }
        }

        /// Starts (or restarts) container `id` named `name` publishing port 80 and tells the
        /// worker, as the engine's `start` event would.
        fn start(&mut self, id: &str, name: &str, env: &[&str]) {
            let j = serde_json::json!({
                "Id": id, "Name": format!("/{name}"),
                "State": {"Running": true, "ExitCode": 0},
                "Config": {"Image": "img", "Env": env, "ExposedPorts": {"80/tcp": {}}},
                "NetworkSettings": {"Ports": {"80/tcp": [{"HostIp": "127.0.0.1", "HostPort": "8080"}]}}
            });
            self.engine
                .lock()
                .unwrap()
                .insert(id.into(), serde_json::from_value(j).unwrap());
            self.event(Action::Start, id, None);
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

        fn event(&mut self, action: Action, id: &str, exit_code: Option<i64>) {
            let ev = Event {
                action,
                id: id.into(),
                time_nano: 1,
                exit_code,
            };
            assert!(self.bridge.handle(Msg::Event(ev)));
        }

        fn ids(&self) -> Vec<String> {
            self.reg.0.lock().unwrap().0.keys().cloned().collect()
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
        w.event(Action::Die, "c1", Some(0));
        assert_eq!(w.ids(), ["h:web:80"]);
    }

    #[test]
    fn a_service_id_taken_over_is_not_removed_by_its_old_owner() {
        let mut w = World::new(Deregister::OnSuccess);
        w.start("old", "web", &[]);
        w.exit("old", 1); // kept
        w.start("new", "web", &[]); // recreated under the same name: same service ID
        w.destroy("old");
        assert_eq!(w.ids(), ["h:web:80"], "the new container's service stays");
        assert_eq!(w.reg.0.lock().unwrap().0["h:web:80"], "new");
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
        assert!(w.bridge.handle(Msg::Sync));
        assert_eq!(w.ids(), ["h:failed:80", "h:new:80", "h:stays:80"]);
        // A second sync changes nothing.
        let calls = w.reg.0.lock().unwrap().1.len();
        assert!(w.bridge.handle(Msg::Sync));
        let g = w.reg.0.lock().unwrap();
        assert!(
            g.1[calls..].iter().all(|c| c.starts_with("register")),
            "{:?}",
            &g.1[calls..]
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
        assert!(!w.bridge.handle(Msg::Shutdown));
    }
}
