//! Prometheus metrics: the text exposition format (version 0.0.4) and a small `/metrics`
//! HTTP endpoint.
//!
//! The format is a few lines of text per metric; writing it directly is shorter than adapting a
//! metrics library's registry to our counters, which already live in atomics.

use std::convert::Infallible;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;

/// Content type of the text exposition format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Builds a Prometheus text exposition. Each metric family gets its `HELP` and `TYPE` lines
/// once, however many label sets follow.
#[derive(Debug, Default)]
pub struct PromWriter {
    out: String,
    last_family: String,
}

impl PromWriter {
    pub fn new() -> PromWriter {
        PromWriter::default()
    }

    fn family(&mut self, name: &str, help: &str, kind: &str) {
        if self.last_family != name {
            let _ = writeln!(self.out, "# HELP {name} {help}");
            let _ = writeln!(self.out, "# TYPE {name} {kind}");
            self.last_family = name.to_string();
        }
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        self.out.push_str(name);
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.out.push(',');
                }
                let _ = write!(self.out, "{k}=\"");
                for c in v.chars() {
                    match c {
                        '\\' => self.out.push_str("\\\\"),
                        '"' => self.out.push_str("\\\""),
                        '\n' => self.out.push_str("\\n"),
                        c => self.out.push(c),
                    }
                }
                self.out.push('"');
            }
            self.out.push('}');
        }
        if value.fract() == 0.0 && value.abs() < 1e15 {
            let _ = writeln!(self.out, " {}", value as i64);
        } else {
            let _ = writeln!(self.out, " {value}");
        }
    }

    /// A monotonically increasing count.
    pub fn counter(&mut self, name: &str, help: &str, labels: &[(&str, &str)], value: u64) {
        self.family(name, help, "counter");
        self.sample(name, labels, value as f64);
    }

    /// A value that goes up and down.
    pub fn gauge(&mut self, name: &str, help: &str, labels: &[(&str, &str)], value: f64) {
        self.family(name, help, "gauge");
        self.sample(name, labels, value);
    }

    /// The exposition text.
    pub fn finish(self) -> String {
        self.out
    }
}

/// Serves `GET /metrics` (plain HTTP) on `listener` with the text `render` returns, until the
/// task is dropped. Bind it to loopback or a monitoring network: it has no authentication.
pub async fn serve(
    listener: tokio::net::TcpListener,
    render: Arc<dyn Fn() -> String + Send + Sync>,
) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let render = render.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                let render = render.clone();
                async move {
                    let resp = if req.uri().path() == "/metrics" {
                        Response::builder()
                            .header("content-type", CONTENT_TYPE)
                            .body(Full::new(Bytes::from(render())))
                    } else {
                        Response::builder()
                            .status(404)
                            .body(Full::new(Bytes::from_static(b"not found; try /metrics\n")))
                    };
                    Ok::<_, Infallible>(resp.unwrap_or_default())
                }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}

/// Binds `addr` for [`serve`].
pub async fn bind(addr: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(addr).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_get_one_header_and_labels_are_escaped() {
        let mut w = PromWriter::new();
        w.counter("x_total", "Things.", &[("output", "a\"b")], 3);
        w.counter("x_total", "Things.", &[("output", "c")], 4);
        w.gauge("lag_seconds", "Lag.", &[], 0.25);
        let text = w.finish();
        assert_eq!(text.matches("# TYPE x_total counter").count(), 1);
        assert!(text.contains("x_total{output=\"a\\\"b\"} 3\n"), "{text}");
        assert!(text.contains("lag_seconds 0.25\n"), "{text}");
    }
}
