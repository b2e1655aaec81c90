//! `rampart harden host --userns`: plan (default), `--apply` or `--verify` Docker's
//! user-namespace remapping. The logic is `rampart_audit::userns`; this is the glue.

use std::process::ExitCode;

use rampart_audit::userns::{self, UsernsError};
pub use rampart_audit::UsernsArgs;

use super::audit::{connect, runtime};
use super::BadInput;

fn lib_err(e: UsernsError) -> anyhow::Error {
    if e.is_bad_input() {
        anyhow::Error::new(BadInput(e.to_string()))
    } else {
        anyhow::Error::new(e)
    }
}

pub fn run(a: UsernsArgs) -> anyhow::Result<ExitCode> {
    let plan = userns::plan(&a.options()).map_err(lib_err)?;
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

fn verify(a: &UsernsArgs, plan: &userns::UsernsPlan) -> anyhow::Result<ExitCode> {
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
