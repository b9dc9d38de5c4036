//! The CUDA path against independent oracles: Hugging Face transformers (f32) logits and greedy
//! tokens, plain greedy decoding on the same GPU, and single-row forwards. Built only with
//! `--features cuda`; run on a GPU machine (tools/gpu-bench.sh `gputest`), with `LADE_MODEL`
//! pointing at the model and `LADE_DATA_DIR` at the prompt sets (the binary was built
//! elsewhere, so the checkout's `tests/fixtures/prompts` is not where it looks).
#![cfg(feature = "cuda")]

mod common;

use common::golden::{fixture, floats, ids};

use std::sync::Arc;

use lade::decode::{Decoder, LookaheadConfig, PlainDecoder, SpeculativeDecoder};
use lade::generate::{generate, StopRules};
use lade::loader::{load, LoadOptions, LoadedModel};
use lade::model::{AttentionMask, Batch, CausalLm};
use lade::sampling::Sampler;

/// f16 weights: the first-step top-20 logits stay within this of the f32 reference.
const F16_LOGIT_TOLERANCE: f32 = 0.5;
/// Greedy tokens may differ from the f32 reference only where its top-2 margin is below this.
const F16_MARGIN_BOUND: f32 = 0.5;

fn gpu_model() -> Arc<LoadedModel> {
    static M: std::sync::OnceLock<Arc<LoadedModel>> = std::sync::OnceLock::new();
    M.get_or_init(|| {
        let opts = LoadOptions {
            gpu: Some(0),
            ..LoadOptions::default()
        };
        Arc::new(load(&common::model_path(), &opts).expect("model loads on cuda:0"))
    })
    .clone()
}

fn decode(
    lm: &mut dyn CausalLm,
    decoder: &mut dyn Decoder,
    sampler: &Sampler,
    prompt: &[u32],
    n: usize,
) -> Vec<u32> {
    let rules = StopRules {
        max_tokens: n,
        ..Default::default()
    };
    generate(lm, decoder, sampler, prompt, &rules, None, &mut |_, _| {})
        .unwrap()
        .token_ids
}

/// Logits of rows `rows` of a causal forward over `tokens` on a fresh cache.
fn causal_logits(lm: &mut dyn CausalLm, tokens: &[u32], rows: &[usize]) -> Vec<Vec<f32>> {
    lm.truncate(0);
    let positions: Vec<u32> = (0..tokens.len() as u32).collect();
    let l = lm
        .forward(&Batch {
            tokens,
            positions: &positions,
            mask: &AttentionMask::Causal,
            logit_rows: rows,
        })
        .unwrap();
    (0..l.rows()).map(|i| l.row(i).to_vec()).collect()
}

#[test]
fn gpu_matches_transformers_up_to_near_ties() {
    let model = gpu_model();
    // The reference of the model under test (the default model's, or Qwen2.5-Coder's).
    let golden = match model.model.config.architecture.as_str() {
        "qwen2" => fixture("golden_qwen2_f32.json"),
        _ => fixture("golden_smollm2_f32.json"),
    };
    let records = golden["records"].as_array().unwrap();
    let mut s = model.new_session(1024).unwrap();
    let greedy = Sampler::new(Default::default()).unwrap();
    let (mut worst, mut identical) = (0f32, 0);
    for rec in records {
        let name = rec["name"].as_str().unwrap();
        let prompt = ids(&rec["prompt_ids"]);
        let last = causal_logits(s.as_mut(), &prompt, &[prompt.len() - 1]).remove(0);
        let top = &rec["first_top20"];
        for (&id, &want) in ids(&top["ids"]).iter().zip(&floats(&top["logits"])) {
            let d = (last[id as usize] - want).abs();
            worst = worst.max(d);
            assert!(
                d <= F16_LOGIT_TOLERANCE,
                "{name}: token {id}: {} vs {want}",
                last[id as usize]
            );
        }
        let want = ids(&rec["greedy_ids"]);
        let margins = floats(&rec["greedy_margins"]);
        let got = decode(s.as_mut(), &mut PlainDecoder, &greedy, &prompt, want.len());
        match got.iter().zip(&want).position(|(a, b)| a != b) {
            None => identical += 1,
            Some(i) => {
                eprintln!(
                    "{name}: diverges at step {i}, reference margin {}",
                    margins[i]
                );
                assert!(
                    margins[i] < F16_MARGIN_BOUND,
                    "{name}: diverged at step {i} where the reference margin is {}",
                    margins[i]
                );
            }
        }
    }
    eprintln!(
        "gpu f16: worst top-20 logit difference {worst:.3}; {identical} of {} identical for 64 tokens",
        records.len()
    );
}

#[test]
fn gpu_lookahead_equals_gpu_plain_greedy() {
    let model = gpu_model();
    let mut prompts = common::dataset_prompts(&model, "mt_bench", 10, true);
    prompts.extend(common::dataset_prompts(&model, "humaneval", 10, false));
    let greedy = Sampler::new(Default::default()).unwrap();
    let mut s = model.new_session(2048).unwrap();
    let configs = [
        (4, 3, 4),
        (7, 4, 7),
        (15, 5, 15),
        (5, 3, 0),
        (1, 3, 4),
        (8, 2, 8),
        (1, 5, 1),
        (0, 8, 1),
        // Adaptive drafts: up to 31 tokens after a long match.
        (0, 32, 1),
        (0, 16, 2),
        // Rows that see dozens of the step's rows: N = 11, and W = 30 (level-0 rows of the
        // window see up to 30 window columns).
        (10, 11, 10),
        (30, 5, 30),
        // 600 rows: more than one pass (the step runs in pieces).
        (30, 11, 30),
    ];
    for (p, prompt) in prompts.iter().enumerate() {
        let want = decode(s.as_mut(), &mut PlainDecoder, &greedy, prompt, 128);
        for &(w, n, g) in &configs {
            let mut la = SpeculativeDecoder::lookahead(LookaheadConfig::new(w, n, g)).unwrap();
            let got = decode(s.as_mut(), &mut la, &greedy, prompt, 128);
            assert_eq!(got, want, "prompt {p}, lookahead {w},{n},{g}");
        }
    }
}

#[test]
fn gpu_rows_do_not_depend_on_the_batch() {
    let model = gpu_model();
    let prompt = common::dataset_prompts(&model, "humaneval", 1, false).remove(0);
    let mut s = model.new_session(1024).unwrap();
    let all: Vec<usize> = (0..prompt.len()).collect();
    let together = causal_logits(s.as_mut(), &prompt, &all);
    s.truncate(0);
    for (i, &tok) in prompt.iter().enumerate() {
        let l = s
            .forward(&Batch {
                tokens: &[tok],
                positions: &[i as u32],
                mask: &AttentionMask::Causal,
                logit_rows: &[0],
            })
            .unwrap();
        assert_eq!(
            l.row(0),
            &together[i][..],
            "row {i}: one at a time vs all at once"
        );
    }
    // A tree step (root + two branches), keep branch b, then the next row equals a fresh
    // prefill of the committed tokens, bit for bit.
    let base = &prompt[..prompt.len() - 3];
    let (a, b1, b2) = (
        prompt[prompt.len() - 3],
        prompt[prompt.len() - 2],
        prompt[prompt.len() - 1],
    );
    causal_logits(s.as_mut(), base, &[]);
    let p = base.len() as u32;
    // rows: 0 = a (root), 1 = x (branch 1), 2 = b1 (branch 2), 3 = b2 (branch 2, after b1)
    let q = 4;
    let mut visible = vec![false; q * q];
    for (i, j) in [
        (0, 0),
        (1, 0),
        (1, 1),
        (2, 0),
        (2, 2),
        (3, 0),
        (3, 2),
        (3, 3),
    ] {
        visible[i * q + j] = true;
    }
    let tree = s
        .forward(&Batch {
            tokens: &[a, 17, b1, b2],
            positions: &[p, p + 1, p + 1, p + 2],
            mask: &AttentionMask::Block { q, visible },
            logit_rows: &[0, 2, 3],
        })
        .unwrap();
    let fresh = causal_logits(
        s.as_mut(),
        &prompt,
        &[prompt.len() - 3, prompt.len() - 2, prompt.len() - 1],
    );
    for (k, want) in fresh.iter().enumerate() {
        assert_eq!(tree.row(k), &want[..], "tree row {k} vs causal prefill");
    }
    // keep_rows: commit a, b1, b2 from the tree, then one more token.
    causal_logits(s.as_mut(), base, &[]);
    let mut visible = vec![false; q * q];
    for (i, j) in [
        (0, 0),
        (1, 0),
        (1, 1),
        (2, 0),
        (2, 2),
        (3, 0),
        (3, 2),
        (3, 3),
    ] {
        visible[i * q + j] = true;
    }
    s.forward(&Batch {
        tokens: &[a, 17, b1, b2],
        positions: &[p, p + 1, p + 1, p + 2],
        mask: &AttentionMask::Block { q, visible },
        logit_rows: &[],
    })
    .unwrap();
    s.keep_rows(base.len(), &[0, 2, 3]).unwrap();
    assert_eq!(s.cache_len(), prompt.len());
    let next = s
        .forward(&Batch {
            tokens: &[42],
            positions: &[prompt.len() as u32],
            mask: &AttentionMask::Causal,
            logit_rows: &[0],
        })
        .unwrap();
    let mut full = prompt.clone();
    full.push(42);
    let want = causal_logits(s.as_mut(), &full, &[full.len() - 1]).remove(0);
    assert_eq!(next.row(0), &want[..], "after keep_rows vs fresh prefill");
}

#[test]
fn gpu_a_step_longer_than_one_pass_is_exact() {
    // A tree of 1100 rows in row order (each row continues an earlier one) runs as pieces of
    // one pass each; a row's logits equal, bit for bit, those of its chain prefilled alone.
    let model = gpu_model();
    let prompt = common::dataset_prompts(&model, "humaneval", 1, false).remove(0);
    let mut s = model.new_session(2048).unwrap();
    let q = 1100;
    let mut parent = vec![usize::MAX; q];
    let mut seed = 0x7eee_u64;
    for (i, p) in parent.iter_mut().enumerate().skip(1) {
        seed = lade::sampling::random_u64(seed, i as u64);
        *p = if i % 4 == 0 { i - 1 } else { seed as usize % i };
    }
    let chain = |mut i: usize| {
        let mut rows = vec![i];
        while parent[i] != usize::MAX {
            i = parent[i];
            rows.push(i);
        }
        rows.reverse();
        rows
    };
    let tokens: Vec<u32> = (0..q).map(|i| prompt[(i * 7) % prompt.len()]).collect();
    let mut visible = vec![false; q * q];
    let mut positions = vec![0u32; q];
    for i in 0..q {
        let c = chain(i);
        positions[i] = (prompt.len() + c.len() - 1) as u32;
        for j in c {
            visible[i * q + j] = true;
        }
    }
    let checked = [0, 1, 511, 512, 513, 700, 1023, 1024, 1099];
    causal_logits(s.as_mut(), &prompt, &[]);
    let tree = s
        .forward(&Batch {
            tokens: &tokens,
            positions: &positions,
            mask: &AttentionMask::Block { q, visible },
            logit_rows: &checked,
        })
        .unwrap();
    assert_eq!(s.cache_len(), prompt.len() + q);
    for (k, &i) in checked.iter().enumerate() {
        let mut seq = prompt.clone();
        seq.extend(chain(i).iter().map(|&j| tokens[j]));
        let want = causal_logits(s.as_mut(), &seq, &[seq.len() - 1]).remove(0);
        assert_eq!(
            tree.row(k),
            &want[..],
            "row {i} of a {q}-row step vs its chain alone"
        );
    }
}

/// Prompt tokens of the datasets, concatenated until there are `n`.
fn long_prompt(model: &LoadedModel, n: usize) -> Vec<u32> {
    let mut out = Vec::new();
    for p in common::dataset_prompts(model, "humaneval", 10, false)
        .into_iter()
        .chain(common::dataset_prompts(model, "mt_bench", 10, true))
        .cycle()
    {
        out.extend(p);
        if out.len() >= n {
            out.truncate(n);
            return out;
        }
    }
    unreachable!("the datasets are not empty")
}

#[test]
fn gpu_long_context_is_exact() {
    // A cache of up to 8304 positions (dozens of attention splits; past 8192 where the model's
    // context allows): rows of a step equal the same rows one at a time, and lookahead equals
    // plain greedy there.
    let model = gpu_model();
    let ctx = model.model.config.max_position_embeddings.min(8192 + 512);
    let past = ctx - 400;
    let prompt = long_prompt(&model, past + 4);
    let mut s = model.new_session(ctx).unwrap();
    let together = causal_logits(s.as_mut(), &prompt, &[past, past + 1, past + 2, past + 3]);
    causal_logits(s.as_mut(), &prompt[..past], &[]);
    for (k, want) in together.iter().enumerate() {
        let l = s
            .forward(&Batch {
                tokens: &[prompt[past + k]],
                positions: &[(past + k) as u32],
                mask: &AttentionMask::Causal,
                logit_rows: &[0],
            })
            .unwrap();
        assert_eq!(
            l.row(0),
            &want[..],
            "row {} alone vs in a 4-row step",
            past + k
        );
    }
    let greedy = Sampler::new(Default::default()).unwrap();
    let prompt = &prompt[..past];
    let want = decode(s.as_mut(), &mut PlainDecoder, &greedy, prompt, 48);
    for (w, n, g) in [(7, 4, 7), (0, 32, 1), (10, 11, 10)] {
        let mut la = SpeculativeDecoder::lookahead(LookaheadConfig::new(w, n, g)).unwrap();
        let got = decode(s.as_mut(), &mut la, &greedy, prompt, 48);
        assert_eq!(got, want, "lookahead {w},{n},{g} after {past} positions");
    }
}
