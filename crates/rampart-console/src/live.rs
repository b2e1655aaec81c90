//! The dashboard's live stream: every committed alert goes to the live subscribers.

use std::sync::Arc;

use rampart_server::store::{AfterInsert, InsertHook, InsertOutcome};
use rampart_server::{RecordKind, Store, StoredRecord};
use tokio::sync::broadcast;

/// Wraps `inner` so that, after each committed insert, the alerts of the batch (as the
/// dashboard's alert view) are sent to `live`. Records the store already had are sent again
/// (ingest is at-least-once); subscribers drop ids they have shown.
pub fn live_store(
    inner: Arc<dyn Store>,
    live: broadcast::Sender<Arc<serde_json::Value>>,
) -> AfterInsert {
    let hook: InsertHook = Arc::new(move |rows: &[StoredRecord], _: &InsertOutcome| {
        // Nobody watching: no work.
        if live.receiver_count() == 0 {
            return;
        }
        for r in rows.iter().filter(|r| r.kind == RecordKind::Alert) {
            let _ = live.send(Arc::new(crate::view::record(r, false)));
        }
    });
    AfterInsert::new(inner, hook)
}
