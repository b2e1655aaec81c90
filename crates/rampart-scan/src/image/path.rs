//! Paths inside an image: normalised, relative to the image root, `/`-separated, never containing
//! `.`, `..` or empty components. The root itself is the empty string.

/// Why a path from an archive is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BadPath {
    /// A `..` component.
    Traversal,
    /// A NUL byte or an empty name.
    Invalid,
}

/// Normalises an archive entry name: strips leading `/` and `./`, drops `.` and empty
/// components; refuses any `..` component (no layer written by a real tool contains one, and a
/// naive extractor would write outside its destination).
pub(crate) fn normalise(raw: &str) -> Result<String, BadPath> {
    if raw.contains('\0') {
        return Err(BadPath::Invalid);
    }
    let mut out = String::with_capacity(raw.len());
    for comp in raw.split('/') {
        match comp {
            "" | "." => {}
            ".." => return Err(BadPath::Traversal),
            c => {
                if !out.is_empty() {
                    out.push('/');
                }
                out.push_str(c);
            }
        }
    }
    Ok(out)
}

/// The parent directory of a normalised path ("" for top-level entries and the root).
pub(crate) fn parent(path: &str) -> &str {
    path.rfind('/').map_or("", |i| &path[..i])
}

/// The last component of a normalised path.
pub(crate) fn file_name(path: &str) -> &str {
    path.rfind('/').map_or(path, |i| &path[i + 1..])
}

/// Joins a normalised directory and a name.
pub(crate) fn join(dir: &str, name: &str) -> String {
    if dir.is_empty() {
        name.to_string()
    } else {
        format!("{dir}/{name}")
    }
}

/// Resolves a symlink target lexically from the directory holding the link, without following
/// other links: an absolute target starts at the image root. Returns `None` when a `..` would
/// climb above the root: the link points outside the image.
pub(crate) fn lexical_target(link_path: &str, target: &str) -> Option<String> {
    let mut stack: Vec<&str> = if target.starts_with('/') {
        Vec::new()
    } else {
        parent(link_path)
            .split('/')
            .filter(|c| !c.is_empty())
            .collect()
    };
    for comp in target.split('/') {
        match comp {
            "" | "." => {}
            ".." => {
                stack.pop()?;
            }
            c => stack.push(c),
        }
    }
    Some(stack.join("/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalises_archive_names() {
        assert_eq!(normalise("./etc/passwd").as_deref(), Ok("etc/passwd"));
        assert_eq!(
            normalise("/etc//os-release").as_deref(),
            Ok("etc/os-release")
        );
        assert_eq!(normalise("usr/lib/").as_deref(), Ok("usr/lib"));
        assert_eq!(normalise("./").as_deref(), Ok(""));
        assert_eq!(normalise("../etc/passwd"), Err(BadPath::Traversal));
        assert_eq!(normalise("a/../../b"), Err(BadPath::Traversal));
        assert_eq!(normalise("a\0b"), Err(BadPath::Invalid));
    }

    #[test]
    fn lexical_targets_stay_in_root() {
        assert_eq!(
            lexical_target("etc/os-release", "../usr/lib/os-release").as_deref(),
            Some("usr/lib/os-release")
        );
        assert_eq!(lexical_target("bin", "usr/bin").as_deref(), Some("usr/bin"));
        assert_eq!(
            lexical_target("etc/alternatives/vi", "/usr/bin/vim.tiny").as_deref(),
            Some("usr/bin/vim.tiny")
        );
        assert_eq!(lexical_target("etc/x", "../../etc/shadow"), None);
        assert_eq!(lexical_target("x", "/../etc/shadow"), None);
        assert_eq!(lexical_target("a/b", ".").as_deref(), Some("a"));
    }

    #[test]
    fn parent_and_name() {
        assert_eq!(parent("a/b/c"), "a/b");
        assert_eq!(parent("a"), "");
        assert_eq!(file_name("a/b/c"), "c");
        assert_eq!(join("", "x"), "x");
        assert_eq!(join("a", "x"), "a/x");
    }
}
