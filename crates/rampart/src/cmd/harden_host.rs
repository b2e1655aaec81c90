//! `rampart harden host --userns`: plan (default), `--apply` or `--verify` Docker's
//! user-namespace remapping. The logic is `rampart_audit::userns`; this is the glue.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use rampart_audit::host::daemon::DAEMON_JSON;
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

pub fn run(a: HostArgs) -> anyhow::Result<ExitCode> {
    let opts = UsernsOptions {
        spec: a.remap.clone(),
        daemon_json: a.daemon_json.clone(),
        subuid: a.subuid.clone(),
        subgid: a.subgid.clone(),
        flag_remap: userns::running_flag(&a.daemon_json),
    };
    let plan = userns::plan(&opts).map_err(lib_err)?;
    if a.verify {
        return verify(&a, &plan);
    }
    print!("{}", plan.text(a.apply));
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
    let ok = rt.block_on(async {
        let docker = connect(&a.docker_socket).await?;
        let say = |line: String| println!("{line}");
        userns::verify(&docker, &a.docker_socket, plan, &a.container, say)
            .await
            .map_err(anyhow::Error::new)
    })?;
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
