//! Turning logits into a token: penalties, truncation filters and the draw.
//!
//! Pipeline (one call of [`Sampler::choose`] / [`Sampler::distribution`]):
//!
//! 1. **Repetition penalty** (llama.cpp / CTRL rule) over the distinct tokens
//!    among the last `repeat_last_n` entries of the history: a positive logit
//!    is divided by `repeat_penalty`, a non-positive one multiplied by it.
//! 2. **Greedy** (`temperature == 0`): argmax, ties to the lowest id, NaN
//!    treated as `-inf`. One linear scan, the RNG is not used.
//! 3. Otherwise: **top-k** → **temperature** → **softmax** → **top-p** (the
//!    smallest prefix, in (prob desc, id asc) order, whose cumulative
//!    probability is ≥ `top_p`, at least one token) → **min-p** (drop
//!    `p < min_p * p_max`) → **renormalise** → **draw** by inverse CDF over the
//!    tokens in (prob desc, id asc) order with `u = uniform(seed, index)`.
//!
//! Because the draw for position `index` uses only `uniform(seed, index)`, a
//! speculative decoder that recomputes the distribution at position `i` and
//! calls `choose(.., i)` gets exactly the token plain sampling would produce.
//!
//! Edge cases (never a panic): NaN logits count as `-inf`; if every logit is
//! `-inf`/NaN the result is token 0 (the greedy tie rule); if some logits are
//! `+inf` the distribution is uniform over those tokens; history ids outside
//! the vocabulary are ignored; empty logits give token 0 from `choose` and an
//! empty distribution.

use std::cmp::Ordering;

use super::params::SamplingParams;
use super::rng::uniform;
use crate::error::Result;

/// Candidate lists at least this long search the top-p nucleus by partial
/// selection instead of sorting the whole vocabulary.
const PARTIAL_TOP_P_MIN_LEN: usize = 4096;
/// First prefix size tried by the partial top-p search (grows 8x per retry).
const PARTIAL_TOP_P_FIRST: usize = 1024;

/// A validated set of [`SamplingParams`] that picks tokens.
#[derive(Debug, Clone, PartialEq)]
pub struct Sampler {
    params: SamplingParams,
}

impl Sampler {
    /// Validates `params` (see [`SamplingParams::validate`]).
    pub fn new(params: SamplingParams) -> Result<Self> {
        params.validate()?;
        Ok(Self { params })
    }

    /// The parameters this sampler was built with.
    pub fn params(&self) -> &SamplingParams {
        &self.params
    }

    /// `true` when the sampler takes the argmax (temperature 0).
    pub fn is_greedy(&self) -> bool {
        self.params.is_greedy()
    }

    /// `true` when every choice is the plain argmax of the logits (greedy, no repetition
    /// penalty): then only the argmax of each row is needed, not the row.
    pub fn is_argmax(&self) -> bool {
        self.is_greedy() && self.params.repeat_penalty == 1.0
    }

    /// Picks the token for output position `index`.
    ///
    /// `logits` is the model output over the vocabulary for this position,
    /// `history` the tokens before it (prompt and generated; only the last
    /// `repeat_last_n` matter). The random draw is `uniform(seed, index)`, so
    /// the result depends only on `(params, logits, history, index)`.
    pub fn choose(&self, logits: &[f32], history: &[u32], index: u64) -> u32 {
        if self.is_greedy() {
            let penalized = self.penalized_tokens(history, logits.len());
            return argmax_penalized(logits, &penalized, self.params.repeat_penalty);
        }
        let dist = self.distribution(logits, history);
        draw(&dist, uniform(self.params.seed, index)).unwrap_or(0)
    }

    /// The final warped distribution `choose` draws from: `(token, prob)`
    /// pairs with `prob > 0`, sorted by (prob desc, id asc), summing to 1
    /// (up to `f32` rounding). Greedy samplers return the single argmax with
    /// probability 1. Empty `logits` give an empty vector.
    pub fn distribution(&self, logits: &[f32], history: &[u32]) -> Vec<(u32, f32)> {
        if logits.is_empty() {
            return Vec::new();
        }
        let penalized = self.penalized_tokens(history, logits.len());
        if self.is_greedy() {
            let id = argmax_penalized(logits, &penalized, self.params.repeat_penalty);
            return vec![(id, 1.0)];
        }
        self.warp(logits, &penalized)
    }

    /// Sorted, deduplicated ids (all `< vocab`) the repetition penalty applies
    /// to. Empty, without allocating, when the penalty is off.
    fn penalized_tokens(&self, history: &[u32], vocab: usize) -> Vec<u32> {
        let p = &self.params;
        if p.repeat_penalty == 1.0 || p.repeat_last_n == 0 || history.is_empty() {
            return Vec::new();
        }
        let start = history.len().saturating_sub(p.repeat_last_n);
        let mut ids: Vec<u32> = history[start..]
            .iter()
            .copied()
            .filter(|&t| (t as usize) < vocab)
            .collect();
        ids.sort_unstable();
        ids.dedup();
        ids
    }

    /// The non-greedy pipeline from penalised logits to the final distribution.
    fn warp(&self, logits: &[f32], penalized: &[u32]) -> Vec<(u32, f32)> {
        let p = &self.params;
        let mut cand: Vec<(u32, f32)> = logits
            .iter()
            .enumerate()
            .map(|(i, &l)| (i as u32, l))
            .collect();
        for &id in penalized {
            if let Some(c) = cand.get_mut(id as usize) {
                c.1 = penalize(c.1, p.repeat_penalty);
            }
        }
        // Drops NaN and -inf: they have probability 0.
        cand.retain(|c| c.1 > f32::NEG_INFINITY);
        if cand.is_empty() {
            // Everything is -inf: follow the greedy rule (lowest id).
            return vec![(0, 1.0)];
        }
        if cand.iter().any(|c| c.1 == f32::INFINITY) {
            // exp(inf - inf) is undefined; the limit is uniform over the +inf tokens.
            cand.retain(|c| c.1 == f32::INFINITY);
            cand.iter_mut().for_each(|c| c.1 = 0.0);
        }

        // Top-k: partial selection, O(n).
        if p.top_k > 0 && p.top_k < cand.len() {
            cand.select_nth_unstable_by(p.top_k - 1, by_value_desc);
            cand.truncate(p.top_k);
        }

        // Temperature + softmax. (l - max) / t keeps tiny temperatures from
        // producing inf - inf; the max token gets exp(0) = 1, so sum >= 1.
        let t = p.temperature;
        let max = cand.iter().fold(f32::NEG_INFINITY, |m, c| m.max(c.1));
        let mut sum = 0.0f64;
        for c in cand.iter_mut() {
            c.1 = ((c.1 - max) / t).exp();
            sum += f64::from(c.1);
        }
        // Min-p before sorting: p < min_p * p_max  <=>  e / sum < min_p / sum
        // <=>  e < min_p, since p_max = 1 / sum. Both top-p and min-p keep a
        // prefix of the (prob desc, id asc) order and top-p's cut is computed
        // from the unrenormalised probabilities below, so filtering min-p first
        // gives exactly "top-p, then min-p" while shrinking the sort. Tokens
        // whose weight underflowed to 0 are dropped as well.
        let min_p = p.min_p;
        cand.retain(|c| c.1 > 0.0 && c.1 >= min_p);
        for c in cand.iter_mut() {
            c.1 = (f64::from(c.1) / sum) as f32;
        }

        // Top-p (sorting at least the nucleus), or a full sort when it is off.
        if p.top_p < 1.0 {
            let keep = sort_nucleus(&mut cand, p.top_p);
            cand.truncate(keep);
        } else {
            cand.sort_unstable_by(by_value_desc);
        }

        // Renormalise over what is left.
        let kept: f64 = cand.iter().map(|c| f64::from(c.1)).sum();
        if kept > 0.0 {
            for c in cand.iter_mut() {
                c.1 = (f64::from(c.1) / kept) as f32;
            }
        }
        // Rounding can make two different probabilities equal; restore the
        // id-ascending tie order in that case (cheap on sorted input).
        if !cand.is_sorted_by(|a, b| by_value_desc(a, b) != Ordering::Greater) {
            cand.sort_by(by_value_desc);
        }
        cand
    }
}

/// Inverse-CDF draw from a distribution in the order given.
///
/// Walks `dist` accumulating probabilities (in `f64`) and returns the first
/// token whose cumulative mass exceeds `u * total`, where `total` is the sum
/// of all probabilities (so `dist` need not be exactly normalised). Pass `u`
/// in `[0, 1)`, e.g. [`uniform`]. Tokens with probability 0 are never chosen
/// unless nothing else can be; `None` only for an empty `dist`.
pub fn draw(dist: &[(u32, f32)], u: f64) -> Option<u32> {
    let total: f64 = dist.iter().map(|d| f64::from(d.1)).sum();
    let target = u * total;
    let mut cum = 0.0f64;
    for &(id, p) in dist {
        cum += f64::from(p);
        if target < cum {
            return Some(id);
        }
    }
    // Only reached through rounding (u * total >= total) or bad input.
    dist.iter()
        .rev()
        .find(|d| d.1 > 0.0)
        .or(dist.last())
        .map(|d| d.0)
}

/// Order by value descending, then id ascending. A total order for the
/// NaN-free values used here (`total_cmp` keeps it total regardless).
#[inline]
fn by_value_desc(a: &(u32, f32), b: &(u32, f32)) -> Ordering {
    b.1.total_cmp(&a.1).then(a.0.cmp(&b.0))
}

/// The llama.cpp / CTRL repetition penalty for one logit.
#[inline]
fn penalize(logit: f32, penalty: f32) -> f32 {
    if logit > 0.0 {
        logit / penalty
    } else {
        logit * penalty
    }
}

/// Index of the largest logit: ties go to the lowest id, NaN never wins.
pub fn argmax(logits: &[f32]) -> u32 {
    argmax_penalized(logits, &[], 1.0)
}

/// Argmax of the penalised logits in one pass without copying them: the
/// unpenalised stretches between penalised ids are scanned with a tight loop.
/// Ties go to the lowest id; NaN never wins (acts as -inf); token 0 when
/// nothing beats -inf or `logits` is empty.
fn argmax_penalized(logits: &[f32], penalized: &[u32], penalty: f32) -> u32 {
    let mut best_i = 0usize;
    let mut best_v = f32::NEG_INFINITY;
    let scan = |start: usize, slice: &[f32], best_i: &mut usize, best_v: &mut f32| {
        for (j, &v) in slice.iter().enumerate() {
            if v > *best_v {
                *best_v = v;
                *best_i = start + j;
            }
        }
    };
    let mut start = 0usize;
    for &id in penalized {
        let id = id as usize;
        // `penalized` is sorted, deduplicated and bounded by logits.len().
        let (Some(stretch), Some(&raw)) = (logits.get(start..id), logits.get(id)) else {
            break;
        };
        scan(start, stretch, &mut best_i, &mut best_v);
        let v = penalize(raw, penalty);
        if v > best_v {
            best_v = v;
            best_i = id;
        }
        start = id + 1;
    }
    if let Some(rest) = logits.get(start..) {
        scan(start, rest, &mut best_i, &mut best_v);
    }
    best_i as u32
}

/// Sorts (at least) the top-p nucleus of `cand` to the front in
/// (prob desc, id asc) order and returns its length: the smallest prefix with
/// cumulative probability >= `top_p`, at least 1, at most `cand.len()`.
///
/// Long lists first try a partially selected prefix and grow it 8x until the
/// nucleus fits, so a peaked distribution over a 150k vocabulary costs O(n)
/// instead of a full sort. The cumulative sum runs over the same sorted prefix
/// either way, so the cut does not depend on the strategy.
fn sort_nucleus(cand: &mut [(u32, f32)], top_p: f32) -> usize {
    let n = cand.len();
    if n == 0 {
        return 0;
    }
    let target = f64::from(top_p);
    let mut k = if n >= PARTIAL_TOP_P_MIN_LEN {
        PARTIAL_TOP_P_FIRST
    } else {
        n
    };
    loop {
        if k < n {
            cand.select_nth_unstable_by(k - 1, by_value_desc);
            cand[..k].sort_unstable_by(by_value_desc);
        } else {
            cand.sort_unstable_by(by_value_desc);
        }
        let mut cum = 0.0f64;
        for (i, c) in cand[..k].iter().enumerate() {
            cum += f64::from(c.1);
            if cum >= target {
                return i + 1;
            }
        }
        if k >= n {
            return n;
        }
        k = k.saturating_mul(8).min(n);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::LadeError;
    use crate::sampling::rng::random_u64;

    fn sampler(p: SamplingParams) -> Sampler {
        Sampler::new(p).unwrap()
    }

    fn greedy() -> Sampler {
        sampler(SamplingParams::default())
    }

    fn sampling(temperature: f32) -> SamplingParams {
        SamplingParams {
            temperature,
            ..SamplingParams::default()
        }
    }

    fn assert_dist(got: &[(u32, f32)], want: &[(u32, f64)]) {
        assert_eq!(
            got.iter().map(|d| d.0).collect::<Vec<_>>(),
            want.iter().map(|d| d.0).collect::<Vec<_>>(),
            "ids of {got:?}"
        );
        for (g, w) in got.iter().zip(want) {
            assert!((f64::from(g.1) - w.1).abs() < 1e-6, "{got:?} vs {want:?}");
        }
    }

    /// Logits whose temperature-1 softmax is exactly `probs`.
    fn logits_for(probs: &[f64]) -> Vec<f32> {
        probs.iter().map(|p| p.ln() as f32).collect()
    }

    #[test]
    fn new_validates() {
        let bad = SamplingParams {
            top_p: 1.5,
            ..SamplingParams::default()
        };
        match Sampler::new(bad) {
            Err(LadeError::InvalidArgument(m)) => {
                assert_eq!(m, "--top-p must be in (0, 1], got 1.5")
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn greedy_argmax() {
        let s = greedy();
        assert_eq!(s.choose(&[0.1, 3.0, -2.0, 2.9], &[], 0), 1);
        assert_eq!(s.choose(&[-5.0, -4.0, -6.0], &[], 0), 1);
        assert_eq!(s.choose(&[7.0], &[], 0), 0);
        assert_eq!(s.distribution(&[0.1, 3.0, -2.0], &[]), vec![(1, 1.0)]);
        // The index does not matter for greedy.
        assert_eq!(s.choose(&[0.1, 3.0, -2.0, 2.9], &[], 12345), 1);
    }

    #[test]
    fn greedy_ties_go_to_lowest_id() {
        let s = greedy();
        assert_eq!(s.choose(&[1.0, 5.0, 2.0, 5.0, 5.0], &[], 0), 1);
        assert_eq!(s.choose(&[3.0, 3.0], &[], 0), 0);
        // A tie created by the penalty: token 3 (10 / 2 = 5) ties token 1.
        let s = sampler(SamplingParams {
            repeat_penalty: 2.0,
            ..SamplingParams::default()
        });
        assert_eq!(s.choose(&[1.0, 5.0, 2.0, 10.0], &[3], 0), 1);
        assert_eq!(s.choose(&[1.0, 10.0, 2.0, 5.0], &[1], 0), 1);
    }

    #[test]
    fn greedy_nan_and_degenerate_logits_do_not_panic() {
        let s = greedy();
        let nan = f32::NAN;
        assert_eq!(s.choose(&[nan, 1.0, nan, 0.5], &[], 0), 1);
        assert_eq!(s.choose(&[1.0, nan, 2.0], &[], 0), 2);
        // All NaN / -inf: every logit is "-inf", the tie rule gives 0.
        assert_eq!(s.choose(&[nan, nan], &[], 0), 0);
        assert_eq!(s.choose(&[f32::NEG_INFINITY, nan], &[], 0), 0);
        assert_eq!(s.choose(&[0.0, f32::INFINITY, f32::INFINITY], &[], 0), 1);
        assert_eq!(s.choose(&[], &[], 0), 0);
        assert!(s.distribution(&[], &[]).is_empty());
        // Same for the sampling path.
        let t = sampler(sampling(0.8));
        assert_eq!(t.choose(&[nan, 1.0, nan], &[], 3), 1);
        assert_eq!(t.distribution(&[nan, 1.0, nan], &[]), vec![(1, 1.0)]);
        assert_eq!(
            t.distribution(&[nan, f32::NEG_INFINITY], &[]),
            vec![(0, 1.0)]
        );
        assert_eq!(
            t.distribution(&[f32::INFINITY, 0.0, f32::INFINITY], &[]),
            vec![(0, 0.5), (2, 0.5)]
        );
        assert_eq!(t.choose(&[], &[], 0), 0);
        // Out-of-vocabulary history ids are ignored.
        let pen = sampler(SamplingParams {
            repeat_penalty: 2.0,
            ..sampling(1.0)
        });
        assert_eq!(
            pen.choose(&[1.0, 0.0], &[7, u32::MAX], 0),
            pen.choose(&[1.0, 0.0], &[], 0)
        );
        assert_eq!(
            pen.distribution(&[1.0, 0.0], &[7]),
            pen.distribution(&[1.0, 0.0], &[])
        );
    }

    #[test]
    fn penalty_divides_positive_and_multiplies_negative() {
        let s = sampler(SamplingParams {
            repeat_penalty: 2.0,
            ..sampling(1.0)
        });
        // Token 0: 4 -> 2. Token 1: -1 -> -2. Token 2 untouched (0.5).
        // Repeats in the history count once (not 4 / 2 / 2).
        let logits = [4.0f32, -1.0, 0.5];
        let d = s.distribution(&logits, &[0, 1, 0, 0]);
        let w = [2.0f64, -2.0, 0.5].map(f64::exp);
        let z: f64 = w.iter().sum();
        assert_dist(&d, &[(0, w[0] / z), (2, w[2] / z), (1, w[1] / z)]);

        // Greedy: 3.0 (token 0) is halved to 1.5 and loses to token 1 (2.0).
        let g = sampler(SamplingParams {
            repeat_penalty: 2.0,
            ..SamplingParams::default()
        });
        assert_eq!(g.choose(&[3.0, 2.0], &[], 0), 0);
        assert_eq!(g.choose(&[3.0, 2.0], &[0], 0), 1);
        // Negative logits are pushed further down: -1 -> -2 loses to -1.5.
        assert_eq!(g.choose(&[-1.0, -1.5], &[], 0), 0);
        assert_eq!(g.choose(&[-1.0, -1.5], &[0], 0), 1);
        // A penalty below 1 boosts instead.
        let boost = sampler(SamplingParams {
            repeat_penalty: 0.5,
            ..SamplingParams::default()
        });
        assert_eq!(boost.choose(&[3.0, 2.0], &[1], 0), 1);
    }

    #[test]
    fn penalty_only_covers_last_n_tokens() {
        let s = sampler(SamplingParams {
            repeat_penalty: 4.0,
            repeat_last_n: 2,
            ..SamplingParams::default()
        });
        let logits = [3.0f32, 2.0, 1.0, 0.0];
        // Token 0 is 3 tokens back: outside the window.
        assert_eq!(s.choose(&logits, &[0, 2, 3], 0), 0);
        // Token 0 is in the last 2: 3 / 4 = 0.75 < 2.
        assert_eq!(s.choose(&logits, &[2, 0, 3], 0), 1);
        // History shorter than the window.
        assert_eq!(s.choose(&logits, &[0], 0), 1);
        // repeat_last_n = 0 disables the penalty.
        let off = sampler(SamplingParams {
            repeat_penalty: 4.0,
            repeat_last_n: 0,
            ..SamplingParams::default()
        });
        assert_eq!(off.choose(&logits, &[0], 0), 0);
    }

    #[test]
    fn top_k_one_equals_greedy() {
        let g = sampler(SamplingParams {
            repeat_penalty: 1.3,
            ..SamplingParams::default()
        });
        let k1 = sampler(SamplingParams {
            temperature: 1.5,
            top_k: 1,
            repeat_penalty: 1.3,
            seed: 99,
            ..SamplingParams::default()
        });
        for round in 0..200u64 {
            // Coarse values so ties happen often.
            let logits: Vec<f32> = (0..50)
                .map(|i| (random_u64(round, i) % 9) as f32 - 4.0)
                .collect();
            let history: Vec<u32> = (0..10)
                .map(|i| (random_u64(round + 1000, i) % 50) as u32)
                .collect();
            let want = g.choose(&logits, &history, round);
            assert_eq!(k1.choose(&logits, &history, round), want);
            assert_eq!(k1.distribution(&logits, &history), vec![(want, 1.0)]);
        }
    }

    #[test]
    fn top_k_keeps_k_best() {
        let s = sampler(SamplingParams {
            top_k: 2,
            ..sampling(1.0)
        });
        let d = s.distribution(&[0.0, 2.0, 1.0, 2.0], &[]);
        // Tokens 1 and 3 tie at 2.0: equal probability, id ascending.
        assert_dist(&d, &[(1, 0.5), (3, 0.5)]);
        // Tie at the boundary goes to the lower id.
        let d = s.distribution(&[1.0, 1.0, 3.0, 1.0], &[]);
        let (a, b) = (1.0f64, (-2.0f64).exp());
        assert_dist(&d, &[(2, a / (a + b)), (0, b / (a + b))]);
    }

    #[test]
    fn top_p_keeps_minimal_nucleus() {
        // Temperature 1, probabilities 0.05 0.5 0.1 0.2 0.15 (ids 0..5).
        let logits = logits_for(&[0.05, 0.5, 0.1, 0.2, 0.15]);
        let with = |top_p: f32| {
            sampler(SamplingParams {
                top_p,
                ..sampling(1.0)
            })
            .distribution(&logits, &[])
        };
        // Sorted: 0.5 (1), 0.2 (3), 0.15 (4), 0.1 (2), 0.05 (0).
        // top_p 0.8: cum 0.5, 0.7, 0.85 >= 0.8 -> 3 tokens.
        assert_dist(
            &with(0.8),
            &[(1, 0.5 / 0.85), (3, 0.2 / 0.85), (4, 0.15 / 0.85)],
        );
        // top_p 0.6: cum 0.5, 0.7 >= 0.6 -> 2 tokens.
        assert_dist(&with(0.6), &[(1, 0.5 / 0.7), (3, 0.2 / 0.7)]);
        // top_p 0.9: cum 0.95 at the 4th token.
        assert_dist(
            &with(0.9),
            &[
                (1, 0.5 / 0.95),
                (3, 0.2 / 0.95),
                (4, 0.15 / 0.95),
                (2, 0.1 / 0.95),
            ],
        );
        // Tiny top_p keeps at least one token.
        assert_dist(&with(0.01), &[(1, 1.0)]);
        // 1.0 is off: everything stays.
        assert_eq!(with(1.0).len(), 5);
    }

    #[test]
    fn min_p_cutoff() {
        let logits = logits_for(&[0.05, 0.5, 0.1, 0.2, 0.15]);
        let with = |min_p: f32, top_p: f32| {
            sampler(SamplingParams {
                min_p,
                top_p,
                ..sampling(1.0)
            })
            .distribution(&logits, &[])
        };
        // p_max = 0.5; min_p 0.35 -> threshold 0.175: keep 0.5 and 0.2.
        assert_dist(&with(0.35, 1.0), &[(1, 0.5 / 0.7), (3, 0.2 / 0.7)]);
        // min_p 0.25 -> threshold 0.125: keep 0.5, 0.2, 0.15.
        assert_dist(
            &with(0.25, 1.0),
            &[(1, 0.5 / 0.85), (3, 0.2 / 0.85), (4, 0.15 / 0.85)],
        );
        // min_p 1.0 keeps only the max.
        assert_dist(&with(1.0, 1.0), &[(1, 1.0)]);
        // Applied after top-p: top-p 0.9 keeps 4, min-p 0.35 trims to 2;
        // top-p 0.6 keeps 2 and min-p 0.25 removes nothing more.
        assert_dist(&with(0.35, 0.9), &[(1, 0.5 / 0.7), (3, 0.2 / 0.7)]);
        assert_dist(&with(0.25, 0.6), &[(1, 0.5 / 0.7), (3, 0.2 / 0.7)]);
        // With temperature 0.5 the probabilities square before the cut:
        // 0.25, 0.04, 0.0225, 0.01, 0.0025 (ratios 1, .16, .09, .04, .01).
        let s = sampler(SamplingParams {
            min_p: 0.1,
            ..sampling(0.5)
        });
        let d = s.distribution(&logits, &[]);
        let z = 0.25 + 0.04;
        assert_dist(&d, &[(1, 0.25 / z), (3, 0.04 / z)]);
    }

    #[test]
    fn determinism_and_index_dependence() {
        let s = sampler(SamplingParams {
            seed: 7,
            ..sampling(1.0)
        });
        let logits = [0.0f32; 8];
        let a: Vec<u32> = (0..200).map(|i| s.choose(&logits, &[], i)).collect();
        let b: Vec<u32> = (0..200).map(|i| s.choose(&logits, &[], i)).collect();
        assert_eq!(a, b, "same (seed, index, logits) must give the same token");
        // Different indices: the draws vary and cover the (uniform) support.
        let mut seen = [false; 8];
        a.iter().for_each(|&t| seen[t as usize] = true);
        assert!(seen.iter().all(|&x| x), "{a:?}");
        // Evaluating positions in another order changes nothing (no state).
        let rev: Vec<u32> = (0..200).rev().map(|i| s.choose(&logits, &[], i)).collect();
        assert_eq!(a, rev.into_iter().rev().collect::<Vec<_>>());
        // Another seed gives another stream.
        let s2 = sampler(SamplingParams {
            seed: 8,
            ..sampling(1.0)
        });
        let c: Vec<u32> = (0..200).map(|i| s2.choose(&logits, &[], i)).collect();
        assert_ne!(a, c);
        // choose is exactly the inverse-CDF draw on distribution().
        let d = s.distribution(&logits, &[]);
        for i in 0..200 {
            assert_eq!(Some(a[i as usize]), draw(&d, uniform(7, i)));
        }
    }

    #[test]
    fn draw_inverse_cdf() {
        let d = [(5u32, 0.5f32), (2, 0.3), (9, 0.2)];
        assert_eq!(draw(&d, 0.0), Some(5));
        assert_eq!(draw(&d, 0.49), Some(5));
        assert_eq!(draw(&d, 0.51), Some(2));
        assert_eq!(draw(&d, 0.79), Some(2));
        assert_eq!(draw(&d, 0.81), Some(9));
        assert_eq!(draw(&d, 0.999_999), Some(9));
        // u = 1 (outside the contract) still gives the last positive token.
        assert_eq!(draw(&[(1, 0.5), (2, 0.5), (3, 0.0)], 1.0), Some(2));
        assert_eq!(draw(&[(3, 0.0), (4, 1.0)], 0.0), Some(4));
        assert_eq!(draw(&[], 0.5), None);
    }

    /// Chi-square goodness of fit of `choose` against probabilities computed
    /// here from scratch (f64, no code shared with the sampler).
    #[test]
    fn chi_square_matches_warped_distribution() {
        let logits = [0.5f32, 2.0, -1.0, 1.0, 0.0, -0.5];
        let (temp, top_k) = (0.7f64, 5usize);
        let s = sampler(SamplingParams {
            temperature: temp as f32,
            top_k,
            seed: 2024,
            ..SamplingParams::default()
        });

        // Expected: drop the lowest logit (top-k 5 of 6), softmax(l / T).
        let mut ids: Vec<usize> = (0..logits.len()).collect();
        ids.sort_by(|&a, &b| logits[b].partial_cmp(&logits[a]).unwrap());
        let kept = &ids[..top_k];
        let w: Vec<f64> = kept
            .iter()
            .map(|&i| (f64::from(logits[i]) / temp).exp())
            .collect();
        let z: f64 = w.iter().sum();
        let mut expected = [0.0f64; 6];
        for (&i, wi) in kept.iter().zip(&w) {
            expected[i] = wi / z;
        }
        assert_eq!(expected[2], 0.0);

        // The sampler's own distribution agrees closely.
        for (id, p) in s.distribution(&logits, &[]) {
            assert!((f64::from(p) - expected[id as usize]).abs() < 1e-6);
        }

        const N: u64 = 20_000;
        let mut counts = [0u64; 6];
        for i in 0..N {
            counts[s.choose(&logits, &[], i) as usize] += 1;
        }
        assert_eq!(counts[2], 0, "top-k must remove token 2");
        let chi2: f64 = (0..6)
            .filter(|&i| expected[i] > 0.0)
            .map(|i| {
                let e = expected[i] * N as f64;
                (counts[i] as f64 - e).powi(2) / e
            })
            .sum();
        // 5 categories -> 4 degrees of freedom; the chi-square critical value
        // at p = 0.001 for dof 4 is 18.467.
        assert!(
            chi2 < 18.467,
            "chi2 = {chi2}, counts {counts:?}, expected {expected:?}"
        );
        // And the test can fail: the counts are far from a uniform-over-5 law.
        let uniform_chi2: f64 = [0usize, 1, 3, 4, 5]
            .iter()
            .map(|&i| {
                let e = N as f64 / 5.0;
                (counts[i] as f64 - e).powi(2) / e
            })
            .sum();
        assert!(uniform_chi2 > 18.467);
    }

    /// Straightforward full-sort reference of the whole pipeline in f64.
    fn reference(p: &SamplingParams, logits: &[f32]) -> Vec<(u32, f64)> {
        let mut c: Vec<(u32, f64)> = logits
            .iter()
            .enumerate()
            .map(|(i, &l)| (i as u32, f64::from(l)))
            .collect();
        c.sort_by(|a, b| b.1.partial_cmp(&a.1).unwrap().then(a.0.cmp(&b.0)));
        if p.top_k > 0 {
            c.truncate(p.top_k);
        }
        let t = f64::from(p.temperature);
        let max = c[0].1;
        let z: f64 = c.iter().map(|x| ((x.1 - max) / t).exp()).sum();
        for x in c.iter_mut() {
            x.1 = ((x.1 - max) / t).exp() / z;
        }
        if p.top_p < 1.0 {
            let mut cum = 0.0;
            let mut keep = c.len();
            for (i, x) in c.iter().enumerate() {
                cum += x.1;
                if cum >= f64::from(p.top_p) {
                    keep = i + 1;
                    break;
                }
            }
            c.truncate(keep);
        }
        let pmax = c[0].1;
        c.retain(|x| x.1 >= f64::from(p.min_p) * pmax);
        let z: f64 = c.iter().map(|x| x.1).sum();
        c.iter_mut().for_each(|x| x.1 /= z);
        c
    }

    /// Large vocabularies take the partial-selection paths (top-k select,
    /// partial top-p, min-p prefilter); they must agree with the reference.
    #[test]
    fn large_vocab_matches_reference() {
        let vocab = 50_000u64;
        for (round, (top_k, top_p, min_p, temp)) in [
            (0usize, 0.9f32, 0.0f32, 1.0f32),
            (0, 0.5, 0.0, 0.7),
            (0, 0.999, 0.0, 1.3),
            (0, 1.0, 0.05, 1.0),
            (0, 0.95, 0.01, 0.8),
            (100, 0.9, 0.0, 1.0),
            (2000, 1.0, 0.0, 1.0),
            (0, 1.0, 0.0, 1.0),
        ]
        .into_iter()
        .enumerate()
        {
            // Gaussian-ish logits with a few strong tokens.
            let logits: Vec<f32> = (0..vocab)
                .map(|i| {
                    let s: f64 = (0..4)
                        .map(|j| super::uniform(round as u64, i * 4 + j))
                        .sum();
                    let boost = if random_u64(77, i) % 5000 == 0 {
                        8.0
                    } else {
                        0.0
                    };
                    ((s - 2.0) * 3.0 + boost) as f32
                })
                .collect();
            let p = SamplingParams {
                temperature: temp,
                top_k,
                top_p,
                min_p,
                seed: round as u64,
                ..SamplingParams::default()
            };
            let got = sampler(p).distribution(&logits, &[]);
            let mut want = reference(&p, &logits);
            // The sampler drops probabilities that underflow f32 to zero.
            want.retain(|x| x.1 as f32 > 0.0);
            assert_eq!(got.len(), want.len(), "case {round}");
            // Compare by id: distinct f64 probabilities may round to equal f32
            // ones, which the sampler then orders by id.
            let mut by_id = got.clone();
            by_id.sort_by_key(|g| g.0);
            want.sort_by_key(|w| w.0);
            for (g, w) in by_id.iter().zip(&want) {
                assert_eq!(g.0, w.0, "case {round}");
                assert!(
                    (f64::from(g.1) - w.1).abs() < 1e-6 + w.1 * 1e-4,
                    "case {round}"
                );
            }
            let sum: f64 = got.iter().map(|g| f64::from(g.1)).sum();
            assert!((sum - 1.0).abs() < 1e-4, "case {round}: sum {sum}");
            assert!(got
                .windows(2)
                .all(|w| by_value_desc(&w[0], &w[1]) == Ordering::Less));
        }
    }
}
