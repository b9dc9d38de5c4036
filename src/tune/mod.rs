//! Tuning and measuring, apart from the decoding core: `--lookahead auto` and what it rests on,
//! and the one construction of decoders ([`build()`], where `auto` is resolved).
//!
//! - This file: the pick of the decoding config with the highest expected tokens per second.
//! - [`cost`]: the step-cost curve measured on the device; [`cost_cache`]: that curve kept on
//!   disk between starts.
//! - [`acceptance`]: expected tokens per step of each config, from a prior shipped beside the
//!   model and the generations that ran.
//! - [`build`](mod@build): decoders built from a [`DecoderSpec`](crate::decode::DecoderSpec).
//!
//! Expected speed of a lookahead config = expected tokens per step ([`AcceptanceTable`]) /
//! the measured time of a forward pass over its `(W + G)(N - 1)` rows ([`ForwardCost`]), or
//! over its mix of row counts where steps vary in size (W = 0: the draft follows the match);
//! plain decoding makes one token per single-row pass. A lookahead config is picked only when
//! it beats plain decoding by [`AutoOptions::min_gain`]. On a CPU, where every extra row costs
//! about as much as a decoded token, this means plain decoding; on a GPU, where a pass costs
//! nearly the same for hundreds of rows, the config with the best acceptance that stays in the
//! flat part of the curve.
//!
//! The cost is measured once per process and model key ([`choose`]) on a throwaway sequence;
//! [`record`] feeds the tokens and steps of finished generations back into the estimates.

pub mod acceptance;
pub mod build;
pub mod cost;
pub mod cost_cache;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Mutex, OnceLock};

use serde::Serialize;

pub use acceptance::{prior_beside, AcceptanceEntry, AcceptanceTable, SamplingMode};
pub use build::{build, resolve, AutoDecision, AutoSource, BuiltDecoder, DecoderEnv};
pub use cost::{fill_cache, timing_id, CostSample, ForwardCost, MeasureOptions};
pub use cost_cache::CostCache;

use crate::decode::lookahead::synthetic_step;
use crate::decode::{DecoderKind, LookaheadConfig};
use crate::model::CausalLm;
use crate::Result;

/// What `auto` decided.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Strategy {
    Plain,
    Lookahead(LookaheadConfig),
}

impl Strategy {
    /// The decoder kind of this pick.
    pub fn kind(self) -> DecoderKind {
        match self {
            Self::Plain => DecoderKind::Plain,
            Self::Lookahead(c) => DecoderKind::Lookahead {
                window: c.window,
                ngram: c.ngram,
                guesses: c.guesses,
            },
        }
    }
}

/// Tuning of the choice.
#[derive(Debug, Clone, Copy)]
pub struct AutoOptions {
    /// A lookahead config must be expected to be this many times faster than plain decoding
    /// (the prior is an average; a margin keeps `auto` from losing on unlucky prompts).
    pub min_gain: f64,
    /// Context positions available to a step (configs needing more rows are skipped).
    pub max_rows: usize,
    /// Whose acceptance statistics to expect: greedy or sampled generations.
    pub mode: SamplingMode,
}

impl Default for AutoOptions {
    fn default() -> Self {
        Self {
            min_gain: 1.1,
            max_rows: 4096,
            mode: SamplingMode::Greedy,
        }
    }
}

/// A decision with the numbers behind it.
#[derive(Debug, Clone, Serialize)]
pub struct AutoChoice {
    pub strategy: Strategy,
    /// Expected decode speed of the pick and of plain decoding, tokens per second.
    pub expected_tokens_per_s: f64,
    pub plain_tokens_per_s: f64,
    /// The best lookahead candidate even when plain decoding won, with its expected speed.
    pub best_lookahead: Option<(LookaheadConfig, f64)>,
    /// The measured cost curve.
    pub cost: ForwardCost,
    /// Where the acceptance prior came from.
    pub prior: String,
}

impl AutoChoice {
    /// One line for logs, e.g. `plain (expected 95 tok/s; best lookahead 4,3,4: 14 tok/s)`.
    pub fn describe(&self) -> String {
        let best = match self.best_lookahead {
            Some((c, tps)) => format!(
                "best lookahead {},{},{}: {tps:.1} tok/s",
                c.window, c.ngram, c.guesses
            ),
            None => {
                let last = self.cost.samples().last().copied();
                match (last, self.cost.relative(self.cost.max_rows())) {
                    (Some(l), Some(rel)) if l.rows > 1 => format!(
                        "a pass of {} rows already costs {rel:.1}× a single-row pass, more \
                         than any lookahead config is expected to gain",
                        l.rows
                    ),
                    _ if self.prior.starts_with("none") => "no lookahead prior".into(),
                    _ => "no lookahead config fits".into(),
                }
            }
        };
        let pick = match self.strategy {
            Strategy::Plain => "plain decoding".to_string(),
            Strategy::Lookahead(c) => format!("lookahead {},{},{}", c.window, c.ngram, c.guesses),
        };
        format!(
            "{pick} (expected {:.1} tok/s; plain {:.1} tok/s; {best}; prior: {})",
            self.expected_tokens_per_s, self.plain_tokens_per_s, self.prior
        )
    }
}

/// Picks the fastest expected strategy from a cost curve and an acceptance table.
pub fn pick(cost: &ForwardCost, table: &AcceptanceTable, opts: &AutoOptions) -> AutoChoice {
    pick_checked(cost, &StepChecks::new(), table, opts)
}

/// Real step times of configs tried on the device: `None` when the device could not run the
/// step (a kernel limit, say), so that the config is never picked.
type StepChecks = HashMap<(usize, usize, usize), Option<f64>>;

fn wng(c: &LookaheadConfig) -> (usize, usize, usize) {
    (c.window, c.ngram, c.guesses)
}

/// [`pick`], where `checks` overrides the curve for configs already run on the device.
fn pick_checked(
    cost: &ForwardCost,
    checks: &StepChecks,
    table: &AcceptanceTable,
    opts: &AutoOptions,
) -> AutoChoice {
    let one = cost.seconds(1).unwrap_or(f64::INFINITY);
    let plain = 1.0 / one;
    // Steps of the same number of rows run the same kernels on the same shapes, so the real
    // time of a row count is the fastest step of that count tried: two configs of one shape
    // are then told apart by their acceptance, not by the timing noise of separate trials.
    let mut by_rows: HashMap<usize, f64> = HashMap::new();
    for e in table.entries() {
        if let Some(Some(s)) = checks.get(&wng(&e.config())) {
            let t = by_rows.entry(e.rows()).or_insert(*s);
            *t = t.min(*s);
        }
    }
    let mut best: Option<(LookaheadConfig, f64)> = None;
    for e in table.entries() {
        if e.rows() > opts.max_rows {
            continue;
        }
        if let Some(None) = checks.get(&wng(&e.config())) {
            continue;
        }
        // A step's time: its row count's real time where one was tried, else the curve's.
        // Configs whose steps vary in size (W = 0 drafts follow the match) cost their mix of
        // row counts; their rare largest steps may lie beyond the measured range, which is
        // then extrapolated. For a config of one step size, the cost there already exceeded
        // what it can recoup.
        let mix = e.row_mix();
        let varying = mix.len() > 1;
        let seconds: Option<f64> = mix
            .iter()
            .map(|&(rows, f)| {
                let t = by_rows.get(&rows).copied().or(cost.seconds(rows));
                Some(
                    f * if varying {
                        t.unwrap_or_else(|| cost.seconds_extrapolated(rows))
                    } else {
                        t?
                    },
                )
            })
            .sum();
        let Some(seconds) = seconds else {
            continue;
        };
        let tps = table.expected(e) / seconds;
        if best.is_none_or(|(_, b)| tps > b) {
            best = Some((e.config(), tps));
        }
    }
    let strategy = match best {
        Some((c, tps)) if tps >= opts.min_gain * plain => Strategy::Lookahead(c),
        _ => Strategy::Plain,
    };
    AutoChoice {
        strategy,
        expected_tokens_per_s: match (strategy, best) {
            (Strategy::Lookahead(_), Some((_, tps))) => tps,
            _ => plain,
        },
        plain_tokens_per_s: plain,
        best_lookahead: best,
        cost: cost.clone(),
        prior: table.source().to_string(),
    }
}

/// Measures `lm` (a throwaway sequence) and picks with `table`, trying the pick on `lm`.
pub fn choose_on(
    lm: &mut dyn CausalLm,
    table: &AcceptanceTable,
    opts: &AutoOptions,
) -> Result<AutoChoice> {
    let mut device = Measured {
        cost: ForwardCost::measure(lm, &measure_options(table, opts))?,
        checks: StepChecks::new(),
    };
    device.choose(&mut |c| Ok(time_step(lm, c).ok()), table, opts)
}

/// What is known about one model on this device.
#[derive(Debug, Clone)]
struct Measured {
    cost: ForwardCost,
    checks: StepChecks,
}

impl Measured {
    /// Picks; a lookahead pick is first run once as a real step by `try_step`, which returns
    /// its time in single-row passes (replacing the curve's estimate), or `None` when the
    /// device could not run it (ruling it out), until the pick is plain decoding or a config
    /// already run.
    fn choose(
        &mut self,
        try_step: &mut dyn FnMut(&LookaheadConfig) -> Result<Option<f64>>,
        table: &AcceptanceTable,
        opts: &AutoOptions,
    ) -> Result<AutoChoice> {
        loop {
            let choice = pick_checked(&self.cost, &self.checks, table, opts);
            let Strategy::Lookahead(c) = choice.strategy else {
                return Ok(choice);
            };
            if self.checks.contains_key(&wng(&c)) {
                return Ok(choice);
            }
            // The step is timed against a single-row pass timed alongside it, and scaled to
            // the curve's single-row time, so that load on the machine cancels out.
            let seconds = try_step(&c)?.map(|relative| relative * self.cost.samples()[0].seconds);
            self.checks.insert(wng(&c), seconds);
        }
    }
}

/// Time of one real lookahead step of `config` with all G candidates, in single-row passes
/// (each the minimum of three, interleaved, after a warm-up pass), after a short prefilled
/// context; the cache is left empty.
fn time_step(lm: &mut dyn CausalLm, config: &LookaheadConfig) -> Result<f64> {
    let vocab = lm.vocab_size().max(1);
    let (w, n, g) = wng(config);
    let past = MeasureOptions::default().past;
    cost::fill_cache(lm, past)?;
    let id = |i: usize| timing_id(i, vocab);
    let layout = synthetic_step(w, n, g, past, id);
    let single = synthetic_step(0, 1, 0, past, id);
    let (mut step, mut one) = (f64::INFINITY, f64::INFINITY);
    for rep in 0..4 {
        for (layout, best) in [(&layout, &mut step), (&single, &mut one)] {
            let t = std::time::Instant::now();
            let out = lm.forward_argmax(&layout.batch());
            let s = t.elapsed().as_secs_f64();
            lm.truncate(past);
            out?;
            if rep > 0 {
                *best = best.min(s);
            }
        }
    }
    lm.truncate(0);
    Ok(step / one.max(1e-9))
}

/// Timing plan for `table`: up to its largest config, stopping once a pass costs more single
/// steps than the best expected tokens per step (nothing larger can win then).
fn measure_options(table: &AcceptanceTable, opts: &AutoOptions) -> MeasureOptions {
    let largest = table
        .entries()
        .iter()
        .map(AcceptanceEntry::rows)
        .filter(|&r| r <= opts.max_rows)
        .max()
        .unwrap_or(1);
    MeasureOptions {
        max_rows: largest.next_power_of_two(),
        stop_ratio: table.best_expected() / opts.min_gain.max(0.1),
        ..MeasureOptions::default()
    }
}

fn costs() -> &'static Mutex<HashMap<String, Measured>> {
    static COSTS: OnceLock<Mutex<HashMap<String, Measured>>> = OnceLock::new();
    COSTS.get_or_init(|| Mutex::new(HashMap::new()))
}

/// The acceptance statistics of this process, one table per [`SamplingMode`].
fn tables() -> &'static Mutex<HashMap<SamplingMode, AcceptanceTable>> {
    static TABLES: OnceLock<Mutex<HashMap<SamplingMode, AcceptanceTable>>> = OnceLock::new();
    TABLES.get_or_init(|| {
        Mutex::new(per_mode(AcceptanceTable::shipped(
            &crate::assets::lookahead_priors(),
        )))
    })
}

fn per_mode(t: AcceptanceTable) -> HashMap<SamplingMode, AcceptanceTable> {
    [SamplingMode::Greedy, SamplingMode::Sampled]
        .into_iter()
        .map(|m| (m, t.clone()))
        .collect()
}

/// The `auto` decision for the model known as `key` (e.g. its path and weight format): the
/// forward cost is measured once per process and key, on the sequence `throwaway` returns
/// (called with the positions it needs, only when no measurement is cached), and combined
/// with the process-wide acceptance table (the measured prior plus [`record`]ed runs).
///
/// For example: `choose(key, |n| Ok(Box::new(Session::new(model.clone(), n)?)),
/// &AutoOptions::default())?.strategy`. [`choose_cached`] also keeps the curve on disk.
pub fn choose(
    key: &str,
    throwaway: impl FnOnce(usize) -> Result<Box<dyn CausalLm>>,
    opts: &AutoOptions,
) -> Result<AutoChoice> {
    choose_cached(key, None, throwaway, opts)
}

/// [`choose`], where a curve not yet measured in this process is first looked for in `cache`
/// (measured on an earlier start on the same device, model and build), and a curve measured
/// here, or a pick newly tried, is written back to it for the next start.
pub fn choose_cached(
    key: &str,
    cache: Option<&CostCache>,
    throwaway: impl FnOnce(usize) -> Result<Box<dyn CausalLm>>,
    opts: &AutoOptions,
) -> Result<AutoChoice> {
    let table = current_table(opts.mode);
    let plan = measure_options(&table, opts);
    let cache = cache.map(|c| c.for_plan(&format!("{plan:?}")));
    let mut throwaway = Some(throwaway);
    let mut lm: Option<Box<dyn CausalLm>> = None;
    let mut make = |lm: &mut Option<Box<dyn CausalLm>>| -> Result<()> {
        if lm.is_none() {
            let f = throwaway
                .take()
                .ok_or_else(|| crate::LadeError::InvalidArgument("no throwaway sequence".into()))?;
            *lm = Some(f(plan.past + plan.max_rows)?);
        }
        Ok(())
    };
    let cached = lock(costs()).get(key).cloned().or_else(|| {
        let (cost, checks) = cache.as_ref()?.load()?;
        Some(Measured {
            cost,
            checks: checks.into_iter().collect(),
        })
    });
    let known_checks = cached.as_ref().map(|m| m.checks.len());
    let mut measured = match cached {
        Some(m) => m,
        None => {
            make(&mut lm)?;
            let lm = lm.as_deref_mut().expect("made above");
            Measured {
                cost: ForwardCost::measure(lm, &plan)?,
                checks: StepChecks::new(),
            }
        }
    };
    let mut try_step = |c: &LookaheadConfig| -> Result<Option<f64>> {
        make(&mut lm)?;
        let lm = lm.as_deref_mut().expect("made above");
        Ok(time_step(lm, c).ok())
    };
    let choice = measured.choose(&mut try_step, &table, opts)?;
    if let Some(cache) = &cache {
        if known_checks != Some(measured.checks.len()) {
            let checks: Vec<_> = measured.checks.iter().map(|(&k, &v)| (k, v)).collect();
            // Without a writable cache the next start measures again; nothing else is lost.
            let _ = cache.store(&measured.cost, &checks);
        }
    }
    lock(costs()).insert(key.to_string(), measured);
    Ok(choice)
}

/// Replaces the process-wide acceptance prior (the model's, [`AcceptanceTable::for_model`]),
/// for greedy and sampled generations alike; observations recorded so far are dropped. Until
/// it is called, the prior is [`AcceptanceTable::shipped`].
pub fn set_table(t: AcceptanceTable) {
    *lock(tables()) = per_mode(t);
}

/// Makes the prior of the model at `model` the process-wide one ([`set_table`]): the file
/// `explicit` (`--lookahead-prior`) if given, else the model's own ([`prior_beside`]), else
/// the most cautious of the shipped ones ([`AcceptanceTable::shipped`]). Returns where it came
/// from.
pub fn load_prior(
    explicit: Option<&std::path::Path>,
    model: &std::path::Path,
    log: &mut dyn FnMut(&str),
) -> Result<String> {
    let t = AcceptanceTable::for_model(explicit, model, &crate::assets::lookahead_priors(), log)?;
    let source = t.source().to_string();
    set_table(t);
    Ok(source)
}

/// A snapshot of the process-wide acceptance table of `mode`.
pub fn current_table(mode: SamplingMode) -> AcceptanceTable {
    lock(tables())
        .get(&mode)
        .cloned()
        .unwrap_or_else(|| AcceptanceTable::empty("none"))
}

/// Feeds a finished generation of `config` (its generated tokens, its steps by query rows)
/// into the process-wide acceptance table of `mode`, which later picks of `auto` read.
pub fn record(
    config: &LookaheadConfig,
    mode: SamplingMode,
    tokens: usize,
    steps_by_rows: &BTreeMap<usize, usize>,
) {
    if let Some(t) = lock(tables()).get_mut(&mode) {
        t.record(config, tokens, steps_by_rows);
    }
}

/// Measured cost curve cached for `key`, if any.
pub fn cached_cost(key: &str) -> Option<ForwardCost> {
    lock(costs()).get(key).map(|m| m.cost.clone())
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn curve(f: impl Fn(usize) -> f64, max: usize) -> ForwardCost {
        let mut v = Vec::new();
        let mut r = 1;
        while r <= max {
            v.push(CostSample {
                rows: r,
                seconds: f(r),
            });
            r *= 2;
        }
        ForwardCost::from_samples(v).unwrap()
    }

    fn table() -> AcceptanceTable {
        AcceptanceTable::from_prior(&[
            (4, 3, 4, 1.3),
            (8, 4, 8, 1.5),
            (15, 5, 15, 1.7),
            (64, 11, 64, 2.2),
        ])
    }

    #[test]
    fn linear_cost_picks_plain() {
        // CPU-like: 10 ms per row.
        let c = curve(|r| 0.010 * r as f64, 16);
        let a = pick(&c, &table(), &AutoOptions::default());
        assert_eq!(a.strategy, Strategy::Plain);
        assert!((a.plain_tokens_per_s - 100.0).abs() < 1e-9);
        // The best lookahead candidate is reported but far slower.
        let (cfg, tps) = a.best_lookahead.unwrap();
        assert_eq!((cfg.window, cfg.ngram), (4, 3));
        assert!(tps < 20.0);
    }

    #[test]
    fn steps_of_varying_size_cost_their_mix_of_rows() {
        // H200-like: 8 rows 1.1x a single row, 16 rows 1.3x, 32 rows 1.7x (1 ms per row-1
        // step; linear in between).
        let c = curve(
            |r| match r {
                1 | 2 | 4 => 1e-3,
                8 => 1.1e-3,
                16 => 1.3e-3,
                _ => 1.7e-3,
            },
            32,
        );
        let mut t = AcceptanceTable::from_prior(&[(0, 8, 1, 1.7), (0, 32, 1, 1.8)]);
        // Priced at its largest step, 0,32,1 (1.8 / 1.7 ms) loses to 0,8,1 (1.7 / 1.1 ms).
        let a = pick(&c, &t, &AutoOptions::default());
        assert_eq!(
            a.strategy,
            Strategy::Lookahead(LookaheadConfig::new(0, 8, 1))
        );
        // Half of its steps without a draft, 40 % of 8 rows, 10 % of 32: 1.11 ms a step.
        t = t.with_row_mix((0, 32, 1), &[(1, 0.5), (8, 0.4), (32, 0.1)]);
        let a = pick(&c, &t, &AutoOptions::default());
        assert_eq!(
            a.strategy,
            Strategy::Lookahead(LookaheadConfig::new(0, 32, 1))
        );
        assert!(
            (a.expected_tokens_per_s - 1.8 / 1.11e-3).abs() < 1e-6,
            "{a:?}"
        );
        // Generations whose steps all ran 32 rows (at the prior's acceptance) move the mix
        // towards them, and 0,8,1 wins again.
        let c32 = LookaheadConfig::new(0, 32, 1);
        let steps = 4 * acceptance::PRIOR_WEIGHT_STEPS as usize;
        t.record(&c32, steps * 18 / 10, &BTreeMap::from([(32, steps)]));
        let a = pick(&c, &t, &AutoOptions::default());
        assert_eq!(
            a.strategy,
            Strategy::Lookahead(LookaheadConfig::new(0, 8, 1))
        );
    }

    /// The expected tokens per second of `e` on `c`, computed from scratch: its expected
    /// tokens per step over the time of its mix of step sizes (linear between measured
    /// sizes).
    fn oracle_tokens_per_s(c: &ForwardCost, t: &AcceptanceTable, e: &AcceptanceEntry) -> f64 {
        let at = |rows: usize| -> f64 {
            let s = c.samples();
            let hi = s.iter().position(|p| p.rows >= rows).expect("measured");
            if s[hi].rows == rows || hi == 0 {
                return s[hi].seconds;
            }
            let (lo, hi) = (s[hi - 1], s[hi]);
            lo.seconds
                + (hi.seconds - lo.seconds) * (rows - lo.rows) as f64 / (hi.rows - lo.rows) as f64
        };
        let seconds: f64 = e.row_mix().iter().map(|&(r, f)| f * at(r)).sum();
        t.expected(e) / seconds
    }

    #[test]
    fn the_shipped_prior_on_a_gpu_like_curve_picks_the_fastest_expected_config() {
        // A GPU-like curve (relative step times of 1 to 32 rows, flat at first): whatever
        // numbers the shipped prior holds, the pick is the entry with the most expected tokens
        // per second, and it is lookahead only when that beats plain decoding by the margin.
        let rel = [
            (1, 1.0),
            (2, 1.01),
            (4, 1.02),
            (8, 1.11),
            (16, 1.32),
            (32, 1.67),
        ];
        let c = curve(|r| 1e-3 * rel.iter().find(|p| p.0 == r).unwrap().1, 32);
        let t = AcceptanceTable::shipped(&crate::assets::lookahead_priors());
        let a = pick(&c, &t, &AutoOptions::default());
        let fits: Vec<&AcceptanceEntry> = t
            .entries()
            .iter()
            .filter(|e| e.row_mix().iter().all(|&(r, _)| r <= 32))
            .collect();
        assert!(!fits.is_empty());
        let (best, best_tps) = fits
            .iter()
            .map(|e| (e.config(), oracle_tokens_per_s(&c, &t, e)))
            .fold(
                None,
                |b: Option<(LookaheadConfig, f64)>, (cfg, tps)| match b {
                    Some((_, bt)) if bt >= tps => b,
                    _ => Some((cfg, tps)),
                },
            )
            .unwrap();
        let (picked, tps) = a.best_lookahead.expect("a lookahead candidate");
        assert_eq!(wng(&picked), wng(&best), "{a:?}");
        assert!(
            (tps - best_tps).abs() < 1e-9 * best_tps,
            "{tps} vs {best_tps}"
        );
        let plain = 1.0 / 1e-3;
        assert!((a.plain_tokens_per_s - plain).abs() < 1e-9);
        if best_tps >= AutoOptions::default().min_gain * plain {
            assert_eq!(a.strategy, Strategy::Lookahead(best));
            assert_eq!(a.expected_tokens_per_s, best_tps);
        } else {
            assert_eq!(a.strategy, Strategy::Plain);
        }
    }

    #[test]
    fn flat_cost_picks_the_best_acceptance_that_fits() {
        // GPU-like: flat up to 512 rows, then linear.
        let c = curve(|r| 0.010 * (r as f64 / 512.0).max(1.0), 2048);
        let a = pick(&c, &table(), &AutoOptions::default());
        // 64,11,64 has 1280 rows: 2.5x the time for 2.2 tokens; 15,5,15 (120 rows) wins.
        assert_eq!(
            a.strategy,
            Strategy::Lookahead(LookaheadConfig::new(15, 5, 15))
        );
        assert!((a.expected_tokens_per_s - 170.0).abs() < 1e-6);
        // Flat everywhere: the largest acceptance.
        let c = curve(|_| 0.010, 2048);
        let a = pick(&c, &table(), &AutoOptions::default());
        assert_eq!(
            a.strategy,
            Strategy::Lookahead(LookaheadConfig::new(64, 11, 64))
        );
        // Unless the context cannot hold its rows.
        let opts = AutoOptions {
            max_rows: 200,
            ..AutoOptions::default()
        };
        let a = pick(&c, &table(), &opts);
        assert_eq!(
            a.strategy,
            Strategy::Lookahead(LookaheadConfig::new(15, 5, 15))
        );
    }

    #[test]
    fn a_small_gain_is_not_worth_it() {
        // 4,3,4 (16 rows) expected 1.3 tokens per step at 1.25x the cost: 4% faster only.
        let t = AcceptanceTable::from_prior(&[(4, 3, 4, 1.3)]);
        let c = curve(|r| if r == 1 { 0.010 } else { 0.0125 }, 16);
        assert_eq!(
            pick(&c, &t, &AutoOptions::default()).strategy,
            Strategy::Plain
        );
        let c = curve(|r| if r == 1 { 0.010 } else { 0.0105 }, 16);
        assert_ne!(
            pick(&c, &t, &AutoOptions::default()).strategy,
            Strategy::Plain
        );
    }

    #[test]
    fn configs_of_one_shape_share_their_measured_step_time() {
        // 1,5,1 and 2,3,2 are both 8-row steps; the trial of 2,3,2 happened to time faster.
        let t = AcceptanceTable::from_prior(&[(1, 5, 1, 1.58), (2, 3, 2, 1.55)]);
        let c = curve(|r| if r == 1 { 0.010 } else { 0.0106 }, 16);
        let mut checks = StepChecks::new();
        checks.insert((1, 5, 1), Some(0.0108));
        checks.insert((2, 3, 2), Some(0.0104));
        let a = pick_checked(&c, &checks, &t, &AutoOptions::default());
        // Same shape, same cost (the faster trial): the better acceptance wins.
        assert_eq!(
            a.strategy,
            Strategy::Lookahead(LookaheadConfig::new(1, 5, 1))
        );
        assert!((a.expected_tokens_per_s - 1.58 / 0.0104).abs() < 1e-6);
        // A config the device could not run stays out, and does not rule out its shape.
        checks.insert((1, 5, 1), None);
        let a = pick_checked(&c, &checks, &t, &AutoOptions::default());
        assert_eq!(
            a.strategy,
            Strategy::Lookahead(LookaheadConfig::new(2, 3, 2))
        );
        // Without trials the curve decides, the same for both: acceptance again.
        let a = pick_checked(&c, &StepChecks::new(), &t, &AutoOptions::default());
        assert_eq!(
            a.strategy,
            Strategy::Lookahead(LookaheadConfig::new(1, 5, 1))
        );
    }

    #[test]
    fn the_pick_builds_with_the_callers_switches() {
        use crate::decode::{DecoderSpec, DraftSwitches};
        let c = curve(|_| 0.010, 2048);
        let a = pick(&c, &table(), &AutoOptions::default());
        let Strategy::Lookahead(picked) = a.strategy else {
            panic!("a flat curve picks lookahead: {}", a.describe());
        };
        let switches = DraftSwitches {
            pool_from_prompt: false,
            reference_compat: true,
            context_match: false,
            adaptive_draft: false,
            corpus_drafts: true,
            learned_lengths: true,
        };
        let spec = DecoderSpec::new(a.strategy.kind())
            .with_switches(switches)
            .with_seed(9);
        let cfg = spec.lookahead_config().unwrap();
        assert_eq!(wng(&cfg), wng(&picked));
        assert_eq!((cfg.switches, cfg.seed), (switches, 9));
        let built = build(&spec, &DecoderEnv::bare()).unwrap();
        assert_eq!(built.decoder.name(), cfg.label());
        let plain = pick(&curve(|r| r as f64, 16), &table(), &AutoOptions::default());
        let spec = DecoderSpec::new(plain.strategy.kind());
        assert_eq!(
            build(&spec, &DecoderEnv::bare()).unwrap().decoder.name(),
            "plain"
        );
    }
}
