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

    /// The mask as device kernels take it: for every new row, `None` when it sees exactly the
    /// whole cache and new rows `0..=i` (causal), else the new rows it sees (increasing), given
    /// that it sees the whole cache. Fails for masks that hide cached keys (no kernel needs
    /// them yet).
    pub fn in_step_rows(&self, past: usize, q: usize) -> Result<Vec<Option<Vec<u32>>>> {
        (0..q)
            .map(|i| {
                if (0..past).any(|j| !self.sees(past, q, i, j)) {
                    return Err(LadeError::Unsupported(format!(
                        "mask row {i} hides cached keys; the GPU kernels need every row to see \
                         the whole cache"
                    )));
                }
                let seen: Vec<u32> = (0..q)
                    .filter(|&j| self.sees(past, q, i, past + j))
                    .map(|j| j as u32)
                    .collect();
                let causal =
                    seen.len() == i + 1 && seen.iter().enumerate().all(|(a, &b)| a == b as usize);
                Ok(if causal { None } else { Some(seen) })
            })
            .collect()
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Rebuilds visibility from `in_step_rows` and compares it with `sees` key by key.
    fn check_round_trip(mask: &AttentionMask, past: usize, q: usize) {
        let rows = mask.in_step_rows(past, q).unwrap();
        for (i, row) in rows.iter().enumerate() {
            for j in 0..past + q {
                let from_rows = j < past
                    || match row {
                        None => j - past <= i,
                        Some(list) => list.contains(&((j - past) as u32)),
                    };
                assert_eq!(from_rows, mask.sees(past, q, i, j), "row {i} key {j}");
            }
        }
    }

    #[test]
    fn in_step_rows_round_trip() {
        check_round_trip(&AttentionMask::Causal, 5, 7);
        // A tree: row 0 root, rows 1, 2 children of 0, row 3 child of 2; plus a causal-looking
        // row that must come back as None.
        let q = 4;
        let mut visible = vec![false; q * q];
        for (i, js) in [
            (0, vec![0]),
            (1, vec![0, 1]),
            (2, vec![0, 2]),
            (3, vec![0, 2, 3]),
        ] {
            for j in js {
                visible[i * q + j] = true;
            }
        }
        let mask = AttentionMask::Block { q, visible };
        check_round_trip(&mask, 3, q);
        let rows = mask.in_step_rows(3, q).unwrap();
        assert_eq!(rows[1], None, "0,1 is the causal prefix of row 1");
        assert_eq!(rows[2], Some(vec![0, 2]));
        assert_eq!(rows[3], Some(vec![0, 2, 3]));
    }

    #[test]
    fn in_step_rows_rejects_hidden_cache_keys() {
        let (past, q) = (2, 1);
        let mask = AttentionMask::Full {
            past,
            q,
            visible: vec![false, true, true],
        };
        assert!(mask.in_step_rows(past, q).is_err());
    }
}
