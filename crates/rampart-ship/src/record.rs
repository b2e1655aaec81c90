//! What the shipper carries: events and alerts, as JSON.

use rampart_event::{Alert, Event, EventId};
use serde::Deserialize;

mod sealed {
    pub trait Sealed {}
    impl Sealed for rampart_event::Event {}
    impl Sealed for rampart_event::Alert {}
}

/// A record the shipper can send: an [`Event`] or an [`Alert`]. Both serialise to their OCSF
/// JSON forms and carry a stable id in `metadata.uid`.
pub trait Shippable: serde::Serialize + sealed::Sealed {
    /// The stable id that makes ingest idempotent.
    fn id(&self) -> &EventId;
}

impl Shippable for Event {
    fn id(&self) -> &EventId {
        &self.id
    }
}

impl Shippable for Alert {
    fn id(&self) -> &EventId {
        &self.id
    }
}

/// The few fields outputs need from a record without decoding all of it.
#[derive(Debug, Clone, Deserialize)]
pub struct RecordMeta {
    /// `type`: the event kind (`process.exec`) or `alert`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Nanoseconds since the Unix epoch.
    #[serde(default)]
    pub time_ns: u64,
    /// OCSF severity (1 informational .. 6 fatal).
    #[serde(default)]
    pub severity_id: u8,
    pub metadata: MetaUid,
    #[serde(default)]
    pub device: MetaDevice,
    /// Alerts only: the rule's priority name (`Warning`).
    #[serde(default)]
    pub priority: Option<String>,
}

/// `metadata` of a record.
#[derive(Debug, Clone, Deserialize)]
pub struct MetaUid {
    /// The record's id.
    pub uid: String,
}

/// `device` of a record.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct MetaDevice {
    #[serde(default)]
    pub hostname: String,
    #[serde(default)]
    pub region: Option<String>,
}

impl RecordMeta {
    /// Reads the fields from a record's JSON.
    pub fn parse(json: &[u8]) -> Result<RecordMeta, serde_json::Error> {
        serde_json::from_slice(json)
    }

    /// Syslog severity (RFC 5424: 0 emergency .. 7 debug): an alert's priority maps one to one
    /// (Falco's priorities are syslog's), an event is informational (6), or warning (4) when
    /// OCSF rates it medium or above.
    pub fn syslog_severity(&self) -> u8 {
        if let Some(p) = &self.priority {
            if let Ok(p) = p.parse::<rampart_event::Priority>() {
                return p as u8;
            }
        }
        if self.severity_id >= 3 {
            4
        } else {
            6
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use rampart_event::{Device, EventKind, Priority};

    use super::*;

    #[test]
    fn meta_reads_events_and_alerts() {
        let dev = Arc::new(Device {
            hostname: "vps1".into(),
            region: Some("eu-de".into()),
        });
        let e = Event::new(
            EventId::new(1, 2),
            5_000,
            EventKind::ProcessExec,
            dev.clone(),
        );
        let m = RecordMeta::parse(&serde_json::to_vec(&e).unwrap_or_default()).expect("event");
        assert_eq!(
            (m.kind.as_str(), m.time_ns, m.metadata.uid.as_str()),
            ("process.exec", 5_000, "0000000000000001-2")
        );
        assert_eq!(m.device.region.as_deref(), Some("eu-de"));
        assert_eq!(m.syslog_severity(), 6);
        let a = Alert {
            id: EventId::new(1, 3),
            time_ns: 6_000,
            rule: "r".into(),
            description: String::new(),
            priority: Priority::Critical,
            tags: Default::default(),
            output: "o".into(),
            output_fields: Default::default(),
            source: "syscall".into(),
            device: dev,
            container: None,
            process: None,
            events: vec![e],
        };
        let m = RecordMeta::parse(&serde_json::to_vec(&a).unwrap_or_default()).expect("alert");
        assert_eq!(m.kind, "alert");
        assert_eq!(m.syslog_severity(), 2, "critical");
    }
}
