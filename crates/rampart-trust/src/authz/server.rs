//! The plugin's HTTP side and the decision engine.
//!
//! Protocol (Docker Engine plugin API, `authz`): `POST /Plugin.Activate` answers
//! `{"Implements":["authz"]}`; `POST /AuthZPlugin.AuthZReq` and `/AuthZPlugin.AuthZRes` carry
//! `{"User","UserAuthNMethod","RequestMethod","RequestUri","RequestBody"(base64),
//! "RequestHeaders",...}` and are answered `{"Allow":bool,"Msg":string,"Err":string}`. dockerd
//! shows `Msg` to the client as "authorization denied by plugin NAME: MSG"; `Err` makes dockerd
//! fail the call (we never set it: a decision we cannot make is a deny or an allow according
//! to the fail mode, with its reason).

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::State;
use axum::routing::post;
use axum::Router;
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use rampart_container::DockerClient;
use rampart_event::Severity;
use rampart_scan::{ImageReader, InventoryCache, Limits, NoProgress, ScanOptions, Target, VulnDb};
use serde::{Deserialize, Serialize};
use tokio::sync::OnceCell;

use super::policy::{
    check_config, AdmissionPolicy, CreateRequest, Rule, Violation, BREAK_GLASS_LABEL,
};
use crate::error::TrustError;
use crate::policy::TrustPolicy;
use crate::reference::ImageRef;
use crate::registry::Registry;

/// What dockerd sends.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct AuthzRequest {
    #[serde(default)]
    pub user: String,
    #[serde(default, rename = "UserAuthNMethod")]
    pub user_authn_method: String,
    #[serde(default)]
    pub request_method: String,
    #[serde(default, rename = "RequestUri", alias = "RequestURI")]
    pub request_uri: String,
    /// base64 of the body, `null` when dockerd did not forward one.
    #[serde(default)]
    pub request_body: Option<String>,
}

/// What the plugin answers.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct AuthzResponse {
    pub allow: bool,
    #[serde(default)]
    pub msg: String,
    #[serde(default)]
    pub err: String,
}

/// One admission decision, written as a JSON line for every container create.
#[derive(Debug, Clone, Serialize)]
pub struct Decision {
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// Unix time, nanoseconds.
    pub time: u64,
    pub allowed: bool,
    /// `allow`, `deny`, `break_glass` (denied by rules, allowed by label), `fail_open`,
    /// `fail_closed`.
    pub outcome: &'static str,
    pub user: String,
    pub uri: String,
    pub container_name: Option<String>,
    pub image: Option<String>,
    pub digest: Option<String>,
    pub signers: Vec<String>,
    pub violations: Vec<Violation>,
    pub message: String,
    pub duration_us: u64,
}

/// How to build an [`Engine`].
#[derive(Debug, Clone)]
pub struct EngineConfig {
    pub policy: AdmissionPolicy,
    /// The dockerd whose requests are judged (image metadata comes from it).
    pub docker_socket: PathBuf,
    pub db_path: PathBuf,
    pub cache_dir: PathBuf,
    /// How long a signature verdict for (repository, digest) is reused.
    pub verdict_ttl: Duration,
}

/// A cached signature verdict: signer key ids, or why not.
type SignatureVerdict = Result<Vec<String>, String>;

/// The decision engine: the policy, and what it needs to answer quickly.
pub struct Engine {
    cfg: EngineConfig,
    trust: Option<TrustPolicy>,
    docker: OnceCell<(DockerClient, bool)>,
    db: Option<Arc<Mutex<VulnDb>>>,
    registries: Mutex<HashMap<String, Arc<Registry>>>,
    verdicts: Mutex<HashMap<String, (Instant, SignatureVerdict)>>,
    events: Mutex<Box<dyn Write + Send>>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Engine({})", self.cfg.policy.path.display())
    }
}

fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

/// Whether `uri` is a container create (`/containers/create`, `/v1.47/containers/create`).
fn is_create(method: &str, uri: &str) -> bool {
    let path = uri.split('?').next().unwrap_or_default();
    let path = path.trim_end_matches('/');
    let rest = match path.strip_prefix("/v") {
        Some(r) => r
            .split_once('/')
            .map(|(_, p)| format!("/{p}"))
            .unwrap_or_default(),
        None => path.to_string(),
    };
    method.eq_ignore_ascii_case("POST") && rest == "/containers/create"
}

fn query_param(uri: &str, key: &str) -> Option<String> {
    let q = uri.split_once('?')?.1;
    q.split('&')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == key)
        .map(|(_, v)| v.to_string())
}

impl Engine {
    /// Loads the trust policy and the vulnerability database the rules need.
    pub fn new(cfg: EngineConfig, events: Box<dyn Write + Send>) -> Result<Engine, TrustError> {
        let trust = match &cfg.policy.trust {
            Some(p) => Some(TrustPolicy::load(p)?),
            None => None,
        };
        let db = if cfg.policy.rules.contains(&Rule::Scanned) {
            let db = VulnDb::open(&cfg.db_path).map_err(|e| {
                TrustError::Other(format!(
                    "the `scanned` rule needs the vulnerability database: {e} (rampart db import)"
                ))
            })?;
            Some(Arc::new(Mutex::new(db)))
        } else {
            None
        };
        Ok(Engine {
            cfg,
            trust,
            docker: OnceCell::new(),
            db,
            registries: Mutex::new(HashMap::new()),
            verdicts: Mutex::new(HashMap::new()),
            events: Mutex::new(events),
        })
    }

    async fn docker(&self) -> Result<&(DockerClient, bool), String> {
        self.docker
            .get_or_try_init(|| async {
                let c = DockerClient::connect(&self.cfg.docker_socket)
                    .await
                    .map_err(|e| e.to_string())?;
                let userns = c
                    .api()
                    .info()
                    .await
                    .ok()
                    .and_then(|i| i.security_options)
                    .unwrap_or_default()
                    .iter()
                    .any(|o| o.contains("name=userns"));
                Ok((c, userns))
            })
            .await
    }

    fn registry(&self, host: &str) -> Arc<Registry> {
        let mut m = match self.registries.lock() {
            Ok(m) => m,
            Err(p) => p.into_inner(),
        };
        m.entry(host.to_string())
            .or_insert_with(|| Arc::new(Registry::new(host)))
            .clone()
    }

    fn emit(&self, d: &Decision) {
        if let Ok(line) = serde_json::to_string(d) {
            if let Ok(mut w) = self.events.lock() {
                let _ = writeln!(w, "{line}");
                let _ = w.flush();
            }
        }
    }

    /// Judges one request (AuthZReq). Never fails: errors become the fail mode's answer.
    pub async fn authorize(&self, req: &AuthzRequest) -> AuthzResponse {
        tracing::debug!(method = %req.request_method, uri = %req.request_uri, body = req.request_body.is_some(), "authz request");
        if !is_create(&req.request_method, &req.request_uri) {
            return AuthzResponse {
                allow: true,
                ..Default::default()
            };
        }
        let start = Instant::now();
        let mut d = Decision {
            kind: "admission.decision",
            time: now_ns(),
            allowed: false,
            outcome: "deny",
            user: req.user.clone(),
            uri: req.request_uri.clone(),
            container_name: query_param(&req.request_uri, "name"),
            image: None,
            digest: None,
            signers: Vec::new(),
            violations: Vec::new(),
            message: String::new(),
            duration_us: 0,
        };
        let outcome = self.judge(req, &mut d).await;
        match outcome {
            Ok(()) => {
                if d.violations.is_empty() {
                    d.allowed = true;
                    d.outcome = "allow";
                } else {
                    let msg: Vec<String> = d
                        .violations
                        .iter()
                        .map(|v| format!("[{}] {}", v.rule.as_str(), v.message))
                        .collect();
                    d.message = format!("rampart: {}", msg.join("; "));
                    let reason = self.break_glass(&d, req);
                    if let Some(reason) = reason {
                        d.allowed = true;
                        d.outcome = "break_glass";
                        d.message =
                            format!("{} (allowed by {BREAK_GLASS_LABEL}: {reason})", d.message);
                    }
                }
            }
            Err(e) => {
                if self.cfg.policy.fail_open {
                    d.allowed = true;
                    d.outcome = "fail_open";
                    d.message = format!("rampart could not decide, allowed (fail: open): {e}");
                } else {
                    d.outcome = "fail_closed";
                    d.message = format!("rampart could not decide, denied (fail: closed): {e}");
                }
            }
        }
        d.duration_us = start.elapsed().as_micros() as u64;
        self.emit(&d);
        AuthzResponse {
            allow: d.allowed,
            msg: if d.allowed { String::new() } else { d.message },
            err: String::new(),
        }
    }

    fn break_glass(&self, _d: &Decision, req: &AuthzRequest) -> Option<String> {
        if !self.cfg.policy.break_glass {
            return None;
        }
        let body = B64.decode(req.request_body.as_deref()?).ok()?;
        let cr: CreateRequest = serde_json::from_slice(&body).ok()?;
        cr.labels?
            .get(BREAK_GLASS_LABEL)
            .filter(|r| !r.is_empty())
            .cloned()
    }

    /// Fills `d.violations`; `Err` when the decision cannot be made. A request that cannot be
    /// read is a violation, not an error: it is denied whatever the fail mode.
    async fn judge(&self, req: &AuthzRequest, d: &mut Decision) -> Result<(), String> {
        let body = match req.request_body.as_deref().map(|b| B64.decode(b)) {
            Some(Ok(b)) if !b.is_empty() => b,
            Some(Err(_)) => return Err("the request body is not base64".into()),
            _ => {
                d.violations.push(Violation {
                    rule: Rule::Request,
                    message: "container create without a request body (missing, empty or too large to forward): denied, as the CVE-2024-41110 class of bypass sends exactly this".into(),
                });
                return Ok(());
            }
        };
        let cr: CreateRequest = match serde_json::from_slice(&body) {
            Ok(c) => c,
            Err(e) => {
                d.violations.push(Violation {
                    rule: Rule::Request,
                    message: format!("container create body is not valid JSON (truncated?): {e}"),
                });
                return Ok(());
            }
        };
        if cr.image.is_empty() {
            d.violations.push(Violation {
                rule: Rule::Request,
                message: "container create without an image".into(),
            });
            return Ok(());
        }
        d.image = Some(cr.image.clone());
        let image = ImageRef::parse(&cr.image).map_err(|e| e.to_string())?;
        let labels = cr.labels.clone().unwrap_or_default();
        let rules = self.cfg.policy.rules_for(&image.repo_name(), &labels);
        let (docker, userns) = self.docker().await?;
        let inspect = docker
            .api()
            .inspect_image(&cr.image)
            .await
            .map_err(|e| format!("cannot inspect image {}: {e}", cr.image))?;
        let image_user = inspect
            .config
            .as_ref()
            .and_then(|c| c.user.clone())
            .unwrap_or_default();
        d.violations
            .extend(check_config(&cr, &rules, &image_user, *userns));
        if rules.contains(&Rule::Signed) {
            self.check_signature(&image, inspect.repo_digests.as_deref().unwrap_or(&[]), d)
                .await?;
        }
        if rules.contains(&Rule::Scanned) {
            let id = inspect
                .id
                .clone()
                .ok_or_else(|| format!("image {} has no id", cr.image))?;
            self.check_scan(&id, d).await?;
        }
        Ok(())
    }

    async fn check_signature(
        &self,
        image: &ImageRef,
        repo_digests: &[String],
        d: &mut Decision,
    ) -> Result<(), String> {
        let Some(trust) = &self.trust else {
            return Err("the `signed` rule has no trust policy".into());
        };
        // The digest that will run: the reference's own, else the local image's digest from
        // this repository.
        let running = match &image.digest {
            Some(dg) => Some(dg.clone()),
            None => repo_digests.iter().find_map(|rd| {
                let (name, dg) = rd.split_once('@')?;
                let r = ImageRef::parse(name).ok()?;
                (r.repo_name() == image.repo_name()).then(|| dg.to_string())
            }),
        };
        let Some(running) = running else {
            d.violations.push(Violation {
                rule: Rule::Signed,
                message: format!(
                    "{image} has no digest from {} (built or loaded locally, never pulled): it cannot be verified",
                    image.registry
                ),
            });
            return Ok(());
        };
        d.digest = Some(running.clone());
        let key = format!("{}@{running}", image.repo_name());
        let cached = self.verdicts.lock().ok().and_then(|m| {
            m.get(&key)
                .filter(|(t, _)| t.elapsed() < self.cfg.verdict_ttl)
                .map(|(_, v)| v.clone())
        });
        let verdict = match cached {
            Some(v) => v,
            None => {
                let reg = self.registry(&image.registry);
                let trust = trust.clone();
                let pinned = image.clone();
                let v = tokio::task::spawn_blocking(move || {
                    trust.evaluate(&reg, &pinned, Some(&running))
                })
                .await
                .map_err(|e| e.to_string())?
                .map_err(|e| e.to_string())?;
                let v: SignatureVerdict = if v.allowed {
                    Ok(v.verified
                        .map(|x| x.signatures.iter().map(|s| s.key_id.clone()).collect())
                        .unwrap_or_default())
                } else {
                    Err(v.message.unwrap_or_else(|| "not signed".into()))
                };
                if let Ok(mut m) = self.verdicts.lock() {
                    m.insert(key, (Instant::now(), v.clone()));
                }
                v
            }
        };
        match verdict {
            Ok(signers) => d.signers = signers,
            Err(m) => d.violations.push(Violation {
                rule: Rule::Signed,
                message: m,
            }),
        }
        Ok(())
    }

    async fn check_scan(&self, image_id: &str, d: &mut Decision) -> Result<(), String> {
        let Some(db) = self.db.clone() else {
            return Err("the `scanned` rule has no vulnerability database".into());
        };
        let cache = InventoryCache::new(&self.cfg.cache_dir);
        let id = image_id.to_string();
        let threshold = self.cfg.policy.max_severity;
        let task = tokio::task::spawn_blocking(
            move || -> Result<Vec<(String, Severity, String)>, String> {
                let report = match cache.get(&id) {
                    Some(inv) => {
                        let db = db
                            .lock()
                            .map_err(|_| "database lock poisoned".to_string())?;
                        rampart_scan::match_inventory(&db, &inv, now_ns())
                            .map_err(|e| e.to_string())?
                    }
                    None => {
                        let reader = ImageReader::new(Limits::default());
                        let opts = ScanOptions {
                            cache: Some(cache),
                            refresh: false,
                        };
                        let db = db
                            .lock()
                            .map_err(|_| "database lock poisoned".to_string())?;
                        rampart_scan::scan(
                            &reader,
                            &Target::Daemon(id.clone()),
                            Some(&db),
                            &opts,
                            &NoProgress,
                        )
                        .map_err(|e| format!("scanning {id}: {e}"))?
                        .matches
                    }
                };
                Ok(report
                    .findings
                    .iter()
                    .filter(|f| f.severity >= threshold)
                    .map(|f| {
                        (
                            f.vulnerability_id.clone(),
                            f.severity,
                            f.package.name.clone(),
                        )
                    })
                    .collect())
            },
        );
        let found = tokio::time::timeout(self.cfg.policy.scan_timeout, task)
            .await
            .map_err(|_| {
                format!(
                    "image {image_id} has no cached scan and scanning it took longer than {:?}",
                    self.cfg.policy.scan_timeout
                )
            })?
            .map_err(|e| e.to_string())??;
        if !found.is_empty() {
            let first: Vec<String> = found
                .iter()
                .take(3)
                .map(|(v, s, p)| format!("{v} ({s:?}, {p})"))
                .collect();
            d.violations.push(Violation {
                rule: Rule::Scanned,
                message: format!(
                    "{} vulnerabilit{} at or above {threshold:?}: {}{}",
                    found.len(),
                    if found.len() == 1 { "y" } else { "ies" },
                    first.join(", "),
                    if found.len() > 3 { ", ..." } else { "" }
                ),
            });
        }
        Ok(())
    }
}

/// Decides one AuthZReq body (the JSON dockerd posts); the plugin's whole logic, without HTTP.
pub async fn decide(engine: &Engine, body: &[u8]) -> AuthzResponse {
    match serde_json::from_slice::<AuthzRequest>(body) {
        Ok(req) => engine.authorize(&req).await,
        Err(e) => AuthzResponse {
            allow: false,
            msg: format!("rampart: unreadable authorization request: {e}"),
            err: String::new(),
        },
    }
}

fn json(v: &impl Serialize) -> axum::response::Response {
    let body = serde_json::to_vec(v).unwrap_or_default();
    axum::response::Response::builder()
        .header("Content-Type", "application/vnd.docker.plugins.v1.2+json")
        .body(axum::body::Body::from(body))
        .unwrap_or_default()
}

/// Serves the plugin protocol on a unix socket at `socket` until `shutdown` resolves. An old
/// socket file at that path is replaced.
pub async fn serve(
    engine: Arc<Engine>,
    socket: &Path,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), TrustError> {
    if let Some(dir) = socket.parent() {
        std::fs::create_dir_all(dir).map_err(|e| TrustError::io(dir, e))?;
    }
    let _ = std::fs::remove_file(socket);
    let listener = tokio::net::UnixListener::bind(socket).map_err(|e| TrustError::io(socket, e))?;
    let app = Router::new()
        .route(
            "/Plugin.Activate",
            post(|| async { json(&BTreeMap::from([("Implements", vec!["authz"])])) }),
        )
        .route(
            "/AuthZPlugin.AuthZReq",
            post(|State(e): State<Arc<Engine>>, body: Bytes| async move {
                json(&decide(&e, &body).await)
            }),
        )
        .route(
            "/AuthZPlugin.AuthZRes",
            post(|| async {
                json(&AuthzResponse {
                    allow: true,
                    ..Default::default()
                })
            }),
        )
        .with_state(engine);
    let r = axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
        .map_err(|e| TrustError::io(socket, e));
    let _ = std::fs::remove_file(socket);
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_uris() {
        assert!(is_create("POST", "/v1.47/containers/create?name=x"));
        assert!(is_create("POST", "/containers/create"));
        assert!(!is_create("GET", "/v1.47/containers/create"));
        assert!(!is_create("POST", "/v1.47/containers/abc/start"));
        assert_eq!(
            query_param("/v1.47/containers/create?name=x&p=1", "name").as_deref(),
            Some("x")
        );
    }
}
