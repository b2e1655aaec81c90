//! The mesh section of the agent's configuration (`mesh.yaml`; `docs/mesh.md` is the user
//! documentation).
//!
//! ```yaml
//! fleet: acme.example          # the trust domain: spiffe://acme.example/...
//! host: vps1                   # this host (a DNS label)
//! ca: /var/lib/rampart/agent/ca.crt
//! crl: /var/lib/rampart/agent/mesh-crl.pem   # re-read every crl_refresh_secs
//! crl_refresh_secs: 10
//! cert_ttl_secs: 14400         # workload certificates live 4 hours, renewed after 2h40
//! inbound: 0.0.0.0:15443       # remote proxies connect here
//! peers: {vps2: 203.0.113.7:15443}
//! workloads: {frontend: [172.18.0.5]}        # local containers by address
//! docker: /var/run/docker.sock # also take workloads and services from the running containers
//! services:                    # what this host offers to the mesh
//!   - {name: backend, port: 5432, target: 172.18.0.6:5432}
//! outbound:                    # what local containers connect to, as plain TCP
//!   - {listen: 172.18.0.1:5432, to: backend@vps2:5432}
//!   # transparent: connects of protected containers to 10.0.2.6:5432 are redirected here
//!   - {listen: 172.18.0.1:15001, to: backend@vps2:5432, intercept: [10.0.2.6:5432]}
//! policy:
//!   - frontend@vps1 -> backend@vps2:5432
//! ```

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use serde::Deserialize;

use crate::identity::{host_ok, SpiffeId};
use crate::policy::MeshPolicy;
use crate::MeshError;

fn default_crl_refresh() -> u64 {
    10
}

fn default_ttl() -> u64 {
    4 * 3600
}

/// The whole mesh configuration of one host.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MeshConfig {
    /// Trust domain.
    pub fleet: String,
    /// This host's name.
    pub host: String,
    /// The CA certificate (PEM) every mesh certificate chains to.
    pub ca: PathBuf,
    /// The CA's revocation list (PEM), re-read every `crl_refresh_secs`.
    #[serde(default)]
    pub crl: Option<PathBuf>,
    /// How often the CRL is re-read: a revoked identity is refused at most this long after the
    /// CRL file changes.
    #[serde(default = "default_crl_refresh")]
    pub crl_refresh_secs: u64,
    /// Lifetime of workload and proxy certificates (10 s to 24 h; under a few minutes only
    /// makes sense in tests).
    #[serde(default = "default_ttl")]
    pub cert_ttl_secs: u64,
    /// Where remote proxies connect; no inbound side when absent.
    #[serde(default)]
    pub inbound: Option<SocketAddr>,
    /// Remote hosts' proxies.
    #[serde(default)]
    pub peers: BTreeMap<String, SocketAddr>,
    /// Local containers by name, with their addresses (the outbound side names a connection's
    /// source by its address).
    #[serde(default)]
    pub workloads: BTreeMap<String, Vec<IpAddr>>,
    /// Services this host offers.
    #[serde(default)]
    pub services: Vec<ServiceDef>,
    /// The Docker socket whose running containers are also workloads (by name) and services
    /// (label `rampart.mesh.service`), kept current as containers start and stop
    /// (`discover` module docs: the trust boundary).
    #[serde(default)]
    pub docker: Option<PathBuf>,
    /// Remote services local containers reach.
    #[serde(default)]
    pub outbound: Vec<OutboundDef>,
    /// Identity rules (`policy` module docs).
    #[serde(default)]
    pub policy: Vec<String>,
}

/// A local service offered to the mesh.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceDef {
    /// The container's name (its identity's last segment).
    pub name: String,
    /// The port the mesh names it by.
    pub port: u16,
    /// Where the proxy forwards accepted connections.
    pub target: SocketAddr,
}

/// A remote service, reached through a local plain-TCP listener.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutboundDef {
    pub listen: SocketAddr,
    /// `NAME@HOST:PORT`.
    pub to: String,
    /// Transparent redirection: the remote service's real addresses. A protected container's
    /// TCP `connect()` to one of them is rewritten in the kernel (cgroup/connect4, connect6) to
    /// `listen`, so the application keeps the real address (`crate::transparent`). Same
    /// address family as `listen`.
    #[serde(default)]
    pub intercept: Vec<SocketAddr>,
}

impl MeshConfig {
    /// Parses YAML; errors name `place` and the line.
    pub fn from_yaml(place: &str, text: &str) -> Result<MeshConfig, MeshError> {
        let c: MeshConfig = serde_yaml::from_str(text).map_err(|e| MeshError::Config {
            place: place.to_string(),
            message: e.to_string(),
        })?;
        c.validate(place)?;
        Ok(c)
    }

    /// Checks names, lifetimes, references between sections and the policy.
    pub fn validate(&self, place: &str) -> Result<(), MeshError> {
        let bad = |message: String| MeshError::Config {
            place: place.to_string(),
            message,
        };
        SpiffeId::proxy(&self.fleet, &self.host)?;
        if !(10..=86400).contains(&self.cert_ttl_secs) {
            return Err(bad(format!(
                "cert_ttl_secs {}: want 10 to 86400",
                self.cert_ttl_secs
            )));
        }
        if self.crl_refresh_secs == 0 {
            return Err(bad("crl_refresh_secs: want at least 1".into()));
        }
        for h in self.peers.keys() {
            if !host_ok(h) {
                return Err(bad(format!("peers: {h:?} is not a host name (DNS label)")));
            }
        }
        for w in self.workloads.keys() {
            SpiffeId::workload(&self.fleet, &self.host, w)?;
        }
        let mut seen = std::collections::BTreeSet::new();
        for s in &self.services {
            SpiffeId::workload(&self.fleet, &self.host, &s.name)?;
            if !seen.insert((s.name.clone(), s.port)) {
                return Err(bad(format!("services: {}:{} twice", s.name, s.port)));
            }
        }
        let mut intercepts = std::collections::BTreeSet::new();
        for o in &self.outbound {
            let r = crate::proxy::Route::parse(&o.to)
                .map_err(|m| bad(format!("outbound {}: {m}", o.to)))?;
            if !self.peers.contains_key(&r.host) {
                return Err(bad(format!(
                    "outbound {}: no peers entry for host {:?}",
                    o.to, r.host
                )));
            }
            for a in &o.intercept {
                if a.is_ipv4() != o.listen.is_ipv4() {
                    return Err(bad(format!(
                        "outbound {}: intercept {a}: not the family of listen {} (the kernel \
                         cannot change a socket's family)",
                        o.to, o.listen
                    )));
                }
                if a.port() == 0 || a.ip().is_unspecified() || a.ip().is_loopback() {
                    return Err(bad(format!(
                        "outbound {}: intercept {a}: want a remote address and port (not 0, \
                         unspecified or loopback)",
                        o.to
                    )));
                }
                if !intercepts.insert(*a) {
                    return Err(bad(format!(
                        "outbound {}: intercept {a} listed twice",
                        o.to
                    )));
                }
            }
        }
        MeshPolicy::parse(&format!("{place}: policy"), &self.policy)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "fleet: acme\nhost: vps1\nca: /x/ca.crt\npeers: {vps2: 127.0.0.1:1}\n\
        workloads: {frontend: [10.0.0.2]}\noutbound: [{listen: 127.0.0.1:2, to: backend@vps2:5432}]\n\
        policy: ['frontend@vps1 -> backend@vps2:5432']\n";

    #[test]
    fn a_good_config_loads_and_bad_ones_are_named() {
        let c = MeshConfig::from_yaml("mesh.yaml", GOOD).expect("good");
        assert_eq!(c.cert_ttl_secs, 14400);
        for (text, want) in [
            (GOOD.replace("host: vps1", "host: VPS1"), "DNS label"),
            (GOOD.replace("vps2: 127", "vps3: 127"), "no peers entry"),
            (GOOD.replace("5432']", "99999']"), "port"),
            (format!("{GOOD}cert_ttl_secs: 9\n"), "cert_ttl_secs"),
            (format!("{GOOD}plaintext: true\n"), "unknown field"),
            (
                GOOD.replace("5432}]", "5432, intercept: ['[::1]:1']}]"),
                "family",
            ),
            (
                GOOD.replace("5432}]", "5432, intercept: ['10.0.2.6:0']}]"),
                "not 0",
            ),
            (
                GOOD.replace("5432}]", "5432, intercept: ['127.0.0.1:80']}]"),
                "loopback",
            ),
            (
                GOOD.replace("5432}]", "5432, intercept: ['10.0.2.6:1', '10.0.2.6:1']}]"),
                "twice",
            ),
            (
                GOOD.replace("to: backend@vps2:5432", "to: backend@vps2"),
                "PORT",
            ),
        ] {
            let e = MeshConfig::from_yaml("mesh.yaml", &text)
                .expect_err(want)
                .to_string();
            assert!(e.contains(want), "{want}: {e}");
        }
    }
}
