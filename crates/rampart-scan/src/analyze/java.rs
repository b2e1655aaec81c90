//! Java archives (`.jar`, `.war`, `.ear`): Maven coordinates from every
//! `META-INF/maven/<group>/<artifact>/pom.properties` (shaded jars carry several), nested
//! archives (`WEB-INF/lib`, `BOOT-INF/lib` of Spring Boot, ...) read recursively, and the
//! manifest's `Implementation-*` attributes when an archive has no Maven metadata.
//!
//! Archives are read in memory through the capped zip reader: members larger than
//! [`MAX_MEMBER`] are skipped (and said so), nesting stops at [`MAX_DEPTH`].

use std::io::Cursor;

use rampart_event::PackageKind;

use super::{lang_package, FileResult, Warning};
use crate::limit::{read_capped, zip_archive};

/// Largest nested archive or metadata file read.
const MAX_MEMBER: u64 = 128 << 20;
/// Deepest nesting of archives followed.
const MAX_DEPTH: usize = 3;

pub(crate) fn wants(path: &str) -> bool {
    let lower = path.to_ascii_lowercase();
    [".jar", ".war", ".ear", ".hpi", ".jpi"]
        .iter()
        .any(|e| lower.ends_with(e))
}

fn properties(text: &str) -> impl Iterator<Item = (&str, &str)> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.starts_with('#') && !l.starts_with('!'))
        .filter_map(|l| l.split_once(['=', ':']))
        .map(|(k, v)| (k.trim(), v.trim()))
}

fn is_archive(name: &str) -> bool {
    wants(name)
}

pub(crate) fn parse(data: &[u8], out: &mut FileResult) {
    archive(data, "", 0, out);
}

fn archive(data: &[u8], inner: &str, depth: usize, out: &mut FileResult) {
    let warn = |out: &mut FileResult, message: String| {
        out.warnings.push(Warning {
            path: String::new(),
            line: None,
            message: if inner.is_empty() {
                message
            } else {
                format!("{inner}: {message}")
            },
        })
    };
    let mut zip = match zip_archive(Cursor::new(data)) {
        Ok(z) => z,
        Err(e) => return warn(out, format!("not a readable Java archive: {e}")),
    };
    let before = out.packages.len();
    let mut manifest: Option<String> = None;
    let mut nested: Vec<(String, Vec<u8>)> = Vec::new();
    for i in 0..zip.len() {
        let Ok(entry) = zip.by_index(i) else { continue };
        let name = entry.name().map(|n| n.into_owned()).unwrap_or_default();
        let size = entry.size();
        let pom = name.starts_with("META-INF/maven/") && name.ends_with("/pom.properties");
        let mf = name.eq_ignore_ascii_case("META-INF/MANIFEST.MF");
        let sub = is_archive(&name) && depth < MAX_DEPTH;
        if !(pom || mf || sub) {
            continue;
        }
        if size > MAX_MEMBER {
            warn(out, format!("{name}: {size} bytes, not inspected"));
            continue;
        }
        let Ok(bytes) = read_capped(entry, MAX_MEMBER) else {
            warn(out, format!("{name}: unreadable member"));
            continue;
        };
        if pom {
            let text = String::from_utf8_lossy(&bytes);
            let (mut g, mut a, mut v) = (None, None, None);
            for (k, val) in properties(&text) {
                match k {
                    "groupId" => g = Some(val.to_string()),
                    "artifactId" => a = Some(val.to_string()),
                    "version" => v = Some(val.to_string()),
                    _ => {}
                }
            }
            if let (Some(g), Some(a), Some(v)) = (g, a, v) {
                out.packages
                    .push(lang_package(PackageKind::Maven, &format!("{g}:{a}"), &v));
            }
        } else if mf {
            manifest = Some(String::from_utf8_lossy(&bytes).into_owned());
        } else {
            nested.push((name, bytes));
        }
    }
    if out.packages.len() == before {
        if let Some(m) = manifest {
            let get = |key: &str| {
                properties(&m)
                    .find(|(k, _)| k.eq_ignore_ascii_case(key))
                    .map(|(_, v)| v.to_string())
            };
            if let (Some(g), Some(a), Some(v)) = (
                get("Implementation-Vendor-Id"),
                get("Implementation-Title"),
                get("Implementation-Version"),
            ) {
                out.packages
                    .push(lang_package(PackageKind::Maven, &format!("{g}:{a}"), &v));
            }
        }
    }
    for (name, bytes) in nested {
        let path = if inner.is_empty() {
            name
        } else {
            format!("{inner}!{name}")
        };
        archive(&bytes, &path, depth + 1, out);
    }
}
