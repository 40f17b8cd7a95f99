//! Width value sets: the values a width class may take, written `uniform:4..=1024`
//! (every integer in the range, as the paper drew them) or `step:8..=512` (the
//! multiples of 8 up to 512), and the grid a class sees once its own divisibility
//! constraints (`groups`) are folded in.

use serde::Serialize;
use std::fmt;
use std::str::FromStr;

/// The largest width a value set may allow: wide enough for any CNN, small enough
/// that `width·H·W` and parameter counts stay far from overflowing.
pub const MAX_WIDTH: u64 = 65_536;

/// The values a width class may take: the multiples of `step` in `[min, max]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
pub struct ValueSet {
    /// Smallest allowed width.
    pub min: u64,
    /// Largest allowed width.
    pub max: u64,
    /// Every allowed width is a multiple of this (1 for `uniform`).
    pub step: u64,
}

impl Default for ValueSet {
    /// `uniform:4..=1024`, the paper's range.
    fn default() -> Self {
        ValueSet {
            min: 4,
            max: 1024,
            step: 1,
        }
    }
}

/// Why a `--widths` specification was rejected.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ValueSetError {
    /// Not of the form `KIND:A..=B`.
    #[error("expected `uniform:MIN..=MAX` or `step:STEP..=MAX`, found `{0}`")]
    Syntax(String),
    /// The kind before `:` is neither `uniform` nor `step`.
    #[error("unknown width set `{0}`; expected `uniform` or `step`")]
    Kind(String),
    /// A bound is not a positive integer.
    #[error("`{0}` is not a positive integer")]
    Number(String),
    /// The range is empty.
    #[error("the range `{min}..={max}` is empty")]
    Empty {
        /// Lower bound.
        min: u64,
        /// Upper bound.
        max: u64,
    },
    /// The upper bound is too large.
    #[error("widths above {MAX_WIDTH} are not supported, found {0}")]
    TooLarge(u64),
}

impl FromStr for ValueSet {
    type Err = ValueSetError;

    fn from_str(spec: &str) -> Result<Self, Self::Err> {
        let syntax = || ValueSetError::Syntax(spec.to_string());
        let (kind, range) = spec.trim().split_once(':').ok_or_else(syntax)?;
        let (lo, hi) = range.split_once("..=").ok_or_else(syntax)?;
        let number = |s: &str| -> Result<u64, ValueSetError> {
            match s.trim().parse::<u64>() {
                Ok(v) if v > 0 => Ok(v),
                _ => Err(ValueSetError::Number(s.trim().to_string())),
            }
        };
        let (lo, hi) = (number(lo)?, number(hi)?);
        if hi > MAX_WIDTH {
            return Err(ValueSetError::TooLarge(hi));
        }
        if lo > hi {
            return Err(ValueSetError::Empty { min: lo, max: hi });
        }
        match kind.trim() {
            "uniform" => Ok(ValueSet {
                min: lo,
                max: hi,
                step: 1,
            }),
            "step" => Ok(ValueSet {
                min: lo,
                max: hi,
                step: lo,
            }),
            other => Err(ValueSetError::Kind(other.to_string())),
        }
    }
}

impl fmt::Display for ValueSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.step == 1 {
            write!(f, "uniform:{}..={}", self.min, self.max)
        } else if self.step == self.min {
            write!(f, "step:{}..={}", self.step, self.max)
        } else {
            write!(
                f,
                "multiples of {} in {}..={}",
                self.step, self.min, self.max
            )
        }
    }
}

impl ValueSet {
    /// The grid a class with the extra constraint "multiple of `multiple_of`" sees.
    pub fn grid(&self, multiple_of: u64) -> Grid {
        let step = lcm(self.step.max(1), multiple_of.max(1));
        let lo = self.min.div_ceil(step).saturating_mul(step);
        let hi = self.max / step * step;
        let count = if lo <= hi && lo > 0 {
            (hi - lo) / step + 1
        } else {
            0
        };
        Grid {
            min: lo,
            max: hi,
            step,
            count,
        }
    }
}

/// The widths one class may take: `min, min + step, …, max` (`count` values; none
/// when `count` is 0).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
pub struct Grid {
    /// Smallest allowed width.
    pub min: u64,
    /// Largest allowed width.
    pub max: u64,
    /// Distance between allowed widths.
    pub step: u64,
    /// How many widths are allowed.
    pub count: u64,
}

impl Grid {
    /// Whether `w` is on the grid.
    pub fn contains(&self, w: u64) -> bool {
        self.count > 0 && w >= self.min && w <= self.max && (w - self.min).is_multiple_of(self.step)
    }

    /// The `i`-th allowed width (`i < count`).
    pub fn nth(&self, i: u64) -> u64 {
        self.min + i.min(self.count.saturating_sub(1)) * self.step
    }

    /// The allowed width nearest to `target` (ties go up), or `None` on an empty grid.
    pub fn nearest(&self, target: f64) -> Option<u64> {
        if self.count == 0 {
            return None;
        }
        let steps = ((target - self.min as f64) / self.step as f64).round();
        // `as` saturates, so negative and huge targets land on the ends.
        Some(self.nth(steps.max(0.0) as u64))
    }
}

/// Greatest common divisor.
pub(crate) fn gcd(mut a: u64, mut b: u64) -> u64 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// Least common multiple (saturating; `lcm(0, x)` is `x`).
pub(crate) fn lcm(a: u64, b: u64) -> u64 {
    if a == 0 || b == 0 {
        return a.max(b);
    }
    (a / gcd(a, b)).saturating_mul(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_both_kinds() {
        let u: ValueSet = "uniform:4..=1024".parse().unwrap();
        assert_eq!((u.min, u.max, u.step), (4, 1024, 1));
        let s: ValueSet = "step:8..=512".parse().unwrap();
        assert_eq!((s.min, s.max, s.step), (8, 512, 8));
        assert_eq!(s.to_string(), "step:8..=512");
        assert_eq!(u.to_string(), "uniform:4..=1024");
    }

    #[test]
    fn rejects_bad_specs_with_reasons() {
        let err = |s: &str| s.parse::<ValueSet>().unwrap_err().to_string();
        assert!(err("4..=1024").contains("expected `uniform:MIN..=MAX`"));
        assert!(err("uniform:4-1024").contains("expected `uniform:MIN..=MAX`"));
        assert!(err("gauss:4..=8").contains("unknown width set `gauss`"));
        assert!(err("uniform:0..=8").contains("`0` is not a positive integer"));
        assert!(err("uniform:x..=8").contains("`x` is not a positive integer"));
        assert!(err("uniform:9..=8").contains("`9..=8` is empty"));
        assert!(err("step:8..=100000").contains("above 65536"));
    }

    #[test]
    fn grid_folds_in_divisibility() {
        let s: ValueSet = "step:8..=512".parse().unwrap();
        let g = s.grid(3);
        assert_eq!((g.min, g.max, g.step, g.count), (24, 504, 24, 21));
        assert!(g.contains(48) && !g.contains(40));
        assert_eq!(g.nearest(1.0), Some(24));
        assert_eq!(g.nearest(1e9), Some(504));
        assert_eq!(g.nearest(60.0), Some(72));
        let empty = "uniform:4..=6".parse::<ValueSet>().unwrap().grid(8);
        assert_eq!(empty.count, 0);
        assert_eq!(empty.nearest(5.0), None);
    }
}
