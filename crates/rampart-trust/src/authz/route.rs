//! The request target read as dockerd's router reads it, and every write endpoint classified.
//!
//! dockerd forwards `RequestUri` as the client sent it (Go's `http.Request.RequestURI`: the raw
//! request target). Go's server parses it (`url.ParseRequestURI`: origin form `/path?query`, or
//! absolute form `http://host/path`; the path percent-decoded, `%2F` included; a malformed escape
//! or a control character is a 400), then gorilla/mux matches the routes on the *decoded*
//! path, after cleaning it (`.`, `..`, `//`; mux answers an unclean path with a redirect), each
//! route registered with and without a `/v{version:[0-9.]+}` prefix. Method names are
//! case-sensitive.
//!
//! Classification (Engine API of dockerd 20.10 to 27, API 1.41 to 1.47, and the older versions
//! those daemons still accept): reads (`GET`, `HEAD`, `OPTIONS`) are allowed; every write route
//! is [`Endpoint::Judged`] (its body or query decides), [`Endpoint::Allowed`] (it changes
//! nothing the host's security depends on), [`Endpoint::Gated`] (off unless the policy
//! allows the capability: it grants root on the host or runs what the plugin cannot see), and
//! anything else is [`Endpoint::Unknown`], denied.

use std::fmt;

/// A write the plugin judges by its body or query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Judged {
    ContainerCreate,
    /// `POST /containers/{id}/start`: a body is a `HostConfig` on API < 1.24.
    ContainerStart(String),
    ContainerUpdate(String),
    ExecCreate(String),
    VolumeCreate,
    /// `POST /build` (the classic builder's query options).
    Build,
    /// `POST /services/create`: the service spec, judged as the tasks dockerd will start.
    ServiceCreate,
    /// `POST /services/{id}/update` (the whole spec again, or `rollback=previous`).
    ServiceUpdate(String),
    /// `POST /plugins/pull`, `/plugins/{name}/upgrade`: the body lists the privileges the
    /// plugin gets (dockerd refuses a list that differs from what the plugin asks for).
    PluginPrivileges,
    /// `POST /plugins/{name}/enable`: the plugin runs with what its config and settings
    /// grant (read from dockerd).
    PluginEnable(String),
    /// `PUT /containers/{id}/archive`: files written into a container (its `/etc/passwd`
    /// decides what a user name is at the next start).
    ContainerArchive(String),
}

/// A capability the policy must allow (`allow:` in the admission policy).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Gate {
    /// Install, upgrade, create or configure a managed plugin (runs as root with the
    /// privileges it asks for).
    Plugins,
    /// `swarm/init`, `swarm/join`, `swarm/update`, `nodes/{id}/update`: joining a swarm runs
    /// tasks other managers schedule (they never pass through this plugin); a new manager
    /// (init, promotion) accepts services from nodes that may have no plugin; `swarm/update`
    /// sets the log driver of every task (`TaskDefaults`) and external CAs.
    Swarm,
    /// Accepted in policies for compatibility and has no effect: services are judged by
    /// their spec ([`Judged::ServiceCreate`]).
    Services,
    /// BuildKit's `/grpc`: the build's options, entitlements (`network.host`,
    /// `security.insecure`) and LLB travel inside gRPC the plugin cannot read.
    Buildkit,
    /// Container checkpoints (create, restore).
    Checkpoints,
    /// `PUT /volumes/{name}` (cluster volume update).
    ClusterVolumes,
}

impl Gate {
    pub fn as_str(&self) -> &'static str {
        match self {
            Gate::Plugins => "plugins",
            Gate::Swarm => "swarm",
            Gate::Services => "services",
            Gate::Buildkit => "buildkit",
            Gate::Checkpoints => "checkpoints",
            Gate::ClusterVolumes => "cluster-volumes",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// GET, HEAD, OPTIONS.
    Read,
    Allowed(&'static str),
    Judged(Judged),
    Gated(Gate),
    Unknown,
}

/// A parsed request target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// The API version of a `/vX.Y` prefix.
    pub version: Option<String>,
    /// The decoded, cleaned path without the version prefix.
    pub path: String,
    /// The query, decoded as Go's `url.ParseQuery` (pairs it cannot decode are dropped, as
    /// Go's `FormValue` drops them).
    pub query: Vec<(String, String)>,
    pub endpoint: Endpoint,
}

impl Route {
    /// Go's `r.Form[key]` on the query: every value, in order.
    pub fn query_values(&self, key: &str) -> Vec<&str> {
        self.query
            .iter()
            .filter(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// Go's `FormValue` on the query: the first value.
    pub fn query_value(&self, key: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// Why a request target does not parse (dockerd would answer 400 or 404).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteError(pub String);

impl fmt::Display for RouteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Go's `unescape(s, encodePath)` (`+` stays `+`) or `encodeQueryComponent` (`+` is a space):
/// `%` must be followed by two hex digits. Hand-written because percent-encoding crates decode
/// leniently (a bad escape passes through), where Go refuses the request.
fn unescape(s: &str, plus_is_space: bool) -> Option<Vec<u8>> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' => {
                let h = |c: u8| (c as char).to_digit(16);
                let hi = h(*b.get(i + 1)?)?;
                let lo = h(*b.get(i + 2)?)?;
                out.push((hi * 16 + lo) as u8);
                i += 3;
            }
            b'+' if plus_is_space => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    Some(out)
}

/// Go's `path.Clean` plus mux's trailing-slash rule (`cleanPath`).
fn clean(p: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for c in p.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            c => parts.push(c),
        }
    }
    let mut out = format!("/{}", parts.join("/"));
    if p.ends_with('/') && out != "/" {
        out.push('/');
    }
    out
}

fn parse_query(q: &str) -> Vec<(String, String)> {
    q.split('&')
        .filter(|kv| !kv.is_empty() && !kv.contains(';'))
        .filter_map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            let k = String::from_utf8(unescape(k, true)?).ok()?;
            let v = String::from_utf8(unescape(v, true)?).ok()?;
            Some((k, v))
        })
        .collect()
}

/// One route shape: an exact path, or `prefix{name:.*}suffix`.
enum Shape {
    Exact(&'static str),
    /// `/containers/` + anything + `/start`.
    Wild(&'static str, &'static str),
}

impl Shape {
    fn matches(&self, path: &str) -> Option<String> {
        match self {
            Shape::Exact(p) => (path == *p).then(String::new),
            Shape::Wild(pre, suf) => {
                let mid = path.strip_prefix(pre)?.strip_suffix(suf)?;
                // `prefix` ends with `/` and `suffix` starts with `/` (or is empty): a path
                // shorter than both together does not match.
                (path.len() >= pre.len() + suf.len()).then(|| mid.to_string())
            }
        }
    }
}

enum Class {
    Allow(&'static str),
    Judge(fn(String) -> Judged),
    Gate(Gate),
}

use Class::*;
use Shape::*;

/// The write routes of dockerd 20.10 to 27 (moby `api/server/router/*`). Judged and gated
/// routes come first: when two shapes match, the stricter class wins.
const ROUTES: &[(&str, Shape, Class)] = &[
    (
        "POST",
        Exact("/containers/create"),
        Judge(|_| Judged::ContainerCreate),
    ),
    (
        "POST",
        Wild("/containers/", "/start"),
        Judge(Judged::ContainerStart),
    ),
    (
        "POST",
        Wild("/containers/", "/update"),
        Judge(Judged::ContainerUpdate),
    ),
    (
        "POST",
        Wild("/containers/", "/exec"),
        Judge(Judged::ExecCreate),
    ),
    (
        "POST",
        Exact("/volumes/create"),
        Judge(|_| Judged::VolumeCreate),
    ),
    ("POST", Exact("/build"), Judge(|_| Judged::Build)),
    (
        "POST",
        Exact("/plugins/pull"),
        Judge(|_| Judged::PluginPrivileges),
    ),
    (
        "POST",
        Wild("/plugins/", "/upgrade"),
        Judge(|_| Judged::PluginPrivileges),
    ),
    // A plugin built from a tar the plugin does not read (its config lists the privileges).
    ("POST", Exact("/plugins/create"), Gate(Gate::Plugins)),
    // Settings can point a plugin's mounts and devices at other host paths.
    ("POST", Wild("/plugins/", "/set"), Gate(Gate::Plugins)),
    ("POST", Exact("/swarm/init"), Gate(Gate::Swarm)),
    ("POST", Exact("/swarm/join"), Gate(Gate::Swarm)),
    ("POST", Exact("/swarm/update"), Gate(Gate::Swarm)),
    ("POST", Wild("/nodes/", "/update"), Gate(Gate::Swarm)),
    (
        "POST",
        Exact("/services/create"),
        Judge(|_| Judged::ServiceCreate),
    ),
    (
        "POST",
        Wild("/services/", "/update"),
        Judge(Judged::ServiceUpdate),
    ),
    (
        "POST",
        Exact("/session"),
        Allow("the client's side of a BuildKit build (files, secrets and credentials dockerd reads from the client); the build it serves is judged at POST /build"),
    ),
    ("POST", Exact("/grpc"), Gate(Gate::Buildkit)),
    (
        "POST",
        Wild("/containers/", "/checkpoints"),
        Gate(Gate::Checkpoints),
    ),
    (
        "DELETE",
        Wild("/containers/", ""),
        Allow("remove a container or checkpoint"),
    ),
    ("PUT", Wild("/volumes/", ""), Gate(Gate::ClusterVolumes)),
    // Allowed: lifecycle of what was judged when it was created.
    (
        "POST",
        Wild("/containers/", "/kill"),
        Allow("signal a container"),
    ),
    ("POST", Wild("/containers/", "/pause"), Allow("pause")),
    ("POST", Wild("/containers/", "/unpause"), Allow("unpause")),
    ("POST", Wild("/containers/", "/restart"), Allow("restart")),
    ("POST", Wild("/containers/", "/stop"), Allow("stop")),
    ("POST", Wild("/containers/", "/wait"), Allow("wait")),
    (
        "POST",
        Wild("/containers/", "/resize"),
        Allow("resize a TTY"),
    ),
    ("POST", Wild("/containers/", "/attach"), Allow("attach")),
    (
        "POST",
        Wild("/containers/", "/copy"),
        Allow("copy out (API < 1.20)"),
    ),
    ("POST", Wild("/containers/", "/rename"), Allow("rename")),
    (
        "POST",
        Exact("/containers/prune"),
        Allow("prune containers"),
    ),
    (
        "PUT",
        Wild("/containers/", "/archive"),
        Judge(Judged::ContainerArchive),
    ),
    (
        "POST",
        Wild("/exec/", "/start"),
        Allow("start an exec judged at its creation"),
    ),
    (
        "POST",
        Wild("/exec/", "/resize"),
        Allow("resize an exec TTY"),
    ),
    ("POST", Exact("/auth"), Allow("check registry credentials")),
    (
        "POST",
        Exact("/images/create"),
        Allow("pull or import an image (judged when run)"),
    ),
    (
        "POST",
        Exact("/images/load"),
        Allow("load images (judged when run)"),
    ),
    ("POST", Wild("/images/", "/push"), Allow("push an image")),
    ("POST", Wild("/images/", "/tag"), Allow("tag an image")),
    ("POST", Exact("/images/prune"), Allow("prune images")),
    ("DELETE", Wild("/images/", ""), Allow("remove an image")),
    (
        "POST",
        Exact("/commit"),
        Allow("commit a container to an image (judged when run)"),
    ),
    (
        "POST",
        Exact("/build/prune"),
        Allow("prune the build cache"),
    ),
    ("POST", Exact("/build/cancel"), Allow("cancel a build")),
    (
        "POST",
        Exact("/networks/create"),
        Allow("create a network (a host network cannot be created)"),
    ),
    (
        "POST",
        Wild("/networks/", "/connect"),
        Allow("connect to a network"),
    ),
    (
        "POST",
        Wild("/networks/", "/disconnect"),
        Allow("disconnect from a network"),
    ),
    ("POST", Exact("/networks/prune"), Allow("prune networks")),
    ("DELETE", Wild("/networks/", ""), Allow("remove a network")),
    ("POST", Exact("/volumes/prune"), Allow("prune volumes")),
    ("DELETE", Wild("/volumes/", ""), Allow("remove a volume")),
    ("POST", Exact("/swarm/leave"), Allow("leave the swarm")),
    ("POST", Exact("/swarm/unlock"), Allow("unlock the swarm")),
    ("DELETE", Wild("/services/", ""), Allow("remove a service")),
    ("DELETE", Wild("/nodes/", ""), Allow("remove a node")),
    ("POST", Exact("/secrets/create"), Allow("create a secret")),
    (
        "POST",
        Wild("/secrets/", "/update"),
        Allow("update a secret"),
    ),
    ("DELETE", Wild("/secrets/", ""), Allow("remove a secret")),
    ("POST", Exact("/configs/create"), Allow("create a config")),
    (
        "POST",
        Wild("/configs/", "/update"),
        Allow("update a config"),
    ),
    ("DELETE", Wild("/configs/", ""), Allow("remove a config")),
    (
        "POST",
        Wild("/plugins/", "/enable"),
        Judge(Judged::PluginEnable),
    ),
    (
        "POST",
        Wild("/plugins/", "/disable"),
        Allow("disable a plugin"),
    ),
    ("POST", Wild("/plugins/", "/push"), Allow("push a plugin")),
    ("DELETE", Wild("/plugins/", ""), Allow("remove a plugin")),
];

/// Parses `method` and `uri` as dockerd would and classifies the endpoint.
pub fn route(method: &str, uri: &str) -> Result<Route, RouteError> {
    if uri.bytes().any(|b| b < 0x20 || b == 0x7f) {
        return Err(RouteError(format!(
            "request target {uri:?} has a control character"
        )));
    }
    // Absolute form: `scheme://authority/path`; Go keeps only the path and query.
    let target = if uri.starts_with('/') {
        uri
    } else if let Some((scheme, rest)) = uri.split_once("://") {
        let ok = scheme
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic())
            && scheme
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c));
        if !ok {
            return Err(RouteError(format!("request target {uri:?}: bad scheme")));
        }
        match rest.find(['/', '?']) {
            Some(i) => &rest[i..],
            None => "/",
        }
    } else if uri == "*" && method == "OPTIONS" {
        "/"
    } else {
        return Err(RouteError(format!(
            "request target {uri:?} is neither a path nor an absolute URL"
        )));
    };
    let (raw_path, raw_query) = target.split_once('?').unwrap_or((target, ""));
    let decoded = unescape(raw_path, false)
        .and_then(|b| String::from_utf8(b).ok())
        .ok_or_else(|| {
            RouteError(format!(
                "request path {raw_path:?} has a malformed escape or is not UTF-8"
            ))
        })?;
    let path = clean(&decoded);
    let query = parse_query(raw_query);
    // `/v{version:[0-9.]+}` then the route.
    let (version, path) = match path.strip_prefix("/v").and_then(|r| {
        let end = r.find('/')?;
        let v = &r[..end];
        (!v.is_empty() && v.bytes().all(|b| b.is_ascii_digit() || b == b'.'))
            .then(|| (v.to_string(), r[end..].to_string()))
    }) {
        Some((v, p)) => (Some(v), p),
        None => (None, path),
    };
    let endpoint = if matches!(method, "GET" | "HEAD" | "OPTIONS") {
        Endpoint::Read
    } else {
        ROUTES
            .iter()
            .filter(|(m, _, _)| *m == method)
            .find_map(|(_, shape, class)| {
                let name = shape.matches(&path)?;
                Some(match class {
                    Allow(why) => Endpoint::Allowed(why),
                    Judge(f) => Endpoint::Judged(f(name)),
                    Gate(g) => Endpoint::Gated(*g),
                })
            })
            .unwrap_or(Endpoint::Unknown)
    };
    Ok(Route {
        version,
        path,
        query,
        endpoint,
    })
}

/// Whether API version `v` (`1.23`) is older than `major.minor`.
pub fn version_before(v: &str, major: u64, minor: u64) -> bool {
    // moby's versions.compare: missing or unparsable parts count as 0.
    let mut it = v.split('.').map(|p| p.parse::<u64>().unwrap_or(0));
    let (a, b) = (it.next().unwrap_or(0), it.next().unwrap_or(0));
    (a, b) < (major, minor)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ep(method: &str, uri: &str) -> Endpoint {
        route(method, uri).expect("parses").endpoint
    }

    #[test]
    fn paths_decoded_and_cleaned_like_dockerd() {
        let create = Endpoint::Judged(Judged::ContainerCreate);
        for uri in [
            "/containers/create",
            "/v1.41/containers/create?name=x",
            "/v1.12/containers/create",
            "/v1/containers/create",
            "/v.../containers/create",
            "/v1.41/%63ontainers/create",
            "/v1.41/containers%2Fcreate",
            "/v1.41/containers/%63%72%65%61%74%65",
            "http://localhost/v1.41/containers/create",
            "HTTP://docker:2375/containers/create?x=1",
            "unix://x/containers/create",
            "/v1.41//containers/./create",
            "/x/../containers/create",
            "/v1.41/images/../containers/create",
        ] {
            assert_eq!(ep("POST", uri), create, "{uri}");
        }
        assert_eq!(
            route("POST", "/v1.41/containers/create")
                .expect("ok")
                .version
                .as_deref(),
            Some("1.41")
        );
        assert_eq!(
            ep("POST", "/v1.41/containers/abc/exec"),
            Endpoint::Judged(Judged::ExecCreate("abc".into()))
        );
        assert_eq!(
            ep("POST", "/containers/a%2Fb/start"),
            Endpoint::Judged(Judged::ContainerStart("a/b".into()))
        );
        // Malformed: refused.
        for uri in [
            "/containers/%6",
            "/containers/%zzcreate",
            "containers/create",
            "/a\nb",
            "/%ff/create",
        ] {
            assert!(route("POST", uri).is_err(), "{uri}");
        }
        // Methods are case-sensitive; an unknown method or path is unknown.
        assert_eq!(ep("post", "/containers/create"), Endpoint::Unknown);
        assert_eq!(ep("POST", "/containers/create/"), Endpoint::Unknown);
        assert_eq!(ep("PATCH", "/containers/x"), Endpoint::Unknown);
        assert_eq!(ep("POST", "/v/containers/create"), Endpoint::Unknown);
        assert_eq!(ep("POST", "/V1.41/containers/create"), Endpoint::Unknown);
        assert_eq!(ep("POST", "/containers/x/frobnicate"), Endpoint::Unknown);
        assert_eq!(ep("GET", "/containers/json"), Endpoint::Read);
        assert_eq!(
            ep("POST", "/v1.41/plugins/pull?remote=x"),
            Endpoint::Judged(Judged::PluginPrivileges)
        );
        assert_eq!(ep("POST", "/plugins/x/set"), Endpoint::Gated(Gate::Plugins));
        assert_eq!(ep("POST", "/swarm/init"), Endpoint::Gated(Gate::Swarm));
        assert_eq!(ep("POST", "/swarm/update"), Endpoint::Gated(Gate::Swarm));
        assert_eq!(ep("POST", "/nodes/n1/update"), Endpoint::Gated(Gate::Swarm));
        assert_eq!(
            ep("POST", "/v1.41/%73ervices/create"),
            Endpoint::Judged(Judged::ServiceCreate)
        );
        assert_eq!(
            ep("POST", "/services/abc/update?version=3&rollback=previous"),
            Endpoint::Judged(Judged::ServiceUpdate("abc".into()))
        );
        assert_eq!(
            ep("POST", "/plugins/p%3Alatest/upgrade?remote=x"),
            Endpoint::Judged(Judged::PluginPrivileges)
        );
        assert_eq!(ep("POST", "/grpc"), Endpoint::Gated(Gate::Buildkit));
        assert_eq!(
            ep("POST", "/v1.41/plugins/127.0.0.1:5000/p:1/enable?timeout=0"),
            Endpoint::Judged(Judged::PluginEnable("127.0.0.1:5000/p:1".into()))
        );
        assert!(matches!(ep("POST", "/session"), Endpoint::Allowed(_)));
        assert_eq!(
            ep("POST", "/volumes/create"),
            Endpoint::Judged(Judged::VolumeCreate)
        );
        assert!(matches!(
            ep("POST", "/containers/x/stop"),
            Endpoint::Allowed(_)
        ));
        assert!(matches!(
            ep("DELETE", "/containers/x"),
            Endpoint::Allowed(_)
        ));
    }

    #[test]
    fn queries_like_go() {
        let r = route(
            "POST",
            "/build?networkmode=ho%73t&networkmode=none&a=%zz&t=x+y",
        )
        .expect("ok");
        assert_eq!(r.query_value("networkmode"), Some("host"));
        assert_eq!(r.query_value("a"), None);
        assert_eq!(r.query_value("t"), Some("x y"));
        assert!(version_before("1.23", 1, 24));
        assert!(!version_before("1.24", 1, 24));
        assert!(version_before("...", 1, 24));
        assert!(!version_before("2", 1, 24));
    }
}
