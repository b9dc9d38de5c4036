//! Lookahead Decoding (Fu et al., ICML 2024): exact parallel decoding without a draft model.
//!
//! Each step is ONE forward pass over the pending token, the 2D Jacobi window and up to G
//! candidate n-grams from the pool; the model's own choices verify the candidates, the window
//! moves one Jacobi iteration forward and its diagonals feed the pool. With W = 0 there is no
//! window: the step verifies candidates from the prompt, the output and the context match only.

pub mod config;
pub mod context_match;
pub mod layout;
pub mod parallel;
pub mod pool;
pub mod verify;
pub mod window;

use std::sync::Arc;

use serde::Serialize;

use super::corpus::DraftCorpus;
use super::{Decoder, PlainDecoder, SequenceView, StepOutcome};
use crate::model::{CausalLm, RowOutputs};
use crate::sampling::Sampler;
use crate::{LadeError, Result};

pub use config::LookaheadConfig;
pub use context_match::{ContextIndex, ContextMatch, DraftIndex, TextDraft};
pub use layout::StepLayout;
pub use parallel::{ParallelLookaheadDecoder, Partition};
pub use pool::NgramPool;
pub use verify::{verify, Verdict};
pub use window::JacobiWindow;

/// Counters specific to lookahead.
#[derive(Debug, Clone, Default, Serialize)]
pub struct LookaheadStats {
    /// Steps run with the full lookahead batch.
    pub lookahead_steps: usize,
    /// Steps that fell back to a single token (warm-up excluded) because the context was full.
    pub fallback_steps: usize,
    /// Candidate n-grams verified, summed over steps.
    pub candidates_verified: usize,
    /// Tokens per forward pass, summed over lookahead steps.
    pub batch_tokens: usize,
    /// Steps that verified a draft of the draft corpus.
    pub corpus_drafts: usize,
    /// Draft tokens of the corpus confirmed.
    pub corpus_tokens_accepted: usize,
}

/// Tokens drafted from the draft corpus (at most N-1) when the context it matched is
/// `order` tokens long: 3 (a 4-row step with the pending token, about 1.01 single-row steps
/// on the H200) after a short context, 7 (8 rows, 1.09) after 4 or more tokens, which the
/// corpus continues further (chosen by exact replays on greedy texts).
pub fn corpus_draft_len(order: usize) -> usize {
    if order >= 4 {
        7
    } else {
        3
    }
}

/// A corpus draft replaces the committed text's draft when its context is at least this many
/// tokens longer than the text's backward match: the text's latest occurrence of a short
/// context is a worse guess than what the model usually wrote after a long one.
pub const CORPUS_OVER_TEXT_MARGIN: usize = 2;

/// The lookahead decoder of one sequence.
#[derive(Debug, Clone)]
pub struct LookaheadDecoder {
    config: LookaheadConfig,
    /// Set by `begin`.
    begun: bool,
    /// The Jacobi window (none with W = 0).
    window: Option<JacobiWindow>,
    pool: NgramPool,
    /// Contexts of the committed text, for the context-matched candidate (`context_match`;
    /// with W = 0 and `adaptive_draft`, drafts whose length follows the match).
    context: ContextMatch,
    /// Drafts for steps the committed text has none for (`corpus_drafts`).
    corpus: Option<Arc<DraftCorpus>>,
    stats: LookaheadStats,
}

impl LookaheadDecoder {
    pub fn new(config: LookaheadConfig) -> Result<Self> {
        config.validate()?;
        Ok(Self {
            config,
            begun: false,
            window: None,
            pool: NgramPool::new(config.ngram - 1, config.guesses),
            context: ContextMatch::for_config(&config),
            corpus: None,
            stats: LookaheadStats::default(),
        })
    }

    /// This decoder drafting from `corpus` where the committed text has no candidate (when
    /// the config's `corpus_drafts` is on).
    pub fn with_corpus(mut self, corpus: Option<Arc<DraftCorpus>>) -> Self {
        self.corpus = corpus.filter(|_| self.config.corpus_drafts && self.config.guesses > 0);
        self
    }

    /// The draft corpus in use.
    pub fn corpus(&self) -> Option<&Arc<DraftCorpus>> {
        self.corpus.as_ref()
    }

    pub fn config(&self) -> &LookaheadConfig {
        &self.config
    }

    pub fn pool(&self) -> &NgramPool {
        &self.pool
    }

    pub fn window(&self) -> Option<&JacobiWindow> {
        self.window.as_ref()
    }

    pub fn stats(&self) -> &LookaheadStats {
        &self.stats
    }

    /// Most draft tokens a step may confirm.
    fn max_match(&self) -> usize {
        let n = self.config.ngram;
        if self.config.reference_compat {
            n - 2
        } else {
            n - 1
        }
    }

    /// One token by plain decoding, when the lookahead batch does not fit the context.
    fn fallback(
        &mut self,
        lm: &mut dyn CausalLm,
        seq: SequenceView<'_>,
        sampler: &Sampler,
    ) -> Result<StepOutcome> {
        self.stats.fallback_steps += 1;
        let out = PlainDecoder.step(lm, seq, sampler)?;
        self.commit(&[seq.tokens, &out.tokens].concat(), out.tokens.len());
        Ok(out)
    }

    /// What follows a lookahead forward pass once `new_top` (the model's choices at the top
    /// level) and the verdict are known: harvest the window's n-grams, move the window, pool
    /// the committed tokens, count. `candidates`: how many were verified, and whether the
    /// first came from the draft corpus.
    fn after_step(
        &mut self,
        pending: u32,
        new_top: &[u32],
        seq: SequenceView<'_>,
        verdict: Verdict,
        (candidates, corpus_first): (usize, bool),
        batch_tokens: usize,
    ) -> StepOutcome {
        if corpus_first {
            self.stats.corpus_drafts += 1;
            if verdict.winner == Some(0) {
                self.stats.corpus_tokens_accepted += verdict.matched;
            }
        }
        if let Some(window) = self.window.as_mut() {
            for gram in window.ngrams(pending, new_top) {
                self.pool.insert(gram[0], &gram[1..]);
            }
            window.advance(new_top);
        }
        self.commit(
            &[seq.tokens, &verdict.tokens].concat(),
            verdict.tokens.len(),
        );
        self.stats.lookahead_steps += 1;
        self.stats.candidates_verified += candidates;
        self.stats.batch_tokens += batch_tokens;
        StepOutcome {
            tokens: verdict.tokens,
            from_draft: verdict.matched,
            rows: batch_tokens,
        }
    }

    /// Takes note of newly committed tokens (`committed` = whole sequence, the last `new` of
    /// which are new): the n-grams that end in them go to the pool (`pool_from_prompt`), their
    /// contexts to the context index (`context_match`).
    fn commit(&mut self, committed: &[u32], new: usize) {
        self.context.extend(committed);
        if !self.config.pool_from_prompt {
            return;
        }
        let n = self.config.ngram;
        for end in committed.len() - new..committed.len() {
            if end + 1 >= n {
                let gram = &committed[end + 1 - n..=end];
                self.pool.insert(gram[0], &gram[1..]);
            }
        }
    }

    /// The candidates of a step whose committed text is `tokens` (its last token pending): the
    /// pool's tuples for the pending token once the window is warm (oldest first), preceded by
    /// the context-matched continuation when there is one (`context_match`); at most G, each
    /// once. The oldest pool tuple makes room for the context match. With a draft corpus, the
    /// corpus draft takes its place where there is no context match, or where the corpus
    /// matched a context [`CORPUS_OVER_TEXT_MARGIN`] tokens longer than a match-following
    /// draft did; the flag says so.
    fn candidates(&self, tokens: &[u32], window_warm: bool) -> (Vec<Vec<u32>>, bool) {
        let g = self.config.guesses;
        let Some(&pending) = tokens.last() else {
            return (Vec::new(), false);
        };
        let mut pool: Vec<Vec<u32>> = if window_warm {
            self.pool.get(pending).to_vec()
        } else {
            Vec::new()
        };
        let from_text = self.context.candidate(tokens);
        // The corpus's draft where the text has none, or only one after a match shorter by
        // the margin than the corpus's context.
        let from_corpus = self.corpus.as_ref().and_then(|c| {
            let (_, order) = c.next(tokens)?;
            let wanted = match &from_text {
                None => true,
                Some(t) => t
                    .matched
                    .is_some_and(|m| order >= m + CORPUS_OVER_TEXT_MARGIN),
            };
            let draft =
                wanted.then(|| c.draft(tokens, corpus_draft_len(order).min(self.max_match())))?;
            (!draft.is_empty()).then_some(draft)
        });
        let (m, corpus) = match (from_corpus, from_text) {
            (Some(d), _) => (d, true),
            (None, Some(t)) => (t.tokens, false),
            (None, None) => return (pool, false),
        };
        pool.retain(|v| v.as_slice() != m);
        let drop = (pool.len() + 1).saturating_sub(g);
        let mut out = Vec::with_capacity(g);
        out.push(m);
        out.extend(pool.into_iter().skip(drop));
        (out, corpus)
    }
}

impl Decoder for LookaheadDecoder {
    fn name(&self) -> String {
        self.config.label()
    }

    fn begin(&mut self, prompt: &[u32]) -> Result<()> {
        if prompt.is_empty() {
            return Err(LadeError::InvalidArgument("the prompt is empty".into()));
        }
        let c = &self.config;
        self.begun = true;
        self.window =
            (c.window > 0).then(|| JacobiWindow::from_prompt(prompt, c.window, c.ngram, c.seed));
        self.pool = NgramPool::new(c.ngram - 1, c.guesses);
        self.context = ContextMatch::for_config(c);
        self.stats = LookaheadStats::default();
        if c.pool_from_prompt {
            self.pool.insert_sequence(prompt);
        }
        self.context.extend(prompt);
        Ok(())
    }

    fn step(
        &mut self,
        lm: &mut dyn CausalLm,
        seq: SequenceView<'_>,
        sampler: &Sampler,
    ) -> Result<StepOutcome> {
        let max_match = self.max_match();
        if !self.begun {
            return Err(LadeError::InvalidArgument(
                "lookahead step before begin".into(),
            ));
        }
        let pending = *seq
            .tokens
            .last()
            .ok_or_else(|| LadeError::InvalidArgument("empty sequence".into()))?;
        let p = lm.cache_len();
        let window = self.window.as_ref();
        let (candidates, corpus_first) =
            self.candidates(seq.tokens, window.is_none_or(JacobiWindow::is_warm));
        let layout = match window {
            Some(w) => StepLayout::build(pending, p as u32, w, &candidates),
            None => StepLayout::candidates_only(pending, p as u32, &candidates),
        };
        // Near the context limit the whole batch may not fit: decode one token plainly.
        if p + layout.len() > lm.context_size() {
            return self.fallback(lm, seq, sampler);
        }
        let rows = RowOutputs::forward(lm, &layout.batch(), sampler)?;
        let index = seq.next_output_index();
        let y0 = rows.choose(sampler, layout.t0_logits(), seq.tokens, index);
        let mut history = seq.tokens.to_vec();
        let verdict = verify(&candidates, y0, max_match, &mut |c, i, so_far| {
            history.truncate(seq.tokens.len());
            history.extend_from_slice(so_far);
            let row = layout.candidate_logits(c, i);
            rows.choose(sampler, row, &history, index + so_far.len() as u64)
        });

        // The window always moves by greedy Jacobi iteration.
        let new_top: Vec<u32> = (0..layout.top_columns())
            .map(|j| rows.argmax(layout.top_logits(j)))
            .collect();

        // Keep the K/V of t0 and of the confirmed draft tokens; drop everything else.
        let mut keep = vec![0usize];
        if let Some(c) = verdict.winner {
            keep.extend((0..verdict.matched).map(|i| layout.candidate_logits(c, i)));
        }
        lm.keep_rows(p, &keep)?;
        Ok(self.after_step(
            pending,
            &new_top,
            seq,
            verdict,
            (candidates.len(), corpus_first),
            layout.len(),
        ))
    }

    fn stats_json(&self) -> Option<serde_json::Value> {
        let c = &self.config;
        Some(serde_json::json!({
            "window": c.window,
            "ngram": c.ngram,
            "guesses": c.guesses,
            "pool_from_prompt": c.pool_from_prompt,
            "context_match": c.context_match,
            "adaptive_draft": self.context.is_adaptive(),
            "reference_compat": c.reference_compat,
            "pool_size": self.pool.len(),
            "lookahead_steps": self.stats.lookahead_steps,
            "fallback_steps": self.stats.fallback_steps,
            "candidates_verified": self.stats.candidates_verified,
            "corpus": self.corpus.as_ref().map(|c| serde_json::json!({
                "texts": c.texts(),
                "tokens": c.tokens(),
            })),
            "corpus_drafts": self.stats.corpus_drafts,
            "corpus_tokens_accepted": self.stats.corpus_tokens_accepted,
            "mean_batch_tokens": if self.stats.lookahead_steps > 0 {
                self.stats.batch_tokens as f64 / self.stats.lookahead_steps as f64
            } else {
                0.0
            },
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The candidates of the first step after `prompt` with W = 0, N = 32, G = 1 and a corpus
    /// of one text, `10 11 … 20`.
    fn first_candidates(prompt: &[u32], with_corpus: bool) -> (Vec<Vec<u32>>, bool) {
        let corpus: Vec<u32> = (10..=20).collect();
        let corpus = Arc::new(DraftCorpus::from_texts([corpus.as_slice()]));
        let mut d = LookaheadDecoder::new(LookaheadConfig::new(0, 32, 1))
            .unwrap()
            .with_corpus(with_corpus.then_some(corpus));
        d.begin(prompt).unwrap();
        d.candidates(prompt, false)
    }

    #[test]
    fn the_corpus_drafts_where_the_text_matched_a_much_shorter_context() {
        // The corpus's continuation of a context of `order` tokens ending at `first - 1`.
        let corpus_after = |first: u32, order: usize| -> Vec<u32> {
            (first..first + corpus_draft_len(order) as u32).collect()
        };
        // No earlier 12 in the text: the corpus's `11 12` (2 tokens) drafts.
        assert_eq!(
            first_candidates(&[5, 11, 12], true),
            (vec![corpus_after(13, 2)], true)
        );
        assert_eq!(first_candidates(&[5, 11, 12], false), (vec![], false));
        // The corpus matches `10 11 12 13` (4 tokens); the text's earlier 13 (followed by
        // 50) matches `m` tokens back. The corpus drafts when its context is the margin
        // longer, else the text's draft stands, exactly as without a corpus.
        for (p, m) in [
            (&[1, 13, 50, 10, 11, 12, 13][..], 1),
            (&[7, 12, 13, 50, 10, 11, 12, 13][..], 2),
            (&[11, 12, 13, 50, 10, 11, 12, 13][..], 3),
        ] {
            let without = first_candidates(p, false);
            assert_eq!(without.0[0][0], 50, "without a corpus: the text");
            let with = first_candidates(p, true);
            if 4 >= m + CORPUS_OVER_TEXT_MARGIN {
                assert_eq!(with, (vec![corpus_after(14, 4)], true), "match of {m}");
            } else {
                assert_eq!(with, without, "match of {m}");
            }
        }
        // After a 3-token match the text's draft repeats the 5-token loop `50 10 11 12 13`.
        let p = [11, 12, 13, 50, 10, 11, 12, 13];
        let draft = &first_candidates(&p, false).0[0];
        assert!(
            draft.iter().enumerate().all(|(i, &t)| t == p[3 + i % 5]),
            "{draft:?}"
        );
    }
}
