//! `-swarm` in the worker: managers register the swarm services' ingress ports.
//!
//! A port a swarm service publishes in ingress mode is answered on every node of the swarm
//! (the routing mesh), so a manager registers it once per service and port, at its own
//! address, as the service's labels say ([`service::swarm_services`]). Only managers can list
//! services (`/services` and `/nodes` answer nowhere else): workers, like managers, register
//! their task containers as any container. The registrations are kept in the worker's
//! `registered` under `swarm:<service ID>`, beside the containers', so outages, `-cleanup`,
//! `-deregister-on-shutdown` and `-resync` treat them alike.
//!
//! When: at every sync, after reading this node's role from `/info`; at each service event (the
//! service is looked up: a create or an update registers what it has now and removes what it no
//! longer has, a service gone is deregistered); at node events about this node (a promotion or
//! a demotion).

use std::collections::HashSet;

use super::{Bridge, Pass};
use crate::docker::swarm::{Role, Service as SwarmService, SwarmInfo};
use crate::service;

const PREFIX: &str = "swarm:";

/// Where the worker keeps a swarm service's registrations (and their `container_id`).
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
    /// `None` before the first look, or while the engine has not answered one.
    role: Option<Role>,
    node_id: String,
    /// Where swarm services are registered (on a manager): `-ip`, else this node's address.
    addr: String,
}

impl Bridge {
    /// `-swarm` at a sync: reads this node's role and, on a manager, registers every swarm
    /// service and removes the registrations of services gone. False when something could not
    /// be read (then `-cleanup` waits: what is registered stays as it was).
    pub(super) fn sync_swarm(&mut self, pass: Pass) -> bool {
        if self.swarm.is_none() {
            return true;
        }
        match self.swarm_look() {
            None => return false,
            Some(Role::Manager) if !self.settings.internal => {}
            Some(_) => return true,
        }
        let list = match self.docker.services() {
            Ok(l) => l,
            Err(e) => {
                log::error!("docker: list swarm services: {e}");
                return false;
            }
        };
        log::debug!("sync: {} swarm services", list.len());
        let listed: HashSet<String> = list.iter().map(|s| key(&s.id)).collect();
        for s in &list {
            self.register_swarm(s, pass);
        }
        let gone: Vec<String> = (self.registered.keys())
            .filter(|k| is_key(k) && !listed.contains(*k))
            .cloned()
            .collect();
        for k in gone {
            self.remove(&k);
        }
        true
    }

    /// A service event (`create`, `update`, `remove`): the service as it is now is registered,
    /// or deregistered when it is gone. Scaling is an update that changes no registration.
    pub(super) fn swarm_service_event(&mut self, id: &str) {
        let Some(sw) = self.swarm.as_ref() else {
            return;
        };
        let role = match sw.role {
            Some(r) => Some(r),
            None => self.swarm_look(),
        };
        if role != Some(Role::Manager) || self.settings.internal {
            return;
        }
        match self.docker.service(id) {
            Ok(Some(s)) => self.register_swarm(&s, Pass::Event),
            Ok(None) => self.remove(&key(id)),
            Err(e) => log::error!("docker: swarm service {id}: {e}"),
        }
    }

    /// A node event: when it is about this node, its role may have changed. A node promoted to
    /// manager registers the swarm services at once; one demoted removes them.
    pub(super) fn swarm_node_event(&mut self, node_id: &str) {
        let Some(sw) = self.swarm.as_ref() else {
            return;
        };
        if !sw.node_id.is_empty() && sw.node_id != node_id {
            return;
        }
        let was = sw.role;
        if self.swarm_look() == Some(Role::Manager) && was != Some(Role::Manager) {
            self.sync_swarm(Pass::Event);
        }
    }

    fn register_swarm(&mut self, s: &SwarmService, pass: Pass) {
        let Some(addr) = self.swarm.as_ref().map(|sw| sw.addr.clone()) else {
            return;
        };
        let k = key(&s.id);
        let (services, ignored) = service::swarm_services(s, &self.settings, &addr, &k);
        for reason in ignored {
            if pass.quiet() {
                log::debug!("ignored: {reason}");
            } else {
                log::info!("ignored: {reason}");
            }
        }
        self.apply(&k, services, pass, None, None);
    }

    /// Reads this node's part in its swarm (`/info`, and on a manager its address), says so
    /// when it changed, and when the node stopped being a manager removes the swarm services'
    /// registrations. `None` when the engine did not answer.
    fn swarm_look(&mut self) -> Option<Role> {
        let info = match self.docker.swarm_info() {
            Ok(i) => i,
            Err(e) => {
                log::error!("docker: info (-swarm): {e}");
                return None;
            }
        };
        let role = info.role();
        let addr = match (role, &self.settings.ip) {
            (Role::Manager, Some(ip)) => ip.clone(),
            (Role::Manager, None) => self.node_addr(&info)?,
            _ => String::new(),
        };
        let sw = self.swarm.as_mut()?;
        let (was, was_addr) = (sw.role, std::mem::replace(&mut sw.addr, addr));
        sw.role = Some(role);
        sw.node_id = info.node_id.clone();
        if was == Some(role) && was_addr == sw.addr {
            return Some(role);
        }
        match role {
            Role::Manager if self.settings.internal => log::info!(
                "swarm: this node is a manager; with -internal, swarm services are listed by their task containers (overlay address and target port), not by their ingress ports"
            ),
            Role::Manager => log::info!(
                "swarm: this node is a manager; registering the swarm services' ingress ports at {}",
                sw.addr
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
        if was == Some(Role::Manager) && role != Role::Manager {
            self.drop_swarm_services();
        }
        Some(role)
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
        None
    }

    /// Not a manager any more: the swarm services' registrations go.
    fn drop_swarm_services(&mut self) {
        let keys: Vec<String> = (self.registered.keys())
            .filter(|k| is_key(k))
            .cloned()
            .collect();
        if !keys.is_empty() {
            log::info!(
                "swarm: not a manager any more; removing the registrations of {} swarm services",
                keys.len()
            );
        }
        for k in keys {
            self.remove(&k);
        }
    }
}
