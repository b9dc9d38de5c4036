//! Attention test cases: random queries, keys and values over a cache and an in-step mask
//! (causal, a tree, or any earlier rows), an f64 softmax twin, and a row's case alone (its
//! in-step keys moved into the cache). Shared by the CPU attention tests and the GPU kernel
//! checks.

use lade::model::AttentionMask;
use lade::sampling::random_u64;

/// The tests' random numbers: lade's counter-based generator, seeded so that a failure can be
/// repeated.
pub struct Rng {
    seed: u64,
    index: u64,
}

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng { seed, index: 0 }
    }
    pub fn next(&mut self) -> u64 {
        self.index += 1;
        random_u64(self.seed, self.index)
    }
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    /// Uniform in [-1, 1).
    pub fn unit(&mut self) -> f32 {
        (self.next() >> 40) as f32 / (1u64 << 23) as f32 - 1.0
    }
}

/// The index of the first element whose bits differ.
pub fn first_difference(a: &[f32], b: &[f32]) -> Option<usize> {
    a.iter()
        .zip(b)
        .position(|(x, y)| x.to_bits() != y.to_bits())
}

/// ‖got − want‖ / ‖want‖.
pub fn relative_error(got: &[f32], want: &[f64]) -> f64 {
    let (mut err, mut norm) = (0f64, 0f64);
    for (&g, w) in got.iter().zip(want) {
        err += (f64::from(g) - w).powi(2);
        norm += w * w;
    }
    (err / norm.max(1e-30)).sqrt()
}

/// Head layouts checked: (heads, kv heads, head dim) of LLaMA-2-7B, Llama-3-8B, LLaMA-2-70B,
/// SmolLM2-135M and Qwen2.5-0.5B.
pub const ATTENTION_HEADS: [(usize, usize, usize); 5] = [
    (32, 32, 128),
    (32, 8, 128),
    (64, 8, 128),
    (9, 3, 64),
    (14, 2, 64),
];

/// In-step masks: causal, a tree (each row sees its ancestors and itself, as lookahead's
/// verification branches do), or any earlier rows and itself.
#[derive(Clone, Copy, Debug)]
pub enum StepMask {
    Causal,
    Tree,
    Random,
}

pub fn step_mask(rng: &mut Rng, kind: StepMask, q: usize) -> AttentionMask {
    let mut visible = vec![false; q * q];
    let mut parent = vec![usize::MAX; q];
    for i in 0..q {
        visible[i * q + i] = true;
        match kind {
            StepMask::Causal => (0..i).for_each(|j| visible[i * q + j] = true),
            StepMask::Tree => {
                if i > 0 {
                    parent[i] = rng.below(i);
                    let mut a = parent[i];
                    while a != usize::MAX {
                        visible[i * q + a] = true;
                        a = parent[a];
                    }
                }
            }
            StepMask::Random => (0..i).for_each(|j| visible[i * q + j] = rng.below(3) == 0),
        }
    }
    AttentionMask::Block { q, visible }
}

pub struct AttentionData {
    pub heads: (usize, usize, usize),
    pub past: usize,
    pub rows: usize,
    pub mask: AttentionMask,
    pub q: Vec<f32>,
    pub k: Vec<f32>,
    pub v: Vec<f32>,
}

impl AttentionData {
    pub fn random(
        rng: &mut Rng,
        heads: (usize, usize, usize),
        past: usize,
        rows: usize,
        kind: StepMask,
    ) -> Self {
        let (nh, nkv, hd) = heads;
        let kv = nkv * (past + rows) * hd;
        let mut draw = |n: usize, scale: f32| (0..n).map(|_| rng.unit() * scale).collect();
        let q = draw(rows * nh * hd, 2.0);
        let k = draw(kv, 1.0);
        let v = draw(kv, 1.0);
        AttentionData {
            heads,
            past,
            rows,
            mask: step_mask(rng, kind, rows),
            q,
            k,
            v,
        }
    }

    /// The step's rows that row i sees, in increasing order.
    pub fn seen(&self, i: usize) -> Vec<usize> {
        (0..self.rows)
            .filter(|&j| self.mask.sees(self.past, self.rows, i, self.past + j))
            .collect()
    }

    /// The cache positions of the keys row i sees, in order: the cache, then its in-step rows.
    fn positions(&self, i: usize) -> Vec<usize> {
        (0..self.past)
            .chain(self.seen(i).into_iter().map(|j| self.past + j))
            .collect()
    }

    /// The CPU twin: row i, head h, by f64 softmax over the keys the row sees.
    pub fn reference(&self, i: usize, h: usize) -> Vec<f64> {
        let (nh, nkv, hd) = self.heads;
        let keys = self.past + self.rows;
        let kvh = h / (nh / nkv);
        let q = &self.q[(i * nh + h) * hd..][..hd];
        let positions = self.positions(i);
        let at = |x: &[f32], p: usize| -> Vec<f64> {
            x[(kvh * keys + p) * hd..][..hd]
                .iter()
                .map(|&e| f64::from(e))
                .collect()
        };
        let scale = 1.0 / (hd as f64).sqrt();
        let scores: Vec<f64> = positions
            .iter()
            .map(|&p| {
                let k = at(&self.k, p);
                q.iter()
                    .zip(&k)
                    .map(|(&a, b)| f64::from(a) * b)
                    .sum::<f64>()
                    * scale
            })
            .collect();
        let m = scores.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let w: Vec<f64> = scores.iter().map(|s| (s - m).exp()).collect();
        let l: f64 = w.iter().sum();
        let mut out = vec![0f64; hd];
        for (&p, wp) in positions.iter().zip(&w) {
            for (o, x) in out.iter_mut().zip(at(&self.v, p)) {
                *o += wp / l * x;
            }
        }
        out
    }

    /// Row i alone: its in-step keys before it moved into the cache, then the row itself.
    pub fn alone(&self, i: usize) -> AttentionData {
        let (nh, nkv, hd) = self.heads;
        let keys = self.past + self.rows;
        let positions = self.positions(i);
        let gather = |x: &[f32]| -> Vec<f32> {
            (0..nkv)
                .flat_map(|h| {
                    positions
                        .iter()
                        .flat_map(move |&p| x[(h * keys + p) * hd..][..hd].iter().copied())
                })
                .collect()
        };
        AttentionData {
            heads: self.heads,
            past: positions.len() - 1,
            rows: 1,
            mask: AttentionMask::Causal,
            q: self.q[i * nh * hd..(i + 1) * nh * hd].to_vec(),
            k: gather(&self.k),
            v: gather(&self.v),
        }
    }
}

/// (past, rows, mask) of the attention checks: single rows, ragged chunk boundaries (127, 128,
/// 129 cached positions), chains that cross a chunk boundary, lookahead-sized trees, and a
/// cache past 8192 positions.
pub const ATTENTION_STEPS: [(usize, usize, StepMask); 9] = [
    (0, 1, StepMask::Causal),
    (5, 3, StepMask::Tree),
    (127, 1, StepMask::Causal),
    (128, 17, StepMask::Random),
    (129, 42, StepMask::Tree),
    (100, 120, StepMask::Causal),
    (700, 120, StepMask::Tree),
    (1000, 64, StepMask::Random),
    (8300, 4, StepMask::Tree),
];
