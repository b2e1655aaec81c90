//! The scan cache: inventories by image id, so scanning an unchanged image does not read its
//! layers again, and a database update only re-runs matching.
//!
//! One file per image, `<dir>/<hex of the image id>.json`, holding the [`Inventory`]; an entry
//! written by another scanner version or inventory format is ignored (and replaced). Writes go
//! to a temporary file renamed into place, so a crash never leaves a half entry. Only images with
//! an id (daemon images, archives, OCI layouts) are cached; a directory or a container can change
//! under the same name.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use crate::inventory::{Inventory, INVENTORY_FORMAT};

/// Where cached inventories live unless told otherwise.
pub const DEFAULT_CACHE_DIR: &str = "/var/cache/rampart/scan";

/// A directory of cached inventories.
#[derive(Debug, Clone)]
pub struct InventoryCache {
    dir: PathBuf,
}

fn key(image_id: &str) -> Option<String> {
    let hex = image_id.strip_prefix("sha256:")?;
    (hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit())).then(|| hex.to_string())
}

impl InventoryCache {
    pub fn new(dir: impl Into<PathBuf>) -> InventoryCache {
        InventoryCache { dir: dir.into() }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The cached inventory of `image_id`, when there is a current one.
    pub fn get(&self, image_id: &str) -> Option<Inventory> {
        let k = key(image_id)?;
        let data = fs::read(self.dir.join(format!("{k}.json"))).ok()?;
        let inv: Inventory = serde_json::from_slice(&data).ok()?;
        (inv.format == INVENTORY_FORMAT
            && inv.scanner_version == env!("CARGO_PKG_VERSION")
            && inv.image.id.as_deref() == Some(image_id))
        .then_some(inv)
    }

    /// Stores `inv` under its image id; images without an id are not cached (returns false).
    pub fn put(&self, inv: &Inventory) -> io::Result<bool> {
        let Some(k) = inv.image.id.as_deref().and_then(key) else {
            return Ok(false);
        };
        fs::create_dir_all(&self.dir)?;
        let tmp = self.dir.join(format!(".{k}.{}.tmp", std::process::id()));
        fs::write(&tmp, serde_json::to_vec(inv).map_err(io::Error::other)?)?;
        fs::rename(&tmp, self.dir.join(format!("{k}.json")))?;
        Ok(true)
    }
}
