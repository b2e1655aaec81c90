//! Chat webhooks: Slack, Mattermost and Microsoft Teams.

use std::path::{Path, PathBuf};

use bytes::Bytes;
use hyper::Method;
use serde::Deserialize;

use super::{read_secret, DeliveryConfig, GroupConfig, Notice, Notifier, Sink, SinkError};
use crate::client::ClientError;
use crate::client::HttpClient;
use crate::output::{BoxFuture, OutputError, OutputFilter};

/// The payload a webhook receives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WebhookFormat {
    /// Slack incoming webhook: `{"text": ..., "blocks": [...]}`.
    Slack,
    /// Mattermost incoming webhook: Slack's `text`, as Markdown.
    Mattermost,
    /// Microsoft Teams: an Adaptive Card message (Workflows webhook or incoming webhook).
    Teams,
}

/// `type: webhook`: chat notifications.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    /// The output's name (default: the type).
    #[serde(default)]
    pub name: Option<String>,
    /// Which alerts are sent (see [`OutputFilter`]).
    #[serde(default)]
    pub filter: OutputFilter,
    pub format: WebhookFormat,
    /// The webhook URL. A Slack or Teams webhook URL is a secret (whoever has it can post):
    /// prefer `url_file` (mode 0600) or `url_env`.
    #[serde(default)]
    pub url: Option<String>,
    #[serde(default)]
    pub url_file: Option<PathBuf>,
    #[serde(default)]
    pub url_env: Option<String>,
    /// CA bundle for https (default: the system bundle).
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// The dashboard's base URL (`https://rampart.example.com:8443`), linked from every
    /// message.
    #[serde(default)]
    pub dashboard_url: Option<String>,
    #[serde(default)]
    pub group: GroupConfig,
    #[serde(default)]
    pub delivery: DeliveryConfig,
}

impl WebhookConfig {
    /// Starts the notifier (on the current tokio runtime).
    pub fn start(&self, name: &str) -> Result<Notifier, OutputError> {
        let url = match (&self.url, &self.url_file, &self.url_env) {
            (Some(u), None, None) => u.clone(),
            (None, f, e) => read_secret(name, "url", f.as_deref(), e.as_deref())?,
            _ => return Err(OutputError::new(name, "give one of url, url_file, url_env")),
        };
        let timeout = super::duration(name, "delivery.timeout", &self.delivery.timeout)?;
        let sink = WebhookSink::new(name, &url, self.format, self.ca_file.as_deref())?;
        let sink = WebhookSink {
            client: sink.client.with_timeout(timeout),
            ..sink
        };
        Notifier::start(
            name.to_string(),
            Box::new(sink),
            &self.group,
            &self.delivery,
            self.dashboard_url.as_deref(),
        )
    }
}

struct WebhookSink {
    client: HttpClient,
    path: String,
    format: WebhookFormat,
}

impl WebhookSink {
    fn new(
        name: &str,
        url: &str,
        format: WebhookFormat,
        ca_file: Option<&Path>,
    ) -> Result<WebhookSink, OutputError> {
        // Errors name the origin only: the path of a Slack or Teams URL is its secret.
        let uri: hyper::Uri = url
            .parse()
            .map_err(|e| OutputError::new(name, format!("webhook url: {e}")))?;
        let origin = match (uri.scheme_str(), uri.authority()) {
            (Some(s @ ("http" | "https")), Some(a)) => format!("{s}://{a}"),
            _ => {
                return Err(OutputError::new(
                    name,
                    "webhook url: expected http(s)://host[:port]/path",
                ))
            }
        };
        let tls = if uri.scheme_str() == Some("https") {
            let path = ca_file.unwrap_or(Path::new(crate::tls::SYSTEM_CA_BUNDLE));
            let roots =
                crate::tls::load_roots(path).map_err(|e| OutputError::new(name, e.to_string()))?;
            Some(
                crate::tls::client_config(roots, None)
                    .map_err(|e| OutputError::new(name, e.to_string()))?,
            )
        } else {
            None
        };
        let client = HttpClient::new(&origin, tls)
            .map_err(|e| OutputError::new(name, e.to_string()))?
            // The notifier's own timeout bounds each attempt; this only bounds a reply's size.
            .with_max_response(64 << 10);
        let path = uri
            .path_and_query()
            .map_or_else(|| "/".to_string(), |p| p.as_str().to_string());
        Ok(WebhookSink {
            client,
            path,
            format,
        })
    }
}

impl Sink for WebhookSink {
    fn deliver<'a>(&'a mut self, n: &'a Notice) -> BoxFuture<'a, Result<(), SinkError>> {
        Box::pin(async move {
            let body = match self.format {
                WebhookFormat::Slack => n.slack(),
                WebhookFormat::Mattermost => n.mattermost(),
                WebhookFormat::Teams => n.teams(),
            };
            let body = serde_json::to_vec(&body).map_err(|e| SinkError::new(e.to_string()))?;
            let resp = self
                .client
                .request(
                    Method::POST,
                    &self.path,
                    &[("content-type", "application/json")],
                    Bytes::from(body),
                )
                .await
                .map_err(|e| SinkError {
                    timed_out: matches!(e, ClientError::Timeout { .. }),
                    message: e.to_string(),
                })?;
            if resp.is_success() {
                Ok(())
            } else {
                Err(SinkError::new(format!(
                    "{} answered {}: {}",
                    self.client.authority(),
                    resp.status,
                    resp.body_text()
                )))
            }
        })
    }
}
