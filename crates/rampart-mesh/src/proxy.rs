//! The per-host proxy: outbound (container -> remote proxy) and inbound (remote proxy ->
//! container) sides, the TLS configurations built from the current identities and CRL, and the
//! reports of what it refused.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::{Duration, SystemTime};

use rampart_event::{
    now_ns, Device, Endpoint, Event, EventId, EventKind, NetDirection, NetInfo, PolicyInfo,
};
use rustls::client::WebPkiServerVerifier;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, CertificateRevocationListDer, ServerName};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::{TlsAcceptor, TlsConnector};

use crate::config::MeshConfig;
use crate::identity::{spiffe_of, Identity, Issuer, SpiffeId};
use crate::policy::MeshPolicy;
use crate::MeshError;

/// How long the inbound side waits for the TLS handshake and then the header.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const MAGIC: &[u8; 5] = b"RMSH\x01";
/// Copy buffer per direction: a TLS record holds at most 16 KiB of plaintext; 64 KiB lets one
/// read fill four records.
const COPY_BUF: usize = 64 * 1024;

/// A remote service: `name@host:port`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub service: String,
    pub host: String,
    pub port: u16,
}

impl Route {
    /// Parses `NAME@HOST:PORT`.
    pub fn parse(s: &str) -> Result<Route, String> {
        let (rest, port) = s
            .rsplit_once(':')
            .ok_or_else(|| "want NAME@HOST:PORT".to_string())?;
        let port: u16 = port
            .parse()
            .ok()
            .filter(|p| *p != 0)
            .ok_or_else(|| format!("port {port:?}: want 1-65535 (want NAME@HOST:PORT)"))?;
        let (service, host) = rest
            .split_once('@')
            .ok_or_else(|| "want NAME@HOST:PORT".to_string())?;
        // Validated like identities: the same names end up in one.
        SpiffeId::workload("x", host, service).map_err(|e| e.to_string())?;
        Ok(Route {
            service: service.into(),
            host: host.into(),
            port,
        })
    }
}

/// Use and refusals of one edge (source identity -> service), as the inbound side saw them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EdgeStat {
    pub allowed: u64,
    pub denied: u64,
    /// Nanoseconds since the Unix epoch of the last connection, allowed or not.
    pub last_ns: u64,
}

struct Tls {
    crls: Vec<CertificateRevocationListDer<'static>>,
    crl_bytes: Option<Vec<u8>>,
    crl_gen: u64,
    proxy: Option<(Arc<Identity>, u64, Arc<ServerConfig>)>,
    clients: HashMap<String, (Arc<Identity>, u64, Arc<ClientConfig>)>,
}

/// One host's mesh proxy. Cheap to share (`Arc`); every method is safe to call concurrently.
pub struct Mesh {
    cfg: MeshConfig,
    policy: MeshPolicy,
    /// Workloads by address and services: the configuration's, plus what
    /// [`Mesh::set_discovered`] adds (containers from Docker).
    by_addr: RwLock<HashMap<IpAddr, String>>,
    services: RwLock<HashMap<(String, u16), SocketAddr>>,
    roots: Arc<RootCertStore>,
    issuer: Arc<dyn Issuer>,
    provider: Arc<rustls::crypto::CryptoProvider>,
    tls: Mutex<Tls>,
    events: Option<mpsc::Sender<Event>>,
    device: Arc<Device>,
    instance: u64,
    seq: AtomicU64,
    dropped: AtomicU64,
    issued: AtomicU64,
    edges: Mutex<BTreeMap<(String, String), EdgeStat>>,
    /// The current revocation lists, parsed: open connections watch it and close when their
    /// peer's serial appears.
    revoked: tokio::sync::watch::Sender<Arc<Vec<webpki::CertRevocationList<'static>>>>,
}

impl std::fmt::Debug for Mesh {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mesh")
            .field("fleet", &self.cfg.fleet)
            .field("host", &self.cfg.host)
            .finish_non_exhaustive()
    }
}

/// ring, TLS 1.3 suites only, AES-128-GCM first: as strong as the mesh needs and the fastest
/// of the three on CPUs with AES instructions (the bulk benchmark's largest cost is the cipher).
fn provider() -> rustls::crypto::CryptoProvider {
    use rustls::crypto::ring::cipher_suite as cs;
    rustls::crypto::CryptoProvider {
        cipher_suites: vec![
            cs::TLS13_AES_128_GCM_SHA256,
            cs::TLS13_AES_256_GCM_SHA384,
            cs::TLS13_CHACHA20_POLY1305_SHA256,
        ],
        ..rustls::crypto::ring::default_provider()
    }
}

fn read<T>(m: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    // As for `lock`: the maps are replaced whole, never left half-written.
    m.read().unwrap_or_else(std::sync::PoisonError::into_inner)
}

type AddrMap = HashMap<IpAddr, String>;
type ServiceMap = HashMap<(String, u16), SocketAddr>;

/// The workloads and services the configuration declares.
fn configured(cfg: &MeshConfig) -> (AddrMap, ServiceMap) {
    let by_addr = cfg
        .workloads
        .iter()
        .flat_map(|(n, ips)| ips.iter().map(move |ip| (*ip, n.clone())))
        .collect();
    let services = cfg
        .services
        .iter()
        .map(|s| ((s.name.clone(), s.port), s.target))
        .collect();
    (by_addr, services)
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding the lock leaves plain data behind, still consistent.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn tls_err(e: impl std::fmt::Display) -> MeshError {
    MeshError::Tls(e.to_string())
}

/// What one refusal report says.
struct Denial<'a> {
    src: Option<&'a SpiffeId>,
    dst: Option<String>,
    peer: SocketAddr,
    local: Option<SocketAddr>,
    rule: String,
    reason: &'a str,
    side: &'a str,
}

impl Mesh {
    /// A proxy for `cfg` (validated again here), trusting `ca` (DER), getting certificates from
    /// `issuer`, reporting refusals to `events` (`None`: only logged and counted).
    pub fn new(
        cfg: MeshConfig,
        ca: CertificateDer<'static>,
        issuer: Arc<dyn Issuer>,
        events: Option<mpsc::Sender<Event>>,
    ) -> Result<Arc<Mesh>, MeshError> {
        cfg.validate("mesh")?;
        let policy = MeshPolicy::parse("mesh: policy", &cfg.policy)?;
        let mut roots = RootCertStore::empty();
        roots.add(ca).map_err(tls_err)?;
        let (by_addr, services) = configured(&cfg);
        let mut seed = [0u8; 8];
        rustls::crypto::ring::default_provider()
            .secure_random
            .fill(&mut seed)
            .map_err(|_| MeshError::Tls("no system randomness".into()))?;
        let mesh = Mesh {
            device: Arc::new(Device {
                hostname: cfg.host.clone(),
                region: None,
            }),
            cfg,
            policy,
            by_addr: RwLock::new(by_addr),
            services: RwLock::new(services),
            roots: Arc::new(roots),
            issuer,
            provider: Arc::new(provider()),
            tls: Mutex::new(Tls {
                crls: Vec::new(),
                crl_bytes: None,
                crl_gen: 0,
                proxy: None,
                clients: HashMap::new(),
            }),
            events,
            instance: u64::from_be_bytes(seed),
            seq: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            issued: AtomicU64::new(0),
            edges: Mutex::new(BTreeMap::new()),
            revoked: tokio::sync::watch::Sender::new(Arc::new(Vec::new())),
        };
        mesh.reload_crl()?;
        Ok(Arc::new(mesh))
    }

    /// Re-reads the CRL file; returns whether it changed. TLS configurations built after a
    /// change use the new list.
    pub fn reload_crl(&self) -> Result<bool, MeshError> {
        let Some(path) = &self.cfg.crl else {
            return Ok(false);
        };
        let bytes = match std::fs::read(path) {
            Ok(b) => b,
            // No CRL yet: nothing has been revoked.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
            Err(source) => {
                return Err(MeshError::Io {
                    path: path.display().to_string(),
                    source,
                })
            }
        };
        let mut t = lock(&self.tls);
        if t.crl_bytes.as_deref() == Some(&bytes[..]) {
            return Ok(false);
        }
        let crls = CertificateRevocationListDer::pem_slice_iter(&bytes)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| MeshError::Config {
                place: path.display().to_string(),
                message: format!("not a PEM CRL: {e}"),
            })?;
        let parsed = crls
            .iter()
            .map(|c| webpki::OwnedCertRevocationList::from_der(c).map(Into::into))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| MeshError::Config {
                place: path.display().to_string(),
                message: format!("CRL does not parse: {e:?}"),
            })?;
        t.crls = crls;
        t.crl_bytes = Some(bytes);
        self.revoked.send_replace(Arc::new(parsed));
        t.crl_gen += 1;
        tracing::info!(crl = %path.display(), generation = t.crl_gen, "mesh: revocation list reloaded");
        Ok(true)
    }

    /// Re-reads the CRL every `crl_refresh_secs`, forever.
    pub async fn watch_crl(self: Arc<Self>) {
        let mut tick = tokio::time::interval(Duration::from_secs(self.cfg.crl_refresh_secs));
        loop {
            tick.tick().await;
            if let Err(e) = self.reload_crl() {
                // Keep the last good list: a half-written file must not clear revocations.
                tracing::warn!("mesh: {e}");
            }
        }
    }

    /// Sets the refresh period from the config aside, for tests and the CLI's `--crl-refresh`.
    pub fn crl_refresh(&self) -> Duration {
        Duration::from_secs(self.cfg.crl_refresh_secs)
    }

    fn ttl(&self) -> Duration {
        Duration::from_secs(self.cfg.cert_ttl_secs)
    }

    /// How many certificates this proxy has obtained (proxy and workloads, rotations included).
    pub fn certificates_issued(&self) -> u64 {
        self.issued.load(Ordering::Relaxed)
    }

    /// Refusal reports that could not be queued (the receiver was full or gone).
    pub fn dropped_events(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Edges seen by the inbound side: (source identity, service identity) -> use and denials.
    pub fn edges(&self) -> BTreeMap<(String, String), EdgeStat> {
        lock(&self.edges).clone()
    }

    /// Replaces the discovered workloads and services (containers from Docker:
    /// [`crate::discover`]) by `d`. What the configuration declares stays and wins: a
    /// discovered address or service the configuration already names is ignored.
    pub fn set_discovered(&self, d: &crate::Discovered) {
        let (mut by_addr, mut services) = configured(&self.cfg);
        for (name, ips) in &d.workloads {
            for ip in ips {
                by_addr.entry(*ip).or_insert_with(|| name.clone());
            }
        }
        for s in &d.services {
            services.entry((s.name.clone(), s.port)).or_insert(s.target);
        }
        *self
            .by_addr
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = by_addr;
        *self
            .services
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = services;
    }

    /// The workload a source address names now, if any.
    pub fn workload_at(&self, ip: IpAddr) -> Option<String> {
        read(&self.by_addr).get(&ip).cloned()
    }

    /// The fleet (trust domain).
    pub fn fleet(&self) -> &str {
        &self.cfg.fleet
    }

    /// This host's name (its identities' second segment).
    pub fn host(&self) -> &str {
        &self.cfg.host
    }

    /// The services this host offers (name, port), sorted.
    pub fn service_list(&self) -> Vec<(String, u16)> {
        let mut v: Vec<(String, u16)> = read(&self.services).keys().cloned().collect();
        v.sort();
        v
    }

    fn build_server(
        &self,
        crls: &[CertificateRevocationListDer<'static>],
        id: &Identity,
    ) -> Result<Arc<ServerConfig>, MeshError> {
        let verifier =
            WebPkiClientVerifier::builder_with_provider(self.roots.clone(), self.provider.clone())
                .with_crls(crls.to_vec())
                .build()
                .map_err(tls_err)?;
        let mut cfg = ServerConfig::builder_with_provider(self.provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(tls_err)?
            .with_client_cert_verifier(verifier)
            .with_single_cert(vec![id.cert.clone()], id.key())
            .map_err(tls_err)?;
        cfg.alpn_protocols = vec![b"rampart-mesh/1".to_vec()];
        Ok(Arc::new(cfg))
    }

    fn build_client(
        &self,
        crls: &[CertificateRevocationListDer<'static>],
        id: &Identity,
    ) -> Result<Arc<ClientConfig>, MeshError> {
        let verifier =
            WebPkiServerVerifier::builder_with_provider(self.roots.clone(), self.provider.clone())
                .with_crls(crls.to_vec())
                .build()
                .map_err(tls_err)?;
        let mut cfg = ClientConfig::builder_with_provider(self.provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(tls_err)?
            .with_webpki_verifier(verifier)
            .with_client_auth_cert(vec![id.cert.clone()], id.key())
            .map_err(tls_err)?;
        cfg.alpn_protocols = vec![b"rampart-mesh/1".to_vec()];
        Ok(Arc::new(cfg))
    }

    fn obtain(&self, sid: &SpiffeId, server: bool) -> Result<Arc<Identity>, MeshError> {
        let id = Identity::obtain(&*self.issuer, sid, server, self.ttl())?;
        self.issued.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(id = %sid, "mesh: certificate issued");
        Ok(Arc::new(id))
    }

    /// The TLS server configuration; obtains a certificate only when there is no usable one
    /// (normally [`Mesh::renew_early`] has renewed it off the connection path).
    fn server_config(&self) -> Result<Arc<ServerConfig>, MeshError> {
        let mut t = lock(&self.tls);
        let now = SystemTime::now();
        let current = t.proxy.as_ref().filter(|(id, _, _)| id.fresh(now));
        if let Some((_, gen, cfg)) = current {
            if *gen == t.crl_gen {
                return Ok(cfg.clone());
            }
        }
        let id = match current {
            Some((id, _, _)) => id.clone(),
            None => self.obtain(&SpiffeId::proxy(&self.cfg.fleet, &self.cfg.host)?, true)?,
        };
        let cfg = self.build_server(&t.crls, &id)?;
        t.proxy = Some((id, t.crl_gen, cfg.clone()));
        Ok(cfg)
    }

    fn client_config(&self, workload: &str) -> Result<Arc<ClientConfig>, MeshError> {
        let mut t = lock(&self.tls);
        let now = SystemTime::now();
        let current = t.clients.get(workload).filter(|(id, _, _)| id.fresh(now));
        if let Some((_, gen, cfg)) = current {
            if *gen == t.crl_gen {
                return Ok(cfg.clone());
            }
        }
        let id = match current {
            Some((id, _, _)) => id.clone(),
            None => self.obtain(
                &SpiffeId::workload(&self.cfg.fleet, &self.cfg.host, workload)?,
                false,
            )?,
        };
        let cfg = self.build_client(&t.crls, &id)?;
        let gen = t.crl_gen;
        t.clients
            .insert(workload.to_string(), (id, gen, cfg.clone()));
        Ok(cfg)
    }

    /// Renews every certificate past half its lifetime, asking the CA without holding any lock
    /// (the CA may be a network round trip away). Returns how many were renewed; the first
    /// error stops the round (the old certificates stay in use until a third of their life is
    /// left, then the connection path tries again).
    pub fn renew_early(&self) -> Result<usize, MeshError> {
        let now = SystemTime::now();
        let due: Vec<(Option<String>, SpiffeId)> = {
            let t = lock(&self.tls);
            let proxy = t
                .proxy
                .iter()
                .filter(|(id, _, _)| !id.before_half(now))
                .map(|(id, _, _)| (None, id.id.clone()));
            let clients = t
                .clients
                .iter()
                .filter(|(_, (id, _, _))| !id.before_half(now))
                .map(|(w, (id, _, _))| (Some(w.clone()), id.id.clone()));
            proxy.chain(clients).collect()
        };
        for (slot, sid) in &due {
            let id = self.obtain(sid, slot.is_none())?;
            let mut t = lock(&self.tls);
            let gen = t.crl_gen;
            match slot {
                None => {
                    let cfg = self.build_server(&t.crls, &id)?;
                    t.proxy = Some((id, gen, cfg));
                }
                Some(w) => {
                    let cfg = self.build_client(&t.crls, &id)?;
                    t.clients.insert(w.clone(), (id, gen, cfg));
                }
            }
        }
        Ok(due.len())
    }

    /// Calls [`Mesh::renew_early`] every tenth of the certificate lifetime, forever.
    pub async fn renew_loop(self: Arc<Self>) {
        let period = (self.ttl() / 10).max(Duration::from_secs(1));
        let mut tick = tokio::time::interval(period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let me = self.clone();
            match tokio::task::spawn_blocking(move || me.renew_early()).await {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => tracing::warn!("mesh: renewal: {e}"),
                Err(e) => tracing::error!("mesh: renewal task: {e}"),
            }
        }
    }

    /// Obtains the proxy's and every configured workload's certificate now, so the first
    /// connection does not wait for the CA.
    pub fn prepare(&self) -> Result<(), MeshError> {
        if self.cfg.inbound.is_some() || !self.cfg.services.is_empty() {
            self.server_config()?;
        }
        for w in self.cfg.workloads.keys() {
            self.client_config(w)?;
        }
        Ok(())
    }

    fn report(&self, d: Denial<'_>) {
        let src = d.src.map(ToString::to_string);
        tracing::warn!(
            side = d.side,
            peer = %d.peer,
            source = src.as_deref().unwrap_or("-"),
            destination = d.dst.as_deref().unwrap_or("-"),
            rule = %d.rule,
            reason = d.reason,
            "mesh: connection refused"
        );
        let Some(tx) = &self.events else {
            return;
        };
        let seq = self.seq.fetch_add(1, Ordering::Relaxed) + 1;
        let mut e = Event::new(
            EventId::new(self.instance, seq),
            now_ns(),
            EventKind::PolicyNetDenied,
            self.device.clone(),
        );
        e.network = Some(NetInfo {
            protocol: "tcp".into(),
            family: if d.peer.is_ipv4() { "inet" } else { "inet6" }.into(),
            direction: NetDirection::Inbound,
            src: Some(Endpoint {
                ip: d.peer.ip(),
                port: d.peer.port(),
            }),
            dst: d.local.map(|a| Endpoint {
                ip: a.ip(),
                port: a.port(),
            }),
            unix_path: None,
            remote_names: Vec::new(),
            remote_country: None,
        });
        e.policy = Some(PolicyInfo {
            policy: "mesh".into(),
            selector: d.dst.clone().unwrap_or_default(),
            rule: d.rule,
            action: "deny".into(),
            mechanism: format!("rampart mesh ({})", d.side),
            reason: d.reason.into(),
            sha256: None,
            source_identity: src,
            destination_identity: d.dst,
        });
        if tx.try_send(e).is_err() {
            let n = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
            tracing::error!(
                dropped = n,
                "mesh: event queue full, refusal report dropped"
            );
        }
    }

    fn count_edge(&self, src: &str, dst: &str, allowed: bool) {
        let mut e = lock(&self.edges);
        let s = e.entry((src.to_string(), dst.to_string())).or_default();
        if allowed {
            s.allowed += 1;
        } else {
            s.denied += 1;
        }
        s.last_ns = now_ns();
    }

    /// Serves remote proxies on `l` until the task is dropped.
    pub async fn serve_inbound(self: Arc<Self>, l: TcpListener) {
        loop {
            match l.accept().await {
                Ok((s, peer)) => {
                    let me = self.clone();
                    tokio::spawn(async move { me.inbound(s, peer).await });
                }
                Err(e) => {
                    tracing::warn!("mesh: inbound accept: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }

    async fn inbound(self: Arc<Self>, tcp: TcpStream, peer: SocketAddr) {
        let _ = tcp.set_nodelay(true);
        let local = tcp.local_addr().ok();
        let cfg = match self.server_config() {
            Ok(c) => c,
            Err(e) => {
                tracing::error!("mesh: no server identity, refusing {peer}: {e}");
                return;
            }
        };
        let dead = |rule: String, reason: &str, src: Option<&SpiffeId>, dst: Option<String>| {
            self.report(Denial {
                src,
                dst,
                peer,
                local,
                rule,
                reason,
                side: "inbound",
            })
        };
        let mut tls =
            match tokio::time::timeout(HEADER_TIMEOUT, TlsAcceptor::from(cfg).accept(tcp)).await {
                Ok(Ok(t)) => t,
                Ok(Err(e)) => {
                    // An untrusted, expired or revoked client certificate ends here.
                    dead(e.to_string(), "handshake", None, None);
                    return;
                }
                Err(_) => {
                    dead("TLS handshake timed out".into(), "timeout", None, None);
                    return;
                }
            };
        let leaf = tls
            .get_ref()
            .1
            .peer_certificates()
            .and_then(|c| c.first())
            .cloned();
        let serial = leaf
            .as_ref()
            .and_then(|c| {
                webpki::EndEntityCert::try_from(c)
                    .ok()
                    .map(|e| e.serial().to_vec())
            })
            .unwrap_or_default();
        let src = leaf.as_ref().and_then(spiffe_of);
        let Some(src) = src.filter(|s| s.fleet == self.cfg.fleet && s.workload.is_some()) else {
            dead(
                "client certificate names no workload of this fleet".into(),
                "identity",
                None,
                None,
            );
            return;
        };
        let (service, port) =
            match tokio::time::timeout(HEADER_TIMEOUT, read_header(&mut tls)).await {
                Ok(Ok(h)) => h,
                Ok(Err(e)) => {
                    dead(format!("bad header: {e}"), "protocol", Some(&src), None);
                    return;
                }
                Err(_) => {
                    dead("no header".into(), "timeout", Some(&src), None);
                    return;
                }
            };
        let dst_id = format!("spiffe://{}/{}/{service}", self.cfg.fleet, self.cfg.host);
        let edge_dst = format!("{dst_id}:{port}");
        let target = read(&self.services).get(&(service.clone(), port)).copied();
        let Some(target) = target else {
            self.count_edge(&src.to_string(), &edge_dst, false);
            dead(
                format!("no service {service}:{port} on this host"),
                "unknown service",
                Some(&src),
                Some(dst_id),
            );
            let _ = tls.shutdown().await;
            return;
        };
        let d = self.policy.decide(&src, &service, &self.cfg.host, port);
        self.count_edge(&src.to_string(), &edge_dst, d.allow);
        if !d.allow {
            let reason = if d.rule == "default" {
                "default"
            } else {
                "rule"
            };
            dead(d.rule, reason, Some(&src), Some(dst_id));
            let _ = tls.shutdown().await;
            return;
        }
        let up = match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(target)).await {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => {
                tracing::warn!("mesh: {service}:{port} at {target}: {e}");
                return;
            }
            Err(_) => {
                tracing::warn!("mesh: {service}:{port} at {target}: connect timed out");
                return;
            }
        };
        let _ = up.set_nodelay(true);
        // Revocation also ends connections already open: within one CRL refresh.
        let mut rx = self.revoked.subscribe();
        let cut = async {
            loop {
                if rx.changed().await.is_err() {
                    std::future::pending::<()>().await;
                }
                let lists = rx.borrow_and_update().clone();
                if is_revoked(&lists, &serial) {
                    return;
                }
            }
        };
        tokio::select! {
            () = splice(tls, up) => {}
            () = cut => dead(
                "certificate revoked while connected".into(),
                "revoked",
                Some(&src),
                Some(dst_id),
            ),
        }
    }

    /// Serves local containers on `l`, carrying each connection to `route`.
    pub async fn serve_outbound(self: Arc<Self>, l: TcpListener, route: Route) {
        let route = Arc::new(route);
        loop {
            match l.accept().await {
                Ok((s, peer)) => {
                    let me = self.clone();
                    let r = route.clone();
                    tokio::spawn(async move {
                        if let Err(e) = me.outbound(s, peer, &r).await {
                            tracing::warn!(
                                "mesh: {peer} -> {}@{}:{}: {e}",
                                r.service,
                                r.host,
                                r.port
                            );
                        }
                    });
                }
                Err(e) => {
                    tracing::warn!("mesh: outbound accept: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }

    async fn outbound(
        &self,
        local: TcpStream,
        peer: SocketAddr,
        r: &Route,
    ) -> Result<(), MeshError> {
        let _ = local.set_nodelay(true);
        let workload = read(&self.by_addr).get(&peer.ip()).cloned();
        let Some(workload) = workload else {
            self.report(Denial {
                src: None,
                dst: Some(format!(
                    "spiffe://{}/{}/{}",
                    self.cfg.fleet, r.host, r.service
                )),
                peer,
                local: local.local_addr().ok(),
                rule: "no workload has this address".into(),
                reason: "unknown workload",
                side: "outbound",
            });
            return Ok(());
        };
        let cfg = self.client_config(&workload)?;
        let remote = *self
            .cfg
            .peers
            .get(&r.host)
            .ok_or_else(|| MeshError::Config {
                place: "mesh: peers".into(),
                message: format!("no address for host {}", r.host),
            })?;
        let tcp = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(remote))
            .await
            .map_err(|_| tls_err(format!("{remote}: connect timed out")))?
            .map_err(|e| tls_err(format!("{remote}: {e}")))?;
        let _ = tcp.set_nodelay(true);
        let want = SpiffeId::proxy(&self.cfg.fleet, &r.host)?;
        let name = ServerName::try_from(want.proxy_dns_name()).map_err(tls_err)?;
        let mut tls = TlsConnector::from(cfg)
            .connect(name, tcp)
            .await
            .map_err(|e| tls_err(format!("{remote}: {e}")))?;
        // The DNS name matched; the SPIFFE ID must too (one CA issues both, but say it).
        let got = tls
            .get_ref()
            .1
            .peer_certificates()
            .and_then(|c| c.first())
            .and_then(spiffe_of);
        if got.as_ref() != Some(&want) {
            return Err(tls_err(format!(
                "{remote}: proxy certificate names {:?}, want {want}",
                got.map(|g| g.to_string())
            )));
        }
        let mut h = Vec::with_capacity(MAGIC.len() + 3 + r.service.len());
        h.extend_from_slice(MAGIC);
        h.push(r.service.len() as u8);
        h.extend_from_slice(r.service.as_bytes());
        h.extend_from_slice(&r.port.to_be_bytes());
        tls.write_all(&h)
            .await
            .map_err(|e| tls_err(format!("{remote}: {e}")))?;
        splice(local, tls).await;
        Ok(())
    }

    /// Binds every listener of the configuration and serves until an error or the task is
    /// dropped. Sockets are created in the calling thread's network namespace.
    pub async fn run(self: Arc<Self>) -> Result<(), MeshError> {
        let bind = |a: SocketAddr| async move {
            TcpListener::bind(a).await.map_err(|source| MeshError::Io {
                path: a.to_string(),
                source,
            })
        };
        let mut tasks = tokio::task::JoinSet::new();
        if let Some(a) = self.cfg.inbound {
            tasks.spawn(self.clone().serve_inbound(bind(a).await?));
        }
        for o in &self.cfg.outbound {
            let r = Route::parse(&o.to).map_err(|message| MeshError::Config {
                place: format!("mesh: outbound {}", o.to),
                message,
            })?;
            tasks.spawn(self.clone().serve_outbound(bind(o.listen).await?, r));
        }
        tasks.spawn(self.clone().watch_crl());
        tasks.spawn(self.clone().renew_loop());
        self.prepare()?;
        while tasks.join_next().await.is_some() {}
        Ok(())
    }
}

fn is_revoked(lists: &[webpki::CertRevocationList<'static>], serial: &[u8]) -> bool {
    lists
        .iter()
        .any(|l| l.find_serial(serial).is_ok_and(|r| r.is_some()))
}

async fn read_header<S: AsyncRead + Unpin>(s: &mut S) -> std::io::Result<(String, u16)> {
    let bad = |m: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, m.to_string());
    let mut magic = [0u8; 6];
    s.read_exact(&mut magic).await?;
    if &magic[..5] != MAGIC {
        return Err(bad("not a rampart-mesh/1 header"));
    }
    let n = magic[5] as usize;
    if n == 0 || n > crate::identity::MAX_SEGMENT {
        return Err(bad("service name length out of range"));
    }
    let mut name = vec![0u8; n + 2];
    s.read_exact(&mut name).await?;
    let port = u16::from_be_bytes([name[n], name[n + 1]]);
    name.truncate(n);
    let name = String::from_utf8(name).map_err(|_| bad("service name is not UTF-8"))?;
    SpiffeId::workload("x", "x", &name).map_err(|_| bad("service name is not a name"))?;
    Ok((name, port))
}

async fn splice<A, B>(mut a: A, mut b: B)
where
    A: AsyncRead + AsyncWrite + Unpin,
    B: AsyncRead + AsyncWrite + Unpin,
{
    let _ = tokio::io::copy_bidirectional_with_sizes(&mut a, &mut b, COPY_BUF, COPY_BUF).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn header_parser_refuses_what_the_client_never_sends() {
        let ok = b"RMSH\x01\x07backend\x15\x38".to_vec();
        assert_eq!(
            read_header(&mut &ok[..]).await.expect("ok"),
            ("backend".to_string(), 5432)
        );
        for bad in [
            b"RMSH\x02\x07backend\x15\x38".to_vec(),
            b"RMSH\x01\x00\x15\x38".to_vec(),
            [b"RMSH\x01\x40".to_vec(), vec![b'a'; 64], vec![0, 1]].concat(),
            b"RMSH\x01\x02..\x00\x01".to_vec(),
            b"RMSH\x01\x02a/\x00\x01".to_vec(),
            b"RMSH\x01\x07back".to_vec(),
            b"GET / HTTP/1.1\r\n".to_vec(),
        ] {
            assert!(read_header(&mut &bad[..]).await.is_err(), "{bad:?}");
        }
    }

    #[test]
    fn routes_parse() {
        assert_eq!(
            Route::parse("backend@vps2:5432"),
            Ok(Route {
                service: "backend".into(),
                host: "vps2".into(),
                port: 5432
            })
        );
        for bad in [
            "backend@vps2",
            "backend:5432",
            "backend@vps2:0",
            "b@VPS2:1",
            "@vps2:1",
        ] {
            assert!(Route::parse(bad).is_err(), "{bad}");
        }
    }
}
