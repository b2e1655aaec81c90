//! Reading one layer: a (possibly gzip- or zstd-compressed) tar stream, read once, front to back.
//!
//! Nothing is written to disk: each entry is checked (path, type, size, link target), recorded
//! in the layer's [`LayerChanges`], and, when an analyser wants it, read into memory (capped by
//! [`Limits::max_read_size`]) and analysed on the spot. The SHA-256 of the compressed stream
//! (the blob digest) and of the uncompressed tar (the diff id) are computed on the way, so the
//! caller can check them against the manifest and the image config.

use std::cell::RefCell;
use std::io::{self, Read};
use std::rc::Rc;

use sha2::{Digest, Sha256};

use super::path::{self, lexical_target, BadPath};
use super::tree::{Entry, EntryKind, LayerChanges};
use super::{ImageError, Progress};
use crate::analyze::{Analyzers, FileRef, FileResult};
use crate::limit::{decompress, tar_archive, Budget, Compression, LimitExceeded, Limits};

/// The prefix of whiteout files.
const WHITEOUT: &str = ".wh.";
/// The name of the opaque-directory marker.
const OPAQUE: &str = ".wh..wh..opq";

/// What reading one layer produced.
#[derive(Debug)]
pub(crate) struct LayerScan {
    pub changes: LayerChanges,
    /// Analysis results by archive path (only files an analyser found something in).
    pub results: Vec<(String, FileResult)>,
    /// `sha256:` of the uncompressed tar.
    pub diff_id: String,
    /// `sha256:` of the bytes as stored (equal to `diff_id` when uncompressed).
    pub digest: String,
    /// Uncompressed size.
    pub size: u64,
    /// Size as stored.
    pub compressed_size: u64,
    pub compression: Compression,
    /// Files an analyser wanted but that were larger than `max_read_size`.
    pub skipped: Vec<String>,
}

/// State shared by all layers of one image.
pub(crate) struct ReadCtx<'a> {
    pub limits: &'a Limits,
    pub budget: Budget,
    pub entries: u64,
    pub analyzers: &'a Analyzers,
    pub progress: &'a dyn Progress,
}

/// Hashes and counts what is read through it; the state is shared so it survives the reader
/// being moved into a decompressor.
struct Hashing<R> {
    inner: R,
    state: Rc<RefCell<(Sha256, u64)>>,
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        let mut st = self.state.borrow_mut();
        st.0.update(&buf[..n]);
        st.1 += n as u64;
        Ok(n)
    }
}

/// Reports compressed bytes read to the progress sink.
struct Reporting<'a, R> {
    inner: R,
    progress: &'a dyn Progress,
}

impl<R: Read> Read for Reporting<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.progress.advance(n as u64);
        Ok(n)
    }
}

fn hex_digest(state: &Rc<RefCell<(Sha256, u64)>>) -> (String, u64) {
    let st = state.borrow();
    (
        format!("sha256:{}", hex::encode(st.0.clone().finalize())),
        st.1,
    )
}

/// Maps an I/O error met while reading layer `label` (at `entry`, when known) to an
/// [`ImageError`].
pub(crate) fn io_error(label: &str, entry: Option<&str>, err: io::Error) -> ImageError {
    match LimitExceeded::from_io(&err) {
        Some(limit) => ImageError::Limit {
            layer: label.to_string(),
            entry: entry.map(str::to_string),
            limit,
        },
        None => ImageError::Layer {
            layer: label.to_string(),
            entry: entry.map(str::to_string),
            source: err,
        },
    }
}

/// Reads the layer `input` (compressed or not) labelled `label` in errors.
pub(crate) fn read_layer<R: Read>(
    input: R,
    label: &str,
    ctx: &mut ReadCtx<'_>,
) -> Result<LayerScan, ImageError> {
    let blob = Rc::new(RefCell::new((Sha256::new(), 0u64)));
    let reporting = Reporting {
        inner: input,
        progress: ctx.progress,
    };
    let hashed = Hashing {
        inner: reporting,
        state: blob.clone(),
    };
    let (compression, plain) =
        decompress(hashed, ctx.limits, &ctx.budget).map_err(|e| io_error(label, None, e))?;
    let diff = Rc::new(RefCell::new((Sha256::new(), 0u64)));
    let plain = Hashing {
        inner: plain,
        state: diff.clone(),
    };
    let mut archive = tar_archive(plain);
    let mut scan = LayerScan {
        changes: LayerChanges::default(),
        results: Vec::new(),
        diff_id: String::new(),
        digest: String::new(),
        size: 0,
        compressed_size: 0,
        compression,
        skipped: Vec::new(),
    };
    let entries = archive.entries().map_err(|e| io_error(label, None, e))?;
    let mut last_path: Option<String> = None;
    for entry in entries {
        let mut entry = entry.map_err(|e| io_error(label, last_path.as_deref(), e))?;
        let raw = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        last_path = Some(raw.clone());
        ctx.entries += 1;
        if ctx.entries > ctx.limits.max_entries {
            return Err(ImageError::TooManyEntries {
                layer: label.to_string(),
                limit: ctx.limits.max_entries,
            });
        }
        let path = path::normalise(&raw).map_err(|bad| match bad {
            BadPath::Traversal => ImageError::PathTraversal {
                layer: label.to_string(),
                entry: raw.clone(),
            },
            BadPath::Invalid => ImageError::BadEntry {
                layer: label.to_string(),
                entry: raw.clone(),
                reason: "invalid path".into(),
            },
        })?;
        let header = entry.header();
        let mode = header.mode().unwrap_or(0o644);
        let uid = header.uid().unwrap_or(0);
        let gid = header.gid().unwrap_or(0);
        let etype = header.entry_type();
        let name = path::file_name(&path);
        if name == OPAQUE {
            scan.changes.opaque.push(path::parent(&path).to_string());
            continue;
        }
        if let Some(hidden) = name.strip_prefix(WHITEOUT) {
            // `.wh..wh.*` other than the opaque marker are AUFS bookkeeping: ignored.
            if !hidden.starts_with(".wh.") && !hidden.is_empty() {
                scan.changes
                    .whiteouts
                    .push(path::join(path::parent(&path), hidden));
            }
            continue;
        }
        let kind = if etype.is_file() || etype.is_contiguous() || etype.is_gnu_sparse() {
            let size = entry.size();
            if size > ctx.limits.max_file_size {
                return Err(ImageError::FileTooLarge {
                    layer: label.to_string(),
                    entry: raw,
                    size,
                    limit: ctx.limits.max_file_size,
                });
            }
            let file = FileRef {
                path: &path,
                mode,
                size,
            };
            if ctx.analyzers.wants(&file) {
                if size > ctx.limits.max_read_size {
                    scan.skipped.push(path.clone());
                } else {
                    let mut data = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
                    let got = (&mut entry)
                        .take(size)
                        .read_to_end(&mut data)
                        .map_err(|e| io_error(label, Some(&raw), e))?;
                    if got as u64 != size {
                        return Err(io_error(
                            label,
                            Some(&raw),
                            io::Error::new(
                                io::ErrorKind::UnexpectedEof,
                                format!("truncated archive: {got} of {size} bytes"),
                            ),
                        ));
                    }
                    let result = ctx.analyzers.analyze(&file, &data);
                    if !result.is_empty() {
                        scan.results.push((path.clone(), result));
                    }
                }
            }
            EntryKind::File { size }
        } else if etype.is_dir() {
            EntryKind::Dir
        } else if etype.is_symlink() {
            let target = entry
                .link_name_bytes()
                .map(|t| String::from_utf8_lossy(&t).into_owned())
                .unwrap_or_default();
            if target.is_empty() || lexical_target(&path, &target).is_none() {
                return Err(ImageError::SymlinkEscape {
                    layer: label.to_string(),
                    entry: raw,
                    target,
                });
            }
            EntryKind::Symlink(target)
        } else if etype.is_hard_link() {
            let target_raw = entry
                .link_name_bytes()
                .map(|t| String::from_utf8_lossy(&t).into_owned())
                .unwrap_or_default();
            let target = path::normalise(&target_raw)
                .ok()
                .filter(|t| !t.is_empty())
                .ok_or_else(|| ImageError::HardLinkEscape {
                    layer: label.to_string(),
                    entry: raw.clone(),
                    target: target_raw.clone(),
                })?;
            EntryKind::HardLink(target)
        } else if etype.is_character_special() || etype.is_block_special() {
            let major = entry.header().device_major().ok().flatten().unwrap_or(0);
            let minor = entry.header().device_minor().ok().flatten().unwrap_or(0);
            if etype.is_character_special() && harmless_dev_node(&path, major, minor) {
                // Docker mounts its own /dev over the image's, so these are never seen.
                EntryKind::Other
            } else {
                return Err(ImageError::DeviceFile {
                    layer: label.to_string(),
                    entry: raw,
                    kind: if etype.is_character_special() {
                        "character device"
                    } else {
                        "block device"
                    },
                    major,
                    minor,
                });
            }
        } else if etype.is_fifo() {
            EntryKind::Other
        } else {
            // pax and GNU long-name headers are consumed by the tar reader; anything left is a
            // type no image tool writes.
            return Err(ImageError::BadEntry {
                layer: label.to_string(),
                entry: raw,
                reason: format!("unsupported tar entry type {:?}", etype.as_byte() as char),
            });
        };
        scan.changes.entries.push(Entry {
            path,
            kind,
            mode,
            uid,
            gid,
        });
    }
    // Drain what follows the end-of-archive marker, so both digests cover the whole stream.
    let mut rest = archive.into_inner();
    io::copy(&mut rest, &mut io::sink()).map_err(|e| io_error(label, None, e))?;
    drop(rest);
    (scan.diff_id, scan.size) = hex_digest(&diff);
    (scan.digest, scan.compressed_size) = hex_digest(&blob);
    Ok(scan)
}

/// The character devices that `debootstrap` and `docker import` of a root filesystem leave in
/// `/dev`: null, zero, full, random, urandom (major 1), tty, console, ptmx (major 5). Any other
/// device node, or one of these anywhere else, refuses the image.
fn harmless_dev_node(path: &str, major: u32, minor: u32) -> bool {
    let standard = matches!((major, minor), (1, 3 | 5 | 7 | 8 | 9) | (5, 0..=2));
    let name = path::file_name(path);
    let expected = match (major, minor) {
        (1, 3) => "null",
        (1, 5) => "zero",
        (1, 7) => "full",
        (1, 8) => "random",
        (1, 9) => "urandom",
        (5, 0) => "tty",
        (5, 1) => "console",
        (5, 2) => "ptmx",
        _ => "",
    };
    standard && path::parent(path) == "dev" && name == expected
}
