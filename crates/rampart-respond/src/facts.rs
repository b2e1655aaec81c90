//! What response and policy need to know about a container: identity, its init's pid, its cgroup
//! v2 directory, its addresses, its writable layer. Read from the Docker Engine API and /proc.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use rampart_container::DockerClient;

use crate::error::RespondError;

/// A container as response and policy see it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ContainerFacts {
    /// Full id.
    pub id: String,
    /// Name without the leading `/`.
    pub name: String,
    /// Image reference it was created from.
    pub image: String,
    pub labels: BTreeMap<String, String>,
    /// Host pid of its init process; 0 when it is not running.
    pub pid: u32,
    /// The cgroup v2 directory its processes are in, when it runs and a v2 hierarchy exists.
    pub cgroup: Option<PathBuf>,
    /// Addresses on its networks.
    pub ips: Vec<IpAddr>,
    /// The overlay upper (writable) directory.
    pub upper_dir: Option<PathBuf>,
    pub running: bool,
    /// docker inspect, as JSON (for forensic bundles).
    pub inspect: Option<serde_json::Value>,
}

impl ContainerFacts {
    /// `name (id12)` for messages.
    pub fn label(&self) -> String {
        format!("{} ({})", self.name, self.id.get(..12).unwrap_or(&self.id))
    }
}

/// Inspects `key` (id, name or id prefix).
pub async fn inspect(docker: &DockerClient, key: &str) -> Result<ContainerFacts, RespondError> {
    let r = docker
        .inspect_container(key)
        .await
        .map_err(|e| RespondError::Docker {
            op: "inspect container",
            target: key.to_string(),
            message: e.message(),
        })?;
    let raw = serde_json::to_value(&r).ok();
    let config = r.config.unwrap_or_default();
    let state = r.state.unwrap_or_default();
    let running = state.running.unwrap_or(false);
    let pid = if running {
        state.pid.and_then(|p| u32::try_from(p).ok()).unwrap_or(0)
    } else {
        0
    };
    let mut ips = Vec::new();
    if let Some(nets) = r.network_settings.and_then(|n| n.networks) {
        for (_, n) in nets {
            for a in [n.ip_address, n.global_ipv6_address].into_iter().flatten() {
                if let Ok(ip) = a.parse::<IpAddr>() {
                    ips.push(ip);
                }
            }
        }
    }
    ips.sort();
    ips.dedup();
    let upper_dir = r
        .graph_driver
        .and_then(|g| g.data.get("UpperDir").map(PathBuf::from));
    Ok(ContainerFacts {
        id: r.id.unwrap_or_else(|| key.to_string()),
        name: r
            .name
            .unwrap_or_default()
            .trim_start_matches('/')
            .to_string(),
        image: config.image.unwrap_or_default(),
        labels: config.labels.unwrap_or_default().into_iter().collect(),
        cgroup: if pid > 0 { cgroup_v2_dir(pid) } else { None },
        pid,
        ips,
        upper_dir,
        running,
        inspect: raw,
    })
}

/// Every running container.
pub async fn running(docker: &DockerClient) -> Result<Vec<ContainerFacts>, RespondError> {
    let list = docker
        .list_containers(false)
        .await
        .map_err(|e| RespondError::Docker {
            op: "list containers",
            target: String::new(),
            message: e.message(),
        })?;
    let mut out = Vec::new();
    for c in list {
        let Some(id) = c.id else { continue };
        match inspect(docker, &id).await {
            Ok(f) if f.running => out.push(f),
            Ok(_) => {}
            // Gone between list and inspect.
            Err(e) => tracing::debug!("{e}"),
        }
    }
    Ok(out)
}

/// The cgroup v2 directory of process `pid` (from /proc/PID/cgroup and the unified mount).
pub fn cgroup_v2_dir(pid: u32) -> Option<PathBuf> {
    let unified = rampart_kernel::cgroup_layout().unified?;
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
    let rel = text.lines().find_map(|l| l.strip_prefix("0::"))?;
    let dir = unified.join(rel.trim_start_matches('/'));
    dir.is_dir().then_some(dir)
}

/// Where runc will put a Docker container's cgroup v2 directory with the `cgroupfs` driver
/// (`<unified>/docker/<id>`); `None` without a v2 hierarchy.
pub fn expected_docker_cgroup(unified: &Path, id: &str) -> PathBuf {
    unified.join("docker").join(id)
}
