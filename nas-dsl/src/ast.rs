//! The syntax tree: a plain value type. It stores what was written (with defaults
//! filled in) and where; shapes live in the checked graph, never here.

use crate::span::{Span, Spanned};

/// A source file or one `network!` invocation: one or more nets.
#[derive(Clone, Debug, PartialEq)]
pub struct File {
    /// The nets, in source order.
    pub nets: Vec<Net>,
}

/// An identifier with its span; equality compares only the text.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Ident {
    /// The identifier's text.
    pub text: String,
    /// Where it was written.
    pub span: Span,
}

impl Ident {
    /// An identifier with no source position.
    pub fn synthetic(text: impl Into<String>) -> Ident {
        Ident {
            text: text.into(),
            span: Span::synthetic(),
        }
    }
}

/// One `net Name(input = [...], classes = N) { ... }` item.
#[derive(Clone, Debug, PartialEq)]
pub struct Net {
    /// `///` doc comment lines, each without the leading `///`.
    pub docs: Vec<String>,
    /// Whether the net was declared `pub`.
    pub public: bool,
    /// The net's name (a Rust type name in generated code).
    pub name: Ident,
    /// The input shape: `[C, H, W]` or `[F]`.
    pub input: Spanned<Vec<u64>>,
    /// The number of classes, the required final width.
    pub classes: Spanned<u64>,
    /// The statements of the body.
    pub body: Block,
    /// The whole item.
    pub span: Span,
}

/// A sequence of statements.
pub type Block = Vec<Stmt>;

/// One statement: an optionally named layer or block.
#[derive(Clone, Debug, PartialEq)]
pub struct Stmt {
    /// The name given with `name: ...`, if any.
    pub name: Option<Ident>,
    /// What the statement does.
    pub node: Node,
    /// The layer or block keyword.
    pub keyword: Span,
    /// The whole statement.
    pub span: Span,
}

/// A layer or a block.
#[derive(Clone, Debug, PartialEq)]
#[expect(
    clippy::large_enum_variant,
    reason = "layers dominate every net; boxing them adds an allocation per layer to each mutant clone"
)]
pub enum Node {
    /// A single layer.
    Layer(Layer),
    /// `residual { body } [shortcut { ... }]`: `body(x) + shortcut(x)`.
    Residual {
        /// The main path.
        body: Block,
        /// The shortcut path; `None` is the identity.
        shortcut: Option<Block>,
    },
    /// `concat { branch { ... } ... }`: channel concatenation of every branch.
    Concat {
        /// The branches, in order.
        branches: Vec<Block>,
    },
}

/// A layer of the language.
#[derive(Clone, Debug, PartialEq)]
pub enum Layer {
    /// 2-D convolution.
    Conv(Conv),
    /// Fully connected layer.
    Linear(Linear),
    /// Batch normalisation over channels (or features).
    Bn,
    /// An element-wise activation.
    Act(Activation),
    /// Max or average pooling.
    Pool(Pool),
    /// Global average pooling: `[C, H, W]` to `[C]`.
    Gap,
    /// `[C, H, W]` to `[C·H·W]`.
    Flatten,
    /// Dropout with probability `p`.
    Dropout(Spanned<f64>),
}

/// `conv(I -> O, k = K, stride, pad, groups, dilation, bias)`.
#[derive(Clone, Debug, PartialEq)]
pub struct Conv {
    /// Input channels.
    pub in_ch: Spanned<u64>,
    /// Output channels.
    pub out_ch: Spanned<u64>,
    /// Kernel size.
    pub k: Spanned<u64>,
    /// Stride (default 1).
    pub stride: Spanned<u64>,
    /// Zero padding on every side (default 0).
    pub pad: Spanned<u64>,
    /// Groups (default 1); divides both widths.
    pub groups: Spanned<u64>,
    /// Dilation (default 1).
    pub dilation: Spanned<u64>,
    /// Whether the layer has a bias (default true).
    pub bias: Spanned<bool>,
}

/// `linear(I -> O, bias)`.
#[derive(Clone, Debug, PartialEq)]
pub struct Linear {
    /// Input features.
    pub in_f: Spanned<u64>,
    /// Output features.
    pub out_f: Spanned<u64>,
    /// Whether the layer has a bias (default true).
    pub bias: Spanned<bool>,
}

/// Element-wise activations.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Activation {
    /// `relu`
    Relu,
    /// `gelu`
    Gelu,
    /// `silu`
    Silu,
    /// `sigmoid`
    Sigmoid,
    /// `tanh`
    Tanh,
}

/// The two pooling kinds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PoolKind {
    /// `maxpool`
    Max,
    /// `avgpool`
    Avg,
}

/// `maxpool(k = K, stride = K, pad = 0)` or `avgpool(...)`.
#[derive(Clone, Debug, PartialEq)]
pub struct Pool {
    /// Which pooling.
    pub kind: PoolKind,
    /// Window size.
    pub k: Spanned<u64>,
    /// Stride (defaults to `k`).
    pub stride: Spanned<u64>,
    /// Zero padding on every side (default 0).
    pub pad: Spanned<u64>,
}

impl Activation {
    /// Every activation, in the order the reference lists them.
    pub const ALL: [Activation; 5] = [
        Activation::Relu,
        Activation::Gelu,
        Activation::Silu,
        Activation::Sigmoid,
        Activation::Tanh,
    ];

    /// The keyword of this activation.
    pub fn keyword(self) -> &'static str {
        match self {
            Activation::Relu => "relu",
            Activation::Gelu => "gelu",
            Activation::Silu => "silu",
            Activation::Sigmoid => "sigmoid",
            Activation::Tanh => "tanh",
        }
    }
}

impl Layer {
    /// The keyword that introduces this layer.
    pub fn keyword(&self) -> &'static str {
        match self {
            Layer::Conv(_) => "conv",
            Layer::Linear(_) => "linear",
            Layer::Bn => "bn",
            Layer::Act(a) => a.keyword(),
            Layer::Pool(p) => match p.kind {
                PoolKind::Max => "maxpool",
                PoolKind::Avg => "avgpool",
            },
            Layer::Gap => "gap",
            Layer::Flatten => "flatten",
            Layer::Dropout(_) => "dropout",
        }
    }
}

impl Node {
    /// The keyword of the layer or block, used for generated names.
    pub fn keyword(&self) -> &'static str {
        match self {
            Node::Layer(l) => l.keyword(),
            Node::Residual { .. } => "residual",
            Node::Concat { .. } => "concat",
        }
    }
}

/// Every layer and block keyword, in the order the reference lists them.
pub const KEYWORDS: &[&str] = &[
    "conv", "linear", "bn", "relu", "gelu", "silu", "sigmoid", "tanh", "maxpool", "avgpool", "gap",
    "flatten", "dropout", "residual", "concat",
];
