//! Compile-time lowering: a checked net to a Burn module (`init(device)`,
//! `forward(images) -> logits`). Every `burn::` path the macro emits is in this
//! file. A net that fails the checker becomes its errors plus a stub of the same
//! name, so no cascade of "cannot find type" follows.

use crate::ast::{Activation, Layer, Net, PoolKind};
use crate::check::check;
use crate::error::Diagnostic;
use crate::graph::{CheckedNet, LayerInfo, Lower};
use crate::parse::{derived_owner, parse_tokens};
use crate::print::print;
use crate::span::SpanMap;
use proc_macro2::{Ident, Span, TokenStream, TokenTree};
use quote::{format_ident, quote};

/// Expands the body of a `network! { ... }` invocation.
pub fn expand(input: TokenStream) -> TokenStream {
    let parsed = parse_tokens(input);
    let mut errors: Vec<Diagnostic> = parsed.errors;
    let mut out = TokenStream::new();
    let mut emitted = std::collections::HashSet::new();
    for (net, broken) in parsed.file.nets.iter().zip(&parsed.broken) {
        // A net named after another's derived record type is not emitted at all:
        // its stub would clash as well.
        if derived_owner(&net.name.text, &parsed.file.nets).is_some() {
            continue;
        }
        // A second net of the same name is still checked, but only the first
        // becomes a type: two would bury the `duplicate net name` error under
        // rustc's redefinition and conflicting-impl errors.
        let first = emitted.insert(net.name.text.as_str());
        if *broken {
            if first {
                out.extend(stub(net));
            }
            continue;
        }
        match check(net) {
            Ok(checked) if first => out.extend(module(&checked)),
            Ok(_) => {}
            Err(e) => {
                errors.extend(e.0);
                if first {
                    out.extend(stub(net));
                }
            }
        }
    }
    for e in &errors {
        out.extend(compile_error(&parsed.spans, e));
    }
    out
}

/// One `compile_error!` underlining the diagnostic's tokens, notes appended.
fn compile_error(spans: &SpanMap, d: &Diagnostic) -> TokenStream {
    let (lo, hi) = spans.resolve(d.span);
    let mut message = d.kind.to_string();
    for note in &d.notes {
        message.push_str("\nnote: ");
        message.push_str(&note.message);
        // A proc macro cannot attach a spanned note on stable Rust, so say where
        // the related tokens are instead of leaving "here" pointing nowhere.
        if let Some(at) = note.span.filter(|s| s.start.line > 0) {
            message.push_str(&format!(
                " (line {}, column {})",
                at.start.line,
                at.start.column + 1
            ));
        }
    }
    let range: TokenStream = [
        TokenTree::Ident(Ident::new("start", lo)),
        TokenTree::Ident(Ident::new("end", hi)),
    ]
    .into_iter()
    .collect();
    syn::Error::new_spanned(range, message).to_compile_error()
}

fn rust_ident(text: &str) -> Ident {
    Ident::new(text, Span::call_site())
}

fn input_rank(net: &Net) -> usize {
    if net.input.value.len() == 1 { 2 } else { 4 }
}

fn visibility(net: &Net) -> TokenStream {
    if net.public {
        quote!(pub)
    } else {
        TokenStream::new()
    }
}

fn docs(net: &Net) -> TokenStream {
    let docs = &net.docs;
    quote!(#(#[doc = #docs])*)
}

/// The stand-in for a net that failed: same name, same methods, no layers.
fn stub(net: &Net) -> TokenStream {
    let name = rust_ident(&net.name.text);
    let vis = visibility(net);
    let rank = input_rank(net);
    let message = format!("`{}` failed the network checker", net.name.text);
    quote! {
        #[derive(::burn::module::Module, Debug)]
        #vis struct #name<B: ::burn::tensor::backend::Backend> {
            _stub: ::core::marker::PhantomData<B>,
        }
        impl<B: ::burn::tensor::backend::Backend> #name<B> {
            /// Empty: the net failed the checker.
            pub const SOURCE: &'static str = "";
            /// Builds nothing: the net failed the checker.
            pub fn init(_device: &B::Device) -> Self {
                Self { _stub: ::core::marker::PhantomData }
            }
            /// Never runs: the net failed the checker.
            pub fn forward(&self, _images: ::burn::tensor::Tensor<B, #rank>) -> ::burn::tensor::Tensor<B, 2> {
                ::core::unimplemented!(#message)
            }
        }
    }
}

/// The field type and initialiser of a layer with state, or `None` for a
/// stateless one (activations, `gap`, `flatten`).
fn field(row: &LayerInfo, layer: &Layer) -> Option<(TokenStream, TokenStream)> {
    let usize_ = |v: u64| v as usize;
    Some(match layer {
        Layer::Conv(c) => {
            let (i, o, k) = (
                usize_(c.in_ch.value),
                usize_(c.out_ch.value),
                usize_(c.k.value),
            );
            let (s, p, g, d) = (
                usize_(c.stride.value),
                usize_(c.pad.value),
                usize_(c.groups.value),
                usize_(c.dilation.value),
            );
            let bias = c.bias.value;
            (
                quote!(::burn::nn::conv::Conv2d<B>),
                quote! {
                    ::burn::nn::conv::Conv2dConfig::new([#i, #o], [#k, #k])
                        .with_stride([#s, #s])
                        .with_padding(::burn::nn::PaddingConfig2d::Explicit(#p, #p, #p, #p))
                        .with_groups(#g)
                        .with_dilation([#d, #d])
                        .with_bias(#bias)
                        .init(device)
                },
            )
        }
        Layer::Linear(l) => {
            let (i, o, bias) = (usize_(l.in_f.value), usize_(l.out_f.value), l.bias.value);
            (
                quote!(::burn::nn::Linear<B>),
                quote!(::burn::nn::LinearConfig::new(#i, #o).with_bias(#bias).init(device)),
            )
        }
        Layer::Bn => {
            let c = usize_(row.input_shape().channels());
            (
                quote!(::burn::nn::BatchNorm<B>),
                quote!(::burn::nn::BatchNormConfig::new(#c).init(device)),
            )
        }
        Layer::Pool(p) => {
            let (k, s, pad) = (
                usize_(p.k.value),
                usize_(p.stride.value),
                usize_(p.pad.value),
            );
            let (ty, config) = match p.kind {
                PoolKind::Max => (
                    quote!(::burn::nn::pool::MaxPool2d),
                    quote!(::burn::nn::pool::MaxPool2dConfig),
                ),
                PoolKind::Avg => (
                    quote!(::burn::nn::pool::AvgPool2d),
                    quote!(::burn::nn::pool::AvgPool2dConfig),
                ),
            };
            (
                ty,
                quote! {
                    #config::new([#k, #k])
                        .with_strides([#s, #s])
                        .with_padding(::burn::nn::PaddingConfig2d::Explicit(#pad, #pad, #pad, #pad))
                        .init()
                },
            )
        }
        Layer::Dropout(p) => {
            let p = p.value;
            (
                quote!(::burn::nn::Dropout),
                quote!(::burn::nn::DropoutConfig::new(#p).init()),
            )
        }
        Layer::Act(_) | Layer::Gap | Layer::Flatten => return None,
    })
}

/// Emits `forward`'s body: one `let` per layer, variables numbered.
#[derive(Default)]
struct Forward {
    stmts: Vec<TokenStream>,
    next: usize,
}

impl Forward {
    fn bind(&mut self, expr: TokenStream) -> Ident {
        self.next += 1;
        let var = format_ident!("x{}", self.next);
        self.stmts.push(quote!(let #var = #expr;));
        var
    }
}

impl Lower for Forward {
    type Value = Ident;

    fn layer(&mut self, row: &LayerInfo, layer: &Layer, x: Ident) -> Ident {
        let f = rust_ident(&row.name);
        let expr = match layer {
            Layer::Conv(_) | Layer::Linear(_) | Layer::Bn | Layer::Pool(_) | Layer::Dropout(_) => {
                quote!(self.#f.forward(#x))
            }
            Layer::Act(a) => {
                let func = rust_ident(match a {
                    Activation::Relu => "relu",
                    Activation::Gelu => "gelu",
                    Activation::Silu => "silu",
                    Activation::Sigmoid => "sigmoid",
                    Activation::Tanh => "tanh",
                });
                quote!(::burn::tensor::activation::#func(#x))
            }
            Layer::Gap => quote!(#x.mean_dim(3).mean_dim(2).flatten::<2>(1, 3)),
            Layer::Flatten => quote!(#x.flatten::<2>(1, 3)),
        };
        self.bind(expr)
    }

    fn fork(&mut self, x: &Ident) -> Ident {
        self.bind(quote!(#x.clone()))
    }

    fn add(&mut self, _row: &LayerInfo, body: Ident, shortcut: Ident) -> Ident {
        self.bind(quote!(#body + #shortcut))
    }

    fn concat(&mut self, _row: &LayerInfo, branches: Vec<Ident>) -> Ident {
        self.bind(quote!(::burn::tensor::Tensor::cat(
            ::std::vec![#(#branches),*],
            1
        )))
    }
}

/// The Burn module of a checked net.
pub fn module(net: &CheckedNet) -> TokenStream {
    let ast = net.net();
    let name = rust_ident(&ast.name.text);
    let vis = visibility(ast);
    let docs = docs(ast);
    let source = print(ast);
    let rank = input_rank(ast);
    let input: Vec<usize> = net.input().dims().iter().map(|&d| d as usize).collect();
    let classes = ast.classes.value as usize;
    let params = net.params();
    let flops = net.flops();
    let mut names = Vec::new();
    let mut types = Vec::new();
    let mut inits = Vec::new();
    for row in net.layers() {
        if let crate::graph::Op::Layer(layer) = &row.op
            && let Some((ty, init)) = field(row, layer)
        {
            names.push(rust_ident(&row.name));
            types.push(ty);
            inits.push(init);
        }
    }
    let mut fwd = Forward::default();
    let images = format_ident!("images");
    let out = net.lower(&mut fwd, images.clone());
    let body = fwd.stmts;
    quote! {
        #docs
        #[derive(::burn::module::Module, Debug)]
        #vis struct #name<B: ::burn::tensor::backend::Backend> {
            #(
                #[allow(missing_docs)]
                pub #names: #types,
            )*
            __backend: ::core::marker::PhantomData<B>,
        }

        impl<B: ::burn::tensor::backend::Backend> #name<B> {
            /// The net's canonical source text (the `.nas` form).
            pub const SOURCE: &'static str = #source;
            /// Input shape, batch left out: `[C, H, W]` or `[F]`.
            pub const INPUT: &'static [usize] = &[#(#input),*];
            /// Number of classes.
            pub const CLASSES: usize = #classes;
            /// Learnable parameters as PyTorch counts them.
            pub const PARAMS: u64 = #params;
            /// Multiply-accumulates per sample.
            pub const FLOPS: u64 = #flops;

            /// Builds the module with freshly initialised weights on `device`.
            pub fn init(device: &B::Device) -> Self {
                Self {
                    #( #names: #inits, )*
                    __backend: ::core::marker::PhantomData,
                }
            }

            /// Applies the net: `[batch, C, H, W]` (or `[batch, F]`) to `[batch, classes]` logits.
            pub fn forward(&self, #images: ::burn::tensor::Tensor<B, #rank>) -> ::burn::tensor::Tensor<B, 2> {
                #(#body)*
                #out
            }
        }
    }
}
