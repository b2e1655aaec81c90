//! [`LiveStore`]: publishes every committed alert to the dashboard's live subscribers.

use std::sync::Arc;

use rampart_server::store::{
    BoxFuture, DeleteOutcome, HostSummary, InsertOutcome, RetentionRecord, StoreError,
};
use rampart_server::{Query, RecordKind, Store, StoredRecord};
use tokio::sync::broadcast;

/// A [`Store`] that, after each committed insert, sends the alerts of the batch (as the
/// dashboard's alert view) to a broadcast channel. Everything else goes straight through.
/// Records the store already had are sent again (ingest is at-least-once); subscribers drop
/// ids they have shown.
pub struct LiveStore {
    inner: Arc<dyn Store>,
    live: broadcast::Sender<Arc<serde_json::Value>>,
}

impl std::fmt::Debug for LiveStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveStore")
            .field("engine", &self.inner.engine())
            .finish_non_exhaustive()
    }
}

impl LiveStore {
    /// Wraps `inner`; alerts go to `live`.
    pub fn new(
        inner: Arc<dyn Store>,
        live: broadcast::Sender<Arc<serde_json::Value>>,
    ) -> LiveStore {
        LiveStore { inner, live }
    }
}

impl Store for LiveStore {
    fn engine(&self) -> &'static str {
        self.inner.engine()
    }

    fn insert<'a>(
        &'a self,
        rows: &'a [StoredRecord],
    ) -> BoxFuture<'a, Result<InsertOutcome, StoreError>> {
        Box::pin(async move {
            let outcome = self.inner.insert(rows).await?;
            // Nobody watching: no work.
            if self.live.receiver_count() > 0 {
                for r in rows.iter().filter(|r| r.kind == RecordKind::Alert) {
                    let _ = self.live.send(Arc::new(crate::view::record(r, false)));
                }
            }
            Ok(outcome)
        })
    }

    fn query<'a>(&'a self, q: &'a Query) -> BoxFuture<'a, Result<Vec<StoredRecord>, StoreError>> {
        self.inner.query(q)
    }

    fn count<'a>(&'a self, q: &'a Query) -> BoxFuture<'a, Result<u64, StoreError>> {
        self.inner.count(q)
    }

    fn regions(&self) -> BoxFuture<'_, Result<Vec<String>, StoreError>> {
        self.inner.regions()
    }

    fn delete_before<'a>(
        &'a self,
        region: &'a str,
        cutoff_day: u32,
    ) -> BoxFuture<'a, Result<DeleteOutcome, StoreError>> {
        self.inner.delete_before(region, cutoff_day)
    }

    fn record_retention<'a>(
        &'a self,
        r: &'a RetentionRecord,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        self.inner.record_retention(r)
    }

    fn retention_log(
        &self,
        limit: usize,
    ) -> BoxFuture<'_, Result<Vec<RetentionRecord>, StoreError>> {
        self.inner.retention_log(limit)
    }

    fn hosts(&self) -> BoxFuture<'_, Result<Vec<HostSummary>, StoreError>> {
        self.inner.hosts()
    }

    fn latest_inventory<'a>(
        &'a self,
        event_type: &'a str,
        host: Option<&'a str>,
    ) -> BoxFuture<'a, Result<Vec<StoredRecord>, StoreError>> {
        self.inner.latest_inventory(event_type, host)
    }
}
