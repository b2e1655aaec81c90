//! Forensic bundles of a running container, and their verification.
//!
//! # Bundle format (`rampart-forensics/1`)
//! One `tar` stream compressed with zstd. Entries:
//! ```text
//! container/inspect.json       docker inspect
//! container/processes.json     every process: pid, ppid, argv, env, cwd, uids/gids, capabilities,
//!                              open files and sockets, memory maps
//! container/executables.json   SHA-256 of every running executable and mapped file
//! fs/changes.json              the writable layer: added/changed files, symlinks, deletions
//! fs/upper/<path>              the writable layer's files (size-limited); a symlink is a small
//!                              regular file holding its target (`link` in the manifest), so
//!                              that extracting a bundle can never write through a link
//! memory/<pid>/<start>-<end>.bin  memory of the flagged process(es), one entry per region
//!                              (see [`memory`]; the manifest's `memory` describes every region)
//! events/recent.jsonl          the container's last events and alerts, as the agent saw them
//! host/facts.json              host and agent facts
//! manifest.json                every entry above: path, size, SHA-256 (a symlink: its target)
//! manifest.sig                 Ed25519 signature (64 bytes) of manifest.json by the agent's key
//! ```
//! The capture never follows a symlink (see [`crate::safefs`]): a link in the container to a
//! host path is stored as a link. It never fills the disk: per-file and total limits, and it
//! refuses to start when the output filesystem would be left with less than
//! [`BundleLimits::min_free_bytes`]. What a limit cut is listed in the manifest's `truncated`.
//!
//! [`verify`] recomputes every hash and checks the signature, and names every entry that was
//! altered, removed or added.

pub mod key;
pub mod memory;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ffi::OsStr;
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::facts::ContainerFacts;
use crate::safefs::{Dir, Kind};
use key::AgentKey;

/// The format name in every manifest.
pub const FORMAT: &str = "rampart-forensics/1";

/// Errors of capturing or reading a bundle.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ForensicsError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("container {0} is not running: a bundle is taken from a live container")]
    NotRunning(String),
    #[error("{}: only {available} bytes free; a bundle needs at least {needed} to leave {keep} free", path.display())]
    NoSpace {
        path: PathBuf,
        available: u64,
        needed: u64,
        keep: u64,
    },
    #[error("{}: not a forensic bundle: {reason}", path.display())]
    NotABundle { path: PathBuf, reason: String },
    #[error(transparent)]
    Key(#[from] key::KeyError),
}

fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> ForensicsError {
    let path = path.into();
    move |source| ForensicsError::Io { path, source }
}

/// Bounds of one capture.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub struct BundleLimits {
    /// A file of the writable layer larger than this is cut to it.
    pub max_file_bytes: u64,
    /// Bytes of the writable layer stored at most (uncompressed).
    pub max_total_bytes: u64,
    /// Files of the writable layer stored at most.
    pub max_files: usize,
    /// The capture refuses to run when the output filesystem would have less than this free.
    pub min_free_bytes: u64,
    /// Bytes of `/proc/PID/maps` and environment kept per process.
    pub max_proc_text_bytes: usize,
    /// Recent events and alerts kept.
    pub max_events: usize,
    /// Bytes of process memory stored at most, over every process captured (0: none).
    #[serde(default = "default_max_memory_bytes")]
    pub max_memory_bytes: u64,
}

fn default_max_memory_bytes() -> u64 {
    256 << 20
}

impl Default for BundleLimits {
    fn default() -> Self {
        BundleLimits {
            max_file_bytes: 16 << 20,
            max_total_bytes: 256 << 20,
            max_files: 20_000,
            min_free_bytes: 1 << 30,
            max_proc_text_bytes: 256 << 10,
            max_events: 1000,
            max_memory_bytes: default_max_memory_bytes(),
        }
    }
}

/// One entry of the manifest.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ManifestEntry {
    pub path: String,
    pub size: u64,
    /// SHA-256 of the content (for a symlink, of its target, which is the content), hex.
    pub sha256: String,
    /// A symlink's target (never followed); the entry's content is this text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link: Option<String>,
}

/// `manifest.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Manifest {
    pub format: String,
    pub created_ns: u64,
    pub rampart_version: String,
    pub host: String,
    pub container: ManifestContainer,
    /// The signer's Ed25519 public key, hex.
    pub public_key: String,
    pub limits: BundleLimits,
    /// What a limit cut, in words.
    pub truncated: Vec<String>,
    pub files: Vec<ManifestEntry>,
    /// The memory captured of each flagged process, region by region.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub memory: Vec<memory::ProcessMemory>,
}

/// The container a bundle is of.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ManifestContainer {
    pub id: String,
    pub name: String,
    pub image: String,
}

/// What a capture produced.
#[derive(Debug, Clone)]
pub struct BundleReport {
    pub path: PathBuf,
    pub entries: usize,
    /// Bytes of the writable layer stored.
    pub fs_bytes: u64,
    pub processes: usize,
    pub truncated: Vec<String>,
    pub public_key: String,
    /// The memory captured of each flagged process.
    pub memory: Vec<memory::ProcessMemory>,
}

impl BundleReport {
    /// What `rampart respond forensics` prints: the bundle, then one line per process whose
    /// memory was captured and per limit that cut the capture; every line ends in `\n`.
    pub fn text(&self) -> String {
        let mut out = format!(
            "{}: {} entries, {} processes, {} bytes of the writable layer; signed by {} (fingerprint {})\n",
            self.path.display(),
            self.entries,
            self.processes,
            self.fs_bytes,
            self.public_key,
            key::fingerprint(&self.public_key)
        );
        for m in &self.memory {
            out.push_str(&format!(
                "  memory of pid {} ({}): {} bytes in {} regions, {} unreadable, {} over the limit{}\n",
                m.pid,
                m.name,
                m.captured_bytes,
                m.regions.iter().filter(|r| r.captured > 0).count(),
                m.unreadable,
                m.over_limit,
                m.error.as_deref().map(|e| format!(" ({e})")).unwrap_or_default()
            ));
        }
        for t in &self.truncated {
            out.push_str(&format!("  limit: {t}\n"));
        }
        out
    }
}

struct Writer {
    tar: tar::Builder<zstd::Encoder<'static, std::fs::File>>,
    entries: Vec<ManifestEntry>,
    path: PathBuf,
    mtime: u64,
}

impl Writer {
    fn add(&mut self, name: &str, data: &[u8]) -> Result<(), ForensicsError> {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_mtime(self.mtime);
        h.set_entry_type(tar::EntryType::Regular);
        self.tar
            .append_data(&mut h, name, data)
            .map_err(io(&self.path))?;
        self.entries.push(ManifestEntry {
            path: name.to_string(),
            size: data.len() as u64,
            sha256: hex::encode(Sha256::digest(data)),
            link: None,
        });
        Ok(())
    }

    fn add_json(&mut self, name: &str, v: &impl Serialize) -> Result<(), ForensicsError> {
        let data = serde_json::to_vec_pretty(v).map_err(|e| ForensicsError::Io {
            path: self.path.clone(),
            source: std::io::Error::other(e),
        })?;
        self.add(name, &data)
    }

    /// A symlink is stored as a regular file holding its target (see the module docs).
    fn add_symlink(&mut self, name: &str, target: &OsStr) -> Result<(), ForensicsError> {
        use std::os::unix::ffi::OsStrExt;
        self.add(name, target.as_bytes())?;
        if let Some(e) = self.entries.last_mut() {
            e.link = Some(target.to_string_lossy().into_owned());
        }
        Ok(())
    }
}

/// The last `max` events and alerts of container `id` in a JSON-lines file (`rampart agent
/// -o jsonl:FILE`), oldest first, for [`capture`]'s `recent`. Lines that are not JSON are
/// skipped (a file being appended to can end in a partial line); memory holds `max` records.
pub fn recent_events(
    path: &Path,
    id: &str,
    max: usize,
) -> Result<Vec<serde_json::Value>, ForensicsError> {
    use std::io::BufRead;
    let f = std::fs::File::open(path).map_err(io(path))?;
    let mut out = std::collections::VecDeque::new();
    for line in std::io::BufReader::new(f).lines() {
        let line = line.map_err(io(path))?;
        let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) else {
            continue;
        };
        if v["container"]["uid"].as_str() == Some(id) {
            out.push_back(v);
            if out.len() > max {
                out.pop_front();
            }
        }
    }
    Ok(out.into())
}

/// Captures a bundle of the running container `c` into `out` (written next to it first, then
/// renamed, so a failed capture leaves nothing half-written). `recent` are the container's
/// last events and alerts as JSON values, oldest first.
pub fn capture(
    c: &ContainerFacts,
    recent: &[serde_json::Value],
    key: &AgentKey,
    out: &Path,
    limits: &BundleLimits,
) -> Result<BundleReport, ForensicsError> {
    capture_with(c, recent, key, out, limits, &[])
}

/// As [`capture`], with the memory of the processes `memory_of` (processes of the container;
/// one whose pid now names another process, or that is not in the container's cgroup, is
/// recorded as not captured). The container is frozen while memory is read, so that what is
/// read is one consistent state, and thawed after unless it was frozen already (a playbook
/// that ran `freeze` first).
pub fn capture_with(
    c: &ContainerFacts,
    recent: &[serde_json::Value],
    key: &AgentKey,
    out: &Path,
    limits: &BundleLimits,
    memory_of: &[crate::actions::ProcessRef],
) -> Result<BundleReport, ForensicsError> {
    if !c.running || c.pid == 0 {
        return Err(ForensicsError::NotRunning(c.label()));
    }
    let dir = out
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    // Bundles hold process environments (secrets): a directory created here is 0700 and every
    // bundle 0600, whatever the umask (an existing directory keeps its mode).
    if !dir.is_dir() {
        use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(io(dir))?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(io(dir))?;
    }
    let available = free_bytes(dir).map_err(io(dir))?;
    let mut limits = *limits;
    let needed = limits.min_free_bytes + (64 << 20);
    if available < needed {
        return Err(ForensicsError::NoSpace {
            path: dir.to_path_buf(),
            available,
            needed,
            keep: limits.min_free_bytes,
        });
    }
    let mut truncated = Vec::new();
    let room = available - limits.min_free_bytes - (32 << 20);
    if room < limits.max_total_bytes {
        truncated.push(format!(
            "fs: limited to {room} bytes to keep {} bytes free on {}",
            limits.min_free_bytes,
            dir.display()
        ));
        limits.max_total_bytes = room;
    }
    let tmp = dir.join(format!(
        ".{}.partial-{}",
        out.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        std::process::id()
    ));
    let result = (|| {
        let file = {
            use std::os::unix::fs::OpenOptionsExt;
            std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&tmp)
                .map_err(io(&tmp))?
        };
        let enc = zstd::Encoder::new(file, 3).map_err(io(&tmp))?;
        let created_ns = now_ns();
        let mut w = Writer {
            tar: tar::Builder::new(enc),
            entries: Vec::new(),
            path: tmp.clone(),
            mtime: created_ns / 1_000_000_000,
        };
        let inspect = c.inspect.clone().unwrap_or(serde_json::Value::Null);
        w.add_json("container/inspect.json", &inspect)?;
        let procs = processes(c, &limits);
        let nprocs = procs.len();
        w.add_json("container/processes.json", &procs)?;
        w.add_json("container/executables.json", &executables(&procs))?;
        let memory = capture_memory(&mut w, c, memory_of, &limits, &mut truncated)?;
        let fs_bytes = match &c.upper_dir {
            Some(upper) => fs_changes(&mut w, upper, &limits, &mut truncated)?,
            None => {
                truncated.push(
                    "fs: the container has no overlay upper directory (not overlay2?)".into(),
                );
                0
            }
        };
        let keep = recent.len().saturating_sub(limits.max_events);
        if keep > 0 {
            truncated.push(format!("events: the oldest {keep} left out"));
        }
        let mut lines = Vec::new();
        for v in &recent[keep..] {
            if serde_json::to_writer(&mut lines, v).is_ok() {
                lines.push(b'\n');
            }
        }
        w.add("events/recent.jsonl", &lines)?;
        w.add_json("host/facts.json", &host_facts())?;
        let manifest = Manifest {
            format: FORMAT.into(),
            created_ns,
            rampart_version: rampart_event::VERSION.into(),
            host: hostname(),
            container: ManifestContainer {
                id: c.id.clone(),
                name: c.name.clone(),
                image: c.image.clone(),
            },
            public_key: key.public_hex(),
            limits,
            truncated: truncated.clone(),
            files: std::mem::take(&mut w.entries),
            memory: memory.clone(),
        };
        let entries = manifest.files.len();
        let mbytes = serde_json::to_vec_pretty(&manifest).map_err(|e| ForensicsError::Io {
            path: tmp.clone(),
            source: std::io::Error::other(e),
        })?;
        let sig = key.sign(&mbytes);
        w.add("manifest.json", &mbytes)?;
        w.add("manifest.sig", &sig)?;
        let enc = w.tar.into_inner().map_err(io(&tmp))?;
        let file = enc.finish().map_err(io(&tmp))?;
        file.sync_all().map_err(io(&tmp))?;
        Ok((entries, fs_bytes, nprocs, memory))
    })();
    match result {
        Ok((entries, fs_bytes, processes, memory)) => {
            std::fs::rename(&tmp, out).map_err(io(out))?;
            Ok(BundleReport {
                path: out.to_path_buf(),
                entries,
                fs_bytes,
                processes,
                truncated,
                public_key: key.public_hex(),
                memory,
            })
        }
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            Err(e)
        }
    }
}

/// The memory of `targets`, read while the container is frozen (see [`capture_with`]).
fn capture_memory(
    w: &mut Writer,
    c: &ContainerFacts,
    targets: &[crate::actions::ProcessRef],
    limits: &BundleLimits,
    truncated: &mut Vec<String>,
) -> Result<Vec<memory::ProcessMemory>, ForensicsError> {
    if targets.is_empty() {
        return Ok(Vec::new());
    }
    if limits.max_memory_bytes == 0 {
        truncated.push("memory: not captured (limits.max_memory_bytes is 0)".into());
        return Ok(Vec::new());
    }
    let was_frozen = crate::actions::is_frozen(c);
    let mut froze = false;
    if !was_frozen {
        match crate::actions::freeze(c) {
            Ok(_) => froze = true,
            Err(e) => truncated.push(format!(
                "memory: read while the container runs (freezing it failed: {e}); regions may be inconsistent"
            )),
        }
    }
    let frozen = was_frozen || froze;
    let mut budget = limits.max_memory_bytes;
    let mut out = Vec::new();
    let mut result = Ok(());
    for t in targets {
        let start_ok = t.start_time_ns.is_none_or(|want| {
            crate::actions::start_time_ns(t.pid)
                .is_some_and(|have| have.abs_diff(want) <= 20_000_000)
        });
        let cg_ok = c
            .cgroup
            .as_deref()
            .is_none_or(|cg| crate::actions::in_cgroup(t.pid, cg));
        if !start_ok || !cg_ok {
            out.push(memory::ProcessMemory {
                pid: t.pid,
                name: String::new(),
                frozen,
                captured_bytes: 0,
                unreadable: 0,
                over_limit: 0,
                error: Some(if !start_ok {
                    "the pid now belongs to another process (start time differs, or it exited); not captured".into()
                } else {
                    "not a process of the container (cgroup); not captured".into()
                }),
                regions: Vec::new(),
            });
            continue;
        }
        match memory::capture_process(w, t.pid, frozen, &mut budget) {
            Ok(m) => {
                if m.over_limit > 0 {
                    truncated.push(format!(
                        "memory/{}: {} regions left out or cut by limits.max_memory_bytes ({})",
                        t.pid, m.over_limit, limits.max_memory_bytes
                    ));
                }
                out.push(m);
            }
            Err(e) => {
                result = Err(e);
                break;
            }
        }
    }
    if froze {
        if let Err(e) = crate::actions::thaw(c) {
            tracing::error!(
                "forensics: thawing {} after reading its memory: {e}",
                c.label()
            );
            truncated.push(format!(
                "memory: thawing the container afterwards failed: {e}"
            ));
        }
    }
    result.map(|()| out)
}

fn free_bytes(dir: &Path) -> std::io::Result<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(dir.as_os_str().as_bytes())
        .map_err(|_| std::io::Error::from(std::io::ErrorKind::InvalidInput))?;
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: NUL-terminated path and a statvfs buffer we own.
    if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(st.f_bavail as u64 * st.f_frsize as u64)
}

use rampart_event::{hostname, now_ns};

/// One process of the container.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct ProcessRecord {
    pub pid: u32,
    pub ppid: u32,
    /// Pid inside the container's pid namespace.
    pub vpid: Option<u32>,
    pub name: String,
    pub exe: String,
    pub exe_sha256: Option<String>,
    pub cmdline: Vec<String>,
    pub env: Vec<String>,
    pub cwd: String,
    /// Real, effective, saved, filesystem.
    pub uids: Vec<u32>,
    pub gids: Vec<u32>,
    /// Hex capability sets from /proc/PID/status.
    pub cap_effective: String,
    pub cap_permitted: String,
    pub cap_bounding: String,
    pub state: String,
    pub start_time_ns: Option<u64>,
    pub fds: Vec<FdRecord>,
    pub maps: String,
    pub maps_truncated: bool,
    /// Files mapped into memory, with their SHA-256 (hex), by path.
    pub mapped: BTreeMap<String, String>,
}

/// One open file descriptor.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FdRecord {
    pub fd: u32,
    pub target: String,
    /// For a socket: `tcp 172.18.0.2:8080 -> 0.0.0.0:0 LISTEN`, `unix /run/x.sock`, ...
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub socket: Option<String>,
}

fn read_capped(path: &str, cap: usize) -> (Vec<u8>, bool) {
    let Ok(f) = std::fs::File::open(path) else {
        return (Vec::new(), false);
    };
    let mut buf = Vec::new();
    let _ = f.take(cap as u64 + 1).read_to_end(&mut buf);
    let cut = buf.len() > cap;
    buf.truncate(cap);
    (buf, cut)
}

fn split_nul(b: &[u8]) -> Vec<String> {
    b.split(|&c| c == 0)
        .filter(|s| !s.is_empty())
        .map(|s| String::from_utf8_lossy(s).into_owned())
        .collect()
}

fn processes(c: &ContainerFacts, limits: &BundleLimits) -> Vec<ProcessRecord> {
    let pids = match &c.cgroup {
        Some(cg) => crate::actions::cgroup_pids(cg),
        None => vec![c.pid],
    };
    let mut sockets: HashMap<u64, HashMap<u64, String>> = HashMap::new();
    let mut hashes: HashMap<(u64, u64), String> = HashMap::new();
    let mut out = Vec::new();
    for pid in pids {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        if status.is_empty() {
            continue;
        }
        let field = |k: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(k))
                .map(|v| v.trim().to_string())
                .unwrap_or_default()
        };
        let nums = |k: &str| -> Vec<u32> {
            field(k)
                .split_whitespace()
                .filter_map(|n| n.parse().ok())
                .collect()
        };
        let (cmd, _) = read_capped(&format!("/proc/{pid}/cmdline"), limits.max_proc_text_bytes);
        let (env, _) = read_capped(&format!("/proc/{pid}/environ"), limits.max_proc_text_bytes);
        let (maps, maps_cut) =
            read_capped(&format!("/proc/{pid}/maps"), limits.max_proc_text_bytes);
        let maps = String::from_utf8_lossy(&maps).into_owned();
        let link = |p: String| {
            std::fs::read_link(p)
                .map(|l| l.to_string_lossy().into_owned())
                .unwrap_or_default()
        };
        let netns = std::fs::metadata(format!("/proc/{pid}/ns/net"))
            .map(|m| m.ino())
            .unwrap_or(0);
        let socks = sockets.entry(netns).or_insert_with(|| socket_table(pid));
        let mut fds = Vec::new();
        if let Ok(rd) = std::fs::read_dir(format!("/proc/{pid}/fd")) {
            for e in rd.flatten() {
                let Some(fd) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
                    continue;
                };
                let target = link(format!("/proc/{pid}/fd/{fd}"));
                let socket = target
                    .strip_prefix("socket:[")
                    .and_then(|s| s.strip_suffix(']'))
                    .and_then(|s| s.parse::<u64>().ok())
                    .and_then(|ino| socks.get(&ino).cloned());
                fds.push(FdRecord { fd, target, socket });
            }
        }
        fds.sort_by_key(|f| f.fd);
        let exe_sha256 = hash_cached(&format!("/proc/{pid}/exe"), &mut hashes);
        let mut mapped = BTreeMap::new();
        for line in maps.lines() {
            let mut it = line.split_whitespace();
            let range = it.next().unwrap_or_default();
            let path = it.nth(4).unwrap_or_default();
            if !path.starts_with('/') || mapped.contains_key(path) {
                continue;
            }
            if let Some(h) = hash_cached(&format!("/proc/{pid}/map_files/{range}"), &mut hashes) {
                mapped.insert(path.to_string(), h);
            }
        }
        out.push(ProcessRecord {
            pid,
            ppid: field("PPid:").parse().unwrap_or(0),
            vpid: field("NSpid:")
                .split_whitespace()
                .last()
                .and_then(|v| v.parse().ok()),
            name: field("Name:"),
            exe: link(format!("/proc/{pid}/exe")),
            exe_sha256,
            cmdline: split_nul(&cmd),
            env: split_nul(&env),
            cwd: link(format!("/proc/{pid}/cwd")),
            uids: nums("Uid:"),
            gids: nums("Gid:"),
            cap_effective: field("CapEff:"),
            cap_permitted: field("CapPrm:"),
            cap_bounding: field("CapBnd:"),
            state: field("State:"),
            start_time_ns: crate::actions::start_time_ns(pid),
            fds,
            maps,
            maps_truncated: maps_cut,
            mapped,
        });
    }
    out
}

/// SHA-256 of the file behind a /proc magic link (`exe`, `map_files/...`), opened through the
/// link itself so the very file the process uses is read; cached by (dev, inode).
fn hash_cached(path: &str, cache: &mut HashMap<(u64, u64), String>) -> Option<String> {
    let mut f = std::fs::File::open(path).ok()?;
    let m = f.metadata().ok()?;
    let key = (m.dev(), m.ino());
    if let Some(h) = cache.get(&key) {
        return Some(h.clone());
    }
    let h = hex::encode(crate::hashing::sha256_reader(&mut f).ok()?);
    cache.insert(key, h.clone());
    Some(h)
}

/// Socket inode -> description, from the process's network namespace.
fn socket_table(pid: u32) -> HashMap<u64, String> {
    let mut out = HashMap::new();
    for (proto, file) in [
        ("tcp", "tcp"),
        ("tcp6", "tcp6"),
        ("udp", "udp"),
        ("udp6", "udp6"),
    ] {
        let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/net/{file}")) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() < 10 {
                continue;
            }
            let Ok(ino) = f[9].parse::<u64>() else {
                continue;
            };
            let state = match (proto.starts_with("tcp"), f[3]) {
                (true, "0A") => " LISTEN",
                (true, "01") => " ESTABLISHED",
                (true, _) => "",
                (false, _) => "",
            };
            out.insert(
                ino,
                format!("{proto} {} -> {}{state}", hex_addr(f[1]), hex_addr(f[2])),
            );
        }
    }
    if let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/net/unix")) {
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() < 7 {
                continue;
            }
            let Ok(ino) = f[6].parse::<u64>() else {
                continue;
            };
            out.insert(
                ino,
                format!("unix {}", f.get(7).copied().unwrap_or("(unnamed)")),
            );
        }
    }
    out
}

/// `0100007F:1F90` -> `127.0.0.1:8080` (IPv4 and IPv6 in /proc/net's byte order).
fn hex_addr(s: &str) -> String {
    let Some((a, p)) = s.split_once(':') else {
        return s.to_string();
    };
    let port = u16::from_str_radix(p, 16).unwrap_or(0);
    let bytes = hex::decode(a).unwrap_or_default();
    let ip: std::net::IpAddr = match bytes.len() {
        4 => std::net::Ipv4Addr::new(bytes[3], bytes[2], bytes[1], bytes[0]).into(),
        16 => {
            let mut b = [0u8; 16];
            for w in 0..4 {
                for i in 0..4 {
                    b[w * 4 + i] = bytes[w * 4 + 3 - i];
                }
            }
            std::net::Ipv6Addr::from(b).into()
        }
        _ => return s.to_string(),
    };
    std::net::SocketAddr::new(ip, port).to_string()
}

/// Every distinct executable and mapped file with its hash and the processes using it.
fn executables(procs: &[ProcessRecord]) -> Vec<serde_json::Value> {
    let mut by: BTreeMap<(String, String), BTreeSet<u32>> = BTreeMap::new();
    for p in procs {
        if let Some(h) = &p.exe_sha256 {
            by.entry((p.exe.clone(), h.clone()))
                .or_default()
                .insert(p.pid);
        }
        for (path, h) in &p.mapped {
            by.entry((path.clone(), h.clone()))
                .or_default()
                .insert(p.pid);
        }
    }
    by.into_iter()
        .map(|((path, sha256), pids)| serde_json::json!({"path": path, "sha256": sha256, "pids": pids}))
        .collect()
}

#[derive(Debug, Serialize)]
struct Change {
    path: String,
    /// `file`, `dir`, `symlink`, `deleted`, `other`.
    kind: &'static str,
    size: u64,
    mode: String,
    uid: u32,
    gid: u32,
    mtime: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    sha256: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    link: Option<String>,
    /// Stored in the bundle (false: over a limit).
    stored: bool,
}

fn fs_changes(
    w: &mut Writer,
    upper: &Path,
    limits: &BundleLimits,
    truncated: &mut Vec<String>,
) -> Result<u64, ForensicsError> {
    let root = Dir::open_root(upper).map_err(io(upper))?;
    let mut changes = Vec::new();
    let mut total = 0u64;
    let mut files = 0usize;
    let mut stack: Vec<(Dir, String)> = vec![(root, String::new())];
    let mut stopped = false;
    while let Some((dir, rel)) = stack.pop() {
        let Ok(names) = dir.names() else { continue };
        for name in names {
            let Ok(e) = dir.entry(&name) else { continue };
            let child = format!("{rel}/{}", name.to_string_lossy());
            let mut ch = Change {
                path: child.clone(),
                kind: "other",
                size: e.size,
                mode: format!("{:o}", e.mode),
                uid: e.uid,
                gid: e.gid,
                mtime: e.mtime,
                sha256: None,
                link: None,
                stored: false,
            };
            match e.kind {
                Kind::Dir => {
                    ch.kind = "dir";
                    if let Ok(sub) = dir.open_dir(&name) {
                        stack.push((sub, child.clone()));
                    }
                }
                Kind::Whiteout => ch.kind = "deleted",
                Kind::Symlink => {
                    ch.kind = "symlink";
                    if let Ok(t) = dir.read_link(&name) {
                        ch.link = Some(t.to_string_lossy().into_owned());
                        if !stopped && files < limits.max_files {
                            w.add_symlink(&format!("fs/upper{child}"), &t)?;
                            files += 1;
                            ch.stored = true;
                        }
                    }
                }
                Kind::File => {
                    ch.kind = "file";
                    if stopped || files >= limits.max_files || total >= limits.max_total_bytes {
                        if !stopped {
                            truncated.push(format!(
                                "fs: stopped storing files at {child} ({files} files, {total} bytes stored; limits {} files, {} bytes)",
                                limits.max_files, limits.max_total_bytes
                            ));
                            stopped = true;
                        }
                    } else if let Ok(f) = dir.open_file(&name) {
                        let cap = limits.max_file_bytes.min(limits.max_total_bytes - total);
                        let mut data = Vec::new();
                        let _ = f.take(cap + 1).read_to_end(&mut data);
                        if data.len() as u64 > cap {
                            data.truncate(cap as usize);
                            truncated
                                .push(format!("fs/upper{child}: cut to {cap} of {} bytes", e.size));
                        }
                        ch.sha256 = Some(hex::encode(Sha256::digest(&data)));
                        total += data.len() as u64;
                        files += 1;
                        w.add(&format!("fs/upper{child}"), &data)?;
                        ch.stored = true;
                    }
                }
                Kind::Other => {}
            }
            changes.push(ch);
        }
    }
    changes.sort_by(|a, b| a.path.cmp(&b.path));
    w.add_json("fs/changes.json", &changes)?;
    Ok(total)
}

fn host_facts() -> serde_json::Value {
    let read = |p: &str| {
        std::fs::read_to_string(p)
            .map(|s| s.trim().to_string())
            .unwrap_or_default()
    };
    let os = read("/etc/os-release")
        .lines()
        .find_map(|l| l.strip_prefix("PRETTY_NAME="))
        .map(|s| s.trim_matches('"').to_string())
        .unwrap_or_default();
    serde_json::json!({
        "hostname": hostname(),
        "kernel": read("/proc/sys/kernel/osrelease"),
        "os": os,
        "boot_id": read("/proc/sys/kernel/random/boot_id"),
        "uptime": read("/proc/uptime"),
        "captured_ns": now_ns(),
        "rampart_version": rampart_event::VERSION,
        "cpus": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        "cgroups": rampart_kernel::cgroup_layout().to_string(),
        "capturer_pid": std::process::id(),
    })
}

/// The result of [`verify`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verification {
    /// The signer's public key (from the manifest), hex.
    pub signer: String,
    /// The manifest's signature is valid for `signer`.
    pub signature_ok: bool,
    /// With a trusted key given: whether the signer is that key.
    pub signer_trusted: Option<bool>,
    /// Entries whose content differs from the manifest.
    pub altered: Vec<String>,
    /// Entries in the manifest but not in the bundle.
    pub missing: Vec<String>,
    /// Entries in the bundle but not in the manifest.
    pub added: Vec<String>,
    pub entries: usize,
    pub container: Option<ManifestContainer>,
    pub created_ns: u64,
    pub truncated: Vec<String>,
}

impl Verification {
    /// `rampart forensics verify`'s report on `bundle` (its path as shown): who signed it,
    /// the capture limits, and `OK` or one `ALTERED:` line per problem; `trusted_key` says
    /// whether a key was given. Every line ends in `\n`.
    pub fn text(&self, bundle: &str, trusted_key: bool) -> String {
        use std::fmt::Write;
        let mut out = String::new();
        if let Some(c) = &self.container {
            let _ = writeln!(
                out,
                "{bundle}: bundle of {} ({}), {} entries, signed by {} (fingerprint {})",
                c.name,
                c.id.get(..12).unwrap_or(&c.id),
                self.entries,
                self.signer,
                key::fingerprint(&self.signer)
            );
        }
        if !trusted_key {
            out.push_str(
                "  note: no --key given; the signature proves integrity, not which agent signed\n",
            );
        }
        for t in &self.truncated {
            let _ = writeln!(out, "  limit at capture: {t}");
        }
        if self.ok() {
            out.push_str("OK: every entry matches the signed manifest\n");
        }
        for p in self.problems() {
            let _ = writeln!(out, "ALTERED: {p}");
        }
        out
    }
}

impl Verification {
    /// Nothing was altered, removed or added, the signature holds, and (when a key was given)
    /// the signer is the trusted key.
    pub fn ok(&self) -> bool {
        self.signature_ok
            && self.signer_trusted != Some(false)
            && self.altered.is_empty()
            && self.missing.is_empty()
            && self.added.is_empty()
    }

    /// One line per problem, naming the entry.
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        if !self.signature_ok {
            out.push(
                "manifest.json: the signature does not match (manifest or signature altered)"
                    .to_string(),
            );
        }
        if self.signer_trusted == Some(false) {
            out.push(format!(
                "signed by {} ({}), not by the trusted key",
                self.signer,
                key::fingerprint(&self.signer)
            ));
        }
        out.extend(
            self.altered
                .iter()
                .map(|p| format!("{p}: altered (SHA-256 differs from the manifest)")),
        );
        out.extend(
            self.missing
                .iter()
                .map(|p| format!("{p}: missing (in the manifest, not in the bundle)")),
        );
        out.extend(
            self.added
                .iter()
                .map(|p| format!("{p}: added (in the bundle, not in the manifest)")),
        );
        out
    }
}

/// Checks every entry of `bundle` against its manifest and the manifest's signature; with
/// `trusted_key` (hex), also that the bundle was signed by that key.
pub fn verify(bundle: &Path, trusted_key: Option<&str>) -> Result<Verification, ForensicsError> {
    let not = |reason: String| ForensicsError::NotABundle {
        path: bundle.to_path_buf(),
        reason,
    };
    let f = std::fs::File::open(bundle).map_err(io(bundle))?;
    let dec = zstd::Decoder::new(f).map_err(io(bundle))?;
    let mut ar = tar::Archive::new(dec);
    let mut seen: BTreeMap<String, String> = BTreeMap::new();
    let mut dup: Vec<String> = Vec::new();
    let mut manifest_bytes = None;
    let mut sig = None;
    for entry in ar.entries().map_err(|e| not(e.to_string()))? {
        let mut entry = entry.map_err(|e| not(e.to_string()))?;
        let path = entry
            .path()
            .map_err(|e| not(e.to_string()))?
            .to_string_lossy()
            .into_owned();
        match path.as_str() {
            "manifest.json" | "manifest.sig" => {
                let mut b = Vec::new();
                entry
                    .by_ref()
                    .take(64 << 20)
                    .read_to_end(&mut b)
                    .map_err(|e| not(e.to_string()))?;
                if path == "manifest.json" {
                    manifest_bytes = Some(b);
                } else {
                    sig = Some(b);
                }
                continue;
            }
            _ => {}
        }
        // Bundles hold regular files only; any other entry (a link planted by whoever altered
        // the bundle) gets a hash no manifest entry has, so it shows as altered or added.
        let hash = if entry.header().entry_type() == tar::EntryType::Regular {
            hex::encode(crate::hashing::sha256_reader(&mut entry).map_err(|e| not(e.to_string()))?)
        } else {
            format!("not a regular file ({:?})", entry.header().entry_type())
        };
        if seen.insert(path.clone(), hash).is_some() {
            dup.push(path);
        }
    }
    let mbytes = manifest_bytes.ok_or_else(|| not("no manifest.json".into()))?;
    let manifest: Manifest =
        serde_json::from_slice(&mbytes).map_err(|e| not(format!("manifest.json: {e}")))?;
    if manifest.format != FORMAT {
        return Err(not(format!(
            "format {:?}, expected {FORMAT:?}",
            manifest.format
        )));
    }
    let signature_ok = match &sig {
        Some(s) => key::verify(&manifest.public_key, &mbytes, s).is_ok(),
        None => false,
    };
    let mut altered = dup;
    let mut missing = Vec::new();
    let listed: BTreeSet<&str> = manifest
        .files
        .iter()
        .map(|f| f.path.as_str())
        .filter(|p| *p != "manifest.json" && *p != "manifest.sig")
        .collect();
    for f in &manifest.files {
        if f.path == "manifest.json" || f.path == "manifest.sig" {
            continue;
        }
        match seen.get(&f.path) {
            None => missing.push(f.path.clone()),
            Some(h) if *h != f.sha256 => altered.push(f.path.clone()),
            Some(_) => {}
        }
    }
    let added = seen
        .keys()
        .filter(|p| !listed.contains(p.as_str()))
        .cloned()
        .collect();
    altered.sort();
    altered.dedup();
    Ok(Verification {
        signer_trusted: trusted_key.map(|k| k.trim().eq_ignore_ascii_case(&manifest.public_key)),
        signer: manifest.public_key,
        signature_ok,
        altered,
        missing,
        added,
        entries: manifest.files.len(),
        container: Some(manifest.container),
        created_ns: manifest.created_ns,
        truncated: manifest.truncated,
    })
}

/// Reads a trusted public key given as hex or as a path to a `.pub` file.
pub fn read_public_key(arg: &str) -> Result<String, ForensicsError> {
    let t = arg.trim();
    if t.len() == 64 && t.chars().all(|c| c.is_ascii_hexdigit()) {
        return Ok(t.to_ascii_lowercase());
    }
    let text = std::fs::read_to_string(t).map_err(io(t))?;
    Ok(text.trim().to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bundle_report_text_lists_memory_and_limits() {
        let r = BundleReport {
            path: PathBuf::from("/tmp/b.tar.zst"),
            entries: 7,
            fs_bytes: 42,
            processes: 2,
            truncated: vec!["fs: 1 file over 16 MiB".into()],
            public_key: "00".repeat(32),
            memory: vec![memory::ProcessMemory {
                pid: 77,
                name: "miner".into(),
                frozen: true,
                captured_bytes: 4096,
                unreadable: 1,
                over_limit: 0,
                error: Some("gone".into()),
                regions: vec![],
            }],
        };
        let text = r.text();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3, "{text}");
        assert!(lines[0].starts_with("/tmp/b.tar.zst: 7 entries, 2 processes, 42 bytes"));
        assert!(lines[0].ends_with(&format!(
            "(fingerprint {})",
            key::fingerprint(&r.public_key)
        )));
        assert_eq!(
            lines[1],
            "  memory of pid 77 (miner): 4096 bytes in 0 regions, 1 unreadable, 0 over the limit (gone)"
        );
        assert_eq!(lines[2], "  limit: fs: 1 file over 16 MiB");
        assert!(text.ends_with('\n'));
    }

    #[test]
    fn proc_net_addresses_decode() {
        assert_eq!(hex_addr("0100007F:1F90"), "127.0.0.1:8080");
        assert_eq!(
            hex_addr("00000000000000000000000001000000:0016"),
            "[::1]:22"
        );
    }

    #[test]
    fn recent_events_keeps_the_containers_last_records_and_skips_torn_lines() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("ev.jsonl");
        let mut text = String::new();
        for n in 0..5 {
            text.push_str(&format!("{{\"n\":{n},\"container\":{{\"uid\":\"a\"}}}}\n"));
            text.push_str("{\"container\":{\"uid\":\"b\"}}\n");
        }
        text.push_str("{\"n\":9,\"contai");
        std::fs::write(&p, text).expect("write");
        let got = recent_events(&p, "a", 2).expect("read");
        let ns: Vec<u64> = got.iter().filter_map(|v| v["n"].as_u64()).collect();
        assert_eq!(ns, vec![3, 4]);
        assert!(matches!(
            recent_events(&dir.path().join("none"), "a", 2),
            Err(ForensicsError::Io { .. })
        ));
    }
}
