//! Container identity from cgroup paths.
//!
//! Every container runtime puts a container's processes in a cgroup whose path carries the
//! container id; the shapes differ by runtime and cgroup driver:
//!
//! | runtime, driver | path (v1 controller or v2) |
//! |---|---|
//! | Docker, cgroupfs | `/docker/<id>` |
//! | Docker, systemd | `/system.slice/docker-<id>.scope` |
//! | containerd (CRI), systemd | `/kubepods.slice/.../cri-containerd-<id>.scope` |
//! | containerd, cgroupfs | `/kubepods/.../<id>`, `/<namespace>/<id>` |
//! | Podman | `/machine.slice/libpod-<id>.scope[/container]`, `/libpod_parent/libpod-<id>` |
//! | CRI-O | `/kubepods.slice/.../crio-<id>.scope` |
//!
//! Nested cgroups inside a container (`.../docker-<id>.scope/init.scope`) resolve to the same
//! container: the last component carrying an id wins.

use rampart_event::ContainerRuntime;

/// The container a cgroup path belongs to: its full id and runtime. `None` for host cgroups.
pub fn container_from_cgroup_path(path: &str) -> Option<(String, ContainerRuntime)> {
    let mut found = None;
    let mut prev: Option<&str> = None;
    for comp in path.split('/').filter(|c| !c.is_empty()) {
        if let Some(hit) = classify(comp, prev) {
            found = Some(hit);
        }
        prev = Some(comp);
    }
    found
}

fn classify(comp: &str, parent: Option<&str>) -> Option<(String, ContainerRuntime)> {
    let stripped = comp.strip_suffix(".scope").unwrap_or(comp);
    for (prefix, runtime) in [
        ("docker-", ContainerRuntime::Docker),
        ("cri-containerd-", ContainerRuntime::Containerd),
        ("crio-", ContainerRuntime::Crio),
        ("libpod-", ContainerRuntime::Podman),
    ] {
        if let Some(id) = stripped.strip_prefix(prefix) {
            if is_id(id) {
                return Some((id.to_string(), runtime));
            }
        }
    }
    if is_id(comp) {
        let runtime = match parent {
            Some("docker") => ContainerRuntime::Docker,
            // kubepods with the cgroupfs driver: containerd or CRI-O, the path cannot tell.
            Some("libpod_parent") => ContainerRuntime::Podman,
            _ => ContainerRuntime::Unknown,
        };
        return Some((comp.to_string(), runtime));
    }
    None
}

/// A 64-hex-digit container id.
fn is_id(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "fbb25228bd52ff1f24ac7d10475865882735144ea1df304d2bf9775fb633680d";

    #[test]
    fn every_runtime_shape_resolves() {
        let cases = [
            (format!("/docker/{ID}"), ContainerRuntime::Docker),
            (format!("/system.slice/docker-{ID}.scope"), ContainerRuntime::Docker),
            (
                format!("/system.slice/docker-{ID}.scope/init.scope"),
                ContainerRuntime::Docker,
            ),
            (
                format!("/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1.slice/cri-containerd-{ID}.scope"),
                ContainerRuntime::Containerd,
            ),
            (format!("/kubepods/besteffort/pod1234/{ID}"), ContainerRuntime::Unknown),
            (format!("/machine.slice/libpod-{ID}.scope/container"), ContainerRuntime::Podman),
            (format!("/libpod_parent/libpod-{ID}"), ContainerRuntime::Podman),
            (format!("/kubepods.slice/crio-{ID}.scope"), ContainerRuntime::Crio),
        ];
        for (path, runtime) in cases {
            assert_eq!(
                container_from_cgroup_path(&path),
                Some((ID.to_string(), runtime)),
                "{path}"
            );
        }
    }

    #[test]
    fn host_paths_are_not_containers() {
        for p in [
            "/",
            "/user.slice/user-0.slice/session-1.scope",
            "/system.slice/docker.service",
            "/docker",
        ] {
            assert_eq!(container_from_cgroup_path(p), None, "{p}");
        }
        assert_eq!(
            container_from_cgroup_path(&format!("/docker/{}", &ID[..63])),
            None
        );
    }
}
