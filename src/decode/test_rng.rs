//! A small deterministic generator for the decoding layer's unit tests (texts, simulated
//! steps): Knuth's MMIX linear congruential step, the high bits taken.

/// The generator's state.
pub(crate) struct Lcg(pub(crate) u64);

impl Lcg {
    /// A number in `0..n`.
    pub(crate) fn below(&mut self, n: usize) -> usize {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((self.0 >> 33) % n as u64) as usize
    }
}
