//! Process memory in a bundle: the readable regions of `/proc/PID/maps`, read through
//! `/proc/PID/mem`, writable regions first (heap, stack, anonymous mappings: where a miner
//! keeps its wallet and pool), then the read-only ones while the budget lasts.
//!
//! Entries: `memory/<pid>/<start>-<end>.bin`, one per region captured (a region cut by the
//! budget holds its first bytes). The manifest's `memory` lists every region of the process:
//! address range, permissions, offset, mapped file, what was captured and its SHA-256, or why
//! nothing was (no read permission, the kernel refused the read, the budget was spent).
//!
//! The capture is consistent when the process does not run while it is read: the caller
//! freezes the container first (see [`super::capture_with`]).

use std::os::unix::fs::FileExt;

use serde::{Deserialize, Serialize};

use super::{ForensicsError, Writer};

/// One mapping of a process and what the bundle holds of it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct MemoryRegion {
    /// Start address, hex as in /proc/PID/maps.
    pub start: String,
    /// End address (exclusive), hex.
    pub end: String,
    /// `rw-p`, `r-xp`, ...
    pub perms: String,
    /// Offset in the mapped file, hex.
    pub offset: String,
    /// The mapped file, or `[heap]`, `[stack]`, ... (empty: anonymous).
    pub path: String,
    /// The region's size.
    pub size: u64,
    /// Bytes stored (its first bytes; less than `size` when cut).
    pub captured: u64,
    /// `captured`, `cut` (the budget or a failed read ended it), `unreadable` (no read
    /// permission, or the kernel refused the read), `limit` (the budget was spent before it).
    pub status: String,
    /// The bundle entry holding the bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entry: Option<String>,
    /// SHA-256 of the bytes stored, hex.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// Why it was not read, or where a read stopped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The memory of one process in a bundle.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ProcessMemory {
    pub pid: u32,
    pub name: String,
    /// The container was frozen while the memory was read.
    pub frozen: bool,
    /// Bytes stored over all regions.
    pub captured_bytes: u64,
    /// Regions that could not be read (no read permission, or the read failed).
    pub unreadable: usize,
    /// Regions left out or cut because the budget was spent.
    pub over_limit: usize,
    /// Why the process's memory could not be read at all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub regions: Vec<MemoryRegion>,
}

/// A line of /proc/PID/maps: `start-end perms offset dev inode [path]`.
fn parse_maps_line(line: &str) -> Option<(u64, u64, MemoryRegion)> {
    let mut it = line.splitn(6, ' ');
    let range = it.next()?;
    let perms = it.next()?;
    let offset = it.next()?;
    let _dev = it.next()?;
    let _inode = it.next()?;
    let path = it.next().unwrap_or("").trim_start();
    let (a, b) = range.split_once('-')?;
    let start = u64::from_str_radix(a, 16).ok()?;
    let end = u64::from_str_radix(b, 16).ok()?;
    if end < start || perms.len() != 4 {
        return None;
    }
    Some((
        start,
        end,
        MemoryRegion {
            start: a.to_string(),
            end: b.to_string(),
            perms: perms.to_string(),
            offset: offset.to_string(),
            path: path.to_string(),
            size: end - start,
            captured: 0,
            status: String::new(),
            entry: None,
            sha256: None,
            error: None,
        },
    ))
}

/// Bytes read from /proc/PID/mem per call.
const READ_PIECE: usize = 1 << 20;

/// Stores the readable memory of `pid` in `w`, at most `*budget` bytes (lowered by what was
/// stored). Never fails for the process's sake (a process that exited is recorded with its
/// error); only a failed write of the bundle is an error.
pub(super) fn capture_process(
    w: &mut Writer,
    pid: u32,
    frozen: bool,
    budget: &mut u64,
) -> Result<ProcessMemory, ForensicsError> {
    let name = std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .map(|s| s.trim().to_string())
        .unwrap_or_default();
    let mut out = ProcessMemory {
        pid,
        name,
        frozen,
        captured_bytes: 0,
        unreadable: 0,
        over_limit: 0,
        error: None,
        regions: Vec::new(),
    };
    let maps = match std::fs::read_to_string(format!("/proc/{pid}/maps")) {
        Ok(m) => m,
        Err(e) => {
            out.error = Some(format!("/proc/{pid}/maps: {e}"));
            return Ok(out);
        }
    };
    let mem = match std::fs::File::open(format!("/proc/{pid}/mem")) {
        Ok(f) => Some(f),
        Err(e) => {
            out.error = Some(format!("/proc/{pid}/mem: {e}"));
            None
        }
    };
    let mut regions: Vec<(u64, u64, MemoryRegion)> =
        maps.lines().filter_map(parse_maps_line).collect();
    // Writable first: what the process made (heap, stack, anonymous), then what it mapped.
    let order: Vec<usize> = {
        let mut idx: Vec<usize> = (0..regions.len()).collect();
        idx.sort_by_key(|&i| !regions[i].2.perms.contains('w'));
        idx
    };
    for i in order {
        let (start, end, r) = &mut regions[i];
        if !r.perms.starts_with('r') {
            r.status = "unreadable".into();
            r.error = Some("no read permission".into());
            out.unreadable += 1;
            continue;
        }
        let Some(mem) = &mem else {
            r.status = "unreadable".into();
            out.unreadable += 1;
            continue;
        };
        if *budget == 0 {
            r.status = "limit".into();
            out.over_limit += 1;
            continue;
        }
        let want = (*end - *start).min(*budget);
        let mut data: Vec<u8> = Vec::new();
        let mut stopped: Option<String> = None;
        while (data.len() as u64) < want {
            let piece = (want - data.len() as u64).min(READ_PIECE as u64) as usize;
            let at = *start + data.len() as u64;
            let old = data.len();
            data.resize(old + piece, 0);
            match mem.read_at(&mut data[old..], at) {
                Ok(0) => {
                    data.truncate(old);
                    stopped = Some(format!("no data at {at:x}"));
                    break;
                }
                Ok(n) => data.truncate(old + n),
                Err(e) => {
                    data.truncate(old);
                    stopped = Some(format!("reading at {at:x}: {e}"));
                    break;
                }
            }
        }
        if data.is_empty() {
            r.status = "unreadable".into();
            r.error = stopped;
            out.unreadable += 1;
            continue;
        }
        let entry = format!("memory/{pid}/{}-{}.bin", r.start, r.end);
        w.add(&entry, &data)?;
        r.sha256 = w.entries.last().map(|e| e.sha256.clone());
        r.entry = Some(entry);
        r.captured = data.len() as u64;
        *budget -= r.captured;
        out.captured_bytes += r.captured;
        if r.captured < r.size {
            r.status = "cut".into();
            if stopped.is_none() {
                out.over_limit += 1;
                stopped = Some(format!(
                    "cut to {} of {} bytes by limits.max_memory_bytes",
                    r.captured, r.size
                ));
            } else {
                out.unreadable += 1;
            }
            r.error = stopped;
        } else {
            r.status = "captured".into();
        }
    }
    out.regions = regions.into_iter().map(|(_, _, r)| r).collect();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_lines_parse_with_and_without_paths() {
        let (s, e, r) =
            parse_maps_line("55d0c0a00000-55d0c0a21000 rw-p 00000000 00:00 0          [heap]")
                .expect("heap");
        assert_eq!((s, e), (0x55d0c0a00000, 0x55d0c0a21000));
        assert_eq!(r.path, "[heap]");
        assert_eq!(r.perms, "rw-p");
        let (_, _, r) = parse_maps_line("7f00-8f00 rw-p 00000000 00:00 0").expect("anon");
        assert_eq!(r.path, "");
        let (_, _, r) = parse_maps_line(
            "7f00-8f00 r-xp 00001000 fd:01 1234                       /usr/lib/with space.so",
        )
        .expect("file");
        assert_eq!(r.path, "/usr/lib/with space.so");
        assert!(parse_maps_line("garbage").is_none());
        assert!(parse_maps_line("9-1 rw-p 0 0 0").is_none());
    }
}
