//! The responder: takes the rule engine's detections, runs the matching playbooks (and the
//! rules' own `actions:`) on a worker thread, and records every action as a `response.action`
//! event for the incident timeline.
//!
//! Actions of one run are executed in order; a failing action is recorded with its error and
//! the next one still runs. Runs are executed one after the other, in the order detections
//! arrived. [`Responder::handle`] never blocks the caller's event loop: it matches, applies
//! the rate limit and queues.

use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rampart_container::DockerClient;
use rampart_event::{Alert, Device, Event, EventId, EventKind, Process, ResponseInfo};
use rampart_kernel::enforce::NetPrefix;
use rampart_rules::Detection;

use crate::actions::{self, ProcessRef};
use crate::enforcer::{random_u64, EnforceConfig, PolicyEnforcer};
use crate::facts::{self, ContainerFacts};
use crate::forensics::{self, key::AgentKey, BundleLimits};
use crate::playbook::{ActionKind, Limiter, Playbook, RateLimit};

/// Whether the `actions:` of the rules themselves are carried out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RuleActions {
    /// Carried out, like a playbook named `rule:<rule name>`.
    #[default]
    Enforce,
    /// Recorded as what would have been done.
    DryRun,
    /// Ignored.
    Off,
}

/// How the responder works.
#[derive(Debug, Clone)]
pub struct ResponderConfig {
    pub playbooks: Vec<Playbook>,
    pub rule_actions: RuleActions,
    /// Rate limit of the rules' own actions, per rule.
    pub rule_actions_limit: RateLimit,
    /// Everything is a dry run.
    pub dry_run: bool,
    /// Addresses an isolated container may still reach (e.g. the Rampart server), for every
    /// isolation; playbooks can add more.
    pub isolate_allow: Vec<NetPrefix>,
    /// Where `forensics` actions write bundles.
    pub forensics_dir: PathBuf,
    pub bundle_limits: BundleLimits,
    /// The agent's signing key.
    pub key_path: PathBuf,
    pub docker_socket: PathBuf,
    pub enforce: EnforceConfig,
    /// Events and alerts kept per container for bundles.
    pub recent_per_container: usize,
    /// `stop`: SIGTERM, then SIGKILL after this.
    pub stop_grace: Duration,
    pub device: Arc<Device>,
    /// Where `forensics` bundles are uploaded (the agent's server when it is enrolled).
    pub evidence_sink: Option<Arc<dyn crate::evidence::EvidenceSink>>,
}

impl Default for ResponderConfig {
    fn default() -> Self {
        ResponderConfig {
            playbooks: Vec::new(),
            rule_actions: RuleActions::Enforce,
            rule_actions_limit: RateLimit {
                max: 10,
                per: Duration::from_secs(60),
            },
            dry_run: false,
            isolate_allow: Vec::new(),
            forensics_dir: PathBuf::from("/var/lib/rampart/forensics"),
            bundle_limits: BundleLimits::default(),
            key_path: PathBuf::from(forensics::key::DEFAULT_KEY_PATH),
            docker_socket: PathBuf::from(rampart_container::DEFAULT_SOCKET),
            enforce: EnforceConfig::default(),
            recent_per_container: 200,
            stop_grace: Duration::from_secs(10),
            device: Arc::new(Device::default()),
            evidence_sink: None,
        }
    }
}

struct Job {
    incident: String,
    playbook: Option<String>,
    actions: Vec<ActionKind>,
    dry_run: bool,
    isolate_allow: Vec<NetPrefix>,
    alert: Alert,
    queued: Instant,
}

/// What happened to one action (also the content of its `response.action` event).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActionRecord {
    pub incident: String,
    pub playbook: Option<String>,
    pub action: ActionKind,
    /// `ok`, `failed`, `dry_run`, `skipped`, `rate_limited`.
    pub outcome: String,
    pub detail: String,
    pub started_ns: u64,
    pub finished_ns: u64,
    /// The bundle of a `forensics` action and its upload.
    pub evidence: Option<rampart_event::EvidenceInfo>,
}

type Recent = Arc<Mutex<HashMap<String, VecDeque<Kept>>>>;

/// An event or alert kept for forensic bundles. Kept as it is (its process, container and
/// device are shared `Arc`s) and serialised only when a bundle is made: `observe` runs for
/// every event of the agent's hot path.
#[derive(Debug, Clone)]
enum Kept {
    Event(Box<Event>),
    Alert(Box<Alert>),
}

impl Kept {
    fn to_json(&self) -> Option<serde_json::Value> {
        match self {
            Kept::Event(e) => serde_json::to_value(e).ok(),
            Kept::Alert(a) => serde_json::to_value(a).ok(),
        }
    }
}

/// One playbook (or a rule's own actions) to run for a detection.
struct Run {
    playbook: Option<String>,
    actions: Vec<ActionKind>,
    dry_run: bool,
    allow: Vec<NetPrefix>,
    limit: Option<RateLimit>,
    /// Rate-limit key and incident prefix.
    key: String,
}

/// Runs playbooks for detections (see the module docs).
pub struct Responder {
    jobs: Option<SyncSender<Job>>,
    /// Boxed: an `Event` is about 2 KiB and a bounded channel allocates (and touches) every
    /// slot up front, so 16,384 unboxed slots held 31 MiB.
    out: Receiver<Box<Event>>,
    recent: Recent,
    limiter: Mutex<Limiter>,
    cfg: Arc<ResponderConfig>,
    /// The playbooks detections are matched against: `cfg.playbooks` at start, replaced by
    /// [`Responder::set_playbooks`].
    playbooks: std::sync::RwLock<Arc<Vec<Playbook>>>,
    worker: Option<JoinHandle<()>>,
    pending: Arc<std::sync::atomic::AtomicUsize>,
    instance: u64,
    seq: std::sync::atomic::AtomicU64,
    out_tx: SyncSender<Box<Event>>,
    /// Playbook runs and `response.action` records that did not fit their queue.
    dropped: Arc<std::sync::atomic::AtomicU64>,
}

impl std::fmt::Debug for Responder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Responder")
            .field("playbooks", &self.playbooks().len())
            .finish_non_exhaustive()
    }
}

/// Capacity of the queue of runs waiting for the worker.
const QUEUE: usize = 1024;

impl Responder {
    /// Starts the worker. `enforcer` is the agent's shared policy enforcer (isolation goes
    /// through it); without one the responder opens its own on the first isolation.
    pub fn start(
        cfg: ResponderConfig,
        enforcer: Option<Arc<Mutex<PolicyEnforcer>>>,
    ) -> std::io::Result<Responder> {
        let (jobs, rx) = sync_channel::<Job>(QUEUE);
        let (out_tx, out) = sync_channel::<Box<Event>>(16 * QUEUE);
        let recent: Recent = Arc::default();
        let cfg = Arc::new(cfg);
        let pending = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let dropped = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let instance = random_u64();
        let worker = {
            let mut w = Worker {
                cfg: cfg.clone(),
                recent: recent.clone(),
                out: out_tx.clone(),
                enforcer,
                docker: None,
                runtime: tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()?,
                key: None,
                instance,
                seq: 1 << 40,
                pending: pending.clone(),
                dropped: dropped.clone(),
                evidence: None,
            };
            std::thread::Builder::new()
                .name("rampart-respond".into())
                .spawn(move || {
                    while let Ok(job) = rx.recv() {
                        w.run(job);
                        w.pending.fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
                    }
                })?
        };
        Ok(Responder {
            playbooks: std::sync::RwLock::new(Arc::new(cfg.playbooks.clone())),
            jobs: Some(jobs),
            out,
            recent,
            limiter: Mutex::new(Limiter::default()),
            cfg,
            worker: Some(worker),
            pending,
            instance,
            seq: std::sync::atomic::AtomicU64::new(0),
            out_tx,
            dropped,
        })
    }

    /// The playbooks in force.
    pub fn playbooks(&self) -> Arc<Vec<Playbook>> {
        self.playbooks
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Replaces the playbooks (the agent's configuration reload): detections handled from
    /// now on are matched against `playbooks`; runs already queued finish as they were.
    pub fn set_playbooks(&self, playbooks: Vec<Playbook>) {
        *self
            .playbooks
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(playbooks);
    }

    /// Keeps `ev` among its container's recent events (for forensic bundles). Cheap; call it
    /// for every event the agent outputs.
    pub fn observe(&self, ev: &Event) {
        let Some(c) = &ev.container else { return };
        self.remember(&c.id, Kept::Event(Box::new(ev.clone())));
    }

    fn remember(&self, id: &str, k: Kept) {
        let Ok(mut map) = self.recent.lock() else {
            return;
        };
        // No allocation of the id for a container already known (every event but the first).
        if !map.contains_key(id) {
            map.insert(id.to_string(), VecDeque::new());
        }
        let Some(q) = map.get_mut(id) else { return };
        q.push_back(k);
        while q.len() > self.cfg.recent_per_container {
            q.pop_front();
        }
    }

    /// Runs the playbooks that match `d.alert` (and the rule's own actions); returns how many
    /// runs were queued. Rate-limited runs are recorded (outcome `rate_limited`), not queued.
    pub fn handle(&self, d: &Detection) -> usize {
        if let Some(c) = &d.alert.container {
            self.remember(&c.id, Kept::Alert(Box::new(d.alert.clone())));
        }
        let now = Instant::now();
        let mut runs: Vec<Run> = Vec::new();
        for p in self.playbooks().iter() {
            if p.matches(&d.alert) {
                runs.push(Run {
                    playbook: Some(p.name.clone()),
                    actions: p.actions.clone(),
                    dry_run: p.dry_run,
                    allow: p.isolate_allow.clone(),
                    limit: p.rate_limit,
                    key: p.name.clone(),
                });
            }
        }
        if self.cfg.rule_actions != RuleActions::Off && !d.actions.is_empty() {
            let actions: Vec<ActionKind> = d
                .actions
                .iter()
                .filter_map(|a| ActionKind::from_rule(*a))
                .collect();
            if !actions.is_empty() {
                runs.push(Run {
                    playbook: None,
                    actions,
                    dry_run: self.cfg.rule_actions == RuleActions::DryRun,
                    allow: Vec::new(),
                    limit: Some(self.cfg.rule_actions_limit),
                    key: format!("rule:{}", d.alert.rule),
                });
            }
        }
        let mut queued = 0;
        for Run {
            playbook,
            actions,
            dry_run: dry,
            allow,
            limit,
            key,
        } in runs
        {
            let incident = format!("{key}@{}", d.alert.id);
            let admitted = self
                .limiter
                .lock()
                .map(|mut l| l.admit(&key, limit, now))
                .unwrap_or(true);
            if !admitted {
                let t = now_ns();
                for a in &actions {
                    let rec = ActionRecord {
                        incident: incident.clone(),
                        playbook: playbook.clone(),
                        action: *a,
                        outcome: "rate_limited".into(),
                        detail: format!(
                            "{key} ran its limit's number of times in the window; not run"
                        ),
                        started_ns: t,
                        finished_ns: t,
                        evidence: None,
                    };
                    let seq = self.seq.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let ev = record_event(&self.cfg.device, self.instance, seq, &rec, &d.alert);
                    if self.out_tx.try_send(Box::new(ev)).is_err() {
                        self.dropped
                            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                }
                continue;
            }
            let mut isolate_allow = self.cfg.isolate_allow.clone();
            isolate_allow.extend(allow);
            let job = Job {
                incident,
                playbook,
                actions,
                dry_run: dry || self.cfg.dry_run,
                isolate_allow,
                alert: d.alert.clone(),
                queued: now,
            };
            let Some(tx) = &self.jobs else { break };
            self.pending
                .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
            match tx.try_send(job) {
                Ok(()) => queued += 1,
                Err(TrySendError::Full(job)) | Err(TrySendError::Disconnected(job)) => {
                    self.pending
                        .fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
                    self.dropped
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    tracing::warn!("response queue full: playbook run {} dropped", job.incident);
                }
            }
        }
        queued
    }

    /// The count of playbook runs and `response.action` records dropped because their queue
    /// was full (the agent reports it with its other drops in `sensor.drops`).
    pub fn drop_counter(&self) -> Arc<std::sync::atomic::AtomicU64> {
        self.dropped.clone()
    }

    /// Moves the `response.action` events recorded so far to `out`.
    pub fn drain(&self, out: &mut Vec<Event>) -> usize {
        let before = out.len();
        while let Ok(e) = self.out.try_recv() {
            out.push(*e);
        }
        out.len() - before
    }

    /// Waits until every queued run has finished, or `timeout`; returns whether idle.
    pub fn wait_idle(&self, timeout: Duration) -> bool {
        let end = Instant::now() + timeout;
        while self.pending.load(std::sync::atomic::Ordering::Acquire) > 0 {
            if Instant::now() > end {
                return false;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        true
    }

    /// Finishes the queued runs and stops the worker.
    pub fn shutdown(mut self) {
        self.jobs.take();
        if let Some(w) = self.worker.take() {
            let _ = w.join();
        }
    }
}

impl Drop for Responder {
    fn drop(&mut self) {
        self.jobs.take();
        if let Some(w) = self.worker.take() {
            let _ = w.join();
        }
    }
}

struct Worker {
    cfg: Arc<ResponderConfig>,
    recent: Recent,
    out: SyncSender<Box<Event>>,
    enforcer: Option<Arc<Mutex<PolicyEnforcer>>>,
    docker: Option<DockerClient>,
    runtime: tokio::runtime::Runtime,
    key: Option<AgentKey>,
    instance: u64,
    seq: u64,
    pending: Arc<std::sync::atomic::AtomicUsize>,
    dropped: Arc<std::sync::atomic::AtomicU64>,
    /// The bundle of the action being run, for its record.
    evidence: Option<rampart_event::EvidenceInfo>,
}

impl Worker {
    fn run(&mut self, job: Job) {
        tracing::debug!(
            "playbook run {} queued {:?} ago",
            job.incident,
            job.queued.elapsed()
        );
        let facts = self.facts(&job.alert);
        for &action in &job.actions {
            let started_ns = now_ns();
            self.evidence = None;
            let (outcome, detail) = if job.dry_run {
                (
                    "dry_run".to_string(),
                    format!("would {}", describe(action, &job.alert)),
                )
            } else {
                match self.execute(action, &job, facts.as_ref()) {
                    Ok(d) => ("ok".to_string(), d),
                    Err(e) => ("failed".to_string(), e),
                }
            };
            let rec = ActionRecord {
                incident: job.incident.clone(),
                playbook: job.playbook.clone(),
                action,
                outcome,
                detail,
                started_ns,
                finished_ns: now_ns(),
                evidence: self.evidence.take(),
            };
            if rec.outcome == "failed" {
                tracing::warn!("{} {}: {}", rec.incident, action.as_str(), rec.detail);
            } else {
                tracing::info!(
                    "{} {}: {} {}",
                    rec.incident,
                    action.as_str(),
                    rec.outcome,
                    rec.detail
                );
            }
            self.seq += 1;
            let ev = record_event(&self.cfg.device, self.instance, self.seq, &rec, &job.alert);
            if self.out.try_send(Box::new(ev)).is_err() {
                self.dropped
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                tracing::warn!(
                    "response.action record of {} dropped: the agent is not draining them",
                    rec.incident
                );
            }
        }
    }

    fn docker(&mut self) -> Result<DockerClient, String> {
        if let Some(d) = &self.docker {
            return Ok(d.clone());
        }
        let socket = self.cfg.docker_socket.clone();
        let d = self
            .runtime
            .block_on(async {
                tokio::time::timeout(Duration::from_secs(5), DockerClient::connect(&socket)).await
            })
            .map_err(|_| format!("no answer from {} in 5 s", socket.display()))?
            .map_err(|e| e.to_string())?;
        self.docker = Some(d.clone());
        Ok(d)
    }

    /// The container of the alert: from Docker when it answers, else from the process's cgroup.
    fn facts(&mut self, alert: &Alert) -> Result<ContainerFacts, String> {
        let c = alert
            .container
            .as_ref()
            .ok_or("the alert is not about a container")?;
        match self.docker() {
            Ok(d) => self
                .runtime
                .block_on(facts::inspect(&d, &c.id))
                .map_err(|e| e.to_string()),
            Err(e) => {
                let pid = alert.process.as_ref().map_or(0, |p| p.pid);
                let cgroup = facts::cgroup_v2_dir(pid);
                if cgroup.is_none() {
                    return Err(format!("no Docker ({e}) and the process is gone"));
                }
                Ok(ContainerFacts {
                    id: c.id.clone(),
                    name: c.name.clone(),
                    image: c.image.clone(),
                    labels: c.labels.clone(),
                    pid,
                    cgroup,
                    running: true,
                    ..ContainerFacts::default()
                })
            }
        }
    }

    fn execute(
        &mut self,
        action: ActionKind,
        job: &Job,
        facts: Result<&ContainerFacts, &String>,
    ) -> Result<String, String> {
        let process = || -> Result<ProcessRef, String> {
            let p: &Process = job
                .alert
                .process
                .as_deref()
                .ok_or("the alert names no process")?;
            Ok(ProcessRef {
                pid: p.pid,
                start_time_ns: (p.start_time_ns > 0).then_some(p.start_time_ns),
            })
        };
        match action {
            ActionKind::Kill => {
                let p = process()?;
                let cg = facts.ok().and_then(|f| f.cgroup.clone());
                actions::kill_process(p, cg.as_deref()).map_err(|e| e.to_string())?;
                Ok(format!("SIGKILL to pid {}", p.pid))
            }
            ActionKind::KillTree => {
                let p = process()?;
                let cg = facts.ok().and_then(|f| f.cgroup.clone());
                let pids = actions::kill_tree(p, cg.as_deref()).map_err(|e| e.to_string())?;
                Ok(format!("SIGKILL to {} processes: {pids:?}", pids.len()))
            }
            ActionKind::Freeze => {
                let f = facts.map_err(|e| e.clone())?;
                let how = actions::freeze(f).map_err(|e| e.to_string())?;
                Ok(format!("frozen ({how:?} freezer)"))
            }
            ActionKind::Stop => {
                let f = facts.map_err(|e| e.clone())?.clone();
                let d = self.docker()?;
                let grace = self.cfg.stop_grace;
                self.runtime
                    .block_on(actions::stop(&d, &f, grace))
                    .map_err(|e| e.to_string())?;
                Ok(format!("stopped {}", f.label()))
            }
            ActionKind::Isolate => {
                let f = facts.map_err(|e| e.clone())?;
                let enforcer = match &self.enforcer {
                    Some(e) => e.clone(),
                    None => {
                        let e = Arc::new(Mutex::new(
                            PolicyEnforcer::open(self.cfg.enforce.clone())
                                .map_err(|e| e.to_string())?,
                        ));
                        self.enforcer = Some(e.clone());
                        e
                    }
                };
                let mut e = enforcer.lock().unwrap_or_else(|p| p.into_inner());
                e.isolate(f, &job.isolate_allow)
                    .map_err(|e| e.to_string())?;
                Ok(format!(
                    "isolated {} (allowed: {})",
                    f.label(),
                    if job.isolate_allow.is_empty() {
                        "loopback only".to_string()
                    } else {
                        job.isolate_allow
                            .iter()
                            .map(|p| p.to_string())
                            .collect::<Vec<_>>()
                            .join(", ")
                    }
                ))
            }
            ActionKind::Forensics => {
                let f = facts.map_err(|e| e.clone())?;
                if self.key.is_none() {
                    self.key = Some(
                        AgentKey::load_or_create(&self.cfg.key_path).map_err(|e| e.to_string())?,
                    );
                }
                let key = self.key.as_ref().ok_or("no key")?;
                let recent: Vec<serde_json::Value> = self
                    .recent
                    .lock()
                    .map(|m| {
                        m.get(&f.id)
                            .map(|q| q.iter().filter_map(Kept::to_json).collect())
                            .unwrap_or_default()
                    })
                    .unwrap_or_default();
                let name = format!(
                    "{}-{}.tar.zst",
                    if f.name.is_empty() {
                        f.id.get(..12).unwrap_or(&f.id)
                    } else {
                        &f.name
                    },
                    now_ns() / 1_000_000
                );
                let out = self.cfg.forensics_dir.join(&name);
                // The flagged process's memory (if it is still the process the alert named).
                let memory_of: Vec<ProcessRef> = process().into_iter().collect();
                let r = forensics::capture_with(
                    f,
                    &recent,
                    key,
                    &out,
                    &self.cfg.bundle_limits,
                    &memory_of,
                )
                .map_err(|e| e.to_string())?;
                let memory: u64 = r.memory.iter().map(|m| m.captured_bytes).sum();
                let captured = format!(
                    "{} ({} entries, {} processes, {memory} bytes of memory{})",
                    r.path.display(),
                    r.entries,
                    r.processes,
                    if r.truncated.is_empty() {
                        String::new()
                    } else {
                        format!(", {} limits hit", r.truncated.len())
                    }
                );
                self.upload(&r.path, &name, f, job, captured)
            }
        }
    }
}

impl Worker {
    /// Hashes the bundle and, with an evidence sink, uploads it and keeps the receipt next
    /// to it. A failed upload fails the action (the bundle stays on the host, named in the
    /// detail): evidence that did not leave the host is never reported as if it had.
    fn upload(
        &mut self,
        path: &std::path::Path,
        name: &str,
        f: &ContainerFacts,
        job: &Job,
        captured: String,
    ) -> Result<String, String> {
        let (sha256, size) = match crate::hashing::sha256_file(path) {
            Ok(h) => h,
            Err(e) => return Err(format!("{captured}; hashing it: {e}")),
        };
        let mut info = rampart_event::EvidenceInfo {
            path: path.display().to_string(),
            sha256: sha256.clone(),
            size,
            ..Default::default()
        };
        let Some(sink) = self.cfg.evidence_sink.clone() else {
            info.upload_error =
                Some("not uploaded: the agent is not enrolled with a server".into());
            self.evidence = Some(info);
            return Ok(format!(
                "{captured}; sha256 {sha256}; kept on this host only (not enrolled)"
            ));
        };
        let about = crate::evidence::EvidenceAbout {
            name: name.to_string(),
            container: if f.name.is_empty() {
                f.id.clone()
            } else {
                f.name.clone()
            },
            incident: job.incident.clone(),
            alert_id: job.alert.id.to_string(),
        };
        let result = sink.upload(path, &about);
        let out = match result {
            Ok(receipt) if receipt.sha256 == sha256 => {
                let kept = crate::evidence::write_receipt(path, &receipt);
                info.receipt_sha256 = Some(receipt.sha256.clone());
                info.received_ns = Some(receipt.received_ns);
                match kept {
                    Ok(p) => Ok(format!(
                        "{captured}; uploaded, server receipt sha256 {} (kept in {})",
                        receipt.sha256,
                        p.display()
                    )),
                    Err(e) => Ok(format!(
                        "{captured}; uploaded, server receipt sha256 {} (writing the receipt file failed: {e})",
                        receipt.sha256
                    )),
                }
            }
            Ok(receipt) => {
                let e = format!(
                    "the server's receipt names {}, the bundle is {sha256}",
                    receipt.sha256
                );
                info.upload_error = Some(e.clone());
                Err(format!("{captured}; upload: {e}"))
            }
            Err(e) => {
                info.upload_error = Some(e.to_string());
                Err(format!(
                    "{captured}; sha256 {sha256}; the upload failed, the bundle is only on this host: {e}"
                ))
            }
        };
        self.evidence = Some(info);
        out
    }
}

fn describe(action: ActionKind, alert: &Alert) -> String {
    let pid = alert.process.as_ref().map(|p| p.pid);
    let container = alert
        .container
        .as_ref()
        .map(|c| c.name.clone())
        .unwrap_or_default();
    match action {
        ActionKind::Kill => format!("kill pid {}", pid.map_or("?".into(), |p| p.to_string())),
        ActionKind::KillTree => format!(
            "kill the process tree of pid {}",
            pid.map_or("?".into(), |p| p.to_string())
        ),
        other => format!("{} container {container}", other.as_str()),
    }
}

fn record_event(
    device: &Arc<Device>,
    instance: u64,
    seq: u64,
    rec: &ActionRecord,
    alert: &Alert,
) -> Event {
    let mut e = Event::new(
        EventId::new(instance, seq),
        rec.finished_ns,
        EventKind::ResponseAction,
        device.clone(),
    );
    e.container = alert.container.clone();
    e.process = alert.process.clone();
    e.response = Some(ResponseInfo {
        action: rec.action.as_str().to_string(),
        outcome: rec.outcome.clone(),
        detail: (!rec.detail.is_empty()).then(|| rec.detail.clone()),
        playbook: rec.playbook.clone(),
        incident: Some(rec.incident.clone()),
        alert_id: Some(alert.id.clone()),
        rule: Some(alert.rule.clone()),
        target_pid: alert.process.as_ref().map(|p| p.pid),
        started_ns: rec.started_ns,
        evidence: rec.evidence.clone(),
    });
    e
}

use rampart_event::now_ns;
