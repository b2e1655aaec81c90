//! Rampart's shipping side: everything between the agent's pipeline and the places its records
//! go.
//!
//! * [`queue`]: the durable on-disk queue (format documented there). Every record is appended
//!   to it first; each output reads it with its own cursor.
//! * [`output`]: the [`Output`] trait and the outputs: stdout, file (JSON lines), syslog
//!   (RFC 5424), HTTP JSON, and the Rampart server (zstd batches over mutual TLS).
//! * [`notify`]: notifier outputs for people (Slack, Mattermost, Teams webhooks; mail over
//!   SMTP) with grouping, rate limits and their own bounded delivery queue.
//! * [`start`]: runs the shipping side in the caller's tokio runtime and returns a [`Shipper`]
//!   to [`send`](Shipper::send) events and alerts to.
//! * [`enroll`](enroll::enroll): get the agent's client certificate from the server's CA.
//! * [`anonymise`]: the anonymisation the server applies per region, usable on the agent too.
//! * [`metrics`]: Prometheus text format and the `/metrics` endpoint.
//!
//! ```no_run
//! # async fn demo(ev: rampart_event::Event) -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! let cfg: rampart_ship::ShipConfig = serde_yaml::from_str(
//!     "queue: {dir: /var/lib/rampart/queue}\noutputs: [{type: stdout}]",
//! )?;
//! let device = Arc::new(rampart_event::Device { hostname: "vps1".into(), region: None });
//! let shipper = rampart_ship::start(&cfg, device, Vec::new(), &tokio::runtime::Handle::current())?;
//! shipper.send(&ev)?; // durable when it returns
//! shipper.shutdown(std::time::Duration::from_secs(5)).await;
//! # Ok(()) }
//! ```

pub mod anonymise;
pub mod client;
pub mod enroll;
pub mod evidence;
pub mod metrics;
pub mod notify;
pub mod output;
pub mod protocol;
pub mod queue;
mod record;
mod shipper;
pub mod tls;

pub use output::{
    Delivered, Delivery, DirectOutputs, DirectStats, Output, OutputConfig, OutputError,
    OutputFilter,
};
pub use record::{RecordMeta, Shippable};
pub use shipper::{
    read_key_file, start, AgentAnonymise, BackoffConfig, BatchConfig, OutputStats, ShipConfig,
    ShipError, ShipStats, Shipper,
};
