//! The rows of one speculative step and who sees whom among them: the tree mask.
//!
//! Rows: the pending token `t0` (row 0), then each draft as a chain after it, then the
//! lookahead rows a drafter adds (the Jacobi window: level 0 without `t0`, then levels 1..
//! column by column). Every row sees the whole KV cache. Among the new rows, a draft token sees
//! `t0` and its own draft's prefix; a lookahead row sees `t0`, itself and the lookahead rows its
//! drafter lists ([`LookaheadRows::sees`]). For the Jacobi window that makes each row see a
//! chain of strictly consecutive positions `p, p+1, ..., pos(row)` holding one token each:
//! window level `l`, column `j` walks level 0 up to column `j`, then climbs column `j`.
//!
//! Example, a window of W=3 columns and N=3 (levels 0 and 1), one draft `c` (p = position of
//! t0):
//!
//! ```text
//!  row token pos │ t0 c0 c1 a1 a2 b0 b1 b2    a = level 0, b = level 1
//!  ──────────────┼─────────────────────────
//!   0  t0    p   │ ■                          logits: y0
//!   1  c0    p+1 │ ■  ■                       logits: verify c1, else bonus
//!   2  c1    p+2 │ ■  ■  ■                    logits: bonus token
//!   3  a1    p+1 │ ■        ■
//!   4  a2    p+2 │ ■        ■  ■
//!   5  b0    p+1 │ ■              ■           logits: new top, column 0
//!   6  b1    p+2 │ ■        ■        ■        logits: new top, column 1
//!   7  b2    p+3 │ ■        ■  ■        ■     logits: new top, column 2
//! ```
//!
//! `t0`, the drafts and the lookahead rows whose outputs a drafter reads want logits, in that
//! order. [`StepTree::share`] cuts a tree into the part one device of a group computes.

use std::ops::Range;

use crate::model::{AttentionMask, Batch};

/// Rows a drafter adds to a step whose outputs only it reads (the Jacobi window's guesses).
///
/// Rows are numbered from 1; row 0 stands for the pending token `t0`, which every row sees.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LookaheadRows {
    /// Token of rows `1..`.
    pub tokens: Vec<u32>,
    /// Position of rows `1..` after the pending token's.
    pub offsets: Vec<u32>,
    /// For rows `1..`, the earlier rows (numbers ≥ 1, ascending) each one sees besides `t0`
    /// and itself: all of its ancestors, so that what a row sees is closed under seeing.
    pub sees: Vec<Vec<usize>>,
    /// Rows (0 = `t0`) whose outputs the drafter reads back, in order.
    pub outputs: Vec<usize>,
}

impl LookaheadRows {
    /// Rows besides `t0`.
    pub fn len(&self) -> usize {
        self.tokens.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }

    /// The rows needed for the outputs `outputs` (a range of [`Self::outputs`]): those outputs
    /// and every row they see, in their order here, renumbered.
    pub fn restrict(&self, outputs: Range<usize>) -> LookaheadRows {
        let mut needed = vec![false; self.len() + 1];
        for &o in &self.outputs[outputs.clone()] {
            needed[o] = true;
            if o > 0 {
                for &s in &self.sees[o - 1] {
                    needed[s] = true;
                }
            }
        }
        needed[0] = true;
        // Old row number → new row number.
        let mut renumber = vec![0usize; self.len() + 1];
        let mut next = 1;
        for r in 1..=self.len() {
            if needed[r] {
                renumber[r] = next;
                next += 1;
            }
        }
        let kept = || (1..=self.len()).filter(|&r| needed[r]);
        LookaheadRows {
            tokens: kept().map(|r| self.tokens[r - 1]).collect(),
            offsets: kept().map(|r| self.offsets[r - 1]).collect(),
            sees: kept()
                .map(|r| self.sees[r - 1].iter().map(|&s| renumber[s]).collect())
                .collect(),
            outputs: self.outputs[outputs].iter().map(|&o| renumber[o]).collect(),
        }
    }
}

/// Rows, positions, mask and wanted logits of one step.
#[derive(Debug, Clone)]
pub struct StepTree {
    pub tokens: Vec<u32>,
    pub positions: Vec<u32>,
    pub mask: AttentionMask,
    /// Batch rows whose logits are computed: `t0`, every draft token, the lookahead outputs.
    pub logit_rows: Vec<usize>,
    /// Batch row of each draft's first token.
    draft_starts: Vec<usize>,
    /// Index (into the logits) of the first lookahead output.
    lookahead_start: usize,
    lookahead_outputs: usize,
}

impl StepTree {
    /// Lays out `pending` at position `p`, the `drafts` (each at least one token) as chains
    /// after it, and `lookahead` rows.
    pub fn new(pending: u32, p: u32, drafts: &[Vec<u32>], lookahead: &LookaheadRows) -> Self {
        let draft_starts: Vec<usize> = drafts
            .iter()
            .scan(1, |row, d| {
                let start = *row;
                *row += d.len();
                Some(start)
            })
            .collect();
        let base = 1 + drafts.iter().map(Vec::len).sum::<usize>();
        // Batch row of lookahead row `r` (0 = t0).
        let la_row = |r: usize| if r == 0 { 0 } else { base + r - 1 };
        let q = base + lookahead.len();
        let mut tokens = vec![0u32; q];
        let mut positions = vec![0u32; q];
        let mut visible = vec![false; q * q];
        let mut see = |r: usize, c: usize| visible[r * q + c] = true;

        tokens[0] = pending;
        positions[0] = p;
        see(0, 0);
        for (c, draft) in drafts.iter().enumerate() {
            for (i, &t) in draft.iter().enumerate() {
                let r = draft_starts[c] + i;
                tokens[r] = t;
                positions[r] = p + 1 + i as u32;
                see(r, 0);
                for k in 0..=i {
                    see(r, draft_starts[c] + k);
                }
            }
        }
        for i in 0..lookahead.len() {
            let r = la_row(i + 1);
            tokens[r] = lookahead.tokens[i];
            positions[r] = p + lookahead.offsets[i];
            see(r, 0);
            see(r, r);
            for &s in &lookahead.sees[i] {
                see(r, la_row(s));
            }
        }
        let mut logit_rows: Vec<usize> = (0..base).collect();
        logit_rows.extend(lookahead.outputs.iter().map(|&o| la_row(o)));
        Self {
            tokens,
            positions,
            mask: AttentionMask::Block { q, visible },
            logit_rows,
            draft_starts,
            lookahead_start: base,
            lookahead_outputs: lookahead.outputs.len(),
        }
    }

    /// One device's part of the step of `pending`, `drafts` and `lookahead` under Lookahead
    /// Parallelism: `t0`, the drafts `drafts_range` and the lookahead outputs
    /// `outputs_range` with every row they see. Its [`Self::draft_logits`] `(c, i)` is then
    /// draft `drafts_range.start + c`, its [`Self::lookahead_logits`] `(k)` output
    /// `outputs_range.start + k`.
    pub fn share(
        pending: u32,
        p: u32,
        drafts: &[Vec<u32>],
        lookahead: &LookaheadRows,
        drafts_range: Range<usize>,
        outputs_range: Range<usize>,
    ) -> Self {
        Self::new(
            pending,
            p,
            &drafts[drafts_range],
            &lookahead.restrict(outputs_range),
        )
    }

    pub fn len(&self) -> usize {
        self.tokens.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }

    pub fn batch(&self) -> Batch<'_> {
        Batch {
            tokens: &self.tokens,
            positions: &self.positions,
            mask: &self.mask,
            logit_rows: &self.logit_rows,
        }
    }

    /// Index (into the returned logits) of the `t0` row.
    pub fn t0_logits(&self) -> usize {
        0
    }

    /// Index (into the returned logits) of draft `c`, token `i`; also its batch row.
    pub fn draft_logits(&self, c: usize, i: usize) -> usize {
        self.draft_starts[c] + i
    }

    /// Index (into the returned logits) of the `k`-th lookahead output.
    pub fn lookahead_logits(&self, k: usize) -> usize {
        self.lookahead_start + k
    }

    /// Lookahead outputs of the step.
    pub fn lookahead_outputs(&self) -> usize {
        self.lookahead_outputs
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seen(mask: &AttentionMask, r: usize) -> Vec<usize> {
        let AttentionMask::Block { q, visible } = mask else {
            panic!("block mask expected");
        };
        (0..*q).filter(|&c| visible[r * q + c]).collect()
    }

    #[test]
    fn drafts_only_tree_is_t0_plus_independent_chains() {
        let drafts = vec![vec![5u32, 6, 7], vec![8, 9, 10]];
        let p = 20u32;
        let l = StepTree::new(3, p, &drafts, &LookaheadRows::default());
        assert_eq!(l.tokens, vec![3, 5, 6, 7, 8, 9, 10]);
        assert_eq!(l.positions, vec![20, 21, 22, 23, 21, 22, 23]);
        assert_eq!(l.lookahead_outputs(), 0);
        assert_eq!(l.logit_rows, (0..7).collect::<Vec<_>>());
        assert_eq!(seen(&l.mask, 0), vec![0]);
        assert_eq!(seen(&l.mask, 3), vec![0, 1, 2, 3]);
        assert_eq!(
            seen(&l.mask, 5),
            vec![0, 4, 5],
            "the second chain never sees the first"
        );
        for (c, draft) in drafts.iter().enumerate() {
            for (i, &t) in draft.iter().enumerate() {
                assert_eq!(l.tokens[l.draft_logits(c, i)], t);
            }
        }
        // Chains of different lengths: each starts where the previous one ends.
        let drafts = vec![vec![5u32], vec![8, 9, 10], vec![11, 12]];
        let l = StepTree::new(3, p, &drafts, &LookaheadRows::default());
        assert_eq!(l.tokens, vec![3, 5, 8, 9, 10, 11, 12]);
        assert_eq!(l.positions, vec![20, 21, 21, 22, 23, 21, 22]);
        assert_eq!(seen(&l.mask, 1), vec![0, 1]);
        assert_eq!(seen(&l.mask, 4), vec![0, 2, 3, 4]);
        assert_eq!(seen(&l.mask, 6), vec![0, 5, 6]);
        // No drafts: a plain one-token step.
        let l = StepTree::new(3, p, &[], &LookaheadRows::default());
        assert_eq!((l.len(), l.logit_rows.clone()), (1, vec![0]));
    }

    /// Two chains of lookahead rows, `1 → 2` and `3 → 4` where 4 also sees 1; outputs 2, 4
    /// and t0.
    fn two_chains() -> LookaheadRows {
        LookaheadRows {
            tokens: vec![41, 42, 43, 44],
            offsets: vec![1, 2, 1, 2],
            sees: vec![vec![], vec![1], vec![], vec![1, 3]],
            outputs: vec![2, 4, 0],
        }
    }

    #[test]
    fn lookahead_rows_follow_the_drafts_and_see_what_they_list() {
        let l = StepTree::new(3, 10, &[vec![7, 8]], &two_chains());
        assert_eq!(l.tokens, vec![3, 7, 8, 41, 42, 43, 44]);
        assert_eq!(l.positions, vec![10, 11, 12, 11, 12, 11, 12]);
        assert_eq!(seen(&l.mask, 3), vec![0, 3]);
        assert_eq!(seen(&l.mask, 4), vec![0, 3, 4]);
        assert_eq!(seen(&l.mask, 6), vec![0, 3, 5, 6]);
        // t0, the draft rows, then the outputs in the drafter's order.
        assert_eq!(l.logit_rows, vec![0, 1, 2, 4, 6, 0]);
        assert_eq!((l.lookahead_logits(0), l.lookahead_outputs()), (3, 3));
    }

    #[test]
    fn a_share_holds_its_outputs_and_every_row_they_see() {
        let rows = two_chains();
        let second = rows.restrict(1..3);
        assert_eq!(second.tokens, vec![41, 43, 44]);
        assert_eq!(second.sees, vec![vec![], vec![], vec![1, 2]]);
        assert_eq!(second.outputs, vec![3, 0]);
        let first = rows.restrict(0..1);
        assert_eq!(first.tokens, vec![41, 42]);
        assert_eq!(first.outputs, vec![2]);
        assert!(rows.restrict(2..3).is_empty(), "t0 alone");
        // The share's rows are the full step's rows, with the same tokens, positions and
        // chains.
        let drafts = vec![vec![7u32, 8], vec![9]];
        let full = StepTree::new(3, 10, &drafts, &rows);
        let share = StepTree::share(3, 10, &drafts, &rows, 1..2, 1..3);
        assert_eq!(share.tokens, vec![3, 9, 41, 43, 44]);
        assert_eq!(share.positions, vec![10, 11, 11, 11, 12]);
        assert_eq!(share.tokens[share.draft_logits(0, 0)], 9);
        let out = |t: &StepTree, k: usize| t.logit_rows[t.lookahead_logits(k)];
        assert_eq!(full.tokens[out(&full, 1)], share.tokens[out(&share, 0)]);
        assert_eq!(seen(&share.mask, 4), vec![0, 2, 3, 4]);
    }
}
