//! Inventory: what a host is and can protect, which containers run on it with which images and
//! posture, and what is inside those images. Agents send these periodically (`inventory.host`,
//! `inventory.container`, `inventory.image` events) so that the server knows the fleet without
//! asking it: the dashboard shows them, and the server re-matches stored image inventories when
//! its vulnerability database changes.

use serde::{Deserialize, Serialize};

use crate::vuln::{Package, Severity};

/// `inventory.host`: the host's software and the protections it can give (from
/// `rampart audit host`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostInventory {
    /// The agent's version.
    pub agent_version: String,
    /// `uname -r`.
    pub kernel: String,
    /// `PRETTY_NAME` of `/etc/os-release`, when readable.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub os: String,
    /// How the sensor collects events on this host (`ebpf`, `proc-connector`, `none`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub sensor: String,
    /// Score of the host audit, 0-100, when the audit ran.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audit_score: Option<u8>,
    /// What this host can enforce, one entry per protection.
    #[serde(default)]
    pub protections: Vec<Protection>,
    /// Containers running when the inventory was taken.
    #[serde(default)]
    pub containers_running: u32,
    /// Their ids: the server drops containers of this host it still counts as running that
    /// are missing here (a stop event it never received).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub containers: Vec<String>,
}

/// One protection a host can or cannot give (`user_namespaces`, `seccomp`, `apparmor`,
/// `selinux`, `bpf_lsm`, `cgroup_v2`, `bpf_kill`, `bpf_net_policy`, ...).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Protection {
    pub name: String,
    pub available: bool,
    /// Why (the evidence the audit or the probe found).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub detail: String,
}

/// Whether an image's signature was checked, and how that went.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SignatureState {
    /// A signature verified against the trust policy.
    Verified,
    /// No signature was found.
    Unsigned,
    /// A signature was found and did not verify (tampered image or wrong key).
    Invalid,
    /// Not checked (no trust policy on this host, or the check failed to run).
    #[default]
    Unknown,
}

impl SignatureState {
    pub fn as_str(&self) -> &'static str {
        match self {
            SignatureState::Verified => "verified",
            SignatureState::Unsigned => "unsigned",
            SignatureState::Invalid => "invalid",
            SignatureState::Unknown => "unknown",
        }
    }
}

/// Vulnerability counts by severity.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VulnCounts {
    #[serde(default)]
    pub critical: u32,
    #[serde(default)]
    pub high: u32,
    #[serde(default)]
    pub medium: u32,
    #[serde(default)]
    pub low: u32,
    #[serde(default)]
    pub unknown: u32,
}

impl VulnCounts {
    /// Counts one finding of `severity`.
    pub fn add(&mut self, severity: Severity) {
        match severity {
            Severity::Critical => self.critical += 1,
            Severity::High => self.high += 1,
            Severity::Medium => self.medium += 1,
            Severity::Low => self.low += 1,
            Severity::Unknown => self.unknown += 1,
        }
    }

    pub fn total(&self) -> u32 {
        self.critical + self.high + self.medium + self.low + self.unknown
    }
}

/// `inventory.container`: a running container's image and posture. The container itself is the
/// event's `container` facet.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerInventory {
    /// The image as the container names it (`nginx:1.25`).
    pub image: String,
    /// Image id (`sha256:` of the image config): the key image inventories are cached by.
    pub image_id: String,
    /// Registry digest (`repo@sha256:...`), when the image came from a registry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repo_digest: Option<String>,
    #[serde(default)]
    pub signature: SignatureState,
    /// Who signed it (key or identity), when verified.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signer: Option<String>,
    /// Vulnerabilities of the image against the agent's database.
    #[serde(default)]
    pub vulnerabilities: VulnCounts,
    /// Version of the vulnerability database the counts come from.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub db_version: String,
    /// Score of `rampart audit containers` for this container, 0-100.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compliance_score: Option<u8>,
    /// Failed compliance checks.
    #[serde(default)]
    pub compliance_failed: u32,
    /// The container's addresses on its networks (what the server names a remote container
    /// by in a plaintext east-west alert: docs/mesh.md).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub addresses: Vec<std::net::IpAddr>,
}

/// `inventory.image`: the packages of one image (its SBOM in Rampart's package form), sent when
/// an agent first sees the image id.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageInventory {
    /// The image as it was named (`nginx:1.25`).
    pub image: String,
    /// Image id (`sha256:` of the image config).
    pub image_id: String,
    /// The OS of the image (`debian 12`), when recognised.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub os: String,
    pub packages: Vec<Package>,
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::{Device, Event, EventId, EventKind, PackageKind};

    #[test]
    fn inventory_events_survive_their_json_form() {
        let device = Arc::new(Device {
            hostname: "vps-1".into(),
            region: Some("eu-de".into()),
        });
        let mut host = Event::new(
            EventId::new(1, 1),
            5,
            EventKind::InventoryHost,
            device.clone(),
        );
        host.host_inventory = Some(Box::new(HostInventory {
            agent_version: "0.1.0".into(),
            kernel: "6.18.0".into(),
            protections: vec![Protection {
                name: "bpf_lsm".into(),
                available: false,
                detail: "lsm programs refused (lockdown)".into(),
            }],
            ..HostInventory::default()
        }));
        let mut image = Event::new(EventId::new(1, 2), 6, EventKind::InventoryImage, device);
        image.image_inventory = Some(Box::new(ImageInventory {
            image: "app:1".into(),
            image_id: "sha256:ab".into(),
            os: "debian 12".into(),
            packages: vec![Package {
                kind: PackageKind::Deb,
                name: "openssl".into(),
                version: "3.0.11-1~deb12u2".into(),
                ecosystem: "Debian:12".into(),
                source_name: None,
                source_version: None,
                arch: None,
                licenses: vec![],
                purl: "pkg:deb/debian/openssl@3.0.11-1~deb12u2".into(),
                path: "var/lib/dpkg/status".into(),
                layer: None,
                locations: Vec::new(),
            }],
        }));
        for e in [host, image] {
            let json = serde_json::to_value(&e).expect("serialise");
            assert_eq!(json["class_uid"], 5001);
            assert_eq!(json["category_name"], "Discovery");
            let back: Event = serde_json::from_value(json).expect("deserialise");
            assert_eq!(back.host_inventory, e.host_inventory);
            assert_eq!(back.image_inventory, e.image_inventory);
        }
    }

    #[test]
    fn vuln_counts_count_by_severity() {
        let mut c = VulnCounts::default();
        for s in [
            Severity::Critical,
            Severity::High,
            Severity::High,
            Severity::Unknown,
        ] {
            c.add(s);
        }
        assert_eq!((c.critical, c.high, c.unknown, c.total()), (1, 2, 1, 4));
    }
}
