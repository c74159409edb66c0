//! The swarm parts of the Engine API the daemon reads with `-swarm`: `GET /info` (is this node
//! in a swarm, and a manager?), `GET /nodes/{id}` (its address) and `GET /services` (what each
//! service publishes, and its labels). `/services` and `/nodes` answer only on a manager.
//! As with containers, every field is optional on the wire and anything missing or null reads
//! as empty; a field of the wrong type fails only the answer it is in.

use serde::Deserialize;
use std::collections::BTreeMap;

use super::container::nullable;

/// `GET /info`, only its `Swarm` part.
#[derive(Debug, Default, Clone, Deserialize)]
pub struct Info {
    #[serde(rename = "Swarm", default, deserialize_with = "nullable")]
    pub swarm: SwarmInfo,
}

#[derive(Debug, Default, Clone, PartialEq, Eq, Deserialize)]
pub struct SwarmInfo {
    /// `inactive`, `pending`, `active`, `error` or `locked`; empty from an engine without
    /// swarm (Podman).
    #[serde(rename = "LocalNodeState", default, deserialize_with = "nullable")]
    pub local_node_state: String,
    /// This node is a manager: `/services` and `/nodes` answer here.
    #[serde(rename = "ControlAvailable", default, deserialize_with = "nullable")]
    pub control_available: bool,
    #[serde(rename = "NodeID", default, deserialize_with = "nullable")]
    pub node_id: String,
    /// The address this node advertises to the swarm.
    #[serde(rename = "NodeAddr", default, deserialize_with = "nullable")]
    pub node_addr: String,
}

/// What this node is in a swarm.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Manager,
    Worker,
    /// In no swarm (`inactive`), or an engine without swarm.
    Outside,
}

impl SwarmInfo {
    /// `None` for a node in a swarm it cannot take part in now (`pending`, `error`, `locked`,
    /// or a state not known here): a manager restarting, waiting for its quorum or to be
    /// unlocked is still one.
    pub fn role(&self) -> Option<Role> {
        match (self.local_node_state.as_str(), self.control_available) {
            ("active", true) => Some(Role::Manager),
            ("active", false) => Some(Role::Worker),
            ("" | "inactive", _) => Some(Role::Outside),
            _ => None,
        }
    }
}

/// `GET /nodes/{id}`: the node's address.
#[derive(Debug, Default, Clone, Deserialize)]
pub struct Node {
    #[serde(rename = "Status", default, deserialize_with = "nullable")]
    pub status: NodeStatus,
}

#[derive(Debug, Default, Clone, Deserialize)]
pub struct NodeStatus {
    #[serde(rename = "Addr", default, deserialize_with = "nullable")]
    pub addr: String,
}

/// One entry of `GET /services`, or `GET /services/{id}`.
#[derive(Debug, Default, Clone, Deserialize)]
pub struct Service {
    #[serde(rename = "ID", default, deserialize_with = "nullable")]
    pub id: String,
    #[serde(rename = "Spec", default, deserialize_with = "nullable")]
    pub spec: Spec,
    #[serde(rename = "Endpoint", default, deserialize_with = "nullable")]
    pub endpoint: Endpoint,
}

#[derive(Debug, Default, Clone, Deserialize)]
pub struct Spec {
    #[serde(rename = "Name", default, deserialize_with = "nullable")]
    pub name: String,
    /// The service's own labels (not its containers'): where `SERVICE_*` is read.
    #[serde(rename = "Labels", default, deserialize_with = "nullable")]
    pub labels: BTreeMap<String, String>,
    #[serde(rename = "Mode", default, deserialize_with = "nullable")]
    pub mode: Mode,
}

#[derive(Debug, Default, Clone, Deserialize)]
pub struct Mode {
    /// Present for a replicated service.
    #[serde(rename = "Replicated", default)]
    pub replicated: Option<Replicated>,
}

#[derive(Debug, Default, Clone, Deserialize)]
pub struct Replicated {
    /// Absent means 1 (the engine's default).
    #[serde(rename = "Replicas", default)]
    pub replicas: Option<u64>,
}

/// The ports as the swarm has them now (`Endpoint.Ports`, with published ports assigned),
/// not as the spec asked.
#[derive(Debug, Default, Clone, Deserialize)]
pub struct Endpoint {
    #[serde(rename = "Ports", default, deserialize_with = "nullable")]
    pub ports: Vec<PortConfig>,
}

#[derive(Debug, Default, Clone, Deserialize)]
pub struct PortConfig {
    /// `tcp`, `udp` or `sctp`; empty reads as `tcp`.
    #[serde(rename = "Protocol", default, deserialize_with = "nullable")]
    pub protocol: String,
    #[serde(rename = "TargetPort", default, deserialize_with = "nullable")]
    pub target_port: u64,
    #[serde(rename = "PublishedPort", default, deserialize_with = "nullable")]
    pub published_port: u64,
    /// `ingress` (the routing mesh, on every node) or `host` (on the nodes its tasks run on);
    /// empty reads as `ingress`, the engine's default.
    #[serde(rename = "PublishMode", default, deserialize_with = "nullable")]
    pub publish_mode: String,
}

impl Service {
    /// A replicated service scaled to 0: no task can answer on its ports.
    pub fn scaled_to_zero(&self) -> bool {
        self.spec
            .mode
            .replicated
            .as_ref()
            .is_some_and(|r| r.replicas == Some(0))
    }
}

impl PortConfig {
    pub fn ingress(&self) -> bool {
        matches!(self.publish_mode.as_str(), "" | "ingress")
    }
    pub fn proto(&self) -> &str {
        match self.protocol.as_str() {
            "" => "tcp",
            p => p,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Real answers of Docker 28.5.2 (API 1.51) in a single-node swarm, and of one in none
    /// (`tests/docker28.sh capture-swarm`).
    const SERVICES: &[u8] = include_bytes!("../../tests/data/services-swarm-28.5.json");
    const INFO: &[u8] = include_bytes!("../../tests/data/info-swarm-28.5.json");
    const INFO_NO_SWARM: &[u8] = include_bytes!("../../tests/data/info-noswarm-28.5.json");
    const NODE: &[u8] = include_bytes!("../../tests/data/nodes-swarm-28.5.json");

    fn by_name(list: &[Service], name: &str) -> Service {
        let found = list.iter().find(|s| s.spec.name == name);
        found.cloned().unwrap_or_else(|| panic!("{name}"))
    }

    #[test]
    fn captured_services() {
        let list: Vec<Service> = serde_json::from_slice(SERVICES).unwrap();
        assert_eq!(list.len(), 5);
        let web = by_name(&list, "cap-web");
        assert_eq!(web.id, "k6d8xjdkv3qi3vhdfysyo02jb");
        assert_eq!(web.spec.labels["SERVICE_80_NAME"], "www");
        let ports: Vec<(u64, u64, &str, bool)> = (web.endpoint.ports.iter())
            .map(|p| (p.target_port, p.published_port, p.proto(), p.ingress()))
            .collect();
        assert_eq!(ports, [(80, 18080, "tcp", true), (80, 18081, "tcp", false)]);
        let dns = by_name(&list, "cap-dns");
        let protos: Vec<&str> = dns.endpoint.ports.iter().map(PortConfig::proto).collect();
        assert_eq!(protos, ["tcp", "udp"]);
        // Scaled to 0, global, and no ports at all.
        assert!(by_name(&list, "cap-idle").scaled_to_zero());
        let global = by_name(&list, "cap-global");
        assert!(!global.scaled_to_zero() && global.spec.mode.replicated.is_none());
        assert!(by_name(&list, "cap-worker").endpoint.ports.is_empty());
        // One service, as `GET /services/{id}` answers.
        let one =
            serde_json::to_vec(&serde_json::from_slice::<serde_json::Value>(SERVICES).unwrap()[2])
                .unwrap();
        let s: Service = serde_json::from_slice(&one).unwrap();
        assert_eq!(s.spec.name, "cap-web");
    }

    #[test]
    fn captured_info_and_node() {
        let info: Info = serde_json::from_slice(INFO).unwrap();
        assert_eq!(info.swarm.role(), Some(Role::Manager));
        assert_eq!(info.swarm.node_addr, "127.0.0.1");
        assert_eq!(info.swarm.node_id.len(), 25);
        let none: Info = serde_json::from_slice(INFO_NO_SWARM).unwrap();
        assert_eq!(none.swarm.local_node_state, "inactive");
        assert_eq!(none.swarm.role(), Some(Role::Outside));
        let node: Node = serde_json::from_slice(NODE).unwrap();
        assert_eq!(node.status.addr, "127.0.0.1");
    }

    #[test]
    fn roles() {
        let info = |state: &str, control| SwarmInfo {
            local_node_state: state.into(),
            control_available: control,
            ..SwarmInfo::default()
        };
        assert_eq!(info("active", true).role(), Some(Role::Manager));
        assert_eq!(info("active", false).role(), Some(Role::Worker));
        for state in ["", "inactive"] {
            assert_eq!(info(state, false).role(), Some(Role::Outside), "{state}");
        }
        for state in ["pending", "error", "locked", "Active", "x"] {
            assert_eq!(info(state, true).role(), None, "{state}");
        }
    }

    #[test]
    fn nulls_read_as_empty_and_wrong_types_are_errors() {
        let s: Service = serde_json::from_str(
            r#"{"ID":null,"Spec":{"Name":null,"Labels":null,"Mode":null},"Endpoint":{"Ports":[{"Protocol":null,"TargetPort":null,"PublishedPort":null,"PublishMode":null}]}}"#,
        )
        .unwrap();
        let p = &s.endpoint.ports[0];
        assert_eq!((p.proto(), p.ingress(), p.target_port), ("tcp", true, 0));
        let list: Vec<Service> =
            serde_json::from_str("[{},{\"Spec\":null,\"Endpoint\":null}]").unwrap();
        assert_eq!(list.len(), 2);
        let info: Info = serde_json::from_str(r#"{"Swarm":null}"#).unwrap();
        assert_eq!(info.swarm.role(), Some(Role::Outside));
        for bad in [
            r#"{"Endpoint":{"Ports":[{"TargetPort":-1}]}}"#,
            r#"{"Endpoint":{"Ports":[{"TargetPort":"80"}]}}"#,
            r#"{"Spec":{"Labels":{"a":1}}}"#,
            r#"{"Spec":{"Mode":{"Replicated":{"Replicas":-2}}}}"#,
            r#"{"Endpoint":{"Ports":{}}}"#,
        ] {
            assert!(serde_json::from_str::<Service>(bad).is_err(), "{bad}");
        }
    }
}
