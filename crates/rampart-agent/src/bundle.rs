//! The vulnerability-database bundle client: the agent asks the server of its `server`
//! output for the signed manifest (`GET /api/v1/vulndb/manifest`, conditional on the installed
//! version), verifies the signature against the CA pinned at enrollment, refuses a manifest
//! published before the installed one (a rollback), fetches the payload no larger than the
//! signed size (`GET /api/v1/vulndb/bundle/<sha256>`), checks its size and digest, and installs
//! the database atomically. A refused bundle leaves the installed database in place.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rampart_scan::VulnDb;
use rampart_ship::client::HttpClient;

use crate::error::{AgentError, Context, Result};

/// Where the server's bundle comes from: the `server` output's URL and enrollment directory.
#[derive(Debug, Clone)]
pub struct BundleSource {
    pub url: String,
    pub tls_dir: PathBuf,
}

/// The `server` output of `ship:`, if the agent is enrolled with one.
pub fn server_source(cfg: &crate::config::AgentConfig) -> Option<BundleSource> {
    cfg.ship.as_ref().and_then(|s| {
        s.outputs.iter().find_map(|o| match o {
            rampart_ship::OutputConfig::Server { url, tls_dir, .. } => Some(BundleSource {
                url: url.clone(),
                tls_dir: tls_dir.clone(),
            }),
            _ => None,
        })
    })
}

pub(crate) fn write_atomic(path: &Path, data: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(data)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}

/// The installed bundle's manifest (`<state_dir>/vulndb.json`).
fn installed_path(state_dir: &Path) -> PathBuf {
    state_dir.join("vulndb.json")
}

/// The installed bundle's manifest, when the database came from the server.
pub(crate) fn installed_manifest(state_dir: &Path) -> Option<rampart_server::vulndb::Manifest> {
    let d = std::fs::read(installed_path(state_dir)).ok()?;
    serde_json::from_slice(&d).ok()
}

/// Writes `db` next to the database, checks it opens, renames it into place, then records
/// the manifest.
pub(crate) fn install(
    path: &Path,
    state_dir: &Path,
    signed: &rampart_server::vulndb::SignedManifest,
    db: &[u8],
) -> Result<()> {
    if let Some(d) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
    }
    let tmp = path.with_extension(format!("db.new{}", std::process::id()));
    write_atomic(&tmp, db).with_context(|| format!("writing {}", tmp.display()))?;
    if let Err(e) = VulnDb::open(&tmp) {
        let _ = std::fs::remove_file(&tmp);
        return Err(AgentError::Refused(format!(
            "the bundle is not a usable database: {e}"
        )));
    }
    // A WAL left by an earlier writer belongs to the old file.
    for ext in ["db-wal", "db-shm"] {
        let _ = std::fs::remove_file(path.with_extension(ext));
    }
    std::fs::rename(&tmp, path).with_context(|| format!("installing {}", path.display()))?;
    write_atomic(&installed_path(state_dir), signed.manifest.as_bytes())
        .context("recording the installed bundle")?;
    Ok(())
}

pub(crate) type Fetched = (
    rampart_server::vulndb::SignedManifest,
    rampart_server::vulndb::Manifest,
    Vec<u8>,
);

/// What a bundle check found: the server's resend token (empty when none) and a verified
/// bundle newer than the installed one.
pub(crate) struct Checked {
    pub(crate) resend: String,
    pub(crate) bundle: Result<Option<Fetched>>,
}

/// Asks the server at `src` for its manifest over mutual TLS (the enrollment credentials in
/// `tls_dir`); the bundle's signature is checked against the CA pinned there.
pub(crate) async fn fetch(
    src: &BundleSource,
    installed: Option<&rampart_server::vulndb::Manifest>,
) -> Result<Checked> {
    let tls = rampart_ship::tls::agent_client_config(&src.tls_dir)
        .with_context(|| format!("TLS from {}", src.tls_dir.display()))?;
    let ca_path = src.tls_dir.join(rampart_ship::tls::CA_FILE);
    let ca = rampart_ship::tls::load_certs(&ca_path)
        .context("reading the pinned CA")?
        .into_iter()
        .next()
        .with_context(|| format!("{}: no certificate", ca_path.display()))?;
    let client = HttpClient::new(&src.url, Some(tls))
        .with_context(|| format!("server output url {}", src.url))?
        .with_timeout(Duration::from_secs(60));
    check(client, ca.as_ref(), installed).await
}

/// Asks `client`'s server for its manifest (conditional on the installed version) and, when
/// it is newer and verifies against `ca` (DER), fetches and checks the payload. The resend
/// token comes with any answer.
pub(crate) async fn check(
    mut client: HttpClient,
    ca: &[u8],
    installed: Option<&rampart_server::vulndb::Manifest>,
) -> Result<Checked> {
    let etag = installed.map(|m| format!("\"{}\"", m.version));
    let headers: Vec<(&str, &str)> = etag
        .as_deref()
        .map(|e| vec![("if-none-match", e)])
        .unwrap_or_default();
    let r = client
        .request(
            hyper::Method::GET,
            "/api/v1/vulndb/manifest",
            &headers,
            bytes::Bytes::new(),
        )
        .await
        .context("manifest")?;
    let resend = r
        .headers
        .get(rampart_server::vulndb::RESEND_HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let bundle = if r.status == 304 || r.status == 404 {
        Ok(None)
    } else if !r.is_success() {
        Err(AgentError::Refused(format!(
            "manifest: HTTP {}: {}",
            r.status,
            r.body_text()
        )))
    } else {
        fetch_payload(client, ca, &r.body, installed).await
    };
    Ok(Checked { resend, bundle })
}

/// Verifies the manifest in `body` and fetches its payload when it is not `installed`. A
/// manifest published before the installed one is refused: a validly signed but older bundle
/// served again would roll the agent back to a database without the newer advisories.
async fn fetch_payload(
    client: HttpClient,
    ca: &[u8],
    body: &[u8],
    installed: Option<&rampart_server::vulndb::Manifest>,
) -> Result<Option<Fetched>> {
    let signed: rampart_server::vulndb::SignedManifest =
        serde_json::from_slice(body).context("manifest: not JSON")?;
    let manifest = rampart_server::vulndb::verify_manifest(ca, &signed)?;
    if let Some(old) = installed {
        if old.version == manifest.version {
            return Ok(None);
        }
        if manifest.created_ns < old.created_ns {
            return Err(AgentError::Refused(format!(
                "manifest {} was published before the installed {}: refused (a rollback to an older database)",
                manifest.version,
                old.version
            )));
        }
    }
    let mut client = client.with_max_response(manifest.size as usize + 1);
    let r = client
        .request(
            hyper::Method::GET,
            &format!("/api/v1/vulndb/bundle/{}", manifest.sha256),
            &[],
            bytes::Bytes::new(),
        )
        .await
        .context("bundle")?;
    if !r.is_success() {
        return Err(AgentError::Refused(format!(
            "bundle: HTTP {}: {}",
            r.status,
            r.body_text()
        )));
    }
    let db = rampart_server::vulndb::open_payload(&manifest, &r.body)?;
    Ok(Some((signed, manifest, db)))
}

#[cfg(test)]
mod tests;
