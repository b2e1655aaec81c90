//! Running the `rampart` binary from the end-to-end tests: one-shot commands and long-running
//! children (server, agent) that die with the test.
#![allow(dead_code, reason = "each test binary uses a different part")]

pub mod dockerd;
pub mod server;

use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};

/// Runs `rampart args` to completion.
pub fn rampart(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_rampart"))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run rampart")
}

/// Runs `rampart args`; asserts success; returns stdout.
pub fn rampart_ok(args: &[&str]) -> String {
    let out = rampart(args);
    assert!(
        out.status.success(),
        "rampart {args:?}: {:?}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A child process, SIGKILLed on drop; dies with the test process.
pub struct Proc(pub Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `rampart args` (RUST_LOG=info) with stderr to `log`; killed on drop.
pub fn spawn(args: &[&str], stdout: Stdio, log: &Path) -> Proc {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_rampart"));
    cmd.args(args)
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(std::fs::File::create(log).expect("log file"));
    // SAFETY: prctl in the child before exec; the child stops when the test process dies.
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
    Proc(cmd.spawn().expect("spawn rampart"))
}

/// A finished command's stdout then stderr, for assertion messages and matching.
pub fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}
