//! The structured mode without a server: the JSON schema of an answer, the prompt
//! (snapshotted), judging recorded answers (valid, garbage, truncated, missing or
//! unknown keys, widths off the grid, the parent again, over budget) and the
//! repair prompt.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test helpers: a failure is a test failure"
)]

use nas_core::propose::prompt::{self, Prompt, PromptInput};
use nas_core::propose::structured;
use nas_core::propose::{Budget, Context, Outcome, Style, Telemetry, Verdict};
use nas_dsl::mutate::{Generator, Mutator, ValueSet};
use serde_json::Value;

fn seed(rel: &str) -> nas_dsl::CheckedNet {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(rel);
    let text = std::fs::read_to_string(path).unwrap();
    nas_dsl::check_str(&text).unwrap().remove(0)
}

/// TinyResNet on multiples of 8 up to 256, with two trained width mutants.
fn context(budget: Budget) -> Context {
    let net = seed("../nas-dsl/tests/data/tiny_resnet.nas");
    let widths: ValueSet = "step:8..=256".parse().unwrap();
    let mut ctx = Context::new(net.clone(), budget, widths);
    let mutator = Mutator {
        widths,
        structural: false,
    };
    let mut generator = Generator::new(vec![net], mutator, 3).unwrap();
    for accuracy in [0.412, 0.447] {
        let m = generator.next_mutant().unwrap();
        ctx.record(
            m.arch,
            Some(Telemetry {
                rungs: Vec::new(),
                accuracy: Some(accuracy),
                loss: Some(2.0),
                epochs: Some(5),
            }),
        );
    }
    ctx
}

fn answer(widths: &[u64]) -> String {
    let fields: Vec<String> = widths
        .iter()
        .enumerate()
        .map(|(i, w)| format!("\"c{i}\": {w}"))
        .collect();
    format!("{{{}}}", fields.join(", "))
}

fn rejected(v: Verdict) -> (Outcome, String) {
    match v {
        Verdict::Rejected(r) => (r.outcome, r.diagnostics),
        Verdict::Accepted { source, .. } => panic!("accepted:\n{source}"),
    }
}

#[test]
fn the_schema_has_one_required_key_per_class_with_its_allowed_widths() {
    let ctx = context(Budget::default());
    let classes = ctx.best().classes().describe(&ctx.widths);
    let schema = structured::schema(&classes, &[]);
    let keys: Vec<String> = (0..classes.len()).map(|i| format!("c{i}")).collect();
    assert_eq!(schema["type"], "object");
    assert_eq!(schema["additionalProperties"], false);
    assert_eq!(schema["required"], serde_json::json!(keys));
    for (k, c) in keys.iter().zip(&classes) {
        let allowed: Vec<u64> = schema["properties"][k]["enum"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap())
            .collect();
        assert_eq!(allowed.len() as u64, c.allowed.count, "{k}");
        assert!(allowed.iter().all(|w| w % 8 == 0 && *w <= 256), "{k}");
    }
    // A wide value set is given as a range, not a 1,021-value enum.
    let wide: ValueSet = "uniform:4..=1024".parse().unwrap();
    let schema = structured::schema(&ctx.best().classes().describe(&wide), &[]);
    assert_eq!(schema["properties"]["c0"]["minimum"], 4);
    assert_eq!(schema["properties"]["c0"]["maximum"], 1024);
}

#[test]
fn a_valid_answer_becomes_the_parent_with_those_widths() {
    let ctx = context(Budget::default());
    let parent = ctx.best();
    let mut widths = parent.classes().widths();
    widths[0] = if widths[0] == 48 { 56 } else { 48 };
    let raw = format!("Sure! {}\nThat should do.", answer(&widths));
    match structured::judge(&ctx, parent, &raw) {
        Verdict::Accepted { arch, source } => {
            assert_eq!(arch.classes().widths(), widths);
            assert_eq!(source, arch.source());
            assert_eq!(arch.net().input(), parent.net().input());
            assert_eq!(arch.net().output(), parent.net().output());
        }
        Verdict::Rejected(r) => panic!("rejected: {r:?}"),
    }
}

#[test]
fn bad_answers_get_the_right_outcome_and_a_clear_reason() {
    let ctx = context(Budget::default());
    let parent = ctx.best();
    let widths = parent.classes().widths();
    let n = widths.len();

    let (o, d) = rejected(structured::judge(&ctx, parent, "I would widen the stem."));
    assert_eq!(o, Outcome::ParseError);
    assert!(d.contains("no complete JSON object"), "{d}");

    let truncated = answer(&widths);
    let (o, _) = rejected(structured::judge(
        &ctx,
        parent,
        &truncated[..truncated.len() / 2],
    ));
    assert_eq!(o, Outcome::ParseError);

    let (o, d) = rejected(structured::judge(&ctx, parent, "[32, 64]"));
    assert_eq!(o, Outcome::ParseError, "{d}");

    let (o, d) = rejected(structured::judge(&ctx, parent, &answer(&widths[..n - 1])));
    assert_eq!(o, Outcome::ParseError);
    assert!(d.contains(&format!("`c{}` is missing", n - 1)), "{d}");

    let with_extra = answer(&widths).replace('}', ", \"c99\": 8}");
    let (o, d) = rejected(structured::judge(&ctx, parent, &with_extra));
    assert_eq!(o, Outcome::ParseError);
    assert!(d.contains("unknown key `c99`"), "{d}");

    let text = answer(&widths).replacen(&format!("\"c0\": {}", widths[0]), "\"c0\": \"wide\"", 1);
    let (o, d) = rejected(structured::judge(&ctx, parent, &text));
    assert_eq!(o, Outcome::ParseError);
    assert!(d.contains("`c0` must be a whole number"), "{d}");

    let mut off_grid = widths.clone();
    off_grid[0] = 37;
    let (o, d) = rejected(structured::judge(&ctx, parent, &answer(&off_grid)));
    assert_eq!(o, Outcome::ShapeError);
    assert!(
        d.contains("`c0` = 37 is not allowed: multiples of 8 in 8..=256"),
        "{d}"
    );

    // The parent's own widths: an architecture already produced.
    let (o, d) = rejected(structured::judge(&ctx, parent, &answer(&widths)));
    assert_eq!(o, Outcome::Duplicate, "{d}");
}

#[test]
fn an_answer_over_budget_is_rejected_before_training() {
    let ctx = context(Budget {
        max_params: Some(300_000),
        max_flops: None,
        max_memory: None,
        batch: 0,
    });
    let parent = ctx.best();
    let widths = vec![256; parent.classes().widths().len()];
    let (o, d) = rejected(structured::judge(&ctx, parent, &answer(&widths)));
    assert_eq!(o, Outcome::OverBudget);
    assert!(d.contains("over the budget of 300,000"), "{d}");
}

#[test]
fn structured_prompt_and_its_repair() {
    let ctx = context(Budget {
        max_params: Some(400_000),
        max_flops: None,
        max_memory: None,
        batch: 0,
    });
    let input = PromptInput::from_context(&ctx, ctx.best());
    // The other trained network and an untrained mutant, both with the parent's classes.
    assert_eq!(input.assignments.len(), prompt::EXAMPLES);
    let Prompt::Completion { text } = prompt::render(Style::Structured, &input) else {
        panic!("a completion prompt expected")
    };
    assert!(text.ends_with("higher accuracy:\n"));
    insta::assert_snapshot!("structured_prompt", text);
    let parent = ctx.best();
    let raw = answer(&parent.classes().widths());
    let Verdict::Rejected(rejection) = structured::judge(&ctx, parent, &raw) else {
        panic!("the parent's widths are a duplicate")
    };
    let fix = structured::repair(&text, &raw, &rejection, &input.tried);
    assert!(fix.starts_with(&text));
    assert!(fix.contains("// Rejected (duplicate):"));
    // The duplicate's repair names the assignments already produced, again.
    let tail = &fix[text.len()..];
    assert!(
        tail.contains(&format!(
            "Already produced as [c0, c1, ...], each not to be repeated: {:?}",
            input.tried[0]
        )),
        "{tail}"
    );
    assert!(fix.ends_with("// A corrected assignment:\n"));
    // Every example line of the prompt is an answer the judge reads.
    // The prompt lists every produced assignment: the parent's first, then the
    // other trained mutant's (the untrained example was never produced).
    assert_eq!(input.tried.len(), 2);
    assert_eq!(input.tried[0], parent.classes().widths());
    for line in text.lines().filter(|l| l.starts_with('{')) {
        let v: Value = serde_json::from_str(line).unwrap();
        assert_eq!(
            v.as_object().unwrap().len(),
            parent.classes().widths().len()
        );
    }
}

/// Whether `value` satisfies `schema`, for the subset of JSON Schema the
/// structured mode writes (`anyOf`, `type: object` with `properties`,
/// `required` and no other keys, `enum`, `minimum`/`maximum`).
fn satisfies(schema: &Value, value: &Value) -> bool {
    if let Some(any) = schema.get("anyOf") {
        return any.as_array().unwrap().iter().any(|s| satisfies(s, value));
    }
    match schema["type"].as_str().unwrap() {
        "object" => {
            let object = value.as_object().unwrap();
            let properties = schema["properties"].as_object().unwrap();
            let required = schema["required"].as_array().unwrap();
            assert_eq!(schema["additionalProperties"], false);
            required
                .iter()
                .all(|k| object.contains_key(k.as_str().unwrap()))
                && object
                    .iter()
                    .all(|(k, v)| properties.get(k).is_some_and(|s| satisfies(s, v)))
        }
        "integer" => {
            let w = value.as_u64().unwrap();
            if let Some(values) = schema.get("enum") {
                return values
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|v| v.as_u64() == Some(w));
            }
            schema["minimum"].as_u64().is_none_or(|lo| w >= lo)
                && schema["maximum"].as_u64().is_none_or(|hi| w <= hi)
        }
        other => panic!("unexpected type {other}"),
    }
}

fn object_of(widths: &[u64]) -> Value {
    serde_json::from_str(&answer(widths)).unwrap()
}

#[test]
fn the_schema_leaves_out_exactly_the_tried_assignments() {
    let net = seed("../models/nas/small_cnn.nas");
    let widths: ValueSet = "step:8..=64".parse().unwrap();
    let ctx = Context::new(net, Budget::default(), widths);
    let classes = ctx.best().classes().describe(&ctx.widths);
    assert_eq!(classes.len(), 3);
    let grid: Vec<u64> = (1..=8).map(|i| i * 8).collect();
    let mut all: Vec<Vec<u64>> = Vec::new();
    for &a in &grid {
        for &b in &grid {
            for &c in &grid {
                all.push(vec![a, b, c]);
            }
        }
    }
    // Tried sets sharing prefixes, a whole slice of one class, and an
    // assignment off the grid (which the schema cannot produce anyway).
    let mut tried = vec![
        vec![16, 32, 64],
        vec![16, 32, 8],
        vec![16, 24, 64],
        vec![40, 8, 8],
        vec![12, 32, 64],
    ];
    tried.extend(grid.iter().map(|&c| vec![64, 64, c]));
    let schema = structured::schema(&classes, &tried);
    assert!(schema.get("anyOf").is_some(), "{schema}");
    for a in &all {
        assert_eq!(
            satisfies(&schema, &object_of(a)),
            !tried.contains(a),
            "{a:?}"
        );
    }
    // Nothing tried: the plain schema takes every assignment.
    let plain = structured::schema(&classes, &[]);
    assert!(all.iter().all(|a| satisfies(&plain, &object_of(a))));
    // Everything tried: no schema can exclude it all, so the plain one stands
    // (the judge still refuses each repeat).
    assert_eq!(structured::schema(&classes, &all), plain);
}

#[test]
fn a_range_schema_leaves_out_the_tried_widths_as_intervals() {
    let net = seed("../models/nas/small_cnn.nas");
    let wide: ValueSet = "uniform:4..=1024".parse().unwrap();
    let ctx = Context::new(net, Budget::default(), wide);
    let classes = ctx.best().classes().describe(&ctx.widths);
    let tried = vec![vec![16, 32, 64], vec![16, 33, 4], vec![1024, 4, 4]];
    let schema = structured::schema(&classes, &tried);
    for t in &tried {
        assert!(!satisfies(&schema, &object_of(t)), "{t:?}");
    }
    for near in [
        vec![16, 32, 63],
        vec![16, 32, 65],
        vec![15, 32, 64],
        vec![17, 32, 64],
        vec![16, 31, 64],
        vec![16, 33, 5],
        vec![1024, 4, 5],
        vec![1023, 4, 4],
        vec![4, 4, 4],
    ] {
        assert!(satisfies(&schema, &object_of(&near)), "{near:?}");
    }
}
