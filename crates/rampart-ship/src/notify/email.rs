//! Mail over SMTP (lettre, rustls): STARTTLS on the submission port by default.

use std::net::IpAddr;
use std::path::PathBuf;

use lettre::message::header::ContentType;
use lettre::message::Mailbox;
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, CertificateStore, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use serde::Deserialize;

use super::{read_secret, DeliveryConfig, GroupConfig, Notice, Notifier, Sink, SinkError};
use crate::output::{BoxFuture, OutputError, OutputFilter};

/// How the SMTP connection is protected.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SmtpTls {
    /// Plain connection upgraded with STARTTLS, which must succeed (default; port 587).
    #[default]
    Starttls,
    /// TLS from the first byte (port 465).
    Tls,
    /// No encryption: only to a relay on this host (`localhost`, `127.0.0.1`, `::1`).
    None,
}

/// `smtp:` of an email notifier.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct SmtpConfig {
    pub host: String,
    /// Default: 587 for `starttls`, 465 for `tls`, 25 for `none`.
    #[serde(default)]
    pub port: Option<u16>,
    #[serde(default)]
    pub tls: SmtpTls,
    /// CA bundle the server's certificate is checked against (default: the system bundle).
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// User for SMTP AUTH; the password comes from `password_file` (mode 0600) or
    /// `password_env`, never from this file.
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    #[serde(default)]
    pub password_env: Option<String>,
}

fn default_subject_prefix() -> String {
    "[Rampart]".into()
}

/// `type: email`: mail notifications.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct EmailConfig {
    /// The output's name (default: the type).
    #[serde(default)]
    pub name: Option<String>,
    /// Which alerts are sent (see [`OutputFilter`]).
    #[serde(default)]
    pub filter: OutputFilter,
    pub smtp: SmtpConfig,
    /// Sender, `Rampart <rampart@example.com>` or a bare address.
    pub from: String,
    /// Recipients.
    pub to: Vec<String>,
    /// Put before every subject (default `[Rampart]`).
    #[serde(default = "default_subject_prefix")]
    pub subject_prefix: String,
    /// The dashboard's base URL, linked from every message.
    #[serde(default)]
    pub dashboard_url: Option<String>,
    #[serde(default)]
    pub group: GroupConfig,
    #[serde(default)]
    pub delivery: DeliveryConfig,
}

impl EmailConfig {
    /// Starts the notifier (on the current tokio runtime).
    pub fn start(&self, name: &str) -> Result<Notifier, OutputError> {
        let bad = |m: String| OutputError::new(name, m);
        let from: Mailbox = self
            .from
            .parse()
            .map_err(|e| bad(format!("from {:?}: {e}", self.from)))?;
        if self.to.is_empty() {
            return Err(bad("to: at least one recipient".into()));
        }
        let to = self
            .to
            .iter()
            .map(|t| {
                t.parse::<Mailbox>()
                    .map_err(|e| bad(format!("to {t:?}: {e}")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let s = &self.smtp;
        let port = s.port.unwrap_or(match s.tls {
            SmtpTls::Starttls => 587,
            SmtpTls::Tls => 465,
            SmtpTls::None => 25,
        });
        let tls = match s.tls {
            SmtpTls::None => {
                let local = s.host == "localhost"
                    || s.host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback());
                if !local {
                    return Err(bad(format!(
                        "smtp.tls: none is only allowed to a relay on this host, not {:?}: \
                         alerts and credentials would cross the network in clear",
                        s.host
                    )));
                }
                Tls::None
            }
            SmtpTls::Starttls | SmtpTls::Tls => {
                let ca = s
                    .ca_file
                    .clone()
                    .unwrap_or_else(|| PathBuf::from(crate::tls::SYSTEM_CA_BUNDLE));
                let pem = std::fs::read(&ca)
                    .map_err(|e| bad(format!("smtp.ca_file {}: {e}", ca.display())))?;
                let cert = Certificate::from_pem(&pem)
                    .map_err(|e| bad(format!("smtp.ca_file {}: {e}", ca.display())))?;
                let params = TlsParameters::builder(s.host.clone())
                    .certificate_store(CertificateStore::None)
                    .add_root_certificate(cert)
                    .build_rustls()
                    .map_err(|e| bad(format!("smtp TLS: {e}")))?;
                if s.tls == SmtpTls::Tls {
                    Tls::Wrapper(params)
                } else {
                    Tls::Required(params)
                }
            }
        };
        let timeout = super::duration(name, "delivery.timeout", &self.delivery.timeout)?;
        let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(s.host.clone())
            .port(port)
            .tls(tls)
            .timeout(Some(timeout));
        match (&s.username, &s.password_file, &s.password_env) {
            (Some(user), f, e) => {
                let password = read_secret(name, "smtp.password", f.as_deref(), e.as_deref())?;
                builder = builder.credentials(Credentials::new(user.clone(), password));
            }
            (None, None, None) => {}
            (None, _, _) => return Err(bad("smtp: a password without a username".into())),
        }
        let sink = EmailSink {
            transport: builder.build(),
            from,
            to,
            prefix: self.subject_prefix.clone(),
            timeout,
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

struct EmailSink {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
    to: Vec<Mailbox>,
    prefix: String,
    /// For the whole message (lettre's own timeout is per command).
    timeout: std::time::Duration,
}

impl Sink for EmailSink {
    fn deliver<'a>(&'a mut self, n: &'a Notice) -> BoxFuture<'a, Result<(), SinkError>> {
        Box::pin(async move {
            let mut m = Message::builder()
                .from(self.from.clone())
                .subject(n.email_subject(&self.prefix))
                .header(ContentType::TEXT_PLAIN);
            for t in &self.to {
                m = m.to(t.clone());
            }
            let msg = m
                .body(n.email_body())
                .map_err(|e| SinkError::new(e.to_string()))?;
            let send = tokio::time::timeout(self.timeout, self.transport.send(msg));
            match send.await {
                Ok(Ok(_)) => Ok(()),
                Ok(Err(e)) => Err(SinkError {
                    timed_out: e.is_timeout(),
                    message: format!("SMTP: {e}"),
                }),
                Err(_) => Err(SinkError {
                    timed_out: true,
                    message: format!("SMTP: no answer within {:?}", self.timeout),
                }),
            }
        })
    }
}
