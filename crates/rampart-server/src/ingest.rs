//! Turning an ingest batch into stored records: size-capped decompression, per-line parsing,
//! the agent's region stamped on every record, the region's anonymisation, the columns.

use std::collections::HashSet;
use std::fmt;
use std::io::Read;

use rampart_ship::anonymise::Anonymiser;
use rampart_ship::protocol::{RejectedLine, MAX_INGEST_BODY};
use serde::de::{Deserializer, MapAccess, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;
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

/// Retention counts from the event's day, but never from a day in the future (a wrong clock
/// must not make a record immortal).
fn retention_day(time_ns: u64, now_ns: u64) -> u32 {
    day_of(time_ns.min(now_ns.saturating_add(86_400_000_000_000)))
}

fn parse_line(
    line: &[u8],
    sender: &Sender,
    anonymiser: Option<&Anonymiser>,
    now_ns: u64,
) -> Result<StoredRecord, String> {
    if anonymiser.is_none() {
        if let Some(row) = parse_line_fast(line, sender, now_ns) {
            return Ok(row);
        }
    }
    parse_line_tree(line, sender, anonymiser, now_ns)
}

/// The top-level members of a JSON object in their order, values unparsed. Member names with
/// escapes do not borrow and fail deserialisation (the general path takes such records).
struct RawObject<'a>(Vec<(&'a str, &'a RawValue)>);

impl<'de> Deserialize<'de> for RawObject<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RawObject<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<RawObject<'de>, A::Error> {
                let mut v = Vec::with_capacity(24);
                while let Some(kv) = m.next_entry::<&'de str, &'de RawValue>()? {
                    v.push(kv);
                }
                Ok(RawObject(v))
            }
        }
        d.deserialize_map(V)
    }
}

impl<'a> RawObject<'a> {
    fn get(&self, name: &str) -> Option<&'a RawValue> {
        self.0.iter().find(|(k, _)| *k == name).map(|(_, v)| *v)
    }
}

/// A string member as the columns take it: the string, or "" when absent or not a string.
fn str_or_empty(raw: Option<&RawValue>) -> Option<String> {
    match raw {
        Some(r) if r.get().starts_with('"') => serde_json::from_str(r.get()).ok(),
        _ => Some(String::new()),
    }
}

#[derive(Deserialize)]
struct MetadataCols {
    uid: String,
}

#[derive(Deserialize)]
struct ContainerCols<'a> {
    #[serde(borrow, default)]
    uid: Option<&'a RawValue>,
    #[serde(borrow, default)]
    name: Option<&'a RawValue>,
    #[serde(borrow, default)]
    image: Option<&'a RawValue>,
}

/// [`parse_line_tree`] without building the record's JSON tree, for records that need no
/// anonymisation: the columns are read from the members that hold them, `device` is the only
/// member rewritten (the sender's region), every other member is copied as it came. `None`
/// when the record is not a plain object of that shape (duplicate or escaped member names, a
/// missing or mistyped id, type or time): the general path then decides, with its error
/// messages, so both paths store the same thing.
fn parse_line_fast(line: &[u8], sender: &Sender, now_ns: u64) -> Option<StoredRecord> {
    let text = std::str::from_utf8(line).ok()?;
    let obj: RawObject<'_> = serde_json::from_str(text).ok()?;
    let mut names: Vec<&str> = obj.0.iter().map(|(k, _)| *k).collect();
    names.sort_unstable();
    if names.windows(2).any(|w| w[0] == w[1]) {
        return None;
    }
    let id = serde_json::from_str::<MetadataCols>(obj.get("metadata")?.get())
        .ok()?
        .uid;
    if id.is_empty() || id.len() > 128 || id.chars().any(char::is_control) {
        return None;
    }
    let event_type: String = serde_json::from_str(obj.get("type")?.get()).ok()?;
    let time_ns: u64 = serde_json::from_str(obj.get("time_ns")?.get()).ok()?;
    let device_raw = obj.get("device").filter(|d| d.get().starts_with('{'));
    let (host, device) = match device_raw {
        Some(d) => {
            let mut m: serde_json::Map<String, Value> = serde_json::from_str(d.get()).ok()?;
            let host = m
                .get("hostname")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string();
            m.insert("region".into(), Value::String(sender.region.clone()));
            (host, serde_json::to_string(&m).ok()?)
        }
        None => (
            String::new(),
            serde_json::json!({"hostname": "", "region": sender.region}).to_string(),
        ),
    };
    let (container_id, container_name, image) = match obj.get("container") {
        Some(c) if c.get().starts_with('{') => {
            let c: ContainerCols<'_> = serde_json::from_str(c.get()).ok()?;
            (
                str_or_empty(c.uid)?,
                str_or_empty(c.name)?,
                str_or_empty(c.image)?,
            )
        }
        _ => (String::new(), String::new(), String::new()),
    };
    let mut json = String::with_capacity(text.len() + device.len() + 16);
    json.push('{');
    let mut has_device = false;
    for (i, (k, v)) in obj.0.iter().enumerate() {
        if i > 0 {
            json.push(',');
        }
        // A borrowed member name has no escapes, so it is written as it came.
        json.push('"');
        json.push_str(k);
        json.push_str("\":");
        if *k == "device" {
            json.push_str(&device);
            has_device = true;
        } else {
            json.push_str(v.get());
        }
    }
    if !has_device {
        if !obj.0.is_empty() {
            json.push(',');
        }
        json.push_str("\"device\":");
        json.push_str(&device);
    }
    json.push('}');
    let kind = if event_type == "alert" {
        RecordKind::Alert
    } else {
        RecordKind::Event
    };
    Some(StoredRecord {
        kind,
        day: retention_day(time_ns, now_ns),
        host,
        region: sender.region.clone(),
        agent_id: sender.agent_id.clone(),
        container_id,
        container_name,
        image,
        rule: str_or_empty(obj.get("rule"))?,
        priority: str_or_empty(obj.get("priority"))?,
        severity: obj
            .get("severity_id")
            .and_then(|s| serde_json::from_str::<u64>(s.get()).ok())
            .map_or(0, |s| s.min(255) as u8),
        ingested_ns: now_ns,
        json,
        id,
        event_type,
        time_ns,
    })
}

/// The general path: the record as a JSON tree, anonymised when the region says so.
fn parse_line_tree(
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
    let day = retention_day(time_ns, now_ns);
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

    /// The columns and the stored JSON (as a value) of both paths, side by side.
    fn both(line: &str) -> (StoredRecord, StoredRecord) {
        let fast = parse_line_fast(line.as_bytes(), &sender(), 10)
            .unwrap_or_else(|| panic!("the fast path takes {line}"));
        let tree = parse_line_tree(line.as_bytes(), &sender(), None, 10).expect("valid record");
        (fast, tree)
    }

    #[test]
    fn fast_path_stores_what_the_tree_path_stores() {
        let mut e = rampart_event::Event::new(
            rampart_event::EventId::new(0xabc, 7),
            1_700_000_000_000_000_000,
            rampart_event::EventKind::ProcessExec,
            std::sync::Arc::new(rampart_event::Device {
                hostname: "vps1".into(),
                region: Some("us-ca".into()),
            }),
        );
        e.container = Some(std::sync::Arc::new(rampart_event::Container::unnamed(
            "c".repeat(64),
            rampart_event::ContainerRuntime::Docker,
        )));
        let event = serde_json::to_string(&e).expect("serialises");
        let lines = [
            event.as_str(),
            r#"{"metadata":{"uid":"al-1","version":"1"},"type":"alert","time_ns":7,"rule":"Shell \"x\"","priority":"Warning","severity_id":3,"device":{"hostname":"h\u00e9","region":"us-ca"},"container":{"uid":"abc","name":"web","image":"nginx"}}"#,
            r#"{"metadata":{"uid":"x"},"type":"process.exec","time_ns":1}"#,
            r#"{"metadata":{"uid":"x"},"type":"process.exec","time_ns":1,"device":null,"container":null}"#,
            r#" { "metadata" : {"uid":"x"} , "type":"process.exec","time_ns":99999999999999999999999,"device":"h","container":{"name":5},"severity_id":3.5,"rule":null} "#,
        ];
        for l in lines {
            if l.contains("99999999999999999999999") {
                // Not a u64: both paths refuse it.
                assert!(parse_line_fast(l.as_bytes(), &sender(), 10).is_none());
                assert!(parse_line_tree(l.as_bytes(), &sender(), None, 10).is_err());
                continue;
            }
            let (mut fast, mut tree) = both(l);
            let fj: Value = serde_json::from_str(&fast.json).expect("fast path writes JSON");
            let tj: Value = serde_json::from_str(&tree.json).expect("tree path writes JSON");
            assert_eq!(fj, tj, "{l}");
            assert_eq!(fj["device"]["region"], "eu-de");
            fast.json.clear();
            tree.json.clear();
            assert_eq!(fast, tree, "{l}");
        }
        let odd = r#"{"metadata":{"uid":"x"},"type":"process.exec","time_ns":1,"device":"h","container":{"name":5},"severity_id":3.5,"rule":null}"#;
        let (fast, tree) = both(odd);
        assert_eq!((fast.host.as_str(), fast.container_name.as_str()), ("", ""));
        assert_eq!((fast.severity, fast.rule.as_str()), (0, ""));
        assert_eq!(
            serde_json::from_str::<Value>(&fast.json).expect("JSON"),
            serde_json::from_str::<Value>(&tree.json).expect("JSON")
        );
        // Shapes left to the general path (which accepts or rejects them with its messages).
        for l in [
            r#"{"metadata":{"uid":"x"},"type":"a","time_ns":1,"type":"b"}"#,
            r#"{"metadata":{"uid":"x"},"\u0074ype":"a","time_ns":1}"#,
            r#"{"metadata":{"uid":5},"type":"a","time_ns":1}"#,
            r#"{"metadata":{"uid":"x"},"type":"a"}"#,
            r#"{"metadata":{"uid":"x"},"type":"a","time_ns":1.5}"#,
            r#"{"metadata":{"uid":""},"type":"a","time_ns":1}"#,
            "[1]",
        ] {
            assert!(
                parse_line_fast(l.as_bytes(), &sender(), 10).is_none(),
                "{l}"
            );
        }
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
