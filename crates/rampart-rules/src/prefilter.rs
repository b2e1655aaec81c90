//! Prefilters for the single-event rules of one event type: which rules can match an event,
//! found by a few lookups instead of evaluating every rule.
//!
//! For each rule the plan derives, from its (specialised) condition, a set of *alternatives*:
//! facts about one field's value of which at least one holds whenever the condition does.
//! - `field = literal`, `field in (...)`: the value is one of the literals (a hash lookup);
//! - a path field starting with literal prefixes (`startswith /etc/`, `pmatch`, a glob's
//!   literal head): the value's first component is one of theirs (`/etc`; a hash lookup);
//! - `contains`, `startswith`, `endswith`, a glob's literal head or tail: the value contains
//!   that literal (one Aho-Corasick automaton per field, over the literals of all rules).
//!
//! An `and` takes the most selective alternatives of one of its operands (an equality on a
//! field with few values, such as `fd.typechar = f`, selects nothing and is not used); an `or`
//! has alternatives when all its operands do, and takes them all (on any fields). A `not`, a
//! regex, a comparison of numbers and anything else has none: rules without alternatives are
//! evaluated for every event of the type.
//!
//! Guarantees: the rules the lookups return plus the rules without alternatives are a superset
//! of the rules that can match the event (a value that is not text, such as a number for a
//! substring, selects every rule of the lookup); [`Plan::candidates`] yields them once each, in
//! load order, so `rule_matching: first` picks the same rule as a full scan. The tests in
//! `tests/prefilter.rs` compare, on generated events, every rule set with its evaluation
//! without prefilters ([`crate::Engine::process_without_prefilters`]).

use aho_corasick::AhoCorasick;
use rustc_hash::FxHashMap;

use crate::condition::Op;
use crate::eval::{Check, Node, Rhs};
use crate::extract::{Ctx, FieldRef, Val};

/// A lookup serving fewer rules than this is not worth it (see [`Plan::new`]).
const MIN_LOOKUP: usize = 2;

/// Substrings shorter than this select too many values to be worth a lookup.
const MIN_SUBSTRING: usize = 3;

#[derive(Debug, Default)]
pub(crate) struct Plan {
    /// Positions (indexes into the slot's rules) evaluated for every event, ascending.
    always: Box<[u32]>,
    groups: Box<[Group]>,
    paths: Box<[PathGroup]>,
    subs: Box<[SubGroup]>,
}

/// Rules that need a field to equal one of some literals, by literal.
#[derive(Debug)]
struct Group {
    field: FieldRef,
    strs: FxHashMap<Box<str>, Box<[u32]>>,
    ints: FxHashMap<i64, Box<[u32]>>,
    /// Every position of the group, for a value that is neither text nor a number.
    all: Box<[u32]>,
}

/// Rules that need a path field to start with one of some literal prefixes (`startswith`,
/// `pmatch`, a glob's literal head), indexed by the prefixes' first component (`/etc`).
#[derive(Debug)]
struct PathGroup {
    field: FieldRef,
    by_first: FxHashMap<Box<str>, Box<[u32]>>,
    all: Box<[u32]>,
}

/// Rules that need a field to contain one of some literals: one automaton over all of them.
#[derive(Debug)]
struct SubGroup {
    field: FieldRef,
    ac: AhoCorasick,
    /// The positions of each pattern of `ac`, by pattern id.
    by_pattern: Box<[Box<[u32]>]>,
    all: Box<[u32]>,
}

/// One fact about one field's value that a condition needs (see the module documentation).
#[derive(Debug, Clone)]
enum Alt<'n> {
    /// The value is this text (or this number).
    Eq(&'n FieldRef, &'n str, Option<i64>),
    /// The value is a path whose first component is this one.
    Path(&'n FieldRef, Box<str>),
    /// The value contains this text.
    Sub(&'n FieldRef, Box<str>),
}

impl<'n> Alt<'n> {
    fn field(&self) -> &'n FieldRef {
        match self {
            Alt::Eq(f, ..) | Alt::Path(f, _) | Alt::Sub(f, _) => f,
        }
    }
}

/// How well a set of alternatives narrows the rules (higher is better).
type Quality = u8;

/// Fields whose values are few (an event type, a direction, a file descriptor's type letter, a
/// result): an equality on them selects most events of a type.
fn coarse(field: &str) -> bool {
    field.starts_with("evt.is_")
        || matches!(
            field,
            "evt.type"
                | "evt.dir"
                | "evt.category"
                | "evt.kind"
                | "evt.res"
                | "evt.rawres"
                | "evt.failed"
                | "evt.source"
                | "syscall.type"
                | "fd.typechar"
                | "fd.type"
                | "fd.l4proto"
                | "fd.sockfamily"
                | "fd.num"
                | "fd.is_server"
                | "fd.connected"
                | "user.uid"
                | "user.loginuid"
                | "user.name"
                | "user.loginname"
                | "proc.tty"
                | "container.privileged"
                | "container.id"
                | "container.name"
        )
}

/// The first component of a path prefix when every path starting with `prefix` has it: `/etc`
/// for `/etc/x` (not for `/et`, which `/etc2/...` also starts with).
fn complete_first(prefix: &str) -> Option<&str> {
    let rest = prefix.strip_prefix('/')?;
    rest.find('/').map(|i| &prefix[..i + 1])
}

/// A substring every value matching glob `pat` contains: its longest run of literal text
/// between wildcards (`/.ssh/id_` of `*/.ssh/id_*`). Without FNM_PATHNAME (Falco's `glob`)
/// the literal characters between two wildcards match themselves, contiguously, wherever the
/// wildcards put them. A bracket class (`[rd]`) is a wildcard, as is an unclosed `[` and an
/// escape (`\*`), which end a run without being part of it.
fn glob_literal(pat: &str) -> Option<&str> {
    let b = pat.as_bytes();
    let (mut best, mut start, mut i) = (0..0, 0, 0);
    let end_run = |start: usize, end: usize, best: &mut std::ops::Range<usize>| {
        if end > start && end - start > best.len() {
            *best = start..end;
        }
    };
    while i < b.len() {
        match b[i] {
            b'*' | b'?' | b'\\' | b']' => {
                end_run(start, i, &mut best);
                // An escape hides the next character: leave it out too.
                i += if b[i] == b'\\' { 2 } else { 1 };
                start = i;
            }
            b'[' => {
                end_run(start, i, &mut best);
                // Skip the class: `]` right after `[` or `[!` belongs to it, as in `glob`.
                let mut j = i + 1;
                if matches!(b.get(j), Some(b'!' | b'^')) {
                    j += 1;
                }
                if b.get(j) == Some(&b']') {
                    j += 1;
                }
                while j < b.len() && b[j] != b']' {
                    j += 1;
                }
                i = (j + 1).min(b.len());
                start = i;
            }
            _ => i += 1,
        }
    }
    end_run(start, b.len(), &mut best);
    let run = pat.get(best)?;
    (run.len() >= MIN_SUBSTRING).then_some(run)
}

fn substring<'n>(f: &'n FieldRef, text: &[u8]) -> Option<(Vec<Alt<'n>>, Quality)> {
    let text = std::str::from_utf8(text).ok()?;
    if text.len() < MIN_SUBSTRING {
        return None;
    }
    let quality = if text.len() >= 5 { 3 } else { 2 };
    Some((vec![Alt::Sub(f, text.into())], quality))
}

/// The alternatives every match of `node` needs, and how selective they are; `None` when a
/// match needs none that a prefilter can look up.
fn alternatives(node: &Node) -> Option<(Vec<Alt<'_>>, Quality)> {
    match node {
        Node::Check(c) => check_alternatives(c),
        Node::And(items) => items
            .iter()
            .filter_map(alternatives)
            // The first of the best: operands are ordered cheapest first.
            .fold(
                None,
                |best: Option<(Vec<Alt<'_>>, Quality)>, a| match &best {
                    Some((_, q)) if *q >= a.1 => best,
                    _ => Some(a),
                },
            ),
        Node::Or(items) => {
            let mut all = Vec::new();
            let mut quality = Quality::MAX;
            for i in items.iter() {
                let (alts, q) = alternatives(i)?;
                all.extend(alts);
                quality = quality.min(q);
            }
            Some((all, quality))
        }
        Node::Const(_) | Node::Absent | Node::Not(_) => None,
    }
}

/// Every set of alternatives a match of `node` needs, best first: for an `and`, each
/// operand's (a rule whose best set ends in a lookup too small to keep falls back to the next);
/// for anything else, its one set.
fn alternative_sets(node: &Node) -> Vec<(Vec<Alt<'_>>, Quality)> {
    match node {
        Node::And(items) => {
            let mut sets: Vec<_> = items.iter().filter_map(alternatives).collect();
            // Stable: among equals, the first operand (operands are ordered cheapest first).
            sets.sort_by_key(|(_, q)| std::cmp::Reverse(*q));
            sets
        }
        other => alternatives(other).into_iter().collect(),
    }
}

fn check_alternatives(c: &Check) -> Option<(Vec<Alt<'_>>, Quality)> {
    if c.field.multi || !c.field.transforms.is_empty() || c.na {
        return None;
    }
    let f = &c.field;
    match (&c.op, &c.rhs) {
        (Op::Eq, Rhs::One(s)) if s.boolean.is_none() && s.net.is_none() => {
            (!coarse(&f.name)).then(|| (vec![Alt::Eq(f, &s.text, s.int)], 4))
        }
        (Op::In | Op::Intersects, Rhs::Set(set))
            if set.nets.is_empty() && set.bools == [false; 2] =>
        {
            if coarse(&f.name) {
                return None;
            }
            let mut alts: Vec<Alt<'_>> = set.strs.iter().map(|t| Alt::Eq(f, t, None)).collect();
            // A number matches by value (`0x1092` is 4242): the set's numbers, keyed by value.
            alts.extend(set.ints.iter().map(|i| Alt::Eq(f, "", Some(*i))));
            Some((alts, 4))
        }
        (Op::StartsWith | Op::BStartsWith, Rhs::One(s)) => match complete_first(&s.text) {
            Some(first) => Some((vec![Alt::Path(f, first.into())], 2)),
            None => substring(f, s.text.as_bytes()),
        },
        (Op::EndsWith, Rhs::One(s)) => substring(f, s.text.as_bytes()),
        (Op::Contains | Op::BContains, Rhs::Contains(finder)) => substring(f, finder.needle()),
        (Op::Contains | Op::BContains, Rhs::One(s)) => substring(f, s.text.as_bytes()),
        (Op::Glob, Rhs::One(s)) => {
            let head = s
                .text
                .find(['*', '?', '[', '\\'])
                .map_or(&*s.text, |i| &s.text[..i]);
            if head.len() == s.text.len() && s.text.starts_with('/') {
                // Without wildcards a glob is an equality.
                Some((
                    vec![Alt::Path(f, crate::eval::first_component(&s.text).into())],
                    2,
                ))
            } else if let Some(first) = complete_first(head) {
                Some((vec![Alt::Path(f, first.into())], 2))
            } else {
                substring(f, glob_literal(&s.text)?.as_bytes())
            }
        }
        (Op::PMatch, Rhs::Prefixes(p)) => {
            let firsts = p.first_components()?;
            Some((firsts.into_iter().map(|x| Alt::Path(f, x)).collect(), 2))
        }
        _ => None,
    }
}

/// Each key's positions ascending and unique, boxed.
fn finish<K: std::hash::Hash + Eq>(m: FxHashMap<K, Vec<u32>>) -> FxHashMap<K, Box<[u32]>> {
    m.into_iter().map(|(k, v)| (k, sorted(v))).collect()
}

fn sorted(mut v: Vec<u32>) -> Box<[u32]> {
    v.sort_unstable();
    v.dedup();
    v.into_boxed_slice()
}

/// What kind of lookup an alternative needs, and on which field (as written).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Kind {
    Eq,
    Path,
    Sub,
}

impl Plan {
    pub fn new(rules: &[(u32, Node)]) -> Plan {
        // (kind, field as written) -> (field, [(position, alternative)]), in order of first use.
        type Members<'n> = Vec<(u32, Alt<'n>)>;
        type Lookup<'n> = ((Kind, Box<str>), &'n FieldRef, Members<'n>);
        let sets: Vec<Vec<(Vec<Alt<'_>>, Quality)>> = rules
            .iter()
            .map(|(_, node)| alternative_sets(node))
            .collect();
        // The set of alternatives each rule uses (an index into its `sets`); past the end,
        // the rule is evaluated for every event.
        let mut choice = vec![0usize; rules.len()];
        let mut lookups: Vec<Lookup<'_>>;
        // A lookup serving fewer than MIN_LOOKUP rules costs about what evaluating them does
        // (and can make the engine render a value, such as a connection's `fd.name`, that no
        // rule reads otherwise): its rules fall back to their next set of alternatives, or
        // are evaluated for every event when they have none left. Choices only advance, so
        // this ends.
        loop {
            lookups = Vec::new();
            for (pos, rule_sets) in sets.iter().enumerate() {
                let Some((alts, _)) = rule_sets.get(choice[pos]) else {
                    continue;
                };
                for alt in alts {
                    let kind = match alt {
                        Alt::Eq(..) => Kind::Eq,
                        Alt::Path(..) => Kind::Path,
                        Alt::Sub(..) => Kind::Sub,
                    };
                    let key = (kind, alt.field().name.clone());
                    let member = (pos as u32, alt.clone());
                    match lookups.iter_mut().find(|(k, ..)| *k == key) {
                        Some((_, _, v)) => v.push(member),
                        None => lookups.push((key, alt.field(), vec![member])),
                    }
                }
            }
            let small: rustc_hash::FxHashSet<u32> = lookups
                .iter()
                .filter(|(_, _, m)| {
                    let mut rules: Vec<u32> = m.iter().map(|(p, _)| *p).collect();
                    rules.dedup();
                    rules.len() < MIN_LOOKUP
                })
                .flat_map(|(_, _, m)| m.iter().map(|(p, _)| *p))
                .collect();
            if small.is_empty() {
                break;
            }
            for p in small {
                choice[p as usize] += 1;
            }
        }
        let mut always: Vec<u32> = (0..rules.len() as u32)
            .filter(|&p| choice[p as usize] >= sets[p as usize].len())
            .collect();
        let mut groups = Vec::new();
        let mut paths = Vec::new();
        let mut subs = Vec::new();
        for ((kind, _), field, members) in lookups {
            let all = sorted(members.iter().map(|(p, _)| *p).collect());
            match kind {
                Kind::Eq => {
                    let mut strs: FxHashMap<Box<str>, Vec<u32>> = FxHashMap::default();
                    let mut ints: FxHashMap<i64, Vec<u32>> = FxHashMap::default();
                    for (pos, alt) in &members {
                        if let Alt::Eq(_, text, int) = alt {
                            if !text.is_empty() || int.is_none() {
                                strs.entry((*text).into()).or_default().push(*pos);
                            }
                            if let Some(i) = int {
                                ints.entry(*i).or_default().push(*pos);
                            }
                        }
                    }
                    groups.push(Group {
                        field: field.clone(),
                        strs: finish(strs),
                        ints: finish(ints),
                        all,
                    });
                }
                Kind::Path => {
                    let mut by_first: FxHashMap<Box<str>, Vec<u32>> = FxHashMap::default();
                    for (pos, alt) in &members {
                        if let Alt::Path(_, first) = alt {
                            by_first.entry(first.clone()).or_default().push(*pos);
                        }
                    }
                    paths.push(PathGroup {
                        field: field.clone(),
                        by_first: finish(by_first),
                        all,
                    });
                }
                Kind::Sub => {
                    // Pattern id -> (text, positions); a map keeps thousands of literals linear.
                    let mut by_text: Vec<(Box<str>, Vec<u32>)> = Vec::new();
                    let mut ids: FxHashMap<&str, usize> = FxHashMap::default();
                    for (pos, alt) in &members {
                        if let Alt::Sub(_, text) = alt {
                            match ids.get(&**text) {
                                Some(&i) => by_text[i].1.push(*pos),
                                None => {
                                    ids.insert(text, by_text.len());
                                    by_text.push((text.clone(), vec![*pos]));
                                }
                            }
                        }
                    }
                    let built = AhoCorasick::builder()
                        .kind(Some(aho_corasick::AhoCorasickKind::DFA))
                        .prefilter(false)
                        .build(by_text.iter().map(|(t, _)| t.as_bytes()));
                    match built {
                        Ok(ac) => subs.push(SubGroup {
                            field: field.clone(),
                            ac,
                            by_pattern: by_text.into_iter().map(|(_, v)| sorted(v)).collect(),
                            all,
                        }),
                        // Too large for an automaton: evaluate these rules for every event.
                        Err(_) => always.extend(all.iter().copied()),
                    }
                }
            }
        }
        Plan {
            always: sorted(always),
            groups: groups.into_boxed_slice(),
            paths: paths.into_boxed_slice(),
            subs: subs.into_boxed_slice(),
        }
    }

    pub fn is_trivial(&self) -> bool {
        self.groups.is_empty() && self.paths.is_empty() && self.subs.is_empty()
    }

    /// The positions to evaluate for this event, ascending and once each: the rules without
    /// alternatives merged with those the event's values select (collected in `hits`, a
    /// reused buffer).
    pub fn candidates<'p>(&'p self, ctx: &Ctx<'_>, hits: &'p mut Vec<u32>) -> Merge<'p> {
        hits.clear();
        for g in self.groups.iter() {
            let hit = match ctx.get(&g.field, 0) {
                // No value: an equality cannot hold (`<NA>` literals are not grouped).
                None => None,
                Some(Val::Str(s)) => g.strs.get(s),
                Some(Val::Owned(s)) => g.strs.get(s.as_str()),
                Some(Val::Int(i)) => g.ints.get(&i),
                Some(Val::Bool(_) | Val::Ip(_)) => Some(&g.all),
            };
            if let Some(h) = hit {
                hits.extend_from_slice(h);
            }
        }
        for g in self.paths.iter() {
            let hit = match ctx.get(&g.field, 0) {
                None => None,
                Some(Val::Str(s)) => g.by_first.get(crate::eval::first_component(s)),
                Some(Val::Owned(s)) => g.by_first.get(crate::eval::first_component(&s)),
                Some(_) => Some(&g.all),
            };
            if let Some(h) = hit {
                hits.extend_from_slice(h);
            }
        }
        for g in self.subs.iter() {
            let text = match ctx.get(&g.field, 0) {
                None => continue,
                Some(Val::Str(s)) => s,
                Some(Val::Owned(s)) => {
                    sub_hits(g, &s, hits);
                    continue;
                }
                Some(_) => {
                    hits.extend_from_slice(&g.all);
                    continue;
                }
            };
            sub_hits(g, text, hits);
        }
        if hits.len() > 1 {
            hits.sort_unstable();
            hits.dedup();
        }
        Merge {
            a: &self.always,
            b: hits,
        }
    }
}

/// The positions of every pattern of `g` that occurs in `text`.
fn sub_hits(g: &SubGroup, text: &str, hits: &mut Vec<u32>) {
    for m in g.ac.find_overlapping_iter(text) {
        if let Some(h) = g.by_pattern.get(m.pattern().as_usize()) {
            hits.extend_from_slice(h);
        }
    }
}

/// Two ascending lists of positions, merged.
pub(crate) struct Merge<'p> {
    a: &'p [u32],
    b: &'p [u32],
}

impl Iterator for Merge<'_> {
    type Item = u32;
    fn next(&mut self) -> Option<u32> {
        let take_a = match (self.a.first(), self.b.first()) {
            (Some(x), Some(y)) => x < y,
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (None, None) => return None,
        };
        let list = if take_a { &mut self.a } else { &mut self.b };
        let (first, rest) = list.split_first()?;
        *list = rest;
        Some(*first)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glob_literals_are_runs_every_match_contains() {
        assert_eq!(glob_literal("*/.ssh/id_*"), Some("/.ssh/id_"));
        assert_eq!(
            glob_literal("*/.azure/msal_token_cache.*"),
            Some("/.azure/msal_token_cache.")
        );
        assert_eq!(
            glob_literal("/etc/ssh/ssh_host_*_key"),
            Some("/etc/ssh/ssh_host_")
        );
        assert_eq!(
            glob_literal("*/.aws/credentials"),
            Some("/.aws/credentials")
        );
        // Class contents, escapes and runs shorter than MIN_SUBSTRING are not literals.
        assert_eq!(glob_literal("*[abcdefgh]*"), None);
        assert_eq!(glob_literal("*[]abcdef]*x"), None);
        assert_eq!(glob_literal("*[!]abcdef]*xyz"), Some("xyz"));
        assert_eq!(glob_literal("a\\*bcd*"), Some("bcd"));
        assert_eq!(glob_literal("*ab?cd*"), None);
        assert_eq!(glob_literal("*.[ch]"), None);
        assert_eq!(glob_literal("x[abc"), None);
        // Every literal returned occurs in values the glob matches.
        for (pat, value) in [
            ("*/.ssh/id_*", "/home/bob/.ssh/id_rsa"),
            ("/h*/*/.bash_history", "/home/x/.bash_history"),
            ("*id_[rd]sa_backup*", "/x/id_rsa_backup.tar"),
            ("a\\*bcd*", "a*bcdef"),
        ] {
            assert!(crate::eval::glob(pat.as_bytes(), value.as_bytes(), false));
            let lit = glob_literal(pat).expect("a literal");
            assert!(value.contains(lit), "{pat} {lit} {value}");
        }
    }
}
