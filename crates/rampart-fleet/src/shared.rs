//! Incident state a fleet of servers shares through the control store (PostgreSQL with
//! `control_store:`, docs/server.md "Scale-out"), as documents of the `fleet_docs` table:
//!
//! * kind [`INCIDENT_DOCS`]: the incidents, JSON by incident id, written by the fleet
//!   correlator on the lease holder after each read round;
//! * kind [`MARK_DOCS`]: what people recorded (`rampart incident mark` on any server), id
//!   `<incident>\n<key>`, JSON [`StoredMark`]; upserted in one transaction per command, and
//!   applied by whichever server holds the fleet job lease at its next deadline check (and by
//!   every server to the incidents its dashboard shows);
//! * kind [`COUNTRY_DOCS`]: the countries the new-country detector has seen, each with the
//!   event time it was first seen (the first server's sighting is kept);
//! * kind [`DEADLINE_DOCS`]: the deadline alerts raised, id `<incident>|<deadline>|<state>`,
//!   each claimed with one `INSERT ... ON CONFLICT DO NOTHING` before the alert is raised, so
//!   a server taking the fleet jobs over raises none a second time.
//!
//! Without a shared control store, incidents and marks stay in `incidents.db`
//! ([`crate::IncidentDb`]) and the raised deadline alerts in memory.

use std::collections::BTreeMap;

use rampart_server::control::{Control, ControlError};
use serde::{Deserialize, Serialize};

use crate::db::{apply_mark, DbError, IncidentDb, Mark};
use crate::incident::Incident;

/// The kind of the shared incidents' documents.
pub const INCIDENT_DOCS: &str = "incident";
/// The kind of the shared incident marks' documents.
pub const MARK_DOCS: &str = "incident-mark";
/// The kind of the new-country detector's baseline: id the country, JSON the event time it
/// was first seen (ns), kept from the first server that saw it.
pub const COUNTRY_DOCS: &str = "country";
/// The kind of the claims of raised deadline alerts.
pub const DEADLINE_DOCS: &str = "deadline-raised";

/// One mark as stored in the control store.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct StoredMark {
    pub incident: String,
    pub key: String,
    pub value: String,
    pub set_ns: u64,
}

/// The documents of `marks` on `incident`.
pub fn mark_docs(incident: &str, marks: &[Mark], now_ns: u64) -> Vec<(String, String)> {
    marks
        .iter()
        .map(|m| {
            let (key, value) = m.key_value();
            let doc = StoredMark {
                incident: incident.to_string(),
                key: key.clone(),
                value,
                set_ns: now_ns,
            };
            (
                format!("{incident}\n{key}"),
                serde_json::to_string(&doc).unwrap_or_default(),
            )
        })
        .collect()
}

/// Marks by incident id, each incident's as (key, value) by key.
pub type MarksByIncident = BTreeMap<String, Vec<(String, String)>>;

/// The stored marks by incident, each incident's by key; documents that do not read as a
/// mark are returned apart (named by id) so the caller reports them.
pub fn marks_by_incident(docs: Vec<(String, String)>) -> (MarksByIncident, Vec<String>) {
    let mut out = MarksByIncident::new();
    let mut bad = Vec::new();
    for (id, json) in docs {
        match serde_json::from_str::<StoredMark>(&json) {
            Ok(m) => out.entry(m.incident).or_default().push((m.key, m.value)),
            Err(_) => bad.push(id),
        }
    }
    for v in out.values_mut() {
        v.sort();
    }
    (out, bad)
}

/// Applies the stored marks to the incidents they name.
pub fn apply_marks(incidents: &mut [Incident], marks: &MarksByIncident) {
    for inc in incidents {
        if let Some(ms) = marks.get(&inc.id) {
            for (k, v) in ms {
                apply_mark(inc, k, v);
            }
        }
    }
}

/// Where `rampart incident` reads incidents and records marks: the server's `incidents.db`,
/// or the control store a fleet of servers shares.
#[derive(Debug)]
pub enum IncidentSource {
    Local(IncidentDb),
    Shared(Control),
}

/// Why the shared incidents could not be read or written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SharedError {
    #[error(transparent)]
    Db(#[from] DbError),
    #[error("the shared control store: {0}")]
    Control(#[from] ControlError),
    #[error("the shared control store: incident {id}: stored JSON unreadable: {message}")]
    Corrupt { id: String, message: String },
    #[error("control_store.password_file {path}: {source}")]
    Password {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl IncidentSource {
    /// The fleet's incidents in the control store of `cs` (`control_store:` of server.yaml,
    /// its password file resolved).
    pub fn open_shared(
        cs: &rampart_server::config::ControlStoreConfig,
    ) -> Result<IncidentSource, SharedError> {
        let password = match &cs.password_file {
            Some(p) => Some(
                std::fs::read_to_string(p)
                    .map_err(|source| SharedError::Password {
                        path: p.clone(),
                        source,
                    })?
                    .trim()
                    .to_string(),
            ),
            None => None,
        };
        Ok(IncidentSource::Shared(Control::open_postgres(
            &cs.postgres,
            password.as_deref(),
        )?))
    }

    /// Every incident with its marks applied, oldest first.
    pub fn all(&self) -> Result<Vec<Incident>, SharedError> {
        match self {
            IncidentSource::Local(db) => Ok(db.all()?),
            IncidentSource::Shared(c) => {
                let mut incidents = Vec::new();
                for (id, json) in c.docs(INCIDENT_DOCS)? {
                    let inc: Incident =
                        serde_json::from_str(&json).map_err(|e| SharedError::Corrupt {
                            id,
                            message: e.to_string(),
                        })?;
                    incidents.push(inc);
                }
                incidents.sort_by(|a, b| (a.first_ns, &a.id).cmp(&(b.first_ns, &b.id)));
                let (marks, bad) = marks_by_incident(c.docs(MARK_DOCS)?);
                if let Some(id) = bad.first() {
                    return Err(SharedError::Corrupt {
                        id: id.replace('\n', " "),
                        message: "an incident mark that is not one".into(),
                    });
                }
                apply_marks(&mut incidents, &marks);
                Ok(incidents)
            }
        }
    }

    /// One incident by id, with its marks applied.
    pub fn get(&self, id: &str) -> Result<Option<Incident>, SharedError> {
        match self {
            IncidentSource::Local(db) => Ok(db.get(id)?),
            IncidentSource::Shared(_) => Ok(self.all()?.into_iter().find(|i| i.id == id)),
        }
    }

    /// Records what a person decided about an incident, all marks in one transaction.
    pub fn set_marks(
        &mut self,
        incident: &str,
        marks: &[Mark],
        now_ns: u64,
    ) -> Result<(), SharedError> {
        match self {
            IncidentSource::Local(db) => {
                for m in marks {
                    db.set_mark(incident, m, now_ns)?;
                }
                Ok(())
            }
            IncidentSource::Shared(c) => {
                Ok(c.put_docs(MARK_DOCS, mark_docs(incident, marks, now_ns))?)
            }
        }
    }
}
