//! OCI image layout directories (`oci-layout`, `index.json`, `blobs/<alg>/<hex>`).
//!
//! Blobs are opened by digest only after the digest is validated (so `sha256:../../x` never
//! becomes a path), without following symlinks, and their content is checked against the
//! digest.

use std::fs::{File, OpenOptions};
use std::io::{self, BufReader};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use sha2::{Digest, Sha256};

use super::archive::check_layers;
use super::layer::{read_layer, ReadCtx};
use super::spec::{self, Descriptor, Index, Manifest};
use super::{ImageConfig, ImageError, ImageInfo, Loaded, SourceKind};
use crate::limit::{read_capped, Limits};

/// The host's architecture in OCI spelling.
fn host_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "arm" => "arm",
        "x86" => "386",
        other => other,
    }
}

/// Picks the image manifest an index (or nested indexes) points to: the one for linux on the
/// host's architecture, else the first image manifest. `get` returns a blob by digest, checked.
pub(crate) fn choose_manifest(
    origin: &str,
    index: &[u8],
    get: &mut dyn FnMut(&str) -> Result<Vec<u8>, ImageError>,
) -> Result<Vec<u8>, ImageError> {
    let mut candidates: Vec<(Descriptor, Vec<u8>)> = Vec::new();
    let mut pending: Vec<Vec<u8>> = vec![index.to_vec()];
    let mut seen = 0usize;
    while let Some(doc) = pending.pop() {
        seen += 1;
        if seen > 64 {
            return Err(ImageError::Format {
                path: origin.to_string(),
                message: "more than 64 nested image indexes".into(),
            });
        }
        let idx: Index = serde_json::from_slice(&doc).map_err(|source| ImageError::Json {
            path: format!("{origin}: image index"),
            source,
        })?;
        for d in idx.manifests {
            if !spec::valid_digest(&d.digest) {
                return Err(ImageError::BadDigest {
                    path: origin.to_string(),
                    digest: d.digest,
                });
            }
            // Attestation manifests (buildx) describe the image; they are not one.
            if d.annotations
                .get("vnd.docker.reference.type")
                .is_some_and(|t| t == "attestation-manifest")
            {
                continue;
            }
            let blob = get(&d.digest)?;
            if spec::is_index(&d.media_type) {
                pending.push(blob);
            } else {
                candidates.push((d, blob));
            }
        }
    }
    let arch = host_arch();
    let pos = candidates
        .iter()
        .position(|(d, _)| {
            d.platform
                .as_ref()
                .is_some_and(|p| p.os == "linux" && p.architecture == arch)
        })
        .unwrap_or(0);
    if candidates.is_empty() {
        return Err(ImageError::Format {
            path: origin.to_string(),
            message: "the image index lists no image manifest".into(),
        });
    }
    Ok(candidates.swap_remove(pos).1)
}

/// Opens a file of the layout without following a symlink in its last component.
fn open_nofollow(path: &Path) -> Result<File, ImageError> {
    let f = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
        .map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => ImageError::Format {
                path: path.display().to_string(),
                message: "referenced by the layout but missing".into(),
            },
            _ => ImageError::io(path, e),
        })?;
    let meta = f.metadata().map_err(|e| ImageError::io(path, e))?;
    if !meta.is_file() {
        return Err(ImageError::Format {
            path: path.display().to_string(),
            message: "not a regular file".into(),
        });
    }
    Ok(f)
}

fn read_json_file(path: &Path, limits: &Limits) -> Result<Vec<u8>, ImageError> {
    let f = open_nofollow(path)?;
    let size = f.metadata().map_err(|e| ImageError::io(path, e))?.len();
    if size > limits.max_json_size {
        return Err(ImageError::JsonTooLarge {
            path: path.display().to_string(),
            size,
            limit: limits.max_json_size,
        });
    }
    read_capped(f, limits.max_json_size).map_err(|e| ImageError::io(path, e))
}

fn blob(dir: &Path, digest: &str, limits: &Limits) -> Result<Vec<u8>, ImageError> {
    let rel = spec::blob_path(digest).ok_or_else(|| ImageError::BadDigest {
        path: dir.display().to_string(),
        digest: digest.to_string(),
    })?;
    let path = dir.join(&rel);
    let data = read_json_file(&path, limits)?;
    if let Some(hex) = digest.strip_prefix("sha256:") {
        let actual = hex::encode(Sha256::digest(&data));
        if actual != hex {
            return Err(ImageError::DigestMismatch {
                what: path.display().to_string(),
                expected: digest.to_string(),
                actual: format!("sha256:{actual}"),
            });
        }
    }
    Ok(data)
}

/// Manifest and config of the layout at `dir`.
fn manifest(dir: &Path, limits: &Limits) -> Result<(Manifest, Vec<u8>), ImageError> {
    let origin = dir.display().to_string();
    let index = read_json_file(&dir.join("index.json"), limits).map_err(|e| match e {
        ImageError::Format { .. } => ImageError::Format {
            path: origin.clone(),
            message: "not an OCI image layout: no index.json".into(),
        },
        e => e,
    })?;
    let bytes = choose_manifest(&origin, &index, &mut |d: &str| blob(dir, d, limits))?;
    let m: Manifest = serde_json::from_slice(&bytes).map_err(|source| ImageError::Json {
        path: format!("{origin}: manifest"),
        source,
    })?;
    let config = blob(dir, &m.config.digest, limits)?;
    Ok((m, config))
}

/// The image id of the layout at `dir`.
pub(crate) fn identify(dir: &Path, limits: &Limits) -> Result<String, ImageError> {
    let (_, config) = manifest(dir, limits)?;
    Ok(format!("sha256:{}", hex::encode(Sha256::digest(&config))))
}

/// Reads the layout at `dir`.
pub(crate) fn read(dir: &Path, ctx: &mut ReadCtx<'_>) -> Result<Loaded, ImageError> {
    let origin = dir.display().to_string();
    let (m, config_bytes) = manifest(dir, ctx.limits)?;
    let config: ImageConfig =
        serde_json::from_slice(&config_bytes).map_err(|source| ImageError::Json {
            path: format!("{origin}: config {}", m.config.digest),
            source,
        })?;
    let mut scans = Vec::new();
    let mut order = Vec::new();
    let mut expected = Vec::new();
    let n = m.layers.len();
    for (i, l) in m.layers.iter().enumerate() {
        if let Some(j) = m.layers[..i].iter().position(|p| p.digest == l.digest) {
            order.push(order[j]);
            expected.push(Some(l.digest.clone()));
            continue;
        }
        let rel = spec::blob_path(&l.digest).ok_or_else(|| ImageError::BadDigest {
            path: origin.clone(),
            digest: l.digest.clone(),
        })?;
        let path = dir.join(&rel);
        let f = open_nofollow(&path)?;
        let size = f.metadata().map_err(|e| ImageError::io(&path, e))?.len();
        ctx.progress
            .begin(&format!("layer {}/{n}", i + 1), Some(size));
        let scan = read_layer(
            BufReader::with_capacity(256 << 10, f),
            &format!("{origin}: {rel}"),
            ctx,
        )?;
        ctx.progress.end();
        scans.push(scan);
        order.push(scans.len() - 1);
        expected.push(Some(l.digest.clone()));
    }
    let layers = check_layers(&origin, &config, &scans, &order, &expected)?;
    Ok(Loaded {
        info: ImageInfo {
            target: origin,
            source: SourceKind::OciLayout,
            id: Some(format!(
                "sha256:{}",
                hex::encode(Sha256::digest(&config_bytes))
            )),
            repo_tags: Vec::new(),
            repo_digests: Vec::new(),
            config: Some(config),
            layers,
        },
        scans,
        order,
    })
}
