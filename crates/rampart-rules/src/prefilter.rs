//! Equality prefilters for the single-event rules of one event type.
//!
//! A rule whose (specialised) condition is `field = literal and ...` or
//! `field in (...) and ...` can only match events whose `field` has one of those literals. Rules
//! sharing such a field form a group, looked up by the event's value of the field (one hash
//! lookup) instead of being evaluated one by one. Of the rest, rules that need a path field to
//! start with literal prefixes (`fd.name startswith /etc/`, `pmatch`, a glob's literal head, or
//! an `or` of those on one field) are grouped by the prefixes' first component and looked up
//! by the first component of the event's path. The others are evaluated as before.
//!
//! Guarantees: the rules a lookup returns plus the ungrouped ones are a superset of the rules
//! that can match the event; [`Plan::candidates`] yields them in load order, so
//! `rule_matching: first` picks the same rule as a full scan.

use rustc_hash::FxHashMap;

use crate::condition::Op;
use crate::eval::{Check, Node, Rhs};
use crate::extract::{Ctx, FieldRef, Val};

/// Below this many rules a group is not worth its lookup.
const MIN_GROUP: usize = 4;

#[derive(Debug, Default)]
pub(crate) struct Plan {
    /// Positions (indexes into the slot's rules) evaluated for every event, ascending.
    always: Box<[u32]>,
    groups: Box<[Group]>,
    paths: Box<[PathGroup]>,
}

/// Rules that need a path field to start with one of some literal prefixes (`startswith`,
/// `pmatch`, a glob's literal head, `=`), indexed by the prefixes' first component (`/etc`).
#[derive(Debug)]
struct PathGroup {
    field: FieldRef,
    by_first: FxHashMap<Box<str>, Box<[u32]>>,
    all: Box<[u32]>,
}

/// The first component of a path prefix when every path starting with `prefix` has it: `/etc`
/// for `/etc/x` (not for `/et`, which `/etc2/...` also starts with).
fn complete_first(prefix: &str) -> Option<&str> {
    let rest = prefix.strip_prefix('/')?;
    rest.find('/').map(|i| &prefix[..i + 1])
}

/// The path field and first components every match of `node` needs, if it has them.
fn path_key(node: &Node) -> Option<(&FieldRef, Vec<Box<str>>)> {
    match node {
        Node::Check(c) => {
            if c.field.multi || !c.field.transforms.is_empty() || c.na {
                return None;
            }
            let firsts: Vec<Box<str>> = match (&c.op, &c.rhs) {
                (Op::Eq, Rhs::One(s)) if s.text.starts_with('/') => {
                    vec![crate::eval::first_component(&s.text).into()]
                }
                (Op::In | Op::Intersects, Rhs::Set(set))
                    if set.ints.is_empty()
                        && set.nets.is_empty()
                        && set.bools == [false; 2]
                        && !set.strs.is_empty()
                        && set.strs.iter().all(|t| t.starts_with('/')) =>
                {
                    set.strs
                        .iter()
                        .map(|t| crate::eval::first_component(t).into())
                        .collect()
                }
                (Op::StartsWith, Rhs::One(s)) => vec![complete_first(&s.text)?.into()],
                (Op::Glob, Rhs::One(s)) => {
                    let head = s
                        .text
                        .find(['*', '?', '[', '\\'])
                        .map_or(&*s.text, |i| &s.text[..i]);
                    // Without wildcards a glob is an equality.
                    if head.len() == s.text.len() && s.text.starts_with('/') {
                        vec![crate::eval::first_component(&s.text).into()]
                    } else {
                        vec![complete_first(head)?.into()]
                    }
                }
                (Op::PMatch, Rhs::Prefixes(p)) => p.first_components()?,
                _ => return None,
            };
            Some((&c.field, firsts))
        }
        Node::Or(items) => {
            let mut field: Option<&FieldRef> = None;
            let mut all = Vec::new();
            for i in items.iter() {
                let (f, firsts) = path_key(i)?;
                if field.is_some_and(|g| g.name != f.name) {
                    return None;
                }
                field = Some(f);
                all.extend(firsts);
            }
            Some((field?, all))
        }
        Node::And(items) => items.iter().find_map(path_key),
        _ => None,
    }
}

#[derive(Debug)]
struct Group {
    field: FieldRef,
    strs: FxHashMap<Box<str>, Box<[u32]>>,
    ints: FxHashMap<i64, Box<[u32]>>,
    /// Every position of the group, for a value that is neither text nor a number.
    all: Box<[u32]>,
}

/// The check of `node` that every match must pass, if it is an equality on one field.
fn key_check(node: &Node) -> Option<&Check> {
    let usable = |c: &Check| {
        !c.field.multi
            && c.field.transforms.is_empty()
            && !c.na
            && match (&c.op, &c.rhs) {
                // `= true` selects half the events at best: not worth a group.
                (Op::Eq, Rhs::One(s)) => s.boolean.is_none(),
                (Op::In | Op::Intersects, Rhs::Set(s)) => {
                    s.nets.is_empty() && s.bools == [false; 2]
                }
                _ => false,
            }
    };
    match node {
        Node::Check(c) if usable(c) => Some(c),
        Node::And(items) => items.iter().find_map(|n| match n {
            Node::Check(c) if usable(c) => Some(&**c),
            _ => None,
        }),
        _ => None,
    }
}

/// Each key's positions ascending and unique, boxed.
fn finish<K: std::hash::Hash + Eq>(m: FxHashMap<K, Vec<u32>>) -> FxHashMap<K, Box<[u32]>> {
    m.into_iter()
        .map(|(k, mut v)| {
            v.sort_unstable();
            v.dedup();
            (k, v.into_boxed_slice())
        })
        .collect()
}

impl Plan {
    pub fn new(rules: &[(u32, Node)]) -> Plan {
        // (field as written, [(position, its key check)]), in order of first use.
        type Members<'n> = Vec<(u32, &'n Check)>;
        let mut by_field: Vec<(Box<str>, Members<'_>)> = Vec::new();
        for (pos, (_, node)) in rules.iter().enumerate() {
            if let Some(c) = key_check(node) {
                match by_field.iter_mut().find(|(n, _)| *n == c.field.name) {
                    Some((_, v)) => v.push((pos as u32, c)),
                    None => by_field.push((c.field.name.clone(), vec![(pos as u32, c)])),
                }
            }
        }
        let mut grouped = vec![false; rules.len()];
        let mut groups = Vec::new();
        for (_, members) in by_field {
            if members.len() < MIN_GROUP {
                continue;
            }
            let mut strs: FxHashMap<Box<str>, Vec<u32>> = FxHashMap::default();
            let mut ints: FxHashMap<i64, Vec<u32>> = FxHashMap::default();
            for &(pos, c) in &members {
                grouped[pos as usize] = true;
                match &c.rhs {
                    Rhs::One(s) => {
                        strs.entry(s.text.clone()).or_default().push(pos);
                        if let Some(i) = s.int {
                            ints.entry(i).or_default().push(pos);
                        }
                    }
                    Rhs::Set(set) => {
                        for t in &set.strs {
                            strs.entry(t.clone()).or_default().push(pos);
                        }
                        for i in &set.ints {
                            ints.entry(*i).or_default().push(pos);
                        }
                    }
                    _ => {}
                }
            }
            groups.push(Group {
                field: members[0].1.field.clone(),
                strs: finish(strs),
                ints: finish(ints),
                all: members.iter().map(|(p, _)| *p).collect(),
            });
        }
        // Rules left over: by the path prefixes they need.
        // (field as written, [(position, field, first components)]), in order of first use.
        type PathMembers<'n> = Vec<(u32, &'n FieldRef, Vec<Box<str>>)>;
        let mut by_path: Vec<(Box<str>, PathMembers<'_>)> = Vec::new();
        for (pos, (_, node)) in rules.iter().enumerate() {
            if grouped[pos] {
                continue;
            }
            if let Some((f, firsts)) = path_key(node) {
                let entry = (pos as u32, f, firsts);
                match by_path.iter_mut().find(|(n, _)| *n == f.name) {
                    Some((_, v)) => v.push(entry),
                    None => by_path.push((f.name.clone(), vec![entry])),
                }
            }
        }
        let mut paths = Vec::new();
        for (_, members) in by_path {
            if members.len() < MIN_GROUP {
                continue;
            }
            let mut by_first: FxHashMap<Box<str>, Vec<u32>> = FxHashMap::default();
            for (pos, _, firsts) in &members {
                grouped[*pos as usize] = true;
                for f in firsts {
                    by_first.entry(f.clone()).or_default().push(*pos);
                }
            }
            paths.push(PathGroup {
                field: members[0].1.clone(),
                by_first: finish(by_first),
                all: members.iter().map(|(p, _, _)| *p).collect(),
            });
        }
        Plan {
            always: (0..rules.len() as u32)
                .filter(|p| !grouped[*p as usize])
                .collect(),
            groups: groups.into_boxed_slice(),
            paths: paths.into_boxed_slice(),
        }
    }

    pub fn is_trivial(&self) -> bool {
        self.groups.is_empty() && self.paths.is_empty()
    }

    /// The positions to evaluate for this event, ascending: the ungrouped rules merged with
    /// the group members the event's values select (collected in `hits`, a reused buffer).
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
        if self.groups.len() + self.paths.len() > 1 {
            hits.sort_unstable();
        }
        Merge {
            a: &self.always,
            b: hits,
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
