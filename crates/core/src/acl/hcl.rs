//! HCL v1's object syntax (hashicorp/hcl v1's parser), read into [`Node`]s: a document is a
//! list of items, an item is one or more keys (identifiers or strings) followed by
//! `= value` or by a `{ ... }` block, items may be separated by commas, values are strings,
//! numbers, booleans, `{ ... }` objects and `[ ... ]` lists. `key_prefix "foo/" { ... }` is
//! one item with the keys `key_prefix` and `foo/`. Error texts follow HCL v1's.

use super::lex::{LexError, Lexer, Pos, Tok};

/// How deep objects and lists may nest: deeper is refused rather than risking the stack.
const MAX_DEPTH: usize = 64;

/// A value, as HCL v1's AST (and its JSON front end) leave it for decoding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Node {
    /// A string, number or boolean, as text (Consul decodes all three into its strings).
    Scalar(String),
    List(Vec<Node>),
    Object(Vec<Item>),
}

/// `keys... = value` or `keys... { ... }`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Item {
    /// Never empty.
    pub(super) keys: Vec<String>,
    pub(super) val: Node,
    /// Where the first key is; `None` for JSON, whose parser does not report positions.
    pub(super) at: Option<Pos>,
}

impl Node {
    /// "a string", "an object", "a list": for decoding errors.
    pub(super) fn describe(&self) -> &'static str {
        match self {
            Node::Scalar(_) => "a string",
            Node::List(_) => "a list",
            Node::Object(_) => "an object",
        }
    }
}

/// Parse a whole HCL document into its top-level items. The error is HCL v1's message with
/// its `At line:col:` prefix.
pub(super) fn parse(src: &str) -> Result<Vec<Item>, String> {
    let mut p = Parser {
        lex: Lexer::new(src),
        peeked: None,
        depth: 0,
    };
    p.items(false)
        .map_err(|(at, msg)| format!("At {at}: {msg}"))
}

struct Parser<'a> {
    lex: Lexer<'a>,
    peeked: Option<(Pos, Tok)>,
    depth: usize,
}

impl Parser<'_> {
    fn next(&mut self) -> Result<(Pos, Tok), LexError> {
        match self.peeked.take() {
            Some(t) => Ok(t),
            None => self.lex.next_token(),
        }
    }

    fn peek(&mut self) -> Result<&(Pos, Tok), LexError> {
        let t = match self.peeked.take() {
            Some(t) => t,
            None => self.lex.next_token()?,
        };
        Ok(self.peeked.insert(t))
    }

    /// Items up to the end of the input (`in_block` false) or up to, not including, the
    /// `}` that closes the block.
    fn items(&mut self, in_block: bool) -> Result<Vec<Item>, LexError> {
        let mut out = Vec::new();
        loop {
            match self.peek()? {
                (_, Tok::Eof) => break,
                (_, Tok::RBrace) if in_block => break,
                _ => {}
            }
            out.push(self.item()?);
            if matches!(self.peek()?, (_, Tok::Comma)) {
                self.next()?;
            }
        }
        Ok(out)
    }

    fn item(&mut self) -> Result<Item, LexError> {
        let mut keys = Vec::new();
        let mut first = None;
        loop {
            let (at, tok) = self.next()?;
            first.get_or_insert(at);
            match tok {
                Tok::Ident(k) | Tok::Str(k) => keys.push(k),
                Tok::Assign if keys.len() > 1 => {
                    return Err((at, "nested object expected: LBRACE got: ASSIGN".into()))
                }
                Tok::Assign if keys.is_empty() => return Err((at, "no object keys found!".into())),
                Tok::Assign => {
                    let val = self.value()?;
                    return Ok(Item {
                        keys,
                        val,
                        at: first,
                    });
                }
                Tok::LBrace if keys.is_empty() => {
                    return Err((at, "expected: IDENT | STRING got: LBRACE".into()))
                }
                Tok::LBrace => {
                    let val = Node::Object(self.block(at)?);
                    return Ok(Item {
                        keys,
                        val,
                        at: first,
                    });
                }
                Tok::Eof | Tok::RBrace if !keys.is_empty() => {
                    let msg = format!(
                        "key '{}' expected start of object ('{{') or assignment ('=')",
                        keys.join(" ")
                    );
                    return Err((at, msg));
                }
                other => {
                    let msg = format!(
                        "expected: IDENT | STRING | ASSIGN | LBRACE got: {}",
                        other.kind()
                    );
                    return Err((at, msg));
                }
            }
        }
    }

    /// The value after `=`.
    fn value(&mut self) -> Result<Node, LexError> {
        let (at, tok) = self.next()?;
        match tok {
            Tok::Str(s) | Tok::Lit(s) => Ok(Node::Scalar(s)),
            Tok::LBrace => Ok(Node::Object(self.block(at)?)),
            Tok::LBrack => self.list(at),
            other => Err((at, format!("Unknown token: {}", other.kind()))),
        }
    }

    /// The items of a block whose `{` (at `open`) was read, and its `}`.
    fn block(&mut self, open: Pos) -> Result<Vec<Item>, LexError> {
        self.enter(open)?;
        let items = self.items(true)?;
        let (at, tok) = self.next()?;
        if tok != Tok::RBrace {
            return Err((
                at,
                format!("object expected closing RBRACE got: {}", tok.kind()),
            ));
        }
        self.depth -= 1;
        Ok(items)
    }

    /// The elements of a list whose `[` (at `open`) was read: values separated by commas,
    /// a trailing comma allowed.
    fn list(&mut self, open: Pos) -> Result<Node, LexError> {
        self.enter(open)?;
        let mut out = Vec::new();
        loop {
            if matches!(self.peek()?, (_, Tok::RBrack)) {
                self.next()?;
                break;
            }
            if matches!(self.peek()?, (_, Tok::Eof)) {
                return Err((open, "list not terminated".into()));
            }
            out.push(self.value()?);
            let (at, tok) = self.next()?;
            match tok {
                Tok::Comma => {}
                Tok::RBrack => break,
                other => {
                    let msg = format!("unexpected token while parsing list: {}", other.kind());
                    return Err((at, msg));
                }
            }
        }
        self.depth -= 1;
        Ok(Node::List(out))
    }

    fn enter(&mut self, at: Pos) -> Result<(), LexError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err((at, format!("nested more than {MAX_DEPTH} levels deep")));
        }
        Ok(())
    }
}
