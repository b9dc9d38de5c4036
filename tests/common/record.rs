//! A mock model that records every forward pass (tokens, positions, who sees whom, logits),
//! so that tests can check what a decoder fed the model against the spec.

use lade::model::{Batch, CausalLm, Logits};
use lade::Result;

use super::mock::{MockLm, Table};

/// One recorded forward pass.
#[derive(Debug, Clone)]
pub struct Pass {
    pub past: usize,
    pub tokens: Vec<u32>,
    pub positions: Vec<u32>,
    /// For each row, the new rows it sees (itself included), increasing.
    pub seen: Vec<Vec<usize>>,
    pub logit_rows: Vec<usize>,
    pub logits: Logits,
}

impl Pass {
    /// Tokens of the chain row `r` sees among the new rows, ordered by position.
    pub fn chain(&self, r: usize) -> Vec<u32> {
        let mut v: Vec<(u32, u32)> = self.seen[r]
            .iter()
            .map(|&j| (self.positions[j], self.tokens[j]))
            .collect();
        v.sort();
        v.into_iter().map(|(_, t)| t).collect()
    }
}

/// A [`MockLm`] that records every forward pass.
pub struct Recorder {
    pub lm: MockLm,
    pub passes: Vec<Pass>,
}

impl Recorder {
    pub fn new(table: Table, vocab: usize, context: usize) -> Self {
        let mut lm = MockLm::new(vocab, context);
        lm.table = table;
        Self {
            lm,
            passes: Vec::new(),
        }
    }
}

impl CausalLm for Recorder {
    fn forward(&mut self, batch: &Batch<'_>) -> Result<Logits> {
        let past = self.lm.cache_len();
        let q = batch.tokens.len();
        let seen = (0..q)
            .map(|i| {
                (0..q)
                    .filter(|&j| batch.mask.sees(past, q, i, past + j))
                    .collect()
            })
            .collect();
        let logits = self.lm.forward(batch)?;
        self.passes.push(Pass {
            past,
            tokens: batch.tokens.to_vec(),
            positions: batch.positions.to_vec(),
            seen,
            logit_rows: batch.logit_rows.to_vec(),
            logits: logits.clone(),
        });
        Ok(logits)
    }
    fn cache_len(&self) -> usize {
        self.lm.cache_len()
    }
    fn truncate(&mut self, len: usize) {
        self.lm.truncate(len)
    }
    fn keep_rows(&mut self, start: usize, rows: &[usize]) -> Result<()> {
        self.lm.keep_rows(start, rows)
    }
    fn context_size(&self) -> usize {
        self.lm.context_size()
    }
    fn vocab_size(&self) -> usize {
        self.lm.vocab_size()
    }
}
