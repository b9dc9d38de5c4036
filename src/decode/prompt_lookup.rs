//! Prompt lookup decoding: candidates come only from the n-grams of the prompt and of the output
//! so far, with no Jacobi window. This is the first row of the ablation in the lookahead paper
//! (Table 3, "prompt as reference" without lookahead), and what llama.cpp's `lookup` example
//! does with a one-token key.
//!
//! Each step is one forward pass over the pending token `t0` and up to G drafts continuing
//! `t0` (N-1 tokens each) from the pool: [`super::SpeculativeDecoder::prompt_lookup`], the
//! speculative step with the n-gram pool fed by the committed text as its only drafter, so the
//! output equals plain decoding.

use serde::Serialize;

use crate::{LadeError, Result};

/// Parameters of prompt lookup decoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct PromptLookupConfig {
    /// N-gram size: a candidate is N-1 tokens after the key, a step commits at most N tokens.
    pub ngram: usize,
    /// Most candidates per step (the pool keeps at most G continuations per key).
    pub guesses: usize,
}

impl PromptLookupConfig {
    pub fn new(ngram: usize, guesses: usize) -> Self {
        Self { ngram, guesses }
    }

    /// Rejects configurations the decoder cannot run.
    pub fn validate(&self) -> Result<()> {
        if self.ngram < 2 || self.ngram > 32 || self.guesses > 512 {
            return Err(LadeError::InvalidArgument(format!(
                "prompt lookup needs 2 ≤ N ≤ 32 and G ≤ 512 (got N={}, G={})",
                self.ngram, self.guesses
            )));
        }
        Ok(())
    }

    /// Short label, e.g. `prompt-lookup(5,15)`.
    pub fn label(&self) -> String {
        format!("prompt-lookup({},{})", self.ngram, self.guesses)
    }
}
