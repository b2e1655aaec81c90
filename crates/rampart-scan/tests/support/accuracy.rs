//! The scanner's labelled accuracy set, the way Grype's quality gate keeps one: small images of
//! each kind the scanner reads (Debian 11 and 12, Python, Node, Go, Java), built here from root
//! filesystem trees in the formats the real tools write (dpkg status, wheel METADATA,
//! requirements and npm lock files, node_modules, a Go binary built with `go build` from a
//! vendored module tree, jars with Maven's pom.properties), and for each the (package, version,
//! vulnerability) matches expected from the OSV records in tests/data/osv, decided by reading
//! those records' ranges (tests/data/accuracy/labels.json says why for each).
//!
//! Scoring: a label is a true positive when a finding on that package and version carries the
//! label's id (as its id or an alias); a finding matching no label is a false positive; the
//! same (package, version, vulnerability) reported twice is a duplicate (one package found in
//! two places must be one component).
#![allow(
    dead_code,
    clippy::unwrap_used,
    reason = "shared by a test and a benchmark"
)]

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use rampart_scan::{scan, ImageReader, Limits, NoProgress, ScanOptions, Target, VulnDb};
use serde::Deserialize;

pub const IMAGES: &[&str] = &[
    "debian11",
    "debian12",
    "debian12-fixed",
    "python",
    "node",
    "go",
    "java",
];

fn data() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data")
}

fn write(root: &Path, rel: &str, data: impl AsRef<[u8]>) {
    let p = root.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, data).unwrap();
}

fn os_release(root: &Path, version: &str, codename: &str) {
    write(
        root,
        "etc/os-release",
        format!(
            "PRETTY_NAME=\"Debian GNU/Linux {version} ({codename})\"\nNAME=\"Debian GNU/Linux\"\nVERSION_ID=\"{version}\"\nVERSION=\"{version} ({codename})\"\nVERSION_CODENAME={codename}\nID=debian\n"
        ),
    );
}

fn dpkg(root: &Path, pkgs: &[(&str, &str, Option<&str>)]) {
    let mut s = String::new();
    for (name, version, source) in pkgs {
        s.push_str(&format!(
            "Package: {name}\nStatus: install ok installed\nPriority: optional\nSection: libs\nInstalled-Size: 1024\nMaintainer: Debian <debian@lists.debian.org>\nArchitecture: amd64\n"
        ));
        if let Some(src) = source {
            s.push_str(&format!("Source: {src}\n"));
        }
        s.push_str(&format!("Version: {version}\nDescription: {name}\n\n"));
    }
    write(root, "var/lib/dpkg/status", s);
}

fn wheel(root: &Path, site: &str, name: &str, version: &str) {
    write(
        root,
        &format!("{site}/{}-{version}.dist-info/METADATA", name.replace('-', "_")),
        format!("Metadata-Version: 2.1\nName: {name}\nVersion: {version}\nSummary: {name}\nLicense: Apache 2.0\n\n{name} long description\n"),
    );
    write(
        root,
        &format!(
            "{site}/{}-{version}.dist-info/RECORD",
            name.replace('-', "_")
        ),
        "",
    );
}

fn node_module(root: &Path, dir: &str, name: &str, version: &str) {
    write(
        root,
        &format!("{dir}/package.json"),
        serde_json::json!({"name": name, "version": version, "license": "MIT", "main": "index.js"})
            .to_string(),
    );
}

fn jar(root: &Path, rel: &str, poms: &[(&str, &str, &str)]) {
    let p = root.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    let mut w = zip::ZipWriter::new(std::fs::File::create(p).unwrap());
    let o = zip::write::SimpleFileOptions::default();
    w.start_file("META-INF/MANIFEST.MF", o).unwrap();
    w.write_all(b"Manifest-Version: 1.0\r\nCreated-By: Maven JAR Plugin 3.2.0\r\n\r\n")
        .unwrap();
    for (g, a, v) in poms {
        w.start_file(format!("META-INF/maven/{g}/{a}/pom.properties"), o)
            .unwrap();
        w.write_all(
            format!("#Created by Apache Maven 3.8.1\nversion={v}\ngroupId={g}\nartifactId={a}\n")
                .as_bytes(),
        )
        .unwrap();
        w.start_file(format!("META-INF/maven/{g}/{a}/pom.xml"), o)
            .unwrap();
        w.write_all(format!("<project><groupId>{g}</groupId><artifactId>{a}</artifactId><version>{v}</version></project>").as_bytes())
            .unwrap();
    }
    w.start_file("org/example/Main.class", o).unwrap();
    w.write_all(&[0xca, 0xfe, 0xba, 0xbe, 0, 0, 0, 52]).unwrap();
    w.finish().unwrap();
}

/// A Go program depending on golang.org/x/net v0.6.0 and golang.org/x/crypto v0.17.0, built
/// offline from a vendored module tree: its build info records both modules as `go mod vendor`
/// would leave them.
fn go_binary(work: &Path) -> PathBuf {
    let src = work.join("gosrc");
    let _ = std::fs::remove_dir_all(&src);
    write(
        &src,
        "go.mod",
        "module example.com/app\n\ngo 1.19\n\nrequire (\n\tgolang.org/x/crypto v0.17.0\n\tgolang.org/x/net v0.6.0\n)\n",
    );
    write(
        &src,
        "main.go",
        "package main\n\nimport (\n\t\"fmt\"\n\n\t\"golang.org/x/crypto/ssh\"\n\t\"golang.org/x/net/http2\"\n)\n\nfunc main() { fmt.Println(http2.Name(), ssh.Name()) }\n",
    );
    write(
        &src,
        "vendor/golang.org/x/net/http2/http2.go",
        "package http2\n\nfunc Name() string { return \"http2\" }\n",
    );
    write(
        &src,
        "vendor/golang.org/x/crypto/ssh/ssh.go",
        "package ssh\n\nfunc Name() string { return \"ssh\" }\n",
    );
    write(
        &src,
        "vendor/modules.txt",
        "# golang.org/x/crypto v0.17.0\n## explicit; go 1.18\ngolang.org/x/crypto/ssh\n# golang.org/x/net v0.6.0\n## explicit; go 1.17\ngolang.org/x/net/http2\n",
    );
    let out = work.join("app");
    let st = Command::new("go")
        .args(["build", "-mod=vendor", "-trimpath", "-o"])
        .arg(&out)
        .arg(".")
        .current_dir(&src)
        .env("CGO_ENABLED", "0")
        .env("GOFLAGS", "-mod=vendor")
        .env("GOPROXY", "off")
        .env("GOCACHE", work.join("gocache"))
        .env("GOPATH", work.join("gopath"))
        .status()
        .expect("`go` is needed to build the accuracy set's Go image (Debian: golang-go)");
    assert!(st.success(), "go build failed");
    out
}

/// Builds the root filesystem of `image` under `dir`.
pub fn build(image: &str, dir: &Path, work: &Path) {
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir).unwrap();
    match image {
        "debian11" => {
            os_release(dir, "11", "bullseye");
            dpkg(
                dir,
                &[
                    ("libc6", "2.31-13+deb11u6", Some("glibc")),
                    ("libssl1.1", "1.1.1n-0+deb11u4", Some("openssl")),
                    ("openssl", "1.1.1n-0+deb11u4", None),
                    ("zlib1g", "1:1.2.11.dfsg-2+deb11u2", Some("zlib")),
                ],
            );
        }
        "debian12" => {
            os_release(dir, "12", "bookworm");
            dpkg(
                dir,
                &[
                    ("libc6", "2.36-9+deb12u1", Some("glibc")),
                    ("libc-bin", "2.36-9+deb12u1", Some("glibc")),
                    ("openssh-client", "1:9.2p1-2+deb12u1", Some("openssh")),
                    ("openssl", "3.0.11-1~deb12u2", None),
                ],
            );
        }
        "debian12-fixed" => {
            os_release(dir, "12", "bookworm");
            dpkg(
                dir,
                &[
                    ("libc6", "2.36-9+deb12u3", Some("glibc")),
                    ("openssh-client", "1:9.2p1-2+deb12u2", Some("openssh")),
                ],
            );
        }
        "python" => {
            os_release(dir, "12", "bookworm");
            let site = "usr/local/lib/python3.11/site-packages";
            wheel(dir, site, "requests", "2.28.1");
            wheel(dir, site, "urllib3", "1.26.15");
            wheel(dir, site, "certifi", "2023.7.22");
            wheel(
                dir,
                "opt/venv/lib/python3.11/site-packages",
                "urllib3",
                "2.0.7",
            );
            write(
                dir,
                "app/requirements.txt",
                "# pinned by pip-compile\nrequests==2.28.1\nurllib3==1.26.15\nDjango==4.2.7\n",
            );
        }
        "node" => {
            os_release(dir, "12", "bookworm");
            write(
                dir,
                "app/package-lock.json",
                serde_json::json!({
                    "name": "app", "version": "1.0.0", "lockfileVersion": 3, "requires": true,
                    "packages": {
                        "": {"name": "app", "version": "1.0.0", "dependencies": {"express": "^4.19.2", "lodash": "^4.17.20", "semver": "^7.5.1", "old": "1.0.0"}},
                        "node_modules/express": {"version": "4.19.2", "resolved": "https://registry.npmjs.org/express/-/express-4.19.2.tgz"},
                        "node_modules/lodash": {"version": "4.17.20", "resolved": "https://registry.npmjs.org/lodash/-/lodash-4.17.20.tgz"},
                        "node_modules/semver": {"version": "7.5.1", "resolved": "https://registry.npmjs.org/semver/-/semver-7.5.1.tgz"},
                        "node_modules/old": {"version": "1.0.0"},
                        "node_modules/old/node_modules/semver": {"version": "5.7.1"}
                    }
                })
                .to_string(),
            );
            node_module(dir, "app/node_modules/express", "express", "4.19.2");
            node_module(dir, "app/node_modules/lodash", "lodash", "4.17.20");
            node_module(dir, "app/node_modules/semver", "semver", "7.5.1");
            node_module(dir, "app/node_modules/old", "old", "1.0.0");
            node_module(
                dir,
                "app/node_modules/old/node_modules/semver",
                "semver",
                "5.7.1",
            );
            // A second app on a pre-release (npm semver orders 5.0.0-beta.1 < 5.0.0-beta.3).
            write(
                dir,
                "srv/admin/yarn.lock",
                "# THIS IS AN AUTOGENERATED FILE. DO NOT EDIT THIS FILE DIRECTLY.\n# yarn lockfile v1\n\n\nexpress@5.0.0-beta.1:\n  version \"5.0.0-beta.1\"\n  resolved \"https://registry.yarnpkg.com/express/-/express-5.0.0-beta.1.tgz\"\n\nlodash@^4.17.21:\n  version \"4.17.21\"\n  resolved \"https://registry.yarnpkg.com/lodash/-/lodash-4.17.21.tgz\"\n",
            );
        }
        "go" => {
            os_release(dir, "12", "bookworm");
            let bin = go_binary(work);
            std::fs::create_dir_all(dir.join("usr/local/bin")).unwrap();
            std::fs::copy(bin, dir.join("usr/local/bin/app")).unwrap();
        }
        "java" => {
            os_release(dir, "12", "bookworm");
            jar(
                dir,
                "opt/app/lib/log4j-core-2.14.1.jar",
                &[("org.apache.logging.log4j", "log4j-core", "2.14.1")],
            );
            // Maven qualifiers: 2.0-beta9 < 2.0-rc1 < 2.0 (introduced 2.0-beta9 fixed 2.3.1).
            jar(
                dir,
                "opt/old/lib/log4j-core-2.0-rc1.jar",
                &[("org.apache.logging.log4j", "log4j-core", "2.0-rc1")],
            );
            jar(
                dir,
                "opt/legacy/lib/log4j-core-2.17.1.jar",
                &[("org.apache.logging.log4j", "log4j-core", "2.17.1")],
            );
            jar(
                dir,
                "opt/uber/service-all.jar",
                &[
                    ("org.apache.logging.log4j", "log4j-core", "2.12.1"),
                    ("com.example", "service", "3.1.0"),
                ],
            );
        }
        other => panic!("no accuracy image {other}"),
    }
}

/// One expected match.
#[derive(Debug, Clone, Deserialize)]
pub struct Label {
    pub image: String,
    pub package: String,
    pub version: String,
    pub vulnerability: String,
    /// Why it is expected (the record's range that covers the version).
    pub why: String,
}

pub fn labels() -> Vec<Label> {
    serde_json::from_slice(&std::fs::read(data().join("accuracy/labels.json")).unwrap()).unwrap()
}

/// What the recorded run scored (tests/data/accuracy/baseline.json).
#[derive(Debug, Clone, Deserialize)]
pub struct Baseline {
    pub f1: f64,
    pub true_positives: Vec<String>,
}

pub fn baseline() -> Baseline {
    serde_json::from_slice(&std::fs::read(data().join("accuracy/baseline.json")).unwrap()).unwrap()
}

/// The database of every OSV fixture record.
pub fn database(dir: &Path) -> VulnDb {
    let mut db = VulnDb::open_or_create(&dir.join("accuracy.db")).unwrap();
    let stats = db.import(&data().join("osv")).unwrap();
    assert!(stats.errors.is_empty(), "{:?}", stats.errors);
    db
}

/// The score of one run.
#[derive(Debug, Clone, Default)]
pub struct Score {
    pub true_positives: BTreeSet<String>,
    pub false_negatives: BTreeSet<String>,
    pub false_positives: BTreeSet<String>,
    /// The same (package, version, vulnerability) reported more than once.
    pub duplicates: usize,
    pub findings: usize,
}

impl Score {
    pub fn precision(&self) -> f64 {
        let tp = self.true_positives.len() as f64;
        let d = tp + self.false_positives.len() as f64;
        if d == 0.0 {
            1.0
        } else {
            tp / d
        }
    }
    pub fn recall(&self) -> f64 {
        let tp = self.true_positives.len() as f64;
        let d = tp + self.false_negatives.len() as f64;
        if d == 0.0 {
            1.0
        } else {
            tp / d
        }
    }
    pub fn f1(&self) -> f64 {
        let (p, r) = (self.precision(), self.recall());
        if p + r == 0.0 {
            0.0
        } else {
            2.0 * p * r / (p + r)
        }
    }
}

pub fn key(image: &str, package: &str, version: &str, id: &str) -> String {
    format!("{image}/{package}@{version}/{id}")
}

/// Scans every image (`target(image, rootfs)` names what to scan: the root filesystem
/// directory, or an image built from it) and scores the findings against the labels.
pub fn run(work: &Path, target: impl Fn(&str, &Path) -> String) -> Score {
    let db = database(work);
    let reader = ImageReader::new(Limits::default());
    let opts = ScanOptions {
        cache: None,
        refresh: true,
    };
    let labels = labels();
    let mut score = Score::default();
    for image in IMAGES {
        let root = work.join("rootfs").join(image);
        build(image, &root, work);
        let t = Target::parse(&target(image, &root));
        let report = scan(&reader, &t, Some(&db), &opts, &NoProgress).unwrap();
        score.findings += report.matches.findings.len();
        let mut seen: BTreeMap<(String, String, String), usize> = BTreeMap::new();
        let mut matched_labels = BTreeSet::new();
        for f in &report.matches.findings {
            let pkg = &f.package;
            *seen
                .entry((
                    pkg.name.clone(),
                    pkg.version.clone(),
                    f.vulnerability_id.clone(),
                ))
                .or_default() += 1;
            let ids: BTreeSet<&str> = std::iter::once(f.vulnerability_id.as_str())
                .chain(f.aliases.iter().map(String::as_str))
                .collect();
            let hits: Vec<&Label> = labels
                .iter()
                .filter(|l| {
                    l.image == *image
                        && l.package == pkg.name
                        && l.version == pkg.version
                        && ids.contains(l.vulnerability.as_str())
                })
                .collect();
            if hits.is_empty() {
                score.false_positives.insert(key(
                    image,
                    &pkg.name,
                    &pkg.version,
                    &f.vulnerability_id,
                ));
            }
            for l in hits {
                matched_labels.insert(key(image, &l.package, &l.version, &l.vulnerability));
            }
        }
        score.duplicates += seen
            .values()
            .filter(|n| **n > 1)
            .map(|n| n - 1)
            .sum::<usize>();
        for l in labels.iter().filter(|l| l.image == *image) {
            let k = key(image, &l.package, &l.version, &l.vulnerability);
            if matched_labels.contains(&k) {
                score.true_positives.insert(k);
            } else {
                score.false_negatives.insert(k);
            }
        }
    }
    score
}

/// `tar` of a root filesystem imported into the local Docker daemon as `tag`.
pub fn docker_import(root: &Path, tag: &str) {
    let mut tar = Command::new("tar")
        .args(["-C"])
        .arg(root)
        .args(["-cf", "-", "."])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let st = Command::new("docker")
        .args(["import", "-", tag])
        .stdin(tar.stdout.take().unwrap())
        .stdout(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(tar.wait().unwrap().success(), "tar of {}", root.display());
    assert!(st.success(), "docker import {tag}");
}
