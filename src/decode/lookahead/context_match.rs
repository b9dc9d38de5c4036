//! Context-matched candidates: the continuation of the latest earlier place in the committed
//! text (prompt + output) whose last few tokens equal the sequence's last few tokens.
//!
//! The n-gram pool is keyed by the pending token alone and keeps the G most recent tuples of
//! that key, so with a small G the prompt's n-grams are soon evicted by the window's. This
//! index keeps, for every context of `min_context..=max_context` tokens, the latest end
//! position whose `arity` following tokens are committed; [`ContextIndex::lookup`] returns the
//! continuation after the longest context that matches the sequence's end (prompt lookup with
//! a multi-token key). The decoder verifies it like any pool candidate, so the output does not
//! depend on it — only how many tokens a step confirms.
//!
//! Example, arity 2, contexts of 2 tokens, committed `a b c d a b`: the context `a b` ended at
//! index 1 and was followed by `c d`, so the candidate after the final `a b` is `c d`.

use std::collections::HashMap;

/// Latest end position of every short context in the committed text.
#[derive(Debug, Clone)]
pub struct ContextIndex {
    /// Tokens per candidate (N-1).
    arity: usize,
    /// Shortest context that counts as a match.
    min_context: usize,
    /// Longest context looked up.
    max_context: usize,
    /// Context tokens → latest end index (the index of the context's last token).
    latest: HashMap<Vec<u32>, usize>,
    /// End indices below this are indexed.
    indexed: usize,
}

impl ContextIndex {
    /// Contexts of 2 and 3 tokens: one token is the pool's key already, and longer contexts
    /// rarely differ from 3 on the text of one conversation.
    pub fn new(arity: usize) -> Self {
        Self {
            arity,
            min_context: 2,
            max_context: 3,
            latest: HashMap::new(),
            indexed: 0,
        }
    }

    /// Indexes every end position of `tokens` (the whole committed text, which only grows)
    /// whose `arity` following tokens are committed.
    pub fn extend(&mut self, tokens: &[u32]) {
        if self.arity == 0 {
            return;
        }
        let complete = tokens.len().saturating_sub(self.arity);
        for end in self.indexed..complete {
            for k in self.min_context..=self.max_context.min(end + 1) {
                self.latest.insert(tokens[end + 1 - k..=end].to_vec(), end);
            }
        }
        self.indexed = self.indexed.max(complete);
    }

    /// The `arity` tokens that followed the latest earlier occurrence of the longest matching
    /// context of `tokens`'s end, if any (`tokens` = the committed text the index was extended
    /// with, or a longer one).
    pub fn lookup<'a>(&self, tokens: &'a [u32]) -> Option<&'a [u32]> {
        let len = tokens.len();
        (self.min_context..=self.max_context.min(len))
            .rev()
            .find_map(|k| self.latest.get(&tokens[len - k..]))
            .map(|&end| &tokens[end + 1..=end + self.arity])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The oracle: scan the text backwards for the latest end whose context matches, longest
    /// context first, with a complete continuation before the current end.
    fn brute_force(tokens: &[u32], arity: usize) -> Option<Vec<u32>> {
        let len = tokens.len();
        for k in (2..=3.min(len)).rev() {
            let ctx = &tokens[len - k..];
            for end in (k - 1..len.saturating_sub(arity)).rev() {
                if &tokens[end + 1 - k..=end] == ctx {
                    return Some(tokens[end + 1..=end + arity].to_vec());
                }
            }
        }
        None
    }

    #[test]
    fn finds_the_continuation_of_the_latest_longest_match() {
        let text = [1, 2, 3, 4, 9, 2, 3, 5, 6, 1, 2, 3];
        let mut idx = ContextIndex::new(2);
        idx.extend(&text);
        // `1 2 3` (3 tokens) ended at index 2 → `4 9`; the later `2 3` (index 6) matches only
        // 2 tokens, so the longer, earlier context wins.
        assert_eq!(idx.lookup(&text), Some(&[4, 9][..]));
        let text2 = [1, 2, 3, 4, 9, 2, 3, 5, 6, 7, 2, 3];
        let mut idx = ContextIndex::new(2);
        idx.extend(&text2);
        assert_eq!(idx.lookup(&text2), Some(&[5, 6][..]), "latest `2 3`");
        assert_eq!(idx.lookup(&[5, 5, 5, 8]), None, "no match");
    }

    #[test]
    fn agrees_with_a_brute_force_scan_as_text_is_committed_in_chunks() {
        // A pseudo-random text over a small alphabet (many repeats), committed 1-4 tokens at a
        // time as decoding steps do.
        let mut s = 12345u64;
        let text: Vec<u32> = (0..600)
            .map(|_| {
                s = s
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((s >> 33) % 5) as u32
            })
            .collect();
        for arity in [1, 3, 6] {
            let mut idx = ContextIndex::new(arity);
            let mut len = 1;
            let mut found = 0;
            while len <= text.len() {
                idx.extend(&text[..len]);
                let got = idx.lookup(&text[..len]).map(<[u32]>::to_vec);
                assert_eq!(
                    got,
                    brute_force(&text[..len], arity),
                    "arity {arity}, len {len}"
                );
                found += usize::from(got.is_some());
                len += 1 + len % 4;
            }
            assert!(found > 50, "the test text must exercise matches");
        }
    }

    #[test]
    fn incomplete_continuations_are_not_offered() {
        let mut idx = ContextIndex::new(3);
        let text = [7, 8, 1, 7, 8];
        idx.extend(&text);
        // `7 8` ended at index 1, but only 3 tokens follow it up to the end → [1, 7, 8] is
        // complete; with arity 4 it is not.
        assert_eq!(idx.lookup(&text), Some(&[1, 7, 8][..]));
        let mut idx = ContextIndex::new(4);
        idx.extend(&text);
        assert_eq!(idx.lookup(&text), None);
    }
}
