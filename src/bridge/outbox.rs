//! Delivery to a registry that may be failing: the worker's only retry queue.
//!
//! The worker decides what should be in the registry and hands each change to the [`Outbox`].
//! The outbox makes it now, or keeps it: a call the registry refused is tried again with capped
//! backoff, and while the registry does not answer at all (an *outage*, found by a ping after a
//! failure) every change is *queued* until a ping succeeds. It keeps one change per registry
//! entry, the latest wanted, so its size is bounded by the number of services.
//!
//! It owns no backend and no clock: both are arguments (the clock is read after each call the
//! backend makes, since a registry call may block for seconds), and every call returns what
//! happened, so it never calls back into the worker.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use super::Clock;
use crate::backend::Backend;
use crate::backoff::Backoff;
use crate::docker::container::id12;
use crate::service::Service;

/// First pause before a failed registry call is tried again; it doubles per failure.
pub const RETRY_MIN: Duration = Duration::from_millis(250);
/// Longest pause between two tries of one failed call (a registry that refuses one service).
pub const RETRY_MAX: Duration = Duration::from_secs(60);
/// Longest pause between two pings of a registry that is unreachable: how late at most the
/// daemon notices that it is back.
pub const OUTAGE_PING_MAX: Duration = Duration::from_secs(5);
/// A call that failed after waiting this long got no answer (a black hole, a half-open
/// connection, a timeout): the registry counts as unreachable at once, without a ping that
/// would wait as long again.
pub const NO_ANSWER: Duration = Duration::from_secs(2);
/// A call that succeeded but took this long: the registry is slow (logged once, until a quick
/// call [`PROMPT_AFTER`] later).
pub const SLOW: Duration = Duration::from_secs(1);
/// A slow registry counts as prompt again at a quick call this long after its last slow one:
/// calls in flight at once finish in any order, and a registry under load answers some quickly
/// and some slowly, which would otherwise be said again and again.
pub const PROMPT_AFTER: Duration = Duration::from_secs(10);

/// One change to the registry.
#[derive(Debug, Clone)]
pub enum Op {
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

    pub fn service(&self) -> &Service {
        match self {
            Op::Register { service, .. } | Op::Deregister(service) => service,
        }
    }
}

/// What became of a change handed to [`Outbox::send`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// The registry has it now.
    Made,
    /// It failed: kept, and tried again with backoff.
    Failed,
    /// The registry is unreachable: queued until it is back.
    Queued,
    /// The same change is already waiting: nothing sent, its backoff kept.
    Waiting,
    /// A deregistration of a registration that never reached the registry: nothing to undo.
    Dropped,
}

/// The registry answers again after an outage ([`Outbox::reconnect`]).
#[derive(Debug, Clone, Copy)]
pub struct Recovered {
    /// How long it was unreachable.
    pub after: Duration,
    /// Changes queued meanwhile, made from now on.
    pub queued: usize,
}

/// A failed change: the latest wanted state of one registry entry, tried again at `due`.
#[derive(Debug)]
struct Pending {
    op: Op,
    /// Failed tries so far.
    tries: u32,
    backoff: Backoff,
    due: Instant,
}

impl Pending {
    fn new(op: Op, due: Instant) -> Pending {
        Pending {
            op,
            tries: 0,
            backoff: Backoff::new(RETRY_MIN, RETRY_MAX),
            due,
        }
    }
}

/// A change to make now ([`Outbox::admit`]), on the worker's connection or on a lane; what the
/// registry says goes back to [`Outbox::settle`].
#[derive(Debug)]
pub struct Ready {
    key: String,
    p: Pending,
}

impl Ready {
    /// The registry entry it changes ([`Backend::key`]).
    pub fn key(&self) -> &str {
        &self.key
    }

    pub fn op(&self) -> &Op {
        &self.p.op
    }

    /// The registry call, and how long it took by `now` (read before and after).
    pub fn call(&self, be: &mut dyn Backend, now: impl Fn() -> Instant) -> Outcome {
        let t0 = now();
        let result = match &self.p.op {
            Op::Register { service, .. } => be.register(service),
            Op::Deregister(service) => be.deregister(service),
        };
        Outcome {
            result,
            took: now().saturating_duration_since(t0),
        }
    }
}

/// What the registry said to a call, and after how long.
#[derive(Debug)]
pub struct Outcome {
    pub result: Result<(), crate::backend::Error>,
    pub took: Duration,
}

/// Something tried again on a schedule (a ping during an outage, a flush).
#[derive(Debug)]
struct Retry {
    backoff: Backoff,
    due: Instant,
}

impl Retry {
    fn start(now: Instant, max: Duration) -> Retry {
        let mut backoff = Backoff::new(RETRY_MIN, max);
        let due = now + backoff.pause();
        Retry { backoff, due }
    }
    fn again(&mut self, now: Instant) {
        self.due = now + self.backoff.pause();
    }
}

#[derive(Debug)]
struct Outage {
    since: Instant,
    ping: Retry,
}

#[derive(Debug, Default)]
pub struct Outbox {
    /// Registry entry ([`Backend::key`]) -> the change still to make, in the order the entries
    /// were first kept. A plain list searched linearly: it is empty but during failures and
    /// holds at most one entry per service then, and a map type of its own would cost the
    /// binary more than the searches cost the CPU.
    pending: Vec<(String, Pending)>,
    /// Registry entries registered (or tried: a timeout may come after the write) and not
    /// removed since: what a deregistration must reach.
    in_registry: HashSet<String>,
    outage: Option<Outage>,
    /// The backend's last flush failed (the file could not be written): tried again.
    unflushed: Option<Retry>,
    /// When the last call that took [`SLOW`] or more finished, while the registry counts as
    /// slow (which was logged).
    slow: Option<Instant>,
}

impl Outbox {
    /// The registry is known to be unreachable.
    pub fn is_down(&self) -> bool {
        self.outage.is_some()
    }

    /// A registration of this registry entry was made (or tried) and not undone since.
    pub fn in_registry(&self, key: &str) -> bool {
        self.in_registry.contains(key)
    }

    /// A change to this registry entry is waiting.
    pub fn is_pending(&self, key: &str) -> bool {
        self.position(key).is_some()
    }

    /// A change to this service's registry entry is waiting; its key is only worked out when
    /// anything waits at all (on the event path, nothing does).
    pub fn is_pending_for(&self, be: &dyn Backend, s: &Service) -> bool {
        !self.pending.is_empty() && self.is_pending(&be.key(s))
    }

    /// How many changes wait.
    pub fn len(&self) -> usize {
        self.pending.len()
    }

    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }

    /// When something is due next: a ping during an outage, a retry, a flush.
    pub fn next_due(&self) -> Option<Instant> {
        let flush = self.unflushed.as_ref().map(|r| r.due);
        let calls = match &self.outage {
            Some(o) => Some(o.ping.due),
            None => self.pending.iter().map(|(_, p)| p.due).min(),
        };
        [flush, calls].into_iter().flatten().min()
    }

    /// The registry counts as slow: a call took [`SLOW`] or more, and none was quick since
    /// [`PROMPT_AFTER`] after it.
    pub fn is_slow(&self) -> bool {
        self.slow.is_some()
    }

    /// The registry entries with a change waiting, in order.
    #[cfg(test)]
    pub fn keys(&self) -> Vec<&str> {
        self.pending.iter().map(|(k, _)| k.as_str()).collect()
    }

    fn position(&self, key: &str) -> Option<usize> {
        self.pending.iter().position(|(k, _)| k == key)
    }

    fn take(&mut self, key: &str) -> Option<Pending> {
        self.position(key).map(|i| self.pending.remove(i).1)
    }

    /// Replaces any entry for `key`; a new one goes last.
    fn keep(&mut self, key: String, p: Pending) {
        match self.position(&key) {
            Some(i) => self.pending[i].1 = p,
            None => self.pending.push((key, p)),
        }
    }

    /// Makes one change now, or queues it while the registry is unreachable. It replaces any
    /// change still waiting for the same registry entry: only the latest wanted state is kept,
    /// and a queued registration that never reached the registry and is no longer wanted goes
    /// without a trace. The same change again (a resync, a health event) keeps the waiting
    /// one's backoff.
    pub fn send(&mut self, be: &mut dyn Backend, op: Op, clock: &dyn Clock) -> Delivery {
        let key = be.key(op.service());
        match self.admit(key, op, clock) {
            Ok(ready) => self.attempt(be, ready, clock),
            Err(delivery) => delivery,
        }
    }

    /// What [`Outbox::send`] decides before the call: `Ok` with the change to make now (on the
    /// worker's connection, [`Outbox::attempt`], or on a lane, then [`Outbox::settle`]), or
    /// what became of it instead. `key` is the service's [`Backend::key`].
    pub fn admit(&mut self, key: String, op: Op, clock: &dyn Clock) -> Result<Ready, Delivery> {
        if let Some(i) = self.position(&key) {
            if self.pending[i].1.op.same(&op) {
                return Err(Delivery::Waiting);
            }
        }
        let before = self.take(&key);
        if matches!(op, Op::Deregister(_))
            && matches!(&before, Some(p) if matches!(p.op, Op::Register { .. }))
            && !self.in_registry.contains(&key)
        {
            log::debug!("dropped: {} (never reached the registry)", op.service().id);
            return Err(Delivery::Dropped);
        }
        if self.is_down() {
            log::debug!("queued until the registry is back: {}", op.service().id);
            self.keep(key, Pending::new(op, clock.now()));
            return Err(Delivery::Queued);
        }
        Ok(self.ready(key, Pending::new(op, clock.now())))
    }

    /// A change about to be tried: a registration counts as in the registry from now on (a
    /// timeout may come after the registry wrote it).
    fn ready(&mut self, key: String, p: Pending) -> Ready {
        if let Op::Register { .. } = p.op {
            self.in_registry.insert(key.clone());
        }
        Ready { key, p }
    }

    /// One try of a change on the worker's connection; see [`Outbox::settle`].
    pub fn attempt(&mut self, be: &mut dyn Backend, ready: Ready, clock: &dyn Clock) -> Delivery {
        let outcome = ready.call(be, || clock.now());
        self.settle(be, ready, outcome, clock)
    }

    /// What the registry said to one try of a change: a failure is kept with its backoff, and
    /// a ping (on `be`, the worker's connection) tells whether the registry is down as a whole
    /// (then everything waits for it); a failure that came only after [`NO_ANSWER`] says so
    /// itself.
    pub fn settle(
        &mut self,
        be: &mut dyn Backend,
        ready: Ready,
        outcome: Outcome,
        clock: &dyn Clock,
    ) -> Delivery {
        let Ready { key, p } = ready;
        let Outcome { result, took } = outcome;
        let verb = match p.op {
            Op::Register { .. } => "register",
            Op::Deregister(_) => "deregister",
        };
        match result {
            Ok(()) => {
                if let Op::Deregister(_) = p.op {
                    self.in_registry.remove(&key);
                }
                delivered(&p.op, p.tries);
                self.timed(verb, &p.op, took, clock.now());
                Delivery::Made
            }
            Err(e) => {
                let mut p = p;
                p.tries += 1;
                let delay = p.backoff.pause();
                p.due = clock.now() + delay;
                let tries = p.tries;
                // Every failure of a call that keeps failing would be noise: 1st, 2nd, 4th, ...
                if tries.is_power_of_two() {
                    log::error!("{verb} failed: {e} (try {tries}; next in {delay:?})");
                } else {
                    log::debug!("{verb} failed: {e} (try {tries}; next in {delay:?})");
                }
                self.keep(key, p);
                if took >= NO_ANSWER {
                    self.down(&format!("no answer in {took:.1?}"), clock);
                } else {
                    self.probe(be, clock);
                }
                Delivery::Failed
            }
        }
    }

    /// Says once when the registry turns slow, and once when it is quick again (a quick call
    /// [`PROMPT_AFTER`] or more after the last slow one).
    fn timed(&mut self, verb: &str, op: &Op, took: Duration, now: Instant) {
        if took >= SLOW {
            if self.slow.is_none() {
                log::warn!("registry slow: {verb} {} took {took:.1?}", op.service().id);
            }
            self.slow = Some(now);
        } else if self
            .slow
            .is_some_and(|at| now.saturating_duration_since(at) >= PROMPT_AFTER)
        {
            self.slow = None;
            log::info!("registry answering promptly again ({verb} took {took:.1?})");
        }
    }

    /// After a failure: is the registry there at all? If not, an outage begins.
    pub fn probe(&mut self, be: &mut dyn Backend, clock: &dyn Clock) {
        if self.is_down() {
            return;
        }
        if let Err(e) = be.ping() {
            self.down(&e.to_string(), clock);
        }
    }

    /// An outage begins: every change waits for a ping to succeed.
    fn down(&mut self, why: &str, clock: &dyn Clock) {
        if self.is_down() {
            return;
        }
        let now = clock.now();
        log::warn!(
            "registry unreachable ({why}); holding changes and retrying with backoff up to {OUTAGE_PING_MAX:?}"
        );
        self.outage = Some(Outage {
            since: now,
            ping: Retry::start(now, OUTAGE_PING_MAX),
        });
    }

    /// During an outage, when its ping is due: pings. `Some` when the registry answers again;
    /// the worker then registers everything again ([`Outbox::register_again`]), as the
    /// registry may have restarted without its data.
    pub fn reconnect(&mut self, be: &mut dyn Backend, clock: &dyn Clock) -> Option<Recovered> {
        let o = self.outage.as_mut()?;
        if clock.now() < o.ping.due {
            return None;
        }
        let answer = be.ping();
        let now = clock.now();
        if let Err(e) = answer {
            log::debug!("registry still unreachable: {e}");
            o.ping.again(now);
            return None;
        }
        let after = now.saturating_duration_since(o.since);
        self.outage = None;
        Some(Recovered {
            after,
            queued: self.pending.len(),
        })
    }

    /// Queues a registration of each service that has no change waiting, due now; returns how
    /// many. For a registry that came back, or lost what it held.
    pub fn register_again(
        &mut self,
        be: &mut dyn Backend,
        services: impl IntoIterator<Item = Service>,
        now: Instant,
    ) -> usize {
        let mut n = 0;
        for service in services {
            let key = be.key(&service);
            if !self.is_pending(&key) {
                n += 1;
                let op = Op::Register {
                    service,
                    known: true,
                };
                self.keep(key, Pending::new(op, now));
            }
        }
        n
    }

    /// The registry entries whose change is due at `now`, in the order they were kept (one
    /// entry per service: no order between them matters); none during an outage.
    pub fn due(&self, now: Instant) -> Vec<String> {
        if self.is_down() {
            return Vec::new();
        }
        (self.pending.iter())
            .filter(|(_, p)| p.due <= now)
            .map(|(key, _)| key.clone())
            .collect()
    }

    /// Tries the change waiting for one registry entry again (nothing during an outage).
    /// Returns the service if it was a registration the registry took now.
    pub fn retry(&mut self, be: &mut dyn Backend, key: &str, clock: &dyn Clock) -> Option<Service> {
        if self.is_down() {
            return None;
        }
        let p = self.take(key)?;
        let service = match &p.op {
            Op::Register { service, .. } => Some(service.clone()),
            Op::Deregister(_) => None,
        };
        let ready = self.ready(key.to_string(), p);
        match self.attempt(be, ready, clock) {
            Delivery::Made => service,
            _ => None,
        }
    }

    /// Writes what the backend batches (the file backend's whole view); a failure is tried
    /// again with backoff.
    pub fn flush(&mut self, be: &mut dyn Backend, clock: &dyn Clock) {
        let result = be.flush();
        let now = clock.now();
        match result {
            Ok(()) => {
                if self.unflushed.take().is_some() {
                    log::info!("registry written again");
                }
            }
            Err(e) => match &mut self.unflushed {
                Some(r) => {
                    log::debug!("{e}");
                    r.again(now);
                }
                None => {
                    log::error!("{e}; trying again with backoff");
                    self.unflushed = Some(Retry::start(now, OUTAGE_PING_MAX));
                }
            },
        }
    }

    /// At shutdown: the deregistrations still waiting, taken out; the rest is dropped.
    pub fn take_deregistrations(&mut self) -> Vec<Service> {
        std::mem::take(&mut self.pending)
            .into_iter()
            .filter_map(|(_, p)| match p.op {
                Op::Deregister(s) => Some(s),
                Op::Register { .. } => None,
            })
            .collect()
    }

    /// Makes a deregistration now, once, without keeping it on failure (shutdown).
    pub fn deregister_once(&mut self, be: &mut dyn Backend, s: Service) -> Result<(), String> {
        match be.deregister(&s) {
            Ok(()) => {
                self.in_registry.remove(&be.key(&s));
                delivered(&Op::Deregister(s), 0);
                Ok(())
            }
            Err(e) => Err(e.to_string()),
        }
    }
}

/// The log line of a change the registry took.
fn delivered(op: &Op, tries: u32) {
    let s = op.service();
    let c = if s.container_id.is_empty() {
        "-"
    } else {
        id12(&s.container_id)
    };
    let again = if tries > 0 { " (after a retry)" } else { "" };
    match op {
        Op::Register { known: true, .. } if tries == 0 => log::debug!("refreshed: {c} {}", s.id),
        Op::Register { .. } => log::info!("added: {c} {}{again}", s.id),
        Op::Deregister(_) => log::info!("removed: {c} {}{again}", s.id),
    }
}
