//! The in-process output for `rampart up`: the agent's records go straight into the store,
//! through the same parsing, region stamping and anonymisation as the ingest API.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use rampart_ship::output::{BoxFuture, Delivered, Output, OutputError};
use rampart_ship::queue::Entry;

use crate::control::now_ns;
use crate::ingest::{parse_batch, Sender};
use crate::server::App;

/// Delivers batches to the embedded server's store (see `ServerHandle::local_output`).
pub struct LocalOutput {
    app: Arc<App>,
    name: String,
    sender: Sender,
}

impl std::fmt::Debug for LocalOutput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalOutput")
            .field("name", &self.name)
            .field("sender", &self.sender)
            .finish()
    }
}

impl LocalOutput {
    pub(crate) fn new(app: Arc<App>, name: &str, agent_id: &str, region: &str) -> LocalOutput {
        LocalOutput {
            app,
            name: name.to_string(),
            sender: Sender {
                agent_id: agent_id.to_string(),
                region: region.to_string(),
            },
        }
    }
}

impl Output for LocalOutput {
    fn name(&self) -> &str {
        &self.name
    }

    fn send<'a>(&'a mut self, batch: &'a [Entry]) -> BoxFuture<'a, Result<Delivered, OutputError>> {
        Box::pin(async move {
            let mut raw = Vec::with_capacity(batch.iter().map(|e| e.payload.len() + 1).sum());
            for e in batch {
                raw.extend_from_slice(&e.payload);
                raw.push(b'\n');
            }
            let app = self.app.clone();
            let sender = self.sender.clone();
            let parsed = tokio::task::spawn_blocking(move || {
                parse_batch(&raw, &sender, app.anonymiser(&sender.region), now_ns())
            })
            .await
            .map_err(|e| OutputError::new(&self.name, e.to_string()))?;
            let outcome = self
                .app
                .store
                .insert(&parsed.rows)
                .await
                .map_err(|e| OutputError::new(&self.name, e.to_string()))?;
            let c = &self.app.counters;
            c.ingest_batches.fetch_add(1, Ordering::Relaxed);
            c.ingest_records
                .fetch_add(outcome.inserted, Ordering::Relaxed);
            let duplicates = outcome.duplicates + parsed.duplicates_in_batch;
            c.ingest_duplicates.fetch_add(duplicates, Ordering::Relaxed);
            c.ingest_rejected
                .fetch_add(parsed.rejected.len() as u64, Ordering::Relaxed);
            Ok(Delivered {
                bytes: 0,
                rejected: parsed.rejected.len() as u64,
                duplicates,
            })
        })
    }
}
