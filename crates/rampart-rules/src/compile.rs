//! From collected definitions to an evaluation plan.
//!
//! Macros are inlined, list names in `in`/`intersects`/`pmatch` lists are expanded, exceptions
//! become `and not (...)`, every field is resolved against the catalogue and every literal is
//! parsed for its field's type. Comparisons on fields Rampart does not produce become the
//! constant `false` (as a failed extraction is in Falco) and constants are folded; a rule whose
//! condition folds to `false`, or whose event types Rampart never produces, cannot fire and is
//! reported with what it needs.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use memchr::memmem::Finder;
use rampart_event::EventKind;

use crate::condition::{self, Expr, FieldExpr, Lit, Op, Transform, Value};
use crate::error::{Error, Location};
use crate::eval::{Check, Node, PrefixSet, Rhs, Scalar, ValueSet};
use crate::extract::{ArgName, FieldArg, FieldRef};
use crate::fields::{self, ArgSpec, Lookup, Ty, F};
use crate::loader::{CondText, ExValue, ExceptionDef, Fragment};
use crate::ruleset::kind_types;

/// Where the positions of an expression come from.
#[derive(Clone, Copy)]
pub(crate) enum Src<'a> {
    Cond(&'a CondText, &'a [usize]),
    At(&'a Location),
}

impl Src<'_> {
    fn loc(&self, offset: usize, token: &str) -> Location {
        match self {
            Src::Cond(c, starts) => c.location_of(starts, offset, token),
            Src::At(l) => (*l).clone(),
        }
    }
}

/// What a compiled condition needs, collected while compiling it.
#[derive(Debug, Default)]
pub(crate) struct Uses {
    pub absent: BTreeSet<String>,
}

/// The set of event types (`evt.type` values) a condition can match.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum TypeSet {
    All,
    Only(BTreeSet<String>),
    Except(BTreeSet<String>),
}

impl TypeSet {
    pub fn contains(&self, t: &str) -> bool {
        match self {
            TypeSet::All => true,
            TypeSet::Only(s) => s.contains(t),
            TypeSet::Except(s) => !s.contains(t),
        }
    }

    fn and(self, other: TypeSet) -> TypeSet {
        use TypeSet::*;
        match (self, other) {
            (All, x) | (x, All) => x,
            (Only(a), Only(b)) => Only(a.intersection(&b).cloned().collect()),
            (Only(a), Except(b)) | (Except(b), Only(a)) => {
                Only(a.difference(&b).cloned().collect())
            }
            (Except(a), Except(b)) => Except(a.union(&b).cloned().collect()),
        }
    }

    fn or(self, other: TypeSet) -> TypeSet {
        use TypeSet::*;
        match (self, other) {
            (All, _) | (_, All) => All,
            (Only(a), Only(b)) => Only(a.union(&b).cloned().collect()),
            (Only(a), Except(b)) | (Except(b), Only(a)) => {
                Except(b.difference(&a).cloned().collect())
            }
            (Except(a), Except(b)) => Except(a.intersection(&b).cloned().collect()),
        }
    }

    fn not(self) -> TypeSet {
        match self {
            TypeSet::All => TypeSet::Only(BTreeSet::new()),
            TypeSet::Only(s) => TypeSet::Except(s),
            TypeSet::Except(s) => TypeSet::Only(s),
        }
    }
}

/// The event types a compiled condition can match (Falco's evttype analysis): `evt.type`
/// comparisons restrict, `and` intersects, `or` unites, `not` complements only a pure type test.
pub(crate) fn types_of(node: &Node) -> TypeSet {
    match node {
        Node::Const(true) => TypeSet::All,
        Node::Const(false) => TypeSet::Only(BTreeSet::new()),
        Node::Absent => TypeSet::All,
        Node::And(items) => items
            .iter()
            .fold(TypeSet::All, |acc, n| acc.and(types_of(n))),
        Node::Or(items) => items
            .iter()
            .fold(TypeSet::Only(BTreeSet::new()), |acc, n| acc.or(types_of(n))),
        Node::Not(inner) => match inner.as_ref() {
            Node::Check(c) if is_type_check(c) => types_of(inner).not(),
            _ => TypeSet::All,
        },
        Node::Check(c) if c.field.id == F::EvtKind && c.field.transforms.is_empty() => {
            let names: Vec<&str> = match &c.rhs {
                Rhs::One(s) => vec![&*s.text],
                Rhs::Set(v) => v.strs.iter().map(|s| &**s).collect(),
                _ => return TypeSet::All,
            };
            if !matches!(c.op, Op::Eq | Op::In | Op::Intersects) {
                return TypeSet::All;
            }
            let mut set = BTreeSet::new();
            for n in names {
                match rampart_event::EventKind::from_name(n) {
                    Some(k) => set.extend(kind_types(k).iter().map(|t| t.to_string())),
                    None => return TypeSet::All,
                }
            }
            TypeSet::Only(set)
        }
        Node::Check(c) if is_type_check(c) => {
            let set: BTreeSet<String> = match &c.rhs {
                Rhs::One(s) => std::iter::once(s.text.to_string()).collect(),
                Rhs::Set(v) => v.strs.iter().map(|s| s.to_string()).collect(),
                _ => return TypeSet::All,
            };
            match c.op {
                Op::Eq | Op::In | Op::Intersects => TypeSet::Only(set),
                Op::Ne => TypeSet::Except(set),
                _ => TypeSet::All,
            }
        }
        Node::Check(_) => TypeSet::All,
    }
}

fn is_type_check(c: &Check) -> bool {
    matches!(c.field.id, F::EvtType | F::SyscallType) && c.field.transforms.is_empty()
}

/// Folds constants: `x and false` is `false`, `not false` is `true`, one-item groups unwrap.
pub(crate) fn fold(node: Node) -> Node {
    match node {
        Node::And(items) => {
            let mut out = Vec::new();
            for n in items.into_vec() {
                match fold(n) {
                    Node::Const(true) => {}
                    Node::Const(false) => return Node::Const(false),
                    Node::And(inner) => out.extend(inner.into_vec()),
                    other => out.push(other),
                }
            }
            match out.len() {
                0 => Node::Const(true),
                1 => out.pop().unwrap_or(Node::Const(true)),
                _ => Node::And(out.into_boxed_slice()),
            }
        }
        Node::Or(items) => {
            let mut out = Vec::new();
            for n in items.into_vec() {
                match fold(n) {
                    Node::Const(false) => {}
                    Node::Const(true) => return Node::Const(true),
                    Node::Or(inner) => out.extend(inner.into_vec()),
                    other => out.push(other),
                }
            }
            match out.len() {
                0 => Node::Const(false),
                1 => out.pop().unwrap_or(Node::Const(false)),
                _ => Node::Or(out.into_boxed_slice()),
            }
        }
        Node::Not(inner) => match fold(*inner) {
            Node::Const(b) => Node::Const(!b),
            Node::Not(x) => *x,
            other => Node::Not(Box::new(other)),
        },
        Node::Absent => Node::Const(false),
        other => other,
    }
}

/// Removes the top-level `evt.type` tests of a rule that is only ever evaluated for events of
/// the types in `types` (the rule index guarantees it): each such test covers `types`.
pub(crate) fn strip_type_checks(node: Node, types: &TypeSet) -> Node {
    strip(node, types)
}

/// The condition as evaluated for events of type `t` only, whose kind is one of `kinds` (the
/// engine uses a type's plan only for events of those kinds): `evt.type` tests, and `evt.kind`
/// tests that `kinds` decide, become constants.
pub(crate) fn specialize(node: &Node, t: &str, kinds: &[EventKind]) -> Node {
    let only: BTreeSet<String> = std::iter::once(t.to_string()).collect();
    order(fold(empty_sets(settle_kinds(
        settle_types(node.clone(), &only),
        kinds,
    ))))
}

/// Replaces each `evt.kind` equality or list test by its value when it is the same for every
/// kind in `kinds` (`evt.kind = auth.login` is false for every kind of the `connect` type).
fn settle_kinds(node: Node, kinds: &[EventKind]) -> Node {
    match node {
        Node::Check(c)
            if c.field.id == F::EvtKind
                && c.field.transforms.is_empty()
                && !kinds.is_empty()
                && matches!(c.op, Op::Eq | Op::In | Op::Ne) =>
        {
            let has = |k: &EventKind| match &c.rhs {
                Rhs::One(s) => *s.text == *k.as_str(),
                Rhs::Set(v) => v.strs.contains(k.as_str()),
                _ => false,
            };
            let all = kinds.iter().all(has);
            let none = !kinds.iter().any(has);
            match (c.op, all, none) {
                (Op::Ne, true, _) | (Op::Eq | Op::In, _, true) => Node::Const(false),
                (Op::Ne, _, true) | (Op::Eq | Op::In, true, _) => Node::Const(true),
                _ => Node::Check(c),
            }
        }
        Node::And(items) => Node::And(
            items
                .into_vec()
                .into_iter()
                .map(|n| settle_kinds(n, kinds))
                .collect(),
        ),
        Node::Or(items) => Node::Or(
            items
                .into_vec()
                .into_iter()
                .map(|n| settle_kinds(n, kinds))
                .collect(),
        ),
        Node::Not(n) => Node::Not(Box::new(settle_kinds(*n, kinds))),
        other => other,
    }
}

/// Replaces `in ()` / `intersects ()` by false, which is what they evaluate to (no value is in
/// an empty list, and a missing value equals no literal). Falco's files test many lists that
/// users are meant to fill (`container.image.repository in (user_trusted_images)`); computing
/// them cost an image-name parse per event. Only in the per-type plans: what a rule needs and
/// reports is judged on its condition as written.
fn empty_sets(node: Node) -> Node {
    match node {
        Node::Check(c)
            if matches!(c.op, Op::In | Op::Intersects)
                && !c.na
                && matches!(&c.rhs, Rhs::Set(v) if v.strs.is_empty()
                    && v.ints.is_empty()
                    && v.nets.is_empty()
                    && v.bools == [false; 2]) =>
        {
            Node::Const(false)
        }
        Node::And(items) => Node::And(items.into_vec().into_iter().map(empty_sets).collect()),
        Node::Or(items) => Node::Or(items.into_vec().into_iter().map(empty_sets).collect()),
        Node::Not(inner) => Node::Not(Box::new(empty_sets(*inner))),
        other => other,
    }
}

fn strip(node: Node, types: &TypeSet) -> Node {
    let TypeSet::Only(only) = types else {
        return node;
    };
    fold(settle_types(node, only))
}

/// Replaces each `evt.type` test by its value for events whose type is in `only`: a test
/// whose set covers `only` is true, one disjoint from it is false, wherever it is.
fn settle_types(node: Node, only: &BTreeSet<String>) -> Node {
    match node {
        Node::Check(c) if is_type_check(&c) && matches!(c.op, Op::Eq | Op::In | Op::Ne) => {
            let has = |t: &str| match &c.rhs {
                Rhs::One(s) => *s.text == *t,
                Rhs::Set(v) => v.strs.contains(t),
                _ => false,
            };
            let all = only.iter().all(|t| has(t));
            let none = only.iter().all(|t| !has(t));
            match (c.op, all, none) {
                (Op::Ne, true, _) => Node::Const(false),
                (Op::Ne, _, true) => Node::Const(true),
                (Op::Eq | Op::In, true, _) => Node::Const(true),
                (Op::Eq | Op::In, _, true) => Node::Const(false),
                _ => Node::Check(c),
            }
        }
        Node::And(items) => Node::And(
            items
                .into_vec()
                .into_iter()
                .map(|n| settle_types(n, only))
                .collect(),
        ),
        Node::Or(items) => Node::Or(
            items
                .into_vec()
                .into_iter()
                .map(|n| settle_types(n, only))
                .collect(),
        ),
        Node::Not(n) => Node::Not(Box::new(settle_types(*n, only))),
        other => other,
    }
}

/// An estimate of what testing `node` costs, for ordering `and`/`or` operands cheapest first.
fn cost(node: &Node) -> u32 {
    match node {
        Node::Const(_) | Node::Absent => 0,
        // Exclusions (`and not ...`) usually hold: test them after the conditions that select.
        Node::Not(n) => cost(n) + 8,
        Node::And(items) | Node::Or(items) => items.iter().map(cost).sum(),
        Node::Check(c) => {
            let field = match c.field.id {
                // Built strings: command lines, rendered arguments, connection tuples.
                F::ProcCmdline
                | F::ProcArgs
                | F::ProcExeline
                | F::ProcPcmdline
                | F::ProcAcmdline
                | F::EvtArgs
                | F::EvtArg
                | F::EvtRawArg
                | F::ThreadCapEffective
                | F::ThreadCapPermitted
                | F::ContainerLabels
                | F::ContainerInfo
                | F::EvtTime
                | F::EvtTimeS
                | F::EvtTimeIso
                | F::EvtDatetime
                | F::EvtDatetimeS
                | F::PrivCapEffective => 10,
                // One value per ancestor or per name.
                F::ProcAname
                | F::ProcApid
                | F::ProcAexe
                | F::ProcAexepath
                | F::DnsQuerySuffixes
                | F::NetRemoteNameSuffixes
                | F::DnsAnswerIp
                | F::DnsAnswerName => 4,
                // A path (cheap) or a connection tuple (built once per event).
                F::FdName | F::FdNameraw => 4,
                _ => 1,
            };
            let op = match c.op {
                Op::Regex => 20,
                Op::Glob | Op::IGlob | Op::IContains => 5,
                Op::PMatch | Op::Contains | Op::BContains => 3,
                Op::In | Op::Intersects => 2,
                _ => 0,
            };
            let transforms: u32 = c
                .field
                .transforms
                .iter()
                .map(|t| match t {
                    Transform::Basename | Transform::Len => 2,
                    _ => 30,
                })
                .sum();
            field + op + transforms
        }
    }
}

/// Orders the operands of every `and`/`or` cheapest first. Conditions have no side effects, so
/// the result is the same; an event that fails a cheap test skips the expensive ones.
pub(crate) fn order(node: Node) -> Node {
    match node {
        Node::And(items) => {
            let mut v: Vec<Node> = items.into_vec().into_iter().map(order).collect();
            v.sort_by_key(cost);
            Node::And(v.into_boxed_slice())
        }
        Node::Or(items) => {
            let v: Vec<Node> = items.into_vec().into_iter().map(order).collect();
            let mut v = merge_contains(v);
            v.sort_by_key(cost);
            if v.len() == 1 {
                return v.pop().unwrap_or(Node::Const(false));
            }
            Node::Or(v.into_boxed_slice())
        }
        Node::Not(n) => Node::Not(Box::new(order(*n))),
        other => other,
    }
}

/// Turns three or more `F contains X` (or `F icontains X`) operands of one `or` into one
/// Aho-Corasick test of `F`: one pass over the text instead of one per needle.
fn merge_contains(items: Vec<Node>) -> Vec<Node> {
    let needle = |n: &Node| -> Option<(String, Op, Vec<u8>)> {
        let Node::Check(c) = n else { return None };
        if !c.field.transforms.is_empty() {
            return None;
        }
        match (&c.op, &c.rhs) {
            (Op::Contains, Rhs::Contains(f)) => {
                Some((c.field.name.to_string(), Op::Contains, f.needle().to_vec()))
            }
            (Op::IContains, Rhs::One(s)) => Some((
                c.field.name.to_string(),
                Op::IContains,
                s.lower.as_bytes().to_vec(),
            )),
            _ => None,
        }
    };
    let mut groups: Vec<((String, Op), Vec<usize>)> = Vec::new();
    for (i, n) in items.iter().enumerate() {
        if let Some((f, op, _)) = needle(n) {
            match groups.iter_mut().find(|(k, _)| k.0 == f && k.1 == op) {
                Some((_, v)) => v.push(i),
                None => groups.push(((f, op), vec![i])),
            }
        }
    }
    let mut merged: Vec<Node> = Vec::new();
    let mut taken = vec![false; items.len()];
    for ((_, op), idx) in &groups {
        if idx.len() < 3 {
            continue;
        }
        let needles: Vec<Vec<u8>> = idx
            .iter()
            .filter_map(|&i| needle(&items[i]).map(|n| n.2))
            .collect();
        // A DFA without a prefilter: the haystacks are command lines and paths of tens of
        // bytes, where setting up a prefilter search cost more than it saved (callgrind: ~480
        // instructions per test with the default automaton).
        let Ok(ac) = aho_corasick::AhoCorasick::builder()
            .ascii_case_insensitive(*op == Op::IContains)
            .kind(Some(aho_corasick::AhoCorasickKind::DFA))
            .prefilter(false)
            .build(&needles)
        else {
            continue;
        };
        let Node::Check(first) = &items[idx[0]] else {
            continue;
        };
        merged.push(Node::Check(Box::new(Check {
            field: first.field.clone(),
            op: Op::Contains,
            rhs: Rhs::AnyOf(ac),
            memo: u32::MAX,
            na: false,
        })));
        for &i in idx {
            taken[i] = true;
        }
    }
    if merged.is_empty() {
        return items;
    }
    merged.extend(
        items
            .into_iter()
            .zip(taken)
            .filter(|(_, t)| !t)
            .map(|(n, _)| n),
    );
    merged
}

/// A macro, parsed once.
struct ParsedMacro {
    expr: Expr,
    cond: CondText,
    starts: Vec<usize>,
}

pub(crate) struct Compiler {
    lists: HashMap<String, Vec<String>>,
    macros: HashMap<String, ParsedMacro>,
    /// Every distinct comparison gets one memo slot: rules that share a comparison (through a
    /// macro like `open_write`, or `container`) evaluate it once per event.
    memo: std::cell::RefCell<HashMap<String, u32>>,
}

fn syntax(src: Src<'_>, e: condition::ParseError) -> Error {
    Error::Syntax {
        at: src.loc(e.at, &e.token),
        token: e.token,
        message: e.message,
    }
}

/// Parses a condition text, mapping errors to the source.
pub(crate) fn parse_cond(cond: &CondText) -> Result<(Expr, Vec<usize>), Error> {
    let (text, starts) = cond.joined();
    match condition::parse(&text) {
        Ok(e) => Ok((e, starts)),
        Err(e) => Err(syntax(Src::Cond(cond, &starts), e)),
    }
}

impl Compiler {
    /// Flattens lists (list names inside lists expand) and parses every macro.
    pub fn new(
        lists: &[crate::loader::ListDef],
        macros: &[crate::loader::MacroDef],
    ) -> Result<Compiler, Error> {
        let raw: HashMap<&str, &Vec<String>> =
            lists.iter().map(|l| (l.name.as_str(), &l.items)).collect();
        let mut flat = HashMap::new();
        for l in lists {
            let mut out = Vec::new();
            let mut stack = vec![l.name.as_str()];
            expand_list(&raw, &l.items, &mut out, &mut stack);
            flat.insert(l.name.clone(), out);
        }
        let mut parsed = HashMap::new();
        for m in macros {
            let (expr, starts) = parse_cond(&m.cond)?;
            parsed.insert(
                m.name.clone(),
                ParsedMacro {
                    expr,
                    cond: m.cond.clone(),
                    starts,
                },
            );
        }
        Ok(Compiler {
            lists: flat,
            macros: parsed,
            memo: Default::default(),
        })
    }

    /// How many memo slots the compiled comparisons use.
    pub fn memo_slots(&self) -> usize {
        self.memo.borrow().len()
    }

    fn memo_slot(&self, field: &FieldRef, op: Op, value: &str) -> u32 {
        let key = format!("{}\u{1}{}\u{1}{value}", field.name, op.as_str());
        let mut memo = self.memo.borrow_mut();
        let next = memo.len() as u32;
        *memo.entry(key).or_insert(next)
    }

    /// Compiles a condition text.
    pub fn condition(&self, cond: &CondText, uses: &mut Uses) -> Result<Node, Error> {
        let (expr, starts) = parse_cond(cond)?;
        let mut stack = Vec::new();
        self.build(&expr, Src::Cond(cond, &starts), uses, &mut stack)
    }

    /// `not (row or row ...)` for a rule's exceptions, or `None` when they have no values.
    pub fn exceptions(
        &self,
        excs: &[ExceptionDef],
        uses: &mut Uses,
    ) -> Result<Option<Node>, Error> {
        let mut rows = Vec::new();
        for ex in excs {
            let src = Src::At(&ex.at);
            let mut fields = Vec::new();
            for (f, comp) in ex.fields.iter().zip(&ex.comps) {
                let fe = parse_field_text(f).ok_or_else(|| Error::Schema {
                    at: ex.at.clone(),
                    message: format!("exception {:?}: invalid field {f:?}", ex.name),
                })?;
                let op = parse_op(comp).ok_or_else(|| Error::Schema {
                    at: ex.at.clone(),
                    message: format!(
                        "exception {:?}: invalid comparison operator {comp:?}",
                        ex.name
                    ),
                })?;
                fields.push((fe, op));
            }
            for row in &ex.values {
                let mut checks = Vec::new();
                for ((fe, op), v) in fields.iter().zip(row) {
                    let list_op = matches!(op, Op::In | Op::Intersects | Op::PMatch);
                    let lit = |t: &str, quoted: bool| Lit {
                        text: if quoted {
                            t.to_string()
                        } else {
                            condition::unquote_item(t)
                        },
                        quoted,
                        at: 0,
                    };
                    let value = match (v, list_op) {
                        (ExValue::Item(s), false) => Value::One(lit(s, true)),
                        (ExValue::Item(s), true) => Value::List(vec![Lit {
                            text: s.clone(),
                            quoted: false,
                            at: 0,
                        }]),
                        (ExValue::List(items), true) => {
                            Value::List(items.iter().map(|s| lit(s, false)).collect())
                        }
                        (ExValue::List(_), false) => {
                            return Err(Error::Schema {
                                at: ex.at.clone(),
                                message: format!(
                                    "exception {:?}: a list of values needs the `in`, `intersects` or `pmatch` comparison, not `{}`",
                                    ex.name,
                                    op.as_str()
                                ),
                            })
                        }
                    };
                    checks.push(self.check(fe, *op, &value, 0, src, uses)?);
                }
                rows.push(Node::And(checks.into_boxed_slice()));
            }
        }
        if rows.is_empty() {
            return Ok(None);
        }
        Ok(Some(Node::Not(Box::new(Node::Or(rows.into_boxed_slice())))))
    }

    fn build(
        &self,
        e: &Expr,
        src: Src<'_>,
        uses: &mut Uses,
        stack: &mut Vec<String>,
    ) -> Result<Node, Error> {
        Ok(match e {
            Expr::And(items) => Node::And(
                items
                    .iter()
                    .map(|i| self.build(i, src, uses, stack))
                    .collect::<Result<Vec<_>, _>>()?
                    .into_boxed_slice(),
            ),
            Expr::Or(items) => Node::Or(
                items
                    .iter()
                    .map(|i| self.build(i, src, uses, stack))
                    .collect::<Result<Vec<_>, _>>()?
                    .into_boxed_slice(),
            ),
            Expr::Not(inner) => Node::Not(Box::new(self.build(inner, src, uses, stack)?)),
            Expr::Macro { name, at } => {
                let Some(m) = self.macros.get(name) else {
                    return Err(Error::Macro {
                        at: src.loc(*at, name),
                        name: name.clone(),
                        message: "undefined macro",
                    });
                };
                if stack.contains(name) {
                    return Err(Error::Macro {
                        at: src.loc(*at, name),
                        name: name.clone(),
                        message: "macro refers to itself through",
                    });
                }
                stack.push(name.clone());
                let node = self.build(&m.expr, Src::Cond(&m.cond, &m.starts), uses, stack);
                stack.pop();
                node?
            }
            Expr::Check {
                field,
                op,
                value,
                at,
            } => self.check(field, *op, value, *at, src, uses)?,
        })
    }

    /// Resolves a field reference; `Ok(None)` for a field Rampart does not produce.
    pub fn field(
        &self,
        fe: &FieldExpr,
        src: Src<'_>,
        uses: &mut Uses,
    ) -> Result<Option<(FieldRef, Ty)>, Error> {
        let mut written = match &fe.arg {
            Some(a) => format!("{}[{a}]", fe.name),
            None => fe.name.clone(),
        };
        for t in &fe.transforms {
            written = format!("{}({written})", t.name());
        }
        let (def, dotted) = match fields::lookup(&fe.name) {
            Lookup::Known { def, dotted_arg } => (def, dotted_arg),
            Lookup::AbsentClass => {
                uses.absent.insert(fe.name.clone());
                return Ok(None);
            }
            Lookup::Unknown => {
                return Err(Error::UnknownField {
                    at: src.loc(fe.at, &fe.name),
                    hint: fields::suggest(&fe.name)
                        .map(|s| format!(" (did you mean {s}?)"))
                        .unwrap_or_default(),
                    field: fe.name.clone(),
                })
            }
        };
        let Some(id) = def.id else {
            uses.absent.insert(fe.name.clone());
            return Ok(None);
        };
        let at = src.loc(fe.at, &fe.name);
        let type_err = |message: String| Error::Type {
            at: at.clone(),
            field: written.clone(),
            op: String::new(),
            value: String::new(),
            message,
        };
        let arg = match (def.arg, dotted.as_deref().or(fe.arg.as_deref())) {
            (ArgSpec::None, None) => FieldArg::None,
            (ArgSpec::None, Some(a)) => {
                return Err(type_err(format!(
                    "{} takes no argument, found [{a}]",
                    def.name
                )))
            }
            (ArgSpec::Index, None) => FieldArg::None,
            (ArgSpec::Index, Some(a)) => match a.parse::<u32>() {
                Ok(n) => FieldArg::Index(n),
                Err(_) => {
                    return Err(type_err(format!(
                        "the index of {} must be a number",
                        def.name
                    )))
                }
            },
            (ArgSpec::Key, Some(k)) => FieldArg::Key(k.into()),
            (ArgSpec::Key, None) => {
                return Err(type_err(format!(
                    "{} needs a key: {}[KEY]",
                    def.name, def.name
                )))
            }
            (ArgSpec::EventArg, None) => {
                return Err(type_err(format!(
                    "{} needs an argument name: {}.NAME or {}[N]",
                    def.name, def.name, def.name
                )))
            }
            (ArgSpec::EventArg, Some(a)) => match a.parse::<u32>() {
                Ok(n) => FieldArg::ArgPos(n),
                Err(_) => match ArgName::parse(a) {
                    Some(n) => FieldArg::Arg(n),
                    None => {
                        uses.absent.insert(format!("{}.{a}", def.name));
                        return Ok(None);
                    }
                },
            },
        };
        // As libsinsp: tolower, toupper, b64 and basename take text and give text; len takes
        // text and gives a number. Anything else is an error at load time.
        let mut ty = def.ty;
        for t in &fe.transforms {
            if !matches!(ty, Ty::Str | Ty::Dyn) {
                return Err(type_err(format!(
                    "{}() applies to text fields, not to a {} value",
                    t.name(),
                    ty.name()
                )));
            }
            ty = if *t == Transform::Len {
                Ty::Int
            } else {
                Ty::Str
            };
        }
        let multi = matches!(
            (id, &arg),
            (
                F::ProcAname | F::ProcApid | F::ProcAexe | F::ProcAexepath | F::ProcAcmdline,
                FieldArg::None,
            ) | (
                F::FdIp
                    | F::FdPort
                    | F::FdNet
                    | F::FdCipName
                    | F::FdSipName
                    | F::FdRipName
                    | F::NetRemoteName
                    | F::NetRemoteNameSuffixes
                    | F::DnsQuerySuffixes
                    | F::DnsAnswerIp
                    | F::DnsAnswerName
                    | F::PayloadKeys
                    | F::PrivNamespaces,
                _,
            )
        );
        Ok(Some((
            FieldRef {
                id,
                multi,
                arg,
                transforms: fe.transforms.clone().into_boxed_slice(),
                name: written.into(),
            },
            ty,
        )))
    }

    fn check(
        &self,
        fe: &FieldExpr,
        op: Op,
        value: &Value,
        at: usize,
        src: Src<'_>,
        uses: &mut Uses,
    ) -> Result<Node, Error> {
        let na = match value {
            Value::One(l) => is_na(&l.text),
            Value::List(items) => items.iter().any(|l| is_na(&l.text)),
            _ => false,
        };
        let Some((field, ty)) = self.field(fe, src, uses)? else {
            // Falco shows a missing value as `<NA>`: `field in ("<NA>", "N/A")` holds.
            if na && matches!(op, Op::Eq | Op::In | Op::Intersects) {
                return Ok(Node::Const(true));
            }
            return Ok(Node::Absent);
        };
        let loc = |off: usize, tok: &str| src.loc(off, tok);
        let type_err = |lit: &str, off: usize, message: String| Error::Type {
            at: loc(off, lit),
            field: field.name.to_string(),
            op: op.as_str().to_string(),
            value: lit.to_string(),
            message,
        };
        let allowed = match ty {
            Ty::Int => matches!(
                op,
                Op::Eq
                    | Op::Ne
                    | Op::Lt
                    | Op::Le
                    | Op::Gt
                    | Op::Ge
                    | Op::In
                    | Op::Intersects
                    | Op::Exists
            ),
            Ty::Bool => matches!(op, Op::Eq | Op::Ne | Op::In | Op::Exists),
            Ty::Ip | Ty::Net => {
                matches!(op, Op::Eq | Op::Ne | Op::In | Op::Intersects | Op::Exists)
            }
            Ty::Str | Ty::Dyn => true,
        };
        if !allowed {
            return Err(type_err(
                "",
                at,
                format!(
                    "operator `{}` does not apply to a {} field",
                    op.as_str(),
                    ty.name()
                ),
            ));
        }
        // Rampart's events merge a syscall's enter and exit: both directions match.
        if field.id == F::EvtDir {
            let dirs_only = |items: &[Lit]| items.iter().all(|l| l.text == "<" || l.text == ">");
            match (op, value) {
                (Op::Eq, Value::One(l)) if dirs_only(std::slice::from_ref(l)) => {
                    return Ok(Node::Const(true))
                }
                (Op::In, Value::List(items)) if !items.is_empty() && dirs_only(items) => {
                    return Ok(Node::Const(true))
                }
                (Op::Ne, Value::One(l)) if dirs_only(std::slice::from_ref(l)) => {
                    return Ok(Node::Const(false))
                }
                _ => {}
            }
        }
        let check_lit = |text: &str, off: usize| -> Result<(), Error> {
            let s = Scalar::new(text);
            let ok = match ty {
                Ty::Int => s.int.is_some(),
                Ty::Bool => s.boolean.is_some(),
                Ty::Ip | Ty::Net => s.net.is_some(),
                Ty::Str | Ty::Dyn => true,
            };
            if ok {
                Ok(())
            } else {
                Err(type_err(
                    text,
                    off,
                    format!("not a valid {} value", ty.name()),
                ))
            }
        };
        let mut memo_key = String::new();
        if let Value::One(l) = value {
            memo_key.push_str(&l.text);
        }
        let rhs = match (op, value) {
            (Op::Exists, _) => Rhs::None,
            (_, Value::Field(other)) => match self.field(other, src, uses)? {
                Some((f, _)) => {
                    memo_key = format!("val({})", f.name);
                    Rhs::Field(f)
                }
                None => return Ok(Node::Absent),
            },
            (Op::In | Op::Intersects | Op::PMatch, Value::List(items)) => {
                let mut texts: Vec<(String, usize, String)> = Vec::new();
                for l in items {
                    match self.lists.get(&l.text).filter(|_| !l.quoted) {
                        Some(list) => {
                            for item in list {
                                texts.push((item.clone(), l.at, l.text.clone()));
                            }
                        }
                        None => texts.push((l.text.clone(), l.at, l.text.clone())),
                    }
                }
                for (t, _, _) in &texts {
                    memo_key.push_str(t);
                    memo_key.push('\u{2}');
                }
                if op == Op::PMatch {
                    let mut set = PrefixSet::default();
                    for (t, _, _) in &texts {
                        set.insert(t);
                    }
                    Rhs::Prefixes(set)
                } else {
                    let mut set = ValueSet::default();
                    for (t, off, written) in &texts {
                        if let Err(e) = check_lit(t, *off) {
                            if t != written {
                                return Err(type_err(
                                    t,
                                    *off,
                                    format!(
                                        "item of list {written} is not a valid {} value",
                                        ty.name()
                                    ),
                                ));
                            }
                            return Err(e);
                        }
                        set.insert(t);
                    }
                    Rhs::Set(set)
                }
            }
            (_, Value::One(l)) => match op {
                Op::Contains
                    if matches!(field.arg, FieldArg::Arg(ArgName::Flags | ArgName::Mode))
                        && field.id == F::EvtArg
                        && field.transforms.is_empty() =>
                {
                    let mode = field.arg == FieldArg::Arg(ArgName::Mode);
                    let test = if mode {
                        crate::render::BitTest::mode(&l.text)
                    } else {
                        crate::render::BitTest::open_flags(&l.text)
                    };
                    let text = Finder::new(l.text.as_bytes()).into_owned();
                    match test {
                        Some(test) => Rhs::Bits { mode, test, text },
                        None => Rhs::Contains(text),
                    }
                }
                Op::Contains => Rhs::Contains(Finder::new(l.text.as_bytes()).into_owned()),
                Op::BContains | Op::BStartsWith => {
                    let bytes = decode_hex(&l.text).ok_or_else(|| {
                        type_err(&l.text, l.at, "expected hex bytes (e.g. cafebabe)".into())
                    })?;
                    if op == Op::BContains {
                        Rhs::Contains(Finder::new(&bytes).into_owned())
                    } else {
                        Rhs::One(Scalar::new(&String::from_utf8_lossy(&bytes)))
                    }
                }
                // Falco's `regex` is RE2 matched with ANCHOR_BOTH: the whole value must match.
                Op::Regex => match regex::Regex::new(&format!("^(?:{})$", l.text)) {
                    Ok(r) => Rhs::Regex(r),
                    Err(e) => return Err(type_err(&l.text, l.at, format!("invalid regex: {e}"))),
                },
                _ => {
                    check_lit(&l.text, l.at)?;
                    Rhs::One(Scalar::new(&l.text))
                }
            },
            (_, Value::List(_)) | (_, Value::None) => {
                return Err(type_err(
                    "",
                    at,
                    "this operator needs a single value".into(),
                ))
            }
        };
        let memo = self.memo_slot(&field, op, &memo_key);
        Ok(Node::Check(Box::new(Check {
            field,
            op,
            rhs,
            memo,
            na,
        })))
    }
}

fn is_na(text: &str) -> bool {
    text == "<NA>" || text == "N/A"
}

fn expand_list<'a>(
    raw: &HashMap<&'a str, &'a Vec<String>>,
    items: &'a [String],
    out: &mut Vec<String>,
    stack: &mut Vec<&'a str>,
) {
    for item in items {
        let key = item.trim();
        match raw.get(key) {
            Some(inner) if !stack.contains(&key) => {
                stack.push(key);
                expand_list(raw, inner, out, stack);
                stack.pop();
            }
            _ => out.push(condition::unquote_item(item)),
        }
    }
}

fn decode_hex(s: &str) -> Option<Vec<u8>> {
    let s = s.trim();
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

/// Parses a field reference written alone (`proc.aname[2]`), as in exceptions and group-by.
pub(crate) fn parse_field_text(text: &str) -> Option<FieldExpr> {
    match condition::parse(&format!("{} exists", text.trim())).ok()? {
        Expr::Check { field, .. } => Some(field),
        _ => None,
    }
}

pub(crate) fn parse_op(s: &str) -> Option<Op> {
    Some(match s.trim() {
        "=" | "==" => Op::Eq,
        "!=" => Op::Ne,
        "<" => Op::Lt,
        "<=" => Op::Le,
        ">" => Op::Gt,
        ">=" => Op::Ge,
        "contains" => Op::Contains,
        "icontains" => Op::IContains,
        "bcontains" => Op::BContains,
        "startswith" => Op::StartsWith,
        "bstartswith" => Op::BStartsWith,
        "endswith" => Op::EndsWith,
        "glob" => Op::Glob,
        "iglob" => Op::IGlob,
        "regex" => Op::Regex,
        "in" => Op::In,
        "intersects" => Op::Intersects,
        "pmatch" => Op::PMatch,
        "exists" => Op::Exists,
        _ => return None,
    })
}

/// One piece of a rule's output template.
#[derive(Debug)]
pub(crate) enum Piece {
    Text(String),
    /// A field: its name as written (shared with every alert's output fields) and, when
    /// Rampart produces it, how to read it.
    Field(Arc<str>, Option<FieldRef>),
}

/// Parses an output: `%field`, `%field[arg]`, `%evt.arg.name`; `%%` is a literal `%`.
/// `%container.info` is a field like any other.
pub(crate) fn output(
    compiler: &Compiler,
    frag: &Fragment,
    uses: &mut Uses,
) -> Result<Vec<Piece>, Error> {
    let text = frag.text.trim_end();
    let b = text.as_bytes();
    let mut pieces = Vec::new();
    let mut lit = String::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] != b'%' {
            let ch = text[i..].chars().next().unwrap_or(' ');
            lit.push(ch);
            i += ch.len_utf8();
            continue;
        }
        if b.get(i + 1) == Some(&b'%') {
            lit.push('%');
            i += 2;
            continue;
        }
        // A field name: letters, digits, `_`, `.`, then an optional [arg].
        let start = i + 1;
        let mut j = start;
        while j < b.len() && (b[j].is_ascii_alphanumeric() || b[j] == b'_' || b[j] == b'.') {
            j += 1;
        }
        while j > start && b[j - 1] == b'.' {
            j -= 1;
        }
        if j < b.len() && b[j] == b'[' {
            if let Some(close) = text[j..].find(']') {
                j += close + 1;
            }
        }
        let written = &text[start..j];
        if written.is_empty() || !condition::is_field_name(written.split('[').next().unwrap_or(""))
        {
            lit.push('%');
            i += 1;
            continue;
        }
        let fe = parse_field_text(written).ok_or_else(|| Error::Syntax {
            at: frag.location_of(start, written),
            token: written.to_string(),
            message: "invalid field in output".into(),
        })?;
        let mut fe = fe;
        fe.at = start;
        let single = CondText {
            fragments: vec![frag.clone()],
        };
        let starts = [0usize];
        let resolved = compiler.field(&fe, Src::Cond(&single, &starts), uses)?;
        if !lit.is_empty() {
            pieces.push(Piece::Text(std::mem::take(&mut lit)));
        }
        pieces.push(Piece::Field(written.into(), resolved.map(|(f, _)| f)));
        i = j;
    }
    if !lit.is_empty() {
        pieces.push(Piece::Text(lit));
    }
    Ok(pieces)
}
