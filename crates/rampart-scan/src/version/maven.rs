//! Maven versions, ordered as Maven's `ComparableVersion` does (the POM reference's "Version
//! Order Specification").
//!
//! A version is split at `.`, `-` and digit/letter transitions into a tree: numbers, qualifiers
//! and, after a `-` (or a transition), a nested list. Well-known qualifiers order as
//! `alpha < beta < milestone < rc = cr < snapshot < "" = ga = final = release < sp`, unknown
//! ones after them alphabetically; `a1`, `b1`, `m1` mean `alpha-1`, `beta-1`, `milestone-1`;
//! trailing zeros and empty qualifiers are dropped (`1.0.0` = `1`); a number is newer than a
//! qualifier or a list at the same place (`1.1` > `1-1` > `1-sp`); comparison is
//! case-insensitive. This is a behavioural port of the Java class, checked against its test
//! vectors (`tests/data/versions/maven.txt`).

use std::cmp::Ordering;

use super::VersionError;

/// The longest version Maven accepts (`MAX_VERSION_LENGTH`).
const MAX_LEN: usize = 256;

const QUALIFIERS: [&str; 7] = ["alpha", "beta", "milestone", "rc", "snapshot", "", "sp"];
const RELEASE_QUALIFIERS: [&str; 3] = ["ga", "final", "release"];

#[derive(Debug, Clone, PartialEq, Eq)]
enum Item {
    /// Digits without leading zeros ("0" for zero).
    Num(String),
    Str(String),
    Combination(String, Box<Item>),
    List(Vec<Item>),
}

/// Maven's `comparableQualifier`: known qualifiers by index, unknown ones after all of them.
fn comparable_qualifier(q: &str) -> String {
    if RELEASE_QUALIFIERS.contains(&q) {
        return "5".to_string();
    }
    match QUALIFIERS.iter().position(|k| *k == q) {
        Some(i) => i.to_string(),
        None => format!("{}-{q}", QUALIFIERS.len()),
    }
}

fn string_item(value: &str, followed_by_digit: bool) -> Item {
    let mut v = value.to_string();
    if followed_by_digit && v.chars().count() == 1 {
        match v.as_str() {
            "a" => v = "alpha".into(),
            "b" => v = "beta".into(),
            "m" => v = "milestone".into(),
            _ => {}
        }
    }
    if v == "cr" {
        v = "rc".into();
    }
    Item::Str(v)
}

fn strip_zeros(s: &str) -> String {
    let t = s.trim_start_matches('0');
    if t.is_empty() {
        "0".into()
    } else {
        t.into()
    }
}

fn parse_item(combination: bool, digit: bool, buf: &str) -> Item {
    if combination {
        let buf = buf.replace('-', "");
        let index = buf
            .char_indices()
            .find(|(_, c)| c.is_ascii_digit())
            .map_or(0, |(i, _)| i);
        let s = match string_item(&buf[..index], true) {
            Item::Str(s) => s,
            _ => String::new(),
        };
        Item::Combination(s, Box::new(parse_item(false, true, &buf[index..])))
    } else if digit {
        Item::Num(strip_zeros(buf))
    } else {
        string_item(buf, false)
    }
}

fn cmp_num(a: &str, b: &str) -> Ordering {
    a.len().cmp(&b.len()).then_with(|| a.cmp(b))
}

fn sign(o: Ordering) -> Ordering {
    o.reverse()
}

impl Item {
    fn is_null(&self) -> bool {
        match self {
            Item::Num(n) => n == "0",
            Item::Str(s) => s.is_empty(),
            Item::Combination(..) => false,
            Item::List(l) => l.is_empty(),
        }
    }

    fn is_str(&self) -> bool {
        matches!(self, Item::Str(_))
    }

    /// `compareTo(null)`: against the absence of an item.
    fn cmp_none(&self) -> Ordering {
        match self {
            Item::Num(n) => {
                if n == "0" {
                    Ordering::Equal
                } else {
                    Ordering::Greater
                }
            }
            Item::Str(s) => comparable_qualifier(s).as_str().cmp("5"),
            Item::Combination(s, d) => {
                let r = Item::Str(s.clone()).cmp_none();
                if r == Ordering::Equal {
                    d.cmp_none()
                } else {
                    r
                }
            }
            Item::List(l) => l
                .iter()
                .map(Item::cmp_none)
                .find(|r| *r != Ordering::Equal)
                .unwrap_or(Ordering::Equal),
        }
    }

    fn cmp_item(&self, other: &Item) -> Ordering {
        use Item::*;
        match (self, other) {
            (Num(a), Num(b)) => cmp_num(a, b),
            (Num(_), _) => Ordering::Greater,
            (Str(_), Num(_)) => Ordering::Less,
            (Str(a), Str(b)) => comparable_qualifier(a).cmp(&comparable_qualifier(b)),
            (Str(_), Combination(cs, cd)) => {
                let r = self.cmp_item(&Str(cs.clone()));
                if r == Ordering::Equal {
                    if self.cmp_none() == Ordering::Equal {
                        return sign(cd.cmp_none());
                    }
                    return Ordering::Less;
                }
                r
            }
            (Str(_) | Combination(..), List(_)) => sign(other.cmp_item(self)),
            (Combination(..), Num(_)) => Ordering::Less,
            (Combination(s, d), Str(_)) => {
                let sp = Str(s.clone());
                let r = sp.cmp_item(other);
                if r == Ordering::Equal {
                    if sp.cmp_none() == Ordering::Equal {
                        return d.cmp_none();
                    }
                    return Ordering::Greater;
                }
                r
            }
            (Combination(s1, d1), Combination(s2, d2)) => {
                let r = Str(s1.clone()).cmp_item(&Str(s2.clone()));
                if r == Ordering::Equal {
                    d1.cmp_item(d2)
                } else {
                    r
                }
            }
            (List(_), Num(_)) => Ordering::Less,
            (List(l), Str(_) | Combination(..)) => {
                let mut r = match l.first() {
                    None => sign(other.cmp_none()),
                    Some(first) => first.cmp_item(other),
                };
                let mut i = 1;
                while r == Ordering::Equal && i < l.len() {
                    r = l[i].cmp_none();
                    i += 1;
                }
                r
            }
            (List(a), List(b)) => cmp_lists(a, b),
        }
    }
}

fn cmp_lists(a: &[Item], b: &[Item]) -> Ordering {
    let n = a.len().max(b.len());
    for i in 0..n {
        let r = match (a.get(i), b.get(i)) {
            (None, None) => Ordering::Equal,
            (None, Some(r)) => sign(r.cmp_none()),
            (Some(l), None) => l.cmp_none(),
            (Some(l), Some(r)) => l.cmp_item(r),
        };
        if r != Ordering::Equal {
            return r;
        }
    }
    Ordering::Equal
}

/// Maven's `ListItem.normalize`.
fn normalize(list: &mut Vec<Item>) {
    let mut i = list.len();
    while i > 0 {
        i -= 1;
        if i >= list.len() {
            continue;
        }
        if list[i].is_null() {
            if i == list.len() - 1 || list[i + 1].is_str() {
                list.remove(i);
            } else if let Item::List(next) = &list[i + 1] {
                if next
                    .first()
                    .is_some_and(|f| matches!(f, Item::Combination(..) | Item::Str(_)))
                {
                    list.remove(i);
                }
            }
        }
    }
    if list.len() == 1 {
        if let Item::List(inner) = &list[0] {
            let inner = inner.clone();
            *list = inner;
        }
    }
}

/// A parsed Maven version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MavenVersion {
    items: Vec<Item>,
}

/// The lists of a version being parsed: an arena, each list holding items and child list
/// references, so the Java parser's "current list" pointer becomes an index.
enum Slot {
    Item(Item),
    Child(usize),
}

impl MavenVersion {
    /// Parses a version; fails only on versions longer than Maven accepts.
    pub fn parse(input: &str) -> Result<MavenVersion, VersionError> {
        if input.chars().count() > MAX_LEN {
            return Err(VersionError::new(
                "maven",
                input,
                "longer than 256 characters",
            ));
        }
        let lower = input.to_lowercase();
        let chars: Vec<char> = lower.chars().collect();
        let sub = |a: usize, b: usize| chars[a..b].iter().collect::<String>();
        let mut arena: Vec<Vec<Slot>> = vec![Vec::new()];
        let mut cur = 0usize;
        let mut stack = vec![0usize];
        let mut is_digit = false;
        let mut is_combination = false;
        let mut start = 0usize;
        let new_list = |arena: &mut Vec<Vec<Slot>>, cur: &mut usize, stack: &mut Vec<usize>| {
            arena.push(Vec::new());
            let id = arena.len() - 1;
            arena[*cur].push(Slot::Child(id));
            *cur = id;
            stack.push(id);
        };
        let len = chars.len();
        let mut i = 0usize;
        while i < len {
            let c = chars[i];
            if c == '.' {
                if i == start {
                    arena[cur].push(Slot::Item(Item::Num("0".into())));
                } else {
                    arena[cur].push(Slot::Item(parse_item(
                        is_combination,
                        is_digit,
                        &sub(start, i),
                    )));
                }
                is_combination = false;
                start = i + 1;
            } else if c == '-' {
                if i == start {
                    arena[cur].push(Slot::Item(Item::Num("0".into())));
                } else {
                    // X-1 is read as X1.
                    if !is_digit && i != len - 1 && chars[i + 1].is_numeric() {
                        is_combination = true;
                        i += 1;
                        continue;
                    }
                    arena[cur].push(Slot::Item(parse_item(
                        is_combination,
                        is_digit,
                        &sub(start, i),
                    )));
                }
                start = i + 1;
                if !arena[cur].is_empty() {
                    new_list(&mut arena, &mut cur, &mut stack);
                }
                is_combination = false;
            } else if c.is_ascii_digit() {
                if !is_digit && i > start {
                    is_combination = true;
                    if !arena[cur].is_empty() {
                        new_list(&mut arena, &mut cur, &mut stack);
                    }
                }
                is_digit = true;
            } else {
                if is_digit && i > start {
                    arena[cur].push(Slot::Item(parse_item(is_combination, true, &sub(start, i))));
                    start = i;
                    new_list(&mut arena, &mut cur, &mut stack);
                    is_combination = false;
                }
                is_digit = false;
            }
            i += 1;
        }
        if len > start {
            // 1.0.0.X1 < 1.0.0-X2: a trailing qualifier after a dot is read as after a hyphen.
            if !is_digit && !arena[cur].is_empty() {
                new_list(&mut arena, &mut cur, &mut stack);
            }
            arena[cur].push(Slot::Item(parse_item(
                is_combination,
                is_digit,
                &sub(start, len),
            )));
        }
        // Children were created after their parents: building in reverse creation order means
        // every child is normalised and built before the list holding it, as the Java stack does.
        let mut built: Vec<Option<Vec<Item>>> = (0..arena.len()).map(|_| None).collect();
        while let Some(id) = stack.pop() {
            let slots = std::mem::take(&mut arena[id]);
            let mut items = Vec::with_capacity(slots.len());
            for s in slots {
                match s {
                    Slot::Item(it) => items.push(it),
                    Slot::Child(c) => items.push(Item::List(built[c].take().unwrap_or_default())),
                }
            }
            normalize(&mut items);
            built[id] = Some(items);
        }
        Ok(MavenVersion {
            items: built[0].take().unwrap_or_default(),
        })
    }
}

impl Ord for MavenVersion {
    fn cmp(&self, other: &Self) -> Ordering {
        cmp_lists(&self.items, &other.items)
    }
}

impl PartialOrd for MavenVersion {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cmp(a: &str, b: &str) -> Ordering {
        MavenVersion::parse(a)
            .expect("a")
            .cmp(&MavenVersion::parse(b).expect("b"))
    }

    #[test]
    fn basics() {
        assert_eq!(cmp("1.0", "1"), Ordering::Equal);
        assert_eq!(cmp("1.0-SNAPSHOT", "1.0"), Ordering::Less);
        assert_eq!(cmp("2.14.1", "2.15.0"), Ordering::Less);
        assert_eq!(cmp("2.17.1", "2.17.0"), Ordering::Greater);
        assert_eq!(cmp("1.0-rc1", "1.0-cr1"), Ordering::Equal);
    }
}
