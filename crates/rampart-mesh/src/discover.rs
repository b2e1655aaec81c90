//! Workloads and services from the host's running containers (`docker:` in `mesh.yaml`),
//! instead of hand-written `workloads:` and `services:`.
//!
//! # Trust boundary
//! A container's identity is `spiffe://<fleet>/<host>/<container name>`, and the name is the
//! one Docker holds: whoever may call the Docker API on the host (create, rename) chooses it,
//! and is trusted to. Nothing inside the container, and nothing in its image or labels, can
//! choose an identity:
//! - labels only declare which ports the container serves: `rampart.mesh.service` =
//!   `NAME:PORT[,NAME:PORT...]`, where `NAME` must be the container's own name (a container
//!   labelled with another container's service name is refused and reported);
//! - any other `rampart.mesh.*` label (for example one naming an identity) is refused and
//!   reported, never honoured;
//! - the proxy names a connection's source by its address: an address Docker gives to two
//!   containers at once names neither (both refused until it is unique again), and a container
//!   without an address of its own (`--network host`, `--network container:X`) gets no
//!   identity (its connections come from the host's or X's address).

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};

use crate::config::ServiceDef;
use crate::identity::SpiffeId;

/// The label declaring a container's mesh services.
pub const SERVICE_LABEL: &str = "rampart.mesh.service";

/// What the proxy needs of one running container (from Docker's container list).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ContainerFacts {
    /// Docker's name, without the leading `/`.
    pub name: String,
    /// Its addresses on its networks.
    pub addresses: Vec<IpAddr>,
    pub labels: BTreeMap<String, String>,
}

/// Workloads and services derived from the containers, and what was refused (one line each,
/// naming the container).
#[derive(Debug, Clone, Default)]
pub struct Discovered {
    pub workloads: BTreeMap<String, Vec<IpAddr>>,
    pub services: Vec<ServiceDef>,
    pub refused: Vec<String>,
}

/// Derives the workloads and services of `host` in `fleet` from `containers`.
pub fn discover(fleet: &str, host: &str, containers: &[ContainerFacts]) -> Discovered {
    let mut d = Discovered::default();
    let mut owners: BTreeMap<IpAddr, BTreeSet<&str>> = BTreeMap::new();
    let mut valid = Vec::new();
    for c in containers {
        if let Err(e) = SpiffeId::workload(fleet, host, &c.name) {
            d.refused
                .push(format!("container {:?}: no mesh identity ({e})", c.name));
            continue;
        }
        for ip in &c.addresses {
            owners.entry(*ip).or_default().insert(&c.name);
        }
        valid.push(c);
    }
    for (ip, names) in &owners {
        if names.len() > 1 {
            d.refused.push(format!(
                "address {ip} belongs to several containers ({}): it names none of them",
                names.iter().copied().collect::<Vec<_>>().join(", ")
            ));
        }
    }
    for c in valid {
        let ips: Vec<IpAddr> = c
            .addresses
            .iter()
            .copied()
            .filter(|ip| owners.get(ip).is_some_and(|n| n.len() == 1))
            .collect();
        for (k, v) in &c.labels {
            if k.starts_with("rampart.mesh.") && k != SERVICE_LABEL {
                d.refused.push(format!(
                    "container {:?}: label {k}={v:?} ignored (a container's identity is its name; labels only declare services)",
                    c.name
                ));
            }
        }
        if ips.is_empty() {
            continue;
        }
        if let Some(spec) = c.labels.get(SERVICE_LABEL) {
            // The target: the container's first IPv4 address, else its first.
            let addr = ips.iter().find(|ip| ip.is_ipv4()).unwrap_or(&ips[0]);
            for item in spec.split(',').map(str::trim).filter(|s| !s.is_empty()) {
                match parse_service(item) {
                    Some((name, port)) if name == c.name => d.services.push(ServiceDef {
                        name: name.to_string(),
                        port,
                        target: SocketAddr::new(*addr, port),
                    }),
                    Some((name, _)) => d.refused.push(format!(
                        "container {:?}: {SERVICE_LABEL}={spec:?} names service {name:?}; a container offers services under its own name only",
                        c.name
                    )),
                    None => d.refused.push(format!(
                        "container {:?}: {SERVICE_LABEL}={spec:?}: {item:?} is not NAME:PORT (port 1-65535)",
                        c.name
                    )),
                }
            }
        }
        d.workloads.insert(c.name.clone(), ips);
    }
    d
}

fn parse_service(s: &str) -> Option<(&str, u16)> {
    let (name, port) = s.rsplit_once(':')?;
    let port: u16 = port.parse().ok().filter(|p| *p != 0)?;
    Some((name, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(name: &str, ips: &[&str], labels: &[(&str, &str)]) -> ContainerFacts {
        ContainerFacts {
            name: name.into(),
            addresses: ips.iter().map(|s| s.parse().expect("ip")).collect(),
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    #[test]
    fn identities_come_from_names_and_labels_only_declare_own_services() {
        let d = discover(
            "acme",
            "vps2",
            &[
                c(
                    "backend",
                    &["172.18.0.6"],
                    &[(SERVICE_LABEL, "backend:5432")],
                ),
                // Claims backend's service and an identity by label: neither is granted.
                c(
                    "evil",
                    &["172.18.0.7"],
                    &[
                        (SERVICE_LABEL, "backend:5432,evil:80"),
                        ("rampart.mesh.identity", "spiffe://acme/vps2/backend"),
                    ],
                ),
                c("no-net", &[], &[(SERVICE_LABEL, "no-net:1")]),
                c("bad:name", &["172.18.0.9"], &[]),
                c(
                    "web",
                    &["172.18.0.10"],
                    &[(SERVICE_LABEL, "web:0, web:x, web")],
                ),
            ],
        );
        assert_eq!(
            d.workloads.keys().collect::<Vec<_>>(),
            ["backend", "evil", "web"]
        );
        let services: Vec<(&str, u16, String)> = d
            .services
            .iter()
            .map(|s| (s.name.as_str(), s.port, s.target.to_string()))
            .collect();
        assert_eq!(
            services,
            [
                ("backend", 5432, "172.18.0.6:5432".to_string()),
                ("evil", 80, "172.18.0.7:80".to_string())
            ]
        );
        let refused = d.refused.join("\n");
        for want in [
            "\"evil\": rampart.mesh.service=\"backend:5432,evil:80\" names service \"backend\"",
            "\"evil\": label rampart.mesh.identity",
            "\"bad:name\": no mesh identity",
            "\"web:0\" is not NAME:PORT",
            "\"web:x\" is not NAME:PORT",
            "\"web\" is not NAME:PORT",
        ] {
            assert!(refused.contains(want), "{want}: {refused}");
        }
    }

    #[test]
    fn a_shared_address_names_no_container() {
        let d = discover(
            "acme",
            "vps1",
            &[
                c("a", &["10.0.0.2", "10.1.0.2"], &[]),
                c("b", &["10.0.0.2"], &[(SERVICE_LABEL, "b:80")]),
            ],
        );
        assert_eq!(
            d.workloads.get("a"),
            Some(&vec!["10.1.0.2".parse().expect("ip")])
        );
        assert!(!d.workloads.contains_key("b"));
        assert!(d.services.is_empty());
        assert!(d.refused.join("\n").contains("10.0.0.2 belongs to several"));
    }
}
