//! The response commands as the user asks for them (`rampart respond`, `rampart policy`): where
//! enforcement keeps its state and what a forensic capture may take, how the options become
//! [`EnforceConfig`] and [`BundleLimits`], and the one-line answers the commands print.
//!
//! With the `clap` feature these types are also the commands' arguments (`#[command(flatten)]`
//! in the binary): the field doc comments are the help text, so an option, its default and its
//! unit are written down once, beside the code that uses them. Only the binary turns it on.

use std::path::PathBuf;
use std::sync::Arc;

use rampart_event::Device;
use rampart_kernel::enforce::NetPrefix;

use crate::actions::{self, ProcessRef};
use crate::enforcer::EnforceConfig;
use crate::facts::ContainerFacts;
use crate::forensics::BundleLimits;

/// Options every command that touches containers or enforcement shares.
#[derive(Debug, Clone)]
#[cfg_attr(feature = "clap", derive(clap::Args))]
pub struct EnforceArgs {
    /// Docker Engine socket.
    #[cfg_attr(
        feature = "clap",
        arg(long, global = true, default_value = rampart_container::DEFAULT_SOCKET, env = "RAMPART_DOCKER_SOCKET")
    )]
    pub docker_socket: PathBuf,
    /// bpffs directory of the pinned enforcement programs.
    #[cfg_attr(
        feature = "clap",
        arg(long, global = true, hide = true, default_value = rampart_kernel::enforce::DEFAULT_PIN_DIR, env = "RAMPART_PIN_DIR")
    )]
    pub pin_dir: PathBuf,
    /// Enforcement state (policy applied, isolations).
    #[cfg_attr(
        feature = "clap",
        arg(long, global = true, hide = true, default_value = crate::DEFAULT_STATE_DIR, env = "RAMPART_STATE_DIR")
    )]
    pub state_dir: PathBuf,
}

impl EnforceArgs {
    /// Enforcement at these directories, its events stamped with this host's name.
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
}

/// The container a response acts on.
#[derive(Debug, Clone)]
#[cfg_attr(feature = "clap", derive(clap::Args))]
pub struct ContainerArg {
    /// Container name, id or id prefix.
    pub container: String,
}

/// `rampart respond kill`.
#[derive(Debug, Clone)]
#[cfg_attr(feature = "clap", derive(clap::Args))]
pub struct KillArgs {
    /// Container name, id or id prefix.
    pub container: String,
    /// Kill only this process (host pid); it must belong to the container.
    #[cfg_attr(feature = "clap", arg(long))]
    pub pid: Option<u32>,
    /// With --pid: the process and all its descendants.
    #[cfg_attr(feature = "clap", arg(long, requires = "pid"))]
    pub tree: bool,
}

/// `rampart respond isolate`.
#[derive(Debug, Clone)]
#[cfg_attr(feature = "clap", derive(clap::Args))]
pub struct IsolateArgs {
    /// Container name, id or id prefix.
    pub container: String,
    /// An address or CIDR the container may still reach and be reached from (repeatable),
    /// e.g. the Rampart server.
    #[cfg_attr(feature = "clap", arg(long = "allow", value_name = "CIDR"))]
    pub allow: Vec<String>,
}

/// `rampart respond release`.
#[derive(Debug, Clone)]
#[cfg_attr(feature = "clap", derive(clap::Args))]
pub struct ReleaseArgs {
    /// Container name, id or id prefix.
    pub container: String,
    /// Also remove the applied policy from this container (until the next `policy apply`, or
    /// its next start under `policy apply --watch`).
    #[cfg_attr(feature = "clap", arg(long))]
    pub policy: bool,
}

/// `rampart respond stop`.
#[derive(Debug, Clone)]
#[cfg_attr(feature = "clap", derive(clap::Args))]
pub struct StopArgs {
    /// Container name, id or id prefix.
    pub container: String,
    /// Seconds between SIGTERM and SIGKILL.
    #[cfg_attr(feature = "clap", arg(long, short, default_value_t = 10))]
    pub time: u64,
}

/// `rampart respond forensics`: what a capture may take, in the units people give (MiB).
#[derive(Debug, Clone)]
#[cfg_attr(feature = "clap", derive(clap::Args))]
pub struct CaptureArgs {
    /// Container name, id or id prefix.
    pub container: String,
    /// Where to write the bundle (`.tar.zst`).
    #[cfg_attr(feature = "clap", arg(short, long))]
    pub output: PathBuf,
    /// Recorded events (JSON lines, e.g. `rampart agent --record` or its jsonl output): the
    /// container's last ones go into the bundle.
    #[cfg_attr(feature = "clap", arg(long, value_name = "FILE"))]
    pub events: Option<PathBuf>,
    /// The agent's Ed25519 signing key (created when missing).
    #[cfg_attr(feature = "clap", arg(long, default_value = crate::forensics::key::DEFAULT_KEY_PATH))]
    pub key: PathBuf,
    /// Largest file of the container's writable layer stored, in MiB (larger ones are cut).
    #[cfg_attr(feature = "clap", arg(long, default_value_t = 16))]
    pub max_file_mib: u64,
    /// Most bytes of the writable layer stored, in MiB.
    #[cfg_attr(feature = "clap", arg(long, default_value_t = 256))]
    pub max_total_mib: u64,
    /// Refuse to write when the output filesystem would keep less than this free, in MiB.
    #[cfg_attr(feature = "clap", arg(long, default_value_t = 1024))]
    pub min_free_mib: u64,
    /// Events and alerts kept.
    #[cfg_attr(feature = "clap", arg(long, default_value_t = 1000))]
    pub max_events: usize,
    /// Also store the memory of this process of the container (host pid; repeatable). The
    /// container is frozen while it is read.
    #[cfg_attr(feature = "clap", arg(long = "memory-pid", value_name = "PID"))]
    pub memory_pids: Vec<u32>,
    /// Most bytes of process memory stored, in MiB.
    #[cfg_attr(feature = "clap", arg(long, default_value_t = 256))]
    pub max_memory_mib: u64,
}

impl CaptureArgs {
    /// The bundle's limits in bytes; the limits without an option keep their defaults.
    pub fn limits(&self) -> BundleLimits {
        BundleLimits {
            max_file_bytes: self.max_file_mib << 20,
            max_total_bytes: self.max_total_mib << 20,
            min_free_bytes: self.min_free_mib << 20,
            max_events: self.max_events,
            max_memory_bytes: self.max_memory_mib << 20,
            ..BundleLimits::default()
        }
    }

    /// The processes whose memory is captured, each pinned to its start time now, so a pid
    /// reused before the capture reaches it is left alone.
    pub fn memory_of(&self) -> Vec<ProcessRef> {
        self.memory_pids
            .iter()
            .map(|&pid| ProcessRef {
                pid,
                start_time_ns: actions::start_time_ns(pid),
            })
            .collect()
    }
}

/// `rampart respond freeze`'s answer.
pub fn froze_text(c: &ContainerFacts, how: actions::Freezer) -> String {
    format!(
        "froze {} ({how:?} freezer); `rampart respond thaw {}` undoes it",
        c.label(),
        c.name
    )
}

/// `rampart respond isolate`'s answer: what still passes.
pub fn isolated_text(c: &ContainerFacts, allow: &[NetPrefix]) -> String {
    let also = if allow.is_empty() {
        String::new()
    } else {
        let list: Vec<String> = allow.iter().map(|p| p.to_string()).collect();
        format!(" and {}", list.join(", "))
    };
    format!(
        "isolated {}: no traffic in or out except loopback{also}; `rampart respond release {}` lifts it",
        c.label(),
        c.name
    )
}

/// `rampart respond release`'s answer (`released`: something was lifted).
pub fn released_text(c: &ContainerFacts, released: bool, policy: bool) -> String {
    if released {
        format!("released {}", c.label())
    } else {
        format!(
            "{} was not isolated{}",
            c.label(),
            if policy { " and had no policy" } else { "" }
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::forensics::key::DEFAULT_KEY_PATH;

    fn web() -> ContainerFacts {
        ContainerFacts {
            id: "0123456789abcdef0123".into(),
            name: "web".into(),
            ..ContainerFacts::default()
        }
    }

    #[test]
    fn capture_limits_are_mib_and_keep_the_other_defaults() {
        let a = CaptureArgs {
            container: "web".into(),
            output: PathBuf::from("b.tar.zst"),
            events: None,
            key: PathBuf::from(DEFAULT_KEY_PATH),
            max_file_mib: 1,
            max_total_mib: 2,
            min_free_mib: 3,
            max_events: 4,
            memory_pids: vec![std::process::id()],
            max_memory_mib: 5,
        };
        let l = a.limits();
        let d = BundleLimits::default();
        assert_eq!(
            (
                l.max_file_bytes,
                l.max_total_bytes,
                l.min_free_bytes,
                l.max_memory_bytes
            ),
            (1 << 20, 2 << 20, 3 << 20, 5 << 20)
        );
        assert_eq!(l.max_events, 4);
        assert_eq!(l.max_files, d.max_files);
        assert_eq!(l.max_proc_text_bytes, d.max_proc_text_bytes);
        let m = a.memory_of();
        assert_eq!(m.len(), 1);
        assert_eq!(m[0].pid, std::process::id());
        assert!(
            m[0].start_time_ns.is_some(),
            "this process has a start time"
        );
    }

    #[test]
    fn enforce_config_takes_the_directories() {
        let a = EnforceArgs {
            docker_socket: PathBuf::from("/run/docker.sock"),
            pin_dir: PathBuf::from("/sys/fs/bpf/x"),
            state_dir: PathBuf::from("/tmp/state"),
        };
        let c = a.enforce_config();
        assert_eq!(c.pin_dir, PathBuf::from("/sys/fs/bpf/x"));
        assert_eq!(c.state_dir, PathBuf::from("/tmp/state"));
        assert_eq!(c.device.hostname, rampart_event::hostname());
    }

    #[test]
    fn answers_name_the_container_and_the_way_back() {
        let c = web();
        assert_eq!(
            isolated_text(&c, &[]),
            "isolated web (0123456789ab): no traffic in or out except loopback; `rampart respond release web` lifts it"
        );
        let allow = crate::parse_allow_list(&["10.0.0.0/8".into(), "192.0.2.1".into()])
            .expect("allow list");
        let t = isolated_text(&c, &allow);
        assert!(
            t.contains("except loopback and 10.0.0.0/8, 192.0.2.1"),
            "{t}"
        );
        assert_eq!(released_text(&c, true, true), "released web (0123456789ab)");
        assert_eq!(
            released_text(&c, false, true),
            "web (0123456789ab) was not isolated and had no policy"
        );
        assert_eq!(
            released_text(&c, false, false),
            "web (0123456789ab) was not isolated"
        );
        assert_eq!(
            froze_text(&c, actions::Freezer::V2),
            "froze web (0123456789ab) (V2 freezer); `rampart respond thaw web` undoes it"
        );
    }
}
