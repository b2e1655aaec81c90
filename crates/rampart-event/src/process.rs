//! Process identity and ancestry.

use serde::{Deserialize, Serialize};

/// A process as the sensor knows it at the time of an event: what its last exec set up, its
/// credentials, and its ancestors.
///
/// Events share one `Arc<Process>` per (pid, exec); credentials that change later (setuid) are
/// reported by the event that changed them, and the process table then holds a new `Process`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Process {
    /// Thread-group id (the pid as user space sees it, in the host pid namespace).
    pub pid: u32,
    /// Thread id of the thread that caused the event (equal to `pid` for the main thread).
    #[serde(default)]
    pub tid: u32,
    /// Parent's pid (host pid namespace).
    #[serde(default)]
    pub ppid: u32,
    /// Pid inside the process's own pid namespace (1 for a container's init), when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vpid: Option<u32>,
    /// `comm`: the kernel's 15-byte task name.
    pub name: String,
    /// Path of the executable, as the exec saw it (container's view of the filesystem).
    #[serde(default)]
    pub exe: String,
    /// argv, including argv[0].
    #[serde(default)]
    pub args: Vec<String>,
    /// argv was longer than the sensor's bound and was cut.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub args_truncated: bool,
    /// Working directory at exec time.
    #[serde(default)]
    pub cwd: String,
    pub uid: u32,
    #[serde(default)]
    pub euid: u32,
    #[serde(default)]
    pub gid: u32,
    #[serde(default)]
    pub egid: u32,
    /// Audit login uid; `u32::MAX` (unset) for processes not descended from a login.
    #[serde(default = "unset_loginuid")]
    pub loginuid: u32,
    /// User name for `uid`, from the passwd file of the process's own root filesystem.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// Controlling terminal: the tty's device number, 0 when there is none.
    #[serde(default)]
    pub tty: u32,
    /// Effective capability set (bit n = capability n).
    #[serde(default)]
    pub cap_effective: u64,
    /// Permitted capability set.
    #[serde(default)]
    pub cap_permitted: u64,
    /// Start time, nanoseconds since the Unix epoch.
    #[serde(default)]
    pub start_time_ns: u64,
    /// The executable lives in the container's writable upper layer: it was written or changed
    /// after the container started (drift), not shipped in the image.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub exe_upper_layer: bool,
    /// The executable is a memfd or a deleted file (fileless execution).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub exe_fileless: bool,
    /// SHA-256 of the executable (hex), for `process.exec` when the agent could read it
    /// (within its size bound): the same program under another name has the same hash.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exe_sha256: Option<String>,
    /// What stdin and stdout were at exec time, in Falco's `fd.type` words (`file`,
    /// `directory`, `ipv4`, `ipv6`, `unix`, `pipe`, `tty`, `null`, ...). A shell whose stdin is a
    /// socket is a reverse shell.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stdin_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stdout_type: Option<String>,
    /// Parent first, then grandparent, ... up to the agent's bound or pid 1. The parent carries
    /// its argv; older ancestors only pid, name and exe.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ancestors: Vec<Ancestor>,
}

fn unset_loginuid() -> u32 {
    u32::MAX
}

impl Process {
    /// `name` followed by the arguments after argv[0], space separated: Falco's `proc.cmdline`.
    pub fn cmdline(&self) -> String {
        cmdline(&self.name, &self.args)
    }

    /// The parent, when known.
    pub fn parent(&self) -> Option<&Ancestor> {
        self.ancestors.first()
    }

    /// The process had a controlling terminal.
    pub fn has_tty(&self) -> bool {
        self.tty != 0
    }
}

/// What an event carries of an ancestor process.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ancestor {
    pub pid: u32,
    pub name: String,
    #[serde(default)]
    pub exe: String,
    #[serde(default)]
    pub args: Vec<String>,
}

impl Ancestor {
    /// `name` followed by the arguments after argv[0]: Falco's `proc.pcmdline` for the parent.
    pub fn cmdline(&self) -> String {
        cmdline(&self.name, &self.args)
    }
}

fn cmdline(name: &str, args: &[String]) -> String {
    let mut s = String::with_capacity(name.len() + args.iter().map(|a| a.len() + 1).sum::<usize>());
    s.push_str(name);
    for a in args.iter().skip(1) {
        s.push(' ');
        s.push_str(a);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cmdline_is_name_then_args_after_argv0() {
        let p = Process {
            name: "bash".into(),
            args: vec!["/bin/bash".into(), "-c".into(), "id".into()],
            ..Process::default()
        };
        assert_eq!(p.cmdline(), "bash -c id");
    }

    #[test]
    fn missing_loginuid_deserialises_as_unset() {
        let p: Process =
            serde_json::from_str(r#"{"pid":1,"name":"x","uid":0}"#).unwrap_or_default();
        assert_eq!(p.loginuid, u32::MAX);
    }
}
