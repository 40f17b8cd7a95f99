//! The `network!` macro: a thin edge over `nas-dsl`. It parses the invocation,
//! checks every net and expands each into a Burn module; every error comes back
//! as a `compile_error!` at the offending tokens.

use proc_macro::TokenStream;

/// Declares one or more networks in the DSL (see the language reference) and
/// expands each into a Burn module with `init(device)` and `forward(images)`.
#[proc_macro]
pub fn network(input: TokenStream) -> TokenStream {
    nas_dsl::codegen::expand(input.into()).into()
}
