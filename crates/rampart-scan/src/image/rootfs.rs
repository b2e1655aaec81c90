//! A root filesystem directory as a one-layer image.
//!
//! The walk never follows symlinks (they are recorded with their targets and resolved in the
//! image's tree), stays on the file system of the root (like `find -xdev`: a `/proc` or a bind
//! mount under it is not entered), records device nodes, fifos and sockets without opening them,
//! and opens the files it reads with `O_NOFOLLOW` after checking they are regular. A second name
//! of an already seen inode becomes a hard link, so its content is analysed once.

use std::collections::HashMap;
use std::fs::{self, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::Path;

use super::layer::{LayerScan, ReadCtx};
use super::tree::{Entry, EntryKind, LayerChanges};
use super::{ImageError, ImageInfo, LayerInfo, Loaded, SourceKind};
use crate::analyze::FileRef;
use crate::limit::{Compression, LimitExceeded};

/// Reads the directory `root` as one layer.
pub(crate) fn read(root: &Path, ctx: &mut ReadCtx<'_>) -> Result<Loaded, ImageError> {
    let meta = fs::metadata(root).map_err(|e| match e.kind() {
        io::ErrorKind::NotFound => ImageError::NotFound {
            target: root.display().to_string(),
        },
        _ => ImageError::io(root, e),
    })?;
    if !meta.is_dir() {
        return Err(ImageError::Format {
            path: root.display().to_string(),
            message: "not a directory".into(),
        });
    }
    let label = root.display().to_string();
    let mut scan = LayerScan {
        changes: LayerChanges::default(),
        results: Vec::new(),
        diff_id: String::new(),
        digest: String::new(),
        size: 0,
        compressed_size: 0,
        compression: Compression::None,
        skipped: Vec::new(),
    };
    ctx.progress.begin(&format!("walking {label}"), None);
    let mut inodes: HashMap<(u64, u64), String> = HashMap::new();
    let mut stack = vec![String::new()];
    while let Some(dir) = stack.pop() {
        let abs = root.join(&dir);
        let mut names: Vec<_> = match fs::read_dir(&abs) {
            Ok(rd) => rd
                .filter_map(Result::ok)
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect(),
            // A directory we may not read is recorded empty, not fatal.
            Err(e) if e.kind() == io::ErrorKind::PermissionDenied => continue,
            Err(e) => return Err(ImageError::io(&abs, e)),
        };
        names.sort();
        for name in names {
            let rel = if dir.is_empty() {
                name.clone()
            } else {
                format!("{dir}/{name}")
            };
            let abs = root.join(&rel);
            let Ok(m) = fs::symlink_metadata(&abs) else {
                continue; // vanished during the walk
            };
            ctx.entries += 1;
            if ctx.entries > ctx.limits.max_entries {
                return Err(ImageError::TooManyEntries {
                    layer: label.clone(),
                    limit: ctx.limits.max_entries,
                });
            }
            let ft = m.file_type();
            let mode = m.mode() & 0o7777;
            let kind = if ft.is_dir() {
                if m.dev() == meta.dev() {
                    stack.push(rel.clone());
                }
                EntryKind::Dir
            } else if ft.is_symlink() {
                let target = fs::read_link(&abs)
                    .map(|t| t.to_string_lossy().into_owned())
                    .unwrap_or_default();
                EntryKind::Symlink(target)
            } else if ft.is_file() {
                if let Some(first) = inodes.get(&(m.dev(), m.ino())) {
                    EntryKind::HardLink(first.clone())
                } else {
                    if m.nlink() > 1 {
                        inodes.insert((m.dev(), m.ino()), rel.clone());
                    }
                    let size = m.len();
                    ctx.budget_add(size, &label, &rel)?;
                    scan.size += size;
                    let file = FileRef {
                        path: &rel,
                        mode,
                        size,
                    };
                    if ctx.analyzers.wants(&file) {
                        if size > ctx.limits.max_read_size {
                            scan.skipped.push(rel.clone());
                        } else if let Some(data) = read_file(&abs, ctx.limits.max_read_size) {
                            ctx.progress.advance(data.len() as u64);
                            let result = ctx.analyzers.analyze(&file, &data);
                            if !result.is_empty() {
                                scan.results.push((rel.clone(), result));
                            }
                        }
                    }
                    EntryKind::File { size }
                }
            } else {
                EntryKind::Other
            };
            scan.changes.entries.push(Entry {
                path: rel,
                kind,
                mode,
                uid: u64::from(m.uid()),
                gid: u64::from(m.gid()),
            });
        }
    }
    ctx.progress.end();
    let info = ImageInfo {
        target: label,
        source: SourceKind::Rootfs,
        id: None,
        repo_tags: Vec::new(),
        repo_digests: Vec::new(),
        config: None,
        layers: vec![LayerInfo {
            diff_id: String::new(),
            digest: None,
            size: scan.size,
            compressed_size: scan.size,
            compression: "none".into(),
            created_by: None,
        }],
    };
    Ok(Loaded {
        info,
        scans: vec![scan],
        order: vec![0],
    })
}

/// The contents of a regular file, opened without following a symlink; `None` when it is gone,
/// unreadable, or changed into something else since the walk saw it.
fn read_file(path: &Path, max: u64) -> Option<Vec<u8>> {
    let f = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)
        .ok()?;
    if !f.metadata().ok()?.is_file() {
        return None;
    }
    let mut data = Vec::new();
    f.take(max).read_to_end(&mut data).ok()?;
    Some(data)
}

impl ReadCtx<'_> {
    /// Counts `size` bytes of a directory source against the image budget.
    fn budget_add(&mut self, size: u64, layer: &str, entry: &str) -> Result<(), ImageError> {
        if self.budget.take(size) {
            Ok(())
        } else {
            Err(ImageError::Limit {
                layer: layer.to_string(),
                entry: Some(entry.to_string()),
                limit: LimitExceeded::ImageSize {
                    limit: self.limits.max_image_size,
                },
            })
        }
    }
}
