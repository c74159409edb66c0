//! `-swarm` in the worker: managers register the swarm services' ingress ports.
//!
//! A port a swarm service publishes in ingress mode is answered on every node of the swarm
//! (the routing mesh), so a manager registers it once per service and port, at its own
//! address, as the service's labels say ([`service::swarm_services`]). Only managers can list
//! services (`/services` and `/nodes` answer nowhere else): workers, like managers, register
//! their task containers as any container. The entries are kept in the worker's `registered`
//! under `swarm:<service ID>`, beside the containers', so outages, `-cleanup`,
//! `-deregister-on-shutdown` and `-resync` treat them alike.
//!
//! When: at every sync, after looking at this node's role (`/info`); at each service event (the
//! service is looked up: a create or an update registers what it has now and removes what it no
//! longer has, a service gone is deregistered); at node events about this node (a promotion or
//! a demotion), looked at again 2, 4, 8 and 16 s later since `/info` may show the change a while
//! after its event. A worker gets no swarm events: its promotion shows at its first service
//! event or the next sync (`-resync`). When the swarm could not be read (the node pending or
//! locked, a manager without a leader yet), it is read again with backoff from 2 s to 60 s
//! until it can be, then every service is registered again and a deferred `-cleanup` runs.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use super::{Bridge, Pass};
use crate::docker::swarm::{Role, Service as SwarmService, SwarmInfo};
use crate::service;

const PREFIX: &str = "swarm:";
/// The first pause before the role is looked at again (after a node event about this node, or
/// while the swarm cannot be read); it doubles at each look, up to [`LOOK_MAX`].
const LOOK_AGAIN: Duration = Duration::from_secs(2);
const LOOK_MAX: Duration = Duration::from_secs(60);
/// Looks after a node event about this node: 2, 4, 8 and 16 s after it.
const NODE_LOOKS: u32 = 4;

/// Where the worker keeps a swarm service's entries (and their `container_id`).
pub(super) fn key(service_id: &str) -> String {
    format!("{PREFIX}{service_id}")
}

/// A key of [`key`], not a container's ID (hexadecimal).
pub(super) fn is_key(k: &str) -> bool {
    k.starts_with(PREFIX)
}

/// What this node is in its swarm, as last read.
#[derive(Debug, Default)]
pub(super) struct Swarm {
    /// `None` before the first look, or while the engine has not said.
    role: Option<Role>,
    /// The swarm state (`pending`, `error`, `locked`) of a node that cannot take part now,
    /// said once.
    unsettled: Option<String>,
    node_id: String,
    /// Where swarm services are registered (on a manager): `-ip`, else this node's address.
    addr: String,
    /// When to look at the role again, and the pause after that one (see [`LOOK_AGAIN`]).
    look_again: Option<Instant>,
    pause: Duration,
    /// Looks still to come after a node event about this node.
    node_looks: u32,
    /// Something could not be read (the role, the list, a service): what is registered may be
    /// stale. Looked at again with backoff until the services are listed.
    dirty: bool,
    /// Service ID -> the `ignored:` reasons logged last, so that the several events of one
    /// rolling update do not repeat them at info level.
    ignored: HashMap<String, Vec<String>>,
}

impl Swarm {
    pub(super) fn next_due(&self) -> Option<Instant> {
        self.look_again
    }

    /// The next look, after the current pause (which then doubles), unless one is due sooner.
    fn look_later(&mut self, now: Instant) {
        let at = now.checked_add(self.pause.max(LOOK_AGAIN));
        if self.look_again.is_none() || at < self.look_again {
            self.look_again = at;
            self.pause = (self.pause.max(LOOK_AGAIN) * 2).min(LOOK_MAX);
        }
    }

    /// Something could not be read: look again later.
    fn failed(&mut self, now: Instant) {
        self.dirty = true;
        self.look_later(now);
    }

    /// Every service was listed: nothing is stale any more.
    fn settled(&mut self) {
        self.dirty = false;
        if self.node_looks == 0 {
            self.look_again = None;
            self.pause = LOOK_AGAIN;
        }
    }
}

impl Bridge {
    /// `-swarm` at a sync: looks at this node's role and, on a manager, registers every swarm
    /// service and removes the entries of services gone. False when something could not be
    /// read (then `-cleanup` waits: what is registered stays as it was).
    pub(super) fn sync_swarm(&mut self, pass: Pass) -> bool {
        if self.swarm.is_none() {
            return true;
        }
        match self.swarm_look() {
            None => false,
            Some((Role::Manager, _)) if !self.settings.internal => self.list_services(pass),
            Some(_) => true,
        }
    }

    /// A service event (`create`, `update`, `remove`): the service as it is now is registered,
    /// or deregistered when it is gone. Scaling is an update that changes no entry. Only
    /// managers get these events, so a node not known to be one looks again first.
    pub(super) fn swarm_service_event(&mut self, id: &str) {
        let Some(sw) = self.swarm.as_ref() else {
            return;
        };
        let (role, changed) = match sw.role {
            Some(Role::Manager) => (Role::Manager, false),
            _ => match self.swarm_look() {
                Some(look) => look,
                None => return,
            },
        };
        if role != Role::Manager || self.settings.internal {
            return;
        }
        if changed {
            // Just became a manager (or moved, or the swarm could not be read before): every
            // service, this one with them.
            self.relist();
            return;
        }
        match self.docker.service(id) {
            Ok(Some(s)) => self.register_swarm(&s, Pass::Event),
            Ok(None) => self.remove_swarm(id),
            Err(e) => {
                log::error!("docker: swarm service {id}: {e}");
                let now = self.clock.now();
                if let Some(sw) = self.swarm.as_mut() {
                    sw.failed(now);
                }
            }
        }
    }

    /// A node event: when it is about this node, its role may have changed; looked at now and
    /// again a moment later.
    pub(super) fn swarm_node_event(&mut self, node_id: &str) {
        let now = self.clock.now();
        let Some(sw) = self.swarm.as_mut() else {
            return;
        };
        if !sw.node_id.is_empty() && sw.node_id != node_id {
            return;
        }
        sw.node_looks = NODE_LOOKS;
        sw.pause = LOOK_AGAIN;
        sw.look_again = None;
        sw.look_later(now);
        self.look_and_relist();
    }

    /// The look-again timer: true when it was due (and the worker has changes to flush).
    pub(super) fn swarm_tick(&mut self) -> bool {
        let now = self.clock.now();
        let Some(sw) = self.swarm.as_mut() else {
            return false;
        };
        if sw.look_again.is_none_or(|at| now < at) {
            return false;
        }
        sw.look_again = None;
        sw.node_looks = sw.node_looks.saturating_sub(1);
        if sw.node_looks > 0 {
            sw.look_later(now);
        }
        self.look_and_relist();
        let now = self.clock.now();
        if let Some(sw) = self.swarm.as_mut().filter(|sw| sw.dirty) {
            sw.look_later(now);
        }
        true
    }

    /// Looks at the role; a node that just became a manager, whose address moved, or whose
    /// swarm could not be read before, registers every service.
    fn look_and_relist(&mut self) {
        if let Some((Role::Manager, true)) = self.swarm_look() {
            self.relist();
        }
    }

    /// Every service again, on a manager that registers them; with a `-cleanup` deferred
    /// meanwhile, as a whole sync (which runs it).
    fn relist(&mut self) {
        if self.settings.internal {
            return;
        }
        if self.opts.cleanup && self.cleanup_due {
            self.sync(Pass::Resync);
        } else {
            self.list_services(Pass::Event);
        }
    }

    /// Registers every swarm service and removes the entries of services gone; false when the
    /// engine did not list them.
    fn list_services(&mut self, pass: Pass) -> bool {
        let list = match self.docker.services() {
            Ok(l) => l,
            Err(e) => {
                log::error!("docker: list swarm services: {e}");
                let now = self.clock.now();
                if let Some(sw) = self.swarm.as_mut() {
                    sw.failed(now);
                }
                return false;
            }
        };
        log::debug!("sync: {} swarm services", list.len());
        if !self.lanes_tried && list.len() > 2 {
            self.start_lanes();
        }
        let listed: HashSet<String> = list.iter().map(|s| key(&s.id)).collect();
        for s in &list {
            self.register_swarm(s, pass);
        }
        let gone: Vec<String> = (self.registered.keys())
            .filter(|k| is_key(k) && !listed.contains(*k))
            .filter_map(|k| k.strip_prefix(PREFIX).map(str::to_string))
            .collect();
        for id in gone {
            self.remove_swarm(&id);
        }
        if let Some(sw) = self.swarm.as_mut() {
            // Reasons of services gone (never registered, so not among `gone`).
            sw.ignored.retain(|id, _| listed.contains(&key(id)));
            sw.settled();
        }
        true
    }

    fn register_swarm(&mut self, s: &SwarmService, pass: Pass) {
        let Some(sw) = self.swarm.as_mut() else {
            return;
        };
        let k = key(&s.id);
        let (services, ignored) = service::swarm_services(s, &self.settings, &sw.addr, &k);
        // Said at info when it is news for this service.
        let news = sw.ignored.get(&s.id) != Some(&ignored);
        super::log_ignored(&ignored, pass.quiet() || !news);
        if ignored.is_empty() {
            sw.ignored.remove(&s.id);
        } else {
            sw.ignored.insert(s.id.clone(), ignored);
        }
        self.apply(&k, services, pass, None, None);
    }

    fn remove_swarm(&mut self, id: &str) {
        if let Some(sw) = self.swarm.as_mut() {
            sw.ignored.remove(id);
        }
        self.remove(&key(id));
    }

    /// Reads this node's part in its swarm and, when it changed, says so and acts on a
    /// demotion. The role and whether it (or this manager's address) changed; `None` when it
    /// could not be read, or the node cannot take part in its swarm now (what is registered
    /// then stays as it is, and it is looked at again soon).
    fn swarm_look(&mut self) -> Option<(Role, bool)> {
        let (role, addr, info) = self.read_role()?;
        let sw = self.swarm.as_mut()?;
        sw.unsettled = None;
        let was = sw.role.replace(role);
        let moved = std::mem::replace(&mut sw.addr, addr) != sw.addr;
        if was != Some(role) || moved {
            log_role(role, &sw.addr, &info, self.settings.internal);
        }
        let stale = sw.dirty;
        if role != Role::Manager {
            // Nothing of the swarm to read here.
            sw.settled();
        }
        if was == Some(Role::Manager) && role != Role::Manager {
            self.drop_swarm_services();
        }
        Some((role, was != Some(role) || moved || stale))
    }

    /// `/info`, and for a manager its address (unless `-ip` gives one, or `-internal` needs
    /// none). `None` with the reason logged.
    fn read_role(&mut self) -> Option<(Role, String, SwarmInfo)> {
        let now = self.clock.now();
        let info = match self.docker.swarm_info() {
            Ok(i) => i,
            Err(e) => {
                log::error!("docker: info (-swarm): {e}");
                self.swarm.as_mut()?.failed(now);
                return None;
            }
        };
        let sw = self.swarm.as_mut()?;
        sw.node_id = info.node_id.clone();
        let Some(role) = info.role() else {
            if sw.unsettled.as_deref() != Some(info.local_node_state.as_str()) {
                log::warn!(
                    "swarm: this node's swarm state is {:?}; what is registered stays until it is active",
                    info.local_node_state
                );
                sw.unsettled = Some(info.local_node_state.clone());
            }
            sw.failed(now);
            return None;
        };
        let addr = match (role, &self.settings.ip) {
            (Role::Manager, _) if self.settings.internal => String::new(),
            (Role::Manager, Some(ip)) => ip.clone(),
            (Role::Manager, None) => self.node_addr(&info)?,
            _ => String::new(),
        };
        Some((role, addr, info))
    }

    /// This manager's address: its node's `Status.Addr`, else (an engine may say `0.0.0.0`
    /// there) the address it advertises to the swarm.
    fn node_addr(&mut self, info: &SwarmInfo) -> Option<String> {
        let from_node = match self.docker.node_addr(&info.node_id) {
            Ok(a) => a.unwrap_or_default(),
            Err(e) => {
                log::warn!("docker: node {}: {e}", info.node_id);
                String::new()
            }
        };
        let usable = |a: &str| !matches!(a, "" | "0.0.0.0" | "::");
        if usable(&from_node) {
            return Some(from_node);
        }
        if usable(&info.node_addr) {
            return Some(info.node_addr.clone());
        }
        log::error!(
            "swarm: this node's address is unknown (node {}: {from_node:?}); swarm services wait for it (or set -ip)",
            info.node_id
        );
        let now = self.clock.now();
        self.swarm.as_mut()?.failed(now);
        None
    }

    /// Not a manager any more: the swarm services' entries go.
    fn drop_swarm_services(&mut self) {
        let ids: Vec<String> = (self.registered.keys())
            .filter_map(|k| k.strip_prefix(PREFIX).map(str::to_string))
            .collect();
        if !ids.is_empty() {
            log::info!(
                "swarm: not a manager any more; removing the entries of {} swarm services",
                ids.len()
            );
        }
        for id in ids {
            self.remove_swarm(&id);
        }
        if let Some(sw) = self.swarm.as_mut() {
            sw.ignored.clear();
        }
    }

    /// This node registers swarm services now: a manager, without `-internal`.
    pub(super) fn registers_swarm_services(&self) -> bool {
        let manager = self
            .swarm
            .as_ref()
            .is_some_and(|sw| sw.role == Some(Role::Manager));
        manager && !self.settings.internal
    }
}

/// The line that says what `-swarm` does on this node, at start and when that changes.
fn log_role(role: Role, addr: &str, info: &SwarmInfo, internal: bool) {
    match role {
        Role::Manager if internal => log::info!(
            "swarm: this node is a manager; with -internal, swarm services are listed by their task containers (overlay address and target port), not by their ingress ports"
        ),
        Role::Manager => log::info!(
            "swarm: this node is a manager; registering the swarm services' ingress ports at {addr}"
        ),
        Role::Worker => log::info!(
            "swarm: this node is a worker; swarm services are registered by the managers (only they can list them), task containers here as any container"
        ),
        Role::Outside if info.local_node_state.is_empty() => {
            log::info!("swarm: this engine has no swarm; -swarm changes nothing here")
        }
        Role::Outside => log::info!(
            "swarm: this node is in no swarm (state {:?}); -swarm changes nothing here",
            info.local_node_state
        ),
    }
}
