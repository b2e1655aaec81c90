//! Reading a container's files from the host without ever following a symlink.
//!
//! A path like `/proc/<pid>/root/usr/bin` or an overlay upper directory is resolved by the host:
//! an absolute symlink planted in the container (`/usr/bin -> /etc`) would lead the host to its
//! own `/etc`. Every open here is relative to an already open directory and goes through
//! `openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS)` with one path
//! component at a time, so a symlink (or a directory swapped for one between two steps) makes
//! the open fail instead of leaving the tree. Written with libc because it is two syscalls and
//! std has no openat.

use std::ffi::{CString, OsStr, OsString};
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// What a directory entry is, from `fstatat(AT_SYMLINK_NOFOLLOW)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    File,
    Dir,
    Symlink,
    /// An overlayfs whiteout (character device 0:0): the file was deleted in the container.
    Whiteout,
    Other,
}

/// `lstat` facts of an entry.
#[derive(Debug, Clone, Copy)]
pub struct Entry {
    pub kind: Kind,
    pub size: u64,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub mtime: i64,
}

/// An open directory.
#[derive(Debug)]
pub struct Dir {
    fd: OwnedFd,
}

fn cstr(name: &OsStr) -> io::Result<CString> {
    CString::new(name.as_bytes()).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))
}

fn openat2(dirfd: i32, name: &OsStr, flags: i32) -> io::Result<OwnedFd> {
    let c = cstr(name)?;
    let mut how: libc::open_how = unsafe { std::mem::zeroed() };
    how.flags = (flags | libc::O_CLOEXEC | libc::O_NOFOLLOW) as u64;
    how.resolve = libc::RESOLVE_BENEATH | libc::RESOLVE_NO_SYMLINKS | libc::RESOLVE_NO_MAGICLINKS;
    // SAFETY: valid dirfd, NUL-terminated path, and an open_how of the size we pass.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_openat2,
            dirfd,
            c.as_ptr(),
            &how as *const libc::open_how,
            std::mem::size_of::<libc::open_how>(),
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: openat2 returned a new descriptor that we own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

impl Dir {
    /// Opens `path` as the root of a walk. `path` itself is resolved normally (it may be
    /// `/proc/<pid>/root`); nothing below it is.
    pub fn open_root(path: &Path) -> io::Result<Dir> {
        let c = cstr(path.as_os_str())?;
        // SAFETY: NUL-terminated path; the result is checked.
        let fd = unsafe {
            libc::open(
                c.as_ptr(),
                libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: a new descriptor we own.
        Ok(Dir {
            fd: unsafe { OwnedFd::from_raw_fd(fd) },
        })
    }

    /// Opens the subdirectory `name` (one component; a symlink fails with ELOOP).
    pub fn open_dir(&self, name: &OsStr) -> io::Result<Dir> {
        Ok(Dir {
            fd: openat2(
                self.fd.as_raw_fd(),
                name,
                libc::O_RDONLY | libc::O_DIRECTORY,
            )?,
        })
    }

    /// Opens the regular file `name` for reading (one component; never a symlink).
    pub fn open_file(&self, name: &OsStr) -> io::Result<File> {
        let fd = openat2(self.fd.as_raw_fd(), name, libc::O_RDONLY | libc::O_NONBLOCK)?;
        Ok(File::from(fd))
    }

    /// Opens `rel` (a relative path, walked one component at a time) for reading.
    pub fn open_path(&self, rel: &Path) -> io::Result<File> {
        let mut comps: Vec<&OsStr> = rel
            .components()
            .filter_map(|c| match c {
                std::path::Component::Normal(n) => Some(n),
                _ => None,
            })
            .collect();
        let last = comps
            .pop()
            .ok_or_else(|| io::Error::from(io::ErrorKind::InvalidInput))?;
        let mut cur: Option<Dir> = None;
        for c in comps {
            let next = cur.as_ref().unwrap_or(self).open_dir(c)?;
            cur = Some(next);
        }
        cur.as_ref().unwrap_or(self).open_file(last)
    }

    /// The names in this directory (no `.` or `..`), sorted.
    pub fn names(&self) -> io::Result<Vec<OsString>> {
        // Reading through /proc/self/fd/N lists the directory the descriptor holds (the
        // magic link is resolved by the kernel to that very directory, not by path).
        let mut out: Vec<OsString> =
            std::fs::read_dir(format!("/proc/self/fd/{}", self.fd.as_raw_fd()))?
                .filter_map(|e| e.ok().map(|e| e.file_name()))
                .collect();
        out.sort();
        Ok(out)
    }

    /// `fstatat(name, AT_SYMLINK_NOFOLLOW)`.
    pub fn entry(&self, name: &OsStr) -> io::Result<Entry> {
        let c = cstr(name)?;
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        // SAFETY: valid dirfd, NUL-terminated name, a stat buffer we own.
        let rc = unsafe {
            libc::fstatat(
                self.fd.as_raw_fd(),
                c.as_ptr(),
                &mut st,
                libc::AT_SYMLINK_NOFOLLOW,
            )
        };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        let kind = match st.st_mode & libc::S_IFMT {
            libc::S_IFREG => Kind::File,
            libc::S_IFDIR => Kind::Dir,
            libc::S_IFLNK => Kind::Symlink,
            libc::S_IFCHR if st.st_rdev == 0 => Kind::Whiteout,
            _ => Kind::Other,
        };
        Ok(Entry {
            kind,
            size: st.st_size as u64,
            mode: st.st_mode,
            uid: st.st_uid,
            gid: st.st_gid,
            mtime: st.st_mtime,
        })
    }

    /// The target of the symlink `name`, as bytes (not followed).
    pub fn read_link(&self, name: &OsStr) -> io::Result<OsString> {
        let c = cstr(name)?;
        let mut buf = vec![0u8; 4096];
        // SAFETY: valid dirfd and name; buf is writable for its length.
        let n = unsafe {
            libc::readlinkat(
                self.fd.as_raw_fd(),
                c.as_ptr(),
                buf.as_mut_ptr().cast(),
                buf.len(),
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        buf.truncate(n as usize);
        Ok(OsString::from_vec_compat(buf))
    }

    /// The filesystem magic of this directory (`statfs.f_type`).
    pub fn fs_type(&self) -> io::Result<i64> {
        let mut st: libc::statfs = unsafe { std::mem::zeroed() };
        // SAFETY: valid fd and a statfs buffer we own.
        if unsafe { libc::fstatfs(self.fd.as_raw_fd(), &mut st) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(st.f_type as i64)
    }
}

trait FromVecCompat {
    fn from_vec_compat(v: Vec<u8>) -> Self;
}

impl FromVecCompat for OsString {
    fn from_vec_compat(v: Vec<u8>) -> Self {
        use std::os::unix::ffi::OsStringExt;
        OsString::from_vec(v)
    }
}

/// Pseudo filesystems a walk of a container's root skips.
pub fn is_pseudo_fs(magic: i64) -> bool {
    const PSEUDO: [i64; 10] = [
        0x9fa0,      // proc
        0x6265_6572, // sysfs
        0x0027_e0eb, // cgroup
        0x6367_7270, // cgroup2
        0x1cd1,      // devpts
        0x6462_6720, // debugfs
        0x7363_6673, // securityfs
        0x1980_0202, // mqueue
        0xcafe_4a11, // bpf
        0x7472_6163, // tracefs
    ];
    PSEUDO.contains(&magic)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use super::*;

    #[test]
    fn symlinks_are_never_followed_even_inside_a_path() {
        let t = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("secret"), "host secret").unwrap();
        std::fs::create_dir(t.path().join("d")).unwrap();
        std::fs::write(t.path().join("d/ok"), "fine").unwrap();
        std::os::unix::fs::symlink(outside.path(), t.path().join("escape")).unwrap();
        std::os::unix::fs::symlink(outside.path().join("secret"), t.path().join("d/link")).unwrap();
        let root = Dir::open_root(t.path()).unwrap();
        let mut s = String::new();
        std::io::Read::read_to_string(&mut root.open_path(Path::new("d/ok")).unwrap(), &mut s)
            .unwrap();
        assert_eq!(s, "fine");
        assert!(root.open_path(Path::new("escape/secret")).is_err());
        assert!(root.open_path(Path::new("d/link")).is_err());
        assert!(root.open_path(Path::new("../etc/passwd")).is_err());
        assert_eq!(
            root.entry(OsStr::new("escape")).unwrap().kind,
            Kind::Symlink
        );
        assert_eq!(
            root.open_dir(OsStr::new("d"))
                .unwrap()
                .read_link(OsStr::new("link"))
                .unwrap(),
            outside.path().join("secret").into_os_string()
        );
        assert_eq!(
            root.names().unwrap(),
            vec![OsString::from("d"), OsString::from("escape")]
        );
    }
}
