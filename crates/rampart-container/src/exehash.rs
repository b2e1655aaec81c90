//! SHA-256 of executables at exec time, cached by file identity.
//!
//! The file is opened through `/proc/PID/exe`, which reaches the executable the process really
//! runs (in its container's filesystem, even when it was deleted since), and identified by
//! (device, inode, size, mtime, ctime) from the open descriptor: a cache hit costs an open and
//! an fstat, a file rewritten in place gets a new ctime and is hashed again. A process that has
//! exited before the agent looks gets no hash.

use std::collections::HashMap;
use std::fs::File;
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use sha2::{Digest, Sha256};

/// Entries kept before the cache is cleared (a few MB at most).
const MAX_ENTRIES: usize = 16_384;

type FileKey = (u64, u64, u64, i64, i64, i64, i64);

/// Hashes by file identity.
#[derive(Debug, Default)]
pub struct HashCache {
    hashes: HashMap<FileKey, Option<String>>,
}

impl HashCache {
    /// The hex SHA-256 of the file at `path` (a `/proc/PID/exe` link), or `None` when it cannot
    /// be opened, is not a regular file, or is larger than `max_bytes`.
    pub fn hash(&mut self, path: &Path, max_bytes: u64) -> Option<String> {
        let mut f = File::open(path).ok()?;
        let m = f.metadata().ok()?;
        if !m.is_file() {
            return None;
        }
        let key = (
            m.dev(),
            m.ino(),
            m.size(),
            m.mtime(),
            m.mtime_nsec(),
            m.ctime(),
            m.ctime_nsec(),
        );
        if let Some(h) = self.hashes.get(&key) {
            return h.clone();
        }
        let h = if m.size() > max_bytes {
            None
        } else {
            let mut hasher = Sha256::new();
            let mut buf = vec![0u8; 64 * 1024];
            let mut total = 0u64;
            loop {
                match f.read(&mut buf) {
                    Ok(0) => break Some(hex(&hasher.finalize())),
                    Ok(n) => {
                        total += n as u64;
                        if total > max_bytes {
                            break None;
                        }
                        hasher.update(&buf[..n]);
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(_) => break None,
                }
            }
        };
        if self.hashes.len() >= MAX_ENTRIES {
            self.hashes.clear();
        }
        self.hashes.insert(key, h.clone());
        h
    }
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes.iter().fold(String::with_capacity(64), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_files_and_sees_changes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let f = dir.path().join("prog");
        std::fs::write(&f, b"abc").expect("write");
        let mut c = HashCache::default();
        // sha256("abc")
        let abc = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
        assert_eq!(c.hash(&f, 1024).as_deref(), Some(abc));
        assert_eq!(c.hash(&f, 1024).as_deref(), Some(abc), "cached");
        std::thread::sleep(std::time::Duration::from_millis(20));
        std::fs::write(&f, b"abcd").expect("rewrite");
        assert_ne!(
            c.hash(&f, 1024).as_deref(),
            Some(abc),
            "rewritten file hashed again"
        );
        assert_eq!(
            HashCache::default().hash(&f, 2),
            None,
            "over the size bound"
        );
        assert_eq!(c.hash(dir.path(), 1024), None, "a directory");
        assert_eq!(c.hash(&dir.path().join("missing"), 1024), None);
    }

    #[test]
    fn hashes_a_running_process_through_proc() {
        let me = Path::new("/proc/self/exe");
        let mut c = HashCache::default();
        let h = c.hash(me, u64::MAX).expect("own executable");
        let direct = {
            let bytes = std::fs::read(std::fs::read_link(me).expect("link")).expect("read");
            hex(&Sha256::digest(&bytes))
        };
        assert_eq!(h, direct);
    }
}
