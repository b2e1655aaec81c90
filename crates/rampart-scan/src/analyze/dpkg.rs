//! Debian packages from dpkg's database: `var/lib/dpkg/status`, and the one-file-per-package
//! `var/lib/dpkg/status.d/*` of distroless images.
//!
//! The format is deb822 (`Field: value` lines, continuation lines start with a space, stanzas
//! separated by blank lines). A stanza is one package; it counts when its `Status` says the
//! files are on disk (`installed`, `unpacked`, `half-configured`, `half-installed`,
//! `triggers-awaited`, `triggers-pending`) or, in `status.d`, when it has no `Status` at all.
//! `Source: name (version)` gives the source package that Debian's advisories are filed under.

use rampart_event::{Package, PackageKind};

use super::{FileResult, Warning};

pub(crate) fn wants(path: &str) -> bool {
    path == "var/lib/dpkg/status"
        || path
            .strip_prefix("var/lib/dpkg/status.d/")
            .is_some_and(|n| !n.contains('/') && !n.ends_with(".md5sums") && !n.starts_with('.'))
}

/// States whose files are present on disk.
const PRESENT: [&str; 6] = [
    "installed",
    "unpacked",
    "half-configured",
    "half-installed",
    "triggers-awaited",
    "triggers-pending",
];

#[derive(Default)]
struct Stanza {
    line: usize,
    package: Option<String>,
    version: Option<String>,
    arch: Option<String>,
    source: Option<String>,
    status: Option<String>,
}

pub(crate) fn parse(data: &[u8], out: &mut FileResult) {
    let text = String::from_utf8_lossy(data);
    let mut cur = Stanza::default();
    let mut in_stanza = false;
    for (i, line) in text.lines().enumerate() {
        let lineno = i + 1;
        if line.trim().is_empty() {
            if in_stanza {
                finish(std::mem::take(&mut cur), out);
                in_stanza = false;
            }
            continue;
        }
        if !in_stanza {
            cur.line = lineno;
            in_stanza = true;
        }
        if line.starts_with([' ', '\t']) {
            continue; // continuation of a multi-line field we do not use
        }
        let Some((key, value)) = line.split_once(':') else {
            out.warnings.push(Warning {
                path: String::new(),
                line: Some(lineno),
                message: format!("not a `Field: value` line: {:?}", truncate(line)),
            });
            continue;
        };
        let value = value.trim().to_string();
        match key {
            "Package" => cur.package = Some(value),
            "Version" => cur.version = Some(value),
            "Architecture" => cur.arch = Some(value),
            "Source" => cur.source = Some(value),
            "Status" => cur.status = Some(value),
            _ => {}
        }
    }
    if in_stanza {
        finish(cur, out);
    }
}

fn truncate(s: &str) -> String {
    s.chars().take(60).collect()
}

fn finish(s: Stanza, out: &mut FileResult) {
    let (Some(name), Some(version)) = (s.package, s.version) else {
        out.warnings.push(Warning {
            path: String::new(),
            line: Some(s.line),
            message: "package stanza without Package or Version".into(),
        });
        return;
    };
    if let Some(status) = &s.status {
        let state = status.split_whitespace().nth(2).unwrap_or("");
        if !PRESENT.contains(&state) {
            return;
        }
    }
    // `Source: name` or `Source: name (version)`.
    let (source_name, source_version) = match s.source.as_deref() {
        Some(src) => match src.split_once('(') {
            Some((n, v)) => (
                Some(n.trim().to_string()),
                Some(v.trim_end_matches(')').trim().to_string()),
            ),
            None => (Some(src.trim().to_string()), None),
        },
        None => (None, None),
    };
    out.packages.push(Package {
        kind: PackageKind::Deb,
        source_name: source_name.filter(|n| *n != name && !n.is_empty()),
        source_version: source_version.filter(|v| *v != version && !v.is_empty()),
        name,
        version,
        ecosystem: String::new(),
        arch: s.arch,
        licenses: Vec::new(),
        purl: String::new(),
        path: String::new(),
        layer: None,
        locations: Vec::new(),
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_status_with_sources_and_states() {
        let status = b"Package: libc6
Status: install ok installed
Architecture: amd64
Source: glibc
Version: 2.36-9+deb12u4
Description: GNU C Library
 continuation: with a colon

Package: removed
Status: deinstall ok config-files
Version: 1.0-1

Package: libfoo1
Status: install ok installed
Source: foo (1.2-3)
Version: 1.2-3+b1
Architecture: amd64
";
        let mut r = FileResult::default();
        parse(status, &mut r);
        assert!(r.warnings.is_empty(), "{:?}", r.warnings);
        assert_eq!(r.packages.len(), 2);
        let libc = &r.packages[0];
        assert_eq!(
            (libc.name.as_str(), libc.version.as_str()),
            ("libc6", "2.36-9+deb12u4")
        );
        assert_eq!(libc.source_name.as_deref(), Some("glibc"));
        assert_eq!(libc.source_version, None);
        let foo = &r.packages[1];
        assert_eq!(foo.source_name.as_deref(), Some("foo"));
        assert_eq!(foo.source_version.as_deref(), Some("1.2-3"));
    }

    #[test]
    fn status_d_stanza_without_status_counts() {
        let mut r = FileResult::default();
        parse(
            b"Package: tzdata\nVersion: 2024a-0+deb12u1\nArchitecture: all\n",
            &mut r,
        );
        assert_eq!(r.packages.len(), 1);
        assert!(wants("var/lib/dpkg/status.d/tzdata"));
        assert!(!wants("var/lib/dpkg/status.d/tzdata.md5sums"));
        assert!(!wants("var/lib/dpkg/status-old"));
    }

    #[test]
    fn bad_lines_are_warnings_with_line_numbers() {
        let mut r = FileResult::default();
        parse(
            b"Package: a\nVersion: 1\ngarbage line\n\nVersion: 2\n",
            &mut r,
        );
        assert_eq!(r.packages.len(), 1);
        assert_eq!(r.warnings.len(), 2);
        assert_eq!(r.warnings[0].line, Some(3));
        assert_eq!(r.warnings[1].line, Some(5));
    }
}
