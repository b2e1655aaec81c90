//! Modes of the files and directories that hold secrets (keys, tokens, sessions, records):
//! set explicitly, so that they do not depend on the umask of whoever started the server.

use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// Creates `dir` (and missing parents) and makes it 0700.
pub(crate) fn secret_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
}

/// Creates `path` empty when missing and makes it 0600 (an SQLite database before SQLite
/// opens it: SQLite gives its `-wal` and `-shm` files the database file's mode).
pub(crate) fn secret_file(path: &Path) -> std::io::Result<()> {
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs `f` with umask 0 (everything allowed), restoring the umask after.
    fn with_open_umask(f: impl FnOnce()) {
        // SAFETY: umask has no memory effects; the tests of this module are the only ones in
        // this binary that change it.
        let old = unsafe { libc::umask(0) };
        f();
        unsafe { libc::umask(old) };
    }

    #[test]
    fn secrets_are_0600_and_0700_whatever_the_umask() {
        let t = tempfile::tempdir().expect("tempdir");
        with_open_umask(|| {
            let d = t.path().join("a/b");
            secret_dir(&d).expect("dir");
            let f = d.join("x.db");
            std::fs::write(&f, "").expect("file");
            std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o666)).expect("chmod");
            secret_file(&f).expect("secret");
            let mode = |p: &Path| std::fs::metadata(p).expect("stat").permissions().mode() & 0o777;
            assert_eq!(mode(&d), 0o700);
            assert_eq!(mode(&f), 0o600);
            // A database and its write-ahead log and shared memory.
            let db = d.join("events.db");
            let store = crate::store::SqliteStore::open(&db, true).expect("store");
            let control = crate::control::Control::open(&d.join("control.db")).expect("control");
            control
                .create_api_token("t", crate::control::Role::Admin)
                .expect("a write");
            for name in [
                "events.db",
                "events.db-wal",
                "events.db-shm",
                "control.db",
                "control.db-wal",
                "control.db-shm",
            ] {
                let p = d.join(name);
                assert!(p.exists(), "{name}");
                assert_eq!(mode(&p), 0o600, "{name}");
            }
            drop(store);
        });
    }
}
