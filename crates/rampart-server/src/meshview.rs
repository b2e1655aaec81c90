//! The central view of the mesh (issue 21): the services each host's proxy offers, the edges
//! (source identity -> service) with their use and last use, and the refusals, aggregated from
//! the records the proxies ship (`mesh.report`, and `policy.net_denied` with `policy.policy` =
//! `mesh`), the way the dashboard's other fleet views read the store.
//!
//! # Trust
//! A record's host is the one its sender enrolled as (ingest rewrites `device.hostname` from the
//! client certificate). A proxy only knows its own side: an edge or an inbound refusal is kept
//! only when its destination identity is on the reporting host, an outbound refusal only when
//! its source identity (if any) is; services are the reporting host's by construction. What
//! names another host is left out and counted in `claims_refused`, so one host cannot paint
//! traffic on another's services.
//!
//! # Plaintext east-west
//! Alerts of the rule [`EASTWEST_RULE`] (docs/mesh.md) name the remote side by address; the
//! view names the container behind it from the other hosts' newest `inventory.container`
//! records (their `addresses`, reported within a day of the alert). An address that several
//! other hosts' containers report (overlapping Docker networks) names none of them: the
//! candidates are counted instead.

use std::collections::BTreeMap;

use rampart_event::{Event, MeshReport};
use rampart_mesh::SpiffeId;
use serde::Serialize;

use crate::store::{Query, RecordKind, Store, StoreError, StoredRecord};

/// Records read per kind for one view; a view that reached it says `truncated`.
pub const VIEW_RECORDS: usize = 10_000;
/// Refusals listed (newest first); all of them are counted on their edge.
pub const VIEW_DENIALS: usize = 200;

/// The rule name of the plaintext east-west alert (docs/mesh.md).
pub const EASTWEST_RULE: &str = "Plaintext east-west connection";
const DAY_NS: u64 = 86_400_000_000_000;

/// A plaintext connection between hosts' containers, outside the mesh.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PlaintextView {
    pub time_ns: u64,
    /// The alert's id.
    pub id: String,
    /// Where the connection started: the alert's host and container.
    pub host: String,
    pub container: String,
    /// The remote address and port, as the alert gives them.
    pub remote_address: String,
    pub remote_port: Option<u16>,
    /// The remote host and container, when exactly one other host's container has the address.
    pub remote_host: Option<String>,
    pub remote_container: Option<String>,
    /// How many other hosts' containers report the address.
    pub candidates: usize,
}

/// A service offered by a host's proxy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ServiceView {
    pub host: String,
    pub name: String,
    pub port: u16,
    /// When the host last reported it.
    pub reported_ns: u64,
}

/// One edge's use over the view's window.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EdgeView {
    pub source_identity: String,
    pub destination_identity: String,
    pub port: u16,
    /// The host whose proxy saw it (the destination's).
    pub reported_by: String,
    pub allowed: u64,
    pub denied: u64,
    /// The last connection, allowed or not.
    pub last_ns: u64,
    /// The last allowed connection.
    pub last_allowed_ns: Option<u64>,
}

/// One refusal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DenialView {
    pub time_ns: u64,
    pub reported_by: String,
    pub source_identity: Option<String>,
    pub destination_identity: Option<String>,
    pub rule: String,
    pub reason: String,
    /// `rampart mesh (inbound)` or `(outbound)`.
    pub mechanism: String,
    /// The peer's address.
    pub peer: Option<String>,
}

/// What `GET /api/v1/mesh` answers.
#[derive(Debug, Clone, Default, Serialize)]
pub struct MeshView {
    pub since_ns: u64,
    pub services: Vec<ServiceView>,
    /// Most recently used first.
    pub edges: Vec<EdgeView>,
    /// Newest first, at most [`VIEW_DENIALS`].
    pub denials: Vec<DenialView>,
    /// Refusals in the window (all of them, also those not listed).
    pub denials_total: u64,
    /// Edges and refusals left out because they named an identity of another host than the
    /// one that reported them.
    pub claims_refused: u64,
    /// The window held more than [`VIEW_RECORDS`] records of a kind: older ones are not counted.
    pub truncated: bool,
    /// Plaintext east-west alerts, newest first, at most [`VIEW_DENIALS`], with the remote
    /// container named from the inventory.
    pub plaintext: Vec<PlaintextView>,
}

/// The window when none is asked for: the last 7 days.
pub fn default_since() -> u64 {
    rampart_event::now_ns().saturating_sub(7 * 86_400_000_000_000)
}

fn host_of(identity: &str) -> Option<String> {
    SpiffeId::parse(identity).ok().map(|s| s.host)
}

/// Builds the view from the records stored since `since_ns`.
pub async fn mesh_view(store: &dyn Store, since_ns: u64) -> Result<MeshView, StoreError> {
    let q = |t: &str| Query {
        kind: Some(RecordKind::Event),
        event_type: Some(t.to_string()),
        since_ns: Some(since_ns),
        limit: VIEW_RECORDS,
        ..Query::default()
    };
    let (reports, denials) = (q("mesh.report"), q("policy.net_denied"));
    let eastwest = Query {
        kind: Some(RecordKind::Alert),
        rule: Some(EASTWEST_RULE.to_string()),
        since_ns: Some(since_ns),
        limit: VIEW_DENIALS,
        ..Query::default()
    };
    let (reports, denials, eastwest, inventory) = tokio::join!(
        store.query(&reports),
        store.query(&denials),
        store.query(&eastwest),
        store.latest_inventory("inventory.container", None)
    );
    let (reports, denials, eastwest, inventory) = (reports?, denials?, eastwest?, inventory?);
    let mut v = MeshView {
        since_ns,
        truncated: reports.len() >= VIEW_RECORDS || denials.len() >= VIEW_RECORDS,
        ..MeshView::default()
    };
    let mut services: BTreeMap<(String, String, u16), u64> = BTreeMap::new();
    let mut edges: BTreeMap<(String, String, u16), EdgeView> = BTreeMap::new();
    for r in &reports {
        let Some(rep) = mesh_report(r) else { continue };
        for s in &rep.services {
            let t = services
                .entry((r.host.clone(), s.name.clone(), s.port))
                .or_default();
            *t = (*t).max(r.time_ns);
        }
        for e in &rep.edges {
            if host_of(&e.destination_identity).as_deref() != Some(r.host.as_str()) {
                v.claims_refused += 1;
                continue;
            }
            let key = (
                e.source_identity.clone(),
                e.destination_identity.clone(),
                e.port,
            );
            let ev = edges.entry(key).or_insert_with(|| EdgeView {
                source_identity: e.source_identity.clone(),
                destination_identity: e.destination_identity.clone(),
                port: e.port,
                reported_by: r.host.clone(),
                allowed: 0,
                denied: 0,
                last_ns: 0,
                last_allowed_ns: None,
            });
            ev.allowed += e.allowed;
            ev.denied += e.denied;
            ev.last_ns = ev.last_ns.max(e.last_ns);
            if e.allowed > 0 {
                ev.last_allowed_ns = Some(ev.last_allowed_ns.unwrap_or(0).max(e.last_ns));
            }
        }
    }
    for r in &denials {
        let Ok(ev) = serde_json::from_str::<Event>(&r.json) else {
            continue;
        };
        let Some(p) = ev.policy.filter(|p| p.policy == "mesh") else {
            continue;
        };
        let outbound = p.mechanism.ends_with("(outbound)");
        let own = if outbound {
            p.source_identity.as_deref()
        } else {
            p.destination_identity.as_deref()
        };
        if let Some(id) = own {
            if host_of(id).as_deref() != Some(r.host.as_str()) {
                v.claims_refused += 1;
                continue;
            }
        }
        v.denials_total += 1;
        if v.denials.len() < VIEW_DENIALS {
            v.denials.push(DenialView {
                time_ns: r.time_ns,
                reported_by: r.host.clone(),
                source_identity: p.source_identity,
                destination_identity: p.destination_identity,
                rule: p.rule,
                reason: p.reason,
                mechanism: p.mechanism,
                peer: ev
                    .network
                    .and_then(|n| n.src)
                    .map(|e| std::net::SocketAddr::new(e.ip, e.port).to_string()),
            });
        }
    }
    v.services = services
        .into_iter()
        .map(|((host, name, port), reported_ns)| ServiceView {
            host,
            name,
            port,
            reported_ns,
        })
        .collect();
    v.plaintext = plaintext(&eastwest, &inventory);
    v.edges = edges.into_values().collect();
    v.edges.sort_by_key(|e| std::cmp::Reverse(e.last_ns));
    Ok(v)
}

/// Names the remote side of each east-west alert from the inventories.
fn plaintext(alerts: &[StoredRecord], inventory: &[StoredRecord]) -> Vec<PlaintextView> {
    // address -> (host, container name, reported at)
    let mut by_ip: BTreeMap<std::net::IpAddr, Vec<(String, String, u64)>> = BTreeMap::new();
    for r in inventory {
        let Ok(ev) = serde_json::from_str::<Event>(&r.json) else {
            continue;
        };
        let (Some(inv), Some(c)) = (ev.container_inventory, ev.container) else {
            continue;
        };
        for ip in &inv.addresses {
            by_ip
                .entry(*ip)
                .or_default()
                .push((r.host.clone(), c.name.clone(), r.time_ns));
        }
    }
    let mut out = Vec::new();
    for a in alerts {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(&a.json) else {
            continue;
        };
        let field = |k: &str| {
            v.pointer(&format!("/output_fields/{}", k.replace('/', "~1")))
                .and_then(|x| {
                    x.as_str()
                        .map(str::to_string)
                        .or_else(|| x.as_u64().map(|n| n.to_string()))
                })
        };
        let ip = field("fd.sip").or_else(|| {
            v.pointer("/evidences/0/network/dst/ip")
                .and_then(|x| x.as_str())
                .map(str::to_string)
        });
        let Some(ip) = ip else { continue };
        let port = field("fd.sport").and_then(|p| p.parse().ok()).or_else(|| {
            v.pointer("/evidences/0/network/dst/port")
                .and_then(serde_json::Value::as_u64)
                .and_then(|p| u16::try_from(p).ok())
        });
        let candidates: Vec<&(String, String, u64)> = ip
            .parse::<std::net::IpAddr>()
            .ok()
            .and_then(|ip| by_ip.get(&ip))
            .map(|c| {
                c.iter()
                    .filter(|(h, _, t)| *h != a.host && t.abs_diff(a.time_ns) <= DAY_NS)
                    .collect()
            })
            .unwrap_or_default();
        let one = (candidates.len() == 1).then(|| candidates[0]);
        out.push(PlaintextView {
            time_ns: a.time_ns,
            id: a.id.clone(),
            host: a.host.clone(),
            container: a.container_name.clone(),
            remote_address: ip,
            remote_port: port,
            remote_host: one.map(|c| c.0.clone()),
            remote_container: one.map(|c| c.1.clone()),
            candidates: candidates.len(),
        });
    }
    out
}

fn mesh_report(r: &StoredRecord) -> Option<Box<MeshReport>> {
    serde_json::from_str::<Event>(&r.json).ok()?.mesh
}
