//! The agent's inventory (`inventory:` in agent.yaml): what this host is and can protect, the
//! containers running on it with their image, signature, vulnerability counts and compliance
//! score, and the packages of their images, sent as `inventory.host`, `inventory.container`
//! and `inventory.image` events through the agent's outputs (so the durable queue ships them
//! to the server like every event).
//!
//! A round runs at start, every `interval`, when a container starts and after a new
//! vulnerability database is installed. It runs on its own thread: image scans (cached by
//! image id in `cache_dir`, so an unchanged image is not read again) and audits never block
//! the sensor pipeline; the pipeline takes the finished events from a bounded channel.
//!
//! `inventory.image` is sent once per image id (the ids sent are kept in
//! `<state_dir>/images-sent.json`, so a restart does not resend them) and again after
//! `image_resend`.
//!
//! With a `server` output under `ship:`, the agent fetches the server's signed vulnerability
//! database bundle every `db_poll` (`GET /api/v1/vulndb/manifest`, then the payload), checks
//! the signature against the CA pinned at enrollment (`ca.crt` in the output's `tls_dir`) and
//! the payload's size and digest, installs it atomically as `db` and runs a round. A refused
//! bundle is logged and the installed database kept.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rampart_container::{ContainerDirectory, DockerClient};
use rampart_event::{
    ContainerInventory, Device, Event, EventId, EventKind, HostInventory, ImageInventory,
    Protection, SignatureState, VulnCounts,
};
use rampart_scan::{ImageReader, InventoryCache, Limits, NoProgress, ScanOptions, Target, VulnDb};
use serde::Deserialize;

use crate::error::{AgentError, Context, Result};

/// `inventory:` in agent.yaml.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct InventorySection {
    /// Send inventories at all.
    pub enabled: bool,
    /// Time between full rounds (`6h`, `30m`).
    pub interval: String,
    /// An image's package list is sent again after this long (`7d`).
    pub image_resend: String,
    /// The local vulnerability database the counts come from (installed from the server's
    /// bundle when there is a `server` output).
    pub db: PathBuf,
    /// Scan cache: image inventories by image id.
    pub cache_dir: PathBuf,
    /// Where the agent remembers which images it sent and which bundle it installed.
    pub state_dir: PathBuf,
    /// Fetch the server's signed vulnerability database bundle (needs a `server` output).
    pub fetch_db: bool,
    /// Time between checks for a new bundle (`1h`).
    pub db_poll: String,
    /// Run the host audit (protections, score) in every round.
    pub host_audit: bool,
    /// Run the container audit (compliance score) in every round.
    pub container_audit: bool,
    /// Trust policy (docs/trust.md) to check running images' signatures with; without it the
    /// signature state is `unknown`.
    pub trust_policy: Option<PathBuf>,
}

impl Default for InventorySection {
    fn default() -> Self {
        InventorySection {
            enabled: true,
            interval: "6h".into(),
            image_resend: "7d".into(),
            db: PathBuf::from(rampart_scan::DEFAULT_DB_PATH),
            cache_dir: PathBuf::from(rampart_scan::DEFAULT_CACHE_DIR),
            state_dir: PathBuf::from("/var/lib/rampart/inventory"),
            fetch_db: true,
            db_poll: "1h".into(),
            host_audit: true,
            container_audit: true,
            trust_policy: None,
        }
    }
}

fn duration(key: &str, s: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(s).map_err(|e| format!("inventory.{key}: {s:?}: {e}"))?;
    if d.is_zero() {
        return Err(format!("inventory.{key}: must be more than 0"));
    }
    Ok(d)
}

impl InventorySection {
    /// Checks the durations (called by the config's validation).
    pub fn validate(&self) -> Result<(), AgentError> {
        for (key, value) in [
            ("interval", &self.interval),
            ("image_resend", &self.image_resend),
            ("db_poll", &self.db_poll),
        ] {
            duration(key, value).map_err(AgentError::Config)?;
        }
        Ok(())
    }
}

/// How many finished inventory events may wait for the pipeline.
const EVENT_CAPACITY: usize = 4096;

/// The running inventory thread.
pub struct Inventory {
    trigger: SyncSender<()>,
    /// Boxed events: a bounded channel allocates every slot up front (an `Event` is ~2 KiB;
    /// 4,096 unboxed slots held 7.8 MiB).
    events: Receiver<Box<Event>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
    /// Inventory events that did not fit [`EVENT_CAPACITY`] (reported in `sensor.drops`).
    dropped: Arc<std::sync::atomic::AtomicU64>,
}

impl Inventory {
    /// Starts the inventory thread (`None` when `inventory.enabled` is false).
    #[allow(clippy::too_many_arguments)] // reason: the agent's pieces the rounds read, each once
    pub fn start(
        cfg: &InventorySection,
        device: Arc<Device>,
        runtime: tokio::runtime::Handle,
        docker: Option<DockerClient>,
        dir: Arc<ContainerDirectory>,
        sensor: String,
        login_sources: Vec<String>,
        bundle: Option<BundleSource>,
    ) -> Result<Option<Inventory>> {
        if !cfg.enabled {
            return Ok(None);
        }
        let interval = duration("interval", &cfg.interval).map_err(AgentError::Config)?;
        let resend = duration("image_resend", &cfg.image_resend).map_err(AgentError::Config)?;
        let poll = duration("db_poll", &cfg.db_poll).map_err(AgentError::Config)?;
        let trust = cfg
            .trust_policy
            .as_deref()
            .map(rampart_trust::TrustPolicy::load)
            .transpose()
            .map_err(|e| AgentError::Config(format!("inventory.trust_policy: {e}")))?;
        std::fs::create_dir_all(&cfg.state_dir)
            .with_context(|| format!("inventory: creating {}", cfg.state_dir.display()))?;
        let (trigger, triggers) = sync_channel(1);
        let (tx, events) = sync_channel(EVENT_CAPACITY);
        let stop = Arc::new(AtomicBool::new(false));
        let dropped: Arc<std::sync::atomic::AtomicU64> = Arc::default();
        let mut worker = Worker {
            cfg: cfg.clone(),
            interval,
            resend,
            poll,
            device,
            runtime,
            docker,
            dir,
            sensor,
            login_sources,
            bundle: if cfg.fetch_db { bundle } else { None },
            trust: trust.map(Arc::new),
            tx,
            instance: crate::random_u64(),
            seq: 0,
            sent: load_sent(&cfg.state_dir),
            host_cache: None,
            stop: stop.clone(),
            dropped: dropped.clone(),
        };
        let thread = std::thread::Builder::new()
            .name("rampart-inventory".into())
            .spawn(move || worker.run(&triggers))
            .context("starting the inventory thread")?;
        Ok(Some(Inventory {
            trigger,
            events,
            stop,
            thread: Some(thread),
            dropped,
        }))
    }

    /// Called with every event of the pipeline: a started container triggers a round.
    pub fn observe(&self, ev: &Event) {
        if ev.kind == EventKind::ContainerStart {
            // A round already pending covers it.
            let _ = self.trigger.try_send(());
        }
    }

    /// The count of inventory events dropped because the pipeline did not take them.
    pub fn drop_counter(&self) -> Arc<std::sync::atomic::AtomicU64> {
        self.dropped.clone()
    }

    /// Moves the finished inventory events into `out`.
    pub fn drain(&self, out: &mut Vec<Event>) {
        while let Ok(ev) = self.events.try_recv() {
            out.push(*ev);
        }
    }

    /// Stops the thread (a round in progress finishes its current step first).
    pub fn shutdown(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.trigger.try_send(());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Image ids sent, with when (Unix seconds).
type Sent = BTreeMap<String, u64>;

fn sent_path(state_dir: &Path) -> PathBuf {
    state_dir.join("images-sent.json")
}

fn load_sent(state_dir: &Path) -> Sent {
    std::fs::read(sent_path(state_dir))
        .ok()
        .and_then(|d| serde_json::from_slice(&d).ok())
        .unwrap_or_default()
}

use crate::bundle::{installed_manifest, write_atomic, BundleSource};
use rampart_event::now_ns;

struct Worker {
    cfg: InventorySection,
    interval: Duration,
    resend: Duration,
    poll: Duration,
    device: Arc<Device>,
    runtime: tokio::runtime::Handle,
    docker: Option<DockerClient>,
    dir: Arc<ContainerDirectory>,
    sensor: String,
    /// Where login attempts are read (journal, auth log files, docker logs).
    login_sources: Vec<String>,
    bundle: Option<BundleSource>,
    trust: Option<Arc<rampart_trust::TrustPolicy>>,
    tx: SyncSender<Box<Event>>,
    instance: u64,
    seq: u64,
    sent: Sent,
    /// The last host audit (protections, score, kernel, OS) and when it ran.
    host_cache: Option<(Instant, HostInventory)>,
    stop: Arc<AtomicBool>,
    dropped: Arc<std::sync::atomic::AtomicU64>,
}

/// One image's scan in a round.
struct Scanned {
    image: String,
    os: String,
    packages: Vec<rampart_event::Package>,
    counts: VulnCounts,
    repo_digest: Option<String>,
}

impl Worker {
    fn run(&mut self, triggers: &Receiver<()>) {
        let mut next_round = Instant::now();
        let mut next_poll = Instant::now();
        loop {
            if self.stop.load(Ordering::Relaxed) {
                return;
            }
            let now = Instant::now();
            let mut round = now >= next_round;
            if self.bundle.is_some() && now >= next_poll {
                next_poll = now + self.poll;
                if self.fetch_bundle() {
                    round = true;
                }
            }
            if round {
                self.round();
                next_round = Instant::now() + self.interval;
                continue;
            }
            let mut wake = next_round;
            if self.bundle.is_some() {
                wake = wake.min(next_poll);
            }
            let wait = wake
                .saturating_duration_since(Instant::now())
                .min(Duration::from_secs(1));
            match triggers.recv_timeout(wait) {
                Ok(()) => {
                    if self.stop.load(Ordering::Relaxed) {
                        return;
                    }
                    // Let the container settle (the directory learns it from the same event).
                    std::thread::sleep(Duration::from_millis(500));
                    next_round = Instant::now();
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return,
            }
        }
    }

    fn event(&mut self, kind: EventKind) -> Event {
        self.seq += 1;
        Event::new(
            EventId::new(self.instance, self.seq),
            now_ns(),
            kind,
            self.device.clone(),
        )
    }

    fn send(&self, ev: Event) {
        match self.tx.try_send(Box::new(ev)) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                self.dropped.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(
                    "inventory: the pipeline is not taking events; one dropped (counted in sensor.drops)"
                )
            }
            Err(TrySendError::Disconnected(_)) => {}
        }
    }

    /// The running containers' addresses on their networks, by container id (empty without
    /// Docker or when the listing fails: the inventory goes on without them).
    fn container_addresses(&self) -> HashMap<String, Vec<std::net::IpAddr>> {
        let Some(docker) = &self.docker else {
            return HashMap::new();
        };
        let list = match self.runtime.block_on(docker.list_containers(false)) {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!("inventory: container addresses: {e}");
                return HashMap::new();
            }
        };
        list.into_iter()
            .filter_map(|c| {
                let mut ips: Vec<std::net::IpAddr> = c
                    .network_settings?
                    .networks?
                    .into_values()
                    .flat_map(|ep| [ep.ip_address, ep.global_ipv6_address])
                    .flatten()
                    .filter_map(|a| a.parse().ok())
                    .collect();
                ips.sort();
                ips.dedup();
                Some((c.id?, ips))
            })
            .collect()
    }

    /// One inventory round: containers, new images, then the host.
    fn round(&mut self) {
        let started = Instant::now();
        let db = match VulnDb::open(&self.cfg.db) {
            Ok(db) => Some(db),
            Err(e) => {
                tracing::debug!("inventory: no vulnerability counts: {e}");
                None
            }
        };
        let db_version = installed_manifest(&self.cfg.state_dir)
            .map(|m| m.version)
            .or_else(|| db.as_ref().and_then(|d| d.revision().ok()))
            .unwrap_or_default();
        let compliance = self.container_audit();
        let addresses = self.container_addresses();
        let reader = ImageReader::new(Limits::default());
        let opts = ScanOptions {
            cache: Some(InventoryCache::new(&self.cfg.cache_dir)),
            refresh: false,
        };
        let mut scans: HashMap<String, Option<Scanned>> = HashMap::new();
        let mut running: Vec<_> = self.dir.list().into_iter().filter(|r| r.pid != 0).collect();
        running.sort_by(|a, b| a.container.id.cmp(&b.container.id));
        for rec in &running {
            if self.stop.load(Ordering::Relaxed) {
                return;
            }
            let c = &rec.container;
            let key = if c.image_id.is_empty() {
                c.image.clone()
            } else {
                c.image_id.clone()
            };
            if key.is_empty() {
                continue;
            }
            if !scans.contains_key(&key) {
                let target = Target::Daemon(key.clone());
                let s = match rampart_scan::scan(&reader, &target, db.as_ref(), &opts, &NoProgress)
                {
                    Ok(r) => {
                        let mut counts = VulnCounts::default();
                        for f in &r.matches.findings {
                            counts.add(f.severity);
                        }
                        Some(Scanned {
                            image: c.image.clone(),
                            os: r
                                .inventory
                                .os
                                .as_ref()
                                .map(|o| {
                                    if o.pretty_name.is_empty() {
                                        format!("{} {}", o.id, o.version_id)
                                    } else {
                                        o.pretty_name.clone()
                                    }
                                })
                                .unwrap_or_default(),
                            packages: r.inventory.packages,
                            counts,
                            repo_digest: r.inventory.image.repo_digests.first().cloned(),
                        })
                    }
                    Err(e) => {
                        tracing::warn!("inventory: scanning {} ({key}): {e}", c.image);
                        None
                    }
                };
                scans.insert(key.clone(), s);
            }
            let scanned = scans.get(&key).and_then(Option::as_ref);
            let repo_digest = scanned
                .and_then(|s| s.repo_digest.clone())
                .or_else(|| c.image_digest.clone());
            let (signature, signer) = self.signature(&c.image, repo_digest.as_deref());
            let (score, failed) = compliance.get(&c.id).copied().unzip();
            let mut ev = self.event(EventKind::InventoryContainer);
            ev.container = Some(c.clone());
            ev.container_inventory = Some(Box::new(ContainerInventory {
                image: c.image.clone(),
                image_id: c.image_id.clone(),
                repo_digest,
                signature,
                signer,
                vulnerabilities: scanned.map(|s| s.counts).unwrap_or_default(),
                db_version: if scanned.is_some() && db.is_some() {
                    db_version.clone()
                } else {
                    String::new()
                },
                compliance_score: score,
                compliance_failed: failed.unwrap_or(0),
                addresses: addresses.get(&c.id).cloned().unwrap_or_default(),
            }));
            self.send(ev);
        }
        // Package lists of images not sent yet (or not for `image_resend`).
        let now_s = now_ns() / 1_000_000_000;
        let mut changed = false;
        for (id, s) in &scans {
            let Some(s) = s else { continue };
            if !id.starts_with("sha256:") {
                continue;
            }
            if self
                .sent
                .get(id)
                .is_some_and(|t| now_s.saturating_sub(*t) < self.resend.as_secs())
            {
                continue;
            }
            let mut ev = self.event(EventKind::InventoryImage);
            ev.image_inventory = Some(Box::new(ImageInventory {
                image: s.image.clone(),
                image_id: id.clone(),
                os: s.os.clone(),
                packages: s.packages.clone(),
            }));
            self.send(ev);
            self.sent.insert(id.clone(), now_s);
            changed = true;
        }
        if changed {
            let p = sent_path(&self.cfg.state_dir);
            let data = serde_json::to_vec(&self.sent).unwrap_or_default();
            if let Err(e) = write_atomic(&p, &data) {
                tracing::warn!("inventory: writing {}: {e}", p.display());
            }
        }
        let mut host = self.host();
        host.containers_running = running.len() as u32;
        host.containers = running.iter().map(|r| r.container.id.clone()).collect();
        let mut ev = self.event(EventKind::InventoryHost);
        ev.host_inventory = Some(Box::new(host));
        self.send(ev);
        tracing::info!(
            "inventory: {} containers, {} images in {:.1}s (vulnerability database {})",
            running.len(),
            scans.len(),
            started.elapsed().as_secs_f64(),
            if db_version.is_empty() {
                "none"
            } else {
                &db_version
            }
        );
    }

    /// Compliance score and failed checks per container id.
    fn container_audit(&self) -> HashMap<String, (u8, u32)> {
        let (Some(docker), true) = (&self.docker, self.cfg.container_audit) else {
            return HashMap::new();
        };
        let opts = rampart_audit::ContainerAuditOptions::default();
        match self
            .runtime
            .block_on(rampart_audit::audit_containers(docker, &[], &opts))
        {
            Ok(report) => report
                .subjects
                .iter()
                .map(|s| {
                    let failed = s
                        .findings
                        .iter()
                        .filter(|f| f.status == rampart_event::ComplianceStatus::Fail)
                        .count() as u32;
                    (s.resource.uid.clone(), (s.score(), failed))
                })
                .collect(),
            Err(e) => {
                tracing::warn!("inventory: container audit: {e}");
                HashMap::new()
            }
        }
    }

    /// The host part: the audit runs at most once per `interval`.
    fn host(&mut self) -> HostInventory {
        if let Some((t, h)) = &self.host_cache {
            if t.elapsed() < self.interval {
                return h.clone();
            }
        }
        let mut h = HostInventory {
            agent_version: rampart_event::VERSION.to_string(),
            kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
                .map(|s| s.trim().to_string())
                .unwrap_or_default(),
            sensor: self.sensor.clone(),
            ..HostInventory::default()
        };
        if self.cfg.host_audit {
            let opts = rampart_audit::host::HostOptions::default();
            match self
                .runtime
                .block_on(rampart_audit::audit_host(self.docker.as_ref(), &opts))
            {
                Ok(report) => {
                    h.audit_score = report.subjects.first().map(|s| s.score());
                    if let Some(hr) = &report.host {
                        h.kernel = hr.facts.kernel.clone();
                        h.os = hr.facts.os.clone().unwrap_or_default();
                        h.protections = hr
                            .matrix
                            .iter()
                            .map(|p| Protection {
                                name: p.name.to_string(),
                                available: p.available,
                                detail: p.detail.clone(),
                            })
                            .collect();
                    }
                }
                Err(e) => tracing::warn!("inventory: host audit: {e}"),
            }
        }
        h.protections.push(login_protection(&self.login_sources));
        h.protections.push(coverage_protection(&self.sensor));
        self.host_cache = Some((Instant::now(), h.clone()));
        h
    }

    /// The image's signature state under the trust policy, and who signed it.
    fn signature(
        &self,
        image: &str,
        repo_digest: Option<&str>,
    ) -> (SignatureState, Option<String>) {
        let Some(policy) = &self.trust else {
            return (SignatureState::Unknown, None);
        };
        let Ok(r) = rampart_trust::ImageRef::parse(image) else {
            return (SignatureState::Unknown, None);
        };
        if policy.rule_for(&r).is_none() {
            return (SignatureState::Unknown, None);
        }
        let Some(digest) = repo_digest.map(|d| d.rsplit('@').next().unwrap_or(d).to_string())
        else {
            // Built or loaded locally, never pulled: nothing a registry signed.
            return (SignatureState::Unsigned, None);
        };
        let reg = rampart_trust::Registry::new(&r.registry);
        match policy.evaluate(&reg, &r, Some(&digest)) {
            Ok(v) => match v.verified {
                Some(ver) => (
                    SignatureState::Verified,
                    ver.signatures.first().map(|s| s.key_id.clone()),
                ),
                None if v
                    .message
                    .as_deref()
                    .is_some_and(|m| m.contains("has no signature")) =>
                {
                    (SignatureState::Unsigned, None)
                }
                None => (SignatureState::Invalid, None),
            },
            Err(e) => {
                tracing::debug!("inventory: verifying {image}: {e}");
                (SignatureState::Unknown, None)
            }
        }
    }

    /// Checks the server for a newer bundle and installs it; true when one was installed.
    fn fetch_bundle(&mut self) -> bool {
        let Some(src) = self.bundle.clone() else {
            return false;
        };
        let installed_manifest = installed_manifest(&self.cfg.state_dir);
        let installed = installed_manifest.as_ref().map(|m| m.version.clone());
        let checked = match self
            .runtime
            .block_on(crate::bundle::fetch(&src, installed_manifest.as_ref()))
        {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(
                    "inventory: asking {} for its vulnerability database: {e:#}",
                    src.url
                );
                return false;
            }
        };
        let mut round = false;
        let token_file = self.cfg.state_dir.join("resend-token");
        if !checked.resend.is_empty()
            && std::fs::read_to_string(&token_file).ok().as_deref() != Some(checked.resend.as_str())
        {
            tracing::info!("inventory: the server asks for the image inventories again");
            self.sent.clear();
            if let Err(e) = write_atomic(&token_file, checked.resend.as_bytes()) {
                tracing::warn!("inventory: writing {}: {e}", token_file.display());
            }
            round = true;
        }
        round
            | match checked.bundle {
                Ok(None) => false,
                Ok(Some((signed, manifest, db))) => {
                    match crate::bundle::install(&self.cfg.db, &self.cfg.state_dir, &signed, &db) {
                        Ok(()) => {
                            tracing::info!(
                            "inventory: vulnerability database {} installed ({} bytes); rescanning",
                            manifest.version,
                            db.len()
                        );
                            true
                        }
                        Err(e) => {
                            tracing::error!(
                            "inventory: installing vulnerability database {}: {e:#}; keeping {}",
                            manifest.version,
                            installed.as_deref().unwrap_or("the current one")
                        );
                            false
                        }
                    }
                }
                Err(e) => {
                    tracing::error!(
                    "inventory: vulnerability database bundle from {} refused: {e:#}; keeping {}",
                    src.url,
                    installed.as_deref().unwrap_or("the current database")
                );
                    false
                }
            }
    }
}

/// The `event_coverage` protection: what the running event source sees, and what it does not.
fn coverage_protection(sensor: &str) -> Protection {
    let fallback = sensor.contains("proc-connector");
    Protection {
        name: "event_coverage".into(),
        available: !fallback,
        detail: if fallback {
            format!(
                "{sensor}: exec, fork, exit and uid changes only; not seen: {}",
                rampart_kernel::ProcConnector::MISSING
            )
        } else {
            format!("{sensor}: exec, file, network, DNS and privilege events")
        },
    }
}

/// The `login_monitoring` protection: which login sources the agent reads. Without a host
/// source (auth log file or journal), brute-force and login rules see containers only.
fn login_protection(sources: &[String]) -> Protection {
    let host = sources.iter().any(|s| s != "docker logs");
    Protection {
        name: "login_monitoring".into(),
        available: host,
        detail: if sources.is_empty() {
            "no login source: brute-force and login rules are blind".into()
        } else if host {
            format!("reading {}", sources.join(", "))
        } else {
            format!(
                "reading {} only: host logins (sshd, su, sudo) are not seen",
                sources.join(", ")
            )
        },
    }
}
