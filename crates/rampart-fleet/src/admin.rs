//! The server's admin commands (`rampart server token|user|agents|enroll-token|db|config`):
//! they work on the server's data directory directly, whether the server runs or not. Each
//! function does one command's work and returns what the command prints, so the binary keeps
//! only argument parsing and printing.

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rampart_server::ca::Ca;
use rampart_server::config::ConfigError;
use rampart_server::control::{AgentRecord, Control, ControlError, TokenRecord, UserRecord};
use rampart_server::{Role, ServerConfig, ServerError};

/// How many of a source's unreadable OSV files `server db import` shows as warnings.
pub const IMPORT_WARNINGS: usize = 20;

/// Why an admin command failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AdminError {
    /// The user's input is wrong: an argument, a configuration, a name that does not exist.
    #[error("{0}")]
    BadInput(String),
    /// The configuration file could not be read.
    #[error(transparent)]
    ConfigRead(ConfigError),
    #[error("reading {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("reading the password from standard input")]
    Stdin(#[source] std::io::Error),
    #[error("taking the identity of {path} (uid {uid}), which owns it")]
    Identity {
        path: PathBuf,
        uid: u32,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Server(#[from] ServerError),
    #[error(transparent)]
    Control(#[from] ControlError),
    #[error(transparent)]
    FleetConfig(#[from] rampart_server::fleetconfig::ConfigError),
    #[error(transparent)]
    Bundle(#[from] rampart_server::vulndb::BundleError),
    #[error("publishing the vulnerability database bundle")]
    Publish(#[source] rampart_server::vulndb::BundleError),
    #[error("reading the published manifest")]
    Manifest(#[source] serde_json::Error),
    /// The vulnerability database; a missing or foreign database is the user's input.
    #[error(transparent)]
    Db(#[from] rampart_scan::DbError),
}

impl AdminError {
    /// Whether the error is the user's input being wrong (exit code 2).
    pub fn is_bad_input(&self) -> bool {
        match self {
            AdminError::BadInput(_) => true,
            AdminError::Db(e) => e.is_bad_input(),
            _ => false,
        }
    }
}

fn bad(e: impl std::fmt::Display) -> AdminError {
    AdminError::BadInput(e.to_string())
}

/// Reads the server configuration at `path`; a missing `default` file means every default
/// (data directory `/var/lib/rampart/server`). A file that does not parse is bad input.
pub fn load_config(path: &Path, default: &Path) -> Result<ServerConfig, AdminError> {
    if path == default && !path.exists() {
        return Ok(ServerConfig::with_data_dir("/var/lib/rampart/server"));
    }
    ServerConfig::load(path).map_err(|e| match e {
        ConfigError::Read { .. } => AdminError::ConfigRead(e),
        other => bad(other),
    })
}

/// Run as root on a data directory that another user owns (the packaged service's `rampart`
/// user), the server and its admin commands take that user's identity first: nothing they
/// create (a database's `-wal`, a new CRL) is then root's and out of the service's reach, and
/// the server never runs as root on such a directory.
pub fn become_data_owner(data_dir: &Path) -> Result<(), AdminError> {
    use std::os::unix::fs::MetadataExt;
    // SAFETY: geteuid(2) has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        return Ok(());
    }
    let Ok(meta) = std::fs::metadata(data_dir) else {
        return Ok(());
    };
    let (uid, gid) = (meta.uid(), meta.gid());
    if uid == 0 {
        return Ok(());
    }
    // SAFETY: setgroups/setgid/setuid(2) with plain integers; the order (groups, group, user)
    // is the only one in which each call is still permitted.
    let failed = unsafe {
        libc::setgroups(0, std::ptr::null()) != 0
            || libc::setgid(gid) != 0
            || libc::setuid(uid) != 0
    };
    if failed {
        return Err(AdminError::Identity {
            path: data_dir.to_path_buf(),
            uid,
            source: std::io::Error::last_os_error(),
        });
    }
    tracing::debug!(uid, gid, data_dir = %data_dir.display(), "running as the data directory's owner");
    Ok(())
}

/// Nanoseconds since the epoch as RFC 3339 (seconds).
pub fn fmt_ns(ns: u64) -> String {
    let t = std::time::UNIX_EPOCH + Duration::from_nanos(ns);
    humantime::format_rfc3339_seconds(t).to_string()
}

fn fmt_opt_ns(ns: Option<u64>) -> String {
    ns.map(fmt_ns).unwrap_or_else(|| "-".into())
}

/// `admin`, `analyst` or `read-only`, as `--role`.
pub fn parse_role(role: &str) -> Result<Role, AdminError> {
    Role::parse(role).ok_or_else(|| {
        bad(format!(
            "--role {role:?}: expected admin, analyst or read-only"
        ))
    })
}

/// Creates an enrollment token for `uses` agents of `region`, valid for `ttl` (`30m`, `24h`).
pub fn enroll_token(
    cfg: &ServerConfig,
    region: &str,
    uses: u32,
    ttl: &str,
) -> Result<rampart_ship::protocol::EnrollToken, AdminError> {
    let ttl_d = humantime::parse_duration(ttl).map_err(|e| bad(format!("--ttl {ttl:?}: {e}")))?;
    let (control, ca) = rampart_server::open_control(cfg)?;
    let secret = control
        .create_enroll_token(region, uses, ttl_d, "rampart server enroll-token")
        .map_err(bad)?;
    Ok(rampart_ship::protocol::EnrollToken {
        secret,
        ca_sha256: ca.fingerprint(),
    })
}

/// Creates the API token `name` with `role` and returns it (only its hash is stored).
pub fn create_token(control: &Control, name: &str, role: &str) -> Result<String, AdminError> {
    let role = parse_role(role)?;
    control.create_api_token(name, role).map_err(bad)
}

/// Revokes the active API token `name`; none of that name is bad input.
pub fn revoke_token(control: &Control, name: &str) -> Result<(), AdminError> {
    if !control.revoke_api_token(name)? {
        return Err(bad(format!("no active token named {name:?}")));
    }
    Ok(())
}

/// The table of `server token list`.
pub fn tokens_table(tokens: &[TokenRecord]) -> String {
    let mut out = format!("{:<24} {:<10} {:<20} REVOKED\n", "NAME", "ROLE", "CREATED");
    for t in tokens {
        out.push_str(&format!(
            "{:<24} {:<10} {:<20} {}\n",
            t.name,
            t.role.as_str(),
            fmt_ns(t.created_ns),
            fmt_opt_ns(t.revoked_ns)
        ));
    }
    out
}

/// The password of `server user add`: the first line of `file`, or without it of `stdin`.
pub fn read_password(file: Option<&Path>, stdin: impl BufRead) -> Result<String, AdminError> {
    let text = match file {
        Some(p) => std::fs::read_to_string(p).map_err(|source| AdminError::Read {
            path: p.to_path_buf(),
            source,
        })?,
        None => {
            let mut line = String::new();
            let mut stdin = stdin;
            stdin.read_line(&mut line).map_err(AdminError::Stdin)?;
            line
        }
    };
    Ok(text
        .lines()
        .next()
        .unwrap_or("")
        .trim_end_matches('\r')
        .to_string())
}

/// Adds the dashboard user `name` with `role` and `password`; returns the role.
pub fn add_user(
    control: &Control,
    name: &str,
    role: &str,
    password: &str,
) -> Result<Role, AdminError> {
    let role = parse_role(role)?;
    control.add_user(name, role, password).map_err(bad)?;
    Ok(role)
}

/// Removes the user `name` and ends their sessions; none of that name is bad input.
pub fn remove_user(control: &Control, name: &str) -> Result<(), AdminError> {
    if !control.remove_user(name)? {
        return Err(bad(format!("no user named {name:?}")));
    }
    Ok(())
}

/// The table of `server user list`.
pub fn users_table(users: &[UserRecord]) -> String {
    let mut out = format!("{:<32} {:<10} CREATED\n", "USER", "ROLE");
    for u in users {
        out.push_str(&format!(
            "{:<32} {:<10} {}\n",
            u.username,
            u.role.as_str(),
            fmt_ns(u.created_ns)
        ));
    }
    out
}

/// The table of `server agents list`.
pub fn agents_table(agents: &[AgentRecord]) -> String {
    let mut out = format!(
        "{:<26} {:<24} {:<8} {:<20} {:<20} REVOKED\n",
        "AGENT", "HOST", "REGION", "ENROLLED", "LAST SEEN"
    );
    for a in agents {
        out.push_str(&format!(
            "{:<26} {:<24} {:<8} {:<20} {:<20} {}\n",
            a.agent_id,
            a.hostname,
            a.region,
            fmt_ns(a.enrolled_ns),
            fmt_opt_ns(a.last_seen_ns),
            fmt_opt_ns(a.revoked_ns)
        ));
    }
    out
}

/// Revokes the agent `agent_id` and rewrites the CRL; an unknown or already revoked agent is
/// bad input.
pub fn revoke_agent(control: &Control, ca: &Ca, agent_id: &str) -> Result<(), AdminError> {
    if !rampart_server::revoke_agent_offline(control, ca, agent_id)? {
        return Err(bad(format!(
            "no agent {agent_id:?} that is not already revoked (rampart server agents)"
        )));
    }
    Ok(())
}

/// The text of `server config status` (the published version, then one row per agent).
pub fn config_status_text(st: &rampart_server::fleetconfig::Status) -> String {
    let mut out = match &st.published {
        None => "no fleet configuration published (rampart server config publish DIR)\n".into(),
        Some(m) => format!(
            "published version {} ({} files) at {}\n",
            m.version,
            m.files.len(),
            fmt_ns(m.created_ns)
        ),
    };
    out.push_str(&format!(
        "{:<26} {:<24} {:<8} {:<20} {:<20} REFUSED\n",
        "AGENT", "HOST", "VERSION", "APPLIED", "REPORTED"
    ));
    let ns = |n: u64| if n > 0 { fmt_ns(n) } else { "-".into() };
    for a in &st.agents {
        let r = a.report.clone().unwrap_or_default();
        let version = if a.report.is_some() {
            r.version.to_string()
        } else {
            "-".into()
        };
        out.push_str(&format!(
            "{:<26} {:<24} {:<8} {:<20} {:<20} {}\n",
            a.agent_id,
            a.hostname,
            version,
            ns(r.applied_ns),
            ns(r.reported_ns),
            r.refused.as_deref().unwrap_or("-")
        ));
    }
    out
}

/// Imports `sources` (OSV directories, zips, files) into `<data_dir>/vulndb/vuln.db` under the
/// database lock, calling `each` with every source's result, then publishes the bundle signed
/// with `ca`. A source that does not exist is bad input.
pub fn import_and_publish(
    data_dir: &Path,
    ca: &Ca,
    sources: &[PathBuf],
    mut each: impl FnMut(&rampart_scan::ImportStats),
) -> Result<rampart_server::vulndb::Manifest, AdminError> {
    let path = rampart_server::vulndb::db_path(data_dir);
    // The scheduled `db update` replaces the file: not while this import writes it.
    rampart_scan::import_sources(&path, sources, |s| each(s))?;
    rampart_server::vulndb::publish(data_dir, ca).map_err(AdminError::Publish)
}

/// The line `server db import` prints for one source.
pub fn import_line(stats: &rampart_scan::ImportStats) -> String {
    format!(
        "{}: {} added, {} updated, {} unchanged, {} removed, {} unreadable",
        stats.source,
        stats.added,
        stats.updated,
        stats.unchanged,
        stats.removed,
        stats.errors.len()
    )
}

/// The text of `server db status`: the published bundle, or how to publish one.
pub fn db_status_text(data_dir: &Path) -> Result<String, AdminError> {
    Ok(match rampart_server::vulndb::current(data_dir)? {
        None => "no vulnerability database published (rampart server db import)".into(),
        Some(signed) => {
            let m: rampart_server::vulndb::Manifest =
                serde_json::from_str(&signed.manifest).map_err(AdminError::Manifest)?;
            format!(
                "version {}\nsha256 {}\nbundle {} bytes, database {} bytes\npublished {}",
                m.version,
                m.sha256,
                m.size,
                m.db_size,
                fmt_ns(m.created_ns)
            )
        }
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use super::*;

    #[test]
    fn fmt_ns_is_rfc3339_seconds() {
        assert_eq!(fmt_ns(0), "1970-01-01T00:00:00Z");
        assert_eq!(fmt_ns(1_700_000_000_999_999_999), "2023-11-14T22:13:20Z");
    }

    #[test]
    fn roles_parse_and_others_are_bad_input() {
        assert_eq!(parse_role("read-only").unwrap().as_str(), "read-only");
        for r in ["", "Admin", "root", "admin "] {
            let e = parse_role(r).unwrap_err();
            assert!(e.is_bad_input(), "{r:?}");
            assert!(e
                .to_string()
                .contains("expected admin, analyst or read-only"));
        }
    }

    #[test]
    fn password_is_first_line_without_cr() {
        let p = read_password(None, &b"s3cret-pass-word\r\nsecond\n"[..]).unwrap();
        assert_eq!(p, "s3cret-pass-word");
        assert_eq!(read_password(None, &b""[..]).unwrap(), "");
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("pw");
        std::fs::write(&f, "from-file-password\nignored\n").unwrap();
        assert_eq!(
            read_password(Some(&f), &b"stdin"[..]).unwrap(),
            "from-file-password"
        );
        let e = read_password(Some(&dir.path().join("none")), &b""[..]).unwrap_err();
        assert!(matches!(e, AdminError::Read { .. }) && !e.is_bad_input());
    }

    #[test]
    fn tables_align_and_mark_missing_times() {
        let t = tokens_table(&[TokenRecord {
            name: "ci".into(),
            role: Role::Analyst,
            created_ns: 0,
            revoked_ns: None,
        }]);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 2);
        assert!(lines[0].starts_with("NAME "));
        assert!(lines[0].ends_with("REVOKED"));
        assert_eq!(
            lines[1],
            format!(
                "{:<24} {:<10} {:<20} -",
                "ci", "analyst", "1970-01-01T00:00:00Z"
            )
        );
        let u = users_table(&[]);
        assert_eq!(u, format!("{:<32} {:<10} CREATED\n", "USER", "ROLE"));
    }

    #[test]
    fn config_status_without_publication_says_how() {
        let st = rampart_server::fleetconfig::Status {
            published: None,
            agents: vec![],
        };
        let text = config_status_text(&st);
        assert!(text.starts_with("no fleet configuration published"));
        assert_eq!(text.lines().count(), 2);
    }

    #[test]
    fn missing_default_config_means_defaults_other_missing_file_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let default = dir.path().join("server.yaml");
        let cfg = load_config(&default, &default).unwrap();
        assert_eq!(cfg.data_dir, Path::new("/var/lib/rampart/server"));
        let other = dir.path().join("other.yaml");
        let e = load_config(&other, &default).unwrap_err();
        assert!(matches!(e, AdminError::ConfigRead(_)) && !e.is_bad_input());
        std::fs::write(&other, "no_such_key: [").unwrap();
        assert!(load_config(&other, &default).unwrap_err().is_bad_input());
    }

    #[test]
    fn import_of_a_missing_source_is_bad_input_and_publishes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let ca = Ca::load_or_create(&dir.path().join("ca")).unwrap();
        let e =
            import_and_publish(dir.path(), &ca, &[dir.path().join("nope")], |_| {}).unwrap_err();
        assert!(e.is_bad_input(), "{e}");
        assert!(rampart_server::vulndb::current(dir.path())
            .unwrap()
            .is_none());
        assert!(db_status_text(dir.path())
            .unwrap()
            .starts_with("no vulnerability database published"));
    }
}
