//! Package URLs (<https://github.com/package-url/purl-spec>): `pkg:type/namespace/name@version?qualifiers`.

use rampart_event::{Package, PackageKind};

use crate::analyze::OsRelease;

/// Percent-encodes everything but unreserved characters (RFC 3986), as purl requires for each
/// name, namespace segment, version and qualifier value.
pub(crate) fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The purl of a language package: `name` may carry a namespace (`@scope/name`, Go module
/// paths, Maven `group:artifact`, Composer `vendor/name`).
pub(crate) fn lang_purl(kind: PackageKind, name: &str, version: &str) -> String {
    let ty = kind.purl_type();
    let path = match kind {
        PackageKind::Npm => match name.strip_prefix('@').and_then(|n| n.split_once('/')) {
            Some((scope, n)) => format!("{}/{}", encode(&format!("@{scope}")), encode(n)),
            None => encode(name),
        },
        // The purl spec lowercases PyPI names and spells `_` as `-`.
        PackageKind::Pypi => encode(&name.to_ascii_lowercase().replace('_', "-")),
        PackageKind::Maven => match name.split_once(':') {
            Some((g, a)) => format!("{}/{}", encode(g), encode(a)),
            None => encode(name),
        },
        PackageKind::Go | PackageKind::Composer => {
            name.split('/').map(encode).collect::<Vec<_>>().join("/")
        }
        _ => encode(name),
    };
    format!("pkg:{ty}/{path}@{}", encode(version))
}

/// The purl of an OS package: `pkg:deb/debian/libc6@2.36-9%2Bdeb12u4?arch=amd64&distro=debian-12`.
/// An rpm epoch moves from the version into the `epoch` qualifier.
pub(crate) fn os_purl(p: &Package, os: Option<&OsRelease>) -> String {
    let namespace = os
        .map(|o| o.id.as_str())
        .filter(|s| !s.is_empty())
        .unwrap_or(match p.kind {
            PackageKind::Deb => "debian",
            PackageKind::Apk => "alpine",
            _ => "unknown",
        });
    let mut version = p.version.as_str();
    let mut quals: Vec<(String, String)> = Vec::new();
    if let Some(arch) = &p.arch {
        quals.push(("arch".into(), arch.clone()));
    }
    if p.kind == PackageKind::Rpm {
        if let Some((epoch, rest)) = version.split_once(':') {
            quals.push(("epoch".into(), epoch.to_string()));
            version = rest;
        }
    }
    if let Some(o) = os {
        if !o.version_id.is_empty() {
            quals.push(("distro".into(), format!("{}-{}", o.id, o.version_id)));
        }
    }
    if let Some(src) = &p.source_name {
        quals.push(("upstream".into(), src.clone()));
    }
    quals.sort();
    let mut s = format!(
        "pkg:{}/{}/{}@{}",
        p.kind.purl_type(),
        encode(namespace),
        encode(&p.name),
        encode(version)
    );
    for (i, (k, v)) in quals.iter().enumerate() {
        s.push(if i == 0 { '?' } else { '&' });
        s.push_str(k);
        s.push('=');
        s.push_str(&encode(v));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn language_purls() {
        assert_eq!(
            lang_purl(PackageKind::Npm, "@babel/core", "7.0.0"),
            "pkg:npm/%40babel/core@7.0.0"
        );
        assert_eq!(
            lang_purl(PackageKind::Pypi, "Jinja2", "2.10"),
            "pkg:pypi/jinja2@2.10"
        );
        assert_eq!(
            lang_purl(
                PackageKind::Maven,
                "org.apache.logging.log4j:log4j-core",
                "2.14.1"
            ),
            "pkg:maven/org.apache.logging.log4j/log4j-core@2.14.1"
        );
        assert_eq!(
            lang_purl(PackageKind::Go, "github.com/gin-gonic/gin", "v1.9.0"),
            "pkg:golang/github.com/gin-gonic/gin@v1.9.0"
        );
    }

    #[test]
    fn os_purl_with_epoch_and_distro() {
        let p = Package {
            kind: PackageKind::Rpm,
            name: "openssl-libs".into(),
            version: "1:3.0.7-24.el9".into(),
            ecosystem: String::new(),
            source_name: Some("openssl".into()),
            source_version: None,
            arch: Some("x86_64".into()),
            licenses: vec![],
            purl: String::new(),
            path: String::new(),
            layer: None,
            locations: Vec::new(),
        };
        let os = OsRelease {
            id: "rocky".into(),
            version_id: "9.3".into(),
            ..OsRelease::default()
        };
        assert_eq!(
            os_purl(&p, Some(&os)),
            "pkg:rpm/rocky/openssl-libs@3.0.7-24.el9?arch=x86_64&distro=rocky-9.3&epoch=1&upstream=openssl"
        );
    }
}
