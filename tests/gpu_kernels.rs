//! The GPU kernels against CPU twins and against themselves, through the dev harnesses
//! (src/model/cuda/dev). The matmul: every kernel of one activation plane, on mma.sync
//! (gemm.cu, dev/cuda/gemm_variants.cu) or on Hopper's wgmma (gemm_wgmma.cu and its variants,
//! compute capability 9.0 only), equals the production kernel bit for bit under the same K
//! splits, and every hi/lo kernel the first of them, on random shapes that include the
//! LLaMA-2-7B and 70B dimensions and 1..=128 rows, and every kernel agrees with f64 sums of the
//! same f16 inputs; a row's result does not depend on the instruction, the tile, the warp
//! layout or how the splits are spread over blocks; the model's epilogues (bias, residual add,
//! silu pairs) give the production kernel's results on every kernel. The attention: agrees with an f64 softmax over the keys each
//! row sees (head dims 64 and 128, GQA ratios 1 to 8, caches up to 8300 positions, causal,
//! tree and arbitrary in-step masks of up to 120 rows), and a row of a step gives bit for bit
//! what it gives alone after its in-step keys were cached. Built only with `--features cuda`;
//! run on a GPU machine. The ignored `time_gemm_variants` prints timings (dev/cuda/README.md).
#![cfg(feature = "cuda")]

mod common;

use common::attention_case::{
    first_difference, relative_error, AttentionData, Rng, StepMask, ATTENTION_HEADS,
    ATTENTION_STEPS,
};

use half::f16;
use lade::model::cuda::dev::{
    AttentionCase, AttentionHarness, GemmEpilogue, GemmHarness, GemmKernel, GemmProblem, GEMM_BK,
};

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

/// Blocks along the split axis to run `splits` splits on: every split summed in one block,
/// spread over two blocks, or one block a split.
fn split_layouts(splits: usize) -> Vec<usize> {
    let mut layouts = vec![1, 2.min(splits), splits];
    layouts.dedup();
    layouts
}

/// Split counts to check for K: 1, the production count, and a random one.
fn split_counts(h: &GemmHarness, rng: &mut Rng, n: usize, k: usize) -> Vec<usize> {
    let tiles = k.div_ceil(GEMM_BK);
    let production = h.schedule(h.kernels()[0], 1, n, k, None).splits;
    let mut v = vec![1, production, 1 + rng.below(tiles.min(16))];
    v.sort_unstable();
    v.dedup();
    v
}

#[test]
fn every_gemm_variant_equals_the_production_kernel_bit_for_bit() {
    let h = GemmHarness::new(0).expect("CUDA device 0");
    let mut rng = Rng::new(0x1a2e_5eed);
    let mut checked = 0;
    for (n, k) in shapes(&mut rng) {
        for m in rows(&mut rng, n, k) {
            let c = case(&mut rng, m, n, k);
            // Families of kernels with the same additions: one plane (the production kernels
            // first, then the other instruction's and the variants) or two.
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
                    // The reference: the first kernel of the family (a production one for one
                    // plane), one block per split.
                    let mut s = h.schedule(reference, m, n, k, Some(splits));
                    s.split_blocks = splits;
                    let want = h.run(reference, &s, &mut p).expect("reference runs");
                    assert!(
                        want.iter().all(|v| v.is_finite()),
                        "{} left NaN",
                        reference.name
                    );
                    let layouts = split_layouts(splits);
                    for kernel in &kernels {
                        for &split_blocks in &layouts {
                            let mut s = h.schedule(kernel, m, n, k, Some(splits));
                            s.split_blocks = split_blocks;
                            let got = h.run(kernel, &s, &mut p).expect("variant runs");
                            let first = first_difference(&got, &want);
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

/// The model's epilogues (bias, the residual add, silu(gate) * up in f16) on every kernel of one
/// activation plane give the production kernel's results bit for bit, and the production
/// kernel's agree with the plain store plus the epilogue done on the host.
#[test]
fn every_gemm_kernel_gives_the_production_epilogues_bit_for_bit() {
    let h = GemmHarness::new(0).expect("CUDA device 0");
    let mut rng = Rng::new(0x0e91_1065);
    let mut checked = 0;
    for (n, k) in [(256, 512), (1000, 24), (2752, 4096), (4096, 11008)] {
        for m in [1, 17, 128] {
            let c = case(&mut rng, m, n, k);
            let mut p = upload(&h, &c, 1);
            let bias: Vec<f32> = (0..n).map(|_| rng.unit()).collect();
            let start: Vec<f32> = (0..m * n).map(|_| rng.unit()).collect();
            let (prod, s) = h.production(m, n, k);
            let store = h.run(prod, &s, &mut p).expect("production runs");
            let mut want = Vec::new();
            for (epilogue, values) in [
                (GemmEpilogue::Bias, &bias[..]),
                (GemmEpilogue::Accumulate, &start[..]),
                (GemmEpilogue::SiluPairs, &[][..]),
            ] {
                let got = h
                    .run_epilogue(prod, &s, &mut p, epilogue, values)
                    .expect("production runs");
                // The host's epilogue on the plain store: one f32 addition (exact the same), or
                // silu in f32 rounded to f16 (the device's expf may differ by an ulp or two).
                for (i, &g) in got.iter().enumerate() {
                    match epilogue {
                        GemmEpilogue::Bias => {
                            assert_eq!(g.to_bits(), (store[i] + bias[i % n]).to_bits(), "bias {i}")
                        }
                        GemmEpilogue::Accumulate => {
                            assert_eq!(g.to_bits(), (start[i] + store[i]).to_bits(), "acc {i}")
                        }
                        GemmEpilogue::SiluPairs => {
                            let (row, j) = (i / (n / 2), i % (n / 2));
                            let (gate, up) = (store[row * n + 2 * j], store[row * n + 2 * j + 1]);
                            let act = f16::from_f32(gate / (1.0 + (-gate).exp()) * up).to_f32();
                            assert!(
                                (g - act).abs() <= 2e-3 * act.abs().max(1e-3),
                                "silu pair {i} of {m} x {n} x {k}: {g} vs {act}"
                            );
                        }
                    }
                }
                want.push(got);
            }
            for kernel in h.kernels().into_iter().filter(|x| x.planes == 1) {
                let ks = h.schedule(kernel, m, n, k, Some(s.splits));
                for (i, (epilogue, values)) in [
                    (GemmEpilogue::Bias, &bias[..]),
                    (GemmEpilogue::Accumulate, &start[..]),
                    (GemmEpilogue::SiluPairs, &[][..]),
                ]
                .into_iter()
                .enumerate()
                {
                    let got = h
                        .run_epilogue(kernel, &ks, &mut p, epilogue, values)
                        .expect("kernel runs");
                    let first = first_difference(&got, &want[i]);
                    assert!(
                        first.is_none(),
                        "{} ({m} x {n} x {k}, {epilogue:?}) differs from {} at element {first:?}",
                        kernel.name,
                        prod.name
                    );
                    checked += 1;
                }
            }
        }
    }
    println!("{checked} epilogue launches equal to the production kernel's");
}

#[test]
fn every_gemm_kernel_agrees_with_the_cpu_twin() {
    let h = GemmHarness::new(0).expect("CUDA device 0");
    let mut rng = Rng::new(0x7717_c0de);
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
            let s = h.schedule(kernel, m, n, k, Some(production.splits));
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
    let mut rng = Rng::new(0x71_3e);
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
                    for split_blocks in split_layouts(splits) {
                        let mut s = h.schedule(kernel, m, n, k, Some(splits));
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

/// The harness's view of an attention case.
fn attention_case(d: &AttentionData) -> AttentionCase<'_> {
    AttentionCase {
        heads: d.heads,
        past: d.past,
        rows: d.rows,
        mask: &d.mask,
        q: &d.q,
        k: &d.k,
        v: &d.v,
    }
}

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
    let mut rng = Rng::new(0xa77e_2710);
    for heads in ATTENTION_HEADS {
        let (nh, _, hd) = heads;
        for (past, rows, kind) in ATTENTION_STEPS {
            let d = AttentionData::random(&mut rng, heads, past, rows, kind);
            // Every row, up to 8 sampled heads of it.
            let twin = twin_samples(&d, &mut rng);
            let mut p = h.problem(&attention_case(&d), 1).expect("case uploads");
            for kernel in h.kernels(hd) {
                let got = h.run(kernel, &mut p).expect("attention runs");
                for (i, head, want) in &twin {
                    // f16 outputs: relative rounding 2^-11.
                    let rel = relative_error(&got[(i * nh + head) * hd..][..hd], want);
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

#[test]
fn every_attention_kernel_gives_a_row_in_a_step_what_it_gives_alone() {
    let h = AttentionHarness::new(0).expect("CUDA device 0");
    let mut rng = Rng::new(0x5eed_a77e);
    for heads in ATTENTION_HEADS {
        let width = heads.0 * heads.2;
        for (past, rows, kind) in ATTENTION_STEPS {
            let d = AttentionData::random(&mut rng, heads, past, rows, kind);
            let mut p = h.problem(&attention_case(&d), 1).expect("case uploads");
            let mut picked: Vec<usize> = vec![0, rows - 1];
            picked.extend((0..4).map(|_| rng.below(rows)));
            picked.sort_unstable();
            picked.dedup();
            let alone: Vec<(usize, AttentionData)> =
                picked.into_iter().map(|i| (i, d.alone(i))).collect();
            for kernel in h.kernels(heads.2) {
                let together = h.run(kernel, &mut p).expect("attention runs");
                for (i, a) in &alone {
                    let mut pa = h.problem(&attention_case(a), 1).expect("case uploads");
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

/// Kernels that reschedule the production launch without changing an addition: its tiles at
/// each fixed height, and the variants dev/cuda/attention_variants.cu says so of. Their results
/// are the production launch's.
const ATTENTION_SAME_ADDITIONS: [&str; 5] = [
    "attention_qt8",
    "attention_qt16",
    "attention_qt32",
    "attention_qt8_b3",
    "attention_scalar_weights",
];

#[test]
fn attention_variants_with_the_production_additions_give_its_results_bit_for_bit() {
    let h = AttentionHarness::new(0).expect("CUDA device 0");
    let mut rng = Rng::new(0x0bd1_a77e);
    let mut compared = 0;
    for heads in ATTENTION_HEADS {
        for (past, rows, kind) in ATTENTION_STEPS {
            let d = AttentionData::random(&mut rng, heads, past, rows, kind);
            let mut p = h.problem(&attention_case(&d), 1).expect("case uploads");
            let kernels = h.kernels(heads.2);
            let production = kernels[0];
            assert!(production.production(), "the production kernel comes first");
            let want = h.run(production, &mut p).expect("attention runs");
            for kernel in kernels.iter().filter(|k| {
                ATTENTION_SAME_ADDITIONS
                    .iter()
                    .any(|prefix| k.name.starts_with(&format!("{prefix}_hd")))
            }) {
                let got = h.run(kernel, &mut p).expect("attention runs");
                let first = first_difference(&got, &want);
                assert!(
                    first.is_none(),
                    "{}: {heads:?}, {past} cached, {rows} rows ({kind:?}): differs from the \
                     production kernel at element {first:?}",
                    kernel.name
                );
                compared += 1;
            }
        }
    }
    assert!(
        compared >= ATTENTION_HEADS.len() * ATTENTION_STEPS.len(),
        "every listed variant ran ({compared} comparisons)"
    );
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
    let mut rng = Rng::new(0x713e_a77e);
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
                let p = h
                    .problem(&attention_case(&d), copies)
                    .expect("case uploads");
                for kernel in h.kernels(heads.2) {
                    let us = h.time(kernel, &p, 20, 5).expect("kernel runs");
                    println!(
                        "{name},{past},{m},{},{us:.2},{:.0},{}",
                        kernel.name,
                        p.cache_bytes() as f64 / us / 1e3,
                        u8::from(kernel.production())
                    );
                }
            }
        }
    }
}
