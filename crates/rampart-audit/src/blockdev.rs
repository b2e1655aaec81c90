//! The block device a path's filesystem lives on, as Docker's `--device-read-bps` and
//! friends name it (a device node Docker stats for its major:minor).
//!
//! The kernel throttles whole disks and device-mapper devices, not partitions (cgroup v2
//! `io.max` and v1 `blkio.throttle.*` refuse a partition's numbers), so a partition is replaced
//! by the disk holding it, found through sysfs: `/sys/dev/block/MAJ:MIN` links to the device's
//! directory, and a partition's directory has a `partition` file and sits in its disk's.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// A whole block device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockDevice {
    /// Its device node (`/dev/vda`, `/dev/dm-0`).
    pub path: String,
    pub major: u32,
    pub minor: u32,
}

/// Why a path has no whole block device to limit (a filesystem without one, a device missing
/// from sysfs or `/dev`), in words for a person that name the path or device numbers.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct NoBlockDevice(pub String);

/// The whole block device under the filesystem holding `path`, looked up in `sys` (`/sys`)
/// and `dev` (`/dev`).
pub fn block_device_of(path: &Path, sys: &Path, dev: &Path) -> Result<BlockDevice, NoBlockDevice> {
    device_of(path, sys, dev).map_err(NoBlockDevice)
}

fn device_of(path: &Path, sys: &Path, dev: &Path) -> Result<BlockDevice, String> {
    let meta = std::fs::metadata(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let st_dev = meta.dev();
    let (major, minor) = (libc::major(st_dev), libc::minor(st_dev));
    if major == 0 {
        return Err(format!(
            "{} is on a filesystem without a block device (device {major}:{minor}: btrfs, ZFS, tmpfs or a network filesystem)",
            path.display()
        ));
    }
    disk_of(sys, dev, major, minor)
}

/// The whole disk holding block device `major:minor` (itself when it is not a partition).
pub fn whole_disk(
    sys: &Path,
    dev: &Path,
    major: u32,
    minor: u32,
) -> Result<BlockDevice, NoBlockDevice> {
    disk_of(sys, dev, major, minor).map_err(NoBlockDevice)
}

fn disk_of(sys: &Path, dev: &Path, major: u32, minor: u32) -> Result<BlockDevice, String> {
    let link = sys.join("dev/block").join(format!("{major}:{minor}"));
    let mut dir: PathBuf = link.canonicalize().map_err(|e| {
        format!(
            "block device {major}:{minor} is not in {}: {e}",
            link.display()
        )
    })?;
    if dir.join("partition").exists() {
        dir = dir
            .parent()
            .ok_or_else(|| format!("partition {major}:{minor} has no parent disk in sysfs"))?
            .to_path_buf();
    }
    let numbers = std::fs::read_to_string(dir.join("dev"))
        .map_err(|e| format!("{}: {e}", dir.join("dev").display()))?;
    let (maj, min) = numbers
        .trim()
        .split_once(':')
        .and_then(|(a, b)| Some((a.parse::<u32>().ok()?, b.parse::<u32>().ok()?)))
        .ok_or_else(|| {
            format!(
                "{}: {:?} is not MAJ:MIN",
                dir.join("dev").display(),
                numbers.trim()
            )
        })?;
    let name = dir
        .file_name()
        .and_then(|n| n.to_str())
        .filter(|n| !n.is_empty() && !n.contains('/'))
        .ok_or_else(|| format!("{} has no device name", dir.display()))?;
    let node = dev.join(name);
    let meta = std::fs::metadata(&node).map_err(|e| format!("{}: {e}", node.display()))?;
    let rdev = meta.rdev();
    if (libc::major(rdev), libc::minor(rdev)) != (maj, min) {
        return Err(format!(
            "{} is device {}:{}, not the disk {maj}:{min}",
            node.display(),
            libc::major(rdev),
            libc::minor(rdev)
        ));
    }
    Ok(BlockDevice {
        path: node.display().to_string(),
        major: maj,
        minor: min,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_partition_is_replaced_by_its_disk_and_bad_sysfs_is_an_error() {
        let t = tempfile::tempdir().expect("tempdir");
        let sys = t.path().join("sys");
        let disk = sys.join("devices/virtual/block/sdz");
        std::fs::create_dir_all(disk.join("sdz1")).expect("mkdir");
        std::fs::write(disk.join("dev"), "8:0\n").expect("w");
        std::fs::write(disk.join("sdz1/dev"), "8:1\n").expect("w");
        std::fs::write(disk.join("sdz1/partition"), "1\n").expect("w");
        std::fs::create_dir_all(sys.join("dev/block")).expect("mkdir");
        std::os::unix::fs::symlink(disk.join("sdz1"), sys.join("dev/block/8:1")).expect("ln");
        std::os::unix::fs::symlink(&disk, sys.join("dev/block/8:0")).expect("ln");
        // No /dev/sdz node in the fake /dev: the error names it.
        let devdir = t.path().join("dev");
        std::fs::create_dir_all(&devdir).expect("mkdir");
        let e = whole_disk(&sys, &devdir, 8, 1).expect_err("no node");
        assert!(e.0.contains("sdz"), "{e}");
        let e = whole_disk(&sys, &devdir, 9, 9).expect_err("unknown");
        assert!(e.0.contains("9:9"), "{e}");
        std::fs::write(disk.join("dev"), "garbage").expect("w");
        let e = whole_disk(&sys, &devdir, 8, 0).expect_err("garbage");
        assert!(e.0.contains("not MAJ:MIN"), "{e}");
    }
}
