//! Go's `fmt` as templates meet it: `printf`'s verbs, flags, width, precision and argument
//! indexes, applied element-wise to slices, maps and structs as Go applies them, and the `%v`
//! printing every action uses (`print_value`), over the document's Go types.

use std::borrow::Cow;

use super::exec::{is_null, number, print_as, text, Mode, Val, NULL};
use super::funcs::{int, type_name};
use super::json;
use super::schema::{self, Kind as Go};

/// A float as Go's `%v` prints it (`1.5`, `1e+21`).
pub fn float_text(f: f64) -> String {
    if f.is_finite() && f.fract() == 0.0 && f.abs() < 1e21 {
        format!("{f:.0}")
    } else if f.is_finite() && (f.abs() >= 1e21 || (f != 0.0 && f.abs() < 1e-4)) {
        go_exponent(format!("{f:e}"))
    } else {
        f.to_string()
    }
}

/// Rust's `1.5e3` as Go writes it: `1.5e+03`.
fn go_exponent(s: String) -> String {
    match s.split_once('e') {
        Some((m, e)) => match e.strip_prefix('-') {
            Some(e) => format!("{m}e-{e:0>2}"),
            None => format!("{m}e+{e:0>2}"),
        },
        None => s,
    }
}

/// One `%` directive of a format.
#[derive(Default)]
struct Spec {
    minus: bool,
    zero: bool,
    plus: bool,
    sharp: bool,
    width: Option<usize>,
    prec: Option<usize>,
    verb: char,
}

/// Go's `fmt.Sprintf`: flags `- + 0 #`, width and precision (digits or `*`), explicit argument
/// indexes (`%[2]s`), and the verbs `v s q d x X o b c U t f F e g T %`, applied to each
/// element of a slice, map or struct as Go applies them. Missing and extra operands, and a
/// verb that does not fit its operand, print as Go prints them.
pub fn printf(fmt: &str, args: &[Val]) -> String {
    let mut out = String::new();
    let mut next = 0;
    let mut reordered = false;
    let mut chars = fmt.chars().peekable();
    // `[n]` before a width, precision or verb: the operand to use next.
    let index = |chars: &mut std::iter::Peekable<std::str::Chars>, next: &mut usize| -> bool {
        if chars.peek() != Some(&'[') {
            return false;
        }
        chars.next();
        let mut n = 0usize;
        while let Some(d) = chars.peek().and_then(|c| c.to_digit(10)) {
            n = n.saturating_mul(10).saturating_add(d as usize);
            chars.next();
        }
        if chars.next() == Some(']') && n >= 1 {
            *next = n - 1;
        }
        true
    };
    // Digits, or `*` taking an int operand.
    let number = |chars: &mut std::iter::Peekable<std::str::Chars>, next: &mut usize| {
        if chars.peek() == Some(&'*') {
            chars.next();
            let v = args.get(*next).and_then(|a| int(a).ok());
            *next += 1;
            return v.and_then(|v| usize::try_from(v).ok()).map(|v| v.min(4096));
        }
        let mut n: Option<usize> = None;
        while let Some(d) = chars.peek().and_then(|c| c.to_digit(10)) {
            n = Some(
                n.unwrap_or(0)
                    .saturating_mul(10)
                    .saturating_add(d as usize)
                    .min(4096),
            );
            chars.next();
        }
        n
    };
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let mut sp = Spec::default();
        while let Some(&f) = chars.peek() {
            match f {
                '-' => sp.minus = true,
                '0' => sp.zero = true,
                '+' => sp.plus = true,
                '#' => sp.sharp = true,
                ' ' => {}
                _ => break,
            }
            chars.next();
        }
        reordered |= index(&mut chars, &mut next);
        sp.width = number(&mut chars, &mut next);
        if chars.peek() == Some(&'.') {
            chars.next();
            reordered |= index(&mut chars, &mut next);
            sp.prec = Some(number(&mut chars, &mut next).unwrap_or(0));
        }
        reordered |= index(&mut chars, &mut next);
        let Some(verb) = chars.next() else {
            out.push_str("%!(NOVERB)");
            break;
        };
        if verb == '%' {
            out.push('%');
            continue;
        }
        sp.verb = verb;
        let Some(arg) = args.get(next) else {
            out.push_str(&format!("%!{verb}(MISSING)"));
            continue;
        };
        next += 1;
        if verb == 'T' {
            let t = match arg {
                Val::Missing | Val::Nil => "<nil>",
                other => type_name(other),
            };
            pad(&mut out, t.to_string(), &sp);
            continue;
        }
        fmt_val(arg, &sp, &mut out);
        if out.len() > super::MAX_OUTPUT {
            break;
        }
    }
    if !reordered && next < args.len() {
        out.push_str("%!(EXTRA ");
        for (i, a) in args[next..].iter().enumerate() {
            if i > 0 {
                out.push_str(", ");
            }
            out.push_str(&format!("{}={}", type_name(a), fmt_v(a)));
        }
        out.push(')');
    }
    out
}

/// A value with no parts, as `fmt` sees it.
enum Leaf<'v> {
    Str(Cow<'v, str>),
    Int(i64),
    Bool(bool),
    Float(f64),
    /// A nil of the named type (`None`: untyped).
    Nil(Option<&'static str>),
    /// A `fmt.Stringer` (`time.Time`, `time.Duration`): its text for `%v %s %q`.
    Text(String),
}

fn fmt_val(v: &Val, sp: &Spec, out: &mut String) {
    match v {
        Val::Missing | Val::Nil => leaf(Leaf::Nil(None), "", sp, out),
        Val::Bool(b) => leaf(Leaf::Bool(*b), "bool", sp, out),
        Val::Int(i) => leaf(Leaf::Int(*i), "int", sp, out),
        Val::Float(f) => leaf(Leaf::Float(*f), "float64", sp, out),
        Val::Str(s) => leaf(Leaf::Str(Cow::Borrowed(s)), "string", sp, out),
        Val::Port(s) => leaf(Leaf::Str(Cow::Borrowed(s)), "docker.Port", sp, out),
        Val::Bytes(b) => match sp.verb {
            's' | 'q' | 'x' | 'X' => {
                leaf(Leaf::Str(String::from_utf8_lossy(b)), "[]uint8", sp, out)
            }
            _ => {
                out.push('[');
                for (i, x) in b.iter().enumerate() {
                    if i > 0 {
                        out.push(' ');
                    }
                    leaf(Leaf::Int(i64::from(*x)), "uint8", sp, out);
                }
                out.push(']');
            }
        },
        Val::List(l) => {
            out.push('[');
            for (i, x) in l.iter().enumerate() {
                if i > 0 {
                    out.push(' ');
                }
                leaf(Leaf::Str(Cow::Borrowed(x)), "string", sp, out);
            }
            out.push(']');
        }
        Val::Json(raw, ty) => fmt_json(raw, *ty, sp, out, 0),
    }
}

/// A document value as `%v` prints it (`depth` 0: `fmt`'s top level, where a pointer shows as
/// `&{...}`).
pub fn print_value(raw: &[u8], ty: u8, out: &mut String, depth: usize) {
    let sp = Spec {
        verb: 'v',
        ..Spec::default()
    };
    fmt_json(raw, ty, &sp, out, depth);
}

fn fmt_json(raw: &[u8], ty: u8, sp: &Spec, out: &mut String, depth: usize) {
    if out.len() > super::MAX_OUTPUT {
        return;
    }
    let t = schema::ty(ty);
    let null = is_null(raw);
    match t.kind {
        Go::Str | Go::Port => leaf(Leaf::Str(text(raw)), t.name, sp, out),
        Go::Int => leaf(Leaf::Int(number(raw)), t.name, sp, out),
        Go::Bool => leaf(Leaf::Bool(raw.starts_with(b"true")), t.name, sp, out),
        Go::Duration if matches!(sp.verb, 'v' | 's' | 'q') => leaf(
            Leaf::Text(super::exec::duration(number(raw))),
            t.name,
            sp,
            out,
        ),
        Go::Duration => leaf(Leaf::Int(number(raw)), t.name, sp, out),
        Go::Time => leaf(Leaf::Text(super::exec::time_text(raw)), t.name, sp, out),
        Go::Ptr(_) if null => leaf(Leaf::Nil(Some(t.name)), t.name, sp, out),
        Go::Ptr(to) => {
            if depth == 0 {
                out.push('&');
            }
            fmt_json(raw, to, sp, out, depth + 1);
        }
        Go::Slice(e) => {
            out.push('[');
            for (i, x) in json::elements(raw).enumerate() {
                if i > 0 {
                    out.push(' ');
                }
                fmt_json(x, e, sp, out, depth + 1);
            }
            out.push(']');
        }
        Go::Map(k, v) => {
            out.push_str("map[");
            if !null {
                for (i, (key, x)) in super::exec::sorted(raw).into_iter().enumerate() {
                    if i > 0 {
                        out.push(' ');
                    }
                    let key = super::exec::key_text(key);
                    leaf(Leaf::Str(key), schema::ty(k).name, sp, out);
                    out.push(':');
                    fmt_json(x, v, sp, out, depth + 1);
                }
            }
            out.push(']');
        }
        Go::Struct(sid) => {
            out.push('{');
            for (i, f) in schema::fields(sid).iter().enumerate() {
                if i > 0 {
                    out.push(' ');
                }
                if sp.plus && sp.verb == 'v' {
                    out.push_str(f.go);
                    out.push(':');
                }
                let x = (!f.json.is_empty() && !null)
                    .then(|| json::field(raw, f.json))
                    .flatten()
                    .unwrap_or(NULL);
                fmt_json(x, f.ty, sp, out, depth + 1);
            }
            out.push('}');
        }
    }
}

/// One leaf under `sp`, padded to its width.
fn leaf(l: Leaf, type_name: &str, sp: &Spec, out: &mut String) {
    // What templates print most, a text or a number as `%v` with no width: straight into the
    // output, nothing allocated on the way.
    if sp.width.is_none() && sp.prec.is_none() && matches!(sp.verb, 'v' | 's') {
        match &l {
            Leaf::Str(s) => return out.push_str(s),
            Leaf::Text(s) => return out.push_str(s),
            Leaf::Bool(b) if sp.verb == 'v' => {
                return out.push_str(if *b { "true" } else { "false" })
            }
            Leaf::Int(i) if sp.verb == 'v' && !sp.plus => {
                use std::fmt::Write;
                let _ = write!(out, "{i}");
                return;
            }
            _ => {}
        }
    }
    let bad = |shown: String| format!("%!{}({type_name}={shown})", sp.verb);
    let s = match (&l, sp.verb) {
        (Leaf::Nil(None), 'v') | (Leaf::Nil(Some(_)), 'v') => "<nil>".to_string(),
        (Leaf::Nil(None), v) => format!("%!{v}(<nil>)"),
        (Leaf::Nil(Some(_)), _) => bad("<nil>".into()),
        (Leaf::Str(s), 'v' | 's') => match sp.prec {
            Some(p) => s.chars().take(p).collect(),
            None => s.to_string(),
        },
        (Leaf::Str(s), 'q') => go_quote(s),
        (Leaf::Str(s), 'x' | 'X') => hex(s.as_bytes(), sp.verb == 'X'),
        (Leaf::Text(s), 'v' | 's') => s.clone(),
        (Leaf::Text(s), 'q') => go_quote(s),
        (Leaf::Int(i), 'v' | 'd') => {
            let mut t = i.unsigned_abs().to_string();
            if let Some(p) = sp.prec {
                while t.len() < p {
                    t.insert(0, '0');
                }
            }
            if *i < 0 {
                t.insert(0, '-');
            } else if sp.plus && sp.verb != 'v' {
                // `%+v` names struct fields; it puts no sign on numbers.
                t.insert(0, '+');
            }
            t
        }
        (Leaf::Int(i), 'x' | 'X' | 'o' | 'b') => {
            let u = i.unsigned_abs();
            let digits = match sp.verb {
                'x' => format!("{u:x}"),
                'X' => format!("{u:X}"),
                'o' => format!("{u:o}"),
                _ => format!("{u:b}"),
            };
            let prefix = match (sp.sharp, sp.verb) {
                (true, 'x') => "0x",
                (true, 'X') => "0X",
                (true, 'o') => "0",
                _ => "",
            };
            format!("{}{prefix}{digits}", if *i < 0 { "-" } else { "" })
        }
        (Leaf::Int(i), 'c') => char::from_u32(*i as u32).unwrap_or('\u{fffd}').to_string(),
        (Leaf::Int(i), 'q') => format!("'{}'", char::from_u32(*i as u32).unwrap_or('\u{fffd}')),
        (Leaf::Int(i), 'U') => format!("U+{:04X}", i),
        (Leaf::Bool(b), 'v' | 't') => b.to_string(),
        (Leaf::Float(f), 'v' | 'g') => float_text(*f),
        (Leaf::Float(f), 'f' | 'F') => format!("{:.*}", sp.prec.unwrap_or(6), f),
        (Leaf::Float(f), 'e') => go_exponent(format!("{:.*e}", sp.prec.unwrap_or(6), f)),
        (Leaf::Str(s), _) => bad(s.to_string()),
        (Leaf::Text(s), _) => bad(s.clone()),
        (Leaf::Int(i), _) => bad(i.to_string()),
        (Leaf::Bool(b), _) => bad(b.to_string()),
        (Leaf::Float(f), _) => bad(float_text(*f)),
    };
    pad(out, s, sp);
}

fn hex(b: &[u8], upper: bool) -> String {
    b.iter()
        .map(|x| {
            if upper {
                format!("{x:02X}")
            } else {
                format!("{x:02x}")
            }
        })
        .collect()
}

/// `s` padded to the spec's width: spaces on the left, on the right with `-`, zeros (after a
/// sign) with `0`.
fn pad(out: &mut String, mut s: String, sp: &Spec) {
    if let Some(w) = sp.width {
        let len = s.chars().count();
        if len < w {
            let n = w - len;
            if sp.minus {
                s.extend(std::iter::repeat_n(' ', n));
            } else if sp.zero && s.starts_with(['-', '+']) {
                let sign = s.remove(0);
                s = format!("{sign}{}{s}", "0".repeat(n));
            } else {
                s = format!("{}{s}", if sp.zero { "0" } else { " " }.repeat(n));
            }
        }
    }
    out.push_str(&s);
}

/// `fmt`'s `%v`.
pub fn fmt_v(v: &Val) -> String {
    let mut s = String::new();
    print_as(v, &mut s, Mode::Fmt);
    s
}

/// Go's `strconv.Quote`.
fn go_quote(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            '\u{7}' => out.push_str("\\a"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\u{b}' => out.push_str("\\v"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                out.push_str(&format!("\\x{:02x}", c as u32))
            }
            c if c.is_control() => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}
