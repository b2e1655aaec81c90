//! The whole central server: `rampart_fleet::serve` with this dashboard, the scheduled
//! vulnerability-database update (`vulndb_update:`) and, when several servers share one
//! ClickHouse, the fleet-wide live alerts. `rampart server` and `rampart up` start it this way.

use std::time::Duration;

use rampart_fleet::vulndb_update::UpdateError;
use rampart_fleet::{RunningServer, ServeError};
use rampart_server::ServerConfig;

use crate::Console;

/// How often the fleet-wide live loop reads the shared store's new alerts.
const FLEET_LIVE_POLL: Duration = Duration::from_millis(500);

/// Why the server did not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    #[error(transparent)]
    Serve(#[from] ServeError),
    /// The scheduled vulnerability-database update (`vulndb_update:`) did not start.
    #[error(transparent)]
    Update(#[from] UpdateError),
}

impl StartError {
    /// Whether the error is the user's input being wrong (the configuration).
    pub fn is_bad_input(&self) -> bool {
        match self {
            StartError::Serve(e) => e.is_bad_input(),
            StartError::Update(e) => e.is_bad_input(),
        }
    }
}

/// Starts the server with the fleet console and the dashboard; needs a tokio runtime.
pub async fn start_server(cfg: ServerConfig) -> Result<RunningServer, StartError> {
    let data_dir = cfg.data_dir.clone();
    // The scheduled `db update` (server.yaml `vulndb_update:`), stopped with the server.
    let db_update = rampart_fleet::vulndb_update::spawn(&cfg)?;
    // Several servers on one ClickHouse: every dashboard shows the whole fleet's alerts.
    let fleet_live = cfg.control_store.is_some()
        && matches!(cfg.store, rampart_server::StoreConfig::Clickhouse { .. });
    let mut made = None;
    let mut running = rampart_fleet::serve(cfg, |fleet| {
        let console = Console::new(Some(fleet.clone()));
        made = Some((console.clone(), fleet));
        rampart_server::ServerExtras {
            store_layer: Some(console.store_layer()),
            routes: vec![console.routes()],
        }
    })
    .await?;
    if let Some(t) = db_update {
        running.add_task(t);
    }
    if let Some((console, store)) = made.filter(|_| fleet_live) {
        if let Some(store) = store.get() {
            let store: std::sync::Arc<dyn rampart_server::Store> = store.clone();
            running.add_task(tokio::spawn(
                console.fleet_live_loop(store, FLEET_LIVE_POLL),
            ));
        }
    }
    tracing::info!(
        "server listening on {} (CA {}, admin token in {}); dashboard {}/ui/ (first user admin, password in {})",
        running.server.url(),
        data_dir.join("ca/ca.crt").display(),
        data_dir.join("admin.token").display(),
        running.server.url(),
        data_dir.join("admin.password").display()
    );
    Ok(running)
}
