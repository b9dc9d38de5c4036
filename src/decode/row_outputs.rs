//! What a decoder gets back for the logit rows of a step, and how it turns them into tokens.

use crate::model::{Batch, CausalLm, Logits};
use crate::sampling::{argmax, Sampler};
use crate::Result;

/// The outputs of a step's logit rows: whole rows when the decoder samples, or each row's
/// token already chosen where the rows were computed (the argmax when decoding greedily
/// without penalties; on a device group, the sampler's choice for the row's history).
#[derive(Debug, Clone)]
pub enum RowOutputs {
    Logits(Logits),
    Chosen(Vec<u32>),
}

impl RowOutputs {
    /// Runs `batch` on `lm`, fetching whole rows only when `sampler` needs them.
    pub fn forward(lm: &mut dyn CausalLm, batch: &Batch<'_>, sampler: &Sampler) -> Result<Self> {
        Ok(if sampler.is_argmax() {
            RowOutputs::Chosen(lm.forward_argmax(batch)?)
        } else {
            RowOutputs::Logits(lm.forward(batch)?)
        })
    }

    /// The sampler's choice for logit row `row` (history and index as in `Sampler::choose`).
    pub fn choose(&self, sampler: &Sampler, row: usize, history: &[u32], index: u64) -> u32 {
        match self {
            RowOutputs::Logits(l) => sampler.choose(l.row(row), history, index),
            RowOutputs::Chosen(ids) => ids[row],
        }
    }

    /// The argmax of logit row `row`.
    pub fn argmax(&self, row: usize) -> u32 {
        match self {
            RowOutputs::Logits(l) => argmax(l.row(row)),
            RowOutputs::Chosen(ids) => ids[row],
        }
    }
}
