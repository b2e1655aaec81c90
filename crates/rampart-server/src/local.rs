//! The in-process output for `rampart up`: the agent's records go straight into the store,
//! through the same parsing, region stamping and anonymisation as the ingest API.

use std::sync::Arc;

use rampart_ship::output::{BoxFuture, Delivered, Dispatch, Output, OutputError};
use rampart_ship::queue::Entry;

use crate::control::now_ns;
use crate::ingest::{parse_batch, Sender};
use crate::sequence::BatchPlace;
use crate::server::App;

/// Delivers batches to the embedded server's store (see `ServerHandle::local_output`).
pub struct LocalOutput {
    app: Arc<App>,
    name: String,
    sender: Sender,
    /// See [`Output::prepare`].
    dispatch: Dispatch,
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
            sender: Sender::local(agent_id, region),
            dispatch: Dispatch::default(),
        }
    }

    fn next_place(&self, batch: &[Entry]) -> Option<BatchPlace> {
        batch.last().map(|e| BatchPlace {
            last: e.seq,
            after: self.dispatch.after,
        })
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
            let place = self.next_place(batch);
            let r = self
                .app
                .commit_batch(&self.sender, parsed, place, self.dispatch.unsent)
                .await
                .map_err(|e| OutputError::new(&self.name, e.to_string()))?;
            Ok(Delivered {
                bytes: 0,
                rejected: r.rejected.len() as u64,
                duplicates: r.duplicates,
            })
        })
    }

    /// Another sender into the same store: batches in flight are parsed in parallel and
    /// committed in queue order.
    fn fork(&self) -> Option<Box<dyn Output>> {
        Some(Box::new(LocalOutput::new(
            self.app.clone(),
            &self.name,
            &self.sender.agent_id,
            &self.sender.region,
        )))
    }

    fn prepare(&mut self, dispatch: Dispatch) {
        self.dispatch = dispatch;
    }
}
