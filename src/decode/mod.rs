//! Decoding strategies. Each one turns a model's logits into committed tokens, one forward pass
//! per step, and knows nothing about kernels: it talks to a [`CausalLm`].
//!
//! - [`plain`]: one token per step.
//! - [`speculative`]: the speculative step (one forward pass over the pending token, the drafts
//!   and the drafters' lookahead rows; verification; accepted rows kept) and the [`Drafter`]
//!   trait; [`speculative_decoder`]: the decoder built from drafters, of which lookahead,
//!   prompt lookup and Lookahead Parallelism are configurations.
//! - Drafters: [`lookahead`] (the Jacobi window and the n-gram pool), [`text_index`] (the
//!   prompt and output), [`corpus_drafter`] (the draft corpus of [`corpus`] and
//!   [`corpus_file`]).
//! - [`draft_length`]: draft lengths learned from the generation and priced by the device's
//!   step costs (the `learned_lengths` switch).
//! - [`device_group`]: model replicas on host threads, the transport of Lookahead
//!   Parallelism.
//! - [`spec`]: the description of a decoder every front end parses ([`DecoderSpec`]), and
//!   the construction of a decoder from a resolved one ([`construct`]).
//!
//! What `auto` picks, and the measuring it rests on, lives apart in `lade::tune`, which
//! builds on this module (never the other way round).
//!
//! [`Drafter`]: speculative::Drafter

pub mod corpus;
pub mod corpus_drafter;
pub mod corpus_file;
pub mod device_group;
pub mod draft_length;
pub mod lookahead;
pub mod plain;
pub mod prompt_lookup;
pub mod row_outputs;
pub mod spec;
pub mod speculative;
pub mod speculative_decoder;
#[cfg(test)]
mod test_rng;
pub mod text_index;

use crate::model::CausalLm;
use crate::sampling::Sampler;
use crate::Result;

pub use corpus::DraftCorpus;
pub use corpus_file::CorpusFile;
pub use device_group::DeviceGroup;
pub use lookahead::{DraftSwitches, LookaheadConfig};
pub use plain::PlainDecoder;
pub use prompt_lookup::PromptLookupConfig;
pub use row_outputs::RowOutputs;
pub use spec::{construct, DecoderKind, DecoderParts, DecoderSpec};
pub use speculative_decoder::{SpeculativeDecoder, SpeculativeStats};

/// The sequence as a strategy sees it before a step.
#[derive(Debug, Clone, Copy)]
pub struct SequenceView<'a> {
    /// Prompt followed by every committed output token. The last one is the pending input: its
    /// K/V is not in the cache yet (`cache_len == tokens.len() - 1`).
    pub tokens: &'a [u32],
    /// Length of the prompt inside `tokens`.
    pub prompt_len: usize,
}

impl SequenceView<'_> {
    /// Output index of the next token to be chosen (the key of its random draw).
    pub fn next_output_index(&self) -> u64 {
        (self.tokens.len() - self.prompt_len) as u64
    }
}

/// What one forward pass committed.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StepOutcome {
    /// Committed tokens in order (at least one). The K/V of all but the last is in the cache.
    pub tokens: Vec<u32>,
    /// How many of `tokens` (after the first) came from verified draft n-grams.
    pub from_draft: usize,
    /// Query rows of the step's forward pass (1 for plain decoding; on a device group, the
    /// rows of the whole step, summed over the devices).
    pub rows: usize,
}

/// A decoding strategy (plain, lookahead, ...).
pub trait Decoder {
    /// Short name for logs and stats, e.g. `greedy` or `lookahead(15,5,15)`.
    fn name(&self) -> String;
    /// Called once with the prompt before the first step.
    fn begin(&mut self, prompt: &[u32]) -> Result<()>;
    /// Runs one forward pass over the pending token (and whatever the strategy adds), chooses
    /// tokens with `sampler` and leaves the cache holding exactly the committed prefix minus the
    /// new pending token.
    fn step(
        &mut self,
        lm: &mut dyn CausalLm,
        seq: SequenceView<'_>,
        sampler: &Sampler,
    ) -> Result<StepOutcome>;
    /// Strategy-specific statistics for `--json` output.
    fn stats_json(&self) -> Option<serde_json::Value> {
        None
    }
}
