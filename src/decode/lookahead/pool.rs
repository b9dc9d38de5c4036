//! The n-gram pool: key token → up to G follower tuples of N-1 tokens.
//!
//! Policy (as the authors' code): each key keeps its tuples in recency order; re-inserting an
//! existing tuple refreshes it (moves it to the newest end), a new tuple is appended and the
//! oldest one is evicted once the key holds G. Candidates are returned oldest first. LRU keeps
//! n-grams that keep reappearing along the Jacobi trajectory, which is what gets verified.

use std::collections::HashMap;

/// N-gram pool with per-key capacity.
#[derive(Debug, Clone)]
pub struct NgramPool {
    /// Tokens per stored tuple (N-1).
    arity: usize,
    /// Most tuples per key (G).
    capacity: usize,
    map: HashMap<u32, Vec<Vec<u32>>>,
    len: usize,
}

impl NgramPool {
    pub fn new(arity: usize, capacity: usize) -> Self {
        Self {
            arity,
            capacity,
            map: HashMap::new(),
            len: 0,
        }
    }

    /// Stored tuples over all keys.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Inserts `key → value` (`value.len()` must be N-1; other lengths are ignored).
    pub fn insert(&mut self, key: u32, value: &[u32]) {
        if self.capacity == 0 || value.len() != self.arity {
            return;
        }
        let list = self.map.entry(key).or_default();
        if let Some(i) = list.iter().position(|v| v.as_slice() == value) {
            let v = list.remove(i);
            list.push(v);
            return;
        }
        if list.len() == self.capacity {
            list.remove(0);
            self.len -= 1;
        }
        list.push(value.to_vec());
        self.len += 1;
    }

    /// Inserts every n-gram of `tokens` (key = first token, value = the next N-1).
    pub fn insert_sequence(&mut self, tokens: &[u32]) {
        if tokens.len() < self.arity + 1 {
            return;
        }
        for w in tokens.windows(self.arity + 1) {
            self.insert(w[0], &w[1..]);
        }
    }

    /// Inserts the n-grams that end in one of the last `new` tokens of `tokens` (as tokens are
    /// committed: the pool then holds every n-gram of the sequence so far).
    pub fn insert_ending(&mut self, tokens: &[u32], new: usize) {
        let n = self.arity + 1;
        for end in tokens.len().saturating_sub(new)..tokens.len() {
            if end + 1 >= n {
                let gram = &tokens[end + 1 - n..=end];
                self.insert(gram[0], &gram[1..]);
            }
        }
    }

    /// Candidates stored under `key`, oldest first (at most G).
    pub fn get(&self, key: u32) -> &[Vec<u32>] {
        self.map.get(&key).map(Vec::as_slice).unwrap_or(&[])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_each_key_and_evicts_the_least_recently_inserted() {
        let mut p = NgramPool::new(2, 3);
        for v in [[1, 2], [3, 4], [5, 6]] {
            p.insert(7, &v);
        }
        p.insert(7, &[1, 2]); // refresh: [3,4] is now the oldest
        p.insert(7, &[8, 9]); // evicts [3,4]
        assert_eq!(p.get(7), &[vec![5, 6], vec![1, 2], vec![8, 9]]);
        assert_eq!(p.len(), 3);
        for vals in p.get(7) {
            assert_eq!(vals.len(), 2);
        }
    }

    #[test]
    fn no_duplicates_and_wrong_arity_is_ignored() {
        let mut p = NgramPool::new(3, 5);
        p.insert(1, &[2, 3, 4]);
        p.insert(1, &[2, 3, 4]);
        p.insert(1, &[2, 3]);
        assert_eq!(p.get(1).len(), 1);
        assert!(p.get(99).is_empty());
    }

    #[test]
    fn zero_capacity_stores_nothing() {
        let mut p = NgramPool::new(2, 0);
        p.insert(1, &[2, 3]);
        p.insert(1, &[4, 5]);
        assert!(p.is_empty());
        assert!(p.get(1).is_empty());
    }

    #[test]
    fn inserting_committed_tokens_adds_the_ngrams_ending_in_them() {
        let tokens: Vec<u32> = (10..20).collect();
        let mut whole = NgramPool::new(2, 100);
        whole.insert_sequence(&tokens);
        // Committing in chunks (as steps do) gives the same pool as seeding all at once.
        let mut chunked = NgramPool::new(2, 100);
        chunked.insert_sequence(&tokens[..4]);
        for (len, new) in [(5, 1), (8, 3), (10, 2)] {
            chunked.insert_ending(&tokens[..len], new);
        }
        assert_eq!(chunked.len(), whole.len());
        for k in 10..20 {
            assert_eq!(chunked.get(k), whole.get(k), "key {k}");
        }
        // Too short for one n-gram: nothing.
        let mut p = NgramPool::new(3, 10);
        p.insert_ending(&[1, 2, 3], 3);
        assert!(p.is_empty());
    }

    #[test]
    fn sequence_seeding_inserts_len_minus_n_plus_one_ngrams() {
        let mut p = NgramPool::new(3, 100); // N = 4
        let prompt: Vec<u32> = (0..10).collect();
        p.insert_sequence(&prompt);
        assert_eq!(p.len(), prompt.len() - 4 + 1);
        assert_eq!(p.get(2), &[vec![3, 4, 5]]);
        assert!(p.get(7).is_empty());
    }
}
