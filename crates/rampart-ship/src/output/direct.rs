//! Direct delivery: `stdout` and `file` outputs written by the caller's thread, without the
//! durable queue (`delivery: direct`).
//!
//! The agent's `outputs:` shorthand is this: `stdout` is `{type: stdout, delivery: direct}`
//! and `jsonl:PATH` is `{type: file, path: PATH, name: "jsonl:PATH", delivery: direct}`
//! ([`shorthand`]). A direct output takes the same `filter:` as a queued one and reports the
//! same counters (`rampart_ship_sent_records_total`, `rampart_ship_filtered_total`, ...), but
//! promises less, which is what keeps it cheap on the agent's hot path:
//!
//! * records are buffered and written at each [`DirectOutputs::flush`]; nothing is fsynced
//!   (a queued `file` output fsyncs every batch);
//! * nothing is retried: a record that could not be written (disk full, a closed pipe) is
//!   dropped, counted (`rampart_ship_dropped_total{reason="write"}`) and logged; a failed
//!   write to a file is cut off again, so no half line stays behind;
//! * a file moved away (logrotate) is noticed at the next flush and a new one created at the
//!   path, as the queued `file` output does.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Stdout, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::{Delivery, OutputConfig, OutputError, OutputFilter};
use crate::metrics::PromWriter;

/// Buffer of a file output: one write per flush for a busy agent.
const FILE_BUFFER: usize = 256 << 10;
/// At most one warning per output this often while writes keep failing.
const WARN_EVERY: Duration = Duration::from_secs(10);

/// The ship output an agent `outputs:` shorthand stands for: `stdout` or `jsonl:PATH`.
pub fn shorthand(spec: &str) -> Result<OutputConfig, OutputError> {
    if spec == "stdout" {
        return Ok(OutputConfig::Stdout {
            name: None,
            filter: OutputFilter::default(),
            delivery: Delivery::Direct,
        });
    }
    match spec.strip_prefix("jsonl:") {
        Some(p) if !p.is_empty() => Ok(OutputConfig::File {
            path: PathBuf::from(p),
            name: Some(spec.to_string()),
            filter: OutputFilter::default(),
            delivery: Delivery::Direct,
        }),
        _ => Err(OutputError::new(
            spec,
            format!("{spec:?} is not `stdout`, `console` or `jsonl:PATH`"),
        )),
    }
}

enum Sink {
    Stdout(BufWriter<Stdout>),
    File {
        path: PathBuf,
        w: Option<BufWriter<File>>,
        /// File length after the last successful flush: a failed write is cut back to it.
        good_len: u64,
    },
}

/// Counters of one direct output since it was opened.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DirectStats {
    pub name: String,
    /// Records written (flushed to the file or pipe).
    pub sent_records: u64,
    pub sent_bytes: u64,
    /// Records the output's filter refused.
    pub filtered: u64,
    /// Records lost to failed writes.
    pub dropped: u64,
    /// Failed writes or flushes (each loses the records it carried).
    pub send_errors: u64,
}

struct Direct {
    filter: OutputFilter,
    sink: Sink,
    stats: DirectStats,
    /// Records and bytes buffered since the last flush.
    pending: (u64, u64),
    last_warn: Option<Instant>,
    unwarned: u64,
}

/// The direct outputs of one writer (see the module docs). Writing never fails: what cannot
/// be written is counted and logged.
pub struct DirectOutputs {
    outputs: Vec<Direct>,
}

impl std::fmt::Debug for DirectOutputs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.outputs.iter().map(|o| &o.stats.name))
            .finish()
    }
}

fn open_file(path: &Path) -> std::io::Result<File> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)
}

/// The open file still is the one at `path`.
fn same_file(file: &File, path: &Path) -> bool {
    match (file.metadata(), std::fs::metadata(path)) {
        (Ok(a), Ok(b)) => a.ino() == b.ino() && a.dev() == b.dev(),
        _ => false,
    }
}

impl DirectOutputs {
    /// Opens `configs` (stdout and file outputs; files are created 0600 and appended to, their
    /// directories created). Other kinds need the queue and are refused, as are two outputs
    /// with one name; errors name the output and the file.
    pub fn open(configs: &[OutputConfig]) -> Result<DirectOutputs, OutputError> {
        let mut outputs: Vec<Direct> = Vec::new();
        for c in configs {
            let name = c.name().to_string();
            if outputs.iter().any(|o| o.stats.name == name) {
                return Err(OutputError::new(
                    &name,
                    "two outputs have this name; give one a `name:`",
                ));
            }
            let sink = match c {
                OutputConfig::Stdout { .. } => Sink::Stdout(BufWriter::new(std::io::stdout())),
                OutputConfig::File { path, .. } => {
                    let f = open_file(path).map_err(|e| {
                        OutputError::new(&name, format!("opening {}: {e}", path.display()))
                    })?;
                    let good_len = f.metadata().map(|m| m.len()).unwrap_or(0);
                    Sink::File {
                        path: path.clone(),
                        w: Some(BufWriter::with_capacity(FILE_BUFFER, f)),
                        good_len,
                    }
                }
                other => {
                    return Err(OutputError::new(
                        &name,
                        format!(
                            "a {} output needs the durable queue: list it under `ship: outputs:`",
                            other.kind()
                        ),
                    ))
                }
            };
            outputs.push(Direct {
                filter: c.filter().clone(),
                sink,
                stats: DirectStats {
                    name,
                    ..DirectStats::default()
                },
                pending: (0, 0),
                last_warn: None,
                unwarned: 0,
            });
        }
        Ok(DirectOutputs { outputs })
    }

    /// No outputs.
    pub fn is_empty(&self) -> bool {
        self.outputs.is_empty()
    }

    /// The outputs' names, in configuration order.
    pub fn names(&self) -> Vec<&str> {
        self.outputs.iter().map(|o| o.stats.name.as_str()).collect()
    }

    /// Buffers one record (a JSON document without newline) for every output whose filter
    /// takes it; it is written at the next [`flush`](DirectOutputs::flush).
    pub fn write_json(&mut self, json: &[u8]) {
        for o in &mut self.outputs {
            if !o.filter.accepts_json(json) {
                o.stats.filtered += 1;
                continue;
            }
            let res = match &mut o.sink {
                Sink::Stdout(w) => w.write_all(json).and_then(|()| w.write_all(b"\n")),
                Sink::File { w: Some(w), .. } => {
                    w.write_all(json).and_then(|()| w.write_all(b"\n"))
                }
                Sink::File { w: None, path, .. } => Err(std::io::Error::other(format!(
                    "{} could not be reopened",
                    path.display()
                ))),
            };
            o.pending.0 += 1;
            o.pending.1 += json.len() as u64 + 1;
            if let Err(e) = res {
                o.failed(&e);
            }
        }
    }

    /// Writes what is buffered. A file moved away since the last flush is reopened at its
    /// path first.
    pub fn flush(&mut self) {
        for o in &mut self.outputs {
            if o.pending.0 == 0 {
                continue;
            }
            let res = match &mut o.sink {
                Sink::Stdout(w) => w.flush(),
                Sink::File { w: Some(w), .. } => w.flush(),
                Sink::File { w: None, .. } => Ok(()),
            };
            match res {
                Ok(()) => {
                    o.stats.sent_records += o.pending.0;
                    o.stats.sent_bytes += o.pending.1;
                    o.pending = (0, 0);
                    o.after_flush();
                }
                Err(e) => o.failed(&e),
            }
        }
    }

    /// Records lost to failed writes, all outputs, since they were opened.
    pub fn dropped(&self) -> u64 {
        self.outputs.iter().map(|o| o.stats.dropped).sum()
    }

    /// Each output's counters.
    pub fn stats(&self) -> Vec<DirectStats> {
        self.outputs.iter().map(|o| o.stats.clone()).collect()
    }
}

impl Direct {
    /// A write or flush failed: what was buffered since the last flush is lost. The buffer is
    /// thrown away (not written later, out of order) and a file is cut back to its last good
    /// length.
    fn failed(&mut self, e: &std::io::Error) {
        self.stats.dropped += self.pending.0;
        self.stats.send_errors += 1;
        self.unwarned += self.pending.0;
        self.pending = (0, 0);
        match &mut self.sink {
            Sink::Stdout(w) => {
                let old = std::mem::replace(w, BufWriter::new(std::io::stdout()));
                let _ = old.into_parts();
            }
            Sink::File { w, good_len, .. } => {
                if let Some(old) = w.take() {
                    let (f, _) = old.into_parts();
                    let _ = f.set_len(*good_len);
                    *w = Some(BufWriter::with_capacity(FILE_BUFFER, f));
                }
            }
        }
        if self.last_warn.is_none_or(|t| t.elapsed() >= WARN_EVERY) {
            tracing::warn!(
                "output {}: {} records dropped ({} since start; rampart_ship_dropped_total{{output=\"{}\",reason=\"write\"}}): {e}",
                self.stats.name,
                self.unwarned,
                self.stats.dropped,
                self.stats.name
            );
            self.last_warn = Some(Instant::now());
            self.unwarned = 0;
        }
    }

    /// After a good flush: remember the file's length, and reopen a file moved away.
    fn after_flush(&mut self) {
        let Sink::File { path, w, good_len } = &mut self.sink else {
            return;
        };
        let Some(cur) = w.as_ref() else { return };
        if same_file(cur.get_ref(), path) {
            *good_len = cur
                .get_ref()
                .metadata()
                .map(|m| m.len())
                .unwrap_or(*good_len);
            return;
        }
        match open_file(path) {
            Ok(f) => {
                *good_len = f.metadata().map(|m| m.len()).unwrap_or(0);
                *w = Some(BufWriter::with_capacity(FILE_BUFFER, f));
            }
            Err(e) => {
                tracing::warn!(
                    "output {}: reopening {}: {e}",
                    self.stats.name,
                    path.display()
                );
                *w = None;
            }
        }
    }
}

/// The counters of direct outputs in the shipper's metric families, each with its `output`
/// label (drops as `rampart_ship_dropped_total{output, reason="write"}`).
pub fn write_metrics(w: &mut PromWriter, stats: &[DirectStats]) {
    type Pick = fn(&DirectStats) -> u64;
    let families: [(&str, &str, Pick); 5] = [
        (
            "rampart_ship_sent_records_total",
            "Records delivered.",
            |s| s.sent_records,
        ),
        (
            "rampart_ship_sent_bytes_total",
            "Bytes delivered (after compression).",
            |s| s.sent_bytes,
        ),
        (
            "rampart_ship_send_errors_total",
            "Failed delivery attempts (each is retried).",
            |s| s.send_errors,
        ),
        (
            "rampart_ship_filtered_total",
            "Records an output's filter refused (acknowledged, not sent).",
            |s| s.filtered,
        ),
        (
            "rampart_ship_dropped_total",
            "Records lost in the queue.",
            |s| s.dropped,
        ),
    ];
    for (name, help, pick) in families {
        for s in stats {
            let labels: &[(&str, &str)] = if name == "rampart_ship_dropped_total" {
                &[("output", &s.name), ("reason", "write")]
            } else {
                &[("output", &s.name)]
            };
            w.counter(name, help, labels, pick(s));
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use super::*;

    #[test]
    fn shorthands_are_spellings_of_ship_outputs() {
        let long: Vec<OutputConfig> = serde_yaml::from_str(
            "- {type: stdout, delivery: direct}\n- {type: file, path: /var/log/r.jsonl, name: \"jsonl:/var/log/r.jsonl\", delivery: direct}\n",
        )
        .unwrap();
        assert_eq!(shorthand("stdout").unwrap(), long[0]);
        assert_eq!(shorthand("jsonl:/var/log/r.jsonl").unwrap(), long[1]);
        assert_eq!(long[0].name(), "stdout");
        assert_eq!(long[1].name(), "jsonl:/var/log/r.jsonl");
        for bad in ["jsonl:", "stderr", "file:/x", ""] {
            let e = shorthand(bad).unwrap_err();
            assert!(
                e.to_string()
                    .contains("is not `stdout`, `console` or `jsonl:PATH`"),
                "{e}"
            );
        }
    }

    #[test]
    fn a_filter_on_a_direct_file_output_keeps_only_what_it_accepts() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/alerts.jsonl");
        let cfg: Vec<OutputConfig> = serde_yaml::from_str(&format!(
            "- {{type: file, path: {}, delivery: direct, filter: {{kinds: [alert]}}}}\n",
            path.display()
        ))
        .unwrap();
        let mut d = DirectOutputs::open(&cfg).unwrap();
        d.write_json(br#"{"type":"alert","rule":"r","priority":"critical"}"#);
        d.write_json(br#"{"type":"process.exec"}"#);
        d.flush();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(
            text,
            "{\"type\":\"alert\",\"rule\":\"r\",\"priority\":\"critical\"}\n"
        );
        let s = &d.stats()[0];
        assert_eq!((s.sent_records, s.filtered, s.dropped), (1, 1, 0));
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }

    #[test]
    fn failed_writes_are_counted_as_drops_and_reported_in_metrics() {
        // /dev/full accepts the open and fails every write with ENOSPC, as a full disk does.
        let cfg = vec![shorthand("jsonl:/dev/full").unwrap()];
        let mut d = DirectOutputs::open(&cfg).unwrap();
        for _ in 0..3 {
            d.write_json(br#"{"type":"process.exec"}"#);
        }
        d.flush();
        assert_eq!(d.dropped(), 3);
        let s = &d.stats()[0];
        assert_eq!((s.sent_records, s.dropped), (0, 3));
        assert!(s.send_errors >= 1);
        let mut w = PromWriter::new();
        write_metrics(&mut w, &d.stats());
        let text = w.finish();
        assert!(
            text.contains(
                "rampart_ship_dropped_total{output=\"jsonl:/dev/full\",reason=\"write\"} 3"
            ),
            "{text}"
        );
        // It keeps working after the failure: the next records are tried again.
        d.write_json(br#"{"type":"process.exec"}"#);
        d.flush();
        assert_eq!(d.dropped(), 4);
    }

    #[test]
    fn a_rotated_file_is_reopened_at_its_path() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ev.jsonl");
        let mut d =
            DirectOutputs::open(&[shorthand(&format!("jsonl:{}", path.display())).unwrap()])
                .unwrap();
        d.write_json(b"{\"n\":1}");
        d.flush();
        std::fs::rename(&path, dir.path().join("ev.jsonl.1")).unwrap();
        d.write_json(b"{\"n\":2}");
        d.flush();
        d.write_json(b"{\"n\":3}");
        d.flush();
        let old = std::fs::read_to_string(dir.path().join("ev.jsonl.1")).unwrap();
        let new = std::fs::read_to_string(&path).unwrap();
        assert_eq!(
            old, "{\"n\":1}\n{\"n\":2}\n",
            "the batch after the move went to the moved file"
        );
        assert_eq!(new, "{\"n\":3}\n");
        assert_eq!(d.stats()[0].sent_records, 3);
    }

    #[test]
    fn queued_only_kinds_are_refused() {
        let cfg: Vec<OutputConfig> =
            serde_yaml::from_str("- {type: syslog, address: \"udp://127.0.0.1:514\"}\n").unwrap();
        let e = DirectOutputs::open(&cfg).unwrap_err();
        assert!(e.to_string().contains("needs the durable queue"), "{e}");
        let two = vec![shorthand("stdout").unwrap(), shorthand("stdout").unwrap()];
        assert!(DirectOutputs::open(&two).is_err());
    }

    /// A queue user (`rampart authz --ship`) cannot silently ignore a direct output: building
    /// one for the queue is an error naming it.
    #[test]
    fn the_queue_refuses_direct_outputs() {
        let e = shorthand("stdout").unwrap().build().err().unwrap();
        assert!(e.to_string().contains("written by the agent's loop"), "{e}");
        let queued: Vec<OutputConfig> = serde_yaml::from_str("- {type: stdout}\n").unwrap();
        assert!(!queued[0].is_direct());
        assert!(queued[0].build().is_ok());
    }
}
