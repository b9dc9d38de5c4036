//! The decoding configs of `lade bench`: parsing of `--configs` and the named presets
//! (`scaling`, `ablation`).

use anyhow::Context;
use lade::decode::{DraftSwitches, LookaheadConfig, PromptLookupConfig};
use serde::Serialize;

/// What one benchmark config decodes with.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub enum BenchStrategy {
    /// Plain greedy decoding (the baseline).
    Greedy,
    Lookahead(LookaheadConfig),
    PromptLookup(PromptLookupConfig),
    /// `--lookahead auto`: the measured cost model picks per prompt.
    Auto,
}

/// One decoding configuration of a benchmark.
#[derive(Debug, Clone, Serialize)]
pub struct BenchConfig {
    pub label: String,
    pub strategy: BenchStrategy,
}

/// The scaling-law grid (lookahead paper, Fig. 6 of the blog post): G = W.
pub const SCALING_NGRAMS: [usize; 4] = [3, 5, 7, 11];
pub const SCALING_WINDOWS: [usize; 7] = [1, 2, 4, 8, 16, 32, 64];

/// The ablation of the lookahead paper (Table 3), as `(config, row name)`.
pub const ABLATION: [(&str, &str); 4] = [
    ("prompt-lookup:5,15", "prompt lookup only (N=5, G=15)"),
    (
        "lookahead:30,5,1-pool",
        "lookahead, unbalanced (W=30, N=5, G=1)",
    ),
    (
        "lookahead:15,5,15-pool",
        "lookahead, balanced (W=15, N=5, G=15)",
    ),
    (
        "lookahead:15,5,15",
        "lookahead, balanced + prompt as reference",
    ),
];

const SYNTAX: &str =
    "greedy, auto, lookahead:W,N,G[-pool][-ctx][-adapt][-corpus][+ref], prompt-lookup:N,G, \
                      or a preset: scaling, ablation";

impl BenchConfig {
    /// Parses `;`-separated configs and presets. A `greedy` baseline is put first when the
    /// list has none; repeated labels are dropped.
    pub fn parse_list(s: &str) -> anyhow::Result<Vec<BenchConfig>> {
        let mut items: Vec<String> = Vec::new();
        for item in s.split(';').map(str::trim).filter(|x| !x.is_empty()) {
            match item {
                "scaling" => {
                    for n in SCALING_NGRAMS {
                        for w in SCALING_WINDOWS {
                            items.push(format!("lookahead:{w},{n},{w}"));
                        }
                    }
                }
                "ablation" => items.extend(ABLATION.iter().map(|(c, _)| c.to_string())),
                other => items.push(other.to_string()),
            }
        }
        anyhow::ensure!(!items.is_empty(), "--configs is empty");
        if !items.iter().any(|i| i == "greedy") {
            items.insert(0, "greedy".into());
        }
        let mut out: Vec<BenchConfig> = Vec::new();
        for item in items {
            if out.iter().any(|c| c.label == item) {
                continue;
            }
            out.push(Self::parse(&item)?);
        }
        Ok(out)
    }

    /// Parses one config (no presets).
    pub fn parse(item: &str) -> anyhow::Result<BenchConfig> {
        let strategy = match item {
            "greedy" => BenchStrategy::Greedy,
            "auto" => BenchStrategy::Auto,
            _ => {
                if let Some(spec) = item.strip_prefix("lookahead:") {
                    BenchStrategy::Lookahead(parse_lookahead(spec)?)
                } else if let Some(spec) = item.strip_prefix("prompt-lookup:") {
                    let parts: Vec<&str> = spec.split(',').map(str::trim).collect();
                    let bad = || format!("prompt-lookup config must be N,G, got `{spec}`");
                    anyhow::ensure!(parts.len() == 2, bad());
                    let n: usize = parts[0].parse().with_context(bad)?;
                    let g: usize = parts[1].parse().with_context(bad)?;
                    let cfg = PromptLookupConfig::new(n, g);
                    cfg.validate()?;
                    BenchStrategy::PromptLookup(cfg)
                } else {
                    anyhow::bail!("unknown config `{item}` ({SYNTAX})");
                }
            }
        };
        Ok(BenchConfig {
            label: item.to_string(),
            strategy,
        })
    }

    /// The lookahead config, for lookahead entries.
    pub fn lookahead(&self) -> Option<LookaheadConfig> {
        match self.strategy {
            BenchStrategy::Lookahead(c) => Some(c),
            _ => None,
        }
    }

    pub fn is_greedy(&self) -> bool {
        self.strategy == BenchStrategy::Greedy
    }

    /// Query tokens of a full steady-state step: `(W + G)(N - 1)` for lookahead,
    /// `1 + G(N - 1)` for prompt lookup, 1 otherwise (auto: unknown before it picks).
    pub fn step_tokens(&self) -> usize {
        match self.strategy {
            BenchStrategy::Lookahead(c) => c.step_tokens(c.guesses),
            BenchStrategy::PromptLookup(c) => 1 + c.guesses * (c.ngram - 1),
            _ => 1,
        }
    }
}

/// `W,N,G` with the `-pool` (no prompt n-grams), `-ctx` (no context-matched candidate),
/// `-adapt` (W = 0: fixed N-1-token drafts), `-corpus` (no drafts from the draft corpus) and
/// `+ref` (authors' mode) suffixes, in this order.
fn parse_lookahead(spec: &str) -> anyhow::Result<LookaheadConfig> {
    let (wng, switches) = DraftSwitches::strip_suffixes(spec);
    let (w, n, g) = LookaheadConfig::parse_wng(wng)?;
    let cfg = LookaheadConfig {
        switches,
        ..LookaheadConfig::new(w, n, g)
    };
    cfg.validate()?;
    Ok(cfg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_config_lists() {
        let c = BenchConfig::parse_list(
            "greedy; lookahead:15,5,15;lookahead:7,4,7+ref;lookahead:5,3,5-pool;auto;prompt-lookup:4,10",
        )
        .unwrap();
        assert_eq!(c.len(), 6);
        assert!(c[0].is_greedy() && c[0].lookahead().is_none());
        let l = c[1].lookahead().unwrap();
        assert_eq!((l.window, l.ngram, l.guesses), (15, 5, 15));
        assert!(l.switches.pool_from_prompt && !l.switches.reference_compat);
        assert!(c[2].lookahead().unwrap().switches.reference_compat);
        assert!(!c[3].lookahead().unwrap().switches.pool_from_prompt);
        assert!(l.switches.context_match && c[3].lookahead().unwrap().switches.context_match);
        let no_corpus = BenchConfig::parse("lookahead:0,32,1-adapt-corpus").unwrap();
        match no_corpus.strategy {
            BenchStrategy::Lookahead(c) => {
                assert!(!c.switches.corpus_drafts && !c.switches.adaptive_draft)
            }
            _ => panic!("lookahead expected"),
        }
        let no_ctx = BenchConfig::parse("lookahead:1,5,1-pool-ctx+ref").unwrap();
        let n = no_ctx.lookahead().unwrap();
        assert!(
            !n.switches.context_match
                && !n.switches.pool_from_prompt
                && n.switches.reference_compat
        );
        assert_eq!(c[4].strategy, BenchStrategy::Auto);
        assert_eq!(
            c[5].strategy,
            BenchStrategy::PromptLookup(PromptLookupConfig::new(4, 10))
        );
        assert_eq!(c[1].step_tokens(), 120);
        assert_eq!(c[5].step_tokens(), 31);
        for bad in [
            "lookahead:1,1,1",
            "beam:3",
            " ; ",
            "prompt-lookup:1,3",
            "prompt-lookup:5",
            "lookahead:a,b",
        ] {
            assert!(BenchConfig::parse_list(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn presets_expand_and_a_greedy_baseline_comes_first() {
        let c = BenchConfig::parse_list("scaling").unwrap();
        assert_eq!(c.len(), 1 + 4 * 7);
        assert!(c[0].is_greedy());
        for cfg in &c[1..] {
            let l = cfg.lookahead().unwrap();
            assert_eq!(l.window, l.guesses, "G = W");
            assert!(SCALING_NGRAMS.contains(&l.ngram) && SCALING_WINDOWS.contains(&l.window));
        }
        // Duplicates (15,5,15 is in the ablation too) appear once, in first-seen order.
        let c = BenchConfig::parse_list("lookahead:15,5,15;greedy;ablation;auto").unwrap();
        let labels: Vec<&str> = c.iter().map(|c| c.label.as_str()).collect();
        assert_eq!(
            labels,
            [
                "lookahead:15,5,15",
                "greedy",
                "prompt-lookup:5,15",
                "lookahead:30,5,1-pool",
                "lookahead:15,5,15-pool",
                "auto"
            ]
        );
    }
}
