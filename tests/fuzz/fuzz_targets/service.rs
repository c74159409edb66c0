//! `service::services` on containers from the input: (a) the input read as inspect JSON when it
//! parses, and (b) a container built from the input's fields (env entries, labels, exposed
//! ports, port bindings, networks, network mode, image and name), with the flags from the
//! first bytes. Also `split_tags` and `default_name` against what their comments promise.
//!
//! Input: four bytes of settings (the fourth: `-ip-from-container`, `-swarm`, and a `-tags`
//! template from a small table), then fields separated by 0x00. A field's first byte picks
//! its kind (low 3 bits) and an entry of that kind's table of odd values (the other bits);
//! the rest is raw text (`0x02 n text` repeats `text` to `n * 64` bytes); a label's key and
//! value, and a binding's spec and raw text, are separated by 0x01.
//!
//! Invariants: no panic; each service has a non-empty ID, and a non-empty name when the
//! container has one; no two services share an ID when none is set by `SERVICE_*ID` and every
//! port key is `<port>/tcp` or `<port>/udp`; each port gives a service or an `ignored` reason;
//! the service's fields agree with its port key, the container and the settings (see `check`).
#![no_main]

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use libfuzzer_sys::fuzz_target;
use registrator_fuzz::docker::container::{Container, Network, PortBinding};
use registrator_fuzz::harness::{check, Src};
use registrator_fuzz::service::{default_name, services, split_tags, Settings};
use registrator_fuzz::template::Template;

const HOSTNAMES: &[&str] = &["hostname", "", "h:x", "hôte"];
const IPS: &[&str] = &["127.0.0.1", "::1", "", "10.0.0.1"];
const IP_LABELS: &[&str] = &[
    "ipl",
    "",
    "SERVICE_NAME",
    "SERVICE_80_NAME",
    "x/y",
    "é",
    "ip",
    "SERVICE_",
];
const PEERS: &[&str] = &["10.9.0.7", "", "fd00::7", "x"];
const TAGS: &[&str] = &["forced", "", "a,b", "udp"];
const ENV: &[&str] = &[
    "",
    "SERVICE_",
    "SERVICE_NAME=",
    "SERVICE_ID=",
    "SERVICE_TAGS=",
    "SERVICE_IGNORE=",
    "SERVICE_80_",
    "SERVICE_80_NAME=",
    "SERVICE_80_ID=",
    "SERVICE_443_NAME=",
    "SERVICE_99999999999_NAME=",
    "SERVICE_NETWORK=",
    "SERVICE_80_NETWORK=",
    "SERVICE_=",
    "SERVICE_53_TAGS=",
    "SERVICE_CHECK_HTTP=",
    "SERVICE__NAME=",
    "service_name=",
    "SERVICE_ÄÖ_ПОРТ=",
    "SERVICE_80_IGNORE=",
    "SERVICE_Name=",
    "SERVICE_0080_NAME=",
];
const LABELS: &[&str] = &[
    "",
    "SERVICE_",
    "SERVICE_NAME",
    "SERVICE_ID",
    "SERVICE_TAGS",
    "SERVICE_IGNORE",
    "SERVICE_80_NAME",
    "SERVICE_80_ID",
    "SERVICE_443_NAME",
    "SERVICE_99999999999_NAME",
    "SERVICE_NETWORK",
    "ipl",
    "SERVICE_80_",
    "SERVICE_=",
    "SERVICE_53_TAGS",
    "SERVICE_REGION",
    "com.docker.swarm.service.name",
];
const PORTS: &[&str] = &[
    "80/tcp",
    "443/tcp",
    "53/udp",
    "x/udp",
    "99999/tcp",
    "",
    "80",
    "80/sctp",
    "65535/tcp",
    "0/tcp",
    "080/tcp",
    "80/udp",
    "53/tcp",
    "8080/tcp",
    "80/tcp/x",
    "/tcp",
    "+80/tcp",
    "80/UDP",
];
const HOST_IPS: &[&str] = &["0.0.0.0", "::", "", "127.0.0.1", "fe80::1", "10.1.2.3", "x"];
const HOST_PORTS: &[&str] = &[
    "8080", "0", "65536", "", "-1", "80", "+80", " 80", "4443", "53",
];
const NETS: &[&str] = &["bridge", "backend", "host", "v6", "default", "none", ""];
const NET_IPS: &[&str] = &["", "172.17.0.2", "10.2.0.2", "fd00::2", "::", "a/b"];
const MODES: &[&str] = &[
    "",
    "default",
    "bridge",
    "host",
    "container:main",
    "backend",
    "none",
    "v6",
];
const IMAGES: &[&str] = &[
    "redis:7",
    "",
    "sha256:abc",
    "reg:5000/team/app:1.2",
    "app@sha256:x",
    "/",
    ":tag",
    "a/",
    "@",
    "gliderlabs/foobar",
];

const TEMPLATES: &[&str] = &[
    "{{.Name}},x",
    "{{index .Config.Labels \"SERVICE_NAME\"}}",
    "{{range .Config.Env}}{{.}},{{end}}",
    "{{.Config.Labels.missing}}",
];

fuzz_target!(|data: &[u8]| {
    let mut src = Src::new(data);
    let (b0, b1, b2) = (src.byte(), src.byte(), src.byte());
    let tags = usize::from(b0 >> 6);
    let settings = Settings {
        hostname: HOSTNAMES[usize::from(b1) % 4].into(),
        host_ip: (b0 & 0x10 != 0).then(|| IPS[usize::from(b2 >> 4) % 4].into()),
        ip: (b0 & 4 != 0).then(|| IPS[usize::from(b1 >> 2) % 4].into()),
        internal: b0 & 1 != 0,
        explicit: b0 & 2 != 0,
        ip_label: (b0 & 8 != 0).then(|| IP_LABELS[usize::from(b1 >> 4) % 8].into()),
        tags: (0..tags)
            .map(|i| TAGS[(i + usize::from(b2)) % 4].into())
            .collect(),
        tags_template: None,
        ip_from_container: false,
        swarm: false,
    };
    let peer = (b0 & 0x20 != 0).then(|| PEERS[usize::from(b2) % 4]);
    // Bit 0: -ip-from-container; bit 1: a -tags template (in place of the literal -tags);
    // bit 7: -swarm.
    let b3 = src.byte();
    let mut settings = settings;
    settings.ip_from_container = b3 & 1 != 0;
    settings.swarm = b3 & 0x80 != 0;
    if b3 & 2 != 0 {
        let t = TEMPLATES[usize::from(b3 >> 2) % TEMPLATES.len()];
        settings.tags_template = Some(Arc::new(Template::parse(t).expect("a valid template")));
        settings.tags.clear();
    }
    let payload = src.rest();

    if let Ok(c) = serde_json::from_slice::<Container>(payload) {
        check_container(&c, &settings, peer);
    }
    let c = build(payload);
    check_container(&c, &settings, peer);
});

/// Raw text; `0x02 n rest` repeats `rest` to at least `n * 64` bytes.
fn text(raw: &[u8]) -> String {
    let s = match raw {
        [2, n, rest @ ..] if !rest.is_empty() => {
            let unit = String::from_utf8_lossy(rest);
            unit.repeat(usize::from(*n) * 64 / unit.len() + 1)
        }
        _ => return String::from_utf8_lossy(raw).into_owned(),
    };
    s
}

/// An entry of `table`, or the raw text when the pick is past its end.
fn pick(table: &[&str], i: u8, raw: &[u8]) -> String {
    match table.get(usize::from(i)) {
        Some(s) => s.to_string(),
        None => text(raw),
    }
}

fn build(payload: &[u8]) -> Container {
    let mut c = Container {
        id: "0123456789abcdef0123".into(),
        name: "/ctr".into(),
        ..Container::default()
    };
    c.config.image = "img".into();
    for field in payload.split(|&b| b == 0) {
        let Some((&k, rest)) = field.split_first() else {
            continue;
        };
        let sub = k >> 3;
        match k & 7 {
            0 => {
                let prefix = ENV.get(usize::from(sub)).copied().unwrap_or("");
                c.config.env.push(format!("{prefix}{}", text(rest)));
            }
            1 => {
                let (key, value) = split1(rest);
                let prefix = LABELS.get(usize::from(sub)).copied().unwrap_or("");
                c.config
                    .labels
                    .insert(format!("{prefix}{}", text(key)), text(value));
            }
            2 => {
                c.config
                    .exposed_ports
                    .insert(pick(PORTS, sub, rest), serde::de::IgnoredAny);
            }
            3 => {
                let (spec, raw) = split1(rest);
                let key = pick(PORTS, sub, raw);
                let bindings = match spec.split_first() {
                    None => None,
                    Some((m, _)) if m % 4 == 0 => None,
                    Some((m, _)) if m % 4 == 1 => Some(vec![]),
                    Some((_, pairs)) => Some(
                        pairs
                            .chunks(2)
                            .take(3)
                            .map(|p| PortBinding {
                                host_ip: pick(HOST_IPS, p[0] % 8, raw),
                                host_port: pick(HOST_PORTS, p.get(1).map_or(0, |b| b % 11), raw),
                            })
                            .collect(),
                    ),
                };
                c.network_settings.ports.insert(key, bindings);
            }
            4 => {
                let (spec, raw) = split1(rest);
                let name = pick(NETS, sub % 8, raw);
                let net = match spec {
                    [a, b, ..] => Some(Network {
                        ip_address: pick(NET_IPS, a % 7, raw),
                        global_ipv6_address: pick(NET_IPS, b % 7, raw),
                    }),
                    _ => None,
                };
                c.network_settings.networks.insert(name, net);
            }
            5 => c.host_config.network_mode = pick(MODES, sub % 9, rest),
            6 => c.config.image = pick(IMAGES, sub % 11, rest),
            _ => match sub % 5 {
                0 => c.name = format!("/{}", text(rest)),
                1 => c.name = text(rest),
                2 => c.id = text(rest),
                3 => c.network_settings.ip_address = text(rest),
                _ => c.network_settings.global_ipv6_address = text(rest),
            },
        }
    }
    c
}

/// Splits at the first 0x01.
fn split1(b: &[u8]) -> (&[u8], &[u8]) {
    match b.iter().position(|&x| x == 1) {
        Some(i) => (&b[..i], &b[i + 1..]),
        None => (b, &[]),
    }
}

/// Every `SERVICE_*` key (env first, then labels) with its value: (rest lower-cased, value).
fn metadata(c: &Container) -> Vec<(String, &str)> {
    let env = c.config.env.iter().filter_map(|e| e.split_once('='));
    let labels = c
        .config
        .labels
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()));
    env.chain(labels)
        .filter_map(|(k, v)| Some((k.strip_prefix("SERVICE_")?.to_lowercase(), v)))
        .collect()
}

fn check_container(c: &Container, settings: &Settings, peer: Option<&str>) {
    let (out, ignored) = services(c, settings, peer, &[]);

    let mut keys: BTreeSet<&str> = c.config.exposed_ports.keys().map(String::as_str).collect();
    keys.extend(c.network_settings.ports.keys().map(String::as_str));
    assert_eq!(
        out.len() + ignored.len(),
        keys.len(),
        "every port gives a service or a reason: {out:?} {ignored:?}"
    );
    let split = |key: &str| -> (String, String) {
        match key.split_once('/') {
            Some((p, proto)) => (p.to_string(), proto.to_string()),
            None => (key.to_string(), "tcp".to_string()),
        }
    };
    let meta = metadata(c);
    let labels: &BTreeMap<String, String> = &c.config.labels;

    for s in &out {
        assert!(!s.id.is_empty(), "empty ID: {s:?}");
        assert!(
            !s.name.is_empty() || c.short_name().is_empty(),
            "empty name for a named container: {s:?}"
        );
        assert!(!s.ip.is_empty(), "empty IP: {s:?}");
        assert_eq!(s.container_id, c.id);
        assert_eq!(s.container_name, c.short_name());
        // The port key it came from.
        let texts: Vec<String> = keys
            .iter()
            .map(|k| split(k))
            .filter(|(p, proto)| p.parse::<u16>() == Ok(s.exposed_port) && *proto == s.proto)
            .map(|(p, _)| p)
            .collect();
        assert!(
            !texts.is_empty(),
            "no port key gives {}/{}",
            s.exposed_port,
            s.proto
        );
        if settings.internal {
            assert_eq!(
                s.port, s.exposed_port,
                "-internal registers the exposed port"
            );
        }
        // Tags: SERVICE_TAGS items, then -tags, then udp.
        let mut tags = &s.tags[..];
        if s.proto == "udp" {
            assert_eq!(
                tags.last().map(String::as_str),
                Some("udp"),
                "udp tag last: {s:?}"
            );
            tags = &tags[..tags.len() - 1];
        }
        assert!(
            tags.ends_with(&settings.tags),
            "-tags after SERVICE_TAGS: {s:?}"
        );
        let own = &tags[..tags.len() - settings.tags.len()];
        assert!(
            own.iter().all(|t| !t.is_empty()),
            "empty SERVICE_TAGS item: {s:?}"
        );
        for k in s.attrs.keys() {
            assert!(
                !k.is_empty() && !matches!(k.as_str(), "name" | "id" | "tags"),
                "attr {k:?}"
            );
            assert_eq!(*k, k.to_lowercase(), "attribute keys are lower-case");
            assert!(meta
                .iter()
                .any(|(m, _)| m == k || m.ends_with(&format!("_{k}"))));
        }
        if settings.explicit {
            let named = meta.iter().any(|(k, v)| {
                // SERVICE_NAME, or a port, protocol or range form of it.
                !v.is_empty() && (k == "name" || k.ends_with("_name"))
            });
            assert!(
                named,
                "-explicit registered a port without SERVICE_NAME: {s:?}"
            );
        }
        // -useIpFromLabel wins last.
        let label = settings
            .ip_label
            .as_ref()
            .and_then(|l| labels.get(l))
            .filter(|v| !v.is_empty());
        if let Some(v) = label {
            let want = v.rfind('/').map_or(v.as_str(), |i| &v[..i]);
            assert_eq!(s.ip, want, "IP from the label");
        } else if let (Some(ip), false, false) =
            (&settings.ip, settings.internal, settings.ip_from_container)
        {
            assert_eq!(&s.ip, ip, "-ip wins over the binding and the network");
        }
        let addr = s.address();
        if s.ip.contains(':') {
            assert_eq!(addr, format!("[{}]:{}", s.ip, s.port));
        } else {
            assert_eq!(addr, format!("{}:{}", s.ip, s.port));
        }
    }
    for (_, v) in &meta {
        tags_promise(v);
    }

    // IDs: distinct unless a SERVICE_*ID sets them or a port key is not <port>/tcp|udp
    // (the default ID only marks udp).
    let id_from_meta = meta.iter().any(|(k, _)| k == "id" || k.ends_with("_id"));
    let plain_keys = keys
        .iter()
        .all(|k| matches!(k.split_once('/'), Some((_, "tcp" | "udp"))));
    if !id_from_meta && plain_keys {
        let mut seen = BTreeSet::new();
        for s in &out {
            check("dup-id", seen.insert(&s.id), || {
                format!("two services with ID {:?}: {out:?}", s.id)
            });
        }
    }

    let name = default_name(c, settings.swarm);
    assert!(
        !name.is_empty() || c.short_name().is_empty(),
        "empty default name"
    );
    let label = c.config.labels.get("com.docker.swarm.service.name");
    if settings.swarm && label.is_some_and(|l| !l.is_empty()) {
        // A task's container: its service's name, as the label has it.
        assert_eq!(Some(&name), label, "-swarm: the service's name");
    } else if name != c.short_name() {
        assert!(
            !name.contains(['/', ':', '@']),
            "default name {name:?} keeps a separator"
        );
    }
}

/// `split_tags`: commas not after `\` split, that `\` goes, empty items are dropped.
fn tags_promise(s: &str) {
    let tags = split_tags(s);
    assert!(tags.iter().all(|t| !t.is_empty()));
    let escaped = s.matches("\\,").count();
    assert_eq!(
        tags.iter().map(|t| t.matches(',').count()).sum::<usize>(),
        escaped,
        "{s:?}"
    );
    let kept: usize = tags.iter().map(String::len).sum();
    assert_eq!(kept, s.len() - s.matches(',').count(), "{s:?} -> {tags:?}");
}
