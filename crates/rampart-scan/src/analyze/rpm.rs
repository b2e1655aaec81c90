//! RPM packages from the SQLite rpmdb (`var/lib/rpm/rpmdb.sqlite`, RHEL/Rocky/Alma 9, Fedora;
//! `usr/lib/sysimage/rpm/rpmdb.sqlite`, newer Fedora and openSUSE).
//!
//! The database is opened from memory (never written to disk), read-only, with SQLite's
//! defensive mode on and untrusted schema: a hostile database can make the query fail, not run
//! code. Each row of `Packages` is an RPM header blob, parsed here with bounds checks:
//!
//! ```text
//! be32 il (index entries), be32 dl (data bytes),
//! il x { be32 tag, be32 type, be32 offset, be32 count }, dl bytes of data
//! ```
//!
//! Tags read: NAME 1000, VERSION 1001, RELEASE 1002, EPOCH 1003, LICENSE 1014, ARCH 1022,
//! SOURCERPM 1044.
//!
//! The Berkeley DB `Packages` of RHEL/CentOS 7 and 8 and Amazon Linux 2 (`var/lib/rpm/Packages`)
//! is read too: a BDB hash database whose values are the same header blobs. Its pages are walked
//! directly (no libdb): the metadata page (magic 0x061561, page size, last page), hash pages
//! (`P_HASH`, `P_HASH_UNSORTED`) whose items alternate key and value, values stored inline
//! (`H_KEYDATA`) or in chains of overflow pages (`H_OFFPAGE`). Written here because the format is
//! small and fixed and the alternative is a C library; every offset is bounds-checked.

use rampart_event::{Package, PackageKind};
use rusqlite::{Connection, OpenFlags};

use super::{FileResult, Warning};

pub(crate) fn wants(path: &str) -> bool {
    matches!(
        path,
        "var/lib/rpm/rpmdb.sqlite"
            | "usr/lib/sysimage/rpm/rpmdb.sqlite"
            | "var/lib/rpm/Packages"
            | "usr/lib/sysimage/rpm/Packages"
    )
}

const TAG_NAME: u32 = 1000;
const TAG_VERSION: u32 = 1001;
const TAG_RELEASE: u32 = 1002;
const TAG_EPOCH: u32 = 1003;
const TAG_LICENSE: u32 = 1014;
const TAG_ARCH: u32 = 1022;
const TAG_SOURCERPM: u32 = 1044;

const TYPE_INT32: u32 = 4;
const TYPE_STRING: u32 = 6;
const TYPE_I18NSTRING: u32 = 9;

/// rpm's own sanity limits (`hdrchkTags`, `hdrchkData`).
const MAX_TAGS: u32 = 0xffff;
const MAX_DATA: u32 = 0x0fff_ffff;

fn be32(b: &[u8], at: usize) -> Option<u32> {
    let s = b.get(at..at + 4)?;
    Some(u32::from_be_bytes([s[0], s[1], s[2], s[3]]))
}

/// The fields of one header blob the scanner uses.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Header {
    pub name: Option<String>,
    pub version: Option<String>,
    pub release: Option<String>,
    pub epoch: Option<u32>,
    pub arch: Option<String>,
    pub license: Option<String>,
    pub sourcerpm: Option<String>,
}

/// Parses a header blob; `Err` names what is wrong.
pub(crate) fn parse_header(blob: &[u8]) -> Result<Header, String> {
    let il = be32(blob, 0).ok_or("header shorter than 8 bytes")?;
    let dl = be32(blob, 4).ok_or("header shorter than 8 bytes")?;
    if il == 0 || il > MAX_TAGS || dl > MAX_DATA {
        return Err(format!("implausible header: {il} tags, {dl} data bytes"));
    }
    let data_start = 8 + 16 * il as usize;
    let data = blob
        .get(data_start..data_start + dl as usize)
        .ok_or("header truncated")?;
    let string_at = |off: usize| -> Option<String> {
        let rest = data.get(off..)?;
        let end = rest.iter().position(|b| *b == 0)?;
        Some(String::from_utf8_lossy(&rest[..end]).into_owned())
    };
    let mut h = Header::default();
    for i in 0..il as usize {
        let e = 8 + 16 * i;
        let (Some(tag), Some(ty), Some(off)) =
            (be32(blob, e), be32(blob, e + 4), be32(blob, e + 8))
        else {
            return Err("index truncated".into());
        };
        let off = off as usize;
        if off >= data.len() {
            continue; // region trailers point past the data; nothing we read does
        }
        let text = || {
            if ty == TYPE_STRING || ty == TYPE_I18NSTRING {
                string_at(off)
            } else {
                None
            }
        };
        match tag {
            TAG_NAME => h.name = text(),
            TAG_VERSION => h.version = text(),
            TAG_RELEASE => h.release = text(),
            TAG_ARCH => h.arch = text(),
            TAG_LICENSE => h.license = text(),
            TAG_SOURCERPM => h.sourcerpm = text(),
            TAG_EPOCH if ty == TYPE_INT32 => h.epoch = be32(data, off),
            _ => {}
        }
    }
    Ok(h)
}

/// `openssl-3.0.7-24.el9.src.rpm` -> `openssl`.
fn source_name(sourcerpm: &str) -> Option<String> {
    let base = sourcerpm
        .strip_suffix(".src.rpm")
        .or_else(|| sourcerpm.strip_suffix(".nosrc.rpm"))?;
    let (rest, _release) = base.rsplit_once('-')?;
    let (name, _version) = rest.rsplit_once('-')?;
    Some(name.to_string())
}

fn warn(out: &mut FileResult, message: String) {
    out.warnings.push(Warning {
        path: String::new(),
        line: None,
        message,
    });
}

pub(crate) fn parse(path: &str, data: &[u8], out: &mut FileResult) {
    if path.ends_with("/Packages") {
        match bdb_values(data) {
            Ok(values) => {
                for (i, blob) in values.iter().enumerate() {
                    // The record with key 0 is rpm's instance counter, not a header.
                    if blob.len() < 16 {
                        continue;
                    }
                    add_header(i as i64, blob, out);
                }
            }
            Err(e) => warn(out, format!("Berkeley DB rpm database: {e}")),
        }
        return;
    }
    if let Err(e) = read_sqlite(data, out) {
        warn(out, format!("rpm database: {e}"));
    }
}

const BDB_HASH_MAGIC: u32 = 0x0006_1561;
const P_HASH_UNSORTED: u8 = 2;
const P_OVERFLOW: u8 = 7;
const P_HASH: u8 = 13;
const H_KEYDATA: u8 = 1;
const H_OFFPAGE: u8 = 3;
/// Largest value read from a database (rpm headers are far smaller).
const MAX_VALUE: usize = 64 << 20;

/// The values of a Berkeley DB hash database, in page order.
pub(crate) fn bdb_values(db: &[u8]) -> Result<Vec<Vec<u8>>, String> {
    let le = |at: usize| -> Option<u32> {
        db.get(at..at + 4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    };
    let magic = le(12).ok_or("shorter than a metadata page")?;
    let big = if magic == BDB_HASH_MAGIC {
        false
    } else if magic.swap_bytes() == BDB_HASH_MAGIC {
        true
    } else {
        return Err(format!(
            "not a Berkeley DB hash database (magic {magic:#x})"
        ));
    };
    let u32_at = |at: usize| -> Option<u32> {
        let b = db.get(at..at + 4)?;
        let b = [b[0], b[1], b[2], b[3]];
        Some(if big {
            u32::from_be_bytes(b)
        } else {
            u32::from_le_bytes(b)
        })
    };
    let u16_at = |at: usize| -> Option<u16> {
        let b = db.get(at..at + 2)?;
        Some(if big {
            u16::from_be_bytes([b[0], b[1]])
        } else {
            u16::from_le_bytes([b[0], b[1]])
        })
    };
    let page_size = u32_at(20).ok_or("truncated metadata")? as usize;
    if !(512..=65536).contains(&page_size) || !page_size.is_power_of_two() {
        return Err(format!("implausible page size {page_size}"));
    }
    let last = u32_at(32).ok_or("truncated metadata")? as usize;
    let pages = (db.len() / page_size).min(last + 1);
    let mut values = Vec::new();
    for pgno in 1..pages {
        let base = pgno * page_size;
        let page = &db[base..base + page_size];
        let ptype = page[25];
        if ptype != P_HASH && ptype != P_HASH_UNSORTED {
            continue;
        }
        let entries = usize::from(u16_at(base + 20).ok_or("truncated page")?);
        let offsets: Vec<usize> = (0..entries)
            .map(|i| u16_at(base + 26 + 2 * i).map(usize::from))
            .collect::<Option<_>>()
            .ok_or("truncated page index")?;
        // Items alternate key, value; values have odd indexes.
        for i in (1..entries).step_by(2) {
            let start = offsets[i];
            let end = offsets[i - 1].min(page_size);
            let item = page
                .get(start..end.max(start))
                .filter(|x| !x.is_empty())
                .ok_or_else(|| format!("page {pgno}: item {i} out of the page"))?;
            match item[0] {
                H_KEYDATA => values.push(item[1..].to_vec()),
                H_OFFPAGE => {
                    let first = u32_at(base + start + 4).ok_or("truncated overflow item")? as usize;
                    let total = u32_at(base + start + 8).ok_or("truncated overflow item")? as usize;
                    if total > MAX_VALUE {
                        return Err(format!("page {pgno}: value of {total} bytes"));
                    }
                    let mut value = Vec::with_capacity(total);
                    let mut next = first;
                    let mut hops = 0usize;
                    while next != 0 && value.len() < total {
                        hops += 1;
                        if hops > pages {
                            return Err(format!("page {pgno}: overflow chain loops"));
                        }
                        let ob = next * page_size;
                        let opage = db
                            .get(ob..ob + page_size)
                            .ok_or_else(|| format!("overflow page {next} past the end"))?;
                        if opage[25] != P_OVERFLOW {
                            return Err(format!("page {next} is not an overflow page"));
                        }
                        let len = usize::from(u16_at(ob + 22).ok_or("truncated overflow page")?);
                        let chunk = opage
                            .get(26..26 + len)
                            .ok_or_else(|| format!("overflow page {next}: bad length {len}"))?;
                        value.extend_from_slice(chunk);
                        next = u32_at(ob + 16).ok_or("truncated overflow page")? as usize;
                    }
                    value.truncate(total);
                    values.push(value);
                }
                _ => {} // duplicates are not used by rpm's Packages
            }
        }
    }
    Ok(values)
}

/// Adds the package of one header blob (`hnum` names it in warnings).
fn add_header(hnum: i64, blob: &[u8], out: &mut FileResult) {
    match parse_header(blob) {
        Ok(h) => {
            let (Some(name), Some(version)) = (h.name, h.version) else {
                warn(out, format!("rpm header {hnum}: no name or version"));
                return;
            };
            if name == "gpg-pubkey" {
                return; // imported signing keys, not software
            }
            let mut v = String::new();
            if let Some(e) = h.epoch {
                v.push_str(&format!("{e}:"));
            }
            v.push_str(&version);
            if let Some(r) = h.release.filter(|r| !r.is_empty()) {
                v.push('-');
                v.push_str(&r);
            }
            out.packages.push(Package {
                kind: PackageKind::Rpm,
                source_name: h
                    .sourcerpm
                    .as_deref()
                    .and_then(source_name)
                    .filter(|s| *s != name),
                source_version: None,
                name,
                version: v,
                ecosystem: String::new(),
                arch: h.arch,
                licenses: h.license.into_iter().collect(),
                purl: String::new(),
                path: String::new(),
                layer: None,
                locations: Vec::new(),
            });
        }
        Err(e) => warn(out, format!("rpm header {hnum}: {e}")),
    }
}

fn read_sqlite(data: &[u8], out: &mut FileResult) -> Result<(), rusqlite::Error> {
    let mut db = Connection::open_with_flags(
        ":memory:",
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    db.set_db_config(rusqlite::config::DbConfig::SQLITE_DBCONFIG_DEFENSIVE, true)?;
    db.set_db_config(
        rusqlite::config::DbConfig::SQLITE_DBCONFIG_TRUSTED_SCHEMA,
        false,
    )?;
    // SQLite cannot deserialize a database in WAL mode (rpm's default); bytes 18 and 19 are
    // the read/write format versions, 1 = rollback journal, as the SQLite docs advise. rpm
    // checkpoints its WAL when it closes the database, so the main file is complete.
    let mut data = data.to_vec();
    if data.len() > 19 && data[18] == 2 && data[19] == 2 {
        data[18] = 1;
        data[19] = 1;
    }
    db.deserialize_read_exact(rusqlite::MAIN_DB, &data[..], data.len(), true)?;
    let mut stmt = db.prepare("SELECT hnum, blob FROM Packages")?;
    let rows = stmt.query_map([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, Vec<u8>>(1)?)))?;
    for row in rows {
        let (hnum, blob) = row?;
        add_header(hnum, &blob, out);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn source_names() {
        assert_eq!(
            source_name("openssl-3.0.7-24.el9.src.rpm").as_deref(),
            Some("openssl")
        );
        assert_eq!(
            source_name("python-setuptools-53.0.0-12.el9.src.rpm").as_deref(),
            Some("python-setuptools")
        );
        assert_eq!(source_name("junk"), None);
    }

    #[test]
    fn hostile_headers_are_errors() {
        assert!(parse_header(&[0, 0]).is_err());
        assert!(parse_header(&[0xff, 0xff, 0xff, 0xff, 0, 0, 0, 1]).is_err());
        // One tag claiming data beyond the blob.
        let mut b = vec![0, 0, 0, 1, 0, 0, 0, 100];
        b.extend_from_slice(&[0, 0, 3, 232, 0, 0, 0, 6, 0, 0, 0, 0, 0, 0, 0, 1]);
        assert!(parse_header(&b).is_err());
    }

    #[test]
    fn bdb_garbage_is_an_error() {
        assert!(bdb_values(b"short").is_err());
        let mut page = vec![0u8; 4096];
        page[12..16].copy_from_slice(&0x0006_1561u32.to_le_bytes());
        page[20..24].copy_from_slice(&3u32.to_le_bytes()); // page size 3
        assert!(bdb_values(&page).is_err());
    }

    #[test]
    fn garbage_database_is_a_warning() {
        let mut r = FileResult::default();
        parse("var/lib/rpm/rpmdb.sqlite", b"not a database at all", &mut r);
        assert!(r.packages.is_empty());
        assert_eq!(r.warnings.len(), 1);
    }
}
