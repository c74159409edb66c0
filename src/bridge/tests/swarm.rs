//! `-swarm` in the worker: what a manager registers for swarm services, what service and node
//! events change, and what workers and nodes outside a swarm do (nothing).

use super::*;
use crate::docker::swarm::Service as SwarmService;

/// A swarm as the engine reports it: this node's part, its address, the services; the calls
/// made to it.
#[derive(Default)]
struct Swarm {
    info: SwarmInfo,
    node_addr: String,
    services: BTreeMap<String, SwarmService>,
    /// `/services` fails (an engine restarting).
    broken: bool,
    calls: Vec<String>,
}

#[derive(Default, Clone)]
struct SwarmEngine(Arc<Mutex<Swarm>>);

impl Engine for SwarmEngine {
    fn running(&mut self) -> Result<Vec<String>, docker::Error> {
        Ok(Vec::new())
    }
    fn inspect(&mut self, _: &str) -> Result<Option<Container>, docker::Error> {
        Ok(None)
    }
    fn swarm_info(&mut self) -> Result<SwarmInfo, docker::Error> {
        let mut g = self.0.lock().unwrap();
        g.calls.push("info".into());
        Ok(g.info.clone())
    }
    fn node_addr(&mut self, id: &str) -> Result<Option<String>, docker::Error> {
        let mut g = self.0.lock().unwrap();
        g.calls.push(format!("node {id}"));
        Ok(Some(g.node_addr.clone()))
    }
    fn services(&mut self) -> Result<Vec<SwarmService>, docker::Error> {
        let mut g = self.0.lock().unwrap();
        g.calls.push("services".into());
        if g.broken {
            return Err(docker::Error::Status(500, "restarting".into()));
        }
        Ok(g.services.values().cloned().collect())
    }
    fn service(&mut self, id: &str) -> Result<Option<SwarmService>, docker::Error> {
        let mut g = self.0.lock().unwrap();
        g.calls.push(format!("service {id}"));
        Ok(g.services.get(id).cloned())
    }
}

struct SwarmWorld {
    swarm: SwarmEngine,
    reg: Recorder,
    bridge: Bridge,
}

fn manager() -> SwarmInfo {
    SwarmInfo {
        local_node_state: "active".into(),
        control_available: true,
        node_id: "node1".into(),
        node_addr: "192.0.2.1".into(),
    }
}

fn worker() -> SwarmInfo {
    SwarmInfo {
        control_available: false,
        ..manager()
    }
}

/// A swarm service as `/services` lists it: `ports` are (target, published, protocol, mode).
fn service(
    id: &str,
    name: &str,
    labels: &[(&str, &str)],
    ports: &[(u16, u16, &str, &str)],
    replicas: u64,
) -> SwarmService {
    let labels: BTreeMap<&str, &str> = labels.iter().copied().collect();
    let ports: Vec<serde_json::Value> = (ports.iter())
        .map(|(t, p, proto, mode)| {
            serde_json::json!({"Protocol": proto, "TargetPort": t, "PublishedPort": p, "PublishMode": mode})
        })
        .collect();
    serde_json::from_value(serde_json::json!({
        "ID": id,
        "Spec": {"Name": name, "Labels": labels, "Mode": {"Replicated": {"Replicas": replicas}}},
        "Endpoint": {"Ports": ports}
    }))
    .unwrap()
}

impl SwarmWorld {
    fn new(info: SwarmInfo, opts: Options, settings: Settings) -> SwarmWorld {
        let swarm = SwarmEngine::default();
        {
            let mut g = swarm.0.lock().unwrap();
            g.info = info;
            g.node_addr = "10.0.0.5".into();
        }
        let reg = Recorder::default();
        let opts = Options {
            swarm: true,
            ..opts
        };
        let settings = Settings {
            hostname: "h".into(),
            swarm: true,
            ..settings
        };
        let bridge = Bridge::new(
            Box::new(swarm.clone()),
            Box::new(reg.clone()),
            settings,
            opts,
        );
        SwarmWorld { swarm, reg, bridge }
    }

    fn manager() -> SwarmWorld {
        SwarmWorld::new(manager(), Options::default(), Settings::default())
    }

    fn put(&self, s: SwarmService) {
        self.swarm
            .0
            .lock()
            .unwrap()
            .services
            .insert(s.id.clone(), s);
    }

    fn drop_service(&self, id: &str) {
        self.swarm.0.lock().unwrap().services.remove(id);
    }

    fn event(&mut self, kind: Kind, id: &str) {
        let ev = Event {
            kind,
            action: Action::Other("update".into()),
            id: id.into(),
            time_nano: 1,
            exit_code: None,
        };
        assert!(self.bridge.handle(Msg::Event(ev, Arrival::Live)));
    }

    fn sync(&mut self) {
        assert!(self.bridge.handle(Msg::Sync));
    }

    /// What the registry holds: service ID -> address, name and tags.
    fn held(&self) -> Vec<String> {
        let g = self.reg.0.lock().unwrap();
        g.held.keys().cloned().collect()
    }

    fn registry_calls(&self) -> Vec<String> {
        std::mem::take(&mut self.reg.0.lock().unwrap().calls)
    }

    fn engine_calls(&self) -> Vec<String> {
        std::mem::take(&mut self.swarm.0.lock().unwrap().calls)
    }

    /// The services wanted for swarm service `id`.
    fn wanted(&self, id: &str) -> Vec<Service> {
        (self.bridge.registered.get(&super::super::swarm::key(id)))
            .cloned()
            .unwrap_or_default()
    }
}

#[test]
fn a_manager_registers_ingress_ports_at_its_address() {
    let mut w = SwarmWorld::manager();
    w.put(service(
        "s1",
        "web",
        &[
            ("SERVICE_80_NAME", "www"),
            ("SERVICE_TAGS", "a,b"),
            ("SERVICE_CHECK_HTTP", "/"),
        ],
        &[(80, 18080, "tcp", "ingress"), (81, 18081, "tcp", "host")],
        2,
    ));
    w.put(service(
        "s2",
        "dns",
        &[],
        &[(53, 15353, "udp", "ingress"), (53, 15353, "tcp", "")],
        1,
    ));
    w.put(service("s3", "quiet", &[], &[], 1));
    w.sync();
    assert_eq!(w.held(), ["h:dns:15353", "h:dns:15353:udp", "h:web:18080"]);
    let web = w.wanted("s1");
    assert_eq!(
        web.len(),
        1,
        "the host-mode port is left to the task containers"
    );
    let s = &web[0];
    assert_eq!(
        (s.name.as_str(), s.ip.as_str(), s.port, s.exposed_port),
        ("www", "10.0.0.5", 18080, 80)
    );
    assert_eq!(s.tags, ["a", "b"]);
    assert_eq!(s.attrs.get("check_http").map(String::as_str), Some("/"));
    assert_eq!(s.container_id, "swarm:s1");
    let mut dns: Vec<(String, Vec<String>)> = w
        .wanted("s2")
        .into_iter()
        .map(|s| (s.name, s.tags))
        .collect();
    dns.sort();
    assert_eq!(
        dns,
        [
            ("dns-53".to_string(), vec![]),
            ("dns-53".to_string(), vec!["udp".to_string()])
        ],
        "two ports: the name gets the target port, as a container's"
    );
    assert_eq!(w.engine_calls(), ["info", "node node1", "services"]);
}

#[test]
fn an_update_re_registers_what_changed_and_scaling_changes_nothing() {
    let mut w = SwarmWorld::manager();
    w.put(service(
        "s1",
        "web",
        &[],
        &[(80, 18080, "tcp", "ingress")],
        3,
    ));
    w.event(Kind::Service, "s1");
    assert_eq!(w.held(), ["h:web:18080"]);
    w.registry_calls();
    // Scaled to 1: the same registration, no call.
    w.put(service(
        "s1",
        "web",
        &[],
        &[(80, 18080, "tcp", "ingress")],
        1,
    ));
    w.event(Kind::Service, "s1");
    assert!(w.registry_calls().is_empty());
    // Labels: registered again with them.
    w.put(service(
        "s1",
        "web",
        &[("SERVICE_TAGS", "v2")],
        &[(80, 18080, "tcp", "ingress")],
        1,
    ));
    w.event(Kind::Service, "s1");
    assert_eq!(w.registry_calls(), ["register h:web:18080"]);
    assert_eq!(w.wanted("s1")[0].tags, ["v2"]);
    // Ports: the new one registered, the old one removed.
    w.put(service(
        "s1",
        "web",
        &[],
        &[(80, 18090, "tcp", "ingress")],
        1,
    ));
    w.event(Kind::Service, "s1");
    assert_eq!(w.held(), ["h:web:18090"]);
    // Scaled to 0: no task can answer.
    w.put(service(
        "s1",
        "web",
        &[],
        &[(80, 18090, "tcp", "ingress")],
        0,
    ));
    w.event(Kind::Service, "s1");
    assert!(w.held().is_empty());
    w.put(service(
        "s1",
        "web",
        &[],
        &[(80, 18090, "tcp", "ingress")],
        1,
    ));
    w.event(Kind::Service, "s1");
    // Removed: looked up, gone, deregistered.
    w.drop_service("s1");
    w.event(Kind::Service, "s1");
    assert!(w.held().is_empty());
    assert!(!w.bridge.registered.keys().any(|k| k.starts_with("swarm:")));
}

#[test]
fn a_sync_removes_services_gone_meanwhile_and_keeps_all_when_the_list_fails() {
    let mut w = SwarmWorld::manager();
    w.put(service(
        "s1",
        "web",
        &[],
        &[(80, 18080, "tcp", "ingress")],
        1,
    ));
    w.put(service(
        "s2",
        "api",
        &[],
        &[(80, 18081, "tcp", "ingress")],
        1,
    ));
    w.sync();
    assert_eq!(w.held().len(), 2);
    w.drop_service("s2");
    w.swarm.0.lock().unwrap().broken = true;
    w.sync();
    assert_eq!(w.held().len(), 2, "a failed list changes nothing");
    w.swarm.0.lock().unwrap().broken = false;
    w.sync();
    assert_eq!(w.held(), ["h:web:18080"]);
}

#[test]
fn cleanup_removes_this_hosts_entries_of_services_gone() {
    let opts = Options {
        cleanup: true,
        ..Options::default()
    };
    let mut w = SwarmWorld::new(manager(), opts, Settings::default());
    for id in ["h:web:18080", "h:gone:18081", "other:gone:18081"] {
        w.reg
            .0
            .lock()
            .unwrap()
            .held
            .insert(id.into(), String::new());
    }
    w.put(service(
        "s1",
        "web",
        &[],
        &[(80, 18080, "tcp", "ingress")],
        1,
    ));
    w.swarm.0.lock().unwrap().broken = true;
    w.sync();
    assert_eq!(
        w.held().len(),
        3,
        "no cleanup while the services cannot be listed"
    );
    w.swarm.0.lock().unwrap().broken = false;
    w.sync();
    assert_eq!(w.held(), ["h:web:18080", "other:gone:18081"]);
}

#[test]
fn workers_and_nodes_outside_a_swarm_register_no_service() {
    for info in [
        worker(),
        SwarmInfo::default(),
        SwarmInfo {
            local_node_state: "inactive".into(),
            ..SwarmInfo::default()
        },
    ] {
        let mut w = SwarmWorld::new(info.clone(), Options::default(), Settings::default());
        w.put(service(
            "s1",
            "web",
            &[],
            &[(80, 18080, "tcp", "ingress")],
            1,
        ));
        w.sync();
        w.event(Kind::Service, "s1");
        w.sync();
        assert!(w.held().is_empty(), "{info:?}");
        assert_eq!(
            w.engine_calls(),
            ["info", "info"],
            "{info:?}: only /info is asked"
        );
    }
}

#[test]
fn internal_leaves_swarm_services_to_their_task_containers() {
    let settings = Settings {
        internal: true,
        ..Settings::default()
    };
    let mut w = SwarmWorld::new(manager(), Options::default(), settings);
    w.put(service(
        "s1",
        "web",
        &[],
        &[(80, 18080, "tcp", "ingress")],
        1,
    ));
    w.sync();
    w.event(Kind::Service, "s1");
    assert!(w.held().is_empty());
}

#[test]
fn promotion_and_demotion_follow_node_events_about_this_node() {
    let mut w = SwarmWorld::new(worker(), Options::default(), Settings::default());
    w.put(service(
        "s1",
        "web",
        &[],
        &[(80, 18080, "tcp", "ingress")],
        1,
    ));
    w.sync();
    assert!(w.held().is_empty());
    w.swarm.0.lock().unwrap().info = manager();
    w.event(Kind::Node, "node2");
    assert!(w.held().is_empty(), "another node's event: not looked at");
    w.event(Kind::Node, "node1");
    assert_eq!(w.held(), ["h:web:18080"], "promoted");
    w.swarm.0.lock().unwrap().info = worker();
    w.event(Kind::Node, "node1");
    assert!(w.held().is_empty(), "demoted");
}

#[test]
fn the_address_is_ip_else_the_nodes_else_the_advertised_one() {
    let settings = Settings {
        ip: Some("198.51.100.7".into()),
        ..Settings::default()
    };
    let mut w = SwarmWorld::new(manager(), Options::default(), settings);
    w.put(service(
        "s1",
        "web",
        &[],
        &[(80, 18080, "tcp", "ingress")],
        1,
    ));
    w.sync();
    assert_eq!(w.wanted("s1")[0].ip, "198.51.100.7");
    assert_eq!(
        w.engine_calls(),
        ["info", "services"],
        "-ip: no node lookup"
    );

    let mut w = SwarmWorld::manager();
    w.swarm.0.lock().unwrap().node_addr = "0.0.0.0".into();
    w.put(service(
        "s1",
        "web",
        &[],
        &[(80, 18080, "tcp", "ingress")],
        1,
    ));
    w.sync();
    assert_eq!(w.wanted("s1")[0].ip, "192.0.2.1", "/info's NodeAddr");
}

#[test]
fn without_the_flag_service_events_change_nothing() {
    let mut w = SwarmWorld::manager();
    w.bridge.swarm = None;
    w.put(service(
        "s1",
        "web",
        &[],
        &[(80, 18080, "tcp", "ingress")],
        1,
    ));
    w.sync();
    w.event(Kind::Service, "s1");
    w.event(Kind::Node, "node1");
    assert!(w.held().is_empty());
    assert!(w.engine_calls().is_empty());
}
