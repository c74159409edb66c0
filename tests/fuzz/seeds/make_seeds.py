#!/usr/bin/env python3
"""Writes the seed inputs of the fuzz targets (tests/fuzz/seeds/<target>/) in each target's
input format (see the comment at the top of tests/fuzz/fuzz_targets/<target>.rs), from the
captured engine data in tests/data and a few hand-made responses. Run from anywhere:
    python3 tests/fuzz/seeds/make_seeds.py
The seeds are committed; tests/fuzz.sh copies them into the (ignored) working corpus."""

import json
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.join(HERE, "..", "..", "data")
# The engines captured in tests/data (28.5: tests/docker28.sh capture).
ENGINES = ("20.10", "28.5")
EVENTS_RAWS = {v: open(os.path.join(DATA, "events-engine-%s.raw" % v), "rb").read() for v in ENGINES}
INSPECTS = {v: open(os.path.join(DATA, "inspect-engine-%s.json" % v), "rb").read() for v in ENGINES}
EVENTS_RAW = EVENTS_RAWS["20.10"]
INSPECT = INSPECTS["20.10"]


def write(target, name, data):
    d = os.path.join(HERE, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def cut(spec=b""):
    """The `n, spec` prefix of chunked/events inputs."""
    return bytes([len(spec)]) + spec


RESPONSES = {
    "content-length": b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 13\r\n\r\n{\"ok\": true}\n",
    "chunked-ext-trailer": b"HTTP/1.1 200 OK\r\nDate: Sat, 21 Nov 2026 15:04:05 GMT\r\nTransfer-Encoding: chunked\r\n\r\n"
    b"5\r\nhello\r\n1;ext=1\r\n \r\n6 ; a=\"b\"\r\nworld\n\r\n0\r\nX-Trailer: a\r\nY: b\r\n\r\n",
    "continue-then-200": b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
    "http10-close": b"HTTP/1.0 200 OK\r\nServer: x\r\n\r\nbody until the connection closes",
    "no-content-keepalive": b"HTTP/1.1 204 No Content\r\n\r\nHTTP/1.1 304 Not Modified\r\nConnection: keep-alive\r\n\r\n"
    b"HTTP/1.1 404 Not Found\r\nContent-Length: 26\r\n\r\n{\"message\":\"No such x\"}\r\n",
    "bare-lf": b"HTTP/1.1 200 OK\nTransfer-Encoding: gzip, chunked\nConnection: close\n\n3\nabc\n0\n\n",
    "te-and-length": b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n"
    b"4\r\nerr!\r\n0\r\n\r\n",
}


def chunked():
    for v, raw in EVENTS_RAWS.items():
        write("chunked", "events-engine-" + v, cut() + raw)
        write("chunked", "events-engine-%s-cut" % v, cut(b"\x07\x00\x31\x80") + raw)
    for name, r in RESPONSES.items():
        write("chunked", name, cut() + r)
        write("chunked", name + "-cut", cut(b"\x01\x02\x03") + r)


def head_input(flags, status, headers, body=b"", spec=b"", date=(0, 0, 0, 0), raw_date=b""):
    """flags, n, spec, date bytes (u16 year, month, day, u16 seconds), raw date, lines."""
    y, mo, d, s = date
    out = bytes([flags, len(spec)]) + spec + struct.pack(">HBBH", y, mo, d, s)
    out += bytes([len(raw_date)]) + raw_date
    lines = [status] + [bytes([i]) + v for i, v in headers]
    return out + b"\n".join(lines) + b"\n\n" + body


# Header name indexes of fuzz_targets/head.rs NAMES.
CL, TE, CONN, DATE, SERVER, LONG = 0, 1, 2, 3, 7, 10


def head():
    write("head", "content-length", head_input(0, b"200 OK", [(CL, b"5"), (SERVER, b"Docker")], b"hello"))
    write("head", "chunked", head_input(0, b"200 OK", [(TE, b"chunked"), (DATE, b"Sat, 21 Nov 2026 15:04:05 GMT")],
                                        b"5;e=1\r\nhello\r\n0\r\nT: x\r\n\r\n", date=(56, 10, 20, 54279),
                                        raw_date=b"Sun, 06 Nov 1994 08:49:37 GMT"))
    write("head", "continue", head_input(0, b"100 Continue", [], b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"))
    write("head", "http10-close", head_input(2, b"200 OK", [(CONN, b"close")], b"until close"))
    write("head", "http10-keepalive", head_input(2, b"200 OK", [(CONN, b"keep-alive"), (CL, b"2")], b"ok"))
    write("head", "bare-lf-204", head_input(1, b"204 No Content", [(CONN, b"Keep-Alive, close")]))
    write("head", "long-header", head_input(0, b"200 OK", [(LONG, b"\xc8"), (CL, b"0")], spec=b"\x90\x10"))
    write("head", "two-lengths", head_input(0, b"404 Not Found", [(CL, b"1"), (4, b"1")], b"x"))
    write("head", "date-edge", head_input(0, b"200 OK", [(DATE, b"Tue, 29 Feb 2028 23:59:59 GMT")],
                                          raw_date=b"Thu, 01 Jan 1970 00:00:00 GMT"))


def swarm_seeds():
    """The swarm target: settings (2 bytes), then JSON (flags bit 0 clear) or fields (set)."""
    services = json.loads(open(os.path.join(DATA, "services-swarm-28.5.json"), "rb").read())
    write("swarm", "services-28.5", bytes([0x00, 0]) + json.dumps(services).encode())
    write("swarm", "services-28.5-ip-explicit", bytes([0x16, 1]) + json.dumps(services).encode())
    for s in services:
        write("swarm", "service-" + s["Spec"]["Name"], bytes([0x08, 0]) + json.dumps(s).encode())
    for name in ("info-swarm-28.5.json", "info-noswarm-28.5.json", "nodes-swarm-28.5.json"):
        write("swarm", name.rsplit(".", 1)[0], bytes([0, 0]) + open(os.path.join(DATA, name), "rb").read())
    # Fields: kind in the low 2 bits (0 name, 1 label, 2 port, 3 replicas), a table entry above.
    def port(proto, mode, target, published):
        sub = proto + 6 * mode
        return bytes([2 | sub << 2]) + b"%d,%d" % (target, published)
    fields = [
        bytes([0]) + b"x",
        bytes([1 | 5 << 2]) + b"\x01www",          # SERVICE_80_NAME=www
        bytes([1 | 3 << 2]) + b"\x01a,b",          # SERVICE_TAGS=a,b
        port(0, 0, 80, 8080), port(1, 0, 53, 5353), port(0, 1, 81, 8081), port(2, 2, 1, 0),
        bytes([3]) + b"\x01",
    ]
    write("swarm", "built", bytes([0x01, 0]) + b"\x00".join(fields))
    write("swarm", "built-zero", bytes([0x1f, 2]) + b"\x00".join(fields[:4] + [bytes([3]) + b"\x04"]))
    # The swarm event stream goes to the events and chunked targets.
    raw = open(os.path.join(DATA, "events-swarm-28.5.raw"), "rb").read()
    write("events", "swarm-28.5", bytes([0]) + cut() + raw)
    write("chunked", "events-swarm-28.5", cut() + raw)


def events():
    for v, raw in EVENTS_RAWS.items():
        write("events", "engine-" + v, bytes([0]) + cut() + raw)
        write("events", "engine-%s-cut" % v, bytes([0]) + cut(b"\x05\x00\x40\x81") + raw)
    # 28.5's lines (kill with its signal, pause, unpause, "health_status: healthy") in a body
    # the harness frames with Content-Length (framing 2), and chunked in odd sizes (0).
    lines = b"".join(l for l in EVENTS_RAWS["28.5"].split(b"\r\n") if l.startswith(b"{"))
    write("events", "synth-28.5-length", bytes([1 | 2 << 1]) + cut(b"\x23") + bytes([0]) + lines)
    write("events", "synth-28.5-chunked", bytes([1]) + cut(b"\x02\x40") + bytes([3, 1, 2, 5]) + lines)
    body_lines = [l for l in EVENTS_RAW.split(b"\r\n") if l.startswith(b"{")]
    v152 = (b'{"Type":"container","Action":"start","Actor":{"ID":"ede54ee1afda366ab42f824e8a5ffd195155d853ceaec74a927f249ea270c743",'
            b'"Attributes":{"image":"alpine:latest","name":"my-container"}},"scope":"local","time":1461943101,"timeNano":1461943101381709551}\n')
    podman = b'{"Type":"container","Action":"health_status","Actor":{"ID":"abc","Attributes":{"health_status":"unhealthy"}}}\n'
    old = b'{"status":"destroy","id":"abc","from":"img","time":1}\n\n  \n'
    # Synthesized: flags bit 0, framing in bits 1-2, then n, spec, sizes count, sizes, body.
    for framing in range(4):
        flags = 1 | framing << 1
        body = b"".join(body_lines[:3]) + v152 + podman + old
        write("events", "synth-%d" % framing, bytes([flags]) + cut(b"\x11") + bytes([2, 1, 3]) + body)
    # A line past MAX_EVENT: 0xff 0xfe hi lo byte repeats the byte (hi*256+lo)*16 times.
    big = b'{"Type":"container","x":"' + b"\xff\xfe\x40\x10a" + b'"}\n'
    write("events", "synth-huge-line", bytes([3]) + cut(b"\xff") + bytes([0]) + big)
    write("events", "synth-huge-tail", bytes([1]) + cut(b"\xc0") + bytes([0]) + v152 + b"\xff\xfe\x40\x10 ")


def service_settings(b0=0x10, b1=0, b2=0):
    return bytes([b0, b1, b2, 0])


def service():
    for v, inspect in INSPECTS.items():
        write("service", "inspect-engine-" + v, service_settings() + inspect)
    c = json.loads(INSPECT)
    c["Config"]["Env"] = ["SERVICE_80_NAME=http", "SERVICE_TAGS=a,b\\,c", "SERVICE_443_IGNORE=1"]
    c["NetworkSettings"]["Ports"]["443/tcp"] = [{"HostIp": "::", "HostPort": "4443"}]
    write("service", "inspect-metadata", service_settings(0x10 | 0x40 | 0x80) + json.dumps(c).encode())
    small = {
        "Id": "abc", "Name": "/side",
        "Config": {"Image": "img", "ExposedPorts": {"9000/tcp": {}, "53/udp": {}}},
        "HostConfig": {"NetworkMode": "container:main"},
        "NetworkSettings": {"Ports": None, "Networks": None},
    }
    write("service", "container-network", service_settings(0x21) + json.dumps(small).encode())
    # Built form: fields separated by 0; low 3 bits kind, high 5 bits table pick.
    env = lambda pick, text: bytes([pick << 3 | 0]) + text
    label = lambda pick, k, v: bytes([pick << 3 | 1]) + k + b"\x01" + v
    exposed = lambda pick: bytes([pick << 3 | 2])
    binding = lambda pick, spec: bytes([pick << 3 | 3]) + spec
    network = lambda pick, spec: bytes([pick << 3 | 4]) + spec
    mode = lambda pick: bytes([pick << 3 | 5])
    fields = [
        exposed(0), exposed(1), exposed(2), binding(0, b"\x02\x00\x00\x01\x04"),
        binding(2, b"\x02\x01\x09"), env(2, b"web"), env(4, b"x,,y\\,z"), env(7, b"http"),
        env(11, b"backend"), label(15, b"", b"us2"), label(0, b"ipl", b"10.0.0.5/24"),
        network(1, b"\x02\x03"), network(0, b"\x01\x00"), mode(5),
    ]
    write("service", "built-three-ports", service_settings(0x10) + b"\x00".join(fields))
    write("service", "built-internal-label", service_settings(0x1d, 0x00, 0x00) + b"\x00".join(fields))
    odd = [
        exposed(0), exposed(7), exposed(6), exposed(3), exposed(4), exposed(5),
        env(1, b""), env(13, b"v"), env(10, b"big"), env(16, b"under"), env(6, b"=empty"),
        label(1, b"\x02\xffk", b"long"), env(18, "ünïcödé".encode()), env(0, b"NOEQUALS"),
        env(4, b"\\"), env(8, b""), label(0, b"", b""), label(1, b"", b"x"),
        bytes([7]) + b"", bytes([2 << 3 | 7]) + b"",
    ]
    write("service", "built-odd-metadata", service_settings(0x12) + b"\x00".join(odd))


TEMPLATES = [
    "{{strSlice .ID 0 12}}",
    "env-{{.Config.Labels.env}},team-{{.Config.Labels.team}}",
    '{{.Config.Image | split ":" | sIndex 0}}',
    "{{range $p, $b := .NetworkSettings.Ports}}{{$p}}->{{(index $b 0).HostPort}}{{end}}",
    '{{if eq .Config.Labels.env "prod"}}production{{else if .State.Running}}up{{else}}other{{end}}',
    '{{with $j := httpGet "http://127.0.0.1:1/all"}}{{jsonParse $j "Config::Env::[1]"}}{{end}}',
    '{{matchAllElements "^SERVICE_(\\d+)_[A-Z]+$" .Config.Env | join ";"}}',
    '{{printf "%-8s|%05d|%q" .Name .State.Pid .Config.Hostname}}',
    "{{- /* c */ -}} {{$x := 1}}{{$x = 2}}{{len .Config.Env}}{{slice .Name 1 3}}",
    '{{replace -1 "." "-" (index .Config.Labels "a.b")}}{{urlquery "a b"}}{{.Created}}',
    "{{.Node.Name}}{{.Id}}",
    "{{.Name",
]


def template():
    for i, t in enumerate(TEMPLATES):
        write("template", "t%02d" % i, bytes([i % 4]) + t.encode())
    # A document of its own after the source.
    doc = json.loads(INSPECT)
    write("template", "inspect-20.10", bytes([3]) + b"{{range $k, $v := .Config.Labels}}{{$k}}={{$v}},{{end}}\x00" + json.dumps(doc).encode())
    write("template", "inspect-28.5", bytes([1]) + b"{{.NetworkSettings.Networks}}\x00" + INSPECTS["28.5"])


if __name__ == "__main__":
    chunked()
    head()
    events()
    service()
    template()
    swarm_seeds()
