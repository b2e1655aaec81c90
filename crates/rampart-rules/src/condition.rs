//! The condition language: Falco's filter grammar, parsed into an [`Expr`] tree.
//!
//! # Grammar
//! ```text
//! expr      := or
//! or        := and ("or" and)*
//! and       := not ("and" not)*
//! not       := "not" not | primary
//! primary   := "(" expr ")" | check | MACRO
//! check     := field "exists"
//!            | field CMP value
//!            | field LISTOP ( "(" [item ("," item)*] ")" | LISTNAME | rhsfield )
//! field     := TRANSFORMER "(" field ")" | FIELDNAME ["[" ARG "]"]
//! value     := rhsfield | QUOTED | BARE
//! rhsfield  := "val(" FIELDNAME ["[" ARG "]"] ")" | TRANSFORMER "(" field ")"
//! item      := QUOTED | BARE
//! CMP       := "=" | "==" | "!=" | "<" | "<=" | ">" | ">=" | "contains" | "icontains"
//!            | "bcontains" | "startswith" | "bstartswith" | "endswith" | "glob" | "iglob"
//!            | "regex"
//! LISTOP    := "in" | "intersects" | "pmatch"
//! TRANSFORMER := "tolower" | "toupper" | "b64" | "basename" | "len"
//! FIELDNAME := [a-zA-Z]+[a-zA-Z0-9_]*("."[a-zA-Z]+[a-zA-Z0-9_]*)+
//! MACRO     := [a-zA-Z_]+[a-zA-Z0-9_]*
//! BARE      := [^ \b\t\n\r(),="']+
//! QUOTED    := '"' ... '"' | "'" ... "'"   (backslash escapes \" \' \\ \n \t \r \b \f)
//! ```
//! `exists` and the LISTOPs need no blank after them (`(container.id exists)`, `in(a, b)`); the
//! word CMPs do. Keywords and operators are lower case only, as libsinsp compares them with
//! `strncmp`. `and` binds tighter than `or`, as in Falco. Keywords and word operators end at whitespace or
//! `(`, so a macro may be called `android_hosts`. This is the grammar of libsinsp's filter
//! parser (falcosecurity/libs `userspace/libsinsp/filter/parser.cpp`), written as a small
//! recursive-descent parser because no maintained crate implements it.

/// A parsed condition. Offsets are byte offsets into the condition text.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Expr {
    And(Vec<Expr>),
    Or(Vec<Expr>),
    Not(Box<Expr>),
    Macro {
        name: String,
        at: usize,
    },
    Check {
        field: FieldExpr,
        op: Op,
        value: Value,
        /// Offset of the operator.
        at: usize,
    },
}

/// A field reference: `proc.aname[2]`, `tolower(proc.name)`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct FieldExpr {
    pub name: String,
    pub arg: Option<String>,
    pub transforms: Vec<Transform>,
    pub at: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Transform {
    ToLower,
    ToUpper,
    B64,
    Basename,
    Len,
}

impl Transform {
    pub fn name(self) -> &'static str {
        match self {
            Transform::ToLower => "tolower",
            Transform::ToUpper => "toupper",
            Transform::B64 => "b64",
            Transform::Basename => "basename",
            Transform::Len => "len",
        }
    }
}

/// A literal: its text after unquoting, whether it was quoted, and where it starts.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Lit {
    pub text: String,
    pub quoted: bool,
    pub at: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Value {
    None,
    One(Lit),
    List(Vec<Lit>),
    Field(FieldExpr),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Op {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    Contains,
    IContains,
    BContains,
    StartsWith,
    BStartsWith,
    EndsWith,
    Glob,
    IGlob,
    Regex,
    In,
    Intersects,
    PMatch,
    Exists,
}

impl Op {
    pub fn as_str(self) -> &'static str {
        match self {
            Op::Eq => "=",
            Op::Ne => "!=",
            Op::Lt => "<",
            Op::Le => "<=",
            Op::Gt => ">",
            Op::Ge => ">=",
            Op::Contains => "contains",
            Op::IContains => "icontains",
            Op::BContains => "bcontains",
            Op::StartsWith => "startswith",
            Op::BStartsWith => "bstartswith",
            Op::EndsWith => "endswith",
            Op::Glob => "glob",
            Op::IGlob => "iglob",
            Op::Regex => "regex",
            Op::In => "in",
            Op::Intersects => "intersects",
            Op::PMatch => "pmatch",
            Op::Exists => "exists",
        }
    }
}

/// A parse error: where, the offending token (empty at the end of the text), and what was
/// expected.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ParseError {
    pub at: usize,
    pub token: String,
    pub message: String,
}

const WORD_OPS: &[(&str, Op)] = &[
    ("contains", Op::Contains),
    ("icontains", Op::IContains),
    ("bcontains", Op::BContains),
    ("startswith", Op::StartsWith),
    ("bstartswith", Op::BStartsWith),
    ("endswith", Op::EndsWith),
    ("glob", Op::Glob),
    ("iglob", Op::IGlob),
    ("regex", Op::Regex),
];

const LIST_OPS: &[(&str, Op)] = &[
    ("intersects", Op::Intersects),
    ("in", Op::In),
    ("pmatch", Op::PMatch),
];

const TRANSFORMERS: &[(&str, Transform)] = &[
    ("tolower", Transform::ToLower),
    ("toupper", Transform::ToUpper),
    ("b64", Transform::B64),
    ("basename", Transform::Basename),
    ("len", Transform::Len),
];

/// Parses a whole condition.
pub(crate) fn parse(text: &str) -> Result<Expr, ParseError> {
    let mut p = Parser { s: text, i: 0 };
    let e = p.parse_or()?;
    p.skip_ws();
    if p.i < p.s.len() {
        return Err(p.error("unexpected text after the end of the expression"));
    }
    Ok(e)
}

/// Parses one list item or exception value as the condition parser would read it after an
/// operator: a quoted string is unquoted, anything else is taken as it is.
pub(crate) fn unquote_item(item: &str) -> String {
    let t = item.trim();
    let b = t.as_bytes();
    if b.len() >= 2 && (b[0] == b'"' || b[0] == b'\'') && b[b.len() - 1] == b[0] {
        let mut p = Parser { s: t, i: 0 };
        if let Ok(s) = p.quoted() {
            if p.i == t.len() {
                return s;
            }
        }
    }
    item.to_string()
}

/// Whether `name` is a valid field name (`proc.name`, `evt.arg.flags`).
pub(crate) fn is_field_name(name: &str) -> bool {
    let mut p = Parser { s: name, i: 0 };
    p.field_name().is_some_and(|n| n.len() == name.len())
}

struct Parser<'a> {
    s: &'a str,
    i: usize,
}

fn is_ws(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r' | 0x08 | 0x0c)
}

fn is_bare(b: u8) -> bool {
    !is_ws(b) && !matches!(b, b'(' | b')' | b',' | b'=' | b'"' | b'\'')
}

impl<'a> Parser<'a> {
    fn rest(&self) -> &'a str {
        &self.s[self.i..]
    }

    fn peek(&self) -> Option<u8> {
        self.s.as_bytes().get(self.i).copied()
    }

    fn skip_ws(&mut self) {
        while self.peek().is_some_and(is_ws) {
            self.i += 1;
        }
    }

    /// The token at the cursor for error messages: up to the next whitespace or parenthesis.
    fn token_at(&self, at: usize) -> String {
        let rest = &self.s[at..];
        let end = rest
            .char_indices()
            .find(|&(i, c)| {
                (c.is_whitespace() || c == '(' || c == ')' || c == ',')
                    && (i > 0 || c.is_whitespace())
            })
            .map_or(rest.len(), |(i, c)| if i == 0 { c.len_utf8() } else { i });
        rest[..end].to_string()
    }

    fn error(&self, message: &str) -> ParseError {
        self.error_at(self.i, message)
    }

    fn error_at(&self, at: usize, message: &str) -> ParseError {
        ParseError {
            at,
            token: self.token_at(at),
            message: message.to_string(),
        }
    }

    /// Consumes `word` if it is at the cursor and followed by whitespace, `(` or the end.
    fn keyword(&mut self, word: &str) -> bool {
        let rest = self.rest().as_bytes();
        if rest.len() >= word.len()
            && &rest[..word.len()] == word.as_bytes()
            && rest.get(word.len()).is_none_or(|&b| is_ws(b) || b == b'(')
        {
            self.i += word.len();
            true
        } else {
            false
        }
    }

    fn parse_or(&mut self) -> Result<Expr, ParseError> {
        let mut items = vec![self.parse_and()?];
        loop {
            self.skip_ws();
            if self.keyword("or") {
                items.push(self.parse_and()?);
            } else {
                break;
            }
        }
        Ok(if items.len() == 1 {
            items.pop().unwrap_or(Expr::And(Vec::new()))
        } else {
            Expr::Or(items)
        })
    }

    fn parse_and(&mut self) -> Result<Expr, ParseError> {
        let mut items = vec![self.parse_not()?];
        loop {
            self.skip_ws();
            if self.keyword("and") {
                items.push(self.parse_not()?);
            } else {
                break;
            }
        }
        Ok(if items.len() == 1 {
            items.pop().unwrap_or(Expr::And(Vec::new()))
        } else {
            Expr::And(items)
        })
    }

    fn parse_not(&mut self) -> Result<Expr, ParseError> {
        self.skip_ws();
        if self.keyword("not") {
            Ok(Expr::Not(Box::new(self.parse_not()?)))
        } else {
            self.parse_primary()
        }
    }

    fn parse_primary(&mut self) -> Result<Expr, ParseError> {
        self.skip_ws();
        match self.peek() {
            None => Err(self.error("expected a condition, found the end of the text")),
            Some(b'(') => {
                self.i += 1;
                let e = self.parse_or()?;
                self.skip_ws();
                if self.peek() == Some(b')') {
                    self.i += 1;
                    Ok(e)
                } else if self.peek().is_none() {
                    Err(self.error("missing closing parenthesis"))
                } else {
                    Err(self.error("expected `)`, `and` or `or`"))
                }
            }
            Some(_) => {
                let start = self.i;
                if self.transformer_ahead() || self.field_name_ahead() {
                    self.parse_check()
                } else if let Some(name) = self.identifier() {
                    Ok(Expr::Macro {
                        name: name.to_string(),
                        at: start,
                    })
                } else {
                    Err(self.error("expected a field, a macro name, `not` or `(`"))
                }
            }
        }
    }

    fn transformer_ahead(&self) -> bool {
        TRANSFORMERS.iter().any(|(name, _)| {
            self.rest().starts_with(name) && self.rest()[name.len()..].starts_with('(')
        })
    }

    fn field_name_ahead(&self) -> bool {
        let mut p = Parser {
            s: self.s,
            i: self.i,
        };
        p.field_name().is_some()
    }

    /// `[a-zA-Z]+[a-zA-Z0-9_]*` segments joined by dots, at least two of them.
    fn field_name(&mut self) -> Option<&'a str> {
        let start = self.i;
        let b = self.s.as_bytes();
        let mut j = self.i;
        let mut segments = 0;
        loop {
            if !b.get(j).is_some_and(u8::is_ascii_alphabetic) {
                break;
            }
            while b.get(j).is_some_and(u8::is_ascii_alphabetic) {
                j += 1;
            }
            while b
                .get(j)
                .is_some_and(|c| c.is_ascii_alphanumeric() || *c == b'_')
            {
                j += 1;
            }
            segments += 1;
            if b.get(j) == Some(&b'.') && b.get(j + 1).is_some_and(u8::is_ascii_alphabetic) {
                j += 1;
            } else {
                break;
            }
        }
        if segments >= 2 {
            self.i = j;
            Some(&self.s[start..j])
        } else {
            None
        }
    }

    fn identifier(&mut self) -> Option<&'a str> {
        let b = self.s.as_bytes();
        let start = self.i;
        let mut j = self.i;
        if !b
            .get(j)
            .is_some_and(|c| c.is_ascii_alphabetic() || *c == b'_')
        {
            return None;
        }
        while b
            .get(j)
            .is_some_and(|c| c.is_ascii_alphanumeric() || *c == b'_')
        {
            j += 1;
        }
        self.i = j;
        Some(&self.s[start..j])
    }

    fn parse_field(&mut self) -> Result<FieldExpr, ParseError> {
        self.skip_ws();
        let start = self.i;
        for (name, t) in TRANSFORMERS {
            if self.rest().starts_with(name) && self.rest()[name.len()..].starts_with('(') {
                self.i += name.len() + 1;
                let mut inner = self.parse_field()?;
                self.skip_ws();
                if self.peek() != Some(b')') {
                    return Err(self.error("expected `)` after the transformer's field"));
                }
                self.i += 1;
                inner.transforms.push(*t);
                inner.at = start;
                return Ok(inner);
            }
        }
        let Some(name) = self.field_name() else {
            return Err(self.error("expected a field name"));
        };
        let mut field = FieldExpr {
            name: name.to_string(),
            arg: None,
            transforms: Vec::new(),
            at: start,
        };
        if self.peek() == Some(b'[') {
            self.i += 1;
            let arg = match self.peek() {
                Some(b'"') | Some(b'\'') => self.quoted()?,
                _ => {
                    let s = self.i;
                    while self
                        .peek()
                        .is_some_and(|b| !is_ws(b) && !matches!(b, b'[' | b']' | b'"' | b'\''))
                    {
                        self.i += 1;
                    }
                    if s == self.i {
                        return Err(self.error("expected a field argument"));
                    }
                    self.s[s..self.i].to_string()
                }
            };
            if self.peek() != Some(b']') {
                return Err(self.error("expected `]` after the field argument"));
            }
            self.i += 1;
            field.arg = Some(arg);
        }
        Ok(field)
    }

    fn parse_check(&mut self) -> Result<Expr, ParseError> {
        let field = self.parse_field()?;
        self.skip_ws();
        let at = self.i;
        // libsinsp lexes `exists` and the list operators as plain prefixes: `(x.y exists)` and
        // `x.y in(a)` need no blank after them.
        if self.rest().starts_with("exists") {
            self.i += "exists".len();
            return Ok(Expr::Check {
                field,
                op: Op::Exists,
                value: Value::None,
                at,
            });
        }
        for (word, op) in LIST_OPS {
            if self.rest().starts_with(word) {
                self.i += word.len();
                let value = self.parse_list_or_value(*op)?;
                return Ok(Expr::Check {
                    field,
                    op: *op,
                    value,
                    at,
                });
            }
        }
        let sym = [
            ("==", Op::Eq),
            ("!=", Op::Ne),
            ("<=", Op::Le),
            (">=", Op::Ge),
            ("=", Op::Eq),
            ("<", Op::Lt),
            (">", Op::Gt),
        ];
        let mut op = None;
        for (s, o) in sym {
            if self.rest().starts_with(s) {
                self.i += s.len();
                op = Some(o);
                break;
            }
        }
        if op.is_none() {
            for (word, o) in WORD_OPS {
                let rest = self.rest().as_bytes();
                if rest.len() > word.len()
                    && &rest[..word.len()] == word.as_bytes()
                    && (is_ws(rest[word.len()]) || matches!(rest[word.len()], b'"' | b'\''))
                {
                    self.i += word.len();
                    op = Some(*o);
                    break;
                }
            }
        }
        let Some(op) = op else {
            return Err(self.error_at(at, "expected an operator after the field"));
        };
        let value = self.parse_value()?;
        Ok(Expr::Check {
            field,
            op,
            value,
            at,
        })
    }

    fn parse_list_or_value(&mut self, op: Op) -> Result<Value, ParseError> {
        self.skip_ws();
        if self.peek() != Some(b'(') {
            // libsinsp: a field (through `val()` or a transformer) or the name of a list.
            if let Some(v) = self.rhs_field()? {
                return Ok(v);
            }
            let at = self.i;
            if let Some(name) = self.identifier() {
                return Ok(Value::List(vec![Lit {
                    text: name.to_string(),
                    quoted: false,
                    at,
                }]));
            }
            return Err(self.error(&format!(
                "expected `(`, a list name or a field after `{}`",
                op.as_str()
            )));
        }
        self.i += 1;
        let mut items = Vec::new();
        self.skip_ws();
        if self.peek() == Some(b')') {
            self.i += 1;
            return Ok(Value::List(items));
        }
        loop {
            self.skip_ws();
            items.push(self.literal()?);
            self.skip_ws();
            match self.peek() {
                Some(b',') => self.i += 1,
                Some(b')') => {
                    self.i += 1;
                    return Ok(Value::List(items));
                }
                None => return Err(self.error("missing `)` at the end of the list")),
                Some(_) => return Err(self.error("expected `,` or `)` in the list")),
            }
        }
    }

    fn parse_value(&mut self) -> Result<Value, ParseError> {
        self.skip_ws();
        if let Some(v) = self.rhs_field()? {
            return Ok(v);
        }
        Ok(Value::One(self.literal()?))
    }

    /// A field on the right-hand side: `val(proc.pname)` (a bare field, no transformer inside,
    /// as libsinsp) or a transformer `tolower(proc.pname)`; `None` when neither is at the cursor.
    fn rhs_field(&mut self) -> Result<Option<Value>, ParseError> {
        if self.rest().starts_with("val(") {
            self.i += 4;
            self.skip_ws();
            if !self.field_name_ahead() {
                return Err(self.error("expected a field within `val()`"));
            }
            let f = self.parse_field()?;
            self.skip_ws();
            if self.peek() != Some(b')') {
                return Err(self.error("expected `)` after val(field"));
            }
            self.i += 1;
            return Ok(Some(Value::Field(f)));
        }
        if self.transformer_ahead() {
            return Ok(Some(Value::Field(self.parse_field()?)));
        }
        Ok(None)
    }

    fn literal(&mut self) -> Result<Lit, ParseError> {
        let at = self.i;
        match self.peek() {
            Some(b'"') | Some(b'\'') => Ok(Lit {
                text: self.quoted()?,
                quoted: true,
                at,
            }),
            _ => {
                while self.peek().is_some_and(is_bare) {
                    self.i += 1;
                }
                if self.i == at {
                    return Err(self.error("expected a value"));
                }
                Ok(Lit {
                    text: self.s[at..self.i].to_string(),
                    quoted: false,
                    at,
                })
            }
        }
    }

    /// A quoted string, unescaped as libsinsp's `unescape_str` does (filter/escaping.cpp):
    /// `\b \f \n \r \t \\ \/`, the string's own quote (`\"` in `"..."`, `\'` in
    /// `'...'`), `\xHH` (Falco 0.45; ASCII here), and `\ ` read as a lone backslash (libsinsp
    /// keeps it for Falco's sudoedit rule). Any other escape is an error, as in Falco.
    fn quoted(&mut self) -> Result<String, ParseError> {
        let start = self.i;
        let Some(q) = self.peek() else {
            return Err(self.error("expected a quoted string"));
        };
        self.i += 1;
        let body = self.i;
        let mut out = String::new();
        let mut chars = self.s[body..].char_indices();
        while let Some((off, c)) = chars.next() {
            if c as u32 == u32::from(q) {
                self.i = body + off + 1;
                return Ok(out);
            }
            if c != '\\' {
                out.push(c);
                continue;
            }
            let Some((eoff, e)) = chars.next() else {
                break;
            };
            let bad = |p: &Parser<'_>, message: String| ParseError {
                at: body + off,
                token: p.s[body + off..(body + eoff + e.len_utf8()).min(p.s.len())].to_string(),
                message,
            };
            match e {
                'b' => out.push('\u{8}'),
                'f' => out.push('\u{c}'),
                'n' => out.push('\n'),
                'r' => out.push('\r'),
                't' => out.push('\t'),
                '\\' | ' ' => out.push('\\'),
                '/' => out.push('/'),
                '"' | '\'' if e as u32 == u32::from(q) => out.push(e),
                '"' | '\'' => {
                    return Err(bad(
                        self,
                        format!("invalid \\{e} escape in a {}-quoted string", q as char),
                    ))
                }
                'x' => {
                    let hex: String = chars.by_ref().take(2).map(|(_, h)| h).collect();
                    match u8::from_str_radix(&hex, 16) {
                        Ok(b) if hex.len() == 2 && b.is_ascii() && b != 0 => {
                            out.push(char::from(b))
                        }
                        _ => {
                            return Err(bad(
                                self,
                                format!(
                                    "unsupported \\x escape \\x{hex}: Rampart takes \\x01 to \\x7f"
                                ),
                            ))
                        }
                    }
                }
                other => {
                    return Err(bad(
                        self,
                        format!("unsupported string escape sequence \\{other}"),
                    ))
                }
            }
        }
        Err(self.error_at(start, "unterminated quoted string"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(f: &str, op: Op, v: &str) -> Expr {
        let e = parse(&format!("{f} {} {v}", op.as_str())).expect("parses");
        e
    }

    #[test]
    fn and_binds_tighter_than_or() {
        let e = parse("a or b and c").expect("parses");
        let Expr::Or(items) = e else { panic!("or") };
        assert!(matches!(&items[1], Expr::And(v) if v.len() == 2));
    }

    #[test]
    fn falco_lists_and_bare_words() {
        let e = parse("proc.pname in (runc:[0:PARENT], \"puma reactor\", '(systemd)')")
            .expect("parses");
        let Expr::Check {
            value: Value::List(items),
            ..
        } = e
        else {
            panic!("list")
        };
        let texts: Vec<_> = items.iter().map(|l| l.text.as_str()).collect();
        assert_eq!(texts, ["runc:[0:PARENT]", "puma reactor", "(systemd)"]);
    }

    #[test]
    fn field_arguments_and_transformers() {
        let e = parse("tolower(proc.aname[2]) = bash and container.mount.dest[/proc*] exists")
            .expect("parses");
        let Expr::And(items) = e else { panic!("and") };
        let Expr::Check { field, .. } = &items[0] else {
            panic!("check")
        };
        assert_eq!(field.arg.as_deref(), Some("2"));
        assert_eq!(field.transforms, [Transform::ToLower]);
        let Expr::Check { field, op, .. } = &items[1] else {
            panic!("check")
        };
        assert_eq!((field.arg.as_deref(), *op), (Some("/proc*"), Op::Exists));
    }

    #[test]
    fn operators_without_spaces_and_direction_values() {
        assert!(matches!(
            check("evt.dir", Op::Eq, "<"),
            Expr::Check { op: Op::Eq, .. }
        ));
        let e = parse("fd.sport>=30000 and evt.rawres<0").expect("parses");
        assert!(matches!(e, Expr::And(_)));
        let e = parse("(proc.args endswith \\)").expect("parses");
        let Expr::Check {
            value: Value::One(l),
            ..
        } = e
        else {
            panic!("one")
        };
        assert_eq!(l.text, "\\");
    }

    #[test]
    fn keywords_need_a_boundary() {
        let e = parse("android_hosts or notable").expect("parses");
        let Expr::Or(items) = e else { panic!("or") };
        assert_eq!(
            items[0],
            Expr::Macro {
                name: "android_hosts".into(),
                at: 0
            }
        );
    }

    #[test]
    fn quoted_escapes_as_libsinsp() {
        let e = parse(r#"proc.args contains "\ " and proc.cmdline = "a \"b\"""#).expect("parses");
        let Expr::And(items) = e else { panic!("and") };
        let Expr::Check {
            value: Value::One(l),
            ..
        } = &items[0]
        else {
            panic!("one")
        };
        assert_eq!(l.text, "\\");
        let Expr::Check {
            value: Value::One(l),
            ..
        } = &items[1]
        else {
            panic!("one")
        };
        assert_eq!(l.text, "a \"b\"");
        let one = |c: &str| match parse(c) {
            Ok(Expr::Check {
                value: Value::One(l),
                ..
            }) => Ok(l.text),
            Ok(other) => panic!("{other:?}"),
            Err(e) => Err(e),
        };
        assert_eq!(one(r#"a.b = "\/x\\y\tz\x41""#), Ok("/x\\y\tzA".into()));
        assert_eq!(one(r#"a.b = 'it\'s'"#), Ok("it's".into()));
        let err = one(r#"a.b = 'say \"x\"'"#).expect_err("Falco refuses");
        assert!(err.message.contains("invalid"), "{err:?}");
        let err = one(r#"a.b = "\q""#).expect_err("Falco refuses");
        assert_eq!((err.at, err.token.as_str()), (7, "\\q"));
        assert!(one(r#"a.b = "\x4""#).is_err() && one(r#"a.b = "\xff""#).is_err());
        assert!(one(r#"a.b = "\x00""#).is_err());
    }

    #[test]
    fn errors_point_at_the_offending_token() {
        let err = parse("proc.name = bash and (fd.name contains").expect_err("bad");
        assert_eq!(err.token, "contains");
        let err = parse("proc.name = bash and (fd.name contains x").expect_err("bad");
        assert_eq!(err.token, "");
        let err = parse("proc.name bash").expect_err("bad");
        assert_eq!((err.at, err.token.as_str()), (10, "bash"));
        let err = parse("(proc.name = a").expect_err("bad");
        assert!(err.message.contains("parenthesis"), "{err:?}");
        let err = parse("proc.name = a b").expect_err("bad");
        assert_eq!(err.token, "b");
    }

    #[test]
    fn unquote_list_items() {
        assert_eq!(unquote_item("'(systemd)'"), "(systemd)");
        assert_eq!(unquote_item("\"(systemd)\""), "(systemd)");
        assert_eq!(
            unquote_item("\"sh -c node -e \\\"x\\\"\""),
            "sh -c node -e \"x\""
        );
        assert_eq!(unquote_item("bash"), "bash");
    }
}
