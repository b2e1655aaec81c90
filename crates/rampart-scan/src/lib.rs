//! Image security for Rampart: read an image from any source, inventory its packages, match them
//! against an offline vulnerability database, and look for what should not be there.
//!
//! * [`ImageReader`] reads an image ([`Target`]: Docker daemon image, `docker save` tarball, OCI
//!   layout, root filesystem directory, container) into an [`Inventory`]: OS and language
//!   packages (each with its file and layer), secrets, malware, file modes, configuration and
//!   minimality [`Finding`]s. Hostile archives are refused (see [`ImageError`]) and no image
//!   content is ever written to disk; [`Limits`] bounds what an image may make the reader do.
//! * [`VulnDb`] is the offline vulnerability database (OSV records in SQLite, imported
//!   incrementally); [`match_inventory`] turns an inventory into [`rampart_event::VulnFinding`]s
//!   with each ecosystem's own version ordering ([`version`]).
//! * [`scan`] does both, with an [`InventoryCache`] keyed by image id; the `render_*` functions
//!   write table, JSON, SARIF, CycloneDX and SPDX reports.
//! * [`lint`] checks Dockerfiles.
//! * [`ScanRequest`] and [`UpdateArgs`] are `rampart image scan` and `rampart db update` as the
//!   user asks for them, with the decisions that follow (optional database, what is cached,
//!   the `--fail-on` [`Gate`]); with the `clap` feature they are also the commands' arguments.

mod analyze;
mod cache;
mod db;
mod ecosystem;
mod finding;
mod image;
mod inventory;
mod limit;
pub mod lint;
mod matcher;
mod purl;
mod report;
mod request;
mod scan;
pub mod version;

pub use analyze::malware::{YaraError, BUILTIN_RULES};
pub use analyze::{ContentChecks, OsRelease, Warning};
pub use cache::{InventoryCache, DEFAULT_CACHE_DIR};
pub use db::lock as lock_db;
pub use db::{
    describe_age, export_url, import_sources, update as update_db, DbError, DbStatus,
    EcosystemUpdate, FeedStatus, ImportStats, SourceStatus, StoredVuln, UpdateOptions,
    UpdateOutcome, UpdateReport, VulnDb, WriteLock, DEFAULT_DB_PATH, DEFAULT_ECOSYSTEMS,
    DEFAULT_OSV_URL, DEFAULT_STALE_AFTER, SCHEMA_VERSION,
};
pub use finding::{mask, Finding, FindingKind};
pub use image::{
    Healthcheck, History, ImageConfig, ImageError, ImageInfo, ImageReader, LayerInfo, NoProgress,
    Progress, RootFs, RunConfig, SourceKind, Target,
};
pub use inventory::Inventory;
pub use limit::{LimitExceeded, Limits};
pub use matcher::{match_inventory, match_packages, MatchReport, MatchStats};
pub use report::{
    open_for_scan, render_cyclonedx, render_json, render_sarif, render_spdx, render_table,
    severity_counts, DbInfo, ScanReport,
};
pub use request::{DbPath, FailOn, Gate, ReportFormat, ScanDb, ScanRequest, Scanned, UpdateArgs};
pub use scan::{scan, ScanError, ScanOptions};
