//! `nas-core compare`: runs each proposer from the same seed network with the same
//! budget, trainer and hyper-parameters for every seed, then reports best-of-run
//! accuracy per proposer (mean, median, spread), the Mann–Whitney U and Welch
//! p-values, Cliff's delta and the valid-proposal rates. Each run is an ordinary
//! run directory under the comparison's; rerunning the command continues it.

use super::evolve::{Reporter, SearchArgs, with_log};
use crate::evolve::{Evolve, EvolveError, ProposerKind, SearchConfig, TrainCache, default_name};
use crate::report::{self, Comparison, RunData};
use anyhow::{Context as _, bail};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// The comparison's record in its directory.
pub const COMPARE_FILE: &str = "compare.json";

fn proposer_arg(s: &str) -> Result<ProposerKind, String> {
    match ProposerKind::parse(s) {
        Ok(ProposerKind::Auto) => {
            Err("`auto` is not a proposer to compare; name `ollama` or `mutate` explicitly".into())
        }
        Ok(p) => Ok(p),
        Err(EvolveError::Config(m)) => Err(m),
        Err(e) => Err(e.to_string()),
    }
}

/// Named arms: `NAME=PROPOSER[,model=M][,url=U][,style=S]`, e.g. the base model, a
/// fine-tuned one and random search in one comparison.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Arm {
    /// The arm's name (its runs' directories and its rows in the report).
    pub name: String,
    /// The proposer (`ollama`, `openai`, `mutate`, `random`).
    pub proposer: String,
    /// The LLM's model name on its server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// The LLM server's URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// The prompt style.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub style: Option<String>,
}

impl Arm {
    /// The arm that is just a proposer (named after it).
    pub fn plain(p: ProposerKind) -> Arm {
        Arm {
            name: p.as_str().into(),
            proposer: p.as_str().into(),
            model: None,
            url: None,
            style: None,
        }
    }

    /// Its settings applied to a run's configuration.
    pub fn apply(&self, cfg: &mut SearchConfig) -> Result<(), EvolveError> {
        cfg.proposer = ProposerKind::parse(&self.proposer)?;
        if let Some(m) = &self.model {
            cfg.llm.model = m.clone();
        }
        if let Some(u) = &self.url {
            cfg.llm.url = Some(u.clone());
        }
        if let Some(st) = &self.style {
            cfg.llm.style = st.clone();
        }
        Ok(())
    }
}

/// Parses `NAME=PROPOSER[,model=M][,url=U][,style=S]`.
pub fn arm_arg(s: &str) -> Result<Arm, String> {
    let (name, rest) = s
        .split_once('=')
        .ok_or_else(|| format!("`{s}`: an arm is NAME=PROPOSER[,model=M][,url=U][,style=S]"))?;
    let name = name.trim();
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return Err(format!(
            "`{name}`: an arm's name is letters, digits, `-` and `_` (it names directories)"
        ));
    }
    let mut parts = rest.split(',');
    let proposer = proposer_arg(parts.next().unwrap_or("").trim())?;
    let mut arm = Arm::plain(proposer);
    arm.name = name.into();
    for part in parts {
        let (k, v) = part
            .split_once('=')
            .ok_or_else(|| format!("`{part}`: expected model=…, url=… or style=…"))?;
        let v = Some(v.trim().to_string());
        match k.trim() {
            "model" => arm.model = v,
            "url" => arm.url = v,
            "style" => {
                // Refused here, before any arm runs, not when its first run starts.
                let st = v.as_deref().unwrap_or("");
                <crate::propose::Style as clap::ValueEnum>::from_str(st, true)
                    .map_err(|_| format!("`{st}`: a style is structured, chat or completion"))?;
                arm.style = v;
            }
            other => return Err(format!("`{other}`: an arm takes model=, url= and style=")),
        }
    }
    Ok(arm)
}

/// Compare proposers over repeated runs from the same seed network.
///
/// For every seed k in 0..N and every proposer, runs a search with search seed
/// `--seed + k` and training seed `--train-seed + k` (the same for all proposers
/// at that k), the same budget (`--trials`; no time budget unless given) and the
/// same trainer. Prints per-proposer best-of-run accuracy, the two-sided
/// Mann–Whitney U and Welch t-test p-values, Cliff's delta and valid-proposal
/// rates, and writes `report.html` and `compare.json` in `runs/<name>/`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Comma-separated proposers, e.g. `mutate,random` or `ollama,random`.
    #[arg(long, value_delimiter = ',', value_parser = proposer_arg, default_value = "mutate,random")]
    pub proposers: Vec<ProposerKind>,

    /// A named arm instead of `--proposers` (repeat it): `NAME=PROPOSER[,model=M]
    /// [,url=U][,style=S]`, e.g. `--arm base=ollama,model=gemma3:270m --arm
    /// tuned=ollama,model=nas-tuned --arm random=random`.
    #[arg(long = "arm", value_parser = arm_arg, value_name = "NAME=PROPOSER,…", conflicts_with = "proposers")]
    pub arms: Vec<Arm>,

    /// Runs per proposer (seeds 0..N).
    #[arg(long, default_value_t = 5, value_name = "N")]
    pub seeds: u64,

    /// Search settings shared by every run.
    #[command(flatten)]
    pub search: SearchArgs,

    /// Print the comparison as JSON on standard output.
    #[arg(long)]
    pub json: bool,
}

/// One run of a comparison.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct RunRef {
    proposer: String,
    seed: u64,
    dir: String,
}

/// What `compare.json` holds.
#[derive(Debug, Serialize, Deserialize)]
struct Record {
    proposers: Vec<String>,
    #[serde(default)]
    arms: Vec<Arm>,
    seeds: u64,
    runs: Vec<RunRef>,
    #[serde(default, skip_deserializing)]
    comparison: Option<Comparison>,
}

/// Whether `dir` is a comparison's directory.
pub fn is_comparison(dir: &Path) -> bool {
    dir.join(COMPARE_FILE).is_file()
}

/// A proposer's name and its runs (directory, loaded data).
pub(crate) type Group = (String, Vec<(PathBuf, RunData)>);

/// Loads every run of a comparison, grouped by proposer in the recorded order.
fn load(dir: &Path, record: &Record) -> anyhow::Result<Vec<Group>> {
    let mut groups: Vec<Group> = record
        .proposers
        .iter()
        .map(|p| (p.clone(), Vec::new()))
        .collect();
    for r in &record.runs {
        let run_dir = dir.join(&r.dir);
        if !run_dir.join(crate::store::sqlite::DB_FILE).exists() {
            continue;
        }
        let run = crate::evolve::load_run(&run_dir)?;
        if let Some(g) = groups.iter_mut().find(|g| g.0 == r.proposer) {
            g.1.push((run_dir, run));
        }
    }
    Ok(groups)
}

/// The comparison of a record's runs, and the runs grouped by arm.
fn compute(dir: &Path, record: &Record) -> anyhow::Result<(Comparison, Vec<Group>)> {
    let groups = load(dir, record)?;
    let plain: Vec<(String, Vec<RunData>)> = groups
        .iter()
        .map(|(p, runs)| (p.clone(), runs.iter().map(|(_, r)| r.clone()).collect()))
        .collect();
    Ok((Comparison::new(&plain), groups))
}

/// Computes the comparison and writes its report and record.
fn write(dir: &Path, mut record: Record) -> anyhow::Result<Comparison> {
    let (comparison, groups) = compute(dir, &record)?;
    let title = format!(
        "Comparison {}: {} ({} seeds)",
        dir.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        record.proposers.join(" vs "),
        record.seeds
    );
    let html = comparison.render(&title, &groups);
    let path = dir.join(report::REPORT_FILE);
    std::fs::write(&path, html).with_context(|| format!("cannot write `{}`", path.display()))?;
    record.comparison = Some(comparison.clone());
    let path = dir.join(COMPARE_FILE);
    std::fs::write(&path, serde_json::to_string_pretty(&record)?)
        .with_context(|| format!("cannot write `{}`", path.display()))?;
    Ok(comparison)
}

/// The comparison record in `dir`.
fn read_record(dir: &Path) -> anyhow::Result<Record> {
    let path = dir.join(COMPARE_FILE);
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read `{}`", path.display()))?;
    serde_json::from_str(&text)
        .with_context(|| format!("`{}` is not a comparison record", path.display()))
}

/// A comparison's statistics and its runs, grouped by arm, from its directory.
pub(crate) fn load_comparison(dir: &Path) -> anyhow::Result<(Comparison, Vec<Group>)> {
    compute(dir, &read_record(dir)?)
}

/// Rewrites a comparison's report from its runs.
pub fn rewrite_report(dir: &Path) -> anyhow::Result<Comparison> {
    write(dir, read_record(dir)?)
}

/// Runs (or continues) a comparison of `arms` in `dir`: for every seed k in
/// `0..seeds` and every arm, a search from `base` with search seed `base.seed + k`
/// and training seed `base.train.seed + k`; writes `compare.json` and the report.
/// A continued run keeps its settings but takes each arm's server URL anew (an
/// experiment starts its servers on fresh ports).
pub(crate) fn run_arms(
    base: &SearchConfig,
    arms: &[Arm],
    seeds: u64,
    dir: &Path,
) -> anyhow::Result<Comparison> {
    if dir.exists() && !dir.is_dir() {
        bail!("`{}` is not a directory", dir.display());
    }
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create `{}`", dir.display()))?;
    let mut runs = Vec::new();
    for k in 0..seeds {
        for a in arms {
            runs.push(RunRef {
                proposer: a.name.clone(),
                seed: k,
                dir: format!("{}-s{k}", a.name),
            });
        }
    }
    let record = Record {
        proposers: arms.iter().map(|a| a.name.clone()).collect(),
        arms: arms.to_vec(),
        seeds,
        runs: runs.clone(),
        comparison: None,
    };
    std::fs::write(
        dir.join(COMPARE_FILE),
        serde_json::to_string_pretty(&record)?,
    )
    .with_context(|| format!("cannot write into `{}`", dir.display()))?;
    eprintln!(
        "comparison in {}: {} × {} runs of {} proposals",
        dir.display(),
        arms.len(),
        seeds,
        base.trials
    );
    let cache = TrainCache::default();
    for r in &runs {
        let mut cfg = base.clone();
        cfg.runs_dir = dir.to_path_buf();
        cfg.name = Some(r.dir.clone());
        let arm = arms
            .iter()
            .find(|a| a.name == r.proposer)
            .context("a run of an unknown arm")?;
        arm.apply(&mut cfg)?;
        cfg.seed = base.seed.wrapping_add(r.seed);
        cfg.train.seed = base.train.seed.wrapping_add(r.seed);
        let run_dir = dir.join(&r.dir);
        let evolve = if run_dir.join(crate::store::sqlite::DB_FILE).exists() {
            let (trials, final_epochs, url) = (cfg.trials, cfg.final_epochs, arm.url.clone());
            Evolve::resume(&run_dir, |c| {
                c.trials = trials;
                c.final_epochs = final_epochs;
                if url.is_some() {
                    c.llm.url = url;
                }
                Ok(())
            })?
        } else {
            Evolve::create(cfg)?
        };
        let mut evolve = evolve.with_cache(cache.clone());
        let mut reporter = Reporter::new(format!("[{} s{}] ", r.proposer, r.seed));
        let summary = with_log(&run_dir, || evolve.run(&mut reporter))??;
        drop(reporter);
        let run = RunData::load(&summary.name, evolve.store())?;
        eprintln!(
            "[{} s{}] best found {}",
            r.proposer,
            r.seed,
            run.best_found()
                .map_or_else(|| "none".to_string(), |a| format!("{:.2}%", 100.0 * a))
        );
    }
    write(dir, record)
}

/// Runs `nas-core compare`.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    if args.search.proposer.is_some() {
        bail!("`compare` takes `--proposers A,B`, not `--proposer`");
    }
    if args.seeds == 0 {
        bail!("`--seeds` must be at least 1");
    }
    let mut arms: Vec<Arm> = Vec::new();
    if args.arms.is_empty() {
        for p in &args.proposers {
            if !arms.iter().any(|a| a.proposer == p.as_str()) {
                arms.push(Arm::plain(*p));
            }
        }
        if arms.len() < 2 {
            bail!("`--proposers` needs at least two different proposers, e.g. `mutate,random`");
        }
    } else {
        for a in &args.arms {
            if arms.iter().any(|b| b.name == a.name) {
                bail!("two arms are named `{}`", a.name);
            }
            arms.push(a.clone());
        }
        if arms.len() < 2 {
            bail!("a comparison needs at least two arms");
        }
    }
    let mut base: SearchConfig = args.search.config()?;
    // Equal budgets: a time budget would give a slower proposer fewer trials.
    if args.search.time_budget.is_none() && args.search.config.is_none() {
        base.time_budget = None;
    }
    base.resolve()?;
    let name = base.name.clone().unwrap_or_else(|| default_name("compare"));
    let dir = base.runs_dir.join(&name);
    let comparison = run_arms(&base, &arms, args.seeds, &dir)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&comparison)?);
    } else {
        print!("{}", comparison.table());
    }
    eprintln!("report: {}", dir.join(report::REPORT_FILE).display());
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arms_name_a_proposer_and_its_model_and_server() {
        let a = arm_arg("tuned=ollama,model=nas-tuned:latest,url=http://10.0.0.2:11434").unwrap();
        assert_eq!(
            (
                a.name.as_str(),
                a.proposer.as_str(),
                a.model.as_deref(),
                a.url.as_deref()
            ),
            (
                "tuned",
                "ollama",
                Some("nas-tuned:latest"),
                Some("http://10.0.0.2:11434")
            )
        );
        let mut cfg = SearchConfig::default();
        a.apply(&mut cfg).unwrap();
        assert_eq!(cfg.proposer, ProposerKind::Ollama);
        assert_eq!(cfg.llm.model, "nas-tuned:latest");
        assert_eq!(cfg.llm.url.as_deref(), Some("http://10.0.0.2:11434"));
        let c = arm_arg("c=openai,style=chat").unwrap();
        assert_eq!(c.style.as_deref(), Some("chat"));
        let r = arm_arg("random=random").unwrap();
        assert_eq!((r.name.as_str(), r.model), ("random", None));
        for bad in [
            "ollama",
            "a b=ollama",
            "x=gpt",
            "x=ollama,temperature=1",
            "x=ollama,model",
        ] {
            assert!(arm_arg(bad).is_err(), "{bad}");
        }
        assert!(arm_arg("x=auto").unwrap_err().contains("auto"));
    }
}
