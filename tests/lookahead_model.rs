//! Lookahead Decoding on the real default model (CPU): token-identical to plain greedy over
//! dataset prompts, branch isolation bit for bit (candidates, and every window token against
//! exactly the rows that see it), a KV cache equal to a fresh prefill after every step,
//! streaming and stop strings (spec invariants E1, E4, E7, E10, E13), and prompt lookup
//! equal to plain greedy.

mod common;

use lade::decode::speculative::StepTree;
use lade::decode::{Decoder, LookaheadConfig, PlainDecoder, SequenceView, SpeculativeDecoder};
use lade::generate::{generate, FinishReason, Generation, StopRules};
use lade::model::{AttentionMask, Batch, CausalLm, Session, WeightFormat};
use lade::sampling::{Sampler, SamplingParams};

fn greedy() -> Sampler {
    Sampler::new(SamplingParams::greedy()).unwrap()
}

fn run(
    session: &mut Session,
    decoder: &mut dyn Decoder,
    prompt: &[u32],
    max_tokens: usize,
    params: SamplingParams,
) -> Generation {
    let rules = StopRules {
        max_tokens,
        ..Default::default()
    };
    let sampler = Sampler::new(params).unwrap();
    generate(
        session,
        decoder,
        &sampler,
        prompt,
        &rules,
        None,
        &mut |_, _| {},
    )
    .unwrap()
}

fn la(w: usize, n: usize, g: usize) -> SpeculativeDecoder {
    SpeculativeDecoder::lookahead(LookaheadConfig::new(w, n, g)).unwrap()
}

fn equality_over_prompts(
    format: WeightFormat,
    prompts: &[Vec<u32>],
    grid: &[(usize, usize, usize)],
    tokens: usize,
) -> f64 {
    let model = common::model(format);
    let mut s = Session::new(model.model.clone(), 1024).unwrap();
    let (mut steps, mut generated) = (0usize, 0usize);
    for (pi, p) in prompts.iter().enumerate() {
        let plain = run(
            &mut s,
            &mut PlainDecoder,
            p,
            tokens,
            SamplingParams::greedy(),
        );
        for &(w, n, g) in grid {
            let out = run(
                &mut s,
                &mut la(w, n, g),
                p,
                tokens,
                SamplingParams::greedy(),
            );
            assert_eq!(
                out.token_ids, plain.token_ids,
                "{format:?} prompt {pi} W={w} N={n} G={g}"
            );
            steps += out.stats.steps;
            generated += out.stats.generated_tokens;
        }
    }
    generated as f64 / steps as f64
}

#[test]
fn greedy_lookahead_equals_plain_greedy_on_20_dataset_prompts_q8() {
    let model = common::model(WeightFormat::Auto);
    let mut prompts = common::dataset_prompts(&model, "mt_bench", 10, true);
    prompts.extend(common::dataset_prompts(&model, "humaneval", 10, false));
    let grid = [(4, 3, 4), (1, 3, 2), (3, 4, 0), (5, 5, 5), (2, 2, 3)];
    let compression = equality_over_prompts(WeightFormat::Auto, &prompts, &grid, 32);
    eprintln!("mean compression over the grid: {compression:.2}");
    assert!(
        compression > 1.1,
        "drafts were hardly ever accepted ({compression:.2})"
    );
}

#[test]
fn greedy_lookahead_equals_plain_greedy_in_f32() {
    let model = common::model(WeightFormat::F32);
    let mut prompts = common::dataset_prompts(&model, "mt_bench", 2, true);
    prompts.extend(common::dataset_prompts(&model, "humaneval", 2, false));
    equality_over_prompts(WeightFormat::F32, &prompts, &[(4, 3, 4), (3, 5, 3)], 24);
}

#[test]
fn seeded_sampling_with_lookahead_equals_plain_sampling() {
    let model = common::model(WeightFormat::Auto);
    let prompts = common::dataset_prompts(&model, "humaneval", 3, false);
    let mut s = Session::new(model.model.clone(), 1024).unwrap();
    for (i, p) in prompts.iter().enumerate() {
        let params = SamplingParams {
            temperature: 0.7,
            top_p: 0.9,
            seed: 42 + i as u64,
            ..SamplingParams::greedy()
        };
        let plain = run(&mut s, &mut PlainDecoder, p, 32, params);
        let out = run(&mut s, &mut la(4, 4, 4), p, 32, params);
        assert_eq!(out.token_ids, plain.token_ids, "prompt {i}");
    }
}

/// Runs one lookahead step layout and returns the logits of every row.
fn layout_logits(s: &mut Session, prefix: &[u32], layout: &StepTree) -> Vec<Vec<f32>> {
    s.truncate(0);
    let positions: Vec<u32> = (0..prefix.len() as u32).collect();
    s.forward(&Batch {
        tokens: prefix,
        positions: &positions,
        mask: &AttentionMask::Causal,
        logit_rows: &[],
    })
    .unwrap();
    let rows: Vec<usize> = (0..layout.len()).collect();
    let batch = Batch {
        logit_rows: &rows,
        ..layout.batch()
    };
    let l = s.forward(&batch).unwrap();
    (0..layout.len()).map(|i| l.row(i).to_vec()).collect()
}

#[test]
fn branches_are_isolated_bit_for_bit() {
    // E4: perturbing one branch leaves every other row's logits bit-identical.
    let model = common::model(WeightFormat::Auto);
    let prompt = common::dataset_prompts(&model, "humaneval", 1, false).remove(0);
    let (prefix, t0) = (&prompt[..prompt.len() - 1], prompt[prompt.len() - 1]);
    let mut s = Session::new(model.model.clone(), 1024).unwrap();
    let mut dec = la(4, 4, 3);
    dec.begin(&prompt).unwrap();
    // Warm the window up with real steps so that it holds all levels.
    let mut seq = prompt.clone();
    common::causal(&mut s, prefix, false);
    while !dec.window().unwrap().is_warm() {
        let out = dec
            .step(
                &mut s,
                SequenceView {
                    tokens: &seq,
                    prompt_len: prompt.len(),
                },
                &greedy(),
            )
            .unwrap();
        seq.extend(out.tokens);
    }
    let window = dec.window().unwrap().clone();
    let cands = vec![vec![11u32, 12, 13], vec![21, 22, 23], vec![31, 32, 33]];
    let base_layout = StepTree::new(t0, prefix.len() as u32, &cands, &window.lookahead_rows());
    let base = layout_logits(&mut s, prefix, &base_layout);

    // Candidate 1 changed: only candidate 1's rows may change.
    let mut c2 = cands.clone();
    c2[1][0] = 99;
    let l2 = StepTree::new(t0, prefix.len() as u32, &c2, &window.lookahead_rows());
    let out = layout_logits(&mut s, prefix, &l2);
    let cand1: Vec<usize> = (0..3).map(|i| l2.draft_logits(1, i)).collect();
    for r in 0..base.len() {
        if !cand1.contains(&r) {
            assert_eq!(out[r], base[r], "row {r} changed when candidate 1 changed");
        }
    }
    assert_ne!(
        out[cand1[0]], base[cand1[0]],
        "the perturbed row itself must change"
    );

    // A window token changed: t0 and candidate rows stay bit-identical.
    let mut w2 = window.clone();
    let mut levels = w2.levels().to_vec();
    levels[2][1] = 77;
    w2 = lade::decode::lookahead::JacobiWindow::from_levels(levels);
    let l3 = StepTree::new(t0, prefix.len() as u32, &cands, &w2.lookahead_rows());
    let out = layout_logits(&mut s, prefix, &l3);
    for r in 0..1 + 3 * 3 {
        assert_eq!(
            out[r], base[r],
            "row {r} changed when a window token changed"
        );
    }
}

#[test]
fn kv_cache_after_every_step_equals_a_fresh_prefill() {
    // E7: after each lookahead step the cache holds exactly the committed prefix (minus the
    // pending token), equal to a fresh causal prefill of it.
    let model = common::model(WeightFormat::Auto);
    let prompt = common::dataset_prompts(&model, "humaneval", 2, false).remove(1);
    let mut s = Session::new(model.model.clone(), 1024).unwrap();
    let mut fresh = Session::new(model.model.clone(), 1024).unwrap();
    let body = &prompt[..prompt.len() - 1];
    common::causal(&mut s, body, false);
    let mut dec = la(5, 4, 5);
    dec.begin(&prompt).unwrap();
    let mut seq = prompt.clone();
    let mut multi = 0;
    for _ in 0..12 {
        let out = dec
            .step(
                &mut s,
                SequenceView {
                    tokens: &seq,
                    prompt_len: prompt.len(),
                },
                &greedy(),
            )
            .unwrap();
        multi += usize::from(out.tokens.len() > 1);
        seq.extend(&out.tokens);
        assert_eq!(s.cache_len(), seq.len() - 1);
        fresh.truncate(0);
        let committed = &seq[..seq.len() - 1];
        common::causal(&mut fresh, committed, false);
        for layer in [0, 14, 29] {
            let (k, v) = s.cache.committed(layer).unwrap();
            let (fk, fv) = fresh.cache.committed(layer).unwrap();
            let d = |a: &candle_core::Tensor, b: &candle_core::Tensor| {
                let a: Vec<f32> = a.flatten_all().unwrap().to_vec1().unwrap();
                let b: Vec<f32> = b.flatten_all().unwrap().to_vec1().unwrap();
                common::max_abs_diff(&a, &b)
            };
            assert_eq!(d(&k, &fk), 0.0, "keys of layer {layer}");
            assert_eq!(d(&v, &fv), 0.0, "values of layer {layer}");
        }
    }
    assert!(
        multi > 0,
        "no step accepted a draft: the kept-rows path was not exercised"
    );
}

#[test]
fn streamed_text_and_stop_strings_match_plain_decoding() {
    let model = common::model(WeightFormat::Auto);
    let prompt = common::dataset_prompts(&model, "mt_bench", 1, true).remove(0);
    let tok = &model.tokenizer;
    let mut s = Session::new(model.model.clone(), 1024).unwrap();
    let rules = StopRules {
        max_tokens: 48,
        stop_ids: tok.eog_ids().to_vec(),
        stop_strings: vec![],
        cancel: None,
    };
    let mut go = |dec: &mut dyn Decoder, rules: &StopRules| {
        let mut streamed = String::new();
        let g = generate(
            &mut s,
            dec,
            &greedy(),
            &prompt,
            rules,
            Some(tok),
            &mut |piece, _| streamed.push_str(piece),
        )
        .unwrap();
        (g, streamed)
    };
    let (plain, plain_stream) = go(&mut PlainDecoder, &rules);
    let (out, stream) = go(&mut la(5, 4, 5), &rules);
    assert_eq!(plain_stream, plain.text);
    assert_eq!(
        stream, out.text,
        "every committed token streamed exactly once, in order"
    );
    assert_eq!(out.text, tok.decode(&out.token_ids).unwrap());
    assert_eq!(out.text, plain.text);
    // A stop string taken from the middle of the text: both cut the text right before it.
    let words: Vec<&str> = plain.text.split(' ').collect();
    let stop = format!(" {}", words[words.len() / 2]);
    let cut = plain.text.find(&stop).unwrap();
    let rules = StopRules {
        stop_strings: vec![stop.clone()],
        ..rules
    };
    let (p2, p2s) = go(&mut PlainDecoder, &rules);
    let (l2, l2s) = go(&mut la(5, 4, 5), &rules);
    assert_eq!(p2.text, plain.text[..cut]);
    assert_eq!(l2.text, p2.text, "stop string {stop:?}");
    assert_eq!(l2s, l2.text);
    assert_eq!(p2s, p2.text);
    assert_eq!(l2.finish_reason, FinishReason::Stop);
}

#[test]
fn window_tokens_reach_exactly_the_rows_that_see_them() {
    // E4, window part: a level-0 token in column j' changes exactly the window rows of columns
    // >= j' (every level); a level-l token (l >= 1) in column j' changes exactly the rows of
    // column j' at levels >= l. Everything else stays bit-identical.
    let model = common::model(WeightFormat::Auto);
    let prompt = common::dataset_prompts(&model, "mt_bench", 1, true).remove(0);
    let (prefix, t0) = (&prompt[..prompt.len() - 1], prompt[prompt.len() - 1]);
    let mut s = Session::new(model.model.clone(), 1024).unwrap();
    let (w, n) = (4usize, 4usize);
    let levels: Vec<Vec<u32>> = vec![
        vec![401, 402, 403],
        vec![510, 511, 512, 513],
        vec![620, 621, 622, 623],
    ];
    let window = lade::decode::lookahead::JacobiWindow::from_levels(levels.clone());
    let cands = vec![vec![11u32, 12, 13], vec![21, 22, 23]];
    let p = prefix.len() as u32;
    let base = layout_logits(
        &mut s,
        prefix,
        &StepTree::new(t0, p, &cands, &window.lookahead_rows()),
    );
    // Rows in the documented order: t0, candidates, level 0 columns 1.., then each level.
    let base0 = 1 + cands.len() * (n - 1);
    let row = |l: usize, j: usize| -> usize {
        match (l, j) {
            (0, 0) => 0,
            (0, j) => base0 + j - 1,
            (l, j) => base0 + (w - 1) + (l - 1) * w + j,
        }
    };
    for (l, j) in [(0usize, 1usize), (0, 3), (1, 0), (1, 2), (2, 3)] {
        let mut changed = levels.clone();
        let at = if l == 0 { j - 1 } else { j };
        changed[l][at] = 777;
        let win = lade::decode::lookahead::JacobiWindow::from_levels(changed);
        let out = layout_logits(
            &mut s,
            prefix,
            &StepTree::new(t0, p, &cands, &win.lookahead_rows()),
        );
        for l2 in 0..n - 1 {
            for j2 in 0..w {
                let r = row(l2, j2);
                let sees = if l == 0 { j2 >= j } else { j2 == j && l2 >= l };
                if sees {
                    assert_ne!(out[r], base[r], "row ({l2},{j2}) must see ({l},{j})");
                } else {
                    assert_eq!(out[r], base[r], "row ({l2},{j2}) must not see ({l},{j})");
                }
            }
        }
        for r in 0..base0 {
            assert_eq!(
                out[r], base[r],
                "t0 and candidate rows never see the window"
            );
        }
    }
}

#[test]
fn prompt_lookup_equals_plain_greedy_on_code_prompts() {
    let model = common::model(WeightFormat::Auto);
    let prompts = common::dataset_prompts(&model, "humaneval", 2, false);
    let mut s = Session::new(model.model.clone(), 1024).unwrap();
    let (mut steps, mut tokens) = (0, 0);
    for (i, p) in prompts.iter().enumerate() {
        let plain = run(&mut s, &mut PlainDecoder, p, 32, SamplingParams::greedy());
        let cfg = lade::decode::PromptLookupConfig::new(4, 4);
        let mut dec = lade::decode::SpeculativeDecoder::prompt_lookup(cfg).unwrap();
        let out = run(&mut s, &mut dec, p, 32, SamplingParams::greedy());
        assert_eq!(out.token_ids, plain.token_ids, "prompt {i}");
        steps += out.stats.steps;
        tokens += out.stats.generated_tokens;
    }
    assert!(
        tokens > steps,
        "code prompts repeat n-grams: some drafts must be accepted"
    );
}
