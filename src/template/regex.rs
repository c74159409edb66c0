//! A small RE2-compatible regular expression matcher (std only) for the template helpers
//! `matchFirstElement` / `matchAllElements`, which in Go call `regexp.MustCompile(r)` and then
//! `MatchString(s)`.
//!
//! Supported (Go syntax, default flags): UTF-8 literals; `.`; escaped punctuation; `\d \D \w
//! \W \s \S` (ASCII, as RE2); `\a \f \n \r \t \v`, octal `\012`, `\x41`, `\x{263a}`; `\b \B
//! \A \z`; `\Q...\E`; classes `[a-z]`, `[^...]` with escapes, `[[:alpha:]]`, `[[:^alpha:]]`;
//! `^ $`; groups `( )`, `(?: )`, `(?P<n> )`, `(?<n> )`; flags `i m s U` as `(?i)` or
//! `(?i-s: )`; `|`; `* + ? {n} {n,} {n,m}` and their lazy forms. Errors carry Go's texts,
//! e.g. "error parsing regexp: missing closing ): `(`".
//!
//! Why it is safe on hostile input: the pattern is parsed in one pass with an explicit stack
//! of open groups (at most 1000, as Go), no recursion, straight into one instruction buffer
//! capped at [`MAX_INSTS`]; repeat counts and their nested products are capped at 1000 as Go
//! does. Matching is a Pike VM that keeps at most one thread per instruction per position of
//! the text, so time is O(program × text) and memory O(program) for any pattern and input.
//!
//! Not implemented: `\p{..}`/`\P{..}` (rejected, with Go's message for an unknown class) and
//! full Unicode case folding (`(?i)` compares simple lower/upper case mappings).

use std::cmp::Ordering;
use std::mem;

/// Largest compiled program ("expression too large" beyond).
const MAX_INSTS: usize = 10_000;
const MAX_DEPTH: usize = 1000;
const MAX_REPEAT: u32 = 1000;
const MAX_CHAR: u32 = 0x10_FFFF;
const FOLD: u8 = 1;
const MULTI: u8 = 2;
const DOTNL: u8 = 4;
const WORD: &[(char, char)] = &[('0', '9'), ('A', 'Z'), ('_', '_'), ('a', 'z')];

type Ranges = Vec<(u32, u32)>;

/// Zero-width assertions.
#[derive(Debug, Clone, Copy)]
enum Look {
    BeginText,
    EndText,
    BeginLine,
    EndLine,
    Word,
    NotWord,
}

impl Look {
    fn holds(self, prev: Option<char>, at: Option<char>) -> bool {
        let word = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_');
        match self {
            Look::BeginText => prev.is_none(),
            Look::EndText => at.is_none(),
            Look::BeginLine => matches!(prev, None | Some('\n')),
            Look::EndLine => matches!(at, None | Some('\n')),
            Look::Word => word(prev) != word(at),
            Look::NotWord => word(prev) == word(at),
        }
    }
}

/// A set of code points as sorted, merged ranges; `neg` applies after case folding, so that
/// `(?i)[^a]` rejects `A` as in Go.
#[derive(Debug, Clone)]
struct Class {
    ranges: Ranges,
    neg: bool,
    fold: bool,
}

impl Class {
    fn matches(&self, c: char) -> bool {
        let has = |c: char| {
            let c = u32::from(c);
            let cmp = |&(lo, hi): &(u32, u32)| match (hi < c, lo > c) {
                (true, _) => Ordering::Less,
                (_, true) => Ordering::Greater,
                _ => Ordering::Equal,
            };
            self.ranges.binary_search_by(cmp).is_ok()
        };
        let folded = || {
            single(c.to_lowercase()).is_some_and(has) || single(c.to_uppercase()).is_some_and(has)
        };
        (has(c) || (self.fold && folded())) != self.neg
    }
}

/// The only char of a case mapping, if it maps to exactly one.
fn single(mut it: impl Iterator<Item = char>) -> Option<char> {
    let c = it.next()?;
    it.next().is_none().then_some(c)
}

#[derive(Debug, Clone, Copy)]
enum Inst {
    Class(usize),
    Assert(Look),
    Split(usize, usize),
    Jmp(usize),
    Match,
}

/// A compiled regular expression: RE2 syntax, Go `regexp` semantics for `MatchString`.
#[derive(Debug, Clone)]
pub struct Regex {
    prog: Vec<Inst>,
    classes: Vec<Class>,
    anchored: bool,
}

impl Regex {
    /// Compiles an RE2 pattern. Err holds Go's message text, e.g.
    /// "error parsing regexp: missing closing ): `(`".
    pub fn new(pattern: &str) -> Result<Regex, String> {
        let mut p = Parser {
            src: pattern,
            ..Parser::default()
        };
        p.parse()?;
        let anchored = matches!(p.prog.first(), Some(Inst::Assert(Look::BeginText)));
        Ok(Regex {
            prog: p.prog,
            classes: p.classes,
            anchored,
        })
    }

    /// Unanchored search, as Go's `MatchString`: true if the pattern matches anywhere in `text`.
    pub fn is_match(&self, text: &str) -> bool {
        let n = self.prog.len();
        let (mut cur, mut next) = (Threads::new(n), Threads::new(n));
        let mut chars = text.chars();
        let (mut prev, mut at) = (None, chars.next());
        loop {
            if (prev.is_none() || !self.anchored) && self.add(&mut cur, 0, prev, at) {
                return true;
            }
            let Some(c) = at else { return false };
            if cur.pcs.is_empty() && self.anchored {
                return false;
            }
            let after = chars.next();
            for &pc in &cur.pcs {
                if let Some(Inst::Class(k)) = self.prog.get(pc) {
                    if self.classes.get(*k).is_some_and(|cl| cl.matches(c))
                        && self.add(&mut next, pc + 1, Some(c), after)
                    {
                        return true;
                    }
                }
            }
            cur.clear();
            mem::swap(&mut cur, &mut next);
            (prev, at) = (Some(c), after);
        }
    }

    /// Adds `pc` and its epsilon closure to `list`; true if that reaches Match.
    fn add(&self, list: &mut Threads, pc: usize, prev: Option<char>, at: Option<char>) -> bool {
        list.stack.push(pc);
        while let Some(pc) = list.stack.pop() {
            match list.on.get_mut(pc) {
                Some(seen) if !*seen => *seen = true,
                _ => continue,
            }
            list.pcs.push(pc);
            match self.prog.get(pc) {
                Some(Inst::Match) => {
                    list.stack.clear();
                    return true;
                }
                Some(Inst::Jmp(t)) => list.stack.push(*t),
                Some(Inst::Split(a, b)) => list.stack.extend([*b, *a]),
                Some(Inst::Assert(l)) if l.holds(prev, at) => list.stack.push(pc + 1),
                _ => {}
            }
        }
        false
    }
}

/// Pike VM thread list: program counters in insertion order, membership, and the work stack
/// of [`Regex::add`].
struct Threads {
    pcs: Vec<usize>,
    on: Vec<bool>,
    stack: Vec<usize>,
}

impl Threads {
    fn new(n: usize) -> Self {
        Threads {
            pcs: Vec::with_capacity(n),
            on: vec![false; n],
            stack: Vec::new(),
        }
    }

    fn clear(&mut self) {
        for &pc in &self.pcs {
            if let Some(b) = self.on.get_mut(pc) {
                *b = false;
            }
        }
        self.pcs.clear();
    }
}

fn error(code: &str, text: &str) -> String {
    format!("error parsing regexp: {code}: `{text}`")
}

fn normalize(mut r: Ranges) -> Ranges {
    r.sort_unstable();
    let mut out: Ranges = Vec::with_capacity(r.len());
    for (lo, hi) in r {
        match out.last_mut() {
            Some(last) if lo <= last.1.saturating_add(1) => last.1 = last.1.max(hi),
            _ => out.push((lo, hi)),
        }
    }
    out
}

/// A built-in class as ranges, complemented within 0..=MAX_CHAR when `neg`.
fn group(r: &[(char, char)], neg: bool) -> Ranges {
    let v = r.iter().map(|&(a, b)| (u32::from(a), u32::from(b)));
    if !neg {
        return v.collect();
    }
    let (mut out, mut next) = (Vec::new(), 0);
    for (lo, hi) in v {
        if lo > next {
            out.push((next, lo - 1));
        }
        next = hi + 1;
    }
    out.push((next, MAX_CHAR));
    out
}

/// `\d \s \w` and their negations, by the letter after the backslash.
fn perl(b: u8) -> Option<Ranges> {
    let r: &[(char, char)] = match b.to_ascii_lowercase() {
        b'd' => &[('0', '9')],
        b's' => &[('\t', '\n'), ('\x0c', '\r'), (' ', ' ')],
        b'w' => WORD,
        _ => return None,
    };
    Some(group(r, b.is_ascii_uppercase()))
}

/// A POSIX class by name (between `[:` and `:]`); a leading `^` negates.
fn posix(name: &str) -> Option<Ranges> {
    let (neg, name) = name.strip_prefix('^').map_or((false, name), |n| (true, n));
    let r: &[(char, char)] = match name {
        "alnum" => &[('0', '9'), ('A', 'Z'), ('a', 'z')],
        "alpha" => &[('A', 'Z'), ('a', 'z')],
        "ascii" => &[('\0', '\x7f')],
        "blank" => &[('\t', '\t'), (' ', ' ')],
        "cntrl" => &[('\0', '\x1f'), ('\x7f', '\x7f')],
        "digit" => &[('0', '9')],
        "graph" => &[('!', '~')],
        "lower" => &[('a', 'z')],
        "print" => &[(' ', '~')],
        "punct" => &[('!', '/'), (':', '@'), ('[', '`'), ('{', '~')],
        "space" => &[('\t', '\r'), (' ', ' ')],
        "upper" => &[('A', 'Z')],
        "word" => WORD,
        "xdigit" => &[('0', '9'), ('A', 'F'), ('a', 'f')],
        _ => return None,
    };
    Some(group(r, neg))
}

/// An open group: where its code and its later alternatives start, the last item of the
/// current alternative (start, weight), the largest weight of earlier items, and the flags to
/// restore at `)`. A weight is Go's product of nested repeat counts, at most 1000.
struct Frame {
    start: usize,
    alts: Vec<usize>,
    last: Option<(usize, u32)>,
    done: u32,
    flags: u8,
}

impl Frame {
    fn new(start: usize, flags: u8) -> Self {
        Frame {
            start,
            alts: Vec::new(),
            last: None,
            done: 1,
            flags,
        }
    }

    fn weight(&self) -> u32 {
        self.last.map_or(self.done, |(_, w)| self.done.max(w))
    }

    fn push(&mut self, start: usize, weight: u32) {
        self.done = self.weight();
        self.last = Some((start, weight));
    }
}

/// Parser and compiler in one pass: each item's code is the tail of `prog` when it ends.
#[derive(Default)]
struct Parser<'a> {
    src: &'a str,
    pos: usize,
    flags: u8,
    classes: Vec<Class>,
    prog: Vec<Inst>,
}

impl<'a> Parser<'a> {
    fn rest(&self) -> &'a str {
        self.src.get(self.pos..).unwrap_or("")
    }

    fn since(&self, start: usize) -> &'a str {
        self.src.get(start..self.pos).unwrap_or("")
    }

    fn peek(&self) -> Option<char> {
        self.rest().chars().next()
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.pos += c.len_utf8();
        Some(c)
    }

    fn eat(&mut self, c: char) -> bool {
        let ok = self.peek() == Some(c);
        if ok {
            self.pos += c.len_utf8();
        }
        ok
    }

    fn emit(&mut self, inst: Inst) -> Result<(), String> {
        self.copy(&[inst], self.prog.len())
    }

    /// Appends `code`, compiled to start at `base`, moving its jump targets along.
    fn copy(&mut self, code: &[Inst], base: usize) -> Result<(), String> {
        if self.prog.len() + code.len() > MAX_INSTS {
            return Err(error("expression too large", self.src));
        }
        let d = self.prog.len().wrapping_sub(base);
        self.prog.extend(code.iter().map(|&i| match i {
            Inst::Split(a, b) => Inst::Split(a.wrapping_add(d), b.wrapping_add(d)),
            Inst::Jmp(t) => Inst::Jmp(t.wrapping_add(d)),
            i => i,
        }));
        Ok(())
    }

    fn patch(&mut self, at: usize, inst: Inst) {
        if let Some(slot) = self.prog.get_mut(at) {
            *slot = inst;
        }
    }

    /// Emits a one-instruction item.
    fn item(&mut self, f: &mut Frame, inst: Inst) -> Result<(), String> {
        f.push(self.prog.len(), 1);
        self.emit(inst)
    }

    fn class_item(&mut self, f: &mut Frame, ranges: Ranges, neg: bool) -> Result<(), String> {
        self.classes.push(Class {
            ranges,
            neg,
            fold: self.flags & FOLD != 0,
        });
        self.item(f, Inst::Class(self.classes.len() - 1))
    }

    fn lit(&mut self, f: &mut Frame, c: u32) -> Result<(), String> {
        self.class_item(f, vec![(c, c)], false)
    }

    fn parse(&mut self) -> Result<(), String> {
        let (mut stack, mut f) = (Vec::new(), Frame::new(0, 0));
        let mut last_repeat = None;
        while let Some(c) = self.peek() {
            let mut repeat = None;
            match c {
                '|' => {
                    self.pos += 1;
                    f.done = f.weight();
                    f.last = None;
                    f.alts.push(self.prog.len());
                }
                ')' => {
                    let Some(outer) = stack.pop() else {
                        return Err(error("unexpected )", self.src));
                    };
                    self.pos += 1;
                    let inner = mem::replace(&mut f, outer);
                    self.close(&inner)?;
                    self.flags = inner.flags;
                    f.push(inner.start, inner.weight());
                }
                '(' => {
                    let outer = self.flags;
                    if self.group_open()? {
                        if stack.len() >= MAX_DEPTH {
                            return Err(error("expression nests too deeply", self.src));
                        }
                        stack.push(mem::replace(&mut f, Frame::new(self.prog.len(), outer)));
                    }
                }
                '*' | '+' | '?' | '{' => repeat = self.repeat(&mut f, last_repeat)?,
                _ => self.atom(&mut f)?,
            }
            last_repeat = repeat;
        }
        if !stack.is_empty() {
            return Err(error("missing closing )", self.src));
        }
        self.close(&f)?;
        self.emit(Inst::Match)
    }

    /// Rewrites a finished group with alternatives into split/jump code, in place.
    fn close(&mut self, f: &Frame) -> Result<(), String> {
        if f.alts.is_empty() {
            return Ok(());
        }
        let code = self.prog.split_off(f.start.min(self.prog.len()));
        let mut bounds = vec![f.start];
        bounds.extend(&f.alts);
        bounds.push(f.start + code.len());
        let mut jumps = Vec::new();
        for (i, w) in bounds.windows(2).enumerate() {
            let seg = code.get(w[0].saturating_sub(f.start)..w[1].saturating_sub(f.start));
            let seg = seg.unwrap_or_default();
            if i + 2 == bounds.len() {
                self.copy(seg, w[0])?;
                break;
            }
            let split = self.prog.len();
            self.emit(Inst::Split(0, 0))?;
            self.copy(seg, w[0])?;
            jumps.push(self.prog.len());
            self.emit(Inst::Jmp(0))?;
            self.patch(split, Inst::Split(split + 1, self.prog.len()));
        }
        let end = self.prog.len();
        jumps
            .into_iter()
            .for_each(|j| self.patch(j, Inst::Jmp(end)));
        Ok(())
    }

    /// Consumes a group opener; false for a flags-only `(?i)`, which sets `self.flags`.
    fn group_open(&mut self) -> Result<bool, String> {
        let (start, r) = (self.pos, self.rest());
        let b = r.as_bytes();
        if b.get(1) != Some(&b'?') {
            self.pos += 1;
            return Ok(true);
        }
        let begin = match (b.get(2), b.get(3)) {
            (Some(b'P'), Some(b'<')) if b.len() > 4 => Some(4),
            (Some(b'<'), _) if b.len() > 3 => Some(3),
            _ => None,
        };
        if let Some(begin) = begin {
            let Some(end) = r.find('>') else {
                return Err(error("invalid named capture", r));
            };
            let name = r.get(begin..end).unwrap_or("");
            if name.is_empty() || !name.bytes().all(|c| c == b'_' || c.is_ascii_alphanumeric()) {
                return Err(error("invalid named capture", r.get(..=end).unwrap_or(r)));
            }
            self.pos += end + 1;
            return Ok(true);
        }
        self.pos += 2;
        let (mut flags, mut neg, mut saw) = (self.flags, false, false);
        while let Some(c) = self.bump() {
            let bit = match c {
                'i' => FOLD,
                'm' => MULTI,
                's' => DOTNL,
                'U' => 0, // non-greedy: irrelevant to is_match
                '-' if !neg => {
                    (neg, saw) = (true, false);
                    continue;
                }
                ':' | ')' if !neg || saw => {
                    self.flags = flags;
                    return Ok(c == ':');
                }
                _ => break,
            };
            flags = if neg { flags & !bit } else { flags | bit };
            saw = true;
        }
        Err(error(
            "invalid or unsupported Perl syntax",
            self.since(start),
        ))
    }

    /// Applies `* + ? {..}` to the last item; returns where the operator began, or None when
    /// `{` is a literal.
    fn repeat(&mut self, f: &mut Frame, last: Option<usize>) -> Result<Option<usize>, String> {
        let start = self.pos;
        let (min, max) = match self.bump() {
            Some('*') => (0, None),
            Some('+') => (1, None),
            Some('?') => (0, Some(1)),
            _ => match self.braces() {
                None => {
                    self.pos = start + 1;
                    self.lit(f, u32::from('{'))?;
                    return Ok(None);
                }
                Some((min, max))
                    if min > MAX_REPEAT || max.is_some_and(|m| m > MAX_REPEAT || m < min) =>
                {
                    return Err(error("invalid repeat count", self.since(start)));
                }
                Some(r) => r,
            },
        };
        self.eat('?');
        if let Some(l) = last {
            return Err(error("invalid nested repetition operator", self.since(l)));
        }
        let Some((at, w)) = f.last else {
            return Err(error(
                "missing argument to repetition operator",
                self.since(start),
            ));
        };
        let weight = if max == Some(0) {
            1
        } else {
            w.saturating_mul(max.unwrap_or(min).max(1))
        };
        if (min >= 2 || max.is_some_and(|m| m >= 2)) && weight > MAX_REPEAT {
            return Err(error("invalid repeat count", self.since(start)));
        }
        f.last = Some((at, weight));
        let x = self.prog.split_off(at.min(self.prog.len()));
        let mut loop_at = at;
        for _ in 0..min {
            loop_at = self.prog.len();
            self.copy(&x, at)?;
        }
        match max {
            None if min > 0 => self.emit(Inst::Split(loop_at, self.prog.len() + 1))?,
            None => {
                self.emit(Inst::Split(at + 1, at + x.len() + 2))?;
                self.copy(&x, at)?;
                self.emit(Inst::Jmp(at))?;
            }
            Some(max) => {
                let mut splits = Vec::new();
                for _ in min..max {
                    splits.push(self.prog.len());
                    self.emit(Inst::Split(0, 0))?;
                    self.copy(&x, at)?;
                }
                let end = self.prog.len();
                splits
                    .into_iter()
                    .for_each(|s| self.patch(s, Inst::Split(s + 1, end)));
            }
        }
        Ok(Some(start))
    }

    /// The rest of `{n}`, `{n,}` or `{n,m}` after `{`; None if it is not a repeat.
    fn braces(&mut self) -> Option<(u32, Option<u32>)> {
        let min = self.int()?;
        let max = if !self.eat(',') {
            Some(min)
        } else if self.peek() == Some('}') {
            None
        } else {
            Some(self.int()?)
        };
        self.eat('}').then_some((min, max))
    }

    /// A decimal without leading zeros, saturating (large values are invalid anyway).
    fn int(&mut self) -> Option<u32> {
        let r = self.rest();
        let n = r.bytes().take_while(u8::is_ascii_digit).count();
        if n == 0 || (n > 1 && r.starts_with('0')) {
            return None;
        }
        self.pos += n;
        let digit = |v: u32, b: u8| v.saturating_mul(10).saturating_add(u32::from(b - b'0'));
        Some(r.bytes().take(n).fold(0, digit))
    }

    fn atom(&mut self, f: &mut Frame) -> Result<(), String> {
        let multi = self.flags & MULTI != 0;
        match self.peek() {
            Some('[') => {
                let (ranges, neg) = self.class()?;
                self.class_item(f, ranges, neg)
            }
            Some('\\') => self.escape_atom(f),
            _ => match self.bump() {
                Some('^') => self.item(
                    f,
                    Inst::Assert(if multi {
                        Look::BeginLine
                    } else {
                        Look::BeginText
                    }),
                ),
                Some('$') => self.item(
                    f,
                    Inst::Assert(if multi { Look::EndLine } else { Look::EndText }),
                ),
                Some('.') if self.flags & DOTNL != 0 => {
                    self.class_item(f, vec![(0, MAX_CHAR)], false)
                }
                Some('.') => self.class_item(f, vec![(0, 9), (11, MAX_CHAR)], false),
                Some(c) => self.lit(f, u32::from(c)),
                None => Ok(()),
            },
        }
    }

    fn escape_atom(&mut self, f: &mut Frame) -> Result<(), String> {
        let r = self.rest();
        let Some(&b) = r.as_bytes().get(1) else {
            return Err(error("trailing backslash at end of expression", ""));
        };
        let look = match b {
            b'A' => Look::BeginText,
            b'z' => Look::EndText,
            b'b' => Look::Word,
            b'B' => Look::NotWord,
            b'C' => return Err(error("invalid escape sequence", "\\C")),
            b'p' | b'P' => return Err(self.unicode_err()),
            b'Q' => {
                let body = r.get(2..).unwrap_or("");
                let (lit, len) = match body.find("\\E") {
                    Some(i) => (body.get(..i).unwrap_or(""), i + 2),
                    None => (body, body.len()),
                };
                self.pos += 2 + len;
                return lit.chars().try_for_each(|c| self.lit(f, u32::from(c)));
            }
            _ => {
                if let Some(g) = perl(b) {
                    self.pos += 2;
                    return self.class_item(f, g, false);
                }
                let c = self.escape()?;
                return self.lit(f, c);
            }
        };
        self.pos += 2;
        self.item(f, Inst::Assert(look))
    }

    /// Go's message for `\p..`: it names unknown classes, and we know none.
    fn unicode_err(&self) -> String {
        let r = self.rest();
        let tail = r.get(2..).unwrap_or("");
        let end = match tail.chars().next() {
            Some('{') => r.find('}').map_or(r.len(), |e| e + 1),
            c => 2 + c.map_or(0, char::len_utf8),
        };
        error("invalid character class range", r.get(..end).unwrap_or(r))
    }

    /// A single-character escape at `\`, as Go's `parseEscape`.
    fn escape(&mut self) -> Result<u32, String> {
        let start = self.pos;
        self.pos += 1;
        let Some(c) = self.bump() else {
            return Err(error("trailing backslash at end of expression", ""));
        };
        let octal = |c: Option<char>| c.and_then(|c| c.to_digit(8));
        match c {
            '1'..='7' if octal(self.peek()).is_none() => {}
            '0'..='7' => {
                let mut r = c.to_digit(8).unwrap_or(0);
                for _ in 1..3 {
                    let Some(d) = octal(self.peek()) else { break };
                    r = r * 8 + d;
                    self.pos += 1;
                }
                return Ok(r);
            }
            'x' => match self.bump() {
                None => {}
                Some('{') => {
                    let (mut r, mut n) = (0u32, 0);
                    while let Some(d) = self.bump() {
                        if d == '}' && n > 0 {
                            return Ok(r);
                        }
                        match d.to_digit(16) {
                            Some(v) if r * 16 + v <= MAX_CHAR => (r, n) = (r * 16 + v, n + 1),
                            _ => break,
                        }
                    }
                }
                Some(h) => {
                    let lo = self.bump().and_then(|d| d.to_digit(16));
                    if let (Some(a), Some(b)) = (h.to_digit(16), lo) {
                        return Ok(a * 16 + b);
                    }
                }
            },
            'a' => return Ok(7),
            'f' => return Ok(12),
            'n' => return Ok(10),
            'r' => return Ok(13),
            't' => return Ok(9),
            'v' => return Ok(11),
            c if c.is_ascii() && !c.is_ascii_alphanumeric() => return Ok(u32::from(c)),
            _ => {}
        }
        Err(error("invalid escape sequence", self.since(start)))
    }

    /// A bracketed class at `[`, as Go's `parseClass`: its ranges and whether it is negated.
    fn class(&mut self) -> Result<(Ranges, bool), String> {
        let start = self.pos;
        self.pos += 1;
        let neg = self.eat('^');
        let mut ranges = Vec::new();
        let mut first = true;
        while first || !self.eat(']') {
            first = false;
            let (from, r) = (self.pos, self.rest());
            if let Some(i) = r
                .strip_prefix("[:")
                .filter(|t| !t.is_empty())
                .and_then(|t| t.find(":]"))
            {
                let name = r.get(..i + 4).unwrap_or(r);
                let g = posix(name.get(2..i + 2).unwrap_or(""));
                ranges.extend(g.ok_or_else(|| error("invalid character class range", name))?);
                self.pos += i + 4;
                continue;
            }
            if r.starts_with("\\p") || r.starts_with("\\P") {
                return Err(self.unicode_err());
            }
            if let Some(g) = r
                .strip_prefix('\\')
                .and_then(|t| t.bytes().next())
                .and_then(perl)
            {
                ranges.extend(g);
                self.pos += 2;
                continue;
            }
            let lo = self.class_char(start)?;
            let mut hi = lo;
            if self
                .rest()
                .strip_prefix('-')
                .is_some_and(|t| !t.is_empty() && !t.starts_with(']'))
            {
                self.pos += 1;
                hi = self.class_char(start)?;
                if hi < lo {
                    return Err(error("invalid character class range", self.since(from)));
                }
            }
            ranges.push((lo, hi));
        }
        Ok((normalize(ranges), neg))
    }

    fn class_char(&mut self, start: usize) -> Result<u32, String> {
        match self.peek() {
            None => Err(error(
                "missing closing ]",
                self.src.get(start..).unwrap_or(""),
            )),
            Some('\\') => self.escape(),
            Some(_) => Ok(self.bump().map_or(0, u32::from)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Regex;

    fn m(p: &str, t: &str) -> bool {
        Regex::new(p)
            .unwrap_or_else(|e| panic!("{p}: {e}"))
            .is_match(t)
    }

    /// (pattern, texts it matches, texts it does not match), checked against Go 1.19.
    const CASES: &[(&str, &[&str], &[&str])] = &[
        (
            "^SERVICE_",
            &["SERVICE_8105_NAME=foo"],
            &["HOME=/x", "X_SERVICE_"],
        ),
        ("a|b", &["xbx", "a"], &["c", ""]),
        ("a|", &["zzz", ""], &[]),
        ("", &["anything", ""], &[]),
        ("[a-c]x", &["zbx"], &["dx", "x"]),
        ("[^a-c]", &["abcd", "\n"], &["abc", ""]),
        ("^abc$", &["abc"], &["abcd", "xabc", "abc\n"]),
        ("(?m)^b$", &["a\nb\nc"], &["a\nbc"]),
        ("^b$", &["b"], &["a\nb\nc"]),
        ("\\Aab\\z", &["ab"], &["abc"]),
        ("a^b", &[], &["a^b", "ab"]),
        ("\\d+", &["ab12"], &["ab"]),
        ("^\\d+$", &["123"], &["12a"]),
        ("^a{2,3}$", &["aa", "aaa"], &["a", "aaaa"]),
        ("^a{2}$", &["aa"], &["a", "aaa"]),
        ("^a{2,}$", &["aa", "aaaaa"], &["a"]),
        ("^(ab){0}$", &[""], &["ab"]),
        ("^a{2,3}?$", &["aa"], &["a"]),
        ("a+?b", &["aab"], &["a"]),
        ("a??b", &["b"], &["a"]),
        ("a{,2}", &["a{,2}"], &["aa"]),
        ("a{", &["a{"], &["a"]),
        ("x{01}", &["x{01}"], &["x"]),
        ("(?i)abc", &["ABC", "aBc"], &["AB"]),
        ("abc", &["abc"], &["ABC"]),
        ("(?i:a)b", &["Ab"], &["AB"]),
        ("(?i)a|b", &["B"], &["c"]),
        ("x(?i)y", &["xY"], &["XY"]),
        ("(a(?i)b)c", &["aBc"], &["aBC"]),
        ("(?i-i)a", &["a"], &["A"]),
        ("(?i)[^a]", &["b"], &["A", "a"]),
        ("(?i)[a-c]", &["B"], &["d"]),
        ("(?i)é", &["É"], &["e"]),
        ("x*", &["", "y"], &[]),
        ("^$", &[""], &["a"]),
        ("é", &["café"], &["cafe"]),
        ("^caf.$", &["café"], &["caf"]),
        ("a.b", &["a-b"], &["a\nb"]),
        ("(?s)a.b", &["a\nb"], &["ab"]),
        ("\\bfoo\\b", &["a foo b", "foo"], &["afoo", "foo_"]),
        ("\\Bfoo", &["afoo"], &["foo"]),
        ("(a|aa)*c", &["aaaac", "c"], &["aaaa"]),
        ("^(a|aa)*$", &["aaaaa", ""], &["ab"]),
        ("(|a)+b", &["b"], &["a"]),
        ("[]a]", &["]"], &["b"]),
        ("[^]a]", &["b"], &["]"]),
        ("[a-]", &["-"], &["b"]),
        ("[a-b-c]", &["-", "c"], &["d"]),
        ("[\\d\\-x]", &["-", "5"], &["y"]),
        ("[[:alpha:]]+", &["x"], &["123"]),
        ("[[:^alpha:]]", &["1"], &["abc"]),
        ("[[:space:]]", &["\x0b"], &["a"]),
        ("[[:punct:]]", &["a`"], &["a"]),
        ("\\s", &["a b", "\t"], &["\x0b"]),
        ("\\S", &["a"], &["   "]),
        ("\\w+", &["_"], &["--"]),
        ("\\W", &["a-"], &["a_1"]),
        ("\\D", &["12x"], &["12"]),
        ("\\x41\\x{263a}\\101\\0", &["A☺A\0"], &["A"]),
        ("\\v\\f\\t\\r\\n\\a", &["\x0b\x0c\t\r\n\x07"], &["v"]),
        ("a\\.b\\/\\-\\{", &["a.b/-{"], &["axb/-{"]),
        ("\\Q.*\\E+", &[".**"], &["ab"]),
        ("\\Qa|b", &["a|b"], &["a"]),
        ("(?P<name>ab)+$", &["abab"], &["aba"]),
        ("(?<x>b)", &["abc"], &["a"]),
        ("(?)a(?:)", &["a"], &["b"]),
        ("^*a", &["a"], &[]),
        ("a(?i)*", &["aaa"], &[]),
        ("[a-z]{1000}", &[], &["abc"]),
        ("\\x{D800}", &[], &["a"]),
    ];

    #[test]
    fn matching() {
        for &(p, yes, no) in CASES {
            yes.iter()
                .for_each(|t| assert!(m(p, t), "{p:?} should match {t:?}"));
            no.iter()
                .for_each(|t| assert!(!m(p, t), "{p:?} should not match {t:?}"));
        }
    }

    #[test]
    fn errors() {
        let cases: &[(&str, &str)] = &[
            ("(", "missing closing ): `(`"),
            ("a(b|c", "missing closing ): `a(b|c`"),
            (")", "unexpected ): `)`"),
            ("a)b", "unexpected ): `a)b`"),
            ("[a", "missing closing ]: `[a`"),
            ("x[^", "missing closing ]: `[^`"),
            ("[]", "missing closing ]: `[]`"),
            ("\\1", "invalid escape sequence: `\\1`"),
            ("\\8", "invalid escape sequence: `\\8`"),
            ("[\\b]", "invalid escape sequence: `\\b`"),
            ("\\x{110000}", "invalid escape sequence: `\\x{110000`"),
            ("\\xZZ", "invalid escape sequence: `\\xZZ`"),
            ("\\", "trailing backslash at end of expression: ``"),
            ("\\p{Foo}x", "invalid character class range: `\\p{Foo}`"),
            ("*", "missing argument to repetition operator: `*`"),
            ("a|+?", "missing argument to repetition operator: `+?`"),
            ("{2}", "missing argument to repetition operator: `{2}`"),
            ("a**", "invalid nested repetition operator: `**`"),
            ("a*?+", "invalid nested repetition operator: `*?+`"),
            ("a{2}{3}", "invalid nested repetition operator: `{2}{3}`"),
            ("[z-a]", "invalid character class range: `z-a`"),
            ("[[:foo:]]", "invalid character class range: `[:foo:]`"),
            ("a{1001}", "invalid repeat count: `{1001}`"),
            ("a{2,1}", "invalid repeat count: `{2,1}`"),
            ("(a{1000}){1000}", "invalid repeat count: `{1000}`"),
            ("(?<", "invalid or unsupported Perl syntax: `(?<`"),
            ("(?x)", "invalid or unsupported Perl syntax: `(?x`"),
            ("(?i-)", "invalid or unsupported Perl syntax: `(?i-)`"),
            ("(?P<a-b>x)", "invalid named capture: `(?P<a-b>`"),
            ("(?P<ab", "invalid named capture: `(?P<ab`"),
            (
                "(?:abcdefghij){1000}",
                "expression too large: `(?:abcdefghij){1000}`",
            ),
        ];
        for &(p, want) in cases {
            let got = Regex::new(p).err();
            assert_eq!(
                got.as_deref(),
                Some(format!("error parsing regexp: {want}").as_str())
            );
        }
    }

    #[test]
    fn pathological_inputs_are_fast() {
        let start = std::time::Instant::now();
        assert!(!m("(a*)*b", &"a".repeat(30)));
        let text = "a".repeat(5_000);
        for p in [
            "(a*)*b",
            "(a|aa)*c",
            "(x+x+)+y",
            "(a?){500}a{500}b",
            "(.*)*$x",
        ] {
            assert!(!m(p, &text), "{p}");
        }
        assert!(
            start.elapsed().as_secs() < 10,
            "too slow: {:?}",
            start.elapsed()
        );
    }

    #[test]
    fn deep_nesting_needs_no_recursion() {
        let run = || {
            let deep = format!("{}a{}", "(".repeat(1000), ")*".repeat(1000));
            assert!(m(&deep, "xa"));
            let too = format!("{}a{}", "(?:".repeat(1001), ")".repeat(1001));
            let e = Regex::new(&too).err().unwrap_or_default();
            assert!(e.starts_with("error parsing regexp: expression nests too deeply"));
        };
        let h = std::thread::Builder::new().stack_size(64 << 10).spawn(run);
        h.unwrap().join().unwrap();
    }

    #[test]
    fn random_patterns_never_panic() {
        let alphabet: Vec<char> = "()[]{}*+?|^$\\.-a1:,^P<>xi-=2dbé".chars().collect();
        let texts = ["", "a", "a1-:", "aaaaaaaaab", "\n{}é", "x:a1^$"];
        let mut seed: u64 = 0x2545_F491_4F6C_DD1D;
        let mut next = move || {
            seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
            (seed >> 33) as usize
        };
        for _ in 0..20_000 {
            let len = next() % 12;
            let p: String = (0..len)
                .map(|_| alphabet[next() % alphabet.len()])
                .collect();
            let re = match Regex::new(&p) {
                Ok(re) => re,
                Err(e) => {
                    assert!(e.starts_with("error parsing regexp: "), "{p:?}: {e}");
                    continue;
                }
            };
            // A match anywhere of p is one of (?:p) and of (?:p)+ too, and the other way round.
            let wrapped =
                [format!("(?:{p})"), format!("(?:{p})+")].map(|w| Regex::new(&w).unwrap());
            for t in texts {
                let want = re.is_match(t);
                assert!(
                    wrapped.iter().all(|w| w.is_match(t) == want),
                    "{p:?} on {t:?}"
                );
            }
        }
    }
}
