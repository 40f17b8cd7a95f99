//! Width classes: which written widths of a checked net must move together.
//!
//! Every conv and linear output is a width variable. A walk of the syntax tree
//! (alongside the checked table, for spatial sizes) carries each value's width as a
//! linear expression over those variables: shape-preserving layers pass it on, a
//! concat sums its branches, a flatten multiplies by `H·W`. Each equality the
//! checker enforces is then unified, union-find style: a residual ties its body to
//! its shortcut (or to its input), a depthwise conv ties its output (and `groups`)
//! to its input, the net's end is tied to `classes` and its start to the input
//! channels. An equality that cannot be solved by substituting one variable
//! freezes the widths involved. The free variables left are the classes; every
//! written width is then an expression over them, so rewriting a class rewrites
//! every width that depends on it and the mutant is consistent by construction.

use super::values::{Grid, ValueSet, lcm};
use crate::ast::{Layer, Net, Node, Stmt};
use crate::check::Shape;
use crate::graph::{CheckedNet, LayerInfo};
use serde::Serialize;
use std::sync::Arc;

/// Which written number of a layer a class member is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Port {
    /// The input width (`I` in `conv(I -> O)` or `linear(I -> O)`).
    In,
    /// The output width (`O`).
    Out,
    /// A depthwise conv's `groups`, which equals its width.
    Groups,
}

/// One written number that depends on a class: `factor · class` (plus other
/// classes or constants when the number is a concat sum).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize)]
pub struct Member {
    /// The layer's (written or generated) name.
    pub layer: String,
    /// Which of its numbers.
    pub port: Port,
    /// The number is `factor · class` (`H·W` after a flatten); 1 for a plain tie.
    #[serde(skip_serializing_if = "is_one")]
    pub factor: u64,
    /// Whether the number is exactly `factor · class`, with no other term
    /// (false for a concat's sum or a width tied to a sum).
    #[serde(skip_serializing_if = "is_true")]
    pub exact: bool,
}

fn members_as_list<S: serde::Serializer>(m: &Arc<[Member]>, s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(m.iter())
}

fn is_one(x: &u64) -> bool {
    *x == 1
}

fn is_true(x: &bool) -> bool {
    *x
}

/// A free width: the widths that must stay equal, their current value and the
/// divisibility `groups` imposes on them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct WidthClass {
    /// Index of the class (order of the first layer that produces it).
    pub id: usize,
    /// The current width.
    pub width: u64,
    /// Every written number that depends on the class (shared by the classes of
    /// every width-mutant of the net).
    #[serde(serialize_with = "members_as_list")]
    pub members: Arc<[Member]>,
    /// Every new width must be a multiple of this (from grouped convs; 1 if none).
    pub multiple_of: u64,
}

impl WidthClass {
    /// The widths this class may take under `set`.
    pub fn grid(&self, set: &ValueSet) -> Grid {
        set.grid(self.multiple_of)
    }

    /// A short label: the first layer whose output is the class, e.g. `stem`.
    pub fn label(&self) -> &str {
        self.members
            .iter()
            .find(|m| m.port == Port::Out && m.exact)
            .or(self.members.first())
            .map_or("", |m| m.layer.as_str())
    }
}

/// A class as reports and the LLM prompt show it: members, width and the widths
/// allowed under a value set.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ClassInfo {
    /// Index of the class.
    pub id: usize,
    /// The current width.
    pub width: u64,
    /// Every written number that depends on the class.
    pub members: Vec<Member>,
    /// The widths the class may take.
    pub allowed: Grid,
}

/// `constant + Σ coeff · var`, terms sorted by variable.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Expr {
    terms: Vec<(usize, u64)>,
    constant: u64,
}

impl Expr {
    fn var(v: usize) -> Expr {
        Expr {
            terms: vec![(v, 1)],
            constant: 0,
        }
    }

    fn constant(c: u64) -> Expr {
        Expr {
            terms: Vec::new(),
            constant: c,
        }
    }

    /// The variable, when the expression is exactly one variable.
    fn single(&self) -> Option<usize> {
        match self.terms[..] {
            [(v, 1)] if self.constant == 0 => Some(v),
            _ => None,
        }
    }

    fn mentions(&self, v: usize) -> bool {
        self.terms.iter().any(|&(t, _)| t == v)
    }

    fn add_term(&mut self, v: usize, c: u64) {
        match self.terms.binary_search_by_key(&v, |&(t, _)| t) {
            Ok(i) => self.terms[i].1 = self.terms[i].1.saturating_add(c),
            Err(i) => self.terms.insert(i, (v, c)),
        }
    }

    fn add_scaled(&mut self, other: &Expr, c: u64) {
        self.constant = self
            .constant
            .saturating_add(other.constant.saturating_mul(c));
        for &(v, k) in &other.terms {
            self.add_term(v, k.saturating_mul(c));
        }
    }

    fn scaled(&self, c: u64) -> Expr {
        let mut out = Expr::constant(0);
        out.add_scaled(self, c);
        out
    }
}

/// The width expressions of one conv or linear, over class indices.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Slot {
    layer: String,
    input: Expr,
    output: Expr,
    /// Set for depthwise convs, whose `groups` follows their width.
    groups: Option<Expr>,
    /// The written `groups` of a conv that is not depthwise (1 for a linear).
    fixed_groups: u64,
}

/// The width classes of a checked net, and how every conv and linear width is
/// computed from them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WidthClasses {
    classes: Vec<WidthClass>,
    /// One per conv or linear, in source order (pre-order, as the checker visits).
    slots: Arc<[Slot]>,
}

/// A width that does not fit in 64 bits (only reachable with absurd inputs).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("width of `{layer}` overflows")]
pub struct WidthOverflow {
    /// The layer whose width overflowed.
    pub layer: String,
}

impl WidthClasses {
    /// Derives the classes of a checked net.
    pub fn new(net: &CheckedNet) -> WidthClasses {
        let mut b = Builder {
            rows: net.layers(),
            next_row: 0,
            values: Vec::new(),
            binding: Vec::new(),
            slots: Vec::new(),
        };
        let input = Expr::constant(net.net().input.value.first().copied().unwrap_or(0));
        let out = b.block(&net.net().body, input);
        b.unify(out, Expr::constant(net.net().classes.value));
        b.divisibility();
        b.finish()
    }

    /// The classes, in order of the first layer producing each.
    pub fn classes(&self) -> &[WidthClass] {
        &self.classes
    }

    /// The current width of every class, indexed by class id.
    pub fn widths(&self) -> Vec<u64> {
        self.classes.iter().map(|c| c.width).collect()
    }

    /// The classes with the widths each may take under `set`, for reports and prompts.
    pub fn describe(&self, set: &ValueSet) -> Vec<ClassInfo> {
        self.classes
            .iter()
            .map(|c| ClassInfo {
                id: c.id,
                width: c.width,
                members: c.members.to_vec(),
                allowed: c.grid(set),
            })
            .collect()
    }

    /// The classes of the net [`apply`](Self::apply) makes with `widths`, without
    /// deriving them again: the same classes with the new widths. Which widths move
    /// together, and the multiples they keep to, depend on the net's structure
    /// (layers, `groups`, spatial sizes), which a width change leaves as it was,
    /// and on which convs are depthwise (`groups` = input = output width > 1),
    /// which it can change: then `None`, and the classes must be derived anew.
    pub fn with_widths(&self, widths: &[u64]) -> Option<WidthClasses> {
        let same_convs = self.slots.iter().all(|s| match &s.groups {
            Some(g) => eval(g, widths).is_some_and(|g| g > 1),
            None => {
                s.fixed_groups <= 1
                    || eval(&s.input, widths) != Some(s.fixed_groups)
                    || eval(&s.output, widths) != Some(s.fixed_groups)
            }
        });
        if !same_convs || widths.len() != self.classes.len() {
            return None;
        }
        Some(WidthClasses {
            classes: self
                .classes
                .iter()
                .zip(widths)
                .map(|(c, &width)| WidthClass { width, ..c.clone() })
                .collect(),
            slots: Arc::clone(&self.slots),
        })
    }

    /// Rewrites `net` (the net these classes were derived from) so that class `i`
    /// has width `widths[i]`; every dependent width follows. Nothing else changes.
    pub fn apply(&self, net: &Net, widths: &[u64]) -> Result<Net, WidthOverflow> {
        let mut out = net.clone();
        let mut slots = self.slots.iter();
        write_block(&mut out.body, &mut slots, widths)?;
        Ok(out)
    }
}

fn eval(e: &Expr, widths: &[u64]) -> Option<u64> {
    e.terms.iter().try_fold(e.constant, |acc, &(class, c)| {
        widths
            .get(class)
            .and_then(|w| w.checked_mul(c))
            .and_then(|x| acc.checked_add(x))
    })
}

fn write_block<'a>(
    block: &mut [Stmt],
    slots: &mut impl Iterator<Item = &'a Slot>,
    widths: &[u64],
) -> Result<(), WidthOverflow> {
    for stmt in block {
        match &mut stmt.node {
            Node::Layer(Layer::Conv(c)) => {
                let Some(slot) = slots.next() else {
                    return Ok(());
                };
                let overflow = || WidthOverflow {
                    layer: slot.layer.clone(),
                };
                c.in_ch.value = eval(&slot.input, widths).ok_or_else(overflow)?;
                c.out_ch.value = eval(&slot.output, widths).ok_or_else(overflow)?;
                if let Some(g) = &slot.groups {
                    c.groups.value = eval(g, widths).ok_or_else(overflow)?;
                }
            }
            Node::Layer(Layer::Linear(l)) => {
                let Some(slot) = slots.next() else {
                    return Ok(());
                };
                let overflow = || WidthOverflow {
                    layer: slot.layer.clone(),
                };
                l.in_f.value = eval(&slot.input, widths).ok_or_else(overflow)?;
                l.out_f.value = eval(&slot.output, widths).ok_or_else(overflow)?;
            }
            Node::Layer(_) => {}
            Node::Residual { body, shortcut } => {
                write_block(body, slots, widths)?;
                if let Some(sc) = shortcut {
                    write_block(sc, slots, widths)?;
                }
            }
            Node::Concat { branches } => {
                for b in branches {
                    write_block(b, slots, widths)?;
                }
            }
        }
    }
    Ok(())
}

/// A slot while the walk is running: variables, not yet classes.
struct RawSlot {
    row: usize,
    input: Expr,
    output: usize,
    depthwise: bool,
    groups: u64,
}

struct Builder<'a> {
    rows: &'a [LayerInfo],
    next_row: usize,
    /// The written width of each variable.
    values: Vec<u64>,
    /// What each variable was unified with; `None` while it is free.
    binding: Vec<Option<Expr>>,
    slots: Vec<RawSlot>,
}

impl Builder<'_> {
    fn new_var(&mut self, value: u64) -> usize {
        self.values.push(value);
        self.binding.push(None);
        self.values.len() - 1
    }

    /// The expression over free variables only.
    fn normalize(&self, e: &Expr) -> Expr {
        let mut out = Expr::constant(e.constant);
        for &(v, c) in &e.terms {
            match self.binding.get(v).and_then(Option::as_ref) {
                None => out.add_term(v, c),
                Some(b) => out.add_scaled(&self.normalize(b), c),
            }
        }
        out
    }

    fn freeze(&mut self, e: &Expr) {
        for &(v, _) in &e.terms {
            self.binding[v] = Some(Expr::constant(self.values[v]));
        }
    }

    /// Records that `a == b` must keep holding. Both sides are equal now (the net
    /// checked); a side that is a single variable is solved for, otherwise the
    /// variables involved are frozen at their current widths.
    fn unify(&mut self, a: Expr, b: Expr) {
        let (a, b) = (self.normalize(&a), self.normalize(&b));
        if a == b {
            return;
        }
        if let Some(v) = a.single().filter(|&v| !b.mentions(v)) {
            self.binding[v] = Some(b);
        } else if let Some(v) = b.single().filter(|&v| !a.mentions(v)) {
            self.binding[v] = Some(a);
        } else {
            self.freeze(&a);
            self.freeze(&b);
        }
    }

    fn row(&mut self) -> Option<&LayerInfo> {
        let row = self.rows.get(self.next_row);
        self.next_row += 1;
        row
    }

    fn block(&mut self, block: &[Stmt], mut flow: Expr) -> Expr {
        for stmt in block {
            flow = self.stmt(stmt, flow);
        }
        flow
    }

    fn stmt(&mut self, stmt: &Stmt, flow: Expr) -> Expr {
        let index = self.next_row;
        let input_shape = self.row().map(LayerInfo::input_shape);
        match &stmt.node {
            Node::Layer(Layer::Conv(c)) => {
                let v = self.new_var(c.out_ch.value);
                let g = c.groups.value;
                let depthwise = g > 1 && g == c.in_ch.value && g == c.out_ch.value;
                if depthwise {
                    self.unify(flow.clone(), Expr::var(v));
                }
                self.slots.push(RawSlot {
                    row: index,
                    input: flow,
                    output: v,
                    depthwise,
                    groups: g,
                });
                Expr::var(v)
            }
            Node::Layer(Layer::Linear(l)) => {
                let v = self.new_var(l.out_f.value);
                self.slots.push(RawSlot {
                    row: index,
                    input: flow,
                    output: v,
                    depthwise: false,
                    groups: 1,
                });
                Expr::var(v)
            }
            Node::Layer(Layer::Flatten) => match input_shape {
                Some(Shape::Map { h, w, .. }) => flow.scaled(h.saturating_mul(w)),
                _ => flow,
            },
            Node::Layer(_) => flow,
            Node::Residual { body, shortcut } => {
                let y = self.block(body, flow.clone());
                let s = match shortcut {
                    Some(sc) => self.block(sc, flow),
                    None => flow,
                };
                self.unify(y.clone(), s);
                y
            }
            Node::Concat { branches } => {
                let mut sum = Expr::constant(0);
                for b in branches {
                    let out = self.block(b, flow.clone());
                    sum.add_scaled(&out, 1);
                }
                sum
            }
        }
    }

    /// Grouped convs (not depthwise): `groups` must keep dividing both widths. A
    /// width stays free if it is a multiple of `groups` now (and is then kept on
    /// multiples of it); otherwise it is frozen. Sums of such multiples stay multiples.
    fn divisibility(&mut self) {
        for i in 0..self.slots.len() {
            let slot = &self.slots[i];
            if slot.groups <= 1 || slot.depthwise {
                continue;
            }
            let g = slot.groups;
            let mut e = self.normalize(&slot.input);
            e.add_scaled(&self.normalize(&Expr::var(slot.output)), 1);
            for &(v, _) in &e.terms {
                if !self.values[v].is_multiple_of(g) {
                    self.binding[v] = Some(Expr::constant(self.values[v]));
                }
            }
        }
    }

    fn finish(self) -> WidthClasses {
        // Free variables become classes, numbered in order of appearance.
        let mut class_of = vec![usize::MAX; self.values.len()];
        // (width, members, multiple_of) per class
        let mut classes: Vec<(u64, Vec<Member>, u64)> = Vec::new();
        for (v, (binding, &width)) in self.binding.iter().zip(&self.values).enumerate() {
            if binding.is_none() {
                class_of[v] = classes.len();
                classes.push((width, Vec::new(), 1));
            }
        }
        let to_classes = |e: &Expr| Expr {
            terms: e.terms.iter().map(|&(v, c)| (class_of[v], c)).collect(),
            constant: e.constant,
        };
        let mut slots = Vec::with_capacity(self.slots.len());
        for raw in &self.slots {
            let input = to_classes(&self.normalize(&raw.input));
            let output = to_classes(&self.normalize(&Expr::var(raw.output)));
            let groups = raw.depthwise.then(|| input.clone());
            let name = self
                .rows
                .get(raw.row)
                .map_or_else(String::new, |r| r.name.clone());
            let ports = [
                (Port::In, Some(&input)),
                (Port::Out, Some(&output)),
                (Port::Groups, groups.as_ref()),
            ];
            for (port, e) in ports {
                let Some(e) = e else { continue };
                let exact = e.terms.len() == 1 && e.constant == 0;
                for &(class, factor) in &e.terms {
                    if let Some((_, members, _)) = classes.get_mut(class) {
                        members.push(Member {
                            layer: name.clone(),
                            port,
                            factor,
                            exact,
                        });
                    }
                }
            }
            if raw.groups > 1 && !raw.depthwise {
                for &(class, _) in input.terms.iter().chain(&output.terms) {
                    if let Some((_, _, multiple_of)) = classes.get_mut(class) {
                        *multiple_of = lcm(*multiple_of, raw.groups);
                    }
                }
            }
            slots.push(Slot {
                layer: name,
                input,
                output,
                groups,
                fixed_groups: if raw.depthwise { 1 } else { raw.groups },
            });
        }
        let classes = classes
            .into_iter()
            .enumerate()
            .map(|(id, (width, members, multiple_of))| WidthClass {
                id,
                width,
                members: members.into(),
                multiple_of,
            })
            .collect();
        WidthClasses {
            classes,
            slots: slots.into(),
        }
    }
}
