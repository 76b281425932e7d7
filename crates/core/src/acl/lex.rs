//! The tokens of HCL v1 (hashicorp/hcl v1's scanner) that ACL rules can contain: identifiers,
//! strings with Go escapes, numbers, booleans, `{ } [ ] = ,`, and the three comment forms.
//! Positions are 1-based line and column (in characters), as HCL v1 reports them.

use std::fmt;

/// Where a token starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Pos {
    pub(super) line: u32,
    pub(super) col: u32,
}

impl fmt::Display for Pos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.line, self.col)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Tok {
    Ident(String),
    /// A quoted string, escapes resolved.
    Str(String),
    /// A number or `true`/`false`, as written (Consul's decoder keeps the text).
    Lit(String),
    LBrace,
    RBrace,
    LBrack,
    RBrack,
    Assign,
    Comma,
    Eof,
}

impl Tok {
    /// HCL v1's token type names, for error messages.
    pub(super) fn kind(&self) -> &'static str {
        match self {
            Tok::Ident(_) => "IDENT",
            Tok::Str(_) => "STRING",
            Tok::Lit(s) if s == "true" || s == "false" => "BOOL",
            Tok::Lit(_) => "NUMBER",
            Tok::LBrace => "LBRACE",
            Tok::RBrace => "RBRACE",
            Tok::LBrack => "LBRACK",
            Tok::RBrack => "RBRACK",
            Tok::Assign => "ASSIGN",
            Tok::Comma => "COMMA",
            Tok::Eof => "EOF",
        }
    }
}

/// A lexing error: where, and HCL v1's words for it.
pub(super) type LexError = (Pos, String);

pub(super) struct Lexer<'a> {
    chars: std::iter::Peekable<std::str::Chars<'a>>,
    pos: Pos,
}

impl<'a> Lexer<'a> {
    pub(super) fn new(s: &'a str) -> Self {
        Lexer {
            chars: s.chars().peekable(),
            pos: Pos { line: 1, col: 1 },
        }
    }

    fn peek(&mut self) -> Option<char> {
        self.chars.peek().copied()
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.chars.next()?;
        if c == '\n' {
            self.pos.line += 1;
            self.pos.col = 1;
        } else {
            self.pos.col += 1;
        }
        Some(c)
    }

    /// The next token and where it starts.
    pub(super) fn next_token(&mut self) -> Result<(Pos, Tok), LexError> {
        self.skip_blanks()?;
        let at = self.pos;
        let Some(c) = self.bump() else {
            return Ok((at, Tok::Eof));
        };
        let tok = match c {
            '{' => Tok::LBrace,
            '}' => Tok::RBrace,
            '[' => Tok::LBrack,
            ']' => Tok::RBrack,
            '=' => Tok::Assign,
            ',' => Tok::Comma,
            '"' => Tok::Str(self.string(at)?),
            '<' if self.peek() == Some('<') => {
                return Err((at, "heredoc strings are not supported in ACL rules".into()))
            }
            '-' if self.peek().is_some_and(|d| d.is_ascii_digit()) => Tok::Lit(self.number(c)),
            c if c.is_ascii_digit() => Tok::Lit(self.number(c)),
            c if is_letter(c) => {
                let word = self.ident(c);
                if word == "true" || word == "false" {
                    Tok::Lit(word)
                } else {
                    Tok::Ident(word)
                }
            }
            c => return Err((at, format!("illegal char {c:?}"))),
        };
        Ok((at, tok))
    }

    /// Whitespace and comments (`#` and `//` to the end of the line, `/* ... */`).
    fn skip_blanks(&mut self) -> Result<(), LexError> {
        loop {
            match self.peek() {
                Some(' ' | '\t' | '\r' | '\n') => {
                    self.bump();
                }
                Some('#') => self.skip_line(),
                Some('/') => {
                    let at = self.pos;
                    self.bump();
                    match self.bump() {
                        Some('/') => self.skip_line(),
                        Some('*') => self.skip_block_comment(at)?,
                        _ => return Err((at, "expected '/' or '*' for a comment".into())),
                    }
                }
                _ => return Ok(()),
            }
        }
    }

    fn skip_line(&mut self) {
        while self.peek().is_some_and(|c| c != '\n') {
            self.bump();
        }
    }

    fn skip_block_comment(&mut self, at: Pos) -> Result<(), LexError> {
        let mut star = false;
        loop {
            match self.bump() {
                None => return Err((at, "comment not terminated".into())),
                Some('/') if star => return Ok(()),
                Some(c) => star = c == '*',
            }
        }
    }

    fn ident(&mut self, first: char) -> String {
        let mut out = String::from(first);
        while let Some(c) = self.peek() {
            if !(is_letter(c) || c.is_numeric() || c == '-' || c == '.') {
                break;
            }
            out.push(c);
            self.bump();
        }
        out
    }

    /// Digits, `.`, letters (hex, exponents) and a sign after an exponent; the text is
    /// only ever shown back, so its exact grammar does not matter.
    fn number(&mut self, first: char) -> String {
        let mut out = String::from(first);
        while let Some(c) = self.peek() {
            let sign_after_exp = (c == '+' || c == '-') && out.ends_with(['e', 'E']);
            if !(c.is_ascii_alphanumeric() || c == '.' || sign_after_exp) {
                break;
            }
            out.push(c);
            self.bump();
        }
        out
    }

    /// The rest of a `"` string: Go's escapes, no raw newline (HCL v1 refuses one).
    fn string(&mut self, at: Pos) -> Result<String, LexError> {
        let mut bytes = Vec::new();
        loop {
            let esc_at = self.pos;
            match self.bump() {
                None | Some('\n') => return Err((at, "literal not terminated".into())),
                Some('"') => break,
                Some('\\') => self.escape(esc_at, &mut bytes)?,
                Some(c) => {
                    let mut buf = [0; 4];
                    bytes.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
                }
            }
        }
        // `\x` and octal escapes write raw bytes, which must still make UTF-8.
        String::from_utf8(bytes).map_err(|_| (at, "string is not valid UTF-8".into()))
    }

    fn escape(&mut self, at: Pos, out: &mut Vec<u8>) -> Result<(), LexError> {
        let bad = || (at, "illegal char escape".to_owned());
        let c = self.bump().ok_or_else(bad)?;
        let simple = match c {
            'a' => Some(0x07),
            'b' => Some(0x08),
            'f' => Some(0x0c),
            'n' => Some(b'\n'),
            'r' => Some(b'\r'),
            't' => Some(b'\t'),
            'v' => Some(0x0b),
            '\\' => Some(b'\\'),
            '"' => Some(b'"'),
            _ => None,
        };
        if let Some(b) = simple {
            out.push(b);
            return Ok(());
        }
        // Octal and `\x` escapes are one byte each; a value over 255 is refused, as in Go.
        let byte = |v: Option<u32>| v.and_then(|v| u8::try_from(v).ok()).ok_or_else(bad);
        match c {
            '0'..='7' => out.push(byte(self.digits(c.to_digit(8).unwrap_or(0), 2, 8))?),
            'x' => out.push(byte(self.digits(0, 2, 16))?),
            'u' | 'U' => {
                let n = if c == 'u' { 4 } else { 8 };
                let ch = self
                    .digits(0, n, 16)
                    .and_then(char::from_u32)
                    .ok_or_else(bad)?;
                let mut buf = [0; 4];
                out.extend_from_slice(ch.encode_utf8(&mut buf).as_bytes());
            }
            _ => return Err(bad()),
        }
        Ok(())
    }

    /// `n` more digits in `radix`, accumulated onto `acc`.
    fn digits(&mut self, mut acc: u32, n: usize, radix: u32) -> Option<u32> {
        for _ in 0..n {
            let d = self.peek()?.to_digit(radix)?;
            self.bump();
            acc = acc.checked_mul(radix)?.checked_add(d)?;
        }
        Some(acc)
    }
}

/// HCL v1's `isLetter`: ASCII letters, `_`, and non-ASCII letters.
fn is_letter(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_' || (!c.is_ascii() && c.is_alphabetic())
}
