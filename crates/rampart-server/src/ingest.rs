//! Turning an ingest batch into stored records: size-capped decompression, per-line parsing,
//! the agent's region stamped on every record, the region's anonymisation, the columns.

use std::borrow::Cow;
use std::collections::HashSet;
use std::fmt;
use std::io::Read;

use rampart_ship::anonymise::Anonymiser;
use rampart_ship::protocol::{RejectedLine, MAX_INGEST_BODY};
use serde::de::{DeserializeSeed, Deserializer, Error as _, MapAccess, Visitor};
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
        Some("zstd") => match recorded_size(body) {
            // Every frame records its size (the agent's bulk compression does): one
            // allocation of exactly that size, refused up front when over the cap.
            Some(size) => {
                if size > MAX_INGEST_BODY {
                    return Err(BodyError::TooLarge);
                }
                zstd::bulk::decompress(body, size).map_err(|e| BodyError::Zstd(e.to_string()))
            }
            // A streaming compressor's frames may not say: read until the cap.
            _ => {
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
        },
        Some(other) => Err(BodyError::Encoding(other.to_string())),
    }
}

/// The decompressed size of `body` when it is one or more whole zstd frames that all record
/// their content size (zstd refuses a frame whose content differs from what it records).
fn recorded_size(mut body: &[u8]) -> Option<usize> {
    use zstd::zstd_safe;
    if body.is_empty() {
        return None;
    }
    let mut total = 0usize;
    while !body.is_empty() {
        let frame_len = zstd_safe::find_frame_compressed_size(body).ok()?;
        let content = zstd_safe::get_frame_content_size(body).ok()??;
        total = total.checked_add(usize::try_from(content).ok()?)?;
        body = body.get(frame_len..)?;
    }
    Some(total)
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
/// Malformed lines are rejected individually; the rest are kept. Of lines repeating an id, the
/// first is kept and the others counted in `duplicates_in_batch`.
pub fn parse_batch(
    body: &[u8],
    sender: &Sender,
    anonymiser: Option<&Anonymiser>,
    now_ns: u64,
) -> ParsedBatch {
    let fast = anonymiser.is_none().then(|| FastPath::new(sender, now_ns));
    let mut scratch = Scratch::default();
    // A body that is UTF-8 as a whole (the normal case) is split with the standard library's
    // memchr-based search and not validated again line by line.
    let lines: Vec<(&[u8], Option<&str>)> = match std::str::from_utf8(body) {
        Ok(text) => text.split('\n').map(|l| (l.as_bytes(), Some(l))).collect(),
        Err(_) => body
            .split(|b| *b == b'\n')
            .map(|l| (l, std::str::from_utf8(l).ok()))
            .collect(),
    };
    let mut out = ParsedBatch {
        rows: Vec::with_capacity(lines.len()),
        ..ParsedBatch::default()
    };
    for (i, (line, text)) in lines.into_iter().enumerate() {
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let fast_row = match (&fast, text) {
            (Some(f), Some(t)) => f.parse(t, &mut scratch),
            _ => None,
        };
        let row = match fast_row {
            Some(row) => Ok(row),
            None => parse_line_tree(line, sender, anonymiser, now_ns),
        };
        match row {
            Ok(row) => out.rows.push(row),
            Err(error) => out.rejected.push(RejectedLine { line: i + 1, error }),
        }
    }
    // Duplicate ids: the rows' own strings as keys, none cloned.
    let mut seen = HashSet::with_capacity(out.rows.len());
    let first: Vec<bool> = out
        .rows
        .iter()
        .map(|r| seen.insert(r.id.as_str()))
        .collect();
    drop(seen);
    let mut first_iter = first.iter();
    out.rows
        .retain(|_| first_iter.next().copied().unwrap_or(true));
    out.duplicates_in_batch = first.iter().filter(|f| !**f).count() as u64;
    out
}

/// Retention counts from the event's day, but never from a day in the future (a wrong clock
/// must not make a record immortal).
fn retention_day(time_ns: u64, now_ns: u64) -> u32 {
    day_of(time_ns.min(now_ns.saturating_add(86_400_000_000_000)))
}

/// Member lists of one record, reused from line to line of a batch (`'b`: the body).
#[derive(Default)]
struct Scratch<'b> {
    top: Vec<(&'b str, &'b RawValue)>,
    device: Vec<(&'b str, &'b RawValue)>,
}

/// Deserialises a JSON object's members, in their order and with their values unparsed, into
/// a reused list. Fails on a member name with escapes (it does not borrow) and on a repeated
/// member name (the tree path keeps the last one; the fast path leaves such records to it).
struct Members<'v, 'de>(&'v mut Vec<(&'de str, &'de RawValue)>);

impl<'de> DeserializeSeed<'de> for Members<'_, 'de> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for Members<'_, 'de> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<(), A::Error> {
        self.0.clear();
        // One bit per name signature: only a name whose signature was seen before is compared
        // with the earlier names.
        let mut signatures = 0u128;
        while let Some(name) = m.next_key::<&'de str>()? {
            let bit = 1u128 << name_signature(name);
            if signatures & bit != 0 && self.0.iter().any(|(n, _)| *n == name) {
                return Err(A::Error::custom(format_args!("repeated member {name:?}")));
            }
            signatures |= bit;
            let value = m.next_value::<&'de RawValue>()?;
            self.0.push((name, value));
        }
        Ok(())
    }
}

/// A number in 0..128 that equal names share.
fn name_signature(name: &str) -> u32 {
    let b = name.as_bytes();
    let first = b.first().copied().unwrap_or(0) as u32;
    let last = b.last().copied().unwrap_or(0) as u32;
    (b.len() as u32)
        .wrapping_mul(31)
        .wrapping_add(first.wrapping_mul(7))
        .wrapping_add(last)
        % 128
}

fn find<'a>(members: &[(&str, &'a RawValue)], name: &str) -> Option<&'a RawValue> {
    members.iter().find(|(k, _)| *k == name).map(|(_, v)| *v)
}

/// The top-level members the columns come from.
#[derive(Default)]
struct ColumnMembers<'b> {
    metadata: Option<&'b RawValue>,
    event_type: Option<&'b RawValue>,
    time_ns: Option<&'b RawValue>,
    device: Option<&'b RawValue>,
    container: Option<&'b RawValue>,
    rule: Option<&'b RawValue>,
    priority: Option<&'b RawValue>,
    severity_id: Option<&'b RawValue>,
}

impl<'b> ColumnMembers<'b> {
    /// From a record's members, whose names are distinct.
    fn pick(members: &[(&str, &'b RawValue)]) -> Self {
        let mut c = ColumnMembers::default();
        for (name, value) in members {
            let slot = match *name {
                "metadata" => &mut c.metadata,
                "type" => &mut c.event_type,
                "time_ns" => &mut c.time_ns,
                "device" => &mut c.device,
                "container" => &mut c.container,
                "rule" => &mut c.rule,
                "priority" => &mut c.priority,
                "severity_id" => &mut c.severity_id,
                _ => continue,
            };
            *slot = Some(*value);
        }
        c
    }
}

/// A JSON string's value, `None` when `raw` is not a string.
fn json_str(raw: &RawValue) -> Option<String> {
    let s = raw.get();
    let inner = s.strip_prefix('"')?.strip_suffix('"')?;
    if inner.contains('\\') {
        serde_json::from_str(s).ok()
    } else {
        // Valid JSON without escapes: the characters between the quotes are the value.
        Some(inner.to_owned())
    }
}

/// A string member as the columns take it: the string, or "" when absent or not a string.
fn str_or_empty(raw: Option<&RawValue>) -> String {
    raw.and_then(json_str).unwrap_or_default()
}

#[derive(Deserialize)]
struct MetadataCols<'a> {
    #[serde(borrow)]
    uid: Cow<'a, str>,
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
/// member rewritten (its members copied as they came, `region` replaced or added), every other
/// member is copied as it came. `None` when the record is not a plain object of that shape
/// (repeated or escaped member names at the top or in `device`, a missing or mistyped id, type
/// or time): the general path then decides, with its error messages, so both paths store the
/// same thing.
struct FastPath<'s> {
    sender: &'s Sender,
    now_ns: u64,
    /// The sender's region as a JSON string.
    region_json: String,
    /// The `device` of a record without a device object.
    default_device: String,
}

impl<'s> FastPath<'s> {
    fn new(sender: &'s Sender, now_ns: u64) -> Self {
        FastPath {
            sender,
            now_ns,
            region_json: Value::String(sender.region.clone()).to_string(),
            default_device: serde_json::json!({"hostname": "", "region": sender.region})
                .to_string(),
        }
    }

    fn parse<'b>(&self, text: &'b str, scratch: &mut Scratch<'b>) -> Option<StoredRecord> {
        let mut de = serde_json::Deserializer::from_str(text);
        Members(&mut scratch.top).deserialize(&mut de).ok()?;
        de.end().ok()?;
        let top = &scratch.top;
        let cols = ColumnMembers::pick(top);
        let metadata: MetadataCols<'_> = serde_json::from_str(cols.metadata?.get()).ok()?;
        let id = metadata.uid;
        if id.is_empty() || id.len() > 128 || id.chars().any(char::is_control) {
            return None;
        }
        let event_type = json_str(cols.event_type?)?;
        let time_ns: u64 = serde_json::from_str(cols.time_ns?.get()).ok()?;
        let device = cols.device.filter(|d| d.get().starts_with('{'));
        let host = match device {
            Some(d) => {
                Members(&mut scratch.device)
                    .deserialize(&mut serde_json::Deserializer::from_str(d.get()))
                    .ok()?;
                str_or_empty(find(&scratch.device, "hostname"))
            }
            None => String::new(),
        };
        let (container_id, container_name, image) = match cols.container {
            Some(c) if c.get().starts_with('{') => {
                let c: ContainerCols<'_> = serde_json::from_str(c.get()).ok()?;
                (
                    str_or_empty(c.uid),
                    str_or_empty(c.name),
                    str_or_empty(c.image),
                )
            }
            _ => (String::new(), String::new(), String::new()),
        };
        let json = self.rewrite(text.len(), top, device.map(|_| &scratch.device[..]));
        let kind = if event_type == "alert" {
            RecordKind::Alert
        } else {
            RecordKind::Event
        };
        Some(StoredRecord {
            kind,
            day: retention_day(time_ns, self.now_ns),
            host,
            region: self.sender.region.clone(),
            agent_id: self.sender.agent_id.clone(),
            container_id,
            container_name,
            image,
            rule: str_or_empty(cols.rule),
            priority: str_or_empty(cols.priority),
            severity: cols
                .severity_id
                .and_then(|s| serde_json::from_str::<u64>(s.get()).ok())
                .map_or(0, |s| s.min(255) as u8),
            ingested_ns: self.now_ns,
            json,
            id: id.into_owned(),
            event_type,
            time_ns,
        })
    }

    /// The record's JSON with `device` rewritten: `device` the device object's members when it
    /// is one, `None` when the record's `device` is absent or not an object.
    fn rewrite(
        &self,
        len: usize,
        top: &[(&str, &RawValue)],
        device: Option<&[(&str, &RawValue)]>,
    ) -> String {
        let mut json = String::with_capacity(len + self.default_device.len() + 16);
        write_replacing(&mut json, top, "device", |j| self.write_device(j, device));
        json
    }

    fn write_device(&self, json: &mut String, device: Option<&[(&str, &RawValue)]>) {
        match device {
            Some(members) => {
                write_replacing(json, members, "region", |j| j.push_str(&self.region_json));
            }
            None => json.push_str(&self.default_device),
        }
    }
}

/// Writes the object of `members` with the value of member `name` written by `value` (added
/// at the end when the object has none). Borrowed member names have no escapes, so they are
/// written as they came.
fn write_replacing(
    json: &mut String,
    members: &[(&str, &RawValue)],
    name: &str,
    value: impl Fn(&mut String),
) {
    json.push('{');
    let mut replaced = false;
    for (i, (k, v)) in members.iter().enumerate() {
        if i > 0 {
            json.push(',');
        }
        json.push('"');
        json.push_str(k);
        json.push_str("\":");
        if *k == name {
            value(json);
            replaced = true;
        } else {
            json.push_str(v.get());
        }
    }
    if !replaced {
        if !members.is_empty() {
            json.push(',');
        }
        json.push('"');
        json.push_str(name);
        json.push_str("\":");
        value(json);
    }
    json.push('}');
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
        // A line that is not UTF-8 is rejected alone; the lines around it still parse.
        let mut body = b"{\"metadata\":{\"uid\":\"a\"},\"type\":\"t\",\"time_ns\":1}\n".to_vec();
        body.extend_from_slice(b"{\"metadata\":{\"uid\":\"\xff\"},\"type\":\"t\",\"time_ns\":1}\n");
        body.extend_from_slice(b"{\"metadata\":{\"uid\":\"b\"},\"type\":\"t\",\"time_ns\":1}");
        let b = parse_batch(&body, &sender(), None, 10);
        assert_eq!(
            b.rows.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(),
            ["a", "b"]
        );
        assert_eq!(
            b.rejected.iter().map(|r| r.line).collect::<Vec<_>>(),
            vec![2]
        );
    }

    /// The fast path alone (`None`: it leaves the line to the tree path).
    fn fast_path(line: &str) -> Option<StoredRecord> {
        let s = sender();
        FastPath::new(&s, 10).parse(line, &mut Scratch::default())
    }

    /// The columns and the stored JSON (as a value) of both paths, side by side.
    fn both(line: &str) -> (StoredRecord, StoredRecord) {
        let fast = fast_path(line).unwrap_or_else(|| panic!("the fast path takes {line}"));
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
                assert!(fast_path(l).is_none());
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
            assert!(fast_path(l).is_none(), "{l}");
        }
    }

    /// Records the fast path leaves to the tree path, and records it takes whose `device` or
    /// member names are out of the ordinary: `parse_batch` without an anonymiser (fast path
    /// where it applies) stores what it stores with a no-op anonymiser (tree path for all).
    #[test]
    fn fast_path_device_rewrite_and_fallbacks_store_what_the_tree_path_stores() {
        let head = r#"{"metadata":{"uid":"ID"},"type":"process.exec","time_ns":1"#;
        // (rest of the record, does the fast path take it)
        let cases: &[(&str, bool)] = &[
            // region replaced in place, first or last, or added; other members kept
            (r#","device":{"region":"us-ca","hostname":"h"}}"#, true),
            (
                r#","device":{"hostname":"h","region":"us-ca","os":{"a":[1,2]}}}"#,
                true,
            ),
            (r#","device":{"hostname":"h"}}"#, true),
            (r#","device":{"hostname":"h\"q\u00e9","x":null}}"#, true),
            (r#","device":{}}"#, true),
            (r#","device":{"region":{"nested":"object"}}}"#, true),
            (
                r#", "device" : { "hostname" : "h" , "region" : "x" } }"#,
                true,
            ),
            // a device that is not an object, or none
            (r#","device":"h"}"#, true),
            (r#","device":["h"]}"#, true),
            (r#","device":7}"#, true),
            (r#","device":null}"#, true),
            (r#"}"#, true),
            // names sharing a duplicate-check signature (length, first and last byte)
            (r#","abc":1,"axc":2,"device":{"hostname":"h"}}"#, true),
            // repeated or escaped names in device: the tree path keeps the last / unescapes
            (r#","device":{"hostname":"a","hostname":"b"}}"#, false),
            (
                r#","device":{"region":"x","hostname":"h","region":"y"}}"#,
                false,
            ),
            (r#","device":{"host\u006eame":"h"}}"#, false),
            (
                r#","device":{"r\u0065gion":"us-ca","hostname":"h"}}"#,
                false,
            ),
            // repeated top-level names anywhere, escaped top-level names
            (
                r#","a":1,"b":2,"c":3,"d":4,"e":5,"f":6,"g":7,"h":8,"i":9,"a":10}"#,
                false,
            ),
            (
                r#","device":{"hostname":"a"},"device":{"hostname":"b"}}"#,
                false,
            ),
            (r#","time_ns":2}"#, false),
            (r#","d\u0065vice":{"hostname":"b"}}"#, false),
            // repeated uid in metadata is caught by the metadata's own parse
        ];
        let mut body = String::new();
        for (i, (rest, takes)) in cases.iter().enumerate() {
            let line = format!("{}{rest}", head.replace("ID", &i.to_string()));
            assert_eq!(fast_path(&line).is_some(), *takes, "{line}");
            body.push_str(&line);
            body.push('\n');
        }
        body.push_str(r#"{"metadata":{"uid":"m","uid":"n"},"type":"x","time_ns":1}"#);
        assert!(fast_path(body.lines().last().expect("a line")).is_none());
        let noop = Anonymiser::new(
            serde_json::from_str("{}").expect("empty policy"),
            &[7u8; 32],
        )
        .expect("anonymiser");
        let fast = parse_batch(body.as_bytes(), &sender(), None, 10);
        let tree = parse_batch(body.as_bytes(), &sender(), Some(&noop), 10);
        assert!(fast.rejected.is_empty(), "{:?}", fast.rejected);
        assert_eq!(fast.rows.len(), cases.len() + 1);
        assert_eq!(fast.rows.len(), tree.rows.len());
        for (mut f, mut t) in fast.rows.into_iter().zip(tree.rows) {
            let fj: Value = serde_json::from_str(&f.json).expect("fast path writes JSON");
            let tj: Value = serde_json::from_str(&t.json).expect("tree path writes JSON");
            assert_eq!(fj, tj, "{}", f.json);
            assert_eq!(fj["device"]["region"], "eu-de", "{}", f.json);
            // One region member, whatever the record had.
            assert_eq!(f.json.matches("\"region\"").count(), 1, "{}", f.json);
            f.json.clear();
            t.json.clear();
            assert_eq!(f, t);
        }
    }

    #[test]
    fn repeated_ids_keep_the_first_row() {
        let body = br#"{"metadata":{"uid":"a"},"type":"t","time_ns":1,"rule":"first"}
{"metadata":{"uid":"b"},"type":"t","time_ns":1}
{"metadata":{"uid":"a"},"type":"t","time_ns":1,"rule":"second"}
{"metadata":{"uid":"\u0061"},"type":"t","time_ns":1,"rule":"third"}
{"metadata":{"uid":"b"},"type":"t","time_ns":1}"#;
        let b = parse_batch(body, &sender(), None, 10);
        assert_eq!(
            b.rows
                .iter()
                .map(|r| (r.id.as_str(), r.rule.as_str()))
                .collect::<Vec<_>>(),
            [("a", "first"), ("b", "")]
        );
        assert_eq!(b.duplicates_in_batch, 3);
    }

    #[test]
    fn decompression_is_capped() {
        let big = vec![b' '; MAX_INGEST_BODY + 10];
        // The frame says how large it is: refused before decompressing.
        let z = zstd::bulk::compress(&big, 1).unwrap_or_default();
        assert_eq!(recorded_size(&z), Some(MAX_INGEST_BODY + 10));
        assert_eq!(decode_body(&z, Some("zstd")), Err(BodyError::TooLarge));
        // It does not: refused once the output passes the cap.
        let mut enc = zstd::stream::write::Encoder::new(Vec::new(), 1).expect("encoder");
        std::io::Write::write_all(&mut enc, &big).expect("writes");
        let z = enc.finish().expect("finishes");
        assert_eq!(recorded_size(&z), None);
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

    #[test]
    fn zstd_bodies_with_and_without_recorded_sizes_decode() {
        // Two frames that record their sizes (bulk compression): one exact allocation.
        let mut two = zstd::bulk::compress(b"hello ", 3).expect("compresses");
        two.extend(zstd::bulk::compress(b"world", 3).expect("compresses"));
        assert_eq!(recorded_size(&two), Some(11));
        assert_eq!(
            decode_body(&two, Some("zstd")).as_deref(),
            Ok(&b"hello world"[..])
        );
        // A streaming compressor's frame does not record its size: read up to the cap.
        let mut enc = zstd::stream::write::Encoder::new(Vec::new(), 1).expect("encoder");
        std::io::Write::write_all(&mut enc, b"streamed").expect("writes");
        let streamed = enc.finish().expect("finishes");
        assert_eq!(recorded_size(&streamed), None);
        assert_eq!(
            decode_body(&streamed, Some("zstd")).as_deref(),
            Ok(&b"streamed"[..])
        );
        // Not zstd, a truncated frame, trailing bytes after a frame: errors, not panics.
        assert!(matches!(
            decode_body(b"not zstd", Some("zstd")),
            Err(BodyError::Zstd(_))
        ));
        assert!(matches!(
            decode_body(&small_frame()[..small_frame().len() - 2], Some("zstd")),
            Err(BodyError::Zstd(_))
        ));
        let mut trailing = small_frame();
        trailing.extend_from_slice(b"xx");
        assert_eq!(recorded_size(&trailing), None);
        assert!(matches!(
            decode_body(&trailing, Some("zstd")),
            Err(BodyError::Zstd(_))
        ));
    }

    fn small_frame() -> Vec<u8> {
        zstd::bulk::compress(b"hello hello hello", 3).expect("compresses")
    }
}
