//! The checked graph: a net whose every shape is proven, as a data-flow graph
//! (petgraph, indices private) plus a per-statement table in source order. The
//! macro's codegen and the runtime builder lower it through [`Lower`].

use crate::ast::{Layer, Net, Node, Stmt};
use crate::check::Shape;
use crate::span::Span;
use petgraph::stable_graph::{NodeIndex, StableDiGraph};

/// A node of the data-flow graph, identified without exposing petgraph.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct NodeId(NodeIndex);

/// What a graph node is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GraphNode {
    /// The net's input.
    Input,
    /// A layer: the index of its row in [`CheckedNet::layers`].
    Layer(usize),
    /// The sum that ends a `residual` block (its row's index).
    Add(usize),
    /// The concatenation that ends a `concat` block (its row's index).
    Concat(usize),
    /// The net's output.
    Output,
}

/// What a statement does, as recorded in the checked table.
#[derive(Clone, Debug, PartialEq)]
#[expect(
    clippy::large_enum_variant,
    reason = "one op per statement, stored in a Vec; layers are the common case"
)]
pub enum Op {
    /// A layer.
    Layer(Layer),
    /// A residual block (its children follow it in the table).
    Residual,
    /// A concat block (its children follow it in the table).
    Concat,
}

impl Op {
    /// The layer or block keyword.
    pub fn keyword(&self) -> &'static str {
        match self {
            Op::Layer(l) => l.keyword(),
            Op::Residual => "residual",
            Op::Concat => "concat",
        }
    }
}

/// One statement of a checked net, in source order (blocks before their contents).
#[derive(Clone, Debug, PartialEq)]
pub struct LayerInfo {
    /// The written or generated name.
    pub name: String,
    /// The layer or block.
    pub op: Op,
    /// The shape reaching it (always known in a checked net).
    pub input: Option<Shape>,
    /// The shape it produces (always known in a checked net).
    pub output: Option<Shape>,
    /// Learnable parameters, counted as PyTorch counts them (BatchNorm: 2·C).
    pub params: u64,
    /// Multiply-accumulate operations per sample (conv and linear layers).
    pub flops: u64,
    /// Where the statement was written.
    pub span: Span,
    /// Block nesting depth (0 at the top level).
    pub depth: usize,
}

impl LayerInfo {
    /// The input shape; a checked net always has one.
    pub fn input_shape(&self) -> Shape {
        self.input.unwrap_or(Shape::Flat(0))
    }

    /// The output shape; a checked net always has one.
    pub fn output_shape(&self) -> Shape {
        self.output.unwrap_or(Shape::Flat(0))
    }
}

/// The data-flow graph of a checked net.
pub(crate) type Graph = StableDiGraph<GraphNode, ()>;

pub(crate) struct GraphBuilder {
    graph: Graph,
}

impl GraphBuilder {
    /// A builder with room for `nodes` nodes (and as many edges, and a few more).
    pub(crate) fn with_capacity(nodes: usize) -> GraphBuilder {
        GraphBuilder {
            graph: Graph::with_capacity(nodes, nodes + nodes / 2),
        }
    }

    pub(crate) fn add(&mut self, node: GraphNode) -> NodeId {
        NodeId(self.graph.add_node(node))
    }

    pub(crate) fn edge(&mut self, from: NodeId, to: NodeId) {
        self.graph.add_edge(from.0, to.0, ());
    }

    pub(crate) fn finish(self) -> StableDiGraph<GraphNode, ()> {
        self.graph
    }
}

/// A net that passed the checker, with every shape, parameter and FLOP count.
#[derive(Clone, Debug)]
pub struct CheckedNet {
    net: Net,
    input: Shape,
    output: Shape,
    layers: Vec<LayerInfo>,
    graph: StableDiGraph<GraphNode, ()>,
}

impl CheckedNet {
    pub(crate) fn new(
        net: Net,
        input: Shape,
        output: Shape,
        layers: Vec<LayerInfo>,
        graph: StableDiGraph<GraphNode, ()>,
    ) -> Self {
        CheckedNet {
            net,
            input,
            output,
            layers,
            graph,
        }
    }

    /// The syntax tree that was checked.
    pub fn net(&self) -> &Net {
        &self.net
    }

    /// The net's name.
    pub fn name(&self) -> &str {
        &self.net.name.text
    }

    /// The input shape.
    pub fn input(&self) -> Shape {
        self.input
    }

    /// The output shape, `[classes]`.
    pub fn output(&self) -> Shape {
        self.output
    }

    /// Every statement in source order, blocks before their contents.
    pub fn layers(&self) -> &[LayerInfo] {
        &self.layers
    }

    /// The statement with this name.
    pub fn layer(&self, name: &str) -> Option<&LayerInfo> {
        self.layers.iter().find(|l| l.name == name)
    }

    /// Total learnable parameters (PyTorch's count).
    pub fn params(&self) -> u64 {
        self.layers.iter().map(|l| l.params).sum()
    }

    /// Total multiply-accumulates per sample.
    pub fn flops(&self) -> u64 {
        self.layers.iter().map(|l| l.flops).sum()
    }

    /// Parameters as Burn's `num_params()` counts them: BatchNorm's running mean
    /// and variance are stored as parameters there, so each BatchNorm adds 2·C more.
    pub fn burn_params(&self) -> u64 {
        let running: u64 = self
            .layers
            .iter()
            .filter(|l| matches!(l.op, Op::Layer(Layer::Bn)))
            .map(|l| 2 * l.input_shape().channels())
            .sum();
        self.params() + running
    }

    /// Every graph node.
    pub fn nodes(&self) -> impl Iterator<Item = (NodeId, GraphNode)> + '_ {
        self.graph
            .node_indices()
            .map(|i| (NodeId(i), self.graph[i]))
    }

    /// The nodes whose output flows into `node`.
    pub fn producers(&self, node: NodeId) -> Vec<NodeId> {
        self.graph
            .neighbors_directed(node.0, petgraph::Direction::Incoming)
            .map(NodeId)
            .collect()
    }

    /// The nodes that consume `node`'s output.
    pub fn consumers(&self, node: NodeId) -> Vec<NodeId> {
        self.graph
            .neighbors_directed(node.0, petgraph::Direction::Outgoing)
            .map(NodeId)
            .collect()
    }

    /// What a node is.
    pub fn node(&self, id: NodeId) -> Option<GraphNode> {
        self.graph.node_weight(id.0).copied()
    }

    /// Lowers the net through `lower`, starting from the value `x` for the input.
    /// Statements are visited in source order, each with its checked row.
    pub fn lower<L: Lower>(&self, lower: &mut L, x: L::Value) -> L::Value {
        let mut rows = self.layers.iter();
        lower_block(&self.net.body, &mut rows, lower, x)
    }
}

/// A lowering of a checked net: codegen emits Rust, the runtime builder runs tensors.
/// The traversal (which value flows where) lives here once.
pub trait Lower {
    /// What flows between layers: an expression, a tensor, …
    type Value;
    /// Applies one layer.
    fn layer(&mut self, row: &LayerInfo, layer: &Layer, x: Self::Value) -> Self::Value;
    /// A second use of a value (the input of a residual or concat block).
    fn fork(&mut self, x: &Self::Value) -> Self::Value;
    /// The sum ending a residual block.
    fn add(&mut self, row: &LayerInfo, body: Self::Value, shortcut: Self::Value) -> Self::Value;
    /// The channel concatenation ending a concat block.
    fn concat(&mut self, row: &LayerInfo, branches: Vec<Self::Value>) -> Self::Value;
}

fn lower_block<'a, L: Lower>(
    block: &[Stmt],
    rows: &mut impl Iterator<Item = &'a LayerInfo>,
    lower: &mut L,
    mut x: L::Value,
) -> L::Value {
    for stmt in block {
        let Some(row) = rows.next() else {
            return x;
        };
        x = match &stmt.node {
            Node::Layer(layer) => lower.layer(row, layer, x),
            Node::Residual { body, shortcut } => {
                let input = lower.fork(&x);
                let y = lower_block(body, rows, lower, input);
                let s = match shortcut {
                    Some(sc) => lower_block(sc, rows, lower, x),
                    None => x,
                };
                lower.add(row, y, s)
            }
            Node::Concat { branches } => {
                let outs = branches
                    .iter()
                    .map(|b| {
                        let input = lower.fork(&x);
                        lower_block(b, rows, lower, input)
                    })
                    .collect();
                lower.concat(row, outs)
            }
        };
    }
    x
}
