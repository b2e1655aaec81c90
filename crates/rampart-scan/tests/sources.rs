//! Every image source on real images built locally: the Docker daemon, `docker save` tarballs
//! (plain and gzip), OCI layouts (directory and tar, gzip and zstd layers), a root filesystem
//! directory and a running container. The same image must read the same through each.
#![allow(clippy::unwrap_used, reason = "tests")]

mod support;

use std::process::Command;

use rampart_scan::{ImageReader, Inventory, Limits, NoProgress, SourceKind, Target};
use support::Comp;

fn read(t: Target) -> Inventory {
    ImageReader::new(Limits::default())
        .read(&t, &NoProgress)
        .unwrap_or_else(|e| panic!("{t:?}: {e}"))
}

fn image_id(tag: &str) -> String {
    testkit::docker_ok(["image", "inspect", "--format", "{{.Id}}", tag])
}

/// Builds `tag` from a Dockerfile given as text (classic builder, no pulls: FROM a local image).
fn build(tag: &str, dockerfile: &str) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("Dockerfile"), dockerfile).unwrap();
    let out = Command::new("docker")
        .env("DOCKER_BUILDKIT", "0")
        .args(["build", "--network", "none", "-q", "-t", tag])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "docker build {tag}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn debian_image_reads_the_same_through_every_source() {
    testkit::require!(Docker);
    let tag = testkit::debian_image();
    let id = image_id(&tag);

    let daemon = read(Target::Daemon(tag.clone()));
    assert_eq!(daemon.image.source, SourceKind::Daemon);
    assert_eq!(daemon.image.id.as_deref(), Some(id.as_str()));
    assert!(
        daemon.image.repo_tags.contains(&tag),
        "{:?}",
        daemon.image.repo_tags
    );
    let os = daemon.os.clone().expect("debian has an os-release");
    assert_eq!((os.id.as_str(), os.version_id.as_str()), ("debian", "12"));
    assert_eq!(daemon.image.layers.len(), 1);
    assert!(
        daemon.image.layers[0].size > 50 << 20,
        "{:?}",
        daemon.image.layers
    );

    let dir = tempfile::tempdir().unwrap();
    let save = dir.path().join("debian.tar");
    testkit::docker_ok(["save", "-o", save.to_str().unwrap(), &tag]);
    let archive = read(Target::parse(save.to_str().unwrap()));
    assert_eq!(archive.image.source, SourceKind::Archive);
    assert_eq!(archive.image.id, daemon.image.id);
    assert_eq!(archive.image.layers, daemon.image.layers);
    assert_eq!(archive.os, daemon.os);
    assert_eq!(archive.packages, daemon.packages);
    assert_eq!(
        ImageReader::new(Limits::default())
            .identify(&Target::Archive(save.clone()))
            .unwrap(),
        Some(id.clone()),
        "an uncompressed archive is identified without reading layers"
    );

    let gz = dir.path().join("debian.tar.gz");
    let st = Command::new("sh")
        .arg("-c")
        .arg(format!("gzip -1 -c {} > {}", save.display(), gz.display()))
        .status()
        .unwrap();
    assert!(st.success());
    let gzipped = read(Target::Archive(gz));
    assert_eq!(gzipped.image.id, daemon.image.id);
    assert_eq!(gzipped.packages, daemon.packages);

    // An OCI layout directory with a gzip layer, and a tar of one with a zstd layer.
    let work = tempfile::tempdir().unwrap();
    let layout = support::oci_from_docker_save(&save, work.path(), &[Comp::Gzip]);
    let oci = read(Target::parse(layout.to_str().unwrap()));
    assert_eq!(oci.image.source, SourceKind::OciLayout);
    assert_eq!(oci.image.id, daemon.image.id, "same config, same id");
    assert_eq!(oci.os, daemon.os);
    assert_eq!(oci.packages, daemon.packages);
    assert_eq!(oci.image.layers[0].diff_id, daemon.image.layers[0].diff_id);
    assert_eq!(oci.image.layers[0].compression, "gzip");
    assert_ne!(
        oci.image.layers[0].digest, None,
        "compressed: digest differs"
    );
    drop(work);
    let work = tempfile::tempdir().unwrap();
    let layout = support::oci_from_docker_save(&save, work.path(), &[Comp::Zstd]);
    let oci_tar = work.path().join("layout.tar");
    support::tar_dir(&layout, &oci_tar);
    let from_tar = read(Target::Archive(oci_tar));
    assert_eq!(from_tar.image.id, daemon.image.id);
    assert_eq!(from_tar.image.layers[0].compression, "zstd");
    assert_eq!(from_tar.packages, daemon.packages);

    let rootfs = testkit::cache_dir().join("debian-bookworm");
    let dir_inv = read(Target::parse(rootfs.to_str().unwrap()));
    assert_eq!(dir_inv.image.source, SourceKind::Rootfs);
    assert_eq!(dir_inv.image.id, None);
    assert_eq!(dir_inv.os, daemon.os);
    assert_eq!(dir_inv.packages.len(), daemon.packages.len());
}

#[test]
fn running_container_is_read_with_its_own_configuration() {
    testkit::require!(Docker);
    let tag = testkit::debian_image();
    let c = testkit::TestContainer::run(
        "scan-src",
        &[
            "--network",
            "none",
            "-u",
            "1000",
            "-e",
            "SCAN_TEST=1",
            &tag,
            "sleep",
            "300",
        ],
    );
    let out = c.exec(&["sh", "-c", "echo 'ID=changed' > /tmp/os-release-copy"]);
    assert!(out.status.success());
    let inv = read(Target::parse(&format!("container:{}", c.name)));
    assert_eq!(inv.image.source, SourceKind::Container);
    assert_eq!(inv.os.as_ref().map(|o| o.id.as_str()), Some("debian"));
    let cfg = inv.image.config.expect("container config");
    assert_eq!(cfg.config.user, "1000");
    assert!(cfg.config.env.iter().any(|e| e == "SCAN_TEST=1"));
    assert_eq!(cfg.config.cmd, ["sleep", "300"]);
}

#[test]
fn docker_built_layers_apply_whiteouts() {
    testkit::require!(Docker);
    let base = testkit::debian_image();
    // Debian's /etc/os-release is a symlink to ../usr/lib/os-release; removing the target in a
    // later layer leaves it dangling: no OS.
    build(
        "rampart-test/scan-whiteout:1",
        &format!("FROM {base}\nRUN rm /usr/lib/os-release\n"),
    );
    let inv = read(Target::Daemon("rampart-test/scan-whiteout:1".into()));
    assert_eq!(inv.image.layers.len(), 2);
    assert_eq!(inv.os, None);
    // A third layer replaces the symlink with a file.
    build(
        "rampart-test/scan-whiteout:2",
        "FROM rampart-test/scan-whiteout:1\nRUN rm /etc/os-release && printf 'ID=rebuilt\\nVERSION_ID=7\\n' > /etc/os-release\n",
    );
    let inv = read(Target::Daemon("rampart-test/scan-whiteout:2".into()));
    assert_eq!(inv.image.layers.len(), 3);
    assert_eq!(inv.os.map(|o| o.id), Some("rebuilt".to_string()));
    assert!(inv.image.layers[2]
        .created_by
        .as_deref()
        .is_some_and(|c| c.contains("rebuilt")));
}

#[test]
fn missing_targets_are_clear_errors() {
    testkit::require!(Docker);
    let reader = ImageReader::new(Limits::default());
    let err = reader
        .read(
            &Target::Daemon("rampart-test/does-not-exist:0".into()),
            &NoProgress,
        )
        .unwrap_err();
    assert!(err.to_string().contains("no such image"), "{err}");
    assert!(!err.is_refusal());
    let err = reader
        .read(
            &Target::Container("rampart-no-such-container".into()),
            &NoProgress,
        )
        .unwrap_err();
    assert!(err.to_string().contains("no such"), "{err}");
}
