//! Turning an ingest batch into stored records: size-capped decompression, lines parsed one
//! at a time up to a line cap, the agent's enrolled host name and region stamped on every
//! record (a claim of another host kept as `device.claimed_hostname`), event times clamped
//! into [enrollment, now + 5 min] (the original kept as `claimed_time_ns`), the region's
//! anonymisation, the columns.
//!
//! Invariants: every stored record of an enrolled agent has that agent's host name, agent id
//! and region; the fast path (no tree) and the tree path store the same record or refuse the
//! same line (tests `fast_path_*`, `both_paths_agree_on_any_claimed_host_and_time`).

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

/// The largest record stored: longer lines are rejected alone (the rest of the batch is
/// kept). The agent's largest records (`inventory.image` package lists) stay far below it; it
/// bounds what a read of stored records can be made to hold per record.
pub const MAX_RECORD_BYTES: usize = 4 << 20;

/// Why a batch body could not be read at all.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BodyError {
    #[error("content-encoding {0:?} is not supported (use zstd or none)")]
    Encoding(String),
    #[error("body is not valid zstd: {0}")]
    Zstd(String),
    #[error("body decompresses to more than {0} bytes (limits.ingest_body_bytes)")]
    TooLarge(usize),
    #[error("batch has more than {0} lines (limits.ingest_lines)")]
    TooManyLines(usize),
}

/// [`decode_body_capped`] at [`MAX_INGEST_BODY`].
pub fn decode_body(body: &[u8], encoding: Option<&str>) -> Result<Vec<u8>, BodyError> {
    decode_body_capped(body, encoding, MAX_INGEST_BODY)
}

/// Decompresses `body` per `encoding` (`zstd`, or none), refusing more than `cap` bytes of
/// output: the one place the server decompresses input.
pub fn decode_body_capped(
    body: &[u8],
    encoding: Option<&str>,
    cap: usize,
) -> Result<Vec<u8>, BodyError> {
    match encoding.map(str::trim) {
        None | Some("") | Some("identity") => {
            if body.len() > cap {
                return Err(BodyError::TooLarge(cap));
            }
            Ok(body.to_vec())
        }
        Some("zstd") => match recorded_size(body) {
            // Every frame records its size (the agent's bulk compression does): one
            // allocation of exactly that size, refused up front when over the cap.
            Some(size) => {
                if size > cap {
                    return Err(BodyError::TooLarge(cap));
                }
                zstd::bulk::decompress(body, size).map_err(|e| BodyError::Zstd(e.to_string()))
            }
            // A streaming compressor's frames may not say: read until the cap.
            _ => {
                let dec = zstd::stream::read::Decoder::new(body)
                    .map_err(|e| BodyError::Zstd(e.to_string()))?;
                let mut out = Vec::new();
                dec.take(cap as u64 + 1)
                    .read_to_end(&mut out)
                    .map_err(|e| BodyError::Zstd(e.to_string()))?;
                if out.len() > cap {
                    return Err(BodyError::TooLarge(cap));
                }
                Ok(out)
            }
        },
        Some(other) => Err(BodyError::Encoding(other.to_string())),
    }
}

/// The size `body` decompresses to per `encoding`, as far as known before decompressing:
/// exact without encoding and for zstd frames that record their size, else `cap`.
pub fn decoded_size_hint(body: &[u8], encoding: Option<&str>, cap: usize) -> usize {
    match encoding.map(str::trim) {
        None | Some("") | Some("identity") => body.len(),
        Some("zstd") => recorded_size(body).unwrap_or(cap).min(cap),
        Some(_) => 0,
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
    /// The host name recorded when the agent enrolled: every record's `device.hostname`
    /// becomes it, a different name the record gives is kept as `device.claimed_hostname`.
    /// `None` for the in-process pipeline of `rampart up`, whose records come from the
    /// server's own host and keep their host name.
    pub hostname: Option<String>,
    /// When the agent enrolled, ns: the earliest event time accepted (0: none).
    pub enrolled_ns: u64,
}

impl Sender {
    /// A sender whose records keep their host name and any event time up to the future bound
    /// (the in-process pipeline, benchmarks).
    pub fn local(agent_id: &str, region: &str) -> Sender {
        Sender {
            agent_id: agent_id.to_string(),
            region: region.to_string(),
            hostname: None,
            enrolled_ns: 0,
        }
    }
}

/// How far ahead of the server's clock an event time may be: later ones are clamped.
pub const MAX_CLOCK_AHEAD_NS: u64 = 5 * 60 * 1_000_000_000;

/// A parsed batch.
#[derive(Debug, Default)]
pub struct ParsedBatch {
    pub rows: Vec<StoredRecord>,
    pub rejected: Vec<RejectedLine>,
    /// Lines repeating an id seen earlier in the same batch.
    pub duplicates_in_batch: u64,
    /// Records whose `device.hostname` named another host than the sender's enrolled one
    /// (stored under the enrolled host, the claim in `device.claimed_hostname`).
    pub identity_claims: u64,
    /// The first few host names claimed (for the alert).
    pub claimed_hosts: Vec<String>,
    /// The id of the first record that claimed another host.
    pub first_claim_id: Option<String>,
    /// The host column of that record: the enrolled name, or its pseudonym in a region that
    /// pseudonymises host names.
    pub claimant_host: Option<String>,
    /// Records whose `time_ns` was outside [enrollment, now + 5 min] and was clamped (the
    /// original in `claimed_time_ns`).
    pub clock_clamped: u64,
    /// Lines read (empty ones included).
    pub lines: u64,
}

/// At most this many claimed host names are named in a batch's alert.
const CLAIMED_HOSTS_KEPT: usize = 8;

fn str_at<'a>(v: &'a Value, pointer: &str) -> &'a str {
    v.pointer(pointer).and_then(Value::as_str).unwrap_or("")
}

/// [`parse_batch_capped`] without a line limit (the in-process pipeline, whose batches the
/// agent's own queue bounds).
pub fn parse_batch(
    body: &[u8],
    sender: &Sender,
    anonymiser: Option<&Anonymiser>,
    now_ns: u64,
) -> ParsedBatch {
    parse_lines(body, sender, anonymiser, now_ns, usize::MAX, false).unwrap_or_default()
}

/// Parses a JSON-lines batch from `sender`: every record gets `device.region` set to the
/// sender's region (a record cannot claim another jurisdiction) and, for an enrolled agent,
/// `device.hostname` set to its enrolled host name (a record cannot speak for another host);
/// `time_ns` is clamped into [enrollment, now + 5 min]; then `anonymiser` applied.
/// Malformed lines are rejected individually; the rest are kept. Of lines repeating an id, the
/// first is kept and the others counted in `duplicates_in_batch`.
///
/// Lines are read one at a time as they are parsed (nothing is kept per empty line); more
/// than `max_lines` lines (a final newline does not start one) refuse the whole batch with
/// [`BodyError::TooManyLines`].
pub fn parse_batch_capped(
    body: &[u8],
    sender: &Sender,
    anonymiser: Option<&Anonymiser>,
    now_ns: u64,
    max_lines: usize,
) -> Result<ParsedBatch, BodyError> {
    parse_lines(body, sender, anonymiser, now_ns, max_lines, true)
}

/// `nesting_checked`: records nested deeper than the JSON tree allows are refused by both
/// paths (without: the fast path stores them, as the in-process pipeline always did).
fn parse_lines(
    body: &[u8],
    sender: &Sender,
    anonymiser: Option<&Anonymiser>,
    now_ns: u64,
    max_lines: usize,
    nesting_checked: bool,
) -> Result<ParsedBatch, BodyError> {
    let mut ctx = Ctx::new(sender, now_ns);
    ctx.nesting_checked = nesting_checked;
    let fast = anonymiser.is_none().then(|| FastPath::new(&ctx));
    let mut scratch = Scratch::default();
    let mut out = ParsedBatch::default();
    let body = body.strip_suffix(b"\n").unwrap_or(body);
    // A body that is UTF-8 as a whole (the normal case) is split with the standard library's
    // memchr-based search and not validated again line by line. Lines are taken one at a time.
    let lines: Box<dyn Iterator<Item = (&[u8], Option<&str>)>> = match std::str::from_utf8(body) {
        Ok(text) => Box::new(text.split('\n').map(|l| (l.as_bytes(), Some(l)))),
        Err(_) => Box::new(
            body.split(|b| *b == b'\n')
                .map(|l| (l, std::str::from_utf8(l).ok())),
        ),
    };
    let mut count = 0usize;
    for (i, (line, text)) in lines.enumerate() {
        if i >= max_lines {
            return Err(BodyError::TooManyLines(max_lines));
        }
        count = i + 1;
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        if line.len() > MAX_RECORD_BYTES {
            out.rejected.push(RejectedLine {
                line: i + 1,
                error: format!(
                    "record is {} bytes; records above {MAX_RECORD_BYTES} bytes are not stored",
                    line.len()
                ),
            });
            continue;
        }
        let fast_row = match (&fast, text) {
            (Some(f), Some(t)) => f.parse(t, &mut scratch),
            _ => None,
        };
        let row = match fast_row {
            Some(row) => Ok(row),
            None => parse_line_tree(line, &ctx, anonymiser),
        };
        match row {
            Ok((row, flags)) => {
                if let Some(claimed) = flags.claimed_host {
                    if out.first_claim_id.is_none() {
                        out.first_claim_id = Some(row.id.clone());
                        out.claimant_host = Some(row.host.clone());
                    }
                    out.identity_claims += 1;
                    if out.claimed_hosts.len() < CLAIMED_HOSTS_KEPT
                        && !out.claimed_hosts.contains(&claimed)
                    {
                        out.claimed_hosts.push(claimed);
                    }
                }
                out.clock_clamped += u64::from(flags.clamped);
                out.rows.push(row);
            }
            Err(error) => out.rejected.push(RejectedLine { line: i + 1, error }),
        }
    }
    out.lines = count as u64;
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
    Ok(out)
}

/// What the server changed in a record it stores.
#[derive(Debug, Default)]
struct Flags {
    /// The host name the record gave, when it is not the sender's.
    claimed_host: Option<String>,
    /// `time_ns` was clamped.
    clamped: bool,
}

/// What every record of a batch is checked against.
struct Ctx<'s> {
    sender: &'s Sender,
    now_ns: u64,
    /// Event times outside [min, max] are clamped.
    min_time_ns: u64,
    max_time_ns: u64,
    /// Leave records nested deeper than [`FAST_PATH_MAX_DEPTH`] to the tree path.
    nesting_checked: bool,
}

impl<'s> Ctx<'s> {
    fn new(sender: &'s Sender, now_ns: u64) -> Self {
        let max_time_ns = now_ns.saturating_add(MAX_CLOCK_AHEAD_NS);
        Ctx {
            sender,
            now_ns,
            min_time_ns: sender.enrolled_ns.min(max_time_ns),
            max_time_ns,
            nesting_checked: true,
        }
    }

    /// The event time stored, and whether it was clamped.
    fn clamp(&self, time_ns: u64) -> (u64, bool) {
        let t = time_ns.clamp(self.min_time_ns, self.max_time_ns);
        (t, t != time_ns)
    }

    /// The host name stored for a record that names `claimed`, and the claim when it is
    /// another host's (an empty name claims nothing).
    fn host<'a>(&'a self, claimed: &'a str) -> (&'a str, bool) {
        match &self.sender.hostname {
            Some(h) => (h, !claimed.is_empty() && claimed != h),
            None => (claimed, false),
        }
    }
}

/// The alert raised for a batch in which `sender` claimed other hosts' identity: stored under
/// the sender's enrolled host, agent and region, its id derived from the first such record's
/// (a retried batch raises it once).
pub fn identity_claim_alert(
    sender: &Sender,
    parsed: &ParsedBatch,
    now_ns: u64,
) -> Option<StoredRecord> {
    let first = parsed.first_claim_id.as_deref()?;
    let host = parsed
        .claimant_host
        .clone()
        .or_else(|| sender.hostname.clone())
        .unwrap_or_default();
    let claimed = parsed.claimed_hosts.join(", ");
    let output = format!(
        "agent {} enrolled as host {host:?} sent {} record(s) claiming host(s) {claimed}; stored under {host:?}",
        sender.agent_id, parsed.identity_claims
    );
    let alert = rampart_event::Alert {
        id: rampart_event::EventId(format!("identity-claim-{first}")),
        time_ns: now_ns,
        rule: IDENTITY_CLAIM_RULE.into(),
        description: "An enrolled agent sent records naming another host than the one it enrolled as: a compromised or misconfigured host trying to speak for another.".into(),
        priority: rampart_event::Priority::Critical,
        tags: vec!["server".into(), "identity".into()].into(),
        output,
        output_fields: rampart_event::OutputFields::from([
            ("agent.id".to_string(), sender.agent_id.clone()),
            ("claimed.hostnames".to_string(), claimed),
            ("claimed.records".to_string(), parsed.identity_claims.to_string()),
        ]),
        source: "server".into(),
        device: std::sync::Arc::new(rampart_event::Device {
            hostname: host.clone(),
            region: Some(sender.region.clone()),
        }),
        container: None,
        process: None,
        events: Vec::new(),
    };
    let json = serde_json::to_string(&alert).ok()?;
    Some(StoredRecord {
        id: alert.id.0.clone(),
        kind: RecordKind::Alert,
        event_type: "alert".into(),
        time_ns: now_ns,
        day: day_of(now_ns),
        host,
        region: sender.region.clone(),
        agent_id: sender.agent_id.clone(),
        container_id: String::new(),
        container_name: String::new(),
        image: String::new(),
        rule: IDENTITY_CLAIM_RULE.into(),
        priority: alert.priority.as_str().into(),
        severity: alert.priority.severity_id(),
        ingested_ns: now_ns,
        json,
    })
}

/// The rule name of [`identity_claim_alert`].
pub const IDENTITY_CLAIM_RULE: &str = "Agent claims another host's identity";

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
struct FastPath<'c> {
    ctx: &'c Ctx<'c>,
    /// The sender's region as a JSON string.
    region_json: String,
    /// The sender's enrolled host name as a JSON string.
    hostname_json: Option<String>,
    /// The `device` of a record without a device object.
    default_device: String,
}

impl<'c> FastPath<'c> {
    fn new(ctx: &'c Ctx<'c>) -> Self {
        let sender = ctx.sender;
        FastPath {
            ctx,
            region_json: Value::String(sender.region.clone()).to_string(),
            hostname_json: sender
                .hostname
                .as_ref()
                .map(|h| Value::String(h.clone()).to_string()),
            default_device: serde_json::json!({
                "hostname": sender.hostname.as_deref().unwrap_or(""),
                "region": sender.region,
            })
            .to_string(),
        }
    }

    fn parse<'b>(&self, text: &'b str, scratch: &mut Scratch<'b>) -> Option<(StoredRecord, Flags)> {
        // Skipping a member's value (RawValue) has no nesting limit, the JSON tree has one
        // (serde_json's 128): records nested deeper go to the tree path, which refuses them,
        // so that no stored record is too deep for those who read it.
        if self.ctx.nesting_checked && nested_deeper_than(text, FAST_PATH_MAX_DEPTH) {
            return None;
        }
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
        let claimed_time: u64 = serde_json::from_str(cols.time_ns?.get()).ok()?;
        let (time_ns, clamped) = self.ctx.clamp(claimed_time);
        let device = cols.device.filter(|d| d.get().starts_with('{'));
        let (host, claim) = match device {
            Some(d) => {
                Members(&mut scratch.device)
                    .deserialize(&mut serde_json::Deserializer::from_str(d.get()))
                    .ok()?;
                let claimed_raw = find(&scratch.device, "hostname");
                let claimed = str_or_empty(claimed_raw);
                match self.ctx.host(&claimed) {
                    // The record's own name is the one stored: no second copy.
                    (host, false) if host == claimed => (claimed, None),
                    (host, false) => (host.to_string(), None),
                    (host, true) => (host.to_string(), Some((claimed, claimed_raw))),
                }
            }
            None => (self.ctx.sender.hostname.clone().unwrap_or_default(), None),
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
        let claimed_raw = claim.as_ref().and_then(|(_, raw)| *raw);
        let json = self.rewrite(
            text.len(),
            top,
            device.map(|_| &scratch.device[..]),
            clamped.then_some((time_ns, cols.time_ns?)),
            claimed_raw,
        );
        let kind = if event_type == "alert" {
            RecordKind::Alert
        } else {
            RecordKind::Event
        };
        let record = StoredRecord {
            kind,
            day: retention_day(time_ns, self.ctx.now_ns),
            host,
            region: self.ctx.sender.region.clone(),
            agent_id: self.ctx.sender.agent_id.clone(),
            container_id,
            container_name,
            image,
            rule: str_or_empty(cols.rule),
            priority: str_or_empty(cols.priority),
            severity: cols
                .severity_id
                .and_then(|s| serde_json::from_str::<u64>(s.get()).ok())
                .map_or(0, |s| s.min(255) as u8),
            ingested_ns: self.ctx.now_ns,
            json,
            id: id.into_owned(),
            event_type,
            time_ns,
        };
        let flags = Flags {
            claimed_host: claim.map(|(c, _)| c),
            clamped,
        };
        Some((record, flags))
    }

    /// The record's JSON with `device` rewritten (`device`: the device object's members when
    /// it is one, `None` when the record's `device` is absent or not an object), `time_ns`
    /// replaced and the original kept as `claimed_time_ns` when `clamped`, and the record's
    /// host name kept as `device.claimed_hostname` when it claims another host.
    fn rewrite(
        &self,
        len: usize,
        top: &[(&str, &RawValue)],
        device: Option<&[(&str, &RawValue)]>,
        clamped: Option<(u64, &RawValue)>,
        claimed_host: Option<&RawValue>,
    ) -> String {
        let mut json = String::with_capacity(len + self.default_device.len() + 16);
        let write_device = |j: &mut String| self.write_device(j, device, claimed_host);
        match clamped {
            None => write_replacing(&mut json, top, &[("device", &write_device)], &[]),
            Some((time_ns, original)) => {
                let time = |j: &mut String| j.push_str(&time_ns.to_string());
                let claimed = |j: &mut String| j.push_str(original.get());
                write_replacing(
                    &mut json,
                    top,
                    &[("device", &write_device), ("time_ns", &time)],
                    &[("claimed_time_ns", &claimed)],
                );
            }
        }
        json
    }

    fn write_device(
        &self,
        json: &mut String,
        device: Option<&[(&str, &RawValue)]>,
        claimed_host: Option<&RawValue>,
    ) {
        let region = |j: &mut String| j.push_str(&self.region_json);
        match (device, &self.hostname_json) {
            (Some(members), None) => write_replacing(json, members, &[("region", &region)], &[]),
            (Some(members), Some(host)) => {
                let hostname = |j: &mut String| j.push_str(host);
                match claimed_host {
                    None => write_replacing(
                        json,
                        members,
                        &[("region", &region), ("hostname", &hostname)],
                        &[],
                    ),
                    Some(raw) => {
                        let claim = |j: &mut String| j.push_str(raw.get());
                        write_replacing(
                            json,
                            members,
                            &[("region", &region), ("hostname", &hostname)],
                            &[("claimed_hostname", &claim)],
                        )
                    }
                }
            }
            (None, _) => json.push_str(&self.default_device),
        }
    }
}

/// Records nested deeper than this are left to the tree path (which refuses more than 128).
const FAST_PATH_MAX_DEPTH: usize = 100;

/// True when `text` (JSON) nests arrays and objects deeper than `max`. Hand-written, because
/// it runs on every record: a count of the opening brackets first (a vectorised pass; a
/// record with fewer cannot nest deeper), the exact walk, outside strings, only when needed.
fn nested_deeper_than(text: &str, max: usize) -> bool {
    let b = text.as_bytes();
    // `[` and `{` are the bytes that `| 0x20` makes `{`; summed in u8 per 128 bytes so that
    // the loop vectorises.
    let openers: usize = b
        .chunks(128)
        .map(|c| {
            c.iter()
                .map(|&x| u8::from((x | 0x20) == b'{'))
                .fold(0u8, u8::wrapping_add) as usize
        })
        .sum();
    if openers <= max {
        return false;
    }
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    for &c in b {
        if in_string {
            match (escaped, c) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match c {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > max {
                    return true;
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    false
}

/// A writer of one member's value.
type WriteValue<'a> = &'a dyn Fn(&mut String);

/// Writes the object of `members` with the values of the members named in `replace` written
/// by their writers (added at the end when the object has no such member), then the members
/// of `append`. Borrowed member names have no escapes, so they are written as they came.
fn write_replacing(
    json: &mut String,
    members: &[(&str, &RawValue)],
    replace: &[(&str, WriteValue<'_>)],
    append: &[(&str, WriteValue<'_>)],
) {
    json.push('{');
    // One bit per entry of `replace` (at most a few) that was written.
    let mut replaced = 0u32;
    let mut first = true;
    let mut member = |json: &mut String, k: &str| {
        if !first {
            json.push(',');
        }
        first = false;
        json.push('"');
        json.push_str(k);
        json.push_str("\":");
    };
    for (k, v) in members {
        member(json, k);
        match replace.iter().position(|(n, _)| n == k) {
            Some(i) => {
                (replace[i].1)(json);
                replaced |= 1 << i;
            }
            None => json.push_str(v.get()),
        }
    }
    for (i, (k, w)) in replace.iter().enumerate() {
        if replaced & (1 << i) == 0 {
            member(json, k);
            w(json);
        }
    }
    for (k, w) in append {
        member(json, k);
        w(json);
    }
    json.push('}');
}

/// The general path: the record as a JSON tree, anonymised when the region says so.
fn parse_line_tree(
    line: &[u8],
    ctx: &Ctx<'_>,
    anonymiser: Option<&Anonymiser>,
) -> Result<(StoredRecord, Flags), String> {
    let sender = ctx.sender;
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
    let claimed_time = obj
        .get("time_ns")
        .and_then(Value::as_u64)
        .ok_or("no time_ns")?;
    let (time_ns, clamped) = ctx.clamp(claimed_time);
    if clamped {
        obj.insert("time_ns".into(), time_ns.into());
        obj.insert("claimed_time_ns".into(), claimed_time.into());
    }
    let mut flags = Flags {
        claimed_host: None,
        clamped,
    };
    // The sender's region (and enrolled host), whatever the record says.
    match obj.get_mut("device").and_then(Value::as_object_mut) {
        Some(d) => {
            d.insert("region".into(), Value::String(sender.region.clone()));
            if let Some(h) = &sender.hostname {
                let claimed = d.get("hostname").and_then(Value::as_str).unwrap_or("");
                if ctx.host(claimed).1 {
                    flags.claimed_host = Some(claimed.to_string());
                    if let Some(old) = d.insert("hostname".into(), Value::String(h.clone())) {
                        d.insert("claimed_hostname".into(), old);
                    }
                } else {
                    d.insert("hostname".into(), Value::String(h.clone()));
                }
            }
        }
        None => {
            obj.insert(
                "device".into(),
                serde_json::json!({
                    "hostname": sender.hostname.as_deref().unwrap_or(""),
                    "region": sender.region,
                }),
            );
        }
    }
    if let Some(a) = anonymiser {
        a.apply(&mut v);
        // A region that pseudonymises host names gets the claimed name pseudonymised too
        // (the anonymiser only knows `device.hostname`).
        if let (Some(claimed), Some(enrolled)) = (&flags.claimed_host, &sender.hostname) {
            if let Some(d) = v.get_mut("device").and_then(Value::as_object_mut) {
                if d.get("hostname").and_then(Value::as_str) != Some(enrolled.as_str()) {
                    let pseudonym = a.host_pseudonym(claimed);
                    d.insert("claimed_hostname".into(), Value::String(pseudonym.clone()));
                    flags.claimed_host = Some(pseudonym);
                }
            }
        }
    }
    let kind = if event_type == "alert" {
        RecordKind::Alert
    } else {
        RecordKind::Event
    };
    let day = retention_day(time_ns, ctx.now_ns);
    let record = StoredRecord {
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
        ingested_ns: ctx.now_ns,
        json: v.to_string(),
        id,
        event_type,
        time_ns,
    };
    Ok((record, flags))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sender() -> Sender {
        Sender::local("agt-1", "eu-de")
    }

    /// The server's clock in these tests.
    const NOW: u64 = 1_800_000_000_000_000_000;

    #[test]
    fn good_lines_are_kept_bad_ones_rejected_with_line_numbers() {
        let body = b"{\"metadata\":{\"uid\":\"a\"},\"type\":\"process.exec\",\"time_ns\":5,\"device\":{\"hostname\":\"h\",\"region\":\"us-ca\"}}\n\
not json\n\
{\"metadata\":{\"uid\":\"a\"},\"type\":\"process.exec\",\"time_ns\":5}\n\
\n\
{\"type\":\"x\",\"time_ns\":1}\n";
        let b = parse_batch(body, &sender(), None, NOW);
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
        let b = parse_batch(&body, &sender(), None, NOW);
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
        let ctx = Ctx::new(&s, NOW);
        FastPath::new(&ctx)
            .parse(line, &mut Scratch::default())
            .map(|r| r.0)
    }

    fn tree_path(line: &str) -> Result<StoredRecord, String> {
        let s = sender();
        parse_line_tree(line.as_bytes(), &Ctx::new(&s, NOW), None).map(|r| r.0)
    }

    /// The columns and the stored JSON (as a value) of both paths, side by side.
    fn both(line: &str) -> (StoredRecord, StoredRecord) {
        let fast = fast_path(line).unwrap_or_else(|| panic!("the fast path takes {line}"));
        let tree = tree_path(line).expect("valid record");
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
                assert!(tree_path(l).is_err());
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
        let fast = parse_batch(body.as_bytes(), &sender(), None, NOW);
        let tree = parse_batch(body.as_bytes(), &sender(), Some(&noop), NOW);
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
        let b = parse_batch(body, &sender(), None, NOW);
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
        assert_eq!(
            decode_body(&z, Some("zstd")),
            Err(BodyError::TooLarge(MAX_INGEST_BODY))
        );
        // It does not: refused once the output passes the cap.
        let mut enc = zstd::stream::write::Encoder::new(Vec::new(), 1).expect("encoder");
        std::io::Write::write_all(&mut enc, &big).expect("writes");
        let z = enc.finish().expect("finishes");
        assert_eq!(recorded_size(&z), None);
        assert_eq!(
            decode_body(&z, Some("zstd")),
            Err(BodyError::TooLarge(MAX_INGEST_BODY))
        );
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

    fn enrolled() -> Sender {
        Sender {
            agent_id: "agt-1".into(),
            region: "eu-de".into(),
            hostname: Some("web-1".into()),
            enrolled_ns: NOW - 1_000,
        }
    }

    /// Both paths of one line for `sender`: (fast, tree), each with its flags.
    fn both_for(
        sender: &Sender,
        line: &str,
    ) -> (Option<(StoredRecord, Flags)>, (StoredRecord, Flags)) {
        let ctx = Ctx::new(sender, NOW);
        let fast = FastPath::new(&ctx).parse(line, &mut Scratch::default());
        let tree = parse_line_tree(line.as_bytes(), &ctx, None).expect("valid record");
        (fast, tree)
    }

    #[test]
    fn records_are_stored_under_the_enrolled_host_with_the_claim_kept() {
        let s = enrolled();
        let far = NOW + 10 * 365 * 86_400_000_000_000;
        let cases = [
            // (line, claims another host, clamped)
            (
                format!(
                    r#"{{"metadata":{{"uid":"a"}},"type":"inventory.host","time_ns":{far},"device":{{"hostname":"db-1","region":"x"}}}}"#
                ),
                true,
                true,
            ),
            (
                format!(
                    r#"{{"metadata":{{"uid":"b"}},"type":"t","time_ns":{NOW},"device":{{"hostname":"web-1"}}}}"#
                ),
                false,
                false,
            ),
            (
                r#"{"metadata":{"uid":"c"},"type":"t","time_ns":1,"device":{"hostname":""}}"#
                    .to_string(),
                false,
                true,
            ),
            (
                format!(
                    r#"{{"metadata":{{"uid":"d"}},"type":"t","time_ns":{NOW},"device":{{"hostname":"db\u002d1","os":"x"}}}}"#
                ),
                true,
                false,
            ),
            (
                format!(r#"{{"metadata":{{"uid":"e"}},"type":"t","time_ns":{NOW}}}"#),
                false,
                false,
            ),
            (
                format!(
                    r#"{{"metadata":{{"uid":"f"}},"type":"t","time_ns":{NOW},"device":"db-1"}}"#
                ),
                false,
                false,
            ),
            (
                format!(
                    r#"{{"metadata":{{"uid":"g"}},"type":"t","time_ns":{NOW},"device":{{"hostname":5}}}}"#
                ),
                false,
                false,
            ),
        ];
        for (line, claims, clamped) in &cases {
            let (fast, (tree, tree_flags)) = both_for(&s, line);
            let (fast, fast_flags) = fast.unwrap_or_else(|| panic!("the fast path takes {line}"));
            assert_eq!(fast_flags.claimed_host.is_some(), *claims, "{line}");
            assert_eq!(tree_flags.claimed_host, fast_flags.claimed_host, "{line}");
            assert_eq!(
                (fast_flags.clamped, tree_flags.clamped),
                (*clamped, *clamped),
                "{line}"
            );
            let fj: Value = serde_json::from_str(&fast.json).expect("JSON");
            let tj: Value = serde_json::from_str(&tree.json).expect("JSON");
            assert_eq!(fj, tj, "{line}");
            assert_eq!(fj["device"]["hostname"], "web-1", "{line}");
            assert_eq!(fj["device"]["region"], "eu-de", "{line}");
            assert_eq!(fast.host, "web-1");
            let t = fj["time_ns"].as_u64().expect("time");
            assert!(
                t >= s.enrolled_ns && t <= NOW + MAX_CLOCK_AHEAD_NS,
                "{line}"
            );
            assert_eq!(t, fast.time_ns);
            if *claims {
                assert_eq!(fj["device"]["claimed_hostname"], "db-1", "{line}");
            } else {
                assert!(fj["device"].get("claimed_hostname").is_none(), "{line}");
            }
            assert_eq!(fj.get("claimed_time_ns").is_some(), *clamped, "{line}");
            let (mut f, mut t) = (fast, tree);
            f.json.clear();
            t.json.clear();
            assert_eq!(f, t, "{line}");
        }
        let body: String = cases.iter().map(|(l, _, _)| format!("{l}\n")).collect();
        let b = parse_batch_capped(body.as_bytes(), &s, None, NOW, 100).expect("parses");
        assert_eq!((b.identity_claims, b.clock_clamped), (2, 2));
        assert_eq!(b.claimed_hosts, ["db-1"]);
        assert_eq!(b.first_claim_id.as_deref(), Some("a"));
        let alert = identity_claim_alert(&s, &b, NOW).expect("an alert");
        assert_eq!(
            (alert.host.as_str(), alert.agent_id.as_str()),
            ("web-1", "agt-1")
        );
        assert_eq!(alert.rule, IDENTITY_CLAIM_RULE);
        assert!(alert.json.contains("db-1"), "{}", alert.json);
    }

    #[test]
    fn a_region_that_pseudonymises_hosts_pseudonymises_the_claim_and_the_alert_too() {
        let s = enrolled();
        let a = Anonymiser::new(
            serde_json::from_str(r#"{"hostnames": true}"#).expect("policy"),
            &[7u8; 32],
        )
        .expect("anonymiser");
        let line = format!(
            r#"{{"metadata":{{"uid":"a"}},"type":"t","time_ns":{NOW},"device":{{"hostname":"db-1"}}}}"#
        );
        let b = parse_batch_capped(line.as_bytes(), &s, Some(&a), NOW, 10).expect("parses");
        let r = &b.rows[0];
        let v: Value = serde_json::from_str(&r.json).expect("JSON");
        assert_eq!(r.host, a.host_pseudonym("web-1"));
        assert_eq!(v["device"]["hostname"], a.host_pseudonym("web-1"));
        assert_eq!(v["device"]["claimed_hostname"], a.host_pseudonym("db-1"));
        assert!(
            !r.json.contains("db-1") && !r.json.contains("web-1"),
            "{}",
            r.json
        );
        let alert = identity_claim_alert(&s, &b, NOW).expect("an alert");
        assert_eq!(alert.host, a.host_pseudonym("web-1"));
        assert!(
            !alert.json.contains("db-1") && !alert.json.contains("\"web-1\""),
            "{}",
            alert.json
        );
    }

    #[test]
    fn line_count_is_capped_before_anything_is_kept_per_line() {
        let s = enrolled();
        // A final newline does not start a line: 3 lines.
        assert!(parse_batch_capped(b"\n\n\n", &s, None, NOW, 3).is_ok());
        assert_eq!(
            parse_batch_capped(b"\n\n\n\n", &s, None, NOW, 3).map(|b| b.lines),
            Err(BodyError::TooManyLines(3))
        );
        let b = parse_batch_capped(b"\n\n x\n", &s, None, NOW, 3).expect("3 lines");
        assert_eq!((b.lines, b.rejected.len()), (3, 1));
        // Not UTF-8 as a whole: the same count.
        assert_eq!(
            parse_batch_capped(b"\xff\n\n\n\n", &s, None, NOW, 3).map(|b| b.lines),
            Err(BodyError::TooManyLines(3))
        );
        // Millions of empty lines: refused at the cap, nothing allocated per line.
        let newlines = vec![b'\n'; 8 << 20];
        assert_eq!(
            parse_batch_capped(&newlines, &s, None, NOW, 100_000).map(|b| b.lines),
            Err(BodyError::TooManyLines(100_000))
        );
    }

    #[test]
    fn records_nested_deeper_than_the_json_tree_allows_are_refused_by_both_paths() {
        let s = enrolled();
        let line = |depth: usize| {
            format!(
                r#"{{"metadata":{{"uid":"n{depth}"}},"type":"t","time_ns":{NOW},"d":{}{}}}"#,
                "[".repeat(depth),
                "]".repeat(depth)
            )
        };
        let ok = parse_batch_capped(line(50).as_bytes(), &s, None, NOW, 10).expect("parses");
        assert_eq!(ok.rows.len(), 1);
        for depth in [200, 100_000] {
            let b = parse_batch_capped(line(depth).as_bytes(), &s, None, NOW, 10).expect("parses");
            assert!(b.rows.is_empty(), "depth {depth}");
            assert!(
                b.rejected[0].error.contains("recursion limit"),
                "{:?}",
                b.rejected
            );
        }
        // Brackets inside strings do not count.
        let in_string = format!(
            r#"{{"metadata":{{"uid":"s"}},"type":"t","time_ns":{NOW},"d":"{}\"{}"}}"#,
            "[".repeat(500),
            "{".repeat(500)
        );
        assert!(!nested_deeper_than(&in_string, FAST_PATH_MAX_DEPTH));
        assert!(nested_deeper_than(&line(101), FAST_PATH_MAX_DEPTH));
        assert!(!nested_deeper_than(&line(98), FAST_PATH_MAX_DEPTH));
    }

    proptest::proptest! {
        /// Generated records with any host name, time and extra members: the fast path stores
        /// what the tree path stores, under the enrolled host, within the clock bounds.
        #[test]
        fn both_paths_agree_on_any_claimed_host_and_time(
            host in proptest::option::of("[a-z0-9.\\-\"\\\\]{0,12}"),
            time in proptest::num::u64::ANY,
            extra in proptest::collection::vec(("[a-z]{1,6}", "[a-z0-9\"\\\\]{0,8}"), 0..4),
        ) {
            let s = enrolled();
            let mut v = serde_json::json!({"metadata": {"uid": "p"}, "type": "t", "time_ns": time});
            if let Some(h) = &host {
                v["device"] = serde_json::json!({"hostname": h, "region": "zz"});
            }
            for (k, val) in &extra {
                v[k.as_str()] = Value::String(val.clone());
            }
            let line = v.to_string();
            let ctx = Ctx::new(&s, NOW);
            let tree = parse_line_tree(line.as_bytes(), &ctx, None);
            let fast = FastPath::new(&ctx).parse(&line, &mut Scratch::default());
            let (tree, tree_flags) = tree.expect("valid");
            proptest::prop_assert_eq!(&tree.host, "web-1");
            proptest::prop_assert!(tree.time_ns >= s.enrolled_ns && tree.time_ns <= NOW + MAX_CLOCK_AHEAD_NS);
            if let Some((fast, fast_flags)) = fast {
                let fj: Value = serde_json::from_str(&fast.json).expect("JSON");
                let tj: Value = serde_json::from_str(&tree.json).expect("JSON");
                proptest::prop_assert_eq!(fj, tj);
                proptest::prop_assert_eq!(fast_flags.claimed_host, tree_flags.claimed_host);
                proptest::prop_assert_eq!(fast_flags.clamped, tree_flags.clamped);
            }
        }
    }

    fn small_frame() -> Vec<u8> {
        zstd::bulk::compress(b"hello hello hello", 3).expect("compresses")
    }
}
