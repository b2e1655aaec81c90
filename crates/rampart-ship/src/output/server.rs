//! The Rampart server output: zstd-compressed JSON-lines batches over HTTPS with mutual TLS
//! (see [`crate::protocol`]).

use std::sync::Arc;

use bytes::Bytes;
use hyper::Method;

use super::Dispatch;
use super::{BoxFuture, Delivered, Output, OutputError};
use crate::client::HttpClient;
use crate::protocol::{
    IngestResponse, BATCH_AFTER_HEADER, BATCH_LAST_HEADER, BATCH_UNSENT_HEADER, INGEST_PATH,
};
use crate::queue::Entry;

/// Sends batches to a Rampart server. A batch counts as delivered when the server answered 200
/// with an [`IngestResponse`]: it has committed every record to its store.
#[derive(Debug)]
pub struct ServerOutput {
    name: String,
    url: String,
    tls: Arc<rustls::ClientConfig>,
    client: HttpClient,
    level: i32,
    /// See [`Output::prepare`].
    dispatch: Dispatch,
}

impl ServerOutput {
    /// An output to the server at `url` (`https://host:port`) with the agent's mutual-TLS
    /// configuration `tls` (see [`crate::tls::agent_client_config`]).
    pub fn new(
        name: impl Into<String>,
        url: &str,
        tls: Arc<rustls::ClientConfig>,
    ) -> Result<ServerOutput, OutputError> {
        let name = name.into();
        if !url.starts_with("https://") {
            return Err(OutputError::new(
                &name,
                format!(
                    "server url {url:?}: must be https:// (agents authenticate with mutual TLS)"
                ),
            ));
        }
        let client = HttpClient::new(url, Some(tls.clone()))
            .map_err(|e| OutputError::new(&name, e.to_string()))?;
        Ok(ServerOutput {
            name,
            url: url.to_string(),
            tls,
            client,
            level: 3,
            dispatch: Dispatch::default(),
        })
    }

    /// Sets the zstd level (clamped to 1..=19).
    pub fn with_compression_level(mut self, level: i32) -> ServerOutput {
        self.level = level.clamp(1, 19);
        self
    }
}

impl Output for ServerOutput {
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
            let level = self.level;
            let compressed = tokio::task::spawn_blocking(move || zstd::bulk::compress(&raw, level))
                .await
                .map_err(|e| OutputError::new(&self.name, e.to_string()))?
                .map_err(|e| OutputError::new(&self.name, format!("zstd: {e}")))?;
            let len = compressed.len() as u64;
            let last = batch.last().map(|e| e.seq.to_string());
            let after = self.dispatch.after.map(|s| s.to_string());
            let mut headers = vec![
                ("content-type", "application/x-ndjson"),
                ("content-encoding", "zstd"),
            ];
            if let Some(l) = &last {
                headers.push((BATCH_LAST_HEADER, l));
            }
            if let Some(a) = &after {
                headers.push((BATCH_AFTER_HEADER, a));
            }
            if self.dispatch.unsent {
                headers.push((BATCH_UNSENT_HEADER, "1"));
            }
            let resp = self
                .client
                .request(Method::POST, INGEST_PATH, &headers, Bytes::from(compressed))
                .await
                .map_err(|e| OutputError::new(&self.name, e.to_string()))?;
            if resp.status != 200 {
                return Err(OutputError::new(
                    &self.name,
                    format!(
                        "server {} answered {}: {}",
                        self.client.authority(),
                        resp.status,
                        resp.body_text()
                    ),
                ));
            }
            let answer: IngestResponse = serde_json::from_slice(&resp.body).map_err(|e| {
                OutputError::new(
                    &self.name,
                    format!("server answer is not an ingest response: {e}"),
                )
            })?;
            for r in &answer.rejected {
                tracing::warn!(output = %self.name, line = r.line, "server rejected a record: {}", r.error);
            }
            Ok(Delivered {
                bytes: len,
                rejected: answer.rejected.len() as u64,
                duplicates: answer.duplicates,
            })
        })
    }

    /// A sender with its own connection: the server ingests batches independently.
    fn fork(&self) -> Option<Box<dyn Output>> {
        ServerOutput::new(self.name.clone(), &self.url, self.tls.clone())
            .ok()
            .map(|o| Box::new(o.with_compression_level(self.level)) as Box<dyn Output>)
    }

    fn prepare(&mut self, dispatch: Dispatch) {
        self.dispatch = dispatch;
    }
}
