//! The running server: state shared by the handlers, the TLS listener, background jobs, and
//! the handle returned to whoever embeds it.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime};

use rampart_ship::anonymise::Anonymiser;
use rampart_ship::metrics::PromWriter;
use rampart_ship::protocol::IngestResponse;
use rustls::pki_types::{CertificateDer, CertificateRevocationListDer, PrivateKeyDer};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::ca::{agent_identity, AgentIdentity, Ca, CaError};
use crate::config::{ServerConfig, StoreConfig};
use crate::control::{now_ns, Control, ControlError, Role};
use crate::ingest::{ParsedBatch, Sender};
use crate::sequence::{BatchPlace, Sequencer, Turn};
use crate::store::{
    day_of, day_string, ClickHouseConfig, ClickHouseStore, Committed, RetentionRecord, SqliteStore,
    Store, StoreError,
};

/// Errors of starting the server; each names what it concerns.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServerError {
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error("configuration: {0}")]
    Invalid(String),
    #[error(transparent)]
    Ca(#[from] CaError),
    #[error(transparent)]
    Control(#[from] ControlError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("TLS: {0}")]
    Tls(String),
    #[error("listening on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Server counters, exported at `/metrics`.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub ingest_batches: AtomicU64,
    pub ingest_records: AtomicU64,
    pub ingest_duplicates: AtomicU64,
    pub ingest_rejected: AtomicU64,
    pub ingest_errors: AtomicU64,
    pub ingest_refused: AtomicU64,
    pub store_insert_ns: AtomicU64,
    pub tls_handshake_failures: AtomicU64,
    pub connections_refused: AtomicU64,
    pub connections_idle_closed: AtomicU64,
    pub ingest_too_large: AtomicU64,
    pub ingest_identity_claims: AtomicU64,
    pub ingest_clock_clamped: AtomicU64,
    pub enrollments: AtomicU64,
    pub queries: AtomicU64,
    pub retention_rows: AtomicU64,
    pub evidence_stored: AtomicU64,
    pub evidence_duplicates: AtomicU64,
    pub evidence_bytes: AtomicU64,
    pub evidence_drained_bytes: AtomicU64,
    pub evidence_refused: AtomicU64,
    pub evidence_too_large: AtomicU64,
    pub evidence_hash_mismatch: AtomicU64,
}

/// How long a batch waits for the agent's batch before it (see [`Sequencer`]). A predecessor
/// that failed is retried by the agent after its backoff (200 ms first), well within this.
const BATCH_ORDER_WAIT: Duration = Duration::from_secs(10);
/// The same for an agent the server has committed nothing of since it started.
const BATCH_ORDER_FIRST_WAIT: Duration = Duration::from_secs(2);

/// What the handlers share.
pub(crate) struct App {
    pub cfg: ServerConfig,
    pub store: Arc<dyn Store>,
    pub control: Control,
    pub ca: Ca,
    anonymisers: BTreeMap<String, Anonymiser>,
    default_anonymiser: Option<Anonymiser>,
    identity: (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>),
    tls: RwLock<Arc<rustls::ServerConfig>>,
    crl: RwLock<Option<webpki::CertRevocationList<'static>>>,
    crl_mtime: Mutex<Option<SystemTime>>,
    pub counters: Counters,
    pub(crate) last_seen: Mutex<HashMap<String, u64>>,
    /// Commits each agent's batches in its queue order.
    pub(crate) sequencer: Sequencer,
    /// Host name and enrollment time of agents that sent batches (from the control database).
    enrollments: Mutex<HashMap<String, (String, u64)>>,
    /// Ingest accounting per agent, exported at `/metrics`.
    pub(crate) agent_stats: Mutex<BTreeMap<String, AgentStats>>,
    /// KiB that ingest batches being read, decompressed and parsed may hold
    /// (`limits.ingest_memory_bytes`).
    pub(crate) ingest_memory: Arc<tokio::sync::Semaphore>,
    /// Its size, KiB.
    pub(crate) ingest_memory_kib: u32,
    /// Open connections (`limits.max_connections`).
    pub(crate) connections: Arc<tokio::sync::Semaphore>,
    pub(crate) timeouts: crate::config::Timeouts,
    /// Forensic bundle uploads in progress.
    pub(crate) evidence_uploads: crate::evidence::Uploads,
    /// This process's name in fleet job leases: host name and a random suffix.
    pub(crate) instance: String,
    /// True while this server holds the fleet job lease (always, with a control store of
    /// one server).
    fleet_leader: std::sync::atomic::AtomicBool,
    /// The revocations last written to `crl.pem` from a shared control store.
    shared_revoked: Mutex<Option<Revoked>>,
}

/// Revoked certificate serials and when they were revoked.
type Revoked = Vec<(Vec<u8>, SystemTime)>;

/// The fleet job lease (see [`Control::lease`]): its name, how long it lasts unrenewed, and how
/// often the holder renews it. A server that dies hands the fleet jobs over within `FLEET_LEASE_TTL`.
const FLEET_LEASE: &str = "fleet-jobs";
const FLEET_LEASE_TTL: Duration = Duration::from_secs(10);
const FLEET_LEASE_RENEW: Duration = Duration::from_secs(2);
/// How often a server of a fleet reads revocations from the shared control store.
const REVOCATION_POLL: Duration = Duration::from_secs(1);

/// A server's side of the fleet job lease (see [`Control::lease`]), for the once-per-fleet
/// jobs started beside the server: whether it holds the lease now, and small values (a job's
/// position) that only the holder can save. Its calls block on the control store: call them
/// from `spawn_blocking`.
#[derive(Clone)]
pub struct FleetLease {
    app: Arc<App>,
}

impl std::fmt::Debug for FleetLease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FleetLease")
            .field("instance", &self.app.instance)
            .field("held", &self.held())
            .finish()
    }
}

impl FleetLease {
    /// True while this server holds the lease (always with a control store of one server).
    pub fn held(&self) -> bool {
        self.app.leads_fleet()
    }

    /// True when the control store is shared by several servers (PostgreSQL).
    pub fn is_shared(&self) -> bool {
        self.app.control.is_shared()
    }

    /// Stores documents of `kind` by id in the control store (shared by the fleet with
    /// PostgreSQL): the fleet correlator's incidents.
    pub fn put_docs(&self, kind: &str, docs: Vec<(String, String)>) -> Result<(), ServerError> {
        Ok(self.app.control.put_docs(kind, docs)?)
    }

    /// Stores document `id` of `kind` unless one is stored (one statement): true when this
    /// call stored it (see [`Control::claim_doc`]).
    pub fn claim(&self, kind: &str, id: &str, json: &str) -> Result<bool, ServerError> {
        Ok(self.app.control.claim_doc(kind, id, json)?)
    }

    /// Every document of `kind`, as (id, JSON).
    pub fn docs(&self, kind: &str) -> Result<Vec<(String, String)>, ServerError> {
        Ok(self.app.control.docs(kind)?)
    }

    /// The value last saved under `key` by a holder of the lease.
    pub fn value(&self, key: &str) -> Result<Option<String>, ServerError> {
        Ok(self.app.control.leased_value(key)?)
    }

    /// Saves `value` under `key` if this server still holds the lease (checked by the control
    /// store in the same statement); false when it does not.
    pub fn save(&self, key: &str, value: &str) -> Result<bool, ServerError> {
        if !self.app.control.is_shared() {
            // The only server holds the lease; its row is written here, where it is needed.
            self.app
                .control
                .lease(FLEET_LEASE, &self.app.instance, FLEET_LEASE_TTL)?;
        }
        Ok(self
            .app
            .control
            .put_leased(key, value, FLEET_LEASE, &self.app.instance)?)
    }
}

/// One number of [`AgentStats`].
type StatOf = fn(&AgentStats) -> u64;

/// What one agent sent, for `/metrics`.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct AgentStats {
    pub batches: u64,
    pub records: u64,
    /// Decompressed bytes.
    pub bytes: u64,
    pub rejected: u64,
    pub refused: u64,
    pub identity_claims: u64,
    pub clock_clamped: u64,
}

impl App {
    /// The anonymiser for records of `region`, if its policy has one.
    pub fn anonymiser(&self, region: &str) -> Option<&Anonymiser> {
        match self.anonymisers.get(region) {
            Some(a) => Some(a),
            None if self.cfg.regions.contains_key(region) => None,
            None => self.default_anonymiser.as_ref(),
        }
    }

    /// True when the CRL lists this certificate serial.
    pub fn is_revoked(&self, serial: &[u8]) -> bool {
        let crl = self.crl.read().unwrap_or_else(|p| p.into_inner());
        let Some(crl) = crl.as_ref() else {
            return false;
        };
        // DER serials carry a leading zero byte when the high bit is set.
        let mut with_zero = vec![0u8];
        with_zero.extend_from_slice(serial);
        [serial, &with_zero[..]]
            .iter()
            .any(|s| matches!(crl.find_serial(s), Ok(Some(_))))
    }

    pub fn tls_config(&self) -> Arc<rustls::ServerConfig> {
        self.tls.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Commits a parsed batch of `sender` to the store, after the batch before it (`place`,
    /// when the agent sent one) is committed, and counts it: the one commit path of the ingest
    /// API and the in-process output. `unsent`: the agent says no record of the batch was sent
    /// before ([`Store::insert_with`]).
    pub async fn commit_batch(
        &self,
        sender: &Sender,
        mut parsed: ParsedBatch,
        place: Option<BatchPlace>,
        unsent: bool,
    ) -> Result<IngestResponse, StoreError> {
        let c = &self.counters;
        if parsed.identity_claims > 0 {
            c.ingest_identity_claims
                .fetch_add(parsed.identity_claims, Ordering::Relaxed);
            tracing::warn!(agent = %sender.agent_id, host = ?sender.hostname,
                claimed = ?parsed.claimed_hosts, records = parsed.identity_claims,
                "agent claims another host's identity: records stored under its enrolled host");
            if let Some(alert) = crate::ingest::identity_claim_alert(sender, &parsed, now_ns()) {
                parsed.rows.push(alert);
            }
        }
        c.ingest_clock_clamped
            .fetch_add(parsed.clock_clamped, Ordering::Relaxed);
        let batch_stats = AgentStats {
            batches: 1,
            records: parsed.rows.len() as u64,
            bytes: 0,
            rejected: parsed.rejected.len() as u64,
            refused: 0,
            identity_claims: parsed.identity_claims,
            clock_clamped: parsed.clock_clamped,
        };
        if let Some(p) = place {
            if self.sequencer.wait_turn(&sender.agent_id, p).await == Turn::OutOfOrder {
                tracing::warn!(agent = %sender.agent_id, after = ?p.after, last = p.last,
                    "the agent's previous batch did not come: committing this one out of order");
            }
        }
        let started = std::time::Instant::now();
        // The agent's next batch may go once this one is committed, while it is made durable.
        let committed: Committed<'_> = Box::new(move |_| {
            if let Some(p) = place {
                self.sequencer.committed(&sender.agent_id, p);
            }
        });
        let outcome = self
            .store
            .insert_with(&parsed.rows, unsent, committed)
            .await
            .inspect_err(|_| {
                self.counters.ingest_errors.fetch_add(1, Ordering::Relaxed);
            })?;
        c.store_insert_ns
            .fetch_add(started.elapsed().as_nanos() as u64, Ordering::Relaxed);
        c.ingest_batches.fetch_add(1, Ordering::Relaxed);
        c.ingest_records
            .fetch_add(outcome.inserted, Ordering::Relaxed);
        let duplicates = outcome.duplicates + parsed.duplicates_in_batch;
        c.ingest_duplicates.fetch_add(duplicates, Ordering::Relaxed);
        c.ingest_rejected
            .fetch_add(parsed.rejected.len() as u64, Ordering::Relaxed);
        self.account(&sender.agent_id, batch_stats);
        Ok(IngestResponse {
            accepted: outcome.inserted,
            duplicates,
            rejected: parsed.rejected,
        })
    }

    /// Adds `add` to `agent_id`'s ingest accounting.
    pub(crate) fn account(&self, agent_id: &str, add: AgentStats) {
        let mut m = self.agent_stats.lock().unwrap_or_else(|p| p.into_inner());
        let s = match m.get_mut(agent_id) {
            Some(s) => s,
            None => m.entry(agent_id.to_string()).or_default(),
        };
        s.batches += add.batches;
        s.records += add.records;
        s.bytes += add.bytes;
        s.rejected += add.rejected;
        s.refused += add.refused;
        s.identity_claims += add.identity_claims;
        s.clock_clamped += add.clock_clamped;
    }

    /// The sender of a batch from `agent`'s certificate: its host name and enrollment time
    /// as the control database recorded them. `None` for an agent the database does not know.
    pub(crate) fn sender_for(&self, agent: &AgentIdentity) -> Result<Option<Sender>, ControlError> {
        let known = self
            .enrollments
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&agent.agent_id)
            .cloned();
        let (hostname, enrolled_ns) = match known {
            Some(k) => k,
            None => match self.control.agent_enrollment(&agent.agent_id)? {
                Some(k) => {
                    self.enrollments
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .insert(agent.agent_id.clone(), k.clone());
                    k
                }
                None => return Ok(None),
            },
        };
        Ok(Some(Sender {
            agent_id: agent.agent_id.clone(),
            region: agent.region.clone(),
            hostname: Some(hostname),
            enrolled_ns,
        }))
    }

    pub fn saw_agent(&self, agent_id: &str) {
        self.last_seen
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(agent_id.to_string(), now_ns());
    }

    /// Re-reads `crl.pem` and rebuilds the TLS configuration, so that revoked certificates
    /// are refused from the next handshake on.
    pub fn reload_crl(&self) -> Result<(), ServerError> {
        let path = self.ca.dir().join("crl.pem");
        let mtime = std::fs::metadata(&path).and_then(|m| m.modified()).ok();
        let der = Ca::read_crl(self.ca.dir())?;
        let owned = webpki::OwnedCertRevocationList::from_der(der.as_ref())
            .map_err(|e| ServerError::Tls(format!("{}: {e:?}", path.display())))?;
        let cfg = build_tls(&self.ca, &self.identity, der)?;
        *self.crl.write().unwrap_or_else(|p| p.into_inner()) = Some(owned.into());
        *self.tls.write().unwrap_or_else(|p| p.into_inner()) = cfg;
        *self.crl_mtime.lock().unwrap_or_else(|p| p.into_inner()) = mtime;
        Ok(())
    }

    /// Reloads the CRL when another process (the offline CLI, another server) rewrote it.
    fn reload_crl_if_changed(&self) {
        let path = self.ca.dir().join("crl.pem");
        let mtime = std::fs::metadata(&path).and_then(|m| m.modified()).ok();
        let known = *self.crl_mtime.lock().unwrap_or_else(|p| p.into_inner());
        if mtime.is_some() && mtime != known {
            match self.reload_crl() {
                Ok(()) => tracing::info!(crl = %path.display(), "revocation list reloaded"),
                Err(e) => tracing::error!("reloading the revocation list: {e}"),
            }
        }
    }

    /// True when this server runs the once-per-fleet jobs (see [`ServerContext::leads_fleet`]).
    pub fn leads_fleet(&self) -> bool {
        self.fleet_leader.load(Ordering::Relaxed)
    }

    /// With a shared control store: rewrites `crl.pem` and reloads TLS when the store's
    /// revocations differ from the last ones written (a revocation made on another server).
    fn sync_shared_revocations(&self) -> Result<(), ServerError> {
        let revoked = self.control.revoked_serials()?;
        let mut known = self
            .shared_revoked
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if known.as_ref() == Some(&revoked) {
            return Ok(());
        }
        self.ca
            .write_crl(&revoked, self.control.next_crl_number()?)?;
        self.reload_crl()?;
        if known.is_some() {
            tracing::info!(
                revoked = revoked.len(),
                "revocations from the shared control store applied"
            );
        }
        *known = Some(revoked);
        Ok(())
    }

    /// Takes or renews the fleet job lease; returns whether this server holds it.
    fn renew_fleet_lease(&self) -> bool {
        let held = match self
            .control
            .lease(FLEET_LEASE, &self.instance, FLEET_LEASE_TTL)
        {
            Ok(h) => h,
            Err(e) => {
                // Unable to renew: act as if the lease were lost rather than risk two
                // servers running the fleet jobs.
                tracing::warn!("renewing the fleet job lease: {e}");
                false
            }
        };
        let was = self.fleet_leader.swap(held, Ordering::Relaxed);
        if held != was {
            tracing::info!(instance = %self.instance, leader = held, "fleet job lease changed hands");
        }
        held
    }

    /// Revokes an agent: control database, new CRL, new TLS configuration.
    pub fn revoke_agent(&self, agent_id: &str) -> Result<bool, ServerError> {
        let changed = revoke_agent_offline(&self.control, &self.ca, agent_id)?;
        if changed {
            self.reload_crl()?;
        }
        Ok(changed)
    }

    /// One run of the retention job over every region with a retention period.
    pub async fn run_retention(&self) -> Result<Vec<RetentionRecord>, StoreError> {
        let now = now_ns();
        let today = day_of(now);
        let mut done = Vec::new();
        for region in self.store.regions().await? {
            let Some(days) = self.cfg.policy(&region).retention_days else {
                continue;
            };
            let cutoff = today.saturating_sub(days);
            let out = self.store.delete_before(&region, cutoff).await?;
            let rec = RetentionRecord {
                run_ns: now,
                region: region.clone(),
                cutoff_day: day_string(cutoff),
                rows: out.rows,
                partitions: out.partitions,
            };
            self.store.record_retention(&rec).await?;
            self.counters
                .retention_rows
                .fetch_add(rec.rows, Ordering::Relaxed);
            if rec.rows > 0 {
                tracing::info!(region = %region, rows = rec.rows, cutoff = %rec.cutoff_day, "retention: deleted expired records");
            }
            done.push(rec);
        }
        Ok(done)
    }

    pub fn metrics_text(&self) -> String {
        let c = &self.counters;
        let mut w = PromWriter::new();
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        w.counter(
            "rampart_server_ingest_batches_total",
            "Ingest batches stored.",
            &[],
            g(&c.ingest_batches),
        );
        w.counter(
            "rampart_server_ingest_records_total",
            "Records stored.",
            &[],
            g(&c.ingest_records),
        );
        w.counter(
            "rampart_server_ingest_duplicates_total",
            "Records received again and not stored twice.",
            &[],
            g(&c.ingest_duplicates),
        );
        w.counter(
            "rampart_server_ingest_rejected_total",
            "Malformed records refused.",
            &[],
            g(&c.ingest_rejected),
        );
        w.counter(
            "rampart_server_ingest_errors_total",
            "Batches that failed (store errors, bad bodies).",
            &[],
            g(&c.ingest_errors),
        );
        w.counter(
            "rampart_server_ingest_refused_total",
            "Ingest requests without a valid agent certificate.",
            &[],
            g(&c.ingest_refused),
        );
        w.counter(
            "rampart_server_store_insert_seconds_total",
            "Time spent committing batches.",
            &[],
            g(&c.store_insert_ns) / 1_000_000_000,
        );
        w.counter(
            "rampart_server_ingest_out_of_order_total",
            "Batches committed before the agent's previous batch, which did not come within the wait.",
            &[],
            self.sequencer.out_of_order(),
        );
        w.counter(
            "rampart_server_tls_handshake_failures_total",
            "TLS handshakes refused (wrong CA, expired or revoked certificate, ...).",
            &[],
            g(&c.tls_handshake_failures),
        );
        w.counter(
            "rampart_server_connections_refused_total",
            "Connections closed as accepted because limits.max_connections were open.",
            &[],
            g(&c.connections_refused),
        );
        w.counter(
            "rampart_server_connections_idle_closed_total",
            "Connections closed after limits.idle_timeout without traffic, or a body slower than limits.body_timeout.",
            &[],
            g(&c.connections_idle_closed),
        );
        w.counter(
            "rampart_server_ingest_too_large_total",
            "Ingest batches refused for their size or line count (limits.ingest_body_bytes, limits.ingest_lines).",
            &[],
            g(&c.ingest_too_large),
        );
        w.counter(
            "rampart_server_ingest_identity_claims_total",
            "Records naming another host than their agent's enrolled one (stored under the enrolled host).",
            &[],
            g(&c.ingest_identity_claims),
        );
        w.counter(
            "rampart_server_ingest_clock_clamped_total",
            "Records whose time_ns was outside [enrollment, now + 5 min] and was clamped.",
            &[],
            g(&c.ingest_clock_clamped),
        );
        for (name, help, v) in [
            (
                "rampart_server_evidence_stored_total",
                "Forensic bundles stored (hash checked).",
                &c.evidence_stored,
            ),
            (
                "rampart_server_evidence_duplicates_total",
                "Uploads of a bundle the agent had stored before (answered with the first receipt).",
                &c.evidence_duplicates,
            ),
            (
                "rampart_server_evidence_bytes_total",
                "Bytes of forensic bundles received.",
                &c.evidence_bytes,
            ),
            (
                "rampart_server_evidence_drained_bytes_total",
                "Bytes of evidence request bodies read and discarded before an answer that did not store them (replays, 409, 423).",
                &c.evidence_drained_bytes,
            ),
            (
                "rampart_server_evidence_refused_total",
                "Evidence uploads without a valid agent certificate.",
                &c.evidence_refused,
            ),
            (
                "rampart_server_evidence_too_large_total",
                "Evidence uploads refused for their size (limits.evidence_bundle_bytes, limits.evidence_agent_bytes).",
                &c.evidence_too_large,
            ),
            (
                "rampart_server_evidence_hash_mismatch_total",
                "Uploaded bundles whose bytes did not hash to their name (discarded).",
                &c.evidence_hash_mismatch,
            ),
        ] {
            w.counter(name, help, &[], g(v));
        }
        w.gauge(
            "rampart_server_connections_open",
            "Open connections.",
            &[],
            (self.cfg.limits.max_connections - self.connections.available_permits()) as f64,
        );
        {
            let stats = self.agent_stats.lock().unwrap_or_else(|p| p.into_inner());
            let per_agent: [(&str, &str, StatOf); 7] = [
                (
                    "rampart_server_agent_ingest_batches_total",
                    "Batches stored, per agent.",
                    |s| s.batches,
                ),
                (
                    "rampart_server_agent_ingest_records_total",
                    "Records parsed for storing (duplicates included), per agent.",
                    |s| s.records,
                ),
                (
                    "rampart_server_agent_ingest_bytes_total",
                    "Decompressed ingest bytes received, per agent.",
                    |s| s.bytes,
                ),
                (
                    "rampart_server_agent_ingest_rejected_total",
                    "Malformed records refused, per agent.",
                    |s| s.rejected,
                ),
                (
                    "rampart_server_agent_ingest_refused_total",
                    "Batches refused whole (size, line count, bad body), per agent.",
                    |s| s.refused,
                ),
                (
                    "rampart_server_agent_identity_claims_total",
                    "Records naming another host, per agent.",
                    |s| s.identity_claims,
                ),
                (
                    "rampart_server_agent_clock_clamped_total",
                    "Records whose time_ns was clamped, per agent.",
                    |s| s.clock_clamped,
                ),
            ];
            for (name, help, get) in per_agent {
                for (agent, st) in stats.iter() {
                    w.counter(name, help, &[("agent", agent.as_str())], get(st));
                }
            }
        }
        w.counter(
            "rampart_server_enrollments_total",
            "Agents enrolled.",
            &[],
            g(&c.enrollments),
        );
        w.counter(
            "rampart_server_queries_total",
            "Query API requests.",
            &[],
            g(&c.queries),
        );
        w.counter(
            "rampart_server_retention_deleted_rows_total",
            "Records deleted by retention.",
            &[],
            g(&c.retention_rows),
        );
        w.gauge(
            "rampart_server_fleet_leader",
            "1 while this server runs the once-per-fleet jobs (holds the fleet job lease).",
            &[("instance", self.instance.as_str())],
            if self.leads_fleet() { 1.0 } else { 0.0 },
        );
        let mut text = w.finish();
        text.push_str(&self.store.metrics_text());
        text
    }
}

/// Revokes `agent_id` in the control database and rewrites `crl.pem` (used by the server and
/// by `rampart server agents revoke` while the server runs elsewhere).
pub fn revoke_agent_offline(
    control: &Control,
    ca: &Ca,
    agent_id: &str,
) -> Result<bool, ServerError> {
    if !control.revoke_agent(agent_id)? {
        return Ok(false);
    }
    let revoked = control.revoked_serials()?;
    ca.write_crl(&revoked, control.next_crl_number()?)?;
    Ok(true)
}

pub(crate) fn build_tls(
    ca: &Ca,
    identity: &(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>),
    crl: CertificateRevocationListDer<'static>,
) -> Result<Arc<rustls::ServerConfig>, ServerError> {
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(ca.cert().clone())
        .map_err(|e| ServerError::Tls(format!("CA certificate: {e}")))?;
    let provider = rampart_ship::tls::provider();
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    )
    .with_crls(vec![crl])
    .only_check_end_entity_revocation()
    .allow_unauthenticated()
    .build()
    .map_err(|e| ServerError::Tls(format!("client verifier: {e}")))?;
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ServerError::Tls(e.to_string()))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(identity.0.clone(), identity.1.clone_key())
        .map_err(|e| ServerError::Tls(format!("server certificate: {e}")))?;
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}

/// The names the server certificate covers.
pub(crate) fn server_names(cfg: &ServerConfig) -> Vec<String> {
    let mut names: Vec<String> = vec!["localhost".into(), "127.0.0.1".into(), "::1".into()];
    let h = rampart_event::hostname();
    if !names.contains(&h) && h.is_ascii() && !h.contains(char::is_whitespace) {
        names.push(h);
    }
    for n in &cfg.tls.names {
        if !names.contains(n) {
            names.push(n.clone());
        }
    }
    names
}

fn read_or_create_key(path: &Path) -> Result<Vec<u8>, ServerError> {
    if !path.exists() {
        use std::io::Write;
        let key = crate::control::random_hex(32);
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .map_err(|source| ServerError::Io {
                path: path.to_path_buf(),
                source,
            })?;
        f.write_all(key.as_bytes())
            .and_then(|()| f.sync_all())
            .map_err(|source| ServerError::Io {
                path: path.to_path_buf(),
                source,
            })?;
    }
    rampart_ship::read_key_file(path).map_err(|e| ServerError::Invalid(e.to_string()))
}

/// Opens the configured store.
pub async fn open_store(cfg: &ServerConfig) -> Result<Arc<dyn Store>, ServerError> {
    Ok(match &cfg.store {
        StoreConfig::Sqlite {
            path,
            synchronous,
            cache_mib,
        } => {
            let p = cfg.resolve(path.as_deref().unwrap_or(Path::new("events.db")));
            let full = match synchronous.as_deref() {
                None | Some("full") => true,
                Some("normal") => false,
                Some(other) => {
                    return Err(ServerError::Invalid(format!(
                        "store.synchronous {other:?}: expected full or normal"
                    )))
                }
            };
            let store = SqliteStore::open(&p, full)?;
            if let Some(mib) = *cache_mib {
                if !(1..=65_536).contains(&mib) {
                    return Err(ServerError::Invalid(format!(
                        "store.cache_mib {mib}: expected 1 to 65536"
                    )));
                }
                store.set_cache_mib(mib)?;
            }
            Arc::new(store)
        }
        StoreConfig::Clickhouse {
            url,
            database,
            user,
            password_file,
        } => {
            let password = match password_file {
                Some(p) => {
                    let p = cfg.resolve(p);
                    Some(
                        std::fs::read_to_string(&p)
                            .map_err(|source| ServerError::Io { path: p, source })?
                            .trim()
                            .to_string(),
                    )
                }
                None => None,
            };
            Arc::new(
                ClickHouseStore::open(ClickHouseConfig {
                    url: url.clone(),
                    database: database.clone().unwrap_or_else(|| "rampart".into()),
                    user: user.clone(),
                    password,
                })
                .await?,
            )
        }
    })
}

/// Opens the CA and control database of `cfg` (for the offline CLI commands).
pub fn open_control(cfg: &ServerConfig) -> Result<(Control, Ca), ServerError> {
    // CA key, tokens, databases: the data directory is 0700 whatever the umask.
    crate::fsmode::secret_dir(&cfg.data_dir).map_err(|source| ServerError::Io {
        path: cfg.data_dir.clone(),
        source,
    })?;
    let ca_dir = cfg.data_dir.join("ca");
    let control = match &cfg.control_store {
        None => Control::open(&cfg.data_dir.join("control.db"))?,
        Some(cs) => {
            let password = match &cs.password_file {
                Some(p) => {
                    let p = cfg.resolve(p);
                    Some(
                        std::fs::read_to_string(&p)
                            .map_err(|source| ServerError::Io { path: p, source })?
                            .trim()
                            .to_string(),
                    )
                }
                None => None,
            };
            Control::open_postgres(&cs.postgres, password.as_deref())?
        }
    };
    // A shared control store holds the fleet's one CA: the first server to start stores its
    // own, every other adopts it (docs/server.md, "Scale-out").
    let dir = ca_dir.clone();
    let fleet_ca = control.fleet_ca(move || {
        Ca::load_or_create(&dir)
            .and_then(|_| Ca::files(&dir))
            .map_err(|e| e.to_string())
    })?;
    if let Some(files) = fleet_ca {
        Ca::adopt(&ca_dir, &files)?;
    }
    let ca = Ca::load_or_create(&ca_dir)?;
    Ok((control, ca))
}

/// What extra routes (the dashboard of `rampart-console`) see of the running server.
#[derive(Clone)]
pub struct ServerContext {
    app: Arc<App>,
}

impl std::fmt::Debug for ServerContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerContext").finish_non_exhaustive()
    }
}

impl ServerContext {
    /// The store (as wrapped by the store layer).
    pub fn store(&self) -> Arc<dyn Store> {
        self.app.store.clone()
    }

    /// The control database: agents, users and sessions.
    pub fn control(&self) -> &Control {
        &self.app.control
    }

    /// True while this server should run the once-per-fleet jobs: it holds the fleet job lease
    /// of a shared control store, or it is the only server. Retention runs only then; the
    /// fleet correlator's loops (rampart-fleet) do not consult it yet, since their state is
    /// still per server.
    pub fn leads_fleet(&self) -> bool {
        self.app.leads_fleet()
    }

    /// The configuration the server runs with.
    pub fn config(&self) -> &ServerConfig {
        &self.app.cfg
    }

    /// Stored forensic bundles matching `f` (newest first).
    pub fn evidence(
        &self,
        f: &crate::control::EvidenceFilter,
    ) -> Result<Vec<rampart_ship::protocol::EvidenceReceipt>, ControlError> {
        self.app.control.evidence(f)
    }

    /// Agents heard from since the last flush to the control database (every 10 s), with
    /// when: newer than [`Control::agents`]' `last_seen_ns`.
    pub fn recent_agents(&self) -> HashMap<String, u64> {
        self.app
            .last_seen
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

/// Builds extra routes once the server's state exists; they are merged into the HTTPS router
/// (paths must not overlap the API's) and see [`crate::ConnInfo`] as an extension.
pub type RouteLayer = Box<dyn FnOnce(ServerContext) -> axum::Router + Send>;

/// What an embedder adds to the server: a store layer and extra routes.
#[derive(Default)]
pub struct ServerExtras {
    /// Wraps the opened store (see [`StoreLayer`]).
    pub store_layer: Option<StoreLayer>,
    /// Extra routes (see [`RouteLayer`]).
    pub routes: Vec<RouteLayer>,
}

impl std::fmt::Debug for ServerExtras {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerExtras")
            .field("store_layer", &self.store_layer.is_some())
            .field("routes", &self.routes.len())
            .finish()
    }
}

/// A running server. Dropping it does not stop the server; call [`shutdown`](Self::shutdown).
pub struct ServerHandle {
    pub(crate) app: Arc<App>,
    addr: SocketAddr,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl std::fmt::Debug for ServerHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerHandle")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl ServerHandle {
    /// The address the server listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// `https://127.0.0.1:<port>` (or the configured address): the URL for agents and the CLI
    /// on this machine.
    pub fn url(&self) -> String {
        let ip = if self.addr.ip().is_unspecified() {
            std::net::IpAddr::from([127, 0, 0, 1])
        } else {
            self.addr.ip()
        };
        format!("https://{}", SocketAddr::new(ip, self.addr.port()))
    }

    /// SHA-256 of the CA certificate.
    pub fn ca_fingerprint(&self) -> [u8; 32] {
        self.app.ca.fingerprint()
    }

    /// The CA certificate, PEM.
    pub fn ca_pem(&self) -> &str {
        self.app.ca.cert_pem()
    }

    /// The store.
    pub fn store(&self) -> Arc<dyn Store> {
        self.app.store.clone()
    }

    /// What extra routes see (store, control database, configuration).
    pub fn context(&self) -> ServerContext {
        ServerContext {
            app: self.app.clone(),
        }
    }

    /// Creates an enrollment token (`rmp1....`) for `region`, usable `uses` times within `ttl`.
    pub fn create_enroll_token(
        &self,
        region: &str,
        uses: u32,
        ttl: Duration,
    ) -> Result<String, ServerError> {
        let secret = self
            .app
            .control
            .create_enroll_token(region, uses, ttl, "")?;
        Ok(rampart_ship::protocol::EnrollToken {
            secret,
            ca_sha256: self.app.ca.fingerprint(),
        }
        .to_string())
    }

    /// Creates an API token with `role`.
    pub fn create_api_token(&self, name: &str, role: Role) -> Result<String, ServerError> {
        Ok(self.app.control.create_api_token(name, role)?)
    }

    /// Revokes an agent now.
    pub fn revoke_agent(&self, agent_id: &str) -> Result<bool, ServerError> {
        self.app.revoke_agent(agent_id)
    }

    /// Runs the retention job now.
    pub async fn run_retention(&self) -> Result<Vec<RetentionRecord>, StoreError> {
        self.app.run_retention().await
    }

    /// An [`rampart_ship::Output`] that stores records straight into this server's store, as
    /// agent `agent_id` of `region` (the region's policy applies): the agent's path in
    /// `rampart up`, without TLS or HTTP.
    pub fn local_output(
        &self,
        name: &str,
        agent_id: &str,
        region: &str,
    ) -> crate::local::LocalOutput {
        crate::local::LocalOutput::new(self.app.clone(), name, agent_id, region)
    }

    /// The server's Prometheus metrics text.
    pub fn metrics_text(&self) -> String {
        self.app.metrics_text()
    }

    /// True while this server runs the once-per-fleet jobs (see [`ServerContext::leads_fleet`]).
    pub fn leads_fleet(&self) -> bool {
        self.app.leads_fleet()
    }

    /// This server's side of the fleet job lease, for jobs run beside it (the fleet
    /// correlator).
    pub fn fleet_lease(&self) -> FleetLease {
        FleetLease {
            app: self.app.clone(),
        }
    }

    /// Stops accepting connections and background jobs, flushes agent last-seen times, and
    /// hands the fleet job lease over at once.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        for t in self.tasks {
            let _ = t.await;
        }
        flush_last_seen(&self.app);
        if self.app.control.is_shared() && self.app.leads_fleet() {
            if let Err(e) = self.app.control.release(FLEET_LEASE, &self.app.instance) {
                tracing::warn!("releasing the fleet job lease: {e}");
            }
        }
    }
}

fn flush_last_seen(app: &App) {
    let seen: Vec<(String, u64)> = app
        .last_seen
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .drain()
        .collect();
    if !seen.is_empty() {
        if let Err(e) = app.control.touch_agents(&seen) {
            tracing::warn!("recording agent last-seen times: {e}");
        }
    }
}

/// Starts the server described by `cfg` in the current tokio runtime: opens the data
/// directory (creating the CA, control database, pseudonym key and, on first start, an admin
/// API token in `<data_dir>/admin.token`), the store, binds `cfg.listen`, and spawns the
/// listener, the retention job and housekeeping. Returns once it accepts connections.
pub async fn start(cfg: ServerConfig) -> Result<ServerHandle, ServerError> {
    start_extras(cfg, ServerExtras::default()).await
}

/// Wraps the store a server opens, e.g. `rampart_fleet::FleetStore` (cross-host correlation and
/// incidents see every committed record).
pub type StoreLayer = Box<dyn FnOnce(Arc<dyn Store>) -> Arc<dyn Store> + Send>;

/// As [`start`], with the opened store passed through `layer` before anything uses it.
pub async fn start_with(cfg: ServerConfig, layer: StoreLayer) -> Result<ServerHandle, ServerError> {
    start_extras(
        cfg,
        ServerExtras {
            store_layer: Some(layer),
            routes: Vec::new(),
        },
    )
    .await
}

/// Writes `text` to `path`, mode 0600.
fn write_secret(path: &Path, text: &str) -> Result<(), ServerError> {
    use std::io::Write;
    let io = |source| ServerError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(io)?;
    f.write_all(text.as_bytes()).map_err(io)
}

/// As [`start_with`], with everything an embedder may add (store layer, extra routes). On
/// first start (no dashboard user yet) it also creates user `admin` with a random password
/// written to `<data_dir>/admin.password` (0600).
pub async fn start_extras(
    cfg: ServerConfig,
    extras: ServerExtras,
) -> Result<ServerHandle, ServerError> {
    cfg.validate().map_err(|e| ServerError::Invalid(e.0))?;
    if cfg.control_store.is_some() && matches!(cfg.store, StoreConfig::Sqlite { .. }) {
        tracing::warn!(
            "control_store is shared but store is this server's SQLite: records an agent ships here are not seen by the other servers (use store: clickhouse; docs/server.md, Scale-out)"
        );
    }
    let (control, ca) = open_control(&cfg)?;
    if !control.has_admin_token()? {
        let token = control.create_api_token(
            &format!("admin-{}", crate::control::random_hex(3)),
            Role::Admin,
        )?;
        let path = cfg.data_dir.join("admin.token");
        {
            use std::io::Write;
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&path)
                .map_err(|source| ServerError::Io {
                    path: path.clone(),
                    source,
                })?;
            f.write_all(format!("{token}\n").as_bytes())
                .map_err(|source| ServerError::Io {
                    path: path.clone(),
                    source,
                })?;
        }
        tracing::info!(path = %path.display(), "created the first admin API token");
    }
    if control.users()?.is_empty() {
        let password = crate::control::random_hex(12);
        match control.add_user("admin", Role::Admin, &password) {
            Ok(()) => {
                let path = cfg.data_dir.join("admin.password");
                write_secret(&path, &format!("{password}\n"))?;
                tracing::info!(path = %path.display(), "created dashboard user admin; its password is in the file");
            }
            // Another server of the fleet created it between the two statements.
            Err(ControlError::Refused(_)) if control.is_shared() => {}
            Err(e) => return Err(e.into()),
        }
    }
    let key_path = cfg.resolve(
        cfg.pseudonym_key_file
            .as_deref()
            .unwrap_or(Path::new("pseudonym.key")),
    );
    let key = read_or_create_key(&key_path)?;
    let mut anonymisers = BTreeMap::new();
    for (region, policy) in &cfg.regions {
        if let Some(a) = &policy.anonymise {
            let an = Anonymiser::new(a.clone(), &key)
                .map_err(|e| ServerError::Invalid(format!("regions.{region}: {e}")))?;
            if !an.is_noop() {
                anonymisers.insert(region.clone(), an);
            }
        }
    }
    let default_anonymiser = match &cfg.default_region.anonymise {
        Some(a) => Some(
            Anonymiser::new(a.clone(), &key)
                .map_err(|e| ServerError::Invalid(format!("default_region: {e}")))?,
        ),
        None => None,
    };
    let store = open_store(&cfg).await?;
    let store = match extras.store_layer {
        Some(layer) => layer(store),
        None => store,
    };
    let identity = ca.server_identity(&server_names(&cfg))?;
    // A CRL always exists (possibly empty) so the verifier can check every agent certificate.
    if Ca::read_crl(ca.dir()).is_err() {
        ca.write_crl(&control.revoked_serials()?, control.next_crl_number()?)?;
    }
    let crl = Ca::read_crl(ca.dir())?;
    let tls = build_tls(&ca, &identity, crl)?;
    let listener = tokio::net::TcpListener::bind(cfg.listen)
        .await
        .map_err(|source| ServerError::Bind {
            addr: cfg.listen,
            source,
        })?;
    let addr = listener.local_addr().map_err(|source| ServerError::Bind {
        addr: cfg.listen,
        source,
    })?;
    let retention_every = cfg
        .retention_interval()
        .map_err(|e| ServerError::Invalid(e.0))?;
    let timeouts = cfg.limits.timeouts().map_err(ServerError::Invalid)?;
    let ingest_memory_kib = u32::try_from(cfg.limits.ingest_memory_bytes.div_ceil(1024))
        .unwrap_or(u32::MAX)
        .min(tokio::sync::Semaphore::MAX_PERMITS as u32);
    let ingest_memory = Arc::new(tokio::sync::Semaphore::new(ingest_memory_kib as usize));
    let connections = Arc::new(tokio::sync::Semaphore::new(cfg.limits.max_connections));
    let shared = control.is_shared();
    let app = Arc::new(App {
        cfg,
        store,
        control,
        ca,
        anonymisers,
        default_anonymiser,
        identity,
        tls: RwLock::new(tls),
        crl: RwLock::new(None),
        crl_mtime: Mutex::new(None),
        counters: Counters::default(),
        last_seen: Mutex::new(HashMap::new()),
        sequencer: Sequencer::new(BATCH_ORDER_WAIT, BATCH_ORDER_FIRST_WAIT),
        enrollments: Mutex::new(HashMap::new()),
        agent_stats: Mutex::new(BTreeMap::new()),
        ingest_memory,
        ingest_memory_kib,
        connections,
        timeouts,
        evidence_uploads: crate::evidence::Uploads::default(),
        instance: format!(
            "{}-{}",
            rampart_event::hostname(),
            crate::control::random_hex(4)
        ),
        fleet_leader: std::sync::atomic::AtomicBool::new(!shared),
        shared_revoked: Mutex::new(None),
    });
    app.reload_crl()?;
    if shared {
        let a = app.clone();
        tokio::task::spawn_blocking(move || {
            a.renew_fleet_lease();
            a.sync_shared_revocations()
        })
        .await
        .map_err(|e| ServerError::Invalid(format!("fleet start: {e}")))??;
    }
    let (stop, stop_rx) = watch::channel(false);
    let mut tasks = Vec::new();
    let mut extra = axum::Router::new();
    for routes in extras.routes {
        extra = extra.merge(routes(ServerContext { app: app.clone() }));
    }
    tasks.push(tokio::spawn(crate::api::serve(
        app.clone(),
        listener,
        extra,
        stop_rx.clone(),
    )));
    // Retention: once shortly after start, then every interval.
    {
        let app = app.clone();
        let mut stop = stop_rx.clone();
        tasks.push(tokio::spawn(async move {
            let mut delay = Duration::from_secs(5);
            loop {
                tokio::select! {
                    () = tokio::time::sleep(delay) => {}
                    _ = stop.wait_for(|s| *s) => return,
                }
                // Once per fleet: only the holder of the fleet job lease deletes.
                if app.leads_fleet() {
                    if let Err(e) = app.run_retention().await {
                        tracing::error!("retention job: {e}");
                    }
                }
                delay = retention_every;
            }
        }));
    }
    // A fleet (shared control store): revocations made on other servers, the fleet job lease.
    if shared {
        let app = app.clone();
        let mut stop = stop_rx.clone();
        tasks.push(tokio::spawn(async move {
            let mut tick = tokio::time::interval(REVOCATION_POLL);
            let renew_every =
                (FLEET_LEASE_RENEW.as_millis() / REVOCATION_POLL.as_millis()).max(1) as u64;
            let mut n = 0u64;
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = stop.wait_for(|s| *s) => return,
                }
                let renew = n.is_multiple_of(renew_every);
                n += 1;
                let a = app.clone();
                let _ = tokio::task::spawn_blocking(move || {
                    if let Err(e) = a.sync_shared_revocations() {
                        tracing::error!("reading revocations from the shared control store: {e}");
                    }
                    if renew {
                        a.renew_fleet_lease();
                    }
                })
                .await;
            }
        }));
    }
    // Housekeeping: CRL changes by other processes, agent last-seen times.
    {
        let app = app.clone();
        let mut stop = stop_rx;
        tasks.push(tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(2));
            let mut n = 0u64;
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = stop.wait_for(|s| *s) => return,
                }
                app.reload_crl_if_changed();
                n += 1;
                if n.is_multiple_of(5) {
                    let a = app.clone();
                    let _ = tokio::task::spawn_blocking(move || flush_last_seen(&a)).await;
                }
            }
        }));
    }
    tracing::info!(%addr, store = app.store.engine(), ca = %hex::encode(app.ca.fingerprint()), "server listening");
    Ok(ServerHandle {
        app,
        addr,
        stop,
        tasks,
    })
}

/// The agent identity of a verified client certificate chain, if it is an agent's.
pub(crate) fn peer_identity(certs: Option<&[CertificateDer<'static>]>) -> Option<AgentIdentity> {
    certs.and_then(|c| c.first()).and_then(agent_identity)
}
