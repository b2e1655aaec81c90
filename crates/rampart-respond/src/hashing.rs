//! SHA-256 of a container's executables, for exec rules by hash.
//!
//! The kernel cannot hash a file at exec time, so hash rules are resolved here: every regular
//! file with an execute bit under the container's root is hashed, and the identity the exec hook
//! sees (device, inode, change time: [`FileId`]) is stored with the verdict. Files written later
//! are reported by the hook as unknown and hashed then ([`hash_file`]).

use std::collections::HashMap;
use std::ffi::OsStr;
use std::io::Read;
use std::path::{Path, PathBuf};

use rampart_kernel::enforce::FileId;
use sha2::{Digest, Sha256};

use crate::safefs::{is_pseudo_fs, Dir, Kind};

/// Bounds of one scan.
#[derive(Debug, Clone, Copy)]
pub struct ScanLimits {
    /// Larger files are not hashed (and so cannot match a hash rule).
    pub max_file_bytes: u64,
    /// The scan stops after this many executables.
    pub max_files: usize,
    /// Directory depth.
    pub max_depth: usize,
}

impl Default for ScanLimits {
    fn default() -> Self {
        ScanLimits {
            max_file_bytes: 256 << 20,
            max_files: 200_000,
            max_depth: 32,
        }
    }
}

/// One hashed executable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hashed {
    /// Path inside the container.
    pub path: String,
    pub id: FileId,
    pub sha256: [u8; 32],
}

/// What a scan found.
#[derive(Debug, Clone, Default)]
pub struct Scan {
    pub files: Vec<Hashed>,
    /// Executables over `max_file_bytes`.
    pub too_large: Vec<String>,
    /// The scan hit `max_files`.
    pub truncated: bool,
}

/// Hashes already computed, by (inode, size, mtime, ctime): files of an image's lower layers
/// are shared by every container of that image.
#[derive(Debug, Default)]
pub struct HashCache {
    by_identity: HashMap<(u64, u64, i64, i64, u32), [u8; 32]>,
}

#[cfg(test)]
impl HashCache {
    pub fn len(&self) -> usize {
        self.by_identity.len()
    }
}

/// SHA-256 of everything `r` yields.
pub fn sha256_reader(r: &mut dyn Read) -> std::io::Result<[u8; 32]> {
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 64 << 10];
    loop {
        let n = r.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(h.finalize().into())
}

/// SHA-256 (hex) and size of the file at `path`.
pub fn sha256_file(path: &Path) -> std::io::Result<(String, u64)> {
    let mut f = std::fs::File::open(path)?;
    let size = f.metadata()?.len();
    Ok((hex::encode(sha256_reader(&mut f)?), size))
}

fn hash_open(
    f: &mut std::fs::File,
    cache: &mut HashCache,
    limits: &ScanLimits,
) -> std::io::Result<Option<(FileId, [u8; 32])>> {
    use std::os::unix::fs::MetadataExt;
    let m = f.metadata()?;
    let id = FileId::from_metadata(&m);
    if m.size() > limits.max_file_bytes {
        return Ok(None);
    }
    let key = (m.ino(), m.size(), m.mtime(), id.ctime_sec, id.ctime_nsec);
    if let Some(h) = cache.by_identity.get(&key) {
        return Ok(Some((id, *h)));
    }
    let h = sha256_reader(f)?;
    cache.by_identity.insert(key, h);
    Ok(Some((id, h)))
}

/// Hashes every executable regular file below `root` (for a running container,
/// `/proc/<pid>/root`), never following symlinks and skipping pseudo filesystems.
pub fn scan_executables(
    root: &Path,
    cache: &mut HashCache,
    limits: &ScanLimits,
) -> std::io::Result<Scan> {
    let dir = Dir::open_root(root)?;
    let mut scan = Scan::default();
    walk(&dir, PathBuf::from("/"), 0, cache, limits, &mut scan);
    Ok(scan)
}

fn walk(
    dir: &Dir,
    path: PathBuf,
    depth: usize,
    cache: &mut HashCache,
    limits: &ScanLimits,
    scan: &mut Scan,
) {
    if depth > limits.max_depth || scan.truncated {
        return;
    }
    let Ok(names) = dir.names() else { return };
    for name in names {
        if scan.truncated {
            return;
        }
        let Ok(e) = dir.entry(&name) else { continue };
        let child = path.join(&name);
        match e.kind {
            Kind::Dir => {
                if depth == 0 && name == OsStr::new("dev") {
                    continue;
                }
                let Ok(sub) = dir.open_dir(&name) else {
                    continue;
                };
                if sub.fs_type().is_ok_and(is_pseudo_fs) {
                    continue;
                }
                walk(&sub, child, depth + 1, cache, limits, scan);
            }
            Kind::File if e.mode & 0o111 != 0 => {
                if scan.files.len() >= limits.max_files {
                    scan.truncated = true;
                    return;
                }
                let Ok(mut f) = dir.open_file(&name) else {
                    continue;
                };
                match hash_open(&mut f, cache, limits) {
                    Ok(Some((id, sha256))) => scan.files.push(Hashed {
                        path: child.to_string_lossy().into_owned(),
                        id,
                        sha256,
                    }),
                    Ok(None) => scan.too_large.push(child.to_string_lossy().into_owned()),
                    Err(e) => tracing::debug!("hashing {}: {e}", child.display()),
                }
            }
            _ => {}
        }
    }
}

/// Hashes one file: the executable of a live process (`/proc/<pid>/exe`, which opens the very
/// file even if it was deleted or replaced), else `path` below `root`.
pub fn hash_file(
    pid: Option<u32>,
    root: Option<&Path>,
    path: Option<&str>,
    cache: &mut HashCache,
    limits: &ScanLimits,
) -> Option<(FileId, [u8; 32])> {
    if let Some(pid) = pid {
        if let Ok(mut f) = std::fs::File::open(format!("/proc/{pid}/exe")) {
            if let Ok(Some(r)) = hash_open(&mut f, cache, limits) {
                return Some(r);
            }
        }
    }
    let (root, path) = (root?, path?);
    let dir = Dir::open_root(root).ok()?;
    let mut f = dir
        .open_path(Path::new(path.trim_start_matches('/')))
        .ok()?;
    hash_open(&mut f, cache, limits).ok().flatten()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn scans_executables_only_and_reuses_hashes() {
        let t = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(t.path().join("usr/bin")).unwrap();
        let exe = t.path().join("usr/bin/tool");
        std::fs::write(&exe, b"#!/bin/sh\necho hi\n").unwrap();
        std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::write(t.path().join("usr/bin/data"), b"not executable").unwrap();
        std::os::unix::fs::symlink("/bin/sh", t.path().join("usr/bin/sh")).unwrap();
        let mut cache = HashCache::default();
        let s = scan_executables(t.path(), &mut cache, &ScanLimits::default()).unwrap();
        assert_eq!(s.files.len(), 1);
        assert_eq!(s.files[0].path, "/usr/bin/tool");
        assert_eq!(
            hex::encode(s.files[0].sha256),
            hex::encode(Sha256::digest(b"#!/bin/sh\necho hi\n"))
        );
        assert_eq!(cache.len(), 1);
        let again = scan_executables(t.path(), &mut cache, &ScanLimits::default()).unwrap();
        assert_eq!(again.files, s.files);
        let one = hash_file(
            None,
            Some(t.path()),
            Some("/usr/bin/tool"),
            &mut cache,
            &ScanLimits::default(),
        );
        assert_eq!(one.map(|o| o.1), Some(s.files[0].sha256));
        assert!(hash_file(
            None,
            Some(t.path()),
            Some("/usr/bin/sh"),
            &mut cache,
            &ScanLimits::default()
        )
        .is_none());
    }
}
