//! Rampart's rule engine: Falco-compatible rule files, evaluated against Rampart's events.
//!
//! * **Rule files** are Falco's YAML format: `rule`, `macro`, `list` items,
//!   `required_engine_version` (checked; a newer one is a warning) and `required_plugin_versions`
//!   (checked for shape), `append: true`
//!   and `override:`, `exceptions`, several files loaded in order. Falco's rule files load
//!   unchanged; rules that need what Rampart does not produce are reported by
//!   [`Report::cannot_fire`] and do not stop the others.
//! * **Conditions** are Falco's filter language (see the `condition` module docs for the
//!   grammar) over the fields of `docs/rules.md`: Falco's fields mapped onto
//!   [`rampart_event::Event`], plus Rampart's extension fields (`dns.query`, `auth.outcome`,
//!   `container.cpu_millicores`, ...).
//! * **Correlation rules** (Rampart extension key `correlation`, ignored by Falco) follow Sigma's
//!   correlation types: `event_count` (threshold), `value_count` (distinct count), `temporal` and
//!   `temporal_ordered` (sequence), with `group-by` fields and a `timespan` in event time.
//! * **Actions** (extension key `actions`: `kill`, `freeze`, `isolate`, `stop`, `forensics`) are
//!   handed to the responder with each [`Detection`].
//!
//! ```
//! use std::sync::Arc;
//! let mut loader = rampart_rules::Loader::new();
//! loader.add_default_rules().unwrap();
//! let rules = Arc::new(loader.compile(rampart_rules::Options::default()).unwrap());
//! let mut engine = rampart_rules::Engine::new(rules);
//! let mut out = Vec::new();
//! # let event = rampart_event::Event::new(rampart_event::EventId::new(1, 1), 0,
//! #     rampart_event::EventKind::ProcessExec, Default::default());
//! engine.process(&event, &mut out);
//! ```
//!
//! The crate does no I/O except reading the rule files it is asked to load (and, in
//! [`Engine::replay`], the reader and writer its caller hands it).

pub mod args;
mod compile;
mod condition;
mod engine;
mod error;
mod eval;
mod extract;
mod fields;
mod loader;
mod prefilter;
mod render;
mod replay;
mod ruleset;
mod text;
mod yaml;

pub use engine::{Detection, Engine, EngineStats};
pub use error::{Error, Location};
pub use fields::{catalogue as fields, FieldInfo};
pub use loader::{Action, Warning};
pub use replay::{ReplayCounts, ReplayError};
pub use ruleset::{
    CannotFire, Evaluation, Loader, Need, Options, Report, RuleInfo, RuleMatching, RuleSet,
    RuleStatus, DEFAULT_RULES, DEFAULT_RULES_NAME, PRODUCED_EVENT_TYPES,
};
pub use text::load_files;
