//! A tiny synthetic language model that honours positions and masks exactly: the logits of a
//! row are a fixed function of the tokens that row can see (cache + visible new tokens, in
//! position order). It is an independent oracle for the decoding strategies: any leak across
//! branches or any wrong position changes its output.

use lade::model::{Batch, CausalLm, Logits};
use lade::Result;

/// Logits of the next token given a context: an order-2 Markov table over a small vocabulary
/// (plus a weak dependence on the position), peaked so that n-grams repeat.
pub type Table = fn(ctx: &[u32], vocab: usize) -> Vec<f32>;

pub fn markov2(ctx: &[u32], vocab: usize) -> Vec<f32> {
    let a = ctx.last().copied().unwrap_or(0) as u64;
    let b = if ctx.len() >= 2 {
        ctx[ctx.len() - 2] as u64
    } else {
        7
    };
    let pos = ctx.len() as u64 / 16;
    (0..vocab as u64)
        .map(|t| {
            let mut h =
                a.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ b.wrapping_mul(0xc2b2_ae3d_27d4_eb4f);
            h ^= t.wrapping_mul(0x1656_67b1_9e37_79f9) ^ pos;
            h ^= h >> 29;
            h = h.wrapping_mul(0xbf58_476d_1ce4_e5b9);
            h ^= h >> 32;
            // Mostly small noise, occasionally a strong preference.
            let u = (h % 1000) as f32 / 1000.0;
            if u > 0.85 {
                4.0 + 4.0 * u
            } else {
                2.0 * u
            }
        })
        .collect()
}

/// Like [`markov2`], plus a strong pull towards `last + 1`: drafts get accepted often.
pub fn sticky(ctx: &[u32], vocab: usize) -> Vec<f32> {
    let next = (ctx.last().copied().unwrap_or(0) as usize + 1) % vocab;
    let mut l: Vec<f32> = markov2(ctx, vocab).iter().map(|x| x * 0.3).collect();
    l[next] += 3.0;
    l
}

/// The mock model with its committed tokens as "cache".
pub struct MockLm {
    pub vocab: usize,
    pub context: usize,
    pub table: Table,
    pub cache: Vec<u32>,
    /// Forward passes run.
    pub forwards: usize,
}

impl MockLm {
    pub fn new(vocab: usize, context: usize) -> Self {
        Self {
            vocab,
            context,
            table: markov2,
            cache: Vec::new(),
            forwards: 0,
        }
    }
}

impl CausalLm for MockLm {
    fn forward(&mut self, batch: &Batch<'_>) -> Result<Logits> {
        let past = self.cache.len();
        let q = batch.tokens.len();
        batch.validate(past, self.vocab, self.context)?;
        if past + q > self.context {
            return Err(lade::LadeError::ContextExceeded {
                needed: past + q,
                limit: self.context,
            });
        }
        let mut data = Vec::with_capacity(batch.logit_rows.len() * self.vocab);
        for &r in batch.logit_rows {
            // Visible new tokens ordered by position; positions must continue the cache.
            let mut seen: Vec<(u32, u32)> = (0..q)
                .filter(|&j| batch.mask.sees(past, q, r, past + j))
                .map(|j| (batch.positions[j], batch.tokens[j]))
                .collect();
            seen.sort();
            let mut ctx = self.cache.clone();
            for (k, (pos, tok)) in seen.iter().enumerate() {
                assert_eq!(
                    *pos as usize,
                    past + k,
                    "row {r} sees a gap or a duplicate position"
                );
                ctx.push(*tok);
            }
            data.extend((self.table)(&ctx, self.vocab));
        }
        self.cache.extend_from_slice(batch.tokens);
        self.forwards += 1;
        Ok(Logits::new(data, batch.logit_rows.len(), self.vocab))
    }
    fn cache_len(&self) -> usize {
        self.cache.len()
    }
    fn truncate(&mut self, len: usize) {
        self.cache.truncate(len);
    }
    fn keep_rows(&mut self, start: usize, rows: &[usize]) -> Result<()> {
        let kept: Vec<u32> = rows.iter().map(|&r| self.cache[start + r]).collect();
        self.cache.truncate(start);
        self.cache.extend(kept);
        Ok(())
    }
    fn context_size(&self) -> usize {
        self.context
    }
    fn vocab_size(&self) -> usize {
        self.vocab
    }
}
