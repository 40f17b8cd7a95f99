//! Diagnostics: every error carries a span, a kind holding the values, and notes
//! at related spans. Messages are lowercase, without a trailing period, with
//! identifiers in backticks, stating expected versus found.

use crate::span::Span;
use std::fmt;

/// What went wrong, with the values involved.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum ErrorKind {
    /// A token-level syntax error.
    #[error("{message}")]
    Syntax {
        /// What the parser expected.
        message: String,
    },
    /// An unknown layer keyword.
    #[error("unknown layer `{found}`; expected one of: {}", crate::ast::KEYWORDS.join(", "))]
    UnknownLayer {
        /// The keyword written.
        found: String,
    },
    /// An argument the layer does not take.
    #[error("unknown argument `{arg}` for `{layer}`; expected one of: {}", expected.join(", "))]
    UnknownArgument {
        /// The argument written.
        arg: String,
        /// The layer keyword.
        layer: String,
        /// The arguments the layer takes.
        expected: Vec<&'static str>,
    },
    /// Arguments given to a layer that takes none.
    #[error("`{layer}` takes no arguments")]
    NoArguments {
        /// The layer keyword.
        layer: String,
    },
    /// An argument given twice.
    #[error("argument `{arg}` is given twice")]
    DuplicateArgument {
        /// The argument.
        arg: String,
    },
    /// A required argument is missing.
    #[error("`{layer}` needs `{arg}`")]
    MissingArgument {
        /// The layer keyword.
        layer: String,
        /// What is missing (an argument, or the `I -> O` widths).
        arg: String,
    },
    /// An argument of the wrong type or out of range.
    #[error("`{arg}` must be {expected}, found {found}")]
    BadValue {
        /// The argument.
        arg: String,
        /// What it must be.
        expected: String,
        /// What was written.
        found: String,
    },
    /// A layer that takes no `I -> O` widths was given some, or the reverse.
    #[error("`{layer}` takes no widths; its channels follow from its input")]
    UnexpectedWidths {
        /// The layer keyword.
        layer: String,
    },
    /// The same name used twice in one net.
    #[error("duplicate layer name `{name}`")]
    DuplicateName {
        /// The name.
        name: String,
    },
    /// Two nets with one name in one file.
    #[error("duplicate net name `{name}`")]
    DuplicateNet {
        /// The name.
        name: String,
    },
    /// A net named like a type Burn derives for another net of the file
    /// (`<Net>Record`, `<Net>RecordItem`): lowered to Rust, the two would clash.
    #[error("net name `{name}` is taken by the record type derived for net `{owner}`")]
    DerivedNameClash {
        /// The clashing name.
        name: String,
        /// The net whose derived type has that name.
        owner: String,
    },
    /// A conv's written input width differs from what reaches it.
    #[error("`{layer}` expects {expected} input channels, but `{producer}` produces {found}")]
    InputChannels {
        /// The layer.
        layer: String,
        /// Its written input width.
        expected: u64,
        /// The layer whose output reaches it.
        producer: String,
        /// The width that reaches it.
        found: u64,
    },
    /// A linear's written input width differs from what reaches it.
    #[error(
        "`{layer}` expects {expected} input features, but `{producer}` produces {found}{detail}"
    )]
    InputFeatures {
        /// The layer.
        layer: String,
        /// Its written input width.
        expected: u64,
        /// The layer whose output reaches it.
        producer: String,
        /// The features that reach it.
        found: u64,
        /// ` (256·3·3)` after a flatten, else empty.
        detail: String,
    },
    /// A layer that needs a flat input receives a feature map.
    #[error("`{layer}` needs a flat input but receives {shape}; insert `gap` or `flatten` first")]
    NeedsFlat {
        /// The layer.
        layer: String,
        /// The shape it receives.
        shape: String,
    },
    /// A layer that needs a feature map receives a flat input.
    #[error("`{layer}` needs a feature map [C, H, W] but receives {shape}")]
    NeedsMap {
        /// The layer.
        layer: String,
        /// The shape it receives.
        shape: String,
    },
    /// Convolution or pooling leaves no pixels.
    #[error(
        "`{layer}` shrinks the feature map to {h}x{w} (input {in_h}x{in_w}, k = {k}, pad = {pad})"
    )]
    Collapse {
        /// The layer.
        layer: String,
        /// Resulting height (0 or less shown as 0).
        h: u64,
        /// Resulting width.
        w: u64,
        /// Input height.
        in_h: u64,
        /// Input width.
        in_w: u64,
        /// Kernel size.
        k: u64,
        /// Padding.
        pad: u64,
    },
    /// A pooling window's padding is larger than half the window.
    #[error(
        "`{layer}` pads {pad} on each side, but padding may be at most half the window (k = {k})"
    )]
    PoolPadding {
        /// The layer.
        layer: String,
        /// Padding.
        pad: u64,
        /// Window.
        k: u64,
    },
    /// A residual body changes the shape and has no shortcut.
    #[error(
        "residual body produces {body} but its input is {input}; add a `shortcut` that maps {input} to {body}"
    )]
    ResidualNeedsShortcut {
        /// Body output shape.
        body: String,
        /// Block input shape.
        input: String,
    },
    /// Residual body and shortcut disagree.
    #[error("residual body produces {body} but its shortcut produces {shortcut}")]
    ResidualMismatch {
        /// Body output shape.
        body: String,
        /// Shortcut output shape.
        shortcut: String,
    },
    /// Concat branches with different spatial sizes.
    #[error("concat branches disagree on spatial size: {first} vs {other}")]
    ConcatSpatial {
        /// First branch's shape.
        first: String,
        /// The disagreeing branch's shape.
        other: String,
    },
    /// Concat branches mixing flat and map outputs.
    #[error("concat branches disagree on rank: {first} vs {other}")]
    ConcatRank {
        /// First branch's shape.
        first: String,
        /// The disagreeing branch's shape.
        other: String,
    },
    /// A `concat` with no branches, or a block with an empty body.
    #[error("`{block}` needs at least one {what}")]
    EmptyBlock {
        /// `concat`, `branch`, …
        block: String,
        /// What it needs.
        what: String,
    },
    /// `groups` does not divide both widths.
    #[error("`groups = {groups}` must divide both {in_ch} input and {out_ch} output channels")]
    Groups {
        /// Groups.
        groups: u64,
        /// Input channels.
        in_ch: u64,
        /// Output channels.
        out_ch: u64,
    },
    /// The network's final shape is not `[classes]`.
    #[error("the network ends in {shape} but declares `classes = {classes}`")]
    Classes {
        /// Final shape.
        shape: String,
        /// Declared classes.
        classes: u64,
    },
    /// A malformed `input = [...]`.
    #[error("`input` must be [C, H, W] or [F] with positive sizes, found {found}")]
    BadInput {
        /// What was written.
        found: String,
    },
    /// Shape arithmetic overflowed.
    #[error("shape arithmetic overflows in `{layer}` ({what})")]
    Overflow {
        /// The layer.
        layer: String,
        /// What was being computed.
        what: String,
    },
    /// Blocks nested too deeply.
    #[error("blocks are nested more than {limit} levels deep")]
    TooDeep {
        /// The limit.
        limit: usize,
    },
    /// Source with no net in it.
    #[error(
        "no `net` found; a file holds one or more `net Name(input = [...], classes = N) {{ ... }}` items"
    )]
    NoNet,
}

/// A note attached to a diagnostic, optionally at its own span.
#[derive(Clone, Debug, PartialEq)]
pub struct Note {
    /// Where the note points, if anywhere.
    pub span: Option<Span>,
    /// The text.
    pub message: String,
}

/// One error with its position and notes.
#[derive(Clone, Debug, PartialEq)]
pub struct Diagnostic {
    /// What went wrong.
    pub kind: ErrorKind,
    /// The offending tokens.
    pub span: Span,
    /// Related places and hints.
    pub notes: Vec<Note>,
}

impl Diagnostic {
    /// An error at a span.
    pub fn new(kind: ErrorKind, span: Span) -> Self {
        Diagnostic {
            kind,
            span,
            notes: Vec::new(),
        }
    }

    /// Adds a note pointing at a related span.
    pub fn with_note(mut self, span: Span, message: impl Into<String>) -> Self {
        let span = (!span.is_synthetic()).then_some(span);
        self.notes.push(Note {
            span,
            message: message.into(),
        });
        self
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.kind.fmt(f)
    }
}

/// Every independent error found in one source, in source order.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub struct Errors(pub Vec<Diagnostic>);

impl fmt::Display for Errors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            if d.span.is_synthetic() {
                write!(f, "error: {d}")?;
            } else {
                write!(
                    f,
                    "{}:{}: error: {d}",
                    d.span.start.line,
                    d.span.start.column + 1
                )?;
            }
        }
        Ok(())
    }
}

impl Errors {
    /// The diagnostics.
    pub fn iter(&self) -> std::slice::Iter<'_, Diagnostic> {
        self.0.iter()
    }

    /// How many errors there are.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}
