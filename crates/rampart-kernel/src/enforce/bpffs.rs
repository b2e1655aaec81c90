//! The BPF filesystem the enforcement state is pinned in.
//!
//! systemd mounts bpffs at `/sys/fs/bpf` at boot; hosts without systemd as PID 1 (OpenRC,
//! runit, a container host started from a shell, many VPS images) leave `/sys/fs/bpf` an empty
//! sysfs directory, where nothing can be created. Like Cilium's agent, Rampart mounts bpffs
//! there itself when it is missing, so `rampart policy apply`, `rampart respond isolate` and
//! the agent work on a fresh boot without any other Rampart process having run.
//!
//! Two Rampart processes starting at once must not both mount: a second bpffs mounted over the
//! first hides every pin of the first (the kernel keeps them, nobody can reach them). The check
//! and the mount happen under one `flock` on [`LOCK_PATH`].

use std::ffi::CString;
use std::fs;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use super::EnforceError;

/// The conventional bpffs mount point (systemd, Cilium, bpftool).
pub const BPFFS_ROOT: &str = "/sys/fs/bpf";

/// Serialises "is bpffs mounted? mount it" between Rampart processes.
pub const LOCK_PATH: &str = "/run/rampart/bpffs.lock";

/// `BPF_FS_MAGIC` of `<linux/magic.h>`.
const BPF_FS_MAGIC: u64 = 0xcafe_4a11;

/// What [`ensure`] found or did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BpffsState {
    /// `dir` already lies on a BPF filesystem.
    Present,
    /// bpffs was mounted at this path by this call.
    Mounted(PathBuf),
}

/// The filesystem magic of the deepest existing ancestor of `path` (or `path` itself).
fn fs_magic_of_nearest(path: &Path) -> io::Result<(PathBuf, u64)> {
    let mut p = path.to_path_buf();
    loop {
        if p.exists() {
            return statfs_magic(&p).map(|m| (p, m));
        }
        if !p.pop() {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                "no existing ancestor",
            ));
        }
    }
}

fn cstring(path: &Path) -> io::Result<CString> {
    CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path holds a NUL byte"))
}

fn statfs_magic(path: &Path) -> io::Result<u64> {
    let c = cstring(path)?;
    let mut s = std::mem::MaybeUninit::<libc::statfs>::zeroed();
    // SAFETY: `c` is a valid NUL-terminated path and `s` points to writable memory of the
    // struct's size; statfs(2) fills it or fails.
    let r = unsafe { libc::statfs(c.as_ptr(), s.as_mut_ptr()) };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: statfs returned 0, so the struct is initialised.
    let s = unsafe { s.assume_init() };
    // f_type is signed on x86_64; the magic is compared as its 32-bit pattern.
    Ok(s.f_type as u64 & 0xffff_ffff)
}

/// Whether `path` (or its deepest existing ancestor) is on a BPF filesystem.
pub fn is_on_bpffs(path: &Path) -> bool {
    fs_magic_of_nearest(path).is_ok_and(|(_, m)| m == BPF_FS_MAGIC)
}

fn mount_bpffs(at: &Path) -> io::Result<()> {
    let target = cstring(at)?;
    let source = c"bpffs";
    let fstype = c"bpf";
    // Only root may create pins; the same mode systemd's sys-fs-bpf.mount uses.
    let data = c"mode=0700";
    // SAFETY: all pointers are valid NUL-terminated strings that outlive the call.
    let r = unsafe {
        libc::mount(
            source.as_ptr(),
            target.as_ptr(),
            fstype.as_ptr(),
            libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
            data.as_ptr().cast(),
        )
    };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Takes the cross-process lock; released when the file is dropped.
fn lock() -> io::Result<fs::File> {
    let path = Path::new(LOCK_PATH);
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir)?;
    }
    let f = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .open(path)?;
    // SAFETY: flock on a file descriptor we own.
    if unsafe { libc::flock(std::os::fd::AsRawFd::as_raw_fd(&f), libc::LOCK_EX) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(f)
}

/// Makes sure `dir` can hold BPF pins: it already lies on bpffs, or it lies under
/// [`BPFFS_ROOT`] and bpffs is mounted there now. Anything else is an error that says what to
/// do.
pub fn ensure(dir: &Path) -> Result<BpffsState, EnforceError> {
    let missing = |reason: String| EnforceError::Bpffs {
        dir: dir.to_path_buf(),
        reason,
    };
    if is_on_bpffs(dir) {
        return Ok(BpffsState::Present);
    }
    let root = Path::new(BPFFS_ROOT);
    if !dir.starts_with(root) {
        return Err(missing(format!(
            "it is not on a BPF filesystem; mount one first (mount -t bpf bpf {})",
            nearest_dir_hint(dir).display()
        )));
    }
    let _guard = lock().map_err(|e| missing(format!("taking {LOCK_PATH}: {e}")))?;
    // Another process may have mounted it while we waited for the lock.
    if is_on_bpffs(dir) {
        return Ok(BpffsState::Present);
    }
    if !root.is_dir() {
        return Err(missing(format!(
            "{BPFFS_ROOT} does not exist: this kernel has no BPF filesystem (CONFIG_BPF_SYSCALL) or /sys is not mounted"
        )));
    }
    match mount_bpffs(root) {
        Ok(()) => {
            tracing::info!("mounted bpffs at {BPFFS_ROOT} (it was not mounted)");
            Ok(BpffsState::Mounted(root.to_path_buf()))
        }
        Err(e) => Err(missing(format!(
            "bpffs is not mounted at {BPFFS_ROOT} and mounting it failed ({e}); mount it on the host: mount -t bpf bpf {BPFFS_ROOT}"
        ))),
    }
}

fn nearest_dir_hint(dir: &Path) -> PathBuf {
    fs_magic_of_nearest(dir)
        .map(|(p, _)| p)
        .unwrap_or_else(|_| dir.to_path_buf())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_directory_outside_bpffs_is_refused_with_the_command_to_run() {
        let dir = tempfile::tempdir().expect("tmp");
        let pins = dir.path().join("rampart/enforce-v1");
        assert!(!is_on_bpffs(&pins));
        let err = ensure(&pins).expect_err("tmp is not bpffs");
        let msg = err.to_string();
        assert!(
            msg.contains("not on a BPF filesystem")
                && msg.contains(&format!("mount -t bpf bpf {}", dir.path().display())),
            "{msg}"
        );
    }
}
