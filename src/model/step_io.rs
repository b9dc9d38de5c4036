//! The inputs of one forward pass packed into one int32 buffer, the way the GPU kernels read
//! them (`src/model/cuda/kernels.cu`): one host-to-device copy per step, and a fixed layout per
//! row bucket so that a captured CUDA graph can be replayed for every step of that shape.
//!
//! ```text
//! [0]                        cache length L before the step
//! [1], [2]                   real query rows q, real logit rows r
//! [3]                        E: rows of the same step already in the cache, at L - E ..
//!                            L (a step longer than one pass runs as pieces; 0 otherwise)
//! [4 .. 4+QB]                token ids            (padding rows: 0)
//! [4+QB .. 4+2QB]            positions            (padding rows: 0)
//! [4+2QB .. 4+3QB]           in-step rows seen: -1 = causal (0..=i), else a count
//! [4+3QB .. 4+4QB]           where in this buffer each row's list of those rows starts
//! [4+4QB .. 4+4QB+RB]        rows whose logits are wanted (padding: row 0)
//! [4+4QB+RB ..]              the lists, increasing row indices (padding rows see only
//!                            themselves; causal rows have none)
//! ```
//!
//! Row indices in the lists count the step's rows from its first: E + i for row i of this
//! pass, below E for rows of earlier pieces (cache position L - E + index).
//! Every row sees the whole cache; only the in-step part of the mask varies. A row may see any
//! number of the step's rows: the buffer is made for `QB * QB` list entries, and only what a
//! step uses is copied.

use super::Batch;
use crate::{LadeError, Result};

/// Rows are padded (to a power of two up to 16, then to a multiple of 16) so that few shapes
/// (and graphs) exist while little work is wasted on padding.
pub fn bucket(n: usize) -> usize {
    match n {
        0 => 0,
        1..=16 => n.next_power_of_two(),
        _ => n.div_ceil(16) * 16,
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct StepIo {
    /// Query rows after padding.
    pub qb: usize,
    /// Logit rows after padding (0 when none are wanted).
    pub rb: usize,
    pub data: Vec<i32>,
}

impl StepIo {
    pub fn tokens_off() -> usize {
        4
    }
    pub fn positions_off(qb: usize) -> usize {
        4 + qb
    }
    pub fn seen_count_off(qb: usize) -> usize {
        4 + 2 * qb
    }
    pub fn seen_start_off(qb: usize) -> usize {
        4 + 3 * qb
    }
    pub fn logit_rows_off(qb: usize) -> usize {
        4 + 4 * qb
    }
    fn lists_off(qb: usize, rb: usize) -> usize {
        Self::logit_rows_off(qb) + rb
    }
    /// The most a step of `qb` rows and `rb` logit rows can use (the device buffer's size).
    pub fn len(qb: usize, rb: usize) -> usize {
        Self::lists_off(qb, rb) + qb * qb
    }

    /// Packs `batch` (already validated) for a cache of `past` positions.
    pub fn pack(batch: &Batch<'_>, past: usize) -> Result<Self> {
        let rows = batch.mask.in_step_rows(past, batch.tokens.len())?;
        Ok(Self::pack_rows(
            batch.tokens,
            batch.positions,
            batch.logit_rows,
            past,
            0,
            &rows,
        ))
    }

    /// The rows each row of `batch` (already validated, for a cache of `past` positions) sees,
    /// as explicit lists for a step run in pieces ([`Self::pack_piece`]): computed once per
    /// step. Every row must see only rows up to itself (a tree in row order, as speculative
    /// steps are), so that the rows it sees have run by the time it runs; "causal" (rows 0..=i
    /// of the step) has no short form in a piece.
    pub fn piece_lists(batch: &Batch<'_>, past: usize) -> Result<Vec<Option<Vec<u32>>>> {
        let rows = batch.mask.in_step_rows(past, batch.tokens.len())?;
        rows.into_iter()
            .enumerate()
            .map(|(i, seen)| {
                let list = seen.unwrap_or_else(|| (0..=i as u32).collect());
                if list.iter().any(|&j| j as usize > i) {
                    return Err(LadeError::Unsupported(format!(
                        "step row {i} sees a later row; a step longer than one pass runs in \
                         row order"
                    )));
                }
                Ok(Some(list))
            })
            .collect()
    }

    /// Packs the rows `piece` of `batch` as one pass of a step run in pieces, `lists` the
    /// step's [`Self::piece_lists`]: the rows before `piece.start` are in the cache then (at
    /// `past ..`), and `logit_rows` (indices into the piece) are read from this pass.
    pub fn pack_piece(
        batch: &Batch<'_>,
        lists: &[Option<Vec<u32>>],
        past: usize,
        piece: std::ops::Range<usize>,
        logit_rows: &[usize],
    ) -> Self {
        Self::pack_rows(
            &batch.tokens[piece.clone()],
            &batch.positions[piece.clone()],
            logit_rows,
            past + piece.start,
            piece.start,
            &lists[piece],
        )
    }

    /// The buffer of `tokens` at `positions` after `past` cached positions, the last `earlier`
    /// of them rows of the same step; `rows[i]`: the step rows row i sees (`None`: causal).
    fn pack_rows(
        tokens: &[u32],
        positions: &[u32],
        logit_rows: &[usize],
        past: usize,
        earlier: usize,
        rows: &[Option<Vec<u32>>],
    ) -> Self {
        let q = tokens.len();
        let r = logit_rows.len();
        let (qb, rb) = (bucket(q), bucket(r));
        let mut data = vec![0i32; Self::lists_off(qb, rb)];
        data[0] = past as i32;
        data[1] = q as i32;
        data[2] = r as i32;
        data[3] = earlier as i32;
        for i in 0..qb {
            let (tok, pos) = if i < q {
                (tokens[i], positions[i])
            } else {
                (0, 0)
            };
            data[Self::tokens_off() + i] = tok as i32;
            data[Self::positions_off(qb) + i] = pos as i32;
            data[Self::seen_start_off(qb) + i] = data.len() as i32;
            let count = match rows.get(i) {
                Some(None) => -1,
                Some(Some(seen)) => {
                    data.extend(seen.iter().map(|&j| j as i32));
                    seen.len() as i32
                }
                None => {
                    data.push((earlier + i) as i32);
                    1
                }
            };
            data[Self::seen_count_off(qb) + i] = count;
        }
        for (slot, &row) in data[Self::logit_rows_off(qb)..].iter_mut().zip(logit_rows) {
            *slot = row as i32;
        }
        StepIo { qb, rb, data }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::AttentionMask;

    #[test]
    fn buckets_pad_little() {
        assert_eq!(
            [0, 1, 2, 3, 5, 16, 17, 64, 65].map(bucket),
            [0, 1, 2, 4, 8, 16, 32, 64, 80]
        );
    }

    #[test]
    fn packs_a_tree_step_with_padding() {
        let q = 3;
        // row 0 root; row 1 sees 0,1 (causal prefix); row 2 sees 0,2 (a branch).
        let mut visible = vec![false; 9];
        for (i, j) in [(0, 0), (1, 0), (1, 1), (2, 0), (2, 2)] {
            visible[i * q + j] = true;
        }
        let mask = AttentionMask::Block { q, visible };
        let batch = Batch {
            tokens: &[7, 8, 9],
            positions: &[10, 11, 11],
            mask: &mask,
            logit_rows: &[0, 2],
        };
        let io = StepIo::pack(&batch, 10).unwrap();
        assert_eq!((io.qb, io.rb), (4, 2));
        let d = &io.data;
        assert_eq!(&d[..3], &[10, 3, 2]);
        assert_eq!(&d[4..8], &[7, 8, 9, 0]);
        assert_eq!(&d[StepIo::positions_off(4)..][..4], &[10, 11, 11, 0]);
        assert_eq!(&d[StepIo::seen_count_off(4)..][..4], &[-1, -1, 2, 1]);
        let seen = |i: usize, n: usize| {
            let start = d[StepIo::seen_start_off(4) + i] as usize;
            d[start..][..n].to_vec()
        };
        assert_eq!(seen(2, 2), vec![0, 2]);
        assert_eq!(seen(3, 1), vec![3], "padding rows see only themselves");
        assert_eq!(&d[StepIo::logit_rows_off(4)..][..2], &[0, 2]);
        assert_eq!(d.len(), StepIo::logit_rows_off(4) + 2 + 3);
        assert!(d.len() <= StepIo::len(4, 2));
    }

    #[test]
    fn a_row_may_see_every_row_of_the_step() {
        // 40 rows, the last seeing all but row 1 (not a causal prefix): 39 in-step keys, more
        // than any fixed per-row limit of 32 would take.
        let q = 40;
        let mut visible = vec![false; q * q];
        for j in 0..q {
            visible[(q - 1) * q + j] = j != 1;
        }
        for i in 0..q - 1 {
            visible[i * q + i] = true;
        }
        let mask = AttentionMask::Block { q, visible };
        let tokens = vec![1u32; q];
        let positions: Vec<u32> = (0..q as u32).collect();
        let batch = Batch {
            tokens: &tokens,
            positions: &positions,
            mask: &mask,
            logit_rows: &[],
        };
        let io = StepIo::pack(&batch, 0).unwrap();
        let d = &io.data;
        let last = q - 1;
        assert_eq!(d[StepIo::seen_count_off(io.qb) + last], 39);
        let start = d[StepIo::seen_start_off(io.qb) + last] as usize;
        let expect: Vec<i32> = (0..q as i32).filter(|&j| j != 1).collect();
        assert_eq!(&d[start..start + 39], &expect[..]);
        // padding rows 40..48 see themselves
        let pad = d[StepIo::seen_start_off(io.qb) + 47] as usize;
        assert_eq!(d[pad], 47);
        assert!(d.len() <= StepIo::len(io.qb, io.rb));
    }

    /// The cache positions of the keys row `i` of a packed pass sees, in order, read as the
    /// attention kernel reads them (kernels.cu): the cache before the step, then its list.
    fn keys_of(io: &StepIo, i: usize) -> Vec<usize> {
        let d = &io.data;
        let base = (d[0] - d[3]) as usize;
        let count = d[StepIo::seen_count_off(io.qb) + i];
        let mut keys: Vec<usize> = (0..base).collect();
        if count < 0 {
            keys.extend(base..base + d[3] as usize + i + 1);
        } else {
            let start = d[StepIo::seen_start_off(io.qb) + i] as usize;
            keys.extend(
                d[start..start + count as usize]
                    .iter()
                    .map(|&j| base + j as usize),
            );
        }
        keys
    }

    #[test]
    fn a_step_in_pieces_gives_each_row_the_keys_of_one_pass() {
        // A random tree of 45 rows in row order (each row sees its parent's rows and itself),
        // some rows a causal prefix; run in pieces of 16 rows after 7 cached positions.
        let (q, past) = (45, 7);
        let mut visible = vec![false; q * q];
        let mut seed = 0x5eed_u64;
        for i in 0..q {
            let parent = if i == 0 {
                None
            } else {
                seed = crate::sampling::random_u64(seed, i as u64);
                // Every fifth row continues the row before it, the others a random earlier one.
                Some(if i % 5 == 0 { i - 1 } else { seed as usize % i })
            };
            if let Some(p) = parent {
                for j in 0..q {
                    visible[i * q + j] = visible[p * q + j];
                }
            }
            visible[i * q + i] = true;
        }
        let mask = AttentionMask::Block { q, visible };
        let tokens: Vec<u32> = (0..q as u32).collect();
        let positions: Vec<u32> = (0..q as u32).map(|i| past as u32 + i).collect();
        let batch = Batch {
            tokens: &tokens,
            positions: &positions,
            mask: &mask,
            logit_rows: &[],
        };
        let whole = StepIo::pack(&batch, past).unwrap();
        let lists = StepIo::piece_lists(&batch, past).unwrap();
        for start in (0..q).step_by(16) {
            let end = (start + 16).min(q);
            let logit_rows: Vec<usize> = (0..end - start).rev().collect();
            let piece = StepIo::pack_piece(&batch, &lists, past, start..end, &logit_rows);
            let d = &piece.data;
            assert_eq!(
                (d[0], d[1], d[3]),
                ((past + start) as i32, (end - start) as i32, start as i32)
            );
            assert_eq!(
                &d[4..4 + end - start],
                &tokens[start..end]
                    .iter()
                    .map(|&t| t as i32)
                    .collect::<Vec<_>>()[..]
            );
            for i in start..end {
                assert_eq!(
                    keys_of(&piece, i - start),
                    keys_of(&whole, i),
                    "row {i} in the piece from {start}"
                );
            }
            // A padding row sees its own slot.
            if end - start < piece.qb {
                let pad = piece.qb - 1;
                assert_eq!(keys_of(&piece, pad).last(), Some(&(past + start + pad)));
            }
            assert_eq!(
                &d[StepIo::logit_rows_off(piece.qb)..][..end - start],
                &logit_rows.iter().map(|&r| r as i32).collect::<Vec<_>>()[..]
            );
        }
    }

    #[test]
    fn a_step_whose_row_sees_a_later_row_is_refused_in_pieces() {
        let q = 3;
        let mask_of = |visible: Vec<bool>| AttentionMask::Block { q, visible };
        let mut visible = vec![false; q * q];
        for (i, j) in [(0, 0), (1, 1), (2, 2)] {
            visible[i * q + j] = true;
        }
        let in_order = mask_of(visible.clone());
        visible[q + 2] = true; // row 1 sees row 2
        let later = mask_of(visible);
        let batch = |mask| Batch {
            tokens: &[1, 2, 3],
            positions: &[0, 1, 2],
            mask,
            logit_rows: &[],
        };
        assert!(StepIo::piece_lists(&batch(&later), 0).is_err());
        assert!(StepIo::piece_lists(&batch(&in_order), 0).is_ok());
    }
}
