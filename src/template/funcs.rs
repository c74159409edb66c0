//! The functions a template calls: Go's built-ins (`index`, `slice`, `len`, `print`,
//! `printf`, `urlquery`, `eq`...; `and`/`or` are in the evaluator, they stop early) and
//! registrator's 13 helpers with the exact semantics of spec/dropin.md section 1(a), where
//! Go's panics (an empty slice, a negative bound, a bad regexp) are errors instead.

use std::borrow::Cow;
use std::rc::Rc;

use super::exec::{
    deref, is_null, number, print_as, printed, text, truth, type_of, Mode, Val, NULL,
};
use super::fmt::printf;
use super::json;
use super::regex::Regex;
use super::schema::{self, Kind as Go};
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
        Val::Port(_) => "docker.Port",
        Val::Json(_, ty) => type_of(*ty),
    }
}

/// Largest string or list (in bytes) a function may make: past it, the rendering fails
/// rather than the daemon's memory (the output itself stops at 4 KiB).
pub const MAX_VALUE: usize = 64 * 1024;

/// The bytes a value holds, for [`MAX_VALUE`] and the evaluator's work budget.
pub fn val_size(v: &Val) -> usize {
    match v {
        Val::Str(s) | Val::Port(s) => s.len(),
        Val::Bytes(b) => b.len(),
        Val::List(l) => l.iter().map(|s| s.len() + 1).sum(),
        Val::Json(raw, _) => raw.len(),
        _ => 8,
    }
}

fn too_big(n: usize) -> Result<()> {
    if n > MAX_VALUE {
        Err(format!("value larger than {} KiB", MAX_VALUE / 1024))
    } else {
        Ok(())
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
        Val::Str(s) | Val::Port(s) => Ok(Cow::Borrowed(s)),
        Val::Json(raw, ty) if matches!(schema::ty(*ty).kind, Go::Str | Go::Port) => Ok(text(raw)),
        Val::Missing | Val::Nil => Err("invalid value; expected string".into()),
        other => Err(format!("expected string; found {}", printed(other))),
    }
}

/// An integer argument.
pub fn int(v: &Val) -> Result<i64> {
    match v {
        Val::Int(i) => Ok(*i),
        Val::Json(raw, ty) if matches!(schema::ty(*ty).kind, Go::Int | Go::Duration) => {
            Ok(number(raw))
        }
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
        Val::Json(raw, ty) if schema::ty(*ty).name == "[]string" => {
            Ok(json::elements(raw).map(text).collect())
        }
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
    let v = call_unchecked(f, a, fetch)?;
    too_big(val_size(&v))?;
    Ok(v)
}

fn call_unchecked<'a, 'f>(
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
        Func::Print => owned(sprint(a, false)?),
        Func::Println => owned(sprint(a, true)?),
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
                _ => sprint(a, false)?,
            };
            // Go's `url.QueryEscape`: a space is `+`.
            owned(crate::percent::encode(&s).replace("%20", "+"))
        }
        Func::Eq | Func::Ne | Func::Lt | Func::Le | Func::Gt | Func::Ge => compare(f, a)?,
        Func::StrSlice => {
            let (first, idx) = a
                .split_first()
                .ok_or("wrong number of args for strSlice: want at least 1 got 0")?;
            let v = string(first)?;
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
            let (i, j) = str_slice(&v, idx)?;
            // A cut of the document's own text on character boundaries borrows it.
            if let Val::Json(raw, _) = first {
                if let Cow::Borrowed(whole) = text(raw) {
                    if let Some(part) = whole.get(i..j) {
                        return Ok(Val::Str(Cow::Borrowed(part)));
                    }
                }
            }
            owned(String::from_utf8_lossy(&v.as_bytes()[i..j]).into_owned())
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
                Val::Json(raw, ty) if schema::ty(*ty).name == "map[string]string" => {
                    match json::field(raw, &k).filter(|_| !is_null(raw)) {
                        Some(e) => Val::Json(e, STRING),
                        None => owned(String::new()),
                    }
                }
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
            // The result's size first: an empty `old` inserts `new` at every character.
            let limit = usize::try_from(n).unwrap_or(usize::MAX);
            let hits = if old.is_empty() {
                (v.chars().count() + 1).min(limit)
            } else {
                v.matches(&*old).take(limit).count()
            };
            too_big(v.len() + hits.saturating_mul(new.len()))?;
            owned(if n < 0 {
                v.replace(&*old, &new)
            } else {
                v.replacen(&*old, &new, usize::try_from(n).unwrap_or(usize::MAX))
            })
        }
        Func::Join => {
            want(f, a, 2)?;
            let sep = string(&a[0])?;
            let items = strings(&a[1])?;
            too_big(items.iter().map(|s| s.len() + sep.len()).sum())?;
            owned(items.join(&sep))
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
        Val::Missing => return Err("len of nothing".into()),
        Val::Bytes(b) => b.len(),
        Val::List(l) => l.len(),
        Val::Json(raw, ty) => match schema::ty(*ty).kind {
            Go::Str | Go::Port => text(raw).len(),
            Go::Slice(_) => json::elements(raw).count(),
            Go::Map(..) => json::members(raw).count(),
            _ => return Err(format!("len of type {}", type_name(v))),
        },
        Val::Port(s) => s.len(),
        _ => return Err(format!("len of type {}", type_name(v))),
    })
}

fn index<'a>(v: Val<'a>, key: &Val) -> Result<Val<'a>> {
    // Go: `reflect: ... index out of range` at the length, `index out of range: i` past it.
    let pos = |n: usize| -> Result<usize> {
        let i = int(key)?;
        match usize::try_from(i) {
            Ok(u) if u < n => Ok(u),
            Ok(u) if u == n => Err("reflect: slice index out of range".into()),
            _ => Err(format!("index out of range: {i}")),
        }
    };
    Ok(match &v {
        Val::Missing => return Err("index of untyped nil".into()),
        Val::Nil => return Err("index of untyped nil".into()),
        Val::Str(s) | Val::Port(s) => Val::Int(i64::from(s.as_bytes()[pos(s.len())?])),
        Val::Bytes(b) => Val::Int(i64::from(b[pos(b.len())?])),
        Val::List(l) => owned(l[pos(l.len())?].clone()),
        Val::Json(raw, ty) => match schema::ty(deref(raw, *ty)).kind {
            Go::Ptr(_) => return Err("index of nil pointer".into()),
            Go::Slice(e) => {
                let n = json::elements(raw).count();
                let i = pos(n)?;
                Val::Json(json::elements(raw).nth(i).unwrap_or(NULL), e)
            }
            Go::Str => {
                let t = text(raw);
                Val::Int(i64::from(t.as_bytes()[pos(t.len())?]))
            }
            Go::Map(k, e) => {
                if schema::ty(k).kind == Go::Port && !matches!(key, Val::Port(_)) {
                    return Err(format!(
                        "value has type {}; should be docker.Port",
                        type_name(key)
                    ));
                }
                let k = string(key)?;
                let found = json::field(raw, &k).filter(|_| !is_null(raw));
                // A missing key is the element type's zero value.
                Val::Json(found.unwrap_or(NULL), e)
            }
            _ => return Err(format!("can't index item of type {}", type_name(&v))),
        },
        other => return Err(format!("can't index item of type {}", type_name(other))),
    })
}

/// `string`, the type of map values and `mIndex`'s answers.
const STRING: u8 = 2;

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
    if let Val::Bytes(b) = v {
        if idx.len() == 3 {
            return Err("cannot 3-index slice a []byte here".into());
        }
        let (i, j) = bounds(b.len())?;
        return Ok(Val::Bytes(b[i..j].into()));
    }
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
fn sprint(a: &[Val], line: bool) -> Result<String> {
    let mut out = String::new();
    let is_str = |v: &Val| string(v).is_ok();
    for (i, v) in a.iter().enumerate() {
        if i > 0 && (line || (!is_str(v) && !is_str(&a[i - 1]))) {
            out.push(' ');
        }
        print_as(v, &mut out, Mode::Fmt);
        too_big(out.len())?;
    }
    if line {
        out.push('\n');
    }
    Ok(out)
}

/// Go's comparison built-ins over basic kinds: bools, integers, floats and strings.
fn compare<'a>(f: Func, a: &[Val]) -> Result<Val<'a>> {
    #[derive(PartialEq, PartialOrd)]
    enum B<'v> {
        Bool(bool),
        Int(i64),
        Float(f64),
        Str(Cow<'v, str>),
        Raw(&'v [u8]),
        Nil,
    }
    fn basic<'v>(v: &'v Val) -> Result<B<'v>> {
        Ok(match v {
            Val::Missing | Val::Nil => B::Nil,
            Val::Bool(b) => B::Bool(*b),
            Val::Int(i) => B::Int(*i),
            Val::Float(x) => B::Float(*x),
            Val::Str(s) | Val::Port(s) => B::Str(Cow::Borrowed(s)),
            Val::Json(raw, ty) => match schema::ty(*ty).kind {
                Go::Bool => B::Bool(raw.starts_with(b"true")),
                Go::Int | Go::Duration => B::Int(number(raw)),
                Go::Str | Go::Port => B::Str(text(raw)),
                // A nil pointer, slice or map equals nil.
                Go::Ptr(_) | Go::Slice(_) | Go::Map(..) if is_null(raw) => B::Nil,
                // Comparable as Go compares them (==): times and pointers by what they hold.
                Go::Time | Go::Ptr(_) => B::Raw(raw),
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
fn str_slice(v: &str, idx: &[i64]) -> Result<(usize, usize)> {
    let n = v.len() as i64;
    if let Some(&neg) = idx.iter().find(|&&i| i < 0) {
        return Err(format!("runtime error: slice bounds out of range [{neg}:]"));
    }
    let (i, j) = match *idx {
        [i0] if n >= i0 => (i0, n),
        [i0, i1] if n >= i0 && n >= i1 => {
            if i0 == 0 {
                (0, i1)
            } else if i1 < i0 {
                (i0, n)
            } else {
                (i0, i1)
            }
        }
        _ => (0, n),
    };
    // In range: both are checked against the length above, and not negative.
    Ok((i as usize, j as usize))
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
