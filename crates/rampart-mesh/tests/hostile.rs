//! What the inbound proxy does with clients that are not a well-behaved peer proxy: another CA's
//! certificate claiming a fleet identity, no TLS at all, TLS 1.2, a valid identity asking for a
//! service that does not exist, a header that never comes. Loopback only; no root needed.

mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rampart_event::Event;
use rampart_mesh::{Identity, Mesh, SpiffeId};
use rustls::pki_types::{CertificateDer, ServerName};
use support::{config, RunningProxy, TestCa};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

struct Setup {
    ca: Arc<TestCa>,
    inbound: SocketAddr,
    backend_conns: Arc<AtomicUsize>,
    events: std::sync::mpsc::Receiver<Event>,
    _p: RunningProxy,
    _dir: tempfile::TempDir,
}

fn setup() -> Setup {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = TestCa::new(&dir.path().join("ca"));
    let backend = TcpListener::bind("127.0.0.1:0").expect("bind");
    let target = backend.local_addr().expect("addr");
    let backend_conns = Arc::new(AtomicUsize::new(0));
    let n = backend_conns.clone();
    std::thread::spawn(move || {
        for s in backend.incoming() {
            let Ok(mut s) = s else { continue };
            n.fetch_add(1, Ordering::SeqCst);
            let mut b = [0u8; 1024];
            while let Ok(k) = s.read(&mut b) {
                if k == 0 || s.write_all(&b[..k]).is_err() {
                    break;
                }
            }
        }
    });
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("port")
        .port();
    let inbound: SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
    let c = config(&format!(
        "fleet: acme\nhost: vps2\nca: /unused\ninbound: '{inbound}'\n\
         services: [{{name: backend, port: 5432, target: '{target}'}}]\n\
         policy: ['frontend@vps1 -> backend@vps2:5432']\n"
    ));
    let (tx, mut rx) = tokio::sync::mpsc::channel(64);
    let mesh = Mesh::new(c, ca.cert(), ca.clone(), Some(tx)).expect("mesh");
    let p = RunningProxy::start(None, mesh);
    // Forward to a std channel so tests can wait without a runtime.
    let (stx, srx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        while let Some(e) = rx.blocking_recv() {
            if stx.send(e).is_err() {
                break;
            }
        }
    });
    Setup {
        ca,
        inbound,
        backend_conns,
        events: srx,
        _p: p,
        _dir: dir,
    }
}

fn next_reason(s: &Setup) -> (String, String) {
    let e = s
        .events
        .recv_timeout(Duration::from_secs(15))
        .expect("a refusal event");
    let p = e.policy.expect("policy facet");
    (p.reason, p.rule)
}

const TLS13: &[&rustls::SupportedProtocolVersion] = &[&rustls::version::TLS13];
const TLS12: &[&rustls::SupportedProtocolVersion] = &[&rustls::version::TLS12];

fn header(service: &str, port: u16) -> Vec<u8> {
    let mut h = b"RMSH\x01".to_vec();
    h.push(service.len() as u8);
    h.extend_from_slice(service.as_bytes());
    h.extend_from_slice(&port.to_be_bytes());
    h
}

/// Connects as a mesh client with `id`'s certificate, verifying the server with `roots_ca`;
/// sends `payload`, then reads `want` bytes (0: until the server closes).
async fn mesh_client_n(
    want: usize,
    id: &Identity,
    roots_ca: CertificateDer<'static>,
    versions: &[&'static rustls::SupportedProtocolVersion],
    to: SocketAddr,
    payload: &[u8],
) -> std::io::Result<Vec<u8>> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(roots_ca).expect("root");
    let cfg = rustls::ClientConfig::builder_with_protocol_versions(versions)
        .with_root_certificates(roots)
        .with_client_auth_cert(vec![id.cert.clone()], id.key())
        .expect("client config");
    let tcp = tokio::net::TcpStream::connect(to).await?;
    let name = ServerName::try_from("vps2.acme").expect("name");
    let mut tls = tokio_rustls::TlsConnector::from(Arc::new(cfg))
        .connect(name, tcp)
        .await?;
    tls.write_all(payload).await?;
    let mut got = vec![0u8; want];
    let read = async {
        if want == 0 {
            tls.read_to_end(&mut got).await.map(|_| ())
        } else {
            tls.read_exact(&mut got).await.map(|_| ())
        }
    };
    tokio::time::timeout(Duration::from_secs(15), read)
        .await
        .map_err(|_| std::io::Error::other("timeout"))??;
    Ok(got)
}

async fn mesh_client(
    id: &Identity,
    roots_ca: CertificateDer<'static>,
    versions: &[&'static rustls::SupportedProtocolVersion],
    to: SocketAddr,
    payload: &[u8],
) -> std::io::Result<Vec<u8>> {
    mesh_client_n(0, id, roots_ca, versions, to, payload).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_cas_certificate_claiming_a_fleet_identity_is_refused() {
    let s = setup();
    let dir = tempfile::tempdir().expect("tempdir");
    let rogue_ca = TestCa::new(dir.path());
    let claim = SpiffeId::parse("spiffe://acme/vps1/frontend").expect("id");
    let forged =
        Identity::obtain(&*rogue_ca, &claim, false, Duration::from_secs(3600)).expect("forged");
    let payload = [header("backend", 5432), b"hello".to_vec()].concat();
    let r = mesh_client(&forged, s.ca.cert(), TLS13, s.inbound, &payload).await;
    assert!(
        !matches!(&r, Ok(v) if !v.is_empty()),
        "forged identity got data: {r:?}"
    );
    let (reason, rule) = next_reason(&s);
    assert_eq!(reason, "handshake", "{rule}");
    assert_eq!(s.backend_conns.load(Ordering::SeqCst), 0);

    // The same identity from the fleet's CA goes through: the refusal was the issuer's.
    let real = Identity::obtain(&*s.ca, &claim, false, Duration::from_secs(3600)).expect("real");
    let got = mesh_client_n(5, &real, s.ca.cert(), TLS13, s.inbound, &payload)
        .await
        .expect("the fleet's own certificate");
    assert_eq!(got, b"hello");
    assert_eq!(s.backend_conns.load(Ordering::SeqCst), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_1_2_and_plaintext_are_refused() {
    let s = setup();
    let id = Identity::obtain(
        &*s.ca,
        &SpiffeId::parse("spiffe://acme/vps1/frontend").expect("id"),
        false,
        Duration::from_secs(3600),
    )
    .expect("id");
    let payload = [header("backend", 5432), b"hello".to_vec()].concat();
    let r = mesh_client(&id, s.ca.cert(), TLS12, s.inbound, &payload).await;
    assert!(r.is_err(), "TLS 1.2 accepted: {r:?}");
    assert_eq!(next_reason(&s).0, "handshake");

    let to = s.inbound;
    let got = tokio::task::spawn_blocking(move || {
        let mut t = TcpStream::connect(to).expect("connect");
        t.set_read_timeout(Some(Duration::from_secs(15)))
            .expect("timeout");
        t.write_all(&payload).expect("write");
        let mut v = Vec::new();
        let _ = t.read_to_end(&mut v);
        v
    })
    .await
    .expect("join");
    assert!(
        !got.windows(5).any(|w| w == b"hello"),
        "plaintext forwarded"
    );
    assert_eq!(next_reason(&s).0, "handshake");
    assert_eq!(s.backend_conns.load(Ordering::SeqCst), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_valid_identity_asking_for_an_unknown_service_or_port_is_refused() {
    let s = setup();
    let id = Identity::obtain(
        &*s.ca,
        &SpiffeId::parse("spiffe://acme/vps1/frontend").expect("id"),
        false,
        Duration::from_secs(3600),
    )
    .expect("id");
    for (svc, port, want) in [
        ("backend", 5433, "unknown service"),
        ("db", 5432, "unknown service"),
    ] {
        let payload = [header(svc, port), b"x".to_vec()].concat();
        let r = mesh_client(&id, s.ca.cert(), TLS13, s.inbound, &payload).await;
        assert!(r.is_ok_and(|v| v.is_empty()), "{svc}:{port} got data");
        assert_eq!(next_reason(&s).0, want, "{svc}:{port}");
    }
    // A proxy identity (no workload) is no client.
    let proxy = Identity::obtain(
        &*s.ca,
        &SpiffeId::parse("spiffe://acme/vps1").expect("id"),
        false,
        Duration::from_secs(3600),
    )
    .expect("id");
    let payload = [header("backend", 5432), b"x".to_vec()].concat();
    let _ = mesh_client(&proxy, s.ca.cert(), TLS13, s.inbound, &payload).await;
    assert_eq!(next_reason(&s).0, "identity");
    // Garbage instead of the header.
    let _ = mesh_client(
        &id,
        s.ca.cert(),
        TLS13,
        s.inbound,
        b"GET / HTTP/1.1\r\n\r\n",
    )
    .await;
    assert_eq!(next_reason(&s).0, "protocol");
    assert_eq!(s.backend_conns.load(Ordering::SeqCst), 0);
}
