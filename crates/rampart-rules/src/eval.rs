//! The evaluation plan: compiled conditions and how they are tested against one event.
//!
//! Literals are parsed once, at compile time, into the form the comparison needs (numbers,
//! addresses, networks, lower-cased text, substring finders, regexes, hash sets for `in`, path
//! sets for `pmatch`); evaluating a condition allocates nothing.

use std::fmt::Write;
use std::net::IpAddr;

use memchr::memmem::Finder;
use rustc_hash::FxHashSet;

use crate::condition::Op;
use crate::extract::{Ctx, FieldRef, Val};
use crate::render::StackBuf;

/// A compiled condition.
#[derive(Debug, Clone)]
pub(crate) enum Node {
    Const(bool),
    /// A comparison on a field Rampart does not produce: false, like a failed extraction in
    /// Falco. Kept apart from `Const(false)` until folding so that it does not narrow the
    /// rule's event types.
    Absent,
    And(Box<[Node]>),
    Or(Box<[Node]>),
    Not(Box<Node>),
    Check(Box<Check>),
}

#[derive(Debug, Clone)]
pub(crate) struct Check {
    pub field: FieldRef,
    pub op: Op,
    pub rhs: Rhs,
    /// The slot remembering this comparison's result for the current event.
    pub memo: u32,
    /// The literals include `<NA>` or `N/A`: a missing value equals them.
    pub na: bool,
}

/// A CIDR network (an address is a network with a full-length prefix).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct IpNet {
    pub addr: IpAddr,
    pub prefix: u8,
}

impl IpNet {
    /// Parses `10.0.0.0/8`, `fe80::/10` or a plain address.
    pub fn parse(s: &str) -> Option<IpNet> {
        let (a, p) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let written: IpAddr = a.trim().parse().ok()?;
        let max = if written.is_ipv4() { 32 } else { 128 };
        let prefix = match p {
            Some(p) => p.trim().parse::<u8>().ok().filter(|p| *p <= max)?,
            None => max,
        };
        // An IPv4-mapped IPv6 network (`::ffff:10.0.0.0/104`) is the IPv4 network it maps.
        let addr = written.to_canonical();
        let prefix = if addr.is_ipv4() && written.is_ipv6() {
            prefix.checked_sub(96)?
        } else {
            prefix
        };
        Some(IpNet { addr, prefix })
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip.to_canonical()) {
            (IpAddr::V4(n), IpAddr::V4(a)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(n) & mask == u32::from(a) & mask
            }
            (IpAddr::V6(n), IpAddr::V6(a)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(n) & mask == u128::from(a) & mask
            }
            _ => false,
        }
    }
}

/// One literal in the forms its comparisons need.
#[derive(Debug, Clone)]
pub(crate) struct Scalar {
    pub text: Box<str>,
    pub lower: Box<str>,
    pub int: Option<i64>,
    pub boolean: Option<bool>,
    pub net: Option<IpNet>,
}

impl Scalar {
    pub fn new(text: &str) -> Scalar {
        Scalar {
            text: text.into(),
            lower: text.to_ascii_lowercase().into(),
            int: parse_int(text),
            boolean: match text {
                "true" => Some(true),
                "false" => Some(false),
                _ => None,
            },
            net: IpNet::parse(text),
        }
    }
}

/// Decimal, `0x` hex, with an optional sign.
pub(crate) fn parse_int(s: &str) -> Option<i64> {
    let t = s.trim();
    let (neg, t) = match t.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, t.strip_prefix('+').unwrap_or(t)),
    };
    let v = if let Some(h) = t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
        i64::from_str_radix(h, 16).ok()?
    } else {
        t.parse::<i64>().ok()?
    };
    Some(if neg { -v } else { v })
}

/// The values of an `in` / `intersects` list.
#[derive(Debug, Default, Clone)]
pub(crate) struct ValueSet {
    pub strs: FxHashSet<Box<str>>,
    /// Bit `min(len, 63)` is set for the length of every text in `strs`: most values are
    /// rejected by their length alone, without hashing them (an `in` list was 70 instructions
    /// per test through the hash set; docs/benchmarks.md).
    lens: u64,
    pub ints: FxHashSet<i64>,
    pub nets: Vec<IpNet>,
    pub bools: [bool; 2],
}

impl ValueSet {
    pub fn insert(&mut self, text: &str) {
        let s = Scalar::new(text);
        if let Some(i) = s.int {
            self.ints.insert(i);
        }
        if let Some(n) = s.net {
            self.nets.push(n);
        }
        if let Some(b) = s.boolean {
            self.bools[usize::from(b)] = true;
        }
        self.lens |= len_bit(s.text.len());
        self.strs.insert(s.text);
    }

    /// `text` is one of the texts of the list (case-sensitive, as Falco's `in`).
    #[inline]
    fn has_str(&self, text: &str) -> bool {
        self.lens & len_bit(text.len()) != 0 && self.strs.contains(text)
    }

    fn contains(&self, v: &Val<'_>) -> bool {
        match v {
            Val::Str(s) => self.has_str(s),
            Val::Owned(s) => self.has_str(s),
            Val::Int(i) => self.ints.contains(i),
            Val::Bool(b) => self.bools[usize::from(*b)],
            Val::Ip(ip) => self.nets.iter().any(|n| n.contains(*ip)),
        }
    }
}

/// The bit of [`ValueSet::lens`] for a text of `len` bytes.
#[inline]
fn len_bit(len: usize) -> u64 {
    1 << len.min(63)
}

/// The path prefixes of a `pmatch` list.
#[derive(Debug, Default, Clone)]
pub(crate) struct PrefixSet {
    paths: FxHashSet<Box<str>>,
    /// The first component of every prefix (`/usr` for `/usr/local/bin`): most paths are
    /// rejected by one lookup.
    firsts: FxHashSet<Box<str>>,
    root: bool,
    /// Prefixes with glob characters (`/var/*/*.txt`), split into components: each component
    /// is matched with [`glob`], so wildcards do not cross `/` (as Falco's `pmatch`).
    globs: Vec<Box<[Box<[u8]>]>>,
}

/// The first component of a path: `/usr` of `/usr/bin/ls`, `/etc` of `/etc`.
pub(crate) fn first_component(p: &str) -> &str {
    match p
        .as_bytes()
        .get(1..)
        .and_then(|rest| memchr::memchr(b'/', rest))
    {
        Some(i) => &p[..i + 1],
        None => p,
    }
}

impl PrefixSet {
    pub fn insert(&mut self, path: &str) {
        let p = path.trim_end_matches('/');
        if p.contains(['*', '?', '[']) {
            self.globs
                .push(p.split('/').map(|c| c.as_bytes().into()).collect());
            return;
        }
        if p.is_empty() {
            self.root = true;
        } else {
            self.firsts.insert(first_component(p).into());
            self.paths.insert(p.into());
        }
    }

    /// `value` is one of the paths or below one of them (component-wise: `/usr/bin` covers
    /// `/usr/bin/ls`, not `/usr/binx`).
    fn matches(&self, value: &str) -> bool {
        if self.root && value.starts_with('/') {
            return true;
        }
        let v = value.trim_end_matches('/');
        if !self.globs.is_empty() && self.glob_matches(v) {
            return true;
        }
        if !self.firsts.contains(first_component(v)) {
            return false;
        }
        if self.paths.contains(v) {
            return true;
        }
        memchr::memchr_iter(b'/', v.as_bytes()).any(|i| i > 0 && self.paths.contains(&v[..i]))
    }

    /// The first components (`/usr`) every matching path starts with; `None` when a path
    /// can match without one (`/` itself, a wildcard in the first component).
    pub(crate) fn first_components(&self) -> Option<Vec<Box<str>>> {
        if self.root {
            return None;
        }
        let mut out: Vec<Box<str>> = self.firsts.iter().cloned().collect();
        for g in &self.globs {
            let first = g.get(1)?;
            if !g.first().is_some_and(|c| c.is_empty())
                || first
                    .iter()
                    .any(|b| matches!(b, b'*' | b'?' | b'[' | b'\\'))
            {
                return None;
            }
            out.push(format!("/{}", String::from_utf8_lossy(first)).into());
        }
        Some(out)
    }

    /// The first components of `v` match one glob prefix component by component.
    fn glob_matches(&self, v: &str) -> bool {
        self.globs.iter().any(|pat| {
            let mut comps = v.split('/');
            pat.iter()
                .all(|p| comps.next().is_some_and(|c| glob(p, c.as_bytes(), false)))
        })
    }
}

/// The right-hand side of a comparison.
#[derive(Debug, Clone)]
pub(crate) enum Rhs {
    None,
    One(Scalar),
    Set(ValueSet),
    Prefixes(PrefixSet),
    Regex(regex::Regex),
    /// `contains` / `bcontains`: a substring finder.
    Contains(Finder<'static>),
    /// Several `contains` (or `icontains`) tests of one field under an `or`, as one automaton.
    AnyOf(aho_corasick::AhoCorasick),
    /// `evt.arg.flags contains O_TRUNC`, `evt.arg.mode contains S_IXUSR`: a bit test on open
    /// and chmod events (what the rendered text would contain), the text search otherwise.
    Bits {
        mode: bool,
        test: crate::render::BitTest,
        text: Finder<'static>,
    },
    Field(FieldRef),
}

impl Node {
    pub fn eval(&self, ctx: &Ctx<'_>) -> bool {
        match self {
            Node::Const(b) => *b,
            Node::Absent => false,
            Node::And(items) => items.iter().all(|n| n.eval_child(ctx)),
            Node::Or(items) => items.iter().any(|n| n.eval_child(ctx)),
            Node::Not(n) => !n.eval_child(ctx),
            Node::Check(c) => c.eval(ctx),
        }
    }

    /// A child of `and`/`or`/`not`: leaves (most children, and most of them memo hits) are
    /// tested here, without a recursive call and its prologue; only subtrees recurse (−11% of
    /// the instructions per event with Falco's files, see docs/benchmarks.md).
    #[inline(always)]
    fn eval_child(&self, ctx: &Ctx<'_>) -> bool {
        match self {
            Node::Check(c) => c.eval(ctx),
            Node::Const(b) => *b,
            Node::Absent => false,
            _ => self.eval(ctx),
        }
    }
}

impl Check {
    #[inline]
    fn eval(&self, ctx: &Ctx<'_>) -> bool {
        // Slots hold `generation << 1 | result`; a stale generation means "not yet computed".
        let Some(slot) = ctx.memo.get(self.memo as usize) else {
            return self.compute(ctx);
        };
        let seen = slot.get();
        if seen >> 1 == ctx.generation {
            return seen & 1 == 1;
        }
        let r = self.compute(ctx);
        slot.set(ctx.generation << 1 | u64::from(r));
        r
    }

    fn compute(&self, ctx: &Ctx<'_>) -> bool {
        if self.op == Op::Exists {
            return ctx.get(&self.field, 0).is_some();
        }
        if let Rhs::Bits { mode, test, .. } = &self.rhs {
            if let Some(hit) = bits(ctx, *mode, test) {
                return hit;
            }
        }
        if !self.field.multi {
            return match ctx.get(&self.field, 0) {
                Some(v) => self.test(self.op, &v, ctx),
                // Falco prints a missing value as `<NA>`; rules test for it by name.
                None => self.na && matches!(self.op, Op::Eq | Op::In | Op::Intersects),
            };
        }
        // Several values: a test holds when it holds for one of them; `!=` holds when none
        // is equal (`fd.net != 127.0.0.0/8`: neither end is on loopback), as in Falco.
        let op = if self.op == Op::Ne { Op::Eq } else { self.op };
        if let Some((hit, seen)) = ctx.any_suffix(&self.field, |s| self.test(op, &Val::Str(s), ctx))
        {
            return if hit {
                self.op != Op::Ne
            } else if seen == 0 {
                self.na && matches!(self.op, Op::Eq | Op::In | Op::Intersects)
            } else {
                self.op == Op::Ne
            };
        }
        let mut i = 0;
        while let Some(v) = ctx.get(&self.field, i) {
            if self.test(op, &v, ctx) {
                return self.op != Op::Ne;
            }
            i += 1;
        }
        if i == 0 {
            return self.na && matches!(self.op, Op::Eq | Op::In | Op::Intersects);
        }
        self.op == Op::Ne
    }

    fn test(&self, op: Op, v: &Val<'_>, ctx: &Ctx<'_>) -> bool {
        match &self.rhs {
            Rhs::None => false,
            Rhs::Set(set) => set.contains(v),
            Rhs::One(s) => match v {
                Val::Str(x) => str_op(op, x, s),
                Val::Owned(x) => str_op(op, x, s),
                Val::Int(n) => match s.int {
                    Some(r) => int_op(op, *n, r),
                    None => as_text(v, |x| str_op(op, x, s)),
                },
                Val::Bool(b) => match (op, s.boolean) {
                    (Op::Eq, Some(r)) => *b == r,
                    (Op::Ne, Some(r)) => *b != r,
                    _ => as_text(v, |x| str_op(op, x, s)),
                },
                Val::Ip(ip) => match (op, s.net) {
                    (Op::Eq, Some(n)) => n.contains(*ip),
                    (Op::Ne, Some(n)) => !n.contains(*ip),
                    _ => as_text(v, |x| str_op(op, x, s)),
                },
            },
            Rhs::Prefixes(p) => as_text(v, |x| p.matches(x)),
            Rhs::Regex(r) => as_text(v, |x| r.is_match(x)),
            Rhs::AnyOf(ac) => as_text(v, |x| ac.is_match(x)),
            Rhs::Contains(f) | Rhs::Bits { text: f, .. } => {
                as_text(v, |x| f.find(x.as_bytes()).is_some())
            }
            Rhs::Field(other) => match ctx.get(other, 0) {
                None => false,
                Some(w) => compare_values(op, v, &w),
            },
        }
    }
}

/// The answer of a [`Rhs::Bits`] test without rendering text, for the events whose flags or
/// mode render as Falco's flag names; `None` for other events.
fn bits(ctx: &Ctx<'_>, mode: bool, test: &crate::render::BitTest) -> Option<bool> {
    use rampart_event::EventKind;
    let ev = ctx.ev;
    let file = ev.file.as_ref()?;
    match (mode, ev.kind) {
        (false, EventKind::FileOpen) => Some(
            file.flags
                .is_some_and(|f| test.test_open_flags(u64::from(f))),
        ),
        (true, EventKind::FileOpen | EventKind::FileChmod) => {
            Some(file.mode.is_some_and(|m| test.test_mode(u64::from(m))))
        }
        _ => None,
    }
}

/// Runs `f` on the value's text; numbers and addresses are written to a stack buffer.
fn as_text<R>(v: &Val<'_>, f: impl FnOnce(&str) -> R) -> R {
    match v {
        Val::Str(s) => f(s),
        Val::Owned(s) => f(s),
        other => {
            let mut buf = StackBuf::new();
            other.write_to(&mut buf);
            f(buf.as_str())
        }
    }
}

fn compare_values(op: Op, a: &Val<'_>, b: &Val<'_>) -> bool {
    if let (Val::Int(x), Val::Int(y)) = (a, b) {
        return int_op(op, *x, *y);
    }
    as_text(a, |x| {
        as_text(b, |y| {
            let mut s = String::new();
            let _ = s.write_str(y);
            str_op(op, x, &Scalar::new(&s))
        })
    })
}

fn int_op(op: Op, a: i64, b: i64) -> bool {
    match op {
        Op::Eq | Op::In | Op::Intersects => a == b,
        Op::Ne => a != b,
        Op::Lt => a < b,
        Op::Le => a <= b,
        Op::Gt => a > b,
        Op::Ge => a >= b,
        _ => false,
    }
}

fn str_op(op: Op, x: &str, s: &Scalar) -> bool {
    let r = &*s.text;
    match op {
        Op::Eq | Op::In | Op::Intersects => x == r,
        Op::Ne => x != r,
        Op::Lt => x < r,
        Op::Le => x <= r,
        Op::Gt => x > r,
        Op::Ge => x >= r,
        Op::Contains | Op::BContains => x.contains(r),
        Op::IContains => contains_ignore_ascii_case(x, &s.lower),
        Op::StartsWith | Op::BStartsWith => x.starts_with(r),
        Op::EndsWith => x.ends_with(r),
        Op::Glob => glob(r.as_bytes(), x.as_bytes(), false),
        Op::IGlob => glob(s.lower.as_bytes(), x.as_bytes(), true),
        Op::PMatch => {
            let v = x.trim_end_matches('/');
            let p = r.trim_end_matches('/');
            v == p || (v.starts_with(p) && v.as_bytes().get(p.len()) == Some(&b'/'))
        }
        Op::Regex | Op::Exists => false,
    }
}

/// ASCII case-insensitive substring search; `needle` is already lower-case.
fn contains_ignore_ascii_case(hay: &str, needle: &str) -> bool {
    let (h, n) = (hay.as_bytes(), needle.as_bytes());
    if n.is_empty() {
        return true;
    }
    if h.len() < n.len() {
        return false;
    }
    let first = n[0];
    (0..=h.len() - n.len())
        .any(|i| h[i].to_ascii_lowercase() == first && h[i..i + n.len()].eq_ignore_ascii_case(n))
}

/// fnmatch(3)-style matching without FNM_PATHNAME (as Falco's `glob`): `*` matches any run of
/// characters including `/`, `?` one character, `[...]` a class (`!` or `^` negates, `a-z`
/// ranges), `\` escapes. Written here because the glob crates match paths component-wise.
pub(crate) fn glob(pat: &[u8], s: &[u8], ci: bool) -> bool {
    let lower = |c: u8| if ci { c.to_ascii_lowercase() } else { c };
    let (mut p, mut i) = (0usize, 0usize);
    let (mut star_p, mut star_i) = (usize::MAX, 0usize);
    while i < s.len() {
        if p < pat.len() {
            match pat[p] {
                b'*' => {
                    star_p = p;
                    star_i = i;
                    p += 1;
                    continue;
                }
                b'?' => {
                    p += 1;
                    i += 1;
                    continue;
                }
                b'[' => {
                    if let Some((matched, next)) = class(pat, p, lower(s[i]), ci) {
                        if matched {
                            p = next;
                            i += 1;
                            continue;
                        }
                    } else if lower(s[i]) == b'[' {
                        p += 1;
                        i += 1;
                        continue;
                    }
                }
                b'\\' if p + 1 < pat.len() => {
                    if lower(pat[p + 1]) == lower(s[i]) {
                        p += 2;
                        i += 1;
                        continue;
                    }
                }
                c => {
                    if lower(c) == lower(s[i]) {
                        p += 1;
                        i += 1;
                        continue;
                    }
                }
            }
        }
        if star_p != usize::MAX {
            p = star_p + 1;
            star_i += 1;
            i = star_i;
            continue;
        }
        return false;
    }
    pat[p..].iter().all(|&c| c == b'*')
}

/// Matches `c` against the class starting at `pat[p] == '['`; returns (matched, index after
/// the class), or `None` when the class is not closed.
fn class(pat: &[u8], p: usize, c: u8, ci: bool) -> Option<(bool, usize)> {
    let mut j = p + 1;
    let negate = matches!(pat.get(j), Some(b'!') | Some(b'^'));
    if negate {
        j += 1;
    }
    let mut matched = false;
    let mut first = true;
    while j < pat.len() && (pat[j] != b']' || first) {
        first = false;
        let lo = if ci {
            pat[j].to_ascii_lowercase()
        } else {
            pat[j]
        };
        if pat.get(j + 1) == Some(&b'-') && pat.get(j + 2).is_some_and(|&b| b != b']') {
            let hi = if ci {
                pat[j + 2].to_ascii_lowercase()
            } else {
                pat[j + 2]
            };
            if lo <= c && c <= hi {
                matched = true;
            }
            j += 3;
        } else {
            if lo == c {
                matched = true;
            }
            j += 1;
        }
    }
    if j >= pat.len() {
        return None;
    }
    Some((matched != negate, j + 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_behave_like_fnmatch_without_pathname() {
        assert!(glob(b"/home/*/.ssh/*", b"/home/bob/.ssh/id_rsa", false));
        assert!(glob(b"/proc/*/environ", b"/proc/12/environ", false));
        assert!(glob(b"*../*../*", b"/var/www/../../etc/passwd", false));
        assert!(!glob(b"/proc/*/environ", b"/proc/12/status", false));
        assert!(glob(b"id_[rd]sa?", b"id_rsa2", false));
        assert!(!glob(b"id_[!rd]sa", b"id_rsa", false));
        assert!(glob(b"*.PEM", b"key.pem", true));
        assert!(glob(b"a\\*b", b"a*b", false));
    }

    #[test]
    fn networks_and_prefixes() {
        let n = IpNet::parse("172.16.0.0/12").expect("net");
        assert!(n.contains("172.20.1.1".parse().expect("ip")));
        assert!(!n.contains("172.32.0.1".parse().expect("ip")));
        assert!(IpNet::parse("::ffff:10.1.2.3")
            .expect("mapped")
            .contains("10.1.2.3".parse().expect("ip")));
        let mut p = PrefixSet::default();
        p.insert("/usr/bin");
        p.insert("/etc/");
        assert!(p.matches("/usr/bin/ls") && p.matches("/etc") && p.matches("/etc/ssh/x"));
        assert!(!p.matches("/usr/binx") && !p.matches("/usr"));
        // Falco's pmatch with wildcards: a prefix match whose wildcards stay in one component.
        let mut g = PrefixSet::default();
        g.insert("/var/*/*.txt");
        assert!(g.matches("/var/run/a.txt") && g.matches("/var/run/a.txt/more"));
        assert!(!g.matches("/var/run/sub/a.txt") && !g.matches("/var/run"));
        let mut g = PrefixSet::default();
        g.insert("/var/*");
        assert!(g.matches("/var/run/file.txt") && g.matches("/var/x"));
        assert!(!g.matches("/var") && !g.matches("/varx/y"));
    }

    #[test]
    fn case_insensitive_contains() {
        assert!(contains_ignore_ascii_case(
            "CAP_SYS_MODULE CAP_X",
            "sys_module"
        ));
        assert!(!contains_ignore_ascii_case("CAP_SYS", "sys_module"));
        assert_eq!(parse_int("0x1f"), Some(31));
        assert_eq!(parse_int("-1"), Some(-1));
    }
}
