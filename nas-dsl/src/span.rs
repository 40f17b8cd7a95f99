//! Source positions. A [`Span`] is a plain value (`Send`, `Copy`) with line and
//! column, so syntax trees can cross threads; the compiler's own spans, needed only
//! by the macro, live in a side table ([`SpanMap`]) that the parser fills.

/// A 1-based line and 0-based column (in characters), as proc-macro2 reports them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LineCol {
    /// 1-based line number.
    pub line: u32,
    /// 0-based column, counted in characters.
    pub column: u32,
}

impl LineCol {
    /// A position from proc-macro2's `usize` line and column (saturating; a
    /// source over four billion lines is not expected).
    pub fn new(line: usize, column: usize) -> LineCol {
        LineCol {
            line: u32::try_from(line).unwrap_or(u32::MAX),
            column: u32::try_from(column).unwrap_or(u32::MAX),
        }
    }
}

const SYNTHETIC: u32 = u32::MAX;

/// Where a piece of syntax came from.
///
/// Spans never take part in equality: two syntax trees that differ only in where
/// their tokens were written compare equal, which is what `parse(print(n)) == n`
/// and deduplication need.
#[derive(Clone, Copy, Debug)]
pub struct Span {
    /// First character of the span.
    pub start: LineCol,
    /// One past the last character of the span.
    pub end: LineCol,
    lo: u32,
    hi: u32,
}

impl Default for Span {
    fn default() -> Self {
        Span::synthetic()
    }
}

impl PartialEq for Span {
    fn eq(&self, _: &Span) -> bool {
        true
    }
}

impl Eq for Span {}

impl std::hash::Hash for Span {
    fn hash<H: std::hash::Hasher>(&self, _: &mut H) {}
}

impl Span {
    /// A span for syntax that was built rather than parsed (mutants, generated nodes).
    pub fn synthetic() -> Span {
        Span {
            start: LineCol::default(),
            end: LineCol::default(),
            lo: SYNTHETIC,
            hi: SYNTHETIC,
        }
    }

    /// Whether this span points at real source text.
    pub fn is_synthetic(&self) -> bool {
        self.lo == SYNTHETIC
    }

    /// The span from the start of `self` to the end of `other`.
    pub fn to(self, other: Span) -> Span {
        if self.is_synthetic() {
            return other;
        }
        if other.is_synthetic() {
            return self;
        }
        Span {
            start: self.start,
            end: other.end,
            lo: self.lo,
            hi: other.hi,
        }
    }
}

/// The compiler spans of every token the parser consumed, indexed by [`Span`].
///
/// Only the macro needs it (to point rustc at tokens); the runtime drops it.
#[derive(Default)]
pub struct SpanMap {
    tokens: Vec<proc_macro2::Span>,
}

impl SpanMap {
    /// Records a token's span and returns our value span for it.
    pub(crate) fn record(&mut self, span: proc_macro2::Span) -> Span {
        let id = u32::try_from(self.tokens.len()).unwrap_or(SYNTHETIC - 1);
        self.tokens.push(span);
        let (start, end) = (span.start(), span.end());
        Span {
            start: LineCol::new(start.line, start.column),
            end: LineCol::new(end.line, end.column),
            lo: id,
            hi: id,
        }
    }

    /// The compiler spans of the first and last token of `span`, or the call site
    /// for synthetic spans.
    pub fn resolve(&self, span: Span) -> (proc_macro2::Span, proc_macro2::Span) {
        let get = |i: u32| {
            self.tokens
                .get(i as usize)
                .copied()
                .unwrap_or_else(proc_macro2::Span::call_site)
        };
        (get(span.lo), get(span.hi))
    }
}

/// A value with the span of the syntax that gave it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Spanned<T> {
    /// The value.
    pub value: T,
    /// Where it was written (synthetic for defaults and generated values).
    pub span: Span,
}

impl<T> Spanned<T> {
    /// A value at a span.
    pub fn new(value: T, span: Span) -> Self {
        Spanned { value, span }
    }

    /// A value with no source position.
    pub fn synthetic(value: T) -> Self {
        Spanned {
            value,
            span: Span::synthetic(),
        }
    }
}
