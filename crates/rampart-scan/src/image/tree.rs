//! The merged file tree of an image: layers applied in order, the way containerd applies them.
//!
//! * Whiteouts (`.wh.NAME`) and opaque markers (`.wh..wh..opq`) of a layer remove paths of the
//!   layers below it, never entries of the same layer (OCI image-spec, "Whiteouts").
//! * An entry whose parent path runs through a symlink lands where the symlink points, resolved
//!   inside the image (containerd's `fs.RootPath`): `lib/x` over `lib -> usr/lib` is `usr/lib/x`.
//! * A directory over a non-directory replaces it; a non-directory over a directory removes the
//!   directory and everything under it.
//! * Resolution never leaves the image: `..` at the root stays at the root (chroot semantics),
//!   and at most [`MAX_LINKS`] symlinks are followed per lookup.

use std::collections::{BTreeMap, HashMap};

use super::path::{file_name, join, parent};

/// Most symlinks followed while resolving one path (Linux's `MAXSYMLINKS`).
pub(crate) const MAX_LINKS: usize = 40;

/// What an entry of a layer is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum EntryKind {
    File {
        size: u64,
    },
    Dir,
    /// Target as written in the archive.
    Symlink(String),
    /// Normalised path of the linked file.
    HardLink(String),
    /// Fifo or socket: kept in the tree, never read.
    Other,
}

/// One entry of a layer archive (or of a directory walk), its path normalised.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Entry {
    pub path: String,
    pub kind: EntryKind,
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
}

/// The changes one layer makes.
#[derive(Debug, Clone, Default)]
pub(crate) struct LayerChanges {
    pub entries: Vec<Entry>,
    /// Paths removed by `.wh.NAME` files.
    pub whiteouts: Vec<String>,
    /// Directories whose lower content is hidden by `.wh..wh..opq`.
    pub opaque: Vec<String>,
}

/// A node of the merged tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Node {
    pub kind: NodeKind,
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
    /// Index of the layer that wrote this node.
    pub layer: usize,
    /// Path of the entry in that layer's archive (differs from the tree path when a parent was a
    /// symlink, or for a hard link: the path whose content it shares).
    pub origin: String,
    /// A hard link to another node: its content is analysed once, under the other name.
    pub hard_link: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum NodeKind {
    File { size: u64 },
    Dir,
    Symlink(String),
    Other,
}

/// Why applying a layer failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum TreeError {
    /// A hard link names a path that does not exist (or is not a regular file) below it.
    HardLinkTarget { entry: String, target: String },
}

/// The merged tree: normalised path -> node. The root ("") is always a directory.
#[derive(Debug, Clone, Default)]
pub(crate) struct Tree {
    nodes: BTreeMap<String, Node>,
}

impl Tree {
    pub(crate) fn new() -> Tree {
        let mut nodes = BTreeMap::new();
        nodes.insert(
            String::new(),
            Node {
                kind: NodeKind::Dir,
                mode: 0o755,
                uid: 0,
                gid: 0,
                layer: 0,
                origin: String::new(),
                hard_link: false,
            },
        );
        Tree { nodes }
    }

    /// The node at exactly `path` (no symlink resolution).
    pub(crate) fn get(&self, path: &str) -> Option<&Node> {
        self.nodes.get(path)
    }

    /// Every node, in path order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (&String, &Node)> {
        self.nodes.iter()
    }

    /// Resolves `path` inside the image, following symlinks in every component (and in the last
    /// one too when `follow_last`). `None` when a component is missing, a non-directory is
    /// traversed, or more than [`MAX_LINKS`] links are followed.
    pub(crate) fn resolve(&self, path: &str, follow_last: bool) -> Option<String> {
        let mut links = 0usize;
        let mut done: Vec<String> = Vec::new();
        let mut todo: Vec<String> = path
            .split('/')
            .rev()
            .filter(|c| !c.is_empty() && *c != ".")
            .map(str::to_string)
            .collect();
        while let Some(comp) = todo.pop() {
            if comp == ".." {
                done.pop();
                continue;
            }
            let here = if done.is_empty() {
                comp.clone()
            } else {
                format!("{}/{comp}", done.join("/"))
            };
            let last = todo.is_empty();
            match self.nodes.get(&here).map(|n| &n.kind) {
                Some(NodeKind::Symlink(target)) if !last || follow_last => {
                    links += 1;
                    if links > MAX_LINKS {
                        return None;
                    }
                    if target.starts_with('/') {
                        done.clear();
                    }
                    todo.extend(
                        target
                            .split('/')
                            .rev()
                            .filter(|c| !c.is_empty() && *c != ".")
                            .map(str::to_string),
                    );
                }
                Some(NodeKind::Dir) => done.push(comp),
                Some(_) if last => done.push(comp),
                None if last => done.push(comp),
                _ => return None,
            }
        }
        Some(done.join("/"))
    }

    /// Where an entry at `path` lands: its parent resolved through symlinks, its name kept.
    /// Falls back to the literal path when the parent does not resolve (a missing directory is
    /// created implicitly, as tar extraction does).
    fn place(&self, path: &str) -> String {
        let dir = parent(path);
        if dir.is_empty() || matches!(self.nodes.get(dir).map(|n| &n.kind), Some(NodeKind::Dir)) {
            return path.to_string();
        }
        match self.resolve(dir, true) {
            Some(d) => join(&d, file_name(path)),
            None => path.to_string(),
        }
    }

    fn remove_tree(&mut self, path: &str) {
        self.nodes.remove(path);
        self.remove_children(path);
    }

    fn remove_children(&mut self, dir: &str) {
        let prefix = if dir.is_empty() {
            String::new()
        } else {
            format!("{dir}/")
        };
        let doomed: Vec<String> = self
            .nodes
            .range(prefix.clone()..)
            .take_while(|(k, _)| k.starts_with(&prefix))
            .map(|(k, _)| k.clone())
            .filter(|k| !k.is_empty())
            .collect();
        for k in doomed {
            self.nodes.remove(&k);
        }
    }

    /// Applies the changes of layer `layer` on top of the tree. Returns, for entries that landed
    /// somewhere other than their archive path, archive path -> tree path.
    pub(crate) fn apply(
        &mut self,
        layer: usize,
        changes: &LayerChanges,
    ) -> Result<HashMap<String, String>, TreeError> {
        for dir in &changes.opaque {
            let placed = if dir.is_empty() {
                String::new()
            } else {
                self.place(dir)
            };
            self.remove_children(&placed);
        }
        for gone in &changes.whiteouts {
            let placed = self.place(gone);
            self.remove_tree(&placed);
        }
        let mut moved = HashMap::new();
        // Hard links may name files of this very layer: link after everything else is placed.
        let mut hard_links = Vec::new();
        for e in &changes.entries {
            if e.path.is_empty() {
                continue;
            }
            let placed = self.place(&e.path);
            if placed != e.path {
                moved.insert(e.path.clone(), placed.clone());
            }
            let kind = match &e.kind {
                EntryKind::File { size } => NodeKind::File { size: *size },
                EntryKind::Dir => NodeKind::Dir,
                EntryKind::Symlink(t) => NodeKind::Symlink(t.clone()),
                EntryKind::Other => NodeKind::Other,
                EntryKind::HardLink(target) => {
                    hard_links.push((placed, target.clone(), e));
                    continue;
                }
            };
            self.insert(placed, layer, kind, e, e.path.clone());
        }
        for (placed, target, e) in hard_links {
            let resolved = self.place(&target);
            let Some(node) = self
                .nodes
                .get(&resolved)
                .filter(|n| matches!(n.kind, NodeKind::File { .. }))
            else {
                return Err(TreeError::HardLinkTarget {
                    entry: e.path.clone(),
                    target,
                });
            };
            // A hard link shares the inode: same content (at the target's layer and origin),
            // mode and owner.
            let mut node = node.clone();
            node.hard_link = true;
            self.nodes.insert(placed.clone(), node);
            self.remove_children(&placed);
        }
        Ok(moved)
    }

    fn insert(&mut self, placed: String, layer: usize, kind: NodeKind, e: &Entry, origin: String) {
        let is_dir = kind == NodeKind::Dir;
        if let Some(old) = self.nodes.get(&placed) {
            if old.kind == NodeKind::Dir && !is_dir {
                self.remove_children(&placed);
            }
        }
        self.nodes.insert(
            placed,
            Node {
                kind,
                mode: e.mode,
                uid: e.uid,
                gid: e.gid,
                layer,
                origin,
                hard_link: false,
            },
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(path: &str) -> Entry {
        Entry {
            path: path.into(),
            kind: EntryKind::File { size: 1 },
            mode: 0o644,
            uid: 0,
            gid: 0,
        }
    }

    fn dir(path: &str) -> Entry {
        Entry {
            kind: EntryKind::Dir,
            mode: 0o755,
            ..file(path)
        }
    }

    fn link(path: &str, target: &str) -> Entry {
        Entry {
            kind: EntryKind::Symlink(target.into()),
            mode: 0o777,
            ..file(path)
        }
    }

    fn layer(entries: Vec<Entry>) -> LayerChanges {
        LayerChanges {
            entries,
            ..Default::default()
        }
    }

    #[test]
    fn whiteout_removes_lower_file_and_subtree() {
        let mut t = Tree::new();
        t.apply(
            0,
            &layer(vec![dir("a"), file("a/x"), file("a/y"), file("b")]),
        )
        .expect("l0");
        let mut l1 = layer(vec![file("c")]);
        l1.whiteouts = vec!["a".into(), "b".into()];
        t.apply(1, &l1).expect("l1");
        assert!(t.get("a").is_none());
        assert!(t.get("a/x").is_none());
        assert!(t.get("b").is_none());
        assert_eq!(t.get("c").map(|n| n.layer), Some(1));
    }

    #[test]
    fn whiteout_does_not_hide_same_layer_entry() {
        let mut t = Tree::new();
        t.apply(0, &layer(vec![file("f")])).expect("l0");
        let mut l1 = layer(vec![file("f")]);
        l1.whiteouts = vec!["f".into()];
        t.apply(1, &l1).expect("l1");
        assert_eq!(t.get("f").map(|n| n.layer), Some(1));
    }

    #[test]
    fn opaque_dir_hides_lower_children_only() {
        let mut t = Tree::new();
        t.apply(0, &layer(vec![dir("d"), file("d/old"), file("dd")]))
            .expect("l0");
        let mut l1 = layer(vec![dir("d"), file("d/new")]);
        l1.opaque = vec!["d".into()];
        t.apply(1, &l1).expect("l1");
        assert!(t.get("d/old").is_none());
        assert!(t.get("d/new").is_some());
        assert!(
            t.get("dd").is_some(),
            "a sibling with a common prefix survives"
        );
    }

    #[test]
    fn entries_under_a_symlinked_dir_land_at_the_target() {
        let mut t = Tree::new();
        t.apply(
            0,
            &layer(vec![dir("usr"), dir("usr/lib"), link("lib", "usr/lib")]),
        )
        .expect("l0");
        let moved = t.apply(1, &layer(vec![file("lib/libx.so")])).expect("l1");
        assert!(t.get("usr/lib/libx.so").is_some());
        assert_eq!(
            moved.get("lib/libx.so").map(String::as_str),
            Some("usr/lib/libx.so")
        );
    }

    #[test]
    fn resolution_stays_in_the_image() {
        let mut t = Tree::new();
        t.apply(
            0,
            &layer(vec![
                dir("etc"),
                dir("usr"),
                dir("usr/lib"),
                file("usr/lib/os-release"),
                link("etc/os-release", "../usr/lib/os-release"),
                link("up", "../../../../etc"),
                link("loop1", "loop2"),
                link("loop2", "loop1"),
            ]),
        )
        .expect("l0");
        assert_eq!(
            t.resolve("etc/os-release", true).as_deref(),
            Some("usr/lib/os-release")
        );
        // `..` at the root stays at the root: `up` is `etc` of the image, never of the host.
        assert_eq!(
            t.resolve("up/os-release", true).as_deref(),
            Some("usr/lib/os-release")
        );
        assert_eq!(t.resolve("loop1", true), None);
        assert_eq!(
            t.resolve("etc/os-release", false).as_deref(),
            Some("etc/os-release")
        );
    }

    #[test]
    fn hard_link_shares_target_and_missing_target_fails() {
        let mut t = Tree::new();
        let mut su = file("bin/su");
        su.mode = 0o4755;
        let hl = Entry {
            kind: EntryKind::HardLink("bin/su".into()),
            ..file("bin/su2")
        };
        t.apply(0, &layer(vec![dir("bin"), su, hl])).expect("l0");
        assert_eq!(t.get("bin/su2").map(|n| n.mode), Some(0o4755));
        let bad = Entry {
            kind: EntryKind::HardLink("nope".into()),
            ..file("x")
        };
        assert_eq!(
            t.apply(1, &layer(vec![bad])),
            Err(TreeError::HardLinkTarget {
                entry: "x".into(),
                target: "nope".into()
            })
        );
    }

    #[test]
    fn file_over_dir_removes_subtree() {
        let mut t = Tree::new();
        t.apply(0, &layer(vec![dir("d"), file("d/x")])).expect("l0");
        t.apply(1, &layer(vec![file("d")])).expect("l1");
        assert!(t.get("d/x").is_none());
        assert!(matches!(
            t.get("d").map(|n| &n.kind),
            Some(NodeKind::File { .. })
        ));
    }
}
