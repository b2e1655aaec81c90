//! The terminal view of the agent (`console` output; `rampart up`'s stdout unless `--json`): one
//! readable line per alert and a one-line summary every stats interval, instead of every event
//! as JSON.
//!
//! ```text
//! 2026-12-06T16:50:01Z CRITICAL  Password hashes read  container web (3f2a9c1b0d4e)  Sensitive file opened for reading (user=root file=/etc/shadow ...)
//! 2026-12-06T16:50:10Z summary   412 events (41/s), 1 alert, 0 dropped, 3 containers active in 10s
//! ```
//! Every line starts with the time (UTC, RFC 3339) and a fixed-width tag, so that `grep`,
//! `less` and a narrow terminal all work. The alert's own output is cut to
//! [`OUTPUT_CHARS`] characters and kept on one line; the full alert is in the other outputs and
//! the server.

use std::collections::HashSet;
use std::fmt::Write as _;

use rampart_event::{Alert, Event, EventKind};

/// Characters of an alert's output shown on its line.
pub const OUTPUT_CHARS: usize = 160;

/// Renders alerts and periodic summaries for a terminal. Feed it every event and alert the
/// agent writes; it returns the lines to print.
#[derive(Debug, Default)]
pub struct Console {
    alerts: u64,
    containers: HashSet<String>,
}

impl Console {
    pub fn new() -> Console {
        Console::default()
    }

    /// The line for an alert (always one).
    pub fn alert(&mut self, a: &Alert) -> String {
        self.alerts += 1;
        if let Some(c) = &a.container {
            self.containers.insert(c.id.clone());
        }
        let place = match &a.container {
            Some(c) if !c.name.is_empty() => format!("container {} ({})", c.name, short_id(&c.id)),
            Some(c) => format!("container {}", short_id(&c.id)),
            None => format!("host {}", a.device.hostname),
        };
        format!(
            "{} {:<9} {}  {}  {}",
            time(a.time_ns),
            a.priority.as_str().to_uppercase(),
            one_line(&a.rule, 80),
            place,
            one_line(&a.output, OUTPUT_CHARS)
        )
    }

    /// The summary line when `ev` is the agent's periodic `sensor.drops` event; other events
    /// are only counted (containers seen) and give no line.
    pub fn event(&mut self, ev: &Event) -> Option<String> {
        if ev.kind != EventKind::SensorDrops {
            if let Some(c) = &ev.container {
                if !self.containers.contains(&c.id) {
                    self.containers.insert(c.id.clone());
                }
            }
            return None;
        }
        let s = ev.stats.as_ref()?;
        let secs = (s.interval_ms as f64 / 1000.0).max(0.001);
        let mut line = format!(
            "{} {:<9} {} events ({:.0}/s), {} alert{}, {} dropped",
            time(ev.time_ns),
            "summary",
            s.events,
            s.events as f64 / secs,
            self.alerts,
            if self.alerts == 1 { "" } else { "s" },
            s.drops_total
        );
        if s.drops_total > 0 {
            let _ = write!(
                line,
                " (kernel {}, user space {})",
                s.drops_total.saturating_sub(s.drops_userspace),
                s.drops_userspace
            );
        }
        let _ = write!(
            line,
            ", {} container{} active in {:.0}s",
            self.containers.len(),
            if self.containers.len() == 1 { "" } else { "s" },
            secs
        );
        self.alerts = 0;
        self.containers.clear();
        Some(line)
    }
}

fn time(ns: u64) -> String {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_nanos(ns);
    humantime::format_rfc3339_seconds(t).to_string()
}

fn short_id(id: &str) -> &str {
    id.get(..12).unwrap_or(id)
}

/// `s` on one line (control characters, newlines included, become spaces), cut to `max`
/// characters with an ellipsis.
fn one_line(s: &str, max: usize) -> String {
    let mut out = String::with_capacity(s.len().min(max * 4));
    for (n, c) in s.chars().enumerate() {
        if n == max {
            out.push('…');
            break;
        }
        out.push(if c.is_control() { ' ' } else { c });
    }
    out
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use rampart_event::{Container, ContainerRuntime, Device, EventId, Priority, SensorStats};

    use super::*;

    fn device() -> Arc<Device> {
        Arc::new(Device {
            hostname: "vps-1".into(),
            region: None,
        })
    }

    fn container(id: &str, name: &str) -> Arc<Container> {
        let mut c = Container::unnamed(id, ContainerRuntime::Docker);
        c.name = name.into();
        Arc::new(c)
    }

    fn alert(c: Option<Arc<Container>>, output: &str) -> Alert {
        Alert {
            id: EventId::new(1, 1),
            time_ns: 1_765_039_801_000_000_000,
            rule: "Password hashes read".into(),
            description: String::new(),
            priority: Priority::Critical,
            tags: Default::default(),
            output: output.into(),
            output_fields: Default::default(),
            source: "syscall".into(),
            device: device(),
            container: c,
            process: None,
            events: Vec::new(),
        }
    }

    fn drops(events: u64, dropped: u64, userspace: u64) -> Event {
        let mut e = Event::new(
            EventId::new(1, 2),
            1_765_039_810_000_000_000,
            EventKind::SensorDrops,
            device(),
        );
        e.stats = Some(SensorStats {
            events,
            drops_total: dropped,
            drops_userspace: userspace,
            interval_ms: 10_000,
            mechanism: "ebpf".into(),
            ..SensorStats::default()
        });
        e
    }

    #[test]
    fn alert_is_one_line_with_time_priority_rule_place_and_output() {
        let mut c = Console::new();
        let id = "3f2a9c1b0d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8";
        let line = c.alert(&alert(
            Some(container(id, "web")),
            "Sensitive file opened (file=/etc/shadow)",
        ));
        assert_eq!(
            line,
            "2025-12-06T16:50:01Z CRITICAL  Password hashes read  container web (3f2a9c1b0d4e)  Sensitive file opened (file=/etc/shadow)"
        );
        let host = c.alert(&alert(None, "x"));
        assert!(host.contains("  host vps-1  x"), "{host}");
    }

    #[test]
    fn hostile_output_stays_on_one_bounded_line() {
        let mut c = Console::new();
        // A process controls its arguments, which rules put in the output: newlines and
        // terminal escapes must not forge lines or move the cursor.
        let evil = format!("a\nFAKE 2025 CRITICAL forged\r\x1b[2J{}", "é".repeat(1000));
        let line = c.alert(&alert(None, &evil));
        assert!(!line.contains('\n') && !line.contains('\r') && !line.contains('\x1b'));
        let shown = line.split("  host vps-1  ").nth(1).expect("output part");
        assert_eq!(
            shown.chars().count(),
            OUTPUT_CHARS + 1,
            "cut with an ellipsis"
        );
        assert!(shown.ends_with('…'));
    }

    #[test]
    fn summary_counts_alerts_drops_and_containers_per_interval() {
        let mut c = Console::new();
        let mut ev = Event::new(EventId::new(1, 3), 0, EventKind::ProcessExec, device());
        ev.container = Some(container("aaa", "a"));
        assert_eq!(c.event(&ev), None, "ordinary events print nothing");
        ev.container = Some(container("bbb", "b"));
        c.event(&ev);
        c.event(&ev);
        c.alert(&alert(Some(container("aaa", "a")), "x"));
        let line = c.event(&drops(412, 0, 0)).expect("summary");
        assert_eq!(
            line,
            "2025-12-06T16:50:10Z summary   412 events (41/s), 1 alert, 0 dropped, 2 containers active in 10s"
        );
        let next = c.event(&drops(0, 7, 2)).expect("summary");
        assert!(
            next.ends_with("0 events (0/s), 0 alerts, 7 dropped (kernel 5, user space 2), 0 containers active in 10s"),
            "counts restart each interval: {next}"
        );
    }
}
