//! The catalogue of checks: every check the audit can make, with its id, title, default
//! severity and remediation. The host, daemon, container and image audits produce
//! [`Outcome`]s of these definitions; the report turns them into
//! [`ComplianceFinding`]s.
//!
//! Ids are the CIS Docker Benchmark v1.6.0 numbers where the benchmark has the check, and
//! `RAMPART-*` ids for Rampart's own checks (kernel facts, user-namespace mapping, block-IO
//! limits, image signatures).

use rampart_event::{
    ComplianceFinding, ComplianceResource, ComplianceStatus, ResourceKind, Severity,
};

/// The benchmark the CIS ids refer to.
pub const CIS_STANDARD: &str = "CIS Docker Benchmark v1.6.0";

/// One check of the catalogue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CheckDef {
    /// CIS number (`5.4`) or Rampart id (`RAMPART-C-USERNS`).
    pub id: &'static str,
    /// True for a CIS Docker Benchmark check.
    pub cis: bool,
    /// What the check ensures.
    pub title: &'static str,
    /// Severity of a failure (a finding may raise or lower it with its evidence).
    pub severity: Severity,
    /// The fix: the docker run flag, daemon.json key, sysctl or command.
    pub remediation: &'static str,
    /// What the check is made on.
    pub subject: ResourceKind,
}

/// The result of applying one check to one subject, before it is tied to the subject.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub def: &'static CheckDef,
    pub status: ComplianceStatus,
    pub evidence: String,
    /// Overrides the definition's severity (for example a read-only sensitive mount is less
    /// severe than a writable one).
    pub severity: Option<Severity>,
    /// Overrides the definition's remediation with one specific to the evidence.
    pub remediation: Option<String>,
}

impl CheckDef {
    pub(crate) fn outcome(
        &'static self,
        status: ComplianceStatus,
        evidence: impl Into<String>,
    ) -> Outcome {
        Outcome {
            def: self,
            status,
            evidence: evidence.into(),
            severity: None,
            remediation: None,
        }
    }

    pub(crate) fn pass(&'static self, evidence: impl Into<String>) -> Outcome {
        self.outcome(ComplianceStatus::Pass, evidence)
    }

    pub(crate) fn fail(&'static self, evidence: impl Into<String>) -> Outcome {
        self.outcome(ComplianceStatus::Fail, evidence)
    }

    pub(crate) fn warn(&'static self, evidence: impl Into<String>) -> Outcome {
        self.outcome(ComplianceStatus::Warning, evidence)
    }

    pub(crate) fn not_applicable(&'static self, evidence: impl Into<String>) -> Outcome {
        self.outcome(ComplianceStatus::NotApplicable, evidence)
    }

    /// `pass` when `ok`, else `fail`, with the same evidence.
    pub(crate) fn check(&'static self, ok: bool, evidence: impl Into<String>) -> Outcome {
        if ok {
            self.pass(evidence)
        } else {
            self.fail(evidence)
        }
    }
}

impl Outcome {
    pub(crate) fn with_severity(mut self, s: Severity) -> Self {
        self.severity = Some(s);
        self
    }

    pub(crate) fn with_remediation(mut self, r: impl Into<String>) -> Self {
        self.remediation = Some(r.into());
        self
    }

    /// The finding this outcome is for `resource`, made at `time_ns`.
    pub fn finding(&self, resource: &ComplianceResource, time_ns: u64) -> ComplianceFinding {
        ComplianceFinding {
            check_id: self.def.id.to_string(),
            standard: self.def.cis.then(|| CIS_STANDARD.to_string()),
            title: self.def.title.to_string(),
            status: self.status,
            severity: self.severity.unwrap_or(self.def.severity),
            evidence: self.evidence.clone(),
            remediation: self
                .remediation
                .clone()
                .unwrap_or_else(|| self.def.remediation.to_string()),
            resource: resource.clone(),
            time_ns,
        }
    }
}

macro_rules! checks {
    ($( $name:ident = ($id:literal, $cis:literal, $subject:ident, $sev:ident, $title:literal, $rem:literal); )*) => {
        $(
            pub(crate) static $name: CheckDef = CheckDef {
                id: $id,
                cis: $cis,
                title: $title,
                severity: Severity::$sev,
                remediation: $rem,
                subject: ResourceKind::$subject,
            };
        )*
        /// Every check, in report order.
        pub static CATALOGUE: &[&CheckDef] = &[$(&$name),*];
    };
}

checks! {
    // ---- Host (CIS section 1 and Rampart's kernel checks) ----
    H_1_1_1 = ("1.1.1", true, Host, Low, "Ensure a separate partition for containers has been created",
        "Put Docker's data root on its own filesystem (a dedicated partition or LVM volume mounted at the data root, or \"data-root\" in /etc/docker/daemon.json pointing at one)");
    H_1_1_2 = ("1.1.2", true, Host, Medium, "Ensure only trusted users are allowed to control Docker daemon",
        "Remove users that must not be root-equivalent from the docker group: gpasswd -d USER docker");
    H_1_1_3 = ("1.1.3", true, Host, Low, "Ensure auditing is configured for the Docker daemon",
        "Add '-w /usr/bin/dockerd -k docker' to /etc/audit/rules.d/docker.rules and run augenrules --load");
    H_1_1_4 = ("1.1.4", true, Host, Low, "Ensure auditing is configured for Docker files and directories - /run/containerd",
        "Add '-a exit,always -F path=/run/containerd -F perm=war -k docker' to /etc/audit/rules.d/docker.rules and run augenrules --load");
    H_1_1_5 = ("1.1.5", true, Host, Low, "Ensure auditing is configured for Docker files and directories - /var/lib/docker",
        "Add '-a exit,always -F path=/var/lib/docker -F perm=war -k docker' to /etc/audit/rules.d/docker.rules and run augenrules --load");
    H_1_1_6 = ("1.1.6", true, Host, Low, "Ensure auditing is configured for Docker files and directories - /etc/docker",
        "Add '-w /etc/docker -k docker' to /etc/audit/rules.d/docker.rules and run augenrules --load");
    H_1_1_7 = ("1.1.7", true, Host, Low, "Ensure auditing is configured for Docker files and directories - docker.service",
        "Add '-w /lib/systemd/system/docker.service -k docker' to /etc/audit/rules.d/docker.rules and run augenrules --load");
    H_1_1_8 = ("1.1.8", true, Host, Low, "Ensure auditing is configured for Docker files and directories - containerd.sock",
        "Add '-w /run/containerd/containerd.sock -k docker' to /etc/audit/rules.d/docker.rules and run augenrules --load");
    H_1_1_9 = ("1.1.9", true, Host, Low, "Ensure auditing is configured for Docker files and directories - docker.socket",
        "Add '-w /lib/systemd/system/docker.socket -k docker' to /etc/audit/rules.d/docker.rules and run augenrules --load");
    H_1_1_10 = ("1.1.10", true, Host, Low, "Ensure auditing is configured for Docker files and directories - /etc/default/docker",
        "Add '-w /etc/default/docker -k docker' to /etc/audit/rules.d/docker.rules and run augenrules --load");
    H_1_1_11 = ("1.1.11", true, Host, Low, "Ensure auditing is configured for Docker files and directories - /etc/docker/daemon.json",
        "Add '-w /etc/docker/daemon.json -k docker' to /etc/audit/rules.d/docker.rules and run augenrules --load");
    H_1_1_12 = ("1.1.12", true, Host, Low, "Ensure auditing is configured for Docker files and directories - /etc/containerd/config.toml",
        "Add '-w /etc/containerd/config.toml -k docker' to /etc/audit/rules.d/docker.rules and run augenrules --load");
    H_1_1_13 = ("1.1.13", true, Host, Low, "Ensure auditing is configured for Docker files and directories - /etc/sysconfig/docker",
        "Add '-w /etc/sysconfig/docker -k docker' to /etc/audit/rules.d/docker.rules and run augenrules --load");
    H_1_1_14 = ("1.1.14", true, Host, Low, "Ensure auditing is configured for Docker files and directories - /usr/bin/containerd",
        "Add '-w /usr/bin/containerd -k docker' to /etc/audit/rules.d/docker.rules and run augenrules --load");
    H_1_1_15 = ("1.1.15", true, Host, Low, "Ensure auditing is configured for Docker files and directories - /usr/bin/containerd-shim",
        "Add '-w /usr/bin/containerd-shim -k docker' to /etc/audit/rules.d/docker.rules and run augenrules --load");
    H_1_1_16 = ("1.1.16", true, Host, Low, "Ensure auditing is configured for Docker files and directories - /usr/bin/containerd-shim-runc-v1",
        "Add '-w /usr/bin/containerd-shim-runc-v1 -k docker' to /etc/audit/rules.d/docker.rules and run augenrules --load");
    H_1_1_17 = ("1.1.17", true, Host, Low, "Ensure auditing is configured for Docker files and directories - /usr/bin/containerd-shim-runc-v2",
        "Add '-w /usr/bin/containerd-shim-runc-v2 -k docker' to /etc/audit/rules.d/docker.rules and run augenrules --load");
    H_1_1_18 = ("1.1.18", true, Host, Low, "Ensure auditing is configured for Docker files and directories - /usr/bin/runc",
        "Add '-w /usr/bin/runc -k docker' to /etc/audit/rules.d/docker.rules and run augenrules --load");
    H_SECCOMP = ("RAMPART-H-SECCOMP", false, Host, High, "The kernel supports seccomp filters",
        "Use a kernel built with CONFIG_SECCOMP_FILTER=y (every distribution kernel is); on a VPS without it, ask the provider or move to a KVM-based plan");
    H_USERNS = ("RAMPART-H-USERNS", false, Host, Medium, "User namespaces are available (needed for userns-remap and rootless Docker)",
        "sysctl -w user.max_user_namespaces=15000 (persist it in /etc/sysctl.d/99-userns.conf)");
    H_USERNS_UNPRIV = ("RAMPART-H-USERNS-UNPRIV", false, Host, Low, "Unprivileged users cannot create user namespaces (a large kernel attack surface) unless rootless containers need them",
        "sysctl -w kernel.unprivileged_userns_clone=0 (Debian kernels) or user.max_user_namespaces=0 if nothing on the host needs user namespaces; keep it when running rootless Docker or Podman");
    H_LSM = ("RAMPART-H-LSM", false, Host, Medium, "A mandatory access control LSM (AppArmor or SELinux) is enabled",
        "Debian/Ubuntu: apt-get install apparmor apparmor-utils and boot with 'apparmor=1 security=apparmor' (or add apparmor to lsm=); RHEL family: enable SELinux in /etc/selinux/config");
    H_LOCKDOWN = ("RAMPART-H-LOCKDOWN", false, Host, Low, "Kernel lockdown is in integrity mode",
        "Boot with lockdown=integrity ('confidentiality' also stops BPF from reading kernel memory, which Rampart's sensor needs)");
    H_CGROUPS = ("RAMPART-H-CGROUPS", false, Host, High, "The memory, cpu, pids and io cgroup controllers are usable, so container limits are enforced",
        "Boot with the missing controllers enabled (cgroup_enable=memory swapaccount=1 on older kernels; systemd.unified_cgroup_hierarchy=1 for cgroup v2); on OpenVZ/LXC VPS plans limits cannot be enforced inside the guest");
    H_BPF_UNPRIV = ("RAMPART-H-BPF-UNPRIV", false, Host, Medium, "Unprivileged BPF is disabled",
        "sysctl -w kernel.unprivileged_bpf_disabled=2 (persist it in /etc/sysctl.d/99-bpf.conf)");
    H_PTRACE = ("RAMPART-H-PTRACE", false, Host, Low, "ptrace is restricted to descendants (kernel.yama.ptrace_scope >= 1)",
        "sysctl -w kernel.yama.ptrace_scope=1 (needs the Yama LSM; persist it in /etc/sysctl.d/10-ptrace.conf)");
    H_KPTR = ("RAMPART-H-KPTR", false, Host, Low, "Kernel pointers are hidden from unprivileged users (kernel.kptr_restrict >= 1)",
        "sysctl -w kernel.kptr_restrict=1");
    H_DMESG = ("RAMPART-H-DMESG", false, Host, Low, "The kernel log is readable by root only (kernel.dmesg_restrict = 1)",
        "sysctl -w kernel.dmesg_restrict=1");
    H_IP_FORWARD = ("RAMPART-H-IPFWD", false, Host, Low, "IP forwarding is on only because Docker's bridge networks need it",
        "If Docker is not used: sysctl -w net.ipv4.ip_forward=0; with Docker keep it and keep the FORWARD chain's DOCKER-USER rules restrictive");
    H_BTF = ("RAMPART-H-BTF", false, Host, Low, "The kernel exposes BTF type information (/sys/kernel/btf/vmlinux), needed by CO-RE BPF programs",
        "Use a kernel built with CONFIG_DEBUG_INFO_BTF=y (Debian 11+, Ubuntu 20.10+, RHEL 8.2+ kernels are)");

    // ---- Docker daemon (CIS sections 2 and 3) ----
    D_2_1 = ("2.1", true, DockerDaemon, Low, "Run the Docker daemon as a non-root user, if possible",
        "Use rootless mode where the workload allows it: dockerd-rootless-setuptool.sh install");
    D_2_2 = ("2.2", true, DockerDaemon, Medium, "Ensure network traffic is restricted between containers on the default bridge",
        "Set \"icc\": false in /etc/docker/daemon.json and restart dockerd; connect containers that must talk through user-defined networks");
    D_2_3 = ("2.3", true, DockerDaemon, Low, "Ensure the logging level is set to 'info'",
        "Set \"log-level\": \"info\" in /etc/docker/daemon.json (or remove --log-level)");
    D_2_4 = ("2.4", true, DockerDaemon, Medium, "Ensure Docker is allowed to make changes to iptables",
        "Remove \"iptables\": false from /etc/docker/daemon.json (or --iptables=false)");
    D_2_5 = ("2.5", true, DockerDaemon, High, "Ensure insecure registries are not used",
        "Remove the \"insecure-registries\" entries from /etc/docker/daemon.json and serve those registries over TLS");
    D_2_6 = ("2.6", true, DockerDaemon, Low, "Ensure aufs storage driver is not used",
        "Set \"storage-driver\": \"overlay2\" in /etc/docker/daemon.json");
    D_2_7 = ("2.7", true, DockerDaemon, Critical, "Ensure TLS authentication for Docker daemon is configured",
        "Set \"tlsverify\": true, \"tlscacert\", \"tlscert\" and \"tlskey\" in /etc/docker/daemon.json, or stop listening on TCP (remove tcp:// from \"hosts\" and -H)");
    D_2_8 = ("2.8", true, DockerDaemon, Low, "Ensure the default ulimit is configured appropriately",
        "Set \"default-ulimits\": {\"nofile\": {\"Name\": \"nofile\", \"Soft\": 64000, \"Hard\": 64000}, \"nproc\": {\"Name\": \"nproc\", \"Soft\": 4096, \"Hard\": 8192}} in /etc/docker/daemon.json");
    D_2_9 = ("2.9", true, DockerDaemon, Medium, "Enable user namespace support",
        "Run rampart harden host --userns --apply (sets \"userns-remap\": \"default\" in /etc/docker/daemon.json and subuid/subgid ranges) and restart dockerd (images are re-pulled into a new data root; volumes need chown to the remapped uids)");
    D_2_10 = ("2.10", true, DockerDaemon, Low, "Ensure the default cgroup usage has been confirmed",
        "Remove \"cgroup-parent\" from /etc/docker/daemon.json unless a custom parent is intended");
    D_2_11 = ("2.11", true, DockerDaemon, Low, "Ensure base device size is not changed until needed",
        "Remove dm.basesize from \"storage-opts\" in /etc/docker/daemon.json");
    D_2_12 = ("2.12", true, DockerDaemon, Low, "Ensure that authorization for Docker client commands is enabled",
        "Set \"authorization-plugins\": [\"<plugin>\"] in /etc/docker/daemon.json");
    D_2_13 = ("2.13", true, DockerDaemon, Low, "Ensure centralized and remote logging is configured",
        "Set \"log-driver\": \"syslog\" (or journald, gelf, fluentd) with \"log-opts\" pointing at the collector in /etc/docker/daemon.json; Rampart's agent can ship container logs too");
    D_2_14 = ("2.14", true, DockerDaemon, Medium, "Ensure containers are restricted from acquiring new privileges",
        "Set \"no-new-privileges\": true in /etc/docker/daemon.json and restart dockerd");
    D_2_15 = ("2.15", true, DockerDaemon, Low, "Ensure live restore is enabled",
        "Set \"live-restore\": true in /etc/docker/daemon.json and reload dockerd (kill -HUP)");
    D_2_16 = ("2.16", true, DockerDaemon, Low, "Ensure Userland Proxy is Disabled",
        "Set \"userland-proxy\": false in /etc/docker/daemon.json and restart dockerd");
    D_2_17 = ("2.17", true, DockerDaemon, High, "Ensure that a daemon-wide custom seccomp profile is applied if appropriate",
        "Remove \"seccomp-profile\": \"unconfined\" from /etc/docker/daemon.json; set it to a custom profile file only when Docker's default profile is too wide");
    D_2_18 = ("2.18", true, DockerDaemon, Low, "Ensure that experimental features are not implemented in production",
        "Set \"experimental\": false in /etc/docker/daemon.json (or remove --experimental)");
    D_3_1 = ("3.1", true, DockerDaemon, Low, "Ensure that the docker.service file ownership is set to root:root",
        "chown root:root the docker.service unit file (systemctl show -p FragmentPath docker.service)");
    D_3_2 = ("3.2", true, DockerDaemon, Medium, "Ensure that docker.service file permissions are appropriately set",
        "chmod 644 the docker.service unit file (systemctl show -p FragmentPath docker.service)");
    D_3_3 = ("3.3", true, DockerDaemon, Low, "Ensure that docker.socket file ownership is set to root:root",
        "chown root:root the docker.socket unit file (systemctl show -p FragmentPath docker.socket)");
    D_3_4 = ("3.4", true, DockerDaemon, Medium, "Ensure that docker.socket file permissions are set to 644 or more restrictive",
        "chmod 644 the docker.socket unit file (systemctl show -p FragmentPath docker.socket)");
    D_BUILDKIT_INSECURE = ("RAMPART-D-BUILDKIT-INSECURE", false, DockerDaemon, High, "BuildKit does not grant the security.insecure entitlement (RUN steps as privileged containers, unseen by an authorization plugin)",
        "Remove \"security-insecure\": true from \"builder\": {\"entitlements\": ...} in /etc/docker/daemon.json and --allow-insecure-entitlement security.insecure from dockerd's command line, then restart dockerd");
    D_3_5 = ("3.5", true, DockerDaemon, Low, "Ensure that the /etc/docker directory ownership is set to root:root",
        "chown root:root /etc/docker");
    D_3_6 = ("3.6", true, DockerDaemon, Medium, "Ensure that /etc/docker directory permissions are set to 755 or more restrictively",
        "chmod 755 /etc/docker");
    D_3_7 = ("3.7", true, DockerDaemon, Low, "Ensure that registry certificate file ownership is set to root:root",
        "chown root:root /etc/docker/certs.d/*/*");
    D_3_8 = ("3.8", true, DockerDaemon, Medium, "Ensure that registry certificate file permissions are set to 444 or more restrictively",
        "chmod 444 /etc/docker/certs.d/*/*");
    D_3_9 = ("3.9", true, DockerDaemon, Low, "Ensure that TLS CA certificate file ownership is set to root:root",
        "chown root:root the file named by tlscacert in daemon.json (or --tlscacert)");
    D_3_10 = ("3.10", true, DockerDaemon, Medium, "Ensure that TLS CA certificate file permissions are set to 444 or more restrictively",
        "chmod 444 the file named by tlscacert in daemon.json (or --tlscacert)");
    D_3_11 = ("3.11", true, DockerDaemon, Low, "Ensure that Docker server certificate file ownership is set to root:root",
        "chown root:root the file named by tlscert in daemon.json (or --tlscert)");
    D_3_12 = ("3.12", true, DockerDaemon, Medium, "Ensure that the Docker server certificate file permissions are set to 444 or more restrictively",
        "chmod 444 the file named by tlscert in daemon.json (or --tlscert)");
    D_3_13 = ("3.13", true, DockerDaemon, Medium, "Ensure that the Docker server certificate key file ownership is set to root:root",
        "chown root:root the file named by tlskey in daemon.json (or --tlskey)");
    D_3_14 = ("3.14", true, DockerDaemon, Critical, "Ensure that the Docker server certificate key file permissions are set to 400",
        "chmod 400 the file named by tlskey in daemon.json (or --tlskey): whoever reads it can impersonate the daemon");
    D_3_15 = ("3.15", true, DockerDaemon, Medium, "Ensure that the Docker socket file ownership is set to root:docker",
        "chown root:docker /var/run/docker.sock");
    D_3_16 = ("3.16", true, DockerDaemon, Critical, "Ensure that the Docker socket file permissions are set to 660 or more restrictively",
        "chmod 660 /var/run/docker.sock");
    D_3_17 = ("3.17", true, DockerDaemon, Low, "Ensure that the daemon.json file ownership is set to root:root",
        "chown root:root /etc/docker/daemon.json");
    D_3_18 = ("3.18", true, DockerDaemon, Medium, "Ensure that daemon.json file permissions are set to 644 or more restrictive",
        "chmod 644 /etc/docker/daemon.json");

    D_3_19 = ("3.19", true, DockerDaemon, Low, "Ensure that the /etc/default/docker file ownership is set to root:root",
        "chown root:root /etc/default/docker");
    D_3_20 = ("3.20", true, DockerDaemon, Medium, "Ensure that the /etc/default/docker file permissions are set to 644 or more restrictively",
        "chmod 644 /etc/default/docker");
    D_3_21 = ("3.21", true, DockerDaemon, Medium, "Ensure that the /etc/sysconfig/docker file permissions are set to 644 or more restrictively",
        "chmod 644 /etc/sysconfig/docker");
    D_3_22 = ("3.22", true, DockerDaemon, Low, "Ensure that the /etc/sysconfig/docker file ownership is set to root:root",
        "chown root:root /etc/sysconfig/docker");
    D_3_23 = ("3.23", true, DockerDaemon, Low, "Ensure that the Containerd socket file ownership is set to root:root",
        "chown root:root /run/containerd/containerd.sock");
    D_3_24 = ("3.24", true, DockerDaemon, Critical, "Ensure that the Containerd socket file permissions are set to 660 or more restrictively",
        "chmod 660 /run/containerd/containerd.sock: whoever can write to it runs containers as root");
    D_5_1 = ("5.1", true, DockerDaemon, Low, "Ensure swarm mode is not Enabled, if not needed",
        "docker swarm leave --force on a host that is not meant to be a swarm node (swarm mode opens ports 2377, 7946 and 4789)");
    // ---- Images (CIS section 4) ----
    I_4_1 = ("4.1", true, Image, Medium, "Ensure that a user for the container has been created",
        "Create a user in the Dockerfile and switch to it: RUN useradd -r -u 10001 app; USER 10001 (or run with --user 10001:10001)");
    I_4_2 = ("4.2", true, Image, Medium, "Ensure that containers use only trusted base images",
        "Pull images only from the allowed registries (rampart audit --allowed-registry REGISTRY)");
    I_4_6 = ("4.6", true, Image, Low, "Ensure that HEALTHCHECK instructions have been added to container images",
        "Add a HEALTHCHECK to the Dockerfile, e.g. HEALTHCHECK CMD wget -q -O /dev/null http://localhost:8080/ || exit 1");
    I_4_7 = ("4.7", true, Image, Low, "Ensure update instructions are not used alone in the Dockerfile",
        "Combine update and install in one RUN: RUN apt-get update && apt-get install -y --no-install-recommends PKG && rm -rf /var/lib/apt/lists/*");
    I_4_8 = ("4.8", true, Image, Medium, "Ensure setuid and setgid permissions are removed",
        "Add to the Dockerfile: RUN find / -xdev -perm /6000 -type f -exec chmod a-s {} + || true");
    I_4_9 = ("4.9", true, Image, Low, "Ensure that COPY is used instead of ADD in Dockerfiles",
        "Use COPY for local files; download remote files with curl/wget in a RUN step and verify their checksum");
    I_4_10 = ("4.10", true, Image, High, "Ensure secrets are not stored in Dockerfiles",
        "Pass secrets at run time (docker secret, --env-file from a root-only file, BuildKit RUN --mount=type=secret), never in ENV, ARG or RUN lines; rotate the exposed secret");
    I_TAG = ("RAMPART-I-TAG", false, Image, Low, "The image is referenced by a fixed tag or digest, not latest",
        "Reference images by digest (name@sha256:...) or a version tag, never :latest");

    // ---- Containers (CIS section 5 and Rampart's checks) ----
    C_5_2 = ("5.2", true, Container, Medium, "Ensure that, if applicable, an AppArmor Profile is enabled",
        "Run with --security-opt apparmor=docker-default (remove apparmor=unconfined)");
    C_5_3 = ("5.3", true, Container, Medium, "Ensure that, if applicable, SELinux security options are set",
        "Run with SELinux labels (remove --security-opt label=disable; e.g. --security-opt label=type:container_t)");
    C_5_4 = ("5.4", true, Container, High, "Ensure that Linux kernel capabilities are restricted within containers",
        "Run with --cap-drop ALL and --cap-add only the capabilities the workload uses (rampart harden CONTAINER observes them)");
    C_5_5 = ("5.5", true, Container, Critical, "Ensure that privileged containers are not used",
        "Remove --privileged (and --cap-add ALL with seccomp=unconfined); grant single capabilities and --device entries instead");
    C_5_6 = ("5.6", true, Container, High, "Ensure sensitive host system directories are not mounted on containers",
        "Remove the bind mount of the host directory, or mount a narrower path read-only (-v /host/path/sub:/path:ro)");
    C_5_7 = ("5.7", true, Container, Low, "Ensure sshd is not run within containers",
        "Remove sshd from the container; use docker exec for access");
    C_5_8 = ("5.8", true, Container, Low, "Ensure privileged ports are not mapped within containers",
        "Publish on a host port above 1024 (-p 8080:80) or put a reverse proxy in front");
    C_5_10 = ("5.10", true, Container, High, "Ensure that the host's network namespace is not shared",
        "Remove --network host; publish the needed ports with -p");
    C_5_11 = ("5.11", true, Container, Medium, "Ensure that the memory usage for containers is limited",
        "Run with --memory 512m (rampart harden CONTAINER proposes a value from the observed peak)");
    C_5_12 = ("5.12", true, Container, Low, "Ensure that CPU priority is set appropriately on containers",
        "Run with --cpus 1.0 or --cpu-shares 512 (rampart harden CONTAINER proposes a value from the observed peak)");
    C_5_13 = ("5.13", true, Container, Medium, "Ensure that the container's root filesystem is mounted as read only",
        "Run with --read-only and --tmpfs for the paths the workload writes (rampart harden CONTAINER lists them)");
    C_5_14 = ("5.14", true, Container, Low, "Ensure that incoming container traffic is bound to a specific host interface",
        "Publish on one host address: -p 127.0.0.1:8080:80 (or the public address that should serve it)");
    C_5_15 = ("5.15", true, Container, Low, "Ensure that the 'on-failure' container restart policy is set to '5'",
        "Run with --restart on-failure:5");
    C_5_16 = ("5.16", true, Container, High, "Ensure that the host's process namespace is not shared",
        "Remove --pid host");
    C_5_17 = ("5.17", true, Container, High, "Ensure that the host's IPC namespace is not shared",
        "Remove --ipc host");
    C_5_18 = ("5.18", true, Container, Medium, "Ensure that host devices are not directly exposed to containers",
        "Remove --device entries the workload does not need; add :r (read-only) to the rest");
    C_5_20 = ("5.20", true, Container, Medium, "Ensure mount propagation mode is not set to shared",
        "Remove :shared/:rshared (bind-propagation=shared) from the volume options");
    C_5_21 = ("5.21", true, Container, Medium, "Ensure that the host's UTS namespace is not shared",
        "Remove --uts host");
    C_5_22 = ("5.22", true, Container, High, "Ensure the default seccomp profile is not disabled",
        "Remove --security-opt seccomp=unconfined; for a tighter profile learn one: rampart profile seccomp CONTAINER -o profile.json, then --security-opt seccomp=profile.json");
    C_5_23 = ("5.23", true, Container, High, "Ensure that docker exec commands are not used with the privileged option",
        "Do not run docker exec --privileged; grant the one capability the task needs to a separate, short-lived container instead");
    C_5_24 = ("5.24", true, Container, Medium, "Ensure that docker exec commands are not used with the user=root option",
        "Run docker exec with --user of the container's own unprivileged user (docker exec --user 10001 ...)");
    C_5_25 = ("5.25", true, Container, Low, "Ensure that cgroup usage is confirmed",
        "Remove --cgroup-parent unless the custom parent is intended");
    C_5_26 = ("5.26", true, Container, Medium, "Ensure that the container is restricted from acquiring additional privileges",
        "Run with --security-opt no-new-privileges (or \"no-new-privileges\": true in /etc/docker/daemon.json)");
    C_5_27 = ("5.27", true, Container, Low, "Ensure that container health is checked at runtime",
        "Run with --health-cmd (e.g. --health-cmd 'wget -q -O /dev/null http://localhost:8080/ || exit 1' --health-interval 30s) or add a HEALTHCHECK to the image");
    C_5_28 = ("5.28", true, Container, Low, "Ensure that Docker commands always make use of the latest version of their image",
        "Recreate the container from the image its reference names now (docker compose up -d, or docker rm -f + docker run with the same reference)");
    C_5_29 = ("5.29", true, Container, Medium, "Ensure that the PIDs cgroup limit is used",
        "Run with --pids-limit 200 (rampart harden CONTAINER proposes a value from the observed peak)");
    C_5_30 = ("5.30", true, Container, Low, "Ensure that Docker's default bridge 'docker0' is not used",
        "Create a network for the application (docker network create app-net) and run with --network app-net");
    C_5_31 = ("5.31", true, Container, Medium, "Ensure that the host's user namespaces are not shared",
        "Remove --userns host");
    C_5_32 = ("5.32", true, Container, Critical, "Ensure that the Docker socket is not mounted inside any containers",
        "Remove -v /var/run/docker.sock:...; if the container must talk to Docker, give it a socket proxy that allows only the API calls it needs");
    C_ROOT = ("RAMPART-C-ROOT", false, Container, Medium, "The container's main process does not run as root",
        "Run with --user 10001:10001 (or USER in the Dockerfile) and give that user the files it writes");
    C_USERNS = ("RAMPART-C-USERNS", false, Container, Medium, "Root in the container maps to an unprivileged host UID (10000 or above)",
        "Run rampart harden host --userns --apply (sets \"userns-remap\": \"default\" in /etc/docker/daemon.json) and restart dockerd");
    C_BLKIO = ("RAMPART-C-BLKIO", false, Container, Low, "Block-IO of the container is limited",
        "Run with --blkio-weight 300 or --device-write-bps /dev/sda:50mb --device-read-bps /dev/sda:100mb");
    C_REGISTRY = ("4.2", true, Container, Medium, "Ensure that containers use only trusted base images",
        "Run images only from the allowed registries (rampart audit containers --allowed-registry REGISTRY)");
    C_SIGNATURE = ("RAMPART-C-SIGNATURE", false, Container, Low, "The container's image can be tied to a signed registry digest",
        "Pull images by digest from a registry and verify their cosign signature before running them");
}

/// The recommendations of the benchmark the audit does not check, each with the reason
/// (docs/audit.md lists them; a test holds this list and the catalogue against the
/// benchmark's own list of ids and titles).
pub const NOT_CHECKED: &[(&str, &str)] = &[
    ("1.2.1", "host hardening as a whole: Rampart's host checks cover the parts it can measure"),
    ("1.2.2", "Docker version currency needs the release list (not available offline)"),
    ("4.3", "package choice: rampart image scan lists every package for review"),
    ("4.4", "image scanning and rebuilds: rampart image scan and the agent's re-matching"),
    ("4.5", "content trust is a client setting (DOCKER_CONTENT_TRUST): Rampart's trust policy and admission verify signatures instead"),
    ("4.11", "package verification happens at build time, outside the image"),
    ("4.12", "signed artefacts: rampart trust verify and the admission plugin"),
    ("5.9", "which ports are needed is the operator's knowledge; 5.8 and 5.14 judge the published ones"),
    ("5.19", "whether a ulimit override is needed is the operator's knowledge"),
    ("6.1", "image sprawl: an operations review, not a configuration"),
    ("6.2", "container sprawl: an operations review, not a configuration"),
    ("7.1", "swarm configuration: Rampart audits single hosts; 5.1 reports swarm mode"),
    ("7.2", "swarm configuration: Rampart audits single hosts; 5.1 reports swarm mode"),
    ("7.3", "swarm configuration: Rampart audits single hosts; 5.1 reports swarm mode"),
    ("7.4", "swarm configuration: Rampart audits single hosts; 5.1 reports swarm mode"),
    ("7.5", "swarm configuration: Rampart audits single hosts; 5.1 reports swarm mode"),
    ("7.6", "swarm configuration: Rampart audits single hosts; 5.1 reports swarm mode"),
    ("7.7", "swarm configuration: Rampart audits single hosts; 5.1 reports swarm mode"),
    ("7.8", "swarm configuration: Rampart audits single hosts; 5.1 reports swarm mode"),
    ("7.9", "swarm configuration: Rampart audits single hosts; 5.1 reports swarm mode"),
];

/// Weight of a failed check of `severity` in the score.
pub(crate) fn weight(severity: Severity) -> u32 {
    match severity {
        Severity::Critical => 10,
        Severity::High => 5,
        Severity::Medium => 3,
        Severity::Low | Severity::Unknown => 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_unique_per_subject_and_cis_ids_are_numbers() {
        let mut seen = std::collections::HashSet::new();
        for c in CATALOGUE {
            assert!(seen.insert((c.subject, c.id)), "duplicate {}", c.id);
            if c.cis {
                assert!(
                    c.id.split('.').all(|p| p.parse::<u32>().is_ok()),
                    "{} is not a CIS number",
                    c.id
                );
            } else {
                assert!(c.id.starts_with("RAMPART-"), "{}", c.id);
            }
            assert!(!c.remediation.is_empty() && !c.title.is_empty());
        }
    }

    /// Every CIS id is the benchmark's own, with the benchmark's title, and every
    /// recommendation of the benchmark is either checked or listed in NOT_CHECKED (issue: the
    /// audit said v1.6.0 but numbered section 5 as an older version does).
    #[test]
    fn cis_ids_and_titles_are_those_of_the_benchmark() {
        let table = include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/cis-docker-benchmark-1.6.0.tsv"
        ));
        let bench: std::collections::BTreeMap<&str, &str> = table
            .lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
            .filter_map(|l| {
                let mut f = l.split('\t');
                let id = f.next()?;
                let _status = f.next()?;
                Some((id, f.next()?))
            })
            .collect();
        assert!(bench.len() > 110, "the table has {} rows", bench.len());
        assert_eq!(
            bench.get("5.1"),
            Some(&"Ensure swarm mode is not Enabled, if not needed")
        );
        for c in CATALOGUE.iter().filter(|c| c.cis) {
            let title = bench
                .get(c.id)
                .unwrap_or_else(|| panic!("{} is not an id of {CIS_STANDARD}", c.id));
            assert!(
                title.eq_ignore_ascii_case(c.title),
                "{}: the benchmark says {title:?}, the catalogue {:?}",
                c.id,
                c.title
            );
        }
        let doc = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/audit.md"));
        for id in bench.keys() {
            let checked = CATALOGUE.iter().any(|c| c.cis && c.id == *id);
            let listed = NOT_CHECKED.iter().find(|(n, _)| n == id);
            assert!(
                checked != listed.is_some(),
                "{id}: checked {checked}, in NOT_CHECKED {}",
                listed.is_some()
            );
            if let Some((_, why)) = listed {
                assert!(
                    doc.contains(&format!("| {id} | {why} |")),
                    "docs/audit.md lacks the not-checked row of {id}"
                );
            }
        }
    }

    /// docs/audit.md lists every check with its remediation.
    #[test]
    fn every_check_is_documented() {
        let doc = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/audit.md"));
        for c in CATALOGUE {
            let row = format!("| {} | {} | {} |", c.id, c.severity.as_str(), c.title);
            assert!(
                doc.contains(&row),
                "docs/audit.md lacks the row of {}: {row}",
                c.id
            );
        }
    }

    #[test]
    fn outcome_becomes_a_finding_with_overrides() {
        let r = ComplianceResource {
            kind: ResourceKind::Container,
            uid: "abc".into(),
            name: "web".into(),
        };
        let f = C_5_6
            .fail("/etc mounted read-only")
            .with_severity(Severity::Medium)
            .with_remediation("remove -v /etc:/host-etc:ro")
            .finding(&r, 5);
        assert_eq!(f.check_id, "5.6");
        assert_eq!(f.standard.as_deref(), Some(CIS_STANDARD));
        assert_eq!(f.severity, Severity::Medium);
        assert_eq!(f.remediation, "remove -v /etc:/host-etc:ro");
        let g = C_ROOT.pass("uid 1000").finding(&r, 5);
        assert_eq!(g.standard, None);
        assert_eq!(g.severity, Severity::Medium);
    }
}
