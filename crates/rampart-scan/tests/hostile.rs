//! Hostile and broken archives: every refusal the reader promises, each on an archive built
//! here, in both the `docker save` and the OCI layout form where the form matters.
#![allow(clippy::unwrap_used, reason = "tests")]

mod support;

use std::path::Path;

use rampart_scan::{ImageError, ImageReader, LimitExceeded, Limits, NoProgress, Target};
use support::{config, docker_save, file, layer, oci_layout, Comp, E};

fn read_save(layers: &[Vec<u8>], limits: Limits) -> Result<rampart_scan::Inventory, ImageError> {
    let dir = tempfile::tempdir().unwrap();
    let diffs: Vec<&[u8]> = layers.iter().map(Vec::as_slice).collect();
    let cfg = config(&diffs, serde_json::json!({}));
    let path = support::write(dir.path(), "image.tar", &docker_save(layers, &cfg));
    ImageReader::new(limits).read(&Target::Archive(path), &NoProgress)
}

fn read_oci(
    layers: &[Vec<u8>],
    comps: &[Comp],
    limits: Limits,
) -> Result<rampart_scan::Inventory, ImageError> {
    let dir = tempfile::tempdir().unwrap();
    let diffs: Vec<&[u8]> = layers.iter().map(Vec::as_slice).collect();
    let cfg = config(&diffs, serde_json::json!({}));
    oci_layout(dir.path(), layers, comps, &cfg);
    ImageReader::new(limits).read(&Target::Layout(dir.path().to_path_buf()), &NoProgress)
}

fn os_release(id: &str) -> Vec<u8> {
    format!("ID={id}\nVERSION_ID=1\n").into_bytes()
}

#[test]
fn path_traversal_is_refused_and_nothing_is_written() {
    let scratch = tempfile::tempdir().unwrap();
    let victim = scratch.path().join("pwned");
    assert!(!victim.exists());
    // `../../../<scratch>/pwned` from any extraction directory would land on the victim.
    let l = layer(&[
        file("etc/ok", "x"),
        E::File("../../../../../../../../tmp/pwned", b"evil".to_vec()),
    ]);
    let err = read_save(&[l], Limits::default()).unwrap_err();
    match &err {
        ImageError::PathTraversal { entry, layer } => {
            assert_eq!(entry, "../../../../../../../../tmp/pwned");
            assert!(layer.contains("layer.tar"), "{layer}");
        }
        e => panic!("expected PathTraversal, got {e}"),
    }
    assert!(err.to_string().contains("path traversal"), "{err}");
    assert!(!victim.exists());
    assert!(!Path::new("/tmp/pwned").exists());
}

#[test]
fn traversal_in_the_middle_of_a_path_is_refused() {
    let l = layer(&[E::File("usr/../../etc/x", b"evil".to_vec())]);
    assert!(matches!(
        read_oci(&[l], &[Comp::Gzip], Limits::default()),
        Err(ImageError::PathTraversal { .. })
    ));
}

#[test]
fn relative_symlink_escaping_the_root_is_refused() {
    let l = layer(&[
        E::Dir("etc"),
        E::Symlink("etc/evil", "../../../../etc/shadow"),
    ]);
    match read_save(&[l], Limits::default()) {
        Err(ImageError::SymlinkEscape { entry, target, .. }) => {
            assert_eq!(entry, "etc/evil");
            assert_eq!(target, "../../../../etc/shadow");
        }
        r => panic!("expected SymlinkEscape, got {r:?}"),
    }
}

#[test]
fn absolute_symlink_escaping_the_root_is_refused() {
    let l = layer(&[E::Symlink("evil", "/../../../etc/shadow")]);
    assert!(matches!(
        read_oci(&[l], &[Comp::Zstd], Limits::default()),
        Err(ImageError::SymlinkEscape { .. })
    ));
}

#[test]
fn absolute_symlinks_resolve_inside_the_image() {
    // The image's /etc/os-release points at an absolute path: it must be the image's file, not
    // the host's (which says debian).
    let l = layer(&[
        E::Dir("etc"),
        E::Dir("usr"),
        E::Dir("usr/lib"),
        E::File("usr/lib/os-release", os_release("fromimage")),
        E::Symlink("etc/os-release", "/usr/lib/os-release"),
    ]);
    let inv = read_save(&[l], Limits::default()).unwrap();
    assert_eq!(inv.os.unwrap().id, "fromimage");
}

#[test]
fn hard_link_escaping_is_refused() {
    let l = layer(&[file("a", "x"), E::HardLink("b", "../../etc/passwd")]);
    assert!(matches!(
        read_save(&[l], Limits::default()),
        Err(ImageError::HardLinkEscape { .. })
    ));
}

#[test]
fn hard_link_to_a_missing_file_is_refused() {
    let l = layer(&[file("a", "x"), E::HardLink("b", "etc/passwd")]);
    assert!(matches!(
        read_save(&[l], Limits::default()),
        Err(ImageError::HardLinkMissing { .. })
    ));
}

#[test]
fn hard_link_into_a_lower_layer_works() {
    let l1 = layer(&[
        E::Dir("etc"),
        E::File("etc/os-release", os_release("lower")),
    ]);
    let l2 = layer(&[
        E::Dir("usr"),
        E::Dir("usr/lib"),
        E::HardLink("usr/lib/os-release", "etc/os-release"),
    ]);
    let inv = read_save(&[l1, l2], Limits::default()).unwrap();
    assert_eq!(inv.os.unwrap().id, "lower");
}

#[test]
fn block_device_is_refused() {
    let l = layer(&[E::Dir("dev"), E::BlockDev("dev/sda", 8, 0)]);
    match read_save(&[l], Limits::default()) {
        Err(ImageError::DeviceFile {
            entry,
            kind,
            major,
            minor,
            ..
        }) => {
            assert_eq!(entry, "dev/sda");
            assert_eq!(kind, "block device");
            assert_eq!((major, minor), (8, 0));
        }
        r => panic!("expected DeviceFile, got {r:?}"),
    }
}

#[test]
fn character_device_outside_dev_is_refused_standard_dev_nodes_are_not() {
    // /dev/mem's numbers under another name.
    let l = layer(&[E::Dir("tmp"), E::CharDev("tmp/mem", 1, 1)]);
    assert!(matches!(
        read_save(&[l], Limits::default()),
        Err(ImageError::DeviceFile { .. })
    ));
    // A `null` that is really /dev/mem is refused too.
    let l = layer(&[E::Dir("dev"), E::CharDev("dev/null", 1, 1)]);
    assert!(matches!(
        read_save(&[l], Limits::default()),
        Err(ImageError::DeviceFile { .. })
    ));
    // What debootstrap leaves in /dev is accepted (Docker mounts its own /dev over it).
    let l = layer(&[
        E::Dir("dev"),
        E::CharDev("dev/null", 1, 3),
        E::CharDev("dev/zero", 1, 5),
        E::CharDev("dev/console", 5, 1),
        E::Dir("etc"),
        E::File("etc/os-release", os_release("ok")),
    ]);
    assert_eq!(
        read_save(&[l], Limits::default()).unwrap().os.unwrap().id,
        "ok"
    );
}

#[test]
fn decompression_bomb_is_refused() {
    // 256 MiB of zeros gzip to about 250 KiB: a ratio of about 1000.
    let zeros = vec![0u8; 256 << 20];
    let l = layer(&[E::File("bomb", zeros)]);
    match read_oci(&[l], &[Comp::Gzip], Limits::default()) {
        Err(ImageError::Limit {
            limit: LimitExceeded::Ratio { limit, .. },
            ..
        }) => assert_eq!(limit, 200),
        r => panic!("expected a ratio refusal, got {r:?}"),
    }
}

#[test]
fn image_size_limit_is_enforced() {
    let l = layer(&[E::File("big", vec![7u8; 3 << 20])]);
    let limits = Limits {
        max_image_size: 2 << 20,
        ..Limits::default()
    };
    let err = read_oci(&[l], &[Comp::Zstd], limits).unwrap_err();
    assert!(
        matches!(
            err,
            ImageError::Limit {
                limit: LimitExceeded::ImageSize { .. },
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn oversized_file_is_refused() {
    let l = layer(&[E::File("big", vec![1u8; 2 << 20])]);
    let limits = Limits {
        max_file_size: 1 << 20,
        ..Limits::default()
    };
    match read_save(&[l], limits) {
        Err(ImageError::FileTooLarge {
            entry, size, limit, ..
        }) => {
            assert_eq!(entry, "big");
            assert_eq!(size, 2 << 20);
            assert_eq!(limit, 1 << 20);
        }
        r => panic!("expected FileTooLarge, got {r:?}"),
    }
}

#[test]
fn header_claiming_more_than_the_archive_holds_is_an_error() {
    // Once for a file an analyser reads, once for one that is skipped over.
    for name in ["etc/os-release", "srv/data.bin"] {
        let l = layer(&[E::Lying(name, 1 << 20, os_release("x"))]);
        // The layer's diff id cannot match either; the read error must come first and name it.
        let err = read_oci(&[l], &[Comp::None], Limits::default()).unwrap_err();
        assert!(matches!(err, ImageError::Layer { .. }), "{name}: {err}");
    }
}

#[test]
fn too_many_entries_is_refused() {
    let entries: Vec<E> = (0..50).map(|_| E::Dir("d")).collect();
    let limits = Limits {
        max_entries: 10,
        ..Limits::default()
    };
    assert!(matches!(
        read_save(&[layer(&entries)], limits),
        Err(ImageError::TooManyEntries { limit: 10, .. })
    ));
}

/// A layout whose layer blob is corrupted after the manifest was written, with the digest
/// fixed up so only the decoder can notice.
fn corrupt_layout(comp: Comp) -> ImageError {
    let dir = tempfile::tempdir().unwrap();
    let l = layer(&[file("etc/a", &"some text that compresses ".repeat(2000))]);
    let cfg = config(&[&l], serde_json::json!({}));
    oci_layout(dir.path(), std::slice::from_ref(&l), &[comp], &cfg);
    // Find the layer blob (the one that is not JSON), flip bytes in its middle, rename it to
    // its new digest and point the manifest at it.
    let blobs = dir.path().join("blobs/sha256");
    let mut layer_blob = None;
    for e in std::fs::read_dir(&blobs).unwrap() {
        let p = e.unwrap().path();
        let data = std::fs::read(&p).unwrap();
        if data.first() != Some(&b'{') {
            layer_blob = Some((p, data));
        }
    }
    let (p, mut data) = layer_blob.unwrap();
    let old = format!("sha256:{}", p.file_name().unwrap().to_str().unwrap());
    let mid = data.len() / 2;
    for b in &mut data[mid..mid + 16] {
        *b ^= 0x5a;
    }
    let new = support::sha256(&data);
    std::fs::remove_file(&p).unwrap();
    std::fs::write(blobs.join(&new[7..]), &data).unwrap();
    // Rewrite the manifest (and the index pointing at it).
    for e in std::fs::read_dir(&blobs).unwrap() {
        let p = e.unwrap().path();
        let text = std::fs::read_to_string(&p).unwrap_or_default();
        if text.contains(&old) {
            let fixed = text.replace(&old, &new);
            let md = support::sha256(fixed.as_bytes());
            std::fs::remove_file(&p).unwrap();
            std::fs::write(blobs.join(&md[7..]), &fixed).unwrap();
            let index = std::fs::read_to_string(dir.path().join("index.json")).unwrap();
            let oldm = format!("sha256:{}", p.file_name().unwrap().to_str().unwrap());
            std::fs::write(
                dir.path().join("index.json"),
                index.replace(&oldm, &md).replace(
                    &format!("\"size\":{}", text.len()),
                    &format!("\"size\":{}", fixed.len()),
                ),
            )
            .unwrap();
        }
    }
    ImageReader::new(Limits::default())
        .read(&Target::Layout(dir.path().to_path_buf()), &NoProgress)
        .unwrap_err()
}

#[test]
fn corrupt_gzip_layer_is_refused() {
    let err = corrupt_layout(Comp::Gzip);
    let msg = err.to_string();
    assert!(
        matches!(err, ImageError::Layer { .. }) && msg.contains("gzip"),
        "{msg}"
    );
}

#[test]
fn corrupt_zstd_layer_is_refused() {
    let err = corrupt_layout(Comp::Zstd);
    let msg = err.to_string();
    assert!(
        (matches!(err, ImageError::Layer { .. }) && msg.contains("zstd"))
            || matches!(err, ImageError::DigestMismatch { .. }),
        "{msg}"
    );
}

#[test]
fn diff_id_mismatch_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let l = layer(&[file("a", "x")]);
    let other = layer(&[file("a", "y")]);
    let cfg = config(&[&other], serde_json::json!({}));
    let path = support::write(dir.path(), "image.tar", &docker_save(&[l], &cfg));
    match ImageReader::new(Limits::default()).read(&Target::Archive(path), &NoProgress) {
        Err(ImageError::DigestMismatch { what, .. }) => {
            assert!(what.contains("diff_ids"), "{what}")
        }
        r => panic!("expected DigestMismatch, got {r:?}"),
    }
}

#[test]
fn digest_with_a_path_in_it_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("index.json"),
        r#"{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:../../../../etc/passwd","size":1}]}"#,
    )
    .unwrap();
    assert!(matches!(
        ImageReader::new(Limits::default())
            .read(&Target::Layout(dir.path().to_path_buf()), &NoProgress),
        Err(ImageError::BadDigest { .. })
    ));
}

#[test]
fn symlinked_blob_is_not_followed() {
    let dir = tempfile::tempdir().unwrap();
    let l = layer(&[file("a", "x")]);
    let cfg = config(&[&l], serde_json::json!({}));
    oci_layout(dir.path(), std::slice::from_ref(&l), &[Comp::None], &cfg);
    let blob = dir
        .path()
        .join("blobs/sha256")
        .join(&support::sha256(&l)[7..]);
    let elsewhere = dir.path().join("elsewhere");
    std::fs::rename(&blob, &elsewhere).unwrap();
    std::os::unix::fs::symlink(&elsewhere, &blob).unwrap();
    let err = ImageReader::new(Limits::default())
        .read(&Target::Layout(dir.path().to_path_buf()), &NoProgress)
        .unwrap_err();
    assert!(err.to_string().contains("blobs/sha256"), "{err}");
}

#[test]
fn not_an_image_archive_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = support::write(dir.path(), "x.tar", &layer(&[file("hello", "world")]));
    let err = ImageReader::new(Limits::default())
        .read(&Target::Archive(path), &NoProgress)
        .unwrap_err();
    assert!(err.to_string().contains("not an image archive"), "{err}");
}

#[test]
fn whiteouts_and_opaque_dirs_apply_across_layers() {
    let l1 = layer(&[
        E::Dir("etc"),
        E::File("etc/os-release", os_release("first")),
        E::Dir("usr"),
        E::Dir("usr/lib"),
        E::File("usr/lib/os-release", os_release("fallback")),
    ]);
    // Layer 2 deletes /etc/os-release: the fallback path is used.
    let l2 = layer(&[E::Dir("etc"), E::File("etc/.wh.os-release", vec![])]);
    let inv = read_save(&[l1.clone(), l2.clone()], Limits::default()).unwrap();
    assert_eq!(inv.os.unwrap().id, "fallback");
    // Layer 3 makes /usr/lib opaque and adds nothing: no OS at all.
    let l3 = layer(&[E::Dir("usr/lib"), E::File("usr/lib/.wh..wh..opq", vec![])]);
    let inv = read_oci(
        &[l1, l2, l3],
        &[Comp::Gzip, Comp::None, Comp::Zstd],
        Limits::default(),
    )
    .unwrap();
    assert_eq!(inv.os, None);
    assert_eq!(inv.image.layers.len(), 3);
    assert_eq!(inv.image.layers[2].compression, "zstd");
}
