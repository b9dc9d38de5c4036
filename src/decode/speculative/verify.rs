//! Verification of a step's drafts by sample-and-match.
//!
//! The model's own choice at each position (argmax, or the seeded sample of plain decoding) is
//! computed from the row of the longest surviving candidate prefix; candidates survive while
//! their next draft token equals that choice. The result is exactly the token sequence plain
//! decoding would produce, plus how far the drafts carried it.

/// Outcome of verifying one step's candidates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    /// `y0, y1, ..., yk`: the committed tokens (k = `matched`).
    pub tokens: Vec<u32>,
    /// Draft tokens confirmed (`v[0..matched] == y0..y(matched-1)`).
    pub matched: usize,
    /// The candidate whose rows produced `y1..yk` (first one on ties).
    pub winner: Option<usize>,
}

/// `choose(c, i, committed_so_far)` returns the model's choice at the row of candidate `c`,
/// draft token `i` (its history being the committed prefix plus `committed_so_far`).
/// `max_match` limits confirmed draft tokens (N-1 normally, N-2 in reference mode).
pub fn verify(
    candidates: &[Vec<u32>],
    y0: u32,
    max_match: usize,
    choose: &mut dyn FnMut(usize, usize, &[u32]) -> u32,
) -> Verdict {
    let mut tokens = vec![y0];
    let mut alive: Vec<usize> = (0..candidates.len())
        .filter(|&c| candidates[c].first() == Some(&y0))
        .collect();
    let mut winner = None;
    let mut matched = 0;
    while matched < max_match {
        let Some(&c) = alive.first() else { break };
        // Every alive candidate has v[0..=matched] == tokens; its row `matched` predicts next.
        let y = choose(c, matched, &tokens);
        tokens.push(y);
        winner = Some(c);
        matched += 1;
        alive.retain(|&a| candidates[a].get(matched) == Some(&y));
    }
    Verdict {
        tokens,
        matched,
        winner,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A toy "model": the next token after history h is (last + 1) % 10.
    fn next_of(tokens: &[u32]) -> u32 {
        (tokens.last().unwrap() + 1) % 10
    }

    #[test]
    fn longest_prefix_wins_and_first_candidate_breaks_ties() {
        let cands = vec![vec![3, 4, 9], vec![3, 4, 5], vec![3, 4, 5], vec![7, 8, 9]];
        let mut calls = Vec::new();
        let v = verify(&cands, 3, 3, &mut |c, i, so_far| {
            calls.push((c, i));
            next_of(so_far)
        });
        assert_eq!(v.tokens, vec![3, 4, 5, 6], "N tokens: 3 drafts + bonus");
        assert_eq!(v.matched, 3);
        assert_eq!(v.winner, Some(1));
        assert_eq!(calls, vec![(0, 0), (0, 1), (1, 2)]);
    }

    #[test]
    fn reference_mode_drops_the_bonus_token() {
        let cands = vec![vec![3, 4, 5]];
        let v = verify(&cands, 3, 2, &mut |_, _, s| next_of(s));
        assert_eq!(v.tokens, vec![3, 4, 5]);
        assert_eq!(v.matched, 2);
    }

    #[test]
    fn no_match_commits_only_y0() {
        let cands = vec![vec![1, 2], vec![5, 6]];
        let v = verify(&cands, 3, 2, &mut |_, _, _| unreachable!());
        assert_eq!(
            v,
            Verdict {
                tokens: vec![3],
                matched: 0,
                winner: None
            }
        );
        let v = verify(&[], 3, 2, &mut |_, _, _| unreachable!());
        assert_eq!(v.tokens, vec![3]);
    }

    #[test]
    fn partial_match_stops_at_first_mismatch() {
        let cands = vec![vec![3, 9, 5]];
        let v = verify(&cands, 3, 3, &mut |_, _, s| next_of(s));
        assert_eq!(v.tokens, vec![3, 4]);
        assert_eq!(v.matched, 1);
        assert_eq!(v.winner, Some(0));
    }
}
