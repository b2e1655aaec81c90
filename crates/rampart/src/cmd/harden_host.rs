//! `rampart harden host --userns`: plan (default), `--apply` or `--verify` Docker's
//! user-namespace remapping. The logic is `rampart_audit::userns`; this is the glue.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use rampart_audit::host::daemon::{DaemonConfig, DAEMON_JSON};
use rampart_audit::userns::{self, UsernsError, UsernsOptions};

use super::audit::{connect, runtime};
use super::BadInput;

#[derive(Debug, Args)]
pub struct HostArgs {
    /// Turn on user-namespace remapping (`userns-remap`): container root becomes an
    /// unprivileged host uid of 100000 or more.
    #[arg(long, required = true)]
    userns: bool,
    /// The remap user: `default` (dockerd creates user and group dockremap), `USER` or
    /// `USER:GROUP` (names that exist on the host).
    #[arg(long, value_name = "SPEC", default_value = "default")]
    remap: String,
    /// Write the changes (daemon.json, subuid, subgid); without it, only show them.
    #[arg(long, conflicts_with = "verify")]
    apply: bool,
    /// After dockerd's restart: check that the daemon remaps and that running containers' root
    /// maps to the allocated range (from /proc/PID/uid_map).
    #[arg(long)]
    verify: bool,
    /// With --verify: the container to check [default: every running container].
    #[arg(long, value_name = "NAME", requires = "verify")]
    container: Vec<String>,
    /// daemon.json to edit.
    #[arg(long, value_name = "PATH", default_value = DAEMON_JSON)]
    daemon_json: PathBuf,
    /// Subordinate uid file.
    #[arg(long, value_name = "PATH", default_value = userns::SUBUID)]
    subuid: PathBuf,
    /// Subordinate gid file.
    #[arg(long, value_name = "PATH", default_value = userns::SUBGID)]
    subgid: PathBuf,
    /// Docker Engine socket (for --verify).
    #[arg(long, default_value = rampart_container::DEFAULT_SOCKET, env = "RAMPART_DOCKER_SOCKET")]
    docker_socket: PathBuf,
}

fn lib_err(e: UsernsError) -> anyhow::Error {
    if e.is_bad_input() {
        anyhow::Error::new(BadInput(e.to_string()))
    } else {
        anyhow::Error::new(e)
    }
}

/// The `--userns-remap` flag of the running dockerd when it reads `daemon_json` (its
/// `--config-file`, or the default path): a key there as well would stop dockerd starting.
fn running_flag(daemon_json: &Path) -> Option<String> {
    // An empty path reads no daemon.json: only dockerd's command line is wanted here.
    let cfg = DaemonConfig::load(Path::new(""), Path::new("/proc")).ok()?;
    let reads = cfg
        .flag("config-file", None)
        .last()
        .cloned()
        .unwrap_or_else(|| DAEMON_JSON.to_string());
    let same = Path::new(&reads) == daemon_json
        || matches!(
            (std::fs::canonicalize(&reads), std::fs::canonicalize(daemon_json)),
            (Ok(x), Ok(y)) if x == y
        );
    if !same {
        return None;
    }
    cfg.flag("userns-remap", None).last().cloned()
}

pub fn run(a: HostArgs) -> anyhow::Result<ExitCode> {
    let opts = UsernsOptions {
        spec: a.remap.clone(),
        daemon_json: a.daemon_json.clone(),
        subuid: a.subuid.clone(),
        subgid: a.subgid.clone(),
        flag_remap: running_flag(&a.daemon_json),
    };
    let plan = userns::plan(&opts).map_err(lib_err)?;
    if a.verify {
        return verify(&a, &plan);
    }
    let verb = if a.apply { "" } else { "would " };
    println!(
        "# user-namespace remapping: userns-remap {:?} (user {}, group {})",
        plan.spec.value, plan.spec.user, plan.spec.group
    );
    match (&plan.daemon_json.unchanged_because, plan.daemon_json_diff()) {
        (_, Some(diff)) => {
            println!("# daemon.json: {verb}add \"userns-remap\"");
            print!("{diff}");
        }
        (Some(why), None) => println!("# {}: unchanged: {why}", plan.daemon_json.path.display()),
        (None, None) => {}
    }
    for s in [&plan.subuid, &plan.subgid] {
        match &s.add_line {
            Some(l) => println!("# {}: {verb}append\n+{l}", s.path.display()),
            None => println!(
                "# {}: unchanged: {} already has {}:{}:{}",
                s.path.display(),
                s.owner,
                s.owner,
                s.start,
                s.count
            ),
        }
    }
    println!("# what changes:");
    for c in userns::consequences(&plan.spec, plan.subuid.start, plan.subgid.start) {
        println!("# - {c}");
    }
    if a.apply {
        let written = plan.apply().map_err(lib_err)?;
        if written.is_empty() {
            println!("# nothing to write: already configured");
        }
        for w in written {
            println!("# wrote {}", w.display());
        }
        println!("# restart dockerd now (e.g. systemctl restart docker), then: rampart harden host --userns --verify");
    } else if plan.is_noop() {
        println!(
            "# already configured; after dockerd's restart: rampart harden host --userns --verify"
        );
    } else {
        println!("# dry run: nothing written; --apply writes these changes");
    }
    Ok(ExitCode::SUCCESS)
}

fn verify(a: &HostArgs, plan: &userns::UsernsPlan) -> anyhow::Result<ExitCode> {
    let rt = runtime()?;
    let low = plan.subuid.start;
    let high = u64::from(low) + u64::from(plan.subuid.count);
    let ok = rt.block_on(async {
        let docker = connect(&a.docker_socket).await?;
        let info = docker.info().await.context("docker info")?;
        let remaps = info
            .security_options
            .as_ref()
            .is_some_and(|o| o.iter().any(|x| x == "name=userns"));
        if !remaps {
            println!(
                "FAIL dockerd at {} does not remap (no name=userns in docker info): restart it after --apply",
                a.docker_socket.display()
            );
            return anyhow::Ok(false);
        }
        println!("PASS dockerd remaps user namespaces (name=userns in docker info)");
        let targets: Vec<String> = if a.container.is_empty() {
            docker
                .list_containers(false)
                .await
                .context("listing containers")?
                .into_iter()
                .filter_map(|c| c.id)
                .collect()
        } else {
            a.container.clone()
        };
        if targets.is_empty() {
            println!("NOTE no running container to check: start one and run --verify again");
        }
        let mut all = true;
        for t in &targets {
            let i = docker
                .inspect_container(t)
                .await
                .with_context(|| format!("inspecting container {t}"))?;
            let name = i
                .name
                .as_deref()
                .map_or(t.as_str(), |n| n.trim_start_matches('/'));
            let pid = i
                .state
                .as_ref()
                .and_then(|s| s.pid)
                .and_then(|p| u32::try_from(p).ok())
                .filter(|p| *p > 0);
            let Some(pid) = pid else {
                println!("FAIL {name}: not running");
                all = false;
                continue;
            };
            let userns_host = i
                .host_config
                .as_ref()
                .and_then(|h| h.userns_mode.as_deref())
                == Some("host");
            match userns::root_mapping(Path::new("/proc"), pid) {
                Some(uid) if u64::from(uid) >= u64::from(low) && u64::from(uid) < high => {
                    println!(
                        "PASS {name}: root is host uid {uid} (/proc/{pid}/uid_map), in {}'s range {low}-{}",
                        plan.subuid.owner,
                        high - 1
                    );
                }
                Some(uid) => {
                    let why = if userns_host {
                        " (it runs with --userns=host)"
                    } else {
                        ""
                    };
                    println!(
                        "FAIL {name}: root is host uid {uid} (/proc/{pid}/uid_map), outside {low}-{}{why}",
                        high - 1
                    );
                    all = false;
                }
                None => {
                    println!("FAIL {name}: /proc/{pid}/uid_map does not map uid 0");
                    all = false;
                }
            }
        }
        anyhow::Ok(all)
    })?;
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
