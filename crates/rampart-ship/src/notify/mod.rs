//! Notifiers: alerts to people, in chat (Slack, Mattermost, Microsoft Teams webhooks) and by
//! mail (SMTP with STARTTLS).
//!
//! A notifier is an [`Output`](crate::Output) like any other (so the agent's `outputs:` and the
//! server's `notifications:` configure it the same way and the same `filter:` applies), but
//! what it sends is messages for people, so it adds three things:
//!
//! * **Grouping and rate limits.** Alerts are grouped by a key (default: rule and host). Within
//!   a window (default 60 s) the first alert of a group is sent at once, as long as fewer than
//!   `max_messages` messages went out in the window; every further alert of the group, and
//!   every alert of a group that came after the limit, is held and counted. When the window
//!   ends, one summary message says what was held: "and 412 more alerts of rule X on host Y".
//!   So a storm of any size costs at most `max_messages + 1` messages per window, and every
//!   alert is either in a message or counted in a summary.
//! * **A bounded queue with its own retries.** Messages wait in a queue of `queue` messages for
//!   one delivery task, which retries a failed message with exponential backoff (`retries`
//!   times) and gives each attempt `timeout`. The shipper's delivery loop only puts messages
//!   in the queue, so a chat service that is down or hangs never holds up the records queued
//!   for other outputs, nor the agent. A message that finds the queue full is dropped and
//!   counted (`rampart_notify_dropped_total{reason="queue_full"}`) with a warning; a message
//!   given up after its retries likewise (`reason="failed"`). Messages are in memory: a
//!   restart loses the ones not yet delivered (the records themselves are in the durable queue
//!   and on the server).
//! * **A link to the dashboard** (`dashboard_url`) in every message.
//!
//! Alert text is written by whoever controls the process being watched (command lines, file
//! and container names), so every format escapes it for its receiver: no `<!channel>` or
//! `@all` mention, link or markup can be smuggled into a message, nor a header into a mail.

mod email;
mod message;
mod webhook;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use rampart_event::Priority;
use serde::Deserialize;
use tokio::sync::mpsc;

pub use email::{EmailConfig, SmtpConfig, SmtpTls};
pub use message::{AlertInfo, Notice};
pub use webhook::{WebhookConfig, WebhookFormat};

use crate::metrics::PromWriter;
use crate::output::{BoxFuture, Delivered, Output, OutputError};
use crate::queue::Entry;

/// What alerts are grouped by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GroupKey {
    Rule,
    Host,
    Container,
    Priority,
}

fn default_group_by() -> Vec<GroupKey> {
    vec![GroupKey::Rule, GroupKey::Host]
}
fn default_window() -> String {
    "60s".into()
}
fn default_max_messages() -> u32 {
    10
}

/// `group:` of a notifier.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct GroupConfig {
    /// Alerts with the same values of these fields form a group (default `[rule, host]`).
    #[serde(default = "default_group_by")]
    pub by: Vec<GroupKey>,
    /// The window (humantime, default `60s`).
    #[serde(default = "default_window")]
    pub window: String,
    /// Messages per window before everything else waits for the summary (default 10).
    #[serde(default = "default_max_messages")]
    pub max_messages: u32,
}

impl Default for GroupConfig {
    fn default() -> Self {
        GroupConfig {
            by: default_group_by(),
            window: default_window(),
            max_messages: default_max_messages(),
        }
    }
}

fn default_queue() -> usize {
    1000
}
fn default_timeout() -> String {
    "10s".into()
}
fn default_retries() -> u32 {
    5
}
fn default_backoff() -> String {
    "1s".into()
}
fn default_max_backoff() -> String {
    "60s".into()
}

/// `delivery:` of a notifier.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct DeliveryConfig {
    /// Messages waiting for delivery at most (default 1000); more are dropped and counted.
    #[serde(default = "default_queue")]
    pub queue: usize,
    /// Time allowed for one attempt: connecting, TLS, sending and the answer (default `10s`).
    #[serde(default = "default_timeout")]
    pub timeout: String,
    /// Attempts after the first before a message is given up (default 5).
    #[serde(default = "default_retries")]
    pub retries: u32,
    /// Wait before the first retry (default `1s`); doubles up to `max_backoff` (default `60s`).
    #[serde(default = "default_backoff")]
    pub backoff: String,
    #[serde(default = "default_max_backoff")]
    pub max_backoff: String,
}

impl Default for DeliveryConfig {
    fn default() -> Self {
        DeliveryConfig {
            queue: default_queue(),
            timeout: default_timeout(),
            retries: default_retries(),
            backoff: default_backoff(),
            max_backoff: default_max_backoff(),
        }
    }
}

fn duration(output: &str, field: &str, v: &str) -> Result<Duration, OutputError> {
    humantime::parse_duration(v)
        .map_err(|e| OutputError::new(output, format!("{field}: {v:?}: {e}")))
}

/// Counters of one notifier (`rampart_notify_*{notifier}` metrics).
#[derive(Debug, Default)]
pub struct NotifyCounters {
    /// Alerts handed to the notifier.
    pub alerts: AtomicU64,
    /// Records handed to it that were not alerts (ignored).
    pub ignored: AtomicU64,
    /// Alerts the server's notification filter refused (the agent's shipper counts its own).
    pub filtered: AtomicU64,
    /// Alerts held back by grouping or the rate limit and counted in a summary.
    pub grouped: AtomicU64,
    /// Messages delivered.
    pub sent: AtomicU64,
    /// Failed delivery attempts (each retried until `retries` is used up).
    pub send_errors: AtomicU64,
    /// Of those, attempts that ran out of time.
    pub timeouts: AtomicU64,
    /// Messages given up after their retries.
    pub failed: AtomicU64,
    /// Messages dropped because the queue was full.
    pub queue_full: AtomicU64,
    /// Alerts in messages that were dropped or given up.
    pub alerts_lost: AtomicU64,
    /// Messages waiting for delivery now.
    pub queued: AtomicU64,
}

/// A snapshot of [`NotifyCounters`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NotifyStats {
    pub name: String,
    pub alerts: u64,
    pub ignored: u64,
    pub filtered: u64,
    pub grouped: u64,
    pub sent: u64,
    pub send_errors: u64,
    pub timeouts: u64,
    pub failed: u64,
    pub queue_full: u64,
    pub alerts_lost: u64,
    pub queued: u64,
}

impl NotifyCounters {
    /// A snapshot named `name`.
    pub fn snapshot(&self, name: &str) -> NotifyStats {
        let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
        NotifyStats {
            name: name.to_string(),
            alerts: l(&self.alerts),
            ignored: l(&self.ignored),
            filtered: l(&self.filtered),
            grouped: l(&self.grouped),
            sent: l(&self.sent),
            send_errors: l(&self.send_errors),
            timeouts: l(&self.timeouts),
            failed: l(&self.failed),
            queue_full: l(&self.queue_full),
            alerts_lost: l(&self.alerts_lost),
            queued: l(&self.queued),
        }
    }
}

/// Writes the `rampart_notify_*` metrics of `stats`.
pub fn write_metrics(w: &mut PromWriter, stats: &[NotifyStats]) {
    type Field = fn(&NotifyStats) -> u64;
    let counters: [(&str, &str, Field); 6] = [
        (
            "rampart_notify_alerts_total",
            "Alerts handed to a notifier.",
            |s| s.alerts,
        ),
        (
            "rampart_notify_filtered_total",
            "Alerts a server notification filter refused.",
            |s| s.filtered,
        ),
        (
            "rampart_notify_grouped_total",
            "Alerts held back by grouping or the rate limit and counted in a summary message.",
            |s| s.grouped,
        ),
        ("rampart_notify_sent_total", "Messages delivered.", |s| {
            s.sent
        }),
        (
            "rampart_notify_send_errors_total",
            "Failed delivery attempts (retried).",
            |s| s.send_errors,
        ),
        (
            "rampart_notify_alerts_lost_total",
            "Alerts in messages that were dropped or given up.",
            |s| s.alerts_lost,
        ),
    ];
    for (name, help, f) in counters {
        for s in stats {
            w.counter(name, help, &[("notifier", &s.name)], f(s));
        }
    }
    for s in stats {
        w.counter(
            "rampart_notify_timeouts_total",
            "Delivery attempts that ran out of time.",
            &[("notifier", &s.name)],
            s.timeouts,
        );
    }
    for s in stats {
        for (reason, v) in [("queue_full", s.queue_full), ("failed", s.failed)] {
            w.counter(
                "rampart_notify_dropped_total",
                "Messages not delivered: the queue was full, or the retries were used up.",
                &[("notifier", &s.name), ("reason", reason)],
                v,
            );
        }
    }
    for s in stats {
        w.gauge(
            "rampart_notify_queue_depth",
            "Messages waiting for delivery.",
            &[("notifier", &s.name)],
            s.queued as f64,
        );
    }
}

/// Where a notifier's messages go: one message per call.
pub(crate) trait Sink: Send {
    fn deliver<'a>(&'a mut self, n: &'a Notice) -> BoxFuture<'a, Result<(), SinkError>>;
}

/// A failed delivery attempt.
#[derive(Debug, Clone)]
pub(crate) struct SinkError {
    pub message: String,
    /// The receiver did not answer in time.
    pub timed_out: bool,
}

impl SinkError {
    pub(crate) fn new(message: impl Into<String>) -> SinkError {
        SinkError {
            message: message.into(),
            timed_out: false,
        }
    }
}

/// Grouping settings, parsed.
#[derive(Debug, Clone)]
struct Grouping {
    by: Vec<GroupKey>,
    window: Duration,
    max_messages: u32,
}

#[derive(Debug)]
struct Group {
    rule: String,
    host: String,
    container: String,
    /// Most severe priority held.
    priority: Priority,
    /// Its first alert of the window was sent.
    notified: bool,
    held: u64,
}

#[derive(Debug, Default)]
struct WindowState {
    start: Option<Instant>,
    sent: u32,
    groups: HashMap<String, Group>,
    /// Keys in the order groups appeared (summaries list them so).
    order: Vec<String>,
    /// Alerts of groups beyond [`MAX_GROUPS`], counted together, and their most severe
    /// priority.
    other: u64,
    other_priority: Option<Priority>,
}

/// Groups remembered per window. Group names come from alerts (a compromised agent can make
/// up any number of host or rule names): beyond this many, alerts of new groups are counted
/// together, so a window's memory stays bounded.
pub const MAX_GROUPS: usize = 10_000;
/// Characters of a rule, host or container name kept for grouping and summaries.
const MAX_NAME: usize = 200;

fn short(s: &str) -> &str {
    match s.char_indices().nth(MAX_NAME) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

struct Shared {
    name: String,
    grouping: Grouping,
    dashboard: Option<String>,
    state: Mutex<WindowState>,
    tx: mpsc::Sender<Notice>,
    counters: Arc<NotifyCounters>,
}

/// A running notifier: [`submit`](Notifier::submit) never waits. Cheap to clone; the delivery
/// task ends once every clone is dropped and the queue is empty.
#[derive(Clone)]
pub struct Notifier {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Notifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Notifier")
            .field("name", &self.shared.name)
            .finish_non_exhaustive()
    }
}

impl Notifier {
    /// Starts a notifier delivering to `sink` on the current tokio runtime.
    pub(crate) fn start(
        name: String,
        sink: Box<dyn Sink>,
        group: &GroupConfig,
        delivery: &DeliveryConfig,
        dashboard_url: Option<&str>,
    ) -> Result<Notifier, OutputError> {
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| {
            OutputError::new(&name, "a notifier must be started inside a tokio runtime")
        })?;
        let window = duration(&name, "group.window", &group.window)?;
        if window.is_zero() {
            return Err(OutputError::new(&name, "group.window must be more than 0"));
        }
        let timeout = duration(&name, "delivery.timeout", &delivery.timeout)?;
        let backoff = duration(&name, "delivery.backoff", &delivery.backoff)?;
        let max_backoff = duration(&name, "delivery.max_backoff", &delivery.max_backoff)?;
        if delivery.queue == 0 {
            return Err(OutputError::new(&name, "delivery.queue must be at least 1"));
        }
        let dashboard = match dashboard_url {
            Some(u) if !(u.starts_with("https://") || u.starts_with("http://")) => {
                return Err(OutputError::new(
                    &name,
                    format!("dashboard_url {u:?}: expected http(s)://host[:port][/prefix]"),
                ))
            }
            Some(u) => Some(u.trim_end_matches('/').to_string()),
            None => None,
        };
        let (tx, rx) = mpsc::channel(delivery.queue);
        let counters = Arc::new(NotifyCounters::default());
        let shared = Arc::new(Shared {
            name: name.clone(),
            grouping: Grouping {
                by: if group.by.is_empty() {
                    default_group_by()
                } else {
                    group.by.clone()
                },
                window,
                max_messages: group.max_messages,
            },
            dashboard,
            state: Mutex::new(WindowState::default()),
            tx,
            counters: counters.clone(),
        });
        let retry = Retry {
            timeout,
            retries: delivery.retries,
            backoff,
            max_backoff,
        };
        runtime.spawn(deliver_loop(name, sink, rx, counters, retry));
        runtime.spawn(window_loop(Arc::downgrade(&shared), window));
        Ok(Notifier { shared })
    }

    /// The notifier's name.
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// Its counters.
    pub fn counters(&self) -> Arc<NotifyCounters> {
        self.shared.counters.clone()
    }

    /// Hands over one record (JSON, as queued). Alerts are grouped and queued for delivery;
    /// other records are counted as ignored. Never waits.
    pub fn submit_json(&self, json: &[u8]) {
        match AlertInfo::from_json(json) {
            Some(a) => self.submit(a),
            None => {
                self.shared.counters.ignored.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Hands over one alert. Never waits.
    pub fn submit(&self, alert: AlertInfo) {
        let s = &self.shared;
        s.counters.alerts.fetch_add(1, Ordering::Relaxed);
        let key = group_key(&s.grouping.by, &alert);
        let now = Instant::now();
        let mut send = None;
        {
            let mut st = s.state.lock().unwrap_or_else(|p| p.into_inner());
            if st.start.is_none() {
                st.start = Some(now);
            }
            let under_limit = st.sent < s.grouping.max_messages;
            let known = st.groups.contains_key(&key);
            if !known && st.groups.len() >= MAX_GROUPS {
                st.other += 1;
                st.other_priority = Some(
                    st.other_priority
                        .map_or(alert.priority, |p| p.min(alert.priority)),
                );
                s.counters.grouped.fetch_add(1, Ordering::Relaxed);
                return;
            }
            if !known {
                st.order.push(key.clone());
            }
            let g = st.groups.entry(key).or_insert_with(|| Group {
                rule: short(&alert.rule).to_string(),
                host: short(&alert.host).to_string(),
                container: short(&alert.container).to_string(),
                priority: alert.priority,
                notified: false,
                held: 0,
            });
            if !g.notified && under_limit {
                g.notified = true;
                st.sent += 1;
                send = Some(alert.notice(s.dashboard.as_deref()));
            } else {
                g.held += 1;
                g.priority = g.priority.min(alert.priority);
                s.counters.grouped.fetch_add(1, Ordering::Relaxed);
            }
        }
        if let Some(n) = send {
            self.shared.enqueue(n);
        }
    }

    /// Ends the current window now: queues its summary, if anything was held (tests and
    /// shutdown; the notifier does this by itself when the window ends).
    pub fn flush(&self) {
        self.shared.flush_window(true);
    }
}

impl Shared {
    fn enqueue(&self, n: Notice) {
        let count = n.count;
        self.counters.queued.fetch_add(1, Ordering::Relaxed);
        if self.tx.try_send(n).is_err() {
            self.counters.queued.fetch_sub(1, Ordering::Relaxed);
            let dropped = self.counters.queue_full.fetch_add(1, Ordering::Relaxed) + 1;
            self.counters
                .alerts_lost
                .fetch_add(count, Ordering::Relaxed);
            // The first and then every 100th: a long outage must not flood the log.
            if dropped == 1 || dropped.is_multiple_of(100) {
                tracing::warn!(
                    notifier = %self.name,
                    dropped,
                    "notification queue full: message for {count} alert(s) dropped"
                );
            }
        }
    }

    /// Queues the summary of the window and starts a new one, when the window is over (or
    /// `force`).
    fn flush_window(&self, force: bool) {
        let summary = {
            let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
            let Some(start) = st.start else { return };
            if !force && start.elapsed() < self.grouping.window {
                return;
            }
            let st = std::mem::take(&mut *st);
            let mut held: Vec<&Group> = st
                .order
                .iter()
                .filter_map(|k| st.groups.get(k))
                .filter(|g| g.held > 0)
                .collect();
            if held.is_empty() && st.other == 0 {
                None
            } else {
                // Most alerts first.
                held.sort_by_key(|g| std::cmp::Reverse(g.held));
                let lines: Vec<(u64, String, String, String, Priority)> = held
                    .iter()
                    .map(|g| {
                        (
                            g.held,
                            g.rule.clone(),
                            g.host.clone(),
                            g.container.clone(),
                            g.priority,
                        )
                    })
                    .collect();
                let other = st.other_priority.map(|p| (st.other, p));
                Some(Notice::summary(
                    &lines,
                    other,
                    self.grouping.window,
                    self.dashboard.as_deref(),
                ))
            }
        };
        if let Some(n) = summary {
            self.enqueue(n);
        }
    }
}

impl Drop for Shared {
    /// What was held is not lost silently at shutdown: its summary is queued (delivered if the
    /// runtime lives on long enough).
    fn drop(&mut self) {
        self.flush_window(true);
    }
}

fn group_key(by: &[GroupKey], a: &AlertInfo) -> String {
    let mut k = String::new();
    for f in by {
        let v = match f {
            GroupKey::Rule => short(&a.rule),
            GroupKey::Host => short(&a.host),
            GroupKey::Container => short(&a.container),
            GroupKey::Priority => a.priority.as_str(),
        };
        k.push_str(v);
        k.push('\0');
    }
    k
}

async fn window_loop(shared: Weak<Shared>, window: Duration) {
    let step = (window / 4).clamp(Duration::from_millis(10), Duration::from_secs(1));
    loop {
        tokio::time::sleep(step).await;
        let Some(s) = shared.upgrade() else { return };
        s.flush_window(false);
    }
}

#[derive(Debug, Clone, Copy)]
struct Retry {
    timeout: Duration,
    retries: u32,
    backoff: Duration,
    max_backoff: Duration,
}

async fn deliver_loop(
    name: String,
    mut sink: Box<dyn Sink>,
    mut rx: mpsc::Receiver<Notice>,
    c: Arc<NotifyCounters>,
    retry: Retry,
) {
    while let Some(n) = rx.recv().await {
        c.queued.fetch_sub(1, Ordering::Relaxed);
        let mut delay = retry.backoff;
        let mut attempt = 0u32;
        loop {
            let backstop = retry.timeout + Duration::from_secs(5);
            let error = match tokio::time::timeout(backstop, sink.deliver(&n)).await {
                Ok(Ok(())) => {
                    c.sent.fetch_add(1, Ordering::Relaxed);
                    if attempt > 0 {
                        tracing::info!(notifier = %name, attempt, "notification delivered after retrying");
                    }
                    break;
                }
                Ok(Err(e)) => {
                    if e.timed_out {
                        c.timeouts.fetch_add(1, Ordering::Relaxed);
                    }
                    e.message
                }
                // A backstop: the sinks bound their own attempts by the same timeout.
                Err(_) => {
                    c.timeouts.fetch_add(1, Ordering::Relaxed);
                    format!("no answer within {:?}", retry.timeout)
                }
            };
            c.send_errors.fetch_add(1, Ordering::Relaxed);
            if attempt >= retry.retries {
                c.failed.fetch_add(1, Ordering::Relaxed);
                c.alerts_lost.fetch_add(n.count, Ordering::Relaxed);
                tracing::error!(
                    notifier = %name,
                    attempts = attempt + 1,
                    "notification for {} alert(s) given up: {error}",
                    n.count
                );
                break;
            }
            tracing::warn!(notifier = %name, attempt = attempt + 1, retry_in_ms = delay.as_millis() as u64, "notification not delivered: {error}");
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(retry.max_backoff);
            attempt += 1;
        }
    }
}

/// A notifier as a shipper output: each batch is handed to the notifier and acknowledged at
/// once (delivery to people has its own queue and retries, see the module docs).
#[derive(Debug)]
pub struct NotifyOutput {
    notifier: Notifier,
}

impl NotifyOutput {
    pub fn new(notifier: Notifier) -> NotifyOutput {
        NotifyOutput { notifier }
    }
}

impl Output for NotifyOutput {
    fn name(&self) -> &str {
        self.notifier.name()
    }

    fn send<'a>(&'a mut self, batch: &'a [Entry]) -> BoxFuture<'a, Result<Delivered, OutputError>> {
        Box::pin(async move {
            let mut bytes = 0u64;
            for e in batch {
                bytes += e.payload.len() as u64;
                self.notifier.submit_json(&e.payload);
            }
            Ok(Delivered {
                bytes,
                ..Delivered::default()
            })
        })
    }

    fn notify_counters(&self) -> Option<Arc<NotifyCounters>> {
        Some(self.notifier.counters())
    }
}

/// Reads a secret (a webhook URL, a password) from `file` or the environment variable `env`,
/// exactly one of which must be given. The file must not be readable or writable by group or
/// others (as ssh insists for keys): `chmod 600 FILE`.
pub(crate) fn read_secret(
    output: &str,
    field: &str,
    file: Option<&std::path::Path>,
    env: Option<&str>,
) -> Result<String, OutputError> {
    use std::os::unix::fs::PermissionsExt;
    let value = match (file, env) {
        (Some(path), None) => {
            let meta = std::fs::metadata(path).map_err(|e| {
                OutputError::new(output, format!("{field}_file {}: {e}", path.display()))
            })?;
            let mode = meta.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                return Err(OutputError::new(
                    output,
                    format!(
                        "{field}_file {}: mode {mode:03o} lets other users read or change the secret; chmod 600 it",
                        path.display()
                    ),
                ));
            }
            std::fs::read_to_string(path).map_err(|e| {
                OutputError::new(output, format!("{field}_file {}: {e}", path.display()))
            })?
        }
        (None, Some(var)) => std::env::var(var)
            .map_err(|e| OutputError::new(output, format!("{field}_env {var}: {e}")))?,
        (Some(_), Some(_)) => {
            return Err(OutputError::new(
                output,
                format!("give {field}_file or {field}_env, not both"),
            ))
        }
        (None, None) => {
            return Err(OutputError::new(
                output,
                format!("{field}_file or {field}_env is required"),
            ))
        }
    };
    let value = value.trim().to_string();
    if value.is_empty() {
        return Err(OutputError::new(output, format!("{field}: empty")));
    }
    Ok(value)
}

#[cfg(test)]
mod tests;
