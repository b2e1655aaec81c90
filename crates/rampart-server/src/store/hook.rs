//! [`AfterInsert`]: a store wrapper that runs a hook after every committed insert.

use std::sync::Arc;

use super::{
    BoxFuture, Committed, DeleteOutcome, HostSummary, IngestCursor, InsertOutcome, Query,
    RecordKind, RetentionRecord, Store, StoreError, StoredRecord,
};

/// What [`AfterInsert`] runs after each committed insert: the batch and what the store did
/// with it. It runs as the batch is committed (in commit order, possibly before the commit is
/// durable, on the inserting thread), so it must be quick (send to a channel, count).
pub type InsertHook = Arc<dyn Fn(&[StoredRecord], &InsertOutcome) + Send + Sync>;

/// A [`Store`] that calls a hook after every committed insert (the dashboard's live stream,
/// benchmarks' lag measurement); every other call goes straight to the wrapped store.
pub struct AfterInsert {
    inner: Arc<dyn Store>,
    hook: InsertHook,
}

impl std::fmt::Debug for AfterInsert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AfterInsert")
            .field("engine", &self.inner.engine())
            .finish_non_exhaustive()
    }
}

impl AfterInsert {
    /// Wraps `inner`; `hook` sees every batch once the store committed it.
    pub fn new(inner: Arc<dyn Store>, hook: InsertHook) -> AfterInsert {
        AfterInsert { inner, hook }
    }
}

impl Store for AfterInsert {
    fn engine(&self) -> &'static str {
        self.inner.engine()
    }

    fn insert_with<'a>(
        &'a self,
        rows: &'a [StoredRecord],
        unsent: bool,
        committed: Committed<'a>,
    ) -> BoxFuture<'a, Result<InsertOutcome, StoreError>> {
        // The hook runs when the records are committed, so hooks see batches in commit order.
        let hook = self.hook.clone();
        let committed: Committed<'a> = Box::new(move |outcome: &InsertOutcome| {
            hook(rows, outcome);
            committed(outcome);
        });
        self.inner.insert_with(rows, unsent, committed)
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

    fn ingested_after<'a>(
        &'a self,
        after: &'a IngestCursor,
        until_ns: u64,
        kind: Option<RecordKind>,
        limit: usize,
    ) -> BoxFuture<'a, Result<Vec<StoredRecord>, StoreError>> {
        self.inner.ingested_after(after, until_ns, kind, limit)
    }

    fn ingest_counts(
        &self,
        from_ns: u64,
        until_ns: u64,
    ) -> BoxFuture<'_, Result<Vec<(u64, u64)>, StoreError>> {
        self.inner.ingest_counts(from_ns, until_ns)
    }
}
