//! Lexer and parser of the Go `text/template` subset of `-tags` and `SERVICE_*TAGS`
//! (spec/dropin.md, Decisions T3): text, actions with pipelines, field and map chains,
//! variables, string/raw/char/number literals, `if`/`else if`/`else`, `range`, `with`,
//! comments and trim markers. Anything else Go has (`define`, `template`, `block`, `break`,
//! `continue`, `call`, `html`, `js`) is a parse error naming the word.
//!
//! One pass over the source: the lexer hands the parser one token at a time, the parser
//! builds the tree, resolves each variable to a slot and each function name to a [`Func`],
//! and checks nesting, so evaluation never meets an unknown name.

use super::lex::{Lexer, Piece, Tok};
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
