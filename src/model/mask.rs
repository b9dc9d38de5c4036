//! Attention masks over (cached positions + the new tokens of one forward pass).

use candle_core::{Device, Tensor};

use crate::{LadeError, Result};

/// Which earlier tokens each new token may attend to.
#[derive(Debug, Clone, PartialEq)]
pub enum AttentionMask {
    /// Every new token sees the whole cache and the new tokens before it (and itself).
    Causal,
    /// Every new token sees the whole cache; among the `q` new tokens, row `i` sees token `j`
    /// iff `visible[i * q + j]`. This is what speculative trees need.
    Block { q: usize, visible: Vec<bool> },
    /// Fully general: row `i` sees key `j` of `past + q` keys iff `visible[i * (past + q) + j]`.
    Full {
        past: usize,
        q: usize,
        visible: Vec<bool>,
    },
}

impl AttentionMask {
    /// Whether new row `i` may see key `j`, where keys `0..past` are cached and `past + k` is new
    /// token `k`.
    pub fn sees(&self, past: usize, q: usize, i: usize, j: usize) -> bool {
        match self {
            AttentionMask::Causal => j <= past + i,
            AttentionMask::Block { visible, .. } => j < past || visible[i * q + (j - past)],
            AttentionMask::Full { visible, .. } => visible[i * (past + q) + j],
        }
    }

    /// Checks the mask fits a step of `q` new tokens over `past` cached ones and that every row
    /// sees at least itself (a row that sees nothing has no softmax).
    pub fn validate(&self, past: usize, q: usize) -> Result<()> {
        let bad = |m: String| Err(LadeError::InvalidArgument(m));
        match self {
            AttentionMask::Causal => {}
            AttentionMask::Block { q: mq, visible } => {
                if *mq != q || visible.len() != q * q {
                    return bad(format!("block mask is for {mq} tokens, batch has {q}"));
                }
            }
            AttentionMask::Full {
                past: mp,
                q: mq,
                visible,
            } => {
                if *mp != past || *mq != q || visible.len() != q * (past + q) {
                    return bad(format!("mask is for {mp}+{mq} keys, step has {past}+{q}"));
                }
            }
        }
        for i in 0..q {
            if !self.sees(past, q, i, past + i) {
                return bad(format!("mask row {i} does not see its own token"));
            }
        }
        Ok(())
    }

    /// Additive f32 mask (q, past + q): 0 where visible, -inf elsewhere; `None` when every row
    /// sees every key (a single causal token).
    pub fn to_additive(&self, past: usize, q: usize, device: &Device) -> Result<Option<Tensor>> {
        if matches!(self, AttentionMask::Causal) && q == 1 {
            return Ok(None);
        }
        let keys = past + q;
        let mut data = vec![0f32; q * keys];
        for i in 0..q {
            for j in past..keys {
                if !self.sees(past, q, i, j) {
                    data[i * keys + j] = f32::NEG_INFINITY;
                }
            }
            if matches!(self, AttentionMask::Full { .. }) {
                for j in 0..past {
                    if !self.sees(past, q, i, j) {
                        data[i * keys + j] = f32::NEG_INFINITY;
                    }
                }
            }
        }
        Ok(Some(Tensor::from_vec(data, (q, keys), device)?))
    }
}
