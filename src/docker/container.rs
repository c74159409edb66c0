//! The parts of `GET /containers/{id}/json` (inspect) and `GET /containers/json` (list) the
//! daemon reads. Every field is optional on the wire: engines send `null` for empty maps and
//! lists, older ones lack newer fields and newer ones drop old ones (API 1.52 has no top-level
//! `NetworkSettings.IPAddress`). Anything missing or null reads as empty.

use serde::de::{Deserializer, IgnoredAny};
use serde::Deserialize;
use std::collections::BTreeMap;

use crate::backend::Health;

/// `null` reads as the type's default.
pub(super) fn nullable<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// A string, or a number as its text; anything else (null, a list) is empty. (A visitor, not
/// `serde_json::Value`: a smaller binary.)
fn lenient_text<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    struct Text;
    impl<'de> serde::de::Visitor<'de> for Text {
        type Value = String;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a string or a number")
        }
        fn visit_str<E>(self, v: &str) -> Result<String, E> {
            Ok(v.to_string())
        }
        fn visit_u64<E>(self, v: u64) -> Result<String, E> {
            Ok(v.to_string())
        }
        fn visit_i64<E>(self, v: i64) -> Result<String, E> {
            Ok(v.to_string())
        }
        fn visit_f64<E>(self, _: f64) -> Result<String, E> {
            Ok(String::new())
        }
        fn visit_bool<E>(self, _: bool) -> Result<String, E> {
            Ok(String::new())
        }
        fn visit_unit<E>(self) -> Result<String, E> {
            Ok(String::new())
        }
        fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut a: A) -> Result<String, A::Error> {
            while a.next_element::<IgnoredAny>()?.is_some() {}
            Ok(String::new())
        }
        fn visit_map<A: serde::de::MapAccess<'de>>(self, mut a: A) -> Result<String, A::Error> {
            while a.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
            Ok(String::new())
        }
    }
    d.deserialize_any(Text)
}

#[derive(Debug, Default, Clone, Deserialize)]
pub struct Container {
    #[serde(rename = "Id", default, deserialize_with = "nullable")]
    pub id: String,
    /// With a leading `/`.
    #[serde(rename = "Name", default, deserialize_with = "nullable")]
    pub name: String,
    #[serde(rename = "State", default, deserialize_with = "nullable")]
    pub state: State,
    #[serde(rename = "Config", default, deserialize_with = "nullable")]
    pub config: Config,
    #[serde(rename = "HostConfig", default, deserialize_with = "nullable")]
    pub host_config: HostConfig,
    #[serde(rename = "NetworkSettings", default, deserialize_with = "nullable")]
    pub network_settings: NetworkSettings,
    /// The whole inspect document as the engine sent it: what tag templates read (kept only
    /// while the container's services are built).
    #[serde(skip)]
    pub raw: Vec<u8>,
}

#[derive(Debug, Default, Clone, Deserialize)]
pub struct State {
    #[serde(rename = "Running", default, deserialize_with = "nullable")]
    pub running: bool,
    #[serde(rename = "ExitCode", default, deserialize_with = "nullable")]
    pub exit_code: i64,
    /// When it was last started (RFC 3339), to tell a replayed event from what came since.
    #[serde(rename = "StartedAt", default, deserialize_with = "nullable")]
    pub started_at: String,
    /// A paused container is also `Running`.
    #[serde(rename = "Paused", default, deserialize_with = "nullable")]
    pub paused: bool,
    /// Present only for containers with a HEALTHCHECK.
    #[serde(rename = "Health", default)]
    pub health: Option<HealthState>,
}

#[derive(Debug, Default, Clone, Deserialize)]
pub struct HealthState {
    /// `starting`, `healthy`, `unhealthy` (or `none` where an engine says so).
    #[serde(rename = "Status", default, deserialize_with = "nullable")]
    pub status: String,
}

impl State {
    /// The HEALTHCHECK status; `None` for a container without one. A status not known here
    /// counts as not healthy yet.
    pub fn health(&self) -> Option<Health> {
        let h = self.health.as_ref()?;
        match h.status.as_str() {
            "" | "none" => None,
            s => Some(Health::parse(s).unwrap_or(Health::Starting)),
        }
    }
}

#[derive(Debug, Default, Clone, Deserialize)]
pub struct Config {
    #[serde(rename = "Image", default, deserialize_with = "nullable")]
    pub image: String,
    #[serde(rename = "Env", default, deserialize_with = "nullable")]
    pub env: Vec<String>,
    #[serde(rename = "Labels", default, deserialize_with = "nullable")]
    pub labels: BTreeMap<String, String>,
    #[serde(rename = "ExposedPorts", default, deserialize_with = "nullable")]
    pub exposed_ports: BTreeMap<String, IgnoredAny>,
    /// The signal `docker stop` sends (`SIGTERM` when empty). A number is taken as its text;
    /// anything else reads as empty rather than failing the whole inspect.
    #[serde(rename = "StopSignal", default, deserialize_with = "lenient_text")]
    pub stop_signal: String,
}

#[derive(Debug, Default, Clone, Deserialize)]
pub struct HostConfig {
    #[serde(rename = "NetworkMode", default, deserialize_with = "nullable")]
    pub network_mode: String,
}

#[derive(Debug, Default, Clone, Deserialize)]
pub struct NetworkSettings {
    /// Gone from API 1.52; kept for older engines.
    #[serde(rename = "IPAddress", default, deserialize_with = "nullable")]
    pub ip_address: String,
    #[serde(rename = "GlobalIPv6Address", default, deserialize_with = "nullable")]
    pub global_ipv6_address: String,
    #[serde(rename = "Ports", default, deserialize_with = "nullable")]
    pub ports: BTreeMap<String, Option<Vec<PortBinding>>>,
    #[serde(rename = "Networks", default, deserialize_with = "nullable")]
    pub networks: BTreeMap<String, Option<Network>>,
}

#[derive(Debug, Default, Clone, Deserialize)]
pub struct PortBinding {
    #[serde(rename = "HostIp", default, deserialize_with = "nullable")]
    pub host_ip: String,
    #[serde(rename = "HostPort", default, deserialize_with = "nullable")]
    pub host_port: String,
}

#[derive(Debug, Default, Clone, Deserialize)]
pub struct Network {
    #[serde(rename = "IPAddress", default, deserialize_with = "nullable")]
    pub ip_address: String,
    #[serde(rename = "GlobalIPv6Address", default, deserialize_with = "nullable")]
    pub global_ipv6_address: String,
}

impl Network {
    /// The network's IPv4 address, else its IPv6 one.
    pub fn ip(&self) -> Option<&str> {
        v4_else_v6(&self.ip_address, &self.global_ipv6_address)
    }
}

fn v4_else_v6<'a>(v4: &'a str, v6: &'a str) -> Option<&'a str> {
    [v4, v6].into_iter().find(|s| !s.is_empty())
}

/// One entry of `GET /containers/json`.
#[derive(Debug, Default, Clone, Deserialize)]
pub struct Summary {
    #[serde(rename = "Id", default, deserialize_with = "nullable")]
    pub id: String,
}

impl Container {
    /// Name without the leading `/`.
    pub fn short_name(&self) -> &str {
        self.name.strip_prefix('/').unwrap_or(&self.name)
    }

    /// The container's IP on `network` if named and present, else on its `NetworkMode` network,
    /// else on the first network by name that has one, else the legacy top-level address.
    pub fn ip(&self, network: Option<&str>) -> Option<&str> {
        self.ip_with(network, false)
    }

    /// As [`Container::ip`]; with `swarm` (`-swarm`), the swarm's `ingress` network is taken
    /// last: a task's container sits on it when its service publishes in ingress mode (with
    /// `NetworkMode: bridge`), and its address there is the routing mesh's, not one a client
    /// of the task reaches.
    pub fn ip_with(&self, network: Option<&str>, swarm: bool) -> Option<&str> {
        let nets = &self.network_settings.networks;
        let on = |name: &str| {
            nets.get(name)
                .and_then(|n| n.as_ref())
                .and_then(Network::ip)
        };
        let mode = match self.host_config.network_mode.as_str() {
            "default" => "bridge",
            m => m,
        };
        network
            .and_then(on)
            .or_else(|| on(mode))
            .or_else(|| {
                let mesh = |name: &String| swarm && name == "ingress";
                let first = |pick: &dyn Fn(&String) -> bool| {
                    (nets.iter().filter(|(name, _)| pick(name)))
                        .find_map(|(_, n)| n.as_ref().and_then(Network::ip))
                };
                first(&|name| !mesh(name)).or_else(|| first(&mesh))
            })
            .or_else(|| {
                let ns = &self.network_settings;
                v4_else_v6(&ns.ip_address, &ns.global_ipv6_address)
            })
    }
}

/// First 12 characters of an ID, for log lines.
pub fn id12(id: &str) -> &str {
    id.get(..12).unwrap_or(id)
}

/// RFC 3339 text as Unix seconds.
pub fn unix_seconds(s: &str) -> Option<i64> {
    let num = |a: usize, b: usize| s.get(a..b)?.parse::<i64>().ok();
    let (y, mo, d) = (num(0, 4)?, num(5, 7)?, num(8, 10)?);
    let (h, mi, se) = (num(11, 13)?, num(14, 16)?, num(17, 19)?);
    let rest = s.get(19..)?;
    let rest = rest.trim_start_matches(|c: char| c == '.' || c.is_ascii_digit());
    let off = match rest {
        "Z" => 0,
        z if z.len() == 6 => {
            let sign = if z.starts_with('-') { -1 } else { 1 };
            sign * (z.get(1..3)?.parse::<i64>().ok()? * 3600
                + z.get(4..6)?.parse::<i64>().ok()? * 60)
        }
        _ => return None,
    };
    // Days from 1970-01-01 (Howard Hinnant's days_from_civil).
    let y2 = if mo <= 2 { y - 1 } else { y };
    let era = y2.div_euclid(400);
    let yoe = y2 - era * 400;
    let doy = (153 * (mo + if mo > 2 { -3 } else { 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days * 86_400 + h * 3600 + mi * 60 + se - off)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stop_signal_may_be_a_number_or_odd() {
        let sig = |v: &str| {
            let c: Container =
                serde_json::from_str(&format!(r#"{{"Config":{{"StopSignal":{v}}}}}"#)).unwrap();
            c.config.stop_signal
        };
        assert_eq!(sig(r#""SIGQUIT""#), "SIGQUIT");
        assert_eq!(sig("3"), "3");
        for odd in ["null", "true", "1.5", "[1,2]", r#"{"a":[1]}"#] {
            assert_eq!(sig(odd), "", "{odd}");
        }
    }
}
