//! Evaluating events: single-event rules and correlation (stateful) rules, producing alerts.

use std::collections::VecDeque;
use std::fmt::Write;
use std::sync::Arc;

use rampart_event::{Alert, Event, EventId, OutputFields};
use rustc_hash::FxHashMap;

use crate::compile::Piece;
use crate::extract::{Cache, Ctx, FieldRef};
use crate::fields::F;
use crate::loader::{Action, CorrelationKind};
use crate::ruleset::{CompiledRule, CorrSlot, RuleMatching, RuleSet};

/// Evidence events kept per correlation group (the most recent ones).
const MAX_EVIDENCE: usize = 8;

/// A rule fired: the alert, and what the rule asks the responder to do.
#[derive(Debug, Clone)]
pub struct Detection {
    pub alert: Alert,
    /// The rule's `actions` (empty for most rules).
    pub actions: Vec<Action>,
    /// The rule's position in [`RuleSet::rules`].
    pub rule_index: usize,
}

/// Counters of an [`Engine`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EngineStats {
    pub events: u64,
    pub detections: u64,
    /// Correlation groups dropped because a rule tracked `max_groups_per_rule` groups.
    pub groups_evicted: u64,
    /// Correlation groups currently tracked, all rules.
    pub groups: u64,
}

#[derive(Debug, Default)]
struct Group {
    last_ns: u64,
    /// event_count: times of matches in the window (at most `min`).
    times: VecDeque<u64>,
    /// value_count: each distinct value and when it was last seen.
    values: FxHashMap<Box<str>, u64>,
    /// temporal: per step, times of its matches in the window (at most the step's count).
    steps: Vec<VecDeque<u64>>,
    /// temporal_ordered: the step waited for, and when the sequence's first step completed.
    current: usize,
    started_ns: u64,
    evidence: VecDeque<Event>,
    /// After an alert the group stays quiet until then (one alert per group per timespan).
    quiet_until_ns: u64,
}

impl Group {
    /// Forgets the counts after an alert and keeps the group quiet for one timespan.
    fn fired(&mut self, now: u64, timespan: u64) -> Vec<Event> {
        self.times.clear();
        self.values.clear();
        self.steps.iter_mut().for_each(VecDeque::clear);
        self.current = 0;
        self.quiet_until_ns = now.saturating_add(timespan);
        std::mem::take(&mut self.evidence).into()
    }
}

#[derive(Debug, Default)]
struct CorrState {
    groups: FxHashMap<Box<str>, Group>,
    last_sweep_ns: u64,
}

/// Evaluates events against a [`RuleSet`]. Holds the state of correlation rules, driven by
/// event time only (`Event::time_ns`), so replaying the same events gives the same alerts.
///
/// `Send`: run it on the agent's rule thread. Evaluating an event that matches no rule does
/// not allocate.
#[derive(Debug)]
pub struct Engine {
    rules: Arc<RuleSet>,
    cache: Cache,
    memo: Box<[std::cell::Cell<u64>]>,
    generation: u64,
    corr: Vec<CorrState>,
    key: String,
    value: String,
    /// Rules selected by the slot's prefilters for the current event (reused).
    hits: Vec<u32>,
    stats: EngineStats,
}

/// FNV-1a, for alert ids that are the same in every run and every build.
fn fnv(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

impl Engine {
    pub fn new(rules: Arc<RuleSet>) -> Engine {
        let corr = rules.rules.iter().map(|_| CorrState::default()).collect();
        Engine {
            memo: (0..rules.memo_slots)
                .map(|_| std::cell::Cell::new(0))
                .collect(),
            generation: 0,
            rules,
            cache: Cache::default(),
            corr,
            key: String::new(),
            value: String::new(),
            hits: Vec::new(),
            stats: EngineStats::default(),
        }
    }

    pub fn rules(&self) -> &Arc<RuleSet> {
        &self.rules
    }

    pub fn stats(&self) -> EngineStats {
        let mut s = self.stats;
        s.groups = self.corr.iter().map(|c| c.groups.len() as u64).sum();
        s
    }

    /// Evaluates one event and appends a [`Detection`] per rule that fired to `out`; returns
    /// how many were appended. With `rule_matching: first` at most one single-event rule fires
    /// per event (the first in load order); correlation rules are evaluated in any case.
    pub fn process(&mut self, ev: &Event, out: &mut Vec<Detection>) -> usize {
        self.process_with(ev, out, true)
    }

    /// [`Engine::process`] evaluating every rule of the event's type with its condition as
    /// compiled, without the prefilters (`prefilter.rs`) that set rules aside and without the
    /// per-type specialisation of conditions (`evt.type`/`evt.kind` tests settled, empty lists
    /// folded, operands reordered): the reference both are tested against.
    #[doc(hidden)]
    pub fn process_without_prefilters(&mut self, ev: &Event, out: &mut Vec<Detection>) -> usize {
        self.process_with(ev, out, false)
    }

    fn process_with(&mut self, ev: &Event, out: &mut Vec<Detection>, prefilter: bool) -> usize {
        let Engine {
            rules,
            cache,
            memo,
            generation,
            corr,
            key,
            value,
            hits,
            stats,
        } = self;
        stats.events += 1;
        cache.reset();
        *generation += 1;
        let before = out.len();
        let slot = match rules.index.get(ev.falco_type()) {
            Some(slot) if slot.kinds.contains(&ev.kind) => slot,
            _ => &rules.all,
        };
        let ctx = Ctx {
            ev,
            cache,
            memo,
            generation: *generation,
        };
        // The reference: the rules of the event's type in load order, unspecialised.
        let reference = !prefilter && !std::ptr::eq(slot, &rules.all);
        let singles = if reference { &rules.all } else { slot };
        let of_type = |i: u32| {
            !reference
                || rules
                    .rules
                    .get(i as usize)
                    .is_some_and(|r| r.types.contains(ev.falco_type()))
        };
        let mut all = 0..singles.rules.len() as u32;
        let mut planned;
        let positions: &mut dyn Iterator<Item = u32> = if slot.plan.is_trivial() || !prefilter {
            &mut all
        } else {
            planned = slot.plan.candidates(&ctx, hits);
            &mut planned
        };
        for pos in positions {
            let Some((i, node)) = singles.rules.get(pos as usize) else {
                continue;
            };
            if !of_type(*i) {
                continue;
            }
            let rule = &rules.rules[*i as usize];
            if node.eval(&ctx) {
                out.push(detection(
                    rule,
                    *i as usize,
                    ev,
                    &ctx,
                    None,
                    vec![ev.clone()],
                ));
                if rules.options.rule_matching == RuleMatching::First {
                    break;
                }
            }
        }
        let mut scratch = Scratch {
            key,
            value,
            stats,
            max_groups: rules.options.max_groups_per_rule,
        };
        let correlations = if reference {
            &rules.all.corr
        } else {
            &slot.corr
        };
        for c in correlations.iter().filter(|c| of_type(c.rule)) {
            let i = c.rule as usize;
            correlate(&rules.rules[i], c, i, &ctx, &mut corr[i], &mut scratch, out);
        }
        let n = out.len() - before;
        stats.detections += n as u64;
        n
    }
}

/// The engine's reusable buffers and counters, lent to [`correlate`].
struct Scratch<'e> {
    key: &'e mut String,
    value: &'e mut String,
    stats: &'e mut EngineStats,
    max_groups: usize,
}

fn correlate(
    rule: &CompiledRule,
    spec: &CorrSlot,
    index: usize,
    ctx: &Ctx<'_>,
    state: &mut CorrState,
    s: &mut Scratch<'_>,
    out: &mut Vec<Detection>,
) {
    let Some(plan) = &rule.correlation else {
        return;
    };
    if !spec.node.eval(ctx) {
        return;
    }
    let ev = ctx.ev;
    let now = ev.time_ns;
    let max_groups = s.max_groups;
    // Forget groups idle for longer than the window, at most once per window.
    if now.saturating_sub(state.last_sweep_ns) > plan.timespan_ns {
        let horizon = now.saturating_sub(plan.timespan_ns);
        state
            .groups
            .retain(|_, g| g.last_ns >= horizon || g.quiet_until_ns > now);
        state.last_sweep_ns = now;
    }
    match plan.kind {
        CorrelationKind::EventCount | CorrelationKind::ValueCount => {
            render_key(ctx, &plan.group_by, s.key);
            if plan.kind == CorrelationKind::ValueCount {
                render_key(ctx, &plan.fields, s.value);
            }
            let (g, evicted) = group(state, s.key, max_groups, true);
            s.stats.groups_evicted += evicted;
            let Some(g) = g else { return };
            g.last_ns = now;
            if now < g.quiet_until_ns {
                return;
            }
            let horizon = now.saturating_sub(plan.timespan_ns);
            let count = if plan.kind == CorrelationKind::EventCount {
                g.times.push_back(now);
                while g.times.front().is_some_and(|&t| t < horizon) {
                    g.times.pop_front();
                }
                while g.times.len() as u64 > plan.min {
                    g.times.pop_front();
                }
                keep_evidence(g, ev);
                g.times.len() as u64
            } else {
                g.values.retain(|_, t| *t >= horizon);
                match g.values.get_mut(s.value.as_str()) {
                    Some(t) => *t = now,
                    None => {
                        g.values.insert(s.value.as_str().into(), now);
                        keep_evidence(g, ev);
                    }
                }
                g.values.len() as u64
            };
            if count >= plan.min {
                let events = g.fired(now, plan.timespan_ns);
                out.push(detection(
                    rule,
                    index,
                    ev,
                    ctx,
                    Some((count, s.key)),
                    events,
                ));
            }
        }
        CorrelationKind::Temporal | CorrelationKind::TemporalOrdered => {
            let ordered = plan.kind == CorrelationKind::TemporalOrdered;
            let horizon = now.saturating_sub(plan.timespan_ns);
            for (si, step) in plan.steps.iter().enumerate() {
                if !spec.steps.get(si).is_some_and(|n| n.eval(ctx)) {
                    continue;
                }
                // A sequence starts only with its first step; later steps need a group.
                let create = !ordered || si == 0;
                if !create && state.groups.is_empty() {
                    // No sequence under way: nothing this step could advance (the common case
                    // for "connection after logins" on every connect), so no key to render.
                    continue;
                }
                render_key(
                    ctx,
                    step.group_by.as_deref().unwrap_or(&plan.group_by),
                    s.key,
                );
                let (g, evicted) = group(state, s.key, max_groups, create);
                s.stats.groups_evicted += evicted;
                let Some(g) = g else { continue };
                if g.steps.len() != plan.steps.len() {
                    g.steps = vec![VecDeque::new(); plan.steps.len()];
                }
                g.last_ns = now;
                if now < g.quiet_until_ns {
                    continue;
                }
                let complete = if ordered {
                    if g.current > 0 && g.started_ns < horizon {
                        // The window ran out before the sequence completed: start over.
                        g.current = 0;
                        g.steps.iter_mut().for_each(VecDeque::clear);
                        g.evidence.clear();
                        if si != 0 {
                            continue;
                        }
                    }
                    if si != g.current {
                        continue;
                    }
                    let times = &mut g.steps[si];
                    times.push_back(now);
                    if si == 0 {
                        while times.front().is_some_and(|&t| t < horizon) {
                            times.pop_front();
                        }
                    }
                    while times.len() as u64 > step.count {
                        times.pop_front();
                    }
                    let reached = times.len() as u64 >= step.count;
                    let first = times.front().copied().unwrap_or(now);
                    keep_evidence(g, ev);
                    if reached {
                        if si == 0 {
                            g.started_ns = first;
                        }
                        g.current += 1;
                    }
                    g.current == plan.steps.len()
                } else {
                    let times = &mut g.steps[si];
                    times.push_back(now);
                    while times.len() as u64 > step.count {
                        times.pop_front();
                    }
                    keep_evidence(g, ev);
                    plan.steps.iter().zip(&g.steps).all(|(st, t)| {
                        t.len() as u64 >= st.count && t.front().is_some_and(|&f| f >= horizon)
                    })
                };
                if complete {
                    let count: u64 = g.steps.iter().map(|t| t.len() as u64).sum();
                    let events = g.fired(now, plan.timespan_ns);
                    out.push(detection(
                        rule,
                        index,
                        ev,
                        ctx,
                        Some((count, s.key)),
                        events,
                    ));
                    break;
                }
            }
        }
    }
}

fn keep_evidence(g: &mut Group, ev: &Event) {
    if g.evidence.len() == MAX_EVIDENCE {
        g.evidence.pop_front();
    }
    g.evidence.push_back(ev.clone());
}

/// The group for `key`, created when `create` (evicting the least recently seen group when the
/// rule tracks `max` groups). Returns the group and how many groups were evicted.
fn group<'s>(
    state: &'s mut CorrState,
    key: &str,
    max: usize,
    create: bool,
) -> (Option<&'s mut Group>, u64) {
    let mut evicted = 0;
    if !state.groups.contains_key(key) {
        if !create {
            return (None, 0);
        }
        if state.groups.len() >= max.max(1) {
            let oldest = state
                .groups
                .iter()
                .min_by_key(|(_, g)| g.last_ns)
                .map(|(k, _)| k.clone());
            if let Some(k) = oldest {
                state.groups.remove(&k);
                evicted = 1;
            }
        }
        state.groups.insert(key.into(), Group::default());
    }
    (state.groups.get_mut(key), evicted)
}

/// Writes `field=value` pairs (first value of each field, `<NA>` when absent) into `out`.
fn render_key(ctx: &Ctx<'_>, fields: &[Option<FieldRef>], out: &mut String) {
    out.clear();
    for (i, f) in fields.iter().enumerate() {
        if i > 0 {
            out.push(' ');
        }
        match f {
            Some(f) => {
                out.push_str(&f.name);
                out.push('=');
                match ctx.get(f, 0) {
                    Some(v) => v.write_to(out),
                    None => out.push_str("<NA>"),
                }
            }
            None => out.push_str("<NA>"),
        }
    }
}

/// Builds the alert of a rule that fired. Alerts are what the engine allocates for (5% of the
/// benchmark's events with Falco's files raise one): the output is written into a buffer sized
/// from the rule's template, the output fields are collected in a vector and bulk-built into the
/// map (one sort of an almost sorted vector instead of a tree insertion per field), and the id
/// is written without `fmt`.
fn detection(
    rule: &CompiledRule,
    index: usize,
    ev: &Event,
    ctx: &Ctx<'_>,
    corr: Option<(u64, &str)>,
    events: Vec<Event>,
) -> Detection {
    let mut output = String::with_capacity(rule.output_capacity);
    // Where each field's value sits in `output`, in the output's order. On the stack for the
    // outputs rules have (Falco's name up to about 15 fields); a longer one spills to the heap.
    let mut stack = [(0usize, 0usize); 32];
    let mut heap = Vec::new();
    let ranges: &mut [(usize, usize)] = if rule.output_fields <= stack.len() {
        &mut stack[..rule.output_fields]
    } else {
        heap.resize(rule.output_fields, (0, 0));
        &mut heap
    };
    let mut field = 0;
    for piece in &rule.output {
        match piece {
            Piece::Text(t) => output.push_str(t),
            Piece::Field(_, f) => {
                let start = output.len();
                match (f, corr) {
                    (Some(f), Some((count, _))) if f.id == F::CorrelationCount => {
                        let _ = write!(output, "{count}");
                    }
                    (Some(f), Some((_, key))) if f.id == F::CorrelationKey => output.push_str(key),
                    (Some(f), _) => match ctx.get(f, 0) {
                        Some(v) => v.write_to(&mut output),
                        None => output.push_str("<NA>"),
                    },
                    (None, _) => output.push_str("<NA>"),
                }
                if let Some(r) = ranges.get_mut(field) {
                    *r = (start, output.len());
                }
                field += 1;
            }
        }
    }
    // Built in the rule's precomputed name order (a field named twice keeps its last value, as
    // inserting into a map one by one did): no sort, no check per alert.
    let mut fields = OutputFields::with_capacity(rule.output_order.len(), 24 * rule.output_fields);
    for (name, at) in rule.output_order.iter() {
        let value = ranges
            .get(*at)
            .and_then(|&(s, e)| output.get(s..e))
            .unwrap_or_default();
        fields.push_sorted(name.clone(), value);
    }
    // Trimmed in place: the buffer becomes the alert's output.
    let end = output.trim_end().len();
    output.truncate(end);
    let lead = output.len() - output.trim_start().len();
    output.drain(..lead);
    let mut id = String::with_capacity(ev.id.as_str().len() + 17);
    id.push_str(ev.id.as_str());
    id.push('-');
    push_hex16(&mut id, fnv(&rule.name));
    Detection {
        alert: Alert {
            id: EventId(id),
            time_ns: ev.time_ns,
            rule: rule.name.clone(),
            description: rule.desc.clone(),
            priority: rule.priority,
            tags: rule.tags.clone(),
            output,
            output_fields: fields,
            source: if corr.is_some() {
                "correlation"
            } else {
                "syscall"
            }
            .to_string(),
            device: ev.device.clone(),
            container: ev.container.clone(),
            process: ev.process.clone(),
            events,
        },
        actions: rule.actions.clone(),
        rule_index: index,
    }
}

/// Appends `n` as 16 lower-case hex digits (`{:016x}`).
fn push_hex16(out: &mut String, n: u64) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for i in (0..16).rev() {
        out.push(char::from(HEX[((n >> (i * 4)) & 0xf) as usize]));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_send<T: Send>() {}
    fn assert_send_sync<T: Send + Sync>() {}

    #[test]
    fn engine_is_send_and_rules_are_shareable() {
        assert_send::<Engine>();
        assert_send_sync::<RuleSet>();
    }

    #[test]
    fn hex_ids_are_written_as_fmt_writes_them() {
        for n in [0, 1, 0xabc, u64::MAX, 0x0123_4567_89ab_cdef] {
            let mut s = String::new();
            push_hex16(&mut s, n);
            assert_eq!(s, format!("{n:016x}"));
        }
    }

    #[test]
    fn fnv_is_stable() {
        assert_eq!(fnv(""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv("a"), 0xaf63_dc4c_8601_ec8c);
    }
}
