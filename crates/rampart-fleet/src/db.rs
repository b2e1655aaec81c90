//! The fleet's own SQLite database (`incidents.db` beside the server's store): incidents as
//! JSON with the columns lists filter on, and small pieces of correlation state (countries seen
//! across the fleet). WAL mode, so the CLI reads while the server writes.

use std::path::{Path, PathBuf};

use rusqlite::{params, Connection, OptionalExtension};

use crate::incident::Incident;

/// Database failures, naming the file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DbError {
    #[error("{path}: {source}")]
    Sqlite {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
    #[error("{path}: incident {id}: stored JSON unreadable: {message}")]
    Corrupt {
        path: PathBuf,
        id: String,
        message: String,
    },
}

/// What a person records about an incident.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mark {
    PersonalDataBreach(bool),
    /// False: not caused by an attack (changes which Japanese final-report period applies).
    Malicious(bool),
    Closed(bool),
    /// When the organisation became aware (ns).
    AwareAt(u64),
    /// When the breach was determined notifiable (ns).
    DeterminedAt(u64),
    /// `regime/deadline` submitted at (ns).
    Submitted(String, u64),
    /// A person confirmed the incident at (ns): deadlines stop being provisional.
    ConfirmedAt(u64),
}

impl Mark {
    pub(crate) fn key_value(&self) -> (String, String) {
        match self {
            Mark::PersonalDataBreach(b) => ("personal_data_breach".into(), b.to_string()),
            Mark::Malicious(b) => ("malicious".into(), b.to_string()),
            Mark::Closed(b) => ("closed".into(), b.to_string()),
            Mark::AwareAt(t) => ("aware_ns".into(), t.to_string()),
            Mark::DeterminedAt(t) => ("determined_ns".into(), t.to_string()),
            Mark::Submitted(k, t) => (format!("submitted:{k}"), t.to_string()),
            Mark::ConfirmedAt(t) => ("confirmed_ns".into(), t.to_string()),
        }
    }
}

/// Applies one stored mark to an incident (unknown keys are ignored: a newer version wrote them).
pub fn apply_mark(inc: &mut Incident, key: &str, value: &str) {
    let b = value == "true";
    let t = value.parse::<u64>().ok();
    match key {
        "personal_data_breach" => inc.personal_data_breach = b,
        "malicious" => inc.malicious = b,
        "closed" => inc.closed = b,
        "aware_ns" => inc.aware_ns = t,
        "determined_ns" => inc.determined_ns = t,
        "confirmed_ns" => {
            if let Some(t) = t {
                // A person's confirmation replaces a rule's only when it is earlier.
                if inc.confirmed_ns.is_none_or(|c| t < c) {
                    inc.confirmed_ns = Some(t);
                    inc.confirmed_by = Some("a person (rampart incident mark --confirm)".into());
                }
            }
        }
        k => {
            if let (Some(d), Some(t)) = (k.strip_prefix("submitted:"), t) {
                inc.submitted.insert(d.to_string(), t);
            }
        }
    }
}

/// The incidents database.
#[derive(Debug)]
pub struct IncidentDb {
    path: PathBuf,
    conn: Connection,
}

impl IncidentDb {
    /// Opens (creating when missing) the database at `path`.
    pub fn open(path: &Path) -> Result<IncidentDb, DbError> {
        let err = |source| DbError::Sqlite {
            path: path.to_path_buf(),
            source,
        };
        let conn = Connection::open(path).map_err(err)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .map_err(err)?;
        conn.execute_batch(
            "PRAGMA journal_mode=WAL;
             CREATE TABLE IF NOT EXISTS incidents (
                id TEXT PRIMARY KEY,
                category TEXT NOT NULL,
                priority TEXT NOT NULL,
                first_ns INTEGER NOT NULL,
                last_ns INTEGER NOT NULL,
                closed INTEGER NOT NULL,
                json TEXT NOT NULL
             );
             CREATE INDEX IF NOT EXISTS incidents_first ON incidents(first_ns);
             CREATE TABLE IF NOT EXISTS marks (
                incident TEXT NOT NULL,
                key TEXT NOT NULL,
                value TEXT NOT NULL,
                set_ns INTEGER NOT NULL,
                PRIMARY KEY (incident, key)
             );
             CREATE TABLE IF NOT EXISTS fleet_state (
                kind TEXT NOT NULL,
                key TEXT NOT NULL,
                value INTEGER NOT NULL,
                PRIMARY KEY (kind, key)
             );",
        )
        .map_err(err)?;
        Ok(IncidentDb {
            path: path.to_path_buf(),
            conn,
        })
    }

    fn err(&self, source: rusqlite::Error) -> DbError {
        DbError::Sqlite {
            path: self.path.clone(),
            source,
        }
    }

    /// Stores (inserts or replaces) incidents in one transaction.
    pub fn save(&mut self, incidents: &[&Incident]) -> Result<(), DbError> {
        let tx = self.conn.transaction().map_err(|e| DbError::Sqlite {
            path: self.path.clone(),
            source: e,
        })?;
        for i in incidents {
            let json = serde_json::to_string(i).unwrap_or_default();
            tx.execute(
                "INSERT OR REPLACE INTO incidents (id, category, priority, first_ns, last_ns, closed, json)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![
                    i.id,
                    i.category.as_str(),
                    i.priority.as_str(),
                    i.first_ns as i64,
                    i.last_ns as i64,
                    i.closed,
                    json
                ],
            )
            .map_err(|e| DbError::Sqlite {
                path: self.path.clone(),
                source: e,
            })?;
        }
        tx.commit().map_err(|e| DbError::Sqlite {
            path: self.path.clone(),
            source: e,
        })
    }

    fn decode(&self, id: String, json: String) -> Result<Incident, DbError> {
        let mut inc: Incident = serde_json::from_str(&json).map_err(|e| DbError::Corrupt {
            path: self.path.clone(),
            id,
            message: e.to_string(),
        })?;
        for (k, v) in self.marks(&inc.id)? {
            apply_mark(&mut inc, &k, &v);
        }
        Ok(inc)
    }

    /// Records what a person decided about an incident (see [`Mark`]); it overrides what the
    /// correlator derived, in every later read and deadline check.
    pub fn set_mark(&mut self, incident: &str, mark: &Mark, now_ns: u64) -> Result<(), DbError> {
        let (k, v) = mark.key_value();
        self.conn
            .execute(
                "INSERT OR REPLACE INTO marks (incident, key, value, set_ns) VALUES (?1, ?2, ?3, ?4)",
                params![incident, k, v, now_ns as i64],
            )
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    /// The marks of one incident, as (key, value).
    pub fn marks(&self, incident: &str) -> Result<Vec<(String, String)>, DbError> {
        let mut st = self
            .conn
            .prepare("SELECT key, value FROM marks WHERE incident = ?1 ORDER BY key")
            .map_err(|e| self.err(e))?;
        let rows = st
            .query_map([incident], |r| Ok((r.get(0)?, r.get(1)?)))
            .and_then(|it| it.collect())
            .map_err(|e| self.err(e))?;
        Ok(rows)
    }

    /// Every incident, oldest first.
    pub fn all(&self) -> Result<Vec<Incident>, DbError> {
        let mut st = self
            .conn
            .prepare("SELECT id, json FROM incidents ORDER BY first_ns, id")
            .map_err(|e| self.err(e))?;
        let rows: Vec<(String, String)> = st
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .and_then(|it| it.collect())
            .map_err(|e| self.err(e))?;
        rows.into_iter().map(|(id, j)| self.decode(id, j)).collect()
    }

    /// One incident by id.
    pub fn get(&self, id: &str) -> Result<Option<Incident>, DbError> {
        let json: Option<String> = self
            .conn
            .query_row("SELECT json FROM incidents WHERE id = ?1", [id], |r| {
                r.get(0)
            })
            .optional()
            .map_err(|e| self.err(e))?;
        json.map(|j| self.decode(id.to_string(), j)).transpose()
    }

    /// Values of one kind of state (`country` -> first seen ns).
    pub fn state(&self, kind: &str) -> Result<Vec<(String, u64)>, DbError> {
        let mut st = self
            .conn
            .prepare("SELECT key, value FROM fleet_state WHERE kind = ?1")
            .map_err(|e| self.err(e))?;
        let rows: Vec<(String, i64)> = st
            .query_map([kind], |r| Ok((r.get(0)?, r.get(1)?)))
            .and_then(|it| it.collect())
            .map_err(|e| self.err(e))?;
        Ok(rows.into_iter().map(|(k, v)| (k, v as u64)).collect())
    }

    /// Records state values (kept when already present).
    pub fn put_state(&mut self, kind: &str, values: &[(String, u64)]) -> Result<(), DbError> {
        let path = self.path.clone();
        let err = |source| DbError::Sqlite {
            path: path.clone(),
            source,
        };
        let tx = self.conn.transaction().map_err(err)?;
        for (k, v) in values {
            tx.execute(
                "INSERT OR IGNORE INTO fleet_state (kind, key, value) VALUES (?1, ?2, ?3)",
                params![kind, k, *v as i64],
            )
            .map_err(err)?;
        }
        tx.commit().map_err(err)
    }
}
