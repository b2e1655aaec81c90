//! The values of the fields an alert's output names, by field name.
//!
//! A map from field name to value, sorted by name, one value per name. Built for the rule
//! engine's hot path: the names are shared with the rule that raised the alert (`Arc<str>`, a
//! reference count instead of an allocation) and every value lives in one buffer, so an alert's
//! output fields cost two allocations however many fields its rule names (a `BTreeMap<String,
//! String>` cost two per field plus its nodes; with Falco's rules, about 25 per alert).
//! In JSON it is the same object as before: `{"proc.name": "sh", ...}`.

use std::collections::BTreeMap;
use std::fmt;
use std::ops::Index;
use std::sync::Arc;

use serde::ser::SerializeMap;
use serde::{Deserialize, Serialize, Serializer};

/// Field name → value, sorted by name, one value per name.
#[derive(Clone, Default)]
pub struct OutputFields {
    /// Every value, one after the other.
    values: String,
    /// (name, start, end) of each value in `values`, sorted by name, names distinct.
    fields: Vec<(Arc<str>, u32, u32)>,
}

impl OutputFields {
    /// An empty builder sized for `fields` values of `bytes` bytes in all.
    pub fn with_capacity(fields: usize, bytes: usize) -> Self {
        OutputFields {
            values: String::with_capacity(bytes),
            fields: Vec::with_capacity(fields),
        }
    }

    /// Adds `name` = `value`. Call [`OutputFields::finish`] after the last push; until then the
    /// fields are in push order and a name may appear twice.
    pub fn push(&mut self, name: Arc<str>, value: &str) {
        let start = self.values.len();
        self.values.push_str(value);
        self.fields
            .push((name, offset(start), offset(self.values.len())));
    }

    /// Adds `name` = `value` to fields built in name order: `name` must sort after every name
    /// pushed before (checked in debug builds), and then no [`OutputFields::finish`] is needed.
    /// For a caller whose order is fixed in advance, as the rule engine's per-rule order is, so
    /// that no alert pays for sorting or checking.
    pub fn push_sorted(&mut self, name: Arc<str>, value: &str) {
        debug_assert!(
            self.fields.last().is_none_or(|(last, _, _)| *last < name),
            "{name:?} pushed out of order"
        );
        self.push(name, value);
    }

    /// Sorts by name; of a name pushed twice the last value is kept (what inserting into a map
    /// one by one keeps). Fields pushed in strictly increasing name order are only checked.
    pub fn finish(mut self) -> Self {
        if self.fields.windows(2).all(|w| w[0].0 < w[1].0) {
            return self;
        }
        // Stable: equal names stay in push order, so the last of a run is the last pushed.
        self.fields.sort_by(|a, b| a.0.cmp(&b.0));
        // Keep the last of each run of equal names, in place: every position below `r` has
        // been dealt with, so swapping the kept one down to `w <= r` loses nothing kept.
        let mut w = 0;
        for r in 0..self.fields.len() {
            let last_of_run = self
                .fields
                .get(r + 1)
                .is_none_or(|next| next.0 != self.fields[r].0);
            if last_of_run {
                self.fields.swap(w, r);
                w += 1;
            }
        }
        self.fields.truncate(w);
        self
    }

    /// The value of `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        let i = self
            .fields
            .binary_search_by(|(n, _, _)| (**n).cmp(name))
            .ok()?;
        let (_, s, e) = &self.fields[i];
        self.values.get(*s as usize..*e as usize)
    }

    /// (name, value) pairs, sorted by name.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> + '_ {
        self.fields.iter().map(|(n, s, e)| {
            (
                &**n,
                self.values
                    .get(*s as usize..*e as usize)
                    .unwrap_or_default(),
            )
        })
    }

    pub fn len(&self) -> usize {
        self.fields.len()
    }

    pub fn is_empty(&self) -> bool {
        self.fields.is_empty()
    }
}

/// Offsets are `u32` to keep an entry at 24 bytes; a value buffer over 4 GiB cannot be built
/// from an alert's output (outputs are rendered from one event), so saturate rather than fail.
fn offset(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

impl<K: Into<Arc<str>>, V: AsRef<str>> FromIterator<(K, V)> for OutputFields {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        let mut out = OutputFields::default();
        for (k, v) in iter {
            out.push(k.into(), v.as_ref());
        }
        out.finish()
    }
}

impl<K: Into<Arc<str>>, V: AsRef<str>, const N: usize> From<[(K, V); N]> for OutputFields {
    fn from(pairs: [(K, V); N]) -> Self {
        pairs.into_iter().collect()
    }
}

impl From<BTreeMap<String, String>> for OutputFields {
    fn from(map: BTreeMap<String, String>) -> Self {
        map.into_iter().collect()
    }
}

impl Index<&str> for OutputFields {
    type Output = str;

    /// # Panics
    /// When `name` has no value, as indexing a map does.
    fn index(&self, name: &str) -> &str {
        match self.get(name) {
            Some(v) => v,
            None => panic!("no output field {name:?}"),
        }
    }
}

impl PartialEq for OutputFields {
    fn eq(&self, other: &Self) -> bool {
        self.iter().eq(other.iter())
    }
}

impl Eq for OutputFields {}

impl fmt::Debug for OutputFields {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

impl Serialize for OutputFields {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut m = serializer.serialize_map(Some(self.len()))?;
        for (k, v) in self.iter() {
            m.serialize_entry(k, v)?;
        }
        m.end()
    }
}

impl<'de> Deserialize<'de> for OutputFields {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        // A JSON object with a key twice keeps the last value, as the map this replaced did.
        Ok(BTreeMap::<String, String>::deserialize(deserializer)?.into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn behaves_as_the_map_it_replaced() {
        let pairs = [
            ("proc.name", "sh"),
            ("container.id", "c1"),
            ("fd.name", ""),
            ("proc.name", "bash"),
            ("a", "é"),
        ];
        let f: OutputFields = pairs.into_iter().collect();
        let m: BTreeMap<String, String> = pairs
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let got: Vec<(&str, &str)> = f.iter().collect();
        let want: Vec<(&str, &str)> = m.iter().map(|(k, v)| (&**k, &**v)).collect();
        assert_eq!(got, want);
        assert_eq!(f.len(), 4);
        assert_eq!(&f["proc.name"], "bash");
        assert_eq!(f.get("fd.name"), Some(""));
        assert_eq!(f.get("nope"), None);
        assert_eq!(
            serde_json::to_string(&f).expect("json"),
            serde_json::to_string(&m).expect("json")
        );
        let back: OutputFields =
            serde_json::from_str(r#"{"b":"2","a":"1","b":"3"}"#).expect("parse");
        assert_eq!(back, OutputFields::from([("a", "1"), ("b", "3")]));
        assert!(serde_json::from_str::<OutputFields>(r#"{"a":1}"#).is_err());
    }

    #[test]
    fn equality_ignores_how_it_was_built() {
        let mut a = OutputFields::with_capacity(2, 8);
        a.push("x".into(), "old");
        a.push("y".into(), "2");
        a.push("x".into(), "1");
        let a = a.finish();
        assert_eq!(a, OutputFields::from([("y", "2"), ("x", "1")]));
        let mut b = OutputFields::with_capacity(2, 2);
        b.push_sorted("x".into(), "1");
        b.push_sorted("y".into(), "2");
        assert_eq!(a, b);
        assert_ne!(a, OutputFields::from([("x", "1")]));
    }
}
