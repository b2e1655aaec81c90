//! Container identity.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The runtime that manages a container, recognised from the cgroup path or the API that
/// described it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ContainerRuntime {
    Docker,
    Containerd,
    Podman,
    Crio,
    /// A container id was found in the cgroup path, but the runtime could not be told.
    Unknown,
}

impl ContainerRuntime {
    /// Lower-case name, as in the JSON.
    pub fn as_str(&self) -> &'static str {
        match self {
            ContainerRuntime::Docker => "docker",
            ContainerRuntime::Containerd => "containerd",
            ContainerRuntime::Podman => "podman",
            ContainerRuntime::Crio => "cri-o",
            ContainerRuntime::Unknown => "unknown",
        }
    }
}

/// A container as Rampart knows it: what the cgroup path says (id, runtime) plus what the
/// runtime's API said (name, image, labels). Fields the API did not give are empty.
///
/// Events share one `Arc<Container>` per container; it is replaced, not mutated, when the
/// runtime reports a change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Container {
    /// Full container id (64 hex digits for Docker).
    #[serde(rename = "uid")]
    pub id: String,
    /// Container name without the leading `/`.
    #[serde(default)]
    pub name: String,
    pub runtime: ContainerRuntime,
    /// The image reference the container was created from (`nginx:1.25`, `registry/app@sha256:..`).
    #[serde(default)]
    pub image: String,
    /// Image id in the local store (`sha256:...`, the digest of the image config).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub image_id: String,
    /// Registry manifest digest (`sha256:...`) when the image came from a registry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_digest: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Whether the container runs privileged (from the runtime's API).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub privileged: bool,
    /// The container is a step of a `docker build` with the legacy builder (a `RUN`
    /// instruction's container), as the runtime's API describes it: see
    /// `rampart_container::is_build_step` for what it is derived from and who can fake it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub build_step: bool,
}

impl Container {
    /// A container known only by its id (no API metadata yet).
    pub fn unnamed(id: impl Into<String>, runtime: ContainerRuntime) -> Self {
        Container {
            id: id.into(),
            name: String::new(),
            runtime,
            image: String::new(),
            image_id: String::new(),
            image_digest: None,
            labels: BTreeMap::new(),
            privileged: false,
            build_step: false,
        }
    }

    /// The first 12 characters of the id, as `docker ps` shows it.
    pub fn short_id(&self) -> &str {
        self.id.get(..12).unwrap_or(&self.id)
    }

    /// The image repository without tag or digest (`registry:5000/team/app` for
    /// `registry:5000/team/app:1.2@sha256:...`).
    pub fn image_repository(&self) -> &str {
        split_image(&self.image).0
    }

    /// The image tag, empty when the reference has none.
    pub fn image_tag(&self) -> &str {
        split_image(&self.image).1
    }
}

/// Splits an image reference into repository and tag; a `:` in the registry host part (a port)
/// is not a tag separator.
fn split_image(image: &str) -> (&str, &str) {
    let without_digest = image.split('@').next().unwrap_or(image);
    let last_slash = without_digest.rfind('/').map_or(0, |i| i + 1);
    match without_digest[last_slash..].rfind(':') {
        Some(colon) => (
            &without_digest[..last_slash + colon],
            &without_digest[last_slash + colon + 1..],
        ),
        None => (without_digest, ""),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_image(image: &str) -> Container {
        let mut c = Container::unnamed("a".repeat(64), ContainerRuntime::Docker);
        c.image = image.to_string();
        c
    }

    #[test]
    fn image_repository_and_tag_ignore_registry_port_and_digest() {
        let c = with_image("registry:5000/team/app:1.2@sha256:abcd");
        assert_eq!(c.image_repository(), "registry:5000/team/app");
        assert_eq!(c.image_tag(), "1.2");
        let c = with_image("registry:5000/team/app");
        assert_eq!(c.image_repository(), "registry:5000/team/app");
        assert_eq!(c.image_tag(), "");
        let c = with_image("nginx:1.25");
        assert_eq!((c.image_repository(), c.image_tag()), ("nginx", "1.25"));
    }

    #[test]
    fn short_id_is_twelve_chars() {
        assert_eq!(with_image("x").short_id().len(), 12);
    }
}
