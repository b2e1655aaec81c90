//! The vulnerability database bundle: how the server's OSV database reaches the agents, signed
//! so that an agent installs only what its server published.
//!
//! # Files in `<data_dir>/vulndb/`
//! ```text
//! vuln.db                    the server's database (`rampart server db import` writes it)
//! bundle-<sha256>.db.zst     a snapshot of it (SQLite `VACUUM INTO`, zstd), named by its digest
//! snapshot-<sha256>.db       the same snapshot uncompressed: what the server itself matches
//!                            with (`vuln.db` changes in place during the next import, the
//!                            snapshot of a published version never does)
//! manifest.json              SignedManifest: the Manifest's JSON text and its signature
//! resend                     a token; when it changes, agents send their image inventories again
//! ```
//! [`publish`] writes the bundle first and the manifest last (each through a temporary file
//! renamed into place), so a reader sees either the old pair or the new one; the previous
//! bundle stays until the next publish, so an agent that read the old manifest still gets its
//! bundle. A running server reads `manifest.json` on every request: an import done by another
//! process is served from the next request on.
//!
//! # Signature
//! The manifest's JSON text is signed with the CA key (ECDSA P-256 with SHA-256, ASN.1 DER,
//! hex in `signature`). Agents pinned that CA at enrollment (`ca.crt` in their TLS directory)
//! and check the signature with it, then the payload's size and SHA-256 against the manifest,
//! then the decompressed size; any mismatch refuses the bundle and the agent keeps its
//! database. The manifest is signed as bytes, so no JSON canonicalisation is involved.
//!
//! # Routes (agent certificate required)
//! `GET /api/v1/vulndb/manifest` answers `manifest.json` (404 when nothing was published),
//! with the version as `ETag`; `GET /api/v1/vulndb/bundle/<sha256>` answers the payload.
//! Every manifest answer carries the `resend` token as `x-rampart-resend` (written by
//! `rampart server db resend`, [`request_resend`]): an agent that sees a token it has not acted
//! on sends the package lists of its images again (the server lost or wants to rebuild them).

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::ca::{Ca, CaError};

/// Version of the manifest format.
pub const MANIFEST_FORMAT: u32 = 1;

/// The largest database an agent accepts from a bundle (decompressed).
pub const MAX_DB_BYTES: u64 = 8 << 30;

/// What a bundle is: signed by the CA.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// [`MANIFEST_FORMAT`].
    pub format: u32,
    /// `<unix seconds>-<first 12 hex digits of sha256>`: changes with every publish of
    /// different content.
    pub version: String,
    /// SHA-256 (hex) of the payload (the compressed database).
    pub sha256: String,
    /// Payload size in bytes.
    pub size: u64,
    /// Size of the decompressed database in bytes.
    pub db_size: u64,
    /// When it was published, nanoseconds since the epoch.
    pub created_ns: u64,
}

/// `manifest.json`: the manifest's JSON text, exactly as signed, and the signature.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedManifest {
    pub manifest: String,
    /// ECDSA P-256 SHA-256 signature (ASN.1 DER), hex.
    pub signature: String,
}

/// Why a bundle could not be published or was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BundleError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    Sqlite {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
    #[error("signing the bundle: {0}")]
    Sign(#[from] CaError),
    #[error("vulnerability database bundle: manifest unreadable: {0}")]
    Manifest(String),
    #[error("vulnerability database bundle: the signature does not verify against the pinned CA (tampered manifest or another server's bundle)")]
    Signature,
    #[error("vulnerability database bundle: payload is {got} bytes, the signed manifest says {expected} (truncated or padded)")]
    Size { expected: u64, got: u64 },
    #[error("vulnerability database bundle: payload SHA-256 {got} is not the signed {expected} (tampered)")]
    Digest { expected: String, got: String },
    #[error("vulnerability database bundle: payload does not decompress to the signed {expected} bytes: {reason}")]
    Decompress { expected: u64, reason: String },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> BundleError + '_ {
    move |source| BundleError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The bundle directory of a server data directory.
pub fn dir(data_dir: &Path) -> PathBuf {
    data_dir.join("vulndb")
}

/// The server's vulnerability database in a data directory.
pub fn db_path(data_dir: &Path) -> PathBuf {
    dir(data_dir).join("vuln.db")
}

pub(crate) fn sha256_hex(data: &[u8]) -> String {
    hex::encode(ring::digest::digest(&ring::digest::SHA256, data).as_ref())
}

pub(crate) fn write_atomic(path: &Path, data: &[u8]) -> Result<(), BundleError> {
    use std::io::Write;
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    let mut f = std::fs::File::create(&tmp).map_err(io(&tmp))?;
    f.write_all(data).map_err(io(&tmp))?;
    f.sync_all().map_err(io(&tmp))?;
    std::fs::rename(&tmp, path).map_err(io(path))
}

/// Snapshots the database of `data_dir`, compresses it, signs its manifest with `ca` and makes
/// it the current bundle. Returns the new manifest.
pub fn publish(data_dir: &Path, ca: &Ca) -> Result<Manifest, BundleError> {
    let d = dir(data_dir);
    let db = db_path(data_dir);
    std::fs::create_dir_all(&d).map_err(io(&d))?;
    let snap = d.join(format!(".snapshot-{}.db", std::process::id()));
    let _ = std::fs::remove_file(&snap);
    let sql = |source| BundleError::Sqlite {
        path: db.clone(),
        source,
    };
    let conn = rusqlite::Connection::open_with_flags(
        &db,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(sql)?;
    let snap_s = snap.to_string_lossy().into_owned();
    conn.execute("VACUUM INTO ?1", [&snap_s]).map_err(sql)?;
    drop(conn);
    let raw = match std::fs::read(&snap) {
        Ok(r) => r,
        Err(e) => {
            let _ = std::fs::remove_file(&snap);
            return Err(io(&snap)(e));
        }
    };
    let payload = zstd::bulk::compress(&raw, 3).map_err(io(&snap))?;
    let sha = sha256_hex(&payload);
    let created_ns = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |t| t.as_nanos() as u64);
    let manifest = Manifest {
        format: MANIFEST_FORMAT,
        version: format!("{}-{}", created_ns / 1_000_000_000, &sha[..12]),
        sha256: sha.clone(),
        size: payload.len() as u64,
        db_size: raw.len() as u64,
        created_ns,
    };
    let previous = current(data_dir)
        .ok()
        .flatten()
        .and_then(|s| serde_json::from_str::<Manifest>(&s.manifest).ok());
    write_atomic(&d.join(format!("bundle-{sha}.db.zst")), &payload)?;
    let snapshot = d.join(format!("snapshot-{sha}.db"));
    std::fs::rename(&snap, &snapshot).map_err(io(&snapshot))?;
    let text =
        serde_json::to_string(&manifest).map_err(|e| BundleError::Manifest(e.to_string()))?;
    let signed = SignedManifest {
        signature: hex::encode(ca.sign(text.as_bytes())?),
        manifest: text,
    };
    let json =
        serde_json::to_vec_pretty(&signed).map_err(|e| BundleError::Manifest(e.to_string()))?;
    write_atomic(&d.join("manifest.json"), &json)?;
    // Keep the current and the previous bundle (an agent may have read the old manifest).
    let keep: Vec<String> = std::iter::once(sha)
        .chain(previous.map(|m| m.sha256))
        .flat_map(|s| [format!("bundle-{s}.db.zst"), format!("snapshot-{s}.db")])
        .collect();
    if let Ok(entries) = std::fs::read_dir(&d) {
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if (name.starts_with("bundle-") || name.starts_with("snapshot-"))
                && !keep.contains(&name)
            {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
    Ok(manifest)
}

/// The current signed manifest of `data_dir`, if a bundle was published.
pub fn current(data_dir: &Path) -> Result<Option<SignedManifest>, BundleError> {
    let p = dir(data_dir).join("manifest.json");
    let data = match std::fs::read(&p) {
        Ok(d) => d,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io(&p)(e)),
    };
    serde_json::from_slice(&data)
        .map(Some)
        .map_err(|e| BundleError::Manifest(format!("{}: {e}", p.display())))
}

/// The uncompressed snapshot of the published version `m` (immutable, unlike `vuln.db`).
pub fn snapshot_path(data_dir: &Path, m: &Manifest) -> Option<PathBuf> {
    bundle_path(data_dir, &m.sha256)
        .map(|_| dir(data_dir).join(format!("snapshot-{}.db", m.sha256)))
}

/// How current the server's vulnerability data is, for the dashboard.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Freshness {
    /// Unix seconds of the last complete `db update` of `vuln.db` (the scanner's `meta`
    /// `updated_at`, see `rampart_scan::VulnDb::updated_at`), else of its newest import.
    pub updated_at: Option<i64>,
    /// Seconds since `updated_at`.
    pub age_secs: Option<i64>,
    /// The published bundle's version, if any.
    pub published_version: Option<String>,
    /// When it was published, nanoseconds since the epoch.
    pub published_ns: Option<u64>,
}

/// How current `<data_dir>/vulndb/vuln.db` is; `None` when there is no database.
pub fn freshness(data_dir: &Path) -> Option<Freshness> {
    let db = db_path(data_dir);
    if !db.is_file() {
        return None;
    }
    let conn = rusqlite::Connection::open_with_flags(
        &db,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .ok()?;
    // The scanner's layout (rampart-scan `db` module docs): meta(key, value), sources.
    let updated_at: Option<i64> = conn
        .query_row(
            "SELECT COALESCE((SELECT CAST(value AS INTEGER) FROM meta WHERE key = 'updated_at'),
                             (SELECT MAX(imported_at) FROM sources WHERE imported_at > 0))",
            [],
            |r| r.get(0),
        )
        .ok()
        .flatten();
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let manifest = current(data_dir)
        .ok()
        .flatten()
        .and_then(|s| serde_json::from_str::<Manifest>(&s.manifest).ok());
    Some(Freshness {
        updated_at,
        age_secs: updated_at.map(|t| now - t),
        published_version: manifest.as_ref().map(|m| m.version.clone()),
        published_ns: manifest.map(|m| m.created_ns),
    })
}

/// The header carrying the resend token.
pub const RESEND_HEADER: &str = "x-rampart-resend";

/// The current resend token of `data_dir`, if one was written.
pub fn resend_token(data_dir: &Path) -> Option<String> {
    let t = std::fs::read_to_string(dir(data_dir).join("resend")).ok()?;
    let t = t.trim();
    (!t.is_empty()).then(|| t.to_string())
}

/// Asks every agent to send its image inventories again: writes a new resend token.
pub fn request_resend(data_dir: &Path) -> Result<String, BundleError> {
    let d = dir(data_dir);
    std::fs::create_dir_all(&d).map_err(io(&d))?;
    let token = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |t| t.as_nanos())
        .to_string();
    write_atomic(&d.join("resend"), token.as_bytes())?;
    Ok(token)
}

/// The payload file of the bundle with digest `sha256` (hex), when `sha256` is well-formed.
pub fn bundle_path(data_dir: &Path, sha256: &str) -> Option<PathBuf> {
    (sha256.len() == 64
        && sha256
            .bytes()
            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')))
    .then(|| dir(data_dir).join(format!("bundle-{sha256}.db.zst")))
}

/// Checks the signature of `signed` against the CA certificate (DER); says nothing of what
/// the manifest is (the vulnerability database's or the fleet configuration's, see
/// `crate::fleetconfig`, whose manifests the other's parser refuses).
pub(crate) fn verify_signature(ca_cert: &[u8], signed: &SignedManifest) -> Result<(), BundleError> {
    let der = rustls::pki_types::CertificateDer::from(ca_cert);
    let cert = webpki::EndEntityCert::try_from(&der)
        .map_err(|e| BundleError::Manifest(format!("CA certificate unreadable: {e}")))?;
    let sig = hex::decode(signed.signature.trim()).map_err(|_| BundleError::Signature)?;
    cert.verify_signature(
        webpki::ring::ECDSA_P256_SHA256,
        signed.manifest.as_bytes(),
        &sig,
    )
    .map_err(|_| BundleError::Signature)
}

/// Checks `signed` against the CA certificate (DER) and returns its manifest.
pub fn verify_manifest(ca_cert: &[u8], signed: &SignedManifest) -> Result<Manifest, BundleError> {
    verify_signature(ca_cert, signed)?;
    let m: Manifest =
        serde_json::from_str(&signed.manifest).map_err(|e| BundleError::Manifest(e.to_string()))?;
    if m.format != MANIFEST_FORMAT {
        return Err(BundleError::Manifest(format!(
            "format {} (this rampart reads {MANIFEST_FORMAT})",
            m.format
        )));
    }
    Ok(m)
}

/// Checks `payload` against a verified manifest and returns the decompressed database.
pub fn open_payload(m: &Manifest, payload: &[u8]) -> Result<Vec<u8>, BundleError> {
    if payload.len() as u64 != m.size {
        return Err(BundleError::Size {
            expected: m.size,
            got: payload.len() as u64,
        });
    }
    let got = sha256_hex(payload);
    if got != m.sha256 {
        return Err(BundleError::Digest {
            expected: m.sha256.clone(),
            got,
        });
    }
    if m.db_size > MAX_DB_BYTES {
        return Err(BundleError::Decompress {
            expected: m.db_size,
            reason: format!("larger than the {MAX_DB_BYTES} bytes accepted"),
        });
    }
    let db = zstd::bulk::decompress(payload, m.db_size as usize).map_err(|e| {
        BundleError::Decompress {
            expected: m.db_size,
            reason: e.to_string(),
        }
    })?;
    if db.len() as u64 != m.db_size {
        return Err(BundleError::Decompress {
            expected: m.db_size,
            reason: format!("{} bytes", db.len()),
        });
    }
    Ok(db)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn published() -> (tempfile::TempDir, Ca, Manifest) {
        let dir = tempfile::tempdir().expect("tempdir");
        let ca = Ca::load_or_create(&dir.path().join("ca")).expect("CA");
        let db = db_path(dir.path());
        std::fs::create_dir_all(db.parent().expect("parent")).expect("mkdir");
        let conn = rusqlite::Connection::open(&db).expect("db");
        conn.execute_batch("CREATE TABLE t(x); INSERT INTO t VALUES('advisory');")
            .expect("fill");
        drop(conn);
        let m = publish(dir.path(), &ca).expect("publish");
        (dir, ca, m)
    }

    #[test]
    fn a_published_bundle_verifies_and_opens_to_the_database() {
        let (dir, ca, m) = published();
        let signed = current(dir.path()).expect("read").expect("published");
        assert_eq!(verify_manifest(ca.cert(), &signed).expect("verifies"), m);
        let payload =
            std::fs::read(bundle_path(dir.path(), &m.sha256).expect("path")).expect("payload");
        let db = open_payload(&m, &payload).expect("opens");
        assert!(db.starts_with(b"SQLite format 3\0"));
        // Publishing again keeps the previous bundle for agents that read the old manifest.
        let m2 = publish(dir.path(), &ca).expect("publish again");
        assert!(bundle_path(dir.path(), &m2.sha256).expect("p").exists());
        assert!(bundle_path(dir.path(), &m.sha256).expect("p").exists());
    }

    #[test]
    fn tampered_manifest_truncated_or_altered_payload_and_foreign_ca_are_refused() {
        let (dir, ca, m) = published();
        let signed = current(dir.path()).expect("read").expect("published");
        let mut forged = signed.clone();
        forged.manifest = forged
            .manifest
            .replace(&m.version, "9999999999-000000000000");
        assert!(matches!(
            verify_manifest(ca.cert(), &forged),
            Err(BundleError::Signature)
        ));
        let other = tempfile::tempdir().expect("tempdir");
        let other_ca = Ca::load_or_create(other.path()).expect("CA");
        assert!(matches!(
            verify_manifest(other_ca.cert(), &signed),
            Err(BundleError::Signature)
        ));
        let payload =
            std::fs::read(bundle_path(dir.path(), &m.sha256).expect("path")).expect("payload");
        let err = open_payload(&m, &payload[..payload.len() - 10]).expect_err("truncated");
        assert!(err.to_string().contains("truncated"), "{err}");
        let mut altered = payload.clone();
        let last = altered.len() - 1;
        altered[last] ^= 0xff;
        assert!(matches!(
            open_payload(&m, &altered),
            Err(BundleError::Digest { .. })
        ));
    }
}
