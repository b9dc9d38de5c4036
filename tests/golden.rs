//! Our forward pass against an independent oracle: Hugging Face transformers (f32, CPU) on the
//! same GGUF (`tools/reference/make_golden.py` wrote the fixtures).

mod common;

use common::golden::{fixture, floats, ids};

use std::path::Path;

use lade::decode::PlainDecoder;
use lade::generate::{generate, StopRules};
use lade::loader::{load, LoadOptions};
use lade::model::{CausalLm, Session, WeightFormat};
use lade::sampling::Sampler;
use serde_json::Value;

/// f32 logits may differ from torch's by accumulation order only.
const F32_LOGIT_TOLERANCE: f32 = 2e-3;
/// Quantized paths (weights and activations rounded to 8 bits) may flip the greedy choice only
/// where the reference's top-2 margin is below this many logits.
const QUANT_MARGIN_BOUND: f32 = 0.5;
/// ... and their first-step top-20 logits stay within this of the reference.
const QUANT_LOGIT_TOLERANCE: f32 = 1.0;

/// Logits of every row of a causal forward over `tokens` on a fresh cache.
fn all_logits(s: &mut Session, tokens: &[u32]) -> Vec<Vec<f32>> {
    s.truncate(0);
    common::causal(s, tokens, true)
}

fn greedy(s: &mut Session, prompt: &[u32], n: usize) -> Vec<u32> {
    let sampler = Sampler::new(Default::default()).unwrap();
    let rules = StopRules {
        max_tokens: n,
        ..Default::default()
    };
    generate(
        s,
        &mut PlainDecoder,
        &sampler,
        prompt,
        &rules,
        None,
        &mut |_, _| {},
    )
    .unwrap()
    .token_ids
}

/// Checks the reference's top-20 logits within `tol` and the top-1 token: exactly, or with
/// `near_tie = Some(bound)` (quantized weights) a different top-1 only where the reference
/// ranks it within `bound` of its own top-1.
fn check_top20(ours: &[f32], golden: &Value, tol: f32, near_tie: Option<f32>, what: &str) -> f32 {
    let gi = ids(&golden["ids"]);
    let gl = floats(&golden["logits"]);
    let mut worst = 0f32;
    for (&id, &want) in gi.iter().zip(&gl) {
        let d = (ours[id as usize] - want).abs();
        worst = worst.max(d);
        assert!(
            d <= tol,
            "{what}: logit of token {id} is {} vs reference {want}",
            ours[id as usize]
        );
    }
    let top = common::argmax(ours);
    match near_tie {
        Some(bound) if top != gi[0] => {
            let rank = gi.iter().position(|&id| id == top);
            let margin = rank.map(|r| gl[0] - gl[r]);
            eprintln!(
                "{what}: first token {top}, reference {}, reference margin {margin:?}",
                gi[0]
            );
            assert!(
                margin.is_some_and(|m| m < bound),
                "{what}: top-1 token {top} where the reference's is {} by {margin:?} (bound {bound})",
                gi[0]
            );
        }
        _ => assert_eq!(top, gi[0], "{what}: top-1 token"),
    }
    worst
}

#[test]
fn f32_path_matches_transformers_logits_and_greedy_tokens() {
    let golden = fixture("golden_smollm2_f32.json");
    let model = common::model(WeightFormat::F32);
    let mut s = Session::new(model.model.clone(), 512).unwrap();
    let mut worst = 0f32;
    for rec in golden["records"].as_array().unwrap() {
        let name = rec["name"].as_str().unwrap();
        let prompt = ids(&rec["prompt_ids"]);
        // Our tokenizer reproduces the reference's ids for the exact same text.
        assert_eq!(
            model
                .tokenizer
                .encode(rec["text"].as_str().unwrap(), false)
                .unwrap(),
            prompt,
            "{name}: tokenization"
        );
        let logits = all_logits(&mut s, &prompt);
        worst = worst.max(check_top20(
            logits.last().unwrap(),
            &rec["first_top20"],
            F32_LOGIT_TOLERANCE,
            None,
            name,
        ));
        let want = ids(&rec["greedy_ids"]);
        assert_eq!(
            greedy(&mut s, &prompt, want.len()),
            want,
            "{name}: 64 greedy tokens"
        );
    }
    eprintln!("f32: worst top-20 logit difference {worst:.2e}");
}

fn quantized_path_diverges_only_at_near_ties(format: WeightFormat) {
    let golden = fixture("golden_smollm2_f32.json");
    let model = common::model(format);
    let mut s = Session::new(model.model.clone(), 512).unwrap();
    let mut identical = 0;
    for rec in golden["records"].as_array().unwrap() {
        let name = rec["name"].as_str().unwrap();
        let prompt = ids(&rec["prompt_ids"]);
        let logits = all_logits(&mut s, &prompt);
        check_top20(
            logits.last().unwrap(),
            &rec["first_top20"],
            QUANT_LOGIT_TOLERANCE,
            Some(QUANT_MARGIN_BOUND),
            name,
        );
        let want = ids(&rec["greedy_ids"]);
        let margins = floats(&rec["greedy_margins"]);
        let got = greedy(&mut s, &prompt, want.len());
        match got.iter().zip(&want).position(|(a, b)| a != b) {
            None => identical += 1,
            Some(i) => {
                eprintln!(
                    "{format:?} {name}: diverges at step {i}, reference margin {}",
                    margins[i]
                );
                assert!(
                margins[i] < QUANT_MARGIN_BOUND,
                "{format:?} {name}: diverged at step {i} where the reference margin is {} (bound {QUANT_MARGIN_BOUND})",
                margins[i]
                )
            }
        }
    }
    eprintln!("{format:?}: {identical} of 8 prompts identical for 64 tokens");
}

#[test]
fn q8_0_path_diverges_from_reference_only_at_near_ties() {
    quantized_path_diverges_only_at_near_ties(WeightFormat::Auto);
}

#[test]
fn native_q4_1_path_diverges_from_reference_only_at_near_ties() {
    quantized_path_diverges_only_at_near_ties(WeightFormat::Native);
}

#[test]
fn sharded_safetensors_directory_matches_transformers() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tiny-llama-hf");
    let golden = fixture("tiny_llama_hf_golden.json");
    let loaded = load(&dir, &LoadOptions::default()).unwrap();
    assert_eq!(loaded.file_format, "safetensors");
    assert!(loaded.tokenizer.chat_template().is_some());
    let mut s = Session::new(loaded.model.clone(), 256).unwrap();
    for rec in golden["records"].as_array().unwrap() {
        let input = ids(&rec["input_ids"]);
        let logits = all_logits(&mut s, &input);
        check_top20(
            &logits[0],
            &rec["first_pos_top20"],
            1e-3,
            None,
            "tiny first position",
        );
        check_top20(
            logits.last().unwrap(),
            &rec["last_pos_top20"],
            1e-3,
            None,
            "tiny last position",
        );
        let want = ids(&rec["greedy_ids"]);
        assert_eq!(greedy(&mut s, &input, want.len()), want, "tiny greedy");
    }
}
