//! Helpers shared by the benchmarks of this crate (`sensor_storms`, `agent_footprint`): the
//! syscall storms of `bench/sensor/storm.c` run in a busybox container, and a process's CPU
//! time and memory from /proc.
#![allow(dead_code)] // reason: each benchmark uses a subset of these helpers

use std::path::{Path, PathBuf};
use std::process::Command;

/// One storm of `bench/sensor/storm.c`: `exec`, `connect` or `open`, `n` times.
pub struct Storm {
    pub name: &'static str,
    pub n: u64,
}

pub fn env_or<T: std::str::FromStr>(key: &str, default: T) -> T {
    std::env::var(key)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

pub fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

pub fn build_storm(dir: &Path) -> PathBuf {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../bench/sensor/storm.c");
    let out = dir.join("storm");
    let st = Command::new("gcc")
        .args(["-O2", "-static", "-o"])
        .arg(&out)
        .arg(&src)
        .status()
        .expect("gcc");
    assert!(st.success(), "building {}", src.display());
    out
}

/// A storm's wall time and CPU time (s).
#[derive(Clone, Copy)]
pub struct Times {
    pub wall: f64,
    pub cpu: f64,
}

/// Runs one storm in a fresh container; returns its times and the container id.
pub fn run_storm(image: &str, storm: &Path, s: &Storm) -> (Times, String) {
    let cidfile = storm.with_file_name(format!("cid-{}", testkit::unique("storm")));
    let out = Command::new("docker")
        .args(["run", "--rm", "--cidfile"])
        .arg(&cidfile)
        .arg("-v")
        .arg(format!("{}:/storm:ro", storm.display()))
        .args([image, "/storm", s.name, &s.n.to_string()])
        .output()
        .expect("docker run");
    assert!(
        out.status.success(),
        "storm {}: {}",
        s.name,
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let mut nums = text
        .split_whitespace()
        .map(|v| v.parse::<f64>().expect("storm prints nanoseconds"));
    let wall = nums.next().expect("wall time") / 1e9;
    let cpu = nums.next().expect("cpu time") / 1e9;
    let cid = std::fs::read_to_string(&cidfile).unwrap_or_default();
    let _ = std::fs::remove_file(&cidfile);
    (Times { wall, cpu }, cid.trim().to_string())
}

/// User + system CPU time of process `pid` (s).
pub fn cpu_secs(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit(')').next().unwrap_or_default();
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks: f64 = f.get(11).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0)
        + f.get(12).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    ticks / 100.0
}

/// A `kB` field of /proc/PID/status (`VmRSS:`, `VmHWM:`, `RssAnon:`).
pub fn status_kib(pid: u32, key: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}
