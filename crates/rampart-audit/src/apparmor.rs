//! AppArmor profiles learned from what a container did, and checked against it.
//!
//! [`Observed`] collects, from the sensor's events of one container, the executables it ran,
//! the files it wrote, renamed, removed or changed the mode of, the sensitive files it read,
//! the socket families and types it used, and (from the syscall recorder) the capabilities it
//! was granted. [`Observed::profile`] turns them into a profile `apparmor_parser` loads:
//!
//! * executables: each one `ix` (inherit this profile), nothing else may be executed;
//! * writes: the paths written, generalised where a program makes names up (per-request
//!   temporary files, pid files, rotated logs, `/proc/<pid>/...`);
//! * reads and mmap: allowed everywhere except the sensitive set, because the sensor reports
//!   only reads of sensitive files (a read allow-list could not be learned from it);
//! * network: the families and socket types seen; capabilities: those the kernel granted;
//! * deny rules for the sensitive set (shadow, SSH keys, the Docker and containerd sockets,
//!   `/proc/sys`, kernel modules, `mount`), from Docker's own `docker-default` and Rampart's
//!   sensitive paths, except what the container was seen to need.
//!
//! [`ProfileRules::parse`] reads back the rules of a profile in the syntax this module writes
//! (file rules with globs and `@{...}` variables, `deny`, `capability`, `network`); it is not a
//! parser of the whole AppArmor language (hats, child profiles, conditionals and other rule
//! kinds are counted as not judged), which is why it is written here rather than taken from a
//! crate: there is no maintained Rust parser of AppArmor policy. [`ProfileRules::check`] says
//! what a recording of the container did that the profile would refuse.

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rampart_container::DockerClient;
use rampart_event::{Device, Event, EventKind, Process, SensorEvent};
use rampart_kernel::{Sensor, SensorConfig, SyscallRecorder, WatchScope};
use regex::Regex;

use crate::cgroupfs::Mounts;
use crate::error::AuditError;

/// What a recording of one container gave.
#[derive(Debug, Clone, Default)]
pub struct Recorded {
    pub container_id: String,
    pub container_name: String,
    pub image: String,
    /// The container's events that showed an access for the first time, in the order the
    /// sensor delivered them: what learning and the check use, and bounded by the distinct
    /// accesses, not by how busy the container was.
    pub events: Vec<Event>,
    /// Every event of the container seen during the recording.
    pub seen: u64,
    /// Capabilities the kernel granted it; `None` where capability checks cannot be recorded.
    pub capabilities: Option<BTreeSet<String>>,
    pub warnings: Vec<String>,
}

/// Records what container `name` (running) does for `duration`: the sensor's events of its
/// cgroup, and the capabilities the kernel granted it (the syscall recorder).
pub async fn record(
    docker: &DockerClient,
    name: &str,
    duration: Duration,
) -> Result<Recorded, AuditError> {
    let inspect = docker.inspect_container(name).await?;
    let bad = |reason: &str| AuditError::Container {
        container: name.to_string(),
        reason: reason.to_string(),
    };
    let pid = inspect
        .state
        .as_ref()
        .filter(|s| s.running == Some(true))
        .and_then(|s| s.pid)
        .and_then(|p| u32::try_from(p).ok())
        .filter(|p| *p > 0)
        .ok_or_else(|| bad("it is not running: start it, then record it"))?;
    let proc_root = Path::new("/proc");
    let mounts = Mounts::current();
    let v2_dir = mounts.unified_dir_of(proc_root, pid);
    let v1_dir = mounts.dir_of(proc_root, pid, "pids");
    let ino = |d: &Option<std::path::PathBuf>| {
        d.as_ref()
            .and_then(|d| std::fs::metadata(d).ok())
            .map(|m| m.ino())
    };
    let (v2, v1) = (ino(&v2_dir), ino(&v1_dir));
    if v2.is_none() && v1.is_none() {
        return Err(bad(
            "its cgroup directory was not found under /proc/PID/cgroup",
        ));
    }
    let mut out = Recorded {
        container_id: inspect.id.clone().unwrap_or_default(),
        container_name: inspect
            .name
            .clone()
            .unwrap_or_default()
            .trim_start_matches('/')
            .to_string(),
        image: inspect
            .config
            .as_ref()
            .and_then(|c| c.image.clone())
            .unwrap_or_default(),
        ..Recorded::default()
    };
    // Capabilities through the syscall recorder, on the same cgroup.
    let mut recorder = match SyscallRecorder::start() {
        Ok(r) => Some(r),
        Err(e) => {
            out.warnings
                .push(format!("capabilities not recorded (syscall recorder: {e})"));
            None
        }
    };
    let watched = match (&mut recorder, v2_dir.as_ref().or(v1_dir.as_ref())) {
        (Some(r), Some(d)) => r.watch(d, WatchScope::Cgroup).ok(),
        _ => None,
    };
    let (tx, rx) = std::sync::mpsc::sync_channel::<Box<SensorEvent>>(1 << 16);
    let cfg = SensorConfig {
        containers_only: true,
        dns: false,
        ..SensorConfig::default()
    };
    let sensor = Sensor::start(&cfg, Arc::new(Device::default()), 1, tx)?;
    let (events, seen) = tokio::task::spawn_blocking(move || {
        let end = Instant::now() + duration;
        let mut events = Vec::new();
        let mut accessed: BTreeSet<Access> = BTreeSet::new();
        let mut seen = 0u64;
        while let Some(left) = end.checked_duration_since(Instant::now()) {
            let Ok(se) = rx.recv_timeout(left) else {
                continue;
            };
            let o = se.origin;
            let mine = (o.cgroup_id != 0 && Some(o.cgroup_id) == v2)
                || (o.cgroup_v1_id != 0 && Some(o.cgroup_v1_id) == v1);
            if !mine {
                continue;
            }
            seen += 1;
            let mut ev = se.event;
            // Every access of the event is remembered (no short circuit).
            let mut new_access = false;
            for a in accesses(&ev) {
                new_access |= accessed.insert(a);
            }
            if !new_access {
                continue;
            }
            if ev.process.is_none() {
                ev.process = Some(Arc::new(Process {
                    pid: o.pid,
                    name: o.comm().into_owned(),
                    ..Process::default()
                }));
            }
            events.push(ev);
        }
        (events, seen)
    })
    .await
    .map_err(|e| bad(&format!("the recording thread failed: {e}")))?;
    let drops = sensor.counters().drops_total();
    sensor.stop();
    if drops > 0 {
        out.warnings.push(format!(
            "the sensor dropped {drops} events during the recording (the host was busy): the profile may miss accesses; record again"
        ));
    }
    out.events = events;
    out.seen = seen;
    if let (Some(r), Some(cg)) = (&recorder, watched) {
        match (r.capability_recording(), r.capabilities()) {
            (Ok(()), Ok(counts)) => {
                out.capabilities = Some(
                    counts
                        .iter()
                        .filter(|c| c.cgroup == cg && c.granted)
                        .map(|c| crate::caps::name(c.cap).to_ascii_lowercase())
                        .collect(),
                );
            }
            (Err(why), _) => out
                .warnings
                .push(format!("capabilities not recorded: {why}")),
            (_, Err(e)) => out.warnings.push(format!("capabilities not recorded: {e}")),
        }
    }
    if out.seen == 0 {
        out.warnings.push(
            "no event of the container was seen: did it do anything during the recording?".into(),
        );
    }
    Ok(out)
}

/// Paths a container must not read or write, whatever it was seen to do, in AppArmor glob
/// syntax (with `@{PROC}` for /proc), and the accesses refused.
pub const SENSITIVE_DENY: &[(&str, &str)] = &[
    ("/etc/shadow", "rwklx"),
    ("/etc/gshadow", "rwklx"),
    ("/etc/sudoers", "wklx"),
    ("/etc/sudoers.d/**", "wklx"),
    ("/root/.ssh/**", "rwklx"),
    ("/home/*/.ssh/**", "rwklx"),
    ("/etc/ssh/*_key", "rwklx"),
    ("/{,var/}run/docker.sock", "rwklx"),
    ("/{,var/}run/containerd/containerd.sock", "rwklx"),
    ("@{PROC}/sys/**", "wklx"),
    ("@{PROC}/sysrq-trigger", "rwklx"),
    ("@{PROC}/kcore", "rwklx"),
    ("@{PROC}/kmem", "rwklx"),
    ("@{PROC}/mem", "rwklx"),
    ("@{PROC}/*/mem", "rwklx"),
    ("/sys/kernel/security/**", "rwklx"),
    ("/sys/module/**", "wklx"),
    ("/lib/modules/**", "wklx"),
    ("/usr/lib/modules/**", "wklx"),
    ("/sys/firmware/**", "rwklx"),
];

/// Flags of open(2) that make an open a write.
const O_WRONLY: u32 = 0o1;
const O_RDWR: u32 = 0o2;
const O_CREAT: u32 = 0o100;
const O_TRUNC: u32 = 0o1000;
const O_APPEND: u32 = 0o2000;

/// Directories where a program's file names are its own invention: one glob covers them.
const SCRATCH_DIRS: &[&str] = &["/tmp", "/var/tmp", "/dev/shm", "/run/lock"];

/// What one container was seen to do.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Observed {
    pub execs: BTreeSet<String>,
    pub writes: BTreeSet<String>,
    /// Sensitive files read (the only reads the sensor reports).
    pub reads: BTreeSet<String>,
    /// (family, type) of sockets: `("inet", "stream")`.
    pub network: BTreeSet<(String, String)>,
    /// Capabilities granted, lower case without `cap_` (`net_bind_service`).
    pub capabilities: BTreeSet<String>,
    /// Events taken into account.
    pub events: u64,
}

/// One access an event shows.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Access {
    Exec(String),
    Write(String),
    Read(String),
    Network(String, String),
}

impl std::fmt::Display for Access {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Access::Exec(p) => write!(f, "exec {p}"),
            Access::Write(p) => write!(f, "write {p}"),
            Access::Read(p) => write!(f, "read {p}"),
            Access::Network(fam, ty) => write!(f, "network {fam} {ty}"),
        }
    }
}

/// The accesses `ev` shows (none for event kinds a profile does not mediate).
pub fn accesses(ev: &Event) -> Vec<Access> {
    let mut out = Vec::new();
    match ev.kind {
        EventKind::ProcessExec => {
            if let Some(exe) = ev.process.as_ref().map(|p| p.exe.as_str()) {
                if exe.starts_with('/') {
                    out.push(Access::Exec(exe.to_string()));
                }
            }
        }
        EventKind::FileOpen => {
            if let Some(f) = &ev.file {
                let flags = f.flags.unwrap_or(0);
                let write = flags & (O_WRONLY | O_RDWR | O_CREAT | O_TRUNC | O_APPEND) != 0;
                if write {
                    out.push(Access::Write(f.path.clone()));
                } else {
                    out.push(Access::Read(f.path.clone()));
                }
            }
        }
        EventKind::FileUnlink | EventKind::FileChmod | EventKind::FileChown => {
            if let Some(f) = &ev.file {
                out.push(Access::Write(f.path.clone()));
            }
        }
        EventKind::FileRename => {
            if let Some(f) = &ev.file {
                out.push(Access::Write(f.path.clone()));
                if let Some(n) = &f.new_path {
                    out.push(Access::Write(n.clone()));
                }
            }
        }
        EventKind::NetConnect
        | EventKind::NetAccept
        | EventKind::NetBind
        | EventKind::NetListen => {
            if let Some(n) = &ev.network {
                out.push(Access::Network(n.family.clone(), socket_type(&n.protocol)));
            }
        }
        _ => {}
    }
    out.retain(|a| match a {
        Access::Exec(p) | Access::Write(p) | Access::Read(p) => p.starts_with('/'),
        Access::Network(..) => true,
    });
    out
}

/// The AppArmor socket type of a protocol name.
fn socket_type(protocol: &str) -> String {
    match protocol {
        "tcp" => "stream",
        "udp" => "dgram",
        "raw" => "raw",
        "unix" => "stream",
        other => other,
    }
    .to_string()
}

impl Observed {
    /// Takes in one event of the container.
    pub fn observe(&mut self, ev: &Event) {
        self.events += 1;
        for a in accesses(ev) {
            match a {
                Access::Exec(p) => {
                    self.execs.insert(p);
                }
                Access::Write(p) => {
                    self.writes.insert(p);
                }
                Access::Read(p) => {
                    self.reads.insert(p);
                }
                Access::Network(f, t) => {
                    self.network.insert((f, t));
                }
            }
        }
    }

    /// The profile, named `name` (`complain` makes AppArmor log instead of refuse).
    pub fn profile(&self, name: &str, complain: bool, header: &str) -> String {
        let mut s = String::new();
        s.push_str("#include <tunables/global>\n\n");
        for l in header.lines() {
            s.push_str(&format!("# {l}\n"));
        }
        s.push_str("# Reads are allowed everywhere but the sensitive set below: the sensor reports only\n# reads of sensitive files, so a read allow-list cannot be learned from it.\n");
        let flags = if complain {
            "attach_disconnected,mediate_deleted,complain"
        } else {
            "attach_disconnected,mediate_deleted"
        };
        s.push_str(&format!("profile {name} flags=({flags}) {{\n"));
        s.push_str("  #include <abstractions/base>\n\n");
        s.push_str("  # Executables it ran (nothing else may be executed).\n");
        for e in &self.execs {
            s.push_str(&format!("  {} ix,\n", quote(&escape_glob(e))));
        }
        s.push_str("\n  # Everything may be read and mapped, but the sensitive set.\n  /** rm,\n");
        let writes = generalise_writes(&self.writes);
        if !writes.is_empty() {
            s.push_str("\n  # Files it wrote, renamed, removed or changed (generalised).\n");
            for w in &writes {
                s.push_str(&format!("  {} rwk,\n", quote(w)));
            }
        }
        s.push_str("\n  # Sockets it used.\n");
        for (fam, ty) in &self.network {
            if fam
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
            {
                s.push_str(&format!("  network {fam} {ty},\n"));
            }
        }
        if !self.capabilities.is_empty() {
            s.push_str("\n  # Capabilities the kernel granted it.\n");
            for c in &self.capabilities {
                s.push_str(&format!("  capability {c},\n"));
            }
        }
        s.push_str("\n  # The sensitive set (docker-default's and Rampart's), except what it was seen to need.\n");
        let needed: Vec<&String> = self.writes.iter().chain(&self.reads).collect();
        for (glob, perms) in SENSITIVE_DENY {
            let re = glob_regex(glob);
            let seen: Vec<&&String> = needed.iter().filter(|p| re.is_match(p)).collect();
            if seen.is_empty() {
                s.push_str(&format!("  deny {glob} {perms},\n"));
            } else {
                s.push_str(&format!(
                    "  # not denied, it used it: {glob} ({})\n",
                    seen.iter()
                        .map(|p| p.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
            }
        }
        s.push_str("  deny mount,\n  deny umount,\n  deny pivot_root,\n");
        if !self.capabilities.contains("sys_module") {
            s.push_str("  deny capability sys_module,\n");
        }
        s.push_str(&format!(
            "\n  signal (send,receive) peer={name},\n  ptrace (trace,read,tracedby,readby) peer={name},\n  signal (receive) peer=unconfined,\n}}\n"
        ));
        s
    }
}

/// AppArmor quotes paths with spaces or other special characters.
fn quote(p: &str) -> String {
    if p.chars()
        .any(|c| c.is_whitespace() || c == '"' || c == '#' || c == ',')
    {
        format!("\"{}\"", p.replace('\\', "\\\\").replace('"', "\\\""))
    } else {
        p.to_string()
    }
}

/// A literal path in glob syntax (glob characters escaped).
fn escape_glob(p: &str) -> String {
    let mut out = String::with_capacity(p.len());
    for c in p.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '{' | '}' | '@' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Writes generalised: scratch directories become `dir/**`, `/proc/<pid>/` becomes
/// `@{PROC}/@{pid}/`, made-up names (digits, random suffixes) become `*` in their directory,
/// rotated logs `name.log*`, and a directory with eight or more distinct names written `dir/*`.
pub fn generalise_writes(paths: &BTreeSet<String>) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut per_dir: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for p in paths {
        if let Some(d) = SCRATCH_DIRS
            .iter()
            .find(|d| p.starts_with(&format!("{d}/")))
        {
            out.insert(format!("{d}/**"));
            continue;
        }
        if let Some(rest) = p.strip_prefix("/proc/") {
            let (first, tail) = rest.split_once('/').unwrap_or((rest, ""));
            let first = if first.bytes().all(|b| b.is_ascii_digit()) {
                "@{pid}".to_string()
            } else {
                escape_glob(first)
            };
            let tail = if tail.is_empty() {
                String::new()
            } else {
                format!("/{}", escape_glob(tail))
            };
            out.insert(format!("@{{PROC}}/{first}{tail}"));
            continue;
        }
        let (dir, name) = p.rsplit_once('/').unwrap_or(("", p));
        per_dir
            .entry(dir.to_string())
            .or_default()
            .insert(name.to_string());
    }
    for (dir, names) in per_dir {
        let edir = escape_glob(&dir);
        if names.len() >= 8 {
            out.insert(format!("{edir}/*"));
            continue;
        }
        for n in names {
            out.insert(format!("{edir}/{}", generalise_name(&n)));
        }
    }
    out
}

/// One file name: made-up parts become globs.
fn generalise_name(n: &str) -> String {
    if let Some(stem) = n.strip_suffix(".pid") {
        if stem.bytes().any(|b| b.is_ascii_digit()) {
            return "*.pid".into();
        }
    }
    // Rotated logs: app.log.1, app.log.2.gz, app-2026-12-06.log
    if let Some(i) = n.find(".log") {
        let base = &n[..i];
        let base = base.trim_end_matches(|c: char| c.is_ascii_digit() || c == '-' || c == '_');
        if !base.is_empty() && n[i..].len() >= 4 {
            return format!("{}*.log*", escape_glob(base));
        }
    }
    let digits = longest_run(n, |c| c.is_ascii_digit());
    let randomish = n.len() >= 6
        && n.chars().any(|c| c.is_ascii_uppercase())
        && n.chars().any(|c| c.is_ascii_lowercase())
        && n.chars().any(|c| c.is_ascii_digit());
    if digits >= 4 || randomish {
        // Keep a recognisable extension.
        return match n.rsplit_once('.') {
            Some((_, ext))
                if !ext.is_empty()
                    && ext.len() <= 5
                    && ext.chars().all(|c| c.is_ascii_alphabetic()) =>
            {
                format!("*.{ext}")
            }
            _ => "*".into(),
        };
    }
    escape_glob(n)
}

fn longest_run(s: &str, f: impl Fn(char) -> bool) -> usize {
    let (mut best, mut cur) = (0, 0);
    for c in s.chars() {
        if f(c) {
            cur += 1;
            best = best.max(cur);
        } else {
            cur = 0;
        }
    }
    best
}

/// An AppArmor path glob as a regex matching whole paths: `**` any characters, `*` any but
/// `/`, `?` one but `/`, `{a,b}` alternatives, `[...]` classes, `@{PROC}` /proc, `@{pid}`
/// and `@{pids}` a number, `\x` a literal x.
pub fn glob_regex(glob: &str) -> Regex {
    let mut re = String::from("^");
    let mut chars = glob.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                if let Some(n) = chars.next() {
                    re.push_str(&regex::escape(&n.to_string()));
                }
            }
            '*' => {
                if chars.peek() == Some(&'*') {
                    chars.next();
                    re.push_str(".*");
                } else {
                    re.push_str("[^/]*");
                }
            }
            '?' => re.push_str("[^/]"),
            '{' => re.push('('),
            '}' => re.push(')'),
            ',' => re.push('|'),
            '[' => {
                re.push('[');
                if chars.peek() == Some(&'^') {
                    chars.next();
                    re.push('^');
                }
                for n in chars.by_ref() {
                    if n == ']' {
                        break;
                    }
                    if n == '\\' || n == '[' {
                        re.push('\\');
                    }
                    re.push(n);
                }
                re.push(']');
            }
            '@' if chars.peek() == Some(&'{') => {
                chars.next();
                let var: String = chars.by_ref().take_while(|c| *c != '}').collect();
                re.push_str(match var.as_str() {
                    "PROC" => "/proc/",
                    "pid" | "pids" | "tid" => "[0-9]+",
                    "HOME" | "HOMEDIRS" => "(/root|/home/[^/]+)/",
                    _ => "[^/]*",
                });
            }
            other => re.push_str(&regex::escape(&other.to_string())),
        }
    }
    re.push('$');
    // `@{PROC}/x` gives "/proc//x": AppArmor collapses double slashes, so does the pattern.
    let re = re.replace("/proc//", "/proc/");
    Regex::new(&re).unwrap_or_else(|_| {
        // A class or brace we could not translate: match nothing rather than everything.
        Regex::new("^\\x00$").unwrap_or_else(|_| unreachable!("a fixed valid pattern"))
    })
}

/// One file rule of a profile.
#[derive(Debug, Clone)]
pub struct FileRule {
    pub glob: String,
    pub perms: String,
    pub deny: bool,
    re: Regex,
}

/// The rules of a profile this module can judge.
#[derive(Debug, Clone, Default)]
pub struct ProfileRules {
    pub name: String,
    pub files: Vec<FileRule>,
    /// `network,` alone allows every family.
    pub network_all: bool,
    /// Families allowed with every type (`network inet,`), and (family, type) pairs.
    pub network_families: BTreeSet<String>,
    pub network: BTreeSet<(String, String)>,
    pub capabilities: BTreeSet<String>,
    pub complain: bool,
    /// Rules of other kinds, which the check does not judge.
    pub not_judged: Vec<String>,
}

/// What a recorded container did that a profile refuses.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Violation {
    pub access: Access,
    /// The deny rule that refuses it, or `None` when no rule allows it.
    pub denied_by: Option<String>,
    /// The process that did it (`name (pid N)`), when the event says.
    pub process: String,
}

impl ProfileRules {
    /// Reads the rules of the (first) profile in `text`; `source` names it in errors.
    pub fn parse(text: &str, source: &str) -> Result<ProfileRules, AuditError> {
        let mut r = ProfileRules::default();
        let mut in_profile = false;
        for (n, raw) in text.lines().enumerate() {
            let line = raw.trim();
            if line.is_empty() || (line.starts_with('#') && !line.starts_with("#include")) {
                continue;
            }
            if line.starts_with("#include") || line.starts_with("include") {
                continue;
            }
            if !in_profile {
                if let Some(rest) = line.strip_prefix("profile ") {
                    r.name = rest
                        .split_whitespace()
                        .next()
                        .unwrap_or_default()
                        .to_string();
                    r.complain = rest.contains("complain");
                    in_profile = true;
                } else if line.starts_with('/') && line.ends_with('{') {
                    r.name = line
                        .split_whitespace()
                        .next()
                        .unwrap_or_default()
                        .to_string();
                    r.complain = line.contains("complain");
                    in_profile = true;
                }
                continue;
            }
            if line == "}" {
                break;
            }
            let Some(rule) = line.strip_suffix(',') else {
                return Err(AuditError::Profile {
                    path: source.into(),
                    reason: format!("line {}: a rule must end with ',': {line:?}", n + 1),
                });
            };
            let (deny, rule) = match rule.strip_prefix("deny ") {
                Some(r) => (true, r.trim()),
                None => (false, rule.trim_start_matches("allow ").trim()),
            };
            let rule = rule.trim_start_matches("audit ").trim();
            if rule == "network" {
                if !deny {
                    r.network_all = true;
                }
            } else if let Some(rest) = rule.strip_prefix("network ") {
                let mut parts = rest.split_whitespace();
                let fam = parts.next().unwrap_or_default().to_string();
                match parts.next() {
                    _ if deny => {}
                    Some(ty) => {
                        r.network.insert((fam, ty.to_string()));
                    }
                    None => {
                        r.network_families.insert(fam);
                    }
                }
            } else if let Some(rest) = rule.strip_prefix("capability") {
                if !deny {
                    r.capabilities
                        .extend(rest.split_whitespace().map(str::to_string));
                }
            } else if rule.starts_with('/') || rule.starts_with("@{") || rule.starts_with('"') {
                let (glob, perms) = split_file_rule(rule).ok_or_else(|| AuditError::Profile {
                    path: source.into(),
                    reason: format!("line {}: a file rule is PATH PERMISSIONS: {line:?}", n + 1),
                })?;
                let re = glob_regex(&glob);
                r.files.push(FileRule {
                    glob,
                    perms,
                    deny,
                    re,
                });
            } else {
                r.not_judged.push(line.to_string());
            }
        }
        if !in_profile {
            return Err(AuditError::Profile {
                path: source.into(),
                reason: "no profile block (profile NAME ... { ... })".into(),
            });
        }
        Ok(r)
    }

    /// Whether `path` may be accessed with permission `perm` (`r`, `w` or `x`): the deny rule
    /// that refuses it, or no allow rule.
    fn file_verdict(&self, path: &str, perm: char) -> Result<(), Option<String>> {
        let has = |rule: &FileRule| match perm {
            'x' => rule.perms.contains('x'),
            'w' => rule.perms.contains('w') || rule.perms.contains('a'),
            _ => rule.perms.contains(perm),
        };
        if let Some(d) = self
            .files
            .iter()
            .find(|f| f.deny && has(f) && f.re.is_match(path))
        {
            return Err(Some(format!("deny {} {}", d.glob, d.perms)));
        }
        if self
            .files
            .iter()
            .any(|f| !f.deny && has(f) && f.re.is_match(path))
        {
            Ok(())
        } else {
            Err(None)
        }
    }

    /// Whether one access is allowed.
    pub fn allows(&self, a: &Access) -> Result<(), Option<String>> {
        match a {
            Access::Exec(p) => self.file_verdict(p, 'x'),
            Access::Write(p) => self.file_verdict(p, 'w'),
            Access::Read(p) => self.file_verdict(p, 'r'),
            Access::Network(fam, ty) => {
                let ok = self.network_all
                    || self.network_families.contains(fam)
                    || self.network.contains(&(fam.clone(), ty.clone()));
                if ok {
                    Ok(())
                } else {
                    Err(None)
                }
            }
        }
    }

    /// Every distinct access of `events` the profile refuses, in the order first seen, with
    /// the process that did it first.
    pub fn check<'a>(&self, events: impl IntoIterator<Item = &'a Event>) -> Vec<Violation> {
        let mut out = Vec::new();
        let mut seen = BTreeSet::new();
        for ev in events {
            for a in accesses(ev) {
                if seen.contains(&a) {
                    continue;
                }
                if let Err(denied_by) = self.allows(&a) {
                    let process = ev
                        .process
                        .as_ref()
                        .map(|p| format!("{} (pid {})", p.name, p.pid))
                        .unwrap_or_default();
                    seen.insert(a.clone());
                    out.push(Violation {
                        access: a,
                        denied_by,
                        process,
                    });
                }
            }
        }
        out
    }
}

/// `PATH PERMS` (the path possibly quoted), with exec modes (`ix`, `px`, ...) kept as perms.
fn split_file_rule(rule: &str) -> Option<(String, String)> {
    let (path, rest) = if let Some(q) = rule.strip_prefix('"') {
        let end = q.find('"')?;
        (q[..end].replace("\\\"", "\""), q[end + 1..].trim())
    } else {
        let (p, r) = rule.split_once(char::is_whitespace)?;
        (p.to_string(), r.trim())
    };
    let perms = rest.split("->").next()?.trim().to_string();
    (!perms.is_empty()).then_some((path, perms))
}

/// The container's events from a JSON-lines file (`rampart agent -o jsonl:FILE`): those whose
/// container is `container` (id, id prefix of 12 or more, or name) and that show an access not
/// seen before, with the count of all the container's events. The file is read line by line
/// (a day of events can be gigabytes) and memory grows with distinct accesses only. A line
/// that is not an event is an error naming it.
pub fn events_from_file(path: &Path, container: &str) -> Result<(Vec<Event>, u64), AuditError> {
    use std::io::BufRead;
    let file = std::fs::File::open(path).map_err(|e| AuditError::io(path, e))?;
    let mut out = Vec::new();
    let mut accessed = BTreeSet::new();
    let mut seen = 0u64;
    for (n, line) in std::io::BufReader::new(file).lines().enumerate() {
        let line = line.map_err(|e| AuditError::io(path, e))?;
        if line.trim().is_empty() {
            continue;
        }
        let ev: Event = serde_json::from_str(&line).map_err(|e| AuditError::Event {
            path: path.to_path_buf(),
            line: n + 1,
            message: e.to_string(),
        })?;
        let ours = ev.container.as_ref().is_some_and(|c| {
            c.id == container
                || c.name == container
                || (container.len() >= 12 && c.id.starts_with(container))
        });
        if !ours {
            continue;
        }
        seen += 1;
        // Every access of the event is remembered (no short circuit).
        let mut new_access = false;
        for a in accesses(&ev) {
            new_access |= accessed.insert(a);
        }
        if new_access {
            out.push(ev);
        }
    }
    Ok((out, seen))
}

impl Observed {
    /// What `events` show, with `capabilities` (the recorder's, when it ran) replacing the
    /// capabilities seen in events.
    pub fn from_events<'a>(
        events: impl IntoIterator<Item = &'a Event>,
        capabilities: Option<BTreeSet<String>>,
    ) -> Observed {
        let mut o = Observed::default();
        for e in events {
            o.observe(e);
        }
        if let Some(c) = capabilities {
            o.capabilities = c;
        }
        o
    }

    /// `N executables, N write rules, N socket kinds, N capabilities`: what a profile learned
    /// from this allows.
    pub fn summary(&self) -> String {
        format!(
            "{} executables, {} write rules, {} socket kinds, {} capabilities",
            self.execs.len(),
            generalise_writes(&self.writes).len(),
            self.network.len(),
            self.capabilities.len()
        )
    }
}

/// The comment a learned profile starts with: who learned it from what (`image` may be
/// empty), over how many events, and how (`recorded for 1m`, `from a file of events`).
pub fn profile_header(container: &str, image: &str, seen: u64, how: &str) -> String {
    let image = if image.is_empty() {
        String::new()
    } else {
        format!(" ({image})")
    };
    format!(
        "Learned by Rampart {} from container {container}{image} over {seen} events ({how}).",
        env!("CARGO_PKG_VERSION")
    )
}

/// The default profile name for a container: `rampart-NAME`, every character but ASCII
/// letters, digits, `-` and `_` replaced by `-` (a name AppArmor and `--security-opt` accept).
pub fn profile_name(container: &str) -> String {
    let clean: String = container
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '-'
            }
        })
        .collect();
    format!("rampart-{clean}")
}

/// What `profile apparmor --check` prints for the violations of `profile` (its path) by
/// container `container` over `seen` events; every line ends in `\n`.
pub fn check_text(profile: &str, container: &str, seen: u64, violations: &[Violation]) -> String {
    use std::fmt::Write;
    if violations.is_empty() {
        return format!(
            "{profile}: nothing of what {container} did ({seen} events) would be refused\n"
        );
    }
    let mut out = format!(
        "{profile}: {} access(es) of {container} would be refused:\n",
        violations.len()
    );
    for x in violations {
        let _ = writeln!(
            out,
            "  {}  by {}  ({})",
            x.access,
            if x.process.is_empty() {
                "?"
            } else {
                &x.process
            },
            x.denied_by
                .as_deref()
                .map_or("no rule allows it".to_string(), |d| format!(
                    "refused by `{d}`"
                ))
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use rampart_event::{FileInfo, NetDirection, NetInfo, Process};
    use std::sync::Arc;

    fn ev(kind: EventKind) -> Event {
        Event::new(Default::default(), 0, kind, Default::default())
    }

    fn open(path: &str, flags: u32) -> Event {
        let mut e = ev(EventKind::FileOpen);
        e.file = Some(FileInfo {
            path: path.into(),
            flags: Some(flags),
            ..FileInfo::default()
        });
        e
    }

    fn exec(exe: &str) -> Event {
        let mut e = ev(EventKind::ProcessExec);
        e.process = Some(Arc::new(Process {
            exe: exe.into(),
            name: exe.rsplit('/').next().unwrap_or_default().into(),
            pid: 7,
            ..Process::default()
        }));
        e
    }

    fn connect(family: &str, protocol: &str) -> Event {
        let mut e = ev(EventKind::NetConnect);
        e.network = Some(NetInfo {
            protocol: protocol.into(),
            family: family.into(),
            direction: NetDirection::Outbound,
            src: None,
            dst: None,
            unix_path: None,
            remote_names: Vec::new(),
            remote_country: None,
        });
        e
    }

    #[test]
    fn globs_match_as_apparmor_does() {
        let m = |g: &str, p: &str| glob_regex(g).is_match(p);
        assert!(m("/tmp/**", "/tmp/a/b/c"));
        assert!(!m("/tmp/*", "/tmp/a/b"));
        assert!(m("/{,var/}run/docker.sock", "/var/run/docker.sock"));
        assert!(m("/{,var/}run/docker.sock", "/run/docker.sock"));
        assert!(m("@{PROC}/sys/**", "/proc/sys/kernel/core_pattern"));
        assert!(m("@{PROC}/@{pid}/status", "/proc/123/status"));
        assert!(!m("@{PROC}/@{pid}/status", "/proc/self/status"));
        assert!(m("/var/log/app*.log*", "/var/log/app.log.1"));
        assert!(m("/sys/[^f]*/**", "/sys/kernel/x"));
        assert!(!m("/sys/[^f]*/**", "/sys/fs/x"));
        assert!(m("/a\\*b", "/a*b") && !m("/a\\*b", "/axb"));
    }

    #[test]
    fn writes_are_generalised_where_names_are_made_up() {
        let w: BTreeSet<String> = [
            "/tmp/tmp.Ab3xYz9",
            "/var/run/nginx.pid",
            "/run/app.12345.pid",
            "/var/log/app.log",
            "/var/log/app.log.1",
            "/proc/4242/oom_score_adj",
            "/data/uploads/IMG_20261206_101010.jpg",
            "/etc/nginx/conf.d/default.conf",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let g = generalise_writes(&w);
        for want in [
            "/tmp/**",
            "/var/run/nginx.pid",
            "/run/*.pid",
            "/var/log/app*.log*",
            "@{PROC}/@{pid}/oom_score_adj",
            "/data/uploads/*.jpg",
            "/etc/nginx/conf.d/default.conf",
        ] {
            assert!(g.contains(want), "{want} not in {g:?}");
        }
    }

    #[test]
    fn a_generated_profile_reads_back_and_judges_a_recording() {
        let mut o = Observed::default();
        for e in [
            exec("/usr/sbin/nginx"),
            open("/var/log/nginx/access.log", O_WRONLY | O_APPEND),
            open("/etc/nginx/nginx.conf", 0),
            connect("inet", "tcp"),
        ] {
            o.observe(&e);
        }
        o.capabilities.insert("net_bind_service".into());
        let text = o.profile("rampart-web", false, "learned in a test");
        let rules = ProfileRules::parse(&text, "test profile").expect("parse");
        assert_eq!(rules.name, "rampart-web");
        assert!(!rules.complain);
        // What it did passes.
        let ok = [
            exec("/usr/sbin/nginx"),
            open("/var/log/nginx/access.log", O_WRONLY),
            connect("inet", "tcp"),
        ];
        assert!(rules.check(&ok).is_empty(), "{:?}", rules.check(&ok));
        // What it did not do is refused, and a sensitive read by the deny rule.
        let bad = [
            exec("/bin/sh"),
            open("/etc/passwd", O_WRONLY | O_TRUNC),
            open("/etc/shadow", 0),
            connect("packet", "raw"),
            open("/proc/sys/kernel/core_pattern", O_WRONLY),
        ];
        let v = rules.check(&bad);
        let shown: Vec<String> = v.iter().map(|v| v.access.to_string()).collect();
        assert_eq!(v.len(), 5, "{shown:?}");
        let shadow = v
            .iter()
            .find(|v| v.access == Access::Read("/etc/shadow".into()))
            .expect("shadow");
        assert_eq!(shadow.denied_by.as_deref(), Some("deny /etc/shadow rwklx"));
        assert!(o
            .profile("x", true, "")
            .contains("flags=(attach_disconnected,mediate_deleted,complain)"));
    }

    #[test]
    fn what_it_was_seen_to_need_is_not_denied() {
        let mut o = Observed::default();
        o.observe(&open("/etc/shadow", 0));
        let text = o.profile("needs-shadow", false, "");
        assert!(!text.contains("deny /etc/shadow "), "{text}");
        assert!(text.contains("# not denied, it used it: /etc/shadow"));
    }

    #[test]
    fn malformed_profiles_name_the_line() {
        let e = ProfileRules::parse("profile x {\n  /etc/passwd r\n}\n", "p.profile")
            .expect_err("no comma");
        assert!(e.to_string().contains("p.profile: line 2"), "{e}");
        assert!(ProfileRules::parse("# nothing\n", "empty").is_err());
    }

    #[test]
    fn events_from_file_keeps_new_accesses_of_the_container_and_names_bad_lines() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let path = dir.path().join("events.jsonl");
        let mut mine = open("/etc/shadow", 0);
        let container = |id: String, name: &str| {
            let mut c =
                rampart_event::Container::unnamed(id, rampart_event::ContainerRuntime::Docker);
            c.name = name.into();
            Some(Arc::new(c))
        };
        mine.container = container("c".repeat(64), "web");
        let mut other = mine.clone();
        other.container = container("d".repeat(64), "db");
        let line = |e: &Event| serde_json::to_string(e).unwrap_or_default();
        let text = format!("{}\n\n{}\n{}\n", line(&mine), line(&mine), line(&other));
        std::fs::write(&path, text).unwrap_or_else(|e| panic!("{e}"));
        for key in ["web", &"c".repeat(12)] {
            let (events, seen) = events_from_file(&path, key).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(seen, 2, "both of web's events counted");
            assert_eq!(events.len(), 1, "the repeated access is kept once");
        }
        std::fs::write(&path, format!("{}\nnot json\n", line(&mine)))
            .unwrap_or_else(|e| panic!("{e}"));
        let err = events_from_file(&path, "web").expect_err("a bad line");
        assert!(err.is_bad_input());
        assert!(
            err.to_string().contains("events.jsonl:2: not an event"),
            "{err}"
        );
    }

    #[test]
    fn profile_names_are_what_apparmor_accepts() {
        assert_eq!(profile_name("web_1"), "rampart-web_1");
        assert_eq!(profile_name("my.app/x y"), "rampart-my-app-x-y");
    }
}
