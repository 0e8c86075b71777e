//! The statistics of the judge gate, pure: an exact conditional binomial test on error counts,
//! Mann-Whitney U (normal approximation with tie and continuity correction) and the
//! Hodges-Lehmann shift with its distribution-free confidence bounds. Distributions come from
//! `statrs`.
//!
//! Why the count test is conditional: given k = e_c + e_b errors in all, and requests n_c, n_b,
//! the canary's share of the errors under "canary rate = r × baseline rate" is Binomial(k, p0)
//! with p0 = r·n_c / (r·n_c + n_b) — exact, whatever the rates, so 0 errors on the baseline and
//! 12 on the canary over 5,000 requests each is p = p0^12 ≈ 0.0007 (a failure), where a test on
//! the rates' distributions (Kayenta's) sees two "similar" near-zero rates.

use statrs::distribution::{Binomial, ContinuousCDF, DiscreteCDF, Normal};

use crate::config::Direction;

/// `P(X >= k)` for `X ~ Binomial(n, p)`.
pub fn binomial_at_least(k: u64, n: u64, p: f64) -> f64 {
    if k == 0 {
        return 1.0;
    }
    if k > n {
        return 0.0;
    }
    match Binomial::new(p.clamp(0.0, 1.0), n) {
        Ok(b) => b.sf(k - 1).clamp(0.0, 1.0),
        Err(_) => 1.0,
    }
}

/// `P(X <= k)` for `X ~ Binomial(n, p)`.
pub fn binomial_at_most(k: u64, n: u64, p: f64) -> f64 {
    if k >= n {
        return 1.0;
    }
    match Binomial::new(p.clamp(0.0, 1.0), n) {
        Ok(b) => b.cdf(k).clamp(0.0, 1.0),
        Err(_) => 1.0,
    }
}

/// Error counts of one side.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Counts {
    pub errors: u64,
    pub requests: u64,
}

impl Counts {
    pub fn rate(&self) -> f64 {
        if self.requests == 0 {
            0.0
        } else {
            self.errors as f64 / self.requests as f64
        }
    }
}

/// The p-value of "the canary is worse than `max_ratio` × the baseline" being due to chance:
/// - `Increase`: H0 canary rate <= r × baseline rate, p = P(X >= e_c), X ~ Bin(k, r·n_c/(r·n_c + n_b));
/// - `Decrease`: H0 canary rate >= baseline rate / r, p = P(X <= e_c), X ~ Bin(k, n_c/(n_c + r·n_b));
/// - `Either`: both, Bonferroni-corrected (twice the smaller, at most 1).
pub fn rate_p_value(canary: Counts, baseline: Counts, max_ratio: f64, direction: Direction) -> f64 {
    let k = canary.errors + baseline.errors;
    let (nc, nb, r) = (canary.requests as f64, baseline.requests as f64, max_ratio);
    let increase = || binomial_at_least(canary.errors, k, r * nc / (r * nc + nb));
    let decrease = || binomial_at_most(canary.errors, k, nc / (nc + r * nb));
    match direction {
        Direction::Increase => increase(),
        Direction::Decrease => decrease(),
        Direction::Either => (2.0 * increase().min(decrease())).min(1.0),
    }
}

/// Which tail a one-sided Mann-Whitney test looks at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tail {
    /// H1: the first sample tends to be greater.
    Greater,
    /// H1: the first sample tends to be less.
    Less,
}

/// Mann-Whitney U of `x` against `y`: `U` of `x` (the number of pairs with x > y, ties half)
/// and the one-sided p-value by the normal approximation with tie correction and continuity
/// correction (scipy's `mannwhitneyu(x, y, alternative=…, method="asymptotic")`). Good from
/// about 10 values per side (the loader's least `min_samples`).
pub fn mann_whitney(x: &[f64], y: &[f64], tail: Tail) -> (f64, f64) {
    let (n1, n2) = (x.len() as f64, y.len() as f64);
    if x.is_empty() || y.is_empty() {
        return (0.0, 1.0);
    }
    let mut all: Vec<(f64, bool)> = x
        .iter()
        .map(|v| (*v, true))
        .chain(y.iter().map(|v| (*v, false)))
        .collect();
    all.sort_by(|a, b| a.0.total_cmp(&b.0));
    // Mid-ranks, and the tie term Σ(t³ − t).
    let mut rank_sum_x = 0.0;
    let mut ties = 0.0;
    let mut i = 0;
    while i < all.len() {
        let mut j = i;
        while j + 1 < all.len() && all[j + 1].0 == all[i].0 {
            j += 1;
        }
        let t = (j - i + 1) as f64;
        let mid = (i + j) as f64 / 2.0 + 1.0;
        rank_sum_x += mid * all[i..=j].iter().filter(|(_, is_x)| *is_x).count() as f64;
        ties += t * t * t - t;
        i = j + 1;
    }
    let n = n1 + n2;
    let u = rank_sum_x - n1 * (n1 + 1.0) / 2.0;
    let mean = n1 * n2 / 2.0;
    let var = n1 * n2 / 12.0 * ((n + 1.0) - ties / (n * (n - 1.0)));
    if var <= 0.0 {
        // Every value equal: nothing tells the samples apart.
        return (u, 1.0);
    }
    let sd = var.sqrt();
    let z = match tail {
        Tail::Greater => (u - mean - 0.5) / sd,
        Tail::Less => (mean - u - 0.5) / sd,
    };
    (u, 1.0 - std_normal().cdf(z))
}

fn std_normal() -> Normal {
    Normal::new(0.0, 1.0).expect("the standard normal")
}

/// The Hodges-Lehmann estimate of the shift of `x` against `y` (the median of every
/// difference `x_i − y_j`) with one-sided distribution-free bounds at `confidence`: the lower
/// bound is the C-th smallest difference and the upper the C-th largest, C = ⌊n1·n2/2 −
/// z·√(n1·n2·(n1+n2+1)/12)⌋ (at least 1), the normal approximation of U's quantile.
pub fn hodges_lehmann(x: &[f64], y: &[f64], confidence: f64) -> Shift {
    let mut diffs: Vec<f64> = x
        .iter()
        .flat_map(|a| y.iter().map(move |b| a - b))
        .collect();
    if diffs.is_empty() {
        return Shift {
            estimate: 0.0,
            lower: f64::NEG_INFINITY,
            upper: f64::INFINITY,
        };
    }
    diffs.sort_by(|a, b| a.total_cmp(b));
    let (n1, n2) = (x.len() as f64, y.len() as f64);
    let z = std_normal().inverse_cdf(confidence);
    let c = (n1 * n2 / 2.0 - z * (n1 * n2 * (n1 + n2 + 1.0) / 12.0).sqrt()).floor();
    let c = (c.max(1.0) as usize).min(diffs.len());
    Shift {
        estimate: median_sorted(&diffs),
        lower: diffs[c - 1],
        upper: diffs[diffs.len() - c],
    }
}

/// A shift estimate and its bounds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Shift {
    pub estimate: f64,
    pub lower: f64,
    pub upper: f64,
}

pub fn median(values: &[f64]) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    median_sorted(&v)
}

fn median_sorted(v: &[f64]) -> f64 {
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64, rel: f64) -> bool {
        (a - b).abs() <= rel * b.abs().max(1e-300)
    }

    #[test]
    fn binomial_tails_are_exact() {
        // Exact sums: P(X >= 12), X ~ Bin(12, 6/11) = (6/11)^12.
        let p0 = 1.2 / 2.2;
        assert!(close(binomial_at_least(12, 12, p0), p0.powi(12), 1e-9));
        // P(X >= 2), X ~ Bin(3, 0.5) = (3 + 1) / 8.
        assert!(close(binomial_at_least(2, 3, 0.5), 0.5, 1e-12));
        // P(X <= 1), X ~ Bin(4, 0.25) = 0.75^4 + 4·0.25·0.75^3 = 0.73828125.
        assert!(close(binomial_at_most(1, 4, 0.25), 0.73828125, 1e-12));
        assert_eq!(binomial_at_least(0, 10, 0.3), 1.0);
        assert_eq!(binomial_at_most(10, 10, 0.3), 1.0);
    }

    #[test]
    fn sparse_errors_on_the_canary_fail_the_rate_test() {
        // The case Kayenta passes: 0 errors of 5,000 on the baseline, 12 of 5,000 on the canary.
        let p = rate_p_value(
            Counts {
                errors: 12,
                requests: 5000,
            },
            Counts {
                errors: 0,
                requests: 5000,
            },
            1.2,
            Direction::Increase,
        );
        // (6/11)^12; scipy 1.17.1 binomtest(12, 12, p=1.2/2.2, alternative="greater").pvalue
        // = 0.0006935899356971405
        assert!(close(p, 0.000_693_589_935_697_140_5, 1e-6), "{p}");
        assert!(p < 0.05);
    }

    #[test]
    fn rate_p_values_match_scipy() {
        // scipy 1.17.1: binomtest(150, 250, p=1.2*10000/(1.2*10000+10000), alternative="greater").pvalue
        // = 0.04716081747311726 (canary 150/10000 errors vs baseline 100/10000, max_ratio 1.2).
        let c = Counts {
            errors: 150,
            requests: 10_000,
        };
        let b = Counts {
            errors: 100,
            requests: 10_000,
        };
        let p = rate_p_value(c, b, 1.2, Direction::Increase);
        assert!(close(p, 0.047_160_817_473_117_26, 1e-6), "{p}");
        // binomtest(150, 250, p=10000/(10000+1.2*10000), alternative="less").pvalue
        // = 0.9999985288321946: the canary has more errors, so it is not "lower".
        let p = rate_p_value(c, b, 1.2, Direction::Decrease);
        assert!(close(p, 0.999_998_528_832_194_6, 1e-6), "{p}");
        // Either: twice the smaller tail.
        let p = rate_p_value(c, b, 1.2, Direction::Either);
        assert!(close(p, 2.0 * 0.047_160_817_473_117_26, 1e-6), "{p}");
        // 1.5× worse over 100,000 requests each: 1500 vs 1000 errors.
        // binomtest(1500, 2500, p=1.2/2.2, alternative="greater").pvalue = 2.1244886508614442e-08
        let p = rate_p_value(
            Counts {
                errors: 1500,
                requests: 100_000,
            },
            Counts {
                errors: 1000,
                requests: 100_000,
            },
            1.2,
            Direction::Increase,
        );
        assert!(close(p, 2.124_488_650_861_444_2e-8, 1e-4), "{p}");
        // No errors anywhere: nothing to say against the canary.
        let none = Counts {
            errors: 0,
            requests: 100,
        };
        assert_eq!(rate_p_value(none, none, 1.2, Direction::Increase), 1.0);
    }

    #[test]
    fn mann_whitney_matches_scipy() {
        let x = [1.2, 3.4, 2.2, 5.0, 4.1, 3.3, 2.9, 6.0, 4.4, 3.8];
        let y = [1.0, 2.0, 2.2, 1.5, 3.0, 2.5, 1.9, 2.8, 3.1, 2.0, 1.1];
        // scipy 1.17.1: mannwhitneyu(x, y, alternative="greater", method="asymptotic",
        // use_continuity=True) = (statistic=94.5, pvalue=0.0029972477329504358); ties: 2.2 and 2.0.
        let (u, p) = mann_whitney(&x, &y, Tail::Greater);
        assert_eq!(u, 94.5);
        assert!(close(p, 0.002_997_247_732_950_435_8, 1e-6), "{p}");
        // alternative="less": pvalue=0.9975879149476609
        let (_, p) = mann_whitney(&x, &y, Tail::Less);
        assert!(close(p, 0.997_587_914_947_660_9, 1e-6), "{p}");
        // Every value equal: no evidence either way.
        assert_eq!(mann_whitney(&[1.0; 12], &[1.0; 12], Tail::Greater).1, 1.0);
    }

    #[test]
    fn hodges_lehmann_is_the_median_difference() {
        let s = hodges_lehmann(&[1.0, 2.0, 3.0], &[0.0], 0.95);
        assert_eq!(s.estimate, 2.0);
        // A pure shift of 10 is estimated as 10, inside its bounds.
        let y: Vec<f64> = (0..30).map(|i| 100.0 + (i * 7 % 13) as f64).collect();
        let x: Vec<f64> = y.iter().map(|v| v + 10.0).collect();
        let s = hodges_lehmann(&x, &y, 0.95);
        assert_eq!(s.estimate, 10.0);
        assert!(s.lower <= 10.0 && s.lower > 5.0, "{s:?}");
        assert!(s.upper >= 10.0 && s.upper < 15.0, "{s:?}");
        assert_eq!(median(&[3.0, 1.0, 2.0, 10.0]), 2.5);
    }
}
