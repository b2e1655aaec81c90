//! A client of the query API, for `rampart query` and scripts.

use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use hyper::Method;
use rampart_ship::client::HttpClient;
use serde_json::Value;

/// Query-client failures.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum QueryError {
    #[error(transparent)]
    Tls(#[from] rampart_ship::tls::TlsError),
    #[error(transparent)]
    Client(#[from] rampart_ship::client::ClientError),
    #[error("server answered {status}: {message}")]
    Status { status: u16, message: String },
    #[error("server answer is not what the API documents: {0}")]
    Answer(String),
}

/// A connection to a server's query API with an API token.
#[derive(Debug)]
pub struct QueryClient {
    http: HttpClient,
    auth: String,
}

impl QueryClient {
    /// A client for `url`, trusting the CA certificate in `ca_file` (the server's
    /// `<data_dir>/ca/ca.crt`, or what `GET /api/v1/ca` returns).
    pub fn new(url: &str, ca_file: &Path, token: &str) -> Result<QueryClient, QueryError> {
        let roots = rampart_ship::tls::load_roots(ca_file)?;
        let tls = rampart_ship::tls::client_config(roots, None)?;
        Self::with_tls(url, tls, token)
    }

    /// A client with an explicit TLS configuration.
    pub fn with_tls(
        url: &str,
        tls: Arc<rustls::ClientConfig>,
        token: &str,
    ) -> Result<QueryClient, QueryError> {
        Ok(QueryClient {
            http: HttpClient::new(url, Some(tls))?,
            auth: format!("Bearer {}", token.trim()),
        })
    }

    /// `GET path` (with its query string) and the JSON answer.
    pub async fn get_json(&mut self, path_and_query: &str) -> Result<Value, QueryError> {
        self.call(Method::GET, path_and_query, Bytes::new()).await
    }

    /// `POST path` with a JSON body, and the JSON answer.
    pub async fn post_json(&mut self, path: &str, body: &Value) -> Result<Value, QueryError> {
        self.call(Method::POST, path, Bytes::from(body.to_string()))
            .await
    }

    async fn call(&mut self, method: Method, path: &str, body: Bytes) -> Result<Value, QueryError> {
        let auth = self.auth.clone();
        let resp = self
            .http
            .request(
                method,
                path,
                &[
                    ("authorization", auth.as_str()),
                    ("content-type", "application/json"),
                ],
                body,
            )
            .await?;
        let v: Result<Value, _> = serde_json::from_slice(&resp.body);
        if !resp.is_success() {
            let message = v
                .ok()
                .and_then(|v| v.get("error").and_then(Value::as_str).map(str::to_string))
                .unwrap_or_else(|| resp.body_text());
            return Err(QueryError::Status {
                status: resp.status,
                message,
            });
        }
        v.map_err(|e| QueryError::Answer(e.to_string()))
    }

    /// Records matching `params` (`key=value` pairs of the query API's filters).
    pub async fn records(
        &mut self,
        alerts_only: bool,
        params: &[(&str, String)],
    ) -> Result<Vec<Value>, QueryError> {
        let path = if alerts_only {
            "/api/v1/alerts"
        } else {
            "/api/v1/records"
        };
        let v = self.get_json(&with_query(path, params)).await?;
        match v.get("records") {
            Some(Value::Array(a)) => Ok(a.clone()),
            _ => Err(QueryError::Answer("no records array".into())),
        }
    }

    /// How many records match `params`.
    pub async fn count(&mut self, params: &[(&str, String)]) -> Result<u64, QueryError> {
        let v = self.get_json(&with_query("/api/v1/count", params)).await?;
        v.get("count")
            .and_then(Value::as_u64)
            .ok_or_else(|| QueryError::Answer("no count".into()))
    }
}

/// `path?k=v&...` with values percent-encoded.
pub fn with_query(path: &str, params: &[(&str, String)]) -> String {
    if params.is_empty() {
        return path.to_string();
    }
    let q: Vec<String> = params
        .iter()
        .map(|(k, v)| {
            format!(
                "{k}={}",
                percent_encoding::utf8_percent_encode(v, percent_encoding::NON_ALPHANUMERIC)
            )
        })
        .collect();
    format!("{path}?{}", q.join("&"))
}
