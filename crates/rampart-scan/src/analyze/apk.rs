//! Alpine packages from apk's installed database (`lib/apk/db/installed`): stanzas of
//! `K:value` lines separated by blank lines; `P` name, `V` version, `A` arch, `o` origin (the
//! source package advisories are filed under), `L` licence.

use rampart_event::{Package, PackageKind};

use super::{FileResult, Warning};

pub(crate) fn wants(path: &str) -> bool {
    path == "lib/apk/db/installed"
}

pub(crate) fn parse(data: &[u8], out: &mut FileResult) {
    let text = String::from_utf8_lossy(data);
    let mut fields: [Option<String>; 5] = Default::default();
    let mut start = 0usize;
    let flush = |fields: &mut [Option<String>; 5], start: usize, out: &mut FileResult| {
        let [p, v, a, o, l] = std::mem::take(fields);
        match (p, v) {
            (Some(name), Some(version)) => out.packages.push(Package {
                kind: PackageKind::Apk,
                source_name: o.filter(|o| *o != name),
                source_version: None,
                name,
                version,
                ecosystem: String::new(),
                arch: a,
                licenses: l.into_iter().collect(),
                purl: String::new(),
                path: String::new(),
                layer: None,
                locations: Vec::new(),
            }),
            (None, None) => {}
            _ => out.warnings.push(Warning {
                path: String::new(),
                line: Some(start),
                message: "package without P: or V:".into(),
            }),
        }
    };
    for (i, line) in text.lines().enumerate() {
        if line.is_empty() {
            flush(&mut fields, start, out);
            continue;
        }
        if fields.iter().all(Option::is_none) {
            start = i + 1;
        }
        let Some((k, v)) = line.split_once(':') else {
            out.warnings.push(Warning {
                path: String::new(),
                line: Some(i + 1),
                message: "not a `K:value` line".into(),
            });
            continue;
        };
        let slot = match k {
            "P" => 0,
            "V" => 1,
            "A" => 2,
            "o" => 3,
            "L" => 4,
            _ => continue,
        };
        fields[slot] = Some(v.to_string());
    }
    flush(&mut fields, start, out);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_installed_db() {
        let db = b"C:Q1abc=\nP:musl\nV:1.2.4-r2\nA:x86_64\nL:MIT\no:musl\n\nP:libcrypto3\nV:3.1.4-r1\nA:x86_64\nL:Apache-2.0\no:openssl\nF:lib\nR:libcrypto.so.3\n\n";
        let mut r = FileResult::default();
        parse(db, &mut r);
        assert_eq!(r.packages.len(), 2);
        assert_eq!(r.packages[0].source_name, None);
        assert_eq!(r.packages[1].source_name.as_deref(), Some("openssl"));
        assert_eq!(r.packages[1].licenses, ["Apache-2.0"]);
    }
}
