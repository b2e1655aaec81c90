//! Turning an ingest batch into stored records: size-capped decompression, per-line parsing,
//! the agent's region stamped on every record, the region's anonymisation, the columns.

use std::collections::HashSet;
use std::io::Read;

use rampart_ship::anonymise::Anonymiser;
use rampart_ship::protocol::{RejectedLine, MAX_INGEST_BODY};
use serde_json::Value;

use crate::store::{day_of, RecordKind, StoredRecord};

/// Why a batch body could not be read at all.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BodyError {
    #[error("content-encoding {0:?} is not supported (use zstd or none)")]
    Encoding(String),
    #[error("body is not valid zstd: {0}")]
    Zstd(String),
    #[error("body decompresses to more than {MAX_INGEST_BODY} bytes")]
    TooLarge,
}

/// Decompresses `body` per `encoding` (`zstd`, or none), refusing more than
/// [`MAX_INGEST_BODY`] bytes of output: the one place the server decompresses input.
pub fn decode_body(body: &[u8], encoding: Option<&str>) -> Result<Vec<u8>, BodyError> {
    match encoding.map(str::trim) {
        None | Some("") | Some("identity") => {
            if body.len() > MAX_INGEST_BODY {
                return Err(BodyError::TooLarge);
            }
            Ok(body.to_vec())
        }
        Some("zstd") => {
            let dec = zstd::stream::read::Decoder::new(body)
                .map_err(|e| BodyError::Zstd(e.to_string()))?;
            let mut out = Vec::new();
            dec.take(MAX_INGEST_BODY as u64 + 1)
                .read_to_end(&mut out)
                .map_err(|e| BodyError::Zstd(e.to_string()))?;
            if out.len() > MAX_INGEST_BODY {
                return Err(BodyError::TooLarge);
            }
            Ok(out)
        }
        Some(other) => Err(BodyError::Encoding(other.to_string())),
    }
}

/// Who sent a batch, as the server established it (certificate or local pipeline).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sender {
    pub agent_id: String,
    pub region: String,
}

/// A parsed batch.
#[derive(Debug, Default)]
pub struct ParsedBatch {
    pub rows: Vec<StoredRecord>,
    pub rejected: Vec<RejectedLine>,
    /// Lines repeating an id seen earlier in the same batch.
    pub duplicates_in_batch: u64,
}

fn str_at<'a>(v: &'a Value, pointer: &str) -> &'a str {
    v.pointer(pointer).and_then(Value::as_str).unwrap_or("")
}

/// Parses a JSON-lines batch from `sender`: every record gets `device.region` set to the
/// sender's region (a record cannot claim another jurisdiction), then `anonymiser` applied.
/// Malformed lines are rejected individually; the rest are kept.
pub fn parse_batch(
    body: &[u8],
    sender: &Sender,
    anonymiser: Option<&Anonymiser>,
    now_ns: u64,
) -> ParsedBatch {
    let mut out = ParsedBatch::default();
    let mut seen = HashSet::new();
    for (i, line) in body.split(|b| *b == b'\n').enumerate() {
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        match parse_line(line, sender, anonymiser, now_ns) {
            Ok(row) => {
                if seen.insert(row.id.clone()) {
                    out.rows.push(row);
                } else {
                    out.duplicates_in_batch += 1;
                }
            }
            Err(error) => out.rejected.push(RejectedLine { line: i + 1, error }),
        }
    }
    out
}

fn parse_line(
    line: &[u8],
    sender: &Sender,
    anonymiser: Option<&Anonymiser>,
    now_ns: u64,
) -> Result<StoredRecord, String> {
    let mut v: Value = serde_json::from_slice(line).map_err(|e| format!("not JSON: {e}"))?;
    let obj = v.as_object_mut().ok_or("not a JSON object")?;
    let id = obj
        .get("metadata")
        .and_then(|m| m.get("uid"))
        .and_then(Value::as_str)
        .ok_or("no metadata.uid")?
        .to_string();
    if id.is_empty() || id.len() > 128 || id.chars().any(char::is_control) {
        return Err(format!(
            "metadata.uid {id:?}: 1 to 128 printable characters"
        ));
    }
    let event_type = obj
        .get("type")
        .and_then(Value::as_str)
        .ok_or("no type")?
        .to_string();
    let time_ns = obj
        .get("time_ns")
        .and_then(Value::as_u64)
        .ok_or("no time_ns")?;
    // The sender's region, whatever the record says.
    match obj.get_mut("device").and_then(Value::as_object_mut) {
        Some(d) => {
            d.insert("region".into(), Value::String(sender.region.clone()));
        }
        None => {
            obj.insert(
                "device".into(),
                serde_json::json!({"hostname": "", "region": sender.region}),
            );
        }
    }
    if let Some(a) = anonymiser {
        a.apply(&mut v);
    }
    let kind = if event_type == "alert" {
        RecordKind::Alert
    } else {
        RecordKind::Event
    };
    // Retention counts from the event's day, but never from a day in the future (a wrong
    // clock must not make a record immortal).
    let day = day_of(time_ns.min(now_ns.saturating_add(86_400_000_000_000)));
    Ok(StoredRecord {
        kind,
        day,
        host: str_at(&v, "/device/hostname").to_string(),
        region: sender.region.clone(),
        agent_id: sender.agent_id.clone(),
        container_id: str_at(&v, "/container/uid").to_string(),
        container_name: str_at(&v, "/container/name").to_string(),
        image: str_at(&v, "/container/image").to_string(),
        rule: str_at(&v, "/rule").to_string(),
        priority: str_at(&v, "/priority").to_string(),
        severity: v
            .get("severity_id")
            .and_then(Value::as_u64)
            .map_or(0, |s| s.min(255) as u8),
        ingested_ns: now_ns,
        json: v.to_string(),
        id,
        event_type,
        time_ns,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sender() -> Sender {
        Sender {
            agent_id: "agt-1".into(),
            region: "eu-de".into(),
        }
    }

    #[test]
    fn good_lines_are_kept_bad_ones_rejected_with_line_numbers() {
        let body = b"{\"metadata\":{\"uid\":\"a\"},\"type\":\"process.exec\",\"time_ns\":5,\"device\":{\"hostname\":\"h\",\"region\":\"us-ca\"}}\n\
not json\n\
{\"metadata\":{\"uid\":\"a\"},\"type\":\"process.exec\",\"time_ns\":5}\n\
\n\
{\"type\":\"x\",\"time_ns\":1}\n";
        let b = parse_batch(body, &sender(), None, 10);
        assert_eq!(b.rows.len(), 1);
        assert_eq!(b.duplicates_in_batch, 1);
        assert_eq!(
            b.rejected.iter().map(|r| r.line).collect::<Vec<_>>(),
            vec![2, 5]
        );
        let r = &b.rows[0];
        assert_eq!((r.host.as_str(), r.region.as_str()), ("h", "eu-de"));
        assert!(
            r.json.contains("\"region\":\"eu-de\""),
            "region from the certificate: {}",
            r.json
        );
    }

    #[test]
    fn decompression_is_capped() {
        let big = vec![b' '; MAX_INGEST_BODY + 10];
        let z = zstd::bulk::compress(&big, 1).unwrap_or_default();
        assert_eq!(decode_body(&z, Some("zstd")), Err(BodyError::TooLarge));
        assert!(matches!(
            decode_body(b"xx", Some("gzip")),
            Err(BodyError::Encoding(_))
        ));
        let small = zstd::bulk::compress(b"hello", 3).unwrap_or_default();
        assert_eq!(
            decode_body(&small, Some("zstd")).as_deref(),
            Ok(&b"hello"[..])
        );
    }
}
