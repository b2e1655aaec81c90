//! Version comparison with each packaging system's own rules.
//!
//! Every comparator is proven against the upstream project's published test vectors, reproduced
//! under `tests/data/versions/` and run by `tests/versions.rs`: dpkg (`Dpkg_Version.t`),
//! apk-tools (`test/version.data`), rpm (`tests/rpmvercmp.at`), pypa/packaging
//! (`tests/test_version.py`), node-semver (`test/fixtures/comparisons.js`), golang/mod
//! (`semver/semver_test.go`) and Maven (`ComparableVersionTest`).

use std::cmp::Ordering;

mod apk;
mod dpkg;
mod gem;
mod maven;
mod pep440;
mod rpm;
mod semver;

pub use dpkg::DpkgVersion;
pub use gem::GemVersion;
pub use maven::MavenVersion;
pub use pep440::Pep440;
pub use semver::Semver;

/// A version that its scheme cannot parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {scheme} version {version:?}: {reason}")]
pub struct VersionError {
    pub scheme: &'static str,
    pub version: String,
    pub reason: String,
}

impl VersionError {
    pub(crate) fn new(scheme: &'static str, version: &str, reason: &str) -> VersionError {
        VersionError {
            scheme,
            version: version.to_string(),
            reason: reason.to_string(),
        }
    }
}

/// A version ordering.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scheme {
    /// Debian and Ubuntu (dpkg).
    Dpkg,
    /// Alpine, Wolfi, Chainguard (apk-tools).
    Apk,
    /// RPM distributions.
    Rpm,
    /// Python (PEP 440).
    Pep440,
    /// SemVer 2.0 (npm, crates.io, and OSV `SEMVER` ranges).
    Semver,
    /// Go modules (`golang.org/x/mod/semver`; a missing `v` is added).
    Go,
    /// Maven `ComparableVersion`.
    Maven,
    /// RubyGems `Gem::Version`.
    Gem,
}

impl Scheme {
    /// The ordering OSV's `ECOSYSTEM` ranges use for `ecosystem` (`Debian:12`, `PyPI`, ...);
    /// `None` for ecosystems Rampart does not compare.
    pub fn for_ecosystem(ecosystem: &str) -> Option<Scheme> {
        let base = ecosystem.split(':').next().unwrap_or(ecosystem);
        Some(match base {
            "Debian" | "Ubuntu" => Scheme::Dpkg,
            "Alpine" | "Wolfi" | "Chainguard" => Scheme::Apk,
            "Rocky Linux" | "AlmaLinux" | "Red Hat" | "openSUSE" | "SUSE" | "Mageia"
            | "Photon OS" | "openEuler" => Scheme::Rpm,
            "PyPI" => Scheme::Pep440,
            "npm" | "crates.io" | "NuGet" | "Hex" | "Pub" | "Packagist" | "SwiftURL" => {
                Scheme::Semver
            }
            "Go" => Scheme::Go,
            "Maven" => Scheme::Maven,
            "RubyGems" => Scheme::Gem,
            _ => return None,
        })
    }

    pub fn as_str(&self) -> &'static str {
        match self {
            Scheme::Dpkg => "dpkg",
            Scheme::Apk => "apk",
            Scheme::Rpm => "rpm",
            Scheme::Pep440 => "PEP 440",
            Scheme::Semver => "semver",
            Scheme::Go => "go",
            Scheme::Maven => "maven",
            Scheme::Gem => "rubygems",
        }
    }

    /// Compares `a` and `b`. Fails when either does not parse; apk, rpm and Go order invalid
    /// versions too (as their tools do), so they never fail.
    pub fn compare(&self, a: &str, b: &str) -> Result<Ordering, VersionError> {
        Ok(match self {
            Scheme::Dpkg => DpkgVersion::parse(a)?.cmp(&DpkgVersion::parse(b)?),
            Scheme::Apk => apk::compare(a, b),
            Scheme::Rpm => rpm::compare(a, b),
            Scheme::Pep440 => Pep440::parse(a)?.cmp(&Pep440::parse(b)?),
            Scheme::Semver => Semver::parse(a)?.cmp(&Semver::parse(b)?),
            Scheme::Go => semver::go_compare(&go_v(a), &go_v(b)),
            Scheme::Maven => MavenVersion::parse(a)?.cmp(&MavenVersion::parse(b)?),
            Scheme::Gem => GemVersion::parse(a)?.cmp(&GemVersion::parse(b)?),
        })
    }

    /// Checks that `v` parses in this scheme.
    pub fn validate(&self, v: &str) -> Result<(), VersionError> {
        match self {
            Scheme::Dpkg => DpkgVersion::parse(v).map(drop),
            Scheme::Apk if apk::is_valid(v) => Ok(()),
            Scheme::Apk => Err(VersionError::new("apk", v, "not an apk version")),
            Scheme::Rpm if !v.trim().is_empty() => Ok(()),
            Scheme::Rpm => Err(VersionError::new("rpm", v, "empty")),
            Scheme::Pep440 => Pep440::parse(v).map(drop),
            Scheme::Semver => Semver::parse(v).map(drop),
            Scheme::Go if semver::go_parse(&go_v(v)).is_some() => Ok(()),
            Scheme::Go => Err(VersionError::new("go", v, "not a Go module version")),
            Scheme::Maven => MavenVersion::parse(v).map(drop),
            Scheme::Gem => GemVersion::parse(v).map(drop),
        }
    }
}

/// Go versions in OSV records lack the `v` Go requires; binaries' build info has it.
fn go_v(v: &str) -> String {
    let v = v.trim();
    if v.starts_with('v') {
        v.to_string()
    } else if let Some(rest) = v.strip_prefix("go") {
        // The standard library: `go1.21.3`.
        format!("v{rest}")
    } else {
        format!("v{v}")
    }
}

/// Compares with `go`'s `semver.Compare` exactly (the `v` is required).
pub fn go_compare(a: &str, b: &str) -> Ordering {
    semver::go_compare(a, b)
}

/// Compares with apk-tools' `apk_version_compare` exactly.
pub fn apk_compare(a: &str, b: &str) -> Ordering {
    apk::compare(a, b)
}

/// Compares with rpm's `rpmvercmp` exactly (one version or release string, no epoch split).
pub fn rpmvercmp(a: &str, b: &str) -> Ordering {
    rpm::rpmvercmp(a, b)
}

/// Compares two `[epoch:]version[-release]` strings as rpm does.
pub fn rpm_compare(a: &str, b: &str) -> Ordering {
    rpm::compare(a, b)
}
