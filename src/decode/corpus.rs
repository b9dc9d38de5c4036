//! Drafts from a corpus of the model's own earlier text: the most frequent follower of the
//! longest matching context, token by token.
//!
//! With W = 0 a step drafts from the committed text (prompt + output) only, and about 40 % of
//! the steps find nothing there: the pending token has not occurred yet (many more find only
//! its latest occurrence). A small model's text is formulaic across requests (the same
//! openings, code idioms, list markers), so what it wrote for other prompts predicts many of
//! those steps. The corpus is a set of token texts (typically the model's greedy outputs on
//! prompts unrelated to the ones being served, or on prompts it wrote itself, see `lade
//! draft-corpus`); this index keeps, for every context of 1 to [`ORDER`] tokens in it, the
//! follower seen most often. A draft extends the sequence by that follower of its longest
//! indexed context, then repeats from the extended sequence (a back-off n-gram model, as
//! llama.cpp's lookup cache). The decoder verifies a corpus draft like any candidate, so the
//! output never depends on the corpus — only how many tokens a step confirms.
//!
//! Example, texts `a b c` and `x b c`, `a b d`: after `... a b` the 2-token context `a b` was
//! followed by `c` once and `d` once; ties go to the follower seen first, so the draft starts
//! with `c`, and `b c` then continues it.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use rayon::slice::ParallelSliceMut;

/// Longest context indexed, in tokens. Six tokens tell a code text's `    return` from a
/// chat text's; with four, the chat majority of a mixed corpus wins short contexts in code.
pub const ORDER: usize = 6;

/// The key of a context: a 64-bit hash of its tokens, read backwards from its last one (so
/// the keys of a position's 1- to ORDER-token contexts are one running hash). Two contexts
/// sharing a key (about one pair in 10^7 for a million contexts) would merge their
/// followers: a worse draft, never a wrong output, since drafts are verified.
type ContextKey = u64;

/// The key of the context `context[..]` extended backwards by `token`.
fn extend_key(key: ContextKey, token: u32) -> ContextKey {
    // splitmix64's finaliser over the running key and the token.
    let mut z = key ^ (u64::from(token) + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The key of the empty context, the start of every running key.
const EMPTY_KEY: ContextKey = 0x6C61_6465_636F_7270; // "ladecorp"

/// The keys of the 1- to `ORDER`-token contexts that end `tokens`, shortest first.
fn context_keys(tokens: &[u32]) -> impl Iterator<Item = ContextKey> + '_ {
    tokens.iter().rev().take(ORDER).scan(EMPTY_KEY, |key, &t| {
        *key = extend_key(*key, t);
        Some(*key)
    })
}

/// Keys are hashes already: the map uses them as they are.
#[derive(Debug, Clone, Copy, Default)]
struct KeyIsHash(u64);

impl Hasher for KeyIsHash {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

/// The index of a draft corpus (see the module docs).
#[derive(Debug, Clone, Default)]
pub struct DraftCorpus {
    /// The most frequent follower of each context (the first seen on ties).
    best: HashMap<ContextKey, u32, BuildHasherDefault<KeyIsHash>>,
    texts: usize,
    tokens: usize,
}

impl DraftCorpus {
    /// Indexes `texts` (token sequences; each is a separate text: no context spans two).
    pub fn from_texts<'a>(texts: impl IntoIterator<Item = &'a [u32]>) -> Self {
        // Every (context, follower, position) of the corpus, sorted by context and follower:
        // then each run is one follower's count and first position, and each context's runs
        // are side by side.
        let mut seen: Vec<(ContextKey, u32, u32)> = Vec::new();
        let (mut n_texts, mut n_tokens) = (0, 0);
        for text in texts {
            n_texts += 1;
            for i in 1..text.len() {
                let at = (n_tokens + i) as u32;
                seen.extend(context_keys(&text[..i]).map(|k| (k, text[i], at)));
            }
            n_tokens += text.len();
        }
        seen.par_sort_unstable();
        let mut best = HashMap::default();
        for context in seen.chunk_by(|a, b| a.0 == b.0) {
            // (count, first position, follower) of the best follower of this context.
            let mut top = (0usize, u32::MAX, 0u32);
            for run in context.chunk_by(|a, b| a.1 == b.1) {
                // Sorted by position within the run: its first is where it was seen first.
                let candidate = (run.len(), run[0].2, run[0].1);
                if candidate.0 > top.0 || (candidate.0 == top.0 && candidate.1 < top.1) {
                    top = candidate;
                }
            }
            best.insert(context[0].0, top.2);
        }
        best.shrink_to_fit();
        Self {
            best,
            texts: n_texts,
            tokens: n_tokens,
        }
    }

    /// Texts indexed.
    pub fn texts(&self) -> usize {
        self.texts
    }

    /// Tokens indexed.
    pub fn tokens(&self) -> usize {
        self.tokens
    }

    /// Contexts indexed.
    pub fn contexts(&self) -> usize {
        self.best.len()
    }

    /// The most frequent follower of the longest indexed context that `tokens` ends with, and
    /// that context's length.
    pub fn next(&self, tokens: &[u32]) -> Option<(u32, usize)> {
        let mut keys = [EMPTY_KEY; ORDER];
        let mut n = 0;
        for (slot, k) in keys.iter_mut().zip(context_keys(tokens)) {
            *slot = k;
            n += 1;
        }
        (0..n)
            .rev()
            .find_map(|i| self.best.get(&keys[i]).map(|&t| (t, i + 1)))
    }

    /// Up to `len` tokens that the corpus predicts after `tokens`, each the [`Self::next`] of
    /// the sequence extended by the ones before it. Empty when the last token never occurred
    /// in the corpus with a follower.
    pub fn draft(&self, tokens: &[u32], len: usize) -> Vec<u32> {
        let mut tail: Vec<u32> = tokens[tokens.len().saturating_sub(ORDER)..].to_vec();
        let mut out = Vec::with_capacity(len);
        while out.len() < len {
            let Some((t, _)) = self.next(&tail) else {
                break;
            };
            out.push(t);
            tail.push(t);
            if tail.len() > ORDER {
                tail.remove(0);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::test_rng::Lcg;

    /// The oracle: scan every text for every occurrence of the longest context (ORDER..1
    /// tokens) that has a follower, count followers, take the most frequent (first seen on
    /// ties).
    fn brute_next(texts: &[Vec<u32>], tokens: &[u32]) -> Option<(u32, usize)> {
        for k in (1..=ORDER.min(tokens.len())).rev() {
            let ctx = &tokens[tokens.len() - k..];
            let mut seen: Vec<(u32, u32)> = Vec::new();
            for t in texts {
                for i in k..t.len() {
                    if &t[i - k..i] == ctx {
                        match seen.iter_mut().find(|(x, _)| *x == t[i]) {
                            Some((_, n)) => *n += 1,
                            None => seen.push((t[i], 1)),
                        }
                    }
                }
            }
            if let Some(max) = seen.iter().map(|s| s.1).max() {
                return seen.iter().find(|s| s.1 == max).map(|s| (s.0, k));
            }
        }
        None
    }

    fn random_texts(seed: u64, n: usize, len: usize, alphabet: u64) -> Vec<Vec<u32>> {
        let mut rng = Lcg(seed);
        (0..n)
            .map(|_| {
                (0..len)
                    .map(|_| rng.below(alphabet as usize) as u32)
                    .collect()
            })
            .collect()
    }

    #[test]
    fn the_next_token_agrees_with_a_brute_force_count() {
        let texts = random_texts(7, 6, 120, 6);
        let corpus = DraftCorpus::from_texts(texts.iter().map(Vec::as_slice));
        assert_eq!(corpus.texts(), 6);
        assert_eq!(corpus.tokens(), 720);
        // Longer than ORDER, so that every context length is tried; symbol 6 never occurs in
        // the corpus. Random queries rarely repeat 6 tokens of it: stretches of the corpus
        // with a random token in front are queries too.
        let mut queries = random_texts(8, 200, ORDER + 2, 7);
        let fronts = random_texts(9, 1, 60, 7).remove(0);
        for (i, &front) in fronts.iter().enumerate() {
            let text = &texts[i % texts.len()];
            let at = (i * 17) % (text.len() - ORDER);
            queries.push([&[front][..], &text[at..at + ORDER]].concat());
        }
        let (mut by_order, mut misses) = ([0usize; ORDER + 1], 0);
        for q in &queries {
            for end in 1..=q.len() {
                let got = corpus.next(&q[..end]);
                assert_eq!(got, brute_next(&texts, &q[..end]), "query {:?}", &q[..end]);
                match got {
                    Some((_, k)) => by_order[k] += 1,
                    None => misses += 1,
                }
            }
        }
        assert!(misses > 100, "the queries must exercise misses: {misses}");
        for (k, n) in by_order.iter().enumerate().skip(1) {
            assert!(*n > 10, "and matches of every length: {k} tokens {n} times");
        }
    }

    #[test]
    fn drafts_extend_the_sequence_token_by_token_and_prefer_long_contexts() {
        let texts: Vec<Vec<u32>> = vec![vec![1, 2, 3, 4, 5], vec![9, 2, 3, 7], vec![8, 2, 3, 7]];
        let corpus = DraftCorpus::from_texts(texts.iter().map(Vec::as_slice));
        // `2 3` was followed by 7 twice and by 4 once; `1 2 3` only by 4.
        assert_eq!(corpus.next(&[5, 2, 3]), Some((7, 2)));
        assert_eq!(corpus.next(&[1, 2, 3]), Some((4, 3)));
        assert_eq!(corpus.draft(&[1, 2, 3], 9), vec![4, 5]);
        assert_eq!(corpus.draft(&[6, 9, 2], 9), vec![3, 7]);
        assert_eq!(corpus.draft(&[6, 9, 2], 1), vec![3]);
        assert!(corpus.draft(&[6], 4).is_empty(), "6 never occurs");
        assert!(corpus.draft(&[5], 4).is_empty(), "5 is never followed");
        // No context spans two texts: `5 9` is not a bigram of the corpus.
        assert_eq!(corpus.next(&[4, 5]), None);
        // Ties go to the follower seen first.
        let tie = DraftCorpus::from_texts([&[1u32, 2][..], &[1, 3], &[1, 3], &[1, 2]]);
        assert_eq!(tie.next(&[1]), Some((2, 1)));
    }
}
