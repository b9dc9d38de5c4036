//! The decoding configs of `lade bench`: parsing of `--configs` and the named presets
//! (`scaling`, `ablation`).

use lade::decode::spec::parse::CONFIG_SYNTAX;
use lade::decode::{DecoderKind, DecoderSpec, LookaheadConfig};

/// One decoding configuration of a benchmark: its label (the config as written) and the
/// decoder it describes (`greedy` is plain decoding, the baseline; `auto` is resolved per
/// prompt by the measured cost model).
#[derive(Debug, Clone)]
pub struct BenchConfig {
    pub label: String,
    pub spec: DecoderSpec,
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

    /// Parses one config (no presets; see [`DecoderSpec::parse_config`]).
    pub fn parse(item: &str) -> anyhow::Result<BenchConfig> {
        let spec = DecoderSpec::parse_config(item).map_err(|e| match e {
            lade::LadeError::InvalidArgument(m) if m.starts_with("unknown config") => {
                anyhow::anyhow!(
                    "unknown config `{item}` ({CONFIG_SYNTAX}, or a preset: scaling, ablation)"
                )
            }
            e => e.into(),
        })?;
        Ok(BenchConfig {
            label: item.to_string(),
            spec,
        })
    }

    /// The lookahead config, for lookahead entries.
    pub fn lookahead(&self) -> Option<LookaheadConfig> {
        self.spec.lookahead_config()
    }

    pub fn is_greedy(&self) -> bool {
        self.spec.kind == DecoderKind::Plain
    }

    /// Query tokens of a full steady-state step ([`DecoderSpec::step_tokens`]).
    pub fn step_tokens(&self) -> usize {
        self.spec.step_tokens()
    }
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
        let s = no_corpus.lookahead().unwrap().switches;
        assert!(!s.corpus_drafts && !s.adaptive_draft);
        let no_ctx = BenchConfig::parse("lookahead:1,5,1-pool-ctx+ref").unwrap();
        let n = no_ctx.lookahead().unwrap().switches;
        assert!(!n.context_match && !n.pool_from_prompt && n.reference_compat);
        assert_eq!(c[4].spec.kind, DecoderKind::Auto);
        assert_eq!(c[5].spec.kind, DecoderKind::prompt_lookup(4, 10).unwrap());
        assert_eq!(c[1].step_tokens(), l.step_tokens(l.guesses));
        assert_eq!(c[5].step_tokens(), 1 + 10 * (4 - 1));
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
