//! What must hold for any input, per fuzz target. Each function takes the raw
//! bytes a fuzzer (or a corpus file) gives and panics when an invariant breaks;
//! an input the parser refuses is fine as long as the refusal is a clear error.
//!
//! The fuzz targets under `fuzz/fuzz_targets/` call these under libFuzzer, and
//! `nas-core/tests/fuzz_corpus.rs` replays every committed corpus file through
//! them in the ordinary test run.

use nas_core::data::{Dataset, PIXELS, cifar};
use nas_core::evolve::SearchConfig;
use nas_core::propose::{Budget, Context, Verdict, extract, structured};
use nas_dsl::ErrorKind;
use nas_dsl::mutate::{Arch, Mutator, ValueSet, seed_rng};
use nas_dsl::span::{LineCol, Span};
use std::path::Path;
use std::sync::{Arc, OnceLock};

/// A target's invariants over one input.
pub type Check = fn(&[u8]);

/// The targets by name, as `scripts/fuzz.sh` and the corpus folders name them.
pub const TARGETS: [(&str, Check); 5] = [
    ("nas_text", nas_text),
    ("mutate", mutate),
    ("llm_answer", llm_answer),
    ("cifar", cifar),
    ("config", config),
];

/// Whether `at` is a position inside `src` (1-based line, 0-based column in
/// characters; the end of a line counts).
fn position_in(src: &str, at: LineCol) -> bool {
    let Some(line) = (at.line as usize)
        .checked_sub(1)
        .and_then(|i| src.split('\n').nth(i))
    else {
        return false;
    };
    at.column as usize <= line.chars().count()
}

/// A diagnostic's span must point into the text it is about, start before end.
fn assert_span(src: &str, span: Span, what: &str) {
    assert!(
        position_in(src, span.start) && position_in(src, span.end) && span.start <= span.end,
        "{what}: span {:?}..{:?} is not inside the text",
        span.start,
        span.end
    );
}

/// `.nas` text: parse → check → print → re-parse. No panic; every error is a
/// diagnostic whose spans point into the text and which renders; a net that
/// checks prints to text that checks to an equal net with the same counts, and
/// printing is idempotent; a file that parses prints to text that parses to an
/// equal tree.
pub fn nas_text(data: &[u8]) {
    let Ok(src) = std::str::from_utf8(data) else {
        return;
    };
    match nas_dsl::check_str(src) {
        Err(errors) => {
            assert!(!errors.0.is_empty(), "an error result without a diagnostic");
            for d in &errors.0 {
                if d.span.is_synthetic() {
                    assert!(
                        matches!(d.kind, ErrorKind::NoNet),
                        "`{}` has no span",
                        d.kind
                    );
                } else {
                    assert_span(src, d.span, &d.kind.to_string());
                }
                for n in &d.notes {
                    if let Some(s) = n.span {
                        assert_span(src, s, &n.message);
                    }
                }
            }
            let shown = nas_dsl::diag::render("fuzz.nas", src, &errors);
            assert!(
                shown.contains("error"),
                "rendered without an error: {shown}"
            );
        }
        Ok(nets) => {
            assert!(!nets.is_empty(), "text checked to no net");
            for net in &nets {
                let printed = nas_dsl::print(net.net());
                let again = match nas_dsl::check_str(&printed) {
                    Ok(again) => again,
                    Err(e) => panic!("the printed net fails the checker:\n{printed}\n{e}"),
                };
                assert_eq!(again.len(), 1, "printed one net, read {}", again.len());
                assert_eq!(again[0].net(), net.net(), "print → parse changed the net");
                assert_eq!(again[0].params(), net.params());
                assert_eq!(again[0].flops(), net.flops());
                assert_eq!(
                    nas_dsl::print(again[0].net()),
                    printed,
                    "printing is not idempotent"
                );
            }
        }
    }
    if let Ok(file) = nas_dsl::parse_str(src) {
        let printed = nas_dsl::print_file(&file);
        match nas_dsl::parse_str(&printed) {
            Ok(again) => assert_eq!(again, file, "print → parse changed the tree"),
            Err(e) => panic!("the printed file does not parse:\n{printed}\n{e}"),
        }
    }
}

/// The mutator on fuzzed nets: the first byte picks the width grid and the
/// operators, the next eight seed the generator, the rest is `.nas` text. For
/// a text that checks, a chain of up to eight mutations: every mutant is a net
/// that checks, prints to its own canonical text, keeps the seed's input and
/// output, and (width operators) writes only widths on the grid.
pub fn mutate(data: &[u8]) {
    let [flags, s0, s1, s2, s3, s4, s5, s6, s7, rest @ ..] = data else {
        return;
    };
    let Ok(src) = std::str::from_utf8(rest) else {
        return;
    };
    let Ok(nets) = nas_dsl::check_str(src) else {
        return;
    };
    let widths: ValueSet = match flags & 3 {
        0 => "step:8..=64",
        1 => "uniform:4..=1024",
        2 => "step:16..=4096",
        _ => "uniform:1..=9",
    }
    .parse()
    .unwrap_or_else(|e| panic!("{e}"));
    let mutator = Mutator {
        widths,
        structural: flags & 4 != 0,
    };
    let mut rng = seed_rng(u64::from_le_bytes([*s0, *s1, *s2, *s3, *s4, *s5, *s6, *s7]));
    for net in nets {
        let (input, output) = (net.input(), net.output());
        let mut parent = Arch::new(net);
        for _ in 0..8 {
            let Ok(m) = mutator.mutate(&parent, &mut rng) else {
                break;
            };
            let width_op = matches!(
                m.mutation.op(),
                nas_dsl::mutate::Operator::SetClass | nas_dsl::mutate::Operator::Scale
            );
            let mutation = m.mutation.clone();
            let child = m.into_arch();
            let again = match nas_dsl::check_str(child.source()) {
                Ok(again) => again,
                Err(e) => panic!(
                    "{mutation} gave a mutant that fails the checker:\n{}\n{e}",
                    child.source()
                ),
            };
            assert_eq!(again.len(), 1);
            assert_eq!(
                again[0].net(),
                child.net().net(),
                "{mutation}: text and net differ"
            );
            assert_eq!(child.net().input(), input, "{mutation} changed the input");
            assert_eq!(
                child.net().output(),
                output,
                "{mutation} changed the output"
            );
            if width_op {
                let before = parent.classes().widths();
                for (c, w) in child
                    .classes()
                    .classes()
                    .iter()
                    .zip(child.classes().widths())
                {
                    assert!(
                        c.grid(&mutator.widths).contains(w) || before.contains(&w),
                        "{mutation} wrote width {w} for class c{}, off the grid {}",
                        c.id,
                        mutator.widths
                    );
                }
            }
            parent = child;
        }
    }
}

/// The judging context of the LLM target: the default seed, a 1 M parameter
/// and 256 MiB memory budget at batch 32, the default grid, one network
/// already produced.
fn answer_context() -> &'static Context {
    static CTX: OnceLock<Context> = OnceLock::new();
    CTX.get_or_init(|| {
        let seed = nas_dsl::check_str(include_str!("../../models/nas/small_cnn.nas"))
            .ok()
            .and_then(|n| n.into_iter().next())
            .unwrap_or_else(|| panic!("the default seed does not check"));
        let budget = Budget {
            max_params: Some(1_000_000),
            max_memory: Some(256 << 20),
            batch: 32,
            ..Budget::default()
        };
        let widths: ValueSet = "step:8..=64".parse().unwrap_or_else(|e| panic!("{e}"));
        let mut ctx = Context::new(seed, budget, widths);
        let seed = ctx.seed().clone();
        let produced: Vec<u64> = seed.classes().widths().iter().map(|_| 24).collect();
        match ctx.judge_widths(&seed, &produced) {
            Verdict::Accepted { arch, .. } => ctx.record(arch, None),
            Verdict::Rejected(r) => panic!("the produced network is refused: {r:?}"),
        }
        ctx
    })
}

/// An LLM's answer, through both judges a proposal meets (network text:
/// extraction, parse, check, budget, grid; the structured JSON object of
/// widths) and the extraction helpers. No panic; a rejection is never a server
/// failure and always says why; an accepted network checks, fits the task and
/// the budget, uses widths on the grid (or the seed's), and is new.
pub fn llm_answer(data: &[u8]) {
    let raw = String::from_utf8_lossy(data);
    let ctx = answer_context();
    let _ = extract::candidates(&raw);
    let _ = extract::fenced_blocks(&raw);
    let _ = extract::net_items(&raw);
    let parent: Arc<Arch> = ctx.best().clone();
    for verdict in [
        extract::best(ctx, &raw),
        structured::judge(ctx, &parent, &raw),
    ] {
        match verdict {
            Verdict::Accepted { arch, source } => {
                let net = arch.net();
                assert!(
                    nas_dsl::check_str(arch.source()).is_ok(),
                    "accepted text fails: {source}"
                );
                assert_eq!(
                    net.input(),
                    ctx.seed().net().input(),
                    "accepted another input"
                );
                assert_eq!(
                    net.output(),
                    ctx.seed().net().output(),
                    "accepted another output"
                );
                assert!(
                    net.params() <= 1_000_000,
                    "accepted over the parameter budget"
                );
                assert!(
                    ctx.budget.memory_over(net).is_none(),
                    "accepted over the memory budget"
                );
                assert!(
                    !ctx.is_seen(net.net()),
                    "accepted a network already produced"
                );
                let seed_widths = ctx.seed().classes().widths();
                for c in arch.classes().classes() {
                    assert!(
                        c.grid(&ctx.widths).contains(c.width) || seed_widths.contains(&c.width),
                        "accepted width {} off the grid",
                        c.width
                    );
                }
            }
            Verdict::Rejected(r) => {
                assert!(
                    !r.outcome.is_server_failure(),
                    "{:?} for an answer",
                    r.outcome
                );
                assert!(
                    !r.diagnostics.trim().is_empty(),
                    "a rejection without a reason"
                );
            }
        }
    }
}

/// CIFAR files: any bytes as a CIFAR-10 and as a CIFAR-100 file. The reader
/// accepts exactly the non-empty files of whole records with labels in range
/// (checked here independently), then holds one label and 3,072 pixels per
/// record, in order; it refuses everything else with an error naming the file,
/// and then appends nothing.
pub fn cifar(data: &[u8]) {
    let path = Path::new("fuzz.bin");
    type Decode = fn(&Path, &[u8], &mut Dataset) -> Result<(), nas_core::data::DataError>;
    let formats: [(Decode, usize, usize, usize); 2] = [
        (cifar::decode_cifar10, cifar::CIFAR10_RECORD, 10, 0),
        (cifar::decode_cifar100, cifar::CIFAR100_RECORD, 100, 1),
    ];
    for (decode, record, classes, label_at) in formats {
        let mut set = Dataset {
            images: Vec::new(),
            labels: Vec::new(),
            classes,
        };
        let valid = !data.is_empty()
            && data.len().is_multiple_of(record)
            && data
                .chunks_exact(record)
                .all(|r| usize::from(r[label_at]) < classes && (label_at == 0 || r[0] < 20));
        match decode(path, data, &mut set) {
            Ok(()) => {
                assert!(valid, "accepted a bad file of {} bytes", data.len());
                let n = data.len() / record;
                assert_eq!(set.labels.len(), n);
                assert_eq!(set.images.len(), n * PIXELS);
                for (i, r) in data.chunks_exact(record).enumerate() {
                    assert_eq!(usize::from(set.labels[i]), usize::from(r[label_at]));
                    assert_eq!(
                        &set.images[i * PIXELS..(i + 1) * PIXELS],
                        &r[record - PIXELS..]
                    );
                }
            }
            Err(e) => {
                assert!(!valid, "refused a good file: {e}");
                assert!(
                    e.to_string().contains("fuzz.bin"),
                    "the error does not name the file: {e}"
                );
                assert!(
                    set.labels.is_empty() && set.images.is_empty(),
                    "a refused file appended records"
                );
            }
        }
    }
}

/// The TOML configuration (and the flags parsed the same way): no panic; a
/// configuration that reads is resolved (or refused with a message), saved,
/// and the saved text reads back to the same configuration.
pub fn config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = nas_core::evolve::parse_bytes(text);
    let _ = nas_core::evolve::parse_count(text);
    let _ = nas_core::evolve::Seconds::parse(text);
    let _ = text.parse::<ValueSet>();
    match SearchConfig::from_toml_str(text, "fuzz.toml") {
        Err(e) => assert!(
            e.to_string().contains("fuzz.toml"),
            "the error does not name the file: {e}"
        ),
        Ok(cfg) => {
            if let Err(e) = cfg.resolve() {
                assert!(!e.to_string().trim().is_empty());
            }
            let saved = match cfg.to_toml() {
                Ok(saved) => saved,
                Err(e) => panic!("a configuration that reads cannot be saved: {e}\n{text}"),
            };
            let back = match SearchConfig::from_toml_str(&saved, "saved.toml") {
                Ok(back) => back,
                Err(e) => panic!("the saved configuration does not read back: {e}\n{saved}"),
            };
            let again = back.to_toml().unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(saved, again, "save → read → save changed the configuration");
        }
    }
}
