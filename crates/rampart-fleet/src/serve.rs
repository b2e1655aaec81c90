//! The central server with the fleet console: [`serve`] starts `rampart-server` with the
//! fleet's store layer (cross-host rules, incidents, "now vulnerable" alerts), the caller's
//! dashboard, and the fleet's background loops (deadlines, newly published vulnerability
//! databases). `rampart server` and `rampart up` both start the server this way.

use std::time::Duration;

use rampart_server::{ServerConfig, ServerExtras, ServerHandle};

use crate::{FleetConfig, FleetError, FleetSlot, IncidentPolicy, VulnsConfig};

/// How often the running server looks for a newly published vulnerability database.
const VULNDB_POLL: Duration = Duration::from_secs(2);
/// How often the store-fed correlator (scale-out) reads the fleet's new records.
const FEED_POLL: Duration = Duration::from_millis(500);

/// Why the server with its fleet console did not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServeError {
    /// A `fleet:` key of server.yaml, a fleet rule file or a regulations directory is wrong
    /// (the user's input).
    #[error("{0}")]
    Config(String),
    /// The incidents database or the vulnerability tracker did not open.
    #[error(transparent)]
    Fleet(FleetError),
    #[error("creating {path}: {source}")]
    DataDir {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Server(#[from] rampart_server::ServerError),
    /// The shared control store (for the vulnerability tracker) did not open.
    #[error(transparent)]
    Shared(#[from] crate::SharedError),
}

impl ServeError {
    /// Whether the error is the user's input being wrong.
    pub fn is_bad_input(&self) -> bool {
        matches!(self, ServeError::Config(_))
    }
}

/// A started server with the fleet console.
pub struct RunningServer {
    pub server: ServerHandle,
    deadlines: Option<tokio::task::JoinHandle<()>>,
    vulndb: Option<tokio::task::JoinHandle<()>>,
    /// The store-fed correlator (scale-out).
    feed: Option<tokio::task::JoinHandle<()>>,
    /// Other loops started beside the server (the scheduled database update), stopped with it.
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl std::fmt::Debug for RunningServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunningServer")
            .field("url", &self.server.url())
            .finish_non_exhaustive()
    }
}

impl RunningServer {
    /// Stops the fleet's loops, then the server.
    /// Has `task` stopped with the server.
    pub fn add_task(&mut self, task: tokio::task::JoinHandle<()>) {
        self.tasks.push(task);
    }

    pub async fn stop(self) {
        for t in self.tasks {
            t.abort();
        }
        if let Some(d) = self.deadlines {
            d.abort();
        }
        if let Some(d) = self.vulndb {
            d.abort();
        }
        if let Some(d) = self.feed {
            d.abort();
        }
        self.server.shutdown().await;
    }
}

/// Starts the server of `cfg` with the fleet console. `ui` receives the fleet (set once the
/// store is open) and returns the dashboard's extras: its store layer runs inside the fleet's
/// (so the fleet's own alerts reach it) and its routes are added.
pub async fn serve(
    cfg: ServerConfig,
    ui: impl FnOnce(FleetSlot) -> ServerExtras,
) -> Result<RunningServer, ServeError> {
    let data_dir = cfg.data_dir.clone();
    std::fs::create_dir_all(&data_dir).map_err(|source| ServeError::DataDir {
        path: data_dir.clone(),
        source,
    })?;
    let (mut fleet_cfg, deadline_every) = fleet_config(&cfg)?;
    let mut vulns = VulnsConfig::new(&data_dir);
    // A fleet of servers keeps the SBOMs, the running set and the findings in the shared
    // control store, so the next lease holder re-matches every SBOM the fleet received.
    if let Some(cs) = &cfg.control_store {
        let mut cs = cs.clone();
        cs.password_file = cs.password_file.map(|p| cfg.resolve(&p));
        if let crate::IncidentSource::Shared(c) = crate::IncidentSource::open_shared(&cs)? {
            vulns.shared = Some(std::sync::Arc::new(c));
        }
    }
    fleet_cfg.vulns = Some(vulns);
    // Several servers on one control store and one ClickHouse: one correlator for the fleet,
    // on the holder of the fleet job lease, reading every server's records from ClickHouse.
    fleet_cfg.from_store = cfg.control_store.is_some()
        && matches!(cfg.store, rampart_server::StoreConfig::Clickhouse { .. });
    let policies: Vec<(String, Option<u32>)> = cfg
        .regions
        .iter()
        .map(|(r, p)| (r.clone(), p.retention_days))
        .collect();
    for s in crate::check_retention(&fleet_cfg.regulations, &policies) {
        tracing::warn!(
            "regions.{}.retention_days is {} days, shorter than the {} days {} requires ({})",
            s.region,
            s.policy_days,
            s.min_days,
            s.regime,
            s.citation
        );
    }
    let from_store = fleet_cfg.from_store;
    let (fleet_layer, fleet) = crate::server_layer(fleet_cfg).map_err(|e| match e {
        e @ FleetError::Rules(_) => ServeError::Config(e.to_string()),
        e => ServeError::Fleet(e),
    })?;
    let extras = ui(fleet.clone());
    let layer: rampart_server::StoreLayer = match extras.store_layer {
        Some(inner) => Box::new(move |store| fleet_layer(inner(store))),
        None => fleet_layer,
    };
    let server = rampart_server::start_extras(
        cfg,
        ServerExtras {
            store_layer: Some(layer),
            routes: extras.routes,
        },
    )
    .await?;
    let lease = server.fleet_lease();
    let deadlines = fleet
        .get()
        .map(|f| tokio::spawn(f.clone().deadline_loop(lease.clone(), deadline_every)));
    // A bundle published by `rampart server db import` (another process) is noticed here.
    let vulndb = fleet
        .get()
        .map(|f| tokio::spawn(f.clone().vulndb_loop(lease.clone(), VULNDB_POLL)));
    let feed = fleet
        .get()
        .filter(|_| from_store)
        .map(|f| tokio::spawn(f.clone().feed_loop(lease, FEED_POLL)));
    Ok(RunningServer {
        server,
        deadlines,
        vulndb,
        feed,
        tasks: Vec::new(),
    })
}

/// The fleet console's configuration from `fleet:` of server.yaml, and the deadline check
/// interval.
pub fn fleet_config(cfg: &ServerConfig) -> Result<(FleetConfig, Duration), ServeError> {
    use rampart_server::FleetOptions;
    let f = &cfg.fleet;
    let mut fleet = FleetConfig::new(Some(crate::db_path(&cfg.data_dir)));
    fleet.rule_files = f.rules.iter().map(|p| cfg.resolve(p)).collect();
    if let Some(dir) = &f.regulations_dir {
        fleet.regulations = crate::regulation::load_dir(&cfg.resolve(dir))
            .map_err(|e| ServeError::Config(format!("fleet.regulations_dir: {e}")))?;
    }
    fleet.roles = f.roles.clone();
    fleet.notifications = f.notifications.clone();
    let inc = &f.incidents;
    let prio = |name: &str, v: &Option<String>, default: rampart_event::Priority| match v {
        Some(p) => p
            .parse::<rampart_event::Priority>()
            .map_err(|e| ServeError::Config(format!("fleet.incidents.{name}: {e}"))),
        None => Ok(default),
    };
    let d = IncidentPolicy::default();
    fleet.incident_policy = IncidentPolicy {
        open_min_priority: prio(
            "open_min_priority",
            &inc.open_min_priority,
            d.open_min_priority,
        )?,
        open_rules: inc.open_rules.clone(),
        open_tags: inc.open_tags.clone(),
        correlations: inc.correlations.unwrap_or(d.correlations),
        confirm_min_priority: prio(
            "confirm_min_priority",
            &inc.confirm_min_priority,
            d.confirm_min_priority,
        )?,
        confirm_rules: inc.confirm_rules.clone(),
    };
    let window = Duration::from_nanos(fleet.incident_window_ns);
    fleet.incident_window_ns =
        FleetOptions::duration("incident_window", f.incident_window.as_deref(), window)
            .map_err(|e| ServeError::Config(e.0))?
            .as_nanos() as u64;
    let learning = Duration::from_nanos(fleet.country_learning_ns);
    fleet.country_learning_ns =
        FleetOptions::duration("country_learning", f.country_learning.as_deref(), learning)
            .map_err(|e| ServeError::Config(e.0))?
            .as_nanos() as u64;
    let every = FleetOptions::duration(
        "deadline_check_interval",
        f.deadline_check_interval.as_deref(),
        Duration::from_secs(60),
    )
    .map_err(|e| ServeError::Config(e.0))?;
    Ok((fleet, every))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fleet_options_become_the_correlator_config() {
        let mut cfg = ServerConfig::with_data_dir("/tmp/rampart-fleet-serve-test");
        cfg.fleet.incident_window = Some("90m".into());
        cfg.fleet.deadline_check_interval = Some("5m".into());
        cfg.fleet.incidents.open_min_priority = Some("WARNING".into());
        cfg.fleet.roles = vec!["nis2-entity".into()];
        let (f, every) = fleet_config(&cfg).expect("valid options");
        assert_eq!(f.incident_window_ns, 90 * 60 * 1_000_000_000);
        assert_eq!(every, Duration::from_secs(300));
        assert_eq!(
            f.incident_policy.open_min_priority,
            rampart_event::Priority::Warning
        );
        assert_eq!(f.roles, vec!["nis2-entity".to_string()]);
        assert_eq!(
            f.db_path.as_deref(),
            Some(std::path::Path::new(
                "/tmp/rampart-fleet-serve-test/incidents.db"
            ))
        );
    }

    /// server.yaml's `fleet.notifications` reach the correlator (they were dropped once when
    /// the composition moved here).
    #[test]
    fn notifications_of_server_yaml_reach_the_correlator() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("server.yaml");
        std::fs::write(
            &path,
            format!(
                "data_dir: {}\nfleet:\n  notifications:\n    - type: webhook\n      name: chat\n      format: slack\n      url_file: /etc/rampart-server/slack.url\n      filter: {{min_priority: critical}}\n",
                dir.path().display()
            ),
        )
        .expect("write");
        let cfg = ServerConfig::load(&path).expect("server.yaml");
        let (f, _) = fleet_config(&cfg).expect("valid options");
        assert_eq!(f.notifications.len(), 1);
        assert_eq!(f.notifications, cfg.fleet.notifications);
    }

    #[test]
    fn bad_fleet_options_are_the_users_input_and_name_the_key() {
        let mut cfg = ServerConfig::with_data_dir("/tmp/rampart-fleet-serve-test");
        cfg.fleet.incidents.confirm_min_priority = Some("LOUD".into());
        let e = fleet_config(&cfg).expect_err("unknown priority");
        assert!(e.is_bad_input(), "{e}");
        assert!(
            e.to_string()
                .contains("fleet.incidents.confirm_min_priority"),
            "{e}"
        );
        let mut cfg = ServerConfig::with_data_dir("/tmp/rampart-fleet-serve-test");
        cfg.fleet.incident_window = Some("0s".into());
        let e = fleet_config(&cfg).expect_err("zero window");
        assert!(e.to_string().contains("fleet.incident_window"), "{e}");
        let mut cfg = ServerConfig::with_data_dir("/tmp/rampart-fleet-serve-test");
        cfg.fleet.regulations_dir = Some("/nonexistent/regulations".into());
        let e = fleet_config(&cfg).expect_err("missing directory");
        assert!(
            e.is_bad_input() && e.to_string().contains("fleet.regulations_dir"),
            "{e}"
        );
    }
}
