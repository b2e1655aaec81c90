//! Rampart's web dashboard, served by the central server under `/ui/`.
//!
//! * Pages: fleet overview, live alerts, incidents with deadline countdowns and timelines,
//!   containers, per-host drill-down, event search. Static HTML/CSS/JS compiled into the binary
//!   (no CDN, font or external script); the script renders every value with `textContent`,
//!   never as markup, because event fields (process arguments, file names) are chosen by
//!   whoever runs code on a watched host.
//! * Login with the server's users (`rampart server user add`): a session cookie (random
//!   token, kept hashed in the control database with an expiry; `HttpOnly; Secure;
//!   SameSite=Strict`). Failed logins: a progressive delay per (user name, source) and a cap
//!   per source (an IPv4 address or an IPv6 /64), counted before the password is checked; no
//!   lock of a user for everyone. At most two Argon2 checks run at once (16 more may wait).
//! * Data under `/ui/api/*` needs a session and follows the roles of the query API: read-only
//!   users see alerts, hosts, containers and incidents, not raw events.
//! * Live alerts are Server-Sent Events fed by [`Console::store_layer`], a store wrapper that
//!   publishes every committed alert (agents' and the fleet's own, when the fleet layer wraps
//!   it).
//!
//! ```no_run
//! # async fn demo(cfg: rampart_server::ServerConfig) -> Result<(), Box<dyn std::error::Error>> {
//! let console = rampart_console::Console::new(None);
//! let server = rampart_server::start_extras(cfg, rampart_server::ServerExtras {
//!     store_layer: Some(console.store_layer()),
//!     routes: vec![console.routes()],
//! }).await?;
//! # Ok(()) }
//! ```

mod api;
mod assets;
mod auth;
mod live;
pub mod serve;
mod view;

use std::sync::Arc;

use rampart_fleet::FleetSlot;
use rampart_server::{RouteLayer, StoreLayer};
use tokio::sync::broadcast;

pub use live::live_store;
pub use serve::{start_server, StartError};

/// Alerts kept for slow live subscribers before they are told they missed some.
const LIVE_BUFFER: usize = 1024;

/// The dashboard: its live alert feed, login limiter and what it reads incidents from.
pub struct Console {
    live: broadcast::Sender<Arc<serde_json::Value>>,
    fleet: Option<FleetSlot>,
    limiter: auth::Limiter,
    /// Password checks running at once ([`auth::PASSWORD_CHECKS`]).
    password_checks: tokio::sync::Semaphore,
    /// Logins checking or waiting to check a password ([`auth::PASSWORD_CHECKS_QUEUED`]).
    password_queued: Arc<std::sync::atomic::AtomicUsize>,
}

/// A login's place among those checking or waiting to check a password; given back on drop.
struct Queued(Arc<std::sync::atomic::AtomicUsize>);

impl Drop for Queued {
    fn drop(&mut self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
    }
}

impl std::fmt::Debug for Console {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Console")
            .field("fleet", &self.fleet.is_some())
            .finish_non_exhaustive()
    }
}

impl Console {
    /// A dashboard; `fleet` is where [`rampart_fleet::server_layer`] puts the fleet store
    /// (incidents and deadlines come from its correlator; without it the incidents page is
    /// empty).
    pub fn new(fleet: Option<FleetSlot>) -> Arc<Console> {
        let (live, _) = broadcast::channel(LIVE_BUFFER);
        Arc::new(Console {
            live,
            fleet,
            limiter: auth::Limiter::default(),
            password_checks: tokio::sync::Semaphore::new(auth::PASSWORD_CHECKS),
            password_queued: Arc::new(std::sync::atomic::AtomicUsize::new(0)),
        })
    }

    /// A place among the logins that check a password, `None` when all are taken.
    fn password_queue(&self) -> Option<Queued> {
        let q = Queued(self.password_queued.clone());
        if self
            .password_queued
            .fetch_add(1, std::sync::atomic::Ordering::AcqRel)
            >= auth::PASSWORD_CHECKS + auth::PASSWORD_CHECKS_QUEUED
        {
            return None; // dropping `q` gives the place back
        }
        Some(q)
    }

    /// The store layer that publishes committed alerts to live subscribers. Put it innermost
    /// (directly around the opened store) so that alerts other layers store, such as the
    /// fleet's correlation and deadline alerts, pass through it too.
    pub fn store_layer(self: &Arc<Self>) -> StoreLayer {
        let live = self.live.clone();
        Box::new(move |inner| Arc::new(live_store(inner, live)))
    }

    /// The routes: `/` (redirect), `/ui/...` pages and assets, `/ui/api/...` data.
    pub fn routes(self: &Arc<Self>) -> RouteLayer {
        let console = self.clone();
        Box::new(move |ctx| api::router(console, ctx))
    }

    /// Shows the alerts of every server of a fleet (several servers on one ClickHouse) on
    /// this server's live stream, reading them from `store` every `every`; forever (spawn it).
    pub async fn fleet_live_loop(
        self: Arc<Self>,
        store: Arc<dyn rampart_server::Store>,
        every: std::time::Duration,
    ) {
        live::fleet_live_loop(store, self.live.clone(), every).await
    }

    /// How many live alert subscribers are connected.
    pub fn live_subscribers(&self) -> usize {
        self.live.receiver_count()
    }
}
