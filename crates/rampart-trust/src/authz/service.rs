//! Swarm service specs and plugin privileges, judged as what dockerd and swarmkit will run.
//!
//! A service's tasks are containers dockerd's swarm executor creates itself: they never pass
//! through this plugin. So `POST /services/create` and `/services/{id}/update` (whose body is
//! the whole spec again) are judged field by field here, with the same rules as a container
//! create, against moby's `swarm.ServiceSpec` (API 1.41 to 1.47) decoded as Go decodes it
//! ([`super::gojson`]: any key case, Kelvin sign and long s; two keys for one field denied).
//! An unknown key anywhere in the spec is denied unless `allow_fields` names it.
//!
//! What maps to what (moby `daemon/cluster/executor/container/container.go`):
//! * `ContainerSpec.Mounts` become the task container's `HostConfig.Mounts` (judged as those);
//! * `CapabilityAdd` its `CapAdd`; `Sysctls`, `Isolation`, `Init`, `Ulimits`, `Hosts`,
//!   `DNSConfig` the same-named container settings;
//! * `Privileges.SELinuxContext` `label=` options, `Seccomp` and `AppArmor` (API 1.44) the
//!   profiles, `CredentialSpec` a Windows-only credential spec (refused: not judged);
//! * `User` the container's user (numeric non-root, else the image's, as for a create);
//! * `Networks[].Target` (a name or, as the CLI sends it, an id) attachments: the `host`
//!   network is the host's namespace;
//! * `EndpointSpec.Ports` with `PublishMode: host` are the task container's port bindings,
//!   allowed as `-p` is for a container (they listen on the node, they share no namespace);
//! * `Runtime: plugin` installs `PluginSpec` as a managed plugin on every node with the
//!   privileges it lists ([`judge_plugin_privileges`], and the `plugins` gate);
//! * `Resources.Limits` must set memory, CPU and pids as for a container; it has no disk IO
//!   limit, so the optional `disk-io` rule refuses every container service;
//!   `Reservations.GenericResources` hands out node resources (GPUs): devices.

use super::gojson::{DecodeError, GoObject, GoValue, Schema};
use super::judge::{normalise, sensitive_host_path, Context, Judge, DRIVER};
use super::policy::{Rule, Violation};

/// `swarm.ServiceSpec` (with its embedded `Annotations`).
pub const SERVICE: Schema = &[
    "Name",
    "Labels",
    "TaskTemplate",
    "Mode",
    "UpdateConfig",
    "RollbackConfig",
    "Networks",
    "EndpointSpec",
];
const TASK: Schema = &[
    "ContainerSpec",
    "PluginSpec",
    "NetworkAttachmentSpec",
    "Resources",
    "RestartPolicy",
    "Placement",
    "Networks",
    "LogDriver",
    "ForceUpdate",
    "Runtime",
];
/// `swarm.ContainerSpec` (moby 27: `OomScoreAdj` is API 1.46).
pub const CONTAINER: Schema = &[
    "Image",
    "Labels",
    "Command",
    "Args",
    "Hostname",
    "Env",
    "Dir",
    "User",
    "Groups",
    "Privileges",
    "Init",
    "StopSignal",
    "TTY",
    "OpenStdin",
    "ReadOnly",
    "Mounts",
    "StopGracePeriod",
    "Healthcheck",
    "Hosts",
    "DNSConfig",
    "Secrets",
    "Configs",
    "Isolation",
    "Sysctls",
    "CapabilityAdd",
    "CapabilityDrop",
    "Ulimits",
    "OomScoreAdj",
];
const PRIVILEGES: Schema = &[
    "CredentialSpec",
    "SELinuxContext",
    "Seccomp",
    "AppArmor",
    "NoNewPrivileges",
];
const SELINUX: Schema = &["Disable", "User", "Role", "Type", "Level"];
const SECCOMP: Schema = &["Mode", "Profile"];
const APPARMOR: Schema = &["Mode"];
const DNS: Schema = &["Nameservers", "Search", "Options"];
const ULIMIT: Schema = &["Name", "Hard", "Soft"];
const RESOURCES: Schema = &["Limits", "Reservations", "MemorySwap", "MemorySwappiness"];
const LIMIT: Schema = &["NanoCPUs", "MemoryBytes", "Pids"];
const RESERVATION: Schema = &["NanoCPUs", "MemoryBytes", "GenericResources"];
const ATTACHMENT: Schema = &["Target", "Aliases", "DriverOpts"];
const ENDPOINT: Schema = &["Mode", "Ports"];
const PORT: Schema = &[
    "Name",
    "Protocol",
    "TargetPort",
    "PublishedPort",
    "PublishMode",
];
const MODE: Schema = &["Replicated", "Global", "ReplicatedJob", "GlobalJob"];
const REPLICATED: Schema = &["Replicas"];
const JOB: Schema = &["MaxConcurrent", "TotalCompletions"];
/// swarmkit's `runtime.PluginSpec` (protobuf JSON names; Go matches them in any case).
const PLUGIN_SPEC: Schema = &["name", "remote", "privileges", "disabled", "env"];
/// `types.PluginPrivilege`.
pub const PRIVILEGE: Schema = &["Name", "Description", "Value"];

/// What a service spec asks for, for the engine to look up.
#[derive(Debug, Clone, Default)]
pub struct ServiceFacts {
    /// `ContainerSpec.Image` (empty for a plugin service).
    pub image: String,
    pub user: String,
    /// Named volumes (`Mounts` of type volume).
    pub volumes: Vec<String>,
    /// Network attachments by name or id, other than `host` (judged here).
    pub networks: Vec<String>,
    /// `Runtime: plugin` (or a `PluginSpec`): needs the `plugins` gate.
    pub plugin: bool,
}

fn known(
    j: &mut Judge<'_, '_>,
    o: &GoObject<'_>,
    strings: &[&'static str],
) -> Result<(), DecodeError> {
    j.unknown(o);
    for f in strings {
        o.string(f)?;
    }
    Ok(())
}

/// Judges a service spec (`services/create`, `services/{id}/update`, or the previous spec a
/// rollback returns to).
pub fn judge_service(
    body: &GoValue,
    ctx: &Context<'_>,
) -> Result<(ServiceFacts, Vec<Violation>), DecodeError> {
    let mut j = Judge::new(ctx);
    let mut facts = ServiceFacts::default();
    let Some(spec) = GoObject::new(body, "", SERVICE)? else {
        return Err(DecodeError {
            path: String::new(),
            message: "the service spec is null".into(),
        });
    };
    known(&mut j, &spec, &["Name"])?;
    spec.string_map("Labels")?;
    let task = spec.object("TaskTemplate", TASK)?;
    // Networks: the deprecated top-level list and the task's.
    let mut attachments = spec.objects("Networks", ATTACHMENT)?;
    if let Some(t) = &task {
        attachments.extend(t.objects("Networks", ATTACHMENT)?);
    }
    for a in &attachments {
        known(&mut j, a, &["Target"])?;
        a.strings("Aliases")?;
        a.string_map("DriverOpts")?;
        let target = a.string("Target")?;
        if target == "host" {
            j.v(
                Rule::HostNamespaces,
                format!(
                    "{}: the host network (the host's network namespace)",
                    a.path_of("Target")
                ),
            );
        } else if !target.is_empty() {
            facts.networks.push(target);
        }
    }
    if let Some(m) = spec.object("Mode", MODE)? {
        // Every mode runs the same task spec (a global one on every node): typed reads only.
        j.unknown(&m);
        if let Some(r) = m.object("Replicated", REPLICATED)? {
            j.unknown(&r);
            r.int("Replicas")?;
        }
        if let Some(r) = m.object("ReplicatedJob", JOB)? {
            j.unknown(&r);
            r.int("MaxConcurrent")?;
            r.int("TotalCompletions")?;
        }
        for f in ["Global", "GlobalJob"] {
            if let Some(g) = m.object(f, &[])? {
                j.unknown(&g);
            }
        }
    }
    if let Some(e) = spec.object("EndpointSpec", ENDPOINT)? {
        known(&mut j, &e, &["Mode"])?;
        for p in e.objects("Ports", PORT)? {
            known(&mut j, &p, &["Name", "Protocol"])?;
            p.int("TargetPort")?;
            p.int("PublishedPort")?;
            let mode = p.string("PublishMode")?;
            // A host-mode port is the task container's port binding (`-p`), allowed as for
            // a container; a mode dockerd does not know is not guessed at.
            if !matches!(mode.as_str(), "" | "ingress" | "host") {
                j.v(
                    Rule::Request,
                    format!(
                        "{} {mode:?}: not a publish mode the plugin knows",
                        p.path_of("PublishMode")
                    ),
                );
            }
        }
    }
    let Some(task) = task else {
        j.v(
            Rule::Request,
            "a service without a TaskTemplate (dockerd refuses it)".into(),
        );
        return Ok((facts, j.out));
    };
    j.unknown(&task);
    task.int("ForceUpdate")?;
    let runtime = task.string("Runtime")?;
    match runtime.as_str() {
        "" | "container" => {}
        "plugin" => facts.plugin = true,
        r => j.v(
            Rule::Request,
            format!(
                "TaskTemplate.Runtime {r:?}: not a runtime the plugin judges (container, plugin)"
            ),
        ),
    }
    if let Some(log) = task.object("LogDriver", DRIVER)? {
        known(&mut j, &log, &["Name"])?;
        j.log_options(
            "TaskTemplate.LogDriver.Options",
            &log.string_map("Options")?.unwrap_or_default(),
        );
    }
    if let Some(p) = task.object("PluginSpec", PLUGIN_SPEC)? {
        // Judged whatever the runtime says (dockerd ignores it for a container runtime).
        facts.plugin = true;
        known(&mut j, &p, &["name", "remote"])?;
        p.bool("disabled")?;
        p.strings("env")?;
        let privs = p.objects("privileges", PRIVILEGE)?;
        privileges(&mut j, &privs)?;
    }
    match task.object("Resources", RESOURCES)? {
        Some(r) => {
            j.unknown(&r);
            r.int("MemorySwap")?;
            r.int("MemorySwappiness")?;
            let lim = r.object("Limits", LIMIT)?;
            let mut missing = Vec::new();
            let get = |f: &'static str| -> Result<i64, DecodeError> {
                Ok(match &lim {
                    Some(l) => l.int(f)?.unwrap_or(0),
                    None => 0,
                })
            };
            if let Some(l) = &lim {
                j.unknown(l);
            }
            if get("MemoryBytes")? <= 0 {
                missing.push("memory (--limit-memory)");
            }
            if get("NanoCPUs")? <= 0 {
                missing.push("CPU (--limit-cpu)");
            }
            if get("Pids")? <= 0 {
                missing.push("pids (--limit-pids)");
            }
            if !missing.is_empty() && !facts.plugin {
                j.v(
                    Rule::Limits,
                    format!("TaskTemplate.Resources.Limits: resource limits required: {}", missing.join(", ")),
                );
            }
            if let Some(res) = r.object("Reservations", RESERVATION)? {
                j.unknown(&res);
                res.int("NanoCPUs")?;
                res.int("MemoryBytes")?;
                let generic = match res.value("GenericResources") {
                    Some(GoValue::Array(a)) => a.len(),
                    Some(_) => 1,
                    None => 0,
                };
                if generic > 0 {
                    j.v(
                        Rule::Devices,
                        "TaskTemplate.Resources.Reservations.GenericResources: node resources (GPUs and other devices) are not allowed".into(),
                    );
                }
            }
        }
        None if !facts.plugin => j.v(
            Rule::Limits,
            "TaskTemplate.Resources: resource limits required: memory (--limit-memory), CPU (--limit-cpu), pids (--limit-pids)".into(),
        ),
        None => {}
    }
    if !facts.plugin {
        // `swarm.Resources` has no blkio field: a service's tasks never have an IO limit.
        j.v(
            Rule::DiskIo,
            "TaskTemplate.Resources: disk IO limits required, and a swarm service cannot set them (its spec has no --device-read-bps or like field); run a container with them instead".into(),
        );
    }
    match task.object("ContainerSpec", CONTAINER)? {
        Some(c) => container_spec(&mut j, &c, &mut facts)?,
        None if facts.plugin => {}
        None => j.v(
            Rule::Request,
            "TaskTemplate.ContainerSpec is missing (dockerd refuses a container service without it)".into(),
        ),
    }
    Ok((facts, j.out))
}

fn container_spec(
    j: &mut Judge<'_, '_>,
    c: &GoObject<'_>,
    facts: &mut ServiceFacts,
) -> Result<(), DecodeError> {
    known(j, c, &["Image", "User", "Hostname", "Dir", "StopSignal"])?;
    facts.image = c.string("Image")?;
    facts.user = c.string("User")?;
    c.string_map("Labels")?;
    for f in ["Command", "Args", "Env", "Groups", "Hosts"] {
        c.strings(f)?;
    }
    for f in ["TTY", "OpenStdin", "ReadOnly", "Init"] {
        c.bool(f)?;
    }
    c.int("StopGracePeriod")?;
    c.int("OomScoreAdj")?;
    j.mounts(c, "Mounts", &mut facts.volumes)?;
    j.caps(
        &c.path_of("CapabilityAdd"),
        &c.strings("CapabilityAdd")?.unwrap_or_default(),
    );
    c.strings("CapabilityDrop")?;
    if c.string_map("Sysctls")?.is_some_and(|s| !s.is_empty()) {
        j.v(
            Rule::Confinement,
            "TaskTemplate.ContainerSpec.Sysctls: setting kernel parameters is not allowed".into(),
        );
    }
    let iso = c.string("Isolation")?;
    if !matches!(iso.as_str(), "" | "default") {
        j.v(
            Rule::Confinement,
            format!("TaskTemplate.ContainerSpec.Isolation {iso:?}: not a Linux isolation"),
        );
    }
    for u in c.objects("Ulimits", ULIMIT)? {
        known(j, &u, &["Name"])?;
        u.int("Hard")?;
        u.int("Soft")?;
    }
    if let Some(d) = c.object("DNSConfig", DNS)? {
        j.unknown(&d);
        for f in ["Nameservers", "Search", "Options"] {
            d.strings(f)?;
        }
    }
    if let Some(p) = c.object("Privileges", PRIVILEGES)? {
        j.unknown(&p);
        p.bool("NoNewPrivileges")?;
        if p.is_set("CredentialSpec") {
            j.v(
                Rule::Confinement,
                format!(
                    "{}: a Windows credential spec is not judged by the plugin",
                    p.path_of("CredentialSpec")
                ),
            );
        }
        if let Some(s) = p.object("SELinuxContext", SELINUX)? {
            known(j, &s, &["User", "Role", "Type", "Level"])?;
            if s.bool("Disable")?.unwrap_or(false) {
                j.v(
                    Rule::Confinement,
                    format!(
                        "{}: disabling SELinux labelling (label=disable) is not allowed",
                        s.path_of("Disable")
                    ),
                );
            }
            for f in ["User", "Role", "Type"] {
                let v = s.string(f)?;
                if !v.is_empty() {
                    j.v(
                        Rule::Confinement,
                        format!(
                            "{} {v:?}: SELinux labels other than the level are not allowed",
                            s.path_of(f)
                        ),
                    );
                }
            }
        }
        if let Some(s) = p.object("Seccomp", SECCOMP)? {
            j.unknown(&s);
            let mode = s.string("Mode")?;
            // `Profile` is `[]byte`: base64 in JSON.
            let profile = s.string("Profile")?;
            match mode.as_str() {
                "" | "default" if profile.is_empty() => {}
                "unconfined" => j.v(
                    Rule::Seccomp,
                    format!("{} \"unconfined\": seccomp unconfined is not allowed", s.path_of("Mode")),
                ),
                m => j.v(
                    Rule::Seccomp,
                    format!("{} {m:?} with a profile: a custom seccomp profile is not judged by the plugin (it may allow everything)", s.path_of("Mode")),
                ),
            }
        }
        if let Some(a) = p.object("AppArmor", APPARMOR)? {
            j.unknown(&a);
            let mode = a.string("Mode")?;
            if !matches!(mode.as_str(), "" | "default") {
                j.v(
                    Rule::Confinement,
                    format!(
                        "{} {mode:?}: only Docker's default AppArmor profile is allowed",
                        a.path_of("Mode")
                    ),
                );
            }
        }
    }
    // Known, not judged: secrets and configs are files under /run/secrets and the target's
    // root; the health check runs in the container.
    for f in ["Secrets", "Configs"] {
        match c.value(f) {
            None | Some(GoValue::Array(_)) => {}
            Some(_) => {
                return Err(DecodeError {
                    path: c.path_of(f),
                    message: "expected an array (dockerd refuses the request)".into(),
                })
            }
        }
    }
    Ok(())
}

fn privileges(j: &mut Judge<'_, '_>, privs: &[GoObject<'_>]) -> Result<(), DecodeError> {
    for p in privs {
        known(j, p, &["Name", "Description"])?;
        // dockerd compares names exactly (`isEqualPrivilege`): the names `computePrivileges`
        // gives (moby `plugin/v2`/`backend_linux.go`).
        let name = p.string("Name")?;
        let values = p.strings("Value")?.unwrap_or_default();
        let at = p.path_of("Value");
        match name.as_str() {
            "network" => {
                for v in &values {
                    if v == "host" {
                        j.v(
                            Rule::HostNamespaces,
                            format!("{at}: plugin privilege network {v:?}: the host's network namespace"),
                        );
                    }
                }
            }
            "host pid namespace" | "host ipc namespace" => j.v(
                Rule::HostNamespaces,
                format!("{at}: plugin privilege {name:?}: the host's namespace"),
            ),
            "mount" => {
                for v in &values {
                    let v = normalise(v);
                    if let Some(s) = sensitive_host_path(&v, &j.ctx.daemon_paths) {
                        j.v(
                            Rule::SensitiveMounts,
                            format!("{at}: plugin privilege mount of {s} is not allowed"),
                        );
                    }
                }
            }
            "device" | "allow-all-devices" => j.v(
                Rule::Devices,
                format!("{at}: plugin privilege {name:?} {values:?}: access to host devices is not allowed"),
            ),
            "capabilities" => j.caps(&at, &values),
            other => j.v(
                Rule::Request,
                format!("{}: plugin privilege {other:?} is not one the plugin judges", p.path_of("Name")),
            ),
        }
    }
    Ok(())
}

/// Judges the privileges a plugin is granted (`POST /plugins/pull`, `/plugins/{name}/upgrade`:
/// a JSON array of `{Name, Description, Value}`; dockerd refuses a list that differs from
/// what the plugin's config asks for, so the body is what the plugin gets).
pub fn judge_plugin_privileges(
    body: &GoValue,
    ctx: &Context<'_>,
) -> Result<Vec<Violation>, DecodeError> {
    let mut j = Judge::new(ctx);
    let list = match body {
        GoValue::Array(a) => a,
        GoValue::Null => return Ok(j.out),
        _ => {
            return Err(DecodeError {
                path: String::new(),
                message: "expected an array of privileges (dockerd refuses the request)".into(),
            })
        }
    };
    let mut privs = Vec::new();
    for (i, v) in list.iter().enumerate() {
        if let Some(o) = GoObject::new(v, &format!("[{i}]"), PRIVILEGE)? {
            privs.push(o);
        }
    }
    privileges(&mut j, &privs)?;
    Ok(j.out)
}

/// `types.Plugin` as `GET /plugins/{name}/json` returns it: what enabling it grants, as
/// moby's `InitSpec` builds the plugin's runtime spec (`Config.Network.Type` host,
/// `Config.PidHost`/`IpcHost`, the mounts of `Config` and `Settings` (a `set` may have
/// pointed one elsewhere), the devices, `AllowAllDevices`, `Config.Linux.Capabilities`).
/// Read from dockerd's own JSON: keys exactly as dockerd writes them.
pub fn judge_plugin_config(plugin: &GoValue, ctx: &Context<'_>) -> Vec<Violation> {
    let get = |v: &GoValue, k: &str| -> GoValue {
        match v {
            GoValue::Object(m) => m
                .iter()
                .rev()
                .find(|(x, _)| x == k)
                .map(|(_, v)| v.clone())
                .unwrap_or(GoValue::Null),
            _ => GoValue::Null,
        }
    };
    let strs = |v: &GoValue| -> Vec<String> {
        match v {
            GoValue::Array(a) => a
                .iter()
                .filter_map(|x| match x {
                    GoValue::String(s) => Some(s.clone()),
                    _ => None,
                })
                .collect(),
            _ => Vec::new(),
        }
    };
    let config = get(plugin, "Config");
    let settings = get(plugin, "Settings");
    let linux = get(&config, "Linux");
    let mut privs: Vec<(String, Vec<String>)> = Vec::new();
    if let GoValue::String(t) = get(&get(&config, "Network"), "Type") {
        privs.push(("network".into(), vec![t]));
    }
    for (flag, name) in [
        ("PidHost", "host pid namespace"),
        ("IpcHost", "host ipc namespace"),
    ] {
        if get(&config, flag) == GoValue::Bool(true) {
            privs.push((name.into(), vec!["true".into()]));
        }
    }
    for list in [get(&config, "Mounts"), get(&settings, "Mounts")] {
        if let GoValue::Array(a) = list {
            for m in a {
                if let GoValue::String(src) = get(&m, "Source") {
                    if !src.is_empty() {
                        privs.push(("mount".into(), vec![src]));
                    }
                }
            }
        }
    }
    for list in [get(&linux, "Devices"), get(&settings, "Devices")] {
        if let GoValue::Array(a) = list {
            for dv in a {
                if let GoValue::String(p) = get(&dv, "Path") {
                    if !p.is_empty() {
                        privs.push(("device".into(), vec![p]));
                    }
                }
            }
        }
    }
    if get(&linux, "AllowAllDevices") == GoValue::Bool(true) {
        privs.push(("allow-all-devices".into(), vec!["true".into()]));
    }
    let caps = strs(&get(&linux, "Capabilities"));
    if !caps.is_empty() {
        privs.push(("capabilities".into(), caps));
    }
    let body = GoValue::Array(
        privs
            .into_iter()
            .map(|(n, v)| {
                GoValue::Object(vec![
                    ("Name".into(), GoValue::String(n)),
                    (
                        "Value".into(),
                        GoValue::Array(v.into_iter().map(GoValue::String).collect()),
                    ),
                ])
            })
            .collect(),
    );
    let mut out = judge_plugin_privileges(&body, ctx).unwrap_or_default();
    // `network` types other than host (none, bridge) are not privileges.
    out.retain(|v| v.rule != Rule::Request);
    out
}

#[cfg(test)]
mod tests {
    use super::super::gojson::{fold, parse};
    use super::*;

    fn judge(json: &str) -> Result<(ServiceFacts, Vec<Violation>), DecodeError> {
        judge_service(&parse(json.as_bytes()).expect("json"), &Context::default())
    }

    fn rules(json: &str) -> Vec<Rule> {
        judge(json)
            .unwrap_or_else(|e| panic!("{json}: {e}"))
            .1
            .iter()
            .map(|v| v.rule)
            .collect()
    }

    /// What docker 28's `service create --user 1000 --limit-memory 64m --limit-cpu 0.5
    /// --limit-pids 64 IMAGE sleep 1000` sends (captured from the CLI).
    const BENIGN: &str = r#"{"Name":"ok","Labels":{},"TaskTemplate":{"ContainerSpec":{"Image":"busybox:1@sha256:0000000000000000000000000000000000000000000000000000000000000000","Args":["sleep","1000"],"User":"1000","Init":false,"DNSConfig":{},"Isolation":"default"},"Resources":{"Limits":{"NanoCPUs":500000000,"MemoryBytes":67108864,"Pids":64},"Reservations":{}},"Placement":{},"ForceUpdate":0},"Mode":{"Replicated":{"Replicas":1}},"EndpointSpec":{"Mode":"vip","Ports":[{"Protocol":"tcp","TargetPort":80,"PublishedPort":8080,"PublishMode":"host"}]}}"#;

    /// What docker 28 sends for `--mount type=bind,src=/etc,dst=/h --cap-add SYS_ADMIN
    /// --sysctl ... --network host --user 0` (the `host` network by id).
    const HOSTILE: &str = r#"{"Name":"t2","Labels":{},"TaskTemplate":{"ContainerSpec":{"Image":"rampart-test/busybox:1","Args":["true"],"User":"0","Init":true,"Mounts":[{"Type":"bind","Source":"/etc","Target":"/h"}],"Hosts":["1.2.3.4 a"],"DNSConfig":{"Nameservers":["1.1.1.1"]},"Isolation":"default","Sysctls":{"net.ipv4.ip_forward":"1"},"CapabilityAdd":["CAP_SYS_ADMIN"],"Ulimits":[{"Name":"nofile","Hard":10,"Soft":10}]},"Resources":{"Limits":{"MemoryBytes":67108864,"Pids":10},"Reservations":{"NanoCPUs":100000000}},"Placement":{},"Networks":[{"Target":"05xexw5xbku1mtgrowv1uo34b"}],"ForceUpdate":0},"Mode":{"ReplicatedJob":{}},"EndpointSpec":{"Mode":"vip","Ports":[{"Protocol":"tcp","TargetPort":80,"PublishedPort":8080,"PublishMode":"host"}]}}"#;

    #[test]
    fn schemas_have_no_fold_twins() {
        for s in [
            SERVICE,
            TASK,
            CONTAINER,
            PRIVILEGES,
            SELINUX,
            RESOURCES,
            PLUGIN_SPEC,
        ] {
            let mut seen = std::collections::HashSet::new();
            for f in s {
                assert!(seen.insert(fold(f)), "{f}");
            }
        }
    }

    #[test]
    fn the_cli_bodies() {
        let (f, v) = judge(BENIGN).expect("ok");
        // Only the optional `disk-io` rule: a service spec cannot carry an IO limit.
        assert!(
            v.len() == 1 && v[0].rule == Rule::DiskIo && v[0].message.contains("cannot set them"),
            "{v:?}"
        );
        assert_eq!(f.user, "1000");
        let (f, v) = judge(HOSTILE).expect("ok");
        let r: Vec<Rule> = v.iter().map(|v| v.rule).collect();
        for want in [
            Rule::SensitiveMounts,
            Rule::Capabilities,
            Rule::Confinement,
            Rule::Limits,
        ] {
            assert!(r.contains(&want), "{want:?} in {v:?}");
        }
        // The network id and the user are judged by the engine (inspect, the image).
        assert_eq!(f.networks, vec!["05xexw5xbku1mtgrowv1uo34b".to_string()]);
        assert_eq!(f.user, "0");
    }

    #[test]
    fn every_spelling_of_a_grant_is_seen() {
        let t = |cs: &str| {
            format!(
                r#"{{"TaskTemplate":{{"ContainerSpec":{{"Image":"x","User":"1000",{cs}}},"Resources":{{"Limits":{{"NanoCPUs":1,"MemoryBytes":1,"Pids":1}}}}}}}}"#
            )
        };
        for (body, want) in [
            (t(r#""mounts":[{"type":"bind","source":"/"}]"#), Rule::SensitiveMounts),
            (t("\"Mount\u{17F}\":[{\"Type\":\"bind\",\"Source\":\"/var\"}]"), Rule::SensitiveMounts),
            (t(r#""Mounts":[{"Type":"volume","Source":"v","VolumeOptions":{"DriverConfig":{"Options":{"type":"none","o":"bind","device":"/"}}}}]"#), Rule::SensitiveMounts),
            (t(r#""Mounts":[{"Type":"bind","Source":"/srv","BindOptions":{"Propagation":"rshared"}}]"#), Rule::SensitiveMounts),
            (t(r#""Mounts":[{"Type":"cluster","Source":"v"}]"#), Rule::SensitiveMounts),
            (t(r#""capabilityadd":["sys_admin"]"#), Rule::Capabilities),
            (t(r#""CapabilityAdd":["ALL"]"#), Rule::Capabilities),
            (t(r#""privileges":{"seccomp":{"mode":"unconfined"}}"#), Rule::Seccomp),
            (t(r#""Privileges":{"Seccomp":{"Mode":"custom","Profile":"e30="}}"#), Rule::Seccomp),
            (t(r#""Privileges":{"AppArmor":{"Mode":"disabled"}}"#), Rule::Confinement),
            (t(r#""Privileges":{"SELinuxContext":{"Disable":true}}"#), Rule::Confinement),
            (t(r#""Privileges":{"SELinuxContext":{"Type":"spc_t"}}"#), Rule::Confinement),
            (t(r#""Privileges":{"CredentialSpec":{"File":"x.json"}}"#), Rule::Confinement),
            (t(r#""SYSCTLS":{"kernel.shm_rmid_forced":"1"}"#), Rule::Confinement),
            (t(r#""Isolation":"hyperv""#), Rule::Confinement),
            (t(r#""Capabilities":["CAP_SYS_ADMIN"]"#), Rule::Request),
            (t(r#""Privileged":true"#), Rule::Request),
            (r#"{"TaskTemplate":{"ContainerSpec":{"Image":"x"}}}"#.to_string(), Rule::Limits),
            (r#"{"TaskTemplate":{"ContainerSpec":{"Image":"x"},"Networks":[{"Target":"host"}]}}"#.to_string(), Rule::HostNamespaces),
            (r#"{"Networks":[{"target":"host"}],"TaskTemplate":{"ContainerSpec":{"Image":"x"}}}"#.to_string(), Rule::HostNamespaces),
            (r#"{"TaskTemplate":{"ContainerSpec":{"Image":"x"},"Resources":{"Reservations":{"GenericResources":[{"DiscreteResourceSpec":{"Kind":"gpu","Value":1}}]}}}}"#.to_string(), Rule::Devices),
            (r#"{"TaskTemplate":{"ContainerSpec":{"Image":"x"},"LogDriver":{"Name":"syslog","Options":{"syslog-address":"unix:///var/run/docker.sock"}}}}"#.to_string(), Rule::Confinement),
            (r#"{"TaskTemplate":{"Runtime":"plugin","PluginSpec":{"Name":"p","Remote":"r","Privileges":[{"Name":"network","Value":["host"]},{"Name":"mount","Value":["/"]}]}}}"#.to_string(), Rule::HostNamespaces),
            (r#"{"TaskTemplate":{"Runtime":"plugin","pluginspec":{"privileges":[{"name":"mount","value":["/var/lib/docker"]}]}}}"#.to_string(), Rule::SensitiveMounts),
            (r#"{"TaskTemplate":{"Runtime":"Container","ContainerSpec":{"Image":"x"}}}"#.to_string(), Rule::Request),
            (r#"{"TaskTemplate":{"ContainerSpec":{"Image":"x"}},"Frobnicate":1}"#.to_string(), Rule::Request),
        ] {
            assert!(rules(&body).contains(&want), "{body}: {:?}", judge(&body));
        }
        let (f, _) = judge(r#"{"TaskTemplate":{"Runtime":"plugin","PluginSpec":{"Name":"p"}}}"#)
            .expect("ok");
        assert!(f.plugin);
    }

    #[test]
    fn ambiguous_and_mistyped_specs_are_errors() {
        for body in [
            r#"{"TaskTemplate":{},"taskTemplate":{"ContainerSpec":{"Image":"x"}}}"#,
            r#"{"TaskTemplate":{"ContainerSpec":{"Image":"a","image":"b"}}}"#,
            r#"{"TaskTemplate":{"ContainerSpec":{"Mounts":[],"mounts":[{"Type":"bind","Source":"/"}]}}}"#,
            "{\"TaskTemplate\":{\"ContainerSpec\":{\"Mounts\":[],\"Mount\u{17F}\":[]}}}",
            r#"{"TaskTemplate":{"ContainerSpec":{"Privileges":{"AppArmor":{"Mode":"default","MODE":"disabled"}}}}}"#,
            r#"{"TaskTemplate":{"ContainerSpec":{"Init":"true"}}}"#,
            r#"{"TaskTemplate":{"ContainerSpec":{"CapabilityAdd":"SYS_ADMIN"}}}"#,
            r#"{"TaskTemplate":{"Resources":{"Limits":{"Pids":1.5}}}}"#,
            r#"{"Mode":{"Global":[]}}"#,
            "null",
        ] {
            assert!(judge(body).is_err(), "{body}");
        }
    }

    #[test]
    fn plugin_privileges_as_dockerd_compares_them() {
        let p = |json: &str| {
            judge_plugin_privileges(&parse(json.as_bytes()).expect("json"), &Context::default())
        };
        assert!(p("[]").expect("ok").is_empty());
        assert!(p(r#"[{"Name":"network","Description":"","Value":["none"]},{"Name":"mount","Value":["/srv/plugin"]},{"Name":"capabilities","Value":["CAP_CHOWN"]}]"#)
            .expect("ok")
            .is_empty());
        for (body, want) in [
            (
                r#"[{"Name":"network","Value":["host"]}]"#,
                Rule::HostNamespaces,
            ),
            (
                r#"[{"name":"host pid namespace","value":["true"]}]"#,
                Rule::HostNamespaces,
            ),
            (r#"[{"Name":"mount","Value":["/"]}]"#, Rule::SensitiveMounts),
            (
                r#"[{"NAME":"mount","VALUE":["/run/../etc"]}]"#,
                Rule::SensitiveMounts,
            ),
            (r#"[{"Name":"device","Value":["/dev/sda"]}]"#, Rule::Devices),
            (
                r#"[{"Name":"allow-all-devices","Value":["true"]}]"#,
                Rule::Devices,
            ),
            (
                r#"[{"Name":"capabilities","Value":["CAP_SYS_ADMIN"]}]"#,
                Rule::Capabilities,
            ),
            (r#"[{"Name":"Network","Value":["host"]}]"#, Rule::Request),
        ] {
            let v = p(body).expect("decodes");
            assert!(v.iter().any(|v| v.rule == want), "{body}: {v:?}");
        }
        assert!(p(r#"[{"Name":"mount","name":"network","Value":["host"]}]"#).is_err());
        // What enabling an installed plugin grants, from dockerd's inspect.
        let cfg = |json: &str| {
            judge_plugin_config(&parse(json.as_bytes()).expect("json"), &Context::default())
        };
        assert!(cfg(r#"{"Config":{"Network":{"Type":"none"},"Linux":{"Capabilities":null}},"Settings":{"Mounts":[],"Devices":[]}}"#).is_empty());
        let v = cfg(
            r#"{"Config":{"Network":{"Type":"host"},"PidHost":true,"Mounts":[{"Source":null}],"Linux":{"Capabilities":["CAP_SYS_ADMIN"],"AllowAllDevices":true}},"Settings":{"Mounts":[{"Name":"data","Source":"/etc"}],"Devices":[{"Path":"/dev/sda"}]}}"#,
        );
        let r: Vec<Rule> = v.iter().map(|v| v.rule).collect();
        for want in [
            Rule::HostNamespaces,
            Rule::SensitiveMounts,
            Rule::Capabilities,
            Rule::Devices,
        ] {
            assert!(r.contains(&want), "{want:?}: {v:?}");
        }
        assert!(p(r#"{"Name":"mount"}"#).is_err());
    }
}
