//! A small HTTP/1.1 client over TCP or rustls, on hyper's connection API: one kept-alive
//! connection, re-established after any error. It is what the server output, the HTTP output,
//! enrollment, the query CLI and the ClickHouse store use; a general-purpose client (connection
//! pools, redirects, proxies) would bring much more than these need.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::client::conn::http1::SendRequest;
use hyper::{Method, Request, Uri};
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use rustls::ClientConfig;

/// Errors of a request. `Status` is an HTTP answer; the rest mean no answer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    #[error("URL {url:?}: {reason}")]
    Url { url: String, reason: String },
    #[error("connecting to {addr}: {source}")]
    Connect {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    #[error("TLS handshake with {addr}: {source}")]
    Tls {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    #[error("HTTP with {addr}: {source}")]
    Http {
        addr: String,
        #[source]
        source: hyper::Error,
    },
    #[error("{addr}: no answer within {timeout:?}")]
    Timeout { addr: String, timeout: Duration },
    #[error("{addr}: response body larger than {limit} bytes or unreadable")]
    Body { addr: String, limit: usize },
}

/// An HTTP answer.
#[derive(Debug, Clone)]
pub struct HttpResponse {
    pub status: u16,
    pub headers: hyper::HeaderMap,
    pub body: Bytes,
}

impl HttpResponse {
    /// The body as text, lossily, for error messages (at most 500 characters).
    pub fn body_text(&self) -> String {
        let s = String::from_utf8_lossy(&self.body);
        s.chars().take(500).collect()
    }

    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }
}

/// A client for one origin (`scheme://host:port`).
pub struct HttpClient {
    host: String,
    port: u16,
    /// The path prefix of the base URL, without a trailing `/`.
    base_path: String,
    authority: String,
    tls: Option<(tokio_rustls::TlsConnector, ServerName<'static>)>,
    timeout: Duration,
    max_response: usize,
    conn: Option<SendRequest<Full<Bytes>>>,
}

impl std::fmt::Debug for HttpClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpClient")
            .field("authority", &self.authority)
            .field("tls", &self.tls.is_some())
            .finish_non_exhaustive()
    }
}

impl HttpClient {
    /// A client for `base_url` (`http://` or `https://`, optionally with a path prefix). For
    /// `https` a TLS configuration is required.
    pub fn new(base_url: &str, tls: Option<Arc<ClientConfig>>) -> Result<HttpClient, ClientError> {
        let bad = |reason: &str| ClientError::Url {
            url: base_url.to_string(),
            reason: reason.to_string(),
        };
        let uri: Uri = base_url
            .parse()
            .map_err(|e: hyper::http::uri::InvalidUri| bad(&e.to_string()))?;
        let https = match uri.scheme_str() {
            Some("https") => true,
            Some("http") => false,
            _ => return Err(bad("expected http:// or https://")),
        };
        let host = uri.host().ok_or_else(|| bad("no host"))?;
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
        let tls = if https {
            let cfg = tls.ok_or_else(|| bad("https needs a TLS configuration"))?;
            let name = ServerName::try_from(host.clone())
                .map_err(|_| bad("host is not a valid TLS server name"))?;
            Some((tokio_rustls::TlsConnector::from(cfg), name))
        } else {
            None
        };
        let authority = uri
            .authority()
            .map(|a| a.as_str().to_string())
            .unwrap_or_else(|| format!("{host}:{port}"));
        Ok(HttpClient {
            host,
            port,
            base_path: uri.path().trim_end_matches('/').to_string(),
            authority,
            tls,
            timeout: Duration::from_secs(30),
            max_response: 64 << 20,
            conn: None,
        })
    }

    /// Sets the time allowed for connecting plus one request and its answer (default 30 s).
    pub fn with_timeout(mut self, timeout: Duration) -> HttpClient {
        self.timeout = timeout;
        self
    }

    /// Sets the largest response body accepted (default 64 MiB).
    pub fn with_max_response(mut self, bytes: usize) -> HttpClient {
        self.max_response = bytes;
        self
    }

    /// Drops the kept-alive connection; the next request opens a new one (after an answer
    /// given before the request's body was read, the connection cannot carry another).
    pub fn disconnect(&mut self) {
        self.conn = None;
    }

    /// `host:port` of the origin.
    pub fn authority(&self) -> &str {
        &self.authority
    }

    async fn connect(&self) -> Result<SendRequest<Full<Bytes>>, ClientError> {
        let addr = format!("{}:{}", self.host, self.port);
        let tcp = tokio::net::TcpStream::connect((self.host.as_str(), self.port))
            .await
            .map_err(|source| ClientError::Connect {
                addr: addr.clone(),
                source,
            })?;
        let _ = tcp.set_nodelay(true);
        let http_err = |source| ClientError::Http {
            addr: addr.clone(),
            source,
        };
        match &self.tls {
            Some((connector, name)) => {
                let stream = connector
                    .connect(name.clone(), tcp)
                    .await
                    .map_err(|source| ClientError::Tls {
                        addr: addr.clone(),
                        source,
                    })?;
                let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
                    .await
                    .map_err(http_err)?;
                tokio::spawn(conn);
                Ok(send)
            }
            None => {
                let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
                    .await
                    .map_err(http_err)?;
                tokio::spawn(conn);
                Ok(send)
            }
        }
    }

    /// Sends one request to `path` (appended to the base URL's path; may carry a query) and
    /// reads the whole answer. Any error drops the connection; the next request reconnects.
    pub async fn request(
        &mut self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Bytes,
    ) -> Result<HttpResponse, ClientError> {
        let timeout = self.timeout;
        let addr = self.authority.clone();
        match tokio::time::timeout(timeout, self.request_inner(method, path, headers, body)).await {
            Ok(Ok(r)) => Ok(r),
            Ok(Err(e)) => {
                self.conn = None;
                Err(e)
            }
            Err(_) => {
                self.conn = None;
                Err(ClientError::Timeout { addr, timeout })
            }
        }
    }

    async fn request_inner(
        &mut self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Bytes,
    ) -> Result<HttpResponse, ClientError> {
        let addr = self.authority.clone();
        let reusable = match self.conn.as_mut() {
            Some(c) => c.ready().await.is_ok(),
            None => false,
        };
        if !reusable {
            self.conn = Some(self.connect().await?);
        }
        let uri = format!("{}{}", self.base_path, path);
        let mut req = Request::builder()
            .method(method)
            .uri(uri)
            .header("host", self.authority.as_str())
            .header("user-agent", concat!("rampart/", env!("CARGO_PKG_VERSION")));
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let req = req.body(Full::new(body)).map_err(|e| ClientError::Url {
            url: path.to_string(),
            reason: e.to_string(),
        })?;
        let Some(conn) = self.conn.as_mut() else {
            return Err(ClientError::Body { addr, limit: 0 });
        };
        let resp = conn
            .send_request(req)
            .await
            .map_err(|source| ClientError::Http {
                addr: addr.clone(),
                source,
            })?;
        let (parts, body) = resp.into_parts();
        let limit = self.max_response;
        let body = Limited::new(body, limit)
            .collect()
            .await
            .map_err(|_| ClientError::Body {
                addr: addr.clone(),
                limit,
            })?
            .to_bytes();
        Ok(HttpResponse {
            status: parts.status.as_u16(),
            headers: parts.headers,
            body,
        })
    }
}
