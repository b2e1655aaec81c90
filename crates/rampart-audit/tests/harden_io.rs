//! Disk IO limits end to end: learn a busybox container writing with direct IO, the proposal
//! limits the disk holding Docker's data (the device `findmnt` reports for the data root, or
//! the whole disk of that partition) with rates at least the measured peak, and dockerd accepts
//! the proposed flags: the limit is in the new container's cgroup.

mod common;

use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;
use std::time::Duration;

use rampart_audit::harden::{self, HardenOptions};
use rampart_audit::learn::{self, LearnOptions};
use testkit::{docker_ok, TestContainer};

const MIB: u64 = 1 << 20;

/// `MAJ:MIN` of the whole disk holding `path`, as util-linux sees it (the peer's answer).
fn disk_of(path: &str) -> String {
    let out = std::process::Command::new("findmnt")
        .args(["-n", "-o", "MAJ:MIN", "--target", path])
        .output()
        .expect("findmnt");
    let mm = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let part = Path::new("/sys/dev/block").join(&mm);
    if part.join("partition").exists() {
        let disk = part.canonicalize().expect("sysfs link");
        let parent = disk.parent().expect("disk dir");
        std::fs::read_to_string(parent.join("dev"))
            .expect("dev")
            .trim()
            .to_string()
    } else {
        mm
    }
}

#[tokio::test]
async fn harden_limits_the_data_disk_from_measured_io_and_dockerd_applies_it() {
    testkit::require!(Root, Docker, Bpf);
    let img = testkit::busybox_image();
    let c = TestContainer::run(
        "audit-blkio",
        &[
            "--security-opt",
            "seccomp=unconfined",
            &img,
            "sh",
            "-c",
            "while true; do dd if=/dev/zero of=/tmp/f bs=1M count=20 oflag=direct 2>/dev/null; done",
        ],
    );
    let docker = common::docker().await;
    let rec = learn::learn(
        &docker,
        &c.name,
        &LearnOptions {
            duration: Duration::from_secs(4),
            ..LearnOptions::default()
        },
    )
    .await
    .expect("learn");
    let peak = rec.peaks.io_write_bps.expect("write rate measured");
    assert!(
        peak >= MIB,
        "a dd loop writes more than 1 MiB/s: {:?}",
        rec.peaks
    );
    assert!(
        rec.peaks.io_write_iops.is_some_and(|i| i > 0),
        "{:?}",
        rec.peaks
    );
    let dev = rec.block_device.clone().expect("data disk found");
    let meta = std::fs::metadata(&dev.path).expect("device node");
    assert!(meta.file_type().is_block_device(), "{}", dev.path);
    let root = docker_ok(["info", "-f", "{{.DockerRootDir}}"]);
    assert_eq!(
        format!("{}:{}", libc::major(meta.rdev()), libc::minor(meta.rdev())),
        disk_of(&root),
        "the disk of Docker's data root {root}"
    );

    let inspect = docker.inspect_container(&c.name).await.expect("inspect");
    let image = docker
        .inspect_image(inspect.image.as_deref().unwrap_or_default())
        .await
        .expect("image");
    let p = harden::propose(&inspect, &image, &rec, &HardenOptions::default());
    let io = p.io.clone().expect("IO limits proposed");
    assert_eq!(io.device, dev.path);
    assert!(io.write_bps >= peak, "limit {} < peak {peak}", io.write_bps);
    let line = p.run_line();
    eprintln!("measured {:?}\nproposed {line}", rec.peaks);
    assert!(
        line.contains(&format!(
            "--device-write-bps {}:{}mb",
            dev.path,
            io.write_bps / MIB
        )),
        "{line}"
    );
    let compose: serde_yaml::Value = serde_yaml::from_str(&p.compose()).expect("yaml");
    let svc = &compose["services"][c.name.as_str()];
    assert_eq!(
        svc["blkio_config"]["device_write_bps"][0]["path"],
        dev.path.as_str()
    );

    // dockerd takes the proposed flags as they are, and the kernel holds the limit.
    let mut args: Vec<&str> = Vec::new();
    let mut it = p.run_args.iter();
    while let Some(a) = it.next() {
        if a.starts_with("--device-") {
            args.push(a);
            args.push(it.next().expect("value"));
        }
    }
    assert_eq!(args.len(), 8, "{args:?}");
    args.extend([img.as_str(), "sleep", "60"]);
    let limited = TestContainer::run("audit-blkio-limited", &args);
    let pid = limited.inspect("{{.State.Pid}}");
    let cgroup = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).expect("cgroup");
    let (mm, bps) = (format!("{}:{}", dev.major, dev.minor), io.write_bps);
    let v1 = cgroup
        .lines()
        .find_map(|l| l.split_once(":blkio:").map(|(_, p)| p.to_string()));
    let held = match &v1 {
        Some(p) => std::fs::read_to_string(format!(
            "/sys/fs/cgroup/blkio{p}/blkio.throttle.write_bps_device"
        ))
        .expect("v1 limit file"),
        None => {
            let p = cgroup
                .lines()
                .find_map(|l| l.strip_prefix("0::"))
                .expect("v2 path");
            std::fs::read_to_string(format!("/sys/fs/cgroup{p}/io.max")).expect("io.max")
        }
    };
    // v1: `MAJ:MIN BPS`; v2: `MAJ:MIN rbps=.. wbps=BPS riops=.. wiops=..`.
    assert!(
        held.lines().any(|l| {
            let mut f = l.split_whitespace();
            f.next() == Some(mm.as_str())
                && f.any(|x| x == bps.to_string() || x == format!("wbps={bps}"))
        }),
        "{mm} {bps} not in {held:?}"
    );
}
