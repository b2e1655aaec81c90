//! What an image contains, as the scanner read it: the input of vulnerability matching, SBOM
//! generation and the content checks, and what the scan cache stores per image.

use rampart_event::Package;
use serde::{Deserialize, Serialize};

use crate::analyze::{OsRelease, Warning};
use crate::finding::Finding;
use crate::image::ImageInfo;

/// Version of the inventory format; a cached inventory of another version is re-read.
pub const INVENTORY_FORMAT: u32 = 3;

/// Everything read from one image.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Inventory {
    /// [`INVENTORY_FORMAT`] when written.
    pub format: u32,
    /// Version of the scanner that read it.
    pub scanner_version: String,
    pub image: ImageInfo,
    /// The operating system, when the image has an os-release file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub os: Option<OsRelease>,
    /// Packages, sorted by kind, name, version and path; each names its file and layer.
    pub packages: Vec<Package>,
    /// Secrets, malware, file modes, configuration and minimality findings, most severe first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub findings: Vec<Finding>,
    /// Problems met while reading files (a bad line in a package database, a file too large to
    /// inspect): the scan went on without that part.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<Warning>,
}
