//! Python versions (PEP 440), parsed and ordered as `packaging.version.Version` does.
//!
//! Accepted spellings are normalised: `1.0-alpha1` is `1.0a1`, `1.0c1` is `1.0rc1`, `1.0-5` is
//! `1.0.post5`, `v1.0` is `1.0`, case is ignored, surrounding whitespace stripped. Ordering:
//! epoch, release (trailing zeros ignored), then dev-only releases before pre-releases before
//! the final release before post-releases, dev versions of each before it, and local versions
//! after the public version they label.

use std::cmp::Ordering;

use super::VersionError;

/// A parsed PEP 440 version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pep440 {
    pub epoch: u64,
    pub release: Vec<u64>,
    /// (0 = a, 1 = b, 2 = rc, number)
    pub pre: Option<(u8, u64)>,
    pub post: Option<u64>,
    pub dev: Option<u64>,
    pub local: Vec<LocalPart>,
}

/// A segment of a local version label: numbers sort after strings.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum LocalPart {
    Str(String),
    Num(u64),
}

struct Scan<'a> {
    s: &'a [u8],
    i: usize,
}

impl Scan<'_> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }

    fn eat(&mut self, c: u8) -> bool {
        if self.peek() == Some(c) {
            self.i += 1;
            true
        } else {
            false
        }
    }

    fn eat_sep(&mut self) -> bool {
        matches!(self.peek(), Some(b'-' | b'_' | b'.')) && {
            self.i += 1;
            true
        }
    }

    fn number(&mut self) -> Option<u64> {
        let start = self.i;
        while self.peek().is_some_and(|c| c.is_ascii_digit()) {
            self.i += 1;
        }
        if start == self.i {
            return None;
        }
        let digits = std::str::from_utf8(&self.s[start..self.i]).ok()?;
        // Huge numbers saturate: they still order above every realistic one.
        Some(digits.parse().unwrap_or(u64::MAX))
    }

    /// Eats the first of `words` (longest listed first) found at the cursor.
    fn word(&mut self, words: &[&str]) -> Option<usize> {
        let rest = &self.s[self.i..];
        let k = words.iter().position(|w| rest.starts_with(w.as_bytes()))?;
        self.i += words[k].len();
        Some(k)
    }
}

impl Pep440 {
    /// Parses a version as `packaging.version.Version` does.
    pub fn parse(input: &str) -> Result<Pep440, VersionError> {
        let bad = |reason: &str| VersionError::new("PEP 440", input, reason);
        let lower = input.trim().to_ascii_lowercase();
        if !lower.is_ascii() {
            return Err(bad("non-ASCII character"));
        }
        let mut sc = Scan {
            s: lower.as_bytes(),
            i: 0,
        };
        sc.eat(b'v');
        let first = sc.number().ok_or_else(|| bad("no release number"))?;
        let (epoch, mut release) = if sc.eat(b'!') {
            let r = sc
                .number()
                .ok_or_else(|| bad("no release after the epoch"))?;
            (first, vec![r])
        } else {
            (0, vec![first])
        };
        loop {
            let save = sc.i;
            if sc.eat(b'.') {
                if let Some(n) = sc.number() {
                    release.push(n);
                    continue;
                }
            }
            sc.i = save;
            break;
        }
        // Pre-release: [-_.]?(alpha|a|beta|b|preview|pre|c|rc)[-_.]?N?
        let save = sc.i;
        sc.eat_sep();
        let mut pre = None;
        if let Some(k) = sc.word(&["alpha", "a", "beta", "b", "preview", "pre", "c", "rc"]) {
            let kind = match k {
                0 | 1 => 0,
                2 | 3 => 1,
                _ => 2,
            };
            let s2 = sc.i;
            sc.eat_sep();
            let n = match sc.number() {
                Some(n) => n,
                None => {
                    sc.i = s2;
                    0
                }
            };
            pre = Some((kind, n));
        } else {
            sc.i = save;
        }
        // Post-release: -N | [-_.]?(post|rev|r)[-_.]?N?
        let save = sc.i;
        let mut post = None;
        if sc.eat(b'-') {
            if let Some(n) = sc.number() {
                post = Some(n);
            } else {
                sc.i = save;
            }
        }
        if post.is_none() {
            sc.eat_sep();
            if sc.word(&["post", "rev", "r"]).is_some() {
                let s2 = sc.i;
                sc.eat_sep();
                post = Some(match sc.number() {
                    Some(n) => n,
                    None => {
                        sc.i = s2;
                        0
                    }
                });
            } else {
                sc.i = save;
            }
        }
        // Dev release: [-_.]?dev[-_.]?N?
        let save = sc.i;
        sc.eat_sep();
        let mut dev = None;
        if sc.word(&["dev"]).is_some() {
            let s2 = sc.i;
            sc.eat_sep();
            dev = Some(match sc.number() {
                Some(n) => n,
                None => {
                    sc.i = s2;
                    0
                }
            });
        } else {
            sc.i = save;
        }
        // Local version: +[a-z0-9]+([-_.][a-z0-9]+)*
        let mut local = Vec::new();
        if sc.eat(b'+') {
            let rest = std::str::from_utf8(&sc.s[sc.i..]).map_err(|_| bad("bad local version"))?;
            for part in rest.split(['-', '_', '.']) {
                if part.is_empty() || !part.bytes().all(|b| b.is_ascii_alphanumeric()) {
                    return Err(bad("bad local version label"));
                }
                local.push(if part.bytes().all(|b| b.is_ascii_digit()) {
                    LocalPart::Num(part.parse().unwrap_or(u64::MAX))
                } else {
                    LocalPart::Str(part.to_string())
                });
            }
            sc.i = sc.s.len();
        }
        if sc.i != sc.s.len() {
            return Err(bad("unexpected characters"));
        }
        Ok(Pep440 {
            epoch,
            release,
            pre,
            post,
            dev,
            local,
        })
    }
}

/// A sort key with explicit infinities, as `packaging` builds (`_cmpkey`).
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Bound<T> {
    NegInf,
    Val(T),
    PosInf,
}

impl Ord for Pep440 {
    fn cmp(&self, other: &Self) -> Ordering {
        fn trimmed(r: &[u64]) -> &[u64] {
            let mut end = r.len();
            while end > 0 && r[end - 1] == 0 {
                end -= 1;
            }
            &r[..end]
        }
        fn pre_key(v: &Pep440) -> Bound<(u8, u64)> {
            match (v.pre, v.post, v.dev) {
                (None, None, Some(_)) => Bound::NegInf,
                (None, _, _) => Bound::PosInf,
                (Some(p), _, _) => Bound::Val(p),
            }
        }
        fn post_key(v: &Pep440) -> Bound<u64> {
            v.post.map_or(Bound::NegInf, Bound::Val)
        }
        fn dev_key(v: &Pep440) -> Bound<u64> {
            v.dev.map_or(Bound::PosInf, Bound::Val)
        }
        fn local_key(v: &Pep440) -> Bound<&[LocalPart]> {
            if v.local.is_empty() {
                Bound::NegInf
            } else {
                Bound::Val(&v.local)
            }
        }
        self.epoch
            .cmp(&other.epoch)
            .then_with(|| trimmed(&self.release).cmp(trimmed(&other.release)))
            .then_with(|| pre_key(self).cmp(&pre_key(other)))
            .then_with(|| post_key(self).cmp(&post_key(other)))
            .then_with(|| dev_key(self).cmp(&dev_key(other)))
            .then_with(|| local_key(self).cmp(&local_key(other)))
    }
}

impl PartialOrd for Pep440 {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl std::fmt::Display for Pep440 {
    /// The normalised form (`1.0a1.post2.dev3+local`).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.epoch != 0 {
            write!(f, "{}!", self.epoch)?;
        }
        let rel: Vec<String> = self.release.iter().map(u64::to_string).collect();
        f.write_str(&rel.join("."))?;
        if let Some((k, n)) = self.pre {
            write!(f, "{}{n}", ["a", "b", "rc"][usize::from(k)])?;
        }
        if let Some(p) = self.post {
            write!(f, ".post{p}")?;
        }
        if let Some(d) = self.dev {
            write!(f, ".dev{d}")?;
        }
        if !self.local.is_empty() {
            let parts: Vec<String> = self
                .local
                .iter()
                .map(|p| match p {
                    LocalPart::Str(s) => s.clone(),
                    LocalPart::Num(n) => n.to_string(),
                })
                .collect();
            write!(f, "+{}", parts.join("."))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalises() {
        let n = |s: &str| Pep440::parse(s).expect(s).to_string();
        assert_eq!(n("1.0-alpha1"), "1.0a1");
        assert_eq!(n("1.0c056"), "1.0rc56");
        assert_eq!(n("1.0-5"), "1.0.post5");
        assert_eq!(n("00!1.2"), "1.2");
        assert_eq!(n("1.0+AbC"), "1.0+abc");
    }
}
