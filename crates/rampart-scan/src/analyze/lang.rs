//! Language package manifests and lock files: Cargo.lock; npm's package-lock.json (v1-v3),
//! yarn.lock (v1 and Berry), pnpm-lock.yaml and installed `node_modules/*/package.json`;
//! Python's installed distributions (`*.dist-info/METADATA`, `*.egg-info/PKG-INFO`),
//! requirements files (exact pins), poetry.lock and Pipfile.lock; Ruby gemspecs; PHP's
//! composer.lock and `vendor/composer/installed.json`.
//!
//! Development-only dependencies of lock files (npm `dev`, Pipfile `develop`, Composer
//! `packages-dev`) are left out: they are not installed in a production image.

use std::collections::BTreeMap;

use rampart_event::PackageKind;
use serde::Deserialize;

use super::path_name as name_of;
use super::{lang_package, FileResult, Warning};

/// Which parser a path goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    CargoLock,
    PackageLock,
    YarnLock,
    PnpmLock,
    NodeModule,
    PyMetadata,
    Requirements,
    PoetryLock,
    PipfileLock,
    Gemspec,
    ComposerLock,
    ComposerInstalled,
}

pub(crate) fn kind(path: &str) -> Option<Kind> {
    let name = name_of(path);
    Some(match name {
        "Cargo.lock" => Kind::CargoLock,
        "package-lock.json" | "npm-shrinkwrap.json" => {
            // npm's copy inside node_modules repeats the project lock file.
            if path.contains("node_modules/.package-lock.json") {
                return None;
            }
            Kind::PackageLock
        }
        "yarn.lock" => Kind::YarnLock,
        "pnpm-lock.yaml" => Kind::PnpmLock,
        "package.json" if is_node_module(path) => Kind::NodeModule,
        "METADATA" if path.ends_with(".dist-info/METADATA") => Kind::PyMetadata,
        "PKG-INFO" if path.ends_with(".egg-info/PKG-INFO") => Kind::PyMetadata,
        "poetry.lock" => Kind::PoetryLock,
        "Pipfile.lock" => Kind::PipfileLock,
        "composer.lock" => Kind::ComposerLock,
        "installed.json" if path.ends_with("vendor/composer/installed.json") => {
            Kind::ComposerInstalled
        }
        n if n.ends_with(".gemspec") && path.contains("specifications/") => Kind::Gemspec,
        n if n.starts_with("requirements") && n.ends_with(".txt") => Kind::Requirements,
        _ => return None,
    })
}

/// `.../node_modules/<name>/package.json` or `.../node_modules/@scope/<name>/package.json`.
fn is_node_module(path: &str) -> bool {
    let parts: Vec<&str> = path.split('/').collect();
    let n = parts.len();
    (n >= 3 && parts[n - 3] == "node_modules" && !parts[n - 2].starts_with('@'))
        || (n >= 4 && parts[n - 4] == "node_modules" && parts[n - 3].starts_with('@'))
}

fn warn(out: &mut FileResult, line: Option<usize>, message: String) {
    out.warnings.push(Warning {
        path: String::new(),
        line,
        message,
    });
}

pub(crate) fn parse(kind: Kind, data: &[u8], out: &mut FileResult) {
    let text = String::from_utf8_lossy(data);
    match kind {
        Kind::CargoLock => cargo_lock(&text, out),
        Kind::PackageLock => package_lock(data, out),
        Kind::YarnLock => yarn_lock(&text, out),
        Kind::PnpmLock => pnpm_lock(&text, out),
        Kind::NodeModule => node_module(data, out),
        Kind::PyMetadata => py_metadata(&text, out),
        Kind::Requirements => requirements(&text, out),
        Kind::PoetryLock => poetry_lock(&text, out),
        Kind::PipfileLock => pipfile_lock(data, out),
        Kind::Gemspec => gemspec(&text, out),
        Kind::ComposerLock | Kind::ComposerInstalled => composer(data, out),
    }
}

fn toml_error(e: &toml::de::Error, text: &str) -> (Option<usize>, String) {
    let line = e
        .span()
        .map(|s| text[..s.start.min(text.len())].matches('\n').count() + 1);
    (line, e.message().to_string())
}

#[derive(Deserialize)]
struct TomlLock {
    #[serde(default)]
    package: Vec<TomlPackage>,
}

#[derive(Deserialize)]
struct TomlPackage {
    name: String,
    version: String,
    #[serde(default)]
    source: Option<String>,
}

fn cargo_lock(text: &str, out: &mut FileResult) {
    match toml::from_str::<TomlLock>(text) {
        Ok(l) => {
            for p in l.package {
                // Path dependencies (no source) are the project's own crates.
                if p.source.is_some() {
                    out.packages
                        .push(lang_package(PackageKind::Cargo, &p.name, &p.version));
                }
            }
        }
        Err(e) => {
            let (line, msg) = toml_error(&e, text);
            warn(out, line, format!("Cargo.lock: {msg}"));
        }
    }
}

fn poetry_lock(text: &str, out: &mut FileResult) {
    match toml::from_str::<TomlLock>(text) {
        Ok(l) => {
            for p in l.package {
                out.packages
                    .push(lang_package(PackageKind::Pypi, &p.name, &p.version));
            }
        }
        Err(e) => {
            let (line, msg) = toml_error(&e, text);
            warn(out, line, format!("poetry.lock: {msg}"));
        }
    }
}

#[derive(Deserialize)]
struct NpmLock {
    /// lockfileVersion 2 and 3: install path -> package.
    #[serde(default)]
    packages: BTreeMap<String, NpmEntry>,
    /// lockfileVersion 1: name -> dependency, nested.
    #[serde(default)]
    dependencies: BTreeMap<String, NpmDep>,
}

#[derive(Deserialize)]
struct NpmEntry {
    #[serde(default)]
    version: Option<String>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    dev: bool,
    #[serde(default)]
    link: bool,
}

#[derive(Deserialize)]
struct NpmDep {
    #[serde(default)]
    version: Option<String>,
    #[serde(default)]
    dev: bool,
    #[serde(default)]
    dependencies: BTreeMap<String, NpmDep>,
}

fn npm_v1(deps: &BTreeMap<String, NpmDep>, out: &mut FileResult) {
    for (name, e) in deps {
        if let (Some(v), false) = (&e.version, e.dev) {
            // `file:` and git dependencies have no registry version.
            if !v.contains(':') && !v.contains('/') {
                out.packages.push(lang_package(PackageKind::Npm, name, v));
            }
        }
        npm_v1(&e.dependencies, out);
    }
}

fn package_lock(data: &[u8], out: &mut FileResult) {
    let lock: NpmLock = match serde_json::from_slice(data) {
        Ok(l) => l,
        Err(e) => return warn(out, Some(e.line()), format!("package-lock.json: {e}")),
    };
    if lock.packages.is_empty() {
        return npm_v1(&lock.dependencies, out);
    }
    for (key, e) in &lock.packages {
        if key.is_empty() || e.link || e.dev {
            continue;
        }
        // Keys outside node_modules are the project's own workspace packages.
        let Some(i) = key.rfind("node_modules/") else {
            continue;
        };
        let name = e
            .name
            .as_deref()
            .unwrap_or(&key[i + "node_modules/".len()..]);
        if let Some(v) = &e.version {
            out.packages.push(lang_package(PackageKind::Npm, name, v));
        }
    }
}

/// The package name of a yarn/pnpm spec `name@range` or `@scope/name@range`.
fn spec_name(spec: &str) -> &str {
    let spec = spec.trim().trim_matches('"');
    let at = if let Some(rest) = spec.strip_prefix('@') {
        rest.find('@').map(|i| i + 1)
    } else {
        spec.find('@')
    };
    match at {
        Some(i) => &spec[..i],
        None => spec,
    }
}

fn yarn_lock(text: &str, out: &mut FileResult) {
    if text.lines().any(|l| l.starts_with("__metadata:")) {
        // Yarn Berry: YAML, keys `"name@npm:range, name@npm:range2"`.
        let doc: BTreeMap<String, serde_yaml::Value> = match serde_yaml::from_str(text) {
            Ok(d) => d,
            Err(e) => {
                let line = e.location().map(|l| l.line());
                return warn(out, line, format!("yarn.lock: {e}"));
            }
        };
        for (key, v) in doc {
            if key == "__metadata" {
                continue;
            }
            let first = key.split(',').next().unwrap_or(&key);
            if first.contains("@workspace:") || first.contains("@link:") {
                continue;
            }
            if let Some(version) = v.get("version").and_then(|x| x.as_str()) {
                out.packages
                    .push(lang_package(PackageKind::Npm, spec_name(first), version));
            }
        }
        return;
    }
    let mut current: Option<String> = None;
    for (i, line) in text.lines().enumerate() {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if !line.starts_with(' ') {
            let Some(header) = line.strip_suffix(':') else {
                warn(
                    out,
                    Some(i + 1),
                    "yarn.lock: entry header without ':'".into(),
                );
                current = None;
                continue;
            };
            current = Some(spec_name(header.split(',').next().unwrap_or(header)).to_string());
        } else if let Some(v) = line.trim().strip_prefix("version ") {
            if let Some(name) = current.take() {
                out.packages.push(lang_package(
                    PackageKind::Npm,
                    &name,
                    v.trim().trim_matches('"'),
                ));
            }
        }
    }
}

fn pnpm_lock(text: &str, out: &mut FileResult) {
    let doc: serde_yaml::Value = match serde_yaml::from_str(text) {
        Ok(d) => d,
        Err(e) => {
            let line = e.location().map(|l| l.line());
            return warn(out, line, format!("pnpm-lock.yaml: {e}"));
        }
    };
    let lock_version: f64 = match doc.get("lockfileVersion") {
        Some(serde_yaml::Value::Number(n)) => n.as_f64().unwrap_or(0.0),
        Some(serde_yaml::Value::String(s)) => s.parse().unwrap_or(0.0),
        _ => 0.0,
    };
    let Some(packages) = doc.get("packages").and_then(|p| p.as_mapping()) else {
        return;
    };
    for (key, v) in packages {
        let Some(key) = key.as_str() else { continue };
        if v.get("dev").and_then(|d| d.as_bool()) == Some(true) {
            continue;
        }
        // Peer-dependency suffixes: `/a@1.0.0(b@2.0.0)`.
        let key = key.split('(').next().unwrap_or(key).trim_start_matches('/');
        let (name, version) = if lock_version >= 6.0 {
            match key.rfind('@').filter(|i| *i > 0) {
                Some(i) => (&key[..i], &key[i + 1..]),
                None => continue,
            }
        } else {
            match key.rfind('/') {
                Some(i) => (&key[..i], &key[i + 1..]),
                None => continue,
            }
        };
        let version = version.split('_').next().unwrap_or(version);
        out.packages
            .push(lang_package(PackageKind::Npm, name, version));
    }
}

#[derive(Deserialize)]
struct NodePackageJson {
    name: Option<String>,
    version: Option<String>,
    #[serde(default)]
    license: Option<serde_json::Value>,
}

fn node_module(data: &[u8], out: &mut FileResult) {
    let p: NodePackageJson = match serde_json::from_slice(data) {
        Ok(p) => p,
        Err(e) => return warn(out, Some(e.line()), format!("package.json: {e}")),
    };
    if let (Some(n), Some(v)) = (p.name, p.version) {
        let mut pkg = lang_package(PackageKind::Npm, &n, &v);
        match p.license {
            Some(serde_json::Value::String(l)) => pkg.licenses.push(l),
            Some(serde_json::Value::Object(o)) => {
                if let Some(t) = o.get("type").and_then(|t| t.as_str()) {
                    pkg.licenses.push(t.to_string());
                }
            }
            _ => {}
        }
        out.packages.push(pkg);
    }
}

fn py_metadata(text: &str, out: &mut FileResult) {
    let (mut name, mut version, mut license) = (None, None, None);
    for line in text.lines() {
        if line.is_empty() {
            break; // the body (description) follows the headers
        }
        if let Some((k, v)) = line.split_once(':') {
            let v = v.trim().to_string();
            match k {
                "Name" => name = Some(v),
                "Version" => version = Some(v),
                "License-Expression" => license = Some(v),
                "License"
                    if license.is_none() && !v.is_empty() && v != "UNKNOWN" && v.len() < 80 =>
                {
                    license = Some(v)
                }
                _ => {}
            }
        }
    }
    match (name, version) {
        (Some(n), Some(v)) => {
            let mut p = lang_package(PackageKind::Pypi, &n, &v);
            p.licenses.extend(license);
            out.packages.push(p);
        }
        _ => warn(out, None, "Python metadata without Name or Version".into()),
    }
}

fn requirements(text: &str, out: &mut FileResult) {
    for line in text.lines() {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.is_empty() || line.starts_with('-') {
            continue;
        }
        let line = line.split(';').next().unwrap_or(line).trim();
        // Only exact pins name exactly one version.
        let Some((name, version)) = line.split_once("==") else {
            continue;
        };
        let name = name.split('[').next().unwrap_or(name).trim();
        let version = version.split(',').next().unwrap_or(version).trim();
        if !name.is_empty() && !version.is_empty() && !version.contains('*') {
            out.packages
                .push(lang_package(PackageKind::Pypi, name, version));
        }
    }
}

#[derive(Deserialize)]
struct Pipfile {
    #[serde(default)]
    default: BTreeMap<String, PipfileEntry>,
}

#[derive(Deserialize)]
struct PipfileEntry {
    #[serde(default)]
    version: Option<String>,
}

fn pipfile_lock(data: &[u8], out: &mut FileResult) {
    match serde_json::from_slice::<Pipfile>(data) {
        Ok(p) => {
            for (name, e) in p.default {
                if let Some(v) = e.version.as_deref().and_then(|v| v.strip_prefix("==")) {
                    out.packages.push(lang_package(PackageKind::Pypi, &name, v));
                }
            }
        }
        Err(e) => warn(out, Some(e.line()), format!("Pipfile.lock: {e}")),
    }
}

/// The first quoted string on a gemspec line `s.name = "rack".freeze`.
fn quoted(line: &str) -> Option<&str> {
    let q = line.find(['"', '\''])?;
    let quote = line.as_bytes()[q] as char;
    let rest = &line[q + 1..];
    let end = rest.find(quote)?;
    Some(&rest[..end])
}

fn gemspec(text: &str, out: &mut FileResult) {
    let (mut name, mut version, mut license) = (None, None, None);
    for line in text.lines() {
        let t = line.trim();
        if (t.contains(".name = ") || t.contains(".name=")) && name.is_none() {
            name = quoted(t).map(str::to_string);
        } else if (t.contains(".version = ") || t.contains(".version=")) && version.is_none() {
            version = quoted(t).map(str::to_string);
        } else if t.contains(".licenses = ") && license.is_none() {
            license = quoted(t).map(str::to_string);
        }
    }
    match (name, version) {
        (Some(n), Some(v)) => {
            let mut p = lang_package(PackageKind::Gem, &n, &v);
            p.licenses.extend(license);
            out.packages.push(p);
        }
        _ => warn(out, None, "gemspec without name or version".into()),
    }
}

#[derive(Deserialize)]
struct ComposerPackage {
    name: String,
    version: String,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum ComposerFile {
    Lock {
        #[serde(default)]
        packages: Vec<ComposerPackage>,
    },
    List(Vec<ComposerPackage>),
}

fn composer(data: &[u8], out: &mut FileResult) {
    match serde_json::from_slice::<ComposerFile>(data) {
        Ok(f) => {
            let pkgs = match f {
                ComposerFile::Lock { packages } | ComposerFile::List(packages) => packages,
            };
            for p in pkgs {
                let v = p.version.strip_prefix('v').unwrap_or(&p.version);
                out.packages
                    .push(lang_package(PackageKind::Composer, &p.name, v));
            }
        }
        Err(e) => warn(out, Some(e.line()), format!("composer: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(path: &str, text: &str) -> FileResult {
        let mut r = FileResult::default();
        parse(kind(path).expect(path), text.as_bytes(), &mut r);
        r
    }

    fn names(r: &FileResult) -> Vec<(String, String)> {
        let mut v: Vec<(String, String)> = r
            .packages
            .iter()
            .map(|p| (p.name.clone(), p.version.clone()))
            .collect();
        v.sort();
        v
    }

    #[test]
    fn paths_pick_parsers() {
        assert_eq!(
            kind("app/node_modules/lodash/package.json"),
            Some(Kind::NodeModule)
        );
        assert_eq!(
            kind("app/node_modules/@babel/core/package.json"),
            Some(Kind::NodeModule)
        );
        assert_eq!(kind("app/package.json"), None);
        assert_eq!(kind("app/node_modules/lodash/lib/package.json"), None);
        assert_eq!(
            kind("usr/lib/python3/dist-packages/requests-2.28.1.dist-info/METADATA"),
            Some(Kind::PyMetadata)
        );
        assert_eq!(kind("srv/requirements-prod.txt"), Some(Kind::Requirements));
        assert_eq!(
            kind("usr/local/bundle/specifications/rack-2.2.4.gemspec"),
            Some(Kind::Gemspec)
        );
    }

    #[test]
    fn cargo_lock_skips_path_crates() {
        let r = run(
            "Cargo.lock",
            "version = 3\n\n[[package]]\nname = \"app\"\nversion = \"0.1.0\"\n\n[[package]]\nname = \"smallvec\"\nversion = \"1.6.0\"\nsource = \"registry+https://github.com/rust-lang/crates.io-index\"\n",
        );
        assert_eq!(names(&r), [("smallvec".into(), "1.6.0".into())]);
        let bad = run("Cargo.lock", "[[package]]\nname = \n");
        assert_eq!(bad.warnings[0].line, Some(2));
    }

    #[test]
    fn package_lock_v1_and_v3() {
        let v3 = r#"{"lockfileVersion":3,"packages":{"":{"name":"app","dependencies":{"a":"^1"}},
            "node_modules/a":{"version":"1.0.0"},"node_modules/@s/b":{"version":"2.0.0"},
            "node_modules/a/node_modules/c":{"version":"3.0.0"},"node_modules/d":{"version":"4.0.0","dev":true},
            "packages/w":{"version":"0.1.0"},"node_modules/w":{"resolved":"packages/w","link":true}}}"#;
        assert_eq!(
            names(&run("package-lock.json", v3)),
            [
                ("@s/b".into(), "2.0.0".into()),
                ("a".into(), "1.0.0".into()),
                ("c".into(), "3.0.0".into()),
            ]
        );
        let v1 = r#"{"lockfileVersion":1,"dependencies":{"a":{"version":"1.0.0","requires":{"c":"^3"},
            "dependencies":{"c":{"version":"3.0.0"}}},"d":{"version":"4.0.0","dev":true}}}"#;
        assert_eq!(
            names(&run("package-lock.json", v1)),
            [("a".into(), "1.0.0".into()), ("c".into(), "3.0.0".into())]
        );
    }

    #[test]
    fn yarn_v1_and_berry() {
        let v1 = "# yarn lockfile v1\n\n\n\"@babel/code-frame@^7.0.0\", \"@babel/code-frame@^7.10.4\":\n  version \"7.12.13\"\n  resolved \"x\"\n\nlodash@^4.17.0:\n  version \"4.17.20\"\n";
        assert_eq!(
            names(&run("yarn.lock", v1)),
            [
                ("@babel/code-frame".into(), "7.12.13".into()),
                ("lodash".into(), "4.17.20".into())
            ]
        );
        let berry = "__metadata:\n  version: 6\n\n\"lodash@npm:^4.17.0\":\n  version: 4.17.21\n  resolution: \"lodash@npm:4.17.21\"\n\n\"app@workspace:.\":\n  version: 0.0.0-use.local\n";
        assert_eq!(
            names(&run("yarn.lock", berry)),
            [("lodash".into(), "4.17.21".into())]
        );
    }

    #[test]
    fn pnpm_v6_and_v5() {
        let v6 = "lockfileVersion: '6.0'\npackages:\n  /lodash@4.17.20:\n    resolution: {integrity: x}\n  /@types/node@20.1.0(typescript@5.0.0):\n    dev: false\n  /eslint@8.0.0:\n    dev: true\n";
        assert_eq!(
            names(&run("pnpm-lock.yaml", v6)),
            [
                ("@types/node".into(), "20.1.0".into()),
                ("lodash".into(), "4.17.20".into())
            ]
        );
        let v5 = "lockfileVersion: 5.4\npackages:\n  /lodash/4.17.20:\n    dev: false\n";
        assert_eq!(
            names(&run("pnpm-lock.yaml", v5)),
            [("lodash".into(), "4.17.20".into())]
        );
    }

    #[test]
    fn python_files() {
        let m = run(
            "x/Jinja2-2.10.dist-info/METADATA",
            "Metadata-Version: 2.1\nName: Jinja2\nVersion: 2.10\nLicense: BSD\n\nName: not-a-header\n",
        );
        assert_eq!(names(&m), [("Jinja2".into(), "2.10".into())]);
        assert_eq!(m.packages[0].licenses, ["BSD"]);
        assert_eq!(m.packages[0].purl, "pkg:pypi/jinja2@2.10");
        let r = run(
            "requirements.txt",
            "# pins\nflask==0.12.2\nrequests[security]==2.19.0 ; python_version > '3'\nrange>=1.0\n-e git+https://x\n",
        );
        assert_eq!(
            names(&r),
            [
                ("flask".into(), "0.12.2".into()),
                ("requests".into(), "2.19.0".into())
            ]
        );
    }

    #[test]
    fn gemspec_and_composer() {
        let g = run(
            "usr/local/bundle/specifications/rack-2.2.4.gemspec",
            "Gem::Specification.new do |s|\n  s.name = \"rack\".freeze\n  s.version = \"2.2.4\"\n  s.licenses = [\"MIT\".freeze]\nend\n",
        );
        assert_eq!(names(&g), [("rack".into(), "2.2.4".into())]);
        let c = run(
            "app/composer.lock",
            r#"{"packages":[{"name":"monolog/monolog","version":"v2.9.1"}],"packages-dev":[{"name":"phpunit/phpunit","version":"9.0.0"}]}"#,
        );
        assert_eq!(names(&c), [("monolog/monolog".into(), "2.9.1".into())]);
        let i = run(
            "app/vendor/composer/installed.json",
            r#"[{"name":"guzzlehttp/guzzle","version":"7.4.0"}]"#,
        );
        assert_eq!(names(&i), [("guzzlehttp/guzzle".into(), "7.4.0".into())]);
    }
}
