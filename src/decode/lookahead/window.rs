//! The 2D Jacobi window: N-1 levels of guesses for future tokens.
//!
//! With the pending token `t0` at position `p`, level 0 is `[t0] + levels[0]`, and column `j`
//! of level `l` sits at position `p + l + j`. Column `j` read bottom-up is a diagonal of the
//! Jacobi trajectory: `(level0[j], level1[j], ..., top[j])` at consecutive positions.
//!
//! Warm-up (as the authors do it): only level 0 exists at first, `W + N - 3` guesses wide.
//! Each warm-up step adds one level on top (the argmax of the current top level's rows, minus
//! its first element) and every existing level drops its first token, so after N-2 steps the
//! window is exactly `W` columns by N-1 levels. In steady state the window shifts down one
//! level per step: `L0 = L1[1..]`, `Ll = L(l+1)`, top = the new guesses.

use crate::decode::speculative::LookaheadRows;
use crate::sampling::uniform;

/// Guesses of future tokens, one row per level.
#[derive(Debug, Clone, PartialEq)]
pub struct JacobiWindow {
    /// `levels[0]`: level 0 without its column 0 (the pending token); `levels[l]` for l ≥ 1:
    /// all columns of level l.
    levels: Vec<Vec<u32>>,
    /// Levels a full window has (N-1).
    depth: usize,
}

impl JacobiWindow {
    /// Level 0 filled with `W + N - 3` tokens drawn from `prompt` by a seeded RNG.
    pub fn from_prompt(prompt: &[u32], window: usize, ngram: usize, seed: u64) -> Self {
        let depth = ngram - 1;
        let width = window + ngram - 3;
        let level0 = (0..width as u64)
            .map(|i| {
                let u = uniform(seed ^ 0x6c61_6465_7769_6e64, i); // "ladewind"
                prompt[((u * prompt.len() as f64) as usize).min(prompt.len() - 1)]
            })
            .collect();
        Self {
            levels: vec![level0],
            depth,
        }
    }

    /// A window with the given levels (`levels[0]` without the pending column), treated as
    /// complete: for tests and for restoring a window.
    pub fn from_levels(levels: Vec<Vec<u32>>) -> Self {
        let depth = levels.len().max(1);
        Self { levels, depth }
    }

    /// True once all N-1 levels exist (steady state).
    pub fn is_warm(&self) -> bool {
        self.levels.len() == self.depth
    }

    /// Levels present now (1 ..= N-1).
    pub fn num_levels(&self) -> usize {
        self.levels.len()
    }

    /// Columns including the pending-token column.
    pub fn columns(&self) -> usize {
        self.levels[0].len() + 1
    }

    /// Token at (`level`, `column`); column 0 of level 0 is the pending token.
    pub fn token(&self, level: usize, column: usize, pending: u32) -> u32 {
        if level == 0 {
            if column == 0 {
                pending
            } else {
                self.levels[0][column - 1]
            }
        } else {
            self.levels[level][column]
        }
    }

    /// The raw levels (level 0 without the pending column).
    pub fn levels(&self) -> &[Vec<u32>] {
        &self.levels
    }

    /// The window as rows of a step: level 0 without `t0` (columns 1..), then each level above
    /// it column by column. Column `j` of level `l` sits `l + j` positions after `t0` and sees
    /// level 0 up to column `j` and column `j` of the levels below it; the drafter reads the top
    /// level's columns back (the next Jacobi iteration).
    pub fn lookahead_rows(&self) -> LookaheadRows {
        let columns = self.columns();
        // Row number of (level, column): t0 is row 0, level 0 follows it, then each level.
        let row = |l: usize, j: usize| l * columns + j;
        let mut rows = LookaheadRows::default();
        for l in 0..self.num_levels() {
            for j in usize::from(l == 0)..columns {
                rows.tokens.push(self.token(l, j, 0));
                rows.offsets.push((l + j) as u32);
                let mut sees: Vec<usize> = (1..j + usize::from(l > 0)).collect();
                sees.extend((1..l).map(|m| row(m, j)));
                rows.sees.push(sees);
            }
        }
        let top = self.num_levels() - 1;
        rows.outputs = (0..columns).map(|j| row(top, j)).collect();
        rows
    }

    /// The n-grams of this step: for each column `j`, `(level0[j], level1[j], ..., new_top[j])`,
    /// only in steady state (earlier the diagonals are incomplete).
    pub fn ngrams(&self, pending: u32, new_top: &[u32]) -> Vec<Vec<u32>> {
        if !self.is_warm() {
            return Vec::new();
        }
        (0..self.columns())
            .map(|j| {
                let mut g: Vec<u32> = (0..self.depth).map(|l| self.token(l, j, pending)).collect();
                g.push(new_top[j]);
                g
            })
            .collect()
    }

    /// Advances after a step; `new_top[j]` is the model's choice at the top level's column j.
    pub fn advance(&mut self, new_top: &[u32]) {
        debug_assert_eq!(new_top.len(), self.columns());
        if self.is_warm() {
            // Shift down one level: L0 = L1[1..], Ll = L(l+1), top = new_top.
            if self.depth == 1 {
                self.levels[0] = new_top[1..].to_vec();
            } else {
                let l1 = self.levels.remove(1);
                self.levels[0] = l1[1..].to_vec();
                self.levels.push(new_top.to_vec());
            }
        } else {
            // Warm-up: every level drops its first token, a new level goes on top.
            for level in self.levels.iter_mut() {
                level.remove(0);
            }
            self.levels.push(new_top[1..].to_vec());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warm_up_takes_n_minus_2_steps_and_ends_w_by_n_minus_1() {
        for (w, n) in [(1usize, 2usize), (1, 3), (4, 3), (5, 5), (3, 7)] {
            let prompt: Vec<u32> = (100..110).collect();
            let mut win = JacobiWindow::from_prompt(&prompt, w, n, 3);
            let mut steps = 0;
            while !win.is_warm() {
                let top: Vec<u32> = (0..win.columns() as u32).collect();
                win.advance(&top);
                steps += 1;
            }
            assert_eq!(steps, n - 2, "W={w} N={n}");
            assert_eq!(win.columns(), w);
            assert_eq!(win.levels()[0].len(), w - 1);
            for l in 1..n - 1 {
                assert_eq!(win.levels()[l].len(), w);
            }
        }
    }

    #[test]
    fn steady_shift_moves_every_level_down_one() {
        let prompt = [9u32; 4];
        let mut win = JacobiWindow::from_prompt(&prompt, 3, 4, 0);
        win.levels = vec![vec![1, 2], vec![10, 11, 12], vec![20, 21, 22]];
        assert!(win.is_warm());
        let grams = win.ngrams(0, &[30, 31, 32]);
        assert_eq!(
            grams,
            vec![
                vec![0, 10, 20, 30],
                vec![1, 11, 21, 31],
                vec![2, 12, 22, 32]
            ]
        );
        win.advance(&[30, 31, 32]);
        assert_eq!(
            win.levels,
            vec![vec![11, 12], vec![20, 21, 22], vec![30, 31, 32]]
        );
    }

    #[test]
    fn init_is_seeded_and_uses_prompt_tokens() {
        let prompt: Vec<u32> = (500..540).collect();
        let a = JacobiWindow::from_prompt(&prompt, 6, 5, 42);
        let b = JacobiWindow::from_prompt(&prompt, 6, 5, 42);
        let c = JacobiWindow::from_prompt(&prompt, 6, 5, 43);
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_eq!(a.levels()[0].len(), 6 + 5 - 3);
        assert!(a.levels()[0].iter().all(|t| prompt.contains(t)));
    }

    /// Brute force from the definition (spec E5/E6): in the step of a window of `w` columns
    /// and `n - 1` levels after `warm_steps` warm-up steps, with `drafts` drafts, a row sees
    /// exactly one new token at each position `p..=pos(row)`, namely the tokens of its own
    /// chain, and nothing else.
    fn brute_force_chain_check(w: usize, n: usize, drafts: usize, warm_steps: usize) {
        use crate::decode::speculative::StepTree;
        use crate::model::AttentionMask;
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
        let candidates: Vec<Vec<u32>> = (0..drafts)
            .map(|c| (0..n - 1).map(|i| (3000 + 10 * c + i) as u32).collect())
            .collect();
        let p = 50u32;
        let layout = StepTree::new(7, p, &candidates, &win.lookahead_rows());
        let q = layout.len();
        let (cols, levels) = (win.columns(), win.num_levels());
        assert_eq!(q, drafts * (n - 1) + cols + (levels - 1) * cols);
        if win.is_warm() {
            assert_eq!(q, (w + drafts) * (n - 1), "steady-state batch = (W+C)(N-1)");
        }
        // Reconstruct each row's identity: ("draft", c, i) or ("win", l, j).
        let mut who = vec![None; q];
        for (c, cand) in candidates.iter().enumerate() {
            for (i, &tok) in cand.iter().enumerate() {
                let r = layout.draft_logits(c, i);
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
            panic!("a step uses a block mask");
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
                "row {r} ({kind},{a},{b}) W={w} N={n} C={drafts}"
            );
            // Exactly one token per position p..=pos(row), consecutive.
            let mut pos: Vec<u32> = seen.iter().map(|&c| layout.positions[c]).collect();
            pos.sort();
            let want: Vec<u32> = (p..=layout.positions[r]).collect();
            assert_eq!(pos, want, "row {r} chain positions");
        }
        // Logits: t0, all draft rows, then the top level's columns.
        assert_eq!(layout.logit_rows.len(), 1 + drafts * (n - 1) + cols);
        for j in 0..cols {
            let r = layout.logit_rows[layout.lookahead_logits(j)];
            assert_eq!(
                who[r],
                Some((2, levels - 1, j)),
                "output {j} is the top level"
            );
        }
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

    /// The shares' rows together are exactly the single-device step's rows: same
    /// (token, position) for every column's top level and every draft token, each computed by
    /// exactly one device, and each share's level-0 prefix and columns are those its outputs
    /// see.
    #[test]
    fn shares_partition_the_full_step() {
        use crate::decode::speculative::{Partition, StepTree};
        for &(w, n, g, k) in &[
            (5, 4, 3, 2),
            (3, 3, 0, 3),
            (1, 2, 2, 3),
            (8, 5, 7, 3),
            (2, 4, 5, 4),
        ] {
            let prompt: Vec<u32> = (100..140).collect();
            let mut win = JacobiWindow::from_prompt(&prompt, w, n, 9);
            for warm in 0..n {
                let drafts: Vec<Vec<u32>> = (0..g)
                    .map(|c| (0..n - 1).map(|i| (500 + 10 * c + i) as u32).collect())
                    .collect();
                let rows = win.lookahead_rows();
                let full = StepTree::new(7, 60, &drafts, &rows);
                let parts = Partition::new(win.columns(), g, k);
                let mut tops = Vec::new();
                let mut draft_rows = Vec::new();
                for d in 0..k {
                    let (dr, out) = (parts.drafts[d].clone(), parts.outputs[d].clone());
                    let share = StepTree::share(7, 60, &drafts, &rows, dr.clone(), out.clone());
                    assert_eq!(share.tokens[share.t0_logits()], 7);
                    assert_eq!(share.lookahead_outputs(), out.len());
                    // t0, the drafts, level 0 up to the last column, the columns above it.
                    let levels = win.num_levels();
                    let level0 = if out.is_empty() { 0 } else { out.end - 1 };
                    let above = if levels > 1 { out.len() } else { 0 };
                    let want = 1 + dr.len() * (n - 1) + level0 + (levels - 1) * above;
                    assert_eq!(share.len(), want, "W={w} N={n} K={k} device {d}");
                    for j in 0..share.lookahead_outputs() {
                        let r = share.logit_rows[share.lookahead_logits(j)];
                        tops.push((out.start + j, share.tokens[r], share.positions[r]));
                    }
                    for (local, c) in dr.enumerate() {
                        for i in 0..n - 1 {
                            let r = share.draft_logits(local, i);
                            draft_rows.push((c, i, share.tokens[r], share.positions[r]));
                        }
                    }
                }
                let want_tops: Vec<_> = (0..full.lookahead_outputs())
                    .map(|j| {
                        let r = full.logit_rows[full.lookahead_logits(j)];
                        (j, full.tokens[r], full.positions[r])
                    })
                    .collect();
                assert_eq!(tops, want_tops, "W={w} N={n} K={k} warm={warm}");
                let want_drafts: Vec<_> = (0..g)
                    .flat_map(|c| (0..n - 1).map(move |i| (c, i)))
                    .map(|(c, i)| {
                        let r = full.draft_logits(c, i);
                        (c, i, full.tokens[r], full.positions[r])
                    })
                    .collect();
                assert_eq!(draft_rows, want_drafts);
                let top: Vec<u32> = (0..win.columns() as u32).map(|x| 900 + x).collect();
                if win.is_warm() {
                    break;
                }
                win.advance(&top);
            }
        }
    }
}
