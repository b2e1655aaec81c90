//! Software inventory and vulnerability findings, shared by the scanner, image trust policy and
//! the server.
//!
//! # JSON form
//! A [`Package`] serialises as a plain object (its fields). A [`VulnFinding`] is an OCSF
//! Vulnerability Finding (class 2002, activity 1 "Create"): the OCSF header, `severity_id`,
//! `finding_info` (`uid` = the finding's stable id, `title`), `vulnerabilities` (one Vulnerability
//! Details object: `cve.uid`, `title`, `desc`, `severity`, `is_fix_available`, `references`,
//! `related_vulnerabilities` = aliases, `affected_packages` = the package with `fixed_in_version`),
//! `resources` (the scanned image), then Rampart's own `vulnerability_id`, `package`,
//! `fixed_version`, `status` and `image` beside them.

use std::fmt;
use std::str::FromStr;

use serde::ser::SerializeMap;
use serde::{Deserialize, Serialize, Serializer};

use crate::ocsf::{OcsfClass, OCSF_VERSION, PRODUCT_NAME};
use crate::VERSION;

/// Severity of a vulnerability (or any finding), ordered from least to most severe.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default, Serialize, Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// The source gives no severity.
    #[default]
    Unknown,
    Low,
    Medium,
    High,
    Critical,
}

impl Severity {
    /// All severities, least severe first.
    pub const ALL: [Severity; 5] = [
        Severity::Unknown,
        Severity::Low,
        Severity::Medium,
        Severity::High,
        Severity::Critical,
    ];

    /// OCSF `severity_id`: 0 unknown, 2 low, 3 medium, 4 high, 5 critical.
    pub fn severity_id(&self) -> u8 {
        match self {
            Severity::Unknown => 0,
            Severity::Low => 2,
            Severity::Medium => 3,
            Severity::High => 4,
            Severity::Critical => 5,
        }
    }

    /// The severity of a CVSS base score (CVSS v3 rating scale: 0.1-3.9 low, 4.0-6.9 medium,
    /// 7.0-8.9 high, 9.0-10.0 critical; 0 is unknown).
    pub fn from_cvss(score: f64) -> Severity {
        if score >= 9.0 {
            Severity::Critical
        } else if score >= 7.0 {
            Severity::High
        } else if score >= 4.0 {
            Severity::Medium
        } else if score > 0.0 {
            Severity::Low
        } else {
            Severity::Unknown
        }
    }

    pub fn as_str(&self) -> &'static str {
        match self {
            Severity::Unknown => "unknown",
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The error of parsing a severity name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown severity {0:?} (expected one of unknown, low, medium/moderate, high/important, critical)")]
pub struct UnknownSeverity(pub String);

impl FromStr for Severity {
    type Err = UnknownSeverity;

    /// Case-insensitive; accepts the spellings of GitHub (`moderate`) and Red Hat (`important`).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s.trim().to_ascii_lowercase().as_str() {
            "unknown" | "none" | "unimportant" | "negligible" | "" => Severity::Unknown,
            "low" => Severity::Low,
            "medium" | "moderate" => Severity::Medium,
            "high" | "important" => Severity::High,
            "critical" => Severity::Critical,
            _ => return Err(UnknownSeverity(s.to_string())),
        })
    }
}

/// The packaging system a package comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum PackageKind {
    /// Debian/Ubuntu dpkg.
    Deb,
    /// Alpine apk.
    Apk,
    /// RPM (Red Hat, Rocky, Alma, Fedora, SUSE, Amazon Linux).
    Rpm,
    /// Rust crates.
    Cargo,
    /// npm, yarn and pnpm.
    Npm,
    /// Python distributions.
    Pypi,
    /// Go modules.
    Go,
    /// Java archives (Maven coordinates).
    Maven,
    /// Ruby gems.
    Gem,
    /// PHP Composer packages.
    Composer,
}

impl PackageKind {
    /// The package-url type (`deb`, `apk`, `rpm`, `cargo`, `npm`, `pypi`, `golang`, `maven`,
    /// `gem`, `composer`).
    pub fn purl_type(&self) -> &'static str {
        match self {
            PackageKind::Deb => "deb",
            PackageKind::Apk => "apk",
            PackageKind::Rpm => "rpm",
            PackageKind::Cargo => "cargo",
            PackageKind::Npm => "npm",
            PackageKind::Pypi => "pypi",
            PackageKind::Go => "golang",
            PackageKind::Maven => "maven",
            PackageKind::Gem => "gem",
            PackageKind::Composer => "composer",
        }
    }

    /// True for packages of the operating system (deb, apk, rpm).
    pub fn is_os(&self) -> bool {
        matches!(self, PackageKind::Deb | PackageKind::Apk | PackageKind::Rpm)
    }

    pub fn as_str(&self) -> &'static str {
        match self {
            PackageKind::Deb => "deb",
            PackageKind::Apk => "apk",
            PackageKind::Rpm => "rpm",
            PackageKind::Cargo => "cargo",
            PackageKind::Npm => "npm",
            PackageKind::Pypi => "pypi",
            PackageKind::Go => "go",
            PackageKind::Maven => "maven",
            PackageKind::Gem => "gem",
            PackageKind::Composer => "composer",
        }
    }
}

impl fmt::Display for PackageKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One installed (or locked) package found in an image or a root filesystem.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Package {
    pub kind: PackageKind,
    /// Name as the packaging system spells it (Maven: `group:artifact`).
    pub name: String,
    /// Version as installed, unmodified (dpkg: with epoch, rpm: `[epoch:]version-release`).
    pub version: String,
    /// The OSV ecosystem its advisories are published under (`Debian:12`, `Alpine:v3.19`,
    /// `PyPI`, `npm`, ...); empty when unknown (an OS package of an unrecognised distribution).
    #[serde(default)]
    pub ecosystem: String,
    /// Source package name, for OS packages whose advisories are per source package (dpkg
    /// `Source:`, apk origin, rpm source RPM name); `None` when equal to `name`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_name: Option<String>,
    /// Source package version when it differs from `version` (dpkg `Source: name (version)`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_version: Option<String>,
    /// CPU architecture, for OS packages.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arch: Option<String>,
    /// Declared licences (SPDX expressions or the packager's words).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub licenses: Vec<String>,
    /// Package URL (<https://github.com/package-url/purl-spec>).
    pub purl: String,
    /// The file the package was found in, relative to the image root (`var/lib/dpkg/status`,
    /// `app/package-lock.json`, `usr/local/bin/app`).
    pub path: String,
    /// Diff id of the layer that holds that file; `None` for a root filesystem directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub layer: Option<String>,
    /// Other places the same package (ecosystem, name, version) was found in the image: a
    /// Node app's `package-lock.json` beside `node_modules/x/package.json`, a wheel's
    /// `METADATA` beside a requirements lock. The package is one component; `path` and `layer`
    /// are its primary location (installed metadata before a lock file).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub locations: Vec<PackageLocation>,
}

/// Where a package was also found.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct PackageLocation {
    /// The file, relative to the image root.
    pub path: String,
    /// Diff id of the layer holding it; `None` for a root filesystem directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub layer: Option<String>,
}

impl Package {
    /// The name advisories are indexed by: the source package name for OS packages that have
    /// one, else the package name.
    pub fn advisory_name(&self) -> &str {
        self.source_name.as_deref().unwrap_or(&self.name)
    }
}

/// The scanned image a finding is about (OCSF `resources[]`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageRef {
    /// What the user named (`nginx:1.25`, `container:web`, a path).
    pub name: String,
    /// Image id (`sha256:` of the config), when there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
}

/// A vulnerability affecting one package of one image.
#[derive(Debug, Clone, PartialEq)]
pub struct VulnFinding {
    /// The advisory's id as the record names it (`CVE-2023-4911`, `GHSA-...`, `DSA-...`).
    pub vulnerability_id: String,
    /// Other ids of the same vulnerability (CVE, GHSA, distro ids), merged.
    pub aliases: Vec<String>,
    pub summary: String,
    pub details: String,
    pub severity: Severity,
    /// CVSS base score, when the record has a CVSS vector.
    pub cvss_score: Option<f64>,
    /// The CVSS vector the score comes from.
    pub cvss_vector: Option<String>,
    pub package: Package,
    /// The first version that fixes it for this package; `None` when no fix is published.
    pub fixed_version: Option<String>,
    pub references: Vec<String>,
    pub image: ImageRef,
    /// When the finding was made, nanoseconds since the Unix epoch.
    pub time_ns: u64,
}

impl VulnFinding {
    /// OCSF classification: Vulnerability Finding, Create.
    pub fn ocsf() -> OcsfClass {
        OcsfClass::new(2002, 1, "Create")
    }

    /// A stable id: the same vulnerability in the same package, version and path of the same
    /// image always has the same id, so re-scans are idempotent downstream.
    pub fn uid(&self) -> String {
        // FNV-1a: stable across builds and platforms, unlike std's hasher.
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for part in [
            self.image.id.as_deref().unwrap_or(&self.image.name),
            &self.vulnerability_id,
            self.package.kind.as_str(),
            &self.package.name,
            &self.package.version,
            &self.package.path,
        ] {
            for b in part.bytes().chain(std::iter::once(0)) {
                h ^= u64::from(b);
                h = h.wrapping_mul(0x0100_0000_01b3);
            }
        }
        format!("vuln-{h:016x}")
    }

    /// `fixed` when a fixed version is published, else `unfixed`.
    pub fn status(&self) -> &'static str {
        if self.fixed_version.is_some() {
            "fixed"
        } else {
            "unfixed"
        }
    }
}

#[derive(Serialize)]
struct Cvss<'a> {
    version: &'a str,
    base_score: f64,
    vector_string: &'a str,
}

#[derive(Serialize)]
struct Cve<'a> {
    uid: &'a str,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    cvss: Vec<Cvss<'a>>,
}

#[derive(Serialize)]
struct AffectedPackage<'a> {
    name: &'a str,
    version: &'a str,
    purl: &'a str,
    path: &'a str,
    package_manager: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    fixed_in_version: Option<&'a str>,
}

#[derive(Serialize)]
struct VulnerabilityDetails<'a> {
    cve: Cve<'a>,
    title: &'a str,
    desc: &'a str,
    severity: &'a str,
    is_fix_available: bool,
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    references: &'a [String],
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    related_vulnerabilities: &'a [String],
    affected_packages: [AffectedPackage<'a>; 1],
}

#[derive(Serialize)]
struct Resource<'a> {
    uid: &'a str,
    name: &'a str,
    #[serde(rename = "type")]
    kind: &'static str,
}

impl Serialize for VulnFinding {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let class = VulnFinding::ocsf();
        let uid = self.uid();
        let title = if self.summary.is_empty() {
            self.vulnerability_id.as_str()
        } else {
            self.summary.as_str()
        };
        let cve_uid = std::iter::once(&self.vulnerability_id)
            .chain(&self.aliases)
            .find(|a| a.starts_with("CVE-"))
            .unwrap_or(&self.vulnerability_id);
        let mut m = serializer.serialize_map(None)?;
        m.serialize_entry("class_uid", &class.class_uid)?;
        m.serialize_entry("class_name", class.class_name)?;
        m.serialize_entry("category_uid", &class.category_uid)?;
        m.serialize_entry("category_name", class.category_name)?;
        m.serialize_entry("activity_id", &class.activity_id)?;
        m.serialize_entry("activity_name", class.activity_name)?;
        m.serialize_entry("type_uid", &class.type_uid())?;
        m.serialize_entry("severity_id", &self.severity.severity_id())?;
        m.serialize_entry("time", &(self.time_ns / 1_000_000))?;
        m.serialize_entry(
            "metadata",
            &serde_json::json!({
                "uid": uid,
                "version": OCSF_VERSION,
                "product": {"name": PRODUCT_NAME, "vendor_name": PRODUCT_NAME, "version": VERSION},
            }),
        )?;
        m.serialize_entry(
            "finding_info",
            &serde_json::json!({"uid": uid, "title": format!("{} in {} {}", self.vulnerability_id, self.package.name, self.package.version)}),
        )?;
        let cvss: Vec<Cvss<'_>> = match (&self.cvss_score, &self.cvss_vector) {
            (Some(score), Some(vector)) => vec![Cvss {
                version: vector
                    .strip_prefix("CVSS:")
                    .and_then(|v| v.split('/').next())
                    .unwrap_or("2.0"),
                base_score: *score,
                vector_string: vector,
            }],
            _ => Vec::new(),
        };
        m.serialize_entry(
            "vulnerabilities",
            &[VulnerabilityDetails {
                cve: Cve { uid: cve_uid, cvss },
                title,
                desc: &self.details,
                severity: self.severity.as_str(),
                is_fix_available: self.fixed_version.is_some(),
                references: &self.references,
                related_vulnerabilities: &self.aliases,
                affected_packages: [AffectedPackage {
                    name: &self.package.name,
                    version: &self.package.version,
                    purl: &self.package.purl,
                    path: &self.package.path,
                    package_manager: self.package.kind.as_str(),
                    fixed_in_version: self.fixed_version.as_deref(),
                }],
            }],
        )?;
        m.serialize_entry(
            "resources",
            &[Resource {
                uid: self.image.id.as_deref().unwrap_or(&self.image.name),
                name: &self.image.name,
                kind: "Container Image",
            }],
        )?;
        m.serialize_entry("vulnerability_id", &self.vulnerability_id)?;
        m.serialize_entry("aliases", &self.aliases)?;
        m.serialize_entry("severity", &self.severity)?;
        m.serialize_entry("package", &self.package)?;
        m.serialize_entry("installed_version", &self.package.version)?;
        m.serialize_entry("fixed_version", &self.fixed_version)?;
        m.serialize_entry("status", self.status())?;
        m.serialize_entry("image", &self.image)?;
        m.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn finding() -> VulnFinding {
        VulnFinding {
            vulnerability_id: "DSA-5514-1".into(),
            aliases: vec!["CVE-2023-4911".into()],
            summary: "glibc: buffer overflow in ld.so".into(),
            details: String::new(),
            severity: Severity::High,
            cvss_score: Some(7.8),
            cvss_vector: Some("CVSS:3.1/AV:L/AC:L/PR:L/UI:N/S:U/C:H/I:H/A:H".into()),
            package: Package {
                kind: PackageKind::Deb,
                name: "libc6".into(),
                version: "2.36-9+deb12u1".into(),
                ecosystem: "Debian:12".into(),
                source_name: Some("glibc".into()),
                source_version: None,
                arch: Some("amd64".into()),
                licenses: vec![],
                purl: "pkg:deb/debian/libc6@2.36-9%2Bdeb12u1?arch=amd64&distro=debian-12".into(),
                path: "var/lib/dpkg/status".into(),
                layer: Some("sha256:00".into()),
                locations: Vec::new(),
            },
            fixed_version: Some("2.36-9+deb12u3".into()),
            references: vec![],
            image: ImageRef {
                name: "debian:12".into(),
                id: Some("sha256:abc".into()),
            },
            time_ns: 1_700_000_000_000_000_000,
        }
    }

    #[test]
    fn ocsf_json_names_vulnerability_package_and_fix() {
        let v = serde_json::to_value(finding()).expect("json");
        assert_eq!(v["class_uid"], 2002);
        assert_eq!(v["type_uid"], 200_201);
        assert_eq!(v["severity_id"], 4);
        assert_eq!(v["vulnerabilities"][0]["cve"]["uid"], "CVE-2023-4911");
        assert_eq!(v["vulnerabilities"][0]["cve"]["cvss"][0]["version"], "3.1");
        let p = &v["vulnerabilities"][0]["affected_packages"][0];
        assert_eq!(p["name"], "libc6");
        assert_eq!(p["fixed_in_version"], "2.36-9+deb12u3");
        assert_eq!(v["vulnerability_id"], "DSA-5514-1");
        assert_eq!(v["installed_version"], "2.36-9+deb12u1");
        assert_eq!(v["status"], "fixed");
        assert_eq!(v["resources"][0]["uid"], "sha256:abc");
    }

    #[test]
    fn uid_is_stable_and_distinguishes_packages() {
        let a = finding();
        let mut b = finding();
        assert_eq!(a.uid(), b.uid());
        b.package.path = "other".into();
        assert_ne!(a.uid(), b.uid());
    }

    #[test]
    fn severity_parsing_and_order() {
        assert_eq!("Moderate".parse::<Severity>(), Ok(Severity::Medium));
        assert_eq!("IMPORTANT".parse::<Severity>(), Ok(Severity::High));
        assert!("bad".parse::<Severity>().is_err());
        assert!(Severity::Critical > Severity::High);
        assert_eq!(Severity::from_cvss(9.8), Severity::Critical);
        assert_eq!(Severity::from_cvss(0.0), Severity::Unknown);
    }
}
