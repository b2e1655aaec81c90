//! Alerts: a rule matched.
//!
//! # JSON form
//! An alert is an OCSF Detection Finding (class 2004, activity 1 "Create"): the OCSF header,
//! `finding_info` (`uid`, `title` = rule name, `desc`, `types` = tags), `message` (the rendered
//! output), `severity_id` from the priority, then Rampart's `rule`, `priority`, `tags`,
//! `output_fields`, `container`, `process` (with ancestry) and `evidences`: the triggering
//! event(s), each in the event JSON form.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use serde::ser::SerializeMap;
use serde::{Deserialize, Serialize, Serializer};

use crate::container::Container;
use crate::event::{Device, Event, EventId};
use crate::ocsf::{OcsfClass, OCSF_VERSION, PRODUCT_NAME};
use crate::output_fields::OutputFields;
use crate::process::Process;
use crate::VERSION;

/// Falco's rule priorities, most severe first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Priority {
    Emergency,
    Alert,
    Critical,
    Error,
    Warning,
    Notice,
    Informational,
    Debug,
}

impl Priority {
    /// OCSF `severity_id`: 1 informational, 2 low, 3 medium, 4 high, 5 critical, 6 fatal.
    pub fn severity_id(&self) -> u8 {
        match self {
            Priority::Emergency | Priority::Alert => 6,
            Priority::Critical => 5,
            Priority::Error => 4,
            Priority::Warning => 3,
            Priority::Notice => 2,
            Priority::Informational | Priority::Debug => 1,
        }
    }

    pub fn as_str(&self) -> &'static str {
        match self {
            Priority::Emergency => "Emergency",
            Priority::Alert => "Alert",
            Priority::Critical => "Critical",
            Priority::Error => "Error",
            Priority::Warning => "Warning",
            Priority::Notice => "Notice",
            Priority::Informational => "Informational",
            Priority::Debug => "Debug",
        }
    }
}

impl fmt::Display for Priority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The error of parsing a priority name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown priority {0:?} (expected one of emergency, alert, critical, error, warning, notice, informational/info, debug)")]
pub struct UnknownPriority(pub String);

impl FromStr for Priority {
    type Err = UnknownPriority;

    /// Case-insensitive, accepting Falco's spellings (`INFO`, `informational`, `WARNING`).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s.to_ascii_lowercase().as_str() {
            "emergency" => Priority::Emergency,
            "alert" => Priority::Alert,
            "critical" => Priority::Critical,
            "error" => Priority::Error,
            "warning" | "warn" => Priority::Warning,
            "notice" => Priority::Notice,
            "informational" | "info" => Priority::Informational,
            "debug" => Priority::Debug,
            _ => return Err(UnknownPriority(s.to_string())),
        })
    }
}

/// A rule matched one event (or, for a stateful rule, a group of events).
#[derive(Debug, Clone, PartialEq)]
pub struct Alert {
    pub id: EventId,
    /// When the alert was raised, nanoseconds since the Unix epoch.
    pub time_ns: u64,
    pub rule: String,
    pub description: String,
    pub priority: Priority,
    /// Shared with the rule that raised it (and its other alerts).
    pub tags: Arc<[String]>,
    /// The rule's output with every `%field` replaced.
    pub output: String,
    /// The values of the fields named in the output, by field name.
    pub output_fields: OutputFields,
    /// What produced it: `syscall` for single-event rules, `correlation` for stateful ones.
    pub source: String,
    pub device: Arc<Device>,
    pub container: Option<Arc<Container>>,
    pub process: Option<Arc<Process>>,
    /// The event(s) that triggered it, oldest first.
    pub events: Vec<Event>,
}

impl Alert {
    /// OCSF classification: Detection Finding, Create.
    pub fn ocsf() -> OcsfClass {
        OcsfClass::new(2004, 1, "Create")
    }
}

#[derive(Serialize, Deserialize)]
struct FindingInfo<'a> {
    uid: std::borrow::Cow<'a, str>,
    title: std::borrow::Cow<'a, str>,
    #[serde(default)]
    desc: std::borrow::Cow<'a, str>,
    #[serde(default)]
    types: std::borrow::Cow<'a, [String]>,
}

#[derive(Serialize)]
struct Metadata<'a> {
    uid: &'a EventId,
    version: &'static str,
    product: Product,
}

#[derive(Serialize)]
struct Product {
    name: &'static str,
    vendor_name: &'static str,
    version: &'static str,
}

impl Serialize for Alert {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let class = Alert::ocsf();
        let mut m = serializer.serialize_map(None)?;
        m.serialize_entry("class_uid", &class.class_uid)?;
        m.serialize_entry("class_name", class.class_name)?;
        m.serialize_entry("category_uid", &class.category_uid)?;
        m.serialize_entry("category_name", class.category_name)?;
        m.serialize_entry("activity_id", &class.activity_id)?;
        m.serialize_entry("activity_name", class.activity_name)?;
        m.serialize_entry("type_uid", &class.type_uid())?;
        m.serialize_entry("severity_id", &self.priority.severity_id())?;
        m.serialize_entry("time", &(self.time_ns / 1_000_000))?;
        m.serialize_entry(
            "metadata",
            &Metadata {
                uid: &self.id,
                version: OCSF_VERSION,
                product: Product {
                    name: PRODUCT_NAME,
                    vendor_name: PRODUCT_NAME,
                    version: VERSION,
                },
            },
        )?;
        m.serialize_entry(
            "finding_info",
            &FindingInfo {
                uid: self.id.as_str().into(),
                title: self.rule.as_str().into(),
                desc: self.description.as_str().into(),
                types: (&*self.tags).into(),
            },
        )?;
        m.serialize_entry("message", &self.output)?;
        m.serialize_entry("type", "alert")?;
        m.serialize_entry("time_ns", &self.time_ns)?;
        m.serialize_entry("rule", &self.rule)?;
        m.serialize_entry("priority", &self.priority)?;
        m.serialize_entry("tags", &*self.tags)?;
        m.serialize_entry("source", &self.source)?;
        m.serialize_entry("output_fields", &self.output_fields)?;
        m.serialize_entry("device", &*self.device)?;
        if let Some(c) = &self.container {
            m.serialize_entry("container", &**c)?;
        }
        if let Some(p) = &self.process {
            m.serialize_entry("process", &**p)?;
        }
        m.serialize_entry("evidences", &self.events)?;
        m.end()
    }
}

#[derive(Deserialize)]
struct AlertWire<'a> {
    metadata: WireMetadata,
    #[serde(borrow)]
    finding_info: FindingInfo<'a>,
    message: String,
    time_ns: u64,
    rule: String,
    priority: Priority,
    #[serde(default)]
    tags: Vec<String>,
    #[serde(default)]
    source: String,
    #[serde(default)]
    output_fields: OutputFields,
    #[serde(default)]
    device: Arc<Device>,
    #[serde(default)]
    container: Option<Arc<Container>>,
    #[serde(default)]
    process: Option<Arc<Process>>,
    #[serde(default)]
    evidences: Vec<Event>,
}

#[derive(Deserialize)]
struct WireMetadata {
    uid: EventId,
}

impl<'de> Deserialize<'de> for Alert {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let w = AlertWire::deserialize(deserializer)?;
        Ok(Alert {
            id: w.metadata.uid,
            time_ns: w.time_ns,
            rule: w.rule,
            description: w.finding_info.desc.into_owned(),
            priority: w.priority,
            tags: w.tags.into(),
            output: w.message,
            output_fields: w.output_fields,
            source: w.source,
            device: w.device,
            container: w.container,
            process: w.process,
            events: w.evidences,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::EventKind;

    #[test]
    fn alert_is_a_detection_finding_and_round_trips() {
        let device = Arc::new(Device {
            hostname: "h".into(),
            region: None,
        });
        let ev = Event::new(
            EventId::new(1, 1),
            5_000_000,
            EventKind::ProcessExec,
            device.clone(),
        );
        let a = Alert {
            id: EventId::new(1, 2),
            time_ns: 6_000_000,
            rule: "Shell in container".into(),
            description: "a shell ran".into(),
            priority: Priority::Warning,
            tags: vec!["mitre_execution".into(), "T1059".into()].into(),
            output: "shell sh in web".into(),
            output_fields: OutputFields::from([("proc.name", "sh")]),
            source: "syscall".into(),
            device,
            container: None,
            process: None,
            events: vec![ev],
        };
        let v = serde_json::to_value(&a).expect("serialise");
        assert_eq!(v["class_uid"], 2004);
        assert_eq!(v["type_uid"], 200_401);
        assert_eq!(v["severity_id"], 3);
        assert_eq!(v["finding_info"]["title"], "Shell in container");
        assert_eq!(v["evidences"][0]["type"], "process.exec");
        let text = serde_json::to_string(&a).expect("serialise");
        let back: Alert = serde_json::from_str(&text).expect("deserialise");
        assert_eq!(back, a);
    }

    #[test]
    fn priorities_parse_falco_spellings() {
        assert_eq!("INFO".parse::<Priority>(), Ok(Priority::Informational));
        assert_eq!("warning".parse::<Priority>(), Ok(Priority::Warning));
        assert!("loud".parse::<Priority>().is_err());
        assert!(
            Priority::Critical < Priority::Warning,
            "more severe sorts first"
        );
    }
}
