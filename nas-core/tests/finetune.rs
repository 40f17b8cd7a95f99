//! `nas-core finetune` against the real stack: PEFT trains a LoRA adapter on pairs
//! `corpus pairs` wrote, llama.cpp converts, merges and quantizes it, and llama-server
//! serves it. The smoke fine-tune is small (a few pairs, a dozen steps, short
//! sequences), so a memorised training answer is the evidence that the adapter
//! learned and survived every conversion.
//!
//! The error paths run everywhere. The live test needs `scripts/finetune-env.sh install`
//! and `scripts/local-llm.sh build --tools`; without them it prints a loud SKIPPED line,
//! unless `NAS_REQUIRE_FINETUNE` is set (as `.ci/run` sets it).

#![allow(clippy::unwrap_used, clippy::panic)]

mod common;

use common::{nas, s, stderr, tools_or_skip};
use nas_core::finetune::tools::{Server, default_base};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

const RAW_PAIR: &str = r#"{"prompt": "// widths c0 16 c1 32 c2 64: 71.2%\n// better:\n", "completion": "{\"c0\": 24, \"c1\": 48, \"c2\": 64}"}"#;

#[test]
fn bad_input_gets_a_clear_error_before_any_tool_starts() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("ft");

    let malformed = dir.path().join("bad.jsonl");
    std::fs::write(&malformed, format!("{RAW_PAIR}\n{{\"messages\": [\n")).unwrap();
    let run = nas(&["finetune", "--pairs", s(&malformed), "--out", s(&out)]);
    assert_eq!(run.status.code(), Some(2));
    assert!(
        stderr(&run).contains("bad.jsonl:2: not JSON"),
        "{}",
        stderr(&run)
    );

    let no_answer = dir.path().join("no_answer.jsonl");
    std::fs::write(
        &no_answer,
        r#"{"messages": [{"role": "user", "content": "u"}]}"#,
    )
    .unwrap();
    let run = nas(&["finetune", "--pairs", s(&no_answer), "--out", s(&out)]);
    assert!(
        stderr(&run).contains("no_answer.jsonl:1: a pair needs `messages`"),
        "{}",
        stderr(&run)
    );

    let pairs = dir.path().join("pairs.jsonl");
    std::fs::write(&pairs, format!("{RAW_PAIR}\n")).unwrap();
    let run = nas(&[
        "finetune",
        "--pairs",
        s(&pairs),
        "--out",
        s(&out),
        "--base",
        "/nonexistent/model.gguf",
    ]);
    assert_eq!(run.status.code(), Some(2));
    assert!(
        stderr(&run).contains("the base model `/nonexistent/model.gguf` does not exist"),
        "{}",
        stderr(&run)
    );

    let base = dir.path().join("base.gguf");
    std::fs::write(&base, b"GGUF").unwrap();
    let run = nas(&[
        "finetune",
        "--pairs",
        s(&pairs),
        "--out",
        s(&out),
        "--base",
        s(&base),
        "--python",
        "/nonexistent/python",
    ]);
    assert_eq!(run.status.code(), Some(2));
    let e = stderr(&run);
    assert!(
        e.contains("the fine-tuning environment is not installed")
            && e.contains("scripts/finetune-env.sh install"),
        "{e}"
    );
    assert!(!out.exists(), "nothing is written on bad input");
}

fn post(url: &str, body: &Value) -> Value {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        reqwest::Client::new()
            .post(url)
            .json(body)
            .timeout(Duration::from_secs(300))
            .send()
            .await
            .unwrap()
            .json::<Value>()
            .await
            .unwrap()
    })
}

/// Structured pairs written by `corpus pairs` from a real corpus of the default seed.
fn structured_pairs(dir: &Path) -> Vec<Value> {
    let corpus = dir.join("corpus.jsonl");
    let seed = Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/nas/small_cnn.nas");
    let run = nas(&[
        "corpus",
        "--from",
        s(&seed),
        "--n",
        "6",
        "--widths",
        "step:8..=64",
        "--out",
        s(&corpus),
    ]);
    assert!(run.status.success(), "{}", stderr(&run));
    let mut results = String::new();
    for (i, line) in std::fs::read_to_string(&corpus)
        .unwrap()
        .lines()
        .enumerate()
    {
        let r: Value = serde_json::from_str(line).unwrap();
        let acc = 0.5 + 0.01 * i as f64 + r["params"].as_f64().unwrap() / 1e7;
        results.push_str(&format!(
            "{}\n",
            json!({"hash": r["hash"], "accuracy": acc, "epochs": 3})
        ));
    }
    let res = dir.join("results.jsonl");
    std::fs::write(&res, results).unwrap();
    let pairs = dir.join("structured.jsonl");
    let run = nas(&[
        "corpus",
        "pairs",
        "--corpus",
        s(&corpus),
        "--results",
        s(&res),
        "--out",
        s(&pairs),
        "--style",
        "structured",
    ]);
    assert!(run.status.success(), "{}", stderr(&run));
    std::fs::read_to_string(&pairs)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn a_smoke_fine_tune_learns_converts_merges_and_serves() {
    let Some(tools) = tools_or_skip("the live fine-tuning test") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    // Two structured pairs (the proposer's own prompt) and one chat pair.
    let mut pairs: Vec<Value> = structured_pairs(dir.path()).into_iter().take(2).collect();
    assert_eq!(pairs.len(), 2);
    pairs.push(json!({"messages": [
        {"role": "system", "content": "You choose channel widths."},
        {"role": "user", "content": "Parent c0 16, c1 32, c2 64 scored 71.2%. Widths of a better child?"},
        {"role": "assistant", "content": "c0 40, c1 56, c2 64"}
    ]}));
    let file = dir.path().join("pairs.jsonl");
    let text: String = pairs.iter().map(|p| format!("{p}\n")).collect();
    std::fs::write(&file, text).unwrap();
    let out = dir.path().join("ft");
    let args = [
        "finetune",
        "--pairs",
        s(&file),
        "--out",
        s(&out),
        "--steps",
        "12",
        "--batch",
        "3",
        "--lr",
        "2e-3",
        "--threads",
        "1",
        "--json",
    ];
    let run = nas(&args);
    assert!(run.status.success(), "{}", stderr(&run));
    let outcome: Value = serde_json::from_slice(&run.stdout).unwrap();
    let progress = stderr(&run);
    assert!(
        progress.contains("step 12/12") && progress.contains("eta"),
        "{progress}"
    );

    // It learned: the loss on the training pairs fell.
    let train = &outcome["record"]["stages"][0];
    assert_eq!(train[0], "train");
    let (before, after) = (
        train[1]["train_loss_before"].as_f64().unwrap(),
        train[1]["train_loss_after"].as_f64().unwrap(),
    );
    assert!(after < before / 2.0, "loss {before} -> {after}");
    let stages: Vec<&str> = outcome["record"]["stages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s[0].as_str().unwrap())
        .collect();
    assert_eq!(stages, ["train", "convert", "merge", "quantize"]);
    let svg = std::fs::read_to_string(out.join("loss.svg")).unwrap();
    assert!(svg.starts_with("<svg"));
    let modelfile = std::fs::read_to_string(out.join("Modelfile")).unwrap();
    assert!(modelfile.contains("FROM ./merged-q8_0.gguf"), "{modelfile}");
    assert!(
        !out.join("merged-f16.gguf").exists(),
        "the f16 step is removed"
    );

    // Serve base, base + adapter and the merged model the way the search does.
    let base = default_base();
    let adapter = PathBuf::from(outcome["adapter_gguf"].as_str().unwrap());
    let merged = PathBuf::from(outcome["merged_gguf"].as_str().unwrap());
    let limit = Duration::from_secs(180);
    let start = |model: &Path, lora: Option<&Path>, name: &str| {
        Server::start(&tools, model, lora, "gemma", &dir.path().join(name), limit).unwrap()
    };
    let tuned = start(&base, Some(&adapter), "tuned.log");
    let plain = start(&base, None, "base.log");
    let merged_server = start(&merged, None, "merged.log");
    let complete = |server: &Server, prompt: &str| {
        post(
            &format!("{}/completion", server.url()),
            &json!({"prompt": prompt, "temperature": 0, "n_predict": 48, "seed": 0}),
        )
    };

    let prompt = pairs[0]["prompt"].as_str().unwrap();
    let answer = pairs[0]["completion"].as_str().unwrap();
    let got = complete(&tuned, prompt);
    assert_eq!(got["content"].as_str().unwrap().trim(), answer, "{got}");
    let got_base = complete(&plain, prompt);
    assert_ne!(got_base["content"].as_str().unwrap().trim(), answer);
    let got_merged = complete(&merged_server, prompt);
    assert_eq!(
        got_merged["content"].as_str().unwrap().trim(),
        answer,
        "{got_merged}"
    );

    // The chat pair through the chat route (the server's own Gemma template).
    let chat = post(
        &format!("{}/v1/chat/completions", merged_server.url()),
        &json!({"messages": pairs[2]["messages"].as_array().unwrap()[..2], "temperature": 0, "max_tokens": 32, "seed": 0}),
    );
    assert_eq!(
        chat["choices"][0]["message"]["content"]
            .as_str()
            .unwrap()
            .trim(),
        "c0 40, c1 56, c2 64",
        "{chat}"
    );

    // Tokenizer parity: the ids trained on are the ids the serving server evaluates.
    let tokens: Vec<Value> = std::fs::read_to_string(out.join("tokens.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(tokens.len(), 3);
    let served = post(
        &format!("{}/tokenize", plain.url()),
        &json!({"content": prompt, "add_special": true, "parse_special": true}),
    );
    assert_eq!(served["tokens"], tokens[0]["prompt_ids"]);
    let evaluated = got["tokens_evaluated"].as_u64().unwrap() as usize;
    assert_eq!(evaluated, tokens[0]["prompt_ids"].as_array().unwrap().len());
    let answer_ids = post(
        &format!("{}/tokenize", plain.url()),
        &json!({"content": answer, "add_special": false, "parse_special": true}),
    );
    let trained_answer = tokens[0]["answer_ids"].as_array().unwrap();
    assert_eq!(
        answer_ids["tokens"].as_array().unwrap()[..],
        trained_answer[..trained_answer.len() - 1],
        "the answer's ids, then the end of sequence"
    );
    let rendered = post(
        &format!("{}/apply-template", plain.url()),
        &json!({"messages": pairs[2]["messages"].as_array().unwrap()[..2]}),
    );
    let chat_ids = post(
        &format!("{}/tokenize", plain.url()),
        &json!({"content": rendered["prompt"], "add_special": true, "parse_special": true}),
    );
    assert_eq!(chat_ids["tokens"], tokens[2]["prompt_ids"]);
    drop((tuned, plain, merged_server));

    // A rerun continues (everything done); other settings are refused.
    let again = nas(&args);
    assert!(again.status.success(), "{}", stderr(&again));
    assert!(
        stderr(&again).contains("quantize: already done"),
        "{}",
        stderr(&again)
    );
    let other = nas(&[
        "finetune",
        "--pairs",
        s(&file),
        "--out",
        s(&out),
        "--steps",
        "13",
    ]);
    assert_eq!(other.status.code(), Some(2));
    assert!(
        stderr(&other).contains("holds a fine-tune with other inputs (its settings differ)"),
        "{}",
        stderr(&other)
    );
}

/// `--base DIR`: a Hugging Face model directory (made from the default GGUF, as no
/// Hub download is possible here) is converted to GGUF once, trained from its own
/// weights, and the adapter applies to the conversion: served base + adapter and the
/// merged model give the memorised answer, and the ids trained on are the ids the
/// original GGUF's server gives.
#[test]
fn a_hugging_face_directory_is_a_base() {
    let Some(tools) = tools_or_skip("the live fine-tuning test") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let hf = dir.path().join("hf");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/gguf_to_hf.py");
    let made = Command::new(&tools.python)
        .arg(&script)
        .arg(default_base())
        .arg(&hf)
        .output()
        .unwrap();
    assert!(made.status.success(), "{}", stderr(&made));
    assert!(hf.join("config.json").is_file() && hf.join("tokenizer.model").is_file());

    let pairs: Vec<Value> = structured_pairs(dir.path()).into_iter().take(2).collect();
    let file = dir.path().join("pairs.jsonl");
    std::fs::write(
        &file,
        pairs.iter().map(|p| format!("{p}\n")).collect::<String>(),
    )
    .unwrap();
    let out = dir.path().join("ft");
    let run = nas(&[
        "finetune",
        "--pairs",
        s(&file),
        "--out",
        s(&out),
        "--base",
        s(&hf),
        "--steps",
        "12",
        "--batch",
        "2",
        "--lr",
        "2e-3",
        "--threads",
        "1",
        "--json",
    ]);
    assert!(run.status.success(), "{}", stderr(&run));
    let outcome: Value = serde_json::from_slice(&run.stdout).unwrap();
    let stages: Vec<&str> = outcome["record"]["stages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s[0].as_str().unwrap())
        .collect();
    assert_eq!(stages, ["base", "train", "convert", "merge", "quantize"]);
    let converted = out.join("base-f16.gguf");
    assert_eq!(outcome["base_gguf"].as_str().unwrap(), s(&converted));

    let limit = Duration::from_secs(180);
    let start = |model: &Path, lora: Option<&Path>, name: &str| {
        Server::start(&tools, model, lora, "gemma", &dir.path().join(name), limit).unwrap()
    };
    let adapter = PathBuf::from(outcome["adapter_gguf"].as_str().unwrap());
    let merged = PathBuf::from(outcome["merged_gguf"].as_str().unwrap());
    let tuned = start(&converted, Some(&adapter), "tuned.log");
    let merged_server = start(&merged, None, "merged.log");
    let original = start(&default_base(), None, "original.log");
    let prompt = pairs[0]["prompt"].as_str().unwrap();
    let answer = pairs[0]["completion"].as_str().unwrap();
    for server in [&tuned, &merged_server] {
        let got = post(
            &format!("{}/completion", server.url()),
            &json!({"prompt": prompt, "temperature": 0, "n_predict": 48, "seed": 0}),
        );
        assert_eq!(got["content"].as_str().unwrap().trim(), answer, "{got}");
    }
    let first: Value = serde_json::from_str(
        std::fs::read_to_string(out.join("tokens.jsonl"))
            .unwrap()
            .lines()
            .next()
            .unwrap(),
    )
    .unwrap();
    let served = post(
        &format!("{}/tokenize", original.url()),
        &json!({"content": prompt, "add_special": true, "parse_special": true}),
    );
    assert_eq!(served["tokens"], first["prompt_ids"]);
}
