//! The server configuration (`server.yaml`). Relative paths are relative to `data_dir`.
//!
//! ```yaml
//! listen: 0.0.0.0:8443          # ingest (mTLS), enrollment and query API, one HTTPS port
//! data_dir: /var/lib/rampart/server
//! tls:
//!   names: [rampart.example.net, 203.0.113.7]   # the server certificate is valid for these
//! store:
//!   type: sqlite                # or: type: clickhouse, url: http://127.0.0.1:8123
//! regions:
//!   eu-de:
//!     retention_days: 90
//!     anonymise: {ips: truncate, users: true, drop: [process.args]}
//!   cn:
//!     retention_days: 180
//! default_region:
//!   retention_days: 365
//! fleet:                        # the fleet console (cross-host rules, incidents, deadlines)
//!   roles: [nis2-entity]        # roles that make more regimes apply (nis2-entity, cn-ciio, ...)
//!   rules: [/etc/rampart/fleet-rules.yaml]   # default: the shipped fleet rules
//!   regulations_dir: /etc/rampart/regulations # default: the shipped regulations
//!   incident_window: 1h
//!   country_learning: 24h
//!   deadline_check_interval: 1m
//! limits:                       # what one client may make the server hold or wait for
//!   max_connections: 512
//!   ingest_body_bytes: 67108864 # compressed and decompressed
//!   ingest_lines: 100000
//!   ingest_memory_bytes: 268435456
//!   request_body_bytes: 65536   # every route but ingest
//!   handshake_timeout: 10s
//!   header_timeout: 10s
//!   idle_timeout: 60s
//!   body_timeout: 60s
//!   evidence_bundle_bytes: 2147483648   # one forensic bundle
//!   evidence_agent_bytes: 17179869184   # every bundle of one agent
//! ```

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rampart_ship::anonymise::AnonymiseConfig;
use serde::Deserialize;

/// Errors of loading the configuration; each names the file and, where known, line and column.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    #[error("{path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}{at}: {message}")]
    Parse {
        path: PathBuf,
        /// `:line:column` when known.
        at: String,
        message: String,
    },
    #[error("{path}: {message}")]
    Invalid { path: PathBuf, message: String },
}

/// A setting of server.yaml that serde accepted but that is wrong (a region tag, a duration, an
/// anonymisation policy); the message names the key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidSetting(pub String);

impl From<String> for InvalidSetting {
    fn from(message: String) -> InvalidSetting {
        InvalidSetting(message)
    }
}

impl From<InvalidSetting> for String {
    fn from(e: InvalidSetting) -> String {
        e.0
    }
}

fn default_listen() -> SocketAddr {
    SocketAddr::from(([0, 0, 0, 0], 8443))
}
fn default_data_dir() -> PathBuf {
    PathBuf::from("/var/lib/rampart/server")
}
fn default_retention_interval() -> String {
    "1h".into()
}
fn default_cert_days() -> u32 {
    397
}

/// `server.yaml`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// The HTTPS address for ingest, enrollment and the query API (default `0.0.0.0:8443`).
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// State: CA, control database, SQLite store, pseudonym key (default
    /// `/var/lib/rampart/server`).
    #[serde(default = "default_data_dir")]
    pub data_dir: PathBuf,
    #[serde(default)]
    pub tls: TlsConfig,
    #[serde(default)]
    pub store: StoreConfig,
    /// Policies per jurisdiction tag (the region given at enrollment).
    #[serde(default)]
    pub regions: BTreeMap<String, RegionPolicy>,
    /// The policy of regions not listed in `regions` (default: keep everything forever,
    /// anonymise nothing).
    #[serde(default)]
    pub default_region: RegionPolicy,
    /// The HMAC key for pseudonyms (created with a random key when missing; default
    /// `pseudonym.key`). Give agents that anonymise locally the same key.
    #[serde(default)]
    pub pseudonym_key_file: Option<PathBuf>,
    /// How often the retention job runs (default `1h`).
    #[serde(default = "default_retention_interval")]
    pub retention_interval: String,
    /// Lifetime of agent certificates issued at enrollment, days (default 397).
    #[serde(default = "default_cert_days")]
    pub agent_cert_days: u32,
    /// Serve `/metrics` without a token (default false: any API token may read it).
    #[serde(default)]
    pub metrics_public: bool,
    /// The fleet console's options (read by the binary, which runs the fleet console).
    #[serde(default)]
    pub fleet: FleetOptions,
    /// What one client may make the server hold or wait for (see [`Limits`]).
    #[serde(default)]
    pub limits: Limits,
    /// Keep the vulnerability database current from OSV's exports and publish the signed
    /// bundle agents fetch (docs/scanning.md, "Keeping the database current"); off when absent.
    #[serde(default)]
    pub vulndb_update: Option<VulnDbUpdate>,
    /// Where the control state lives (CA, enrollments, tokens, revocations, users, sessions,
    /// fleet job leases): absent, `<data_dir>/control.db` (SQLite, one server); with
    /// `postgres:`, a PostgreSQL database shared by every server of a fleet (docs/server.md,
    /// "Scale-out").
    #[serde(default)]
    pub control_store: Option<ControlStoreConfig>,
}

/// `control_store:`: the control state in PostgreSQL, shared by several servers.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ControlStoreConfig {
    /// A `postgres://user@host:port/db` URL or a libpq `key=value` string. Connections are
    /// unencrypted: keep the database on loopback or a private network.
    pub postgres: String,
    /// A file holding the password (overrides one in `postgres`; relative to `data_dir`).
    #[serde(default)]
    pub password_file: Option<PathBuf>,
}

/// `vulndb_update:`: the server runs `rampart db update` on `<data_dir>/vulndb/vuln.db` at
/// start and then every `every`, and publishes a new bundle when the database changed.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct VulnDbUpdate {
    /// Time between updates (humantime, default `6h`).
    #[serde(default = "default_vulndb_every")]
    pub every: String,
    /// Base URL of the `<ecosystem>/all.zip` layout (default osv.dev's bucket).
    #[serde(default)]
    pub base_url: Option<String>,
    /// Ecosystems to fetch (default: every ecosystem the scanner inventories).
    #[serde(default)]
    pub ecosystems: Vec<String>,
    /// Require `<ecosystem>/all.zip.sha256` and check each zip against it.
    #[serde(default)]
    pub checksum: bool,
}

fn default_vulndb_every() -> String {
    "6h".into()
}

fn default_max_connections() -> usize {
    512
}
fn default_ingest_body_bytes() -> usize {
    rampart_ship::protocol::MAX_INGEST_BODY
}
fn default_ingest_lines() -> usize {
    100_000
}
fn default_ingest_memory_bytes() -> usize {
    256 << 20
}
fn default_request_body_bytes() -> usize {
    64 << 10
}
fn default_evidence_bundle_bytes() -> u64 {
    2 << 30
}
fn default_evidence_agent_bytes() -> u64 {
    16 << 30
}
fn default_handshake_timeout() -> String {
    "10s".into()
}
fn default_header_timeout() -> String {
    "10s".into()
}
fn default_idle_timeout() -> String {
    "60s".into()
}
fn default_body_timeout() -> String {
    "60s".into()
}

/// `limits:` what one client may make the server hold or wait for. The defaults bound a
/// server under hostile input to a few hundred MiB (docs/server.md, "Limits").
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// Open connections at most (default 512); more are closed as they are accepted.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// Largest ingest body, compressed and decompressed (default 64 MiB).
    #[serde(default = "default_ingest_body_bytes")]
    pub ingest_body_bytes: usize,
    /// Most lines (empty ones included) in one ingest batch (default 100 000; agents send at
    /// most `batch.max_records`, 5000 by default).
    #[serde(default = "default_ingest_lines")]
    pub ingest_lines: usize,
    /// Memory that ingest batches being read, decompressed and parsed may hold at once
    /// (default 256 MiB). A batch is weighed before its body is read (its `content-length`)
    /// and again once its decompressed size is known (twice that size: the text and the
    /// records parsed from it); a batch that cannot get its weight within `body_timeout` is
    /// answered 503 and retried by the agent. Ordinary batches (about 4 MiB of JSON) weigh
    /// little, so many are parsed at once; decompression bombs weigh 128 MiB each.
    #[serde(default = "default_ingest_memory_bytes")]
    pub ingest_memory_bytes: usize,
    /// Largest body of every other request (default 64 KiB).
    #[serde(default = "default_request_body_bytes")]
    pub request_body_bytes: usize,
    /// Time for the TLS handshake (default `10s`).
    #[serde(default = "default_handshake_timeout")]
    pub handshake_timeout: String,
    /// Time to receive a request's headers once it began (default `10s`).
    #[serde(default = "default_header_timeout")]
    pub header_timeout: String,
    /// A connection on which nothing is read or written this long is closed (default `60s`).
    #[serde(default = "default_idle_timeout")]
    pub idle_timeout: String,
    /// Time to receive a whole ingest body, or one request's part of a forensic bundle
    /// (default `60s`).
    #[serde(default = "default_body_timeout")]
    pub body_timeout: String,
    /// Largest forensic bundle an agent may upload (default 2 GiB). Bundles are written to
    /// disk as they arrive, never held in memory.
    #[serde(default = "default_evidence_bundle_bytes")]
    pub evidence_bundle_bytes: u64,
    /// Bytes of forensic bundles one agent may have stored (default 16 GiB): a compromised
    /// host cannot fill the server's disk.
    #[serde(default = "default_evidence_agent_bytes")]
    pub evidence_agent_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: default_max_connections(),
            ingest_body_bytes: default_ingest_body_bytes(),
            ingest_lines: default_ingest_lines(),
            ingest_memory_bytes: default_ingest_memory_bytes(),
            request_body_bytes: default_request_body_bytes(),
            handshake_timeout: default_handshake_timeout(),
            header_timeout: default_header_timeout(),
            idle_timeout: default_idle_timeout(),
            body_timeout: default_body_timeout(),
            evidence_bundle_bytes: default_evidence_bundle_bytes(),
            evidence_agent_bytes: default_evidence_agent_bytes(),
        }
    }
}

/// [`Limits`] with the durations parsed.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Timeouts {
    pub handshake: Duration,
    pub header: Duration,
    pub idle: Duration,
    pub body: Duration,
}

impl Limits {
    pub(crate) fn timeouts(&self) -> Result<Timeouts, String> {
        let d = |name: &str, v: &str| match humantime::parse_duration(v) {
            Ok(d) if !d.is_zero() => Ok(d),
            Ok(_) => Err(format!("limits.{name}: must be longer than zero")),
            Err(e) => Err(format!("limits.{name} {v:?}: {e}")),
        };
        Ok(Timeouts {
            handshake: d("handshake_timeout", &self.handshake_timeout)?,
            header: d("header_timeout", &self.header_timeout)?,
            idle: d("idle_timeout", &self.idle_timeout)?,
            body: d("body_timeout", &self.body_timeout)?,
        })
    }

    fn validate(&self) -> Result<(), String> {
        self.timeouts()?;
        for (name, v) in [
            ("max_connections", self.max_connections),
            ("ingest_body_bytes", self.ingest_body_bytes),
            ("ingest_lines", self.ingest_lines),
            ("ingest_memory_bytes", self.ingest_memory_bytes),
            ("request_body_bytes", self.request_body_bytes),
            ("evidence_bundle_bytes", self.evidence_bundle_bytes as usize),
            ("evidence_agent_bytes", self.evidence_agent_bytes as usize),
        ] {
            if v == 0 {
                return Err(format!("limits.{name}: must be at least 1"));
            }
        }
        Ok(())
    }
}

/// `fleet:` options of the fleet console. Durations are humantime strings (`90m`, `24h`).
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct FleetOptions {
    /// Fleet rule files (the rule language's YAML); empty: the shipped fleet rules.
    #[serde(default)]
    pub rules: Vec<PathBuf>,
    /// A directory of `*.yaml` regimes replacing the shipped regulations.
    #[serde(default)]
    pub regulations_dir: Option<PathBuf>,
    /// Roles the operator has (`nis2-entity`, `cn-ciio`, `hk-ci-operator`): regimes that apply
    /// only to such operators are added.
    #[serde(default)]
    pub roles: Vec<String>,
    /// An alert joins an incident whose last alert is at most this old (default `1h`).
    #[serde(default)]
    pub incident_window: Option<String>,
    /// Countries first seen within this long are the fleet's baseline (default `24h`).
    #[serde(default)]
    pub country_learning: Option<String>,
    /// How often deadlines are checked for near-due and overdue alerts (default `1m`).
    #[serde(default)]
    pub deadline_check_interval: Option<String>,
    /// Which alerts open an incident and which confirm one (docs/fleet.md, "Incident policy").
    #[serde(default)]
    pub incidents: IncidentOptions,
    /// Notifications for people: `webhook` (Slack, Mattermost, Teams) and `email` outputs,
    /// each with its `filter:`, for incidents opened, deadlines near due or overdue, "now
    /// vulnerable" and any other alert the server stores (docs/alerting.md).
    #[serde(default)]
    pub notifications: Vec<rampart_ship::OutputConfig>,
}

/// `fleet.incidents:`: which alerts open an incident (and start provisional deadlines) and
/// which confirm one (deadlines run). Priorities are Falco's names.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct IncidentOptions {
    /// Alerts at or above this priority open an incident (default `ERROR`).
    #[serde(default)]
    pub open_min_priority: Option<String>,
    /// Rules whose alerts open an incident whatever their priority.
    #[serde(default)]
    pub open_rules: Vec<String>,
    /// Tags whose alerts open an incident whatever their priority.
    #[serde(default)]
    pub open_tags: Vec<String>,
    /// Every fleet correlation alert opens an incident, whatever its priority (default false:
    /// the shipped cross-host rules are CRITICAL and open one by priority).
    #[serde(default)]
    pub correlations: Option<bool>,
    /// Alerts at or above this priority confirm their incident (default `CRITICAL`).
    #[serde(default)]
    pub confirm_min_priority: Option<String>,
    /// Rules whose alerts confirm their incident whatever their priority.
    #[serde(default)]
    pub confirm_rules: Vec<String>,
}

impl FleetOptions {
    /// The duration of option `name` (`value`), or `default`; the error names the option.
    pub fn duration(
        name: &str,
        value: Option<&str>,
        default: Duration,
    ) -> Result<Duration, InvalidSetting> {
        match value {
            None => Ok(default),
            Some(v) => match humantime::parse_duration(v) {
                Ok(d) if !d.is_zero() => Ok(d),
                Ok(_) => Err(InvalidSetting(format!(
                    "fleet.{name}: must be longer than zero"
                ))),
                Err(e) => Err(InvalidSetting(format!("fleet.{name} {v:?}: {e}"))),
            },
        }
    }

    fn validate(&self) -> Result<(), String> {
        for (name, p) in [
            ("open_min_priority", &self.incidents.open_min_priority),
            ("confirm_min_priority", &self.incidents.confirm_min_priority),
        ] {
            if let Some(p) = p {
                p.parse::<rampart_event::Priority>()
                    .map_err(|e| format!("fleet.incidents.{name}: {e}"))?;
            }
        }
        FleetOptions::duration(
            "incident_window",
            self.incident_window.as_deref(),
            Duration::ZERO,
        )?;
        FleetOptions::duration(
            "country_learning",
            self.country_learning.as_deref(),
            Duration::ZERO,
        )?;
        FleetOptions::duration(
            "deadline_check_interval",
            self.deadline_check_interval.as_deref(),
            Duration::ZERO,
        )?;
        for r in &self.roles {
            if r.is_empty()
                || !r
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            {
                return Err(format!(
                    "fleet.roles: {r:?} is not a role name (lower-case letters, digits, '-')"
                ));
            }
        }
        Ok(())
    }
}

/// `tls:` the server's own certificate.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// Names (DNS names or IP addresses) for the certificate the built-in CA issues to the
    /// server, in addition to `localhost`, `127.0.0.1`, `::1` and the host name. Agents
    /// authenticate the server through the built-in CA, so its certificate always comes from
    /// there.
    #[serde(default)]
    pub names: Vec<String>,
}

/// `store:` where records are kept.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum StoreConfig {
    /// SQLite in WAL mode: the embedded default.
    Sqlite {
        /// Database file (default `events.db`).
        #[serde(default)]
        path: Option<PathBuf>,
        /// `full` (default: a commit survives power loss before the agent is told) or
        /// `normal` (survives a crash of the server process; faster).
        #[serde(default)]
        synchronous: Option<String>,
        /// SQLite page cache of each of the store's two connections, MiB (default 64;
        /// `rampart up`: 8 unless set here, for a small VPS).
        #[serde(default)]
        cache_mib: Option<u32>,
    },
    /// ClickHouse over its HTTP interface.
    Clickhouse {
        /// `http://host:8123` (or https).
        url: String,
        /// Database (created when missing; default `rampart`).
        #[serde(default)]
        database: Option<String>,
        #[serde(default)]
        user: Option<String>,
        /// File holding the password.
        #[serde(default)]
        password_file: Option<PathBuf>,
    },
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig::Sqlite {
            path: None,
            synchronous: None,
            cache_mib: None,
        }
    }
}

/// What applies to records of one region.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RegionPolicy {
    /// Records older than this many days (by event time) are deleted; none: kept.
    #[serde(default)]
    pub retention_days: Option<u32>,
    /// Applied at ingest, before anything is stored.
    #[serde(default)]
    pub anonymise: Option<AnonymiseConfig>,
}

/// A region tag: lower-case letters, digits and `-`, 1 to 32 characters (`eu-de`, `us-ca`).
pub fn valid_region(r: &str) -> bool {
    !r.is_empty()
        && r.len() <= 32
        && r.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

impl ServerConfig {
    /// A configuration with every default and `data_dir` (for tests and `rampart up`).
    pub fn with_data_dir(data_dir: impl Into<PathBuf>) -> ServerConfig {
        ServerConfig {
            listen: default_listen(),
            data_dir: data_dir.into(),
            tls: TlsConfig::default(),
            store: StoreConfig::default(),
            regions: BTreeMap::new(),
            default_region: RegionPolicy::default(),
            pseudonym_key_file: None,
            retention_interval: default_retention_interval(),
            agent_cert_days: default_cert_days(),
            metrics_public: false,
            fleet: FleetOptions::default(),
            limits: Limits::default(),
            vulndb_update: None,
            control_store: None,
        }
    }

    /// Reads and checks `path`.
    pub fn load(path: &Path) -> Result<ServerConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let cfg: ServerConfig = serde_yaml::from_str(&text).map_err(|e| ConfigError::Parse {
            path: path.to_path_buf(),
            at: e
                .location()
                .map(|l| format!(":{}:{}", l.line(), l.column()))
                .unwrap_or_default(),
            message: e.to_string(),
        })?;
        cfg.validate().map_err(|e| ConfigError::Invalid {
            path: path.to_path_buf(),
            message: e.0,
        })?;
        Ok(cfg)
    }

    /// Checks what serde cannot: region names, durations, anonymisation policies, TLS files.
    pub fn validate(&self) -> Result<(), InvalidSetting> {
        self.check().map_err(InvalidSetting)
    }

    fn check(&self) -> Result<(), String> {
        if let Some(cs) = &self.control_store {
            // The message of a refused string names the mistake, never the string (it may
            // hold a password).
            cs.postgres.parse::<postgres::Config>().map_err(|e| {
                format!("control_store.postgres: not a PostgreSQL connection string: {e}")
            })?;
        }
        for (name, policy) in &self.regions {
            if !valid_region(name) {
                return Err(format!(
                    "regions: {name:?} is not a region tag (lower-case letters, digits, '-')"
                ));
            }
            if let Some(a) = &policy.anonymise {
                rampart_ship::anonymise::Anonymiser::new(a.clone(), &[0u8; 32])
                    .map_err(|e| format!("regions.{name}.{e}"))?;
            }
        }
        if let Some(a) = &self.default_region.anonymise {
            rampart_ship::anonymise::Anonymiser::new(a.clone(), &[0u8; 32])
                .map_err(|e| format!("default_region.{e}"))?;
        }
        self.retention_interval()?;
        if let Some(u) = &self.vulndb_update {
            let every = humantime::parse_duration(&u.every)
                .map_err(|e| format!("vulndb_update.every {:?}: {e}", u.every))?;
            if every < Duration::from_secs(60) {
                return Err(format!(
                    "vulndb_update.every {:?}: at least 1m (osv.dev's exports change a few times a day)",
                    u.every
                ));
            }
        }
        self.fleet.validate()?;
        self.limits.validate()?;
        if self.agent_cert_days == 0 {
            return Err("agent_cert_days: must be at least 1".into());
        }
        Ok(())
    }

    /// `retention_interval` as a duration.
    pub fn retention_interval(&self) -> Result<Duration, InvalidSetting> {
        humantime::parse_duration(&self.retention_interval).map_err(|e| {
            InvalidSetting(format!(
                "retention_interval {:?}: {e}",
                self.retention_interval
            ))
        })
    }

    /// `p` resolved against `data_dir`.
    pub fn resolve(&self, p: &Path) -> PathBuf {
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.data_dir.join(p)
        }
    }

    /// The policy for `region`.
    pub fn policy(&self, region: &str) -> &RegionPolicy {
        self.regions.get(region).unwrap_or(&self.default_region)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(yaml: &str) -> Result<ServerConfig, String> {
        let cfg: ServerConfig = serde_yaml::from_str(yaml).map_err(|e| e.to_string())?;
        cfg.validate()?;
        Ok(cfg)
    }

    #[test]
    fn example_parses_with_defaults() {
        let cfg = parse(
            "listen: 127.0.0.1:9443\nregions:\n  eu-de:\n    retention_days: 90\n    anonymise: {ips: truncate, users: true}\n",
        )
        .expect("valid");
        assert_eq!(cfg.policy("eu-de").retention_days, Some(90));
        assert_eq!(cfg.policy("xx"), &RegionPolicy::default());
        assert!(matches!(cfg.store, StoreConfig::Sqlite { .. }));
    }

    #[test]
    fn control_store_takes_a_postgres_url_or_nothing_else() {
        let cfg = parse("control_store:\n  postgres: postgres://rampart@db:5432/rampart\n")
            .expect("valid");
        assert_eq!(
            cfg.control_store.map(|c| c.postgres),
            Some("postgres://rampart@db:5432/rampart".to_string())
        );
        assert_eq!(
            parse("listen: 127.0.0.1:1\n").expect("valid").control_store,
            None
        );
        let err = parse("control_store:\n  postgres: postgres://rampart@db/x\n  passwd: x\n")
            .expect_err("unknown key");
        assert!(err.contains("passwd"), "{err}");
        let err = parse("control_store: {}\n").expect_err("no url");
        assert!(err.contains("postgres"), "{err}");
        let err = parse("control_store:\n  postgres: \"postgres://u:s3cret@db:notaport/x\"\n")
            .expect_err("bad port");
        assert!(err.contains("control_store.postgres"), "{err}");
        assert!(!err.contains("s3cret"), "{err}");
    }

    #[test]
    fn mistakes_are_named() {
        let err = parse("listen: 127.0.0.1:1\nstroe: {}\n").expect_err("unknown key");
        assert!(err.contains("stroe"), "{err}");
        let err = parse("regions: {EU: {}}\n").expect_err("bad region");
        assert!(err.contains("EU"), "{err}");
        let err = parse("regions: {eu: {anonymise: {ipv4_prefix: 33}}}\n").expect_err("prefix");
        assert!(err.contains("regions.eu") && err.contains("33"), "{err}");
        let err = parse("retention_interval: soon\n").expect_err("duration");
        assert!(err.contains("soon"), "{err}");
        let err = parse("fleet: {incident_window: later}\n").expect_err("fleet duration");
        assert!(err.contains("fleet.incident_window"), "{err}");
        let err = parse("fleet: {roles: [NIS2]}\n").expect_err("role");
        assert!(err.contains("fleet.roles") && err.contains("NIS2"), "{err}");
        let err = parse("fleet: {rulez: []}\n").expect_err("unknown fleet key");
        assert!(err.contains("rulez"), "{err}");
        let err = parse("vulndb_update: {every: often}\n").expect_err("update duration");
        assert!(err.contains("vulndb_update.every"), "{err}");
        let err = parse("vulndb_update: {every: 1s}\n").expect_err("too often");
        assert!(err.contains("at least 1m"), "{err}");
        let err = parse("vulndb_update: {evry: 6h}\n").expect_err("unknown key");
        assert!(err.contains("evry"), "{err}");
        let cfg = parse("vulndb_update: {ecosystems: [PyPI]}\n").expect("defaults");
        let u = cfg.vulndb_update.expect("set");
        assert_eq!((u.every.as_str(), u.ecosystems.len()), ("6h", 1));
    }

    #[test]
    fn fleet_options_parse() {
        let cfg = parse(
            "fleet:\n  roles: [nis2-entity]\n  rules: [/etc/rampart/fleet.yaml]\n  incident_window: 30m\n",
        )
        .expect("valid");
        assert_eq!(cfg.fleet.roles, vec!["nis2-entity".to_string()]);
        assert_eq!(
            cfg.fleet.rules,
            vec![PathBuf::from("/etc/rampart/fleet.yaml")]
        );
        let w = FleetOptions::duration(
            "incident_window",
            cfg.fleet.incident_window.as_deref(),
            Duration::from_secs(3600),
        );
        assert_eq!(w, Ok(Duration::from_secs(1800)));
    }
}
