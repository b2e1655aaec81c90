//! Every version comparator against the upstream projects' own test vectors
//! (`tests/data/versions/`, each file names its source), plus order laws (antisymmetry and
//! transitivity) over every version those files mention.
#![allow(clippy::unwrap_used, reason = "tests")]

use std::cmp::Ordering;
use std::path::Path;

use rampart_scan::version::{self, Pep440, Scheme};

fn data(name: &str) -> String {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/versions")
        .join(name);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// Decodes `\t`, `\n` and `\uXXXX` escapes of the data files.
fn unescape(s: &str) -> String {
    let mut out = String::new();
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('t') => out.push('\t'),
            Some('n') => out.push('\n'),
            Some('u') => {
                let hex: String = chars.by_ref().take(4).collect();
                out.push(char::from_u32(u32::from_str_radix(&hex, 16).unwrap()).unwrap());
            }
            Some(o) => out.push(o),
            None => {}
        }
    }
    out
}

/// `A OP B` lines (comments after `#` and blank lines skipped), with their line numbers.
fn triples(name: &str) -> Vec<(usize, String, Ordering, String)> {
    let mut out = Vec::new();
    for (i, line) in data(name).lines().enumerate() {
        let line = line
            .split(" #")
            .next()
            .unwrap()
            .split("\t#")
            .next()
            .unwrap()
            .trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let parts: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(parts.len(), 3, "{name}:{}: {line:?}", i + 1);
        let op = match parts[1] {
            "<" => Ordering::Less,
            "=" => Ordering::Equal,
            ">" => Ordering::Greater,
            o => panic!("{name}:{}: bad operator {o}", i + 1),
        };
        out.push((i + 1, parts[0].to_string(), op, parts[2].to_string()));
    }
    assert!(out.len() >= 4, "{name}: too few vectors");
    out
}

/// Checks every triple of `name` with `cmp`, both ways round; returns how many were checked.
fn check(name: &str, cmp: impl Fn(&str, &str) -> Ordering) -> usize {
    let mut failures = Vec::new();
    let vectors = triples(name);
    for (line, a, want, b) in &vectors {
        let got = cmp(a, b);
        let back = cmp(b, a);
        if got != *want || back != want.reverse() {
            failures.push(format!(
                "{name}:{line}: {a} {want:?} {b}, got {got:?} (reverse {back:?})"
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
    vectors.len()
}

/// Order laws over a pool of versions: `cmp(a, a) == Equal`, antisymmetry, transitivity.
fn laws(pool: &[String], cmp: impl Fn(&str, &str) -> Ordering) {
    let n = pool.len().min(120);
    let pool = &pool[..n];
    let table: Vec<Vec<Ordering>> = pool
        .iter()
        .map(|a| pool.iter().map(|b| cmp(a, b)).collect())
        .collect();
    for i in 0..n {
        assert_eq!(table[i][i], Ordering::Equal, "{} vs itself", pool[i]);
        for j in 0..n {
            assert_eq!(
                table[i][j],
                table[j][i].reverse(),
                "{} vs {}",
                pool[i],
                pool[j]
            );
            for k in 0..n {
                if table[i][j] != Ordering::Greater && table[j][k] != Ordering::Greater {
                    assert_ne!(
                        table[i][k],
                        Ordering::Greater,
                        "not transitive: {} <= {} <= {}",
                        pool[i],
                        pool[j],
                        pool[k]
                    );
                }
            }
        }
    }
}

fn pool_of(name: &str) -> Vec<String> {
    let mut v: Vec<String> = triples(name)
        .into_iter()
        .flat_map(|(_, a, _, b)| [a, b])
        .collect();
    v.sort();
    v.dedup();
    v
}

fn scheme_cmp(s: Scheme) -> impl Fn(&str, &str) -> Ordering {
    move |a, b| s.compare(a, b).unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn dpkg_matches_dpkg_version_t() {
    assert_eq!(check("dpkg.txt", scheme_cmp(Scheme::Dpkg)), 44);
    laws(&pool_of("dpkg.txt"), scheme_cmp(Scheme::Dpkg));
}

/// Epochs: where scanners regress. Every pair below differs only in what the epoch overrides.
#[test]
fn dpkg_epochs_override_everything_else() {
    let c = scheme_cmp(Scheme::Dpkg);
    for (a, b) in [
        ("1:1.0", "99.0"),
        ("1:0", "0:999999"),
        ("1:1.0~rc1", "1.0+deb12u9"),
        ("2:1.0-1", "1:9.9-9"),
        ("10:1", "9:2"),
        ("1:2.36-9", "2.36-9+deb12u99"),
        ("1:7.4.0", "7.88.1-10+deb12u5"),
    ] {
        assert_eq!(c(a, b), Ordering::Greater, "{a} > {b}");
        assert_eq!(c(b, a), Ordering::Less, "{b} < {a}");
    }
    // An explicit zero epoch is no epoch.
    assert_eq!(c("0:1.2-3", "1.2-3"), Ordering::Equal);
    assert!(
        Scheme::Dpkg.compare("a:1.0", "1.0").is_err(),
        "a non-numeric epoch is refused"
    );
}

#[test]
fn rpm_epochs_override_everything_else() {
    for (a, b) in [
        ("1:1.0-1", "2.0-1"),
        ("1:3.0.7-24.el9", "3.1.1-1.el9"),
        ("2:0.1-1", "1:9.9-9"),
    ] {
        assert_eq!(version::rpm_compare(a, b), Ordering::Greater, "{a} > {b}");
        assert_eq!(version::rpm_compare(b, a), Ordering::Less, "{b} < {a}");
    }
    assert_eq!(version::rpm_compare("0:1.0-1", "1.0-1"), Ordering::Equal);
}

#[test]
fn pep440_epochs_override_everything_else() {
    let c = scheme_cmp(Scheme::Pep440);
    assert_eq!(c("1!0.1", "2024.1"), Ordering::Greater);
    assert_eq!(c("0!1.0", "1.0"), Ordering::Equal);
}

#[test]
fn apk_matches_apk_tools_version_data() {
    assert_eq!(check("apk.txt", version::apk_compare), 729);
    laws(&pool_of("apk.txt"), version::apk_compare);
}

#[test]
fn rpm_matches_rpmvercmp_at() {
    assert_eq!(check("rpm.txt", version::rpmvercmp), 91);
    laws(&pool_of("rpm.txt"), version::rpmvercmp);
}

#[test]
fn npm_semver_matches_node_semver_comparisons() {
    assert_eq!(check("semver.txt", scheme_cmp(Scheme::Semver)), 31);
    laws(&pool_of("semver.txt"), scheme_cmp(Scheme::Semver));
}

#[test]
fn go_matches_golang_mod_semver_test() {
    check("go.txt", version::go_compare);
    let classes: Vec<Vec<String>> = data("go-sorted.txt")
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| l.split_whitespace().map(str::to_string).collect())
        .collect();
    assert_eq!(classes.iter().map(Vec::len).sum::<usize>(), 32);
    for (i, ci) in classes.iter().enumerate() {
        for (j, cj) in classes.iter().enumerate() {
            for a in ci {
                for b in cj {
                    assert_eq!(version::go_compare(a, b), i.cmp(&j), "{a} vs {b}");
                }
            }
        }
    }
    // Invalid versions are refused by validation (and sort first, as above).
    for bad in &classes[0] {
        assert!(Scheme::Go.validate(bad).is_err(), "{bad}");
    }
}

#[test]
fn pep440_matches_packaging_test_version() {
    let sorted: Vec<String> = data("pep440-sorted.txt")
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(str::to_string)
        .collect();
    assert_eq!(sorted.len(), 92);
    let parsed: Vec<Pep440> = sorted
        .iter()
        .map(|v| Pep440::parse(v).unwrap_or_else(|e| panic!("{e}")))
        .collect();
    for i in 0..parsed.len() {
        for j in 0..parsed.len() {
            // 1.0c1 and 1.0rc1 are the same version; the list has neither twice.
            assert_eq!(
                parsed[i].cmp(&parsed[j]),
                i.cmp(&j),
                "{} vs {}",
                sorted[i],
                sorted[j]
            );
        }
    }
    let mut invalid = 0;
    for line in data("pep440-invalid.txt").lines() {
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        let v = unescape(line);
        assert!(Pep440::parse(&v).is_err(), "{v:?} must be invalid");
        invalid += 1;
    }
    assert_eq!(invalid, 20);
    let mut normalized = 0;
    for line in data("pep440-normalized.txt").lines() {
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        let (input, want) = line.split_once(" => ").unwrap();
        let input = unescape(input);
        let v = Pep440::parse(&input).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(v.to_string(), want, "{input:?}");
        assert_eq!(v.cmp(&Pep440::parse(want).unwrap()), Ordering::Equal);
        normalized += 1;
    }
    assert_eq!(normalized, 102);
    assert_eq!(
        Pep440::parse("1.0rc1")
            .unwrap()
            .cmp(&Pep440::parse("1.0c1").unwrap()),
        Ordering::Equal
    );
}

#[test]
fn maven_matches_comparable_version_test() {
    let n = check("maven.txt", scheme_cmp(Scheme::Maven));
    assert!(n > 400, "{n}");
    let text = data("maven-sorted.txt");
    let lists: Vec<Vec<&str>> = text
        .split("\n\n")
        .map(|block| {
            block
                .lines()
                .filter(|l| !l.starts_with('#') && !l.is_empty())
                .collect()
        })
        .collect();
    assert_eq!(lists.iter().map(Vec::len).collect::<Vec<_>>(), [22, 24]);
    for list in lists {
        for i in 0..list.len() {
            for j in i + 1..list.len() {
                let c = Scheme::Maven.compare(list[i], list[j]).unwrap();
                assert_eq!(c, Ordering::Less, "{} < {}", list[i], list[j]);
                let c = Scheme::Maven.compare(list[j], list[i]).unwrap();
                assert_eq!(c, Ordering::Greater, "{} > {}", list[j], list[i]);
            }
        }
    }
}

#[test]
fn rubygems_order() {
    // Gem::Version semantics (rubygems' test_gem_version.rb: test_spaceship, test_prerelease).
    let c = scheme_cmp(Scheme::Gem);
    assert_eq!(c("1.0", "1.0.0"), Ordering::Equal);
    assert_eq!(c("1.0", "1.0.a"), Ordering::Greater);
    assert_eq!(c("1.8.2", "0.0.0"), Ordering::Greater);
    assert_eq!(c("1.8.2", "1.8.2.a"), Ordering::Greater);
    assert_eq!(c("1.8.2.b", "1.8.2.a"), Ordering::Greater);
    assert_eq!(c("1.8.2.a10", "1.8.2.a9"), Ordering::Greater);
    assert_eq!(c("1.0.0-rc1", "1.0.0.pre.rc1"), Ordering::Equal);
    assert_eq!(c("5.a", "5.0.0.rc2"), Ordering::Less);
    assert_eq!(c("1.9.3", "1.9.3.0"), Ordering::Equal);
}

#[test]
fn ecosystems_pick_their_scheme() {
    assert_eq!(Scheme::for_ecosystem("Debian:12"), Some(Scheme::Dpkg));
    assert_eq!(
        Scheme::for_ecosystem("Ubuntu:22.04:LTS"),
        Some(Scheme::Dpkg)
    );
    assert_eq!(Scheme::for_ecosystem("Alpine:v3.19"), Some(Scheme::Apk));
    assert_eq!(Scheme::for_ecosystem("Rocky Linux:9"), Some(Scheme::Rpm));
    assert_eq!(Scheme::for_ecosystem("PyPI"), Some(Scheme::Pep440));
    assert_eq!(Scheme::for_ecosystem("crates.io"), Some(Scheme::Semver));
    assert_eq!(Scheme::for_ecosystem("Go"), Some(Scheme::Go));
    assert_eq!(Scheme::for_ecosystem("Maven"), Some(Scheme::Maven));
    assert_eq!(Scheme::for_ecosystem("GIT"), None);
    // OSV's Go records have no `v`; Go's own versions do; the scheme takes both.
    assert_eq!(Scheme::Go.compare("1.2.3", "v1.2.3"), Ok(Ordering::Equal));
    assert_eq!(Scheme::Go.compare("go1.21.3", "1.21.4"), Ok(Ordering::Less));
}
