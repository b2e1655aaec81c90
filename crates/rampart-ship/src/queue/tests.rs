#![allow(clippy::unwrap_used, reason = "tests: a failure is a test failure")]

use std::time::Duration;

use super::*;

fn cfg(dir: &Path) -> QueueConfig {
    QueueConfig {
        fsync: FsyncPolicy::EveryBatch,
        ..QueueConfig::new(dir)
    }
}

const ALL: BatchLimits = BatchLimits {
    max_records: 100_000,
    max_bytes: 1 << 30,
    linger: Duration::from_millis(0),
};

fn payload(i: u64) -> Vec<u8> {
    format!(
        "{{\"n\":{i},\"pad\":\"{}\"}}",
        "x".repeat((i % 50) as usize)
    )
    .into_bytes()
}

async fn drain(r: &mut Reader) -> Vec<Entry> {
    let mut all = Vec::new();
    while let Ok(Ok(batch)) =
        tokio::time::timeout(Duration::from_millis(100), r.next_batch(ALL)).await
    {
        all.extend(batch);
    }
    all
}

fn numbers(entries: &[Entry]) -> Vec<u64> {
    entries
        .iter()
        .map(|e| {
            let v: serde_json::Value = serde_json::from_slice(&e.payload).unwrap();
            v["n"].as_u64().unwrap()
        })
        .collect()
}

fn segment_files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "rq"))
        .collect();
    v.sort();
    v
}

#[tokio::test]
async fn records_come_back_in_order_and_acked_segments_are_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = cfg(dir.path());
    c.max_bytes = 1 << 20;
    c.segment_bytes = 8 << 10;
    let q = Queue::open(&c, &["server"]).unwrap();
    let items: Vec<Vec<u8>> = (0..1000).map(payload).collect();
    let r = q.append(&items).unwrap();
    assert_eq!(
        r,
        Appended {
            accepted: 1000,
            dropped: 0
        }
    );
    assert!(segment_files(dir.path()).len() > 3, "small segments rotate");
    let mut reader = q.reader("server").unwrap();
    let got = drain(&mut reader).await;
    assert_eq!(numbers(&got), (0..1000).collect::<Vec<_>>());
    assert_eq!(reader.pending(), 1000, "nothing acknowledged yet");
    reader.ack(got.last().unwrap().seq).unwrap();
    assert_eq!(reader.pending(), 0);
    // Only the segment being written remains.
    assert_eq!(segment_files(dir.path()).len(), 1);
    assert!(q.take_loss_reports().is_empty());
}

#[tokio::test]
async fn unacknowledged_records_are_redelivered_after_reopen_and_acked_ones_are_not() {
    let dir = tempfile::tempdir().unwrap();
    {
        let q = Queue::open(&cfg(dir.path()), &["a"]).unwrap();
        q.append(&(0..100).map(payload).collect::<Vec<_>>())
            .unwrap();
        let mut r = q.reader("a").unwrap();
        let got = drain(&mut r).await;
        r.ack(got[39].seq).unwrap();
    }
    let q = Queue::open(&cfg(dir.path()), &["a"]).unwrap();
    q.append(&(100..110).map(payload).collect::<Vec<_>>())
        .unwrap();
    let mut r = q.reader("a").unwrap();
    let got = drain(&mut r).await;
    assert_eq!(numbers(&got), (40..110).collect::<Vec<_>>());
    // Sequence numbers continue across the restart.
    assert!(got.windows(2).all(|w| w[1].seq == w[0].seq + 1));
}

#[tokio::test]
async fn a_second_process_cannot_open_the_same_queue() {
    let dir = tempfile::tempdir().unwrap();
    let _q = Queue::open(&cfg(dir.path()), &["a"]).unwrap();
    let err = Queue::open(&cfg(dir.path()), &["a"]).unwrap_err();
    assert!(matches!(err, QueueError::Locked { .. }), "{err}");
}

#[tokio::test]
async fn segments_stay_until_every_output_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = cfg(dir.path());
    c.segment_bytes = 4096;
    c.max_bytes = 1 << 20;
    let q = Queue::open(&c, &["fast", "slow"]).unwrap();
    q.append(&(0..300).map(payload).collect::<Vec<_>>())
        .unwrap();
    let before = segment_files(dir.path()).len();
    let mut fast = q.reader("fast").unwrap();
    let got = drain(&mut fast).await;
    fast.ack(got.last().unwrap().seq).unwrap();
    assert_eq!(
        segment_files(dir.path()).len(),
        before,
        "slow output still needs them"
    );
    let mut slow = q.reader("slow").unwrap();
    let got = drain(&mut slow).await;
    assert_eq!(got.len(), 300);
    slow.ack(got.last().unwrap().seq).unwrap();
    assert_eq!(segment_files(dir.path()).len(), 1);
}

#[tokio::test]
async fn removed_output_does_not_pin_segments() {
    let dir = tempfile::tempdir().unwrap();
    {
        let q = Queue::open(&cfg(dir.path()), &["a", "gone"]).unwrap();
        q.append(&[payload(1)]).unwrap();
        let mut r = q.reader("gone").unwrap();
        let got = drain(&mut r).await;
        r.ack(got[0].seq).unwrap();
    }
    assert!(dir.path().join("cursor.gone").exists());
    let q = Queue::open(&cfg(dir.path()), &["a"]).unwrap();
    assert!(!dir.path().join("cursor.gone").exists());
    let mut r = q.reader("a").unwrap();
    assert_eq!(numbers(&drain(&mut r).await), vec![1]);
}

/// Flips one byte inside the payload of the record with sequence number `seq`.
fn damage_record(dir: &Path, seq: u64) {
    for path in segment_files(dir) {
        let mut data = fs::read(&path).unwrap();
        let mut off = SEGMENT_HEADER_LEN;
        while let Some((h, next)) = record_at(&data, off, 0) {
            if h.seq == seq {
                data[off + RECORD_HEADER_LEN + 3] ^= 0x55;
                fs::write(&path, &data).unwrap();
                return;
            }
            off = next;
        }
    }
    panic!("record {seq} not found");
}

#[tokio::test]
async fn damaged_record_is_skipped_reported_and_the_rest_delivered() {
    let dir = tempfile::tempdir().unwrap();
    {
        let q = Queue::open(&cfg(dir.path()), &["a"]).unwrap();
        q.append(&(0..50).map(payload).collect::<Vec<_>>()).unwrap();
    }
    damage_record(dir.path(), 20);
    let q = Queue::open(&cfg(dir.path()), &["a"]).unwrap();
    let mut r = q.reader("a").unwrap();
    let got = numbers(&drain(&mut r).await);
    let expected: Vec<u64> = (0..50).filter(|n| *n != 20).collect();
    assert_eq!(got, expected);
    let reports = q.take_loss_reports();
    assert_eq!(reports.len(), 1, "{reports:?}");
    assert_eq!(reports[0].reason, LossReason::Corrupt);
    assert_eq!(reports[0].records, 1);
    assert!(reports[0].detail.contains("seg-"), "{}", reports[0].detail);
    assert_eq!(q.stats().lost_corrupt_total, 1);
}

#[tokio::test]
async fn damaged_length_field_resyncs_on_the_next_record() {
    let dir = tempfile::tempdir().unwrap();
    {
        let q = Queue::open(&cfg(dir.path()), &["a"]).unwrap();
        q.append(&(0..30).map(payload).collect::<Vec<_>>()).unwrap();
    }
    // Make record 10's length huge: the reader cannot trust it and must scan for record 11.
    let path = &segment_files(dir.path())[0];
    let mut data = fs::read(path).unwrap();
    let mut off = SEGMENT_HEADER_LEN;
    for _ in 0..10 {
        off = record_at(&data, off, 0).unwrap().1;
    }
    data[off + 3] = 0x7f;
    fs::write(path, &data).unwrap();
    let q = Queue::open(&cfg(dir.path()), &["a"]).unwrap();
    let mut r = q.reader("a").unwrap();
    let got = numbers(&drain(&mut r).await);
    assert_eq!(got, (0..30).filter(|n| *n != 10).collect::<Vec<_>>());
    assert_eq!(q.stats().lost_corrupt_total, 1);
}

#[tokio::test]
async fn segment_with_damaged_header_is_removed_and_its_records_reported_lost() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = cfg(dir.path());
    c.segment_bytes = 4096;
    c.max_bytes = 1 << 20;
    let total = 200u64;
    {
        let q = Queue::open(&c, &["a"]).unwrap();
        q.append(&(0..total).map(payload).collect::<Vec<_>>())
            .unwrap();
    }
    let segs = segment_files(dir.path());
    assert!(segs.len() >= 3);
    let victim = &segs[1];
    let first =
        format::parse_segment_file_name(victim.file_name().unwrap().to_str().unwrap()).unwrap();
    let next_first =
        format::parse_segment_file_name(segs[2].file_name().unwrap().to_str().unwrap()).unwrap();
    let mut data = fs::read(victim).unwrap();
    data[0] = b'X';
    fs::write(victim, &data).unwrap();
    let q = Queue::open(&c, &["a"]).unwrap();
    assert!(!victim.exists(), "unreadable segment removed");
    let mut r = q.reader("a").unwrap();
    let got = numbers(&drain(&mut r).await);
    let expected: Vec<u64> = (0..total)
        .filter(|n| *n < first || *n >= next_first)
        .collect();
    assert_eq!(got, expected);
    let lost: u64 = q.take_loss_reports().iter().map(|r| r.records).sum();
    assert_eq!(lost, next_first - first);
}

#[tokio::test]
async fn torn_tail_after_a_crash_loses_only_the_torn_record() {
    let dir = tempfile::tempdir().unwrap();
    {
        let q = Queue::open(&cfg(dir.path()), &["a"]).unwrap();
        q.append(&(0..10).map(payload).collect::<Vec<_>>()).unwrap();
    }
    // Power loss mid-write: the last record is cut short.
    let path = &segment_files(dir.path())[0];
    let len = fs::metadata(path).unwrap().len();
    OpenOptions::new()
        .write(true)
        .open(path)
        .unwrap()
        .set_len(len - 5)
        .unwrap();
    let q = Queue::open(&cfg(dir.path()), &["a"]).unwrap();
    q.append(&[payload(100)]).unwrap();
    let mut r = q.reader("a").unwrap();
    let got = drain(&mut r).await;
    assert_eq!(numbers(&got), vec![0, 1, 2, 3, 4, 5, 6, 7, 8, 100]);
    // The new record took the torn record's sequence number: nothing is missing in sequence.
    assert_eq!(got[9].seq, 9);
    assert_eq!(q.stats().lost_corrupt_total, 0);
}

#[tokio::test]
async fn full_queue_drops_newest_and_counts_them() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = cfg(dir.path());
    c.max_bytes = 64 << 10;
    c.overflow = OverflowPolicy::DropNewest;
    let q = Queue::open(&c, &["a"]).unwrap();
    let items: Vec<Vec<u8>> = (0..5000).map(payload).collect();
    let r = q.append(&items).unwrap();
    assert!(r.dropped > 0 && r.accepted > 0, "{r:?}");
    assert_eq!(r.accepted + r.dropped, 5000);
    assert!(q.stats().bytes <= c.max_bytes);
    let reports = q.take_loss_reports();
    assert_eq!(reports.len(), 1);
    assert_eq!(reports[0].reason, LossReason::Overflow);
    assert_eq!(reports[0].records, r.dropped as u64);
    assert_eq!(q.stats().dropped_overflow_total, r.dropped as u64);
    // What was accepted is the oldest prefix, intact.
    let mut reader = q.reader("a").unwrap();
    let got = numbers(&drain(&mut reader).await);
    assert_eq!(got, (0..r.accepted as u64).collect::<Vec<_>>());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_queue_blocks_the_producer_until_space_is_freed() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = cfg(dir.path());
    c.max_bytes = 64 << 10;
    c.overflow = OverflowPolicy::Block;
    let q = Queue::open(&c, &["a"]).unwrap();
    let producer = {
        let q = q.clone();
        std::thread::spawn(move || {
            let items: Vec<Vec<u8>> = (0..3000).map(payload).collect();
            let mut total = Appended::default();
            for chunk in items.chunks(100) {
                let r = q.append(chunk).unwrap();
                total.accepted += r.accepted;
                total.dropped += r.dropped;
            }
            total
        })
    };
    // The producer cannot finish until the reader acknowledges.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!producer.is_finished(), "3000 records do not fit in 64 KiB");
    let mut r = q.reader("a").unwrap();
    let mut got = Vec::new();
    while got.len() < 3000 {
        let batch = tokio::time::timeout(Duration::from_secs(10), r.next_batch(ALL))
            .await
            .expect("producer makes progress")
            .unwrap();
        r.ack(batch.last().unwrap().seq).unwrap();
        got.extend(batch);
    }
    let total = producer.join().unwrap();
    assert_eq!(
        total,
        Appended {
            accepted: 3000,
            dropped: 0
        }
    );
    assert_eq!(numbers(&got), (0..3000).collect::<Vec<_>>());
    assert!(q.take_loss_reports().is_empty());
}

#[tokio::test]
async fn encrypted_queue_hides_payloads_and_refuses_a_wrong_key() {
    let dir = tempfile::tempdir().unwrap();
    let keydir = tempfile::tempdir().unwrap();
    let mut c = cfg(dir.path());
    c.encryption_key_file = Some(keydir.path().join("queue.key"));
    {
        let q = Queue::open(&c, &["a"]).unwrap();
        q.append(&[b"{\"secret\":\"hunter2\"}".to_vec()]).unwrap();
        let mut r = q.reader("a").unwrap();
        let got = drain(&mut r).await;
        assert_eq!(got[0].payload, b"{\"secret\":\"hunter2\"}");
    }
    let raw = fs::read(&segment_files(dir.path())[0]).unwrap();
    assert!(
        !raw.windows(7).any(|w| w == b"hunter2"),
        "plaintext on disk"
    );
    let mode = fs::metadata(keydir.path().join("queue.key"))
        .unwrap()
        .permissions();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777,
        0o600
    );
    // Reopen with the same key: readable.
    {
        let q = Queue::open(&c, &["a"]).unwrap();
        let mut r = q.reader("a").unwrap();
        assert_eq!(drain(&mut r).await.len(), 1);
    }
    // Another key: refused at open, nothing deleted.
    fs::write(keydir.path().join("queue.key"), hex::encode([7u8; 32])).unwrap();
    let err = Queue::open(&c, &["a"]).unwrap_err();
    assert!(matches!(err, QueueError::WrongKey { .. }), "{err}");
    // No key at all: refused.
    let err = Queue::open(&cfg(dir.path()), &["a"]).unwrap_err();
    assert!(matches!(err, QueueError::KeyMissing { .. }), "{err}");
    assert_eq!(segment_files(dir.path()).len(), 1);
}

#[tokio::test]
async fn reader_waits_for_new_records() {
    let dir = tempfile::tempdir().unwrap();
    let q = Queue::open(&cfg(dir.path()), &["a"]).unwrap();
    let mut r = q.reader("a").unwrap();
    let waiter = tokio::spawn(async move { r.next_batch(ALL).await.map(|b| b.len()) });
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(!waiter.is_finished());
    q.append(&[payload(1), payload(2)]).unwrap();
    let n = tokio::time::timeout(Duration::from_secs(5), waiter)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(n >= 1);
}

#[test]
fn newer_directory_layout_is_refused_without_touching_it() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("FORMAT"), "rampart-queue 2\n").unwrap();
    let err = Queue::open(&cfg(dir.path()), &["a"]).unwrap_err();
    assert!(err.to_string().contains("rampart-queue 2"), "{err}");
}

/// A small deterministic generator for the randomised test (no dependency needed for this).
struct XorShift(u64);
impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Random sequences of appends, partial reads, acks and reopenings against a model: every
/// record appended is delivered, in order, at least once; once acknowledged, never again.
#[tokio::test]
async fn random_operations_deliver_everything_in_order() {
    for seed in 1..=12u64 {
        let mut rng = XorShift(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
        let dir = tempfile::tempdir().unwrap();
        let mut c = cfg(dir.path());
        c.segment_bytes = 2048 + rng.below(8192);
        c.max_bytes = 1 << 22;
        c.fsync = if rng.below(2) == 0 {
            FsyncPolicy::EveryBatch
        } else {
            FsyncPolicy::Interval(Duration::from_millis(5))
        };
        let mut q = Queue::open(&c, &["a"]).unwrap();
        let mut reader = q.reader("a").unwrap();
        let mut next_n = 0u64;
        let mut acked_n = 0u64; // every n below this was acknowledged
        let mut delivered: Vec<u64> = Vec::new(); // since the last reopen
        let mut unacked: Vec<(u64, u64)> = Vec::new(); // (n, seq) read but not acked
        for _ in 0..200 {
            match rng.below(10) {
                0..=3 => {
                    let k = 1 + rng.below(40);
                    let items: Vec<Vec<u8>> = (next_n..next_n + k).map(payload).collect();
                    assert_eq!(q.append(&items).unwrap().accepted as u64, k);
                    next_n += k;
                }
                4..=6 => {
                    let limits = BatchLimits {
                        max_records: 1 + rng.below(60) as usize,
                        max_bytes: 1 << 20,
                        linger: Duration::ZERO,
                    };
                    if let Ok(Ok(b)) =
                        tokio::time::timeout(Duration::from_millis(20), reader.next_batch(limits))
                            .await
                    {
                        for (n, e) in numbers(&b).into_iter().zip(&b) {
                            delivered.push(n);
                            unacked.push((n, e.seq));
                        }
                    }
                }
                7..=8 => {
                    if !unacked.is_empty() {
                        let i = rng.below(unacked.len() as u64) as usize;
                        let (n, seq) = unacked[i];
                        reader.ack(seq).unwrap();
                        acked_n = acked_n.max(n + 1);
                        unacked.drain(..=i);
                    }
                }
                _ => {
                    drop(reader);
                    drop(q);
                    // A read cut short by the timeout above finishes on the blocking pool and
                    // holds the queue until then.
                    let mut tries = 0;
                    q = loop {
                        match Queue::open(&c, &["a"]) {
                            Err(QueueError::Locked { .. }) if tries < 500 => {
                                tries += 1;
                                tokio::time::sleep(Duration::from_millis(10)).await;
                            }
                            r => break r.unwrap(),
                        }
                    };
                    reader = q.reader("a").unwrap();
                    delivered.clear();
                    unacked.clear();
                    // The first record after reopening is the first unacknowledged one.
                    if acked_n < next_n {
                        let b = reader
                            .next_batch(BatchLimits {
                                max_records: 1,
                                ..ALL
                            })
                            .await
                            .unwrap();
                        let n = numbers(&b)[0];
                        assert_eq!(n, acked_n, "seed {seed}: restart position");
                        delivered.push(n);
                        unacked.push((n, b[0].seq));
                    }
                }
            }
            // Delivered since the last reopen: a contiguous run.
            assert!(
                delivered.windows(2).all(|w| w[1] == w[0] + 1),
                "seed {seed}: out of order {delivered:?}"
            );
        }
        let rest = drain(&mut reader).await;
        let mut all = delivered.clone();
        all.extend(numbers(&rest));
        let start = all.first().copied().unwrap_or(next_n);
        assert!(start <= acked_n.max(start), "seed {seed}");
        assert_eq!(
            all,
            (start..next_n).collect::<Vec<_>>(),
            "seed {seed}: gaps"
        );
        assert!(q.take_loss_reports().is_empty(), "seed {seed}");
    }
}
