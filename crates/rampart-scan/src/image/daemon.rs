//! Images and containers of the local Docker daemon, through the Engine API (rampart-container).
//!
//! `GET /images/{name}/get` streams the same tarball `docker save` writes; `GET
//! /containers/{id}/export` streams the container's file system as one tar. Both are read as
//! they arrive (a bounded channel from the async client to the synchronous reader), so nothing
//! is spooled to disk and memory stays bounded whatever the image size.

use std::io::{self, Read};
use std::sync::mpsc::{sync_channel, Receiver};
use std::thread;

use futures_util::StreamExt;
use rampart_container::{ContainerError, DockerClient};

use super::archive::read_stream;
use super::layer::{read_layer, ReadCtx};
use super::{ImageConfig, ImageError, ImageInfo, LayerInfo, Loaded, RunConfig, SourceKind};

/// What `inspect` says about an image.
pub(crate) struct Inspected {
    pub id: String,
    pub repo_tags: Vec<String>,
    pub repo_digests: Vec<String>,
}

fn runtime(target: &str) -> Result<tokio::runtime::Runtime, ImageError> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| ImageError::Docker {
            target: target.to_string(),
            message: format!("cannot start the async runtime: {e}"),
        })
}

fn docker_error(target: &str, e: ContainerError) -> ImageError {
    if e.is_not_found() {
        return ImageError::NotFound {
            target: target.to_string(),
        };
    }
    ImageError::Docker {
        target: target.to_string(),
        message: e.message(),
    }
}

async fn connect(target: &str) -> Result<DockerClient, ImageError> {
    DockerClient::connect_default()
        .await
        .map_err(|e| docker_error(target, e))
}

/// Inspects an image of the daemon.
pub(crate) fn inspect_image(name: &str) -> Result<Inspected, ImageError> {
    let rt = runtime(name)?;
    rt.block_on(async {
        let docker = connect(name).await?;
        let i = docker
            .inspect_image(name)
            .await
            .map_err(|e| docker_error(name, e))?;
        Ok(Inspected {
            id: i.id.unwrap_or_default(),
            repo_tags: i.repo_tags.unwrap_or_default(),
            repo_digests: i.repo_digests.unwrap_or_default(),
        })
    })
}

/// A synchronous reader over chunks sent by the async export task.
struct ChannelReader {
    rx: Receiver<io::Result<Vec<u8>>>,
    chunk: Vec<u8>,
    pos: usize,
    done: bool,
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.pos >= self.chunk.len() {
            if self.done {
                return Ok(0);
            }
            match self.rx.recv() {
                Ok(Ok(c)) => {
                    self.chunk = c;
                    self.pos = 0;
                }
                Ok(Err(e)) => {
                    self.done = true;
                    return Err(e);
                }
                Err(_) => {
                    self.done = true;
                    return Ok(0);
                }
            }
        }
        let n = buf.len().min(self.chunk.len() - self.pos);
        buf[..n].copy_from_slice(&self.chunk[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

enum Export {
    Image(String),
    Container(String),
}

/// Starts streaming an export in a thread; the reader ends when the stream does. The channel
/// holds at most 16 chunks, so a slow reader slows the daemon down instead of buffering.
fn export(what: Export, target: &str) -> Result<ChannelReader, ImageError> {
    let rt = runtime(target)?;
    let (tx, rx) = sync_channel::<io::Result<Vec<u8>>>(16);
    let target_name = target.to_string();
    thread::Builder::new()
        .name("docker-export".into())
        .spawn(move || {
            rt.block_on(async move {
                let docker = match connect(&target_name).await {
                    Ok(d) => d,
                    Err(e) => {
                        let _ = tx.send(Err(io::Error::other(e.to_string())));
                        return;
                    }
                };
                let mut stream = match &what {
                    Export::Image(n) => docker.export_image(n).boxed(),
                    Export::Container(n) => docker.export_container(n).boxed(),
                };
                while let Some(chunk) = stream.next().await {
                    let item = chunk
                        .map(|b| b.to_vec())
                        .map_err(|e| io::Error::other(format!("docker export: {}", e.message())));
                    let failed = item.is_err();
                    if tx.send(item).is_err() || failed {
                        break;
                    }
                }
            });
        })
        .map_err(|e| ImageError::Docker {
            target: target.to_string(),
            message: format!("cannot start the export thread: {e}"),
        })?;
    Ok(ChannelReader {
        rx,
        chunk: Vec::new(),
        pos: 0,
        done: false,
    })
}

/// Reads an image of the daemon.
pub(crate) fn read_image(name: &str, ctx: &mut ReadCtx<'_>) -> Result<Loaded, ImageError> {
    let inspected = inspect_image(name)?;
    // Export by id: a tag moved between inspect and export must not mix two images.
    let reader = export(Export::Image(inspected.id.clone()), name)?;
    let origin = format!("docker daemon ({name})");
    let mut loaded = read_stream(reader, &origin, name, SourceKind::Daemon, ctx)?;
    if loaded.info.id.as_deref() != Some(inspected.id.as_str()) {
        return Err(ImageError::DigestMismatch {
            what: origin,
            expected: inspected.id,
            actual: loaded.info.id.unwrap_or_default(),
        });
    }
    loaded.info.repo_tags = inspected.repo_tags;
    loaded.info.repo_digests = inspected.repo_digests;
    Ok(loaded)
}

/// Reads a container's file system (one layer) and its configuration.
pub(crate) fn read_container(name: &str, ctx: &mut ReadCtx<'_>) -> Result<Loaded, ImageError> {
    let target = format!("container:{name}");
    let rt = runtime(&target)?;
    let inspect = rt.block_on(async {
        let docker = connect(&target).await?;
        docker
            .inspect_container(name)
            .await
            .map_err(|e| docker_error(&target, e))
    })?;
    drop(rt);
    let id = inspect.id.clone().unwrap_or_else(|| name.to_string());
    let image_name = inspect.config.as_ref().and_then(|c| c.image.clone());
    let config = inspect.config.map(|c| {
        let mut run = RunConfig {
            user: c.user.unwrap_or_default(),
            env: c.env.unwrap_or_default(),
            entrypoint: c.entrypoint.unwrap_or_default(),
            cmd: c.cmd.unwrap_or_default(),
            working_dir: c.working_dir.unwrap_or_default(),
            ..RunConfig::default()
        };
        for p in c.exposed_ports.unwrap_or_default() {
            run.exposed_ports.insert(p, serde_json::json!({}));
        }
        run.labels = c.labels.unwrap_or_default().into_iter().collect();
        run.healthcheck = c.healthcheck.map(|h| super::Healthcheck {
            test: h.test.unwrap_or_default(),
        });
        ImageConfig {
            config: run,
            ..ImageConfig::default()
        }
    });
    let reader = export(Export::Container(id.clone()), &target)?;
    ctx.progress.begin(&format!("exporting {target}"), None);
    let scan = read_layer(reader, &target, ctx)?;
    ctx.progress.end();
    let info = ImageInfo {
        target,
        source: SourceKind::Container,
        id: None,
        repo_tags: image_name.into_iter().collect(),
        repo_digests: Vec::new(),
        config,
        layers: vec![LayerInfo {
            diff_id: scan.diff_id.clone(),
            digest: None,
            size: scan.size,
            compressed_size: scan.compressed_size,
            compression: scan.compression.as_str().to_string(),
            created_by: Some(format!("docker export {id}")),
        }],
    };
    Ok(Loaded {
        info,
        scans: vec![scan],
        order: vec![0],
    })
}
