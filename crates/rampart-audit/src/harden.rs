//! `rampart harden CONTAINER`: a hardened `docker run` line and compose service for a
//! container, from its current configuration and a [`Recording`] of what it did:
//! * `--cap-drop ALL` and `--cap-add` only for capabilities it was granted while recorded
//!   (when the kernel can record capability checks; otherwise the current set stays);
//! * `--read-only` with `--tmpfs` for the directories it wrote to (where a tmpfs hides nothing
//!   of the image; other writes are listed as needing a volume);
//! * `--memory`, `--cpus` and `--pids-limit` from the observed peaks times the headroom;
//! * `--device-read-bps`, `--device-write-bps`, `--device-read-iops` and
//!   `--device-write-iops` for the disk holding the container's writable layer, from the
//!   observed IO peaks times the headroom (with floors, so that a quiet recording does not
//!   starve a later burst);
//! * `--security-opt no-new-privileges` and `--security-opt seccomp=PROFILE` (the learned
//!   profile);
//! * user-namespace remapping (a daemon setting) and a non-root user, as notes when they
//!   apply.

use std::collections::{BTreeMap, BTreeSet};

use rampart_container::models::{ContainerInspectResponse, ImageInspect, RestartPolicyNameEnum};
use serde::Serialize;
use serde_yaml::{Mapping, Value};

use crate::learn::Recording;

/// Options of a proposal.
#[derive(Debug, Clone)]
pub struct HardenOptions {
    /// Multiplier applied to observed peaks (1.5 = 50 % headroom).
    pub headroom: f64,
    /// Where the learned seccomp profile is (or will be) written; referenced by the run line.
    pub profile_path: Option<String>,
    /// The daemon already remaps users.
    pub daemon_userns_remap: bool,
    /// The name of an AppArmor profile learned for the container (`rampart profile apparmor`)
    /// and loaded on the host.
    pub apparmor_profile: Option<String>,
}

impl Default for HardenOptions {
    fn default() -> Self {
        HardenOptions {
            headroom: 1.5,
            profile_path: None,
            daemon_userns_remap: false,
            apparmor_profile: None,
        }
    }
}

/// A hardening proposal.
#[derive(Debug, Clone, Serialize)]
pub struct Proposal {
    /// `docker run` arguments (after `docker run`).
    pub run_args: Vec<String>,
    /// Directories to mount as tmpfs.
    pub tmpfs: Vec<String>,
    /// Capabilities kept; `None` when capability use was not observed.
    pub cap_add: Option<Vec<String>>,
    pub memory_bytes: Option<u64>,
    pub cpus: Option<f64>,
    pub pids_limit: Option<u64>,
    /// Block IO limits; `None` when IO or the disk was not observed.
    pub io: Option<IoLimits>,
    /// Things that need a person: writes needing volumes, daemon settings, a non-root user.
    pub notes: Vec<String>,
}

/// Block IO limits for one device (Docker's `--device-*-bps` / `--device-*-iops`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct IoLimits {
    /// The device node (`/dev/vda`).
    pub device: String,
    /// Bytes per second, a whole number of MiB.
    pub read_bps: u64,
    pub write_bps: u64,
    pub read_iops: u64,
    pub write_iops: u64,
}

/// Floors of the IO limits: below them a package install, a log rotation or a cache warm-up
/// the recording did not see would stall the container.
const MIN_BPS: u64 = 10 * MIB;
const MIN_IOPS: u64 = 100;

const MIB: u64 = 1 << 20;
/// Directories whose content is scratch by convention: a tmpfs over them hides nothing that
/// matters.
const SCRATCH: [&str; 6] = [
    "/tmp",
    "/var/tmp",
    "/run",
    "/var/run",
    "/var/cache",
    "/var/log",
];

fn shell_quote(s: &str) -> String {
    if !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./:=@,+%".contains(&b))
    {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

fn parent(p: &str) -> Option<&str> {
    match p.rfind('/') {
        Some(0) if p.len() > 1 => Some("/"),
        Some(0) | None => None,
        Some(i) => Some(&p[..i]),
    }
}

/// Directories for tmpfs mounts, and notes for writes a tmpfs cannot take, from `docker diff`.
pub fn tmpfs_dirs(rec: &Recording) -> (Vec<String>, Vec<String>) {
    let kinds: BTreeMap<&str, char> = rec
        .changes
        .iter()
        .map(|c| (c.path.as_str(), c.kind))
        .collect();
    let is_dir: BTreeSet<&str> = rec.changes.iter().filter_map(|c| parent(&c.path)).collect();
    let mut dirs: BTreeSet<String> = BTreeSet::new();
    let mut notes = Vec::new();
    for c in &rec.changes {
        if c.kind == 'D' {
            notes.push(format!(
                "deletes {} from the image: with --read-only that fails; remove it at build time",
                c.path
            ));
            continue;
        }
        if is_dir.contains(c.path.as_str()) {
            continue; // a directory whose entries are handled themselves
        }
        // The topmost added directory above the written file, else its parent.
        let mut dir = parent(&c.path).unwrap_or("/").to_string();
        let mut added_dir = false;
        let mut cur = dir.clone();
        while kinds.get(cur.as_str()) == Some(&'A') {
            dir = cur.clone();
            added_dir = true;
            match parent(&cur) {
                Some(p) => cur = p.to_string(),
                None => break,
            }
        }
        let scratch = SCRATCH
            .iter()
            .any(|s| dir == *s || dir.starts_with(&format!("{s}/")));
        if added_dir || scratch {
            dirs.insert(dir);
        } else {
            notes.push(format!(
                "writes {} in {dir}, which holds files of the image: a tmpfs there would hide them; mount a volume at {dir} (-v NAME:{dir}) or stop writing there",
                c.path
            ));
        }
    }
    // Drop directories nested in other tmpfs directories.
    let all: Vec<String> = dirs.iter().cloned().collect();
    let kept: Vec<String> = all
        .iter()
        .filter(|d| {
            !all.iter()
                .any(|o| o != *d && d.starts_with(&format!("{o}/")))
        })
        .cloned()
        .collect();
    notes.sort();
    notes.dedup();
    (kept, notes)
}

fn round_up(v: u64, to: u64) -> u64 {
    v.div_ceil(to).saturating_mul(to)
}

/// What a proposal is made from, read from dockerd: the container, its image's configuration,
/// and whether the daemon already remaps user namespaces.
#[derive(Debug, Clone)]
pub struct DockerFacts {
    pub inspect: ContainerInspectResponse,
    pub image: ImageInspect,
    pub daemon_userns_remap: bool,
}

/// Reads [`DockerFacts`] of `container` (name or id) from dockerd.
pub async fn docker_facts(
    docker: &rampart_container::DockerClient,
    container: &str,
) -> Result<DockerFacts, crate::AuditError> {
    use crate::AuditError;
    let inspect = docker
        .inspect_container(container)
        .await
        .map_err(|e| AuditError::docker("inspect container", container, e))?;
    let image_id = inspect.image.clone().unwrap_or_default();
    let image = docker
        .inspect_image(&image_id)
        .await
        .map_err(|e| AuditError::docker("inspect image", image_id.as_str(), e))?;
    let daemon_userns_remap = docker
        .info()
        .await
        .ok()
        .and_then(|i| i.security_options)
        .is_some_and(|o| o.iter().any(|x| x == "name=userns"));
    Ok(DockerFacts {
        inspect,
        image,
        daemon_userns_remap,
    })
}

/// The text form of [`Proposal`]: where the seccomp profile went, the run line, the compose
/// service and the notes, as shell comments around them.
pub fn proposal_text(p: &Proposal, profile: &std::path::Path) -> String {
    use std::fmt::Write;
    let mut out = format!(
        "# seccomp profile written to {}\n# hardened docker run:\n{}\n\n# compose service:\n{}",
        profile.display(),
        p.run_line(),
        p.compose()
    );
    if !p.notes.is_empty() {
        out.push_str("\n# notes:\n");
        for n in &p.notes {
            let _ = writeln!(out, "# - {n}");
        }
    }
    out
}

/// Builds the proposal for the container described by `inspect` (and its image's
/// configuration, to leave out what the image already sets).
pub fn propose(
    inspect: &ContainerInspectResponse,
    image: &ImageInspect,
    rec: &Recording,
    opts: &HardenOptions,
) -> Proposal {
    let hc = inspect.host_config.clone().unwrap_or_default();
    let cfg = inspect.config.clone().unwrap_or_default();
    let img = image.config.clone().unwrap_or_default();
    let name = inspect
        .name
        .clone()
        .unwrap_or_default()
        .trim_start_matches('/')
        .to_string();
    let mut args: Vec<String> = vec!["-d".into(), "--name".into(), name];
    let mut notes = Vec::new();

    // What the container has today, kept.
    if let Some(rp) = &hc.restart_policy {
        match rp.name {
            Some(RestartPolicyNameEnum::ALWAYS) | Some(RestartPolicyNameEnum::UNLESS_STOPPED) => {
                args.extend(["--restart".into(), "on-failure:5".into()]);
                notes.push("restart policy changed to on-failure:5 (CIS 5.15); keep unless-stopped if the service must survive daemon restarts".into());
            }
            Some(RestartPolicyNameEnum::ON_FAILURE) => {
                args.extend([
                    "--restart".into(),
                    format!(
                        "on-failure:{}",
                        rp.maximum_retry_count.unwrap_or(5).clamp(1, 5)
                    ),
                ]);
            }
            _ => {}
        }
    }
    let image_env: BTreeSet<String> = img.env.clone().unwrap_or_default().into_iter().collect();
    for e in cfg.env.clone().unwrap_or_default() {
        if !image_env.contains(&e) {
            args.extend(["-e".into(), e]);
        }
    }
    if let Some(ports) = &hc.port_bindings {
        let mut ps: Vec<String> = Vec::new();
        for (cport, bindings) in ports {
            for b in bindings.iter().flatten() {
                let hip = b.host_ip.clone().unwrap_or_default();
                let hp = b.host_port.clone().unwrap_or_default();
                ps.push(if hip.is_empty() {
                    format!("{hp}:{cport}")
                } else {
                    format!("{hip}:{hp}:{cport}")
                });
                if hip.is_empty() || hip == "0.0.0.0" {
                    notes.push(format!("port {cport} is published on every host address; bind it to one (-p 127.0.0.1:{hp}:{cport}) unless it must be public (CIS 5.14)"));
                }
            }
        }
        ps.sort();
        for p in ps {
            args.extend(["-p".into(), p]);
        }
    }
    for m in inspect.mounts.clone().unwrap_or_default() {
        let dst = m.destination.clone().unwrap_or_default();
        let ro = if m.rw == Some(false) { ":ro" } else { "" };
        match m.typ.as_deref() {
            Some("bind") => {
                args.extend([
                    "-v".into(),
                    format!("{}:{dst}{ro}", m.source.clone().unwrap_or_default()),
                ]);
            }
            Some("volume") => {
                args.extend([
                    "-v".into(),
                    format!("{}:{dst}{ro}", m.name.clone().unwrap_or_default()),
                ]);
            }
            _ => {}
        }
    }
    let net = hc.network_mode.clone().unwrap_or_default();
    if !net.is_empty() && net != "default" && net != "bridge" {
        args.extend(["--network".into(), net.clone()]);
    } else {
        notes.push("the container is on Docker's default bridge: create a network for the application (docker network create app-net) and add --network app-net (CIS 5.30)".into());
    }
    if let Some(u) = cfg
        .user
        .clone()
        .filter(|u| !u.is_empty() && Some(u) != img.user.as_ref())
    {
        args.extend(["--user".into(), u]);
    }

    // Capabilities.
    let used = rec.used_capabilities();
    let cap_add = used.as_ref().map(|u| u.iter().cloned().collect::<Vec<_>>());
    match &cap_add {
        Some(c) => {
            args.extend(["--cap-drop".into(), "ALL".into()]);
            for cap in c {
                args.extend(["--cap-add".into(), cap.clone()]);
            }
            let running_as_root = cfg
                .user
                .as_deref()
                .is_none_or(|u| u.is_empty() || u == "0" || u == "root");
            if c.is_empty() && running_as_root {
                notes.push("no capability was used: the workload may also run as a non-root user (--user 10001:10001) if its files allow it".into());
            }
        }
        None => notes.push(format!(
            "capability use was not observed ({}); the capability set stays as it is",
            rec.capabilities_unavailable
                .as_deref()
                .unwrap_or("not recorded")
        )),
    }

    // Read-only root with tmpfs where writes were seen.
    let (tmpfs, write_notes) = tmpfs_dirs(rec);
    notes.extend(write_notes);
    args.push("--read-only".into());
    for d in &tmpfs {
        args.extend(["--tmpfs".into(), format!("{d}:rw,nosuid,nodev,size=64m")]);
    }

    // Limits from peaks.
    let memory_bytes = rec
        .peaks
        .memory_bytes
        .map(|p| round_up(((p as f64) * opts.headroom) as u64, 16 * MIB).max(64 * MIB));
    if let Some(m) = memory_bytes {
        args.extend([
            "--memory".into(),
            format!("{}m", m / MIB),
            "--memory-swap".into(),
            format!("{}m", m / MIB),
        ]);
    } else {
        notes.push("memory use was not measured (no memory cgroup): set --memory by hand".into());
    }
    let cpus = rec
        .peaks
        .cpu_cores
        .map(|c| ((c * opts.headroom * 10.0).ceil() / 10.0).max(0.1));
    if let Some(c) = cpus {
        args.extend(["--cpus".into(), format!("{c:.1}")]);
    }
    let pids_limit = rec
        .peaks
        .pids
        .map(|p| (((p as f64) * opts.headroom).ceil() as u64 + 10).max(32));
    if let Some(p) = pids_limit {
        args.extend(["--pids-limit".into(), p.to_string()]);
    }

    let io = io_limits(rec, opts.headroom, &mut notes);
    if let Some(l) = &io {
        args.extend([
            "--device-read-bps".into(),
            format!("{}:{}mb", l.device, l.read_bps / MIB),
            "--device-write-bps".into(),
            format!("{}:{}mb", l.device, l.write_bps / MIB),
            "--device-read-iops".into(),
            format!("{}:{}", l.device, l.read_iops),
            "--device-write-iops".into(),
            format!("{}:{}", l.device, l.write_iops),
        ]);
    }

    args.extend(["--security-opt".into(), "no-new-privileges".into()]);
    if let Some(p) = &opts.profile_path {
        args.extend(["--security-opt".into(), format!("seccomp={p}")]);
    }
    match &opts.apparmor_profile {
        Some(name) => args.extend(["--security-opt".into(), format!("apparmor={name}")]),
        None => notes.push(format!(
            "on hosts with AppArmor, confine files, executables and sockets too: rampart profile apparmor {0} -o {0}.apparmor; apparmor_parser -r {0}.apparmor; then pass --apparmor rampart-{0} to rampart harden",
            rec.container
        )),
    }
    if !opts.daemon_userns_remap {
        notes.push("enable user-namespace remapping for every container: rampart harden host --userns --apply (\"userns-remap\": \"default\" in /etc/docker/daemon.json), then restart dockerd (container root becomes an unprivileged host uid)".into());
    }
    if !rec.restarted {
        notes.push("start-up was not recorded (no --restart): the seccomp profile may miss what the container needs to start".into());
    }
    for w in &rec.warnings {
        notes.push(w.clone());
    }

    // Image and command.
    let entry = cfg.entrypoint.clone().unwrap_or_default();
    if entry != img.entrypoint.clone().unwrap_or_default() && !entry.is_empty() {
        args.extend(["--entrypoint".into(), entry[0].clone()]);
    }
    args.push(cfg.image.clone().unwrap_or_default());
    let cmd = cfg.cmd.clone().unwrap_or_default();
    if entry.len() > 1 && entry != img.entrypoint.clone().unwrap_or_default() {
        args.extend(entry[1..].iter().cloned());
    }
    if cmd != img.cmd.clone().unwrap_or_default()
        || entry != img.entrypoint.clone().unwrap_or_default()
    {
        args.extend(cmd);
    }
    Proposal {
        run_args: args,
        tmpfs,
        cap_add,
        memory_bytes,
        cpus,
        pids_limit,
        io,
        notes,
    }
}

/// IO limits from the recording's peaks: bytes rounded up to whole MiB, operations to tens,
/// never below the floors.
fn io_limits(rec: &Recording, headroom: f64, notes: &mut Vec<String>) -> Option<IoLimits> {
    let p = &rec.peaks;
    let (Some(rb), Some(wb), Some(ri), Some(wi)) = (
        p.io_read_bps,
        p.io_write_bps,
        p.io_read_iops,
        p.io_write_iops,
    ) else {
        notes.push(
            "block IO was not measured (no readable io.stat or blkio counters): set --device-read-bps/--device-write-bps by hand".into(),
        );
        return None;
    };
    // The disk is missing: the recording's warnings (in the notes) say why.
    let device = rec.block_device.as_ref()?.path.clone();
    let scale = |v: u64| ((v as f64) * headroom).ceil() as u64;
    let bps = |v: u64| round_up(scale(v).max(1), MIB).max(MIN_BPS);
    let iops = |v: u64| round_up(scale(v).max(1), 10).max(MIN_IOPS);
    Some(IoLimits {
        device,
        read_bps: bps(rb),
        write_bps: bps(wb),
        read_iops: iops(ri),
        write_iops: iops(wi),
    })
}

impl Proposal {
    /// The `docker run` command line, shell-quoted.
    pub fn run_line(&self) -> String {
        let mut s = String::from("docker run");
        for a in &self.run_args {
            s.push(' ');
            s.push_str(&shell_quote(a));
        }
        s
    }

    /// A compose service equivalent to the run line.
    pub fn compose(&self) -> String {
        let mut svc = Mapping::new();
        let mut name = String::from("app");
        let mut env = Vec::new();
        let mut ports = Vec::new();
        let mut volumes = Vec::new();
        let mut cap_add = Vec::new();
        let mut security_opt = Vec::new();
        let mut rest: Vec<String> = Vec::new();
        let mut image = None;
        let mut entrypoint = None;
        let mut it = self.run_args.iter().peekable();
        while let Some(a) = it.next() {
            let mut val = || it.next().cloned().unwrap_or_default();
            match a.as_str() {
                "-d" | "--read-only" => {}
                "--name" => name = val(),
                "--restart" => {
                    svc.insert("restart".into(), Value::String(val()));
                }
                "-e" => env.push(Value::String(val())),
                "-p" => ports.push(Value::String(val())),
                "-v" => volumes.push(Value::String(val())),
                "--network" => {
                    svc.insert(
                        "networks".into(),
                        Value::Sequence(vec![Value::String(val())]),
                    );
                }
                "--user" => {
                    svc.insert("user".into(), Value::String(val()));
                }
                "--cap-drop" => {
                    svc.insert(
                        "cap_drop".into(),
                        Value::Sequence(vec![Value::String(val())]),
                    );
                }
                "--cap-add" => cap_add.push(Value::String(val())),
                "--tmpfs"
                | "--memory"
                | "--memory-swap"
                | "--cpus"
                | "--pids-limit"
                | "--device-read-bps"
                | "--device-write-bps"
                | "--device-read-iops"
                | "--device-write-iops" => {
                    let _ = val();
                }
                "--security-opt" => security_opt.push(Value::String(val().replacen('=', ":", 1))),
                "--entrypoint" => entrypoint = Some(val()),
                _ if image.is_none() => image = Some(a.clone()),
                _ => rest.push(a.clone()),
            }
        }
        svc.insert("image".into(), Value::String(image.unwrap_or_default()));
        if let Some(e) = entrypoint {
            svc.insert("entrypoint".into(), Value::Sequence(vec![Value::String(e)]));
        }
        if !rest.is_empty() {
            svc.insert(
                "command".into(),
                Value::Sequence(rest.into_iter().map(Value::String).collect()),
            );
        }
        if !env.is_empty() {
            svc.insert("environment".into(), Value::Sequence(env));
        }
        if !ports.is_empty() {
            svc.insert("ports".into(), Value::Sequence(ports));
        }
        if !volumes.is_empty() {
            svc.insert("volumes".into(), Value::Sequence(volumes));
        }
        svc.insert("read_only".into(), Value::Bool(true));
        if !self.tmpfs.is_empty() {
            svc.insert(
                "tmpfs".into(),
                Value::Sequence(
                    self.tmpfs
                        .iter()
                        .map(|d| Value::String(format!("{d}:rw,nosuid,nodev,size=64m")))
                        .collect(),
                ),
            );
        }
        if !cap_add.is_empty() {
            svc.insert("cap_add".into(), Value::Sequence(cap_add));
        }
        if !security_opt.is_empty() {
            svc.insert("security_opt".into(), Value::Sequence(security_opt));
        }
        if let Some(m) = self.memory_bytes {
            svc.insert("mem_limit".into(), Value::String(format!("{}m", m / MIB)));
            svc.insert(
                "memswap_limit".into(),
                Value::String(format!("{}m", m / MIB)),
            );
        }
        if let Some(c) = self.cpus {
            svc.insert("cpus".into(), Value::String(format!("{c:.1}")));
        }
        if let Some(p) = self.pids_limit {
            svc.insert("pids_limit".into(), Value::Number(p.into()));
        }
        if let Some(l) = &self.io {
            let one = |rate: Value| {
                let mut m = Mapping::new();
                m.insert("path".into(), Value::String(l.device.clone()));
                m.insert("rate".into(), rate);
                Value::Sequence(vec![Value::Mapping(m)])
            };
            let mut b = Mapping::new();
            b.insert(
                "device_read_bps".into(),
                one(Value::String(format!("{}mb", l.read_bps / MIB))),
            );
            b.insert(
                "device_write_bps".into(),
                one(Value::String(format!("{}mb", l.write_bps / MIB))),
            );
            b.insert(
                "device_read_iops".into(),
                one(Value::Number(l.read_iops.into())),
            );
            b.insert(
                "device_write_iops".into(),
                one(Value::Number(l.write_iops.into())),
            );
            svc.insert("blkio_config".into(), Value::Mapping(b));
        }
        let mut services = Mapping::new();
        services.insert(Value::String(name), Value::Mapping(svc));
        let mut root = Mapping::new();
        root.insert("services".into(), Value::Mapping(services));
        serde_yaml::to_string(&Value::Mapping(root)).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::learn::{Change, LearnMode, Peaks};
    use crate::seccomp::NamedSyscalls;
    use rampart_container::models::{ContainerConfig, HostConfig, ImageConfig};

    fn recording(changes: &[(&str, char)]) -> Recording {
        Recording {
            container: "web".into(),
            container_id: "id".into(),
            image: "img".into(),
            mode: LearnMode::Unconfined,
            restarted: true,
            duration_ms: 1000,
            syscalls: NamedSyscalls::default(),
            capabilities: Some(
                [
                    (
                        "NET_BIND_SERVICE".to_string(),
                        crate::learn::CapUse {
                            granted: 1,
                            denied: 0,
                        },
                    ),
                    (
                        "SYS_ADMIN".to_string(),
                        crate::learn::CapUse {
                            granted: 0,
                            denied: 3,
                        },
                    ),
                ]
                .into_iter()
                .collect(),
            ),
            capabilities_unavailable: None,
            changes: changes
                .iter()
                .map(|(p, k)| Change {
                    path: p.to_string(),
                    kind: *k,
                })
                .collect(),
            peaks: Peaks {
                memory_bytes: Some(100 * MIB),
                pids: Some(10),
                cpu_cores: Some(0.33),
                io_read_bps: Some(0),
                io_write_bps: Some(40 * MIB + 1),
                io_read_iops: Some(3),
                io_write_iops: Some(333),
            },
            block_device: Some(crate::blockdev::BlockDevice {
                path: "/dev/vda".into(),
                major: 254,
                minor: 0,
            }),
            lost: 0,
            warnings: vec![],
        }
    }

    #[test]
    fn tmpfs_for_added_and_scratch_dirs_and_notes_for_image_dirs() {
        let rec = recording(&[
            ("/tmp", 'C'),
            ("/tmp/a.txt", 'A'),
            ("/var", 'C'),
            ("/var/cache", 'C'),
            ("/var/cache/app", 'A'),
            ("/var/cache/app/sub", 'A'),
            ("/var/cache/app/sub/f", 'A'),
            ("/app", 'C'),
            ("/app/state.db", 'A'),
            ("/etc/motd", 'D'),
        ]);
        let (dirs, notes) = tmpfs_dirs(&rec);
        assert_eq!(dirs, vec!["/tmp".to_string(), "/var/cache/app".to_string()]);
        assert!(
            notes
                .iter()
                .any(|n| n.contains("writes /app/state.db in /app")),
            "{notes:?}"
        );
        assert!(
            notes.iter().any(|n| n.contains("deletes /etc/motd")),
            "{notes:?}"
        );
    }

    #[test]
    fn proposal_drops_unused_capabilities_and_sizes_limits() {
        let inspect = ContainerInspectResponse {
            name: Some("/web".into()),
            config: Some(ContainerConfig {
                image: Some("busybox:1".into()),
                cmd: Some(vec!["httpd".into(), "-f".into()]),
                env: Some(vec!["PATH=/bin".into(), "MODE=prod".into()]),
                ..ContainerConfig::default()
            }),
            host_config: Some(HostConfig {
                network_mode: Some("app-net".into()),
                ..HostConfig::default()
            }),
            ..ContainerInspectResponse::default()
        };
        let image = ImageInspect {
            config: Some(ImageConfig {
                env: Some(vec!["PATH=/bin".into()]),
                cmd: Some(vec!["sh".into()]),
                ..ImageConfig::default()
            }),
            ..ImageInspect::default()
        };
        let p = propose(
            &inspect,
            &image,
            &recording(&[("/tmp/x", 'A'), ("/tmp", 'C')]),
            &HardenOptions {
                profile_path: Some("/etc/rampart/web.json".into()),
                apparmor_profile: Some("rampart-web".into()),
                ..HardenOptions::default()
            },
        );
        let line = p.run_line();
        assert!(line.starts_with("docker run -d --name web -e MODE=prod --network app-net --cap-drop ALL --cap-add NET_BIND_SERVICE --read-only --tmpfs /tmp:rw,nosuid,nodev,size=64m"), "{line}");
        assert!(
            !line.contains("SYS_ADMIN"),
            "denied checks are not needs: {line}"
        );
        // 100 MiB * 1.5 = 150 -> 160 (16 MiB steps); 0.33 * 1.5 = 0.495 -> 0.5; 10 * 1.5 + 10 = 25 -> 32.
        assert!(
            line.contains("--memory 160m --memory-swap 160m --cpus 0.5 --pids-limit 32"),
            "{line}"
        );
        // Reads 0 -> the 10 MiB/s floor; writes 40 MiB/s + 1 B * 1.5 -> 61 MiB/s (whole MiB
        // up); 3 IOPS -> the 100 floor; 333 * 1.5 = 499.5 -> 500.
        assert!(
            line.contains("--device-read-bps /dev/vda:10mb --device-write-bps /dev/vda:61mb --device-read-iops /dev/vda:100 --device-write-iops /dev/vda:500 --security-opt"),
            "{line}"
        );
        assert!(line.contains("--security-opt no-new-privileges --security-opt seccomp=/etc/rampart/web.json --security-opt apparmor=rampart-web busybox:1 httpd -f"), "{line}");
        let compose = p.compose();
        let v: serde_yaml::Value = serde_yaml::from_str(&compose).expect("yaml");
        let svc = &v["services"]["web"];
        assert_eq!(svc["image"], "busybox:1");
        assert_eq!(svc["read_only"], true);
        assert_eq!(svc["cap_drop"][0], "ALL");
        assert_eq!(svc["cap_add"][0], "NET_BIND_SERVICE");
        assert_eq!(svc["security_opt"][1], "seccomp:/etc/rampart/web.json");
        assert_eq!(svc["security_opt"][2], "apparmor:rampart-web");
        assert_eq!(svc["mem_limit"], "160m");
        assert_eq!(svc["pids_limit"], 32);
        assert_eq!(svc["command"][0], "httpd");
        let b = &svc["blkio_config"];
        assert_eq!(b["device_read_bps"][0]["path"], "/dev/vda");
        assert_eq!(b["device_read_bps"][0]["rate"], "10mb");
        assert_eq!(b["device_write_bps"][0]["rate"], "61mb");
        assert_eq!(b["device_read_iops"][0]["rate"], 100);
        assert_eq!(b["device_write_iops"][0]["path"], "/dev/vda");
        assert_eq!(b["device_write_iops"][0]["rate"], 500);
        // Nothing of the IO flags leaks into the command.
        assert_eq!(svc["command"].as_sequence().map(Vec::len), Some(2));
    }

    #[test]
    fn no_io_limits_without_measured_io_or_a_disk() {
        let mut rec = recording(&[]);
        rec.peaks.io_write_bps = None;
        let mut notes = Vec::new();
        assert_eq!(io_limits(&rec, 1.5, &mut notes), None);
        assert!(
            notes
                .iter()
                .any(|n| n.contains("block IO was not measured")),
            "{notes:?}"
        );
        let mut rec = recording(&[]);
        rec.block_device = None;
        let mut notes = Vec::new();
        assert_eq!(io_limits(&rec, 1.5, &mut notes), None);
        // Huge peaks saturate instead of overflowing.
        let mut rec = recording(&[]);
        rec.peaks.io_read_bps = Some(u64::MAX / 2);
        rec.peaks.io_read_iops = Some(u64::MAX);
        let l = io_limits(&rec, 10.0, &mut Vec::new()).expect("limits");
        assert!(l.read_bps >= MIN_BPS && l.read_iops >= MIN_IOPS, "{l:?}");
    }

    #[test]
    fn quoting() {
        assert_eq!(shell_quote("a b"), "'a b'");
        assert_eq!(shell_quote("it's"), "'it'\\''s'");
        assert_eq!(shell_quote("/x:ro"), "/x:ro");
    }
}
