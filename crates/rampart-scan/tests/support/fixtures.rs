//! Heavy fixtures built by the tests themselves and cached under `testkit::cache_dir()/scan`:
//! old Python packages installed from PyPI with pip, an npm project resolved from the npm
//! registry, a Rust binary built with cargo-auditable (installed from crates.io), a Go binary
//! built with Debian's Go, Debian's log4j jar, and an image holding all of them.
#![allow(clippy::unwrap_used, dead_code, reason = "test support")]

use std::fs::{self, File};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The cache directory of these fixtures.
pub fn dir() -> PathBuf {
    let d = testkit::cache_dir().join("scan");
    fs::create_dir_all(&d).unwrap();
    d
}

/// An exclusive lock, held until dropped, so parallel tests build a fixture once.
pub struct Lock(File);

pub fn lock(name: &str) -> Lock {
    let f = File::create(dir().join(format!("{name}.lock"))).unwrap();
    // SAFETY: flock on a descriptor we own.
    assert_eq!(unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) }, 0);
    Lock(f)
}

fn run(cmd: &mut Command) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Runs `build` into `<dir>/<name>` unless a previous run finished (a `.done` marker).
fn cached(name: &str, build: impl FnOnce(&Path)) -> PathBuf {
    let _l = lock(name);
    let out = dir().join(name);
    let done = dir().join(format!("{name}.done"));
    if !done.exists() {
        let _ = fs::remove_dir_all(&out);
        fs::create_dir_all(&out).unwrap();
        build(&out);
        fs::write(&done, b"ok").unwrap();
    }
    out
}

/// The Python packages with published advisories, as pip installs them (pure-Python wheels).
pub const PYTHON_PINS: [(&str, &str); 4] = [
    ("Django", "2.2"),
    ("Jinja2", "2.10"),
    ("requests", "2.19.1"),
    ("urllib3", "1.24.1"),
];

/// `site-packages` with [`PYTHON_PINS`] installed from PyPI by pip, and a requirements.txt.
pub fn python_site() -> PathBuf {
    cached("python-site", |out| {
        let site = out.join("site-packages");
        let pins: Vec<String> = PYTHON_PINS
            .iter()
            .map(|(n, v)| format!("{n}=={v}"))
            .collect();
        run(Command::new("pip3")
            .args([
                "install",
                "--quiet",
                "--no-deps",
                "--no-compile",
                "--disable-pip-version-check",
                "--target",
            ])
            .arg(&site)
            .args(&pins));
        fs::write(
            out.join("requirements.txt"),
            format!("# pinned\n{}\n", pins.join("\n")),
        )
        .unwrap();
    })
}

/// An npm project with lodash 4.17.20 and minimist 1.2.0 resolved from the npm registry.
pub fn npm_project() -> PathBuf {
    cached("npm-project", |out| {
        fs::write(
            out.join("package.json"),
            r#"{"name":"fixture","version":"1.0.0","private":true}"#,
        )
        .unwrap();
        run(Command::new("npm").current_dir(out).args([
            "install",
            "--no-audit",
            "--no-fund",
            "--ignore-scripts",
            "lodash@4.17.20",
            "minimist@1.2.0",
        ]));
    })
}

/// A Rust binary depending on smallvec 1.6.0, built with `cargo auditable` (installed from
/// crates.io into the cache on first use).
pub fn auditable_binary() -> PathBuf {
    let tools = cached("cargo-auditable", |out| {
        run(Command::new("cargo")
            .args([
                "install",
                "--locked",
                "--quiet",
                "cargo-auditable",
                "--root",
            ])
            .arg(out));
    });
    let built = cached("auditable-fixture", |out| {
        let src = out.join("src");
        fs::create_dir_all(out.join("crate/src")).unwrap();
        fs::write(
            out.join("crate/Cargo.toml"),
            "[package]\nname = \"auditable-fixture\"\nversion = \"0.1.0\"\nedition = \"2021\"\n\n[dependencies]\nsmallvec = \"=1.6.0\"\n\n[workspace]\n",
        )
        .unwrap();
        fs::write(
            out.join("crate/src/main.rs"),
            "fn main() { let v: smallvec::SmallVec<[u8; 4]> = smallvec::smallvec![1, 2]; println!(\"{}\", v.len()); }\n",
        )
        .unwrap();
        let path = format!(
            "{}:{}",
            tools.join("bin").display(),
            std::env::var("PATH").unwrap_or_default()
        );
        run(Command::new("cargo")
            .current_dir(out.join("crate"))
            .env("PATH", path)
            .env("CARGO_TARGET_DIR", out.join("target"))
            .args(["auditable", "build", "--release", "--quiet"]));
        fs::create_dir_all(&src).unwrap();
        fs::copy(
            out.join("target/release/auditable-fixture"),
            out.join("auditable-fixture"),
        )
        .unwrap();
        let _ = fs::remove_dir_all(out.join("target"));
    });
    built.join("auditable-fixture")
}

/// A Go binary built with Debian's Go (no modules fetched: standard library only).
pub fn go_binary() -> PathBuf {
    let built = cached("go-fixture", |out| {
        fs::write(
            out.join("go.mod"),
            "module example.com/gofixture\n\ngo 1.19\n",
        )
        .unwrap();
        fs::write(
            out.join("main.go"),
            "package main\n\nimport \"fmt\"\n\nfunc main() { fmt.Println(\"fixture\") }\n",
        )
        .unwrap();
        run(Command::new("go")
            .current_dir(out)
            .env("GOPATH", out.join("gopath"))
            .env("GOCACHE", out.join("gocache"))
            .env("GOPROXY", "off")
            .env("GOFLAGS", "-mod=mod")
            .args(["build", "-o", "gofixture", "."]));
        let _ = fs::remove_dir_all(out.join("gocache"));
    });
    built.join("gofixture")
}

/// The Go version of the Go binary fixture (`go version`).
pub fn go_version() -> String {
    let out = Command::new("go").arg("version").output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    text.split_whitespace()
        .nth(2)
        .unwrap()
        .trim_start_matches("go")
        .to_string()
}

/// Debian's log4j-core jar (package liblog4j2-java, fetched with apt-get download).
pub fn log4j_jar() -> PathBuf {
    let d = cached("log4j", |out| {
        run(Command::new("apt-get")
            .current_dir(out)
            .args(["download", "liblog4j2-java"]));
        let deb = fs::read_dir(out)
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| p.extension().is_some_and(|e| e == "deb"))
            .unwrap();
        run(Command::new("dpkg-deb")
            .arg("-x")
            .arg(&deb)
            .arg(out.join("root")));
    });
    // The versioned name is a symlink to this file.
    d.join("root/usr/share/java/log4j-core.jar")
}

const GEMSPEC: &str = "# -*- encoding: utf-8 -*-\nGem::Specification.new do |s|\n  s.name = \"rack\".freeze\n  s.version = \"2.2.4\"\n  s.licenses = [\"MIT\".freeze]\nend\n";
const COMPOSER: &str =
    r#"{"packages":[{"name":"guzzlehttp/guzzle","version":"7.4.0"}],"packages-dev":[]}"#;

/// `rampart-test/lang:1`: a busybox image with one layer per language fixture.
pub fn lang_image() -> String {
    const TAG: &str = "rampart-test/lang:1";
    let _l = lock("lang-image");
    let exists = testkit::docker(["image", "inspect", TAG]).status.success();
    if exists && dir().join("lang-image.done").exists() {
        return TAG.into();
    }
    let base = testkit::busybox_image();
    let ctx = tempfile::tempdir().unwrap();
    let c = ctx.path();
    let cp = |from: &Path, to: &str| {
        run(Command::new("cp").arg("-a").arg(from).arg(c.join(to)));
    };
    let py = python_site();
    cp(&py.join("site-packages"), "site-packages");
    cp(&py.join("requirements.txt"), "requirements.txt");
    cp(&npm_project(), "npm");
    cp(&auditable_binary(), "auditable-fixture");
    cp(&go_binary(), "gofixture");
    cp(&log4j_jar(), "log4j-core.jar");
    fs::create_dir_all(c.join("gems/specifications")).unwrap();
    fs::write(c.join("gems/specifications/rack-2.2.4.gemspec"), GEMSPEC).unwrap();
    fs::create_dir_all(c.join("php")).unwrap();
    fs::write(c.join("php/composer.lock"), COMPOSER).unwrap();
    let jar_name = "log4j-core-2.19.0.jar";
    fs::write(
        c.join("Dockerfile"),
        format!(
            "FROM {base}\n\
             COPY site-packages /usr/local/lib/python3.11/site-packages\n\
             COPY requirements.txt /app/requirements.txt\n\
             COPY npm /app/web\n\
             COPY auditable-fixture gofixture /usr/local/bin/\n\
             COPY log4j-core.jar /opt/lib/{jar_name}\n\
             COPY gems /usr/local/bundle\n\
             COPY php /srv/php\n"
        ),
    )
    .unwrap();
    run(Command::new("docker")
        .env("DOCKER_BUILDKIT", "0")
        .args(["build", "-q", "-t", TAG])
        .arg(c));
    fs::write(dir().join("lang-image.done"), b"ok").unwrap();
    TAG.into()
}
