//! OSV ecosystem names (<https://ossf.github.io/osv-schema/#defined-ecosystems>) for the
//! packages the scanner finds, and the version comparison each uses.

use rampart_event::PackageKind;

use crate::analyze::OsRelease;

/// The OSV ecosystem of a distribution's packages (`Debian:12`, `Ubuntu:22.04:LTS`,
/// `Alpine:v3.19`, `Rocky Linux:9`, ...); `None` for distributions OSV has no advisories for.
pub(crate) fn os_ecosystem(os: &OsRelease) -> Option<String> {
    let v = os.version_id.as_str();
    let major = v.split('.').next().unwrap_or("");
    let major_minor = {
        let mut parts = v.split('.');
        match (parts.next(), parts.next()) {
            (Some(a), Some(b)) => format!("{a}.{b}"),
            (Some(a), None) => a.to_string(),
            _ => String::new(),
        }
    };
    let eco = match os.id.as_str() {
        "debian" if !major.is_empty() => format!("Debian:{major}"),
        "ubuntu" if !v.is_empty() => {
            // LTS releases are YY.04 with an even YY.
            let lts = v
                .split_once('.')
                .is_some_and(|(y, m)| m == "04" && y.parse::<u32>().is_ok_and(|y| y % 2 == 0));
            if lts {
                format!("Ubuntu:{v}:LTS")
            } else {
                format!("Ubuntu:{v}")
            }
        }
        "alpine" if !major_minor.is_empty() => format!("Alpine:v{major_minor}"),
        "rocky" if !major.is_empty() => format!("Rocky Linux:{major}"),
        "almalinux" if !major.is_empty() => format!("AlmaLinux:{major}"),
        "wolfi" => "Wolfi".to_string(),
        "chainguard" => "Chainguard".to_string(),
        "mageia" if !major.is_empty() => format!("Mageia:{major}"),
        "photon" if !major_minor.is_empty() => format!("Photon OS:{major_minor}"),
        "opensuse-leap" if !major_minor.is_empty() => format!("openSUSE:Leap {major_minor}"),
        _ => return None,
    };
    Some(eco)
}

/// The OSV ecosystem of a language package kind.
pub(crate) fn lang_ecosystem(kind: PackageKind) -> Option<&'static str> {
    Some(match kind {
        PackageKind::Cargo => "crates.io",
        PackageKind::Npm => "npm",
        PackageKind::Pypi => "PyPI",
        PackageKind::Go => "Go",
        PackageKind::Maven => "Maven",
        PackageKind::Gem => "RubyGems",
        PackageKind::Composer => "Packagist",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn os(id: &str, v: &str) -> OsRelease {
        OsRelease {
            id: id.into(),
            version_id: v.into(),
            ..OsRelease::default()
        }
    }

    #[test]
    fn distro_ecosystems() {
        assert_eq!(
            os_ecosystem(&os("debian", "12")).as_deref(),
            Some("Debian:12")
        );
        assert_eq!(
            os_ecosystem(&os("ubuntu", "22.04")).as_deref(),
            Some("Ubuntu:22.04:LTS")
        );
        assert_eq!(
            os_ecosystem(&os("ubuntu", "23.10")).as_deref(),
            Some("Ubuntu:23.10")
        );
        assert_eq!(
            os_ecosystem(&os("alpine", "3.19.1")).as_deref(),
            Some("Alpine:v3.19")
        );
        assert_eq!(
            os_ecosystem(&os("rocky", "9.3")).as_deref(),
            Some("Rocky Linux:9")
        );
        assert_eq!(os_ecosystem(&os("debian", "")), None);
        assert_eq!(os_ecosystem(&os("plan9", "4")), None);
    }
}
