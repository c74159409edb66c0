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
    /// In no swarm (or one it cannot take part in now: pending, error, locked).
    Outside,
}

impl SwarmInfo {
    pub fn role(&self) -> Role {
        match (self.local_node_state.as_str(), self.control_available) {
            ("active", true) => Role::Manager,
            ("active", false) => Role::Worker,
            _ => Role::Outside,
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
