//! JSON lines appended to a file.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::PathBuf;

use super::{BoxFuture, Delivered, Output, OutputError};
use crate::queue::Entry;

/// Appends each record as one line to a file (created 0600) and fsyncs every batch before
/// reporting it delivered. When the path no longer names the open file (logrotate moved it), a
/// new file is created at the path.
#[derive(Debug)]
pub struct FileOutput {
    name: String,
    path: PathBuf,
    file: Option<File>,
}

impl FileOutput {
    pub fn new(name: impl Into<String>, path: PathBuf) -> FileOutput {
        FileOutput {
            name: name.into(),
            path,
            file: None,
        }
    }
}

fn open(path: &std::path::Path) -> std::io::Result<File> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)
}

/// The open file still is the one at `path`.
fn same_file(file: &File, path: &std::path::Path) -> bool {
    match (file.metadata(), std::fs::metadata(path)) {
        (Ok(a), Ok(b)) => a.ino() == b.ino() && a.dev() == b.dev(),
        _ => false,
    }
}

impl Output for FileOutput {
    fn name(&self) -> &str {
        &self.name
    }

    fn send<'a>(&'a mut self, batch: &'a [Entry]) -> BoxFuture<'a, Result<Delivered, OutputError>> {
        Box::pin(async move {
            let mut buf = Vec::with_capacity(batch.iter().map(|e| e.payload.len() + 1).sum());
            for e in batch {
                buf.extend_from_slice(&e.payload);
                buf.push(b'\n');
            }
            let path = self.path.clone();
            let file = self.file.take();
            let len = buf.len() as u64;
            let res = tokio::task::spawn_blocking(move || -> std::io::Result<File> {
                let mut f = match file {
                    Some(f) if same_file(&f, &path) => f,
                    _ => open(&path)?,
                };
                // On a failed write (disk full), cut the partial batch off again, so that the retry
                // does not leave half a line behind.
                let start = f.metadata()?.len();
                if let Err(e) = f.write_all(&buf).and_then(|()| f.sync_data()) {
                    let _ = f.set_len(start);
                    return Err(e);
                }
                Ok(f)
            })
            .await
            .map_err(|e| OutputError::new(&self.name, e.to_string()))?;
            match res {
                Ok(f) => {
                    self.file = Some(f);
                    Ok(Delivered {
                        bytes: len,
                        ..Delivered::default()
                    })
                }
                Err(e) => Err(OutputError::new(
                    &self.name,
                    format!("writing {}: {e}", self.path.display()),
                )),
            }
        })
    }
}
