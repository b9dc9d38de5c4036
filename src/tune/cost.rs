//! The measured cost of one forward pass as a function of its query rows, on this device.
//!
//! Timed on the loaded model through [`CausalLm::forward`] only (nothing here knows about
//! kernels): a throwaway sequence is prefilled with a short context, then batches of 1, 2, 4,
//! 8, ... rows are timed (the minimum of a few repetitions, after a warm-up pass). Rows see the
//! cache and earlier rows through a block mask, like a lookahead step, and half of them (at
//! least one) ask for their argmax, about the share of a lookahead step with G = W. The ladder stops
//! as soon as a batch costs more than `stop_ratio` single-token steps: with a cost that only
//! grows with rows, no larger batch can then pay for itself.

use std::time::Instant;

use serde::Serialize;

use crate::decode::draft_length::StepPrice;
use crate::model::{AttentionMask, Batch, CausalLm};
use crate::{LadeError, Result};

/// How to measure.
#[derive(Debug, Clone, Copy)]
pub struct MeasureOptions {
    /// Cached positions before the timed batches (clamped to the context).
    pub past: usize,
    /// Largest batch to time.
    pub max_rows: usize,
    /// Stop once `time(rows) > stop_ratio * time(1)`.
    pub stop_ratio: f64,
    /// Rounds over the row counts (each size keeps its minimum).
    pub repetitions: usize,
}

impl Default for MeasureOptions {
    fn default() -> Self {
        Self {
            past: 32,
            max_rows: 1024,
            stop_ratio: 4.0,
            repetitions: 3,
        }
    }
}

/// One timed row count.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, serde::Deserialize)]
pub struct CostSample {
    pub rows: usize,
    pub seconds: f64,
}

/// Forward time against rows: measured points, linear in between, unknown beyond the last.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ForwardCost {
    samples: Vec<CostSample>,
}

impl ForwardCost {
    /// A cost curve from measured points (`rows` increasing, 1 included).
    pub fn from_samples(mut samples: Vec<CostSample>) -> Result<Self> {
        samples.sort_by_key(|s| s.rows);
        samples.dedup_by_key(|s| s.rows);
        let valid = samples.first().is_some_and(|s| s.rows == 1)
            && samples
                .iter()
                .all(|s| s.seconds.is_finite() && s.seconds > 0.0);
        if !valid {
            return Err(LadeError::InvalidArgument(
                "a forward cost needs positive times, starting at 1 row".into(),
            ));
        }
        Ok(Self { samples })
    }

    /// Times forward passes of `lm` (whose cache is used and left empty).
    pub fn measure(lm: &mut dyn CausalLm, opts: &MeasureOptions) -> Result<Self> {
        let context = lm.context_size();
        let vocab = lm.vocab_size().max(1);
        if context < 2 {
            return Err(LadeError::InvalidArgument(
                "the context is too small to time forward passes".into(),
            ));
        }
        let past = opts.past.min(context / 2);
        let id = |i: usize| timing_id(i, vocab);
        fill_cache(lm, past)?;
        // Climb the ladder of sizes until a pass costs too much. Each size is timed in
        // `repetitions` rounds, each next to a single-row pass, and keeps its minimum: load on
        // the machine then inflates single samples, not whole sizes, and the single-row time
        // (the reference of every ratio) is the best of many.
        let mut samples: Vec<CostSample> = Vec::new();
        let mut one = f64::INFINITY;
        let mut rows = 1;
        while rows <= opts.max_rows && past + rows <= context {
            let mut t = f64::INFINITY;
            warm_up(lm, past, rows, &id)?;
            for _ in 0..opts.repetitions.max(1) {
                one = one.min(time_rows(lm, past, 1, &id)?);
                if rows > 1 {
                    t = t.min(time_rows(lm, past, rows, &id)?);
                }
            }
            if rows == 1 {
                t = one;
            }
            samples.push(CostSample { rows, seconds: t });
            if t > opts.stop_ratio * one {
                break;
            }
            rows *= 2;
        }
        lm.truncate(0);
        samples[0].seconds = one;
        // More rows never cost less: a dip is noise.
        for i in 1..samples.len() {
            samples[i].seconds = samples[i].seconds.max(samples[i - 1].seconds);
        }
        Self::from_samples(samples)
    }

    /// The measured points.
    pub fn samples(&self) -> &[CostSample] {
        &self.samples
    }

    /// Largest row count the curve covers.
    pub fn max_rows(&self) -> usize {
        self.samples.last().map_or(0, |s| s.rows)
    }

    /// Seconds of a forward pass over `rows` rows, or `None` beyond the measured range.
    pub fn seconds(&self, rows: usize) -> Option<f64> {
        let rows = rows.max(1);
        let i = self.samples.iter().position(|s| s.rows >= rows)?;
        let hi = self.samples[i];
        if hi.rows == rows || i == 0 {
            return Some(hi.seconds);
        }
        let lo = self.samples[i - 1];
        let f = (rows - lo.rows) as f64 / (hi.rows - lo.rows) as f64;
        Some(lo.seconds + f * (hi.seconds - lo.seconds))
    }

    /// [`Self::seconds`], and beyond the measured range the last point's time in proportion
    /// to rows: an estimate for the few largest steps of a config whose steps vary in size
    /// (the curve stops once a pass costs more than any config can recoup in every step).
    pub fn seconds_extrapolated(&self, rows: usize) -> f64 {
        self.seconds(rows).unwrap_or_else(|| {
            let last = self.samples[self.samples.len() - 1];
            last.seconds * rows as f64 / last.rows as f64
        })
    }

    /// `seconds(rows) / seconds(1)`: a step of `rows` rows in single-token steps.
    pub fn relative(&self, rows: usize) -> Option<f64> {
        Some(self.seconds(rows)? / self.samples[0].seconds)
    }
}

/// The price of a step's rows for learned draft lengths: `cost`'s time of a step of so many
/// rows over a single-row step's, extrapolated beyond the measured range.
pub fn step_price(cost: ForwardCost) -> StepPrice {
    let one = cost.samples()[0].seconds.max(1e-12);
    StepPrice::new(move |rows| cost.seconds_extrapolated(rows) / one)
}

/// The batch of `rows` rows after `past` cached positions: causal among themselves (as a
/// block mask, like a lookahead step), half of them (at least one) wanting their argmax.
fn with_batch<T>(
    past: usize,
    rows: usize,
    id: &dyn Fn(usize) -> u32,
    f: impl FnOnce(&Batch<'_>) -> Result<T>,
) -> Result<T> {
    let tokens: Vec<u32> = (0..rows).map(|i| id(past + i)).collect();
    let positions: Vec<u32> = (past as u32..(past + rows) as u32).collect();
    let mask = if rows == 1 {
        AttentionMask::Causal
    } else {
        let mut visible = vec![false; rows * rows];
        for i in 0..rows {
            for j in 0..=i {
                visible[i * rows + j] = true;
            }
        }
        AttentionMask::Block { q: rows, visible }
    };
    let logit_rows: Vec<usize> = (0..rows.div_ceil(2)).collect();
    f(&Batch {
        tokens: &tokens,
        positions: &positions,
        mask: &mask,
        logit_rows: &logit_rows,
    })
}

/// One untimed pass of `rows` rows (allocations, caches, graph capture on a GPU).
fn warm_up(
    lm: &mut dyn CausalLm,
    past: usize,
    rows: usize,
    id: &dyn Fn(usize) -> u32,
) -> Result<()> {
    with_batch(past, rows, id, |b| lm.forward_argmax(b))?;
    lm.truncate(past);
    Ok(())
}

/// Seconds of one forward of `rows` rows after `past` cached positions.
fn time_rows(
    lm: &mut dyn CausalLm,
    past: usize,
    rows: usize,
    id: &dyn Fn(usize) -> u32,
) -> Result<f64> {
    let s = with_batch(past, rows, id, |b| {
        let t = Instant::now();
        lm.forward_argmax(b)?;
        Ok(t.elapsed().as_secs_f64())
    })?;
    lm.truncate(past);
    Ok(s.max(1e-9))
}

/// An arbitrary valid token id for timing (the cost of a pass does not depend on the ids).
pub fn timing_id(i: usize, vocab: usize) -> u32 {
    ((i * 7919 + 13) % vocab.max(1)) as u32
}

/// Empties the cache of `lm` and fills it with `past` arbitrary tokens ([`timing_id`]), so that
/// passes can be timed after a realistic amount of context.
pub fn fill_cache(lm: &mut dyn CausalLm, past: usize) -> Result<()> {
    lm.truncate(0);
    if past == 0 {
        return Ok(());
    }
    let vocab = lm.vocab_size();
    let tokens: Vec<u32> = (0..past).map(|i| timing_id(i, vocab)).collect();
    let positions: Vec<u32> = (0..past as u32).collect();
    lm.forward(&Batch {
        tokens: &tokens,
        positions: &positions,
        mask: &AttentionMask::Causal,
        logit_rows: &[],
    })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn curve(points: &[(usize, f64)]) -> ForwardCost {
        ForwardCost::from_samples(
            points
                .iter()
                .map(|&(rows, seconds)| CostSample { rows, seconds })
                .collect(),
        )
        .unwrap()
    }

    #[test]
    fn interpolates_linearly_and_knows_nothing_beyond_the_last_point() {
        let c = curve(&[(1, 0.01), (2, 0.012), (4, 0.02), (8, 0.04)]);
        assert_eq!(c.seconds(1), Some(0.01));
        assert!((c.seconds(3).unwrap() - 0.016).abs() < 1e-12);
        assert!((c.seconds(6).unwrap() - 0.03).abs() < 1e-12);
        assert_eq!(c.seconds(9), None);
        assert!((c.seconds_extrapolated(16) - 0.08).abs() < 1e-12);
        assert_eq!(c.seconds_extrapolated(6), c.seconds(6).unwrap());
        assert!((c.relative(8).unwrap() - 4.0).abs() < 1e-12);
        assert_eq!(c.max_rows(), 8);
    }

    #[test]
    fn rejects_curves_without_one_row_or_with_bad_times() {
        let bad = |v: Vec<CostSample>| ForwardCost::from_samples(v).is_err();
        assert!(bad(vec![]));
        assert!(bad(vec![CostSample {
            rows: 2,
            seconds: 0.1
        }]));
        assert!(bad(vec![CostSample {
            rows: 1,
            seconds: 0.0
        }]));
        assert!(bad(vec![CostSample {
            rows: 1,
            seconds: f64::NAN
        }]));
    }
}
