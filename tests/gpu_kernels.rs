//! The GPU kernels against CPU twins and against themselves, through the dev harnesses
//! (src/model/cuda/dev). The matmul: every variant of dev/cuda/gemm_variants.cu equals the
//! production kernel bit for bit under the same K splits, on random shapes that include the
//! LLaMA-2-7B and 70B dimensions and 1..=128 rows, and every kernel agrees with f64 sums of the
//! same f16 inputs; a row's result does not depend on the tile, the warp layout or how the
//! splits are spread over blocks. The attention: agrees with an f64 softmax over the keys each
//! row sees (head dims 64 and 128, GQA ratios 1 to 8, caches up to 8300 positions, causal,
//! tree and arbitrary in-step masks of up to 120 rows), and a row of a step gives bit for bit
//! what it gives alone after its in-step keys were cached. Built only with `--features cuda`;
//! run on a GPU machine. The ignored `time_gemm_variants` prints timings (dev/cuda/README.md).
#![cfg(feature = "cuda")]

use half::f16;
use lade::model::cuda::dev::{
    AttentionCase, AttentionHarness, GemmHarness, GemmKernel, GemmProblem, GEMM_BK,
};
use lade::model::AttentionMask;

/// SplitMix64: the tests' random numbers (seeded, so a failure can be repeated).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    /// Uniform in [-1, 1).
    fn unit(&mut self) -> f32 {
        (self.next() >> 40) as f32 / (1u64 << 23) as f32 - 1.0
    }
}

/// f16 bits of values uniform in [-scale, scale).
fn halves(rng: &mut Rng, n: usize, scale: f32) -> Vec<u16> {
    (0..n)
        .map(|_| f16::from_f32(rng.unit() * scale).to_bits())
        .collect()
}

/// `planes` A-format planes of the f32 values `v`: f16(v), then f16(v - f16(v)).
fn a_planes(v: &[f32], planes: usize) -> Vec<u16> {
    let hi: Vec<f16> = v.iter().map(|&x| f16::from_f32(x)).collect();
    let mut out: Vec<u16> = hi.iter().map(|h| h.to_bits()).collect();
    if planes == 2 {
        out.extend(
            v.iter()
                .zip(&hi)
                .map(|(&x, h)| f16::from_f32(x - h.to_f32()).to_bits()),
        );
    }
    out
}

struct Case {
    m: usize,
    n: usize,
    k: usize,
    /// The activations as f32 (the A planes are made from them).
    x: Vec<f32>,
    w: Vec<u16>,
}

fn case(rng: &mut Rng, m: usize, n: usize, k: usize) -> Case {
    Case {
        m,
        n,
        k,
        x: (0..m * k).map(|_| rng.unit()).collect(),
        w: halves(rng, n * k, 1.0 / (k as f32).sqrt()),
    }
}

fn upload(h: &GemmHarness, c: &Case, planes: usize) -> GemmProblem {
    h.problem((c.m, c.n, c.k), planes, &a_planes(&c.x, planes), &c.w, 1)
        .expect("problem uploads")
}

/// The shapes checked: (n, k) of the LLaMA-2-7B and 70B projections and LM head, a few
/// ragged ones (K not a multiple of the k-tile, N not of the column tile), and random ones.
fn shapes(rng: &mut Rng) -> Vec<(usize, usize)> {
    let mut v = vec![
        (12288, 4096),
        (4096, 4096),
        (22016, 4096),
        (4096, 11008),
        (8192, 28672),
        (10240, 8192),
        (34, 200),
        (1000, 24),
        (130, 4104),
    ];
    for _ in 0..4 {
        v.push((2 * (1 + rng.below(1500)), 8 * (1 + rng.below(1200))));
    }
    v
}

/// Rows for a shape: 1, 128, and random counts in between (fewer for the largest shapes).
fn rows(rng: &mut Rng, n: usize, k: usize) -> Vec<usize> {
    let mut v = vec![1, 128];
    let extra = if n * k > 50_000_000 { 1 } else { 3 };
    for _ in 0..extra {
        v.push(1 + rng.below(128));
    }
    v
}

/// Split counts to check for K: 1, the production count, and a random one.
fn split_counts(h: &GemmHarness, rng: &mut Rng, n: usize, k: usize) -> Vec<usize> {
    let tiles = k.div_ceil(GEMM_BK);
    let production = h.schedule(h.kernels()[0].tile, 1, n, k, None).splits;
    let mut v = vec![1, production, 1 + rng.below(tiles.min(16))];
    v.sort_unstable();
    v.dedup();
    v
}

#[test]
fn every_gemm_variant_equals_the_production_kernel_bit_for_bit() {
    let h = GemmHarness::new(0).expect("CUDA device 0");
    let mut rng = Rng(0x1a2e_5eed);
    let mut checked = 0;
    for (n, k) in shapes(&mut rng) {
        for m in rows(&mut rng, n, k) {
            let c = case(&mut rng, m, n, k);
            for planes in [1, 2] {
                let kernels: Vec<&GemmKernel> = h
                    .kernels()
                    .into_iter()
                    .filter(|x| x.planes == planes)
                    .collect();
                let Some(reference) = kernels.first() else {
                    continue;
                };
                let mut p = upload(&h, &c, planes);
                for splits in split_counts(&h, &mut rng, n, k) {
                    // The reference: the first kernel of these planes (the production one for
                    // one plane), one block per split.
                    let mut s = h.schedule(reference.tile, m, n, k, Some(splits));
                    s.split_blocks = splits;
                    let want = h.run(reference, &s, &mut p).expect("reference runs");
                    assert!(
                        want.iter().all(|v| v.is_finite()),
                        "{} left NaN",
                        reference.name
                    );
                    for kernel in &kernels {
                        for split_blocks in [1, splits] {
                            let mut s = h.schedule(kernel.tile, m, n, k, Some(splits));
                            s.split_blocks = split_blocks;
                            let got = h.run(kernel, &s, &mut p).expect("variant runs");
                            let first = got
                                .iter()
                                .zip(&want)
                                .position(|(a, b)| a.to_bits() != b.to_bits());
                            assert!(
                                first.is_none(),
                                "{} ({m} x {n} x {k}, {splits} splits over {split_blocks} \
                                 blocks) differs from {} at element {:?}: {:?} vs {:?}",
                                kernel.name,
                                reference.name,
                                first,
                                first.map(|i| got[i]),
                                first.map(|i| want[i]),
                            );
                            checked += 1;
                        }
                    }
                }
            }
        }
    }
    println!("{checked} launches equal to their reference");
}

#[test]
fn every_gemm_kernel_agrees_with_the_cpu_twin() {
    let h = GemmHarness::new(0).expect("CUDA device 0");
    let mut rng = Rng(0x7717_c0de);
    for (n, k) in shapes(&mut rng) {
        let m = 1 + rng.below(128);
        let c = case(&mut rng, m, n, k);
        // The twin: f64 sums of the products of the f16 weights and the activations as the
        // kernel reads them (f16 for one plane, hi + lo for two), at sampled elements.
        let samples: Vec<(usize, usize)> = (0..64).map(|_| (rng.below(m), rng.below(n))).collect();
        let mut problems = [upload(&h, &c, 1), upload(&h, &c, 2)];
        for kernel in h.kernels() {
            let p = &mut problems[kernel.planes - 1];
            let (_, production) = h.production(m, n, k);
            let s = h.schedule(kernel.tile, m, n, k, Some(production.splits));
            let got = h.run(kernel, &s, p).expect("kernel runs");
            let a = a_planes(&c.x, kernel.planes);
            let (mut err, mut norm) = (0f64, 0f64);
            for &(i, j) in &samples {
                let want: f64 = (0..k)
                    .map(|kk| {
                        let av: f64 = (0..kernel.planes)
                            .map(|pl| {
                                f64::from(f16::from_bits(a[pl * m * k + i * k + kk]).to_f32())
                            })
                            .sum();
                        av * f64::from(f16::from_bits(c.w[j * k + kk]).to_f32())
                    })
                    .sum();
                err += (f64::from(got[i * n + j]) - want).powi(2);
                norm += want * want;
            }
            let rel = (err / norm.max(1e-30)).sqrt();
            assert!(
                rel < 5e-5,
                "{} at {m} x {n} x {k}: relative error {rel:e} against f64 sums",
                kernel.name
            );
        }
    }
}

/// Timings of every kernel and split count at the LLaMA-2-7B and 70B projection shapes:
/// `cargo test --release --features cuda --test gpu_kernels -- --ignored --nocapture`.
/// `LADE_GEMM_ROWS` (default "1,8,32,64,128") and `LADE_GEMM_SHAPES` ("name:n:k;...") narrow it.
#[test]
#[ignore]
fn time_gemm_variants() {
    let h = GemmHarness::new(0).expect("CUDA device 0");
    let mut rng = Rng(0x71_3e);
    let rows: Vec<usize> = std::env::var("LADE_GEMM_ROWS")
        .unwrap_or_else(|_| "1,8,32,64,128".into())
        .split(',')
        .map(|r| r.trim().parse().expect("LADE_GEMM_ROWS: row counts"))
        .collect();
    let shapes: Vec<(String, usize, usize)> = std::env::var("LADE_GEMM_SHAPES")
        .unwrap_or_else(|_| {
            "7b-qkv:12288:4096;7b-o:4096:4096;7b-gate-up:22016:4096;7b-down:4096:11008;\
             7b-head:32000:4096;70b-qkv:10240:8192;70b-o:8192:8192;70b-gate-up:57344:8192;\
             70b-down:8192:28672;135m-qkv:960:576;135m-o:576:576;135m-gate-up:3072:576;\
             135m-down:576:1536;135m-head:49152:576;qwen-qkv:1152:896;qwen-o:896:896;\
             qwen-gate-up:9728:896;qwen-down:896:4864;qwen-head:151936:896"
                .into()
        })
        .split(';')
        .map(|s| {
            let f: Vec<&str> = s.split(':').collect();
            (
                f[0].to_string(),
                f[1].parse().unwrap(),
                f[2].parse().unwrap(),
            )
        })
        .collect();
    println!("device: {} multiprocessors", h.sms());
    println!("shape,n,k,rows,kernel,splits,split_blocks,us,weight_GBps,TFLOPs,production");
    for (name, n, k) in &shapes {
        let (n, k) = (*n, *k);
        let w = halves(&mut rng, n * k, 1.0 / (k as f32).sqrt());
        // Enough weight copies that a launch reads memory, not the 60 MB L2 cache.
        let copies = (512usize << 20).div_ceil(2 * n * k).max(2);
        let tiles = k.div_ceil(GEMM_BK);
        for &m in &rows {
            let x: Vec<f32> = (0..m * k).map(|_| rng.unit()).collect();
            let mut problems: Vec<GemmProblem> = Vec::new();
            for planes in [1, 2] {
                problems.push(
                    h.problem((m, n, k), planes, &a_planes(&x, planes), &w, copies)
                        .expect("problem uploads"),
                );
            }
            let (prod, prod_s) = h.production(m, n, k);
            for kernel in h.kernels() {
                // Tiles far taller than the step, or one-row tiles for many rows, are skipped.
                if kernel.tile.rows() > 2 * m.max(16) || (kernel.tile.rows() == 16 && m > 32) {
                    continue;
                }
                let p = &problems[kernel.planes - 1];
                for splits in [1, 2, 3, 4, 6, 8, 12, 16] {
                    if splits > tiles || splits * m * n > 16 * 128 * 65536 {
                        continue;
                    }
                    let blocks: &[usize] = if splits == 1 { &[1] } else { &[1, splits] };
                    for &split_blocks in blocks {
                        let mut s = h.schedule(kernel.tile, m, n, k, Some(splits));
                        s.split_blocks = split_blocks;
                        let us = h.time(kernel, &s, p, 10, 5).expect("kernel runs");
                        let is_prod = kernel.name == prod.name && s == prod_s;
                        println!(
                            "{name},{n},{k},{m},{},{splits},{split_blocks},{us:.2},{:.0},{:.1},{}",
                            kernel.name,
                            p.weight_bytes() as f64 / us / 1e3,
                            2.0 * (m * n * k) as f64 / us / 1e6,
                            u8::from(is_prod)
                        );
                    }
                }
            }
        }
    }
}

/// Head layouts checked: (heads, kv heads, head dim) of LLaMA-2-7B, Llama-3-8B, LLaMA-2-70B,
/// SmolLM2-135M and Qwen2.5-0.5B.
const ATTENTION_HEADS: [(usize, usize, usize); 5] = [
    (32, 32, 128),
    (32, 8, 128),
    (64, 8, 128),
    (9, 3, 64),
    (14, 2, 64),
];

/// In-step masks: causal, a tree (each row sees its ancestors and itself, as lookahead's
/// verification branches do), or any earlier rows and itself.
#[derive(Clone, Copy, Debug)]
enum StepMask {
    Causal,
    Tree,
    Random,
}

fn step_mask(rng: &mut Rng, kind: StepMask, q: usize) -> AttentionMask {
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

struct AttentionData {
    heads: (usize, usize, usize),
    past: usize,
    rows: usize,
    mask: AttentionMask,
    q: Vec<f32>,
    k: Vec<f32>,
    v: Vec<f32>,
}

impl AttentionData {
    fn random(
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

    fn case(&self) -> AttentionCase<'_> {
        AttentionCase {
            heads: self.heads,
            past: self.past,
            rows: self.rows,
            mask: &self.mask,
            q: &self.q,
            k: &self.k,
            v: &self.v,
        }
    }

    /// The step's rows that row i sees, in increasing order.
    fn seen(&self, i: usize) -> Vec<usize> {
        (0..self.rows)
            .filter(|&j| self.mask.sees(self.past, self.rows, i, self.past + j))
            .collect()
    }

    /// The CPU twin: row i, head h, by f64 softmax over the keys the row sees.
    fn reference(&self, i: usize, h: usize) -> Vec<f64> {
        let (nh, nkv, hd) = self.heads;
        let keys = self.past + self.rows;
        let kvh = h / (nh / nkv);
        let q = &self.q[(i * nh + h) * hd..][..hd];
        let positions: Vec<usize> = (0..self.past)
            .chain(self.seen(i).into_iter().map(|j| self.past + j))
            .collect();
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
    fn alone(&self, i: usize) -> AttentionData {
        let (nh, nkv, hd) = self.heads;
        let keys = self.past + self.rows;
        let seen = self.seen(i);
        let positions: Vec<usize> = (0..self.past)
            .chain(seen.iter().map(|&j| self.past + j))
            .collect();
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
const ATTENTION_STEPS: [(usize, usize, StepMask); 9] = [
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

/// The CPU twin's outputs of `samples` (row, head) pairs of a case.
fn twin_samples(d: &AttentionData, rng: &mut Rng) -> Vec<(usize, usize, Vec<f64>)> {
    let nh = d.heads.0;
    (0..d.rows)
        .flat_map(|i| (0..nh.min(8)).map(move |_| i))
        .collect::<Vec<_>>()
        .into_iter()
        .map(|i| {
            let head = rng.below(nh);
            (i, head, d.reference(i, head))
        })
        .collect()
}

#[test]
fn every_attention_kernel_agrees_with_the_cpu_twin() {
    let h = AttentionHarness::new(0).expect("CUDA device 0");
    let mut rng = Rng(0xa77e_2710);
    for heads in ATTENTION_HEADS {
        let (nh, _, hd) = heads;
        for (past, rows, kind) in ATTENTION_STEPS {
            let d = AttentionData::random(&mut rng, heads, past, rows, kind);
            // Every row, up to 8 sampled heads of it.
            let twin = twin_samples(&d, &mut rng);
            let mut p = h.problem(&d.case(), 1).expect("case uploads");
            for kernel in h.kernels(hd) {
                let got = h.run(kernel, &mut p).expect("attention runs");
                for (i, head, want) in &twin {
                    let out = &got[(i * nh + head) * hd..][..hd];
                    let (mut err, mut norm) = (0f64, 0f64);
                    for (&g, w) in out.iter().zip(want) {
                        err += (f64::from(g) - w).powi(2);
                        norm += w * w;
                    }
                    // f16 outputs: relative rounding 2^-11.
                    let rel = (err / norm.max(1e-30)).sqrt();
                    assert!(
                        rel < 1e-3,
                        "{}: {heads:?}, {past} cached, {rows} rows ({kind:?}): row {i} head \
                         {head} relative error {rel:e} against the f64 softmax",
                        kernel.name
                    );
                }
            }
        }
    }
}

/// The index of the first element whose bits differ.
fn first_difference(a: &[f32], b: &[f32]) -> Option<usize> {
    a.iter()
        .zip(b)
        .position(|(x, y)| x.to_bits() != y.to_bits())
}

#[test]
fn every_attention_kernel_gives_a_row_in_a_step_what_it_gives_alone() {
    let h = AttentionHarness::new(0).expect("CUDA device 0");
    let mut rng = Rng(0x5eed_a77e);
    for heads in ATTENTION_HEADS {
        let width = heads.0 * heads.2;
        for (past, rows, kind) in ATTENTION_STEPS {
            let d = AttentionData::random(&mut rng, heads, past, rows, kind);
            let mut p = h.problem(&d.case(), 1).expect("case uploads");
            let mut picked: Vec<usize> = vec![0, rows - 1];
            picked.extend((0..4).map(|_| rng.below(rows)));
            picked.sort_unstable();
            picked.dedup();
            let alone: Vec<(usize, AttentionData)> =
                picked.into_iter().map(|i| (i, d.alone(i))).collect();
            for kernel in h.kernels(heads.2) {
                let together = h.run(kernel, &mut p).expect("attention runs");
                for (i, a) in &alone {
                    let mut pa = h.problem(&a.case(), 1).expect("case uploads");
                    let got = h.run(kernel, &mut pa).expect("attention runs");
                    let first = first_difference(&got, &together[i * width..(i + 1) * width]);
                    assert!(
                        first.is_none(),
                        "{}: {heads:?}, {past} cached, {rows} rows ({kind:?}): row {i} alone \
                         differs from the row in the step at element {first:?}",
                        kernel.name
                    );
                }
            }
        }
    }
}

#[test]
fn attention_variants_in_production_order_equal_it_bit_for_bit() {
    let h = AttentionHarness::new(0).expect("CUDA device 0");
    let mut rng = Rng(0x0bd3_a77e);
    let mut checked = 0;
    for heads in ATTENTION_HEADS {
        for (past, rows, kind) in ATTENTION_STEPS {
            let d = AttentionData::random(&mut rng, heads, past, rows, kind);
            let mut p = h.problem(&d.case(), 1).expect("case uploads");
            let kernels = h.kernels(heads.2);
            let want = h.run(kernels[0], &mut p).expect("production runs");
            for kernel in kernels
                .iter()
                .filter(|k| k.name.starts_with("attention_inorder"))
            {
                let got = h.run(kernel, &mut p).expect("variant runs");
                let first = first_difference(&got, &want);
                assert!(
                    first.is_none(),
                    "{}: {heads:?}, {past} cached, {rows} rows ({kind:?}) differs from {} at \
                     element {first:?}",
                    kernel.name,
                    kernels[0].name
                );
                checked += 1;
            }
        }
    }
    assert!(checked > 0, "no attention_inorder variant was loaded");
}

/// Timings of every attention kernel at LLaMA-family head layouts, 512 and 4096 cached
/// positions, 1..=120 rows of a lookahead-like tree:
/// `cargo test --release --features cuda --test gpu_kernels -- --ignored --nocapture
/// time_attention_variants`. `LADE_ATTN_ROWS` (default "1,8,32,64,120") and `LADE_ATTN_PAST`
/// ("512,4096") narrow it.
#[test]
#[ignore]
fn time_attention_variants() {
    let h = AttentionHarness::new(0).expect("CUDA device 0");
    let mut rng = Rng(0x713e_a77e);
    let list = |var: &str, default: &str| -> Vec<usize> {
        std::env::var(var)
            .unwrap_or_else(|_| default.into())
            .split(',')
            .map(|r| r.trim().parse().expect("a list of counts"))
            .collect()
    };
    let rows = list("LADE_ATTN_ROWS", "1,8,32,64,120");
    let pasts = list("LADE_ATTN_PAST", "512,4096");
    let named = [
        ("7b", (32, 32, 128)),
        ("8b", (32, 8, 128)),
        ("70b", (64, 8, 128)),
        ("135m", (9, 3, 64)),
        ("qwen-0.5b", (14, 2, 64)),
    ];
    println!("heads,past,rows,kernel,us,cache_GBps,production");
    for (name, heads) in named {
        for &past in &pasts {
            for &m in &rows {
                let kind = if m == 1 {
                    StepMask::Causal
                } else {
                    StepMask::Tree
                };
                let d = AttentionData::random(&mut rng, heads, past, m, kind);
                let bytes = 8 * heads.1 * past * heads.2;
                // Enough cache copies that a launch reads memory, not the 60 MB L2 cache.
                let copies = (256usize << 20).div_ceil(bytes.max(1)).clamp(2, 32);
                let p = h.problem(&d.case(), copies).expect("case uploads");
                for kernel in h.kernels(heads.2) {
                    let us = h.time(kernel, &p, 20, 5).expect("kernel runs");
                    println!(
                        "{name},{past},{m},{},{us:.2},{:.0},{}",
                        kernel.name,
                        p.cache_bytes() as f64 / us / 1e3,
                        u8::from(kernel.production)
                    );
                }
            }
        }
    }
}
