//! The whole identity chain with the real server: two agents enroll (as vps1 and vps2), each
//! host's proxy obtains its certificates through `POST /api/v1/mesh/certificate` with the
//! agent's certificate, traffic flows; revoking vps1 at the server reaches vps2's proxy through
//! `GET /api/v1/crl` and vps1 is refused. Loopback; no root.

mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rampart_mesh::{Identity, Mesh, ServerIssuer, SpiffeId};
use rampart_server::client::QueryClient;
use support::{config, RunningProxy};

fn port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("port")
}

async fn admin(url: &str, data: &Path) -> QueryClient {
    let token = std::fs::read_to_string(data.join("admin.token")).expect("admin token");
    QueryClient::new(url, &data.join("ca/ca.crt"), token.trim()).expect("admin client")
}

async fn enroll(url: &str, data: &Path, hostname: &str, dir: &Path) -> String {
    let v = admin(url, data)
        .await
        .post_json(
            "/api/v1/enroll-tokens",
            &serde_json::json!({"region": "eu-de", "uses": 1, "ttl": "10m"}),
        )
        .await
        .expect("token");
    let token = v["token"].as_str().expect("token").to_string();
    rampart_ship::enroll::enroll(url, &token, hostname, dir, false)
        .await
        .expect("enroll")
        .agent_id
}

fn echo() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let a = l.local_addr().expect("addr");
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { continue };
            std::thread::spawn(move || {
                let mut b = [0u8; 4096];
                while let Ok(n) = s.read(&mut b) {
                    if n == 0 || s.write_all(&b[..n]).is_err() {
                        break;
                    }
                }
            });
        }
    });
    a
}

fn request(to: SocketAddr, msg: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut s = TcpStream::connect(to)?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    s.write_all(msg)?;
    let mut got = vec![0u8; msg.len()];
    s.read_exact(&mut got)?;
    Ok(got)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxies_get_identities_from_the_server_and_a_revoked_agent_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let mut cfg = rampart_server::ServerConfig::with_data_dir(data.clone());
    cfg.listen = "127.0.0.1:0".parse().expect("addr");
    let server = rampart_server::start(cfg).await.expect("server");
    let url = server.url();
    let (t1, t2) = (dir.path().join("vps1"), dir.path().join("vps2"));
    let a1 = enroll(&url, &data, "vps1", &t1).await;
    enroll(&url, &data, "vps2", &t2).await;

    let (i1, i2) = (
        Arc::new(ServerIssuer::new(&url, &t1).expect("issuer 1")),
        Arc::new(ServerIssuer::new(&url, &t2).expect("issuer 2")),
    );
    let crl2 = dir.path().join("vps2-crl.pem");
    let i = i2.clone();
    let c = crl2.clone();
    tokio::task::spawn_blocking(move || i.fetch_crl(&c))
        .await
        .expect("join")
        .expect("first CRL");
    let ca = rustls::pki_types::CertificateDer::from(
        rampart_server::ca::Ca::load_or_create(&data.join("ca"))
            .expect("ca")
            .cert()
            .to_vec(),
    );

    // A proxy configured with a host name that is not its enrollment gets nothing.
    let i = i1.clone();
    let wrong = tokio::task::spawn_blocking(move || {
        Identity::obtain(
            &*i,
            &SpiffeId::workload("acme", "vps2", "backend").expect("id"),
            false,
            Duration::from_secs(600),
        )
    })
    .await
    .expect("join");
    let e = wrong
        .expect_err("vps1 obtained a vps2 identity")
        .to_string();
    assert!(e.contains("spiffe://acme/vps1/backend"), "{e}");

    let target = echo();
    let (inbound, outbound) = (port(), port());
    let policy = "policy: ['frontend@vps1 -> backend@vps2:5432']\n";
    let c1 = config(&format!(
        "fleet: acme\nca: /unused\n{policy}host: vps1\npeers: {{vps2: '127.0.0.1:{inbound}'}}\n\
         workloads: {{frontend: [127.0.0.1]}}\n\
         outbound: [{{listen: '127.0.0.1:{outbound}', to: backend@vps2:5432}}]\n"
    ));
    let c2 = config(&format!(
        "fleet: acme\nca: /unused\n{policy}host: vps2\ninbound: '127.0.0.1:{inbound}'\n\
         crl: '{}'\ncrl_refresh_secs: 1\n\
         services: [{{name: backend, port: 5432, target: '{target}'}}]\n",
        crl2.display()
    ));
    let (m1, m2) = (
        Mesh::new(c1, ca.clone(), i1.clone(), None).expect("m1"),
        Mesh::new(c2, ca, i2.clone(), None).expect("m2"),
    );
    let p2 = tokio::task::spawn_blocking(move || RunningProxy::start(None, m2))
        .await
        .expect("p2");
    let p1 = tokio::task::spawn_blocking(move || RunningProxy::start(None, m1))
        .await
        .expect("p1");
    let to: SocketAddr = format!("127.0.0.1:{outbound}").parse().expect("addr");
    let got = tokio::task::spawn_blocking(move || request(to, b"through the server's identities"))
        .await
        .expect("join")
        .expect("exchange");
    assert_eq!(got, b"through the server's identities");
    let edges = p2.mesh.edges();
    assert!(
        edges.contains_key(&(
            "spiffe://acme/vps1/frontend".to_string(),
            "spiffe://acme/vps2/backend:5432".to_string()
        )),
        "{edges:?}"
    );

    // Revoke vps1's agent at the server; vps2 fetches the CRL; vps1 is refused.
    admin(&url, &data)
        .await
        .post_json(
            &format!("/api/v1/agents/{a1}/revoke"),
            &serde_json::json!({}),
        )
        .await
        .expect("revoke");
    let i = i2.clone();
    let c = crl2.clone();
    let changed = tokio::task::spawn_blocking(move || i.fetch_crl(&c))
        .await
        .expect("join")
        .expect("CRL");
    assert!(changed, "the CRL changed with the revocation");
    tokio::time::sleep(Duration::from_millis(1700)).await;
    let r = tokio::task::spawn_blocking(move || request(to, b"after revocation"))
        .await
        .expect("join");
    assert!(r.is_err(), "revoked vps1 still served: {r:?}");
    drop((p1, p2));
    server.shutdown().await;
}
