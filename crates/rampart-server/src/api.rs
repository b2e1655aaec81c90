//! The HTTPS API: the TLS accept loop and the routes.
//!
//! | route | who | what |
//! |---|---|---|
//! | `POST /api/v1/ingest` | agent certificate | store a batch (see `rampart_ship::protocol`) |
//! | `POST /api/v1/enroll` | enrollment token | issue an agent certificate |
//! | `GET /api/v1/ca`, `GET /api/v1/crl` | anyone | the CA certificate, the revocation list (PEM) |
//! | `GET /api/v1/alerts` | read-only | alerts matching the filters |
//! | `GET /api/v1/agents` | read-only | enrolled agents |
//! | `GET /api/v1/records` | analyst | events and alerts matching the filters |
//! | `GET /api/v1/count` | analyst | how many records match |
//! | `GET /api/v1/retention` | analyst | the retention log |
//! | `GET /api/v1/mesh` | analyst | the mesh's services, edges with last use, refusals (`since`, default 7 days; `crate::meshview`) |
//! | `POST /api/v1/agents/{id}/revoke` | admin | revoke an agent's certificate |
//! | `POST /api/v1/enroll-tokens` | admin | `{"region", "uses", "ttl"}` → a token |
//! | `POST /api/v1/tokens` | admin | `{"name", "role"}` → an API token |
//! | `POST /api/v1/retention/run` | admin | run the retention job now |
//! | `GET /api/v1/vulndb/manifest` | agent certificate | the signed manifest of the vulnerability database bundle (`crate::vulndb`) |
//! | `GET /api/v1/vulndb/bundle/{sha256}` | agent certificate | the bundle's payload |
//! | `PUT /api/v1/evidence/{sha256}` | agent certificate | upload a forensic bundle (`crate::evidence`) |
//! | `GET /api/v1/evidence/{sha256}/upload` | agent certificate | where the agent's upload of the bundle stands (offset held, or the first receipt) |
//! | `GET /api/v1/evidence` | analyst | stored forensic bundles (`host`, `agent`, `container`, `incident`, `alert`, `sha256`, `limit`) |
//! | `GET /api/v1/evidence/{sha256}` | analyst | a bundle's bytes |
//! | `GET /api/v1/config/manifest` | agent certificate | the signed manifest of the fleet configuration bundle (`crate::fleetconfig`); the request reports the version the agent runs |
//! | `GET /api/v1/config/bundle/{sha256}` | agent certificate | the configuration bundle's payload |
//! | `GET /api/v1/config/status` | read-only | the published configuration and the version every agent runs |
//! | `GET /metrics` | any API token (or anyone with `metrics_public`) | Prometheus metrics |
//! | `GET /healthz` | anyone | `ok` |
//!
//! Filters (query string): `kind` (`event`/`alert`), `id`, `host`, `container` (id prefix or
//! name), `rule`, `type`, `region`, `agent`, `since`, `until` (RFC 3339, Unix nanoseconds, or a
//! duration such as `15m` meaning that long ago), `limit` (default 100, at most 10 000; a page
//! also ends at [`crate::store::DEFAULT_QUERY_BYTES`] of records).
//! API tokens go in `Authorization: Bearer <token>`.
//!
//! Limits (`limits:` of the configuration, see `crate::config::Limits`): connections are
//! capped and timed out (handshake, headers, idle); ingest checks the agent certificate before
//! reading its body, caps the body compressed and decompressed and the batch's lines, and
//! weighs batches against a memory budget; evidence uploads check the agent certificate and
//! the announced size before reading their body and write it to disk as it arrives; the admin routes with a body check the token
//! before reading it; every other route reads at most `request_body_bytes`.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::extract::{DefaultBodyLimit, Path as UrlPath, Query as UrlQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use rampart_ship::protocol::{
    enroll_signed_message, EnrollRequest, EnrollResponse, IngestResponse, BATCH_AFTER_HEADER,
    BATCH_LAST_HEADER, BATCH_UNSENT_HEADER,
};
use serde::Deserialize;
use tokio::sync::watch;

use crate::ca::AgentIdentity;
use crate::control::{now_ns, AgentRecord, Role};
use crate::ingest::{decode_body_capped, decoded_size_hint, parse_batch_capped, BodyError};
use crate::sequence::BatchPlace;
use crate::server::{peer_identity, AgentStats, App};
use crate::store::{Query, RecordKind, StoredRecord};

/// What the handlers know about the connection (an extension of every request, extra routes
/// included).
#[derive(Debug, Clone)]
pub struct ConnInfo {
    /// The agent of a verified client certificate.
    pub peer: Option<AgentIdentity>,
    /// The client's address.
    pub remote: SocketAddr,
}

/// An error answer: status and a JSON `{"error": ...}` body.
#[derive(Debug)]
pub(crate) struct ApiError(StatusCode, String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(serde_json::json!({ "error": self.1 }))).into_response()
    }
}

pub(crate) fn err(status: StatusCode, msg: impl Into<String>) -> ApiError {
    ApiError(status, msg.into())
}

/// Accepts TLS connections until `stop`, at most `limits.max_connections` at once (more are
/// closed as they are accepted and counted). A connection gets `limits.handshake_timeout` for
/// its TLS handshake, `limits.header_timeout` for each request's headers, and is closed after
/// `limits.idle_timeout` without a byte read or written.
pub(crate) async fn serve(
    app: Arc<App>,
    listener: tokio::net::TcpListener,
    extra: Router,
    mut stop: watch::Receiver<bool>,
) {
    let router = router(app.clone())
        .merge(extra)
        // Every body but ingest's (read by its handler, after the agent is authenticated).
        .layer(DefaultBodyLimit::max(app.cfg.limits.request_body_bytes));
    let timeouts = app.timeouts;
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = stop.wait_for(|s| *s) => return,
        };
        let (tcp, remote) = match accepted {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!("accept: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(permit) = app.connections.clone().try_acquire_owned() else {
            app.counters
                .connections_refused
                .fetch_add(1, Ordering::Relaxed);
            tracing::debug!(%remote, "connection refused: limits.max_connections open");
            drop(tcp);
            continue;
        };
        let _ = tcp.set_nodelay(true);
        let acceptor = tokio_rustls::TlsAcceptor::from(app.tls_config());
        let router = router.clone();
        let app = app.clone();
        let mut stop = stop.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let tls = match tokio::time::timeout(timeouts.handshake, acceptor.accept(tcp)).await {
                Ok(Ok(t)) => t,
                Ok(Err(e)) => {
                    app.counters
                        .tls_handshake_failures
                        .fetch_add(1, Ordering::Relaxed);
                    tracing::info!(%remote, "TLS handshake refused: {e}");
                    return;
                }
                Err(_) => {
                    app.counters
                        .tls_handshake_failures
                        .fetch_add(1, Ordering::Relaxed);
                    return;
                }
            };
            let peer = peer_identity(tls.get_ref().1.peer_certificates());
            let svc = router.layer(Extension(ConnInfo { peer, remote }));
            let activity = Activity::default();
            let io = Watched {
                inner: tls,
                activity: activity.clone(),
            };
            let conn = hyper::server::conn::http1::Builder::new()
                .keep_alive(true)
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(timeouts.header)
                .serve_connection(TokioIo::new(io), TowerToHyperService::new(svc));
            tokio::pin!(conn);
            let idle = async {
                loop {
                    tokio::time::sleep(timeouts.idle / 4).await;
                    if activity.idle_for() >= timeouts.idle {
                        return;
                    }
                }
            };
            tokio::select! {
                _ = conn.as_mut() => {}
                () = idle => {
                    app.counters.connections_idle_closed.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(%remote, "connection closed: idle");
                }
                () = stopped(&mut stop) => {
                    conn.as_mut().graceful_shutdown();
                    let _ = tokio::time::timeout(Duration::from_secs(5), conn).await;
                }
            }
        });
    }
}

/// When a connection last read or wrote a byte (ms since `start`).
#[derive(Clone)]
struct Activity {
    start: std::time::Instant,
    last_ms: Arc<std::sync::atomic::AtomicU64>,
}

impl Default for Activity {
    fn default() -> Self {
        Activity {
            start: std::time::Instant::now(),
            last_ms: Arc::new(std::sync::atomic::AtomicU64::new(0)),
        }
    }
}

impl Activity {
    fn touch(&self) {
        self.last_ms
            .store(self.start.elapsed().as_millis() as u64, Ordering::Relaxed);
    }

    fn idle_for(&self) -> Duration {
        let now = self.start.elapsed().as_millis() as u64;
        Duration::from_millis(now.saturating_sub(self.last_ms.load(Ordering::Relaxed)))
    }
}

/// A connection's stream that records its [`Activity`].
struct Watched<S> {
    inner: S,
    activity: Activity,
}

impl<S: tokio::io::AsyncRead + Unpin> tokio::io::AsyncRead for Watched<S> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = std::pin::Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.activity.touch();
        }
        r
    }
}

impl<S: tokio::io::AsyncWrite + Unpin> tokio::io::AsyncWrite for Watched<S> {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        let r = std::pin::Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(r, std::task::Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        r
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> std::task::Poll<std::io::Result<usize>> {
        let r = std::pin::Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(r, std::task::Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        r
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

fn router(app: Arc<App>) -> Router {
    // Admin routes with a JSON body: the token is checked before the body is read.
    let admin_json = Router::new()
        .route("/api/v1/enroll-tokens", post(enroll_token))
        .route("/api/v1/tokens", post(api_token))
        .route_layer(axum::middleware::from_fn_with_state(
            app.clone(),
            admin_first,
        ));
    Router::new()
        .merge(admin_json)
        .route("/api/v1/ingest", post(ingest))
        .route("/api/v1/enroll", post(enroll))
        .route("/api/v1/ca", get(ca_cert))
        .route("/api/v1/crl", get(crl))
        .route("/api/v1/mesh/certificate", post(mesh_certificate))
        .route("/api/v1/mesh", get(mesh_view))
        .route("/api/v1/records", get(records))
        .route("/api/v1/alerts", get(alerts))
        .route("/api/v1/count", get(count))
        .route("/api/v1/agents", get(agents))
        .route("/api/v1/agents/{id}/revoke", post(revoke))
        .route("/api/v1/retention", get(retention_log))
        .route("/api/v1/retention/run", post(retention_run))
        .route("/api/v1/vulndb/manifest", get(vulndb_manifest))
        .route("/api/v1/vulndb/bundle/{sha256}", get(vulndb_bundle))
        .route("/api/v1/evidence", get(crate::evidence::list))
        .route(
            "/api/v1/evidence/{sha256}",
            axum::routing::put(crate::evidence::upload).get(crate::evidence::download),
        )
        .route(
            "/api/v1/evidence/{sha256}/upload",
            get(crate::evidence::status),
        )
        .route("/api/v1/config/manifest", get(config_manifest))
        .route("/api/v1/config/bundle/{sha256}", get(config_bundle))
        .route("/api/v1/config/status", get(config_status))
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .with_state(app)
}

/// Refuses a request without an admin token before its body is read (the handler, whose
/// extractors read the body, runs only after).
async fn admin_first(
    State(app): State<Arc<App>>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let checked = {
        let app = app.clone();
        let headers = req.headers().clone();
        tokio::task::spawn_blocking(move || authorize(&app, &headers, Role::Admin).map(|_| ()))
            .await
    };
    match checked {
        Ok(Ok(())) => next.run(req).await,
        Ok(Err(e)) => e.into_response(),
        Err(e) => err(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

/// Checks the bearer token and that its role is at least `min`.
pub(crate) fn authorize(
    app: &App,
    headers: &HeaderMap,
    min: Role,
) -> Result<(String, Role), ApiError> {
    let token = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or_else(|| {
            err(
                StatusCode::UNAUTHORIZED,
                "an API token is required (Authorization: Bearer ...)",
            )
        })?;
    let (name, role) = app
        .control
        .api_token_role(token.trim())
        .map_err(|e| err(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
        .ok_or_else(|| err(StatusCode::UNAUTHORIZED, "unknown or revoked API token"))?;
    if role < min {
        return Err(err(
            StatusCode::FORBIDDEN,
            format!(
                "token {name:?} has role {}; this needs {}",
                role.as_str(),
                min.as_str()
            ),
        ));
    }
    Ok((name, role))
}

async fn ingest(
    State(app): State<Arc<App>>,
    Extension(conn): Extension<ConnInfo>,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Result<Json<IngestResponse>, ApiError> {
    // Who it is before a byte of the body is read: a refused request's body is never read
    // (the connection is closed after the answer).
    let Some(agent) = conn.peer else {
        app.counters.ingest_refused.fetch_add(1, Ordering::Relaxed);
        tracing::info!(remote = %conn.remote, "ingest without an agent certificate refused");
        return Err(err(
            StatusCode::UNAUTHORIZED,
            "ingest needs an agent client certificate (rampart enroll)",
        ));
    };
    // A connection opened before a revocation stays open; refuse it per request too.
    if app.is_revoked(&agent.serial) {
        app.counters.ingest_refused.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(remote = %conn.remote, agent = %agent.agent_id, "ingest from a revoked agent refused");
        return Err(err(
            StatusCode::FORBIDDEN,
            format!("agent {} is revoked", agent.agent_id),
        ));
    }
    let sender = {
        let app = app.clone();
        let agent = agent.clone();
        tokio::task::spawn_blocking(move || app.sender_for(&agent))
            .await
            .map_err(|e| err(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
            .map_err(|e| err(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
    };
    let Some(sender) = sender else {
        app.counters.ingest_refused.fetch_add(1, Ordering::Relaxed);
        return Err(err(
            StatusCode::FORBIDDEN,
            format!("agent {} is not in the control database", agent.agent_id),
        ));
    };
    let limits = &app.cfg.limits;
    let cap = limits.ingest_body_bytes;
    let too_large = |what: String| {
        app.counters
            .ingest_too_large
            .fetch_add(1, Ordering::Relaxed);
        app.account(
            &agent.agent_id,
            AgentStats {
                refused: 1,
                ..AgentStats::default()
            },
        );
        tracing::warn!(remote = %conn.remote, agent = %agent.agent_id, "ingest batch refused: {what}");
        err(StatusCode::PAYLOAD_TOO_LARGE, what)
    };
    if let Some(len) = headers
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
    {
        if len > cap as u64 {
            return Err(too_large(format!(
                "body of {len} bytes is over limits.ingest_body_bytes ({cap})"
            )));
        }
    }
    let encoding = headers
        .get("content-encoding")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let place = batch_place(&headers)?;
    let unsent = headers
        .get(BATCH_UNSENT_HEADER)
        .is_some_and(|v| v.as_bytes() == b"1");
    // The memory of batches being read, decompressed and parsed is bounded: a batch first
    // weighs its body (as announced), then what it decompresses to (below); others wait.
    let kib = |bytes: usize| {
        u32::try_from(bytes.div_ceil(1024))
            .unwrap_or(u32::MAX)
            .clamp(1, app.ingest_memory_kib)
    };
    let announced = headers
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<usize>().ok())
        .unwrap_or(cap);
    let mut weight = app
        .ingest_memory
        .clone()
        .acquire_many_owned(kib(announced))
        .await
        .map_err(|e| err(StatusCode::SERVICE_UNAVAILABLE, e.to_string()))?;
    let body = match tokio::time::timeout(
        app.timeouts.body,
        http_body_util::BodyExt::collect(http_body_util::Limited::new(body, cap)),
    )
    .await
    {
        Ok(Ok(b)) => b.to_bytes(),
        Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => {
            return Err(too_large(format!(
                "body is over limits.ingest_body_bytes ({cap})"
            )));
        }
        Ok(Err(e)) => {
            app.counters.ingest_errors.fetch_add(1, Ordering::Relaxed);
            return Err(err(
                StatusCode::BAD_REQUEST,
                format!("reading the body: {e}"),
            ));
        }
        Err(_) => {
            app.counters
                .connections_idle_closed
                .fetch_add(1, Ordering::Relaxed);
            return Err(err(
                StatusCode::REQUEST_TIMEOUT,
                format!(
                    "the body took longer than limits.body_timeout ({:?})",
                    app.timeouts.body
                ),
            ));
        }
    };
    // Then the decompressed text and the records parsed from it. Waiting for that while
    // holding the body's weight is bounded by body_timeout (503: the agent retries), so two
    // batches cannot wait for each other for ever.
    let more = kib(2 * decoded_size_hint(&body, encoding.as_deref(), cap))
        .min(
            app.ingest_memory_kib
                .saturating_sub(weight.num_permits() as u32),
        )
        .max(1);
    match tokio::time::timeout(
        app.timeouts.body,
        app.ingest_memory.clone().acquire_many_owned(more),
    )
    .await
    {
        Ok(Ok(p)) => weight.merge(p),
        _ => {
            app.counters.ingest_errors.fetch_add(1, Ordering::Relaxed);
            return Err(err(
                StatusCode::SERVICE_UNAVAILABLE,
                "ingest is at limits.ingest_memory_bytes; retry",
            ));
        }
    }
    let app2 = app.clone();
    let s2 = sender.clone();
    let max_lines = limits.ingest_lines;
    let parsed = tokio::task::spawn_blocking(move || {
        let raw = decode_body_capped(&body, encoding.as_deref(), cap)?;
        drop(body);
        let parsed =
            parse_batch_capped(&raw, &s2, app2.anonymiser(&s2.region), now_ns(), max_lines)?;
        Ok::<_, BodyError>((parsed, raw.len()))
    })
    .await
    .map_err(|e| err(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    drop(weight);
    let (parsed, bytes) = match parsed {
        Ok(p) => p,
        Err(e @ (BodyError::TooLarge(_) | BodyError::TooManyLines(_))) => {
            return Err(too_large(e.to_string()))
        }
        Err(e) => {
            app.counters.ingest_errors.fetch_add(1, Ordering::Relaxed);
            app.account(
                &agent.agent_id,
                AgentStats {
                    refused: 1,
                    ..AgentStats::default()
                },
            );
            return Err(err(StatusCode::BAD_REQUEST, e.to_string()));
        }
    };
    app.account(
        &agent.agent_id,
        AgentStats {
            bytes: bytes as u64,
            ..AgentStats::default()
        },
    );
    let response = app
        .commit_batch(&sender, parsed, place, unsent)
        .await
        .map_err(|e| {
            tracing::error!(agent = %agent.agent_id, "storing a batch: {e}");
            err(StatusCode::SERVICE_UNAVAILABLE, format!("store: {e}"))
        })?;
    app.saw_agent(&agent.agent_id);
    Ok(Json(response))
}

/// The batch's place in its agent's queue, from [`BATCH_LAST_HEADER`] and
/// [`BATCH_AFTER_HEADER`]; `None` without the first (an older agent: committed as it comes).
/// A header that is not a number is refused.
fn batch_place(headers: &HeaderMap) -> Result<Option<BatchPlace>, ApiError> {
    let number = |name: &str| -> Result<Option<u64>, ApiError> {
        match headers.get(name) {
            None => Ok(None),
            Some(v) => v
                .to_str()
                .ok()
                .and_then(|v| v.trim().parse().ok())
                .map(Some)
                .ok_or_else(|| {
                    err(
                        StatusCode::BAD_REQUEST,
                        format!("header {name}: expected a queue sequence number"),
                    )
                }),
        }
    };
    let after = number(BATCH_AFTER_HEADER)?;
    Ok(number(BATCH_LAST_HEADER)?.map(|last| BatchPlace { last, after }))
}

async fn enroll(
    State(app): State<Arc<App>>,
    Json(req): Json<EnrollRequest>,
) -> Result<Json<EnrollResponse>, ApiError> {
    let bad = |m: &str| err(StatusCode::BAD_REQUEST, m.to_string());
    if req.hostname.is_empty()
        || req.hostname.len() > 255
        || req.hostname.chars().any(char::is_control)
    {
        return Err(bad("hostname: 1 to 255 printable characters"));
    }
    let public_key = hex::decode(&req.public_key).map_err(|_| bad("public_key is not hex"))?;
    let signature = hex::decode(&req.signature).map_err(|_| bad("signature is not hex"))?;
    // Proof that the agent holds the private key of what it asks a certificate for.
    ring::signature::UnparsedPublicKey::new(&ring::signature::ECDSA_P256_SHA256_ASN1, &public_key)
        .verify(
            &enroll_signed_message(&req.token, &req.hostname, &req.public_key),
            &signature,
        )
        .map_err(|_| {
            bad("the signature does not verify with the public key (or the key is not P-256)")
        })?;
    // The token first: without a valid one nothing is said about which host names are
    // enrolled. A name an unrevoked agent holds is refused when the agent is recorded
    // (atomically); that refusal has used the token like any enrollment.
    let grant = app
        .control
        .redeem_enroll_token(&req.token)
        .map_err(|e| err(StatusCode::FORBIDDEN, e.to_string()))?;
    let agent_id = format!("agt-{}", crate::control::random_hex(8));
    let now = SystemTime::now();
    let issued = app
        .ca
        .issue_agent_cert(
            &public_key,
            &agent_id,
            &grant.region,
            now - Duration::from_secs(300),
            now + Duration::from_secs(u64::from(app.cfg.agent_cert_days) * 86_400),
        )
        .map_err(|e| bad(&e.to_string()))?;
    app.control
        .add_agent_unique(&AgentRecord {
            agent_id: agent_id.clone(),
            hostname: req.hostname.clone(),
            region: grant.region.clone(),
            serial: hex::encode(&issued.serial),
            enrolled_ns: now_ns(),
            not_after: issued.not_after,
            revoked_ns: None,
            last_seen_ns: None,
        })
        .map_err(|e| match e {
            crate::control::ControlError::Refused(m) => err(StatusCode::CONFLICT, m),
            e => err(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
        })?;
    app.counters.enrollments.fetch_add(1, Ordering::Relaxed);
    tracing::info!(agent = %agent_id, hostname = %req.hostname, region = %grant.region, "agent enrolled");
    Ok(Json(EnrollResponse {
        agent_id,
        region: grant.region,
        certificate_pem: issued.pem,
        ca_pem: app.ca.cert_pem().to_string(),
        not_after: issued.not_after,
    }))
}

async fn ca_cert(State(app): State<Arc<App>>) -> impl IntoResponse {
    (
        [("content-type", "application/x-pem-file")],
        app.ca.cert_pem().to_string(),
    )
}

/// The caller's agent certificate, not revoked.
fn require_agent(app: &App, conn: &ConnInfo) -> Result<(), ApiError> {
    let Some(agent) = &conn.peer else {
        return Err(err(
            StatusCode::UNAUTHORIZED,
            "this route needs an agent client certificate (rampart enroll)",
        ));
    };
    if app.is_revoked(&agent.serial) {
        return Err(err(
            StatusCode::FORBIDDEN,
            format!("agent {} is revoked", agent.agent_id),
        ));
    }
    Ok(())
}

async fn vulndb_manifest(
    State(app): State<Arc<App>>,
    Extension(conn): Extension<ConnInfo>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    require_agent(&app, &conn)?;
    // Read on every request: an import by `rampart server db import` (another process) is
    // served from the next request on.
    let data_dir = app.cfg.data_dir.clone();
    let (signed, resend) = tokio::task::spawn_blocking(move || {
        (
            crate::vulndb::current(&data_dir),
            crate::vulndb::resend_token(&data_dir).unwrap_or_default(),
        )
    })
    .await
    .map_err(|e| err(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    let signed = signed.map_err(|e| err(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    let resend_header = [(crate::vulndb::RESEND_HEADER, resend)];
    let Some(signed) = signed else {
        return Ok((
            StatusCode::NOT_FOUND,
            resend_header,
            Json(serde_json::json!({
                "error": "no vulnerability database published (rampart server db import)"
            })),
        )
            .into_response());
    };
    let version = serde_json::from_str::<crate::vulndb::Manifest>(&signed.manifest)
        .map(|m| m.version)
        .unwrap_or_default();
    let etag = format!("\"{version}\"");
    if headers
        .get("if-none-match")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v == etag)
    {
        return Ok((StatusCode::NOT_MODIFIED, [("etag", etag)], resend_header).into_response());
    }
    Ok(([("etag", etag)], resend_header, Json(signed)).into_response())
}

async fn vulndb_bundle(
    State(app): State<Arc<App>>,
    Extension(conn): Extension<ConnInfo>,
    UrlPath(sha256): UrlPath<String>,
) -> Result<Response, ApiError> {
    require_agent(&app, &conn)?;
    let path = crate::vulndb::bundle_path(&app.cfg.data_dir, &sha256)
        .ok_or_else(|| err(StatusCode::BAD_REQUEST, "not a SHA-256 (64 hex digits)"))?;
    let data = match tokio::fs::read(&path).await {
        Ok(d) => d,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && app.control.is_shared() => {
            // Published through another server of the fleet (the agent's manifest request
            // may have reached that one): install the fleet's newest here and read again.
            let app2 = app.clone();
            tokio::task::spawn_blocking(move || {
                crate::fleetconfig::sync_shared(&app2.cfg.data_dir, &app2.ca, &app2.control)
            })
            .await
            .map_err(|e| err(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
            .map_err(|e| err(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
            tokio::fs::read(&path).await.map_err(|e| {
                if e.kind() == std::io::ErrorKind::NotFound {
                    err(StatusCode::NOT_FOUND, format!("no bundle {sha256}"))
                } else {
                    err(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
                }
            })?
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(err(StatusCode::NOT_FOUND, format!("no bundle {sha256}")));
        }
        Err(e) => return Err(err(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())),
    };
    Ok(([("content-type", "application/zstd")], data).into_response())
}

/// The report in a configuration poll's headers (`crate::fleetconfig`): a version that is
/// not a number, an applied time that is not one, or a refusal over
/// [`crate::fleetconfig::MAX_REFUSED_BYTES`] is refused (400) and nothing is recorded.
fn config_report(
    headers: &HeaderMap,
) -> Result<Option<crate::fleetconfig::ConfigReport>, ApiError> {
    use crate::fleetconfig::{APPLIED_HEADER, MAX_REFUSED_BYTES, REFUSED_HEADER, VERSION_HEADER};
    // One value each: a repeated header could be read differently by a proxy and by us.
    for name in [VERSION_HEADER, APPLIED_HEADER, REFUSED_HEADER] {
        if headers.get_all(name).iter().count() > 1 {
            return Err(err(
                StatusCode::BAD_REQUEST,
                format!("header {name}: given more than once"),
            ));
        }
    }
    let number = |name: &str| -> Result<Option<u64>, ApiError> {
        headers
            .get(name)
            .map(|v| {
                v.to_str()
                    .ok()
                    .and_then(|v| v.trim().parse::<u64>().ok())
                    .ok_or_else(|| {
                        err(
                            StatusCode::BAD_REQUEST,
                            format!("header {name}: expected a non-negative integer"),
                        )
                    })
            })
            .transpose()
    };
    let Some(version) = number(VERSION_HEADER)? else {
        return Ok(None);
    };
    // The agent's clock: a time after the server's now (skew, or a lie) is recorded as now,
    // so the dashboard never shows an apply in the future.
    let now = now_ns();
    let applied_ns = number(APPLIED_HEADER)?.unwrap_or(0).min(now);
    let refused = match headers.get(REFUSED_HEADER) {
        None => None,
        Some(v) if v.len() > MAX_REFUSED_BYTES => {
            return Err(err(
                StatusCode::BAD_REQUEST,
                format!("header {REFUSED_HEADER}: over {MAX_REFUSED_BYTES} bytes"),
            ))
        }
        Some(v) => Some(
            v.to_str()
                .map_err(|_| {
                    err(
                        StatusCode::BAD_REQUEST,
                        format!("header {REFUSED_HEADER}: not visible ASCII"),
                    )
                })?
                .to_string(),
        ),
    };
    Ok(Some(crate::fleetconfig::ConfigReport {
        version,
        applied_ns,
        refused,
        reported_ns: now,
    }))
}

/// The configuration routes are GETs: a request announcing a body is refused before any of it
/// is read (413), so they never buffer what a client sends.
fn no_body(headers: &HeaderMap) -> Result<(), ApiError> {
    let declared = headers
        .get(axum::http::header::CONTENT_LENGTH)
        .is_some_and(|v| v.as_bytes() != b"0")
        || headers.contains_key(axum::http::header::TRANSFER_ENCODING);
    if declared {
        return Err(err(
            StatusCode::PAYLOAD_TOO_LARGE,
            "this route takes no request body",
        ));
    }
    Ok(())
}

async fn config_manifest(
    State(app): State<Arc<App>>,
    Extension(conn): Extension<ConnInfo>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    require_agent(&app, &conn)?;
    no_body(&headers)?;
    let report = config_report(&headers)?;
    let agent_id = conn.peer.map(|p| p.agent_id).unwrap_or_default();
    let app2 = app.clone();
    let signed = tokio::task::spawn_blocking(move || {
        if let Some(r) = report {
            if let Err(e) = app2.control.record_config_report(&agent_id, &r) {
                tracing::warn!(agent = %agent_id, "recording the agent's configuration report: {e}");
            }
        }
        // With a shared control store, a publish through another server is installed here
        // first (a failure is logged and this server's own version served).
        if let Err(e) =
            crate::fleetconfig::sync_shared(&app2.cfg.data_dir, &app2.ca, &app2.control)
        {
            tracing::warn!("fleet configuration: taking the fleet's newest version: {e}");
        }
        // Read on every request: a publish by `rampart server config publish` (another
        // process) is served from the next request on.
        crate::fleetconfig::current(&app2.cfg.data_dir)
    })
    .await
    .map_err(|e| err(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
    .map_err(|e| err(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    let Some(signed) = signed else {
        return Err(err(
            StatusCode::NOT_FOUND,
            "no fleet configuration published (rampart server config publish)",
        ));
    };
    let version = serde_json::from_str::<crate::fleetconfig::ConfigManifest>(&signed.manifest)
        .map(|m| m.version)
        .unwrap_or_default();
    let etag = format!("\"{version}\"");
    if headers
        .get("if-none-match")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v == etag)
    {
        return Ok((StatusCode::NOT_MODIFIED, [("etag", etag)]).into_response());
    }
    Ok(([("etag", etag)], Json(signed)).into_response())
}

async fn config_bundle(
    State(app): State<Arc<App>>,
    Extension(conn): Extension<ConnInfo>,
    headers: HeaderMap,
    UrlPath(sha256): UrlPath<String>,
) -> Result<Response, ApiError> {
    require_agent(&app, &conn)?;
    no_body(&headers)?;
    let path = crate::fleetconfig::bundle_path(&app.cfg.data_dir, &sha256)
        .ok_or_else(|| err(StatusCode::BAD_REQUEST, "not a SHA-256 (64 hex digits)"))?;
    let data = tokio::fs::read(&path).await.map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            err(StatusCode::NOT_FOUND, format!("no bundle {sha256}"))
        } else {
            err(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
        }
    })?;
    Ok(([("content-type", "application/zstd")], data).into_response())
}

async fn config_status(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
) -> Result<Json<crate::fleetconfig::Status>, ApiError> {
    authorize(&app, &headers, Role::ReadOnly)?;
    no_body(&headers)?;
    let app2 = app.clone();
    tokio::task::spawn_blocking(move || {
        crate::fleetconfig::status(&app2.cfg.data_dir, &app2.control)
    })
    .await
    .map_err(|e| err(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
    .map(Json)
    .map_err(|e| err(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))
}

async fn crl(State(app): State<Arc<App>>) -> Result<Response, ApiError> {
    let text = std::fs::read_to_string(app.ca.dir().join("crl.pem"))
        .map_err(|e| err(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    Ok(([("content-type", "application/x-pem-file")], text).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MeshCertRequest {
    /// The trust domain (`spiffe://<fleet>/...`).
    fleet: String,
    /// The container; absent for the host's proxy certificate.
    #[serde(default)]
    workload: Option<String>,
    /// Uncompressed P-256 point, hex.
    public_key: String,
    /// Lifetime, 10 s to 24 h (default 4 h).
    #[serde(default)]
    ttl_secs: Option<u64>,
}

/// Issues a mesh certificate (`docs/mesh.md`) to an enrolled, unrevoked agent, for its own host
/// only: the host in the SPIFFE ID is the hostname the agent enrolled with, never one the
/// request names. Recorded so that revoking the agent revokes it.
async fn mesh_certificate(
    State(app): State<Arc<App>>,
    Extension(conn): Extension<ConnInfo>,
    Json(req): Json<MeshCertRequest>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let Some(agent) = conn.peer else {
        return Err(err(
            StatusCode::UNAUTHORIZED,
            "mesh certificates need an agent client certificate (rampart enroll)",
        ));
    };
    if app.is_revoked(&agent.serial) {
        return Err(err(
            StatusCode::FORBIDDEN,
            format!("agent {} is revoked", agent.agent_id),
        ));
    }
    let sender = {
        let app = app.clone();
        let agent = agent.clone();
        tokio::task::spawn_blocking(move || app.sender_for(&agent))
            .await
            .map_err(|e| err(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
            .map_err(|e| err(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
    };
    let Some(host) = sender.and_then(|s| s.hostname) else {
        return Err(err(
            StatusCode::FORBIDDEN,
            format!("agent {} is not in the control database", agent.agent_id),
        ));
    };
    let id = match &req.workload {
        Some(w) => rampart_mesh::SpiffeId::workload(&req.fleet, &host, w),
        None => rampart_mesh::SpiffeId::proxy(&req.fleet, &host),
    }
    .map_err(|e| err(StatusCode::BAD_REQUEST, e.to_string()))?;
    let key = hex::decode(&req.public_key)
        .map_err(|e| err(StatusCode::BAD_REQUEST, format!("public_key: {e}")))?;
    let ttl = req.ttl_secs.unwrap_or(4 * 3600);
    if !(10..=86_400).contains(&ttl) {
        return Err(err(
            StatusCode::BAD_REQUEST,
            format!("ttl_secs {ttl}: want 10 to 86400"),
        ));
    }
    let now = SystemTime::now();
    let server = req.workload.is_none();
    let issued = app
        .ca
        .issue_mesh_cert(
            &key,
            &id.to_string(),
            server.then(|| id.proxy_dns_name()).as_deref(),
            server,
            now - Duration::from_secs(60),
            now + Duration::from_secs(ttl),
        )
        .map_err(|e| err(StatusCode::BAD_REQUEST, e.to_string()))?;
    {
        let app = app.clone();
        let (agent_id, serial, spiffe) = (
            agent.agent_id.clone(),
            issued.serial.clone(),
            id.to_string(),
        );
        let not_after = issued.not_after;
        tokio::task::spawn_blocking(move || {
            app.control
                .record_mesh_cert(&agent_id, &serial, &spiffe, not_after)
        })
        .await
        .map_err(|e| err(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
        .map_err(|e| err(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    }
    tracing::info!(agent = %agent.agent_id, id = %id, "mesh certificate issued");
    Ok(Json(serde_json::json!({
        "spiffe_id": id.to_string(),
        "certificate": issued.pem,
        "serial": hex::encode(&issued.serial),
        "not_after": issued.not_after,
    })))
}

/// Query-string filters.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Filters {
    kind: Option<String>,
    id: Option<String>,
    host: Option<String>,
    container: Option<String>,
    rule: Option<String>,
    #[serde(rename = "type")]
    event_type: Option<String>,
    region: Option<String>,
    agent: Option<String>,
    since: Option<String>,
    until: Option<String>,
    limit: Option<usize>,
}

/// A time bound: RFC 3339, Unix nanoseconds, or a duration ago (`15m`, `2h`, `7d`).
pub fn parse_time(s: &str, now: SystemTime) -> Option<u64> {
    let to_ns = |t: SystemTime| {
        t.duration_since(UNIX_EPOCH)
            .ok()
            .map(|d| d.as_nanos() as u64)
    };
    if let Ok(n) = s.parse::<u64>() {
        return Some(n);
    }
    if let Ok(d) = humantime::parse_duration(s) {
        return now.checked_sub(d).and_then(to_ns);
    }
    humantime::parse_rfc3339_weak(s).ok().and_then(to_ns)
}

impl Filters {
    fn to_query(&self) -> Result<Query, ApiError> {
        let now = SystemTime::now();
        let time = |name: &str, v: &Option<String>| -> Result<Option<u64>, ApiError> {
            v.as_deref()
                .map(|s| {
                    parse_time(s, now).ok_or_else(|| {
                        err(
                            StatusCode::BAD_REQUEST,
                            format!("{name}={s:?}: expected RFC 3339, Unix nanoseconds or a duration like 15m"),
                        )
                    })
                })
                .transpose()
        };
        let kind = match self.kind.as_deref() {
            None => None,
            Some(k) => Some(RecordKind::parse(k).ok_or_else(|| {
                err(
                    StatusCode::BAD_REQUEST,
                    format!("kind={k:?}: expected event or alert"),
                )
            })?),
        };
        Ok(Query {
            kind,
            id: self.id.clone(),
            host: self.host.clone(),
            container: self.container.clone(),
            rule: self.rule.clone(),
            event_type: self.event_type.clone(),
            region: self.region.clone(),
            agent_id: self.agent.clone(),
            since_ns: time("since", &self.since)?,
            until_ns: time("until", &self.until)?,
            limit: self.limit.unwrap_or(0),
            max_bytes: 0,
        })
    }
}

fn records_response(rows: &[StoredRecord]) -> Response {
    let mut body = String::with_capacity(rows.iter().map(|r| r.json.len() + 1).sum::<usize>() + 32);
    body.push_str("{\"records\":[");
    for (i, r) in rows.iter().enumerate() {
        if i > 0 {
            body.push(',');
        }
        body.push_str(&r.json);
    }
    body.push_str(&format!("],\"returned\":{}}}", rows.len()));
    ([("content-type", "application/json")], body).into_response()
}

async fn records(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    UrlQuery(f): UrlQuery<Filters>,
) -> Result<Response, ApiError> {
    authorize(&app, &headers, Role::Analyst)?;
    app.counters.queries.fetch_add(1, Ordering::Relaxed);
    let q = f.to_query()?;
    let rows = app
        .store
        .query(&q)
        .await
        .map_err(|e| err(StatusCode::SERVICE_UNAVAILABLE, e.to_string()))?;
    Ok(records_response(&rows))
}

async fn alerts(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    UrlQuery(f): UrlQuery<Filters>,
) -> Result<Response, ApiError> {
    authorize(&app, &headers, Role::ReadOnly)?;
    app.counters.queries.fetch_add(1, Ordering::Relaxed);
    let mut q = f.to_query()?;
    q.kind = Some(RecordKind::Alert);
    let rows = app
        .store
        .query(&q)
        .await
        .map_err(|e| err(StatusCode::SERVICE_UNAVAILABLE, e.to_string()))?;
    Ok(records_response(&rows))
}

async fn count(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    UrlQuery(f): UrlQuery<Filters>,
) -> Result<Json<serde_json::Value>, ApiError> {
    authorize(&app, &headers, Role::Analyst)?;
    app.counters.queries.fetch_add(1, Ordering::Relaxed);
    let q = f.to_query()?;
    let n = app
        .store
        .count(&q)
        .await
        .map_err(|e| err(StatusCode::SERVICE_UNAVAILABLE, e.to_string()))?;
    Ok(Json(serde_json::json!({ "count": n })))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct MeshViewParams {
    since: Option<String>,
}

async fn mesh_view(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    UrlQuery(p): UrlQuery<MeshViewParams>,
) -> Result<Json<crate::meshview::MeshView>, ApiError> {
    authorize(&app, &headers, Role::Analyst)?;
    app.counters.queries.fetch_add(1, Ordering::Relaxed);
    let since = match p.since.as_deref().map(str::trim).filter(|s| !s.is_empty()) {
        None => crate::meshview::default_since(),
        Some(s) => parse_time(s, SystemTime::now()).ok_or_else(|| {
            err(
                StatusCode::BAD_REQUEST,
                format!("since={s:?}: expected RFC 3339, Unix nanoseconds or a duration like 15m"),
            )
        })?,
    };
    crate::meshview::mesh_view(&*app.store, since)
        .await
        .map(Json)
        .map_err(|e| err(StatusCode::SERVICE_UNAVAILABLE, e.to_string()))
}

async fn agents(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
) -> Result<Json<Vec<AgentRecord>>, ApiError> {
    authorize(&app, &headers, Role::ReadOnly)?;
    app.control
        .agents()
        .map(Json)
        .map_err(|e| err(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))
}

async fn revoke(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    UrlPath(id): UrlPath<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let (who, _) = authorize(&app, &headers, Role::Admin)?;
    let changed = app
        .revoke_agent(&id)
        .map_err(|e| err(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    if !changed {
        return Err(err(
            StatusCode::NOT_FOUND,
            format!("no unrevoked agent {id:?}"),
        ));
    }
    tracing::warn!(agent = %id, by = %who, "agent certificate revoked");
    Ok(Json(serde_json::json!({ "revoked": id })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EnrollTokenRequest {
    region: String,
    #[serde(default)]
    uses: Option<u32>,
    /// Duration, e.g. `24h` (default 24h).
    #[serde(default)]
    ttl: Option<String>,
}

async fn enroll_token(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Json(req): Json<EnrollTokenRequest>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let (who, _) = authorize(&app, &headers, Role::Admin)?;
    let ttl = match &req.ttl {
        Some(t) => humantime::parse_duration(t)
            .map_err(|e| err(StatusCode::BAD_REQUEST, format!("ttl {t:?}: {e}")))?,
        None => Duration::from_secs(86_400),
    };
    let secret = app
        .control
        .create_enroll_token(
            &req.region,
            req.uses.unwrap_or(1),
            ttl,
            &format!("by {who}"),
        )
        .map_err(|e| err(StatusCode::BAD_REQUEST, e.to_string()))?;
    let token = rampart_ship::protocol::EnrollToken {
        secret,
        ca_sha256: app.ca.fingerprint(),
    };
    Ok(Json(
        serde_json::json!({ "token": token.to_string(), "region": req.region }),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ApiTokenRequest {
    name: String,
    role: String,
}

async fn api_token(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Json(req): Json<ApiTokenRequest>,
) -> Result<Json<serde_json::Value>, ApiError> {
    authorize(&app, &headers, Role::Admin)?;
    let role = Role::parse(&req.role).ok_or_else(|| {
        err(
            StatusCode::BAD_REQUEST,
            format!("role {:?}: expected admin, analyst or read-only", req.role),
        )
    })?;
    let token = app
        .control
        .create_api_token(&req.name, role)
        .map_err(|e| err(StatusCode::BAD_REQUEST, e.to_string()))?;
    Ok(Json(
        serde_json::json!({ "name": req.name, "role": role.as_str(), "token": token }),
    ))
}

async fn retention_log(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
) -> Result<Json<Vec<crate::store::RetentionRecord>>, ApiError> {
    authorize(&app, &headers, Role::Analyst)?;
    app.store
        .retention_log(1000)
        .await
        .map(Json)
        .map_err(|e| err(StatusCode::SERVICE_UNAVAILABLE, e.to_string()))
}

async fn retention_run(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
) -> Result<Json<Vec<crate::store::RetentionRecord>>, ApiError> {
    authorize(&app, &headers, Role::Admin)?;
    app.run_retention()
        .await
        .map(Json)
        .map_err(|e| err(StatusCode::SERVICE_UNAVAILABLE, e.to_string()))
}

async fn metrics(State(app): State<Arc<App>>, headers: HeaderMap) -> Result<Response, ApiError> {
    if !app.cfg.metrics_public {
        authorize(&app, &headers, Role::ReadOnly)?;
    }
    Ok((
        [("content-type", rampart_ship::metrics::CONTENT_TYPE)],
        app.metrics_text(),
    )
        .into_response())
}
