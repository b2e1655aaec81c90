//! What `rampart policy` prints: the text forms of [`ApplyReport`] and [`Status`], and
//! `policy test`'s question "would FROM reach TO:PORT?" answered from a [`Plan`].

use std::fmt::Write;
use std::net::IpAddr;

use rampart_kernel::enforce::{Direction, ExecHook, Verdict};

use crate::facts::ContainerFacts;
use crate::policy::Plan;
use crate::{ApplyReport, Policy, Status};

impl Policy {
    /// `policy "NAME" (MODE mode): N selectors, N network rules, N exec rules`.
    pub fn summary(&self) -> String {
        format!(
            "policy {:?} ({} mode): {} selectors, {} network rules, {} exec rules",
            self.name,
            self.mode,
            self.selectors.len(),
            self.network.len(),
            self.exec.len()
        )
    }
}

impl ApplyReport {
    /// What was applied where, one indented line per fact, each ending in `\n` (the errors
    /// are not included: they are warnings, `errors`).
    pub fn text(&self) -> String {
        let mut out = String::new();
        if let Some(h) = self.exec_hook {
            let how = match h {
                ExecHook::Lsm => "BPF-LSM bprm_check_security (the exec fails with EPERM)",
                ExecHook::TpBtf => "bpf_send_signal(SIGKILL) at sched_process_exec (tp_btf), before the first instruction",
                ExecHook::RawTp => "bpf_send_signal(SIGKILL) at sched_process_exec (raw tracepoint), before the first instruction",
            };
            let _ = writeln!(out, "  exec policy enforced by {how}");
        }
        for (c, sels) in &self.selected {
            let _ = writeln!(out, "  {c}: {}", sels.join(", "));
        }
        if !self.unselected.is_empty() {
            let _ = writeln!(
                out,
                "  not selected (untouched): {}",
                self.unselected.join(", ")
            );
        }
        if self.hashed_files > 0 {
            let _ = writeln!(
                out,
                "  {} executables hashed for sha256 rules",
                self.hashed_files
            );
        }
        for m in &self.hash_matches {
            let _ = writeln!(out, "  sha256 match: {m}");
        }
        out
    }
}

impl Status {
    /// The applied policy, counters and containers; with `policy_text`, the policy's text
    /// after `---`. Every line ends in `\n`.
    pub fn text(&self, policy_text: bool) -> String {
        let mut out = String::new();
        match &self.policy {
            Some(p) => {
                let _ = writeln!(
                    out,
                    "policy {:?} from {} (sha256 {})",
                    p.name,
                    p.source.display(),
                    p.sha256.get(..16).unwrap_or(&p.sha256)
                );
                let _ = writeln!(
                    out,
                    "  applied {}",
                    humantime::format_rfc3339_seconds(
                        std::time::UNIX_EPOCH + std::time::Duration::from_nanos(p.applied_ns)
                    )
                );
            }
            None => out.push_str("no policy applied\n"),
        }
        if let Some(h) = self.exec_hook {
            let _ = writeln!(out, "  exec hook: {}", h.as_str());
        }
        let s = self.stats;
        let _ = writeln!(
            out,
            "  exec: {} checked, {} denied, {} audited; network: {} checked, {} denied, {} audited; reports lost: {}",
            s.exec_checked, s.exec_denied, s.exec_audited, s.net_checked, s.net_denied, s.net_audited, s.events_lost
        );
        if self.containers.is_empty() {
            out.push_str("no container is under a policy or isolated\n");
        }
        for c in &self.containers {
            let mut what = Vec::new();
            if !c.selectors.is_empty() {
                what.push(format!("selectors {}", c.selectors.join(",")));
            }
            if c.isolated {
                what.push(if c.isolate_allow.is_empty() {
                    "ISOLATED".to_string()
                } else {
                    format!("ISOLATED (allowed: {})", c.isolate_allow.join(", "))
                });
            }
            let _ = writeln!(
                out,
                "  {} ({}): {}{}",
                c.name,
                c.id.get(..12).unwrap_or(&c.id),
                what.join("; "),
                if c.attached { "" } else { " [exec rules only]" }
            );
        }
        if policy_text {
            if let Some(p) = &self.policy {
                let _ = writeln!(out, "---\n{}", p.text.trim_end());
            }
        }
        out
    }
}

/// Why `policy test` could not ask its question; all of them are the user's input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectionTestError {
    /// `--to` is not `CONTAINER:PORT[/tcp|udp]` or `ADDRESS:PORT[/tcp|udp]`.
    #[error("--to {given:?}: {why}")]
    Target { given: String, why: String },
    /// `--from` or `--to` names no running container.
    #[error("{flag} {key:?}: no running container by that name or id")]
    NoContainer { flag: &'static str, key: String },
    /// The destination container has no address on any network.
    #[error("{0} has no address")]
    NoAddress(String),
}

/// `--to` of `policy test`: the container or address, the port and the IP protocol (6 or 17).
pub fn parse_target(s: &str) -> Result<(String, u16, u8), ConnectionTestError> {
    let bad = |why: String| ConnectionTestError::Target {
        given: s.to_string(),
        why,
    };
    let (left, proto) = match s.rsplit_once('/') {
        Some((l, "tcp")) => (l, 6),
        Some((l, "udp")) => (l, 17),
        Some((_, p)) => return Err(bad(format!("protocol {p:?} is not tcp or udp"))),
        None => (s, 6),
    };
    let (host, port) = left
        .rsplit_once(':')
        .ok_or_else(|| bad("expected CONTAINER:PORT[/tcp|udp]".into()))?;
    let port: u16 = port
        .parse()
        .map_err(|_| bad(format!("{port:?} is not a port")))?;
    Ok((
        host.trim_start_matches('[')
            .trim_end_matches(']')
            .to_string(),
        port,
        proto,
    ))
}

/// The running container `key` names (name, full id, or an id prefix of 12 or more).
pub fn find_container<'a>(running: &'a [ContainerFacts], key: &str) -> Option<&'a ContainerFacts> {
    running.iter().find(|c| {
        c.name == key.trim_start_matches('/')
            || c.id == key
            || (key.len() >= 12 && c.id.starts_with(key))
    })
}

/// The answer of `policy test`: whether the connection would pass, and why, per side.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionTest {
    pub allowed: bool,
    /// `FROM -> TO:PORT/PROTO: allowed|DENIED`, then one indented line per side.
    pub lines: Vec<String>,
}

/// Would container `from` reach `to` (`CONTAINER:PORT[/proto]` or `ADDRESS:PORT[/proto]`)
/// under `plan` of `policy`, among the `running` containers? Egress of the sender and, for a
/// container destination, ingress of the receiver; no traffic is sent.
pub fn test_connection(
    policy: &Policy,
    plan: &Plan,
    running: &[ContainerFacts],
    from: &str,
    to: &str,
) -> Result<ConnectionTest, ConnectionTestError> {
    let (to, port, proto) = parse_target(to)?;
    let from = find_container(running, from).ok_or_else(|| ConnectionTestError::NoContainer {
        flag: "--from",
        key: from.to_string(),
    })?;
    let (to_c, to_ip): (Option<&ContainerFacts>, IpAddr) = match to.parse::<IpAddr>() {
        Ok(ip) => (None, ip),
        Err(_) => {
            let c =
                find_container(running, &to).ok_or_else(|| ConnectionTestError::NoContainer {
                    flag: "--to",
                    key: to.clone(),
                })?;
            let ip = *c
                .ips
                .first()
                .ok_or_else(|| ConnectionTestError::NoAddress(c.label()))?;
            (Some(c), ip)
        }
    };
    let rule_text = |id: Option<u16>| match id {
        Some(id) => format!("rule {id} `{}`", policy.net_rule_text(u32::from(id))),
        None => "default".to_string(),
    };
    let mut allowed = true;
    let mut lines = Vec::new();
    match plan.group_of(&from.id) {
        Some(g) if g.egress => {
            let (v, id) = g.decide(Direction::Egress, to_ip, port, proto);
            allowed &= v != Verdict::Deny;
            let (name, v, r) = (&from.name, v.as_str(), rule_text(id));
            lines.push(format!("  {name} egress: {v} by {r}"));
        }
        _ => lines.push(format!("  {} egress: not restricted", from.name)),
    }
    if let Some(c) = to_c {
        match (plan.group_of(&c.id), from.ips.first().copied()) {
            (Some(g), Some(src)) if g.ingress => {
                let (v, id) = g.decide(Direction::Ingress, src, port, proto);
                allowed &= v != Verdict::Deny;
                let (name, v, r) = (&c.name, v.as_str(), rule_text(id));
                lines.push(format!("  {name} ingress: {v} by {r}"));
            }
            _ => lines.push(format!("  {} ingress: not restricted", c.name)),
        }
    }
    let to_label = to_c.map_or(to_ip.to_string(), |c| c.name.clone());
    let pname = if proto == 17 { "udp" } else { "tcp" };
    lines.insert(
        0,
        format!(
            "{} -> {to_label}:{port}/{pname}: {}",
            from.name,
            if allowed { "allowed" } else { "DENIED" }
        ),
    );
    Ok(ConnectionTest { allowed, lines })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use super::*;

    #[test]
    fn to_accepts_containers_addresses_and_protocols() {
        assert_eq!(
            parse_target("backend:8080"),
            Ok(("backend".into(), 8080, 6))
        );
        assert_eq!(
            parse_target("10.0.0.1:53/udp"),
            Ok(("10.0.0.1".into(), 53, 17))
        );
        assert_eq!(
            parse_target("[fd00::1]:443/tcp"),
            Ok(("fd00::1".into(), 443, 6))
        );
        assert!(parse_target("backend").is_err());
        assert!(parse_target("backend:80/sctp").is_err());
        assert!(parse_target("backend:70000").is_err());
    }

    fn container(name: &str, id: &str, ip: &str, labels: &[(&str, &str)]) -> ContainerFacts {
        ContainerFacts {
            id: id.into(),
            name: name.into(),
            image: "img".into(),
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            pid: 1,
            cgroup: None,
            ips: vec![ip.parse().unwrap()],
            upper_dir: None,
            running: true,
            inspect: None,
        }
    }

    /// The decision of a real plan: the frontend may reach the backend's 8080 only; the
    /// backend's ingress default is deny; unknown containers are the user's input.
    #[test]
    fn connection_test_follows_the_plan_on_both_sides() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.yaml");
        std::fs::write(
            &path,
            "name: t\nselectors:\n  frontend:\n    labels: {app: fe}\n  backend:\n    labels: {app: be}\n    default: {ingress: deny}\nnetwork:\n  - frontend -> backend tcp/8080 allow\n",
        )
        .unwrap();
        let policy = Policy::load(&path).unwrap();
        let running = vec![
            container("fe", &"a".repeat(64), "172.17.0.2", &[("app", "fe")]),
            container("be", &"b".repeat(64), "172.17.0.3", &[("app", "be")]),
        ];
        let plan = policy.plan(&running, &()).unwrap();
        let ok = test_connection(&policy, &plan, &running, "fe", "be:8080").unwrap();
        assert!(ok.allowed, "{:?}", ok.lines);
        assert_eq!(ok.lines[0], "fe -> be:8080/tcp: allowed");
        let no = test_connection(&policy, &plan, &running, "fe", "be:9090").unwrap();
        assert!(!no.allowed, "{:?}", no.lines);
        assert!(no.lines[0].ends_with("DENIED"), "{:?}", no.lines);
        assert_eq!(
            test_connection(&policy, &plan, &running, "ghost", "be:1"),
            Err(ConnectionTestError::NoContainer {
                flag: "--from",
                key: "ghost".into()
            })
        );
    }
}
