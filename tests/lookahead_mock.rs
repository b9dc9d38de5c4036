//! Lookahead Decoding against an exact synthetic model: equality with plain decoding (greedy
//! and seeded sampling), distribution preservation (chi-square), stop handling at every position
//! of an accepted run, determinism and edge cases (spec invariants E1, E3, E9–E15).

mod common;

use common::mock::MockLm;
use lade::decode::{Decoder, LookaheadConfig, PlainDecoder, SpeculativeDecoder};
use lade::generate::{generate, FinishReason, Generation, StopRules};
use lade::sampling::{Sampler, SamplingParams};

const VOCAB: usize = 12;

fn run(
    decoder: &mut dyn Decoder,
    prompt: &[u32],
    params: SamplingParams,
    rules: &StopRules,
    context: usize,
) -> Generation {
    run_table(
        common::mock::markov2,
        decoder,
        prompt,
        params,
        rules,
        context,
    )
}

fn run_table(
    table: common::mock::Table,
    decoder: &mut dyn Decoder,
    prompt: &[u32],
    params: SamplingParams,
    rules: &StopRules,
    context: usize,
) -> Generation {
    let mut lm = MockLm::new(VOCAB, context);
    lm.table = table;
    let sampler = Sampler::new(params).unwrap();
    let g = generate(
        &mut lm,
        decoder,
        &sampler,
        prompt,
        rules,
        None,
        &mut |_, _| {},
    )
    .unwrap();
    assert_eq!(
        lm.forwards,
        g.stats.steps + usize::from(prompt.len() > 1),
        "one forward per step"
    );
    g
}

fn rules(max_tokens: usize) -> StopRules {
    StopRules {
        max_tokens,
        ..StopRules::default()
    }
}

fn prompt(seed: u32, len: usize) -> Vec<u32> {
    (0..len as u32)
        .map(|i| (i * 7 + seed * 3 + i * i * seed) % VOCAB as u32)
        .collect()
}

fn lookahead(w: usize, n: usize, g: usize) -> SpeculativeDecoder {
    SpeculativeDecoder::lookahead(LookaheadConfig::new(w, n, g)).unwrap()
}

const GRID: &[(usize, usize, usize)] = &[
    (0, 3, 2),
    (0, 8, 1),
    (1, 2, 0),
    (1, 2, 2),
    (3, 2, 3),
    (1, 3, 1),
    (4, 3, 0),
    (4, 3, 4),
    (5, 4, 5),
    (7, 5, 7),
    (2, 6, 8),
    (15, 5, 15),
];

/// A model that repeats its context with period 6: the next token is the one 6 positions back
/// (token 0 while the context is shorter). Token 1 has two different successors in a period.
fn periodic(ctx: &[u32], vocab: usize) -> Vec<f32> {
    let next = ctx.len().checked_sub(6).map_or(0, |i| ctx[i]) as usize;
    let mut l = vec![0f32; vocab];
    l[next] = 5.0;
    l
}

#[test]
fn context_match_finds_the_repeated_continuation() {
    // Two periods of the prompt: every later step has a 2-3 token context seen before, whose
    // continuation is exactly what the model does next. With one candidate per step the
    // one-token-key pool keeps only the latest successor of token 1, which is wrong half the
    // time; the context match is never wrong here.
    let period = [1u32, 2, 1, 3, 4, 5];
    let p: Vec<u32> = period.iter().chain(&period).copied().collect();
    let plain = run_table(
        periodic,
        &mut PlainDecoder,
        &p,
        SamplingParams::greedy(),
        &rules(60),
        512,
    );
    let mut steps = Vec::new();
    for ctx in [false, true] {
        let mut cfg = LookaheadConfig::new(1, 5, 1);
        cfg.switches.context_match = ctx;
        let mut dec = SpeculativeDecoder::lookahead(cfg).unwrap();
        let la = run_table(
            periodic,
            &mut dec,
            &p,
            SamplingParams::greedy(),
            &rules(60),
            512,
        );
        assert_eq!(la.token_ids, plain.token_ids, "ctx={ctx}");
        steps.push(la.stats.steps);
    }
    // With the context match every step confirms its 4 draft tokens and the bonus token.
    assert_eq!(
        steps[1],
        60 / 5,
        "steps without / with context match: {steps:?}"
    );
    assert!(
        steps[0] > steps[1],
        "steps without / with context match: {steps:?}"
    );
}

#[test]
fn greedy_lookahead_equals_plain_greedy_on_a_grid() {
    let mut best_compression = 0f64;
    for seed in 0..6 {
        let p = prompt(seed, 5 + seed as usize * 3);
        let plain = run(
            &mut PlainDecoder,
            &p,
            SamplingParams::greedy(),
            &rules(80),
            512,
        );
        assert_eq!(plain.stats.compression, 1.0);
        for &(w, n, g) in GRID {
            for compat in [false, true] {
                for (pool, ctx) in [(false, false), (true, false), (false, true), (true, true)] {
                    if compat && n < 3 {
                        continue;
                    }
                    let mut cfg = LookaheadConfig::new(w, n, g);
                    cfg.switches.reference_compat = compat;
                    cfg.switches.pool_from_prompt = pool;
                    cfg.switches.context_match = ctx;
                    let mut dec = SpeculativeDecoder::lookahead(cfg).unwrap();
                    let la = run(&mut dec, &p, SamplingParams::greedy(), &rules(80), 512);
                    assert_eq!(
                        la.token_ids, plain.token_ids,
                        "W={w} N={n} G={g} compat={compat} pool={pool} ctx={ctx} prompt {seed}"
                    );
                    // E3: tokens per step within [1, N] (or [1, N-1] in reference mode).
                    let cap = if compat { n - 1 } else { n };
                    assert!(
                        la.stats.accepted_per_step.len() <= cap + 1,
                        "{:?}",
                        la.stats.accepted_per_step
                    );
                    if g == 0 {
                        assert_eq!(la.stats.compression, 1.0, "G=0 verifies nothing");
                    }
                    best_compression = best_compression.max(la.stats.compression);
                }
            }
        }
    }
    // The test is only meaningful if drafts were accepted.
    assert!(
        best_compression > 1.5,
        "best compression {best_compression}"
    );
}

#[test]
fn seeded_lookahead_sampling_equals_plain_sampling() {
    let settings = [
        SamplingParams {
            temperature: 0.5,
            seed: 1,
            ..SamplingParams::greedy()
        },
        SamplingParams {
            temperature: 1.0,
            seed: 2,
            ..SamplingParams::greedy()
        },
        SamplingParams {
            temperature: 0.8,
            top_k: 3,
            seed: 3,
            ..SamplingParams::greedy()
        },
        SamplingParams {
            temperature: 1.0,
            top_p: 0.7,
            seed: 4,
            ..SamplingParams::greedy()
        },
        SamplingParams {
            temperature: 0.9,
            min_p: 0.2,
            seed: 5,
            ..SamplingParams::greedy()
        },
        SamplingParams {
            temperature: 0.7,
            repeat_penalty: 1.3,
            seed: 6,
            ..SamplingParams::greedy()
        },
        SamplingParams {
            temperature: 0.0,
            repeat_penalty: 1.5,
            seed: 7,
            ..SamplingParams::greedy()
        },
    ];
    let mut accepted_drafts = 0;
    for params in settings {
        for s in 0..4 {
            let p = prompt(s, 9);
            let plain = run(&mut PlainDecoder, &p, params, &rules(60), 512);
            for &(w, n, g) in &[(4, 3, 4), (5, 4, 5), (1, 2, 3), (7, 5, 7)] {
                let la = run(&mut lookahead(w, n, g), &p, params, &rules(60), 512);
                assert_eq!(
                    la.token_ids, plain.token_ids,
                    "{params:?} W={w} N={n} G={g}"
                );
                accepted_drafts += la.stats.drafted_tokens_accepted;
            }
        }
    }
    assert!(
        accepted_drafts > 50,
        "sampling runs accepted only {accepted_drafts} draft tokens"
    );
}

/// Exact probability of each (y0, y1, y2) under plain sampling, from the mock's table.
fn exact_joint(table: common::mock::Table, p: &[u32], sampler: &Sampler) -> Vec<f64> {
    let mut out = vec![0f64; VOCAB * VOCAB * VOCAB];
    let dist = |ctx: &[u32]| sampler.distribution(&table(ctx, VOCAB), ctx);
    for (a, pa) in dist(p) {
        let c1 = [p, &[a]].concat();
        for (b, pb) in dist(&c1) {
            let c2 = [&c1[..], &[b]].concat();
            for (c, pc) in dist(&c2) {
                out[(a as usize * VOCAB + b as usize) * VOCAB + c as usize] +=
                    pa as f64 * pb as f64 * pc as f64;
            }
        }
    }
    out
}

#[test]
fn lookahead_sampling_preserves_the_joint_distribution_chi_square() {
    // E11: 20,000 generations of 3 tokens with different seeds; the histogram of (y0,y1,y2)
    // must fit the exact joint distribution of plain sampling.
    // A "sticky" table (the successor of the last token is likely) and a prompt holding every
    // token, so that prompt and window n-grams often get verified.
    let table = common::mock::sticky;
    let p: Vec<u32> = (0..VOCAB as u32).chain(0..VOCAB as u32).collect();
    for (temperature, top_k, top_p) in [(1.0f32, 0usize, 1.0f32), (0.5, 0, 1.0), (1.0, 4, 0.9)] {
        let base = SamplingParams {
            temperature,
            top_k,
            top_p,
            ..SamplingParams::greedy()
        };
        let exact = exact_joint(table, &p, &Sampler::new(base).unwrap());
        let runs = 20_000;
        let mut counts = vec![0usize; exact.len()];
        let mut multi_token_steps = 0;
        for seed in 0..runs as u64 {
            let params = SamplingParams { seed, ..base };
            let g = run_table(table, &mut lookahead(3, 2, 6), &p, params, &rules(3), 64);
            let t = &g.token_ids;
            counts[(t[0] as usize * VOCAB + t[1] as usize) * VOCAB + t[2] as usize] += 1;
            multi_token_steps += g.stats.accepted_per_step.iter().skip(2).sum::<usize>();
        }
        // Pool cells with expected count < 5 into one bin.
        let (mut chi2, mut dof, mut small_e, mut small_o) = (0f64, 0usize, 0f64, 0f64);
        for (e, &o) in exact.iter().zip(&counts) {
            let e = e * runs as f64;
            if e < 5.0 {
                small_e += e;
                small_o += o as f64;
            } else {
                chi2 += (o as f64 - e).powi(2) / e;
                dof += 1;
            }
        }
        if small_e > 0.0 {
            chi2 += (small_o - small_e).powi(2) / small_e.max(1e-9);
            dof += 1;
        }
        let dof = dof - 1;
        // Critical value at p = 0.001 (Wilson–Hilferty approximation).
        let k = dof as f64;
        let z = 3.090;
        let crit = k * (1.0 - 2.0 / (9.0 * k) + z * (2.0 / (9.0 * k)).sqrt()).powi(3);
        assert!(
            chi2 < crit,
            "T={temperature} k={top_k} p={top_p}: chi2 {chi2:.1} ≥ {crit:.1} (dof {dof})"
        );
        assert!(
            multi_token_steps > 0,
            "no step accepted a draft: the test would be vacuous"
        );
    }
}

#[test]
fn stop_ids_inside_accepted_runs_end_generation_exactly() {
    // E10: pick each generated token in turn as the stop id; lookahead must stop exactly where
    // plain decoding stops, whether that token is y0, a middle draft token or the bonus.
    let p = prompt(1, 12);
    let plain = run(
        &mut PlainDecoder,
        &p,
        SamplingParams::greedy(),
        &rules(60),
        512,
    );
    let mut inside_runs = 0;
    for i in 0..plain.token_ids.len() {
        let stop = plain.token_ids[i];
        let r = StopRules {
            max_tokens: 60,
            stop_ids: vec![99, stop],
            stop_strings: vec![],
            cancel: None,
        };
        let first = plain.token_ids.iter().position(|&t| t == stop).unwrap();
        let la = run(
            &mut lookahead(5, 4, 5),
            &p,
            SamplingParams::greedy(),
            &r,
            512,
        );
        assert_eq!(
            la.token_ids,
            plain.token_ids[..first],
            "stop id {stop} (first at {first})"
        );
        assert_eq!(la.finish_reason, FinishReason::Stop);
        if la.stats.accepted_per_step.iter().skip(2).sum::<usize>() > 0 {
            inside_runs += 1;
        }
    }
    assert!(
        inside_runs > 5,
        "stops rarely met multi-token steps ({inside_runs})"
    );
}

#[test]
fn max_tokens_is_never_exceeded() {
    let p = prompt(2, 10);
    let plain = run(
        &mut PlainDecoder,
        &p,
        SamplingParams::greedy(),
        &rules(50),
        512,
    );
    for max in 1..=50 {
        let la = run(
            &mut lookahead(7, 5, 7),
            &p,
            SamplingParams::greedy(),
            &rules(max),
            512,
        );
        assert_eq!(la.token_ids, plain.token_ids[..max]);
        assert_eq!(la.finish_reason, FinishReason::Length);
    }
}

#[test]
fn repeated_runs_are_identical_in_tokens_and_steps() {
    let p = prompt(4, 9);
    let params = SamplingParams {
        temperature: 0.9,
        seed: 11,
        ..SamplingParams::greedy()
    };
    let a = run(&mut lookahead(6, 4, 6), &p, params, &rules(70), 512);
    let b = run(&mut lookahead(6, 4, 6), &p, params, &rules(70), 512);
    assert_eq!(a.token_ids, b.token_ids);
    assert_eq!(a.stats.steps, b.stats.steps);
    assert_eq!(a.stats.accepted_per_step, b.stats.accepted_per_step);
}

#[test]
fn short_prompts_and_the_context_limit() {
    for len in [1usize, 2, 3] {
        let p = prompt(5, len);
        let plain = run(
            &mut PlainDecoder,
            &p,
            SamplingParams::greedy(),
            &rules(40),
            512,
        );
        for &(w, n, g) in &[(4, 5, 4), (3, 7, 3), (1, 2, 1)] {
            let la = run(
                &mut lookahead(w, n, g),
                &p,
                SamplingParams::greedy(),
                &rules(40),
                512,
            );
            assert_eq!(la.token_ids, plain.token_ids, "prompt length {len}");
        }
    }
    // A context of 40 positions: lookahead must shrink to plain steps near the end and stop
    // with the same tokens as plain decoding, never overflowing.
    let p = prompt(6, 10);
    let plain = run(
        &mut PlainDecoder,
        &p,
        SamplingParams::greedy(),
        &rules(100),
        40,
    );
    assert!(plain.hit_context_limit);
    // The last token's K/V never needs a slot: 40 - 9 cached prompt tokens = 31 steps.
    assert_eq!(plain.token_ids.len(), 40 - 10 + 1);
    let mut dec = lookahead(5, 4, 5);
    let la = run(&mut dec, &p, SamplingParams::greedy(), &rules(100), 40);
    assert!(la.hit_context_limit);
    assert_eq!(la.token_ids, plain.token_ids);
    assert!(dec.stats().fallback_steps > 0);
}

#[test]
fn compression_counts_steps_after_the_prefill() {
    let p = prompt(7, 8);
    let mut dec = lookahead(7, 5, 7);
    let la = run(&mut dec, &p, SamplingParams::greedy(), &rules(64), 512);
    let hist_tokens: usize = la
        .stats
        .accepted_per_step
        .iter()
        .enumerate()
        .map(|(k, c)| k * c)
        .sum();
    assert_eq!(hist_tokens, la.stats.generated_tokens);
    assert_eq!(
        la.stats.accepted_per_step.iter().sum::<usize>(),
        la.stats.steps
    );
    let c = la.stats.generated_tokens as f64 / la.stats.steps as f64;
    assert!((la.stats.compression - c).abs() < 1e-12);
    assert_eq!(
        la.stats.generated_tokens - la.stats.steps,
        la.stats.drafted_tokens_accepted,
        "n_accept = committed tokens - steps"
    );
}

#[test]
fn corpus_drafts_are_verified_like_any_draft() {
    use lade::decode::DraftCorpus;
    use std::sync::Arc;
    // The corpus: what plain greedy decoding wrote after other prompts (the model's own text),
    // plus a text of noise that drafts wrong tokens.
    let mut texts: Vec<Vec<u32>> = (10..16)
        .map(|s| {
            let p = prompt(s, 3);
            let g = run(
                &mut PlainDecoder,
                &p,
                SamplingParams::greedy(),
                &rules(60),
                512,
            );
            [p, g.token_ids].concat()
        })
        .collect();
    texts.push((0..200).map(|i| (i * 5 + i / 7) % VOCAB as u32).collect());
    let corpus = Arc::new(DraftCorpus::from_texts(texts.iter().map(Vec::as_slice)));
    let with = |cfg: LookaheadConfig| {
        SpeculativeDecoder::lookahead(cfg)
            .unwrap()
            .with_corpus(Some(corpus.clone()))
    };
    let (mut steps_with, mut steps_without, mut from_corpus) = (0, 0, 0);
    for params in [
        SamplingParams::greedy(),
        SamplingParams {
            temperature: 0.8,
            seed: 3,
            ..SamplingParams::greedy()
        },
    ] {
        for s in 0..6 {
            let p = prompt(s, 2);
            let plain = run(&mut PlainDecoder, &p, params, &rules(40), 512);
            for &(w, n, g) in &[(0, 8, 1), (0, 4, 2), (1, 3, 1)] {
                let mut dec = with(LookaheadConfig::new(w, n, g));
                let la = run(&mut dec, &p, params, &rules(40), 512);
                assert_eq!(
                    la.token_ids, plain.token_ids,
                    "{params:?} W={w} N={n} G={g} prompt {s}"
                );
                let stats = dec.stats();
                assert!(stats.corpus_drafts <= stats.speculative_steps);
                assert!(stats.corpus_tokens_accepted <= stats.corpus_drafts * (n - 1));
                from_corpus += stats.corpus_tokens_accepted;
                if (w, params.temperature) == (0, 0.0) {
                    steps_with += la.stats.steps;
                    let mut off = LookaheadConfig::new(w, n, g);
                    off.switches.corpus_drafts = false;
                    let mut dec = with(off);
                    let la = run(&mut dec, &p, params, &rules(40), 512);
                    assert_eq!(la.token_ids, plain.token_ids);
                    assert!(dec.corpus().is_none(), "the switch turns the corpus off");
                    steps_without += la.stats.steps;
                }
            }
        }
    }
    assert!(from_corpus > 20, "corpus tokens accepted: {from_corpus}");
    assert!(
        steps_with < steps_without,
        "steps with / without the corpus: {steps_with} / {steps_without}"
    );
}

/// Learned draft lengths change how long the drafts are, never the output: greedy and seeded
/// sampling with them equal plain decoding, whatever the price of rows, with and without a
/// draft corpus.
#[test]
fn learned_draft_lengths_are_lossless() {
    use lade::decode::draft_length::StepPrice;
    use lade::decode::DraftCorpus;
    use std::sync::Arc;
    let prices: Vec<Option<StepPrice>> = vec![
        None,
        Some(StepPrice::new(|r| r as f64)),
        Some(StepPrice::new(|r| 1.0 + 0.01 * r as f64)),
        Some(StepPrice::new(|r| 0.5 + 0.5 * (r as f64).sqrt())),
    ];
    let corpus = Arc::new(DraftCorpus::from_texts([prompt(9, 40).as_slice()]));
    let mut accepted = 0;
    for seed in 0..4 {
        let p = prompt(seed, 6 + seed as usize * 4);
        for params in [
            SamplingParams::greedy(),
            SamplingParams {
                temperature: 0.8,
                seed: 11 + seed as u64,
                ..SamplingParams::greedy()
            },
        ] {
            let plain = run(&mut PlainDecoder, &p, params, &rules(70), 512);
            for &(w, n, g) in &[(0, 3, 1), (0, 8, 1), (0, 32, 1), (0, 5, 3), (4, 3, 4)] {
                for price in &prices {
                    for with_corpus in [false, true] {
                        let mut cfg = LookaheadConfig::new(w, n, g);
                        cfg.switches.learned_lengths = true;
                        let mut dec = SpeculativeDecoder::lookahead(cfg)
                            .unwrap()
                            .with_corpus(with_corpus.then(|| corpus.clone()))
                            .with_step_price(price.clone());
                        let la = run(&mut dec, &p, params, &rules(70), 512);
                        assert_eq!(
                            la.token_ids, plain.token_ids,
                            "{w},{n},{g} {price:?} corpus={with_corpus} prompt {seed} {params:?}"
                        );
                        accepted += la.stats.drafted_tokens_accepted;
                    }
                }
            }
        }
    }
    assert!(accepted > 0, "drafts were accepted");
}

/// On a text that repeats, learned lengths of the text's drafts follow the price of rows: where
/// rows are nearly free the drafts grow as long as the budget; where a row costs more than a
/// token's time the decoder stops drafting once it has scored the drafts, and its steps
/// shrink (the n-gram pool is off, so that the text's drafts are the only ones).
#[test]
fn learned_draft_lengths_follow_the_price_of_rows() {
    use lade::decode::draft_length::StepPrice;
    let period = [1u32, 2, 1, 3, 4, 5];
    let p: Vec<u32> = period.iter().chain(&period).copied().collect();
    let run_with = |price: StepPrice| {
        let mut cfg = LookaheadConfig::new(0, 16, 1);
        cfg.switches.learned_lengths = true;
        cfg.switches.pool_from_prompt = false;
        let mut dec = SpeculativeDecoder::lookahead(cfg)
            .unwrap()
            .with_step_price(Some(price));
        run_table(
            periodic,
            &mut dec,
            &p,
            SamplingParams::greedy(),
            &rules(120),
            512,
        )
    };
    let flat = run_with(StepPrice::new(|r| 1.0 + 0.001 * r as f64));
    // The periodic text is drafted right every time: once a match length has been scored,
    // its drafts are as long as the budget, and most steps commit N tokens.
    let full = flat.stats.accepted_per_step.get(16).copied().unwrap_or(0);
    assert!(
        2 * full > flat.stats.steps,
        "{} steps, accepted per step {:?}",
        flat.stats.steps,
        flat.stats.accepted_per_step
    );
    assert!(flat.stats.compression > 10.0, "{}", flat.stats.compression);
    // Every row dearer than a token: after the first scored drafts, no more drafts.
    let dear = run_with(StepPrice::new(|r| 1.1 * r as f64 - 0.1));
    assert_eq!(dear.token_ids, flat.token_ids);
    let single = dear.stats.steps_by_rows.get(&1).copied().unwrap_or(0);
    assert!(
        single + 5 >= dear.stats.steps,
        "{} steps, by rows {:?}",
        dear.stats.steps,
        dear.stats.steps_by_rows
    );
}

/// A decoder without a window takes the same steps against the replay of a greedy text
/// ([`lade::model::ReplayLm`]) as against the model that wrote it: the same tokens, steps and
/// rows of every step, with learned lengths and a draft corpus or without.
#[test]
fn the_replay_of_a_greedy_text_takes_the_models_steps() {
    use lade::decode::draft_length::StepPrice;
    use lade::decode::DraftCorpus;
    use lade::model::ReplayLm;
    use std::sync::Arc;
    let corpus = Arc::new(DraftCorpus::from_texts([prompt(9, 40).as_slice()]));
    let greedy = SamplingParams::greedy;
    let mut compared = 0;
    for seed in 0..4 {
        let p = prompt(seed, 6 + seed as usize * 4);
        for table in [common::mock::markov2, common::mock::sticky, periodic] {
            let plain = run_table(table, &mut PlainDecoder, &p, greedy(), &rules(90), 512);
            let text = [p.as_slice(), &plain.token_ids].concat();
            for &(n, g, learned, with_corpus) in &[
                (3, 1, false, false),
                (8, 1, false, true),
                (32, 1, true, true),
                (16, 1, true, false),
                (5, 3, true, true),
            ] {
                let decoder = || {
                    let mut cfg = LookaheadConfig::new(0, n, g);
                    cfg.switches.learned_lengths = learned;
                    SpeculativeDecoder::lookahead(cfg)
                        .unwrap()
                        .with_corpus(with_corpus.then(|| corpus.clone()))
                        .with_step_price(Some(StepPrice::new(|r| 1.0 + 0.02 * r as f64)))
                };
                let on_model = run_table(table, &mut decoder(), &p, greedy(), &rules(90), 512);
                let mut replay = ReplayLm::new(text.clone(), VOCAB, 512).unwrap();
                let sampler = Sampler::new(greedy()).unwrap();
                let replayed = generate(
                    &mut replay,
                    &mut decoder(),
                    &sampler,
                    &p,
                    &rules(90),
                    None,
                    &mut |_, _| {},
                )
                .unwrap();
                let what = format!("0,{n},{g} learned={learned} corpus={with_corpus} {seed}");
                assert_eq!(replayed.token_ids, plain.token_ids, "{what}");
                assert_eq!(replayed.stats.steps, on_model.stats.steps, "{what}");
                assert_eq!(
                    replayed.stats.steps_by_rows, on_model.stats.steps_by_rows,
                    "{what}"
                );
                compared += usize::from(on_model.stats.steps < plain.stats.steps);
            }
        }
    }
    assert!(compared > 10, "the cases must take multi-token steps");
    // A recorded token outside the vocabulary is refused.
    assert!(ReplayLm::new(vec![0, VOCAB as u32], VOCAB, 64).is_err());
}
