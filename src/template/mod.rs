//! Go `text/template` for tags, as gliderlabs master evaluates `-tags` and fayrus evaluates
//! `SERVICE_TAGS` too (spec/dropin.md section 1, Decisions T1-T6): our own lexer ([`lex`]) and
//! parser ([`parse`]), an evaluator over the container's inspect JSON ([`exec`]) typed by
//! go-dockerclient's types ([`schema`]), the built-ins and the 13 helpers ([`funcs`]), Go's
//! `fmt` for `printf` and printing ([`fmt`]), a raw JSON scanner that never builds a tree
//! ([`json`]) and an RE2-subset matcher for the two `match*` helpers ([`regex`]).
//!
//! A template is parsed once ([`Template::parse`]; `SERVICE_*TAGS` sources go through a small
//! per-thread cache, [`cached`]) and evaluated per service. Evaluation reads the inspect bytes
//! in place: strings without escapes are borrowed, so a typical tag template allocates only
//! its output. It is bounded: 4 KiB of output, 10,000 range iterations, 64 levels of nesting.
//! Nothing here does I/O: `httpGet` calls the function the caller passes, and only the
//! operator's `-tags` gets one.

pub mod exec;
pub mod fmt;
pub mod funcs;
pub mod json;
pub mod lex;
pub mod parse;
pub mod regex;
pub mod schema;

use std::rc::Rc;

pub use parse::ParseError;

/// Longest output of one evaluation.
pub const MAX_OUTPUT: usize = 4096;
/// Most `range` iterations in one evaluation, all loops together.
pub const MAX_ITERATIONS: usize = 10_000;

/// Every function a template may call: Go's built-ins (T3) and registrator's helpers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Func {
    And,
    Or,
    Not,
    Len,
    Index,
    Slice,
    Print,
    Printf,
    Println,
    Urlquery,
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    StrSlice,
    SIndex,
    MIndex,
    ToUpper,
    ToLower,
    Replace,
    Join,
    Split,
    SplitIndex,
    MatchFirstElement,
    MatchAllElements,
    HttpGet,
    JsonParse,
}

const NAMES: &[(&str, Func)] = &[
    ("and", Func::And),
    ("or", Func::Or),
    ("not", Func::Not),
    ("len", Func::Len),
    ("index", Func::Index),
    ("slice", Func::Slice),
    ("print", Func::Print),
    ("printf", Func::Printf),
    ("println", Func::Println),
    ("urlquery", Func::Urlquery),
    ("eq", Func::Eq),
    ("ne", Func::Ne),
    ("lt", Func::Lt),
    ("le", Func::Le),
    ("gt", Func::Gt),
    ("ge", Func::Ge),
    ("strSlice", Func::StrSlice),
    ("sIndex", Func::SIndex),
    ("mIndex", Func::MIndex),
    ("toUpper", Func::ToUpper),
    ("toLower", Func::ToLower),
    ("replace", Func::Replace),
    ("join", Func::Join),
    ("split", Func::Split),
    ("splitIndex", Func::SplitIndex),
    ("matchFirstElement", Func::MatchFirstElement),
    ("matchAllElements", Func::MatchAllElements),
    ("httpGet", Func::HttpGet),
    ("jsonParse", Func::JsonParse),
];

impl Func {
    pub fn from_name(name: &str) -> Option<Func> {
        NAMES.iter().find(|(n, _)| *n == name).map(|(_, f)| *f)
    }

    pub fn name(self) -> &'static str {
        NAMES
            .iter()
            .find(|(_, f)| *f == self)
            .map_or("?", |(n, _)| *n)
    }
}

/// A parsed template.
#[derive(Debug, Clone, PartialEq)]
pub struct Template {
    nodes: Vec<parse::Node>,
    /// Variable slots the evaluation needs (`$` is slot 0).
    slots: usize,
}

/// `httpGet`'s way out: the URL in, the body (at most 64 KiB) out, empty on any failure.
pub type Fetch<'f> = &'f mut dyn FnMut(&str) -> Vec<u8>;
/// [`Fetch`] reborrowed for one call.
pub type FetchRef<'r, 'f> = &'r mut (dyn FnMut(&str) -> Vec<u8> + 'f);

impl Template {
    pub fn parse(src: &str) -> Result<Template, ParseError> {
        let (nodes, slots) = parse::Parser::new(src).parse()?;
        Ok(Template { nodes, slots })
    }

    /// Whether a tag value is a template at all (T1: without `{{` it is taken literally).
    pub fn is_template(src: &str) -> bool {
        src.contains("{{")
    }

    /// Evaluates the template with `doc` (the inspect JSON) as dot, appending to `out`.
    /// `fetch` is `httpGet`'s transport; `None` makes `httpGet` an error (container metadata).
    pub fn render(&self, doc: &[u8], fetch: Option<Fetch>, out: &mut String) -> Result<(), String> {
        exec::run(self, doc, fetch, out)
    }
}

/// Most distinct `SERVICE_*TAGS` templates kept parsed per thread; the cache is emptied when
/// full (a host has few distinct ones; a container cannot make it grow without bound).
const CACHE: usize = 64;

/// A source and what parsing it gave.
type Parsed = (Box<str>, Rc<Result<Template, ParseError>>);

thread_local! {
    static PARSED: std::cell::RefCell<Vec<Parsed>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// `src` parsed, from the per-thread cache when it was parsed before.
pub fn cached(src: &str) -> Rc<Result<Template, ParseError>> {
    PARSED.with(|c| {
        let mut c = c.borrow_mut();
        if let Some((_, t)) = c.iter().find(|(s, _)| &**s == src) {
            return t.clone();
        }
        if c.len() >= CACHE {
            c.clear();
        }
        let t = Rc::new(Template::parse(src));
        c.push((src.into(), t.clone()));
        t
    })
}

#[cfg(test)]
mod tests;
