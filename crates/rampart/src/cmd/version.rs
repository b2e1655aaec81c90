//! `rampart version`.

use std::process::ExitCode;

pub fn run() -> anyhow::Result<ExitCode> {
    println!("rampart {}", rampart_event::VERSION);
    println!("event schema: OCSF {}", rampart_event::OCSF_VERSION);
    println!(
        "target: {}-{}",
        std::env::consts::ARCH,
        std::env::consts::OS
    );
    Ok(ExitCode::SUCCESS)
}
