//! Compliance findings: the outcome of one hardening check (CIS Docker Benchmark or Rampart's
//! own) on one host, Docker daemon, container or image.
//!
//! # JSON form
//! A [`ComplianceFinding`] is an OCSF Compliance Finding (class 2003, activity 1 "Create"): the
//! OCSF header, `severity_id`, `finding_info` (`uid` = the finding's stable id, `title`, `desc`
//! = the evidence), `compliance` (`control` = the check id, `standards` = the benchmark,
//! `status`/`status_id` = Pass 1, Warning 2, Fail 3, Other 99 for "Not Applicable",
//! `status_detail` = the evidence), `remediation.desc`, `resources` (what was checked) and
//! `evidences` (one Evidence Artifacts object whose `data` holds the evidence text), then
//! Rampart's own fields beside them: `check_id`, `standard`, `title`, `status`, `severity`,
//! `evidence`, `remediation`, `resource`. Deserialising reads Rampart's own fields back, so a
//! finding survives a round trip through its JSON form.

use std::fmt;
use std::str::FromStr;

use serde::ser::SerializeMap;
use serde::{Deserialize, Serialize, Serializer};

use crate::ocsf::{OcsfClass, OCSF_VERSION, PRODUCT_NAME};
use crate::vuln::Severity;
use crate::VERSION;

/// The outcome of a check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ComplianceStatus {
    /// The check was made and the subject complies.
    Pass,
    /// The check could not be decided, or the subject complies only partly; a person should
    /// look.
    Warning,
    /// The check was made and the subject does not comply.
    Fail,
    /// The check does not apply to this subject (for example an AppArmor check on a host
    /// without AppArmor); the evidence says why.
    NotApplicable,
}

impl ComplianceStatus {
    /// OCSF `compliance.status_id`: 1 Pass, 2 Warning, 3 Fail, 99 Other (not applicable).
    pub fn status_id(&self) -> u8 {
        match self {
            ComplianceStatus::Pass => 1,
            ComplianceStatus::Warning => 2,
            ComplianceStatus::Fail => 3,
            ComplianceStatus::NotApplicable => 99,
        }
    }

    /// OCSF `compliance.status` caption.
    pub fn caption(&self) -> &'static str {
        match self {
            ComplianceStatus::Pass => "Pass",
            ComplianceStatus::Warning => "Warning",
            ComplianceStatus::Fail => "Fail",
            ComplianceStatus::NotApplicable => "Not Applicable",
        }
    }

    pub fn as_str(&self) -> &'static str {
        match self {
            ComplianceStatus::Pass => "pass",
            ComplianceStatus::Warning => "warning",
            ComplianceStatus::Fail => "fail",
            ComplianceStatus::NotApplicable => "not_applicable",
        }
    }
}

impl fmt::Display for ComplianceStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The error of parsing a compliance status name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown compliance status {0:?} (expected pass, warning, fail or not_applicable)")]
pub struct UnknownComplianceStatus(pub String);

impl FromStr for ComplianceStatus {
    type Err = UnknownComplianceStatus;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(
            match s
                .trim()
                .to_ascii_lowercase()
                .replace([' ', '-'], "_")
                .as_str()
            {
                "pass" => ComplianceStatus::Pass,
                "warning" | "warn" => ComplianceStatus::Warning,
                "fail" => ComplianceStatus::Fail,
                "not_applicable" | "n/a" => ComplianceStatus::NotApplicable,
                _ => return Err(UnknownComplianceStatus(s.to_string())),
            },
        )
    }
}

/// What kind of thing a check was made on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ResourceKind {
    /// The machine: kernel, sysctls, LSMs, cgroups, files.
    Host,
    /// The Docker daemon's configuration.
    DockerDaemon,
    /// A container (running or not).
    Container,
    /// A container image.
    Image,
}

impl ResourceKind {
    /// OCSF `resources[].type`.
    pub fn ocsf_type(&self) -> &'static str {
        match self {
            ResourceKind::Host => "Host",
            ResourceKind::DockerDaemon => "Docker Daemon",
            ResourceKind::Container => "Container",
            ResourceKind::Image => "Container Image",
        }
    }

    pub fn as_str(&self) -> &'static str {
        match self {
            ResourceKind::Host => "host",
            ResourceKind::DockerDaemon => "docker_daemon",
            ResourceKind::Container => "container",
            ResourceKind::Image => "image",
        }
    }
}

/// The subject of a finding (OCSF `resources[]`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ComplianceResource {
    pub kind: ResourceKind,
    /// Stable identity: host name, daemon id, container id, image id.
    pub uid: String,
    /// What a person calls it: host name, container name, image reference.
    pub name: String,
}

/// The outcome of one hardening check on one subject.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ComplianceFinding {
    /// The check: the CIS Docker Benchmark number (`5.4`, `2.14`) where the benchmark has the
    /// check, else Rampart's id (`RAMPART-C-USERNS`).
    pub check_id: String,
    /// The benchmark the id belongs to (`CIS Docker Benchmark v1.6.0`); `None` for Rampart's
    /// own checks.
    pub standard: Option<String>,
    /// One line naming what is checked ("Ensure that privileged containers are not used").
    pub title: String,
    pub status: ComplianceStatus,
    /// How much a failure of this check matters on its own.
    pub severity: Severity,
    /// What was measured, with its source (`/proc/4711/status NoNewPrivs: 0`,
    /// `HostConfig.Privileged=true`): enough for a person to verify the finding.
    pub evidence: String,
    /// The exact change that fixes a failure: a `docker run` flag, a daemon.json key, a sysctl.
    pub remediation: String,
    pub resource: ComplianceResource,
    /// When the check was made, nanoseconds since the Unix epoch.
    pub time_ns: u64,
}

impl ComplianceFinding {
    /// OCSF classification: Compliance Finding, Create.
    pub fn ocsf() -> OcsfClass {
        OcsfClass::new(2003, 1, "Create")
    }

    /// A stable id: the same check on the same subject always has the same id (whatever its
    /// outcome), so repeated audits update one finding downstream instead of adding one.
    pub fn uid(&self) -> String {
        // FNV-1a: stable across builds and platforms, unlike std's hasher.
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for part in [
            self.resource.kind.as_str(),
            &self.resource.uid,
            self.standard.as_deref().unwrap_or("rampart"),
            &self.check_id,
        ] {
            for b in part.bytes().chain(std::iter::once(0)) {
                h ^= u64::from(b);
                h = h.wrapping_mul(0x0100_0000_01b3);
            }
        }
        format!("compliance-{h:016x}")
    }
}

#[derive(Serialize)]
struct Resource<'a> {
    uid: &'a str,
    name: &'a str,
    #[serde(rename = "type")]
    kind: &'static str,
}

impl Serialize for ComplianceFinding {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let class = ComplianceFinding::ocsf();
        let uid = self.uid();
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
            &serde_json::json!({"uid": uid, "title": self.title, "desc": self.evidence}),
        )?;
        let mut compliance = serde_json::json!({
            "control": self.check_id,
            "status": self.status.caption(),
            "status_id": self.status.status_id(),
            "status_detail": self.evidence,
        });
        if let Some(standard) = &self.standard {
            compliance["standards"] = serde_json::json!([standard]);
        }
        m.serialize_entry("compliance", &compliance)?;
        m.serialize_entry(
            "remediation",
            &serde_json::json!({"desc": self.remediation}),
        )?;
        m.serialize_entry(
            "resources",
            &[Resource {
                uid: &self.resource.uid,
                name: &self.resource.name,
                kind: self.resource.kind.ocsf_type(),
            }],
        )?;
        m.serialize_entry(
            "evidences",
            &serde_json::json!([{"data": {"evidence": self.evidence}}]),
        )?;
        m.serialize_entry("check_id", &self.check_id)?;
        m.serialize_entry("standard", &self.standard)?;
        m.serialize_entry("title", &self.title)?;
        m.serialize_entry("status", &self.status)?;
        m.serialize_entry("severity", &self.severity)?;
        m.serialize_entry("evidence", &self.evidence)?;
        m.serialize_entry("remediation_text", &self.remediation)?;
        m.serialize_entry("resource", &self.resource)?;
        m.serialize_entry("time_ns", &self.time_ns)?;
        m.end()
    }
}

/// Rampart's own fields of the JSON form, for deserialising.
#[derive(Deserialize)]
struct Stored {
    check_id: String,
    #[serde(default)]
    standard: Option<String>,
    title: String,
    status: ComplianceStatus,
    severity: Severity,
    evidence: String,
    remediation_text: String,
    resource: ComplianceResource,
    #[serde(default)]
    time_ns: u64,
}

impl<'de> Deserialize<'de> for ComplianceFinding {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = Stored::deserialize(deserializer)?;
        Ok(ComplianceFinding {
            check_id: s.check_id,
            standard: s.standard,
            title: s.title,
            status: s.status,
            severity: s.severity,
            evidence: s.evidence,
            remediation: s.remediation_text,
            resource: s.resource,
            time_ns: s.time_ns,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn finding() -> ComplianceFinding {
        ComplianceFinding {
            check_id: "5.5".into(),
            standard: Some("CIS Docker Benchmark v1.6.0".into()),
            title: "Ensure that privileged containers are not used".into(),
            status: ComplianceStatus::Fail,
            severity: Severity::Critical,
            evidence: "HostConfig.Privileged=true".into(),
            remediation: "remove --privileged from docker run".into(),
            resource: ComplianceResource {
                kind: ResourceKind::Container,
                uid: "3715285be4b1".into(),
                name: "web".into(),
            },
            time_ns: 1_700_000_000_000_000_000,
        }
    }

    #[test]
    fn ocsf_json_has_compliance_control_status_and_remediation() {
        let v = serde_json::to_value(finding()).expect("json");
        assert_eq!(v["class_uid"], 2003);
        assert_eq!(v["category_uid"], 2);
        assert_eq!(v["type_uid"], 200_301);
        assert_eq!(v["severity_id"], 5);
        assert_eq!(v["time"], 1_700_000_000_000_i64);
        assert_eq!(v["compliance"]["control"], "5.5");
        assert_eq!(v["compliance"]["status"], "Fail");
        assert_eq!(v["compliance"]["status_id"], 3);
        assert_eq!(
            v["compliance"]["standards"][0],
            "CIS Docker Benchmark v1.6.0"
        );
        assert_eq!(
            v["remediation"]["desc"],
            "remove --privileged from docker run"
        );
        assert_eq!(v["resources"][0]["type"], "Container");
        assert_eq!(
            v["evidences"][0]["data"]["evidence"],
            "HostConfig.Privileged=true"
        );
        assert_eq!(v["metadata"]["uid"], v["finding_info"]["uid"]);
    }

    #[test]
    fn round_trips_through_json() {
        let f = finding();
        let text = serde_json::to_string(&f).expect("json");
        let back: ComplianceFinding = serde_json::from_str(&text).expect("parse");
        assert_eq!(back, f);
    }

    #[test]
    fn rampart_checks_have_no_standards_and_not_applicable_is_other() {
        let mut f = finding();
        f.standard = None;
        f.status = ComplianceStatus::NotApplicable;
        let v = serde_json::to_value(&f).expect("json");
        assert!(v["compliance"].get("standards").is_none());
        assert_eq!(v["compliance"]["status_id"], 99);
        assert_eq!(v["compliance"]["status"], "Not Applicable");
    }

    #[test]
    fn uid_depends_on_subject_and_check_not_outcome() {
        let a = finding();
        let mut b = finding();
        b.status = ComplianceStatus::Pass;
        b.evidence = "HostConfig.Privileged=false".into();
        assert_eq!(a.uid(), b.uid());
        b.resource.uid = "other".into();
        assert_ne!(a.uid(), b.uid());
    }

    #[test]
    fn status_parsing() {
        assert_eq!(
            "Not Applicable".parse(),
            Ok(ComplianceStatus::NotApplicable)
        );
        assert_eq!("FAIL".parse(), Ok(ComplianceStatus::Fail));
        assert!("maybe".parse::<ComplianceStatus>().is_err());
    }
}
