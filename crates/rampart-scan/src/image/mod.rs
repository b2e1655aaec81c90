//! Reading images: every source is turned into an ordered list of layers, each read once as a
//! stream and analysed on the way (see [`layer`]); the layers are then merged into one tree (see
//! [`tree`]) that decides which file wins at each path.
//!
//! Sources ([`Target`]):
//! * an image in the local Docker daemon, exported through the Engine API (`docker save`'s
//!   stream; nothing is written to disk);
//! * a `docker save` tarball, plain or gzip-compressed (legacy layout with `manifest.json`, or
//!   the OCI layout Docker 25+ writes);
//! * an OCI image layout, as a directory or a tar of one;
//! * a root filesystem directory (one layer, walked without following symlinks and without
//!   crossing into other file systems);
//! * a running or stopped container (`container:NAME`), exported through the Engine API as one
//!   layer, with the configuration of the container.
//!
//! Guarantees:
//! * no byte of an image is ever written to disk, so nothing can be written outside any scratch
//!   directory, whatever the archive says;
//! * every refusal in [`ImageError`] names the layer and the entry: `..` in a path, a symlink
//!   whose target climbs above the image root, a hard link outside the image, a device node (bar
//!   the standard ones in `/dev`), a file over [`Limits::max_file_size`], an image over
//!   [`Limits::max_image_size`] or [`Limits::max_entries`], a decompression ratio over
//!   [`Limits::max_ratio`], a corrupt gzip or zstd stream, a digest that does not match the
//!   manifest or the config's `diff_ids`;
//! * symlinks and hard links are resolved in the image's own tree, never on the host.

use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::analyze::Analyzers;
use crate::inventory::Inventory;
use crate::limit::{Budget, LimitExceeded, Limits};

mod archive;
mod assemble;
mod daemon;
pub(crate) mod layer;
mod layout;
mod path;
mod rootfs;
pub(crate) mod spec;
pub(crate) mod tree;

pub use spec::{Healthcheck, History, ImageConfig, RootFs, RunConfig};

/// Why an image could not be read. Every variant names where the problem is.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ImageError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("{target}: no such image, container, file or directory")]
    NotFound { target: String },
    #[error("docker daemon: {target}: {message}")]
    Docker { target: String, message: String },
    #[error("{path}: invalid JSON: {source}")]
    Json {
        path: String,
        source: serde_json::Error,
    },
    #[error("{path}: {size} bytes of JSON exceeds max_json_size ({limit} bytes)")]
    JsonTooLarge { path: String, size: u64, limit: u64 },
    #[error("{path}: {message}")]
    Format { path: String, message: String },
    #[error("{path}: invalid digest {digest:?} (expected sha256:<64 hex digits>)")]
    BadDigest { path: String, digest: String },
    #[error(
        "{what}: digest mismatch: the manifest or config says {expected}, the content is {actual}"
    )]
    DigestMismatch {
        what: String,
        expected: String,
        actual: String,
    },
    #[error("layer {layer}{}: {source}", at(.entry))]
    Layer {
        layer: String,
        entry: Option<String>,
        source: io::Error,
    },
    #[error("layer {layer}{}: {limit}", at(.entry))]
    Limit {
        layer: String,
        entry: Option<String>,
        limit: LimitExceeded,
    },
    #[error("layer {layer}: more than max_entries ({limit}) entries in the image")]
    TooManyEntries { layer: String, limit: u64 },
    #[error("layer {layer}: entry {entry:?}: path traversal ('..' in an archive path is refused)")]
    PathTraversal { layer: String, entry: String },
    #[error("layer {layer}: symlink {entry:?} -> {target:?} points outside the image root")]
    SymlinkEscape {
        layer: String,
        entry: String,
        target: String,
    },
    #[error("layer {layer}: hard link {entry:?} -> {target:?} points outside the image")]
    HardLinkEscape {
        layer: String,
        entry: String,
        target: String,
    },
    #[error(
        "layer {layer}: hard link {entry:?} -> {target:?}: no such file in this or a lower layer"
    )]
    HardLinkMissing {
        layer: String,
        entry: String,
        target: String,
    },
    #[error("layer {layer}: {entry:?} is a {kind} ({major}:{minor}); device files are refused")]
    DeviceFile {
        layer: String,
        entry: String,
        kind: &'static str,
        major: u32,
        minor: u32,
    },
    #[error("layer {layer}: {entry:?} is {size} bytes, over max_file_size ({limit} bytes)")]
    FileTooLarge {
        layer: String,
        entry: String,
        size: u64,
        limit: u64,
    },
    #[error("layer {layer}: entry {entry:?}: {reason}")]
    BadEntry {
        layer: String,
        entry: String,
        reason: String,
    },
}

fn at(entry: &Option<String>) -> String {
    entry
        .as_ref()
        .map(|e| format!(": entry {e:?}"))
        .unwrap_or_default()
}

impl ImageError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: io::Error) -> ImageError {
        ImageError::Io {
            path: path.into(),
            source,
        }
    }

    /// True when the image itself is at fault (refused as hostile, corrupt or over a limit),
    /// as opposed to the environment (missing file, daemon down).
    pub fn is_refusal(&self) -> bool {
        !matches!(
            self,
            ImageError::Io { .. } | ImageError::NotFound { .. } | ImageError::Docker { .. }
        )
    }
}

/// What to scan, parsed from the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// An image in the local Docker daemon, by name, id or digest.
    Daemon(String),
    /// A container of the local Docker daemon, by name or id.
    Container(String),
    /// A `docker save` tarball or a tar of an OCI layout (plain or gzip/zstd-compressed).
    Archive(PathBuf),
    /// An OCI image layout directory.
    Layout(PathBuf),
    /// A root filesystem directory.
    Rootfs(PathBuf),
}

impl Target {
    /// Parses a target: `container:NAME`, `docker:NAME`, `archive:PATH`, `oci:PATH`,
    /// `dir:PATH`; without a prefix an existing path is an OCI layout (a directory with
    /// `index.json`), a root filesystem (other directories) or an archive (files), and anything
    /// else is an image name for the Docker daemon.
    pub fn parse(s: &str) -> Target {
        if let Some(name) = s.strip_prefix("container:") {
            return Target::Container(name.to_string());
        }
        if let Some(name) = s
            .strip_prefix("docker:")
            .or_else(|| s.strip_prefix("docker-daemon:"))
        {
            return Target::Daemon(name.to_string());
        }
        if let Some(p) = s
            .strip_prefix("archive:")
            .or_else(|| s.strip_prefix("docker-archive:"))
        {
            return Target::Archive(p.into());
        }
        if let Some(p) = s.strip_prefix("oci:") {
            let p = PathBuf::from(p);
            return if p.is_dir() {
                Target::Layout(p)
            } else {
                Target::Archive(p)
            };
        }
        if let Some(p) = s.strip_prefix("dir:") {
            return Target::Rootfs(p.into());
        }
        let p = Path::new(s);
        match std::fs::metadata(p) {
            Ok(m) if m.is_dir() && p.join("index.json").is_file() => Target::Layout(p.into()),
            Ok(m) if m.is_dir() => Target::Rootfs(p.into()),
            Ok(_) => Target::Archive(p.into()),
            Err(_) => Target::Daemon(s.to_string()),
        }
    }

    /// The target as the user would write it.
    pub fn display(&self) -> String {
        match self {
            Target::Daemon(n) => n.clone(),
            Target::Container(n) => format!("container:{n}"),
            Target::Archive(p) | Target::Layout(p) | Target::Rootfs(p) => p.display().to_string(),
        }
    }
}

/// Where an image was read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SourceKind {
    Daemon,
    Container,
    Archive,
    OciLayout,
    Rootfs,
}

/// One layer of a read image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerInfo {
    /// `sha256:` of the uncompressed layer (a root filesystem: of the tar stream the walk would
    /// produce is not computed; then empty).
    pub diff_id: String,
    /// `sha256:` of the layer as stored, when compressed differently from the diff.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
    /// Uncompressed size in bytes.
    pub size: u64,
    /// Stored size in bytes.
    pub compressed_size: u64,
    /// `none`, `gzip` or `zstd`.
    pub compression: String,
    /// The build step that made it (`history[].created_by`), when the config says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_by: Option<String>,
}

/// What the scanner knows about the image itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageInfo {
    /// The target as given.
    pub target: String,
    pub source: SourceKind,
    /// Image id: `sha256:` of the image configuration. `None` for a root filesystem or a
    /// container export, which have no configuration of their own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub repo_tags: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub repo_digests: Vec<String>,
    /// The image configuration (for a container: its image's, with the container's own
    /// `User`, `Env`, ports and labels).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<ImageConfig>,
    /// Layers, bottom first.
    pub layers: Vec<LayerInfo>,
}

/// Receives progress of reading an image; the CLI draws a bar with it.
pub trait Progress {
    /// A new phase begins (`layer 2/5`, `matching`), of `total` bytes when known.
    fn begin(&self, what: &str, total: Option<u64>);
    /// `bytes` more bytes of the current phase were read.
    fn advance(&self, bytes: u64);
    /// Nothing more of the current phase.
    fn end(&self);
}

/// Progress that goes nowhere.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoProgress;

impl Progress for NoProgress {
    fn begin(&self, _: &str, _: Option<u64>) {}
    fn advance(&self, _: u64) {}
    fn end(&self) {}
}

/// Reads images into [`Inventory`]s.
#[derive(Debug, Clone)]
pub struct ImageReader {
    limits: Limits,
    analyzers: Analyzers,
}

/// A source read but not yet merged: layer scans and the order the image stacks them in.
pub(crate) struct Loaded {
    pub info: ImageInfo,
    pub scans: Vec<layer::LayerScan>,
    /// Index into `scans` of each layer, bottom first (a layer may appear twice).
    pub order: Vec<usize>,
}

impl ImageReader {
    /// A reader with these limits, running every analyser of this crate.
    pub fn new(limits: Limits) -> ImageReader {
        ImageReader {
            limits,
            analyzers: Analyzers::new(),
        }
    }

    /// A reader with these limits and content checks; fails when a YARA file does not compile.
    pub fn with_checks(
        limits: Limits,
        checks: &crate::analyze::ContentChecks,
    ) -> Result<ImageReader, crate::analyze::malware::YaraError> {
        Ok(ImageReader {
            limits,
            analyzers: Analyzers::with(checks)?,
        })
    }

    /// The limits this reader enforces.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// The image id of `target` when it can be learnt without reading layers (daemon images,
    /// OCI layouts, uncompressed archives), for cache lookups; `None` otherwise.
    pub fn identify(&self, target: &Target) -> Result<Option<String>, ImageError> {
        match target {
            Target::Daemon(name) => daemon::inspect_image(name).map(|i| Some(i.id)),
            Target::Layout(dir) => layout::identify(dir, &self.limits).map(Some),
            Target::Archive(path) => archive::identify(path, &self.limits),
            Target::Container(_) | Target::Rootfs(_) => Ok(None),
        }
    }

    /// Reads `target` completely: every layer, every analyser.
    pub fn read(&self, target: &Target, progress: &dyn Progress) -> Result<Inventory, ImageError> {
        let mut ctx = layer::ReadCtx {
            limits: &self.limits,
            budget: Budget::new(self.limits.max_image_size),
            entries: 0,
            analyzers: &self.analyzers,
            progress,
        };
        let loaded = match target {
            Target::Daemon(name) => daemon::read_image(name, &mut ctx)?,
            Target::Container(name) => daemon::read_container(name, &mut ctx)?,
            Target::Archive(path) => archive::read_file(path, &mut ctx)?,
            Target::Layout(dir) => layout::read(dir, &mut ctx)?,
            Target::Rootfs(dir) => rootfs::read(dir, &mut ctx)?,
        };
        assemble::assemble(loaded)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_parse() {
        assert_eq!(
            Target::parse("container:web"),
            Target::Container("web".into())
        );
        assert_eq!(
            Target::parse("debian:12"),
            Target::Daemon("debian:12".into())
        );
        assert_eq!(Target::parse("docker:/tmp"), Target::Daemon("/tmp".into()));
        assert_eq!(Target::parse("/tmp"), Target::Rootfs("/tmp".into()));
        assert_eq!(
            Target::parse("archive:/x.tar"),
            Target::Archive("/x.tar".into())
        );
    }
}
