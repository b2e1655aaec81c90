//! Rampart's mesh: mutual TLS with workload identities between containers on different hosts,
//! without Kubernetes, sidecars or changes to the applications (`docs/mesh.md`).
//!
//! - [`identity`]: SPIFFE IDs (`spiffe://<fleet>/<host>/<container>`), keys generated and kept
//!   in the proxy's memory, short-lived certificates from Rampart's CA through an [`Issuer`].
//! - [`policy`]: `frontend@vps1 -> backend@vps2:5432` rules; everything else between hosts is
//!   denied and reported.
//! - [`Mesh`]: the per-host proxy. Its outbound side takes a container's plain TCP connection
//!   and carries it over TLS 1.3 (rustls, no other version, no plaintext fallback) to the remote
//!   host's proxy, presenting the container's certificate; the inbound side verifies the client
//!   chain against the CA and its revocation list, checks the identity against the policy, and
//!   forwards to the target container.
//! - [`transparent`]: the container keeps the remote service's real address; the agent's
//!   cgroup `connect4`/`connect6` programs rewrite its connects to the proxy's listener, after
//!   the container's network policy allowed the real destination.
//!
//! # Wire format
//! After the TLS handshake the client sends one header, then the application's bytes:
//! `"RMSH"`, version `1`, service name length (1 byte, 1-63), the name, the port (2 bytes,
//! big-endian). The server answers nothing: on a denial it closes the TLS session. A header that
//! does not arrive within [`HEADER_TIMEOUT`] or does not parse closes the connection too.

mod config;
mod discover;
mod error;
pub mod identity;
pub mod policy;
mod proxy;
mod report;
mod server_issuer;
pub mod transparent;

pub use config::{MeshConfig, OutboundDef, ServiceDef};
pub use discover::{discover, ContainerFacts, Discovered, SERVICE_LABEL};
pub use error::MeshError;
pub use identity::{CertRequest, Identity, IssuedCert, Issuer, SpiffeId};
pub use policy::{Decision, MeshPolicy};
pub use proxy::{EdgeStat, Mesh, Route, HEADER_TIMEOUT};
pub use report::{forward, server_shipper, EdgeReporter, ForwardStats};
pub use server_issuer::{ServerIssuer, REQUEST_TIMEOUT};
pub use transparent::Transparent;
