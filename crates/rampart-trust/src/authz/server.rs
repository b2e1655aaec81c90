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
use std::time::{Duration, Instant};

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
use tokio::sync::{OnceCell, Semaphore};

use super::gojson::{self, GoValue};
use super::judge::{self, Context};
use super::passwd;
use super::policy::{AdmissionPolicy, Rule, Violation, BREAK_GLASS_LABEL};
use super::route::{self, Endpoint, Judged, Route};
use super::service;
use crate::error::TrustError;
use crate::policy::TrustPolicy;
use crate::reference::ImageRef;
use crate::registry::Registry;

/// What dockerd sends.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct AuthzRequest {
    /// The authenticated user (the TLS client certificate's name); empty without
    /// authentication.
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
    /// The request's headers (first value of each).
    #[serde(default)]
    pub request_headers: Option<BTreeMap<String, String>>,
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

/// One admission decision, written as a JSON line for every write request (reads are
/// allowed without a record).
#[derive(Debug, Clone, Serialize)]
pub struct Decision {
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// Unix time, nanoseconds.
    pub time: u64,
    pub allowed: bool,
    /// `allow`, `deny`, `break_glass` (denied by rules, allowed for a listed user),
    /// `fail_open`, `fail_closed`.
    pub outcome: &'static str,
    pub user: String,
    pub method: String,
    pub uri: String,
    /// What the router made of it: `container.create`, `exec.create`, `allowed: ...`,
    /// `gated: plugins`, `unknown`, `unparsable`.
    pub endpoint: String,
    pub container_name: Option<String>,
    /// The container an exec, update or start is about.
    pub container_id: Option<String>,
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

/// What the engine knows about the daemon.
#[derive(Debug)]
struct Daemon {
    client: DockerClient,
    userns: bool,
    /// The daemon's data root (containers must not bind it or a parent of it).
    root_dir: Option<String>,
}

/// A scan in progress: its result, once there.
type ScanWatch = tokio::sync::watch::Receiver<Option<Result<Arc<rampart_scan::Inventory>, String>>>;

/// The decision engine: the policy, and what it needs to answer quickly.
///
/// Concurrency: no lock is held across a decision. The vulnerability database is locked only
/// to match a cached inventory (milliseconds); reading an image (the slow part of a scan)
/// holds no lock, runs on a blocking thread, at most `scan_concurrency` at once, one per
/// image (a second request for the same image waits for the first scan).
pub struct Engine {
    cfg: EngineConfig,
    trust: Option<TrustPolicy>,
    docker: OnceCell<Daemon>,
    db: Option<Arc<Mutex<VulnDb>>>,
    scan_slots: Arc<Semaphore>,
    scans: Arc<Mutex<HashMap<String, ScanWatch>>>,
    registries: Mutex<HashMap<String, Arc<Registry>>>,
    verdicts: Mutex<HashMap<String, (Instant, SignatureVerdict)>>,
    events: Mutex<Box<dyn Write + Send>>,
    sink: Option<DecisionSink>,
    scanner: Option<Scanner>,
}

/// Scans an image (by id) into the inventory cache, out of process. Dropping the future must
/// stop the scan: that is how a scan is cancelled at `scan_timeout`.
pub type Scanner = Arc<
    dyn Fn(
            String,
        )
            -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), ScanFailed>> + Send>>
        + Send
        + Sync,
>;

/// Why a [`Scanner`] did not fill the cache: the scanner could not start, or what it said
/// when it failed (its exit status and last line of errors), in words for a person.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ScanFailed(pub String);

/// Scans on demand run as `PROGRAM image scan` children writing the inventory cache in
/// `cache_dir`, so that the engine can cancel one at `scan_timeout`: dropping the scan kills
/// the child. `program` names the rampart binary (`std::env::current_exe`), asked at each scan.
pub fn child_scanner<F>(program: F, cache_dir: std::path::PathBuf) -> Scanner
where
    F: Fn() -> std::io::Result<std::path::PathBuf> + Send + Sync + 'static,
{
    let program = Arc::new(program);
    Arc::new(move |id: String| {
        let cache = cache_dir.clone();
        let program = program.clone();
        Box::pin(async move {
            let exe = program().map_err(|e| ScanFailed(format!("the rampart binary: {e}")))?;
            let child = tokio::process::Command::new(exe)
                .args(["image", "scan", &format!("docker:{id}")])
                // Secret and malware checks stay on: the CLI caches only a complete inventory.
                .args(["--skip-db", "--format", "json"])
                .args(["--output", "/dev/null", "--cache-dir"])
                .arg(&cache)
                .stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::piped())
                .kill_on_drop(true)
                .spawn()
                .map_err(|e| ScanFailed(format!("starting rampart image scan: {e}")))?;
            let out = child
                .wait_with_output()
                .await
                .map_err(|e| ScanFailed(format!("rampart image scan: {e}")))?;
            if out.status.success() {
                Ok(())
            } else {
                let err = String::from_utf8_lossy(&out.stderr);
                Err(ScanFailed(format!(
                    "rampart image scan exited with {}: {}",
                    out.status,
                    err.trim().lines().last().unwrap_or_default()
                )))
            }
        })
    })
}

/// Where decisions go besides the JSON lines (the binary ships them as events).
pub type DecisionSink = Box<dyn Fn(&Decision) + Send + Sync>;

impl Decision {
    /// The decision as an `admission.decision` event: `policy` (the policy file, the endpoint
    /// as selector, the rules broken, the outcome as action, the message as reason, the image
    /// digest), `auth` (the authenticated user), `container` (name, id, image).
    pub fn to_event(
        &self,
        policy: &str,
        id: rampart_event::EventId,
        device: Arc<rampart_event::Device>,
    ) -> rampart_event::Event {
        use rampart_event::{
            AuthInfo, AuthOutcome, Container, ContainerRuntime, Event, EventKind, PolicyInfo,
        };
        let mut ev = Event::new(id, self.time, EventKind::AdmissionDecision, device);
        let mut rules: Vec<&str> = self.violations.iter().map(|v| v.rule.as_str()).collect();
        rules.dedup();
        ev.policy = Some(PolicyInfo {
            policy: policy.to_string(),
            selector: self.endpoint.clone(),
            rule: if rules.is_empty() {
                "none".into()
            } else {
                rules.join(",")
            },
            action: self.outcome.to_string(),
            mechanism: "docker authz plugin".into(),
            reason: if self.message.is_empty() {
                format!("{} {}", self.method, self.uri)
            } else {
                self.message.clone()
            },
            sha256: self
                .digest
                .as_deref()
                .map(|d| d.trim_start_matches("sha256:").to_string()),
            ..PolicyInfo::default()
        });
        ev.auth = Some(AuthInfo {
            outcome: if self.allowed {
                AuthOutcome::Success
            } else {
                AuthOutcome::Failure
            },
            user: self.user.clone(),
            method: None,
            src_ip: None,
            src_port: None,
            service: "docker".into(),
            log_source: "rampart authz".into(),
            message: format!("{} {}", self.method, self.uri),
        });
        if self.image.is_some() || self.container_id.is_some() || self.container_name.is_some() {
            let mut c = Container::unnamed(
                self.container_id.clone().unwrap_or_default(),
                ContainerRuntime::Docker,
            );
            c.name = self.container_name.clone().unwrap_or_default();
            c.image = self.image.clone().unwrap_or_default();
            c.image_digest = self.digest.clone();
            ev.container = Some(Arc::new(c));
        }
        ev
    }
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Engine({})", self.cfg.policy.path.display())
    }
}

use rampart_event::now_ns;

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    }
}

/// Docker object names (volumes, networks, containers): what dockerd accepts, so a name
/// cannot steer the plugin's own lookups to another API path.
fn valid_name(n: &str) -> bool {
    let b = n.as_bytes();
    !b.is_empty()
        && b[0].is_ascii_alphanumeric()
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || b"_.-".contains(c))
}

fn header<'a>(req: &'a AuthzRequest, name: &str) -> Option<&'a str> {
    req.request_headers
        .as_ref()?
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

fn endpoint_name(r: &Result<Route, route::RouteError>) -> String {
    match r {
        Err(_) => "unparsable".into(),
        Ok(r) => match &r.endpoint {
            Endpoint::Read => "read".into(),
            Endpoint::Allowed(why) => format!("allowed: {why}"),
            Endpoint::Gated(g) => format!("gated: {}", g.as_str()),
            Endpoint::Unknown => "unknown".into(),
            Endpoint::Judged(j) => match j {
                Judged::ContainerCreate => "container.create".into(),
                Judged::ContainerStart(_) => "container.start".into(),
                Judged::ContainerUpdate(_) => "container.update".into(),
                Judged::ExecCreate(_) => "exec.create".into(),
                Judged::VolumeCreate => "volume.create".into(),
                Judged::Build => "build".into(),
                Judged::ServiceCreate => "service.create".into(),
                Judged::ServiceUpdate(_) => "service.update".into(),
                Judged::PluginPrivileges => "plugin.privileges".into(),
                Judged::PluginEnable(_) => "plugin.enable".into(),
                Judged::ContainerArchive(_) => "container.archive".into(),
            },
        },
    }
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
            scan_slots: Arc::new(Semaphore::new(cfg.policy.scan_concurrency.max(1))),
            cfg,
            trust,
            docker: OnceCell::new(),
            db,
            scans: Arc::new(Mutex::new(HashMap::new())),
            registries: Mutex::new(HashMap::new()),
            verdicts: Mutex::new(HashMap::new()),
            events: Mutex::new(events),
            sink: None,
            scanner: None,
        })
    }

    /// Scans on demand with `scanner` (cancellable) instead of in process.
    pub fn with_scanner(mut self, scanner: Scanner) -> Engine {
        self.scanner = Some(scanner);
        self
    }

    /// Also hands every decision to `sink` (after the JSON line is written).
    pub fn with_sink(mut self, sink: DecisionSink) -> Engine {
        self.sink = Some(sink);
        self
    }

    async fn docker(&self) -> Result<&Daemon, String> {
        self.docker
            .get_or_try_init(|| async {
                let client = DockerClient::connect(&self.cfg.docker_socket)
                    .await
                    .map_err(|e| e.to_string())?;
                let info = client.info().await.map_err(|e| e.message())?;
                let userns = info
                    .security_options
                    .unwrap_or_default()
                    .iter()
                    .any(|o| o.contains("name=userns"));
                Ok(Daemon {
                    client,
                    userns,
                    root_dir: info.docker_root_dir,
                })
            })
            .await
    }

    fn registry(&self, host: &str) -> Arc<Registry> {
        lock(&self.registries)
            .entry(host.to_string())
            .or_insert_with(|| Arc::new(Registry::new(host)))
            .clone()
    }

    fn emit(&self, d: &Decision) {
        if let Ok(line) = serde_json::to_string(d) {
            let mut w = lock(&self.events);
            if writeln!(w, "{line}").and_then(|_| w.flush()).is_err() {
                tracing::error!(decision = %line, "could not write an admission decision");
            }
        }
        if let Some(sink) = &self.sink {
            sink(d);
        }
    }

    /// Judges one request (AuthZReq). Never fails: errors become the fail mode's answer, and
    /// the fail mode applies only to "could not decide"; a request the rules deny is denied
    /// whatever it says.
    pub async fn authorize(&self, req: &AuthzRequest) -> AuthzResponse {
        tracing::debug!(method = %req.request_method, uri = %req.request_uri, body = req.request_body.is_some(), "authz request");
        let start = Instant::now();
        let parsed = route::route(&req.request_method, &req.request_uri);
        if matches!(&parsed, Ok(r) if r.endpoint == Endpoint::Read) {
            return AuthzResponse {
                allow: true,
                ..Default::default()
            };
        }
        let mut d = Decision {
            kind: "admission.decision",
            time: now_ns(),
            allowed: false,
            outcome: "deny",
            user: req.user.clone(),
            method: req.request_method.clone(),
            uri: req.request_uri.clone(),
            endpoint: endpoint_name(&parsed),
            container_name: parsed
                .as_ref()
                .ok()
                .and_then(|r| r.query_value("name").map(str::to_string)),
            container_id: parsed.as_ref().ok().and_then(|r| match &r.endpoint {
                Endpoint::Judged(
                    Judged::ContainerStart(id)
                    | Judged::ContainerUpdate(id)
                    | Judged::ExecCreate(id)
                    | Judged::ContainerArchive(id),
                ) => Some(id.clone()),
                _ => None,
            }),
            image: None,
            digest: None,
            signers: Vec::new(),
            violations: Vec::new(),
            message: String::new(),
            duration_us: 0,
        };
        let outcome = match &parsed {
            Err(e) => {
                d.violations.push(Violation {
                    rule: Rule::Request,
                    message: format!(
                        "the request target does not parse as dockerd's router reads it: {e}"
                    ),
                });
                Ok(None)
            }
            Ok(r) => self.judge(req, r, &mut d).await,
        };
        match outcome {
            Ok(glass) => {
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
                    let request_ok = !d.violations.iter().any(|v| v.rule == Rule::Request);
                    if let (Some(reason), true) = (glass, request_ok) {
                        d.allowed = true;
                        d.outcome = "break_glass";
                        d.message = format!(
                            "{} (allowed: user {:?} broke glass with {BREAK_GLASS_LABEL}={reason})",
                            d.message, req.user
                        );
                    }
                }
            }
            Err(e) => {
                if !d.violations.is_empty() {
                    // Rules already deny: the fail mode does not apply.
                    let msg: Vec<String> = d
                        .violations
                        .iter()
                        .map(|v| format!("[{}] {}", v.rule.as_str(), v.message))
                        .collect();
                    d.message = format!("rampart: {} (and could not finish: {e})", msg.join("; "));
                } else if self.cfg.policy.fail_open {
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

    fn request(d: &mut Decision, message: String) {
        d.violations.push(Violation {
            rule: Rule::Request,
            message,
        });
    }

    /// Fills `d.violations`; `Ok(Some(reason))` when an authorised user asked to break glass;
    /// `Err` when the decision cannot be made.
    async fn judge(
        &self,
        req: &AuthzRequest,
        r: &Route,
        d: &mut Decision,
    ) -> Result<Option<String>, String> {
        let judged = match &r.endpoint {
            Endpoint::Read | Endpoint::Allowed(_) => return Ok(None),
            Endpoint::Gated(g) => {
                if !self.cfg.policy.allow.contains(g) {
                    Self::request(
                        d,
                        format!(
                            "{} {} is gated ({}): denied unless the policy's `allow:` lists it",
                            req.request_method,
                            r.path,
                            g.as_str()
                        ),
                    );
                }
                return Ok(None);
            }
            Endpoint::Unknown => {
                Self::request(
                    d,
                    format!(
                        "{} {} is not an Engine API write the plugin knows: denied by default",
                        req.request_method, r.path
                    ),
                );
                return Ok(None);
            }
            Endpoint::Judged(j) => j,
        };
        let body = match req.request_body.as_deref().map(|b| B64.decode(b)) {
            Some(Ok(b)) if !b.is_empty() => Some(b),
            Some(Err(_)) => return Err("the request body is not base64".into()),
            _ => None,
        };
        let json_type = header(req, "Content-Type").is_some_and(|c| {
            c.split(';')
                .next()
                .is_some_and(|t| t.trim().eq_ignore_ascii_case("application/json"))
        });
        let ctx = Context {
            allow_fields: &self.cfg.policy.allow_fields,
            daemon_paths: Vec::new(),
        };
        match judged {
            Judged::Build => {
                // Go's FormValue reads a urlencoded or multipart body before the query.
                let form = header(req, "Content-Type").is_some_and(|c| {
                    let c = c.to_ascii_lowercase();
                    c.contains("x-www-form-urlencoded") || c.contains("multipart/form-data")
                });
                if form {
                    Self::request(d, "a build with a form body (dockerd reads options from it the plugin does not see)".into());
                }
                let rules = self.cfg.policy.rules_for(&req.user, &[]);
                push_applicable(d, judge::judge_build(r, &ctx), &rules);
                return Ok(None);
            }
            Judged::ContainerArchive(id) => {
                // The body is a tar the plugin does not read. What it can change that a rule
                // depends on: the /etc/passwd a user name is resolved against at every start.
                if !valid_name(id) {
                    Self::request(d, format!("container {id:?}: not a container name or id"));
                    return Ok(None);
                }
                let daemon = self.docker().await?;
                let c = daemon
                    .client
                    .inspect_container(id)
                    .await
                    .map_err(|e| format!("cannot inspect container {id}: {e}"))?;
                // dockerd merges the image's USER into the container's config at create.
                let user = c.config.and_then(|c| c.user).unwrap_or_default();
                if let judge::UserVerdict::Name(n) = judge::user_verdict(&user) {
                    let rules = self.cfg.policy.rules_for(&req.user, &[]);
                    push_applicable(
                        d,
                        vec![Violation {
                            rule: Rule::NonRoot,
                            message: format!(
                                "copying files into container {id}, which runs as the user name {n:?}: a new /etc/passwd would remap it at the next start"
                            ),
                        }],
                        &rules,
                    );
                }
                return Ok(None);
            }
            Judged::PluginEnable(name) => {
                // Names as dockerd's references spell them; anything else is not looked up.
                let ok = !name.is_empty()
                    && !name.contains("..")
                    && name
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"._-:/@".contains(&b));
                if !ok {
                    Self::request(d, format!("plugin {name:?}: not a plugin reference"));
                    return Ok(None);
                }
                let bytes =
                    raw_get(&self.cfg.docker_socket, &format!("/plugins/{name}/json")).await?;
                let plugin = gojson::parse(&bytes).map_err(|e| format!("plugin {name}: {e}"))?;
                let rules = self.cfg.policy.rules_for(&req.user, &[]);
                push_applicable(d, service::judge_plugin_config(&plugin, &ctx), &rules);
                return Ok(None);
            }
            Judged::ContainerStart(_) => {
                if body.is_some() || json_type {
                    Self::request(d, "a body on container start (a HostConfig, applied by API < 1.24) would change a container already judged: refused".into());
                }
                return Ok(None);
            }
            _ => {}
        }
        let Some(body) = body else {
            Self::request(d, format!(
                "{} without a request body (missing, empty or too large to forward): denied, as the CVE-2024-41110 class of bypass sends exactly this",
                d.endpoint
            ));
            return Ok(None);
        };
        let value = match gojson::parse(&body) {
            Ok(v) => v,
            Err(e) => {
                Self::request(d, format!("{}: {e}", d.endpoint));
                return Ok(None);
            }
        };
        let decoded = match judged {
            Judged::ContainerCreate => return self.judge_create(req, &value, ctx, d).await,
            Judged::ServiceCreate => return self.judge_service(req, r, None, &value, ctx, d).await,
            Judged::ServiceUpdate(id) => {
                return self.judge_service(req, r, Some(id), &value, ctx, d).await
            }
            Judged::PluginPrivileges => {
                if !self.cfg.policy.allow.contains(&route::Gate::Plugins) {
                    Self::request(
                        d,
                        format!(
                            "{} {} is gated (plugins): a managed plugin runs as root from an image no rule judges; denied unless the policy's `allow:` lists it",
                            req.request_method, r.path
                        ),
                    );
                }
                service::judge_plugin_privileges(&value, &ctx)
            }
            Judged::ExecCreate(id) => return self.judge_exec(req, id, &value, ctx, d).await,
            Judged::ContainerUpdate(_) => judge::judge_update(&value, &ctx),
            Judged::VolumeCreate => judge::judge_volume_create(&value, &ctx),
            Judged::ContainerStart(_)
            | Judged::Build
            | Judged::PluginEnable(_)
            | Judged::ContainerArchive(_) => Ok(Vec::new()),
        };
        match decoded {
            Ok(v) => {
                let rules = self.cfg.policy.rules_for(&req.user, &[]);
                push_applicable(d, v, &rules);
            }
            Err(e) => Self::request(d, format!("{}: {e}", d.endpoint)),
        }
        Ok(None)
    }

    async fn judge_exec(
        &self,
        req: &AuthzRequest,
        id: &str,
        value: &GoValue,
        ctx: Context<'_>,
        d: &mut Decision,
    ) -> Result<Option<String>, String> {
        let (facts, mut v) = match judge::judge_exec(value, &ctx) {
            Ok(x) => x,
            Err(e) => {
                Self::request(d, format!("exec.create: {e}"));
                return Ok(None);
            }
        };
        if !valid_name(id) {
            Self::request(
                d,
                format!("exec in container {id:?}: not a container name or id"),
            );
            return Ok(None);
        }
        let early = self.cfg.policy.rules_for(&req.user, &[]);
        let daemon = match self.docker().await {
            Ok(x) => x,
            Err(e) => {
                push_applicable(d, v, &early);
                return Err(e);
            }
        };
        let c = match daemon.client.inspect_container(id).await {
            Ok(c) => c,
            Err(e) => {
                push_applicable(d, v, &early);
                return Err(format!("cannot inspect container {id}: {}", e.message()));
            }
        };
        let container_user = c
            .config
            .as_ref()
            .and_then(|c| c.user.clone())
            .unwrap_or_default();
        let image_id = c.image.clone().unwrap_or_default();
        let mut digests = vec![image_id.clone()];
        let image_user = if facts.user.is_empty() && container_user.is_empty() {
            let i = match daemon.client.inspect_image(&image_id).await {
                Ok(i) => i,
                Err(e) => {
                    push_applicable(d, v, &early);
                    return Err(format!("cannot inspect image {image_id}: {}", e.message()));
                }
            };
            digests.extend(repo_digest_values(i.repo_digests.as_deref().unwrap_or(&[])));
            i.config.and_then(|c| c.user).unwrap_or_default()
        } else {
            String::new()
        };
        let user = if facts.user.is_empty() {
            container_user
        } else {
            facts.user
        };
        let userns_host = c
            .host_config
            .as_ref()
            .and_then(|h| h.userns_mode.clone())
            .is_some_and(|m| m == "host");
        judge::judge_user(
            &user,
            &image_user,
            daemon.userns && !userns_host,
            "the exec",
            None,
            &mut v,
        );
        let rules = self.cfg.policy.rules_for(&req.user, &digests);
        push_applicable(d, v, &rules);
        Ok(None)
    }

    /// Judges sharing `field` (`PidMode`, `IpcMode`, `UTSMode`, `NetworkMode`: its namespace;
    /// `VolumesFrom`: its mounts) with the container `target`: refused when the target is
    /// privileged, has capabilities or devices beyond the defaults, is on the host's namespace
    /// (or another container's) for that field, or binds a sensitive host path.
    async fn judge_shared(
        &self,
        daemon: &Daemon,
        field: &str,
        target: &str,
        ctx: &Context<'_>,
    ) -> Vec<Violation> {
        let rule = if field == "VolumesFrom" {
            Rule::SensitiveMounts
        } else {
            Rule::HostNamespaces
        };
        let bad = |why: String| Violation {
            rule,
            message: format!("HostConfig.{field} shares container {target:?}, {why}"),
        };
        if !valid_name(target) {
            return vec![bad("which is not a container name or id".into())];
        }
        let c = match daemon.client.inspect_container(target).await {
            Ok(c) => c,
            Err(e) => return vec![bad(format!("which cannot be inspected ({})", e.message()))],
        };
        let mut out = Vec::new();
        let hc = c.host_config.unwrap_or_default();
        if hc.privileged == Some(true) {
            out.push(bad("which is privileged".into()));
        }
        if hc.cap_add.as_ref().is_some_and(|c| !c.is_empty())
            || hc.devices.as_ref().is_some_and(|d| !d.is_empty())
        {
            out.push(bad("which has added capabilities or devices".into()));
        }
        let mode = match field {
            "PidMode" => hc.pid_mode.clone(),
            "IpcMode" => hc.ipc_mode.clone(),
            "UTSMode" => hc.uts_mode.clone(),
            "NetworkMode" => hc.network_mode.clone(),
            _ => None,
        }
        .unwrap_or_default();
        if mode == "host" || mode.starts_with("container:") {
            out.push(bad(format!("whose {field} is {mode:?}")));
        }
        if field == "VolumesFrom" {
            // What it mounts (inspect `Mounts`) and what it asked for (`Binds`, `Mounts`).
            let mut sources: Vec<String> = Vec::new();
            for m in c.mounts.unwrap_or_default() {
                let kind = m
                    .typ
                    .as_ref()
                    .and_then(|t| serde_json::to_value(t).ok())
                    .and_then(|v| v.as_str().map(str::to_string))
                    .unwrap_or_default();
                if kind == "bind" {
                    sources.extend(m.source);
                }
            }
            for b in hc.binds.iter().flatten() {
                let src = b.split(':').next().unwrap_or_default();
                if src.starts_with('/') {
                    sources.push(src.to_string());
                }
            }
            for m in hc.mounts.iter().flatten() {
                sources.extend(m.source.clone().filter(|s| s.starts_with('/')));
            }
            for src in sources {
                if let Some(s) = judge::sensitive_host_path(&src, &ctx.daemon_paths) {
                    out.push(bad(format!("which binds {s}")));
                }
            }
            if hc.volumes_from.as_ref().is_some_and(|v| !v.is_empty()) {
                out.push(bad("which itself inherits mounts (VolumesFrom)".into()));
            }
        }
        out
    }

    /// Judges a service spec: the body, or on `rollback=previous` the previous spec dockerd
    /// returns to (read from dockerd: the body is then ignored). Then what the body names:
    /// the image (signature: it must be pinned by digest, as `docker service create` pins it
    /// unless `--no-resolve-image`, since every node pulls it again; scan and user: from the
    /// image on this node), networks (by id or name: none may be the host's) and volumes.
    async fn judge_service(
        &self,
        req: &AuthzRequest,
        r: &Route,
        update: Option<&str>,
        value: &GoValue,
        mut ctx: Context<'_>,
        d: &mut Decision,
    ) -> Result<Option<String>, String> {
        let early = self.cfg.policy.rules_for(&req.user, &[]);
        let rollback = update.is_some() && r.query_value("rollback") == Some("previous");
        let previous: GoValue;
        let value = if let (true, Some(id)) = (rollback, update) {
            if !valid_name(id) {
                Self::request(d, format!("service {id:?}: not a service name or id"));
                return Ok(None);
            }
            // dockerd's own JSON, not a client library's model of it (a field the model lacks
            // would be dropped, and not judged).
            let bytes = raw_get(&self.cfg.docker_socket, &format!("/services/{id}")).await?;
            let svc = gojson::parse(&bytes).map_err(|e| format!("service {id}: {e}"))?;
            let prev = match &svc {
                GoValue::Object(m) => m
                    .iter()
                    .rev()
                    .find(|(k, _)| k == "PreviousSpec")
                    .map(|(_, v)| v.clone()),
                _ => None,
            };
            let Some(prev) = prev.filter(|p| *p != GoValue::Null) else {
                // dockerd refuses a rollback without a previous spec.
                return Ok(None);
            };
            previous = prev;
            &previous
        } else {
            value
        };
        let what = if rollback {
            "service.update (rollback to the previous spec)"
        } else {
            d.endpoint.as_str()
        };
        let (facts, mut v) = match service::judge_service(value, &ctx) {
            Ok(x) => x,
            Err(e) => {
                Self::request(d, format!("{what}: {e}"));
                return Ok(None);
            }
        };
        let mark = |v: &mut Vec<Violation>| {
            if rollback {
                for x in v {
                    x.message = format!("previous spec (rollback): {}", x.message);
                }
            }
        };
        mark(&mut v);
        if facts.plugin && !self.cfg.policy.allow.contains(&route::Gate::Plugins) {
            Self::request(d, "a plugin service (TaskTemplate.Runtime \"plugin\") installs a managed plugin on every node: gated (plugins), denied unless the policy's `allow:` lists it".into());
        }
        if facts.image.is_empty() {
            push_applicable(d, v, &early);
            if !facts.plugin {
                Self::request(d, "a service without an image".into());
            }
            return Ok(None);
        }
        d.image = Some(facts.image.clone());
        let image = match ImageRef::parse(&facts.image) {
            Ok(i) => i,
            Err(e) => {
                push_applicable(d, v, &early);
                Self::request(d, format!("TaskTemplate.ContainerSpec.Image: {e}"));
                return Ok(None);
            }
        };
        let daemon = match self.docker().await {
            Ok(x) => x,
            Err(e) => {
                push_applicable(d, v, &early);
                return Err(e);
            }
        };
        if let Some(root) = &daemon.root_dir {
            ctx.daemon_paths.push(root.clone());
            if let Ok((_, again)) = service::judge_service(value, &ctx) {
                v = again;
                mark(&mut v);
            }
        }
        let api = &daemon.client;
        let mut digests: Vec<String> = image.digest.iter().cloned().collect();
        // The image as this node has it (the task pulls it again: only a digest-pinned
        // reference names what runs).
        let local = api.inspect_image(&facts.image).await.ok();
        if let Some(i) = &local {
            digests.extend(i.id.iter().cloned());
            if image.digest.is_none() {
                digests.clear();
            }
        }
        let needs_image_user = facts.user.is_empty();
        match (&local, needs_image_user) {
            (Some(i), _) => {
                let image_user = i
                    .config
                    .as_ref()
                    .and_then(|c| c.user.clone())
                    .unwrap_or_default();
                judge::judge_user(
                    &facts.user,
                    &image_user,
                    daemon.userns,
                    "the service's tasks",
                    None,
                    &mut v,
                );
            }
            (None, false) => judge::judge_user(
                &facts.user,
                "",
                daemon.userns,
                "the service's tasks",
                None,
                &mut v,
            ),
            (None, true) => {
                push_applicable(d, v, &early);
                return Err(format!(
                    "the service sets no User and its image {} is not on this node: its user cannot be judged (pull it first, or set a numeric non-root --user)",
                    facts.image
                ));
            }
        }
        v.extend(
            self.judge_names(daemon, &facts.volumes, &facts.networks, &ctx)
                .await,
        );
        let rules = self.cfg.policy.rules_for(&req.user, &digests);
        push_applicable(d, v, &rules);
        if rules.contains(&Rule::Signed) {
            if image.digest.is_none() {
                d.violations.push(Violation {
                    rule: Rule::Signed,
                    message: format!(
                        "service image {image} is not pinned by digest: every node pulls the tag again, so no signature names what runs (docker service create pins it unless --no-resolve-image)"
                    ),
                });
            } else {
                self.check_signature(&image, &[], d).await?;
            }
        }
        if rules.contains(&Rule::Scanned) {
            match local.as_ref().and_then(|i| i.id.clone()) {
                Some(id) if image.digest.is_some() => self.check_scan(&id, d).await?,
                _ => {
                    return Err(format!(
                        "service image {} is not on this node by digest: it cannot be scanned here (pull it first)",
                        facts.image
                    ))
                }
            }
        }
        Ok(None)
    }

    /// Named volumes (existing local ones judged by their options) and networks (the host
    /// driver refused), as a create or a service names them.
    async fn judge_names(
        &self,
        daemon: &Daemon,
        volumes: &[String],
        networks: &[String],
        ctx: &Context<'_>,
    ) -> Vec<Violation> {
        let api = &daemon.client;
        let mut v = Vec::new();
        for name in volumes {
            if !valid_name(name) {
                v.push(Violation {
                    rule: Rule::SensitiveMounts,
                    message: format!("volume name {name:?} is not one dockerd accepts"),
                });
                continue;
            }
            // A volume that does not exist yet is created empty by dockerd (local driver).
            if let Ok(vol) = api.inspect_volume(name).await {
                let opts: Vec<(String, String)> = vol.options.into_iter().collect();
                v.extend(judge::judge_existing_volume(name, &vol.driver, &opts, ctx));
            }
        }
        for name in networks {
            if !valid_name(name) {
                v.push(Violation {
                    rule: Rule::HostNamespaces,
                    message: format!("network {name:?} is not a name dockerd accepts"),
                });
                continue;
            }
            if let Ok(n) = api.inspect_network(name).await {
                if n.driver.as_deref() == Some("host") {
                    v.push(Violation {
                        rule: Rule::HostNamespaces,
                        message: format!("network {name:?} is the host's network"),
                    });
                }
            }
        }
        v
    }

    async fn judge_create(
        &self,
        req: &AuthzRequest,
        value: &GoValue,
        mut ctx: Context<'_>,
        d: &mut Decision,
    ) -> Result<Option<String>, String> {
        // The body first, without the daemon: what it grants denies even when a look-up below
        // fails (fail: open covers only "could not decide", never a rule violation).
        let (facts, mut v) = match judge::judge_create(value, &ctx) {
            Ok(x) => x,
            Err(e) => {
                Self::request(d, format!("container.create: {e}"));
                return Ok(None);
            }
        };
        if facts.image.is_empty() {
            Self::request(d, "container create without an image".into());
            return Ok(None);
        }
        let early = self.cfg.policy.rules_for(&req.user, &[]);
        let daemon = match self.docker().await {
            Ok(x) => x,
            Err(e) => {
                push_applicable(d, v, &early);
                return Err(e);
            }
        };
        if let Some(root) = &daemon.root_dir {
            // Again with the daemon's data root among the sensitive paths.
            ctx.daemon_paths.push(root.clone());
            if let Ok((_, again)) = judge::judge_create(value, &ctx) {
                v = again;
            }
        }
        d.image = Some(facts.image.clone());
        let image = match ImageRef::parse(&facts.image) {
            Ok(i) => i,
            Err(e) => {
                Self::request(d, format!("Image: {e}"));
                return Ok(None);
            }
        };
        let api = &daemon.client;
        let inspect = match api.inspect_image(&facts.image).await {
            Ok(i) => i,
            Err(e) => {
                push_applicable(d, v, &early);
                return Err(format!(
                    "cannot inspect image {}: {}",
                    facts.image,
                    e.message()
                ));
            }
        };
        let image_user = inspect
            .config
            .as_ref()
            .and_then(|c| c.user.clone())
            .unwrap_or_default();
        let mut digests: Vec<String> = inspect.id.iter().cloned().collect();
        digests.extend(repo_digest_values(
            inspect.repo_digests.as_deref().unwrap_or(&[]),
        ));
        // A user name: resolved against the image's /etc/passwd as runc will (unless a mount
        // replaces it first).
        let effective = if facts.user.is_empty() {
            &image_user
        } else {
            &facts.user
        };
        let name = match judge::user_verdict(effective) {
            judge::UserVerdict::Name(n) => Some(n),
            _ => None,
        };
        let resolved: Option<Result<Option<i64>, String>> = match (name, &facts.passwd_replaced) {
            (None, _) => None,
            (Some(_), Some(what)) => Some(Err(format!(
                "{what} replaces the image's /etc/passwd before runc reads it"
            ))),
            (Some(n), None) => {
                let layers = inspect
                    .graph_driver
                    .as_ref()
                    .ok_or_else(|| "the image has no GraphDriver".to_string())
                    .and_then(|g| {
                        let data: Vec<(String, String)> =
                            g.data.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
                        passwd::overlay_layers(&g.name, &data)
                    });
                Some(match layers {
                    Err(e) => Err(e),
                    Ok(layers) => tokio::task::spawn_blocking(move || passwd::resolve(&layers, &n))
                        .await
                        .unwrap_or_else(|e| Err(e.to_string())),
                })
            }
        };
        let resolver = |_: &str| -> Result<Option<i64>, String> {
            resolved.clone().unwrap_or_else(|| Err("not a name".into()))
        };
        judge::judge_user(
            &facts.user,
            &image_user,
            daemon.userns && !facts.userns_host,
            "the container",
            Some(&resolver),
            &mut v,
        );
        v.extend(
            self.judge_names(daemon, &facts.volumes, &facts.networks, &ctx)
                .await,
        );
        for (field, target) in &facts.shares {
            v.extend(self.judge_shared(daemon, field, target, &ctx).await);
        }
        let rules = self.cfg.policy.rules_for(&req.user, &digests);
        push_applicable(d, v, &rules);
        let glass = if self.cfg.policy.may_break_glass(&req.user) {
            break_glass_reason(value)
        } else {
            None
        };
        if rules.contains(&Rule::Signed) {
            self.check_signature(&image, inspect.repo_digests.as_deref().unwrap_or(&[]), d)
                .await?;
        }
        if rules.contains(&Rule::Scanned) {
            let id = inspect
                .id
                .clone()
                .ok_or_else(|| format!("image {} has no id", facts.image))?;
            self.check_scan(&id, d).await?;
        }
        Ok(glass)
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

    /// The inventory of `image_id`: from the cache, else from a scan shared by every request
    /// for that image, started at most `scan_concurrency` at a time. Waiting is bounded by
    /// `scan_timeout`. With a [`Scanner`] the scan itself is cancelled at `scan_timeout`;
    /// in process it cannot be interrupted: it keeps its slot until it ends and fills the cache
    /// for the next request.
    async fn inventory(&self, image_id: &str) -> Result<Arc<rampart_scan::Inventory>, String> {
        let cache = InventoryCache::new(&self.cfg.cache_dir);
        let id = image_id.to_string();
        let c = cache.clone();
        if let Some(inv) = tokio::task::spawn_blocking(move || c.get(&id))
            .await
            .map_err(|e| e.to_string())?
        {
            return Ok(Arc::new(inv));
        }
        let mut rx = {
            let mut scans = lock(&self.scans);
            match scans.get(image_id) {
                Some(rx) => rx.clone(),
                None => {
                    let (tx, rx) = tokio::sync::watch::channel(None);
                    scans.insert(image_id.to_string(), rx.clone());
                    let slots = self.scan_slots.clone();
                    let id = image_id.to_string();
                    let scans_done = self.scans.clone();
                    let scanner = self.scanner.clone();
                    let timeout = self.cfg.policy.scan_timeout;
                    tokio::spawn(async move {
                        let r = match (slots.acquire_owned().await, scanner) {
                            (Err(e), _) => Err(e.to_string()),
                            // Out of process: bounded by the timeout, then cancelled (the
                            // scanner's future stops the scan when dropped).
                            (Ok(_permit), Some(scan)) => {
                                match tokio::time::timeout(timeout, scan(id.clone())).await {
                                    Err(_) => Err(format!(
                                        "scanning {id} was cancelled after {timeout:?}"
                                    )),
                                    Ok(Err(e)) => Err(format!("scanning {id}: {e}")),
                                    Ok(Ok(())) => {
                                        let id2 = id.clone();
                                        tokio::task::spawn_blocking(move || cache.get(&id2))
                                            .await
                                            .map_err(|e| e.to_string())
                                            .and_then(|inv| {
                                                inv.map(Arc::new).ok_or_else(|| {
                                                    format!("scanning {id} left no inventory in the cache")
                                                })
                                            })
                                    }
                                }
                            }
                            // In process: not interruptible; keeps its slot until it ends.
                            (Ok(permit), None) => {
                                let id2 = id.clone();
                                tokio::task::spawn_blocking(move || {
                                    let _permit = permit;
                                    let reader = ImageReader::new(Limits::default());
                                    let opts = ScanOptions {
                                        cache: Some(cache),
                                        refresh: false,
                                    };
                                    rampart_scan::scan(
                                        &reader,
                                        &Target::Daemon(id2.clone()),
                                        None,
                                        &opts,
                                        &NoProgress,
                                    )
                                    .map(|r| Arc::new(r.inventory))
                                    .map_err(|e| format!("scanning {id2}: {e}"))
                                })
                                .await
                                .unwrap_or_else(|e| Err(e.to_string()))
                            }
                        };
                        let _ = tx.send(Some(r));
                        lock(&scans_done).remove(&id);
                    });
                    rx
                }
            }
        };
        let waited =
            tokio::time::timeout(self.cfg.policy.scan_timeout, rx.wait_for(|r| r.is_some()))
                .await
                .map_err(|_| {
                    format!(
                        "image {image_id} has no cached scan and scanning it took longer than {:?}",
                        self.cfg.policy.scan_timeout
                    )
                })?
                .map_err(|e| e.to_string())?;
        match &*waited {
            Some(r) => r.clone(),
            None => Err("scan ended without a result".into()),
        }
    }

    async fn check_scan(&self, image_id: &str, d: &mut Decision) -> Result<(), String> {
        let Some(db) = self.db.clone() else {
            return Err("the `scanned` rule has no vulnerability database".into());
        };
        let threshold = self.cfg.policy.max_severity;
        let inv = self.inventory(image_id).await?;
        // The database lock is held only for matching (milliseconds).
        let found = tokio::task::spawn_blocking(
            move || -> Result<Vec<(String, Severity, String)>, String> {
                let report = {
                    let db = lock(&db);
                    rampart_scan::match_inventory(&db, &inv, now_ns()).map_err(|e| e.to_string())?
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
        )
        .await
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

fn push_applicable(d: &mut Decision, v: Vec<Violation>, rules: &[Rule]) {
    d.violations
        .extend(v.into_iter().filter(|v| rules.contains(&v.rule)));
}

/// The digests of `RepoDigests` entries (`repo@sha256:...`).
fn repo_digest_values(rd: &[String]) -> Vec<String> {
    rd.iter()
        .filter_map(|r| r.split_once('@').map(|(_, d)| d.to_string()))
        .collect()
}

/// The break-glass label's value, read with the same decoder.
fn break_glass_reason(v: &GoValue) -> Option<String> {
    let top = gojson::GoObject::new(v, "", judge::CREATE).ok()??;
    top.string_map("Labels")
        .ok()??
        .into_iter()
        .find(|(k, v)| k == BREAK_GLASS_LABEL && !v.is_empty())
        .map(|(_, v)| v)
}

/// A `GET` on dockerd's socket, HTTP/1.0 (no chunking), the body when the status is 200.
async fn raw_get(socket: &Path, path: &str) -> Result<Vec<u8>, String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::UnixStream::connect(socket)
        .await
        .map_err(|e| format!("{}: {e}", socket.display()))?;
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: docker\r\n\r\n").as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    let mut buf = Vec::new();
    // dockerd's answers to these reads are small; 16 MiB bounds a misbehaving peer.
    (&mut s)
        .take(16 << 20)
        .read_to_end(&mut buf)
        .await
        .map_err(|e| e.to_string())?;
    let end = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| format!("GET {path}: no HTTP answer"))?;
    let head = String::from_utf8_lossy(&buf[..end]);
    let status = head.split(' ').nth(1).unwrap_or_default();
    if status != "200" {
        return Err(format!("GET {path}: status {status}"));
    }
    Ok(buf[end + 4..].to_vec())
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

    /// A stand-in for the rampart binary: a script that records its arguments and fails with
    /// two lines of errors when asked to scan `docker:bad`.
    fn fake_rampart(dir: &std::path::Path) -> std::path::PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let p = dir.join("rampart");
        std::fs::write(
            &p,
            format!(
                "#!/bin/sh\necho \"$@\" > {}/args\n[ \"$3\" = docker:bad ] && {{ echo first >&2; echo 'last words' >&2; exit 3; }}\nexit 0\n",
                dir.display()
            ),
        )
        .expect("write script");
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        p
    }

    #[tokio::test]
    async fn child_scanner_runs_image_scan_and_reports_the_last_error_line() {
        let dir = tempfile::tempdir().expect("tempdir");
        let exe = fake_rampart(dir.path());
        let cache = dir.path().join("cache");
        let scan = child_scanner(move || Ok(exe.clone()), cache.clone());
        scan("good".into()).await.expect("exit 0 is a filled cache");
        let args = std::fs::read_to_string(dir.path().join("args")).expect("args");
        assert_eq!(
            args.trim(),
            format!(
                "image scan docker:good --skip-db --format json --output /dev/null --cache-dir {}",
                cache.display()
            )
        );
        let e = scan("bad".into()).await.expect_err("exit 3");
        assert!(e.0.starts_with("rampart image scan exited with"), "{e}");
        assert!(e.0.ends_with(": last words"), "{e}");
        let none = child_scanner(|| Err(std::io::Error::other("no /proc")), cache.clone());
        let e = none("x".into()).await.expect_err("no binary");
        assert_eq!(e.0, "the rampart binary: no /proc");
    }

    #[test]
    fn names_and_headers() {
        assert!(valid_name("data_1.x-y"));
        for n in ["", "../x", "a/b", "a?b", ".x", "a b"] {
            assert!(!valid_name(n), "{n}");
        }
        let req = AuthzRequest {
            request_headers: Some(BTreeMap::from([(
                "content-type".to_string(),
                "application/json; charset=utf-8".to_string(),
            )])),
            ..Default::default()
        };
        assert_eq!(
            header(&req, "Content-Type"),
            Some("application/json; charset=utf-8")
        );
    }
}
