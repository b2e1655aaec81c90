//! OS package inventories: dpkg (the Debian test image, checked against `dpkg-query` run inside
//! it, and a distroless-style `status.d`), apk (installed database across layers), rpm (a real
//! rpmdb.sqlite written by `rpm` itself from packages built by `rpmbuild`).
#![allow(clippy::unwrap_used, reason = "tests")]

mod support;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

use rampart_event::PackageKind;
use rampart_scan::{ImageReader, Inventory, Limits, NoProgress, Target};
use support::{config, docker_save, layer, E};

fn read(t: Target) -> Inventory {
    ImageReader::new(Limits::default())
        .read(&t, &NoProgress)
        .unwrap_or_else(|e| panic!("{t:?}: {e}"))
}

fn read_layers(layers: &[Vec<u8>]) -> Inventory {
    let dir = tempfile::tempdir().unwrap();
    let diffs: Vec<&[u8]> = layers.iter().map(Vec::as_slice).collect();
    let cfg = config(&diffs, serde_json::json!({}));
    let path = support::write(dir.path(), "image.tar", &docker_save(layers, &cfg));
    read(Target::Archive(path))
}

#[test]
fn debian_packages_match_dpkg_query_inside_the_image() {
    testkit::require!(Docker);
    let tag = testkit::debian_image();
    let inv = read(Target::Daemon(tag.clone()));
    let out = testkit::docker_ok([
        "run",
        "--rm",
        "--network=none",
        &tag,
        "dpkg-query",
        "-W",
        "-f",
        "${Package}\t${Version}\t${source:Package}\t${db:Status-Abbrev}\n",
    ]);
    let expected: BTreeSet<(String, String, String)> = out
        .lines()
        .filter(|l| l.trim_end().ends_with("\tii"))
        .map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            (f[0].to_string(), f[1].to_string(), f[2].to_string())
        })
        .collect();
    assert!(expected.len() > 70, "{}", expected.len());
    let got: BTreeSet<(String, String, String)> = inv
        .packages
        .iter()
        .filter(|p| p.kind == PackageKind::Deb)
        .map(|p| {
            (
                p.name.clone(),
                p.version.clone(),
                p.advisory_name().to_string(),
            )
        })
        .collect();
    assert_eq!(got, expected);
    let diff_id = inv.image.layers[0].diff_id.clone();
    for p in &inv.packages {
        assert_eq!(p.ecosystem, "Debian:12");
        assert_eq!(p.path, "var/lib/dpkg/status");
        assert_eq!(p.layer.as_deref(), Some(diff_id.as_str()));
        let encoded = p.name.replace('+', "%2B");
        assert!(
            p.purl.starts_with(&format!("pkg:deb/debian/{encoded}@")),
            "{}",
            p.purl
        );
        assert!(p.purl.contains("distro=debian-12"), "{}", p.purl);
    }
    let libc = inv.packages.iter().find(|p| p.name == "libc6").unwrap();
    assert_eq!(libc.source_name.as_deref(), Some("glibc"));
    assert_eq!(libc.arch.as_deref(), Some("amd64"));
    assert!(inv.warnings.is_empty(), "{:?}", inv.warnings);
}

fn debian_os_release() -> E {
    E::File(
        "etc/os-release",
        b"PRETTY_NAME=\"Distroless\"\nID=debian\nVERSION_ID=\"12\"\nVERSION_CODENAME=bookworm\n"
            .to_vec(),
    )
}

#[test]
fn distroless_status_d_is_read() {
    let l = layer(&[
        E::Dir("etc"),
        debian_os_release(),
        E::Dir("var"),
        E::Dir("var/lib"),
        E::Dir("var/lib/dpkg"),
        E::Dir("var/lib/dpkg/status.d"),
        E::File(
            "var/lib/dpkg/status.d/base-files",
            b"Package: base-files\nVersion: 12.4+deb12u5\nArchitecture: amd64\n".to_vec(),
        ),
        E::File(
            "var/lib/dpkg/status.d/libssl3",
            b"Package: libssl3\nVersion: 3.0.11-1~deb12u2\nArchitecture: amd64\nSource: openssl\n"
                .to_vec(),
        ),
        E::File(
            "var/lib/dpkg/status.d/libssl3.md5sums",
            b"0123456789abcdef  usr/lib/x86_64-linux-gnu/libssl.so.3\n".to_vec(),
        ),
    ]);
    let inv = read_layers(&[l]);
    let names: Vec<(&str, &str, &str)> = inv
        .packages
        .iter()
        .map(|p| (p.name.as_str(), p.version.as_str(), p.path.as_str()))
        .collect();
    assert_eq!(
        names,
        [
            (
                "base-files",
                "12.4+deb12u5",
                "var/lib/dpkg/status.d/base-files"
            ),
            (
                "libssl3",
                "3.0.11-1~deb12u2",
                "var/lib/dpkg/status.d/libssl3"
            ),
        ]
    );
    assert_eq!(inv.packages[1].advisory_name(), "openssl");
    assert_eq!(inv.packages[1].ecosystem, "Debian:12");
}

const APK_V1: &str = "P:musl\nV:1.2.4_git20230717-r4\nA:x86_64\nL:MIT\no:musl\n\n\
P:libcrypto3\nV:3.1.4-r1\nA:x86_64\nL:Apache-2.0\no:openssl\n\n";
const APK_V2: &str = "P:musl\nV:1.2.4_git20230717-r4\nA:x86_64\nL:MIT\no:musl\n\n\
P:libcrypto3\nV:3.1.4-r5\nA:x86_64\nL:Apache-2.0\no:openssl\n\n\
P:curl\nV:8.5.0-r0\nA:x86_64\nL:curl\no:curl\n\n";

#[test]
fn apk_database_of_the_top_layer_wins() {
    let l1 = layer(&[
        E::Dir("etc"),
        E::File(
            "etc/os-release",
            b"NAME=\"Alpine Linux\"\nID=alpine\nVERSION_ID=3.19.1\n".to_vec(),
        ),
        E::Dir("lib"),
        E::Dir("lib/apk"),
        E::Dir("lib/apk/db"),
        E::File("lib/apk/db/installed", APK_V1.as_bytes().to_vec()),
    ]);
    let l2 = layer(&[
        E::Dir("lib"),
        E::Dir("lib/apk"),
        E::Dir("lib/apk/db"),
        E::File("lib/apk/db/installed", APK_V2.as_bytes().to_vec()),
    ]);
    let inv = read_layers(&[l1, l2]);
    let got: Vec<(&str, &str, &str)> = inv
        .packages
        .iter()
        .map(|p| (p.name.as_str(), p.version.as_str(), p.advisory_name()))
        .collect();
    assert_eq!(
        got,
        [
            ("curl", "8.5.0-r0", "curl"),
            ("libcrypto3", "3.1.4-r5", "openssl"),
            ("musl", "1.2.4_git20230717-r4", "musl"),
        ]
    );
    for p in &inv.packages {
        assert_eq!(p.ecosystem, "Alpine:v3.19");
        assert_eq!(p.layer.as_ref(), Some(&inv.image.layers[1].diff_id));
        assert!(p.purl.starts_with("pkg:apk/alpine/"), "{}", p.purl);
    }
}

fn run(cmd: &mut Command) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Builds packages with rpmbuild and registers them in a fresh rpmdb under `root` with rpm.
fn build_rpm_root(work: &Path, root: &Path) {
    assert!(
        Command::new("rpmbuild").arg("--version").output().is_ok(),
        "rpmbuild is missing: scripts/setup installs the `rpm` package (scripts/packages.txt)"
    );
    let specs = [
        (
            "openssl",
            "Name: openssl\nVersion: 3.0.7\nRelease: 24.el9\nEpoch: 1\nSummary: fixture\nLicense: ASL 2.0\nBuildArch: noarch\n%description\nfixture\n%package libs\nSummary: libs\n%description libs\nlibs\n%files libs\n%files\n",
        ),
        (
            "bash",
            "Name: bash\nVersion: 5.1.8\nRelease: 6.el9_1\nSummary: fixture\nLicense: GPLv3+\nBuildArch: noarch\n%description\nfixture\n%files\n",
        ),
    ];
    let top = work.join("top");
    for (name, spec) in specs {
        let p = work.join(format!("{name}.spec"));
        std::fs::write(&p, spec).unwrap();
        run(Command::new("rpmbuild")
            .arg("-bb")
            .arg("--define")
            .arg(format!("_topdir {}", top.display()))
            .arg(&p));
    }
    let rpms: Vec<_> = std::fs::read_dir(top.join("RPMS/noarch"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(rpms.len(), 3);
    run(Command::new("rpm")
        .arg("--root")
        .arg(root)
        .args(["--dbpath", "/var/lib/rpm", "--initdb"]));
    run(Command::new("rpm")
        .arg("--root")
        .arg(root)
        .args([
            "--dbpath",
            "/var/lib/rpm",
            "-i",
            "--justdb",
            "--nodeps",
            "--noscripts",
            "--nosignature",
            "--ignorearch",
            "--ignoreos",
        ])
        .args(&rpms));
    std::fs::create_dir_all(root.join("etc")).unwrap();
    std::fs::write(
        root.join("etc/os-release"),
        "NAME=\"Rocky Linux\"\nID=\"rocky\"\nID_LIKE=\"rhel centos fedora\"\nVERSION_ID=\"9.3\"\n",
    )
    .unwrap();
}

#[test]
fn rpm_sqlite_database_written_by_rpm_is_read() {
    let work = tempfile::tempdir().unwrap();
    let root = work.path().join("root");
    std::fs::create_dir_all(&root).unwrap();
    build_rpm_root(work.path(), &root);
    assert!(root.join("var/lib/rpm/rpmdb.sqlite").is_file());
    let check = |inv: &Inventory| {
        let got: Vec<(&str, &str, &str, &str)> = inv
            .packages
            .iter()
            .map(|p| {
                (
                    p.name.as_str(),
                    p.version.as_str(),
                    p.advisory_name(),
                    p.ecosystem.as_str(),
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                ("bash", "5.1.8-6.el9_1", "bash", "Rocky Linux:9"),
                ("openssl", "1:3.0.7-24.el9", "openssl", "Rocky Linux:9"),
                ("openssl-libs", "1:3.0.7-24.el9", "openssl", "Rocky Linux:9"),
            ]
        );
        let libs = &inv.packages[2];
        assert_eq!(
            libs.purl,
            "pkg:rpm/rocky/openssl-libs@3.0.7-24.el9?arch=noarch&distro=rocky-9.3&epoch=1&upstream=openssl"
        );
        assert_eq!(libs.licenses, ["ASL 2.0"]);
        assert!(inv.warnings.is_empty(), "{:?}", inv.warnings);
    };
    // As a root filesystem directory...
    check(&read(Target::Rootfs(root.clone())));
    // ...and as an image layer.
    let tar = work.path().join("layer.tar");
    run(Command::new("tar")
        .arg("-C")
        .arg(&root)
        .args(["--numeric-owner", "-cf"])
        .arg(&tar)
        .arg("."));
    let l = std::fs::read(&tar).unwrap();
    check(&read_layers(&[l]));
}

/// The Berkeley DB `Packages` of RHEL 7/8: the same headers rpm wrote above, stored in a hash
/// database written by Berkeley DB's own `db_load` (db5.3-util), as rpm's BDB backend stored them
/// (key: the package's instance number; key 0: the instance counter).
#[test]
fn rpm_berkeley_db_database_is_read() {
    let work = tempfile::tempdir().unwrap();
    let root = work.path().join("root");
    std::fs::create_dir_all(&root).unwrap();
    build_rpm_root(work.path(), &root);
    let sqlite = root.join("var/lib/rpm/rpmdb.sqlite");
    let conn = rusqlite::Connection::open(&sqlite).unwrap();
    let mut stmt = conn.prepare("SELECT hnum, blob FROM Packages").unwrap();
    let rows: Vec<(i64, Vec<u8>)> = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(rows.len(), 3);
    let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
    let mut dump = String::from("VERSION=3\nformat=bytevalue\ntype=hash\nHEADER=END\n");
    dump.push_str(&format!(
        " {}\n {}\n",
        hex(&0u32.to_le_bytes()),
        hex(&4u32.to_le_bytes())
    ));
    for (hnum, blob) in &rows {
        dump.push_str(&format!(
            " {}\n {}\n",
            hex(&(*hnum as u32).to_le_bytes()),
            hex(blob)
        ));
    }
    dump.push_str("DATA=END\n");
    let bdb_root = work.path().join("bdb");
    std::fs::create_dir_all(bdb_root.join("var/lib/rpm")).unwrap();
    std::fs::create_dir_all(bdb_root.join("etc")).unwrap();
    std::fs::copy(root.join("etc/os-release"), bdb_root.join("etc/os-release")).unwrap();
    let dump_file = work.path().join("dump.txt");
    std::fs::write(&dump_file, dump).unwrap();
    // 512-byte pages: every header (1-3 KiB) goes to overflow pages, the path real databases
    // take for most headers.
    run(Command::new("db5.3_load")
        .args(["-c", "db_pagesize=512"])
        .arg("-f")
        .arg(&dump_file)
        .arg(bdb_root.join("var/lib/rpm/Packages")));
    let inv = read(Target::Rootfs(bdb_root));
    let got: Vec<(&str, &str, &str)> = inv
        .packages
        .iter()
        .map(|p| (p.name.as_str(), p.version.as_str(), p.path.as_str()))
        .collect();
    assert_eq!(
        got,
        [
            ("bash", "5.1.8-6.el9_1", "var/lib/rpm/Packages"),
            ("openssl", "1:3.0.7-24.el9", "var/lib/rpm/Packages"),
            ("openssl-libs", "1:3.0.7-24.el9", "var/lib/rpm/Packages"),
        ]
    );
    assert!(inv.warnings.is_empty(), "{:?}", inv.warnings);
}
