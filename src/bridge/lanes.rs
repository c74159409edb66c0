//! Registry calls in flight at once during a sync.
//!
//! A start-up sync of a hundred containers is a hundred registrations, and a registry answers
//! each after some work of its own (Consul: about a millisecond of CPU on a Pi-class core). The
//! worker goes on inspecting the next containers meanwhile, and a few *lanes* make the calls:
//! each lane is a thread that owns a connection of its own to the registry
//! ([`Backend::lane`]) and makes one call at a time.
//!
//! The worker stays the only owner of what is wanted and of the [`Outbox`]'s state: a lane only
//! makes the call it is handed and hands back what the registry said, and the worker settles it
//! ([`Outbox::settle`]). At most one change per registry entry is in flight (a second change to
//! an entry waits for the first, [`Lanes::wait_for`]), and a sync waits for all of them before
//! the worker takes its next message ([`Lanes::wait_all`]): the events of a container are
//! applied in the engine's order, whatever was in flight.
//!
//! Only backends whose calls keep no state between them offer lanes (Consul's agent API);
//! the others make every call on the worker's own connection, as outside a sync.
//!
//! [`Outbox`]: super::outbox::Outbox
//! [`Outbox::settle`]: super::outbox::Outbox::settle

use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::thread;

use std::time::Instant;

use super::outbox::{Outcome, Ready};
use crate::backend::Backend;

/// Calls in flight at once, while the worker goes on with the engine. Measured on two cores
/// (see the README's benchmark): two lanes took a sync of 100 from 0.227 to 0.154 s; one lane
/// with the worker making a call itself whenever the lane was busy gained nothing, as the
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

struct Lane {
    jobs: SyncSender<Ready>,
    /// The registry entry of the change it is making, if any.
    busy: Option<String>,
}

pub struct Lanes {
    lanes: Vec<Lane>,
    done: Receiver<(usize, Done)>,
}

impl Lanes {
    /// `n` lanes on connections of their own, or `None` when the backend offers none (or no
    /// thread could be started: then every call stays on the worker).
    pub fn start(be: &dyn Backend, n: usize) -> Option<Lanes> {
        if n == 0 {
            return None;
        }
        // Bounded channels hold their slots and nothing more: a lane has one change at a
        // time, so neither side ever waits on a full one (an unbounded channel allocates
        // 31 slots a block, some 10 KiB here, per channel).
        let (done_tx, done) = sync_channel(n);
        let mut lanes = Vec::with_capacity(n);
        for i in 0..n {
            let conn = be.lane()?;
            let (jobs, rx) = sync_channel(1);
            let done_tx = done_tx.clone();
            let started = thread::Builder::new()
                .name(format!("lane-{i}"))
                .stack_size(STACK)
                .spawn(move || run(i, conn, rx, done_tx));
            if let Err(e) = started {
                log::warn!("registry calls stay one at a time: start a lane: {e}");
                return None;
            }
            lanes.push(Lane { jobs, busy: None });
        }
        Some(Lanes { lanes, done })
    }

    /// Waits until a change to registry entry `key` can be handed over: none in flight for
    /// that entry, and a lane idle. Returns the changes that finished meanwhile, to be settled
    /// before the next is admitted (one of them may have found the registry down).
    pub fn wait_for(&mut self, key: &str) -> Vec<Done> {
        let mut finished = Vec::new();
        while self.lanes.iter().any(|l| l.busy.as_deref() == Some(key))
            || self.lanes.iter().all(|l| l.busy.is_some())
        {
            match self.next() {
                Some(d) => finished.push(d),
                None => break,
            }
        }
        finished
    }

    /// Hands a change to an idle lane ([`Lanes::wait_for`] first), or gives it back when there
    /// is none (every lane gone, which takes a panic in a backend): the worker then makes it on
    /// its own connection.
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

    /// Waits for every change in flight.
    pub fn wait_all(&mut self) -> Vec<Done> {
        let mut finished = Vec::new();
        while self.lanes.iter().any(|l| l.busy.is_some()) {
            match self.next() {
                Some(d) => finished.push(d),
                None => break,
            }
        }
        finished
    }

    /// The next change to finish; `None` once no lane is left.
    fn next(&mut self) -> Option<Done> {
        match self.done.recv() {
            Ok((i, d)) => {
                self.lanes[i].busy = None;
                Some(d)
            }
            Err(_) => {
                for l in &mut self.lanes {
                    l.busy = None;
                }
                None
            }
        }
    }
}

/// A lane's thread: one call at a time, until the worker drops its [`Lanes`].
fn run(i: usize, mut be: Box<dyn Backend>, jobs: Receiver<Ready>, done: SyncSender<(usize, Done)>) {
    for change in jobs {
        // A panic in a backend (release builds abort on one) still answers the worker, which
        // would otherwise wait for this lane forever.
        let call = std::panic::AssertUnwindSafe(|| change.call(be.as_mut(), Instant::now));
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
        if done.send((i, Done { change, outcome })).is_err() || panicked {
            break;
        }
    }
}
