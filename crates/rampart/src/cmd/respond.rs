//! `rampart respond`: act on a container now (kill, freeze, thaw, isolate, release, stop) and
//! capture forensic bundles.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use rampart_container::DockerClient;
use rampart_respond::actions;
use rampart_respond::facts::{self, ContainerFacts};
use rampart_respond::forensics::{self, key::AgentKey};
use rampart_respond::{
    froze_text, isolated_text, parse_allow_list, released_text, CaptureArgs, ContainerArg,
    IsolateArgs, KillArgs, PolicyEnforcer, ReleaseArgs, StopArgs,
};

use super::BadInput;

#[derive(Debug, Args)]
pub struct RespondArgs {
    #[command(subcommand)]
    command: RespondCommand,
    #[command(flatten)]
    common: Common,
}

pub use rampart_respond::EnforceArgs as Common;

/// A client of the Docker daemon at `common`'s socket, which must answer within 5 s.
pub fn docker(common: &Common, rt: &tokio::runtime::Runtime) -> anyhow::Result<DockerClient> {
    let socket = &common.docker_socket;
    rt.block_on(async {
        tokio::time::timeout(Duration::from_secs(5), DockerClient::connect(socket)).await
    })
    .map_err(|_| anyhow::anyhow!("no answer from Docker at {} in 5 s", socket.display()))?
    .with_context(|| format!("connecting to Docker at {}", socket.display()))
}

/// The container `key` (name, id or id prefix), which must exist.
fn container(
    rt: &tokio::runtime::Runtime,
    docker: &DockerClient,
    key: &str,
) -> anyhow::Result<ContainerFacts> {
    rt.block_on(facts::inspect(docker, key))
        .map_err(|e| anyhow::Error::new(BadInput(format!("container {key:?}: {e}"))))
}

pub fn require_root(what: &str) -> anyhow::Result<()> {
    if unsafe { libc::geteuid() } != 0 {
        bail!("{what} needs root (it changes kernel and cgroup state): run it with sudo");
    }
    Ok(())
}

#[derive(Debug, Subcommand)]
enum RespondCommand {
    /// Kill every process of a container, or one process (--pid) or process tree (--pid --tree).
    Kill(KillArgs),
    /// Freeze every process of a container (cgroup freezer); `thaw` undoes it.
    Freeze(ContainerArg),
    /// Thaw a frozen container.
    Thaw(ContainerArg),
    /// Cut a container off the network (established connections too), except loopback and
    /// --allow; stays in force without a running Rampart until `release`.
    Isolate(IsolateArgs),
    /// Lift an isolation (and with --policy, the applied policy) from a container.
    Release(ReleaseArgs),
    /// Stop a container through Docker (SIGTERM, then SIGKILL).
    Stop(StopArgs),
    /// Capture a signed forensic bundle (tar.zst) of a running container without stopping it.
    Forensics(CaptureArgs),
}

pub fn run(args: RespondArgs) -> anyhow::Result<ExitCode> {
    let common = &args.common;
    require_root("rampart respond")?;
    let rt = super::runtime()?;
    let docker = docker(common, &rt)?;
    match args.command {
        RespondCommand::Kill(a) => {
            let c = container(&rt, &docker, &a.container)?;
            println!("{}", actions::kill(&c, a.pid, a.tree)?);
        }
        RespondCommand::Freeze(t) => {
            let c = container(&rt, &docker, &t.container)?;
            println!("{}", froze_text(&c, actions::freeze(&c)?));
        }
        RespondCommand::Thaw(t) => {
            let c = container(&rt, &docker, &t.container)?;
            actions::thaw(&c)?;
            println!("thawed {}", c.label());
        }
        RespondCommand::Isolate(a) => {
            let allow = parse_allow_list(&a.allow).map_err(|e| BadInput(e.to_string()))?;
            let c = container(&rt, &docker, &a.container)?;
            let mut e = PolicyEnforcer::open(common.enforce_config())?;
            e.isolate(&c, &allow)?;
            println!("{}", isolated_text(&c, &allow));
        }
        RespondCommand::Release(a) => {
            let c = container(&rt, &docker, &a.container)?;
            let mut e = PolicyEnforcer::open(common.enforce_config())?;
            let released = e.release(&c.id, a.policy)?;
            println!("{}", released_text(&c, released, a.policy));
        }
        RespondCommand::Stop(a) => {
            let c = container(&rt, &docker, &a.container)?;
            rt.block_on(actions::stop(&docker, &c, Duration::from_secs(a.time)))?;
            println!("stopped {}", c.label());
        }
        RespondCommand::Forensics(a) => {
            let c = container(&rt, &docker, &a.container)?;
            let recent = match &a.events {
                Some(p) => forensics::recent_events(p, &c.id, a.max_events)?,
                None => Vec::new(),
            };
            let key = AgentKey::load_or_create(&a.key)?;
            let (limits, memory_of) = (a.limits(), a.memory_of());
            let r = forensics::capture_with(&c, &recent, &key, &a.output, &limits, &memory_of)?;
            print!("{}", r.text());
        }
    }
    Ok(ExitCode::SUCCESS)
}
