//! Image checks (CIS Docker Benchmark section 4): the image configuration and history from the
//! daemon, and the files of its flattened root filesystem for setuid/setgid bits.

use futures_util::StreamExt;
use rampart_container::models::{ContainerCreateBody, ImageInspect};
use rampart_event::{ComplianceResource, ResourceKind};

use crate::check::*;
use crate::container::registry_outcome;
use crate::error::AuditError;

/// An image reference and what the daemon knows about it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImageRefInfo {
    /// As the user or the container configuration names it (`nginx:1.25`).
    pub reference: String,
    /// Image id (`sha256:` of the config).
    pub id: String,
    /// `repo@sha256:...` digests: present when the image came from a registry.
    pub repo_digests: Vec<String>,
}

/// The registry an image reference points at, with Docker's normalisation: no registry part
/// means Docker Hub (`docker.io`); a first component with a dot or a port, or `localhost`,
/// is a registry host.
pub fn registry_of(reference: &str) -> String {
    let r = reference.split('@').next().unwrap_or(reference);
    if r.starts_with("sha256:") || (r.len() == 64 && r.bytes().all(|b| b.is_ascii_hexdigit())) {
        return "unknown (referenced by image id)".into();
    }
    match r.split_once('/') {
        Some((first, _)) if first.contains('.') || first.contains(':') || first == "localhost" => {
            first.to_string()
        }
        _ => "docker.io".into(),
    }
}

/// Everything the image checks look at.
#[derive(Debug, Clone)]
pub struct ImageFacts {
    pub reference: String,
    pub inspect: ImageInspect,
    /// `CreatedBy` of every history entry, newest first (as the daemon lists them).
    pub history: Vec<String>,
    /// Files with the setuid or setgid bit (path, mode), or why the filesystem was not read.
    pub setid_files: Result<Vec<(String, u32)>, String>,
}

impl ImageFacts {
    pub fn resource(&self) -> ComplianceResource {
        ComplianceResource {
            kind: ResourceKind::Image,
            uid: self.inspect.id.clone().unwrap_or_default(),
            name: self.reference.clone(),
        }
    }

    pub fn ref_info(&self) -> ImageRefInfo {
        ImageRefInfo {
            reference: self.reference.clone(),
            id: self.inspect.id.clone().unwrap_or_default(),
            repo_digests: self.inspect.repo_digests.clone().unwrap_or_default(),
        }
    }
}

/// Reads image `reference` from the daemon, including a walk of its files (through a created,
/// never started, container that is removed afterwards).
pub async fn gather(
    docker: &rampart_container::DockerClient,
    reference: &str,
) -> Result<ImageFacts, AuditError> {
    let inspect = docker
        .inspect_image(reference)
        .await
        .map_err(|e| AuditError::docker("inspect image", reference, e))?;
    let history = docker
        .image_history(reference)
        .await
        .map_err(|e| AuditError::docker("image history", reference, e))?
        .into_iter()
        .map(|h| h.created_by)
        .collect();
    let setid_files = setid_files(docker, inspect.id.as_deref().unwrap_or(reference)).await;
    Ok(ImageFacts {
        reference: reference.to_string(),
        inspect,
        history,
        setid_files,
    })
}

/// Files of `image` with a setuid or setgid bit, from `docker export` of a created container.
async fn setid_files(
    docker: &rampart_container::DockerClient,
    image: &str,
) -> Result<Vec<(String, u32)>, String> {
    let body = ContainerCreateBody {
        image: Some(image.to_string()),
        entrypoint: Some(vec!["/rampart-audit-never-started".into()]),
        cmd: Some(Vec::new()),
        network_disabled: Some(true),
        ..ContainerCreateBody::default()
    };
    let id = docker.create_container(body).await.map_err(|e| {
        format!(
            "creating a container to read the image's files: {}",
            e.message()
        )
    })?;
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<u8>>(16);
    let reader = tokio::task::spawn_blocking(move || {
        let mut archive = tar::Archive::new(ChannelReader {
            rx: &mut rx,
            buf: Vec::new(),
            pos: 0,
        });
        let mut found = Vec::new();
        let entries = archive
            .entries()
            .map_err(|e| format!("reading the export: {e}"))?;
        for entry in entries {
            let entry = entry.map_err(|e| format!("reading the export: {e}"))?;
            let header = entry.header();
            let mode = header.mode().unwrap_or(0);
            if header.entry_type().is_file() && mode & 0o6000 != 0 {
                let path = entry
                    .path()
                    .map(|p| format!("/{}", p.display()))
                    .unwrap_or_default();
                found.push((path, mode));
            }
        }
        found.sort();
        Ok::<_, String>(found)
    });
    let mut stream = docker.export_container(&id);
    let mut stream_err = None;
    while let Some(chunk) = stream.next().await {
        match chunk {
            Ok(b) => {
                if tx.send(b.to_vec()).await.is_err() {
                    break; // the reader stopped (it reports why)
                }
            }
            Err(e) => {
                stream_err = Some(format!("exporting the image's files: {}", e.message()));
                break;
            }
        }
    }
    drop(tx);
    let result = reader
        .await
        .map_err(|e| format!("reader task: {e}"))
        .and_then(|r| r);
    let _ = docker.remove_container(&id, true).await;
    match stream_err {
        Some(e) => Err(e),
        None => result,
    }
}

/// A blocking reader over chunks sent by the async export stream.
struct ChannelReader<'a> {
    rx: &'a mut tokio::sync::mpsc::Receiver<Vec<u8>>,
    buf: Vec<u8>,
    pos: usize,
}

impl std::io::Read for ChannelReader<'_> {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        while self.pos >= self.buf.len() {
            match self.rx.blocking_recv() {
                Some(b) => {
                    self.buf = b;
                    self.pos = 0;
                }
                None => return Ok(0),
            }
        }
        let n = out.len().min(self.buf.len() - self.pos);
        out[..n].copy_from_slice(&self.buf[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// Environment and build-argument names that hold secrets.
fn secret_name(key: &str) -> bool {
    let k = key.to_ascii_uppercase();
    if k.ends_with("_FILE") || k.ends_with("_PATH") {
        return false;
    }
    [
        "PASSWORD",
        "PASSWD",
        "SECRET",
        "TOKEN",
        "API_KEY",
        "APIKEY",
        "PRIVATE_KEY",
        "ACCESS_KEY",
        "CREDENTIAL",
    ]
    .iter()
    .any(|s| k.contains(s))
}

fn mask(v: &str) -> String {
    let shown: String = v.chars().take(2).collect();
    format!("{shown}… ({} chars)", v.chars().count())
}

/// The shell command of a history entry without Docker's `/bin/sh -c #(nop)` wrapping.
fn command_of(created_by: &str) -> &str {
    let c = created_by.trim();
    let c = c.strip_prefix("/bin/sh -c ").unwrap_or(c);
    c.strip_prefix("#(nop) ").unwrap_or(c).trim()
}

/// All checks of one image.
pub fn checks(f: &ImageFacts, allowed_registries: &[String]) -> Vec<Outcome> {
    let cfg = f.inspect.config.clone().unwrap_or_default();
    let mut out = Vec::new();

    let user = cfg.user.clone().unwrap_or_default();
    let root = user.is_empty()
        || user == "0"
        || user == "root"
        || user.starts_with("0:")
        || user.starts_with("root:");
    out.push(I_4_1.check(
        !root,
        if user.is_empty() {
            "no USER in the image: containers run as root unless started with --user".to_string()
        } else {
            format!("USER {user}")
        },
    ));

    out.push(registry_outcome(&I_4_2, &f.ref_info(), allowed_registries));

    let test = cfg
        .healthcheck
        .as_ref()
        .and_then(|h| h.test.clone())
        .unwrap_or_default();
    let health = !test.is_empty() && test.first().map(String::as_str) != Some("NONE");
    out.push(I_4_6.check(
        health,
        if health {
            format!("HEALTHCHECK {test:?}")
        } else {
            "no HEALTHCHECK in the image".to_string()
        },
    ));

    let update_alone: Vec<String> = f
        .history
        .iter()
        .map(|h| command_of(h))
        .filter(|c| {
            let has_update = [
                "apt-get update",
                "apt update",
                "apk update",
                "yum update",
                "dnf update",
                "zypper refresh",
            ]
            .iter()
            .any(|u| c.contains(u));
            let has_install = ["install", "apk add", "upgrade", "zypper in"]
                .iter()
                .any(|i| c.contains(i));
            has_update && !has_install
        })
        .map(str::to_string)
        .collect();
    out.push(I_4_7.check(
        update_alone.is_empty(),
        if update_alone.is_empty() {
            format!(
                "{} history entries, none updates without installing",
                f.history.len()
            )
        } else {
            format!(
                "update without install in the same layer: {}",
                update_alone.join(" | ")
            )
        },
    ));

    out.push(match &f.setid_files {
        Err(why) => I_4_8.warn(format!("files not read: {why}")),
        Ok(files) if files.is_empty() => I_4_8.pass("no file with the setuid or setgid bit"),
        Ok(files) => I_4_8.fail(format!(
            "{} file(s) with setuid/setgid: {}",
            files.len(),
            files
                .iter()
                .map(|(p, m)| format!("{p} ({m:o})"))
                .collect::<Vec<_>>()
                .join(", ")
        )),
    });

    // The oldest entry of most images is the base root filesystem (ADD file:... in /).
    let adds: Vec<String> = f
        .history
        .iter()
        .enumerate()
        .map(|(i, h)| (i, command_of(h)))
        .filter(|(i, c)| {
            let url = c.contains("http://") || c.contains("https://");
            let base_rootfs =
                i + 1 == f.history.len() && (c.ends_with(" in /") || c.contains(" in / "));
            c.starts_with("ADD ") && (url || !base_rootfs)
        })
        .map(|(_, c)| c.to_string())
        .collect();
    out.push(I_4_9.check(
        adds.is_empty(),
        if adds.is_empty() {
            "no ADD instructions besides the base root filesystem".to_string()
        } else {
            format!("ADD used: {}", adds.join(" | "))
        },
    ));

    let mut secrets = Vec::new();
    for e in cfg.env.clone().unwrap_or_default() {
        if let Some((k, v)) = e.split_once('=') {
            if secret_name(k) && !v.is_empty() {
                secrets.push(format!("ENV {k}={}", mask(v)));
            }
        }
    }
    for h in &f.history {
        // Build arguments show as "|N KEY=VALUE ... /bin/sh -c ..." in RUN entries.
        let c = h.trim();
        if let Some(rest) = c.strip_prefix('|') {
            for word in rest.split_whitespace().skip(1) {
                let Some((k, v)) = word.split_once('=') else {
                    break;
                };
                if secret_name(k) && !v.is_empty() {
                    secrets.push(format!("build arg {k}={}", mask(v)));
                }
            }
        }
        let cmd = command_of(c);
        if let Some(kv) = cmd
            .strip_prefix("ENV ")
            .or_else(|| cmd.strip_prefix("ARG "))
        {
            for word in kv.split_whitespace() {
                if let Some((k, v)) = word.split_once('=') {
                    let v = v.trim_matches('"');
                    if secret_name(k)
                        && !v.is_empty()
                        && !secrets.iter().any(|s| s.contains(&format!(" {k}=")))
                    {
                        secrets.push(format!("history {k}={}", mask(v)));
                    }
                }
            }
        }
    }
    secrets.sort();
    secrets.dedup();
    out.push(I_4_10.check(
        secrets.is_empty(),
        if secrets.is_empty() {
            "no secret-like ENV, ARG or build argument with a value".to_string()
        } else {
            format!("secret-like values in the image: {}", secrets.join(", "))
        },
    ));

    let r = &f.reference;
    let last = r.rsplit('/').next().unwrap_or(r);
    let pinned = r.contains("@sha256:") || (last.contains(':') && !last.ends_with(":latest"));
    let by_id = r.starts_with("sha256:");
    out.push(if by_id {
        I_TAG.pass("referenced by image id")
    } else {
        I_TAG.check(
            pinned,
            if pinned {
                format!("{r} is a fixed tag or digest")
            } else {
                format!("{r} resolves to :latest, which changes under the same name")
            },
        )
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use rampart_container::models::{HealthConfig, ImageConfig};
    use rampart_event::ComplianceStatus;

    #[test]
    fn registry_normalisation() {
        assert_eq!(registry_of("nginx:1.25"), "docker.io");
        assert_eq!(registry_of("library/nginx"), "docker.io");
        assert_eq!(registry_of("user/app:1"), "docker.io");
        assert_eq!(registry_of("ghcr.io/org/app:1"), "ghcr.io");
        assert_eq!(registry_of("localhost:5000/app"), "localhost:5000");
        assert_eq!(registry_of("localhost/app"), "localhost");
        assert_eq!(
            registry_of("reg.example.com/a/b@sha256:00"),
            "reg.example.com"
        );
    }

    fn status(outs: &[Outcome], id: &str) -> ComplianceStatus {
        outs.iter()
            .find(|o| o.def.id == id)
            .map(|o| o.status)
            .expect(id)
    }

    #[test]
    fn image_checks_both_ways() {
        let bad = ImageFacts {
            reference: "app".into(),
            inspect: ImageInspect {
                id: Some("sha256:1".into()),
                config: Some(ImageConfig {
                    env: Some(vec!["DB_PASSWORD=hunter22".into(), "PATH=/bin".into()]),
                    ..ImageConfig::default()
                }),
                ..ImageInspect::default()
            },
            history: vec![
                "|1 API_TOKEN=abcdef /bin/sh -c make".into(),
                "/bin/sh -c apt-get update".into(),
                "/bin/sh -c #(nop) ADD https://example.com/x.tgz /opt/".into(),
                "/bin/sh -c #(nop) ADD file:abc in / ".into(),
            ],
            setid_files: Ok(vec![("/bin/su".into(), 0o4755)]),
        };
        let outs = checks(&bad, &["registry.example.com".into()]);
        for id in [
            "4.1",
            "4.2",
            "4.6",
            "4.7",
            "4.8",
            "4.9",
            "4.10",
            "RAMPART-I-TAG",
        ] {
            assert_eq!(status(&outs, id), ComplianceStatus::Fail, "{id}");
        }
        let secrets = outs.iter().find(|o| o.def.id == "4.10").expect("4.10");
        assert!(
            secrets.evidence.contains("ENV DB_PASSWORD=hu…"),
            "{}",
            secrets.evidence
        );
        assert!(
            secrets.evidence.contains("build arg API_TOKEN=ab…"),
            "{}",
            secrets.evidence
        );
        assert!(!secrets.evidence.contains("hunter22"));

        let good = ImageFacts {
            reference: "registry.example.com/app:1.2".into(),
            inspect: ImageInspect {
                id: Some("sha256:2".into()),
                config: Some(ImageConfig {
                    user: Some("10001".into()),
                    healthcheck: Some(HealthConfig {
                        test: Some(vec!["CMD".into(), "true".into()]),
                        ..HealthConfig::default()
                    }),
                    env: Some(vec!["PASSWORD_FILE=/run/secrets/db".into()]),
                    ..ImageConfig::default()
                }),
                ..ImageInspect::default()
            },
            history: vec![
                "/bin/sh -c apt-get update && apt-get install -y curl".into(),
                "/bin/sh -c #(nop) COPY file:1 in /app".into(),
                "/bin/sh -c #(nop) ADD file:abc in / ".into(),
            ],
            setid_files: Ok(vec![]),
        };
        let outs = checks(&good, &["registry.example.com".into()]);
        for id in [
            "4.1",
            "4.2",
            "4.6",
            "4.7",
            "4.8",
            "4.9",
            "4.10",
            "RAMPART-I-TAG",
        ] {
            assert_eq!(status(&outs, id), ComplianceStatus::Pass, "{id}");
        }
    }
}
