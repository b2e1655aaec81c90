//! Playbooks: which alerts trigger which ordered response actions, with rate limits, a dry-run
//! mode and a record of every action taken.
//!
//! # Format (`docs/response.md`)
//! ```yaml
//! playbooks:
//!   - name: crypto-miner
//!     match:                        # every key given must hold
//!       rules: ["Crypto miner launched", "Outbound connection to a mining pool*"]  # globs
//!       tags: [T1496]               # any of them
//!       priority: critical          # this severe or more
//!       containers: ["shop-*"]      # container name globs (optional)
//!     actions: [isolate, forensics, kill]   # in order; a failing one does not stop the next
//!     rate_limit: {max: 3, per: 10m}        # runs of this playbook; more are recorded, not run
//!     dry_run: false                # record what would be done, do nothing
//!     isolate_allow: [10.0.0.5]     # addresses an isolated container may still reach
//! ```
//! Actions: `kill` (the alert's process), `kill_tree` (it and its descendants), `freeze`,
//! `isolate`, `stop`, `forensics` (a signed bundle, with the alert process's memory, in the
//! responder's forensics directory, uploaded through the responder's evidence sink if any).

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rampart_event::{Alert, Priority};
use serde::Deserialize;

/// A response action.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ActionKind {
    Kill,
    KillTree,
    Freeze,
    Isolate,
    Stop,
    Forensics,
}

impl ActionKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ActionKind::Kill => "kill",
            ActionKind::KillTree => "kill_tree",
            ActionKind::Freeze => "freeze",
            ActionKind::Isolate => "isolate",
            ActionKind::Stop => "stop",
            ActionKind::Forensics => "forensics",
        }
    }

    /// The action a rule's `actions:` entry asks for.
    pub fn from_rule(a: rampart_rules::Action) -> Option<ActionKind> {
        Some(match a {
            rampart_rules::Action::Kill => ActionKind::Kill,
            rampart_rules::Action::Freeze => ActionKind::Freeze,
            rampart_rules::Action::Isolate => ActionKind::Isolate,
            rampart_rules::Action::Stop => ActionKind::Stop,
            rampart_rules::Action::Forensics => ActionKind::Forensics,
            _ => return None,
        })
    }
}

/// A playbook file could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PlaybookError {
    #[error("{}: {message}", path.display())]
    Read { path: PathBuf, message: String },
    #[error("{}{}: {message}", path.display(), line.map(|l| format!(":{l}")).unwrap_or_default())]
    Invalid {
        path: PathBuf,
        line: Option<usize>,
        message: String,
    },
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileDef {
    playbooks: Vec<PlaybookDef>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PlaybookDef {
    name: String,
    #[serde(rename = "match")]
    when: MatchDef,
    actions: Vec<ActionKind>,
    #[serde(default)]
    rate_limit: Option<RateLimitDef>,
    #[serde(default)]
    dry_run: bool,
    #[serde(default)]
    isolate_allow: Vec<String>,
    #[serde(default = "yes")]
    enabled: bool,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct MatchDef {
    #[serde(default)]
    rules: Vec<String>,
    #[serde(default)]
    tags: Vec<String>,
    #[serde(default)]
    priority: Option<String>,
    #[serde(default)]
    containers: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RateLimitDef {
    max: u32,
    per: String,
}

/// At most `max` runs in any window of `per`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    pub max: u32,
    pub per: Duration,
}

/// A validated playbook.
#[derive(Debug, Clone)]
pub struct Playbook {
    pub name: String,
    rules: Vec<glob::Pattern>,
    tags: Vec<String>,
    min_priority: Option<Priority>,
    containers: Vec<glob::Pattern>,
    pub actions: Vec<ActionKind>,
    pub rate_limit: Option<RateLimit>,
    pub dry_run: bool,
    /// Addresses or CIDRs an isolated container may still reach (added to the responder's).
    pub isolate_allow: Vec<rampart_kernel::enforce::NetPrefix>,
    pub enabled: bool,
}

impl Playbook {
    /// Every criterion given holds for `alert`.
    pub fn matches(&self, alert: &Alert) -> bool {
        let rule_ok = self.rules.is_empty() || self.rules.iter().any(|p| p.matches(&alert.rule));
        let tag_ok = self.tags.is_empty()
            || self
                .tags
                .iter()
                .any(|t| alert.tags.iter().any(|a| a.eq_ignore_ascii_case(t)));
        // Priorities order from most severe: "at least critical" is <= Critical.
        let prio_ok = self.min_priority.is_none_or(|m| alert.priority <= m);
        let cont_ok = self.containers.is_empty()
            || alert
                .container
                .as_ref()
                .is_some_and(|c| self.containers.iter().any(|p| p.matches(&c.name)));
        self.enabled && rule_ok && tag_ok && prio_ok && cont_ok
    }
}

/// Loads playbook files; errors name the file and line.
pub fn load_playbooks(path: &Path) -> Result<Vec<Playbook>, PlaybookError> {
    let text = std::fs::read_to_string(path).map_err(|e| PlaybookError::Read {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    parse_playbooks(path, &text)
}

/// Parses playbooks from `text` as if read from `path`.
pub fn parse_playbooks(path: &Path, text: &str) -> Result<Vec<Playbook>, PlaybookError> {
    let def: FileDef = serde_yaml::from_str(text).map_err(|e| PlaybookError::Invalid {
        path: path.to_path_buf(),
        line: e.location().map(|l| l.line()),
        message: e.to_string(),
    })?;
    let line_of = |needle: &str| {
        text.find(needle)
            .map(|i| text[..i].matches('\n').count() + 1)
    };
    let mut out = Vec::new();
    let mut names = std::collections::BTreeSet::new();
    for p in def.playbooks {
        let line = line_of(&format!("name: {}", p.name))
            .or_else(|| line_of(&format!("name: \"{}\"", p.name)))
            .or_else(|| line_of(&p.name));
        let bad = |m: String| PlaybookError::Invalid {
            path: path.to_path_buf(),
            line,
            message: format!("playbook {:?}: {m}", p.name),
        };
        if !names.insert(p.name.clone()) {
            return Err(bad("defined twice".into()));
        }
        if p.actions.is_empty() {
            return Err(bad("no actions".into()));
        }
        let w = &p.when;
        if w.rules.is_empty() && w.tags.is_empty() && w.priority.is_none() {
            return Err(bad(
                "`match` needs `rules`, `tags` or `priority`: it would match every alert".into(),
            ));
        }
        let pat =
            |s: &String| glob::Pattern::new(s).map_err(|e| bad(format!("bad pattern {s:?}: {e}")));
        let rules = w.rules.iter().map(pat).collect::<Result<Vec<_>, _>>()?;
        let containers = w
            .containers
            .iter()
            .map(pat)
            .collect::<Result<Vec<_>, _>>()?;
        let min_priority = w
            .priority
            .as_deref()
            .map(|s| s.parse::<Priority>().map_err(|e| bad(e.to_string())))
            .transpose()?;
        let rate_limit = p
            .rate_limit
            .as_ref()
            .map(|r| {
                let per = humantime::parse_duration(&r.per)
                    .map_err(|e| bad(format!("rate_limit.per {:?}: {e}", r.per)))?;
                if r.max == 0 || per.is_zero() {
                    return Err(bad("rate_limit needs max >= 1 and a non-zero period".into()));
                }
                Ok(RateLimit { max: r.max, per })
            })
            .transpose()?;
        let isolate_allow = crate::enforcer::parse_allow_list(&p.isolate_allow)
            .map_err(|m| bad(format!("isolate_allow: {m}")))?;
        out.push(Playbook {
            name: p.name.clone(),
            rules,
            tags: w.tags.clone(),
            min_priority,
            containers,
            actions: p.actions.clone(),
            rate_limit,
            dry_run: p.dry_run,
            isolate_allow,
            enabled: p.enabled,
        });
    }
    Ok(out)
}

/// Sliding-window run counts per playbook.
#[derive(Debug, Default)]
pub(crate) struct Limiter {
    runs: std::collections::HashMap<String, VecDeque<Instant>>,
}

impl Limiter {
    /// Records a run of `name` at `now` unless that would exceed `limit`; returns whether it may run.
    pub(crate) fn admit(&mut self, name: &str, limit: Option<RateLimit>, now: Instant) -> bool {
        let Some(limit) = limit else { return true };
        let q = self.runs.entry(name.to_string()).or_default();
        while q
            .front()
            .is_some_and(|t| now.duration_since(*t) >= limit.per)
        {
            q.pop_front();
        }
        if q.len() >= limit.max as usize {
            return false;
        }
        q.push_back(now);
        true
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use super::*;
    use std::sync::Arc;

    fn alert(rule: &str, prio: Priority, tags: &[&str]) -> Alert {
        Alert {
            id: rampart_event::EventId::new(1, 1),
            time_ns: 0,
            rule: rule.into(),
            description: String::new(),
            priority: prio,
            tags: tags.iter().map(|t| t.to_string()).collect(),
            output: String::new(),
            output_fields: Default::default(),
            source: "syscall".into(),
            device: Arc::new(Default::default()),
            container: None,
            process: None,
            events: vec![],
        }
    }

    #[test]
    fn match_by_rule_glob_tag_and_priority() {
        let text = "\
playbooks:
  - name: miner
    match: {rules: [\"Crypto miner*\"], priority: critical}
    actions: [isolate, forensics, kill]
    rate_limit: {max: 2, per: 1m}
  - name: escape
    match: {tags: [T1611]}
    actions: [freeze]
";
        let p = parse_playbooks(Path::new("pb.yaml"), text).unwrap();
        assert_eq!(
            p[0].actions,
            vec![ActionKind::Isolate, ActionKind::Forensics, ActionKind::Kill]
        );
        assert!(p[0].matches(&alert("Crypto miner launched", Priority::Critical, &[])));
        assert!(p[0].matches(&alert("Crypto miner launched", Priority::Emergency, &[])));
        assert!(!p[0].matches(&alert("Crypto miner launched", Priority::Warning, &[])));
        assert!(!p[0].matches(&alert("Shell in container", Priority::Critical, &[])));
        assert!(p[1].matches(&alert(
            "x",
            Priority::Debug,
            &["mitre_privilege_escalation", "t1611"]
        )));
        let mut l = Limiter::default();
        let t0 = Instant::now();
        assert!(l.admit("miner", p[0].rate_limit, t0));
        assert!(l.admit("miner", p[0].rate_limit, t0));
        assert!(!l.admit("miner", p[0].rate_limit, t0 + Duration::from_secs(30)));
        assert!(l.admit("miner", p[0].rate_limit, t0 + Duration::from_secs(61)));
    }

    #[test]
    fn bad_playbooks_name_file_line_and_problem() {
        let e = parse_playbooks(
            Path::new("pb.yaml"),
            "playbooks:\n  - name: a\n    match: {}\n    actions: [kill]\n",
        )
        .unwrap_err();
        assert!(
            e.to_string().starts_with("pb.yaml:2: playbook \"a\""),
            "{e}"
        );
        let e = parse_playbooks(
            Path::new("pb.yaml"),
            "playbooks:\n  - name: a\n    match: {tags: [x]}\n    actions: [nuke]\n",
        )
        .unwrap_err();
        assert!(
            e.to_string().contains("pb.yaml:4") && e.to_string().contains("nuke"),
            "{e}"
        );
        let e = parse_playbooks(Path::new("pb.yaml"), "playbooks:\n  - name: a\n    match: {tags: [x]}\n    actions: [kill]\n    rate_limit: {max: 1, per: soon}\n").unwrap_err();
        assert!(e.to_string().contains("rate_limit.per"), "{e}");
    }
}
