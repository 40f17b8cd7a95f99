//! The proposer's prompt, as pure functions of what the search knows: a compact
//! reference card of the language, the parent's width classes, examples with
//! their telemetry, the parent's source and telemetry, the budget, and the
//! instruction to answer with one fenced `nas` block.
//!
//! Two styles: `chat` (system + user messages, for instruction-tuned models) and
//! `completion` (raw few-shot text ending in an open ```` ```nas ```` fence, for
//! base models, which continue the pattern and stop at the closing fence or a
//! blank line). [`repair`] builds the one repair round from a rejection.

use super::{Budget, Context, Rejection, Telemetry};
use nas_dsl::mutate::{Arch, ClassInfo, Generator, Grid, Member, Mutator, Port, ValueSet};
use nas_dsl::summary::thousands;
use serde::Serialize;
use std::fmt::Write;

/// How the model is addressed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum Style {
    /// Chat messages, for instruction-tuned models.
    Chat,
    /// Raw few-shot completion, for base models.
    Completion,
    /// Only a JSON object of widths, one per width class of the parent,
    /// constrained by a JSON schema and applied through the mutator.
    Structured,
}

impl Style {
    /// The name used on the command line and in records.
    pub fn as_str(self) -> &'static str {
        match self {
            Style::Chat => "chat",
            Style::Completion => "completion",
            Style::Structured => "structured",
        }
    }
}

/// Who says a chat message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Instructions.
    System,
    /// The search.
    User,
    /// The model.
    Assistant,
}

impl Role {
    /// The role's name in both protocols.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::System => "system",
            Role::User => "user",
            Role::Assistant => "assistant",
        }
    }
}

/// One chat message.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Message {
    /// Who says it.
    pub role: Role,
    /// What is said.
    pub content: String,
}

impl Message {
    fn new(role: Role, content: impl Into<String>) -> Message {
        Message {
            role,
            content: content.into(),
        }
    }
}

/// A rendered prompt.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "style", rename_all = "snake_case")]
pub enum Prompt {
    /// Chat messages.
    Chat {
        /// The conversation so far.
        messages: Vec<Message>,
    },
    /// Raw text to continue.
    Completion {
        /// The text; it ends inside an open ```` ```nas ```` fence.
        text: String,
    },
}

impl Prompt {
    /// The whole prompt as one text (for snapshots and logs).
    pub fn to_text(&self) -> String {
        match self {
            Prompt::Chat { messages } => {
                let mut out = String::new();
                for m in messages {
                    let _ = writeln!(out, "=== {} ===\n{}", m.role.as_str(), m.content);
                }
                out
            }
            Prompt::Completion { text } => text.clone(),
        }
    }
}

/// Stop sequences for completion-style prompts: the closing fence or a blank line.
pub const COMPLETION_STOP: [&str; 2] = ["```", "\n\n"];

/// One network shown to the model, with what is known about it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Example {
    /// Canonical text, doc comments left out.
    pub source: String,
    /// Learnable parameters.
    pub params: u64,
    /// Multiply-accumulates per sample.
    pub flops: u64,
    /// Training telemetry; `None` for an untrained network.
    pub telemetry: Option<Telemetry>,
}

impl Example {
    /// The example for an architecture.
    pub fn of(arch: &Arch, telemetry: Option<&Telemetry>) -> Example {
        let mut net = arch.net().net().clone();
        net.docs.clear();
        Example {
            source: nas_dsl::print(&net).trim_end().to_string(),
            params: arch.net().params(),
            flops: arch.net().flops(),
            telemetry: telemetry.cloned(),
        }
    }

    /// `accuracy 61.2%, loss 1.103, 5 epochs, 24,458 params, 2,916,480 FLOPs`.
    pub fn telemetry_line(&self) -> String {
        telemetry_text(self.telemetry.as_ref(), self.params, self.flops)
    }
}

/// How prompts and fine-tuning pairs state a network's measurements:
/// `accuracy 61.2%, loss 1.103, 5 epochs, 24,458 params, 2,916,480 FLOPs`
/// (`not trained yet` in place of the training figures when there are none;
/// a network a multi-fidelity search promoted adds its lower rungs:
/// `…, 9 epochs, earlier: 40.1% at 1 epochs, 52.3% at 3 epochs, …`).
pub fn telemetry_text(telemetry: Option<&Telemetry>, params: u64, flops: u64) -> String {
    let mut parts = Vec::new();
    match telemetry {
        Some(t) => {
            if let Some(a) = t.accuracy {
                parts.push(format!("accuracy {:.1}%", a * 100.0));
            }
            if let Some(l) = t.loss {
                parts.push(format!("loss {l:.3}"));
            }
            if let Some(e) = t.epochs {
                parts.push(format!("{e} epochs"));
            }
            if !t.rungs.is_empty() {
                let earlier: Vec<String> = t
                    .rungs
                    .iter()
                    .map(|(e, a)| format!("{:.1}% at {e} epochs", a * 100.0))
                    .collect();
                parts.push(format!("earlier: {}", earlier.join(", ")));
            }
        }
        None => parts.push("not trained yet".to_string()),
    }
    parts.push(format!("{} params", thousands(params)));
    parts.push(format!("{} FLOPs", thousands(flops)));
    parts.join(", ")
}

/// Widths for the parent's width classes (by class id) and what is known of the
/// network they make: the structured mode's examples.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Assignment {
    /// One width per class.
    pub widths: Vec<u64>,
    /// Learnable parameters.
    pub params: u64,
    /// Multiply-accumulates per sample.
    pub flops: u64,
    /// Training telemetry; `None` for an untrained network.
    pub telemetry: Option<Telemetry>,
}

impl Assignment {
    /// The assignment of `arch`, when its width classes are the parent's (the same
    /// members and divisibility: a width mutant of it); `None` otherwise.
    pub fn of(parent: &Arch, arch: &Arch, telemetry: Option<&Telemetry>) -> Option<Assignment> {
        let (a, b) = (parent.classes().classes(), arch.classes().classes());
        let same = a.len() == b.len()
            && a.iter()
                .zip(b)
                .all(|(x, y)| x.members == y.members && x.multiple_of == y.multiple_of);
        same.then(|| Assignment {
            widths: arch.classes().widths(),
            params: arch.net().params(),
            flops: arch.net().flops(),
            telemetry: telemetry.cloned(),
        })
    }
}

/// How many evaluated assignments a structured prompt shows at most.
pub const ASSIGNMENTS: usize = 6;

/// Everything a prompt is made of.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PromptInput {
    /// The task's input shape.
    pub input: Vec<u64>,
    /// The task's number of classes.
    pub classes: u64,
    /// The network to improve.
    pub parent: Example,
    /// The parent's width classes with the widths each may take.
    pub width_classes: Vec<ClassInfo>,
    /// Other networks, with telemetry (at most three).
    pub examples: Vec<Example>,
    /// Width assignments of networks with the parent's classes, best first
    /// (at most [`ASSIGNMENTS`]; untrained mutants of the parent while fewer
    /// than [`EXAMPLES`] are trained): the structured mode's examples.
    pub assignments: Vec<Assignment>,
    /// Every width assignment of the parent's classes the search has already
    /// produced (trained, training or waiting), the parent's own first: an answer
    /// must differ from all of them (the structured mode's schema leaves them out).
    pub tried: Vec<Vec<u64>>,
    /// The limits.
    pub budget: Budget,
    /// The width set in force.
    pub widths: ValueSet,
}

/// How many examples a prompt shows besides the parent.
pub const EXAMPLES: usize = 2;

impl PromptInput {
    /// The prompt input for improving `parent` in `ctx`: examples are the best
    /// trained architectures of the history (the parent excluded); while fewer
    /// than [`EXAMPLES`] are trained, seeded mutants of the parent fill in,
    /// marked untrained, so a base model still sees worked examples.
    pub fn from_context(ctx: &Context, parent: &Arch) -> PromptInput {
        let mut trained: Vec<(&super::Evaluated, f64)> = ctx
            .history()
            .iter()
            .filter(|e| e.arch.hash() != parent.hash())
            .filter_map(|e| Some((e, e.telemetry.as_ref()?.accuracy?)))
            .collect();
        trained.sort_by(|a, b| b.1.total_cmp(&a.1));
        let mut examples: Vec<Example> = trained
            .iter()
            .take(EXAMPLES)
            .map(|(e, _)| Example::of(&e.arch, e.telemetry.as_ref()))
            .collect();
        let mut assignments: Vec<Assignment> = trained
            .iter()
            .filter_map(|(e, _)| Assignment::of(parent, &e.arch, e.telemetry.as_ref()))
            .take(ASSIGNMENTS)
            .collect();
        if examples.len() < EXAMPLES || assignments.len() < EXAMPLES {
            let mutator = Mutator {
                widths: ctx.widths,
                structural: false,
            };
            if let Ok(mut generator) = Generator::new(vec![parent.net().clone()], mutator, 0) {
                while examples.len() < EXAMPLES || assignments.len() < EXAMPLES {
                    let Ok(m) = generator.next_mutant() else {
                        break;
                    };
                    if examples.len() < EXAMPLES {
                        examples.push(Example::of(&m.arch, None));
                    }
                    if assignments.len() < EXAMPLES
                        && let Some(a) = Assignment::of(parent, &m.arch, None)
                    {
                        assignments.push(a);
                    }
                }
            }
        }
        let mut tried = vec![parent.classes().widths()];
        for e in ctx.history() {
            if let Some(a) = Assignment::of(parent, &e.arch, None)
                && !tried.contains(&a.widths)
            {
                tried.push(a.widths);
            }
        }
        let net = parent.net();
        PromptInput {
            input: net.input().dims(),
            classes: net.net().classes.value,
            parent: Example::of(parent, ctx.telemetry_of(parent)),
            width_classes: parent.classes().describe(&ctx.widths),
            examples,
            assignments,
            tried,
            budget: ctx.budget,
            widths: ctx.widths,
        }
    }
}

/// The language reference card (the shape rules included).
pub const REFERENCE: &str = "\
A network is `net Name(input = [C, H, W], classes = N) { statements }`.
Statements end with `;` (blocks end at `}`); `name: layer(...)` names a layer.
Layers (defaults in parentheses):
- conv(I -> O, k = K, stride = 1, pad = 0, groups = 1, dilation = 1, bias = true): [I, H, W] -> [O, H', W'], H' = (H + 2*pad - dilation*(K-1) - 1) / stride + 1
- linear(I -> O, bias = true): [I] -> [O]
- bn, relu, gelu, silu, sigmoid, tanh: shape unchanged
- maxpool(k = K, stride = K, pad = 0), avgpool(k = K, stride = K, pad = 0): [C, H, W] -> [C, H', W']
- gap: [C, H, W] -> [C]; flatten: [C, H, W] -> [C*H*W]
- dropout(p = P) with 0 <= P < 1: shape unchanged
- residual { body } shortcut { body }: body(x) + shortcut(x); the shortcut defaults to identity; both sides must produce the same shape
- concat { branch { ... } branch { ... } }: branches keep H and W; output channels are the sum
Shape rules: widths are written, never inferred. A conv's I must equal the channels that reach it, a linear's I the features that reach it (after gap: the channels; after flatten: C*H*W). groups divides I and O. The network must end in [classes].";

/// The reference card as `//` comment lines, for completion prompts.
const REFERENCE_COMMENTS: &str = "\
// nas: a language for CNNs. `net Name(input = [C, H, W], classes = N) { ... }`, statements end with `;`.
// Layers: conv(I -> O, k = K, stride = S, pad = P, groups = G), linear(I -> O), bn, relu, maxpool(k = K),
// avgpool(k = K), gap, flatten, dropout(p = P), residual { ... } shortcut { ... }, concat { branch { ... } ... }.
// Rules: a conv's I equals the channels reaching it; a linear's I equals the features reaching it;
// a residual body keeps the shape of its input; the network ends in [classes].";

/// Renders the prompt for `input` in `style`.
pub fn render(style: Style, input: &PromptInput) -> Prompt {
    match style {
        Style::Chat => Prompt::Chat {
            messages: vec![
                Message::new(Role::System, system_message()),
                Message::new(Role::User, user_message(input)),
            ],
        },
        Style::Completion => Prompt::Completion {
            text: completion_text(input),
        },
        Style::Structured => Prompt::Completion {
            text: super::structured::render(input),
        },
    }
}

/// The answer a model should give, in `style`, to the prompt for `parent` when
/// the network it should propose is `child`: the fenced network (chat), the
/// network and the closing fence (completion, whose prompt opens the fence), or
/// the JSON object of widths (structured; `None` when `child` is not a width
/// mutant of `parent` with widths `widths` allows, so no accepted answer can
/// name it). Fine-tuning pairs answer with this, under the prompt [`render`]
/// makes.
pub fn answer(style: Style, parent: &Arch, child: &Arch, widths: &ValueSet) -> Option<String> {
    let source = Example::of(child, None).source;
    match style {
        Style::Chat => Some(format!("```nas\n{source}\n```")),
        Style::Completion => Some(format!("{source}\n```")),
        Style::Structured => {
            let a = Assignment::of(parent, child, None)?;
            let classes = parent.classes().describe(widths);
            let allowed = classes
                .iter()
                .zip(&a.widths)
                .all(|(c, w)| *w == c.width || c.allowed.contains(*w));
            if !allowed {
                return None;
            }
            // Same classes is not enough: the widths must rebuild the child.
            let net = parent.classes().apply(parent.net().net(), &a.widths).ok()?;
            (super::identity(&net) == super::identity(child.net().net()))
                .then(|| super::structured::object(&a.widths))
        }
    }
}

fn system_message() -> String {
    format!(
        "You design convolutional networks in the nas language. You are given networks \
with their measured telemetry and write the source of the next network to train.\n\n\
{REFERENCE}\n\n\
Answer with exactly one fenced ```nas block holding one complete net, and nothing else."
    )
}

fn task_line(input: &PromptInput) -> String {
    format!(
        "Task: input {:?}, {} classes (write `input = {:?}, classes = {}`).",
        input.input, input.classes, input.input, input.classes
    )
}

fn budget_line(budget: &Budget) -> String {
    match (budget.max_params, budget.max_flops) {
        (None, None) => "Budget: none.".to_string(),
        (Some(p), None) => format!("Budget: at most {} parameters.", thousands(p)),
        (None, Some(f)) => format!("Budget: at most {} FLOPs per sample.", thousands(f)),
        (Some(p), Some(f)) => format!(
            "Budget: at most {} parameters and {} FLOPs per sample.",
            thousands(p),
            thousands(f)
        ),
    }
}

/// A class member as prompts show it: `conv3.in`, `head.in (x16)`.
pub(crate) fn member_label(m: &Member) -> String {
    let port = match m.port {
        Port::In => "in",
        Port::Out => "out",
        Port::Groups => "groups",
    };
    if m.factor == 1 {
        format!("{}.{port}", m.layer)
    } else {
        format!("{}.{port} (x{})", m.layer, m.factor)
    }
}

/// The widths a class may take, as prompts say it: `fixed`, `8..=64` or
/// `multiples of 8 in 8..=256`.
pub(crate) fn allowed_text(g: &Grid) -> String {
    if g.count == 0 {
        "fixed".to_string()
    } else if g.step == 1 {
        format!("{}..={}", g.min, g.max)
    } else {
        format!("multiples of {} in {}..={}", g.step, g.min, g.max)
    }
}

/// How many tried assignments a prompt lists at most (the latest).
pub const TRIED_SHOWN: usize = 32;

/// The latest [`TRIED_SHOWN`] tried assignments, `[16, 32, 64], [8, 32, 64]`,
/// with how many earlier ones are left out; `None` when there are none.
pub(crate) fn tried_list(tried: &[Vec<u64>]) -> Option<String> {
    if tried.is_empty() {
        return None;
    }
    let shown = &tried[tried.len().saturating_sub(TRIED_SHOWN)..];
    let list: Vec<String> = shown.iter().map(|t| format!("{t:?}")).collect();
    let more = if shown.len() < tried.len() {
        format!(", and {} earlier ones", tried.len() - shown.len())
    } else {
        String::new()
    };
    Some(format!("{}{more}", list.join(", ")))
}

fn class_lines(input: &PromptInput) -> String {
    let mut out = String::new();
    for c in &input.width_classes {
        let members: Vec<String> = c.members.iter().map(member_label).collect();
        let _ = writeln!(
            out,
            "- class {} = {}: {} (allowed {})",
            c.id,
            c.width,
            members.join(", "),
            allowed_text(&c.allowed)
        );
    }
    out
}

fn user_message(input: &PromptInput) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "{}", task_line(input));
    let _ = writeln!(out, "{}", budget_line(&input.budget));
    let _ = writeln!(out);
    if !input.examples.is_empty() {
        let _ = writeln!(out, "Other networks for this task:");
        for (i, e) in input.examples.iter().enumerate() {
            let _ = writeln!(
                out,
                "\nExample {} ({}):\n```nas\n{}\n```",
                i + 1,
                e.telemetry_line(),
                e.source
            );
        }
        let _ = writeln!(out);
    }
    let _ = writeln!(
        out,
        "Parent network ({}):\n```nas\n{}\n```\n",
        input.parent.telemetry_line(),
        input.parent.source
    );
    if !input.width_classes.is_empty() {
        let _ = writeln!(
            out,
            "Width classes of the parent (the widths in one class must stay equal; change a class by rewriting all its members):"
        );
        out.push_str(&class_lines(input));
        if let Some(list) = tried_list(&input.tried) {
            let _ = writeln!(
                out,
                "Widths of these classes already produced, as [class 0, class 1, ...] (none may be repeated): {list}"
            );
        }
        let _ = writeln!(out);
    }
    let _ = write!(
        out,
        "Write a new network for this task that should reach a higher accuracy than the parent within the budget, \
for example by changing the widths of some width classes. It must differ from every network above. \
Answer with exactly one fenced ```nas block."
    );
    out
}

fn completion_text(input: &PromptInput) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "{REFERENCE_COMMENTS}");
    let _ = writeln!(
        out,
        "// {} {}",
        task_line(input),
        budget_line(&input.budget)
    );
    for e in input.examples.iter().chain(std::iter::once(&input.parent)) {
        let _ = writeln!(
            out,
            "\n// {}\n```nas\n{}\n```",
            e.telemetry_line(),
            e.source
        );
    }
    let limit = match (input.budget.max_params, input.budget.max_flops) {
        (None, None) => String::new(),
        _ => format!(
            " ({})",
            budget_line(&input.budget)
                .trim_start_matches("Budget: ")
                .trim_end_matches('.')
        ),
    };
    let _ = write!(
        out,
        "\n// A new network with different channel widths{limit}:\n```nas\n"
    );
    out
}

/// The most characters of a rejected answer or its diagnostics echoed back.
const ECHO_LIMIT: usize = 3000;

fn clip(text: &str) -> &str {
    match text.char_indices().nth(ECHO_LIMIT) {
        Some((i, _)) => &text[..i],
        None => text,
    }
}

/// The one repair round: the first prompt, the model's answer and why it was
/// rejected, and the request to fix it.
pub fn repair(prompt: &Prompt, raw: &str, rejection: &Rejection) -> Prompt {
    let diagnostics = clip(rejection.diagnostics.trim_end());
    match prompt {
        Prompt::Chat { messages } => {
            let mut messages = messages.clone();
            messages.push(Message::new(Role::Assistant, clip(raw)));
            messages.push(Message::new(
                Role::User,
                format!(
                    "That network was rejected ({}):\n```text\n{diagnostics}\n```\n\
Fix it and answer with exactly one fenced ```nas block holding the corrected network.",
                    rejection.outcome
                ),
            ));
            Prompt::Chat { messages }
        }
        Prompt::Completion { text } => {
            // Keep the card and task (the header before the first example), then show
            // the rejected network, its errors as comments, and open the fix.
            let header = text.split("\n\n").next().unwrap_or("");
            let rejected = rejection.source.as_deref().unwrap_or(raw);
            let mut out = String::new();
            let _ = writeln!(out, "{header}");
            let _ = writeln!(
                out,
                "\n// This network was rejected ({}):\n```nas\n{}\n```",
                rejection.outcome,
                clip(rejected.trim_end())
            );
            for line in diagnostics.lines().filter(|l| !l.trim().is_empty()) {
                let _ = writeln!(out, "// {line}");
            }
            let _ = write!(out, "\n// The corrected network:\n```nas\n");
            Prompt::Completion { text: out }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{Telemetry, telemetry_text};

    #[test]
    fn telemetry_lines_say_at_which_epochs_each_accuracy_was_measured() {
        let flat = Telemetry {
            accuracy: Some(0.612),
            loss: Some(1.103),
            epochs: Some(5),
            rungs: Vec::new(),
        };
        assert_eq!(
            telemetry_text(Some(&flat), 24_458, 2_916_480),
            "accuracy 61.2%, loss 1.103, 5 epochs, 24,458 params, 2,916,480 FLOPs"
        );
        let promoted = Telemetry {
            epochs: Some(9),
            rungs: vec![(1, 0.401), (3, 0.523)],
            ..flat
        };
        assert_eq!(
            telemetry_text(Some(&promoted), 24_458, 2_916_480),
            "accuracy 61.2%, loss 1.103, 9 epochs, earlier: 40.1% at 1 epochs, 52.3% at 3 epochs, 24,458 params, 2,916,480 FLOPs"
        );
        assert_eq!(
            telemetry_text(None, 10, 20),
            "not trained yet, 10 params, 20 FLOPs"
        );
    }
}
