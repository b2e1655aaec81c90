//! The control database (`<data_dir>/control.db`, SQLite): enrolled agents, enrollment
//! tokens, API tokens and their roles, revocations, dashboard users and their sessions, and the
//! fleet configuration each agent reports running. It is separate from the record store, so
//! that the ClickHouse store never holds credentials, and small enough that the offline
//! `rampart server ...` commands can change it while the server runs (SQLite WAL; the server
//! notices revocations through `crl.pem`).
//!
//! With `control_store:` in `server.yaml` the same tables live in PostgreSQL instead, shared
//! by every server of a fleet ([`Control::open_postgres`], module `pg`): one interface, two
//! backends, and the single-server default needs nothing installed.
//!
//! Tokens and session tokens are stored as SHA-256 hashes only; user passwords as Argon2id
//! PHC strings (RustCrypto `argon2`, its default parameters: 19 MiB, 2 passes).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rampart_ship::protocol::EvidenceReceipt;
use ring::rand::SecureRandom;
use rusqlite::{params, Connection, OptionalExtension};
use serde::{Deserialize, Serialize};

mod pg;

/// What an API token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    /// Alerts, agents and statistics.
    ReadOnly,
    /// Also every stored event and the retention log.
    Analyst,
    /// Also enrollment tokens, API tokens, revocation, running retention.
    Admin,
}

impl Role {
    pub fn as_str(&self) -> &'static str {
        match self {
            Role::ReadOnly => "read-only",
            Role::Analyst => "analyst",
            Role::Admin => "admin",
        }
    }

    /// Parses `admin`, `analyst`, `read-only` (also `readonly`, `read_only`).
    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "admin" => Some(Role::Admin),
            "analyst" => Some(Role::Analyst),
            "read-only" | "readonly" | "read_only" => Some(Role::ReadOnly),
            _ => None,
        }
    }
}

/// Errors of the control database.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ControlError {
    #[error("control database {path}: {source}")]
    Db {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
    #[error("{0}")]
    Refused(String),
    #[error("control store {url}: {source}")]
    Postgres {
        /// The connection string, without its password.
        url: String,
        #[source]
        source: postgres::Error,
    },
    #[error("control database {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Which stored forensic bundles to list (every field given must hold).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EvidenceFilter {
    /// Host name as enrolled.
    pub host: Option<String>,
    pub agent: Option<String>,
    /// Container name or id, as the agent described it.
    pub container: Option<String>,
    /// The agent's response incident (`playbook@alert-id`).
    pub incident: Option<String>,
    /// The alert id that triggered the capture.
    pub alert: Option<String>,
    pub sha256: Option<String>,
    /// At most this many (default 1000, at most 10 000).
    #[serde(default)]
    pub limit: usize,
}

/// An enrolled agent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AgentRecord {
    pub agent_id: String,
    pub hostname: String,
    pub region: String,
    /// Certificate serial, hex.
    pub serial: String,
    pub enrolled_ns: u64,
    /// Certificate expiry, Unix seconds.
    pub not_after: i64,
    pub revoked_ns: Option<u64>,
    pub last_seen_ns: Option<u64>,
}

/// An API token as listed (without its secret).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TokenRecord {
    pub name: String,
    pub role: Role,
    pub created_ns: u64,
    pub revoked_ns: Option<u64>,
}

/// A dashboard user as listed (without the password hash).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UserRecord {
    pub username: String,
    pub role: Role,
    pub created_ns: u64,
}

/// A valid dashboard session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Session {
    pub username: String,
    pub role: Role,
    pub expires_ns: u64,
}

/// Shortest password [`Control::add_user`] accepts.
pub const MIN_PASSWORD_LEN: usize = 12;

fn hash_password(password: &str) -> Result<String, ControlError> {
    use argon2::password_hash::{PasswordHasher, SaltString};
    let mut salt = [0u8; 16];
    ring::rand::SystemRandom::new()
        .fill(&mut salt)
        .map_err(|_| ControlError::Refused("no randomness for a password salt".into()))?;
    let salt = SaltString::encode_b64(&salt)
        .map_err(|e| ControlError::Refused(format!("password salt: {e}")))?;
    argon2::Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| ControlError::Refused(format!("hashing the password: {e}")))
}

fn password_matches(phc: &str, password: &str) -> bool {
    use argon2::password_hash::{PasswordHash, PasswordVerifier};
    PasswordHash::new(phc).is_ok_and(|h| {
        argon2::Argon2::default()
            .verify_password(password.as_bytes(), &h)
            .is_ok()
    })
}

/// A hash no password matches, checked for unknown users so that a login takes as long for
/// a wrong user name as for a wrong password.
fn dummy_hash() -> &'static str {
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DUMMY.get_or_init(|| hash_password(&random_hex(16)).unwrap_or_default())
}

/// What an enrollment token grants.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EnrollGrant {
    pub region: String,
}

/// The control database.
pub struct Control {
    path: PathBuf,
    backend: Backend,
}

enum Backend {
    Sqlite(Mutex<Connection>),
    Postgres(pg::Pg),
}

impl std::fmt::Debug for Control {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Control").field("path", &self.path).finish()
    }
}

pub(crate) use rampart_event::now_ns;

/// SHA-256 of a token, hex: what the database keeps.
pub fn token_hash(token: &str) -> String {
    hex::encode(ring::digest::digest(
        &ring::digest::SHA256,
        token.as_bytes(),
    ))
}

/// `n` random bytes, hex.
pub(crate) fn random_hex(n: usize) -> String {
    let mut b = vec![0u8; n];
    // SystemRandom only fails when the OS has no randomness, which the CA would hit first.
    let _ = ring::rand::SystemRandom::new().fill(&mut b);
    hex::encode(b)
}

fn ns_to_time(ns: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_nanos(ns)
}

impl Control {
    /// Opens (creating when missing) `path`.
    pub fn open(path: &Path) -> Result<Control, ControlError> {
        let db = |source| ControlError::Db {
            path: path.to_path_buf(),
            source,
        };
        // Sessions, token hashes and password hashes: 0600 (its -wal and -shm follow).
        crate::fsmode::secret_file(path).map_err(|source| ControlError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let conn = Connection::open(path).map_err(db)?;
        conn.execute_batch(
            "PRAGMA journal_mode=WAL;
             PRAGMA synchronous=FULL;
             PRAGMA busy_timeout=5000;
             CREATE TABLE IF NOT EXISTS agents (
                agent_id TEXT PRIMARY KEY, hostname TEXT NOT NULL, region TEXT NOT NULL,
                serial TEXT NOT NULL UNIQUE, enrolled_ns INTEGER NOT NULL, not_after INTEGER NOT NULL,
                revoked_ns INTEGER, last_seen_ns INTEGER);
             CREATE TABLE IF NOT EXISTS enroll_tokens (
                sha256 TEXT PRIMARY KEY, region TEXT NOT NULL, uses_left INTEGER NOT NULL,
                expires_ns INTEGER NOT NULL, created_ns INTEGER NOT NULL, note TEXT NOT NULL DEFAULT '');
             CREATE TABLE IF NOT EXISTS api_tokens (
                name TEXT PRIMARY KEY, role TEXT NOT NULL, sha256 TEXT NOT NULL UNIQUE,
                created_ns INTEGER NOT NULL, revoked_ns INTEGER);
             CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
             CREATE TABLE IF NOT EXISTS users (
                username TEXT PRIMARY KEY, role TEXT NOT NULL, password TEXT NOT NULL,
                created_ns INTEGER NOT NULL);
             CREATE TABLE IF NOT EXISTS mesh_certs (
                serial TEXT PRIMARY KEY, agent_id TEXT NOT NULL, spiffe TEXT NOT NULL,
                issued_ns INTEGER NOT NULL, not_after INTEGER NOT NULL);
             CREATE TABLE IF NOT EXISTS sessions (
                sha256 TEXT PRIMARY KEY, username TEXT NOT NULL, created_ns INTEGER NOT NULL,
                expires_ns INTEGER NOT NULL);
             CREATE TABLE IF NOT EXISTS evidence (
                agent_id TEXT NOT NULL, sha256 TEXT NOT NULL, hostname TEXT NOT NULL,
                size INTEGER NOT NULL, received_ns INTEGER NOT NULL, name TEXT NOT NULL,
                container TEXT NOT NULL, incident TEXT NOT NULL, alert_id TEXT NOT NULL,
                PRIMARY KEY (agent_id, sha256));
             CREATE TABLE IF NOT EXISTS agent_config (
                agent_id TEXT PRIMARY KEY, version INTEGER NOT NULL, applied_ns INTEGER NOT NULL,
                reported_ns INTEGER NOT NULL, refused TEXT);
             CREATE TABLE IF NOT EXISTS leases (
                job TEXT PRIMARY KEY, holder TEXT NOT NULL, expires_ns INTEGER NOT NULL);
             CREATE TABLE IF NOT EXISTS fleet_docs (
                kind TEXT NOT NULL, id TEXT NOT NULL, json TEXT NOT NULL, PRIMARY KEY (kind, id));",
        )
        .map_err(db)?;
        Ok(Control {
            path: path.to_path_buf(),
            backend: Backend::Sqlite(Mutex::new(conn)),
        })
    }

    /// Connects to the PostgreSQL control store at `url` (a `postgres://` URL or a
    /// `key=value` connection string; `password` overrides the one it names) and creates its
    /// tables when missing. Several servers may open the same database: what they change is
    /// seen by all, decided in transactions.
    pub fn open_postgres(url: &str, password: Option<&str>) -> Result<Control, ControlError> {
        let pg = pg::Pg::open(url, password)?;
        Ok(Control {
            path: PathBuf::from(&pg.name),
            backend: Backend::Postgres(pg),
        })
    }

    /// True when this control store is shared by a fleet (PostgreSQL).
    pub fn is_shared(&self) -> bool {
        matches!(self.backend, Backend::Postgres(_))
    }

    fn pg(&self) -> Option<&pg::Pg> {
        match &self.backend {
            Backend::Postgres(p) => Some(p),
            Backend::Sqlite(_) => None,
        }
    }

    fn with<T>(
        &self,
        f: impl FnOnce(&mut Connection) -> rusqlite::Result<T>,
    ) -> Result<T, ControlError> {
        let Backend::Sqlite(conn) = &self.backend else {
            return Err(ControlError::Refused(format!(
                "control store {}: an SQLite query reached the PostgreSQL backend",
                self.path.display()
            )));
        };
        let mut c = conn.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut c).map_err(|source| ControlError::Db {
            path: self.path.clone(),
            source,
        })
    }

    /// Creates an API token named `name` with `role`; returns the token (shown once).
    pub fn create_api_token(&self, name: &str, role: Role) -> Result<String, ControlError> {
        if name.is_empty() || name.len() > 64 || name.chars().any(char::is_whitespace) {
            return Err(ControlError::Refused(format!(
                "token name {name:?}: 1 to 64 characters, no spaces"
            )));
        }
        let token = format!("rmpa_{}", random_hex(20));
        let hash = token_hash(&token);
        let inserted = if let Some(pg) = self.pg() {
            usize::from(pg.insert_api_token(name, role, hash, now_ns())?)
        } else {
            self.with(|c| {
            c.execute(
                "INSERT OR IGNORE INTO api_tokens (name, role, sha256, created_ns) VALUES (?1, ?2, ?3, ?4)",
                params![name, role.as_str(), hash, now_ns() as i64],
            )
        })?
        };
        if inserted == 0 {
            return Err(ControlError::Refused(format!(
                "an API token named {name:?} exists already"
            )));
        }
        Ok(token)
    }

    /// The role of a presented API token, if it is valid and not revoked.
    pub fn api_token_role(&self, token: &str) -> Result<Option<(String, Role)>, ControlError> {
        let hash = token_hash(token);
        if let Some(pg) = self.pg() {
            let row = pg.api_token_role(hash)?;
            return Ok(row.and_then(|(n, r)| Role::parse(&r).map(|r| (n, r))));
        }
        let row: Option<(String, String)> = self.with(|c| {
            c.query_row(
                "SELECT name, role FROM api_tokens WHERE sha256 = ?1 AND revoked_ns IS NULL",
                params![hash],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
        })?;
        Ok(row.and_then(|(n, r)| Role::parse(&r).map(|r| (n, r))))
    }

    /// True when an admin token exists (not revoked).
    pub fn has_admin_token(&self) -> Result<bool, ControlError> {
        if let Some(pg) = self.pg() {
            return pg.has_admin_token();
        }
        self.with(|c| {
            c.query_row(
                "SELECT count(*) FROM api_tokens WHERE role = 'admin' AND revoked_ns IS NULL",
                [],
                |r| r.get::<_, i64>(0),
            )
        })
        .map(|n| n > 0)
    }

    /// Revokes the API token `name`; false when there is none.
    pub fn revoke_api_token(&self, name: &str) -> Result<bool, ControlError> {
        if let Some(pg) = self.pg() {
            return pg.revoke_api_token(name, now_ns());
        }
        self.with(|c| {
            c.execute(
                "UPDATE api_tokens SET revoked_ns = ?2 WHERE name = ?1 AND revoked_ns IS NULL",
                params![name, now_ns() as i64],
            )
        })
        .map(|n| n > 0)
    }

    /// Every API token, without secrets.
    pub fn api_tokens(&self) -> Result<Vec<TokenRecord>, ControlError> {
        if let Some(pg) = self.pg() {
            return pg.api_tokens();
        }
        self.with(|c| {
            let mut st = c.prepare(
                "SELECT name, role, created_ns, revoked_ns FROM api_tokens ORDER BY name",
            )?;
            let rows = st.query_map([], |r| {
                Ok(TokenRecord {
                    name: r.get(0)?,
                    role: Role::parse(&r.get::<_, String>(1)?).unwrap_or(Role::ReadOnly),
                    created_ns: r.get::<_, i64>(2)? as u64,
                    revoked_ns: r.get::<_, Option<i64>>(3)?.map(|v| v as u64),
                })
            })?;
            rows.collect()
        })
    }

    /// Creates an enrollment token secret for `region`, usable `uses` times within `ttl`.
    pub fn create_enroll_token(
        &self,
        region: &str,
        uses: u32,
        ttl: Duration,
        note: &str,
    ) -> Result<String, ControlError> {
        if !crate::config::valid_region(region) {
            return Err(ControlError::Refused(format!(
                "region {region:?}: lower-case letters, digits and '-', at most 32"
            )));
        }
        let secret = random_hex(16);
        let now = now_ns();
        if let Some(pg) = self.pg() {
            pg.insert_enroll_token(
                token_hash(&secret),
                region,
                uses,
                now.saturating_add(ttl.as_nanos() as u64),
                now,
                note,
            )?;
            return Ok(secret);
        }
        self.with(|c| {
            c.execute(
                "INSERT INTO enroll_tokens (sha256, region, uses_left, expires_ns, created_ns, note) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![
                    token_hash(&secret),
                    region,
                    uses.max(1),
                    now.saturating_add(ttl.as_nanos() as u64) as i64,
                    now as i64,
                    note
                ],
            )
        })?;
        Ok(secret)
    }

    /// Uses one enrollment of the token `secret`; what it grants, or why not.
    pub fn redeem_enroll_token(&self, secret: &str) -> Result<EnrollGrant, ControlError> {
        let hash = token_hash(secret);
        if let Some(pg) = self.pg() {
            return pg
                .redeem_enroll_token(hash, now_ns())?
                .map_err(|m| ControlError::Refused(m.to_string()));
        }
        let now = now_ns() as i64;
        let res = self.with(|c| {
            let tx = c.transaction()?;
            let row: Option<(String, i64, i64)> = tx
                .query_row(
                    "SELECT region, uses_left, expires_ns FROM enroll_tokens WHERE sha256 = ?1",
                    params![hash],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
                )
                .optional()?;
            let out = match row {
                None => Err("unknown enrollment token"),
                Some((_, uses, _)) if uses <= 0 => Err("enrollment token used up"),
                Some((_, _, exp)) if exp < now => Err("enrollment token expired"),
                Some((region, _, _)) => {
                    tx.execute(
                        "UPDATE enroll_tokens SET uses_left = uses_left - 1 WHERE sha256 = ?1",
                        params![hash],
                    )?;
                    Ok(EnrollGrant { region })
                }
            };
            tx.commit()?;
            Ok(out)
        })?;
        res.map_err(|m| ControlError::Refused(m.to_string()))
    }

    /// Adds dashboard user `username` with `role`; the password is kept as an Argon2id hash.
    pub fn add_user(&self, username: &str, role: Role, password: &str) -> Result<(), ControlError> {
        if username.is_empty()
            || username.len() > 64
            || !username
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "._@-".contains(c))
        {
            return Err(ControlError::Refused(format!(
                "user name {username:?}: 1 to 64 of letters, digits, '.', '_', '@', '-'"
            )));
        }
        if password.chars().count() < MIN_PASSWORD_LEN {
            return Err(ControlError::Refused(format!(
                "the password of {username:?} is shorter than {MIN_PASSWORD_LEN} characters"
            )));
        }
        let phc = hash_password(password)?;
        let inserted = if let Some(pg) = self.pg() {
            usize::from(pg.insert_user(username, role, phc, now_ns())?)
        } else {
            self.with(|c| {
                c.execute(
                    "INSERT OR IGNORE INTO users (username, role, password, created_ns) VALUES (?1, ?2, ?3, ?4)",
                    params![username, role.as_str(), phc, now_ns() as i64],
                )
            })?
        };
        if inserted == 0 {
            return Err(ControlError::Refused(format!(
                "a user named {username:?} exists already"
            )));
        }
        Ok(())
    }

    /// Removes user `username` and ends their sessions; false when there is none.
    pub fn remove_user(&self, username: &str) -> Result<bool, ControlError> {
        if let Some(pg) = self.pg() {
            return pg.remove_user(username);
        }
        self.with(|c| {
            let tx = c.transaction()?;
            tx.execute(
                "DELETE FROM sessions WHERE username = ?1",
                params![username],
            )?;
            let n = tx.execute("DELETE FROM users WHERE username = ?1", params![username])?;
            tx.commit()?;
            Ok(n > 0)
        })
    }

    /// Every dashboard user.
    pub fn users(&self) -> Result<Vec<UserRecord>, ControlError> {
        if let Some(pg) = self.pg() {
            return pg.users();
        }
        self.with(|c| {
            let mut st =
                c.prepare("SELECT username, role, created_ns FROM users ORDER BY username")?;
            let rows = st.query_map([], |r| {
                Ok(UserRecord {
                    username: r.get(0)?,
                    role: Role::parse(&r.get::<_, String>(1)?).unwrap_or(Role::ReadOnly),
                    created_ns: r.get::<_, i64>(2)? as u64,
                })
            })?;
            rows.collect()
        })
    }

    /// The role of `username` when `password` is theirs. An unknown user costs the same
    /// password check as a known one.
    pub fn check_password(
        &self,
        username: &str,
        password: &str,
    ) -> Result<Option<Role>, ControlError> {
        let row: Option<(String, String)> = if let Some(pg) = self.pg() {
            pg.user_password(username)?
        } else {
            self.with(|c| {
                c.query_row(
                    "SELECT role, password FROM users WHERE username = ?1",
                    params![username],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()
            })?
        };
        Ok(match row {
            Some((role, phc)) => {
                if password_matches(&phc, password) {
                    Role::parse(&role)
                } else {
                    None
                }
            }
            None => {
                let _ = password_matches(dummy_hash(), password);
                None
            }
        })
    }

    /// Starts a session of `username` valid for `ttl`; returns its token (kept only hashed).
    pub fn create_session(&self, username: &str, ttl: Duration) -> Result<String, ControlError> {
        let token = format!("rmps_{}", random_hex(32));
        let now = now_ns();
        if let Some(pg) = self.pg() {
            pg.insert_session(
                token_hash(&token),
                username,
                now,
                now.saturating_add(ttl.as_nanos() as u64),
            )?;
            return Ok(token);
        }
        self.with(|c| {
            c.execute("DELETE FROM sessions WHERE expires_ns < ?1", params![now as i64])?;
            c.execute(
                "INSERT INTO sessions (sha256, username, created_ns, expires_ns) VALUES (?1, ?2, ?3, ?4)",
                params![
                    token_hash(&token),
                    username,
                    now as i64,
                    now.saturating_add(ttl.as_nanos() as u64) as i64
                ],
            )
        })?;
        Ok(token)
    }

    /// The session of `token` if it is valid (not expired, its user still exists); the role
    /// is the user's current one.
    pub fn session(&self, token: &str) -> Result<Option<Session>, ControlError> {
        let row: Option<(String, String, i64)> = if let Some(pg) = self.pg() {
            pg.session(token_hash(token), now_ns())?
        } else {
            self.with(|c| {
            c.query_row(
                "SELECT s.username, u.role, s.expires_ns FROM sessions s JOIN users u ON u.username = s.username
                 WHERE s.sha256 = ?1 AND s.expires_ns > ?2",
                params![token_hash(token), now_ns() as i64],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .optional()
        })?
        };
        Ok(row.and_then(|(username, role, exp)| {
            Role::parse(&role).map(|role| Session {
                username,
                role,
                expires_ns: exp as u64,
            })
        }))
    }

    /// Ends the session of `token`.
    pub fn end_session(&self, token: &str) -> Result<(), ControlError> {
        if let Some(pg) = self.pg() {
            return pg.end_session(token_hash(token));
        }
        self.with(|c| {
            c.execute(
                "DELETE FROM sessions WHERE sha256 = ?1",
                params![token_hash(token)],
            )
        })
        .map(|_| ())
    }

    /// Records an enrolled agent.
    pub fn add_agent(&self, a: &AgentRecord) -> Result<(), ControlError> {
        if let Some(pg) = self.pg() {
            return pg.add_agent(a, false).map(|_| ());
        }
        self.with(|c| {
            c.execute(
                "INSERT INTO agents (agent_id, hostname, region, serial, enrolled_ns, not_after) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![a.agent_id, a.hostname, a.region, a.serial, a.enrolled_ns as i64, a.not_after],
            )
        })
        .map(|_| ())
    }

    /// Records an enrolled agent unless a host of the same name is enrolled and not revoked
    /// (names compared as DNS does: case and a trailing dot ignored): then
    /// [`ControlError::Refused`] naming the agent that holds it. Check and insert are one
    /// transaction, so two enrollments racing for one name cannot both succeed.
    pub fn add_agent_unique(&self, a: &AgentRecord) -> Result<(), ControlError> {
        let norm = |h: &str| h.trim_end_matches('.').to_ascii_lowercase();
        let want = norm(&a.hostname);
        let taken = if let Some(pg) = self.pg() {
            pg.add_agent(a, true)?
        } else {
            self.with(|c| {
            let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            let holder = {
                let mut st =
                    tx.prepare("SELECT agent_id, hostname FROM agents WHERE revoked_ns IS NULL")?;
                let rows = st.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?;
                let mut holder = None;
                for row in rows {
                    let (id, host) = row?;
                    if norm(&host) == want {
                        holder = Some((id, host));
                        break;
                    }
                }
                holder
            };
            if holder.is_none() {
                tx.execute(
                    "INSERT INTO agents (agent_id, hostname, region, serial, enrolled_ns, not_after) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                    params![a.agent_id, a.hostname, a.region, a.serial, a.enrolled_ns as i64, a.not_after],
                )?;
            }
            tx.commit()?;
            Ok(holder)
        })?
        };
        match taken {
            None => Ok(()),
            Some((id, host)) => Err(ControlError::Refused(format!(
                "host name {:?} is enrolled as agent {id} ({host:?}), which is not revoked: a second agent may not speak for it; if this is that host reinstalled, revoke the old agent first (rampart server agents revoke {id})",
                a.hostname
            ))),
        }
    }

    /// Every agent.
    pub fn agents(&self) -> Result<Vec<AgentRecord>, ControlError> {
        if let Some(pg) = self.pg() {
            return pg.agents();
        }
        self.with(|c| {
            let mut st = c.prepare(
                "SELECT agent_id, hostname, region, serial, enrolled_ns, not_after, revoked_ns, last_seen_ns FROM agents ORDER BY enrolled_ns",
            )?;
            let rows = st.query_map([], |r| {
                Ok(AgentRecord {
                    agent_id: r.get(0)?,
                    hostname: r.get(1)?,
                    region: r.get(2)?,
                    serial: r.get(3)?,
                    enrolled_ns: r.get::<_, i64>(4)? as u64,
                    not_after: r.get(5)?,
                    revoked_ns: r.get::<_, Option<i64>>(6)?.map(|v| v as u64),
                    last_seen_ns: r.get::<_, Option<i64>>(7)?.map(|v| v as u64),
                })
            })?;
            rows.collect()
        })
    }

    /// The host name and enrollment time (ns) recorded when `agent_id` enrolled.
    pub fn agent_enrollment(&self, agent_id: &str) -> Result<Option<(String, u64)>, ControlError> {
        if let Some(pg) = self.pg() {
            return pg.agent_enrollment(agent_id);
        }
        self.with(|c| {
            let mut st =
                c.prepare_cached("SELECT hostname, enrolled_ns FROM agents WHERE agent_id = ?1")?;
            let mut rows = st.query_map(params![agent_id], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)? as u64))
            })?;
            rows.next().transpose()
        })
    }

    /// Records a stored forensic bundle of `r.agent_id` (once: a second upload of the same
    /// bundle by the same agent keeps the first record). Returns the record kept, with
    /// `duplicate` set when it was there before.
    pub fn add_evidence(&self, r: &EvidenceReceipt) -> Result<EvidenceReceipt, ControlError> {
        self.add_evidence_on(r, "")
    }

    /// [`add_evidence`](Self::add_evidence), naming the server whose data directory holds
    /// the bundle (kept with a shared control store, where every server lists the fleet's
    /// bundles but only that one has the bytes).
    pub fn add_evidence_on(
        &self,
        r: &EvidenceReceipt,
        server: &str,
    ) -> Result<EvidenceReceipt, ControlError> {
        if let Some(pg) = self.pg() {
            let inserted = pg.add_evidence(r, server)?;
            let mut kept = self.evidence_of(&r.agent_id, &r.sha256)?.ok_or_else(|| {
                ControlError::Refused(format!(
                    "evidence {} of {}: not recorded",
                    r.sha256, r.agent_id
                ))
            })?;
            kept.duplicate = inserted == 0;
            return Ok(kept);
        }
        let inserted = self.with(|c| {
            c.execute(
                "INSERT OR IGNORE INTO evidence (agent_id, sha256, hostname, size, received_ns, name, container, incident, alert_id)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                params![
                    r.agent_id,
                    r.sha256,
                    r.hostname,
                    r.size as i64,
                    r.received_ns as i64,
                    r.name,
                    r.container,
                    r.incident,
                    r.alert_id
                ],
            )
        })?;
        let mut kept = self.evidence_of(&r.agent_id, &r.sha256)?.ok_or_else(|| {
            ControlError::Refused(format!(
                "evidence {} of {}: not recorded",
                r.sha256, r.agent_id
            ))
        })?;
        kept.duplicate = inserted == 0;
        Ok(kept)
    }

    /// The record of bundle `sha256` uploaded by `agent_id`.
    pub fn evidence_of(
        &self,
        agent_id: &str,
        sha256: &str,
    ) -> Result<Option<EvidenceReceipt>, ControlError> {
        let f = EvidenceFilter {
            agent: Some(agent_id.to_string()),
            sha256: Some(sha256.to_string()),
            ..EvidenceFilter::default()
        };
        Ok(self.evidence(&f)?.into_iter().next())
    }

    /// Stored forensic bundles matching `f`, newest first.
    pub fn evidence(&self, f: &EvidenceFilter) -> Result<Vec<EvidenceReceipt>, ControlError> {
        let limit = match f.limit {
            0 => 1000,
            n => n.min(10_000),
        } as i64;
        if let Some(pg) = self.pg() {
            return pg.evidence(f, limit);
        }
        self.with(|c| {
            let mut st = c.prepare_cached(
                "SELECT agent_id, sha256, hostname, size, received_ns, name, container, incident, alert_id
                 FROM evidence
                 WHERE (?1 IS NULL OR agent_id = ?1) AND (?2 IS NULL OR sha256 = ?2)
                   AND (?3 IS NULL OR hostname = ?3) AND (?4 IS NULL OR container = ?4 OR name = ?4)
                   AND (?5 IS NULL OR incident = ?5) AND (?6 IS NULL OR alert_id = ?6)
                 ORDER BY received_ns DESC LIMIT ?7",
            )?;
            let rows = st.query_map(
                params![f.agent, f.sha256, f.host, f.container, f.incident, f.alert, limit],
                |r| {
                    Ok(EvidenceReceipt {
                        agent_id: r.get(0)?,
                        sha256: r.get(1)?,
                        hostname: r.get(2)?,
                        size: r.get::<_, i64>(3)? as u64,
                        received_ns: r.get::<_, i64>(4)? as u64,
                        name: r.get(5)?,
                        container: r.get(6)?,
                        incident: r.get(7)?,
                        alert_id: r.get(8)?,
                        duplicate: false,
                    })
                },
            )?;
            rows.collect()
        })
    }

    /// Bytes of forensic bundles `agent_id` has stored.
    pub fn evidence_bytes(&self, agent_id: &str) -> Result<u64, ControlError> {
        if let Some(pg) = self.pg() {
            return pg.evidence_bytes(agent_id);
        }
        self.with(|c| {
            c.query_row(
                "SELECT COALESCE(SUM(size), 0) FROM evidence WHERE agent_id = ?1",
                params![agent_id],
                |r| r.get::<_, i64>(0),
            )
        })
        .map(|n| n.max(0) as u64)
    }

    /// The servers holding bundle `sha256`'s bytes (with a shared control store; empty
    /// otherwise, and for bundles recorded before it was shared).
    pub fn evidence_servers(&self, sha256: &str) -> Result<Vec<String>, ControlError> {
        match self.pg() {
            Some(pg) => pg.evidence_servers(sha256),
            None => Ok(Vec::new()),
        }
    }

    /// Marks agent `agent_id` revoked; false when unknown or already revoked.
    pub fn revoke_agent(&self, agent_id: &str) -> Result<bool, ControlError> {
        if let Some(pg) = self.pg() {
            return pg.revoke_agent(agent_id, now_ns());
        }
        self.with(|c| {
            c.execute(
                "UPDATE agents SET revoked_ns = ?2 WHERE agent_id = ?1 AND revoked_ns IS NULL",
                params![agent_id, now_ns() as i64],
            )
        })
        .map(|n| n > 0)
    }

    /// Records a mesh certificate (`docs/mesh.md`) issued to agent `agent_id`, so that revoking
    /// the agent revokes it too.
    pub fn record_mesh_cert(
        &self,
        agent_id: &str,
        serial: &[u8],
        spiffe: &str,
        not_after_secs: i64,
    ) -> Result<(), ControlError> {
        if let Some(pg) = self.pg() {
            // Fleet-wide: every server's CRL lists it once its agent is revoked.
            return pg.record_mesh_cert(
                agent_id,
                hex::encode(serial),
                spiffe,
                now_ns(),
                not_after_secs,
            );
        }
        self.with(|c| {
            c.execute(
                "INSERT INTO mesh_certs (serial, agent_id, spiffe, issued_ns, not_after) \
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                params![
                    hex::encode(serial),
                    agent_id,
                    spiffe,
                    now_ns() as i64,
                    not_after_secs
                ],
            )
        })
        .map(|_| ())
    }

    /// Serials (bytes) and revocation times of every revoked agent certificate, and of every
    /// unexpired mesh certificate a revoked agent obtained.
    pub fn revoked_serials(&self) -> Result<Vec<(Vec<u8>, SystemTime)>, ControlError> {
        let now_secs = (now_ns() / 1_000_000_000) as i64;
        // Mesh certificates are recorded where agents are (the shared control store too), so
        // every server's CRL lists a revoked agent's mesh certificates whichever issued them.
        let rows: Vec<(String, i64)> = if let Some(pg) = self.pg() {
            pg.revoked(now_secs)?
        } else {
            self.with(|c| {
                let mut st = c.prepare(
                    "SELECT serial, revoked_ns FROM agents WHERE revoked_ns IS NOT NULL \
                     UNION ALL SELECT m.serial, a.revoked_ns FROM mesh_certs m \
                     JOIN agents a ON a.agent_id = m.agent_id \
                     WHERE a.revoked_ns IS NOT NULL AND m.not_after > ?1",
                )?;
                let rows = st.query_map(params![now_secs], |r| Ok((r.get(0)?, r.get(1)?)))?;
                rows.collect()
            })?
        };
        Ok(rows
            .into_iter()
            .filter_map(|(s, t)| Some((hex::decode(s).ok()?, ns_to_time(t as u64))))
            .collect())
    }

    /// Records when agents were last heard from.
    pub fn touch_agents(&self, seen: &[(String, u64)]) -> Result<(), ControlError> {
        if let Some(pg) = self.pg() {
            return pg.touch_agents(seen);
        }
        self.with(|c| {
            let tx = c.transaction()?;
            for (id, ns) in seen {
                tx.execute(
                    "UPDATE agents SET last_seen_ns = max(coalesce(last_seen_ns, 0), ?2) WHERE agent_id = ?1",
                    params![id, *ns as i64],
                )?;
            }
            tx.commit()
        })
    }

    /// Records what fleet configuration agent `agent_id` runs (its report with every
    /// configuration poll, see `crate::fleetconfig`).
    pub fn record_config_report(
        &self,
        agent_id: &str,
        r: &crate::fleetconfig::ConfigReport,
    ) -> Result<(), ControlError> {
        if let Some(pg) = self.pg() {
            return pg.record_config_report(agent_id, r);
        }
        self.with(|c| {
            c.execute(
                "INSERT INTO agent_config (agent_id, version, applied_ns, reported_ns, refused) VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT(agent_id) DO UPDATE SET version = excluded.version, applied_ns = excluded.applied_ns,
                 reported_ns = excluded.reported_ns, refused = excluded.refused",
                params![
                    agent_id,
                    r.version as i64,
                    r.applied_ns as i64,
                    r.reported_ns as i64,
                    r.refused
                ],
            )
        })
        .map(|_| ())
    }

    /// The last fleet-configuration report of every agent that sent one, by agent id.
    pub fn config_reports(
        &self,
    ) -> Result<BTreeMap<String, crate::fleetconfig::ConfigReport>, ControlError> {
        if let Some(pg) = self.pg() {
            return pg.config_reports();
        }
        self.with(|c| {
            let mut st = c.prepare(
                "SELECT agent_id, version, applied_ns, reported_ns, refused FROM agent_config",
            )?;
            let rows = st.query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    crate::fleetconfig::ConfigReport {
                        version: r.get::<_, i64>(1)? as u64,
                        applied_ns: r.get::<_, i64>(2)? as u64,
                        reported_ns: r.get::<_, i64>(3)? as u64,
                        refused: r.get(4)?,
                    },
                ))
            })?;
            rows.collect()
        })
    }

    /// Allocates the version of a fleet configuration about to be published: `requested`
    /// when given (it must be above every version allocated before), else one more than the
    /// highest. Versions never go down, even when a publish fails after allocating one.
    pub fn next_config_version(&self, requested: Option<u64>) -> Result<u64, ControlError> {
        if let Some(pg) = self.pg() {
            // One statement: servers publishing at once get different versions.
            return match pg.next_config_version(requested)? {
                Ok(v) => Ok(v),
                Err(cur) => Err(ControlError::Refused(format!(
                    "version {}: fleet configuration versions only go up (version {cur} was already published)",
                    requested.unwrap_or(0)
                ))),
            };
        }
        self.with(|c| {
            let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            let cur: Option<String> = tx
                .query_row(
                    "SELECT value FROM meta WHERE key = 'fleet_config_version'",
                    [],
                    |r| r.get(0),
                )
                .optional()?;
            let cur = cur.and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
            let next = match requested {
                Some(v) if v <= cur => return Ok(Err(cur)),
                Some(v) => v,
                None => cur + 1,
            };
            tx.execute(
                "INSERT INTO meta (key, value) VALUES ('fleet_config_version', ?1) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                params![next.to_string()],
            )?;
            tx.commit()?;
            Ok(Ok(next))
        })?
        .map_err(|cur| {
            ControlError::Refused(format!(
                "version {}: fleet configuration versions only go up (version {cur} was already published)",
                requested.unwrap_or(0)
            ))
        })
    }

    /// The next CRL number (monotonic).
    pub fn next_crl_number(&self) -> Result<u64, ControlError> {
        if let Some(pg) = self.pg() {
            return pg.next_crl_number();
        }
        self.with(|c| {
            let tx = c.transaction()?;
            let cur: Option<String> = tx
                .query_row("SELECT value FROM meta WHERE key = 'crl_number'", [], |r| r.get(0))
                .optional()?;
            let next = cur.and_then(|v| v.parse::<u64>().ok()).unwrap_or(0) + 1;
            tx.execute(
                "INSERT INTO meta (key, value) VALUES ('crl_number', ?1) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                params![next.to_string()],
            )?;
            tx.commit()?;
            Ok(next)
        })
    }
}

impl Control {
    /// The fleet's one CA as `(ca.crt, ca.key, ca.json)` contents, for a shared control store:
    /// the stored CA, or when none is stored yet, `make()`'s (this server's own), stored for
    /// every other server. `None` for a control store of one server (SQLite).
    pub fn fleet_ca(
        &self,
        make: impl FnOnce() -> Result<crate::ca::CaFiles, String> + Send + 'static,
    ) -> Result<Option<crate::ca::CaFiles>, ControlError> {
        let Some(pg) = self.pg() else {
            return Ok(None);
        };
        pg.fleet_ca(Box::new(make), now_ns())?
            .map(Some)
            .map_err(ControlError::Refused)
    }

    /// Takes or renews the lease on fleet job `job` for `holder`, valid for `ttl`: true when
    /// `holder` now holds it (it held it already, or nobody held it, or the holder's lease
    /// ran out without renewal). One server of a fleet holds a lease at a time, so a job run
    /// only while holding it runs once per fleet; a server that dies loses it after `ttl`.
    pub fn lease(&self, job: &str, holder: &str, ttl: Duration) -> Result<bool, ControlError> {
        let now = now_ns();
        let until = now.saturating_add(ttl.as_nanos() as u64);
        if let Some(pg) = self.pg() {
            return pg.lease(job, holder, now, until);
        }
        self.with(|c| {
            c.query_row(
                "INSERT INTO leases (job, holder, expires_ns) VALUES (?1, ?2, ?3)
                 ON CONFLICT (job) DO UPDATE SET holder = excluded.holder, expires_ns = excluded.expires_ns
                 WHERE leases.holder = excluded.holder OR leases.expires_ns < ?4
                 RETURNING holder",
                params![job, holder, until as i64, now as i64],
                |_| Ok(()),
            )
            .optional()
            .map(|r| r.is_some())
        })
    }

    /// Stores (inserts or replaces) documents of `kind` by id, in one transaction: the fleet
    /// correlator's incidents, shared by every server of a fleet.
    pub fn put_docs(&self, kind: &str, docs: Vec<(String, String)>) -> Result<(), ControlError> {
        if let Some(pg) = self.pg() {
            return pg.put_docs(kind, docs);
        }
        self.with(|c| {
            let tx = c.transaction()?;
            for (id, json) in &docs {
                tx.execute(
                    "INSERT OR REPLACE INTO fleet_docs (kind, id, json) VALUES (?1, ?2, ?3)",
                    params![kind, id, json],
                )?;
            }
            tx.commit()
        })
    }

    /// Stores document `id` of `kind` only when there is none yet, in one statement: true
    /// when this call stored it. The fleet claims each deadline alert this way before raising
    /// it, so a server taking the fleet jobs over raises none a second time.
    pub fn claim_doc(&self, kind: &str, id: &str, json: &str) -> Result<bool, ControlError> {
        if let Some(pg) = self.pg() {
            return pg.claim_doc(kind, id, json);
        }
        self.with(|c| {
            c.execute(
                "INSERT INTO fleet_docs (kind, id, json) VALUES (?1, ?2, ?3) ON CONFLICT (kind, id) DO NOTHING",
                params![kind, id, json],
            )
            .map(|n| n == 1)
        })
    }

    /// Document `id` of `kind`, when stored.
    pub fn doc(&self, kind: &str, id: &str) -> Result<Option<String>, ControlError> {
        if let Some(pg) = self.pg() {
            return pg.doc(kind, id);
        }
        self.with(|c| {
            c.query_row(
                "SELECT json FROM fleet_docs WHERE kind = ?1 AND id = ?2",
                params![kind, id],
                |r| r.get(0),
            )
            .optional()
        })
    }

    /// The document of `kind` with the highest id (ids compared as text), as (id, JSON).
    pub fn last_doc(&self, kind: &str) -> Result<Option<(String, String)>, ControlError> {
        if let Some(pg) = self.pg() {
            return pg.last_doc(kind);
        }
        self.with(|c| {
            c.query_row(
                "SELECT id, json FROM fleet_docs WHERE kind = ?1 ORDER BY id DESC LIMIT 1",
                params![kind],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
        })
    }

    /// Deletes the documents of `kind` whose id is not in `keep`, in one statement.
    pub fn retain_docs(&self, kind: &str, keep: &[String]) -> Result<(), ControlError> {
        if let Some(pg) = self.pg() {
            return pg.retain_docs(kind, keep);
        }
        self.with(|c| {
            let tx = c.transaction()?;
            let ids: Vec<String> = {
                let mut st = tx.prepare("SELECT id FROM fleet_docs WHERE kind = ?1")?;
                let rows = st.query_map(params![kind], |r| r.get::<_, String>(0))?;
                rows.collect::<Result<_, _>>()?
            };
            for id in ids.iter().filter(|i| !keep.contains(i)) {
                tx.execute(
                    "DELETE FROM fleet_docs WHERE kind = ?1 AND id = ?2",
                    params![kind, id],
                )?;
            }
            tx.commit()
        })
    }

    /// Every document of `kind`, as (id, JSON), by id.
    pub fn docs(&self, kind: &str) -> Result<Vec<(String, String)>, ControlError> {
        if let Some(pg) = self.pg() {
            return pg.docs(kind);
        }
        self.with(|c| {
            let mut st =
                c.prepare("SELECT id, json FROM fleet_docs WHERE kind = ?1 ORDER BY id")?;
            let rows = st.query_map(params![kind], |r| Ok((r.get(0)?, r.get(1)?)))?;
            rows.collect()
        })
    }

    /// The value of `key` a lease holder saved with [`Control::put_leased`].
    pub fn leased_value(&self, key: &str) -> Result<Option<String>, ControlError> {
        if let Some(pg) = self.pg() {
            return pg.meta(key);
        }
        self.with(|c| {
            c.query_row("SELECT value FROM meta WHERE key = ?1", params![key], |r| {
                r.get(0)
            })
            .optional()
        })
    }

    /// Saves `value` under `key` only while `holder` holds the lease on `job` (in one
    /// statement, so a server that lost the lease cannot overwrite its successor's value);
    /// false when it does not hold it.
    pub fn put_leased(
        &self,
        key: &str,
        value: &str,
        job: &str,
        holder: &str,
    ) -> Result<bool, ControlError> {
        let now = now_ns();
        if let Some(pg) = self.pg() {
            return pg.put_meta_leased(key, value, job, holder, now);
        }
        self.with(|c| {
            c.query_row(
                "INSERT INTO meta (key, value) SELECT ?1, ?2 WHERE EXISTS
                    (SELECT 1 FROM leases WHERE job = ?3 AND holder = ?4 AND expires_ns >= ?5)
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value
                 RETURNING key",
                params![key, value, job, holder, now as i64],
                |_| Ok(()),
            )
            .optional()
            .map(|r| r.is_some())
        })
    }

    /// Gives up `holder`'s lease on `job`, so another server may take it at once.
    pub fn release(&self, job: &str, holder: &str) -> Result<(), ControlError> {
        if let Some(pg) = self.pg() {
            return pg.release(job, holder);
        }
        self.with(|c| {
            c.execute(
                "DELETE FROM leases WHERE job = ?1 AND holder = ?2",
                params![job, holder],
            )
        })
        .map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_roles_and_enrollment_grants() {
        let dir = tempfile::tempdir().expect("tempdir");
        let c = Control::open(&dir.path().join("control.db")).expect("open");
        assert!(!c.has_admin_token().expect("query"));
        let t = c.create_api_token("alice", Role::Analyst).expect("create");
        assert_eq!(
            c.api_token_role(&t).expect("lookup"),
            Some(("alice".into(), Role::Analyst))
        );
        assert!(
            c.create_api_token("alice", Role::Admin).is_err(),
            "names are unique"
        );
        assert_eq!(c.api_token_role("rmpa_wrong").expect("lookup"), None);
        assert!(c.revoke_api_token("alice").expect("revoke"));
        assert_eq!(c.api_token_role(&t).expect("lookup"), None);

        let s = c
            .create_enroll_token("eu-de", 2, Duration::from_secs(60), "")
            .expect("token");
        assert_eq!(c.redeem_enroll_token(&s).expect("1st").region, "eu-de");
        c.redeem_enroll_token(&s).expect("2nd");
        let err = c.redeem_enroll_token(&s).expect_err("used up");
        assert!(err.to_string().contains("used up"), "{err}");
        let expired = c
            .create_enroll_token("sg", 1, Duration::ZERO, "")
            .expect("token");
        std::thread::sleep(Duration::from_millis(2));
        assert!(c.redeem_enroll_token(&expired).is_err());
        assert!(c
            .create_enroll_token("EU", 1, Duration::from_secs(1), "")
            .is_err());
        assert_eq!(c.next_crl_number().expect("n"), 1);
        assert_eq!(c.next_crl_number().expect("n"), 2);
    }

    #[test]
    fn users_passwords_and_sessions() {
        let dir = tempfile::tempdir().expect("tempdir");
        let c = Control::open(&dir.path().join("control.db")).expect("open");
        c.add_user("ann", Role::Analyst, "correct horse battery")
            .expect("add");
        assert!(c.add_user("ann", Role::Admin, "another long one").is_err());
        assert!(c.add_user("bob", Role::Admin, "short").is_err());
        assert!(c
            .add_user("b b", Role::Admin, "long enough password")
            .is_err());
        assert_eq!(
            c.check_password("ann", "correct horse battery")
                .expect("check"),
            Some(Role::Analyst)
        );
        assert_eq!(c.check_password("ann", "wrong").expect("check"), None);
        assert_eq!(c.check_password("nobody", "x").expect("check"), None);
        let stored: String = c
            .with(|c| c.query_row("SELECT password FROM users", [], |r| r.get(0)))
            .expect("row");
        assert!(stored.starts_with("$argon2id$"), "{stored}");
        assert!(!stored.contains("horse"));

        let t = c
            .create_session("ann", Duration::from_secs(60))
            .expect("session");
        let s = c.session(&t).expect("lookup").expect("valid");
        assert_eq!((s.username.as_str(), s.role), ("ann", Role::Analyst));
        assert_eq!(c.session("rmps_wrong").expect("lookup"), None);
        c.end_session(&t).expect("logout");
        assert_eq!(c.session(&t).expect("lookup"), None);
        let expired = c.create_session("ann", Duration::ZERO).expect("session");
        std::thread::sleep(Duration::from_millis(2));
        assert_eq!(c.session(&expired).expect("lookup"), None);
        let t2 = c
            .create_session("ann", Duration::from_secs(60))
            .expect("session");
        assert!(c.remove_user("ann").expect("remove"));
        assert_eq!(
            c.session(&t2).expect("lookup"),
            None,
            "removed users lose their sessions"
        );
        assert_eq!(c.users().expect("list"), vec![]);
    }
}
