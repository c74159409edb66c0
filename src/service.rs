//! From a container to its services: a pure function of the inspect JSON, the flags and the
//! host, following `spec/registrator.md` section 4. No I/O here; the worker resolves anything
//! that needs the engine (the IP of a `container:<x>` network peer) before calling.

use std::collections::BTreeMap;

use std::sync::Arc;

use crate::docker::container::{id12, Container, PortBinding};
use crate::docker::swarm;
use crate::template::{self, Template};

/// What the flags and the host contribute to every service.
#[derive(Debug, Clone, Default)]
pub struct Settings {
    /// This machine's hostname, the first part of default service IDs.
    pub hostname: String,
    /// What `0.0.0.0`/`::` bindings resolve to (the hostname's address), if it resolved.
    pub host_ip: Option<String>,
    /// `-ip`.
    pub ip: Option<String>,
    /// `-internal`.
    pub internal: bool,
    /// `-explicit`.
    pub explicit: bool,
    /// `-useIpFromLabel`.
    pub ip_label: Option<String>,
    /// `-tags` without `{{`, already split.
    pub tags: Vec<String>,
    /// `-tags` with `{{`: a Go template rendered for each service, then split.
    pub tags_template: Option<Arc<Template>>,
    /// `-ip-from-container`.
    pub ip_from_container: bool,
    /// `-swarm`: a swarm task's container is named after its service by default.
    pub swarm: bool,
}

/// One service to register.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Service {
    pub id: String,
    pub name: String,
    pub ip: String,
    pub port: u16,
    pub tags: Vec<String>,
    /// Every `SERVICE_*` key not consumed above, lower-case, raw values.
    pub attrs: BTreeMap<String, String>,
    /// Full container ID.
    pub container_id: String,
    /// Container name without the leading `/`.
    pub container_name: String,
    /// The port inside the container.
    pub exposed_port: u16,
    /// `tcp` or `udp` (or whatever the engine said).
    pub proto: String,
}

impl Service {
    /// `ip:port`, with IPv6 bracketed.
    pub fn address(&self) -> String {
        let (ip, port) = (&self.ip, self.port);
        if ip.contains(':') {
            format!("[{ip}]:{port}")
        } else {
            format!("{ip}:{port}")
        }
    }
}

/// The services of a container, and a reason for every port left out (for `ignored:` lines).
/// `peer_ip` is the IP of the container named by `NetworkMode: container:<x>`, if any.
/// `known` are the services the container has now: their tags are kept rather than rendered
/// again (Decisions T6: a template is evaluated when its service is first built; an
/// `httpGet` of `-tags` is not repeated at every resync).
pub fn services(
    c: &Container,
    settings: &Settings,
    peer_ip: Option<&str>,
    known: &[Service],
) -> (Vec<Service>, Vec<String>) {
    let mut out = Vec::new();
    let mut ignored = Vec::new();
    let id = id12(&c.id);

    // 4.1: exposed ports start as published on their own number; the engine's map overrides.
    let mut ports: BTreeMap<&str, Option<PortBinding>> = BTreeMap::new();
    for key in c.config.exposed_ports.keys() {
        let port = key.split('/').next().unwrap_or(key);
        ports.insert(
            key,
            Some(PortBinding {
                host_ip: "0.0.0.0".into(),
                host_port: port.into(),
            }),
        );
    }
    for (key, bindings) in &c.network_settings.ports {
        let first = bindings.as_ref().and_then(|b| b.first()).cloned();
        ports.insert(key, first);
    }

    // Candidates: what would be registered before ignore/explicit filtering.
    let candidates = ports
        .values()
        .filter(|b| b.is_some() || settings.internal)
        .count();

    let entries = entries(&c.config.env, &c.config.labels);
    let fallback = default_name(c, settings.swarm);
    for (key, binding) in &ports {
        let (port_text, proto) = match key.split_once('/') {
            Some((p, proto)) => (p, proto),
            None => (*key, "tcp"),
        };
        let Ok(exposed_port) = port_text.parse::<u16>() else {
            ignored.push(format!("{id} port {key}: not a port number"));
            continue;
        };
        if binding.is_none() && !settings.internal {
            ignored.push(format!("{id} port {port_text} not published on host"));
            continue;
        }
        let meta = Metadata::for_port(&entries, port_text, proto);
        let default = || {
            let mut s = format!("{}:{}:{}", settings.hostname, c.short_name(), port_text);
            if proto == "udp" {
                s.push_str(":udp");
            }
            s
        };
        let named = match meta.named(settings, id, port_text, &fallback, candidates > 1, default) {
            Ok(n) => n,
            Err(reason) => {
                ignored.push(reason);
                continue;
            }
        };
        let (name, id_text) = (named.name, named.id);

        let own = named.own_tags;
        let templated = settings.tags_template.is_some() || Template::is_template(own);
        let before = known
            .iter()
            .find(|k| k.exposed_port == exposed_port && k.proto == proto)
            .filter(|_| templated);
        let tags = match before {
            Some(k) => k.tags.clone(),
            None => match tags(c, settings, own, proto) {
                Ok(t) => t,
                Err(reason) => {
                    ignored.push(format!("{id} port {port_text}: tags template: {reason}"));
                    continue;
                }
            },
        };

        let (ip, port) = match address(c, settings, peer_ip, &meta, binding.as_ref(), exposed_port)
        {
            Ok(a) => a,
            Err(reason) => {
                ignored.push(format!("{id} port {port_text}: {reason}"));
                continue;
            }
        };

        out.push(Service {
            id: id_text,
            name,
            ip,
            port,
            tags,
            attrs: named.attrs,
            container_id: c.id.clone(),
            container_name: c.short_name().to_string(),
            exposed_port,
            proto: proto.to_string(),
        });
    }
    (out, ignored)
}

/// The registrations of a swarm service, made by a manager (`-swarm`): one per port published
/// in ingress mode (the routing mesh answers on it on every node), at `addr` (this node's: `-ip`,
/// else its swarm address) and the published port. Its `SERVICE_*` labels apply as a
/// container's, keyed by the target port; the default name is the service's, the default ID
/// `<hostname>:<service name>:<published port>[:udp]` (`:sctp` too). Host-mode ports are left
/// to the task containers on the nodes they run on; a replicated service scaled to 0 has none.
/// `key` is where the worker keeps them (their `container_id`). A `-tags` template is not
/// rendered (its dot is a container); literal `-tags` apply.
pub fn swarm_services(
    s: &swarm::Service,
    settings: &Settings,
    addr: &str,
    key: &str,
) -> (Vec<Service>, Vec<String>) {
    let mut out = Vec::new();
    let mut ignored = Vec::new();
    let svc = s.spec.name.as_str();
    if svc.is_empty() {
        ignored.push(format!("swarm service {}: no name", id12(&s.id)));
        return (out, ignored);
    }
    if s.scaled_to_zero() {
        ignored.push(format!("swarm service {svc}: scaled to 0"));
        return (out, ignored);
    }
    let ports: Vec<&swarm::PortConfig> = s.endpoint.ports.iter().filter(|p| p.ingress()).collect();
    let entries = entries(&[], &s.spec.labels);
    let who = format!("swarm service {svc}");
    for p in &ports {
        let proto = p.proto();
        let (Ok(target), Ok(published)) = (
            u16::try_from(p.target_port),
            u16::try_from(p.published_port),
        ) else {
            ignored.push(format!(
                "{who} port {}: not a port number (published {})",
                p.target_port, p.published_port
            ));
            continue;
        };
        if published == 0 {
            ignored.push(format!("{who} port {target}: not published yet"));
            continue;
        }
        let target_text = target.to_string();
        let meta = Metadata::for_port(&entries, &target_text, proto);
        // As a container's, `:udp` for UDP; and the same for any protocol but TCP (SCTP), so
        // that two protocols on one published port are two entries.
        let default = || match proto {
            "tcp" => format!("{}:{svc}:{published}", settings.hostname),
            _ => format!("{}:{svc}:{published}:{proto}", settings.hostname),
        };
        let named = match meta.named(settings, &who, &target_text, svc, ports.len() > 1, default) {
            Ok(n) => n,
            Err(reason) => {
                ignored.push(reason);
                continue;
            }
        };
        if Template::is_template(named.own_tags) {
            ignored.push(format!(
                "{who} port {target}: tags template: a swarm service has no container for its dot; use plain tags"
            ));
            continue;
        }
        let mut attrs = named.attrs;
        // Checks that need a container: none for a swarm service (said when one was asked for).
        if attrs
            .remove("check_docker")
            .is_some_and(|v| boolean(&v) != Some(false))
        {
            ignored.push(format!(
                "{who} port {target}: SERVICE_CHECK_DOCKER needs a container; no such check"
            ));
        }
        if attrs.remove("check_cmd").is_some_and(|v| !v.is_empty()) {
            ignored.push(format!(
                "{who} port {target}: SERVICE_CHECK_CMD needs a container; no such check"
            ));
        }
        let mut tags = split_tags(named.own_tags);
        tags.extend(settings.tags.iter().cloned());
        if proto == "udp" {
            tags.push("udp".into());
        }
        out.push(Service {
            id: named.id,
            name: named.name,
            ip: label_ip(settings, &s.spec.labels)
                .unwrap_or(addr)
                .to_string(),
            port: published,
            tags,
            attrs,
            container_id: key.to_string(),
            container_name: svc.to_string(),
            exposed_port: target,
            proto: proto.to_string(),
        });
    }
    (out, ignored)
}

/// A service's tags: its own `SERVICE_*TAGS` (a template without `httpGet`: a container's
/// metadata makes no request), then `-tags` (a template there may fetch), then `udp` for a
/// UDP port.
fn tags(c: &Container, settings: &Settings, own: &str, proto: &str) -> Result<Vec<String>, String> {
    // The container's own first: when it fails, `-tags` (which may fetch) is not rendered.
    let mut tags = if Template::is_template(own) {
        let parsed = template::cached(own);
        let t = parsed.as_ref().as_ref().map_err(|e| e.to_string())?;
        let mut out = String::new();
        t.render(&c.raw, None, &mut out)?;
        split_tags(&out)
    } else {
        split_tags(own)
    };
    match &settings.tags_template {
        Some(t) => {
            let mut out = String::new();
            #[cfg(feature = "templates")]
            let mut fetch = crate::httpget::get;
            #[cfg(not(feature = "templates"))]
            let mut fetch = |_: &str| Vec::new();
            t.render(&c.raw, Some(&mut fetch), &mut out)?;
            tags.extend(split_tags(&out));
        }
        None => tags.extend(settings.tags.iter().cloned()),
    }
    if proto == "udp" {
        tags.push("udp".into());
    }
    Ok(tags)
}

/// The IP and port to register for one port (spec 4.4).
fn address(
    c: &Container,
    settings: &Settings,
    peer_ip: Option<&str>,
    meta: &Metadata,
    binding: Option<&PortBinding>,
    exposed_port: u16,
) -> Result<(String, u16), String> {
    let network = meta.get("network").filter(|n| !n.is_empty());
    let mode = c.host_config.network_mode.as_str();
    let container_ip = if mode.starts_with("container:") {
        peer_ip
    } else {
        c.ip_with(network, settings.swarm)
    };

    let (mut ip, mut port) = match binding {
        Some(b) => {
            let port = b
                .host_port
                .parse::<u16>()
                .map_err(|_| format!("host port {:?} is not a port number", b.host_port))?;
            let ip = match b.host_ip.as_str() {
                "" | "0.0.0.0" | "::" => settings.host_ip.clone().unwrap_or_else(|| {
                    if b.host_ip.is_empty() {
                        "0.0.0.0".into()
                    } else {
                        b.host_ip.clone()
                    }
                }),
                other => other.to_string(),
            };
            (ip, port)
        }
        None => (String::new(), exposed_port),
    };

    // A user-defined network (or another container's): its address, unless -ip forces one.
    let user_network = !matches!(mode, "" | "bridge" | "default" | "host");
    if user_network {
        if let Some(cip) = container_ip {
            ip = cip.to_string();
        }
    }
    if let Some(forced) = &settings.ip {
        ip = forced.clone();
    }
    // Decisions F2: the container's own address (as -internal picks it), the port unchanged;
    // a container without one (host network) keeps the address it had.
    if settings.ip_from_container {
        if let Some(cip) = container_ip {
            ip = cip.to_string();
        }
    }
    if settings.internal {
        if let Some(cip) = container_ip {
            ip = cip.to_string();
        }
        port = exposed_port;
    }
    if let Some(v) = label_ip(settings, &c.config.labels) {
        ip = v.to_string();
    }
    if ip.is_empty() {
        return Err("no address (not published, no container IP)".into());
    }
    Ok((ip, port))
}

/// `-useIpFromLabel`: the address in that label of a container (or a swarm service), the text
/// after its last `/` dropped (`10.0.0.5/24` -> `10.0.0.5`); `None` without the flag or the label.
fn label_ip<'l>(settings: &Settings, labels: &'l BTreeMap<String, String>) -> Option<&'l str> {
    let v = labels
        .get(settings.ip_label.as_ref()?)
        .filter(|v| !v.is_empty())?;
    Some(v.rsplit_once('/').map_or(v.as_str(), |(ip, _)| ip))
}

/// Which ports a `SERVICE_*` entry is for.
#[derive(Debug, PartialEq)]
enum Ports {
    /// `SERVICE_<key>`: every port.
    All,
    /// `SERVICE_<port>_<key>`, the port as written (`080` is not `80`).
    Exact(String),
    /// `SERVICE_<lo>-<hi>_<key>`, both ends inclusive.
    Range(u32, u32),
}

/// One `SERVICE_*` entry of env or labels.
#[derive(Debug)]
struct Entry<'c> {
    ports: Ports,
    /// `SERVICE_<port>_<proto>_<key>`: only for that protocol.
    proto: Option<&'static str>,
    /// Lower-case key.
    key: String,
    value: &'c str,
    label: bool,
}

impl Entry<'_> {
    /// How specific the entry is for a port, highest wins (Decisions F3): exact port with
    /// protocol, exact port, range with protocol, range, generic; a label beats env at each
    /// level. `None` when it is not for that port.
    fn rank(&self, port: &str, proto: &str) -> Option<u8> {
        if self.proto.is_some_and(|p| p != proto) {
            return None;
        }
        let level = match &self.ports {
            Ports::All => 0,
            Ports::Exact(p) if p == port => 3,
            Ports::Range(lo, hi) if port.parse::<u32>().is_ok_and(|p| *lo <= p && p <= *hi) => 1,
            _ => return None,
        } + u8::from(self.proto.is_some());
        Some(level * 2 + u8::from(self.label))
    }
}

/// Every `SERVICE_*` entry of a container (or a swarm service, which has labels only), parsed
/// once for all its ports: env in order, then labels.
fn entries<'c>(env: &'c [String], labels: &'c BTreeMap<String, String>) -> Vec<Entry<'c>> {
    let env = env.iter().filter_map(|e| e.split_once('='));
    let env = env.map(|(k, v)| (k, v, false));
    let labels = labels.iter().map(|(k, v)| (k.as_str(), v.as_str(), true));
    env.chain(labels)
        .filter_map(|(key, value, label)| {
            let rest = key.strip_prefix("SERVICE_")?.to_lowercase();
            let (head, sub) = rest.split_once('_').unwrap_or((&rest, ""));
            let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
            // Anything Go's Atoi takes is a port as written: `080` and `-5` match no port.
            let ports = if head.parse::<i64>().is_ok() {
                Ports::Exact(head.to_string())
            } else if let Some((lo, hi)) =
                head.split_once('-').filter(|(l, h)| digits(l) && digits(h))
            {
                Ports::Range(lo.parse().unwrap_or(u32::MAX), hi.parse().unwrap_or(0))
            } else {
                return (!rest.is_empty()).then(|| Entry {
                    ports: Ports::All,
                    proto: None,
                    key: rest.clone(),
                    value,
                    label,
                });
            };
            // `SERVICE_80=x` names no key: dropped.
            let (proto, key) = match sub.split_once('_') {
                Some(("tcp", k)) if !k.is_empty() => (Some("tcp"), k),
                Some(("udp", k)) if !k.is_empty() => (Some("udp"), k),
                _ => (None, sub),
            };
            (!key.is_empty()).then(|| Entry {
                ports,
                proto,
                key: key.to_string(),
                value,
                label,
            })
        })
        .collect()
}

/// A port's service as its metadata names it ([`Metadata::named`]).
struct Named<'a> {
    name: String,
    id: String,
    /// `SERVICE_*TAGS`, as written (a template, or a list).
    own_tags: &'a str,
    attrs: BTreeMap<String, String>,
}

/// The metadata of one port: key -> (value, rank of the entry it came from).
struct Metadata<'a> {
    values: BTreeMap<&'a str, (&'a str, u8)>,
}

impl<'a> Metadata<'a> {
    fn for_port(entries: &'a [Entry<'a>], port: &str, proto: &str) -> Metadata<'a> {
        let mut values: BTreeMap<&str, (&str, u8)> = BTreeMap::new();
        for e in entries {
            let Some(rank) = e.rank(port, proto) else {
                continue;
            };
            // The most specific entry wins; among equals, the later one.
            if values.get(e.key.as_str()).is_none_or(|(_, r)| rank >= *r) {
                values.insert(&e.key, (e.value, rank));
            }
        }
        Metadata { values }
    }

    fn get(&self, key: &str) -> Option<&'a str> {
        self.values.get(key).map(|(v, _)| *v)
    }

    /// What the metadata says of one port's service, or why the port is left out
    /// (`SERVICE_IGNORE`, `-explicit` without a name): its name (`fallback` when none is set,
    /// with `-<port>` when its owner has `several` ports and the name is not the port's own),
    /// its ID (`default_id` when none is set), its own tags and the rest as attributes. `who`
    /// and `port` start the reason.
    fn named(
        &self,
        settings: &Settings,
        who: &str,
        port: &str,
        fallback: &str,
        several: bool,
        default_id: impl FnOnce() -> String,
    ) -> Result<Named<'a>, String> {
        if self.get("ignore").is_some_and(|v| !v.is_empty()) {
            return Err(format!("{who} port {port} has SERVICE_IGNORE"));
        }
        let own_name = self.get("name").filter(|n| !n.is_empty());
        if settings.explicit && own_name.is_none() {
            return Err(format!("{who} port {port}: no SERVICE_NAME and -explicit"));
        }
        let mut name = own_name.unwrap_or(fallback).to_string();
        if name.is_empty() {
            // No image and no container name (only a hand-made API call gets here).
            return Err(format!(
                "{who} port {port}: no service name (no image, no container name; set SERVICE_NAME)"
            ));
        }
        if several && !self.is_per_port("name") {
            name = format!("{name}-{port}");
        }
        let id = match self.get("id") {
            Some(i) if !i.is_empty() => i.to_string(),
            _ => default_id(),
        };
        let attrs = (self.values.iter())
            .filter(|(k, _)| !matches!(**k, "name" | "id" | "tags"))
            .map(|(k, (v, _))| (k.to_string(), v.to_string()))
            .collect();
        Ok(Named {
            name,
            id,
            own_tags: self.get("tags").unwrap_or(""),
            attrs,
        })
    }

    /// Whether the value came from a port-specific form (exact, range, protocol).
    fn is_per_port(&self, key: &str) -> bool {
        self.values.get(key).is_some_and(|(_, r)| *r >= 2)
    }
}

/// Label the swarm puts on a task's container: the name of the service it runs for.
pub const SWARM_SERVICE_LABEL: &str = "com.docker.swarm.service.name";

/// Last path segment of the image without tag or digest; the container name for a bare ID.
/// With `swarm` (`-swarm`), a swarm task's container is named after its service.
pub fn default_name(c: &Container, swarm: bool) -> String {
    if swarm {
        if let Some(s) = c
            .config
            .labels
            .get(SWARM_SERVICE_LABEL)
            .filter(|s| !s.is_empty())
        {
            return s.clone();
        }
    }
    let image = c.config.image.as_str();
    if image.is_empty() || image.starts_with("sha256:") {
        return c.short_name().to_string();
    }
    let image = image.split('@').next().unwrap_or(image);
    let last = image.rsplit('/').next().unwrap_or(image);
    let name = last.split(':').next().unwrap_or(last);
    if name.is_empty() {
        c.short_name().to_string()
    } else {
        name.to_string()
    }
}

/// Splits a tag list on commas not preceded by `\`, removes the `\`, drops empty items.
pub fn split_tags(s: &str) -> Vec<String> {
    let mut tags = Vec::new();
    let mut cur = String::new();
    let mut chars = s.chars().peekable();
    while let Some(ch) = chars.next() {
        match ch {
            '\\' if chars.peek() == Some(&',') => {
                cur.push(',');
                chars.next();
            }
            ',' => {
                if !cur.is_empty() {
                    tags.push(std::mem::take(&mut cur));
                }
            }
            _ => cur.push(ch),
        }
    }
    if !cur.is_empty() {
        tags.push(cur);
    }
    tags
}

/// A `SERVICE_*` boolean: `true`/`1`/`yes` or `false`/`0`/`no`/empty, any case and spacing;
/// `None` for anything else.
pub fn boolean(v: &str) -> Option<bool> {
    match v.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" => Some(true),
        "false" | "0" | "no" | "" => Some(false),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn booleans() {
        for t in ["true", " TRUE ", "1", "Yes"] {
            assert_eq!(boolean(t), Some(true), "{t:?}");
        }
        for f in ["false", "0", "no", "", " "] {
            assert_eq!(boolean(f), Some(false), "{f:?}");
        }
        for other in ["y", "on", "2", "truex"] {
            assert_eq!(boolean(other), None, "{other:?}");
        }
    }
    use serde_json::json;

    fn container(v: serde_json::Value) -> Container {
        let mut c: Container = serde_json::from_value(v.clone()).expect("test container JSON");
        c.raw = v.to_string().into_bytes();
        c
    }

    fn settings() -> Settings {
        Settings {
            hostname: "hostname".into(),
            host_ip: Some("192.168.1.102".into()),
            ..Settings::default()
        }
    }

    /// `docker run --name NAME -p ...` as the engine (20.10) reports it.
    fn run(
        name: &str,
        image: &str,
        ports: &[(&str, &str)],
        env: &[&str],
        labels: &[(&str, &str)],
    ) -> Container {
        let mut exposed = serde_json::Map::new();
        let mut bound = serde_json::Map::new();
        for (c, h) in ports {
            let key = if c.contains('/') {
                c.to_string()
            } else {
                format!("{c}/tcp")
            };
            exposed.insert(key.clone(), json!({}));
            bound.insert(
                key,
                json!([{"HostIp": "0.0.0.0", "HostPort": h}, {"HostIp": "::", "HostPort": h}]),
            );
        }
        let labels: serde_json::Map<String, serde_json::Value> = labels
            .iter()
            .map(|(k, v)| (k.to_string(), json!(v)))
            .collect();
        container(json!({
            "Id": "0123456789abcdef0123456789abcdef",
            "Name": format!("/{name}"),
            "State": {"Running": true, "ExitCode": 0},
            "Config": {"Image": image, "Env": env, "Labels": labels, "ExposedPorts": exposed},
            "HostConfig": {"NetworkMode": "default"},
            "NetworkSettings": {"IPAddress": "172.17.0.2", "Ports": bound,
                "Networks": {"bridge": {"IPAddress": "172.17.0.2"}}}
        }))
    }

    fn one(c: &Container, s: &Settings) -> Vec<Service> {
        services(c, s, None, &[]).0
    }

    #[test]
    fn worked_example_redis() {
        let c = run("redis.0", "redis", &[("6379", "10000")], &[], &[]);
        let got = one(&c, &settings());
        assert_eq!(got.len(), 1);
        let s = &got[0];
        assert_eq!(s.id, "hostname:redis.0:6379");
        assert_eq!(s.name, "redis");
        assert_eq!(s.port, 10000);
        assert_eq!(s.ip, "192.168.1.102");
        assert!(s.tags.is_empty());
        assert!(s.attrs.is_empty());
    }

    #[test]
    fn worked_example_metadata_env_and_labels() {
        let env = [
            "SERVICE_NAME=db",
            "SERVICE_TAGS=master,backups",
            "SERVICE_REGION=us2",
        ];
        let from_env = run("redis.0", "redis", &[("6379", "10000")], &env, &[]);
        let labels = [
            ("SERVICE_NAME", "db"),
            ("SERVICE_TAGS", "master,backups"),
            ("SERVICE_REGION", "us2"),
        ];
        let from_labels = run("redis.0", "redis", &[("6379", "10000")], &[], &labels);
        for c in [from_env, from_labels] {
            let s = &one(&c, &settings())[0];
            assert_eq!(s.name, "db");
            assert_eq!(s.tags, ["master", "backups"]);
            assert_eq!(
                s.attrs,
                BTreeMap::from([("region".to_string(), "us2".to_string())])
            );
        }
    }

    #[test]
    fn worked_example_nginx_two_ports() {
        let c = run(
            "nginx.0",
            "nginx",
            &[("443", "4443"), ("80", "8000")],
            &[],
            &[],
        );
        let got = one(&c, &settings());
        let v: Vec<(&str, &str, u16)> = got
            .iter()
            .map(|s| (s.id.as_str(), s.name.as_str(), s.port))
            .collect();
        assert_eq!(
            v,
            [
                ("hostname:nginx.0:443", "nginx-443", 4443),
                ("hostname:nginx.0:80", "nginx-80", 8000)
            ]
        );
    }

    #[test]
    fn worked_example_nginx_per_port_metadata() {
        let env = [
            "SERVICE_443_NAME=https",
            "SERVICE_443_ID=https.12345",
            "SERVICE_443_SNI=enabled",
            "SERVICE_80_NAME=http",
            "SERVICE_TAGS=www",
        ];
        let c = run(
            "nginx.0",
            "nginx",
            &[("443", "4443"), ("80", "8000")],
            &env,
            &[],
        );
        let got = one(&c, &settings());
        assert_eq!(got[0].id, "https.12345");
        assert_eq!(got[0].name, "https");
        assert_eq!(got[0].port, 4443);
        assert_eq!(got[0].tags, ["www"]);
        assert_eq!(
            got[0].attrs,
            BTreeMap::from([("sni".to_string(), "enabled".to_string())])
        );
        assert_eq!(got[1].id, "hostname:nginx.0:80");
        assert_eq!(got[1].name, "http");
        assert_eq!(got[1].port, 8000);
        assert_eq!(got[1].tags, ["www"]);
        assert!(got[1].attrs.is_empty());
    }

    #[test]
    fn worked_example_udp() {
        let c = run("dns", "dns", &[("53/udp", "53")], &["SERVICE_TAGS=a"], &[]);
        let s = &one(
            &c,
            &Settings {
                tags: vec!["forced".into()],
                ..settings()
            },
        )[0];
        assert_eq!(s.id, "hostname:dns:53:udp");
        assert_eq!(s.tags, ["a", "forced", "udp"]);
        assert_eq!(s.proto, "udp");
    }

    #[test]
    fn generic_name_on_two_ports_gets_suffix() {
        let c = run(
            "w",
            "nginx",
            &[("443", "4443"), ("80", "8000")],
            &["SERVICE_NAME=web"],
            &[],
        );
        let names: Vec<String> = one(&c, &settings()).into_iter().map(|s| s.name).collect();
        assert_eq!(names, ["web-443", "web-80"]);
    }

    #[test]
    fn tag_vectors() {
        let cases: &[(&str, &[&str])] = &[
            ("", &[]),
            ("foo,bar", &["foo", "bar"]),
            ("foo\\,bar", &["foo,bar"]),
            (",,,,foo,,,bar,,,", &["foo", "bar"]),
            (",,\\,,", &[","]),
            ("\\,foobar\\,", &[",foobar,"]),
        ];
        for (input, want) in cases {
            assert_eq!(split_tags(input), *want, "{input:?}");
        }
    }

    #[test]
    fn default_names() {
        let name = |image: &str| default_name(&run("ctr", image, &[], &[], &[]), false);
        assert_eq!(name("redis:7"), "redis");
        assert_eq!(name("gliderlabs/foobar"), "foobar");
        assert_eq!(name("reg:5000/team/app:1.2"), "app");
        assert_eq!(name("app@sha256:0123abcd"), "app");
        assert_eq!(name("reg:5000/app:1@sha256:0123abcd"), "app");
        assert_eq!(name("sha256:0123456789abcdef"), "ctr");
        assert_eq!(name(""), "ctr");
        // Neither image nor name (only the API allows it): no service, a reason.
        let c = run("", "", &[("80", "8080")], &[], &[]);
        let (services, ignored) = services(&c, &Settings::default(), None, &[]);
        assert!(services.is_empty());
        assert!(ignored[0].contains("no service name"), "{ignored:?}");
    }

    #[test]
    fn labels_beat_env_and_port_beats_generic() {
        let c = run(
            "x",
            "img",
            &[("80", "8080")],
            &[
                "SERVICE_80_NAME=port-env",
                "SERVICE_NAME=generic-env",
                "SERVICE_COLOR=red",
            ],
            &[("SERVICE_NAME", "generic-label"), ("SERVICE_COLOR", "blue")],
        );
        let s = &one(&c, &settings())[0];
        assert_eq!(s.name, "port-env", "port-specific beats a later generic");
        assert_eq!(s.attrs["color"], "blue", "label beats env for the same key");
        let c = run(
            "x",
            "img",
            &[("80", "8080")],
            &["SERVICE_80_NAME=env"],
            &[("SERVICE_80_NAME", "label")],
        );
        assert_eq!(one(&c, &settings())[0].name, "label");
    }

    #[test]
    fn ignore_and_explicit() {
        let c = run(
            "x",
            "img",
            &[("80", "8080"), ("443", "8443")],
            &["SERVICE_443_IGNORE=1"],
            &[],
        );
        let (got, ignored) = services(&c, &settings(), None, &[]);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].name, "img-80", "suffix counts ports before ignore");
        assert_eq!(ignored.len(), 1);
        let c = run("x", "img", &[("80", "8080")], &["SERVICE_IGNORE=true"], &[]);
        assert!(one(&c, &settings()).is_empty());
        let c = run("x", "img", &[("80", "8080")], &["SERVICE_IGNORE="], &[]);
        assert_eq!(
            one(&c, &settings()).len(),
            1,
            "empty ignore does not ignore"
        );

        let explicit = Settings {
            explicit: true,
            ..settings()
        };
        let c = run(
            "x",
            "img",
            &[("80", "8080"), ("443", "8443")],
            &["SERVICE_80_NAME=web"],
            &[],
        );
        let got = one(&c, &explicit);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].name, "web");
        assert!(one(&run("x", "img", &[("80", "8080")], &[], &[]), &explicit).is_empty());
    }

    #[test]
    fn unpublished_ports_and_internal() {
        let mut c = run("x", "img", &[("80", "8080")], &[], &[]);
        c.network_settings.ports.insert("9000/tcp".into(), None);
        let (got, ignored) = services(&c, &settings(), None, &[]);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].name, "img", "an unpublished port is not a candidate");
        assert_eq!(ignored, ["0123456789ab port 9000 not published on host"]);

        let internal = Settings {
            internal: true,
            ..settings()
        };
        let got = one(&c, &internal);
        let v: Vec<(&str, &str, u16)> = got
            .iter()
            .map(|s| (s.name.as_str(), s.ip.as_str(), s.port))
            .collect();
        assert_eq!(
            v,
            [
                ("img-80", "172.17.0.2", 80),
                ("img-9000", "172.17.0.2", 9000)
            ]
        );
    }

    #[test]
    fn ip_rules() {
        let c = run(
            "x",
            "img",
            &[("80", "8080")],
            &[],
            &[("ipl", "10.0.0.5/24")],
        );
        let forced = Settings {
            ip: Some("127.0.0.1".into()),
            ..settings()
        };
        assert_eq!(one(&c, &forced)[0].ip, "127.0.0.1");
        let label = Settings {
            ip_label: Some("ipl".into()),
            ..forced.clone()
        };
        assert_eq!(one(&c, &label)[0].ip, "10.0.0.5");
        let missing = Settings {
            ip_label: Some("nope".into()),
            ..forced.clone()
        };
        assert_eq!(one(&c, &missing)[0].ip, "127.0.0.1");

        // A binding on a specific address is used as is.
        let mut c = run("x", "img", &[("80", "8080")], &[], &[]);
        c.network_settings.ports.insert(
            "80/tcp".into(),
            Some(vec![PortBinding {
                host_ip: "127.0.0.1".into(),
                host_port: "8080".into(),
            }]),
        );
        assert_eq!(one(&c, &settings())[0].ip, "127.0.0.1");
        // 0.0.0.0 that could not be resolved stays 0.0.0.0; Podman's "" means 0.0.0.0.
        let unresolved = Settings {
            host_ip: None,
            ..settings()
        };
        c.network_settings.ports.insert(
            "80/tcp".into(),
            Some(vec![PortBinding {
                host_ip: "".into(),
                host_port: "8080".into(),
            }]),
        );
        assert_eq!(one(&c, &unresolved)[0].ip, "0.0.0.0");
        assert_eq!(one(&c, &settings())[0].ip, "192.168.1.102");
    }

    #[test]
    fn user_defined_network_and_ipv6() {
        let c = container(json!({
            "Id": "abc", "Name": "/app",
            "Config": {"Image": "app", "ExposedPorts": {"80/tcp": {}}},
            "HostConfig": {"NetworkMode": "backend"},
            "NetworkSettings": {
                "Ports": {"80/tcp": [{"HostIp": "0.0.0.0", "HostPort": "8080"}]},
                "Networks": {"aaa": {"IPAddress": "10.1.0.2"}, "backend": {"IPAddress": "10.2.0.2"},
                             "v6": {"IPAddress": "", "GlobalIPv6Address": "fd00::2"}}
            }
        }));
        let s = &one(&c, &settings())[0];
        assert_eq!((s.ip.as_str(), s.port), ("10.2.0.2", 8080));
        assert_eq!(
            one(
                &c,
                &Settings {
                    ip: Some("127.0.0.1".into()),
                    ..settings()
                }
            )[0]
            .ip,
            "127.0.0.1"
        );
        let mut c = c;
        c.config.env.push("SERVICE_NETWORK=v6".into());
        let s = &one(&c, &settings())[0];
        assert_eq!(s.ip, "fd00::2");
        assert_eq!(s.address(), "[fd00::2]:8080");
    }

    #[test]
    fn host_network_and_container_network() {
        // --net=host: no port map, exposed ports count as published on their own number.
        let c = container(json!({
            "Id": "abc", "Name": "/h",
            "Config": {"Image": "img", "ExposedPorts": {"8080/tcp": {}, "53/udp": {}}},
            "HostConfig": {"NetworkMode": "host"},
            "NetworkSettings": {"Ports": {}, "Networks": {"host": {"IPAddress": ""}}}
        }));
        let got = one(&c, &settings());
        let v: Vec<(&str, &str, u16)> = got
            .iter()
            .map(|s| (s.id.as_str(), s.ip.as_str(), s.port))
            .collect();
        assert_eq!(
            v,
            [
                ("hostname:h:53:udp", "192.168.1.102", 53),
                ("hostname:h:8080", "192.168.1.102", 8080)
            ]
        );

        let c = container(json!({
            "Id": "abc", "Name": "/side",
            "Config": {"Image": "img", "ExposedPorts": {"9000/tcp": {}}},
            "HostConfig": {"NetworkMode": "container:main"},
            "NetworkSettings": {"Ports": null, "Networks": null}
        }));
        let (got, _) = services(&c, &settings(), Some("10.9.0.7"), &[]);
        assert_eq!((got[0].ip.as_str(), got[0].port), ("10.9.0.7", 9000));
    }

    #[test]
    fn api_1_52_shape_without_top_level_ip() {
        // Newer engines: no NetworkSettings.IPAddress, nulls for empty things.
        let c = container(json!({
            "Id": "abc", "Name": "/n",
            "Config": {"Image": "img", "Env": null, "Labels": null, "ExposedPorts": {"80/tcp": {}}},
            "HostConfig": {"NetworkMode": "bridge"},
            "NetworkSettings": {"Ports": {"80/tcp": null},
                "Networks": {"bridge": {"IPAddress": "172.17.0.9", "GlobalIPv6Address": ""}}}
        }));
        let s = &one(
            &c,
            &Settings {
                internal: true,
                ..settings()
            },
        )[0];
        assert_eq!((s.ip.as_str(), s.port), ("172.17.0.9", 80));
        assert!(one(&c, &settings()).is_empty());
    }

    #[test]
    fn real_engine_inspect() {
        // `docker run -p 127.0.0.1::80 -e SERVICE_REGION=us2 nginx` (image exposes 80 and 443)
        // as Docker 20.10 reports it.
        let c: Container =
            serde_json::from_str(include_str!("../tests/data/inspect-engine-20.10.json")).unwrap();
        let (got, ignored) = services(&c, &settings(), None, &[]);
        assert_eq!(got.len(), 1);
        let s = &got[0];
        assert_eq!(s.id, "hostname:cap3:80");
        assert_eq!(s.name, "nginx", "one published port: no suffix");
        assert_eq!(s.ip, "127.0.0.1");
        assert!(s.port > 0);
        assert_eq!(s.attrs["region"], "us2");
        assert_eq!(
            ignored.len(),
            1,
            "443 is exposed but not published: {ignored:?}"
        );
    }

    #[cfg(feature = "templates")]
    #[test]
    fn real_engine_28_inspect() {
        // A container on the user network rgtr-cap, 80 published on 127.0.0.1, 443 exposed
        // and ignored, as Docker 28.5.2 reports it; its labels as a template reads them.
        let raw = include_str!("../tests/data/inspect-engine-28.5.json");
        let mut c: Container = serde_json::from_str(raw).unwrap();
        c.raw = raw.as_bytes().to_vec();
        let mut st = settings();
        let t = r#"{{index .Config.Labels "com.example.team"}},{{.HostConfig.NetworkMode}}"#;
        st.tags_template = Some(Arc::new(crate::template::Template::parse(t).unwrap()));
        let (got, ignored) = services(&c, &st, None, &[]);
        assert_eq!(got.len(), 1, "{ignored:?}");
        let s = &got[0];
        assert_eq!(
            (s.id.as_str(), s.name.as_str()),
            ("hostname:cap28net:80", "web")
        );
        assert_eq!(s.tags, ["blue", "green", "ops", "rgtr-cap"]);
        assert_eq!(s.attrs["region"], "us2");
        assert!(
            s.ip.starts_with("10.213."),
            "user network address: {}",
            s.ip
        );
        assert_eq!(ignored.len(), 1, "{ignored:?}");
    }

    #[test]
    fn odd_metadata_never_panics() {
        let long = "x".repeat(100_000);
        let env = [
            "SERVICE_".to_string(),
            "SERVICE_=v".to_string(),
            "SERVICE_99999999999_NAME=big".to_string(),
            "SERVICE__NAME=under".to_string(),
            "SERVICE_80_=empty".to_string(),
            format!("SERVICE_{long}={long}"),
            "SERVICE_ÄÖ_ПОРТ=ünïcödé".to_string(),
            "NOEQUALS".to_string(),
            "SERVICE_TAGS=\\".to_string(),
            "SERVICE_80_ID=".to_string(),
        ];
        let env: Vec<&str> = env.iter().map(String::as_str).collect();
        let c = run(
            "odd",
            "img",
            &[("80", "8080")],
            &env,
            &[("", ""), ("SERVICE_", "x")],
        );
        let got = one(&c, &settings());
        assert_eq!(got.len(), 1);
        assert_eq!(
            got[0].id, "hostname:odd:80",
            "empty SERVICE_80_ID keeps the default"
        );
        assert_eq!(got[0].tags, ["\\"]);
        let mut c = run("odd", "img", &[("80", "notaport")], &[], &[]);
        c.network_settings
            .ports
            .insert("abc/tcp".into(), Some(vec![]));
        let (got, ignored) = services(&c, &settings(), None, &[]);
        assert!(got.is_empty());
        assert_eq!(ignored.len(), 2);
    }

    #[cfg(feature = "templates")]
    /// Section 2.1's container: Hostname `myhost`, label `env=prod`, one port.
    fn templated(env: &[&str], port: &str) -> Container {
        let (p, proto) = port.split_once('/').unwrap();
        let host = if proto == "udp" { "5353" } else { "8080" };
        container(json!({
            "Id": "0123456789abcdef0123456789abcdef",
            "Name": "/web-1",
            "State": {"Running": true},
            "Config": {"Image": "nginx", "Hostname": "myhost", "Env": env,
                       "Labels": {"env": "prod"}, "ExposedPorts": {port: {}}},
            "HostConfig": {"NetworkMode": "default"},
            "NetworkSettings": {"Ports": {port: [{"HostIp": "0.0.0.0", "HostPort": host}]},
                "Networks": {"bridge": {"IPAddress": "172.17.0.2"}}},
            "_": p
        }))
    }

    #[cfg(feature = "templates")]
    fn with_tags(tags: &str) -> Settings {
        let mut s = settings();
        if crate::template::Template::is_template(tags) {
            s.tags_template = Some(Arc::new(crate::template::Template::parse(tags).unwrap()));
        } else {
            s.tags = split_tags(tags);
        }
        s
    }

    /// Vectors T1-T11 of spec/dropin.md section 2.1, in our tag order (written order, the
    /// service's own tags first), errors skipping only that service (Decisions T4).
    #[cfg(feature = "templates")]
    #[test]
    fn service_tags_templates_t1_to_t11() {
        let tags = |env: &[&str], forced: &str, port: &str| -> Result<Vec<String>, String> {
            let (got, ignored) = services(&templated(env, port), &with_tags(forced), None, &[]);
            match got.first() {
                Some(s) => Ok(s.tags.clone()),
                None => Err(ignored.join("; ")),
            }
        };
        let ok = |v: &[&str]| Ok(v.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        // T1, T2, T3, T7, T9, T10, T11.
        assert_eq!(
            tags(
                &["SERVICE_TAGS=host-{{.Config.Hostname}},web"],
                "",
                "80/tcp"
            ),
            ok(&["host-myhost", "web"])
        );
        assert_eq!(
            tags(
                &["SERVICE_TAGS={{.Config.Labels.env}}"],
                "{{.Config.Labels.env}}-forced",
                "80/tcp"
            ),
            ok(&["prod", "prod-forced"])
        );
        assert_eq!(
            tags(&["SERVICE_TAGS=a,b"], "c,d", "53/udp"),
            ok(&["a", "b", "c", "d", "udp"])
        );
        assert_eq!(
            tags(&["SERVICE_TAGS={{.Config.Labels.missing}}"], "", "80/tcp"),
            ok(&["<no value>"])
        );
        assert_eq!(
            tags(&[r#"SERVICE_TAGS={{"x\\,y"}},z"#], "", "80/tcp"),
            ok(&["x,y", "z"])
        );
        assert_eq!(
            tags(&["SERVICE_TAGS=web,api"], "", "80/tcp"),
            ok(&["web", "api"])
        );
        assert_eq!(
            tags(&[], "host-{{.Config.Hostname}}", "80/tcp"),
            ok(&["host-myhost"])
        );
        // T4, T8: a SERVICE_TAGS that does not parse skips the service, with the reason.
        let e = tags(&["SERVICE_TAGS=broken-{{.Config.Hostname"], "ok", "80/tcp").unwrap_err();
        assert_eq!(
            e,
            "0123456789ab port 80: tags template: template: tags:1:26: unclosed action"
        );
        assert!(tags(&["SERVICE_TAGS=literal{{"], "", "80/tcp")
            .unwrap_err()
            .contains("unclosed action"));
        // An execution error of -tags skips it too (T5's parse error is a usage error: cli).
        let e = tags(&[], "{{.Node.Name}}", "80/tcp").unwrap_err();
        assert!(
            e.ends_with("tags template: nil pointer evaluating *docker.SwarmNode.Name"),
            "{e}"
        );
        // T5 (Decisions T5): httpGet in a container's metadata makes no request.
        let e = tags(
            &[r#"SERVICE_TAGS={{httpGet "http://127.0.0.1:9/x"}}"#],
            "",
            "80/tcp",
        )
        .unwrap_err();
        assert!(e.contains("httpGet is only allowed in -tags"), "{e}");
    }

    /// T6 (fayrus's unit test): a broken template on one port leaves the other registered.
    #[cfg(feature = "templates")]
    #[test]
    fn a_broken_port_template_skips_only_that_port() {
        let mut c = run(
            "web",
            "nginx",
            &[("8080", "18080"), ("9090", "19090")],
            &[
                "SERVICE_8080_TAGS=broken-{{.Config.Hostname",
                "SERVICE_9090_TAGS=ok",
            ],
            &[],
        );
        let (got, ignored) = services(&c, &settings(), None, &[]);
        assert_eq!(got.len(), 1);
        assert_eq!(
            (got[0].exposed_port, got[0].tags.clone()),
            (9090, vec!["ok".to_string()])
        );
        assert_eq!(ignored.len(), 1);
        assert!(
            ignored[0].starts_with("0123456789ab port 8080: tags template: "),
            "{ignored:?}"
        );
        // Decisions T6: a registered service keeps the tags it was built with.
        let mut known = got.clone();
        known[0].tags = vec!["rendered-before".into()];
        c.config.env[1] = "SERVICE_9090_TAGS={{.Name}}".into();
        c.raw = br#"{"Name": "/changed"}"#.to_vec();
        let (again, _) = services(&c, &settings(), None, &known);
        assert_eq!(again[0].tags, ["rendered-before"]);
        let (fresh, _) = services(&c, &settings(), None, &[]);
        assert_eq!(fresh[0].tags, ["/changed"]);
    }

    /// Vectors P1-P17 of spec/dropin.md section 2.4 with our deterministic precedence
    /// (Decisions F3): exact+protocol > exact > range+protocol > range > generic, label over env.
    #[test]
    fn port_protocol_and_range_keys_p1_to_p17() {
        let meta = |env: &[&str],
                    labels: &[(&str, &str)],
                    port: &str|
         -> Option<BTreeMap<String, String>> {
            let (p, proto) = port.split_once('/').unwrap();
            let ports = [(port, p)];
            let c = run("web", "nginx", &ports, env, labels);
            let got = one(&c, &settings());
            got.first().map(|s| {
                let mut m = s.attrs.clone();
                m.insert("name".into(), s.name.clone());
                assert_eq!(s.proto, proto);
                m
            })
        };
        let name = |env: &[&str], port: &str| meta(env, &[], port).map(|m| m["name"].clone());
        let both = ["SERVICE_8080_tcp_NAME=web", "SERVICE_8080_udp_NAME=dns"];
        assert_eq!(name(&both, "8080/tcp").as_deref(), Some("web")); // P1
        assert_eq!(name(&both, "8080/udp").as_deref(), Some("dns")); // P2
        assert_eq!(
            name(&["SERVICE_8080_TCP_NAME=web"], "8080/tcp").as_deref(),
            Some("web")
        ); // P3
        for env in [
            ["SERVICE_8080_NAME=any", "SERVICE_8080_udp_NAME=dns"],
            ["SERVICE_8080_udp_NAME=dns", "SERVICE_8080_NAME=any"],
        ] {
            assert_eq!(name(&env, "8080/udp").as_deref(), Some("dns"), "{env:?}");
            // P4, P5
        }
        let range = ["SERVICE_10000-20000_IGNORE=true"];
        for port in ["10000/udp", "15000/udp", "20000/udp"] {
            assert_eq!(meta(&range, &[], port), None, "{port}"); // P6
        }
        assert_eq!(
            meta(&range, &[], "9999/udp").unwrap().len(),
            1,
            "P7: no attribute"
        );
        assert_eq!(
            meta(&["SERVICE_10000-20000_udp_IGNORE=true"], &[], "15000/tcp")
                .unwrap()
                .len(),
            1
        ); // P8
        assert_eq!(
            meta(&["SERVICE_20000-10000_IGNORE=true"], &[], "15000/udp")
                .unwrap()
                .len(),
            1
        ); // P9
        for env in [
            ["SERVICE_1-100_NAME=range", "SERVICE_80_NAME=exact"],
            ["SERVICE_80_NAME=exact", "SERVICE_1-100_NAME=range"],
        ] {
            assert_eq!(
                meta(&env, &[], "80/tcp").unwrap(),
                BTreeMap::from([("name".into(), "exact".into())])
            ); // P10, P11
        }
        assert_eq!(meta(&["SERVICE_80=x"], &[], "80/tcp").unwrap().len(), 1); // P12
        assert_eq!(meta(&["SERVICE_1-100=x"], &[], "443/tcp").unwrap().len(), 1); // P13
        for env in [
            ["SERVICE_NAME=web", "SERVICE_80_NAME=http"],
            ["SERVICE_80_NAME=http", "SERVICE_NAME=web"],
        ] {
            assert_eq!(name(&env, "80/tcp").as_deref(), Some("http")); // P14
            assert_eq!(name(&env, "443/tcp").as_deref(), Some("web"));
        }
        let c = run(
            "web",
            "nginx",
            &[("80", "80")],
            &["SERVICE_80_TAGS=a,b", "SERVICE_TAGS=c"],
            &[],
        );
        assert_eq!(one(&c, &settings())[0].tags, ["a", "b"]); // P15
        assert_eq!(
            meta(&["SERVICE_80_tcp=x"], &[], "80/tcp").unwrap()["tcp"],
            "x"
        ); // P16
        for env in ["SERVICE_080_NAME=x", "SERVICE_-5_NAME=x"] {
            assert_eq!(meta(&[env], &[], "80/tcp").unwrap().len(), 1, "{env}"); // P17
        }
        // Within one level a label beats env, whatever the order.
        assert_eq!(
            meta(
                &["SERVICE_80_NAME=env"],
                &[("SERVICE_80_NAME", "label")],
                "80/tcp"
            )
            .unwrap()["name"],
            "label"
        );
        assert_eq!(
            meta(
                &["SERVICE_NAME=env"],
                &[("SERVICE_1-100_NAME", "range")],
                "80/tcp"
            )
            .unwrap()["name"],
            "range"
        );
        // A name from any port-specific form suppresses the -<port> suffix of a group.
        let c = run(
            "web",
            "nginx",
            &[("80", "80"), ("443", "443")],
            &["SERVICE_1-100_NAME=low", "SERVICE_NAME=all"],
            &[],
        );
        let names: Vec<_> = one(&c, &settings()).into_iter().map(|s| s.name).collect();
        assert_eq!(names, ["all-443", "low"]);
    }

    /// Vectors I1-I12 of spec/dropin.md section 2.3 (Decisions F2): the container's own
    /// address, the published port, over -ip and the binding; -useIpFromLabel still wins.
    #[test]
    fn ip_from_container_i1_to_i12() {
        let s = |f: &dyn Fn(&mut Settings)| {
            let mut s = settings();
            f(&mut s);
            s
        };
        let flag = s(&|s| s.ip_from_container = true);
        let c = run(
            "web",
            "nginx",
            &[("80", "32768")],
            &[],
            &[("ipl", "10.9.9.9/24")],
        );
        let addr = |c: &Container, st: &Settings| {
            let got = one(c, st);
            (got[0].ip.clone(), got[0].port)
        };
        assert_eq!(addr(&c, &settings()), ("192.168.1.102".into(), 32768)); // I1
        assert_eq!(addr(&c, &flag), ("172.17.0.2".into(), 32768)); // I2
        assert_eq!(
            addr(
                &c,
                &s(&|s| {
                    s.ip_from_container = true;
                    s.internal = true
                })
            ),
            ("172.17.0.2".into(), 80)
        ); // I3
        assert_eq!(
            addr(&c, &s(&|s| s.ip = Some("10.0.0.1".into()))),
            ("10.0.0.1".into(), 32768)
        ); // I4
        assert_eq!(
            addr(
                &c,
                &s(&|s| {
                    s.ip_from_container = true;
                    s.ip = Some("10.0.0.1".into())
                })
            ),
            ("172.17.0.2".into(), 32768)
        ); // I5
        assert_eq!(
            addr(
                &c,
                &s(&|s| {
                    s.ip_from_container = true;
                    s.ip_label = Some("ipl".into())
                })
            ),
            ("10.9.9.9".into(), 32768)
        ); // I6
        assert_eq!(
            addr(
                &c,
                &s(&|s| {
                    s.ip_from_container = true;
                    s.ip_label = Some("nope".into())
                })
            ),
            ("172.17.0.2".into(), 32768)
        ); // I7
           // I8: no address of its own (host network): the one it had, never an empty one.
        let host = container(json!({
            "Id": "0123456789abcdef0123456789abcdef", "Name": "/h", "State": {"Running": true},
            "Config": {"Image": "nginx", "ExposedPorts": {"80/tcp": {}}},
            "HostConfig": {"NetworkMode": "host"},
            "NetworkSettings": {"Ports": {}, "Networks": {"host": {"IPAddress": ""}}}
        }));
        assert_eq!(addr(&host, &flag), ("192.168.1.102".into(), 80));
        // I10: several networks: the same deterministic pick as -internal (first by name).
        let multi = container(json!({
            "Id": "0123456789abcdef0123456789abcdef", "Name": "/m", "State": {"Running": true},
            "Config": {"Image": "nginx", "ExposedPorts": {"80/tcp": {}}},
            "HostConfig": {"NetworkMode": "c"},
            "NetworkSettings": {"Ports": {"80/tcp": [{"HostIp": "127.0.0.1", "HostPort": "8080"}]},
                "Networks": {"a": {"IPAddress": "10.1.0.7"}, "b": {"IPAddress": "10.2.0.9"}, "c": {"IPAddress": "10.3.0.4"}}}
        }));
        for _ in 0..3 {
            assert_eq!(addr(&multi, &flag), ("10.3.0.4".into(), 8080));
        }
        // I12: a binding on 127.0.0.1 gives way too.
        let lo = run("web", "nginx", &[], &[], &[]);
        let mut lo_json: serde_json::Value = serde_json::from_slice(&lo.raw).unwrap();
        lo_json["Config"]["ExposedPorts"] = json!({"80/tcp": {}});
        lo_json["NetworkSettings"]["Ports"] =
            json!({"80/tcp": [{"HostIp": "127.0.0.1", "HostPort": "8080"}]});
        let lo = container(lo_json);
        assert_eq!(addr(&lo, &settings()), ("127.0.0.1".into(), 8080));
        assert_eq!(addr(&lo, &flag), ("172.17.0.2".into(), 8080));
    }

    /// `GET /services` of Docker 28.5.2 in a swarm (`tests/docker28.sh capture-swarm`).
    const SWARM_SERVICES: &[u8] = include_bytes!("../tests/data/services-swarm-28.5.json");

    fn swarm_of(name: &str, settings: &Settings) -> (Vec<Service>, Vec<String>) {
        let list: Vec<swarm::Service> = serde_json::from_slice(SWARM_SERVICES).unwrap();
        let s = list.iter().find(|s| s.spec.name == name).unwrap();
        swarm_services(s, settings, "10.0.0.5", "swarm:x")
    }

    #[test]
    fn swarm_services_of_a_real_swarm() {
        let settings = Settings {
            tags: vec!["all".into()],
            swarm: true,
            ..settings()
        };
        // An ingress port and a host-mode one: the ingress one only, with the labels of its
        // target port.
        let (web, _) = swarm_of("cap-web", &settings);
        assert_eq!(web.len(), 1);
        let w = &web[0];
        assert_eq!(w.id, "hostname:cap-web:18080");
        assert_eq!(
            (w.name.as_str(), w.ip.as_str(), w.port),
            ("www", "10.0.0.5", 18080)
        );
        assert_eq!((w.exposed_port, w.proto.as_str()), (80, "tcp"));
        assert_eq!(w.tags, ["blue", "green", "all"]);
        let attrs: Vec<(&str, &str)> = w
            .attrs
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        assert_eq!(attrs, [("check_http", "/"), ("check_interval", "5s")]);
        assert_eq!(
            (w.container_id.as_str(), w.container_name.as_str()),
            ("swarm:x", "cap-web")
        );
        // TCP and UDP on one published port: two IDs, the name suffixed as a container's.
        let (dns, _) = swarm_of("cap-dns", &settings);
        let got: Vec<(&str, &str, &[String])> = dns
            .iter()
            .map(|s| (s.id.as_str(), s.name.as_str(), &s.tags[..]))
            .collect();
        assert_eq!(
            got,
            [
                ("hostname:cap-dns:18053", "dns-53", &["all".to_string()][..]),
                (
                    "hostname:cap-dns:18053:udp",
                    "dns-53",
                    &["all".to_string(), "udp".to_string()][..]
                ),
            ]
        );
        // Scaled to 0, host mode only, no ports: nothing, and why for the first.
        let (idle, why) = swarm_of("cap-idle", &settings);
        assert!(idle.is_empty());
        assert_eq!(why, ["swarm service cap-idle: scaled to 0"]);
        assert!(swarm_of("cap-global", &settings).0.is_empty());
        assert!(swarm_of("cap-worker", &settings) == (vec![], vec![]));
    }

    #[test]
    fn swarm_service_metadata() {
        let svc = |labels: serde_json::Value, ports: serde_json::Value| -> swarm::Service {
            serde_json::from_value(json!({"ID": "id1", "Spec": {"Name": "api", "Labels": labels}, "Endpoint": {"Ports": ports}})).unwrap()
        };
        let port = |t: u64, p: u64| json!({"Protocol": "tcp", "TargetPort": t, "PublishedPort": p, "PublishMode": "ingress"});
        let s = Settings {
            swarm: true,
            ..settings()
        };
        let run = |sv: &swarm::Service, st: &Settings| swarm_services(sv, st, "10.0.0.5", "k");
        // SERVICE_ID, SERVICE_IGNORE per port, -explicit.
        let sv = svc(
            json!({"SERVICE_ID": "fixed", "SERVICE_81_IGNORE": "1"}),
            json!([port(80, 8080), port(81, 8081)]),
        );
        let (out, why) = run(&sv, &s);
        assert_eq!(
            out.iter()
                .map(|s| (s.id.as_str(), s.name.as_str()))
                .collect::<Vec<_>>(),
            [("fixed", "api-80")]
        );
        assert_eq!(why, ["swarm service api port 81 has SERVICE_IGNORE"]);
        let explicit = Settings {
            explicit: true,
            ..s.clone()
        };
        assert!(run(&svc(json!({}), json!([port(80, 8080)])), &explicit)
            .0
            .is_empty());
        let named = svc(json!({"SERVICE_80_NAME": "x"}), json!([port(80, 8080)]));
        assert_eq!(run(&named, &explicit).0[0].name, "x");
        // -ip wins over nothing here: the address given is the manager's (the worker puts -ip
        // there); -useIpFromLabel reads the service's labels.
        let labelled = svc(json!({"ip": "10.9.9.9/24"}), json!([port(80, 8080)]));
        let by_label = Settings {
            ip_label: Some("ip".into()),
            ..s.clone()
        };
        assert_eq!(run(&labelled, &by_label).0[0].ip, "10.9.9.9");
        // A template in the service's tags: that port is skipped, with the reason; a -tags
        // template is not rendered for a swarm service, literal -tags apply.
        let t = svc(
            json!({"SERVICE_TAGS": "{{.Name}}"}),
            json!([port(80, 8080)]),
        );
        let (out, why) = run(&t, &s);
        assert!(out.is_empty());
        assert!(why[0].contains("tags template"), "{why:?}");
        // Checks that need a container are dropped, with a reason; the service stays.
        let checks = svc(
            json!({"SERVICE_CHECK_DOCKER": "true", "SERVICE_CHECK_CMD": "x", "SERVICE_CHECK_TTL": "30s"}),
            json!([port(80, 8080)]),
        );
        let (out, why) = run(&checks, &s);
        assert_eq!(out[0].attrs.keys().collect::<Vec<_>>(), ["check_ttl"]);
        assert_eq!(why.len(), 2, "{why:?}");
        // Published port 0 (not allocated), and numbers out of range.
        let odd = svc(
            json!({}),
            json!([port(80, 0), port(70000, 8080), port(80, 70000)]),
        );
        let (out, why) = run(&odd, &s);
        assert!(out.is_empty());
        assert_eq!(why.len(), 3, "{why:?}");
        // No name: nothing.
        let unnamed: swarm::Service = serde_json::from_value(
            json!({"ID": "abcdef0123456789", "Endpoint": {"Ports": [port(80, 8080)]}}),
        )
        .unwrap();
        assert_eq!(run(&unnamed, &s).1, ["swarm service abcdef012345: no name"]);
    }

    #[test]
    fn swarm_task_containers() {
        let labels = [
            ("com.docker.swarm.service.name", "web"),
            ("com.docker.swarm.task.name", "web.1.abc"),
        ];
        // Host mode: the binding on the container, as any container.
        let c = run("web.1.abc", "bb:latest", &[("80", "18081")], &[], &labels);
        let flag = Settings {
            swarm: true,
            ..settings()
        };
        let with = one(&c, &flag);
        assert_eq!(
            (with[0].id.as_str(), with[0].name.as_str(), with[0].port),
            ("hostname:web.1.abc:80", "web", 18081)
        );
        // Without -swarm, the image's name, as before.
        assert_eq!(one(&c, &settings())[0].name, "bb");
        // -internal: the overlay's address, not ingress's (the routing mesh), whatever their
        // names' order.
        let internal = Settings {
            internal: true,
            ..flag.clone()
        };
        for overlay in ["app", "rgtr-ov"] {
            let task = container(json!({
                "Id": "0123456789abcdef0123456789abcdef",
                "Name": "/web.2.def",
                "State": {"Running": true},
                "Config": {"Image": "nginx", "Labels": {"com.docker.swarm.service.name": "web"},
                    "ExposedPorts": {"80/tcp": {}}},
                "HostConfig": {"NetworkMode": "bridge"},
                "NetworkSettings": {"Ports": {"80/tcp": null},
                    "Networks": {"ingress": {"IPAddress": "10.0.0.4"}, overlay: {"IPAddress": "10.0.1.6"}}}
            }));
            let got = one(&task, &internal);
            assert_eq!(
                (got[0].ip.as_str(), got[0].port, got[0].name.as_str()),
                ("10.0.1.6", 80, "web"),
                "{overlay}"
            );
            // Without -swarm the order of names decides, as before.
            let plain = Settings {
                swarm: false,
                ..internal.clone()
            };
            let want = if overlay < "ingress" {
                "10.0.1.6"
            } else {
                "10.0.0.4"
            };
            assert_eq!(one(&task, &plain)[0].ip, want, "{overlay}");
        }
    }
}
