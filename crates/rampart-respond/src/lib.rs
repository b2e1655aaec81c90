//! Prevention and response for Rampart.
//!
//! * **Policies** ([`Policy`], `docs/policy.md`): per-container exec rules (names, paths,
//!   SHA-256) and network micro-segmentation (selectors, `frontend -> backend tcp/8080 allow`,
//!   CIDRs, DNS names, defaults per selector), validated completely before anything changes and
//!   enforced in the kernel by `rampart_kernel::enforce`.
//! * **Enforcement** ([`PolicyEnforcer`]): applies a policy to the running containers, keeps
//!   it applied as containers come and go ([`PolicyWatcher`]), isolates and releases
//!   containers, and turns the kernel's reports into `policy.exec_denied` /
//!   `policy.net_denied` events. Everything is pinned: it stays in force without a running
//!   Rampart process until released, reset, or reboot.
//! * **Actions** ([`actions`]): kill a process or process tree, kill, freeze, thaw or stop a
//!   container.
//! * **Forensic bundles** ([`forensics`]): a signed `tar.zst` of a live container (with the
//!   memory of its flagged process) and its verification; uploaded off the host through an
//!   [`EvidenceSink`] when the agent has one.
//! * **Playbooks** ([`Responder`], `docs/response.md`): alerts matched by rule, tag or
//!   priority run ordered actions with rate limits and dry runs; every action becomes a
//!   `response.action` event.
//!
//! # For the agent
//! ```ignore
//! let enforcer = Arc::new(Mutex::new(PolicyEnforcer::open(EnforceConfig { device, ..Default::default() })?));
//! // Policy file from the config, applied at start and followed:
//! enforcer.lock()?.apply(&Policy::load(path)?, &facts::running(&docker).await?)?;
//! runtime.spawn(PolicyWatcher::new(enforcer.clone(), docker.clone()).run(|ev| tx.try_send(ev).is_ok(), stop_rx));
//! // Responder for detections:
//! let responder = Responder::start(ResponderConfig { playbooks, device, ..Default::default() }, Some(enforcer.clone()))?;
//! // per event: responder.observe(&ev); enforcer.lock()?.observe(&ev) (DNS answers);
//! // per detection: responder.handle(&d); then responder.drain(&mut out) -> response.action events.
//! ```

pub mod actions;
mod args;
mod enforcer;
mod error;
pub mod evidence;
pub mod facts;
pub mod forensics;
mod hashing;
pub mod playbook;
pub mod policy;
mod report;
mod responder;
mod safefs;
mod watch;

pub use args::{
    froze_text, isolated_text, released_text, CaptureArgs, ContainerArg, EnforceArgs, IsolateArgs,
    KillArgs, ReleaseArgs, StopArgs,
};
pub use enforcer::{
    parse_allow_list, AppliedPolicy, ApplyReport, BadAllowEntry, ContainerStatus, EnforceConfig,
    PolicyEnforcer, Status, DEFAULT_STATE_DIR,
};
pub use error::RespondError;
pub use evidence::{EvidenceAbout, EvidenceReceipt, EvidenceSink, UploadError};
pub use hashing::ScanLimits;
pub use playbook::{load_playbooks, ActionKind, Playbook, PlaybookError};
pub use policy::{Mode, Policy, PolicyError};
pub use report::{
    find_container, parse_target, test_connection, ConnectionTest, ConnectionTestError,
};
pub use responder::{ActionRecord, Responder, ResponderConfig, RuleActions};
pub use watch::PolicyWatcher;
