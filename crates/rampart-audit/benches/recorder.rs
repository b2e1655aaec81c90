//! Cost of the syscall recorder (`rampart profile seccomp`, `rampart harden`) on syscall-heavy
//! work, against a baseline measured in the same run:
//! * `baseline`: no recorder loaded;
//! * `others`: the recorder attached and watching another cgroup (what every process outside
//!   the recorded container pays while a recording runs);
//! * `recorded`: the recorder watching this process's own cgroup (what the recorded container
//!   pays).
//!
//! Storms: 5,000,000 getppid (the cheapest syscall: the worst case for a per-syscall hook) and
//! 300,000 open+close of one file. Each is run 5 times per mode; the fastest run counts.
//!
//! Run: `sudo cargo bench -p rampart-audit --bench recorder` (needs root, BTF and cgroup v2).
#![allow(
    clippy::unwrap_used,
    reason = "benchmark program: a failure is a failed run"
)]

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rampart_kernel::{SyscallRecorder, WatchScope};

const GETPPID: u64 = 5_000_000;
const OPENS: u64 = 300_000;
const RUNS: usize = 5;

fn getppid_storm() -> Duration {
    let t = Instant::now();
    for _ in 0..GETPPID {
        // SAFETY: getppid has no preconditions.
        unsafe { libc::getppid() };
    }
    t.elapsed()
}

fn open_storm(path: &std::ffi::CStr) -> Duration {
    let t = Instant::now();
    for _ in 0..OPENS {
        // SAFETY: a valid path; the descriptor is closed right away.
        unsafe {
            let fd = libc::open(path.as_ptr(), libc::O_RDONLY);
            assert!(fd >= 0);
            libc::close(fd);
        }
    }
    t.elapsed()
}

fn best(f: impl Fn() -> Duration) -> Duration {
    (0..RUNS).map(|_| f()).min().unwrap()
}

fn own_cgroup(unified: &Path) -> PathBuf {
    let text = fs::read_to_string("/proc/self/cgroup").unwrap();
    let rel = text.lines().find_map(|l| l.strip_prefix("0::")).unwrap();
    unified.join(rel.trim_start_matches('/'))
}

fn main() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("recorder benchmark needs root");
        return;
    }
    let Some(unified) = rampart_kernel::cgroup_layout().unified else {
        eprintln!("recorder benchmark needs a cgroup v2 hierarchy");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("f");
    fs::write(&file, "x").unwrap();
    let cfile = std::ffi::CString::new(file.to_str().unwrap()).unwrap();
    let home = own_cgroup(&unified);
    let bench_cg = unified.join(format!("rampart-recorder-bench-{}", std::process::id()));
    let other_cg = unified.join(format!("rampart-recorder-other-{}", std::process::id()));
    fs::create_dir_all(&bench_cg).unwrap();
    fs::create_dir_all(&other_cg).unwrap();
    // Run in a cgroup of our own so "recorded" watches exactly this process.
    fs::write(
        bench_cg.join("cgroup.procs"),
        std::process::id().to_string(),
    )
    .unwrap();

    let mut rows = Vec::new();
    for (name, storm) in [
        (
            "getppid x5M",
            Box::new(getppid_storm) as Box<dyn Fn() -> Duration>,
        ),
        ("open+close x300k", Box::new(|| open_storm(&cfile))),
    ] {
        let base = best(&storm);
        let mut rec = SyscallRecorder::start().unwrap();
        rec.watch(&other_cg, WatchScope::Cgroup).unwrap();
        let others = best(&storm);
        let me = rec.watch(&bench_cg, WatchScope::Cgroup).unwrap();
        let recorded = best(&storm);
        let counts = rec.syscalls().unwrap();
        let seen: u64 = counts
            .iter()
            .filter(|c| c.cgroup == me)
            .map(|c| c.count)
            .sum();
        let lost = rec.lost().unwrap();
        drop(rec);
        rows.push((name, base, others, recorded, seen, lost));
    }
    fs::write(home.join("cgroup.procs"), std::process::id().to_string()).unwrap();
    let _ = fs::remove_dir(&bench_cg);
    let _ = fs::remove_dir(&other_cg);

    println!(
        "syscall recorder overhead (best of {RUNS} runs; ratios to the baseline of the same run)"
    );
    println!(
        "{:<18} {:>10} {:>18} {:>18} {:>14} {:>6}",
        "storm", "baseline", "others (ratio)", "recorded (ratio)", "counted", "lost"
    );
    for (name, base, others, recorded, seen, lost) in rows {
        println!(
            "{:<18} {:>8.1}ms {:>9.1}ms {:>6.3}x {:>9.1}ms {:>6.3}x {:>14} {:>6}",
            name,
            base.as_secs_f64() * 1e3,
            others.as_secs_f64() * 1e3,
            others.as_secs_f64() / base.as_secs_f64(),
            recorded.as_secs_f64() * 1e3,
            recorded.as_secs_f64() / base.as_secs_f64(),
            seen,
            lost.0 + lost.1
        );
    }
}
