//! What a proxy tells the server: its refusals (`policy.net_denied`, both identities) as they
//! happen, and every report interval a `mesh.report` (its services and the use of each edge
//! since the previous report). Both go into a durable `rampart-ship` queue and reach the
//! server's ingest over the agent's enrolled mutual TLS, like the agent's own records
//! (`docs/mesh.md`, "Central view").
//!
//! The server names the reporting host from the client certificate, never from the record, and
//! keeps an edge only when its destination is on that host (`rampart-server`'s `meshview`).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rampart_event::{Device, Event, EventId, EventKind, MeshEdge, MeshReport, MeshService};
use rampart_ship::Shipper;
use tokio::sync::mpsc;

use crate::proxy::{EdgeStat, Mesh};
use crate::MeshError;

/// Builds `mesh.report` events from a proxy's edge counters: each report carries the counts
/// since the previous one (a report with no edge is still sent every `heartbeat`, so the
/// server keeps knowing the host's services).
#[derive(Debug)]
pub struct EdgeReporter {
    mesh: Arc<Mesh>,
    device: Arc<Device>,
    instance: u64,
    seq: u64,
    last: BTreeMap<(String, String), EdgeStat>,
    services_sent: Option<Instant>,
}

impl EdgeReporter {
    /// A reporter for `mesh`; its events are attributed to the proxy's host.
    pub fn new(mesh: Arc<Mesh>) -> EdgeReporter {
        let mut seed = [0u8; 8];
        let _ = ring_fill(&mut seed);
        EdgeReporter {
            device: Arc::new(Device {
                hostname: mesh.host().to_string(),
                region: None,
            }),
            mesh,
            instance: u64::from_be_bytes(seed),
            seq: 0,
            last: BTreeMap::new(),
            services_sent: None,
        }
    }

    /// The next report: the edges whose counters moved since the previous call, with the
    /// services. `None` when no edge moved and the services were sent less than `heartbeat`
    /// ago.
    pub fn next(&mut self, heartbeat: Duration) -> Option<Event> {
        let now = self.mesh.edges();
        let mut edges = Vec::new();
        for (key, stat) in &now {
            let before = self.last.get(key).cloned().unwrap_or_default();
            let (allowed, denied) = (
                stat.allowed.saturating_sub(before.allowed),
                stat.denied.saturating_sub(before.denied),
            );
            if allowed == 0 && denied == 0 {
                continue;
            }
            // The key's destination is `spiffe://<fleet>/<host>/<service>:<port>`.
            let (dst, port) = match key.1.rsplit_once(':') {
                Some((d, p)) => (d.to_string(), p.parse().unwrap_or(0)),
                None => (key.1.clone(), 0),
            };
            edges.push(MeshEdge {
                source_identity: key.0.clone(),
                destination_identity: dst,
                port,
                allowed,
                denied,
                last_ns: stat.last_ns,
            });
        }
        let due = self.services_sent.is_none_or(|t| t.elapsed() >= heartbeat);
        if edges.is_empty() && !due {
            return None;
        }
        self.last = now;
        self.services_sent = Some(Instant::now());
        self.seq += 1;
        let time = edges
            .iter()
            .map(|e| e.last_ns)
            .max()
            .unwrap_or_else(rampart_event::now_ns)
            .max(rampart_event::now_ns());
        let mut e = Event::new(
            EventId::new(self.instance, self.seq),
            time,
            EventKind::MeshReport,
            self.device.clone(),
        );
        e.mesh = Some(Box::new(MeshReport {
            services: self
                .mesh
                .service_list()
                .into_iter()
                .map(|(name, port)| MeshService { name, port })
                .collect(),
            edges,
        }));
        Some(e)
    }
}

fn ring_fill(b: &mut [u8]) -> Result<(), MeshError> {
    rustls::crypto::ring::default_provider()
        .secure_random
        .fill(b)
        .map_err(|_| MeshError::Tls("no system randomness".into()))
}

/// A shipper whose one output is the Rampart server at `url`, authenticated with the agent's
/// enrollment in `tls_dir` (`ca.crt`, `agent.crt`, `agent.key`), queueing in `queue_dir`
/// (created 0700). The proxy has its own queue because the agent's is locked by the agent
/// process, which the proxy outlives (ARCHITECTURE.md).
pub fn server_shipper(
    url: &str,
    tls_dir: &Path,
    queue_dir: &Path,
    host: &str,
    runtime: &tokio::runtime::Handle,
) -> Result<Shipper, MeshError> {
    let bad = |e: &dyn std::fmt::Display| MeshError::Config {
        place: format!("mesh: shipping to {url}"),
        message: e.to_string(),
    };
    let tls = rampart_ship::tls::agent_client_config(tls_dir).map_err(|e| bad(&e))?;
    let out = rampart_ship::output::ServerOutput::new("server", url, tls).map_err(|e| bad(&e))?;
    let device = Arc::new(Device {
        hostname: host.to_string(),
        region: None,
    });
    rampart_ship::start(
        &rampart_ship::ShipConfig::new(queue_dir),
        device,
        vec![Box::new(out)],
        runtime,
    )
    .map_err(|e| bad(&e))
}

/// Counters of what [`forward`] could not queue.
#[derive(Debug, Default)]
pub struct ForwardStats {
    /// Records (refusals and reports) the queue refused or could not write.
    pub dropped: AtomicU64,
}

/// Queues every refusal `mesh` reports on `rx` and, every `every`, its `mesh.report`, until
/// `rx` closes (then one last report). `print` also writes each record as a JSON line on
/// stdout. A record the queue cannot take is counted in `stats` and logged, never silent; the
/// proxy's own drops (its channel full) are [`Mesh::dropped_events`].
pub async fn forward(
    mesh: Arc<Mesh>,
    mut rx: mpsc::Receiver<Event>,
    shipper: Shipper,
    every: Duration,
    print: bool,
    stats: Arc<ForwardStats>,
) {
    let mut reporter = EdgeReporter::new(mesh);
    let heartbeat = every.saturating_mul(10).max(Duration::from_secs(60));
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let ship = |e: Event| {
        if print {
            match serde_json::to_string(&e) {
                Ok(line) => println!("{line}"),
                Err(err) => tracing::error!("mesh: event not printed: {err}"),
            }
        }
        let (shipper, stats) = (shipper.clone(), stats.clone());
        // The queue's append may block (fsync, `overflow: block`): off the runtime's workers.
        tokio::task::spawn_blocking(move || {
            shipper.send_counted(&e, &stats.dropped, "mesh record");
        })
    };
    loop {
        tokio::select! {
            e = rx.recv() => match e {
                Some(e) => { let _ = ship(e).await; }
                None => break,
            },
            _ = tick.tick() => {
                if let Some(r) = reporter.next(heartbeat) {
                    let _ = ship(r).await;
                }
            }
        }
    }
    if let Some(r) = reporter.next(Duration::ZERO) {
        let _ = ship(r).await;
    }
}
