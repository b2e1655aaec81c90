//! Rule files: YAML items (`rule`, `macro`, `list`, `required_engine_version`,
//! `required_plugin_versions`) collected across files in load order, with Falco's `append: true`
//! and `override:` semantics. Compilation happens once every file is in (see `compile.rs`), so a
//! later file may append to or override anything an earlier one defined.

use std::sync::Arc;

use rampart_event::Priority;

use crate::error::{Error, Location};
use crate::yaml::{self, Node, NodeKind, Pos};

/// A piece of condition text and where it came from, for error positions.
#[derive(Debug, Clone)]
pub(crate) struct Fragment {
    pub text: String,
    pub file: Arc<str>,
    pub src: Arc<str>,
    pub pos: Pos,
}

impl Fragment {
    /// The location of the `n`-th byte of this fragment's text: the token there is looked up in
    /// the source from the scalar's start, so block and quoted scalars map back correctly.
    pub fn location_of(&self, n: usize, token: &str) -> Location {
        let n = n.min(self.text.len());
        let (needle, nth) = if token.is_empty() {
            match self.text[..n].trim_end().char_indices().last() {
                Some((i, c)) => {
                    let t = &self.text[i..i + c.len_utf8()];
                    (t.to_string(), self.text[..i].matches(t).count())
                }
                None => return self.start(),
            }
        } else {
            (token.to_string(), self.text[..n].matches(token).count())
        };
        let base = self.pos.offset.min(self.src.len());
        let hay = &self.src[base..];
        let found = hay
            .match_indices(needle.as_str())
            .nth(nth)
            .map(|(i, _)| base + i);
        match found {
            Some(idx) => offset_location(&self.file, &self.src, idx),
            None => self.start(),
        }
    }

    pub fn start(&self) -> Location {
        Location {
            file: self.file.clone(),
            line: self.pos.line,
            column: self.pos.col,
        }
    }
}

fn offset_location(file: &Arc<str>, src: &str, idx: usize) -> Location {
    let before = &src[..idx];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = src[line_start..idx].chars().count() + 1;
    Location {
        file: file.clone(),
        line: u32::try_from(line).unwrap_or(u32::MAX),
        column: u32::try_from(column).unwrap_or(u32::MAX),
    }
}

/// A condition: one fragment, plus one per `append`.
#[derive(Debug, Clone, Default)]
pub(crate) struct CondText {
    pub fragments: Vec<Fragment>,
}

impl CondText {
    /// The whole text (fragments joined by a space) and each fragment's start in it.
    pub fn joined(&self) -> (String, Vec<usize>) {
        let mut s = String::new();
        let mut starts = Vec::new();
        for f in &self.fragments {
            if !s.is_empty() {
                s.push(' ');
            }
            starts.push(s.len());
            s.push_str(&f.text);
        }
        (s, starts)
    }

    /// The source location of byte `n` of [`CondText::joined`].
    pub fn location_of(&self, starts: &[usize], n: usize, token: &str) -> Location {
        let i = starts.iter().rposition(|&s| s <= n).unwrap_or(0);
        match self.fragments.get(i) {
            Some(f) => f.location_of(n - starts[i], token),
            None => Location {
                file: "".into(),
                line: 0,
                column: 0,
            },
        }
    }
}

#[derive(Debug, Clone)]
pub(crate) struct MacroDef {
    pub name: String,
    pub cond: CondText,
}

#[derive(Debug, Clone)]
pub(crate) struct ListDef {
    pub name: String,
    pub items: Vec<String>,
}

/// One exception of a rule: names, fields, comparison operators, and rows of values.
#[derive(Debug, Clone)]
pub(crate) struct ExceptionDef {
    pub name: String,
    /// `fields` was one field name, not a list: each value is one item.
    pub single: bool,
    pub fields: Vec<String>,
    pub comps: Vec<String>,
    pub values: Vec<Vec<ExValue>>,
    pub at: Location,
}

#[derive(Debug, Clone)]
pub(crate) enum ExValue {
    Item(String),
    List(Vec<String>),
}

/// The Rampart correlation extension of a rule.
#[derive(Debug, Clone)]
pub(crate) struct CorrelationDef {
    pub kind: CorrelationKind,
    pub group_by: Vec<String>,
    pub timespan_ns: u64,
    /// Threshold for counts: the count must reach `min` (`gte: N`, or `gt: N-1`).
    pub min: u64,
    pub fields: Vec<String>,
    pub steps: Vec<StepDef>,
    pub at: Location,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CorrelationKind {
    EventCount,
    ValueCount,
    Temporal,
    TemporalOrdered,
}

#[derive(Debug, Clone)]
pub(crate) struct StepDef {
    pub name: String,
    pub cond: CondText,
    pub count: u64,
    pub group_by: Option<Vec<String>>,
    pub at: Location,
}

/// What a rule asks the responder to do when it fires (Rampart extension key `actions`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Action {
    /// Kill the process that triggered the rule.
    Kill,
    /// Freeze (pause) the container.
    Freeze,
    /// Cut the container off the network.
    Isolate,
    /// Stop the container.
    Stop,
    /// Collect a forensic bundle of the container.
    Forensics,
}

impl Action {
    /// Parses an action name as written in a rule file.
    pub fn parse(name: &str) -> Option<Action> {
        Some(match name {
            "kill" => Action::Kill,
            "freeze" | "pause" => Action::Freeze,
            "isolate" => Action::Isolate,
            "stop" => Action::Stop,
            "forensics" => Action::Forensics,
            _ => return None,
        })
    }

    /// The name as written in a rule file.
    pub fn as_str(&self) -> &'static str {
        match self {
            Action::Kill => "kill",
            Action::Freeze => "freeze",
            Action::Isolate => "isolate",
            Action::Stop => "stop",
            Action::Forensics => "forensics",
        }
    }
}

#[derive(Debug, Clone)]
pub(crate) struct RuleDef {
    pub name: String,
    pub cond: CondText,
    pub output: Option<Fragment>,
    pub desc: String,
    pub priority: Priority,
    pub tags: Vec<String>,
    pub enabled: bool,
    pub exceptions: Vec<ExceptionDef>,
    pub source: String,
    pub skip_if_unknown_filter: bool,
    pub correlation: Option<CorrelationDef>,
    pub actions: Vec<Action>,
    pub at: Location,
}

/// A non-fatal remark about a rule file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    pub at: Location,
    pub message: String,
}

impl std::fmt::Display for Warning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.at, self.message)
    }
}

/// Everything loaded so far, in definition order.
#[derive(Debug, Default, Clone)]
pub(crate) struct Collection {
    pub rules: Vec<RuleDef>,
    pub macros: Vec<MacroDef>,
    pub lists: Vec<ListDef>,
    pub warnings: Vec<Warning>,
}

struct FileCtx {
    file: Arc<str>,
    src: Arc<str>,
}

impl FileCtx {
    fn loc(&self, pos: Pos) -> Location {
        Location {
            file: self.file.clone(),
            line: pos.line,
            column: pos.col,
        }
    }

    fn schema(&self, node: &Node, message: impl Into<String>) -> Error {
        Error::Schema {
            at: self.loc(node.pos),
            message: message.into(),
        }
    }

    fn fragment(&self, node: &Node, text: &str) -> Fragment {
        Fragment {
            text: text.to_string(),
            file: self.file.clone(),
            src: self.src.clone(),
            pos: node.pos,
        }
    }

    fn string(&self, node: &Node, key: &str) -> Result<String, Error> {
        match &node.kind {
            NodeKind::Scalar(s, _) if !node.is_null() => Ok(s.clone()),
            _ => Err(self.schema(
                node,
                format!("`{key}` must be a string, found {}", node.type_name()),
            )),
        }
    }

    fn boolean(&self, node: &Node, key: &str) -> Result<bool, Error> {
        match node.as_str() {
            Some("true") | Some("True") | Some("TRUE") | Some("yes") => Ok(true),
            Some("false") | Some("False") | Some("FALSE") | Some("no") => Ok(false),
            _ => Err(self.schema(node, format!("`{key}` must be true or false"))),
        }
    }

    fn strings(&self, node: &Node, key: &str) -> Result<Vec<String>, Error> {
        match &node.kind {
            NodeKind::Seq(items) => items.iter().map(|i| self.string(i, key)).collect(),
            NodeKind::Scalar(..) if node.is_null() => Ok(Vec::new()),
            NodeKind::Scalar(s, _) => Ok(vec![s.clone()]),
            NodeKind::Map(_) => Err(self.schema(
                node,
                format!("`{key}` must be a list of strings, found a mapping"),
            )),
        }
    }
}

/// The Falco engine version whose rule language Rampart is tested against: the version the
/// vendored Falco rule files (`tests/fixtures/falco/`) require.
pub(crate) const FALCO_ENGINE_VERSION: (u64, u64, u64) = (0, 57, 0);

/// `required_engine_version`: a semantic version (`0.57.0`) or, as older Falco files wrote it,
/// a bare number N meaning `0.N.0`.
fn engine_version(cx: &FileCtx, node: &Node) -> Result<(u64, u64, u64), Error> {
    let text = cx.string(node, "required_engine_version")?;
    let t = text.trim();
    let bad = || {
        cx.schema(
            node,
            format!("`required_engine_version` must be a version like 0.57.0, not {t:?}"),
        )
    };
    if let Ok(n) = t.parse::<u64>() {
        return Ok((0, n, 0));
    }
    let mut parts = t.split('.').map(|p| p.parse::<u64>());
    match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some(Ok(a)), Some(Ok(b)), Some(Ok(c)), None) => Ok((a, b, c)),
        _ => Err(bad()),
    }
}

/// `required_plugin_versions`: a list of `{name, version, alternatives: [{name, version}]}`.
fn plugin_versions(cx: &FileCtx, node: &Node) -> Result<(), Error> {
    fn one(cx: &FileCtx, item: &Node, alternatives: bool) -> Result<(), Error> {
        let NodeKind::Map(entries) = &item.kind else {
            return Err(cx.schema(
                item,
                "a required plugin must be a mapping with `name` and `version`",
            ));
        };
        for key in ["name", "version"] {
            let v = map_get(entries, key)
                .ok_or_else(|| cx.schema(item, format!("a required plugin has no `{key}`")))?;
            cx.string(v, key)?;
        }
        if let Some(alts) = map_get(entries, "alternatives") {
            let NodeKind::Seq(alts) = &alts.kind else {
                return Err(cx.schema(alts, "`alternatives` must be a list"));
            };
            if !alternatives {
                return Err(cx.schema(item, "an alternative cannot have alternatives"));
            }
            for a in alts {
                one(cx, a, false)?;
            }
        }
        Ok(())
    }
    match &node.kind {
        NodeKind::Seq(items) => items.iter().try_for_each(|i| one(cx, i, true)),
        _ => Err(cx.schema(node, "`required_plugin_versions` must be a list")),
    }
}

fn map_get<'n>(entries: &'n [(Node, Node)], key: &str) -> Option<&'n Node> {
    entries
        .iter()
        .find(|(k, _)| k.as_str() == Some(key))
        .map(|(_, v)| v)
}

const RULE_KEYS: &[&str] = &[
    "rule",
    "condition",
    "output",
    "desc",
    "priority",
    "tags",
    "enabled",
    "exceptions",
    "source",
    "append",
    "override",
    "warn_evttypes",
    "skip-if-unknown-filter",
    "capture",
    "capture_duration",
    "correlation",
    "actions",
    "action",
];

/// The keys `override:` may name for a rule, and whether each may be appended to.
const RULE_OVERRIDE: &[(&str, bool)] = &[
    ("condition", true),
    ("output", true),
    ("desc", true),
    ("tags", true),
    ("exceptions", true),
    ("priority", false),
    ("enabled", false),
    ("warn_evttypes", false),
    ("skip-if-unknown-filter", false),
    ("capture", false),
    ("capture_duration", false),
    ("correlation", false),
    ("actions", true),
];

/// The keys an `append`/`override` item changes, how, and their new values.
type Changes = Vec<(String, How, Node)>;

#[derive(Clone, Copy, PartialEq, Eq)]
enum How {
    Append,
    Replace,
}

impl Collection {
    /// Adds the items of one rule file. `file` names it in messages.
    pub fn add(&mut self, file: &str, text: &str) -> Result<(), Error> {
        let cx = FileCtx {
            file: Arc::from(file),
            src: Arc::from(text),
        };
        let docs = yaml::parse(text).map_err(|e| Error::Yaml {
            at: cx.loc(e.pos),
            message: e.message,
        })?;
        for doc in &docs {
            let items = match &doc.kind {
                NodeKind::Seq(items) => items,
                NodeKind::Scalar(..) if doc.is_null() => continue,
                _ => {
                    return Err(cx.schema(
                        doc,
                        format!(
                            "a rules file must be a list of items, found {}",
                            doc.type_name()
                        ),
                    ))
                }
            };
            for item in items {
                self.add_item(&cx, item)?;
            }
        }
        Ok(())
    }

    fn add_item(&mut self, cx: &FileCtx, item: &Node) -> Result<(), Error> {
        let NodeKind::Map(entries) = &item.kind else {
            return Err(cx.schema(
                item,
                format!("an item must be a mapping, found {}", item.type_name()),
            ));
        };
        let mut seen: Vec<&str> = Vec::new();
        for (k, _) in entries {
            if let Some(k) = k.as_str() {
                if seen.contains(&k) {
                    return Err(cx.schema(item, format!("key `{k}` appears twice in one item")));
                }
                seen.push(k);
            }
        }
        if map_get(entries, "rule").is_some() {
            self.add_rule(cx, item, entries)
        } else if map_get(entries, "macro").is_some() {
            self.add_macro(cx, item, entries)
        } else if map_get(entries, "list").is_some() {
            self.add_list(cx, item, entries)
        } else if let Some(v) = map_get(entries, "required_engine_version") {
            let wanted = engine_version(cx, v)?;
            if wanted > FALCO_ENGINE_VERSION {
                let (a, b, c) = wanted;
                let (x, y, z) = FALCO_ENGINE_VERSION;
                self.warnings.push(Warning {
                    at: cx.loc(v.pos),
                    message: format!(
                        "the file requires Falco engine version {a}.{b}.{c}; Rampart is tested \
                         against the language of {x}.{y}.{z} (Falco refuses such a file; \
                         Rampart loads it and reports what it does not know)"
                    ),
                });
            }
            Ok(())
        } else if let Some(v) = map_get(entries, "required_plugin_versions") {
            // Checked for shape only: Rampart has no plugins (container metadata is built in).
            plugin_versions(cx, v)
        } else {
            let keys: Vec<_> = entries.iter().filter_map(|(k, _)| k.as_str()).collect();
            self.warnings.push(Warning {
                at: cx.loc(item.pos),
                message: format!("unknown item with keys {keys:?} ignored"),
            });
            Ok(())
        }
    }

    /// `append: true` or an `override:` mapping; `None` for a plain definition.
    fn modifiers(
        &self,
        cx: &FileCtx,
        entries: &[(Node, Node)],
        allowed: &[(&str, bool)],
    ) -> Result<Option<Changes>, Error> {
        let append = match map_get(entries, "append") {
            Some(n) => cx.boolean(n, "append")?,
            None => false,
        };
        let ov = map_get(entries, "override");
        if append && ov.is_some() {
            let n = ov.unwrap_or(&entries[0].0);
            return Err(cx.schema(n, "`append` and `override` cannot be used together"));
        }
        if let Some(ov) = ov {
            let NodeKind::Map(ov_entries) = &ov.kind else {
                return Err(cx.schema(ov, "`override` must be a mapping of key: append|replace"));
            };
            let mut out = Vec::new();
            for (k, v) in ov_entries {
                let key = cx.string(k, "override")?;
                let Some((_, can_append)) = allowed.iter().find(|(name, _)| *name == key) else {
                    return Err(cx.schema(k, format!("`{key}` cannot be overridden")));
                };
                let how = match v.as_str() {
                    Some("append") if *can_append => How::Append,
                    Some("append") => {
                        return Err(cx.schema(v, format!("`{key}` can only be replaced")))
                    }
                    Some("replace") => How::Replace,
                    _ => return Err(cx.schema(v, "override must be `append` or `replace`")),
                };
                let Some(value) = map_get(entries, &key) else {
                    return Err(cx.schema(
                        k,
                        format!("override of `{key}` but the item has no `{key}`"),
                    ));
                };
                out.push((key, how, value.clone()));
            }
            return Ok(Some(out));
        }
        if append {
            let mut out = Vec::new();
            for (k, v) in entries {
                let Some(key) = k.as_str() else { continue };
                if allowed
                    .iter()
                    .any(|(name, can_append)| *name == key && *can_append)
                {
                    out.push((key.to_string(), How::Append, v.clone()));
                }
            }
            return Ok(Some(out));
        }
        Ok(None)
    }

    fn add_list(
        &mut self,
        cx: &FileCtx,
        item: &Node,
        entries: &[(Node, Node)],
    ) -> Result<(), Error> {
        let name_node = map_get(entries, "list").unwrap_or(item);
        let name = cx.string(name_node, "list")?;
        let mods = self.modifiers(cx, entries, &[("items", true)])?;
        for (k, _) in entries {
            if let Some(k) = k.as_str() {
                if !matches!(k, "list" | "items" | "append" | "override") {
                    self.warnings.push(Warning {
                        at: cx.loc(item.pos),
                        message: format!("list {name:?}: unknown key `{k}` ignored"),
                    });
                }
            }
        }
        let items_node = map_get(entries, "items")
            .ok_or_else(|| cx.schema(item, format!("list {name:?} has no `items`")))?;
        let items = list_items(cx, items_node)?;
        match mods {
            None => {
                let def = ListDef {
                    name: name.clone(),
                    items,
                };
                match self.lists.iter_mut().find(|l| l.name == name) {
                    Some(old) => *old = def,
                    None => self.lists.push(def),
                }
            }
            Some(mods) => {
                let Some(old) = self.lists.iter_mut().find(|l| l.name == name) else {
                    return Err(Error::NothingToAppend {
                        at: cx.loc(item.pos),
                        kind: "list",
                        name,
                        how: "append/override",
                    });
                };
                for (_, how, _) in mods {
                    match how {
                        How::Append => old.items.extend(items.iter().cloned()),
                        How::Replace => old.items = items.clone(),
                    }
                }
            }
        }
        Ok(())
    }

    fn add_macro(
        &mut self,
        cx: &FileCtx,
        item: &Node,
        entries: &[(Node, Node)],
    ) -> Result<(), Error> {
        let name_node = map_get(entries, "macro").unwrap_or(item);
        let name = cx.string(name_node, "macro")?;
        let mods = self.modifiers(cx, entries, &[("condition", true)])?;
        for (k, _) in entries {
            if let Some(k) = k.as_str() {
                if !matches!(k, "macro" | "condition" | "append" | "override" | "source") {
                    self.warnings.push(Warning {
                        at: cx.loc(item.pos),
                        message: format!("macro {name:?}: unknown key `{k}` ignored"),
                    });
                }
            }
        }
        let cond_node = map_get(entries, "condition")
            .ok_or_else(|| cx.schema(item, format!("macro {name:?} has no `condition`")))?;
        let text = cx.string(cond_node, "condition")?;
        let frag = cx.fragment(cond_node, &text);
        match mods {
            None => {
                let def = MacroDef {
                    name: name.clone(),
                    cond: CondText {
                        fragments: vec![frag],
                    },
                };
                match self.macros.iter_mut().find(|m| m.name == name) {
                    Some(old) => *old = def,
                    None => self.macros.push(def),
                }
            }
            Some(mods) => {
                let Some(old) = self.macros.iter_mut().find(|m| m.name == name) else {
                    return Err(Error::NothingToAppend {
                        at: cx.loc(item.pos),
                        kind: "macro",
                        name,
                        how: "append/override",
                    });
                };
                for (_, how, _) in mods {
                    match how {
                        How::Append => old.cond.fragments.push(frag.clone()),
                        How::Replace => old.cond.fragments = vec![frag.clone()],
                    }
                }
            }
        }
        Ok(())
    }

    fn add_rule(
        &mut self,
        cx: &FileCtx,
        item: &Node,
        entries: &[(Node, Node)],
    ) -> Result<(), Error> {
        let name_node = map_get(entries, "rule").unwrap_or(item);
        let name = cx.string(name_node, "rule")?;
        for (k, _) in entries {
            if let Some(k) = k.as_str() {
                if !RULE_KEYS.contains(&k) {
                    self.warnings.push(Warning {
                        at: cx.loc(item.pos),
                        message: format!("rule {name:?}: unknown key `{k}` ignored"),
                    });
                }
            }
        }
        let mods = self.modifiers(cx, entries, RULE_OVERRIDE)?;
        let at = cx.loc(item.pos);
        match mods {
            None => {
                let only_enabled = entries
                    .iter()
                    .all(|(k, _)| matches!(k.as_str(), Some("rule") | Some("enabled")))
                    && map_get(entries, "enabled").is_some();
                if only_enabled {
                    // `- rule: X` + `enabled: false`: toggles an existing rule (Falco >= 0.34).
                    let enabled =
                        cx.boolean(map_get(entries, "enabled").unwrap_or(item), "enabled")?;
                    let Some(old) = self.rules.iter_mut().find(|r| r.name == name) else {
                        return Err(Error::NothingToAppend {
                            at,
                            kind: "rule",
                            name,
                            how: "only `enabled`",
                        });
                    };
                    old.enabled = enabled;
                    return Ok(());
                }
                let def = self.new_rule(cx, item, entries, name.clone())?;
                match self.rules.iter_mut().find(|r| r.name == name) {
                    Some(old) => *old = def,
                    None => self.rules.push(def),
                }
                Ok(())
            }
            Some(mods) => {
                let Some(idx) = self.rules.iter().position(|r| r.name == name) else {
                    return Err(Error::NothingToAppend {
                        at,
                        kind: "rule",
                        name,
                        how: "append/override",
                    });
                };
                let mut rule = self.rules[idx].clone();
                for (key, how, value) in mods {
                    apply_rule_change(cx, &mut rule, &key, how, &value)?;
                }
                self.rules[idx] = rule;
                Ok(())
            }
        }
    }

    fn new_rule(
        &mut self,
        cx: &FileCtx,
        item: &Node,
        entries: &[(Node, Node)],
        name: String,
    ) -> Result<RuleDef, Error> {
        let need = |key: &str| {
            map_get(entries, key)
                .ok_or_else(|| cx.schema(item, format!("rule {name:?} has no `{key}`")))
        };
        let cond_node = need("condition")?;
        let cond_text = cx.string(cond_node, "condition")?;
        let priority_node = need("priority")?;
        let priority = parse_priority(cx, priority_node)?;
        let output = match map_get(entries, "output") {
            Some(n) => Some(cx.fragment(n, &cx.string(n, "output")?)),
            None => None,
        };
        let source = match map_get(entries, "source") {
            Some(n) => cx.string(n, "source")?,
            None => "syscall".to_string(),
        };
        if output.is_none() && source == "syscall" {
            return Err(cx.schema(item, format!("rule {name:?} has no `output`")));
        }
        let mut rule = RuleDef {
            name,
            cond: CondText {
                fragments: vec![cx.fragment(cond_node, &cond_text)],
            },
            output,
            desc: match map_get(entries, "desc") {
                Some(n) if !n.is_null() => cx.string(n, "desc")?.trim().to_string(),
                _ => String::new(),
            },
            priority,
            tags: match map_get(entries, "tags") {
                Some(n) => cx.strings(n, "tags")?,
                None => Vec::new(),
            },
            enabled: match map_get(entries, "enabled") {
                Some(n) => cx.boolean(n, "enabled")?,
                None => true,
            },
            exceptions: match map_get(entries, "exceptions") {
                Some(n) => parse_exceptions(cx, n, &[])?,
                None => Vec::new(),
            },
            source,
            skip_if_unknown_filter: match map_get(entries, "skip-if-unknown-filter") {
                Some(n) => cx.boolean(n, "skip-if-unknown-filter")?,
                None => false,
            },
            correlation: None,
            actions: Vec::new(),
            at: cx.loc(item.pos),
        };
        if let Some(n) = map_get(entries, "correlation") {
            rule.correlation = Some(parse_correlation(cx, n)?);
        }
        for key in ["actions", "action"] {
            if let Some(n) = map_get(entries, key) {
                rule.actions.extend(parse_actions(cx, n)?);
            }
        }
        Ok(rule)
    }
}

fn parse_priority(cx: &FileCtx, node: &Node) -> Result<Priority, Error> {
    let text = cx.string(node, "priority")?;
    text.trim()
        .parse::<Priority>()
        .map_err(|e| cx.schema(node, e.to_string()))
}

fn parse_actions(cx: &FileCtx, node: &Node) -> Result<Vec<Action>, Error> {
    let names = cx.strings(node, "actions")?;
    names
        .iter()
        .map(|n| {
            Action::parse(n).ok_or_else(|| {
                cx.schema(
                    node,
                    format!(
                        "unknown action {n:?} (expected kill, freeze, isolate, stop or forensics)"
                    ),
                )
            })
        })
        .collect()
}

fn apply_rule_change(
    cx: &FileCtx,
    rule: &mut RuleDef,
    key: &str,
    how: How,
    value: &Node,
) -> Result<(), Error> {
    match key {
        "condition" => {
            let frag = cx.fragment(value, &cx.string(value, key)?);
            match how {
                How::Append => rule.cond.fragments.push(frag),
                How::Replace => rule.cond.fragments = vec![frag],
            }
        }
        "output" => {
            let text = cx.string(value, key)?;
            match (how, &mut rule.output) {
                (How::Append, Some(out)) => {
                    out.text.push(' ');
                    out.text.push_str(&text);
                }
                _ => rule.output = Some(cx.fragment(value, &text)),
            }
        }
        "desc" => {
            let text = cx.string(value, key)?;
            match how {
                How::Append => {
                    rule.desc.push(' ');
                    rule.desc.push_str(text.trim());
                }
                How::Replace => rule.desc = text.trim().to_string(),
            }
        }
        "tags" => {
            let tags = cx.strings(value, key)?;
            match how {
                How::Append => rule.tags.extend(tags),
                How::Replace => rule.tags = tags,
            }
        }
        "exceptions" => {
            let new = parse_exceptions(cx, value, &rule.exceptions)?;
            match how {
                How::Replace => rule.exceptions = new,
                How::Append => {
                    for ex in new {
                        match rule.exceptions.iter_mut().find(|e| e.name == ex.name) {
                            // Appending to an existing exception adds value rows.
                            Some(old) => old.values.extend(ex.values),
                            None => rule.exceptions.push(ex),
                        }
                    }
                }
            }
        }
        "priority" => rule.priority = parse_priority(cx, value)?,
        "enabled" => rule.enabled = cx.boolean(value, key)?,
        "skip-if-unknown-filter" => rule.skip_if_unknown_filter = cx.boolean(value, key)?,
        "correlation" => rule.correlation = Some(parse_correlation(cx, value)?),
        "actions" => {
            let new = parse_actions(cx, value)?;
            match how {
                How::Append => rule.actions.extend(new),
                How::Replace => rule.actions = new,
            }
        }
        // warn_evttypes, capture, capture_duration: accepted, no effect in Rampart.
        _ => {}
    }
    Ok(())
}

fn list_items(cx: &FileCtx, node: &Node) -> Result<Vec<String>, Error> {
    match &node.kind {
        NodeKind::Seq(items) => items
            .iter()
            .map(|i| match &i.kind {
                NodeKind::Scalar(s, _) => Ok(s.clone()),
                _ => Err(cx.schema(
                    i,
                    format!("a list item must be a scalar, found {}", i.type_name()),
                )),
            })
            .collect(),
        NodeKind::Scalar(..) if node.is_null() => Ok(Vec::new()),
        _ => Err(cx.schema(
            node,
            format!("`items` must be a sequence, found {}", node.type_name()),
        )),
    }
}

/// Parses `exceptions`. An exception without `fields` appends values to the exception of the
/// same name in `existing` and takes its fields and comparisons.
fn parse_exceptions(
    cx: &FileCtx,
    node: &Node,
    existing: &[ExceptionDef],
) -> Result<Vec<ExceptionDef>, Error> {
    let NodeKind::Seq(items) = &node.kind else {
        if node.is_null() {
            return Ok(Vec::new());
        }
        return Err(cx.schema(node, "`exceptions` must be a sequence"));
    };
    let mut out = Vec::new();
    for item in items {
        let NodeKind::Map(entries) = &item.kind else {
            return Err(cx.schema(item, "an exception must be a mapping"));
        };
        let name = cx.string(
            map_get(entries, "name").ok_or_else(|| cx.schema(item, "exception has no `name`"))?,
            "name",
        )?;
        let inherited = existing.iter().find(|e| e.name == name);
        let fields_node = map_get(entries, "fields");
        let (single, fields) = match (fields_node, inherited) {
            (None, Some(old)) => (old.single, old.fields.clone()),
            (None, None) => {
                return Err(cx.schema(
                    item,
                    format!(
                        "exception {name:?} has no `fields`, and the rule has no earlier exception of that name to add values to"
                    ),
                ))
            }
            (Some(n), _) => match &n.kind {
                NodeKind::Scalar(s, _) if !n.is_null() => (true, vec![s.clone()]),
                _ => (false, cx.strings(n, "fields")?),
            },
        };
        let default_comp = if single { "in" } else { "=" };
        let comps = match (map_get(entries, "comps"), inherited) {
            (None, Some(old)) if fields_node.is_none() => old.comps.clone(),
            (None, _) => vec![default_comp.to_string(); fields.len()],
            (Some(n), _) => match &n.kind {
                NodeKind::Scalar(s, _) if !n.is_null() => vec![s.clone()],
                _ => cx.strings(n, "comps")?,
            },
        };
        if comps.len() != fields.len() {
            return Err(cx.schema(
                item,
                format!(
                    "exception {name:?} has {} fields but {} comps",
                    fields.len(),
                    comps.len()
                ),
            ));
        }
        let mut values = Vec::new();
        if let Some(vnode) = map_get(entries, "values") {
            match &vnode.kind {
                NodeKind::Seq(rows) => {
                    for row in rows {
                        if single {
                            values.push(vec![ex_value(cx, row)?]);
                            continue;
                        }
                        let NodeKind::Seq(cells) = &row.kind else {
                            return Err(cx.schema(
                                row,
                                format!("exception {name:?}: each value must be a list with one item per field"),
                            ));
                        };
                        if cells.len() != fields.len() {
                            return Err(cx.schema(
                                row,
                                format!(
                                    "exception {name:?}: {} values for {} fields",
                                    cells.len(),
                                    fields.len()
                                ),
                            ));
                        }
                        values.push(
                            cells
                                .iter()
                                .map(|c| ex_value(cx, c))
                                .collect::<Result<Vec<_>, _>>()?,
                        );
                    }
                }
                NodeKind::Scalar(..) if vnode.is_null() => {}
                _ => return Err(cx.schema(vnode, "`values` must be a sequence")),
            }
        }
        out.push(ExceptionDef {
            name,
            single,
            fields,
            comps,
            values,
            at: cx.loc(item.pos),
        });
    }
    Ok(out)
}

fn ex_value(cx: &FileCtx, node: &Node) -> Result<ExValue, Error> {
    match &node.kind {
        NodeKind::Scalar(s, _) => Ok(ExValue::Item(s.clone())),
        NodeKind::Seq(items) => Ok(ExValue::List(
            items
                .iter()
                .map(|i| cx.string(i, "values"))
                .collect::<Result<_, _>>()?,
        )),
        NodeKind::Map(_) => Err(cx.schema(node, "an exception value must be a scalar or a list")),
    }
}

/// `30s`, `5m`, `2h`, `1d`, `500ms`, or a number of seconds.
fn parse_duration(text: &str) -> Option<u64> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num.parse().ok()?;
    let mult: u64 = match unit.trim() {
        "" | "s" => 1_000_000_000,
        "ms" => 1_000_000,
        "m" => 60_000_000_000,
        "h" => 3_600_000_000_000,
        "d" => 86_400_000_000_000,
        _ => return None,
    };
    n.checked_mul(mult).filter(|v| *v > 0)
}

fn parse_correlation(cx: &FileCtx, node: &Node) -> Result<CorrelationDef, Error> {
    let NodeKind::Map(entries) = &node.kind else {
        return Err(cx.schema(node, "`correlation` must be a mapping"));
    };
    for (k, _) in entries {
        let key = k.as_str().unwrap_or("");
        if !matches!(
            key,
            "type" | "group-by" | "group_by" | "timespan" | "condition" | "field" | "steps"
        ) {
            return Err(cx.schema(k, format!("unknown correlation key `{key}`")));
        }
    }
    let kind_node =
        map_get(entries, "type").ok_or_else(|| cx.schema(node, "correlation has no `type`"))?;
    let kind = match cx.string(kind_node, "type")?.as_str() {
        "event_count" => CorrelationKind::EventCount,
        "value_count" => CorrelationKind::ValueCount,
        "temporal" => CorrelationKind::Temporal,
        "temporal_ordered" => CorrelationKind::TemporalOrdered,
        other => {
            return Err(cx.schema(
                kind_node,
                format!("unknown correlation type {other:?} (expected event_count, value_count, temporal or temporal_ordered)"),
            ))
        }
    };
    let group_by = match map_get(entries, "group-by").or_else(|| map_get(entries, "group_by")) {
        Some(n) => cx.strings(n, "group-by")?,
        None => Vec::new(),
    };
    let ts_node = map_get(entries, "timespan")
        .ok_or_else(|| cx.schema(node, "correlation has no `timespan`"))?;
    let ts_text = cx.string(ts_node, "timespan")?;
    let timespan_ns = parse_duration(&ts_text).ok_or_else(|| {
        cx.schema(
            ts_node,
            format!("invalid timespan {ts_text:?} (expected e.g. 30s, 5m, 1h, 1d)"),
        )
    })?;
    let mut min = 1;
    if let Some(c) = map_get(entries, "condition") {
        let NodeKind::Map(ce) = &c.kind else {
            return Err(cx.schema(
                c,
                "correlation `condition` must be a mapping like {gte: 10}",
            ));
        };
        for (k, v) in ce {
            let n: u64 = cx
                .string(v, "condition")?
                .trim()
                .parse()
                .map_err(|_| cx.schema(v, "the threshold must be a non-negative integer"))?;
            min = match k.as_str() {
                Some("gte") => n.max(1),
                Some("gt") => n + 1,
                Some(other) => {
                    return Err(cx.schema(
                        k,
                        format!("threshold `{other}` is not supported on a stream (use gte or gt)"),
                    ))
                }
                None => return Err(cx.schema(k, "threshold key must be gte or gt")),
            };
        }
    } else if matches!(
        kind,
        CorrelationKind::EventCount | CorrelationKind::ValueCount
    ) {
        return Err(cx.schema(node, "a count correlation needs `condition: {gte: N}`"));
    }
    let fields = match map_get(entries, "field") {
        Some(n) => cx.strings(n, "field")?,
        None => Vec::new(),
    };
    if kind == CorrelationKind::ValueCount && fields.is_empty() {
        return Err(cx.schema(node, "a value_count correlation needs `field`"));
    }
    let mut steps = Vec::new();
    if let Some(sn) = map_get(entries, "steps") {
        let NodeKind::Seq(items) = &sn.kind else {
            return Err(cx.schema(sn, "`steps` must be a sequence"));
        };
        for (i, s) in items.iter().enumerate() {
            let NodeKind::Map(se) = &s.kind else {
                return Err(cx.schema(s, "a step must be a mapping with a `condition`"));
            };
            let cn = map_get(se, "condition")
                .ok_or_else(|| cx.schema(s, "a step has no `condition`"))?;
            let text = cx.string(cn, "condition")?;
            let count = match map_get(se, "count") {
                Some(n) => cx
                    .string(n, "count")?
                    .trim()
                    .parse::<u64>()
                    .ok()
                    .filter(|c| *c >= 1)
                    .ok_or_else(|| cx.schema(n, "`count` must be a positive integer"))?,
                None => 1,
            };
            let group_by = match map_get(se, "group-by").or_else(|| map_get(se, "group_by")) {
                Some(n) => Some(cx.strings(n, "group-by")?),
                None => None,
            };
            let name = match map_get(se, "name") {
                Some(n) => cx.string(n, "name")?,
                None => format!("step {}", i + 1),
            };
            steps.push(StepDef {
                name,
                cond: CondText {
                    fragments: vec![cx.fragment(cn, &text)],
                },
                count,
                group_by,
                at: cx.loc(s.pos),
            });
        }
    }
    let temporal = matches!(
        kind,
        CorrelationKind::Temporal | CorrelationKind::TemporalOrdered
    );
    if temporal && steps.len() < 2 {
        return Err(cx.schema(node, "a temporal correlation needs at least two `steps`"));
    }
    if !temporal && !steps.is_empty() {
        return Err(cx.schema(node, "`steps` are only for temporal correlations"));
    }
    for s in &steps {
        if let Some(g) = &s.group_by {
            if g.len() != group_by.len() {
                return Err(Error::Schema {
                    at: s.at.clone(),
                    message: format!(
                        "step {:?} groups by {} fields, the correlation by {}",
                        s.name,
                        g.len(),
                        group_by.len()
                    ),
                });
            }
        }
    }
    Ok(CorrelationDef {
        kind,
        group_by,
        timespan_ns,
        min,
        fields,
        steps,
        at: cx.loc(node.pos),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fragment_locations_follow_folded_scalars() {
        let src = "- macro: m\n  condition: >\n    proc.name = a and\n    proc.nmae = b\n";
        let mut c = Collection::default();
        c.add("f.yaml", src).expect("loads");
        let m = &c.macros[0];
        let (text, starts) = m.cond.joined();
        let at = text.find("proc.nmae").expect("token");
        let loc = m.cond.location_of(&starts, at, "proc.nmae");
        assert_eq!((loc.line, loc.column), (4, 5));
    }

    #[test]
    fn append_and_override_modify_earlier_definitions() {
        let mut c = Collection::default();
        c.add(
            "a.yaml",
            "- list: l\n  items: [a]\n- rule: r\n  desc: d\n  condition: proc.name in (l)\n  output: o\n  priority: INFO\n",
        )
        .expect("loads");
        c.add(
            "b.yaml",
            "- list: l\n  items: [b]\n  append: true\n- rule: r\n  condition: and proc.pid > 1\n  override:\n    condition: append\n- rule: r\n  enabled: false\n",
        )
        .expect("loads");
        assert_eq!(c.lists[0].items, ["a", "b"]);
        assert_eq!(c.rules[0].cond.fragments.len(), 2);
        assert!(!c.rules[0].enabled);
        let err = c
            .add("c.yaml", "- macro: nope\n  condition: x\n  append: true\n")
            .expect_err("nothing to append");
        assert!(err.to_string().starts_with("c.yaml:1:3:"), "{err}");
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30s"), Some(30_000_000_000));
        assert_eq!(parse_duration("5m"), Some(300_000_000_000));
        assert_eq!(parse_duration("10"), Some(10_000_000_000));
        assert_eq!(parse_duration("5 weeks"), None);
    }
}
