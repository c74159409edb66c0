//! The lexer of the tag templates: splits the source into text and actions (trim markers and
//! comments handled here), and an action into tokens, checking what Go's lexer checks (what
//! may follow a word, quoted strings, numbers).

use super::parse::ParseError;

#[derive(Debug, Clone, PartialEq)]
pub enum Tok {
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
pub struct Lexer<'s> {
    pub(super) src: &'s str,
    pub(super) pos: usize,
    /// Inside `{{ }}`.
    pub(super) in_action: bool,
    /// The text that follows the current action loses its leading spaces (`-}}`).
    pub(super) trim_next: bool,
}

pub enum Piece {
    Text(String),
    /// `{{`: an action starts.
    Open,
    /// A comment action, already skipped.
    Comment,
}

pub(super) fn is_space(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\r' | b'\n')
}

impl<'s> Lexer<'s> {
    pub(super) fn err<T>(&self, at: usize, msg: impl Into<String>) -> Result<T, ParseError> {
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

    pub(super) fn rest(&self) -> &'s str {
        &self.src[self.pos..]
    }

    /// Outside actions: the next text, action start, or `None` at the end.
    pub(super) fn piece(&mut self) -> Result<Option<Piece>, ParseError> {
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
    pub(super) fn token(&mut self) -> Result<(Tok, bool, usize), ParseError> {
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

    pub(super) fn one(&mut self, t: Tok) -> Tok {
        self.pos += 1;
        t
    }

    /// The identifier characters at `pos + skip`.
    pub(super) fn word(&self, skip: usize) -> &'s str {
        let rest = &self.src[(self.pos + skip).min(self.src.len())..];
        let n = rest
            .bytes()
            .take_while(|&c| c == b'_' || c.is_ascii_alphanumeric())
            .count();
        &rest[..n]
    }

    /// Go's `atTerminator`: what may follow a word.
    pub(super) fn terminated(&self) -> Result<(), ParseError> {
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

    pub(super) fn quoted(&mut self) -> Result<String, ParseError> {
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

    pub(super) fn char_const(&mut self) -> Result<Tok, ParseError> {
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

    pub(super) fn number(&mut self) -> Result<(Tok, bool, usize), ParseError> {
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
