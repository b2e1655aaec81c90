//! The control database in PostgreSQL (`control_store:` in `server.yaml`), shared by several
//! servers of one fleet. Same tables as the SQLite database (times as `BIGINT` nanoseconds),
//! plus `fleet_ca` (the fleet's one CA) and `leases` (which server runs a fleet job).
//!
//! Consistency across servers comes from single statements that check and change in one step
//! (`UPDATE ... WHERE uses_left > 0 ... RETURNING`, `INSERT ... ON CONFLICT`), and where a
//! decision reads several rows, from a transaction holding an advisory lock: no read, decide
//! and write back, so two servers cannot both spend the last use of a token.
//!
//! The `postgres` crate's client runs its own small runtime and may not be called from inside
//! a tokio runtime, while the control store's callers are (its interface is synchronous, as
//! SQLite's is). So connections live on a few worker threads of their own; a call sends the
//! query to them and waits for the answer, as a SQLite call waits for the disk.

use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use postgres::{Client, NoTls};

use crate::ca::CaFiles;

use super::{AgentRecord, ControlError, EnrollGrant, Role, TokenRecord, UserRecord};

/// Worker threads (connections) per server.
const CONNECTIONS: usize = 4;

/// Advisory lock keys (an arbitrary constant each; pg_advisory_xact_lock takes a bigint).
pub(super) const LOCK_SCHEMA: i64 = 0x7261_6d70_0001;
pub(super) const LOCK_ENROLL: i64 = 0x7261_6d70_0002;
pub(super) const LOCK_CA: i64 = 0x7261_6d70_0003;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS agents (
    agent_id TEXT PRIMARY KEY, hostname TEXT NOT NULL, region TEXT NOT NULL,
    serial TEXT NOT NULL UNIQUE, enrolled_ns BIGINT NOT NULL, not_after BIGINT NOT NULL,
    revoked_ns BIGINT, last_seen_ns BIGINT);
CREATE TABLE IF NOT EXISTS enroll_tokens (
    sha256 TEXT PRIMARY KEY, region TEXT NOT NULL, uses_left BIGINT NOT NULL,
    expires_ns BIGINT NOT NULL, created_ns BIGINT NOT NULL, note TEXT NOT NULL DEFAULT '');
CREATE TABLE IF NOT EXISTS api_tokens (
    name TEXT PRIMARY KEY, role TEXT NOT NULL, sha256 TEXT NOT NULL UNIQUE,
    created_ns BIGINT NOT NULL, revoked_ns BIGINT);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS users (
    username TEXT PRIMARY KEY, role TEXT NOT NULL, password TEXT NOT NULL,
    created_ns BIGINT NOT NULL);
CREATE TABLE IF NOT EXISTS sessions (
    sha256 TEXT PRIMARY KEY, username TEXT NOT NULL, created_ns BIGINT NOT NULL,
    expires_ns BIGINT NOT NULL);
CREATE TABLE IF NOT EXISTS fleet_ca (
    id INTEGER PRIMARY KEY CHECK (id = 1), cert_pem TEXT NOT NULL, key_pem TEXT NOT NULL,
    meta_json TEXT NOT NULL, created_ns BIGINT NOT NULL);
CREATE TABLE IF NOT EXISTS leases (
    job TEXT PRIMARY KEY, holder TEXT NOT NULL, expires_ns BIGINT NOT NULL);
CREATE TABLE IF NOT EXISTS fleet_docs (
    kind TEXT NOT NULL, id TEXT NOT NULL, json TEXT NOT NULL, PRIMARY KEY (kind, id));
CREATE TABLE IF NOT EXISTS mesh_certs (
    serial TEXT PRIMARY KEY, agent_id TEXT NOT NULL, spiffe TEXT NOT NULL,
    issued_ns BIGINT NOT NULL, not_after BIGINT NOT NULL);
CREATE TABLE IF NOT EXISTS evidence (
    agent_id TEXT NOT NULL, sha256 TEXT NOT NULL, hostname TEXT NOT NULL,
    size BIGINT NOT NULL, received_ns BIGINT NOT NULL, name TEXT NOT NULL,
    container TEXT NOT NULL, incident TEXT NOT NULL, alert_id TEXT NOT NULL,
    server TEXT NOT NULL DEFAULT '', PRIMARY KEY (agent_id, sha256));
CREATE TABLE IF NOT EXISTS agent_config (
    agent_id TEXT PRIMARY KEY, version BIGINT NOT NULL, applied_ns BIGINT NOT NULL,
    reported_ns BIGINT NOT NULL, refused TEXT);
";

/// A connection of a worker thread and when it last answered.
type Slot = Option<(Client, std::time::Instant)>;

type Job = Box<dyn FnOnce(&mut Slot) + Send>;

/// A connection idle this long is checked (one round trip) before use, so that a database
/// restart in between costs a reconnect, not a failed call.
const CHECK_AFTER_IDLE: Duration = Duration::from_secs(1);

/// A small pool of PostgreSQL connections on their own threads.
pub(super) struct Pg {
    jobs: Mutex<mpsc::Sender<Job>>,
    config: Arc<postgres::Config>,
    /// The connection string without its password, for messages.
    pub(super) name: String,
}

/// `url` without a password (`postgres://user:secret@host/db` → `postgres://user@host/db`;
/// key=value strings lose their `password=` pair).
pub(super) fn redact(url: &str) -> String {
    if let Some(rest) = url
        .strip_prefix("postgres://")
        .or_else(|| url.strip_prefix("postgresql://"))
    {
        let scheme = &url[..url.len() - rest.len()];
        let (auth_end, host) = match rest.rfind('@') {
            Some(at) => (at, &rest[at..]),
            None => return url.to_string(),
        };
        let user = rest[..auth_end].split(':').next().unwrap_or("");
        return format!("{scheme}{user}{host}");
    }
    url.split_whitespace()
        .filter(|kv| !kv.starts_with("password="))
        .collect::<Vec<_>>()
        .join(" ")
}

impl Pg {
    /// Connects to `url` (a `postgres://` URL or `key=value` string), with `password` when
    /// given, and creates the tables when missing.
    pub(super) fn open(url: &str, password: Option<&str>) -> Result<Pg, ControlError> {
        let name = redact(url);
        let mut config: postgres::Config =
            url.parse().map_err(|source| ControlError::Postgres {
                url: name.clone(),
                source,
            })?;
        if let Some(p) = password {
            config.password(p);
        }
        config.connect_timeout(Duration::from_secs(5));
        if config.get_application_name().is_none() {
            config.application_name("rampart-server");
        }
        let (tx, rx) = mpsc::channel::<Job>();
        let rx = Arc::new(Mutex::new(rx));
        for i in 0..CONNECTIONS {
            let rx = rx.clone();
            thread::Builder::new()
                .name(format!("rampart-pg-{i}"))
                .spawn(move || {
                    let mut client: Slot = None;
                    loop {
                        let job = {
                            let rx = rx.lock().unwrap_or_else(|p| p.into_inner());
                            rx.recv()
                        };
                        match job {
                            Ok(job) => job(&mut client),
                            Err(_) => return,
                        }
                    }
                })
                .map_err(|source| ControlError::Io {
                    path: "rampart-pg worker thread".into(),
                    source,
                })?;
        }
        let pg = Pg {
            jobs: Mutex::new(tx),
            config: Arc::new(config),
            name,
        };
        pg.with(|c| {
            let mut tx = c.transaction()?;
            // Two servers starting together would race on CREATE TABLE IF NOT EXISTS.
            tx.execute("SELECT pg_advisory_xact_lock($1)", &[&LOCK_SCHEMA])?;
            tx.batch_execute(SCHEMA)?;
            tx.commit()
        })?;
        Ok(pg)
    }

    /// Runs `f` on a pooled connection (connecting first when it has none or lost it).
    pub(super) fn with<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Client) -> Result<T, postgres::Error> + Send + 'static,
    ) -> Result<T, ControlError> {
        let (tx, rx) = mpsc::sync_channel(1);
        let config = self.config.clone();
        let job: Job = Box::new(move |slot: &mut Slot| {
            let stale = match slot {
                Some((c, _)) if c.is_closed() => true,
                Some((c, used)) if used.elapsed() >= CHECK_AFTER_IDLE => {
                    c.is_valid(Duration::from_secs(2)).is_err()
                }
                _ => false,
            };
            if stale {
                *slot = None;
            }
            let result = match slot {
                Some((c, used)) => {
                    let r = f(c);
                    *used = std::time::Instant::now();
                    r
                }
                None => match config.connect(NoTls) {
                    Ok(c) => f(&mut slot.insert((c, std::time::Instant::now())).0),
                    Err(e) => Err(e),
                },
            };
            if result.is_err() && slot.as_ref().is_some_and(|(c, _)| c.is_closed()) {
                *slot = None;
            }
            let _ = tx.send(result);
        });
        let sent = self
            .jobs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .send(job);
        if sent.is_err() {
            return Err(ControlError::Refused(format!(
                "control store {}: its connection threads are gone",
                self.name
            )));
        }
        match rx.recv() {
            Ok(r) => r.map_err(|source| ControlError::Postgres {
                url: self.name.clone(),
                source,
            }),
            Err(_) => Err(ControlError::Refused(format!(
                "control store {}: a connection thread died during a query",
                self.name
            ))),
        }
    }
}

fn i(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn u(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

/// The control store's operations in PostgreSQL; [`super::Control`] checks the arguments and
/// calls these.
impl Pg {
    pub(super) fn insert_api_token(
        &self,
        name: &str,
        role: Role,
        hash: String,
        now: u64,
    ) -> Result<bool, ControlError> {
        let name = name.to_string();
        self.with(move |c| {
            c.execute(
                "INSERT INTO api_tokens (name, role, sha256, created_ns) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
                &[&name, &role.as_str(), &hash, &i(now)],
            )
        })
        .map(|n| n > 0)
    }

    pub(super) fn api_token_role(
        &self,
        hash: String,
    ) -> Result<Option<(String, String)>, ControlError> {
        self.with(move |c| {
            c.query_opt(
                "SELECT name, role FROM api_tokens WHERE sha256 = $1 AND revoked_ns IS NULL",
                &[&hash],
            )
            .map(|r| r.map(|r| (r.get(0), r.get(1))))
        })
    }

    pub(super) fn has_admin_token(&self) -> Result<bool, ControlError> {
        self.with(|c| {
            c.query_one(
                "SELECT count(*) FROM api_tokens WHERE role = 'admin' AND revoked_ns IS NULL",
                &[],
            )
            .map(|r| r.get::<_, i64>(0) > 0)
        })
    }

    pub(super) fn revoke_api_token(&self, name: &str, now: u64) -> Result<bool, ControlError> {
        let name = name.to_string();
        self.with(move |c| {
            c.execute(
                "UPDATE api_tokens SET revoked_ns = $2 WHERE name = $1 AND revoked_ns IS NULL",
                &[&name, &i(now)],
            )
        })
        .map(|n| n > 0)
    }

    pub(super) fn api_tokens(&self) -> Result<Vec<TokenRecord>, ControlError> {
        self.with(|c| {
            let rows = c.query(
                "SELECT name, role, created_ns, revoked_ns FROM api_tokens ORDER BY name",
                &[],
            )?;
            Ok(rows
                .iter()
                .map(|r| TokenRecord {
                    name: r.get(0),
                    role: Role::parse(r.get::<_, &str>(1)).unwrap_or(Role::ReadOnly),
                    created_ns: u(r.get(2)),
                    revoked_ns: r.get::<_, Option<i64>>(3).map(u),
                })
                .collect())
        })
    }

    pub(super) fn insert_enroll_token(
        &self,
        hash: String,
        region: &str,
        uses: u32,
        expires_ns: u64,
        now: u64,
        note: &str,
    ) -> Result<(), ControlError> {
        let (region, note) = (region.to_string(), note.to_string());
        self.with(move |c| {
            c.execute(
                "INSERT INTO enroll_tokens (sha256, region, uses_left, expires_ns, created_ns, note) VALUES ($1, $2, $3, $4, $5, $6)",
                &[&hash, &region, &i64::from(uses.max(1)), &i(expires_ns), &i(now), &note],
            )
        })
        .map(|_| ())
    }

    /// One statement checks and spends a use: two servers redeeming the last use at once
    /// cannot both succeed (the second `UPDATE` waits for the first's row lock, then sees
    /// `uses_left = 0`).
    pub(super) fn redeem_enroll_token(
        &self,
        hash: String,
        now: u64,
    ) -> Result<Result<EnrollGrant, &'static str>, ControlError> {
        self.with(move |c| {
            let spent = c.query_opt(
                "UPDATE enroll_tokens SET uses_left = uses_left - 1
                 WHERE sha256 = $1 AND uses_left > 0 AND expires_ns >= $2 RETURNING region",
                &[&hash, &i(now)],
            )?;
            if let Some(r) = spent {
                return Ok(Ok(EnrollGrant { region: r.get(0) }));
            }
            let why = c.query_opt(
                "SELECT uses_left, expires_ns FROM enroll_tokens WHERE sha256 = $1",
                &[&hash],
            )?;
            Ok(Err(match why {
                None => "unknown enrollment token",
                Some(r) if r.get::<_, i64>(0) <= 0 => "enrollment token used up",
                Some(_) => "enrollment token expired",
            }))
        })
    }

    pub(super) fn insert_user(
        &self,
        username: &str,
        role: Role,
        phc: String,
        now: u64,
    ) -> Result<bool, ControlError> {
        let username = username.to_string();
        self.with(move |c| {
            c.execute(
                "INSERT INTO users (username, role, password, created_ns) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
                &[&username, &role.as_str(), &phc, &i(now)],
            )
        })
        .map(|n| n > 0)
    }

    pub(super) fn remove_user(&self, username: &str) -> Result<bool, ControlError> {
        let username = username.to_string();
        self.with(move |c| {
            let mut tx = c.transaction()?;
            tx.execute("DELETE FROM sessions WHERE username = $1", &[&username])?;
            let n = tx.execute("DELETE FROM users WHERE username = $1", &[&username])?;
            tx.commit()?;
            Ok(n > 0)
        })
    }

    pub(super) fn users(&self) -> Result<Vec<UserRecord>, ControlError> {
        self.with(|c| {
            let rows = c.query(
                "SELECT username, role, created_ns FROM users ORDER BY username",
                &[],
            )?;
            Ok(rows
                .iter()
                .map(|r| UserRecord {
                    username: r.get(0),
                    role: Role::parse(r.get::<_, &str>(1)).unwrap_or(Role::ReadOnly),
                    created_ns: u(r.get(2)),
                })
                .collect())
        })
    }

    pub(super) fn user_password(
        &self,
        username: &str,
    ) -> Result<Option<(String, String)>, ControlError> {
        let username = username.to_string();
        self.with(move |c| {
            c.query_opt(
                "SELECT role, password FROM users WHERE username = $1",
                &[&username],
            )
            .map(|r| r.map(|r| (r.get(0), r.get(1))))
        })
    }

    pub(super) fn insert_session(
        &self,
        hash: String,
        username: &str,
        now: u64,
        expires_ns: u64,
    ) -> Result<(), ControlError> {
        let username = username.to_string();
        self.with(move |c| {
            c.execute("DELETE FROM sessions WHERE expires_ns < $1", &[&i(now)])?;
            c.execute(
                "INSERT INTO sessions (sha256, username, created_ns, expires_ns) VALUES ($1, $2, $3, $4)",
                &[&hash, &username, &i(now), &i(expires_ns)],
            )
        })
        .map(|_| ())
    }

    pub(super) fn session(
        &self,
        hash: String,
        now: u64,
    ) -> Result<Option<(String, String, i64)>, ControlError> {
        self.with(move |c| {
            c.query_opt(
                "SELECT s.username, u.role, s.expires_ns FROM sessions s JOIN users u ON u.username = s.username
                 WHERE s.sha256 = $1 AND s.expires_ns > $2",
                &[&hash, &i(now)],
            )
            .map(|r| r.map(|r| (r.get(0), r.get(1), r.get(2))))
        })
    }

    pub(super) fn end_session(&self, hash: String) -> Result<(), ControlError> {
        self.with(move |c| c.execute("DELETE FROM sessions WHERE sha256 = $1", &[&hash]))
            .map(|_| ())
    }

    /// Inserts `a`; with `unique`, only when no unrevoked agent has the same host name
    /// (compared by `norm`), deciding under an advisory lock so two servers enrolling one
    /// name at once cannot both succeed. Returns the holder when refused.
    pub(super) fn add_agent(
        &self,
        a: &AgentRecord,
        unique: bool,
    ) -> Result<Option<(String, String)>, ControlError> {
        let a = a.clone();
        self.with(move |c| {
            let norm = |h: &str| h.trim_end_matches('.').to_ascii_lowercase();
            let want = norm(&a.hostname);
            let mut tx = c.transaction()?;
            let mut holder = None;
            if unique {
                tx.execute("SELECT pg_advisory_xact_lock($1)", &[&LOCK_ENROLL])?;
                for r in tx.query(
                    "SELECT agent_id, hostname FROM agents WHERE revoked_ns IS NULL",
                    &[],
                )? {
                    let (id, host): (String, String) = (r.get(0), r.get(1));
                    if norm(&host) == want {
                        holder = Some((id, host));
                        break;
                    }
                }
            }
            if holder.is_none() {
                tx.execute(
                    "INSERT INTO agents (agent_id, hostname, region, serial, enrolled_ns, not_after) VALUES ($1, $2, $3, $4, $5, $6)",
                    &[&a.agent_id, &a.hostname, &a.region, &a.serial, &i(a.enrolled_ns), &a.not_after],
                )?;
            }
            tx.commit()?;
            Ok(holder)
        })
    }

    pub(super) fn agents(&self) -> Result<Vec<AgentRecord>, ControlError> {
        self.with(|c| {
            let rows = c.query(
                "SELECT agent_id, hostname, region, serial, enrolled_ns, not_after, revoked_ns, last_seen_ns FROM agents ORDER BY enrolled_ns",
                &[],
            )?;
            Ok(rows
                .iter()
                .map(|r| AgentRecord {
                    agent_id: r.get(0),
                    hostname: r.get(1),
                    region: r.get(2),
                    serial: r.get(3),
                    enrolled_ns: u(r.get(4)),
                    not_after: r.get(5),
                    revoked_ns: r.get::<_, Option<i64>>(6).map(u),
                    last_seen_ns: r.get::<_, Option<i64>>(7).map(u),
                })
                .collect())
        })
    }

    pub(super) fn agent_enrollment(
        &self,
        agent_id: &str,
    ) -> Result<Option<(String, u64)>, ControlError> {
        let agent_id = agent_id.to_string();
        self.with(move |c| {
            c.query_opt(
                "SELECT hostname, enrolled_ns FROM agents WHERE agent_id = $1",
                &[&agent_id],
            )
            .map(|r| r.map(|r| (r.get(0), u(r.get(1)))))
        })
    }

    pub(super) fn revoke_agent(&self, agent_id: &str, now: u64) -> Result<bool, ControlError> {
        let agent_id = agent_id.to_string();
        self.with(move |c| {
            c.execute(
                "UPDATE agents SET revoked_ns = $2 WHERE agent_id = $1 AND revoked_ns IS NULL",
                &[&agent_id, &i(now)],
            )
        })
        .map(|n| n > 0)
    }

    /// Revoked agents' serials, and the unexpired mesh certificates (`not_after` after
    /// `now_secs`) any server issued to a revoked agent.
    pub(super) fn revoked(&self, now_secs: i64) -> Result<Vec<(String, i64)>, ControlError> {
        self.with(move |c| {
            let rows = c.query(
                "SELECT serial, revoked_ns FROM agents WHERE revoked_ns IS NOT NULL
                 UNION ALL SELECT m.serial, a.revoked_ns FROM mesh_certs m
                 JOIN agents a ON a.agent_id = m.agent_id
                 WHERE a.revoked_ns IS NOT NULL AND m.not_after > $1
                 ORDER BY 1",
                &[&now_secs],
            )?;
            Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
        })
    }

    pub(super) fn record_mesh_cert(
        &self,
        agent_id: &str,
        serial: String,
        spiffe: &str,
        issued_ns: u64,
        not_after_secs: i64,
    ) -> Result<(), ControlError> {
        let (agent_id, spiffe) = (agent_id.to_string(), spiffe.to_string());
        self.with(move |c| {
            c.execute(
                "INSERT INTO mesh_certs (serial, agent_id, spiffe, issued_ns, not_after)
                 VALUES ($1, $2, $3, $4, $5)",
                &[&serial, &agent_id, &spiffe, &i(issued_ns), &not_after_secs],
            )
            .map(|_| ())
        })
    }

    pub(super) fn touch_agents(&self, seen: &[(String, u64)]) -> Result<(), ControlError> {
        let seen = seen.to_vec();
        self.with(move |c| {
            let mut tx = c.transaction()?;
            for (id, ns) in &seen {
                tx.execute(
                    "UPDATE agents SET last_seen_ns = GREATEST(coalesce(last_seen_ns, 0), $2) WHERE agent_id = $1",
                    &[id, &i(*ns)],
                )?;
            }
            tx.commit()
        })
    }

    pub(super) fn next_crl_number(&self) -> Result<u64, ControlError> {
        self.with(|c| {
            let r = c.query_one(
                "INSERT INTO meta (key, value) VALUES ('crl_number', '1')
                 ON CONFLICT (key) DO UPDATE SET value = ((meta.value)::bigint + 1)::text
                 RETURNING value",
                &[],
            )?;
            Ok(r.get::<_, &str>(0).parse::<u64>().unwrap_or(1))
        })
    }

    /// The fleet CA `(cert, key, meta)`: the stored one, or `make()`'s, stored, when there is
    /// none yet (under an advisory lock, so servers starting together agree on one).
    pub(super) fn fleet_ca(
        &self,
        make: Box<dyn FnOnce() -> Result<CaFiles, String> + Send>,
        now: u64,
    ) -> Result<Result<CaFiles, String>, ControlError> {
        self.with(move |c| {
            let mut tx = c.transaction()?;
            tx.execute("SELECT pg_advisory_xact_lock($1)", &[&LOCK_CA])?;
            if let Some(r) = tx.query_opt(
                "SELECT cert_pem, key_pem, meta_json FROM fleet_ca WHERE id = 1",
                &[],
            )? {
                return Ok(Ok((r.get(0), r.get(1), r.get(2))));
            }
            let made = match make() {
                Ok(m) => m,
                Err(e) => return Ok(Err(e)),
            };
            tx.execute(
                "INSERT INTO fleet_ca (id, cert_pem, key_pem, meta_json, created_ns) VALUES (1, $1, $2, $3, $4)",
                &[&made.0, &made.1, &made.2, &i(now)],
            )?;
            tx.commit()?;
            Ok(Ok(made))
        })
    }

    /// Takes or renews the lease of `job` for `holder` until `expires_ns`: true when `holder`
    /// has it (it held it already, or the last holder's lease ran out).
    pub(super) fn lease(
        &self,
        job: &str,
        holder: &str,
        now: u64,
        expires_ns: u64,
    ) -> Result<bool, ControlError> {
        let (job, holder) = (job.to_string(), holder.to_string());
        self.with(move |c| {
            c.query_opt(
                "INSERT INTO leases (job, holder, expires_ns) VALUES ($1, $2, $3)
                 ON CONFLICT (job) DO UPDATE SET holder = excluded.holder, expires_ns = excluded.expires_ns
                 WHERE leases.holder = excluded.holder OR leases.expires_ns < $4
                 RETURNING holder",
                &[&job, &holder, &i(expires_ns), &i(now)],
            )
            .map(|r| r.is_some())
        })
    }

    pub(super) fn put_docs(
        &self,
        kind: &str,
        docs: Vec<(String, String)>,
    ) -> Result<(), ControlError> {
        let kind = kind.to_string();
        self.with(move |c| {
            let mut tx = c.transaction()?;
            for (id, json) in &docs {
                tx.execute(
                    "INSERT INTO fleet_docs (kind, id, json) VALUES ($1, $2, $3)
                     ON CONFLICT (kind, id) DO UPDATE SET json = excluded.json",
                    &[&kind, id, json],
                )?;
            }
            tx.commit()
        })
    }

    pub(super) fn claim_doc(&self, kind: &str, id: &str, json: &str) -> Result<bool, ControlError> {
        let (kind, id, json) = (kind.to_string(), id.to_string(), json.to_string());
        self.with(move |c| {
            c.execute(
                "INSERT INTO fleet_docs (kind, id, json) VALUES ($1, $2, $3)
                 ON CONFLICT (kind, id) DO NOTHING",
                &[&kind, &id, &json],
            )
            .map(|n| n == 1)
        })
    }

    /// The next fleet configuration version (or `requested`, when above the current one):
    /// `Err(current)` when `requested` is not above it.
    pub(super) fn next_config_version(
        &self,
        requested: Option<u64>,
    ) -> Result<Result<u64, u64>, ControlError> {
        self.with(move |c| {
            let row = match requested {
                None => c.query_opt(
                    "INSERT INTO meta (key, value) VALUES ('fleet_config_version', '1')
                     ON CONFLICT (key) DO UPDATE SET value = (meta.value::bigint + 1)::text
                     RETURNING value",
                    &[],
                )?,
                Some(v) => c.query_opt(
                    "INSERT INTO meta (key, value) VALUES ('fleet_config_version', $1)
                     ON CONFLICT (key) DO UPDATE SET value = excluded.value
                     WHERE meta.value::bigint < $2
                     RETURNING value",
                    &[&v.to_string(), &i(v)],
                )?,
            };
            if let Some(r) = row {
                let v: String = r.get(0);
                return Ok(Ok(v.parse::<u64>().unwrap_or(0)));
            }
            let cur = c
                .query_opt(
                    "SELECT value FROM meta WHERE key = 'fleet_config_version'",
                    &[],
                )?
                .and_then(|r| r.get::<_, String>(0).parse::<u64>().ok())
                .unwrap_or(0);
            Ok(Err(cur))
        })
    }

    pub(super) fn record_config_report(
        &self,
        agent_id: &str,
        r: &crate::fleetconfig::ConfigReport,
    ) -> Result<(), ControlError> {
        let (agent_id, r) = (agent_id.to_string(), r.clone());
        self.with(move |c| {
            c.execute(
                "INSERT INTO agent_config (agent_id, version, applied_ns, reported_ns, refused)
                 VALUES ($1, $2, $3, $4, $5)
                 ON CONFLICT (agent_id) DO UPDATE SET version = excluded.version,
                 applied_ns = excluded.applied_ns, reported_ns = excluded.reported_ns,
                 refused = excluded.refused",
                &[
                    &agent_id,
                    &i(r.version),
                    &i(r.applied_ns),
                    &i(r.reported_ns),
                    &r.refused,
                ],
            )
            .map(|_| ())
        })
    }

    pub(super) fn config_reports(
        &self,
    ) -> Result<std::collections::BTreeMap<String, crate::fleetconfig::ConfigReport>, ControlError>
    {
        self.with(move |c| {
            Ok(c.query(
                "SELECT agent_id, version, applied_ns, reported_ns, refused FROM agent_config",
                &[],
            )?
            .into_iter()
            .map(|r| {
                (
                    r.get::<_, String>(0),
                    crate::fleetconfig::ConfigReport {
                        version: r.get::<_, i64>(1) as u64,
                        applied_ns: r.get::<_, i64>(2) as u64,
                        reported_ns: r.get::<_, i64>(3) as u64,
                        refused: r.get(4),
                    },
                )
            })
            .collect())
        })
    }

    /// Records a forensic bundle stored on server `server`; the rows inserted (0: it was
    /// recorded before).
    pub(super) fn add_evidence(
        &self,
        r: &super::EvidenceReceipt,
        server: &str,
    ) -> Result<u64, ControlError> {
        let (r, server) = (r.clone(), server.to_string());
        self.with(move |c| {
            c.execute(
                "INSERT INTO evidence (agent_id, sha256, hostname, size, received_ns, name, container, incident, alert_id, server)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) ON CONFLICT DO NOTHING",
                &[
                    &r.agent_id,
                    &r.sha256,
                    &r.hostname,
                    &i(r.size),
                    &i(r.received_ns),
                    &r.name,
                    &r.container,
                    &r.incident,
                    &r.alert_id,
                    &server,
                ],
            )
        })
    }

    pub(super) fn evidence(
        &self,
        f: &super::EvidenceFilter,
        limit: i64,
    ) -> Result<Vec<super::EvidenceReceipt>, ControlError> {
        let f = f.clone();
        self.with(move |c| {
            Ok(c.query(
                "SELECT agent_id, sha256, hostname, size, received_ns, name, container, incident, alert_id
                 FROM evidence
                 WHERE ($1::text IS NULL OR agent_id = $1) AND ($2::text IS NULL OR sha256 = $2)
                   AND ($3::text IS NULL OR hostname = $3)
                   AND ($4::text IS NULL OR container = $4 OR name = $4)
                   AND ($5::text IS NULL OR incident = $5) AND ($6::text IS NULL OR alert_id = $6)
                 ORDER BY received_ns DESC LIMIT $7",
                &[&f.agent, &f.sha256, &f.host, &f.container, &f.incident, &f.alert, &limit],
            )?
            .into_iter()
            .map(|r| super::EvidenceReceipt {
                agent_id: r.get(0),
                sha256: r.get(1),
                hostname: r.get(2),
                size: r.get::<_, i64>(3) as u64,
                received_ns: r.get::<_, i64>(4) as u64,
                name: r.get(5),
                container: r.get(6),
                incident: r.get(7),
                alert_id: r.get(8),
                duplicate: false,
            })
            .collect())
        })
    }

    pub(super) fn evidence_bytes(&self, agent_id: &str) -> Result<u64, ControlError> {
        let agent_id = agent_id.to_string();
        self.with(move |c| {
            c.query_one(
                "SELECT COALESCE(SUM(size), 0)::bigint FROM evidence WHERE agent_id = $1",
                &[&agent_id],
            )
            .map(|r| r.get::<_, i64>(0).max(0) as u64)
        })
    }

    pub(super) fn evidence_servers(&self, sha256: &str) -> Result<Vec<String>, ControlError> {
        let sha256 = sha256.to_string();
        self.with(move |c| {
            Ok(c.query(
                "SELECT DISTINCT server FROM evidence WHERE sha256 = $1 ORDER BY server",
                &[&sha256],
            )?
            .into_iter()
            .map(|r| r.get(0))
            .collect())
        })
    }

    pub(super) fn doc(&self, kind: &str, id: &str) -> Result<Option<String>, ControlError> {
        let (kind, id) = (kind.to_string(), id.to_string());
        self.with(move |c| {
            c.query_opt(
                "SELECT json FROM fleet_docs WHERE kind = $1 AND id = $2",
                &[&kind, &id],
            )
            .map(|r| r.map(|r| r.get::<_, String>(0)))
        })
    }

    pub(super) fn last_doc(&self, kind: &str) -> Result<Option<(String, String)>, ControlError> {
        let kind = kind.to_string();
        self.with(move |c| {
            c.query_opt(
                "SELECT id, json FROM fleet_docs WHERE kind = $1 ORDER BY id DESC LIMIT 1",
                &[&kind],
            )
            .map(|r| r.map(|r| (r.get(0), r.get(1))))
        })
    }

    pub(super) fn retain_docs(&self, kind: &str, keep: &[String]) -> Result<(), ControlError> {
        let (kind, keep) = (kind.to_string(), keep.to_vec());
        self.with(move |c| {
            c.execute(
                "DELETE FROM fleet_docs WHERE kind = $1 AND NOT (id = ANY($2))",
                &[&kind, &keep],
            )
            .map(|_| ())
        })
    }

    pub(super) fn docs(&self, kind: &str) -> Result<Vec<(String, String)>, ControlError> {
        let kind = kind.to_string();
        self.with(move |c| {
            Ok(c.query(
                "SELECT id, json FROM fleet_docs WHERE kind = $1 ORDER BY id",
                &[&kind],
            )?
            .into_iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect())
        })
    }

    pub(super) fn meta(&self, key: &str) -> Result<Option<String>, ControlError> {
        let key = key.to_string();
        self.with(move |c| {
            c.query_opt("SELECT value FROM meta WHERE key = $1", &[&key])
                .map(|r| r.map(|r| r.get::<_, String>(0)))
        })
    }

    pub(super) fn put_meta_leased(
        &self,
        key: &str,
        value: &str,
        job: &str,
        holder: &str,
        now: u64,
    ) -> Result<bool, ControlError> {
        let (key, value, job, holder) = (
            key.to_string(),
            value.to_string(),
            job.to_string(),
            holder.to_string(),
        );
        self.with(move |c| {
            c.query_opt(
                "INSERT INTO meta (key, value) SELECT $1, $2 WHERE EXISTS
                    (SELECT 1 FROM leases WHERE job = $3 AND holder = $4 AND expires_ns >= $5)
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value
                 RETURNING key",
                &[&key, &value, &job, &holder, &i(now)],
            )
            .map(|r| r.is_some())
        })
    }

    /// Gives up `holder`'s lease of `job` (another server may take it at once).
    pub(super) fn release(&self, job: &str, holder: &str) -> Result<(), ControlError> {
        let (job, holder) = (job.to_string(), holder.to_string());
        self.with(move |c| {
            c.execute(
                "DELETE FROM leases WHERE job = $1 AND holder = $2",
                &[&job, &holder],
            )
        })
        .map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::redact;

    #[test]
    fn passwords_never_reach_messages() {
        assert_eq!(
            redact("postgres://rampart:s3cret@db.example:5432/rampart"),
            "postgres://rampart@db.example:5432/rampart"
        );
        assert_eq!(
            redact("postgresql://db.example/rampart"),
            "postgresql://db.example/rampart"
        );
        assert_eq!(
            redact("host=127.0.0.1 password=s3cret user=rampart"),
            "host=127.0.0.1 user=rampart"
        );
    }
}
