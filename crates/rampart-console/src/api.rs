//! The dashboard's routes: pages, assets, and the JSON and event-stream data under
//! `/ui/api/`.
//!
//! | route | role | what |
//! |---|---|---|
//! | `GET /`, `GET /ui` | anyone | redirect to `/ui/` |
//! | `GET /ui/`, `GET /ui/login`, `GET /ui/assets/*` | anyone | the pages (no data) |
//! | `POST /ui/api/login` | anyone | `{"username", "password"}` → session cookie |
//! | `POST /ui/api/logout` | session | ends the session |
//! | `GET /ui/api/me` | read-only | who is logged in |
//! | `GET /ui/api/overview` | read-only | hosts, protections, alert counts, incidents |
//! | `GET /ui/api/alerts` | read-only | alerts (filters as search) |
//! | `GET /ui/api/alerts/stream` | read-only | new alerts as Server-Sent Events |
//! | `GET /ui/api/incidents`, `/ui/api/incidents/{id}` | read-only | incidents, deadlines, timeline, forensic bundles of the incident's alerts (metadata; the bytes need an analyst token at `/api/v1/evidence/{sha256}`) |
//! | `GET /ui/api/containers` | read-only | newest `inventory.container` per container (`host`, `limit`) |
//! | `GET /ui/api/hosts/{host}` | read-only | one host: inventory, containers, alerts, incidents |
//! | `GET /ui/api/search` | analyst (read-only: alerts only) | records matching the filters |
//! | `GET /ui/api/mesh` | analyst | the mesh's services, edges with last use, refusals (`since`; `rampart_server::meshview`) |

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use axum::extract::{Path as UrlPath, Query as UrlQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use rampart_server::control::Session;
use rampart_server::{ConnInfo, Query, RecordKind, Role, ServerContext, StoredRecord};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::auth::{self, require};
use crate::{assets, view, Console};

/// An error answer: status and `{"error": ...}`.
#[derive(Debug)]
pub(crate) struct ApiError(StatusCode, String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(json!({ "error": self.1 }))).into_response()
    }
}

pub(crate) fn err(status: StatusCode, msg: impl Into<String>) -> ApiError {
    ApiError(status, msg.into())
}

fn unavailable(e: impl std::fmt::Display) -> ApiError {
    err(StatusCode::SERVICE_UNAVAILABLE, e.to_string())
}

#[derive(Clone)]
struct St {
    console: Arc<Console>,
    ctx: ServerContext,
}

use rampart_event::now_ns;

const DAY_NS: u64 = 86_400_000_000_000;
/// Alerts read for the overview's 24-hour counts; more show as "at least".
const OVERVIEW_ALERTS: usize = 1000;

pub(crate) fn router(console: Arc<Console>, ctx: ServerContext) -> Router {
    Router::new()
        .route("/", get(|| async { Redirect::to("/ui/") }))
        .route("/ui", get(|| async { Redirect::to("/ui/") }))
        .route("/ui/", get(|| async { page(assets::INDEX) }))
        .route("/ui/login", get(|| async { page(assets::LOGIN) }))
        .route("/ui/assets/{name}", get(asset))
        .route("/ui/api/login", post(login))
        .route("/ui/api/logout", post(logout))
        .route("/ui/api/me", get(me))
        .route("/ui/api/overview", get(overview))
        .route("/ui/api/alerts", get(alerts))
        .route("/ui/api/alerts/stream", get(stream))
        .route("/ui/api/incidents", get(incidents))
        .route("/ui/api/incidents/{id}", get(incident))
        .route("/ui/api/containers", get(containers))
        .route("/ui/api/hosts/{host}", get(host))
        .route("/ui/api/search", get(search))
        .route("/ui/api/mesh", get(mesh))
        .layer(axum::middleware::map_response(security_headers))
        .with_state(St { console, ctx })
}

async fn security_headers(mut res: Response) -> Response {
    let h = res.headers_mut();
    for (k, v) in assets::SECURITY_HEADERS {
        h.insert(*k, HeaderValue::from_static(v));
    }
    if !h.contains_key("cache-control") {
        h.insert("cache-control", HeaderValue::from_static("no-store"));
    }
    res
}

fn page(html: &'static str) -> Response {
    ([("content-type", "text/html; charset=utf-8")], html).into_response()
}

async fn asset(UrlPath(name): UrlPath<String>) -> Response {
    match assets::ASSETS.iter().find(|(n, _, _)| *n == name) {
        Some((_, ctype, body)) => (
            [("content-type", *ctype), ("cache-control", "no-cache")],
            *body,
        )
            .into_response(),
        None => (StatusCode::NOT_FOUND, "not found\n").into_response(),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LoginRequest {
    username: String,
    password: String,
}

async fn login(
    State(st): State<St>,
    Extension(conn): Extension<ConnInfo>,
    Json(req): Json<LoginRequest>,
) -> Result<Response, ApiError> {
    let source = auth::source_of(conn.remote.ip());
    // Counted before the password is checked: parallel guesses cannot all pass.
    if let Err(wait) = st.console.limiter.begin(&req.username, &source) {
        tracing::warn!(remote = %conn.remote, user = %req.username, "dashboard login refused: too many failures from this source");
        let secs = wait.as_secs() + 1;
        let mut r = err(
            StatusCode::TOO_MANY_REQUESTS,
            format!("too many failed logins from this address; try again in {secs} s"),
        )
        .into_response();
        if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
            r.headers_mut().insert("retry-after", v);
        }
        return Ok(r);
    }
    // A small fixed pool of password checks (19 MiB each); a few logins may wait for one.
    let Some(_queued) = st.console.password_queue() else {
        let mut r = err(
            StatusCode::SERVICE_UNAVAILABLE,
            "too many logins at once; try again",
        )
        .into_response();
        r.headers_mut()
            .insert("retry-after", HeaderValue::from_static("1"));
        return Ok(r);
    };
    let _check = st
        .console
        .password_checks
        .acquire()
        .await
        .map_err(|e| err(StatusCode::SERVICE_UNAVAILABLE, e.to_string()))?;
    let ctx = st.ctx.clone();
    let username = req.username.clone();
    let checked = tokio::task::spawn_blocking(move || {
        let role = ctx.control().check_password(&username, &req.password)?;
        match role {
            Some(role) => ctx
                .control()
                .create_session(&username, auth::SESSION_TTL)
                .map(|t| Some((t, role))),
            None => Ok(None),
        }
    })
    .await
    .map_err(|e| err(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
    .map_err(|e| err(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    let Some((token, role)) = checked else {
        st.console.limiter.failed(&req.username, &source);
        tracing::warn!(remote = %conn.remote, user = %req.username, "dashboard login failed");
        return Err(err(StatusCode::UNAUTHORIZED, "wrong user name or password"));
    };
    st.console.limiter.succeeded(&req.username, &source);
    tracing::info!(remote = %conn.remote, user = %req.username, "dashboard login");
    let mut r = Json(json!({ "username": req.username, "role": role.as_str() })).into_response();
    if let Ok(v) = HeaderValue::from_str(&auth::set_cookie(&token)) {
        r.headers_mut().insert("set-cookie", v);
    }
    Ok(r)
}

async fn logout(State(st): State<St>, headers: HeaderMap) -> Result<Response, ApiError> {
    if let Some(t) = auth::token(&headers) {
        let ctx = st.ctx.clone();
        tokio::task::spawn_blocking(move || ctx.control().end_session(&t))
            .await
            .map_err(|e| err(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
            .map_err(|e| err(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    }
    let mut r = Json(json!({ "logged_out": true })).into_response();
    if let Ok(v) = HeaderValue::from_str(&auth::clear_cookie()) {
        r.headers_mut().insert("set-cookie", v);
    }
    Ok(r)
}

async fn me(State(st): State<St>, headers: HeaderMap) -> Result<Json<Value>, ApiError> {
    let s = require(&st.ctx, &headers, Role::ReadOnly).await?;
    Ok(Json(json!({
        "username": s.username,
        "role": s.role.as_str(),
        "expires_ns": s.expires_ns,
        "now_ns": now_ns(),
    })))
}

/// Incidents (cloned out of the correlator) with the regulations and roles to evaluate them.
fn incident_state(
    console: &Console,
) -> (
    Vec<rampart_fleet::Incident>,
    Vec<rampart_fleet::Regulation>,
    Vec<String>,
) {
    let Some(fleet) = console.fleet.as_ref().and_then(|s| s.get()) else {
        return (Vec::new(), Vec::new(), Vec::new());
    };
    let c = fleet.correlator();
    let c = c.lock().unwrap_or_else(|p| p.into_inner());
    (
        c.incidents().to_vec(),
        c.regulations().to_vec(),
        c.roles().to_vec(),
    )
}

async fn overview(State(st): State<St>, headers: HeaderMap) -> Result<Json<Value>, ApiError> {
    require(&st.ctx, &headers, Role::ReadOnly).await?;
    let now = now_ns();
    let store = st.ctx.store();
    let alerts_q = Query {
        kind: Some(RecordKind::Alert),
        since_ns: Some(now.saturating_sub(DAY_NS)),
        limit: OVERVIEW_ALERTS,
        ..Query::default()
    };
    let ctx = st.ctx.clone();
    let agents = tokio::task::spawn_blocking(move || {
        let agents = ctx.control().agents()?;
        let reports = ctx.control().config_reports()?;
        Ok::<_, rampart_server::control::ControlError>((agents, reports))
    });
    let (hosts, inventories, alerts) = tokio::join!(
        store.hosts(),
        store.latest_inventory("inventory.host", None),
        store.query(&alerts_q)
    );
    let (hosts, inventories, alerts) = (
        hosts.map_err(unavailable)?,
        inventories.map_err(unavailable)?,
        alerts.map_err(unavailable)?,
    );
    let (agents, reports) = agents.await.map_err(unavailable)?.map_err(unavailable)?;
    let recent = st.ctx.recent_agents();
    let data_dir = st.ctx.config().data_dir.clone();
    let published = tokio::task::spawn_blocking(move || {
        rampart_server::fleetconfig::current_manifest(&data_dir)
    })
    .await
    .ok()
    .flatten();

    let mut rows: BTreeMap<String, Value> = BTreeMap::new();
    let blank = |host: &str| {
        json!({
            "host": host, "region": "", "agent_id": "", "enrolled": false, "revoked": false,
            "last_seen_ns": null, "last_event_ns": null, "inventory": null, "alerts_24h": 0,
            "config": null,
        })
    };
    for a in &agents {
        if let Some(r) = reports.get(&a.agent_id) {
            rows.entry(a.hostname.clone())
                .or_insert_with(|| blank(&a.hostname))["config"] =
                config_view(r, published.as_ref());
        }
        let r = rows
            .entry(a.hostname.clone())
            .or_insert_with(|| blank(&a.hostname));
        let seen = recent.get(&a.agent_id).copied().max(a.last_seen_ns);
        r["region"] = json!(a.region);
        r["agent_id"] = json!(a.agent_id);
        r["enrolled"] = json!(true);
        r["revoked"] = json!(a.revoked_ns.is_some());
        r["last_seen_ns"] = json!(seen);
    }
    for h in &hosts {
        let r = rows.entry(h.host.clone()).or_insert_with(|| blank(&h.host));
        r["region"] = json!(h.region);
        r["agent_id"] = json!(h.agent_id);
        r["last_event_ns"] = json!(h.last_event_ns);
        let seen = r["last_seen_ns"]
            .as_u64()
            .unwrap_or(0)
            .max(h.last_ingested_ns);
        r["last_seen_ns"] = json!(seen);
    }
    for i in &inventories {
        if let Some(inv) = view::host_inventory(i) {
            let r = rows.entry(i.host.clone()).or_insert_with(|| blank(&i.host));
            r["inventory"] = inv;
        }
    }
    for a in &alerts {
        if let Some(r) = rows.get_mut(&a.host) {
            r["alerts_24h"] = json!(r["alerts_24h"].as_u64().unwrap_or(0) + 1);
        }
    }
    let (incidents, regs, roles) = incident_state(&st.console);
    let open: Vec<Value> = incidents
        .iter()
        .filter(|i| !i.closed)
        .map(|i| view::incident(i, &regs, &roles, now, false))
        .collect();
    let next_due = open.iter().filter_map(|i| i["next_due_ns"].as_u64()).min();
    let data_dir = st.ctx.config().data_dir.clone();
    let vulndb = tokio::task::spawn_blocking(move || rampart_server::vulndb::freshness(&data_dir))
        .await
        .ok()
        .flatten();
    Ok(Json(json!({
        "now_ns": now,
        "hosts": rows.into_values().collect::<Vec<_>>(),
        "alerts_24h": alerts.len(),
        "alerts_24h_capped": alerts.len() >= OVERVIEW_ALERTS,
        "recent_alerts": alerts.iter().take(10).map(|r| view::record(r, false)).collect::<Vec<_>>(),
        "open_incidents": open.len(),
        "next_due_ns": next_due,
        // How current the vulnerability data is ("database 9 days old").
        "vulndb": vulndb,
        // The fleet configuration published (each host's row says what it runs).
        "config_published": published.as_ref().map(|m| json!({
            "version": m.version, "created_ns": m.created_ns, "files": m.files.len(),
        })),
    })))
}

/// What a host runs of the fleet configuration: its report, and whether that is the
/// published version.
fn config_view(
    r: &rampart_server::fleetconfig::ConfigReport,
    published: Option<&rampart_server::fleetconfig::ConfigManifest>,
) -> Value {
    json!({
        "version": r.version,
        "applied_ns": (r.applied_ns > 0).then_some(r.applied_ns),
        "reported_ns": r.reported_ns,
        "refused": r.refused,
        "current": published.is_some_and(|p| p.version == r.version),
        "published_version": published.map(|p| p.version),
    })
}

/// Filters of the search and alert lists.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct SearchParams {
    host: Option<String>,
    container: Option<String>,
    rule: Option<String>,
    #[serde(rename = "type")]
    event_type: Option<String>,
    kind: Option<String>,
    since: Option<String>,
    until: Option<String>,
    limit: Option<usize>,
    /// Records at the `until` boundary already shown (see `next` in the answer).
    skip: Option<usize>,
}

fn non_empty(v: &Option<String>) -> Option<String> {
    v.as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

async fn run_search(
    st: &St,
    session: &Session,
    p: SearchParams,
    alerts_only: bool,
) -> Result<Json<Value>, ApiError> {
    let now = SystemTime::now();
    let time = |name: &str, v: &Option<String>| -> Result<Option<u64>, ApiError> {
        non_empty(v)
            .map(|s| {
                rampart_server::parse_time(&s, now).ok_or_else(|| {
                    err(
                        StatusCode::BAD_REQUEST,
                        format!("{name}={s:?}: expected RFC 3339, Unix nanoseconds or a duration like 15m"),
                    )
                })
            })
            .transpose()
    };
    let mut kind = match non_empty(&p.kind).as_deref() {
        None => None,
        Some(k) => Some(RecordKind::parse(k).ok_or_else(|| {
            err(
                StatusCode::BAD_REQUEST,
                format!("kind={k:?}: expected event or alert"),
            )
        })?),
    };
    let mut restricted = false;
    // Only alerts have a rule: a rule filter searches alerts (through their own index).
    if non_empty(&p.rule).is_some() && kind.is_none() {
        kind = Some(RecordKind::Alert);
    }
    if alerts_only {
        kind = Some(RecordKind::Alert);
    } else if session.role < Role::Analyst {
        if kind == Some(RecordKind::Event) {
            return Err(err(
                StatusCode::FORBIDDEN,
                format!(
                    "user {:?} has role read-only: events need analyst",
                    session.username
                ),
            ));
        }
        kind = Some(RecordKind::Alert);
        restricted = true;
    }
    let limit = p.limit.unwrap_or(100).clamp(1, 1000);
    let skip = p.skip.unwrap_or(0).min(9000);
    let q = Query {
        kind,
        host: non_empty(&p.host),
        container: non_empty(&p.container),
        rule: non_empty(&p.rule),
        event_type: non_empty(&p.event_type),
        since_ns: time("since", &p.since)?,
        until_ns: time("until", &p.until)?,
        limit: limit + skip,
        ..Query::default()
    };
    let rows = st.ctx.store().query(&q).await.map_err(unavailable)?;
    let page: Vec<&StoredRecord> = rows.iter().skip(skip).collect();
    let next = match page.last() {
        Some(last) if page.len() == limit => {
            let same = rows.iter().filter(|r| r.time_ns == last.time_ns).count();
            json!({ "until": (last.time_ns + 1).to_string(), "skip": same })
        }
        _ => Value::Null,
    };
    let raw = session.role >= Role::Analyst;
    Ok(Json(json!({
        "records": page.iter().map(|r| view::record(r, raw)).collect::<Vec<_>>(),
        "next": next,
        "restricted_to_alerts": restricted,
    })))
}

async fn search(
    State(st): State<St>,
    headers: HeaderMap,
    UrlQuery(p): UrlQuery<SearchParams>,
) -> Result<Json<Value>, ApiError> {
    let s = require(&st.ctx, &headers, Role::ReadOnly).await?;
    run_search(&st, &s, p, false).await
}

async fn alerts(
    State(st): State<St>,
    headers: HeaderMap,
    UrlQuery(p): UrlQuery<SearchParams>,
) -> Result<Json<Value>, ApiError> {
    let s = require(&st.ctx, &headers, Role::ReadOnly).await?;
    run_search(&st, &s, p, true).await
}

/// Session validity is checked again at least this often while a stream is open.
const RECHECK: Duration = Duration::from_secs(30);

async fn stream(State(st): State<St>, headers: HeaderMap) -> Result<Response, ApiError> {
    require(&st.ctx, &headers, Role::ReadOnly).await?;
    let token = auth::token(&headers).unwrap_or_default();
    let rx = st.console.live.subscribe();
    let state = (rx, st.ctx.clone(), token, Instant::now());
    let events =
        futures_util::stream::unfold(state, |(mut rx, ctx, token, mut checked)| async move {
            use tokio::sync::broadcast::error::RecvError;
            let ev = match rx.recv().await {
                Ok(v) => SseEvent::default()
                    .event("alert")
                    .json_data(&*v)
                    .unwrap_or_else(|_| SseEvent::default().event("lagged").data("0")),
                Err(RecvError::Lagged(n)) => {
                    SseEvent::default().event("lagged").data(n.to_string())
                }
                Err(RecvError::Closed) => return None,
            };
            if checked.elapsed() >= RECHECK {
                let c = ctx.clone();
                let t = token.clone();
                let valid = tokio::task::spawn_blocking(move || c.control().session(&t))
                    .await
                    .ok()
                    .and_then(Result::ok)
                    .flatten()
                    .is_some();
                if !valid {
                    return None;
                }
                checked = Instant::now();
            }
            Some((Ok::<_, Infallible>(ev), (rx, ctx, token, checked)))
        });
    Ok(Sse::new(events)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response())
}

async fn incidents(State(st): State<St>, headers: HeaderMap) -> Result<Json<Value>, ApiError> {
    require(&st.ctx, &headers, Role::ReadOnly).await?;
    let now = now_ns();
    let (list, regs, roles) = incident_state(&st.console);
    let mut out: Vec<Value> = list
        .iter()
        .map(|i| view::incident(i, &regs, &roles, now, false))
        .collect();
    // Open first, the nearest deadline first, then the most recent.
    out.sort_by_key(|i| {
        (
            i["closed"].as_bool().unwrap_or(false),
            i["next_due_ns"].as_u64().unwrap_or(u64::MAX),
            u64::MAX - i["last_ns"].as_u64().unwrap_or(0),
        )
    });
    Ok(Json(json!({ "now_ns": now, "incidents": out })))
}

async fn incident(
    State(st): State<St>,
    headers: HeaderMap,
    UrlPath(id): UrlPath<String>,
) -> Result<Json<Value>, ApiError> {
    require(&st.ctx, &headers, Role::ReadOnly).await?;
    let now = now_ns();
    let (list, regs, roles) = incident_state(&st.console);
    let inc = list
        .iter()
        .find(|i| i.id == id)
        .ok_or_else(|| err(StatusCode::NOT_FOUND, format!("no incident {id:?}")))?;
    // Forensic bundles taken for the incident's alerts (uploaded by the hosts' agents).
    let alerts: Vec<String> = inc.alert_ids.iter().take(500).cloned().collect();
    let ctx = st.ctx.clone();
    let evidence = tokio::task::spawn_blocking(move || {
        let mut out = Vec::new();
        for a in alerts {
            let f = rampart_server::control::EvidenceFilter {
                alert: Some(a),
                limit: 100,
                ..Default::default()
            };
            out.extend(ctx.evidence(&f)?);
        }
        Ok::<_, rampart_server::control::ControlError>(out)
    })
    .await
    .map_err(|e| err(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
    .map_err(|e| err(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    Ok(Json(json!({
        "now_ns": now,
        "incident": view::incident(inc, &regs, &roles, now, true),
        "evidence": evidence,
    })))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ContainerParams {
    host: Option<String>,
    /// At most this many containers, newest inventory first (default 500, at most 10 000).
    limit: Option<usize>,
}

async fn containers(
    State(st): State<St>,
    headers: HeaderMap,
    UrlQuery(p): UrlQuery<ContainerParams>,
) -> Result<Json<Value>, ApiError> {
    require(&st.ctx, &headers, Role::ReadOnly).await?;
    let host = non_empty(&p.host);
    let rows = st
        .ctx
        .store()
        .latest_inventory("inventory.container", host.as_deref())
        .await
        .map_err(unavailable)?;
    let limit = p.limit.unwrap_or(500).clamp(1, 10_000);
    Ok(Json(json!({
        "now_ns": now_ns(),
        "total": rows.len(),
        "containers": rows.iter().take(limit).filter_map(view::container_inventory).collect::<Vec<_>>(),
    })))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct MeshParams {
    since: Option<String>,
}

async fn mesh(
    State(st): State<St>,
    headers: HeaderMap,
    UrlQuery(p): UrlQuery<MeshParams>,
) -> Result<Json<Value>, ApiError> {
    require(&st.ctx, &headers, Role::Analyst).await?;
    let since = match non_empty(&p.since) {
        None => rampart_server::meshview::default_since(),
        Some(s) => rampart_server::parse_time(&s, SystemTime::now()).ok_or_else(|| {
            err(
                StatusCode::BAD_REQUEST,
                format!("since={s:?}: expected RFC 3339, Unix nanoseconds or a duration like 15m"),
            )
        })?,
    };
    let store = st.ctx.store();
    let view = rampart_server::meshview::mesh_view(&*store, since)
        .await
        .map_err(unavailable)?;
    let mut v = serde_json::to_value(view)
        .map_err(|e| err(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    v["now_ns"] = json!(now_ns());
    Ok(Json(v))
}

async fn host(
    State(st): State<St>,
    headers: HeaderMap,
    UrlPath(host): UrlPath<String>,
) -> Result<Json<Value>, ApiError> {
    require(&st.ctx, &headers, Role::ReadOnly).await?;
    let now = now_ns();
    let store = st.ctx.store();
    let alerts_q = Query {
        kind: Some(RecordKind::Alert),
        host: Some(host.clone()),
        limit: 50,
        ..Query::default()
    };
    let ctx = st.ctx.clone();
    let agents = tokio::task::spawn_blocking(move || {
        let agents = ctx.control().agents()?;
        let reports = ctx.control().config_reports()?;
        let published = rampart_server::fleetconfig::current_manifest(&ctx.config().data_dir);
        Ok::<_, rampart_server::control::ControlError>((agents, reports, published))
    });
    let (summary, inventory, containers, alerts) = tokio::join!(
        store.hosts(),
        store.latest_inventory("inventory.host", Some(&host)),
        store.latest_inventory("inventory.container", Some(&host)),
        store.query(&alerts_q)
    );
    let summary = summary.map_err(unavailable)?;
    let summary = summary.iter().find(|h| h.host == host);
    let (agents, reports, published) = agents.await.map_err(unavailable)?.map_err(unavailable)?;
    let agent = agents.iter().rev().find(|a| a.hostname == host);
    let config = agent
        .and_then(|a| reports.get(&a.agent_id))
        .map(|r| config_view(r, published.as_ref()));
    let inventory = inventory.map_err(unavailable)?;
    let containers = containers.map_err(unavailable)?;
    let alerts = alerts.map_err(unavailable)?;
    if summary.is_none() && agent.is_none() && inventory.is_empty() && alerts.is_empty() {
        return Err(err(StatusCode::NOT_FOUND, format!("no host {host:?}")));
    }
    let (incidents, regs, roles) = incident_state(&st.console);
    let recent = st.ctx.recent_agents();
    let last_seen = agent
        .and_then(|a| recent.get(&a.agent_id).copied().max(a.last_seen_ns))
        .unwrap_or(0)
        .max(summary.map(|s| s.last_ingested_ns).unwrap_or(0));
    Ok(Json(json!({
        "now_ns": now,
        "host": host,
        "region": summary.map(|s| s.region.clone()).or(agent.map(|a| a.region.clone())),
        "agent_id": agent.map(|a| a.agent_id.clone()).or(summary.map(|s| s.agent_id.clone())),
        "revoked": agent.is_some_and(|a| a.revoked_ns.is_some()),
        "last_seen_ns": (last_seen > 0).then_some(last_seen),
        "last_event_ns": summary.map(|s| s.last_event_ns),
        "config": config,
        "inventory": inventory.first().and_then(view::host_inventory),
        "containers": containers.iter().filter_map(view::container_inventory).collect::<Vec<_>>(),
        "alerts": alerts.iter().map(|r| view::record(r, false)).collect::<Vec<_>>(),
        "incidents": incidents.iter().filter(|i| i.hosts().contains(host.as_str()))
            .map(|i| view::incident(i, &regs, &roles, now, false)).collect::<Vec<_>>(),
    })))
}
