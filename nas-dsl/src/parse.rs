//! The parser: token streams (from the macro or from `.nas` text) to the syntax
//! tree. Token-level mistakes inside a statement are recovered at the next `;`,
//! and argument mistakes are collected, so one pass reports every independent error.

use crate::ast::*;
use crate::error::{Diagnostic, ErrorKind, Errors};
use crate::span::{Span, SpanMap, Spanned};
use proc_macro2::{Delimiter, TokenStream, TokenTree};
use std::cell::RefCell;
use syn::parse::discouraged::Speculative;
use syn::parse::{ParseStream, Parser as _};
use syn::{Token, braced, bracketed, parenthesized};

/// Blocks may nest this deep; deeper input is rejected rather than risking the stack.
pub const MAX_DEPTH: usize = 32;

/// The result of parsing: the tree (as far as it could be read), the compiler spans
/// of its tokens, and every error found.
pub struct Parsed {
    /// The nets that could be read. A net with argument errors is still here.
    pub file: File,
    /// Compiler spans, for the macro.
    pub spans: SpanMap,
    /// Every parse error, in source order.
    pub errors: Vec<Diagnostic>,
    /// For each net of `file`, whether parse errors were found inside it.
    pub broken: Vec<bool>,
}

/// Parses a token stream (a `network!` body or lexed `.nas` text).
pub fn parse_tokens(tokens: TokenStream) -> Parsed {
    let cx = Cx::default();
    let result = (|input: ParseStream| cx.file(input)).parse2(tokens);
    let nets = match result {
        Ok(nets) => nets,
        Err(e) => {
            cx.syn_error(e);
            Vec::new()
        }
    };
    let mut errors = cx.errors.into_inner();
    errors.sort_by_key(|d| (d.span.start.line, d.span.start.column));
    Parsed {
        file: File { nets },
        spans: cx.spans.into_inner(),
        errors,
        broken: cx.broken.into_inner(),
    }
}

/// Lexes and parses `.nas` text. Line and column numbers in errors refer to `src`.
///
/// Like [`check_str`](crate::check_str), it releases the text lexing kept (see
/// [`release_text`]): proc-macro2 spans from earlier [`lex`] calls on this
/// thread are invalid afterwards.
pub fn parse_str(src: &str) -> Result<File, Errors> {
    let tokens = lex(src);
    let parsed = tokens.map(parse_tokens);
    release_text();
    let parsed = parsed?;
    if !parsed.errors.is_empty() {
        return Err(Errors(parsed.errors));
    }
    if parsed.file.nets.is_empty() {
        return Err(Errors(vec![Diagnostic::new(
            ErrorKind::NoNet,
            Span::synthetic(),
        )]));
    }
    Ok(parsed.file)
}

/// Frees what lexing text left behind on this thread. proc-macro2's lexer keeps a
/// copy of every text it lexed, and its positions, in a per-thread table that
/// only grows: a search parsing LLM answers for days (or a fuzzer, within
/// minutes) would grow without bound and, past 4 GiB of text, overflow its
/// 32-bit positions. Our own spans are plain values and stay valid; proc-macro2
/// spans from earlier [`lex`] calls on this thread do not. Never called inside a
/// procedural macro (the `network!` path goes through [`parse_tokens`] only).
pub fn release_text() {
    proc_macro2::extra::invalidate_current_thread_spans();
}

/// Lexes `.nas` text into tokens with line and column positions.
pub fn lex(src: &str) -> Result<TokenStream, Errors> {
    src.parse().map_err(|e: proc_macro2::LexError| {
        let mut map = SpanMap::default();
        let span = map.record(e.span());
        let message = lex_message(&e.to_string());
        Errors(vec![Diagnostic::new(ErrorKind::Syntax { message }, span)])
    })
}

/// proc-macro2's lexer messages carry a position suffix we report separately.
fn lex_message(raw: &str) -> String {
    let text = raw.split(" at line").next().unwrap_or(raw).trim();
    if text.is_empty() || text == "cannot parse string into token stream" {
        "cannot read this text as tokens (unbalanced brackets, or an unterminated literal)"
            .to_string()
    } else {
        lowercase_first(text)
    }
}

fn lowercase_first(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_lowercase().chain(c).collect(),
        None => String::new(),
    }
}

/// A written argument value.
#[derive(Clone, Debug)]
enum Value {
    Int(u64),
    Float(f64),
    Bool(bool),
    List(Vec<u64>),
}

impl Value {
    fn describe(&self) -> String {
        match self {
            Value::Int(v) => v.to_string(),
            Value::Float(v) => format!("{v:?}"),
            Value::Bool(v) => v.to_string(),
            Value::List(v) => format!("{v:?}"),
        }
    }
}

struct Arg {
    name: Ident,
    value: Value,
    span: Span,
}

struct Args {
    widths: Option<(Spanned<u64>, Spanned<u64>)>,
    named: Vec<Arg>,
}

#[derive(Default)]
struct Cx {
    spans: RefCell<SpanMap>,
    errors: RefCell<Vec<Diagnostic>>,
    broken: RefCell<Vec<bool>>,
    depth: std::cell::Cell<usize>,
}

impl Cx {
    fn sp(&self, span: proc_macro2::Span) -> Span {
        self.spans.borrow_mut().record(span)
    }

    fn error(&self, d: Diagnostic) {
        self.errors.borrow_mut().push(d);
    }

    fn syn_error(&self, e: syn::Error) {
        for e in e {
            let span = self.sp(e.span());
            self.error(Diagnostic::new(
                ErrorKind::Syntax {
                    message: lowercase_first(&e.to_string()),
                },
                span,
            ));
        }
    }

    fn ident(&self, input: ParseStream) -> syn::Result<Ident> {
        let id: syn::Ident = input.parse()?;
        Ok(Ident {
            text: id.to_string(),
            span: self.sp(id.span()),
        })
    }

    fn file(&self, input: ParseStream) -> syn::Result<Vec<Net>> {
        let mut nets: Vec<Net> = Vec::new();
        while !input.is_empty() {
            let before = self.errors.borrow().len();
            let net = match self.net(input) {
                Ok(net) => net,
                Err(e) => {
                    // A broken header leaves nothing to resynchronise on.
                    self.syn_error(e);
                    input.parse::<TokenStream>()?;
                    break;
                }
            };
            let broken = self.errors.borrow().len() > before;
            self.broken.borrow_mut().push(broken);
            if let Some(first) = nets.iter().find(|n| n.name.text == net.name.text) {
                self.error(
                    Diagnostic::new(
                        ErrorKind::DuplicateNet {
                            name: net.name.text.clone(),
                        },
                        net.name.span,
                    )
                    .with_note(first.name.span, "first defined here"),
                );
            }
            nets.push(net);
        }
        for net in &nets {
            if let Some(owner) = derived_owner(&net.name.text, &nets) {
                self.error(
                    Diagnostic::new(
                        ErrorKind::DerivedNameClash {
                            name: net.name.text.clone(),
                            owner: owner.name.text.clone(),
                        },
                        net.name.span,
                    )
                    .with_note(owner.name.span, "that net is defined here"),
                );
            }
        }
        Ok(nets)
    }

    fn docs(&self, input: ParseStream) -> syn::Result<Vec<String>> {
        let mut docs = Vec::new();
        for attr in input.call(syn::Attribute::parse_outer)? {
            let doc = match &attr.meta {
                syn::Meta::NameValue(nv) if nv.path.is_ident("doc") => match &nv.value {
                    syn::Expr::Lit(syn::ExprLit {
                        lit: syn::Lit::Str(s),
                        ..
                    }) => Some(s.value()),
                    _ => None,
                },
                _ => None,
            };
            match doc {
                Some(d) => docs.push(d),
                None => {
                    return Err(syn::Error::new_spanned(
                        attr,
                        "only `///` doc comments may stand before a net",
                    ));
                }
            }
        }
        Ok(docs)
    }

    fn net(&self, input: ParseStream) -> syn::Result<Net> {
        let docs = self.docs(input)?;
        let start = input.span();
        let public = if input.peek(Token![pub]) {
            input.parse::<Token![pub]>()?;
            true
        } else {
            false
        };
        let kw: syn::Ident = input.parse().map_err(|e| {
            syn::Error::new(
                e.span(),
                "expected `net Name(input = [...], classes = N) { ... }`",
            )
        })?;
        if kw != "net" {
            return Err(syn::Error::new(
                kw.span(),
                format!("expected `net`, found `{kw}`"),
            ));
        }
        let start = self.sp(start);
        let name = self.ident(input)?;
        let header;
        let paren = parenthesized!(header in input);
        let header_span = self.sp(paren.span.join());
        let mut input_shape = None;
        let mut classes = None;
        for arg in self.named_args(&header)? {
            match arg.name.text.as_str() {
                "input" => {
                    let dims = match &arg.value {
                        Value::List(v)
                            if (v.len() == 3 || v.len() == 1) && v.iter().all(|&d| d > 0) =>
                        {
                            Some(v.clone())
                        }
                        _ => None,
                    };
                    match dims {
                        Some(d) => input_shape = Some(Spanned::new(d, arg.span)),
                        None => self.error(Diagnostic::new(
                            ErrorKind::BadInput {
                                found: arg.value.describe(),
                            },
                            arg.span,
                        )),
                    }
                }
                "classes" => match arg.value {
                    Value::Int(n) if n > 0 => classes = Some(Spanned::new(n, arg.span)),
                    _ => self.bad_value(&arg, "a positive integer"),
                },
                _ => self.error(Diagnostic::new(
                    ErrorKind::UnknownArgument {
                        arg: arg.name.text.clone(),
                        layer: "net".into(),
                        expected: vec!["input", "classes"],
                    },
                    arg.name.span,
                )),
            }
        }
        let body;
        let brace = braced!(body in input);
        let end = self.sp(brace.span.close());
        let body = self.block(&body)?;
        let missing = |arg: &str| {
            Diagnostic::new(
                ErrorKind::MissingArgument {
                    layer: "net".into(),
                    arg: arg.into(),
                },
                header_span,
            )
        };
        let input_shape = input_shape.unwrap_or_else(|| {
            if !self.has_error_in(header_span) {
                self.error(missing("input"));
            }
            Spanned::new(vec![], header_span)
        });
        let classes = classes.unwrap_or_else(|| {
            if !self.has_error_in(header_span) {
                self.error(missing("classes"));
            }
            Spanned::new(0, header_span)
        });
        Ok(Net {
            docs,
            public,
            name,
            input: input_shape,
            classes,
            body,
            span: start.to(end),
        })
    }

    fn has_error_in(&self, span: Span) -> bool {
        self.errors
            .borrow()
            .iter()
            .any(|d| d.span.start >= span.start && d.span.end <= span.end)
    }

    fn block(&self, input: ParseStream) -> syn::Result<Block> {
        let depth = self.depth.get() + 1;
        if depth > MAX_DEPTH {
            let span = self.sp(input.span());
            self.error(Diagnostic::new(
                ErrorKind::TooDeep { limit: MAX_DEPTH },
                span,
            ));
            input.parse::<TokenStream>()?;
            return Ok(Vec::new());
        }
        self.depth.set(depth);
        let mut stmts = Vec::new();
        while !input.is_empty() {
            let fork = input.fork();
            match self.stmt(&fork) {
                Ok(Some(s)) => {
                    input.advance_to(&fork);
                    stmts.push(s);
                }
                Ok(None) => input.advance_to(&fork),
                Err(e) => {
                    self.syn_error(e);
                    skip_statement(input)?;
                }
            }
        }
        self.depth.set(depth - 1);
        Ok(stmts)
    }

    fn stmt(&self, input: ParseStream) -> syn::Result<Option<Stmt>> {
        let start = input.span();
        let name = if input.peek(syn::Ident) && input.peek2(Token![:]) && !input.peek2(Token![::]) {
            let id: syn::Ident = input.fork().parse()?;
            if id.to_string().starts_with("__") {
                // The generated module's own fields use such names.
                return Err(syn::Error::new(
                    id.span(),
                    format!("layer names starting with `__` are reserved: rename `{id}`"),
                ));
            }
            let name = self.ident(input)?;
            input.parse::<Token![:]>()?;
            Some(name)
        } else {
            None
        };
        let kw: syn::Ident = input
            .parse()
            .map_err(|e| syn::Error::new(e.span(), "expected a layer, `residual` or `concat`"))?;
        let keyword = self.sp(kw.span());
        let start = if name.is_some() {
            self.sp(start)
        } else {
            keyword
        };
        let text = kw.to_string();
        let mut end: Span;
        let node = match text.as_str() {
            "residual" => {
                let body;
                let brace = braced!(body in input);
                end = self.sp(brace.span.close());
                let body = self.block(&body)?;
                let shortcut = if input.peek(syn::Ident)
                    && input.fork().parse::<syn::Ident>()? == "shortcut"
                {
                    input.parse::<syn::Ident>()?;
                    let sc;
                    let brace = braced!(sc in input);
                    end = self.sp(brace.span.close());
                    Some(self.block(&sc)?)
                } else {
                    None
                };
                Some(Node::Residual { body, shortcut })
            }
            "concat" => {
                let content;
                let brace = braced!(content in input);
                end = self.sp(brace.span.close());
                let mut branches = Vec::new();
                while !content.is_empty() {
                    let b: syn::Ident = content.parse()?;
                    if b != "branch" {
                        return Err(syn::Error::new(
                            b.span(),
                            format!("expected `branch {{ ... }}` inside `concat`, found `{b}`"),
                        ));
                    }
                    let inner;
                    braced!(inner in content);
                    branches.push(self.block(&inner)?);
                }
                Some(Node::Concat { branches })
            }
            _ => {
                let (args, last) = if input.peek(syn::token::Paren) {
                    let content;
                    let paren = parenthesized!(content in input);
                    (Some(self.layer_args(&content)?), paren.span.close())
                } else {
                    (None, kw.span())
                };
                // A missing `;` is reported where it belongs (after the layer), not
                // at whatever token follows.
                let semi = input
                    .parse::<Token![;]>()
                    .map_err(|_| syn::Error::new(last, format!("expected `;` after `{text}`")))?;
                end = self.sp(semi.span);
                self.layer(&text, keyword, args).map(Node::Layer)
            }
        };
        Ok(node.map(|node| Stmt {
            name,
            node,
            keyword,
            span: start.to(end),
        }))
    }

    fn int(&self, input: ParseStream) -> syn::Result<Spanned<u64>> {
        let lit: syn::LitInt = input.parse()?;
        let span = self.sp(lit.span());
        Ok(Spanned::new(parse_u64(&lit)?, span))
    }

    fn value(&self, input: ParseStream) -> syn::Result<(Value, Span)> {
        if input.peek(syn::LitInt) {
            let v = self.int(input)?;
            Ok((Value::Int(v.value), v.span))
        } else if input.peek(syn::LitFloat) {
            let lit: syn::LitFloat = input.parse()?;
            Ok((
                Value::Float(lit.base10_parse::<f64>()?),
                self.sp(lit.span()),
            ))
        } else if input.peek(syn::LitBool) {
            let lit = input.parse::<syn::LitBool>()?;
            Ok((Value::Bool(lit.value), self.sp(lit.span)))
        } else if input.peek(syn::token::Bracket) {
            let content;
            let bracket = bracketed!(content in input);
            let items =
                content.parse_terminated(<syn::LitInt as syn::parse::Parse>::parse, Token![,])?;
            let mut v = Vec::new();
            for lit in items {
                v.push(parse_u64(&lit)?);
            }
            Ok((Value::List(v), self.sp(bracket.span.join())))
        } else if input.peek(Token![-]) {
            Err(input.error("negative values are not allowed here"))
        } else {
            Err(input.error("expected a value: an integer, a number, `true`, `false` or `[...]`"))
        }
    }

    fn named_args(&self, input: ParseStream) -> syn::Result<Vec<Arg>> {
        let mut args: Vec<Arg> = Vec::new();
        while !input.is_empty() {
            let name = self.ident(input)?;
            input.parse::<Token![=]>()?;
            let (value, value_span) = self.value(input)?;
            let span = name.span.to(value_span);
            if args.iter().any(|a| a.name.text == name.text) {
                self.error(Diagnostic::new(
                    ErrorKind::DuplicateArgument {
                        arg: name.text.clone(),
                    },
                    span,
                ));
            } else {
                args.push(Arg { name, value, span });
            }
            if input.is_empty() {
                break;
            }
            input.parse::<Token![,]>()?;
        }
        Ok(args)
    }

    fn layer_args(&self, input: ParseStream) -> syn::Result<Args> {
        let widths = if input.peek(syn::LitInt) {
            let i = self.int(input)?;
            input.parse::<Token![->]>()?;
            let o = self.int(input)?;
            if !input.is_empty() {
                input.parse::<Token![,]>()?;
            }
            Some((i, o))
        } else {
            None
        };
        Ok(Args {
            widths,
            named: self.named_args(input)?,
        })
    }

    fn bad_value(&self, arg: &Arg, expected: &str) {
        self.error(Diagnostic::new(
            ErrorKind::BadValue {
                arg: arg.name.text.clone(),
                expected: expected.into(),
                found: arg.value.describe(),
            },
            arg.span,
        ));
    }

    /// Builds a typed layer from its keyword and arguments, recording every
    /// argument error; `None` when the layer cannot be built at all.
    fn layer(&self, kw: &str, at: Span, args: Option<Args>) -> Option<Layer> {
        let (widths, named) = match args {
            Some(a) => (a.widths, a.named),
            None => (None, Vec::new()),
        };
        let allowed: &[&'static str] = match kw {
            "conv" => &["k", "stride", "pad", "groups", "dilation", "bias"],
            "linear" => &["bias"],
            "maxpool" | "avgpool" => &["k", "stride", "pad"],
            "dropout" => &["p"],
            "bn" | "gap" | "flatten" | "relu" | "gelu" | "silu" | "sigmoid" | "tanh" => &[],
            _ => {
                self.error(Diagnostic::new(
                    ErrorKind::UnknownLayer { found: kw.into() },
                    at,
                ));
                return None;
            }
        };
        let mut ok = true;
        let mut known = Vec::new();
        for arg in named {
            if allowed.contains(&arg.name.text.as_str()) {
                known.push(arg);
            } else {
                ok = false;
                let kind = if allowed.is_empty() {
                    ErrorKind::NoArguments { layer: kw.into() }
                } else {
                    ErrorKind::UnknownArgument {
                        arg: arg.name.text.clone(),
                        layer: kw.into(),
                        expected: allowed.to_vec(),
                    }
                };
                self.error(Diagnostic::new(kind, arg.name.span));
            }
        }
        // A misspelt argument already explains a missing one: report only the first.
        let misspelt = !ok;
        let takes_widths = matches!(kw, "conv" | "linear");
        let widths = match (takes_widths, widths) {
            (true, Some((i, o))) => {
                for w in [i, o] {
                    if w.value == 0 {
                        ok = false;
                        self.error(Diagnostic::new(
                            ErrorKind::BadValue {
                                arg: "width".into(),
                                expected: "a positive integer".into(),
                                found: "0".into(),
                            },
                            w.span,
                        ));
                    }
                }
                Some((i, o))
            }
            (true, None) => {
                ok = false;
                self.error(Diagnostic::new(
                    ErrorKind::MissingArgument {
                        layer: kw.into(),
                        arg: "I -> O".into(),
                    },
                    at,
                ));
                None
            }
            (false, Some((i, o))) => {
                ok = false;
                self.error(Diagnostic::new(
                    ErrorKind::UnexpectedWidths { layer: kw.into() },
                    i.span.to(o.span),
                ));
                None
            }
            (false, None) => None,
        };
        let mut get = |name: &str, min: u64, default: Option<u64>| -> Spanned<u64> {
            match known.iter().find(|a| a.name.text == name) {
                Some(a) => match a.value {
                    Value::Int(v) if v >= min => Spanned::new(v, a.span),
                    _ => {
                        ok = false;
                        let what = if min == 0 {
                            "a non-negative integer"
                        } else {
                            "a positive integer"
                        };
                        self.bad_value(a, what);
                        Spanned::new(min.max(1), a.span)
                    }
                },
                None => {
                    if default.is_none() {
                        ok = false;
                    }
                    if default.is_none() && !misspelt {
                        self.error(Diagnostic::new(
                            ErrorKind::MissingArgument {
                                layer: kw.into(),
                                arg: name.into(),
                            },
                            at,
                        ));
                    }
                    Spanned::new(default.unwrap_or(1), Span::synthetic())
                }
            }
        };
        let layer = match kw {
            "conv" => {
                let k = get("k", 1, None);
                let stride = get("stride", 1, Some(1));
                let pad = get("pad", 0, Some(0));
                let groups = get("groups", 1, Some(1));
                let dilation = get("dilation", 1, Some(1));
                let bias = self.bool_arg(&known, "bias", &mut ok);
                let (in_ch, out_ch) = widths?;
                Layer::Conv(Conv {
                    in_ch,
                    out_ch,
                    k,
                    stride,
                    pad,
                    groups,
                    dilation,
                    bias,
                })
            }
            "linear" => {
                let bias = self.bool_arg(&known, "bias", &mut ok);
                let (in_f, out_f) = widths?;
                Layer::Linear(Linear { in_f, out_f, bias })
            }
            "maxpool" | "avgpool" => {
                let k = get("k", 1, None);
                let stride = get("stride", 1, Some(k.value));
                let pad = get("pad", 0, Some(0));
                let kind = if kw == "maxpool" {
                    PoolKind::Max
                } else {
                    PoolKind::Avg
                };
                Layer::Pool(Pool {
                    kind,
                    k,
                    stride,
                    pad,
                })
            }
            "dropout" => match known.iter().find(|a| a.name.text == "p") {
                Some(a) => {
                    let p = match a.value {
                        Value::Float(p) => Some(p),
                        Value::Int(0) => Some(0.0),
                        _ => None,
                    };
                    match p {
                        Some(p) if (0.0..1.0).contains(&p) => {
                            Layer::Dropout(Spanned::new(p, a.span))
                        }
                        _ => {
                            self.bad_value(a, "a number with 0 ≤ p < 1");
                            return None;
                        }
                    }
                }
                None => {
                    self.error(Diagnostic::new(
                        ErrorKind::MissingArgument {
                            layer: kw.into(),
                            arg: "p".into(),
                        },
                        at,
                    ));
                    return None;
                }
            },
            "bn" => Layer::Bn,
            "gap" => Layer::Gap,
            "flatten" => Layer::Flatten,
            act => Layer::Act(Activation::ALL.into_iter().find(|a| a.keyword() == act)?),
        };
        ok.then_some(layer)
    }

    fn bool_arg(&self, known: &[Arg], name: &str, ok: &mut bool) -> Spanned<bool> {
        match known.iter().find(|a| a.name.text == name) {
            Some(a) => match a.value {
                Value::Bool(b) => Spanned::new(b, a.span),
                _ => {
                    *ok = false;
                    self.bad_value(a, "`true` or `false`");
                    Spanned::new(true, a.span)
                }
            },
            None => Spanned::synthetic(true),
        }
    }
}

/// Reads an integer literal as `u64`, rejecting signs, suffixes and overflow.
fn parse_u64(lit: &syn::LitInt) -> syn::Result<u64> {
    if lit.base10_digits().starts_with('-') {
        return Err(syn::Error::new(
            lit.span(),
            "negative values are not allowed here",
        ));
    }
    if !lit.suffix().is_empty() {
        return Err(syn::Error::new(
            lit.span(),
            format!("unexpected suffix `{}` on an integer", lit.suffix()),
        ));
    }
    lit.base10_parse::<u64>().map_err(|_| {
        syn::Error::new(
            lit.span(),
            format!("integer too large (at most {})", u64::MAX),
        )
    })
}

/// The net of `nets` whose Burn-derived record type (`<Net>Record` or
/// `<Net>RecordItem`) would be named `name`, if any.
pub(crate) fn derived_owner<'a>(name: &str, nets: &'a [Net]) -> Option<&'a Net> {
    nets.iter().find(|owner| {
        name.strip_prefix(owner.name.text.as_str())
            .is_some_and(|rest| rest == "Record" || rest == "RecordItem")
    })
}

/// Skips the rest of a broken statement: up to and including the next `;`, or a
/// braced block (with its `shortcut { ... }`), so the next statement parses afresh.
fn skip_statement(input: ParseStream) -> syn::Result<()> {
    while !input.is_empty() {
        let tt: TokenTree = input.parse()?;
        match tt {
            TokenTree::Punct(p) if p.as_char() == ';' => return Ok(()),
            TokenTree::Group(g) if g.delimiter() == Delimiter::Brace => {
                let next_is_shortcut = input
                    .fork()
                    .parse::<syn::Ident>()
                    .is_ok_and(|i| i == "shortcut");
                if !next_is_shortcut {
                    return Ok(());
                }
            }
            _ => {}
        }
    }
    Ok(())
}
