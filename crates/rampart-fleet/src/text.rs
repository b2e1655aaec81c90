//! What `rampart incident` prints (the table, one incident, a deadline) and how its `mark`
//! options become [`Mark`]s. The JSON forms are the types' `Serialize` output.

use std::fmt::Write;

use rampart_event::now_ns;

use crate::deadline::{countdown, format_utc, parse_rfc3339};
use crate::{AppliedDeadline, DeadlineState, Incident, Mark, Regulation};

/// A `mark` option that does not say what it should; the user's input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MarkError {
    /// A time is not `YYYY-MM-DDTHH:MM:SSZ` or `now`.
    #[error("{option} {given:?}: expected YYYY-MM-DDTHH:MM:SSZ (UTC) or now")]
    Time { option: &'static str, given: String },
    /// `--submitted` names no deadline of the loaded regulations.
    #[error("--submitted {0:?}: no such REGIME/DEADLINE (see rampart incident show)")]
    UnknownDeadline(String),
    /// No decision was given.
    #[error("nothing to record: give at least one option")]
    Nothing,
}

/// The decisions `rampart incident mark` records, as given on the command line.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MarkRequest {
    pub personal_data_breach: Option<bool>,
    pub malicious: Option<bool>,
    /// Times: RFC 3339 UTC or `now`.
    pub aware_at: Option<String>,
    pub determined_at: Option<String>,
    pub confirm: Option<String>,
    /// `REGIME/DEADLINE[@TIME]`.
    pub submitted: Vec<String>,
    pub close: bool,
}

fn when(s: &str, option: &'static str, now: u64) -> Result<u64, MarkError> {
    if s == "now" {
        return Ok(now);
    }
    parse_rfc3339(s).ok_or_else(|| MarkError::Time {
        option,
        given: s.to_string(),
    })
}

impl MarkRequest {
    /// The marks, in a fixed order, `now` standing for `now`; a submission must name a
    /// deadline of `regs`.
    pub fn marks(&self, regs: &[Regulation], now: u64) -> Result<Vec<Mark>, MarkError> {
        let mut out = Vec::new();
        out.extend(self.personal_data_breach.map(Mark::PersonalDataBreach));
        out.extend(self.malicious.map(Mark::Malicious));
        if let Some(t) = &self.aware_at {
            out.push(Mark::AwareAt(when(t, "--aware-at", now)?));
        }
        if let Some(t) = &self.determined_at {
            out.push(Mark::DeterminedAt(when(t, "--determined-at", now)?));
        }
        if let Some(t) = &self.confirm {
            out.push(Mark::ConfirmedAt(when(t, "--confirm", now)?));
        }
        for s in &self.submitted {
            let (key, at) = match s.split_once('@') {
                Some((k, t)) => (k, when(t, "--submitted", now)?),
                None => (s.as_str(), now),
            };
            let known = key.split_once('/').is_some_and(|(r, d)| {
                regs.iter()
                    .any(|x| x.regime == r && x.deadlines.iter().any(|y| y.id == d))
            });
            if !known {
                return Err(MarkError::UnknownDeadline(key.to_string()));
            }
            out.push(Mark::Submitted(key.to_string(), at));
        }
        if self.close {
            out.push(Mark::Closed(true));
        }
        if out.is_empty() {
            return Err(MarkError::Nothing);
        }
        Ok(out)
    }
}

/// [`MarkRequest::marks`] at the current time.
pub fn marks_now(req: &MarkRequest, regs: &[Regulation]) -> Result<Vec<Mark>, MarkError> {
    req.marks(regs, now_ns())
}

impl AppliedDeadline {
    /// `STATE REGIME/DEADLINE DUE (COUNTDOWN) [PERIOD]`, one line without `\n`.
    pub fn line(&self, now: u64) -> String {
        let due = match self.due_ns {
            Some(t) => format!("{} ({})", format_utc(t), countdown(t, now)),
            None => "without undue delay".into(),
        };
        format!(
            "{:<10} {:<44} {} [{}]",
            self.state.as_str(),
            format!("{}/{}", self.regime, self.deadline),
            due,
            self.period
        )
    }
}

/// The header of the incident table.
pub fn list_header() -> String {
    format!(
        "{:<24} {:<18} {:<9} {:<20} {:<6} {:<16} NEXT DEADLINE",
        "ID", "CATEGORY", "PRIORITY", "FIRST SEEN", "HOSTS", "JURISDICTIONS"
    )
}

impl Incident {
    /// The incident's row of the table (`deadlines` are its own), without `\n`.
    pub fn list_line(&self, deadlines: &[AppliedDeadline], now: u64) -> String {
        let next = deadlines
            .iter()
            .find(|x| x.due_ns.is_some() && x.state != DeadlineState::Done);
        format!(
            "{:<24} {:<18} {:<9} {:<20} {:<6} {:<16} {}",
            self.id,
            self.category.as_str(),
            self.priority.as_str(),
            format_utc(self.first_ns),
            self.hosts().len(),
            self.jurisdictions()
                .into_iter()
                .collect::<Vec<_>>()
                .join(","),
            next.map(|n| format!("{} {}", n.key, countdown(n.due_ns.unwrap_or(now), now)))
                .unwrap_or_else(|| "-".into())
        )
    }

    /// The incident's summary as one JSON object (`incident list --json`).
    pub fn list_json(&self, deadlines: &[AppliedDeadline]) -> serde_json::Value {
        serde_json::json!({
            "id": self.id, "category": self.category, "priority": self.priority,
            "first_ns": self.first_ns, "last_ns": self.last_ns,
            "hosts": self.hosts(), "jurisdictions": self.jurisdictions(),
            "personal_data_breach": self.personal_data_breach,
            "provisional": self.is_provisional(),
            "opened_because": self.opened_because,
            "confirmed_by": self.confirmed_by,
            "deadlines": deadlines,
        })
    }

    /// `incident show`: subjects, rules, confirmation, deadlines with countdowns, timeline.
    /// Every line ends in `\n`.
    pub fn show_text(&self, deadlines: &[AppliedDeadline], now: u64) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "{}  {}  {}",
            self.id,
            self.category.as_str(),
            self.priority
        );
        let _ = writeln!(out, "title:        {}", self.title);
        let _ = writeln!(
            out,
            "seen:         {} .. {}",
            format_utc(self.first_ns),
            format_utc(self.last_ns)
        );
        for s in &self.subjects {
            let region = self.regions.get(&s.host).map(String::as_str).unwrap_or("");
            let _ = if s.container.is_empty() {
                writeln!(out, "host:         {} ({region})", s.host)
            } else {
                writeln!(
                    out,
                    "container:    {} on {} ({region})",
                    s.container, s.host
                )
            };
        }
        let rules: Vec<&str> = self.rules.iter().map(String::as_str).collect();
        let _ = writeln!(out, "rules:        {}", rules.join(", "));
        let _ = writeln!(out, "opened:       {}", self.opened_because);
        let _ = match &self.confirmed_ns {
            Some(t) => writeln!(
                out,
                "confirmed:    {} by {}",
                format_utc(*t),
                self.confirmed_by.as_deref().unwrap_or("-")
            ),
            None => writeln!(
                out,
                "confirmed:    no (provisional: deadlines do not run until a person confirms it, rampart incident mark {} --confirm now, or a high-confidence alert does)",
                self.id
            ),
        };
        let breach = if self.personal_data_breach {
            "yes"
        } else {
            "no"
        };
        let _ = writeln!(out, "personal-data breach: {breach}");
        out.push_str("\ndeadlines:\n");
        if deadlines.is_empty() {
            out.push_str("  none apply\n");
        }
        for x in deadlines {
            let _ = writeln!(out, "  {}", x.line(now));
        }
        out.push_str("\ntimeline:\n");
        for e in &self.timeline {
            let _ = writeln!(
                out,
                "  {} {:<8} {:<12} {}",
                format_utc(e.time_ns),
                format!("{:?}", e.kind).to_lowercase(),
                e.host,
                e.summary
            );
        }
        out
    }
}

/// What `rampart incident` works with: each option given, else the server configuration's
/// value, else the default (`/var/lib/rampart/server`, the regulations shipped with Rampart,
/// no roles).
#[derive(Debug, Clone)]
pub struct IncidentSettings {
    pub data_dir: std::path::PathBuf,
    pub regulations: Vec<Regulation>,
    pub roles: Vec<String>,
    /// The configuration's shared control store (`control_store:`, its password file
    /// resolved against the data directory): incidents and marks are the fleet's, there.
    pub control_store: Option<rampart_server::config::ControlStoreConfig>,
}

impl IncidentSettings {
    /// Resolves the settings from the options and the server configuration `cfg`.
    pub fn resolve(
        cfg: Option<rampart_server::ServerConfig>,
        data_dir: Option<std::path::PathBuf>,
        regulations: Option<std::path::PathBuf>,
        roles: Vec<String>,
    ) -> Result<IncidentSettings, crate::RegulationError> {
        let data_dir = data_dir
            .or_else(|| cfg.as_ref().map(|s| s.data_dir.clone()))
            .unwrap_or_else(|| std::path::PathBuf::from("/var/lib/rampart/server"));
        let regs_dir = regulations.or_else(|| {
            cfg.as_ref()
                .and_then(|s| s.fleet.regulations_dir.as_ref().map(|d| s.resolve(d)))
        });
        let regulations = match regs_dir {
            Some(dir) => crate::regulation::load_dir(&dir)?,
            None => crate::regulation::builtin()?,
        };
        let control_store = cfg.as_ref().and_then(|s| {
            s.control_store
                .clone()
                .map(|cs| rampart_server::config::ControlStoreConfig {
                    password_file: cs.password_file.as_ref().map(|p| s.resolve(p)),
                    postgres: cs.postgres,
                })
        });
        let roles = if roles.is_empty() {
            cfg.map(|s| s.fleet.roles).unwrap_or_default()
        } else {
            roles
        };
        Ok(IncidentSettings {
            data_dir,
            regulations,
            roles,
            control_store,
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use super::*;

    #[test]
    fn marks_follow_the_options_and_refuse_what_is_not_a_decision() {
        let regs = crate::regulation::builtin().unwrap();
        let r = &regs[0];
        let key = format!("{}/{}", r.regime, r.deadlines[0].id);
        let req = MarkRequest {
            personal_data_breach: Some(true),
            aware_at: Some("2026-03-06T16:00:00Z".into()),
            confirm: Some("now".into()),
            submitted: vec![key.clone()],
            close: true,
            ..MarkRequest::default()
        };
        let m = req.marks(&regs, 42).unwrap();
        assert_eq!(
            m,
            vec![
                Mark::PersonalDataBreach(true),
                Mark::AwareAt(parse_rfc3339("2026-03-06T16:00:00Z").unwrap()),
                Mark::ConfirmedAt(42),
                Mark::Submitted(key, 42),
                Mark::Closed(true),
            ]
        );
        assert_eq!(
            MarkRequest::default().marks(&regs, 1),
            Err(MarkError::Nothing)
        );
        let bad_time = MarkRequest {
            aware_at: Some("yesterday".into()),
            ..MarkRequest::default()
        };
        assert!(matches!(
            bad_time.marks(&regs, 1),
            Err(MarkError::Time {
                option: "--aware-at",
                ..
            })
        ));
        let unknown = MarkRequest {
            submitted: vec!["nis2/none@now".into()],
            ..MarkRequest::default()
        };
        assert_eq!(
            unknown.marks(&regs, 1),
            Err(MarkError::UnknownDeadline("nis2/none".into()))
        );
    }
}
