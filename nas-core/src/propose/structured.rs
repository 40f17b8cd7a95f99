//! The structured mode: the model answers only with a JSON object holding one
//! width per width class of the parent (`{"c0": 32, "c1": 64, …}`), and the
//! server constrains its output to a JSON schema of exactly those keys and the
//! widths each class may take (Ollama's `format`; `json_schema` and
//! `response_format` on OpenAI-compatible servers). The widths are applied to the
//! parent through the mutator's width classes, so every answer that parses is a
//! shape-consistent network by construction; it is still re-checked and judged
//! (task, budget, novelty) like any other proposal.
//!
//! This is for models that cannot write the language reliably (the 270M base
//! model parses as network text rarely): choosing widths is all they must do.

use super::prompt::{
    Assignment, PromptInput, allowed_text, member_label, telemetry_text, tried_list,
};
use super::{Context, Outcome, Rejection, Verdict};
use nas_dsl::mutate::{Arch, ClassInfo};
use nas_dsl::summary::thousands;
use serde_json::{Map, Value, json};
use std::fmt::Write;

/// Grids with at most this many widths are given to the schema as an `enum`;
/// larger ones as `minimum`/`maximum` (checked again on the answer).
const MAX_ENUM: u64 = 128;

/// The key of class `id` in prompts and answers: `c0`, `c1`, …
pub fn key(id: usize) -> String {
    format!("c{id}")
}

/// The widths a class may take: its grid, or only its current width when the
/// value set leaves it none.
fn allowed(c: &ClassInfo) -> Vec<u64> {
    if c.allowed.count == 0 {
        vec![c.width]
    } else {
        (0..c.allowed.count).map(|i| c.allowed.nth(i)).collect()
    }
}

/// Most alternatives the schema may list to leave the tried assignments out;
/// past it the schema only bounds each width (the judge still refuses a repeat).
pub const MAX_BRANCHES: usize = 1024;

/// The JSON schema of an answer: an object with exactly one key per class, each a
/// width the class may take, and, where it can be said in at most
/// [`MAX_BRANCHES`] alternatives, none of the `tried` assignments: the server's
/// constrained decoding then cannot repeat a network the search already has.
pub fn schema(classes: &[ClassInfo], tried: &[Vec<u64>]) -> Value {
    let domains: Vec<Domain> = classes.iter().map(Domain::of).collect();
    let full: Vec<Value> = domains.iter().map(Domain::schema).collect();
    let Some(branches) = untried(&domains, tried) else {
        return object_schema(classes, &full);
    };
    let mut any: Vec<Value> = branches
        .into_iter()
        .map(|branch| {
            let props: Vec<Value> = branch
                .into_iter()
                .zip(&full)
                .map(|(set, full)| set.unwrap_or_else(|| full.clone()))
                .collect();
            object_schema(classes, &props)
        })
        .collect();
    if any.len() == 1 {
        any.remove(0)
    } else {
        json!({"anyOf": any})
    }
}

/// The widths a class may take, as the schema states them.
enum Domain {
    /// A grid of at most [`MAX_ENUM`] widths (an `enum`).
    Values(Vec<u64>),
    /// A larger grid, bounded by `minimum` and `maximum`.
    Range(u64, u64),
}

impl Domain {
    fn of(c: &ClassInfo) -> Domain {
        if c.allowed.count <= MAX_ENUM {
            Domain::Values(allowed(c))
        } else {
            Domain::Range(c.allowed.min, c.allowed.max)
        }
    }

    fn contains(&self, w: u64) -> bool {
        match self {
            Domain::Values(v) => v.contains(&w),
            Domain::Range(lo, hi) => (*lo..=*hi).contains(&w),
        }
    }

    fn schema(&self) -> Value {
        match self {
            Domain::Values(v) => json!({"type": "integer", "enum": v}),
            Domain::Range(lo, hi) => json!({"type": "integer", "minimum": lo, "maximum": hi}),
        }
    }

    /// The schema of this domain without `taken`; `None` when nothing is left.
    fn without(&self, taken: &[u64]) -> Option<Value> {
        match self {
            Domain::Values(v) => {
                let free: Vec<u64> = v.iter().copied().filter(|w| !taken.contains(w)).collect();
                (!free.is_empty()).then(|| json!({"type": "integer", "enum": free}))
            }
            Domain::Range(lo, hi) => {
                let mut cuts: Vec<u64> = taken.to_vec();
                cuts.sort_unstable();
                let mut parts = Vec::new();
                let mut from = *lo;
                for c in cuts {
                    if c > from {
                        parts.push(json!({"type": "integer", "minimum": from, "maximum": c - 1}));
                    }
                    from = c.saturating_add(1);
                }
                if from <= *hi {
                    parts.push(json!({"type": "integer", "minimum": from, "maximum": hi}));
                }
                match parts.len() {
                    0 => None,
                    1 => parts.pop(),
                    _ => Some(json!({"anyOf": parts})),
                }
            }
        }
    }
}

fn object_schema(classes: &[ClassInfo], properties: &[Value]) -> Value {
    let mut map = Map::new();
    for (c, p) in classes.iter().zip(properties) {
        map.insert(key(c.id), p.clone());
    }
    let required: Vec<String> = classes.iter().map(|c| key(c.id)).collect();
    json!({
        "type": "object",
        "properties": map,
        "required": required,
        "additionalProperties": false,
    })
}

/// One alternative: per class, its property schema, or `None` for any width.
type Branch = Vec<Option<Value>>;

/// The assignments not in `tried`, as alternatives. Walks the tried assignments
/// as a prefix tree: at each depth, the widths no tried assignment with this
/// prefix takes open a free branch; each width some do take is followed one
/// class deeper. `None` when it cannot be said (no tried assignment in the
/// domains, more than [`MAX_BRANCHES`] alternatives, or nothing left untried).
fn untried(domains: &[Domain], tried: &[Vec<u64>]) -> Option<Vec<Branch>> {
    let tried: Vec<&Vec<u64>> = tried
        .iter()
        .filter(|t| t.len() == domains.len() && t.iter().zip(domains).all(|(w, d)| d.contains(*w)))
        .collect();
    if tried.is_empty() {
        return None;
    }
    let mut out = Vec::new();
    let mut prefix = Vec::new();
    if !walk(domains, &tried, &mut prefix, &mut out) || out.is_empty() {
        return None;
    }
    Some(out)
}

/// One level of [`untried`]; false once past [`MAX_BRANCHES`].
fn walk(
    domains: &[Domain],
    tried: &[&Vec<u64>],
    prefix: &mut Vec<u64>,
    out: &mut Vec<Branch>,
) -> bool {
    let depth = prefix.len();
    let mut taken: Vec<u64> = Vec::new();
    for t in tried {
        if !taken.contains(&t[depth]) {
            taken.push(t[depth]);
        }
    }
    if let Some(free) = domains[depth].without(&taken) {
        let mut branch: Branch = prefix
            .iter()
            .map(|w| Some(json!({"type": "integer", "enum": [w]})))
            .collect();
        branch.push(Some(free));
        branch.resize(domains.len(), None);
        out.push(branch);
        if out.len() > MAX_BRANCHES {
            return false;
        }
    }
    if depth + 1 == domains.len() {
        return true;
    }
    for w in taken {
        let below: Vec<&Vec<u64>> = tried.iter().copied().filter(|t| t[depth] == w).collect();
        prefix.push(w);
        let ok = walk(domains, &below, prefix, out);
        prefix.pop();
        if !ok {
            return false;
        }
    }
    true
}

/// The answer naming `widths` (`{"c0": 16, "c1": 32}`), as the model writes it.
pub fn object(widths: &[u64]) -> String {
    let mut out = String::from("{");
    for (i, w) in widths.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        let _ = write!(out, "\"{}\": {w}", key(i));
    }
    out.push('}');
    out
}

fn assignment_lines(out: &mut String, a: &Assignment) {
    let _ = writeln!(
        out,
        "// {}\n{}",
        telemetry_text(a.telemetry.as_ref(), a.params, a.flops),
        object(&a.widths)
    );
}

/// The prompt: raw few-shot text for base and instruction-tuned models alike —
/// what each class is, the widths it may take, evaluated assignments with their
/// telemetry, the parent's, and an open line for the new one.
pub fn render(input: &PromptInput) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "// Channel widths of a convolutional network for input {:?} and {} classes.",
        input.input, input.classes
    );
    let _ = writeln!(
        out,
        "// Each key is a width class: the layer widths listed must stay equal ((xN): N times it)."
    );
    for c in &input.width_classes {
        let members: Vec<String> = c.members.iter().map(member_label).collect();
        let allowed = match c.allowed.count {
            0 => format!("fixed at {}", c.width),
            _ => allowed_text(&c.allowed),
        };
        let _ = writeln!(
            out,
            "// {}: {}; allowed: {allowed}",
            key(c.id),
            members.join(", ")
        );
    }
    match (input.budget.max_params, input.budget.max_flops) {
        (None, None) => {}
        (p, f) => {
            let mut limits = Vec::new();
            if let Some(p) = p {
                limits.push(format!("{} parameters", thousands(p)));
            }
            if let Some(f) = f {
                limits.push(format!("{} FLOPs", thousands(f)));
            }
            let _ = writeln!(out, "// Budget: at most {}.", limits.join(" and "));
        }
    }
    let _ = writeln!(out, "\n// Evaluated width assignments:");
    for a in &input.assignments {
        assignment_lines(&mut out, a);
    }
    let parent = Assignment {
        widths: input.width_classes.iter().map(|c| c.width).collect(),
        params: input.parent.params,
        flops: input.parent.flops,
        telemetry: input.parent.telemetry.clone(),
    };
    assignment_lines(&mut out, &parent);
    tried_lines(&mut out, &input.tried);
    let _ = write!(
        out,
        "\n// A new assignment, different from every one above, that should reach a higher accuracy:\n"
    );
    out
}

/// `// Already produced (...): [16, 32, 64], …`.
fn tried_lines(out: &mut String, tried: &[Vec<u64>]) {
    if let Some(list) = tried_list(tried) {
        let _ = writeln!(
            out,
            "// Already produced as [c0, c1, ...], each not to be repeated: {list}."
        );
    }
}

/// The repair round: the first prompt, the rejected answer with its errors as
/// comments, and an open line for the corrected one. A duplicate is told again
/// which assignments are taken.
pub fn repair(first: &str, raw: &str, rejection: &Rejection, tried: &[Vec<u64>]) -> String {
    let mut out = first.to_string();
    let answer = raw.trim();
    let _ = writeln!(
        out,
        "{}\n// Rejected ({}):",
        if answer.is_empty() { "{}" } else { answer },
        rejection.outcome
    );
    for line in rejection
        .diagnostics
        .lines()
        .filter(|l| !l.trim().is_empty())
    {
        let _ = writeln!(out, "// {line}");
    }
    if rejection.outcome == Outcome::Duplicate {
        tried_lines(&mut out, tried);
    }
    out.push_str("\n// A corrected assignment:\n");
    out
}

/// The first `{ … }` of an answer (models and servers may add text around it).
fn json_object(raw: &str) -> Option<&str> {
    let start = raw.find('{')?;
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    for (i, ch) in raw[start..].char_indices() {
        match ch {
            _ if escaped => escaped = false,
            '\\' if in_string => escaped = true,
            '"' => in_string = !in_string,
            '{' if !in_string => depth += 1,
            '}' if !in_string => {
                depth -= 1;
                if depth == 0 {
                    return Some(&raw[start..start + i + 1]);
                }
            }
            _ => {}
        }
    }
    None
}

/// Judges an answer: a JSON object with one allowed width per class of
/// `parent`, applied to it, re-checked, then judged as any proposal is.
pub fn judge(ctx: &Context, parent: &Arch, raw: &str) -> Verdict {
    let reject = |outcome, diagnostics: String| {
        Verdict::Rejected(Rejection {
            outcome,
            source: Some(raw.trim().to_string()),
            diagnostics,
        })
    };
    let Some(text) = json_object(raw) else {
        return reject(
            Outcome::ParseError,
            "error: the answer holds no complete JSON object".to_string(),
        );
    };
    let object = match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(map)) => map,
        Ok(_) => {
            return reject(
                Outcome::ParseError,
                "error: the answer is not a JSON object".into(),
            );
        }
        Err(e) => {
            return reject(
                Outcome::ParseError,
                format!("error: the answer is not valid JSON: {e}"),
            );
        }
    };
    let classes = parent.classes();
    let info = classes.describe(&ctx.widths);
    let mut malformed = Vec::new();
    let mut disallowed = Vec::new();
    let mut widths = Vec::with_capacity(info.len());
    for c in &info {
        let k = key(c.id);
        match object.get(&k).map(|v| (v, v.as_u64())) {
            None => malformed.push(format!("error: `{k}` is missing")),
            Some((v, None)) => {
                malformed.push(format!("error: `{k}` must be a whole number, found {v}"))
            }
            Some((_, Some(w))) if w == c.width || c.allowed.contains(w) => widths.push(w),
            Some((_, Some(w))) => disallowed.push(format!(
                "error: `{k}` = {w} is not allowed: {}",
                allowed_text(&c.allowed)
            )),
        }
    }
    for k in object.keys() {
        if !info.iter().any(|c| key(c.id) == *k) {
            malformed.push(format!(
                "error: unknown key `{k}`; the keys are c0..c{}",
                info.len().saturating_sub(1)
            ));
        }
    }
    if !malformed.is_empty() {
        malformed.extend(disallowed);
        return reject(Outcome::ParseError, malformed.join("\n"));
    }
    if !disallowed.is_empty() {
        return reject(Outcome::ShapeError, disallowed.join("\n"));
    }
    ctx.judge_widths(parent, &widths)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_object_is_found_around_text() {
        assert_eq!(
            json_object("x {\"a\": {\"b\": 1}} y {}"),
            Some("{\"a\": {\"b\": 1}}")
        );
        assert_eq!(json_object("{\"a\": \"}\"}"), Some("{\"a\": \"}\"}"));
        assert_eq!(json_object("{\"a\": 1"), None);
        assert_eq!(json_object("no json"), None);
    }
}
