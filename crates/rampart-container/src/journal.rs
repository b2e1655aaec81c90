//! Login attempts from the systemd journal.
//!
//! A stock Debian 12 host has no `/var/log/auth.log` (rsyslog is no longer installed): sshd,
//! PAM, su and sudo log through syslog(3) into journald only. [`follow_journal`] reads the
//! journal's auth and authpriv facilities and hands each entry to [`AuthLogs`] like a line of
//! `auth.log`.
//!
//! The reader is `journalctl --output=json`, the journal's own reader, rather than a parser of
//! the journal file format written here: the format (hash tables, entry arrays, compression,
//! sealing, file rotation and per-user files) belongs to systemd and changes with it, and
//! every host that has a journal has `journalctl`.
//!
//! # No line lost or doubled across restarts
//! Each entry's cursor is saved to the cursor file (atomically, write + rename): at once after
//! an entry that became an event, within [`SAVE_EVERY`] otherwise, and when `journalctl`
//! exits. Entries read but not yet saved when the agent stops are read again at the next
//! start; none of them became an event, so that costs a re-read and no duplicate. The next start reads from after that cursor (`--after-cursor`); the first
//! start ever reads new entries only, like `tail -F`. An entry that became an event has an id
//! derived from its journal sequence number, so the one entry that a crash between sending and
//! saving could read twice is still one record at the server (ids are idempotent there).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rampart_event::EventId;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};

use crate::logs::AuthLogs;

/// How often the cursor is saved when no entry became an event.
pub const SAVE_EVERY: Duration = Duration::from_secs(2);

/// Longest journal entry (one JSON line) read; longer ones are skipped whole and counted.
const MAX_ENTRY: u64 = 1 << 20;

/// Where and how to read the journal.
#[derive(Debug, Clone)]
pub struct JournalOptions {
    /// The `journalctl` binary.
    pub journalctl: PathBuf,
    /// Where the cursor of the last entry read is kept.
    pub cursor_file: PathBuf,
    /// A journal directory to read instead of the system journal (`journalctl --directory`).
    pub directory: Option<PathBuf>,
}

impl Default for JournalOptions {
    fn default() -> Self {
        JournalOptions {
            journalctl: PathBuf::from("/usr/bin/journalctl"),
            cursor_file: PathBuf::from("/var/lib/rampart/journal.cursor"),
            directory: None,
        }
    }
}

/// Whether this host has a journal to read: `journalctl` and a journal directory (volatile
/// `/run/log/journal` or persistent `/var/log/journal`).
pub fn journal_available(opts: &JournalOptions) -> bool {
    opts.journalctl.exists()
        && match &opts.directory {
            Some(d) => d.is_dir(),
            None => ["/run/log/journal", "/var/log/journal"]
                .iter()
                .any(|d| Path::new(d).is_dir()),
        }
}

fn read_cursor(path: &Path) -> Option<String> {
    let c = std::fs::read_to_string(path).ok()?;
    let c = c.trim();
    // A cursor is `s=..;i=..;b=..;m=..;t=..;x=..`: anything else (a damaged file) is ignored
    // and the follower starts with new entries.
    (c.starts_with("s=") && c.len() < 512 && !c.contains(char::is_whitespace)).then(|| c.into())
}

fn save_cursor(path: &Path, cursor: &str) {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    // One temporary name per process: two agents given the same file never mix their writes.
    let tmp = path.with_extension(format!("tmp.{}", std::process::id()));
    let r = (|| -> std::io::Result<()> {
        if let Some(d) = path.parent() {
            std::fs::create_dir_all(d)?;
        }
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(cursor.as_bytes())?;
        f.sync_data()?;
        std::fs::rename(&tmp, path)
    })();
    if let Err(e) = r {
        tracing::warn!("journal: saving the cursor to {}: {e}", path.display());
    }
}

/// The stable id of the journal entry with this cursor: its sequence-number id and number.
fn entry_id(cursor: &str) -> Option<EventId> {
    let mut seqnum_id = None;
    let mut seqnum = None;
    for part in cursor.split(';') {
        if let Some(s) = part.strip_prefix("s=") {
            seqnum_id = u64::from_str_radix(s.get(..16)?, 16).ok();
        } else if let Some(i) = part.strip_prefix("i=") {
            seqnum = u64::from_str_radix(i, 16).ok();
        }
    }
    Some(EventId::new(seqnum_id?, seqnum?))
}

/// A journal field as text: a string, or an array of bytes (journalctl's JSON for values that
/// are not valid UTF-8).
fn field(v: &serde_json::Value, name: &str) -> Option<String> {
    match v.get(name)? {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Array(a) => {
            let bytes: Vec<u8> = a
                .iter()
                .filter_map(|b| b.as_u64().and_then(|b| u8::try_from(b).ok()))
                .collect();
            Some(String::from_utf8_lossy(&bytes).into_owned())
        }
        serde_json::Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// One parsed journal entry: the syslog-style line, its cursor and time.
#[derive(Debug, PartialEq, Eq)]
struct Entry {
    line: String,
    cursor: String,
    time_ns: Option<u64>,
}

fn parse_entry(json: &[u8]) -> Option<Entry> {
    let v: serde_json::Value = serde_json::from_slice(json).ok()?;
    let cursor = field(&v, "__CURSOR")?;
    let message = field(&v, "MESSAGE").unwrap_or_default();
    let ident = field(&v, "SYSLOG_IDENTIFIER")
        .or_else(|| field(&v, "_COMM"))
        .unwrap_or_else(|| "unknown".into());
    let pid = field(&v, "SYSLOG_PID").or_else(|| field(&v, "_PID"));
    let time_ns = field(&v, "__REALTIME_TIMESTAMP")
        .and_then(|t| t.parse::<u64>().ok())
        .map(|us| us.saturating_mul(1000));
    // The shape of an auth.log line, which the login patterns read.
    let line = match pid {
        Some(pid) => format!("{ident}[{pid}]: {message}"),
        None => format!("{ident}: {message}"),
    };
    Some(Entry {
        line,
        cursor,
        time_ns,
    })
}

fn command(opts: &JournalOptions, after: Option<&str>) -> tokio::process::Command {
    let mut c = tokio::process::Command::new(&opts.journalctl);
    c.args(["--follow", "--output=json", "--no-pager", "--all"]);
    if let Some(d) = &opts.directory {
        c.arg("--directory").arg(d);
    }
    match after {
        Some(cursor) => {
            c.arg(format!("--after-cursor={cursor}"));
        }
        None => {
            c.arg("--lines=0");
        }
    }
    // auth (4) and authpriv (10): sshd, PAM, su, sudo. Matches on one field are OR'ed.
    c.args(["SYSLOG_FACILITY=4", "SYSLOG_FACILITY=10"]);
    c.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    c
}

/// Follows the journal until the pipeline is gone, restarting `journalctl` (from the saved
/// cursor) when it exits, e.g. when journald restarts.
pub async fn follow_journal(auth: Arc<AuthLogs>, opts: JournalOptions) {
    let mut backoff = Duration::from_millis(500);
    loop {
        match follow_once(&auth, &opts).await {
            Ok(Stop::PipelineGone) => return,
            Ok(Stop::ReaderExited(why)) => {
                tracing::warn!(
                    "journal: journalctl stopped ({why}); restarting from the saved cursor"
                )
            }
            Err(e) => tracing::warn!("journal: {e}"),
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(30));
    }
}

enum Stop {
    PipelineGone,
    ReaderExited(String),
}

async fn follow_once(auth: &AuthLogs, opts: &JournalOptions) -> std::io::Result<Stop> {
    let after = read_cursor(&opts.cursor_file);
    let mut child = command(opts, after.as_deref()).spawn().map_err(|e| {
        std::io::Error::new(
            e.kind(),
            format!("starting {}: {e}", opts.journalctl.display()),
        )
    })?;
    let Some(stdout) = child.stdout.take() else {
        return Ok(Stop::ReaderExited("no stdout".into()));
    };
    let mut reader = BufReader::new(stdout);
    let mut buf = Vec::new();
    let mut last: Option<String> = after;
    let mut saved = last.clone();
    let mut saved_at = Instant::now();
    let stop = loop {
        // `read_until` keeps what it read when the timeout cancels it: `buf` is cleared only
        // after a whole entry was handled, so nothing is lost at an idle tick.
        let room = MAX_ENTRY.saturating_sub(buf.len() as u64);
        let read = tokio::time::timeout(
            SAVE_EVERY,
            (&mut reader).take(room).read_until(b'\n', &mut buf),
        )
        .await;
        let n = match read {
            Err(_) => {
                // Idle: save what was read since the last save.
                if last != saved {
                    if let Some(c) = &last {
                        save_cursor(&opts.cursor_file, c);
                    }
                    saved = last.clone();
                    saved_at = Instant::now();
                }
                continue;
            }
            Ok(r) => r?,
        };
        if buf.last() != Some(&b'\n') {
            if (buf.len() as u64) >= MAX_ENTRY {
                // Longer than MAX_ENTRY: skip the rest of it in bounded reads, count it.
                auth.drops
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                tracing::warn!("journal: an entry longer than {MAX_ENTRY} bytes skipped");
                loop {
                    buf.clear();
                    let n = (&mut reader)
                        .take(MAX_ENTRY)
                        .read_until(b'\n', &mut buf)
                        .await?;
                    if n == 0 || buf.last() == Some(&b'\n') {
                        break;
                    }
                }
                buf.clear();
                continue;
            }
            if n != 0 {
                continue; // the end of the output inside an entry: the next read says 0
            }
            let status = child.wait().await?;
            let mut err = String::new();
            if let Some(mut e) = child.stderr.take() {
                let _ = e.read_to_string(&mut err).await;
            }
            break Stop::ReaderExited(format!("{status}: {}", err.trim()));
        }
        let entry = parse_entry(&buf);
        buf.clear();
        let Some(entry) = entry else {
            continue;
        };
        let stable = entry_id(&entry.cursor).map(|id| (id, entry.time_ns.unwrap_or(0)));
        let stable = stable.filter(|(_, t)| *t > 0);
        let before = auth.produced();
        if !auth.entry(&entry.line, "journal", None, stable) {
            break Stop::PipelineGone;
        }
        let became_event = auth.produced() != before;
        last = Some(entry.cursor);
        if became_event || saved_at.elapsed() >= SAVE_EVERY {
            if let Some(c) = &last {
                save_cursor(&opts.cursor_file, c);
            }
            saved = last.clone();
            saved_at = Instant::now();
        }
    };
    if last != saved {
        if let Some(c) = &last {
            save_cursor(&opts.cursor_file, c);
        }
    }
    Ok(stop)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_become_auth_log_lines_with_stable_ids() {
        let json = br#"{"__CURSOR":"s=739ad463348b4ceca5a9e69c95a3c93f;i=4ece7;b=6c7c;m=1;t=2;x=3","__REALTIME_TIMESTAMP":"1700000000123456","SYSLOG_IDENTIFIER":"sshd","_PID":"812","MESSAGE":"Failed password for root from 203.0.113.9 port 50122 ssh2"}"#;
        let e = parse_entry(json).expect("entry");
        assert_eq!(
            e.line,
            "sshd[812]: Failed password for root from 203.0.113.9 port 50122 ssh2"
        );
        assert_eq!(e.time_ns, Some(1_700_000_000_123_456_000));
        let p = crate::parse_auth_line(&e.line).expect("a login attempt");
        assert_eq!(p.user, "root");
        assert_eq!(p.service, "sshd");
        let id = entry_id(&e.cursor).expect("id");
        assert_eq!(id, EventId::new(0x739a_d463_348b_4cec, 0x4ece7));
        // The same entry read again has the same id; the next one another.
        assert_eq!(entry_id(&e.cursor), Some(id.clone()));
        assert_ne!(
            entry_id("s=739ad463348b4ceca5a9e69c95a3c93f;i=4ece8;b=6c7c"),
            Some(id)
        );
    }

    #[test]
    fn binary_messages_and_damaged_input() {
        // journalctl writes values that are not UTF-8 as arrays of bytes.
        let json = br#"{"__CURSOR":"s=00000000000000010000000000000000;i=1","SYSLOG_IDENTIFIER":"sshd","MESSAGE":[73,110,118,97,108,105,100,32,117,115,101,114,32,255,32,102,114,111,109,32,49,50,55,46,48,46,48,46,49]}"#;
        let e = parse_entry(json).expect("entry");
        assert!(
            e.line
                .starts_with("sshd: Invalid user \u{fffd} from 127.0.0.1"),
            "{}",
            e.line
        );
        assert!(parse_entry(b"{\"MESSAGE\":\"no cursor\"}").is_none());
        assert!(parse_entry(b"not json").is_none());
        assert_eq!(entry_id("garbage"), None);
        assert_eq!(entry_id("s=zz;i=1"), None);
    }

    /// The reader against a `journalctl` that writes an entry longer than [`MAX_ENTRY`]
    /// (skipped whole, counted as a drop), then a login: the login still becomes an event,
    /// the cursor is saved, and a restart of the reader resumes after it.
    #[tokio::test]
    async fn an_oversized_entry_is_skipped_and_counted_and_the_next_one_read() {
        use std::os::unix::fs::PermissionsExt;
        let d = tempfile::tempdir().expect("tmp");
        let big = d.path().join("big.json");
        let login = r#"{"__CURSOR":"s=00000000000000020000000000000000;i=7","__REALTIME_TIMESTAMP":"1700000000000000","SYSLOG_IDENTIFIER":"sshd","_PID":"9","MESSAGE":"Invalid user mallory from 192.0.2.4 port 2222"}"#;
        let mut huge =
            String::from(r#"{"__CURSOR":"s=00000000000000020000000000000000;i=6","MESSAGE":""#);
        huge.push_str(&"A".repeat(MAX_ENTRY as usize + 10));
        huge.push_str("\"}\n");
        huge.push_str(login);
        huge.push('\n');
        std::fs::write(&big, huge).expect("entries");
        let fake = d.path().join("journalctl");
        // Prints the entries once (a journalctl that exits is restarted by the follower).
        std::fs::write(
            &fake,
            format!(
                "#!/bin/sh\ncase \"$*\" in *after-cursor*) exec sleep 30 ;; esac\ncat {}\nexec sleep 30\n",
                big.display()
            ),
        )
        .expect("script");
        std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        let (tx, rx) = std::sync::mpsc::sync_channel(16);
        let auth = AuthLogs::new(std::sync::Arc::default(), 1, tx);
        let opts = JournalOptions {
            journalctl: fake,
            cursor_file: d.path().join("cursor"),
            directory: None,
        };
        let task = tokio::spawn(follow_journal(auth.clone(), opts.clone()));
        let ev = tokio::task::spawn_blocking(move || rx.recv_timeout(Duration::from_secs(10)))
            .await
            .expect("join")
            .expect("the login after the oversized entry");
        assert_eq!(
            ev.event.auth.as_ref().map(|a| a.user.as_str()),
            Some("mallory")
        );
        assert_eq!(ev.event.id, EventId::new(2, 7));
        assert_eq!(auth.drops.load(std::sync::atomic::Ordering::Relaxed), 1);
        assert_eq!(
            read_cursor(&opts.cursor_file).as_deref(),
            Some("s=00000000000000020000000000000000;i=7")
        );
        task.abort();
    }

    #[test]
    fn the_cursor_file_round_trips_and_damage_is_ignored() {
        let d = tempfile::tempdir().expect("tmp");
        let p = d.path().join("sub/journal.cursor");
        assert_eq!(read_cursor(&p), None);
        save_cursor(&p, "s=abc;i=2");
        assert_eq!(read_cursor(&p).as_deref(), Some("s=abc;i=2"));
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&p).expect("meta").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        std::fs::write(&p, "garbage with spaces").expect("w");
        assert_eq!(read_cursor(&p), None);
    }
}
