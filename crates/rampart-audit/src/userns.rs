//! `rampart harden host --userns`: turn on Docker's user-namespace remapping (CIS 2.9).
//!
//! Three edits, planned first and written only on request:
//!
//! * daemon.json gets `"userns-remap": "<spec>"`. The edit is textual: every other byte of the
//!   file stays as it was (serde_json would reorder keys and reformat), and the result is parsed
//!   again and compared with the original object plus the one key before anything is written.
//!   A malformed file is refused with file:line:column, never overwritten.
//! * /etc/subuid and /etc/subgid get a 65536-id range for the remap user and group, starting at
//!   100000 or higher and overlapping no existing range (of any owner). An existing range of the
//!   user is reused: dockerd uses every range the user has.
//! * Nothing else: dockerd must be restarted by the operator, then [`root_mapping`] verifies
//!   that a container's root maps into the high range.
//!
//! Files are written atomically (a new file in the same directory, fsync, rename, fsync of the
//! directory), keeping the mode and owner of the file they replace; new subuid/subgid files are
//! 0644 root. A target that is a symlink or not a regular file is refused.
//!
//! Peer behaviour this follows (moby `daemon/config`, `pkg/idtools`, shadow-utils `subid(5)`):
//! dockerd refuses to start when a directive is both a flag and a daemon.json key, so a
//! `--userns-remap` flag on the running dockerd means daemon.json is left alone; `default` means
//! user and group `dockremap` (dockerd creates them); `USER` alone means group `USER`; dockerd
//! looks up both /etc/subuid and /etc/subgid by the USER's name (never the group's); subid
//! lines are `owner:start:count`.

use std::fs;
use std::io::Write as _;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use serde::Serialize;
use serde_json::Value;

/// Default subordinate uid file.
pub const SUBUID: &str = "/etc/subuid";
/// Default subordinate gid file.
pub const SUBGID: &str = "/etc/subgid";
/// Lowest first id of a range this module allocates.
pub const RANGE_MIN: u32 = 100_000;
/// Length of a range this module allocates (a full 16-bit uid space, as dockerd expects).
pub const RANGE_LEN: u32 = 65_536;

const KEY: &str = "userns-remap";

/// Why planning or applying the remapping failed; each names the file (and line) at fault.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum UsernsError {
    /// A file could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// daemon.json is not valid JSON or not an object.
    #[error("{}:{line}:{column}: {message}", path.display())]
    Json {
        path: PathBuf,
        line: usize,
        column: usize,
        message: String,
    },
    /// A subuid/subgid line is malformed.
    #[error("{}:{line}: {message}", path.display())]
    SubId {
        path: PathBuf,
        line: usize,
        message: String,
    },
    /// The target exists but is not a regular file (a symlink, a directory, a device).
    #[error("{}: {what}; refusing to replace it", path.display())]
    NotRegular { path: PathBuf, what: &'static str },
    /// daemon.json or dockerd's flags already configure a different remapping, or another
    /// spelling of the key that dockerd would reject.
    #[error("{}: {message}", path.display())]
    Conflict { path: PathBuf, message: String },
    /// The remap spec is not one this tool can configure.
    #[error("userns-remap {spec:?}: {message}")]
    Spec { spec: String, message: String },
    /// No free range of 65536 ids is left at or above 100000.
    #[error("{}: no free range of {RANGE_LEN} ids at or above {RANGE_MIN}", path.display())]
    Exhausted { path: PathBuf },
    /// dockerd did not answer `--verify`'s question (`what`: `docker info`, `listing
    /// containers`, `inspecting container NAME`).
    #[error("{what}")]
    Docker {
        what: String,
        #[source]
        source: rampart_container::ContainerError,
    },
}

impl UsernsError {
    fn io(path: &Path, source: std::io::Error) -> Self {
        UsernsError::Io {
            path: path.to_path_buf(),
            source,
        }
    }

    /// True when the user's input is wrong (a malformed or conflicting file, a bad spec).
    pub fn is_bad_input(&self) -> bool {
        !matches!(self, UsernsError::Io { .. } | UsernsError::Docker { .. })
    }
}

/// The user and group named by a `userns-remap` value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RemapSpec {
    /// The value written to daemon.json.
    pub value: String,
    pub user: String,
    pub group: String,
}

impl RemapSpec {
    /// Parses `default`, `USER` or `USER:GROUP` (names only: subid files are matched by name).
    pub fn parse(spec: &str) -> Result<RemapSpec, UsernsError> {
        let bad = |m: &str| UsernsError::Spec {
            spec: spec.to_string(),
            message: m.to_string(),
        };
        if spec == "default" {
            return Ok(RemapSpec {
                value: spec.into(),
                user: "dockremap".into(),
                group: "dockremap".into(),
            });
        }
        let (user, group) = match spec.split_once(':') {
            Some((u, g)) => (u, g),
            None => (spec, spec),
        };
        let valid = |n: &str| {
            !n.is_empty()
                && !n.bytes().all(|b| b.is_ascii_digit())
                && n.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
        };
        if !valid(user) || !valid(group) {
            return Err(bad(
                "expected default, USER or USER:GROUP with user and group names (not numeric ids)",
            ));
        }
        Ok(RemapSpec {
            value: spec.into(),
            user: user.into(),
            group: group.into(),
        })
    }
}

/// What happens to daemon.json.
#[derive(Debug, Clone, Serialize)]
pub struct DaemonJsonPlan {
    pub path: PathBuf,
    /// The file as it is; `None` when it does not exist.
    pub before: Option<String>,
    /// The file to write; `None` when nothing changes.
    pub after: Option<String>,
    /// Why nothing changes, when nothing does.
    pub unchanged_because: Option<String>,
}

/// What happens to one subordinate id file.
#[derive(Debug, Clone, Serialize)]
pub struct SubIdPlan {
    pub path: PathBuf,
    pub owner: String,
    /// The owner's first existing range, reused; or the range allocated.
    pub start: u32,
    pub count: u32,
    /// The line to append; `None` when an existing range is reused.
    pub add_line: Option<String>,
    #[serde(skip)]
    before: Option<String>,
}

/// The whole plan of `rampart harden host --userns`.
#[derive(Debug, Clone, Serialize)]
pub struct UsernsPlan {
    pub spec: RemapSpec,
    pub daemon_json: DaemonJsonPlan,
    pub subuid: SubIdPlan,
    pub subgid: SubIdPlan,
}

/// Inputs of [`plan`].
#[derive(Debug, Clone)]
pub struct UsernsOptions {
    pub spec: String,
    pub daemon_json: PathBuf,
    pub subuid: PathBuf,
    pub subgid: PathBuf,
    /// The running dockerd's `--userns-remap` flag value, if it has one.
    pub flag_remap: Option<String>,
}

/// Reads `path` when it is a regular file; `None` when absent; refuses anything else.
fn read_regular(path: &Path) -> Result<Option<String>, UsernsError> {
    match fs::symlink_metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(UsernsError::io(path, e)),
        Ok(m) if m.file_type().is_symlink() => {
            return Err(UsernsError::NotRegular {
                path: path.into(),
                what: "is a symlink",
            })
        }
        Ok(m) if !m.is_file() => {
            return Err(UsernsError::NotRegular {
                path: path.into(),
                what: "is not a regular file",
            })
        }
        Ok(_) => {}
    }
    fs::read_to_string(path)
        .map(Some)
        .map_err(|e| UsernsError::io(path, e))
}

/// Plans the three edits without writing anything.
pub fn plan(opts: &UsernsOptions) -> Result<UsernsPlan, UsernsError> {
    let before = read_regular(&opts.daemon_json)?;
    let mut spec_value = opts.spec.clone();
    let daemon_json = match &opts.flag_remap {
        Some(flag) => {
            // dockerd refuses to start with a directive both as a flag and a key.
            if let Some(text) = &before {
                let obj = parse_object(&opts.daemon_json, text)?;
                if obj.keys().any(|k| k.eq_ignore_ascii_case(KEY)) {
                    return Err(UsernsError::Conflict {
                        path: opts.daemon_json.clone(),
                        message: format!(
                            "dockerd runs with --userns-remap {flag} and this file sets {KEY} too: dockerd will refuse to start; remove one"
                        ),
                    });
                }
            }
            spec_value = flag.clone();
            DaemonJsonPlan {
                path: opts.daemon_json.clone(),
                before,
                after: None,
                unchanged_because: Some(format!(
                    "dockerd already runs with --userns-remap {flag} (a daemon.json key as well would stop dockerd from starting)"
                )),
            }
        }
        None => {
            let (after, existing) =
                merge_daemon_json(&opts.daemon_json, before.as_deref(), &opts.spec)?;
            let unchanged_because = existing.map(|v| {
                spec_value = v.clone();
                format!("{KEY} is already set to {v:?}")
            });
            DaemonJsonPlan {
                path: opts.daemon_json.clone(),
                before,
                after,
                unchanged_because,
            }
        }
    };
    let spec = RemapSpec::parse(&spec_value)?;
    if opts.subuid == opts.subgid {
        return Err(UsernsError::Conflict {
            path: opts.subuid.clone(),
            message: "the subuid and subgid files must differ".into(),
        });
    }
    let subuid = plan_subid(&opts.subuid, &spec.user)?;
    // dockerd looks both files up by the user's name (moby `idtools.LoadIdentityMapping`: "no
    // subgid ranges found for user"); the group of USER:GROUP does not name subgid lines.
    let subgid = plan_subid(&opts.subgid, &spec.user)?;
    Ok(UsernsPlan {
        spec,
        daemon_json,
        subuid,
        subgid,
    })
}

fn parse_object(path: &Path, text: &str) -> Result<serde_json::Map<String, Value>, UsernsError> {
    let body = text.strip_prefix('\u{feff}').unwrap_or(text);
    if body.trim().is_empty() {
        // dockerd treats an empty daemon.json as no configuration.
        return Ok(serde_json::Map::new());
    }
    match serde_json::from_str::<Value>(body) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(UsernsError::Json {
            path: path.into(),
            line: 1,
            column: 1,
            message: "daemon.json must be a JSON object".into(),
        }),
        Err(e) => Err(UsernsError::Json {
            path: path.into(),
            line: e.line(),
            column: e.column(),
            message: e.to_string(),
        }),
    }
}

/// Adds `"userns-remap": spec` to daemon.json `text` (`None`: no file). Returns the new text
/// (`None` when unchanged) and the value already set, if any. Every other byte is kept: the
/// key is inserted before the object's closing brace with the indentation of the first key.
pub fn merge_daemon_json(
    path: &Path,
    text: Option<&str>,
    spec: &str,
) -> Result<(Option<String>, Option<String>), UsernsError> {
    RemapSpec::parse(spec)?;
    let original = text.unwrap_or("");
    let obj = parse_object(path, original)?;
    if let Some(v) = obj.get(KEY) {
        let v = v.as_str().ok_or_else(|| UsernsError::Conflict {
            path: path.into(),
            message: format!("{KEY} is {v}, not a string: fix it by hand"),
        })?;
        if v != spec && spec != "default" {
            return Err(UsernsError::Conflict {
                path: path.into(),
                message: format!(
                    "{KEY} is already {v:?}; not replacing it with {spec:?} (edit it by hand)"
                ),
            });
        }
        return Ok((None, Some(v.to_string())));
    }
    if let Some(k) = obj.keys().find(|k| k.eq_ignore_ascii_case(KEY)) {
        return Err(UsernsError::Conflict {
            path: path.into(),
            message: format!("key {k:?} is not a directive dockerd knows (keys are case-sensitive): rename it to {KEY:?} or remove it"),
        });
    }
    let entry = format!("\"{KEY}\": {}", Value::String(spec.to_string()));
    let (bom, body) = match original.strip_prefix('\u{feff}') {
        Some(b) => ("\u{feff}", b),
        None => ("", original),
    };
    let new = if obj.is_empty() {
        format!("{bom}{{\n  {entry}\n}}\n")
    } else {
        // Valid JSON object text: its last non-whitespace character is the closing brace, and
        // the last non-whitespace character before that ends the last member's value.
        let close = body.trim_end().len() - 1;
        let last = body[..close].trim_end().len();
        let indent = first_key_indent(body);
        let sep = if indent.is_empty() {
            " ".to_string()
        } else {
            format!("\n{indent}")
        };
        format!("{bom}{},{sep}{entry}{}", &body[..last], &body[last..])
    };
    // Proof of the edit: the new text is the old object plus exactly the one key.
    let mut want = obj;
    want.insert(KEY.into(), Value::String(spec.to_string()));
    if parse_object(path, &new)? != want {
        return Err(UsernsError::Conflict {
            path: path.into(),
            message: "inserting the key would change other keys; add it by hand".into(),
        });
    }
    Ok((Some(new), None))
}

/// The whitespace before the first key when it starts its own line; empty otherwise.
fn first_key_indent(body: &str) -> String {
    let Some(open) = body.find('{') else {
        return String::new();
    };
    let rest = &body[open + 1..];
    let ws: &str = &rest[..rest.len() - rest.trim_start().len()];
    match ws.rfind('\n') {
        Some(i) => ws[i + 1..].to_string(),
        None => String::new(),
    }
}

/// One `owner:start:count` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubIdRange {
    pub owner: String,
    pub start: u32,
    pub count: u32,
}

/// Parses a subuid/subgid file (subid(5)); blank lines and `#` comments are skipped.
pub fn parse_subid(path: &Path, text: &str) -> Result<Vec<SubIdRange>, UsernsError> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let l = line.trim();
        if l.is_empty() || l.starts_with('#') {
            continue;
        }
        let bad = |m: &str| UsernsError::SubId {
            path: path.into(),
            line: i + 1,
            message: format!("{m}: {line:?}"),
        };
        let f: Vec<&str> = l.split(':').collect();
        let [owner, start, count] = f[..] else {
            return Err(bad("expected owner:start:count"));
        };
        let start: u32 = start.parse().map_err(|_| bad("start is not a number"))?;
        let count: u32 = count.parse().map_err(|_| bad("count is not a number"))?;
        if owner.is_empty() || count == 0 {
            return Err(bad("empty owner or zero count"));
        }
        if u64::from(start) + u64::from(count) > u64::from(u32::MAX) {
            return Err(bad("range ends past 4294967295"));
        }
        out.push(SubIdRange {
            owner: owner.to_string(),
            start,
            count,
        });
    }
    Ok(out)
}

/// The owner's first range, or the lowest start >= [`RANGE_MIN`] of a free [`RANGE_LEN`] range.
/// `None` when the id space is exhausted. The `bool` says the owner's range was reused.
pub fn allocate(ranges: &[SubIdRange], owner: &str) -> Option<(u32, bool)> {
    if let Some(r) = ranges.iter().find(|r| r.owner == owner) {
        return Some((r.start, true));
    }
    let mut sorted: Vec<(u64, u64)> = ranges
        .iter()
        .map(|r| (u64::from(r.start), u64::from(r.start) + u64::from(r.count)))
        .collect();
    sorted.sort_unstable();
    let mut cand = u64::from(RANGE_MIN);
    for (s, e) in sorted {
        if cand + u64::from(RANGE_LEN) <= s {
            break;
        }
        cand = cand.max(e);
    }
    // The last id (4294967295) is reserved as "no id".
    if cand + u64::from(RANGE_LEN) > u64::from(u32::MAX) {
        return None;
    }
    u32::try_from(cand).ok().map(|c| (c, false))
}

fn plan_subid(path: &Path, owner: &str) -> Result<SubIdPlan, UsernsError> {
    let before = read_regular(path)?;
    let ranges = parse_subid(path, before.as_deref().unwrap_or(""))?;
    let (start, reused) =
        allocate(&ranges, owner).ok_or_else(|| UsernsError::Exhausted { path: path.into() })?;
    let count = if reused {
        ranges
            .iter()
            .find(|r| r.owner == owner)
            .map_or(RANGE_LEN, |r| r.count)
    } else {
        RANGE_LEN
    };
    Ok(SubIdPlan {
        path: path.into(),
        owner: owner.into(),
        start,
        count,
        add_line: (!reused).then(|| format!("{owner}:{start}:{RANGE_LEN}")),
        before,
    })
}

impl SubIdPlan {
    fn new_text(&self) -> Option<String> {
        let line = self.add_line.as_ref()?;
        let mut t = self.before.clone().unwrap_or_default();
        if !t.is_empty() && !t.ends_with('\n') {
            t.push('\n');
        }
        t.push_str(line);
        t.push('\n');
        Some(t)
    }
}

impl UsernsPlan {
    /// True when applying would write nothing.
    pub fn is_noop(&self) -> bool {
        self.daemon_json.after.is_none()
            && self.subuid.add_line.is_none()
            && self.subgid.add_line.is_none()
    }

    /// A unified-style diff of daemon.json (whole file context; it is small).
    pub fn daemon_json_diff(&self) -> Option<String> {
        let after = self.daemon_json.after.as_ref()?;
        let before = self.daemon_json.before.as_deref().unwrap_or("");
        let p = self.daemon_json.path.display();
        let mut out = format!("--- {p}\n+++ {p}\n");
        let b: Vec<&str> = before.lines().collect();
        let a: Vec<&str> = after.lines().collect();
        // Common prefix and suffix; the middle is the change (the edit is one insertion).
        let pre = b.iter().zip(&a).take_while(|(x, y)| x == y).count();
        let suf = b[pre..]
            .iter()
            .rev()
            .zip(a[pre..].iter().rev())
            .take_while(|(x, y)| x == y)
            .count();
        for l in &b[..pre] {
            out.push_str(&format!(" {l}\n"));
        }
        for l in &b[pre..b.len() - suf] {
            out.push_str(&format!("-{l}\n"));
        }
        for l in &a[pre..a.len() - suf] {
            out.push_str(&format!("+{l}\n"));
        }
        for l in &b[b.len() - suf..] {
            out.push_str(&format!(" {l}\n"));
        }
        Some(out)
    }

    /// Writes the planned changes, each file atomically. Returns the files written.
    pub fn apply(&self) -> Result<Vec<PathBuf>, UsernsError> {
        let mut written = Vec::new();
        // Re-check that nothing changed since planning (a concurrent edit is not overwritten).
        for (path, before) in [
            (&self.daemon_json.path, &self.daemon_json.before),
            (&self.subuid.path, &self.subuid.before),
            (&self.subgid.path, &self.subgid.before),
        ] {
            if read_regular(path)? != *before {
                return Err(UsernsError::Conflict {
                    path: path.clone(),
                    message: "changed while planning; run again".into(),
                });
            }
        }
        if let Some(after) = &self.daemon_json.after {
            write_atomic(&self.daemon_json.path, after.as_bytes(), 0o644)?;
            written.push(self.daemon_json.path.clone());
        }
        for s in [&self.subuid, &self.subgid] {
            if let Some(t) = s.new_text() {
                write_atomic(&s.path, t.as_bytes(), 0o644)?;
                written.push(s.path.clone());
            }
        }
        Ok(written)
    }
}

/// Replaces `path` with `data`: a new file in the same directory (mode and owner of the file it
/// replaces, else `new_mode` and root), fsync, rename over `path`, fsync of the directory.
pub fn write_atomic(path: &Path, data: &[u8], new_mode: u32) -> Result<(), UsernsError> {
    let (mode, owner) = match fs::symlink_metadata(path) {
        Ok(m) if m.is_file() => (m.permissions().mode() & 0o7777, Some((m.uid(), m.gid()))),
        Ok(_) => {
            return Err(UsernsError::NotRegular {
                path: path.into(),
                what: "is not a regular file",
            })
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => (new_mode, Some((0, 0))),
        Err(e) => return Err(UsernsError::io(path, e)),
    };
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let tmp = dir.join(format!(".{name}.rampart-{}-{nanos}", std::process::id()));
    let res = (|| {
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(|e| UsernsError::io(&tmp, e))?;
        f.write_all(data).map_err(|e| UsernsError::io(&tmp, e))?;
        if let Some((uid, gid)) = owner {
            // Only root can give a file away; elsewhere (tests as a user) keep our own.
            if let Err(e) = std::os::unix::fs::fchown(&f, Some(uid), Some(gid)) {
                if e.kind() != std::io::ErrorKind::PermissionDenied {
                    return Err(UsernsError::io(&tmp, e));
                }
            }
        }
        // After chown, which clears set-id bits.
        f.set_permissions(fs::Permissions::from_mode(mode))
            .map_err(|e| UsernsError::io(&tmp, e))?;
        f.sync_all().map_err(|e| UsernsError::io(&tmp, e))?;
        fs::rename(&tmp, path).map_err(|e| UsernsError::io(path, e))?;
        if let Ok(d) = fs::File::open(&dir) {
            let _ = d.sync_all();
        }
        Ok(())
    })();
    if res.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    res
}

/// What `/proc/PID/uid_map` says container root (uid 0) is on the host; `None` when uid 0 is
/// not mapped or the file cannot be read.
pub fn root_mapping(proc_root: &Path, pid: u32) -> Option<u32> {
    let t = fs::read_to_string(proc_root.join(pid.to_string()).join("uid_map")).ok()?;
    t.lines().find_map(|l| {
        let f: Vec<u64> = l
            .split_whitespace()
            .filter_map(|x| x.parse().ok())
            .collect();
        match f[..] {
            [inside, outside, count] if inside == 0 && count > 0 => u32::try_from(outside).ok(),
            _ => None,
        }
    })
}

/// What turning remapping on changes for what already exists on the host, for the operator.
pub fn consequences(spec: &RemapSpec, subuid_start: u32, subgid_start: u32) -> Vec<String> {
    vec![
        format!(
            "container root becomes host uid {subuid_start} (gid {subgid_start}); container uid N becomes {subuid_start}+N"
        ),
        format!(
            "dockerd keeps remapped images, containers and volumes in a new subdirectory of its data-root, /var/lib/docker/{subuid_start}.{subgid_start}: existing images, containers and volumes are not visible there; images are pulled (or loaded) again, containers recreated"
        ),
        "files in bind mounts and volumes owned by host uid 0 (or any uid outside the range) are unreadable and unwritable to container root: chown them into the range (e.g. chown -R "
            .to_string()
            + &format!("{subuid_start}:{subgid_start} DIR) or use --userns=host for that container"),
        "a container opts out with docker run --userns=host (compose: userns_mode: host); --privileged, --pid=host and --network=host containers need it, as do volume drivers unaware of the mapping".into(),
        format!(
            "remap user {:?} and group {:?}{} (its /etc/subuid and /etc/subgid ranges are looked up by the user's name); restart dockerd to apply, then run again with --verify",
            spec.user,
            spec.group,
            if spec.value == "default" {
                " (dockerd creates them)"
            } else {
                " must exist in /etc/passwd and /etc/group"
            }
        ),
    ]
}

/// The `--userns-remap` flag of the running dockerd when it reads `daemon_json` (its
/// `--config-file`, or the default path): a key there as well would stop dockerd starting.
pub fn running_flag(daemon_json: &Path) -> Option<String> {
    use crate::host::daemon::{DaemonConfig, DAEMON_JSON};
    // An empty path reads no daemon.json: only dockerd's command line is wanted here.
    let cfg = DaemonConfig::load(Path::new(""), Path::new("/proc")).ok()?;
    let reads = cfg
        .flag("config-file", None)
        .last()
        .cloned()
        .unwrap_or_else(|| DAEMON_JSON.to_string());
    let same = Path::new(&reads) == daemon_json
        || matches!(
            (fs::canonicalize(&reads), fs::canonicalize(daemon_json)),
            (Ok(x), Ok(y)) if x == y
        );
    if !same {
        return None;
    }
    cfg.flag("userns-remap", None).last().cloned()
}

impl UsernsPlan {
    /// The plan for people, `#` comment lines and the daemon.json diff: what would change
    /// (`apply`: what will), and what turning remapping on means. Every line ends in `\n`.
    pub fn text(&self, apply: bool) -> String {
        use std::fmt::Write;
        let mut out = String::new();
        let verb = if apply { "" } else { "would " };
        let _ = writeln!(
            out,
            "# user-namespace remapping: userns-remap {:?} (user {}, group {})",
            self.spec.value, self.spec.user, self.spec.group
        );
        match (&self.daemon_json.unchanged_because, self.daemon_json_diff()) {
            (_, Some(diff)) => {
                let _ = writeln!(out, "# daemon.json: {verb}add \"userns-remap\"");
                out.push_str(&diff);
            }
            (Some(why), None) => {
                let _ = writeln!(
                    out,
                    "# {}: unchanged: {why}",
                    self.daemon_json.path.display()
                );
            }
            (None, None) => {}
        }
        for s in [&self.subuid, &self.subgid] {
            let _ = match &s.add_line {
                Some(l) => writeln!(out, "# {}: {verb}append\n+{l}", s.path.display()),
                None => writeln!(
                    out,
                    "# {}: unchanged: {} already has {}:{}:{}",
                    s.path.display(),
                    s.owner,
                    s.owner,
                    s.start,
                    s.count
                ),
            };
        }
        out.push_str("# what changes:\n");
        for c in consequences(&self.spec, self.subuid.start, self.subgid.start) {
            let _ = writeln!(out, "# - {c}");
        }
        out
    }
}

/// `--verify` after dockerd's restart: the daemon (at `socket`) remaps, and the root of each container
/// (`containers`, or every running one) maps into the plan's subuid range. Each finding is
/// handed to `say` as a `PASS`/`FAIL`/`NOTE` line as it is made; returns whether all passed.
pub async fn verify(
    docker: &rampart_container::DockerClient,
    socket: &Path,
    plan: &UsernsPlan,
    containers: &[String],
    mut say: impl FnMut(String),
) -> Result<bool, UsernsError> {
    let docker_err = |what: String| move |source| UsernsError::Docker { what, source };
    let low = plan.subuid.start;
    let high = u64::from(low) + u64::from(plan.subuid.count);
    let info = docker
        .info()
        .await
        .map_err(docker_err("docker info".into()))?;
    let remaps = info
        .security_options
        .as_ref()
        .is_some_and(|o| o.iter().any(|x| x == "name=userns"));
    if !remaps {
        say(format!(
            "FAIL dockerd at {} does not remap (no name=userns in docker info): restart it after --apply",
            socket.display()
        ));
        return Ok(false);
    }
    say("PASS dockerd remaps user namespaces (name=userns in docker info)".into());
    let targets: Vec<String> = if containers.is_empty() {
        docker
            .list_containers(false)
            .await
            .map_err(docker_err("listing containers".into()))?
            .into_iter()
            .filter_map(|c| c.id)
            .collect()
    } else {
        containers.to_vec()
    };
    if targets.is_empty() {
        say("NOTE no running container to check: start one and run --verify again".into());
    }
    let mut all = true;
    for t in &targets {
        let i = docker
            .inspect_container(t)
            .await
            .map_err(docker_err(format!("inspecting container {t}")))?;
        let name = i
            .name
            .as_deref()
            .map_or(t.as_str(), |n| n.trim_start_matches('/'));
        let pid = i
            .state
            .as_ref()
            .and_then(|s| s.pid)
            .and_then(|p| u32::try_from(p).ok())
            .filter(|p| *p > 0);
        let Some(pid) = pid else {
            say(format!("FAIL {name}: not running"));
            all = false;
            continue;
        };
        let userns_host = i
            .host_config
            .as_ref()
            .and_then(|h| h.userns_mode.as_deref())
            == Some("host");
        match root_mapping(Path::new("/proc"), pid) {
            Some(uid) if u64::from(uid) >= u64::from(low) && u64::from(uid) < high => say(format!(
                "PASS {name}: root is host uid {uid} (/proc/{pid}/uid_map), in {}'s range {low}-{}",
                plan.subuid.owner,
                high - 1
            )),
            Some(uid) => {
                let why = if userns_host {
                    " (it runs with --userns=host)"
                } else {
                    ""
                };
                say(format!(
                    "FAIL {name}: root is host uid {uid} (/proc/{pid}/uid_map), outside {low}-{}{why}",
                    high - 1
                ));
                all = false;
            }
            None => {
                say(format!(
                    "FAIL {name}: /proc/{pid}/uid_map does not map uid 0"
                ));
                all = false;
            }
        }
    }
    Ok(all)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests")]
mod tests {
    use super::*;

    fn p() -> PathBuf {
        PathBuf::from("/etc/docker/daemon.json")
    }

    #[test]
    fn keys_and_formatting_are_kept() {
        let text = "{\n    \"log-driver\": \"json-file\",\n    \"log-opts\": {\"max-size\": \"10m\"},\n    \"zeta\": [1, 2],\n    \"alpha\": true\n}\n";
        let (new, existing) = merge_daemon_json(&p(), Some(text), "default").unwrap();
        assert!(existing.is_none());
        let new = new.unwrap();
        assert_eq!(
            new,
            "{\n    \"log-driver\": \"json-file\",\n    \"log-opts\": {\"max-size\": \"10m\"},\n    \"zeta\": [1, 2],\n    \"alpha\": true,\n    \"userns-remap\": \"default\"\n}\n"
        );
        // One-line file, no indentation.
        let (new, _) = merge_daemon_json(&p(), Some("{\"debug\":true}"), "default").unwrap();
        assert_eq!(
            new.unwrap(),
            "{\"debug\":true, \"userns-remap\": \"default\"}"
        );
        // No file, empty file, empty object.
        for t in [None, Some(""), Some("  \n"), Some("{}"), Some("{ }\n")] {
            let (new, _) = merge_daemon_json(&p(), t, "default").unwrap();
            let v: Value = serde_json::from_str(&new.unwrap()).unwrap();
            assert_eq!(v, serde_json::json!({"userns-remap": "default"}));
        }
        // BOM kept.
        let (new, _) = merge_daemon_json(&p(), Some("\u{feff}{\"a\":1}"), "x:y").unwrap();
        assert!(new
            .unwrap()
            .starts_with("\u{feff}{\"a\":1, \"userns-remap\": \"x:y\"}"));
    }

    #[test]
    fn tricky_values_survive_the_textual_edit() {
        // Braces and the key's name inside strings, nested objects last, trailing whitespace.
        let text = "{\"a\": \"}{\\\"userns-remap\\\"\", \"b\": {\"c\": {\"d\": []}}}  \n\n";
        let (new, existing) = merge_daemon_json(&p(), Some(text), "default").unwrap();
        assert!(existing.is_none());
        let v: Value = serde_json::from_str(&new.unwrap()).unwrap();
        assert_eq!(v["b"]["c"]["d"], serde_json::json!([]));
        assert_eq!(v["a"], "}{\"userns-remap\"");
        assert_eq!(v[KEY], "default");
    }

    #[test]
    fn an_existing_remap_is_reported_not_duplicated() {
        let text = "{\"userns-remap\": \"default\", \"debug\": true}";
        let (new, existing) = merge_daemon_json(&p(), Some(text), "default").unwrap();
        assert!(new.is_none());
        assert_eq!(existing.as_deref(), Some("default"));
        // A different explicit user is kept and used (with the default request) ...
        let text = "{\"userns-remap\": \"alice:staff\"}";
        let (new, existing) = merge_daemon_json(&p(), Some(text), "default").unwrap();
        assert!(new.is_none());
        assert_eq!(existing.as_deref(), Some("alice:staff"));
        // ... but never silently replaced by another explicit one.
        let e = merge_daemon_json(&p(), Some(text), "bob").unwrap_err();
        assert!(e.to_string().contains("already \"alice:staff\""), "{e}");
        // Duplicate keys: Go's encoding/json and serde_json both take the last; no third added.
        let text = "{\"userns-remap\": \"a\", \"userns-remap\": \"default\"}";
        let (new, existing) = merge_daemon_json(&p(), Some(text), "default").unwrap();
        assert!(new.is_none());
        assert_eq!(existing.as_deref(), Some("default"));
        // Another case: dockerd's directive lookup is case-sensitive and rejects it.
        let e = merge_daemon_json(&p(), Some("{\"Userns-Remap\": \"default\"}"), "default")
            .unwrap_err();
        assert!(e.to_string().contains("case-sensitive"), "{e}");
        // Not a string.
        assert!(merge_daemon_json(&p(), Some("{\"userns-remap\": true}"), "default").is_err());
    }

    #[test]
    fn malformed_daemon_json_is_refused_with_its_position_and_not_written() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("daemon.json");
        let bad = "{\n  \"debug\": true,\n  \"hosts\": [\"unix:///x\",]\n}\n";
        fs::write(&path, bad).unwrap();
        let opts = UsernsOptions {
            spec: "default".into(),
            daemon_json: path.clone(),
            subuid: dir.path().join("subuid"),
            subgid: dir.path().join("subgid"),
            flag_remap: None,
        };
        let e = plan(&opts).unwrap_err();
        let s = e.to_string();
        assert!(s.starts_with(&format!("{}:3:", path.display())), "{s}");
        assert!(e.is_bad_input());
        assert_eq!(fs::read_to_string(&path).unwrap(), bad);
        // Trailing garbage, a non-object, comments (dockerd's Go decoder refuses them too).
        for t in ["{} x", "[1]", "{\"a\":1} // c", "{\"a\":1,}"] {
            assert!(merge_daemon_json(&p(), Some(t), "default").is_err(), "{t}");
        }
        assert!(!dir.path().join("subuid").exists());
    }

    #[test]
    fn symlinks_and_non_regular_files_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("real.json");
        fs::write(&real, "{}").unwrap();
        let link = dir.path().join("daemon.json");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        let mut opts = UsernsOptions {
            spec: "default".into(),
            daemon_json: link,
            subuid: dir.path().join("subuid"),
            subgid: dir.path().join("subgid"),
            flag_remap: None,
        };
        assert!(matches!(
            plan(&opts).unwrap_err(),
            UsernsError::NotRegular { .. }
        ));
        opts.daemon_json = dir.path().to_path_buf();
        assert!(matches!(
            plan(&opts).unwrap_err(),
            UsernsError::NotRegular { .. }
        ));
        opts.daemon_json = real.clone();
        opts.subuid = dir.path().join("subuid-link");
        std::os::unix::fs::symlink("/etc/passwd", &opts.subuid).unwrap();
        assert!(matches!(
            plan(&opts).unwrap_err(),
            UsernsError::NotRegular { .. }
        ));
        opts.daemon_json = PathBuf::from("/dev/null");
        assert!(plan(&opts).is_err());
        // write_atomic refuses too.
        assert!(write_atomic(dir.path(), b"x", 0o644).is_err());
        assert_eq!(fs::read_to_string(&real).unwrap(), "{}");
    }

    #[test]
    fn a_flag_on_dockerd_leaves_daemon_json_alone() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("daemon.json");
        fs::write(&path, "{\"debug\": true}").unwrap();
        let mut opts = UsernsOptions {
            spec: "default".into(),
            daemon_json: path.clone(),
            subuid: dir.path().join("subuid"),
            subgid: dir.path().join("subgid"),
            flag_remap: Some("nobody:nogroup".into()),
        };
        let pl = plan(&opts).unwrap();
        assert!(pl.daemon_json.after.is_none());
        assert_eq!(pl.subuid.owner, "nobody");
        // dockerd reads subgid ranges by the user's name too.
        assert_eq!(pl.subgid.owner, "nobody");
        fs::write(&path, "{\"userns-remap\": \"default\"}").unwrap();
        assert!(matches!(
            plan(&opts).unwrap_err(),
            UsernsError::Conflict { .. }
        ));
        opts.flag_remap = None;
        assert!(plan(&opts).unwrap().daemon_json.after.is_none());
    }

    fn r(owner: &str, start: u32, count: u32) -> SubIdRange {
        SubIdRange {
            owner: owner.into(),
            start,
            count,
        }
    }

    #[test]
    fn allocation_avoids_every_existing_range_and_starts_high() {
        assert_eq!(allocate(&[], "dockremap"), Some((100_000, false)));
        // Ranges below 100000 don't matter; one overlapping the start pushes past it.
        assert_eq!(
            allocate(&[r("a", 1000, 1000), r("b", 90_000, 20_000)], "x"),
            Some((110_000, false))
        );
        // The usual layout: users at 100000, 165536, ...; pick the next.
        let used = [r("alice", 100_000, 65_536), r("bob", 165_536, 65_536)];
        assert_eq!(allocate(&used, "dockremap"), Some((231_072, false)));
        // A gap big enough between ranges is used; a smaller one is not; unsorted input.
        let used = [
            r("c", 400_000, 10),
            r("a", 100_000, 65_536),
            r("b", 300_000, 65_536),
        ];
        assert_eq!(allocate(&used, "x"), Some((165_536, false)));
        let used = [r("a", 100_000, 65_536), r("b", 200_000, 65_536)];
        assert_eq!(allocate(&used, "x"), Some((265_536, false)));
        // The user's own range is reused, wherever it is.
        let used = [r("a", 100_000, 65_536), r("dockremap", 50_000, 1000)];
        assert_eq!(allocate(&used, "dockremap"), Some((50_000, true)));
        // Exhausted.
        assert_eq!(allocate(&[r("a", 100_000, u32::MAX - 100_000)], "x"), None);
        // Every allocation is disjoint from every existing range.
        let used = [
            r("a", 100_000, 1),
            r("b", 100_002, 65_536),
            r("c", 165_540, 3),
        ];
        let (s, _) = allocate(&used, "x").unwrap();
        for u in &used {
            assert!(
                s >= u.start + u.count || s + RANGE_LEN <= u.start,
                "{s} {u:?}"
            );
        }
        assert!(s >= RANGE_MIN);
    }

    #[test]
    fn subid_files_parse_strictly_and_name_the_line() {
        let path = PathBuf::from("/etc/subuid");
        let ok = parse_subid(&path, "# c\n\nalice:100000:65536\n1000:165536:65536\n").unwrap();
        assert_eq!(ok.len(), 2);
        for (t, line) in [
            ("a:1:2\nb:x:3\n", 2),
            ("a:1\n", 1),
            ("a:1:2:3\n", 1),
            ("a:1:0\n", 1),
            ("a:4294967295:2\n", 1),
            ("a:-1:2\n", 1),
        ] {
            let e = parse_subid(&path, t).unwrap_err();
            assert!(
                e.to_string().starts_with(&format!("/etc/subuid:{line}:")),
                "{t:?}: {e}"
            );
        }
    }

    #[test]
    fn apply_writes_atomically_keeps_mode_and_appends_ranges() {
        let dir = tempfile::tempdir().unwrap();
        let dj = dir.path().join("daemon.json");
        fs::write(&dj, "{\n  \"debug\": true\n}\n").unwrap();
        fs::set_permissions(&dj, fs::Permissions::from_mode(0o600)).unwrap();
        let subuid = dir.path().join("subuid");
        fs::write(&subuid, "alice:100000:65536").unwrap();
        let opts = UsernsOptions {
            spec: "default".into(),
            daemon_json: dj.clone(),
            subuid: subuid.clone(),
            subgid: dir.path().join("subgid"),
            flag_remap: None,
        };
        let pl = plan(&opts).unwrap();
        let diff = pl.daemon_json_diff().unwrap();
        assert!(
            diff.contains(
                "-  \"debug\": true\n+  \"debug\": true,\n+  \"userns-remap\": \"default\"\n"
            ),
            "{diff}"
        );
        assert_eq!(
            pl.subuid.add_line.as_deref(),
            Some("dockremap:165536:65536")
        );
        assert_eq!(
            pl.subgid.add_line.as_deref(),
            Some("dockremap:100000:65536")
        );
        let written = pl.apply().unwrap();
        assert_eq!(written.len(), 3);
        assert_eq!(
            fs::read_to_string(&dj).unwrap(),
            "{\n  \"debug\": true,\n  \"userns-remap\": \"default\"\n}\n"
        );
        assert_eq!(
            fs::metadata(&dj).unwrap().permissions().mode() & 0o7777,
            0o600
        );
        assert_eq!(
            fs::read_to_string(&subuid).unwrap(),
            "alice:100000:65536\ndockremap:165536:65536\n"
        );
        let gid = dir.path().join("subgid");
        assert_eq!(
            fs::metadata(&gid).unwrap().permissions().mode() & 0o7777,
            0o644
        );
        // No temporary files left behind.
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 3);
        // Second run: nothing to do.
        let again = plan(&opts).unwrap();
        assert!(again.is_noop(), "{again:?}");
        assert_eq!(again.subuid.start, 165_536);
        // A file changed after planning is not overwritten.
        let opts2 = UsernsOptions {
            spec: "other".into(),
            ..opts
        };
        fs::write(&dj, "{}").unwrap();
        let pl = plan(&opts2).unwrap();
        fs::write(&dj, "{\"x\": 1}").unwrap();
        assert!(pl.apply().is_err());
        assert_eq!(fs::read_to_string(&dj).unwrap(), "{\"x\": 1}");
    }

    #[test]
    fn uid_map_root_is_found() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir(dir.path().join("7")).unwrap();
        fs::write(
            dir.path().join("7/uid_map"),
            "         0     165536      65536\n",
        )
        .unwrap();
        assert_eq!(root_mapping(dir.path(), 7), Some(165_536));
        fs::write(dir.path().join("7/uid_map"), "1 1000 1\n").unwrap();
        assert_eq!(root_mapping(dir.path(), 7), None);
    }

    #[test]
    fn specs() {
        assert_eq!(RemapSpec::parse("default").unwrap().user, "dockremap");
        let s = RemapSpec::parse("nobody:nogroup").unwrap();
        assert_eq!((s.user.as_str(), s.group.as_str()), ("nobody", "nogroup"));
        assert_eq!(RemapSpec::parse("alice").unwrap().group, "alice");
        for bad in ["", "1000", "a:", ":b", "a b", "a\nb", "../x:y/z"] {
            assert!(RemapSpec::parse(bad).is_err(), "{bad:?}");
        }
    }
}
