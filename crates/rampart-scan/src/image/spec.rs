//! The JSON documents of image archives: OCI image index, manifest and config
//! (<https://github.com/opencontainers/image-spec>), and `docker save`'s `manifest.json`.
//! Unknown fields are ignored (registries and builders add their own).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// A content descriptor (OCI `descriptor.md`).
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct Descriptor {
    #[serde(rename = "mediaType", default)]
    pub media_type: String,
    pub digest: String,
    #[serde(default)]
    pub platform: Option<Platform>,
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Deserialize)]
pub(crate) struct Platform {
    #[serde(default)]
    pub architecture: String,
    #[serde(default)]
    pub os: String,
}

/// An OCI image index (also `index.json` of a layout) or a Docker manifest list.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct Index {
    #[serde(default)]
    pub manifests: Vec<Descriptor>,
}

/// An OCI image manifest (or Docker v2 schema 2 manifest).
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct Manifest {
    pub config: Descriptor,
    #[serde(default)]
    pub layers: Vec<Descriptor>,
}

/// One element of `docker save`'s `manifest.json`.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct DockerManifest {
    #[serde(rename = "Config")]
    pub config: String,
    #[serde(rename = "RepoTags", default)]
    pub repo_tags: Option<Vec<String>>,
    #[serde(rename = "Layers", default)]
    pub layers: Vec<String>,
}

/// The parts of an image configuration the scanner uses (OCI `config.md`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageConfig {
    #[serde(default)]
    pub architecture: String,
    #[serde(default)]
    pub os: String,
    #[serde(default)]
    pub created: Option<String>,
    #[serde(default)]
    pub config: RunConfig,
    #[serde(default)]
    pub rootfs: RootFs,
    #[serde(default)]
    pub history: Vec<History>,
}

/// How a container of the image runs (`config` of the image configuration).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunConfig {
    #[serde(rename = "User", default)]
    pub user: String,
    #[serde(rename = "Env", default, deserialize_with = "null_as_default")]
    pub env: Vec<String>,
    #[serde(rename = "Entrypoint", default, deserialize_with = "null_as_default")]
    pub entrypoint: Vec<String>,
    #[serde(rename = "Cmd", default, deserialize_with = "null_as_default")]
    pub cmd: Vec<String>,
    #[serde(rename = "WorkingDir", default)]
    pub working_dir: String,
    #[serde(rename = "ExposedPorts", default, deserialize_with = "null_as_default")]
    pub exposed_ports: BTreeMap<String, serde_json::Value>,
    #[serde(rename = "Labels", default, deserialize_with = "null_as_default")]
    pub labels: BTreeMap<String, String>,
    #[serde(rename = "Healthcheck", default)]
    pub healthcheck: Option<Healthcheck>,
}

/// `HEALTHCHECK` of the image.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Healthcheck {
    #[serde(rename = "Test", default, deserialize_with = "null_as_default")]
    pub test: Vec<String>,
}

/// `rootfs` of the image configuration: the uncompressed layer digests, bottom first.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RootFs {
    #[serde(rename = "type", default)]
    pub kind: String,
    #[serde(default)]
    pub diff_ids: Vec<String>,
}

/// One build step (`history[]`): layers with `empty_layer` true have no diff.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct History {
    #[serde(default)]
    pub created_by: String,
    #[serde(default)]
    pub empty_layer: bool,
}

fn null_as_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// True for a digest the scanner accepts as a file name: `sha256:` + 64 or `sha512:` + 128
/// lowercase hex digits. Anything else (`sha256:../../x`) is refused before touching a path.
pub(crate) fn valid_digest(d: &str) -> bool {
    let Some((alg, hex)) = d.split_once(':') else {
        return false;
    };
    let len = match alg {
        "sha256" => 64,
        "sha512" => 128,
        _ => return false,
    };
    hex.len() == len
        && hex
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// The blob path of a valid digest inside an OCI layout (`blobs/sha256/<hex>`).
pub(crate) fn blob_path(d: &str) -> Option<String> {
    valid_digest(d)
        .then(|| d.replacen(':', "/", 1))
        .map(|p| format!("blobs/{p}"))
}

/// Media types of manifests and indexes.
pub(crate) fn is_index(media_type: &str) -> bool {
    media_type == "application/vnd.oci.image.index.v1+json"
        || media_type == "application/vnd.docker.distribution.manifest.list.v2+json"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_are_validated() {
        let ok = format!("sha256:{}", "a".repeat(64));
        assert!(valid_digest(&ok));
        assert_eq!(
            blob_path(&ok),
            Some(format!("blobs/sha256/{}", "a".repeat(64)))
        );
        assert!(!valid_digest("sha256:../../../etc/passwd"));
        assert!(!valid_digest(&format!("sha256:{}", "A".repeat(64))));
        assert!(!valid_digest(&format!("md5:{}", "a".repeat(32))));
        assert_eq!(blob_path("sha256:abc"), None);
    }

    #[test]
    fn config_with_nulls_parses() {
        let c: ImageConfig = serde_json::from_str(
            r#"{"architecture":"amd64","os":"linux","config":{"Env":null,"Cmd":["sh"],"Labels":null,"User":""},
               "rootfs":{"type":"layers","diff_ids":["sha256:1"]},"history":[{"created_by":"x","empty_layer":true}]}"#,
        )
        .expect("config");
        assert_eq!(c.config.cmd, ["sh"]);
        assert!(c.config.env.is_empty());
        assert_eq!(c.rootfs.diff_ids, ["sha256:1"]);
        assert!(c.history[0].empty_layer);
    }
}
