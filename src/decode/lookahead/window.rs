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
}
