//! The batch of one lookahead step: which token sits in which row, at which position, and who
//! sees whom.
//!
//! Rows: the pending token `t0`, then the candidates (N-1 tokens each with a window; without
//! one their lengths may differ), then the window (level 0 without `t0`, then levels 1.. column
//! by column). Every row sees the whole KV cache; among
//! the new rows, each one sees a chain of strictly consecutive positions `p, p+1, ..., pos(row)`
//! holding one token each: a candidate sees `t0` and its own prefix; window level `l`,
//! column `j` walks level 0 up to column `j`, then climbs column `j`.
//!
//! Example, W=3, N=3 (levels 0 and 1), one candidate `c` (p = position of t0):
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

use super::window::JacobiWindow;
use crate::model::{AttentionMask, Batch};

/// Rows, positions, mask and wanted logits of one step.
#[derive(Debug, Clone)]
pub struct StepLayout {
    pub tokens: Vec<u32>,
    pub positions: Vec<u32>,
    pub mask: AttentionMask,
    /// Batch rows whose logits are computed: `t0`, every candidate token, the top level.
    pub logit_rows: Vec<usize>,
    /// Batch row of each candidate's first token.
    candidate_starts: Vec<usize>,
    /// Batch row of the window's top level, column `first` (after the last candidate).
    top_start: usize,
    top_columns: usize,
}

impl StepLayout {
    /// Lays out `pending` at position `p`, `candidates` (each `arity` tokens) and `window`.
    pub fn build(pending: u32, p: u32, window: &JacobiWindow, candidates: &[Vec<u32>]) -> Self {
        Self::lay_out(pending, p, Some(window), candidates, 0..window.columns())
    }

    /// One device's share of a step under Lookahead Parallelism: `pending`, `candidates` (this
    /// device's slice) and the window columns `columns` at levels 1.. (plus level 0 up to the
    /// last of them, since level-0 attention runs causally across columns). [`Self::top_logits`]
    /// `(j)` is then column `columns.start + j`. An empty range lays out no window rows.
    pub fn build_share(
        pending: u32,
        p: u32,
        window: &JacobiWindow,
        candidates: &[Vec<u32>],
        columns: std::ops::Range<usize>,
    ) -> Self {
        let columns = if columns.is_empty() {
            0..0
        } else {
            columns.start..columns.end.min(window.columns())
        };
        Self::lay_out(pending, p, Some(window), candidates, columns)
    }

    /// Rows of the whole (single-device) step for `window` and `candidates` candidates of
    /// `arity` tokens, without building it.
    pub fn full_len(window: &JacobiWindow, candidates: usize, arity: usize) -> usize {
        1 + candidates * arity
            + (window.columns() - 1)
            + (window.num_levels() - 1) * window.columns()
    }

    /// Lays out `pending` at position `p` and `candidates` only, with no Jacobi window (prompt
    /// lookup): the rows are `t0` and the candidate chains (of any lengths, each at least one
    /// token), [`Self::top_columns`] is 0.
    pub fn candidates_only(pending: u32, p: u32, candidates: &[Vec<u32>]) -> Self {
        Self::lay_out(pending, p, None, candidates, 0..1)
    }

    fn lay_out(
        pending: u32,
        p: u32,
        window: Option<&JacobiWindow>,
        candidates: &[Vec<u32>],
        columns: std::ops::Range<usize>,
    ) -> Self {
        // Without a window only level 0, column 0 (the pending token) remains. Level 0 is laid
        // out for columns `0..cols`, the levels above it for `columns` only (`upper` of them).
        let cols = columns.end.max(1);
        let upper = columns.len();
        let first = columns.start;
        let levels = window.map_or(1, JacobiWindow::num_levels);
        let window_token = |l: usize, j: usize| window.map_or(pending, |w| w.token(l, j, pending));
        let candidate_starts: Vec<usize> = candidates
            .iter()
            .scan(1, |row, c| {
                let start = *row;
                *row += c.len();
                Some(start)
            })
            .collect();
        let cand_row = |c: usize, i: usize| candidate_starts[c] + i;
        let base0 = 1 + candidates.iter().map(Vec::len).sum::<usize>();
        let win_row = |l: usize, j: usize| -> usize {
            match (l, j) {
                (0, 0) => 0,
                (0, j) => base0 + j - 1,
                (l, j) => base0 + (cols - 1) + (l - 1) * upper + (j - first),
            }
        };
        let q = base0 + (cols - 1) + (levels - 1) * upper;
        let mut tokens = vec![0u32; q];
        let mut positions = vec![0u32; q];
        let mut visible = vec![false; q * q];
        let mut see = |r: usize, c: usize| visible[r * q + c] = true;

        tokens[0] = pending;
        positions[0] = p;
        see(0, 0);
        for (c, cand) in candidates.iter().enumerate() {
            for (i, &t) in cand.iter().enumerate() {
                let r = cand_row(c, i);
                tokens[r] = t;
                positions[r] = p + 1 + i as u32;
                see(r, 0);
                for k in 0..=i {
                    see(r, cand_row(c, k));
                }
            }
        }
        for l in 0..levels {
            let span = if l == 0 { 0..cols } else { columns.clone() };
            for j in span {
                let r = win_row(l, j);
                tokens[r] = window_token(l, j);
                positions[r] = p + (l + j) as u32;
                for k in 0..=j {
                    see(r, win_row(0, k));
                }
                for m in 1..=l {
                    see(r, win_row(m, j));
                }
            }
        }
        let top = levels - 1;
        let top_columns = if window.is_some() { upper } else { 0 };
        let mut logit_rows: Vec<usize> = (0..base0).collect();
        logit_rows.extend((first..first + top_columns).map(|j| win_row(top, j)));
        Self {
            tokens,
            positions,
            mask: AttentionMask::Block { q, visible },
            logit_rows,
            candidate_starts,
            top_start: base0,
            top_columns,
        }
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

    /// Index (into the returned logits) of candidate `c`, token `i`; also its batch row.
    pub fn candidate_logits(&self, c: usize, i: usize) -> usize {
        self.candidate_starts[c] + i
    }

    /// Index (into the returned logits) of the top level's column `j` (of a share: its `j`-th
    /// column).
    pub fn top_logits(&self, j: usize) -> usize {
        self.top_start + j
    }

    pub fn top_columns(&self) -> usize {
        self.top_columns
    }

    /// A full step of a warm window of `w` columns and `n - 1` levels with `g` candidates, at
    /// position `past`, filled with arbitrary (deterministic) token ids below `vocab`: the shape
    /// and mask of a real step, for timing forward passes.
    pub fn synthetic(w: usize, n: usize, g: usize, past: usize, vocab: usize) -> Self {
        let vocab = vocab.max(1);
        let id = |i: usize| crate::decode::auto::timing_id(i, vocab);
        let candidates: Vec<Vec<u32>> = (0..g)
            .map(|c| (0..n - 1).map(|i| id(past + 97 * c + i)).collect())
            .collect();
        if w == 0 {
            return Self::candidates_only(id(past), past as u32, &candidates);
        }
        let mut levels = vec![(1..w).map(|j| id(past + j)).collect::<Vec<u32>>()];
        levels.extend((1..n - 1).map(|l| (0..w).map(|j| id(past + 31 * l + j)).collect()));
        let window = JacobiWindow::from_levels(levels);
        Self::build(id(past), past as u32, &window, &candidates)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Brute force from the definition (spec E5/E6): a row sees exactly one new token at each
    /// position `p..=pos(row)`, namely the tokens of its own chain, and nothing else.
    fn brute_force_chain_check(w: usize, n: usize, cands: usize, warm_steps: usize) {
        let prompt: Vec<u32> = (1000..1040).collect();
        let mut win = JacobiWindow::from_prompt(&prompt, w, n, 1);
        for s in 0..warm_steps {
            if win.is_warm() {
                break;
            }
            let top: Vec<u32> = (0..win.columns() as u32)
                .map(|x| 2000 + 100 * s as u32 + x)
                .collect();
            win.advance(&top);
        }
        let candidates: Vec<Vec<u32>> = (0..cands)
            .map(|c| (0..n - 1).map(|i| (3000 + 10 * c + i) as u32).collect())
            .collect();
        let p = 50u32;
        let layout = StepLayout::build(7, p, &win, &candidates);
        let q = layout.len();
        let (cols, levels) = (win.columns(), win.num_levels());
        assert_eq!(q, cands * (n - 1) + cols + (levels - 1) * cols);
        if win.is_warm() {
            assert_eq!(q, (w + cands) * (n - 1), "steady-state batch = (W+C)(N-1)");
        }
        // Reconstruct each row's identity: ("cand", c, i) or ("win", l, j).
        let mut who = vec![None; q];
        for (c, cand) in candidates.iter().enumerate() {
            for (i, &tok) in cand.iter().enumerate() {
                let r = layout.candidate_logits(c, i);
                assert_eq!(layout.tokens[r], tok);
                assert_eq!(layout.positions[r], p + 1 + i as u32);
                who[r] = Some((1usize, c, i));
            }
        }
        for l in 0..levels {
            for j in 0..cols {
                let r = (0..q)
                    .find(|&r| {
                        who[r].is_none()
                            && layout.tokens[r] == win.token(l, j, 7)
                            && layout.positions[r] == p + (l + j) as u32
                            && (l > 0 || j > 0 || r == 0)
                    })
                    .expect("window token present at its position");
                who[r] = Some((2, l, j));
            }
        }
        assert!(who.iter().all(Option::is_some), "every row accounted for");
        let AttentionMask::Block { visible, .. } = &layout.mask else {
            panic!("lookahead uses a block mask");
        };
        for r in 0..q {
            let (kind, a, b) = who[r].unwrap();
            // The chain by definition.
            let chain: Vec<(usize, usize, usize)> = if kind == 1 {
                let mut v = vec![(2, 0, 0)];
                v.extend((0..=b).map(|k| (1, a, k)));
                v
            } else {
                let mut v: Vec<_> = (0..=b).map(|k| (2, 0, k)).collect();
                v.extend((1..=a).map(|m| (2, m, b)));
                v
            };
            let seen: Vec<usize> = (0..q).filter(|&c| visible[r * q + c]).collect();
            let mut expected: Vec<usize> = chain
                .iter()
                .map(|id| (0..q).find(|&x| who[x] == Some(*id)).unwrap())
                .collect();
            expected.sort();
            assert_eq!(
                seen, expected,
                "row {r} ({kind},{a},{b}) W={w} N={n} C={cands}"
            );
            // Exactly one token per position p..=pos(row), consecutive.
            let mut pos: Vec<u32> = seen.iter().map(|&c| layout.positions[c]).collect();
            pos.sort();
            let want: Vec<u32> = (p..=layout.positions[r]).collect();
            assert_eq!(pos, want, "row {r} chain positions");
        }
        // Logits: t0, all candidate rows, then the top level's columns.
        assert_eq!(layout.logit_rows.len(), 1 + cands * (n - 1) + cols);
    }

    #[test]
    fn candidates_only_layout_is_t0_plus_independent_chains() {
        let cands = vec![vec![5u32, 6, 7], vec![8, 9, 10]];
        let p = 20u32;
        let l = StepLayout::candidates_only(3, p, &cands);
        assert_eq!(l.tokens, vec![3, 5, 6, 7, 8, 9, 10]);
        assert_eq!(l.positions, vec![20, 21, 22, 23, 21, 22, 23]);
        assert_eq!(l.top_columns(), 0);
        assert_eq!(l.logit_rows, (0..7).collect::<Vec<_>>());
        let AttentionMask::Block { q, visible } = &l.mask else {
            panic!("block mask expected");
        };
        let seen = |r: usize| -> Vec<usize> { (0..*q).filter(|&c| visible[r * q + c]).collect() };
        assert_eq!(seen(0), vec![0]);
        assert_eq!(seen(3), vec![0, 1, 2, 3]);
        assert_eq!(
            seen(5),
            vec![0, 4, 5],
            "the second chain never sees the first"
        );
        for (c, cand) in cands.iter().enumerate() {
            for (i, &t) in cand.iter().enumerate() {
                assert_eq!(l.tokens[l.candidate_logits(c, i)], t);
            }
        }
        // Chains of different lengths: each starts where the previous one ends.
        let cands = vec![vec![5u32], vec![8, 9, 10], vec![11, 12]];
        let l = StepLayout::candidates_only(3, p, &cands);
        assert_eq!(l.tokens, vec![3, 5, 8, 9, 10, 11, 12]);
        assert_eq!(l.positions, vec![20, 21, 21, 22, 23, 21, 22]);
        assert_eq!(l.logit_rows, (0..7).collect::<Vec<_>>());
        let AttentionMask::Block { q, visible } = &l.mask else {
            panic!("block mask expected");
        };
        let seen = |r: usize| -> Vec<usize> { (0..*q).filter(|&c| visible[r * q + c]).collect() };
        assert_eq!(seen(1), vec![0, 1]);
        assert_eq!(seen(4), vec![0, 2, 3, 4]);
        assert_eq!(seen(6), vec![0, 5, 6]);
        for (c, cand) in cands.iter().enumerate() {
            for (i, &t) in cand.iter().enumerate() {
                assert_eq!(l.tokens[l.candidate_logits(c, i)], t);
            }
        }
        // No candidates: a plain one-token step.
        let l = StepLayout::candidates_only(3, p, &[]);
        assert_eq!((l.len(), l.logit_rows.clone()), (1, vec![0]));
    }

    #[test]
    fn mask_and_positions_match_brute_force_definition() {
        for &(w, n, c) in &[
            (1, 2, 0),
            (1, 2, 3),
            (3, 3, 1),
            (4, 3, 4),
            (5, 5, 2),
            (2, 7, 3),
            (15, 5, 15),
        ] {
            for warm in [0, 1, 2, 10] {
                brute_force_chain_check(w, n, c, warm);
            }
        }
    }
}
