//! The JSON the pages read: records, inventories and incidents reduced to what is shown.
//! Values stay plain strings here; the page script renders them as text.

use rampart_event::Event;
use rampart_fleet::{Incident, Regulation};
use rampart_server::StoredRecord;
use serde_json::{json, Value};

fn str_at<'a>(v: &'a Value, p: &str) -> Option<&'a str> {
    v.pointer(p)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
}

/// What happened, in a line: an alert's output (OCSF `message`; or its rule), else the most
/// telling field.
pub(crate) fn summary(r: &StoredRecord, v: &Value) -> String {
    if r.kind == rampart_server::RecordKind::Alert {
        return str_at(v, "/message")
            .or_else(|| str_at(v, "/rule"))
            .unwrap_or(&r.rule)
            .to_string();
    }
    let process = str_at(v, "/process/name").unwrap_or("");
    let args: Vec<&str> = v
        .pointer("/process/args")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).skip(1).collect())
        .unwrap_or_default();
    let detail = if let Some(p) = str_at(v, "/file/path") {
        p.to_string()
    } else if let Some(ip) = str_at(v, "/network/dst/ip") {
        match v.pointer("/network/dst/port").and_then(Value::as_u64) {
            Some(port) => format!("-> {ip}:{port}"),
            None => format!("-> {ip}"),
        }
    } else if let Some(q) = str_at(v, "/dns/query") {
        q.to_string()
    } else {
        args.join(" ")
    };
    let s = format!("{process} {detail}");
    let s = s.trim();
    if s.is_empty() {
        r.event_type.clone()
    } else {
        s.to_string()
    }
}

/// A stored record as a row of a list; `raw` adds the whole stored JSON (analysts only).
pub(crate) fn record(r: &StoredRecord, raw: bool) -> Value {
    let v: Value = serde_json::from_str(&r.json).unwrap_or(Value::Null);
    let mut out = json!({
        "id": r.id,
        "kind": r.kind.as_str(),
        "type": r.event_type,
        "time_ns": r.time_ns,
        "host": r.host,
        "region": r.region,
        "agent_id": r.agent_id,
        "container_id": r.container_id,
        "container_name": r.container_name,
        "image": r.image,
        "rule": r.rule,
        "priority": r.priority,
        "severity": r.severity,
        "summary": summary(r, &v),
    });
    if raw {
        out["record"] = v;
    }
    out
}

/// An `inventory.host` record: the host's software and protections.
pub(crate) fn host_inventory(r: &StoredRecord) -> Option<Value> {
    let ev: Event = serde_json::from_str(&r.json).ok()?;
    let inv = ev.host_inventory?;
    Some(json!({
        "time_ns": r.time_ns,
        "agent_version": inv.agent_version,
        "kernel": inv.kernel,
        "os": inv.os,
        "sensor": inv.sensor,
        "audit_score": inv.audit_score,
        "containers_running": inv.containers_running,
        "protections": inv.protections.iter().map(|p| json!({
            "name": p.name, "available": p.available, "detail": p.detail,
        })).collect::<Vec<_>>(),
    }))
}

/// An `inventory.container` record: the container, its image and posture.
pub(crate) fn container_inventory(r: &StoredRecord) -> Option<Value> {
    let ev: Event = serde_json::from_str(&r.json).ok()?;
    let inv = ev.container_inventory?;
    let (id, name) = ev
        .container
        .as_deref()
        .map(|c| (c.id.clone(), c.name.clone()))
        .unwrap_or_else(|| (r.container_id.clone(), r.container_name.clone()));
    let v = inv.vulnerabilities;
    Some(json!({
        "time_ns": r.time_ns,
        "host": r.host,
        "region": r.region,
        "container_id": id,
        "container_name": name,
        "image": inv.image,
        "image_id": inv.image_id,
        "repo_digest": inv.repo_digest,
        "signature": inv.signature.as_str(),
        "signer": inv.signer,
        "vulnerabilities": {
            "critical": v.critical, "high": v.high, "medium": v.medium, "low": v.low,
            "unknown": v.unknown, "total": v.total(),
        },
        "db_version": inv.db_version,
        "compliance_score": inv.compliance_score,
        "compliance_failed": inv.compliance_failed,
    }))
}

/// An incident with its deadlines at `now_ns`; `timeline` adds the timeline.
pub(crate) fn incident(
    inc: &Incident,
    regulations: &[Regulation],
    roles: &[String],
    now_ns: u64,
    timeline: bool,
) -> Value {
    let deadlines = inc.deadlines(regulations, roles, now_ns);
    let next_due = deadlines
        .iter()
        .filter(|d| {
            matches!(
                d.state,
                rampart_fleet::DeadlineState::Pending
                    | rampart_fleet::DeadlineState::NearDue
                    | rampart_fleet::DeadlineState::Overdue
            )
        })
        .filter_map(|d| d.due_ns)
        .min();
    let mut out = json!({
        "id": inc.id,
        "category": inc.category.as_str(),
        "title": inc.title,
        "priority": inc.priority.as_str(),
        "first_ns": inc.first_ns,
        "last_ns": inc.last_ns,
        "hosts": inc.hosts(),
        "jurisdictions": inc.jurisdictions(),
        "containers": inc.subjects.iter().filter(|s| !s.container.is_empty())
            .map(|s| s.container.clone()).collect::<Vec<_>>(),
        "rules": inc.rules,
        "alerts": inc.alert_ids.len(),
        "personal_data_breach": inc.personal_data_breach,
        "closed": inc.closed,
        "provisional": inc.is_provisional(),
        "opened_because": inc.opened_because,
        "confirmed_ns": inc.confirmed_ns,
        "confirmed_by": inc.confirmed_by,
        "next_due_ns": next_due,
        "deadlines": deadlines.iter().map(|d| json!({
            "key": d.key,
            "regime": d.regime,
            "regime_name": d.regime_name,
            "name": d.name,
            "to": d.to,
            "authority": d.authority,
            "period": d.period,
            "from_ns": d.from_ns,
            "due_ns": d.due_ns,
            "state": d.state,
            "submitted_ns": d.submitted_ns,
            "citation": d.citation,
        })).collect::<Vec<_>>(),
    });
    if timeline {
        out["timeline"] = json!(inc.timeline);
        out["timeline_dropped"] = json!(inc.timeline_dropped);
    }
    out
}
