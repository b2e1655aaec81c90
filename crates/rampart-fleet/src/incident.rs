//! Incidents: alerts grouped by subject (host and container), category and time, with a
//! timeline of the events, alerts and response actions that belong to them, the jurisdictions
//! of the hosts involved, and the notification deadlines that apply.
//!
//! Grouping: an alert joins the most recent open incident of the same category that shares a
//! subject with it (a `(host, container)` pair of the alert or of its evidence events) and whose
//! last alert is at most `window` older than it; otherwise it opens a new incident, if the
//! [`IncidentPolicy`] says it may. A fleet correlation alert names several hosts, so it joins
//! (or opens) one incident covering all of them. Response actions (`response.action` events)
//! go into the timeline of the open incident of their host and container.
//!
//! # Incidents only when there is one
//! Not every alert is an incident, and an incident starts legal clocks. The policy decides
//! which alerts *open* one (default: ERROR and above, and any rule or tag listed); an alert that may not open one still joins a matching open incident as evidence.
//! An incident is *provisional* until it is *confirmed*, by a person (`rampart incident mark
//! --confirm`) or by a high-confidence alert (default: CRITICAL and above, or a listed rule):
//! its deadlines are shown, marked provisional, and raise no deadline alerts. The regulations'
//! clocks start at awareness, which is the recorded awareness, else the confirmation, else the
//! first alert of a confirmed incident. Every incident says why it was opened and confirmed.

use std::collections::{BTreeMap, BTreeSet};

use rampart_event::{Alert, Event, EventKind, Priority};
use serde::{Deserialize, Serialize};

use crate::deadline::{self, DeadlineState};
use crate::regulation::{Regulation, When};

/// What kind of incident it is, from the rules that fired.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Category {
    CryptoMining,
    DataBreach,
    DenialOfService,
    Intrusion,
}

impl Category {
    pub fn as_str(&self) -> &'static str {
        match self {
            Category::CryptoMining => "crypto-mining",
            Category::DataBreach => "data-breach",
            Category::DenialOfService => "denial-of-service",
            Category::Intrusion => "intrusion",
        }
    }

    /// The category of an alert: crypto-mining for miner rules (`T1496` or a rule naming a
    /// miner), data breach for exfiltration and collection (`mitre_exfiltration`,
    /// `mitre_collection`, `T1005`, `T1041`, `T1048`, `T1567`), denial of service for
    /// `T1498`/`T1499` and fork bombs / resource exhaustion, intrusion otherwise.
    pub fn of_alert(rule: &str, tags: &[String]) -> Category {
        let rule = rule.to_ascii_lowercase();
        let has = |t: &str| tags.iter().any(|x| x.eq_ignore_ascii_case(t));
        let has_prefix = |p: &str| {
            tags.iter()
                .any(|x| x.to_ascii_lowercase().starts_with(&p.to_ascii_lowercase()))
        };
        if rule.contains("miner") || rule.contains("mining") || has("T1496") || has("cryptomining")
        {
            Category::CryptoMining
        } else if has("mitre_exfiltration")
            || has("mitre_collection")
            || has_prefix("T1041")
            || has_prefix("T1048")
            || has_prefix("T1567")
            || has_prefix("T1005")
            || rule.contains("exfiltrat")
        {
            Category::DataBreach
        } else if has_prefix("T1498")
            || has_prefix("T1499")
            || rule.contains("fork bomb")
            || rule.contains("denial of service")
        {
            Category::DenialOfService
        } else {
            Category::Intrusion
        }
    }
}

/// A subject: host and container (`""` for the host itself).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Subject {
    pub host: String,
    pub container: String,
}

/// What a timeline entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EntryKind {
    Event,
    Alert,
    Response,
    Deadline,
}

/// One line of an incident's timeline.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimelineEntry {
    pub time_ns: u64,
    pub kind: EntryKind,
    /// The record's id (event, alert) when it has one.
    pub id: String,
    pub host: String,
    pub summary: String,
}

/// Timeline entries kept per incident; older evidence beyond this is counted, not kept.
pub const MAX_TIMELINE: usize = 500;

/// An incident.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Incident {
    /// `INC-<first alert time in ms, hex>-<n>`: stable for a replay of the same alerts.
    pub id: String,
    pub category: Category,
    pub title: String,
    /// The most severe alert's priority.
    pub priority: Priority,
    pub first_ns: u64,
    pub last_ns: u64,
    pub subjects: BTreeSet<Subject>,
    /// Region tag of each host involved.
    pub regions: BTreeMap<String, String>,
    pub rules: BTreeSet<String>,
    pub alert_ids: BTreeSet<String>,
    pub timeline: Vec<TimelineEntry>,
    pub timeline_dropped: u64,
    /// Flagged as a personal-data breach (set for data-breach incidents, changeable by a person).
    pub personal_data_breach: bool,
    /// False when a person marked the incident as not caused by an attack.
    pub malicious: bool,
    /// When the operator became aware (default: the first alert).
    pub aware_ns: Option<u64>,
    /// When the breach was determined to be notifiable (default: awareness).
    pub determined_ns: Option<u64>,
    /// Recorded submissions: `regime/deadline` -> when.
    pub submitted: BTreeMap<String, u64>,
    /// Closed incidents take no more alerts.
    pub closed: bool,
    /// Why it was opened: the alert and the policy clause that let it open one.
    #[serde(default)]
    pub opened_because: String,
    /// When it was confirmed (a person, or a high-confidence alert); `None`: provisional.
    #[serde(default)]
    pub confirmed_ns: Option<u64>,
    /// Who or what confirmed it.
    #[serde(default)]
    pub confirmed_by: Option<String>,
}

impl Incident {
    /// Hosts involved.
    pub fn hosts(&self) -> BTreeSet<&str> {
        self.subjects.iter().map(|s| s.host.as_str()).collect()
    }

    /// Distinct region tags of the hosts involved.
    pub fn jurisdictions(&self) -> BTreeSet<&str> {
        self.regions
            .values()
            .map(String::as_str)
            .filter(|r| !r.is_empty())
            .collect()
    }

    fn push(&mut self, e: TimelineEntry) {
        if self
            .timeline
            .iter()
            .any(|x| !x.id.is_empty() && x.id == e.id && x.kind == e.kind)
        {
            return;
        }
        if self.timeline.len() >= MAX_TIMELINE {
            self.timeline_dropped += 1;
            return;
        }
        let pos = self.timeline.partition_point(|x| x.time_ns <= e.time_ns);
        self.timeline.insert(pos, e);
    }

    /// The awareness instant: recorded, else the confirmation, else the first alert.
    pub fn awareness_ns(&self) -> u64 {
        self.aware_ns.or(self.confirmed_ns).unwrap_or(self.first_ns)
    }

    /// Not confirmed yet: deadlines are provisional and raise no alerts.
    pub fn is_provisional(&self) -> bool {
        self.confirmed_ns.is_none()
    }

    /// Every notification deadline that applies to this incident under `regulations`, for an
    /// operator with `roles`, evaluated at `now_ns`.
    pub fn deadlines(
        &self,
        regulations: &[Regulation],
        roles: &[String],
        now_ns: u64,
    ) -> Vec<AppliedDeadline> {
        let mut out = Vec::new();
        let serious = self.priority <= Priority::Critical;
        let has_role = |r: &Option<String>| r.as_ref().is_none_or(|r| roles.iter().any(|x| x == r));
        for reg in regulations {
            if reg.trigger.personal_data_breach && !self.personal_data_breach {
                continue;
            }
            if !has_role(&reg.trigger.requires_role) {
                continue;
            }
            if reg.min_priority().is_some_and(|min| self.priority > min) {
                continue;
            }
            let hosts: Vec<String> = self
                .regions
                .iter()
                .filter(|(_, region)| reg.covers(region))
                .map(|(h, _)| h.clone())
                .collect();
            if hosts.is_empty() {
                continue;
            }
            let aware = self.awareness_ns();
            let mut due_of: BTreeMap<&str, u64> = BTreeMap::new();
            for d in &reg.deadlines {
                let applies = match d.when {
                    None => true,
                    Some(When::Malicious) => self.malicious,
                    Some(When::NotMalicious) => !self.malicious,
                    Some(When::Serious) => serious,
                    Some(When::NotSerious) => !serious,
                };
                if !applies || !has_role(&d.requires_role) {
                    continue;
                }
                let key = format!("{}/{}", reg.regime, d.id);
                let submitted_ns = self.submitted.get(&key).copied();
                let from_ns = match d.from.as_str() {
                    "awareness" => aware,
                    "determination" => self.determined_ns.unwrap_or(aware),
                    other => {
                        let prev = format!("{}/{}", reg.regime, other);
                        match self.submitted.get(&prev) {
                            Some(t) => *t,
                            // Not submitted yet: count from the earlier deadline's end (the
                            // latest it may be submitted); without one, from awareness.
                            None => due_of.get(other).copied().unwrap_or(aware),
                        }
                    }
                };
                let due = deadline::due_ns(d.clock, d.within.unwrap_or(0), from_ns);
                if let Some(due) = due {
                    due_of.insert(d.id.as_str(), due);
                }
                out.push(AppliedDeadline {
                    key,
                    regime: reg.regime.clone(),
                    regime_name: reg.name.clone(),
                    deadline: d.id.clone(),
                    name: d.name.clone(),
                    article: d.article.clone(),
                    period: d.clock.describe(d.within),
                    to: d.to.clone(),
                    authority: reg.authority.clone(),
                    from_ns,
                    due_ns: due,
                    state: if self.is_provisional() && submitted_ns.is_none() {
                        DeadlineState::Provisional
                    } else {
                        deadline::state(from_ns, due, now_ns, submitted_ns.is_some())
                    },
                    submitted_ns,
                    hosts: hosts.clone(),
                    facts: d.facts.clone(),
                    citation: reg.citation.text.clone(),
                    url: d
                        .citation_url
                        .clone()
                        .unwrap_or_else(|| reg.citation.url.clone()),
                });
            }
        }
        out.sort_by_key(|d| (d.due_ns.unwrap_or(u64::MAX), d.key.clone()));
        out
    }
}

/// A deadline that applies to one incident.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AppliedDeadline {
    /// `regime/deadline`.
    pub key: String,
    pub regime: String,
    pub regime_name: String,
    pub deadline: String,
    pub name: String,
    pub article: Option<String>,
    /// "72 hours".
    pub period: String,
    pub to: String,
    pub authority: String,
    pub from_ns: u64,
    pub due_ns: Option<u64>,
    pub state: DeadlineState,
    pub submitted_ns: Option<u64>,
    /// Hosts of the incident in the regime's jurisdiction.
    pub hosts: Vec<String>,
    pub facts: Vec<String>,
    pub citation: String,
    pub url: String,
}

/// Which alerts open an incident and which confirm one (`fleet.incidents` of server.yaml).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IncidentPolicy {
    /// Alerts at or above this priority open an incident.
    pub open_min_priority: Priority,
    /// Rules whose alerts open an incident whatever their priority.
    pub open_rules: Vec<String>,
    /// Tags whose alerts open an incident whatever their priority.
    pub open_tags: Vec<String>,
    /// Every fleet correlation alert opens an incident, whatever its priority (the shipped
    /// cross-host rules are CRITICAL and open one by priority; this adds lower-priority ones
    /// such as "Fleet new outbound country").
    pub correlations: bool,
    /// Alerts at or above this priority confirm their incident.
    pub confirm_min_priority: Priority,
    /// Rules whose alerts confirm their incident whatever their priority.
    pub confirm_rules: Vec<String>,
}

impl Default for IncidentPolicy {
    fn default() -> Self {
        IncidentPolicy {
            open_min_priority: Priority::Error,
            open_rules: Vec::new(),
            open_tags: Vec::new(),
            correlations: false,
            confirm_min_priority: Priority::Critical,
            confirm_rules: Vec::new(),
        }
    }
}

impl IncidentPolicy {
    /// Why `a` may open an incident, or `None`.
    pub fn opens(&self, a: &Alert) -> Option<String> {
        if a.priority <= self.open_min_priority {
            return Some(format!(
                "{} ({}) is at or above the opening priority {}",
                a.rule,
                a.priority.as_str().to_ascii_uppercase(),
                self.open_min_priority.as_str().to_ascii_uppercase()
            ));
        }
        if self.open_rules.iter().any(|r| r == &a.rule) {
            return Some(format!("rule {} opens incidents (policy)", a.rule));
        }
        if let Some(t) = a
            .tags
            .iter()
            .find(|t| self.open_tags.iter().any(|x| x.eq_ignore_ascii_case(t)))
        {
            return Some(format!("{} carries tag {t}, which opens incidents", a.rule));
        }
        if self.correlations && a.source == "correlation" {
            return Some(format!("fleet correlation {}", a.rule));
        }
        None
    }

    /// Why `a` confirms its incident, or `None`.
    pub fn confirms(&self, a: &Alert) -> Option<String> {
        if a.priority <= self.confirm_min_priority {
            return Some(format!(
                "{} ({}) is at or above the confirming priority {}",
                a.rule,
                a.priority.as_str().to_ascii_uppercase(),
                self.confirm_min_priority.as_str().to_ascii_uppercase()
            ));
        }
        if self.confirm_rules.iter().any(|r| r == &a.rule) {
            return Some(format!("rule {} confirms incidents (policy)", a.rule));
        }
        None
    }
}

/// Groups alerts into incidents.
#[derive(Debug)]
pub struct Grouper {
    /// An alert joins an incident whose last alert is at most this much older (ns).
    pub window_ns: u64,
    /// Which alerts open and confirm incidents.
    pub policy: IncidentPolicy,
    incidents: Vec<Incident>,
    seq: u64,
    /// Alerts that opened no incident and joined none.
    pub not_incidents: u64,
}

fn subject_of(device_host: &str, container: Option<&str>) -> Subject {
    Subject {
        host: device_host.to_string(),
        container: container.unwrap_or("").to_string(),
    }
}

fn alert_subjects(a: &Alert) -> (BTreeSet<Subject>, BTreeMap<String, String>) {
    let mut subjects = BTreeSet::new();
    let mut regions = BTreeMap::new();
    subjects.insert(subject_of(
        &a.device.hostname,
        a.container.as_deref().map(|c| c.id.as_str()),
    ));
    regions.insert(
        a.device.hostname.clone(),
        a.device.region.clone().unwrap_or_default(),
    );
    for e in &a.events {
        subjects.insert(subject_of(
            &e.device.hostname,
            e.container.as_deref().map(|c| c.id.as_str()),
        ));
        regions
            .entry(e.device.hostname.clone())
            .or_insert_with(|| e.device.region.clone().unwrap_or_default());
    }
    (subjects, regions)
}

fn event_summary(e: &Event) -> String {
    let mut s = e.kind.as_str().to_string();
    if let Some(p) = &e.process {
        s.push_str(&format!(" {}", p.cmdline()));
    }
    if let Some(n) = &e.network {
        if let Some(r) = n.remote() {
            s.push_str(&format!(" -> {}:{}", r.ip, r.port));
        }
    }
    if let Some(f) = &e.file {
        s.push_str(&format!(" {}", f.path));
    }
    if let Some(a) = &e.auth {
        s.push_str(&format!(
            " {} user={} from={}",
            serde_json::to_value(a.outcome)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default(),
            a.user,
            a.src_ip.map(|ip| ip.to_string()).unwrap_or_default()
        ));
    }
    if let Some(c) = &e.container {
        s.push_str(&format!(" [container {}]", c.name));
    }
    s.chars().take(300).collect()
}

impl Grouper {
    pub fn new(window_ns: u64) -> Grouper {
        Grouper {
            window_ns,
            policy: IncidentPolicy::default(),
            incidents: Vec::new(),
            seq: 0,
            not_incidents: 0,
        }
    }

    /// Starts from stored incidents (open ones keep taking alerts).
    pub fn with_incidents(window_ns: u64, incidents: Vec<Incident>) -> Grouper {
        let seq = incidents.len() as u64;
        Grouper {
            window_ns,
            policy: IncidentPolicy::default(),
            incidents,
            seq,
            not_incidents: 0,
        }
    }

    pub fn incidents(&self) -> &[Incident] {
        &self.incidents
    }

    pub fn get_mut(&mut self, id: &str) -> Option<&mut Incident> {
        self.incidents.iter_mut().find(|i| i.id == id)
    }

    /// Adds an alert; returns the id of the incident it went to (`None` when it was seen
    /// already, or when it may not open an incident and no open one matches).
    pub fn add_alert(&mut self, a: &Alert) -> Option<String> {
        if self
            .incidents
            .iter()
            .any(|i| i.alert_ids.contains(a.id.as_str()))
        {
            return None;
        }
        let category = Category::of_alert(&a.rule, &a.tags);
        let (subjects, regions) = alert_subjects(a);
        let window = self.window_ns;
        let idx = self
            .incidents
            .iter()
            .enumerate()
            .rev()
            .find(|(_, i)| {
                !i.closed
                    && i.category == category
                    && a.time_ns.saturating_add(window) >= i.last_ns
                    && i.last_ns.saturating_add(window) >= a.time_ns
                    && i.subjects.iter().any(|s| subjects.contains(s))
            })
            .map(|(n, _)| n);
        let idx = match (idx, self.policy.opens(a)) {
            (Some(n), _) => n,
            (None, None) => {
                self.not_incidents += 1;
                return None;
            }
            (None, Some(because)) => {
                self.seq += 1;
                self.incidents.push(Incident {
                    id: format!("INC-{:x}-{}", a.time_ns / 1_000_000, self.seq),
                    category,
                    title: format!("{}: {}", category.as_str(), a.rule),
                    priority: a.priority,
                    first_ns: a.time_ns,
                    last_ns: a.time_ns,
                    subjects: BTreeSet::new(),
                    regions: BTreeMap::new(),
                    rules: BTreeSet::new(),
                    alert_ids: BTreeSet::new(),
                    timeline: Vec::new(),
                    timeline_dropped: 0,
                    personal_data_breach: category == Category::DataBreach,
                    malicious: true,
                    aware_ns: None,
                    determined_ns: None,
                    submitted: BTreeMap::new(),
                    closed: false,
                    opened_because: because,
                    confirmed_ns: None,
                    confirmed_by: None,
                });
                self.incidents.len() - 1
            }
        };
        let confirms = self.policy.confirms(a);
        let inc = &mut self.incidents[idx];
        if inc.confirmed_ns.is_none() {
            if let Some(by) = confirms {
                inc.confirmed_ns = Some(a.time_ns);
                inc.confirmed_by = Some(by);
            }
        }
        inc.priority = inc.priority.min(a.priority);
        inc.first_ns = inc.first_ns.min(a.time_ns);
        inc.last_ns = inc.last_ns.max(a.time_ns);
        inc.subjects.extend(subjects);
        for (h, r) in regions {
            let slot = inc.regions.entry(h).or_default();
            if slot.is_empty() {
                *slot = r;
            }
        }
        inc.rules.insert(a.rule.clone());
        inc.alert_ids.insert(a.id.to_string());
        for e in &a.events {
            inc.push(TimelineEntry {
                time_ns: e.time_ns,
                kind: EntryKind::Event,
                id: e.id.to_string(),
                host: e.device.hostname.clone(),
                summary: event_summary(e),
            });
        }
        inc.push(TimelineEntry {
            time_ns: a.time_ns,
            kind: EntryKind::Alert,
            id: a.id.to_string(),
            host: a.device.hostname.clone(),
            summary: format!("[{}] {}: {}", a.priority, a.rule, a.output),
        });
        Some(inc.id.clone())
    }

    /// Adds a response action to the open incident of its host and container (or, for a
    /// host-wide action, of its host); returns that incident's id.
    pub fn add_response(&mut self, e: &Event) -> Option<String> {
        if e.kind != EventKind::ResponseAction {
            return None;
        }
        let host = e.device.hostname.as_str();
        let container = e.container.as_deref().map(|c| c.id.as_str()).unwrap_or("");
        let window = self.window_ns;
        let inc = self.incidents.iter_mut().rev().find(|i| {
            !i.closed
                && e.time_ns.saturating_add(window) >= i.first_ns
                && i.last_ns.saturating_add(window) >= e.time_ns
                && i.subjects
                    .iter()
                    .any(|s| s.host == host && (container.is_empty() || s.container == container))
        })?;
        let summary = match &e.response {
            Some(r) => format!(
                "response {} -> {}{}",
                r.action,
                r.outcome,
                r.detail
                    .as_deref()
                    .map(|d| format!(" ({d})"))
                    .unwrap_or_default()
            ),
            None => "response action".into(),
        };
        inc.push(TimelineEntry {
            time_ns: e.time_ns,
            kind: EntryKind::Response,
            id: e.id.to_string(),
            host: host.to_string(),
            summary: summary.chars().take(300).collect(),
        });
        Some(inc.id.clone())
    }
}
