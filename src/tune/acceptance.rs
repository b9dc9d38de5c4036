//! Expected tokens per step of lookahead configs: a prior measured with `lade bench` and
//! shipped as a data file beside the model, refined by the statistics of the generations
//! that ran.
//!
//! The prior of a model is `<model>.lookahead-prior` beside its file ([`prior_beside`]; the
//! built-in models get theirs from `assets/lookahead-prior/` when they are fetched), or a file
//! given with `--lookahead-prior`. A model without one starts from the most cautious of the
//! shipped priors (each config's lowest compression over them, [`AcceptanceTable::shipped`]):
//! the running statistics rescale it to the workload, and reorder configs once they are
//! observed to differ. Greedy and sampled generations keep apart statistics
//! ([`SamplingMode`]): a sampled text follows drafts less often.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::decode::LookaheadConfig;
use crate::sampling::SamplingParams;
use crate::{LadeError, Result};

/// `(W, N, G)`.
type Wng = (usize, usize, usize);

/// Where a model's prior lives: `<model>.lookahead-prior` beside a model file, or
/// `lookahead.prior` inside a model folder (safetensors).
pub fn prior_beside(model: &Path) -> PathBuf {
    if model.is_dir() {
        model.join("lookahead.prior")
    } else {
        model.with_extension("lookahead-prior")
    }
}

/// Whose acceptance statistics a generation feeds: greedy and sampled texts accept drafts at
/// different rates, so `auto` learns them apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SamplingMode {
    Greedy,
    Sampled,
}

impl SamplingMode {
    pub fn of(params: &SamplingParams) -> Self {
        if params.is_greedy() {
            Self::Greedy
        } else {
            Self::Sampled
        }
    }
}

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

    /// Expected fractions of steps by query rows: the prior's (as `PRIOR_WEIGHT_STEPS`
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

    fn same_config(&self, o: &AcceptanceEntry) -> bool {
        (self.window, self.ngram, self.guesses) == (o.window, o.ngram, o.guesses)
    }
}

/// Expected acceptance of every config `auto` may pick.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AcceptanceTable {
    entries: Vec<AcceptanceEntry>,
    /// Where the prior came from, for logs (a file, or the shipped priors).
    source: String,
}

impl AcceptanceTable {
    /// No prior: `auto` decodes plainly.
    pub fn empty(source: impl Into<String>) -> Self {
        Self {
            entries: Vec::new(),
            source: source.into(),
        }
    }

    /// Where the prior came from.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// The prior of the model at `model`: `explicit` if given (an error if unreadable),
    /// else [`prior_beside`] the model if present and valid, else [`Self::shipped`] from
    /// `shipped_dir`. A prior beside the model that does not parse is reported to `log` and
    /// passed over.
    pub fn for_model(
        explicit: Option<&Path>,
        model: &Path,
        shipped_dir: &Path,
        log: &mut dyn FnMut(&str),
    ) -> Result<Self> {
        if let Some(p) = explicit {
            return Self::read(p);
        }
        let beside = prior_beside(model);
        if beside.is_file() {
            match Self::read(&beside) {
                Ok(t) => return Ok(t),
                Err(e) => log(&format!("{e}; using the shipped priors")),
            }
        }
        Ok(Self::shipped(shipped_dir))
    }

    /// A prior file ([`Self::parse`]).
    pub fn read(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            LadeError::InvalidArgument(format!(
                "cannot read the lookahead prior {}: {e}",
                path.display()
            ))
        })?;
        let mut t = Self::parse(&text).map_err(|e| match e {
            LadeError::InvalidArgument(m) => {
                LadeError::InvalidArgument(format!("{}: {m}", path.display()))
            }
            e => e,
        })?;
        t.source = path.display().to_string();
        Ok(t)
    }

    /// For a model with no prior of its own: every `*.prior` file in `dir` (the priors shipped
    /// with the built-in models), each config at its lowest compression over them (with that
    /// file's mix of step sizes). Unreadable files are passed over; with none, the table is
    /// empty and `auto` decodes plainly.
    pub fn shipped(dir: &Path) -> Self {
        let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
            .map(|d| {
                d.filter_map(|e| e.ok().map(|e| e.path()))
                    .filter(|p| p.extension().is_some_and(|x| x == "prior"))
                    .collect()
            })
            .unwrap_or_default();
        files.sort();
        let mut entries: Vec<AcceptanceEntry> = Vec::new();
        let mut used = Vec::new();
        for t in files.iter().filter_map(|f| Self::read(f).ok()) {
            used.push(t.source.clone());
            for e in t.entries {
                match entries.iter_mut().find(|x| x.same_config(&e)) {
                    Some(x) if x.prior <= e.prior => {}
                    Some(x) => *x = e,
                    None => entries.push(e),
                }
            }
        }
        let source = if used.is_empty() {
            format!("none (no prior in {})", dir.display())
        } else {
            format!(
                "the most cautious of the shipped priors ({})",
                used.join(", ")
            )
        };
        Self { entries, source }
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
            source: "given".into(),
        }
    }

    /// Parses a prior from text: one `W,N,G,tokens_per_step` per line, optionally followed by
    /// `,rows:steps rows:steps ...` (the steps of the measured run by query rows, for configs
    /// whose steps vary in size); `#` starts a comment. This is the format of the files
    /// beside a model and of `--lookahead-prior`.
    pub fn parse(text: &str) -> Result<Self> {
        let mut rows = Vec::new();
        let mut mixes: Vec<(Wng, Vec<(usize, f64)>)> = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            let bad = || {
                LadeError::InvalidArgument(format!(
                    "lookahead prior line {}: expected W,N,G,tokens_per_step[,rows:steps ...], \
                     got `{line}`",
                    i + 1
                ))
            };
            let f: Vec<&str> = line.split(',').map(str::trim).collect();
            if !(4..=5).contains(&f.len()) {
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
            if rows.iter().any(|&(a, b, c, _)| (a, b, c) == (w, n, g)) {
                return Err(LadeError::InvalidArgument(format!(
                    "lookahead prior line {}: {w},{n},{g} is listed twice",
                    i + 1
                )));
            }
            if let Some(mix) = f.get(4) {
                let most = LookaheadConfig::new(w, n, g).step_tokens(g);
                let mut m = Vec::new();
                for pair in mix.split_whitespace() {
                    let (r, s) = pair.split_once(':').ok_or_else(bad)?;
                    let (r, s): (usize, f64) = (int(r)?, s.parse().map_err(|_| bad())?);
                    if r == 0 || r > most || !(s.is_finite() && s >= 0.0) {
                        return Err(LadeError::InvalidArgument(format!(
                            "lookahead prior line {}: `{pair}`: a step of {w},{n},{g} has 1 to \
                             {most} rows, counted by a non-negative number",
                            i + 1
                        )));
                    }
                    m.push((r, s));
                }
                if m.iter().map(|&(_, s)| s).sum::<f64>() <= 0.0 {
                    return Err(bad());
                }
                mixes.push(((w, n, g), m));
            }
            rows.push((w, n, g, tps));
        }
        if rows.is_empty() {
            return Err(LadeError::InvalidArgument(
                "the lookahead prior has no entries".into(),
            ));
        }
        Ok(mixes.iter().fold(Self::from_prior(&rows), |t, (wng, mix)| {
            t.with_row_mix(*wng, mix)
        }))
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
    ///   `PRIOR_WEIGHT_STEPS` steps. It scales every config alike.
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
            t.entries(),
            AcceptanceTable::from_prior(&[(4, 3, 4, 1.25), (15, 5, 15, 1.9)]).entries()
        );
        // A mix of step sizes, counted in steps, becomes fractions.
        let t = AcceptanceTable::parse("0,8,1,2.0, 1:1 4:2 8:1\n").unwrap();
        assert_eq!(
            t.entries()[0].prior_rows,
            vec![(1, 0.25), (4, 0.5), (8, 0.25)]
        );
        for bad in [
            "",
            "4,3,4",
            "4,3,4,x",
            "4,1,4,1.0",
            "4,3,4,3.5",
            "4,3,4,0.5",
            "4,3,4,1.5\n4,3,4,1.6",
            "0,8,1,2.0,9:1",
            "0,8,1,2.0,0:1",
            "0,8,1,2.0,4",
            "0,8,1,2.0,4:-1",
            "0,8,1,2.0,4:0",
            "0,8,1,2.0,4:1,5",
        ] {
            assert!(AcceptanceTable::parse(bad).is_err(), "{bad:?}");
        }
    }

    /// A folder of prior files, removed on drop.
    struct Priors(PathBuf);

    impl Priors {
        fn new(tag: &str, files: &[(&str, &str)]) -> Self {
            let dir =
                std::env::temp_dir().join(format!("lade-priors-{tag}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).unwrap();
            for (name, text) in files {
                std::fs::write(dir.join(name), text).unwrap();
            }
            Self(dir)
        }
    }

    impl Drop for Priors {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn a_model_without_a_prior_gets_each_configs_lowest_shipped_compression() {
        let d = Priors::new(
            "min",
            &[
                ("a.prior", "4,3,4,1.8\n0,8,1,2.0,1:1 8:1\n"),
                ("b.prior", "4,3,4,1.5\n0,8,1,2.4,8:1\n7,4,7,2.0\n"),
                ("notes.txt", "4,3,4,1.0\n"),
                ("broken.prior", "4,3,4\n"),
            ],
        );
        let t = AcceptanceTable::shipped(&d.0);
        let get = |w, n, g| {
            t.entries()
                .iter()
                .find(|e| (e.window, e.ngram, e.guesses) == (w, n, g))
                .unwrap()
        };
        assert_eq!(t.entries().len(), 3);
        assert_eq!(get(4, 3, 4).prior, 1.5);
        // The lower entry comes with its own mix of step sizes.
        assert_eq!(get(0, 8, 1).prior, 2.0);
        assert_eq!(get(0, 8, 1).prior_rows, vec![(1, 0.5), (8, 0.5)]);
        assert_eq!(get(7, 4, 7).prior, 2.0);
        assert!(t.source().contains("a.prior") && t.source().contains("b.prior"));
        assert!(!t.source().contains("broken"));
        // No priors at all: an empty table, which `auto` reads as plain decoding.
        let none = AcceptanceTable::shipped(&d.0.join("missing"));
        assert!(none.entries().is_empty());
        assert_eq!(none.best_expected(), 1.0);
    }

    #[test]
    fn the_prior_beside_the_model_comes_before_the_shipped_ones() {
        let d = Priors::new("beside", &[("shipped.prior", "4,3,4,1.5\n")]);
        let model = d.0.join("m.gguf");
        let mut lines = Vec::new();
        let mut log = |l: &str| lines.push(l.to_string());
        let t = AcceptanceTable::for_model(None, &model, &d.0, &mut log).unwrap();
        assert_eq!(t.entries()[0].prior, 1.5);
        std::fs::write(prior_beside(&model), "4,3,4,1.9\n").unwrap();
        let t = AcceptanceTable::for_model(None, &model, &d.0, &mut log).unwrap();
        assert_eq!(t.entries()[0].prior, 1.9);
        assert_eq!(t.source(), prior_beside(&model).display().to_string());
        // An explicit file wins, and must be readable.
        let explicit = d.0.join("mine.txt");
        std::fs::write(&explicit, "4,3,4,1.2\n").unwrap();
        let t = AcceptanceTable::for_model(Some(&explicit), &model, &d.0, &mut log).unwrap();
        assert_eq!(t.entries()[0].prior, 1.2);
        let e = AcceptanceTable::for_model(Some(&d.0.join("nope")), &model, &d.0, &mut log);
        assert!(e.unwrap_err().to_string().contains("nope"));
        // A broken file beside the model is reported and passed over.
        std::fs::write(prior_beside(&model), "4,3\n").unwrap();
        let t = AcceptanceTable::for_model(None, &model, &d.0, &mut log).unwrap();
        assert_eq!(t.entries()[0].prior, 1.5);
        assert_eq!(lines.len(), 1, "{lines:?}");
        assert!(lines[0].contains("line 1"), "{lines:?}");
    }

    #[test]
    fn the_shipped_priors_are_sane() {
        let t = AcceptanceTable::shipped(&crate::assets::lookahead_priors());
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
