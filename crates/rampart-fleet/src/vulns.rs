//! Continuous vulnerability management on the server: every image inventory (SBOM) the agents
//! sent, the containers running now, and "now vulnerable" alerts when the vulnerability
//! database changes.
//!
//! * `inventory.image` events store the image's packages by image id (the latest wins) and,
//!   with a database loaded, the image's findings under it.
//! * `inventory.container` events record the container as running on its host (the newest
//!   event per (host, container) wins); `container.die`/`stop`/`destroy` and an
//!   `inventory.host` whose container list lacks it remove it.
//! * [`VulnTracker::check_db`] notices a new bundle in `<data_dir>/vulndb/` (published by
//!   `rampart server db import`, possibly from another process), re-matches (against the
//!   published version's immutable snapshot, never the `vuln.db` an import may be changing)
//!   every stored
//!   SBOM against the new database, and returns one alert per running container whose image
//!   has findings it did not have under the previous database (rule
//!   [`NEWLY_VULNERABLE_RULE`], priority from the highest new severity). Before the first
//!   database an image has no findings, so the first import alerts every running container
//!   it finds vulnerable (one alert per container, not per vulnerability); an SBOM that
//!   arrives while a database is loaded is matched on arrival and raises nothing (its counts
//!   are in the agent's `inventory.container`). Versions the server never looked at (two
//!   imports within one poll) are skipped: the diff is against what it evaluated last.
//!
//! # On-disk format (`vulns.db`, SQLite, WAL)
//! ```text
//! images(image_id PK, image, os, packages JSON, updated_ns)
//! findings(image_id, vuln_id, package, severity)   under the database version in state
//! running(host, container_id, region, image, image_id, container JSON, time_ns)  PK(host, container_id)
//! state(key PK, value)                              db_version
//! ```
//!
//! # Shared (`control_store:` PostgreSQL, docs/server.md "Scale-out")
//! With a shared control store the same state is kept there instead, as documents of its
//! `fleet_docs` table, so whichever server holds the fleet job lease re-matches every SBOM
//! the fleet received, through any server:
//! ```text
//! kind vuln-image     id image_id                 {image, os, packages, updated_ns}
//! kind vuln-running   id <host>\n<container_id>   {host, region, image, image_id, container, time_ns}
//! kind vuln-findings  id image_id                 [[vuln_id, package, severity], ...]
//!                     id "" (never an image id)   the database version of the findings
//! kind vuln-alerted   id <database version>       claimed before the "now vulnerable" alerts
//! ```
//! A re-match writes every image's findings and the version in one transaction, then claims
//! the version (`INSERT ... ON CONFLICT DO NOTHING`): only the claiming server raises the
//! alerts, so a takeover during a re-match raises them once. An SBOM stored while the
//! receiving server has no database loaded, or not the version of the stored findings, has
//! no findings document; the next re-match
//! treats it as matched on arrival (no alert for what it already had), as the SQLite store
//! does. The running set is last-writer-wins per (host, container) after a read of the
//! stored time: one host's records are committed in order by the server it ships to.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rampart_event::{Alert, Container, Device, Event, EventId, EventKind, Priority, Severity};
use rampart_scan::{match_packages, VulnDb};
use rampart_server::control::{Control, ControlError};
use rampart_server::{RecordKind, StoredRecord};
use rusqlite::{params, Connection, OptionalExtension};
use serde::{Deserialize, Serialize};

/// The kind of the shared SBOMs' documents (see the module documentation).
pub const IMAGE_DOCS: &str = "vuln-image";
/// The kind of the shared running containers' documents.
pub const RUNNING_DOCS: &str = "vuln-running";
/// The kind of the shared findings' documents (and of the database version, id "").
pub const FINDINGS_DOCS: &str = "vuln-findings";
/// The kind of the claims of the database versions whose alerts were raised.
pub const ALERTED_DOCS: &str = "vuln-alerted";
const VERSION_ID: &str = "";

/// The rule name of "now vulnerable" alerts.
pub const NEWLY_VULNERABLE_RULE: &str = "Container image newly vulnerable";

/// Where the tracker keeps its state and finds the vulnerability database.
#[derive(Debug, Clone)]
pub struct VulnsConfig {
    /// The tracker's SQLite file.
    pub db_path: PathBuf,
    /// The server's data directory (its `vulndb/` holds the database and the bundle).
    pub data_dir: PathBuf,
    /// The control store a fleet of servers shares: the state is kept there instead of
    /// `db_path`.
    pub shared: Option<Arc<Control>>,
}

impl VulnsConfig {
    /// `vulns.db` in the server's data directory.
    pub fn new(data_dir: &Path) -> VulnsConfig {
        VulnsConfig {
            db_path: data_dir.join("vulns.db"),
            data_dir: data_dir.to_path_buf(),
            shared: None,
        }
    }
}

/// Why the tracker failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum VulnsError {
    #[error("{path}: {source}")]
    Sqlite {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
    #[error("vulnerability database: {0}")]
    VulnDb(#[from] rampart_scan::DbError),
    #[error(transparent)]
    Bundle(#[from] rampart_server::vulndb::BundleError),
    #[error("the shared control store: {0}")]
    Control(#[from] ControlError),
    #[error("the shared control store: {kind} document {id:?}: stored JSON unreadable: {message}")]
    Corrupt {
        kind: &'static str,
        id: String,
        message: String,
    },
}

/// A container the server counts as running.
#[derive(Debug, Clone, PartialEq)]
pub struct RunningContainer {
    pub host: String,
    pub region: String,
    pub container: Container,
    pub image: String,
    pub image_id: String,
    pub time_ns: u64,
}

/// The SBOMs, the running set and the findings per image.
pub struct VulnTracker {
    conn: Connection,
    /// When set, the state lives there and `conn` is unused.
    shared: Option<Arc<Control>>,
    path: PathBuf,
    data_dir: PathBuf,
    /// The database the findings were computed with, and its version.
    db: Option<(String, VulnDb)>,
}

impl std::fmt::Debug for VulnTracker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VulnTracker")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

fn priority_of(s: Severity) -> Priority {
    match s {
        Severity::Critical => Priority::Critical,
        Severity::High => Priority::Error,
        Severity::Medium | Severity::Unknown => Priority::Warning,
        Severity::Low => Priority::Notice,
    }
}

/// (vuln id, package name) -> severity.
type Findings = BTreeMap<(String, String), Severity>;

impl VulnTracker {
    /// Opens (creating) the tracker's database.
    pub fn open(cfg: &VulnsConfig) -> Result<VulnTracker, VulnsError> {
        let sql = |source| VulnsError::Sqlite {
            path: cfg.db_path.clone(),
            source,
        };
        // Shared: nothing is kept in db_path (an in-memory database keeps the code simple).
        let conn = match cfg.shared {
            Some(_) => Connection::open_in_memory(),
            None => Connection::open(&cfg.db_path),
        }
        .map_err(sql)?;
        conn.execute_batch(
            "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;
             CREATE TABLE IF NOT EXISTS images(image_id TEXT PRIMARY KEY, image TEXT NOT NULL,
                 os TEXT NOT NULL, packages TEXT NOT NULL, updated_ns INTEGER NOT NULL);
             CREATE TABLE IF NOT EXISTS findings(image_id TEXT NOT NULL, vuln_id TEXT NOT NULL,
                 package TEXT NOT NULL, severity TEXT NOT NULL,
                 PRIMARY KEY(image_id, vuln_id, package)) WITHOUT ROWID;
             CREATE TABLE IF NOT EXISTS running(host TEXT NOT NULL, container_id TEXT NOT NULL,
                 region TEXT NOT NULL, image TEXT NOT NULL, image_id TEXT NOT NULL,
                 container TEXT NOT NULL, time_ns INTEGER NOT NULL,
                 PRIMARY KEY(host, container_id));
             CREATE TABLE IF NOT EXISTS state(key TEXT PRIMARY KEY, value TEXT NOT NULL);",
        )
        .map_err(sql)?;
        Ok(VulnTracker {
            conn,
            shared: cfg.shared.clone(),
            path: cfg.db_path.clone(),
            data_dir: cfg.data_dir.clone(),
            db: None,
        })
    }

    fn sql(&self, source: rusqlite::Error) -> VulnsError {
        VulnsError::Sqlite {
            path: self.path.clone(),
            source,
        }
    }

    /// The version of the database the stored findings were computed with.
    pub fn db_version(&self) -> Result<Option<String>, VulnsError> {
        if let Some(c) = &self.shared {
            return c
                .doc(FINDINGS_DOCS, VERSION_ID)?
                .map(|j| corrupt(FINDINGS_DOCS, VERSION_ID, serde_json::from_str(&j)))
                .transpose();
        }
        self.conn
            .query_row("SELECT value FROM state WHERE key='db_version'", [], |r| {
                r.get(0)
            })
            .optional()
            .map_err(|e| self.sql(e))
    }

    /// Stored records, in order: inventories and container lifecycle events update the state.
    pub fn process_records(&mut self, rows: &[StoredRecord]) -> Result<(), VulnsError> {
        for r in rows {
            if r.kind != RecordKind::Event
                || !(r.event_type.starts_with("inventory.")
                    || r.event_type.starts_with("container."))
            {
                continue;
            }
            let Ok(ev) = serde_json::from_str::<Event>(&r.json) else {
                continue;
            };
            self.process_event(&ev)?;
        }
        Ok(())
    }

    /// One event (see the module documentation).
    pub fn process_event(&mut self, ev: &Event) -> Result<(), VulnsError> {
        let host = ev.device.hostname.as_str();
        match ev.kind {
            EventKind::InventoryImage => {
                let Some(inv) = ev.image_inventory.as_deref() else {
                    return Ok(());
                };
                if inv.image_id.is_empty() {
                    return Ok(());
                }
                if let Some(c) = &self.shared {
                    let doc = ImageDoc {
                        image: inv.image.clone(),
                        os: inv.os.clone(),
                        packages: inv.packages.clone(),
                        updated_ns: ev.time_ns,
                    };
                    let json = serde_json::to_string(&doc).unwrap_or_default();
                    c.put_docs(IMAGE_DOCS, vec![(inv.image_id.clone(), json)])?;
                    // Matched on arrival only with the fleet's current database: a server
                    // that lost the lease may still have an older one loaded.
                    let loaded = self.db.as_ref().map(|(v, _)| v.clone());
                    if loaded.is_some() && loaded == self.db_version()? {
                        let f = self.findings_for(&inv.image, &inv.image_id, &inv.packages)?;
                        self.store_findings(&inv.image_id, &f)?;
                    }
                    return Ok(());
                }
                let packages = serde_json::to_string(&inv.packages).unwrap_or_default();
                self.conn
                    .execute(
                        "INSERT INTO images(image_id, image, os, packages, updated_ns)
                         VALUES(?1, ?2, ?3, ?4, ?5)
                         ON CONFLICT(image_id) DO UPDATE SET image=?2, os=?3, packages=?4, updated_ns=?5",
                        params![inv.image_id, inv.image, inv.os, packages, ev.time_ns as i64],
                    )
                    .map_err(|e| self.sql(e))?;
                if self.db.is_some() {
                    let f = self.findings_for(&inv.image, &inv.image_id, &inv.packages)?;
                    self.store_findings(&inv.image_id, &f)?;
                }
            }
            EventKind::InventoryContainer => {
                let (Some(inv), Some(c)) =
                    (ev.container_inventory.as_deref(), ev.container.as_deref())
                else {
                    return Ok(());
                };
                if self.shared.is_some() {
                    let doc = RunningDoc {
                        host: host.to_string(),
                        region: ev.device.region.clone().unwrap_or_default(),
                        image: inv.image.clone(),
                        image_id: inv.image_id.clone(),
                        container: Some(c.clone()),
                        time_ns: ev.time_ns,
                    };
                    return self.put_running(&c.id, doc);
                }
                let json = serde_json::to_string(c).unwrap_or_default();
                self.conn
                    .execute(
                        "INSERT INTO running(host, container_id, region, image, image_id, container, time_ns)
                         VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7)
                         ON CONFLICT(host, container_id) DO UPDATE SET region=?3, image=?4,
                             image_id=?5, container=?6, time_ns=?7 WHERE time_ns <= ?7",
                        params![
                            host,
                            c.id,
                            ev.device.region.clone().unwrap_or_default(),
                            inv.image,
                            inv.image_id,
                            json,
                            ev.time_ns as i64
                        ],
                    )
                    .map_err(|e| self.sql(e))?;
            }
            EventKind::InventoryHost => {
                let Some(inv) = ev.host_inventory.as_deref() else {
                    return Ok(());
                };
                let ids: BTreeSet<&str> = inv.containers.iter().map(String::as_str).collect();
                if let Some(c) = &self.shared {
                    for (key, json) in c.docs(RUNNING_DOCS)? {
                        let d: RunningDoc =
                            corrupt(RUNNING_DOCS, &key, serde_json::from_str(&json))?;
                        let Some(rc) = &d.container else { continue };
                        if d.host == host && d.time_ns < ev.time_ns && !ids.contains(rc.id.as_str())
                        {
                            let id = rc.id.clone();
                            self.put_running(&id, gone(host, ev.time_ns))?;
                        }
                    }
                    return Ok(());
                }
                let mut stmt = self
                    .conn
                    .prepare("SELECT container_id FROM running WHERE host=?1 AND time_ns < ?2")
                    .map_err(|e| self.sql(e))?;
                let stale: Vec<String> = stmt
                    .query_map(params![host, ev.time_ns as i64], |r| r.get(0))
                    .map_err(|e| self.sql(e))?
                    .filter_map(Result::ok)
                    .filter(|id: &String| !ids.contains(id.as_str()))
                    .collect();
                drop(stmt);
                for id in stale {
                    self.conn
                        .execute(
                            "DELETE FROM running WHERE host=?1 AND container_id=?2",
                            params![host, id],
                        )
                        .map_err(|e| self.sql(e))?;
                }
            }
            EventKind::ContainerDie | EventKind::ContainerStop | EventKind::ContainerDestroy => {
                if let Some(c) = ev.container.as_deref() {
                    if self.shared.is_some() {
                        return self.put_running(&c.id, gone(host, ev.time_ns));
                    }
                    self.conn
                        .execute(
                            "DELETE FROM running WHERE host=?1 AND container_id=?2 AND time_ns <= ?3",
                            params![host, c.id, ev.time_ns as i64],
                        )
                        .map_err(|e| self.sql(e))?;
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// Stores a running container's document (or its tombstone) unless the stored one is
    /// newer.
    fn put_running(&self, container_id: &str, doc: RunningDoc) -> Result<(), VulnsError> {
        let Some(c) = &self.shared else {
            return Ok(());
        };
        let key = format!("{}\n{container_id}", doc.host);
        if let Some(json) = c.doc(RUNNING_DOCS, &key)? {
            let old: RunningDoc = corrupt(RUNNING_DOCS, &key, serde_json::from_str(&json))?;
            if old.time_ns > doc.time_ns || (old.container.is_none() && doc.container.is_none()) {
                return Ok(());
            }
        }
        let json = serde_json::to_string(&doc).unwrap_or_default();
        Ok(c.put_docs(RUNNING_DOCS, vec![(key, json)])?)
    }

    fn findings_for(
        &self,
        image: &str,
        image_id: &str,
        packages: &[rampart_event::Package],
    ) -> Result<Findings, VulnsError> {
        let Some((_, db)) = &self.db else {
            return Ok(Findings::new());
        };
        let report = match_packages(db, image, image_id, packages, 0)?;
        Ok(report
            .findings
            .into_iter()
            .map(|f| ((f.vulnerability_id, f.package.name), f.severity))
            .collect())
    }

    fn stored_findings(&self, image_id: &str) -> Result<Findings, VulnsError> {
        if let Some(c) = &self.shared {
            return match c.doc(FINDINGS_DOCS, image_id)? {
                Some(json) => findings_doc(image_id, &json),
                None => Ok(Findings::new()),
            };
        }
        let mut stmt = self
            .conn
            .prepare_cached("SELECT vuln_id, package, severity FROM findings WHERE image_id=?1")
            .map_err(|e| self.sql(e))?;
        let rows = stmt
            .query_map([image_id], |r| {
                Ok((
                    (r.get::<_, String>(0)?, r.get::<_, String>(1)?),
                    r.get::<_, String>(2)?.parse().unwrap_or(Severity::Unknown),
                ))
            })
            .map_err(|e| self.sql(e))?;
        let mut out = Findings::new();
        for row in rows {
            let (k, v) = row.map_err(|e| self.sql(e))?;
            out.insert(k, v);
        }
        Ok(out)
    }

    fn store_findings(&self, image_id: &str, f: &Findings) -> Result<(), VulnsError> {
        if let Some(c) = &self.shared {
            c.put_docs(FINDINGS_DOCS, vec![(image_id.to_string(), to_doc(f))])?;
            return Ok(());
        }
        self.conn
            .execute("DELETE FROM findings WHERE image_id=?1", [image_id])
            .map_err(|e| self.sql(e))?;
        let mut stmt = self
            .conn
            .prepare_cached(
                "INSERT OR REPLACE INTO findings(image_id, vuln_id, package, severity) VALUES(?1, ?2, ?3, ?4)",
            )
            .map_err(|e| self.sql(e))?;
        for ((id, pkg), sev) in f {
            stmt.execute(params![image_id, id, pkg, sev.as_str()])
                .map_err(|e| self.sql(e))?;
        }
        Ok(())
    }

    /// Findings of `image_id` under the current database: (vulnerability id, package) and
    /// severity.
    pub fn image_findings(
        &self,
        image_id: &str,
    ) -> Result<Vec<(String, String, Severity)>, VulnsError> {
        Ok(self
            .stored_findings(image_id)?
            .into_iter()
            .map(|((id, pkg), s)| (id, pkg, s))
            .collect())
    }

    /// How many SBOMs are stored.
    pub fn images(&self) -> Result<u64, VulnsError> {
        if let Some(c) = &self.shared {
            return Ok(c.docs(IMAGE_DOCS)?.len() as u64);
        }
        self.conn
            .query_row("SELECT COUNT(*) FROM images", [], |r| r.get::<_, i64>(0))
            .map(|n| n as u64)
            .map_err(|e| self.sql(e))
    }

    /// The containers counted as running, by host and container id.
    pub fn running(&self) -> Result<Vec<RunningContainer>, VulnsError> {
        if let Some(c) = &self.shared {
            let mut out = Vec::new();
            for (key, json) in c.docs(RUNNING_DOCS)? {
                let d: RunningDoc = corrupt(RUNNING_DOCS, &key, serde_json::from_str(&json))?;
                if let Some(container) = d.container {
                    out.push(RunningContainer {
                        host: d.host,
                        region: d.region,
                        container,
                        image: d.image,
                        image_id: d.image_id,
                        time_ns: d.time_ns,
                    });
                }
            }
            return Ok(out);
        }
        let mut stmt = self
            .conn
            .prepare(
                "SELECT host, region, container, image, image_id, time_ns FROM running ORDER BY host, container_id",
            )
            .map_err(|e| self.sql(e))?;
        let rows = stmt
            .query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, String>(3)?,
                    r.get::<_, String>(4)?,
                    r.get::<_, i64>(5)?,
                ))
            })
            .map_err(|e| self.sql(e))?;
        let mut out = Vec::new();
        for row in rows {
            let (host, region, c, image, image_id, t) = row.map_err(|e| self.sql(e))?;
            let Ok(container) = serde_json::from_str(&c) else {
                continue;
            };
            out.push(RunningContainer {
                host,
                region,
                container,
                image,
                image_id,
                time_ns: t as u64,
            });
        }
        Ok(out)
    }

    /// When the published database changed since the last call (or since the findings were
    /// stored): re-matches every SBOM and returns the "now vulnerable" alerts for running
    /// containers. Nothing happens while no database is published.
    pub fn check_db(&mut self, now_ns: u64) -> Result<Vec<Alert>, VulnsError> {
        let Some(signed) = rampart_server::vulndb::current(&self.data_dir)? else {
            return Ok(Vec::new());
        };
        let Ok(manifest) =
            serde_json::from_str::<rampart_server::vulndb::Manifest>(&signed.manifest)
        else {
            return Ok(Vec::new());
        };
        let version = manifest.version.clone();
        if self.db.as_ref().is_some_and(|(v, _)| *v == version) {
            return Ok(Vec::new());
        }
        let previous = self.db_version()?;
        tracing::info!(
            "vulnerability database {version} published (findings were computed with {}); re-matching",
            previous.as_deref().unwrap_or("none")
        );
        // The published snapshot, not vuln.db: the next import changes that in place, and the
        // findings must be those of exactly this version.
        let Some(snapshot) = rampart_server::vulndb::snapshot_path(&self.data_dir, &manifest)
        else {
            return Ok(Vec::new());
        };
        let db = VulnDb::open(&snapshot)?;
        self.db = Some((version.clone(), db));
        if previous.as_deref() == Some(version.as_str()) {
            return Ok(Vec::new()); // restarted: the stored findings are this database's
        }
        if let Some(c) = self.shared.clone() {
            return self.rematch_shared(&c, previous.is_some(), &version, now_ns);
        }
        let images: Vec<(String, String, String)> = {
            let mut stmt = self
                .conn
                .prepare("SELECT image_id, image, packages FROM images")
                .map_err(|e| self.sql(e))?;
            let rows = stmt
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                .map_err(|e| self.sql(e))?;
            rows.filter_map(Result::ok).collect()
        };
        let mut newly: BTreeMap<String, Findings> = BTreeMap::new();
        self.conn.execute_batch("BEGIN").map_err(|e| self.sql(e))?;
        let result = (|| {
            for (image_id, image, packages) in &images {
                let packages: Vec<rampart_event::Package> =
                    serde_json::from_str(packages).unwrap_or_default();
                let now = self.findings_for(image, image_id, &packages)?;
                let before = self.stored_findings(image_id)?;
                let added: Findings = now
                    .iter()
                    .filter(|(k, _)| !before.contains_key(*k))
                    .map(|(k, v)| (k.clone(), *v))
                    .collect();
                if !added.is_empty() {
                    newly.insert(image_id.clone(), added);
                }
                self.store_findings(image_id, &now)?;
            }
            self.conn
                .execute(
                    "INSERT OR REPLACE INTO state(key, value) VALUES('db_version', ?1)",
                    [&version],
                )
                .map_err(|e| self.sql(e))?;
            Ok::<_, VulnsError>(())
        })();
        match result {
            Ok(()) => self.conn.execute_batch("COMMIT").map_err(|e| self.sql(e))?,
            Err(e) => {
                let _ = self.conn.execute_batch("ROLLBACK");
                return Err(e);
            }
        }
        let mut alerts = Vec::new();
        for rc in self.running()? {
            if let Some(added) = newly.get(&rc.image_id) {
                alerts.push(newly_vulnerable(&rc, added, &version, now_ns));
            }
        }
        tracing::info!(
            "vulnerability database {version}: {} images re-matched, {} newly vulnerable, {} running containers alerted",
            images.len(),
            newly.len(),
            alerts.len()
        );
        Ok(alerts)
    }
}

impl VulnTracker {
    /// [`VulnTracker::check_db`] on the shared store: every image's findings and the version
    /// in one transaction, then the alerts when this server claims the version.
    fn rematch_shared(
        &mut self,
        c: &Control,
        had_db: bool,
        version: &str,
        now_ns: u64,
    ) -> Result<Vec<Alert>, VulnsError> {
        let stored: BTreeMap<String, String> = c.docs(FINDINGS_DOCS)?.into_iter().collect();
        let images = c.docs(IMAGE_DOCS)?;
        let mut newly: BTreeMap<String, Findings> = BTreeMap::new();
        let mut docs = Vec::with_capacity(images.len() + 1);
        for (image_id, json) in &images {
            let img: ImageDoc = corrupt(IMAGE_DOCS, image_id, serde_json::from_str(json))?;
            let now = self.findings_for(&img.image, image_id, &img.packages)?;
            let before = match stored.get(image_id) {
                Some(json) => findings_doc(image_id, json)?,
                // Stored while its server had no database: matched on arrival, no alert.
                None if had_db => now.clone(),
                None => Findings::new(),
            };
            let added: Findings = now
                .iter()
                .filter(|(k, _)| !before.contains_key(*k))
                .map(|(k, v)| (k.clone(), *v))
                .collect();
            if !added.is_empty() {
                newly.insert(image_id.clone(), added);
            }
            docs.push((image_id.clone(), to_doc(&now)));
        }
        docs.push((
            VERSION_ID.to_string(),
            serde_json::to_string(version).unwrap_or_default(),
        ));
        c.put_docs(FINDINGS_DOCS, docs)?;
        if !c.claim_doc(ALERTED_DOCS, version, &now_ns.to_string())? {
            tracing::info!(
                "vulnerability database {version}: another server already raised its alerts"
            );
            return Ok(Vec::new());
        }
        let mut alerts = Vec::new();
        for rc in self.running()? {
            if let Some(added) = newly.get(&rc.image_id) {
                alerts.push(newly_vulnerable(&rc, added, version, now_ns));
            }
        }
        tracing::info!(
            "vulnerability database {version}: {} shared images re-matched, {} newly vulnerable, {} running containers alerted",
            images.len(),
            newly.len(),
            alerts.len()
        );
        Ok(alerts)
    }
}

/// A shared SBOM.
#[derive(Serialize, Deserialize)]
struct ImageDoc {
    image: String,
    os: String,
    packages: Vec<rampart_event::Package>,
    updated_ns: u64,
}

/// A shared running container; `container` None: stopped at `time_ns` (a tombstone, so an
/// older inventory does not bring it back).
#[derive(Serialize, Deserialize)]
struct RunningDoc {
    host: String,
    region: String,
    image: String,
    image_id: String,
    container: Option<Container>,
    time_ns: u64,
}

fn gone(host: &str, time_ns: u64) -> RunningDoc {
    RunningDoc {
        host: host.to_string(),
        region: String::new(),
        image: String::new(),
        image_id: String::new(),
        container: None,
        time_ns,
    }
}

fn corrupt<T>(
    kind: &'static str,
    id: &str,
    r: Result<T, serde_json::Error>,
) -> Result<T, VulnsError> {
    r.map_err(|e| VulnsError::Corrupt {
        kind,
        id: id.to_string(),
        message: e.to_string(),
    })
}

fn to_doc(f: &Findings) -> String {
    let rows: Vec<(&str, &str, &str)> = f
        .iter()
        .map(|((id, pkg), s)| (id.as_str(), pkg.as_str(), s.as_str()))
        .collect();
    serde_json::to_string(&rows).unwrap_or_default()
}

fn findings_doc(image_id: &str, json: &str) -> Result<Findings, VulnsError> {
    let rows: Vec<(String, String, String)> =
        corrupt(FINDINGS_DOCS, image_id, serde_json::from_str(json))?;
    Ok(rows
        .into_iter()
        .map(|(id, pkg, s)| ((id, pkg), s.parse().unwrap_or(Severity::Unknown)))
        .collect())
}

fn newly_vulnerable(rc: &RunningContainer, added: &Findings, version: &str, now_ns: u64) -> Alert {
    let max = added.values().copied().max().unwrap_or_default();
    let ids: BTreeSet<&str> = added.keys().map(|(id, _)| id.as_str()).collect();
    let ids: Vec<&str> = ids.into_iter().collect();
    let list: Vec<String> = added
        .iter()
        .map(|((id, pkg), s)| format!("{id} ({pkg}, {s})"))
        .collect();
    let short: String = rc.container.id.chars().take(12).collect();
    Alert {
        id: EventId(format!("vuln-new-{version}-{}-{short}", rc.host)),
        time_ns: now_ns,
        rule: NEWLY_VULNERABLE_RULE.into(),
        description: "A running container's image has vulnerabilities it did not have under the previous vulnerability database.".into(),
        priority: priority_of(max),
        tags: vec!["vulnerability".into(), "fleet".into()].into(),
        output: format!(
            "Container image newly vulnerable after vulnerability database {version}: host={} container={} image={} ({}) new={}",
            rc.host,
            rc.container.name,
            rc.image,
            rc.image_id,
            list.join(", ")
        ),
        output_fields: rampart_event::OutputFields::from([
            ("evt.hostname".to_string(), rc.host.clone()),
            ("container.id".to_string(), rc.container.id.clone()),
            ("container.name".to_string(), rc.container.name.clone()),
            ("container.image".to_string(), rc.image.clone()),
            ("container.image_id".to_string(), rc.image_id.clone()),
            ("vuln.ids".to_string(), ids.join(",")),
            ("vuln.max_severity".to_string(), max.as_str().to_string()),
            ("vulndb.version".to_string(), version.to_string()),
        ]),
        source: "fleet".into(),
        device: Arc::new(Device {
            hostname: rc.host.clone(),
            region: (!rc.region.is_empty()).then(|| rc.region.clone()),
        }),
        container: Some(Arc::new(rc.container.clone())),
        process: None,
        events: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use rampart_event::{ContainerInventory, ContainerRuntime, HostInventory, ImageInventory};
    use rampart_event::{Package, PackageKind};

    use super::*;

    fn device(host: &str) -> Arc<Device> {
        Arc::new(Device {
            hostname: host.into(),
            region: Some("eu-de".into()),
        })
    }

    fn ev(seq: u64, time_ns: u64, kind: EventKind, host: &str) -> Event {
        Event::new(EventId::new(7, seq), time_ns, kind, device(host))
    }

    fn bash() -> Package {
        Package {
            kind: PackageKind::Deb,
            name: "bash".into(),
            version: "5.2.15-2+b13".into(),
            ecosystem: "Debian:12".into(),
            source_name: Some("bash".into()),
            source_version: Some("5.2.15-2".into()),
            arch: Some("amd64".into()),
            licenses: vec![],
            purl: "pkg:deb/debian/bash@5.2.15-2+b13".into(),
            path: "var/lib/dpkg/status".into(),
            layer: None,
            locations: Vec::new(),
        }
    }

    fn image(seq: u64, id: &str, packages: Vec<Package>) -> Event {
        let mut e = ev(seq, seq, EventKind::InventoryImage, "h1");
        e.image_inventory = Some(Box::new(ImageInventory {
            image: format!("app-{id}"),
            image_id: id.into(),
            os: "Debian GNU/Linux 12 (bookworm)".into(),
            packages,
        }));
        e
    }

    fn container(seq: u64, host: &str, cid: &str, image_id: &str) -> Event {
        let mut e = ev(seq, seq, EventKind::InventoryContainer, host);
        let mut c = Container::unnamed(cid, ContainerRuntime::Docker);
        c.name = format!("name-{cid}");
        c.image = format!("app-{image_id}");
        c.image_id = image_id.into();
        e.container = Some(Arc::new(c));
        e.container_inventory = Some(Box::new(ContainerInventory {
            image: format!("app-{image_id}"),
            image_id: image_id.into(),
            ..ContainerInventory::default()
        }));
        e
    }

    fn advisory(id: &str, fixed: &str) -> String {
        serde_json::json!({
            "id": id, "modified": "2026-11-01T00:00:00Z",
            "affected": [{"package": {"ecosystem": "Debian:12", "name": "bash"},
                "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": fixed}]}]}],
            "database_specific": {"severity": "CRITICAL"}
        })
        .to_string()
    }

    fn import(data: &Path, ca: &rampart_server::ca::Ca, osv: &Path) {
        let mut db = VulnDb::open_or_create(&rampart_server::vulndb::db_path(data)).expect("db");
        db.import(osv).expect("import");
        drop(db);
        rampart_server::vulndb::publish(data, ca).expect("publish");
    }

    #[test]
    fn new_database_alerts_running_containers_once_and_the_running_set_follows_events() {
        let dir = tempfile::tempdir().expect("tempdir");
        let data = dir.path();
        let ca = rampart_server::ca::Ca::load_or_create(&data.join("ca")).expect("CA");
        let mut t = VulnTracker::open(&VulnsConfig::new(data)).expect("open");
        let (a, b) = ("sha256:aa", "sha256:bb");
        for e in [
            image(1, a, vec![bash()]),
            image(2, b, vec![]),
            container(3, "h1", "c1", a),
            container(4, "h1", "c2", a),
            container(5, "h2", "c3", b),
        ] {
            t.process_event(&e).expect("event");
        }
        assert_eq!(t.images().expect("images"), 2);
        assert_eq!(t.running().expect("running").len(), 3);
        // Nothing published yet; then a first database that affects nothing: no alert.
        assert!(t.check_db(10).expect("check").is_empty());
        let osv = data.join("osv");
        std::fs::create_dir_all(&osv).expect("mkdir");
        std::fs::write(osv.join("old.json"), advisory("CVE-2099-0001", "4.0-1")).expect("w");
        import(data, &ca, &osv);
        // The next import starts before the server looked at the first one: the findings are
        // those of the published version, not of what vuln.db holds by then (regression: the
        // re-match read vuln.db, took the new advisory into the old findings, never alerted).
        let osv2 = data.join("osv2");
        std::fs::create_dir_all(&osv2).expect("mkdir");
        std::fs::write(osv2.join("new.json"), advisory("CVE-2099-1234", "5.2.15-3")).expect("w");
        let mut live = VulnDb::open_or_create(&rampart_server::vulndb::db_path(data)).expect("db");
        live.import(&osv2).expect("import");
        drop(live);
        assert!(t.check_db(11).expect("check").is_empty());
        assert!(t.image_findings(a).expect("findings").is_empty());
        // c2 stops; the second database (affecting bash) is published.
        let mut die = ev(6, 6, EventKind::ContainerDie, "h1");
        die.container = Some(Arc::new(Container::unnamed("c2", ContainerRuntime::Docker)));
        t.process_event(&die).expect("die");
        rampart_server::vulndb::publish(data, &ca).expect("publish");
        let alerts = t.check_db(12).expect("check");
        assert_eq!(alerts.len(), 1, "{alerts:?}");
        let al = &alerts[0];
        assert_eq!(al.rule, NEWLY_VULNERABLE_RULE);
        assert_eq!(al.priority, Priority::Critical);
        assert_eq!(&al.output_fields["container.id"], "c1");
        assert_eq!(&al.output_fields["vuln.ids"], "CVE-2099-1234");
        assert!(
            al.output.contains("host=h1") && al.output.contains("name-c1"),
            "{}",
            al.output
        );
        assert_eq!(t.image_findings(a).expect("findings").len(), 1);
        // Same database: nothing again, also after a restart of the tracker.
        assert!(t.check_db(13).expect("check").is_empty());
        let mut t = VulnTracker::open(&VulnsConfig::new(data)).expect("reopen");
        assert!(t.check_db(14).expect("check").is_empty());
        // A newer host inventory without c1 drops it; an older one does not touch c3.
        let mut h = ev(20, 20, EventKind::InventoryHost, "h1");
        h.host_inventory = Some(Box::new(HostInventory::default()));
        t.process_event(&h).expect("host");
        let running: Vec<String> = t
            .running()
            .expect("running")
            .into_iter()
            .map(|r| r.container.id)
            .collect();
        assert_eq!(running, vec!["c3".to_string()]);
    }
}
