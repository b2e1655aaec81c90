//! The durable on-disk queue between the agent's pipeline and its outputs.
//!
//! Every record the agent produces is appended here first; each output reads the queue with its
//! own cursor and acknowledges what it delivered; a segment file is deleted once every output
//! has acknowledged all of its records. The queue is therefore the only local copy of the data,
//! and it is gone once delivered.
//!
//! # Guarantees
//! * When [`Queue::append`] returns, the accepted records are in the operating system: they
//!   survive the agent being killed (`SIGKILL`). They survive power loss once fsynced: at once
//!   with `fsync: batch`, within the configured interval otherwise.
//! * A record is delivered to each output at least once; after a crash, records after the last
//!   acknowledged one are delivered again (stable event ids make that idempotent at the server).
//! * A damaged record or segment never stops delivery: the reader skips to the next valid record,
//!   and the loss (records and bytes) is counted, logged and reported ([`LossReport`]).
//! * With `overflow: drop_newest` a full queue refuses new records and counts each one; with
//!   `overflow: block` the producer waits until outputs free space.
//!
//! # On-disk format, version 1
//! A queue is a directory (mode 0700) holding:
//!
//! | file | content |
//! |---|---|
//! | `FORMAT` | the text `rampart-queue 1\n`: the directory layout version |
//! | `LOCK` | `flock`ed by the process that has the queue open |
//! | `seg-<first seq, 20 digits>.rq` | a segment: a header, then records |
//! | `cursor.<output>` | the acknowledged position of one output |
//! | `queue.key` | optional: the encryption key, when the configuration names this path |
//!
//! All integers are little-endian unless stated otherwise.
//!
//! **Segment header** (32 bytes):
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 8 | magic `RMPQSEG\0` |
//! | 8 | 2 | segment format version (1) |
//! | 10 | 2 | flags; bit 0: payloads are encrypted |
//! | 12 | 4 | salt: random per segment, the nonce prefix of its encrypted records |
//! | 16 | 8 | sequence number of the segment's first record |
//! | 24 | 4 | reserved, zero |
//! | 28 | 4 | CRC-32 (IEEE) of bytes 0..28 |
//!
//! **Record** (24-byte header, then the payload):
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 4 | payload length `n` (at most 16 MiB) |
//! | 4 | 4 | CRC-32 (IEEE) of bytes 8..24+n |
//! | 8 | 8 | sequence number: +1 per record across the whole queue, never reused within a segment |
//! | 16 | 8 | append time, Unix milliseconds |
//! | 24 | n | payload: one record as UTF-8 JSON; when encrypted, its ChaCha20-Poly1305 ciphertext and 16-byte tag, nonce = salt (4 bytes, big-endian) ‖ sequence number (8 bytes, big-endian), additional data = bytes 8..24 |
//!
//! **Cursor** (16 bytes): magic `RQC1`, the next sequence number the output has not
//! acknowledged (u64), CRC-32 of bytes 0..12. Written to a temporary file, fsynced and renamed.
//!
//! Sequence numbers rise across segments; a segment's records all have sequence numbers below
//! the next segment's first. A process that opens the queue never appends to an existing
//! segment: it starts a new one, so a torn tail left by a crash stays behind a segment boundary.
//! A reader accepts any version listed in `READABLE_SEGMENT_VERSIONS`; a future version 2 must
//! keep reading version 1 segments so an upgrade does not strand queued records.

mod format;

use std::collections::{BTreeMap, HashSet};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use ring::aead;
use ring::rand::SecureRandom;
use serde::Deserialize;

use format::{
    RecordHeader, SegmentHeader, AEAD_TAG_LEN, FLAG_ENCRYPTED, MAX_PAYLOAD, RECORD_HEADER_LEN,
    SEGMENT_HEADER_LEN, SEGMENT_VERSION,
};

/// The directory layout version written to `FORMAT`.
pub const QUEUE_FORMAT_VERSION: u32 = 1;
const FORMAT_FILE: &str = "FORMAT";

/// When appended records are fsynced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FsyncPolicy {
    /// After every [`Queue::append`] call (`fsync: batch`).
    EveryBatch,
    /// At most this long after a record was appended (`fsync: 200ms`).
    Interval(Duration),
}

impl<'de> Deserialize<'de> for FsyncPolicy {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        if s == "batch" {
            return Ok(FsyncPolicy::EveryBatch);
        }
        humantime::parse_duration(&s)
            .map(FsyncPolicy::Interval)
            .map_err(|e| {
                serde::de::Error::custom(format!(
                    "fsync {s:?}: expected `batch` or a duration such as `200ms` ({e})"
                ))
            })
    }
}

/// What a full queue does with a new record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OverflowPolicy {
    /// The producer waits until outputs have delivered enough to make room.
    Block,
    /// The new record is dropped, counted in `rampart_ship_dropped_total` and reported.
    DropNewest,
}

fn default_max_bytes() -> u64 {
    1 << 30
}
fn default_segment_bytes() -> u64 {
    32 << 20
}
fn default_fsync() -> FsyncPolicy {
    FsyncPolicy::Interval(Duration::from_millis(200))
}
fn default_overflow() -> OverflowPolicy {
    OverflowPolicy::DropNewest
}

/// `queue:` in the agent configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueueConfig {
    /// The queue directory (created 0700 when missing).
    pub dir: PathBuf,
    /// Disk cap: the queue never holds more than this many bytes of segments (default 1 GiB).
    #[serde(default = "default_max_bytes")]
    pub max_bytes: u64,
    /// Size at which a new segment is started (default 32 MiB; at most a quarter of
    /// `max_bytes`).
    #[serde(default = "default_segment_bytes")]
    pub segment_bytes: u64,
    /// `batch` (fsync after every append) or a duration (default `200ms`).
    #[serde(default = "default_fsync")]
    pub fsync: FsyncPolicy,
    /// `drop_newest` (default: the agent never stalls; loss is counted and reported) or `block`.
    #[serde(default = "default_overflow")]
    pub overflow: OverflowPolicy,
    /// Encrypt records at rest with the 32-byte key in this file (created 0600 with a random
    /// key when missing). Keep it off the queue's disk if the threat is a stolen disk.
    #[serde(default)]
    pub encryption_key_file: Option<PathBuf>,
}

impl QueueConfig {
    /// A configuration with the defaults for `dir`.
    pub fn new(dir: impl Into<PathBuf>) -> QueueConfig {
        QueueConfig {
            dir: dir.into(),
            max_bytes: default_max_bytes(),
            segment_bytes: default_segment_bytes(),
            fsync: default_fsync(),
            overflow: default_overflow(),
            encryption_key_file: None,
        }
    }
}

/// Errors of the queue. Every variant names the file it concerns.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum QueueError {
    #[error("queue {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("queue {path}: in use by another process (LOCK is held)")]
    Locked { path: PathBuf },
    #[error("queue {path}: layout {found:?} is not one this build reads (rampart-queue {QUEUE_FORMAT_VERSION})")]
    Format { path: PathBuf, found: String },
    #[error("queue {path}: the segment is encrypted but no encryption_key_file is configured")]
    KeyMissing { path: PathBuf },
    #[error("queue {path}: records do not decrypt with the configured key (wrong key file?)")]
    WrongKey { path: PathBuf },
    #[error("encryption key {path}: expected 32 bytes or 64 hex characters, found {len} bytes")]
    BadKey { path: PathBuf, len: usize },
    #[error("record of {len} bytes exceeds the queue's maximum of {max} bytes")]
    TooLarge { len: usize, max: usize },
    #[error("output name {0:?}: use ASCII letters, digits, '-' and '_'")]
    BadName(String),
    #[error("output {0:?} is not one the queue was opened for")]
    UnknownConsumer(String),
    #[error("the queue is closed")]
    Closed,
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> QueueError + '_ {
    move |source| QueueError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Why records were lost.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LossReason {
    /// The queue was full and the policy is `drop_newest`.
    Overflow,
    /// A segment or record on disk was damaged and skipped.
    Corrupt,
}

impl LossReason {
    /// `overflow` or `corrupt`.
    pub fn as_str(&self) -> &'static str {
        match self {
            LossReason::Overflow => "overflow",
            LossReason::Corrupt => "corrupt",
        }
    }
}

/// Records lost, reported once (not once per output).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LossReport {
    pub reason: LossReason,
    /// How many records were lost.
    pub records: u64,
    /// Bytes skipped on disk (0 for overflow).
    pub bytes: u64,
    /// What happened where: the segment file, offset, sequence numbers.
    pub detail: String,
}

/// What [`Queue::append`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Appended {
    /// Records written.
    pub accepted: usize,
    /// Records refused because the queue was full (`drop_newest`).
    pub dropped: usize,
}

/// One record read back from the queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub seq: u64,
    /// When it was appended, Unix milliseconds.
    pub written_ms: u64,
    /// The record as appended (decrypted).
    pub payload: Vec<u8>,
}

/// Counters of one queue since it was opened, and its current size.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QueueStats {
    /// Bytes of segment files on disk.
    pub bytes: u64,
    pub segments: usize,
    /// The sequence number the next record will get.
    pub next_seq: u64,
    /// Per output: records appended but not yet acknowledged.
    pub pending: BTreeMap<String, u64>,
    pub appended_total: u64,
    pub dropped_overflow_total: u64,
    pub lost_corrupt_total: u64,
    pub corrupt_bytes_total: u64,
    pub fsyncs_total: u64,
}

struct SegMeta {
    path: PathBuf,
    bytes: u64,
}

struct Active {
    first_seq: u64,
    salt: u32,
    file: File,
    path: PathBuf,
    /// Bytes written so far (header included); readers read up to here.
    written: u64,
    records: u64,
}

struct State {
    segments: BTreeMap<u64, SegMeta>,
    active: Option<Active>,
    next_seq: u64,
    total_bytes: u64,
    cursors: BTreeMap<String, u64>,
    dirty_since: Option<Instant>,
    closed: bool,
    pending_reports: Vec<LossReport>,
    /// Gap starts already reported, so that several outputs meeting one gap report it once.
    reported_gaps: HashSet<u64>,
}

struct Shared {
    /// The sequence number the first record appended by this process got (or will get).
    opened_at: u64,
    dir: PathBuf,
    max_bytes: u64,
    segment_bytes: u64,
    fsync: FsyncPolicy,
    overflow: OverflowPolicy,
    key: Option<aead::LessSafeKey>,
    state: Mutex<State>,
    space: Condvar,
    written_tx: tokio::sync::watch::Sender<u64>,
    appended_total: AtomicU64,
    dropped_overflow_total: AtomicU64,
    lost_corrupt_total: AtomicU64,
    corrupt_bytes_total: AtomicU64,
    fsyncs_total: AtomicU64,
    /// Held for the life of the queue: the `flock` on LOCK.
    _lock: File,
}

/// A durable queue with one cursor per output. Cheap to clone; all clones are one queue.
#[derive(Clone)]
pub struct Queue {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Queue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Queue")
            .field("dir", &self.shared.dir)
            .finish_non_exhaustive()
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

fn fsync_dir(dir: &Path) -> Result<(), QueueError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err(dir))
}

/// Reads or creates the 32-byte key in `path`.
fn load_key(path: &Path) -> Result<aead::LessSafeKey, QueueError> {
    let bytes = match fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            let mut key = [0u8; 32];
            ring::rand::SystemRandom::new()
                .fill(&mut key)
                .map_err(|_| QueueError::Io {
                    path: path.to_path_buf(),
                    source: io::Error::other("no system randomness"),
                })?;
            if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
                fs::DirBuilder::new()
                    .recursive(true)
                    .mode(0o700)
                    .create(parent)
                    .map_err(io_err(parent))?;
            }
            let mut f = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(path)
                .map_err(io_err(path))?;
            f.write_all(hex::encode(key).as_bytes())
                .and_then(|()| f.sync_all())
                .map_err(io_err(path))?;
            hex::encode(key).into_bytes()
        }
        Err(e) => return Err(io_err(path)(e)),
    };
    let trimmed = bytes.trim_ascii();
    let raw: Vec<u8> = if trimmed.len() == 64 {
        hex::decode(trimmed).map_err(|_| QueueError::BadKey {
            path: path.to_path_buf(),
            len: bytes.len(),
        })?
    } else {
        bytes.clone()
    };
    if raw.len() != 32 {
        return Err(QueueError::BadKey {
            path: path.to_path_buf(),
            len: bytes.len(),
        });
    }
    let unbound =
        aead::UnboundKey::new(&aead::CHACHA20_POLY1305, &raw).map_err(|_| QueueError::BadKey {
            path: path.to_path_buf(),
            len: raw.len(),
        })?;
    Ok(aead::LessSafeKey::new(unbound))
}

impl Queue {
    /// Opens (or creates) the queue in `cfg.dir` for the outputs named `consumers`.
    ///
    /// A new output starts at the oldest record still queued. Cursor files of outputs not in
    /// `consumers` are removed, so that an output taken out of the configuration does not pin
    /// segments forever.
    pub fn open(cfg: &QueueConfig, consumers: &[&str]) -> Result<Queue, QueueError> {
        for c in consumers {
            if !valid_name(c) {
                return Err(QueueError::BadName((*c).to_string()));
            }
        }
        let dir = cfg.dir.clone();
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)
            .map_err(io_err(&dir))?;
        let lock_path = dir.join("LOCK");
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(&lock_path)
            .map_err(io_err(&lock_path))?;
        // SAFETY: flock on a descriptor this function owns; no memory is involved.
        let rc = unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if rc != 0 {
            return Err(QueueError::Locked { path: dir });
        }
        let format_path = dir.join(FORMAT_FILE);
        let expected = format!("rampart-queue {QUEUE_FORMAT_VERSION}\n");
        match fs::read_to_string(&format_path) {
            Ok(found) if found == expected => {}
            Ok(found) => {
                return Err(QueueError::Format {
                    path: format_path,
                    found,
                })
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                fs::write(&format_path, &expected).map_err(io_err(&format_path))?;
                fsync_dir(&dir)?;
            }
            Err(e) => return Err(io_err(&format_path)(e)),
        }
        let key = cfg
            .encryption_key_file
            .as_deref()
            .map(load_key)
            .transpose()?;

        // Segments and cursors on disk.
        let mut segments = BTreeMap::new();
        let mut cursor_files = Vec::new();
        let mut pending_reports = Vec::new();
        for entry in fs::read_dir(&dir).map_err(io_err(&dir))? {
            let entry = entry.map_err(io_err(&dir))?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            let path = entry.path();
            if let Some(first) = format::parse_segment_file_name(name) {
                let bytes = entry.metadata().map_err(io_err(&path))?.len();
                segments.insert(first, SegMeta { path, bytes });
            } else if let Some(c) = name.strip_prefix("cursor.") {
                cursor_files.push((c.to_string(), path));
            } else if name.ends_with(".tmp") {
                // A cursor write interrupted before its rename.
                let _ = fs::remove_file(&path);
            }
        }

        // Check each segment's header; a segment without a valid header cannot be read and is
        // removed (its records are reported lost when a reader meets the gap).
        let mut bad = Vec::new();
        for (first, meta) in &segments {
            let mut hb = [0u8; SEGMENT_HEADER_LEN];
            let header = File::open(&meta.path)
                .and_then(|mut f| f.read_exact(&mut hb))
                .ok()
                .map(|()| SegmentHeader::decode(&hb));
            match header {
                Some(Ok(h)) if h.first_seq == *first => {
                    if h.encrypted() {
                        let Some(k) = &key else {
                            return Err(QueueError::KeyMissing {
                                path: meta.path.clone(),
                            });
                        };
                        check_key(&meta.path, &h, k)?;
                    }
                }
                Some(Err(p @ format::HeaderProblem::Version(_))) => {
                    // Never delete data a newer build wrote.
                    return Err(QueueError::Format {
                        path: meta.path.clone(),
                        found: p.to_string(),
                    });
                }
                other => {
                    let why = match other {
                        Some(Err(p)) => p.to_string(),
                        Some(Ok(h)) => format!(
                            "header says first record {} but the file name says {first}",
                            h.first_seq
                        ),
                        None => "shorter than a segment header".into(),
                    };
                    tracing::warn!(segment = %meta.path.display(), "corrupt queue segment removed: {why}");
                    pending_reports.push(LossReport {
                        reason: LossReason::Corrupt,
                        records: 0,
                        bytes: meta.bytes,
                        detail: format!("segment {} unreadable: {why}", meta.path.display()),
                    });
                    bad.push(*first);
                }
            }
        }
        let mut corrupt_bytes = 0;
        for first in bad {
            if let Some(meta) = segments.remove(&first) {
                corrupt_bytes += meta.bytes;
                fs::remove_file(&meta.path).map_err(io_err(&meta.path))?;
            }
        }

        // The next sequence number: past every record on disk and every cursor.
        let mut next_seq = 0;
        if let Some((&first, meta)) = segments.iter().next_back() {
            next_seq = first.max(last_seq_in(&meta.path)?.map_or(first, |s| s + 1));
        }
        let mut cursors = BTreeMap::new();
        for (name, path) in &cursor_files {
            if consumers.contains(&name.as_str()) {
                let bytes = fs::read(path).map_err(io_err(path))?;
                match format::decode_cursor(&bytes) {
                    Some(seq) => {
                        cursors.insert(name.clone(), seq);
                    }
                    None => {
                        // Without a valid cursor, redeliver everything queued: duplicates are
                        // idempotent, losses are not.
                        tracing::warn!(cursor = %path.display(), "damaged cursor: output restarts at the oldest queued record");
                    }
                }
            } else {
                tracing::info!(cursor = %path.display(), "output no longer configured: its cursor is removed");
                fs::remove_file(path).map_err(io_err(path))?;
            }
        }
        next_seq = cursors.values().copied().fold(next_seq, u64::max);
        let oldest = segments.keys().next().copied().unwrap_or(next_seq);
        for c in consumers {
            cursors.entry((*c).to_string()).or_insert(oldest);
        }

        let total_bytes = segments.values().map(|m| m.bytes).sum();
        let segment_bytes = cfg
            .segment_bytes
            .min(cfg.max_bytes / 4)
            .max(SEGMENT_HEADER_LEN as u64 + 4096);
        let (written_tx, _) = tokio::sync::watch::channel(next_seq);
        let queue = Queue {
            shared: Arc::new(Shared {
                dir,
                max_bytes: cfg.max_bytes,
                segment_bytes,
                fsync: cfg.fsync,
                overflow: cfg.overflow,
                key,
                state: Mutex::new(State {
                    segments,
                    active: None,
                    next_seq,
                    total_bytes,
                    cursors,
                    dirty_since: None,
                    closed: false,
                    pending_reports,
                    reported_gaps: HashSet::new(),
                }),
                space: Condvar::new(),
                opened_at: next_seq,
                written_tx,
                appended_total: AtomicU64::new(0),
                dropped_overflow_total: AtomicU64::new(0),
                lost_corrupt_total: AtomicU64::new(0),
                corrupt_bytes_total: AtomicU64::new(corrupt_bytes),
                fsyncs_total: AtomicU64::new(0),
                _lock: lock,
            }),
        };
        {
            let mut st = queue.lock();
            queue.delete_consumed(&mut st)?;
        }
        Ok(queue)
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves the state consistent enough to keep going:
        // every mutation is completed before anything that can panic.
        self.shared
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The queue directory.
    pub fn dir(&self) -> &Path {
        &self.shared.dir
    }

    /// Appends `payloads` as records, in order. Returns when they are written to the operating
    /// system (and fsynced, with `fsync: batch`). With `overflow: block` this waits while the
    /// queue is full; call it from a thread that may block, not from an async task.
    pub fn append<P: AsRef<[u8]>>(&self, payloads: &[P]) -> Result<Appended, QueueError> {
        let sh = &*self.shared;
        let tag = if sh.key.is_some() { AEAD_TAG_LEN } else { 0 };
        for p in payloads {
            let len = p.as_ref().len() + tag;
            if len > MAX_PAYLOAD {
                return Err(QueueError::TooLarge {
                    len,
                    max: MAX_PAYLOAD,
                });
            }
        }
        let mut st = self.lock();
        if st.closed {
            return Err(QueueError::Closed);
        }
        let mut out = Appended::default();
        let mut buf = Vec::with_capacity(
            payloads
                .iter()
                .map(|p| p.as_ref().len() + RECORD_HEADER_LEN + tag)
                .sum(),
        );
        let written_ms = now_ms();
        for p in payloads {
            let p = p.as_ref();
            let rec_len = (RECORD_HEADER_LEN + p.len() + tag) as u64;
            // Room on disk: the bytes already buffered count too.
            loop {
                if st.total_bytes + buf.len() as u64 + rec_len <= sh.max_bytes {
                    break;
                }
                match sh.overflow {
                    OverflowPolicy::DropNewest => break,
                    OverflowPolicy::Block => {
                        // Write what is buffered so outputs can make progress, then wait.
                        self.write_buf(&mut st, &mut buf)?;
                        if st.total_bytes + rec_len <= sh.max_bytes {
                            break;
                        }
                        st = sh
                            .space
                            .wait_timeout(st, Duration::from_millis(200))
                            .unwrap_or_else(|p| p.into_inner())
                            .0;
                        if st.closed {
                            return Err(QueueError::Closed);
                        }
                    }
                }
            }
            if st.total_bytes + buf.len() as u64 + rec_len > sh.max_bytes {
                out.dropped += 1;
                continue;
            }
            let rotate = match &st.active {
                None => true,
                Some(a) => {
                    a.records > 0 && a.written + buf.len() as u64 + rec_len > sh.segment_bytes
                }
            };
            if rotate {
                self.write_buf(&mut st, &mut buf)?;
                self.start_segment(&mut st)?;
            }
            let seq = st.next_seq;
            st.next_seq += 1;
            let Some(active) = st.active.as_mut() else {
                return Err(QueueError::Closed);
            };
            active.records += 1;
            match &sh.key {
                None => format::encode_record(&mut buf, seq, written_ms, p),
                Some(key) => {
                    let mut sealed = p.to_vec();
                    key.seal_in_place_append_tag(
                        aead::Nonce::assume_unique_for_key(format::nonce_bytes(active.salt, seq)),
                        aead::Aad::from(format::aad_bytes(seq, written_ms)),
                        &mut sealed,
                    )
                    .map_err(|_| QueueError::WrongKey {
                        path: active.path.clone(),
                    })?;
                    format::encode_record(&mut buf, seq, written_ms, &sealed);
                }
            }
            out.accepted += 1;
        }
        self.write_buf(&mut st, &mut buf)?;
        if out.accepted > 0 {
            sh.appended_total
                .fetch_add(out.accepted as u64, Ordering::Relaxed);
            if st.dirty_since.is_none() {
                st.dirty_since = Some(Instant::now());
            }
            match sh.fsync {
                FsyncPolicy::EveryBatch => self.sync_locked(&mut st)?,
                FsyncPolicy::Interval(d) => {
                    if st.dirty_since.is_some_and(|t| t.elapsed() >= d) {
                        self.sync_locked(&mut st)?;
                    }
                }
            }
            sh.written_tx.send_replace(st.next_seq);
        }
        if out.dropped > 0 {
            sh.dropped_overflow_total
                .fetch_add(out.dropped as u64, Ordering::Relaxed);
            let records = out.dropped as u64;
            // Merge into the pending overflow report, so a long outage gives one report per
            // reporting interval rather than one per record.
            match st
                .pending_reports
                .iter_mut()
                .find(|r| r.reason == LossReason::Overflow)
            {
                Some(r) => {
                    r.records += records;
                    r.detail = format!(
                        "queue {} full ({} bytes cap): {} records dropped",
                        sh.dir.display(),
                        sh.max_bytes,
                        r.records
                    );
                }
                None => st.pending_reports.push(LossReport {
                    reason: LossReason::Overflow,
                    records,
                    bytes: 0,
                    detail: format!(
                        "queue {} full ({} bytes cap): {records} records dropped",
                        sh.dir.display(),
                        sh.max_bytes
                    ),
                }),
            }
        }
        Ok(out)
    }

    /// Appends `payloads` only if all of them fit under the disk cap now; never blocks and
    /// never counts a loss. For the queue's own reports: a loss report that does not fit is
    /// kept by the caller and tried again, rather than becoming a loss itself.
    pub fn append_if_room<P: AsRef<[u8]>>(&self, payloads: &[P]) -> Result<bool, QueueError> {
        let tag = if self.shared.key.is_some() {
            AEAD_TAG_LEN
        } else {
            0
        };
        let need: u64 = payloads
            .iter()
            .map(|p| (RECORD_HEADER_LEN + p.as_ref().len() + tag) as u64)
            .sum::<u64>()
            + SEGMENT_HEADER_LEN as u64;
        {
            let st = self.lock();
            if st.closed || st.total_bytes + need > self.shared.max_bytes {
                return Ok(false);
            }
        }
        // Another producer may take the room in between; then this append drops, which the
        // caller sees as `accepted < len` and retries. Counting that rare case is acceptable.
        let r = self.append(payloads)?;
        Ok(r.dropped == 0)
    }

    fn write_buf(&self, st: &mut State, buf: &mut Vec<u8>) -> Result<(), QueueError> {
        if buf.is_empty() {
            return Ok(());
        }
        let Some(active) = st.active.as_mut() else {
            return Err(QueueError::Closed);
        };
        active.file.write_all(buf).map_err(io_err(&active.path))?;
        active.written += buf.len() as u64;
        st.total_bytes += buf.len() as u64;
        if let Some(meta) = st.segments.get_mut(&active.first_seq) {
            meta.bytes = active.written;
        }
        buf.clear();
        Ok(())
    }

    fn start_segment(&self, st: &mut State) -> Result<(), QueueError> {
        let sh = &*self.shared;
        if let Some(old) = st.active.take() {
            if st.dirty_since.is_some() {
                old.file.sync_data().map_err(io_err(&old.path))?;
                sh.fsyncs_total.fetch_add(1, Ordering::Relaxed);
            }
        }
        let first_seq = st.next_seq;
        let mut salt = [0u8; 4];
        ring::rand::SystemRandom::new()
            .fill(&mut salt)
            .map_err(|_| QueueError::Io {
                path: sh.dir.clone(),
                source: io::Error::other("no system randomness"),
            })?;
        let header = SegmentHeader {
            version: SEGMENT_VERSION,
            flags: if sh.key.is_some() { FLAG_ENCRYPTED } else { 0 },
            salt: u32::from_le_bytes(salt),
            first_seq,
        };
        let path = sh.dir.join(format::segment_file_name(first_seq));
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .map_err(io_err(&path))?;
        file.write_all(&header.encode())
            .and_then(|()| file.sync_data())
            .map_err(io_err(&path))?;
        fsync_dir(&sh.dir)?;
        sh.fsyncs_total.fetch_add(1, Ordering::Relaxed);
        st.segments.insert(
            first_seq,
            SegMeta {
                path: path.clone(),
                bytes: SEGMENT_HEADER_LEN as u64,
            },
        );
        st.total_bytes += SEGMENT_HEADER_LEN as u64;
        st.active = Some(Active {
            first_seq,
            salt: header.salt,
            file,
            path,
            written: SEGMENT_HEADER_LEN as u64,
            records: 0,
        });
        st.dirty_since = None;
        Ok(())
    }

    fn sync_locked(&self, st: &mut State) -> Result<(), QueueError> {
        if st.dirty_since.is_none() {
            return Ok(());
        }
        if let Some(a) = &st.active {
            a.file.sync_data().map_err(io_err(&a.path))?;
            self.shared.fsyncs_total.fetch_add(1, Ordering::Relaxed);
        }
        st.dirty_since = None;
        Ok(())
    }

    /// Fsyncs appended records now.
    pub fn sync(&self) -> Result<(), QueueError> {
        let mut st = self.lock();
        self.sync_locked(&mut st)
    }

    /// Fsyncs when the interval policy says it is time; the shipper calls this periodically so
    /// that a quiet agent still fsyncs its last records.
    pub fn sync_if_due(&self) -> Result<(), QueueError> {
        let mut st = self.lock();
        let due = match self.shared.fsync {
            FsyncPolicy::EveryBatch => true,
            FsyncPolicy::Interval(d) => st.dirty_since.is_some_and(|t| t.elapsed() >= d),
        };
        if due {
            self.sync_locked(&mut st)?;
        }
        Ok(())
    }

    /// Wakes producers blocked in [`append`](Self::append) and refuses further appends.
    pub fn close(&self) {
        let mut st = self.lock();
        st.closed = true;
        let _ = self.sync_locked(&mut st);
        self.shared.space.notify_all();
    }

    /// Losses not yet reported; each is returned once.
    pub fn take_loss_reports(&self) -> Vec<LossReport> {
        std::mem::take(&mut self.lock().pending_reports)
    }

    /// Current size and counters.
    pub fn stats(&self) -> QueueStats {
        let sh = &*self.shared;
        let st = self.lock();
        QueueStats {
            bytes: st.total_bytes,
            segments: st.segments.len(),
            next_seq: st.next_seq,
            pending: st
                .cursors
                .iter()
                .map(|(k, v)| (k.clone(), st.next_seq.saturating_sub(*v)))
                .collect(),
            appended_total: sh.appended_total.load(Ordering::Relaxed),
            dropped_overflow_total: sh.dropped_overflow_total.load(Ordering::Relaxed),
            lost_corrupt_total: sh.lost_corrupt_total.load(Ordering::Relaxed),
            corrupt_bytes_total: sh.corrupt_bytes_total.load(Ordering::Relaxed),
            fsyncs_total: sh.fsyncs_total.load(Ordering::Relaxed),
        }
    }

    /// The sequence number of the first record appended since the queue was opened: records
    /// from here on were never read by an output of an earlier process.
    pub fn opened_at(&self) -> u64 {
        self.shared.opened_at
    }

    /// A reader for output `consumer`, starting after its last acknowledged record. One reader
    /// per output at a time.
    pub fn reader(&self, consumer: &str) -> Result<Reader, QueueError> {
        let st = self.lock();
        let Some(&next) = st.cursors.get(consumer) else {
            return Err(QueueError::UnknownConsumer(consumer.to_string()));
        };
        Ok(Reader {
            queue: self.clone(),
            name: consumer.to_string(),
            state: Some(ReadState {
                seg: None,
                next_seq: next,
            }),
            written_rx: self.shared.written_tx.subscribe(),
        })
    }

    /// Deletes segments every output has acknowledged (never the one being written).
    fn delete_consumed(&self, st: &mut State) -> Result<(), QueueError> {
        let min_cursor = st.cursors.values().copied().min().unwrap_or(st.next_seq);
        let active_first = st.active.as_ref().map(|a| a.first_seq);
        let firsts: Vec<u64> = st.segments.keys().copied().collect();
        let mut deleted = false;
        for (i, first) in firsts.iter().enumerate() {
            if Some(*first) == active_first {
                break;
            }
            // All records of this segment are below the next segment's first (or next_seq).
            let end = firsts.get(i + 1).copied().unwrap_or(st.next_seq);
            if end > min_cursor {
                break;
            }
            if let Some(meta) = st.segments.remove(first) {
                match fs::remove_file(&meta.path) {
                    Ok(()) => {}
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) => return Err(io_err(&meta.path)(e)),
                }
                st.total_bytes = st.total_bytes.saturating_sub(meta.bytes);
                deleted = true;
            }
        }
        if deleted {
            fsync_dir(&self.shared.dir)?;
            self.shared.space.notify_all();
        }
        Ok(())
    }

    fn write_cursor(&self, name: &str, next_seq: u64) -> Result<(), QueueError> {
        let dir = &self.shared.dir;
        let tmp = dir.join(format!("cursor.{name}.tmp"));
        let dst = dir.join(format!("cursor.{name}"));
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(io_err(&tmp))?;
        f.write_all(&format::encode_cursor(next_seq))
            .and_then(|()| f.sync_data())
            .map_err(io_err(&tmp))?;
        fs::rename(&tmp, &dst).map_err(io_err(&dst))?;
        fsync_dir(dir)
    }

    /// Records a loss found by a reader, once per gap.
    fn report_gap(&self, from_seq: u64, to_seq: u64, bytes: u64, detail: String) {
        let mut st = self.lock();
        if !st.reported_gaps.insert(from_seq) {
            return;
        }
        let records = to_seq.saturating_sub(from_seq);
        self.shared
            .lost_corrupt_total
            .fetch_add(records, Ordering::Relaxed);
        self.shared
            .corrupt_bytes_total
            .fetch_add(bytes, Ordering::Relaxed);
        tracing::warn!(records, bytes, "queue records lost: {detail}");
        st.pending_reports.push(LossReport {
            reason: LossReason::Corrupt,
            records,
            bytes,
            detail,
        });
    }
}

/// Decrypts the first record of an encrypted segment to check that the key is the right one.
fn check_key(path: &Path, h: &SegmentHeader, key: &aead::LessSafeKey) -> Result<(), QueueError> {
    let mut f = File::open(path).map_err(io_err(path))?;
    f.seek(SeekFrom::Start(SEGMENT_HEADER_LEN as u64))
        .map_err(io_err(path))?;
    let mut hb = [0u8; RECORD_HEADER_LEN];
    if f.read_exact(&mut hb).is_err() {
        return Ok(()); // no records yet
    }
    let rh = RecordHeader::decode(&hb);
    if rh.len as usize > MAX_PAYLOAD {
        return Ok(()); // damaged; the reader reports it
    }
    let mut payload = vec![0u8; rh.len as usize];
    if f.read_exact(&mut payload).is_err() || rh.expected_crc(&payload) != rh.crc {
        return Ok(());
    }
    key.open_in_place(
        aead::Nonce::assume_unique_for_key(format::nonce_bytes(h.salt, rh.seq)),
        aead::Aad::from(format::aad_bytes(rh.seq, rh.written_ms)),
        &mut payload,
    )
    .map(|_| ())
    .map_err(|_| QueueError::WrongKey {
        path: path.to_path_buf(),
    })
}

/// The highest sequence number of a valid record in the segment at `path`.
fn last_seq_in(path: &Path) -> Result<Option<u64>, QueueError> {
    let data = fs::read(path).map_err(io_err(path))?;
    let mut off = SEGMENT_HEADER_LEN;
    let mut last = None;
    while off < data.len() {
        match record_at(&data, off, last.map_or(0, |s: u64| s + 1)) {
            Some((h, next)) => {
                last = Some(h.seq);
                off = next;
            }
            None => match resync(&data, off + 1, last.map_or(0, |s| s + 1)) {
                Some(o) => off = o,
                None => break,
            },
        }
    }
    Ok(last)
}

/// The record at `off` if it is complete and its checksum holds (and its sequence number is
/// at least `min_seq`); returns it with the offset after it.
fn record_at(data: &[u8], off: usize, min_seq: u64) -> Option<(RecordHeader, usize)> {
    let hb: &[u8; RECORD_HEADER_LEN] = data.get(off..off + RECORD_HEADER_LEN)?.try_into().ok()?;
    let h = RecordHeader::decode(hb);
    let len = h.len as usize;
    if len > MAX_PAYLOAD || h.seq < min_seq {
        return None;
    }
    let start = off + RECORD_HEADER_LEN;
    let payload = data.get(start..start + len)?;
    (h.expected_crc(payload) == h.crc).then_some((h, start + len))
}

/// The offset of the first valid record at or after `from` whose sequence number is at least
/// `min_seq` and plausibly close to it. A random 4-byte checksum match is ~2^-32 per offset;
/// the sequence window makes a false resync practically impossible.
fn resync(data: &[u8], from: usize, min_seq: u64) -> Option<usize> {
    const SEQ_WINDOW: u64 = 1 << 32;
    let mut off = from;
    while off + RECORD_HEADER_LEN <= data.len() {
        let hb: &[u8; RECORD_HEADER_LEN] =
            data.get(off..off + RECORD_HEADER_LEN)?.try_into().ok()?;
        let h = RecordHeader::decode(hb);
        if h.seq >= min_seq
            && h.seq - min_seq < SEQ_WINDOW
            && (h.len as usize) <= MAX_PAYLOAD
            && record_at(data, off, min_seq).is_some()
        {
            return Some(off);
        }
        off += 1;
    }
    None
}

/// How much [`Reader::next_batch`] returns at most, and how long it waits to fill a batch.
#[derive(Debug, Clone, Copy)]
pub struct BatchLimits {
    pub max_records: usize,
    pub max_bytes: usize,
    /// After the first record is available, wait up to this long for more.
    pub linger: Duration,
}

struct OpenSeg {
    first_seq: u64,
    header: SegmentHeader,
    file: io::BufReader<File>,
    path: PathBuf,
    offset: u64,
    /// Known length once the segment is no longer written.
    len: Option<u64>,
}

struct ReadState {
    seg: Option<OpenSeg>,
    /// The next sequence number this reader returns.
    next_seq: u64,
}

/// Reads one output's records in order. Dropping it loses nothing: the next reader for the
/// output starts after the last [`ack`](Reader::ack).
pub struct Reader {
    queue: Queue,
    name: String,
    state: Option<ReadState>,
    written_rx: tokio::sync::watch::Receiver<u64>,
}

impl std::fmt::Debug for Reader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reader")
            .field("output", &self.name)
            .finish_non_exhaustive()
    }
}

enum Step {
    Record(Entry),
    /// Nothing more to read now.
    CaughtUp,
    /// This segment is finished; go on with the next.
    NextSegment,
    /// Damage was skipped; read on.
    Again,
}

impl Reader {
    /// The output this reader serves.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Waits until at least one record is available, lingers for more, and returns up to the
    /// limits, in sequence order. Records are returned once per reader; deliver them, then
    /// [`ack`](Self::ack).
    pub async fn next_batch(&mut self, limits: BatchLimits) -> Result<Vec<Entry>, QueueError> {
        let mut out: Vec<Entry> = Vec::new();
        let mut bytes = 0usize;
        let mut deadline: Option<tokio::time::Instant> = None;
        loop {
            let next = self.state.as_ref().map_or(0, |s| s.next_seq);
            let written = *self.written_rx.borrow_and_update();
            if written > next || self.state.as_ref().is_some_and(|s| s.seg.is_none()) {
                let mut state = self.state.take().ok_or(QueueError::Closed)?;
                let queue = self.queue.clone();
                let want = limits.max_records.saturating_sub(out.len());
                let room = limits.max_bytes.saturating_sub(bytes);
                let (state, res) = tokio::task::spawn_blocking(move || {
                    let r = state.read(&queue, want, room);
                    (state, r)
                })
                .await
                .map_err(|_| QueueError::Closed)?;
                self.state = Some(state);
                for e in res? {
                    bytes += e.payload.len();
                    out.push(e);
                }
            }
            if out.len() >= limits.max_records || bytes >= limits.max_bytes {
                return Ok(out);
            }
            if !out.is_empty() {
                let d =
                    *deadline.get_or_insert_with(|| tokio::time::Instant::now() + limits.linger);
                if tokio::time::Instant::now() >= d {
                    return Ok(out);
                }
                let _ = tokio::time::timeout_at(d, self.written_rx.changed()).await;
            } else if self.written_rx.changed().await.is_err() {
                return Err(QueueError::Closed);
            }
        }
    }

    /// See [`Queue::opened_at`].
    pub fn opened_at(&self) -> u64 {
        self.queue.opened_at()
    }

    /// Acknowledges every record up to and including `seq`: the output delivered them. The
    /// position is fsynced before this returns; fully acknowledged segments are deleted.
    pub fn ack(&mut self, seq: u64) -> Result<(), QueueError> {
        self.acker().ack(seq)
    }

    /// A handle that acknowledges for this reader's output, usable while the reader reads on
    /// elsewhere (delivery with several batches in flight).
    pub fn acker(&self) -> Acker {
        Acker {
            queue: self.queue.clone(),
            name: self.name.clone(),
        }
    }

    /// Records appended but not yet acknowledged by this output.
    pub fn pending(&self) -> u64 {
        let st = self.queue.lock();
        let c = st.cursors.get(&self.name).copied().unwrap_or(0);
        st.next_seq.saturating_sub(c)
    }
}

/// Acknowledges delivered records of one output (see [`Reader::acker`]).
#[derive(Debug, Clone)]
pub struct Acker {
    queue: Queue,
    name: String,
}

impl Acker {
    /// As [`Reader::ack`]: every record up to and including `seq` is delivered. Callers
    /// acknowledge in sequence order; the cursor never moves back.
    pub fn ack(&self, seq: u64) -> Result<(), QueueError> {
        let q = &self.queue;
        let mut st = q.lock();
        let current = st.cursors.get(&self.name).copied().unwrap_or(0);
        if seq < current {
            return Ok(());
        }
        drop(st);
        q.write_cursor(&self.name, seq + 1)?;
        st = q.lock();
        if let Some(c) = st.cursors.get_mut(&self.name) {
            *c = (*c).max(seq + 1);
        }
        q.delete_consumed(&mut st)
    }
}

impl ReadState {
    fn read(
        &mut self,
        queue: &Queue,
        max_records: usize,
        max_bytes: usize,
    ) -> Result<Vec<Entry>, QueueError> {
        let mut out = Vec::new();
        let mut bytes = 0;
        while out.len() < max_records && bytes < max_bytes {
            if self.seg.is_none() && !self.open_next(queue, None)? {
                break;
            }
            match self.step(queue)? {
                Step::Record(e) => {
                    bytes += e.payload.len();
                    out.push(e);
                }
                Step::CaughtUp => break,
                Step::Again => {}
                Step::NextSegment => {
                    let after = self.seg.take().map(|s| s.first_seq);
                    if !self.open_next(queue, after)? {
                        break;
                    }
                }
            }
        }
        Ok(out)
    }

    /// Opens the segment to read next: the one holding `next_seq` (`after == None`), or the
    /// one following segment `after`. Reports a gap when it starts past `next_seq`. Returns
    /// false when there is no such segment yet.
    fn open_next(&mut self, queue: &Queue, after: Option<u64>) -> Result<bool, QueueError> {
        loop {
            let candidate = {
                let st = queue.lock();
                let found = match after {
                    None => st
                        .segments
                        .range(..=self.next_seq)
                        .next_back()
                        .or_else(|| st.segments.range(self.next_seq..).next()),
                    Some(a) => st.segments.range(a + 1..).next(),
                };
                found.map(|(f, m)| (*f, m.path.clone()))
            };
            let Some((first, path)) = candidate else {
                return Ok(false);
            };
            if first > self.next_seq {
                queue.report_gap(
                    self.next_seq,
                    first,
                    0,
                    format!(
                        "records {}..{} missing before segment {}",
                        self.next_seq,
                        first,
                        path.display()
                    ),
                );
                self.next_seq = first;
            }
            let mut f = match File::open(&path) {
                Ok(f) => f,
                // Deleted after every output acknowledged it: move on.
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    if after.is_some() {
                        return Ok(false);
                    }
                    continue;
                }
                Err(e) => return Err(io_err(&path)(e)),
            };
            let mut hb = [0u8; SEGMENT_HEADER_LEN];
            let header = f
                .read_exact(&mut hb)
                .ok()
                .and_then(|()| SegmentHeader::decode(&hb).ok());
            let Some(header) = header else {
                // Checked at open; damaged since. Skip it: the gap to the next segment is the loss.
                tracing::warn!(segment = %path.display(), "queue segment header damaged; segment skipped");
                self.next_seq = self.next_seq.max(first);
                self.seg = Some(OpenSeg {
                    first_seq: first,
                    header: SegmentHeader {
                        version: SEGMENT_VERSION,
                        flags: 0,
                        salt: 0,
                        first_seq: first,
                    },
                    file: io::BufReader::new(f),
                    path,
                    offset: u64::MAX,
                    len: Some(0),
                });
                return Ok(true);
            };
            if header.encrypted() && queue.shared.key.is_none() {
                return Err(QueueError::KeyMissing { path });
            }
            self.seg = Some(OpenSeg {
                first_seq: first,
                header,
                file: io::BufReader::with_capacity(1 << 20, f),
                path,
                offset: SEGMENT_HEADER_LEN as u64,
                len: None,
            });
            return Ok(true);
        }
    }

    fn step(&mut self, queue: &Queue) -> Result<Step, QueueError> {
        let Some(seg) = self.seg.as_mut() else {
            return Ok(Step::CaughtUp);
        };
        // Where readable data ends: the writer's position in the active segment, the file's
        // length otherwise.
        let (end, active) = match seg.len {
            Some(l) => (l, false),
            None => {
                let st = queue.lock();
                match &st.active {
                    Some(a) if a.first_seq == seg.first_seq => (a.written, true),
                    _ => {
                        drop(st);
                        let l = seg
                            .file
                            .get_ref()
                            .metadata()
                            .map_err(io_err(&seg.path))?
                            .len();
                        seg.len = Some(l);
                        (l, false)
                    }
                }
            }
        };
        loop {
            if seg.offset >= end {
                return Ok(if active {
                    Step::CaughtUp
                } else {
                    Step::NextSegment
                });
            }
            let remaining = end - seg.offset;
            if remaining < RECORD_HEADER_LEN as u64 {
                tracing::debug!(segment = %seg.path.display(), offset = seg.offset, "torn record at segment end");
                seg.offset = end;
                continue;
            }
            let mut hb = [0u8; RECORD_HEADER_LEN];
            seg.file.read_exact(&mut hb).map_err(io_err(&seg.path))?;
            let h = RecordHeader::decode(&hb);
            let len = h.len as u64;
            let fits = len as usize <= MAX_PAYLOAD && len <= remaining - RECORD_HEADER_LEN as u64;
            if fits && h.seq < self.next_seq {
                // Already returned (positioning after a restart): skip without reading.
                seg.file
                    .seek_relative(len as i64)
                    .map_err(io_err(&seg.path))?;
                seg.offset += RECORD_HEADER_LEN as u64 + len;
                continue;
            }
            let mut payload = Vec::new();
            let ok = fits && {
                payload.resize(len as usize, 0);
                seg.file
                    .read_exact(&mut payload)
                    .map_err(io_err(&seg.path))?;
                h.expected_crc(&payload) == h.crc
            };
            if !ok {
                let bad_at = seg.offset;
                self.skip_damage(queue, bad_at, end)?;
                return Ok(Step::Again);
            }
            seg.offset += RECORD_HEADER_LEN as u64 + len;
            if h.seq > self.next_seq {
                queue.report_gap(
                    self.next_seq,
                    h.seq,
                    0,
                    format!(
                        "records {}..{} missing in segment {}",
                        self.next_seq,
                        h.seq,
                        seg.path.display()
                    ),
                );
            }
            self.next_seq = h.seq + 1;
            if seg.header.encrypted() {
                let Some(key) = &queue.shared.key else {
                    return Err(QueueError::KeyMissing {
                        path: seg.path.clone(),
                    });
                };
                let plain_len = match key.open_in_place(
                    aead::Nonce::assume_unique_for_key(format::nonce_bytes(seg.header.salt, h.seq)),
                    aead::Aad::from(format::aad_bytes(h.seq, h.written_ms)),
                    &mut payload,
                ) {
                    Ok(p) => p.len(),
                    Err(_) => {
                        queue.report_gap(
                            h.seq,
                            h.seq + 1,
                            len,
                            format!(
                                "record {} in segment {} at offset {} fails authentication",
                                h.seq,
                                seg.path.display(),
                                seg.offset - RECORD_HEADER_LEN as u64 - len
                            ),
                        );
                        continue;
                    }
                };
                payload.truncate(plain_len);
            }
            return Ok(Step::Record(Entry {
                seq: h.seq,
                written_ms: h.written_ms,
                payload,
            }));
        }
    }

    /// A damaged record at `bad_at`: finds the next valid record in the segment (or its end),
    /// positions the reader there and reports what was skipped.
    fn skip_damage(&mut self, queue: &Queue, bad_at: u64, end: u64) -> Result<(), QueueError> {
        let Some(seg) = self.seg.as_mut() else {
            return Ok(());
        };
        let mut rest = Vec::new();
        seg.file
            .seek(SeekFrom::Start(bad_at))
            .map_err(io_err(&seg.path))?;
        (&mut seg.file)
            .take(end - bad_at)
            .read_to_end(&mut rest)
            .map_err(io_err(&seg.path))?;
        let found = resync(&rest, 1, self.next_seq);
        let skipped = found.unwrap_or(rest.len()) as u64;
        let resume_at = bad_at + skipped;
        seg.file
            .seek(SeekFrom::Start(resume_at))
            .map_err(io_err(&seg.path))?;
        seg.offset = resume_at;
        // The records lost: up to the next valid record's sequence number, or (when the damage
        // runs to the end of the segment) up to the next segment's first.
        let lost_to = match found {
            Some(o) => {
                let hb: Option<&[u8; RECORD_HEADER_LEN]> = rest
                    .get(o..o + RECORD_HEADER_LEN)
                    .and_then(|s| s.try_into().ok());
                hb.map(|b| RecordHeader::decode(b).seq)
            }
            None => {
                let st = queue.lock();
                st.segments
                    .range(seg.first_seq + 1..)
                    .next()
                    .map(|(f, _)| *f)
                    .or(Some(st.next_seq))
            }
        }
        .unwrap_or(self.next_seq);
        let detail = format!(
            "segment {}: {} damaged bytes at offset {} skipped; records {}..{} lost",
            seg.path.display(),
            skipped,
            bad_at,
            self.next_seq,
            lost_to
        );
        let from = self.next_seq;
        if lost_to > from || found.is_none() {
            queue.report_gap(from, lost_to, skipped, detail);
        }
        self.next_seq = lost_to.max(self.next_seq);
        Ok(())
    }
}

#[cfg(test)]
mod tests;
