//! Extraction and judgement of recorded model answers (fenced, bare, several
//! blocks, prose, truncated, garbage, empty, other languages, wrong task), and the
//! repair flow of the LLM proposer over a scripted backend (no server).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test helpers: a failure is a test failure"
)]

use nas_core::propose::extract;
use nas_core::propose::llm::{Backend, BackendError, Reply, Request};
use nas_core::propose::prompt::{Prompt, Role};
use nas_core::propose::{
    Budget, Context, LlmConfig, LlmProposer, Outcome, Proposer, Round, Style, Verdict,
};
use nas_dsl::mutate::ValueSet;
use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::{Duration, Instant};

const SEED: &str = "\
pub net SmallCnn(input = [3, 32, 32], classes = 10) {
    conv1: conv(3 -> 16, k = 3, pad = 1);
    bn;
    relu;
    maxpool(k = 2);
    conv2: conv(16 -> 32, k = 3, pad = 1);
    bn;
    relu;
    maxpool(k = 2);
    conv3: conv(32 -> 64, k = 3, pad = 1);
    bn;
    relu;
    gap;
    head: linear(64 -> 10);
}";

const WIDER: &str = "\
net SmallCnn(input = [3, 32, 32], classes = 10) {
    conv1: conv(3 -> 24, k = 3, pad = 1);
    bn;
    relu;
    maxpool(k = 2);
    conv2: conv(24 -> 48, k = 3, pad = 1);
    bn;
    relu;
    maxpool(k = 2);
    conv3: conv(48 -> 96, k = 3, pad = 1);
    bn;
    relu;
    gap;
    head: linear(96 -> 10);
}";

/// `conv2` reads 20 channels but `conv1` writes 24.
const MISWIRED: &str = "\
net SmallCnn(input = [3, 32, 32], classes = 10) {
    conv1: conv(3 -> 24, k = 3, pad = 1);
    relu;
    conv2: conv(20 -> 48, k = 3, pad = 1);
    relu;
    gap;
    head: linear(48 -> 10);
}";

fn ctx(budget: Budget) -> Context {
    let seed = nas_dsl::check_str(SEED).unwrap().remove(0);
    Context::new(seed, budget, ValueSet::default())
}

fn outcome(raw: &str) -> (Outcome, String) {
    match extract::best(&ctx(Budget::default()), raw) {
        Verdict::Accepted { arch, .. } => (Outcome::Ok, arch.source().to_string()),
        Verdict::Rejected(r) => (r.outcome, r.diagnostics),
    }
}

#[test]
fn fenced_block_in_prose_is_accepted() {
    let raw = format!(
        "Sure! Here is a wider network that should do better:\n\n```nas\n{WIDER}\n```\n\nIt doubles nothing and widens everything by 1.5x."
    );
    let (o, canonical) = outcome(&raw);
    assert_eq!(o, Outcome::Ok);
    assert!(canonical.contains("conv(24 -> 48"), "{canonical}");
}

#[test]
fn bare_network_without_fence_is_accepted() {
    let raw = format!("The next network:\n{WIDER}\nThat is all.");
    assert_eq!(outcome(&raw).0, Outcome::Ok);
}

#[test]
fn the_valid_block_among_several_is_chosen() {
    let raw = format!(
        "First in PyTorch:\n```python\nimport torch\nclass Net(torch.nn.Module):\n    pass\n```\nA draft:\n```nas\n{MISWIRED}\n```\nFixed:\n```nas\n{WIDER}\n```\n"
    );
    assert_eq!(outcome(&raw).0, Outcome::Ok);
}

#[test]
fn the_furthest_rejection_is_reported_when_nothing_is_valid() {
    // A parse error and a shape error: the shape error (further along) is reported.
    let raw = format!("```nas\nnet Broken(input = [3, 32, 32] {{\n```\n```nas\n{MISWIRED}\n```");
    let (o, d) = outcome(&raw);
    assert_eq!(o, Outcome::ShapeError);
    assert!(
        d.contains("`conv2` expects 20 input channels, but `conv1` produces 24"),
        "{d}"
    );
    assert!(
        d.contains("proposal.nas:4:"),
        "rendered with a position: {d}"
    );
}

#[test]
fn truncated_output_is_a_parse_error_with_diagnostics() {
    // Cut mid-body by the token limit: the fence never closes.
    let cut = &WIDER[..WIDER.find("conv3").unwrap() + 12];
    let raw = format!("```nas\n{cut}");
    let (o, d) = outcome(&raw);
    assert_eq!(o, Outcome::ParseError);
    assert!(d.starts_with("error"), "{d}");
}

#[test]
fn garbage_empty_and_prose_are_parse_errors() {
    for raw in [
        "",
        "   \n\n ",
        "asdf ;; }}} ((( 12 -> ->",
        "I cannot help with that.",
        "<|endoftext|><pad><pad>",
    ] {
        let (o, d) = outcome(raw);
        assert_eq!(o, Outcome::ParseError, "{raw:?}");
        assert!(!d.is_empty());
    }
}

#[test]
fn code_in_another_language_is_a_parse_error() {
    let raw = "```python\nimport torch.nn as nn\nmodel = nn.Sequential(\n    nn.Conv2d(3, 16, 3, padding=1),\n    nn.ReLU(),\n)\n```";
    let (o, _) = outcome(raw);
    assert_eq!(o, Outcome::ParseError);
    let raw = "```rust\nfn main() { let net = 3; println!(\"{net}\"); }\n```";
    assert_eq!(outcome(raw).0, Outcome::ParseError);
}

#[test]
fn a_network_for_the_wrong_input_shape_is_a_shape_error() {
    let raw = "```nas\nnet Mnist(input = [1, 28, 28], classes = 10) {\n    conv(1 -> 8, k = 3);\n    relu;\n    gap;\n    linear(8 -> 10);\n}\n```";
    let (o, d) = outcome(raw);
    assert_eq!(o, Outcome::ShapeError);
    assert!(
        d.contains("takes input [1, 28, 28]") && d.contains("needs input [3, 32, 32]"),
        "{d}"
    );
    let raw = WIDER
        .replace("classes = 10", "classes = 100")
        .replace("96 -> 10)", "96 -> 100)");
    let (o, d) = outcome(&raw);
    assert_eq!(o, Outcome::ShapeError);
    assert!(d.contains("10 classes"), "{d}");
}

#[test]
fn a_renamed_copy_of_the_seed_is_a_duplicate() {
    let raw = SEED.replace("pub net SmallCnn", "/// mine\nnet MyNet");
    let (o, d) = outcome(&raw);
    assert_eq!(o, Outcome::Duplicate);
    assert!(d.contains("already produced"), "{d}");
}

#[test]
fn over_budget_is_rejected_before_training() {
    let c = ctx(Budget {
        max_params: Some(20_000),
        max_flops: None,
        max_memory: None,
        batch: 0,
    });
    match extract::best(&c, WIDER) {
        Verdict::Rejected(r) => {
            assert_eq!(r.outcome, Outcome::OverBudget);
            assert!(
                r.diagnostics.contains("over the budget of 20,000"),
                "{}",
                r.diagnostics
            );
        }
        Verdict::Accepted { .. } => panic!("accepted over budget"),
    }
    let c = ctx(Budget {
        max_params: None,
        max_flops: Some(1000),
        max_memory: None,
        batch: 0,
    });
    assert!(matches!(
        extract::best(&c, WIDER),
        Verdict::Rejected(r) if r.outcome == Outcome::OverBudget && r.diagnostics.contains("FLOPs")
    ));
}

#[test]
fn a_network_macro_wrapper_is_unwrapped() {
    let raw = format!("```rust\nnetwork! {{\n{WIDER}\n}}\n```");
    assert_eq!(outcome(&raw).0, Outcome::Ok);
}

/// A backend that plays back scripted replies and records the requests.
struct Scripted {
    replies: Mutex<VecDeque<Result<Reply, BackendError>>>,
    requests: Mutex<Vec<Request>>,
    stall: bool,
}

impl Scripted {
    fn new(replies: Vec<Result<Reply, BackendError>>) -> Scripted {
        Scripted {
            replies: Mutex::new(replies.into()),
            requests: Mutex::new(Vec::new()),
            stall: false,
        }
    }
}

fn text(s: &str) -> Result<Reply, BackendError> {
    Ok(Reply {
        text: s.to_string(),
        prompt_tokens: Some(100),
        completion_tokens: Some(20),
    })
}

impl Backend for Scripted {
    fn name(&self) -> &'static str {
        "scripted"
    }

    fn url(&self) -> &str {
        "scripted://"
    }

    async fn complete(&self, req: &Request) -> Result<Reply, BackendError> {
        self.requests.lock().unwrap().push(req.clone());
        if self.stall {
            tokio::time::sleep(Duration::from_secs(3600)).await;
        }
        let next = self.replies.lock().unwrap().pop_front();
        next.unwrap_or_else(|| Err(BackendError::Connect("script exhausted".into())))
    }
}

fn config(style: Style) -> LlmConfig {
    LlmConfig {
        style,
        retries: 1,
        backoff: Duration::from_millis(10),
        timeout: Duration::from_millis(300),
        ..LlmConfig::new("m", "scripted://")
    }
}

#[tokio::test]
async fn a_shape_error_is_repaired_with_the_diagnostics_in_chat() {
    let backend = Scripted::new(vec![
        text(&format!("```nas\n{MISWIRED}\n```")),
        text(&format!("```nas\n{WIDER}\n```")),
    ]);
    let mut p = LlmProposer::new(backend, config(Style::Chat));
    let proposal = p.propose(&ctx(Budget::default())).await;
    let outcomes: Vec<Outcome> = proposal.attempts.iter().map(|a| a.outcome).collect();
    assert_eq!(outcomes, [Outcome::ShapeError, Outcome::Ok]);
    assert_eq!(proposal.attempts[1].round, Round::Repair);
    assert!(!proposal.valid_first() && proposal.repaired());
    assert!(proposal.arch.is_some());
    assert_eq!(proposal.attempts[0].prompt_tokens, Some(100));
    let requests = p.backend().requests.lock().unwrap();
    let Prompt::Chat { messages } = &requests[1].prompt else {
        panic!("chat expected")
    };
    let last = messages.last().unwrap();
    assert_eq!(last.role, Role::User);
    assert!(
        last.content.contains("rejected (shape_error)"),
        "{}",
        last.content
    );
    assert!(
        last.content.contains("`conv2` expects 20 input channels"),
        "{}",
        last.content
    );
    assert_eq!(messages[messages.len() - 2].role, Role::Assistant);
}

#[tokio::test]
async fn a_parse_error_is_repaired_in_completion_style() {
    let backend = Scripted::new(vec![
        text("net Oops(input = [3, 32, 32], classes = 10) {\n    conv(3 -> 16, k = 3;\n"),
        text(WIDER),
    ]);
    let mut p = LlmProposer::new(backend, config(Style::Completion));
    let proposal = p.propose(&ctx(Budget::default())).await;
    let outcomes: Vec<Outcome> = proposal.attempts.iter().map(|a| a.outcome).collect();
    assert_eq!(outcomes, [Outcome::ParseError, Outcome::Ok]);
    let requests = p.backend().requests.lock().unwrap();
    let Prompt::Completion { text } = &requests[1].prompt else {
        panic!("completion expected")
    };
    assert!(
        text.contains("// This network was rejected (parse_error)"),
        "{text}"
    );
    assert!(text.contains("// error"), "{text}");
    assert!(text.ends_with("```nas\n"));
    assert_eq!(requests[1].stop, ["```", "\n\n"]);
}

#[tokio::test]
async fn a_failed_repair_keeps_both_attempts_and_no_network() {
    let backend = Scripted::new(vec![text("no idea"), text("```nas\n```")]);
    let mut p = LlmProposer::new(backend, config(Style::Chat));
    let proposal = p.propose(&ctx(Budget::default())).await;
    let outcomes: Vec<Outcome> = proposal.attempts.iter().map(|a| a.outcome).collect();
    assert_eq!(outcomes, [Outcome::ParseError, Outcome::ParseError]);
    assert!(proposal.arch.is_none());
    assert_eq!(proposal.attempts[0].raw, "no idea");
}

#[tokio::test]
async fn a_valid_first_answer_needs_no_repair_and_repair_can_be_turned_off() {
    let backend = Scripted::new(vec![text(WIDER)]);
    let mut p = LlmProposer::new(backend, config(Style::Chat));
    let proposal = p.propose(&ctx(Budget::default())).await;
    assert_eq!(proposal.attempts.len(), 1);
    assert!(proposal.valid_first());

    let backend = Scripted::new(vec![text(MISWIRED), text(WIDER)]);
    let mut p = LlmProposer::new(
        backend,
        LlmConfig {
            repair: false,
            ..config(Style::Chat)
        },
    );
    let proposal = p.propose(&ctx(Budget::default())).await;
    assert_eq!(proposal.attempts.len(), 1);
    assert_eq!(proposal.outcome(), Outcome::ShapeError);
}

#[tokio::test]
async fn server_errors_are_retried_then_recorded_without_a_repair_round() {
    let status = || {
        Err(BackendError::Status {
            status: Some(503),
            body: "overloaded".into(),
        })
    };
    let backend = Scripted::new(vec![status(), status(), text(WIDER)]);
    let mut p = LlmProposer::new(backend, config(Style::Chat));
    let proposal = p.propose(&ctx(Budget::default())).await;
    assert_eq!(proposal.attempts.len(), 1);
    let a = &proposal.attempts[0];
    assert_eq!(a.outcome, Outcome::ServerError);
    assert_eq!(a.retries, 1);
    let d = a.diagnostics.as_deref().unwrap();
    assert!(
        d.contains("HTTP 503") && d.contains("overloaded") && d.contains("after 1 retries"),
        "{d}"
    );
    assert!(d.contains("scripted://") && d.contains("`m`"), "{d}");
}

#[tokio::test]
async fn a_model_not_found_is_not_retried() {
    let backend = Scripted::new(vec![Err(BackendError::ModelNotFound {
        model: "m".into(),
        detail: "model 'm' not found".into(),
    })]);
    let mut p = LlmProposer::new(backend, config(Style::Completion));
    let proposal = p.propose(&ctx(Budget::default())).await;
    assert_eq!(proposal.outcome(), Outcome::ServerError);
    assert_eq!(proposal.attempts[0].retries, 0);
}

#[tokio::test]
async fn a_stalled_backend_times_out_within_the_bound() {
    let mut backend = Scripted::new(vec![]);
    backend.stall = true;
    let mut p = LlmProposer::new(backend, config(Style::Chat));
    let start = Instant::now();
    let proposal = p.propose(&ctx(Budget::default())).await;
    // Two tries of 300 ms and one 10 ms backoff.
    assert!(
        start.elapsed() < Duration::from_secs(3),
        "{:?}",
        start.elapsed()
    );
    assert_eq!(proposal.outcome(), Outcome::Timeout);
    assert_eq!(proposal.attempts[0].retries, 1);
    assert_eq!(p.backend().requests.lock().unwrap().len(), 2);
}

#[tokio::test]
async fn each_proposal_gets_the_next_sampling_seed() {
    let backend = Scripted::new(vec![text(WIDER), text(WIDER)]);
    let mut p = LlmProposer::new(
        backend,
        LlmConfig {
            seed: 7,
            ..config(Style::Completion)
        },
    );
    let c = ctx(Budget::default());
    p.propose(&c).await;
    p.propose(&c).await;
    let seeds: Vec<u64> = p
        .backend()
        .requests
        .lock()
        .unwrap()
        .iter()
        .map(|r| r.seed)
        .collect();
    assert_eq!(seeds, [7, 8]);
}

#[tokio::test]
async fn several_samples_keep_the_first_acceptable_answer_each_with_its_own_seed() {
    let backend = Scripted::new(vec![
        text("no idea"),
        text(&format!("```nas\n{SEED}\n```")),
        text(WIDER),
        text("never asked"),
    ]);
    let mut p = LlmProposer::new(
        backend,
        LlmConfig {
            seed: 5,
            samples: 4,
            ..config(Style::Chat)
        },
    );
    let proposal = p.propose(&ctx(Budget::default())).await;
    let outcomes: Vec<Outcome> = proposal.attempts.iter().map(|a| a.outcome).collect();
    assert_eq!(
        outcomes,
        [Outcome::ParseError, Outcome::Duplicate, Outcome::Ok]
    );
    assert!(proposal.attempts.iter().all(|a| a.round == Round::Initial));
    assert!(proposal.arch.is_some() && !proposal.repaired());
    let requests = p.backend().requests.lock().unwrap();
    let seeds: Vec<u64> = requests.iter().map(|r| r.seed).collect();
    assert_eq!(seeds, [5, 5 + (1 << 32), 5 + (2 << 32)]);
    // Every sample answers the same first prompt.
    assert!(requests.iter().all(|r| r.prompt == requests[0].prompt));
}

#[tokio::test]
async fn when_no_sample_is_acceptable_the_last_is_repaired_at_a_higher_temperature() {
    let backend = Scripted::new(vec![
        text("no idea"),
        text(&format!("```nas\n{SEED}\n```")),
        text(WIDER),
    ]);
    let mut p = LlmProposer::new(
        backend,
        LlmConfig {
            samples: 2,
            temperature: 0.7,
            ..config(Style::Chat)
        },
    );
    let proposal = p.propose(&ctx(Budget::default())).await;
    let rounds: Vec<(Round, Outcome)> = proposal
        .attempts
        .iter()
        .map(|a| (a.round, a.outcome))
        .collect();
    assert_eq!(
        rounds,
        [
            (Round::Initial, Outcome::ParseError),
            (Round::Initial, Outcome::Duplicate),
            (Round::Repair, Outcome::Ok)
        ]
    );
    let requests = p.backend().requests.lock().unwrap();
    let temps: Vec<f32> = requests.iter().map(|r| r.temperature).collect();
    assert_eq!(temps[..2], [0.7, 0.7]);
    assert!((temps[2] - 1.0).abs() < 1e-6, "{temps:?}");
    // The repair round shows the duplicate's diagnostics.
    let Prompt::Chat { messages } = &requests[2].prompt else {
        panic!("chat expected")
    };
    assert!(
        messages
            .last()
            .unwrap()
            .content
            .contains("rejected (duplicate)"),
        "{:?}",
        messages.last()
    );
}

#[tokio::test]
async fn a_server_failure_ends_the_sampling_at_once() {
    let backend = Scripted::new(vec![Err(BackendError::ModelNotFound {
        model: "m".into(),
        detail: "gone".into(),
    })]);
    let mut p = LlmProposer::new(
        backend,
        LlmConfig {
            samples: 3,
            ..config(Style::Chat)
        },
    );
    let proposal = p.propose(&ctx(Budget::default())).await;
    assert_eq!(proposal.attempts.len(), 1);
    assert_eq!(proposal.outcome(), Outcome::ServerError);
}
