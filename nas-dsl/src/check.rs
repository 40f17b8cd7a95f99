//! The shape checker: infers every shape from `input`, proves each written width
//! against what reaches it, and counts parameters and FLOPs. It is the single
//! source of shape truth for the macro, the CLI, the mutator and the runtime.

use crate::ast::*;
use crate::error::{Diagnostic, ErrorKind, Errors};
use crate::graph::{CheckedNet, GraphBuilder, GraphNode, LayerInfo, NodeId, Op};
use crate::print::push_u64;
use crate::span::Span;
use std::collections::HashMap;
use std::fmt;

/// The shape of a value flowing through a net, batch dimension left out.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(untagged)]
pub enum Shape {
    /// A feature map `[C, H, W]`.
    Map {
        /// Channels.
        c: u64,
        /// Height.
        h: u64,
        /// Width.
        w: u64,
    },
    /// A flat vector `[F]`.
    Flat(u64),
}

impl Shape {
    /// The channel (or feature) count.
    pub fn channels(&self) -> u64 {
        match *self {
            Shape::Map { c, .. } => c,
            Shape::Flat(f) => f,
        }
    }

    /// The dimensions as a list, `[C, H, W]` or `[F]`.
    pub fn dims(&self) -> Vec<u64> {
        match *self {
            Shape::Map { c, h, w } => vec![c, h, w],
            Shape::Flat(f) => vec![f],
        }
    }

    /// The number of elements per sample.
    pub fn numel(&self) -> Option<u64> {
        match *self {
            Shape::Map { c, h, w } => c.checked_mul(h)?.checked_mul(w),
            Shape::Flat(f) => Some(f),
        }
    }
}

impl fmt::Display for Shape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Shape::Map { c, h, w } => write!(f, "[{c}, {h}, {w}]"),
            Shape::Flat(n) => write!(f, "[{n}]"),
        }
    }
}

/// Checks every net of a file; all errors of all nets are returned together.
pub fn check_file(file: &File) -> Result<Vec<CheckedNet>, Errors> {
    let mut nets = Vec::new();
    let mut errors = Vec::new();
    for net in &file.nets {
        match check(net) {
            Ok(c) => nets.push(c),
            Err(e) => errors.extend(e.0),
        }
    }
    if errors.is_empty() {
        Ok(nets)
    } else {
        Err(Errors(errors))
    }
}

/// Checks one net: its names, every layer's input against what reaches it, and
/// its final shape against `classes`.
pub fn check(net: &Net) -> Result<CheckedNet, Errors> {
    let (input, output, layers, graph) = check_parts(net)?;
    Ok(CheckedNet::new(net.clone(), input, output, layers, graph))
}

/// [`check()`] for a net the caller no longer needs: the checked net keeps it
/// instead of a copy (the mutator's path, where every mutant is checked).
pub fn check_owned(net: Net) -> Result<CheckedNet, Box<(Net, Errors)>> {
    match check_parts(&net) {
        Ok((input, output, layers, graph)) => {
            Ok(CheckedNet::new(net, input, output, layers, graph))
        }
        Err(errors) => Err(Box::new((net, errors))),
    }
}

type Parts = (Shape, Shape, Vec<LayerInfo>, crate::graph::Graph);

fn check_parts(net: &Net) -> Result<Parts, Errors> {
    let names = Names::new(net);
    let statements = names.generated.len();
    let mut cx = Checker {
        errors: Vec::new(),
        layers: Vec::with_capacity(statements),
        graph: GraphBuilder::with_capacity(statements + 2),
        names,
    };
    let input = input_shape(net);
    let input_node = cx.graph.add(GraphNode::Input);
    let flow = Flow {
        shape: input,
        origin: Origin::Input,
        origin_span: net.input.span,
        flat: None,
        node: input_node,
    };
    let out = cx.block(&net.body, flow, 0);
    let output_node = cx.graph.add(GraphNode::Output);
    cx.graph.edge(out.node, output_node);
    match out.shape {
        Some(Shape::Flat(n)) if n == net.classes.value => {}
        Some(shape) if net.classes.value > 0 => {
            let origin = cx.origin_name(out.origin);
            cx.errors.push(
                Diagnostic::new(
                    ErrorKind::Classes {
                        shape: shape.to_string(),
                        classes: net.classes.value,
                    },
                    net.classes.span,
                )
                .with_note(out.origin_span, format!("`{origin}` produces {shape}")),
            )
        }
        _ => {}
    }
    cx.errors.append(&mut cx.names.errors);
    if !cx.errors.is_empty() {
        cx.errors
            .sort_by_key(|d| (d.span.start.line, d.span.start.column));
        return Err(Errors(cx.errors));
    }
    let (Some(input), Some(output)) = (input, out.shape) else {
        return Err(Errors(vec![Diagnostic::new(
            ErrorKind::BadInput {
                found: format!("{:?}", net.input.value),
            },
            net.input.span,
        )]));
    };
    Ok((input, output, cx.layers, cx.graph.finish()))
}

fn input_shape(net: &Net) -> Option<Shape> {
    match net.input.value[..] {
        [c, h, w] if c > 0 && h > 0 && w > 0 => Some(Shape::Map { c, h, w }),
        [f] if f > 0 => Some(Shape::Flat(f)),
        _ => None,
    }
}

/// What reaches a layer: its shape (unknown after an error that leaves nothing to
/// reason from), the layer that set its width, and the graph node producing it.
#[derive(Clone, Copy)]
struct Flow {
    shape: Option<Shape>,
    origin: Origin,
    origin_span: Span,
    /// Set after a `flatten`: the `C·H·W` it multiplied.
    flat: Option<(u64, u64, u64)>,
    node: NodeId,
}

/// The statement that set a flow's width: the input, or a row of the table.
#[derive(Clone, Copy)]
enum Origin {
    Input,
    Row(usize),
}

/// Assigns every statement a unique name: the written one, or `{keyword}{index}`
/// with the index counting statements in source order.
struct Names {
    generated: Vec<String>,
    next: usize,
    errors: Vec<Diagnostic>,
}

impl Names {
    fn new(net: &Net) -> Names {
        let mut errors = Vec::new();
        let mut all: Vec<&Stmt> = Vec::new();
        visit(&net.body, &mut |s| all.push(s));
        // Written names, first use kept: a list while short (the common case, and
        // faster than hashing), a map beyond that.
        let mut written: Vec<(&str, Span)> = Vec::new();
        let mut map: HashMap<&str, Span> = HashMap::new();
        for s in &all {
            let Some(name) = &s.name else { continue };
            let first = if written.len() < 32 {
                written
                    .iter()
                    .find(|(t, _)| *t == name.text)
                    .map(|(_, sp)| *sp)
            } else {
                if map.is_empty() {
                    map.extend(written.iter().copied());
                }
                map.get(name.text.as_str()).copied()
            };
            match first {
                Some(first) => errors.push(
                    Diagnostic::new(
                        ErrorKind::DuplicateName {
                            name: name.text.clone(),
                        },
                        name.span,
                    )
                    .with_note(first, "first used here"),
                ),
                None => {
                    written.push((&name.text, name.span));
                    if !map.is_empty() {
                        map.insert(&name.text, name.span);
                    }
                }
            }
        }
        let taken = |candidate: &str| {
            if map.is_empty() {
                written.iter().any(|(t, _)| *t == candidate)
            } else {
                map.contains_key(candidate)
            }
        };
        // A generated name is a keyword and the statement's index, so two of them
        // never meet (no keyword ends in a digit or `_`); only a written name can
        // take one, and then `_` is appended until it is free.
        let generated = all
            .iter()
            .enumerate()
            .map(|(i, s)| match &s.name {
                Some(n) => n.text.clone(),
                None => {
                    let keyword = s.node.keyword();
                    let mut name = String::with_capacity(keyword.len() + 4);
                    name.push_str(keyword);
                    push_u64(&mut name, i as u64);
                    while taken(&name) {
                        name.push('_');
                    }
                    name
                }
            })
            .collect();
        Names {
            generated,
            next: 0,
            errors,
        }
    }

    fn next(&mut self) -> String {
        let name = self
            .generated
            .get_mut(self.next)
            .map(std::mem::take)
            .unwrap_or_default();
        self.next += 1;
        name
    }
}

/// Visits every statement in source order (pre-order), blocks before their contents.
pub fn visit<'a>(block: &'a [Stmt], f: &mut impl FnMut(&'a Stmt)) {
    for s in block {
        f(s);
        match &s.node {
            Node::Layer(_) => {}
            Node::Residual { body, shortcut } => {
                visit(body, f);
                if let Some(sc) = shortcut {
                    visit(sc, f);
                }
            }
            Node::Concat { branches } => {
                for b in branches {
                    visit(b, f);
                }
            }
        }
    }
}

struct Checker {
    errors: Vec<Diagnostic>,
    layers: Vec<LayerInfo>,
    graph: GraphBuilder,
    names: Names,
}

/// The result of checking one layer: its output, parameters and FLOPs.
struct Out {
    shape: Option<Shape>,
    params: u64,
    flops: u64,
    sets_width: bool,
    flat: Option<(u64, u64, u64)>,
}

impl Checker {
    /// The name of the statement that set a flow's width.
    fn origin_name(&self, origin: Origin) -> String {
        match origin {
            Origin::Input => "input".into(),
            Origin::Row(i) => self
                .layers
                .get(i)
                .map_or_else(String::new, |l| l.name.clone()),
        }
    }

    fn overflow(&mut self, layer: &str, what: &str, span: Span) {
        self.errors.push(Diagnostic::new(
            ErrorKind::Overflow {
                layer: layer.into(),
                what: what.into(),
            },
            span,
        ));
    }

    fn block(&mut self, block: &[Stmt], mut flow: Flow, depth: usize) -> Flow {
        for stmt in block {
            flow = self.stmt(stmt, flow, depth);
        }
        flow
    }

    fn stmt(&mut self, stmt: &Stmt, flow: Flow, depth: usize) -> Flow {
        let name = self.names.next();
        let index = self.layers.len();
        self.layers.push(LayerInfo {
            name: String::new(),
            op: match &stmt.node {
                Node::Layer(layer) => Op::Layer(layer.clone()),
                Node::Residual { .. } => Op::Residual,
                Node::Concat { .. } => Op::Concat,
            },
            input: flow.shape,
            output: None,
            params: 0,
            flops: 0,
            span: stmt.span,
            depth,
        });
        let (out, node) = match &stmt.node {
            Node::Layer(layer) => {
                let out = self.layer(&name, stmt, layer, &flow);
                let node = self.graph.add(GraphNode::Layer(index));
                self.graph.edge(flow.node, node);
                (out, node)
            }
            Node::Residual { body, shortcut } => {
                self.residual(stmt, body, shortcut.as_deref(), &flow, index, depth)
            }
            Node::Concat { branches } => self.concat(stmt, branches, &flow, index, depth),
        };
        let info = &mut self.layers[index];
        info.name = name;
        info.output = out.shape;
        info.params = out.params;
        info.flops = out.flops;
        if out.sets_width {
            Flow {
                shape: out.shape,
                origin: Origin::Row(index),
                origin_span: stmt.name.as_ref().map_or(stmt.keyword, |n| n.span),
                flat: out.flat,
                node,
            }
        } else {
            Flow {
                shape: out.shape,
                node,
                ..flow
            }
        }
    }

    fn residual(
        &mut self,
        stmt: &Stmt,
        body: &[Stmt],
        shortcut: Option<&[Stmt]>,
        flow: &Flow,
        index: usize,
        depth: usize,
    ) -> (Out, NodeId) {
        if body.is_empty() {
            self.errors.push(Diagnostic::new(
                ErrorKind::EmptyBlock {
                    block: "residual".into(),
                    what: "layer".into(),
                },
                stmt.keyword,
            ));
        }
        let y = self.block(body, *flow, depth + 1);
        let s = match shortcut {
            Some(sc) => self.block(sc, *flow, depth + 1),
            None => *flow,
        };
        let join = self.graph.add(GraphNode::Add(index));
        self.graph.edge(y.node, join);
        self.graph.edge(s.node, join);
        let shape = match (y.shape, s.shape) {
            (Some(a), Some(b)) if a != b => {
                let kind = if shortcut.is_none() {
                    ErrorKind::ResidualNeedsShortcut {
                        body: a.to_string(),
                        input: b.to_string(),
                    }
                } else {
                    ErrorKind::ResidualMismatch {
                        body: a.to_string(),
                        shortcut: b.to_string(),
                    }
                };
                let origin = self.origin_name(y.origin);
                self.errors.push(
                    Diagnostic::new(kind, stmt.keyword)
                        .with_note(y.origin_span, format!("`{origin}` sets the body's width")),
                );
                Some(a)
            }
            (a, _) => a,
        };
        let out = Out {
            shape,
            params: 0,
            flops: 0,
            sets_width: true,
            flat: None,
        };
        (out, join)
    }

    fn concat(
        &mut self,
        stmt: &Stmt,
        branches: &[Block],
        flow: &Flow,
        index: usize,
        depth: usize,
    ) -> (Out, NodeId) {
        let join = self.graph.add(GraphNode::Concat(index));
        if branches.is_empty() {
            self.errors.push(Diagnostic::new(
                ErrorKind::EmptyBlock {
                    block: "concat".into(),
                    what: "branch".into(),
                },
                stmt.keyword,
            ));
        }
        let outs: Vec<Flow> = branches
            .iter()
            .map(|b| self.block(b, *flow, depth + 1))
            .collect();
        for o in &outs {
            self.graph.edge(o.node, join);
        }
        let mut shape = None;
        let mut known = true;
        for o in &outs {
            let Some(s) = o.shape else {
                known = false;
                continue;
            };
            shape = match (shape, s) {
                (None, s) => Some(s),
                (
                    Some(Shape::Map { c, h, w }),
                    Shape::Map {
                        c: c2,
                        h: h2,
                        w: w2,
                    },
                ) => {
                    if (h, w) != (h2, w2) {
                        let origin = self.origin_name(o.origin);
                        self.errors.push(
                            Diagnostic::new(
                                ErrorKind::ConcatSpatial {
                                    first: first_shape(&outs).to_string(),
                                    other: s.to_string(),
                                },
                                stmt.keyword,
                            )
                            .with_note(o.origin_span, format!("`{origin}` produces {s}")),
                        );
                        known = false;
                    }
                    c.checked_add(c2).map(|c| Shape::Map { c, h, w })
                }
                (Some(Shape::Flat(a)), Shape::Flat(b)) => a.checked_add(b).map(Shape::Flat),
                (Some(_), s) => {
                    self.errors.push(Diagnostic::new(
                        ErrorKind::ConcatRank {
                            first: first_shape(&outs).to_string(),
                            other: s.to_string(),
                        },
                        stmt.keyword,
                    ));
                    known = false;
                    None
                }
            };
            if shape.is_none() && known {
                self.overflow("concat", "channel sum", stmt.keyword);
                known = false;
            }
        }
        let out = Out {
            shape: shape.filter(|_| known),
            params: 0,
            flops: 0,
            sets_width: true,
            flat: None,
        };
        (out, join)
    }

    /// Checks one layer against the flow that reaches it.
    fn layer(&mut self, name: &str, stmt: &Stmt, layer: &Layer, flow: &Flow) -> Out {
        let same = |shape| Out {
            shape,
            params: 0,
            flops: 0,
            sets_width: false,
            flat: None,
        };
        match layer {
            Layer::Conv(c) => self.conv(name, stmt, c, flow),
            Layer::Linear(l) => self.linear(name, stmt, l, flow),
            Layer::Bn => {
                let mut out = same(flow.shape);
                out.params = flow.shape.map_or(0, |s| 2 * s.channels());
                out
            }
            Layer::Act(_) | Layer::Dropout(_) => same(flow.shape),
            Layer::Pool(p) => {
                let Some((c, h, w)) = self.needs_map(name, stmt, flow) else {
                    return same(None);
                };
                if p.pad.value > p.k.value / 2 {
                    self.errors.push(Diagnostic::new(
                        ErrorKind::PoolPadding {
                            layer: name.into(),
                            pad: p.pad.value,
                            k: p.k.value,
                        },
                        p.pad.span,
                    ));
                    return same(None);
                }
                let shape = self
                    .spatial(
                        name,
                        stmt,
                        (h, w),
                        p.k.value,
                        p.stride.value,
                        p.pad.value,
                        1,
                    )
                    .map(|(h, w)| Shape::Map { c, h, w });
                same(shape)
            }
            Layer::Gap => {
                let shape = self
                    .needs_map(name, stmt, flow)
                    .map(|(c, _, _)| Shape::Flat(c));
                Out {
                    sets_width: false,
                    ..same(shape)
                }
            }
            Layer::Flatten => {
                let Some((c, h, w)) = self.needs_map(name, stmt, flow) else {
                    return same(None);
                };
                let Some(f) = c.checked_mul(h).and_then(|x| x.checked_mul(w)) else {
                    self.overflow(name, "C·H·W", stmt.keyword);
                    return same(None);
                };
                Out {
                    shape: Some(Shape::Flat(f)),
                    params: 0,
                    flops: 0,
                    sets_width: true,
                    flat: Some((c, h, w)),
                }
            }
        }
    }

    fn needs_map(&mut self, name: &str, stmt: &Stmt, flow: &Flow) -> Option<(u64, u64, u64)> {
        match flow.shape? {
            Shape::Map { c, h, w } => Some((c, h, w)),
            s @ Shape::Flat(_) => {
                self.errors.push(Diagnostic::new(
                    ErrorKind::NeedsMap {
                        layer: name.into(),
                        shape: s.to_string(),
                    },
                    stmt.keyword,
                ));
                None
            }
        }
    }

    /// Output size of a sliding window: `(H + 2·pad − dilation·(k−1) − 1) / stride + 1`,
    /// reported when it leaves no pixels.
    #[allow(clippy::too_many_arguments)]
    fn spatial(
        &mut self,
        name: &str,
        stmt: &Stmt,
        (h, w): (u64, u64),
        k: u64,
        stride: u64,
        pad: u64,
        dilation: u64,
    ) -> Option<(u64, u64)> {
        let dim = |x: u64| -> Option<Option<u64>> {
            let padded = x.checked_add(pad.checked_mul(2)?)?;
            let reach = dilation.checked_mul(k.checked_sub(1)?)?.checked_add(1)?;
            let step = |r: u64| r.checked_div(stride).map(|q| q + 1);
            Some(match padded.checked_sub(reach) {
                Some(r) => Some(step(r)?),
                None => None,
            })
        };
        match (dim(h), dim(w)) {
            (Some(Some(oh)), Some(Some(ow))) => Some((oh, ow)),
            (Some(oh), Some(ow)) => {
                self.errors.push(Diagnostic::new(
                    ErrorKind::Collapse {
                        layer: name.into(),
                        h: oh.unwrap_or(0),
                        w: ow.unwrap_or(0),
                        in_h: h,
                        in_w: w,
                        k,
                        pad,
                    },
                    stmt.keyword,
                ));
                None
            }
            _ => {
                self.overflow(name, "output size", stmt.keyword);
                None
            }
        }
    }

    fn conv(&mut self, name: &str, stmt: &Stmt, c: &Conv, flow: &Flow) -> Out {
        let (i, o, g) = (c.in_ch.value, c.out_ch.value, c.groups.value);
        let mut out = Out {
            shape: None,
            params: 0,
            flops: 0,
            sets_width: true,
            flat: None,
        };
        if i.checked_rem(g) != Some(0) || o.checked_rem(g) != Some(0) {
            self.errors.push(Diagnostic::new(
                ErrorKind::Groups {
                    groups: g,
                    in_ch: i,
                    out_ch: o,
                },
                c.groups.span,
            ));
        }
        let per_out = i
            .checked_div(g)
            .and_then(|x| x.checked_mul(c.k.value))
            .and_then(|x| x.checked_mul(c.k.value));
        let params = per_out
            .and_then(|p| p.checked_mul(o))
            .and_then(|p| p.checked_add(if c.bias.value { o } else { 0 }));
        let Some(params) = params else {
            self.overflow(name, "parameter count", stmt.keyword);
            return out;
        };
        out.params = params;
        let Some((ci, h, w)) = self.needs_map(name, stmt, flow) else {
            return out;
        };
        if ci != i {
            let producer = self.origin_name(flow.origin);
            let note = format!("`{producer}` produces {ci} channels here");
            self.errors.push(
                Diagnostic::new(
                    ErrorKind::InputChannels {
                        layer: name.into(),
                        expected: i,
                        producer,
                        found: ci,
                    },
                    c.in_ch.span,
                )
                .with_note(flow.origin_span, note),
            );
        }
        let Some((oh, ow)) = self.spatial(
            name,
            stmt,
            (h, w),
            c.k.value,
            c.stride.value,
            c.pad.value,
            c.dilation.value,
        ) else {
            return out;
        };
        let flops = per_out
            .and_then(|p| p.checked_mul(o))
            .and_then(|p| p.checked_mul(oh))
            .and_then(|p| p.checked_mul(ow));
        match flops {
            Some(f) => out.flops = f,
            None => self.overflow(name, "FLOPs", stmt.keyword),
        }
        out.shape = Some(Shape::Map { c: o, h: oh, w: ow });
        out
    }

    fn linear(&mut self, name: &str, stmt: &Stmt, l: &Linear, flow: &Flow) -> Out {
        let (i, o) = (l.in_f.value, l.out_f.value);
        let flops = i.checked_mul(o);
        let params = flops.and_then(|p| p.checked_add(if l.bias.value { o } else { 0 }));
        let mut out = Out {
            shape: Some(Shape::Flat(o)),
            params: params.unwrap_or(0),
            flops: flops.unwrap_or(0),
            sets_width: true,
            flat: None,
        };
        if params.is_none() {
            self.overflow(name, "parameter count", stmt.keyword);
            out.shape = None;
        }
        match flow.shape {
            Some(s @ Shape::Map { .. }) => self.errors.push(Diagnostic::new(
                ErrorKind::NeedsFlat {
                    layer: name.into(),
                    shape: s.to_string(),
                },
                stmt.keyword,
            )),
            Some(Shape::Flat(f)) if f != i => {
                let producer = self.origin_name(flow.origin);
                let note = format!("`{producer}` produces {f} features here");
                self.errors.push(
                    Diagnostic::new(
                        ErrorKind::InputFeatures {
                            layer: name.into(),
                            expected: i,
                            producer,
                            found: f,
                            detail: flow
                                .flat
                                .map_or_else(String::new, |(c, h, w)| format!(" ({c}·{h}·{w})")),
                        },
                        l.in_f.span,
                    )
                    .with_note(flow.origin_span, note),
                )
            }
            _ => {}
        }
        out
    }
}

fn first_shape(outs: &[Flow]) -> Shape {
    outs.iter().find_map(|o| o.shape).unwrap_or(Shape::Flat(0))
}
