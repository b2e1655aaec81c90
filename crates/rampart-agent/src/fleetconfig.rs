//! Configuration applied without a restart: the server's signed fleet configuration bundle
//! (`rampart_server::fleetconfig`: rules, threat lists, a policy, playbooks, a GeoIP
//! database) and, on SIGHUP, the agent's own rule, policy, playbook and GeoIP files again.
//!
//! A thread (`rampart-config`) builds the whole configuration off the event loop: it
//! compiles the rules (defaults, the bundle's `lists/`, agent.yaml's `rules`, the bundle's
//! `rules/`), parses the policy (the bundle's, else agent.yaml's `policy`), loads the
//! playbooks (agent.yaml's and the bundle's) and opens the GeoIP database (the bundle's,
//! else `geoip_db`). Only a configuration where all of that succeeded reaches the loop,
//! which swaps the rule engine between two events, reconciles the policy, replaces the
//! playbooks and the GeoIP reader ([`Loaded`]). Anything that fails refuses the whole
//! configuration: the running one stays, the refusal is logged and counted
//! (`rampart_agent_config_refused_total{reason}`) and, for a server bundle, reported to the
//! server with the next poll (the dashboard shows it).
//!
//! # Server bundles (`fleet_config:` in agent.yaml, needs a `server` output under `ship:`)
//! Every `poll` the thread asks `GET /api/v1/config/manifest`, reporting the version it runs,
//! when it applied it and its last refusal. A manifest is applied only when its signature
//! verifies against the CA pinned at enrollment, its version is above the installed one (an
//! older or equal version is a rollback: refused), the payload's size and digests match and
//! the configuration builds. The files are kept in `<dir>/v<version>/` with the signed
//! manifest in `<dir>/installed.json`; at start the installed bundle is verified again
//! (signature and every file's digest) and applied within a second. A refused bundle is not
//! fetched again (same digest) until the server publishes another.
//!
//! agent.yaml itself is read once at start: SIGHUP re-reads the files it names, not its keys.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError, SyncSender};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rampart_respond::{load_playbooks, Playbook, Policy};
use rampart_server::fleetconfig::{self as fc, ConfigError, ConfigManifest};
use rampart_server::vulndb::SignedManifest;
use rampart_ship::client::HttpClient;
use serde::Deserialize;

use crate::bundle::{write_atomic, BundleSource};
use crate::config::AgentConfig;
use crate::error::{AgentError, Context, Result};
use crate::metrics::AgentMetrics;

/// `fleet_config:` in agent.yaml.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FleetConfigSection {
    /// Fetch and apply the server's signed configuration bundle (needs a `server` output
    /// under `ship:`; without one only SIGHUP reloads apply).
    pub enabled: bool,
    /// Time between checks for a new bundle (`1m`, `30s`).
    pub poll: String,
    /// Where the installed bundle is kept.
    pub dir: PathBuf,
}

impl Default for FleetConfigSection {
    fn default() -> Self {
        FleetConfigSection {
            enabled: true,
            poll: "1m".into(),
            dir: PathBuf::from("/var/lib/rampart/fleet-config"),
        }
    }
}

/// Why a fleet configuration (agent.yaml's `fleet_config:`, or the files and bundle it builds
/// from) is refused. The messages are what the agent logs and reports to the server; the
/// underlying errors are part of them, not a separate source.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FleetConfigError {
    /// `fleet_config.poll` is not a duration.
    #[error("fleet_config.poll: {given:?}: {reason}")]
    PollFormat { given: String, reason: String },
    /// `fleet_config.poll` is zero.
    #[error("fleet_config.poll: must be more than 0")]
    PollZero,
    /// The rules (agent.yaml's and the bundle's) do not compile.
    #[error("rules: {0}")]
    Rules(crate::AgentError),
    /// The policy does not load.
    #[error("policy: {0}")]
    Policy(rampart_respond::PolicyError),
    /// A playbook file does not load.
    #[error("playbooks: {0}")]
    Playbooks(rampart_respond::PlaybookError),
    /// The GeoIP database is not one.
    #[error("geoip: {0}")]
    Geoip(rampart_container::ContainerError),
}

impl FleetConfigSection {
    fn poll_interval(&self) -> Result<Duration, FleetConfigError> {
        let d =
            humantime::parse_duration(&self.poll).map_err(|e| FleetConfigError::PollFormat {
                given: self.poll.clone(),
                reason: e.to_string(),
            })?;
        if d.is_zero() {
            return Err(FleetConfigError::PollZero);
        }
        Ok(d)
    }

    /// Checks the poll interval (called by the config's validation).
    pub fn validate(&self) -> Result<(), FleetConfigError> {
        self.poll_interval().map(drop)
    }
}

/// A configuration that built completely, for the loop to apply.
pub struct Loaded {
    pub engine: rampart_rules::Engine,
    pub rules: usize,
    pub rules_have_actions: bool,
    pub policy: Option<Policy>,
    pub playbooks: Vec<Playbook>,
    pub geoip: Option<PathBuf>,
    /// The server bundle's version in it (0: none).
    pub version: u64,
    /// What caused it: `start`, `server`, `SIGHUP`.
    pub origin: &'static str,
}

/// What the thread is asked to do besides polling.
#[derive(Debug, Clone, Copy)]
pub enum Trigger {
    /// Re-read the local files (SIGHUP).
    Reload,
    Stop,
}

/// The running configuration thread.
pub struct Updates {
    rx: Receiver<Loaded>,
    trigger: SyncSender<Trigger>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Updates {
    /// Starts the thread. `source` is the `server` output (bundles are fetched only with one
    /// and `fleet_config.enabled`).
    pub fn start(
        cfg: &AgentConfig,
        source: Option<BundleSource>,
        runtime: tokio::runtime::Handle,
        metrics: Arc<AgentMetrics>,
    ) -> Result<Updates> {
        let section = cfg.fleet_config.clone();
        let poll = section
            .poll_interval()
            .map_err(|e| AgentError::Config(e.to_string()))?;
        let source = source.filter(|_| section.enabled);
        if source.is_some() {
            std::fs::create_dir_all(&section.dir)
                .with_context(|| format!("fleet_config: creating {}", section.dir.display()))?;
        }
        let (tx, rx) = sync_channel(2);
        let (trigger, triggers) = sync_channel(4);
        let stop = Arc::new(AtomicBool::new(false));
        let mut w = Worker {
            cfg: cfg.clone(),
            dir: section.dir,
            poll,
            source,
            runtime,
            metrics,
            tx,
            installed: None,
            applied_ns: 0,
            refused: None,
            refused_sha: None,
            stop: stop.clone(),
        };
        let thread = std::thread::Builder::new()
            .name("rampart-config".into())
            .spawn(move || w.run(&triggers))
            .context("starting the configuration thread")?;
        Ok(Updates {
            rx,
            trigger,
            stop,
            thread: Some(thread),
        })
    }

    /// Updates fed by the returned sender, with no thread (the loop's tests).
    #[cfg(test)]
    pub(crate) fn for_test() -> (SyncSender<Loaded>, Updates) {
        let (tx, rx) = sync_channel(2);
        let (trigger, _) = sync_channel(1);
        (
            tx,
            Updates {
                rx,
                trigger,
                stop: Arc::default(),
                thread: None,
            },
        )
    }

    /// Where SIGHUP sends [`Trigger::Reload`].
    pub fn trigger(&self) -> SyncSender<Trigger> {
        self.trigger.clone()
    }

    /// The next configuration to apply, if one is ready.
    pub fn try_next(&self) -> Option<Loaded> {
        self.rx.try_recv().ok()
    }

    /// Stops the thread (a fetch in progress finishes first, bounded by its timeout).
    pub fn shutdown(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.trigger.try_send(Trigger::Stop);
        // A build waiting for the loop to take its result must not block the join.
        while self.rx.try_recv().is_ok() {}
        // A poll in progress may wait for its server up to its timeout: the agent does not
        // wait that long to stop (the thread holds nothing that must be flushed).
        if let Some(t) = self.thread.take() {
            let deadline = Instant::now() + Duration::from_secs(2);
            while !t.is_finished() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
                while self.rx.try_recv().is_ok() {}
            }
            if t.is_finished() {
                let _ = t.join();
            }
        }
    }
}

/// Why a configuration was refused: the metric's reason and the message.
struct Refusal {
    reason: &'static str,
    message: String,
}

impl From<ConfigError> for Refusal {
    fn from(e: ConfigError) -> Self {
        let reason = match &e {
            ConfigError::Bundle(_) | ConfigError::Manifest(_) => "signature",
            ConfigError::Rollback { .. } => "rollback",
            _ => "payload",
        };
        Refusal {
            reason,
            message: e.to_string(),
        }
    }
}

struct Worker {
    cfg: AgentConfig,
    dir: PathBuf,
    poll: Duration,
    source: Option<BundleSource>,
    runtime: tokio::runtime::Handle,
    metrics: Arc<AgentMetrics>,
    tx: SyncSender<Loaded>,
    /// The bundle in force.
    installed: Option<ConfigManifest>,
    applied_ns: u64,
    /// The last refusal, reported to the server.
    refused: Option<String>,
    /// The digest of the last refused bundle: not fetched again.
    refused_sha: Option<String>,
    stop: Arc<AtomicBool>,
}

fn installed_path(dir: &Path) -> PathBuf {
    dir.join("installed.json")
}

fn version_dir(dir: &Path, version: u64) -> PathBuf {
    dir.join(format!("v{version}"))
}

/// The files of one section of an installed bundle, in name order.
fn section_files(bundle: Option<&Path>, section: &str) -> Vec<PathBuf> {
    let Some(d) = bundle else {
        return Vec::new();
    };
    let mut v: Vec<PathBuf> = std::fs::read_dir(d.join(section))
        .map(|rd| rd.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    v.sort();
    v
}

/// Builds the whole configuration from agent.yaml's files and the installed bundle in
/// `bundle` (a `v<version>` directory); any failure refuses it all.
pub fn build(
    cfg: &AgentConfig,
    bundle: Option<&Path>,
    version: u64,
) -> Result<Loaded, FleetConfigError> {
    let lists = section_files(bundle, "lists");
    let rules = section_files(bundle, "rules");
    let (engine, rules_have_actions) =
        crate::compile_rules(cfg, &lists, &rules).map_err(FleetConfigError::Rules)?;
    let n = engine.rules().rules().count();
    let policy_file = section_files(bundle, "policy")
        .into_iter()
        .next()
        .or_else(|| cfg.policy.clone());
    let policy = policy_file
        .map(|p| Policy::load(&p).map_err(FleetConfigError::Policy))
        .transpose()?;
    let mut playbooks = Vec::new();
    for f in cfg
        .playbooks
        .iter()
        .cloned()
        .chain(section_files(bundle, "playbooks"))
    {
        playbooks.extend(load_playbooks(&f).map_err(FleetConfigError::Playbooks)?);
    }
    let geoip = section_files(bundle, "geoip")
        .into_iter()
        .next()
        .or_else(|| cfg.geoip_db.clone());
    if let Some(g) = &geoip {
        rampart_container::Enricher::check_geoip(g).map_err(FleetConfigError::Geoip)?;
    }
    Ok(Loaded {
        engine,
        rules: n,
        rules_have_actions,
        policy,
        playbooks,
        geoip,
        version,
        origin: "start",
    })
}

/// Checks a fleet configuration source directory (the layout of
/// `rampart_server::fleetconfig`) the way an agent with the default configuration would
/// build it; returns how many rules it compiles to (the defaults included).
pub fn check_source(dir: &Path) -> Result<usize, FleetConfigError> {
    build(&AgentConfig::default(), Some(dir), 0).map(|l| l.rules)
}

/// Header values are visible ASCII: anything else in a refusal message becomes `?`, and
/// it is cut to what the server stores.
fn header_text(s: &str) -> String {
    let mut out: String = s
        .chars()
        .map(|c| {
            if c == ' ' || c.is_ascii_graphic() {
                c
            } else {
                '?'
            }
        })
        .collect();
    out.truncate(fc::MAX_REFUSED_BYTES);
    out
}

impl Worker {
    fn run(&mut self, triggers: &Receiver<Trigger>) {
        self.load_installed();
        let mut next_poll = Instant::now();
        while !self.stop.load(Ordering::Relaxed) {
            let wait = next_poll.saturating_duration_since(Instant::now());
            match triggers.recv_timeout(wait) {
                Ok(Trigger::Reload) => {
                    tracing::info!("SIGHUP: reloading the rule, policy, playbook and GeoIP files");
                    let bundle = self
                        .installed
                        .as_ref()
                        .map(|m| version_dir(&self.dir, m.version));
                    let version = self.installed.as_ref().map_or(0, |m| m.version);
                    match build(&self.cfg, bundle.as_deref(), version) {
                        Ok(l) => self.send(Loaded {
                            origin: "SIGHUP",
                            ..l
                        }),
                        Err(e) => self.refuse(
                            None,
                            Refusal {
                                reason: "invalid",
                                message: format!(
                                    "reload refused, the running configuration is kept: {e}"
                                ),
                            },
                        ),
                    }
                }
                Ok(Trigger::Stop) | Err(RecvTimeoutError::Disconnected) => return,
                Err(RecvTimeoutError::Timeout) => {
                    if self.source.is_some() {
                        self.poll_server();
                    }
                    next_poll = Instant::now() + self.poll;
                }
            }
        }
    }

    fn send(&mut self, l: Loaded) {
        // Blocks only while the loop has two configurations it has not applied yet.
        let _ = self.tx.send(l);
    }

    fn refuse(&mut self, sha: Option<String>, r: Refusal) {
        tracing::error!("fleet configuration refused ({}): {}", r.reason, r.message);
        self.metrics
            .config(|c| *c.refused.entry(r.reason).or_default() += 1);
        if sha.is_some() {
            self.refused = Some(r.message);
            self.refused_sha = sha;
        }
    }

    /// The pinned CA (DER) of the server output.
    fn pinned_ca(&self) -> Option<Vec<u8>> {
        let src = self.source.as_ref()?;
        let ca_path = src.tls_dir.join(rampart_ship::tls::CA_FILE);
        rampart_ship::tls::load_certs(&ca_path)
            .ok()?
            .into_iter()
            .next()
            .map(|c| c.as_ref().to_vec())
    }

    /// Verifies the installed bundle again (its signature and every file on disk) and applies
    /// it; a bundle that fails is ignored (logged) and the agent runs its own files.
    fn load_installed(&mut self) {
        if self.source.is_none() {
            return;
        }
        let Ok(data) = std::fs::read(installed_path(&self.dir)) else {
            return;
        };
        let checked = (|| -> Result<ConfigManifest, String> {
            let ca = self.pinned_ca().ok_or("no pinned CA")?;
            let signed: SignedManifest =
                serde_json::from_slice(&data).map_err(|e| e.to_string())?;
            let m = fc::verify_manifest(&ca, &signed).map_err(|e| e.to_string())?;
            let d = version_dir(&self.dir, m.version);
            for f in &m.files {
                let got = std::fs::read(d.join(&f.path)).map_err(|e| format!("{}: {e}", f.path))?;
                if got.len() as u64 != f.size || fc::sha256(&got) != f.sha256 {
                    return Err(format!(
                        "{}: changed on disk since it was installed",
                        f.path
                    ));
                }
            }
            Ok(m)
        })();
        let m = match checked {
            Ok(m) => m,
            Err(e) => {
                tracing::error!(
                    "the installed fleet configuration in {} is not used: {e}",
                    self.dir.display()
                );
                return;
            }
        };
        match build(
            &self.cfg,
            Some(&version_dir(&self.dir, m.version)),
            m.version,
        ) {
            Ok(l) => {
                self.applied_ns = std::fs::metadata(installed_path(&self.dir))
                    .and_then(|md| md.modified())
                    .ok()
                    .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                    .map_or(0, |d| d.as_nanos() as u64);
                self.installed = Some(m);
                self.send(l);
            }
            Err(e) => tracing::error!(
                "the installed fleet configuration {} does not build with this agent's files: {e}",
                m.version
            ),
        }
    }

    fn poll_server(&mut self) {
        let Some(src) = self.source.clone() else {
            return;
        };
        let fetched = self.runtime.block_on(self.fetch(&src));
        let (signed, m, files) = match fetched {
            Ok(Some(f)) => f,
            Ok(None) => return,
            Err(Fetch::Refused(sha, r)) => return self.refuse(Some(sha), r),
            Err(Fetch::Failed(e)) => {
                tracing::warn!("fleet configuration: {e}");
                return;
            }
        };
        // The new version's own directory: the installed one (a lower version) is untouched
        // until this one has built.
        let d = version_dir(&self.dir, m.version);
        let _ = std::fs::remove_dir_all(&d);
        let written = (|| -> std::io::Result<()> {
            for (path, data) in &files {
                // Paths were checked (section/name) with the signed manifest.
                let p = d.join(path);
                if let Some(parent) = p.parent() {
                    std::fs::create_dir_all(parent)?;
                }
                write_atomic(&p, data)?;
            }
            Ok(())
        })();
        if let Err(e) = written {
            let _ = std::fs::remove_dir_all(&d);
            tracing::error!(
                "fleet configuration {}: writing {}: {e}",
                m.version,
                d.display()
            );
            return;
        }
        let loaded = match build(&self.cfg, Some(&d), m.version) {
            Ok(l) => l,
            Err(e) => {
                let _ = std::fs::remove_dir_all(&d);
                return self.refuse(
                    Some(fc::sha256(signed.manifest.as_bytes())),
                    Refusal {
                        reason: "invalid",
                        message: format!(
                            "version {}: {e} (the running configuration is kept)",
                            m.version
                        ),
                    },
                );
            }
        };
        let json = serde_json::to_vec_pretty(&signed).unwrap_or_default();
        if let Err(e) = write_atomic(&installed_path(&self.dir), &json) {
            tracing::error!("fleet configuration {}: recording it: {e}", m.version);
            return;
        }
        let old = self.installed.replace(m.clone());
        self.applied_ns = rampart_event::now_ns();
        self.refused = None;
        self.refused_sha = None;
        tracing::info!(
            "fleet configuration {} installed ({} files); applying",
            m.version,
            m.files.len()
        );
        self.send(Loaded {
            origin: "server",
            ..loaded
        });
        if let Some(o) = old.filter(|o| o.version != m.version) {
            let _ = std::fs::remove_dir_all(version_dir(&self.dir, o.version));
        }
    }

    /// Asks the server for its manifest (reporting what runs here) and, when it is a newer
    /// version that verifies, fetches and checks its files.
    async fn fetch(
        &self,
        src: &BundleSource,
    ) -> Result<Option<(SignedManifest, ConfigManifest, BTreeMap<String, Vec<u8>>)>, Fetch> {
        let failed = |e: String| Fetch::Failed(e);
        let tls = rampart_ship::tls::agent_client_config(&src.tls_dir)
            .map_err(|e| failed(format!("TLS from {}: {e}", src.tls_dir.display())))?;
        let ca = self
            .pinned_ca()
            .ok_or_else(|| failed(format!("{}: no pinned CA", src.tls_dir.display())))?;
        let mut client = HttpClient::new(&src.url, Some(tls))
            .map_err(|e| failed(format!("server output url {}: {e}", src.url)))?
            .with_timeout(Duration::from_secs(60))
            .with_max_response(1 << 20);
        let version = self.installed.as_ref().map_or(0, |m| m.version);
        let etag = format!("\"{version}\"");
        let version_s = version.to_string();
        let applied_s = self.applied_ns.to_string();
        let refused = self.refused.as_deref().map(header_text);
        let mut headers: Vec<(&str, &str)> = vec![
            (fc::VERSION_HEADER, &version_s),
            (fc::APPLIED_HEADER, &applied_s),
        ];
        if self.installed.is_some() {
            headers.push(("if-none-match", &etag));
        }
        if let Some(r) = &refused {
            headers.push((fc::REFUSED_HEADER, r));
        }
        let r = client
            .request(
                hyper::Method::GET,
                "/api/v1/config/manifest",
                &headers,
                bytes::Bytes::new(),
            )
            .await
            .map_err(|e| failed(format!("manifest: {e}")))?;
        if r.status == 304 || r.status == 404 {
            return Ok(None);
        }
        if !r.is_success() {
            return Err(failed(format!(
                "manifest: HTTP {}: {}",
                r.status,
                r.body_text()
            )));
        }
        let signed: SignedManifest = serde_json::from_slice(&r.body)
            .map_err(|e| failed(format!("manifest: not JSON: {e}")))?;
        // The digest of what was offered, so that a refused manifest is not fetched again.
        let offered = fc::sha256(signed.manifest.as_bytes());
        if self.refused_sha.as_deref() == Some(offered.as_str()) {
            return Ok(None);
        }
        let refused = |e: ConfigError| Fetch::Refused(offered.clone(), e.into());
        let m = fc::verify_manifest(&ca, &signed).map_err(refused)?;
        if !fc::is_newer(self.installed.as_ref(), &m).map_err(refused)? {
            return Ok(None);
        }
        let mut client = client.with_max_response(m.size as usize + 1);
        let r = client
            .request(
                hyper::Method::GET,
                &format!("/api/v1/config/bundle/{}", m.sha256),
                &[],
                bytes::Bytes::new(),
            )
            .await
            .map_err(|e| failed(format!("bundle: {e}")))?;
        if !r.is_success() {
            return Err(failed(format!(
                "bundle: HTTP {}: {}",
                r.status,
                r.body_text()
            )));
        }
        let files = fc::open_payload(&m, &r.body).map_err(refused)?;
        Ok(Some((signed, m, files)))
    }
}

/// A fetch that did not give a bundle to apply.
enum Fetch {
    /// The server could not be asked or answered an error (retried at the next poll).
    Failed(String),
    /// The offered manifest (its digest) was refused.
    Refused(String, Refusal),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg_with(rules: &[PathBuf]) -> AgentConfig {
        AgentConfig {
            default_rules: false,
            rules: rules.to_vec(),
            ..AgentConfig::default()
        }
    }

    const RULE: &str = "- rule: fleet test rule\n  desc: x\n  condition: evt.type = execve and proc.name = fleet-probe\n  output: probe %proc.name\n  priority: WARNING\n";

    #[test]
    fn a_bundle_with_a_broken_rule_or_policy_does_not_build_and_a_good_one_does() {
        let dir = tempfile::tempdir().expect("tempdir");
        let b = dir.path().join("v1");
        std::fs::create_dir_all(b.join("rules")).expect("mkdir");
        std::fs::write(b.join("rules/a.yaml"), RULE).expect("write");
        let l = build(&cfg_with(&[]), Some(&b), 1).expect("builds");
        assert_eq!(l.rules, 1);
        assert_eq!(l.version, 1);
        std::fs::write(
            b.join("rules/b.yaml"),
            "- rule: broken\n  desc: x\n  condition: evt.type = = execve\n  output: x\n  priority: WARNING\n",
        )
        .expect("write");
        let e = build(&cfg_with(&[]), Some(&b), 1).err().expect("refused");
        assert!(matches!(e, FleetConfigError::Rules(_)), "{e}");
        let e = e.to_string();
        assert!(e.starts_with("rules:") && e.contains("b.yaml"), "{e}");
        std::fs::remove_file(b.join("rules/b.yaml")).expect("rm");
        std::fs::create_dir_all(b.join("policy")).expect("mkdir");
        std::fs::write(b.join("policy/p.yaml"), "not: [a policy").expect("write");
        let e = build(&cfg_with(&[]), Some(&b), 1).err().expect("refused");
        assert!(matches!(e, FleetConfigError::Policy(_)), "{e}");
        assert!(e.to_string().starts_with("policy:"), "{e}");
        std::fs::remove_file(b.join("policy/p.yaml")).expect("rm");
        std::fs::create_dir_all(b.join("geoip")).expect("mkdir");
        std::fs::write(b.join("geoip/c.mmdb"), "not a database").expect("write");
        let e = build(&cfg_with(&[]), Some(&b), 1).err().expect("refused");
        assert!(matches!(e, FleetConfigError::Geoip(_)), "{e}");
        assert!(e.to_string().starts_with("geoip:"), "{e}");
    }

    #[test]
    fn refusal_text_in_a_header_is_visible_ascii_and_bounded() {
        let t = header_text(&format!("a\nb\u{e9}{}", "x".repeat(5000)));
        assert!(t.starts_with("a?b?"));
        assert_eq!(t.len(), fc::MAX_REFUSED_BYTES);
    }
}
