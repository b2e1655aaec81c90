//! The containers the agent knows, by id: shared between the Docker watcher (writer) and the
//! enricher (reader).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use rampart_event::Container;

/// What the agent keeps about a container beyond its [`Container`] identity.
#[derive(Debug, Clone, PartialEq)]
pub struct ContainerRecord {
    pub container: Arc<Container>,
    /// Host pid of the container's init process (0 when not running).
    pub pid: u32,
    /// The overlay upper (writable) directory, for drift detection.
    pub upper_dir: Option<PathBuf>,
    /// When the container started, nanoseconds since the epoch (0 when unknown).
    pub started_at_ns: u64,
}

/// Containers by full id. Every change bumps [`ContainerDirectory::generation`], so that
/// readers can cache lookups and notice when to refresh them.
#[derive(Debug, Default)]
pub struct ContainerDirectory {
    by_id: RwLock<HashMap<String, ContainerRecord>>,
    generation: AtomicU64,
}

impl ContainerDirectory {
    pub fn new() -> Arc<Self> {
        Arc::new(ContainerDirectory::default())
    }

    pub fn get(&self, id: &str) -> Option<ContainerRecord> {
        self.by_id.read().ok()?.get(id).cloned()
    }

    /// The container whose id or name is `key` (a unique id prefix of at least 12 characters
    /// also matches).
    pub fn find(&self, key: &str) -> Option<ContainerRecord> {
        let map = self.by_id.read().ok()?;
        if let Some(r) = map.get(key) {
            return Some(r.clone());
        }
        let key = key.trim_start_matches('/');
        let mut hits = map.values().filter(|r| {
            r.container.name == key || (key.len() >= 12 && r.container.id.starts_with(key))
        });
        let first = hits.next()?;
        hits.next().is_none().then(|| first.clone())
    }

    pub fn insert(&self, rec: ContainerRecord) {
        if let Ok(mut map) = self.by_id.write() {
            map.insert(rec.container.id.clone(), rec);
            self.generation.fetch_add(1, Ordering::Release);
        }
    }

    pub fn remove(&self, id: &str) -> Option<ContainerRecord> {
        let out = self.by_id.write().ok()?.remove(id);
        self.generation.fetch_add(1, Ordering::Release);
        out
    }

    /// Every known container.
    pub fn list(&self) -> Vec<ContainerRecord> {
        self.by_id
            .read()
            .map(|m| m.values().cloned().collect())
            .unwrap_or_default()
    }

    /// Changes with every insert and remove.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rampart_event::ContainerRuntime;

    fn rec(id: &str, name: &str) -> ContainerRecord {
        let mut c = Container::unnamed(id, ContainerRuntime::Docker);
        c.name = name.into();
        ContainerRecord {
            container: Arc::new(c),
            pid: 1,
            upper_dir: None,
            started_at_ns: 0,
        }
    }

    #[test]
    fn find_by_id_name_or_unique_prefix() {
        let d = ContainerDirectory::new();
        let g0 = d.generation();
        d.insert(rec(&"a".repeat(64), "web"));
        d.insert(rec(&format!("{}{}", "a".repeat(12), "b".repeat(52)), "db"));
        assert!(d.generation() > g0);
        assert_eq!(
            d.find("web").map(|r| r.container.name.clone()),
            Some("web".into())
        );
        assert_eq!(
            d.find("/db").map(|r| r.container.name.clone()),
            Some("db".into())
        );
        assert!(d.find(&"a".repeat(12)).is_none(), "ambiguous prefix");
        assert!(d.find(&"a".repeat(13)).is_some());
        assert!(d.remove("nope").is_none());
        assert_eq!(d.list().len(), 2);
    }
}
