//! The fleet configuration bundle: rule sets, threat lists, the network/exec policy,
//! playbooks and the GeoIP database the server publishes to every agent, signed and
//! versioned like the vulnerability database bundle (`crate::vulndb`).
//!
//! # Source directory (`rampart server config publish DIR`)
//! ```text
//! DIR/rules/*.yaml       rule files (Falco format), loaded after the agent's own rules
//! DIR/lists/*.yaml       rule files holding lists and macros (threat lists: miner pools,
//!                        bad domains), loaded before the agent's own rules
//! DIR/policy/*.yaml      at most one network/exec policy (docs/policy.md); it replaces the
//!                        agent's own `policy:`
//! DIR/playbooks/*.yaml   playbook files (docs/response.md), run besides the agent's own
//! DIR/geoip/*.mmdb       at most one MaxMind-format country database; it replaces the
//!                        agent's own `geoip_db:`
//! ```
//! Anything else in `DIR` (another directory, a file at its top, a name starting with `.`, a
//! subdirectory of a section) is refused with its path, so a typo never publishes a bundle
//! that silently lacks a file.
//!
//! # Files in `<data_dir>/fleetconfig/`
//! ```text
//! manifest.json             SignedManifest (crate::vulndb): the ConfigManifest's JSON text,
//!                           exactly as signed, and its signature
//! bundle-<sha256>.json.zst  the payload: {"files": {"rules/x.yaml": "<hex>", ...}}, zstd
//! ```
//! [`publish`] writes the payload first and the manifest last (each through a temporary file
//! renamed into place); the previous payload stays until the next publish, for agents that
//! read the old manifest.
//!
//! # Versions and rollback
//! Versions are integers allocated in the control database (`meta.fleet_config_version`):
//! each publish takes one more than the highest ever allocated, or the operator's
//! `--version`, which must be higher. An agent applies only a version above the one it runs:
//! an older or equal version (a restored data directory, a replayed manifest) is refused.
//!
//! # Signature
//! As the vulnerability bundle: the manifest's JSON text is signed with the CA key (ECDSA
//! P-256, SHA-256); agents check it against the CA pinned at enrollment, then the payload's
//! size and SHA-256, the decompressed size, and every file's SHA-256 against the manifest.
//! The manifest has a `kind` and refuses unknown fields, so a signed vulnerability manifest
//! is never read as a configuration manifest (and the reverse: its `version` is a number).
//!
//! # Routes (`crate::api`)
//! `GET /api/v1/config/manifest` (agent certificate) answers `manifest.json` (404 when none)
//! with the version as `ETag`. The agent's request reports what it runs: [`VERSION_HEADER`],
//! [`APPLIED_HEADER`] and, after a refusal, [`REFUSED_HEADER`]; the server keeps the last
//! report per agent ([`ConfigReport`]). `GET /api/v1/config/bundle/<sha256>` (agent
//! certificate) answers the payload. `GET /api/v1/config/status` (read-only token) lists the
//! published version and every agent's report ([`status`]).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::ca::{Ca, CaError};
use crate::control::{Control, ControlError};
use crate::vulndb::{sha256_hex, write_atomic, BundleError, SignedManifest};

/// `kind` of every configuration manifest.
pub const KIND: &str = "rampart-fleet-config";
/// Version of the manifest format.
pub const CONFIG_FORMAT: u32 = 1;
/// The largest payload an agent accepts, decompressed (hex: files of at most half of it; a
/// country GeoIP database is ~10 MiB). An agent holds about twice this while it installs one.
pub const MAX_PAYLOAD_BYTES: u64 = 64 << 20;
/// The most files a bundle holds.
pub const MAX_FILES: usize = 1024;
/// The sections of a bundle (top-level directories of the source).
pub const SECTIONS: [&str; 5] = ["rules", "lists", "policy", "playbooks", "geoip"];
/// Request header: the configuration version the agent runs (0: none from the server).
pub const VERSION_HEADER: &str = "x-rampart-config-version";
/// Request header: when the agent applied it, nanoseconds since the epoch.
pub const APPLIED_HEADER: &str = "x-rampart-config-applied";
/// Request header: why the agent refused the last bundle it was offered (absent otherwise).
pub const REFUSED_HEADER: &str = "x-rampart-config-refused";
/// The longest refusal reason the server stores.
pub const MAX_REFUSED_BYTES: usize = 1024;

/// What a configuration bundle is: signed by the CA.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigManifest {
    /// Always [`KIND`].
    pub kind: String,
    /// [`CONFIG_FORMAT`].
    pub format: u32,
    /// Higher for every publish (see the module docs).
    pub version: u64,
    /// SHA-256 (hex) of the payload (compressed).
    pub sha256: String,
    /// Payload size in bytes (compressed).
    pub size: u64,
    /// Size of the decompressed payload in bytes.
    pub payload_size: u64,
    /// When it was published, nanoseconds since the epoch.
    pub created_ns: u64,
    /// The files, by path (`section/name`).
    pub files: Vec<FileEntry>,
}

/// One file of a bundle.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileEntry {
    /// `section/name`, see [`check_path`].
    pub path: String,
    /// SHA-256 (hex) of its content.
    pub sha256: String,
    pub size: u64,
}

/// The payload before compression.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Payload {
    /// Path to content (hex: binary files such as GeoIP databases travel in JSON).
    files: BTreeMap<String, String>,
}

/// What an agent reports running (kept per agent in the control database).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfigReport {
    /// The version it runs; 0 when it runs no server configuration.
    pub version: u64,
    /// When it applied that version, nanoseconds since the epoch (0: never).
    pub applied_ns: u64,
    /// When the server received this report.
    pub reported_ns: u64,
    /// Why it refused the last bundle it was offered, if it did.
    pub refused: Option<String>,
}

/// Why a configuration bundle could not be published or was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Bundle(#[from] BundleError),
    #[error("signing the configuration bundle: {0}")]
    Sign(#[from] CaError),
    #[error("{0}")]
    Control(#[from] ControlError),
    #[error("fleet configuration: {path}: {reason}")]
    Source { path: PathBuf, reason: String },
    #[error("fleet configuration bundle: manifest unreadable: {0}")]
    Manifest(String),
    #[error("fleet configuration bundle: version {offered} is not above the installed {installed}: refused (a rollback to an older configuration)")]
    Rollback { installed: u64, offered: u64 },
    #[error("fleet configuration bundle: payload {0}")]
    Payload(String),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> ConfigError + '_ {
    move |source| ConfigError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// SHA-256 of `data`, lowercase hex (the digests of manifests and files).
pub fn sha256(data: &[u8]) -> String {
    sha256_hex(data)
}

/// The bundle directory of a server data directory.
pub fn dir(data_dir: &Path) -> PathBuf {
    data_dir.join("fleetconfig")
}

/// Why a bundle path or a bundle's set of files is refused (see [`check_path`] and
/// [`check_files`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PathError {
    /// The path is not `SECTION/NAME`.
    #[error("{path:?}: expected SECTION/NAME")]
    NotSectionName { path: String },
    /// The section is not one of [`SECTIONS`].
    #[error("{path:?}: unknown section {section:?} (expected one of {})", SECTIONS.join(", "))]
    UnknownSection { path: String, section: String },
    /// The file name has characters, a length or a start an agent does not write.
    #[error(
        "{path:?}: a file name is 1 to 128 letters, digits, '.', '_', '-', not starting with '.'"
    )]
    BadName { path: String },
    /// More than [`MAX_FILES`] files.
    #[error("{0} files (at most {MAX_FILES})")]
    TooManyFiles(usize),
    /// More than one file in `policy/`.
    #[error("{0} files in policy/ (an agent applies one policy)")]
    Policies(usize),
    /// More than one file in `geoip/`.
    #[error("{0} files in geoip/ (an agent reads one database)")]
    Geoip(usize),
}

/// Checks a bundle path: `section/name` with a known section and a name of letters, digits,
/// `.`, `_`, `-` (not starting with `.`, at most 128 bytes). The agent writes files under
/// these names, so nothing else (no `/`, no `..`) may pass.
pub fn check_path(path: &str) -> Result<(&str, &str), PathError> {
    let Some((section, name)) = path.split_once('/') else {
        return Err(PathError::NotSectionName { path: path.into() });
    };
    if !SECTIONS.contains(&section) {
        return Err(PathError::UnknownSection {
            path: path.into(),
            section: section.into(),
        });
    }
    if name.is_empty()
        || name.len() > 128
        || name.starts_with('.')
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
    {
        return Err(PathError::BadName { path: path.into() });
    }
    Ok((section, name))
}

/// Checks the set of files of a bundle: paths, count, at most one policy and one GeoIP
/// database.
pub fn check_files<'a>(paths: impl IntoIterator<Item = &'a str>) -> Result<(), PathError> {
    let mut n = 0;
    let mut policies = 0;
    let mut geoip = 0;
    for p in paths {
        n += 1;
        let (section, _) = check_path(p)?;
        policies += usize::from(section == "policy");
        geoip += usize::from(section == "geoip");
    }
    if n > MAX_FILES {
        return Err(PathError::TooManyFiles(n));
    }
    if policies > 1 {
        return Err(PathError::Policies(policies));
    }
    if geoip > 1 {
        return Err(PathError::Geoip(geoip));
    }
    Ok(())
}

/// Reads a source directory (layout in the module docs) into `path -> content`.
pub fn read_source(src: &Path) -> Result<BTreeMap<String, Vec<u8>>, ConfigError> {
    let bad = |path: &Path, reason: &str| ConfigError::Source {
        path: path.to_path_buf(),
        reason: reason.to_string(),
    };
    let mut files = BTreeMap::new();
    let mut total: u64 = 0;
    for e in std::fs::read_dir(src).map_err(io(src))? {
        let e = e.map_err(io(src))?;
        let path = e.path();
        let name = e.file_name().to_string_lossy().into_owned();
        if !SECTIONS.contains(&name.as_str()) {
            return Err(bad(
                &path,
                &format!(
                    "not a section of a fleet configuration (expected directories {})",
                    SECTIONS.join(", ")
                ),
            ));
        }
        if !path.is_dir() {
            return Err(bad(&path, "expected a directory"));
        }
        for f in std::fs::read_dir(&path).map_err(io(&path))? {
            let f = f.map_err(io(&path))?;
            let fp = f.path();
            if !fp.is_file() {
                return Err(bad(&fp, "expected a regular file"));
            }
            let key = format!("{name}/{}", f.file_name().to_string_lossy());
            check_path(&key).map_err(|r| bad(&fp, &r.to_string()))?;
            let data = std::fs::read(&fp).map_err(io(&fp))?;
            total += data.len() as u64;
            if total > MAX_PAYLOAD_BYTES / 2 {
                return Err(bad(
                    src,
                    &format!(
                        "over {} bytes of files (the bundle travels hex-encoded, at most {MAX_PAYLOAD_BYTES})",
                        MAX_PAYLOAD_BYTES / 2
                    ),
                ));
            }
            files.insert(key, data);
        }
    }
    check_files(files.keys().map(String::as_str)).map_err(|r| bad(src, &r.to_string()))?;
    Ok(files)
}

/// Signs and publishes `files` (`section/name` to content) as the next version (or
/// `version`, which must be above every version published before). Returns the manifest.
///
/// The files are not checked for meaning here (rules compiling, policy parsing): the CLI
/// checks them with the agent's own loader before calling this, and every agent checks
/// again before applying.
pub fn publish(
    data_dir: &Path,
    ca: &Ca,
    control: &Control,
    files: &BTreeMap<String, Vec<u8>>,
    version: Option<u64>,
) -> Result<ConfigManifest, ConfigError> {
    check_files(files.keys().map(String::as_str)).map_err(|r| ConfigError::Source {
        path: PathBuf::from("(bundle)"),
        reason: r.to_string(),
    })?;
    let d = dir(data_dir);
    std::fs::create_dir_all(&d).map_err(io(&d))?;
    let payload = Payload {
        files: files
            .iter()
            .map(|(k, v)| (k.clone(), hex::encode(v)))
            .collect(),
    };
    let raw = serde_json::to_vec(&payload).map_err(|e| ConfigError::Manifest(e.to_string()))?;
    if raw.len() as u64 > MAX_PAYLOAD_BYTES {
        return Err(ConfigError::Payload(format!(
            "is {} bytes decompressed, over the {MAX_PAYLOAD_BYTES} agents accept",
            raw.len()
        )));
    }
    let compressed = zstd::bulk::compress(&raw, 3).map_err(io(&d))?;
    let sha = sha256_hex(&compressed);
    let version = control.next_config_version(version)?;
    // What is published now, when it is this CA's (a manifest.json edited or copied in is
    // not taken for a published version).
    let published = || {
        current(data_dir)
            .ok()
            .flatten()
            .and_then(|s| verify_manifest(ca.cert(), &s).ok())
    };
    let previous = published();
    if let Some(p) = &previous {
        // A version allocated in the control database is above every published one, unless
        // the manifest was copied in from elsewhere.
        if p.version >= version {
            return Err(ConfigError::Rollback {
                installed: p.version,
                offered: version,
            });
        }
    }
    let manifest = ConfigManifest {
        kind: KIND.to_string(),
        format: CONFIG_FORMAT,
        version,
        sha256: sha.clone(),
        size: compressed.len() as u64,
        payload_size: raw.len() as u64,
        created_ns: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |t| t.as_nanos() as u64),
        files: files
            .iter()
            .map(|(k, v)| FileEntry {
                path: k.clone(),
                sha256: sha256_hex(v),
                size: v.len() as u64,
            })
            .collect(),
    };
    write_atomic(&d.join(format!("bundle-{sha}.json.zst")), &compressed)?;
    let text =
        serde_json::to_string(&manifest).map_err(|e| ConfigError::Manifest(e.to_string()))?;
    let signed = SignedManifest {
        signature: hex::encode(ca.sign(text.as_bytes())?),
        manifest: text,
    };
    let json =
        serde_json::to_vec_pretty(&signed).map_err(|e| ConfigError::Manifest(e.to_string()))?;
    if control.is_shared() {
        // Every server of the fleet serves it: the bundle, then the signed manifest under its
        // version (so two publishes racing on two servers each add theirs, and the highest
        // wins everywhere), before this server's own files.
        let id = shared_id(version);
        control.put_docs(
            SHARED_BUNDLES,
            vec![(sha.clone(), hex::encode(&compressed))],
        )?;
        let text = String::from_utf8_lossy(&json).into_owned();
        control.put_docs(SHARED_MANIFESTS, vec![(id.clone(), text)])?;
        // The two newest versions and their bundles are kept (an agent fetching the bundle of
        // the version before may still be downloading it).
        let mut keep_m = vec![id];
        if let Some(p) = &previous {
            keep_m.push(shared_id(p.version));
        }
        let mut keep_b = vec![sha.clone()];
        keep_b.extend(previous.as_ref().map(|m| m.sha256.clone()));
        control.retain_docs(SHARED_MANIFESTS, &keep_m)?;
        control.retain_docs(SHARED_BUNDLES, &keep_b)?;
    }
    // Another publish may have finished meanwhile: never replace a higher version.
    if let Some(p) = published() {
        if p.version > version {
            return Err(ConfigError::Rollback {
                installed: p.version,
                offered: version,
            });
        }
    }
    write_atomic(&d.join("manifest.json"), &json)?;
    let keep: Vec<String> = std::iter::once(sha)
        .chain(previous.map(|m| m.sha256))
        .map(|s| format!("bundle-{s}.json.zst"))
        .collect();
    if let Ok(entries) = std::fs::read_dir(&d) {
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with("bundle-") && !keep.contains(&name) {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
    Ok(manifest)
}

/// The control store's documents of the published signed manifests, by [`shared_id`].
pub const SHARED_MANIFESTS: &str = "fleet-config";
/// The control store's documents of the published bundles (hex), by SHA-256.
pub const SHARED_BUNDLES: &str = "fleet-config-bundle";

/// A version as a document id that sorts as the number.
fn shared_id(version: u64) -> String {
    format!("{version:020}")
}

/// With a shared control store: when the fleet's newest published configuration (published
/// through any server) is above this data directory's, verifies it (signature by `ca`, bundle
/// digest) and installs it here, so this server serves it. Returns the version installed.
pub fn sync_shared(
    data_dir: &Path,
    ca: &Ca,
    control: &Control,
) -> Result<Option<u64>, ConfigError> {
    if !control.is_shared() {
        return Ok(None);
    }
    let Some((id, text)) = control.last_doc(SHARED_MANIFESTS)? else {
        return Ok(None);
    };
    let signed: SignedManifest = serde_json::from_str(&text)
        .map_err(|e| ConfigError::Manifest(format!("shared manifest {id}: {e}")))?;
    let m = verify_manifest(ca.cert(), &signed)?;
    let local = current(data_dir)
        .ok()
        .flatten()
        .and_then(|s| verify_manifest(ca.cert(), &s).ok());
    if local.is_some_and(|l| l.version >= m.version) {
        return Ok(None);
    }
    let Some(hex_bundle) = control.doc(SHARED_BUNDLES, &m.sha256)? else {
        // A newer publish replaced it meanwhile: the next call takes that one.
        return Ok(None);
    };
    let bundle = hex::decode(hex_bundle.trim())
        .map_err(|e| ConfigError::Payload(format!("shared bundle {}: not hex: {e}", m.sha256)))?;
    if sha256_hex(&bundle) != m.sha256 || bundle.len() as u64 != m.size {
        return Err(ConfigError::Payload(format!(
            "shared bundle {}: does not match its signed manifest",
            m.sha256
        )));
    }
    let d = dir(data_dir);
    std::fs::create_dir_all(&d).map_err(io(&d))?;
    write_atomic(&d.join(format!("bundle-{}.json.zst", m.sha256)), &bundle)?;
    let json =
        serde_json::to_vec_pretty(&signed).map_err(|e| ConfigError::Manifest(e.to_string()))?;
    write_atomic(&d.join("manifest.json"), &json)?;
    Ok(Some(m.version))
}

/// The current signed manifest of `data_dir`, if a configuration was published.
pub fn current(data_dir: &Path) -> Result<Option<SignedManifest>, ConfigError> {
    let p = dir(data_dir).join("manifest.json");
    let data = match std::fs::read(&p) {
        Ok(d) => d,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io(&p)(e)),
    };
    serde_json::from_slice(&data)
        .map(Some)
        .map_err(|e| ConfigError::Manifest(format!("{}: {e}", p.display())))
}

/// The published manifest (signature not checked: the server's own file), if any.
pub fn current_manifest(data_dir: &Path) -> Option<ConfigManifest> {
    let s = current(data_dir).ok().flatten()?;
    serde_json::from_str(&s.manifest).ok()
}

/// The payload file of the bundle with digest `sha256` (hex), when `sha256` is well-formed.
pub fn bundle_path(data_dir: &Path, sha256: &str) -> Option<PathBuf> {
    (sha256.len() == 64
        && sha256
            .bytes()
            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')))
    .then(|| dir(data_dir).join(format!("bundle-{sha256}.json.zst")))
}

/// Checks `signed` against the CA certificate (DER) and returns its configuration manifest.
pub fn verify_manifest(
    ca_cert: &[u8],
    signed: &SignedManifest,
) -> Result<ConfigManifest, ConfigError> {
    crate::vulndb::verify_signature(ca_cert, signed)?;
    let m: ConfigManifest =
        serde_json::from_str(&signed.manifest).map_err(|e| ConfigError::Manifest(e.to_string()))?;
    if m.kind != KIND {
        return Err(ConfigError::Manifest(format!(
            "kind {:?}, not {KIND:?}",
            m.kind
        )));
    }
    if m.format != CONFIG_FORMAT {
        return Err(ConfigError::Manifest(format!(
            "format {} (this rampart reads {CONFIG_FORMAT})",
            m.format
        )));
    }
    check_files(m.files.iter().map(|f| f.path.as_str()))
        .map_err(|e| ConfigError::Manifest(e.to_string()))?;
    Ok(m)
}

/// Whether the verified manifest `offered` should be applied over `installed` (the version
/// the agent runs, 0 for none): true when newer, false when it is the installed one, a
/// [`ConfigError::Rollback`] when older, or equal with other content.
pub fn is_newer(
    installed: Option<&ConfigManifest>,
    offered: &ConfigManifest,
) -> Result<bool, ConfigError> {
    let Some(old) = installed else {
        return Ok(true);
    };
    if offered.version == old.version && offered.sha256 == old.sha256 {
        return Ok(false);
    }
    if offered.version <= old.version {
        return Err(ConfigError::Rollback {
            installed: old.version,
            offered: offered.version,
        });
    }
    Ok(true)
}

/// Checks `payload` against a verified manifest and returns its files.
pub fn open_payload(
    m: &ConfigManifest,
    payload: &[u8],
) -> Result<BTreeMap<String, Vec<u8>>, ConfigError> {
    if payload.len() as u64 != m.size {
        return Err(ConfigError::Payload(format!(
            "is {} bytes, the signed manifest says {} (truncated or padded)",
            payload.len(),
            m.size
        )));
    }
    let got = sha256_hex(payload);
    if got != m.sha256 {
        return Err(ConfigError::Payload(format!(
            "SHA-256 {got} is not the signed {} (tampered)",
            m.sha256
        )));
    }
    if m.payload_size > MAX_PAYLOAD_BYTES {
        return Err(ConfigError::Payload(format!(
            "decompresses to {} bytes, over the {MAX_PAYLOAD_BYTES} accepted",
            m.payload_size
        )));
    }
    let raw = zstd::bulk::decompress(payload, m.payload_size as usize)
        .map_err(|e| ConfigError::Payload(format!("does not decompress: {e}")))?;
    if raw.len() as u64 != m.payload_size {
        return Err(ConfigError::Payload(format!(
            "decompresses to {} bytes, the signed manifest says {}",
            raw.len(),
            m.payload_size
        )));
    }
    let p: Payload = serde_json::from_slice(&raw)
        .map_err(|e| ConfigError::Payload(format!("is not the bundle's JSON: {e}")))?;
    if p.files.len() != m.files.len() {
        return Err(ConfigError::Payload(format!(
            "holds {} files, the signed manifest lists {}",
            p.files.len(),
            m.files.len()
        )));
    }
    let mut out = BTreeMap::new();
    for f in &m.files {
        let data = p
            .files
            .get(&f.path)
            .and_then(|h| hex::decode(h).ok())
            .ok_or_else(|| ConfigError::Payload(format!("lacks {} (or it is not hex)", f.path)))?;
        if data.len() as u64 != f.size || sha256_hex(&data) != f.sha256 {
            return Err(ConfigError::Payload(format!(
                "{} is not the signed file (size or SHA-256)",
                f.path
            )));
        }
        out.insert(f.path.clone(), data);
    }
    Ok(out)
}

/// One agent's line of [`Status`].
#[derive(Debug, Clone, Serialize)]
pub struct AgentConfigStatus {
    pub agent_id: String,
    pub hostname: String,
    pub region: String,
    pub revoked: bool,
    /// Its last report; `None` when it never polled for a configuration.
    pub report: Option<ConfigReport>,
    /// Whether it runs the published version.
    pub current: bool,
}

/// The published configuration and what every agent runs (`GET /api/v1/config/status`,
/// the dashboard's hosts).
#[derive(Debug, Clone, Serialize)]
pub struct Status {
    /// The published manifest, if any.
    pub published: Option<ConfigManifest>,
    pub agents: Vec<AgentConfigStatus>,
}

/// The status of `data_dir`'s published configuration and of the agents in `control`.
pub fn status(data_dir: &Path, control: &Control) -> Result<Status, ConfigError> {
    // A fleet's newest, whichever server published it.
    let shared = if control.is_shared() {
        control
            .last_doc(SHARED_MANIFESTS)?
            .and_then(|(_, text)| serde_json::from_str::<SignedManifest>(&text).ok())
            .and_then(|s| serde_json::from_str::<ConfigManifest>(&s.manifest).ok())
    } else {
        None
    };
    let published = shared.or_else(|| current_manifest(data_dir));
    let mut reports = control.config_reports()?;
    let agents = control
        .agents()?
        .into_iter()
        .map(|a| {
            let report = reports.remove(&a.agent_id);
            let current = match (&published, &report) {
                (Some(p), Some(r)) => r.version == p.version,
                _ => false,
            };
            AgentConfigStatus {
                agent_id: a.agent_id,
                hostname: a.hostname,
                region: a.region,
                revoked: a.revoked_ns.is_some(),
                report,
                current,
            }
        })
        .collect();
    Ok(Status { published, agents })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setup() -> (tempfile::TempDir, Ca, Control) {
        let dir = tempfile::tempdir().expect("tempdir");
        let ca = Ca::load_or_create(&dir.path().join("ca")).expect("CA");
        let control = Control::open(&dir.path().join("control.db")).expect("control");
        (dir, ca, control)
    }

    fn files(rule: &str) -> BTreeMap<String, Vec<u8>> {
        BTreeMap::from([
            ("rules/a.yaml".to_string(), rule.as_bytes().to_vec()),
            ("geoip/c.mmdb".to_string(), vec![0, 1, 2, 255]),
        ])
    }

    #[test]
    fn published_bundle_verifies_and_opens_to_its_files_and_versions_go_up() {
        let (dir, ca, control) = setup();
        let m1 = publish(dir.path(), &ca, &control, &files("- x"), None).expect("publish");
        assert_eq!(m1.version, 1);
        let signed = current(dir.path()).expect("read").expect("published");
        let m = verify_manifest(ca.cert(), &signed).expect("verifies");
        assert_eq!(m, m1);
        let payload = std::fs::read(bundle_path(dir.path(), &m.sha256).expect("path")).expect("p");
        assert_eq!(open_payload(&m, &payload).expect("opens"), files("- x"));
        let m2 = publish(dir.path(), &ca, &control, &files("- y"), None).expect("again");
        assert_eq!(m2.version, 2);
        assert!(is_newer(Some(&m1), &m2).expect("newer"));
        assert!(!is_newer(Some(&m2), &m2).expect("same"));
        assert!(matches!(
            is_newer(Some(&m2), &m1),
            Err(ConfigError::Rollback {
                installed: 2,
                offered: 1
            })
        ));
        // An explicit version must be above every one allocated.
        let err = publish(dir.path(), &ca, &control, &files("- z"), Some(2)).expect_err("old");
        assert!(err.to_string().contains("only go up"), "{err}");
        let m9 = publish(dir.path(), &ca, &control, &files("- z"), Some(9)).expect("9");
        assert_eq!(m9.version, 9);
        assert_eq!(
            publish(dir.path(), &ca, &control, &files("- w"), None)
                .expect("10")
                .version,
            10
        );
    }

    #[test]
    fn tampered_foreign_vulndb_manifest_and_altered_payload_are_refused() {
        let (dir, ca, control) = setup();
        let m = publish(dir.path(), &ca, &control, &files("- x"), None).expect("publish");
        let signed = current(dir.path()).expect("read").expect("published");
        let mut forged = signed.clone();
        forged.manifest = forged.manifest.replace("\"version\":1", "\"version\":99");
        assert_ne!(forged.manifest, signed.manifest);
        assert!(matches!(
            verify_manifest(ca.cert(), &forged),
            Err(ConfigError::Bundle(BundleError::Signature))
        ));
        let other = tempfile::tempdir().expect("tempdir");
        let other_ca = Ca::load_or_create(other.path()).expect("CA");
        assert!(verify_manifest(other_ca.cert(), &signed).is_err());
        // A vulnerability manifest signed by the same CA is not a configuration manifest.
        let vuln = crate::vulndb::Manifest {
            format: 1,
            version: "1-abc".into(),
            sha256: m.sha256.clone(),
            size: m.size,
            db_size: 1,
            created_ns: 1,
        };
        let text = serde_json::to_string(&vuln).expect("json");
        let cross = SignedManifest {
            signature: hex::encode(ca.sign(text.as_bytes()).expect("sign")),
            manifest: text,
        };
        assert!(matches!(
            verify_manifest(ca.cert(), &cross),
            Err(ConfigError::Manifest(_))
        ));
        let payload = std::fs::read(bundle_path(dir.path(), &m.sha256).expect("path")).expect("p");
        assert!(open_payload(&m, &payload[..payload.len() - 1]).is_err());
        let mut altered = payload.clone();
        let last = altered.len() - 1;
        altered[last] ^= 0xff;
        let err = open_payload(&m, &altered).expect_err("altered");
        assert!(err.to_string().contains("tampered"), "{err}");
    }

    #[test]
    fn paths_outside_the_sections_are_refused() {
        for bad in [
            "rules",
            "rules/",
            "rules/../x",
            "rules/a/b",
            "etc/passwd",
            "rules/.hidden",
            "/rules/a",
            "rules/a b",
        ] {
            assert!(check_path(bad).is_err(), "{bad}");
        }
        assert!(check_path("lists/miner-pools.yaml").is_ok());
        assert_eq!(
            check_files(["policy/a.yaml", "policy/b.yaml"]),
            Err(PathError::Policies(2))
        );
        assert_eq!(
            check_files(["geoip/a.mmdb", "geoip/b.mmdb"]).map_err(|e| e.to_string()),
            Err("2 files in geoip/ (an agent reads one database)".to_string())
        );
        assert_eq!(
            check_path("rules/../x").map_err(|e| e.to_string()),
            Err("\"rules/../x\": a file name is 1 to 128 letters, digits, '.', '_', '-', not starting with '.'".to_string())
        );
        assert_eq!(
            check_path("bin/x").map_err(|e| e.to_string()),
            Err(format!(
                "\"bin/x\": unknown section \"bin\" (expected one of {})",
                SECTIONS.join(", ")
            ))
        );
        let src = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(src.path().join("rulez")).expect("mkdir");
        let err = read_source(src.path()).expect_err("typo");
        assert!(err.to_string().contains("rulez"), "{err}");
    }
}
