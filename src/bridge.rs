//! The worker: the one thread that owns what is registered and talks to the backend.
//!
//! It receives [`Msg`]s in the order the event reader saw them, so the events of one container
//! are applied in the engine's order. Timers (`-resync`) are deadlines in `recv_timeout`; with
//! none set the thread sleeps in `recv` and wakes only for work.

use std::collections::{HashMap, HashSet};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use crate::backend::Backend;
use crate::cli::Deregister;
use crate::docker::container::{id12, Container};
use crate::docker::events::{Action, Event, Health};
use crate::docker::{self, Client};
use crate::service::{self, Service, Settings};

/// What the worker asks of the engine; [`Client`] in the daemon, a table in the tests.
pub trait Engine: Send {
    /// IDs of the running containers.
    fn running(&mut self) -> Result<Vec<String>, docker::Error>;
    /// A container by ID or name; `None` when the engine does not know it.
    fn inspect(&mut self, id: &str) -> Result<Option<Container>, docker::Error>;
    /// Asks now for an inspect that follows soon, so that the engine works on it meanwhile.
    fn inspect_ahead(&mut self, _id: &str) {}
}

impl Engine for Client {
    fn running(&mut self) -> Result<Vec<String>, docker::Error> {
        Client::running(self)
    }
    fn inspect(&mut self, id: &str) -> Result<Option<Container>, docker::Error> {
        Client::inspect(self, id)
    }
    fn inspect_ahead(&mut self, id: &str) {
        Client::inspect_ahead(self, id)
    }
}

pub enum Msg {
    /// A container event, in stream order.
    Event(Event),
    /// (Re)connected to the engine: reconcile with a full sync.
    Sync,
    Shutdown,
}

/// What the command line asks of the worker.
#[derive(Debug, Clone, Default)]
pub struct Options {
    pub deregister: Deregister,
    /// `-resync`.
    pub resync: Option<Duration>,
    /// `-ttl-refresh`, when `-ttl` is set.
    pub refresh: Option<Duration>,
    /// `-cleanup`.
    pub cleanup: bool,
    /// `-require-healthy`.
    pub require_healthy: bool,
    /// `-deregister-on-shutdown`.
    pub deregister_on_shutdown: bool,
}

/// First pause before a failed registry call is tried again; it doubles per failure.
const RETRY_MIN: Duration = Duration::from_millis(250);
/// Longest pause between two tries of one failed call (a registry that refuses one service).
const RETRY_MAX: Duration = Duration::from_secs(60);
/// Longest pause between two pings of a registry that is unreachable: how late at most the
/// daemon notices that it is back.
const OUTAGE_PING_MAX: Duration = Duration::from_secs(5);
/// How often the Docker health of services with `SERVICE_CHECK_DOCKER` is reported again (the
/// Consul check's TTL is three times this: see `backend::consul::DOCKER_CHECK_TTL`).
pub const CHECK_REPORT_EVERY: Duration = Duration::from_secs(20);

/// One change to the registry.
#[derive(Debug, Clone)]
enum Op {
    /// `known`: registered before with the same content (logged at debug only).
    Register {
        service: Service,
        known: bool,
    },
    Deregister(Service),
}

impl Op {
    /// The same change (whatever was logged about it).
    fn same(&self, other: &Op) -> bool {
        match (self, other) {
            (Op::Register { service: a, .. }, Op::Register { service: b, .. }) => a == b,
            (Op::Deregister(a), Op::Deregister(b)) => a == b,
            _ => false,
        }
    }

    fn service(&self) -> &Service {
        match self {
            Op::Register { service, .. } | Op::Deregister(service) => service,
        }
    }
}

/// A change that failed (or was held back while the registry was unreachable): the latest
/// wanted state of one service, tried again at `due`.
#[derive(Debug)]
struct Pending {
    op: Op,
    /// Failed tries so far.
    tries: u32,
    due: Instant,
}

/// Pending changes by registry entry: a plain list, searched linearly. It is empty but during
/// failures and holds at most one entry per service then (tens to hundreds on a board), and a
/// map type of its own would cost the binary more than the searches cost the CPU.
#[derive(Debug, Default)]
struct Pendings(Vec<(String, Pending)>);

impl Pendings {
    fn position(&self, key: &str) -> Option<usize> {
        self.0.iter().position(|(k, _)| k == key)
    }
    fn get(&self, key: &str) -> Option<&Pending> {
        self.position(key).map(|i| &self.0[i].1)
    }
    fn contains_key(&self, key: &str) -> bool {
        self.position(key).is_some()
    }
    fn remove(&mut self, key: &str) -> Option<Pending> {
        self.position(key).map(|i| self.0.remove(i).1)
    }
    /// Replaces any entry for `key`; a new one goes last.
    fn insert(&mut self, key: String, p: Pending) {
        match self.position(&key) {
            Some(i) => self.0[i].1 = p,
            None => self.0.push((key, p)),
        }
    }
    fn len(&self) -> usize {
        self.0.len()
    }
    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    fn values(&self) -> impl Iterator<Item = &Pending> {
        self.0.iter().map(|(_, p)| p)
    }
}

#[cfg(test)]
impl std::ops::Index<&str> for Pendings {
    type Output = Pending;
    fn index(&self, key: &str) -> &Pending {
        self.get(key).expect("pending entry")
    }
}

/// Capped doubling.
#[derive(Debug, Clone, Copy)]
struct Backoff {
    delay: Duration,
    due: Instant,
}

impl Backoff {
    fn start(now: Instant) -> Backoff {
        Backoff {
            delay: RETRY_MIN,
            due: now + RETRY_MIN,
        }
    }
    fn again(&mut self, now: Instant, max: Duration) {
        self.delay = (self.delay * 2).min(max);
        self.due = now + self.delay;
    }
}

/// The pause after `tries` failures of one call.
fn backoff(tries: u32) -> Duration {
    RETRY_MIN
        .saturating_mul(1 << tries.saturating_sub(1).min(16))
        .min(RETRY_MAX)
}

/// The registry did not answer: every change waits (in `pending`) until a ping succeeds.
#[derive(Debug)]
struct Outage {
    since: Instant,
    ping: Backoff,
}

pub struct Bridge {
    docker: Box<dyn Engine>,
    backend: Box<dyn Backend>,
    settings: Settings,
    opts: Options,
    /// Container ID -> the services wanted in the registry for it (registered, or pending).
    registered: HashMap<String, Vec<Service>>,
    /// Container ID -> why its services are held back (paused, not healthy), so that the line
    /// is logged when that changes, not on every health event (Podman sends one per check).
    held: HashMap<String, String>,
    /// Container ID -> its Docker health, for containers whose services carry a Consul check
    /// that mirrors it (`SERVICE_CHECK_DOCKER`).
    checked: HashMap<String, Health>,
    /// Registry entry ([`Backend::key`]) -> the change still to make. One entry per service,
    /// whatever happened to it meanwhile.
    pending: Pendings,
    /// Registry entries this daemon registered (or tried to) and has not removed since: what
    /// a deregister must reach. A held registration of an entry not in here was never sent.
    in_registry: HashSet<String>,
    /// `-cleanup` could not run at the last sync (registry down, listing or inspect failed):
    /// it runs at the next sync, or when the registry is back.
    cleanup_due: bool,
    outage: Option<Outage>,
    /// The backend's last flush failed (the file could not be written): tried again.
    unflushed: Option<Backoff>,
}

impl Bridge {
    pub fn new(
        docker: Box<dyn Engine>,
        backend: Box<dyn Backend>,
        settings: Settings,
        opts: Options,
    ) -> Bridge {
        Bridge {
            docker,
            backend,
            settings,
            opts,
            registered: HashMap::new(),
            held: HashMap::new(),
            checked: HashMap::new(),
            pending: Pendings::default(),
            in_registry: HashSet::new(),
            cleanup_due: false,
            outage: None,
            unflushed: None,
        }
    }

    /// Runs until `Shutdown` or until every sender is gone. The timers (`-resync`,
    /// `-ttl-refresh`) start with the first message (the first sync) and fire even while
    /// messages keep coming; retries of failed registry calls and Docker health reports are
    /// deadlines only while there is such work. With none of them the thread sleeps in `recv`.
    pub fn run(mut self, rx: Receiver<Msg>) {
        let mut next_resync: Option<Instant> = None;
        let mut next_refresh: Option<Instant> = None;
        let mut next_report: Option<Instant> = None;
        let after = |d: Option<Duration>| d.and_then(|d| Instant::now().checked_add(d));
        loop {
            let now = Instant::now();
            if next_resync.is_some_and(|at| now >= at) {
                log::debug!("resync");
                self.sync(true);
                self.flush();
                next_resync = after(self.opts.resync);
                continue;
            }
            if next_refresh.is_some_and(|at| now >= at) {
                self.refresh();
                next_refresh = after(self.opts.refresh);
                continue;
            }
            if next_report.is_some_and(|at| now >= at) {
                self.report_all();
                next_report = None;
            }
            if self.retry_at().is_some_and(|at| now >= at) {
                self.retry();
                self.flush();
                continue;
            }
            if next_report.is_none() && !self.checked.is_empty() {
                next_report = after(Some(CHECK_REPORT_EVERY));
            }
            let deadline = [next_resync, next_refresh, next_report, self.retry_at()]
                .into_iter()
                .flatten()
                .min();
            let msg = match deadline {
                Some(at) => match rx.recv_timeout(at.saturating_duration_since(now)) {
                    Ok(m) => m,
                    Err(RecvTimeoutError::Timeout) => continue,
                    Err(RecvTimeoutError::Disconnected) => Msg::Shutdown,
                },
                None => rx.recv().unwrap_or(Msg::Shutdown),
            };
            if !self.handle(msg) {
                break;
            }
            if next_resync.is_none() {
                next_resync = after(self.opts.resync);
            }
            if next_refresh.is_none() {
                next_refresh = after(self.opts.refresh);
            }
        }
        self.backend.close();
    }

    /// Applies one message and flushes the backend; false after `Shutdown`.
    pub fn handle(&mut self, msg: Msg) -> bool {
        match msg {
            Msg::Event(ev) => self.event(ev),
            Msg::Sync => self.sync(false),
            Msg::Shutdown => {
                self.shutdown();
                return false;
            }
        }
        self.flush();
        true
    }

    fn flush(&mut self) {
        match self.backend.flush() {
            Ok(()) => {
                if self.unflushed.take().is_some() {
                    log::info!("registry written again");
                }
            }
            Err(e) => {
                let now = Instant::now();
                match &mut self.unflushed {
                    Some(b) => {
                        log::debug!("{e}");
                        b.again(now, OUTAGE_PING_MAX);
                    }
                    None => {
                        log::error!("{e}; trying again with backoff");
                        self.unflushed = Some(Backoff::start(now));
                    }
                }
            }
        }
    }

    /// `-ttl-refresh`: keeps what is registered from expiring (not while the registry is
    /// known to be down: the retry after it comes back registers everything again).
    fn refresh(&mut self) {
        if self.outage.is_some() {
            return;
        }
        if let Err(e) = self.backend.refresh() {
            log::error!("{e}");
            self.probe();
        }
    }

    fn event(&mut self, ev: Event) {
        log::debug!("event: {:?} {}", ev.action, id12(&ev.id));
        match ev.action {
            Action::Start | Action::Unpause => self.add(&ev.id, false, false),
            Action::Die => self.died(&ev.id, ev.exit_code),
            Action::Destroy => self.remove(&ev.id),
            Action::Pause => {
                if self.registered.contains_key(&ev.id) {
                    log::info!("paused: {}; deregistering until unpaused", id12(&ev.id));
                    self.remove(&ev.id);
                }
            }
            // Inspect says what the health is now (events may be late): registered or not
            // under -require-healthy, and reported to a check that mirrors it.
            // Quiet: Podman sends one per check run, not only on changes.
            Action::Health(_) => {
                if self.opts.require_healthy || self.checked.contains_key(&ev.id) {
                    self.add(&ev.id, true, false);
                }
            }
            Action::Other(_) => {}
        }
    }

    /// Inspects a container and registers its services (again), dropping any it no longer has.
    /// `quiet` (timer resyncs) keeps lines that would repeat every time at debug level;
    /// `force` registers again even services registered before unchanged.
    fn add(&mut self, id: &str, quiet: bool, force: bool) {
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
        self.register(&c, quiet, force);
    }

    /// Why a running container gets no services now, if it does not.
    fn held_back(&self, c: &Container) -> Option<String> {
        if c.state.paused {
            return Some("paused".into());
        }
        match c.state.health() {
            Some(h) if self.opts.require_healthy && h != Health::Healthy => Some(format!(
                "not healthy ({}; -require-healthy)",
                health_name(h)
            )),
            _ => None,
        }
    }

    fn register(&mut self, c: &Container, quiet: bool, force: bool) {
        let log_ignored = |reason: &str| {
            if quiet {
                log::debug!("ignored: {reason}");
            } else {
                log::info!("ignored: {reason}");
            }
        };
        let mut services = match self.held_back(c) {
            Some(why) => {
                let line = format!("{} {why}", id12(&c.id));
                if self.held.get(&c.id) == Some(&why) {
                    log::debug!("ignored: {line}");
                } else {
                    log::info!("ignored: {line}");
                    self.held.insert(c.id.clone(), why);
                }
                Vec::new()
            }
            None => {
                self.held.remove(&c.id);
                let peer_ip = self.peer_ip(c);
                let (services, ignored) = service::services(c, &self.settings, peer_ip.as_deref());
                for reason in ignored {
                    log_ignored(&reason);
                }
                services
            }
        };
        let id = c.id.as_str();
        let health = c.state.health();
        // Only a registry with checks gets Docker's health (and only then the report timer).
        let mirrors = self.backend.has_checks();
        for s in services.iter_mut().filter(|s| mirrors && docker_check(s)) {
            if health.is_none() {
                if !quiet {
                    log::warn!(
                        "{}: {}: SERVICE_CHECK_DOCKER is set but the container has no HEALTHCHECK; no check added",
                        id12(id),
                        s.id
                    );
                }
                s.attrs.remove("check_docker");
            }
        }
        let before = match (health, mirrors && services.iter().any(docker_check)) {
            (Some(h), true) => self.checked.insert(id.to_string(), h),
            _ => self.checked.remove(id),
        };
        let old = self.registered.remove(id).unwrap_or_default();
        let dropped: Vec<Service> = old
            .iter()
            .filter(|o| !services.iter().any(|n| n.id == o.id))
            .cloned()
            .collect();
        self.deregister(id, &dropped);
        for s in &services {
            let known = old.contains(s);
            if known && !force && !self.pending.contains_key(&self.backend.key(s)) {
                // Registered already; only a changed health is news for its check.
                if let Some(h) = health.filter(|&h| mirrors && docker_check(s) && before != Some(h))
                {
                    self.report(s, h);
                }
                continue;
            }
            self.apply(Op::Register {
                service: s.clone(),
                known,
            });
        }
        if !services.is_empty() {
            self.registered.insert(id.to_string(), services);
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
        self.held.remove(id);
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
        self.opts.deregister == Deregister::OnSuccess && (1..=127).contains(&exit_code)
    }

    fn remove(&mut self, id: &str) {
        self.checked.remove(id);
        self.held.remove(id);
        if let Some(services) = self.registered.remove(id) {
            self.deregister(id, &services);
        }
    }

    /// Deregisters services container `id` no longer has, except IDs another known container
    /// holds now (a recreated container with the same name, a shared `SERVICE_ID`).
    fn deregister(&mut self, id: &str, services: &[Service]) {
        for s in services {
            let key = self.backend.key(s);
            let taken = self.registered.iter().any(|(other, list)| {
                other != id && list.iter().any(|o| self.backend.key(o) == key)
            });
            if taken {
                log::debug!(
                    "{}: {} now belongs to another container; left in place",
                    id12(id),
                    s.id
                );
                continue;
            }
            self.apply(Op::Deregister(s.clone()));
        }
    }

    /// Makes one change now, or holds it while the registry is unreachable. It replaces any
    /// change still pending for the same registry entry: only the latest wanted state is kept,
    /// and a held registration that never reached the registry and is no longer wanted goes
    /// without a trace, so pending work stays as small as the set of services. The same change
    /// again (a resync, a health event) keeps the pending one's backoff.
    fn apply(&mut self, op: Op) {
        let key = self.backend.key(op.service());
        if let Some(p) = self.pending.get(&key) {
            if p.op.same(&op) {
                return;
            }
        }
        let before = self.pending.remove(&key);
        if matches!(op, Op::Deregister(_))
            && matches!(
                before,
                Some(Pending {
                    op: Op::Register { .. },
                    ..
                })
            )
            && !self.in_registry.contains(&key)
        {
            log::debug!("dropped: {} (never reached the registry)", op.service().id);
            return;
        }
        if self.outage.is_some() {
            log::debug!("held until the registry is back: {}", op.service().id);
            self.pending.insert(
                key,
                Pending {
                    op,
                    tries: 0,
                    due: Instant::now(),
                },
            );
            return;
        }
        self.attempt(key, op, 0);
    }

    /// One try of a change; a failure is kept as pending work with its backoff, and a ping
    /// tells whether the registry is down as a whole (then everything waits for it).
    fn attempt(&mut self, key: String, op: Op, tries: u32) {
        let (result, verb) = match &op {
            Op::Register { service, .. } => {
                // Even a failed call may have reached it (a timeout after the write).
                self.in_registry.insert(key.clone());
                (self.backend.register(service), "register")
            }
            Op::Deregister(service) => (self.backend.deregister(service), "deregister"),
        };
        match result {
            Ok(()) => {
                if let Op::Deregister(_) = op {
                    self.in_registry.remove(&key);
                }
                self.done(&op, tries)
            }
            Err(e) => {
                let tries = tries + 1;
                let delay = backoff(tries);
                // Every failure of a call that keeps failing would be noise: 1st, 2nd, 4th, ...
                if tries.is_power_of_two() {
                    log::error!("{verb} failed: {e} (try {tries}; next in {delay:?})");
                } else {
                    log::debug!("{verb} failed: {e} (try {tries}; next in {delay:?})");
                }
                self.pending.insert(
                    key,
                    Pending {
                        op,
                        tries,
                        due: Instant::now() + delay,
                    },
                );
                self.probe();
            }
        }
    }

    /// After a failure: is the registry there at all?
    fn probe(&mut self) {
        if self.outage.is_some() {
            return;
        }
        if let Err(e) = self.backend.ping() {
            log::warn!(
                "registry unreachable ({e}); holding changes and retrying with backoff up to {OUTAGE_PING_MAX:?}"
            );
            let now = Instant::now();
            self.outage = Some(Outage {
                since: now,
                ping: Backoff::start(now),
            });
        }
    }

    fn done(&mut self, op: &Op, tries: u32) {
        let s = op.service();
        let c = if s.container_id.is_empty() {
            "-"
        } else {
            id12(&s.container_id)
        };
        let again = if tries > 0 { " (after a retry)" } else { "" };
        match op {
            Op::Register { known: true, .. } if tries == 0 => {
                log::debug!("refreshed: {c} {}", s.id)
            }
            Op::Register { .. } => log::info!("added: {c} {}{again}", s.id),
            Op::Deregister(_) => log::info!("removed: {c} {}{again}", s.id),
        }
        if let Op::Register { service, .. } = op {
            if self.backend.has_checks() && docker_check(service) {
                if let Some(&h) = self.checked.get(&service.container_id) {
                    self.report(service, h);
                }
            }
        }
    }

    /// When the next retry (or ping, or flush) is due, if any.
    fn retry_at(&self) -> Option<Instant> {
        let flush = self.unflushed.map(|b| b.due);
        let calls = match &self.outage {
            Some(o) => Some(o.ping.due),
            None => self.pending.values().map(|p| p.due).min(),
        };
        [flush, calls].into_iter().flatten().min()
    }

    /// Pings an unreachable registry; once it answers, registers everything wanted again (it
    /// may have restarted without its data) and makes the held changes. Then tries the due
    /// failed changes, oldest due first.
    fn retry(&mut self) {
        let now = Instant::now();
        if let Some(o) = &mut self.outage {
            if now < o.ping.due {
                return;
            }
            if let Err(e) = self.backend.ping() {
                log::debug!("registry still unreachable: {e}");
                o.ping.again(now, OUTAGE_PING_MAX);
                return;
            }
            let down = o.since.elapsed();
            self.outage = None;
            let held = self.pending.len();
            let mut again = 0;
            let wanted: Vec<Service> = self.registered.values().flatten().cloned().collect();
            for s in wanted {
                let key = self.backend.key(&s);
                if !self.pending.contains_key(&key) {
                    again += 1;
                    let op = Op::Register {
                        service: s,
                        known: true,
                    };
                    let p = Pending {
                        op,
                        tries: 0,
                        due: now,
                    };
                    self.pending.insert(key, p);
                }
            }
            log::info!(
                "registry reachable again after {:?}; making {held} pending changes and registering {again} services again",
                Duration::from_millis(down.as_millis() as u64),
            );
            if self.cleanup_due {
                // Settled by a full sync, which runs the cleanup it missed.
                self.sync(true);
            }
        }
        // In the order the changes were made (one entry per service: no order between them
        // matters).
        let due: Vec<String> = (self.pending.0.iter())
            .filter(|(_, p)| p.due <= now)
            .map(|(key, _)| key.clone())
            .collect();
        for key in due {
            if self.outage.is_some() {
                // Down again: the rest waits for it.
                break;
            }
            if let Some(p) = self.pending.remove(&key) {
                self.attempt(key, p.op, p.tries);
            }
        }
    }

    /// Reports a container's Docker health to the check of one of its services (Consul's TTL
    /// check). A failure means the registry is down (then the recovery registers everything
    /// again, and each registration reports) or lost the service and its check (then the
    /// service is registered again, and that reports).
    fn report(&mut self, s: &Service, h: Health) {
        if self.outage.is_some() || self.pending.contains_key(&self.backend.key(s)) {
            return;
        }
        match self.backend.check(s, h) {
            Ok(()) => log::debug!(
                "health: {} {} {}",
                id12(&s.container_id),
                s.id,
                health_name(h)
            ),
            Err(e) => {
                self.probe();
                if self.outage.is_none() {
                    log::warn!("{e}; registering {} again", s.id);
                    self.apply(Op::Register {
                        service: s.clone(),
                        known: false,
                    });
                }
            }
        }
    }

    /// Every service with a Docker-health check, reported again before its TTL runs out.
    fn report_all(&mut self) {
        let all: Vec<(Service, Health)> = self
            .checked
            .iter()
            .flat_map(|(id, &h)| {
                self.registered
                    .get(id)
                    .into_iter()
                    .flatten()
                    .filter(|s| docker_check(s))
                    .map(move |s| (s.clone(), h))
            })
            .collect();
        for (s, h) in all {
            self.report(&s, h);
        }
    }

    /// Registers every running container again and settles the ones known here that are not
    /// running any more (as their `die` would have). With `-cleanup`, then removes this host's
    /// services of containers that do not run.
    fn sync(&mut self, quiet: bool) {
        let running = match self.docker.running() {
            Ok(r) => r,
            Err(e) => {
                log::error!("docker: list containers: {e}");
                return;
            }
        };
        log::debug!("sync: {} running containers", running.len());
        let mut names = HashSet::new();
        let mut complete = true;
        for (i, id) in running.iter().enumerate() {
            let inspected = self.docker.inspect(id);
            // The engine inspects the next one while the registry takes this one.
            if let Some(next) = running.get(i + 1) {
                self.docker.inspect_ahead(next);
            }
            match inspected {
                Ok(Some(c)) => {
                    if c.state.running {
                        if self.held_back(&c).is_none() {
                            names.insert(c.short_name().to_string());
                        }
                        self.register(&c, quiet, true);
                    }
                }
                Ok(None) => self.remove(id),
                Err(e) => {
                    log::error!("docker: inspect {}: {e}", id12(id));
                    complete = false;
                }
            }
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
                Ok(Some(c)) if c.state.running => {
                    if self.held_back(&c).is_none() {
                        names.insert(c.short_name().to_string());
                    }
                    self.register(&c, quiet, true)
                }
                // Not running: settled as its `die` would have been (quietly: it repeats).
                Ok(Some(c)) if self.keeps(c.state.exit_code) => {}
                Ok(Some(_)) => self.remove(&id),
                Err(e) => {
                    log::error!("docker: inspect {}: {e}", id12(&id));
                    complete = false;
                }
            }
        }
        if self.opts.cleanup {
            if complete {
                self.cleanup(&names);
            } else {
                self.cleanup_due = true;
                log::warn!(
                    "cleanup deferred to the next sync: not every container could be inspected"
                );
            }
        }
    }

    /// `-cleanup`: removes services in the registry with this host's default ID
    /// (`<hostname>:<container>:<port>[:udp]`) whose container is not running (or is held back:
    /// paused, or not healthy under `-require-healthy`), except those `-deregister on-success`
    /// keeps. Custom IDs and other hosts' services are never touched.
    fn cleanup(&mut self, running: &HashSet<String>) {
        self.cleanup_due = true;
        if self.outage.is_some() {
            log::info!("cleanup deferred until the registry is back");
            return;
        }
        let listed = match self.backend.list() {
            Ok(l) => l,
            Err(e) => {
                log::warn!("cleanup deferred: {e}");
                self.probe();
                return;
            }
        };
        self.cleanup_due = false;
        let wanted: HashSet<String> = self
            .registered
            .values()
            .flatten()
            .map(|s| self.backend.key(s))
            .collect();
        let stale: Vec<(Service, String)> = listed
            .into_iter()
            .filter(|s| {
                let key = self.backend.key(s);
                !wanted.contains(&key) && !self.pending.contains_key(&key)
            })
            .filter_map(|s| {
                let name = own_container(&s.id, &self.settings.hostname)?.to_string();
                (!running.contains(&name)).then_some((s, name))
            })
            .collect();
        for (s, name) in stale {
            if self.opts.deregister == Deregister::OnSuccess {
                if let Ok(Some(c)) = self.docker.inspect(&name) {
                    if !c.state.running && self.keeps(c.state.exit_code) {
                        continue;
                    }
                }
            }
            log::info!("cleanup: {} (container {name} is not running)", s.id);
            self.apply(Op::Deregister(s));
        }
    }

    /// SIGTERM/SIGINT. Registrations stay (the containers still run) unless
    /// `-deregister-on-shutdown`: then every service this daemon registered is removed, one
    /// try each (none while the registry is known to be down).
    fn shutdown(&mut self) {
        if self.opts.deregister_on_shutdown && self.outage.is_some() {
            log::warn!(
                "shutdown: the registry is unreachable; {} services could not be removed",
                self.registered.values().map(Vec::len).sum::<usize>()
            );
        } else if self.opts.deregister_on_shutdown {
            let all: Vec<Service> = self.registered.drain().flat_map(|(_, l)| l).collect();
            let mut ops: Vec<Op> = all.into_iter().map(Op::Deregister).collect();
            ops.extend(
                std::mem::take(&mut self.pending.0)
                    .into_iter()
                    .map(|(_, p)| p.op)
                    .filter(|op| matches!(op, Op::Deregister(_))),
            );
            let mut failed = 0;
            for op in ops {
                match self.backend.deregister(op.service()) {
                    Ok(()) => self.done(&op, 0),
                    Err(e) => {
                        failed += 1;
                        log::error!("deregister failed: {e}");
                    }
                }
            }
            if failed > 0 {
                log::warn!("shutdown: {failed} services could not be removed");
            }
        } else if !self.pending.is_empty() {
            log::warn!(
                "shutdown: {} registry changes not made (registry unreachable); -cleanup or a resync at the next start settles them",
                self.pending.len()
            );
        }
        self.flush();
    }
}

/// `SERVICE_CHECK_DOCKER` (or the per-port form) is true.
fn docker_check(s: &Service) -> bool {
    s.attrs
        .get("check_docker")
        .and_then(|v| service::boolean(v))
        .unwrap_or(false)
}

fn health_name(h: Health) -> &'static str {
    match h {
        Health::Starting => "starting",
        Health::Healthy => "healthy",
        Health::Unhealthy => "unhealthy",
    }
}

/// The container name in a default service ID of this host: `<hostname>:<name>:<port>` or
/// `<hostname>:<name>:<port>:udp`, with a name as Docker allows them.
fn own_container<'a>(id: &'a str, hostname: &str) -> Option<&'a str> {
    let rest = id.strip_prefix(hostname)?.strip_prefix(':')?;
    let mut parts = rest.split(':');
    let (name, port) = (parts.next()?, parts.next()?);
    match (parts.next(), parts.next()) {
        (None, _) | (Some("udp"), None) => {}
        _ => return None,
    }
    let name_ok = name
        .bytes()
        .next()
        .is_some_and(|b| b.is_ascii_alphanumeric())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
    let port_ok = !port.is_empty() && port.len() <= 5 && port.bytes().all(|b| b.is_ascii_digit());
    (name_ok && port_ok).then_some(name)
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
        /// By ID or by name, as the engine does.
        fn inspect(&mut self, id: &str) -> Result<Option<Container>, docker::Error> {
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
            let mut g = self.0.lock().unwrap();
            g.calls.push(format!("register {key}"));
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
        fn check(&mut self, s: &Service, h: Health) -> Result<(), backend::Error> {
            let mut g = self.0.lock().unwrap();
            g.calls.push(format!("check {} {}", s.id, health_name(h)));
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
            let opts = Options {
                deregister: mode,
                ..Options::default()
            };
            let bridge = Bridge::new(
                Box::new(FakeEngine(engine.clone())),
                Box::new(reg.clone()),
                settings,
                opts,
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

        /// Time passes: every retry is due now, and the worker runs it.
        fn retry(&mut self) {
            let now = Instant::now();
            if let Some(o) = &mut self.bridge.outage {
                o.ping.due = now;
            }
            for (_, p) in self.bridge.pending.0.iter_mut() {
                p.due = now;
            }
            self.bridge.retry();
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
        assert!(w.bridge.handle(Msg::Sync));
        assert_eq!(w.ids(), ["h:failed:80", "h:new:80", "h:stays:80"]);
        // A second sync changes nothing.
        let calls = w.reg.0.lock().unwrap().calls.len();
        assert!(w.bridge.handle(Msg::Sync));
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
        assert!(!w.bridge.handle(Msg::Shutdown));
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
        assert_eq!(w.bridge.pending.len(), 2, "h:a:80 and h:c:80");
        w.retry();
        assert_eq!(w.calls(), ["ping"], "still down: only pinged");
        // It comes back without its data (a dev agent restarted).
        w.reg.0.lock().unwrap().held.clear();
        w.down(false);
        w.retry();
        assert_eq!(w.ids(), ["h:b:80", "h:c:80"]);
        assert!(w.bridge.pending.is_empty() && w.bridge.outage.is_none());
        assert!(w.bridge.retry_at().is_none(), "no timer left");
    }

    #[test]
    fn a_call_the_registry_refuses_is_retried_with_backoff_without_holding_others() {
        let mut w = World::new(Deregister::Always);
        w.reg.0.lock().unwrap().refuse = vec!["h:a:80".into()];
        w.start("a", "a", &[]);
        assert!(w.bridge.outage.is_none(), "the ping succeeds: no outage");
        w.start("b", "b", &[]);
        assert_eq!(w.ids(), ["h:b:80"], "b is not held back by a");
        assert_eq!(w.bridge.pending["h:a:80"].tries, 1);
        // A resync wants the same registration: its backoff is kept, no call is made.
        let due = w.bridge.pending["h:a:80"].due;
        w.calls();
        assert!(w.bridge.handle(Msg::Sync));
        assert_eq!(w.calls(), ["register h:b:80"]);
        assert_eq!(w.bridge.pending["h:a:80"].due, due);
        w.retry();
        assert_eq!(w.bridge.pending["h:a:80"].tries, 2);
        w.reg.0.lock().unwrap().refuse.clear();
        w.retry();
        assert_eq!(w.ids(), ["h:a:80", "h:b:80"]);
        assert_eq!(backoff(1), RETRY_MIN);
        assert_eq!(backoff(2), RETRY_MIN * 2);
        assert_eq!(backoff(40), RETRY_MAX);
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
        assert!(w.bridge.handle(Msg::Sync));
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
        assert!(w.bridge.handle(Msg::Sync), "a sync while paused");
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
        w.bridge.report_all();
        assert_eq!(w.calls(), ["check h:a:80 unhealthy"]);
        // Without a HEALTHCHECK there is nothing to mirror.
        w.start("b", "b", &["SERVICE_CHECK_DOCKER=true"]);
        assert_eq!(w.calls(), ["register h:b:80"]);
        assert!(!docker_check(&w.bridge.registered["b"][0]));
        w.exit("a", 0);
        assert!(w.bridge.checked.is_empty());
    }

    #[test]
    fn shutdown_leaves_services_unless_asked() {
        let mut w = World::new(Deregister::Always);
        w.start("a", "a", &[]);
        assert!(!w.bridge.handle(Msg::Shutdown));
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
        assert!(!w.bridge.handle(Msg::Shutdown));
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
            w.bridge
                .pending
                .0
                .iter()
                .map(|(k, _)| k)
                .collect::<Vec<_>>(),
            ["h:b:80"],
            "one-off containers leave nothing behind"
        );
        w.down(false);
        w.retry();
        assert_eq!(w.ids(), ["h:a:80", "h:b:80"]);
        assert!(w.bridge.pending.is_empty());
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
        w.bridge.report_all();
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
        w.bridge.outage = Some(Outage {
            since: Instant::now(),
            ping: Backoff::start(Instant::now()),
        });
        assert!(w.bridge.handle(Msg::Sync));
        assert!(w.bridge.cleanup_due);
        w.down(false);
        w.retry();
        assert!(w.ids().is_empty(), "{:?}", w.ids());
        assert!(!w.bridge.cleanup_due);
    }
}
