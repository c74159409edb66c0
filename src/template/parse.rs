//! Lexer and parser of the Go `text/template` subset of `-tags` and `SERVICE_*TAGS`
//! (spec/dropin.md, Decisions T3): text, actions with pipelines, field and map chains,
//! variables, string/raw/char/number literals, `if`/`else if`/`else`, `range`, `with`,
//! comments and trim markers. Anything else Go has (`define`, `template`, `block`, `break`,
//! `continue`, `call`, `html`, `js`) is a parse error naming the word.
//!
//! One pass over the source: the lexer hands the parser one token at a time, the parser
//! builds the tree, resolves each variable to a slot and each function name to a [`Func`],
//! and checks nesting, so evaluation never meets an unknown name.

use super::Func;

/// Deepest nesting of blocks and parentheses; Go has no limit, a tag template needs few.
const MAX_DEPTH: usize = 64;

#[derive(Debug, Clone, PartialEq)]
pub enum Node {
    Text(Box<str>),
    Action(Pipe),
    If(Box<Branch>),
    Range(Box<Branch>),
    With(Box<Branch>),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Branch {
    pub pipe: Pipe,
    pub list: Vec<Node>,
    pub otherwise: Vec<Node>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Pipe {
    /// Variables declared (`:=`) or assigned (`=`) by the pipeline: slots.
    pub decl: Vec<usize>,
    pub cmds: Vec<Cmd>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Cmd {
    pub args: Vec<Arg>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Arg {
    Func(Func),
    /// `.` followed by fields (none for plain dot).
    Dot(Vec<Box<str>>),
    /// `$x.A.B`: slot and fields.
    Var(usize, Vec<Box<str>>),
    /// `(pipeline).A.B`.
    Paren(Box<Pipe>, Vec<Box<str>>),
    Str(Box<str>),
    Int(i64),
    Float(f64),
    Bool(bool),
    Nil,
}

/// A parse error: where (1-based line and column) and what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    pub line: usize,
    pub col: usize,
    pub msg: String,
}

impl std::fmt::Display for ParseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "template: tags:{}:{}: {}", self.line, self.col, self.msg)
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Field(Box<str>),
    Dot,
    Var(Box<str>),
    Ident(Box<str>),
    Str(Box<str>),
    Int(i64),
    Float(f64),
    Declare,
    Assign,
    Pipe,
    LParen,
    RParen,
    Comma,
    End,
}

/// Splits the source into text and actions, and an action into tokens.
struct Lexer<'s> {
    src: &'s str,
    pos: usize,
    /// Inside `{{ }}`.
    in_action: bool,
    /// The text that follows the current action loses its leading spaces (`-}}`).
    trim_next: bool,
}

enum Piece {
    Text(String),
    /// `{{`: an action starts.
    Open,
    /// A comment action, already skipped.
    Comment,
}

fn is_space(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\r' | b'\n')
}

impl<'s> Lexer<'s> {
    fn err<T>(&self, at: usize, msg: impl Into<String>) -> Result<T, ParseError> {
        let at = at.min(self.src.len());
        let before = &self.src.as_bytes()[..at];
        let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
        let col = at
            - before
                .iter()
                .rposition(|&b| b == b'\n')
                .map_or(0, |i| i + 1)
            + 1;
        Err(ParseError {
            line,
            col,
            msg: msg.into(),
        })
    }

    fn rest(&self) -> &'s str {
        &self.src[self.pos..]
    }

    /// Outside actions: the next text, action start, or `None` at the end.
    fn piece(&mut self) -> Result<Option<Piece>, ParseError> {
        if self.pos >= self.src.len() {
            return Ok(None);
        }
        let rest = self.rest();
        let open = rest.find("{{").unwrap_or(rest.len());
        if open > 0 {
            let mut text = &rest[..open];
            if std::mem::take(&mut self.trim_next) {
                text = text.trim_start_matches(|c: char| c.is_ascii() && is_space(c as u8));
            }
            let after = &rest[open..];
            if after.starts_with("{{-") && after.as_bytes().get(3).is_some_and(|&b| is_space(b)) {
                text = text.trim_end_matches(|c: char| c.is_ascii() && is_space(c as u8));
            }
            self.pos += open;
            if !text.is_empty() {
                return Ok(Some(Piece::Text(text.to_string())));
            }
            if self.pos >= self.src.len() {
                return Ok(None);
            }
        }
        self.trim_next = false;
        // At `{{`.
        let start = self.pos;
        self.pos += 2;
        let b = self.src.as_bytes();
        if b.get(self.pos) == Some(&b'-') && b.get(self.pos + 1).is_some_and(|&c| is_space(c)) {
            self.pos += 2;
        }
        let inner = self.rest();
        if inner.starts_with("/*") {
            let Some(close) = inner.find("*/") else {
                return self.err(start, "unclosed comment");
            };
            self.pos += close + 2;
            let after = self.rest();
            if let Some(a) = after.strip_prefix(" -}}") {
                self.pos = self.src.len() - a.len();
                self.trim_next = true;
            } else if let Some(a) = after.strip_prefix("}}") {
                self.pos = self.src.len() - a.len();
            } else {
                return self.err(self.pos, "comment ends before closing delimiter");
            }
            return Ok(Some(Piece::Comment));
        }
        self.in_action = true;
        Ok(Some(Piece::Open))
    }

    /// Inside an action: the next token (and whether space came before it), `End` at `}}`.
    fn token(&mut self) -> Result<(Tok, bool, usize), ParseError> {
        let b = self.src.as_bytes();
        let mut spaced = false;
        while self.pos < b.len() {
            if b[self.pos] == b'-' && spaced && self.rest().starts_with("-}}") {
                self.pos += 3;
                self.trim_next = true;
                self.in_action = false;
                return Ok((Tok::End, true, self.pos - 3));
            }
            if !is_space(b[self.pos]) {
                break;
            }
            spaced = true;
            self.pos += 1;
        }
        let at = self.pos;
        let Some(&c) = b.get(self.pos) else {
            return self.err(at, "unclosed action");
        };
        let rest = self.rest();
        if rest.starts_with("}}") {
            self.pos += 2;
            self.in_action = false;
            return Ok((Tok::End, spaced, at));
        }
        let tok = match c {
            b'|' => self.one(Tok::Pipe),
            b'(' => self.one(Tok::LParen),
            b')' => self.one(Tok::RParen),
            b',' => self.one(Tok::Comma),
            b'=' => self.one(Tok::Assign),
            b':' if rest.starts_with(":=") => {
                self.pos += 2;
                Tok::Declare
            }
            b'"' => Tok::Str(self.quoted()?.into()),
            b'`' => {
                let Some(end) = rest[1..].find('`') else {
                    return self.err(at, "unterminated raw quoted string");
                };
                self.pos += end + 2;
                Tok::Str(rest[1..=end].into())
            }
            b'\'' => self.char_const()?,
            b'.' => {
                let name = self.word(1);
                if name.is_empty() {
                    if b.get(self.pos + 1).is_some_and(u8::is_ascii_digit) {
                        return self.number();
                    }
                    self.pos += 1;
                    self.terminated()?;
                    Tok::Dot
                } else {
                    self.pos += 1 + name.len();
                    self.terminated()?;
                    Tok::Field(name.into())
                }
            }
            b'$' => {
                let name = self.word(1);
                self.pos += 1 + name.len();
                self.terminated()?;
                Tok::Var(format!("${name}").into())
            }
            b'+' | b'-' | b'0'..=b'9' => return self.number(),
            _ if c == b'_' || c.is_ascii_alphabetic() => {
                let name = self.word(0);
                self.pos += name.len();
                self.terminated()?;
                Tok::Ident(name.into())
            }
            _ => {
                let ch = rest.chars().next().unwrap_or('\u{fffd}');
                return self.err(at, format!("bad character {}", unicode_name(ch)));
            }
        };
        Ok((tok, spaced, at))
    }

    fn one(&mut self, t: Tok) -> Tok {
        self.pos += 1;
        t
    }

    /// The identifier characters at `pos + skip`.
    fn word(&self, skip: usize) -> &'s str {
        let rest = &self.src[(self.pos + skip).min(self.src.len())..];
        let n = rest
            .bytes()
            .take_while(|&c| c == b'_' || c.is_ascii_alphanumeric())
            .count();
        &rest[..n]
    }

    /// Go's `atTerminator`: what may follow a word.
    fn terminated(&self) -> Result<(), ParseError> {
        match self.src.as_bytes().get(self.pos) {
            None => Ok(()),
            Some(&c) if is_space(c) || matches!(c, b'.' | b',' | b'|' | b':' | b')' | b'(') => {
                Ok(())
            }
            Some(_) if self.rest().starts_with("}}") => Ok(()),
            Some(_) => {
                let ch = self.rest().chars().next().unwrap_or('\u{fffd}');
                self.err(self.pos, format!("bad character {}", unicode_name(ch)))
            }
        }
    }

    fn quoted(&mut self) -> Result<String, ParseError> {
        let start = self.pos;
        let mut out = String::new();
        let mut chars = self.src[start + 1..].char_indices();
        while let Some((i, ch)) = chars.next() {
            match ch {
                '"' => {
                    self.pos = start + 1 + i + 1;
                    return Ok(out);
                }
                '\n' => break,
                '\\' => {
                    let Some((_, e)) = chars.next() else { break };
                    let mut hex = |n: usize| -> Result<char, ParseError> {
                        let mut v = 0u32;
                        for _ in 0..n {
                            let d = chars.next().and_then(|(_, c)| c.to_digit(16));
                            match d {
                                Some(d) => v = v * 16 + d,
                                None => return self.err(start, "invalid syntax in quoted string"),
                            }
                        }
                        char::from_u32(v)
                            .map_or_else(|| self.err(start, "invalid syntax in quoted string"), Ok)
                    };
                    let c = match e {
                        'n' => '\n',
                        't' => '\t',
                        'r' => '\r',
                        'a' => '\x07',
                        'b' => '\x08',
                        'f' => '\x0c',
                        'v' => '\x0b',
                        '\\' => '\\',
                        '"' => '"',
                        'x' => hex(2)?,
                        'u' => hex(4)?,
                        'U' => hex(8)?,
                        '0'..='7' => {
                            let mut v = e as u32 - '0' as u32;
                            for _ in 0..2 {
                                match chars.next().and_then(|(_, c)| c.to_digit(8)) {
                                    Some(d) => v = v * 8 + d,
                                    None => {
                                        return self.err(start, "invalid syntax in quoted string")
                                    }
                                }
                            }
                            char::from_u32(v).unwrap_or('\u{fffd}')
                        }
                        _ => return self.err(start, "invalid syntax in quoted string"),
                    };
                    out.push(c);
                }
                c => out.push(c),
            }
        }
        self.err(start, "unterminated quoted string")
    }

    fn char_const(&mut self) -> Result<Tok, ParseError> {
        let start = self.pos;
        let rest = &self.src[start + 1..];
        let mut it = rest.char_indices();
        let (v, used) = match it.next() {
            Some((_, '\\')) => match it.next() {
                Some((i, e)) => {
                    let v = match e {
                        'n' => '\n',
                        't' => '\t',
                        'r' => '\r',
                        '\\' => '\\',
                        '\'' => '\'',
                        '0' => '\0',
                        _ => return self.err(start, "invalid syntax in character constant"),
                    };
                    (v, i + e.len_utf8())
                }
                None => return self.err(start, "unterminated character constant"),
            },
            Some((i, c)) if c != '\'' && c != '\n' => (c, i + c.len_utf8()),
            _ => return self.err(start, "invalid syntax in character constant"),
        };
        if !rest[used..].starts_with('\'') {
            return self.err(start, "unterminated character constant");
        }
        self.pos = start + 1 + used + 1;
        Ok(Tok::Int(v as i64))
    }

    fn number(&mut self) -> Result<(Tok, bool, usize), ParseError> {
        let at = self.pos;
        let rest = self.rest();
        let n = rest
            .char_indices()
            .take_while(|&(i, c)| {
                c.is_ascii_alphanumeric()
                    || c == '.'
                    || c == '_'
                    || ((c == '+' || c == '-')
                        && (i == 0 || matches!(rest.as_bytes()[i - 1], b'e' | b'E' | b'p' | b'P')))
            })
            .count();
        let text = &rest[..n];
        self.pos += n;
        let tok = parse_number(text)
            .map_or_else(|| self.err(at, format!("bad number syntax: {text:?}")), Ok)?;
        self.terminated()?;
        Ok((tok, true, at))
    }
}

fn parse_number(text: &str) -> Option<Tok> {
    let (neg, digits) = match text.as_bytes().first()? {
        b'-' => (true, &text[1..]),
        b'+' => (false, &text[1..]),
        _ => (false, text),
    };
    let clean: String = digits.chars().filter(|&c| c != '_').collect();
    let int = if let Some(h) = clean.strip_prefix("0x").or(clean.strip_prefix("0X")) {
        i64::from_str_radix(h, 16).ok()
    } else if let Some(o) = clean.strip_prefix("0o").or(clean.strip_prefix("0O")) {
        i64::from_str_radix(o, 8).ok()
    } else if let Some(b) = clean.strip_prefix("0b").or(clean.strip_prefix("0B")) {
        i64::from_str_radix(b, 2).ok()
    } else if clean.len() > 1 && clean.starts_with('0') && clean.bytes().all(|c| c.is_ascii_digit())
    {
        i64::from_str_radix(&clean[1..], 8).ok()
    } else if neg {
        // Parsed with its sign: -9223372036854775808 fits where its digits alone do not.
        return format!("-{clean}")
            .parse::<i64>()
            .ok()
            .map(Tok::Int)
            .or_else(|| {
                (!clean.bytes().all(|c| c.is_ascii_digit()))
                    .then(|| clean.parse::<f64>().ok().map(|f| Tok::Float(-f)))
                    .flatten()
            });
    } else {
        clean.parse::<i64>().ok()
    };
    if let Some(i) = int {
        return Some(Tok::Int(if neg { i.checked_neg()? } else { i }));
    }
    // An integer too large for Go's int is an error, not a float.
    if clean.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    if clean.is_empty()
        || !clean
            .bytes()
            .all(|c| c.is_ascii_digit() || matches!(c, b'.' | b'e' | b'E' | b'+' | b'-'))
    {
        return None;
    }
    let f: f64 = clean.parse().ok()?;
    Some(Tok::Float(if neg { -f } else { f }))
}

/// Go's `%#U`: `U+002D '-'`.
fn unicode_name(c: char) -> String {
    if c.is_control() {
        format!("U+{:04X}", c as u32)
    } else {
        format!("U+{:04X} '{c}'", c as u32)
    }
}

/// What ends a list of nodes.
#[derive(PartialEq)]
enum Stop {
    Eof,
    End,
    /// `{{else}}`, or `{{else if ...}}` with the `if` consumed.
    Else {
        chained_if: bool,
    },
}

pub struct Parser<'s> {
    lex: Lexer<'s>,
    /// Lexical scope: variable names and their slots; `$` is slot 0.
    scope: Vec<(Box<str>, usize)>,
    pub slots: usize,
    depth: usize,
    /// Tokens read ahead, the next one last.
    ahead: Vec<(Tok, bool, usize)>,
}

impl<'s> Parser<'s> {
    pub fn new(src: &'s str) -> Self {
        Parser {
            lex: Lexer {
                src,
                pos: 0,
                in_action: false,
                trim_next: false,
            },
            scope: vec![("$".into(), 0)],
            slots: 1,
            depth: 0,
            ahead: Vec::new(),
        }
    }

    pub fn parse(mut self) -> Result<(Vec<Node>, usize), ParseError> {
        let (nodes, stop) = self.list()?;
        match stop {
            Stop::Eof => Ok((nodes, self.slots)),
            Stop::End => self.lex.err(self.lex.pos, "unexpected {{end}}"),
            Stop::Else { .. } => self.lex.err(self.lex.pos, "unexpected {{else}}"),
        }
    }

    fn next(&mut self) -> Result<(Tok, bool, usize), ParseError> {
        match self.ahead.pop() {
            Some(t) => Ok(t),
            None => self.lex.token(),
        }
    }

    fn peek(&mut self) -> Result<&(Tok, bool, usize), ParseError> {
        if self.ahead.is_empty() {
            let t = self.lex.token()?;
            self.ahead.push(t);
        }
        Ok(&self.ahead[self.ahead.len() - 1])
    }

    fn expect_end(&mut self, what: &str) -> Result<(), ParseError> {
        match self.next()? {
            (Tok::End, _, _) => Ok(()),
            (t, _, at) => self
                .lex
                .err(at, format!("unexpected {} in {what}", describe(&t))),
        }
    }

    fn list(&mut self) -> Result<(Vec<Node>, Stop), ParseError> {
        let mut nodes = Vec::new();
        loop {
            match self.lex.piece()? {
                None => return Ok((nodes, Stop::Eof)),
                Some(Piece::Text(t)) => nodes.push(Node::Text(t.into())),
                Some(Piece::Comment) => {}
                Some(Piece::Open) => {
                    let (tok, _, at) = self.next()?;
                    match tok {
                        Tok::Ident(w) => match &*w {
                            "end" => {
                                self.expect_end("end")?;
                                return Ok((nodes, Stop::End));
                            }
                            "else" => {
                                if matches!(self.peek()?, (Tok::Ident(w), _, _) if &**w == "if") {
                                    self.next()?;
                                    return Ok((nodes, Stop::Else { chained_if: true }));
                                }
                                self.expect_end("else")?;
                                return Ok((nodes, Stop::Else { chained_if: false }));
                            }
                            "if" | "range" | "with" => {
                                let b = self.branch(&w, at)?;
                                nodes.push(match &*w {
                                    "if" => Node::If(b),
                                    "range" => Node::Range(b),
                                    _ => Node::With(b),
                                });
                            }
                            "define" | "template" | "block" | "break" | "continue" => {
                                return self.lex.err(at, format!("{{{{{w}}}}} is not supported"))
                            }
                            _ => {
                                self.ahead.push((Tok::Ident(w), false, at));
                                nodes.push(Node::Action(self.pipeline("command", false)?));
                            }
                        },
                        t => {
                            self.ahead.push((t, false, at));
                            nodes.push(Node::Action(self.pipeline("command", false)?));
                        }
                    }
                }
            }
        }
    }

    /// `if`/`range`/`with` after its keyword, up to and including its `{{end}}`.
    fn branch(&mut self, word: &str, at: usize) -> Result<Box<Branch>, ParseError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return self.lex.err(at, "nested too deeply");
        }
        let mark = self.scope.len();
        let pipe = self.pipeline(word, word == "range")?;
        let (list, stop) = self.list()?;
        let otherwise = match stop {
            Stop::Eof => {
                return self
                    .lex
                    .err(at, format!("unexpected EOF: {word} has no {{{{end}}}}"))
            }
            Stop::End => Vec::new(),
            Stop::Else { chained_if: false } => {
                let (other, stop) = self.list()?;
                if stop != Stop::End {
                    return self.lex.err(
                        self.lex.pos,
                        format!("expected {{{{end}}}} after {word}'s {{{{else}}}}"),
                    );
                }
                other
            }
            Stop::Else { chained_if: true } => {
                if word != "if" {
                    return self.lex.err(at, format!("{{{{else if}}}} in {word}"));
                }
                // `{{else if x}}...{{end}}` is `{{else}}{{if x}}...{{end}}{{end}}`: one `end`.
                vec![Node::If(self.branch("if", self.lex.pos)?)]
            }
        };
        self.scope.truncate(mark);
        self.depth -= 1;
        Ok(Box::new(Branch {
            pipe,
            list,
            otherwise,
        }))
    }

    fn declare(&mut self, name: Box<str>) -> usize {
        let slot = self.slots;
        self.slots += 1;
        self.scope.push((name, slot));
        slot
    }

    fn lookup(&self, name: &str, at: usize) -> Result<usize, ParseError> {
        match self.scope.iter().rev().find(|(n, _)| &**n == name) {
            Some((_, s)) => Ok(*s),
            None => self.lex.err(at, format!("undefined variable \"{name}\"")),
        }
    }

    /// A pipeline up to `}}` (or `)` when `in_paren`, which the caller consumes).
    fn pipeline(&mut self, context: &str, range: bool) -> Result<Pipe, ParseError> {
        self.pipeline_until(context, range, false)
    }

    fn pipeline_until(
        &mut self,
        context: &str,
        range: bool,
        paren: bool,
    ) -> Result<Pipe, ParseError> {
        let mut decl = Vec::new();
        // Declarations: `$x :=`, `$x =`, `$i, $e :=` (range only).
        if let (Tok::Var(_), _, _) = self.peek()? {
            let (first, _, at1) = self.next()?;
            let Tok::Var(first) = first else {
                unreachable!()
            };
            match self.peek()?.0.clone() {
                Tok::Declare => {
                    self.next()?;
                    decl.push(self.declare(first));
                }
                Tok::Assign => {
                    self.next()?;
                    decl.push(self.lookup(&first, at1)?);
                }
                Tok::Comma if range => {
                    self.next()?;
                    let (second, _, at2) = self.next()?;
                    let Tok::Var(second) = second else {
                        return self.lex.err(at2, "range can only initialize variables");
                    };
                    match self.next()? {
                        (Tok::Declare, _, _) => {
                            decl.push(self.declare(first));
                            decl.push(self.declare(second));
                        }
                        (Tok::Assign, _, _) => {
                            decl.push(self.lookup(&first, at1)?);
                            decl.push(self.lookup(&second, at2)?);
                        }
                        (_, _, at) => return self.lex.err(at, "expected := or = in range"),
                    }
                }
                // Not a declaration: `$x` is the first operand; put it back before the peeked.
                _ => self.ahead.push((Tok::Var(first), true, at1)),
            }
        }
        let mut cmds = Vec::new();
        loop {
            let cmd = self.command(paren)?;
            let (tok, _, at) = self.next()?;
            if cmd.args.is_empty() {
                return self.lex.err(at, format!("missing value for {context}"));
            }
            cmds.push(cmd);
            match tok {
                Tok::Pipe => continue,
                Tok::End if !paren => break,
                Tok::RParen if paren => break,
                t => {
                    return self
                        .lex
                        .err(at, format!("unexpected {} in {context}", describe(&t)))
                }
            }
        }
        Ok(Pipe { decl, cmds })
    }

    /// The operands of one command, up to (not including) `|`, `}}` or `)`.
    fn command(&mut self, paren: bool) -> Result<Cmd, ParseError> {
        let mut args = Vec::new();
        loop {
            let (tok, _, at) = self.peek()?.clone();
            let arg = match tok {
                Tok::Pipe | Tok::End => break,
                Tok::RParen if paren => break,
                _ => {
                    self.next()?;
                    match tok {
                        Tok::Ident(w) => match &*w {
                            "true" => Arg::Bool(true),
                            "false" => Arg::Bool(false),
                            "nil" => Arg::Nil,
                            _ => match Func::from_name(&w) {
                                Some(f) => Arg::Func(f),
                                None if is_keyword(&w) => {
                                    return self.lex.err(at, format!("unexpected <{w}> in command"))
                                }
                                None if matches!(&*w, "call" | "html" | "js") => {
                                    return self
                                        .lex
                                        .err(at, format!("function \"{w}\" is not supported"))
                                }
                                None => {
                                    return self
                                        .lex
                                        .err(at, format!("function \"{w}\" not defined"))
                                }
                            },
                        },
                        Tok::Dot => Arg::Dot(Vec::new()),
                        Tok::Field(f) => {
                            let mut fields = vec![f];
                            self.fields(&mut fields)?;
                            Arg::Dot(fields)
                        }
                        Tok::Var(v) => {
                            let slot = self.lookup(&v, at)?;
                            let mut fields = Vec::new();
                            self.fields(&mut fields)?;
                            Arg::Var(slot, fields)
                        }
                        Tok::Str(s) => Arg::Str(s),
                        Tok::Int(i) => Arg::Int(i),
                        Tok::Float(f) => Arg::Float(f),
                        Tok::LParen => {
                            self.depth += 1;
                            if self.depth > MAX_DEPTH {
                                return self.lex.err(at, "nested too deeply");
                            }
                            let pipe =
                                self.pipeline_until("parenthesized pipeline", false, true)?;
                            self.depth -= 1;
                            let mut fields = Vec::new();
                            self.fields(&mut fields)?;
                            Arg::Paren(Box::new(pipe), fields)
                        }
                        t => {
                            return self
                                .lex
                                .err(at, format!("unexpected {} in operand", describe(&t)))
                        }
                    }
                }
            };
            args.push(arg);
        }
        Ok(Cmd { args })
    }

    /// `.A.B` right after a term (no space between).
    fn fields(&mut self, out: &mut Vec<Box<str>>) -> Result<(), ParseError> {
        while let (Tok::Field(_), false, _) = self.peek()? {
            if let (Tok::Field(f), _, _) = self.next()? {
                out.push(f);
            }
        }
        Ok(())
    }
}

fn is_keyword(w: &str) -> bool {
    matches!(
        w,
        "if" | "else"
            | "end"
            | "range"
            | "with"
            | "define"
            | "template"
            | "block"
            | "break"
            | "continue"
    )
}

fn describe(t: &Tok) -> String {
    match t {
        Tok::Field(f) => format!("<.{f}>"),
        Tok::Dot => "<.>".into(),
        Tok::Var(v) => format!("<{v}>"),
        Tok::Ident(w) => format!("<{w}>"),
        Tok::Str(s) => format!("{s:?}"),
        Tok::Int(i) => i.to_string(),
        Tok::Float(f) => f.to_string(),
        Tok::Declare => "\":=\"".into(),
        Tok::Assign => "\"=\"".into(),
        Tok::Pipe => "\"|\"".into(),
        Tok::LParen => "\"(\"".into(),
        Tok::RParen => "\")\"".into(),
        Tok::Comma => "\",\"".into(),
        Tok::End => "\"}}\"".into(),
    }
}
