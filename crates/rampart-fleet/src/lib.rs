//! Rampart's fleet console: what the central server does with the events of every host.
//!
//! * [`regulation`]: the notification regimes of `regulations/*.yaml` (loading with file:line
//!   errors, jurisdictions, log-retention minimums and the retention check).
//! * [`deadline`]: deadline arithmetic (hours, calendar days, business days, months) with
//!   countdowns, near-due and overdue states.
//! * [`incident`]: alerts grouped into incidents by subject, category and time, with a timeline
//!   and the deadlines that apply.
//! * [`correlate`]: the fleet rules (stateful rules over all hosts' events), the new-country
//!   detector, deadline alerts, and [`FleetStore`], the wrapper that hooks all of it into the
//!   server's store.
//! * [`report`]: draft notifications in Markdown and PDF.
//! * [`db`]: the incidents database (SQLite).
//! * [`shared`]: incidents, marks and raised deadline alerts shared by a fleet of servers
//!   through the control store.
//! * [`notify`]: server-side notifications (incident opened, deadlines near due or overdue,
//!   "now vulnerable", any alert) through the agent's notifier outputs and filters.
//! * [`admin`]: the server's admin commands on its data directory (tokens, users, agents,
//!   enrollment tokens, the vulnerability database and fleet configuration status).
//! * [`serve`]: the central server started with all of the above and the dashboard.
//! * [`vulns`]: continuous vulnerability management: every SBOM, the running containers and
//!   "now vulnerable" alerts when the vulnerability database changes.

pub mod admin;
pub mod args;
pub mod correlate;
pub mod db;
pub mod deadline;
pub mod incident;
pub mod notify;
pub mod regulation;
pub mod report;
pub mod serve;
pub mod shared;
mod text;
pub mod vulndb_update;
pub mod vulns;

pub use correlate::{
    alert_record, db_path, server_layer, Correlator, FleetConfig, FleetError, FleetSlot,
    FleetStats, FleetStore, FLEET_RULES, FLEET_RULES_NAME, LATE_WINDOW, TOO_LATE, TOO_LATE_RULE,
};
pub use db::{DbError, IncidentDb, Mark};
pub use deadline::{Clock, DeadlineState};
pub use incident::{
    AppliedDeadline, Category, Grouper, Incident, IncidentPolicy, Subject, TimelineEntry,
};
pub use notify::{FleetNotifier, INCIDENT_OPENED_RULE};
pub use regulation::{check_retention, Regulation, RegulationError, RetentionShortfall};
pub use serve::{serve, RunningServer, ServeError};
pub use shared::{IncidentSource, SharedError};
pub use text::{list_header, marks_now, IncidentSettings, MarkError, MarkRequest};
pub use vulns::{RunningContainer, VulnTracker, VulnsConfig, VulnsError, NEWLY_VULNERABLE_RULE};
