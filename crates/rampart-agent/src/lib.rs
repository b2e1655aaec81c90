//! The Rampart agent: the sensor, enrichment, rules, response, inventory and outputs wired
//! into one pipeline. The `rampart agent` command parses its arguments and calls
//! [`Agent::start`] and [`Agent::run`]; everything the agent does lives here.
//!
//! ```text
//! kernel (BPF) --ring buffer--> reader thread --> bounded channel --+
//! Docker events, login lines (tokio tasks) -----> bounded channel --+--> enrich --> rules --> outputs
//! ```
//! The channels are bounded. The sensor's reader waits when its channel is full, so records
//! wait in the kernel's ring buffer, where what does not fit is counted per CPU; the other
//! sources never wait and count what does not fit. Every drop is reported in `sensor.drops`.

mod args;
mod bundle;
mod config;
pub mod config_check;
mod console;
pub mod doctor;
mod error;
pub mod fleetconfig;
mod inventory;
mod memory;
mod metrics;
pub mod notify;
mod output;
mod prevent;
mod ship;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{sync_channel, RecvTimeoutError, SyncSender};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rampart_container::{
    AuthLogs, ContainerDirectory, DockerClient, DockerWatcher, Enricher, EnricherConfig,
    InspectOnMiss, ProcFs, StatsSampler,
};
use rampart_event::{Device, Event, EventId, EventKind, SensorEvent, SensorStats};
use rampart_kernel::{
    KernelError, ProcConnector, SensitiveNames, Sensor, SensorConfig, SensorPrograms,
};

pub use args::AgentArgs;
pub use config::AgentConfig;
pub use console::Console;
use error::Context;
pub use error::{AgentError, Result};
pub use inventory::InventorySection;
pub use memory::tune as tune_allocator;
use output::Outputs;
pub use ship::ShipSection;

/// Capacity of the channel between the sensors and the pipeline. Events travel boxed: an
/// `Event` is over 1 KiB, and a channel of unboxed events would hold 80 MiB when full.
/// The sensor's reader waits when the channel is full (records wait in the kernel's ring
/// buffer in their compact form), so this is small: 4,096 decoded events are a few MiB at most
/// (issue 20; it was 65,536, over 100 MiB when full under a storm).
const CHANNEL_CAPACITY: usize = 4096;

/// Capacity of the channel of the sources beside the sensor (Docker events, login lines). They
/// have their own so that a storm holding the sensor's channel full cannot crowd them out:
/// they drop (counted) when theirs is full, they never wait.
const SIDE_CAPACITY: usize = 4096;

/// What `rampart up` adds to the agent: the embedded server, fed in-process through the
/// durable queue like any other output (records stamped with the agent config's region).
pub struct Embedded<'a> {
    pub server: &'a rampart_server::ServerHandle,
    /// The queue's directory when agent.yaml has no `ship:` section.
    pub queue_dir: PathBuf,
    /// The server's vulnerability database (`rampart server db import`): the agent's inventory
    /// counts against it unless agent.yaml names another `inventory.db`.
    pub vulndb: PathBuf,
    /// `stdout` outputs show the terminal view (`console`: alerts and a periodic summary)
    /// instead of every event as JSON (`rampart up` without `--json`).
    pub console: bool,
}

/// Loads the default rules and the configured files; reports rules that cannot fire. Also
/// says whether some rule carries `actions:`.
pub fn load_rules(cfg: &AgentConfig) -> Result<(rampart_rules::Engine, bool)> {
    compile_rules(cfg, &[], &[])
}

/// [`load_rules`] with a fleet configuration's files: `lists` after the default rules,
/// `extra` after the configured files.
pub(crate) fn compile_rules(
    cfg: &AgentConfig,
    lists: &[PathBuf],
    extra: &[PathBuf],
) -> Result<(rampart_rules::Engine, bool)> {
    let mut loader = rampart_rules::Loader::new();
    if cfg.default_rules {
        loader
            .add_default_rules()
            .map_err(|e| AgentError::Config(e.to_string()))?;
    }
    for f in lists.iter().chain(&cfg.rules).chain(extra) {
        loader
            .add_file(f)
            .map_err(|e| AgentError::Config(e.to_string()))?;
    }
    let options = rampart_rules::Options {
        rule_matching: if cfg.rule_matching == "all" {
            rampart_rules::RuleMatching::All
        } else {
            rampart_rules::RuleMatching::First
        },
        min_priority: cfg
            .min_priority
            .parse()
            .map_err(|e: rampart_event::UnknownPriority| AgentError::Config(e.to_string()))?,
        ..rampart_rules::Options::default()
    };
    let rules = loader
        .compile(options)
        .map_err(|e| AgentError::Config(e.to_string()))?;
    for c in &rules.report().cannot_fire {
        tracing::warn!("rule cannot fire: {c}");
    }
    tracing::info!("{} rules loaded", rules.rules().count());
    let actions = rules.rules().any(|r| !r.actions().is_empty());
    Ok((rampart_rules::Engine::new(Arc::new(rules)), actions))
}

/// The running pipeline: built by [`Agent::start`], driven by [`Agent::run`].
pub struct Agent {
    cfg: AgentConfig,
    device: Arc<Device>,
    rx: std::sync::mpsc::Receiver<Box<SensorEvent>>,
    /// Docker events and login lines (see [`SIDE_CAPACITY`]).
    side_rx: std::sync::mpsc::Receiver<Box<SensorEvent>>,
    source: Option<Source>,
    enricher: Enricher,
    engine: rampart_rules::Engine,
    detections: Vec<rampart_rules::Detection>,
    prevention: Option<prevent::Prevention>,
    /// `policy.*` and `response.action` events waiting for the outputs.
    prevented: Vec<Event>,
    /// The inventory thread (`inventory.*` events).
    inventory: Option<inventory::Inventory>,
    inventoried: Vec<Event>,
    sampler: StatsSampler,
    outputs: Outputs,
    record: Option<Outputs>,
    runtime: tokio::runtime::Runtime,
    stop: Arc<AtomicBool>,
    /// Drop counters of the parts beside the sensor (Docker watcher, policy events, responder).
    extra_drops: Vec<Arc<std::sync::atomic::AtomicU64>>,
    instance: u64,
    seq: u64,
    mechanism: String,
    /// Prometheus metrics (`metrics_listen`): the shared copy and the loop's own counts.
    metrics: Arc<metrics::AgentMetrics>,
    local_metrics: metrics::LocalMetrics,
    /// Configurations built off the loop (server bundles, SIGHUP), applied between events.
    updates: Option<fleetconfig::Updates>,
    /// The GeoIP database in use.
    geoip: Option<PathBuf>,
}

enum Source {
    Bpf(Box<Sensor>),
    Fallback(ProcConnector),
}

impl Agent {
    /// Opens the outputs, connects to Docker, starts the sensor (the proc connector where BPF
    /// cannot run, unless `sensor: ebpf`), the login sources, prevention, the inventory and
    /// the metrics endpoint. `record` also writes every event (not alerts) as JSON lines.
    pub fn start(
        mut cfg: AgentConfig,
        engine: rampart_rules::Engine,
        rules_have_actions: bool,
        record: Option<&Path>,
        embedded: Option<Embedded<'_>>,
    ) -> Result<Agent> {
        memory::tune();
        let device = Arc::new(Device {
            hostname: cfg.hostname.clone().unwrap_or_else(rampart_event::hostname),
            region: cfg.region.clone(),
        });
        if let Some(e) = &embedded {
            if e.console {
                for o in cfg.outputs.iter_mut().filter(|o| *o == "stdout") {
                    *o = "console".into();
                }
            }
            if cfg.inventory.db == std::path::Path::new(rampart_scan::DEFAULT_DB_PATH) {
                cfg.inventory.db = e.vulndb.clone();
            }
        }
        let direct_ship = cfg.ship.as_ref().map_or(&[][..], |s| &s.outputs[..]);
        let outputs = Outputs::open(&cfg.outputs, direct_ship)?;
        let record = record
            .map(|p| Outputs::open(&[format!("jsonl:{}", p.display())], &[]))
            .transpose()?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("rampart-io")
            .enable_all()
            .build()
            .context("starting the I/O runtime")?;
        let outputs = outputs.with_ship(ship::start(
            cfg.ship.as_ref(),
            &device,
            runtime.handle(),
            embedded,
        )?);
        let agent_metrics = metrics::AgentMetrics::new();
        if let Some(addr) = cfg.metrics_listen {
            let listener = runtime
                .block_on(tokio::net::TcpListener::bind(addr))
                .map_err(|e| AgentError::Config(format!("metrics_listen {addr}: {e}")))?;
            let m = agent_metrics.clone();
            runtime.spawn(rampart_ship::metrics::serve(
                listener,
                Arc::new(move || m.render()),
            ));
            tracing::info!("agent metrics on http://{addr}/metrics");
        }
        let (tx, rx) = sync_channel(CHANNEL_CAPACITY);
        let (side_tx, side_rx) = sync_channel(SIDE_CAPACITY);
        let dir = ContainerDirectory::new();
        let sampler =
            StatsSampler::new(dir.clone(), ProcFs::default(), device.clone(), random_u64());

        let docker = runtime.block_on(async {
            tokio::time::timeout(
                Duration::from_secs(5),
                DockerClient::connect(&cfg.docker_socket),
            )
            .await
        });
        let docker = match docker {
            Ok(Ok(client)) => {
                let n = runtime
                    .block_on(client.load_running(&dir))
                    .unwrap_or_default();
                tracing::info!("docker: {n} running containers");
                Some(client)
            }
            Ok(Err(e)) => {
                tracing::warn!("no Docker API ({e}); containers are identified by cgroup only (id, no name or image)");
                None
            }
            Err(_) => {
                tracing::warn!(
                    "no Docker API ({}: no answer in 5s); containers are identified by cgroup only",
                    cfg.docker_socket.display()
                );
                None
            }
        };
        let auth = AuthLogs::new(device.clone(), random_u64(), side_tx.clone());
        let mut login_sources = Vec::new();
        for f in cfg.auth_log_files.iter().filter(|f| f.exists()) {
            tracing::info!("following {} for login attempts", f.display());
            runtime.spawn(auth.clone().follow_file(f.clone()));
            login_sources.push(f.display().to_string());
        }
        if cfg.auth_journal {
            let opts = rampart_container::JournalOptions {
                cursor_file: cfg.journal_cursor_file.clone(),
                ..Default::default()
            };
            if rampart_container::journal_available(&opts) {
                tracing::info!("following the systemd journal for login attempts");
                runtime.spawn(rampart_container::follow_journal(auth.clone(), opts));
                login_sources.push("journal".to_string());
            } else {
                tracing::info!("no systemd journal on this host (journalctl, /run/log/journal or /var/log/journal)");
            }
        }
        if docker.is_some() && cfg.container_logs {
            login_sources.push("docker logs".to_string());
        }
        if login_sources.iter().all(|s| s == "docker logs") {
            tracing::warn!(
                "no host login source (auth log file or journal): brute-force and login rules see containers only"
            );
        }
        let watcher_drops = docker.as_ref().map(|client| {
            let mut w =
                DockerWatcher::new(client.clone(), dir.clone(), device.clone(), random_u64());
            if cfg.container_logs {
                w = w.follow_logs(auth.clone());
                for rec in dir.list() {
                    runtime.spawn(auth.clone().follow_container(client.clone(), rec));
                }
            }
            let drops = w.drops.clone();
            runtime.spawn(w.run(side_tx.clone()));
            drops
        });

        let prevention = prevent::Prevention::start(
            &cfg,
            &device,
            &runtime,
            docker.as_ref(),
            rules_have_actions,
        )?;
        let mut extra_drops = prevention.drop_counters();
        extra_drops.extend(watcher_drops);
        extra_drops.push(auth.drops.clone());
        let source = start_source(&cfg, device.clone(), tx)?;
        let mechanism = match &source {
            Source::Bpf(s) => s.mechanism(),
            Source::Fallback(_) => "proc-connector fallback".into(),
        };
        let bundle = bundle::server_source(&cfg);
        let updates = fleetconfig::Updates::start(
            &cfg,
            bundle.clone(),
            runtime.handle().clone(),
            agent_metrics.clone(),
        )?;
        {
            // SIGHUP re-reads the rule, policy, playbook and GeoIP files (systemd's
            // ExecReload); the handler is installed before the agent reports ready.
            let reload = updates.trigger();
            let _in_runtime = runtime.enter();
            let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
                .context("watching SIGHUP")?;
            runtime.spawn(async move {
                while hup.recv().await.is_some() {
                    // A reload already queued covers this one.
                    let _ = reload.try_send(fleetconfig::Trigger::Reload);
                }
            });
        }
        let inventory = inventory::Inventory::start(
            &cfg.inventory,
            device.clone(),
            runtime.handle().clone(),
            docker.clone(),
            dir.clone(),
            mechanism.clone(),
            login_sources,
            bundle,
        )?;
        extra_drops.extend(inventory.as_ref().map(inventory::Inventory::drop_counter));
        let layout = rampart_kernel::cgroup_layout();
        let mut enricher = Enricher::new(
            EnricherConfig {
                max_ancestors: cfg.max_ancestors,
                sensitive_paths: cfg.sensitive_paths.clone(),
                unified: layout.unified.clone(),
                v1_pids: layout.v1_pids.clone(),
                hash_max_bytes: cfg.exe_hash_max_mib.saturating_mul(1 << 20),
            },
            ProcFs::default(),
            dir,
            docker.map(|client| InspectOnMiss {
                client,
                runtime: runtime.handle().clone(),
            }),
        );
        if let Some(db) = &cfg.geoip_db {
            enricher
                .set_geoip(db)
                .map_err(|e| AgentError::Config(format!("geoip_db: {e}")))?;
        }
        let seeded = enricher.seed();
        tracing::info!("process table seeded with {seeded} processes from /proc");

        let stop = Arc::new(AtomicBool::new(false));
        {
            let stop = stop.clone();
            runtime.spawn(async move {
                let mut term =
                    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                    {
                        Ok(s) => s,
                        Err(e) => {
                            tracing::warn!("cannot watch SIGTERM: {e}");
                            return;
                        }
                    };
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
                stop.store(true, Ordering::Relaxed);
            });
        }
        Ok(Agent {
            mechanism,
            geoip: cfg.geoip_db.clone(),
            updates: Some(updates),
            cfg,
            device,
            rx,
            side_rx,
            source: Some(source),
            enricher,
            engine,
            detections: Vec::new(),
            prevention: Some(prevention),
            prevented: Vec::new(),
            inventory,
            inventoried: Vec::new(),
            sampler,
            record,
            outputs,
            runtime,
            stop,
            extra_drops,
            instance: random_u64(),
            seq: 0,
            metrics: agent_metrics,
            local_metrics: metrics::LocalMetrics::default(),
        })
    }

    /// Runs until SIGINT/SIGTERM or for `duration`, then stops the sources, drains what they
    /// queued, writes a last `sensor.drops` event and lets the shipper deliver (bounded).
    pub fn run(mut self, duration: Option<Duration>) -> Result<()> {
        let started = Instant::now();
        let interval = Duration::from_secs(self.cfg.stats_interval_secs);
        let mut next_stats = Instant::now() + interval;
        let mut next_sweep = Instant::now() + Duration::from_secs(60);
        let mut reported = Counters::default();
        let mut received: u64 = 0;
        // The stats file doubles as the readiness signal: it appears once everything is attached.
        write_stats_file(&self.cfg.stats_file, &reported, 0, &self.mechanism());
        tracing::info!(
            "agent running ({}); events to {}",
            self.mechanism(),
            self.outputs.names().join(", ")
        );
        let mut watchdog = notify::Watchdog::ready(&self.mechanism());
        // What starting allocated and freed (BTF parsing, probes, the seeding) goes back now.
        memory::trim();
        while !self.stop.load(Ordering::Relaxed) && duration.is_none_or(|d| started.elapsed() < d) {
            match self.rx.recv_timeout(Duration::from_millis(50)) {
                Ok(se) => {
                    received += 1;
                    self.handle(*se)?;
                    received += self.handle_side()?;
                    // Drain what is queued before flushing: one flush per batch, but a batch
                    // ends after 5 ms so that under a sustained storm alerts still leave within
                    // milliseconds.
                    let batch_end = Instant::now() + Duration::from_millis(5);
                    while let Ok(se) = self.rx.try_recv() {
                        received += 1;
                        self.handle(*se)?;
                        if received.is_multiple_of(256) && Instant::now() >= batch_end {
                            break;
                        }
                    }
                    self.outputs.flush()?;
                    if let Some(r) = &mut self.record {
                        r.flush()?;
                    }
                    self.metrics.publish(&mut self.local_metrics);
                }
                Err(RecvTimeoutError::Timeout) => {
                    if self.handle_side()? > 0 {
                        self.outputs.flush()?;
                    }
                }
                Err(RecvTimeoutError::Disconnected) => break,
            }
            self.apply_updates();
            if self.handle_prevented()? | self.handle_inventory()? {
                self.outputs.flush()?;
            }
            let now = Instant::now();
            watchdog.tick(now);
            if now >= next_stats {
                for ev in self.sampler.sample() {
                    self.handle(SensorEvent {
                        origin: rampart_event::Origin::default(),
                        event: ev,
                    })?;
                }
                self.report_stats(&mut reported, received, interval)?;
                memory::trim();
                next_stats = now + interval;
            }
            if now >= next_sweep {
                let gone = self.enricher.sweep();
                tracing::debug!("process table: {gone} stale entries dropped");
                next_sweep = now + Duration::from_secs(60);
            }
        }
        tracing::info!("stopping: detaching BPF programs");
        notify::stopping();
        // Stop the sources first, then drain what they queued.
        let final_counters = source_counters(self.source.as_ref(), &self.extra_drops);
        drop(self.source.take());
        while let Ok(se) = self.rx.try_recv() {
            received += 1;
            self.handle(*se)?;
        }
        received += self.handle_side()?;
        if let Some(i) = self.inventory.take() {
            i.shutdown();
        }
        if let Some(u) = self.updates.take() {
            u.shutdown();
        }
        if let Some(p) = self.prevention.take() {
            let mut last = Vec::new();
            p.shutdown(&self.runtime, &mut last);
            self.prevented.extend(last);
            self.handle_prevented()?;
        }
        let ev = self.stats_event(&reported, &final_counters, received, started.elapsed());
        self.outputs.write(&ev)?;
        self.outputs.flush()?;
        self.metrics.set_queue_dropped(self.outputs.queue_dropped());
        self.metrics.set_outputs(self.outputs.direct_stats());
        self.outputs.close_ship(&self.runtime)?;
        let _ = std::fs::remove_file(&self.cfg.stats_file);
        self.runtime.shutdown_timeout(Duration::from_secs(1));
        Ok(())
    }

    /// Handles what waits in the side channel (Docker events, login lines); returns how many.
    fn handle_side(&mut self) -> Result<u64> {
        let mut n = 0;
        while let Ok(se) = self.side_rx.try_recv() {
            n += 1;
            self.handle(*se)?;
        }
        Ok(n)
    }

    fn handle(&mut self, se: SensorEvent) -> Result<()> {
        let Some(ev) = self.enricher.enrich(se) else {
            return Ok(());
        };
        self.output_and_detect(&ev, true)
    }

    /// Writes `ev`, runs the rules on it, and hands detections to the responder (unless
    /// `respond` is false: alerts on the responder's own events do not start more responses).
    fn output_and_detect(&mut self, ev: &Event, respond: bool) -> Result<()> {
        self.outputs.write(ev)?;
        self.local_metrics.event(ev);
        if let Some(r) = &mut self.record {
            r.write(ev)?;
        }
        if let Some(p) = &self.prevention {
            p.observe(ev);
        }
        if let Some(i) = &self.inventory {
            i.observe(ev);
        }
        // The rule path is hot: one evaluation in RULE_TIME_SAMPLE is timed (two clock reads),
        // the time metric is scaled from the sample.
        let timed = self.local_metrics.time_next_eval();
        let started = timed.then(Instant::now);
        let found = self.engine.process(ev, &mut self.detections);
        self.local_metrics.rule_eval(started.map(|s| s.elapsed()));
        if found > 0 {
            for d in self.detections.drain(..) {
                self.local_metrics.alert(&d.alert);
                if respond {
                    if let Some(p) = &self.prevention {
                        p.handle(&d);
                    }
                }
                self.outputs.write(&d.alert)?;
            }
        }
        Ok(())
    }

    /// Outputs the `policy.*` and `response.action` events produced since the last call;
    /// returns whether there were any.
    fn handle_prevented(&mut self) -> Result<bool> {
        if let Some(p) = &self.prevention {
            p.drain(&mut self.prevented);
        }
        if self.prevented.is_empty() {
            return Ok(false);
        }
        for ev in std::mem::take(&mut self.prevented) {
            let respond = ev.kind != EventKind::ResponseAction;
            self.output_and_detect(&ev, respond)?;
        }
        Ok(true)
    }

    /// Outputs the inventory events finished since the last call; returns whether there
    /// were any.
    fn handle_inventory(&mut self) -> Result<bool> {
        if let Some(i) = &self.inventory {
            i.drain(&mut self.inventoried);
        }
        if self.inventoried.is_empty() {
            return Ok(false);
        }
        for ev in std::mem::take(&mut self.inventoried) {
            self.output_and_detect(&ev, true)?;
        }
        Ok(true)
    }

    /// Applies the configurations the configuration thread built (see [`fleetconfig`]): the
    /// rule engine is replaced between two events, so every event is evaluated by one
    /// complete rule set, the old or the new.
    fn apply_updates(&mut self) {
        while let Some(l) = self
            .updates
            .as_ref()
            .and_then(fleetconfig::Updates::try_next)
        {
            self.engine = l.engine;
            if l.geoip != self.geoip {
                if let Some(g) = &l.geoip {
                    match self.enricher.set_geoip(g) {
                        Ok(()) => self.geoip = l.geoip.clone(),
                        Err(e) => tracing::error!("geoip: {e}; the previous database is kept"),
                    }
                }
            }
            if let Some(p) = &mut self.prevention {
                p.reload(
                    &self.cfg,
                    l.policy.as_ref(),
                    l.playbooks,
                    l.rules_have_actions,
                    &self.runtime,
                );
            }
            let now_secs = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            self.metrics.config(|c| {
                if l.version > 0 && l.version != c.version {
                    c.version = l.version;
                    c.applied_secs = now_secs;
                }
                c.applied += 1;
            });
            tracing::info!(
                "configuration applied without a restart ({}): {} rules, policy {}, fleet configuration version {}",
                l.origin,
                l.rules,
                l.policy.as_ref().map_or("none".to_string(), |p| format!("{:?}", p.name)),
                l.version
            );
        }
    }

    fn mechanism(&self) -> String {
        self.mechanism.clone()
    }

    fn report_stats(
        &mut self,
        reported: &mut Counters,
        received: u64,
        interval: Duration,
    ) -> Result<()> {
        let now = source_counters(self.source.as_ref(), &self.extra_drops);
        self.metrics.publish(&mut self.local_metrics);
        self.metrics.set_source(
            now.events,
            now.drops_per_cpu.iter().sum(),
            now.userspace + now.malformed,
        );
        self.metrics.set_queue_dropped(self.outputs.queue_dropped());
        let ev = self.stats_event(reported, &now, received, interval);
        if let Some(s) = &ev.stats {
            if s.drops_total > 0 {
                tracing::warn!(
                    "{} events lost in the last {}s (kernel ring buffer: {:?} per CPU, user space: {})",
                    s.drops_total,
                    interval.as_secs(),
                    s.drops_per_cpu,
                    s.drops_userspace
                );
            }
        }
        self.outputs.write(&ev)?;
        self.outputs.flush()?;
        // After the flush, so that the report's own record is counted too.
        self.metrics.set_outputs(self.outputs.direct_stats());
        write_stats_file(&self.cfg.stats_file, &now, received, &self.mechanism());
        *reported = Counters { received, ..now };
        Ok(())
    }

    /// A `sensor.drops` event with the counts since `before`.
    fn stats_event(
        &mut self,
        before: &Counters,
        now: &Counters,
        received: u64,
        interval: Duration,
    ) -> Event {
        self.seq += 1;
        let time_ns = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        let mut e = Event::new(
            EventId::new(self.instance, self.seq),
            time_ns,
            EventKind::SensorDrops,
            self.device.clone(),
        );
        let per_cpu: Vec<u64> = now
            .drops_per_cpu
            .iter()
            .enumerate()
            .map(|(i, d)| d - before.drops_per_cpu.get(i).copied().unwrap_or(0))
            .collect();
        let userspace = (now.userspace - before.userspace) + (now.malformed - before.malformed);
        e.stats = Some(SensorStats {
            events: now
                .events
                .saturating_sub(before.events)
                .max(received.saturating_sub(before.received)),
            drops_total: per_cpu.iter().sum::<u64>() + userspace,
            drops_per_cpu: per_cpu,
            drops_userspace: userspace,
            interval_ms: interval.as_millis() as u64,
            mechanism: self.mechanism(),
        });
        e
    }
}

#[cfg(test)]
impl Agent {
    /// The real loop with no source attached: events come from the returned sender as from
    /// the sensor, the outputs are `cfg.outputs`, nothing touches BPF or Docker.
    fn detached(
        cfg: AgentConfig,
        engine: rampart_rules::Engine,
        record: Option<&Path>,
    ) -> Result<(Agent, SyncSender<Box<SensorEvent>>)> {
        let device = Arc::new(Device {
            hostname: "test-host".into(),
            region: None,
        });
        let (tx, rx) = sync_channel(CHANNEL_CAPACITY);
        let dir = ContainerDirectory::new();
        let sampler = StatsSampler::new(dir.clone(), ProcFs::default(), device.clone(), 1);
        let enricher = Enricher::new(
            EnricherConfig {
                max_ancestors: cfg.max_ancestors,
                sensitive_paths: cfg.sensitive_paths.clone(),
                unified: None,
                v1_pids: None,
                hash_max_bytes: 0,
            },
            ProcFs::default(),
            dir,
            None,
        );
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .context("starting the I/O runtime")?;
        let agent = Agent {
            mechanism: "test".into(),
            outputs: Outputs::open(
                &cfg.outputs,
                cfg.ship.as_ref().map_or(&[][..], |s| &s.outputs[..]),
            )?,
            record: record
                .map(|p| Outputs::open(&[format!("jsonl:{}", p.display())], &[]))
                .transpose()?,
            cfg,
            device,
            rx,
            side_rx: sync_channel(1).1,
            source: None,
            enricher,
            engine,
            detections: Vec::new(),
            prevention: None,
            prevented: Vec::new(),
            inventory: None,
            inventoried: Vec::new(),
            sampler,
            runtime,
            stop: Arc::new(AtomicBool::new(false)),
            extra_drops: Vec::new(),
            instance: 7,
            seq: 0,
            metrics: metrics::AgentMetrics::new(),
            local_metrics: metrics::LocalMetrics::default(),
            updates: None,
            geoip: None,
        };
        Ok((agent, tx))
    }
}

/// Monotonic counters of every source.
#[derive(Debug, Clone, Default, serde::Serialize)]
struct Counters {
    events: u64,
    drops_per_cpu: Vec<u64>,
    userspace: u64,
    malformed: u64,
    filtered: u64,
    received: u64,
}

fn source_counters(
    source: Option<&Source>,
    extra: &[Arc<std::sync::atomic::AtomicU64>],
) -> Counters {
    let watcher: u64 = extra.iter().map(|w| w.load(Ordering::Relaxed)).sum();
    match source {
        Some(Source::Bpf(s)) => {
            let c = s.counters();
            Counters {
                events: c.events,
                drops_per_cpu: c.drops_per_cpu,
                userspace: c.userspace_drops + watcher,
                malformed: c.malformed,
                filtered: c.filtered,
                received: 0,
            }
        }
        Some(Source::Fallback(p)) => Counters {
            userspace: p.userspace_drops() + watcher,
            ..Counters::default()
        },
        // The parts beside the sensor count their drops whatever the source.
        None => Counters {
            userspace: watcher,
            ..Counters::default()
        },
    }
}

fn start_source(
    cfg: &AgentConfig,
    device: Arc<Device>,
    tx: SyncSender<Box<SensorEvent>>,
) -> Result<Source> {
    let sensor_cfg = SensorConfig {
        containers_only: cfg.containers_only,
        file_events: cfg.file_events,
        net_events: cfg.net_events,
        dns: cfg.dns,
        ring_buffer_bytes: cfg.ring_buffer_mib.saturating_mul(1 << 20),
        sensitive: SensitiveNames::from_patterns(&cfg.sensitive_paths),
        programs: SensorPrograms::from_name(&cfg.sensor_programs).unwrap_or_default(),
        ..SensorConfig::default()
    };
    let fallback = |device: Arc<Device>, tx: SyncSender<Box<SensorEvent>>| {
        let p = ProcConnector::start(device, random_u64(), tx).context(
            "the proc-connector fallback failed too; no event source works on this host",
        )?;
        tracing::warn!(
            "running on the proc-connector fallback: exec, fork, exit and setuid/setgid only. Missing: {}",
            ProcConnector::MISSING
        );
        Ok::<_, AgentError>(Source::Fallback(p))
    };
    if cfg.sensor == "proc-connector" {
        tracing::warn!(
            "sensor: proc-connector in the configuration: the eBPF sensor is not started"
        );
        return fallback(device, tx);
    }
    match Sensor::start(&sensor_cfg, device.clone(), random_u64(), tx.clone()) {
        Ok(s) => {
            tracing::info!("sensor programs: {}", s.programs().name());
            for (hook, kind) in s.hooks() {
                tracing::debug!("{hook}: {kind}");
            }
            if cfg.dns && !s.dns_attached() {
                tracing::warn!("DNS events are off on this host (see `rampart agent --probe`)");
            }
            Ok(Source::Bpf(Box::new(s)))
        }
        Err(KernelError::NotRoot) => Err(KernelError::NotRoot.into()),
        Err(e) if cfg.sensor == "ebpf" => {
            Err(e).context("sensor: ebpf in the configuration, and the eBPF sensor cannot run here")
        }
        Err(e) => {
            tracing::warn!("the BPF sensor cannot run here: {e}");
            fallback(device, tx)
        }
    }
}

fn write_stats_file(path: &std::path::Path, c: &Counters, received: u64, mechanism: &str) {
    let v = serde_json::json!({
        "pid": std::process::id(),
        "mechanism": mechanism,
        "kernel_events": c.events,
        "events_received": received,
        "kernel_drops_per_cpu": c.drops_per_cpu,
        "kernel_drops": c.drops_per_cpu.iter().sum::<u64>(),
        "userspace_drops": c.userspace,
        "malformed": c.malformed,
        "filtered_in_kernel": c.filtered,
    });
    if let Some(dir) = path.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    let tmp = path.with_extension("tmp");
    if std::fs::write(&tmp, v.to_string()).is_ok() {
        let _ = std::fs::rename(&tmp, path);
    }
}

/// The running agent's counters from its stats file, one `name value` line each (what
/// `rampart agent --stats` prints).
pub fn stats_text(path: &Path) -> Result<String> {
    let text = std::fs::read_to_string(path).with_context(|| {
        format!(
            "no running agent found ({} is missing): is `rampart agent` running?",
            path.display()
        )
    })?;
    let v: serde_json::Value =
        serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
    let mut out = String::new();
    if let Some(o) = v.as_object() {
        for (k, val) in o {
            out.push_str(&format!("{k:<22} {val}\n"));
        }
    }
    Ok(out)
}

pub(crate) fn random_u64() -> u64 {
    rampart_event::instance_id()
}

#[cfg(test)]
mod tests;
