//! Byte layout of segments, records and cursors (see the module docs of `queue` for the
//! specification). Everything here is pure: bytes in, values out.

use std::fmt;

/// Magic bytes that open every segment file.
pub(crate) const SEGMENT_MAGIC: &[u8; 8] = b"RMPQSEG\0";
/// Magic bytes that open every cursor file.
pub(crate) const CURSOR_MAGIC: &[u8; 4] = b"RQC1";
/// The segment format version this build writes.
pub(crate) const SEGMENT_VERSION: u16 = 1;
/// Segment versions this build reads.
pub(crate) const READABLE_SEGMENT_VERSIONS: &[u16] = &[1];
/// Bytes in a segment header.
pub(crate) const SEGMENT_HEADER_LEN: usize = 32;
/// Bytes in a record header.
pub(crate) const RECORD_HEADER_LEN: usize = 24;
/// Bytes in a cursor file.
pub(crate) const CURSOR_LEN: usize = 16;
/// The largest payload a record may carry (after encryption).
pub(crate) const MAX_PAYLOAD: usize = 16 << 20;
/// Segment flag: payloads are ChaCha20-Poly1305 ciphertexts.
pub(crate) const FLAG_ENCRYPTED: u16 = 1;
/// Bytes the AEAD tag adds to an encrypted payload.
pub(crate) const AEAD_TAG_LEN: usize = 16;

/// A segment header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SegmentHeader {
    pub version: u16,
    pub flags: u16,
    /// Random per segment; the first 4 bytes of every record's nonce.
    pub salt: u32,
    /// Sequence number of the first record written to the segment.
    pub first_seq: u64,
}

/// Why a segment header was rejected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum HeaderProblem {
    Short,
    Magic,
    Checksum,
    Version(u16),
}

impl fmt::Display for HeaderProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HeaderProblem::Short => f.write_str("shorter than a segment header"),
            HeaderProblem::Magic => f.write_str("not a queue segment (bad magic)"),
            HeaderProblem::Checksum => f.write_str("header checksum mismatch"),
            HeaderProblem::Version(v) => write!(
                f,
                "segment format version {v} is newer than this build reads ({:?})",
                READABLE_SEGMENT_VERSIONS
            ),
        }
    }
}

impl SegmentHeader {
    pub fn encode(&self) -> [u8; SEGMENT_HEADER_LEN] {
        let mut b = [0u8; SEGMENT_HEADER_LEN];
        b[0..8].copy_from_slice(SEGMENT_MAGIC);
        b[8..10].copy_from_slice(&self.version.to_le_bytes());
        b[10..12].copy_from_slice(&self.flags.to_le_bytes());
        b[12..16].copy_from_slice(&self.salt.to_le_bytes());
        b[16..24].copy_from_slice(&self.first_seq.to_le_bytes());
        let crc = crc32fast::hash(&b[0..28]);
        b[28..32].copy_from_slice(&crc.to_le_bytes());
        b
    }

    pub fn decode(b: &[u8]) -> Result<SegmentHeader, HeaderProblem> {
        if b.len() < SEGMENT_HEADER_LEN {
            return Err(HeaderProblem::Short);
        }
        if &b[0..8] != SEGMENT_MAGIC {
            return Err(HeaderProblem::Magic);
        }
        if crc32fast::hash(&b[0..28]) != le_u32(&b[28..32]) {
            return Err(HeaderProblem::Checksum);
        }
        let version = le_u16(&b[8..10]);
        if !READABLE_SEGMENT_VERSIONS.contains(&version) {
            return Err(HeaderProblem::Version(version));
        }
        Ok(SegmentHeader {
            version,
            flags: le_u16(&b[10..12]),
            salt: le_u32(&b[12..16]),
            first_seq: le_u64(&b[16..24]),
        })
    }

    pub fn encrypted(&self) -> bool {
        self.flags & FLAG_ENCRYPTED != 0
    }
}

/// The fixed part of a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RecordHeader {
    pub len: u32,
    pub crc: u32,
    pub seq: u64,
    pub written_ms: u64,
}

impl RecordHeader {
    pub fn decode(b: &[u8; RECORD_HEADER_LEN]) -> RecordHeader {
        RecordHeader {
            len: le_u32(&b[0..4]),
            crc: le_u32(&b[4..8]),
            seq: le_u64(&b[8..16]),
            written_ms: le_u64(&b[16..24]),
        }
    }

    /// The checksum the header's `crc` must equal for `payload`.
    pub fn expected_crc(&self, payload: &[u8]) -> u32 {
        let mut h = crc32fast::Hasher::new();
        h.update(&self.seq.to_le_bytes());
        h.update(&self.written_ms.to_le_bytes());
        h.update(payload);
        h.finalize()
    }
}

/// Appends one record (header and `payload`) to `out`.
pub(crate) fn encode_record(out: &mut Vec<u8>, seq: u64, written_ms: u64, payload: &[u8]) {
    let mut h = crc32fast::Hasher::new();
    h.update(&seq.to_le_bytes());
    h.update(&written_ms.to_le_bytes());
    h.update(payload);
    let crc = h.finalize();
    // Callers bound payloads by MAX_PAYLOAD, which fits in u32.
    let len = payload.len() as u32;
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&crc.to_le_bytes());
    out.extend_from_slice(&seq.to_le_bytes());
    out.extend_from_slice(&written_ms.to_le_bytes());
    out.extend_from_slice(payload);
}

/// The AEAD nonce of record `seq` in a segment with `salt`.
pub(crate) fn nonce_bytes(salt: u32, seq: u64) -> [u8; 12] {
    let mut n = [0u8; 12];
    n[0..4].copy_from_slice(&salt.to_be_bytes());
    n[4..12].copy_from_slice(&seq.to_be_bytes());
    n
}

/// The additional authenticated data of a record: its sequence number and write time, so a
/// ciphertext cannot be moved to another position undetected.
pub(crate) fn aad_bytes(seq: u64, written_ms: u64) -> [u8; 16] {
    let mut a = [0u8; 16];
    a[0..8].copy_from_slice(&seq.to_le_bytes());
    a[8..16].copy_from_slice(&written_ms.to_le_bytes());
    a
}

pub(crate) fn encode_cursor(next_seq: u64) -> [u8; CURSOR_LEN] {
    let mut b = [0u8; CURSOR_LEN];
    b[0..4].copy_from_slice(CURSOR_MAGIC);
    b[4..12].copy_from_slice(&next_seq.to_le_bytes());
    let crc = crc32fast::hash(&b[0..12]);
    b[12..16].copy_from_slice(&crc.to_le_bytes());
    b
}

/// The cursor's next sequence number, or `None` when the bytes are not a valid cursor.
pub(crate) fn decode_cursor(b: &[u8]) -> Option<u64> {
    if b.len() != CURSOR_LEN || &b[0..4] != CURSOR_MAGIC {
        return None;
    }
    if crc32fast::hash(&b[0..12]) != le_u32(&b[12..16]) {
        return None;
    }
    Some(le_u64(&b[4..12]))
}

/// File name of the segment whose first record is `first_seq`.
pub(crate) fn segment_file_name(first_seq: u64) -> String {
    format!("seg-{first_seq:020}.rq")
}

/// The first sequence number named by a segment file name.
pub(crate) fn parse_segment_file_name(name: &str) -> Option<u64> {
    let digits = name.strip_prefix("seg-")?.strip_suffix(".rq")?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

fn le_u16(b: &[u8]) -> u16 {
    let mut a = [0u8; 2];
    a.copy_from_slice(&b[..2]);
    u16::from_le_bytes(a)
}

fn le_u32(b: &[u8]) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[..4]);
    u32::from_le_bytes(a)
}

fn le_u64(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[..8]);
    u64::from_le_bytes(a)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trips_and_rejects_damage() {
        let h = SegmentHeader {
            version: 1,
            flags: FLAG_ENCRYPTED,
            salt: 0xdead_beef,
            first_seq: 42,
        };
        let mut b = h.encode();
        assert_eq!(SegmentHeader::decode(&b), Ok(h));
        b[17] ^= 1;
        assert_eq!(SegmentHeader::decode(&b), Err(HeaderProblem::Checksum));
        assert_eq!(SegmentHeader::decode(&b[..10]), Err(HeaderProblem::Short));
    }

    #[test]
    fn newer_version_is_named_in_the_error() {
        let mut b = SegmentHeader {
            version: 1,
            flags: 0,
            salt: 0,
            first_seq: 0,
        }
        .encode();
        b[8] = 9;
        let crc = crc32fast::hash(&b[0..28]);
        b[28..32].copy_from_slice(&crc.to_le_bytes());
        let err = SegmentHeader::decode(&b).expect_err("version 9");
        assert!(err.to_string().contains("version 9"), "{err}");
    }

    #[test]
    fn record_checksum_covers_seq_time_and_payload() {
        let mut out = Vec::new();
        encode_record(&mut out, 7, 1000, b"hello");
        let mut hb = [0u8; RECORD_HEADER_LEN];
        hb.copy_from_slice(&out[..RECORD_HEADER_LEN]);
        let h = RecordHeader::decode(&hb);
        assert_eq!((h.len, h.seq, h.written_ms), (5, 7, 1000));
        assert_eq!(h.expected_crc(b"hello"), h.crc);
        assert_ne!(h.expected_crc(b"hellp"), h.crc);
    }

    #[test]
    fn cursor_and_file_names_round_trip() {
        assert_eq!(decode_cursor(&encode_cursor(99)), Some(99));
        let mut c = encode_cursor(99);
        c[5] ^= 4;
        assert_eq!(decode_cursor(&c), None);
        assert_eq!(parse_segment_file_name(&segment_file_name(12)), Some(12));
        assert_eq!(parse_segment_file_name("seg-12.rq"), None);
    }
}
