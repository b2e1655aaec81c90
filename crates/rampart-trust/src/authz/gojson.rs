//! Request bodies read the way dockerd reads them: Go's `encoding/json` decoding into moby's
//! structs.
//!
//! What Go does, and what this module does about it:
//!
//! * **Key matching.** A JSON key sets the struct field whose name equals it, else the field
//!   whose name equals it under Unicode simple case folding (Go 1.21+ `foldName`; older Go
//!   `bytes.EqualFold`, same classes). For the ASCII field names of the Engine API that means
//!   ASCII case-insensitively, plus U+212A KELVIN SIGN for `k` and U+017F LATIN SMALL LETTER
//!   LONG S for `s` (`"Bindſ"` sets `Binds`). No other code point folds to an ASCII letter.
//! * **Several keys for one field.** Go decodes each in order into the same field (the last
//!   scalar wins; structs and maps are merged). Rather than reproduce the merge, an object where
//!   two keys set the same field is an [`DecodeError`]: the plugin denies it, saying which keys.
//! * **Unknown keys** are ignored by Go. [`GoObject::unknown`] lists them so the judge can deny
//!   the ones that matter (an unknown `HostConfig` key may be a field of a newer dockerd).
//! * **`null`** leaves a field at its zero value (a nil pointer, slice or map).
//! * **Types.** A value of the wrong JSON type makes dockerd's decode fail (no container is
//!   created), so it is a decode error here too. Integer fields take only integer literals
//!   (`1.0`, `1e3` fail in Go); `interface{}` numbers are floats.
//! * **Strings.** Go replaces invalid UTF-8 and unpaired surrogate escapes by U+FFFD; serde_json
//!   refuses them. Refusing is the safe direction: the plugin denies a body it cannot read the
//!   same way.
//! * **Trailing data.** dockerd's `json.Decoder` reads the first value and ignores the rest;
//!   anything but whitespace after the value is refused here.
//!
//! Written here rather than taken from a crate: no Rust JSON library reproduces Go's field
//! matching, and serde's derive matches keys exactly (the bypass this module closes).

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};

/// A JSON value with object members kept in order, duplicates included.
#[derive(Debug, Clone, PartialEq)]
pub enum GoValue {
    Null,
    Bool(bool),
    /// An integer literal.
    Int(i128),
    /// A number with a fraction or exponent (or out of the 64-bit range).
    Float(f64),
    String(String),
    Array(Vec<GoValue>),
    Object(Vec<(String, GoValue)>),
}

impl GoValue {
    fn type_name(&self) -> &'static str {
        match self {
            GoValue::Null => "null",
            GoValue::Bool(_) => "a boolean",
            GoValue::Int(_) | GoValue::Float(_) => "a number",
            GoValue::String(_) => "a string",
            GoValue::Array(_) => "an array",
            GoValue::Object(_) => "an object",
        }
    }
}

impl<'de> Deserialize<'de> for GoValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<GoValue, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = GoValue;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON value")
            }
            fn visit_unit<E>(self) -> Result<GoValue, E> {
                Ok(GoValue::Null)
            }
            fn visit_none<E>(self) -> Result<GoValue, E> {
                Ok(GoValue::Null)
            }
            fn visit_bool<E>(self, v: bool) -> Result<GoValue, E> {
                Ok(GoValue::Bool(v))
            }
            fn visit_i64<E>(self, v: i64) -> Result<GoValue, E> {
                Ok(GoValue::Int(v.into()))
            }
            fn visit_u64<E>(self, v: u64) -> Result<GoValue, E> {
                Ok(GoValue::Int(v.into()))
            }
            fn visit_f64<E>(self, v: f64) -> Result<GoValue, E> {
                Ok(GoValue::Float(v))
            }
            fn visit_str<E>(self, v: &str) -> Result<GoValue, E> {
                Ok(GoValue::String(v.to_string()))
            }
            fn visit_string<E>(self, v: String) -> Result<GoValue, E> {
                Ok(GoValue::String(v))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut a: A) -> Result<GoValue, A::Error> {
                let mut out = Vec::new();
                while let Some(v) = a.next_element()? {
                    out.push(v);
                }
                Ok(GoValue::Array(out))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut a: A) -> Result<GoValue, A::Error> {
                let mut out = Vec::new();
                while let Some((k, v)) = a.next_entry::<String, GoValue>()? {
                    out.push((k, v));
                }
                Ok(GoValue::Object(out))
            }
        }
        d.deserialize_any(V)
    }
}

/// Why a body is not read the way dockerd would read it. `path` names the place
/// (`HostConfig.Binds[2]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeError {
    pub path: String,
    pub message: String,
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            write!(f, "{}", self.message)
        } else {
            write!(f, "at {}: {}", self.path, self.message)
        }
    }
}

fn err(path: &str, message: impl Into<String>) -> DecodeError {
    DecodeError {
        path: path.to_string(),
        message: message.into(),
    }
}

/// Parses one JSON document (whitespace may follow it, nothing else).
pub fn parse(body: &[u8]) -> Result<GoValue, DecodeError> {
    let mut de = serde_json::Deserializer::from_slice(body);
    let v = GoValue::deserialize(&mut de).map_err(|e| {
        err(
            "",
            format!("the body is not JSON the plugin can read exactly as dockerd does: {e}"),
        )
    })?;
    de.end()
        .map_err(|e| err("", format!("data after the JSON value: {e}")))?;
    Ok(v)
}

/// Go's fold of a key, for comparison with an ASCII field name: ASCII letters upper-cased,
/// U+212A (Kelvin) to `K`, U+017F (long s) to `S`; any other non-ASCII code point is kept (its
/// fold class has no ASCII member, so it cannot match an ASCII field name).
pub fn fold(key: &str) -> String {
    key.chars()
        .map(|c| match c {
            '\u{212A}' => 'K',
            '\u{017F}' => 'S',
            c => c.to_ascii_uppercase(),
        })
        .collect()
}

/// The fields of one Go struct: its JSON names (Go field names or `json:` tags).
pub type Schema = &'static [&'static str];

/// A JSON object matched against a [`Schema`] as Go would.
#[derive(Debug, Clone)]
pub struct GoObject<'a> {
    path: String,
    fields: BTreeMap<&'static str, (&'a str, &'a GoValue)>,
    /// Keys that set no field (Go ignores them), with their paths.
    pub unknown: Vec<String>,
}

fn join(path: &str, field: &str) -> String {
    if path.is_empty() {
        field.to_string()
    } else {
        format!("{path}.{field}")
    }
}

impl<'a> GoObject<'a> {
    /// Matches `v` (an object, or null for "absent") against `schema`. Two keys setting one
    /// field are an error.
    pub fn new(
        v: &'a GoValue,
        path: &str,
        schema: Schema,
    ) -> Result<Option<GoObject<'a>>, DecodeError> {
        let members = match v {
            GoValue::Null => return Ok(None),
            GoValue::Object(m) => m,
            other => {
                return Err(err(
                    path,
                    format!("expected an object, found {}", other.type_name()),
                ))
            }
        };
        let mut fields: BTreeMap<&'static str, (&'a str, &'a GoValue)> = BTreeMap::new();
        let mut unknown = Vec::new();
        for (k, v) in members {
            let field = schema.iter().copied().find(|f| *f == k).or_else(|| {
                let fk = fold(k);
                schema.iter().copied().find(|f| fold(f) == fk)
            });
            match field {
                Some(f) => {
                    if let Some((first, _)) = fields.get(f) {
                        return Err(err(
                            &join(path, f),
                            format!(
                                "keys {first:?} and {k:?} both set the field {f} (dockerd's Go decoder matches keys case-insensitively and the last one wins): refused as ambiguous"
                            ),
                        ));
                    }
                    fields.insert(f, (k.as_str(), v));
                }
                None => unknown.push(join(path, k)),
            }
        }
        Ok(Some(GoObject {
            path: path.to_string(),
            fields,
            unknown,
        }))
    }

    /// The path of `field` in this object.
    pub fn path_of(&self, field: &str) -> String {
        join(&self.path, field)
    }

    /// The value of `field`, `None` when absent or null.
    pub fn value(&self, field: &'static str) -> Option<&'a GoValue> {
        self.fields
            .get(field)
            .map(|(_, v)| *v)
            .filter(|v| **v != GoValue::Null)
    }

    /// The key the request spelled `field` with.
    pub fn key(&self, field: &'static str) -> Option<&'a str> {
        self.fields.get(field).map(|(k, _)| *k)
    }

    /// Whether `field` is present and not null.
    pub fn is_set(&self, field: &'static str) -> bool {
        self.value(field).is_some()
    }

    fn mismatch(&self, field: &str, want: &str, got: &GoValue) -> DecodeError {
        err(
            &self.path_of(field),
            format!(
                "expected {want}, found {} (dockerd refuses the request)",
                got.type_name()
            ),
        )
    }

    pub fn bool(&self, field: &'static str) -> Result<Option<bool>, DecodeError> {
        match self.value(field) {
            None => Ok(None),
            Some(GoValue::Bool(b)) => Ok(Some(*b)),
            Some(v) => Err(self.mismatch(field, "a boolean", v)),
        }
    }

    pub fn string(&self, field: &'static str) -> Result<String, DecodeError> {
        match self.value(field) {
            None => Ok(String::new()),
            Some(GoValue::String(s)) => Ok(s.clone()),
            Some(v) => Err(self.mismatch(field, "a string", v)),
        }
    }

    /// An integer field (`int64`); Go refuses `1.0` and `1e3` for it.
    pub fn int(&self, field: &'static str) -> Result<Option<i64>, DecodeError> {
        match self.value(field) {
            None => Ok(None),
            Some(GoValue::Int(i)) => i64::try_from(*i)
                .map(Some)
                .map_err(|_| err(&self.path_of(field), "integer out of range")),
            Some(v) => Err(self.mismatch(field, "an integer", v)),
        }
    }

    /// A `[]string`; a null element is `""` as in Go.
    pub fn strings(&self, field: &'static str) -> Result<Option<Vec<String>>, DecodeError> {
        match self.value(field) {
            None => Ok(None),
            Some(GoValue::Array(a)) => a
                .iter()
                .enumerate()
                .map(|(i, v)| match v {
                    GoValue::String(s) => Ok(s.clone()),
                    GoValue::Null => Ok(String::new()),
                    v => Err(err(
                        &format!("{}[{i}]", self.path_of(field)),
                        format!("expected a string, found {}", v.type_name()),
                    )),
                })
                .collect::<Result<Vec<_>, _>>()
                .map(Some),
            Some(v) => Err(self.mismatch(field, "an array of strings", v)),
        }
    }

    /// moby's `strslice.StrSlice` (`CapAdd`, `Cmd`): an array of strings or one string.
    pub fn strslice(&self, field: &'static str) -> Result<Option<Vec<String>>, DecodeError> {
        match self.value(field) {
            Some(GoValue::String(s)) => Ok(Some(vec![s.clone()])),
            _ => self.strings(field),
        }
    }

    /// A `map[string]string`. Map keys are exact in Go (no folding); a key given twice is
    /// refused (Go keeps the last).
    pub fn string_map(
        &self,
        field: &'static str,
    ) -> Result<Option<Vec<(String, String)>>, DecodeError> {
        match self.value(field) {
            None => Ok(None),
            Some(GoValue::Object(m)) => {
                let mut out: Vec<(String, String)> = Vec::new();
                for (k, v) in m {
                    let p = format!("{}[{k:?}]", self.path_of(field));
                    if out.iter().any(|(x, _)| x == k) {
                        return Err(err(&p, "key given twice: refused as ambiguous"));
                    }
                    let v = match v {
                        GoValue::String(s) => s.clone(),
                        GoValue::Null => String::new(),
                        v => {
                            return Err(err(
                                &p,
                                format!("expected a string, found {}", v.type_name()),
                            ))
                        }
                    };
                    out.push((k.clone(), v));
                }
                Ok(Some(out))
            }
            Some(v) => Err(self.mismatch(field, "an object", v)),
        }
    }

    /// A nested struct.
    pub fn object(
        &self,
        field: &'static str,
        schema: Schema,
    ) -> Result<Option<GoObject<'a>>, DecodeError> {
        match self.fields.get(field) {
            None => Ok(None),
            Some((_, v)) => GoObject::new(v, &self.path_of(field), schema),
        }
    }

    /// A `[]Struct` (or `[]*Struct`); null elements are skipped.
    pub fn objects(
        &self,
        field: &'static str,
        schema: Schema,
    ) -> Result<Vec<GoObject<'a>>, DecodeError> {
        match self.value(field) {
            None => Ok(Vec::new()),
            Some(GoValue::Array(a)) => {
                let mut out = Vec::new();
                for (i, v) in a.iter().enumerate() {
                    if let Some(o) =
                        GoObject::new(v, &format!("{}[{i}]", self.path_of(field)), schema)?
                    {
                        out.push(o);
                    }
                }
                Ok(out)
            }
            Some(v) => Err(self.mismatch(field, "an array", v)),
        }
    }

    /// The fields set to something other than null, in name order.
    pub fn set_fields(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.fields
            .iter()
            .filter(|(_, (_, v))| **v != GoValue::Null)
            .map(|(f, _)| *f)
    }
}

/// Go's `strconv.ParseBool`.
pub fn parse_bool(s: &str) -> Option<bool> {
    match s {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

/// Go's `strconv.Atoi` (a sign, then decimal digits; no spaces, no `_`).
pub fn atoi(s: &str) -> Option<i64> {
    let digits = s.strip_prefix(['+', '-']).unwrap_or(s);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Schema = &[
        "Privileged",
        "Binds",
        "PidMode",
        "Memory",
        "CapAdd",
        "Labels",
    ];

    type Fields = (Vec<&'static str>, Vec<String>);

    fn obj(json: &str) -> Result<Option<Fields>, DecodeError> {
        let v = parse(json.as_bytes())?;
        let v: &'static GoValue = Box::leak(Box::new(v));
        Ok(GoObject::new(v, "", S)?.map(|o| (o.set_fields().collect(), o.unknown.clone())))
    }

    #[test]
    fn keys_match_as_go_does() {
        // Case-insensitive, Kelvin sign and long s included.
        let (f, _) = obj(r#"{"privileged":true,"bindſ":["/:/h"],"PIDMODE":"host","caPadd":"ALL"}"#)
            .expect("ok")
            .expect("some");
        assert_eq!(f, vec!["Binds", "CapAdd", "PidMode", "Privileged"]);
        let (f, _) = obj("{\"\u{212A}\u{212A}\":1,\"Labels\":{}}")
            .expect("ok")
            .expect("o");
        assert_eq!(f, vec!["Labels"]);
        // Escapes in keys are decoded before matching, as in Go.
        let (f, _) = obj(r#"{"\u0050rivileged":true}"#).expect("ok").expect("o");
        assert_eq!(f, vec!["Privileged"]);
        // Unknown keys are listed; look-alikes that do not fold stay unknown.
        let (f, u) = obj("{\"Priv\u{0131}leged\":true,\"Extra\":1}")
            .expect("ok")
            .expect("o");
        assert!(f.is_empty());
        assert_eq!(u.len(), 2);
        // Two keys for one field: refused, naming both.
        let e = obj(r#"{"Privileged":false,"privileged":true}"#).expect_err("ambiguous");
        assert!(e.message.contains("\"Privileged\"") && e.message.contains("\"privileged\""));
        assert!(obj(r#"{"Binds":[],"Bindſ":["/:/h"]}"#).is_err());
        assert!(obj(r#"{"Memory":1,"Memory":2}"#).is_err());
        // null is "absent".
        let (f, _) = obj(r#"{"Privileged":null}"#).expect("ok").expect("o");
        assert!(f.is_empty());
        assert!(obj("null").expect("ok").is_none());
    }

    #[test]
    fn values_typed_as_go_does() {
        let v = parse(
            br#"{"Privileged":1,"Memory":1.0,"CapAdd":"SYS_ADMIN","Labels":{"a":"1","a":"2"}}"#,
        )
        .expect("json");
        let o = GoObject::new(&v, "HostConfig", S).expect("ok").expect("o");
        assert!(
            o.bool("Privileged").is_err(),
            "a number is not a bool in Go"
        );
        let e = o.int("Memory").expect_err("1.0 is not an int64 in Go");
        assert_eq!(e.path, "HostConfig.Memory");
        assert_eq!(
            o.strslice("CapAdd").expect("ok"),
            Some(vec!["SYS_ADMIN".into()])
        );
        assert!(o.string_map("Labels").is_err());
        // Invalid UTF-8, lone surrogates, trailing data: refused.
        assert!(parse(b"{\"Image\":\"\xff\"}").is_err());
        assert!(parse(br#"{"Image":"\ud800"}"#).is_err());
        assert!(parse(br#"{"Image":"a"} {"Image":"b"}"#).is_err());
        assert!(parse(b"{\"Image\":\"a\"}\n").is_ok());
        assert_eq!(atoi("+0"), Some(0));
        assert_eq!(atoi("00"), Some(0));
        assert_eq!(atoi("-0"), Some(0));
        assert_eq!(atoi(" 0"), None);
        assert_eq!(atoi("0x0"), None);
        assert_eq!(parse_bool("F"), Some(false));
        assert_eq!(parse_bool("no"), None);
    }
}
