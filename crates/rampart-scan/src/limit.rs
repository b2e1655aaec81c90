//! The one door through which untrusted image bytes are decompressed and unpacked.
//!
//! Every layer, archive and embedded compressed blob the scanner reads goes through
//! [`decompress`] and [`tar_archive`]; `clippy.toml` of this crate forbids calling the raw
//! decoders (`flate2`, `ruzstd`, `tar::Archive::new`) anywhere else, so no code path can read
//! hostile input without a cap.
//!
//! Guarantees of a reader returned by [`decompress`]:
//! * it never yields more than the remaining image budget ([`Limits::max_image_size`], shared by
//!   all layers of one image) and fails with [`LimitExceeded`] instead;
//! * once it has yielded more than [`RATIO_GRACE`] bytes, it fails when the output is more than
//!   [`Limits::max_ratio`] times the compressed input consumed so far (a decompression bomb);
//! * a corrupt gzip or zstd stream is an `io::Error` of kind `InvalidData`, never garbage output
//!   (gzip's CRC and length trailer are checked).

use std::cell::Cell;
use std::fmt;
use std::io::{self, BufRead, BufReader, Read};
use std::rc::Rc;

use serde::{Deserialize, Serialize};

/// Once a decompressed stream has produced this many bytes, the ratio limit applies; below it,
/// small highly compressible layers (a few MiB of zeros) pass.
pub const RATIO_GRACE: u64 = 64 << 20;

/// Limits on what an image may contain. Exceeding one refuses the image with an error naming the
/// layer, the entry and the limit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Largest single file in a layer, in bytes (default 8 GiB).
    pub max_file_size: u64,
    /// Largest total uncompressed size of all layers of one image (default 64 GiB).
    pub max_image_size: u64,
    /// Largest ratio of decompressed to compressed bytes of one stream (default 200; gzip's
    /// best case is about 1000, real layers stay under 20).
    pub max_ratio: u64,
    /// Most entries (files, directories, links) in all layers of one image (default 4 million).
    pub max_entries: u64,
    /// Largest file read into memory for inspection (package databases, lock files, jars,
    /// binaries); larger files are skipped by content analysers, and said so (default 256 MiB).
    pub max_read_size: u64,
    /// Largest manifest, index or image config JSON (default 8 MiB).
    pub max_json_size: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_file_size: 8 << 30,
            max_image_size: 64 << 30,
            max_ratio: 200,
            max_entries: 4_000_000,
            max_read_size: 256 << 20,
            max_json_size: 8 << 20,
        }
    }
}

/// Which limit was exceeded, carried inside an `io::Error` out of a capped reader.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LimitExceeded {
    /// The image's total uncompressed size passed `max_image_size`.
    ImageSize { limit: u64 },
    /// Decompressed/compressed passed `max_ratio` (after `produced` bytes from `consumed`).
    Ratio {
        limit: u64,
        produced: u64,
        consumed: u64,
    },
}

impl fmt::Display for LimitExceeded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LimitExceeded::ImageSize { limit } => {
                write!(f, "uncompressed image larger than max_image_size ({limit} bytes)")
            }
            LimitExceeded::Ratio {
                limit,
                produced,
                consumed,
            } => write!(
                f,
                "decompression bomb: {produced} bytes from {consumed} compressed bytes exceeds max_ratio {limit}"
            ),
        }
    }
}

impl std::error::Error for LimitExceeded {}

impl LimitExceeded {
    /// The limit inside `err`, if `err` came from a capped reader.
    pub(crate) fn from_io(err: &io::Error) -> Option<LimitExceeded> {
        err.get_ref()?.downcast_ref::<LimitExceeded>().cloned()
    }
}

/// How many uncompressed bytes the image may still produce; shared by all its layers.
#[derive(Debug, Clone)]
pub(crate) struct Budget {
    left: Rc<Cell<u64>>,
    limit: u64,
}

impl Budget {
    pub(crate) fn new(limit: u64) -> Budget {
        Budget {
            left: Rc::new(Cell::new(limit)),
            limit,
        }
    }

    /// Takes `n` bytes from the budget; false (taking nothing) when fewer are left.
    pub(crate) fn take(&self, n: u64) -> bool {
        let left = self.left.get();
        if n > left {
            return false;
        }
        self.left.set(left - n);
        true
    }

    /// Bytes produced so far.
    #[cfg(test)]
    pub(crate) fn used(&self) -> u64 {
        self.limit - self.left.get()
    }
}

/// The compression of a layer or blob, from its first bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Compression {
    None,
    Gzip,
    Zstd,
}

impl Compression {
    /// Detects gzip and zstd by magic number; anything else is taken as uncompressed.
    pub(crate) fn sniff(head: &[u8]) -> Compression {
        if head.starts_with(&[0x1f, 0x8b]) {
            Compression::Gzip
        } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            Compression::Zstd
        } else {
            Compression::None
        }
    }

    pub(crate) fn as_str(&self) -> &'static str {
        match self {
            Compression::None => "none",
            Compression::Gzip => "gzip",
            Compression::Zstd => "zstd",
        }
    }
}

/// Counts the bytes read through it (the compressed side of a decompressor).
struct Counting<R> {
    inner: R,
    count: Rc<Cell<u64>>,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count.set(self.count.get() + n as u64);
        Ok(n)
    }
}

impl<R: BufRead> BufRead for Counting<R> {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        self.inner.fill_buf()
    }

    fn consume(&mut self, amt: usize) {
        self.count.set(self.count.get() + amt as u64);
        self.inner.consume(amt);
    }
}

/// The capped decompressed side.
struct Capped<R> {
    inner: R,
    budget: Budget,
    /// Compressed bytes consumed; `None` for an uncompressed stream (no ratio check).
    consumed: Option<Rc<Cell<u64>>>,
    produced: u64,
    max_ratio: u64,
}

impl<R: Read> Read for Capped<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = self.budget.left.get();
        if left == 0 {
            // One byte more tells a stream that ends exactly at the limit from one that goes on.
            let mut probe = [0u8; 1];
            return match self.inner.read(&mut probe)? {
                0 => Ok(0),
                _ => Err(io::Error::other(LimitExceeded::ImageSize {
                    limit: self.budget.limit,
                })),
            };
        }
        let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        let n = self.inner.read(&mut buf[..want])?;
        self.budget.left.set(left - n as u64);
        self.produced += n as u64;
        if let Some(consumed) = &self.consumed {
            let consumed = consumed.get().max(1);
            if self.produced > RATIO_GRACE && self.produced / consumed > self.max_ratio {
                return Err(io::Error::other(LimitExceeded::Ratio {
                    limit: self.max_ratio,
                    produced: self.produced,
                    consumed,
                }));
            }
        }
        Ok(n)
    }
}

/// Decodes concatenated zstd frames, skipping skippable frames (zstd:chunked layers use them).
/// ruzstd's `StreamingDecoder` reads one frame; this loops over frames until end of input.
struct ZstdFrames<R: BufRead> {
    source: R,
    decoder: ruzstd::decoding::FrameDecoder,
    in_frame: bool,
}

impl<R: BufRead> ZstdFrames<R> {
    fn start_frame(&mut self) -> io::Result<bool> {
        use ruzstd::decoding::errors::{FrameDecoderError, ReadFrameHeaderError};
        loop {
            if self.source.fill_buf()?.is_empty() {
                return Ok(false);
            }
            match self.decoder.reset(&mut self.source) {
                Ok(()) => return Ok(true),
                Err(FrameDecoderError::ReadFrameHeaderError(ReadFrameHeaderError::SkipFrame {
                    length,
                    ..
                })) => {
                    let skipped = io::copy(
                        &mut (&mut self.source).take(u64::from(length)),
                        &mut io::sink(),
                    )?;
                    if skipped != u64::from(length) {
                        return Err(io::Error::new(
                            io::ErrorKind::InvalidData,
                            "zstd: truncated skippable frame",
                        ));
                    }
                }
                Err(e) => {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("zstd: {e}"),
                    ))
                }
            }
        }
    }
}

impl<R: BufRead> Read for ZstdFrames<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        use ruzstd::decoding::BlockDecodingStrategy;
        if buf.is_empty() {
            return Ok(0);
        }
        loop {
            if !self.in_frame {
                if !self.start_frame()? {
                    return Ok(0);
                }
                self.in_frame = true;
            }
            while self.decoder.can_collect() < buf.len() && !self.decoder.is_finished() {
                let need = buf.len() - self.decoder.can_collect();
                self.decoder
                    .decode_blocks(&mut self.source, BlockDecodingStrategy::UptoBytes(need))
                    .map_err(|e| {
                        io::Error::new(io::ErrorKind::InvalidData, format!("zstd: {e}"))
                    })?;
            }
            let n = self.decoder.read(buf)?;
            if n > 0 {
                return Ok(n);
            }
            if self.decoder.is_finished() {
                self.in_frame = false;
                continue;
            }
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "zstd: truncated frame",
            ));
        }
    }
}

/// Maps decoder errors of a gzip stream to `InvalidData` with a "gzip:" prefix.
struct GzipErrors<R>(R);

impl<R: Read> Read for GzipErrors<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.read(buf).map_err(|e| {
            if LimitExceeded::from_io(&e).is_some() {
                e
            } else {
                let kind = match e.kind() {
                    io::ErrorKind::UnexpectedEof => io::ErrorKind::UnexpectedEof,
                    _ => io::ErrorKind::InvalidData,
                };
                io::Error::new(kind, format!("gzip: {e}"))
            }
        })
    }
}

/// A reader of the decompressed bytes of `input`, capped by `limits` and `budget`.
///
/// The compression is sniffed from the first bytes (gzip, zstd, else none); the detected one is
/// returned beside the reader.
pub(crate) fn decompress<'a, R: Read + 'a>(
    input: R,
    limits: &Limits,
    budget: &Budget,
) -> io::Result<(Compression, Box<dyn Read + 'a>)> {
    let consumed = Rc::new(Cell::new(0u64));
    let mut buffered = BufReader::with_capacity(
        64 << 10,
        Counting {
            inner: input,
            count: consumed.clone(),
        },
    );
    let compression = Compression::sniff(buffered.fill_buf()?);
    #[allow(
        clippy::disallowed_methods,
        reason = "the capped reader below is the one place raw decoders are built"
    )]
    let (consumed, raw): (Option<Rc<Cell<u64>>>, Box<dyn Read + 'a>) = match compression {
        Compression::None => (None, Box::new(buffered)),
        Compression::Gzip => (
            Some(consumed),
            Box::new(GzipErrors(flate2::bufread::MultiGzDecoder::new(buffered))),
        ),
        Compression::Zstd => (
            Some(consumed),
            Box::new(ZstdFrames {
                source: buffered,
                decoder: ruzstd::decoding::FrameDecoder::new(),
                in_frame: false,
            }),
        ),
    };
    Ok((
        compression,
        Box::new(Capped {
            inner: raw,
            budget: budget.clone(),
            consumed,
            produced: 0,
            max_ratio: limits.max_ratio,
        }),
    ))
}

/// A zlib (RFC 1950) stream inside a file we read (cargo-auditable's `.dep-v0` section), capped
/// at `max` decompressed bytes.
pub(crate) fn inflate_zlib(data: &[u8], max: u64) -> io::Result<Vec<u8>> {
    #[allow(
        clippy::disallowed_methods,
        reason = "the capped reader module is the one place raw decoders are built"
    )]
    let decoder = flate2::read::ZlibDecoder::new(data);
    read_capped(decoder, max)
}

/// Reads `r` to the end, failing with `InvalidData` when it has more than `max` bytes.
pub(crate) fn read_capped<R: Read>(r: R, max: u64) -> io::Result<Vec<u8>> {
    let mut out = Vec::new();
    let n = r.take(max.saturating_add(1)).read_to_end(&mut out)?;
    if n as u64 > max {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("more than {max} bytes"),
        ));
    }
    Ok(out)
}

/// A zip reader over `r`; members must be read through [`read_capped`].
pub(crate) fn zip_archive<R: Read + std::io::Seek>(
    r: R,
) -> zip::result::ZipResult<zip::ZipArchive<R>> {
    #[allow(
        clippy::disallowed_methods,
        reason = "the capped reader module is the one place archives are opened"
    )]
    let archive = zip::ZipArchive::new(r);
    archive
}

/// A tar reader over `r` that never unpacks to disk; entries are read as streams.
pub(crate) fn tar_archive<R: Read>(r: R) -> tar::Archive<R> {
    #[allow(
        clippy::disallowed_methods,
        reason = "the capped reader module is the one place archives are opened"
    )]
    let mut archive = tar::Archive::new(r);
    archive.set_ignore_zeros(false);
    archive
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        enc.write_all(data).expect("gzip");
        enc.finish().expect("gzip")
    }

    #[test]
    fn gzip_round_trip_and_sniffing() {
        let data = b"hello layer".repeat(100);
        let budget = Budget::new(1 << 20);
        let compressed = gzip(&data);
        let (c, mut r) =
            decompress(&compressed[..], &Limits::default(), &budget).expect("decompress");
        assert_eq!(c, Compression::Gzip);
        let mut out = Vec::new();
        r.read_to_end(&mut out).expect("read");
        assert_eq!(out, data);
        assert_eq!(budget.used(), data.len() as u64);
    }

    #[test]
    fn zstd_multi_frame_with_skippable_frame() {
        use ruzstd::encoding::{compress_to_vec, CompressionLevel};
        let mut input = compress_to_vec(&b"first "[..], CompressionLevel::Fastest);
        // A skippable frame (magic 0x184D2A50, little endian) of 3 bytes.
        input.extend_from_slice(&[0x50, 0x2a, 0x4d, 0x18, 3, 0, 0, 0, 9, 9, 9]);
        input.extend(compress_to_vec(&b"second"[..], CompressionLevel::Fastest));
        let (c, mut r) =
            decompress(&input[..], &Limits::default(), &Budget::new(1 << 20)).expect("zstd");
        assert_eq!(c, Compression::Zstd);
        let mut out = Vec::new();
        r.read_to_end(&mut out).expect("read");
        assert_eq!(out, b"first second");
    }

    #[test]
    fn image_budget_is_shared_and_enforced() {
        let budget = Budget::new(1000);
        let (_, mut r) = decompress(&[7u8; 600][..], &Limits::default(), &budget).expect("first");
        io::copy(&mut r, &mut io::sink()).expect("within budget");
        let (_, mut r) = decompress(&[7u8; 600][..], &Limits::default(), &budget).expect("second");
        let err = io::copy(&mut r, &mut io::sink()).expect_err("over budget");
        assert_eq!(
            LimitExceeded::from_io(&err),
            Some(LimitExceeded::ImageSize { limit: 1000 })
        );
    }

    #[test]
    fn exact_budget_is_not_an_error() {
        let budget = Budget::new(600);
        let (_, mut r) = decompress(&[7u8; 600][..], &Limits::default(), &budget).expect("d");
        assert_eq!(io::copy(&mut r, &mut io::sink()).expect("exact"), 600);
    }

    #[test]
    fn ratio_limit_stops_a_bomb() {
        let zeros = vec![0u8; (RATIO_GRACE as usize) * 2];
        let bomb = gzip(&zeros);
        let limits = Limits {
            max_ratio: 100,
            ..Limits::default()
        };
        let (_, mut r) = decompress(&bomb[..], &limits, &Budget::new(u64::MAX)).expect("d");
        let err = io::copy(&mut r, &mut io::sink()).expect_err("bomb");
        assert!(matches!(
            LimitExceeded::from_io(&err),
            Some(LimitExceeded::Ratio { limit: 100, .. })
        ));
    }

    #[test]
    fn corrupt_gzip_is_invalid_data() {
        let mut data = gzip(&b"some layer bytes".repeat(1000));
        let mid = data.len() / 2;
        data[mid] ^= 0xff;
        data[mid + 1] ^= 0xff;
        let (_, mut r) =
            decompress(&data[..], &Limits::default(), &Budget::new(u64::MAX)).expect("d");
        let err = io::copy(&mut r, &mut io::sink()).expect_err("corrupt");
        assert!(err.to_string().starts_with("gzip:"), "{err}");
    }

    #[test]
    fn truncated_gzip_is_an_error() {
        let data = gzip(&b"some layer bytes".repeat(1000));
        let (_, mut r) = decompress(
            &data[..data.len() - 10],
            &Limits::default(),
            &Budget::new(u64::MAX),
        )
        .expect("d");
        assert!(io::copy(&mut r, &mut io::sink()).is_err());
    }

    #[test]
    fn corrupt_zstd_is_an_error() {
        use ruzstd::encoding::{compress_to_vec, CompressionLevel};
        let mut data = compress_to_vec(
            &b"some layer bytes, not too repetitive 0123456789".repeat(500)[..],
            CompressionLevel::Fastest,
        );
        data.truncate(data.len() / 2);
        let (_, mut r) =
            decompress(&data[..], &Limits::default(), &Budget::new(u64::MAX)).expect("d");
        let err = io::copy(&mut r, &mut io::sink()).expect_err("corrupt");
        assert!(err.to_string().contains("zstd"), "{err}");
    }

    #[test]
    fn read_capped_refuses_more() {
        assert_eq!(read_capped(&b"abc"[..], 3).expect("fits"), b"abc");
        assert!(read_capped(&b"abcd"[..], 3).is_err());
    }
}
