//! Agent enrollment: get a client certificate from the server's CA (`rampart enroll`).
//!
//! The agent makes its own key pair (ECDSA P-256; the private key never leaves the host),
//! signs the token with it, and sends the public key. The server's certificate is checked
//! against the CA fingerprint in the token, and the CA certificate it returns must have that
//! fingerprint too. The result is written to a directory: `ca.crt`, `agent.crt`, `agent.key`
//! (0600) and `enrollment.json`.

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use hyper::Method;
use rcgen::SigningKey;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use serde::{Deserialize, Serialize};

use crate::client::HttpClient;
use crate::protocol::{
    enroll_signed_message, BadToken, EnrollRequest, EnrollResponse, EnrollToken, ENROLL_PATH,
};
use crate::tls::{CA_FILE, CERT_FILE, KEY_FILE};

mod args;
pub use args::{EnrollArgs, DEFAULT_TLS_DIR};

/// Written next to the credentials: what this agent is enrolled as.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Enrollment {
    pub server: String,
    pub agent_id: String,
    pub region: String,
    pub hostname: String,
    /// SHA-256 of the CA certificate, hex.
    pub ca_sha256: String,
    /// Certificate expiry, Unix seconds.
    pub not_after: i64,
}

/// Name of the enrollment record in the credentials directory.
pub const ENROLLMENT_FILE: &str = "enrollment.json";

/// Enrollment failures.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EnrollError {
    #[error(transparent)]
    Token(#[from] BadToken),
    #[error("{dir} already holds an enrollment ({KEY_FILE}); pass --force to replace it")]
    Exists { dir: PathBuf },
    #[error("generating the key pair: {0}")]
    Key(String),
    #[error(transparent)]
    Client(#[from] crate::client::ClientError),
    #[error("server {server} refused the enrollment ({status}): {body}")]
    Refused {
        server: String,
        status: u16,
        body: String,
    },
    #[error("server {server} answered something that is not an enrollment: {reason}")]
    BadAnswer { server: String, reason: String },
    #[error("{path}: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

fn write_file(path: &Path, data: &[u8], mode: u32) -> Result<(), EnrollError> {
    let err = |source| EnrollError::Write {
        path: path.to_path_buf(),
        source,
    };
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(&tmp)
        .map_err(err)?;
    f.write_all(data).and_then(|()| f.sync_all()).map_err(err)?;
    std::fs::rename(&tmp, path).map_err(err)
}

/// Enrolls with the server at `server` (`https://host:port`) using `token`, and writes the
/// credentials to `dir`. Refuses to replace an existing enrollment unless `force`.
pub async fn enroll(
    server: &str,
    token: &str,
    hostname: &str,
    dir: &Path,
    force: bool,
) -> Result<Enrollment, EnrollError> {
    let token = EnrollToken::parse(token)?;
    if dir.join(KEY_FILE).exists() && !force {
        return Err(EnrollError::Exists {
            dir: dir.to_path_buf(),
        });
    }
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
        .map_err(|e| EnrollError::Key(e.to_string()))?;
    let public_key = hex::encode(key.public_key_raw());
    let signature = key
        .sign(&enroll_signed_message(&token.secret, hostname, &public_key))
        .map_err(|e| EnrollError::Key(e.to_string()))?;
    let req = EnrollRequest {
        token: token.secret.clone(),
        hostname: hostname.to_string(),
        public_key,
        signature: hex::encode(signature),
    };
    let body = serde_json::to_vec(&req).map_err(|e| EnrollError::Key(e.to_string()))?;
    let mut client = HttpClient::new(
        server,
        Some(crate::tls::pinned_ca_client_config(token.ca_sha256)),
    )?
    .with_timeout(Duration::from_secs(30));
    let resp = client
        .request(
            Method::POST,
            ENROLL_PATH,
            &[("content-type", "application/json")],
            Bytes::from(body),
        )
        .await?;
    if resp.status != 200 {
        return Err(EnrollError::Refused {
            server: server.to_string(),
            status: resp.status,
            body: resp.body_text(),
        });
    }
    let bad = |reason: String| EnrollError::BadAnswer {
        server: server.to_string(),
        reason,
    };
    let answer: EnrollResponse =
        serde_json::from_slice(&resp.body).map_err(|e| bad(e.to_string()))?;
    let ca = CertificateDer::from_pem_slice(answer.ca_pem.as_bytes())
        .map_err(|e| bad(format!("CA certificate: {e}")))?;
    if crate::tls::fingerprint(&ca) != token.ca_sha256 {
        return Err(bad(
            "the CA certificate does not match the token's fingerprint".into(),
        ));
    }
    CertificateDer::from_pem_slice(answer.certificate_pem.as_bytes())
        .map_err(|e| bad(format!("agent certificate: {e}")))?;

    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|source| EnrollError::Write {
            path: dir.to_path_buf(),
            source,
        })?;
    write_file(&dir.join(KEY_FILE), key.serialize_pem().as_bytes(), 0o600)?;
    write_file(
        &dir.join(CERT_FILE),
        answer.certificate_pem.as_bytes(),
        0o644,
    )?;
    write_file(&dir.join(CA_FILE), answer.ca_pem.as_bytes(), 0o644)?;
    let enrollment = Enrollment {
        server: server.to_string(),
        agent_id: answer.agent_id,
        region: answer.region,
        hostname: hostname.to_string(),
        ca_sha256: hex::encode(token.ca_sha256),
        not_after: answer.not_after,
    };
    let json =
        serde_json::to_vec_pretty(&enrollment).map_err(|e| EnrollError::Key(e.to_string()))?;
    write_file(&dir.join(ENROLLMENT_FILE), &json, 0o644)?;
    Ok(enrollment)
}
