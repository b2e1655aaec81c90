//! A user *name* resolved as runc resolves it at container start: against `/etc/passwd` of the
//! container's root filesystem, which at create time is the image's layers.
//!
//! runc (`libcontainer/user`, `moby/sys/user`) reads the file line by line (`bufio.Scanner`:
//! a line over 64 KiB fails the start), trims white space, skips empty lines, splits on `:`
//! and takes the **first** entry whose name equals the user; a uid field that is not a decimal
//! integer (`strconv.Atoi` fails: `0x3e8`, `1e3`, empty) is **0**, so such an entry is root.
//! A name with no entry fails the start.
//!
//! The layers are dockerd's overlay2 directories (`GraphDriver.Data`: `UpperDir`, then
//! `LowerDir` top to bottom), read from the host as root: so nothing is followed. `etc` must be
//! a directory and `etc/passwd` a regular file in the first layer that has them (not symlinks,
//! which runc would resolve inside the root filesystem); a whiteout (a 0/0 character device)
//! hides the file. Anything else is "cannot resolve", and the name is denied. Mounts over `/`,
//! `/etc` or `/etc/passwd` replace the file before runc reads it: the engine does not resolve
//! names for such a create.

use std::io::Read;
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::PathBuf;

use super::gojson::atoi;

/// Read at most this much of a passwd file (runc reads all of it; a larger one is refused).
const MAX_PASSWD: u64 = 4 << 20;
/// `bufio.Scanner`'s default maximum token size.
const MAX_LINE: usize = 64 * 1024;

/// The overlay2 layer directories of an image, top first, from `GraphDriver`.
pub fn overlay_layers(driver: &str, data: &[(String, String)]) -> Result<Vec<PathBuf>, String> {
    if driver != "overlay2" {
        return Err(format!(
            "the image's storage driver is {driver:?} (only overlay2 layers are read)"
        ));
    }
    let get = |k: &str| {
        data.iter()
            .find(|(x, _)| x == k)
            .map(|(_, v)| v.as_str())
            .unwrap_or_default()
    };
    let mut out: Vec<PathBuf> = Vec::new();
    for d in std::iter::once(get("UpperDir")).chain(get("LowerDir").split(':')) {
        if !d.is_empty() {
            out.push(PathBuf::from(d));
        }
    }
    if out.is_empty() {
        return Err("the image has no overlay2 layer directories".into());
    }
    Ok(out)
}

fn whiteout(m: &std::fs::Metadata) -> bool {
    m.file_type().is_char_device() && m.rdev() == 0
}

/// The image's `/etc/passwd` (its bytes, its metadata, and the metadata of the `/etc` the
/// container sees), or `None` when it has none.
type Found = (Vec<u8>, std::fs::Metadata, std::fs::Metadata);

fn passwd_of(layers: &[PathBuf]) -> Result<Option<Found>, String> {
    // The top-most `etc` is the directory the container sees (overlayfs takes a merged
    // directory's attributes from the upper-most layer).
    let mut top_etc: Option<std::fs::Metadata> = None;
    for l in layers {
        let etc = l.join("etc");
        match std::fs::symlink_metadata(&etc) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(format!("{}: {e}", etc.display())),
            Ok(m) if whiteout(&m) => return Ok(None),
            Ok(m) if !m.is_dir() => {
                return Err(format!(
                    "/etc in the image is not a directory (a {:?})",
                    m.file_type()
                ))
            }
            Ok(m) => {
                top_etc.get_or_insert(m);
            }
        }
        let p = etc.join("passwd");
        let m = match std::fs::symlink_metadata(&p) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(format!("{}: {e}", p.display())),
            Ok(m) => m,
        };
        if whiteout(&m) {
            return Ok(None);
        }
        if !m.is_file() {
            return Err("/etc/passwd in the image is not a regular file (a symlink or other: runc would resolve it inside the container)".into());
        }
        let f = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&p)
            .map_err(|e| format!("{}: {e}", p.display()))?;
        let mut buf = Vec::new();
        f.take(MAX_PASSWD + 1)
            .read_to_end(&mut buf)
            .map_err(|e| format!("{}: {e}", p.display()))?;
        if buf.len() as u64 > MAX_PASSWD {
            return Err(format!(
                "/etc/passwd in the image is over {MAX_PASSWD} bytes"
            ));
        }
        let Some(etc_meta) = top_etc else {
            return Err("/etc not found above /etc/passwd".into());
        };
        return Ok(Some((buf, m, etc_meta)));
    }
    Ok(None)
}

/// Whether the user `uid` could rewrite or replace the file (or the directory) `m` describes:
/// then the container itself could map its name to 0 before a restart re-resolves it.
/// Group and other write bits are refused whoever the group is (supplementary groups come from
/// the image's `/etc/group`, which the plugin does not judge).
fn writable_by(m: &std::fs::Metadata, uid: i64) -> bool {
    let mode = m.mode();
    mode & 0o022 != 0 || (i64::from(m.uid()) == uid && mode & 0o200 != 0)
}

/// What runc makes of `name` with this passwd file: `Ok(Some(uid))`, `Ok(None)` when no entry
/// has that name (the start fails), `Err` when runc would fail to read it or it is not read
/// here the way runc reads it.
pub fn uid_of(passwd: &[u8], name: &str) -> Result<Option<i64>, String> {
    let text = std::str::from_utf8(passwd)
        .map_err(|_| "/etc/passwd in the image is not UTF-8: not read".to_string())?;
    for line in text.split('\n') {
        if line.len() > MAX_LINE {
            return Err(
                "/etc/passwd in the image has a line over 64 KiB (runc fails on it)".into(),
            );
        }
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let mut parts = line.split(':');
        if parts.next() != Some(name) {
            continue;
        }
        let _password = parts.next();
        // strconv.Atoi with the error ignored: not a number is 0.
        let uid = parts.next().and_then(atoi).unwrap_or(0);
        return Ok(Some(uid));
    }
    Ok(None)
}

/// Resolves `name` against the image whose overlay2 layers are `layers` (top first). A name
/// whose user could rewrite `/etc/passwd` (or replace it in `/etc`) cannot be resolved: the
/// container could remap itself to uid 0 before a restart.
pub fn resolve(layers: &[PathBuf], name: &str) -> Result<Option<i64>, String> {
    let Some((passwd, file, etc)) = passwd_of(layers)? else {
        return Ok(None);
    };
    let uid = uid_of(&passwd, name)?;
    if let Some(uid) = uid {
        if writable_by(&file, uid) {
            return Err(format!(
                "/etc/passwd in the image (mode {:o}, owner {}) is writable by uid {uid} or a group: the container could remap the name to root before a restart",
                file.mode() & 0o7777,
                file.uid()
            ));
        }
        if writable_by(&etc, uid) {
            return Err(format!(
                "/etc in the image (mode {:o}, owner {}) is writable by uid {uid} or a group: the container could replace /etc/passwd before a restart",
                etc.mode() & 0o7777,
                etc.uid()
            ));
        }
    }
    Ok(uid)
}

/// Whether a mount at `target` (a container path) replaces `/etc/passwd`.
pub fn covers_passwd(target: &str) -> bool {
    matches!(
        super::judge::normalise(target).as_str(),
        "/" | "/etc" | "/etc/passwd"
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn names_as_runc_reads_them() {
        let p = b"root:x:0:0::/root:/bin/sh\n  app:x:1000:1000::/:/bin/sh  \n\napp:x:0:0::/:/bin/sh\nodd:x:1e3:0::/:/bin/sh\nhex:x:0x3e8:0\nnone:x\nplus:x:+1001:0\n";
        assert_eq!(uid_of(p, "app"), Ok(Some(1000)), "the first entry wins");
        assert_eq!(uid_of(p, "root"), Ok(Some(0)));
        assert_eq!(uid_of(p, "odd"), Ok(Some(0)), "Atoi fails: 0");
        assert_eq!(uid_of(p, "hex"), Ok(Some(0)));
        assert_eq!(uid_of(p, "none"), Ok(Some(0)), "no uid field: 0");
        assert_eq!(uid_of(p, "plus"), Ok(Some(1001)));
        assert_eq!(uid_of(p, "nobody"), Ok(None));
        assert!(uid_of(b"\xff:x:0:0", "app").is_err());
        let long = format!("a:{}\napp:x:1000:0\n", "x".repeat(70_000));
        assert!(uid_of(long.as_bytes(), "app").is_err());
        assert!(covers_passwd("/etc/") && covers_passwd("//etc/./passwd") && covers_passwd("/"));
        assert!(!covers_passwd("/etc/app"));
    }

    #[test]
    fn layers_top_first_whiteouts_and_links() {
        let d = tempfile::tempdir().expect("tmp");
        let (top, mid, low) = (
            d.path().join("top"),
            d.path().join("mid"),
            d.path().join("low"),
        );
        for l in [&top, &mid, &low] {
            std::fs::create_dir_all(l.join("etc")).expect("dir");
        }
        std::fs::write(low.join("etc/passwd"), "app:x:0:0\n").expect("w");
        std::fs::write(mid.join("etc/passwd"), "app:x:1000:0\n").expect("w");
        let layers = vec![top.clone(), mid.clone(), low.clone()];
        use std::os::unix::fs::PermissionsExt;
        let chmod = |p: &Path, m: u32| {
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(m)).expect("chmod")
        };
        for l in &layers {
            chmod(&l.join("etc"), 0o755);
        }
        chmod(&mid.join("etc/passwd"), 0o644);
        assert_eq!(resolve(&layers, "app"), Ok(Some(1000)));
        // Writable by a group or others (the OpenShift `chmod g=u /etc/passwd`), or its /etc:
        // the container could remap itself before a restart.
        chmod(&mid.join("etc/passwd"), 0o664);
        assert!(resolve(&layers, "app")
            .expect_err("g+w")
            .contains("writable"));
        chmod(&mid.join("etc/passwd"), 0o644);
        chmod(&top.join("etc"), 0o777);
        assert!(resolve(&layers, "app")
            .expect_err("etc o+w")
            .contains("/etc in the image"));
        chmod(&top.join("etc"), 0o755);
        assert_eq!(resolve(&layers, "app"), Ok(Some(1000)));
        // A symlink in the top layer: not followed, not guessed.
        std::os::unix::fs::symlink("/etc/shadow", top.join("etc/passwd")).expect("ln");
        assert!(resolve(&layers, "app").is_err());
        std::fs::remove_file(top.join("etc/passwd")).expect("rm");
        std::os::unix::fs::symlink("/etc", d.path().join("linked")).expect("ln");
        let linked = d.path().join("linkedlayer");
        std::fs::create_dir_all(&linked).expect("dir");
        std::os::unix::fs::symlink("../linked", linked.join("etc")).expect("ln");
        assert!(resolve(&[linked, mid.clone()], "app").is_err());
        // A whiteout hides the lower files (root only: mknod).
        if unsafe { libc::geteuid() } == 0 {
            let c =
                std::ffi::CString::new(top.join("etc/passwd").display().to_string()).expect("c");
            // SAFETY: a path we own, a 0/0 character device as overlayfs writes whiteouts.
            let r = unsafe { libc::mknod(c.as_ptr(), libc::S_IFCHR | 0o600, 0) };
            assert_eq!(r, 0, "mknod");
            assert_eq!(resolve(&layers, "app"), Ok(None));
        }
        assert_eq!(
            overlay_layers(
                "overlay2",
                &[
                    ("UpperDir".into(), "/a".into()),
                    ("LowerDir".into(), "/b:/c".into())
                ]
            ),
            Ok(vec![
                PathBuf::from("/a"),
                PathBuf::from("/b"),
                PathBuf::from("/c")
            ])
        );
        assert!(overlay_layers("vfs", &[]).is_err());
    }
}
