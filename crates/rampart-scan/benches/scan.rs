//! Scanner benchmark: OSV import of 100,000+ records, database size, scans of the Debian image
//! and a Python image (cold and cached), and a 2 GB image; wall time and peak RSS of each, with
//! baselines measured in the same run.
//!
//! `cargo bench -p rampart-scan --bench scan` (`-- quick` skips the 2 GB image).
//!
//! Each measured step runs in a child process (this same binary, `RAMPART_BENCH_STEP` set), so
//! its peak RSS is the child's `ru_maxrss`, not the benchmark's.
//!
//! The OSV records are synthetic (the benchmark may not download osv.dev's exports): shaped like
//! the real ones (a summary, 1-2 KiB of details, aliases, references, one to three affected
//! packages with ranges), 30% Debian:12 source packages (one in twenty of them a source package
//! of the Debian image), 25% PyPI, 20% npm, the rest Go, Maven, crates.io, Alpine and Ubuntu.
#![allow(clippy::unwrap_used, reason = "benchmark: a failure is a failed run")]

#[path = "../tests/support/fixtures.rs"]
mod fixtures;

use std::io::Write;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use rampart_scan::{
    scan, ImageReader, InventoryCache, Limits, NoProgress, ScanOptions, Target, VulnDb,
};

const RECORDS: usize = 110_000;

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn word(&mut self) -> String {
        const SYL: [&str; 16] = [
            "ka", "lo", "mi", "net", "ro", "sa", "tu", "vex", "py", "zer", "on", "dat", "web",
            "io", "core", "lib",
        ];
        (0..2 + self.below(3))
            .map(|_| SYL[self.below(16) as usize])
            .collect()
    }
}

fn lorem(rng: &mut Rng, bytes: usize) -> String {
    const W: [&str; 12] = [
        "attacker",
        "memory",
        "buffer",
        "overflow",
        "crafted",
        "request",
        "allows",
        "remote",
        "denial",
        "service",
        "input",
        "validation",
    ];
    let mut s = String::new();
    while s.len() < bytes {
        s.push_str(W[rng.below(12) as usize]);
        s.push(' ');
    }
    s
}

/// Writes the synthetic OSV zip (cached).
fn osv_zip(debian_sources: &[String]) -> PathBuf {
    let out = fixtures::dir().join(format!("bench-osv-v2-{RECORDS}.zip"));
    if out.exists() {
        return out;
    }
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let tmp = out.with_extension("tmp");
    let f = std::fs::File::create(&tmp).unwrap();
    let mut z = zip::ZipWriter::new(std::io::BufWriter::new(f));
    let opts = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated);
    for i in 0..RECORDS {
        let roll = rng.below(100);
        let (eco, name, fixed, kind): (String, String, String, &str) = if roll < 30 {
            // One Debian record in 20 is about a source package of the image: about 1,600
            // records over its ~60 source packages, the density of the real Debian data.
            let name = if rng.below(20) == 0 && !debian_sources.is_empty() {
                debian_sources[rng.below(debian_sources.len() as u64) as usize].clone()
            } else {
                rng.word()
            };
            (
                "Debian:12".into(),
                name,
                format!(
                    "{}.{}-{}+deb12u{}",
                    rng.below(5),
                    rng.below(20),
                    rng.below(9),
                    rng.below(30)
                ),
                "ECOSYSTEM",
            )
        } else if roll < 55 {
            (
                "PyPI".into(),
                rng.word(),
                format!("{}.{}.{}", rng.below(5), rng.below(30), rng.below(10)),
                "ECOSYSTEM",
            )
        } else if roll < 75 {
            (
                "npm".into(),
                rng.word(),
                format!("{}.{}.{}", rng.below(5), rng.below(30), rng.below(10)),
                "SEMVER",
            )
        } else if roll < 82 {
            (
                "Go".into(),
                format!("github.com/{}/{}", rng.word(), rng.word()),
                format!("{}.{}.{}", rng.below(2), rng.below(30), rng.below(10)),
                "SEMVER",
            )
        } else if roll < 89 {
            (
                "Maven".into(),
                format!("org.{}:{}", rng.word(), rng.word()),
                format!("{}.{}.{}", rng.below(5), rng.below(30), rng.below(10)),
                "ECOSYSTEM",
            )
        } else if roll < 93 {
            (
                "crates.io".into(),
                rng.word(),
                format!("{}.{}.{}", rng.below(3), rng.below(30), rng.below(10)),
                "SEMVER",
            )
        } else if roll < 97 {
            (
                "Alpine:v3.19".into(),
                rng.word(),
                format!(
                    "{}.{}.{}-r{}",
                    rng.below(5),
                    rng.below(30),
                    rng.below(10),
                    rng.below(5)
                ),
                "ECOSYSTEM",
            )
        } else {
            (
                "Ubuntu:22.04:LTS".into(),
                rng.word(),
                format!(
                    "{}.{}-{}ubuntu{}",
                    rng.below(5),
                    rng.below(30),
                    rng.below(5),
                    rng.below(5)
                ),
                "ECOSYSTEM",
            )
        };
        let extra_affected = rng.below(3) as usize;
        let mut affected = vec![serde_json::json!({
            "package": {"ecosystem": eco, "name": name},
            "ranges": [{"type": kind, "events": [{"introduced": "0"}, {"fixed": fixed}]}],
        })];
        for _ in 0..extra_affected {
            affected.push(serde_json::json!({
                "package": {"ecosystem": eco, "name": rng.word()},
                "ranges": [{"type": kind, "events": [{"introduced": "0"}, {"fixed": fixed}]}],
            }));
        }
        let id = format!("BENCH-{i:06}");
        let len = 600 + rng.below(1400) as usize;
        let details = lorem(&mut rng, len);
        let rec = serde_json::json!({
            "schema_version": "1.6.0",
            "id": id,
            "modified": format!("2024-{:02}-{:02}T00:00:00Z", 1 + rng.below(12), 1 + rng.below(28)),
            "published": "2023-01-01T00:00:00Z",
            "aliases": [format!("CVE-2099-{i:06}")],
            "summary": lorem(&mut rng, 60),
            "details": details,
            "severity": [{"type": "CVSS_V3", "score": "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H"}],
            "affected": affected,
            "references": (0..3 + rng.below(3)).map(|k| serde_json::json!({"type": "WEB", "url": format!("https://example.org/advisories/{id}/{k}")})).collect::<Vec<_>>(),
        });
        z.start_file(format!("{id}.json"), opts).unwrap();
        z.write_all(&serde_json::to_vec(&rec).unwrap()).unwrap();
    }
    z.finish().unwrap();
    std::fs::rename(&tmp, &out).unwrap();
    out
}

/// Runs `step` in a child process; returns (seconds, peak RSS in MiB, stdout).
fn child(step: &str, args: &[&str]) -> (f64, f64, String) {
    let t = Instant::now();
    let out = Command::new(std::env::current_exe().unwrap())
        .env("RAMPART_BENCH_STEP", step)
        .args(args)
        .output()
        .unwrap();
    let secs = t.elapsed().as_secs_f64();
    assert!(
        out.status.success() || out.status.signal().is_none(),
        "{step}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "{step}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let rss = text
        .lines()
        .find_map(|l| l.strip_prefix("maxrss_kb="))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .unwrap_or(0.0)
        / 1024.0;
    (secs, rss, text)
}

fn maxrss_kb() -> i64 {
    // SAFETY: getrusage fills the struct we pass.
    unsafe {
        let mut ru: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut ru);
        ru.ru_maxrss
    }
}

/// The child side: one step, then its peak RSS on stdout.
fn run_step(step: &str, args: &[String]) {
    match step {
        "import" => {
            let mut db = VulnDb::open_or_create(Path::new(&args[0])).unwrap();
            let s = db.import(Path::new(&args[1])).unwrap();
            println!(
                "added={} unchanged={} errors={}",
                s.added,
                s.unchanged,
                s.errors.len()
            );
        }
        "scan" => {
            let db = VulnDb::open(Path::new(&args[0])).unwrap();
            let cache = args.get(2).map(InventoryCache::new);
            let opts = ScanOptions {
                cache,
                refresh: false,
            };
            let reader = ImageReader::new(Limits::default());
            let r = scan(
                &reader,
                &Target::parse(&args[1]),
                Some(&db),
                &opts,
                &NoProgress,
            )
            .unwrap();
            println!(
                "packages={} vulns={} findings={} cached={}",
                r.inventory.packages.len(),
                r.matches.findings.len(),
                r.inventory.findings.len(),
                r.cached
            );
        }
        "hash" => {
            // Baseline: read the archive once and SHA-256 it (the least any verifying reader does).
            use sha2::Digest;
            let mut f = std::fs::File::open(&args[0]).unwrap();
            let mut h = sha2::Sha256::new();
            std::io::copy(&mut f, &mut h).unwrap();
            println!("digest={}", hex::encode(h.finalize()));
        }
        "unzip" => {
            // Baseline: decompress and JSON-parse every record without storing anything.
            let f = std::fs::File::open(&args[0]).unwrap();
            #[allow(
                clippy::disallowed_methods,
                reason = "the baseline reads the benchmark's own zip without the capped reader"
            )]
            let mut z = zip::ZipArchive::new(std::io::BufReader::new(f)).unwrap();
            let mut n = 0usize;
            for i in 0..z.len() {
                let mut e = z.by_index(i).unwrap();
                let mut buf = Vec::new();
                std::io::Read::read_to_end(&mut e, &mut buf).unwrap();
                let v: serde_json::Value = serde_json::from_slice(&buf).unwrap();
                n += usize::from(v.get("id").is_some());
            }
            println!("records={n}");
        }
        other => panic!("unknown step {other}"),
    }
    println!("maxrss_kb={}", maxrss_kb());
}

fn python_image() -> String {
    const TAG: &str = "rampart-test/python-old:1";
    let _l = fixtures::lock("python-image");
    if testkit::docker(["image", "inspect", TAG]).status.success() {
        return TAG.into();
    }
    let base = testkit::debian_image();
    let ctx = tempfile::tempdir().unwrap();
    let site = fixtures::python_site();
    let st = Command::new("cp")
        .arg("-a")
        .arg(site.join("site-packages"))
        .arg(ctx.path().join("site-packages"))
        .status()
        .unwrap();
    assert!(st.success());
    std::fs::write(
        ctx.path().join("Dockerfile"),
        format!("FROM {base}\nCOPY site-packages /usr/local/lib/python3.11/site-packages\n"),
    )
    .unwrap();
    let out = Command::new("docker")
        .env("DOCKER_BUILDKIT", "0")
        .args(["build", "--network", "none", "-q", "-t", TAG])
        .arg(ctx.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    TAG.into()
}

/// A `docker save` archive of about 2 GB: the Debian image plus four layers of incompressible
/// files (some text, most binary), written once into the fixture cache.
fn big_archive() -> PathBuf {
    let out = fixtures::dir().join("bench-2g.tar");
    if out.exists() {
        return out;
    }
    let work = fixtures::dir().join("bench-2g-work");
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work).unwrap();
    let mut rng = Rng(42);
    let mut ctx = String::from("FROM rampart-test/debian:bookworm\n");
    for layer in 0..4 {
        let d = work.join(format!("l{layer}"));
        std::fs::create_dir_all(&d).unwrap();
        for f in 0..1800 {
            let mut buf = vec![0u8; 256 << 10];
            for chunk in buf.chunks_mut(8) {
                chunk.copy_from_slice(&rng.next().to_le_bytes()[..chunk.len()]);
            }
            if f % 10 == 0 {
                // Some text files, for the secret scanner to read.
                let text = lorem(&mut rng, 64 << 10);
                std::fs::write(d.join(format!("notes-{f}.conf")), text).unwrap();
            }
            std::fs::write(d.join(format!("blob-{f}.bin")), &buf).unwrap();
        }
        ctx.push_str(&format!("COPY l{layer} /data/l{layer}\n"));
    }
    std::fs::write(work.join("Dockerfile"), ctx).unwrap();
    testkit::debian_image();
    let built = Command::new("docker")
        .env("DOCKER_BUILDKIT", "0")
        .args([
            "build",
            "--network",
            "none",
            "-q",
            "-t",
            "rampart-test/bench-2g:1",
        ])
        .arg(&work)
        .output()
        .unwrap();
    assert!(
        built.status.success(),
        "{}",
        String::from_utf8_lossy(&built.stderr)
    );
    let tmp = out.with_extension("tmp");
    testkit::docker_ok([
        "save",
        "-o",
        tmp.to_str().unwrap(),
        "rampart-test/bench-2g:1",
    ]);
    std::fs::rename(&tmp, &out).unwrap();
    let _ = std::fs::remove_dir_all(&work);
    let _ = testkit::docker(["rmi", "rampart-test/bench-2g:1"]);
    out
}

fn row(name: &str, secs: f64, rss: f64, base: Option<f64>, note: &str) {
    let ratio = base
        .map(|b| format!("{:.1}", secs / b))
        .unwrap_or_else(|| "-".into());
    println!("| {name} | {secs:.2} | {rss:.0} | {ratio} | {note} |");
}

fn main() {
    if let Ok(step) = std::env::var("RAMPART_BENCH_STEP") {
        let args: Vec<String> = std::env::args().skip(1).collect();
        return run_step(&step, &args);
    }
    let quick = std::env::args().any(|a| a == "quick");
    let debian = testkit::debian_image();
    // Source package names of the Debian image, so the synthetic records hit some of them.
    let inv = ImageReader::new(Limits::default())
        .read(&Target::Daemon(debian.clone()), &NoProgress)
        .unwrap();
    let mut sources: Vec<String> = inv
        .packages
        .iter()
        .map(|p| p.advisory_name().to_string())
        .collect();
    sources.sort();
    sources.dedup();
    let zip = osv_zip(&sources);
    let work = tempfile::tempdir().unwrap();
    let db = work.path().join("vuln.db");
    let db = db.to_str().unwrap();
    let cache = work.path().join("cache");
    let cache = cache.to_str().unwrap();
    let zip_s = zip.to_str().unwrap();

    println!("| step | seconds | peak RSS (MiB) | × baseline | result |");
    println!("|---|---|---|---|---|");
    let (b_unzip, r_unzip, o) = child("unzip", &[zip_s]);
    row(
        "baseline: unzip + JSON-parse all records",
        b_unzip,
        r_unzip,
        None,
        o.lines().next().unwrap_or(""),
    );
    let (t, r, o) = child("import", &[db, zip_s]);
    let size = std::fs::metadata(db).map(|m| m.len()).unwrap_or(0)
        + std::fs::metadata(format!("{db}-wal"))
            .map(|m| m.len())
            .unwrap_or(0);
    row(
        &format!("import {RECORDS} records (cold)"),
        t,
        r,
        Some(b_unzip),
        o.lines().next().unwrap_or(""),
    );
    let (t, r, o) = child("import", &[db, zip_s]);
    row(
        "re-import, unchanged",
        t,
        r,
        Some(b_unzip),
        o.lines().next().unwrap_or(""),
    );
    println!(
        "| database on disk | - | - | - | {:.0} MB |",
        size as f64 / 1e6
    );

    for (label, image) in [
        ("Debian minbase", debian.clone()),
        ("Python (old PyPI packages)", python_image()),
    ] {
        let save = work.path().join("img.tar");
        testkit::docker_ok(["save", "-o", save.to_str().unwrap(), &image]);
        let (b, br, _) = child("hash", &[save.to_str().unwrap()]);
        row(
            &format!("{label}: baseline sha256 of the saved image"),
            b,
            br,
            None,
            "",
        );
        let target = format!("archive:{}", save.display());
        let (t, r, o) = child("scan", &[db, &target]);
        row(
            &format!("{label}: scan, cold"),
            t,
            r,
            Some(b),
            o.lines().next().unwrap_or(""),
        );
        let (_, _, _) = child("scan", &[db, &target, cache]);
        let (t, r, o) = child("scan", &[db, &target, cache]);
        row(
            &format!("{label}: scan, cached inventory"),
            t,
            r,
            Some(b),
            o.lines().next().unwrap_or(""),
        );
        let (t, r, o) = child("scan", &[db, &image]);
        row(
            &format!("{label}: scan from the daemon, cold"),
            t,
            r,
            Some(b),
            o.lines().next().unwrap_or(""),
        );
        let (t, r, o) = child("scan", &[db, &image, cache]);
        row(
            &format!("{label}: scan from the daemon, cached"),
            t,
            r,
            Some(b),
            o.lines().next().unwrap_or(""),
        );
        let _ = std::fs::remove_file(&save);
    }
    if !quick {
        let big = big_archive();
        let gb = std::fs::metadata(&big).map(|m| m.len()).unwrap_or(0) as f64 / 1e9;
        let big_s = big.to_str().unwrap();
        let (b, br, _) = child("hash", &[big_s]);
        row(
            &format!("{gb:.1} GB image: baseline sha256"),
            b,
            br,
            None,
            "",
        );
        let (t, r, o) = child("scan", &[db, &format!("archive:{big_s}")]);
        row(
            &format!("{gb:.1} GB image: scan, cold"),
            t,
            r,
            Some(b),
            o.lines().next().unwrap_or(""),
        );
    }
}
