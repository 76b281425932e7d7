//! Consul's `?filter=` expressions (go-bexpr v0.1.2, the version Consul pins): parsed once per
//! request, checked against the schema of what the endpoint lists (every selector must name a
//! field, every operator must suit the field, every value is converted to the field's type
//! once, every regular expression compiled), then evaluated on each element's JSON as the
//! endpoint answers it.
//!
//! Grammar: `or` < `and` < `not` < parentheses; matches are `Sel == V`, `Sel != V`,
//! `Sel contains V`, `Sel not contains V`, `Sel matches V`, `Sel not matches V`,
//! `Sel is empty`, `Sel is not empty`, `V in Sel`, `V not in Sel`. Selectors are dotted
//! field names (exact case) with `["key"]` for map keys; values are `"..."` (Go escapes),
//! `` `...` `` (raw), numbers, or bare words. Semantics (go-bexpr): `in` on a string is a
//! substring test, on a list an element test, on a map a key test; a selector that goes
//! through a list of objects is true when any element matches (false for none); a missing
//! map key makes `==`, `in` and `is not empty` false and every other operator true.

use std::collections::BTreeMap;
use std::fmt;

use serde_json::Value;

/// A filter that could not be made: the message is go-bexpr's (as Consul words it).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("Failed to create boolean expression evaluator: {0}")]
pub struct FilterError(pub String);

/// The type of a filterable field.
#[derive(Debug, Clone)]
pub enum Kind {
    Str,
    Int,
    Float,
    Bool,
    /// A list of strings (`Tags`).
    StrList,
    /// A string-keyed map (`Meta`), each value of this kind.
    Map(Box<Kind>),
    /// An object with these fields.
    Struct(Fields),
    /// A list of objects (`Checks`): a selector through it matches when any element does.
    StructList(Fields),
}

/// An object's fields, by exact name.
pub type Fields = BTreeMap<&'static str, Kind>;

/// Build [`Fields`] from pairs.
pub fn fields<const N: usize>(pairs: [(&'static str, Kind); N]) -> Fields {
    pairs.into_iter().collect()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Equal,
    NotEqual,
    In,
    NotIn,
    IsEmpty,
    IsNotEmpty,
    Matches,
    NotMatches,
}

impl Op {
    fn name(self) -> &'static str {
        match self {
            Op::Equal => "Equal",
            Op::NotEqual => "Not Equal",
            Op::In => "In",
            Op::NotIn => "Not In",
            Op::IsEmpty => "Is Empty",
            Op::IsNotEmpty => "Is Not Empty",
            Op::Matches => "Matches",
            Op::NotMatches => "Not Matches",
        }
    }

    fn negated(self) -> bool {
        matches!(
            self,
            Op::NotEqual | Op::NotIn | Op::IsEmpty | Op::NotMatches
        )
    }

    /// The operator this one negates (`!=` of `==`).
    fn positive(self) -> Op {
        match self {
            Op::NotEqual => Op::Equal,
            Op::NotIn => Op::In,
            Op::IsEmpty => Op::IsNotEmpty,
            Op::NotMatches => Op::Matches,
            o => o,
        }
    }
}

/// A parsed expression.
#[derive(Debug, Clone)]
enum Expr {
    And(Box<Expr>, Box<Expr>),
    Or(Box<Expr>, Box<Expr>),
    Not(Box<Expr>),
    Match {
        selector: Vec<String>,
        op: Op,
        value: Option<String>,
    },
}

// === the parser ===

struct Parser<'a> {
    s: &'a str,
    pos: usize,
}

/// A parse error at a byte offset, shown as go-bexpr's parser does: `line:col (offset): ...`.
fn at(s: &str, offset: usize, msg: impl fmt::Display) -> FilterError {
    let before = &s[..offset.min(s.len())];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    FilterError(format!("{line}:{col} ({offset}): {msg}"))
}

fn rule(s: &str, offset: usize, name: &str, msg: &str) -> FilterError {
    at(s, offset, format!("rule {name:?}: {msg}"))
}

fn is_ws(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\r' | b'\n')
}

impl<'a> Parser<'a> {
    fn peek(&self) -> Option<u8> {
        self.s.as_bytes().get(self.pos).copied()
    }

    fn rest(&self) -> &'a str {
        &self.s[self.pos..]
    }

    fn ws(&mut self) -> bool {
        let start = self.pos;
        while self.peek().is_some_and(is_ws) {
            self.pos += 1;
        }
        self.pos > start
    }

    fn lit(&mut self, t: &str) -> bool {
        if self.rest().starts_with(t) {
            self.pos += t.len();
            true
        } else {
            false
        }
    }

    /// `_ word _`-style keywords: whitespace, the word, whitespace (or `need_after` false:
    /// anything); nothing consumed unless it all matches.
    fn keyword(&mut self, words: &[&str], need_after: bool) -> bool {
        let start = self.pos;
        for w in words {
            if !self.ws() || !self.lit(w) {
                self.pos = start;
                return false;
            }
        }
        if need_after && !self.peek().is_some_and(is_ws) {
            self.pos = start;
            return false;
        }
        true
    }

    fn expected(&self, what: &str) -> FilterError {
        at(
            self.s,
            self.pos,
            format!("no match found, expected: {what}"),
        )
    }

    fn or(&mut self) -> Result<Expr, FilterError> {
        let left = self.and()?;
        let save = self.pos;
        if self.keyword(&["or"], true) {
            self.ws();
            let right = self.or()?;
            return Ok(Expr::Or(Box::new(left), Box::new(right)));
        }
        self.pos = save;
        Ok(left)
    }

    fn and(&mut self) -> Result<Expr, FilterError> {
        let left = self.not()?;
        let save = self.pos;
        if self.keyword(&["and"], true) {
            self.ws();
            let right = self.and()?;
            return Ok(Expr::And(Box::new(left), Box::new(right)));
        }
        self.pos = save;
        Ok(left)
    }

    fn not(&mut self) -> Result<Expr, FilterError> {
        if self.rest().starts_with("not")
            && self
                .s
                .as_bytes()
                .get(self.pos + 3)
                .copied()
                .is_some_and(is_ws)
        {
            self.pos += 3;
            self.ws();
            return Ok(Expr::Not(Box::new(self.not()?)));
        }
        self.paren()
    }

    fn paren(&mut self) -> Result<Expr, FilterError> {
        if self.peek() == Some(b'(') {
            self.pos += 1;
            self.ws();
            let e = self.or()?;
            self.ws();
            if self.peek() != Some(b')') {
                return Err(rule(self.s, self.pos, "grouping", "Unmatched parentheses"));
            }
            self.pos += 1;
            return Ok(e);
        }
        self.matcher()
    }

    fn identifier(&mut self) -> Option<&'a str> {
        let start = self.pos;
        if !self.peek().is_some_and(|c| c.is_ascii_alphabetic()) {
            return None;
        }
        while self
            .peek()
            .is_some_and(|c| c.is_ascii_alphanumeric() || c == b'_')
        {
            self.pos += 1;
        }
        Some(&self.s[start..self.pos])
    }

    fn selector(&mut self) -> Result<Option<Vec<String>>, FilterError> {
        let Some(first) = self.identifier() else {
            return Ok(None);
        };
        let mut path = vec![first.to_owned()];
        loop {
            if self.peek() == Some(b'.') {
                let save = self.pos;
                self.pos += 1;
                match self.identifier() {
                    Some(id) => path.push(id.to_owned()),
                    None => {
                        self.pos = save;
                        break;
                    }
                }
            } else if self.peek() == Some(b'[') {
                self.pos += 1;
                self.ws();
                let Some(key) = self.string()? else {
                    return Err(rule(self.s, self.pos, "index", "Invalid index"));
                };
                self.ws();
                if self.peek() != Some(b']') {
                    return Err(rule(self.s, self.pos, "index", "Unclosed index expression"));
                }
                self.pos += 1;
                path.push(key);
            } else {
                break;
            }
        }
        Ok(Some(path))
    }

    /// `"..."` (Go escapes) or `` `...` `` (raw).
    fn string(&mut self) -> Result<Option<String>, FilterError> {
        let quote = match self.peek() {
            Some(q @ (b'"' | b'`')) => q,
            _ => return Ok(None),
        };
        let start = self.pos;
        let Some(len) = self.s[start + 1..].find(char::from(quote)) else {
            return Err(rule(
                self.s,
                self.s.len(),
                "string",
                "Unterminated string literal",
            ));
        };
        let body = &self.s[start + 1..start + 1 + len];
        self.pos = start + len + 2;
        if quote == b'`' {
            return Ok(Some(body.replace('\r', "")));
        }
        unquote(body)
            .map(Some)
            .ok_or_else(|| rule(self.s, start, "string", "invalid syntax"))
    }

    fn number(&mut self) -> Result<Option<String>, FilterError> {
        let start = self.pos;
        let b = self.s.as_bytes();
        let mut i = start;
        if b.get(i) == Some(&b'-') {
            i += 1;
        }
        match b.get(i) {
            Some(b'0') => i += 1,
            Some(c) if c.is_ascii_digit() => {
                while b.get(i).is_some_and(u8::is_ascii_digit) {
                    i += 1;
                }
            }
            _ => return Ok(None),
        }
        if b.get(i) == Some(&b'.') && b.get(i + 1).is_some_and(u8::is_ascii_digit) {
            i += 1;
            while b.get(i).is_some_and(u8::is_ascii_digit) {
                i += 1;
            }
        }
        match b.get(i) {
            None | Some(b')') => {}
            Some(c) if is_ws(*c) => {}
            Some(_) => return Err(rule(self.s, i, "number", "Invalid number literal")),
        }
        self.pos = i;
        Ok(Some(self.s[start..i].to_owned()))
    }

    /// A value: a string, a number, or a bare selector-shaped word (its text).
    fn value(&mut self) -> Result<Option<String>, FilterError> {
        if let Some(s) = self.string()? {
            return Ok(Some(s));
        }
        if let Some(n) = self.number()? {
            return Ok(Some(n));
        }
        Ok(self.selector()?.map(|p| p.join(".")))
    }

    fn value_expected(&self) -> FilterError {
        self.expected(r#""(", "-", "0", "\"", "`", "not", [ \t\r\n], [1-9] or [a-zA-Z]"#)
    }

    fn matcher(&mut self) -> Result<Expr, FilterError> {
        let start = self.pos;
        let selector = self.selector()?;
        if let Some(selector) = selector {
            // `Sel op Value` / `Sel is [not] empty`.
            let save = self.pos;
            let ops: [(&[&str], Op, bool); 8] = [
                (&["is", "not", "empty"], Op::IsNotEmpty, false),
                (&["is", "empty"], Op::IsEmpty, false),
                (&["not", "contains"], Op::NotIn, true),
                (&["contains"], Op::In, true),
                (&["not", "matches"], Op::NotMatches, true),
                (&["matches"], Op::Matches, true),
                (&["not", "in"], Op::NotIn, true),
                (&["in"], Op::In, true),
            ];
            self.ws();
            let eq = if self.lit("==") {
                Some(Op::Equal)
            } else if self.lit("!=") {
                Some(Op::NotEqual)
            } else {
                None
            };
            if let Some(op) = eq {
                self.ws();
                let value = self.value()?.ok_or_else(|| self.value_expected())?;
                return Ok(Expr::Match {
                    selector,
                    op,
                    value: Some(value),
                });
            }
            self.pos = save;
            for (words, op, takes_value) in ops {
                if !self.keyword(words, takes_value) {
                    continue;
                }
                if !takes_value {
                    return Ok(Expr::Match {
                        selector,
                        op,
                        value: None,
                    });
                }
                self.ws();
                if matches!(words.last(), Some(&"in")) {
                    // `word in Sel`: the selector read first was the value.
                    let at_sel = self.pos;
                    let target = self
                        .selector()?
                        .ok_or_else(|| rule(self.s, at_sel, "match", "Invalid selector"))?;
                    return Ok(Expr::Match {
                        selector: target,
                        op,
                        value: Some(selector.join(".")),
                    });
                }
                let value = self.value()?.ok_or_else(|| self.value_expected())?;
                return Ok(Expr::Match {
                    selector,
                    op,
                    value: Some(value),
                });
            }
            self.pos = save;
            self.ws();
            return Err(self
                .expected(r#""!=", "==", "contains", "in", "is", "matches", "not" or [ \t\r\n]"#));
        }
        self.pos = start;
        // `Value [not] in Sel` with a string or number value.
        let Some(value) = self.value()? else {
            return Err(self.value_expected());
        };
        for (words, op) in [(&["not", "in"][..], Op::NotIn), (&["in"][..], Op::In)] {
            if self.keyword(words, true) {
                self.ws();
                let at_sel = self.pos;
                let target = self
                    .selector()?
                    .ok_or_else(|| rule(self.s, at_sel, "match", "Invalid selector"))?;
                return Ok(Expr::Match {
                    selector: target,
                    op,
                    value: Some(value),
                });
            }
        }
        self.ws();
        Err(self.expected(r#""in", "not" or [ \t\r\n]"#))
    }
}

/// Go's `strconv.Unquote` of a `"..."` body (no `"` inside: the lexer stops there).
fn unquote(body: &str) -> Option<String> {
    let mut out = String::new();
    let mut it = body.chars().peekable();
    while let Some(c) = it.next() {
        if c == '\n' {
            return None;
        }
        if c != '\\' {
            out.push(c);
            continue;
        }
        let hex = |it: &mut std::iter::Peekable<std::str::Chars<'_>>, n: usize| {
            let s: String = it.by_ref().take(n).collect();
            (s.len() == n)
                .then(|| u32::from_str_radix(&s, 16).ok())
                .flatten()
        };
        match it.next()? {
            'a' => out.push('\u{7}'),
            'b' => out.push('\u{8}'),
            'f' => out.push('\u{c}'),
            'n' => out.push('\n'),
            'r' => out.push('\r'),
            't' => out.push('\t'),
            'v' => out.push('\u{b}'),
            '\\' => out.push('\\'),
            '"' => out.push('"'),
            'x' => out.push(char::from(u8::try_from(hex(&mut it, 2)?).ok()?)),
            'u' => out.push(char::from_u32(hex(&mut it, 4)?)?),
            'U' => out.push(char::from_u32(hex(&mut it, 8)?)?),
            d @ '0'..='7' => {
                let rest: String = it.by_ref().take(2).collect();
                let v = u32::from_str_radix(&format!("{d}{rest}"), 8).ok()?;
                out.push(char::from(u8::try_from(v).ok()?));
            }
            _ => return None,
        }
    }
    Some(out)
}

/// Parse an expression (no schema yet).
fn parse(s: &str) -> Result<Expr, FilterError> {
    let mut p = Parser { s, pos: 0 };
    p.ws();
    if p.peek().is_none() {
        return Err(p.value_expected());
    }
    let e = p.or()?;
    p.ws();
    if p.peek().is_some() {
        return Err(p.expected(r#""and", "or", [ \t\r\n] or EOF"#));
    }
    Ok(e)
}

// === validation against a schema ===

/// A value converted to its field's type.
#[derive(Debug, Clone)]
enum Typed {
    None,
    Str(String),
    Int(i64),
    Float(f64),
    Bool(bool),
    Regex(regex::Regex),
}

#[derive(Debug, Clone)]
enum Node {
    And(Box<Node>, Box<Node>),
    Or(Box<Node>, Box<Node>),
    Not(Box<Node>),
    Match {
        selector: Vec<String>,
        op: Op,
        value: Typed,
    },
}

/// Go's `strconv.ParseInt(s, 0, 64)`: base prefixes, `_` separators, leading zero = octal.
fn parse_int(raw: &str) -> Option<i64> {
    let (neg, s) = match raw.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, raw.strip_prefix('+').unwrap_or(raw)),
    };
    let (radix, digits) = if let Some(h) = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        (16, h)
    } else if let Some(b) = s.strip_prefix("0b").or_else(|| s.strip_prefix("0B")) {
        (2, b)
    } else if let Some(o) = s.strip_prefix("0o").or_else(|| s.strip_prefix("0O")) {
        (8, o)
    } else if s.len() > 1 && s.starts_with('0') {
        (8, &s[1..])
    } else {
        (10, s)
    };
    let digits: String = digits.chars().filter(|c| *c != '_').collect();
    if digits.is_empty() {
        return None;
    }
    let v = i64::from_str_radix(&digits, radix).ok()?;
    Some(if neg { -v } else { v })
}

fn coerce(kind: &Kind, op: Op, raw: &str, sel: &str) -> Result<Typed, FilterError> {
    let fail = |why: &str| {
        FilterError(format!(
            "Failed to coerce value {raw:?} for selector {sel:?}: {why}"
        ))
    };
    if matches!(op, Op::Matches | Op::NotMatches) {
        return regex::Regex::new(raw).map(Typed::Regex).map_err(|e| {
            FilterError(format!("Failed to compile regular expression {raw:?}: {e}"))
        });
    }
    Ok(match kind {
        Kind::Str | Kind::StrList | Kind::Map(_) => Typed::Str(raw.to_owned()),
        Kind::Int => Typed::Int(parse_int(raw).ok_or_else(|| fail("invalid syntax"))?),
        Kind::Float => Typed::Float(raw.parse().map_err(|_| fail("invalid syntax"))?),
        Kind::Bool => Typed::Bool(match raw {
            "1" | "t" | "T" | "TRUE" | "true" | "True" => true,
            "0" | "f" | "F" | "FALSE" | "false" | "False" => false,
            _ => return Err(fail("invalid syntax")),
        }),
        Kind::Struct(_) | Kind::StructList(_) => Typed::None,
    })
}

fn allowed(kind: &Kind, op: Op) -> bool {
    use Op::*;
    match kind {
        Kind::Str => matches!(op, Equal | NotEqual | In | NotIn | Matches | NotMatches),
        Kind::Int | Kind::Float | Kind::Bool => matches!(op, Equal | NotEqual),
        Kind::StrList | Kind::Map(_) => matches!(op, In | NotIn | IsEmpty | IsNotEmpty),
        Kind::StructList(_) => matches!(op, IsEmpty | IsNotEmpty),
        Kind::Struct(_) => false,
    }
}

fn check(e: Expr, schema: &Fields) -> Result<Node, FilterError> {
    Ok(match e {
        Expr::And(a, b) => Node::And(Box::new(check(*a, schema)?), Box::new(check(*b, schema)?)),
        Expr::Or(a, b) => Node::Or(Box::new(check(*a, schema)?), Box::new(check(*b, schema)?)),
        Expr::Not(a) => Node::Not(Box::new(check(*a, schema)?)),
        Expr::Match {
            selector,
            op,
            value,
        } => {
            let mut kind: Option<&Kind> = None;
            let mut fields = schema;
            for (i, seg) in selector.iter().enumerate() {
                let next = match kind {
                    None => fields.get(seg.as_str()),
                    Some(Kind::Struct(f) | Kind::StructList(f)) => {
                        fields = f;
                        f.get(seg.as_str())
                    }
                    Some(Kind::Map(inner)) => Some(inner.as_ref()),
                    Some(_) => None,
                };
                let Some(k) = next else {
                    return Err(FilterError(format!(
                        "Selector {:?} is not valid",
                        selector[..=i].join(".")
                    )));
                };
                if let Kind::Struct(f) | Kind::StructList(f) = k {
                    fields = f;
                }
                kind = Some(k);
            }
            let sel = selector.join(".");
            let kind = kind.ok_or_else(|| FilterError("empty selector".into()))?;
            if !allowed(kind, op) {
                return Err(FilterError(format!(
                    "Invalid match operator {:?} for selector {sel:?}",
                    op.name()
                )));
            }
            let value = match &value {
                Some(raw) => coerce(kind, op, raw, &sel)?,
                None => Typed::None,
            };
            Node::Match {
                selector,
                op,
                value,
            }
        }
    })
}

// === evaluation ===

/// A compiled filter.
#[derive(Debug, Clone)]
pub struct Filter {
    root: Node,
    schema: Fields,
}

impl Filter {
    /// Parse and check `expr` against `schema` (the fields of one listed element).
    pub fn new(expr: &str, schema: &Fields) -> Result<Filter, FilterError> {
        let root = check(parse(expr)?, schema)?;
        Ok(Filter {
            root,
            schema: schema.clone(),
        })
    }

    /// `?filter=`: none when absent or empty.
    pub fn from_param(expr: Option<&str>, schema: &Fields) -> Result<Option<Filter>, FilterError> {
        match expr {
            None | Some("") => Ok(None),
            Some(e) => Filter::new(e, schema).map(Some),
        }
    }

    /// Does `element` (as the endpoint answers it, in JSON) match?
    pub fn matches(&self, element: &Value) -> bool {
        eval(&self.root, element, &self.schema)
    }
}

fn eval(n: &Node, v: &Value, schema: &Fields) -> bool {
    match n {
        Node::And(a, b) => eval(a, v, schema) && eval(b, v, schema),
        Node::Or(a, b) => eval(a, v, schema) || eval(b, v, schema),
        Node::Not(a) => !eval(a, v, schema),
        Node::Match {
            selector,
            op,
            value,
        } => walk(v, &Kind::Struct(schema.clone()), selector, *op, value),
    }
}

/// What a missing map key (or an absent object) answers: go-bexpr v0.1.2 gives false for
/// `==`, `in` and `is not empty`, true for everything else.
fn absent(op: Op) -> bool {
    op.negated() || op == Op::Matches
}

fn walk(v: &Value, kind: &Kind, path: &[String], op: Op, value: &Typed) -> bool {
    let Some((seg, rest)) = path.split_first() else {
        return leaf(v, kind, op, value);
    };
    match kind {
        Kind::Struct(f) => match (v.get(seg.as_str()), f.get(seg.as_str())) {
            (Some(child), Some(k)) if !child.is_null() || rest.is_empty() => {
                walk(child, k, rest, op, value)
            }
            (_, Some(k)) if rest.is_empty() => leaf(&Value::Null, k, op, value),
            _ => absent(op),
        },
        Kind::StructList(f) => {
            // Any element: the same remaining selector on each; none at all is false.
            let Some(items) = v.as_array() else {
                return false;
            };
            let as_struct = Kind::Struct(f.clone());
            items
                .iter()
                .any(|item| walk(item, &as_struct, path, op, value))
        }
        Kind::Map(inner) => match v.get(seg.as_str()) {
            Some(child) => walk(child, inner, rest, op, value),
            None => absent(op),
        },
        _ => false,
    }
}

fn leaf(v: &Value, kind: &Kind, op: Op, value: &Typed) -> bool {
    let positive = match (kind, op.positive(), value) {
        (_, Op::Matches, Typed::Regex(re)) => v.as_str().is_some_and(|s| re.is_match(s)),
        (Kind::Str, Op::Equal, Typed::Str(want)) => v.as_str().unwrap_or("") == want,
        (Kind::Str, Op::In, Typed::Str(want)) => v.as_str().unwrap_or("").contains(want.as_str()),
        (Kind::Int, Op::Equal, Typed::Int(want)) => v.as_i64() == Some(*want),
        (Kind::Float, Op::Equal, Typed::Float(want)) => v.as_f64() == Some(*want),
        (Kind::Bool, Op::Equal, Typed::Bool(want)) => v.as_bool().unwrap_or(false) == *want,
        (Kind::StrList, Op::In, Typed::Str(want)) => v
            .as_array()
            .is_some_and(|a| a.iter().any(|x| x.as_str() == Some(want))),
        (Kind::Map(_), Op::In, Typed::Str(want)) => {
            v.as_object().is_some_and(|m| m.contains_key(want.as_str()))
        }
        (_, Op::IsNotEmpty, _) => match v {
            Value::Array(a) => !a.is_empty(),
            Value::Object(m) => !m.is_empty(),
            _ => false,
        },
        _ => false,
    };
    positive != op.negated()
}

#[cfg(test)]
mod tests;
