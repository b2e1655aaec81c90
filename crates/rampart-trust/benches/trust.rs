//! Verification and admission-decision latency, each against a baseline measured in the same
//! run:
//!
//! * `verify` (tag -> digest, signature manifest, payload blob, referrers: five registry round
//!   trips and an ECDSA verification) against one manifest GET of the same registry, and the
//!   signature check alone against SHA-256 of the manifest;
//! * an admission decision for `docker create` of a signed image (configuration rules, signature
//!   verdict cached, cached scan) over the plugin socket, against a no-op request (a call the
//!   plugin allows without looking) on the same socket; and the same decision with the verdict
//!   not cached (registry round trips included).
//!
//! * the same cached decision while a cold scan of another image (the Debian test image, its
//!   inventory removed from the cache before each round) runs in the same plugin, against the
//!   no-op request measured in the same run (issue 15: no global lock on decisions).
//!
//! Needs root, dockerd and Debian's docker-registry. Run:
//! `cargo bench -p rampart-trust --bench trust`

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use rampart_trust::authz::{serve, AdmissionPolicy, Engine, EngineConfig};
use rampart_trust::{sign, verify, ImageRef, PrivateKey, Registry, SignForm};

fn percentile(mut v: Vec<Duration>, p: f64) -> Duration {
    v.sort();
    v[((v.len() as f64 - 1.0) * p) as usize]
}

fn measure(n: usize, mut f: impl FnMut()) -> (Duration, Duration) {
    for _ in 0..n / 10 + 1 {
        f();
    }
    let mut v = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        f();
        v.push(t.elapsed());
    }
    (percentile(v.clone(), 0.5), percentile(v, 0.99))
}

fn report(name: &str, base: (Duration, Duration), x: (Duration, Duration)) {
    println!(
        "{name:<58} p50 {:>9.3} ms  p99 {:>9.3} ms | baseline p50 {:>8.3} ms p99 {:>8.3} ms | ratio p50 {:>7.1}x, added p50 {:>8.3} ms",
        x.0.as_secs_f64() * 1e3,
        x.1.as_secs_f64() * 1e3,
        base.0.as_secs_f64() * 1e3,
        base.1.as_secs_f64() * 1e3,
        x.0.as_secs_f64() / base.0.as_secs_f64().max(1e-9),
        (x.0.as_secs_f64() - base.0.as_secs_f64()) * 1e3
    );
}

/// One HTTP/1.1 POST on a kept-alive unix-socket connection; returns the body.
fn post(conn: &mut BufReader<UnixStream>, path: &str, body: &[u8]) -> Vec<u8> {
    let req = format!(
        "POST {path} HTTP/1.1\r\nHost: plugin\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    let s = conn.get_mut();
    s.write_all(req.as_bytes()).expect("write");
    s.write_all(body).expect("write");
    let mut len = 0usize;
    loop {
        let mut line = String::new();
        conn.read_line(&mut line).expect("read");
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        if let Some(v) = l.to_ascii_lowercase().strip_prefix("content-length:") {
            len = v.trim().parse().expect("length");
        }
    }
    let mut buf = vec![0; len];
    conn.read_exact(&mut buf).expect("body");
    buf
}

fn main() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 || !Path::new("/usr/bin/docker-registry").exists() {
        eprintln!("needs root, dockerd and docker-registry");
        return;
    }
    let dir = tempfile::tempdir().expect("tmp");
    let d = dir.path();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("port")
        .port();
    std::fs::write(
        d.join("config.yml"),
        format!("version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: 127.0.0.1:{port}\n", d.join("data").display()),
    )
    .expect("cfg");
    let mut registry = Command::new("/usr/bin/docker-registry")
        .args(["serve", &d.join("config.yml").display().to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("registry");
    let end = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(50));
    }
    let host = format!("127.0.0.1:{port}");
    let image = format!("{host}/bench/app:v1");
    let base = testkit::busybox_image();
    testkit::docker_ok(["tag", base.as_str(), image.as_str()]);
    testkit::docker_ok(["push", "-q", image.as_str()]);

    let key = PrivateKey::generate();
    std::fs::write(d.join("k.pub"), key.public().to_pem().expect("pem")).expect("w");
    let reg = Registry::new(&host);
    let r = ImageRef::parse(&image).expect("ref");
    let digest = sign(&reg, &r, &key, SignForm::SimpleSigning, Default::default()).expect("sign");
    let keys = vec![key.public()];
    let manifest = reg
        .manifest(&r.repository, "v1")
        .expect("get")
        .expect("manifest");

    println!("rampart-trust benchmark (busybox image in a local docker-registry, {host})");
    let n = 300;
    let sha = measure(n * 10, || {
        std::hint::black_box(rampart_trust::sha256_digest(&manifest.bytes));
    });
    let payload = rampart_trust::simple_signing_payload(&r, &digest, &Default::default());
    let sig = key.sign(&payload);
    let check = measure(n * 10, || {
        assert!(keys[0].verify(&payload, &sig));
    });
    report(
        "signature check (ECDSA P-256) vs sha256 of the manifest",
        sha,
        check,
    );
    let get = measure(n, || {
        reg.manifest(&r.repository, "v1").expect("get");
    });
    let ver = measure(n, || {
        verify(&reg, &r, &keys, None).expect("verifies");
    });
    report("verify REF:tag (registry) vs one manifest GET", get, ver);

    // The plugin, in process, on a temporary socket.
    std::fs::write(
        d.join("trust.yaml"),
        format!("images:\n  - match: \"{host}/*\"\n    keys: [k.pub]\n"),
    )
    .expect("w");
    std::fs::write(
        d.join("admission.yaml"),
        "trust: trust.yaml\nrules: [signed, scanned, privileged, host-namespaces, sensitive-mounts, non-root, limits, seccomp, capabilities]\n",
    )
    .expect("w");
    rampart_scan::VulnDb::open_or_create(&d.join("db")).expect("db");
    let sock = d.join("plugin.sock");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("rt");
    let mut results = Vec::new();
    for ttl in [Duration::from_secs(600), Duration::ZERO] {
        let engine = Engine::new(
            EngineConfig {
                policy: AdmissionPolicy::load(&d.join("admission.yaml")).expect("policy"),
                docker_socket: "/var/run/docker.sock".into(),
                db_path: d.join("db"),
                cache_dir: d.join("cache"),
                verdict_ttl: ttl,
            },
            Box::new(std::io::sink()),
        )
        .expect("engine");
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let s = sock.clone();
        let server = rt.spawn(async move {
            serve(Arc::new(engine), &s, async {
                let _ = rx.await;
            })
            .await
        });
        let end = Instant::now() + Duration::from_secs(10);
        while !sock.exists() && Instant::now() < end {
            std::thread::sleep(Duration::from_millis(10));
        }
        let mut conn = BufReader::new(UnixStream::connect(&sock).expect("connect"));
        let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
        let noop = serde_json::json!({"User":"","RequestMethod":"GET","RequestUri":"/v1.47/_ping"})
            .to_string();
        let create_body = serde_json::json!({"Image": image, "User": "1000", "HostConfig": {"Memory": 67108864, "NanoCpus": 500000000, "PidsLimit": 64}}).to_string();
        let create = serde_json::json!({"User":"","RequestMethod":"POST","RequestUri":"/v1.47/containers/create?name=x","RequestBody": b64(&create_body)}).to_string();
        let first = post(&mut conn, "/AuthZPlugin.AuthZReq", create.as_bytes());
        assert!(
            String::from_utf8_lossy(&first).contains("\"Allow\":true"),
            "{}",
            String::from_utf8_lossy(&first)
        );
        let base = measure(n, || {
            post(&mut conn, "/AuthZPlugin.AuthZReq", noop.as_bytes());
        });
        let dec = measure(n, || {
            let r = post(&mut conn, "/AuthZPlugin.AuthZReq", create.as_bytes());
            assert!(r.starts_with(b"{\"Allow\":true"));
        });
        results.push((ttl, base, dec));
        let _ = tx.send(());
        drop(conn);
        let _ = rt.block_on(server);
    }
    for (ttl, base, dec) in results {
        let name = if ttl.is_zero() {
            "authz create decision, verdict NOT cached vs no-op request"
        } else {
            "authz create decision, verdict cached vs no-op request"
        };
        report(name, base, dec);
    }
    cold_scan(&rt, d, &image);
    let _ = testkit::docker(["rmi", image.as_str()]);
    let _ = registry.kill();
    let _ = registry.wait();
}

/// Decisions for a cached image with and without a concurrent cold scan of another image.
fn cold_scan(rt: &tokio::runtime::Runtime, d: &Path, image: &str) {
    let cold_image = testkit::debian_image();
    std::fs::write(
        d.join("admission-cold.yaml"),
        "trust: trust.yaml\nscan_timeout: 300s\nscan_concurrency: 1\nrules: [signed, scanned, privileged, host-namespaces, sensitive-mounts, non-root, limits]\n",
    )
    .expect("w");
    let cache = d.join("cold-cache");
    let engine = Engine::new(
        EngineConfig {
            policy: AdmissionPolicy::load(&d.join("admission-cold.yaml")).expect("policy"),
            docker_socket: "/var/run/docker.sock".into(),
            db_path: d.join("db"),
            cache_dir: cache.clone(),
            verdict_ttl: Duration::from_secs(3600),
        },
        Box::new(std::io::sink()),
    )
    .expect("engine");
    let sock = d.join("plugin-cold.sock");
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let s = sock.clone();
    let server = rt.spawn(async move {
        serve(Arc::new(engine), &s, async {
            let _ = rx.await;
        })
        .await
    });
    let end = Instant::now() + Duration::from_secs(10);
    while !sock.exists() && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(10));
    }
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let req = |img: &str| {
        let body = serde_json::json!({"Image": img, "User": "1000", "HostConfig": {"Memory": 67108864, "NanoCpus": 500000000, "PidsLimit": 64}}).to_string();
        serde_json::json!({"User":"","RequestMethod":"POST","RequestUri":"/v1.47/containers/create?name=x","RequestBody": b64(&body)}).to_string()
    };
    let (create, cold) = (req(image), req(&cold_image));
    let noop = serde_json::json!({"User":"","RequestMethod":"GET","RequestUri":"/v1.47/_ping"})
        .to_string();
    let mut conn = BufReader::new(UnixStream::connect(&sock).expect("connect"));
    let cold_id = String::from_utf8_lossy(
        &Command::new("docker")
            .args(["image", "inspect", "--format", "{{.Id}}", &cold_image])
            .output()
            .expect("docker")
            .stdout,
    )
    .trim()
    .trim_start_matches("sha256:")
    .to_string();
    let first = post(&mut conn, "/AuthZPlugin.AuthZReq", create.as_bytes());
    assert!(
        first.starts_with(b"{\"Allow\":true"),
        "{}",
        String::from_utf8_lossy(&first)
    );
    let n = 300;
    let base = measure(n, || {
        post(&mut conn, "/AuthZPlugin.AuthZReq", noop.as_bytes());
    });
    let quiet = measure(n, || {
        let r = post(&mut conn, "/AuthZPlugin.AuthZReq", create.as_bytes());
        assert!(r.starts_with(b"{\"Allow\":true"));
    });
    // Rounds: drop the cold image's inventory, start its decision on another connection, and
    // time cached decisions until it answers.
    let (mut during, mut noop_during, mut scans) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..3 {
        for e in std::fs::read_dir(&cache).expect("cache").flatten() {
            if e.file_name().to_string_lossy().contains(&cold_id) {
                let _ = std::fs::remove_file(e.path());
            }
        }
        let (sock2, cold2) = (sock.clone(), cold.clone());
        let t0 = Instant::now();
        let worker = std::thread::spawn(move || {
            let mut c = BufReader::new(UnixStream::connect(&sock2).expect("connect"));
            post(&mut c, "/AuthZPlugin.AuthZReq", cold2.as_bytes());
            t0.elapsed()
        });
        std::thread::sleep(Duration::from_millis(50));
        while !worker.is_finished() {
            let t = Instant::now();
            let r = post(&mut conn, "/AuthZPlugin.AuthZReq", create.as_bytes());
            during.push(t.elapsed());
            assert!(r.starts_with(b"{\"Allow\":true"));
            let t = Instant::now();
            post(&mut conn, "/AuthZPlugin.AuthZReq", noop.as_bytes());
            noop_during.push(t.elapsed());
        }
        scans.push(worker.join().expect("cold decision"));
    }
    println!(
        "cold scans of {cold_image}: {:?} ({} cached decisions timed during them)",
        scans,
        during.len()
    );
    report(
        "authz cached decision, no scan running vs no-op request",
        base,
        quiet,
    );
    report(
        "authz cached decision during a cold scan vs no-op request",
        base,
        (percentile(during.clone(), 0.5), percentile(during, 0.99)),
    );
    report(
        "no-op request during a cold scan vs no-op request",
        base,
        (
            percentile(noop_during.clone(), 0.5),
            percentile(noop_during, 0.99),
        ),
    );
    let _ = tx.send(());
    drop(conn);
    let _ = rt.block_on(server);
}
