//! Image archives read as one stream: `docker save` tarballs (the legacy layout with
//! `manifest.json` and `<id>/layer.tar`, and the OCI layout Docker 25+ writes), tars of OCI
//! layouts, and the Docker daemon's export stream, each optionally gzip- or zstd-compressed.
//!
//! The stream is read front to back exactly once. The manifest usually comes last, so every
//! layer is analysed when it passes (layer results do not depend on their order) and JSON
//! documents are kept in memory; once the stream ends, the manifest says which layers make the
//! image and in which order, and every digest is checked against it.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Cursor, Read};
use std::path::Path;

use sha2::{Digest, Sha256};

use super::layer::{read_layer, LayerScan, ReadCtx};
use super::layout::choose_manifest;
use super::path::{self as ipath, lexical_target, BadPath};
use super::spec::{self, DockerManifest, ImageConfig, Manifest};
use super::{ImageError, ImageInfo, LayerInfo, Loaded, SourceKind};
use crate::limit::{decompress, read_capped, tar_archive, Budget, Compression, Limits};

/// The first bytes of an entry, enough to tell a layer from a JSON document.
const PEEK: usize = 512;

/// Everything collected from one pass over the archive.
struct Collected {
    json: HashMap<String, Vec<u8>>,
    layers: HashMap<String, LayerScan>,
    /// Symlinked entries (shared layers in the legacy format): path -> normalised target.
    aliases: HashMap<String, String>,
    scans: Vec<LayerScan>,
}

fn sha256(data: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(data)))
}

fn looks_like_tar(head: &[u8]) -> bool {
    head.len() >= 262 && &head[257..262] == b"ustar"
}

fn looks_like_json(head: &[u8]) -> bool {
    head.iter()
        .find(|b| !b.is_ascii_whitespace())
        .is_some_and(|b| *b == b'{' || *b == b'[')
}

/// Reads up to `PEEK` bytes of `r`.
fn peek<R: Read>(r: &mut R) -> io::Result<Vec<u8>> {
    let mut head = vec![0u8; PEEK];
    let mut n = 0;
    while n < PEEK {
        match r.read(&mut head[n..])? {
            0 => break,
            k => n += k,
        }
    }
    head.truncate(n);
    Ok(head)
}

/// One pass over an archive stream.
fn collect<R: Read>(
    input: R,
    origin: &str,
    ctx: &mut ReadCtx<'_>,
) -> Result<Collected, ImageError> {
    let outer_budget = Budget::new(ctx.limits.max_image_size.saturating_mul(2));
    let outer_err = |e: io::Error| super::layer::io_error(origin, None, e);
    let (_, outer) = decompress(input, ctx.limits, &outer_budget).map_err(outer_err)?;
    let mut archive = tar_archive(outer);
    let mut c = Collected {
        json: HashMap::new(),
        layers: HashMap::new(),
        aliases: HashMap::new(),
        scans: Vec::new(),
    };
    let entries = archive.entries().map_err(outer_err)?;
    for entry in entries {
        let mut entry = entry.map_err(outer_err)?;
        let raw = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let path = ipath::normalise(&raw).map_err(|bad| match bad {
            BadPath::Traversal => ImageError::PathTraversal {
                layer: origin.to_string(),
                entry: raw.clone(),
            },
            BadPath::Invalid => ImageError::BadEntry {
                layer: origin.to_string(),
                entry: raw.clone(),
                reason: "invalid path".into(),
            },
        })?;
        let etype = entry.header().entry_type();
        if etype.is_symlink() || etype.is_hard_link() {
            let target = entry
                .link_name_bytes()
                .map(|t| String::from_utf8_lossy(&t).into_owned())
                .unwrap_or_default();
            let resolved = if etype.is_symlink() {
                lexical_target(&path, &target)
            } else {
                ipath::normalise(&target).ok()
            };
            let Some(resolved) = resolved else {
                return Err(ImageError::SymlinkEscape {
                    layer: origin.to_string(),
                    entry: raw,
                    target,
                });
            };
            c.aliases.insert(path, resolved);
            continue;
        }
        if !etype.is_file() {
            continue;
        }
        let size = entry.size();
        let head = peek(&mut entry).map_err(|e| super::layer::io_error(origin, Some(&raw), e))?;
        let name = ipath::file_name(&path);
        let is_layer = Compression::sniff(&head) != Compression::None || looks_like_tar(&head);
        if !is_layer
            && (name.ends_with(".json") || looks_like_json(&head) || name == "repositories")
        {
            if size > ctx.limits.max_json_size {
                return Err(ImageError::JsonTooLarge {
                    path: format!("{origin}: {path}"),
                    size,
                    limit: ctx.limits.max_json_size,
                });
            }
            let data = read_capped(
                Cursor::new(head).chain(&mut entry),
                ctx.limits.max_json_size,
            )
            .map_err(|e| super::layer::io_error(origin, Some(&raw), e))?;
            c.json.insert(path, data);
        } else if is_layer && (name == "layer.tar" || path.starts_with("blobs/")) {
            let label = format!("{origin}: {path}");
            ctx.progress
                .begin(&format!("layer {}", short(&path)), Some(size));
            let scan = read_layer(Cursor::new(head).chain(&mut entry), &label, ctx)?;
            ctx.progress.end();
            c.layers.insert(path, scan);
        }
    }
    Ok(c)
}

/// A short name for progress lines: the hex of a blob or the legacy layer directory.
fn short(path: &str) -> String {
    let base = path
        .strip_suffix("/layer.tar")
        .unwrap_or(path)
        .rsplit('/')
        .next()
        .unwrap_or(path);
    base.chars().take(12).collect()
}

impl Collected {
    fn resolve_alias(&self, path: &str) -> String {
        let mut p = path.to_string();
        for _ in 0..super::tree::MAX_LINKS {
            match self.aliases.get(&p) {
                Some(t) => p = t.clone(),
                None => break,
            }
        }
        p
    }

    fn json_at(&self, origin: &str, path: &str) -> Result<&[u8], ImageError> {
        let p = self.resolve_alias(path);
        self.json
            .get(&p)
            .map(Vec::as_slice)
            .ok_or_else(|| ImageError::Format {
                path: origin.to_string(),
                message: format!("{path} is referenced but missing from the archive"),
            })
    }

    /// A blob by digest, its content checked against the digest.
    fn blob(&self, origin: &str, digest: &str) -> Result<Vec<u8>, ImageError> {
        let path = spec::blob_path(digest).ok_or_else(|| ImageError::BadDigest {
            path: origin.to_string(),
            digest: digest.to_string(),
        })?;
        let data = self.json_at(origin, &path)?;
        let actual = sha256(data);
        if digest.starts_with("sha256:") && actual != digest {
            return Err(ImageError::DigestMismatch {
                what: format!("{origin}: {path}"),
                expected: digest.to_string(),
                actual,
            });
        }
        Ok(data.to_vec())
    }

    /// Moves the layer at `path` into `scans` (once) and returns its index.
    fn take_layer(
        &mut self,
        origin: &str,
        path: &str,
        taken: &mut HashMap<String, usize>,
    ) -> Result<usize, ImageError> {
        let p = self.resolve_alias(path);
        if let Some(i) = taken.get(&p) {
            return Ok(*i);
        }
        let scan = self.layers.remove(&p).ok_or_else(|| ImageError::Format {
            path: origin.to_string(),
            message: format!("layer {path} is referenced but missing from the archive"),
        })?;
        self.scans.push(scan);
        let i = self.scans.len() - 1;
        taken.insert(p, i);
        Ok(i)
    }
}

fn parse_json<T: serde::de::DeserializeOwned>(
    origin: &str,
    path: &str,
    data: &[u8],
) -> Result<T, ImageError> {
    serde_json::from_slice(data).map_err(|source| ImageError::Json {
        path: format!("{origin}: {path}"),
        source,
    })
}

/// Checks each layer's diff id against the config's `rootfs.diff_ids` and builds the layer list.
pub(crate) fn check_layers(
    origin: &str,
    config: &ImageConfig,
    scans: &[LayerScan],
    order: &[usize],
    expected_digests: &[Option<String>],
) -> Result<Vec<LayerInfo>, ImageError> {
    if config.rootfs.diff_ids.len() != order.len() {
        return Err(ImageError::Format {
            path: origin.to_string(),
            message: format!(
                "the manifest lists {} layers, the config's rootfs.diff_ids {}",
                order.len(),
                config.rootfs.diff_ids.len()
            ),
        });
    }
    let history: Vec<&str> = config
        .history
        .iter()
        .filter(|h| !h.empty_layer)
        .map(|h| h.created_by.as_str())
        .collect();
    let mut out = Vec::with_capacity(order.len());
    for (i, (&idx, expected_diff)) in order.iter().zip(&config.rootfs.diff_ids).enumerate() {
        let scan = &scans[idx];
        if let Some(Some(expected)) = expected_digests.get(i) {
            if expected.starts_with("sha256:") && *expected != scan.digest {
                return Err(ImageError::DigestMismatch {
                    what: format!("{origin}: layer {}", i + 1),
                    expected: expected.clone(),
                    actual: scan.digest.clone(),
                });
            }
        }
        if expected_diff.starts_with("sha256:") && *expected_diff != scan.diff_id {
            return Err(ImageError::DigestMismatch {
                what: format!("{origin}: layer {} (rootfs.diff_ids)", i + 1),
                expected: expected_diff.clone(),
                actual: scan.diff_id.clone(),
            });
        }
        out.push(LayerInfo {
            diff_id: scan.diff_id.clone(),
            digest: (scan.digest != scan.diff_id).then(|| scan.digest.clone()),
            size: scan.size,
            compressed_size: scan.compressed_size,
            compression: scan.compression.as_str().to_string(),
            created_by: history.get(i).map(|s| s.to_string()),
        });
    }
    Ok(out)
}

/// Reads an archive stream into layers in image order. `source` and `target` fill
/// [`ImageInfo`].
pub(crate) fn read_stream<R: Read>(
    input: R,
    origin: &str,
    target: &str,
    source: SourceKind,
    ctx: &mut ReadCtx<'_>,
) -> Result<Loaded, ImageError> {
    let mut c = collect(input, origin, ctx)?;
    let mut taken = HashMap::new();
    let mut order = Vec::new();
    let mut expected = Vec::new();
    let config_bytes: Vec<u8>;
    let mut repo_tags = Vec::new();
    if c.json.contains_key("manifest.json") {
        let list: Vec<DockerManifest> =
            parse_json(origin, "manifest.json", c.json_at(origin, "manifest.json")?)?;
        let m = list.into_iter().next().ok_or_else(|| ImageError::Format {
            path: format!("{origin}: manifest.json"),
            message: "no image in manifest.json".into(),
        })?;
        config_bytes = c.json_at(origin, &m.config)?.to_vec();
        // Docker 25+ names blobs by digest: check the config against its name.
        if let Some(hex) = ipath::normalise(&m.config)
            .ok()
            .and_then(|p| p.strip_prefix("blobs/sha256/").map(str::to_string))
        {
            let actual = sha256(&config_bytes);
            if actual != format!("sha256:{hex}") {
                return Err(ImageError::DigestMismatch {
                    what: format!("{origin}: {}", m.config),
                    expected: format!("sha256:{hex}"),
                    actual,
                });
            }
        }
        for l in &m.layers {
            let norm = ipath::normalise(l).map_err(|_| ImageError::PathTraversal {
                layer: format!("{origin}: manifest.json"),
                entry: l.clone(),
            })?;
            order.push(c.take_layer(origin, &norm, &mut taken)?);
            expected.push(
                norm.strip_prefix("blobs/sha256/")
                    .map(|h| format!("sha256:{h}")),
            );
        }
        repo_tags = m.repo_tags.unwrap_or_default();
    } else if c.json.contains_key("index.json") {
        let index = c.json_at(origin, "index.json")?.to_vec();
        let manifest_bytes = choose_manifest(origin, &index, &mut |d: &str| c.blob(origin, d))?;
        let m: Manifest = parse_json(origin, "manifest", &manifest_bytes)?;
        config_bytes = c.blob(origin, &m.config.digest)?;
        for l in &m.layers {
            let path = spec::blob_path(&l.digest).ok_or_else(|| ImageError::BadDigest {
                path: origin.to_string(),
                digest: l.digest.clone(),
            })?;
            order.push(c.take_layer(origin, &path, &mut taken)?);
            expected.push(Some(l.digest.clone()));
        }
    } else {
        return Err(ImageError::Format {
            path: origin.to_string(),
            message: "not an image archive: neither manifest.json (docker save) nor index.json (OCI layout) found".into(),
        });
    }
    let config: ImageConfig = parse_json(origin, "image config", &config_bytes)?;
    let layers = check_layers(origin, &config, &c.scans, &order, &expected)?;
    Ok(Loaded {
        info: ImageInfo {
            target: target.to_string(),
            source,
            id: Some(sha256(&config_bytes)),
            repo_tags,
            repo_digests: Vec::new(),
            config: Some(config),
            layers,
        },
        scans: c.scans,
        order,
    })
}

/// Reads an archive file.
pub(crate) fn read_file(path: &Path, ctx: &mut ReadCtx<'_>) -> Result<Loaded, ImageError> {
    let file = File::open(path).map_err(|e| match e.kind() {
        io::ErrorKind::NotFound => ImageError::NotFound {
            target: path.display().to_string(),
        },
        _ => ImageError::io(path, e),
    })?;
    let origin = path.display().to_string();
    read_stream(
        io::BufReader::with_capacity(256 << 10, file),
        &origin,
        &origin,
        SourceKind::Archive,
        ctx,
    )
}

/// The image id of an uncompressed archive file, from its manifest and config, skipping layer
/// bytes with seeks; `None` for compressed archives (they cannot be skipped through).
pub(crate) fn identify(path: &Path, limits: &Limits) -> Result<Option<String>, ImageError> {
    let mut file = File::open(path).map_err(|e| ImageError::io(path, e))?;
    let mut magic = [0u8; 4];
    let n = file.read(&mut magic).map_err(|e| ImageError::io(path, e))?;
    if Compression::sniff(&magic[..n]) != Compression::None {
        return Ok(None);
    }
    let file = File::open(path).map_err(|e| ImageError::io(path, e))?;
    let origin = path.display().to_string();
    let mut archive = tar_archive(file);
    let mut json: HashMap<String, Vec<u8>> = HashMap::new();
    let entries = archive
        .entries_with_seek()
        .map_err(|e| ImageError::io(path, e))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| ImageError::io(path, e))?;
        let Ok(p) = ipath::normalise(&String::from_utf8_lossy(&entry.path_bytes())) else {
            return Ok(None);
        };
        let wanted = p == "manifest.json"
            || p == "index.json"
            || (p.ends_with(".json") && !p.contains('/'))
            || p.starts_with("blobs/");
        if entry.header().entry_type().is_file() && wanted && entry.size() <= limits.max_json_size {
            let data = read_capped(&mut entry, limits.max_json_size)
                .map_err(|e| ImageError::io(path, e))?;
            if looks_like_json(&data) {
                json.insert(p, data);
            }
        }
    }
    let config = if let Some(m) = json.get("manifest.json") {
        let list: Vec<DockerManifest> = parse_json(&origin, "manifest.json", m)?;
        let Some(first) = list.first() else {
            return Ok(None);
        };
        ipath::normalise(&first.config)
            .ok()
            .and_then(|c| json.get(&c))
    } else if let Some(index) = json.get("index.json") {
        let mut get = |d: &str| -> Result<Vec<u8>, ImageError> {
            spec::blob_path(d)
                .and_then(|p| json.get(&p).cloned())
                .ok_or_else(|| ImageError::Format {
                    path: origin.clone(),
                    message: format!("blob {d} missing"),
                })
        };
        let manifest = choose_manifest(&origin, index, &mut get)?;
        let m: Manifest = parse_json(&origin, "manifest", &manifest)?;
        spec::blob_path(&m.config.digest).and_then(|p| json.get(&p))
    } else {
        None
    };
    Ok(config.map(|c| sha256(c)))
}
