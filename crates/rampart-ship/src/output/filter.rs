//! Per-output filters: which records an output receives.
//!
//! Every output kind takes a `filter:`; the shipper applies it in one place (the delivery loop,
//! before [`Output::send`](super::Output::send)), so no output can forget to. A record the
//! filter refuses is acknowledged for that output without being sent, and counted in
//! `rampart_ship_filtered_total{output}`. The server applies the same filter to its
//! notifications.
//!
//! All conditions given must hold; within one list any entry may match. Names (`rules`,
//! `hosts`, `containers`, `images`) are shell-style patterns (`*`, `?`, `[a-z]`) matched
//! against the whole name, case-sensitively; `kinds` are record types (`alert`,
//! `process.exec`) or a prefix pattern (`process.*`).
//!
//! ```yaml
//! filter:
//!   kinds: [alert]
//!   min_priority: warning          # alerts at WARNING or more severe
//!   rules: ["Terminal shell*"]
//!   exclude_rules: ["Noisy rule"]
//!   tags: [mitre_execution]
//!   hosts: ["web-*"]
//!   containers: ["nginx*"]
//!   images: ["registry.example.com/*"]
//! ```

use std::borrow::Cow;

use rampart_event::{EventKind, Priority};
use serde::{Deserialize, Deserializer};

/// `filter:` of an output. The default lets everything through.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct OutputFilter {
    /// Record types: `alert` for alerts, event types (`process.exec`, `net.connect`) or a
    /// prefix pattern (`process.*`). Empty: every type.
    #[serde(default, deserialize_with = "kinds")]
    pub kinds: Vec<String>,
    /// Records at least this severe: an alert's rule priority (Falco's names, case-insensitive:
    /// `emergency` .. `debug`); an event counts as `informational`, or `warning` when its OCSF
    /// severity is medium or more (lost-event reports).
    #[serde(default, deserialize_with = "priority")]
    pub min_priority: Option<Priority>,
    /// OCSF `severity_id` at least this (1 informational .. 6 fatal).
    #[serde(default)]
    pub min_severity: Option<u8>,
    /// Alerts of these rules only (patterns). Events have no rule and do not match.
    #[serde(default, deserialize_with = "patterns")]
    pub rules: Vec<Pattern>,
    /// Never alerts of these rules (patterns).
    #[serde(default, deserialize_with = "patterns")]
    pub exclude_rules: Vec<Pattern>,
    /// Alerts carrying at least one of these tags (exact, case-insensitive).
    #[serde(default)]
    pub tags: Vec<String>,
    /// Records of these hosts only (patterns on the host name).
    #[serde(default, deserialize_with = "patterns")]
    pub hosts: Vec<Pattern>,
    /// Records of these containers only (patterns on the container name; host records, which
    /// have no container, do not match).
    #[serde(default, deserialize_with = "patterns")]
    pub containers: Vec<Pattern>,
    /// Records of containers of these images only (patterns on the image reference).
    #[serde(default, deserialize_with = "patterns")]
    pub images: Vec<Pattern>,
}

/// A shell-style name pattern (`web-*`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pattern(glob::Pattern);

/// A filter pattern that is not a valid shell-style pattern.
#[derive(Debug, thiserror::Error)]
#[error("pattern {pattern:?}: {source}")]
pub struct PatternError {
    pub pattern: String,
    #[source]
    pub source: glob::PatternError,
}

impl Pattern {
    /// Parses `p`; the error says what is wrong with it.
    pub fn new(p: &str) -> Result<Pattern, PatternError> {
        glob::Pattern::new(p)
            .map(Pattern)
            .map_err(|source| PatternError {
                pattern: p.to_string(),
                source,
            })
    }

    /// Whether `s` matches the whole pattern.
    pub fn matches(&self, s: &str) -> bool {
        self.0.matches(s)
    }
}

fn patterns<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Pattern>, D::Error> {
    let raw: Vec<String> = Vec::deserialize(d)?;
    raw.iter()
        .map(|p| Pattern::new(p).map_err(serde::de::Error::custom))
        .collect()
}

fn priority<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Priority>, D::Error> {
    let raw: Option<String> = Option::deserialize(d)?;
    raw.map(|p| p.parse::<Priority>().map_err(serde::de::Error::custom))
        .transpose()
}

fn kinds<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    let raw: Vec<String> = Vec::deserialize(d)?;
    for k in &raw {
        let known = k == "alert"
            || EventKind::from_name(k).is_some()
            || k.strip_suffix(".*").is_some_and(|prefix| {
                EventKind::ALL
                    .iter()
                    .any(|e| e.as_str().starts_with(&format!("{prefix}.")))
            });
        if !known {
            return Err(serde::de::Error::custom(format!(
                "unknown record type {k:?} in kinds (expected `alert`, an event type such as \
                 `process.exec`, or a prefix such as `process.*`)"
            )));
        }
    }
    Ok(raw)
}

/// The fields of a record a filter looks at, borrowed from its JSON.
#[derive(Debug, Default, Deserialize)]
pub struct FilterView<'a> {
    #[serde(rename = "type", borrow)]
    pub kind: Cow<'a, str>,
    #[serde(default)]
    pub severity_id: u8,
    #[serde(borrow, default)]
    pub priority: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub rule: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub tags: Vec<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub device: ViewDevice<'a>,
    #[serde(borrow, default)]
    pub container: Option<ViewContainer<'a>>,
}

/// `device` of a record.
#[derive(Debug, Default, Deserialize)]
pub struct ViewDevice<'a> {
    #[serde(borrow, default)]
    pub hostname: Cow<'a, str>,
}

/// `container` of a record.
#[derive(Debug, Default, Deserialize)]
pub struct ViewContainer<'a> {
    #[serde(borrow, default)]
    pub name: Cow<'a, str>,
    #[serde(borrow, default)]
    pub image: Cow<'a, str>,
}

impl FilterView<'_> {
    /// The record's priority: an alert's own; for an event, informational, or warning when its
    /// OCSF severity is medium or more.
    pub fn effective_priority(&self) -> Priority {
        if let Some(p) = self.priority.as_deref().and_then(|p| p.parse().ok()) {
            return p;
        }
        if self.severity_id >= 3 {
            Priority::Warning
        } else {
            Priority::Informational
        }
    }
}

impl OutputFilter {
    /// True when the filter lets everything through (the shipper then skips parsing records).
    pub fn is_empty(&self) -> bool {
        *self == OutputFilter::default()
    }

    /// Whether the record (JSON, as queued) passes. A record that is not JSON of the expected
    /// shape passes only an empty filter: a filter never guesses.
    pub fn accepts_json(&self, json: &[u8]) -> bool {
        if self.is_empty() {
            return true;
        }
        match serde_json::from_slice::<FilterView<'_>>(json) {
            Ok(v) => self.accepts(&v),
            Err(_) => false,
        }
    }

    /// Whether the record passes.
    pub fn accepts(&self, r: &FilterView<'_>) -> bool {
        if !self.kinds.is_empty() && !self.kinds.iter().any(|k| kind_matches(k, &r.kind)) {
            return false;
        }
        // Priorities sort most severe first: `Critical < Warning`.
        if let Some(min) = self.min_priority {
            if r.effective_priority() > min {
                return false;
            }
        }
        if let Some(min) = self.min_severity {
            if r.severity_id < min {
                return false;
            }
        }
        let rule = r.rule.as_deref();
        if !self.rules.is_empty() && !rule.is_some_and(|n| self.rules.iter().any(|p| p.matches(n)))
        {
            return false;
        }
        if rule.is_some_and(|n| self.exclude_rules.iter().any(|p| p.matches(n))) {
            return false;
        }
        if !self.tags.is_empty()
            && !r
                .tags
                .iter()
                .any(|t| self.tags.iter().any(|w| w.eq_ignore_ascii_case(t)))
        {
            return false;
        }
        if !self.hosts.is_empty() && !self.hosts.iter().any(|p| p.matches(&r.device.hostname)) {
            return false;
        }
        let container = r.container.as_ref();
        if !self.containers.is_empty()
            && !container.is_some_and(|c| self.containers.iter().any(|p| p.matches(&c.name)))
        {
            return false;
        }
        if !self.images.is_empty()
            && !container.is_some_and(|c| self.images.iter().any(|p| p.matches(&c.image)))
        {
            return false;
        }
        true
    }
}

fn kind_matches(want: &str, kind: &str) -> bool {
    match want.strip_suffix(".*") {
        Some(prefix) => kind
            .strip_prefix(prefix)
            .is_some_and(|rest| rest.starts_with('.')),
        None => want == kind,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests: a failure is a test failure")]

    use std::sync::Arc;

    use rampart_event::{Alert, Container, ContainerRuntime, Device, Event, EventId};

    use super::*;

    fn filter(yaml: &str) -> OutputFilter {
        serde_yaml::from_str(yaml).unwrap()
    }

    fn alert(
        rule: &str,
        priority: Priority,
        host: &str,
        container: Option<(&str, &str)>,
    ) -> Vec<u8> {
        let device = Arc::new(Device {
            hostname: host.into(),
            region: None,
        });
        let container = container.map(|(name, image)| {
            let mut c = Container::unnamed("c0ffee", ContainerRuntime::Docker);
            c.name = name.into();
            c.image = image.into();
            Arc::new(c)
        });
        let a = Alert {
            id: EventId::new(1, 2),
            time_ns: 1,
            rule: rule.into(),
            description: String::new(),
            priority,
            tags: vec!["mitre_execution".into(), "T1059".into()].into(),
            output: "o".into(),
            output_fields: Default::default(),
            source: "syscall".into(),
            device,
            container,
            process: None,
            events: vec![],
        };
        serde_json::to_vec(&a).unwrap()
    }

    fn event(kind: EventKind) -> Vec<u8> {
        let mut e = Event::new(EventId::new(1, 3), 1, kind, Arc::new(Device::default()));
        if kind == EventKind::SensorDrops {
            e.stats = Some(rampart_event::SensorStats {
                events: 0,
                drops_total: 7,
                drops_per_cpu: vec![],
                drops_userspace: 7,
                interval_ms: 0,
                mechanism: "queue-overflow".into(),
            });
        }
        serde_json::to_vec(&e).unwrap()
    }

    #[test]
    fn empty_filter_passes_everything_even_garbage() {
        let f = OutputFilter::default();
        assert!(f.is_empty());
        assert!(f.accepts_json(b"not json"));
        assert!(f.accepts_json(&event(EventKind::ProcessExec)));
    }

    #[test]
    fn priority_below_the_minimum_is_refused_at_every_level() {
        let f = filter("min_priority: WARNING");
        let order = [
            Priority::Emergency,
            Priority::Alert,
            Priority::Critical,
            Priority::Error,
            Priority::Warning,
            Priority::Notice,
            Priority::Informational,
            Priority::Debug,
        ];
        for p in order {
            let pass = f.accepts_json(&alert("r", p, "h", None));
            assert_eq!(pass, p <= Priority::Warning, "{p}");
        }
        // Events are informational: below warning.
        assert!(!f.accepts_json(&event(EventKind::ProcessExec)));
        // A lost-events report is OCSF medium: passes.
        assert!(f.accepts_json(&event(EventKind::SensorDrops)));
    }

    #[test]
    fn kinds_rules_tags_hosts_containers_images() {
        let exec = event(EventKind::ProcessExec);
        let a = alert(
            "Terminal shell in container",
            Priority::Notice,
            "web-1",
            Some(("nginx-1", "nginx:1.25")),
        );
        assert!(filter("kinds: [alert]").accepts_json(&a));
        assert!(!filter("kinds: [alert]").accepts_json(&exec));
        assert!(filter("kinds: [process.*]").accepts_json(&exec));
        assert!(!filter("kinds: [process.*]").accepts_json(&a));
        assert!(filter("rules: ['Terminal shell*']").accepts_json(&a));
        assert!(
            !filter("rules: ['Terminal shell*']").accepts_json(&exec),
            "events have no rule"
        );
        assert!(!filter("exclude_rules: ['Terminal*']").accepts_json(&a));
        assert!(filter("exclude_rules: ['Terminal*']").accepts_json(&exec));
        assert!(filter("tags: [T1059]").accepts_json(&a));
        assert!(
            filter("tags: [t1059]").accepts_json(&a),
            "tags are case-insensitive"
        );
        assert!(!filter("tags: [T1496]").accepts_json(&a));
        assert!(filter("hosts: ['web-*']").accepts_json(&a));
        assert!(!filter("hosts: ['db-*']").accepts_json(&a));
        assert!(filter("containers: ['nginx*']").accepts_json(&a));
        assert!(filter("images: ['nginx:*']").accepts_json(&a));
        assert!(!filter("images: ['redis:*']").accepts_json(&a));
        let host_alert = alert("r", Priority::Notice, "web-1", None);
        assert!(
            !filter("containers: ['*']").accepts_json(&host_alert),
            "no container"
        );
        // All conditions must hold.
        assert!(!filter("{hosts: ['web-*'], min_priority: critical}").accepts_json(&a));
    }

    #[test]
    fn bad_filters_are_refused_with_the_reason() {
        let e = serde_yaml::from_str::<OutputFilter>("min_priority: loud").unwrap_err();
        assert!(e.to_string().contains("unknown priority \"loud\""), "{e}");
        let e = serde_yaml::from_str::<OutputFilter>("kinds: [proces.exec]").unwrap_err();
        assert!(e.to_string().contains("unknown record type"), "{e}");
        let e = serde_yaml::from_str::<OutputFilter>("hosts: ['[a-']").unwrap_err();
        assert!(e.to_string().contains("pattern"), "{e}");
        let e = serde_yaml::from_str::<OutputFilter>("priority: warning").unwrap_err();
        assert!(e.to_string().contains("unknown field"), "{e}");
    }

    /// A record whose fields have the wrong types (a hostile or broken producer) is refused by
    /// a non-empty filter rather than guessed at.
    #[test]
    fn malformed_records_do_not_pass_a_filter() {
        let f = filter("min_priority: debug");
        assert!(!f.accepts_json(b"{\"type\":\"alert\",\"priority\":3}"));
        assert!(!f.accepts_json(b"[]"));
        assert!(!f.accepts_json(b"{\"priority\":\"Debug\"}"), "no type");
        assert!(f.accepts_json(b"{\"type\":\"alert\",\"priority\":\"Debug\"}"));
    }
}
