//! The generation loop shared by every decoding strategy: prefill, steps, stop rules, streaming
//! and statistics.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use serde::Serialize;

use crate::decode::{Decoder, SequenceView};
use crate::model::{AttentionMask, Batch, CausalLm, TimedLm};
use crate::sampling::Sampler;
use crate::tokenizer::{StreamDecoder, TextTokenizer};
use crate::{LadeError, Result};

/// When to stop.
#[derive(Debug, Clone, Default)]
pub struct StopRules {
    /// Most tokens to emit.
    pub max_tokens: usize,
    /// End-of-generation ids: generation ends before any of them is emitted.
    pub stop_ids: Vec<u32>,
    /// Generation ends when the text contains one of these; the text is cut before it.
    pub stop_strings: Vec<String>,
    /// Checked before the prefill and before every step: once set, generation ends with
    /// [`FinishReason::Cancelled`] (a server sets it when its client goes away).
    pub cancel: Option<Arc<AtomicBool>>,
}

impl StopRules {
    fn cancelled(&self) -> bool {
        self.cancel
            .as_ref()
            .is_some_and(|c| c.load(Ordering::Relaxed))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FinishReason {
    /// An end-of-generation token or a stop string.
    Stop,
    /// `max_tokens` or the context limit.
    Length,
    /// [`StopRules::cancel`] was set.
    Cancelled,
}

/// Counters of one generation.
#[derive(Debug, Clone, Default, Serialize)]
pub struct GenerationStats {
    /// Forward passes after the prefill. The prefill feeds every prompt token but the last; the
    /// last one is the first step's pending input, so each step yields at least one token.
    pub steps: usize,
    /// Tokens the model decoded: the emitted ones plus a final end-of-generation token.
    pub generated_tokens: usize,
    /// `generated_tokens / steps` (1.0 for plain decoding).
    pub compression: f64,
    pub prefill_ms: f64,
    pub decode_ms: f64,
    /// Of `decode_ms`, the wall time spent in the model's forward passes and cache moves
    /// (the device's work and the wait for it); the rest is host work between them (the
    /// decoder, detokenizing; a device group's steps count as host work).
    pub model_ms: f64,
    pub decode_tokens_per_s: f64,
    /// `accepted_per_step[k]`: steps that committed `k` tokens (index 0 unused).
    pub accepted_per_step: Vec<usize>,
    /// Tokens that came from verified draft n-grams.
    pub drafted_tokens_accepted: usize,
    /// `steps_by_rows[r]`: steps whose forward pass ran `r` query rows.
    pub steps_by_rows: BTreeMap<usize, usize>,
}

impl GenerationStats {
    /// Query rows of all steps' forward passes.
    pub fn rows(&self) -> usize {
        self.steps_by_rows.iter().map(|(r, n)| r * n).sum()
    }
}

/// The result of [`generate`].
#[derive(Debug, Clone, Serialize)]
pub struct Generation {
    pub token_ids: Vec<u32>,
    pub text: String,
    pub prompt_tokens: usize,
    pub finish_reason: FinishReason,
    /// True when generation stopped because the context was full.
    pub hit_context_limit: bool,
    pub stats: GenerationStats,
}

/// Receives text as soon as it is final: `(piece, came_from_a_verified_draft)`.
pub type TextSink<'a> = dyn FnMut(&str, bool) + 'a;

/// Turns committed tokens into final text, holding back what could still become a stop string.
struct TextAssembler<'t> {
    decoder: Option<StreamDecoder<&'t TextTokenizer>>,
    stop_strings: Vec<String>,
    text: String,
    emitted: usize,
}

impl<'t> TextAssembler<'t> {
    /// Appends `token`; returns true when a stop string completed.
    fn push(&mut self, token: u32, from_draft: bool, sink: &mut TextSink<'_>) -> Result<bool> {
        let Some(dec) = self.decoder.as_mut() else {
            return Ok(false);
        };
        let piece = dec.push(token)?;
        self.text.push_str(&piece);
        self.flush(from_draft, false, sink)
    }

    fn finish(&mut self, sink: &mut TextSink<'_>) -> Result<()> {
        if let Some(dec) = self.decoder.as_mut() {
            let rest = dec.finish()?;
            self.text.push_str(&rest);
        }
        self.flush(false, true, sink)?;
        Ok(())
    }

    fn flush(&mut self, from_draft: bool, last: bool, sink: &mut TextSink<'_>) -> Result<bool> {
        // Search from a little before the emitted part: a stop string may straddle it.
        let longest = self.stop_strings.iter().map(String::len).max().unwrap_or(0);
        let mut from = self.emitted.saturating_sub(longest);
        while !self.text.is_char_boundary(from) {
            from -= 1;
        }
        let hit = self
            .stop_strings
            .iter()
            .filter_map(|s| self.text[from..].find(s.as_str()).map(|i| from + i))
            .min();
        if let Some(at) = hit {
            self.text.truncate(at);
            self.emit(at, from_draft, sink);
            return Ok(true);
        }
        let safe = if last {
            self.text.len()
        } else {
            self.safe_end()
        };
        self.emit(safe, from_draft, sink);
        Ok(false)
    }

    /// End of the text that cannot be the start of a stop string.
    fn safe_end(&self) -> usize {
        let t = self.text.as_bytes();
        let mut keep = 0;
        for s in &self.stop_strings {
            let s = s.as_bytes();
            for k in (1..s.len().min(t.len() + 1)).rev() {
                if t.ends_with(&s[..k]) {
                    keep = keep.max(k);
                    break;
                }
            }
        }
        self.text.len() - keep
    }

    fn emit(&mut self, end: usize, from_draft: bool, sink: &mut TextSink<'_>) {
        if end > self.emitted {
            sink(&self.text[self.emitted..end], from_draft);
            self.emitted = end;
        }
    }
}

/// Generates a continuation of `prompt` with `decoder`.
///
/// `tokenizer` is needed for text and stop strings; without it only ids are produced.
pub fn generate(
    lm: &mut dyn CausalLm,
    decoder: &mut dyn Decoder,
    sampler: &Sampler,
    prompt: &[u32],
    rules: &StopRules,
    tokenizer: Option<&TextTokenizer>,
    sink: &mut TextSink<'_>,
) -> Result<Generation> {
    if prompt.is_empty() {
        return Err(LadeError::InvalidArgument("the prompt is empty".into()));
    }
    if rules.max_tokens == 0 {
        return Err(LadeError::InvalidArgument(
            "max tokens must be at least 1".into(),
        ));
    }
    if tokenizer.is_none() && !rules.stop_strings.is_empty() {
        return Err(LadeError::InvalidArgument(
            "stop strings need a tokenizer".into(),
        ));
    }
    let context = lm.context_size();
    if prompt.len() >= context {
        return Err(LadeError::InvalidArgument(format!(
            "the prompt has {} tokens but the context holds {context}; at least one more position \
             is needed to generate (raise --ctx-size or shorten the prompt)",
            prompt.len()
        )));
    }
    if let Some(t) = prompt.iter().find(|&&t| t as usize >= lm.vocab_size()) {
        return Err(LadeError::InvalidArgument(format!(
            "prompt token {t} is outside the vocabulary"
        )));
    }
    let mut text = TextAssembler {
        decoder: tokenizer.map(|t| StreamDecoder::new(t, true)),
        stop_strings: rules
            .stop_strings
            .iter()
            .filter(|s| !s.is_empty())
            .cloned()
            .collect(),
        text: String::new(),
        emitted: 0,
    };
    let mut stats = GenerationStats::default();

    // Prefill: every prompt token but the last, which becomes the first pending input.
    lm.truncate(0);
    let t = Instant::now();
    let body = &prompt[..prompt.len() - 1];
    if !body.is_empty() && !rules.cancelled() {
        let positions: Vec<u32> = (0..body.len() as u32).collect();
        lm.forward(&Batch {
            tokens: body,
            positions: &positions,
            mask: &AttentionMask::Causal,
            logit_rows: &[],
        })?;
    }
    stats.prefill_ms = t.elapsed().as_secs_f64() * 1e3;
    decoder.begin(prompt)?;

    let mut tokens = prompt.to_vec();
    let mut finish = None;
    let mut hit_context_limit = false;
    let mut lm = TimedLm::new(lm);
    let t = Instant::now();
    while finish.is_none() {
        if rules.cancelled() {
            finish = Some(FinishReason::Cancelled);
            break;
        }
        if lm.cache_len() + 1 > context {
            hit_context_limit = true;
            finish = Some(FinishReason::Length);
            break;
        }
        let view = SequenceView {
            tokens: &tokens,
            prompt_len: prompt.len(),
        };
        let outcome = decoder.step(&mut lm, view, sampler)?;
        stats.steps += 1;
        *stats.steps_by_rows.entry(outcome.rows).or_default() += 1;
        let mut committed = 0;
        for (i, &tok) in outcome.tokens.iter().enumerate() {
            committed += 1;
            if rules.stop_ids.contains(&tok) {
                finish = Some(FinishReason::Stop);
                break;
            }
            tokens.push(tok);
            let drafted = i > 0 && i <= outcome.from_draft;
            if drafted {
                stats.drafted_tokens_accepted += 1;
            }
            if text.push(tok, drafted, sink)? {
                finish = Some(FinishReason::Stop);
                break;
            }
            if tokens.len() - prompt.len() >= rules.max_tokens {
                finish = Some(FinishReason::Length);
                break;
            }
        }
        stats.generated_tokens += committed;
        if stats.accepted_per_step.len() <= committed {
            stats.accepted_per_step.resize(committed + 1, 0);
        }
        stats.accepted_per_step[committed] += 1;
    }
    stats.decode_ms = t.elapsed().as_secs_f64() * 1e3;
    stats.model_ms = lm.spent.as_secs_f64() * 1e3;
    text.finish(sink)?;
    if stats.steps > 0 {
        stats.compression = stats.generated_tokens as f64 / stats.steps as f64;
    }
    if stats.decode_ms > 0.0 {
        stats.decode_tokens_per_s = stats.generated_tokens as f64 / (stats.decode_ms / 1e3);
    }
    Ok(Generation {
        token_ids: tokens[prompt.len()..].to_vec(),
        text: text.text,
        prompt_tokens: prompt.len(),
        finish_reason: finish.unwrap_or(FinishReason::Length),
        hit_context_limit,
        stats,
    })
}
