//! Builders for test images: layer tars (including hostile ones no real tool writes),
//! `docker save` archives and OCI layouts, all written by the test itself.
#![allow(
    clippy::unwrap_used,
    dead_code,
    reason = "test support: a failure is a test failure; each test binary uses a subset"
)]

pub mod fixtures;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};

/// One entry of a layer built by a test. Paths are written verbatim (no validation), so tests
/// can build archives real tools refuse to write.
#[derive(Debug, Clone)]
pub enum E {
    File(&'static str, Vec<u8>),
    FileMode(&'static str, Vec<u8>, u32),
    Dir(&'static str),
    Symlink(&'static str, &'static str),
    HardLink(&'static str, &'static str),
    CharDev(&'static str, u32, u32),
    BlockDev(&'static str, u32, u32),
    /// A header claiming `size` bytes followed by `actual` bytes of data (a truncated archive).
    Lying(&'static str, u64, Vec<u8>),
}

pub fn file(path: &'static str, data: &str) -> E {
    E::File(path, data.as_bytes().to_vec())
}

fn header(path: &str, kind: tar::EntryType, mode: u32, size: u64) -> tar::Header {
    let mut h = tar::Header::new_ustar();
    h.set_entry_type(kind);
    h.set_mode(mode);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(1_700_000_000);
    h.set_size(size);
    let name = path.as_bytes();
    assert!(name.len() < 100, "test path too long: {path}");
    let old = h.as_old_mut();
    old.name = [0; 100];
    old.name[..name.len()].copy_from_slice(name);
    h
}

fn link_header(path: &str, kind: tar::EntryType, target: &str) -> tar::Header {
    let mut h = header(path, kind, 0o777, 0);
    let t = target.as_bytes();
    let old = h.as_old_mut();
    old.linkname = [0; 100];
    old.linkname[..t.len()].copy_from_slice(t);
    h
}

/// An uncompressed layer tar of `entries`.
pub fn layer(entries: &[E]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for e in entries {
        match e {
            E::File(p, d) => {
                let mut h = header(p, tar::EntryType::Regular, 0o644, d.len() as u64);
                h.set_cksum();
                b.append(&h, &d[..]).unwrap();
            }
            E::FileMode(p, d, m) => {
                let mut h = header(p, tar::EntryType::Regular, *m, d.len() as u64);
                h.set_cksum();
                b.append(&h, &d[..]).unwrap();
            }
            E::Dir(p) => {
                let mut h = header(p, tar::EntryType::Directory, 0o755, 0);
                h.set_cksum();
                b.append(&h, &[][..]).unwrap();
            }
            E::Symlink(p, t) => {
                let mut h = link_header(p, tar::EntryType::Symlink, t);
                h.set_cksum();
                b.append(&h, &[][..]).unwrap();
            }
            E::HardLink(p, t) => {
                let mut h = link_header(p, tar::EntryType::Link, t);
                h.set_cksum();
                b.append(&h, &[][..]).unwrap();
            }
            E::CharDev(p, ma, mi) | E::BlockDev(p, ma, mi) => {
                let kind = if matches!(e, E::CharDev(..)) {
                    tar::EntryType::Char
                } else {
                    tar::EntryType::Block
                };
                let mut h = header(p, kind, 0o666, 0);
                h.set_device_major(*ma).unwrap();
                h.set_device_minor(*mi).unwrap();
                h.set_cksum();
                b.append(&h, &[][..]).unwrap();
            }
            E::Lying(p, size, data) => {
                let mut h = header(p, tar::EntryType::Regular, 0o644, *size);
                h.set_cksum();
                let mut raw = b.into_inner().unwrap();
                raw.truncate(raw.len() - 1024); // drop the end-of-archive marker
                raw.extend_from_slice(h.as_bytes());
                raw.extend_from_slice(data);
                return raw; // truncated: no end-of-archive marker either
            }
        }
    }
    b.into_inner().unwrap()
}

pub fn sha256(data: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(data)))
}

pub fn gzip(data: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(data).unwrap();
    enc.finish().unwrap()
}

pub fn zstd(data: &[u8]) -> Vec<u8> {
    ruzstd::encoding::compress_to_vec(data, ruzstd::encoding::CompressionLevel::Fastest)
}

/// An image configuration for uncompressed layers `diffs` (their diff ids are computed).
pub fn config(diffs: &[&[u8]], run: serde_json::Value) -> Vec<u8> {
    let diff_ids: Vec<String> = diffs.iter().map(|d| sha256(d)).collect();
    serde_json::to_vec(&serde_json::json!({
        "architecture": "amd64",
        "os": "linux",
        "config": run,
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "history": diffs.iter().enumerate().map(|(i, _)| serde_json::json!({"created_by": format!("step {i}")})).collect::<Vec<_>>(),
    }))
    .unwrap()
}

fn append_file(b: &mut tar::Builder<Vec<u8>>, path: &str, data: &[u8]) {
    let mut h = header(path, tar::EntryType::Regular, 0o644, data.len() as u64);
    h.set_cksum();
    b.append(&h, data).unwrap();
}

/// A legacy `docker save` archive of uncompressed `layers` with `config` (manifest last, as
/// Docker writes it).
pub fn docker_save(layers: &[Vec<u8>], config: &[u8]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let config_name = format!("{}.json", &sha256(config)[7..]);
    append_file(&mut b, &config_name, config);
    let mut names = Vec::new();
    for (i, l) in layers.iter().enumerate() {
        let dir = format!("{:064x}", i + 1);
        append_file(&mut b, &format!("{dir}/VERSION"), b"1.0");
        append_file(&mut b, &format!("{dir}/layer.tar"), l);
        names.push(format!("{dir}/layer.tar"));
    }
    let manifest =
        serde_json::json!([{"Config": config_name, "RepoTags": ["test/image:1"], "Layers": names}]);
    append_file(
        &mut b,
        "manifest.json",
        &serde_json::to_vec(&manifest).unwrap(),
    );
    b.into_inner().unwrap()
}

/// How an OCI layout stores a layer.
#[derive(Debug, Clone, Copy)]
pub enum Comp {
    None,
    Gzip,
    Zstd,
}

/// Writes an OCI layout of uncompressed `layers` into `dir`, each stored as `comps[i]`.
/// Returns the manifest digest.
pub fn oci_layout(dir: &Path, layers: &[Vec<u8>], comps: &[Comp], config: &[u8]) -> String {
    let blobs = dir.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).unwrap();
    let put = |data: &[u8]| {
        let d = sha256(data);
        std::fs::write(blobs.join(&d[7..]), data).unwrap();
        d
    };
    let config_digest = put(config);
    let mut descs = Vec::new();
    for (l, c) in layers.iter().zip(comps) {
        let (data, mt) = match c {
            Comp::None => (l.clone(), "application/vnd.oci.image.layer.v1.tar"),
            Comp::Gzip => (gzip(l), "application/vnd.oci.image.layer.v1.tar+gzip"),
            Comp::Zstd => (zstd(l), "application/vnd.oci.image.layer.v1.tar+zstd"),
        };
        let d = put(&data);
        descs.push(serde_json::json!({"mediaType": mt, "digest": d, "size": data.len()}));
    }
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest, "size": config.len()},
        "layers": descs,
    }))
    .unwrap();
    let md = put(&manifest);
    let index = serde_json::json!({
        "schemaVersion": 2,
        "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": md, "size": manifest.len(),
                       "platform": {"architecture": "amd64", "os": "linux"}}],
    });
    std::fs::write(dir.join("index.json"), serde_json::to_vec(&index).unwrap()).unwrap();
    std::fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    md
}

/// Tars the directory `dir` into `out` with the system tar.
pub fn tar_dir(dir: &Path, out: &Path) {
    let st = Command::new("tar")
        .arg("-C")
        .arg(dir)
        .args(["-cf"])
        .arg(out)
        .arg(".")
        .status()
        .unwrap();
    assert!(st.success());
}

/// Converts a `docker save` archive into an OCI layout in `dir` with the given compressions
/// (cycled over the layers). Returns the layout dir.
pub fn oci_from_docker_save(save: &Path, dir: &Path, comps: &[Comp]) -> PathBuf {
    let x = dir.join("extract");
    std::fs::create_dir_all(&x).unwrap();
    let st = Command::new("tar")
        .arg("-C")
        .arg(&x)
        .arg("-xf")
        .arg(save)
        .status()
        .unwrap();
    assert!(st.success());
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(x.join("manifest.json")).unwrap()).unwrap();
    let m = &manifest[0];
    let config = std::fs::read(x.join(m["Config"].as_str().unwrap())).unwrap();
    let layers: Vec<Vec<u8>> = m["Layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| std::fs::read(x.join(l.as_str().unwrap())).unwrap())
        .collect();
    let comps: Vec<Comp> = (0..layers.len()).map(|i| comps[i % comps.len()]).collect();
    let out = dir.join("layout");
    oci_layout(&out, &layers, &comps, &config);
    std::fs::remove_dir_all(&x).unwrap();
    out
}

/// Writes `data` to a fresh file in `dir` and returns its path.
pub fn write(dir: &Path, name: &str, data: &[u8]) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, data).unwrap();
    p
}
