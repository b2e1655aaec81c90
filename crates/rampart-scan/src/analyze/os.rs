//! Operating system identification from `os-release` (freedesktop.org `os-release(5)`), with
//! Alpine's and Debian's older files as fallbacks.

use serde::{Deserialize, Serialize};

/// The operating system of an image, from `/etc/os-release` (or `/usr/lib/os-release`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OsRelease {
    /// `ID` (`debian`, `ubuntu`, `alpine`, `rocky`, ...).
    pub id: String,
    /// `ID_LIKE`, split.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub id_like: Vec<String>,
    /// `VERSION_ID` (`12`, `3.19.1`, `22.04`, `9.3`); empty for rolling releases.
    #[serde(default)]
    pub version_id: String,
    /// `VERSION_CODENAME` (`bookworm`), when given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub codename: Option<String>,
    /// `PRETTY_NAME`.
    #[serde(default)]
    pub pretty_name: String,
}

/// Paths that may hold an os-release file.
pub(crate) const PATHS: [&str; 2] = ["etc/os-release", "usr/lib/os-release"];

pub(crate) fn wants(path: &str) -> bool {
    PATHS.contains(&path)
}

/// Parses os-release text: `KEY=value` lines, values optionally quoted with shell escapes.
/// Returns `None` when there is no `ID`.
pub(crate) fn parse(data: &[u8]) -> Option<OsRelease> {
    let text = String::from_utf8_lossy(data);
    let mut os = OsRelease::default();
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('#') {
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        let value = unquote(value.trim());
        match key.trim() {
            "ID" => os.id = value.to_ascii_lowercase(),
            "ID_LIKE" => os.id_like = value.split_whitespace().map(str::to_string).collect(),
            "VERSION_ID" => os.version_id = value,
            "VERSION_CODENAME" if !value.is_empty() => os.codename = Some(value),
            "PRETTY_NAME" => os.pretty_name = value,
            _ => {}
        }
    }
    (!os.id.is_empty()).then_some(os)
}

/// Removes one level of `"..."` or `'...'` quoting and backslash escapes (os-release(5)).
fn unquote(v: &str) -> String {
    let inner = if v.len() >= 2
        && ((v.starts_with('"') && v.ends_with('"')) || (v.starts_with('\'') && v.ends_with('\'')))
    {
        &v[1..v.len() - 1]
    } else {
        v
    };
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            if let Some(n) = chars.next() {
                out.push(n);
            }
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_debian_os_release() {
        let text = br#"PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"
NAME="Debian GNU/Linux"
VERSION_ID="12"
VERSION="12 (bookworm)"
VERSION_CODENAME=bookworm
ID=debian
"#;
        let os = parse(text).expect("os");
        assert_eq!(os.id, "debian");
        assert_eq!(os.version_id, "12");
        assert_eq!(os.codename.as_deref(), Some("bookworm"));
        assert_eq!(os.pretty_name, "Debian GNU/Linux 12 (bookworm)");
    }

    #[test]
    fn parses_id_like_and_escapes() {
        let os = parse(b"ID=\"rocky\"\nID_LIKE=\"rhel centos fedora\"\nVERSION_ID='9.3'\nPRETTY_NAME=\"a \\\"b\\\"\"\n")
            .expect("os");
        assert_eq!(os.id, "rocky");
        assert_eq!(os.id_like, ["rhel", "centos", "fedora"]);
        assert_eq!(os.version_id, "9.3");
        assert_eq!(os.pretty_name, "a \"b\"");
    }

    #[test]
    fn no_id_is_none() {
        assert_eq!(parse(b"NAME=x\n"), None);
    }
}
