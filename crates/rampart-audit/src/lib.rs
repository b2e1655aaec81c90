//! Hardening audit of Docker hosts, daemons, containers and images, and seccomp profiles and
//! hardened run lines learned from what containers really do.
//!
//! * [`audit_host`]: kernel, LSM, cgroup, sysctl and BPF facts of this machine (measured), the
//!   CIS Docker Benchmark section 1 to 3 checks that can be measured, and the matrix of Rampart
//!   protections available here.
//! * [`audit_containers`] and [`audit_image`]: CIS sections 5 and 4, with Rampart's own checks
//!   (user-namespace mapping, block-IO limits, image signatures).
//! * [`learn`]: records a container's syscalls, capability checks, file writes and resource
//!   peaks with the kernel's syscall recorder; [`seccomp`] turns the syscalls into a Docker
//!   seccomp profile and merges profiles; [`harden`] proposes a hardened `docker run` line and
//!   compose service.
//!
//! Findings are [`rampart_event::ComplianceFinding`]s (OCSF Compliance Finding 2003); a
//! [`Report`] renders them as a table, JSON, OCSF lines or SARIF 2.1.0, with a score per
//! subject.
//!
//! The `*Args` types ([`HostAuditArgs`], [`SeccompLearnArgs`], [`HardenObserveArgs`], ...) are
//! these operations as the user asks for them, turned into the options above; with the `clap`
//! feature they are also the `rampart` commands' arguments.

pub mod apparmor;
mod args;
pub mod blockdev;
pub mod caps;
mod cgroupfs;
pub mod check;
pub mod container;
mod error;
pub mod harden;
pub mod host;
pub mod image;
pub mod learn;
mod report;
mod sarif;
pub mod seccomp;
pub mod userns;

use std::path::Path;

use rampart_container::DockerClient;

pub use args::{
    AppArmorArgs, AuditOutput, ContainersAuditArgs, HardenObserveArgs, HostAuditArgs,
    ImageAuditArgs, ReportFormat, SeccompLearnArgs, UsernsArgs,
};
pub use error::AuditError;
pub use report::{Detail, Report, Subject, Tally};
pub use sarif::SARIF_SCHEMA;

use crate::container::AuditContext;
use crate::host::daemon::{DaemonConfig, DaemonFacts};
use crate::host::{HostOptions, HostReport};

pub(crate) use rampart_event::now_ns;

/// What the running daemon reports for the host audit; empty when there is no daemon.
async fn daemon_facts(
    docker: Option<&DockerClient>,
    proc_root: &Path,
    cfg: &DaemonConfig,
) -> DaemonFacts {
    let Some(d) = docker else {
        return DaemonFacts::default();
    };
    let info = d.info().await.ok();
    let bridge_options = d
        .inspect_network("bridge")
        .await
        .ok()
        .and_then(|n| n.options);
    DaemonFacts {
        info,
        bridge_options,
        tcp_listeners: cfg
            .pid
            .map(|p| host::daemon::tcp_listeners(proc_root, p))
            .unwrap_or_default(),
        docker_proxy_running: host::daemon::docker_proxy_running(proc_root),
    }
}

/// `rampart audit host`. `docker` is `None` when no daemon is reachable (the daemon checks are
/// then skipped and a note says so).
pub async fn audit_host(
    docker: Option<&DockerClient>,
    opts: &HostOptions,
) -> Result<Report, AuditError> {
    let cfg = DaemonConfig::load(&opts.daemon_json, &opts.roots.proc)?;
    let measure_opts = opts.clone();
    let (facts, caps) = tokio::task::spawn_blocking(move || host::measure(&measure_opts))
        .await
        .map_err(|e| {
            AuditError::io(
                "host measurement task",
                std::io::Error::other(e.to_string()),
            )
        })?;
    let dfacts = daemon_facts(docker, &opts.roots.proc, &cfg).await;
    let outcomes = host::host_outcomes(&facts, &opts.roots, &cfg, &dfacts);
    let resource = host::host_resource(&facts, &opts.roots);
    let daemon_res = host::daemon_resource(&facts, &dfacts);
    let subject = Subject::new(resource, Some(&daemon_res), &outcomes, now_ns());
    let matrix = host::matrix(&facts, caps.as_ref());
    let mut notes = Vec::new();
    if facts.securityfs != "mounted" {
        notes.push(format!("securityfs {}", facts.securityfs));
    }
    if docker.is_none() {
        notes.push(
            "no Docker daemon answered: the daemon checks (CIS sections 1 to 3) were skipped"
                .into(),
        );
    }
    if !facts.root {
        notes.push(
            "not running as root: BPF probes, user-namespace trials and securityfs were skipped"
                .into(),
        );
    }
    Ok(Report {
        subjects: vec![subject],
        host: Some(HostReport {
            facts,
            daemon: cfg,
            daemon_facts: dfacts,
            matrix,
        }),
        notes,
    })
}

/// Options of the container and image audits.
#[derive(Debug, Clone)]
pub struct ContainerAuditOptions {
    /// Registries images may come from (CIS 4.2); empty makes that check not applicable.
    pub allowed_registries: Vec<String>,
    pub daemon_json: std::path::PathBuf,
    pub proc_root: std::path::PathBuf,
    pub sys_root: std::path::PathBuf,
}

impl Default for ContainerAuditOptions {
    fn default() -> Self {
        ContainerAuditOptions {
            allowed_registries: Vec::new(),
            daemon_json: host::daemon::DAEMON_JSON.into(),
            proc_root: "/proc".into(),
            sys_root: "/sys".into(),
        }
    }
}

/// `rampart audit containers [NAME...]`: every running container when `names` is empty.
pub async fn audit_containers(
    docker: &DockerClient,
    names: &[String],
    opts: &ContainerAuditOptions,
) -> Result<Report, AuditError> {
    let cfg = DaemonConfig::load(&opts.daemon_json, &opts.proc_root)?;
    let info = docker.info().await.ok();
    let mut ctx = AuditContext::measure_host(&opts.proc_root, &opts.sys_root);
    ctx.daemon_userns_remap = info
        .as_ref()
        .and_then(|i| i.security_options.as_ref())
        .is_some_and(|o| o.iter().any(|x| x == "name=userns"));
    ctx.daemon_no_new_privileges =
        cfg.bool_setting("no-new-privileges", "no-new-privileges") == Some(true);
    ctx.allowed_registries = opts.allowed_registries.clone();
    let targets: Vec<String> = if names.is_empty() {
        docker
            .list_containers(false)
            .await
            .map_err(|e| AuditError::docker("list containers", "running", e))?
            .into_iter()
            .filter_map(|c| c.id)
            .collect()
    } else {
        names.to_vec()
    };
    let mut report = Report::default();
    if targets.is_empty() {
        report.notes.push("no running containers".into());
    }
    for t in &targets {
        let facts = container::gather(docker, t, &ctx).await?;
        let outcomes = container::checks(&facts, &ctx);
        report
            .subjects
            .push(Subject::new(facts.resource(), None, &outcomes, now_ns()));
    }
    Ok(report)
}

/// `rampart audit image IMAGE`.
pub async fn audit_image(
    docker: &DockerClient,
    image: &str,
    allowed_registries: &[String],
) -> Result<Report, AuditError> {
    let facts = image::gather(docker, image).await?;
    let outcomes = image::checks(&facts, allowed_registries);
    Ok(Report {
        subjects: vec![Subject::new(facts.resource(), None, &outcomes, now_ns())],
        ..Report::default()
    })
}
