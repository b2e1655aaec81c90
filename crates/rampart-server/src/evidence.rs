//! Forensic bundles uploaded by agents (protocol: `rampart_ship::protocol`, "Evidence").
//!
//! # On disk (under `<data_dir>/evidence/`, 0700)
//! ```text
//! partial/<agent-id>/<sha256>   an upload in progress: the bundle's first bytes, in order
//! blobs/<sha256>                a complete bundle whose bytes hash to its name
//! ```
//! Blobs are content-addressed: two agents uploading the same bytes share one blob, and
//! each gets its own record in the control database (`evidence` table: agent, host, size,
//! time of receipt, the agent's description). A record exists only for a blob the server
//! hashed itself.
//!
//! # Guarantees
//! * Who uploaded a bundle is the client certificate's agent (and its enrolled host name),
//!   never anything the request says; an agent only ever writes under its own `partial/`
//!   directory, and a blob only after its bytes hash to the name.
//! * Memory does not grow with the upload: each frame of the body is written to the partial
//!   file as it arrives. What the server keeps on disk is bounded by
//!   `limits.evidence_bundle_bytes` per bundle (checked from the headers before the body is
//!   read, and again for every frame) and `limits.evidence_agent_bytes` per agent (stored
//!   bundles and unfinished uploads together).
//! * An upload cut short resumes where the server's partial file ends: the status route
//!   (`GET /api/v1/evidence/{sha256}/upload`) tells the agent the offset before it sends a
//!   body, and a `PUT` starting elsewhere is answered `409` with it. A second upload of a
//!   bundle already stored by the same agent is answered with the first receipt, its body not
//!   stored.
//! * An answer that does not store the body (a replay, `409`, `423`) comes after at most
//!   [`EVIDENCE_DRAIN_BYTES`] of the body were read and discarded (within
//!   `limits.body_timeout`), never more: a client writing its whole part before reading gets
//!   the answer instead of a reset connection, and a longer body is not read at all (the
//!   answer closes the connection). Quotas and sizes are checked before a byte is read.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use axum::extract::{Path as UrlPath, Query as UrlQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use rampart_ship::protocol::{
    EvidenceProgress, EvidenceReceipt, EvidenceStatus, EVIDENCE_ALERT_HEADER,
    EVIDENCE_CONTAINER_HEADER, EVIDENCE_DRAIN_BYTES, EVIDENCE_INCIDENT_HEADER,
    EVIDENCE_NAME_HEADER, EVIDENCE_OFFSET_HEADER, EVIDENCE_SIZE_HEADER,
};
use tokio::io::AsyncWriteExt;

use crate::api::{authorize, err, ApiError, ConnInfo};
use crate::ca::AgentIdentity;
use crate::control::{now_ns, EvidenceFilter, Role};
use crate::server::App;

/// Uploads in progress, by `agent/sha256`: one request at a time writes a partial file.
#[derive(Debug, Default)]
pub(crate) struct Uploads(Mutex<HashSet<String>>);

struct Busy<'a> {
    set: &'a Uploads,
    key: String,
}

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        self.set
            .0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.key);
    }
}

impl Uploads {
    fn claim(&self, key: String) -> Option<Busy<'_>> {
        let mut s = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if !s.insert(key.clone()) {
            return None;
        }
        Some(Busy { set: self, key })
    }

    fn is_claimed(&self, key: &str) -> bool {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(key)
    }
}

fn root(data_dir: &Path) -> PathBuf {
    data_dir.join("evidence")
}

/// The blob of `sha256` (64 lower-case hex digits, checked by the caller).
pub(crate) fn blob_path(data_dir: &Path, sha256: &str) -> PathBuf {
    root(data_dir).join("blobs").join(sha256)
}

fn partial_path(data_dir: &Path, agent_id: &str, sha256: &str) -> PathBuf {
    root(data_dir).join("partial").join(agent_id).join(sha256)
}

/// `s` as a SHA-256 in lower-case hex, or `None`.
fn sha256_name(s: &str) -> Option<String> {
    (s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())).then(|| s.to_ascii_lowercase())
}

/// An agent id as a path component: the CA issues `agt-<hex>`; anything else (a CA used
/// for other certificates) is refused rather than put in a path.
fn safe_agent_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// A descriptive header: at most 256 printable characters (longer or unprintable: refused).
fn text_header(headers: &HeaderMap, name: &str) -> Result<String, ApiError> {
    let Some(v) = headers.get(name) else {
        return Ok(String::new());
    };
    match v.to_str() {
        Ok(s) if s.len() <= 256 && !s.chars().any(char::is_control) => Ok(s.to_string()),
        _ => Err(err(
            StatusCode::BAD_REQUEST,
            format!("header {name}: at most 256 printable ASCII characters"),
        )),
    }
}

fn number_header(headers: &HeaderMap, name: &str) -> Result<Option<u64>, ApiError> {
    match headers.get(name) {
        None => Ok(None),
        Some(v) => v
            .to_str()
            .ok()
            .and_then(|s| s.trim().parse::<u64>().ok())
            .map(Some)
            .ok_or_else(|| {
                err(
                    StatusCode::BAD_REQUEST,
                    format!("header {name}: expected a number of bytes"),
                )
            }),
    }
}

fn progress(status: StatusCode, offset: u64, size: u64, error: Option<String>) -> Response {
    (
        status,
        Json(EvidenceProgress {
            offset,
            size,
            error,
        }),
    )
        .into_response()
}

fn internal(e: impl std::fmt::Display) -> ApiError {
    err(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
}

/// The agent of the request's client certificate, refused (and counted) unless it is an
/// enrolled, unrevoked agent of this server; with the host name recorded at its enrollment.
async fn uploader(app: &Arc<App>, conn: &ConnInfo) -> Result<(AgentIdentity, String), ApiError> {
    let c = &app.counters;
    let Some(agent) = conn.peer.clone() else {
        c.evidence_refused.fetch_add(1, Ordering::Relaxed);
        return Err(err(
            StatusCode::UNAUTHORIZED,
            "uploading evidence needs an agent client certificate (rampart enroll)",
        ));
    };
    if app.is_revoked(&agent.serial) {
        c.evidence_refused.fetch_add(1, Ordering::Relaxed);
        return Err(err(
            StatusCode::FORBIDDEN,
            format!("agent {} is revoked", agent.agent_id),
        ));
    }
    if !safe_agent_id(&agent.agent_id) {
        c.evidence_refused.fetch_add(1, Ordering::Relaxed);
        return Err(err(
            StatusCode::FORBIDDEN,
            "the certificate's agent id is not one this server issues",
        ));
    }
    let sender = {
        let app = app.clone();
        let agent = agent.clone();
        tokio::task::spawn_blocking(move || app.sender_for(&agent))
            .await
            .map_err(internal)?
            .map_err(internal)?
    };
    let Some(sender) = sender else {
        c.evidence_refused.fetch_add(1, Ordering::Relaxed);
        return Err(err(
            StatusCode::FORBIDDEN,
            format!("agent {} is not in the control database", agent.agent_id),
        ));
    };
    Ok((agent, sender.hostname.unwrap_or_default()))
}

/// The bundle a request names: its SHA-256 (from the path) and announced size (checked
/// against `limits.evidence_bundle_bytes`).
fn named_bundle(
    app: &App,
    conn: &ConnInfo,
    agent: &AgentIdentity,
    name: &str,
    headers: &HeaderMap,
) -> Result<(String, u64), ApiError> {
    let sha256 = sha256_name(name).ok_or_else(|| {
        err(
            StatusCode::BAD_REQUEST,
            format!("{name:?}: a bundle is named by its SHA-256 (64 hex digits)"),
        )
    })?;
    let size = number_header(headers, EVIDENCE_SIZE_HEADER)?.ok_or_else(|| {
        err(
            StatusCode::BAD_REQUEST,
            format!("header {EVIDENCE_SIZE_HEADER} (the bundle's size) is required"),
        )
    })?;
    let limit = app.cfg.limits.evidence_bundle_bytes;
    if size > limit {
        return Err(too_large(
            app,
            conn,
            agent,
            format!("a bundle of {size} bytes is over limits.evidence_bundle_bytes ({limit})"),
        ));
    }
    Ok((sha256, size))
}

fn too_large(app: &App, conn: &ConnInfo, agent: &AgentIdentity, what: String) -> ApiError {
    app.counters
        .evidence_too_large
        .fetch_add(1, Ordering::Relaxed);
    tracing::warn!(remote = %conn.remote, agent = %agent.agent_id, "evidence upload refused: {what}");
    err(StatusCode::PAYLOAD_TOO_LARGE, what)
}

/// Where an agent's bundle stands before a byte of a body is read: stored before (the first
/// receipt, marked duplicate and counted), or open, when it fits the agent's quota (stored
/// bundles and unfinished uploads other than this one count against it).
async fn standing(
    app: &Arc<App>,
    conn: &ConnInfo,
    agent: &AgentIdentity,
    sha256: &str,
    size: u64,
) -> Result<Option<EvidenceReceipt>, ApiError> {
    let (stored, used) = {
        let app = app.clone();
        let (a, s) = (agent.agent_id.clone(), sha256.to_string());
        tokio::task::spawn_blocking(move || {
            let partial_dir = root(&app.cfg.data_dir).join("partial").join(&a);
            let held: u64 = std::fs::read_dir(&partial_dir)
                .map(|d| {
                    d.flatten()
                        .filter(|e| e.file_name().to_str() != Some(s.as_str()))
                        .filter_map(|e| e.metadata().ok())
                        .map(|m| m.len())
                        .sum()
                })
                .unwrap_or(0);
            Ok::<_, crate::control::ControlError>((
                app.control.evidence_of(&a, &s)?,
                app.control.evidence_bytes(&a)?.saturating_add(held),
            ))
        })
        .await
        .map_err(internal)?
        .map_err(internal)?
    };
    if let Some(mut r) = stored {
        r.duplicate = true;
        app.counters
            .evidence_duplicates
            .fetch_add(1, Ordering::Relaxed);
        return Ok(Some(r));
    }
    let quota = app.cfg.limits.evidence_agent_bytes;
    if used.saturating_add(size) > quota {
        return Err(too_large(
            app,
            conn,
            agent,
            format!(
                "agent {} has {used} bytes of evidence stored or being uploaded; {size} more is over limits.evidence_agent_bytes ({quota})",
                agent.agent_id
            ),
        ));
    }
    Ok(None)
}

/// Bytes held of an upload of `size` bytes in `partial`: a longer file was left by an upload
/// that announced another size, and the next `PUT` starts it again from 0.
fn held_of(partial: &Path, size: u64) -> u64 {
    match std::fs::metadata(partial).map(|m| m.len()) {
        Ok(n) if n <= size => n,
        _ => 0,
    }
}

/// `GET /api/v1/evidence/{sha256}/upload` (agent certificate): where this agent's upload of
/// the bundle stands, so that it sends only what the server lacks. The same refusals as the
/// `PUT` (certificate, name, size, quota), and nothing changes on the server.
pub(crate) async fn status(
    State(app): State<Arc<App>>,
    Extension(conn): Extension<ConnInfo>,
    UrlPath(name): UrlPath<String>,
    headers: HeaderMap,
) -> Result<Json<EvidenceStatus>, ApiError> {
    let (agent, _) = uploader(&app, &conn).await?;
    let (sha256, size) = named_bundle(&app, &conn, &agent, &name, &headers)?;
    if let Some(r) = standing(&app, &conn, &agent, &sha256, size).await? {
        return Ok(Json(EvidenceStatus {
            offset: r.size,
            size: r.size,
            uploading: false,
            receipt: Some(r),
        }));
    }
    let partial = partial_path(&app.cfg.data_dir, &agent.agent_id, &sha256);
    let uploading = app
        .evidence_uploads
        .is_claimed(&format!("{}/{sha256}", agent.agent_id));
    let offset = tokio::task::spawn_blocking(move || held_of(&partial, size))
        .await
        .map_err(internal)?;
    Ok(Json(EvidenceStatus {
        offset,
        size,
        uploading,
        receipt: None,
    }))
}

/// `answer` to a request whose body is not stored, after reading and discarding at most
/// [`EVIDENCE_DRAIN_BYTES`] of the body within `limits.body_timeout`.
///
/// Why read it at all: hyper (like most servers) closes a connection whose request body was
/// not read, and the kernel then resets it under a client still writing its part; the client
/// sees its write fail, not the answer (RFC 9112 section 9.6, "the TCP reset problem"). Why
/// bounded: the answer must not let a client make the server read without end. A body
/// announced longer, or found longer, is left unread and the answer closes the connection.
/// A client that sent `expect: 100-continue` has not sent its body: hyper answers without
/// `100 Continue`, and nothing is read.
async fn answer_unread(
    app: &App,
    headers: &HeaderMap,
    body: axum::body::Body,
    answer: Response,
) -> Response {
    use http_body_util::BodyExt;
    let expects_continue = headers
        .get(axum::http::header::EXPECT)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
    if expects_continue {
        return answer;
    }
    let close = |mut answer: Response| {
        answer.headers_mut().insert(
            axum::http::header::CONNECTION,
            axum::http::HeaderValue::from_static("close"),
        );
        answer
    };
    let declared = headers
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|n| n > EVIDENCE_DRAIN_BYTES) {
        return close(answer);
    }
    let mut read = 0u64;
    let mut body = body;
    let drain = async {
        while let Some(frame) = body.frame().await {
            let Ok(frame) = frame else {
                return false;
            };
            if let Ok(data) = frame.into_data() {
                read += data.len() as u64;
                if read > EVIDENCE_DRAIN_BYTES {
                    return false;
                }
            }
        }
        true
    };
    let whole = matches!(
        tokio::time::timeout(app.timeouts.body, drain).await,
        Ok(true)
    );
    app.counters
        .evidence_drained_bytes
        .fetch_add(read, Ordering::Relaxed);
    if whole {
        answer
    } else {
        close(answer)
    }
}

/// `PUT /api/v1/evidence/{sha256}` (agent certificate).
pub(crate) async fn upload(
    State(app): State<Arc<App>>,
    Extension(conn): Extension<ConnInfo>,
    UrlPath(name): UrlPath<String>,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Result<Response, ApiError> {
    let c = &app.counters;
    // Every check that needs no body, before a byte of it is read. A refusal here still
    // reads (a bounded part of) the body before answering, like every early answer of this
    // route: otherwise the reset of the unread connection reaches a client still writing
    // its part before the answer does, and it sees a failed write, not the 401 or 413
    // (`answer_unread`).
    let checked = async {
        // Who it is before a byte of the body is read.
        let (agent, hostname) = uploader(&app, &conn).await?;
        let (sha256, size) = named_bundle(&app, &conn, &agent, &name, &headers)?;
        let offset = number_header(&headers, EVIDENCE_OFFSET_HEADER)?.unwrap_or(0);
        if offset > size {
            return Err(err(
                StatusCode::BAD_REQUEST,
                format!("offset {offset} is past the bundle's size {size}"),
            ));
        }
        if let Some(len) = number_header(&headers, axum::http::header::CONTENT_LENGTH.as_str())? {
            if len > size - offset {
                return Err(too_large(
                    &app,
                    &conn,
                    &agent,
                    format!(
                        "a body of {len} bytes at offset {offset} runs past the bundle's size {size}"
                    ),
                ));
            }
        }
        let described = EvidenceReceipt {
            sha256: sha256.clone(),
            size,
            received_ns: 0,
            agent_id: agent.agent_id.clone(),
            hostname,
            name: text_header(&headers, EVIDENCE_NAME_HEADER)?,
            container: text_header(&headers, EVIDENCE_CONTAINER_HEADER)?,
            incident: text_header(&headers, EVIDENCE_INCIDENT_HEADER)?,
            alert_id: text_header(&headers, EVIDENCE_ALERT_HEADER)?,
            duplicate: false,
        };
        let standing = standing(&app, &conn, &agent, &sha256, size).await?;
        Ok::<_, ApiError>((agent, sha256, size, offset, described, standing))
    };
    let (agent, sha256, size, offset, described, standing) = match checked.await {
        Ok(c) => c,
        Err(refused) => {
            return Ok(answer_unread(&app, &headers, body, refused.into_response()).await);
        }
    };
    // A replay or a retry after a lost answer: the first receipt, the body not stored.
    if let Some(r) = standing {
        return Ok(answer_unread(&app, &headers, body, Json(r).into_response()).await);
    }
    let data_dir = app.cfg.data_dir.clone();
    let partial = partial_path(&data_dir, &agent.agent_id, &sha256);
    let held = |p: &Path| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
    let Some(claim) = app
        .evidence_uploads
        .claim(format!("{}/{sha256}", agent.agent_id))
    else {
        let answer = progress(
            StatusCode::LOCKED,
            held_of(&partial, size),
            size,
            Some("another request is uploading this bundle".into()),
        );
        return Ok(answer_unread(&app, &headers, body, answer).await);
    };
    if let Some(dir) = partial.parent() {
        crate::fsmode::secret_dir(&root(&data_dir)).map_err(internal)?;
        crate::fsmode::secret_dir(dir).map_err(internal)?;
    }
    let mut have = held(&partial);
    if have > size {
        // Left by an upload that announced another size: start again.
        let _ = std::fs::remove_file(&partial);
        have = 0;
    }
    if offset != have {
        let answer = progress(
            StatusCode::CONFLICT,
            have,
            size,
            Some(format!("the server holds {have} bytes; send from there")),
        );
        // Not while holding the claim: the drain may take up to body_timeout.
        drop(claim);
        return Ok(answer_unread(&app, &headers, body, answer).await);
    }
    let mut file = {
        use std::os::unix::fs::OpenOptionsExt;
        let f = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .mode(0o600)
            .open(&partial)
            .map_err(|e| internal(format!("{}: {e}", partial.display())))?;
        tokio::fs::File::from_std(f)
    };
    let room = size - offset;
    let mut written = 0u64;
    let mut body = body;
    let read = async {
        use http_body_util::BodyExt;
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| format!("reading the body: {e}"))?;
            let Ok(data) = frame.into_data() else {
                continue;
            };
            if written + data.len() as u64 > room {
                return Err(format!(
                    "the body runs past the bundle's size {size} (offset {offset})"
                ));
            }
            // Flushed frame by frame: tokio's File hands writes to a blocking thread, and a
            // client that disconnects drops this future; what arrived must be on disk then
            // (the upload resumes from it).
            file.write_all(&data)
                .await
                .map_err(|e| format!("{}: {e}", partial.display()))?;
            file.flush()
                .await
                .map_err(|e| format!("{}: {e}", partial.display()))?;
            written += data.len() as u64;
        }
        Ok(())
    };
    let outcome = tokio::time::timeout(app.timeouts.body, read).await;
    let _ = file.flush().await;
    let _ = file.sync_data().await;
    drop(file);
    c.evidence_bytes.fetch_add(written, Ordering::Relaxed);
    match outcome {
        Ok(Ok(())) => {}
        Ok(Err(e)) if e.contains("runs past") => {
            // Keep only what was there before this request: the rest was not asked for.
            if let Ok(f) = std::fs::OpenOptions::new().write(true).open(&partial) {
                let _ = f.set_len(offset);
            }
            return Err(too_large(&app, &conn, &agent, e));
        }
        Ok(Err(e)) => {
            // What arrived is kept: the agent resumes from it.
            return Ok(progress(
                StatusCode::BAD_REQUEST,
                offset + written,
                size,
                Some(e),
            ));
        }
        Err(_) => {
            c.connections_idle_closed.fetch_add(1, Ordering::Relaxed);
            return Ok(progress(
                StatusCode::REQUEST_TIMEOUT,
                offset + written,
                size,
                Some(format!(
                    "the body took longer than limits.body_timeout ({:?}); send the rest from the offset",
                    app.timeouts.body
                )),
            ));
        }
    }
    let have = offset + written;
    if have < size {
        return Ok(progress(StatusCode::ACCEPTED, have, size, None));
    }
    // Whole: hash what is on disk (streamed), then keep it under its name.
    let app2 = app.clone();
    let done = tokio::task::spawn_blocking(move || finish(&app2, &data_dir, &partial, described))
        .await
        .map_err(internal)?;
    match done {
        Ok(r) => {
            c.evidence_stored.fetch_add(1, Ordering::Relaxed);
            tracing::info!(agent = %r.agent_id, host = %r.hostname, sha256 = %r.sha256, size = r.size,
                container = %r.container, incident = %r.incident, "forensic bundle stored");
            Ok(Json(r).into_response())
        }
        Err(Finish::Mismatch(actual)) => {
            c.evidence_hash_mismatch.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(agent = %agent.agent_id, named = %sha256, %actual, "evidence upload does not hash to its name: discarded");
            Err(err(
                StatusCode::UNPROCESSABLE_ENTITY,
                format!("the {size} bytes received hash to {actual}, not {sha256}: discarded; upload again from 0"),
            ))
        }
        Err(Finish::Failed(e)) => Err(internal(e)),
    }
}

enum Finish {
    Mismatch(String),
    Failed(String),
}

fn finish(
    app: &App,
    data_dir: &Path,
    partial: &Path,
    mut r: EvidenceReceipt,
) -> Result<EvidenceReceipt, Finish> {
    let failed = |p: &Path, e: std::io::Error| Finish::Failed(format!("{}: {e}", p.display()));
    let actual = {
        use std::io::Read;
        let mut f = std::fs::File::open(partial).map_err(|e| failed(partial, e))?;
        let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
        let mut buf = vec![0u8; 256 << 10];
        loop {
            let n = f.read(&mut buf).map_err(|e| failed(partial, e))?;
            if n == 0 {
                break;
            }
            ctx.update(&buf[..n]);
        }
        hex::encode(ctx.finish().as_ref())
    };
    if actual != r.sha256 {
        let _ = std::fs::remove_file(partial);
        return Err(Finish::Mismatch(actual));
    }
    let blob = blob_path(data_dir, &r.sha256);
    if let Some(dir) = blob.parent() {
        crate::fsmode::secret_dir(dir).map_err(|e| failed(dir, e))?;
    }
    if blob.exists() {
        // The same bytes from another agent (or an earlier record lost): one copy is enough.
        let _ = std::fs::remove_file(partial);
    } else {
        std::fs::rename(partial, &blob).map_err(|e| failed(&blob, e))?;
        if let Some(dir) = blob.parent() {
            if let Ok(d) = std::fs::File::open(dir) {
                let _ = d.sync_all();
            }
        }
    }
    r.received_ns = now_ns();
    app.control
        .add_evidence_on(&r, &app.instance)
        .map_err(|e| Finish::Failed(e.to_string()))
}

/// `GET /api/v1/evidence` (analyst): stored bundles matching the filters.
pub(crate) async fn list(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    UrlQuery(f): UrlQuery<EvidenceFilter>,
) -> Result<Json<serde_json::Value>, ApiError> {
    authorize(&app, &headers, Role::Analyst)?;
    let rows = tokio::task::spawn_blocking(move || app.control.evidence(&f))
        .await
        .map_err(internal)?
        .map_err(internal)?;
    Ok(Json(serde_json::json!({ "bundles": rows })))
}

/// `GET /api/v1/evidence/{sha256}` (analyst): the bundle's bytes, streamed from disk.
pub(crate) async fn download(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    UrlPath(name): UrlPath<String>,
) -> Result<Response, ApiError> {
    authorize(&app, &headers, Role::Analyst)?;
    let sha256 = sha256_name(&name)
        .ok_or_else(|| err(StatusCode::BAD_REQUEST, "not a SHA-256 (64 hex digits)"))?;
    let known = {
        let app = app.clone();
        let s = sha256.clone();
        tokio::task::spawn_blocking(move || {
            app.control.evidence(&EvidenceFilter {
                sha256: Some(s),
                limit: 1,
                ..EvidenceFilter::default()
            })
        })
        .await
        .map_err(internal)?
        .map_err(internal)?
    };
    let Some(rec) = known.into_iter().next() else {
        return Err(err(StatusCode::NOT_FOUND, format!("no bundle {sha256}")));
    };
    let path = blob_path(&app.cfg.data_dir, &sha256);
    let file = match tokio::fs::File::open(&path).await {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && app.control.is_shared() => {
            // Listed fleet-wide, stored by the server that received it.
            let app2 = app.clone();
            let s = sha256.clone();
            let servers = tokio::task::spawn_blocking(move || app2.control.evidence_servers(&s))
                .await
                .map_err(internal)?
                .map_err(internal)?;
            return Err(err(
                StatusCode::NOT_FOUND,
                format!(
                    "bundle {sha256} is stored by server {} of the fleet, not this one ({}): download it there",
                    servers.join(", "),
                    app.instance
                ),
            ));
        }
        Err(e) => return Err(internal(format!("bundle {sha256}: {e}"))),
    };
    let len = file.metadata().await.map(|m| m.len()).unwrap_or(rec.size);
    let body =
        axum::body::Body::from_stream(tokio_util::io::ReaderStream::with_capacity(file, 64 << 10));
    Ok((
        [
            ("content-type", "application/zstd".to_string()),
            ("content-length", len.to_string()),
            (
                "content-disposition",
                format!("attachment; filename=\"{sha256}.tar.zst\""),
            ),
        ],
        body,
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_ids_that_become_paths_are_checked() {
        let h = "AB".repeat(32);
        assert_eq!(sha256_name(&h), Some("ab".repeat(32)));
        assert_eq!(sha256_name("../../etc/passwd"), None);
        assert_eq!(sha256_name(&"a".repeat(63)), None);
        assert_eq!(sha256_name(&format!("{}/", "a".repeat(63))), None);
        assert!(safe_agent_id("agt-0123abcd"));
        assert!(!safe_agent_id("../agt"));
        assert!(!safe_agent_id(""));
        assert!(!safe_agent_id("a/b"));
    }
}
