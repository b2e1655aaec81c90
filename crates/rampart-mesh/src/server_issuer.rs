//! The production [`Issuer`]: the agent's enrolled mTLS channel to the server
//! (`POST /api/v1/mesh/certificate`, `GET /api/v1/crl`; `docs/server.md`).
//!
//! The proxy calls [`Issuer::issue`] from synchronous code (renewal runs on a blocking thread);
//! the HTTP client is async, so requests go to one thread of this issuer's own, with its own
//! single-threaded runtime, and the caller waits for the answer (at most [`REQUEST_TIMEOUT`]).

use std::path::Path;
use std::sync::mpsc;
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use rampart_ship::client::HttpClient;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;

use crate::identity::{spiffe_of, CertRequest, IssuedCert, Issuer};
use crate::MeshError;

/// How long one call waits for the server.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

enum Job {
    Issue(CertRequest),
    Crl,
}

type Reply = Result<Vec<u8>, String>;

/// Talks to the server as the enrolled agent whose certificate is in `tls_dir`.
pub struct ServerIssuer {
    tx: Mutex<mpsc::Sender<(Job, mpsc::Sender<Reply>)>>,
}

impl std::fmt::Debug for ServerIssuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerIssuer").finish_non_exhaustive()
    }
}

async fn call(client: &mut HttpClient, job: Job) -> Reply {
    let (method, path, body) = match job {
        Job::Issue(req) => {
            let left = req
                .not_after
                .duration_since(SystemTime::now())
                .unwrap_or_default()
                .as_secs()
                .max(10);
            let body = serde_json::json!({
                "fleet": req.id.fleet,
                "workload": req.id.workload,
                "public_key": hex::encode(&req.public_key),
                "ttl_secs": left,
            });
            (
                hyper::Method::POST,
                "/api/v1/mesh/certificate",
                serde_json::to_vec(&body).map_err(|e| e.to_string())?,
            )
        }
        Job::Crl => (hyper::Method::GET, "/api/v1/crl", Vec::new()),
    };
    let resp = client
        .request(
            method,
            path,
            &[("content-type", "application/json")],
            bytes::Bytes::from(body),
        )
        .await
        .map_err(|e| e.to_string())?;
    if resp.status != 200 {
        return Err(format!(
            "{path}: HTTP {}: {}",
            resp.status,
            String::from_utf8_lossy(&resp.body)
                .chars()
                .take(300)
                .collect::<String>()
        ));
    }
    Ok(resp.body.to_vec())
}

impl ServerIssuer {
    /// An issuer for the server at `server_url`, authenticating with the agent's enrollment in
    /// `tls_dir` (`ca.crt`, `agent.crt`, `agent.key`).
    pub fn new(server_url: &str, tls_dir: &Path) -> Result<ServerIssuer, MeshError> {
        let e = |m: String| MeshError::Config {
            place: format!("mesh issuer {server_url}"),
            message: m,
        };
        let tls = rampart_ship::tls::agent_client_config(tls_dir).map_err(|x| e(x.to_string()))?;
        let mut client = HttpClient::new(server_url, Some(tls)).map_err(|x| e(x.to_string()))?;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|x| e(x.to_string()))?;
        let (tx, rx) = mpsc::channel::<(Job, mpsc::Sender<Reply>)>();
        std::thread::Builder::new()
            .name("mesh-issuer".into())
            .spawn(move || {
                for (job, reply) in rx {
                    let r = rt.block_on(async {
                        tokio::time::timeout(REQUEST_TIMEOUT, call(&mut client, job))
                            .await
                            .unwrap_or_else(|_| Err("the server did not answer in time".into()))
                    });
                    let _ = reply.send(r);
                }
            })
            .map_err(|x| e(x.to_string()))?;
        Ok(ServerIssuer { tx: Mutex::new(tx) })
    }

    fn ask(&self, job: Job) -> Reply {
        let (reply_tx, reply_rx) = mpsc::channel();
        self.tx
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .send((job, reply_tx))
            .map_err(|_| "the issuer thread is gone".to_string())?;
        reply_rx
            .recv_timeout(REQUEST_TIMEOUT + Duration::from_secs(5))
            .map_err(|_| "the issuer thread did not answer".to_string())?
    }

    /// Fetches the CA's CRL and writes it to `path` (atomically, 0644) when it changed; returns
    /// whether it did. Run it every `crl_refresh_secs`: a revocation reaches this host's proxy
    /// within two refresh periods.
    pub fn fetch_crl(&self, path: &Path) -> Result<bool, MeshError> {
        let data = self.ask(Job::Crl).map_err(|reason| MeshError::Issue {
            id: "CRL".into(),
            reason,
        })?;
        if std::fs::read(path).is_ok_and(|old| old == data) {
            return Ok(false);
        }
        let tmp = path.with_extension("tmp");
        let io = |source| MeshError::Io {
            path: path.display().to_string(),
            source,
        };
        std::fs::write(&tmp, &data).map_err(io)?;
        std::fs::rename(&tmp, path).map_err(io)?;
        Ok(true)
    }
}

impl Issuer for ServerIssuer {
    fn issue(&self, req: &CertRequest) -> Result<IssuedCert, MeshError> {
        let fail = |reason: String| MeshError::Issue {
            id: req.id.to_string(),
            reason,
        };
        let body = self.ask(Job::Issue(req.clone())).map_err(fail)?;
        let v: serde_json::Value =
            serde_json::from_slice(&body).map_err(|e| fail(format!("answer: {e}")))?;
        let pem = v["certificate"]
            .as_str()
            .ok_or_else(|| fail("answer has no certificate".into()))?;
        let der = CertificateDer::from_pem_slice(pem.as_bytes())
            .map_err(|e| fail(format!("certificate: {e}")))?;
        // The server names the host the agent enrolled as; a proxy configured with another
        // host name would present identities its peers do not expect.
        let got = spiffe_of(&der);
        if got.as_ref() != Some(&req.id) {
            return Err(fail(format!(
                "the server issued {:?}: set `host:` to the name this agent enrolled with",
                got.map(|g| g.to_string())
            )));
        }
        let serial = v["serial"]
            .as_str()
            .and_then(|s| hex::decode(s).ok())
            .ok_or_else(|| fail("answer has no serial".into()))?;
        Ok(IssuedCert { der, serial })
    }
}
