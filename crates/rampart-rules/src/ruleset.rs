//! Loading rule files and compiling them into a [`RuleSet`].

use std::collections::BTreeSet;
use std::fmt;
use std::path::Path;
use std::sync::Arc;

use rampart_event::{EventKind, Priority};
use rustc_hash::FxHashMap;

use crate::compile::{
    self, fold, order, specialize, strip_type_checks, types_of, Compiler, Piece, TypeSet, Uses,
};
use crate::error::{Error, Location};
use crate::eval::Node;
use crate::extract::FieldRef;
use crate::loader::{Action, Collection, CorrelationKind, RuleDef, Warning};
use crate::prefilter::Plan;

/// The default rule set shipped with Rampart (`rules/default.yaml`).
pub const DEFAULT_RULES: &str = include_str!("../../../rules/default.yaml");

/// The name [`Loader::add_default_rules`] gives the default rules in messages.
pub const DEFAULT_RULES_NAME: &str = "rules/default.yaml";

/// Event types (Falco `evt.type` values) that Rampart's sensor and enrichment produce. A rule
/// that can only match other types cannot fire.
pub const PRODUCED_EVENT_TYPES: &[&str] = &[
    "execve",
    "execveat",
    "clone",
    "clone3",
    "fork",
    "vfork",
    "procexit",
    "open",
    "openat",
    "openat2",
    "creat",
    "unlink",
    "unlinkat",
    "rmdir",
    "rename",
    "renameat",
    "renameat2",
    "chmod",
    "fchmod",
    "fchmodat",
    "chown",
    "lchown",
    "fchown",
    "fchownat",
    "mount",
    "fsmount",
    "move_mount",
    "umount",
    "umount2",
    "pivot_root",
    "memfd_create",
    "connect",
    "accept",
    "accept4",
    "bind",
    "listen",
    "socket",
    "payload",
    "setuid",
    "setreuid",
    "setresuid",
    "setfsuid",
    "setgid",
    "setregid",
    "setresgid",
    "setfsgid",
    "setgroups",
    "capset",
    "ptrace",
    "unshare",
    "setns",
    "init_module",
    "finit_module",
    "bpf",
    "io_uring_setup",
    "kill",
    "tkill",
    "tgkill",
    "dns",
    "container",
    "auth",
    "sensor",
    "policy",
    "response",
    "inventory",
    "authz",
    "mesh",
];

/// The `evt.type` values (syscall names) an event of each kind may carry. An event whose type
/// is not listed for its kind is still evaluated, against every rule (a slower path).
pub(crate) fn kind_types(kind: EventKind) -> &'static [&'static str] {
    use EventKind as K;
    match kind {
        K::ProcessExec => &["execve", "execveat"],
        K::ProcessFork => &["clone", "clone3", "fork", "vfork"],
        K::ProcessExit => &["procexit"],
        K::FileOpen => &["open", "openat", "openat2", "creat"],
        K::FileUnlink => &["unlink", "unlinkat", "rmdir"],
        K::FileRename => &["rename", "renameat", "renameat2"],
        K::FileChmod => &["chmod", "fchmod", "fchmodat"],
        K::FileChown => &["chown", "lchown", "fchown", "fchownat"],
        K::FileMount => &["mount", "fsmount", "move_mount"],
        K::FileUmount => &["umount", "umount2"],
        K::FilePivotRoot => &["pivot_root"],
        K::FileMemfd => &["memfd_create"],
        K::NetConnect => &["connect"],
        K::NetAccept => &["accept", "accept4"],
        K::NetBind => &["bind"],
        K::NetListen => &["listen"],
        K::NetSocket => &["socket"],
        K::NetPayload => &["payload"],
        K::DnsQuery | K::DnsAnswer => &["dns"],
        K::PrivSetuid => &["setuid", "setreuid", "setresuid", "setfsuid"],
        K::PrivSetgid => &["setgid", "setregid", "setresgid", "setfsgid", "setgroups"],
        K::PrivCapset => &["capset"],
        K::PrivPtrace => &["ptrace"],
        K::PrivUnshare => &["unshare"],
        K::PrivSetns => &["setns"],
        K::PrivModuleLoad => &["init_module", "finit_module"],
        K::PrivBpf => &["bpf"],
        K::PrivIoUring => &["io_uring_setup"],
        K::PrivKill => &["kill", "tkill", "tgkill"],
        K::ContainerCreate
        | K::ContainerStart
        | K::ContainerExec
        | K::ContainerDie
        | K::ContainerOom
        | K::ContainerStop
        | K::ContainerDestroy
        | K::ContainerStats => &["container"],
        K::AuthLogin => &["auth"],
        K::SensorDrops => &["sensor"],
        K::PolicyExecDenied | K::PolicyNetDenied => &["policy"],
        K::ResponseAction => &["response"],
        K::InventoryHost | K::InventoryContainer | K::InventoryImage => &["inventory"],
        K::AdmissionDecision => &["authz"],
        K::MeshReport => &["mesh"],
        _ => &[],
    }
}

/// How many rules may fire for one event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RuleMatching {
    /// The first matching rule in load order wins (Falco's default).
    #[default]
    First,
    /// Every matching rule fires.
    All,
}

impl std::str::FromStr for RuleMatching {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "first" => Ok(RuleMatching::First),
            "all" => Ok(RuleMatching::All),
            other => Err(format!(
                "rule_matching must be `first` or `all`, not {other:?}"
            )),
        }
    }
}

/// Engine settings.
#[derive(Debug, Clone)]
pub struct Options {
    /// Falco's `rule_matching`. Correlation rules always see every event: they are not
    /// "matches" that stop the others.
    pub rule_matching: RuleMatching,
    /// Rules less severe than this are not evaluated (Falco's `priority` setting).
    pub min_priority: Priority,
    /// Most groups (distinct group-by keys) a correlation rule tracks at once; beyond it the
    /// least recently seen group is dropped and counted in [`crate::EngineStats`].
    pub max_groups_per_rule: usize,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            rule_matching: RuleMatching::First,
            min_priority: Priority::Debug,
            max_groups_per_rule: 100_000,
        }
    }
}

/// Something a rule needs that Rampart does not produce.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Need {
    /// A field Rampart's events do not carry (`proc.env`, `k8s.ns.name`, `evt.arg.target`).
    Field(String),
    /// Event types (syscalls) Rampart does not capture.
    EventTypes(Vec<String>),
    /// A Falco event source other than syscalls (`k8s_audit`, `aws_cloudtrail`).
    Source(String),
}

impl fmt::Display for Need {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Need::Field(name) => write!(f, "field {name}"),
            Need::EventTypes(t) if t.is_empty() => {
                f.write_str("an event type (its evt.type test matches none)")
            }
            Need::EventTypes(t) => write!(f, "evt.type {}", t.join("|")),
            Need::Source(s) => write!(f, "event source {s}"),
        }
    }
}

/// An enabled rule that can never match Rampart's events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CannotFire {
    pub rule: String,
    pub at: Location,
    pub needs: Vec<Need>,
}

impl fmt::Display for CannotFire {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: rule {:?} cannot fire: needs ", self.at, self.rule)?;
        for (i, n) in self.needs.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{n}")?;
        }
        Ok(())
    }
}

/// How Rampart evaluates one rule of the loaded files.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Evaluation {
    /// Every field and event type the rule names is produced: it is evaluated as written.
    Evaluated,
    /// Evaluated, and it can fire, but comparisons on these fields (which Rampart does not
    /// produce) are false, as Falco's are on a field without a value.
    Partial { absent: Vec<String> },
    /// Compiled but can never match Rampart's events; what it would need.
    CannotFire(Vec<Need>),
    /// Left out by its `skip-if-unknown-filter: true`: a field neither Falco's catalogue (as
    /// Rampart knows it) nor Rampart's has.
    Skipped { field: String },
}

impl fmt::Display for Evaluation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Evaluation::Evaluated => f.write_str("evaluated"),
            Evaluation::Partial { absent } => write!(
                f,
                "evaluated; comparisons on {} are false (not produced)",
                absent.join(", ")
            ),
            Evaluation::CannotFire(needs) => {
                f.write_str("not evaluated: needs ")?;
                for (i, n) in needs.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{n}")?;
                }
                Ok(())
            }
            Evaluation::Skipped { field } => {
                write!(f, "skipped (skip-if-unknown-filter): unknown field {field}")
            }
        }
    }
}

/// One rule of the loaded files (after `append`/`override`) and how it is evaluated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleStatus {
    pub rule: String,
    pub at: Location,
    /// `enabled` as the files leave it; a disabled rule's [`Evaluation`] says what would
    /// happen once it is enabled.
    pub enabled: bool,
    pub evaluation: Evaluation,
}

impl fmt::Display for RuleStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: rule {:?}", self.at, self.rule)?;
        if !self.enabled {
            f.write_str(" (disabled in the file)")?;
        }
        write!(f, ": {}", self.evaluation)
    }
}

/// What compiling found besides errors.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// Enabled rules that cannot fire, each reported once.
    pub cannot_fire: Vec<CannotFire>,
    /// Every rule, enabled or not, in load order, with how it is evaluated.
    pub rule_status: Vec<RuleStatus>,
    /// Non-fatal findings: unknown keys, rules that use absent fields but can still fire,
    /// rules skipped by `skip-if-unknown-filter`.
    pub warnings: Vec<Warning>,
    pub rules: usize,
    pub enabled_rules: usize,
    pub macros: usize,
    pub lists: usize,
}

/// A compiled correlation.
#[derive(Debug)]
pub(crate) struct CorrPlan {
    pub kind: CorrelationKind,
    pub group_by: Box<[Option<FieldRef>]>,
    pub timespan_ns: u64,
    pub min: u64,
    pub fields: Box<[Option<FieldRef>]>,
    pub steps: Box<[StepPlan]>,
}

#[derive(Debug)]
pub(crate) struct StepPlan {
    pub node: Node,
    pub count: u64,
    pub group_by: Option<Box<[Option<FieldRef>]>>,
}

#[derive(Debug)]
pub(crate) struct CompiledRule {
    pub name: String,
    pub desc: String,
    pub priority: Priority,
    /// Shared with every alert the rule raises.
    pub tags: Arc<[String]>,
    pub enabled: bool,
    pub node: Node,
    pub output: Vec<Piece>,
    /// What an alert's output usually needs: the template's text and 24 bytes per field.
    pub output_capacity: usize,
    /// How many fields the output names (a field named twice counts twice).
    pub output_fields: usize,
    /// The distinct field names of the output, sorted, each with the position (among the
    /// output's fields) of its last mention: an alert's [`rampart_event::OutputFields`] are
    /// built in this order, so they need no sort per alert.
    pub output_order: Box<[(Arc<str>, usize)]>,
    pub actions: Vec<Action>,
    pub correlation: Option<CorrPlan>,
    /// The event types the rule is evaluated for (the index guarantees it).
    pub types: TypeSet,
    pub at: Location,
    /// Fires on Rampart's events: enabled, not below the minimum priority, able to fire.
    pub active: bool,
}

/// The active rules that can match events of one `evt.type`, in load order.
#[derive(Debug, Default)]
pub(crate) struct Slot {
    /// Single-event rules, each with its condition specialised to the slot's event type.
    pub rules: Box<[(u32, Node)]>,
    /// Correlation rules, each with its condition and steps specialised to the slot's type.
    pub corr: Box<[CorrSlot]>,
    /// The event kinds that carry this type: the slot applies only to them.
    pub kinds: Box<[EventKind]>,
    /// Which of `rules` to evaluate for an event, by equality prefilters.
    pub plan: Plan,
}

/// A correlation rule in a [`Slot`]: its condition and its steps' conditions (in the order of
/// [`CorrPlan::steps`]) as evaluated for the slot's events.
#[derive(Debug)]
pub(crate) struct CorrSlot {
    pub rule: u32,
    pub node: Node,
    pub steps: Box<[Node]>,
}

/// Information about one rule of a [`RuleSet`].
#[derive(Debug, Clone, Copy)]
pub struct RuleInfo<'a> {
    rule: &'a CompiledRule,
}

impl<'a> RuleInfo<'a> {
    pub fn name(&self) -> &'a str {
        &self.rule.name
    }
    pub fn description(&self) -> &'a str {
        &self.rule.desc
    }
    pub fn priority(&self) -> Priority {
        self.rule.priority
    }
    pub fn tags(&self) -> &'a [String] {
        &self.rule.tags
    }
    pub fn enabled(&self) -> bool {
        self.rule.enabled
    }
    /// Enabled, at or above the minimum priority, and able to fire on Rampart's events.
    pub fn active(&self) -> bool {
        self.rule.active
    }
    pub fn actions(&self) -> &'a [Action] {
        &self.rule.actions
    }
    /// A correlation (stateful) rule.
    pub fn is_correlation(&self) -> bool {
        self.rule.correlation.is_some()
    }
    /// Where the rule was (last) defined.
    pub fn location(&self) -> &'a Location {
        &self.rule.at
    }
}

/// Compiled rules: immutable, shareable between threads (`Send + Sync`).
#[derive(Debug)]
pub struct RuleSet {
    pub(crate) rules: Vec<CompiledRule>,
    /// The rules to evaluate for an event, by its `evt.type`.
    pub(crate) index: FxHashMap<Box<str>, Slot>,
    /// Every active rule: for an event whose type is not indexed for its kind.
    pub(crate) all: Slot,
    pub(crate) options: Options,
    /// Memo slots the engine keeps per event (one per distinct comparison).
    pub(crate) memo_slots: usize,
    report: Report,
}

impl RuleSet {
    /// What compiling found: rules that cannot fire, warnings, counts.
    pub fn report(&self) -> &Report {
        &self.report
    }

    /// Every rule, in load order.
    pub fn rules(&self) -> impl Iterator<Item = RuleInfo<'_>> {
        self.rules.iter().map(|rule| RuleInfo { rule })
    }

    pub fn options(&self) -> &Options {
        &self.options
    }
}

/// Reads rule files in order and compiles them.
///
/// ```
/// let mut loader = rampart_rules::Loader::new();
/// loader.add_str("mine.yaml", "- rule: Any shell\n  desc: d\n  condition: evt.type=execve and proc.name=sh\n  output: shell %proc.cmdline\n  priority: NOTICE\n").unwrap();
/// let rules = loader.compile(rampart_rules::Options::default()).unwrap();
/// assert_eq!(rules.report().enabled_rules, 1);
/// ```
#[derive(Debug, Default, Clone)]
pub struct Loader {
    coll: Collection,
    files: Vec<String>,
}

impl Loader {
    pub fn new() -> Loader {
        Loader::default()
    }

    /// Adds a rule file. On error nothing of this file is kept.
    pub fn add_file(&mut self, path: impl AsRef<Path>) -> Result<(), Error> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|source| Error::Io {
            path: path.to_path_buf(),
            source,
        })?;
        self.add_str(&path.display().to_string(), &text)
    }

    /// Adds rule text; `name` stands for the file in messages. On error nothing of it is kept.
    pub fn add_str(&mut self, name: &str, text: &str) -> Result<(), Error> {
        let mut next = self.coll.clone();
        next.add(name, text)?;
        self.coll = next;
        self.files.push(name.to_string());
        Ok(())
    }

    /// Adds Rampart's default rules ([`DEFAULT_RULES`]).
    pub fn add_default_rules(&mut self) -> Result<(), Error> {
        self.add_str(DEFAULT_RULES_NAME, DEFAULT_RULES)
    }

    /// The names of the files added so far, in order.
    pub fn files(&self) -> &[String] {
        &self.files
    }

    /// Compiles everything added. The first error stops compilation.
    pub fn compile(&self, options: Options) -> Result<RuleSet, Error> {
        let compiler = Compiler::new(&self.coll.lists, &self.coll.macros)?;
        let mut report = Report {
            warnings: self.coll.warnings.clone(),
            macros: self.coll.macros.len(),
            lists: self.coll.lists.len(),
            ..Report::default()
        };
        let mut rules = Vec::new();
        for def in &self.coll.rules {
            match compile_rule(&compiler, def, &options, &mut report) {
                Ok(Some(rule)) => rules.push(rule),
                Ok(None) => {}
                Err(Error::UnknownField { at, field, .. }) if def.skip_if_unknown_filter => {
                    report.rule_status.push(RuleStatus {
                        rule: def.name.clone(),
                        at: def.at.clone(),
                        enabled: def.enabled,
                        evaluation: Evaluation::Skipped {
                            field: field.clone(),
                        },
                    });
                    report.warnings.push(Warning {
                        at,
                        message: format!(
                            "rule {:?} skipped (skip-if-unknown-filter): unknown field {field}",
                            def.name
                        ),
                    });
                }
                Err(e) => return Err(e),
            }
        }
        report.rules = self.coll.rules.len();
        report.enabled_rules = rules.iter().filter(|r| r.enabled).count();
        let mut set = index(rules, options, report);
        set.memo_slots = compiler.memo_slots();
        Ok(set)
    }
}

fn compile_rule(
    compiler: &Compiler,
    def: &RuleDef,
    options: &Options,
    report: &mut Report,
) -> Result<Option<CompiledRule>, Error> {
    if def.source != "syscall" {
        // Another Falco event source: check the syntax, keep the rule out of the plan.
        compile::parse_cond(&def.cond)?;
        report.rule_status.push(RuleStatus {
            rule: def.name.clone(),
            at: def.at.clone(),
            enabled: def.enabled,
            evaluation: Evaluation::CannotFire(vec![Need::Source(def.source.clone())]),
        });
        if def.enabled {
            report.cannot_fire.push(CannotFire {
                rule: def.name.clone(),
                at: def.at.clone(),
                needs: vec![Need::Source(def.source.clone())],
            });
        }
        return Ok(None);
    }
    let mut uses = Uses::default();
    let mut node = compiler.condition(&def.cond, &mut uses)?;
    if let Some(ex) = compiler.exceptions(&def.exceptions, &mut uses)? {
        node = Node::And(vec![node, ex].into_boxed_slice());
    }
    let output = match &def.output {
        Some(frag) => compile::output(compiler, frag, &mut Uses::default())?,
        None => Vec::new(),
    };
    let correlation = match &def.correlation {
        None => None,
        Some(c) => {
            let fields_of =
                |names: &[String], uses: &mut Uses| -> Result<Box<[Option<FieldRef>]>, Error> {
                    names
                        .iter()
                        .map(|n| {
                            let fe = compile::parse_field_text(n).ok_or_else(|| Error::Schema {
                                at: c.at.clone(),
                                message: format!("invalid field {n:?}"),
                            })?;
                            let loc = c.at.clone();
                            let src = compile::Src::At(&loc);
                            Ok(compiler.field(&fe, src, uses)?.map(|(f, _)| f))
                        })
                        .collect()
                };
            let mut steps = Vec::new();
            for s in &c.steps {
                let step_node = order(fold(compiler.condition(&s.cond, &mut uses)?));
                steps.push(StepPlan {
                    node: step_node,
                    count: s.count,
                    group_by: match &s.group_by {
                        Some(g) => Some(fields_of(g, &mut uses)?),
                        None => None,
                    },
                });
            }
            Some(CorrPlan {
                kind: c.kind,
                group_by: fields_of(&c.group_by, &mut uses)?,
                timespan_ns: c.timespan_ns,
                min: c.min,
                fields: fields_of(&c.fields, &mut uses)?,
                steps: steps.into_boxed_slice(),
            })
        }
    };
    // What the rule needs is judged with absent fields as "any type"; what it is indexed by,
    // on the folded plan that evaluation runs.
    let mut types = types_of(&node);
    let node = fold(node);
    let mut index_types = types_of(&node);
    let mut needs = Vec::new();
    if let Some(c) = &correlation {
        if !c.steps.is_empty() {
            let steps = c
                .steps
                .iter()
                .fold(TypeSet::Only(BTreeSet::new()), |acc, s| {
                    union(acc, types_of(&s.node))
                });
            types = intersect(types, steps.clone());
            index_types = intersect(index_types, steps);
        }
    }
    let node = order(strip_type_checks(node, &index_types));
    let produced = PRODUCED_EVENT_TYPES.iter().any(|t| types.contains(t));
    if matches!(node, Node::Const(false)) || !produced {
        if matches!(node, Node::Const(false)) {
            needs.extend(uses.absent.iter().map(|f| Need::Field(f.clone())));
        }
        if !produced {
            let wanted = match &types {
                TypeSet::Only(s) => s.iter().cloned().collect(),
                _ => Vec::new(),
            };
            needs.push(Need::EventTypes(wanted));
        }
        if needs.is_empty() {
            needs.push(Need::Field("a condition that is not always false".into()));
        }
    } else if def.enabled && uses.absent.iter().any(|f| f != "evt.num") {
        // `evt.num` is Falco's `never_true` idiom (`evt.num=0` never holds there either).
        report.warnings.push(Warning {
            at: def.at.clone(),
            message: format!(
                "rule {:?} uses fields Rampart does not produce (comparisons on them are false): {}",
                def.name,
                uses.absent
                    .iter()
                    .filter(|f| *f != "evt.num")
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        });
    }
    let can_fire = needs.is_empty();
    // `evt.num` is Falco's `never_true` idiom (`evt.num=0` never holds there either).
    let absent: Vec<String> = uses
        .absent
        .iter()
        .filter(|f| *f != "evt.num")
        .cloned()
        .collect();
    report.rule_status.push(RuleStatus {
        rule: def.name.clone(),
        at: def.at.clone(),
        enabled: def.enabled,
        evaluation: if !can_fire {
            Evaluation::CannotFire(needs.clone())
        } else if absent.is_empty() {
            Evaluation::Evaluated
        } else {
            Evaluation::Partial { absent }
        },
    });
    if !can_fire && def.enabled {
        report.cannot_fire.push(CannotFire {
            rule: def.name.clone(),
            at: def.at.clone(),
            needs,
        });
    }
    Ok(Some(CompiledRule {
        name: def.name.clone(),
        desc: def.desc.clone(),
        priority: def.priority,
        tags: def.tags.as_slice().into(),
        enabled: def.enabled,
        node,
        output_capacity: output
            .iter()
            .map(|p| match p {
                Piece::Text(t) => t.len(),
                Piece::Field(..) => 24,
            })
            .sum(),
        output_fields: output
            .iter()
            .filter(|p| matches!(p, Piece::Field(..)))
            .count(),
        output_order: output_order(&output),
        output,
        actions: def.actions.clone(),
        correlation,
        types: index_types,
        at: def.at.clone(),
        active: def.enabled && can_fire && def.priority <= options.min_priority,
    }))
}

fn union(a: TypeSet, b: TypeSet) -> TypeSet {
    match (a, b) {
        (TypeSet::All, _) | (_, TypeSet::All) => TypeSet::All,
        (TypeSet::Only(x), TypeSet::Only(y)) => TypeSet::Only(x.union(&y).cloned().collect()),
        _ => TypeSet::All,
    }
}

fn intersect(a: TypeSet, b: TypeSet) -> TypeSet {
    match (a, b) {
        (TypeSet::All, x) | (x, TypeSet::All) => x,
        (TypeSet::Only(x), TypeSet::Only(y)) => {
            TypeSet::Only(x.intersection(&y).cloned().collect())
        }
        (TypeSet::Only(x), TypeSet::Except(y)) | (TypeSet::Except(y), TypeSet::Only(x)) => {
            TypeSet::Only(x.difference(&y).cloned().collect())
        }
        (TypeSet::Except(x), TypeSet::Except(y)) => TypeSet::Except(x.union(&y).cloned().collect()),
    }
}

fn index(rules: Vec<CompiledRule>, options: Options, report: Report) -> RuleSet {
    let mut universe: BTreeSet<String> =
        PRODUCED_EVENT_TYPES.iter().map(|s| s.to_string()).collect();
    for r in &rules {
        if let TypeSet::Only(s) | TypeSet::Except(s) = &r.types {
            universe.extend(s.iter().cloned());
        }
    }
    let pick = |corr: bool, t: Option<&str>| -> Box<[u32]> {
        rules
            .iter()
            .enumerate()
            .filter(|(_, r)| {
                r.active && r.correlation.is_some() == corr && t.is_none_or(|t| r.types.contains(t))
            })
            .map(|(i, _)| i as u32)
            .collect()
    };
    let mut index: FxHashMap<Box<str>, Slot> = FxHashMap::default();
    for t in &universe {
        let kinds: Box<[EventKind]> = EventKind::ALL
            .iter()
            .copied()
            .filter(|k| kind_types(*k).contains(&t.as_str()))
            .collect();
        let specialised: Box<[(u32, Node)]> = pick(false, Some(t))
            .iter()
            .map(|&i| (i, specialize(&rules[i as usize].node, t, &kinds)))
            .filter(|(_, n)| !matches!(n, Node::Const(false)))
            .collect();
        // Correlation rules too: they are evaluated for every event of their types, and their
        // conditions (`open_write or chmod`) test the type and kind like any rule's.
        let corr: Box<[CorrSlot]> = pick(true, Some(t))
            .iter()
            .map(|&i| {
                let rule = &rules[i as usize];
                CorrSlot {
                    rule: i,
                    node: specialize(&rule.node, t, &kinds),
                    steps: rule.correlation.as_ref().map_or_else(Box::default, |c| {
                        c.steps
                            .iter()
                            .map(|s| specialize(&s.node, t, &kinds))
                            .collect()
                    }),
                }
            })
            .filter(|c| !matches!(c.node, Node::Const(false)))
            .collect();
        index.insert(
            t.as_str().into(),
            Slot {
                plan: Plan::new(&specialised),
                rules: specialised,
                corr,
                kinds,
            },
        );
    }
    RuleSet {
        all: Slot {
            rules: pick(false, None)
                .iter()
                .map(|&i| (i, rules[i as usize].node.clone()))
                .collect(),
            corr: pick(true, None)
                .iter()
                .map(|&i| {
                    let rule = &rules[i as usize];
                    CorrSlot {
                        rule: i,
                        node: rule.node.clone(),
                        steps: rule.correlation.as_ref().map_or_else(Box::default, |c| {
                            c.steps.iter().map(|s| s.node.clone()).collect()
                        }),
                    }
                })
                .collect(),
            kinds: Box::new([]),
            plan: Plan::default(),
        },
        rules,
        index,
        options,
        memo_slots: 0,
        report,
    }
}

/// The output's distinct field names, sorted, with the position among the output's fields of
/// the last mention of each (the value a map filled in output order would keep).
fn output_order(output: &[Piece]) -> Box<[(Arc<str>, usize)]> {
    let mut last: std::collections::BTreeMap<Arc<str>, usize> = std::collections::BTreeMap::new();
    for (i, name) in output
        .iter()
        .filter_map(|p| match p {
            Piece::Field(name, _) => Some(name),
            Piece::Text(_) => None,
        })
        .enumerate()
    {
        last.insert(name.clone(), i);
    }
    last.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn produced_types_are_the_kinds_types() {
        let mut from_kinds: Vec<&str> = EventKind::ALL
            .iter()
            .flat_map(|k| kind_types(*k).iter().copied())
            .collect();
        from_kinds.sort_unstable();
        from_kinds.dedup();
        let mut produced = PRODUCED_EVENT_TYPES.to_vec();
        produced.sort_unstable();
        assert_eq!(from_kinds, produced);
        for k in EventKind::ALL {
            assert!(
                kind_types(*k).contains(&k.falco_type()),
                "{k}: its default evt.type {} is not listed",
                k.falco_type()
            );
        }
    }
}
