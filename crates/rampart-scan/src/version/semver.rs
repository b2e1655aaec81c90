//! Semantic versions (SemVer 2.0.0) as node-semver compares them (npm, and OSV `SEMVER` ranges
//! of crates.io, Go, Hex, Pub, NuGet), and Go module versions as `golang.org/x/mod/semver` does.
//!
//! * `MAJOR.MINOR.PATCH` compared numerically; a pre-release (`-alpha.1`) sorts before its
//!   release; pre-release identifiers compare numerically when both are numbers, numbers before
//!   words, words by ASCII; a shorter list of equal identifiers sorts first; build metadata
//!   (`+...`) is ignored.
//! * Loose parsing (npm): leading `v`, `=` and whitespace are accepted.
//! * Go: a leading `v` is required, `v1` and `v1.2` are shorthand for `v1.0.0` and `v1.2.0`;
//!   invalid versions sort before every valid one and equal to each other.

use std::cmp::Ordering;

use super::VersionError;

/// A pre-release identifier.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ident {
    Num(u64),
    Str(String),
}

impl Ord for Ident {
    fn cmp(&self, other: &Self) -> Ordering {
        match (self, other) {
            (Ident::Num(a), Ident::Num(b)) => a.cmp(b),
            (Ident::Num(_), Ident::Str(_)) => Ordering::Less,
            (Ident::Str(_), Ident::Num(_)) => Ordering::Greater,
            (Ident::Str(a), Ident::Str(b)) => a.as_bytes().cmp(b.as_bytes()),
        }
    }
}

impl PartialOrd for Ident {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// A parsed semantic version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Semver {
    pub major: u64,
    pub minor: u64,
    pub patch: u64,
    pub pre: Vec<Ident>,
}

impl Ord for Semver {
    fn cmp(&self, other: &Self) -> Ordering {
        (self.major, self.minor, self.patch)
            .cmp(&(other.major, other.minor, other.patch))
            .then_with(|| match (self.pre.is_empty(), other.pre.is_empty()) {
                (true, true) => Ordering::Equal,
                (true, false) => Ordering::Greater,
                (false, true) => Ordering::Less,
                (false, false) => self.pre.cmp(&other.pre),
            })
    }
}

impl PartialOrd for Semver {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

fn number(s: &str, strict_zero: bool) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if strict_zero && s.len() > 1 && s.starts_with('0') {
        return None;
    }
    s.parse().ok()
}

fn identifiers(s: &str, strict_zero: bool) -> Option<Vec<Ident>> {
    s.split('.')
        .map(|p| {
            if p.is_empty() || !p.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
                None
            } else if p.bytes().all(|b| b.is_ascii_digit()) {
                if strict_zero && p.len() > 1 && p.starts_with('0') {
                    None
                } else {
                    Some(Ident::Num(p.parse().unwrap_or(u64::MAX)))
                }
            } else {
                Some(Ident::Str(p.to_string()))
            }
        })
        .collect()
}

impl Semver {
    /// Parses loosely, as node-semver with `loose: true` does: `v`/`=` prefixes and surrounding
    /// whitespace are allowed, leading zeros are tolerated.
    pub fn parse(input: &str) -> Result<Semver, VersionError> {
        let bad = |reason: &str| VersionError::new("semver", input, reason);
        let s = input.trim().trim_start_matches(['v', 'V', '=', ' ', '\t']);
        let s = s.split_once('+').map_or(s, |(v, _)| v);
        let (core, pre) = match s.split_once('-') {
            Some((c, p)) => (c, Some(p)),
            None => (s, None),
        };
        let mut parts = core.split('.');
        let mut next = || parts.next().and_then(|p| number(p, false));
        let (Some(major), Some(minor), Some(patch)) = (next(), next(), next()) else {
            return Err(bad("not MAJOR.MINOR.PATCH"));
        };
        if parts.next().is_some() {
            return Err(bad("more than three numbers"));
        }
        let pre = match pre {
            Some(p) => identifiers(p, false).ok_or_else(|| bad("bad pre-release"))?,
            None => Vec::new(),
        };
        Ok(Semver {
            major,
            minor,
            patch,
            pre,
        })
    }
}

/// A Go module version: `None` when invalid (Go sorts those first, all equal).
pub fn go_parse(v: &str) -> Option<Semver> {
    let s = v.strip_prefix('v')?;
    let (s, build) = match s.split_once('+') {
        Some((a, b)) => (a, Some(b)),
        None => (s, None),
    };
    if let Some(b) = build {
        if b.is_empty()
            || b.split('.')
                .any(|p| p.is_empty() || !p.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-'))
        {
            return None;
        }
    }
    let (core, pre) = match s.split_once('-') {
        Some((c, p)) => (c, Some(p)),
        None => (s, None),
    };
    let nums: Vec<&str> = core.split('.').collect();
    if nums.len() < 3 && (pre.is_some() || build.is_some()) {
        return None; // shorthand takes no pre-release or build
    }
    if nums.is_empty() || nums.len() > 3 {
        return None;
    }
    let mut n = [0u64; 3];
    for (i, p) in nums.iter().enumerate() {
        n[i] = number(p, true)?;
    }
    let pre = match pre {
        Some(p) => identifiers(p, true)?,
        None => Vec::new(),
    };
    Some(Semver {
        major: n[0],
        minor: n[1],
        patch: n[2],
        pre,
    })
}

/// Compares Go versions as `semver.Compare` does.
pub fn go_compare(a: &str, b: &str) -> Ordering {
    match (go_parse(a), go_parse(b)) {
        (Some(x), Some(y)) => x.cmp(&y),
        (None, None) => Ordering::Equal,
        (None, Some(_)) => Ordering::Less,
        (Some(_), None) => Ordering::Greater,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prerelease_order() {
        let p = |s: &str| Semver::parse(s).expect(s);
        assert!(p("1.0.0-alpha") < p("1.0.0-alpha.1"));
        assert!(p("1.0.0-alpha.1") < p("1.0.0-alpha.beta"));
        assert!(p("1.0.0-beta.11") < p("1.0.0-rc.1"));
        assert!(p("1.0.0-rc.1") < p("1.0.0"));
        assert_eq!(p("1.0.0+build").cmp(&p("1.0.0")), Ordering::Equal);
        assert!(Semver::parse("1.2").is_err());
    }
}
