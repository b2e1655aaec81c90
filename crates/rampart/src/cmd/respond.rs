//! `rampart respond`: act on a container now (kill, freeze, thaw, isolate, release, stop) and
//! capture forensic bundles.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use rampart_container::DockerClient;
use rampart_event::Device;
use rampart_respond::actions::{self, ProcessRef};
use rampart_respond::facts::{self, ContainerFacts};
use rampart_respond::forensics::{self, key::AgentKey, BundleLimits};
use rampart_respond::{parse_allow_list, EnforceConfig, PolicyEnforcer};

use super::BadInput;

#[derive(Debug, Args)]
pub struct RespondArgs {
    #[command(subcommand)]
    command: RespondCommand,
    #[command(flatten)]
    common: Common,
}

/// Options every command that touches containers or enforcement shares.
#[derive(Debug, Args, Clone)]
pub struct Common {
    /// Docker Engine socket.
    #[arg(long, global = true, default_value = rampart_container::DEFAULT_SOCKET, env = "RAMPART_DOCKER_SOCKET")]
    pub docker_socket: PathBuf,
    /// bpffs directory of the pinned enforcement programs.
    #[arg(long, global = true, hide = true, default_value = rampart_kernel::enforce::DEFAULT_PIN_DIR, env = "RAMPART_PIN_DIR")]
    pub pin_dir: PathBuf,
    /// Enforcement state (policy applied, isolations).
    #[arg(long, global = true, hide = true, default_value = rampart_respond::DEFAULT_STATE_DIR, env = "RAMPART_STATE_DIR")]
    pub state_dir: PathBuf,
}

impl Common {
    pub fn enforce_config(&self) -> EnforceConfig {
        EnforceConfig {
            pin_dir: self.pin_dir.clone(),
            state_dir: self.state_dir.clone(),
            device: Arc::new(Device {
                hostname: rampart_event::hostname(),
                region: None,
            }),
            ..EnforceConfig::default()
        }
    }

    pub fn runtime(&self) -> anyhow::Result<tokio::runtime::Runtime> {
        super::runtime()
    }

    pub fn docker(&self, rt: &tokio::runtime::Runtime) -> anyhow::Result<DockerClient> {
        rt.block_on(async {
            tokio::time::timeout(
                Duration::from_secs(5),
                DockerClient::connect(&self.docker_socket),
            )
            .await
        })
        .map_err(|_| {
            anyhow::anyhow!(
                "no answer from Docker at {} in 5 s",
                self.docker_socket.display()
            )
        })?
        .with_context(|| format!("connecting to Docker at {}", self.docker_socket.display()))
    }

    /// The container `key` (name, id or id prefix), which must exist.
    pub fn container(
        &self,
        rt: &tokio::runtime::Runtime,
        docker: &DockerClient,
        key: &str,
    ) -> anyhow::Result<ContainerFacts> {
        rt.block_on(facts::inspect(docker, key))
            .map_err(|e| anyhow::Error::new(BadInput(format!("container {key:?}: {e}"))))
    }
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
    Freeze(Target),
    /// Thaw a frozen container.
    Thaw(Target),
    /// Cut a container off the network (established connections too), except loopback and
    /// --allow; stays in force without a running Rampart until `release`.
    Isolate(IsolateArgs),
    /// Lift an isolation (and with --policy, the applied policy) from a container.
    Release(ReleaseArgs),
    /// Stop a container through Docker (SIGTERM, then SIGKILL).
    Stop(StopArgs),
    /// Capture a signed forensic bundle (tar.zst) of a running container without stopping it.
    Forensics(ForensicsArgs),
}

#[derive(Debug, Args)]
struct Target {
    /// Container name, id or id prefix.
    container: String,
}

#[derive(Debug, Args)]
struct KillArgs {
    /// Container name, id or id prefix.
    container: String,
    /// Kill only this process (host pid); it must belong to the container.
    #[arg(long)]
    pid: Option<u32>,
    /// With --pid: the process and all its descendants.
    #[arg(long, requires = "pid")]
    tree: bool,
}

#[derive(Debug, Args)]
struct IsolateArgs {
    /// Container name, id or id prefix.
    container: String,
    /// An address or CIDR the container may still reach and be reached from (repeatable),
    /// e.g. the Rampart server.
    #[arg(long = "allow", value_name = "CIDR")]
    allow: Vec<String>,
}

#[derive(Debug, Args)]
struct ReleaseArgs {
    /// Container name, id or id prefix.
    container: String,
    /// Also remove the applied policy from this container (until the next `policy apply`, or
    /// its next start under `policy apply --watch`).
    #[arg(long)]
    policy: bool,
}

#[derive(Debug, Args)]
struct StopArgs {
    /// Container name, id or id prefix.
    container: String,
    /// Seconds between SIGTERM and SIGKILL.
    #[arg(long, short, default_value_t = 10)]
    time: u64,
}

#[derive(Debug, Args)]
struct ForensicsArgs {
    /// Container name, id or id prefix.
    container: String,
    /// Where to write the bundle (`.tar.zst`).
    #[arg(short, long)]
    output: PathBuf,
    /// Recorded events (JSON lines, e.g. `rampart agent --record` or its jsonl output): the
    /// container's last ones go into the bundle.
    #[arg(long, value_name = "FILE")]
    events: Option<PathBuf>,
    /// The agent's Ed25519 signing key (created when missing).
    #[arg(long, default_value = forensics::key::DEFAULT_KEY_PATH)]
    key: PathBuf,
    /// Largest file of the container's writable layer stored, in MiB (larger ones are cut).
    #[arg(long, default_value_t = 16)]
    max_file_mib: u64,
    /// Most bytes of the writable layer stored, in MiB.
    #[arg(long, default_value_t = 256)]
    max_total_mib: u64,
    /// Refuse to write when the output filesystem would keep less than this free, in MiB.
    #[arg(long, default_value_t = 1024)]
    min_free_mib: u64,
    /// Events and alerts kept.
    #[arg(long, default_value_t = 1000)]
    max_events: usize,
    /// Also store the memory of this process of the container (host pid; repeatable). The
    /// container is frozen while it is read.
    #[arg(long = "memory-pid", value_name = "PID")]
    memory_pids: Vec<u32>,
    /// Most bytes of process memory stored, in MiB.
    #[arg(long, default_value_t = 256)]
    max_memory_mib: u64,
}

pub fn run(args: RespondArgs) -> anyhow::Result<ExitCode> {
    let common = &args.common;
    require_root("rampart respond")?;
    let rt = common.runtime()?;
    let docker = common.docker(&rt)?;
    match args.command {
        RespondCommand::Kill(a) => {
            let c = common.container(&rt, &docker, &a.container)?;
            println!("{}", actions::kill(&c, a.pid, a.tree)?);
        }
        RespondCommand::Freeze(t) => {
            let c = common.container(&rt, &docker, &t.container)?;
            let how = actions::freeze(&c)?;
            println!(
                "froze {} ({how:?} freezer); `rampart respond thaw {}` undoes it",
                c.label(),
                c.name
            );
        }
        RespondCommand::Thaw(t) => {
            let c = common.container(&rt, &docker, &t.container)?;
            actions::thaw(&c)?;
            println!("thawed {}", c.label());
        }
        RespondCommand::Isolate(a) => {
            let allow = parse_allow_list(&a.allow).map_err(|e| BadInput(e.to_string()))?;
            let c = common.container(&rt, &docker, &a.container)?;
            let mut e = PolicyEnforcer::open(common.enforce_config())?;
            e.isolate(&c, &allow)?;
            println!(
                "isolated {}: no traffic in or out except loopback{}; `rampart respond release {}` lifts it",
                c.label(),
                if allow.is_empty() {
                    String::new()
                } else {
                    format!(" and {}", allow.iter().map(|p| p.to_string()).collect::<Vec<_>>().join(", "))
                },
                c.name
            );
        }
        RespondCommand::Release(a) => {
            let c = common.container(&rt, &docker, &a.container)?;
            let mut e = PolicyEnforcer::open(common.enforce_config())?;
            if e.release(&c.id, a.policy)? {
                println!("released {}", c.label());
            } else {
                println!(
                    "{} was not isolated{}",
                    c.label(),
                    if a.policy { " and had no policy" } else { "" }
                );
            }
        }
        RespondCommand::Stop(a) => {
            let c = common.container(&rt, &docker, &a.container)?;
            rt.block_on(actions::stop(&docker, &c, Duration::from_secs(a.time)))?;
            println!("stopped {}", c.label());
        }
        RespondCommand::Forensics(a) => {
            let c = common.container(&rt, &docker, &a.container)?;
            let recent = match &a.events {
                Some(p) => forensics::recent_events(p, &c.id, a.max_events)?,
                None => Vec::new(),
            };
            let key = AgentKey::load_or_create(&a.key)?;
            let limits = BundleLimits {
                max_file_bytes: a.max_file_mib << 20,
                max_total_bytes: a.max_total_mib << 20,
                min_free_bytes: a.min_free_mib << 20,
                max_events: a.max_events,
                max_memory_bytes: a.max_memory_mib << 20,
                ..BundleLimits::default()
            };
            let memory_of: Vec<ProcessRef> = a
                .memory_pids
                .iter()
                .map(|&pid| ProcessRef {
                    pid,
                    start_time_ns: actions::start_time_ns(pid),
                })
                .collect();
            let r = forensics::capture_with(&c, &recent, &key, &a.output, &limits, &memory_of)?;
            print!("{}", r.text());
        }
    }
    Ok(ExitCode::SUCCESS)
}
