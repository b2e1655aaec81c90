//! Prevention and response inside the agent: the network/exec policy applied at start and kept
//! current with Docker's events (its kernel reports become `policy.*` events), DNS answers fed
//! to the policy's `dns:` rules, and the responder running playbooks and the rules' own
//! `actions:` on alerts (each action a `response.action` event).
//!
//! Everything here is optional: without `policy`, playbooks or rule actions in the
//! configuration nothing is opened or attached.

use std::sync::mpsc::{sync_channel, Receiver, TrySendError};
use std::sync::{Arc, Mutex};

use rampart_container::DockerClient;
use rampart_event::{Device, Event, EventKind};
use rampart_respond::{
    facts, load_playbooks, parse_allow_list, ActionKind, EnforceConfig, Policy, PolicyEnforcer,
    PolicyWatcher, Responder, ResponderConfig, RuleActions,
};
use rampart_rules::Detection;

use crate::config::AgentConfig;
use crate::error::{AgentError, Context, Result};

/// Capacity of the queue of `policy.*` events from the watcher to the agent's loop. What does
/// not fit is counted (reported with the agent's other drops in `sensor.drops`); the watcher
/// never blocks the runtime it shares with the Docker watcher.
const POLICY_EVENTS: usize = 4096;

/// Uploads forensic bundles to the agent's server over its enrolled mutual-TLS identity
/// (`rampart_ship::evidence`: parts, resumption, retries with backoff).
#[derive(Debug)]
struct ServerEvidence {
    source: crate::bundle::BundleSource,
    /// A runtime of its own: uploads run on the responder's worker thread, which waits.
    runtime: Mutex<Option<tokio::runtime::Runtime>>,
}

/// Why [`ServerEvidence`] could not upload a bundle before the transfer started.
#[derive(Debug, thiserror::Error)]
enum UploadSetupError {
    #[error("starting the upload runtime: {0}")]
    Runtime(std::io::Error),
    #[error("no upload runtime")]
    NoRuntime,
}

impl rampart_respond::EvidenceSink for ServerEvidence {
    fn upload(
        &self,
        bundle: &std::path::Path,
        about: &rampart_respond::EvidenceAbout,
    ) -> std::result::Result<rampart_respond::EvidenceReceipt, rampart_respond::UploadError> {
        let mut rt = self.runtime.lock().unwrap_or_else(|p| p.into_inner());
        if rt.is_none() {
            *rt = Some(
                tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(UploadSetupError::Runtime)?,
            );
        }
        let Some(rt) = rt.as_ref() else {
            return Err(UploadSetupError::NoRuntime.into());
        };
        let meta = rampart_ship::evidence::EvidenceMeta {
            name: about.name.clone(),
            container: about.container.clone(),
            incident: about.incident.clone(),
            alert_id: about.alert_id.clone(),
        };
        let up = rt.block_on(rampart_ship::evidence::upload_evidence(
            &self.source.url,
            &self.source.tls_dir,
            bundle,
            &meta,
            &rampart_ship::evidence::UploadOptions::default(),
        ))?;
        if up.failures > 0 {
            tracing::info!(
                "evidence {} uploaded after {} failed attempts",
                bundle.display(),
                up.failures
            );
        }
        Ok(rampart_respond::EvidenceReceipt {
            sha256: up.receipt.sha256.clone(),
            size: up.receipt.size,
            received_ns: up.receipt.received_ns,
            raw: serde_json::to_value(&up.receipt).unwrap_or_default(),
        })
    }
}

pub struct Prevention {
    enforcer: Option<Arc<Mutex<PolicyEnforcer>>>,
    responder: Option<Responder>,
    /// Boxed events: a bounded channel allocates every slot up front (an `Event` is ~2 KiB).
    policy_events: Option<Receiver<Box<Event>>>,
    stop: Option<tokio::sync::watch::Sender<bool>>,
    watcher: Option<tokio::task::JoinHandle<()>>,
    /// `policy.*` events that did not fit [`POLICY_EVENTS`].
    dropped: Arc<std::sync::atomic::AtomicU64>,
    /// What a reload needs to apply a policy.
    docker: Option<DockerClient>,
    enforce_cfg: EnforceConfig,
    /// SHA-256 of the policy this agent applied (a reload with the same policy keeps it).
    policy_sha: Option<String>,
}

impl Prevention {
    /// Opens what the configuration asks for. A policy or playbook file that does not load is
    /// an error before anything is attached.
    pub fn start(
        cfg: &AgentConfig,
        device: &Arc<Device>,
        runtime: &tokio::runtime::Runtime,
        docker: Option<&DockerClient>,
        rules_have_actions: bool,
    ) -> Result<Prevention> {
        let policy = cfg
            .policy
            .as_ref()
            .map(|p| Policy::load(p).map_err(|e| AgentError::Config(e.to_string())))
            .transpose()?;
        let mut playbooks = Vec::new();
        for f in &cfg.playbooks {
            playbooks.extend(load_playbooks(f).map_err(|e| AgentError::Config(e.to_string()))?);
        }
        let isolates = playbooks
            .iter()
            .any(|p| p.enabled && p.actions.contains(&ActionKind::Isolate));
        let enforce_cfg = EnforceConfig {
            device: device.clone(),
            ..EnforceConfig::default()
        };

        let mut me = Prevention {
            enforcer: None,
            responder: None,
            policy_events: None,
            stop: None,
            watcher: None,
            dropped: Arc::default(),
            docker: docker.cloned(),
            enforce_cfg: enforce_cfg.clone(),
            policy_sha: None,
        };
        if policy.is_some() || isolates {
            match docker {
                None if policy.is_some() => {
                    return Err(AgentError::Config(format!(
                        "policy {}: enforcing a policy needs the Docker API ({} does not answer)",
                        cfg.policy
                            .as_ref()
                            .map_or(String::new(), |p| p.display().to_string()),
                        cfg.docker_socket.display()
                    )));
                }
                None => tracing::warn!("no Docker API: playbook isolations will not be followed"),
                Some(docker) => me.follow(policy.as_ref(), enforce_cfg, runtime, docker)?,
            }
        }
        me.start_responder(cfg, playbooks, rules_have_actions)?;
        Ok(me)
    }

    /// Applies a reloaded configuration (`crate::fleetconfig`): `policy` replaces the applied
    /// policy when it differs from it (opening the enforcement programs if nothing was
    /// enforced yet), `playbooks` replace the responder's. Without `policy` the applied one
    /// stays (`rampart policy reset` removes it). Errors are logged: the rest of the
    /// configuration is applied.
    pub fn reload(
        &mut self,
        cfg: &AgentConfig,
        policy: Option<&Policy>,
        playbooks: Vec<rampart_respond::Playbook>,
        rules_have_actions: bool,
        runtime: &tokio::runtime::Runtime,
    ) {
        if let Some(p) = policy.filter(|p| self.policy_sha.as_deref() != Some(p.sha256.as_str())) {
            match (&self.enforcer, self.docker.clone()) {
                (_, None) => tracing::error!(
                    "policy {:?} not applied: enforcing a policy needs the Docker API",
                    p.name
                ),
                (Some(enforcer), Some(docker)) => {
                    let applied = runtime
                        .block_on(facts::running(&docker))
                        .map_err(|e| e.to_string())
                        .and_then(|running| {
                            enforcer
                                .lock()
                                .unwrap_or_else(std::sync::PoisonError::into_inner)
                                .apply(p, &running)
                                .map_err(|e| e.to_string())
                        });
                    match applied {
                        Ok(report) => {
                            tracing::info!(
                                "policy {:?} applied: {} containers selected, {} untouched",
                                p.name,
                                report.selected.len(),
                                report.unselected.len()
                            );
                            self.policy_sha = Some(p.sha256.clone());
                        }
                        Err(e) => tracing::error!("policy {:?} not applied: {e}", p.name),
                    }
                }
                (None, Some(docker)) => {
                    match self.follow(Some(p), self.enforce_cfg.clone(), runtime, &docker) {
                        Ok(()) => {}
                        Err(e) => tracing::error!("policy {:?} not applied: {e}", p.name),
                    }
                }
            }
        }
        match &self.responder {
            Some(r) => r.set_playbooks(playbooks),
            None => {
                if let Err(e) = self.start_responder(cfg, playbooks, rules_have_actions) {
                    tracing::error!("playbooks not applied: {e}");
                }
            }
        }
    }

    /// Opens the enforcement programs, applies `policy` to the running containers and follows
    /// Docker's events (the watcher also collects the kernel's reports).
    fn follow(
        &mut self,
        policy: Option<&Policy>,
        enforce_cfg: EnforceConfig,
        runtime: &tokio::runtime::Runtime,
        docker: &DockerClient,
    ) -> Result<()> {
        let mut enforcer = PolicyEnforcer::open(enforce_cfg).context(
            "opening the enforcement programs (rampart agent --probe says what this kernel allows)",
        )?;
        if let Some(p) = policy {
            self.policy_sha = Some(p.sha256.clone());
            let running = runtime
                .block_on(facts::running(docker))
                .context("listing the running containers for the policy")?;
            let report = enforcer
                .apply(p, &running)
                .with_context(|| format!("applying policy {:?}", p.name))?;
            tracing::info!(
                "policy {:?} applied: {} containers selected, {} untouched",
                p.name,
                report.selected.len(),
                report.unselected.len()
            );
            for e in &report.errors {
                tracing::warn!("policy: {e}");
            }
        }
        let enforcer = Arc::new(Mutex::new(enforcer));
        let (tx, rx) = sync_channel::<Box<Event>>(POLICY_EVENTS);
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let watcher = PolicyWatcher::new(enforcer.clone(), docker.clone());
        let dropped = self.dropped.clone();
        let handle = runtime.spawn(async move {
            // Never a blocking send here: this task shares a small runtime with the Docker
            // watcher. A full channel is a counted drop, reported in `sensor.drops`.
            let send = move |ev: Event| match tx.try_send(Box::new(ev)) {
                Ok(()) => true,
                Err(TrySendError::Full(_)) => {
                    dropped.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    tracing::warn!("policy: event channel full, one policy event dropped");
                    true
                }
                Err(TrySendError::Disconnected(_)) => false,
            };
            if let Err(e) = watcher.run(send, stop_rx).await {
                tracing::error!("policy watcher stopped: {e}");
            }
        });
        self.enforcer = Some(enforcer);
        self.policy_events = Some(rx);
        self.stop = Some(stop_tx);
        self.watcher = Some(handle);
        Ok(())
    }

    /// Starts the responder when there is something for it to run (playbooks, or rule
    /// actions with rules that have some).
    fn start_responder(
        &mut self,
        cfg: &AgentConfig,
        playbooks: Vec<rampart_respond::Playbook>,
        rules_have_actions: bool,
    ) -> Result<()> {
        let rule_actions = match cfg.rule_actions.as_str() {
            "enforce" => RuleActions::Enforce,
            "dry-run" => RuleActions::DryRun,
            _ => RuleActions::Off,
        };
        if playbooks.is_empty() && (rule_actions == RuleActions::Off || !rules_have_actions) {
            return Ok(());
        }
        let isolate_allow = parse_allow_list(&cfg.isolate_allow)
            .map_err(|e| AgentError::Config(format!("isolate_allow: {e}")))?;
        tracing::info!(
            "responder: {} playbooks, rule actions {}",
            playbooks.len(),
            cfg.rule_actions
        );
        let evidence_sink = crate::bundle::server_source(cfg).map(|s| {
            tracing::info!("responder: forensic bundles are uploaded to {}", s.url);
            Arc::new(ServerEvidence {
                source: s,
                runtime: Mutex::new(None),
            }) as Arc<dyn rampart_respond::EvidenceSink>
        });
        let enforce = self.enforce_cfg.clone();
        let rc = ResponderConfig {
            playbooks,
            rule_actions,
            isolate_allow,
            forensics_dir: cfg.forensics_dir.clone(),
            bundle_limits: rampart_respond::forensics::BundleLimits {
                max_memory_bytes: cfg.forensics_memory_mib.saturating_mul(1 << 20),
                ..Default::default()
            },
            evidence_sink,
            docker_socket: cfg.docker_socket.clone(),
            device: enforce.device.clone(),
            enforce,
            ..ResponderConfig::default()
        };
        self.responder =
            Some(Responder::start(rc, self.enforcer.clone()).context("starting the responder")?);
        Ok(())
    }

    /// Sees every event the agent outputs: recent events per container for forensic bundles,
    /// DNS answers for the policy's `dns:` rules.
    pub fn observe(&self, ev: &Event) {
        if let Some(r) = &self.responder {
            r.observe(ev);
        }
        // The enforcer itself ignores answers no `dns:` rule asks for (and sees policies
        // applied later with `rampart policy apply`); DNS answers are few.
        if ev.kind == EventKind::DnsAnswer {
            if let Some(e) = &self.enforcer {
                let mut e = e.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                if let Err(err) = e.observe(ev) {
                    tracing::warn!("policy: DNS answer not applied: {err}");
                }
            }
        }
    }

    /// Counters of security events this part of the agent dropped because a queue was full.
    pub fn drop_counters(&self) -> Vec<Arc<std::sync::atomic::AtomicU64>> {
        let mut v = vec![self.dropped.clone()];
        v.extend(self.responder.as_ref().map(|r| r.drop_counter()));
        v
    }

    /// Runs the playbooks and rule actions for a detection (queued; never blocks).
    pub fn handle(&self, d: &Detection) {
        if let Some(r) = &self.responder {
            r.handle(d);
        }
    }

    /// Moves the `policy.*` and `response.action` events produced since the last call to `out`.
    pub fn drain(&self, out: &mut Vec<Event>) {
        if let Some(rx) = &self.policy_events {
            out.extend(rx.try_iter().map(|e| *e));
        }
        if let Some(r) = &self.responder {
            r.drain(out);
        }
    }

    /// Waits (bounded) for running playbook actions, stops the watcher. The policy stays
    /// pinned in the kernel (docs/policy.md): stopping the agent does not open the network.
    pub fn shutdown(mut self, runtime: &tokio::runtime::Runtime, out: &mut Vec<Event>) {
        if let Some(r) = &self.responder {
            r.wait_idle(std::time::Duration::from_secs(5));
        }
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(true);
        }
        if let Some(h) = self.watcher.take() {
            let _ = runtime.block_on(async {
                tokio::time::timeout(std::time::Duration::from_secs(2), h).await
            });
        }
        self.drain(out);
        if let Some(r) = self.responder.take() {
            r.shutdown();
        }
    }
}
