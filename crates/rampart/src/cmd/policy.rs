//! `rampart policy`: check, apply (and follow), show, test and reset exec and network policies.

use std::io::Write;
use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};

use clap::{Args, Subcommand};
use rampart_kernel::enforce::{Direction, Verdict};
use rampart_respond::facts;
use rampart_respond::{Policy, PolicyEnforcer, PolicyWatcher};

use super::respond::{require_root, Common};
use super::BadInput;

#[derive(Debug, Args)]
pub struct PolicyArgs {
    #[command(subcommand)]
    command: PolicyCommand,
    #[command(flatten)]
    common: Common,
}

#[derive(Debug, Subcommand)]
enum PolicyCommand {
    /// Validate a policy file without applying it. Exits 2 on an error (file:line: what).
    Check(FileArg),
    /// Validate a policy and apply it to the running containers, replacing the one applied
    /// before. It stays in force without a running Rampart (until reset or reboot).
    Apply(ApplyArgs),
    /// What is applied: the policy, the containers it selects, isolations, counters.
    Show(ShowArgs),
    /// Would FROM reach TO:PORT? Answers from the policy file and the running containers,
    /// without sending traffic. Exits 0 when allowed, 1 when denied.
    Test(TestArgs),
    /// Remove the applied policy from every container (isolations stay); with --all, remove
    /// everything enforcement pinned, isolations included.
    Reset(ResetArgs),
}

#[derive(Debug, Args)]
struct FileArg {
    /// The policy file (YAML, see docs/policy.md).
    file: PathBuf,
}

#[derive(Debug, Args)]
struct ApplyArgs {
    /// The policy file (YAML, see docs/policy.md).
    file: PathBuf,
    /// Keep running: apply the policy to containers as they are created and started, and print
    /// every denial as a JSON line, until SIGINT or SIGTERM.
    #[arg(long)]
    watch: bool,
}

#[derive(Debug, Args)]
struct ShowArgs {
    /// Print the policy text too.
    #[arg(long)]
    text: bool,
}

#[derive(Debug, Args)]
struct TestArgs {
    /// The policy file.
    file: PathBuf,
    /// The container making the connection.
    #[arg(long)]
    from: String,
    /// `CONTAINER:PORT[/tcp|udp]` or `ADDRESS:PORT[/tcp|udp]` (default tcp).
    #[arg(long)]
    to: String,
}

#[derive(Debug, Args)]
struct ResetArgs {
    /// Also lift every isolation and remove every pinned program and map.
    #[arg(long)]
    all: bool,
}

fn load(path: &std::path::Path) -> anyhow::Result<Policy> {
    Policy::load(path).map_err(|e| anyhow::Error::new(BadInput(e.to_string())))
}

pub fn run(args: PolicyArgs) -> anyhow::Result<ExitCode> {
    let common = &args.common;
    match args.command {
        PolicyCommand::Check(f) => {
            let p = load(&f.file)?;
            println!(
                "{}: policy {:?} ({} mode): {} selectors, {} network rules, {} exec rules",
                f.file.display(),
                p.name,
                p.mode,
                p.selectors.len(),
                p.network.len(),
                p.exec.len()
            );
            Ok(ExitCode::SUCCESS)
        }
        PolicyCommand::Apply(a) => apply(common, a),
        PolicyCommand::Show(s) => show(common, s),
        PolicyCommand::Test(t) => test(common, t),
        PolicyCommand::Reset(r) => {
            require_root("rampart policy reset")?;
            let mut e = PolicyEnforcer::open(common.enforce_config())?;
            if r.all {
                e.remove_everything()?;
            } else {
                e.reset()?;
            }
            println!(
                "{}",
                if r.all {
                    "removed every policy, isolation and pinned program"
                } else {
                    "removed the applied policy (isolations stay)"
                }
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn apply(common: &Common, a: ApplyArgs) -> anyhow::Result<ExitCode> {
    // Validation comes first: an invalid policy changes nothing.
    let policy = load(&a.file)?;
    require_root("rampart policy apply")?;
    let rt = common.runtime()?;
    let docker = common.docker(&rt)?;
    let running = rt.block_on(facts::running(&docker))?;
    let mut e = PolicyEnforcer::open(common.enforce_config())?;
    let report = e.apply(&policy, &running)?;
    println!("applied policy {:?} from {}", policy.name, a.file.display());
    if let Some(h) = report.exec_hook {
        println!("  exec policy enforced by {}", match h {
            rampart_kernel::enforce::ExecHook::Lsm => "BPF-LSM bprm_check_security (the exec fails with EPERM)",
            rampart_kernel::enforce::ExecHook::TpBtf => "bpf_send_signal(SIGKILL) at sched_process_exec (tp_btf), before the first instruction",
            rampart_kernel::enforce::ExecHook::RawTp => "bpf_send_signal(SIGKILL) at sched_process_exec (raw tracepoint), before the first instruction",
        });
    }
    for (c, sels) in &report.selected {
        println!("  {c}: {}", sels.join(", "));
    }
    if !report.unselected.is_empty() {
        println!(
            "  not selected (untouched): {}",
            report.unselected.join(", ")
        );
    }
    if report.hashed_files > 0 {
        println!(
            "  {} executables hashed for sha256 rules",
            report.hashed_files
        );
    }
    for m in &report.hash_matches {
        println!("  sha256 match: {m}");
    }
    for err in &report.errors {
        eprintln!("warning: {err}");
    }
    let code = if report.errors.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    };
    if !a.watch {
        return Ok(code);
    }
    drop(e);
    println!("following Docker; denials as JSON lines (Ctrl-C stops; the policy stays applied)");
    let enforcer = Arc::new(Mutex::new(PolicyEnforcer::open(common.enforce_config())?));
    let watcher = PolicyWatcher::new(enforcer, docker);
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    rt.spawn(async move {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => return,
            };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        let _ = stop_tx.send(true);
    });
    let stdout = std::io::stdout();
    rt.block_on(watcher.run(
        move |ev| {
            let mut out = stdout.lock();
            serde_json::to_writer(&mut out, &ev).is_ok()
                && writeln!(out).is_ok()
                && out.flush().is_ok()
        },
        stop_rx,
    ))?;
    Ok(code)
}

fn show(common: &Common, s: ShowArgs) -> anyhow::Result<ExitCode> {
    require_root("rampart policy show")?;
    let e = PolicyEnforcer::open(common.enforce_config())?;
    let st = e.status()?;
    match &st.policy {
        Some(p) => {
            println!(
                "policy {:?} from {} (sha256 {})",
                p.name,
                p.source.display(),
                &p.sha256[..16]
            );
            println!(
                "  applied {}",
                humantime::format_rfc3339_seconds(
                    std::time::UNIX_EPOCH + std::time::Duration::from_nanos(p.applied_ns)
                )
            );
        }
        None => println!("no policy applied"),
    }
    if let Some(h) = st.exec_hook {
        println!("  exec hook: {}", h.as_str());
    }
    let s2 = st.stats;
    println!(
        "  exec: {} checked, {} denied, {} audited; network: {} checked, {} denied, {} audited; reports lost: {}",
        s2.exec_checked, s2.exec_denied, s2.exec_audited, s2.net_checked, s2.net_denied, s2.net_audited, s2.events_lost
    );
    if st.containers.is_empty() {
        println!("no container is under a policy or isolated");
    }
    for c in &st.containers {
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
        println!(
            "  {} ({}): {}{}",
            c.name,
            c.id.get(..12).unwrap_or(&c.id),
            what.join("; "),
            if c.attached { "" } else { " [exec rules only]" }
        );
    }
    if s.text {
        if let Some(p) = &st.policy {
            println!("---\n{}", p.text.trim_end());
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `CONTAINER:PORT[/proto]` or `ADDRESS:PORT[/proto]`.
fn parse_to(s: &str) -> Result<(String, u16, u8), String> {
    let (left, proto) = match s.rsplit_once('/') {
        Some((l, "tcp")) => (l, 6),
        Some((l, "udp")) => (l, 17),
        Some((_, p)) => return Err(format!("--to {s:?}: protocol {p:?} is not tcp or udp")),
        None => (s, 6),
    };
    let (host, port) = left
        .rsplit_once(':')
        .ok_or_else(|| format!("--to {s:?}: expected CONTAINER:PORT[/tcp|udp]"))?;
    let port: u16 = port
        .parse()
        .map_err(|_| format!("--to {s:?}: {port:?} is not a port"))?;
    Ok((
        host.trim_start_matches('[')
            .trim_end_matches(']')
            .to_string(),
        port,
        proto,
    ))
}

fn test(common: &Common, t: TestArgs) -> anyhow::Result<ExitCode> {
    let policy = load(&t.file)?;
    let (to, port, proto) = parse_to(&t.to).map_err(BadInput)?;
    let rt = common.runtime()?;
    let docker = common.docker(&rt)?;
    let running = rt.block_on(facts::running(&docker))?;
    let find = |key: &str| {
        running
            .iter()
            .find(|c| {
                c.name == key.trim_start_matches('/')
                    || c.id == key
                    || (key.len() >= 12 && c.id.starts_with(key))
            })
            .cloned()
    };
    let from = find(&t.from).ok_or_else(|| {
        BadInput(format!(
            "--from {:?}: no running container by that name or id",
            t.from
        ))
    })?;
    let (to_c, to_ip): (Option<_>, IpAddr) = match to.parse::<IpAddr>() {
        Ok(ip) => (None, ip),
        Err(_) => {
            let c = find(&to).ok_or_else(|| {
                BadInput(format!(
                    "--to {to:?}: no running container by that name or id"
                ))
            })?;
            let ip = *c
                .ips
                .first()
                .ok_or_else(|| BadInput(format!("{} has no address", c.label())))?;
            (Some(c), ip)
        }
    };
    let from_ip = from.ips.first().copied();
    // Plans with what enforcement knows of DNS when it can be read (root), without otherwise.
    let plan = match PolicyEnforcer::open(common.enforce_config()) {
        Ok(e) => e.dry_plan(&policy, &running)?,
        Err(_) => policy.plan(&running, &())?,
    };
    let name = |s: &str| s.to_string();
    let pname = if proto == 17 { "udp" } else { "tcp" };
    let to_label = to_c.as_ref().map_or(to_ip.to_string(), |c| c.name.clone());
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
            lines.push(format!(
                "  {} egress: {} by {}",
                from.name,
                v.as_str(),
                rule_text(id)
            ));
        }
        _ => lines.push(format!("  {} egress: not restricted", name(&from.name))),
    }
    if let Some(c) = &to_c {
        match (plan.group_of(&c.id), from_ip) {
            (Some(g), Some(src)) if g.ingress => {
                let (v, id) = g.decide(Direction::Ingress, src, port, proto);
                allowed &= v != Verdict::Deny;
                lines.push(format!(
                    "  {} ingress: {} by {}",
                    c.name,
                    v.as_str(),
                    rule_text(id)
                ));
            }
            _ => lines.push(format!("  {} ingress: not restricted", c.name)),
        }
    }
    println!(
        "{} -> {to_label}:{port}/{pname}: {}",
        from.name,
        if allowed { "allowed" } else { "DENIED" }
    );
    for l in lines {
        println!("{l}");
    }
    Ok(if allowed {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn to_accepts_containers_addresses_and_protocols() {
        assert_eq!(parse_to("backend:8080"), Ok(("backend".into(), 8080, 6)));
        assert_eq!(parse_to("10.0.0.1:53/udp"), Ok(("10.0.0.1".into(), 53, 17)));
        assert_eq!(
            parse_to("[fd00::1]:443/tcp"),
            Ok(("fd00::1".into(), 443, 6))
        );
        assert!(parse_to("backend").is_err());
        assert!(parse_to("backend:80/sctp").is_err());
    }
}
