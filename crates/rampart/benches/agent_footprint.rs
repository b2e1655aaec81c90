//! Memory and CPU of the agent as a new user runs it: `rampart agent` and `rampart up` with the
//! default configuration (only the stats file, the state directory and the server's port moved
//! to a temporary directory, so that runs do not meet other agents), stdout to /dev/null.
//!
//! For each mode: start it, wait until it is ready (the stats file appears), stay idle for
//! `RAMPART_BENCH_IDLE` seconds (default 20) and read RSS (VmRSS, and its anonymous and file
//! parts), peak RSS (VmHWM) and CPU (utime + stime from /proc/PID/stat); then run the storms of
//! `sensor_storms` (exec, connect, open in a busybox container; `common/mod.rs`), read peak RSS
//! and CPU again, let it settle 10 s and read RSS. The storms' own CPU time is the baseline the
//! agent's CPU is given against; RSS is given against the budgets of issue 20 (64 MiB steady
//! for the agent, 128 MiB peak for `rampart up`).
//!
//! `sudo cargo bench -p rampart --bench agent_footprint` (root, BPF, dockerd).
//! Environment: `RAMPART_BENCH_MODES` (default `agent,up`), `RAMPART_BENCH_IDLE` (seconds,
//! default 20), `RAMPART_BENCH_SCALE` (default 1.0: 5,000 execs, 20,000 connects, 300,000
//! opens).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

mod common;
use common::{build_storm, cpu_secs, env_or, run_storm, status_kib, Storm};

const AGENT_STEADY_BUDGET_KIB: u64 = 64 << 10;
const UP_PEAK_BUDGET_KIB: u64 = 128 << 10;

fn main() {
    // SAFETY: geteuid(2) has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("agent_footprint: SKIPPED: needs root (BPF) and dockerd; run it with sudo");
        return;
    }
    if !Command::new("docker")
        .arg("info")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
    {
        eprintln!("agent_footprint: SKIPPED: dockerd is not running (the busy phase needs it)");
        return;
    }
    let modes: String = env_or("RAMPART_BENCH_MODES", "agent,up".to_string());
    let idle_secs: u64 = env_or("RAMPART_BENCH_IDLE", 20);
    let scale: f64 = env_or("RAMPART_BENCH_SCALE", 1.0);
    let work = tempfile::tempdir().expect("tempdir");
    let storm = build_storm(work.path());
    let image = testkit::busybox_image();
    let storms = [
        Storm {
            name: "exec",
            n: (5_000.0 * scale) as u64,
        },
        Storm {
            name: "connect",
            n: (20_000.0 * scale) as u64,
        },
        Storm {
            name: "open",
            n: (300_000.0 * scale) as u64,
        },
    ];
    println!(
        "idle {idle_secs}s, then storms {:?}",
        storms.iter().map(|s| (s.name, s.n)).collect::<Vec<_>>()
    );
    println!(
        "{:<6} {:<5} {:>9} {:>9} {:>9} {:>9} {:>10} {:>10} {:>9} {:>10}",
        "mode",
        "phase",
        "RSS MiB",
        "anon",
        "file",
        "peak MiB",
        "CPU s",
        "cpu/storm",
        "events",
        "drops"
    );
    for mode in modes.split(',').map(str::trim).filter(|m| !m.is_empty()) {
        let run = Running::start(mode, work.path());
        let pid = run.child.id();
        let c0 = cpu_secs(pid);
        std::thread::sleep(Duration::from_secs(idle_secs));
        let idle = Sample::take(pid);
        run.print(mode, "idle", &idle, cpu_secs(pid) - c0, None);

        let c1 = cpu_secs(pid);
        let mut storm_cpu = 0.0;
        for s in &storms {
            storm_cpu += run_storm(&image, &storm, s).0.cpu;
        }
        let busy_cpu = cpu_secs(pid) - c1;
        std::thread::sleep(Duration::from_secs(10));
        let busy = Sample::take(pid);
        run.print(mode, "busy", &busy, busy_cpu, Some(storm_cpu));
        let budget = match mode {
            "up" => format!(
                "peak {:.2}x of the 128 MiB budget",
                busy.peak_kib as f64 / UP_PEAK_BUDGET_KIB as f64
            ),
            _ => format!(
                "steady {:.2}x (idle) and {:.2}x (after load) of the 64 MiB budget",
                idle.rss_kib as f64 / AGENT_STEADY_BUDGET_KIB as f64,
                busy.rss_kib as f64 / AGENT_STEADY_BUDGET_KIB as f64
            ),
        };
        println!("{mode:<6} {budget}");
        run.stop();
    }
}

/// Memory of a process, KiB.
struct Sample {
    rss_kib: u64,
    anon_kib: u64,
    file_kib: u64,
    peak_kib: u64,
}

impl Sample {
    fn take(pid: u32) -> Sample {
        Sample {
            rss_kib: status_kib(pid, "VmRSS:"),
            anon_kib: status_kib(pid, "RssAnon:"),
            file_kib: status_kib(pid, "RssFile:") + status_kib(pid, "RssShmem:"),
            peak_kib: status_kib(pid, "VmHWM:"),
        }
    }
}

/// `rampart agent` or `rampart up`, started with the default configuration.
struct Running {
    child: Child,
    stats: PathBuf,
    log: PathBuf,
}

impl Running {
    fn start(mode: &str, dir: &Path) -> Running {
        let tag = testkit::unique(mode);
        let stats = dir.join(format!("{tag}-stats.json"));
        let cfg = dir.join(format!("{tag}-agent.yaml"));
        std::fs::write(&cfg, format!("stats_file: {}\n", stats.display())).expect("agent.yaml");
        let log = dir.join(format!("{tag}.log"));
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_rampart"));
        match mode {
            "agent" => {
                cmd.args(["agent", "--config"]).arg(&cfg);
            }
            "up" => {
                let state = dir.join(format!("{tag}-state"));
                let server = dir.join(format!("{tag}-server.yaml"));
                std::fs::write(
                    &server,
                    format!(
                        "listen: 127.0.0.1:0\ndata_dir: {}\n",
                        state.join("server").display()
                    ),
                )
                .expect("server.yaml");
                cmd.args(["up", "--config"])
                    .arg(&cfg)
                    .arg("--server-config")
                    .arg(&server)
                    .arg("--state-dir")
                    .arg(&state);
            }
            other => panic!("RAMPART_BENCH_MODES: unknown mode {other:?} (agent, up)"),
        }
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log"))
            .spawn()
            .expect("start rampart");
        let mut run = Running { child, stats, log };
        let deadline = Instant::now() + Duration::from_secs(120);
        while !run.stats.exists() {
            if let Ok(Some(st)) = run.child.try_wait() {
                panic!(
                    "rampart {mode} exited ({st}):\n{}",
                    std::fs::read_to_string(&run.log).unwrap_or_default()
                );
            }
            assert!(
                Instant::now() < deadline,
                "rampart {mode} not ready in 120 s"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        run
    }

    /// Kernel events and drops (kernel and user space) since start, from the stats file.
    fn counters(&self) -> (u64, u64) {
        let v: serde_json::Value = std::fs::read_to_string(&self.stats)
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok())
            .unwrap_or_default();
        let n = |k: &str| v[k].as_u64().unwrap_or(0);
        (n("kernel_events"), n("kernel_drops") + n("userspace_drops"))
    }

    fn print(&self, mode: &str, phase: &str, s: &Sample, cpu: f64, storm_cpu: Option<f64>) {
        let (events, drops) = self.counters();
        let mib = |k: u64| k as f64 / 1024.0;
        println!(
            "{:<6} {:<5} {:>9.1} {:>9.1} {:>9.1} {:>9.1} {:>10.2} {:>10} {:>9} {:>10}",
            mode,
            phase,
            mib(s.rss_kib),
            mib(s.anon_kib),
            mib(s.file_kib),
            mib(s.peak_kib),
            cpu,
            storm_cpu.map_or("-".into(), |c| format!("{:.2}x", cpu / c)),
            events,
            drops
        );
    }

    fn stop(mut self) {
        // SAFETY: kill(2) on our own child, not yet reaped.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let _ = self.child.wait();
    }
}
