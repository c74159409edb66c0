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

/// The service most tests use: `web`, ingress port 80 published on 18080, 1 replica.
fn web() -> SwarmService {
    service("s1", "web", &[], &[(80, 18080, "tcp", "ingress")], 1)
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

    /// The registry keys held (service IDs; `name/ID` with `by_name`).
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
    w.put(web());
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
    assert_eq!(w.held(), ["h:web:18090"], "scaled up again");
    // Removed: looked up, gone, deregistered.
    w.drop_service("s1");
    w.event(Kind::Service, "s1");
    assert!(w.held().is_empty());
    assert!(!w.bridge.registered.keys().any(|k| k.starts_with("swarm:")));
}

#[test]
fn a_sync_removes_services_gone_meanwhile_and_keeps_all_when_the_list_fails() {
    let mut w = SwarmWorld::manager();
    w.put(web());
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
    w.put(web());
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
        w.put(web());
        w.sync();
        w.event(Kind::Service, "s1");
        w.sync();
        assert!(w.held().is_empty(), "{info:?}");
        // A service event makes a node not known as a manager look again.
        assert_eq!(
            w.engine_calls(),
            ["info", "info", "info"],
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
    w.put(web());
    w.sync();
    w.event(Kind::Service, "s1");
    assert!(w.held().is_empty());
}

#[test]
fn promotion_and_demotion_follow_node_events_about_this_node() {
    let mut w = SwarmWorld::new(worker(), Options::default(), Settings::default());
    w.put(web());
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
    w.put(web());
    w.sync();
    assert_eq!(w.wanted("s1")[0].ip, "198.51.100.7");
    assert_eq!(
        w.engine_calls(),
        ["info", "services"],
        "-ip: no node lookup"
    );

    let mut w = SwarmWorld::manager();
    w.swarm.0.lock().unwrap().node_addr = "0.0.0.0".into();
    w.put(web());
    w.sync();
    assert_eq!(w.wanted("s1")[0].ip, "192.0.2.1", "/info's NodeAddr");
}

#[test]
fn without_the_flag_service_events_change_nothing() {
    let swarm = SwarmEngine::default();
    swarm.0.lock().unwrap().info = manager();
    let reg = Recorder::default();
    let settings = Settings {
        hostname: "h".into(),
        ..Settings::default()
    };
    let bridge = Bridge::new(
        Box::new(swarm.clone()),
        Box::new(reg.clone()),
        settings,
        Options::default(),
    );
    let mut w = SwarmWorld { swarm, reg, bridge };
    w.put(web());
    w.sync();
    w.event(Kind::Service, "s1");
    w.event(Kind::Node, "node1");
    assert!(w.held().is_empty());
    assert!(w.engine_calls().is_empty());
}

#[test]
fn a_rename_that_keeps_the_id_removes_the_old_key() {
    // Key-value registries key an entry by name and ID.
    let mut w = SwarmWorld::manager();
    w.reg.0.lock().unwrap().by_name = true;
    w.put(web());
    w.sync();
    assert_eq!(w.held(), ["web/h:web:18080"]);
    w.put(service(
        "s1",
        "web",
        &[("SERVICE_NAME", "www")],
        &[(80, 18080, "tcp", "ingress")],
        1,
    ));
    w.event(Kind::Service, "s1");
    assert_eq!(w.held(), ["www/h:web:18080"]);
    // A second port renames the first entry web-80 under the same ID.
    let two = [(80, 18080, "tcp", "ingress"), (81, 18081, "tcp", "ingress")];
    w.put(service("s1", "web", &[], &two, 1));
    w.event(Kind::Service, "s1");
    assert_eq!(w.held(), ["web-80/h:web:18080", "web-81/h:web:18081"]);
}

#[test]
fn shutdown_and_resync_treat_swarm_entries_as_containers() {
    let opts = Options {
        deregister_on_shutdown: true,
        resync: Some(Duration::from_secs(30)),
        ..Options::default()
    };
    let mut w = SwarmWorld::new(manager(), opts, Settings::default());
    let clock = Hand(Arc::new(Mutex::new(Instant::now())));
    w.bridge.clock = Arc::new(clock.clone());
    w.put(web());
    w.sync();
    w.registry_calls();
    // The registry lost it: the resync registers it again.
    w.reg.0.lock().unwrap().held.clear();
    *clock.0.lock().unwrap() += Duration::from_secs(31);
    w.bridge.tick();
    assert_eq!(w.held(), ["h:web:18080"]);
    assert!(!w.bridge.handle(Msg::Shutdown));
    assert!(w.held().is_empty(), "-deregister-on-shutdown");
}

#[test]
fn a_node_that_cannot_take_part_now_keeps_its_entries_then_catches_up() {
    let opts = Options {
        cleanup: true,
        ..Options::default()
    };
    let mut w = SwarmWorld::new(manager(), opts, Settings::default());
    let clock = Hand(Arc::new(Mutex::new(Instant::now())));
    w.bridge.clock = Arc::new(clock.clone());
    w.put(web());
    w.put(service(
        "s2",
        "api",
        &[],
        &[(80, 18081, "tcp", "ingress")],
        1,
    ));
    w.sync();
    assert_eq!(w.held(), ["h:api:18081", "h:web:18080"]);
    // A leftover of this host for -cleanup, and a service removed while the node is pending.
    w.reg
        .0
        .lock()
        .unwrap()
        .held
        .insert("h:old:1".into(), String::new());
    w.drop_service("s2");
    let mut pauses = Vec::new();
    for state in ["pending", "locked", "error"] {
        w.swarm.0.lock().unwrap().info = SwarmInfo {
            local_node_state: state.into(),
            control_available: false,
            ..manager()
        };
        if state == "pending" {
            w.sync();
        } else {
            let due = w.bridge.next_due().expect("a look is due");
            *clock.0.lock().unwrap() = due;
            w.bridge.tick();
        }
        let due = w.bridge.next_due().expect("looked at again");
        pauses.push(due.duration_since(w.bridge.clock.now()).as_secs());
        assert_eq!(w.held().len(), 3, "{state}: kept, no cleanup");
    }
    assert_eq!(pauses, [2, 4, 8], "backoff");
    // Active again: the next look lists every service and runs the deferred cleanup.
    w.swarm.0.lock().unwrap().info = manager();
    let due = w.bridge.next_due().unwrap();
    *clock.0.lock().unwrap() = due;
    w.bridge.tick();
    assert_eq!(w.held(), ["h:web:18080"]);
    assert_eq!(w.bridge.next_due(), None, "settled: no timer left");
}

#[test]
fn a_demotion_seen_only_after_its_node_event_is_caught_by_the_second_look() {
    let mut w = SwarmWorld::manager();
    let clock = Hand(Arc::new(Mutex::new(Instant::now())));
    w.bridge.clock = Arc::new(clock.clone());
    w.put(web());
    w.sync();
    // The node event comes while /info still says manager, and the next two looks too.
    w.event(Kind::Node, "node1");
    let start = w.bridge.clock.now();
    let mut looks = Vec::new();
    while let Some(due) = w.bridge.next_due() {
        looks.push(due.duration_since(start).as_secs());
        if looks.len() == 3 {
            w.swarm.0.lock().unwrap().info = worker();
        }
        *clock.0.lock().unwrap() = due;
        w.bridge.tick();
        assert_eq!(
            w.held().is_empty(),
            looks.len() >= 3,
            "look {}",
            looks.len()
        );
    }
    assert_eq!(
        looks,
        [2, 6, 14, 30],
        "2, 4, 8 and 16 s apart, then no timer"
    );
}

#[test]
fn a_service_event_on_a_node_just_made_manager_registers_every_service() {
    let mut w = SwarmWorld::new(worker(), Options::default(), Settings::default());
    w.put(web());
    w.put(service(
        "s2",
        "api",
        &[],
        &[(80, 18081, "tcp", "ingress")],
        1,
    ));
    w.sync();
    assert!(w.held().is_empty());
    w.swarm.0.lock().unwrap().info = manager();
    w.event(Kind::Service, "s2");
    assert_eq!(w.held(), ["h:api:18081", "h:web:18080"]);
}

#[test]
fn a_hostile_container_event_cannot_touch_a_swarm_entry() {
    let mut w = SwarmWorld::manager();
    w.put(web());
    w.sync();
    let ev = Event {
        kind: Kind::Container,
        action: Action::Destroy,
        id: "swarm:s1".into(),
        time_nano: 1,
        exit_code: None,
    };
    assert!(w.bridge.handle(Msg::Event(ev, Arrival::Live)));
    assert_eq!(w.held(), ["h:web:18080"]);
}
