//! Mesh overhead: the same client and backend talking directly and through the two proxies
//! (outbound on "vps1", inbound on "vps2", TLS 1.3 between them), on loopback, in the same run.
//!
//! `cargo bench -p rampart-mesh --bench mesh` (results and how to read them: docs/benchmarks.md).
//! Environment: MESH_BENCH_BULK_MIB (default 256), MESH_BENCH_REQUESTS (default 5000),
//! MESH_BENCH_CONNECTS (default 300).

#[path = "../tests/support/mod.rs"]
mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use rampart_mesh::Mesh;
use support::{config, RunningProxy, TestCa};

const REQ: usize = 64;

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// 'B' + u64 length: reads that many bytes, answers one byte. 'E': echoes 64-byte requests.
fn backend() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let a = l.local_addr().expect("addr");
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { continue };
            let _ = s.set_nodelay(true);
            std::thread::spawn(move || {
                let mut kind = [0u8; 1];
                if s.read_exact(&mut kind).is_err() {
                    return;
                }
                if kind[0] == b'B' {
                    let mut len = [0u8; 8];
                    if s.read_exact(&mut len).is_err() {
                        return;
                    }
                    let mut left = u64::from_be_bytes(len);
                    let mut buf = vec![0u8; 256 * 1024];
                    while left > 0 {
                        match s.read(&mut buf) {
                            Ok(0) | Err(_) => return,
                            Ok(n) => left -= n as u64,
                        }
                    }
                    let _ = s.write_all(b"k");
                } else {
                    let mut buf = [0u8; REQ];
                    while s.read_exact(&mut buf).is_ok() {
                        if s.write_all(&buf).is_err() {
                            return;
                        }
                    }
                }
            });
        }
    });
    a
}

/// A plain TCP relay to `to` on its own thread and single-threaded runtime, copying as the
/// proxy does (tokio's bidirectional copy, 64 KiB per direction) but without TLS: two of them
/// in a row are the mesh's three TCP connections without the mesh, the bound user-space TLS
/// cannot beat.
fn relay(to: SocketAddr) -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let a = l.local_addr().expect("addr");
    l.set_nonblocking(true).expect("nonblocking");
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async move {
            let l = tokio::net::TcpListener::from_std(l).expect("listener");
            while let Ok((mut down, _)) = l.accept().await {
                tokio::spawn(async move {
                    let Ok(mut up) = tokio::net::TcpStream::connect(to).await else {
                        return;
                    };
                    let _ = (down.set_nodelay(true), up.set_nodelay(true));
                    let _ = tokio::io::copy_bidirectional_with_sizes(
                        &mut down,
                        &mut up,
                        64 * 1024,
                        64 * 1024,
                    )
                    .await;
                });
            }
        });
    });
    a
}

/// CPU time (user + system, every thread of this process: client, backend, both proxies, and
/// the loopback's softirq work done in their system calls) used so far.
fn cpu() -> Duration {
    // SAFETY: getrusage fills the struct it is given.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(u.ru_utime) + tv(u.ru_stime)
}

/// (MiB/s of wall time, CPU milliseconds per GiB) of one bulk transfer.
fn bulk_cost(to: SocketAddr, bytes: u64) -> (f64, f64) {
    let c = cpu();
    let rate = bulk(to, bytes);
    let used = cpu().saturating_sub(c).as_secs_f64() * 1e3;
    (rate, used / (bytes as f64 / (1u64 << 30) as f64))
}

fn bulk(to: SocketAddr, bytes: u64) -> f64 {
    let mut s = TcpStream::connect(to).expect("connect");
    let chunk = vec![0x5au8; 256 * 1024];
    let t = Instant::now();
    s.write_all(b"B").expect("w");
    s.write_all(&bytes.to_be_bytes()).expect("w");
    let mut left = bytes;
    while left > 0 {
        let n = left.min(chunk.len() as u64) as usize;
        s.write_all(&chunk[..n]).expect("write");
        left -= n as u64;
    }
    let mut k = [0u8; 1];
    s.read_exact(&mut k).expect("ack");
    bytes as f64 / t.elapsed().as_secs_f64() / (1024.0 * 1024.0)
}

fn latencies(to: SocketAddr, n: usize) -> Vec<Duration> {
    let mut s = TcpStream::connect(to).expect("connect");
    s.set_nodelay(true).expect("nodelay");
    s.write_all(b"E").expect("w");
    let req = [7u8; REQ];
    let mut resp = [0u8; REQ];
    // Warm up (the mesh's first request also carries the handshake's tail).
    for _ in 0..50 {
        s.write_all(&req).expect("w");
        s.read_exact(&mut resp).expect("r");
    }
    let mut v = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        s.write_all(&req).expect("w");
        s.read_exact(&mut resp).expect("r");
        v.push(t.elapsed());
    }
    v.sort();
    v
}

/// Connect and complete one request/response: what an application sees as connection setup
/// (through the mesh: both TCP connects, the TLS 1.3 handshake with client certificate,
/// the policy check, the backend connect).
fn setups(to: SocketAddr, n: usize) -> Vec<Duration> {
    let mut v = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        let mut s = TcpStream::connect(to).expect("connect");
        s.set_nodelay(true).expect("nodelay");
        s.write_all(b"E").expect("w");
        s.write_all(&[1u8; REQ]).expect("w");
        let mut r = [0u8; REQ];
        s.read_exact(&mut r).expect("r");
        v.push(t.elapsed());
    }
    v.sort();
    v
}

fn pct(v: &[Duration], p: f64) -> Duration {
    v[((v.len() as f64 * p) as usize).min(v.len() - 1)]
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let bulk_bytes = env("MESH_BENCH_BULK_MIB", 256) as u64 * 1024 * 1024;
    let requests = env("MESH_BENCH_REQUESTS", 5000);
    let connects = env("MESH_BENCH_CONNECTS", 300);

    let dir = tempfile::tempdir().expect("tempdir");
    let ca = TestCa::new(&dir.path().join("ca"));
    let target = backend();
    let (inbound, outbound) = (free_port(), free_port());
    let common = format!(
        "fleet: acme\nca: {}\npolicy: ['frontend@vps1 -> backend@vps2:5432']\n",
        dir.path().join("ca/ca.crt").display()
    );
    let c1 = config(&format!(
        "{common}host: vps1\npeers: {{vps2: '127.0.0.1:{inbound}'}}\n\
         workloads: {{frontend: [127.0.0.1]}}\n\
         outbound: [{{listen: '127.0.0.1:{outbound}', to: backend@vps2:5432}}]\n"
    ));
    let c2 = config(&format!(
        "{common}host: vps2\ninbound: '127.0.0.1:{inbound}'\n\
         services: [{{name: backend, port: 5432, target: '{target}'}}]\n"
    ));
    let _p2 = RunningProxy::start(
        None,
        Mesh::new(c2, ca.cert(), ca.clone(), None).expect("m2"),
    );
    let _p1 = RunningProxy::start(
        None,
        Mesh::new(c1, ca.cert(), ca.clone(), None).expect("m1"),
    );
    let mesh: SocketAddr = format!("127.0.0.1:{outbound}").parse().expect("addr");

    println!(
        "rampart-mesh bench: loopback, {} cores, bulk {} MiB, {requests} requests of {REQ} B, {connects} connects",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        bulk_bytes >> 20
    );
    // Alternate, best of three for bulk (the machine is shared). The CPU cost per GiB is the
    // figure that survives a loaded machine: on two otherwise idle cores a CPU-bound transfer
    // runs at (2 cores / cost), so the cost ratio predicts the throughput ratio there.
    let relays = relay(relay(target));
    let (mut bd, mut bm, mut br) = (0f64, 0f64, 0f64);
    let (mut cd, mut cm, mut cr) = (f64::MAX, f64::MAX, f64::MAX);
    for _ in 0..3 {
        let (r, c) = bulk_cost(target, bulk_bytes);
        (bd, cd) = (bd.max(r), cd.min(c));
        let (r, c) = bulk_cost(mesh, bulk_bytes);
        (bm, cm) = (bm.max(r), cm.min(c));
        let (r, c) = bulk_cost(relays, bulk_bytes);
        (br, cr) = (br.max(r), cr.min(c));
    }
    println!("bulk throughput   direct {bd:8.0} MiB/s   mesh {bm:8.0} MiB/s   ratio {:.2}x (target >= 0.70x)", bm / bd);
    println!(
        "bulk CPU cost     direct {cd:8.0} ms/GiB  mesh {cm:8.0} ms/GiB  direct/mesh {:.2}x",
        cd / cm
    );
    println!(
        "two plain relays  {br:8.0} MiB/s ({:.2}x of direct), {cr:8.0} ms/GiB (direct/relays {:.2}x): the three TCP connections without TLS",
        br / bd,
        cd / cr
    );

    let ld = latencies(target, requests);
    let lm = latencies(mesh, requests);
    for (name, p) in [("p50", 0.50), ("p99", 0.99)] {
        let (d, m) = (pct(&ld, p), pct(&lm, p));
        println!(
            "request {name}       direct {:8.1} us      mesh {:8.1} us      added {:+.1} us{}",
            us(d),
            us(m),
            us(m) - us(d),
            if name == "p50" {
                " (target < +1000 us)"
            } else {
                ""
            }
        );
    }
    let sd = setups(target, connects);
    let sm = setups(mesh, connects);
    for (name, p) in [("p50", 0.50), ("p99", 0.99)] {
        let (d, m) = (pct(&sd, p), pct(&sm, p));
        println!(
            "connect+1st {name}   direct {:8.1} us      mesh {:8.1} us      added {:+.1} us",
            us(d),
            us(m),
            us(m) - us(d)
        );
    }
}
