//! `--scale`: how cost grows with the number of containers on the host (by hand, not in CI;
//! 1,000 containers take some 10 GB of the engine's memory and about half an hour).
//!
//! For each size N (`--sizes`, default 100,250,500,1000), with N busybox containers running
//! (the private engine runs every one under `--init`), it measures:
//! - the start-up sync of the N (median of [`ROUNDS`]) and its cost per container, and the
//!   same for the floor client's sync (list, then inspect and register each, serially);
//! - the daemon's VmHWM after that sync and after the bursts below;
//! - with the N running: a burst of [`BURST`] starts and then of their kills, 20 at a time,
//!   with the time to converge and the missing and stale 2 s after the last command;
//! - with the N running: start -> visible and die -> gone medians over [`LATENCY`] containers
//!   one at a time, for the daemon and for the floor client (whose paths are the engine's and
//!   Consul's alone: what grows in both is theirs, what grows only in ours is ours);
//! - the engine's own time to list the running containers and to inspect one (medians of
//!   [`ENGINE_SAMPLES`]): the part of a sync that is the engine's.
//!
//! Sizes grow in one run: the containers of one size stay for the next.

use super::*;

const ROUNDS: usize = 3;
const BURST: usize = 100;
const LATENCY: usize = 20;
const ENGINE_SAMPLES: usize = 20;
/// A Linux bridge takes at most 1,024 ports: containers from this one on go to a second
/// network of the private engine ([`SECOND`]), so that the bursts and latency runs still fit
/// on the default one beside 1,000.
const ON_BRIDGE: usize = 700;
const SECOND: &str = "bench-scale2";

/// `docker run -d --name NAME --network NETWORK -p 127.0.0.1::80 bb`, over the API.
fn create_start_on(c: &mut Conn, name: &str, network: &str) -> Res<()> {
    let body = format!(
        r#"{{"Image":"bb","ExposedPorts":{{"80/tcp":{{}}}},"HostConfig":{{"NetworkMode":"{network}","PortBindings":{{"80/tcp":[{{"HostIp":"127.0.0.1","HostPort":""}}]}}}}}}"#
    );
    let path = format!("/containers/create?name={name}");
    expect(c, "POST", &path, Some(body.as_bytes()), &[201])?;
    expect(
        c,
        "POST",
        &format!("/containers/{name}/start"),
        None,
        &[204],
    )
}

/// The second network: a bridge of its own on a private subnet.
fn second_network(env: &Env, create: bool) -> Res<()> {
    let mut c = Conn::unix(&env.sock).map_err(|e| format!("engine: {e}"))?;
    // Left over from an interrupted run, or done with.
    call(
        &mut c,
        "engine",
        "DELETE",
        &format!("/networks/{SECOND}"),
        None,
        &[204, 404],
    )?;
    if create {
        let body = format!(
            r#"{{"Name":"{SECOND}","Driver":"bridge","IPAM":{{"Config":[{{"Subnet":"10.213.96.0/20"}}]}},"Options":{{"com.docker.network.bridge.name":"rgtrscale2"}}}}"#
        );
        call(
            &mut c,
            "engine",
            "POST",
            "/networks/create",
            Some(body.as_bytes()),
            &[201],
        )?;
    }
    Ok(())
}

#[derive(Serialize, Default)]
struct Size {
    containers: usize,
    sync_s: f64,
    sync_rounds: Vec<Round>,
    sync_repeated: Vec<Round>,
    /// The sync's cost per container (ms).
    sync_per_container_ms: f64,
    /// The floor client's sync of the same N (median of [`ROUNDS`]): list, then inspect and
    /// register each, serially, over connections it opened before. What grows in it is the
    /// engine's and Consul's.
    floor_sync_s: f64,
    floor_sync_rounds: Vec<Round>,
    floor_sync_repeated: Vec<Round>,
    floor_sync_per_container_ms: f64,
    /// VmHWM after the sync and after the bursts (KiB).
    hwm_synced_kib: u64,
    hwm_after_burst_kib: u64,
    burst_start: Phase,
    burst_kill: Phase,
    ours: Latency,
    floor: Latency,
    /// The engine's median time to list the running containers / to inspect one (ms).
    engine_list_ms: f64,
    engine_inspect_ms: f64,
}

#[derive(Serialize)]
struct ScaleReport {
    mode: &'static str,
    command: String,
    sizes: Vec<Size>,
    targets: Vec<Target>,
}

pub fn run(
    env: &Env,
    command: &[String],
    sizes: &[usize],
    events: &Events,
    consul: &mut Consul,
    driver: &Driver,
) -> Res<()> {
    let plan = Plan {
        latency: LATENCY,
        burst: BURST,
        group: 20,
        sync: 0,
        rounds: ROUNDS,
        idle: Duration::ZERO,
    };
    second_network(env, true)?;
    let mut out = Vec::new();
    let mut running = 0;
    for &n in sizes {
        eprintln!("bench: scale: {n} containers running");
        let names: Vec<String> = (running..n).map(|i| format!("bench-scale-{i}")).collect();
        let (first, second): (Vec<String>, Vec<String>) = names
            .into_iter()
            .partition(|x| x.trim_start_matches("bench-scale-").parse().unwrap_or(0) < ON_BRIDGE);
        start_all(env, &first, plan.group)?;
        in_groups(env, &second, plan.group, |c, x| {
            create_start_on(c, x, SECOND)
        })?;
        running = running.max(n);
        let all: Vec<String> = (0..n).map(|i| format!("bench-scale-{i}")).collect();
        let want: BTreeSet<String> = all.iter().map(|x| service_id(env, x)).collect();
        let (engine_list_ms, engine_inspect_ms) = engine_times(env, &all)?;

        let mut size = Size {
            containers: n,
            engine_list_ms,
            engine_inspect_ms,
            ..Size::default()
        };
        let (rounds, mut d) = daemon_syncs(
            env,
            command,
            &format!("scale-{n}"),
            ROUNDS,
            &want,
            consul,
            &mut size.sync_repeated,
        )?;
        size.sync_rounds = rounds;
        size.sync_s = median_s(&size.sync_rounds);
        size.sync_per_container_ms = round3(1000.0 * size.sync_s / n as f64);
        settle(&mut d)?;
        size.hwm_synced_kib = d.mem()?.hwm_kib;

        eprintln!("bench: scale {n}: burst of {BURST}");
        let (start, kill) = burst_beside(env, &plan, n, &want, consul)?;
        size.burst_start = start;
        size.burst_kill = kill;
        eprintln!("bench: scale {n}: latency, {LATENCY} containers");
        size.ours = latency(
            env,
            &plan,
            &format!("scale{n}"),
            events,
            consul,
            driver,
            Some(&mut d),
        )?;
        settle(&mut d)?;
        size.hwm_after_burst_kib = d.mem()?.hwm_kib;
        d.stop()?;
        // The floor's paths with the same containers running and their services registered
        // (the daemon stopped leaves them; the floor only adds and removes its own).
        events.floor.store(true, Ordering::SeqCst);
        let floor = latency(
            env,
            &plan,
            &format!("floor-scale{n}"),
            events,
            consul,
            driver,
            None,
        );
        events.floor.store(false, Ordering::SeqCst);
        size.floor = floor?;
        eprintln!("bench: scale {n}: the floor's sync");
        size.floor_sync_rounds =
            floor_syncs(env, ROUNDS, &want, consul, &mut size.floor_sync_repeated)?;
        size.floor_sync_s = median_s(&size.floor_sync_rounds);
        size.floor_sync_per_container_ms = round3(1000.0 * size.floor_sync_s / n as f64);
        // Kept in the log as it comes: a later size may fail.
        eprintln!(
            "bench: scale {n}: {}",
            serde_json::to_string(&size).map_err(|e| e.to_string())?
        );
        out.push(size);
    }
    cleanup(env, consul)?;
    second_network(env, false)?;
    let report = judge(ScaleReport {
        mode: "scale",
        command: command.join(" "),
        sizes: out,
        targets: Vec::new(),
    });
    print(&report);
    println!(
        "{}",
        serde_json::to_string(&report).map_err(|e| e.to_string())?
    );
    Ok(())
}

/// [`burst`] with `base` registered and staying: 100 started 20 at a time, then killed. Each
/// phase is followed one service at a time (as [`wait_set`] does: a listing of a thousand
/// services every 2 ms would load Consul more than the daemon measured), then checked whole.
fn burst_beside(
    env: &Env,
    plan: &Plan,
    n: usize,
    base: &BTreeSet<String>,
    consul: &mut Consul,
) -> Res<(Phase, Phase)> {
    let names: Vec<String> = (0..plan.burst)
        .map(|i| format!("bench-scale{n}-burst-{i}"))
        .collect();
    let ids: Vec<String> = names.iter().map(|x| service_id(env, x)).collect();
    let mut with: BTreeSet<String> = base.clone();
    with.extend(ids.iter().cloned());
    start_all(env, &names, plan.group)?;
    let start = follow(consul, &ids, true, &with, Instant::now())?;
    in_groups(env, &names, plan.group, |c, x| {
        expect(c, "POST", &format!("/containers/{x}/kill"), None, &[204])
    })?;
    let kill = follow(consul, &ids, false, base, Instant::now())?;
    in_groups(env, &names, plan.group, |c, x| {
        expect(
            c,
            "DELETE",
            &format!("/containers/{x}?force=true"),
            None,
            &[204, 404],
        )
    })?;
    Ok((start, kill))
}

/// Waits until each of `ids` is `present` (or not) in Consul, then until Consul holds exactly
/// `want`; the missing and stale are counted 2 s after `last`.
fn follow(
    consul: &mut Consul,
    ids: &[String],
    present: bool,
    want: &BTreeSet<String>,
    last: Instant,
) -> Res<Phase> {
    let mut p = Phase::default();
    for id in ids {
        while consul.has(id)? != present && last.elapsed() < WAIT {
            thread::sleep(SET_POLL);
        }
    }
    loop {
        let held = consul.ids()?;
        if &held == want {
            p.converged_s = Some(round3(last.elapsed().as_secs_f64()));
            break;
        }
        if last.elapsed() > WAIT {
            break;
        }
        thread::sleep(Duration::from_millis(50));
    }
    if let Some(wait) = BURST_WINDOW.checked_sub(last.elapsed()) {
        thread::sleep(wait);
    }
    let held = consul.ids()?;
    p.missing = want.difference(&held).count();
    p.stale = held.difference(want).count();
    Ok(p)
}

/// The engine's median time to list the running containers and to inspect one of `names`.
fn engine_times(env: &Env, names: &[String]) -> Res<(f64, f64)> {
    let mut c = Conn::unix(&env.sock).map_err(|e| format!("engine: {e}"))?;
    let mut list = Vec::new();
    let mut inspect = Vec::new();
    for i in 0..ENGINE_SAMPLES {
        let t = Instant::now();
        call(&mut c, "engine", "GET", "/containers/json", None, &[200])?;
        list.push(t.elapsed().as_secs_f64() * 1000.0);
        let name = &names[i * names.len() / ENGINE_SAMPLES];
        let t = Instant::now();
        let path = format!("/containers/{name}/json");
        call(&mut c, "engine", "GET", &path, None, &[200])?;
        inspect.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    Ok((round3(stats(list).median), round3(stats(inspect).median)))
}

fn judge(mut r: ScaleReport) -> ScaleReport {
    let mut t = Vec::new();
    let mut check = |name: String, value: f64, limit: f64| {
        t.push(Target {
            name,
            value: round3(value),
            limit: round3(limit),
            ok: value <= limit,
        })
    };
    if let (Some(first), Some(last)) = (r.sizes.first(), r.sizes.last()) {
        let (a, b) = (first.containers, last.containers);
        check(
            format!("sync per container at {b} / at {a}"),
            last.sync_per_container_ms / first.sync_per_container_ms,
            1.3,
        );
        check(
            format!("VmHWM with {b} registered (KiB)"),
            last.hwm_synced_kib.max(last.hwm_after_burst_kib) as f64,
            4096.0,
        );
        check(
            format!("start->visible median at {b} / at {a}"),
            last.ours.start_to_visible_ms.median / first.ours.start_to_visible_ms.median,
            1.5,
        );
        check(
            format!("die->gone median at {b} / at {a}"),
            last.ours.die_to_gone_ms.median / first.ours.die_to_gone_ms.median,
            1.5,
        );
    }
    for s in &r.sizes {
        let wrong =
            s.burst_start.missing + s.burst_start.stale + s.burst_kill.missing + s.burst_kill.stale;
        check(
            format!("bursts with {} running: missing + stale", s.containers),
            wrong as f64,
            0.0,
        );
    }
    r.targets = t;
    r
}

/// A row's cell for one size.
type Row = fn(&Size) -> String;

fn lost(p: Phase) -> String {
    format!("{} / {}", p.missing, p.stale)
}

fn print(r: &ScaleReport) {
    println!("mode scale: {}", r.command);
    let rows: [(&str, Row); 18] = [
        ("start-up sync (s)", |s| num(s.sync_s)),
        ("  per container (ms)", |s| num(s.sync_per_container_ms)),
        ("  floor (s)", |s| num(s.floor_sync_s)),
        ("  floor per container (ms)", |s| {
            num(s.floor_sync_per_container_ms)
        }),
        ("  engine: list running (ms)", |s| num(s.engine_list_ms)),
        ("  engine: inspect one (ms)", |s| num(s.engine_inspect_ms)),
        ("VmHWM synced (KiB)", |s| num(s.hwm_synced_kib as f64)),
        ("VmHWM after bursts (KiB)", |s| {
            num(s.hwm_after_burst_kib as f64)
        }),
        ("burst of 100 starts: converged (s)", |s| {
            num(converged(s.burst_start))
        }),
        ("  missing / stale", |s| lost(s.burst_start)),
        ("burst of 100 kills: converged (s)", |s| {
            num(converged(s.burst_kill))
        }),
        ("  missing / stale", |s| lost(s.burst_kill)),
        ("start->visible median (ms)", |s| {
            num(s.ours.start_to_visible_ms.median)
        }),
        ("  floor (ms)", |s| num(s.floor.start_to_visible_ms.median)),
        ("die->gone median (ms)", |s| {
            num(s.ours.die_to_gone_ms.median)
        }),
        ("  floor (ms)", |s| num(s.floor.die_to_gone_ms.median)),
        ("start->visible p90 (ms)", |s| {
            num(s.ours.start_to_visible_ms.p90)
        }),
        ("die->gone p90 (ms)", |s| num(s.ours.die_to_gone_ms.p90)),
    ];
    let mut head = format!("{:<38}", "containers running");
    for s in &r.sizes {
        head += &format!(" {:>10}", s.containers);
    }
    println!("{head}");
    for (name, get) in rows {
        let mut line = format!("{name:<38}");
        for s in &r.sizes {
            line += &format!(" {:>10}", get(s));
        }
        println!("{line}");
    }
    println!();
    println!("targets:");
    for t in &r.targets {
        println!(
            "  {:<44} {:>12} <= {:<12} {}",
            t.name,
            num(t.value),
            num(t.limit),
            if t.ok { "ok" } else { "MISSED" }
        );
    }
}
