//! The health mirror: a container's Docker HEALTHCHECK status reported to the registry check
//! of each of its services registered with `SERVICE_CHECK_DOCKER` (Consul's TTL check), on
//! every change and again every [`REPORT_EVERY`] so that the check does not expire.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use super::outbox::{Delivery, Op, Outbox};
use super::Clock;
use crate::backend::{Backend, Health};
use crate::docker::container::id12;
use crate::service::{self, Service};

/// How often the Docker health of services with `SERVICE_CHECK_DOCKER` is reported again (the
/// Consul check's TTL is three times this: see `backend::consul::DOCKER_CHECK_TTL`).
pub const REPORT_EVERY: Duration = Duration::from_secs(20);

#[derive(Debug, Default)]
pub struct Mirror {
    /// Container ID -> its Docker health, for containers with a service whose check mirrors it.
    mirrored: HashMap<String, Health>,
    /// When every check is reported again; set while there is one.
    next_report: Option<Instant>,
}

impl Mirror {
    pub fn get(&self, container: &str) -> Option<Health> {
        self.mirrored.get(container).copied()
    }

    pub fn contains(&self, container: &str) -> bool {
        self.mirrored.contains_key(container)
    }

    pub fn is_empty(&self) -> bool {
        self.mirrored.is_empty()
    }

    /// The container's health now, or `None` when none of its services mirrors it; returns
    /// what it was.
    pub fn set(&mut self, container: &str, health: Option<Health>, now: Instant) -> Option<Health> {
        let before = match health {
            Some(h) => self.mirrored.insert(container.to_string(), h),
            None => self.mirrored.remove(container),
        };
        if self.mirrored.is_empty() {
            self.next_report = None;
        } else if self.next_report.is_none() {
            self.next_report = Some(now + REPORT_EVERY);
        }
        before
    }

    /// A service whose registration is followed by a report: its check mirrors a container
    /// whose health is known.
    pub fn mirrors(&self, s: &Service) -> bool {
        docker_check(s) && self.contains(&s.container_id)
    }

    pub fn forget(&mut self, container: &str) {
        self.mirrored.remove(container);
        if self.mirrored.is_empty() {
            self.next_report = None;
        }
    }

    /// When every check is reported again, if any.
    pub fn next_due(&self) -> Option<Instant> {
        self.next_report
    }

    /// Reports one service's health to its check. A failure means the registry is down (then
    /// the recovery registers everything again, and each registration reports) or lost the
    /// service and its check (then the service is registered again, and reported once more).
    pub fn report(
        &self,
        be: &mut dyn Backend,
        outbox: &mut Outbox,
        s: &Service,
        h: Health,
        clock: &dyn Clock,
    ) {
        if outbox.is_down() || outbox.is_pending_for(be, s) {
            return;
        }
        match be.check(s, h) {
            Ok(()) => log::debug!("health: {} {} {}", id12(&s.container_id), s.id, h.name()),
            Err(e) => {
                outbox.probe(be, clock);
                if outbox.is_down() {
                    return;
                }
                log::warn!("{e}; registering {} again", s.id);
                let op = Op::Register {
                    service: s.clone(),
                    known: false,
                };
                if outbox.send(be, op, clock) == Delivery::Made {
                    if let Err(e) = be.check(s, h) {
                        log::warn!("{e} (after registering {} again)", s.id);
                    }
                }
            }
        }
    }

    /// A service was registered: its check starts from the container's health now.
    pub fn registered(
        &self,
        be: &mut dyn Backend,
        outbox: &mut Outbox,
        s: &Service,
        clock: &dyn Clock,
    ) {
        if be.has_checks() && docker_check(s) {
            if let Some(h) = self.get(&s.container_id) {
                self.report(be, outbox, s, h, clock);
            }
        }
    }

    /// Every mirrored check, reported again before its TTL runs out, but those of registry
    /// entries in `on_lanes` (a change on its way: it reports when made); the next time is set.
    pub fn report_all(
        &mut self,
        registered: &HashMap<String, Vec<Service>>,
        on_lanes: &HashSet<String>,
        be: &mut dyn Backend,
        outbox: &mut Outbox,
        clock: &dyn Clock,
    ) {
        for (id, &h) in &self.mirrored {
            for s in registered.get(id).into_iter().flatten() {
                if docker_check(s) && (on_lanes.is_empty() || !on_lanes.contains(&be.key(s))) {
                    self.report(be, outbox, s, h, clock);
                }
            }
        }
        self.next_report = (!self.mirrored.is_empty()).then(|| clock.now() + REPORT_EVERY);
    }
}

/// `SERVICE_CHECK_DOCKER` (or the per-port form) is true.
pub fn docker_check(s: &Service) -> bool {
    s.attrs
        .get("check_docker")
        .and_then(|v| service::boolean(v))
        .unwrap_or(false)
}
