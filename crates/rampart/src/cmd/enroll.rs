//! `rampart enroll --server URL --token T`: gets this agent a client certificate from the
//! server's CA. The key pair is made here and the private key never leaves the host. The
//! options are `rampart_ship::enroll::EnrollArgs`.

use std::process::ExitCode;

pub use rampart_ship::enroll::{EnrollArgs, DEFAULT_TLS_DIR};

use crate::cmd::BadInput;

pub fn run(args: EnrollArgs) -> anyhow::Result<ExitCode> {
    let rt = super::runtime()?;
    let e = rt.block_on(args.enroll()).map_err(|e| {
        if e.is_bad_input() {
            anyhow::Error::new(BadInput(e.to_string()))
        } else {
            anyhow::Error::new(e)
        }
    })?;
    println!("{}", e.text(&args.dir));
    Ok(ExitCode::SUCCESS)
}
