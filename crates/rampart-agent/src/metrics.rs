//! The agent's own Prometheus metrics (`metrics_listen` in agent.yaml): events by type, kernel
//! and user-space drops, queue drops, alerts by rule and priority, rule evaluation time,
//! response actions by action and outcome, enforcement denials.
//!
//! The event loop counts in a [`LocalMetrics`] it owns (no lock per event) and publishes into
//! the shared [`AgentMetrics`] after each batch; the endpoint renders the shared copy.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rampart_event::{Alert, Event, EventKind};
use rampart_ship::metrics::PromWriter;

#[derive(Debug, Clone)]
struct Counts {
    /// Per [`EventKind::index`]: the event path only adds to an array slot.
    events: Vec<u64>,
    alerts: BTreeMap<(String, &'static str), u64>,
    responses: BTreeMap<(String, String), u64>,
    rule_eval_ns: u64,
    rule_evals: u64,
}

impl Default for Counts {
    fn default() -> Self {
        Counts {
            events: vec![0; EventKind::ALL.len()],
            alerts: BTreeMap::new(),
            responses: BTreeMap::new(),
            rule_eval_ns: 0,
            rule_evals: 0,
        }
    }
}

impl Counts {
    fn merge(&mut self, o: &Counts) {
        for (a, b) in self.events.iter_mut().zip(&o.events) {
            *a += b;
        }
        for (k, v) in &o.alerts {
            *self.alerts.entry(k.clone()).or_default() += v;
        }
        for (k, v) in &o.responses {
            *self.responses.entry(k.clone()).or_default() += v;
        }
        self.rule_eval_ns += o.rule_eval_ns;
        self.rule_evals += o.rule_evals;
    }
}

/// One rule evaluation in this many is timed.
pub const RULE_TIME_SAMPLE: u64 = 8;

/// What the event loop counts between two publications.
#[derive(Debug, Default)]
pub struct LocalMetrics {
    counts: Counts,
    dirty: bool,
}

impl LocalMetrics {
    /// One event that reached the outputs.
    pub fn event(&mut self, ev: &Event) {
        if let Some(n) = self.counts.events.get_mut(ev.kind.index()) {
            *n += 1;
        }
        if ev.kind == EventKind::ResponseAction {
            if let Some(r) = &ev.response {
                *self
                    .counts
                    .responses
                    .entry((r.action.clone(), r.outcome.clone()))
                    .or_default() += 1;
            }
        }
        self.dirty = true;
    }

    /// One alert raised.
    pub fn alert(&mut self, a: &Alert) {
        *self
            .counts
            .alerts
            .entry((a.rule.clone(), a.priority.as_str()))
            .or_default() += 1;
        self.dirty = true;
    }

    /// Whether the next evaluation should be timed (one in [`RULE_TIME_SAMPLE`]).
    pub fn time_next_eval(&self) -> bool {
        self.counts.rule_evals.is_multiple_of(RULE_TIME_SAMPLE)
    }

    /// One rule-engine evaluation of an event, and how long it took when it was timed (the
    /// time counts for the [`RULE_TIME_SAMPLE`] evaluations it stands for).
    pub fn rule_eval(&mut self, took: Option<Duration>) {
        if let Some(t) = took {
            self.counts.rule_eval_ns += t.as_nanos() as u64 * RULE_TIME_SAMPLE;
        }
        self.counts.rule_evals += 1;
        self.dirty = true;
    }
}

#[derive(Debug, Default)]
struct Shared {
    /// Fleet configuration: the version running, applies and refusals since start.
    config: ConfigCounts,
    counts: Counts,
    kernel_drops: u64,
    userspace_drops: u64,
    queue_drops: u64,
    kernel_events: u64,
    outputs: Vec<rampart_ship::DirectStats>,
}

/// The fleet configuration's numbers (see `crate::fleetconfig`).
#[derive(Debug, Default, Clone)]
pub struct ConfigCounts {
    /// The server configuration version running (0: none).
    pub version: u64,
    /// When it was applied, Unix seconds.
    pub applied_secs: u64,
    /// Configurations applied (from the server, on SIGHUP, at start).
    pub applied: u64,
    /// Configurations refused, by reason (`signature`, `rollback`, `payload`, `invalid`, `fetch`).
    pub refused: BTreeMap<&'static str, u64>,
}

/// The metrics the endpoint renders.
#[derive(Debug, Default)]
pub struct AgentMetrics {
    shared: Mutex<Shared>,
}

impl AgentMetrics {
    pub fn new() -> Arc<AgentMetrics> {
        Arc::new(AgentMetrics::default())
    }

    /// Changes the fleet configuration's numbers.
    pub fn config(&self, f: impl FnOnce(&mut ConfigCounts)) {
        f(&mut self.lock().config);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Shared> {
        self.shared.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Moves what `local` counted into the shared copy.
    pub fn publish(&self, local: &mut LocalMetrics) {
        if !local.dirty {
            return;
        }
        self.lock().counts.merge(&local.counts);
        local.counts = Counts::default();
        local.dirty = false;
    }

    /// The sources' totals since start: events the kernel produced, lost in the kernel ring
    /// buffer, lost in user space (full channels, malformed records, other parts' drops).
    pub fn set_source(&self, kernel_events: u64, kernel_drops: u64, userspace_drops: u64) {
        let mut s = self.lock();
        s.kernel_events = kernel_events;
        s.kernel_drops = kernel_drops;
        s.userspace_drops = userspace_drops;
    }

    /// Records the durable queue refused since start (`overflow: drop_newest`, queue full).
    pub fn set_queue_dropped(&self, n: u64) {
        self.lock().queue_drops = n;
    }

    /// The direct outputs' counters (`stdout`, `jsonl:PATH`, `delivery: direct`) since start.
    pub fn set_outputs(&self, stats: Vec<rampart_ship::DirectStats>) {
        self.lock().outputs = stats;
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let s = self.lock();
        let mut w = PromWriter::new();
        w.gauge(
            "rampart_agent_config_version",
            "The fleet configuration version from the server that the agent runs (0: none).",
            &[],
            s.config.version as f64,
        );
        w.gauge(
            "rampart_agent_config_applied_timestamp_seconds",
            "When the running configuration was applied (Unix seconds; 0: never).",
            &[],
            s.config.applied_secs as f64,
        );
        w.counter(
            "rampart_agent_config_applied_total",
            "Configurations applied without a restart (server bundles, SIGHUP reloads, the installed bundle at start).",
            &[],
            s.config.applied,
        );
        for reason in ["signature", "rollback", "payload", "invalid", "fetch"] {
            w.counter(
                "rampart_agent_config_refused_total",
                "Configurations refused with the running one kept, by reason.",
                &[("reason", reason)],
                s.config.refused.get(reason).copied().unwrap_or(0),
            );
        }
        for kind in EventKind::ALL {
            let n = s.counts.events.get(kind.index()).copied().unwrap_or(0);
            w.counter(
                "rampart_agent_events_total",
                "Events written to the outputs, by type.",
                &[("type", kind.as_str())],
                n,
            );
        }
        w.counter(
            "rampart_agent_kernel_events_total",
            "Records the kernel sensor produced.",
            &[],
            s.kernel_events,
        );
        w.counter(
            "rampart_agent_dropped_total",
            "Events lost, by where: the kernel ring buffer, user space (full channels, malformed records, the Docker watcher, policy and response queues, log readers), the durable queue, the direct outputs (failed writes).",
            &[("stage", "kernel")],
            s.kernel_drops,
        );
        w.counter(
            "rampart_agent_dropped_total",
            "",
            &[("stage", "userspace")],
            s.userspace_drops,
        );
        w.counter(
            "rampart_agent_dropped_total",
            "",
            &[("stage", "queue")],
            s.queue_drops,
        );
        w.counter(
            "rampart_agent_dropped_total",
            "",
            &[("stage", "output")],
            s.outputs.iter().map(|o| o.dropped).sum(),
        );
        for ((rule, priority), n) in &s.counts.alerts {
            w.counter(
                "rampart_agent_alerts_total",
                "Alerts raised, by rule and priority.",
                &[("rule", rule), ("priority", priority)],
                *n,
            );
        }
        w.counter(
            "rampart_agent_rule_evaluations_total",
            "Events the rule engine evaluated.",
            &[],
            s.counts.rule_evals,
        );
        w.gauge(
            "rampart_agent_rule_evaluation_seconds_total",
            "Time the rule engine spent evaluating events (divide by the evaluations for the mean).",
            &[],
            s.counts.rule_eval_ns as f64 / 1e9,
        );
        for ((action, outcome), n) in &s.counts.responses {
            w.counter(
                "rampart_agent_response_actions_total",
                "Response actions run, by action and outcome.",
                &[("action", action), ("outcome", outcome)],
                *n,
            );
        }
        rampart_ship::output::direct::write_metrics(&mut w, &s.outputs);
        for (kind, name) in [
            (EventKind::PolicyExecDenied, "exec"),
            (EventKind::PolicyNetDenied, "network"),
        ] {
            w.counter(
                "rampart_agent_enforcement_denials_total",
                "Denials (and audited would-be denials) the kernel enforcement reported.",
                &[("kind", name)],
                s.counts.events.get(kind.index()).copied().unwrap_or(0),
            );
        }
        w.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_are_published_and_rendered() {
        let m = AgentMetrics::new();
        let mut l = LocalMetrics::default();
        let dev = Arc::new(rampart_event::Device::default());
        let ev = Event::new(
            rampart_event::EventId::new(1, 1),
            1,
            EventKind::ProcessExec,
            dev,
        );
        l.event(&ev);
        l.event(&ev);
        assert!(l.time_next_eval());
        l.rule_eval(Some(Duration::from_micros(3)));
        assert!(!l.time_next_eval());
        assert!(!m.render().contains("type=\"process.exec\"} 2"));
        m.publish(&mut l);
        m.set_queue_dropped(4);
        m.set_source(10, 1, 2);
        let text = m.render();
        assert!(
            text.contains("rampart_agent_events_total{type=\"process.exec\"} 2"),
            "{text}"
        );
        assert!(
            text.contains("rampart_agent_dropped_total{stage=\"queue\"} 4"),
            "{text}"
        );
        assert!(
            text.contains("rampart_agent_dropped_total{stage=\"kernel\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("rampart_agent_rule_evaluations_total 1"),
            "{text}"
        );
        // Published counts are not counted twice.
        m.publish(&mut l);
        assert!(m
            .render()
            .contains("rampart_agent_events_total{type=\"process.exec\"} 2"));
    }
}
