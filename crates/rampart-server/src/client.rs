//! A client of the query API, for `rampart query` and scripts.

use std::path::{Path, PathBuf};
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

/// The options of `rampart query` (with the `clap` feature, its arguments: the doc comments are
/// the help text).
#[derive(Debug, Clone)]
#[cfg_attr(feature = "clap", derive(clap::Args))]
pub struct QueryArgs {
    /// The server, `https://host:port`.
    #[cfg_attr(
        feature = "clap",
        arg(long, env = "RAMPART_SERVER", default_value = "https://127.0.0.1:8443")
    )]
    pub server: String,
    /// An API token (`rampart server token create`); analyst or admin for events, any role
    /// for `--alerts`.
    #[cfg_attr(
        feature = "clap",
        arg(long, env = "RAMPART_TOKEN", conflicts_with = "token_file")
    )]
    pub token: Option<String>,
    /// A file holding the API token (default on the server host: its `admin.token`).
    #[cfg_attr(
        feature = "clap",
        arg(long, default_value = "/var/lib/rampart/server/admin.token")
    )]
    pub token_file: PathBuf,
    /// The server's CA certificate (the server's `<data_dir>/ca/ca.crt`, or an agent's
    /// `tls/ca.crt`).
    #[cfg_attr(
        feature = "clap",
        arg(
            long,
            env = "RAMPART_CA",
            default_value = "/var/lib/rampart/server/ca/ca.crt"
        )
    )]
    pub ca: PathBuf,
    /// Only records at or after this time: RFC 3339, Unix nanoseconds, or a duration ago
    /// (`15m`, `2h`, `7d`).
    #[cfg_attr(feature = "clap", arg(long))]
    pub since: Option<String>,
    /// Only records before this time (same forms as --since).
    #[cfg_attr(feature = "clap", arg(long))]
    pub until: Option<String>,
    /// Host name.
    #[cfg_attr(feature = "clap", arg(long))]
    pub host: Option<String>,
    /// Container: id prefix or name.
    #[cfg_attr(feature = "clap", arg(long))]
    pub container: Option<String>,
    /// Alerts of this rule.
    #[cfg_attr(feature = "clap", arg(long))]
    pub rule: Option<String>,
    /// Record type: an event kind (`process.exec`, `net.connect`, ...) or `alert`.
    #[cfg_attr(feature = "clap", arg(long = "type"))]
    pub event_type: Option<String>,
    /// `event` or `alert`.
    #[cfg_attr(feature = "clap", arg(long, value_parser = ["event", "alert"]))]
    pub kind: Option<String>,
    /// Only alerts (works with a read-only token).
    #[cfg_attr(feature = "clap", arg(long))]
    pub alerts: bool,
    /// Jurisdiction tag of the host.
    #[cfg_attr(feature = "clap", arg(long))]
    pub region: Option<String>,
    /// Agent id.
    #[cfg_attr(feature = "clap", arg(long))]
    pub agent: Option<String>,
    /// One record by id.
    #[cfg_attr(feature = "clap", arg(long))]
    pub id: Option<String>,
    /// Only records whose JSON contains this text (applied to the records the server
    /// returned, after --limit).
    #[cfg_attr(feature = "clap", arg(long))]
    pub grep: Option<String>,
    /// At most this many records (newest first; the server caps it at 10000).
    #[cfg_attr(feature = "clap", arg(long, default_value_t = 100))]
    pub limit: usize,
    /// Print how many records match instead of the records.
    #[cfg_attr(feature = "clap", arg(long))]
    pub count: bool,
    /// JSON lines (one record per line) instead of a table.
    #[cfg_attr(feature = "clap", arg(long))]
    pub json: bool,
}

impl QueryArgs {
    /// The query parameters of the filters given, in a fixed order; with `limit`, also the
    /// record limit (a count takes none).
    pub fn params(&self, limit: bool) -> Vec<(&'static str, String)> {
        let filters = [
            ("since", &self.since),
            ("until", &self.until),
            ("host", &self.host),
            ("container", &self.container),
            ("rule", &self.rule),
            ("type", &self.event_type),
            ("kind", &self.kind),
            ("region", &self.region),
            ("agent", &self.agent),
            ("id", &self.id),
        ];
        let mut params: Vec<(&'static str, String)> = filters
            .into_iter()
            .filter_map(|(k, v)| v.as_ref().map(|v| (k, v.clone())))
            .collect();
        if limit {
            params.push(("limit", self.limit.to_string()));
        }
        params
    }

    /// Keeps the records `--grep` asks for (all without it).
    pub fn grep(&self, records: &mut Vec<Value>) {
        if let Some(text) = &self.grep {
            records.retain(|r| r.to_string().contains(text.as_str()));
        }
    }
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

fn str_at<'a>(v: &'a Value, pointer: &str) -> Option<&'a str> {
    v.pointer(pointer)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
}

/// What a stored record says happened, in a few words: `[PRIORITY] RULE` for an alert, else
/// the process and the most telling field (file path, destination, DNS query, arguments).
pub fn summary(r: &Value) -> String {
    if r["type"] == "alert" {
        let rule = str_at(r, "/rule").unwrap_or("?");
        let prio = str_at(r, "/priority").unwrap_or("");
        return format!("[{prio}] {rule}");
    }
    let process = str_at(r, "/process/name").unwrap_or("");
    let args: Vec<&str> = r
        .pointer("/process/args")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).skip(1).collect())
        .unwrap_or_default();
    let detail = if let Some(p) = str_at(r, "/file/path") {
        p.to_string()
    } else if let Some(ip) = str_at(r, "/network/dst/ip") {
        match r.pointer("/network/dst/port").and_then(Value::as_u64) {
            Some(port) => format!("-> {ip}:{port}"),
            None => format!("-> {ip}"),
        }
    } else if let Some(q) = str_at(r, "/dns/query") {
        q.to_string()
    } else {
        args.join(" ")
    };
    format!("{process} {detail}").trim().to_string()
}

/// `rampart query`'s table: a header, then one line per record (time, host, container, type,
/// summary cut to 100 bytes at a character boundary); every line ends in `\n`.
pub fn table(records: &[Value]) -> String {
    use std::fmt::Write;
    let mut out = format!(
        "{:<20} {:<16} {:<16} {:<16} SUMMARY\n",
        "TIME", "HOST", "CONTAINER", "TYPE"
    );
    for r in records {
        let time = r["time_ns"]
            .as_u64()
            .map(|ns| {
                let t = std::time::UNIX_EPOCH + std::time::Duration::from_nanos(ns);
                humantime::format_rfc3339_seconds(t).to_string()
            })
            .unwrap_or_default();
        let host = str_at(r, "/device/hostname").unwrap_or("-");
        let container = str_at(r, "/container/name")
            .map(str::to_string)
            .or_else(|| str_at(r, "/container/uid").map(|u| u.chars().take(12).collect()))
            .unwrap_or_else(|| "-".into());
        let kind = str_at(r, "/type").unwrap_or("?");
        let mut line = summary(r);
        if line.len() > 100 {
            let cut = (0..=100)
                .rev()
                .find(|i| line.is_char_boundary(*i))
                .unwrap_or(0);
            line.truncate(cut);
        }
        let _ = writeln!(
            out,
            "{time:<20} {host:<16} {container:<16} {kind:<16} {line}"
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query_args() -> QueryArgs {
        QueryArgs {
            server: "https://127.0.0.1:8443".into(),
            token: None,
            token_file: PathBuf::new(),
            ca: PathBuf::new(),
            since: None,
            until: None,
            host: None,
            container: None,
            rule: None,
            event_type: None,
            kind: None,
            alerts: false,
            region: None,
            agent: None,
            id: None,
            grep: None,
            limit: 100,
            count: false,
            json: false,
        }
    }

    #[test]
    fn query_params_carry_only_the_filters_given_and_the_limit_only_when_asked() {
        let mut a = query_args();
        assert!(a.params(false).is_empty());
        assert_eq!(a.params(true), vec![("limit", "100".to_string())]);
        a.event_type = Some("process.exec".into());
        a.since = Some("15m".into());
        a.id = Some("x&y=1".into());
        a.limit = 7;
        assert_eq!(
            a.params(true),
            vec![
                ("since", "15m".to_string()),
                ("type", "process.exec".to_string()),
                ("id", "x&y=1".to_string()),
                ("limit", "7".to_string()),
            ]
        );
        // The values are escaped when the path is built, not here.
        assert_eq!(
            with_query("/api/v1/events", &a.params(false)),
            "/api/v1/events?since=15m&type=process%2Eexec&id=x%26y%3D1"
        );
    }

    #[test]
    fn grep_keeps_records_whose_json_contains_the_text() {
        let mut a = query_args();
        let all = vec![
            serde_json::json!({"type": "alert", "rule": "Miner"}),
            serde_json::json!({"type": "file.open"}),
        ];
        let mut kept = all.clone();
        a.grep(&mut kept);
        assert_eq!(kept, all);
        a.grep = Some("\"rule\":\"Miner\"".into());
        a.grep(&mut kept);
        assert_eq!(kept, vec![all[0].clone()]);
    }

    #[test]
    fn table_summarises_alerts_and_events_and_cuts_long_lines_at_a_character() {
        let alert = serde_json::json!({"type": "alert", "rule": "Miner", "priority": "critical",
            "time_ns": 0u64, "device": {"hostname": "h1"}, "container": {"uid": "0123456789abcdef"}});
        assert_eq!(summary(&alert), "[critical] Miner");
        let long = "é".repeat(80);
        let ev = serde_json::json!({"type": "file.open", "process": {"name": "cat"},
            "file": {"path": long}});
        let t = table(&[alert, ev]);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 3);
        assert!(lines[1].starts_with("1970-01-01T00:00:00Z h1"), "{t}");
        assert!(lines[1].contains("0123456789ab     alert"), "{t}");
        let summary_part = lines[2].rsplit("file.open").next().unwrap_or("").trim();
        assert!(summary_part.len() <= 100, "{}", summary_part.len());
        assert!(summary_part.starts_with("cat éé"), "{t}");
        let dst = serde_json::json!({"type": "net.connect", "process": {"name": "curl"},
            "network": {"dst": {"ip": "10.0.0.1", "port": 443}}});
        assert_eq!(summary(&dst), "curl -> 10.0.0.1:443");
    }
}
