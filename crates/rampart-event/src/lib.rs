//! Rampart's data model.
//!
//! Every capability of Rampart speaks in these types: the sensor produces [`Event`]s, the rule
//! engine turns them into [`Alert`]s, the scanners and auditors produce findings, and the server
//! stores all of them. The JSON form is aligned with OCSF (Open Cybersecurity Schema Framework)
//! 1.3: every event carries `class_uid`, `activity_id`, `type_uid`, `category_uid`, `time`
//! (milliseconds) and `metadata.uid`, so that any SIEM that understands OCSF can take Rampart's
//! output; Rampart's own fields (`type`, `container`, `process.ancestors`, ...) sit beside them.
//! `docs/events.md` documents every field.
//!
//! This crate does no I/O.

mod alert;
mod compliance;
mod container;
mod event;
mod inventory;
mod ocsf;
mod output_fields;
mod process;
mod sensor;
mod vuln;

pub use alert::{Alert, Priority, UnknownPriority};
pub use compliance::{
    ComplianceFinding, ComplianceResource, ComplianceStatus, ResourceKind, UnknownComplianceStatus,
};
pub use container::{Container, ContainerRuntime};
pub use event::{
    AuthInfo, AuthOutcome, Device, DnsAnswer, DnsInfo, Endpoint, Event, EventId, EventKind,
    EvidenceInfo, ExitInfo, FileInfo, LifecycleInfo, MeshEdge, MeshReport, MeshService,
    NetDirection, NetInfo, PayloadInfo, PolicyInfo, PrivilegeInfo, ResourceInfo, ResponseInfo,
    SensorStats, SocketInfo,
};
pub use inventory::{
    ContainerInventory, HostInventory, ImageInventory, Protection, SignatureState, VulnCounts,
};
pub use ocsf::{OcsfClass, OCSF_VERSION, PRODUCT_NAME};
pub use output_fields::OutputFields;
pub use process::{Ancestor, Process};
pub use sensor::{Origin, SensorEvent};
pub use vuln::{
    ImageRef, Package, PackageKind, PackageLocation, Severity, UnknownSeverity, VulnFinding,
};

/// Rampart's version, as shown in `metadata.product.version` of every event.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Nanoseconds since the Unix epoch (0 when the clock reads before 1970): the one clock of
/// event, record and decision times.
pub fn now_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// A random number naming one run of a process, the first half of its [`EventId`]s (so that
/// two runs never reuse an id): from `/dev/urandom`, else the clock and the pid.
pub fn instance_id() -> u64 {
    let mut b = [0u8; 8];
    if std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut b))
        .is_err()
    {
        return now_ns() ^ u64::from(std::process::id()).rotate_left(32);
    }
    u64::from_ne_bytes(b)
}

/// This host's name as the kernel has it (`/proc/sys/kernel/hostname`, the UTS name of the
/// caller's namespace), or `localhost` where it cannot be read: the one source of the host name
/// in events, forensic bundles and the server's certificate.
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "localhost".into())
}
