//! HTTP(S) JSON output: each batch is one POST.

use std::collections::BTreeMap;
use std::path::Path;

use bytes::Bytes;
use hyper::Method;
use serde::Deserialize;

use super::{BoxFuture, Delivered, Output, OutputError};
use crate::client::HttpClient;
use crate::queue::Entry;

/// Body format of the HTTP output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HttpFormat {
    /// One JSON object per line (`application/x-ndjson`).
    #[default]
    Ndjson,
    /// One JSON array of the records (`application/json`).
    JsonArray,
}

/// POSTs batches to a URL; any 2xx answer is delivery.
#[derive(Debug)]
pub struct HttpOutput {
    name: String,
    path: String,
    headers: Vec<(String, String)>,
    format: HttpFormat,
    client: HttpClient,
}

impl HttpOutput {
    /// An output posting to `url` with extra `headers` (e.g. `Authorization`). For https the
    /// server is verified against `ca_file`, or the system CA bundle.
    pub fn new(
        name: impl Into<String>,
        url: &str,
        headers: BTreeMap<String, String>,
        format: HttpFormat,
        ca_file: Option<&Path>,
    ) -> Result<HttpOutput, OutputError> {
        let name = name.into();
        let uri: hyper::Uri = url
            .parse()
            .map_err(|e| OutputError::new(&name, format!("url {url:?}: {e}")))?;
        let tls = if uri.scheme_str() == Some("https") {
            let path = ca_file.unwrap_or(Path::new(crate::tls::SYSTEM_CA_BUNDLE));
            let roots =
                crate::tls::load_roots(path).map_err(|e| OutputError::new(&name, e.to_string()))?;
            Some(
                crate::tls::client_config(roots, None)
                    .map_err(|e| OutputError::new(&name, e.to_string()))?,
            )
        } else {
            None
        };
        let origin = match (uri.scheme_str(), uri.authority()) {
            (Some(s), Some(a)) => format!("{s}://{a}"),
            _ => {
                return Err(OutputError::new(
                    &name,
                    format!("url {url:?}: expected http(s)://host[:port]/path"),
                ))
            }
        };
        let client =
            HttpClient::new(&origin, tls).map_err(|e| OutputError::new(&name, e.to_string()))?;
        let path = uri
            .path_and_query()
            .map_or_else(|| "/".to_string(), |p| p.as_str().to_string());
        Ok(HttpOutput {
            name,
            path,
            headers: headers.into_iter().collect(),
            format,
            client,
        })
    }
}

impl Output for HttpOutput {
    fn name(&self) -> &str {
        &self.name
    }

    fn send<'a>(&'a mut self, batch: &'a [Entry]) -> BoxFuture<'a, Result<Delivered, OutputError>> {
        Box::pin(async move {
            let mut body =
                Vec::with_capacity(batch.iter().map(|e| e.payload.len() + 1).sum::<usize>() + 2);
            let content_type = match self.format {
                HttpFormat::Ndjson => {
                    for e in batch {
                        body.extend_from_slice(&e.payload);
                        body.push(b'\n');
                    }
                    "application/x-ndjson"
                }
                HttpFormat::JsonArray => {
                    body.push(b'[');
                    for (i, e) in batch.iter().enumerate() {
                        if i > 0 {
                            body.push(b',');
                        }
                        body.extend_from_slice(&e.payload);
                    }
                    body.push(b']');
                    "application/json"
                }
            };
            let len = body.len() as u64;
            let mut headers: Vec<(&str, &str)> = vec![("content-type", content_type)];
            headers.extend(self.headers.iter().map(|(k, v)| (k.as_str(), v.as_str())));
            let resp = self
                .client
                .request(Method::POST, &self.path, &headers, Bytes::from(body))
                .await
                .map_err(|e| OutputError::new(&self.name, e.to_string()))?;
            if !resp.is_success() {
                return Err(OutputError::new(
                    &self.name,
                    format!(
                        "{} answered {}: {}",
                        self.client.authority(),
                        resp.status,
                        resp.body_text()
                    ),
                ));
            }
            Ok(Delivered {
                bytes: len,
                ..Delivered::default()
            })
        })
    }
}
