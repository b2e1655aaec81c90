//! Container checks (CIS Docker Benchmark section 5 and Rampart's own): what Docker was told
//! (`docker inspect`) and what the kernel actually applies to the container's main process
//! (/proc/PID/status capabilities, seccomp mode and no_new_privs, uid_map, namespaces, the root
//! mount's options, the cgroup limits). Where both exist the measured value decides and the
//! configured one is shown beside it as evidence.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

use rampart_container::models::{ContainerInspectResponse, RestartPolicyNameEnum};
use rampart_event::{ComplianceResource, ResourceKind, Severity};

use crate::caps;
use crate::cgroupfs::{self, Mounts};
use crate::check::*;
use crate::error::AuditError;
use crate::image::{registry_of, ImageRefInfo};

/// What the container checks need to know about the host and the daemon, measured once.
#[derive(Debug, Clone, Default)]
pub struct AuditContext {
    /// AppArmor is enabled in the kernel (`/sys/module/apparmor/parameters/enabled`).
    pub apparmor: bool,
    /// SELinux is enabled (`/sys/fs/selinux/enforce` exists).
    pub selinux: bool,
    /// The daemon remaps users (`name=userns` in `docker info` security options).
    pub daemon_userns_remap: bool,
    /// The daemon sets no-new-privileges by default (daemon.json or --no-new-privileges).
    pub daemon_no_new_privileges: bool,
    /// Registries images may come from; empty = the registry check is not applicable.
    pub allowed_registries: Vec<String>,
    /// Highest capability number of this kernel (`/proc/sys/kernel/cap_last_cap`).
    pub last_cap: u32,
    /// procfs root (`/proc`).
    pub proc_root: PathBuf,
    pub mounts: Mounts,
}

impl AuditContext {
    /// Measures the host side: LSMs, cap_last_cap, cgroup mounts. The daemon fields come from
    /// the caller (`docker info` and the daemon configuration).
    pub fn measure_host(proc_root: &Path, sys_root: &Path) -> AuditContext {
        let apparmor = fs::read_to_string(sys_root.join("module/apparmor/parameters/enabled"))
            .is_ok_and(|v| v.trim() == "Y");
        let selinux = sys_root.join("fs/selinux/enforce").exists();
        let last_cap = fs::read_to_string(proc_root.join("sys/kernel/cap_last_cap"))
            .ok()
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(40);
        AuditContext {
            apparmor,
            selinux,
            last_cap,
            proc_root: proc_root.to_path_buf(),
            mounts: Mounts::current(),
            ..AuditContext::default()
        }
    }
}

/// Namespaces a container may share with the host.
pub const NAMESPACES: [&str; 5] = ["net", "pid", "ipc", "uts", "user"];

/// What /proc says about the container's main process.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProcessFacts {
    pub pid: u32,
    /// Effective uid as the host sees it.
    pub host_uid: Option<u32>,
    /// `/proc/PID/uid_map`: (inside, outside, count).
    pub uid_map: Vec<(u32, u32, u32)>,
    pub cap_eff: Option<u64>,
    pub cap_bnd: Option<u64>,
    /// 0 disabled, 1 strict, 2 filter.
    pub seccomp: Option<u8>,
    pub no_new_privs: Option<bool>,
    /// Namespaces (of [`NAMESPACES`]) the process shares with the auditing process (the host).
    pub shared_namespaces: BTreeSet<&'static str>,
    /// The root mount is read-only.
    pub root_read_only: Option<bool>,
    /// The AppArmor label (`docker-default (enforce)`, `unconfined`).
    pub apparmor_label: Option<String>,
    /// Commands of every process in the container.
    pub commands: BTreeSet<String>,
    /// Limits applied by the cgroup: `Some(None)` unlimited, `None` unreadable.
    pub memory_limit: Option<Option<u64>>,
    pub pids_limit: Option<Option<u64>>,
}

impl ProcessFacts {
    /// The uid inside the container of the effective host uid, through `uid_map`.
    pub fn inside_uid(&self) -> Option<u32> {
        let host = self.host_uid?;
        if self.uid_map.is_empty() {
            return Some(host);
        }
        self.uid_map.iter().find_map(|&(inside, outside, count)| {
            (host >= outside && u64::from(host) < u64::from(outside) + u64::from(count))
                .then(|| inside + (host - outside))
        })
    }

    /// The host uid container root maps to.
    pub fn root_host_uid(&self) -> Option<u32> {
        self.uid_map
            .iter()
            .find_map(|&(inside, outside, count)| (inside == 0 && count > 0).then_some(outside))
    }

    /// Reads process `pid` under `proc_root`, comparing its namespaces with this process's and
    /// listing the processes whose cgroup names `container_id`.
    pub fn read(
        proc_root: &Path,
        pid: u32,
        container_id: &str,
        mounts: &Mounts,
    ) -> Option<ProcessFacts> {
        let dir = proc_root.join(pid.to_string());
        let status = fs::read_to_string(dir.join("status")).ok()?;
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name).map(|v| v.trim().to_string()))
        };
        let mut f = ProcessFacts {
            pid,
            host_uid: field("Uid:").and_then(|v| v.split_whitespace().nth(1)?.parse().ok()),
            cap_eff: field("CapEff:").and_then(|v| caps::parse_mask(&v)),
            cap_bnd: field("CapBnd:").and_then(|v| caps::parse_mask(&v)),
            seccomp: field("Seccomp:").and_then(|v| v.parse().ok()),
            no_new_privs: field("NoNewPrivs:").map(|v| v == "1"),
            ..ProcessFacts::default()
        };
        if let Ok(map) = fs::read_to_string(dir.join("uid_map")) {
            f.uid_map = map
                .lines()
                .filter_map(|l| {
                    let mut it = l.split_whitespace().map(|x| x.parse::<u32>().ok());
                    Some((it.next()??, it.next()??, it.next()??))
                })
                .collect();
        }
        for ns in NAMESPACES {
            let mine = fs::read_link(dir.join("ns").join(ns)).ok();
            // This process's namespaces stand for the host's: the audit runs on the host (PID 1
            // may be unreadable even to root, e.g. in a VM whose init is protected).
            let host = fs::read_link(proc_root.join("self/ns").join(ns)).ok();
            if mine.is_some() && mine == host {
                f.shared_namespaces.insert(ns);
            }
        }
        if let Ok(mi) = fs::read_to_string(dir.join("mountinfo")) {
            f.root_read_only = mi.lines().find_map(|l| {
                let mut parts = l.split(' ');
                let mount_point = parts.nth(4)?;
                let opts = parts.next()?;
                (mount_point == "/").then(|| opts.split(',').any(|o| o == "ro"))
            });
        }
        f.apparmor_label = fs::read_to_string(dir.join("attr/apparmor/current"))
            .or_else(|_| fs::read_to_string(dir.join("attr/current")))
            .ok()
            .map(|s| s.trim_end_matches(['\0', '\n']).to_string())
            .filter(|s| !s.is_empty());
        if let Ok(entries) = fs::read_dir(proc_root) {
            for e in entries.flatten() {
                let name = e.file_name();
                let Some(p) = name
                    .to_str()
                    .filter(|n| n.bytes().all(|b| b.is_ascii_digit()))
                else {
                    continue;
                };
                let cg = fs::read_to_string(e.path().join("cgroup")).unwrap_or_default();
                if !container_id.is_empty() && cg.contains(container_id) {
                    if let Ok(comm) = fs::read_to_string(proc_root.join(p).join("comm")) {
                        f.commands.insert(comm.trim().to_string());
                    }
                }
            }
        }
        f.memory_limit = mounts
            .dir_of(proc_root, pid, "memory")
            .and_then(|d| cgroupfs::memory_limit(&d));
        f.pids_limit = mounts
            .dir_of(proc_root, pid, "pids")
            .and_then(|d| cgroupfs::pids_limit(&d));
        Some(f)
    }
}

/// Everything the checks look at for one container.
#[derive(Debug, Clone)]
pub struct ContainerFacts {
    pub inspect: ContainerInspectResponse,
    /// The container's image as the registry and the daemon know it.
    pub image: ImageRefInfo,
    /// Measured facts of the main process; `None` when the container is not running.
    pub process: Option<ProcessFacts>,
    /// The `docker exec` sessions the daemon still knows of (running ones, and ended ones
    /// until dockerd forgets them).
    pub execs: Vec<ExecFacts>,
    /// The image id the container's configured reference names now; differs from
    /// `image.id` when the tag was pulled or built again after the container was created.
    pub current_image_id: Option<String>,
}

/// One `docker exec` session as dockerd records it (`GET /exec/{id}/json`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecFacts {
    pub id: String,
    pub privileged: bool,
    /// `--user` as given; empty means the container's user.
    pub user: String,
    pub command: Vec<String>,
    pub running: bool,
}

impl ContainerFacts {
    pub fn id(&self) -> &str {
        self.inspect.id.as_deref().unwrap_or_default()
    }

    pub fn name(&self) -> &str {
        self.inspect
            .name
            .as_deref()
            .unwrap_or_default()
            .trim_start_matches('/')
    }

    pub fn resource(&self) -> ComplianceResource {
        ComplianceResource {
            kind: ResourceKind::Container,
            uid: self.id().to_string(),
            name: self.name().to_string(),
        }
    }

    fn security_opts(&self) -> Vec<String> {
        self.inspect
            .host_config
            .as_ref()
            .and_then(|h| h.security_opt.clone())
            .unwrap_or_default()
    }

    /// The value of security option `key` (`seccomp`, `apparmor`, `label`), accepting both
    /// `key=value` and the old `key:value`.
    fn security_opt(&self, key: &str) -> Option<String> {
        self.security_opts().into_iter().find_map(|o| {
            let rest = o.strip_prefix(key)?;
            rest.strip_prefix('=')
                .or_else(|| rest.strip_prefix(':'))
                .map(str::to_string)
        })
    }
}

/// Reads container `name` (id, name or prefix) from the daemon and /proc.
pub async fn gather(
    docker: &rampart_container::DockerClient,
    name: &str,
    ctx: &AuditContext,
) -> Result<ContainerFacts, AuditError> {
    let inspect = docker
        .inspect_container(name)
        .await
        .map_err(|e| AuditError::docker("inspect container", name, e))?;
    let configured = inspect
        .config
        .as_ref()
        .and_then(|c| c.image.clone())
        .unwrap_or_default();
    let image_id = inspect.image.clone().unwrap_or_default();
    let digests = match docker.inspect_image(&image_id).await {
        Ok(i) => i.repo_digests.unwrap_or_default(),
        Err(_) => Vec::new(),
    };
    let image = ImageRefInfo {
        reference: configured,
        id: image_id,
        repo_digests: digests,
    };
    let running = inspect
        .state
        .as_ref()
        .and_then(|s| s.running)
        .unwrap_or(false);
    let pid = inspect
        .state
        .as_ref()
        .and_then(|s| s.pid)
        .and_then(|p| u32::try_from(p).ok())
        .filter(|p| *p > 0);
    let id = inspect.id.clone().unwrap_or_default();
    let process = match (running, pid) {
        (true, Some(pid)) => ProcessFacts::read(&ctx.proc_root, pid, &id, &ctx.mounts),
        _ => None,
    };
    let mut execs = Vec::new();
    for exec_id in inspect.exec_ids.clone().unwrap_or_default() {
        // An exec ended and forgotten between the two calls is simply gone.
        let Ok(e) = docker.inspect_exec(&exec_id).await else {
            continue;
        };
        let pc = e.process_config.unwrap_or_default();
        let mut command = pc.entrypoint.into_iter().collect::<Vec<_>>();
        command.extend(pc.arguments.unwrap_or_default());
        execs.push(ExecFacts {
            id: exec_id,
            privileged: pc.privileged.unwrap_or(false),
            user: pc.user.unwrap_or_default(),
            command,
            running: e.running.unwrap_or(false),
        });
    }
    let current_image_id = if image.reference.is_empty() || image.reference.starts_with("sha256:") {
        None
    } else {
        docker
            .inspect_image(&image.reference)
            .await
            .ok()
            .and_then(|i| i.id)
    };
    Ok(ContainerFacts {
        inspect,
        image,
        process,
        execs,
        current_image_id,
    })
}

fn describe_exec(e: &ExecFacts) -> String {
    format!(
        "{} {:?}{}{}",
        short_id(&e.id),
        e.command.join(" "),
        if e.user.is_empty() {
            String::new()
        } else {
            format!(" --user {}", e.user)
        },
        if e.running { " (running)" } else { "" }
    )
}

fn short_id(id: &str) -> &str {
    let id = id.strip_prefix("sha256:").unwrap_or(id);
    id.get(..12).unwrap_or(id)
}

/// `root`, uid 0, or `0:GID` / `root:GROUP`.
fn is_root_user(user: &str) -> bool {
    let name = user.split(':').next().unwrap_or_default();
    name.is_empty() || name == "root" || name == "0"
}

/// Host directories a container must not see (CIS 5.6, with the directories Docker and
/// root's home keep secrets in).
const SENSITIVE_DIRS: [&str; 15] = [
    "/",
    "/boot",
    "/dev",
    "/etc",
    "/lib",
    "/lib64",
    "/proc",
    "/sys",
    "/usr",
    "/var",
    "/run",
    "/var/run",
    "/var/lib/docker",
    "/root",
    "/home",
];
/// Sub-trees where any bind mount is sensitive.
const SENSITIVE_TREES: [&str; 6] = [
    "/proc/",
    "/sys/",
    "/boot/",
    "/var/lib/docker/",
    "/root/",
    "/etc/",
];
/// Files under sensitive trees that are routinely and harmlessly shared read-only.
const HARMLESS: [&str; 4] = [
    "/etc/localtime",
    "/etc/timezone",
    "/etc/ssl/certs",
    "/etc/ca-certificates",
];
/// Paths of container runtime sockets.
const RUNTIME_SOCKETS: [&str; 6] = [
    "/var/run/docker.sock",
    "/run/docker.sock",
    "/run/containerd/containerd.sock",
    "/var/run/containerd/containerd.sock",
    "/run/podman/podman.sock",
    "/run/crio/crio.sock",
];

fn yes_no(b: bool) -> &'static str {
    if b {
        "yes"
    } else {
        "no"
    }
}

/// All checks of one container.
pub fn checks(f: &ContainerFacts, ctx: &AuditContext) -> Vec<Outcome> {
    let hc = f.inspect.host_config.clone().unwrap_or_default();
    let cfg = f.inspect.config.clone().unwrap_or_default();
    let p = f.process.as_ref();
    let mounts = f.inspect.mounts.clone().unwrap_or_default();
    let mut out = Vec::new();

    // 5.2 AppArmor
    out.push(if !ctx.apparmor {
        C_5_2.not_applicable("AppArmor is not enabled on this host (/sys/module/apparmor/parameters/enabled is not Y); see RAMPART-H-LSM")
    } else {
        let configured = f.inspect.app_armor_profile.clone().unwrap_or_default();
        let label = p.and_then(|p| p.apparmor_label.clone());
        let unconfined = match &label {
            Some(l) => l == "unconfined",
            None => configured.is_empty() || configured == "unconfined",
        };
        let which = match label.as_deref().unwrap_or(configured.as_str()) {
            l if l.starts_with("docker-default") => ": Docker's default profile",
            l if l.starts_with("rampart-") => ": a profile learned by Rampart (rampart profile apparmor)",
            _ => "",
        };
        C_5_2.check(
            !unconfined,
            format!(
                "AppArmorProfile={configured:?}, process label {}{which}",
                label.as_deref().unwrap_or("unreadable")
            ),
        )
    });

    // 5.3 SELinux
    out.push(if !ctx.selinux {
        C_5_3.not_applicable(
            "SELinux is not enabled on this host (no /sys/fs/selinux/enforce); see RAMPART-H-LSM",
        )
    } else {
        let disabled = f.security_opt("label").is_some_and(|v| v == "disable");
        let label = f.inspect.process_label.clone().unwrap_or_default();
        C_5_3.check(
            !disabled && !label.is_empty(),
            format!(
                "SecurityOpt label={:?}, ProcessLabel={label:?}",
                f.security_opt("label")
            ),
        )
    });

    // 5.4 capabilities
    let cap_add = hc.cap_add.clone().unwrap_or_default();
    let cap_drop = hc.cap_drop.clone().unwrap_or_default();
    let default_set: BTreeSet<String> =
        caps::DOCKER_DEFAULT.iter().map(|s| s.to_string()).collect();
    let bounding: Option<BTreeSet<String>> = p
        .and_then(|p| p.cap_bnd)
        .map(|m| caps::names_of(m).into_iter().collect());
    let extra: Vec<String> = match &bounding {
        Some(b) => b.difference(&default_set).cloned().collect(),
        None => cap_add
            .iter()
            .map(|c| c.trim_start_matches("CAP_").to_ascii_uppercase())
            .filter(|c| !default_set.contains(c))
            .collect(),
    };
    let dangerous: Vec<&String> = extra
        .iter()
        .filter(|c| caps::DANGEROUS.contains(&c.as_str()) || *c == "ALL")
        .collect();
    let cap_evidence = format!(
        "CapAdd={cap_add:?} CapDrop={cap_drop:?}; {} beyond Docker's default set: {}",
        if bounding.is_some() {
            "bounding set (/proc) has"
        } else {
            "configuration adds"
        },
        if extra.is_empty() {
            "none".to_string()
        } else {
            extra.join(",")
        }
    );
    out.push(if !dangerous.is_empty() {
        C_5_4.fail(cap_evidence)
    } else if !extra.is_empty() {
        C_5_4.fail(cap_evidence).with_severity(Severity::Medium)
    } else {
        C_5_4.pass(cap_evidence)
    });

    // 5.5 privileged (or privileged in all but name)
    let privileged = hc.privileged.unwrap_or(false);
    // CAP_SYS_ADMIN and CAP_SYS_MODULE without a seccomp filter reach the whole kernel
    // (mounts, namespaces, module loading): privileged whatever the flag says.
    let full = caps::full_mask(ctx.last_cap);
    let bnd = p.and_then(|p| p.cap_bnd).unwrap_or(0);
    let escape_caps = ["SYS_ADMIN", "SYS_MODULE"]
        .iter()
        .all(|c| caps::number(c).is_some_and(|n| bnd & (1u64 << n) != 0));
    let no_seccomp = p.and_then(|p| p.seccomp) == Some(0);
    out.push(if privileged {
        C_5_5.fail("HostConfig.Privileged=true")
    } else if escape_caps && no_seccomp {
        let missing = caps::names_of(full & !bnd);
        C_5_5.fail(format!(
            "HostConfig.Privileged=false, but the process holds {} of {} capabilities including SYS_ADMIN and SYS_MODULE (missing only [{}]) and has no seccomp filter (/proc/{}/status Seccomp: 0): privileged in all but name",
            bnd.count_ones(),
            full.count_ones(),
            missing.join(","),
            p.map_or(0, |p| p.pid)
        ))
    } else {
        C_5_5.pass("HostConfig.Privileged=false and the capability/seccomp set is not privileged-equivalent")
    });

    // 5.6 sensitive host directories
    let mut sensitive = Vec::new();
    let mut sensitive_rw = false;
    for m in &mounts {
        if m.typ.as_deref() != Some("bind") {
            continue;
        }
        let src = m.source.clone().unwrap_or_default();
        let src_trim = if src.len() > 1 {
            src.trim_end_matches('/')
        } else {
            src.as_str()
        };
        if RUNTIME_SOCKETS.contains(&src_trim) {
            continue; // 5.32
        }
        let is_sensitive = SENSITIVE_DIRS.contains(&src_trim)
            || (SENSITIVE_TREES.iter().any(|t| src_trim.starts_with(t))
                && !HARMLESS
                    .iter()
                    .any(|h| src_trim == *h || src_trim.starts_with(&format!("{h}/"))));
        if is_sensitive {
            let rw = m.rw.unwrap_or(true);
            sensitive_rw |= rw;
            sensitive.push(format!(
                "{}:{}{}",
                src_trim,
                m.destination.clone().unwrap_or_default(),
                if rw { " (read-write)" } else { " (read-only)" }
            ));
        }
    }
    out.push(if sensitive.is_empty() {
        C_5_6.pass("no bind mount of /, /boot, /dev, /etc, /lib, /proc, /sys, /usr, /var, /run, /root, /home or Docker's data root")
    } else {
        let o = C_5_6
            .fail(format!("host directories mounted: {}", sensitive.join(", ")))
            .with_remediation(format!(
                "Remove the bind mount(s) {} from docker run (-v/--mount), or mount a narrower path read-only",
                sensitive.join(", ")
            ));
        if sensitive_rw {
            o
        } else {
            o.with_severity(Severity::Medium)
        }
    });

    // 5.7 sshd
    out.push(match p {
        None => C_5_7.not_applicable("container is not running"),
        Some(p) => {
            let sshd = p
                .commands
                .iter()
                .any(|c| c == "sshd" || c.starts_with("sshd:"));
            C_5_7.check(
                !sshd,
                format!(
                    "processes in the container's cgroup: {}",
                    p.commands.iter().cloned().collect::<Vec<_>>().join(", ")
                ),
            )
        }
    });

    // 5.8 and 5.14 published ports
    let mut privileged_ports = Vec::new();
    let mut wildcard = Vec::new();
    let mut published = Vec::new();
    if let Some(ports) = f
        .inspect
        .network_settings
        .as_ref()
        .and_then(|n| n.ports.as_ref())
    {
        for (cport, bindings) in ports {
            for b in bindings.iter().flatten() {
                let hp = b.host_port.clone().unwrap_or_default();
                let hip = b.host_ip.clone().unwrap_or_default();
                published.push(format!("{hip}:{hp}->{cport}"));
                if hp.parse::<u32>().is_ok_and(|n| n > 0 && n < 1024) {
                    privileged_ports.push(format!("{hip}:{hp}->{cport}"));
                }
                if hip.is_empty() || hip == "0.0.0.0" || hip == "::" {
                    wildcard.push(format!(
                        "{}:{hp}->{cport}",
                        if hip.is_empty() { "*" } else { &hip }
                    ));
                }
            }
        }
    }
    published.sort();
    privileged_ports.sort();
    wildcard.sort();
    out.push(C_5_8.check(
        privileged_ports.is_empty(),
        if privileged_ports.is_empty() {
            format!(
                "published ports: {}",
                if published.is_empty() {
                    "none".into()
                } else {
                    published.join(", ")
                }
            )
        } else {
            format!("host ports below 1024: {}", privileged_ports.join(", "))
        },
    ));
    out.push(C_5_14.check(
        wildcard.is_empty(),
        if wildcard.is_empty() {
            format!(
                "published ports: {}",
                if published.is_empty() {
                    "none".into()
                } else {
                    published.join(", ")
                }
            )
        } else {
            format!("published on every host address: {}", wildcard.join(", "))
        },
    ));

    // 5.10, 5.16, 5.17, 5.21 host namespaces
    let ns_check = |def: &'static CheckDef, ns: &'static str, mode: Option<String>| {
        let mode = mode.unwrap_or_default();
        let shared = p.map(|p| p.shared_namespaces.contains(ns));
        let configured_host = mode == "host";
        let ev = format!(
            "configured mode {:?}; {} namespace {}",
            mode,
            ns,
            match shared {
                Some(true) => "is the host's (same /proc/PID/ns inode as the host)",
                Some(false) => "is the container's own",
                None => "not measured (container not running)",
            }
        );
        def.check(!(configured_host || shared == Some(true)), ev)
    };
    out.push(ns_check(&C_5_10, "net", hc.network_mode.clone()));
    out.push(ns_check(&C_5_16, "pid", hc.pid_mode.clone()));
    out.push(ns_check(&C_5_17, "ipc", hc.ipc_mode.clone()));
    out.push(ns_check(&C_5_21, "uts", hc.uts_mode.clone()));

    // 5.11 memory
    let mem = hc.memory.unwrap_or(0);
    let measured_mem = p.and_then(|p| p.memory_limit);
    out.push(C_5_11.check(
        mem > 0 || matches!(measured_mem, Some(Some(_))),
        format!(
            "HostConfig.Memory={mem}; cgroup limit {}",
            match measured_mem {
                Some(Some(v)) => format!("{v} bytes"),
                Some(None) => "unlimited".into(),
                None => "not measured".into(),
            }
        ),
    ));

    // 5.12 CPU
    let cpu_set = hc.cpu_shares.unwrap_or(0) > 0
        || hc.nano_cpus.unwrap_or(0) > 0
        || hc.cpu_quota.unwrap_or(0) > 0
        || !hc.cpuset_cpus.clone().unwrap_or_default().is_empty();
    out.push(C_5_12.check(
        cpu_set,
        format!(
            "CpuShares={} NanoCpus={} CpuQuota={} CpusetCpus={:?}",
            hc.cpu_shares.unwrap_or(0),
            hc.nano_cpus.unwrap_or(0),
            hc.cpu_quota.unwrap_or(0),
            hc.cpuset_cpus.clone().unwrap_or_default()
        ),
    ));

    // 5.13 read-only root
    let ro_cfg = hc.readonly_rootfs.unwrap_or(false);
    let ro = p.and_then(|p| p.root_read_only);
    out.push(C_5_13.check(
        ro.unwrap_or(ro_cfg),
        format!(
            "ReadonlyRootfs={ro_cfg}; root mount {}",
            match ro {
                Some(true) => "read-only (/proc/PID/mountinfo)",
                Some(false) => "read-write (/proc/PID/mountinfo)",
                None => "not measured",
            }
        ),
    ));

    // 5.15 restart policy
    let rp = hc.restart_policy.clone().unwrap_or_default();
    let retries = rp.maximum_retry_count.unwrap_or(0);
    let (ok, name) = match rp.name {
        Some(RestartPolicyNameEnum::ALWAYS) => (false, "always"),
        Some(RestartPolicyNameEnum::UNLESS_STOPPED) => (false, "unless-stopped"),
        Some(RestartPolicyNameEnum::ON_FAILURE) => (retries <= 5, "on-failure"),
        _ => (true, "no"),
    };
    out.push(C_5_15.check(
        ok,
        format!("RestartPolicy={name} MaximumRetryCount={retries}"),
    ));

    // 5.18 devices
    let devices: Vec<String> = hc
        .devices
        .clone()
        .unwrap_or_default()
        .iter()
        .map(|d| {
            format!(
                "{}:{}",
                d.path_on_host.clone().unwrap_or_default(),
                d.path_in_container.clone().unwrap_or_default()
            )
        })
        .collect();
    out.push(C_5_18.check(
        devices.is_empty(),
        if devices.is_empty() {
            "no --device entries".to_string()
        } else {
            format!("devices: {}", devices.join(", "))
        },
    ));

    // 5.20 mount propagation
    let shared: Vec<String> = mounts
        .iter()
        .filter(|m| matches!(m.propagation.as_deref(), Some("shared") | Some("rshared")))
        .map(|m| {
            format!(
                "{} ({})",
                m.destination.clone().unwrap_or_default(),
                m.propagation.clone().unwrap_or_default()
            )
        })
        .collect();
    out.push(C_5_20.check(
        shared.is_empty(),
        if shared.is_empty() {
            "no mount with shared propagation".into()
        } else {
            format!("shared propagation: {}", shared.join(", "))
        },
    ));

    // 5.22 seccomp
    let sc_opt = f.security_opt("seccomp");
    let sc_mode = p.and_then(|p| p.seccomp);
    let unconfined = sc_opt.as_deref() == Some("unconfined") || sc_mode == Some(0);
    out.push(C_5_22.check(
        !unconfined,
        format!(
            "SecurityOpt seccomp={}; /proc/PID/status Seccomp: {}",
            match sc_opt.as_deref() {
                None => "(daemon default)".to_string(),
                Some("unconfined") => "unconfined".to_string(),
                Some(_) => "(custom profile)".to_string(),
            },
            match sc_mode {
                Some(0) => "0 (no filter)",
                Some(1) => "1 (strict)",
                Some(2) => "2 (filter)",
                _ => "not measured",
            }
        ),
    ));

    // 5.25 cgroup parent
    let parent = hc.cgroup_parent.clone().unwrap_or_default();
    out.push(if parent.is_empty() {
        C_5_25.pass("no --cgroup-parent")
    } else {
        C_5_25.warn(format!("CgroupParent={parent:?}: confirm it is intended"))
    });

    // 5.26 no-new-privileges
    let nnp_opt = f.security_opts().iter().any(|o| {
        o == "no-new-privileges" || o == "no-new-privileges:true" || o == "no-new-privileges=true"
    });
    let nnp = p.and_then(|p| p.no_new_privs);
    out.push(C_5_26.check(
        nnp.unwrap_or(nnp_opt || ctx.daemon_no_new_privileges),
        format!(
            "SecurityOpt no-new-privileges: {}; daemon default: {}; /proc/PID/status NoNewPrivs: {}",
            yes_no(nnp_opt),
            yes_no(ctx.daemon_no_new_privileges),
            match nnp {
                Some(true) => "1",
                Some(false) => "0",
                None => "not measured",
            }
        ),
    ));

    // 5.27 health check
    let test = cfg
        .healthcheck
        .as_ref()
        .and_then(|h| h.test.clone())
        .unwrap_or_default();
    let has_health = !test.is_empty() && test.first().map(String::as_str) != Some("NONE");
    let health_status = f
        .inspect
        .state
        .as_ref()
        .and_then(|s| s.health.as_ref())
        .and_then(|h| h.status)
        .map(|s| s.to_string());
    out.push(C_5_27.check(
        has_health,
        if has_health {
            format!(
                "Healthcheck {:?}, status {}",
                test,
                health_status.as_deref().unwrap_or("unknown")
            )
        } else {
            "no health check configured in the image or with --health-cmd".to_string()
        },
    ));

    // 5.23 and 5.24: docker exec sessions the daemon still knows of.
    let privileged: Vec<String> = f
        .execs
        .iter()
        .filter(|e| e.privileged)
        .map(describe_exec)
        .collect();
    let container_user = f
        .inspect
        .config
        .as_ref()
        .and_then(|c| c.user.clone())
        .unwrap_or_default();
    let as_root: Vec<String> = f
        .execs
        .iter()
        .filter(|e| {
            let user = if e.user.is_empty() {
                container_user.as_str()
            } else {
                e.user.as_str()
            };
            is_root_user(user)
        })
        .map(describe_exec)
        .collect();
    if f.execs.is_empty() {
        let why = "no docker exec session recorded by the daemon (it forgets ended ones; the agent reports each exec as it happens)";
        out.push(C_5_23.not_applicable(why));
        out.push(C_5_24.not_applicable(why));
    } else {
        let n = f.execs.len();
        out.push(C_5_23.check(
            privileged.is_empty(),
            if privileged.is_empty() {
                format!("none of {n} exec sessions is privileged")
            } else {
                format!("privileged exec sessions: {}", privileged.join("; "))
            },
        ));
        out.push(if as_root.is_empty() {
            C_5_24.pass(format!("none of {n} exec sessions runs as root"))
        } else {
            C_5_24.warn(format!("exec sessions as root: {}", as_root.join("; ")))
        });
    }

    // 5.28: the container runs the image its reference names now.
    out.push(match &f.current_image_id {
        None => C_5_28.not_applicable(format!(
            "the reference {:?} names no local image now (removed, or the container was created from an id)",
            f.image.reference
        )),
        Some(now) if *now == f.image.id => C_5_28.pass(format!(
            "{} is still {}",
            f.image.reference,
            short_id(now)
        )),
        Some(now) => C_5_28.warn(format!(
            "the container runs {} but {} names {} now: recreate it to run the newer image",
            short_id(&f.image.id),
            f.image.reference,
            short_id(now)
        )),
    });

    // 5.29 pids limit
    let pl = hc.pids_limit.unwrap_or(0);
    let measured_pids = p.and_then(|p| p.pids_limit);
    out.push(C_5_29.check(
        pl > 0 || matches!(measured_pids, Some(Some(_))),
        format!(
            "HostConfig.PidsLimit={pl}; cgroup pids.max {}",
            match measured_pids {
                Some(Some(v)) => v.to_string(),
                Some(None) => "max".into(),
                None => "not measured".into(),
            }
        ),
    ));

    // 5.30 docker0
    let networks: Vec<String> = f
        .inspect
        .network_settings
        .as_ref()
        .and_then(|n| n.networks.as_ref())
        .map(|n| {
            let mut v: Vec<String> = n.keys().cloned().collect();
            v.sort();
            v
        })
        .unwrap_or_default();
    out.push(C_5_30.check(
        !networks.iter().any(|n| n == "bridge"),
        format!(
            "networks: {}",
            if networks.is_empty() {
                "none".into()
            } else {
                networks.join(", ")
            }
        ),
    ));

    // 5.31 host user namespace
    let userns_mode = hc.userns_mode.clone().unwrap_or_default();
    out.push(if userns_mode == "host" {
        C_5_31.fail("UsernsMode=host: the container opts out of the daemon's user-namespace remapping")
    } else if !ctx.daemon_userns_remap {
        C_5_31.not_applicable("the daemon does not remap users (no userns-remap), so every container shares the host's user namespace; see 2.9 and RAMPART-C-USERNS")
    } else {
        C_5_31.check(
            !p.is_some_and(|p| p.shared_namespaces.contains("user")),
            format!("UsernsMode={userns_mode:?}; user namespace measured via /proc/PID/ns/user"),
        )
    });

    // 5.32 runtime socket
    let socks: Vec<String> = mounts
        .iter()
        .filter_map(|m| {
            let src = m.source.clone().unwrap_or_default();
            let src_t = src.trim_end_matches('/');
            let hit = RUNTIME_SOCKETS.contains(&src_t)
                || RUNTIME_SOCKETS
                    .iter()
                    .any(|s| Path::new(s).parent().is_some_and(|d| d == Path::new(src_t)))
                || src_t.ends_with("/docker.sock");
            hit.then(|| format!("{}:{}", src, m.destination.clone().unwrap_or_default()))
        })
        .collect();
    out.push(C_5_32.check(
        socks.is_empty(),
        if socks.is_empty() {
            "no container runtime socket mounted".to_string()
        } else {
            format!("runtime socket reachable inside: {}", socks.join(", "))
        },
    ));

    // RAMPART-C-ROOT
    let user = cfg.user.clone().unwrap_or_default();
    out.push(match p.and_then(|p| p.inside_uid()) {
        Some(uid) => C_ROOT.check(
            uid != 0,
            format!(
                "Config.User={user:?}; main process uid {uid} inside (host uid {})",
                p.and_then(|p| p.host_uid)
                    .map_or("?".into(), |u| u.to_string())
            ),
        ),
        None => {
            let root = user.is_empty()
                || user == "0"
                || user == "root"
                || user.starts_with("0:")
                || user.starts_with("root:");
            C_ROOT.check(
                !root,
                format!("Config.User={user:?} (container not running, not measured)"),
            )
        }
    });

    // RAMPART-C-USERNS
    out.push(match p.and_then(|p| p.root_host_uid()) {
        Some(host) => C_USERNS.check(
            host >= 10000,
            format!(
                "container root is host uid {host} (/proc/PID/uid_map {:?})",
                p.map(|p| p.uid_map.clone()).unwrap_or_default()
            ),
        ),
        None if ctx.daemon_userns_remap => {
            C_USERNS.warn("daemon remaps users, but the container's uid_map was not readable")
        }
        None => C_USERNS.fail("daemon does not remap users: container root is host root"),
    });

    // RAMPART-C-BLKIO
    let blkio = hc.blkio_weight.unwrap_or(0) > 0
        || [
            &hc.blkio_device_read_bps,
            &hc.blkio_device_write_bps,
            &hc.blkio_device_read_iops,
            &hc.blkio_device_write_iops,
        ]
        .iter()
        .any(|v| v.as_ref().is_some_and(|v| !v.is_empty()))
        || hc
            .blkio_weight_device
            .as_ref()
            .is_some_and(|v| !v.is_empty());
    out.push(C_BLKIO.check(
        blkio,
        format!(
            "BlkioWeight={} and {} device throttles",
            hc.blkio_weight.unwrap_or(0),
            [
                &hc.blkio_device_read_bps,
                &hc.blkio_device_write_bps,
                &hc.blkio_device_read_iops,
                &hc.blkio_device_write_iops,
            ]
            .iter()
            .map(|v| v.as_ref().map_or(0, Vec::len))
            .sum::<usize>()
        ),
    ));

    // 4.2 registry, RAMPART-C-SIGNATURE
    out.push(registry_outcome(
        &C_REGISTRY,
        &f.image,
        &ctx.allowed_registries,
    ));
    out.push(if f.image.repo_digests.is_empty() {
        C_SIGNATURE.fail(format!(
            "image {} ({}) has no registry digest (built or loaded locally): no registry signature can exist for it",
            f.image.reference, f.image.id
        ))
    } else {
        C_SIGNATURE.warn(format!(
            "image has registry digest(s) {}; the audit does not verify signatures: verify with cosign verify {}",
            f.image.repo_digests.join(", "),
            f.image.repo_digests[0]
        ))
    });
    out
}

/// The registry check of an image reference (CIS 4.2), shared with the image audit.
pub(crate) fn registry_outcome(
    def: &'static CheckDef,
    image: &ImageRefInfo,
    allowed: &[String],
) -> Outcome {
    let registry = registry_of(&image.reference);
    if allowed.is_empty() {
        return def.not_applicable(format!(
            "image {} is from {registry}; no allowed registries given (--allowed-registry)",
            image.reference
        ));
    }
    let ok = allowed.iter().any(|a| {
        let a = a.trim_end_matches('/');
        registry == a || image.reference.starts_with(&format!("{a}/"))
    });
    def.check(
        ok,
        format!(
            "image {} is from {registry}; allowed: {}",
            image.reference,
            allowed.join(", ")
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    use rampart_container::models::{HostConfig, MountPoint};
    use rampart_event::ComplianceStatus;

    fn facts(hc: HostConfig, mounts: Vec<MountPoint>, digests: Vec<String>) -> ContainerFacts {
        ContainerFacts {
            inspect: ContainerInspectResponse {
                id: Some("c0ffee".into()),
                name: Some("/t".into()),
                host_config: Some(hc),
                mounts: Some(mounts),
                app_armor_profile: Some("unconfined".into()),
                ..ContainerInspectResponse::default()
            },
            image: ImageRefInfo {
                reference: "nginx:1.25".into(),
                id: "sha256:1".into(),
                repo_digests: digests,
            },
            process: None,
            execs: Vec::new(),
            current_image_id: Some("sha256:1".into()),
        }
    }

    #[test]
    fn privileged_and_root_exec_sessions() {
        let mut f = facts(HostConfig::default(), vec![], vec![]);
        let ctx = AuditContext::default();
        let exec = |privileged, user: &str| ExecFacts {
            id: "e1e1e1e1e1e1e1e1".into(),
            privileged,
            user: user.into(),
            command: vec!["sh".into()],
            running: true,
        };
        f.execs = vec![exec(true, "1000")];
        let outs = checks(&f, &ctx);
        assert_eq!(status(&outs, "5.23"), ComplianceStatus::Fail);
        assert_eq!(status(&outs, "5.24"), ComplianceStatus::Pass);
        // No --user: the container's user, root by default.
        f.execs = vec![exec(false, "")];
        let outs = checks(&f, &ctx);
        assert_eq!(status(&outs, "5.23"), ComplianceStatus::Pass);
        assert_eq!(status(&outs, "5.24"), ComplianceStatus::Warning);
        for root in ["root", "0", "0:0", "root:staff"] {
            f.execs = vec![exec(false, root)];
            assert_eq!(
                status(&checks(&f, &ctx), "5.24"),
                ComplianceStatus::Warning,
                "{root}"
            );
        }
        f.execs = vec![exec(false, "10001:10001")];
        assert_eq!(status(&checks(&f, &ctx), "5.24"), ComplianceStatus::Pass);
    }

    fn status(outs: &[Outcome], id: &str) -> ComplianceStatus {
        outs.iter()
            .find(|o| o.def.id == id)
            .map(|o| o.status)
            .expect(id)
    }

    /// Checks whose failing configuration cannot start on the test host (--privileged,
    /// shared propagation on a private root, AppArmor/SELinux on a host without them).
    #[test]
    fn configuration_only_checks_both_ways() {
        let ctx = AuditContext {
            apparmor: true,
            selinux: true,
            ..AuditContext::default()
        };
        let bad = facts(
            HostConfig {
                privileged: Some(true),
                security_opt: Some(vec!["label=disable".into(), "apparmor=unconfined".into()]),
                ..HostConfig::default()
            },
            vec![MountPoint {
                typ: Some("bind".into()),
                source: Some("/srv/data".into()),
                destination: Some("/data".into()),
                propagation: Some("rshared".into()),
                rw: Some(true),
                ..MountPoint::default()
            }],
            vec![],
        );
        let outs = checks(&bad, &ctx);
        for id in ["5.2", "5.3", "5.5", "5.20", "RAMPART-C-SIGNATURE"] {
            assert_eq!(status(&outs, id), ComplianceStatus::Fail, "{id}");
        }
        let mut good = facts(
            HostConfig::default(),
            vec![MountPoint {
                typ: Some("bind".into()),
                source: Some("/srv/data".into()),
                destination: Some("/data".into()),
                propagation: Some("rprivate".into()),
                rw: Some(true),
                ..MountPoint::default()
            }],
            vec!["nginx@sha256:abc".into()],
        );
        good.inspect.app_armor_profile = Some("docker-default".into());
        good.inspect.process_label = Some("system_u:system_r:container_t:s0:c1,c2".into());
        let outs = checks(&good, &ctx);
        for id in ["5.2", "5.3", "5.5", "5.20"] {
            assert_eq!(status(&outs, id), ComplianceStatus::Pass, "{id}");
        }
        // A registry digest is not a verified signature.
        assert_eq!(
            status(&outs, "RAMPART-C-SIGNATURE"),
            ComplianceStatus::Warning
        );
        // Without the LSMs the checks do not apply.
        let outs = checks(&good, &AuditContext::default());
        assert_eq!(status(&outs, "5.2"), ComplianceStatus::NotApplicable);
        assert_eq!(status(&outs, "5.3"), ComplianceStatus::NotApplicable);
    }

    #[test]
    fn uid_mapping_through_uid_map() {
        let p = ProcessFacts {
            host_uid: Some(100_000),
            uid_map: vec![(0, 100_000, 65536)],
            ..ProcessFacts::default()
        };
        assert_eq!(p.inside_uid(), Some(0));
        assert_eq!(p.root_host_uid(), Some(100_000));
        let q = ProcessFacts {
            host_uid: Some(1000),
            uid_map: vec![(0, 0, u32::MAX)],
            ..ProcessFacts::default()
        };
        assert_eq!(q.inside_uid(), Some(1000));
        assert_eq!(q.root_host_uid(), Some(0));
    }

    #[test]
    fn reads_a_fake_proc_tree() {
        let d = tempfile::tempdir().expect("tmp");
        let root = d.path();
        fs::create_dir_all(root.join("77/ns")).expect("mkdir");
        fs::create_dir_all(root.join("self/ns")).expect("mkdir");
        fs::write(
            root.join("77/status"),
            "Name:\tsh\nUid:\t0\t0\t0\t0\nCapEff:\t00000000a80425fb\nCapBnd:\t00000000a80425fb\nNoNewPrivs:\t1\nSeccomp:\t2\n",
        )
        .expect("w");
        fs::write(
            root.join("77/uid_map"),
            "         0          0 4294967295\n",
        )
        .expect("w");
        fs::write(
            root.join("77/mountinfo"),
            "500 400 0:50 / / ro,relatime - overlay overlay rw\n",
        )
        .expect("w");
        fs::write(root.join("77/cgroup"), "0::/docker/abcdef\n").expect("w");
        fs::write(root.join("77/comm"), "sshd\n").expect("w");
        std::os::unix::fs::symlink("net:[1]", root.join("77/ns/net")).expect("ln");
        std::os::unix::fs::symlink("net:[1]", root.join("self/ns/net")).expect("ln");
        std::os::unix::fs::symlink("pid:[2]", root.join("77/ns/pid")).expect("ln");
        std::os::unix::fs::symlink("pid:[3]", root.join("self/ns/pid")).expect("ln");
        let f = ProcessFacts::read(root, 77, "abcdef", &Mounts::default()).expect("facts");
        assert_eq!(f.seccomp, Some(2));
        assert_eq!(f.no_new_privs, Some(true));
        assert_eq!(f.root_read_only, Some(true));
        assert_eq!(f.inside_uid(), Some(0));
        assert!(f.shared_namespaces.contains("net"));
        assert!(!f.shared_namespaces.contains("pid"));
        assert!(f.commands.contains("sshd"));
    }
}
