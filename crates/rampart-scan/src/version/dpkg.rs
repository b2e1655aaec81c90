//! Debian package versions: `[epoch:]upstream[-revision]`, compared as dpkg does
//! (`lib/dpkg/version.c`, Debian Policy 5.6.12).
//!
//! * The epoch is compared numerically first; a missing epoch is 0, so `1:0.1` is newer than
//!   `9.9` whatever the rest says. This is where scanners regress most: a fixed version
//!   `1:2.3-1` must not be "older" than an installed `2.4-1`.
//! * Upstream version and revision are compared with dpkg's `verrevcmp`: alternating runs of
//!   non-digits (compared character by character, `~` before everything including the end,
//!   letters before other characters) and digits (compared numerically).
//! * A missing revision compares like `0`.
//!
//! Written here rather than taken from a crate: the comparison is 40 lines, and the available
//! crates either pull in regex or differ from dpkg on `~` at the end of a string.

use std::cmp::Ordering;

use super::VersionError;

/// A parsed Debian version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DpkgVersion {
    pub epoch: u64,
    pub upstream: String,
    pub revision: String,
}

impl DpkgVersion {
    /// Parses `s`; fails on an epoch that is not a number and on characters dpkg never allows
    /// (whitespace, control characters).
    pub fn parse(s: &str) -> Result<DpkgVersion, VersionError> {
        let s = s.trim();
        let bad = |reason: &str| VersionError::new("dpkg", s, reason);
        if s.is_empty() {
            return Err(bad("empty version"));
        }
        if s.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(bad("whitespace or control character"));
        }
        let (epoch, rest) = match s.split_once(':') {
            Some((e, rest)) => {
                let epoch = e
                    .parse::<u64>()
                    .ok()
                    .filter(|_| !e.is_empty() && e.bytes().all(|b| b.is_ascii_digit()))
                    .ok_or_else(|| bad("epoch is not a number"))?;
                (epoch, rest)
            }
            None => (0, s),
        };
        let (upstream, revision) = match rest.rfind('-') {
            Some(i) => (&rest[..i], &rest[i + 1..]),
            None => (rest, ""),
        };
        Ok(DpkgVersion {
            epoch,
            upstream: upstream.to_string(),
            revision: revision.to_string(),
        })
    }
}

impl Ord for DpkgVersion {
    fn cmp(&self, other: &Self) -> Ordering {
        self.epoch
            .cmp(&other.epoch)
            .then_with(|| verrevcmp(&self.upstream, &other.upstream))
            .then_with(|| verrevcmp(&self.revision, &other.revision))
    }
}

impl PartialOrd for DpkgVersion {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// dpkg's character weight: digits 0, letters their code, `~` below everything (-1), other
/// characters after letters (code + 256), the end of the string 0.
fn order(c: Option<u8>) -> i32 {
    match c {
        None => 0,
        Some(c) if c.is_ascii_digit() => 0,
        Some(c) if c.is_ascii_alphabetic() => i32::from(c),
        Some(b'~') => -1,
        Some(c) => i32::from(c) + 256,
    }
}

fn verrevcmp(a: &str, b: &str) -> Ordering {
    let a = a.as_bytes();
    let b = b.as_bytes();
    let (mut i, mut j) = (0usize, 0usize);
    let digit = |s: &[u8], k: usize| s.get(k).is_some_and(u8::is_ascii_digit);
    while i < a.len() || j < b.len() {
        while (i < a.len() && !digit(a, i)) || (j < b.len() && !digit(b, j)) {
            let ac = order(a.get(i).copied());
            let bc = order(b.get(j).copied());
            if ac != bc {
                return ac.cmp(&bc);
            }
            i += 1;
            j += 1;
        }
        while a.get(i) == Some(&b'0') {
            i += 1;
        }
        while b.get(j) == Some(&b'0') {
            j += 1;
        }
        let mut first_diff = Ordering::Equal;
        while digit(a, i) && digit(b, j) {
            if first_diff == Ordering::Equal {
                first_diff = a[i].cmp(&b[j]);
            }
            i += 1;
            j += 1;
        }
        if digit(a, i) {
            return Ordering::Greater;
        }
        if digit(b, j) {
            return Ordering::Less;
        }
        if first_diff != Ordering::Equal {
            return first_diff;
        }
    }
    Ordering::Equal
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cmp(a: &str, b: &str) -> Ordering {
        DpkgVersion::parse(a)
            .expect("a")
            .cmp(&DpkgVersion::parse(b).expect("b"))
    }

    #[test]
    fn epochs_dominate() {
        assert_eq!(cmp("1:0.1", "9.9"), Ordering::Greater);
        assert_eq!(cmp("0:9.9", "9.9"), Ordering::Equal);
        assert_eq!(cmp("2:1.0-1", "10:0.1"), Ordering::Less);
        assert_eq!(cmp("1:2.36-9+deb12u4", "2.36-9+deb12u4"), Ordering::Greater);
        // Epoch numbers are numbers, not strings.
        assert_eq!(cmp("10:1", "9:1"), Ordering::Greater);
        assert_eq!(cmp("007:1", "7:1"), Ordering::Equal);
    }

    #[test]
    fn tilde_sorts_before_the_end() {
        assert_eq!(cmp("1.0~rc1", "1.0"), Ordering::Less);
        assert_eq!(cmp("1.0~~", "1.0~"), Ordering::Less);
        assert_eq!(cmp("2.36-9+deb12u4~bpo", "2.36-9+deb12u4"), Ordering::Less);
    }

    #[test]
    fn bad_epoch_is_an_error() {
        assert!(DpkgVersion::parse("10a:5.2").is_err());
        assert!(DpkgVersion::parse(":5.2").is_err());
        assert!(DpkgVersion::parse("").is_err());
        assert!(DpkgVersion::parse("1.0 2").is_err());
    }
}
