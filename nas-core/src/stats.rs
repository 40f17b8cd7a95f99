//! Two-sample statistics for comparing proposers: the Mann–Whitney U test (exact
//! for small samples without ties, otherwise the normal approximation with tie and
//! continuity corrections, as SciPy chooses), Welch's t-test, and Cliff's delta
//! (equal to the rank-biserial correlation). The Student t and normal
//! distributions come from `statrs`; what no crate provides is written here and
//! tested against SciPy's values. For paired samples there are Pearson's r, the
//! rank correlations Spearman's rho and Kendall's tau-b, a seeded percentile
//! bootstrap interval over pairs, and the pooled within-group standard deviation.

use rand::{RngExt, SeedableRng};
use rand_pcg::Pcg64;
use serde::Serialize;
use statrs::distribution::{ContinuousCDF, Normal, StudentsT};

/// Mean, median, spread and range of a sample.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Summary {
    /// Sample size.
    pub n: usize,
    /// Arithmetic mean.
    pub mean: f64,
    /// Median (mean of the middle two for an even size).
    pub median: f64,
    /// Sample standard deviation (`n − 1`; 0 for a single value).
    pub sd: f64,
    /// Smallest value.
    pub min: f64,
    /// Largest value.
    pub max: f64,
}

/// Summarises a sample; `None` when it is empty or holds a NaN.
pub fn summary(xs: &[f64]) -> Option<Summary> {
    if xs.is_empty() || xs.iter().any(|v| v.is_nan()) {
        return None;
    }
    let n = xs.len();
    let mut sorted = xs.to_vec();
    sorted.sort_by(f64::total_cmp);
    let mean = xs.iter().sum::<f64>() / n as f64;
    let median = if n % 2 == 1 {
        sorted[n / 2]
    } else {
        (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0
    };
    let sd = if n > 1 {
        (xs.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1) as f64).sqrt()
    } else {
        0.0
    };
    Some(Summary {
        n,
        mean,
        median,
        sd,
        min: sorted[0],
        max: sorted[n - 1],
    })
}

/// How the Mann–Whitney p-value was computed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Method {
    /// The exact null distribution of U (no ties).
    Exact,
    /// The normal approximation with tie and continuity corrections.
    Asymptotic,
}

/// The result of a two-sided Mann–Whitney U test.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct MannWhitney {
    /// U of the first sample: pairs where it is larger, ties counting one half.
    pub u: f64,
    /// Two-sided p-value.
    pub p: f64,
    /// How `p` was computed.
    pub method: Method,
}

/// Average ranks (1-based) of `values`, ties sharing the mean of their ranks, and
/// the tie term `Σ (t³ − t)` over groups of `t` tied values.
fn ranks(values: &[f64]) -> (Vec<f64>, f64) {
    let mut order: Vec<usize> = (0..values.len()).collect();
    order.sort_by(|&a, &b| values[a].total_cmp(&values[b]));
    let mut ranks = vec![0.0; values.len()];
    let mut ties = 0.0;
    let mut i = 0;
    while i < order.len() {
        let mut j = i;
        while j + 1 < order.len() && values[order[j + 1]] == values[order[i]] {
            j += 1;
        }
        let rank = (i + j) as f64 / 2.0 + 1.0;
        for &k in &order[i..=j] {
            ranks[k] = rank;
        }
        let t = (j - i + 1) as f64;
        ties += t * t * t - t;
        i = j + 1;
    }
    (ranks, ties)
}

/// `P(U ≥ u)` under the null hypothesis for sizes `n1`, `n2` without ties: the
/// number of rank arrangements with U ≥ u over all `C(n1 + n2, n1)`, by the
/// recurrence `f(m, n, u) = f(m − 1, n, u − n) + f(m, n − 1, u)`.
fn exact_sf(n1: usize, n2: usize, u: usize) -> f64 {
    let max = n1 * n2;
    // counts[j][v] = f(i, j, v) for the current i.
    let mut counts: Vec<Vec<f64>> = (0..=n2)
        .map(|_| {
            let mut c = vec![0.0; max + 1];
            c[0] = 1.0;
            c
        })
        .collect();
    for _ in 1..=n1 {
        let mut next: Vec<Vec<f64>> = vec![vec![0.0; max + 1]; n2 + 1];
        // f(i, 0, v) = 1 if v == 0.
        next[0][0] = 1.0;
        for j in 1..=n2 {
            for v in 0..=max {
                let from_first = if v >= j { counts[j][v - j] } else { 0.0 };
                next[j][v] = from_first + next[j - 1][v];
            }
        }
        counts = next;
    }
    let dist = &counts[n2];
    let total: f64 = dist.iter().sum();
    let tail: f64 = dist.iter().skip(u).sum();
    tail / total
}

/// The two-sided Mann–Whitney U test of `x` against `y`, choosing the method as
/// SciPy's `mannwhitneyu(..., method="auto")` does: exact when either sample has at
/// most 8 values and there are no ties, else asymptotic. `None` for an empty
/// sample or a NaN.
pub fn mann_whitney_u(x: &[f64], y: &[f64]) -> Option<MannWhitney> {
    let ties = {
        let mut all: Vec<f64> = x.iter().chain(y).copied().collect();
        all.sort_by(f64::total_cmp);
        all.windows(2).any(|w| w[0] == w[1])
    };
    let method = if (x.len() > 8 && y.len() > 8) || ties {
        Method::Asymptotic
    } else {
        Method::Exact
    };
    mann_whitney_u_with(x, y, method)
}

/// The two-sided Mann–Whitney U test with a given method (`Exact` falls back to
/// `Asymptotic` when there are ties). `None` for an empty sample or a NaN.
pub fn mann_whitney_u_with(x: &[f64], y: &[f64], method: Method) -> Option<MannWhitney> {
    if x.is_empty() || y.is_empty() || x.iter().chain(y).any(|v| v.is_nan()) {
        return None;
    }
    let (n1, n2) = (x.len() as f64, y.len() as f64);
    let all: Vec<f64> = x.iter().chain(y).copied().collect();
    let (r, ties) = ranks(&all);
    let r1: f64 = r[..x.len()].iter().sum();
    let u1 = r1 - n1 * (n1 + 1.0) / 2.0;
    let u2 = n1 * n2 - u1;
    let big = u1.max(u2);
    if method == Method::Exact && ties == 0.0 {
        // P(U ≥ max(U1, U2)) doubled; U is an integer without ties.
        let p = 2.0 * exact_sf(x.len(), y.len(), big.round() as usize);
        return Some(MannWhitney {
            u: u1,
            p: p.min(1.0),
            method: Method::Exact,
        });
    }
    let n = n1 + n2;
    let mu = n1 * n2 / 2.0;
    let var = n1 * n2 / 12.0 * ((n + 1.0) - ties / (n * (n - 1.0)));
    let p = if var <= 0.0 {
        1.0
    } else {
        let z = (big - mu - 0.5) / var.sqrt();
        (2.0 * Normal::standard().sf(z)).min(1.0)
    };
    Some(MannWhitney {
        u: u1,
        p,
        method: Method::Asymptotic,
    })
}

/// The result of Welch's two-sided t-test.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Welch {
    /// The t statistic (positive when `x` has the larger mean).
    pub t: f64,
    /// Welch–Satterthwaite degrees of freedom.
    pub df: f64,
    /// Two-sided p-value.
    pub p: f64,
}

/// Welch's unequal-variance t-test of `x` against `y`, two-sided, as SciPy's
/// `ttest_ind(x, y, equal_var=False)`. `None` when a sample has fewer than two
/// values, holds a NaN, or both have zero variance (t is undefined).
pub fn welch_t(x: &[f64], y: &[f64]) -> Option<Welch> {
    let (a, b) = (summary(x)?, summary(y)?);
    if a.n < 2 || b.n < 2 {
        return None;
    }
    let (va, vb) = (a.sd * a.sd / a.n as f64, b.sd * b.sd / b.n as f64);
    let se2 = va + vb;
    if se2 <= 0.0 {
        return None;
    }
    let t = (a.mean - b.mean) / se2.sqrt();
    let df = se2 * se2 / (va * va / (a.n - 1) as f64 + vb * vb / (b.n - 1) as f64);
    let dist = StudentsT::new(0.0, 1.0, df).ok()?;
    let p = (2.0 * dist.sf(t.abs())).min(1.0);
    Some(Welch { t, df, p })
}

/// Cliff's delta: `P(x > y) − P(x < y)` over all pairs, in `[−1, 1]`. It equals the
/// rank-biserial correlation `2·U/(n1·n2) − 1` of the Mann–Whitney U. `None` for
/// an empty sample or a NaN.
pub fn cliffs_delta(x: &[f64], y: &[f64]) -> Option<f64> {
    if x.is_empty() || y.is_empty() || x.iter().chain(y).any(|v| v.is_nan()) {
        return None;
    }
    let mut score = 0i64;
    for a in x {
        for b in y {
            score += match a.total_cmp(b) {
                std::cmp::Ordering::Greater => 1,
                std::cmp::Ordering::Less => -1,
                std::cmp::Ordering::Equal => 0,
            };
        }
    }
    Some(score as f64 / (x.len() * y.len()) as f64)
}

/// The conventional magnitude of a Cliff's delta (Romano et al. 2006 thresholds:
/// 0.147, 0.33, 0.474).
pub fn delta_magnitude(d: f64) -> &'static str {
    let d = d.abs();
    if d < 0.147 {
        "negligible"
    } else if d < 0.33 {
        "small"
    } else if d < 0.474 {
        "medium"
    } else {
        "large"
    }
}

/// Whether `x` and `y` are paired samples that a correlation can be computed on:
/// equal lengths, at least two pairs, and no NaN.
fn paired(x: &[f64], y: &[f64]) -> bool {
    x.len() == y.len() && x.len() >= 2 && !x.iter().chain(y).any(|v| v.is_nan())
}

/// Pearson's product-moment correlation of the pairs `(x[i], y[i])`, as SciPy's
/// `pearsonr(x, y).statistic`. `None` when the lengths differ, there are fewer
/// than two pairs, a value is NaN, or either side is constant.
pub fn pearson(x: &[f64], y: &[f64]) -> Option<f64> {
    if !paired(x, y) || x.iter().all(|&v| v == x[0]) || y.iter().all(|&v| v == y[0]) {
        return None;
    }
    let n = x.len() as f64;
    let (mx, my) = (x.iter().sum::<f64>() / n, y.iter().sum::<f64>() / n);
    let (mut sxy, mut sxx, mut syy) = (0.0, 0.0, 0.0);
    for (a, b) in x.iter().zip(y) {
        let (dx, dy) = (a - mx, b - my);
        sxy += dx * dy;
        sxx += dx * dx;
        syy += dy * dy;
    }
    if sxx <= 0.0 || syy <= 0.0 {
        return None;
    }
    let r = sxy / (sxx.sqrt() * syy.sqrt());
    r.is_finite().then_some(r.clamp(-1.0, 1.0))
}

/// Spearman's rank correlation rho: Pearson's r of the average ranks (ties share
/// the mean of their ranks), as SciPy's `spearmanr(x, y).statistic`. `None` when
/// the lengths differ, there are fewer than two pairs, a value is NaN, or either
/// side has all values tied.
pub fn spearman(x: &[f64], y: &[f64]) -> Option<f64> {
    if !paired(x, y) {
        return None;
    }
    pearson(&ranks(x).0, &ranks(y).0)
}

/// The sign of `a − b` as −1, 0 or 1 (for values that are not NaN).
fn sign(a: f64, b: f64) -> i64 {
    if a < b {
        -1
    } else if a > b {
        1
    } else {
        0
    }
}

/// Kendall's tau-b, `(C − D) / sqrt((P − Tx)·(P − Ty))` over the `P` pairs of
/// observations, where `C` and `D` count concordant and discordant pairs and `Tx`,
/// `Ty` those tied in `x` and in `y`, as SciPy's `kendalltau(x, y).statistic`
/// (variant `'b'`). O(n²). `None` when the lengths differ, there are fewer than two
/// pairs, a value is NaN, or either side has all values tied.
pub fn kendall_tau_b(x: &[f64], y: &[f64]) -> Option<f64> {
    if !paired(x, y) {
        return None;
    }
    let n = x.len();
    let (mut score, mut tied_x, mut tied_y) = (0i64, 0i64, 0i64);
    for i in 0..n {
        for j in i + 1..n {
            let (sx, sy) = (sign(x[i], x[j]), sign(y[i], y[j]));
            tied_x += i64::from(sx == 0);
            tied_y += i64::from(sy == 0);
            score += sx * sy;
        }
    }
    let pairs = (n * (n - 1) / 2) as i64;
    let (dx, dy) = (pairs - tied_x, pairs - tied_y);
    if dx == 0 || dy == 0 {
        return None;
    }
    let tau = score as f64 / ((dx as f64).sqrt() * (dy as f64).sqrt());
    Some(tau.clamp(-1.0, 1.0))
}

/// A confidence interval `[lo, hi]`.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, serde::Deserialize)]
pub struct Interval {
    /// Lower bound.
    pub lo: f64,
    /// Upper bound.
    pub hi: f64,
}

/// The `q`-quantile (`0 ≤ q ≤ 1`) of an ascending, non-empty `sorted`, by linear
/// interpolation between order statistics (NumPy's default `'linear'` method).
fn quantile_sorted(sorted: &[f64], q: f64) -> f64 {
    let h = (sorted.len() - 1) as f64 * q;
    let below = h.floor() as usize;
    match sorted.get(below + 1) {
        Some(&next) => sorted[below] + (h - below as f64) * (next - sorted[below]),
        None => sorted[below],
    }
}

/// A percentile bootstrap confidence interval for `stat` over the pairs
/// `(x[i], y[i])`: `resamples` times, draw `n` pair indices with replacement from a
/// `Pcg64` seeded with `seed` and evaluate `stat` on the resampled pairs, skipping
/// resamples where it is `None`; the interval runs between the `(1 − level)/2` and
/// `1 − (1 − level)/2` quantiles of the values (linear interpolation, as NumPy's
/// `percentile`). Deterministic for a fixed seed. `None` when the lengths differ,
/// the samples are empty, `level` is not strictly between 0 and 1, or fewer than
/// half of the resamples give a value.
pub fn bootstrap_pairs(
    x: &[f64],
    y: &[f64],
    stat: fn(&[f64], &[f64]) -> Option<f64>,
    resamples: usize,
    level: f64,
    seed: u64,
) -> Option<Interval> {
    if x.len() != y.len() || x.is_empty() || resamples == 0 || !(level > 0.0 && level < 1.0) {
        return None;
    }
    let n = x.len();
    let mut rng = Pcg64::seed_from_u64(seed);
    let (mut bx, mut by) = (vec![0.0; n], vec![0.0; n]);
    let mut values = Vec::with_capacity(resamples);
    for _ in 0..resamples {
        for k in 0..n {
            let i = rng.random_range(0..n);
            bx[k] = x[i];
            by[k] = y[i];
        }
        if let Some(v) = stat(&bx, &by).filter(|v| !v.is_nan()) {
            values.push(v);
        }
    }
    if values.is_empty() || 2 * values.len() < resamples {
        return None;
    }
    values.sort_by(f64::total_cmp);
    let tail = (1.0 - level) / 2.0;
    Some(Interval {
        lo: quantile_sorted(&values, tail),
        hi: quantile_sorted(&values, 1.0 - tail),
    })
}

/// The pooled within-group standard deviation
/// `sqrt(Σ_g Σ (x − mean_g)² / Σ_g (n_g − 1))`; groups with a single value (or
/// none) contribute nothing. `None` when the denominator is 0 (no group has two
/// values) or a value is NaN.
pub fn pooled_sd(groups: &[Vec<f64>]) -> Option<f64> {
    let (mut squares, mut df) = (0.0, 0usize);
    for g in groups {
        if g.iter().any(|v| v.is_nan()) {
            return None;
        }
        if g.len() < 2 {
            continue;
        }
        let mean = g.iter().sum::<f64>() / g.len() as f64;
        squares += g.iter().map(|v| (v - mean).powi(2)).sum::<f64>();
        df += g.len() - 1;
    }
    (df > 0).then(|| (squares / df as f64).sqrt())
}

#[cfg(test)]
#[allow(clippy::approx_constant)] // published sample data, not a constant
mod tests {
    use super::*;

    const X: [f64; 5] = [0.61, 0.64, 0.58, 0.70, 0.66];
    const Y: [f64; 6] = [0.55, 0.57, 0.60, 0.52, 0.59, 0.56];
    const A: [f64; 8] = [1.0, 2.0, 2.0, 3.0, 3.0, 3.0, 4.0, 5.0];
    const B: [f64; 9] = [2.0, 3.0, 4.0, 4.0, 5.0, 5.0, 6.0, 7.0, 7.0];
    const C: [f64; 12] = [
        0.346, 0.822, 0.33, -1.303, 0.905, 0.446, -0.537, 0.581, 0.365, 0.294, 0.028, 0.547,
    ];
    const D: [f64; 10] = [
        0.064, 0.637, 0.318, 1.399, 0.84, 0.508, 0.018, 0.543, 0.808, 0.524,
    ];

    fn close(a: f64, b: f64, tol: f64) {
        assert!((a - b).abs() <= tol * b.abs().max(1e-300), "{a} vs {b}");
    }

    #[test]
    fn mann_whitney_exact_matches_scipy() {
        // scipy 1.17.1: stats.mannwhitneyu(X, Y, alternative='two-sided', method='exact')
        // -> statistic 28.0, pvalue 0.017316017316017316 (= 8/462: exact)
        let r = mann_whitney_u(&X, &Y).unwrap();
        assert_eq!(r.method, Method::Exact);
        assert_eq!(r.u, 28.0);
        close(r.p, 0.017316017316017316, 1e-12);
        // Swapping the samples gives the other U and the same p.
        let s = mann_whitney_u(&Y, &X).unwrap();
        assert_eq!(s.u, 2.0);
        close(s.p, r.p, 1e-12);
        // scipy 1.17.1: stats.mannwhitneyu(C, D, alternative='two-sided', method='exact')
        // -> statistic 44.0, pvalue 0.3136182702746171
        let r = mann_whitney_u_with(&C, &D, Method::Exact).unwrap();
        assert_eq!(r.u, 44.0);
        close(r.p, 0.3136182702746171, 1e-10);
    }

    #[test]
    fn mann_whitney_asymptotic_matches_scipy() {
        // scipy 1.17.1: stats.mannwhitneyu(X, Y, alternative='two-sided',
        // method='asymptotic', use_continuity=True) -> 28.0, 0.022478873366125265
        let r = mann_whitney_u_with(&X, &Y, Method::Asymptotic).unwrap();
        assert_eq!(r.u, 28.0);
        close(r.p, 0.022478873366125265, 1e-9);
        // scipy 1.17.1: stats.mannwhitneyu(C, D, alternative='two-sided') (auto picks
        // asymptotic for 12 and 10 values) -> 44.0, 0.3067620949424035
        let r = mann_whitney_u(&C, &D).unwrap();
        assert_eq!(r.method, Method::Asymptotic);
        assert_eq!(r.u, 44.0);
        close(r.p, 0.3067620949424035, 1e-9);
    }

    #[test]
    fn mann_whitney_with_ties_matches_scipy() {
        // scipy 1.17.1: stats.mannwhitneyu(A, B, alternative='two-sided')
        // -> statistic 13.5, pvalue 0.03175895714806371 (ties: asymptotic)
        let r = mann_whitney_u(&A, &B).unwrap();
        assert_eq!(r.method, Method::Asymptotic);
        assert_eq!(r.u, 13.5);
        close(r.p, 0.03175895714806371, 1e-9);
        // Asking for exact with ties falls back to the corrected normal approximation.
        assert_eq!(mann_whitney_u_with(&A, &B, Method::Exact), Some(r));
    }

    #[test]
    fn mann_whitney_degenerate_inputs() {
        assert_eq!(mann_whitney_u(&[], &[1.0]), None);
        assert_eq!(mann_whitney_u(&[f64::NAN], &[1.0]), None);
        // All values equal: no evidence at all.
        let r = mann_whitney_u(&[0.5, 0.5], &[0.5, 0.5, 0.5]).unwrap();
        assert_eq!(r.p, 1.0);
        assert_eq!(r.u, 3.0);
    }

    #[test]
    fn welch_matches_scipy() {
        // scipy 1.17.1: stats.ttest_ind(X, Y, equal_var=False)
        // -> statistic 3.078406349884451, pvalue 0.01966184241392006, df 6.48371649037114
        let r = welch_t(&X, &Y).unwrap();
        close(r.t, 3.078406349884451, 1e-10);
        close(r.df, 6.48371649037114, 1e-10);
        close(r.p, 0.01966184241392006, 1e-8);
        // scipy 1.17.1: stats.ttest_ind(A, B, equal_var=False)
        // -> -2.635241969507947, 0.019157857741802176, df 14.483785007672127
        let r = welch_t(&A, &B).unwrap();
        close(r.t, -2.635241969507947, 1e-10);
        close(r.df, 14.483785007672127, 1e-10);
        close(r.p, 0.019157857741802176, 1e-8);
        // scipy 1.17.1: stats.ttest_ind(C, D, equal_var=False)
        // -> -1.5215185965759475, 0.14451620883218652, df 19.096690016898513
        let r = welch_t(&C, &D).unwrap();
        close(r.t, -1.5215185965759475, 1e-10);
        close(r.p, 0.14451620883218652, 1e-8);
    }

    #[test]
    fn welch_is_undefined_without_spread_or_size() {
        assert_eq!(welch_t(&[1.0], &[1.0, 2.0]), None);
        assert_eq!(welch_t(&[1.0, 1.0], &[2.0, 2.0]), None);
        assert!(welch_t(&[1.0, 1.0], &[2.0, 3.0]).is_some());
    }

    #[test]
    fn distributions_from_statrs_match_scipy() {
        // scipy 1.17.1: stats.t.sf(2.5, 3.7) -> 0.03591101145591339
        close(
            StudentsT::new(0.0, 1.0, 3.7).unwrap().sf(2.5),
            0.03591101145591339,
            1e-9,
        );
        // scipy 1.17.1: stats.norm.sf(1.96) -> 0.024997895148220435
        close(Normal::standard().sf(1.96), 0.024997895148220435, 1e-9);
    }

    #[test]
    fn cliffs_delta_is_the_rank_biserial_correlation() {
        // 28 of 30 pairs have X larger: (28 - 2) / 30.
        close(cliffs_delta(&X, &Y).unwrap(), 26.0 / 30.0, 1e-15);
        for (x, y) in [(&A[..], &B[..]), (&C[..], &D[..]), (&X[..], &Y[..])] {
            let u = mann_whitney_u(x, y).unwrap().u;
            let rb = 2.0 * u / (x.len() * y.len()) as f64 - 1.0;
            close(cliffs_delta(x, y).unwrap(), rb, 1e-12);
        }
        assert_eq!(cliffs_delta(&[1.0], &[1.0]), Some(0.0));
        assert_eq!(cliffs_delta(&[], &[1.0]), None);
        assert_eq!(delta_magnitude(-0.5), "large");
        assert_eq!(delta_magnitude(0.2), "small");
        assert_eq!(delta_magnitude(0.4), "medium");
        assert_eq!(delta_magnitude(0.1), "negligible");
    }

    #[test]
    fn summary_of_a_sample() {
        let s = summary(&[3.0, 1.0, 2.0, 6.0]).unwrap();
        assert_eq!(
            (s.n, s.mean, s.median, s.min, s.max),
            (4, 3.0, 2.5, 1.0, 6.0)
        );
        // sd = sqrt(((0)^2 + 2^2 + 1^2 + 3^2) / 3) = sqrt(14/3)
        close(s.sd, (14.0f64 / 3.0).sqrt(), 1e-15);
        assert_eq!(summary(&[]), None);
        assert_eq!(summary(&[1.0]).unwrap().sd, 0.0);
    }

    /// Ties in both coordinates, paired with `A`.
    const E: [f64; 8] = [1.0, 1.0, 3.0, 2.0, 4.0, 4.0, 4.0, 6.0];

    #[test]
    fn correlations_without_ties_match_scipy() {
        let x = &C[..10];
        // scipy 1.17.1: stats.pearsonr(C[:10], D).statistic -> -0.2933200207260166
        close(pearson(x, &D).unwrap(), -0.2933200207260166, 1e-12);
        // scipy 1.17.1: stats.spearmanr(C[:10], D).statistic -> 0.28484848484848485
        close(spearman(x, &D).unwrap(), 0.28484848484848485, 1e-12);
        // scipy 1.17.1: stats.kendalltau(C[:10], D).statistic -> 0.28888888888888886
        close(kendall_tau_b(x, &D).unwrap(), 0.28888888888888886, 1e-12);
        // Symmetric in the two samples; reversing one flips the sign.
        close(spearman(&D, x).unwrap(), 0.28484848484848485, 1e-12);
        let rev: Vec<f64> = D.iter().map(|v| -v).collect();
        close(kendall_tau_b(x, &rev).unwrap(), -0.28888888888888886, 1e-12);
    }

    #[test]
    fn correlations_with_ties_match_scipy() {
        // scipy 1.17.1: stats.pearsonr(A, E).statistic -> 0.8711068667159776
        close(pearson(&A, &E).unwrap(), 0.8711068667159776, 1e-12);
        // scipy 1.17.1: stats.spearmanr(A, E).statistic -> 0.8670886075949368
        close(spearman(&A, &E).unwrap(), 0.8670886075949368, 1e-12);
        // scipy 1.17.1: stats.kendalltau(A, E).statistic -> 0.7916666666666667
        close(kendall_tau_b(&A, &E).unwrap(), 0.7916666666666667, 1e-12);
        // A monotone relation is a perfect rank correlation.
        let sq: Vec<f64> = A.iter().map(|v| v * v * v).collect();
        close(spearman(&A, &sq).unwrap(), 1.0, 1e-15);
        close(kendall_tau_b(&A, &sq).unwrap(), 1.0, 1e-15);
    }

    #[test]
    fn correlations_of_degenerate_inputs_are_none() {
        type Corr = fn(&[f64], &[f64]) -> Option<f64>;
        for f in [pearson as Corr, spearman, kendall_tau_b] {
            // Constant side (0.1 does not average to exactly 0.1).
            assert_eq!(f(&[0.1, 0.1, 0.1], &[1.0, 2.0, 3.0]), None);
            assert_eq!(f(&[1.0, 2.0, 3.0], &[5.0, 5.0, 5.0]), None);
            // Mismatched lengths, NaN, fewer than two pairs.
            assert_eq!(f(&[1.0, 2.0, 3.0], &[1.0, 2.0]), None);
            assert_eq!(f(&[1.0, f64::NAN, 3.0], &[1.0, 2.0, 3.0]), None);
            assert_eq!(f(&[1.0], &[1.0]), None);
            assert_eq!(f(&[], &[]), None);
            assert!(f(&[1.0, 2.0], &[2.0, 1.0]).is_some());
        }
    }

    /// `n` pairs of a noisy linear relation `y = x + u`, `x` and `u` uniform.
    fn noisy_line(n: usize, seed: u64) -> (Vec<f64>, Vec<f64>) {
        let mut rng = Pcg64::seed_from_u64(seed);
        let x: Vec<f64> = (0..n).map(|_| rng.random_range(0.0..1.0)).collect();
        let y = x.iter().map(|v| v + rng.random_range(-0.5..0.5)).collect();
        (x, y)
    }

    #[test]
    fn bootstrap_interval_brackets_the_estimate() {
        type Corr = fn(&[f64], &[f64]) -> Option<f64>;
        // Strongly correlated: y = 2x + small noise.
        let (x, u) = noisy_line(30, 11);
        let y: Vec<f64> = x
            .iter()
            .zip(&u)
            .map(|(a, b)| 2.0 * a + 0.1 * (b - a))
            .collect();
        for f in [pearson as Corr, spearman, kendall_tau_b] {
            let est = f(&x, &y).unwrap();
            let ci = bootstrap_pairs(&x, &y, f, 2000, 0.95, 42).unwrap();
            assert!(-1.0 <= ci.lo && ci.lo <= est && est <= ci.hi && ci.hi <= 1.0);
            assert!(ci.lo > 0.8, "{ci:?}");
            // Reproducible for a fixed seed.
            assert_eq!(bootstrap_pairs(&x, &y, f, 2000, 0.95, 42), Some(ci));
        }
        // A wider level gives a wider interval from the same draws.
        let ci90 = bootstrap_pairs(&x, &y, spearman, 500, 0.90, 1).unwrap();
        let ci99 = bootstrap_pairs(&x, &y, spearman, 500, 0.99, 1).unwrap();
        assert!(ci99.lo <= ci90.lo && ci90.hi <= ci99.hi);
    }

    #[test]
    fn bootstrap_interval_shrinks_with_more_pairs() {
        let (xs, ys) = noisy_line(10, 3);
        let (xl, yl) = noisy_line(200, 3);
        let small = bootstrap_pairs(&xs, &ys, spearman, 1000, 0.95, 9).unwrap();
        let large = bootstrap_pairs(&xl, &yl, spearman, 1000, 0.95, 9).unwrap();
        for (ci, x, y) in [(small, &xs, &ys), (large, &xl, &yl)] {
            let est = spearman(x, y).unwrap();
            assert!(-1.0 <= ci.lo && ci.lo <= est && est <= ci.hi && ci.hi <= 1.0);
        }
        assert!(
            large.hi - large.lo < 0.5 * (small.hi - small.lo),
            "{small:?} {large:?}"
        );
    }

    #[test]
    fn bootstrap_degenerate_inputs() {
        assert_eq!(
            bootstrap_pairs(&[1.0, 2.0], &[1.0], pearson, 100, 0.95, 0),
            None
        );
        assert_eq!(bootstrap_pairs(&[], &[], pearson, 100, 0.95, 0), None);
        assert_eq!(bootstrap_pairs(&X, &X, pearson, 0, 0.95, 0), None);
        assert_eq!(bootstrap_pairs(&X, &X, pearson, 100, 1.0, 0), None);
        assert_eq!(bootstrap_pairs(&X, &X, pearson, 100, f64::NAN, 0), None);
        // Constant x: every resample is undefined.
        assert_eq!(bootstrap_pairs(&[2.0; 6], &Y, pearson, 100, 0.95, 0), None);
        // A statistic defined only when the first drawn pair is the 2.0 one: a quarter
        // of the resamples are too few, three quarters enough.
        let first_is_two: fn(&[f64], &[f64]) -> Option<f64> = |x, _| (x[0] == 2.0).then_some(1.0);
        let (rare, common) = ([1.0, 1.0, 1.0, 2.0], [2.0, 2.0, 2.0, 1.0]);
        assert_eq!(
            bootstrap_pairs(&rare, &rare, first_is_two, 1000, 0.95, 0),
            None
        );
        assert_eq!(
            bootstrap_pairs(&common, &common, first_is_two, 1000, 0.95, 0),
            Some(Interval { lo: 1.0, hi: 1.0 })
        );
    }

    #[test]
    fn quantiles_interpolate_like_numpy() {
        let v = [1.0, 2.0, 4.0, 8.0];
        // numpy 2.4.6: np.percentile([1, 2, 4, 8], [2.5, 50, 97.5]) -> 1.075, 3.0, 7.7
        close(quantile_sorted(&v, 0.025), 1.075, 1e-12);
        close(quantile_sorted(&v, 0.5), 3.0, 1e-12);
        close(quantile_sorted(&v, 0.975), 7.7, 1e-12);
        assert_eq!(quantile_sorted(&v, 0.0), 1.0);
        assert_eq!(quantile_sorted(&v, 1.0), 8.0);
        assert_eq!(quantile_sorted(&[5.0], 0.3), 5.0);
    }

    #[test]
    fn pooled_sd_matches_numpy() {
        let groups = vec![X.to_vec(), Y.to_vec(), vec![0.9]];
        // numpy 2.4.6: np.sqrt(sum(((np.array(g) - np.mean(g))**2).sum() for g in G)
        //     / sum(len(g) - 1 for g in G)), G = [X, Y, [0.9]] -> 0.037461090925563455
        close(pooled_sd(&groups).unwrap(), 0.037461090925563455, 1e-12);
        // One group: its sample standard deviation.
        close(
            pooled_sd(&[X.to_vec()]).unwrap(),
            summary(&X).unwrap().sd,
            1e-12,
        );
        assert_eq!(pooled_sd(&[vec![1.0], vec![2.0], vec![]]), None);
        assert_eq!(pooled_sd(&[]), None);
        assert_eq!(pooled_sd(&[vec![1.0, f64::NAN]]), None);
        assert_eq!(pooled_sd(&[vec![3.0, 3.0]]), Some(0.0));
    }
}
