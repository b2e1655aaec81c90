//! Syslog output, RFC 5424 messages over UDP (RFC 5426), TCP with octet counting (RFC 6587)
//! or a local datagram socket.
//!
//! One record is one message:
//! `<PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID [rampart@32473 id="..."] BOM JSON`
//! where PRI is facility × 8 + severity (an alert's priority, which maps one to one onto syslog
//! severities; informational for events), HOSTNAME is the record's host, MSGID its `type`
//! (`process.exec`, `alert`), and the message is the record's JSON. 32473 is the enterprise
//! number RFC 5612 reserves for documentation; receivers key on the SD-ID name only.

use std::time::{Duration, UNIX_EPOCH};

use tokio::io::AsyncWriteExt;

use super::{BoxFuture, Delivered, Output, OutputError};
use crate::queue::Entry;
use crate::record::RecordMeta;

/// Where syslog messages go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SyslogTransport {
    Udp(String),
    Tcp(String),
    Unix(std::path::PathBuf),
}

enum Conn {
    Udp(tokio::net::UdpSocket),
    Tcp(tokio::net::TcpStream),
    Unix(tokio::net::UnixDatagram),
}

/// Sends records as RFC 5424 messages.
pub struct SyslogOutput {
    name: String,
    transport: SyslogTransport,
    facility: u8,
    app_name: String,
    procid: String,
    conn: Option<Conn>,
}

impl std::fmt::Debug for SyslogOutput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SyslogOutput")
            .field("name", &self.name)
            .field("transport", &self.transport)
            .finish_non_exhaustive()
    }
}

/// Largest datagram sent; longer messages are cut (RFC 5426 allows receivers to truncate too).
const MAX_DATAGRAM: usize = 65_000;

fn facility_code(name: &str) -> Option<u8> {
    Some(match name {
        "kern" => 0,
        "user" => 1,
        "daemon" => 3,
        "auth" => 4,
        "syslog" => 5,
        "authpriv" => 10,
        "local0" => 16,
        "local1" => 17,
        "local2" => 18,
        "local3" => 19,
        "local4" => 20,
        "local5" => 21,
        "local6" => 22,
        "local7" => 23,
        _ => return None,
    })
}

/// An RFC 5424 header field: printable US-ASCII without spaces, at most `max` characters, `-`
/// when empty.
fn header_field(s: &str, max: usize) -> String {
    let v: String = s
        .chars()
        .filter(|c| c.is_ascii_graphic())
        .take(max)
        .collect();
    if v.is_empty() {
        "-".into()
    } else {
        v
    }
}

/// An SD-PARAM value with `"`, `\` and `]` escaped.
fn sd_value(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '"' | '\\' | ']') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

impl SyslogOutput {
    /// An output to `address` (`udp://host:port`, `tcp://host:port`, `unix:///dev/log`).
    pub fn new(
        name: impl Into<String>,
        address: &str,
        facility: &str,
        app_name: &str,
    ) -> Result<SyslogOutput, OutputError> {
        let name = name.into();
        let transport = if let Some(a) = address.strip_prefix("udp://") {
            SyslogTransport::Udp(a.to_string())
        } else if let Some(a) = address.strip_prefix("tcp://") {
            SyslogTransport::Tcp(a.to_string())
        } else if let Some(p) = address.strip_prefix("unix://") {
            SyslogTransport::Unix(p.into())
        } else {
            return Err(OutputError::new(
                &name,
                format!("syslog address {address:?}: expected udp://host:port, tcp://host:port or unix:///path"),
            ));
        };
        let facility = facility_code(facility).ok_or_else(|| {
            OutputError::new(
                &name,
                format!("syslog facility {facility:?}: expected kern, user, daemon, auth, syslog, authpriv or local0..local7"),
            )
        })?;
        Ok(SyslogOutput {
            name,
            transport,
            facility,
            app_name: header_field(app_name, 48),
            procid: std::process::id().to_string(),
            conn: None,
        })
    }

    /// The RFC 5424 message for one record.
    pub fn format(&self, payload: &[u8]) -> Vec<u8> {
        let meta = RecordMeta::parse(payload).ok();
        let severity = meta.as_ref().map_or(6, RecordMeta::syslog_severity);
        let pri = u16::from(self.facility) * 8 + u16::from(severity);
        let time = meta
            .as_ref()
            .filter(|m| m.time_ns > 0)
            .map(|m| UNIX_EPOCH + Duration::from_nanos(m.time_ns))
            .unwrap_or_else(std::time::SystemTime::now);
        let ts = humantime::format_rfc3339_micros(time).to_string();
        let host = header_field(
            meta.as_ref().map_or("", |m| m.device.hostname.as_str()),
            255,
        );
        let msgid = header_field(meta.as_ref().map_or("", |m| m.kind.as_str()), 32);
        let sd = match &meta {
            Some(m) => {
                let mut sd = format!("[rampart@32473 id=\"{}\"", sd_value(&m.metadata.uid));
                if let Some(r) = &m.device.region {
                    sd.push_str(&format!(" region=\"{}\"", sd_value(r)));
                }
                sd.push(']');
                sd
            }
            None => "-".into(),
        };
        let mut msg = format!(
            "<{pri}>1 {ts} {host} {} {} {msgid} {sd} ",
            self.app_name, self.procid
        )
        .into_bytes();
        msg.extend_from_slice("\u{feff}".as_bytes());
        msg.extend_from_slice(payload);
        msg
    }

    async fn connect(&self) -> std::io::Result<Conn> {
        Ok(match &self.transport {
            SyslogTransport::Udp(a) => {
                let target = tokio::net::lookup_host(a.as_str())
                    .await?
                    .next()
                    .ok_or_else(|| std::io::Error::other(format!("{a}: no address")))?;
                let bind = if target.is_ipv4() {
                    "0.0.0.0:0"
                } else {
                    "[::]:0"
                };
                let s = tokio::net::UdpSocket::bind(bind).await?;
                s.connect(target).await?;
                Conn::Udp(s)
            }
            SyslogTransport::Tcp(a) => {
                let s = tokio::net::TcpStream::connect(a.as_str()).await?;
                let _ = s.set_nodelay(true);
                Conn::Tcp(s)
            }
            SyslogTransport::Unix(p) => {
                let s = tokio::net::UnixDatagram::unbound()?;
                s.connect(p)?;
                Conn::Unix(s)
            }
        })
    }

    async fn send_all(&mut self, batch: &[Entry]) -> std::io::Result<u64> {
        if self.conn.is_none() {
            self.conn = Some(self.connect().await?);
        }
        let msgs: Vec<Vec<u8>> = batch.iter().map(|e| self.format(&e.payload)).collect();
        let mut bytes = 0u64;
        let Some(conn) = self.conn.as_mut() else {
            return Ok(0);
        };
        match conn {
            Conn::Udp(s) => {
                for m in &msgs {
                    let m = &m[..m.len().min(MAX_DATAGRAM)];
                    s.send(m).await?;
                    bytes += m.len() as u64;
                }
            }
            Conn::Unix(s) => {
                for m in &msgs {
                    let m = &m[..m.len().min(MAX_DATAGRAM)];
                    s.send(m).await?;
                    bytes += m.len() as u64;
                }
            }
            Conn::Tcp(s) => {
                let mut buf = Vec::new();
                for m in &msgs {
                    buf.extend_from_slice(format!("{} ", m.len()).as_bytes());
                    buf.extend_from_slice(m);
                }
                s.write_all(&buf).await?;
                s.flush().await?;
                bytes = buf.len() as u64;
            }
        }
        Ok(bytes)
    }
}

impl Output for SyslogOutput {
    fn name(&self) -> &str {
        &self.name
    }

    fn send<'a>(&'a mut self, batch: &'a [Entry]) -> BoxFuture<'a, Result<Delivered, OutputError>> {
        Box::pin(async move {
            match self.send_all(batch).await {
                Ok(bytes) => Ok(Delivered {
                    bytes,
                    ..Delivered::default()
                }),
                Err(e) => {
                    self.conn = None;
                    Err(OutputError::new(
                        &self.name,
                        format!("syslog {:?}: {e}", self.transport),
                    ))
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_follows_rfc5424() {
        let out = SyslogOutput::new("s", "udp://127.0.0.1:1", "local3", "rampart").expect("valid");
        let payload = br#"{"type":"alert","time_ns":1700000000123456789,"severity_id":4,"metadata":{"uid":"a\"1"},"device":{"hostname":"web 1","region":"eu-de"},"priority":"Error"}"#;
        let msg = String::from_utf8(out.format(payload)).expect("utf-8");
        // local3 (19) * 8 + error (3)
        let expected_head = format!(
            "<155>1 2023-11-14T22:13:20.123456Z web1 rampart {} alert [rampart@32473 id=\"a\\\"1\" region=\"eu-de\"] \u{feff}{{",
            std::process::id()
        );
        assert!(msg.starts_with(&expected_head), "{msg}");
        assert!(SyslogOutput::new("s", "ftp://x", "local0", "r").is_err());
        assert!(SyslogOutput::new("s", "udp://x:1", "local9", "r").is_err());
    }
}
