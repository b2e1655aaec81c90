//! `rampart policy`: check, apply (and follow), show, test and reset exec and network policies.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};

use clap::{Args, Subcommand};
use rampart_respond::facts;
use rampart_respond::{Policy, PolicyEnforcer, PolicyWatcher};

use super::respond::{docker, require_root, Common};
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
            println!("{}: {}", f.file.display(), p.summary());
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
    let rt = super::runtime()?;
    let docker = docker(common, &rt)?;
    let running = rt.block_on(facts::running(&docker))?;
    let mut e = PolicyEnforcer::open(common.enforce_config())?;
    let report = e.apply(&policy, &running)?;
    println!("applied policy {:?} from {}", policy.name, a.file.display());
    print!("{}", report.text());
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
        super::shutdown_signal().await;
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
    let st = PolicyEnforcer::open(common.enforce_config())?.status()?;
    print!("{}", st.text(s.text));
    Ok(ExitCode::SUCCESS)
}

fn test(common: &Common, t: TestArgs) -> anyhow::Result<ExitCode> {
    let policy = load(&t.file)?;
    // The target's syntax is checked before Docker is asked anything.
    rampart_respond::parse_target(&t.to).map_err(|e| BadInput(e.to_string()))?;
    let rt = super::runtime()?;
    let docker = docker(common, &rt)?;
    let running = rt.block_on(facts::running(&docker))?;
    // Plans with what enforcement knows of DNS when it can be read (root), without otherwise.
    let plan = match PolicyEnforcer::open(common.enforce_config()) {
        Ok(e) => e.dry_plan(&policy, &running)?,
        Err(_) => policy.plan(&running, &())?,
    };
    let answer = rampart_respond::test_connection(&policy, &plan, &running, &t.from, &t.to)
        .map_err(|e| BadInput(e.to_string()))?;
    for l in &answer.lines {
        println!("{l}");
    }
    Ok(ExitCode::from(u8::from(!answer.allowed)))
}
