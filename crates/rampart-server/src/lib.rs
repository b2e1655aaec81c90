//! Rampart's central server: ingest from agents over mutual TLS, a built-in CA with enrollment
//! and revocation, stores behind one [`Store`] trait (SQLite embedded default, ClickHouse for
//! fleets), a query API with role-based tokens, per-region anonymisation at ingest and a
//! retention job that records what it deleted.
//!
//! Run it standalone ([`start`] with a [`ServerConfig`] from `server.yaml`), or embedded next to
//! the agent in one process: [`ServerHandle::local_output`] gives the agent's shipper an
//! output that writes straight into the store.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let cfg = rampart_server::ServerConfig::with_data_dir("/var/lib/rampart/server");
//! let server = rampart_server::start(cfg).await?;
//! println!("listening on {}", server.url());
//! server.shutdown().await;
//! # Ok(()) }
//! ```

mod api;
pub mod ca;
pub mod client;
pub mod config;
pub mod control;
mod evidence;
pub mod fleetconfig;
mod fsmode;
pub mod ingest;
mod local;
pub mod meshview;
pub mod sequence;
mod server;
pub mod store;
pub mod vulndb;

pub use api::{parse_time, ConnInfo};
pub use config::{
    ControlStoreConfig, FleetOptions, IncidentOptions, InvalidSetting, RegionPolicy, ServerConfig,
    StoreConfig,
};
pub use control::Role;
pub use local::LocalOutput;
pub use server::{
    open_control, open_store, revoke_agent_offline, start, ServerError, ServerHandle,
};
pub use server::{start_extras, FleetLease, RouteLayer, ServerContext, ServerExtras};
pub use server::{start_with, StoreLayer};
pub use store::HostSummary;
pub use store::{IngestCursor, Query, RecordKind, Store, StoredRecord};
