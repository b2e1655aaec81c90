//! A mirror of osv.dev's export bucket on loopback, for `db update` tests: serves
//! `/<ecosystem>/all.zip` with ETag and Last-Modified, answers conditional requests with 304 the
//! way Google Cloud Storage does (If-None-Match first, then If-Modified-Since), and can misbehave
//! on demand (hang before or during the body, cut the body short).
//!
//! Written on std's TcpListener rather than an HTTP framework: the tests need byte-level control
//! of what goes on the wire (a body cut mid-way, a server that stops sending).
#![allow(dead_code, reason = "each test binary uses a part")]

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How a resource is served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Behaviour {
    Normal,
    /// Read the request, then send nothing.
    HangBeforeHeaders,
    /// Send the headers and half the body, then nothing.
    HangMidBody,
    /// Send the headers (full Content-Length) and half the body, then close.
    CutBody,
}

#[derive(Debug, Clone)]
pub struct Resource {
    pub body: Vec<u8>,
    pub etag: Option<String>,
    pub last_modified: Option<String>,
    pub behaviour: Behaviour,
}

/// One request as received.
#[derive(Debug, Clone)]
pub struct Request {
    pub path: String,
    pub headers: HashMap<String, String>,
    pub status: u16,
}

type Hook = Box<dyn Fn(&str, &mut HashMap<String, Resource>) + Send>;

#[derive(Default)]
struct State {
    resources: HashMap<String, Resource>,
    log: Vec<Request>,
    /// Runs after a request for the path is answered: lets a test change the mirror mid-update.
    after: Option<Hook>,
}

pub struct OsvServer {
    pub base: String,
    state: Arc<Mutex<State>>,
    stop: Arc<AtomicBool>,
}

impl OsvServer {
    pub fn start() -> OsvServer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let state = Arc::new(Mutex::new(State::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let (st, sp) = (state.clone(), stop.clone());
        listener.set_nonblocking(true).unwrap();
        std::thread::spawn(move || {
            // Bounded: the test's server stops with the test (drop) or after 10 minutes.
            let deadline = std::time::Instant::now() + Duration::from_secs(600);
            while !sp.load(Ordering::Relaxed) && std::time::Instant::now() < deadline {
                match listener.accept() {
                    Ok((s, _)) => {
                        let (st, sp) = (st.clone(), sp.clone());
                        std::thread::spawn(move || serve(s, &st, &sp));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        OsvServer { base, state, stop }
    }

    pub fn put(&self, path: &str, r: Resource) {
        self.state
            .lock()
            .unwrap()
            .resources
            .insert(path.to_string(), r);
    }

    /// Serves `body` at `/<eco>/all.zip` with an ETag and a Last-Modified date.
    pub fn put_zip(&self, eco: &str, body: Vec<u8>, etag: &str) {
        self.put(
            &format!("/{}/all.zip", eco.replace(' ', "%20")),
            Resource {
                body,
                etag: Some(format!("\"{etag}\"")),
                last_modified: Some("Mon, 01 Dec 2026 10:00:00 GMT".into()),
                behaviour: Behaviour::Normal,
            },
        );
    }

    pub fn set_behaviour(&self, path: &str, b: Behaviour) {
        if let Some(r) = self.state.lock().unwrap().resources.get_mut(path) {
            r.behaviour = b;
        }
    }

    pub fn after(&self, hook: impl Fn(&str, &mut HashMap<String, Resource>) + Send + 'static) {
        self.state.lock().unwrap().after = Some(Box::new(hook));
    }

    pub fn log(&self) -> Vec<Request> {
        self.state.lock().unwrap().log.clone()
    }

    pub fn clear_log(&self) {
        self.state.lock().unwrap().log.clear();
    }
}

impl Drop for OsvServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn serve(s: TcpStream, state: &Mutex<State>, stop: &AtomicBool) {
    let _ = s.set_nonblocking(false);
    let _ = s.set_read_timeout(Some(Duration::from_secs(30)));
    let mut reader = BufReader::new(s.try_clone().unwrap());
    let mut out = s;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let path = line.split_whitespace().nth(1).unwrap_or("/").to_string();
        let mut headers = HashMap::new();
        loop {
            let mut h = String::new();
            if reader.read_line(&mut h).unwrap_or(0) == 0 {
                return;
            }
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':') {
                headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
            }
        }
        let resource = state.lock().unwrap().resources.get(&path).cloned();
        let status = match &resource {
            None => 404,
            Some(r) => {
                let inm = headers.get("if-none-match");
                let ims = headers.get("if-modified-since");
                // RFC 9110 13.2.2: If-None-Match wins over If-Modified-Since.
                if let (Some(inm), Some(etag)) = (inm, &r.etag) {
                    if inm == etag || inm == "*" {
                        304
                    } else {
                        200
                    }
                } else if let (None, Some(ims), Some(lm)) = (inm, ims, &r.last_modified) {
                    if ims == lm {
                        304
                    } else {
                        200
                    }
                } else {
                    200
                }
            }
        };
        state.lock().unwrap().log.push(Request {
            path: path.clone(),
            headers,
            status,
        });
        let behaviour = resource
            .as_ref()
            .map(|r| r.behaviour)
            .unwrap_or(Behaviour::Normal);
        if behaviour == Behaviour::HangBeforeHeaders {
            hang(stop);
            return;
        }
        let mut head = format!(
            "HTTP/1.1 {status} {}\r\n",
            if status == 200 {
                "OK"
            } else if status == 304 {
                "Not Modified"
            } else {
                "Not Found"
            }
        );
        if let Some(r) = &resource {
            if let Some(e) = &r.etag {
                head.push_str(&format!("ETag: {e}\r\n"));
            }
            if let Some(l) = &r.last_modified {
                head.push_str(&format!("Last-Modified: {l}\r\n"));
            }
        }
        let body: &[u8] = match (&resource, status) {
            (Some(r), 200) => &r.body,
            _ => b"",
        };
        head.push_str(&format!(
            "Content-Type: application/zip\r\nContent-Length: {}\r\n\r\n",
            body.len()
        ));
        if out.write_all(head.as_bytes()).is_err() {
            return;
        }
        match behaviour {
            Behaviour::HangMidBody => {
                let _ = out.write_all(&body[..body.len() / 2]);
                let _ = out.flush();
                hang(stop);
                return;
            }
            Behaviour::CutBody => {
                let _ = out.write_all(&body[..body.len() / 2]);
                return;
            }
            _ => {
                if out.write_all(body).is_err() {
                    return;
                }
            }
        }
        let _ = out.flush();
        let mut st = state.lock().unwrap();
        let State {
            resources, after, ..
        } = &mut *st;
        if let Some(hook) = after {
            hook(&path, resources);
        }
    }
}

fn hang(stop: &AtomicBool) {
    for _ in 0..600 {
        if stop.load(Ordering::Relaxed) {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A zip of the `.json` files of `dir`, named as osv.dev names them (`<ID>.json`, flat).
pub fn zip_dir(dir: &Path) -> Vec<u8> {
    let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| e.file_name().to_string_lossy().ends_with(".json"))
        .map(|e| {
            (
                e.file_name().to_string_lossy().into_owned(),
                std::fs::read(e.path()).unwrap(),
            )
        })
        .collect();
    files.sort();
    zip_of(
        &files
            .iter()
            .map(|(n, d)| (n.as_str(), d.as_slice()))
            .collect::<Vec<_>>(),
    )
}

/// A deflated zip of `(name, data)` members.
pub fn zip_of(members: &[(&str, &[u8])]) -> Vec<u8> {
    let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let opts = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated);
    for (name, data) in members {
        w.start_file(*name, opts).unwrap();
        w.write_all(data).unwrap();
    }
    w.finish().unwrap().into_inner()
}

/// The test's OSV fixture directory of `eco`.
pub fn fixtures(eco: &str) -> std::path::PathBuf {
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    let scan = if here.ends_with("rampart-scan") {
        here.to_path_buf()
    } else {
        here.join("../rampart-scan")
    };
    scan.join("tests/data/osv").join(eco)
}

/// Reads a response body fully (for tests that talk to the server directly).
pub fn read_all(mut r: impl Read) -> Vec<u8> {
    let mut v = Vec::new();
    r.read_to_end(&mut v).unwrap();
    v
}
