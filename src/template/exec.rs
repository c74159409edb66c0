//! Evaluation: walks the tree with the inspect JSON as dot. Values from the document stay
//! slices of it ([`Val::Json`]) typed by go-dockerclient's Go type graph ([`schema`]), so that
//! field access and printing follow Go: fields by their Go names, a field the engine did not
//! send is its zero value (`""`, `0`, `[]`, `<nil>`), a field go-dockerclient does not have is
//! an error, map keys read as fields and a missing one is `<no value>`, structs print every
//! field in declaration order, maps sorted, times as `time.Time.String`.

use std::borrow::Cow;
use std::rc::Rc;

use super::json::{self, Kind};
use super::parse::{Arg, Cmd, Node, Pipe};
use super::schema::{self, Kind as Go};
use super::{funcs, Fetch, Func, Template, MAX_ITERATIONS, MAX_OUTPUT};

/// A type of [`schema::TYPES`].
pub type Ty = u8;

/// A value during evaluation.
#[derive(Debug, Clone)]
pub enum Val<'a> {
    /// A missing map key read as a field (Go's invalid value): prints `<no value>`.
    Missing,
    Nil,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(Cow<'a, str>),
    /// A `docker.Port` map key: a string with the methods `Port` and `Proto`.
    Port(Cow<'a, str>),
    /// `httpGet`'s `[]byte`.
    Bytes(Rc<[u8]>),
    /// A `[]string` made by a helper.
    List(Rc<Vec<String>>),
    /// A document value and its Go type; `null` (or absent) is the type's zero value.
    Json(&'a [u8], Ty),
}

/// The zero value's JSON.
pub const NULL: &[u8] = b"null";

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
    /// What the functions called so far handled, in bytes (a regular expression's text
    /// times its pattern): bounded by [`MAX_WORK`].
    work: usize,
    /// Recent field lookups: (object's address and length, its type, field name) -> value.
    memo: [(MemoKey<'a>, Val<'a>); MEMO],
    next_memo: usize,
}

const MEMO: usize = 4;

/// A remembered field lookup: the object's address and length, its type, the field's name.
type MemoKey<'a> = (usize, usize, Ty, &'a str);

/// The most work one rendering may do (see `State::work`): some tens of milliseconds.
pub const MAX_WORK: usize = 64 * 1024 * 1024;

pub fn run(t: &Template, doc: &[u8], fetch: Option<Fetch>, out: &mut String) -> Result<()> {
    // Not scanned whole here: each field read steps over what comes before it.
    let doc = doc.trim_ascii_start();
    let root = match json::kind(doc) {
        Kind::Object => Val::Json(doc, schema::ROOT),
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
        work: 0,
        memo: std::array::from_fn(|_| ((0, 0, 0, ""), Val::Nil)),
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
            // Not for zero values: every absent field shares the one `null`.
            let key = match &v {
                Val::Json(raw, ty) if !is_null(raw) => {
                    Some((raw.as_ptr() as usize, raw.len(), *ty, &**f))
                }
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
            Val::Json(raw, ty) => match schema::ty(deref(raw, *ty)).kind {
                Go::Slice(e) => {
                    for (i, x) in json::elements(raw).enumerate() {
                        items.push((Val::Int(i as i64), Val::Json(x, e)));
                    }
                }
                Go::Map(k, e) => {
                    let port = schema::ty(k).kind == Go::Port;
                    for (key, x) in sorted(raw) {
                        let key = key_text(key);
                        let key = if port { Val::Port(key) } else { Val::Str(key) };
                        items.push((key, Val::Json(x, e)));
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
                if matches!(a, Arg::Nil) {
                    return Err("nil is not a command".into());
                }
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
        // A regular expression costs its text times its pattern; anything else its bytes.
        let mut cost: usize = vals.iter().map(funcs::val_size).sum();
        if let (Func::MatchFirstElement | Func::MatchAllElements, [re, list]) = (f, &*vals) {
            cost = cost.saturating_add(funcs::val_size(list).saturating_mul(funcs::val_size(re)));
        }
        self.work = self.work.saturating_add(cost);
        if self.work > MAX_WORK {
            return Err(format!("more than {} MiB of work", MAX_WORK >> 20));
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
            Arg::Nil => Ok(Val::Nil),
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

/// A map's members sorted by key, as Go ranges over and prints maps.
pub fn sorted(raw: &[u8]) -> Vec<(&[u8], &[u8])> {
    let mut m: Vec<_> = json::members(raw).collect();
    m.sort_by(|a, b| key_text(a.0).cmp(&key_text(b.0)));
    m
}

/// A raw (still escaped) object key as text.
pub fn key_text(k: &[u8]) -> Cow<'_, str> {
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

/// A document string's text: borrowed when it has no escapes; empty for anything else.
pub fn text(raw: &[u8]) -> Cow<'_, str> {
    if json::kind(raw) != Kind::String {
        return Cow::Borrowed("");
    }
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

pub fn is_null(raw: &[u8]) -> bool {
    json::kind(raw) == Kind::Null
}

/// Through non-nil pointers to what they point at.
pub fn deref(raw: &[u8], mut ty: Ty) -> Ty {
    while let Go::Ptr(to) = schema::ty(ty).kind {
        if is_null(raw) {
            break;
        }
        ty = to;
    }
    ty
}

/// `.name` on `v`: a struct field, a map key, or a method of go-dockerclient's types.
fn field<'a>(v: Val<'a>, name: &str) -> Result<Val<'a>> {
    let (raw, ty) = match v {
        Val::Json(raw, ty) => (raw, deref(raw, ty)),
        // Through a missing map key: still no value (Go keeps the invalid value).
        Val::Missing => return Ok(Val::Missing),
        Val::Port(p) => return port_method(&p, name),
        Val::Nil => return Err(format!("nil pointer evaluating .{name}")),
        other => {
            return Err(format!(
                "can't evaluate field {name} in type {}",
                funcs::type_name(&other)
            ))
        }
    };
    let t = schema::ty(ty);
    match t.kind {
        Go::Ptr(_) => Err(format!("nil pointer evaluating {}.{name}", t.name)),
        Go::Struct(sid) => {
            let Some(f) = schema::fields(sid).iter().find(|f| f.go == name) else {
                return method(raw, ty, name).unwrap_or_else(|| {
                    Err(format!("can't evaluate field {name} in type {}", t.name))
                });
            };
            let found = (!f.json.is_empty() && json::kind(raw) == Kind::Object)
                .then(|| json::field(raw, f.json))
                .flatten();
            Ok(Val::Json(found.unwrap_or(NULL), f.ty))
        }
        Go::Map(_, val) => Ok(match json::field(raw, name).filter(|_| !is_null(raw)) {
            Some(e) => Val::Json(e, val),
            None => Val::Missing,
        }),
        _ => method(raw, ty, name)
            .unwrap_or_else(|| Err(format!("can't evaluate field {name} in type {}", t.name))),
    }
}

/// `docker.Port`'s methods.
fn port_method<'a>(p: &str, name: &str) -> Result<Val<'a>> {
    let (num, proto) = p.split_once('/').unwrap_or((p, "tcp"));
    match name {
        "Port" => Ok(Val::Str(Cow::Owned(num.to_string()))),
        "Proto" => Ok(Val::Str(Cow::Owned(proto.to_string()))),
        _ => Err(format!("can't evaluate field {name} in type docker.Port")),
    }
}

/// The methods without arguments a template may call on a document value: `time.Time`'s
/// `Unix`, `Year`, `IsZero`, `UTC`; `docker.Port`'s; `docker.State`'s `StateString`.
fn method<'a>(raw: &'a [u8], ty: Ty, name: &str) -> Option<Result<Val<'a>>> {
    let t = schema::ty(ty);
    match (t.kind, name) {
        (Go::Port, _) => Some(port_method(&text(raw), name)),
        (Go::Time, "Unix" | "Year" | "IsZero" | "UTC") => {
            let secs = unix_seconds(&text(raw)).unwrap_or(ZERO_TIME);
            Some(Ok(match name {
                "Unix" => Val::Int(secs),
                "Year" => Val::Int(civil(secs).0),
                "IsZero" => Val::Bool(secs == ZERO_TIME),
                _ => Val::Json(raw, ty),
            }))
        }
        (Go::Struct(_), "StateString") if t.name == "docker.State" => {
            let flag = |k: &str| json::field(raw, k).is_some_and(|v| v.starts_with(b"true"));
            let started = json::field(raw, "StartedAt").map(text).unwrap_or_default();
            let never = unix_seconds(&started).is_none_or(|s| s == ZERO_TIME);
            Some(Ok(Val::Str(Cow::Borrowed(if flag("Running") {
                if flag("Paused") {
                    "paused"
                } else if flag("Restarting") {
                    "restarting"
                } else {
                    "running"
                }
            } else if flag("Dead") {
                "dead"
            } else if never {
                "created"
            } else {
                "exited"
            }))))
        }
        _ => None,
    }
}

/// A Go-ish type name for messages and `%T`.
pub fn type_of(ty: Ty) -> &'static str {
    schema::ty(ty).name
}

/// Go's truth: false, 0, nil, and empty strings, slices and maps are false; structs are true.
pub fn truth(v: &Val) -> bool {
    match v {
        Val::Missing | Val::Nil => false,
        Val::Bool(b) => *b,
        Val::Int(i) => *i != 0,
        Val::Float(f) => *f != 0.0,
        Val::Str(s) | Val::Port(s) => !s.is_empty(),
        Val::Bytes(b) => !b.is_empty(),
        Val::List(l) => !l.is_empty(),
        Val::Json(raw, ty) => match schema::ty(*ty).kind {
            Go::Struct(_) | Go::Time => true,
            Go::Ptr(_) => !is_null(raw),
            Go::Bool => raw.starts_with(b"true"),
            Go::Int | Go::Duration => !is_null(raw) && number(raw) != 0,
            Go::Str | Go::Port => !text(raw).is_empty(),
            Go::Slice(_) => json::elements(raw).next().is_some(),
            Go::Map(..) => json::members(raw).next().is_some(),
        },
    }
}

/// A JSON integer (0 for anything else).
pub fn number(raw: &[u8]) -> i64 {
    std::str::from_utf8(raw)
        .ok()
        .and_then(|s| {
            s.parse::<i64>()
                .ok()
                .or_else(|| s.parse::<f64>().ok().map(|f| f as i64))
        })
        .unwrap_or(0)
}

/// How a value is printed: by a template action (`{{.X}}`: a pointer is followed, a missing
/// key is `<no value>`) or by `fmt` (`print`, `printf "%v"`: `&{...}`, `<nil>`).
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Action,
    Fmt,
}

/// `v` printed as a template action prints it.
pub fn print(v: &Val, out: &mut String) {
    print_as(v, out, Mode::Action);
}

pub fn print_as(v: &Val, out: &mut String, mode: Mode) {
    match v {
        Val::Missing if mode == Mode::Action => out.push_str("<no value>"),
        Val::Missing | Val::Nil => out.push_str("<nil>"),
        Val::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Val::Int(i) => out.push_str(&i.to_string()),
        Val::Float(f) => out.push_str(&super::fmt::float_text(*f)),
        Val::Str(s) | Val::Port(s) => out.push_str(s),
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
        // `fmt` shows a pointer at the top as `&{...}`; an action follows it.
        Val::Json(raw, ty) => {
            super::fmt::print_value(raw, *ty, out, usize::from(mode == Mode::Action))
        }
    }
}

pub fn printed(v: &Val) -> String {
    let mut s = String::new();
    print(v, &mut s);
    s
}

/// A `time.Time` in the document (`null`: Go's zero time) as `time.Time.String()` prints it.
pub fn time_text(raw: &[u8]) -> String {
    let t = text(raw);
    let shown = if t.is_empty() { None } else { go_time(&t) };
    shown.unwrap_or_else(|| "0001-01-01 00:00:00 +0000 UTC".into())
}

/// Go's `time.Duration.String()` for nanoseconds.
pub fn duration(ns: i64) -> String {
    if ns == 0 {
        return "0s".into();
    }
    let neg = ns < 0;
    let u = ns.unsigned_abs();
    let body = if u < 1_000 {
        format!("{u}ns")
    } else if u < 1_000_000 {
        frac(u, 1_000, "µs")
    } else if u < 1_000_000_000 {
        frac(u, 1_000_000, "ms")
    } else {
        let (h, rest) = (u / 3_600_000_000_000, u % 3_600_000_000_000);
        let (m, rest) = (rest / 60_000_000_000, rest % 60_000_000_000);
        let s = frac(rest, 1_000_000_000, "s");
        match (h, m) {
            (0, 0) => s,
            (0, m) => format!("{m}m{s}"),
            (h, m) => format!("{h}h{m}m{s}"),
        }
    };
    if neg {
        format!("-{body}")
    } else {
        body
    }
}

/// `n / unit` with its fraction, trailing zeros dropped, then `suffix`.
fn frac(n: u64, unit: u64, suffix: &str) -> String {
    let (whole, part) = (n / unit, n % unit);
    if part == 0 {
        return format!("{whole}{suffix}");
    }
    let width = unit.to_string().len() - 1;
    let digits = format!("{part:0width$}");
    format!("{whole}.{}{suffix}", digits.trim_end_matches('0'))
}

/// Go's zero `time.Time` in Unix seconds (0001-01-01).
const ZERO_TIME: i64 = -62_135_596_800;

pub use crate::docker::container::unix_seconds;

/// The year of Unix seconds `secs` (and the rest of the date, unused).
fn civil(secs: i64) -> (i64, i64, i64) {
    let z = secs.div_euclid(86_400) + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
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
        z if z.len() == 6 && z.is_ascii() && (z.starts_with('+') || z.starts_with('-')) => {
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
