//! The benchmark behind `tests/bench.sh` (which builds the binaries and starts the private
//! engine and Consul first). Figures are printed, never asserted: a table and one JSON line.
//!
//! ```text
//! bench --bin PATH [--short] [--peer COMMAND] [--size LABEL=PATH]... [--strict]
//! bench --bin PATH --scale | --counts N,N,...
//! ```
//!
//! `--scale` (or `--counts` with the sizes) measures how cost grows with the containers
//! running instead: see `scale.rs`.
//!
//! What it measures, for our daemon (and for `--peer`, the same workload against another
//! registrator-compatible command, split on spaces, to which `-ip 127.0.0.1 consul://ADDR` is
//! appended; the process spawned is the one measured, so give the binary, not a wrapper):
//! 1. latency: from the engine's `start` event (`timeNano`) to the service in Consul's
//!    `/v1/agent/services`, polled every 0.2 ms from before the container is started; the
//!    same from `die` to gone. Containers one at a time.
//! 2. floor: the same paths taken by the smallest client there is, this program: on `start`
//!    its event reader inspects the container (for its host port) and registers it, on `die`
//!    it deregisters it (the event names it: no inspect), over connections it already holds
//!    open, with no daemon running. Its `die` -> gone is split in two: the engine's delivery of
//!    the event, and Consul's answer to the deregister.
//! 3. burst: containers started GROUP at a time, then killed GROUP at a time; after each phase,
//!    the time from the last command until Consul holds exactly the running set, and the
//!    missing and stale services 2 s after the last command.
//! 4. start-up sync: the daemon started with containers running; time to all registered,
//!    polled one service at a time (see [`wait_set`]), each round begun 0.5 s after the last
//!    round's services were removed. (The polls here and in 3. are 2 ms apart: [`SET_POLL`].)
//!    A round during which the hypervisor took more than [`MAX_STEAL_PCT`] of the machine's
//!    CPU is printed and done again; the CPU stolen is printed for every round and phase.
//! 5. memory: VmRSS and VmHWM idle after a sync of 0 containers, after the burst, and after
//!    the sync of the start-up phase.
//! 6. idle: CPU ticks (utime + stime) and wake-ups (voluntary context switches of all threads)
//!    over a quiet period with every container of the start-up phase registered.
//! 7. sizes of the binaries given with `--size`.
//! 8. the cost of a typical `-tags` template: time and heap allocations per rendering
//!    (`template.rs`), before anything else runs.
//!
//! The containers are driven through the engine API (create + start, kill, remove), not the
//! `docker` CLI, so no CLI process competes for the 2 cores while a path is measured.

mod http;
mod scale;
mod template;

#[global_allocator]
static ALLOC: template::Counting = template::Counting;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use http::Conn;

type Res<T> = Result<T, String>;

const EVENTS_PATH: &str = "/events?filters=%7B%22type%22%3A%5B%22container%22%5D%2C%22event%22%3A%5B%22start%22%2C%22die%22%5D%7D";
const WAIT: Duration = Duration::from_secs(30);
/// The window the burst target allows after the last command.
const BURST_WINDOW: Duration = Duration::from_secs(2);
const MIB2: u64 = 2048;
/// The pause between polls of a whole set (burst, start-up sync): 100 services make each
/// answer some 40 KB that Consul builds on the same 2 cores as the registrations measured.
const SET_POLL: Duration = Duration::from_millis(2);
/// The pause between latency polls (one service listed). Polling without any pause kept a
/// core busy (this program and Consul answering it), and on 2 cores that delayed whichever
/// thread the engine's event woke: the daemon's two (event reader, then worker) more than the
/// floor client's one.
const LATENCY_POLL: Duration = Duration::from_micros(200);
/// A start-up sync round during which the hypervisor took more than this share of the
/// machine's CPU time (`steal` in /proc/stat) is done again, up to [`MAX_REPEATS`] times per
/// subject: on this virtual machine such rounds took up to twice as long, for the floor as for
/// the daemon, and measure the host, not the program.
const MAX_STEAL_PCT: f64 = 10.0;
const MAX_REPEATS: usize = 10;
const SIZE_LIMIT: u64 = 800 * 1024;

fn main() {
    if let Err(e) = run() {
        eprintln!("bench: {e}");
        std::process::exit(1);
    }
}

struct Opts {
    bin: String,
    peer: Option<String>,
    short: bool,
    strict: bool,
    sizes: Vec<(String, String)>,
    /// `--scale`: the numbers of containers to measure at instead of the usual run.
    scale: Option<Vec<usize>>,
}

fn args() -> Res<Opts> {
    let mut o = Opts {
        bin: String::new(),
        peer: None,
        short: false,
        strict: false,
        sizes: Vec::new(),
        scale: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        let mut value = || it.next().ok_or(format!("{a} needs a value"));
        match a.as_str() {
            "--bin" => o.bin = value()?,
            "--peer" => o.peer = Some(value()?),
            "--short" => o.short = true,
            "--strict" => o.strict = true,
            "--scale" => o.scale = Some(vec![100, 250, 500, 1000]),
            "--counts" => {
                let v = value()?;
                let counts = v
                    .split(',')
                    .map(|x| x.trim().parse().map_err(|_| format!("--counts: {x:?}")))
                    .collect::<Res<Vec<usize>>>()?;
                o.scale = Some(counts);
            }
            "--size" => {
                let v = value()?;
                let (label, path) = v.split_once('=').ok_or("--size LABEL=PATH")?;
                o.sizes.push((label.into(), path.into()));
            }
            // `cargo bench` passes it to a harness-less bench.
            "--bench" => {}
            _ => return Err(format!("unknown argument {a}")),
        }
    }
    if o.bin.is_empty() {
        return Err("--bin PATH is required (tests/bench.sh passes it)".into());
    }
    Ok(o)
}

/// How much of the workload: `--short` for CI, the issue's figures otherwise.
struct Plan {
    latency: usize,
    burst: usize,
    group: usize,
    sync: usize,
    /// Start-up syncs measured (the daemon started again each time); the median counts.
    rounds: usize,
    idle: Duration,
}

struct Env {
    sock: String,
    consul: String,
    dir: String,
    hostname: String,
}

fn env() -> Res<Env> {
    let var = |k: &str| {
        std::env::var(k)
            .map_err(|_| format!("{k} is not set: run the benchmark with tests/bench.sh"))
    };
    let dir = var("RGTR_TEST_DIR")?;
    let sock = var("DOCKER_HOST")?
        .strip_prefix("unix://")
        .ok_or("DOCKER_HOST must be unix://")?
        .to_string();
    if !sock.starts_with(&dir) {
        return Err(format!(
            "DOCKER_HOST is not the private engine under {dir}; the benchmark removes containers"
        ));
    }
    let hostname = fs::read_to_string("/proc/sys/kernel/hostname")
        .map_err(|e| format!("hostname: {e}"))?
        .trim()
        .to_string();
    Ok(Env {
        sock,
        consul: var("CONSUL_HTTP_ADDR")?,
        dir,
        hostname,
    })
}

fn now_ns() -> i128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as i128)
        .unwrap_or(0)
}

fn run() -> Res<()> {
    let opts = args()?;
    let cost = template::measure()?;
    println!(
        "template {:?} -> {:?}: parsed once in {:.1} us; each rendering {:.0} ns, {:.2} allocations ({:.0} bytes; {:.2} with the output buffer reused)",
        cost.template,
        cost.rendered,
        cost.parse_us,
        cost.render_ns,
        cost.allocs_per_render,
        cost.bytes_per_render,
        cost.allocs_per_render_reused
    );
    let env = Arc::new(env()?);
    let plan = if opts.short {
        Plan {
            latency: 10,
            burst: 20,
            group: 5,
            sync: 20,
            rounds: 1,
            idle: Duration::from_secs(10),
        }
    } else {
        Plan {
            latency: 100,
            burst: 100,
            group: 20,
            sync: 100,
            rounds: 5,
            idle: Duration::from_secs(60),
        }
    };
    let events = Events::start(env.clone())?;
    let mut consul = Consul::open(&env.consul)?;
    let driver = Driver::start(&env.sock)?;
    cleanup(&env, &mut consul)?;

    let ours_cmd = vec![opts.bin.clone()];
    if let Some(counts) = &opts.scale {
        eprintln!("bench: scale: registrator {} at {counts:?}", opts.bin);
        return scale::run(&env, &ours_cmd, counts, &events, &mut consul, &driver);
    }
    eprintln!("bench: registrator {}", opts.bin);
    let ours = subject(
        &env,
        &plan,
        &ours_cmd,
        "ours",
        &events,
        &mut consul,
        &driver,
    )?;

    eprintln!("bench: floor (this program's own event reader, no daemon running)");
    events.floor.store(true, Ordering::SeqCst);
    let floor = latency(&env, &plan, "floor", &events, &mut consul, &driver, None);
    events.floor.store(false, Ordering::SeqCst);
    let floor = floor?;
    let (delivered, deregistered) = events.floor_die.lock().unwrap().drain(..).unzip();
    let floor_die_split = DieSplit {
        delivered_ms: stats(delivered),
        deregister_ms: stats(deregistered),
    };
    cleanup(&env, &mut consul)?;
    eprintln!("bench: floor: start-up sync of {}", plan.sync);
    let mut floor_sync_repeated = Vec::new();
    let floor_sync_rounds = floor_sync(&env, &plan, &mut consul, &mut floor_sync_repeated)?;
    let floor_sync_s = median_s(&floor_sync_rounds);

    let peer = match &opts.peer {
        Some(cmd) => {
            let argv: Vec<String> = cmd.split_whitespace().map(str::to_string).collect();
            if argv.is_empty() {
                return Err("--peer needs a command".into());
            }
            eprintln!("bench: peer {cmd}");
            Some(subject(
                &env,
                &plan,
                &argv,
                "peer",
                &events,
                &mut consul,
                &driver,
            )?)
        }
        None => None,
    };

    let sizes: BTreeMap<String, u64> = opts
        .sizes
        .iter()
        .map(|(label, path)| {
            fs::metadata(path)
                .map(|m| (label.clone(), m.len()))
                .map_err(|e| format!("{path}: {e}"))
        })
        .collect::<Res<_>>()?;

    let report = Report {
        mode: if opts.short { "short" } else { "full" },
        latency_containers: plan.latency,
        burst_containers: plan.burst,
        burst_group: plan.group,
        sync_containers: plan.sync,
        idle_seconds: plan.idle.as_secs(),
        floor,
        floor_die_split,
        floor_sync_s,
        floor_sync_rounds,
        floor_sync_repeated,
        ours,
        peer,
        sizes,
        targets: Vec::new(),
        template: cost,
    };
    let report = judge(report);
    print_table(&report, opts.short);
    println!(
        "{}",
        serde_json::to_string(&report).map_err(|e| e.to_string())?
    );
    let missed = report.targets.iter().filter(|t| !t.ok).count();
    if opts.strict && !opts.short && missed > 0 {
        return Err(format!("{missed} target(s) missed"));
    }
    Ok(())
}

// ------------------------------------------------------------------------------- figures --

#[derive(Serialize, Default, Clone, Copy)]
struct Stats {
    n: usize,
    median: f64,
    p90: f64,
    p99: f64,
    max: f64,
}

/// The median time of sync rounds (s).
fn median_s(rounds: &[Round]) -> f64 {
    stats(rounds.iter().map(|r| r.s).collect()).median
}

fn stats(mut v: Vec<f64>) -> Stats {
    if v.is_empty() {
        return Stats::default();
    }
    v.sort_by(f64::total_cmp);
    let rank = |q: f64| v[((q * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1];
    let n = v.len();
    let median = if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    };
    Stats {
        n,
        median: round3(median),
        p90: round3(rank(0.9)),
        p99: round3(rank(0.99)),
        max: round3(v[n - 1]),
    }
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

#[derive(Serialize, Default, Clone, Copy)]
struct Latency {
    start_to_visible_ms: Stats,
    die_to_gone_ms: Stats,
    /// The machine's CPU time the hypervisor took over the phase (%).
    steal_pct: f64,
}

/// One start-up sync round.
#[derive(Serialize, Default, Clone, Copy)]
struct Round {
    s: f64,
    /// The machine's CPU time the hypervisor took during it (%).
    steal_pct: f64,
}

/// The machine's CPU time so far, in ticks: (all, stolen by the hypervisor).
fn cpu_ticks() -> Res<(u64, u64)> {
    let stat = fs::read_to_string("/proc/stat").map_err(|e| format!("/proc/stat: {e}"))?;
    let f: Vec<u64> = stat
        .lines()
        .next()
        .and_then(|l| l.strip_prefix("cpu "))
        .map(|l| {
            l.split_whitespace()
                .filter_map(|x| x.parse().ok())
                .collect()
        })
        .unwrap_or_default();
    if f.len() < 8 {
        return Err("/proc/stat: no cpu line with a steal column".into());
    }
    // user nice system idle iowait irq softirq steal (guest time is inside user).
    Ok((f[..8].iter().sum(), f[7]))
}

fn steal_since(t0: (u64, u64)) -> Res<f64> {
    let t1 = cpu_ticks()?;
    let all = t1.0.saturating_sub(t0.0).max(1);
    Ok((1000.0 * t1.1.saturating_sub(t0.1) as f64 / all as f64).round() / 10.0)
}

/// Start-up sync rounds until `want` are kept, each timed by `round`; one the hypervisor
/// stole from (see [`MAX_STEAL_PCT`]) goes to `repeated` and is done again.
fn sync_rounds(
    want: usize,
    repeated: &mut Vec<Round>,
    mut round: impl FnMut() -> Res<Round>,
) -> Res<Vec<Round>> {
    let mut kept = Vec::new();
    while kept.len() < want {
        let r = round()?;
        if r.steal_pct > MAX_STEAL_PCT && repeated.len() < MAX_REPEATS {
            eprintln!(
                "bench: round of {:.3} s with {}% of the CPU stolen by the hypervisor: again",
                r.s, r.steal_pct
            );
            repeated.push(r);
        } else {
            kept.push(r);
        }
    }
    Ok(kept)
}

#[derive(Serialize, Default, Clone, Copy)]
struct Phase {
    /// From the last command to the first poll that showed exactly the running set.
    converged_s: Option<f64>,
    /// Counted at the first poll 2 s or more after the last command.
    missing: usize,
    stale: usize,
}

#[derive(Serialize, Default, Clone, Copy)]
struct Mem {
    rss_kib: u64,
    hwm_kib: u64,
}

#[derive(Serialize, Default)]
struct Subject {
    command: String,
    latency: Latency,
    burst_start: Phase,
    burst_kill: Phase,
    /// The median of the rounds kept.
    sync_s: f64,
    sync_rounds: Vec<Round>,
    /// Rounds done again, the hypervisor having taken too much of the CPU.
    sync_repeated: Vec<Round>,
    mem_idle_0: Mem,
    mem_after_burst: Mem,
    mem_idle_synced: Mem,
    idle_cpu_ticks: u64,
    idle_wakeups: u64,
}

#[derive(Serialize)]
struct Target {
    name: String,
    value: f64,
    limit: f64,
    ok: bool,
}

/// Where the floor client's `die` -> gone goes: the least that path can take here.
#[derive(Serialize)]
struct DieSplit {
    /// From the event's `timeNano` to the floor client reading it.
    delivered_ms: Stats,
    /// The deregister, over a connection already open, until Consul answered.
    deregister_ms: Stats,
}

#[derive(Serialize)]
struct Report {
    /// What a typical `-tags` template costs per rendering.
    template: template::Cost,
    mode: &'static str,
    latency_containers: usize,
    burst_containers: usize,
    burst_group: usize,
    sync_containers: usize,
    idle_seconds: u64,
    floor: Latency,
    floor_die_split: DieSplit,
    /// The floor client's start-up sync: list, then inspect and register each, serially
    /// (the median of the rounds).
    floor_sync_s: f64,
    floor_sync_rounds: Vec<Round>,
    floor_sync_repeated: Vec<Round>,
    ours: Subject,
    peer: Option<Subject>,
    sizes: BTreeMap<String, u64>,
    targets: Vec<Target>,
}

fn judge(mut r: Report) -> Report {
    let mut t = Vec::new();
    let mut check = |name: &str, value: f64, limit: f64| {
        t.push(Target {
            name: name.into(),
            value: round3(value),
            limit: round3(limit),
            ok: value <= limit,
        })
    };
    let o = &r.ours;
    let f = &r.floor;
    check(
        "start->visible median / floor",
        o.latency.start_to_visible_ms.median / f.start_to_visible_ms.median,
        1.5,
    );
    check(
        "die->gone median / floor",
        o.latency.die_to_gone_ms.median / f.die_to_gone_ms.median,
        1.5,
    );
    check(
        "die->gone median (ms)",
        o.latency.die_to_gone_ms.median,
        1.0,
    );
    for (name, p) in [("burst start", o.burst_start), ("burst kill", o.burst_kill)] {
        check(
            &format!("{name}: converged (s)"),
            p.converged_s.unwrap_or(f64::INFINITY),
            BURST_WINDOW.as_secs_f64(),
        );
        check(
            &format!("{name}: missing + stale"),
            (p.missing + p.stale) as f64,
            0.0,
        );
    }
    check(
        "start-up sync (s)",
        o.sync_s,
        1.2 * r.sync_containers as f64 * f.start_to_visible_ms.median / 1000.0,
    );
    if let Some(p) = &r.peer {
        check("start-up sync / peer's", o.sync_s / p.sync_s, 0.6);
    }
    check(
        "VmHWM with containers registered (KiB)",
        o.mem_idle_synced.hwm_kib.max(o.mem_after_burst.hwm_kib) as f64,
        MIB2 as f64,
    );
    check("idle CPU ticks", o.idle_cpu_ticks as f64, 0.0);
    check(
        "idle wake-ups per minute",
        o.idle_wakeups as f64 * 60.0 / r.idle_seconds as f64,
        1.0,
    );
    if let Some(&n) = r.sizes.get("all features without tls") {
        check(
            "stripped size, all without tls (bytes)",
            n as f64,
            SIZE_LIMIT as f64,
        );
    }
    r.targets = t;
    r
}

fn num(x: f64) -> String {
    if x.is_finite() {
        format!("{x:.3}")
    } else {
        "never".into()
    }
}

fn ratio(a: f64, b: f64) -> String {
    if b > 0.0 && a.is_finite() && b.is_finite() {
        format!("{:.2}", a / b)
    } else {
        String::new()
    }
}

fn converged(p: Phase) -> f64 {
    p.converged_s.unwrap_or(f64::INFINITY)
}

type Get = fn(&Subject) -> f64;

fn print_table(r: &Report, short: bool) {
    let (fs, fd) = (r.floor.start_to_visible_ms, r.floor.die_to_gone_ms);
    let figures: [(&str, Get, Option<f64>); 21] = [
        (
            "start->visible median (ms)",
            |s| s.latency.start_to_visible_ms.median,
            Some(fs.median),
        ),
        (
            "start->visible p90 (ms)",
            |s| s.latency.start_to_visible_ms.p90,
            Some(fs.p90),
        ),
        (
            "start->visible p99 (ms)",
            |s| s.latency.start_to_visible_ms.p99,
            Some(fs.p99),
        ),
        (
            "die->gone median (ms)",
            |s| s.latency.die_to_gone_ms.median,
            Some(fd.median),
        ),
        (
            "die->gone p90 (ms)",
            |s| s.latency.die_to_gone_ms.p90,
            Some(fd.p90),
        ),
        (
            "die->gone p99 (ms)",
            |s| s.latency.die_to_gone_ms.p99,
            Some(fd.p99),
        ),
        (
            "burst start: converged (s)",
            |s| converged(s.burst_start),
            None,
        ),
        (
            "burst start: missing",
            |s| s.burst_start.missing as f64,
            None,
        ),
        ("burst start: stale", |s| s.burst_start.stale as f64, None),
        (
            "burst kill: converged (s)",
            |s| converged(s.burst_kill),
            None,
        ),
        ("burst kill: missing", |s| s.burst_kill.missing as f64, None),
        ("burst kill: stale", |s| s.burst_kill.stale as f64, None),
        ("start-up sync (s)", |s| s.sync_s, Some(r.floor_sync_s)),
        (
            "VmRSS idle, 0 containers (KiB)",
            |s| s.mem_idle_0.rss_kib as f64,
            None,
        ),
        (
            "VmHWM idle, 0 containers (KiB)",
            |s| s.mem_idle_0.hwm_kib as f64,
            None,
        ),
        (
            "VmRSS after burst (KiB)",
            |s| s.mem_after_burst.rss_kib as f64,
            None,
        ),
        (
            "VmHWM after burst (KiB)",
            |s| s.mem_after_burst.hwm_kib as f64,
            None,
        ),
        (
            "VmRSS idle, synced (KiB)",
            |s| s.mem_idle_synced.rss_kib as f64,
            None,
        ),
        (
            "VmHWM idle, synced (KiB)",
            |s| s.mem_idle_synced.hwm_kib as f64,
            None,
        ),
        ("idle CPU ticks", |s| s.idle_cpu_ticks as f64, None),
        ("idle wake-ups", |s| s.idle_wakeups as f64, None),
    ];
    println!(
        "mode {}: latency over {} containers one at a time; burst {} by {}; start-up sync of {}; idle {} s",
        r.mode, r.latency_containers, r.burst_containers, r.burst_group, r.sync_containers, r.idle_seconds
    );
    let mut head = format!(
        "{:<34} {:>12} {:>10} {:>8}",
        "figure", "registrator", "floor", "/floor"
    );
    if r.peer.is_some() {
        head += &format!(" {:>12} {:>10}", "peer", "peer/ours");
    }
    println!("{head}");
    for (name, get, floor) in figures {
        let ours = get(&r.ours);
        let by_floor = floor.map(|f| ratio(ours, f)).unwrap_or_default();
        let floor = floor.map(num).unwrap_or_default();
        let mut line = format!("{name:<34} {:>12} {floor:>10} {by_floor:>8}", num(ours));
        if let Some(p) = r.peer.as_ref().map(get) {
            line += &format!(" {:>12} {:>10}", num(p), ratio(p, ours));
        }
        println!("{line}");
    }
    let rounds = |v: &[Round]| {
        let v: Vec<String> = v
            .iter()
            .map(|r| format!("{:.3} ({}%)", r.s, r.steal_pct))
            .collect();
        if v.is_empty() {
            "none".to_string()
        } else {
            v.join(" ")
        }
    };
    println!("start-up sync rounds, s (CPU stolen by the hypervisor):");
    println!("  registrator {}", rounds(&r.ours.sync_rounds));
    println!("  floor       {}", rounds(&r.floor_sync_rounds));
    if let Some(p) = &r.peer {
        println!("  peer        {}", rounds(&p.sync_rounds));
    }
    println!("  done again, over {MAX_STEAL_PCT}% stolen:");
    println!("  registrator {}", rounds(&r.ours.sync_repeated));
    println!("  floor       {}", rounds(&r.floor_sync_repeated));
    if let Some(p) = &r.peer {
        println!("  peer        {}", rounds(&p.sync_repeated));
    }
    let mut stolen = format!(
        "CPU stolen by the hypervisor over the latency phases: registrator {}%, floor {}%",
        r.ours.latency.steal_pct, r.floor.steal_pct
    );
    if let Some(p) = &r.peer {
        stolen += &format!(", peer {}%", p.latency.steal_pct);
    }
    println!("{stolen}");
    let split = &r.floor_die_split;
    println!(
        "floor die->gone, medians: the engine delivered the event {:.3} ms after its timeNano; Consul answered the deregister in {:.3} ms",
        split.delivered_ms.median, split.deregister_ms.median
    );
    for (label, n) in &r.sizes {
        println!("{:<34} {n:>12}", format!("size, {label} (bytes)"));
    }
    println!();
    println!(
        "targets{}:",
        if short {
            " (short mode: shown, not judged)"
        } else {
            ""
        }
    );
    for t in &r.targets {
        let verdict = match (short, t.ok) {
            (true, _) => "-",
            (false, true) => "ok",
            (false, false) => "MISSED",
        };
        println!(
            "  {:<44} {:>12} <= {:<12} {verdict}",
            t.name,
            num(t.value),
            num(t.limit)
        );
    }
}

// ------------------------------------------------------------------------------ workload --

/// Everything measured of one daemon: `command` plus `-ip 127.0.0.1 consul://ADDR`.
fn subject(
    env: &Env,
    plan: &Plan,
    command: &[String],
    label: &str,
    events: &Events,
    consul: &mut Consul,
    driver: &Driver,
) -> Res<Subject> {
    let mut s = Subject {
        command: command.join(" "),
        ..Subject::default()
    };
    let mut d = Daemon::spawn(env, command, &format!("{label}-1"))?;
    settle(&mut d)?;
    s.mem_idle_0 = d.mem()?;
    eprintln!("bench: {label}: latency, {} containers", plan.latency);
    s.latency = latency(env, plan, label, events, consul, driver, Some(&mut d))?;
    eprintln!("bench: {label}: burst of {} by {}", plan.burst, plan.group);
    let (start, kill) = burst(env, plan, label, consul)?;
    s.burst_start = start;
    s.burst_kill = kill;
    settle(&mut d)?;
    s.mem_after_burst = d.mem()?;
    d.stop()?;
    cleanup(env, consul)?;

    eprintln!(
        "bench: {label}: start-up sync of {}, {} rounds",
        plan.sync, plan.rounds
    );
    let names: Vec<String> = (0..plan.sync).map(|i| format!("bench-sync-{i}")).collect();
    start_all(env, &names, plan.group)?;
    let want: BTreeSet<String> = names.iter().map(|n| service_id(env, n)).collect();
    let (rounds, mut d) = daemon_syncs(
        env,
        command,
        &format!("{label}-sync"),
        plan.rounds,
        &want,
        consul,
        &mut s.sync_repeated,
    )?;
    s.sync_rounds = rounds;
    s.sync_s = median_s(&s.sync_rounds);
    settle(&mut d)?;
    s.mem_idle_synced = d.mem()?;
    eprintln!("bench: {label}: idle for {} s", plan.idle.as_secs());
    let (t1, w1) = (d.ticks()?, d.wakeups()?);
    thread::sleep(plan.idle);
    let (t2, w2) = (d.ticks()?, d.wakeups()?);
    s.idle_cpu_ticks = t2.saturating_sub(t1);
    s.idle_wakeups = w2.saturating_sub(w1);
    d.stop()?;
    cleanup(env, consul)?;
    Ok(s)
}

/// `rounds` start-up syncs of a daemon started afresh each time, until Consul holds `want`
/// (see [`sync_rounds`]); the rounds kept, and the daemon of the last, still running.
fn daemon_syncs(
    env: &Env,
    command: &[String],
    label: &str,
    rounds: usize,
    want: &BTreeSet<String>,
    consul: &mut Consul,
    repeated: &mut Vec<Round>,
) -> Res<(Vec<Round>, Daemon)> {
    let mut last: Option<Daemon> = None;
    let mut n = 0;
    let kept = sync_rounds(rounds, repeated, || {
        if let Some(d) = last.take() {
            d.stop()?;
        }
        clear(consul)?;
        quiet();
        let cpu = cpu_ticks()?;
        let t0 = Instant::now();
        let mut d = Daemon::spawn(env, command, &format!("{label}-{n}"))?;
        n += 1;
        wait_set(consul, want, t0, Some(&mut d))?;
        let s = round3(t0.elapsed().as_secs_f64());
        last = Some(d);
        Ok(Round {
            s,
            steal_pct: steal_since(cpu)?,
        })
    })?;
    Ok((kept, last.ok_or("no start-up sync round")?))
}

/// Polls until Consul holds exactly `want`, for the start-up syncs. Each poll asks for one
/// service (`/v1/agent/service/ID`, well under 1 KB), the first of `want` not yet seen, instead
/// of the whole set (some 40 KB for 100, that Consul would build every 2 ms on the same 2 cores
/// as the registrations measured). A sync only adds, so when the last is there one listing
/// checks that nothing is missing or extra; if something is, whole-set polls go on.
fn wait_set(
    consul: &mut Consul,
    want: &BTreeSet<String>,
    t0: Instant,
    mut daemon: Option<&mut Daemon>,
) -> Res<()> {
    let mut poll = || -> Res<()> {
        thread::sleep(SET_POLL);
        if let Some(d) = daemon.as_deref_mut() {
            d.alive()?;
        }
        if t0.elapsed() > WAIT {
            return Err(format!("start-up sync incomplete after {WAIT:?}"));
        }
        Ok(())
    };
    for id in want {
        while !consul.has(id)? {
            poll()?;
        }
    }
    while consul.ids()? != *want {
        poll()?;
    }
    Ok(())
}

/// Waits for Consul's anti-entropy to take the services just deregistered out of its catalog,
/// work that would otherwise land on the next round measured.
fn quiet() {
    thread::sleep(Duration::from_millis(500));
}

/// The start-up sync done by the floor client (no daemon running): from the first request
/// over its open connections until Consul lists every service.
fn floor_sync(
    env: &Env,
    plan: &Plan,
    consul: &mut Consul,
    repeated: &mut Vec<Round>,
) -> Res<Vec<Round>> {
    let names: Vec<String> = (0..plan.sync).map(|i| format!("bench-sync-{i}")).collect();
    start_all(env, &names, plan.group)?;
    let want: BTreeSet<String> = names.iter().map(|n| service_id(env, n)).collect();
    let rounds = floor_syncs(env, plan.rounds, &want, consul, repeated)?;
    cleanup(env, consul)?;
    Ok(rounds)
}

/// `rounds` start-up syncs of the floor client, of every running container, until Consul
/// holds `want` (see [`sync_rounds`]).
fn floor_syncs(
    env: &Env,
    rounds: usize,
    want: &BTreeSet<String>,
    consul: &mut Consul,
    repeated: &mut Vec<Round>,
) -> Res<Vec<Round>> {
    sync_rounds(rounds, repeated, || {
        clear(consul)?;
        quiet();
        let mut floor = Floor::open(env)?;
        let cpu = cpu_ticks()?;
        let t0 = Instant::now();
        floor.sync()?;
        wait_set(consul, want, t0, None)?;
        Ok(Round {
            s: round3(t0.elapsed().as_secs_f64()),
            steal_pct: steal_since(cpu)?,
        })
    })
}

/// Lets a daemon finish what it is doing before its memory is read.
fn settle(d: &mut Daemon) -> Res<()> {
    thread::sleep(Duration::from_secs(1));
    d.alive()
}

fn service_id(env: &Env, name: &str) -> String {
    format!("{}:{name}:80", env.hostname)
}

/// Containers one at a time: start, wait until visible; kill, wait until gone; remove.
fn latency(
    env: &Env,
    plan: &Plan,
    label: &str,
    events: &Events,
    consul: &mut Consul,
    driver: &Driver,
    mut daemon: Option<&mut Daemon>,
) -> Res<Latency> {
    let mut up = Vec::new();
    let mut down = Vec::new();
    let cpu = cpu_ticks()?;
    for i in 0..plan.latency {
        let name = format!("bench-{label}-{i}");
        let id = service_id(env, &name);
        let reply = driver.send(Cmd::Run(name.clone()));
        // A floor client that failed is the cause of a wait that timed out.
        let floor_failed = |e: String| match events.floor_error.lock().unwrap().take() {
            Some(f) => format!("floor client: {f}"),
            None => e,
        };
        let seen = consul.wait(&id, true, &reply).map_err(floor_failed)?;
        let started = events.time(&name, "start")?;
        up.push((seen - started) as f64 / 1e6);
        let reply = driver.send(Cmd::Kill(name.clone()));
        let gone = consul.wait(&id, false, &reply).map_err(floor_failed)?;
        let died = events.time(&name, "die")?;
        down.push((gone - died) as f64 / 1e6);
        driver
            .send(Cmd::Remove(name))
            .recv()
            .map_err(|e| e.to_string())??;
        if let Some(d) = daemon.as_deref_mut() {
            d.alive()?;
        }
    }
    if let Some(e) = events.floor_error.lock().unwrap().take() {
        return Err(format!("floor client: {e}"));
    }
    Ok(Latency {
        start_to_visible_ms: stats(up),
        die_to_gone_ms: stats(down),
        steal_pct: steal_since(cpu)?,
    })
}

/// Starts `names` `group` at a time (each a thread with its own engine connection).
fn start_all(env: &Env, names: &[String], group: usize) -> Res<()> {
    in_groups(env, names, group, create_start)
}

fn in_groups(
    env: &Env,
    names: &[String],
    group: usize,
    f: impl Fn(&mut Conn, &str) -> Res<()> + Sync,
) -> Res<()> {
    for chunk in names.chunks(group) {
        thread::scope(|s| {
            let handles: Vec<_> = chunk
                .iter()
                .map(|n| {
                    let f = &f;
                    s.spawn(move || {
                        let mut c = Conn::unix(&env.sock).map_err(|e| format!("engine: {e}"))?;
                        f(&mut c, n)
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap_or_else(|_| Err("thread panicked".into())))
                .collect::<Res<Vec<()>>>()
        })?;
    }
    Ok(())
}

fn burst(env: &Env, plan: &Plan, label: &str, consul: &mut Consul) -> Res<(Phase, Phase)> {
    let names: Vec<String> = (0..plan.burst)
        .map(|i| format!("bench-{label}-burst-{i}"))
        .collect();
    start_all(env, &names, plan.group)?;
    let last = Instant::now();
    let want: BTreeSet<String> = names.iter().map(|n| service_id(env, n)).collect();
    let start = converge(consul, &want, last)?;
    in_groups(env, &names, plan.group, |c, n| {
        expect(c, "POST", &format!("/containers/{n}/kill"), None, &[204])
    })?;
    let last = Instant::now();
    let kill = converge(consul, &BTreeSet::new(), last)?;
    in_groups(env, &names, plan.group, |c, n| {
        expect(
            c,
            "DELETE",
            &format!("/containers/{n}?force=true"),
            None,
            &[204, 404],
        )
    })?;
    Ok((start, kill))
}

/// Polls until Consul holds exactly `want` and the 2 s window after `last` is over.
fn converge(consul: &mut Consul, want: &BTreeSet<String>, last: Instant) -> Res<Phase> {
    let mut p = Phase::default();
    let mut counted = false;
    loop {
        let ids = consul.ids()?;
        let t = last.elapsed();
        let exact = &ids == want;
        if exact && p.converged_s.is_none() {
            p.converged_s = Some(round3(t.as_secs_f64()));
        }
        if t >= BURST_WINDOW && !counted {
            p.missing = want.difference(&ids).count();
            p.stale = ids.difference(want).count();
            counted = true;
        }
        if counted && (p.converged_s.is_some() || t > WAIT) {
            return Ok(p);
        }
        thread::sleep(SET_POLL);
    }
}

/// Deregisters every service but Consul's own.
fn clear(consul: &mut Consul) -> Res<()> {
    for id in consul.ids()? {
        consul.deregister(&id)?;
    }
    Ok(())
}

/// Removes every container the benchmark made and every service but Consul's own.
fn cleanup(env: &Env, consul: &mut Consul) -> Res<()> {
    let mut c = Conn::unix(&env.sock).map_err(|e| format!("engine: {e}"))?;
    let (_, body) = call(
        &mut c,
        "engine",
        "GET",
        "/containers/json?all=true",
        None,
        &[200],
    )?;
    let listed: Vec<Listed> = serde_json::from_slice(&body).map_err(|e| e.to_string())?;
    for l in listed {
        if l.names.iter().any(|n| n.starts_with("/bench-")) {
            expect(
                &mut c,
                "DELETE",
                &format!("/containers/{}?force=true", l.id),
                None,
                &[204, 404],
            )?;
        }
    }
    clear(consul)
}

// -------------------------------------------------------------------------------- engine --

/// A request whose answer must have one of the `ok` statuses: that status and the body. `who`
/// (engine, consul) names the other side in errors.
fn call(
    c: &mut Conn,
    who: &str,
    method: &str,
    path: &str,
    body: Option<&[u8]>,
    ok: &[u16],
) -> Res<(u16, Vec<u8>)> {
    let (status, text) = c
        .request(method, path, body)
        .map_err(|e| format!("{who}: {method} {path}: {e}"))?;
    if ok.contains(&status) {
        Ok((status, text))
    } else {
        Err(format!(
            "{who}: {method} {path}: status {status}: {}",
            String::from_utf8_lossy(&text).trim()
        ))
    }
}

/// An engine command whose answer must have one of the `ok` statuses.
fn expect(c: &mut Conn, method: &str, path: &str, body: Option<&[u8]>, ok: &[u16]) -> Res<()> {
    call(c, "engine", method, path, body, ok).map(drop)
}

/// `docker run -d --name NAME -p 127.0.0.1::80 bb`, over the API.
fn create_start(c: &mut Conn, name: &str) -> Res<()> {
    let body = br#"{"Image":"bb","ExposedPorts":{"80/tcp":{}},"HostConfig":{"PortBindings":{"80/tcp":[{"HostIp":"127.0.0.1","HostPort":""}]}}}"#;
    expect(
        c,
        "POST",
        &format!("/containers/create?name={name}"),
        Some(body),
        &[201],
    )?;
    expect(
        c,
        "POST",
        &format!("/containers/{name}/start"),
        None,
        &[204],
    )
}

enum Cmd {
    Run(String),
    Kill(String),
    Remove(String),
}

/// A thread that runs engine commands while the main thread polls Consul.
struct Driver {
    tx: mpsc::Sender<(Cmd, mpsc::Sender<Res<()>>)>,
}

impl Driver {
    fn start(sock: &str) -> Res<Driver> {
        let mut c = Conn::unix(sock).map_err(|e| format!("engine {sock}: {e}"))?;
        let (tx, rx) = mpsc::channel::<(Cmd, mpsc::Sender<Res<()>>)>();
        let sock = sock.to_string();
        thread::spawn(move || {
            let mut used = Instant::now();
            for (cmd, reply) in rx {
                // The engine closes a connection left idle for minutes (as between the sizes
                // of --scale): a fresh one after a pause.
                if used.elapsed() > Duration::from_secs(10) {
                    if let Ok(fresh) = Conn::unix(&sock) {
                        c = fresh;
                    }
                }
                used = Instant::now();
                let r = match cmd {
                    Cmd::Run(n) => create_start(&mut c, &n),
                    Cmd::Kill(n) => expect(
                        &mut c,
                        "POST",
                        &format!("/containers/{n}/kill"),
                        None,
                        &[204],
                    ),
                    Cmd::Remove(n) => expect(
                        &mut c,
                        "DELETE",
                        &format!("/containers/{n}?force=true"),
                        None,
                        &[204],
                    ),
                };
                let _ = reply.send(r);
            }
        });
        Ok(Driver { tx })
    }

    fn send(&self, cmd: Cmd) -> mpsc::Receiver<Res<()>> {
        let (tx, rx) = mpsc::channel();
        let _ = self.tx.send((cmd, tx));
        rx
    }
}

// -------------------------------------------------------------------------------- events --

/// The benchmark's own `/events` reader: it stamps every `start` and `die` with the engine's
/// `timeNano`, and while `floor` is set it is also the floor client.
struct Events {
    times: Mutex<HashMap<(String, String), i128>>,
    cv: Condvar,
    floor: AtomicBool,
    floor_error: Mutex<Option<String>>,
    /// Where the floor client's `die` -> gone goes, per container: (the engine's delivery of
    /// the event after its `timeNano`, Consul's answer to the deregister), in ms.
    floor_die: Mutex<Vec<(f64, f64)>>,
}

#[derive(Deserialize)]
struct Event {
    #[serde(rename = "Action", default)]
    action: String,
    #[serde(default)]
    id: String,
    #[serde(rename = "timeNano", default)]
    time_nano: i128,
    #[serde(rename = "Actor", default)]
    actor: Actor,
}

#[derive(Deserialize, Default)]
struct Actor {
    /// The container ID; API 1.52 engines send only this one, older ones `id` too.
    #[serde(rename = "ID", default)]
    id: String,
    #[serde(rename = "Attributes", default)]
    attributes: HashMap<String, String>,
}

impl Events {
    fn start(env: Arc<Env>) -> Res<Arc<Events>> {
        let ev = Arc::new(Events {
            times: Mutex::new(HashMap::new()),
            cv: Condvar::new(),
            floor: AtomicBool::new(false),
            floor_error: Mutex::new(None),
            floor_die: Mutex::new(Vec::new()),
        });
        let mut c = Conn::stream(&env.sock).map_err(|e| format!("engine {}: {e}", env.sock))?;
        let status = c
            .send("GET", EVENTS_PATH, None)
            .map_err(|e| format!("engine: events: {e}"))?;
        if status != 200 {
            return Err(format!("engine: events: status {status}"));
        }
        let mut floor = Floor::open(&env)?;
        let shared = ev.clone();
        thread::spawn(move || {
            let mut buf = Vec::new();
            loop {
                match c.next(&mut buf) {
                    Ok(true) => {}
                    Ok(false) | Err(_) => {
                        eprintln!("bench: the engine's event stream ended");
                        std::process::exit(1);
                    }
                }
                while let Some(nl) = buf.iter().position(|&b| b == b'\n') {
                    let line: Vec<u8> = buf.drain(..=nl).collect();
                    let Ok(e) = serde_json::from_slice::<Event>(&line) else {
                        continue;
                    };
                    if shared.floor.load(Ordering::SeqCst) {
                        let got = now_ns();
                        match floor.handle(&e) {
                            Ok(true) if e.action == "die" => {
                                let ms = |ns: i128| ns as f64 / 1e6;
                                let split = (ms(got - e.time_nano), ms(now_ns() - got));
                                shared.floor_die.lock().unwrap().push(split);
                            }
                            Ok(_) => {}
                            Err(err) => {
                                shared.floor_error.lock().unwrap().get_or_insert(err);
                            }
                        }
                    }
                    let name = e.actor.attributes.get("name").cloned().unwrap_or_default();
                    shared
                        .times
                        .lock()
                        .unwrap()
                        .insert((name, e.action.clone()), e.time_nano);
                    shared.cv.notify_all();
                }
            }
        });
        Ok(ev)
    }

    /// The `timeNano` of `action` of container `name`.
    fn time(&self, name: &str, action: &str) -> Res<i128> {
        let key = (name.to_string(), action.to_string());
        let deadline = Instant::now() + WAIT;
        let mut times = self.times.lock().unwrap();
        loop {
            if let Some(&t) = times.get(&key) {
                return Ok(t);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(format!("no {action} event for {name}"));
            }
            times = self.cv.wait_timeout(times, left).unwrap().0;
        }
    }
}

/// A container as `/containers/json` lists it.
#[derive(Deserialize)]
struct Listed {
    #[serde(rename = "Id")]
    id: String,
    #[serde(rename = "Names", default)]
    names: Vec<String>,
}

/// The smallest client: one inspect and one register (or deregister), each over a connection
/// opened before the first event.
struct Floor {
    docker: Conn,
    consul: Conn,
    hostname: String,
    sock: String,
    consul_addr: String,
    used: Instant,
}

#[derive(Deserialize)]
struct Inspect {
    #[serde(rename = "NetworkSettings")]
    net: Net,
}

#[derive(Deserialize)]
struct Net {
    #[serde(rename = "Ports", default)]
    ports: HashMap<String, Option<Vec<Binding>>>,
}

#[derive(Deserialize)]
struct Binding {
    #[serde(rename = "HostPort")]
    host_port: String,
}

impl Floor {
    fn open(env: &Env) -> Res<Floor> {
        Ok(Floor {
            docker: Conn::unix(&env.sock).map_err(|e| format!("engine: {e}"))?,
            consul: Conn::tcp(&env.consul).map_err(|e| format!("consul: {e}"))?,
            hostname: env.hostname.clone(),
            sock: env.sock.clone(),
            consul_addr: env.consul.clone(),
            used: Instant::now(),
        })
    }

    /// Applies an event of one of its containers; false for the others.
    fn handle(&mut self, e: &Event) -> Res<bool> {
        let name = e
            .actor
            .attributes
            .get("name")
            .map(String::as_str)
            .unwrap_or("");
        if !name.starts_with("bench-floor-") {
            return Ok(false);
        }
        // The engine closes a connection left idle for minutes (the floor waits while the
        // daemon is measured, at every size of --scale): fresh ones after a pause, opened on the
        // first event after it, which adds a connect to that one sample.
        if self.used.elapsed() > Duration::from_secs(10) {
            self.docker = Conn::unix(&self.sock).map_err(|e| format!("engine: {e}"))?;
            self.consul = Conn::tcp(&self.consul_addr).map_err(|e| format!("consul: {e}"))?;
        }
        self.used = Instant::now();
        let id = if e.id.is_empty() { &e.actor.id } else { &e.id };
        self.apply(id, name, e.action == "start").map(|()| true)
    }

    /// Registers container `id`'s port 80 (inspecting it for the host port), or deregisters
    /// it: the `die` event names the container, so that path needs no inspect.
    fn apply(&mut self, id: &str, name: &str, register: bool) -> Res<()> {
        let sid = format!("{}:{name}:80", self.hostname);
        let (path, body) = if register {
            let path = format!("/containers/{id}/json");
            let (_, body) = call(&mut self.docker, "engine", "GET", &path, None, &[200])?;
            let c: Inspect =
                serde_json::from_slice(&body).map_err(|err| format!("inspect: {err}"))?;
            let port = c
                .net
                .ports
                .get("80/tcp")
                .and_then(|b| b.as_ref()?.first())
                .ok_or("inspect: no binding of 80/tcp")?
                .host_port
                .clone();
            let body =
                format!(r#"{{"ID":"{sid}","Name":"bb","Address":"127.0.0.1","Port":{port}}}"#);
            ("/v1/agent/service/register".to_string(), body.into_bytes())
        } else {
            (format!("/v1/agent/service/deregister/{sid}"), Vec::new())
        };
        call(
            &mut self.consul,
            "consul",
            "PUT",
            &path,
            Some(&body),
            &[200],
        )
        .map(drop)
    }

    /// A start-up sync by the smallest client: list, then inspect and register each.
    fn sync(&mut self) -> Res<()> {
        let (_, body) = call(
            &mut self.docker,
            "engine",
            "GET",
            "/containers/json",
            None,
            &[200],
        )?;
        let listed: Vec<Listed> =
            serde_json::from_slice(&body).map_err(|err| format!("list: {err}"))?;
        for l in listed {
            if let Some(name) = l.names.first().and_then(|n| n.strip_prefix('/')) {
                self.apply(&l.id, name, true)?;
            }
        }
        Ok(())
    }
}

// -------------------------------------------------------------------------------- consul --

struct Consul {
    c: Conn,
}

impl Consul {
    fn open(addr: &str) -> Res<Consul> {
        Ok(Consul {
            c: Conn::tcp(addr).map_err(|e| format!("consul {addr}: {e}"))?,
        })
    }

    fn services(&mut self) -> Res<Vec<u8>> {
        let (_, body) = call(
            &mut self.c,
            "consul",
            "GET",
            "/v1/agent/services",
            None,
            &[200],
        )?;
        Ok(body)
    }

    /// Every service ID but Consul's own.
    fn ids(&mut self) -> Res<BTreeSet<String>> {
        let body = self.services()?;
        let map: HashMap<String, serde::de::IgnoredAny> =
            serde_json::from_slice(&body).map_err(|e| format!("consul: services: {e}"))?;
        Ok(map.into_keys().filter(|k| k != "consul").collect())
    }

    /// Whether the agent has service `id`.
    fn has(&mut self, id: &str) -> Res<bool> {
        let path = format!("/v1/agent/service/{id}");
        let (status, _) = call(&mut self.c, "consul", "GET", &path, None, &[200, 404])?;
        Ok(status == 200)
    }

    fn deregister(&mut self, id: &str) -> Res<()> {
        let path = format!("/v1/agent/service/deregister/{id}");
        call(&mut self.c, "consul", "PUT", &path, Some(b""), &[200]).map(drop)
    }

    /// Polls until `id` is (or is no longer) listed; the wall-clock time the
    /// first response that shows it was read. `reply` is the engine command in flight: its
    /// failure ends the wait.
    fn wait(&mut self, id: &str, present: bool, reply: &mpsc::Receiver<Res<()>>) -> Res<i128> {
        let needle = format!("\"{id}\"");
        let deadline = Instant::now() + WAIT;
        let mut done = false;
        loop {
            let body = self.services()?;
            let t = now_ns();
            let found = memfind(&body, needle.as_bytes());
            if found == present {
                if !done {
                    reply.recv().map_err(|e| e.to_string())??;
                }
                return Ok(t);
            }
            if !done {
                match reply.try_recv() {
                    Ok(r) => {
                        r?;
                        done = true;
                    }
                    Err(mpsc::TryRecvError::Empty) => {}
                    Err(e) => return Err(e.to_string()),
                }
            }
            thread::sleep(LATENCY_POLL);
            if Instant::now() > deadline {
                return Err(format!(
                    "{id} still {} after {WAIT:?}",
                    if present { "missing" } else { "listed" }
                ));
            }
        }
    }
}

fn memfind(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

// -------------------------------------------------------------------------------- daemon --

struct Daemon {
    child: Child,
    log: String,
}

impl Daemon {
    fn spawn(env: &Env, command: &[String], label: &str) -> Res<Daemon> {
        let log = format!("{}/bench-{label}.log", env.dir);
        let out = fs::File::create(&log).map_err(|e| format!("{log}: {e}"))?;
        let err = out.try_clone().map_err(|e| e.to_string())?;
        let child = Command::new(&command[0])
            .args(&command[1..])
            .args(["-ip", "127.0.0.1", &format!("consul://{}", env.consul)])
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .map_err(|e| format!("{}: {e}", command[0]))?;
        // For tests/bench.sh to kill should this program exit without dropping it (its
        // event reader exits the process when the engine's stream ends).
        let pids = format!("{}/bench-daemons", env.dir);
        let noted = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&pids)
            .and_then(|mut f| {
                std::io::Write::write_all(&mut f, format!("{}\n", child.id()).as_bytes())
            });
        let d = Daemon { child, log };
        noted.map_err(|e| format!("{pids}: {e}"))?;
        Ok(d)
    }

    fn alive(&mut self) -> Res<()> {
        match self.child.try_wait() {
            Ok(None) => Ok(()),
            Ok(Some(st)) => Err(format!("the daemon exited ({st}); see {}", self.log)),
            Err(e) => Err(e.to_string()),
        }
    }

    fn status(&self) -> Res<String> {
        let p = format!("/proc/{}/status", self.child.id());
        fs::read_to_string(&p).map_err(|e| format!("{p}: {e}"))
    }

    fn mem(&mut self) -> Res<Mem> {
        self.alive()?;
        let st = self.status()?;
        let kib = |key: &str| -> Res<u64> {
            st.lines()
                .find_map(|l| l.strip_prefix(key))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
                .ok_or(format!("no {key} in /proc/PID/status"))
        };
        Ok(Mem {
            rss_kib: kib("VmRSS:")?,
            hwm_kib: kib("VmHWM:")?,
        })
    }

    /// utime + stime of all threads, in clock ticks.
    fn ticks(&mut self) -> Res<u64> {
        self.alive()?;
        let p = format!("/proc/{}/stat", self.child.id());
        let stat = fs::read_to_string(&p).map_err(|e| format!("{p}: {e}"))?;
        let rest = stat.rsplit_once(')').ok_or("odd /proc/PID/stat")?.1;
        let f: Vec<&str> = rest.split_whitespace().collect();
        // After the command: state is field 3, utime 14 and stime 15.
        let n = |i: usize| {
            f.get(i - 3)
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0)
        };
        Ok(n(14) + n(15))
    }

    /// Voluntary context switches summed over the daemon's threads.
    fn wakeups(&mut self) -> Res<u64> {
        let dir = format!("/proc/{}/task", self.child.id());
        let mut sum = 0;
        for t in fs::read_dir(&dir).map_err(|e| format!("{dir}: {e}"))? {
            let p = t.map_err(|e| e.to_string())?.path().join("status");
            let st = fs::read_to_string(&p).unwrap_or_default();
            sum += st
                .lines()
                .find_map(|l| l.strip_prefix("voluntary_ctxt_switches:"))
                .and_then(|v| v.trim().parse::<u64>().ok())
                .unwrap_or(0);
        }
        Ok(sum)
    }

    fn stop(mut self) -> Res<()> {
        self.alive()?;
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return Ok(());
            }
            thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        Err(format!(
            "the daemon did not exit within 10 s of SIGTERM; see {}",
            self.log
        ))
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
