//! End-to-end runs of `nas-core mutate` and `nas-core corpus`: distinct checked
//! mutants on disk and on stdout, JSON-lines records, resuming without
//! duplicates, recovering a truncated last line, and clear errors for bad input.

// clippy.toml allows unwrap inside `#[test]` functions only; the helpers here
// unwrap too, since a test input that fails to load is a failed test.
#![allow(clippy::unwrap_used)]

use nas_dsl::mutate::content_hash;
use serde_json::Value;
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const SEED_A: &str = "/// A small residual net.
pub net SeedA(input = [3, 16, 16], classes = 10) {
    stem: conv(3 -> 16, k = 3, pad = 1);
    bn;
    relu;
    residual {
        conv(16 -> 16, k = 3, pad = 1); bn; relu;
        conv(16 -> 16, k = 3, pad = 1); bn;
    }
    relu;
    maxpool(k = 2);
    flatten;
    linear(1024 -> 64);
    relu;
    head: linear(64 -> 10);
}
";

const SEED_B: &str = "net SeedB(input = [3, 16, 16], classes = 10) {
    conv(3 -> 8, k = 3, pad = 1);
    relu;
    concat {
        branch { conv(8 -> 8, k = 1); }
        branch { conv(8 -> 12, k = 3, pad = 1); }
    }
    gap;
    linear(20 -> 10);
}
";

fn nas(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_nas-core"))
        .args(args)
        .env_remove("CI")
        .output()
        .unwrap()
}

fn stdout(out: &Output) -> String {
    String::from_utf8(out.stdout.clone()).unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8(out.stderr.clone()).unwrap()
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// The canonical hash of each seed net.
fn seed_hashes(texts: &[&str]) -> HashSet<String> {
    texts
        .iter()
        .flat_map(|t| nas_dsl::check_str(t).unwrap())
        .map(|n| content_hash(&nas_dsl::print(n.net())))
        .collect()
}

fn lines(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn mutate_writes_n_distinct_checked_files() {
    let dir = tempfile::tempdir().unwrap();
    let seed = write(dir.path(), "seed.nas", SEED_A);
    let out = dir.path().join("mutants");
    let run = nas(&[
        "mutate",
        s(&seed),
        "--n",
        "7",
        "--seed",
        "1",
        "--out",
        s(&out),
    ]);
    assert!(run.status.success(), "{}", stderr(&run));
    assert!(stderr(&run).contains("wrote 7 mutants"));
    let mut texts = HashSet::new();
    for entry in std::fs::read_dir(&out).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        let nets = nas_dsl::check_str(&text).unwrap();
        assert_eq!(nets.len(), 1);
        // Canonical text, named by its hash.
        assert_eq!(nas_dsl::print(nets[0].net()), text);
        let stem = path.file_stem().unwrap().to_str().unwrap().to_string();
        assert_eq!(stem, content_hash(&text)[..16]);
        assert!(!seed_hashes(&[SEED_A]).contains(&content_hash(&text)));
        texts.insert(text);
    }
    assert_eq!(texts.len(), 7);
}

#[test]
fn mutate_prints_to_stdout_reproducibly() {
    let dir = tempfile::tempdir().unwrap();
    let seed = write(dir.path(), "seed.nas", SEED_B);
    let args = |seed_no: &str| {
        nas(&[
            "mutate",
            s(&seed),
            "--n",
            "4",
            "--seed",
            seed_no,
            "--structural",
            "--widths",
            "step:4..=64",
        ])
    };
    let (a, b, c) = (args("3"), args("3"), args("4"));
    assert!(a.status.success(), "{}", stderr(&a));
    assert_eq!(stdout(&a), stdout(&b));
    assert_ne!(stdout(&a), stdout(&c));
    // One canonical text per mutant, each after a `// i: mutation` line. (Not one
    // `.nas` file: every mutant keeps its seed's name.)
    let text = format!("\n{}", stdout(&a));
    let docs: Vec<&str> = text.split("\n// ").skip(1).collect();
    assert_eq!(docs.len(), 4);
    let mut texts = HashSet::new();
    for (i, doc) in docs.iter().enumerate() {
        let (header, source) = doc.split_once('\n').unwrap();
        assert!(header.starts_with(&format!("{i}: ")), "{header}");
        let source = source.trim_end_matches('\n').to_string() + "\n";
        let nets = nas_dsl::check_str(&source).unwrap();
        assert_eq!(nas_dsl::print(nets[0].net()), source);
        assert!(header.contains(&content_hash(&source)[..16]));
        texts.insert(source);
    }
    assert_eq!(texts.len(), 4);
}

#[test]
fn corpus_writes_n_json_records() {
    let dir = tempfile::tempdir().unwrap();
    let a = write(dir.path(), "a.nas", SEED_A);
    let b = write(dir.path(), "b.nas", SEED_B);
    let out = dir.path().join("corpus.jsonl");
    let run = nas(&[
        "corpus",
        "--from",
        s(&a),
        s(&b),
        "--n",
        "40",
        "--seed",
        "3",
        "--out",
        s(&out),
    ]);
    assert!(run.status.success(), "{}", stderr(&run));
    assert!(
        stderr(&run).contains("wrote 40 records"),
        "{}",
        stderr(&run)
    );
    let records = lines(&out);
    assert_eq!(records.len(), 40);
    let mut known = seed_hashes(&[SEED_A, SEED_B]);
    for r in &records {
        let source = r["source"].as_str().unwrap();
        let hash = r["hash"].as_str().unwrap();
        assert_eq!(hash, content_hash(source));
        let net = nas_dsl::check_str(source).unwrap().remove(0);
        assert_eq!(r["params"].as_u64(), Some(net.params()));
        assert_eq!(r["flops"].as_u64(), Some(net.flops()));
        let op = r["mutation"]["op"].as_str().unwrap();
        assert!(["set_class", "scale"].contains(&op), "{op}");
        // Parents are seeds or earlier records: the corpus is a walk.
        assert!(known.contains(r["parent_hash"].as_str().unwrap()));
        assert!(known.insert(hash.to_string()), "duplicate record");
        let classes = r["width_classes"].as_array().unwrap();
        assert!(!classes.is_empty());
        assert!(classes[0]["members"].as_array().is_some());
        assert_eq!(classes[0]["allowed"]["min"], 4);
    }
}

#[test]
fn corpus_rerun_continues_and_matches_one_run() {
    let dir = tempfile::tempdir().unwrap();
    let a = write(dir.path(), "a.nas", SEED_A);
    let split = dir.path().join("split.jsonl");
    let whole = dir.path().join("whole.jsonl");
    let corpus = |out: &Path, n: &str| {
        nas(&[
            "corpus",
            "--from",
            s(&a),
            "--n",
            n,
            "--seed",
            "5",
            "--structural",
            "--out",
            s(out),
        ])
    };
    assert!(corpus(&split, "10").status.success());
    let first = std::fs::read_to_string(&split).unwrap();
    let again = corpus(&split, "25");
    assert!(again.status.success(), "{}", stderr(&again));
    assert!(
        stderr(&again).contains("wrote 15 records"),
        "{}",
        stderr(&again)
    );
    assert!(stderr(&again).contains("10 already there"));
    let text = std::fs::read_to_string(&split).unwrap();
    assert!(text.starts_with(&first));
    let hashes: HashSet<String> = lines(&split)
        .iter()
        .map(|r| r["hash"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(hashes.len(), 25);
    assert!(corpus(&whole, "25").status.success());
    assert_eq!(std::fs::read_to_string(&whole).unwrap(), text);
    // Asking for no more than is there writes nothing.
    let done = corpus(&split, "20");
    assert!(done.status.success());
    assert!(stderr(&done).contains("wrote 0 records"));
    assert_eq!(std::fs::read_to_string(&split).unwrap(), text);
}

#[test]
fn corpus_recovers_a_truncated_last_line() {
    let dir = tempfile::tempdir().unwrap();
    let a = write(dir.path(), "a.nas", SEED_A);
    let out = dir.path().join("corpus.jsonl");
    let corpus = |n: &str| {
        nas(&[
            "corpus",
            "--from",
            s(&a),
            "--n",
            n,
            "--seed",
            "8",
            "--out",
            s(&out),
        ])
    };
    assert!(corpus("6").status.success());
    // Cut the last record in half, as a kill during the write would.
    let text = std::fs::read_to_string(&out).unwrap();
    let cut = text.len() - text.lines().last().unwrap().len() / 2;
    std::fs::write(&out, &text[..cut]).unwrap();
    let run = corpus("9");
    assert!(run.status.success(), "{}", stderr(&run));
    assert!(stderr(&run).contains("dropped a partial last line"));
    assert!(stderr(&run).contains("wrote 4 records"), "{}", stderr(&run));
    let records = lines(&out);
    assert_eq!(records.len(), 9);
    let hashes: HashSet<&str> = records
        .iter()
        .map(|r| r["hash"].as_str().unwrap())
        .collect();
    assert_eq!(hashes.len(), 9);
}

#[test]
fn bad_input_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let good = write(dir.path(), "good.nas", SEED_A);
    let bad = write(
        dir.path(),
        "bad.nas",
        "net Bad(input = [3, 8, 8], classes = 2) { conv3d(3 -> 4, k = 3); gap; linear(4 -> 2); }",
    );
    let out = dir.path().join("c.jsonl");
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec!["corpus", "--from", s(&bad), "--n", "5", "--out", s(&out)],
            "unknown layer `conv3d`",
        ),
        (
            vec![
                "corpus",
                "--from",
                s(&good),
                "--n",
                "5",
                "--out",
                s(&out),
                "--from",
                s(&bad),
            ],
            "does not check",
        ),
        (vec!["mutate", s(&bad), "--n", "2"], "does not check"),
        (vec!["mutate", s(&good), "--n", "0"], "invalid value '0'"),
        (
            vec!["corpus", "--from", s(&good), "--n", "0", "--out", s(&out)],
            "invalid value '0'",
        ),
        (
            vec![
                "corpus",
                "--from",
                "missing.nas",
                "--n",
                "3",
                "--out",
                s(&out),
            ],
            "cannot read `missing.nas`",
        ),
        (
            vec![
                "corpus",
                "--from",
                s(&good),
                "--n",
                "3",
                "--out",
                s(dir.path()),
            ],
            "cannot",
        ),
        (
            vec![
                "corpus",
                "--from",
                s(&good),
                "--n",
                "3",
                "--out",
                "/nonexistent-dir/c.jsonl",
            ],
            "cannot open `/nonexistent-dir/c.jsonl`",
        ),
        (
            vec!["mutate", s(&good), "--n", "3", "--widths", "gauss:4..=8"],
            "unknown width set `gauss`",
        ),
        (
            vec!["mutate", s(&good), "--n", "3", "--widths", "uniform:64..=8"],
            "the range `64..=8` is empty",
        ),
    ];
    for (args, message) in cases {
        let run = nas(&args);
        assert!(!run.status.success(), "{args:?} succeeded");
        assert!(
            stderr(&run).contains(message),
            "{args:?}: expected `{message}` in:\n{}",
            stderr(&run)
        );
    }
    assert!(!out.exists(), "no corpus is written from bad input");
    // A file that is not a corpus is never appended to.
    let notes = write(dir.path(), "notes.txt", "my notes\n");
    let run = nas(&["corpus", "--from", s(&good), "--n", "3", "--out", s(&notes)]);
    assert!(!run.status.success());
    assert!(
        stderr(&run).contains("line 1 is not a corpus record"),
        "{}",
        stderr(&run)
    );
    assert_eq!(std::fs::read_to_string(&notes).unwrap(), "my notes\n");
    // A space that runs dry is reported, not looped on.
    let tiny = write(
        dir.path(),
        "tiny.nas",
        "net T(input = [4], classes = 2) { linear(4 -> 5); relu; linear(5 -> 2); }",
    );
    let run = nas(&["mutate", s(&tiny), "--n", "5", "--widths", "uniform:4..=6"]);
    assert!(!run.status.success());
    assert!(stderr(&run).contains("looks exhausted"), "{}", stderr(&run));
}

/// Runs `corpus pairs` on `corpus` and `results`, writing `out`.
fn run_pairs(corpus: &Path, results: &Path, out: &Path, extra: &[&str]) -> Output {
    let mut args = vec![
        "corpus",
        "pairs",
        "--corpus",
        s(corpus),
        "--results",
        s(results),
        "--out",
        s(out),
    ];
    args.extend_from_slice(extra);
    nas(&args)
}

/// `corpus pairs`: a corpus joined with measured results (here a JSON-lines file
/// whose accuracy grows with the total width, so "better" is known) gives chat
/// lines whose assistant answer is a better network of the same fidelity, chosen
/// among the mutation neighbours where one is better; bad results are clear errors.
#[test]
fn corpus_pairs_answer_each_network_with_a_better_neighbour() {
    let dir = tempfile::tempdir().unwrap();
    let a = write(dir.path(), "a.nas", SEED_A);
    let corpus = dir.path().join("corpus.jsonl");
    let run = nas(&[
        "corpus",
        "--from",
        s(&a),
        "--n",
        "12",
        "--seed",
        "5",
        "--out",
        s(&corpus),
    ]);
    assert!(run.status.success(), "{}", stderr(&run));
    let records = lines(&corpus);
    // Accuracy: a strictly increasing function of the parameter count.
    let max = records
        .iter()
        .map(|r| r["params"].as_u64().unwrap())
        .max()
        .unwrap() as f64;
    let mut results = String::new();
    for r in &records {
        let acc = r["params"].as_u64().unwrap() as f64 / max * 0.9;
        results.push_str(&format!(
            "{{\"hash\": \"{}\", \"accuracy\": {acc}, \"epochs\": 2}}\n",
            r["hash"].as_str().unwrap()
        ));
    }
    let res = write(dir.path(), "results.jsonl", &results);
    let out = dir.path().join("pairs.jsonl");
    let run = run_pairs(&corpus, &res, &out, &["--style", "chat"]);
    assert!(run.status.success(), "{}", stderr(&run));
    let pairs = lines(&out);
    // Every network but the best (unique params here, or ties) is a worse side.
    assert!(pairs.len() >= 10, "{}", pairs.len());
    let identity = |source: &str| {
        let file = nas_dsl::parse_str(source).unwrap();
        nas_core::propose::identity(&file.nets[0])
    };
    let by_identity: std::collections::HashMap<String, &Value> = records
        .iter()
        .map(|r| (identity(r["source"].as_str().unwrap()), r))
        .collect();
    let mut neighbours = 0;
    for p in &pairs {
        let m = p["messages"].as_array().unwrap();
        assert_eq!(
            m.iter()
                .map(|x| x["role"].as_str().unwrap())
                .collect::<Vec<_>>(),
            ["system", "user", "assistant"]
        );
        let answer = m[2]["content"].as_str().unwrap();
        let better = answer
            .strip_prefix("```nas\n")
            .and_then(|t| t.strip_suffix("\n```"))
            .unwrap();
        let better_rec = by_identity[&identity(better)];
        assert_eq!(p["meta"]["better"], identity(better).as_str());
        let user = m[1]["content"].as_str().unwrap();
        assert!(user.contains("2 epochs"), "{user}");
        let worse_acc = p["meta"]["worse_accuracy"].as_f64().unwrap();
        let better_acc = p["meta"]["better_accuracy"].as_f64().unwrap();
        assert!(better_acc > worse_acc);
        assert!(better_rec["params"].as_u64().unwrap() as f64 / max * 0.9 > worse_acc);
        if p["meta"]["choice"] == "neighbour" {
            neighbours += 1;
        }
    }
    assert!(neighbours > 0, "no pair used a mutation neighbour");

    // The default, structured style: the proposer's raw-text prompt answered
    // with the better network's widths (the corpus holds width mutants).
    let structured = dir.path().join("structured.jsonl");
    let run = run_pairs(
        &corpus,
        &res,
        &structured,
        &["--widths", "uniform:4..=1024"],
    );
    assert!(run.status.success(), "{}", stderr(&run));
    let lines_s = lines(&structured);
    assert!(!lines_s.is_empty());
    for p in &lines_s {
        let m = p["messages"].as_array().unwrap();
        assert_eq!(m.len(), 2);
        assert_eq!(m[1]["role"], "assistant");
        let answer = m[1]["content"].as_str().unwrap();
        let widths: Value = serde_json::from_str(answer).unwrap();
        assert!(widths["c0"].is_u64(), "{answer}");
        assert_eq!(p["completion"], answer);
        assert!(
            p["prompt"]
                .as_str()
                .unwrap()
                .ends_with("that should reach a higher accuracy:\n")
        );
    }

    let bad = write(
        dir.path(),
        "bad.jsonl",
        &format!(
            "{{\"hash\": \"{}\", \"accuracy\": 1.5}}\n",
            records[0]["hash"].as_str().unwrap()
        ),
    );
    let run = run_pairs(&corpus, &bad, &out, &[]);
    assert_eq!(run.status.code(), Some(2));
    assert!(
        stderr(&run).contains("line 1: accuracy 1.5 is not in [0, 1]"),
        "{}",
        stderr(&run)
    );
    let unknown = write(
        dir.path(),
        "unknown.jsonl",
        "{\"hash\": \"abc\", \"accuracy\": 0.5}\n",
    );
    let run = run_pairs(&corpus, &unknown, &out, &[]);
    assert!(
        stderr(&run).contains("hash abc is not in the corpus"),
        "{}",
        stderr(&run)
    );
    let missing = dir.path().join("nope");
    let run = run_pairs(&corpus, &missing, &out, &[]);
    assert_eq!(run.status.code(), Some(2));
    assert!(stderr(&run).contains("nope"), "{}", stderr(&run));
}

#[test]
fn a_reader_that_stops_early_is_not_an_error() {
    // `nas-core mutate … | head -n 1`: the reader closes the pipe after one line.
    let dir = tempfile::tempdir().unwrap();
    let seed = write(dir.path(), "seed.nas", SEED_A);
    let mut child = Command::new(env!("CARGO_BIN_EXE_nas-core"))
        .args(["mutate", s(&seed), "--n", "2000", "--seed", "3"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = child.stdout.take().unwrap();
    let mut first = [0u8; 16];
    std::io::Read::read_exact(&mut out, &mut first).unwrap();
    drop(out);
    let result = child.wait_with_output().unwrap();
    let err = stderr(&result);
    assert!(!err.contains("panicked"), "stderr: {err}");
    assert_eq!(result.status.code(), Some(0), "stderr: {err}");
}

/// `corpus train`: the first N corpus members trained into a run store that
/// `corpus pairs` reads; running it again keeps what finished and adds members
/// when N grows; the task cannot change on a continued run; bad input is clear.
#[test]
fn corpus_train_trains_the_first_members_and_continues() {
    use nas_core::store::{SqliteStore, Store, TrialStatus};
    let dir = tempfile::tempdir().unwrap();
    let seed = concat!(env!("CARGO_MANIFEST_DIR"), "/../models/nas/small_cnn.nas");
    let corpus = dir.path().join("corpus.jsonl");
    let run = nas(&[
        "corpus",
        "--from",
        seed,
        "--n",
        "5",
        "--widths",
        "step:8..=64",
        "--out",
        s(&corpus),
    ]);
    assert!(run.status.success(), "{}", stderr(&run));
    let records = lines(&corpus);
    let out = dir.path().join("run");
    let tiny = [
        "--epochs",
        "1",
        "--train-size",
        "64",
        "--test-size",
        "32",
        "--batch",
        "32",
    ];
    let train = |n: &str, extra: &[&str]| {
        let mut args = vec![
            "corpus",
            "train",
            "--corpus",
            s(&corpus),
            "--n",
            n,
            "--out",
            s(&out),
        ];
        args.extend_from_slice(extra);
        nas(&args)
    };
    let run = train("3", &tiny);
    assert!(run.status.success(), "{}", stderr(&run));
    assert!(
        stderr(&run).contains("3 of 3 members trained"),
        "{}",
        stderr(&run)
    );
    let identity =
        |source: &str| nas_core::propose::identity(&nas_dsl::parse_str(source).unwrap().nets[0]);
    let first = SqliteStore::open(&out).unwrap().trials().unwrap();
    assert_eq!(first.len(), 3);
    for (t, r) in first.iter().zip(&records) {
        assert_eq!(t.status(), TrialStatus::Done);
        assert_eq!(t.trial.proposer, "corpus");
        assert_eq!(t.trial.hash, identity(r["source"].as_str().unwrap()));
        assert_eq!(t.trial.epochs, 1);
        assert!(t.accuracy.is_some());
    }
    // A larger N adds the next members; finished trainings are kept as they are.
    let run = train("5", &[]);
    assert!(run.status.success(), "{}", stderr(&run));
    assert!(
        stderr(&run).contains("5 members (3 already finished)"),
        "{}",
        stderr(&run)
    );
    let all = SqliteStore::open(&out).unwrap().trials().unwrap();
    assert_eq!(all.len(), 5);
    for (a, b) in first.iter().zip(&all) {
        assert_eq!(a.finished_at, b.finished_at);
        assert_eq!(a.accuracy, b.accuracy);
    }
    assert!(all.iter().all(|t| t.status() == TrialStatus::Done));
    // The run keeps its task.
    let run = train("5", &["--epochs", "2"]);
    assert!(!run.status.success());
    assert!(
        stderr(&run).contains("--epochs cannot change when continuing"),
        "{}",
        stderr(&run)
    );
    // Its results pair.
    let pairs = dir.path().join("pairs.jsonl");
    let run = run_pairs(&corpus, &out, &pairs, &["--style", "chat"]);
    let accuracies: HashSet<u64> = all
        .iter()
        .filter_map(|t| t.accuracy.map(f64::to_bits))
        .collect();
    if accuracies.len() > 1 {
        assert!(run.status.success(), "{}", stderr(&run));
        assert!(!lines(&pairs).is_empty());
    }
    // Bad input.
    let run = nas(&[
        "corpus",
        "train",
        "--corpus",
        "nope.jsonl",
        "--n",
        "2",
        "--out",
        s(&dir.path().join("r2")),
    ]);
    assert!(!run.status.success());
    assert!(stderr(&run).contains("nope.jsonl"), "{}", stderr(&run));
    let run = nas(&[
        "corpus",
        "train",
        "--corpus",
        s(&corpus),
        "--n",
        "0",
        "--out",
        s(&out),
    ]);
    assert!(!run.status.success());
}

/// `corpus train` in this process (`--jobs 1`) checks each member against the
/// memory budget before it trains, as a search and its workers do: a member
/// over `--max-memory` ends failed with the reason and is never trained.
#[test]
fn corpus_train_in_process_refuses_members_over_the_memory_budget() {
    use nas_core::store::{SqliteStore, Store, TrialStatus};
    let dir = tempfile::tempdir().unwrap();
    let seed = concat!(env!("CARGO_MANIFEST_DIR"), "/../models/nas/small_cnn.nas");
    let corpus = dir.path().join("corpus.jsonl");
    let run = nas(&["corpus", "--from", seed, "--n", "2", "--out", s(&corpus)]);
    assert!(run.status.success(), "{}", stderr(&run));
    let out = dir.path().join("run");
    // Every net needs the model's fixed 16 MiB and more: 16.5 MiB refuses all.
    let run = nas(&[
        "corpus",
        "train",
        "--corpus",
        s(&corpus),
        "--n",
        "2",
        "--out",
        s(&out),
        "--jobs",
        "1",
        "--epochs",
        "1",
        "--train-size",
        "64",
        "--test-size",
        "32",
        "--batch",
        "32",
        "--max-memory",
        "16.5M",
    ]);
    assert!(run.status.success(), "{}", stderr(&run));
    let trials = SqliteStore::open(&out).unwrap().trials().unwrap();
    assert_eq!(trials.len(), 2);
    for t in &trials {
        assert_eq!(t.status(), TrialStatus::Failed, "{t:?}");
        let error = t.trial.error.as_deref().unwrap_or("");
        assert!(error.starts_with("refused before training"), "{error}");
        assert!(error.contains("--max-memory"), "{error}");
        assert!(t.accuracy.is_none());
        assert_eq!(t.train_s, Some(0.0), "it was trained: {t:?}");
    }
}
