//! Fine-tuning pairs: evaluated networks joined into chat-format examples where
//! the user shows a network with its telemetry and the assistant answers with a
//! better one — the data for adapting a local model to this search.
//!
//! Evaluated networks come from search runs (`runs/<name>/nas.db`: every trial that
//! trained to the end) or from JSON lines `{"source" | "hash", "accuracy", …}`;
//! they are joined with the corpus by architecture identity, which adds the
//! corpus's mutation links. Each network is paired with a better one chosen on
//! purpose: the best better network among its mutation neighbours (its parent,
//! its children and its siblings), and only where it has none, a better network
//! drawn at random (seeded). Accuracies are only compared at the same fidelity
//! (epochs), and the best network of each fidelity is never a "worse" side.

use crate::propose::prompt::{self, Prompt, PromptInput, Style};
use crate::propose::{Budget, Context, Telemetry, identity};
use crate::store::{SqliteStore, Store, TrialStatus};
use nas_dsl::mutate::seed_rng;
use nas_dsl::mutate::{Arch, ValueSet};
use rand::RngExt;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::io::BufRead;
use std::path::{Path, PathBuf};

/// Why pairs could not be made.
#[derive(Debug, thiserror::Error)]
pub enum PairsError {
    /// A file could not be read.
    #[error("cannot read `{}`: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A line of a JSON-lines file is not what it should be.
    #[error("`{}` line {line}: {reason}", path.display())]
    BadLine {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        reason: String,
    },
    /// A run database could not be read.
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
}

/// One corpus record as read back (the fields pairs need).
#[derive(Debug, Deserialize)]
struct CorpusLine {
    hash: String,
    parent_hash: String,
    source: String,
}

/// A corpus entry keyed by architecture identity.
#[derive(Clone, Debug)]
struct CorpusEntry {
    source: String,
    parent: String,
}

/// The corpus: identity → entry, and content hash → identity.
#[derive(Debug, Default)]
pub struct Corpus {
    by_identity: HashMap<String, CorpusEntry>,
    identity_of: HashMap<String, String>,
}

impl Corpus {
    /// Reads a corpus file written by `nas-core corpus`. A trailing partial line
    /// (an interrupted write) is ignored; any other bad line is an error.
    pub fn read(path: &Path) -> Result<Corpus, PairsError> {
        let mut corpus = Corpus::default();
        for (line, text, last) in lines(path)? {
            let rec: CorpusLine = match serde_json::from_str(&text) {
                Ok(r) => r,
                Err(_) if last => break,
                Err(e) => return Err(bad(path, line, format!("not a corpus record ({e})"))),
            };
            let net = first_net(&rec.source).map_err(|r| bad(path, line, r))?;
            let id = identity(&net);
            corpus.identity_of.insert(rec.hash.clone(), id.clone());
            corpus.by_identity.insert(
                id,
                CorpusEntry {
                    source: rec.source,
                    parent: rec.parent_hash,
                },
            );
        }
        Ok(corpus)
    }

    /// How many records it holds.
    pub fn len(&self) -> usize {
        self.by_identity.len()
    }

    /// Whether it holds no record.
    pub fn is_empty(&self) -> bool {
        self.by_identity.is_empty()
    }

    /// The parent identity of a corpus record (the seed's content hash when the
    /// parent is not itself a record).
    fn parent_of(&self, id: &str) -> Option<String> {
        let entry = self.by_identity.get(id)?;
        Some(
            self.identity_of
                .get(&entry.parent)
                .cloned()
                .unwrap_or_else(|| entry.parent.clone()),
        )
    }
}

/// A measured network.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Evaluated {
    /// Architecture identity (see [`identity`]).
    pub id: String,
    /// Canonical source.
    pub source: String,
    /// The parent's identity, when known.
    pub parent: Option<String>,
    /// Test top-1 accuracy in `[0, 1]`.
    pub accuracy: f64,
    /// Test loss, when known.
    pub loss: Option<f64>,
    /// Epochs trained (the fidelity), when known.
    pub epochs: Option<u32>,
    /// Learnable parameters.
    pub params: u64,
    /// Multiply-accumulates per sample.
    pub flops: u64,
}

/// One line of a JSON-lines results file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ResultLine {
    #[serde(default)]
    source: Option<String>,
    #[serde(default)]
    hash: Option<String>,
    accuracy: f64,
    #[serde(default)]
    loss: Option<f64>,
    #[serde(default)]
    epochs: Option<u32>,
}

/// Reads results: a run directory (or its `nas.db`), whose finished trials are
/// taken, or a JSON-lines file of `{"source" | "hash", "accuracy", "loss"?,
/// "epochs"?}` where `hash` is a corpus record's hash. Joined with `corpus`.
pub fn read_results(path: &Path, corpus: &Corpus) -> Result<Vec<Evaluated>, PairsError> {
    let is_db = path.is_dir() || path.extension().is_some_and(|e| e == "db");
    if is_db {
        let dir = if path.is_dir() {
            path.to_path_buf()
        } else {
            path.parent().unwrap_or(Path::new(".")).to_path_buf()
        };
        return from_store(&SqliteStore::inspect(&dir)?, corpus);
    }
    let mut out = Vec::new();
    for (line, text, last) in lines(path)? {
        let rec: ResultLine = match serde_json::from_str(&text) {
            Ok(r) => r,
            Err(_) if last && !text.trim_end().ends_with('}') => break,
            Err(e) => return Err(bad(path, line, format!("not a result ({e})"))),
        };
        if !(rec.accuracy.is_finite() && (0.0..=1.0).contains(&rec.accuracy)) {
            return Err(bad(
                path,
                line,
                format!("accuracy {} is not in [0, 1]", rec.accuracy),
            ));
        }
        let source = match (&rec.source, &rec.hash) {
            (Some(s), _) => s.clone(),
            (None, Some(h)) => {
                let entry = corpus
                    .identity_of
                    .get(h)
                    .and_then(|id| corpus.by_identity.get(id))
                    .ok_or_else(|| bad(path, line, format!("hash {h} is not in the corpus")))?;
                entry.source.clone()
            }
            (None, None) => return Err(bad(path, line, "needs `source` or `hash`".into())),
        };
        let checked = nas_dsl::check_str(&source)
            .map_err(|e| bad(path, line, format!("the network does not check: {e}")))?;
        let Some(net) = checked.into_iter().next() else {
            return Err(bad(path, line, "the source holds no net".into()));
        };
        let id = identity(net.net());
        out.push(Evaluated {
            parent: corpus.parent_of(&id),
            source: nas_dsl::print(net.net()),
            params: net.params(),
            flops: net.flops(),
            id,
            accuracy: rec.accuracy,
            loss: rec.loss,
            epochs: rec.epochs,
        });
    }
    Ok(out)
}

fn from_store(store: &SqliteStore, corpus: &Corpus) -> Result<Vec<Evaluated>, PairsError> {
    let mut out = Vec::new();
    for t in store.trials()? {
        let Some(accuracy) = t.accuracy.filter(|a| a.is_finite()) else {
            continue;
        };
        if t.status() != TrialStatus::Done || t.trial.hash.is_empty() {
            continue;
        }
        let id = t.trial.hash.clone();
        out.push(Evaluated {
            parent: corpus.parent_of(&id).or(t.trial.parent.clone()),
            source: t.trial.source.clone(),
            accuracy,
            loss: t.test_loss,
            epochs: Some(t.trial.epochs),
            params: t.trial.params.unwrap_or(0),
            flops: t.trial.flops.unwrap_or(0),
            id,
        });
    }
    Ok(out)
}

/// How the better side of a pair was chosen.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Choice {
    /// The best better network among the mutation neighbours.
    Neighbour,
    /// No neighbour is better: a better network drawn at random.
    RandomBetter,
}

/// A worse network and the better one it is paired with.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Pair {
    /// The network shown to the model.
    pub worse: Evaluated,
    /// The network the model should answer with.
    pub better: Evaluated,
    /// How `better` was chosen.
    pub choice: Choice,
}

/// Pairs every evaluated network with a better one (see the module docs).
/// Several measurements of one architecture at one fidelity are averaged.
pub fn make_pairs(results: Vec<Evaluated>, seed: u64) -> Vec<Pair> {
    // fidelity → identity → (first record, accuracy sum, count)
    type Measured = BTreeMap<String, (Evaluated, f64, u32)>;
    let mut groups: BTreeMap<Option<u32>, Measured> = BTreeMap::new();
    for r in results {
        let slot = groups
            .entry(r.epochs)
            .or_default()
            .entry(r.id.clone())
            .or_insert_with(|| (r.clone(), 0.0, 0));
        slot.1 += r.accuracy;
        slot.2 += 1;
        if slot.0.parent.is_none() {
            slot.0.parent = r.parent;
        }
    }
    let mut rng = seed_rng(seed);
    let mut pairs = Vec::new();
    for group in groups.into_values() {
        let nets: Vec<Evaluated> = group
            .into_values()
            .map(|(mut e, sum, n)| {
                e.accuracy = sum / f64::from(n);
                e
            })
            .collect();
        for w in &nets {
            let better: Vec<&Evaluated> = nets.iter().filter(|v| v.accuracy > w.accuracy).collect();
            if better.is_empty() {
                continue;
            }
            let neighbour = better
                .iter()
                .filter(|v| are_neighbours(w, v))
                .max_by(|a, b| a.accuracy.total_cmp(&b.accuracy).then(b.id.cmp(&a.id)));
            let (better, choice) = match neighbour {
                Some(v) => ((*v).clone(), Choice::Neighbour),
                None => (
                    better[rng.random_range(0..better.len())].clone(),
                    Choice::RandomBetter,
                ),
            };
            pairs.push(Pair {
                worse: w.clone(),
                better,
                choice,
            });
        }
    }
    pairs
}

fn are_neighbours(a: &Evaluated, b: &Evaluated) -> bool {
    a.parent.as_deref() == Some(b.id.as_str())
        || b.parent.as_deref() == Some(a.id.as_str())
        || (a.parent.is_some() && a.parent == b.parent)
}

/// One training line for `pair`: exactly the prompt the proposer sends (in
/// `style`, with the widths `widths` allows) when the worse network, with its
/// measured telemetry, is the parent, answered with the better network in that
/// style ([`prompt::answer`]). TRL's conversational form
/// `{"messages": [..., {"role": "assistant", ...}]}`, plus `prompt` and
/// `completion` for the raw-text styles, and `meta`. `None` when the better
/// network cannot be said in `style` (structured: it is not a width mutant of
/// the worse one on the allowed widths); an error when a source does not check.
pub fn to_line(
    pair: &Pair,
    style: Style,
    widths: ValueSet,
) -> Result<Option<serde_json::Value>, String> {
    let check = |e: &Evaluated| {
        nas_dsl::check_str(&e.source)
            .map_err(|err| format!("network {} does not check: {err}", e.id))?
            .into_iter()
            .next()
            .ok_or_else(|| format!("network {} holds no net", e.id))
    };
    let (worse, better) = (check(&pair.worse)?, check(&pair.better)?);
    let mut ctx = Context::new(worse, Budget::default(), widths);
    let parent = ctx.seed().clone();
    ctx.record(
        parent.clone(),
        Some(Telemetry {
            rungs: Vec::new(),
            accuracy: Some(pair.worse.accuracy),
            loss: pair.worse.loss,
            epochs: pair.worse.epochs,
        }),
    );
    let Some(answer) = prompt::answer(style, &parent, &Arch::new(better), &widths) else {
        return Ok(None);
    };
    let request = prompt::render(style, &PromptInput::from_context(&ctx, &parent));
    let mut messages: Vec<serde_json::Value> = crate::propose::llm::messages(&request)
        .iter()
        .map(|m| serde_json::json!({"role": m.role.as_str(), "content": m.content}))
        .collect();
    messages.push(serde_json::json!({"role": "assistant", "content": answer}));
    let mut line = serde_json::json!({
        "messages": messages,
        "meta": {
            "style": style.as_str(),
            "worse": pair.worse.id,
            "better": pair.better.id,
            "worse_accuracy": pair.worse.accuracy,
            "better_accuracy": pair.better.accuracy,
            "epochs": pair.worse.epochs,
            "choice": pair.choice,
        }
    });
    if let Prompt::Completion { text } = &request {
        line["prompt"] = serde_json::json!(text);
        line["completion"] = serde_json::json!(answer);
    }
    Ok(Some(line))
}

/// The JSON lines of `pairs` in `style` ([`to_line`]), and how many were written
/// (pairs whose better network cannot be said in `style` are left out).
pub fn to_lines(pairs: &[Pair], style: Style, widths: ValueSet) -> Result<(String, usize), String> {
    let mut text = String::new();
    let mut written = 0;
    for p in pairs {
        if let Some(line) = to_line(p, style, widths)? {
            text.push_str(&line.to_string());
            text.push('\n');
            written += 1;
        }
    }
    Ok((text, written))
}

fn bad(path: &Path, line: usize, reason: String) -> PairsError {
    PairsError::BadLine {
        path: path.to_path_buf(),
        line,
        reason,
    }
}

fn first_net(source: &str) -> Result<nas_dsl::Net, String> {
    let file = nas_dsl::parse_str(source).map_err(|e| format!("the source does not parse: {e}"))?;
    file.nets
        .into_iter()
        .next()
        .ok_or_else(|| "the source holds no net".to_string())
}

/// The non-empty lines of a file: (1-based number, text, whether it is the last
/// line and has no newline).
fn lines(path: &Path) -> Result<Vec<(usize, String, bool)>, PairsError> {
    let io = |source| PairsError::Io {
        path: path.to_path_buf(),
        source,
    };
    let file = std::fs::File::open(path).map_err(io)?;
    let mut reader = std::io::BufReader::new(file);
    let mut out = Vec::new();
    let mut buf = String::new();
    let mut n = 0;
    loop {
        buf.clear();
        let read = reader.read_line(&mut buf).map_err(io)?;
        if read == 0 {
            break;
        }
        n += 1;
        let last = !buf.ends_with('\n');
        if !buf.trim().is_empty() {
            out.push((n, buf.trim_end().to_string(), last));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(id: &str, parent: Option<&str>, acc: f64, epochs: u32) -> Evaluated {
        Evaluated {
            id: id.into(),
            source: format!("net {id}"),
            parent: parent.map(Into::into),
            accuracy: acc,
            loss: None,
            epochs: Some(epochs),
            params: 1,
            flops: 1,
        }
    }

    #[test]
    fn the_best_neighbour_is_preferred_over_a_better_stranger() {
        // p → a, p → b (siblings), a → c (child); s is unrelated and the best.
        let nets = vec![
            e("p", None, 0.30, 2),
            e("a", Some("p"), 0.40, 2),
            e("b", Some("p"), 0.50, 2),
            e("c", Some("a"), 0.45, 2),
            e("s", Some("q"), 0.90, 2),
        ];
        let pairs = make_pairs(nets, 0);
        let of = |w: &str| pairs.iter().find(|p| p.worse.id == w).unwrap();
        // a's neighbours: p (worse), b (sibling, 0.50), c (child, 0.45) → b.
        assert_eq!(of("a").better.id, "b");
        assert_eq!(of("a").choice, Choice::Neighbour);
        // p's neighbours: a, b → b (not s, which is better but unrelated).
        assert_eq!(of("p").better.id, "b");
        // c's only neighbour a is worse → a random better one.
        assert_eq!(of("c").choice, Choice::RandomBetter);
        assert!(of("c").better.accuracy > 0.45);
        // The best network is never a worse side.
        assert!(pairs.iter().all(|p| p.worse.id != "s"));
        assert!(pairs.iter().all(|p| p.better.accuracy > p.worse.accuracy));
    }

    #[test]
    fn fidelities_are_not_mixed_and_repeats_are_averaged() {
        let nets = vec![
            e("a", None, 0.20, 1),
            e("b", None, 0.90, 5),
            e("a", None, 0.60, 5),
            e("a", None, 0.40, 5),
        ];
        let pairs = make_pairs(nets, 0);
        assert_eq!(pairs.len(), 1);
        assert_eq!(pairs[0].worse.id, "a");
        assert_eq!(pairs[0].worse.epochs, Some(5));
        assert!((pairs[0].worse.accuracy - 0.5).abs() < 1e-12);
    }

    #[test]
    fn random_choices_are_seeded() {
        let nets: Vec<_> = (0..20)
            .map(|i| {
                e(
                    &format!("n{i}"),
                    Some(&format!("p{i}")),
                    f64::from(i) / 20.0,
                    1,
                )
            })
            .collect();
        let a = make_pairs(nets.clone(), 3);
        let b = make_pairs(nets, 3);
        assert_eq!(a, b);
        assert_eq!(a.len(), 19);
    }

    const SEED: &str = include_str!("../../models/nas/small_cnn.nas");

    /// The seed (measured 25 %) and a wider copy (50 %) as a pair.
    fn real_pair() -> Pair {
        let wider = SEED
            .replace("conv(3 -> 16", "conv(3 -> 24")
            .replace("conv(16 -> 32", "conv(24 -> 32");
        let real = |id: &str, source: &str, acc: f64| Evaluated {
            source: source.to_string(),
            ..e(id, None, acc, 1)
        };
        Pair {
            worse: real("a", SEED, 0.25),
            better: real("b", &wider, 0.5),
            choice: Choice::RandomBetter,
        }
    }

    #[test]
    fn pairs_are_the_proposers_prompt_answered_with_the_better_network() {
        let p = real_pair();
        let widths: ValueSet = "step:8..=64".parse().unwrap();
        let worse = nas_dsl::check_str(SEED).unwrap().remove(0);
        for style in [Style::Structured, Style::Chat, Style::Completion] {
            let v = to_line(&p, style, widths).unwrap().unwrap();
            let m = v["messages"].as_array().unwrap();
            // The prompt is the proposer's own for this parent and telemetry.
            let mut ctx = Context::new(worse.clone(), Budget::default(), widths);
            let parent = ctx.seed().clone();
            ctx.record(
                parent.clone(),
                Some(Telemetry {
                    rungs: Vec::new(),
                    accuracy: Some(0.25),
                    loss: None,
                    epochs: Some(1),
                }),
            );
            let request = prompt::render(style, &PromptInput::from_context(&ctx, &parent));
            let sent = crate::propose::llm::messages(&request);
            assert_eq!(m.len(), sent.len() + 1, "{style:?}");
            for (line, msg) in m.iter().zip(&sent) {
                assert_eq!(line["content"], msg.content.as_str());
            }
            let text = request.to_text();
            assert!(text.contains("accuracy 25.0%, 1 epochs"), "{text}");
            let answer = m.last().unwrap()["content"].as_str().unwrap();
            assert_eq!(m.last().unwrap()["role"], "assistant");
            match style {
                Style::Structured => {
                    assert_eq!(answer, r#"{"c0": 24, "c1": 32, "c2": 64}"#);
                    assert_eq!(v["completion"], answer);
                    assert_eq!(v["prompt"], text.as_str());
                }
                Style::Chat => {
                    assert!(answer.starts_with("```nas\n"), "{answer}");
                    assert!(answer.contains("net SmallCnn("), "{answer}");
                    assert!(answer.contains("conv(3 -> 24"), "{answer}");
                    assert!(v.get("prompt").is_none());
                }
                Style::Completion => {
                    assert!(answer.ends_with("}\n```"), "{answer}");
                    assert!(text.ends_with("```nas\n"));
                }
            }
            assert_eq!(v["meta"]["choice"], "random_better");
        }
    }

    #[test]
    fn a_better_network_that_is_not_a_width_mutant_has_no_structured_line() {
        let mut p = real_pair();
        p.better.source = SEED.replace("    gap;", "    relu;\n    gap;");
        let widths: ValueSet = "step:8..=64".parse().unwrap();
        assert!(to_line(&p, Style::Structured, widths).unwrap().is_none());
        assert!(to_line(&p, Style::Chat, widths).unwrap().is_some());
        // A width mutant off the grid: the proposer could not answer it.
        p.better.source = SEED
            .replace("conv(3 -> 16", "conv(3 -> 20")
            .replace("conv(16 -> 32", "conv(20 -> 32");
        assert!(to_line(&p, Style::Structured, widths).unwrap().is_none());
        let wide: ValueSet = "uniform:4..=1024".parse().unwrap();
        assert!(to_line(&p, Style::Structured, wide).unwrap().is_some());
        p.worse.source = "net Broken(".into();
        assert!(to_line(&p, Style::Chat, widths).is_err());
    }
}
