//! Expected tokens per step of lookahead configs: a prior measured with `lade bench` on GPUs,
//! refined by the statistics of the generations that ran.
//!
//! The prior is the step compression of greedy decoding with the prompt pool on the default
//! model (SmolLM2-135M-Instruct) on MT-Bench in the chat template, the lower of the two measured
//! tasks (code compresses better), so that `auto` errs towards plain decoding. For other models
//! it is a rough guide (`--lookahead-prior` takes one measured on them): the running statistics
//! rescale it to the workload, and reorder configs only once they are observed to differ.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::decode::LookaheadConfig;
use crate::{LadeError, Result};

/// `(W, N, G, tokens per step)`: MT-Bench in the chat template, 256 new tokens, greedy, first 40
/// prompts (first 20 for 3,3,3, 5,3,5 and 15,5,15; first 10 for 10,5,10 and 20,5,20). Every
/// output was identical to plain greedy, so the compression is the algorithm's, not the
/// device's. 1,5,1, 2,5,2, 1,5,3, 4,3,4 and 7,4,7 were measured on an H200 with the
/// context-matched candidate (the default); the others on an H100 without it, which
/// accepted 0.01-0.05 tokens per step less (1,5,1: 1.58 without, 1.63 with). 0,8,1, 0,16,1 and
/// 0,32,1 (no window: one draft from the prompt and the output, as long as the context match
/// suggests, at most N-1, or a 3- or 7-token draft from the draft corpus where the
/// text has none or only a short match) were measured on an H200 with the draft corpus of
/// the default model's own prompts (without the corpus 0,32,1 made 1.76).
const MEASURED: &[(usize, usize, usize, f64)] = &[
    (0, 8, 1, 2.11),
    (0, 16, 1, 2.18),
    (0, 32, 1, 2.20),
    (1, 5, 1, 1.63),
    (2, 3, 2, 1.55),
    (3, 3, 3, 1.76),
    (4, 3, 4, 1.73),
    (2, 5, 2, 1.78),
    (1, 5, 3, 1.72),
    (3, 5, 3, 1.86),
    (4, 5, 4, 1.93),
    (5, 3, 5, 1.86),
    (2, 7, 2, 1.82),
    (7, 4, 7, 1.96),
    (10, 5, 10, 2.33),
    (15, 5, 15, 2.44),
    (20, 5, 20, 2.45),
];

/// `(W, N, G)`.
type Wng = (usize, usize, usize);

/// `((W, N, G), [(query rows, steps)])` of configs whose steps vary in size: the
/// W = 0 configs, whose draft follows the context match (3 / 7 / 15 / 31 tokens after a
/// 1 / 2-3 / 4-15 / 16+ token match; from the draft corpus 3 or 7 tokens, or none): steps by
/// query rows in the same H200 run (40 MT-Bench prompts × 256 tokens). A config not listed
/// has steps of [`AcceptanceEntry::rows`] rows.
const MEASURED_ROWS: &[(Wng, &[(usize, f64)])] = &[
    ((0, 8, 1), &[(1, 128.0), (4, 2754.0), (8, 1975.0)]),
    (
        (0, 16, 1),
        &[(1, 128.0), (4, 2754.0), (8, 1445.0), (16, 368.0)],
    ),
    (
        (0, 32, 1),
        &[
            (1, 128.0),
            (4, 2754.0),
            (8, 1445.0),
            (16, 248.0),
            (32, 70.0),
        ],
    ),
];

/// How many steps of evidence the prior counts for when it is blended with observed steps.
pub(crate) const PRIOR_WEIGHT_STEPS: f64 = 256.0;

/// One config of the table.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AcceptanceEntry {
    pub window: usize,
    pub ngram: usize,
    pub guesses: usize,
    /// Prior tokens per step.
    pub prior: f64,
    /// Prior fractions of steps by query rows (summing to 1); empty: every step has
    /// [`Self::rows`] rows.
    pub prior_rows: Vec<(usize, f64)>,
    /// Tokens observed since the process started.
    pub observed_tokens: usize,
    /// Steps observed since the process started, by query rows.
    pub observed_rows: BTreeMap<usize, usize>,
}

impl AcceptanceEntry {
    /// Query rows of a steady-state step with all G candidates: `(W + G)(N - 1)`, or
    /// `1 + G(N - 1)` without a window.
    pub fn rows(&self) -> usize {
        self.config().step_tokens(self.guesses)
    }

    /// Steps observed since the process started.
    pub fn observed_steps(&self) -> usize {
        self.observed_rows.values().sum()
    }

    /// Expected fractions of steps by query rows: the prior's (as [`PRIOR_WEIGHT_STEPS`]
    /// steps) blended with the observed steps, increasing in rows.
    pub fn row_mix(&self) -> Vec<(usize, f64)> {
        let prior = if self.prior_rows.is_empty() {
            vec![(self.rows(), 1.0)]
        } else {
            self.prior_rows.clone()
        };
        let mut weights: BTreeMap<usize, f64> = BTreeMap::new();
        for (r, f) in prior {
            *weights.entry(r).or_default() += f * PRIOR_WEIGHT_STEPS;
        }
        for (&r, &n) in &self.observed_rows {
            *weights.entry(r).or_default() += n as f64;
        }
        let total: f64 = weights.values().sum();
        weights.into_iter().map(|(r, w)| (r, w / total)).collect()
    }

    /// The lookahead config (default policy switches).
    pub fn config(&self) -> LookaheadConfig {
        LookaheadConfig::new(self.window, self.ngram, self.guesses)
    }

    fn is(&self, c: &LookaheadConfig) -> bool {
        (self.window, self.ngram, self.guesses) == (c.window, c.ngram, c.guesses)
    }
}

/// Expected acceptance of every config `auto` may pick.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AcceptanceTable {
    entries: Vec<AcceptanceEntry>,
}

impl Default for AcceptanceTable {
    fn default() -> Self {
        Self::measured()
    }
}

impl AcceptanceTable {
    /// The prior measured on the default model.
    pub fn measured() -> Self {
        MEASURED_ROWS
            .iter()
            .fold(Self::from_prior(MEASURED), |t, &(wng, mix)| {
                t.with_row_mix(wng, mix)
            })
    }

    /// Gives the entry of `(W, N, G)` (if any) a prior mix of step sizes: `(query rows,
    /// weight)`, e.g. steps counted by rows (normalised to fractions here).
    pub fn with_row_mix(mut self, wng: Wng, mix: &[(usize, f64)]) -> Self {
        let total: f64 = mix.iter().map(|&(_, w)| w).sum();
        if let Some(e) = self
            .entries
            .iter_mut()
            .find(|e| (e.window, e.ngram, e.guesses) == wng)
        {
            e.prior_rows = mix.iter().map(|&(r, w)| (r, w / total)).collect();
        }
        self
    }

    /// A table from `(W, N, G, tokens per step)` rows.
    pub fn from_prior(rows: &[(usize, usize, usize, f64)]) -> Self {
        Self {
            entries: rows
                .iter()
                .map(|&(window, ngram, guesses, prior)| AcceptanceEntry {
                    window,
                    ngram,
                    guesses,
                    prior,
                    prior_rows: Vec::new(),
                    observed_tokens: 0,
                    observed_rows: BTreeMap::new(),
                })
                .collect(),
        }
    }

    /// Parses a prior from text: one `W,N,G,tokens_per_step` per line; `#` starts a comment.
    /// This is how a prior measured on another model (with `lade bench`) is given.
    pub fn parse(text: &str) -> Result<Self> {
        let mut rows = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            let bad = || {
                LadeError::InvalidArgument(format!(
                    "lookahead prior line {}: expected W,N,G,tokens_per_step, got `{line}`",
                    i + 1
                ))
            };
            let f: Vec<&str> = line.split(',').map(str::trim).collect();
            if f.len() != 4 {
                return Err(bad());
            }
            let int = |s: &str| s.parse::<usize>().map_err(|_| bad());
            let (w, n, g) = (int(f[0])?, int(f[1])?, int(f[2])?);
            let tps: f64 = f[3].parse().map_err(|_| bad())?;
            LookaheadConfig::new(w, n, g).validate()?;
            if !(1.0..=n as f64).contains(&tps) {
                return Err(LadeError::InvalidArgument(format!(
                    "lookahead prior line {}: {tps} tokens per step is outside 1..={n}",
                    i + 1
                )));
            }
            rows.push((w, n, g, tps));
        }
        if rows.is_empty() {
            return Err(LadeError::InvalidArgument(
                "the lookahead prior has no entries".into(),
            ));
        }
        Ok(Self::from_prior(&rows))
    }

    pub fn entries(&self) -> &[AcceptanceEntry] {
        &self.entries
    }

    /// Adds the outcome of a generation that ran with `config`: its tokens and its steps by
    /// query rows (ignored for configs not in the table, and for reference-compatible runs,
    /// which accept less by design).
    pub fn record(
        &mut self,
        config: &LookaheadConfig,
        tokens: usize,
        steps_by_rows: &BTreeMap<usize, usize>,
    ) {
        if config.switches.reference_compat {
            return;
        }
        if let Some(e) = self.entries.iter_mut().find(|e| e.is(config)) {
            e.observed_tokens += tokens;
            for (&r, &n) in steps_by_rows {
                *e.observed_rows.entry(r).or_default() += n;
            }
        }
    }

    /// Observed tokens over the tokens the prior expected in the same steps, summed over every
    /// config that ran, and those steps (0 and 0 before any observation).
    fn observed_ratio_steps(&self) -> (f64, f64) {
        self.entries.iter().fold((0.0, 0.0), |(r, s), e| {
            (
                r + e.observed_tokens as f64 / e.prior,
                s + e.observed_steps() as f64,
            )
        })
    }

    /// Expected tokens per step of `e`: prior × workload ratio × deviation.
    ///
    /// * The workload ratio says how much more or less the generations so far accepted than
    ///   the prior expected, over every config that ran, blended with 1 (the prior) counted as
    ///   [`PRIOR_WEIGHT_STEPS`] steps. It scales every config alike.
    /// * The deviation says how `e` did against that ratio, blended with 1 likewise: it stays
    ///   1 while a single config has run, and lets configs observed to differ change places.
    ///
    /// Only the config that runs gathers evidence. Blending each config with its own prior
    /// alone let one prompt that accepted little push the pick below a same-shape sibling
    /// whose prior was a few percent lower, and `auto` stayed there (2,3,2 instead of 1,5,1 on
    /// the H100; 1,5,1 instead of 0,8,1 on HumanEval on the H200, both slower). A hard prompt
    /// says as much about the siblings as about the pick; the evidence still decides whether
    /// lookahead pays at all.
    pub fn expected(&self, e: &AcceptanceEntry) -> f64 {
        let (ratio_steps, steps) = self.observed_ratio_steps();
        let workload = (PRIOR_WEIGHT_STEPS + ratio_steps) / (PRIOR_WEIGHT_STEPS + steps);
        let observed = if steps > 0.0 {
            ratio_steps / steps
        } else {
            1.0
        };
        let own = e.observed_tokens as f64 / e.prior / observed;
        let deviation =
            (PRIOR_WEIGHT_STEPS + own) / (PRIOR_WEIGHT_STEPS + e.observed_steps() as f64);
        e.prior * workload * deviation
    }

    /// Highest expected tokens per step in the table (1 when empty).
    pub fn best_expected(&self) -> f64 {
        self.entries
            .iter()
            .map(|e| self.expected(e))
            .fold(1.0, f64::max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `n` steps of `c`'s full size.
    fn full_steps(c: &LookaheadConfig, n: usize) -> BTreeMap<usize, usize> {
        BTreeMap::from([(c.step_tokens(c.guesses), n)])
    }

    #[test]
    fn observations_scale_every_config_and_pull_the_observed_one() {
        let mut t = AcceptanceTable::from_prior(&[(4, 3, 4, 2.0), (8, 4, 8, 1.5)]);
        let c = LookaheadConfig::new(4, 3, 4);
        let e = |t: &AcceptanceTable, i: usize| t.expected(&t.entries()[i]);
        assert_eq!(e(&t, 0), 2.0);
        assert_eq!(e(&t, 1), 1.5);
        // As many observed steps as the prior weighs, at 1.0 token per step (half the prior):
        // the workload ratio is (1 + 0.5) / 2, and with one config observed it scales both.
        let steps = PRIOR_WEIGHT_STEPS as usize;
        t.record(&c, steps, &full_steps(&c, steps));
        assert!((e(&t, 0) - 2.0 * 0.75).abs() < 1e-12, "{}", e(&t, 0));
        assert!((e(&t, 1) - 1.5 * 0.75).abs() < 1e-12, "{}", e(&t, 1));
        // Much more evidence: close to the observed rate, and the sibling to its prior times
        // the same ratio, so the prior's ranking holds.
        t.record(&c, 100 * steps, &full_steps(&c, 100 * steps));
        assert!(e(&t, 0) < 1.01);
        assert!(e(&t, 1) < 0.76 && e(&t, 1) < e(&t, 0), "{}", e(&t, 1));
        // Unknown configs and reference mode change nothing.
        let before = (e(&t, 0), e(&t, 1));
        t.record(
            &LookaheadConfig::new(5, 5, 5),
            10,
            &full_steps(&LookaheadConfig::new(5, 5, 5), 1),
        );
        let mut r = LookaheadConfig::new(8, 4, 8);
        r.switches.reference_compat = true;
        t.record(&r, 10, &full_steps(&r, 1));
        assert_eq!((e(&t, 0), e(&t, 1)), before);
        assert_eq!(t.entries()[1].rows(), 48);
    }

    #[test]
    fn one_hard_prompt_keeps_the_pick_of_the_prior() {
        // Two configs of the same step size (8 rows), A with the higher prior. One prompt on
        // which A committed far less than its prior (256 tokens in 218 steps) lowers A's
        // estimate but must not hand the pick to B on that evidence alone.
        let (a, b) = (LookaheadConfig::new(0, 8, 1), LookaheadConfig::new(1, 5, 1));
        assert_eq!(a.step_tokens(a.guesses), b.step_tokens(b.guesses));
        let mut t = AcceptanceTable::from_prior(&[(0, 8, 1, 2.1), (1, 5, 1, 1.6)]);
        let find = |t: &AcceptanceTable, c: &LookaheadConfig| {
            let e = t.entries().iter().find(|e| e.is(c)).expect("in the table");
            t.expected(e)
        };
        let prior = find(&t, &a);
        t.record(&a, 256, &full_steps(&a, 218));
        assert!(find(&t, &a) > find(&t, &b));
        assert!(find(&t, &a) < prior, "the hard prompt lowers the estimate");
        assert!(
            find(&t, &a) > 256.0 / 218.0,
            "one prompt does not outweigh the prior"
        );
    }

    #[test]
    fn configs_observed_to_differ_from_the_prior_change_places() {
        // The prior ranks A above B; both ran, B accepted more: B wins once its evidence
        // outweighs the prior.
        let mut t = AcceptanceTable::from_prior(&[(1, 5, 1, 1.7), (2, 3, 2, 1.6)]);
        let steps = 10 * PRIOR_WEIGHT_STEPS as usize;
        t.record(
            &LookaheadConfig::new(1, 5, 1),
            steps * 3 / 2,
            &full_steps(&LookaheadConfig::new(1, 5, 1), steps),
        );
        t.record(
            &LookaheadConfig::new(2, 3, 2),
            steps * 9 / 5,
            &full_steps(&LookaheadConfig::new(2, 3, 2), steps),
        );
        let e = |i: usize| t.expected(&t.entries()[i]);
        assert!(e(1) > e(0), "{} {}", e(0), e(1));
    }

    #[test]
    fn priors_parse_from_text() {
        let t =
            AcceptanceTable::parse("# W,N,G,S\n4,3,4,1.25\n\n 15, 5, 15, 1.9 # comment\n").unwrap();
        assert_eq!(
            t,
            AcceptanceTable::from_prior(&[(4, 3, 4, 1.25), (15, 5, 15, 1.9)])
        );
        for bad in [
            "",
            "4,3,4",
            "4,3,4,x",
            "4,1,4,1.0",
            "4,3,4,3.5",
            "4,3,4,0.5",
        ] {
            assert!(AcceptanceTable::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn the_measured_prior_is_sane() {
        let t = AcceptanceTable::measured();
        assert!(!t.entries().is_empty());
        for e in t.entries() {
            assert!(e.config().validate().is_ok());
            assert!(
                e.prior >= 1.0 && e.prior <= e.ngram as f64,
                "{e:?}: a step commits 1..=N tokens"
            );
            let mix = e.row_mix();
            assert!((mix.iter().map(|&(_, f)| f).sum::<f64>() - 1.0).abs() < 1e-9);
            assert!(mix.iter().all(|&(r, _)| r >= 1 && r <= e.rows()), "{e:?}");
        }
    }
}
