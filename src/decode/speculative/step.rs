//! One speculative step: the loop body of the paper's Algorithm 1, for any drafts.
//!
//! ```text
//!   rows     = t0, each draft as a chain after t0, the drafters' lookahead rows
//!   outputs  = model(rows, tree mask)               one forward pass (tree.rs draws the mask)
//!   y0       = the model's choice after t0          always committed
//!   accepted = y0 and the longest draft prefix equal to the model's choices (verify.rs)
//!   keep the K/V of t0 and of the accepted draft tokens, drop every other row
//!   report the accepted tokens and the argmax of the lookahead outputs
//! ```
//!
//! The model's choice is the argmax, or the seeded sample of plain decoding at that output
//! index (sample-and-match), so the accepted tokens are exactly what plain decoding emits.

use super::backend::{StepBackend, StepPlan};
use super::tree::{LookaheadRows, StepTree};
use super::verify::verify;
use crate::decode::SequenceView;
use crate::sampling::Sampler;
use crate::{LadeError, Result};

/// What one step accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accepted {
    /// `y0, y1, ..., yk`: the committed tokens (k = `matched`).
    pub tokens: Vec<u32>,
    /// Draft tokens confirmed.
    pub matched: usize,
    /// The draft whose rows produced `y1..yk` (the first one on ties).
    pub winner: Option<usize>,
    /// The argmax at each lookahead output, for the drafter that added the rows.
    pub lookahead: Vec<u32>,
    /// Query rows of the step's forward pass (the whole step, on a device group too).
    pub rows: usize,
}

/// Runs one step of the sequence `seq` on `backend`: `drafts` verified, `lookahead` rows
/// computed, at most `max_match` draft tokens confirmed.
pub fn speculative_step(
    backend: &mut dyn StepBackend,
    seq: SequenceView<'_>,
    drafts: &[Vec<u32>],
    lookahead: &LookaheadRows,
    sampler: &Sampler,
    max_match: usize,
) -> Result<Accepted> {
    let pending = *seq
        .tokens
        .last()
        .ok_or_else(|| LadeError::InvalidArgument("empty sequence".into()))?;
    let past = backend.cache_len();
    let tree = StepTree::new(pending, past as u32, drafts, lookahead);
    let plan = StepPlan {
        pending,
        past,
        drafts,
        lookahead,
        tree: &tree,
    };
    let out = backend.run(&plan, seq, sampler)?;

    let index = seq.next_output_index();
    let y0 = out.choose(sampler, tree.t0_logits(), seq.tokens, index);
    let mut history = seq.tokens.to_vec();
    let verdict = verify(drafts, y0, max_match, &mut |c, i, so_far| {
        history.truncate(seq.tokens.len());
        history.extend_from_slice(so_far);
        let row = tree.draft_logits(c, i);
        out.choose(sampler, row, &history, index + so_far.len() as u64)
    });
    let lookahead_out = (0..tree.lookahead_outputs())
        .map(|k| out.argmax(tree.lookahead_logits(k)))
        .collect();

    let mut kept = vec![pending];
    kept.extend_from_slice(&verdict.tokens[..verdict.matched]);
    backend.keep(&plan, verdict.winner, &kept)?;
    Ok(Accepted {
        tokens: verdict.tokens,
        matched: verdict.matched,
        winner: verdict.winner,
        lookahead: lookahead_out,
        rows: tree.len(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::speculative::OneModel;
    use crate::model::{Batch, CausalLm, Logits};
    use crate::sampling::SamplingParams;

    const VOCAB: usize = 16;

    /// A model whose next token after `t` is `t + 1` (mod 16), whatever came before; its
    /// cache is the token ids themselves.
    #[derive(Default)]
    struct Successor {
        cache: Vec<u32>,
    }

    impl CausalLm for Successor {
        fn forward(&mut self, batch: &Batch<'_>) -> Result<Logits> {
            let rows = batch.logit_rows.len();
            let mut data = vec![0f32; rows * VOCAB];
            for (i, &r) in batch.logit_rows.iter().enumerate() {
                data[i * VOCAB + (batch.tokens[r] as usize + 1) % VOCAB] = 1.0;
            }
            self.cache.extend_from_slice(batch.tokens);
            Ok(Logits::new(data, rows, VOCAB))
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
            1024
        }
        fn vocab_size(&self) -> usize {
            VOCAB
        }
    }

    fn run(drafts: &[Vec<u32>], max_match: usize) -> (Accepted, Vec<u32>) {
        let mut lm = Successor { cache: vec![1, 2] };
        let seq = SequenceView {
            tokens: &[1, 2, 3],
            prompt_len: 2,
        };
        let lookahead = LookaheadRows {
            tokens: vec![10, 12],
            offsets: vec![1, 2],
            sees: vec![vec![], vec![1]],
            outputs: vec![0, 2],
        };
        let sampler = Sampler::new(SamplingParams::greedy()).unwrap();
        let out = speculative_step(
            &mut OneModel(&mut lm),
            seq,
            drafts,
            &lookahead,
            &sampler,
            max_match,
        )
        .unwrap();
        (out, lm.cache)
    }

    #[test]
    fn accepts_the_longest_verified_draft_and_keeps_exactly_its_rows() {
        let drafts = vec![vec![4, 5, 9], vec![4, 5, 6], vec![7]];
        let (out, cache) = run(&drafts, 3);
        // y0 = 4; drafts 0 and 1 carry 4 5; only draft 1 carries 6; then the bonus 7.
        assert_eq!(out.tokens, vec![4, 5, 6, 7]);
        assert_eq!((out.matched, out.winner), (3, Some(1)));
        assert_eq!(
            cache,
            vec![1, 2, 3, 4, 5, 6],
            "t0 and the accepted draft rows"
        );
        // The lookahead outputs: after t0 (3) and after its row 2 (12).
        assert_eq!(out.lookahead, vec![4, 13]);
        assert_eq!(out.rows, 1 + 3 + 3 + 1 + 2);
        // At most two draft tokens: the first draft wins the tie.
        let (out, cache) = run(&drafts, 2);
        assert_eq!(out.tokens, vec![4, 5, 6]);
        assert_eq!((out.matched, out.winner), (2, Some(0)));
        assert_eq!(cache, vec![1, 2, 3, 4, 5]);
        // Nothing matches: y0 alone, only t0's row kept.
        let (out, cache) = run(&[vec![9, 9]], 3);
        assert_eq!((out.tokens, out.winner), (vec![4], None));
        assert_eq!(cache, vec![1, 2, 3]);
    }
}
