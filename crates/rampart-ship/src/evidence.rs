//! Uploading a forensic bundle to the server over the agent's mutual-TLS channel
//! (protocol: [`crate::protocol`], "Evidence").
//!
//! The bundle is hashed first and named by its SHA-256; it is sent in parts of
//! [`UploadOptions::part_bytes`], each read from the file when it is sent, so the agent never
//! holds the bundle in memory. Before the first part, and after any failure, the client asks
//! the server where its upload stands (the status route): an upload cut short (connection
//! lost, agent restarted) sends only what the server lacks, and a bundle the server already
//! holds from this agent is not sent again (its first receipt is the answer). Failures are
//! retried with exponential backoff, up to [`UploadOptions::attempts`]; what the server
//! refuses for good (no certificate, too large) is not retried. While another request is
//! writing the same upload (`423`, or `uploading` in the status) the client waits, and the
//! waits count as failures only when the server's copy stopped growing. The receipt is
//! checked: its hash must be the bundle's.

use std::io::Read;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use hyper::Method;

use crate::client::HttpClient;
use crate::protocol::{
    EvidenceProgress, EvidenceReceipt, EvidenceStatus, EVIDENCE_ALERT_HEADER,
    EVIDENCE_CONTAINER_HEADER, EVIDENCE_INCIDENT_HEADER, EVIDENCE_NAME_HEADER,
    EVIDENCE_OFFSET_HEADER, EVIDENCE_PATH, EVIDENCE_SIZE_HEADER, EVIDENCE_STATUS_SUFFIX,
};

/// Why an upload did not end with a receipt.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum UploadError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("server {url}: {reason}")]
    Setup { url: String, reason: String },
    /// The server refused the bundle for good (not retried).
    #[error("server {url} refused the bundle: HTTP {status}: {message}")]
    Refused {
        url: String,
        status: u16,
        message: String,
    },
    /// Every attempt failed.
    #[error("server {url}: no receipt after {attempts} attempts ({sent} of {size} bytes held by the server at the last answer); last error: {last}")]
    Failed {
        url: String,
        attempts: u32,
        sent: u64,
        size: u64,
        last: String,
    },
    /// The server answered with a receipt for other bytes.
    #[error("server {url}: the receipt names {receipt} ({receipt_size} bytes), the bundle is {local} ({size} bytes)")]
    WrongReceipt {
        url: String,
        receipt: String,
        receipt_size: u64,
        local: String,
        size: u64,
    },
}

/// How an upload is made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UploadOptions {
    /// Bytes sent per request (default 8 MiB). Parts of at most
    /// [`crate::protocol::EVIDENCE_DRAIN_BYTES`] get the server's answer even when it does not
    /// store them.
    pub part_bytes: u64,
    /// Failed requests before giving up (default 6).
    pub attempts: u32,
    /// Wait after the first failure; doubled after each (default 1 s).
    pub first_backoff: Duration,
    /// Longest wait between attempts (default 30 s).
    pub max_backoff: Duration,
    /// Time allowed for one request and its answer (default 120 s).
    pub request_timeout: Duration,
}

impl Default for UploadOptions {
    fn default() -> Self {
        UploadOptions {
            part_bytes: 8 << 20,
            attempts: 6,
            first_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(30),
            request_timeout: Duration::from_secs(120),
        }
    }
}

/// What the agent says about the bundle (the server records it next to the agent's identity,
/// which it takes from the certificate).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EvidenceMeta {
    pub name: String,
    pub container: String,
    pub incident: String,
    pub alert_id: String,
}

/// A completed upload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Uploaded {
    pub receipt: EvidenceReceipt,
    /// SHA-256 of the local file, hex (equal to the receipt's).
    pub sha256: String,
    /// Requests that failed before the receipt came.
    pub failures: u32,
}

/// SHA-256 (hex) and size of the file at `path`, read in 256 KiB pieces.
pub fn hash_file(path: &Path) -> Result<(String, u64), UploadError> {
    let io = |source| UploadError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut f = std::fs::File::open(path).map_err(io)?;
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    let mut buf = vec![0u8; 256 << 10];
    let mut size = 0u64;
    loop {
        let n = f.read(&mut buf).map_err(io)?;
        if n == 0 {
            break;
        }
        size += n as u64;
        ctx.update(&buf[..n]);
    }
    Ok((hex::encode(ctx.finish().as_ref()), size))
}

/// Uploads the bundle at `path` to the server at `url` with the enrollment credentials in
/// `tls_dir` (`ca.crt`, `agent.crt`, `agent.key`).
pub async fn upload_evidence(
    url: &str,
    tls_dir: &Path,
    path: &Path,
    meta: &EvidenceMeta,
    opts: &UploadOptions,
) -> Result<Uploaded, UploadError> {
    let tls = crate::tls::agent_client_config(tls_dir).map_err(|e| UploadError::Setup {
        url: url.to_string(),
        reason: format!("TLS credentials: {e}"),
    })?;
    upload_with(url, tls, path, meta, opts).await
}

/// As [`upload_evidence`] with a ready TLS client configuration.
pub async fn upload_with(
    url: &str,
    tls: Arc<rustls::ClientConfig>,
    path: &Path,
    meta: &EvidenceMeta,
    opts: &UploadOptions,
) -> Result<Uploaded, UploadError> {
    let (sha256, size) = hash_file(path)?;
    let mut client = HttpClient::new(url, Some(tls))
        .map_err(|e| UploadError::Setup {
            url: url.to_string(),
            reason: e.to_string(),
        })?
        .with_timeout(opts.request_timeout)
        .with_max_response(1 << 20);
    let file = std::fs::File::open(path).map_err(|source| UploadError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let route = format!("{EVIDENCE_PATH}/{sha256}");
    let status_route = format!("{route}{EVIDENCE_STATUS_SUFFIX}");
    let size_s = size.to_string();
    let part = opts.part_bytes.max(1);
    let mut offset = 0u64;
    let mut failures = 0u32;
    let mut backoff = opts.first_backoff;
    // Ask where to start before sending a body (and again after anything that leaves it
    // unknown).
    let mut ask = true;
    // The server's offset at the last "another request is uploading it": a wait counts as a
    // failure only when that upload made no progress since.
    let mut busy_at: Option<u64> = None;
    let refused = |status: u16, message: String| UploadError::Refused {
        url: url.to_string(),
        status,
        message,
    };
    let accept = |receipt: EvidenceReceipt, failures: u32| {
        if receipt.sha256 != sha256 || receipt.size != size {
            return Err(UploadError::WrongReceipt {
                url: url.to_string(),
                receipt: receipt.sha256,
                receipt_size: receipt.size,
                local: sha256.clone(),
                size,
            });
        }
        Ok(Uploaded {
            receipt,
            sha256: sha256.clone(),
            failures,
        })
    };
    let progress = |body: &[u8]| serde_json::from_slice::<EvidenceProgress>(body).ok();
    loop {
        // Ok: go on at once; Err((what failed, whether it counts as a failure)).
        let step: Result<(), (String, bool)> = if ask {
            let answer = client
                .request(
                    Method::GET,
                    &status_route,
                    &[(EVIDENCE_SIZE_HEADER, size_s.as_str())],
                    Bytes::new(),
                )
                .await;
            match answer {
                Ok(r) if r.status == 200 => {
                    match serde_json::from_slice::<EvidenceStatus>(&r.body) {
                        Ok(st) => match st.receipt {
                            Some(receipt) => return accept(receipt, failures),
                            None if st.offset > size => Err((
                                format!("the server holds {} bytes of {size}", st.offset),
                                true,
                            )),
                            None if st.uploading => {
                                let moved = busy_at.is_none_or(|b| st.offset > b);
                                busy_at = Some(st.offset);
                                Err((
                                    format!(
                                        "another request is uploading this bundle ({} of {size} bytes held)",
                                        st.offset
                                    ),
                                    !moved,
                                ))
                            }
                            None => {
                                offset = st.offset;
                                ask = false;
                                continue;
                            }
                        },
                        Err(e) => Err((format!("the upload status is not JSON: {e}"), true)),
                    }
                }
                // A server without the status route: start at 0, as before it.
                Ok(r) if r.status == 404 || r.status == 405 => {
                    offset = 0;
                    ask = false;
                    continue;
                }
                Ok(r) if matches!(r.status, 400 | 401 | 403 | 413) => {
                    return Err(refused(r.status, r.body_text()))
                }
                Ok(r) => Err((format!("HTTP {}: {}", r.status, r.body_text()), true)),
                Err(e) => Err((e.to_string(), true)),
            }
        } else {
            let len = part.min(size - offset);
            let mut chunk = vec![0u8; len as usize];
            file.read_exact_at(&mut chunk, offset)
                .map_err(|source| UploadError::Io {
                    path: path.to_path_buf(),
                    source,
                })?;
            let offset_s = offset.to_string();
            let headers = [
                (EVIDENCE_SIZE_HEADER, size_s.as_str()),
                (EVIDENCE_OFFSET_HEADER, offset_s.as_str()),
                (EVIDENCE_NAME_HEADER, meta.name.as_str()),
                (EVIDENCE_CONTAINER_HEADER, meta.container.as_str()),
                (EVIDENCE_INCIDENT_HEADER, meta.incident.as_str()),
                (EVIDENCE_ALERT_HEADER, meta.alert_id.as_str()),
                ("content-type", "application/zstd"),
            ];
            let headers: Vec<(&str, &str)> =
                headers.into_iter().filter(|(_, v)| !v.is_empty()).collect();
            let answer = client
                .request(Method::PUT, &route, &headers, Bytes::from(chunk))
                .await;
            if answer
                .as_ref()
                .is_ok_and(|r| r.status != 200 && r.status != 202)
            {
                // The server may have answered without reading the whole body.
                client.disconnect();
            }
            match answer {
                Ok(r) if r.status == 200 => match serde_json::from_slice(&r.body) {
                    Ok(receipt) => return accept(receipt, failures),
                    Err(e) => {
                        return Err(UploadError::Failed {
                            url: url.to_string(),
                            attempts: failures + 1,
                            sent: size,
                            size,
                            last: format!("the receipt is not JSON: {e}"),
                        })
                    }
                },
                Ok(r) if r.status == 202 => match progress(&r.body) {
                    Some(p) if p.offset > offset && p.offset <= size => {
                        offset = p.offset;
                        continue;
                    }
                    _ => {
                        ask = true;
                        Err((
                            format!("HTTP 202 without progress: {}", r.body_text()),
                            true,
                        ))
                    }
                },
                Ok(r) if r.status == 409 => match progress(&r.body) {
                    Some(p) if p.offset <= size && p.offset != offset => {
                        // The server holds another part (an earlier attempt got further, or
                        // less far, than we knew): resume from there, at once.
                        offset = p.offset;
                        continue;
                    }
                    _ => {
                        ask = true;
                        Err((format!("HTTP 409: {}", r.body_text()), true))
                    }
                },
                Ok(r) if r.status == 423 => {
                    // Another request writes this upload: wait, then ask again.
                    ask = true;
                    let held = progress(&r.body).map_or(0, |p| p.offset);
                    let moved = busy_at.is_none_or(|b| held > b);
                    busy_at = Some(held);
                    Err((format!("HTTP 423: {}", r.body_text()), !moved))
                }
                Ok(r) if r.status == 422 => {
                    offset = 0;
                    Err((format!("HTTP 422: {}", r.body_text()), true))
                }
                Ok(r) if r.status == 400 => {
                    if let Some(p) = progress(&r.body).filter(|p| p.offset <= size) {
                        // The body was cut; what arrived is kept.
                        offset = p.offset;
                        Err((format!("HTTP 400: {}", r.body_text()), true))
                    } else {
                        return Err(refused(r.status, r.body_text()));
                    }
                }
                Ok(r) if matches!(r.status, 401 | 403 | 404 | 413) => {
                    return Err(refused(r.status, r.body_text()));
                }
                Ok(r) => {
                    match progress(&r.body).filter(|p| p.offset <= size) {
                        Some(p) => offset = p.offset,
                        None => ask = true,
                    }
                    Err((format!("HTTP {}: {}", r.status, r.body_text()), true))
                }
                Err(e) => {
                    // No answer: how much of the part arrived is the server's to say.
                    ask = true;
                    Err((e.to_string(), true))
                }
            }
        };
        let Err((failure, counts)) = step else {
            continue;
        };
        if counts {
            failures += 1;
            if failures >= opts.attempts {
                return Err(UploadError::Failed {
                    url: url.to_string(),
                    attempts: failures,
                    sent: offset,
                    size,
                    last: failure,
                });
            }
            tracing::warn!(
                "evidence upload of {} to {url}: attempt {failures} failed ({failure}); retrying in {backoff:?}",
                path.display()
            );
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(opts.max_backoff);
        } else {
            // Another request is getting the bundle there: wait the shortest time, then ask.
            tracing::debug!(
                "evidence upload of {} to {url}: {failure}; asking again in {:?}",
                path.display(),
                opts.first_backoff
            );
            backoff = opts.first_backoff;
            tokio::time::sleep(opts.first_backoff).await;
        }
    }
}
