//! Alpine package versions, compared as apk-tools does (`src/version.c`): the Gentoo scheme
//! `{digit}{.digit}...{letter}{_suffix{#}}...{-r#}`.
//!
//! The version is read as a sequence of typed tokens (digit run, letter, suffix, suffix number,
//! revision). Tokens are compared pairwise by value while their types agree; when one version
//! runs out or changes type first, a pre-release suffix (`_alpha`, `_beta`, `_pre`, `_rc`)
//! makes it older and anything else makes it newer. A run of leading zeros after a dot counts
//! as a negative number (`1.05` < `1.5`). Versions that are not valid still compare, the way
//! apk does: the comparison stops at the first invalid token.

use std::cmp::Ordering;

/// Token types, in apk's order (the order matters: it decides ties).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Tok {
    Invalid = -1,
    DigitOrZero = 0,
    Digit,
    Letter,
    Suffix,
    SuffixNo,
    RevisionNo,
    End,
}

const PRE_SUFFIXES: [&str; 4] = ["alpha", "beta", "pre", "rc"];
const POST_SUFFIXES: [&str; 5] = ["cvs", "svn", "git", "hg", "p"];

struct Cursor<'a> {
    s: &'a [u8],
    ty: Tok,
}

impl Cursor<'_> {
    /// Decides the type of the next token from the separator at the cursor.
    fn next_token(&mut self) {
        let mut n = Tok::Invalid;
        let c = self.s.first().copied();
        match c {
            None | Some(0) => n = Tok::End,
            Some(c)
                if matches!(self.ty, Tok::Digit | Tok::DigitOrZero) && c.is_ascii_lowercase() =>
            {
                n = Tok::Letter
            }
            Some(c) if self.ty == Tok::Letter && c.is_ascii_digit() => n = Tok::Digit,
            Some(c) if self.ty == Tok::Suffix && c.is_ascii_digit() => n = Tok::SuffixNo,
            Some(c) => {
                match c {
                    b'.' => n = Tok::DigitOrZero,
                    b'_' => n = Tok::Suffix,
                    b'-' if self.s.get(1) == Some(&b'r') => {
                        n = Tok::RevisionNo;
                        self.s = &self.s[1..];
                    }
                    _ => {}
                }
                self.s = &self.s[1..];
            }
        }
        if n < self.ty {
            let allowed = (n == Tok::DigitOrZero && self.ty == Tok::Digit)
                || (n == Tok::Suffix && self.ty == Tok::SuffixNo)
                || (n == Tok::Digit && self.ty == Tok::Letter);
            if !allowed {
                n = Tok::Invalid;
            }
        }
        self.ty = n;
    }

    /// Reads the value of the token of the current type and advances to the next token.
    fn get_token(&mut self) -> i64 {
        if self.s.is_empty() {
            self.ty = Tok::End;
            return 0;
        }
        let mut i = 0usize;
        let mut v: i64 = 0;
        let mut nt = Tok::Invalid;
        let numeric = |cur: &mut Cursor<'_>, i: &mut usize, v: &mut i64| -> bool {
            while *i < cur.s.len() && cur.s[*i].is_ascii_digit() {
                *v = *v * 10 + i64::from(cur.s[*i] - b'0');
                *i += 1;
                if *i >= 18 {
                    return false;
                }
            }
            true
        };
        match self.ty {
            Tok::DigitOrZero if self.s[0] == b'0' => {
                while i < self.s.len() && self.s[i] == b'0' {
                    i += 1;
                }
                nt = Tok::Digit;
                v = -(i as i64);
            }
            Tok::DigitOrZero | Tok::Digit | Tok::SuffixNo | Tok::RevisionNo => {
                if !numeric(self, &mut i, &mut v) {
                    self.ty = Tok::Invalid;
                    return -1;
                }
            }
            Tok::Letter => {
                v = i64::from(self.s[0]);
                i = 1;
            }
            Tok::Suffix => {
                if let Some(k) = PRE_SUFFIXES
                    .iter()
                    .position(|p| self.s.starts_with(p.as_bytes()))
                {
                    i = PRE_SUFFIXES[k].len();
                    v = k as i64 - PRE_SUFFIXES.len() as i64;
                } else if let Some(k) = POST_SUFFIXES
                    .iter()
                    .position(|p| self.s.starts_with(p.as_bytes()))
                {
                    i = POST_SUFFIXES[k].len();
                    v = k as i64;
                } else {
                    self.ty = Tok::Invalid;
                    return -1;
                }
            }
            Tok::Invalid | Tok::End => {
                self.ty = Tok::Invalid;
                return -1;
            }
        }
        self.s = &self.s[i..];
        if self.s.is_empty() {
            self.ty = Tok::End;
        } else if nt != Tok::Invalid {
            self.ty = nt;
        } else {
            self.next_token();
        }
        v
    }
}

/// Compares two apk versions (apk-tools `apk_version_compare`).
pub fn compare(a: &str, b: &str) -> Ordering {
    let mut x = Cursor {
        s: a.as_bytes(),
        ty: Tok::Digit,
    };
    let mut y = Cursor {
        s: b.as_bytes(),
        ty: Tok::Digit,
    };
    let (mut av, mut bv) = (0i64, 0i64);
    while x.ty == y.ty && x.ty != Tok::End && x.ty != Tok::Invalid && av == bv {
        av = x.get_token();
        bv = y.get_token();
    }
    if av != bv {
        return av.cmp(&bv);
    }
    if x.ty == y.ty {
        return Ordering::Equal;
    }
    // Equal so far; the one that goes on is newer unless what follows is a pre-release suffix.
    if x.ty == Tok::Suffix {
        let mut t = Cursor { s: x.s, ty: x.ty };
        if t.get_token() < 0 {
            return Ordering::Less;
        }
    }
    if y.ty == Tok::Suffix {
        let mut t = Cursor { s: y.s, ty: y.ty };
        if t.get_token() < 0 {
            return Ordering::Greater;
        }
    }
    // A later token type (End being the last) means the version stopped earlier: older.
    y.ty.cmp(&x.ty)
}

/// True when `v` is a well-formed apk version.
pub fn is_valid(v: &str) -> bool {
    let mut c = Cursor {
        s: v.as_bytes(),
        ty: Tok::Digit,
    };
    while c.ty != Tok::End && c.ty != Tok::Invalid {
        c.get_token();
    }
    c.ty == Tok::End && !v.is_empty()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basics() {
        assert_eq!(compare("1.2.3-r0", "1.2.3-r1"), Ordering::Less);
        assert_eq!(compare("1.2.3_rc1", "1.2.3"), Ordering::Less);
        assert_eq!(compare("1.2.3_p1", "1.2.3"), Ordering::Greater);
        assert_eq!(compare("1.05", "1.5"), Ordering::Less);
        assert!(is_valid("3.0.12-r1"));
        assert!(!is_valid("1.0bc"));
    }
}
