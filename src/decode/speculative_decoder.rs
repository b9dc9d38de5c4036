//! The decoder of every drafting strategy: its drafters, the policy that combines their
//! proposals ([`DraftPolicy`]), and one [`speculative_step`] per forward pass.
//!
//! Lookahead decoding, prompt lookup and Lookahead Parallelism are configurations of it:
//!
//! | constructor | drafters | rows run on |
//! | --- | --- | --- |
//! | [`SpeculativeDecoder::lookahead`] | n-gram pool with its Jacobi window (W ≥ 1) or without (W = 0), text index, draft corpus | one model |
//! | [`SpeculativeDecoder::lookahead_parallel`] | the same (W ≥ 1) | the replicas of a [`DeviceGroup`] |
//! | [`SpeculativeDecoder::prompt_lookup`] | n-gram pool of the committed text | one model |
//!
//! Near the end of the context, where a step's rows do not fit, a step decodes one token
//! plainly.
//!

use std::sync::Arc;

use serde::Serialize;

use super::corpus::DraftCorpus;
use super::corpus_drafter::CorpusDrafter;
use super::device_group::DeviceGroup;
use super::draft_length::{choose_together, DraftLengths, StepPrice};
use super::lookahead::{JacobiWindow, LookaheadConfig, NgramPool, PoolDrafter, WindowShape};
use super::prompt_lookup::PromptLookupConfig;
use super::speculative::{
    speculative_step, Budget, Contender, DraftPolicy, Drafter, OneModel, Replicas, Source,
    SplitStats, StepDrafts,
};
use super::text_index::{TextDraftMode, TextDrafter};
use super::{Decoder, PlainDecoder, SequenceView, StepOutcome};
use crate::model::CausalLm;
use crate::sampling::Sampler;
use crate::{LadeError, Result};

/// What a decoder was configured as (its name and statistics follow it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Configuration {
    Lookahead(LookaheadConfig),
    PromptLookup(PromptLookupConfig),
}

/// Counters of a generation.
#[derive(Debug, Clone, Default, Serialize)]
pub struct SpeculativeStats {
    /// Steps run with their drafts and lookahead rows.
    pub speculative_steps: usize,
    /// Of those, steps that verified at least one draft.
    pub steps_with_drafts: usize,
    /// Steps decoded plainly because the step's rows did not fit in the context.
    pub fallback_steps: usize,
    /// Drafts verified, summed over steps.
    pub drafts_verified: usize,
    /// Rows per forward pass, summed over speculative steps.
    pub batch_tokens: usize,
    /// Steps that verified a draft of the draft corpus.
    pub corpus_drafts: usize,
    /// Draft tokens of the corpus confirmed.
    pub corpus_tokens_accepted: usize,
}

/// A speculative decoder of one sequence.
#[derive(Debug, Clone)]
pub struct SpeculativeDecoder {
    configuration: Configuration,
    pool: PoolDrafter,
    text: Option<TextDrafter>,
    corpus: Option<CorpusDrafter>,
    /// With the `learned_lengths` switch: the rows of a step besides its lead draft, and the
    /// price of a step's rows ([`Self::with_step_price`]), on which the drafters' lengths are
    /// chosen and the lead is weighed.
    learned: Option<(usize, Option<StepPrice>)>,
    /// With the `learned_lengths` switch and no window: the lengths of the pool's drafts
    /// (found on a one-token key), learned on its first draft at every position.
    pool_lengths: Option<DraftLengths>,
    policy: DraftPolicy,
    /// Longest draft of the pool and the text index (N-1).
    draft_tokens: usize,
    /// Most draft tokens a step may confirm (N-1, or N-2 in the authors' mode).
    max_match: usize,
    /// Set for Lookahead Parallelism: steps run on the replicas of this device group.
    split: Option<(DeviceGroup, SplitStats)>,
    begun: bool,
    stats: SpeculativeStats,
}

impl SpeculativeDecoder {
    /// Lookahead decoding with `config`: the n-gram pool with a Jacobi window of W columns
    /// (none with W = 0), fed by the committed text with `pool_from_prompt`; the text index
    /// with `context_match` (drafts whose length follows the match with W = 0 and
    /// `adaptive_draft`); the draft corpus of [`Self::with_corpus`] with `corpus_drafts`.
    pub fn lookahead(config: LookaheadConfig) -> Result<Self> {
        config.validate()?;
        let (n, g) = (config.ngram, config.guesses);
        let shape = (config.window > 0).then_some(WindowShape {
            columns: config.window,
            ngram: n,
            seed: config.seed,
        });
        let mode = if config.window == 0 && config.switches.adaptive_draft {
            TextDraftMode::FollowsMatch
        } else {
            TextDraftMode::Continuation
        };
        // A step's rows besides one draft of N-1 tokens: what a lead draft's length adds to.
        let learned = config
            .switches
            .learned_lengths
            .then(|| (config.step_tokens(g).saturating_sub(n - 1).max(1), None));
        let text_lengths = learned
            .as_ref()
            .filter(|_| mode == TextDraftMode::FollowsMatch)
            .map(|&(base, _)| DraftLengths::new(n - 1, base, None));
        Ok(Self {
            configuration: Configuration::Lookahead(config),
            pool: PoolDrafter::new(n - 1, g, shape, config.switches.pool_from_prompt),
            text: (config.switches.context_match && g > 0)
                .then(|| TextDrafter::new(mode).with_lengths(text_lengths)),
            corpus: None,
            pool_lengths: learned
                .as_ref()
                .filter(|_| config.window == 0)
                .map(|&(base, _)| DraftLengths::new(n - 1, base, None)),
            learned,
            policy: DraftPolicy::new(g),
            draft_tokens: n - 1,
            max_match: if config.switches.reference_compat {
                n - 2
            } else {
                n - 1
            },
            split: None,
            begun: false,
            stats: SpeculativeStats::default(),
        })
    }

    /// Lookahead decoding with `config` split across the devices of `group` (Lookahead
    /// Parallelism): the same steps, tokens and counters as [`Self::lookahead`]. The sequence
    /// it decodes must be `group` (a handle to the same devices).
    pub fn lookahead_parallel(config: LookaheadConfig, group: DeviceGroup) -> Result<Self> {
        if config.window == 0 {
            return Err(LadeError::InvalidArgument(
                "Lookahead Parallelism splits the window's columns over the devices: it needs \
                 W ≥ 1"
                    .into(),
            ));
        }
        let mut decoder = Self::lookahead(config)?;
        decoder.split = Some((group, SplitStats::default()));
        Ok(decoder)
    }

    /// Prompt lookup decoding with `config`: the n-gram pool of the committed text alone.
    pub fn prompt_lookup(config: PromptLookupConfig) -> Result<Self> {
        config.validate()?;
        let n = config.ngram;
        Ok(Self {
            configuration: Configuration::PromptLookup(config),
            pool: PoolDrafter::new(n - 1, config.guesses, None, true),
            text: None,
            corpus: None,
            learned: None,
            pool_lengths: None,
            policy: DraftPolicy::new(config.guesses),
            draft_tokens: n - 1,
            max_match: n - 1,
            split: None,
            begun: false,
            stats: SpeculativeStats::default(),
        })
    }

    /// This decoder drafting from `corpus` (lookahead with `corpus_drafts` and G ≥ 1 only).
    pub fn with_corpus(mut self, corpus: Option<Arc<DraftCorpus>>) -> Self {
        let wanted = matches!(
            self.configuration,
            Configuration::Lookahead(c) if c.switches.corpus_drafts && c.guesses > 0
        );
        let lengths = self
            .learned
            .as_ref()
            .map(|(base, price)| DraftLengths::new(self.max_match, *base, price.clone()));
        self.corpus = corpus
            .filter(|_| wanted)
            .map(|c| CorpusDrafter::new(c).with_lengths(lengths));
        self
    }

    /// This decoder with its learned draft lengths (the `learned_lengths` switch) priced by
    /// `price`, the relative time of a step by its rows on the model's device; without a
    /// price drafts reach as far as their evidence. No effect without the switch.
    pub fn with_step_price(mut self, price: Option<StepPrice>) -> Self {
        let Some((base, _)) = self.learned else {
            return self;
        };
        self.learned = Some((base, price.clone()));
        let learners = [
            self.pool_lengths.as_mut(),
            self.text.as_mut().and_then(TextDrafter::lengths_mut),
            self.corpus.as_mut().and_then(CorpusDrafter::lengths_mut),
        ];
        for l in learners.into_iter().flatten() {
            l.set_price(price.clone());
        }
        self
    }

    /// The draft corpus in use.
    pub fn corpus(&self) -> Option<&Arc<DraftCorpus>> {
        self.corpus.as_ref().map(CorpusDrafter::corpus)
    }

    pub fn pool(&self) -> &NgramPool {
        self.pool.pool()
    }

    pub fn window(&self) -> Option<&JacobiWindow> {
        self.pool.window()
    }

    pub fn stats(&self) -> &SpeculativeStats {
        &self.stats
    }

    /// The drafts of the step after `text`, by the policy.
    fn drafts(&mut self, text: &[u32]) -> StepDrafts {
        let budget = |drafts, tokens| Budget { drafts, tokens };
        let mut pool = self
            .pool
            .propose(text, budget(self.policy.drafts, self.draft_tokens));
        if let Some(learn) = self.pool_lengths.as_ref() {
            // Learned on the first draft (recorded in `observe`), all cut to the length learned
            // for one-token keys.
            let len = learn.length(1);
            pool.retain_mut(|d| {
                d.tokens.truncate(len);
                !d.tokens.is_empty()
            });
        }
        let from_text = self
            .text
            .as_mut()
            .and_then(|d| d.propose(text, budget(1, self.draft_tokens)).pop());
        let from_corpus = self
            .corpus
            .as_mut()
            .and_then(|d| d.propose(text, budget(1, self.max_match)).pop());
        // The policy decides the lead: with learned lengths, on what each drafter's decided
        // drafts got right and on the price of a step's rows.
        let text_lengths = self.text.as_ref().and_then(TextDrafter::lengths);
        let corpus_lengths = self.corpus.as_ref().and_then(CorpusDrafter::lengths);
        let (base_rows, price) = self
            .learned
            .as_ref()
            .map_or((0, None), |(base, price)| (*base, price.as_ref()));
        self.policy.combine(
            pool,
            from_text.map(|d| Contender::new(d, text_lengths)),
            from_corpus.map(|d| Contender::new(d, corpus_lengths)),
            price,
            base_rows,
        )
    }

    /// Every drafter observes the step that made `text` (its last `new` tokens new).
    fn observe(&mut self, text: &[u32], new: usize, outputs: &[u32]) {
        match self.pool_lengths.as_mut() {
            Some(learn) => {
                // The pool's first draft at every position the text passed (the window is
                // off, so it is exactly what the pool proposed or would have there).
                self.pool
                    .observe_recording(text, new, outputs, |at, first| learn.note(at, 1, first));
                learn.observe(text);
            }
            None => self.pool.observe(text, new, outputs),
        }
        if let Some(d) = self.text.as_mut() {
            d.observe(text, new, outputs);
        }
        if let Some(d) = self.corpus.as_mut() {
            d.observe(text, new, outputs);
        }
        if self.learned.is_some() {
            choose_together([
                self.text.as_mut().and_then(TextDrafter::lengths_mut),
                self.corpus.as_mut().and_then(CorpusDrafter::lengths_mut),
                self.pool_lengths.as_mut(),
            ]);
        }
    }
}

impl Decoder for SpeculativeDecoder {
    fn name(&self) -> String {
        match (self.configuration, &self.split) {
            (Configuration::Lookahead(c), None) => c.label(),
            (Configuration::Lookahead(c), Some(_)) => format!("{}-parallel", c.label()),
            (Configuration::PromptLookup(c), _) => c.label(),
        }
    }

    fn begin(&mut self, prompt: &[u32]) -> Result<()> {
        if prompt.is_empty() {
            return Err(LadeError::InvalidArgument("the prompt is empty".into()));
        }
        self.begun = true;
        self.pool.begin(prompt);
        if let Some(l) = self.pool_lengths.as_mut() {
            l.reset();
        }
        if let Some(d) = self.text.as_mut() {
            d.begin(prompt);
        }
        if let Some(d) = self.corpus.as_mut() {
            d.begin(prompt);
        }
        self.stats = SpeculativeStats::default();
        if let Some((_, s)) = self.split.as_mut() {
            *s = SplitStats::default();
        }
        Ok(())
    }

    fn step(
        &mut self,
        lm: &mut dyn CausalLm,
        seq: SequenceView<'_>,
        sampler: &Sampler,
    ) -> Result<StepOutcome> {
        if !self.begun {
            return Err(LadeError::InvalidArgument(
                "speculative step before begin".into(),
            ));
        }
        if seq.tokens.is_empty() {
            return Err(LadeError::InvalidArgument("empty sequence".into()));
        }
        let drafts = self.drafts(seq.tokens);
        let lookahead = self.pool.lookahead_rows();
        // Near the context limit the step's rows may not fit: decode one token plainly.
        let rows = 1 + drafts.drafts.iter().map(Vec::len).sum::<usize>() + lookahead.len();
        if lm.cache_len() + rows > lm.context_size() {
            self.stats.fallback_steps += 1;
            let out = PlainDecoder.step(lm, seq, sampler)?;
            self.observe(&[seq.tokens, &out.tokens].concat(), out.tokens.len(), &[]);
            return Ok(out);
        }
        let (d, m) = (&drafts.drafts, self.max_match);
        let accepted = match self.split.as_mut() {
            None => speculative_step(&mut OneModel(lm), seq, d, &lookahead, sampler, m)?,
            Some((group, stats)) => {
                if group.cache_len() != lm.cache_len() {
                    return Err(LadeError::InvalidArgument(
                        "Lookahead Parallelism decodes the sequence of its own device group".into(),
                    ));
                }
                speculative_step(
                    &mut Replicas::new(group, stats),
                    seq,
                    d,
                    &lookahead,
                    sampler,
                    m,
                )?
            }
        };

        let s = &mut self.stats;
        if drafts.sources.first() == Some(&Source::Corpus) {
            s.corpus_drafts += 1;
            if accepted.winner == Some(0) {
                s.corpus_tokens_accepted += accepted.matched;
            }
        }
        s.speculative_steps += 1;
        s.steps_with_drafts += usize::from(!d.is_empty());
        s.drafts_verified += d.len();
        s.batch_tokens += accepted.rows;
        let text = [seq.tokens, &accepted.tokens].concat();
        self.observe(&text, accepted.tokens.len(), &accepted.lookahead);
        Ok(StepOutcome {
            tokens: accepted.tokens,
            from_draft: accepted.matched,
            rows: accepted.rows,
        })
    }

    fn stats_json(&self) -> Option<serde_json::Value> {
        let s = &self.stats;
        let mut v = match self.configuration {
            Configuration::Lookahead(c) => serde_json::json!({
                "window": c.window,
                "ngram": c.ngram,
                "guesses": c.guesses,
                "pool_from_prompt": c.switches.pool_from_prompt,
                "context_match": c.switches.context_match,
                "adaptive_draft": self
                    .text
                    .as_ref()
                    .is_some_and(|t| t.mode() == TextDraftMode::FollowsMatch),
                "reference_compat": c.switches.reference_compat,
                "learned_lengths": self.learned.as_ref().map(|(_, price)| serde_json::json!({
                    "priced": price.is_some(),
                    "text_scored": self.text.as_ref().and_then(TextDrafter::lengths)
                        .map(DraftLengths::scored),
                    "pool_scored": self.pool_lengths.as_ref().map(DraftLengths::scored),
                    "corpus_scored": self.corpus.as_ref().and_then(CorpusDrafter::lengths)
                        .map(DraftLengths::scored),
                    "text_chosen": self.text.as_ref().and_then(TextDrafter::lengths)
                        .map(DraftLengths::chosen),
                    "pool_chosen": self.pool_lengths.as_ref().map(DraftLengths::chosen),
                    "corpus_chosen": self.corpus.as_ref().and_then(CorpusDrafter::lengths)
                        .map(DraftLengths::chosen),
                })),
                "pool_size": self.pool().len(),
                "lookahead_steps": s.speculative_steps,
                "fallback_steps": s.fallback_steps,
                "candidates_verified": s.drafts_verified,
                "corpus": self.corpus().map(|c| serde_json::json!({
                    "texts": c.texts(),
                    "tokens": c.tokens(),
                })),
                "corpus_drafts": s.corpus_drafts,
                "corpus_tokens_accepted": s.corpus_tokens_accepted,
                "mean_batch_tokens": if s.speculative_steps > 0 {
                    s.batch_tokens as f64 / s.speculative_steps as f64
                } else {
                    0.0
                },
            }),
            Configuration::PromptLookup(c) => serde_json::json!({
                "ngram": c.ngram,
                "guesses": c.guesses,
                "pool_size": self.pool().len(),
                "steps_with_candidates": s.steps_with_drafts,
                "candidates_verified": s.drafts_verified,
                "batch_tokens": s.batch_tokens,
                "fallback_steps": s.fallback_steps,
            }),
        };
        if let (Some((_, split)), Some(o)) = (&self.split, v.as_object_mut()) {
            let steps = split.steps.max(1) as f64;
            o.insert(
                "mean_max_share_tokens".into(),
                (split.max_share_tokens as f64 / steps).into(),
            );
            o.insert(
                "mean_all_share_tokens".into(),
                (split.all_share_tokens as f64 / steps).into(),
            );
        }
        Some(v)
    }
}

#[cfg(test)]
mod tests {
    use super::super::draft_length::reach;
    use super::*;

    /// The drafts of the first step after `prompt` with W = 0, N = 32, G = 1 and a corpus of
    /// one text, `10 11 … 20`, and whether the corpus's draft leads.
    fn first_drafts(prompt: &[u32], with_corpus: bool) -> (Vec<Vec<u32>>, bool) {
        let corpus: Vec<u32> = (10..=20).collect();
        let corpus = Arc::new(DraftCorpus::from_texts([corpus.as_slice()]));
        let mut d = SpeculativeDecoder::lookahead(LookaheadConfig::new(0, 32, 1))
            .unwrap()
            .with_corpus(with_corpus.then_some(corpus));
        d.begin(prompt).unwrap();
        let s = d.drafts(prompt);
        let corpus_leads = s.sources.first() == Some(&Source::Corpus);
        (s.drafts, corpus_leads)
    }

    #[test]
    fn the_corpus_drafts_where_the_text_matched_a_shorter_context() {
        // The corpus's continuation of a context of `order` tokens ending at `first - 1`, as
        // far as its evidence reaches.
        let corpus_after = |first: u32, order: usize| -> Vec<u32> {
            (first..first + reach(order, 31) as u32).collect()
        };
        // No earlier 12 in the text: the corpus's `11 12` (2 tokens) drafts.
        assert_eq!(
            first_drafts(&[5, 11, 12], true),
            (vec![corpus_after(13, 2)], true)
        );
        assert_eq!(first_drafts(&[5, 11, 12], false), (vec![], false));
        // The corpus matches `10 11 12 13` (4 tokens); the text's earlier 13 (followed by
        // 50) matches `m` tokens back. The corpus drafts when its context is longer, else the
        // text's draft stands, exactly as without a corpus.
        for (p, m) in [
            (&[1, 13, 50, 10, 11, 12, 13][..], 1),
            (&[7, 12, 13, 50, 10, 11, 12, 13][..], 2),
            (&[11, 12, 13, 50, 10, 11, 12, 13][..], 3),
            (&[10, 11, 12, 13, 50, 10, 11, 12, 13][..], 4),
            (&[9, 10, 11, 12, 13, 50, 9, 10, 11, 12, 13][..], 5),
        ] {
            let without = first_drafts(p, false);
            assert_eq!(without.0[0][0], 50, "without a corpus: the text");
            assert_eq!(without.0[0].len(), reach(m, 31), "as far as the evidence");
            let with = first_drafts(p, true);
            if 4 > m {
                assert_eq!(with, (vec![corpus_after(14, 4)], true), "match of {m}");
            } else {
                assert_eq!(with, without, "match of {m}");
            }
        }
        // After a 10-token match the text's 7-token draft repeats the 5-token loop.
        let p = [9, 1, 2, 3, 4, 5, 1, 2, 3, 4, 5, 1, 2, 3, 4, 5];
        let draft = &first_drafts(&p, false).0[0];
        assert_eq!(draft.len(), 7);
        assert!(
            draft.iter().enumerate().all(|(i, &t)| t == p[1 + i % 5]),
            "{draft:?}"
        );
    }

    /// An empty sequence that answers zeros: enough for a device group to start.
    struct Idle;

    impl CausalLm for Idle {
        fn forward(&mut self, batch: &crate::model::Batch<'_>) -> Result<crate::model::Logits> {
            let rows = batch.logit_rows.len();
            Ok(crate::model::Logits::new(vec![0.0; rows * 4], rows, 4))
        }
        fn cache_len(&self) -> usize {
            0
        }
        fn truncate(&mut self, _len: usize) {}
        fn keep_rows(&mut self, _start: usize, _rows: &[usize]) -> Result<()> {
            Ok(())
        }
        fn context_size(&self) -> usize {
            8
        }
        fn vocab_size(&self) -> usize {
            4
        }
    }

    #[test]
    fn configurations_are_checked_and_named() {
        let group = || DeviceGroup::new(vec![Box::new(Idle)], vec![]).unwrap();
        let e = SpeculativeDecoder::lookahead_parallel(LookaheadConfig::new(0, 8, 1), group())
            .unwrap_err();
        assert!(e.to_string().contains("W ≥ 1"), "{e}");
        assert!(SpeculativeDecoder::lookahead(LookaheadConfig::new(0, 5, 0)).is_err());
        assert!(SpeculativeDecoder::prompt_lookup(PromptLookupConfig::new(1, 4)).is_err());
        let name = |d: Result<SpeculativeDecoder>| d.unwrap().name();
        let cfg = LookaheadConfig::new(7, 4, 7);
        assert_eq!(name(SpeculativeDecoder::lookahead(cfg)), "lookahead(7,4,7)");
        assert_eq!(
            name(SpeculativeDecoder::lookahead_parallel(cfg, group())),
            "lookahead(7,4,7)-parallel"
        );
        assert_eq!(
            name(SpeculativeDecoder::prompt_lookup(PromptLookupConfig::new(
                5, 8
            ))),
            "prompt-lookup(5,8)"
        );
        let mut d = SpeculativeDecoder::prompt_lookup(PromptLookupConfig::new(3, 2)).unwrap();
        assert!(d.begin(&[]).is_err(), "an empty prompt is refused");
        // Prompt lookup has no corpus even when one is offered.
        let corpus = Arc::new(DraftCorpus::from_texts([[1u32, 2, 3].as_slice()]));
        assert!(d.with_corpus(Some(corpus)).corpus().is_none());
    }
}
