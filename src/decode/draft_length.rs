//! How long a draft to verify, learned from the text being written.
//!
//! A drafter that finds a draft on evidence (a context of the committed text, or of the draft
//! corpus, matching the end of the text) can continue it for many tokens; each token more is a
//! row more in the step's forward pass. Whether it pays depends on two numbers: how far such
//! drafts match what the model then writes, and what a step of so many rows costs on this
//! device. [`DraftLengths`] measures the first on the generation itself and takes the second
//! from the device's measured step costs ([`StepPrice`]):
//!
//! - Every step, the drafter's full-length draft (as long as the budget allows) is kept with
//!   its evidence bucket (matched context of 1, 2-3, 4-7, 8-15, 16+ tokens) until the
//!   committed text shows how many of its tokens were right. That count does not depend on how
//!   much of the draft was verified (a drafted token is kept exactly when it is the token the
//!   model commits there), so every step scores the full length, whatever length it drafted.
//! - The draft length of a bucket is the one of 0, 1, 3, 7, 15, ... tokens (steps of 1, 2, 4,
//!   8, 16, ... rows with the pending token: few step shapes) or the budget that maximises the
//!   expected tokens per unit of time, `(1 + E[min(matched, L)]) / price(rows of the rest of
//!   the step + L)`; 0 where no draft pays for its rows.
//! - Before a bucket has been scored, or without a price, the draft reaches as far as the
//!   evidence: the longest of those lengths not above the matched context.

use std::fmt;
use std::sync::Arc;

/// Relative time of a forward pass by its query rows (a single-row pass: 1), as measured on the
/// model's device.
#[derive(Clone)]
pub struct StepPrice(Arc<dyn Fn(usize) -> f64 + Send + Sync>);

impl StepPrice {
    /// `price(rows)`: the relative time of a pass of `rows` rows (finite and positive).
    pub fn new(price: impl Fn(usize) -> f64 + Send + Sync + 'static) -> Self {
        Self(Arc::new(price))
    }

    pub fn of(&self, rows: usize) -> f64 {
        (self.0)(rows)
    }
}

impl fmt::Debug for StepPrice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let p: Vec<String> = [1, 2, 4, 8, 16, 32]
            .iter()
            .map(|&r| format!("{r}:{:.2}", self.of(r)))
            .collect();
        write!(f, "StepPrice({})", p.join(" "))
    }
}

/// Evidence buckets: matched contexts of 1, 2-3, 4-7, 8-15 and 16+ tokens.
const BUCKETS: usize = 5;

fn bucket(evidence: usize) -> usize {
    ((usize::BITS - evidence.max(1).leading_zeros()) as usize - 1).min(BUCKETS - 1)
}

/// A full-length draft waiting for the committed text to score it.
#[derive(Debug, Clone)]
struct Pending {
    /// Position in the text of the draft's first token.
    at: usize,
    bucket: usize,
    tokens: Vec<u32>,
}

/// The draft lengths of one drafter in one generation (see the module documentation).
#[derive(Debug, Clone)]
pub struct DraftLengths {
    /// Longest draft.
    max: usize,
    /// Rows of the rest of a step (the pending token, the window, the other drafts).
    base_rows: usize,
    price: Option<StepPrice>,
    /// Per bucket: how many scored drafts matched 0, 1, ..., `max` tokens.
    matched: Vec<Vec<u64>>,
    pending: Vec<Pending>,
}

impl DraftLengths {
    /// Drafts of at most `max` tokens in steps whose other rows number `base_rows`, priced by
    /// `price` (`None`: drafts reach as far as their evidence).
    pub fn new(max: usize, base_rows: usize, price: Option<StepPrice>) -> Self {
        Self {
            max,
            base_rows: base_rows.max(1),
            price,
            matched: vec![vec![0; max + 1]; BUCKETS],
            pending: Vec::new(),
        }
    }

    /// Prices rows by `price` from now on.
    pub fn set_price(&mut self, price: Option<StepPrice>) {
        self.price = price;
    }

    /// Forgets the scores (a new generation).
    pub fn reset(&mut self) {
        self.matched = vec![vec![0; self.max + 1]; BUCKETS];
        self.pending.clear();
    }

    pub fn max(&self) -> usize {
        self.max
    }

    /// The lengths a draft may have: 0, 1, 3, 7, ... below `max`, and `max`.
    fn candidates(&self) -> impl Iterator<Item = usize> + '_ {
        (0..usize::BITS)
            .map(|k| (1usize << k) - 1)
            .take_while(|&l| l < self.max)
            .chain((self.max > 0).then_some(self.max))
    }

    /// How many tokens to draft after a match of `evidence` context tokens.
    pub fn length(&self, evidence: usize) -> usize {
        let scores = &self.matched[bucket(evidence)];
        let n: u64 = scores.iter().sum();
        let (Some(price), true) = (&self.price, n > 0) else {
            let reach = evidence.max(1);
            return self
                .candidates()
                .filter(|&l| l <= reach)
                .last()
                .unwrap_or(0);
        };
        let expected = |l: usize| -> f64 {
            let right = self.expected_right(evidence, l).unwrap_or(0.0);
            (1.0 + right) / price.of(self.base_rows + l)
        };
        let mut best = (0, f64::NEG_INFINITY);
        for l in self.candidates() {
            let v = expected(l);
            if v > best.1 {
                best = (l, v);
            }
        }
        best.0
    }

    /// Expected right tokens of a draft of `len` tokens on `evidence` context tokens, from the
    /// scored drafts of its bucket (`None` before any was scored).
    pub fn expected_right(&self, evidence: usize, len: usize) -> Option<f64> {
        let scores = &self.matched[bucket(evidence)];
        let n: u64 = scores.iter().sum();
        (n > 0).then(|| {
            let right: u64 = scores
                .iter()
                .enumerate()
                .map(|(m, &c)| c * m.min(len) as u64)
                .sum();
            right as f64 / n as f64
        })
    }

    /// Keeps `draft`, the full-length draft after `text` on `evidence` context tokens, for
    /// scoring once the text goes on.
    pub fn note(&mut self, text_len: usize, evidence: usize, draft: &[u32]) {
        if !draft.is_empty() {
            self.pending.push(Pending {
                at: text_len,
                bucket: bucket(evidence),
                tokens: draft[..draft.len().min(self.max)].to_vec(),
            });
        }
    }

    /// Scores the kept drafts that `text` (the committed text) now decides: those that went
    /// wrong at a committed token, and those it covers entirely.
    pub fn observe(&mut self, text: &[u32]) {
        let matched = &mut self.matched;
        self.pending.retain(|p| {
            let written = text.get(p.at..).unwrap_or(&[]);
            let right = p
                .tokens
                .iter()
                .zip(written)
                .take_while(|(a, b)| a == b)
                .count();
            let decided =
                right < p.tokens.len().min(written.len()) || written.len() >= p.tokens.len();
            if decided {
                matched[p.bucket][right] += 1;
            }
            !decided
        });
    }

    /// Scored drafts per bucket (for statistics).
    pub fn scored(&self) -> Vec<u64> {
        self.matched.iter().map(|b| b.iter().sum()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_double() {
        let b: Vec<usize> = [0, 1, 2, 3, 4, 7, 8, 15, 16, 1000]
            .iter()
            .map(|&e| bucket(e))
            .collect();
        assert_eq!(b, vec![0, 0, 1, 1, 2, 2, 3, 3, 4, 4]);
    }

    #[test]
    fn unscored_drafts_reach_as_far_as_their_evidence() {
        let d = DraftLengths::new(31, 1, None);
        let lens: Vec<usize> = [1, 2, 3, 4, 7, 8, 16, 40]
            .iter()
            .map(|&e| d.length(e))
            .collect();
        assert_eq!(lens, vec![1, 1, 3, 3, 7, 7, 15, 31]);
        // Within the budget, which is a length too.
        let d = DraftLengths::new(5, 1, None);
        assert_eq!(d.length(16), 5);
        assert_eq!(d.length(4), 3);
        assert_eq!(DraftLengths::new(0, 1, None).length(9), 0);
    }

    /// Every scored count, by brute force: for each kept draft, the committed tokens it
    /// matched from its position on.
    #[test]
    fn drafts_are_scored_by_the_text_that_follows() {
        let text: Vec<u32> = vec![1, 2, 3, 4, 5, 6, 7, 8];
        let mut d = DraftLengths::new(4, 1, None);
        // At 2: [3, 4, 9] matches 2; at 3: [4, 5, 6, 7] matches 4; at 6: [7, 8, 9, 9] is
        // undecided until the text goes on (2 right so far); at 7: [1] is wrong at once.
        d.note(2, 1, &[3, 4, 9]);
        d.note(3, 2, &[4, 5, 6, 7, 8, 9]);
        d.note(6, 4, &[7, 8, 9, 9]);
        d.note(7, 16, &[1]);
        // Five tokens decide the first (wrong at its third); the others wait.
        d.observe(&text[..5]);
        assert_eq!(d.scored(), vec![1, 0, 0, 0, 0]);
        d.observe(&text);
        assert_eq!(d.matched[0][2], 1);
        assert_eq!(d.matched[1][4], 1, "capped at the longest draft");
        assert_eq!(d.matched[4][0], 1);
        assert_eq!(d.scored(), vec![1, 1, 0, 0, 1]);
        d.observe(&[text.clone(), vec![9, 1]].concat());
        assert_eq!(d.matched[2][3], 1);
        d.reset();
        assert_eq!(d.scored(), vec![0; 5]);
    }

    #[test]
    fn the_price_of_rows_sets_the_length() {
        // Drafts after one-token contexts matched 0, 3 and 7+ tokens, one third each.
        let scored = |price| {
            let mut d = DraftLengths::new(15, 1, Some(price));
            let text: Vec<u32> = (0..40).collect();
            for (at, right) in [(0, 0), (10, 3), (20, 7)] {
                let mut draft: Vec<u32> = text[at..at + 15].to_vec();
                if right < 15 {
                    draft[right] = 999;
                }
                d.note(at, 1, &draft);
            }
            d.observe(&text);
            assert_eq!(d.scored()[0], 3);
            d
        };
        let d = scored(StepPrice::new(|r| r as f64));
        assert_eq!(d.expected_right(1, 7), Some(10.0 / 3.0));
        assert_eq!(d.expected_right(1, 1), Some(2.0 / 3.0));
        assert_eq!(
            d.expected_right(16, 7),
            None,
            "nothing scored on long contexts"
        );
        // Rows nearly free up to 16 (a GPU): the longest candidate that adds tokens.
        let flat = scored(StepPrice::new(|r| 1.0 + 0.001 * r as f64));
        assert_eq!(flat.length(1), 7);
        // Every row as dear as a token (a CPU): no draft pays for its rows.
        let linear = scored(StepPrice::new(|r| r as f64));
        assert_eq!(linear.length(1), 0);
        // Rows at half price: the 3-token draft (3 tokens for 2.5 rows' time) wins.
        let half = scored(StepPrice::new(|r| 0.5 + 0.5 * r as f64));
        assert_eq!(half.length(1), 3);
        // Unscored buckets still follow their evidence.
        assert_eq!(linear.length(16), 15);
    }

    /// The choice is the best of the candidate lengths under the expected-rate formula,
    /// checked against a direct evaluation over every candidate.
    #[test]
    fn the_length_maximises_the_expected_rate() {
        let price = StepPrice::new(|r| 1.0 + 0.05 * (r as f64).powf(1.3));
        let mut d = DraftLengths::new(31, 2, Some(price.clone()));
        let text: Vec<u32> = (0..400).map(|i| i % 97).collect();
        let mut seed = 7u64;
        for at in (0..360).step_by(9) {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let right = (seed >> 59) as usize;
            let mut draft = text[at..at + 31].to_vec();
            if right < 31 {
                draft[right] = 1000;
            }
            d.note(at, 5, &draft);
        }
        d.observe(&text);
        let counts = &d.matched[bucket(5)];
        let n: u64 = counts.iter().sum();
        assert!(n > 30);
        let rate = |l: usize| {
            let e: f64 = counts
                .iter()
                .enumerate()
                .map(|(m, &c)| c as f64 * m.min(l) as f64)
                .sum::<f64>()
                / n as f64;
            (1.0 + e) / price.of(2 + l)
        };
        let best = [0, 1, 3, 7, 15, 31]
            .into_iter()
            .max_by(|a, b| rate(*a).total_cmp(&rate(*b)))
            .unwrap();
        assert_eq!(d.length(5), best);
    }
}
