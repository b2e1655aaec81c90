//! JSON lines on standard output.

use tokio::io::AsyncWriteExt;

use super::{BoxFuture, Delivered, Output, OutputError};
use crate::queue::Entry;

/// Writes each record as one line on standard output.
#[derive(Debug)]
pub struct StdoutOutput {
    name: String,
}

impl StdoutOutput {
    pub fn new(name: impl Into<String>) -> StdoutOutput {
        StdoutOutput { name: name.into() }
    }
}

impl Output for StdoutOutput {
    fn name(&self) -> &str {
        &self.name
    }

    fn send<'a>(&'a mut self, batch: &'a [Entry]) -> BoxFuture<'a, Result<Delivered, OutputError>> {
        Box::pin(async move {
            let mut buf = Vec::with_capacity(batch.iter().map(|e| e.payload.len() + 1).sum());
            for e in batch {
                buf.extend_from_slice(&e.payload);
                buf.push(b'\n');
            }
            let mut out = tokio::io::stdout();
            out.write_all(&buf)
                .await
                .and(out.flush().await)
                .map_err(|e| OutputError::new(&self.name, format!("writing stdout: {e}")))?;
            Ok(Delivered {
                bytes: buf.len() as u64,
                ..Delivered::default()
            })
        })
    }
}
