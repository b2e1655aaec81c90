//! Per-file analysers: each looks at one file of one layer (path, mode, contents) and reports
//! what it found. They never see other files, so a layer can be analysed as it streams past and
//! the results merged afterwards by path (the topmost surviving copy of a path wins).

use rampart_event::Package;
use serde::{Deserialize, Serialize};

mod apk;
mod dpkg;
mod os;
mod rpm;

pub use os::OsRelease;
pub(crate) use os::PATHS as OS_RELEASE_PATHS;

/// A file as an analyser sees it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct FileRef<'a> {
    /// Normalised path relative to the image root.
    pub path: &'a str,
    #[allow(dead_code, reason = "used by the content analysers (next steps)")]
    pub mode: u32,
    #[allow(dead_code, reason = "used by the content analysers (next steps)")]
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
}

impl FileResult {
    pub(crate) fn is_empty(&self) -> bool {
        self.os.is_none() && self.packages.is_empty() && self.warnings.is_empty()
    }
}

/// The set of analysers run on every file.
#[derive(Debug, Clone, Default)]
pub(crate) struct Analyzers {}

impl Analyzers {
    pub(crate) fn new() -> Analyzers {
        Analyzers {}
    }

    /// Whether any analyser wants the contents of `file`. Decided from path, mode and size
    /// alone, so files nobody wants are skipped without reading.
    pub(crate) fn wants(&self, file: &FileRef<'_>) -> bool {
        let p = file.path;
        os::wants(p) || dpkg::wants(p) || apk::wants(p) || rpm::wants(p)
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
        }
        out
    }
}
