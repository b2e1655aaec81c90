//! The shipper: the durable queue, one delivery task per output, housekeeping and metrics, as
//! tokio tasks in the caller's runtime.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rampart_event::{Device, Event, EventId, EventKind, SensorStats};
use serde::Deserialize;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::anonymise::{AnonymiseConfig, AnonymiseError, Anonymiser};
use crate::metrics::PromWriter;
use crate::notify::{NotifyCounters, NotifyStats};
use crate::output::{Delivered, Dispatch, Output, OutputConfig, OutputError, OutputFilter};
use crate::queue::{
    Appended, BatchLimits, Entry, LossReason, LossReport, Queue, QueueConfig, QueueError,
};
use crate::record::Shippable;

fn default_max_records() -> usize {
    5000
}
fn default_max_batch_bytes() -> usize {
    4 << 20
}
fn default_linger_ms() -> u64 {
    100
}
fn default_in_flight() -> usize {
    4
}

/// `batch:` how records are grouped for delivery.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatchConfig {
    /// Records per batch at most (default 5000).
    #[serde(default = "default_max_records")]
    pub max_records: usize,
    /// Bytes of JSON per batch at most, before compression (default 4 MiB).
    #[serde(default = "default_max_batch_bytes")]
    pub max_bytes: usize,
    /// After the first record of a batch, wait this long for more (default 100 ms).
    #[serde(default = "default_linger_ms")]
    pub linger_ms: u64,
    /// Batches an output may have in flight at once (default 4), each on its own connection,
    /// for outputs that can (the server output, the in-process output of `rampart up`); the
    /// others take one batch at a time. Batches are acknowledged in queue order whatever order
    /// their answers come in, and each names the batch before it, so that the server commits
    /// them in queue order too (the fleet's sequence rules follow commit order).
    #[serde(default = "default_in_flight")]
    pub in_flight: usize,
}

impl Default for BatchConfig {
    fn default() -> Self {
        BatchConfig {
            max_records: default_max_records(),
            max_bytes: default_max_batch_bytes(),
            linger_ms: default_linger_ms(),
            in_flight: default_in_flight(),
        }
    }
}

fn default_initial_ms() -> u64 {
    200
}
fn default_max_ms() -> u64 {
    30_000
}

/// `backoff:` retry timing of a failing output: doubles from `initial_ms` up to `max_ms`, with
/// ±25% jitter so that a fleet does not retry in lockstep after a server outage.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackoffConfig {
    #[serde(default = "default_initial_ms")]
    pub initial_ms: u64,
    #[serde(default = "default_max_ms")]
    pub max_ms: u64,
}

impl Default for BackoffConfig {
    fn default() -> Self {
        BackoffConfig {
            initial_ms: default_initial_ms(),
            max_ms: default_max_ms(),
        }
    }
}

/// `anonymise:` on the agent: the same policy the server applies per region, applied before
/// records are queued, so the data never leaves the host in clear.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentAnonymise {
    /// The pseudonym key (64 hex digits or at least 16 raw bytes). Use the server's key for
    /// the region so pseudonyms match across hosts.
    pub key_file: PathBuf,
    pub policy: AnonymiseConfig,
}

/// The shipping section of the agent configuration (`ship:` in `agent.yaml`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShipConfig {
    pub queue: QueueConfig,
    #[serde(default)]
    pub outputs: Vec<OutputConfig>,
    /// Serve Prometheus metrics at `http://ADDR/metrics` (no authentication: bind loopback).
    #[serde(default)]
    pub metrics_listen: Option<SocketAddr>,
    #[serde(default)]
    pub batch: BatchConfig,
    #[serde(default)]
    pub backoff: BackoffConfig,
    #[serde(default)]
    pub anonymise: Option<AgentAnonymise>,
}

impl ShipConfig {
    /// A configuration with the queue in `queue_dir` and no outputs.
    pub fn new(queue_dir: impl Into<PathBuf>) -> ShipConfig {
        ShipConfig {
            queue: QueueConfig::new(queue_dir),
            outputs: Vec::new(),
            metrics_listen: None,
            batch: BatchConfig::default(),
            backoff: BackoffConfig::default(),
            anonymise: None,
        }
    }
}

/// Errors of starting or feeding the shipper.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ShipError {
    #[error(transparent)]
    Queue(#[from] QueueError),
    #[error(transparent)]
    Output(#[from] OutputError),
    #[error("two outputs are named {0:?}; give one a `name:`")]
    DuplicateOutput(String),
    #[error("no outputs configured")]
    NoOutputs,
    #[error("metrics listener {addr}: {source}")]
    Metrics {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Anonymise(#[from] AnonymiseError),
    #[error("pseudonym key {path}: {reason}")]
    Key { path: PathBuf, reason: String },
    #[error("serialising a record: {0}")]
    Json(#[from] serde_json::Error),
}

/// Reads a pseudonym key file: 64 hex digits, or at least 16 raw bytes.
pub fn read_key_file(path: &Path) -> Result<Vec<u8>, ShipError> {
    let data = std::fs::read(path).map_err(|e| ShipError::Key {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    let t = data.trim_ascii();
    if t.len() == 64 {
        if let Ok(k) = hex::decode(t) {
            return Ok(k);
        }
    }
    if data.len() < 16 {
        return Err(ShipError::Key {
            path: path.to_path_buf(),
            reason: format!(
                "{} bytes; need 64 hex digits or at least 16 bytes",
                data.len()
            ),
        });
    }
    Ok(data)
}

#[derive(Debug, Default)]
struct OutputCounters {
    name: String,
    sent_records: AtomicU64,
    sent_bytes: AtomicU64,
    send_errors: AtomicU64,
    rejected: AtomicU64,
    duplicates: AtomicU64,
    /// Records the output's filter refused (acknowledged without being sent).
    filtered: AtomicU64,
    /// Age of the oldest undelivered record, ms (0 when caught up).
    lag_ms: AtomicU64,
    last_success_ms: AtomicU64,
}

/// Counters of one output, as [`Shipper::stats`] reports them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OutputStats {
    pub name: String,
    pub sent_records: u64,
    pub sent_bytes: u64,
    pub send_errors: u64,
    pub rejected: u64,
    pub duplicates: u64,
    /// Records the output's `filter:` refused.
    pub filtered: u64,
    /// Records queued for this output and not yet delivered.
    pub pending: u64,
    pub lag_ms: u64,
}

/// Shipper counters (see also `rampart_ship_*` metrics).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ShipStats {
    pub queue: crate::queue::QueueStats,
    pub outputs: Vec<OutputStats>,
    /// Loss reports turned into `sensor.drops` events so far.
    pub loss_events: u64,
    /// The notifier outputs' counters.
    pub notifiers: Vec<NotifyStats>,
}

struct Inner {
    queue: Queue,
    anonymiser: Option<Anonymiser>,
    device: Arc<Device>,
    counters: Vec<Arc<OutputCounters>>,
    notifiers: Vec<(String, Arc<NotifyCounters>)>,
    instance: u64,
    loss_events: AtomicU64,
    /// Loss reports whose `sensor.drops` event could not be queued yet (queue full).
    unsent_losses: Mutex<Vec<LossReport>>,
}

/// The running shipper. [`send`](Shipper::send) appends to the durable queue; tokio tasks
/// deliver to each output. Cheap to clone.
#[derive(Clone)]
pub struct Shipper {
    inner: Arc<Inner>,
    stop: watch::Sender<bool>,
    tasks: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

impl std::fmt::Debug for Shipper {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shipper")
            .field("queue", &self.inner.queue)
            .finish_non_exhaustive()
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

use rampart_event::now_ns;

fn random_u64() -> u64 {
    let mut b = [0u8; 8];
    let _ = ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut b);
    u64::from_le_bytes(b)
}

/// Starts shipping on `runtime`: opens the queue in `cfg.queue.dir`, builds the configured
/// outputs plus `extra` ones (for example the server's in-process output in `rampart up`),
/// and spawns one delivery task per output, a housekeeping task (fsync interval, loss
/// reports) and, when configured, the metrics endpoint. `device` is the host that loss-report
/// events are attributed to.
///
/// Records queued by an earlier run and not yet delivered are delivered first.
pub fn start(
    cfg: &ShipConfig,
    device: Arc<Device>,
    extra: Vec<Box<dyn Output>>,
    runtime: &tokio::runtime::Handle,
) -> Result<Shipper, ShipError> {
    let mut outputs: Vec<Box<dyn Output>> = Vec::new();
    let mut filters: Vec<OutputFilter> = Vec::new();
    {
        // Notifier outputs start their delivery task on the runtime.
        let _guard = runtime.enter();
        for oc in &cfg.outputs {
            outputs.push(oc.build()?);
            filters.push(oc.filter().clone());
        }
    }
    filters.resize(outputs.len() + extra.len(), OutputFilter::default());
    outputs.extend(extra);
    if outputs.is_empty() {
        return Err(ShipError::NoOutputs);
    }
    let mut names: Vec<&str> = Vec::new();
    for o in &outputs {
        if names.contains(&o.name()) {
            return Err(ShipError::DuplicateOutput(o.name().to_string()));
        }
        names.push(o.name());
    }
    let anonymiser = match &cfg.anonymise {
        Some(a) => {
            let key = read_key_file(&a.key_file)?;
            Some(Anonymiser::new(a.policy.clone(), &key)?)
        }
        None => None,
    };
    let queue = Queue::open(&cfg.queue, &names)?;
    let counters: Vec<Arc<OutputCounters>> = outputs
        .iter()
        .map(|o| {
            Arc::new(OutputCounters {
                name: o.name().to_string(),
                ..OutputCounters::default()
            })
        })
        .collect();
    let inner = Arc::new(Inner {
        queue,
        anonymiser,
        device,
        counters: counters.clone(),
        notifiers: outputs
            .iter()
            .filter_map(|o| o.notify_counters().map(|c| (o.name().to_string(), c)))
            .collect(),
        instance: random_u64(),
        loss_events: AtomicU64::new(0),
        unsent_losses: Mutex::new(Vec::new()),
    });
    let (stop, stop_rx) = watch::channel(false);
    let mut tasks = Vec::new();
    let metrics_listener = match cfg.metrics_listen {
        Some(addr) => {
            let l = std::net::TcpListener::bind(addr)
                .and_then(|l| l.set_nonblocking(true).map(|()| l))
                .map_err(|source| ShipError::Metrics { addr, source })?;
            let _guard = runtime.enter();
            Some(
                tokio::net::TcpListener::from_std(l)
                    .map_err(|source| ShipError::Metrics { addr, source })?,
            )
        }
        None => None,
    };
    let limits = BatchLimits {
        max_records: cfg.batch.max_records.max(1),
        max_bytes: cfg.batch.max_bytes.max(1),
        linger: Duration::from_millis(cfg.batch.linger_ms),
    };
    for ((output, c), filter) in outputs.into_iter().zip(counters).zip(filters) {
        let reader = inner.queue.reader(output.name())?;
        tasks.push(runtime.spawn(deliver(
            output,
            filter,
            reader,
            c,
            limits,
            cfg.backoff,
            cfg.batch.in_flight,
            stop_rx.clone(),
        )));
    }
    tasks.push(runtime.spawn(housekeeping(inner.clone(), stop_rx.clone())));
    let shipper = Shipper {
        inner,
        stop,
        tasks: Arc::new(Mutex::new(tasks)),
    };
    if let Some(l) = metrics_listener {
        let s = shipper.clone();
        let render: Arc<dyn Fn() -> String + Send + Sync> = Arc::new(move || s.metrics_text());
        let mut stop_rx = stop_rx;
        let handle = runtime.spawn(async move {
            tokio::select! {
                () = crate::metrics::serve(l, render) => {}
                _ = stop_rx.wait_for(|s| *s) => {}
            }
        });
        shipper.lock_tasks().push(handle);
    }
    Ok(shipper)
}

/// A batch being delivered by one of an output's senders.
struct Flight {
    last_seq: u64,
    /// The last record of the batch dispatched before this one.
    after: Option<u64>,
    oldest_ms: u64,
    handle: JoinHandle<Sent>,
}

/// A sender back from delivering a batch, the batch, and how it went.
type Sent = (Box<dyn Output>, Vec<Entry>, Result<Delivered, OutputError>);

/// Reads an output's batches from the queue into `tx`, so that delivery can wait for answers
/// and new batches at once (a read in progress is not cancellation-safe; a channel is).
async fn read_batches(
    mut reader: crate::queue::Reader,
    limits: BatchLimits,
    tx: tokio::sync::mpsc::Sender<Vec<Entry>>,
    mut stop: watch::Receiver<bool>,
) {
    let name = reader.name().to_string();
    loop {
        let batch = tokio::select! {
            b = reader.next_batch(limits) => b,
            _ = stop.wait_for(|s| *s) => return,
        };
        match batch {
            Ok(b) if b.is_empty() => {}
            Ok(b) => {
                if tx.send(b).await.is_err() {
                    return;
                }
            }
            Err(e) => {
                tracing::error!(output = %name, "reading the queue: {e}");
                tokio::select! {
                    () = tokio::time::sleep(Duration::from_secs(1)) => {}
                    _ = stop.wait_for(|s| *s) => return,
                }
            }
        }
    }
}

fn record_delivery(c: &OutputCounters, records: usize, d: Delivered) {
    c.sent_records.fetch_add(records as u64, Ordering::Relaxed);
    c.sent_bytes.fetch_add(d.bytes, Ordering::Relaxed);
    c.rejected.fetch_add(d.rejected, Ordering::Relaxed);
    c.duplicates.fetch_add(d.duplicates, Ordering::Relaxed);
    c.last_success_ms.store(now_ms(), Ordering::Relaxed);
}

/// One output's loop: batches from the queue go out on up to `in_flight` senders at once (the
/// output and its [`forks`](Output::fork)); answers are taken in queue order, so a batch is
/// acknowledged only after every batch before it was, and a segment is deleted only once all
/// its records are acknowledged. A failed batch is retried with backoff on its own before any
/// later batch is acknowledged; later batches already delivered are then acknowledged with it.
#[allow(
    clippy::too_many_arguments,
    reason = "one call site; a struct would only rename them"
)]
async fn deliver(
    output: Box<dyn Output>,
    filter: OutputFilter,
    reader: crate::queue::Reader,
    c: Arc<OutputCounters>,
    limits: BatchLimits,
    backoff: BackoffConfig,
    in_flight: usize,
    mut stop: watch::Receiver<bool>,
) {
    let name = output.name().to_string();
    let acker = reader.acker();
    let mut idle: Vec<Box<dyn Output>> = vec![output];
    while idle.len() < in_flight.max(1) {
        match idle[0].fork() {
            Some(o) => idle.push(o),
            None => break,
        }
    }
    let window = idle.len();
    // The last record of the batch dispatched before the next one (see `Output::prepare`).
    let mut previous_last: Option<u64> = None;
    // Records from here on were appended by this process: never sent before.
    let opened_at = reader.opened_at();
    let (tx, mut rx) = tokio::sync::mpsc::channel(1);
    let read_task = tokio::spawn(read_batches(reader, limits, tx, stop.clone()));
    let mut flying: std::collections::VecDeque<Flight> = std::collections::VecDeque::new();
    let abort_all = |flying: &std::collections::VecDeque<Flight>| {
        for f in flying {
            f.handle.abort();
        }
    };
    loop {
        let can_start = flying.len() < window && !idle.is_empty();
        let next = tokio::select! {
            biased;
            _ = stop.wait_for(|s| *s) => Next::Stop,
            done = async {
                match flying.front_mut() {
                    Some(f) => (&mut f.handle).await,
                    None => std::future::pending().await,
                }
            }, if !flying.is_empty() => Next::Answer(done),
            b = rx.recv(), if can_start => Next::Batch(b),
        };
        match next {
            Next::Stop => {
                abort_all(&flying);
                read_task.abort();
                return;
            }
            Next::Answer(done) => {
                let Some(flight) = flying.pop_front() else {
                    continue;
                };
                let (mut out, batch, result) = match done {
                    Ok(r) => r,
                    Err(e) => {
                        // The output panicked: its sender is gone. Stop this output (as a panic
                        // in the loop itself would); what it had not acknowledged stays queued.
                        tracing::error!(output = %name, "output task failed: {e}");
                        abort_all(&flying);
                        read_task.abort();
                        return;
                    }
                };
                let delivered = match result {
                    Ok(d) => d,
                    Err(e) => {
                        let oldest = flight.oldest_ms;
                        // The failed attempt may have been stored: no longer unsent.
                        out.prepare(Dispatch {
                            after: flight.after,
                            unsent: false,
                        });
                        match retry(&mut *out, &batch, &c, backoff, e, oldest, &mut stop).await {
                            Some(d) => d,
                            None => {
                                abort_all(&flying);
                                read_task.abort();
                                return;
                            }
                        }
                    }
                };
                idle.push(out);
                if let Err(e) = acker.ack(flight.last_seq) {
                    // Delivered but not recorded: it will be delivered again after a restart
                    // (idempotent at the server). Keep going.
                    tracing::error!(output = %name, "recording delivery: {e}");
                }
                record_delivery(&c, batch.len(), delivered);
                let lag = flying
                    .front()
                    .map_or(0, |f| now_ms().saturating_sub(f.oldest_ms));
                c.lag_ms.store(lag, Ordering::Relaxed);
            }
            Next::Batch(None) => {
                // The reader stopped (only at shutdown).
                abort_all(&flying);
                return;
            }
            Next::Batch(Some(batch)) => {
                let (Some(last_seq), Some(oldest_ms)) = (
                    batch.last().map(|e| e.seq),
                    batch.first().map(|e| e.written_ms),
                ) else {
                    continue;
                };
                // The output's filter, in this one place for every output kind: refused
                // records are acknowledged with the batch, never sent, and counted.
                let batch = if filter.is_empty() {
                    batch
                } else {
                    let before = batch.len();
                    let kept: Vec<Entry> = batch
                        .into_iter()
                        .filter(|e| filter.accepts_json(&e.payload))
                        .collect();
                    c.filtered
                        .fetch_add((before - kept.len()) as u64, Ordering::Relaxed);
                    kept
                };
                let Some(mut out) = idle.pop() else { continue };
                let first_seq = batch.first().map_or(last_seq, |e| e.seq);
                let after = previous_last;
                out.prepare(Dispatch {
                    after,
                    unsent: first_seq >= opened_at,
                });
                // The receiver chains batches by their last record: an empty (all filtered)
                // batch is not sent and does not move the chain.
                if let Some(l) = batch.last() {
                    previous_last = Some(l.seq);
                }
                let front = flying.front().map_or(oldest_ms, |f| f.oldest_ms);
                c.lag_ms
                    .store(now_ms().saturating_sub(front), Ordering::Relaxed);
                let handle = tokio::spawn(async move {
                    let r = if batch.is_empty() {
                        Ok(Delivered::default())
                    } else {
                        out.send(&batch).await
                    };
                    (out, batch, r)
                });
                flying.push_back(Flight {
                    last_seq,
                    after,
                    oldest_ms,
                    handle,
                });
            }
        }
    }
}

/// What the delivery loop woke up for.
enum Next {
    Stop,
    /// The oldest batch in flight got its answer.
    Answer(Result<Sent, tokio::task::JoinError>),
    /// A batch from the queue (`None`: the reader stopped).
    Batch(Option<Vec<Entry>>),
}

/// Sends `batch` again until it gets there (backoff with jitter); `None` when stopped.
async fn retry(
    output: &mut dyn Output,
    batch: &[Entry],
    c: &OutputCounters,
    backoff: BackoffConfig,
    first_error: OutputError,
    oldest_ms: u64,
    stop: &mut watch::Receiver<bool>,
) -> Option<Delivered> {
    let name = output.name().to_string();
    let mut delay = Duration::from_millis(backoff.initial_ms.max(1));
    let mut failures = 0u32;
    let mut error = first_error;
    loop {
        c.send_errors.fetch_add(1, Ordering::Relaxed);
        failures += 1;
        // First failure and then every 10th: an outage of hours must not flood logs.
        if failures == 1 || failures.is_multiple_of(10) {
            tracing::warn!(output = %name, failures, retry_in_ms = delay.as_millis() as u64, "{error}");
        }
        let jitter = 0.75 + (random_u64() % 500) as f64 / 1000.0;
        let sleep = delay.mul_f64(jitter);
        tokio::select! {
            () = tokio::time::sleep(sleep) => {}
            _ = stop.wait_for(|s| *s) => return None,
        }
        delay = (delay * 2).min(Duration::from_millis(backoff.max_ms.max(1)));
        c.lag_ms
            .store(now_ms().saturating_sub(oldest_ms), Ordering::Relaxed);
        let result = tokio::select! {
            r = output.send(batch) => r,
            _ = stop.wait_for(|s| *s) => return None,
        };
        match result {
            Ok(d) => {
                tracing::info!(output = %name, failures, "output delivering again");
                return Some(d);
            }
            Err(e) => error = e,
        }
    }
}

/// Fsync interval and loss reports.
async fn housekeeping(inner: Arc<Inner>, mut stop: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(Duration::from_millis(50));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        let q = inner.queue.clone();
        let r = tokio::task::spawn_blocking(move || q.sync_if_due()).await;
        if let Ok(Err(e)) = r {
            tracing::error!("queue fsync: {e}");
        }
        let inner2 = inner.clone();
        let _ = tokio::task::spawn_blocking(move || report_losses(&inner2)).await;
    }
}

/// Turns loss reports into `sensor.drops` events in the queue, so that the loss reaches the
/// server like any other record.
fn report_losses(inner: &Inner) {
    let mut pending = inner
        .unsent_losses
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    pending.extend(inner.queue.take_loss_reports());
    if pending.is_empty() {
        return;
    }
    let mut keep = Vec::new();
    for r in pending.drain(..) {
        if r.records == 0 {
            continue; // damaged bytes without lost records (a torn tail): logged, nothing to report
        }
        let n = inner.loss_events.load(Ordering::Relaxed);
        let mut e = Event::new(
            EventId(format!("{:016x}-loss-{n:x}", inner.instance)),
            now_ns(),
            EventKind::SensorDrops,
            inner.device.clone(),
        );
        e.stats = Some(SensorStats {
            events: 0,
            drops_total: r.records,
            drops_per_cpu: Vec::new(),
            drops_userspace: r.records,
            interval_ms: 0,
            mechanism: format!("queue-{}", r.reason.as_str()),
        });
        let json = match serde_json::to_vec(&e) {
            Ok(j) => j,
            Err(_) => continue,
        };
        match inner.queue.append_if_room(&[json]) {
            Ok(true) => {
                inner.loss_events.fetch_add(1, Ordering::Relaxed);
                if r.reason == LossReason::Overflow {
                    tracing::warn!(records = r.records, "{}", r.detail);
                }
            }
            _ => keep.push(r),
        }
    }
    // Still full: merge into one report per reason for the next attempt.
    for r in keep {
        match pending.iter_mut().find(|p| p.reason == r.reason) {
            Some(p) => p.records += r.records,
            None => pending.push(r),
        }
    }
}

impl Shipper {
    fn lock_tasks(&self) -> std::sync::MutexGuard<'_, Vec<JoinHandle<()>>> {
        self.tasks.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues one event or alert. Returns once it is in the operating system (it survives the
    /// agent being killed). With `overflow: block` this may wait for space: call it from a
    /// thread that may block (not from an async task).
    pub fn send<T: Shippable>(&self, item: &T) -> Result<Appended, ShipError> {
        self.send_all(std::slice::from_ref(item))
    }

    /// [`send`](Shipper::send) for callers that go on whatever happens: a record refused by a
    /// full queue (`overflow: drop_newest`) or lost to a failed write is added to `dropped` and
    /// logged with `what` (the kind of record), never silent. Returns the records lost.
    pub fn send_counted<T: Shippable>(
        &self,
        item: &T,
        dropped: &std::sync::atomic::AtomicU64,
        what: &str,
    ) -> u64 {
        let lost = match self.send(item) {
            Ok(r) => r.dropped as u64,
            Err(e) => {
                tracing::error!("ship: {what} not queued: {e}");
                1
            }
        };
        if lost > 0 {
            let total = dropped.fetch_add(lost, std::sync::atomic::Ordering::Relaxed) + lost;
            tracing::warn!(total, "ship: {what} dropped (queue full or unwritable)");
        }
        lost
    }

    /// Queues several records with one write: the cheap way to ship a burst.
    pub fn send_all<T: Shippable>(&self, items: &[T]) -> Result<Appended, ShipError> {
        let mut payloads = Vec::with_capacity(items.len());
        for item in items {
            payloads.push(self.encode(item)?);
        }
        Ok(self.inner.queue.append(&payloads)?)
    }

    /// Queues records that are already JSON (one event or alert each). Agent-side
    /// anonymisation, when configured, is applied.
    pub fn send_json<P: AsRef<[u8]>>(&self, records: &[P]) -> Result<Appended, ShipError> {
        match &self.inner.anonymiser {
            None => Ok(self.inner.queue.append(records)?),
            Some(a) => {
                let mut payloads = Vec::with_capacity(records.len());
                for r in records {
                    let mut v: serde_json::Value = serde_json::from_slice(r.as_ref())?;
                    a.apply(&mut v);
                    payloads.push(serde_json::to_vec(&v)?);
                }
                Ok(self.inner.queue.append(&payloads)?)
            }
        }
    }

    fn encode<T: Shippable>(&self, item: &T) -> Result<Vec<u8>, ShipError> {
        match &self.inner.anonymiser {
            None => Ok(serde_json::to_vec(item)?),
            Some(a) => {
                let mut v = serde_json::to_value(item)?;
                a.apply(&mut v);
                Ok(serde_json::to_vec(&v)?)
            }
        }
    }

    /// Fsyncs queued records now (whatever the fsync policy).
    pub fn sync(&self) -> Result<(), ShipError> {
        Ok(self.inner.queue.sync()?)
    }

    /// The queue (for inspection and tests).
    pub fn queue(&self) -> &Queue {
        &self.inner.queue
    }

    /// Counters of the queue and each output.
    pub fn stats(&self) -> ShipStats {
        let queue = self.inner.queue.stats();
        let outputs = self
            .inner
            .counters
            .iter()
            .map(|c| OutputStats {
                name: c.name.clone(),
                sent_records: c.sent_records.load(Ordering::Relaxed),
                sent_bytes: c.sent_bytes.load(Ordering::Relaxed),
                send_errors: c.send_errors.load(Ordering::Relaxed),
                rejected: c.rejected.load(Ordering::Relaxed),
                duplicates: c.duplicates.load(Ordering::Relaxed),
                filtered: c.filtered.load(Ordering::Relaxed),
                pending: queue.pending.get(&c.name).copied().unwrap_or(0),
                lag_ms: c.lag_ms.load(Ordering::Relaxed),
            })
            .collect();
        ShipStats {
            queue,
            outputs,
            loss_events: self.inner.loss_events.load(Ordering::Relaxed),
            notifiers: self
                .inner
                .notifiers
                .iter()
                .map(|(name, c)| c.snapshot(name))
                .collect(),
        }
    }

    /// The Prometheus text exposition of the shipper's metrics.
    pub fn metrics_text(&self) -> String {
        let s = self.stats();
        let mut w = PromWriter::new();
        w.gauge(
            "rampart_ship_queue_bytes",
            "Bytes of queue segments on disk.",
            &[],
            s.queue.bytes as f64,
        );
        w.gauge(
            "rampart_ship_queue_segments",
            "Queue segment files on disk.",
            &[],
            s.queue.segments as f64,
        );
        for o in &s.outputs {
            w.gauge(
                "rampart_ship_queue_depth",
                "Records queued for an output and not yet delivered.",
                &[("output", &o.name)],
                o.pending as f64,
            );
        }
        for o in &s.outputs {
            w.gauge(
                "rampart_ship_lag_seconds",
                "Age of the oldest record an output is trying to deliver (0 when caught up).",
                &[("output", &o.name)],
                o.lag_ms as f64 / 1000.0,
            );
        }
        for o in &s.outputs {
            w.counter(
                "rampart_ship_sent_records_total",
                "Records delivered.",
                &[("output", &o.name)],
                o.sent_records,
            );
        }
        for o in &s.outputs {
            w.counter(
                "rampart_ship_sent_bytes_total",
                "Bytes delivered (after compression).",
                &[("output", &o.name)],
                o.sent_bytes,
            );
        }
        for o in &s.outputs {
            w.counter(
                "rampart_ship_send_errors_total",
                "Failed delivery attempts (each is retried).",
                &[("output", &o.name)],
                o.send_errors,
            );
        }
        for o in &s.outputs {
            w.counter(
                "rampart_ship_rejected_total",
                "Records the receiver refused as malformed.",
                &[("output", &o.name)],
                o.rejected,
            );
        }
        for o in &s.outputs {
            w.counter(
                "rampart_ship_filtered_total",
                "Records an output's filter refused (acknowledged, not sent).",
                &[("output", &o.name)],
                o.filtered,
            );
        }
        crate::notify::write_metrics(&mut w, &s.notifiers);
        w.counter(
            "rampart_ship_appended_total",
            "Records appended to the queue.",
            &[],
            s.queue.appended_total,
        );
        w.counter(
            "rampart_ship_dropped_total",
            "Records lost in the queue.",
            &[("reason", "overflow")],
            s.queue.dropped_overflow_total,
        );
        w.counter(
            "rampart_ship_dropped_total",
            "Records lost in the queue.",
            &[("reason", "corrupt")],
            s.queue.lost_corrupt_total,
        );
        w.counter(
            "rampart_ship_corrupt_bytes_total",
            "Damaged queue bytes skipped.",
            &[],
            s.queue.corrupt_bytes_total,
        );
        w.counter(
            "rampart_ship_fsyncs_total",
            "Queue fsyncs.",
            &[],
            s.queue.fsyncs_total,
        );
        w.finish()
    }

    /// Stops shipping: waits up to `drain` for the outputs to deliver what is queued, then
    /// stops the tasks and fsyncs the queue. Whatever is not delivered stays queued for the
    /// next start. Further sends fail.
    pub async fn shutdown(self, drain: Duration) {
        let deadline = tokio::time::Instant::now() + drain;
        while tokio::time::Instant::now() < deadline {
            if self.inner.queue.stats().pending.values().all(|p| *p == 0) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let _ = self.stop.send(true);
        let tasks: Vec<JoinHandle<()>> = self.lock_tasks().drain(..).collect();
        for t in tasks {
            let _ = t.await;
        }
        let inner = self.inner.clone();
        let _ = tokio::task::spawn_blocking(move || {
            report_losses(&inner);
            report_losses_final(&inner);
            inner.queue.close();
        })
        .await;
    }
}

/// At shutdown, losses not yet turned into events are at least logged.
fn report_losses_final(inner: &Inner) {
    let mut unsent = std::mem::take(
        &mut *inner
            .unsent_losses
            .lock()
            .unwrap_or_else(|p| p.into_inner()),
    );
    unsent.extend(inner.queue.take_loss_reports());
    for r in unsent {
        if r.records > 0 {
            tracing::warn!(
                records = r.records,
                "unreported queue loss at shutdown: {}",
                r.detail
            );
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests: a failure is a test failure")]

    use std::sync::OnceLock;
    use std::time::Instant;

    use super::*;
    use crate::output::BoxFuture;
    use crate::queue::FsyncPolicy;

    #[derive(Default)]
    struct Log {
        calls: u64,
        delivered: Vec<u64>,
        failures: u64,
        concurrent: usize,
        max_concurrent: usize,
        /// Batches that found their own records already acknowledged while in flight.
        acked_too_early: Vec<String>,
        /// Every attempt: first and last sequence number, what the shipper said of it.
        attempts: Vec<(u64, u64, Dispatch)>,
        /// Refuse every batch (an outage).
        refuse_all: bool,
    }

    /// An output whose sends take varying times (so answers come back out of order) and
    /// whose every third call fails, with forks sharing one log.
    struct Flaky {
        log: Arc<Mutex<Log>>,
        queue: Arc<OnceLock<Queue>>,
        dispatch: Dispatch,
    }

    impl Flaky {
        fn acked_position(&self) -> u64 {
            // Without the queue (a test that does not check acknowledgements): nothing acked.
            self.queue.get().map_or(0, |q| {
                let s = q.stats();
                s.next_seq - s.pending["flaky"]
            })
        }
    }

    impl Output for Flaky {
        fn name(&self) -> &str {
            "flaky"
        }

        fn send<'a>(
            &'a mut self,
            batch: &'a [Entry],
        ) -> BoxFuture<'a, Result<Delivered, OutputError>> {
            Box::pin(async move {
                let first = batch.first().map_or(0, |e| e.seq);
                let last = batch.last().map_or(0, |e| e.seq);
                let call = {
                    let mut l = self.log.lock().unwrap();
                    l.attempts.push((first, last, self.dispatch));
                    if l.refuse_all {
                        return Err(OutputError::new("flaky", "down"));
                    }
                    l.calls += 1;
                    l.concurrent += 1;
                    l.max_concurrent = l.max_concurrent.max(l.concurrent);
                    l.calls
                };
                tokio::time::sleep(Duration::from_millis((first * 7919) % 23)).await;
                let acked = self.acked_position();
                let mut l = self.log.lock().unwrap();
                l.concurrent -= 1;
                if acked > first {
                    l.acked_too_early
                        .push(format!("batch from {first}: acknowledged up to {acked}"));
                }
                if call % 3 == 0 && l.failures < 20 {
                    l.failures += 1;
                    return Err(OutputError::new("flaky", "refused"));
                }
                l.delivered.extend(batch.iter().map(|e| e.seq));
                Ok(Delivered::default())
            })
        }

        fn fork(&self) -> Option<Box<dyn Output>> {
            Some(Box::new(Flaky {
                log: self.log.clone(),
                queue: self.queue.clone(),
                dispatch: Dispatch::default(),
            }))
        }

        fn prepare(&mut self, dispatch: Dispatch) {
            self.dispatch = dispatch;
        }
    }

    /// Each batch names the last record of the batch dispatched before it, and says it was
    /// never sent only on its first attempt.
    fn check_dispatches(attempts: &[(u64, u64, Dispatch)]) {
        let mut seen = std::collections::BTreeMap::new();
        for (first, last, d) in attempts {
            let first_attempt = !seen.contains_key(first);
            let prev = seen.insert(*first, (*last, d.after));
            assert_eq!(d.unsent, first_attempt, "batch from {first}: {d:?}");
            if let Some((_, after)) = prev {
                assert_eq!(after, d.after, "a retry keeps its place");
            }
        }
        let batches: Vec<(u64, u64, Option<u64>)> =
            seen.iter().map(|(f, (l, a))| (*f, *l, *a)).collect();
        assert_eq!(batches[0].2, None);
        for w in batches.windows(2) {
            assert_eq!(w[1].2, Some(w[0].1), "batch from {}", w[1].0);
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn batches_in_flight_are_acknowledged_in_order_and_each_delivered_once() {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = ShipConfig::new(dir.path().join("q"));
        cfg.queue.fsync = FsyncPolicy::EveryBatch;
        cfg.queue.segment_bytes = 8192;
        cfg.batch = BatchConfig {
            max_records: 37,
            max_bytes: 1 << 20,
            linger_ms: 1,
            in_flight: 4,
        };
        cfg.backoff = BackoffConfig {
            initial_ms: 1,
            max_ms: 5,
        };
        let log = Arc::new(Mutex::new(Log::default()));
        let queue_slot = Arc::new(OnceLock::new());
        let flaky = Flaky {
            log: log.clone(),
            queue: queue_slot.clone(),
            dispatch: Dispatch::default(),
        };
        let device = Arc::new(Device::default());
        let shipper = start(
            &cfg,
            device,
            vec![Box::new(flaky)],
            &tokio::runtime::Handle::current(),
        )
        .unwrap();
        queue_slot.set(shipper.queue().clone()).ok();
        let n = 3000u64;
        for chunk in (0..n).collect::<Vec<_>>().chunks(100) {
            let payloads: Vec<Vec<u8>> = chunk
                .iter()
                .map(|i| format!("{{\"n\":{i},\"pad\":\"{}\"}}", "x".repeat(40)).into_bytes())
                .collect();
            shipper.send_json(&payloads).unwrap();
        }
        let deadline = Instant::now() + Duration::from_secs(60);
        while shipper.stats().outputs[0].pending > 0 {
            assert!(Instant::now() < deadline, "{:?}", shipper.stats());
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let stats = shipper.stats();
        shipper.shutdown(Duration::from_secs(1)).await;
        let l = log.lock().unwrap();
        assert!(l.acked_too_early.is_empty(), "{:?}", l.acked_too_early);
        let mut delivered = l.delivered.clone();
        delivered.sort_unstable();
        let expected: Vec<u64> = (0..n).collect();
        assert_eq!(delivered, expected, "every record delivered exactly once");
        assert_eq!(l.failures, 20);
        assert!(l.max_concurrent > 1, "batches were in flight together");
        assert_eq!(stats.outputs[0].sent_records, n);
        assert_eq!(stats.outputs[0].send_errors, 20);
        // Every segment but the one being written is gone once all is acknowledged.
        assert_eq!(stats.queue.segments, 1, "{stats:?}");
        check_dispatches(&l.attempts);
    }

    /// Records queued by an earlier process are not claimed as never sent (that process may
    /// have sent them); records queued since are, on their first attempt.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn only_records_queued_by_this_process_are_claimed_unsent() {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = ShipConfig::new(dir.path().join("q"));
        cfg.batch.max_records = 10;
        cfg.batch.linger_ms = 1;
        cfg.backoff = BackoffConfig {
            initial_ms: 1,
            max_ms: 5,
        };
        let log = Arc::new(Mutex::new(Log {
            refuse_all: true,
            ..Log::default()
        }));
        let flaky = |log: &Arc<Mutex<Log>>| Flaky {
            log: log.clone(),
            queue: Arc::new(OnceLock::new()),
            dispatch: Dispatch::default(),
        };
        let payloads = |r: std::ops::Range<u64>| -> Vec<Vec<u8>> {
            r.map(|i| format!("{{\"n\":{i}}}").into_bytes()).collect()
        };
        let device = Arc::new(Device::default());
        let handle = tokio::runtime::Handle::current();
        // An agent whose output is down queues 30 records (sending them fails), then stops.
        let first = start(&cfg, device.clone(), vec![Box::new(flaky(&log))], &handle).unwrap();
        first.send_json(&payloads(0..30)).unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
        first.shutdown(Duration::ZERO).await;
        assert!(!log.lock().unwrap().attempts.is_empty(), "it tried");
        // The next process delivers them and 30 more of its own.
        {
            let mut l = log.lock().unwrap();
            l.refuse_all = false;
            l.attempts.clear();
        }
        // The first one's tasks let go of the queue's lock as they finish.
        let deadline = Instant::now() + Duration::from_secs(10);
        let second = loop {
            match start(&cfg, device.clone(), vec![Box::new(flaky(&log))], &handle) {
                Ok(s) => break s,
                Err(e) if Instant::now() < deadline => {
                    tracing::debug!("queue still held: {e}");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(e) => panic!("{e}"),
            }
        };
        let opened_at = second.queue().opened_at();
        assert_eq!(opened_at, 30);
        second.send_json(&payloads(30..60)).unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        while second.stats().outputs[0].pending > 0 {
            assert!(Instant::now() < deadline, "{:?}", second.stats());
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        second.shutdown(Duration::from_secs(1)).await;
        let l = log.lock().unwrap();
        let mut tried = std::collections::HashSet::new();
        for (first, last, d) in &l.attempts {
            // A first attempt of this process's records; never a retry, never older records.
            let first_attempt = tried.insert(*first);
            assert_eq!(
                d.unsent,
                *first >= opened_at && first_attempt,
                "batch {first}..={last}: {d:?}"
            );
        }
        assert!(l.attempts.iter().any(|a| a.2.unsent));
        assert!(l.attempts.iter().any(|a| !a.2.unsent));
    }
}
