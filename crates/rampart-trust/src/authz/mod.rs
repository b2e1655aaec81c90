//! The Docker Engine authorization plugin: dockerd started with
//! `--authorization-plugin=NAME` asks `/run/docker/plugins/NAME.sock` about every API call
//! (`/AuthZPlugin.AuthZReq` before, `/AuthZPlugin.AuthZRes` after; JSON over HTTP). Container
//! creation is judged by an [`AdmissionPolicy`]; every other call is allowed.
//!
//! A create request whose body is missing, empty, truncated or not JSON is denied: dockerd
//! forwards no body when it cannot (CVE-2024-41110), and a plugin that judged the empty
//! request would allow anything. Each decision is written as one JSON line ([`Decision`]).

mod policy;
mod server;

pub use policy::{
    check_config, AdmissionPolicy, CreateRequest, Rule, Violation, BREAK_GLASS_LABEL,
};
pub use server::{decide, serve, AuthzRequest, AuthzResponse, Decision, Engine, EngineConfig};
