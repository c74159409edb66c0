//! The functions a template calls: Go's built-ins (`index`, `slice`, `len`, `print`,
//! `printf`, `urlquery`, `eq`...; `and`/`or` are in the evaluator, they stop early) and
//! registrator's 13 helpers with the exact semantics of spec/dropin.md section 1(a), where
//! Go's panics (an empty slice, a negative bound, a bad regexp) are errors instead.

use std::borrow::Cow;
use std::rc::Rc;

use super::exec::{print, printed, text, truth, type_of, Shape, Val};
use super::json::{self, Kind};
use super::regex::Regex;
use super::Func;

type Result<T> = std::result::Result<T, String>;

/// A Go-ish type name of a value, for messages.
pub fn type_name(v: &Val) -> &'static str {
    match v {
        Val::Missing | Val::Nil => "nil",
        Val::Bool(_) => "bool",
        Val::Int(_) => "int",
        Val::Float(_) => "float64",
        Val::Str(_) => "string",
        Val::Bytes(_) => "[]uint8",
        Val::List(_) => "[]string",
        Val::Json(raw, shape) => type_of(raw, *shape),
    }
}

/// A float as Go's `%v` prints it (`1.5`, `1e+21`).
pub fn float_text(f: f64) -> String {
    if f.is_finite() && f.fract() == 0.0 && f.abs() < 1e21 {
        format!("{f:.0}")
    } else if f.is_finite() && (f.abs() >= 1e21 || (f != 0.0 && f.abs() < 1e-4)) {
        let s = format!("{f:e}");
        match s.split_once('e') {
            Some((m, e)) if !e.starts_with('-') => format!("{m}e+{e:0>2}"),
            Some((m, e)) => format!("{m}e-{:0>2}", &e[1..]),
            None => s,
        }
    } else {
        f.to_string()
    }
}

fn want(f: Func, args: &[Val], n: usize) -> Result<()> {
    if args.len() == n {
        Ok(())
    } else {
        Err(format!(
            "wrong number of args for {}: want {n} got {}",
            f.name(),
            args.len()
        ))
    }
}

/// A string argument.
fn string<'v>(v: &'v Val) -> Result<Cow<'v, str>> {
    match v {
        Val::Str(s) => Ok(Cow::Borrowed(s)),
        Val::Json(raw, shape) if json::kind(raw) == Kind::String && *shape != Shape::Time => {
            Ok(text(raw))
        }
        Val::Missing | Val::Nil => Err("invalid value; expected string".into()),
        other => Err(format!("expected string; found {}", printed(other))),
    }
}

/// An integer argument.
fn int(v: &Val) -> Result<i64> {
    match v {
        Val::Int(i) => Ok(*i),
        Val::Json(raw, _) if json::kind(raw) == Kind::Number => std::str::from_utf8(raw)
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| format!("expected integer; found {}", String::from_utf8_lossy(raw))),
        Val::Missing | Val::Nil => Err("invalid value; expected int".into()),
        other => Err(format!(
            "expected integer; found {}",
            quoted_if_string(other)
        )),
    }
}

fn quoted_if_string(v: &Val) -> String {
    match v {
        Val::Str(s) => format!("{s:?}"),
        other => printed(other),
    }
}

/// A `[]string` argument (nil is an empty one).
fn strings<'v>(v: &'v Val) -> Result<Vec<Cow<'v, str>>> {
    match v {
        Val::Missing | Val::Nil => Ok(Vec::new()),
        Val::List(l) => Ok(l.iter().map(|s| Cow::Borrowed(s.as_str())).collect()),
        Val::Json(raw, _) if json::kind(raw) == Kind::Null => Ok(Vec::new()),
        Val::Json(raw, _) if json::kind(raw) == Kind::Array => json::elements(raw)
            .map(|e| match json::kind(e) {
                Kind::String => Ok(text(e)),
                _ => Err(format!(
                    "wrong type for value; expected []string; got {}",
                    type_of(raw, Shape::Plain)
                )),
            })
            .collect(),
        other => Err(format!(
            "wrong type for value; expected []string; got {}",
            type_name(other)
        )),
    }
}

fn list<'a>(v: Vec<String>) -> Val<'a> {
    Val::List(Rc::new(v))
}

fn owned<'a>(s: String) -> Val<'a> {
    Val::Str(Cow::Owned(s))
}

/// Calls `f` with its arguments evaluated (the piped value last).
pub fn call<'a, 'f>(
    f: Func,
    a: &[Val<'a>],
    fetch: Option<super::FetchRef<'_, 'f>>,
) -> Result<Val<'a>> {
    Ok(match f {
        Func::And | Func::Or => unreachable!("evaluated by exec"),
        Func::Not => {
            want(f, a, 1)?;
            Val::Bool(!truth(&a[0]))
        }
        Func::Len => {
            want(f, a, 1)?;
            Val::Int(len(&a[0])? as i64)
        }
        Func::Index => {
            let (first, keys) = a
                .split_first()
                .ok_or("wrong number of args for index: want at least 1 got 0")?;
            let mut v = first.clone();
            for k in keys {
                v = index(v, k)?;
            }
            v
        }
        Func::Slice => slice(a)?,
        Func::Print => owned(sprint(a, false)),
        Func::Println => owned(sprint(a, true)),
        Func::Printf => {
            let (fmt, rest) = a
                .split_first()
                .ok_or("wrong number of args for printf: want at least 1 got 0")?;
            owned(printf(&string(fmt)?, rest))
        }
        Func::Urlquery => {
            let s = match a {
                [one] => string(one)
                    .map(Cow::into_owned)
                    .unwrap_or_else(|_| printed(one)),
                _ => sprint(a, false),
            };
            // Go's `url.QueryEscape`: a space is `+`.
            owned(crate::percent::encode(&s).replace("%20", "+"))
        }
        Func::Eq | Func::Ne | Func::Lt | Func::Le | Func::Gt | Func::Ge => compare(f, a)?,
        Func::StrSlice => {
            let (v, idx) = a
                .split_first()
                .ok_or("wrong number of args for strSlice: want at least 1 got 0")?;
            let v = string(v)?;
            let mut ints = [0i64; 2];
            for (k, i) in idx.iter().enumerate() {
                let i = int(i)?;
                if let Some(slot) = ints.get_mut(k) {
                    *slot = i;
                }
            }
            // Go slices only with one or two indices; with none or three and more, `v`.
            let idx = if idx.len() <= 2 {
                &ints[..idx.len()]
            } else {
                &[]
            };
            owned(str_slice(&v, idx)?)
        }
        Func::SIndex => {
            want(f, a, 2)?;
            owned(s_index(int(&a[0])?, &strings(&a[1])?)?.to_string())
        }
        Func::MIndex => {
            want(f, a, 2)?;
            let k = string(&a[0])?;
            match &a[1] {
                Val::Missing | Val::Nil => owned(String::new()),
                Val::Json(raw, Shape::Map { strings: true, .. })
                    if json::kind(raw) == Kind::Object =>
                {
                    match json::field(raw, &k) {
                        Some(e) => Val::Json(e, Shape::Plain),
                        None => owned(String::new()),
                    }
                }
                Val::Json(raw, _) if json::kind(raw) == Kind::Null => owned(String::new()),
                other => {
                    return Err(format!(
                        "wrong type for value; expected map[string]string; got {}",
                        type_name(other)
                    ))
                }
            }
        }
        Func::ToUpper | Func::ToLower => {
            want(f, a, 1)?;
            let s = string(&a[0])?;
            owned(change_case(&s, f == Func::ToUpper))
        }
        Func::Replace => {
            want(f, a, 4)?;
            let n = int(&a[0])?;
            let (old, new, v) = (string(&a[1])?, string(&a[2])?, string(&a[3])?);
            owned(if n < 0 {
                v.replace(&*old, &new)
            } else {
                v.replacen(&*old, &new, usize::try_from(n).unwrap_or(usize::MAX))
            })
        }
        Func::Join => {
            want(f, a, 2)?;
            let sep = string(&a[0])?;
            owned(strings(&a[1])?.join(&sep))
        }
        Func::Split => {
            want(f, a, 2)?;
            list(split(&string(&a[0])?, &string(&a[1])?))
        }
        Func::SplitIndex => {
            want(f, a, 3)?;
            let i = int(&a[0])?;
            let parts = split(&string(&a[1])?, &string(&a[2])?);
            let parts: Vec<Cow<str>> = parts.iter().map(|s| Cow::Borrowed(s.as_str())).collect();
            owned(s_index(i, &parts)?.to_string())
        }
        Func::MatchFirstElement | Func::MatchAllElements => {
            want(f, a, 2)?;
            let re = Regex::new(&string(&a[0])?)?;
            let items = strings(&a[1])?;
            let mut hits = items.iter().filter(|s| re.is_match(s));
            if f == Func::MatchFirstElement {
                owned(hits.next().map(|s| s.to_string()).unwrap_or_default())
            } else {
                list(hits.map(|s| s.to_string()).collect())
            }
        }
        Func::HttpGet => {
            want(f, a, 1)?;
            let url = string(&a[0])?;
            let Some(fetch) = fetch else {
                return Err("httpGet is only allowed in -tags".into());
            };
            Val::Bytes(fetch(&url).into())
        }
        Func::JsonParse => {
            want(f, a, 2)?;
            let body: &[u8] = match &a[0] {
                Val::Bytes(b) => b,
                Val::Missing | Val::Nil => &[],
                other => {
                    return Err(format!(
                        "wrong type for value; expected []uint8; got {}",
                        type_name(other)
                    ))
                }
            };
            let key = string(&a[1])?;
            match json::get(body, &key) {
                Ok(v) => owned(String::from_utf8_lossy(v).into_owned()),
                Err(e) => {
                    log::warn!("jsonParse template function encountered an error while parsing JSON object {key:?}: {}", e.0);
                    owned(String::new())
                }
            }
        }
    })
}

fn len(v: &Val) -> Result<usize> {
    Ok(match v {
        Val::Str(s) => s.len(),
        Val::Bytes(b) => b.len(),
        Val::List(l) => l.len(),
        Val::Json(raw, _) => match json::kind(raw) {
            Kind::String => text(raw).len(),
            Kind::Array => json::elements(raw).count(),
            Kind::Object => json::members(raw).count(),
            Kind::Null => 0,
            _ => return Err(format!("len of type {}", type_name(v))),
        },
        _ => return Err(format!("len of type {}", type_name(v))),
    })
}

fn index<'a>(v: Val<'a>, key: &Val) -> Result<Val<'a>> {
    let pos = |n: usize| -> Result<usize> {
        let i = int(key)?;
        usize::try_from(i)
            .ok()
            .filter(|&i| i < n)
            .ok_or_else(|| format!("index out of range: {i}"))
    };
    Ok(match &v {
        Val::Missing | Val::Nil => Val::Nil,
        Val::Str(s) => Val::Int(i64::from(s.as_bytes()[pos(s.len())?])),
        Val::Bytes(b) => Val::Int(i64::from(b[pos(b.len())?])),
        Val::List(l) => owned(l[pos(l.len())?].clone()),
        Val::Json(raw, shape) => match (json::kind(raw), shape) {
            (Kind::Array, _) => {
                let n = json::elements(raw).count();
                let i = pos(n)?;
                json::elements(raw)
                    .nth(i)
                    .map_or(Val::Nil, |e| Val::Json(e, Shape::Plain))
            }
            (Kind::String, _) => {
                let t = text(raw);
                Val::Int(i64::from(t.as_bytes()[pos(t.len())?]))
            }
            (Kind::Object | Kind::Null, Shape::Map { port_keys, strings }) => {
                if *port_keys {
                    return Err(format!(
                        "value has type {}; should be docker.Port",
                        type_name(key)
                    ));
                }
                let k = string(key)?;
                let found = if json::kind(raw) == Kind::Object {
                    json::field(raw, &k)
                } else {
                    None
                };
                match found {
                    Some(e) => Val::Json(e, Shape::Plain),
                    None if *strings => owned(String::new()),
                    None => Val::Nil,
                }
            }
            (Kind::Null, _) => Val::Nil,
            _ => return Err(format!("can't index item of type {}", type_name(&v))),
        },
        other => return Err(format!("can't index item of type {}", type_name(other))),
    })
}

fn slice<'a>(a: &[Val<'a>]) -> Result<Val<'a>> {
    let (v, idx) = a
        .split_first()
        .ok_or("wrong number of args for slice: want at least 1 got 0")?;
    if idx.len() > 3 {
        return Err(format!("too many slice indexes: {}", idx.len()));
    }
    let idx: Vec<i64> = idx.iter().map(int).collect::<Result<_>>()?;
    let bounds = |n: usize| -> Result<(usize, usize)> {
        let get = |k: usize, default: usize| -> Result<usize> {
            match idx.get(k) {
                None => Ok(default),
                Some(&i) => usize::try_from(i)
                    .ok()
                    .filter(|&i| i <= n)
                    .ok_or_else(|| format!("index out of range: {i}")),
            }
        };
        let (i, j) = (get(0, 0)?, get(1, n)?);
        if i > j {
            return Err(format!("invalid slice index: {i} > {j}"));
        }
        Ok((i, j))
    };
    Ok(match v {
        Val::Str(_) | Val::Json(..) if string(v).is_ok() => {
            if idx.len() == 3 {
                return Err("cannot 3-index slice a string".into());
            }
            let s = string(v)?;
            let (i, j) = bounds(s.len())?;
            owned(String::from_utf8_lossy(&s.as_bytes()[i..j]).into_owned())
        }
        _ => {
            let items = strings(v)?;
            let (i, j) = bounds(items.len())?;
            list(items[i..j].iter().map(|s| s.to_string()).collect())
        }
    })
}

/// Go's `fmt.Sprint` (spaces between operands when neither is a string), or `Sprintln`.
fn sprint(a: &[Val], line: bool) -> String {
    let mut out = String::new();
    let is_str = |v: &Val| string(v).is_ok();
    for (i, v) in a.iter().enumerate() {
        if i > 0 && (line || (!is_str(v) && !is_str(&a[i - 1]))) {
            out.push(' ');
        }
        print(v, &mut out);
    }
    if line {
        out.push('\n');
    }
    out
}

/// Go's comparison built-ins over basic kinds: bools, integers, floats and strings.
fn compare<'a>(f: Func, a: &[Val]) -> Result<Val<'a>> {
    #[derive(PartialEq, PartialOrd)]
    enum B<'v> {
        Bool(bool),
        Int(i64),
        Float(f64),
        Str(Cow<'v, str>),
        Nil,
    }
    fn basic<'v>(v: &'v Val) -> Result<B<'v>> {
        Ok(match v {
            Val::Missing | Val::Nil => B::Nil,
            Val::Bool(b) => B::Bool(*b),
            Val::Int(i) => B::Int(*i),
            Val::Float(x) => B::Float(*x),
            Val::Str(s) => B::Str(Cow::Borrowed(s)),
            Val::Json(raw, shape) => match json::kind(raw) {
                Kind::Bool => B::Bool(raw.starts_with(b"true")),
                Kind::Number => match int(v) {
                    Ok(i) => B::Int(i),
                    Err(_) => B::Float(
                        std::str::from_utf8(raw)
                            .ok()
                            .and_then(|s| s.parse().ok())
                            .unwrap_or(0.0),
                    ),
                },
                Kind::String if *shape != Shape::Time => B::Str(text(raw)),
                Kind::Null => B::Nil,
                _ => return Err("invalid type for comparison".into()),
            },
            _ => return Err("invalid type for comparison".into()),
        })
    }
    let same_kind = |x: &B, y: &B| std::mem::discriminant(x) == std::mem::discriminant(y);
    match f {
        Func::Eq | Func::Ne => {
            let (first, rest) = a.split_first().ok_or("missing argument for comparison")?;
            if rest.is_empty() {
                return Err("missing argument for comparison".into());
            }
            let x = basic(first)?;
            let mut eq = false;
            for y in rest {
                let y = basic(y)?;
                if !same_kind(&x, &y) {
                    if x == B::Nil || y == B::Nil {
                        continue;
                    }
                    return Err("incompatible types for comparison".into());
                }
                if x == y {
                    eq = true;
                    if f == Func::Eq {
                        break;
                    }
                }
            }
            if f == Func::Ne {
                want(f, a, 2)?;
            }
            Ok(Val::Bool(if f == Func::Eq { eq } else { !eq }))
        }
        _ => {
            want(f, a, 2)?;
            let (x, y) = (basic(&a[0])?, basic(&a[1])?);
            if !same_kind(&x, &y) {
                return Err("incompatible types for comparison".into());
            }
            if matches!(x, B::Bool(_) | B::Nil) {
                return Err("invalid type for comparison".into());
            }
            let ord = x.partial_cmp(&y).ok_or("incomparable values")?;
            use std::cmp::Ordering::*;
            Ok(Val::Bool(match f {
                Func::Lt => ord == Less,
                Func::Le => ord != Greater,
                Func::Gt => ord == Greater,
                _ => ord != Less,
            }))
        }
    }
}

/// `strSlice(v, i...)` with its clamping rules; a negative index is an error (Go panics).
fn str_slice(v: &str, idx: &[i64]) -> Result<String> {
    let b = v.as_bytes();
    let n = b.len() as i64;
    let cut = |i: i64, j: i64| String::from_utf8_lossy(&b[i as usize..j as usize]).into_owned();
    if let Some(&neg) = idx.iter().find(|&&i| i < 0) {
        return Err(format!("runtime error: slice bounds out of range [{neg}:]"));
    }
    Ok(match *idx {
        [i0] if n >= i0 => cut(i0, n),
        [i0, i1] if n >= i0 && n >= i1 => {
            if i0 == 0 {
                cut(0, i1)
            } else if i1 < i0 {
                cut(i0, n)
            } else {
                cut(i0, i1)
            }
        }
        _ => v.to_string(),
    })
}

/// `sIndex(i, s)`: clamps instead of failing; an empty slice is an error (Go panics).
fn s_index<'s>(i: i64, s: &'s [Cow<'s, str>]) -> Result<&'s str> {
    let n = s.len() as i64;
    if n == 0 {
        return Err("runtime error: index out of range [-1]".into());
    }
    let at = if i < 0 {
        let i = i.checked_neg().unwrap_or(i64::MAX);
        if i >= n {
            0
        } else {
            n - i
        }
    } else if i >= n {
        n - 1
    } else {
        i
    };
    Ok(&s[at as usize])
}

/// Go's `strings.Split`: an empty separator splits into characters.
fn split(sep: &str, v: &str) -> Vec<String> {
    if sep.is_empty() {
        v.chars().map(String::from).collect()
    } else {
        v.split(sep).map(String::from).collect()
    }
}

/// Go's `strings.ToUpper`/`ToLower`: per character, a character whose case mapping is
/// several characters (`ß`) stays as it is.
fn change_case(s: &str, upper: bool) -> String {
    s.chars()
        .map(|c| {
            let mut m: Box<dyn Iterator<Item = char>> = if upper {
                Box::new(c.to_uppercase())
            } else {
                Box::new(c.to_lowercase())
            };
            match (m.next(), m.next()) {
                (Some(one), None) => one,
                _ => c,
            }
        })
        .collect()
}

/// Go's `fmt.Sprintf` for the verbs `%s %d %v %q` (and `%%`), with flags `-` and `0`, width
/// and precision. Other verbs, missing and extra operands print as Go prints them.
fn printf(fmt: &str, args: &[Val]) -> String {
    let mut out = String::new();
    let mut next = 0;
    let mut chars = fmt.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let (mut minus, mut zero, mut plus) = (false, false, false);
        while let Some(&f) = chars.peek() {
            match f {
                '-' => minus = true,
                '0' => zero = true,
                '+' => plus = true,
                ' ' | '#' => {}
                _ => break,
            }
            chars.next();
        }
        let number = |chars: &mut std::iter::Peekable<std::str::Chars>| {
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
        let width = number(&mut chars);
        let prec = if chars.peek() == Some(&'.') {
            chars.next();
            Some(number(&mut chars).unwrap_or(0))
        } else {
            None
        };
        let Some(verb) = chars.next() else {
            out.push_str("%!(NOVERB)");
            break;
        };
        if verb == '%' {
            out.push('%');
            continue;
        }
        let Some(arg) = args.get(next) else {
            out.push_str(&format!("%!{verb}(MISSING)"));
            continue;
        };
        next += 1;
        let is_num = matches!(arg, Val::Int(_))
            || matches!(arg, Val::Json(raw, _) if json::kind(raw) == Kind::Number);
        let mut s = match verb {
            'v' => printed(arg),
            's' => match arg {
                Val::Bytes(b) => String::from_utf8_lossy(b).into_owned(),
                _ if is_num => bad(verb, arg),
                _ => printed(arg),
            },
            'd' => match int(arg) {
                Ok(i) => {
                    let mut t = i.unsigned_abs().to_string();
                    if let Some(p) = prec {
                        while t.len() < p {
                            t.insert(0, '0');
                        }
                    }
                    if i < 0 {
                        t.insert(0, '-');
                    } else if plus {
                        t.insert(0, '+');
                    }
                    t
                }
                Err(_) => bad(verb, arg),
            },
            'q' => match arg {
                Val::Int(i) => format!("'{}'", char::from_u32(*i as u32).unwrap_or('\u{fffd}')),
                Val::Bytes(b) => go_quote(&String::from_utf8_lossy(b)),
                _ => match string(arg) {
                    Ok(s) => go_quote(&s),
                    Err(_) => bad(verb, arg),
                },
            },
            _ => bad(verb, arg),
        };
        if matches!(verb, 's' | 'q' | 'v') {
            if let Some(p) = prec {
                s = s.chars().take(p).collect();
            }
        }
        if let Some(w) = width {
            let len = s.chars().count();
            if len < w {
                let pad = w - len;
                if minus {
                    s.extend(std::iter::repeat_n(' ', pad));
                } else if zero && verb == 'd' && s.starts_with(['-', '+']) {
                    let sign = s.remove(0);
                    s = format!("{sign}{}{s}", "0".repeat(pad));
                } else {
                    let fill = if zero { "0" } else { " " };
                    s = format!("{}{s}", fill.repeat(pad));
                }
            }
        }
        out.push_str(&s);
    }
    if next < args.len() {
        out.push_str("%!(EXTRA ");
        for (i, a) in args[next..].iter().enumerate() {
            if i > 0 {
                out.push_str(", ");
            }
            out.push_str(&format!("{}={}", type_name(a), printed(a)));
        }
        out.push(')');
    }
    out
}

fn bad(verb: char, arg: &Val) -> String {
    format!("%!{verb}({}={})", type_name(arg), printed(arg))
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
