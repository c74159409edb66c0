//! Registry calls in flight while the worker goes on with the engine.
//!
//! A start-up sync of a hundred containers is a hundred registrations, and a registry answers
//! each after some work of its own (Consul: about a millisecond of CPU on a Pi-class core); a
//! slow registry (a Pi on Wi-Fi) may take seconds for each. Meanwhile the worker should go on:
//! inspecting the next containers of a sync, taking up the next events. A few *lanes* make the
//! calls instead: each lane is a thread that owns a connection of its own to the registry
//! ([`Backend::lane`]) and makes one call at a time.
//!
//! The worker stays the only owner of what is wanted and of the [`Outbox`]'s state: a lane only
//! makes the call it is handed and hands back what the registry said, and the worker settles it
//! ([`Outbox::settle`]). The worker keeps the order: at most one change per registry entry is
//! in flight, and the next change to that entry waits until it is settled (see
//! `Bridge::dispatch`), so the events of a container reach the registry in the engine's order.
//! A lane says it finished on the worker's own input ([`Msg::Lanes`]), so that the worker,
//! asleep between events, wakes to settle it.
//!
//! Only backends whose calls keep no state between them offer lanes (Consul's agent API);
//! the others make every call on the worker's own connection.
//!
//! [`Outbox`]: super::outbox::Outbox
//! [`Outbox::settle`]: super::outbox::Outbox::settle

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, Sender, SyncSender, TryRecvError, TrySendError};
use std::sync::Arc;
use std::thread;

use super::outbox::{Outcome, Ready};
use super::{Clock, Msg};
use crate::backend::Backend;

/// Calls in flight at once, while the worker goes on with the engine. Measured on two cores
/// (see the README's benchmark): two lanes took a sync of 100 from 0.227 to 0.154-0.224 s; one
/// lane with the worker making a call itself whenever the lane was busy gained nothing, as the
/// worker's own calls hold up its inspects.
pub const LANES: usize = 2;

/// A lane's stack: a registry call (ureq, serde_json, rustls) needs far less; only the pages
/// it touches become resident.
const STACK: usize = 256 * 1024;

/// A change a lane made, with what the registry said.
pub struct Done {
    pub change: Ready,
    pub outcome: Outcome,
}

/// Where a lane says it finished a call: the worker's input, and whether a [`Msg::Lanes`] is
/// already on its way there (one wakes the worker for every call finished until it collects).
struct Wake {
    tx: Sender<Msg>,
    sent: Arc<AtomicBool>,
}

struct Lane {
    jobs: SyncSender<Ready>,
    /// The registry entry of the change it is making, if any.
    busy: Option<String>,
}

pub struct Lanes {
    lanes: Vec<Lane>,
    done: Receiver<(usize, Done)>,
    /// A [`Msg::Lanes`] is on its way to the worker.
    woken: Arc<AtomicBool>,
}

impl Lanes {
    /// `n` lanes on connections of their own, or `None` when the backend offers none (or no
    /// thread could be started: then every call stays on the worker). A call's time is read on
    /// `clock`, the worker's; `wake`, the worker's input, is told of every call finished.
    pub fn start(
        be: &dyn Backend,
        n: usize,
        clock: Arc<dyn Clock>,
        wake: Option<Sender<Msg>>,
    ) -> Option<Lanes> {
        if n == 0 {
            return None;
        }
        // Bounded channels hold their slots and nothing more: a lane has one change at a
        // time, so neither side ever waits on a full one (an unbounded channel allocates
        // 31 slots a block, some 10 KiB here, per channel).
        let (done_tx, done) = sync_channel(n);
        let woken = Arc::new(AtomicBool::new(false));
        let mut lanes = Vec::with_capacity(n);
        for i in 0..n {
            let conn = be.lane()?;
            let (jobs, rx) = sync_channel(1);
            let done_tx = done_tx.clone();
            let clock = clock.clone();
            let wake = wake.clone().map(|tx| Wake {
                tx,
                sent: woken.clone(),
            });
            let started = thread::Builder::new()
                .name(format!("lane-{i}"))
                .stack_size(STACK)
                .spawn(move || run(i, conn, rx, done_tx, clock, wake));
            if let Err(e) = started {
                log::warn!("registry calls stay one at a time: start a lane: {e}");
                return None;
            }
            lanes.push(Lane { jobs, busy: None });
        }
        Some(Lanes { lanes, done, woken })
    }

    /// A change to registry entry `key` is in flight.
    pub fn busy_with(&self, key: &str) -> bool {
        self.lanes.iter().any(|l| l.busy.as_deref() == Some(key))
    }

    /// The registry entries of the changes in flight.
    pub fn busy_keys(&self) -> impl Iterator<Item = String> + '_ {
        self.lanes.iter().filter_map(|l| l.busy.clone())
    }

    /// A lane can take a change now.
    pub fn has_idle(&self) -> bool {
        self.lanes.iter().any(|l| l.busy.is_none())
    }

    /// Any change is in flight.
    pub fn in_flight(&self) -> bool {
        self.lanes.iter().any(|l| l.busy.is_some())
    }

    /// Hands a change to an idle lane ([`Lanes::has_idle`] first), or gives it back when there
    /// is none or its thread is gone (which takes a panic in a backend, in a build that unwinds):
    /// the worker then makes it on its own connection.
    pub fn submit(&mut self, change: Ready) -> Option<Ready> {
        let Some(lane) = self.lanes.iter_mut().find(|l| l.busy.is_none()) else {
            return Some(change);
        };
        let key = change.key().to_string();
        // An idle lane's channel is empty: it took its last change before answering it.
        match lane.jobs.try_send(change) {
            Ok(()) => {
                lane.busy = Some(key);
                None
            }
            Err(TrySendError::Full(back) | TrySendError::Disconnected(back)) => Some(back),
        }
    }

    /// The changes finished so far, without waiting.
    pub fn finished(&mut self) -> Vec<Done> {
        // Cleared first: a call finished from now on wakes the worker again.
        self.woken.store(false, Ordering::SeqCst);
        let mut finished = Vec::new();
        loop {
            match self.done.try_recv() {
                Ok((i, d)) => {
                    self.lanes[i].busy = None;
                    finished.push(d);
                }
                Err(TryRecvError::Empty) => return finished,
                Err(TryRecvError::Disconnected) => {
                    self.gone();
                    return finished;
                }
            }
        }
    }

    /// Waits for the next change to finish; `None` when none is in flight or no lane is left.
    pub fn wait(&mut self) -> Option<Done> {
        if !self.in_flight() {
            return None;
        }
        match self.done.recv() {
            Ok((i, d)) => {
                self.lanes[i].busy = None;
                Some(d)
            }
            Err(_) => {
                self.gone();
                None
            }
        }
    }

    /// Every lane is gone (a panic in a backend): none counts as busy any more, and changes
    /// handed over from now on come back to the worker ([`Lanes::submit`]).
    fn gone(&mut self) {
        for l in &mut self.lanes {
            l.busy = None;
        }
    }
}

/// A lane's thread: one call at a time, until the worker drops its [`Lanes`].
fn run(
    i: usize,
    mut be: Box<dyn Backend>,
    jobs: Receiver<Ready>,
    done: SyncSender<(usize, Done)>,
    clock: Arc<dyn Clock>,
    wake: Option<Wake>,
) {
    for change in jobs {
        // A panic in a backend (release builds abort on one) still answers the worker, which
        // would otherwise wait for this lane forever.
        let call = std::panic::AssertUnwindSafe(|| change.call(be.as_mut(), || clock.now()));
        let (outcome, panicked) = match std::panic::catch_unwind(call) {
            Ok(o) => (o, false),
            Err(_) => (
                Outcome {
                    result: Err(crate::backend::Error("registry lane failed".into())),
                    took: std::time::Duration::ZERO,
                },
                true,
            ),
        };
        let answered = done.send((i, Done { change, outcome })).is_ok();
        if let Some(w) = wake
            .as_ref()
            .filter(|w| !w.sent.swap(true, Ordering::SeqCst))
        {
            let _ = w.tx.send(Msg::Lanes);
        }
        if !answered || panicked {
            break;
        }
    }
}
