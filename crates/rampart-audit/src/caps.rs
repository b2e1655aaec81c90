//! Linux capabilities: numbers, names (as Docker spells them, without `CAP_`), Docker's default
//! set, and the sets that make a container privileged in all but name.

/// Capability names by number (linux/capability.h, up to CAP_CHECKPOINT_RESTORE = 40).
const NAMES: [&str; 41] = [
    "CHOWN",
    "DAC_OVERRIDE",
    "DAC_READ_SEARCH",
    "FOWNER",
    "FSETID",
    "KILL",
    "SETGID",
    "SETUID",
    "SETPCAP",
    "LINUX_IMMUTABLE",
    "NET_BIND_SERVICE",
    "NET_BROADCAST",
    "NET_ADMIN",
    "NET_RAW",
    "IPC_LOCK",
    "IPC_OWNER",
    "SYS_MODULE",
    "SYS_RAWIO",
    "SYS_CHROOT",
    "SYS_PTRACE",
    "SYS_PACCT",
    "SYS_ADMIN",
    "SYS_BOOT",
    "SYS_NICE",
    "SYS_RESOURCE",
    "SYS_TIME",
    "SYS_TTY_CONFIG",
    "MKNOD",
    "LEASE",
    "AUDIT_WRITE",
    "AUDIT_CONTROL",
    "SETFCAP",
    "MAC_OVERRIDE",
    "MAC_ADMIN",
    "SYSLOG",
    "WAKE_ALARM",
    "BLOCK_SUSPEND",
    "AUDIT_READ",
    "PERFMON",
    "BPF",
    "CHECKPOINT_RESTORE",
];

/// Docker's default capability set (moby `oci/caps/defaults.go`).
pub const DOCKER_DEFAULT: [&str; 14] = [
    "CHOWN",
    "DAC_OVERRIDE",
    "FSETID",
    "FOWNER",
    "MKNOD",
    "NET_RAW",
    "SETGID",
    "SETUID",
    "SETFCAP",
    "SETPCAP",
    "NET_BIND_SERVICE",
    "SYS_CHROOT",
    "KILL",
    "AUDIT_WRITE",
];

/// Capabilities that give a container a way out (module loading, raw devices, namespaces and
/// mounts, other processes' memory, the kernel's BPF, DAC bypass for reads).
pub const DANGEROUS: [&str; 10] = [
    "SYS_ADMIN",
    "SYS_MODULE",
    "SYS_RAWIO",
    "SYS_PTRACE",
    "DAC_READ_SEARCH",
    "NET_ADMIN",
    "BPF",
    "PERFMON",
    "SYS_BOOT",
    "MAC_ADMIN",
];

/// The name of capability `n` (`NET_BIND_SERVICE`), or `CAP_<n>` for numbers newer than this
/// table.
pub fn name(n: u32) -> String {
    NAMES
        .get(n as usize)
        .map_or_else(|| format!("CAP_{n}"), |s| (*s).to_string())
}

/// The number of capability `name` (with or without `CAP_`, any case).
pub fn number(name: &str) -> Option<u32> {
    let up = name.trim().to_ascii_uppercase();
    let bare = up.strip_prefix("CAP_").unwrap_or(&up);
    NAMES.iter().position(|n| *n == bare).map(|i| i as u32)
}

/// The names of the bits set in a capability mask (`CapEff` of /proc/PID/status), in number
/// order.
pub fn names_of(mask: u64) -> Vec<String> {
    (0..64u32)
        .filter(|b| mask & (1u64 << b) != 0)
        .map(name)
        .collect()
}

/// The mask of every capability this kernel knows (from /proc/sys/kernel/cap_last_cap).
pub fn full_mask(last_cap: u32) -> u64 {
    if last_cap >= 63 {
        u64::MAX
    } else {
        (1u64 << (last_cap + 1)) - 1
    }
}

/// Parses a hex capability mask as /proc/PID/status prints it.
pub fn parse_mask(hex: &str) -> Option<u64> {
    u64::from_str_radix(hex.trim(), 16).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_numbers_round_trip() {
        assert_eq!(name(21), "SYS_ADMIN");
        assert_eq!(number("cap_sys_admin"), Some(21));
        assert_eq!(number("NET_BIND_SERVICE"), Some(10));
        assert_eq!(number("nope"), None);
        assert_eq!(name(63), "CAP_63");
        for d in DOCKER_DEFAULT.iter().chain(DANGEROUS.iter()) {
            assert!(number(d).is_some(), "{d}");
        }
    }

    #[test]
    fn docker_default_mask_decodes() {
        // CapEff of a default Docker container.
        let mask = parse_mask("00000000a80425fb").expect("hex");
        let mut got = names_of(mask);
        got.sort();
        let mut want: Vec<String> = DOCKER_DEFAULT.iter().map(|s| s.to_string()).collect();
        want.sort();
        assert_eq!(got, want);
        assert_eq!(full_mask(40), 0x1ff_ffff_ffff);
    }
}
