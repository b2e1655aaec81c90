//! The agent's `ship:` section: every event and alert goes into the durable on-disk queue and
//! from there to the configured outputs (the Rampart server over mutual TLS, syslog RFC 5424,
//! HTTP JSON, a file, stdout), with Prometheus metrics on `metrics_listen`.
//!
//! ```yaml
//! ship:
//!   queue: {dir: /var/lib/rampart/queue, max_bytes: 1073741824, fsync: 200ms, overflow: drop_newest}
//!   outputs:
//!     - {type: server, url: "https://logs.example.net:8443", tls_dir: /var/lib/rampart/agent/tls}
//!     - {type: syslog, address: "udp://127.0.0.1:514"}
//!   metrics_listen: 127.0.0.1:9108
//! ```
//!
//! Records are collected between the pipeline's flushes and appended to the queue with one
//! write per flush; once [`AgentShip::flush`] returns they survive the agent being killed (and,
//! after the queue's fsync interval, power loss).

use std::sync::Arc;
use std::time::Duration;

use rampart_event::Device;
use rampart_ship::Shipper;

use crate::error::{AgentError, Context, Result};

/// `ship:` in `agent.yaml` (the keys are documented in docs/shipping.md).
pub type ShipSection = rampart_ship::ShipConfig;

/// How long a stopping agent waits for the outputs to deliver what is queued; the rest stays
/// in the queue for the next start.
const SHUTDOWN_DRAIN: Duration = Duration::from_secs(5);

/// The running shipper and the records of the current batch.
pub struct AgentShip {
    shipper: Shipper,
    /// The queued outputs' names.
    pub outputs: Vec<String>,
    batch: Vec<Vec<u8>>,
    /// Records the queue refused since start (`overflow: drop_newest` with a full queue).
    pub dropped: u64,
}

/// Starts shipping on `runtime` when the configuration has a `ship:` section, or when
/// `rampart up` brings its embedded server's output (then with a default queue if there is no
/// `ship:` section).
pub fn start(
    cfg: Option<&ShipSection>,
    device: &Arc<Device>,
    runtime: &tokio::runtime::Handle,
    embedded: Option<crate::Embedded<'_>>,
) -> Result<Option<AgentShip>> {
    let (extra, default_cfg) = match embedded {
        Some(e) => {
            let local = e.server.local_output(
                "local",
                "local",
                device.region.as_deref().unwrap_or_default(),
            );
            let extra: Vec<Box<dyn rampart_ship::output::Output>> = vec![Box::new(local)];
            let mut default = ShipSection::new(e.queue_dir);
            // In process there is no network round trip to hide: one batch of at most 1 MiB
            // at a time, not four of 4 MiB, each of which the ingest holds parsed (issue 20:
            // the batches in flight were most of `rampart up`'s memory under a storm).
            default.batch.max_bytes = 1 << 20;
            default.batch.in_flight = 1;
            (extra, Some(default))
        }
        None => (Vec::new(), None),
    };
    let Some(cfg) = cfg.or(default_cfg.as_ref()) else {
        return Ok(None);
    };
    // `delivery: direct` outputs are the loop's (`output.rs`); the queue is for the others,
    // and is not opened when there are none.
    let mut queued = cfg.clone();
    queued.outputs.retain(|o| !o.is_direct());
    if queued.outputs.is_empty() && extra.is_empty() {
        return Ok(None);
    }
    let cfg = &queued;
    let mut names: Vec<String> = cfg.outputs.iter().map(|o| o.name().to_string()).collect();
    names.extend(extra.iter().map(|o| o.name().to_string()));
    let shipper = rampart_ship::start(cfg, device.clone(), extra, runtime).map_err(|e| {
        use rampart_ship::ShipError;
        match e {
            ShipError::Output(_)
            | ShipError::DuplicateOutput(_)
            | ShipError::NoOutputs
            | ShipError::Anonymise(_)
            | ShipError::Key { .. } => AgentError::Config(format!("ship: {e}")),
            other => AgentError::Step {
                context: "ship: starting the shipper".into(),
                source: Box::new(other),
            },
        }
    })?;
    tracing::info!(
        "shipping through the queue in {} to {}",
        cfg.queue.dir.display(),
        names.join(", ")
    );
    if let Some(addr) = cfg.metrics_listen {
        tracing::info!("Prometheus metrics on http://{addr}/metrics");
    }
    Ok(Some(AgentShip {
        shipper,
        outputs: names,
        batch: Vec::new(),
        dropped: 0,
    }))
}

impl AgentShip {
    /// Adds one event or alert (serialised) to the current batch.
    pub fn push_json(&mut self, record: Vec<u8>) {
        self.batch.push(record);
    }

    /// Appends the current batch to the queue (one write). With `overflow: block` this waits
    /// while the queue is full; with `drop_newest` what does not fit is counted and reported.
    pub fn flush(&mut self) -> Result<()> {
        if self.batch.is_empty() {
            return Ok(());
        }
        let r = self
            .shipper
            .send_json(&self.batch)
            .context("ship: appending to the queue")?;
        if r.dropped > 0 {
            self.dropped += r.dropped as u64;
            tracing::warn!(
                "ship: queue full, {} records dropped ({} since start; rampart_agent_dropped_total{{stage=\"queue\"}})",
                r.dropped,
                self.dropped
            );
        }
        self.batch.clear();
        Ok(())
    }

    /// Flushes, waits up to 5 s for the outputs to deliver, and closes the queue.
    pub fn shutdown(mut self, runtime: &tokio::runtime::Runtime) -> Result<()> {
        let flushed = self.flush();
        let _ = self.shipper.sync();
        runtime.block_on(self.shipper.shutdown(SHUTDOWN_DRAIN));
        flushed
    }
}
