//! Evaluation: walks the tree with the inspect JSON as dot. Values from the document stay
//! slices of it ([`Val::Json`]) with the shape their Go field has in go-dockerclient's
//! `Container` (a map, a struct behind a pointer, a time, a slice), so that field access and
//! printing follow Go: map keys read as fields, a missing key prints `<no value>`, a nil
//! pointer `<nil>`, maps print sorted, times as `time.Time.String`.

use std::borrow::Cow;
use std::rc::Rc;

use super::json::{self, Kind};
use super::parse::{Arg, Cmd, Node, Pipe};
use super::{funcs, Fetch, Func, Template, MAX_ITERATIONS, MAX_OUTPUT};

/// The Go type a document value has, as far as access and printing differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// A struct (fields by Go name); `ptr` when Go holds it by pointer (`&{...}`, nil `<nil>`).
    Struct {
        ptr: bool,
    },
    /// A map (keys are data); `port_keys` when its key type is `docker.Port`, `strings` when
    /// its values are strings.
    Map {
        port_keys: bool,
        strings: bool,
    },
    /// A `time.Time` (JSON: RFC 3339 text).
    Time,
    /// A slice (`null` prints `[]`).
    Slice,
    Plain,
}

/// A value during evaluation.
#[derive(Debug, Clone)]
pub enum Val<'a> {
    /// A missing map key read as a field: prints `<no value>`.
    Missing,
    Nil,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(Cow<'a, str>),
    /// `httpGet`'s `[]byte`.
    Bytes(Rc<[u8]>),
    /// A `[]string` made by a helper.
    List(Rc<Vec<String>>),
    Json(&'a [u8], Shape),
}

/// go-dockerclient field names whose JSON name differs (Go, JSON).
const RENAMED: &[(&str, &str)] = &[
    ("ID", "Id"),
    ("HostIP", "HostIp"),
    ("CPUShares", "CpuShares"),
    ("CPUSet", "Cpuset"),
    ("CPUSetCPUs", "CpusetCpus"),
    ("CPUSetMEMs", "CpusetMems"),
    ("CPUQuota", "CpuQuota"),
    ("CPUPeriod", "CpuPeriod"),
    ("CPURealtimePeriod", "CpuRealtimePeriod"),
    ("CPURealtimeRuntime", "CpuRealtimeRuntime"),
    ("CPUCount", "CpuCount"),
    ("CPUPercent", "CpuPercent"),
    ("DNS", "Dns"),
    ("DNSOptions", "DnsOptions"),
    ("DNSSearch", "DnsSearch"),
    ("OOMScoreAdj", "OomScoreAdj"),
];

const STRING_MAPS: &[&str] = &[
    "Labels",
    "Sysctls",
    "StorageOpt",
    "Tmpfs",
    "Data",
    "DriverOpts",
    "Options",
];
const OTHER_MAPS: &[&str] = &["Networks", "Volumes", "VolumesRW", "PortMapping"];
const PORT_MAPS: &[&str] = &["Ports", "ExposedPorts", "PortBindings"];
const POINTERS: &[&str] = &[
    "Config",
    "NetworkSettings",
    "HostConfig",
    "Node",
    "Healthcheck",
    "GraphDriver",
    "RestartPolicy",
];
const TIMES: &[&str] = &["Created", "StartedAt", "FinishedAt", "Start", "End"];
const SLICES: &[&str] = &[
    "Args",
    "Env",
    "Cmd",
    "Entrypoint",
    "Mounts",
    "Binds",
    "Dns",
    "DnsOptions",
    "DnsSearch",
    "Aliases",
    "ExecIDs",
    "Links",
    "CapAdd",
    "CapDrop",
    "ExtraHosts",
    "VolumesFrom",
    "Shell",
    "OnBuild",
    "SecurityOpt",
    "SecurityOpts",
    "DNSNames",
    "Log",
    "Devices",
    "GroupAdd",
    "PortSpecs",
    "Test",
    "SecondaryIPAddresses",
    "SecondaryIPv6Addresses",
];

/// The shape of the field named `field` (its JSON name).
fn shape_of(field: &str) -> Shape {
    if STRING_MAPS.contains(&field) {
        Shape::Map {
            port_keys: false,
            strings: true,
        }
    } else if PORT_MAPS.contains(&field) {
        Shape::Map {
            port_keys: true,
            strings: false,
        }
    } else if OTHER_MAPS.contains(&field) {
        Shape::Map {
            port_keys: false,
            strings: false,
        }
    } else if POINTERS.contains(&field) {
        Shape::Struct { ptr: true }
    } else if TIMES.contains(&field) {
        Shape::Time
    } else if SLICES.contains(&field) {
        Shape::Slice
    } else {
        Shape::Plain
    }
}

pub type Result<T> = std::result::Result<T, String>;

struct State<'a, 'o, 'f> {
    /// `$`: the document.
    root: Val<'a>,
    /// Slots 1.. (slot 0 is `$`): empty, so not allocated, for a template without variables.
    vars: Vec<Val<'a>>,
    out: &'o mut String,
    /// Where this evaluation's output starts in `out`.
    start: usize,
    iterations: usize,
    fetch: Option<Fetch<'f>>,
    /// Recent field lookups: (object's address and length, field name) -> value.
    memo: [((usize, usize, &'a str), Val<'a>); MEMO],
    next_memo: usize,
}

const MEMO: usize = 4;

pub fn run(t: &Template, doc: &[u8], fetch: Option<Fetch>, out: &mut String) -> Result<()> {
    // Not scanned whole here: each field read steps over what comes before it.
    let doc = doc.trim_ascii_start();
    let root = match json::kind(doc) {
        Kind::Object => Val::Json(doc, Shape::Struct { ptr: true }),
        _ => return Err("the container's inspect document is not a JSON object".into()),
    };
    let start = out.len();
    let mut st = State {
        root: root.clone(),
        vars: vec![Val::Nil; t.slots.saturating_sub(1)],
        out,
        start,
        iterations: 0,
        fetch,
        memo: std::array::from_fn(|_| ((0, 0, ""), Val::Nil)),
        next_memo: 0,
    };
    let r = st.list(&t.nodes, &root);
    if r.is_err() {
        // Partial output is discarded, as Go's `Execute` leaves it to the caller.
        out.truncate(start);
    }
    r
}

impl<'a> State<'a, '_, '_> {
    fn write(&mut self, s: &str) -> Result<()> {
        if self.out.len() - self.start + s.len() > MAX_OUTPUT {
            return Err(format!("output longer than {MAX_OUTPUT} bytes"));
        }
        self.out.push_str(s);
        Ok(())
    }

    /// A value printed straight into the output, then the bound checked.
    fn write_val(&mut self, v: &Val) -> Result<()> {
        print(v, self.out);
        if self.out.len() - self.start > MAX_OUTPUT {
            return Err(format!("output longer than {MAX_OUTPUT} bytes"));
        }
        Ok(())
    }

    /// `.A.B` on `v`. The last few lookups are remembered: `.Config.Labels.x` and
    /// `.Config.Hostname` in one template step over the document's first members once.
    fn fields_of(&mut self, mut v: Val<'a>, fields: &'a [Box<str>]) -> Result<Val<'a>> {
        for f in fields {
            let key = match &v {
                Val::Json(raw, _) => Some((raw.as_ptr() as usize, raw.len(), &**f)),
                _ => None,
            };
            if let Some(hit) = key.and_then(|k| self.memo.iter().find(|(m, _)| *m == k)) {
                v = hit.1.clone();
                continue;
            }
            v = field(v, f)?;
            if let Some(k) = key {
                self.memo[self.next_memo % MEMO] = (k, v.clone());
                self.next_memo += 1;
            }
        }
        Ok(v)
    }

    fn var(&self, slot: usize) -> Val<'a> {
        match slot {
            0 => self.root.clone(),
            n => self.vars[n - 1].clone(),
        }
    }

    fn set(&mut self, slot: usize, v: Val<'a>) {
        match slot {
            0 => self.root = v,
            n => self.vars[n - 1] = v,
        }
    }

    fn list(&mut self, nodes: &'a [Node], dot: &Val<'a>) -> Result<()> {
        for n in nodes {
            match n {
                Node::Text(t) => self.write(t)?,
                Node::Action(p) => {
                    let v = self.pipe(p, dot, true)?;
                    if p.decl.is_empty() {
                        self.write_val(&v)?;
                    }
                }
                Node::If(b) => {
                    let v = self.pipe(&b.pipe, dot, true)?;
                    let branch = if truth(&v) { &b.list } else { &b.otherwise };
                    self.list(branch, dot)?;
                }
                Node::With(b) => {
                    let v = self.pipe(&b.pipe, dot, true)?;
                    if truth(&v) {
                        self.list(&b.list, &v)?;
                    } else {
                        self.list(&b.otherwise, dot)?;
                    }
                }
                Node::Range(b) => self.range(b, dot)?,
            }
        }
        Ok(())
    }

    fn range(&mut self, b: &'a super::parse::Branch, dot: &Val<'a>) -> Result<()> {
        let v = self.pipe(&b.pipe, dot, false)?;
        let mut items: Vec<(Val<'a>, Val<'a>)> = Vec::new();
        match &v {
            Val::Missing | Val::Nil => {}
            Val::List(l) => {
                for (i, s) in l.iter().enumerate() {
                    items.push((Val::Int(i as i64), Val::Str(Cow::Owned(s.clone()))));
                }
            }
            Val::Bytes(b) => {
                for (i, x) in b.iter().enumerate() {
                    items.push((Val::Int(i as i64), Val::Int(i64::from(*x))));
                }
            }
            Val::Json(raw, shape) => match (json::kind(raw), shape) {
                (Kind::Null, _) => {}
                (Kind::Array, _) => {
                    for (i, e) in json::elements(raw).enumerate() {
                        items.push((Val::Int(i as i64), element(e)));
                    }
                }
                (Kind::Object, Shape::Map { strings, .. }) => {
                    for (k, e) in sorted(raw) {
                        let key = Val::Str(key_text(k));
                        let val = if *strings {
                            Val::Json(e, Shape::Plain)
                        } else {
                            element(e)
                        };
                        items.push((key, val));
                    }
                }
                _ => return Err(format!("range can't iterate over {}", printed(&v))),
            },
            other => return Err(format!("range can't iterate over {}", printed(other))),
        }
        if items.is_empty() {
            return self.list(&b.otherwise, dot);
        }
        for (k, e) in items {
            self.iterations += 1;
            if self.iterations > MAX_ITERATIONS {
                return Err(format!("more than {MAX_ITERATIONS} range iterations"));
            }
            match b.pipe.decl.as_slice() {
                [one] => self.set(*one, e.clone()),
                [key, val] => {
                    self.set(*key, k);
                    self.set(*val, e.clone());
                }
                _ => {}
            }
            self.list(&b.list, &e)?;
        }
        Ok(())
    }

    /// Runs a pipeline; `assign` stores the result in its declared variables (not for
    /// `range`, whose variables take each element).
    fn pipe(&mut self, p: &'a Pipe, dot: &Val<'a>, assign: bool) -> Result<Val<'a>> {
        let mut prev = None;
        for c in &p.cmds {
            prev = Some(self.cmd(c, dot, prev)?);
        }
        let v = prev.unwrap_or(Val::Nil);
        if assign {
            for s in &p.decl {
                self.set(*s, v.clone());
            }
        }
        Ok(v)
    }

    fn cmd(&mut self, c: &'a Cmd, dot: &Val<'a>, piped: Option<Val<'a>>) -> Result<Val<'a>> {
        match c.args.first() {
            Some(Arg::Func(f)) => self.call(*f, &c.args[1..], dot, piped),
            Some(a) => {
                if c.args.len() > 1 || piped.is_some() {
                    return Err(format!(
                        "can't give argument to non-function {}",
                        describe(a)
                    ));
                }
                self.arg(a, dot)
            }
            None => Ok(Val::Nil),
        }
    }

    fn call(
        &mut self,
        f: Func,
        args: &'a [Arg],
        dot: &Val<'a>,
        piped: Option<Val<'a>>,
    ) -> Result<Val<'a>> {
        // `and`/`or` stop at the first argument that decides (Go 1.18).
        if matches!(f, Func::And | Func::Or) {
            let n = args.len() + usize::from(piped.is_some());
            if n == 0 {
                return Err(format!(
                    "wrong number of args for {}: want at least 1 got 0",
                    f.name()
                ));
            }
            let mut last = Val::Nil;
            for a in args {
                last = self.arg(a, dot)?;
                if truth(&last) == (f == Func::Or) {
                    return Ok(last);
                }
            }
            if let Some(p) = piped {
                last = p;
            }
            return Ok(last);
        }
        // Up to four arguments on the stack: a call allocates nothing of its own.
        let n = args.len() + usize::from(piped.is_some());
        let mut small: [Val<'a>; 4] = [Val::Nil, Val::Nil, Val::Nil, Val::Nil];
        let mut big = Vec::new();
        let vals: &mut [Val<'a>] = if n <= small.len() {
            &mut small[..n]
        } else {
            big.resize(n, Val::Nil);
            &mut big
        };
        for (slot, a) in vals.iter_mut().zip(args) {
            *slot = self.arg(a, dot)?;
        }
        if let Some(p) = piped {
            vals[n - 1] = p;
        }
        funcs::call(f, vals, self.fetch.as_deref_mut())
            .map_err(|e| format!("error calling {}: {e}", f.name()))
    }

    fn arg(&mut self, a: &'a Arg, dot: &Val<'a>) -> Result<Val<'a>> {
        match a {
            Arg::Dot(fields) => self.fields_of(dot.clone(), fields),
            Arg::Var(slot, fields) => self.fields_of(self.var(*slot), fields),
            Arg::Paren(p, fields) => {
                let v = self.pipe(p, dot, true)?;
                self.fields_of(v, fields)
            }
            Arg::Str(s) => Ok(Val::Str(Cow::Borrowed(s))),
            Arg::Int(i) => Ok(Val::Int(*i)),
            Arg::Float(f) => Ok(Val::Float(*f)),
            Arg::Bool(b) => Ok(Val::Bool(*b)),
            Arg::Nil => Err("nil is not a command".into()),
            // A function name as an operand is a call without arguments.
            Arg::Func(f) => self.call(*f, &[], dot, None),
        }
    }
}

fn describe(a: &Arg) -> String {
    match a {
        Arg::Dot(f) if f.is_empty() => ".".into(),
        Arg::Dot(f) => f.iter().map(|x| format!(".{x}")).collect(),
        Arg::Var(..) => "variable".into(),
        Arg::Paren(..) => "parenthesized pipeline".into(),
        Arg::Str(s) => format!("{s:?}"),
        Arg::Int(i) => i.to_string(),
        Arg::Float(f) => f.to_string(),
        Arg::Bool(b) => b.to_string(),
        Arg::Nil | Arg::Func(_) => "nil".into(),
    }
}

/// An element of a document array or map: objects in there are structs.
fn element(raw: &[u8]) -> Val<'_> {
    Val::Json(raw, Shape::Plain)
}

/// A map's members sorted by key, as Go ranges over and prints maps.
pub fn sorted(raw: &[u8]) -> Vec<(&[u8], &[u8])> {
    let mut m: Vec<_> = json::members(raw).collect();
    m.sort_by(|a, b| key_text(a.0).cmp(&key_text(b.0)));
    m
}

/// A raw (still escaped) object key as text.
fn key_text(k: &[u8]) -> Cow<'_, str> {
    if !k.contains(&b'\\') {
        if let Ok(s) = std::str::from_utf8(k) {
            return Cow::Borrowed(s);
        }
    }
    // `unescape_into` wants the quotes.
    let mut quoted = Vec::with_capacity(k.len() + 2);
    quoted.push(b'"');
    quoted.extend_from_slice(k);
    quoted.push(b'"');
    let mut s = String::new();
    let _ = json::unescape_into(&quoted, &mut s);
    Cow::Owned(s)
}

/// A document string's text: borrowed when it has no escapes.
pub fn text(raw: &[u8]) -> Cow<'_, str> {
    let inner = raw.get(1..raw.len().saturating_sub(1)).unwrap_or_default();
    if !inner.contains(&b'\\') {
        if let Ok(s) = std::str::from_utf8(inner) {
            return Cow::Borrowed(s);
        }
    }
    let mut s = String::new();
    let _ = json::unescape_into(raw, &mut s);
    Cow::Owned(s)
}

/// `.name` on `v`.
fn field<'a>(v: Val<'a>, name: &str) -> Result<Val<'a>> {
    let Val::Json(raw, shape) = v else {
        return match v {
            Val::Missing | Val::Nil => Err(format!("nil pointer evaluating .{name}")),
            other => Err(format!(
                "can't evaluate field {name} in type {}",
                funcs::type_name(&other)
            )),
        };
    };
    match (json::kind(raw), shape) {
        (Kind::Object, Shape::Map { strings, .. }) => Ok(match json::field(raw, name) {
            Some(e) if strings => Val::Json(e, Shape::Plain),
            Some(e) => element(e),
            None => Val::Missing,
        }),
        (Kind::Object, _) => {
            if !name.starts_with(|c: char| c.is_ascii_uppercase()) {
                return Err(format!("{name} is an unexported field of struct type"));
            }
            if RENAMED.iter().any(|(_, j)| *j == name) {
                return Err(format!(
                    "can't evaluate field {name} in type {}",
                    type_of(raw, shape)
                ));
            }
            let json_name = RENAMED
                .iter()
                .find(|(g, _)| *g == name)
                .map_or(name, |(_, j)| j);
            let shape = shape_of(json_name);
            Ok(match json::field(raw, json_name) {
                Some(e) => Val::Json(e, shape),
                // Not sent by this engine: Go would hold the field's zero value.
                None => match shape {
                    Shape::Struct { .. } | Shape::Plain => Val::Nil,
                    _ => Val::Json(b"null", shape),
                },
            })
        }
        (Kind::Null, _) => Err(format!("nil pointer evaluating .{name}")),
        _ => Err(format!(
            "can't evaluate field {name} in type {}",
            type_of(raw, shape)
        )),
    }
}

/// A Go-ish type name for error messages.
pub fn type_of(raw: &[u8], shape: Shape) -> &'static str {
    match (json::kind(raw), shape) {
        (_, Shape::Time) => "time.Time",
        (Kind::Object, Shape::Map { strings: true, .. }) => "map[string]string",
        (
            Kind::Object,
            Shape::Map {
                port_keys: true, ..
            },
        ) => "map[docker.Port]",
        (Kind::Object, Shape::Map { .. }) => "map",
        (Kind::Object, Shape::Struct { ptr: true }) => "*struct",
        (Kind::Object, _) => "struct",
        (Kind::Array, _) | (Kind::Null, Shape::Slice) => "[]string",
        (Kind::String, _) => "string",
        (Kind::Number, _) => "int",
        (Kind::Bool, _) => "bool",
        (Kind::Null, _) => "nil",
    }
}

/// Go's truth: false, 0, nil, and empty strings, slices and maps are false; structs are true.
pub fn truth(v: &Val) -> bool {
    match v {
        Val::Missing | Val::Nil => false,
        Val::Bool(b) => *b,
        Val::Int(i) => *i != 0,
        Val::Float(f) => *f != 0.0,
        Val::Str(s) => !s.is_empty(),
        Val::Bytes(b) => !b.is_empty(),
        Val::List(l) => !l.is_empty(),
        Val::Json(raw, shape) => match json::kind(raw) {
            Kind::Null => false,
            Kind::Bool => raw.starts_with(b"true"),
            Kind::String => raw.len() > 2,
            Kind::Number => std::str::from_utf8(raw)
                .ok()
                .and_then(|s| s.parse::<f64>().ok())
                .is_some_and(|f| f != 0.0),
            Kind::Array => json::elements(raw).next().is_some(),
            Kind::Object => match shape {
                Shape::Map { .. } => json::members(raw).next().is_some(),
                _ => true,
            },
        },
    }
}

/// `v` printed as Go's `fmt.Sprint` (`%v`) would.
pub fn print(v: &Val, out: &mut String) {
    match v {
        Val::Missing => out.push_str("<no value>"),
        Val::Nil => out.push_str("<nil>"),
        Val::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Val::Int(i) => out.push_str(&i.to_string()),
        Val::Float(f) => out.push_str(&funcs::float_text(*f)),
        Val::Str(s) => out.push_str(s),
        Val::Bytes(b) => {
            out.push('[');
            for (i, x) in b.iter().enumerate() {
                if i > 0 {
                    out.push(' ');
                }
                out.push_str(&x.to_string());
            }
            out.push(']');
        }
        Val::List(l) => {
            out.push('[');
            out.push_str(&l.join(" "));
            out.push(']');
        }
        Val::Json(raw, shape) => print_json(raw, *shape, out, 0),
    }
}

pub fn printed(v: &Val) -> String {
    let mut s = String::new();
    print(v, &mut s);
    s
}

fn print_json(raw: &[u8], shape: Shape, out: &mut String, depth: usize) {
    // Printing is bounded by the document's own nesting (the scanner caps it) and by output.
    if out.len() > MAX_OUTPUT {
        return;
    }
    match json::kind(raw) {
        Kind::String if shape == Shape::Time => {
            let t = text(raw);
            out.push_str(&go_time(&t).unwrap_or_else(|| t.into_owned()));
        }
        Kind::String => out.push_str(&text(raw)),
        Kind::Number | Kind::Bool => out.push_str(&String::from_utf8_lossy(raw)),
        Kind::Null => out.push_str(match shape {
            Shape::Map { .. } => "map[]",
            Shape::Slice => "[]",
            _ => "<nil>",
        }),
        Kind::Array => {
            out.push('[');
            for (i, e) in json::elements(raw).enumerate() {
                if i > 0 {
                    out.push(' ');
                }
                print_json(e, Shape::Plain, out, depth + 1);
            }
            out.push(']');
        }
        Kind::Object => match shape {
            Shape::Map { .. } => {
                out.push_str("map[");
                for (i, (k, e)) in sorted(raw).into_iter().enumerate() {
                    if i > 0 {
                        out.push(' ');
                    }
                    out.push_str(&key_text(k));
                    out.push(':');
                    print_json(e, Shape::Plain, out, depth + 1);
                }
                out.push(']');
            }
            _ => {
                if shape == (Shape::Struct { ptr: true }) && depth == 0 {
                    out.push('&');
                }
                out.push('{');
                for (i, (k, e)) in json::members(raw).enumerate() {
                    if i > 0 {
                        out.push(' ');
                    }
                    print_json(e, shape_of(&key_text(k)), out, depth + 1);
                }
                out.push('}');
            }
        },
    }
}

/// RFC 3339 text as Go's `time.Time.String()`: `2024-01-02 03:04:05.5 +0000 UTC`.
pub fn go_time(s: &str) -> Option<String> {
    let b = s.as_bytes();
    if b.len() < 20 || b.get(10) != Some(&b'T') {
        return None;
    }
    let date = s.get(..10)?;
    let clock = s.get(11..19)?;
    let mut rest = s.get(19..)?;
    let mut frac = "";
    if let Some(r) = rest.strip_prefix('.') {
        let n = r.bytes().take_while(u8::is_ascii_digit).count();
        frac = r.get(..n)?.trim_end_matches('0');
        rest = r.get(n..)?;
    }
    let zone = match rest {
        "Z" => "+0000 UTC".to_string(),
        z if z.len() == 6 && (z.starts_with('+') || z.starts_with('-')) => {
            let off = format!("{}{}{}", &z[..1], &z[1..3], &z[4..6]);
            format!("{off} {off}")
        }
        _ => return None,
    };
    let frac = if frac.is_empty() {
        String::new()
    } else {
        format!(".{frac}")
    };
    Some(format!("{date} {clock}{frac} {zone}"))
}
