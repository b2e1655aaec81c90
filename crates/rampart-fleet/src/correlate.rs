//! The fleet correlator: every record the server stores passes through it once.
//!
//! * Events go through the fleet rules (stateful rules of the rule engine over all hosts'
//!   events) and the new-country detector; what fires becomes an alert.
//! * Alerts (the agents' and the fleet's own) are grouped into incidents.
//! * `response.action` events join the timeline of their host's open incident.
//! * [`Correlator::check_deadlines`] raises an alert once per incident deadline that becomes
//!   near due and once when it becomes overdue.
//!
//! [`FleetStore`] plugs the correlator into the server: it wraps the server's
//! [`rampart_server::Store`], so records reach the correlator exactly where they are committed
//! (agents' mTLS ingest and the embedded local pipeline alike), and the alerts it raises are
//! stored beside the agents' alerts.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use rampart_event::{Alert, Device, Event, EventId, EventKind, NetDirection, Priority};
use rampart_rules::{Detection, Engine, Loader, Options};
use rampart_server::store::{
    day_of, BoxFuture, Committed, DeleteOutcome, HostSummary, InsertOutcome, RetentionRecord,
    StoreError,
};
use rampart_server::{IngestCursor, Query, RecordKind, Store, StoredRecord};

use crate::db::{DbError, IncidentDb};
use crate::deadline::{countdown, format_utc, DeadlineState};
use crate::incident::{EntryKind, Grouper, Incident, TimelineEntry};
use crate::notify::FleetNotifier;
use crate::regulation::Regulation;
use crate::vulns::VulnTracker;

/// The default fleet rules (`rules/fleet/fleet.yaml`).
pub const FLEET_RULES: &str = include_str!("../../../rules/fleet/fleet.yaml");
/// The name the default fleet rules load under.
pub const FLEET_RULES_NAME: &str = "rules/fleet/fleet.yaml";

/// Why the correlator could not start or save.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FleetError {
    #[error("fleet rules: {0}")]
    Rules(#[from] rampart_rules::Error),
    #[error(transparent)]
    Db(#[from] DbError),
    #[error("vulnerability tracking: {0}")]
    Vulns(#[from] crate::vulns::VulnsError),
    #[error("fleet.notifications: {0}")]
    Notify(#[from] rampart_ship::OutputError),
}

/// How the correlator runs.
#[derive(Debug, Clone)]
pub struct FleetConfig {
    /// Rule files; empty: the default fleet rules.
    pub rule_files: Vec<PathBuf>,
    /// Alerts join an incident whose last alert is at most this old (default 1 h).
    pub incident_window_ns: u64,
    /// Notification regimes (default: the shipped ones).
    pub regulations: Vec<Regulation>,
    /// Roles the operator declared (`nis2-entity`, `cn-ciio`, `hk-ci-operator`).
    pub roles: Vec<String>,
    /// Countries seen during this long after the first outbound connection are the baseline;
    /// a country first seen later raises an alert (default 24 h of event time).
    pub country_learning_ns: u64,
    /// Where incidents are kept (`None`: in memory only).
    pub db_path: Option<PathBuf>,
    /// Continuous vulnerability management (SBOMs, running set, "now vulnerable" alerts);
    /// `None`: off.
    pub vulns: Option<crate::vulns::VulnsConfig>,
    /// Which alerts open an incident and which confirm one.
    pub incident_policy: crate::incident::IncidentPolicy,
    /// Notifier outputs (`webhook`, `email`) for people: see [`crate::notify`]. Started by
    /// [`Correlator::new`], which then needs a tokio runtime.
    pub notifications: Vec<rampart_ship::OutputConfig>,
    /// Fed from the shared store rather than at commit: the correlator sees no record as this
    /// server commits it, and [`FleetStore::feed_loop`] reads every server's records from the
    /// store while this server holds the fleet job lease (scale-out).
    pub from_store: bool,
}

impl FleetConfig {
    /// Defaults with the shipped regulations and incidents in `db_path`.
    pub fn new(db_path: Option<PathBuf>) -> FleetConfig {
        FleetConfig {
            rule_files: Vec::new(),
            incident_window_ns: 3_600_000_000_000,
            regulations: crate::regulation::builtin().unwrap_or_default(),
            roles: Vec::new(),
            country_learning_ns: 86_400_000_000_000,
            db_path,
            vulns: None,
            incident_policy: crate::incident::IncidentPolicy::default(),
            notifications: Vec::new(),
            from_store: false,
        }
    }
}

/// Counters of a [`Correlator`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FleetStats {
    pub events: u64,
    pub alerts_in: u64,
    pub fleet_alerts: u64,
    pub deadline_alerts: u64,
    pub duplicates: u64,
    pub unreadable: u64,
}

/// Ids remembered to skip records delivered twice (a replayed batch).
const RECENT_IDS: usize = 200_000;

/// Cross-host correlation, incidents and deadline alerts.
#[derive(Debug)]
pub struct Correlator {
    engine: Engine,
    grouper: Grouper,
    db: Option<IncidentDb>,
    regulations: Vec<Regulation>,
    roles: Vec<String>,
    countries: HashMap<String, u64>,
    new_countries: Vec<(String, u64)>,
    first_outbound_ns: Option<u64>,
    learning_ns: u64,
    raised: HashSet<String>,
    dirty: BTreeSet<String>,
    recent: HashSet<String>,
    recent_order: VecDeque<String>,
    detections: Vec<Detection>,
    stats: FleetStats,
    notifier: Option<FleetNotifier>,
    /// Store-fed (scale-out): incidents changed since they were last shared.
    shared_dirty: Option<BTreeSet<String>>,
    /// Store-fed (scale-out): countries first seen since they were last shared.
    shared_countries: Option<Vec<(String, u64)>>,
}

impl Correlator {
    /// Loads the rules and, with a database, the stored incidents and countries.
    pub fn new(cfg: FleetConfig) -> Result<Correlator, FleetError> {
        let mut loader = Loader::new();
        if cfg.rule_files.is_empty() {
            loader.add_str(FLEET_RULES_NAME, FLEET_RULES)?;
        }
        for f in &cfg.rule_files {
            loader.add_file(f)?;
        }
        let rules = Arc::new(loader.compile(Options::default())?);
        Self::with_engine(cfg, Engine::new(rules))
    }

    /// As [`new`](Self::new), with a given engine (benchmarks compare rule sets this way).
    pub fn with_engine(cfg: FleetConfig, engine: Engine) -> Result<Correlator, FleetError> {
        let (db, incidents, countries) = match &cfg.db_path {
            Some(p) => {
                let db = IncidentDb::open(p)?;
                let incidents = db.all()?;
                let countries = db.state("country")?;
                (Some(db), incidents, countries)
            }
            None => (None, Vec::new(), Vec::new()),
        };
        let first_outbound_ns = countries.iter().map(|(_, t)| *t).min();
        let notifier = FleetNotifier::start(&cfg.notifications)?;
        Ok(Correlator {
            engine,
            grouper: {
                let mut g = Grouper::with_incidents(cfg.incident_window_ns, incidents);
                g.policy = cfg.incident_policy;
                g
            },
            db,
            regulations: cfg.regulations,
            roles: cfg.roles,
            countries: countries.into_iter().collect(),
            new_countries: Vec::new(),
            first_outbound_ns,
            learning_ns: cfg.country_learning_ns,
            raised: HashSet::new(),
            dirty: BTreeSet::new(),
            recent: HashSet::new(),
            recent_order: VecDeque::new(),
            detections: Vec::new(),
            stats: FleetStats::default(),
            notifier,
            shared_dirty: cfg.from_store.then(BTreeSet::new),
            shared_countries: cfg.from_store.then(Vec::new),
        })
    }

    /// The incidents changed since the last call, as (id, JSON), for the shared control
    /// store (store-fed correlators only; empty otherwise).
    pub fn take_shared_changes(&mut self) -> Vec<(String, String)> {
        let Some(ids) = self.shared_dirty.as_mut() else {
            return Vec::new();
        };
        let ids = std::mem::take(ids);
        self.grouper
            .incidents()
            .iter()
            .filter(|i| ids.contains(&i.id))
            .filter_map(|i| serde_json::to_string(i).ok().map(|j| (i.id.clone(), j)))
            .collect()
    }

    /// The countries first seen since the last call, as (country, event time), for the
    /// shared control store (store-fed correlators only; empty otherwise).
    pub fn take_shared_countries(&mut self) -> Vec<(String, u64)> {
        self.shared_countries
            .as_mut()
            .map(std::mem::take)
            .unwrap_or_default()
    }

    /// Adds the fleet's shared new-country baseline (countries and when they were first
    /// seen): a server taking over the fleet correlator continues its predecessor's baseline
    /// and learning period.
    pub fn merge_countries(&mut self, seen: Vec<(String, u64)>) {
        for (c, t) in seen {
            let e = self.countries.entry(c).or_insert(t);
            *e = (*e).min(t);
            self.first_outbound_ns = Some(self.first_outbound_ns.map_or(t, |f| f.min(t)));
        }
    }

    /// Replaces the incidents with the fleet's shared ones (a server taking over the fleet
    /// correlator continues the incidents its predecessor opened; the others show them).
    pub fn replace_incidents(&mut self, incidents: Vec<Incident>) {
        let mut g = Grouper::with_incidents(self.grouper.window_ns, incidents);
        g.policy = self.grouper.policy.clone();
        self.grouper = g;
    }

    pub fn stats(&self) -> FleetStats {
        self.stats
    }

    pub fn incidents(&self) -> &[Incident] {
        self.grouper.incidents()
    }

    pub fn regulations(&self) -> &[Regulation] {
        &self.regulations
    }

    pub fn roles(&self) -> &[String] {
        &self.roles
    }

    /// The notifiers of `fleet.notifications`, when any.
    pub fn notifier(&self) -> Option<&FleetNotifier> {
        self.notifier.as_ref()
    }

    /// Groups an alert into incidents and routes it (and, when it opened an incident, the
    /// "incident opened" notice) to the notifiers.
    fn group(&mut self, a: &Alert) {
        let before = self.grouper.incidents().len();
        if let Some(id) = self.grouper.add_alert(a) {
            self.dirty.insert(id);
        }
        if let Some(n) = &self.notifier {
            n.route(a);
            // A new incident is pushed at the end.
            if self.grouper.incidents().len() > before {
                if let Some(inc) = self.grouper.incidents().last() {
                    n.route(&crate::notify::incident_opened(inc));
                }
            }
        }
    }

    fn first_time(&mut self, id: &str) -> bool {
        if self.recent.contains(id) {
            self.stats.duplicates += 1;
            return false;
        }
        self.recent.insert(id.to_string());
        self.recent_order.push_back(id.to_string());
        if self.recent_order.len() > RECENT_IDS {
            if let Some(old) = self.recent_order.pop_front() {
                self.recent.remove(&old);
            }
        }
        true
    }

    /// One event: fleet rules, new countries, response actions. Alerts raised are grouped into
    /// incidents and appended to `out`.
    pub fn process_event(&mut self, ev: &Event, out: &mut Vec<Alert>) {
        self.stats.events += 1;
        self.detections.clear();
        self.engine.process(ev, &mut self.detections);
        let found: Vec<Alert> = self.detections.drain(..).map(|d| d.alert).collect();
        for a in found {
            self.stats.fleet_alerts += 1;
            self.group(&a);
            out.push(a);
        }
        if ev.kind == EventKind::NetConnect {
            if let Some(alert) = self.new_country(ev) {
                self.stats.fleet_alerts += 1;
                self.group(&alert);
                out.push(alert);
            }
        }
        if ev.kind == EventKind::ResponseAction {
            if let Some(id) = self.grouper.add_response(ev) {
                self.dirty.insert(id);
            }
        }
    }

    fn new_country(&mut self, ev: &Event) -> Option<Alert> {
        let net = ev.network.as_ref()?;
        if net.direction != NetDirection::Outbound {
            return None;
        }
        let country = net.remote_country.as_deref()?.trim().to_ascii_uppercase();
        if country.is_empty() || self.countries.contains_key(&country) {
            return None;
        }
        let first = *self.first_outbound_ns.get_or_insert(ev.time_ns);
        self.countries.insert(country.clone(), ev.time_ns);
        self.new_countries.push((country.clone(), ev.time_ns));
        if ev.time_ns < first.saturating_add(self.learning_ns) {
            return None; // still learning the fleet's baseline
        }
        let dst = net
            .remote()
            .map(|r| format!("{}:{}", r.ip, r.port))
            .unwrap_or_default();
        let process = ev
            .process
            .as_deref()
            .map(|p| p.name.clone())
            .unwrap_or_default();
        Some(Alert {
            id: EventId(format!("fleet-country-{}-{}", country, ev.id)),
            time_ns: ev.time_ns,
            rule: "Fleet new outbound country".into(),
            description: "A connection to a country no host of the fleet had connected to before (after the learning period).".into(),
            priority: Priority::Warning,
            tags: vec![
                "fleet".into(),
                "network".into(),
                "mitre_command_and_control".into(),
                "T1071".into(),
            ].into(),
            output: format!(
                "New outbound country for the fleet: {country} (host={} destination={dst} process={process})",
                ev.device.hostname
            ),
            output_fields: rampart_event::OutputFields::from([
                ("net.remote_country".to_string(), country),
                ("evt.hostname".to_string(), ev.device.hostname.clone()),
                ("fd.name".to_string(), dst),
                ("proc.name".to_string(), process),
            ]),
            source: "correlation".into(),
            device: ev.device.clone(),
            container: ev.container.clone(),
            process: ev.process.clone(),
            events: vec![ev.clone()],
        })
    }

    /// An alert from an agent: grouped into an incident.
    pub fn process_alert(&mut self, a: &Alert) {
        self.stats.alerts_in += 1;
        self.group(a);
    }

    /// Stored records, in order; returns the alerts the fleet raised (to be stored). The
    /// raised alerts count as seen: read back from the store, they are not grouped twice.
    pub fn process_records(&mut self, rows: &[StoredRecord]) -> Vec<Alert> {
        let out = self.process_rows(rows);
        for a in &out {
            let key = record_key(FLEET_AGENT, &a.id.0);
            if !self.recent.contains(&key) {
                self.first_time(&key);
            }
        }
        out
    }

    fn process_rows(&mut self, rows: &[StoredRecord]) -> Vec<Alert> {
        let mut out = Vec::new();
        for r in rows {
            // Ids are unique per agent: another agent's record with the same id is its own
            // record, not a replay (no agent can pre-claim another's ids to hide its records).
            if !self.first_time(&record_key(&r.agent_id, &r.id)) {
                continue;
            }
            match r.kind {
                RecordKind::Event => match serde_json::from_str::<Event>(&r.json) {
                    Ok(ev) => self.process_event(&ev, &mut out),
                    Err(_) => self.stats.unreadable += 1,
                },
                RecordKind::Alert => match serde_json::from_str::<Alert>(&r.json) {
                    Ok(a) => self.process_alert(&a),
                    Err(_) => self.stats.unreadable += 1,
                },
            }
        }
        out
    }

    /// Alerts for deadlines that became near due or overdue at `now_ns` (each once per state),
    /// also written into the incident's timeline.
    pub fn check_deadlines(&mut self, now_ns: u64) -> Vec<Alert> {
        self.check_deadlines_with(now_ns, None, &mut |_| Ok(true))
    }

    /// [`check_deadlines`](Self::check_deadlines) for a fleet of servers: `marks` (by
    /// incident, from the shared control store) are applied after the local ones, and each
    /// alert not raised by this server yet is raised only when `claim` (of its key, in the
    /// shared store) says no server raised it before; a claim that fails is tried again at the
    /// next check.
    pub fn check_deadlines_with(
        &mut self,
        now_ns: u64,
        marks: Option<&crate::shared::MarksByIncident>,
        claim: &mut dyn FnMut(&str) -> Result<bool, String>,
    ) -> Vec<Alert> {
        let mut out = Vec::new();
        // What people recorded (flag, awareness, submissions, closing) since the last check.
        if let Some(db) = &self.db {
            let ids: Vec<String> = self
                .grouper
                .incidents()
                .iter()
                .map(|i| i.id.clone())
                .collect();
            for id in ids {
                match db.marks(&id) {
                    Ok(marks) => {
                        if let Some(inc) = self.grouper.get_mut(&id) {
                            for (k, v) in marks {
                                crate::db::apply_mark(inc, &k, &v);
                            }
                        }
                    }
                    Err(e) => tracing::error!("fleet: reading marks of {id}: {e}"),
                }
            }
        }
        // What people recorded through any server of the fleet (overrides the local ones).
        if let Some(m) = marks {
            let ids: Vec<String> = self
                .grouper
                .incidents()
                .iter()
                .filter(|i| m.contains_key(&i.id))
                .map(|i| i.id.clone())
                .collect();
            for id in ids {
                if let (Some(inc), Some(ms)) = (self.grouper.get_mut(&id), m.get(&id)) {
                    for (k, v) in ms {
                        crate::db::apply_mark(inc, k, v);
                    }
                }
            }
        }
        let mut entries: Vec<(String, TimelineEntry)> = Vec::new();
        for inc in self.grouper.incidents() {
            if inc.closed {
                continue;
            }
            for d in inc.deadlines(&self.regulations, &self.roles, now_ns) {
                let (priority, what) = match d.state {
                    DeadlineState::Overdue => (Priority::Critical, "overdue"),
                    DeadlineState::NearDue => (Priority::Warning, "near due"),
                    _ => continue,
                };
                let key = format!("{}|{}|{}", inc.id, d.key, what);
                if self.raised.contains(&key) {
                    continue;
                }
                match claim(&key) {
                    Ok(true) => {}
                    Ok(false) => {
                        // Another server of the fleet raised it (before a takeover).
                        self.raised.insert(key);
                        continue;
                    }
                    Err(e) => {
                        tracing::error!("fleet: claiming deadline alert {key}: {e}");
                        continue;
                    }
                }
                self.raised.insert(key);
                let due = d.due_ns.unwrap_or(now_ns);
                let host = d.hosts.first().cloned().unwrap_or_default();
                let region = inc.regions.get(&host).cloned();
                let output = format!(
                    "Notification deadline {what}: {} {} for incident {} due {} ({}) to {}",
                    d.regime,
                    d.deadline,
                    inc.id,
                    format_utc(due),
                    countdown(due, now_ns),
                    d.to
                );
                let id = EventId(format!(
                    "deadline-{}-{}-{}",
                    inc.id,
                    d.key.replace('/', "-"),
                    what.replace(' ', "-")
                ));
                entries.push((
                    inc.id.clone(),
                    TimelineEntry {
                        time_ns: now_ns,
                        kind: EntryKind::Deadline,
                        id: id.to_string(),
                        host: host.clone(),
                        summary: output.clone(),
                    },
                ));
                out.push(Alert {
                    id,
                    time_ns: now_ns,
                    rule: format!("Notification deadline {what}"),
                    description: format!("{}: {}", d.regime_name, d.name),
                    priority,
                    tags: vec!["compliance".into(), "notification_deadline".into()].into(),
                    output,
                    output_fields: rampart_event::OutputFields::from([
                        ("incident.id".to_string(), inc.id.clone()),
                        ("regime".to_string(), d.regime.clone()),
                        ("deadline".to_string(), d.deadline.clone()),
                        ("due".to_string(), format_utc(due)),
                    ]),
                    source: "fleet".into(),
                    device: Arc::new(Device {
                        hostname: host,
                        region,
                    }),
                    container: None,
                    process: None,
                    events: Vec::new(),
                });
            }
        }
        for (id, e) in entries {
            if let Some(inc) = self.grouper.get_mut(&id) {
                inc.timeline.push(e);
                self.dirty.insert(id);
            }
        }
        self.stats.deadline_alerts += out.len() as u64;
        if let Some(n) = &self.notifier {
            for a in &out {
                n.route(a);
            }
        }
        out
    }

    /// Writes changed incidents and newly seen countries to the database.
    pub fn flush(&mut self) -> Result<(), FleetError> {
        if let Some(shared) = self.shared_dirty.as_mut() {
            shared.extend(self.dirty.iter().cloned());
        }
        if let Some(shared) = self.shared_countries.as_mut() {
            shared.extend(self.new_countries.iter().cloned());
        }
        let Some(db) = self.db.as_mut() else {
            self.dirty.clear();
            self.new_countries.clear();
            return Ok(());
        };
        if !self.dirty.is_empty() {
            let changed: Vec<&Incident> = self
                .grouper
                .incidents()
                .iter()
                .filter(|i| self.dirty.contains(&i.id))
                .collect();
            db.save(&changed)?;
            self.dirty.clear();
        }
        if !self.new_countries.is_empty() {
            db.put_state("country", &self.new_countries)?;
            self.new_countries.clear();
        }
        Ok(())
    }
}

/// How far behind the newest ingest the store-fed correlator reads: a record stamped by its
/// server (`ingested_ns`) becomes visible in the store a little later, and the servers' clocks
/// differ a little; a record that becomes visible later than this behind its stamp is stored
/// but not correlated.
pub const FEED_LAG: Duration = Duration::from_secs(2);
/// How far back in ingest time the store-fed correlator looks for records that became visible
/// after it had read past their ingest time (a slow insert, a server whose clock is behind):
/// it compares the store's count of records per ingest second with what it read, reads the
/// seconds that differ again and correlates the records it had not seen (by agent and id).
/// A record committed later than this after its server stamped it is reported instead
/// ([`TOO_LATE`]).
pub const LATE_WINDOW: Duration = Duration::from_secs(120);
/// A record its server commits this long after stamping it may be past the correlator's
/// look-back ([`LATE_WINDOW`], less a margin for the recheck period and the servers' clocks):
/// the server that committed it counts it and stores an alert naming its host.
pub const TOO_LATE: Duration = Duration::from_secs(110);
/// Every this many polls the store-fed correlator compares the store's counts with its own.
const RECHECK_EVERY: u64 = 4;
/// Record keys the store-fed correlator remembers for its look-back at most (about 64 bytes
/// each); past it the look-back shrinks (`rampart_fleet_correlator_lookback_seconds`).
const MAX_SEEN: usize = 2_000_000;
/// Records read per store query by the store-fed correlator.
const FEED_BATCH: usize = 5_000;
const NS: u64 = 1_000_000_000;
/// The kind of the shared incidents in the control store's documents.
const SHARED_INCIDENTS: &str = crate::shared::INCIDENT_DOCS;
/// Every this many polls a server not holding the lease reads the shared incidents.
const SHARED_INCIDENTS_EVERY: u64 = 4;
/// The control-store key of the store-fed correlator's position.
const FEED_CURSOR_KEY: &str = "fleet-correlator-position";

/// The rule of the alert on records committed too late to be correlated ([`TOO_LATE`]).
pub const TOO_LATE_RULE: &str = "Fleet records stored too late to correlate";

/// The `agent_id` of the records the fleet stores itself (its alerts).
const FLEET_AGENT: &str = "fleet";

/// What identifies a stored record: ids are unique per agent.
fn record_key(agent_id: &str, id: &str) -> String {
    format!("{agent_id}\n{id}")
}

/// The stored form of an alert the fleet raised.
pub fn alert_record(a: &Alert, now_ns: u64) -> StoredRecord {
    let json = serde_json::to_string(a).unwrap_or_default();
    StoredRecord {
        id: a.id.to_string(),
        kind: RecordKind::Alert,
        event_type: "alert".into(),
        time_ns: a.time_ns,
        day: day_of(a.time_ns.min(now_ns.saturating_add(86_400_000_000_000))),
        host: a.device.hostname.clone(),
        region: a.device.region.clone().unwrap_or_default(),
        agent_id: FLEET_AGENT.into(),
        container_id: a
            .container
            .as_deref()
            .map(|c| c.id.clone())
            .unwrap_or_default(),
        container_name: a
            .container
            .as_deref()
            .map(|c| c.name.clone())
            .unwrap_or_default(),
        image: a
            .container
            .as_deref()
            .map(|c| c.image.clone())
            .unwrap_or_default(),
        rule: a.rule.clone(),
        priority: a.priority.as_str().into(),
        severity: a.priority.severity_id(),
        ingested_ns: now_ns,
        json,
    }
}

use rampart_event::now_ns;

/// A [`Store`] that hands every committed batch to a [`Correlator`] and stores the alerts it
/// raises. Queries, retention and the rest go straight to the wrapped store.
pub struct FleetStore {
    inner: Arc<dyn Store>,
    correlator: Arc<Mutex<Correlator>>,
    vulns: Option<Arc<Mutex<VulnTracker>>>,
    /// See [`FleetConfig::from_store`].
    from_store: bool,
    /// The store-fed correlator: up to which `ingested_ns` it has read everything (0 while
    /// this server does not hold the lease), and records read.
    fed_position_ns: std::sync::atomic::AtomicU64,
    fed_records: std::sync::atomic::AtomicU64,
    /// Records found by the look-back after the correlator had read past them, correlated.
    late_records: std::sync::atomic::AtomicU64,
    /// Seconds of ingest time the look-back covers now (0 while not holding the lease).
    lookback_ns: std::sync::atomic::AtomicU64,
    /// Records this server committed later than [`TOO_LATE`] after stamping them.
    too_late_records: std::sync::atomic::AtomicU64,
}

/// The keys (agent, id) of the records the store-fed correlator read, for the look-back,
/// hashed with this process's random keys (128 bits: no agent can make its ids collide with
/// another's without knowing them), oldest ingest first.
#[derive(Default)]
struct SeenKeys {
    hasher: std::collections::hash_map::RandomState,
    keys: HashSet<u128>,
    order: VecDeque<(u64, u128)>,
}

impl SeenKeys {
    fn key(&self, r: &StoredRecord) -> u128 {
        use std::hash::BuildHasher;
        let a = self.hasher.hash_one((0u8, &r.agent_id, &r.id));
        let b = self.hasher.hash_one((1u8, &r.agent_id, &r.id));
        (u128::from(a) << 64) | u128::from(b)
    }

    /// True the first time a record (by agent and id) is seen.
    fn first(&mut self, r: &StoredRecord) -> bool {
        let k = self.key(r);
        if !self.keys.insert(k) {
            return false;
        }
        self.order.push_back((r.ingested_ns, k));
        true
    }

    /// Forgets keys ingested before `ns`, and the oldest past [`MAX_SEEN`]; returns the
    /// ingest time of the newest key forgotten for the cap (the look-back cannot reach it).
    fn forget(&mut self, before_ns: u64) -> Option<u64> {
        let mut capped = None;
        while let Some(&(t, k)) = self.order.front() {
            let over = self.order.len() > MAX_SEEN;
            if t >= before_ns && !over {
                break;
            }
            if over && t >= before_ns {
                capped = Some(t);
            }
            self.order.pop_front();
            self.keys.remove(&k);
        }
        capped
    }
}

/// Where the store-fed correlator is: its position in ingest order, and what it needs to find
/// records that became visible behind it.
struct FeedState {
    cur: IngestCursor,
    /// The look-back starts here at the earliest: the whole second after the position taken
    /// over from another server (records before it are that server's), or after the keys the
    /// cap made it forget.
    floor_ns: u64,
    seen: SeenKeys,
    /// Rows read per whole ingest second (`ingested_ns / 1e9`), every copy counted.
    read: BTreeMap<u64, u64>,
    /// Of those, rows read stamped at the position's `ingested_ns` (not compared: the store
    /// may hold more there that the forward read has still to read).
    at_cur: u64,
    /// The ingest time of the last row read forward.
    at_ns: u64,
    polls: u64,
    /// Fleet alerts raised whose insert failed, stored again at the next round.
    pending: Vec<StoredRecord>,
}

impl FeedState {
    fn new(cur: IngestCursor) -> FeedState {
        FeedState {
            floor_ns: (cur.ingested_ns / NS + 1) * NS,
            cur,
            seen: SeenKeys::default(),
            read: BTreeMap::new(),
            at_cur: 0,
            at_ns: 0,
            polls: 0,
            pending: Vec::new(),
        }
    }

    /// Counts the rows read and keeps those not seen before (by agent and id).
    fn fresh(&mut self, rows: Vec<StoredRecord>) -> Vec<StoredRecord> {
        let mut out = Vec::with_capacity(rows.len());
        for r in rows {
            *self.read.entry(r.ingested_ns / NS).or_default() += 1;
            // Rows come in ingest order.
            if r.ingested_ns == self.at_ns {
                self.at_cur += 1;
            } else {
                self.at_ns = r.ingested_ns;
                self.at_cur = 1;
            }
            if self.seen.first(&r) {
                out.push(r);
            }
        }
        out
    }
}

impl std::fmt::Debug for FleetStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FleetStore")
            .field("engine", &self.inner.engine())
            .finish_non_exhaustive()
    }
}

impl FleetStore {
    pub fn new(inner: Arc<dyn Store>, correlator: Correlator) -> FleetStore {
        FleetStore {
            inner,
            correlator: Arc::new(Mutex::new(correlator)),
            vulns: None,
            from_store: false,
            fed_position_ns: std::sync::atomic::AtomicU64::new(0),
            fed_records: std::sync::atomic::AtomicU64::new(0),
            late_records: std::sync::atomic::AtomicU64::new(0),
            lookback_ns: std::sync::atomic::AtomicU64::new(0),
            too_late_records: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// Fed by [`FleetStore::feed_loop`] instead of at commit ([`FleetConfig::from_store`]).
    pub fn from_store(mut self, yes: bool) -> FleetStore {
        self.from_store = yes;
        self
    }

    /// Reads the whole fleet's records from the shared store in ingest order and correlates
    /// them, every `every`, while this server holds the fleet job lease; stores the alerts
    /// raised and saves its position in the control store (only while holding the lease), so
    /// that the server taking the lease over resumes there. Forever (spawn it).
    pub async fn feed_loop(self: Arc<Self>, lease: rampart_server::FleetLease, every: Duration) {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut state: Option<FeedState> = None;
        let mut n = 0u64;
        loop {
            tick.tick().await;
            n += 1;
            if !lease.held() {
                self.fed_position_ns.store(0, Ordering::Relaxed);
                self.lookback_ns.store(0, Ordering::Relaxed);
                if state.take().is_some() {
                    tracing::info!("fleet correlator: the fleet job lease went to another server; reading paused");
                }
                // This server's dashboard shows the holder's incidents.
                if n.is_multiple_of(SHARED_INCIDENTS_EVERY) {
                    if let Err(e) = self.load_shared_incidents(&lease).await {
                        tracing::warn!("fleet: reading the shared incidents: {e}");
                    }
                }
                continue;
            }
            let mut st = match state.take() {
                Some(st) => st,
                None => match self.resume_point(&lease).await {
                    Some(c) => FeedState::new(c),
                    None => continue,
                },
            };
            if !self.feed(&lease, &mut st).await {
                continue;
            }
            st.polls += 1;
            if st.polls % RECHECK_EVERY == 0 && !self.recheck(&lease, &mut st).await {
                continue;
            }
            state = Some(st);
        }
    }

    /// Compares the store's count of records per ingest second of the look-back with what
    /// was read, reads the seconds that differ again and correlates the records not seen
    /// before (they became visible after the correlator had read past them). False when the
    /// lease was lost.
    async fn recheck(&self, lease: &rampart_server::FleetLease, st: &mut FeedState) -> bool {
        // Records stamped before the position are complete in the forward read; the store is
        // counted up to the position (excluded), so the position's second is compared without
        // the rows stamped at the position itself.
        let end_ns = st.cur.ingested_ns;
        let hi = end_ns.div_ceil(NS);
        let window_from = st
            .cur
            .ingested_ns
            .saturating_sub(LATE_WINDOW.as_nanos() as u64);
        if let Some(t) = st.seen.forget(window_from.saturating_sub(NS)) {
            st.floor_ns = st.floor_ns.max((t / NS + 1) * NS);
        }
        let lo = window_from.max(st.floor_ns).div_ceil(NS);
        st.read = st.read.split_off(&lo);
        // Records stamped after the position are read forward; the look-back covers this far
        // behind what has been read through.
        let through = self
            .fed_position_ns
            .load(Ordering::Relaxed)
            .max(st.cur.ingested_ns);
        self.lookback_ns.store(
            through
                .saturating_sub(st.floor_ns)
                .min(LATE_WINDOW.as_nanos() as u64),
            Ordering::Relaxed,
        );
        if lo >= hi {
            return true;
        }
        let last = end_ns / NS;
        let mine = |st: &FeedState, sec: u64| {
            let n = st.read.get(&sec).copied().unwrap_or(0);
            if sec == last && st.at_ns == end_ns {
                n.saturating_sub(st.at_cur)
            } else {
                n
            }
        };
        let counts = match self.inner.ingest_counts(lo * NS, end_ns).await {
            Ok(c) => c,
            Err(e) => {
                tracing::error!("fleet correlator: counting the fleet's records: {e}");
                return true;
            }
        };
        for (sec, stored) in counts {
            if sec < lo || sec >= hi || mine(st, sec) == stored {
                continue;
            }
            // Read that second again (up to the position, excluded).
            let mut after = IngestCursor {
                ingested_ns: (sec * NS).saturating_sub(1),
                id: String::new(),
            };
            let until = (sec * NS + (NS - 1)).min(end_ns.saturating_sub(1));
            let mut rows_read = 0u64;
            let mut late = Vec::new();
            loop {
                let rows = match self
                    .inner
                    .ingested_after(&after, until, None, FEED_BATCH)
                    .await
                {
                    Ok(r) => r,
                    Err(e) => {
                        tracing::error!("fleet correlator: reading the fleet's records again: {e}");
                        return true;
                    }
                };
                let Some(last) = rows.last() else { break };
                after = IngestCursor::after(last);
                let full = rows.len() >= FEED_BATCH;
                for r in rows {
                    if r.ingested_ns / NS != sec {
                        continue;
                    }
                    rows_read += 1;
                    if st.seen.first(&r) {
                        late.push(r);
                    }
                }
                if !full {
                    break;
                }
            }
            let at_cur = if sec == last && st.at_ns == end_ns {
                st.at_cur
            } else {
                0
            };
            st.read.insert(sec, rows_read + at_cur);
            if late.is_empty() {
                continue;
            }
            let mut hosts: BTreeMap<&str, u64> = BTreeMap::new();
            for r in &late {
                *hosts.entry(r.host.as_str()).or_default() += 1;
            }
            tracing::warn!(
                records = late.len(),
                ingest_second = sec,
                "fleet correlator: records became visible after it had read past them; correlating them now (hosts: {hosts:?})"
            );
            self.late_records
                .fetch_add(late.len() as u64, Ordering::Relaxed);
            self.fed_records
                .fetch_add(late.len() as u64, Ordering::Relaxed);
            let raised = self.correlate(&late);
            if !raised.is_empty() {
                if let Err(e) = self.inner.insert(&raised).await {
                    tracing::error!(
                        "fleet correlator: storing {} fleet alerts (kept, tried again): {e}",
                        raised.len()
                    );
                    st.pending.extend(raised);
                }
            }
            if let Err(e) = self.share_incidents(lease).await {
                tracing::error!("fleet correlator: sharing incidents: {e}");
            }
            if !lease.held() {
                return false;
            }
        }
        true
    }

    /// Writes the incidents changed since the last call to the shared control store.
    async fn share_incidents(&self, lease: &rampart_server::FleetLease) -> Result<(), String> {
        let (changed, countries) = {
            let mut c = self.correlator.lock().unwrap_or_else(|p| p.into_inner());
            (c.take_shared_changes(), c.take_shared_countries())
        };
        if !countries.is_empty() {
            // The first sighting is kept (one statement per country: new ones are rare).
            let l = lease.clone();
            let res = tokio::task::spawn_blocking(move || {
                for (country, t) in &countries {
                    l.claim(crate::shared::COUNTRY_DOCS, country, &t.to_string())?;
                }
                Ok::<_, rampart_server::ServerError>(())
            })
            .await
            .map_err(|e| e.to_string())?;
            if let Err(e) = res {
                tracing::error!("fleet: sharing the countries seen: {e}");
            }
        }
        if changed.is_empty() {
            return Ok(());
        }
        let l = lease.clone();
        let res = tokio::task::spawn_blocking(move || l.put_docs(SHARED_INCIDENTS, changed))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string());
        res
    }

    /// Replaces the correlator's incidents with the fleet's shared ones.
    async fn load_shared_incidents(
        &self,
        lease: &rampart_server::FleetLease,
    ) -> Result<usize, String> {
        let l = lease.clone();
        let docs = tokio::task::spawn_blocking(move || l.docs(SHARED_INCIDENTS))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())?;
        let mut incidents: Vec<Incident> = Vec::with_capacity(docs.len());
        for (id, json) in docs {
            match serde_json::from_str(&json) {
                Ok(i) => incidents.push(i),
                Err(e) => return Err(format!("shared incident {id}: {e}")),
            }
        }
        incidents.sort_by(|a, b| (a.first_ns, &a.id).cmp(&(b.first_ns, &b.id)));
        // What people recorded through any server.
        let l = lease.clone();
        let marks = tokio::task::spawn_blocking(move || l.docs(crate::shared::MARK_DOCS))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())?;
        crate::shared::apply_marks(&mut incidents, &crate::shared::marks_by_incident(marks).0);
        // The fleet's new-country baseline.
        let l = lease.clone();
        let countries = tokio::task::spawn_blocking(move || l.docs(crate::shared::COUNTRY_DOCS))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())?;
        let countries: Vec<(String, u64)> = countries
            .into_iter()
            .filter_map(|(c, t)| Some((c, t.trim().parse().ok()?)))
            .collect();
        let n = incidents.len();
        let mut c = self.correlator.lock().unwrap_or_else(|p| p.into_inner());
        c.replace_incidents(incidents);
        c.merge_countries(countries);
        Ok(n)
    }

    /// Where to start reading on taking the lease: where the last holder stopped, or (no
    /// holder ever saved a position) [`FEED_LAG`] ago.
    async fn resume_point(&self, lease: &rampart_server::FleetLease) -> Option<IngestCursor> {
        // The incidents the previous holder opened are continued here.
        if let Err(e) = self.load_shared_incidents(lease).await {
            tracing::error!("fleet correlator: reading the shared incidents: {e}");
            return None;
        }
        let l = lease.clone();
        let saved = tokio::task::spawn_blocking(move || l.value(FEED_CURSOR_KEY)).await;
        let c = match saved {
            Ok(Ok(Some(text))) => {
                match IngestCursor::parse(&text) {
                    Some(c) => c,
                    None => {
                        tracing::error!("fleet correlator: the saved position {text:?} is not one; starting now");
                        IngestCursor::default()
                    }
                }
            }
            Ok(Ok(None)) => IngestCursor::default(),
            Ok(Err(e)) => {
                tracing::error!("fleet correlator: reading its position: {e}");
                return None;
            }
            Err(e) => {
                tracing::error!("fleet correlator: reading its position: {e}");
                return None;
            }
        };
        let c = if c.ingested_ns == 0 {
            IngestCursor {
                ingested_ns: now_ns().saturating_sub(FEED_LAG.as_nanos() as u64),
                id: String::new(),
            }
        } else {
            c
        };
        tracing::info!(
            from_ns = c.ingested_ns,
            "fleet correlator: this server holds the fleet job lease; reading the fleet's records"
        );
        Some(c)
    }

    /// Reads and correlates what was ingested after `cur` up to [`FEED_LAG`] ago; the new
    /// position, or `None` when the lease was lost (the position is then the new holder's).
    async fn feed(&self, lease: &rampart_server::FleetLease, st: &mut FeedState) -> bool {
        if !st.pending.is_empty() {
            match self.inner.insert(&st.pending).await {
                Ok(_) => st.pending.clear(),
                Err(e) => tracing::error!(
                    "fleet correlator: storing {} fleet alerts (kept, tried again): {e}",
                    st.pending.len()
                ),
            }
        }
        loop {
            let cur = st.cur.clone();
            let until = now_ns().saturating_sub(FEED_LAG.as_nanos() as u64);
            let rows = match self
                .inner
                .ingested_after(&cur, until, None, FEED_BATCH)
                .await
            {
                Ok(r) => r,
                Err(e) => {
                    tracing::error!("fleet correlator: reading the fleet's records: {e}");
                    return true;
                }
            };
            let Some(last) = rows.last() else {
                // Everything up to `until` is read.
                self.fed_position_ns.store(until, Ordering::Relaxed);
                return true;
            };
            let next = IngestCursor::after(last);
            let n_rows = rows.len();
            let rows = st.fresh(rows);
            let raised = self.correlate(&rows);
            self.fed_records
                .fetch_add(rows.len() as u64, Ordering::Relaxed);
            if !raised.is_empty() {
                if let Err(e) = self.inner.insert(&raised).await {
                    // Kept and stored again at the next round (the correlator would not
                    // raise them again from the same records: it has seen them).
                    tracing::error!(
                        "fleet correlator: storing {} fleet alerts (kept, tried again): {e}",
                        raised.len()
                    );
                    st.pending.extend(raised);
                }
            }
            if let Err(e) = self.share_incidents(lease).await {
                // Not moving on: they are shared with the next round's changes.
                tracing::error!("fleet correlator: sharing incidents: {e}");
            }
            let (l, text) = (lease.clone(), next.to_text());
            match tokio::task::spawn_blocking(move || l.save(FEED_CURSOR_KEY, &text)).await {
                Ok(Ok(true)) => {}
                Ok(Ok(false)) => {
                    tracing::warn!(
                        "fleet correlator: the fleet job lease was lost while correlating"
                    );
                    return false;
                }
                Ok(Err(e)) => tracing::error!("fleet correlator: saving its position: {e}"),
                Err(e) => tracing::error!("fleet correlator: saving its position: {e}"),
            }
            let full = n_rows >= FEED_BATCH;
            self.fed_position_ns.store(
                if full { next.ingested_ns } else { until },
                Ordering::Relaxed,
            );
            st.cur = next;
            if !full {
                return true;
            }
        }
    }

    /// Records committed later than [`TOO_LATE`] after their server stamped them (a stalled
    /// insert, a suspended server) may be behind the store-fed correlator's look-back: counted,
    /// and one alert per host of the batch stored, naming how many and their ingest times.
    async fn report_too_late(&self, rows: &[StoredRecord], now_ns: u64) {
        let late_ns = TOO_LATE.as_nanos() as u64;
        let mut hosts: BTreeMap<(&str, &str), (u64, u64, u64, &str)> = BTreeMap::new();
        for r in rows {
            if r.agent_id == FLEET_AGENT || now_ns.saturating_sub(r.ingested_ns) <= late_ns {
                continue;
            }
            let e = hosts
                .entry((r.host.as_str(), r.agent_id.as_str()))
                .or_insert((0, r.ingested_ns, r.ingested_ns, r.id.as_str()));
            e.0 += 1;
            e.1 = e.1.min(r.ingested_ns);
            e.2 = e.2.max(r.ingested_ns);
        }
        if hosts.is_empty() {
            return;
        }
        let mut alerts = Vec::new();
        for ((host, agent), (n, first, last, id)) in hosts {
            self.too_late_records.fetch_add(n, Ordering::Relaxed);
            let region = rows
                .iter()
                .find(|r| r.host == host)
                .map(|r| r.region.clone())
                .filter(|r| !r.is_empty());
            let behind = now_ns.saturating_sub(first) / NS;
            let output = format!(
                "{n} records of host {host} (agent {agent}) were committed {behind} s after this server received them, past the fleet correlator's look-back of {} s: they are stored and queryable but cross-host rules may not have seen them",
                LATE_WINDOW.as_secs()
            );
            tracing::error!("fleet: {output}");
            alerts.push(alert_record(
                &Alert {
                    // The same batch reported twice (a retry) is one alert.
                    id: EventId(format!("fleet-too-late-{agent}-{first}-{id}")),
                    time_ns: now_ns,
                    rule: TOO_LATE_RULE.into(),
                    description: "Records reached the store too late for the fleet correlator: the fleet's cross-host rules may have missed them.".into(),
                    priority: Priority::Error,
                    tags: vec!["fleet".into(), "rampart_internal".into()].into(),
                    output,
                    output_fields: rampart_event::OutputFields::from([
                        ("evt.hostname".to_string(), host.to_string()),
                        ("agent.id".to_string(), agent.to_string()),
                        ("records".to_string(), n.to_string()),
                        ("ingested.first_ns".to_string(), first.to_string()),
                        ("ingested.last_ns".to_string(), last.to_string()),
                    ]),
                    source: "fleet".into(),
                    device: Arc::new(Device {
                        hostname: host.to_string(),
                        region,
                    }),
                    container: None,
                    process: None,
                    events: Vec::new(),
                },
                now_ns,
            ));
        }
        if let Err(e) = self.inner.insert(&alerts).await {
            tracing::error!("fleet: storing the alerts on records committed too late: {e}");
        }
    }

    /// Also tracks SBOMs and running containers, and raises "now vulnerable" alerts
    /// ([`FleetStore::check_vulndb`]).
    pub fn with_vulns(mut self, tracker: VulnTracker) -> FleetStore {
        self.vulns = Some(Arc::new(Mutex::new(tracker)));
        self
    }

    /// The vulnerability tracker, when on.
    pub fn vulns(&self) -> Option<Arc<Mutex<VulnTracker>>> {
        self.vulns.clone()
    }

    /// Re-matches the stored SBOMs when the published vulnerability database changed and
    /// stores the "now vulnerable" alerts (through this store, so they are grouped into
    /// incidents like any alert); returns how many.
    pub async fn check_vulndb(&self, now_ns: u64) -> Result<usize, StoreError> {
        let Some(v) = self.vulns.clone() else {
            return Ok(0);
        };
        let alerts = tokio::task::spawn_blocking(move || {
            let mut t = v.lock().unwrap_or_else(|p| p.into_inner());
            t.check_db(now_ns)
        })
        .await;
        let alerts = match alerts {
            Ok(Ok(a)) => a,
            Ok(Err(e)) => {
                tracing::error!("fleet: re-matching SBOMs: {e}");
                return Ok(0);
            }
            Err(e) => {
                tracing::error!("fleet: re-matching task: {e}");
                return Ok(0);
            }
        };
        let rows: Vec<StoredRecord> = alerts.iter().map(|a| alert_record(a, now_ns)).collect();
        if !rows.is_empty() {
            self.insert(&rows).await?;
        }
        Ok(rows.len())
    }

    /// Checks for a new vulnerability database every `every` while this server holds the
    /// fleet job lease (once per fleet), forever (spawn it).
    pub async fn vulndb_loop(
        self: Arc<Self>,
        lease: rampart_server::FleetLease,
        every: std::time::Duration,
    ) {
        let mut tick = tokio::time::interval(every);
        loop {
            tick.tick().await;
            if !lease.held() {
                continue;
            }
            if let Err(e) = self.check_vulndb(now_ns()).await {
                tracing::error!("fleet: storing vulnerability alerts: {e}");
            }
        }
    }

    /// The correlator (for deadline checks and reads).
    pub fn correlator(&self) -> Arc<Mutex<Correlator>> {
        self.correlator.clone()
    }

    /// Raises the deadline alerts due at `now_ns` and stores them; returns how many.
    pub async fn check_deadlines(&self, now_ns: u64) -> Result<usize, StoreError> {
        let alerts = {
            let mut c = self.correlator.lock().unwrap_or_else(|p| p.into_inner());
            let a = c.check_deadlines(now_ns);
            if let Err(e) = c.flush() {
                tracing::error!("fleet: saving incidents: {e}");
            }
            a
        };
        let rows: Vec<StoredRecord> = alerts.iter().map(|a| alert_record(a, now_ns)).collect();
        if !rows.is_empty() {
            self.inner.insert(&rows).await?;
        }
        Ok(rows.len())
    }
}

impl FleetStore {
    /// [`check_deadlines`](Self::check_deadlines) on the holder of the fleet job lease with a
    /// shared control store: the marks people recorded through any server are applied, and
    /// each deadline alert is claimed in the shared store before it is raised (so a server
    /// that takes the lease over raises none again).
    pub async fn check_deadlines_shared(
        &self,
        lease: &rampart_server::FleetLease,
        now_ns: u64,
    ) -> Result<usize, StoreError> {
        let l = lease.clone();
        let docs = tokio::task::spawn_blocking(move || l.docs(crate::shared::MARK_DOCS)).await;
        let marks = match docs {
            Ok(Ok(d)) => {
                let (m, bad) = crate::shared::marks_by_incident(d);
                if !bad.is_empty() {
                    tracing::error!("fleet: shared incident marks that are not marks: {bad:?}");
                }
                m
            }
            Ok(Err(e)) => {
                tracing::error!("fleet: reading the shared incident marks: {e}");
                return Ok(0);
            }
            Err(e) => {
                tracing::error!("fleet: reading the shared incident marks: {e}");
                return Ok(0);
            }
        };
        let correlator = self.correlator.clone();
        let l = lease.clone();
        let alerts = tokio::task::spawn_blocking(move || {
            let mut c = correlator.lock().unwrap_or_else(|p| p.into_inner());
            let claimed = format!("{{\"raised_ns\":{now_ns}}}");
            let a = c.check_deadlines_with(now_ns, Some(&marks), &mut |key| {
                l.claim(crate::shared::DEADLINE_DOCS, key, &claimed)
                    .map_err(|e| e.to_string())
            });
            if let Err(e) = c.flush() {
                tracing::error!("fleet: saving incidents: {e}");
            }
            a
        })
        .await;
        let alerts = match alerts {
            Ok(a) => a,
            Err(e) => {
                tracing::error!("fleet: deadline check: {e}");
                return Ok(0);
            }
        };
        let rows: Vec<StoredRecord> = alerts.iter().map(|a| alert_record(a, now_ns)).collect();
        if !rows.is_empty() {
            self.inner.insert(&rows).await?;
        }
        Ok(rows.len())
    }

    /// Checks deadlines every `every` while this server holds the fleet job lease (once per
    /// fleet), forever (spawn it; abort the task to stop).
    pub async fn deadline_loop(
        self: Arc<Self>,
        lease: rampart_server::FleetLease,
        every: std::time::Duration,
    ) {
        let mut tick = tokio::time::interval(every);
        loop {
            tick.tick().await;
            if !lease.held() {
                continue;
            }
            let res = if lease.is_shared() {
                self.check_deadlines_shared(&lease, now_ns()).await
            } else {
                self.check_deadlines(now_ns()).await
            };
            if let Err(e) = res {
                tracing::error!("fleet: storing deadline alerts: {e}");
            }
        }
    }

    /// What follows a commit: the correlator and the vulnerability tracker see the rows (in
    /// commit order: this runs when the store says the batch is committed); the alerts they
    /// raise, as records to store.
    fn correlate(&self, rows: &[StoredRecord]) -> Vec<StoredRecord> {
        let now = now_ns();
        let raised = {
            let mut c = self.correlator.lock().unwrap_or_else(|p| p.into_inner());
            let raised = c.process_records(rows);
            if let Err(e) = c.flush() {
                tracing::error!("fleet: saving incidents: {e}");
            }
            raised
        };
        if let Some(v) = &self.vulns {
            let mut t = v.lock().unwrap_or_else(|p| p.into_inner());
            if let Err(e) = t.process_records(rows) {
                tracing::error!("fleet: recording inventories: {e}");
            }
        }
        raised.iter().map(|a| alert_record(a, now)).collect()
    }
}

impl Store for FleetStore {
    fn engine(&self) -> &'static str {
        self.inner.engine()
    }

    /// The notifiers' `rampart_notify_*{notifier}` metrics, then the wrapped store's.
    fn metrics_text(&self) -> String {
        let stats = {
            let c = self.correlator.lock().unwrap_or_else(|p| p.into_inner());
            c.notifier().map(|n| n.stats()).unwrap_or_default()
        };
        let mut w = rampart_ship::metrics::PromWriter::new();
        rampart_ship::notify::write_metrics(&mut w, &stats);
        if self.from_store {
            let pos = self.fed_position_ns.load(Ordering::Relaxed);
            w.gauge(
                "rampart_fleet_correlator_behind_seconds",
                "How far the fleet correlator (on the fleet job lease holder) is behind: now minus the ingest time up to which it has read every record (0 on the other servers; 2-2.5 s when it keeps up).",
                &[],
                if pos == 0 {
                    0.0
                } else {
                    now_ns().saturating_sub(pos) as f64 / 1e9
                },
            );
            w.counter(
                "rampart_fleet_correlator_read_records_total",
                "Records the fleet correlator read from the shared store while this server held the fleet job lease.",
                &[],
                self.fed_records.load(Ordering::Relaxed),
            );
            w.counter(
                "rampart_fleet_correlator_late_records_total",
                "Records that became visible in the shared store after the fleet correlator had read past their ingest time, found by its look-back and correlated then.",
                &[],
                self.late_records.load(Ordering::Relaxed),
            );
            w.gauge(
                "rampart_fleet_correlator_lookback_seconds",
                "How far behind its position the fleet correlator looks for records that became visible late (120 s normally; less just after taking the lease over or past 2 million records in that time; 0 on the other servers).",
                &[],
                self.lookback_ns.load(Ordering::Relaxed) as f64 / 1e9,
            );
            w.counter(
                "rampart_fleet_records_too_late_total",
                "Records this server committed to the shared store more than 110 s after receiving them, which the fleet correlator may not have seen (each batch also stored an alert naming its host).",
                &[],
                self.too_late_records.load(Ordering::Relaxed),
            );
        }
        let mut text = w.finish();
        text.push_str(&self.inner.metrics_text());
        text
    }

    /// The correlator sees the batch as it is committed (so batches in commit order, and
    /// before the caller's `committed`: the agent's next batch is correlated after this one),
    /// while the store makes it durable; the alerts it raised are stored after.
    fn insert_with<'a>(
        &'a self,
        rows: &'a [StoredRecord],
        unsent: bool,
        committed: Committed<'a>,
    ) -> BoxFuture<'a, Result<InsertOutcome, StoreError>> {
        if self.from_store {
            // Correlated when read back from the shared store (feed_loop).
            return Box::pin(async move {
                let outcome = self.inner.insert_with(rows, unsent, committed).await?;
                self.report_too_late(rows, now_ns()).await;
                Ok(outcome)
            });
        }
        Box::pin(async move {
            let raised = Mutex::new(Vec::new());
            let correlate: Committed<'_> = Box::new(|outcome: &InsertOutcome| {
                *raised.lock().unwrap_or_else(|p| p.into_inner()) = self.correlate(rows);
                committed(outcome);
            });
            let outcome = self.inner.insert_with(rows, unsent, correlate).await?;
            let extra = raised.into_inner().unwrap_or_else(|p| p.into_inner());
            if !extra.is_empty() {
                self.inner.insert(&extra).await?;
            }
            Ok(outcome)
        })
    }

    fn query<'a>(&'a self, q: &'a Query) -> BoxFuture<'a, Result<Vec<StoredRecord>, StoreError>> {
        self.inner.query(q)
    }

    fn count<'a>(&'a self, q: &'a Query) -> BoxFuture<'a, Result<u64, StoreError>> {
        self.inner.count(q)
    }

    fn regions(&self) -> BoxFuture<'_, Result<Vec<String>, StoreError>> {
        self.inner.regions()
    }

    fn delete_before<'a>(
        &'a self,
        region: &'a str,
        cutoff_day: u32,
    ) -> BoxFuture<'a, Result<DeleteOutcome, StoreError>> {
        self.inner.delete_before(region, cutoff_day)
    }

    fn record_retention<'a>(
        &'a self,
        r: &'a RetentionRecord,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        self.inner.record_retention(r)
    }

    fn retention_log(
        &self,
        limit: usize,
    ) -> BoxFuture<'_, Result<Vec<RetentionRecord>, StoreError>> {
        self.inner.retention_log(limit)
    }

    fn hosts(&self) -> BoxFuture<'_, Result<Vec<HostSummary>, StoreError>> {
        self.inner.hosts()
    }

    fn latest_inventory<'a>(
        &'a self,
        event_type: &'a str,
        host: Option<&'a str>,
    ) -> BoxFuture<'a, Result<Vec<StoredRecord>, StoreError>> {
        self.inner.latest_inventory(event_type, host)
    }

    fn ingested_after<'a>(
        &'a self,
        after: &'a IngestCursor,
        until_ns: u64,
        kind: Option<RecordKind>,
        limit: usize,
    ) -> BoxFuture<'a, Result<Vec<StoredRecord>, StoreError>> {
        self.inner.ingested_after(after, until_ns, kind, limit)
    }
}

/// Where [`server_layer`] puts the [`FleetStore`] once the server opened its store.
pub type FleetSlot = Arc<OnceLock<Arc<FleetStore>>>;

/// The store layer for [`rampart_server::start_with`], and a slot that holds the
/// [`FleetStore`] once the server has opened its store (for [`FleetStore::deadline_loop`]):
///
/// ```no_run
/// # async fn demo(cfg: rampart_server::ServerConfig) -> Result<(), Box<dyn std::error::Error>> {
/// let fleet_cfg = rampart_fleet::FleetConfig::new(Some(rampart_fleet::db_path(&cfg.data_dir)));
/// let (layer, slot) = rampart_fleet::server_layer(fleet_cfg)?;
/// let server = rampart_server::start_with(cfg, layer).await?;
/// if let Some(fleet) = slot.get() {
///     let lease = server.fleet_lease();
///     tokio::spawn(fleet.clone().deadline_loop(lease, std::time::Duration::from_secs(60)));
/// }
/// # Ok(()) }
/// ```
pub fn server_layer(
    cfg: FleetConfig,
) -> Result<(rampart_server::StoreLayer, FleetSlot), FleetError> {
    let tracker = cfg.vulns.as_ref().map(VulnTracker::open).transpose()?;
    let from_store = cfg.from_store;
    let correlator = Correlator::new(cfg)?;
    let slot: FleetSlot = Arc::default();
    let keep = slot.clone();
    let layer: rampart_server::StoreLayer = Box::new(move |inner| {
        let mut fleet = FleetStore::new(inner, correlator).from_store(from_store);
        if let Some(t) = tracker {
            fleet = fleet.with_vulns(t);
        }
        let fleet = Arc::new(fleet);
        let _ = keep.set(fleet.clone());
        fleet
    });
    Ok((layer, slot))
}

/// The incidents database of a server data directory.
pub fn db_path(data_dir: &Path) -> PathBuf {
    data_dir.join("incidents.db")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failed_login(i: u64, host: &str) -> StoredRecord {
        let mut ev = Event::new(
            EventId::new(7, i),
            1_000_000_000 * (1 + i),
            EventKind::AuthLogin,
            Arc::new(Device {
                hostname: host.into(),
                region: None,
            }),
        );
        ev.auth = Some(rampart_event::AuthInfo {
            outcome: rampart_event::AuthOutcome::Failure,
            user: "root".into(),
            method: None,
            src_ip: "203.0.113.7".parse().ok(),
            src_port: None,
            service: "sshd".into(),
            log_source: "/var/log/auth.log".into(),
            message: String::new(),
        });
        StoredRecord {
            id: ev.id.to_string(),
            kind: RecordKind::Event,
            event_type: "auth.login".into(),
            time_ns: ev.time_ns,
            day: day_of(ev.time_ns),
            host: host.into(),
            region: String::new(),
            agent_id: format!("agt-{host}"),
            container_id: String::new(),
            container_name: String::new(),
            image: String::new(),
            rule: String::new(),
            priority: String::new(),
            severity: 1,
            ingested_ns: ev.time_ns,
            json: serde_json::to_string(&ev).unwrap_or_default(),
        }
    }

    /// Issue 22: the store-fed correlator reads back the alerts it stored itself; they are
    /// not counted, grouped or sent to the notifiers a second time, and records read twice
    /// (an agent's retry stored through another server) are skipped.
    #[test]
    fn alerts_it_raised_and_records_read_again_are_seen_once() {
        let mut c = match Correlator::new(FleetConfig::new(None)) {
            Ok(c) => c,
            Err(e) => panic!("default fleet rules: {e}"),
        };
        let rows: Vec<StoredRecord> = ["web-1", "web-2", "web-3"]
            .iter()
            .enumerate()
            .map(|(i, h)| failed_login(i as u64, h))
            .collect();
        let raised = c.process_records(&rows);
        assert_eq!(raised.len(), 1, "{raised:?}");
        assert_eq!(c.incidents().len(), 1);
        let stored: Vec<StoredRecord> = raised.iter().map(|a| alert_record(a, 1)).collect();
        let mut again = rows.clone();
        again.extend(stored);
        assert!(c.process_records(&again).is_empty());
        let s = c.stats();
        assert_eq!((s.events, s.alerts_in, s.fleet_alerts), (3, 0, 1));
        assert_eq!(s.duplicates, 4);
        assert_eq!(c.incidents().len(), 1);
        assert_eq!(c.incidents()[0].alert_ids.len(), 1);
    }
}
