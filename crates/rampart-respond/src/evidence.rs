//! Where forensic bundles go after they are written: the agent's server, through an
//! [`EvidenceSink`] the agent provides (the responder does not know how the agent talks to its
//! server). The receipt is kept next to the bundle (`<bundle>.receipt.json`, 0600) and in the
//! `response.action` event.

use std::path::{Path, PathBuf};

/// What the responder tells the sink about a bundle.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EvidenceAbout {
    /// The bundle's file name.
    pub name: String,
    /// The container's name (or id).
    pub container: String,
    /// The playbook run (`playbook@alert-id`).
    pub incident: String,
    /// The alert that triggered it.
    pub alert_id: String,
}

/// The server's receipt for a bundle.
#[derive(Debug, Clone, PartialEq)]
pub struct EvidenceReceipt {
    /// SHA-256 of what the server stored, hex, as the server computed it.
    pub sha256: String,
    pub size: u64,
    /// When the server had the whole bundle (its clock), ns since the epoch.
    pub received_ns: u64,
    /// The receipt as the server sent it, kept verbatim next to the bundle.
    pub raw: serde_json::Value,
}

/// Why a sink gave up on a bundle, after every retry: the sink's own error, kept whole (the
/// responder does not know how the sink talks to its server; callers may downcast it). Its
/// text is what the response record's `upload_error` says.
pub type UploadError = Box<dyn std::error::Error + Send + Sync>;

/// Sends bundles off the host. `upload` may retry as it sees fit and blocks until it has a
/// receipt or has given up; an `Err` says why, after every retry.
pub trait EvidenceSink: Send + Sync + std::fmt::Debug {
    fn upload(&self, bundle: &Path, about: &EvidenceAbout) -> Result<EvidenceReceipt, UploadError>;
}

/// Where the receipt of `bundle` is kept.
pub fn receipt_path(bundle: &Path) -> PathBuf {
    let mut name = bundle.file_name().unwrap_or_default().to_os_string();
    name.push(".receipt.json");
    bundle.with_file_name(name)
}

/// Writes the receipt next to the bundle, 0600.
pub(crate) fn write_receipt(bundle: &Path, r: &EvidenceReceipt) -> std::io::Result<PathBuf> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let path = receipt_path(bundle);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&path)?;
    let text = serde_json::to_vec_pretty(&r.raw).map_err(std::io::Error::other)?;
    f.write_all(&text)?;
    f.write_all(b"\n")?;
    f.sync_all()?;
    Ok(path)
}
