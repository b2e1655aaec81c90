//! RubyGems versions, ordered as `Gem::Version#<=>` does.
//!
//! A version is split into runs of digits and runs of letters (`1.0.0.rc1` is
//! `[1, 0, 0, "rc", 1]`; a `-` means `.pre.`); trailing zeros of the numeric part and of the
//! pre-release part are dropped; segments compare pairwise (missing ones are 0), a number is
//! newer than a string, so any pre-release (`1.0.a`) is older than its release.

use std::cmp::Ordering;

use super::VersionError;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Seg {
    Num(u64),
    Str(String),
}

/// A parsed gem version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GemVersion {
    canonical: Vec<Seg>,
}

impl GemVersion {
    /// Parses as `Gem::Version.new` does (`Gem::Version.correct?`: digits, letters, `.` and
    /// `-` only, starting with a digit).
    pub fn parse(input: &str) -> Result<GemVersion, VersionError> {
        let v = input.trim();
        if v.is_empty()
            || !v.starts_with(|c: char| c.is_ascii_digit())
            || !v
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-')
        {
            return Err(VersionError::new("rubygems", input, "not a gem version"));
        }
        let v = v.replace('-', ".pre.");
        let mut segs = Vec::new();
        let bytes = v.as_bytes();
        let mut i = 0;
        while i < bytes.len() {
            let start = i;
            if bytes[i].is_ascii_digit() {
                while i < bytes.len() && bytes[i].is_ascii_digit() {
                    i += 1;
                }
                segs.push(Seg::Num(v[start..i].parse().unwrap_or(u64::MAX)));
            } else if bytes[i].is_ascii_alphabetic() {
                while i < bytes.len() && bytes[i].is_ascii_alphabetic() {
                    i += 1;
                }
                segs.push(Seg::Str(v[start..i].to_string()));
            } else {
                i += 1;
            }
        }
        // canonical_segments: numeric part and string part, each without trailing zeros.
        let split = segs
            .iter()
            .position(|s| matches!(s, Seg::Str(_)))
            .unwrap_or(segs.len());
        let (nums, rest) = segs.split_at(split);
        let trim = |part: &[Seg]| {
            let mut end = part.len();
            while end > 0 && part[end - 1] == Seg::Num(0) {
                end -= 1;
            }
            part[..end].to_vec()
        };
        let mut canonical = trim(nums);
        canonical.extend(trim(rest));
        Ok(GemVersion { canonical })
    }
}

impl Ord for GemVersion {
    fn cmp(&self, other: &Self) -> Ordering {
        let n = self.canonical.len().max(other.canonical.len());
        for i in 0..n {
            let l = self.canonical.get(i).cloned().unwrap_or(Seg::Num(0));
            let r = other.canonical.get(i).cloned().unwrap_or(Seg::Num(0));
            let o = match (&l, &r) {
                _ if l == r => Ordering::Equal,
                (Seg::Str(_), Seg::Num(_)) => Ordering::Less,
                (Seg::Num(_), Seg::Str(_)) => Ordering::Greater,
                (Seg::Num(a), Seg::Num(b)) => a.cmp(b),
                (Seg::Str(a), Seg::Str(b)) => a.cmp(b),
            };
            if o != Ordering::Equal {
                return o;
            }
        }
        Ordering::Equal
    }
}

impl PartialOrd for GemVersion {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
