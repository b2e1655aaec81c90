//! Per-file analysers: each looks at one file of one layer (path, mode, contents) and reports
//! what it found. They never see other files, so a layer can be analysed as it streams past and
//! the results merged afterwards by path (the topmost surviving copy of a path wins).

use rampart_event::{Package, PackageKind};
use serde::{Deserialize, Serialize};

mod apk;
mod binary;
mod dpkg;
mod java;
mod lang;
pub(crate) mod malware;
mod os;
mod rpm;
pub(crate) mod secrets;

pub use os::OsRelease;
pub(crate) use os::PATHS as OS_RELEASE_PATHS;

/// A file as an analyser sees it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct FileRef<'a> {
    /// Normalised path relative to the image root.
    pub path: &'a str,
    pub mode: u32,
    pub size: u64,
}

/// Something wrong with a file the scanner read (a package database with a bad line): reported,
/// never fatal, so that one bad file does not hide the rest of the image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Warning {
    /// Path in the image (`var/lib/dpkg/status`).
    pub path: String,
    /// 1-based line, when the problem has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub line: Option<usize>,
    pub message: String,
}

/// What the analysers found in one file.
#[derive(Debug, Clone, Default)]
pub(crate) struct FileResult {
    pub os: Option<OsRelease>,
    /// Packages; `path`, `layer` and `ecosystem` are filled in when the image is assembled.
    pub packages: Vec<Package>,
    pub warnings: Vec<Warning>,
    /// Secrets and malware; path and layer are filled in when the image is assembled.
    pub findings: Vec<crate::finding::Finding>,
}

impl FileResult {
    pub(crate) fn is_empty(&self) -> bool {
        self.os.is_none()
            && self.packages.is_empty()
            && self.warnings.is_empty()
            && self.findings.is_empty()
    }
}

/// Which content checks run on file contents (package analysers always run).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContentChecks {
    /// Look for secrets in files.
    pub secrets: bool,
    /// Run YARA rules (the built-in crypto-miner rules and `yara_files`).
    pub malware: bool,
    /// Extra YARA rule files.
    pub yara_files: Vec<std::path::PathBuf>,
}

impl Default for ContentChecks {
    fn default() -> Self {
        ContentChecks {
            secrets: true,
            malware: true,
            yara_files: Vec::new(),
        }
    }
}

/// The set of analysers run on every file.
#[derive(Debug, Clone, Default)]
pub(crate) struct Analyzers {
    secrets: bool,
    malware: Option<malware::Rules>,
}

impl Analyzers {
    /// Package analysers, secrets and the built-in malware rules.
    pub(crate) fn new() -> Analyzers {
        Analyzers {
            secrets: true,
            // The built-in rules are a constant of this crate, compiled in its tests.
            malware: malware::Rules::compile(&[] as &[&std::path::Path]).ok(),
        }
    }

    pub(crate) fn with(checks: &ContentChecks) -> Result<Analyzers, malware::YaraError> {
        Ok(Analyzers {
            secrets: checks.secrets,
            malware: if checks.malware {
                Some(malware::Rules::compile(&checks.yara_files)?)
            } else {
                None
            },
        })
    }

    /// Whether any analyser wants the contents of `file`. Decided from path, mode and size
    /// alone, so files nobody wants are skipped without reading.
    pub(crate) fn wants(&self, file: &FileRef<'_>) -> bool {
        let p = file.path;
        os::wants(p)
            || dpkg::wants(p)
            || apk::wants(p)
            || rpm::wants(p)
            || lang::kind(p).is_some()
            || java::wants(p)
            || binary::wants(file)
            || (self.secrets && secrets::wants(file))
            || (self.malware.is_some() && malware::wants(file))
    }

    /// Runs every interested analyser on `data`, the whole contents of `file`.
    pub(crate) fn analyze(&self, file: &FileRef<'_>, data: &[u8]) -> FileResult {
        let mut out = FileResult::default();
        let p = file.path;
        if os::wants(p) {
            out.os = os::parse(data);
        } else if dpkg::wants(p) {
            dpkg::parse(data, &mut out);
        } else if apk::wants(p) {
            apk::parse(data, &mut out);
        } else if rpm::wants(p) {
            rpm::parse(p, data, &mut out);
        } else if let Some(k) = lang::kind(p) {
            lang::parse(k, data, &mut out);
        } else if java::wants(p) {
            java::parse(data, &mut out);
        } else if binary::wants(file) {
            binary::parse(data, &mut out);
        }
        if self.secrets && secrets::wants(file) {
            secrets::scan(p, data, &mut out);
        }
        if let Some(rules) = self.malware.as_ref().filter(|_| malware::wants(file)) {
            rules.scan(data, &mut out);
        }
        out
    }
}

/// A language package with its purl; path, layer and ecosystem are set when the image is
/// assembled.
pub(crate) fn lang_package(kind: PackageKind, name: &str, version: &str) -> Package {
    Package {
        kind,
        name: name.to_string(),
        version: version.to_string(),
        ecosystem: String::new(),
        source_name: None,
        source_version: None,
        arch: None,
        licenses: Vec::new(),
        purl: crate::purl::lang_purl(kind, name, version),
        path: String::new(),
        layer: None,
        locations: Vec::new(),
    }
}

/// The last component of a path.
pub(crate) fn path_name(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}
