//! Lookahead parameters: window W, n-gram size N, candidates per step G, the drafting
//! switches ([`DraftSwitches`]) and the seed of the window.

use serde::Serialize;

use super::DraftSwitches;
use crate::{LadeError, Result};

/// Configuration of lookahead decoding ([`crate::decode::SpeculativeDecoder::lookahead`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct LookaheadConfig {
    /// Window columns: Jacobi guesses kept per level. 0 runs no lookahead branch: the
    /// candidates then come from the prompt, the output and the context match only (the
    /// paper's "prompt as reference" without lookahead, Table 3).
    pub window: usize,
    /// N-gram size: the window has N-1 levels and a step commits at most N tokens.
    pub ngram: usize,
    /// Most candidate n-grams verified per step (the pool keeps at most G per key).
    pub guesses: usize,
    /// Which drafters feed a step, and how.
    #[serde(flatten)]
    pub switches: DraftSwitches,
    /// Seed of the window initialisation (random prompt tokens).
    pub seed: u64,
}

impl LookaheadConfig {
    /// Default on CPU: measured best compression per unit of extra compute on SmolLM2-135M
    /// (see docs/benchmarks.md).
    pub const DEFAULT: LookaheadConfig = LookaheadConfig {
        window: 8,
        ngram: 4,
        guesses: 8,
        switches: DraftSwitches::DEFAULT,
        seed: 0,
    };

    pub fn new(window: usize, ngram: usize, guesses: usize) -> Self {
        Self {
            window,
            ngram,
            guesses,
            ..Self::DEFAULT
        }
    }

    /// Parses `W,N,G` (as on the command line).
    pub fn parse_wng(s: &str) -> Result<(usize, usize, usize)> {
        let parts: Vec<&str> = s.split(',').map(str::trim).collect();
        let bad = || {
            LadeError::InvalidArgument(format!(
                "lookahead config must be W,N,G (three integers, e.g. 15,5,15), got `{s}`"
            ))
        };
        if parts.len() != 3 {
            return Err(bad());
        }
        let n: Vec<usize> = parts
            .iter()
            .map(|p| p.parse::<usize>().map_err(|_| bad()))
            .collect::<Result<_>>()?;
        Ok((n[0], n[1], n[2]))
    }

    /// Rejects configurations the algorithm cannot run.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(LadeError::InvalidArgument(m));
        if self.window == 0 && self.guesses == 0 {
            return bad(
                "lookahead needs a window (W ≥ 1) or candidates (W = 0 with G ≥ 1); use \
                 --no-lookahead for plain decoding"
                    .into(),
            );
        }
        if self.ngram < 2 {
            return bad(format!(
                "lookahead n-gram size N must be at least 2 (got {}); use --no-lookahead for plain decoding",
                self.ngram
            ));
        }
        if self.window > 512 || self.ngram > 32 || self.guesses > 512 {
            return bad(format!(
                "lookahead config {},{},{} is too large (W ≤ 512, N ≤ 32, G ≤ 512)",
                self.window, self.ngram, self.guesses
            ));
        }
        Ok(())
    }

    /// Tokens fed per steady-state step with `c` candidates: `W*(N-1) + c*(N-1)` (the pending
    /// token is column 0 of level 0), or `1 + c*(N-1)` without a window.
    pub fn step_tokens(&self, candidates: usize) -> usize {
        if self.window == 0 {
            1 + candidates * (self.ngram - 1)
        } else {
            (self.window + candidates) * (self.ngram - 1)
        }
    }

    /// Short label, e.g. `lookahead(15,5,15)`.
    pub fn label(&self) -> String {
        format!("lookahead({},{},{})", self.window, self.ngram, self.guesses)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_step_needs_a_window_or_candidates() {
        assert!(LookaheadConfig::new(0, 8, 1).validate().is_ok());
        assert!(LookaheadConfig::new(1, 5, 0).validate().is_ok());
        let e = LookaheadConfig::new(0, 5, 0).validate().unwrap_err();
        assert!(e.to_string().contains("W = 0 with G ≥ 1"), "{e}");
        // Without a window the pending token is the only extra row.
        assert_eq!(LookaheadConfig::new(0, 8, 1).step_tokens(1), 8);
        assert_eq!(LookaheadConfig::new(1, 5, 1).step_tokens(1), 8);
        assert_eq!(LookaheadConfig::new(2, 3, 2).step_tokens(2), 8);
    }
}
