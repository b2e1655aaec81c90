//! The dashboard's live stream: every committed alert goes to the live subscribers; in a
//! fleet of servers on one ClickHouse, also the alerts the other servers commit
//! ([`fleet_live_loop`]).

use std::sync::Arc;

use rampart_server::store::{AfterInsert, InsertHook, InsertOutcome};
use rampart_server::{IngestCursor, RecordKind, Store, StoredRecord};
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

/// Alerts read from the shared store per query by [`fleet_live_loop`].
const FLEET_LIVE_BATCH: usize = 1_000;

/// Sends the alerts every server of the fleet commits to `live` (this server's own come a
/// second time, later: subscribers drop ids they have shown): reads them from the shared
/// `store` in ingest order every `every`, [`rampart_fleet::correlate::FEED_LAG`] behind, while
/// anyone watches. A subscriber sees the alerts committed from about when it connected.
/// Forever (spawn it).
pub async fn fleet_live_loop(
    store: Arc<dyn Store>,
    live: broadcast::Sender<Arc<serde_json::Value>>,
    every: std::time::Duration,
) {
    let lag = rampart_fleet::correlate::FEED_LAG.as_nanos() as u64;
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut cur: Option<IngestCursor> = None;
    loop {
        tick.tick().await;
        let until = rampart_event::now_ns().saturating_sub(lag);
        if live.receiver_count() == 0 {
            cur = None;
            continue;
        }
        let c = cur.get_or_insert_with(|| IngestCursor {
            ingested_ns: until,
            id: String::new(),
        });
        loop {
            let rows = match store
                .ingested_after(c, until, Some(RecordKind::Alert), FLEET_LIVE_BATCH)
                .await
            {
                Ok(r) => r,
                Err(e) => {
                    tracing::warn!("dashboard: reading the fleet's alerts: {e}");
                    break;
                }
            };
            let Some(last) = rows.last() else { break };
            *c = IngestCursor::after(last);
            for r in &rows {
                let _ = live.send(Arc::new(crate::view::record(r, false)));
            }
            if rows.len() < FLEET_LIVE_BATCH {
                break;
            }
        }
    }
}
