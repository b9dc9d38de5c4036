//! Prompt lookup decoding: candidates come only from the n-grams of the prompt and of the output
//! so far, with no Jacobi window. This is the first row of the ablation in the lookahead paper
//! (Table 3, "prompt as reference" without lookahead), and what llama.cpp's `lookup` example
//! does with a one-token key.
//!
//! Each step is one forward pass over the pending token `t0` and up to G candidate
//! continuations of `t0` (N-1 tokens each) from the pool; verification and the K/V update are
//! those of [`super::LookaheadDecoder`], so the output equals plain decoding.

use serde::Serialize;

use super::lookahead::{verify, NgramPool, StepLayout};
use super::{Decoder, PlainDecoder, SequenceView, StepOutcome};
use crate::model::{CausalLm, RowOutputs};
use crate::sampling::Sampler;
use crate::{LadeError, Result};

/// Parameters of [`PromptLookupDecoder`].
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

/// Counters of a prompt lookup generation.
#[derive(Debug, Clone, Default, Serialize)]
pub struct PromptLookupStats {
    /// Steps that verified at least one candidate.
    pub steps_with_candidates: usize,
    /// Candidates verified, summed over steps.
    pub candidates_verified: usize,
    /// Tokens per forward pass, summed over steps.
    pub batch_tokens: usize,
    /// Steps that decoded plainly because the candidates did not fit in the context.
    pub fallback_steps: usize,
}

/// Prompt lookup decoder of one sequence.
#[derive(Debug, Clone)]
pub struct PromptLookupDecoder {
    config: PromptLookupConfig,
    pool: NgramPool,
    stats: PromptLookupStats,
}

impl PromptLookupDecoder {
    pub fn new(config: PromptLookupConfig) -> Result<Self> {
        config.validate()?;
        Ok(Self {
            config,
            pool: NgramPool::new(config.ngram - 1, config.guesses),
            stats: PromptLookupStats::default(),
        })
    }

    pub fn config(&self) -> &PromptLookupConfig {
        &self.config
    }

    pub fn pool(&self) -> &NgramPool {
        &self.pool
    }

    pub fn stats(&self) -> &PromptLookupStats {
        &self.stats
    }
}

impl Decoder for PromptLookupDecoder {
    fn name(&self) -> String {
        self.config.label()
    }

    fn begin(&mut self, prompt: &[u32]) -> Result<()> {
        if prompt.is_empty() {
            return Err(LadeError::InvalidArgument("the prompt is empty".into()));
        }
        self.pool = NgramPool::new(self.config.ngram - 1, self.config.guesses);
        self.pool.insert_sequence(prompt);
        self.stats = PromptLookupStats::default();
        Ok(())
    }

    fn step(
        &mut self,
        lm: &mut dyn CausalLm,
        seq: SequenceView<'_>,
        sampler: &Sampler,
    ) -> Result<StepOutcome> {
        let pending = *seq
            .tokens
            .last()
            .ok_or_else(|| LadeError::InvalidArgument("empty sequence".into()))?;
        let p = lm.cache_len();
        let candidates: Vec<Vec<u32>> = self.pool.get(pending).to_vec();
        let layout = StepLayout::candidates_only(pending, p as u32, &candidates);
        if p + layout.len() > lm.context_size() {
            self.stats.fallback_steps += 1;
            let out = PlainDecoder.step(lm, seq, sampler)?;
            let committed = [seq.tokens, &out.tokens].concat();
            self.pool.insert_ending(&committed, out.tokens.len());
            return Ok(out);
        }
        let rows = RowOutputs::forward(lm, &layout.batch(), sampler)?;
        let index = seq.next_output_index();
        let y0 = rows.choose(sampler, layout.t0_logits(), seq.tokens, index);
        let mut history = seq.tokens.to_vec();
        let verdict = verify(
            &candidates,
            y0,
            self.config.ngram - 1,
            &mut |c, i, so_far| {
                history.truncate(seq.tokens.len());
                history.extend_from_slice(so_far);
                let row = layout.candidate_logits(c, i);
                rows.choose(sampler, row, &history, index + so_far.len() as u64)
            },
        );
        let mut keep = vec![0usize];
        if let Some(c) = verdict.winner {
            keep.extend((0..verdict.matched).map(|i| layout.candidate_logits(c, i)));
        }
        lm.keep_rows(p, &keep)?;
        let committed = [seq.tokens, &verdict.tokens].concat();
        self.pool.insert_ending(&committed, verdict.tokens.len());
        self.stats.steps_with_candidates += usize::from(!candidates.is_empty());
        self.stats.candidates_verified += candidates.len();
        self.stats.batch_tokens += layout.len();
        Ok(StepOutcome {
            tokens: verdict.tokens,
            from_draft: verdict.matched,
            rows: layout.len(),
        })
    }

    fn stats_json(&self) -> Option<serde_json::Value> {
        Some(serde_json::json!({
            "ngram": self.config.ngram,
            "guesses": self.config.guesses,
            "pool_size": self.pool.len(),
            "steps_with_candidates": self.stats.steps_with_candidates,
            "candidates_verified": self.stats.candidates_verified,
            "batch_tokens": self.stats.batch_tokens,
            "fallback_steps": self.stats.fallback_steps,
        }))
    }
}
