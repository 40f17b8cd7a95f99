//! The experiment's one HTML page: what each stage did and took, the fine-tuning
//! loss curve, the probe's valid and duplicate rates of base vs tuned proposals on
//! held-out parents, and the comparison (best-of-run statistics, tests, best-so-far
//! curves, valid and duplicate rates per arm).

use super::Record;
use super::probe::ProbeResult;
use crate::report::{Comparison, RunData, escape, page, pct};
use crate::store::TrialStatus;
use serde_json::Value;
use std::fmt::Write as _;

/// The report file in an experiment's directory.
pub const REPORT_FILE: &str = "report.html";

fn num(v: &Value, k: &str, digits: usize) -> String {
    v.get(k)
        .and_then(Value::as_f64)
        .map_or_else(|| "n/a".into(), |x| format!("{x:.digits$}"))
}

fn minutes(s: f64) -> String {
    if s >= 90.0 {
        format!("{:.1} min", s / 60.0)
    } else {
        format!("{s:.0} s")
    }
}

/// The size of what an arm proposed: what a tuned model learned shows here first.
#[derive(Clone, Debug, PartialEq)]
pub struct Sizes {
    /// The arm.
    pub arm: String,
    /// Trained proposals (the seed left out).
    pub trained: usize,
    /// Their mean parameter count.
    pub mean_params: f64,
    /// How many have more parameters than the seed network.
    pub larger_than_seed: usize,
}

/// The sizes of each arm's trained proposals over its runs.
pub fn proposal_sizes(arms: &[(String, Vec<&RunData>)]) -> Vec<Sizes> {
    arms.iter()
        .map(|(arm, runs)| {
            let (mut n, mut sum, mut larger) = (0usize, 0.0, 0usize);
            for r in runs {
                let seed = r
                    .search()
                    .find(|t| t.trial.step == 0)
                    .and_then(|t| t.trial.params);
                for t in r
                    .search()
                    .filter(|t| t.trial.step > 0 && t.status() == TrialStatus::Done)
                {
                    if let Some(p) = t.trial.params {
                        n += 1;
                        sum += p as f64;
                        if seed.is_some_and(|s| p > s) {
                            larger += 1;
                        }
                    }
                }
            }
            Sizes {
                arm: arm.clone(),
                trained: n,
                mean_params: if n == 0 { 0.0 } else { sum / n as f64 },
                larger_than_seed: larger,
            }
        })
        .collect()
}

/// What the page is made of.
pub struct Parts<'a> {
    /// The record (configuration and stages).
    pub record: &'a Record,
    /// The fine-tuning loss plot (SVG), if drawn.
    pub loss_svg: Option<String>,
    /// The probe per model.
    pub probe: &'a [ProbeResult],
    /// The comparison and its body (statistics, curves, runs).
    pub comparison: (&'a Comparison, String),
    /// The sizes of each arm's proposals in the comparison.
    pub sizes: Vec<Sizes>,
}

/// Renders the page.
pub fn render(parts: &Parts) -> String {
    let r = parts.record;
    let c = &r.config;
    let title = format!("Experiment {}", c.out.display());
    let mut b = format!("<h1>{}</h1>\n", escape(&title));
    let _ = writeln!(
        b,
        "<p>Does fine-tuning the proposer on a trained corpus make it propose better networks? A corpus of {} width mutants of the seed network, {} of them trained for {} epoch(s) on the {} task; fine-tuning pairs (a network answered by a better one, in the {} prompt style); a LoRA fine-tune of the base model; then the base and the tuned model (base + adapter) against {} in {} runs each of {} proposals from the seed network.</p>",
        c.corpus.size,
        c.corpus.train,
        c.search.epochs,
        escape(&c.search.train.dataset),
        escape(&c.pairs.style),
        escape(&c.compare.baselines.join(" and ")),
        c.compare.seeds,
        c.search.trials
    );
    b.push_str("<h2>Stages</h2>\n<table>\n<tr><th class=\"l\">stage</th><th>time</th><th class=\"l\">figures</th></tr>\n");
    let mut total = 0.0;
    for s in &r.stages {
        total += s.seconds;
        let _ = writeln!(
            b,
            "<tr><td class=\"l\">{}</td><td>{}</td><td class=\"l\"><code>{}</code></td></tr>",
            escape(&s.name),
            minutes(s.seconds),
            escape(&s.summary.to_string())
        );
    }
    let _ = writeln!(
        b,
        "<tr><td class=\"l\"><b>total</b></td><td><b>{}</b></td><td></td></tr>\n</table>",
        minutes(total)
    );

    if let Some(ft) = r.stage("finetune") {
        let v = &ft.summary;
        b.push_str("<h2>Fine-tuning</h2>\n");
        let _ = writeln!(
            b,
            "<p>{} training pairs ({} of them held out inside the fine-tune for its loss), {} steps of batch {}, LoRA rank {} / alpha {} on {}, learning rate {}: <b>{} s per step</b>, peak memory {} MiB. Answer-token loss on the training pairs {} → {}, on the fine-tune's held-out pairs {} → {}.</p>",
            v["pairs"],
            v["held_out"],
            c.finetune.steps,
            c.finetune.batch,
            c.finetune.lora_rank,
            c.finetune.lora_alpha,
            escape(&c.finetune.targets.join(", ")),
            c.finetune.lr,
            num(v, "seconds_per_step", 2),
            v["peak_rss_mb"],
            num(v, "train_loss_before", 4),
            num(v, "train_loss_after", 4),
            num(v, "held_out_loss_before", 4),
            num(v, "held_out_loss_after", 4),
        );
        if let Some(svg) = &parts.loss_svg {
            b.push_str(svg);
        }
    }

    if !parts.probe.is_empty() {
        b.push_str("<h2>Proposals on held-out parents</h2>\n<p>Each parent is a network held out of the fine-tuning pairs, shown with its measured accuracy as in the pairs; the first answer is judged (no repair round). A duplicate repeats the parent; \"better neighbour\" is the measured better network of the parent's pair.</p>\n<table>\n<tr><th class=\"l\">model</th><th>parents</th><th>proposals</th><th>valid</th><th>duplicates</th><th>other invalid</th><th>better neighbour</th><th>distinct valid</th><th>median s</th><th class=\"l\">outcomes</th></tr>\n");
        for p in parts.probe {
            let outcomes: Vec<String> =
                p.outcomes.iter().map(|(k, n)| format!("{k} {n}")).collect();
            let _ = writeln!(
                b,
                "<tr><td class=\"l\">{}</td><td>{}</td><td>{}</td><td>{:.1}% ({})</td><td>{:.1}% ({})</td><td>{}</td><td>{}</td><td>{}</td><td>{:.2}</td><td class=\"l\">{}</td></tr>",
                escape(&p.arm),
                p.parents,
                p.proposals,
                100.0 * p.valid_rate(),
                p.valid,
                100.0 * p.duplicate_rate(),
                p.duplicates,
                p.proposals - p.valid - p.duplicates,
                p.better_neighbour,
                p.distinct_valid,
                p.median_seconds,
                escape(&outcomes.join(", "))
            );
        }
        b.push_str("</table>\n");
    }

    {
        let (cmp, body) = &parts.comparison;
        b.push_str("<h2>Search: base vs tuned vs baselines</h2>\n");
        let means: Vec<String> = cmp
            .proposers
            .iter()
            .map(|p| format!("{} {}", p.proposer, pct(p.summary.map(|s| s.mean))))
            .collect();
        let _ = writeln!(
            b,
            "<p>Mean best-of-run accuracy: {}.</p>",
            escape(&means.join(", "))
        );
        if !parts.sizes.is_empty() {
            b.push_str("<p>What each arm proposed (trained proposals over all its runs):</p>\n<table>\n<tr><th class=\"l\">arm</th><th>trained proposals</th><th>mean parameters</th><th>larger than the seed</th></tr>\n");
            for z in &parts.sizes {
                let _ = writeln!(
                    b,
                    "<tr><td class=\"l\">{}</td><td>{}</td><td>{:.0}</td><td>{} ({:.0}%)</td></tr>",
                    escape(&z.arm),
                    z.trained,
                    z.mean_params,
                    z.larger_than_seed,
                    100.0 * crate::report::share(z.larger_than_seed, z.trained)
                );
            }
            b.push_str("</table>\n");
        }
        b.push_str(body);
    }
    page(&title, &b)
}
