//! `-swarm`'s engine answers and what a manager makes of them: the input read as `GET /services`
//! (a list), `GET /services/{id}`, `GET /info` and `GET /nodes/{id}` JSON, and a swarm service
//! built from the input's fields (name, labels, ports with any numbers, protocols and modes,
//! replicas), each through `service::swarm_services` with the settings from the first bytes.
//!
//! Input: two bytes of settings, then either JSON (flags bit 0 clear) or fields (bit 0 set)
//! separated by 0x00: a field's first byte picks its kind (low 2 bits) and an entry of that
//! kind's table (the other bits); the rest is raw text, a label's key and value split at 0x01,
//! a port's target and published numbers written `target,published` in decimal.
//!
//! Invariants: no panic; every registration comes from one ingress port with a published port
//! (its port is the published one, its `exposed_port` the target, its protocol the port's), has a
//! non-empty ID and name, the manager's address (or `-useIpFromLabel`'s), the worker's key,
//! `udp` last among its tags for a UDP port; no two share an ID when no `SERVICE_*ID`
//! is set and the published ports differ; a service scaled to 0 has none; every ingress port
//! gives a registration or an `ignored` reason.
#![no_main]

use std::collections::{BTreeMap, BTreeSet};

use libfuzzer_sys::fuzz_target;
use registrator_fuzz::docker::swarm::{Info, Node, PortConfig, Replicated, Service};
use registrator_fuzz::harness::{check, Src};
use registrator_fuzz::service::{swarm_services, Settings};

const KEY: &str = "swarm:fuzz";
const ADDR: &str = "10.0.0.5";
const LABELS: &[&str] = &[
    "",
    "SERVICE_NAME",
    "SERVICE_ID",
    "SERVICE_TAGS",
    "SERVICE_IGNORE",
    "SERVICE_80_NAME",
    "SERVICE_80_ID",
    "SERVICE_53_UDP_NAME",
    "SERVICE_1-100_TAGS",
    "SERVICE_CHECK_HTTP",
    "ipl",
    "SERVICE_80_",
];
const PROTOCOLS: &[&str] = &["tcp", "udp", "", "sctp", "TCP", "x"];
const MODES: &[&str] = &["ingress", "host", "", "Ingress"];
const NAMES: &[&str] = &["web", "", "a:b", "svc-1"];

fuzz_target!(|data: &[u8]| {
    let mut src = Src::new(data);
    let (b0, b1) = (src.byte(), src.byte());
    let settings = Settings {
        hostname: ["h", "", "h:x"][usize::from(b1) % 3].into(),
        ip: (b0 & 2 != 0).then(|| "192.0.2.9".into()),
        explicit: b0 & 4 != 0,
        ip_label: (b0 & 8 != 0).then(|| "ipl".into()),
        tags: if b0 & 16 != 0 { vec!["forced".into()] } else { Vec::new() },
        swarm: true,
        ..Settings::default()
    };
    let payload = src.rest();
    if b0 & 1 == 0 {
        if let Ok(list) = serde_json::from_slice::<Vec<Service>>(payload) {
            for s in &list {
                check_service(s, &settings);
            }
        }
        if let Ok(s) = serde_json::from_slice::<Service>(payload) {
            check_service(&s, &settings);
        }
        if let Ok(info) = serde_json::from_slice::<Info>(payload) {
            let _ = info.swarm.role();
        }
        let _ = serde_json::from_slice::<Node>(payload);
    } else {
        check_service(&build(payload), &settings);
    }
});

/// A service from fields: 0 name, 1 label, 2 port (protocol and mode from the kind byte,
/// `target,published` after it), 3 replicas (0 to 3).
fn build(payload: &[u8]) -> Service {
    let mut s = Service::default();
    for field in payload.split(|&b| b == 0) {
        let Some((&k, rest)) = field.split_first() else {
            continue;
        };
        let sub = usize::from(k >> 2);
        match k & 3 {
            0 => {
                let base = NAMES[sub % NAMES.len()];
                s.spec.name = format!("{base}{}", String::from_utf8_lossy(rest));
            }
            1 => {
                let at = rest.iter().position(|&b| b == 1).unwrap_or(rest.len());
                let (key, value) = (&rest[..at], rest.get(at + 1..).unwrap_or(&[]));
                let prefix = LABELS.get(sub).copied().unwrap_or("");
                let key = format!("{prefix}{}", String::from_utf8_lossy(key));
                s.spec
                    .labels
                    .insert(key, String::from_utf8_lossy(value).into_owned());
            }
            2 => {
                // `target,published` in decimal; what does not parse is a huge number.
                let text = String::from_utf8_lossy(rest);
                let (t, p) = text.split_once(',').unwrap_or((&text, ""));
                let num = |v: &str| v.parse::<u64>().unwrap_or(u64::MAX - v.len() as u64);
                s.endpoint.ports.push(PortConfig {
                    protocol: PROTOCOLS[sub % PROTOCOLS.len()].into(),
                    target_port: num(t),
                    published_port: num(p),
                    publish_mode: MODES[(sub / PROTOCOLS.len()) % MODES.len()].into(),
                });
            }
            _ => {
                s.spec.mode.replicated = Some(Replicated {
                    replicas: rest.first().map(|&r| u64::from(r % 4)),
                });
            }
        }
    }
    s
}

fn check_service(s: &Service, settings: &Settings) {
    let (out, ignored) = swarm_services(s, settings, ADDR, KEY);
    let ingress: Vec<&PortConfig> = s.endpoint.ports.iter().filter(|p| p.ingress()).collect();
    if s.scaled_to_zero() {
        check("zero", out.is_empty(), || format!("scaled to 0 yet {out:?}"));
    }
    if !s.spec.name.is_empty() && !s.scaled_to_zero() {
        check("accounted", out.len() + ignored.len() >= ingress.len(), || {
            format!("{} ingress ports, {out:?}, {ignored:?}", ingress.len())
        });
    }
    let labels = &s.spec.labels;
    let ip_label = (settings.ip_label.as_ref())
        .and_then(|l| labels.get(l))
        .filter(|v| !v.is_empty());
    for r in &out {
        let from = ingress.iter().find(|p| {
            p.target_port == u64::from(r.exposed_port)
                && p.published_port == u64::from(r.port)
                && p.proto() == r.proto
        });
        check("from-port", from.is_some(), || {
            format!("{r:?} matches no ingress port of {:?}", s.endpoint.ports)
        });
        check("published", r.port != 0, || format!("{r:?}"));
        check("id", !r.id.is_empty(), || format!("{r:?}"));
        check("name", !r.name.is_empty(), || format!("{r:?}"));
        check("key", r.container_id == KEY, || format!("{r:?}"));
        let want_ip = match ip_label {
            Some(v) => v.rsplit_once('/').map_or(v.as_str(), |(ip, _)| ip),
            None => ADDR,
        };
        check("ip", r.ip == want_ip, || format!("{r:?}"));
        let udp_last = r.tags.last().is_some_and(|t| t == "udp");
        if r.proto == "udp" {
            check("udp-tag", udp_last, || format!("{r:?}"));
        }
    }
    let id_set = labels.keys().any(|k| k.starts_with("SERVICE_") && k.ends_with("ID"));
    let published: BTreeSet<(u64, &str)> =
        ingress.iter().map(|p| (p.published_port, p.proto())).collect();
    if !id_set && published.len() == ingress.len() {
        let mut seen = BTreeMap::new();
        for r in &out {
            check("dup-id", seen.insert(&r.id, ()).is_none(), || {
                format!("two registrations with ID {:?}: {out:?}", r.id)
            });
        }
    }
}
