//! Renders diagnostics against source text the way rustc does (`file:line:col`,
//! the source line, carets under the span, notes at related layers), using
//! codespan-reporting rather than hand-written layout.

use crate::error::{Diagnostic, Errors};
use crate::span::{LineCol, Span};
use codespan_reporting::diagnostic::{Diagnostic as CsDiagnostic, Label};
use codespan_reporting::files::SimpleFile;
use codespan_reporting::term::{self, Chars, Config};

/// Byte offset of a line/column position in `src` (columns count characters).
fn offset(src: &str, at: LineCol) -> usize {
    let mut line_start = 0;
    for _ in 1..at.line.max(1) {
        match src[line_start..].find('\n') {
            Some(i) => line_start += i + 1,
            None => return src.len(),
        }
    }
    let line = &src[line_start..];
    let col = line
        .char_indices()
        .nth(at.column as usize)
        .map_or(line.len(), |(i, _)| i);
    line_start + col
}

fn range(src: &str, span: Span) -> std::ops::Range<usize> {
    let start = offset(src, span.start);
    let end = offset(src, span.end).max(start);
    start..end
}

/// Converts one diagnostic to codespan's form.
fn to_codespan(src: &str, d: &Diagnostic) -> CsDiagnostic<()> {
    let mut labels = Vec::new();
    if !d.span.is_synthetic() {
        labels.push(Label::primary((), range(src, d.span)));
    }
    let mut notes = Vec::new();
    for n in &d.notes {
        match n.span {
            Some(s) => labels.push(Label::secondary((), range(src, s)).with_message(&n.message)),
            None => notes.push(n.message.clone()),
        }
    }
    CsDiagnostic::error()
        .with_message(d.kind.to_string())
        .with_labels(labels)
        .with_notes(notes)
}

/// Renders every error against the source it came from, as plain text.
pub fn render(file_name: &str, src: &str, errors: &Errors) -> String {
    let file = SimpleFile::new(file_name, src);
    let config = Config {
        chars: Chars::ascii(),
        ..Config::default()
    };
    let mut out = String::new();
    for d in errors.iter() {
        match term::emit_into_string(&config, &file, &to_codespan(src, d)) {
            Ok(s) => out.push_str(&s),
            Err(_) => {
                out.push_str(&format!("error: {d}\n"));
            }
        }
    }
    out
}
