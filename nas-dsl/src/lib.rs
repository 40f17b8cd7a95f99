//! The network language: syntax tree, parser, shape checker, checked graph,
//! canonical printer and the macro's code generation.
//!
//! One checker serves the `network!` macro, the command line, the mutator and the
//! LLM loop: text or tokens go through [`parse`], then [`check()`], and every later
//! stage works from the resulting [`CheckedNet`].

pub mod ast;
pub mod check;
pub mod codegen;
pub mod diag;
pub mod error;
pub mod graph;
pub mod memory;
pub mod mutate;
pub mod parse;
pub mod print;
pub mod span;
pub mod summary;

pub use ast::{File, Net};
pub use check::{Shape, check, check_file, check_owned};
pub use error::{Diagnostic, ErrorKind, Errors};
pub use graph::{CheckedNet, LayerInfo, Lower, Op};
pub use parse::{parse_str, parse_tokens};
pub use print::{print, print_file};

/// Parses and checks `.nas` text: the one call the runtime needs. Nets whose
/// syntax is broken are not checked; every other net is, and all errors of all
/// nets come back together.
///
/// It releases the text lexing kept ([`parse::release_text`]), so a process can
/// check text for as long as it runs without growing.
pub fn check_str(src: &str) -> Result<Vec<CheckedNet>, Errors> {
    let tokens = parse::lex(src);
    let parsed = tokens.map(parse_tokens);
    parse::release_text();
    let parsed = parsed?;
    let mut errors = parsed.errors;
    let mut nets = Vec::new();
    for (net, broken) in parsed.file.nets.iter().zip(&parsed.broken) {
        if *broken {
            continue;
        }
        match check(net) {
            Ok(c) => nets.push(c),
            Err(e) => errors.extend(e.0),
        }
    }
    if errors.is_empty() && nets.is_empty() {
        errors.push(Diagnostic::new(ErrorKind::NoNet, span::Span::synthetic()));
    }
    if errors.is_empty() {
        Ok(nets)
    } else {
        errors.sort_by_key(|d| (d.span.start.line, d.span.start.column));
        Err(Errors(errors))
    }
}
