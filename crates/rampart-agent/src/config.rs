//! The agent's configuration file (`agent.yaml`). Every key is optional; the defaults are what
//! `rampart agent` does without a file.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::error::{AgentError, Context};

/// `agent.yaml`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AgentConfig {
    /// Host name put in every event (default: the kernel's hostname).
    pub hostname: Option<String>,
    /// Jurisdiction tag of this host (`eu-de`, `us-ca`, `sg`, ...).
    pub region: Option<String>,
    /// Where events go, written directly by the agent's loop: `stdout`, `jsonl:/path/file.jsonl`,
    /// or `console` (the terminal view: alerts and a periodic summary). Default: stdout. `stdout`
    /// and `jsonl:PATH` are spellings of rampart-ship outputs: `stdout` is `{type: stdout,
    /// delivery: direct}` and `jsonl:PATH` is `{type: file, path: PATH, name: "jsonl:PATH",
    /// delivery: direct}`; write that form under `ship: outputs:` to give it a `filter:`
    /// (docs/shipping.md).
    pub outputs: Vec<String>,
    /// Serve the agent's Prometheus metrics (events by type, drops, alerts by rule, rule
    /// evaluation time, response actions, enforcement denials) at `http://ADDR/metrics`; no
    /// authentication: bind loopback or a monitoring network.
    pub metrics_listen: Option<std::net::SocketAddr>,
    /// The event source: `auto` (the eBPF sensor, the proc connector where BPF cannot load),
    /// `ebpf` (the eBPF sensor or a start-up error) or `proc-connector` (the degraded source
    /// of OpenVZ/LXC-style hosts, forced: exec, fork, exit and uid changes only).
    pub sensor: String,
    /// Which build of the eBPF sensor's tracing programs to load: `auto` (the fastest the
    /// kernel accepts), `tp_btf+kfunc`, `tp_btf` or `raw_tracepoint` (that one or a start-up
    /// error).
    pub sensor_programs: String,
    /// Report only processes inside containers.
    pub containers_only: bool,
    /// File events (opens for write, sensitive reads, unlink, rename, chmod, chown).
    pub file_events: bool,
    /// Network events (connect, accept, bind, listen).
    pub net_events: bool,
    /// DNS queries and answers.
    pub dns: bool,
    /// Files whose reads are reported (glob; `*` matches within one path component).
    pub sensitive_paths: Vec<String>,
    /// Kernel ring buffer size in MiB (a power of two).
    pub ring_buffer_mib: u32,
    /// How often a `sensor.drops` event reports the counters, in seconds.
    pub stats_interval_secs: u64,
    /// Docker Engine socket.
    pub docker_socket: PathBuf,
    /// Ancestors carried by every event's process.
    pub max_ancestors: usize,
    /// Executables up to this many MiB are hashed at exec (`process.exe_sha256`); 0: none.
    pub exe_hash_max_mib: u64,
    /// Where `rampart agent --stats` finds the running agent's counters.
    pub stats_file: PathBuf,
    /// Load the built-in rules (rules/default.yaml) before `rules`.
    pub default_rules: bool,
    /// Rule files (Falco format), loaded in order after the defaults.
    pub rules: Vec<PathBuf>,
    /// Falco's `rule_matching`: `first` (one single-event rule per event) or `all`.
    pub rule_matching: String,
    /// Rules less severe than this are not evaluated (Falco's `priority`).
    pub min_priority: String,
    /// Host log files whose sshd/PAM/su/sudo lines become `auth.login` events (followed like
    /// `tail -F`; missing files are skipped).
    pub auth_log_files: Vec<PathBuf>,
    /// Read login attempts from the systemd journal (sshd, PAM, su, sudo log there only on a
    /// stock Debian 12): followed with `journalctl`, resumed after a restart from the cursor
    /// saved in `journal_cursor_file`. Skipped where the host has no journal.
    pub auth_journal: bool,
    /// Where the journal reader keeps the cursor of the last entry it read.
    pub journal_cursor_file: PathBuf,
    /// Also read login attempts from every container's stdout/stderr (Docker logs API).
    pub container_logs: bool,
    /// MaxMind-format country database (GeoLite2-Country.mmdb); connections then carry
    /// `network.remote_country`.
    pub geoip_db: Option<PathBuf>,
    /// Durable shipping: the on-disk queue and its outputs (server, syslog, HTTP, file), and
    /// the Prometheus endpoint (docs/shipping.md).
    pub ship: Option<crate::ship::ShipSection>,
    /// Network and exec policy (docs/policy.md): applied at start, kept current as containers
    /// come and go; its denials are `policy.*` events.
    pub policy: Option<PathBuf>,
    /// Playbook files (docs/response.md): response actions run automatically on alerts.
    pub playbooks: Vec<PathBuf>,
    /// The rules' own `actions:` (e.g. `[kill]` on the crypto-miner rule): `enforce`,
    /// `dry-run` (record what would be done) or `off`.
    pub rule_actions: String,
    /// Addresses or CIDRs an isolated container may still reach (the Rampart server, an admin
    /// host).
    pub isolate_allow: Vec<String>,
    /// Where playbooks' `forensics` actions write bundles. With a `server` output in `ship:`
    /// every bundle is also uploaded to that server (docs/response.md, "Evidence off the host").
    pub forensics_dir: PathBuf,
    /// Memory of the alert's process kept in a bundle, MiB at most (0: none).
    pub forensics_memory_mib: u64,
    /// Inventory of the host, its containers and their images, with vulnerability counts
    /// from the local database (fetched from the server as a signed bundle); docs/agent.md.
    pub inventory: crate::inventory::InventorySection,
    /// The server's signed fleet configuration (rules, threat lists, policy, playbooks,
    /// GeoIP), fetched and applied without a restart; docs/agent.md.
    pub fleet_config: crate::fleetconfig::FleetConfigSection,
}

impl Default for AgentConfig {
    fn default() -> Self {
        AgentConfig {
            hostname: None,
            region: None,
            outputs: vec!["stdout".into()],
            metrics_listen: None,
            sensor: "auto".into(),
            sensor_programs: "auto".into(),
            containers_only: false,
            file_events: true,
            net_events: true,
            dns: true,
            sensitive_paths: rampart_kernel::DEFAULT_SENSITIVE_PATHS
                .iter()
                .map(|s| s.to_string())
                .collect(),
            ring_buffer_mib: 16,
            stats_interval_secs: 10,
            docker_socket: PathBuf::from(rampart_container::DEFAULT_SOCKET),
            max_ancestors: 8,
            exe_hash_max_mib: 64,
            stats_file: PathBuf::from("/run/rampart/agent-stats.json"),
            default_rules: true,
            rules: Vec::new(),
            rule_matching: "first".into(),
            min_priority: "debug".into(),
            auth_log_files: vec![
                PathBuf::from("/var/log/auth.log"),
                PathBuf::from("/var/log/secure"),
            ],
            auth_journal: true,
            journal_cursor_file: PathBuf::from("/var/lib/rampart/journal.cursor"),
            container_logs: true,
            geoip_db: None,
            ship: None,
            policy: None,
            playbooks: Vec::new(),
            rule_actions: "enforce".into(),
            isolate_allow: Vec::new(),
            forensics_dir: PathBuf::from("/var/lib/rampart/forensics"),
            forensics_memory_mib: 256,
            inventory: crate::inventory::InventorySection::default(),
            fleet_config: crate::fleetconfig::FleetConfigSection::default(),
        }
    }
}

impl AgentConfig {
    /// Reads `path`; errors name the file, line, column and key.
    pub fn load(path: &Path) -> crate::Result<AgentConfig> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let cfg: AgentConfig = serde_yaml::from_str(&text).map_err(|e| {
            let at = e
                .location()
                .map(|l| format!(":{}:{}", l.line(), l.column()))
                .unwrap_or_default();
            AgentError::Config(format!("{}{at}: {e}", path.display()))
        })?;
        cfg.validate()
            .map_err(|m| AgentError::Config(format!("{}: {m}", path.display())))?;
        Ok(cfg)
    }

    fn validate(&self) -> Result<(), String> {
        if !self.ring_buffer_mib.is_power_of_two() {
            return Err(format!(
                "ring_buffer_mib: {} is not a power of two",
                self.ring_buffer_mib
            ));
        }
        if self.stats_interval_secs == 0 {
            return Err("stats_interval_secs: must be at least 1".into());
        }
        if !["enforce", "dry-run", "off"].contains(&self.rule_actions.as_str()) {
            return Err(format!(
                "rule_actions: {:?} is not one of enforce, dry-run, off",
                self.rule_actions
            ));
        }
        if !["auto", "ebpf", "proc-connector"].contains(&self.sensor.as_str()) {
            return Err(format!(
                "sensor: {:?} is not one of auto, ebpf, proc-connector",
                self.sensor
            ));
        }
        if rampart_kernel::SensorPrograms::from_name(&self.sensor_programs).is_none() {
            return Err(format!(
                "sensor_programs: {:?} is not one of {}",
                self.sensor_programs,
                rampart_kernel::SensorPrograms::ALL
                    .map(|p| p.name())
                    .join(", ")
            ));
        }
        if self.rule_matching != "first" && self.rule_matching != "all" {
            return Err(format!(
                "rule_matching: {:?} is not `first` or `all`",
                self.rule_matching
            ));
        }
        self.inventory.validate().map_err(|e| e.to_string())?;
        self.fleet_config.validate().map_err(|e| e.to_string())?;
        self.min_priority
            .parse::<rampart_event::Priority>()
            .map_err(|e| format!("min_priority: {e}"))?;
        // `console` is the terminal view (output.rs), not a ship output.
        for o in self.outputs.iter().filter(|o| o.as_str() != "console") {
            rampart_ship::output::shorthand(o).map_err(|e| format!("outputs: {}", e.message))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> crate::Result<AgentConfig> {
        let dir = tempfile::tempdir().context("tempdir")?;
        let p = dir.path().join("agent.yaml");
        std::fs::write(&p, text).context("writing agent.yaml")?;
        AgentConfig::load(&p)
    }

    #[test]
    fn unknown_key_names_file_line_and_key() {
        let err = load("containers_only: true\nbogus_key: 1\n").expect_err("must fail");
        let msg = format!("{err:#}");
        assert!(msg.contains("agent.yaml:2:1"), "{msg}");
        assert!(msg.contains("bogus_key"), "{msg}");
    }

    #[test]
    fn wrong_type_and_bad_values_are_refused() {
        let msg = format!("{:#}", load("dns: maybe\n").expect_err("must fail"));
        assert!(msg.contains("agent.yaml:1:6"), "{msg}");
        let msg = format!(
            "{:#}",
            load("ring_buffer_mib: 12\n").expect_err("must fail")
        );
        assert!(msg.contains("ring_buffer_mib"), "{msg}");
        // The names are exact: no case folding, no alias for the kfunc build.
        for bad in ["kfunc", "TP_BTF", "tp_btf ", "raw"] {
            let msg = format!(
                "{:#}",
                load(&format!("sensor_programs: \"{bad}\"\n")).expect_err("must fail")
            );
            assert!(
                msg.contains("sensor_programs") && msg.contains("tp_btf+kfunc"),
                "{msg}"
            );
        }
        for good in ["auto", "tp_btf+kfunc", "tp_btf", "raw_tracepoint"] {
            let cfg = load(&format!("sensor_programs: {good}\n")).expect(good);
            assert_eq!(cfg.sensor_programs, good);
        }
    }

    #[test]
    fn inventory_keys_have_defaults_and_bad_durations_are_refused() {
        let c = load("inventory:\n  interval: 30m\n").expect("loads");
        assert_eq!(c.inventory.interval, "30m");
        assert_eq!(c.inventory.db_poll, "1h");
        assert!(c.inventory.enabled && c.inventory.fetch_db);
        let msg = format!(
            "{:#}",
            load("inventory:\n  db_poll: soon\n").expect_err("must fail")
        );
        assert!(msg.contains("inventory.db_poll"), "{msg}");
        let msg = format!(
            "{:#}",
            load("inventory:\n  bogus: 1\n").expect_err("must fail")
        );
        assert!(msg.contains("bogus"), "{msg}");
    }

    #[test]
    fn partial_file_keeps_defaults() {
        let c = load("outputs: [\"jsonl:/tmp/x.jsonl\"]\n").expect("loads");
        assert_eq!(c.outputs, vec!["jsonl:/tmp/x.jsonl"]);
        assert!(c.file_events);
        assert_eq!(c.stats_interval_secs, 10);
    }
}
