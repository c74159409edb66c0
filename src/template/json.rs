//! A zero-allocation scanner over raw JSON bytes.
//!
//! The template evaluator walks a Docker inspect document without building a
//! tree: [`value`] delimits one value, [`members`] and [`elements`] iterate
//! containers, [`field`] looks a key up and [`get`] implements
//! buger/jsonparser's `Get`. Nothing here panics on any input, nesting is
//! limited to [`MAX_DEPTH`] and every scan is linear in the input length.

/// Deepest nesting of objects and arrays accepted; deeper is [`Error`] "too deep".
pub const MAX_DEPTH: usize = 128;

/// The kind of a JSON value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Object,
    Array,
    String,
    Number,
    Bool,
    Null,
}

/// A scan or lookup failure, with a short reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error(pub &'static str);

const END: Error = Error("unexpected end");
const INVALID: Error = Error("invalid JSON");
const BAD_ESCAPE: Error = Error("invalid escape");
const NOT_FOUND: Error = Error("key path not found");
const TOO_DEEP: Error = Error("too deep");

/// Skips whitespace and returns the first complete JSON value of `b` (trailing
/// bytes after it ignored), as a sub-slice of `b`; a string keeps its quotes.
pub fn value(b: &[u8]) -> Result<&[u8], Error> {
    let mut s = Scan { b, i: 0 };
    s.ws();
    let start = s.i;
    s.value(0)?;
    Ok(s.since(start))
}

/// The kind of a value slice as returned by [`value`], from its first byte
/// (anything unrecognised, including an empty slice, reads as `Null`).
pub fn kind(v: &[u8]) -> Kind {
    match v.first() {
        Some(b'{') => Kind::Object,
        Some(b'[') => Kind::Array,
        Some(b'"') => Kind::String,
        Some(b't' | b'f') => Kind::Bool,
        Some(b'-' | b'0'..=b'9') => Kind::Number,
        _ => Kind::Null,
    }
}

/// Iterator over an object's members: (raw key between the quotes, still
/// escaped; value slice). It stops at the end or on malformed input, and
/// [`Members::error`] then tells which.
pub struct Members<'a> {
    s: Scan<'a>,
    close: u8,
    first: bool,
    done: bool,
    err: Option<Error>,
}

/// Iterates the members of an object value slice (leading whitespace allowed).
pub fn members(obj: &[u8]) -> Members<'_> {
    Members::new(obj, b'{', b'}')
}

impl<'a> Members<'a> {
    /// The error that stopped the iteration, if it stopped on malformed input.
    pub fn error(&self) -> Option<Error> {
        self.err.clone()
    }
    /// Checks the opening bracket; the items follow with the same code for
    /// arrays (whose keys are empty) and objects.
    fn new(b: &'a [u8], open: u8, close: u8) -> Self {
        let mut s = Scan { b, i: 0 };
        s.ws();
        let err = s.expect(open).err();
        let (first, done) = (true, err.is_some());
        Members {
            s,
            close,
            first,
            done,
            err,
        }
    }
}

impl<'a> Iterator for Members<'a> {
    type Item = (&'a [u8], &'a [u8]);
    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let r = self.s.item(self.close, std::mem::take(&mut self.first), 1);
        self.done = !matches!(r, Ok(Some(_)));
        self.err = r.as_ref().err().cloned();
        r.ok().flatten()
    }
}

/// Iterator over an array's element value slices; same conventions as [`Members`].
pub struct Elements<'a>(Members<'a>);

/// Iterates the elements of an array value slice (leading whitespace allowed).
pub fn elements(arr: &[u8]) -> Elements<'_> {
    Elements(Members::new(arr, b'[', b']'))
}

impl Elements<'_> {
    /// The error that stopped the iteration, if it stopped on malformed input.
    pub fn error(&self) -> Option<Error> {
        self.0.error()
    }
}

impl<'a> Iterator for Elements<'a> {
    type Item = &'a [u8];
    fn next(&mut self) -> Option<Self::Item> {
        self.0.next().map(|(_, v)| v)
    }
}

/// The value of the first member of `obj` whose unescaped key equals `name`.
pub fn field<'a>(obj: &'a [u8], name: &str) -> Option<&'a [u8]> {
    find(obj, name).ok()
}

/// Appends the decoded text of a JSON string value slice (with its quotes) to
/// `out`. Lone surrogates and invalid UTF-8 become U+FFFD; a malformed escape
/// is an error (`out` may then hold a decoded prefix).
pub fn unescape_into(s: &[u8], out: &mut String) -> Result<(), Error> {
    let raw = unquote(s).ok_or(INVALID)?;
    let mut i = 0;
    while let Some(c) = next_char(raw, &mut i)? {
        out.push(c);
    }
    Ok(())
}

/// buger/jsonparser `Get(doc, path.split("::")...)`: the raw bytes of the value
/// at `path`, a string without its quotes but still escaped, anything else
/// verbatim. A segment `[N]` indexes an array; any other segment is an object
/// key (an empty segment is the key "").
pub fn get<'a>(doc: &'a [u8], path: &str) -> Result<&'a [u8], Error> {
    let mut cur = doc;
    for seg in path.split("::") {
        cur = match cur.iter().find(|c| !is_ws(**c)).ok_or(END)? {
            b'{' => find(cur, seg)?,
            b'[' => {
                let n = seg.strip_prefix('[').and_then(|s| s.strip_suffix(']'));
                let n: usize = n.and_then(|n| n.parse().ok()).ok_or(NOT_FOUND)?;
                let mut it = elements(cur);
                it.nth(n).ok_or_else(|| it.error().unwrap_or(NOT_FOUND))?
            }
            _ => return Err(NOT_FOUND),
        };
    }
    Ok(unquote(cur).unwrap_or(cur))
}

fn find<'a>(obj: &'a [u8], name: &str) -> Result<&'a [u8], Error> {
    let mut it = members(obj);
    match it.find(|(k, _)| key_eq(k, name)) {
        Some((_, v)) => Ok(v),
        None => Err(it.error().unwrap_or(NOT_FOUND)),
    }
}

/// Compares a raw (escaped) key with `name`, decoding only if it has escapes.
fn key_eq(raw: &[u8], name: &str) -> bool {
    if !raw.contains(&b'\\') {
        return raw == name.as_bytes();
    }
    let (mut i, mut want) = (0, name.chars());
    loop {
        match (next_char(raw, &mut i), want.next()) {
            (Ok(None), None) => return true,
            (Ok(Some(a)), Some(b)) if a == b => {}
            _ => return false,
        }
    }
}

/// The bytes between the quotes of a string value slice.
fn unquote(s: &[u8]) -> Option<&[u8]> {
    s.strip_prefix(b"\"")?.strip_suffix(b"\"")
}

fn is_ws(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\n' | b'\r')
}

/// Decodes the character at `raw[*i..]` (string content without the quotes)
/// and advances `i` past it; `None` at the end.
fn next_char(raw: &[u8], i: &mut usize) -> Result<Option<char>, Error> {
    let rest = raw.get(*i..).unwrap_or_default();
    let Some(&c) = rest.first() else {
        return Ok(None);
    };
    if c == b'\\' {
        *i += 2;
        return Ok(Some(match rest.get(1).ok_or(END)? {
            b'"' => '"',
            b'\\' => '\\',
            b'/' => '/',
            b'b' => '\u{8}',
            b'f' => '\u{c}',
            b'n' => '\n',
            b'r' => '\r',
            b't' => '\t',
            b'u' => {
                let hi = hex4(raw, i)?;
                if (0xD800..0xDC00).contains(&hi) && raw.get(*i..*i + 2) == Some(b"\\u") {
                    let mut j = *i + 2;
                    if let Ok(lo @ 0xDC00..=0xDFFF) = hex4(raw, &mut j) {
                        *i = j;
                        let c = 0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00);
                        return Ok(Some(char::from_u32(c).unwrap_or('\u{FFFD}')));
                    }
                }
                char::from_u32(hi).unwrap_or('\u{FFFD}')
            }
            _ => return Err(BAD_ESCAPE),
        }));
    }
    // A character is at most 4 bytes: decode it, or U+FFFD for an invalid run.
    let chunk = rest.get(..4).unwrap_or(rest).utf8_chunks().next();
    let ch = chunk.as_ref().and_then(|c| c.valid().chars().next());
    *i += ch.map_or(chunk.map_or(1, |c| c.invalid().len()), char::len_utf8);
    Ok(Some(ch.unwrap_or('\u{FFFD}')))
}

/// Reads four hex digits at `raw[*i..]` and advances `i` past them.
fn hex4(raw: &[u8], i: &mut usize) -> Result<u32, Error> {
    let digits = raw.get(*i..*i + 4).ok_or(END)?;
    let mut n = 0;
    for d in digits {
        n = n * 16 + char::from(*d).to_digit(16).ok_or(BAD_ESCAPE)?;
    }
    *i += 4;
    Ok(n)
}

/// Bytes [`Scan::skip`] stops at: bit 0 inside a container (`"`, brackets), bit 1 inside a
/// string (`"`, `\\`). A table: one load per byte.
static STEP: [u8; 256] = {
    let mut t = [0u8; 256];
    t[b'"' as usize] = 3;
    t[b'{' as usize] = 1;
    t[b'[' as usize] = 1;
    t[b'}' as usize] = 1;
    t[b']' as usize] = 1;
    t[b'\\' as usize] = 2;
    t
};

/// A raw key (empty for an array element) and a value slice.
type Member<'a> = (&'a [u8], &'a [u8]);

/// A cursor over the input.
struct Scan<'a> {
    b: &'a [u8],
    i: usize,
}

impl<'a> Scan<'a> {
    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }
    fn since(&self, start: usize) -> &'a [u8] {
        self.b.get(start..self.i).unwrap_or_default()
    }
    /// Steps over the next byte if it satisfies `f`.
    fn eat(&mut self, f: impl Fn(u8) -> bool) -> bool {
        let hit = self.peek().is_some_and(f);
        self.i += usize::from(hit);
        hit
    }
    /// The error for an unexpected byte at the cursor.
    fn fail(&self) -> Error {
        self.peek().map_or(END, |_| INVALID)
    }
    fn ws(&mut self) {
        while self.eat(is_ws) {}
    }
    fn expect(&mut self, c: u8) -> Result<(), Error> {
        if self.eat(|x| x == c) {
            Ok(())
        } else {
            Err(self.fail())
        }
    }
    fn digits(&mut self) -> Result<(), Error> {
        let start = self.i;
        while self.eat(|c| c.is_ascii_digit()) {}
        if self.i > start {
            Ok(())
        } else {
            Err(self.fail())
        }
    }
    /// Skips one value starting at the cursor (no leading whitespace).
    fn value(&mut self, depth: usize) -> Result<(), Error> {
        match self.peek().ok_or(END)? {
            b'{' => self.container(depth, b'}'),
            b'[' => self.container(depth, b']'),
            b'"' => self.string(),
            b't' => self.literal(b"true"),
            b'f' => self.literal(b"false"),
            b'n' => self.literal(b"null"),
            b'-' | b'0'..=b'9' => self.number(),
            _ => Err(INVALID),
        }
    }
    fn container(&mut self, depth: usize, close: u8) -> Result<(), Error> {
        if depth >= MAX_DEPTH {
            return Err(TOO_DEEP);
        }
        self.i += 1;
        let mut first = true;
        while self
            .item(close, std::mem::take(&mut first), depth + 1)?
            .is_some()
        {}
        Ok(())
    }
    /// Scans the separator (or the closing bracket, giving `None`) and the next
    /// item of a container: its raw key (empty in an array) and value.
    fn item(&mut self, close: u8, first: bool, depth: usize) -> Result<Option<Member<'a>>, Error> {
        self.ws();
        if self.eat(|c| c == close) {
            return Ok(None);
        } else if !first {
            self.expect(b',')?;
            self.ws();
        }
        let mut key: &[u8] = &[];
        if close == b'}' {
            let start = self.i;
            self.string()?;
            key = unquote(self.since(start)).unwrap_or_default();
            self.ws();
            self.expect(b':')?;
            self.ws();
        }
        let start = self.i;
        self.skip(depth)?;
        Ok(Some((key, self.since(start))))
    }
    /// Steps over one value as fast as it can be delimited: a nested object or array by its
    /// brackets and strings alone (what is inside is checked when it is read, not when it is
    /// stepped over), a string by a search for its closing quote. Linear, depth-limited.
    fn skip(&mut self, depth: usize) -> Result<(), Error> {
        match self.peek().ok_or(END)? {
            b'{' | b'[' => {}
            b'"' => {
                self.i += 1;
                return self.skip_string();
            }
            _ => return self.value(depth),
        }
        let mut nest = depth;
        loop {
            let rest = self.b.get(self.i..).unwrap_or_default();
            let at = rest
                .iter()
                .position(|&c| STEP[usize::from(c)] & 1 != 0)
                .ok_or(END)?;
            self.i += at + 1;
            match rest[at] {
                b'"' => self.skip_string()?,
                b'{' | b'[' => {
                    nest += 1;
                    if nest > MAX_DEPTH {
                        return Err(TOO_DEEP);
                    }
                }
                _ => {
                    nest -= 1;
                    if nest == depth {
                        return Ok(());
                    }
                }
            }
        }
    }
    /// After a string's opening quote: up to and past its closing one.
    fn skip_string(&mut self) -> Result<(), Error> {
        loop {
            let rest = self.b.get(self.i..).unwrap_or_default();
            let at = rest
                .iter()
                .position(|&c| STEP[usize::from(c)] & 2 != 0)
                .ok_or(END)?;
            self.i += at + 1;
            if rest[at] == b'"' {
                return Ok(());
            }
            // An escape: its next byte is never the end of the string.
            self.i += 1;
        }
    }
    fn string(&mut self) -> Result<(), Error> {
        self.expect(b'"')?;
        while !self.eat(|c| c == b'"') {
            // Escapes are validated here, so unescape_into cannot fail later.
            if self.peek().ok_or(END)? == b'\\' {
                next_char(self.b, &mut self.i)?;
            } else {
                self.i += 1;
            }
        }
        Ok(())
    }
    fn literal(&mut self, lit: &[u8]) -> Result<(), Error> {
        lit.iter().try_for_each(|&c| self.expect(c))
    }
    fn number(&mut self) -> Result<(), Error> {
        self.eat(|c| c == b'-');
        if !self.eat(|c| c == b'0') {
            self.digits()?;
        }
        if self.eat(|c| c == b'.') {
            self.digits()?;
        }
        if self.eat(|c| c == b'e' || c == b'E') {
            self.eat(|c| c == b'+' || c == b'-');
            self.digits()?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::{Kind as K, *};

    const DOC: &[u8] = br#"{"s":"x\u00e9\n","n":null,"b":true,"f":1.50,"arr":[1,{"k":"v"}],"o":{"":"empty"},"dup":1,"dup":2}"#;
    const INSPECT: &[u8] = br#"{"Additional":{"Country":"United States","Zone":"us-east-1a"},"ip":"203.0.113.7","items":[{"name":"a"},{"name":"b"}],"num":42,"quoted":"a\"b"}"#;

    fn g<'a>(doc: &'a [u8], path: &str) -> Result<&'a str, Error> {
        get(doc, path).map(|v| std::str::from_utf8(v).unwrap())
    }

    #[test]
    fn get_vectors() {
        // Cases are `path=want`, separated by spaces.
        for case in r"s=x\u00e9\n n=null b=true f=1.50 arr::[1]::k=v o::=empty dup=1".split(' ') {
            let (path, want) = case.split_once('=').unwrap();
            assert_eq!(g(DOC, path), Ok(want), "{path}");
        }
        assert_eq!(g(DOC, "arr"), Ok(r#"[1,{"k":"v"}]"#));
        for path in "|arr::0|arr::[5]|zz|n::x|arr::[1]::k::z|arr::[-1]|[0]".split('|') {
            assert!(get(DOC, path).is_err(), "{path}");
        }
        assert_eq!(get(DOC, "zz"), Err(NOT_FOUND));
        assert_eq!(g(INSPECT, "Additional::Country"), Ok("United States"));
        assert_eq!(g(INSPECT, "items::[1]::name"), Ok("b"));
        assert_eq!(g(INSPECT, "num"), Ok("42"));
        assert_eq!(g(INSPECT, "quoted"), Ok(r#"a\"b"#));
        let additional = r#"{"Country":"United States","Zone":"us-east-1a"}"#;
        assert_eq!(g(INSPECT, "Additional"), Ok(additional));
        assert_eq!(g(br#"[{"a":1}]"#, "[0]::a"), Ok("1"));
        assert!(get(br#"{"a":1,"b":}"#, "b").is_err());
        assert!(get(b"", "a").is_err());
    }

    #[test]
    fn whitespace_everywhere() {
        let d = b" \n{ \"a\" :\n [ 1 ,\t{ \"k\" : \"v\" } ] , \"b\" : true }\r\n x";
        assert_eq!(value(d), Ok(&d[2..d.len() - 4]));
        assert_eq!(g(d, "a::[1]::k"), Ok("v"));
        assert_eq!(g(d, "b"), Ok("true"));
        assert_eq!(g(b" [ 7 , 8 ] ", "[1]"), Ok("8"));
    }

    #[test]
    fn values_and_kinds() {
        assert_eq!(value(b" -12.5e+3,"), Ok(&b"-12.5e+3"[..]));
        assert_eq!(value(b"0123"), Ok(&b"0"[..]));
        assert_eq!(value(br#""a\"b" x"#), Ok(&br#""a\"b""#[..]));
        let kinds = [K::Object, K::Array, K::String, K::Number, K::Bool, K::Null];
        for (v, k) in r#"{} [] "" -1 false null"#.split(' ').zip(kinds) {
            assert_eq!(kind(value(v.as_bytes()).unwrap()), k, "{v}");
        }
        assert_eq!(value(b"tru"), Err(END));
        assert_eq!(value(b"[1"), Err(END));
        for bad in r#"[1,]|{"a" 1}|{1:2}|-|1.|1e|"\x"|"\u12g4"|nul!|]"#.split('|') {
            assert!(value(bad.as_bytes()).is_err(), "{bad}");
        }
    }

    #[test]
    fn iterators() {
        let keys: Vec<&[u8]> = members(DOC).map(|(k, _)| k).collect();
        let want: [&[u8]; 8] = [b"s", b"n", b"b", b"f", b"arr", b"o", b"dup", b"dup"];
        assert_eq!(keys, want);
        let arr = field(DOC, "arr").unwrap();
        let mut it = elements(arr);
        assert_eq!(it.next(), Some(&b"1"[..]));
        let inner = it.next().unwrap();
        assert_eq!((it.next(), it.error()), (None, None));
        let want: [(&[u8], &[u8]); 1] = [(b"k", br#""v""#)];
        assert_eq!(members(inner).collect::<Vec<_>>(), want);
        assert_eq!(elements(b" [ ] ").count() + members(b"{}").count(), 0);
        let mut bad = members(br#"{"a":1,}"#);
        assert_eq!(bad.next(), Some((&b"a"[..], &b"1"[..])));
        assert_eq!((bad.next(), bad.error()), (None, Some(INVALID)));
        let mut bad = elements(b"{}");
        assert_eq!((bad.next(), bad.error()), (None, Some(INVALID)));
    }

    #[test]
    fn field_and_unescape() {
        assert_eq!(field(br#"{"x":0,"a\u0062":1}"#, "ab"), Some(&b"1"[..]));
        assert_eq!(field(br#"{"\u00e9\"":2}"#, "é\""), Some(&b"2"[..]));
        assert_eq!(field(br#"{"a\u0062":1}"#, "abc"), None);
        assert_eq!(field(DOC, "dup"), Some(&b"1"[..]));
        let unescape = |s: &[u8]| {
            let mut out = String::new();
            unescape_into(s, &mut out).map(|()| out)
        };
        assert_eq!(unescape(br#""a\u00e9\ud83d\ude00\n""#).unwrap(), "aé😀\n");
        let all = br#""\"\\\/\b\f\r\t""#;
        assert_eq!(unescape(all).unwrap(), "\"\\/\u{8}\u{c}\r\t");
        assert_eq!(
            unescape(br#""\ud800x\udc00\ud800""#).unwrap(),
            "\u{FFFD}x\u{FFFD}\u{FFFD}"
        );
        assert_eq!(
            unescape(b"\"a\xffb\xe2\x82\"").unwrap(),
            "a\u{FFFD}b\u{FFFD}"
        );
        assert_eq!(unescape(br#""\q""#), Err(BAD_ESCAPE));
        assert!(unescape(br#""\u12""#).is_err() && unescape(b"\"\\\"").is_err());
        assert!(unescape(b"x").is_err() && unescape(b"\"").is_err());
    }

    #[test]
    fn deep_nesting() {
        let deep = vec![b'['; 100_000];
        assert_eq!(value(&deep), Err(TOO_DEEP));
        assert_eq!(get(&deep, "[0]"), Err(TOO_DEEP));
        let deep_obj = br#"{"a":"#.repeat(100_000);
        assert_eq!(value(&deep_obj), Err(TOO_DEEP));
        assert!(field(&deep_obj, "a").is_none());
        let nest = |n: usize| [vec![b'['; n], vec![b']'; n]].concat();
        assert!(value(&nest(MAX_DEPTH)).is_ok());
        assert_eq!(value(&nest(MAX_DEPTH + 1)), Err(TOO_DEEP));
    }

    #[test]
    fn no_panic_on_random_input() {
        const ALPHABET: &[u8] = b"{}[]\",:\\u0123 afnlrtue.-+Ee";
        const PATHS: [&str; 8] = ["", "a", "[0]", "a::[1]", "[1]::a", "::", "u::[0]::e", "[x]"];
        let mut seed: u64 = 0x2545_f491_4f6c_dd1d;
        let mut rand = move || {
            seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
            (seed >> 33) as usize
        };
        let mut buf = Vec::new();
        for round in 0..50_000 {
            buf.clear();
            if round % 4 == 0 {
                buf.extend_from_slice(&DOC[..rand() % DOC.len()]);
            }
            for _ in 0..rand() % 40 {
                let r = rand();
                // Mostly the alphabet, sometimes (5 in 32) a random byte.
                let c = (r >> 8) as u8;
                buf.push(*ALPHABET.get((r >> 4) % 32).unwrap_or(&c));
            }
            if let Ok(v) = value(&buf) {
                assert_eq!(value(v), Ok(v));
                let mut s = String::new();
                assert_eq!(kind(v) == K::String, unescape_into(v, &mut s).is_ok());
                let (mut m, mut e) = (members(v), elements(v));
                m.by_ref().for_each(drop);
                e.by_ref().for_each(drop);
                assert_eq!(m.error().is_none(), kind(v) == K::Object);
                assert_eq!(e.error().is_none(), kind(v) == K::Array);
            }
            let _ = (members(&buf).count(), elements(&buf).count(), kind(&buf));
            let _ = (field(&buf, "a"), field(&buf, "é"), field(&buf, "a\u{123}"));
            let _ = unescape_into(&buf, &mut String::new());
            let _ = get(&buf, PATHS[rand() % PATHS.len()]);
        }
    }
}
