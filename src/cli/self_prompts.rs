//! Prompts the model writes itself, for `lade draft-corpus --self-prompts N`.
//!
//! A draft corpus should hold the model's own phrasing, on prompts unrelated to the ones it
//! will serve. A chat model asked for nothing but the opening of a user turn writes a user
//! message of its own (a question, a task); sampling that opening with N seeds gives N varied
//! prompts that come from no benchmark or dataset. `draft-corpus` then answers each one
//! greedily like any dataset prompt.

use lade::decode::PlainDecoder;
use lade::generate::{generate, FinishReason, StopRules};
use lade::model::CausalLm;
use lade::sampling::{Sampler, SamplingParams};
use lade::tokenizer::TextTokenizer;

use super::generate::render_user_turn;

/// Stands in for the user's message while the template is rendered; the prefix is what comes
/// before it.
const MARKER: &str = "\u{1}lade-self-prompt\u{1}";

/// How the model writes its prompts.
#[derive(Debug, Clone, Copy)]
pub struct SelfPromptRules {
    /// Sampling temperature of the prompt text (> 0: greedy would write one prompt N times).
    pub temperature: f32,
    /// Prompt `i` (0-based) is sampled with seed `first_seed + i`.
    pub first_seed: u64,
    /// Most tokens of one prompt; a prompt not finished by then is dropped.
    pub max_tokens: usize,
}

/// The token ids of the chat template up to where a user's message starts (the system turn,
/// if the template writes a default one, and the user turn's header).
pub fn user_turn_prefix(tok: &TextTokenizer) -> anyhow::Result<Vec<u32>> {
    let rendered = render_user_turn(tok, MARKER, None)?;
    let at = rendered
        .find(MARKER)
        .ok_or_else(|| anyhow::anyhow!("the chat template does not write the user's message"))?;
    let ids = tok.encode_prompt(&rendered[..at])?;
    anyhow::ensure!(
        !ids.is_empty(),
        "the chat template writes nothing before the user's message"
    );
    Ok(ids)
}

/// Samples prompt number `index`: the model continues `prefix` until it ends the user turn.
/// `None` when it did not within `rules.max_tokens` or wrote only whitespace.
pub fn write_prompt(
    lm: &mut dyn CausalLm,
    tok: &TextTokenizer,
    prefix: &[u32],
    rules: &SelfPromptRules,
    index: usize,
) -> anyhow::Result<Option<String>> {
    let sampler = Sampler::new(SamplingParams {
        temperature: rules.temperature,
        seed: rules.first_seed.wrapping_add(index as u64),
        ..SamplingParams::greedy()
    })?;
    let stop = StopRules {
        max_tokens: rules.max_tokens,
        stop_ids: tok.eog_ids().to_vec(),
        ..Default::default()
    };
    let g = generate(
        lm,
        &mut PlainDecoder,
        &sampler,
        prefix,
        &stop,
        Some(tok),
        &mut |_, _| {},
    )?;
    let text = g.text.trim();
    Ok((g.finish_reason == FinishReason::Stop && !text.is_empty()).then(|| text.to_string()))
}
