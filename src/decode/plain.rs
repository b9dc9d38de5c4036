//! Plain autoregressive decoding: one token per forward pass.

use super::{Decoder, RowOutputs, SequenceView, StepOutcome};
use crate::model::{AttentionMask, Batch, CausalLm};
use crate::sampling::Sampler;
use crate::{LadeError, Result};

/// Greedy or sampled decoding, one token per step.
#[derive(Debug, Clone, Default)]
pub struct PlainDecoder;

impl Decoder for PlainDecoder {
    fn name(&self) -> String {
        "plain".into()
    }

    fn begin(&mut self, _prompt: &[u32]) -> Result<()> {
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
        let position = lm.cache_len() as u32;
        let batch = Batch {
            tokens: &[pending],
            positions: &[position],
            mask: &AttentionMask::Causal,
            logit_rows: &[0],
        };
        let out = RowOutputs::forward(lm, &batch, sampler)?;
        let token = out.choose(sampler, 0, seq.tokens, seq.next_output_index());
        Ok(StepOutcome {
            tokens: vec![token],
            from_draft: 0,
            rows: 1,
        })
    }
}
