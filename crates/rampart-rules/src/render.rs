//! Text forms of numeric syscall arguments as Falco prints them: errno names, open flags, file
//! modes, capability sets, namespace flags, and times.

use std::fmt::{self, Write};

/// A fixed-size text buffer on the stack, for comparing numbers and addresses as text without
/// allocating.
pub(crate) struct StackBuf {
    buf: [u8; 64],
    len: usize,
}

impl StackBuf {
    pub fn new() -> Self {
        StackBuf {
            buf: [0; 64],
            len: 0,
        }
    }

    pub fn as_str(&self) -> &str {
        // Only whole `&str`s are ever written, so the prefix is valid UTF-8; a write that does
        // not fit is refused whole.
        std::str::from_utf8(&self.buf[..self.len]).unwrap_or("")
    }
}

impl Write for StackBuf {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let end = self.len + s.len();
        if end > self.buf.len() {
            return Err(fmt::Error);
        }
        self.buf[self.len..end].copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}

static ERRNO: &[(i64, &str)] = &[
    (1, "EPERM"),
    (2, "ENOENT"),
    (3, "ESRCH"),
    (4, "EINTR"),
    (5, "EIO"),
    (6, "ENXIO"),
    (7, "E2BIG"),
    (8, "ENOEXEC"),
    (9, "EBADF"),
    (10, "ECHILD"),
    (11, "EAGAIN"),
    (12, "ENOMEM"),
    (13, "EACCES"),
    (14, "EFAULT"),
    (15, "ENOTBLK"),
    (16, "EBUSY"),
    (17, "EEXIST"),
    (18, "EXDEV"),
    (19, "ENODEV"),
    (20, "ENOTDIR"),
    (21, "EISDIR"),
    (22, "EINVAL"),
    (23, "ENFILE"),
    (24, "EMFILE"),
    (25, "ENOTTY"),
    (26, "ETXTBSY"),
    (27, "EFBIG"),
    (28, "ENOSPC"),
    (29, "ESPIPE"),
    (30, "EROFS"),
    (31, "EMLINK"),
    (32, "EPIPE"),
    (33, "EDOM"),
    (34, "ERANGE"),
    (35, "EDEADLK"),
    (36, "ENAMETOOLONG"),
    (37, "ENOLCK"),
    (38, "ENOSYS"),
    (39, "ENOTEMPTY"),
    (40, "ELOOP"),
    (61, "ENODATA"),
    (62, "ETIME"),
    (71, "EPROTO"),
    (75, "EOVERFLOW"),
    (84, "EILSEQ"),
    (88, "ENOTSOCK"),
    (89, "EDESTADDRREQ"),
    (90, "EMSGSIZE"),
    (91, "EPROTOTYPE"),
    (92, "ENOPROTOOPT"),
    (93, "EPROTONOSUPPORT"),
    (94, "ESOCKTNOSUPPORT"),
    (95, "EOPNOTSUPP"),
    (96, "EPFNOSUPPORT"),
    (97, "EAFNOSUPPORT"),
    (98, "EADDRINUSE"),
    (99, "EADDRNOTAVAIL"),
    (100, "ENETDOWN"),
    (101, "ENETUNREACH"),
    (102, "ENETRESET"),
    (103, "ECONNABORTED"),
    (104, "ECONNRESET"),
    (105, "ENOBUFS"),
    (106, "EISCONN"),
    (107, "ENOTCONN"),
    (110, "ETIMEDOUT"),
    (111, "ECONNREFUSED"),
    (112, "EHOSTDOWN"),
    (113, "EHOSTUNREACH"),
    (114, "EALREADY"),
    (115, "EINPROGRESS"),
    (116, "ESTALE"),
    (122, "EDQUOT"),
    (125, "ECANCELED"),
];

/// `SUCCESS` for a non-negative result, the errno name (`ENOENT`) for a negative one.
pub(crate) fn errno_name(res: i64) -> Option<&'static str> {
    if res >= 0 {
        return Some("SUCCESS");
    }
    ERRNO
        .iter()
        .find(|(n, _)| *n == -res)
        .map(|(_, name)| *name)
}

static OPEN_FLAGS: &[(u64, &str)] = &[
    (0o100, "O_CREAT"),
    (0o200, "O_EXCL"),
    (0o400, "O_NOCTTY"),
    (0o1000, "O_TRUNC"),
    (0o2000, "O_APPEND"),
    (0o4000, "O_NONBLOCK"),
    (0o10000, "O_DSYNC"),
    (0o20000, "O_ASYNC"),
    (0o40000, "O_DIRECT"),
    (0o100000, "O_LARGEFILE"),
    (0o200000, "O_DIRECTORY"),
    (0o400000, "O_NOFOLLOW"),
    (0o1000000, "O_NOATIME"),
    (0o2000000, "O_CLOEXEC"),
    (0o4000000, "O_SYNC"),
    (0o10000000, "O_PATH"),
    (0o20000000, "O_TMPFILE"),
];

/// The test equivalent to "the rendered flags (or mode) contain `needle`": the bits whose
/// names contain it, and, for open flags, the access modes whose names do. `None` when the
/// needle could match across a `|` (then the text must be rendered).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BitTest {
    pub mask: u64,
    /// Bit n set: access mode n (`O_RDONLY`, `O_WRONLY`, `O_RDWR`) matches.
    pub accmodes: u8,
    /// The value renders as `0` and the needle is in "0" (modes only).
    pub zero: bool,
}

impl BitTest {
    pub fn open_flags(needle: &str) -> Option<BitTest> {
        if needle.is_empty() || needle.contains('|') {
            return None;
        }
        let mut t = BitTest {
            mask: 0,
            accmodes: 0,
            zero: false,
        };
        for (i, name) in ["O_RDONLY", "O_WRONLY", "O_RDWR", "O_ACCMODE"]
            .iter()
            .enumerate()
        {
            if name.contains(needle) {
                t.accmodes |= 1 << i;
            }
        }
        for (bit, name) in OPEN_FLAGS {
            if name.contains(needle) {
                t.mask |= bit;
            }
        }
        Some(t)
    }

    pub fn mode(needle: &str) -> Option<BitTest> {
        if needle.is_empty() || needle.contains('|') {
            return None;
        }
        let mut t = BitTest {
            mask: 0,
            accmodes: 0,
            zero: "0".contains(needle),
        };
        for (bit, name) in MODE_BITS {
            if name.contains(needle) {
                t.mask |= bit;
            }
        }
        Some(t)
    }

    pub fn test_open_flags(&self, flags: u64) -> bool {
        flags & self.mask != 0 || self.accmodes & (1 << (flags & 3)) != 0
    }

    pub fn test_mode(&self, mode: u64) -> bool {
        let shown = mode & MODE_BITS.iter().fold(0, |m, (b, _)| m | b);
        shown & self.mask != 0 || (shown == 0 && self.zero)
    }
}

/// open(2) flags as Falco prints them: `O_WRONLY|O_CREAT|O_TRUNC`.
pub(crate) fn open_flags(flags: u64, out: &mut String) {
    out.push_str(match flags & 3 {
        0 => "O_RDONLY",
        1 => "O_WRONLY",
        2 => "O_RDWR",
        _ => "O_ACCMODE",
    });
    for (bit, name) in OPEN_FLAGS {
        if flags & bit != 0 {
            out.push('|');
            out.push_str(name);
        }
    }
}

static MODE_BITS: &[(u64, &str)] = &[
    (0o1, "S_IXOTH"),
    (0o2, "S_IWOTH"),
    (0o4, "S_IROTH"),
    (0o10, "S_IXGRP"),
    (0o20, "S_IWGRP"),
    (0o40, "S_IRGRP"),
    (0o100, "S_IXUSR"),
    (0o200, "S_IWUSR"),
    (0o400, "S_IRUSR"),
    (0o1000, "S_ISVTX"),
    (0o2000, "S_ISGID"),
    (0o4000, "S_ISUID"),
];

/// A file mode as Falco prints it: `S_IXOTH|S_IROTH|...|S_ISUID`, `0` when no bit is set.
pub(crate) fn file_mode(mode: u64, out: &mut String) {
    let mut first = true;
    for (bit, name) in MODE_BITS {
        if mode & bit != 0 {
            if !first {
                out.push('|');
            }
            out.push_str(name);
            first = false;
        }
    }
    if first {
        out.push('0');
    }
}

static CAPS: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
];

/// A capability set as Falco prints it: names separated by spaces.
pub(crate) fn caps(set: u64, out: &mut String) {
    for (bit, name) in CAPS.iter().enumerate() {
        if set & (1u64 << bit) != 0 {
            if !out.is_empty() {
                out.push(' ');
            }
            out.push_str(name);
        }
    }
}

static NS_FLAGS: &[(u64, &str)] = &[
    (0x80, "CLONE_NEWTIME"),
    (0x20000, "CLONE_NEWNS"),
    (0x0200_0000, "CLONE_NEWCGROUP"),
    (0x0400_0000, "CLONE_NEWUTS"),
    (0x0800_0000, "CLONE_NEWIPC"),
    (0x1000_0000, "CLONE_NEWUSER"),
    (0x2000_0000, "CLONE_NEWPID"),
    (0x4000_0000, "CLONE_NEWNET"),
];

/// io_uring_setup's flags (include/uapi/linux/io_uring.h), the ones that change what the ring
/// does out of sight: a kernel thread polling the submission queue, and where completions go.
static IO_URING_FLAGS: &[(u64, &str)] = &[
    (1 << 0, "IORING_SETUP_IOPOLL"),
    (1 << 1, "IORING_SETUP_SQPOLL"),
    (1 << 2, "IORING_SETUP_SQ_AFF"),
    (1 << 3, "IORING_SETUP_CQSIZE"),
    (1 << 4, "IORING_SETUP_CLAMP"),
    (1 << 5, "IORING_SETUP_ATTACH_WQ"),
    (1 << 6, "IORING_SETUP_R_DISABLED"),
    (1 << 7, "IORING_SETUP_SUBMIT_ALL"),
    (1 << 8, "IORING_SETUP_COOP_TASKRUN"),
    (1 << 9, "IORING_SETUP_TASKRUN_FLAG"),
    (1 << 10, "IORING_SETUP_SQE128"),
    (1 << 11, "IORING_SETUP_CQE32"),
    (1 << 12, "IORING_SETUP_SINGLE_ISSUER"),
    (1 << 13, "IORING_SETUP_DEFER_TASKRUN"),
    (1 << 14, "IORING_SETUP_NO_MMAP"),
    (1 << 15, "IORING_SETUP_REGISTERED_FD_ONLY"),
    (1 << 16, "IORING_SETUP_NO_SQARRAY"),
];

/// io_uring_setup flags: `IORING_SETUP_SQPOLL|IORING_SETUP_SQ_AFF`; `0` for none, and the
/// number of any bit not named above (a newer kernel's flag) after the names.
pub(crate) fn io_uring_flags(flags: u64, out: &mut String) {
    let mut rest = flags;
    for (bit, name) in IO_URING_FLAGS {
        if flags & bit != 0 {
            if !out.is_empty() {
                out.push('|');
            }
            out.push_str(name);
            rest &= !bit;
        }
    }
    if flags == 0 {
        out.push('0');
    } else if rest != 0 {
        if !out.is_empty() {
            out.push('|');
        }
        let _ = write!(out, "{rest:#x}");
    }
}

/// Namespace flags of unshare/setns: `CLONE_NEWNS|CLONE_NEWPID`; the number when none is known.
pub(crate) fn ns_flags(flags: u64, out: &mut String) {
    for (bit, name) in NS_FLAGS {
        if flags & bit != 0 {
            if !out.is_empty() {
                out.push('|');
            }
            out.push_str(name);
        }
    }
    if out.is_empty() {
        let _ = write!(out, "{flags}");
    }
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian (H. Hinnant's algorithm).
fn civil(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// The parts of a time: which of date, clock and nanoseconds to print, and the separator.
#[derive(Clone, Copy)]
pub(crate) enum TimeFormat {
    /// `12:34:56.123456789`
    Time,
    /// `12:34:56`
    TimeS,
    /// `2024-05-01T12:34:56.123456789Z`
    Iso8601,
    /// `2024-05-01 12:34:56.123456789`
    Datetime,
    /// `2024-05-01 12:34:56`
    DatetimeS,
}

/// Formats nanoseconds since the epoch (UTC).
pub(crate) fn time(ns: u64, fmt: TimeFormat, out: &mut String) {
    let secs = (ns / 1_000_000_000) as i64;
    let nanos = ns % 1_000_000_000;
    let (y, mo, d) = civil(secs.div_euclid(86_400));
    let sod = secs.rem_euclid(86_400);
    let (h, mi, s) = (sod / 3600, (sod / 60) % 60, sod % 60);
    let _ = match fmt {
        TimeFormat::Time => write!(out, "{h:02}:{mi:02}:{s:02}.{nanos:09}"),
        TimeFormat::TimeS => write!(out, "{h:02}:{mi:02}:{s:02}"),
        TimeFormat::Iso8601 => {
            write!(
                out,
                "{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}.{nanos:09}Z"
            )
        }
        TimeFormat::Datetime => {
            write!(
                out,
                "{y:04}-{mo:02}-{d:02} {h:02}:{mi:02}:{s:02}.{nanos:09}"
            )
        }
        TimeFormat::DatetimeS => write!(out, "{y:04}-{mo:02}-{d:02} {h:02}:{mi:02}:{s:02}"),
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_modes_caps_render_like_falco() {
        let mut s = String::new();
        open_flags(0o1101, &mut s);
        assert_eq!(s, "O_WRONLY|O_CREAT|O_TRUNC");
        let mut s = String::new();
        file_mode(0o4755, &mut s);
        assert!(s.contains("S_ISUID") && s.contains("S_IXUSR") && !s.contains("S_ISGID"));
        let mut s = String::new();
        caps((1 << 21) | (1 << 16), &mut s);
        assert_eq!(s, "CAP_SYS_MODULE CAP_SYS_ADMIN");
        let mut s = String::new();
        ns_flags(0x2002_0000, &mut s);
        assert_eq!(s, "CLONE_NEWNS|CLONE_NEWPID");
        for (flags, want) in [
            (0, "0"),
            (2 | 16, "IORING_SETUP_SQPOLL|IORING_SETUP_CLAMP"),
            // A newer kernel's flag: named ones first, then the rest as a number.
            ((1 << 1) | (1 << 40), "IORING_SETUP_SQPOLL|0x10000000000"),
            (1 << 40, "0x10000000000"),
        ] {
            let mut s = String::new();
            io_uring_flags(flags, &mut s);
            assert_eq!(s, want, "{flags:#x}");
        }
        assert_eq!(errno_name(-2), Some("ENOENT"));
        assert_eq!(errno_name(3), Some("SUCCESS"));
    }

    #[test]
    fn times_are_utc() {
        let mut s = String::new();
        time(1_700_000_000_123_456_789, TimeFormat::Iso8601, &mut s);
        assert_eq!(s, "2023-11-14T22:13:20.123456789Z");
        let mut s = String::new();
        time(951_782_400_000_000_000, TimeFormat::DatetimeS, &mut s);
        assert_eq!(s, "2000-02-29 00:00:00");
    }
}
