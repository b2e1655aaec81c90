//! RPM versions: `[epoch:]version[-release]`, compared as rpm does (`rpmio/rpmvercmp.c`,
//! `rpmVersionCompare`): epoch numerically (missing is 0), then version, then release, each
//! with `rpmvercmp`.
//!
//! `rpmvercmp` splits at every non-alphanumeric character (they only separate), then compares
//! runs: numbers numerically (leading zeros ignored), letters by byte; a number beats letters;
//! `~` sorts before everything, even the end (`1.0~rc1` < `1.0`); `^` sorts after the end but
//! before any further segment (`1.0` < `1.0^git1` < `1.0.1`).

use std::cmp::Ordering;

/// Compares two version or release strings with rpm's `rpmvercmp`.
pub fn rpmvercmp(a: &str, b: &str) -> Ordering {
    if a == b {
        return Ordering::Equal;
    }
    let a = a.as_bytes();
    let b = b.as_bytes();
    let (mut i, mut j) = (0usize, 0usize);
    let sep = |c: u8| !c.is_ascii_alphanumeric() && c != b'~' && c != b'^';
    loop {
        while i < a.len() && sep(a[i]) {
            i += 1;
        }
        while j < b.len() && sep(b[j]) {
            j += 1;
        }
        let ca = a.get(i).copied();
        let cb = b.get(j).copied();
        if ca.is_none() && cb.is_none() {
            return Ordering::Equal;
        }
        if ca == Some(b'~') || cb == Some(b'~') {
            if ca != Some(b'~') {
                return Ordering::Greater;
            }
            if cb != Some(b'~') {
                return Ordering::Less;
            }
            i += 1;
            j += 1;
            continue;
        }
        if ca == Some(b'^') || cb == Some(b'^') {
            if ca.is_none() {
                return Ordering::Less;
            }
            if cb.is_none() {
                return Ordering::Greater;
            }
            if ca != Some(b'^') {
                return Ordering::Greater;
            }
            if cb != Some(b'^') {
                return Ordering::Less;
            }
            i += 1;
            j += 1;
            continue;
        }
        let (Some(first), Some(_)) = (ca, cb) else {
            break;
        };
        let numeric = first.is_ascii_digit();
        let class = |c: u8| {
            if numeric {
                c.is_ascii_digit()
            } else {
                c.is_ascii_alphabetic()
            }
        };
        let si = i;
        while i < a.len() && class(a[i]) {
            i += 1;
        }
        let sj = j;
        while j < b.len() && class(b[j]) {
            j += 1;
        }
        if sj == j {
            // Segments of different kinds: numbers are newer than letters.
            return if numeric {
                Ordering::Greater
            } else {
                Ordering::Less
            };
        }
        let (mut x, mut y) = (&a[si..i], &b[sj..j]);
        if numeric {
            while x.first() == Some(&b'0') {
                x = &x[1..];
            }
            while y.first() == Some(&b'0') {
                y = &y[1..];
            }
            match x.len().cmp(&y.len()) {
                Ordering::Equal => {}
                o => return o,
            }
        }
        match x.cmp(y) {
            Ordering::Equal => {}
            o => return o,
        }
    }
    // Whichever version still has characters left wins.
    match (i >= a.len(), j >= b.len()) {
        (true, true) => Ordering::Equal,
        (true, false) => Ordering::Less,
        _ => Ordering::Greater,
    }
}

/// An RPM `epoch:version-release`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Evr<'a> {
    pub epoch: u64,
    pub version: &'a str,
    pub release: &'a str,
}

impl<'a> Evr<'a> {
    /// Splits `[epoch:]version[-release]` (the release is after the last `-`). An epoch that is
    /// not a number is taken as part of the version, as rpm's own parser does.
    pub fn parse(s: &'a str) -> Evr<'a> {
        let s = s.trim();
        let (epoch, rest) = match s.split_once(':') {
            Some((e, rest)) if !e.is_empty() && e.bytes().all(|b| b.is_ascii_digit()) => {
                (e.parse().unwrap_or(u64::MAX), rest)
            }
            _ => (0, s),
        };
        let (version, release) = match rest.rfind('-') {
            Some(i) => (&rest[..i], &rest[i + 1..]),
            None => (rest, ""),
        };
        Evr {
            epoch,
            version,
            release,
        }
    }
}

/// Compares two `[epoch:]version[-release]` strings. A missing release matches any release
/// (rpm's rule for dependency ranges): `1.0` equals `1.0-5`.
pub fn compare(a: &str, b: &str) -> Ordering {
    let x = Evr::parse(a);
    let y = Evr::parse(b);
    x.epoch
        .cmp(&y.epoch)
        .then_with(|| rpmvercmp(x.version, y.version))
        .then_with(|| {
            if x.release.is_empty() || y.release.is_empty() {
                Ordering::Equal
            } else {
                rpmvercmp(x.release, y.release)
            }
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epoch_and_release() {
        assert_eq!(compare("1:1.0-1", "2.0-1"), Ordering::Greater);
        assert_eq!(compare("0:1.0-1", "1.0-1"), Ordering::Equal);
        assert_eq!(compare("3.0.7-24.el9", "3.0.7-25.el9"), Ordering::Less);
        assert_eq!(
            compare("1:3.0.7-27.el9", "1:3.0.7-27.el9_4"),
            Ordering::Less
        );
        assert_eq!(compare("2.0", "2.0-7"), Ordering::Equal);
    }
}
