//! Server-side notifications for fleets: what the correlator sees and raises goes to people
//! through the same notifier outputs and filters as on an agent (`rampart_ship::notify`).
//!
//! Configured as `fleet.notifications:` in server.yaml, a list of `webhook` and `email`
//! outputs. Routed to them, each through its own `filter:`:
//!
//! * every alert the server commits for the first time, agents' and the fleet's own
//!   (correlations, new countries, "now vulnerable" with tag `vulnerability`);
//! * **incident opened**: a notice (rule `Incident opened`, tags `incident_opened` and the
//!   category) when an alert opens an incident;
//! * **notification deadline near due / overdue** (tags `compliance`,
//!   `notification_deadline`), per jurisdiction's deadline, once per state.
//!
//! Routing never waits: each notifier has its own bounded queue.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use rampart_event::{Alert, Device, EventId};
use rampart_ship::notify::{AlertInfo, Notifier, NotifyStats};
use rampart_ship::{OutputConfig, OutputError, OutputFilter};

use crate::incident::Incident;

/// The rule name of "incident opened" notices.
pub const INCIDENT_OPENED_RULE: &str = "Incident opened";

/// The server's notifiers, each with its filter.
#[derive(Debug)]
pub struct FleetNotifier {
    routes: Vec<(OutputFilter, Notifier)>,
}

impl FleetNotifier {
    /// Starts the notifiers of `fleet.notifications` (on the current tokio runtime); `None`
    /// when there are none. Only notifier kinds (`webhook`, `email`) are accepted.
    pub fn start(cfgs: &[OutputConfig]) -> Result<Option<FleetNotifier>, OutputError> {
        if cfgs.is_empty() {
            return Ok(None);
        }
        let mut routes = Vec::new();
        let mut names: Vec<&str> = Vec::new();
        for (i, c) in cfgs.iter().enumerate() {
            let name = c.name();
            if names.contains(&name) {
                return Err(OutputError::new(
                    name,
                    "fleet.notifications: two notifiers have this name; give one a `name:`",
                ));
            }
            names.push(name);
            let notifier = match c.start_notifier() {
                Some(n) => n?,
                None => {
                    return Err(OutputError::new(
                        name,
                        format!(
                            "fleet.notifications[{i}]: only `webhook` and `email` notify people; \
                             records go to other outputs from the agents"
                        ),
                    ))
                }
            };
            routes.push((c.filter().clone(), notifier));
        }
        Ok(Some(FleetNotifier { routes }))
    }

    /// Hands an alert to every notifier whose filter accepts it. Never waits.
    pub fn route(&self, a: &Alert) {
        let Ok(json) = serde_json::to_vec(a) else {
            return;
        };
        let mut info = None;
        for (filter, n) in &self.routes {
            if filter.accepts_json(&json) {
                n.submit(info.get_or_insert_with(|| AlertInfo::from_alert(a)).clone());
            } else {
                n.counters().filtered.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Ends every notifier's grouping window now (its summary is queued).
    pub fn flush(&self) {
        for (_, n) in &self.routes {
            n.flush();
        }
    }

    /// The notifiers' counters.
    pub fn stats(&self) -> Vec<NotifyStats> {
        self.routes
            .iter()
            .map(|(_, n)| n.counters().snapshot(n.name()))
            .collect()
    }
}

/// The "incident opened" notice of `inc` (not stored: the incident is).
pub fn incident_opened(inc: &Incident) -> Alert {
    let hosts: Vec<&str> = inc.hosts().into_iter().collect();
    let host = hosts.first().copied().unwrap_or_default().to_string();
    let state = if inc.is_provisional() {
        "provisional: its deadlines start when it is confirmed".to_string()
    } else {
        format!(
            "confirmed by {}",
            inc.confirmed_by.as_deref().unwrap_or("an alert")
        )
    };
    Alert {
        id: EventId(format!("incident-opened-{}", inc.id)),
        time_ns: inc.first_ns,
        rule: INCIDENT_OPENED_RULE.into(),
        description: "An alert opened an incident.".into(),
        priority: inc.priority,
        tags: vec!["incident_opened".into(), inc.category.as_str().into()].into(),
        output: format!(
            "Incident {} opened: {} (hosts: {}); opened because {}; {state}",
            inc.id,
            inc.title,
            hosts.join(", "),
            inc.opened_because
        ),
        output_fields: rampart_event::OutputFields::from([
            ("incident.id".to_string(), inc.id.clone()),
            (
                "incident.category".to_string(),
                inc.category.as_str().into(),
            ),
        ]),
        source: "fleet".into(),
        device: Arc::new(Device {
            region: inc.regions.get(&host).cloned().filter(|r| !r.is_empty()),
            hostname: host,
        }),
        container: None,
        process: None,
        events: Vec::new(),
    }
}
