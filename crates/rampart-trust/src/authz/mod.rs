//! The Docker Engine authorization plugin: dockerd started with
//! `--authorization-plugin=NAME` asks `/run/docker/plugins/NAME.sock` about every API call
//! (`/AuthZPlugin.AuthZReq` before, `/AuthZPlugin.AuthZRes` after; JSON over HTTP).
//!
//! The plugin judges what dockerd will do, not what the request seems to say:
//! * the request target is parsed as dockerd's router parses it ([`route`]: absolute form,
//!   percent-decoding, path cleaning, the `/vX.Y` prefix) and every write endpoint is
//!   classified (judged, allowed, gated by the policy, or unknown and denied);
//! * bodies are decoded as Go's `encoding/json` decodes them into moby's structs
//!   ([`gojson`]: case-insensitive keys, Kelvin sign and long s included); a body dockerd could
//!   read differently (two keys for one field, a wrong type, bytes Go would replace) is denied;
//! * `HostConfig`, exec, update and volume bodies are judged by what they grant
//!   ([`judge`]), and so are swarm service specs and plugin privileges ([`service`]); an
//!   unknown field is denied unless the policy names it.
//!
//! A judged request whose body is missing, empty, truncated or not JSON is denied: dockerd
//! forwards no body when it cannot (CVE-2024-41110), and a plugin that judged the empty
//! request would allow anything. Each write decision is written as one JSON line
//! ([`Decision`]).

mod args;
pub mod gojson;
pub mod judge;
mod passwd;
mod policy;
pub mod route;
mod server;
pub mod service;

pub use args::AuthzArgs;
pub use policy::{AdmissionPolicy, Exception, Rule, Violation, BREAK_GLASS_LABEL};
pub use server::{
    child_scanner, decide, serve, AuthzRequest, AuthzResponse, Decision, DecisionSink, Engine,
    EngineConfig, ScanFailed, Scanner,
};
