"""The measuring half of tests/bench.sh: stdlib only, loopback only."""
import http.client
import json
import os
import statistics
import subprocess
import sys
import time

BIN, BIN_CONSUL = sys.argv[1], sys.argv[2]
N = int(os.environ.get("BENCH_N", "30"))
RUNS = int(os.environ.get("BENCH_RUNS", "20"))
HOST, PORT = os.environ["CONSUL_HTTP_ADDR"].split(":")
HOSTNAME = open("/proc/sys/kernel/hostname").read().strip()
consul = http.client.HTTPConnection(HOST, int(PORT), timeout=10)


def services():
    consul.request("GET", "/v1/agent/services")
    return set(json.loads(consul.getresponse().read())) - {"consul"}


def docker(*args):
    return subprocess.run(["docker", *args], check=True, capture_output=True, text=True).stdout.strip()


def wait(pred, what, limit=60):
    end = time.monotonic() + limit
    while time.monotonic() < end:
        if pred():
            return
        time.sleep(0.002)
    sys.exit(f"timed out waiting for {what}")


def status(pid):
    fields = {}
    for line in open(f"/proc/{pid}/status"):
        k, _, v = line.partition(":")
        fields[k] = v.strip()
    return fields


figures = {
    "size_all_features_bytes": os.path.getsize(BIN),
    "size_consul_only_bytes": os.path.getsize(BIN_CONSUL),
}

# Memory after the start-up sync of N running containers.
names = [f"bench{i:02}" for i in range(N)]
for n in names:
    docker("run", "-d", "--name", n, "-p", "127.0.0.1::80", "bb")
log = open(os.path.join(os.environ["RGTR_TEST_DIR"], "bench-daemon.log"), "w")
env = dict(os.environ, RUST_LOG="warn")
d = subprocess.Popen([BIN, "-ip", "127.0.0.1", f"consul://{HOST}:{PORT}"], stdout=log, stderr=log, env=env)
want = {f"{HOSTNAME}:{n}:80" for n in names}
t0 = time.monotonic()
wait(lambda: services() == want, f"{N} services")
figures["startup_sync_s"] = round(time.monotonic() - t0, 3)
time.sleep(1)
st = status(d.pid)
figures["rss_after_sync_kib"] = int(st["VmRSS"].split()[0])
figures["hwm_after_sync_kib"] = int(st["VmHWM"].split()[0])
figures["containers"] = N
docker("rm", "-f", *names)
wait(lambda: services() == set(), "all gone")

# docker run -d returning -> the service in Consul, one container at a time.
lat = []
for i in range(RUNS):
    name = f"lat{i:02}"
    sid = f"{HOSTNAME}:{name}:80"
    docker("run", "-d", "--name", name, "-p", "127.0.0.1::80", "bb")
    t0 = time.monotonic()
    wait(lambda: sid in services(), sid)
    lat.append((time.monotonic() - t0) * 1000)
    docker("rm", "-f", name)
    wait(lambda: sid not in services(), f"{sid} gone")
figures["run_to_visible_ms_median"] = round(statistics.median(lat), 1)
figures["run_to_visible_ms_max"] = round(max(lat), 1)
figures["runs"] = RUNS
d.terminate()
d.wait()

width = max(len(k) for k in figures)
for k, v in figures.items():
    print(f"{k:<{width}}  {v}")
print(json.dumps(figures))
