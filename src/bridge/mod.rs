//! The worker: the one thread that owns what should be registered.
//!
//! It receives [`Msg`]s in the order the event reader saw them, so the events of one container
//! are applied in the engine's order. For each it inspects the container, turns it into
//! services ([`service::services`]) and hands each change to its [`Outbox`], which delivers it
//! to the registry or keeps it while the registry fails. Docker health is mirrored to registry
//! checks by its [`health::Mirror`].
//!
//! Time comes from a [`Clock`] the worker is given (the system's in the daemon, one moved by
//! hand in the tests) and is passed on to the outbox and the health mirror: [`Bridge::tick`]
//! runs the timers that are due and [`Bridge::next_due`] says when the next one (`-resync`,
//! `-ttl-refresh`, a retry, a health report) is; [`Bridge::run`] is the loop that waits for it
//! or for a message.
//!
//! Two words for two kinds of waiting: a container's services are *withheld* while it is
//! paused or not healthy (under `-require-healthy`); a change is *queued* in the outbox while
//! the registry is unreachable.

pub mod health;
pub mod lanes;
pub mod outbox;
mod swarm;
#[cfg(test)]
mod tests;

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender};
use std::sync::Arc;
use std::time::{Duration, Instant};

use self::health::{docker_check, Mirror};
use self::lanes::{Done, Lanes, LANES};
use self::outbox::{Delivery, Op, Outbox, Outcome, Ready};
use crate::backend::{Backend, Health};
use crate::cli::Deregister;
use crate::docker::container::{id12, Container};
use crate::docker::events::{signal_number, Action, Event, Kind};
use crate::docker::swarm::SwarmInfo;
use crate::docker::{self, Client};
use crate::service::{self, Service, Settings};

const SIGKILL: u8 = 9;
const SIGTERM: u8 = 15;
/// `-deregister-on-stop`: how long after its stop signal a container that has not exited is
/// left deregistered; then it is inspected, and registered again if it still runs (a process
/// that survived the signal). Longer than the stop grace periods in common use.
const STOPPING_FOR: Duration = Duration::from_secs(120);

/// What the worker asks of the engine; [`Client`] in the daemon, a table in the tests.
pub trait Engine: Send {
    /// IDs of the running containers.
    fn running(&mut self) -> Result<Vec<String>, docker::Error>;
    /// A container by ID or name; `None` when the engine does not know it.
    fn inspect(&mut self, id: &str) -> Result<Option<Container>, docker::Error>;
    /// Asks now for an inspect that follows soon, so that the engine works on it meanwhile.
    fn inspect_ahead(&mut self, _id: &str) {}
    /// `-swarm`: this node's part in a swarm (`GET /info`).
    fn swarm_info(&mut self) -> Result<SwarmInfo, docker::Error> {
        Ok(SwarmInfo::default())
    }
    /// `-swarm`, on a manager: a node's address; `None` when the engine does not know it.
    fn node_addr(&mut self, _id: &str) -> Result<Option<String>, docker::Error> {
        Ok(None)
    }
    /// `-swarm`, on a manager: every swarm service.
    fn services(&mut self) -> Result<Vec<docker::swarm::Service>, docker::Error> {
        Ok(Vec::new())
    }
    /// `-swarm`, on a manager: a swarm service by ID; `None` when it is gone.
    fn service(&mut self, _id: &str) -> Result<Option<docker::swarm::Service>, docker::Error> {
        Ok(None)
    }
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
    fn swarm_info(&mut self) -> Result<SwarmInfo, docker::Error> {
        Client::swarm_info(self)
    }
    fn node_addr(&mut self, id: &str) -> Result<Option<String>, docker::Error> {
        Client::node_addr(self, id)
    }
    fn services(&mut self) -> Result<Vec<docker::swarm::Service>, docker::Error> {
        Client::services(self)
    }
    fn service(&mut self, id: &str) -> Result<Option<docker::swarm::Service>, docker::Error> {
        Client::service(self, id)
    }
}

pub enum Msg {
    /// An event (a container's; with `-swarm` a swarm service's or node's), in stream order.
    Event(Event, Arrival),
    /// (Re)connected to the engine: reconcile with a full sync.
    Sync,
    /// The registry lost what this daemon registered (a new ZooKeeper session): register
    /// everything again.
    RegistryLost,
    /// A lane finished a registry call: its answer is settled (see [`lanes`]).
    Lanes,
    Shutdown,
}

/// Whether an event happened after the subscription it came on, or may be replayed
/// (`since=`, at start-up or after a reconnect); the event reader decides (see
/// `watcher::arrival`: stamped from the engine's clock at subscription plus 2 s on).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arrival {
    /// Stamped after the subscription: what it says is news.
    Live,
    /// Stamped before it, not stamped, or from an engine without a `Date`: the container may
    /// have changed since.
    Replayed,
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
    /// `-deregister-on-stop`.
    pub deregister_on_stop: bool,
    /// `-swarm`.
    pub swarm: bool,
}

/// Why a container (or a swarm service) is registered (again): what is logged, and whether
/// services registered before unchanged are sent again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pass {
    /// A `start` or `unpause` (a swarm service's event): news is logged; unchanged services are
    /// not sent again.
    Event,
    /// A health event: as [`Pass::Event`], quietly (Podman sends one per check run).
    Health,
    /// The sync after (re)connecting to the engine: every service is sent again.
    Sync,
    /// A `-resync` timer, or the sync after an outage: every service is sent again, quietly.
    Resync,
}

impl Pass {
    /// Lines that would repeat every time stay at debug level.
    fn quiet(self) -> bool {
        matches!(self, Pass::Health | Pass::Resync)
    }
    /// Services registered before unchanged are registered again (the registry may have
    /// lost them).
    fn resend(self) -> bool {
        matches!(self, Pass::Sync | Pass::Resync)
    }
}

pub struct Bridge {
    docker: Box<dyn Engine>,
    backend: Box<dyn Backend>,
    settings: Settings,
    opts: Options,
    /// Container ID (or, with `-swarm`, `swarm:<service ID>`) -> the services wanted in the
    /// registry for it (registered, or pending).
    registered: HashMap<String, Vec<Service>>,
    /// Container ID -> why its services are withheld (paused, not healthy), so that the line
    /// is logged when that changes, not on every health event (Podman sends one per check).
    withheld: HashMap<String, String>,
    /// `-deregister-on-stop`: container ID -> its stop signal, for registered containers whose
    /// stop signal is not SIGTERM.
    stop_signals: HashMap<String, u8>,
    /// `-deregister-on-stop`: containers deregistered at the `kill` of a stop, still running
    /// until their `die`, and when to look again if no `die` came by then (the process
    /// survived its stop signal); a sync leaves them out until that time.
    stopping: HashMap<String, Instant>,
    health: Mirror,
    outbox: Outbox,
    /// `-swarm`: what this node is in its swarm, and where its services are registered.
    swarm: Option<swarm::Swarm>,
    /// Registry calls made beside the worker: started at the first sync with more than two
    /// containers or when the registry turns out slow; `None` for backends that offer none.
    lanes: Option<Lanes>,
    lanes_tried: bool,
    /// Changes for the lanes, in the order they were made, each waiting for a lane and for the
    /// change before it to the same registry entry (see [`Bridge::dispatch`]).
    waiting: VecDeque<(String, Op)>,
    /// The worker's own input, where lanes say they finished a call (none in the tests that
    /// hand messages to [`Bridge::handle`] themselves: calls are settled when waited for).
    wake: Option<Sender<Msg>>,
    syncing: bool,
    /// `-cleanup` could not run at the last sync (registry down, listing or inspect failed):
    /// it runs at the next sync, or when the registry is back.
    cleanup_due: bool,
    /// The `-resync` and `-ttl-refresh` timers: they start with the first message.
    next_resync: Option<Instant>,
    next_refresh: Option<Instant>,
    started: bool,
    clock: Arc<dyn Clock>,
}

/// Where the worker reads the time: the system clock in the daemon, a clock moved by hand in
/// the tests. Read after blocking work, so that deadlines count from when it ended.
pub trait Clock: Send + Sync {
    fn now(&self) -> Instant;
}

/// [`Instant::now`].
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Instant {
        Instant::now()
    }
}

impl Bridge {
    pub fn new(
        docker: Box<dyn Engine>,
        backend: Box<dyn Backend>,
        settings: Settings,
        opts: Options,
    ) -> Bridge {
        let swarm = opts.swarm.then(swarm::Swarm::default);
        Bridge {
            docker,
            backend,
            settings,
            opts,
            registered: HashMap::new(),
            withheld: HashMap::new(),
            stop_signals: HashMap::new(),
            stopping: HashMap::new(),
            health: Mirror::default(),
            outbox: Outbox::default(),
            swarm,
            lanes: None,
            lanes_tried: false,
            waiting: VecDeque::new(),
            wake: None,
            syncing: false,
            cleanup_due: false,
            next_resync: None,
            next_refresh: None,
            started: false,
            clock: Arc::new(SystemClock),
        }
    }

    /// The clock the worker reads (the system's by default).
    pub fn with_clock(mut self, clock: Box<dyn Clock>) -> Bridge {
        self.clock = Arc::from(clock);
        self
    }

    /// The sender of the worker's input, for lanes to say they finished a call: given, calls
    /// outside a sync are made on lanes too while the registry is slow, and the worker goes on
    /// with the events (without it, lanes serve a sync only). The worker then holds a sender of
    /// its own input: [`Bridge::run`] ends at `Shutdown`.
    pub fn with_wake(mut self, wake: Sender<Msg>) -> Bridge {
        self.wake = Some(wake);
        self
    }

    /// Runs until `Shutdown` or until every sender is gone (never, with [`Bridge::with_wake`]):
    /// waits for a message or for the next timer, whichever comes first. With no timer due the
    /// thread sleeps in `recv`.
    pub fn run(mut self, rx: Receiver<Msg>) {
        loop {
            self.tick();
            let msg = match self.next_due() {
                Some(at) => {
                    let wait = at.saturating_duration_since(self.clock.now());
                    match rx.recv_timeout(wait) {
                        Ok(m) => m,
                        Err(RecvTimeoutError::Timeout) => continue,
                        Err(RecvTimeoutError::Disconnected) => Msg::Shutdown,
                    }
                }
                None => rx.recv().unwrap_or(Msg::Shutdown),
            };
            if !self.handle(msg) {
                break;
            }
        }
        self.backend.close();
    }

    /// When the next timer is due, if any: `-resync`, `-ttl-refresh`, a health report, a
    /// retry, a ping during an outage, a flush.
    pub fn next_due(&self) -> Option<Instant> {
        [
            self.next_resync,
            self.next_refresh,
            self.health.next_due(),
            self.outbox.next_due(),
            self.stopping.values().min().copied(),
            self.swarm.as_ref().and_then(swarm::Swarm::next_due),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Runs every timer that is due now. Each timer's next time counts from when its work
    /// ended (a sync or a registry call may take seconds).
    pub fn tick(&mut self) {
        let due = |at: Option<Instant>, now: Instant| at.is_some_and(|at| now >= at);
        if due(self.next_resync, self.clock.now()) {
            log::debug!("resync");
            self.sync(Pass::Resync);
            self.flush();
            self.next_resync = self.after(self.opts.resync);
        }
        if due(self.next_refresh, self.clock.now()) {
            self.refresh();
            self.next_refresh = self.after(self.opts.refresh);
        }
        if due(self.health.next_due(), self.clock.now()) {
            let on_lanes = self.on_lanes();
            let (be, outbox) = (self.backend.as_mut(), &mut self.outbox);
            self.health
                .report_all(&self.registered, &on_lanes, be, outbox, self.clock.as_ref());
        }
        if due(self.outbox.next_due(), self.clock.now()) {
            self.retry();
            self.flush();
        }
        if self.swarm_tick() {
            self.flush();
        }
        let now = self.clock.now();
        let survived: Vec<String> = (self.stopping.iter())
            .filter(|(_, at)| now >= **at)
            .map(|(id, _)| id.clone())
            .collect();
        for id in survived {
            // No `die` came: inspect says whether it still runs (then it is registered again).
            self.stopping.remove(&id);
            log::warn!(
                "{}: no exit {} s after its stop signal; looking again (-deregister-on-stop)",
                id12(&id),
                STOPPING_FOR.as_secs()
            );
            self.add(&id, Pass::Event);
            self.flush();
        }
    }

    /// `d` from now.
    fn after(&self, d: Option<Duration>) -> Option<Instant> {
        d.and_then(|d| self.clock.now().checked_add(d))
    }

    /// Applies one message and flushes the backend; false after `Shutdown`. The `-resync` and
    /// `-ttl-refresh` timers start when the first message (the first sync) is done.
    pub fn handle(&mut self, msg: Msg) -> bool {
        match msg {
            Msg::Event(ev, arrival) => self.event(ev, arrival),
            Msg::Sync => self.sync(Pass::Sync),
            Msg::RegistryLost => self.registry_lost(),
            Msg::Lanes => self.collect(),
            Msg::Shutdown => {
                self.shutdown();
                return false;
            }
        }
        self.flush();
        if !self.started {
            self.started = true;
            self.next_resync = self.after(self.opts.resync);
            self.next_refresh = self.after(self.opts.refresh);
        }
        true
    }

    fn flush(&mut self) {
        self.outbox
            .flush(self.backend.as_mut(), self.clock.as_ref());
    }

    /// Sends one change through the outbox; a registration the registry took gets its health.
    /// The call is made on the worker's connection, or, with lanes, beside it when the worker
    /// should not wait for it: during a sync, while the registry is slow (a call took [`SLOW`]
    /// or more), or while other changes wait or are in flight (they go first).
    ///
    /// [`SLOW`]: outbox::SLOW
    fn send(&mut self, op: Op) {
        let key = self.backend.key(op.service());
        let beside = self.lanes.as_ref().is_some_and(|l| {
            self.syncing
                || (self.wake.is_some()
                    && (self.outbox.is_slow() || l.in_flight() || !self.waiting.is_empty()))
        });
        if !beside {
            if let Ok(ready) = self.outbox.admit(key, op, self.clock.as_ref()) {
                self.make_here(ready);
            }
            return;
        }
        // One waiting change per entry, the latest wanted (as the outbox keeps them): a
        // container that restarts over and over behind a slow registry adds nothing, and one
        // that goes before its registration was made costs no call at all.
        match self.waiting.iter().position(|(k, _)| *k == key) {
            Some(i) if self.unmade(i, &op) => {
                log::debug!("dropped: {} (never reached the registry)", op.service().id);
                self.waiting.remove(i);
            }
            Some(i) => self.waiting[i].1 = op,
            None => self.waiting.push_back((key, op)),
        }
        self.dispatch();
        // A sync hands its changes over as lanes free up, not all at once: what waits stays
        // one change, however many containers there are.
        if self.syncing {
            while !self.waiting.is_empty() && self.wait_lane() {}
        }
    }

    /// Makes a change on the worker's own connection and settles it.
    fn make_here(&mut self, ready: Ready) {
        let clock = self.clock.clone();
        let outcome = ready.call(self.backend.as_mut(), || clock.now());
        self.settle_one(ready, outcome);
    }

    /// The service of a registration whose health is mirrored to its check: reported once the
    /// registry has it. Copied only where there is a report to make.
    fn mirrored(&self, op: &Op) -> Option<Service> {
        match op {
            Op::Register { service, .. } if self.health.mirrors(service) => Some(service.clone()),
            _ => None,
        }
    }

    /// `op` undoes the registration waiting at `i`, which never reached the registry (none of
    /// that entry is there, and none is in flight).
    fn unmade(&self, i: usize, op: &Op) -> bool {
        let (key, waiting) = &self.waiting[i];
        matches!((waiting, op), (Op::Register { .. }, Op::Deregister(_)))
            && !self.outbox.in_registry(key)
            && !self.lanes.as_ref().is_some_and(|l| l.busy_with(key))
    }

    /// Hands waiting changes to idle lanes, in the order they were made (one per entry, see
    /// [`Bridge::send`]). A change to an entry with one in flight stays behind that one.
    fn dispatch(&mut self) {
        let mut i = 0;
        while i < self.waiting.len() {
            let Some(lanes) = self.lanes.as_mut() else {
                return;
            };
            if !lanes.has_idle() {
                return;
            }
            if lanes.busy_with(&self.waiting[i].0) {
                i += 1;
                continue;
            }
            let Some((key, op)) = self.waiting.remove(i) else {
                return;
            };
            let Ok(ready) = self.outbox.admit(key, op, self.clock.as_ref()) else {
                continue;
            };
            if let Some(ready) = lanes.submit(ready) {
                // No lane left (it cannot happen short of a panic in a backend): made here.
                self.make_here(ready);
            }
        }
    }

    /// Settles the calls the lanes finished and hands them what waits (on [`Msg::Lanes`]).
    fn collect(&mut self) {
        let finished = self.lanes.as_mut().map(Lanes::finished).unwrap_or_default();
        for Done { change, outcome } in finished {
            self.settle_one(change, outcome);
        }
        self.dispatch();
    }

    /// Waits for a lane to finish a call, settles it and hands the lanes what waits; false
    /// when no call was in flight.
    fn wait_lane(&mut self) -> bool {
        let Some(Done { change, outcome }) = self.lanes.as_mut().and_then(Lanes::wait) else {
            return false;
        };
        self.settle_one(change, outcome);
        self.dispatch();
        true
    }

    /// Waits until every change handed to the lanes, and every one waiting for them, is made
    /// and settled: before a sync ends, before `-cleanup` lists the registry, at shutdown.
    fn idle(&mut self) {
        self.collect();
        while self.wait_lane() {}
    }

    /// What the registry said to one change, wherever it was made; a registration it took gets
    /// its health report. A registry found slow gets lanes, if it offers them.
    fn settle_one(&mut self, change: Ready, outcome: Outcome) {
        let registered = self.mirrored(change.op());
        let (be, clock) = (self.backend.as_mut(), self.clock.as_ref());
        if self.outbox.settle(be, change, outcome, clock) == Delivery::Made {
            if let Some(s) = registered {
                self.health.registered(be, &mut self.outbox, &s, clock);
            }
        }
        if !self.lanes_tried && self.outbox.is_slow() {
            self.start_lanes();
        }
    }

    /// The registry entries with a change on its way on the lanes (waiting or in flight).
    fn on_lanes(&self) -> HashSet<String> {
        let Some(lanes) = self.lanes.as_ref() else {
            return HashSet::new();
        };
        let waiting = self.waiting.iter().map(|(k, _)| k.clone());
        waiting.chain(lanes.busy_keys()).collect()
    }

    /// A change to this service's registry entry is on its way on the lanes.
    fn on_lanes_has(&self, s: &Service) -> bool {
        let Some(lanes) = self.lanes.as_ref() else {
            return false;
        };
        let key = self.backend.key(s);
        lanes.busy_with(&key) || self.waiting.iter().any(|(k, _)| *k == key)
    }

    /// Starts the lanes, once.
    fn start_lanes(&mut self) {
        self.lanes_tried = true;
        let (be, clock) = (self.backend.as_ref(), self.clock.clone());
        self.lanes = Lanes::start(be, LANES, clock, self.wake.clone());
    }

    /// `-ttl-refresh`: keeps what is registered from expiring (not while the registry is
    /// known to be down: the retry after it comes back registers everything again).
    fn refresh(&mut self) {
        if self.outbox.is_down() {
            return;
        }
        if let Err(e) = self.backend.refresh() {
            log::error!("{e}");
            self.outbox
                .probe(self.backend.as_mut(), self.clock.as_ref());
        }
    }

    /// Pings a registry in an outage; once it answers, registers everything wanted again (it
    /// may have restarted without its data) and makes the queued changes. Then tries the due
    /// failed changes, each registration followed by its health report.
    fn retry(&mut self) {
        let (be, clock) = (self.backend.as_mut(), self.clock.as_ref());
        if let Some(back) = self.outbox.reconnect(be, clock) {
            let wanted = self.registered.values().flatten().cloned();
            let again = self.outbox.register_again(be, wanted, clock.now());
            log::info!(
                "registry reachable again after {:?}; making {} pending changes and registering {again} services again",
                Duration::from_millis(back.after.as_millis() as u64),
                back.queued,
            );
            if self.cleanup_due {
                // Settled by a full sync, which runs the cleanup it missed.
                self.sync(Pass::Resync);
            }
        }
        let (be, clock) = (self.backend.as_mut(), self.clock.as_ref());
        for key in self.outbox.due(clock.now()) {
            if let Some(s) = self.outbox.retry(be, &key, clock) {
                self.health.registered(be, &mut self.outbox, &s, clock);
            }
        }
    }

    /// A new registry session without our entries: everything wanted is registered again.
    fn registry_lost(&mut self) {
        let wanted = self.registered.values().flatten().cloned();
        let now = self.clock.now();
        let again = self
            .outbox
            .register_again(self.backend.as_mut(), wanted, now);
        log::info!("the registry lost this daemon's services; registering {again} again");
        self.retry();
    }

    fn event(&mut self, ev: Event, arrival: Arrival) {
        match ev.kind {
            Kind::Container => {}
            Kind::Service | Kind::Node => {
                log::debug!(
                    "event: {:?} {:?} {} ({arrival:?})",
                    ev.kind,
                    ev.action,
                    ev.id
                );
                return match ev.kind {
                    Kind::Service => self.swarm_service_event(&ev.id),
                    _ => self.swarm_node_event(&ev.id),
                };
            }
        }
        log::debug!("event: {:?} {} ({arrival:?})", ev.action, id12(&ev.id));
        if swarm::is_key(&ev.id) {
            // Not a container's ID (hexadecimal): never let it touch a swarm service's entry.
            return;
        }
        match ev.action {
            Action::Start | Action::Unpause => {
                self.stopping.remove(&ev.id);
                self.add(&ev.id, Pass::Event)
            }
            Action::Die => {
                self.stopping.remove(&ev.id);
                self.died(&ev.id, ev.exit_code, arrival)
            }
            Action::Destroy => {
                self.stopping.remove(&ev.id);
                self.remove(&ev.id)
            }
            Action::Kill(signal) => self.killed(&ev.id, signal, ev.time_nano, arrival),
            Action::Pause => {
                if self.registered.contains_key(&ev.id) {
                    log::info!("paused: {}; deregistering until unpaused", id12(&ev.id));
                    self.remove(&ev.id);
                }
            }
            // Inspect says what the health is now (events may be late): registered or not
            // under -require-healthy, and reported to a check that mirrors it.
            Action::Health(_) => {
                if self.opts.require_healthy || self.health.contains(&ev.id) {
                    self.add(&ev.id, Pass::Health);
                }
            }
            Action::Other(_) => {}
        }
    }

    /// Inspects a container and registers its services (again), dropping any it no longer has.
    fn add(&mut self, id: &str, pass: Pass) {
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
        self.register(&c, pass);
    }

    /// Why a running container's services are withheld now, if they are.
    fn withheld_because(&self, c: &Container) -> Option<String> {
        if c.state.paused {
            return Some("paused".into());
        }
        match c.state.health() {
            Some(h) if self.opts.require_healthy && h != Health::Healthy => {
                Some(format!("not healthy ({}; -require-healthy)", h.name()))
            }
            _ => None,
        }
    }

    /// The services a running container should have now (none while withheld).
    fn wanted(&mut self, c: &Container, pass: Pass) -> Vec<Service> {
        if let Some(why) = self.withheld_because(c) {
            let line = format!("{} {why}", id12(&c.id));
            if self.withheld.get(&c.id) == Some(&why) {
                log::debug!("ignored: {line}");
            } else {
                log::info!("ignored: {line}");
                self.withheld.insert(c.id.clone(), why);
            }
            return Vec::new();
        }
        self.withheld.remove(&c.id);
        let peer_ip = self.peer_ip(c);
        let known = self.registered.get(&c.id).map_or(&[][..], Vec::as_slice);
        let (mut services, ignored) =
            service::services(c, &self.settings, peer_ip.as_deref(), known);
        log_ignored(&ignored, pass.quiet());
        // Only a registry with checks gets Docker's health (and only then the report timer).
        if self.backend.has_checks() {
            for s in services.iter_mut().filter(|s| docker_check(s)) {
                if c.state.health().is_none() {
                    if !pass.quiet() {
                        log::warn!(
                            "{}: {}: SERVICE_CHECK_DOCKER is set but the container has no HEALTHCHECK; no check added",
                            id12(&c.id),
                            s.id
                        );
                    }
                    s.attrs.remove("check_docker");
                }
            }
        }
        services
    }

    fn register(&mut self, c: &Container, pass: Pass) {
        if self.stopping.contains_key(&c.id) {
            log::debug!("{}: stopping (-deregister-on-stop); left out", id12(&c.id));
            return;
        }
        if self.opts.deregister_on_stop {
            match signal_number(&c.config.stop_signal) {
                Some(s) if s != SIGTERM => self.stop_signals.insert(c.id.clone(), s),
                _ => self.stop_signals.remove(&c.id),
            };
        }
        let services = self.wanted(c, pass);
        let health = c.state.health();
        let mirrors = self.backend.has_checks();
        let mirrored = health.filter(|_| mirrors && services.iter().any(docker_check));
        let before = self.health.set(&c.id, mirrored, self.clock.now());
        self.apply(&c.id, services, pass, mirrored, before);
    }

    /// Makes the registry hold `services` for `id` (a container, or a swarm service): registers
    /// what is new (everything again on a pass that resends), deregisters what `id` no longer
    /// has. `mirrored` is the Docker health its checks mirror now, `before` the one they did.
    fn apply(
        &mut self,
        id: &str,
        mut services: Vec<Service>,
        pass: Pass,
        mirrored: Option<Health>,
        before: Option<Health>,
    ) {
        let old = self.registered.remove(id).unwrap_or_default();
        // By registry key, not ID: the key-value registries key an entry by name and ID, and a
        // swarm service's update may rename an entry and keep its ID.
        let keys: HashSet<String> = services.iter().map(|n| self.backend.key(n)).collect();
        let dropped: Vec<Service> = (old.iter())
            .filter(|o| !keys.contains(&self.backend.key(o)))
            .cloned()
            .collect();
        self.deregister(id, &dropped);
        for s in &services {
            let known = old.contains(s);
            if known && !pass.resend() && !self.outbox.is_pending_for(self.backend.as_ref(), s) {
                // Registered already; only a changed health is news for its check (not while a
                // change to it is on its way on a lane: that one reports when made).
                let changed = mirrored.filter(|&h| docker_check(s) && before != Some(h));
                if let Some(h) = changed.filter(|_| !self.on_lanes_has(s)) {
                    let be = self.backend.as_mut();
                    let clock = self.clock.as_ref();
                    self.health.report(be, &mut self.outbox, s, h, clock);
                }
                continue;
            }
            let op = Op::Register {
                service: s.clone(),
                known,
            };
            self.send(op);
        }
        if !services.is_empty() {
            // Kept as long as the container runs: without its growth slack (a list grown by
            // push holds room for 4 services, 800 bytes, where most containers have one).
            services.shrink_to_fit();
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
    /// failed (1..=127), which keeps its services until it is gone. A live `die` deregisters at
    /// once; only a replayed one is checked against the engine first.
    fn died(&mut self, id: &str, exit_code: Option<i64>, arrival: Arrival) {
        self.withheld.remove(id);
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
        // A replayed `die` of a container that has been started again since (the sync after
        // the reconnect registered it): its `start` follows in the stream, so removing now
        // would only make the service flap. The engine answers an inspect of a container it is
        // still tearing down only once it is done (tens of ms): a live `die` is not worth it.
        if arrival == Arrival::Replayed {
            if let Ok(Some(c)) = self.docker.inspect(id) {
                if c.state.running {
                    log::debug!("{}: running again; stale die ignored", id12(id));
                    return;
                }
            }
        }
        self.remove(id);
    }

    /// `-deregister on-success` keeps the services of a container that failed (1..=127).
    fn keeps(&self, exit_code: i64) -> bool {
        self.opts.deregister == Deregister::OnSuccess && (1..=127).contains(&exit_code)
    }

    /// `-deregister-on-stop` (Decisions K1-K3): the `kill` of the container's stop signal (or
    /// SIGKILL) deregisters at once, without an inspect, so traffic drains during the stop's
    /// grace period; the `die` that follows finds nothing. Other signals (a reload's HUP) change
    /// nothing. Under `-deregister on-success` too: a stop is deliberate, not a failure.
    /// A `kill` that may be replayed (after a reconnect, or just after the subscription) is
    /// checked first: one from before the container's latest start is old news.
    fn killed(&mut self, id: &str, signal: Option<u8>, time_nano: i64, arrival: Arrival) {
        if !self.opts.deregister_on_stop || !self.registered.contains_key(id) {
            return;
        }
        if arrival == Arrival::Replayed && time_nano > 0 {
            if let Ok(Some(c)) = self.docker.inspect(id) {
                let started = crate::docker::container::unix_seconds(&c.state.started_at);
                if started.is_some_and(|s| s > time_nano / 1_000_000_000) {
                    log::debug!("{}: kill from before its last start; ignored", id12(id));
                    return;
                }
            }
        }
        let stop = self.stop_signals.get(id).copied().unwrap_or(SIGTERM);
        match signal {
            Some(s) if s == stop || s == SIGKILL => {
                log::info!(
                    "stopping: {} (signal {s}); deregistering before it exits (-deregister-on-stop)",
                    id12(id)
                );
                let look_again = self.clock.now() + STOPPING_FOR;
                self.stopping.insert(id.to_string(), look_again);
                self.remove(id);
            }
            _ => log::debug!(
                "{}: signal {signal:?} is not its stop signal; nothing to do",
                id12(id)
            ),
        }
    }

    fn remove(&mut self, id: &str) {
        self.stop_signals.remove(id);
        self.health.forget(id);
        self.withheld.remove(id);
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
            self.send(Op::Deregister(s.clone()));
        }
    }

    /// Registers every running container again and settles the ones known here that are not
    /// running any more (as their `die` would have); with `-swarm` on a manager, every swarm
    /// service too. With `-cleanup`, then removes this host's services of containers that do
    /// not run (and of swarm services it does not register).
    fn sync(&mut self, pass: Pass) {
        self.syncing = true;
        let containers = self.sync_containers(pass);
        // With -swarm: the swarm services, on a manager.
        let swarm_complete = self.sync_swarm(pass);
        if let (true, Some((names, complete))) = (self.opts.cleanup, containers) {
            // What the registry holds is listed once every registration has been made.
            self.idle();
            if complete && swarm_complete {
                self.cleanup(&names);
            } else {
                self.cleanup_due = true;
                log::warn!(
                    "cleanup deferred to the next sync: not every container or swarm service could be read"
                );
            }
        }
        self.syncing = false;
        self.idle();
    }

    /// [`Bridge::sync`]'s work for containers, its registry calls on lanes: the names of the
    /// running containers whose services are not withheld, and whether every container could
    /// be inspected; `None` when the engine did not list them.
    fn sync_containers(&mut self, pass: Pass) -> Option<(HashSet<String>, bool)> {
        let running = match self.docker.running() {
            Ok(r) => r,
            Err(e) => {
                log::error!("docker: list containers: {e}");
                return None;
            }
        };
        log::debug!("sync: {} running containers", running.len());
        // A stopping container whose `die` was missed is not running any more.
        self.stopping.retain(|id, _| running.contains(id));
        // Lanes are worth their thread only once there is more than a call or two to make.
        if !self.lanes_tried && running.len() > 2 {
            self.start_lanes();
        }
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
                        if self.withheld_because(&c).is_none() {
                            names.insert(c.short_name().to_string());
                        }
                        self.register(&c, pass);
                    }
                }
                Ok(None) => self.remove(id),
                Err(e) => {
                    log::error!("docker: inspect {}: {e}", id12(id));
                    complete = false;
                }
            }
        }
        let stale: Vec<String> = (self.registered.keys())
            .filter(|id| !swarm::is_key(id) && !running.contains(id))
            .cloned()
            .collect();
        for id in stale {
            match self.docker.inspect(&id) {
                Ok(None) => self.remove(&id),
                Ok(Some(c)) if c.state.running => {
                    if self.withheld_because(&c).is_none() {
                        names.insert(c.short_name().to_string());
                    }
                    self.register(&c, pass)
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
        Some((names, complete))
    }

    /// `-cleanup`: removes services in the registry with this host's default ID
    /// (`<hostname>:<container>:<port>[:udp]`) whose container is not running (or is withheld:
    /// paused, or not healthy under `-require-healthy`), except those `-deregister on-success`
    /// keeps. A swarm service's entry (`<hostname>:<service>:<port>`) is kept while this node
    /// registers it (it is wanted), like a running container's. Custom IDs and other hosts'
    /// services are never touched.
    fn cleanup(&mut self, running: &HashSet<String>) {
        self.cleanup_due = true;
        if self.outbox.is_down() {
            log::info!("cleanup deferred until the registry is back");
            return;
        }
        let listed = match self.backend.list() {
            Ok(l) => l,
            Err(e) => {
                log::warn!("cleanup deferred: {e}");
                self.outbox
                    .probe(self.backend.as_mut(), self.clock.as_ref());
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
                !wanted.contains(&key) && !self.outbox.is_pending(&key)
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
            if self.registers_swarm_services() {
                log::info!(
                    "cleanup: {} (no running container is named {name}, and no swarm service registered here has this entry)",
                    s.id
                );
            } else {
                log::info!("cleanup: {} (container {name} is not running)", s.id);
            }
            self.send(Op::Deregister(s));
        }
    }

    /// SIGTERM/SIGINT. Registrations stay (the containers still run) unless
    /// `-deregister-on-shutdown`: then every service this daemon registered is removed, one
    /// try each (none while the registry is known to be down).
    fn shutdown(&mut self) {
        // The changes on their way first (the registry's timeout bounds each call).
        self.idle();
        if self.opts.deregister_on_shutdown && self.outbox.is_down() {
            log::warn!(
                "shutdown: the registry is unreachable; {} services could not be removed",
                self.registered.values().map(Vec::len).sum::<usize>()
            );
        } else if self.opts.deregister_on_shutdown {
            let mut all: Vec<Service> = self.registered.drain().flat_map(|(_, l)| l).collect();
            all.extend(self.outbox.take_deregistrations());
            let mut failed = 0;
            for s in all {
                if let Err(e) = self.outbox.deregister_once(self.backend.as_mut(), s) {
                    failed += 1;
                    log::error!("deregister failed: {e}");
                }
            }
            if failed > 0 {
                log::warn!("shutdown: {failed} services could not be removed");
            }
        } else if !self.outbox.is_empty() {
            log::warn!(
                "shutdown: {} registry changes not made (registry unreachable); -cleanup or a resync at the next start settles them",
                self.outbox.len()
            );
        }
        self.flush();
    }
}

/// The `ignored:` lines of ports left out: at debug level when `quiet` (they repeat).
fn log_ignored(reasons: &[String], quiet: bool) {
    for reason in reasons {
        if quiet {
            log::debug!("ignored: {reason}");
        } else {
            log::info!("ignored: {reason}");
        }
    }
}

/// The container name in a default service ID of this host: `<hostname>:<name>:<port>` or
/// `<hostname>:<name>:<port>:udp` (`:sctp` for a swarm service's SCTP port), with a name as
/// Docker allows them (a swarm service's name is one too).
fn own_container<'a>(id: &'a str, hostname: &str) -> Option<&'a str> {
    let rest = id.strip_prefix(hostname)?.strip_prefix(':')?;
    let mut parts = rest.split(':');
    let (name, port) = (parts.next()?, parts.next()?);
    match (parts.next(), parts.next()) {
        (None, _) | (Some("udp" | "sctp"), None) => {}
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
