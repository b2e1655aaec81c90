//! One scan, end to end: inventory (from the cache when the image is unchanged), matching,
//! report.

use crate::cache::InventoryCache;
use crate::db::{DbError, VulnDb};
use crate::image::{ImageError, ImageReader, Progress, Target};
use crate::matcher::{match_inventory, MatchReport};
use crate::report::{DbInfo, ScanReport};

/// Why a scan failed.
#[derive(Debug, thiserror::Error)]
pub enum ScanError {
    #[error(transparent)]
    Image(#[from] ImageError),
    #[error(transparent)]
    Db(#[from] DbError),
}

/// How to scan.
#[derive(Debug, Clone)]
pub struct ScanOptions {
    /// Inventories by image id; `None` reads every image in full.
    pub cache: Option<InventoryCache>,
    /// Ignore a cached inventory (it is still replaced by the fresh one).
    pub refresh: bool,
}

use rampart_event::now_ns;

/// Scans `target`: reads it (or takes its inventory from the cache), matches it against `db`
/// when given.
pub fn scan(
    reader: &ImageReader,
    target: &Target,
    db: Option<&VulnDb>,
    opts: &ScanOptions,
    progress: &dyn Progress,
) -> Result<ScanReport, ScanError> {
    let mut cached = None;
    if let (Some(cache), false) = (&opts.cache, opts.refresh) {
        if let Some(id) = reader.identify(target)? {
            cached = cache.get(&id);
        }
    }
    let was_cached = cached.is_some();
    let mut inventory = match cached {
        Some(inv) => inv,
        None => {
            let inv = reader.read(target, progress)?;
            if let Some(cache) = &opts.cache {
                // A cache that cannot be written costs speed, not correctness.
                let _ = cache.put(&inv);
            }
            inv
        }
    };
    // A cached inventory keeps the name it was first scanned under; report this one.
    inventory.image.target = target.display();
    let matches = match db {
        Some(db) => {
            progress.begin("matching", None);
            let m = match_inventory(db, &inventory, now_ns())?;
            progress.end();
            m
        }
        None => MatchReport::default(),
    };
    let db_info = match db {
        Some(db) => {
            let updated_at = db.updated_at()?;
            let age_secs = updated_at.map(|t| crate::db::now_secs() - t);
            Some(DbInfo {
                path: db.path().display().to_string(),
                revision: db.revision()?,
                updated_at,
                age_secs,
                stale: age_secs.is_none_or(|a| a > crate::DEFAULT_STALE_AFTER.as_secs() as i64),
            })
        }
        None => None,
    };
    Ok(ScanReport {
        inventory,
        matches,
        cached: was_cached,
        db: db_info,
        not_matched: None,
    })
}
