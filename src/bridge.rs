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
use crate::docker::Client;
use crate::service::{self, Service, Settings};

pub enum Msg {
    /// A container event, in stream order.
    Event(Event),
    /// (Re)connected to the engine: reconcile with a full sync.
    Sync,
    Shutdown,
}

pub struct Bridge {
    docker: Client,
    backend: Box<dyn Backend>,
    settings: Settings,
    deregister: Deregister,
    resync: Option<Duration>,
    /// Container ID -> the services registered (or kept) for it.
    registered: HashMap<String, Vec<Service>>,
}

impl Bridge {
    pub fn new(
        docker: Client,
        backend: Box<dyn Backend>,
        settings: Settings,
        deregister: Deregister,
        resync: Option<Duration>,
    ) -> Bridge {
        Bridge {
            docker,
            backend,
            settings,
            deregister,
            resync,
            registered: HashMap::new(),
        }
    }

    /// Runs until `Shutdown` or until every sender is gone.
    pub fn run(mut self, rx: Receiver<Msg>) {
        let mut next_resync: Option<Instant> = None;
        loop {
            let msg = match next_resync {
                Some(at) => match rx.recv_timeout(at.saturating_duration_since(Instant::now())) {
                    Ok(m) => m,
                    Err(RecvTimeoutError::Timeout) => {
                        log::debug!("resync");
                        self.sync();
                        self.flush();
                        next_resync = self.resync.map(|d| Instant::now() + d);
                        continue;
                    }
                    Err(RecvTimeoutError::Disconnected) => return,
                },
                None => match rx.recv() {
                    Ok(m) => m,
                    Err(_) => return,
                },
            };
            match msg {
                Msg::Event(ev) => self.event(ev),
                Msg::Sync => {
                    self.sync();
                    if next_resync.is_none() {
                        next_resync = self.resync.map(|d| Instant::now() + d);
                    }
                }
                Msg::Shutdown => return,
            }
            self.flush();
        }
    }

    fn flush(&mut self) {
        if let Err(e) = self.backend.flush() {
            log::error!("{e}");
        }
    }

    fn event(&mut self, ev: Event) {
        log::debug!("event: {:?} {}", ev.action, id12(&ev.id));
        match ev.action {
            Action::Start => self.add(&ev.id),
            Action::Die => self.died(&ev.id, ev.exit_code),
            Action::Destroy => self.remove(&ev.id),
            Action::Other(_) => {}
        }
    }

    /// Inspects a container and registers its services (again), dropping any it no longer has.
    fn add(&mut self, id: &str) {
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
        self.register(&c);
    }

    fn register(&mut self, c: &Container) {
        let peer_ip = self.peer_ip(c);
        let (services, ignored) = service::services(c, &self.settings, peer_ip.as_deref());
        for reason in ignored {
            log::info!("ignored: {reason}");
        }
        let id = id12(&c.id);
        let old = self.registered.remove(&c.id).unwrap_or_default();
        for s in old
            .iter()
            .filter(|o| !services.iter().any(|n| n.id == o.id))
        {
            match self.backend.deregister(s) {
                Ok(()) => log::info!("removed: {id} {}", s.id),
                Err(e) => log::error!("deregister failed: {e}"),
            }
        }
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
        if self.deregister == Deregister::OnSuccess {
            if let Some(code @ 1..=127) = exit_code {
                if self.registered.contains_key(id) {
                    log::info!(
                        "kept: {} exited with code {code} (-deregister on-success)",
                        id12(id)
                    );
                }
                return;
            }
        }
        if !self.registered.contains_key(id) {
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

    fn remove(&mut self, id: &str) {
        let Some(services) = self.registered.remove(id) else {
            return;
        };
        let id = id12(id);
        for s in &services {
            match self.backend.deregister(s) {
                Ok(()) => log::info!("removed: {id} {}", s.id),
                Err(e) => log::error!("deregister failed: {e}"),
            }
        }
    }

    /// Registers every running container again and settles the ones known here that are not
    /// running any more (as their `die` would have).
    fn sync(&mut self) {
        let running = match self.docker.running() {
            Ok(r) => r,
            Err(e) => {
                log::error!("docker: list containers: {e}");
                return;
            }
        };
        log::debug!("sync: {} running containers", running.len());
        for id in &running {
            self.add(id);
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
                Ok(Some(c)) if c.state.running => self.register(&c),
                Ok(Some(c)) => self.died(&id, Some(c.state.exit_code)),
                Err(e) => log::error!("docker: inspect {}: {e}", id12(&id)),
            }
        }
    }
}
