//! The server's scheduled vulnerability-database update (`vulndb_update:` in server.yaml):
//! `rampart db update` on `<data_dir>/vulndb/vuln.db` at start and every `every`, then a new
//! signed bundle for the agents when the database changed (or none was published yet).
//! A failed update keeps the published bundle; it is logged and tried again next time.

use rampart_scan::{DbError, UpdateOptions, UpdateOutcome};
use rampart_server::vulndb::BundleError;
use rampart_server::{ServerConfig, ServerError};

/// Why a scheduled update did not start or did not finish.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum UpdateError {
    /// `vulndb_update:` of server.yaml is wrong (the user's input).
    #[error("{0}")]
    Config(String),
    /// The database could not be updated (its previous content stays).
    #[error(transparent)]
    Db(#[from] DbError),
    /// The bundle could not be read or published.
    #[error(transparent)]
    Bundle(#[from] BundleError),
    /// The server's control database or CA did not open.
    #[error(transparent)]
    Server(#[from] ServerError),
}

impl UpdateError {
    /// Whether the error is the user's input being wrong (configuration, a missing or foreign
    /// database file).
    pub fn is_bad_input(&self) -> bool {
        matches!(
            self,
            UpdateError::Config(_)
                | UpdateError::Db(DbError::Missing { .. } | DbError::Schema { .. })
        )
    }
}

/// Starts the scheduled update when `cfg` has `vulndb_update:`; `None` when it has not.
/// Needs a tokio runtime; each update runs on a blocking thread.
pub fn spawn(cfg: &ServerConfig) -> Result<Option<tokio::task::JoinHandle<()>>, UpdateError> {
    let Some(u) = cfg.vulndb_update.clone() else {
        return Ok(None);
    };
    let every = humantime::parse_duration(&u.every)
        .map_err(|e| UpdateError::Config(format!("vulndb_update.every: {:?}: {e}", u.every)))?;
    let mut opts = UpdateOptions::default();
    if let Some(base) = &u.base_url {
        opts.base_url = base.clone();
    }
    if !u.ecosystems.is_empty() {
        opts.ecosystems = u.ecosystems.clone();
    }
    opts.checksum = u.checksum;
    let cfg = cfg.clone();
    Ok(Some(tokio::spawn(async move {
        loop {
            let (c, o) = (cfg.clone(), opts.clone());
            match tokio::task::spawn_blocking(move || update(&c, &o)).await {
                Ok(Ok(msg)) => tracing::info!("vulnerability database: {msg}"),
                Ok(Err(e)) => tracing::warn!(
                    "vulnerability database update failed, the published bundle is kept: {e}"
                ),
                Err(e) => tracing::warn!("vulnerability database update: {e}"),
            }
            tokio::time::sleep(every).await;
        }
    })))
}

/// One scheduled update; what it did, in words.
pub fn update(cfg: &ServerConfig, opts: &UpdateOptions) -> Result<String, UpdateError> {
    let data_dir = &cfg.data_dir;
    let path = rampart_server::vulndb::db_path(data_dir);
    let r = rampart_scan::update_db(&path, opts)?;
    for e in r
        .ecosystems
        .iter()
        .filter(|e| e.outcome == UpdateOutcome::Failed)
    {
        tracing::warn!(
            "vulnerability database: {} kept its previous data: {}",
            e.ecosystem,
            e.error.as_deref().unwrap_or("")
        );
    }
    let unpublished = rampart_server::vulndb::current(data_dir)?.is_none();
    if (r.swapped || unpublished) && path.is_file() {
        let (_control, ca) = rampart_server::open_control(cfg)?;
        let m = rampart_server::vulndb::publish(data_dir, &ca)?;
        return Ok(format!(
            "updated ({} of {} ecosystems failed), published bundle {}",
            r.failed(),
            r.ecosystems.len(),
            m.version
        ));
    }
    Ok(format!(
        "unchanged ({} of {} ecosystems failed)",
        r.failed(),
        r.ecosystems.len()
    ))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use std::io::Write;

    use rampart_scan::VulnDb;

    use super::*;

    /// osv.dev's layout on disk (`file://`), from the scanner's real OSV fixtures.
    fn mirror(root: &std::path::Path, eco: &str) {
        let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../rampart-scan/tests/data/osv")
            .join(eco);
        std::fs::create_dir_all(root.join(eco)).unwrap();
        let mut w =
            zip::ZipWriter::new(std::fs::File::create(root.join(eco).join("all.zip")).unwrap());
        for e in std::fs::read_dir(src).unwrap() {
            let e = e.unwrap();
            w.start_file(
                e.file_name().to_string_lossy(),
                zip::write::SimpleFileOptions::default(),
            )
            .unwrap();
            w.write_all(&std::fs::read(e.path()).unwrap()).unwrap();
        }
        w.finish().unwrap();
    }

    /// The scheduled update publishes a bundle signed by the server CA that agents verify, and
    /// the dashboard's freshness reads the update time; an unchanged mirror publishes nothing.
    #[test]
    fn server_update_publishes_a_signed_bundle_agents_verify() {
        let tmp = tempfile::tempdir().unwrap();
        mirror(&tmp.path().join("mirror"), "npm");
        let cfg = ServerConfig::with_data_dir(tmp.path().join("server"));
        let opts = UpdateOptions {
            base_url: format!("file://{}", tmp.path().join("mirror").display()),
            ecosystems: vec!["npm".into()],
            ..UpdateOptions::default()
        };
        let msg = update(&cfg, &opts).unwrap();
        assert!(msg.contains("published bundle"), "{msg}");
        let signed = rampart_server::vulndb::current(&cfg.data_dir)
            .unwrap()
            .unwrap();
        let (_control, ca) = rampart_server::open_control(&cfg).unwrap();
        let m = rampart_server::vulndb::verify_manifest(ca.cert(), &signed).unwrap();
        let payload =
            std::fs::read(rampart_server::vulndb::bundle_path(&cfg.data_dir, &m.sha256).unwrap())
                .unwrap();
        let raw = rampart_server::vulndb::open_payload(&m, &payload).unwrap();
        let db_file = tmp.path().join("agent.db");
        std::fs::write(&db_file, raw).unwrap();
        let agent_db = VulnDb::open(&db_file).unwrap();
        assert!(agent_db.vuln("GHSA-35jh-r3h4-6jhm").unwrap().is_some());
        let f = rampart_server::vulndb::freshness(&cfg.data_dir).unwrap();
        assert!(f.age_secs.unwrap() < 120);
        assert_eq!(f.published_version.as_deref(), Some(m.version.as_str()));
        let msg = update(&cfg, &opts).unwrap();
        assert!(msg.starts_with("unchanged"), "{msg}");
        let again = rampart_server::vulndb::current(&cfg.data_dir)
            .unwrap()
            .unwrap();
        assert_eq!(again, signed, "nothing new, nothing republished");
    }

    #[test]
    fn a_wrong_interval_is_the_users_input() {
        let tmp = tempfile::tempdir().unwrap();
        let mut cfg = ServerConfig::with_data_dir(tmp.path().to_path_buf());
        cfg.vulndb_update = Some(rampart_server::config::VulnDbUpdate {
            every: "often".into(),
            base_url: None,
            ecosystems: Vec::new(),
            checksum: false,
        });
        let e = spawn(&cfg).unwrap_err();
        assert!(e.is_bad_input(), "{e}");
        assert!(e.to_string().contains("vulndb_update.every"), "{e}");
    }
}
