//! Image configuration and minimality checks, on the merged tree and the image config.
//!
//! | rule | severity | what |
//! |---|---|---|
//! | config/root-user | high | the image (or container) runs as root: no `USER`, `root` or `0` |
//! | config/ssh-server | medium | port 22 exposed, or an SSH server installed (`sshd`) |
//! | config/secret-env | critical | an environment variable holds a secret (by name or value) |
//! | config/secret-label | high | a label holds a secret |
//! | config/no-healthcheck | low | no `HEALTHCHECK` (or `HEALTHCHECK NONE`) |
//! | minimality/shell | low | shells present (an attacker's first tool) |
//! | minimality/compiler | medium | compilers and build tools present |
//! | minimality/package-manager | low | package managers present (install anything at run time) |
//! | file/setuid | low (medium outside bin/sbin) | setuid/setgid files |
//! | file/world-writable | medium | world-writable files, and directories without the sticky bit |

use rampart_event::{Package, Severity};

use crate::analyze::secrets::scan_value;
use crate::finding::{mask, Finding, FindingKind};
use crate::image::tree::{NodeKind, Tree};
use crate::image::ImageConfig;
use crate::lint::dockerfile::secret_name;

const SHELLS: [&str; 6] = [
    "bin/sh",
    "bin/bash",
    "bin/dash",
    "bin/ash",
    "bin/zsh",
    "bin/busybox",
];
const COMPILERS: [&str; 9] = [
    "usr/bin/gcc",
    "usr/bin/cc",
    "usr/bin/g++",
    "usr/bin/clang",
    "usr/bin/rustc",
    "usr/local/go/bin/go",
    "usr/bin/go",
    "usr/bin/javac",
    "usr/bin/make",
];
const PACKAGE_MANAGERS: [&str; 10] = [
    "usr/bin/apt-get",
    "usr/bin/apt",
    "usr/bin/dpkg",
    "sbin/apk",
    "usr/bin/yum",
    "usr/bin/dnf",
    "usr/bin/rpm",
    "usr/bin/pip",
    "usr/local/bin/pip",
    "usr/bin/npm",
];

fn present<'a>(tree: &Tree, paths: &[&'a str]) -> Vec<&'a str> {
    paths
        .iter()
        .filter(|p| {
            tree.resolve(p, true)
                .and_then(|r| {
                    tree.get(&r)
                        .map(|n| matches!(n.kind, NodeKind::File { .. }))
                })
                .unwrap_or(false)
        })
        .copied()
        .collect()
}

/// All configuration, minimality and file-mode findings of an image.
pub(crate) fn check(
    config: Option<&ImageConfig>,
    tree: &Tree,
    packages: &[Package],
    layer_of: &dyn Fn(usize) -> Option<String>,
) -> Vec<Finding> {
    let mut out = Vec::new();
    let cfg = |rule: &str, sev, title: String| Finding::new(FindingKind::Config, rule, title, sev);
    if let Some(c) = config {
        let run = &c.config;
        let user = run.user.split(':').next().unwrap_or("").trim();
        if user.is_empty() || user == "root" || user == "0" {
            out.push(cfg(
                "config/root-user",
                Severity::High,
                if user.is_empty() {
                    "no USER: containers run as root".into()
                } else {
                    format!("runs as {user}")
                },
            ));
        }
        if run
            .exposed_ports
            .keys()
            .any(|p| p == "22" || p.starts_with("22/"))
        {
            out.push(cfg(
                "config/ssh-server",
                Severity::Medium,
                "port 22 (SSH) exposed".into(),
            ));
        }
        for e in &run.env {
            let (k, v) = e.split_once('=').unwrap_or((e, ""));
            if v.is_empty() {
                continue;
            }
            if let Some((id, title, _, masked)) = scan_value(v) {
                out.push(
                    cfg(
                        "config/secret-env",
                        Severity::Critical,
                        format!("environment variable {k} holds a {title} ({id})"),
                    )
                    .evidence(format!("{k}={masked}")),
                );
            } else if secret_name(k) && !v.starts_with('/') {
                out.push(
                    cfg(
                        "config/secret-env",
                        Severity::Critical,
                        format!("environment variable {k} looks like a secret"),
                    )
                    .evidence(format!("{k}={}", mask(v))),
                );
            }
        }
        for (k, v) in &run.labels {
            let hit = scan_value(v)
                .map(|(_, _, _, m)| m)
                .or_else(|| (secret_name(k) && !v.is_empty()).then(|| mask(v)));
            if let Some(m) = hit {
                out.push(
                    cfg(
                        "config/secret-label",
                        Severity::High,
                        format!("label {k} holds a secret"),
                    )
                    .evidence(format!("{k}={m}")),
                );
            }
        }
        let no_hc = run
            .healthcheck
            .as_ref()
            .is_none_or(|h| h.test.first().is_none_or(|t| t == "NONE"));
        if no_hc {
            out.push(cfg(
                "config/no-healthcheck",
                Severity::Low,
                "no HEALTHCHECK".into(),
            ));
        }
    }
    let sshd = present(tree, &["usr/sbin/sshd"]);
    if !sshd.is_empty() || packages.iter().any(|p| p.name == "openssh-server") {
        out.push(
            cfg(
                "config/ssh-server",
                Severity::Medium,
                "an SSH server is installed".into(),
            )
            .at("usr/sbin/sshd", None),
        );
    }
    for (rule, sev, what, list) in [
        ("minimality/shell", Severity::Low, "shells", &SHELLS[..]),
        (
            "minimality/compiler",
            Severity::Medium,
            "compilers and build tools",
            &COMPILERS[..],
        ),
        (
            "minimality/package-manager",
            Severity::Low,
            "package managers",
            &PACKAGE_MANAGERS[..],
        ),
    ] {
        let found = present(tree, list);
        if !found.is_empty() {
            out.push(
                Finding::new(
                    FindingKind::Minimality,
                    rule,
                    format!("{what} in the image"),
                    sev,
                )
                .evidence(found.join(", ")),
            );
        }
    }
    for (path, node) in tree.iter() {
        if node.hard_link {
            continue;
        }
        match node.kind {
            NodeKind::File { .. } if node.mode & 0o6000 != 0 => {
                let standard = [
                    "bin/",
                    "sbin/",
                    "usr/bin/",
                    "usr/sbin/",
                    "usr/lib/",
                    "usr/libexec/",
                ]
                .iter()
                .any(|p| path.starts_with(p));
                let what = match node.mode & 0o6000 {
                    0o6000 => "setuid and setgid",
                    0o4000 => "setuid",
                    _ => "setgid",
                };
                let mut f = Finding::new(
                    FindingKind::Setuid,
                    "file/setuid",
                    format!(
                        "{what} file (uid {}, gid {}, mode {:o})",
                        node.uid,
                        node.gid,
                        node.mode & 0o7777
                    ),
                    if standard {
                        Severity::Low
                    } else {
                        Severity::Medium
                    },
                )
                .at(path, None);
                f.layer = layer_of(node.layer);
                out.push(f);
            }
            NodeKind::File { .. } | NodeKind::Dir
                if node.mode & 0o002 != 0
                    && !(node.kind == NodeKind::Dir && node.mode & 0o1000 != 0) =>
            {
                let what = if node.kind == NodeKind::Dir {
                    "world-writable directory without the sticky bit"
                } else {
                    "world-writable file"
                };
                let mut f = Finding::new(
                    FindingKind::WorldWritable,
                    "file/world-writable",
                    format!("{what} (mode {:o})", node.mode & 0o7777),
                    Severity::Medium,
                )
                .at(path, None);
                f.layer = layer_of(node.layer);
                out.push(f);
            }
            _ => {}
        }
    }
    out
}
