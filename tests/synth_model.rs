//! Random-weight GGUF files (`lade synth-model`): the written file reads back with candle's
//! GGUF reader with the names, dimensions, types and metadata llama.cpp and lade expect; lade
//! loads it and decodes with finite, spread-out logits, lookahead equal to plain greedy; the
//! bytes depend on the seed only; bad input fails with a clear message and leaves no file.

mod common;

use std::path::{Path, PathBuf};

use candle_core::quantized::gguf_file::{Content, Value};
use candle_core::quantized::GgmlDType;
use lade::decode::{LookaheadConfig, PlainDecoder, SpeculativeDecoder};
use lade::generate::{generate, StopRules};
use lade::loader::{load, LoadOptions};
use lade::model::{AttentionMask, Batch, CausalLm, Session};
use lade::sampling::{Sampler, SamplingParams};
use lade::synth::{self, Arch, ModelShape, Plan, SynthSpec, TokenizerSource};

use common::run_lade as lade;

fn tmp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("lade-synth-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

/// hidden 64, ffn 160, 2 layers, 4 heads / 2 kv heads, vocabulary 320.
fn tiny(arch: Arch) -> ModelShape {
    let mut s = ModelShape::custom(64, 160, 2, 4, None, 320).unwrap();
    s.kv_heads = 2;
    s.ctx = 256;
    s.arch = arch;
    s
}

fn spec(shape: ModelShape, seed: u64) -> SynthSpec {
    SynthSpec {
        shape,
        seed,
        tokenizer: TokenizerSource::Builtin,
    }
}

fn write(shape: ModelShape, seed: u64, name: &str) -> PathBuf {
    let path = tmp(name);
    let plan = Plan::new(&spec(shape, seed)).unwrap();
    let written = synth::write_model(&plan, &path, &mut |_| {}).unwrap();
    assert_eq!(std::fs::metadata(&path).unwrap().len(), written.bytes);
    assert!(!synth::partial_path(&path).exists());
    path
}

fn in_memory(shape: ModelShape, seed: u64) -> Vec<u8> {
    Plan::new(&spec(shape, seed))
        .unwrap()
        .write_to(Vec::new(), &mut |_| {})
        .unwrap()
}

fn read(path: &Path) -> Content {
    let mut f = std::fs::File::open(path).unwrap();
    Content::read(&mut f).unwrap()
}

fn meta_u32(ct: &Content, key: &str) -> u32 {
    ct.metadata
        .get(key)
        .unwrap_or_else(|| panic!("no {key}"))
        .to_u32()
        .unwrap()
}

/// Name -> (dims, type) expected of a tiny model.
fn expected_tensors(s: &ModelShape) -> Vec<(String, Vec<usize>, GgmlDType)> {
    let (h, f, v, q, kv) = (s.hidden, s.ffn, s.vocab, s.q_dim(), s.kv_dim());
    let mut out = vec![
        ("token_embd.weight".to_string(), vec![v, h], GgmlDType::F16),
        ("output_norm.weight".to_string(), vec![h], GgmlDType::F32),
        ("output.weight".to_string(), vec![v, h], GgmlDType::F16),
    ];
    for i in 0..s.layers {
        let n = |p: &str| format!("blk.{i}.{p}");
        out.extend([
            (n("attn_norm.weight"), vec![h], GgmlDType::F32),
            (n("attn_q.weight"), vec![q, h], GgmlDType::F16),
            (n("attn_k.weight"), vec![kv, h], GgmlDType::F16),
            (n("attn_v.weight"), vec![kv, h], GgmlDType::F16),
            (n("attn_output.weight"), vec![h, q], GgmlDType::F16),
            (n("ffn_norm.weight"), vec![h], GgmlDType::F32),
            (n("ffn_gate.weight"), vec![f, h], GgmlDType::F16),
            (n("ffn_up.weight"), vec![f, h], GgmlDType::F16),
            (n("ffn_down.weight"), vec![h, f], GgmlDType::F16),
        ]);
        if s.arch == Arch::Qwen2 {
            out.extend([
                (n("attn_q.bias"), vec![q], GgmlDType::F32),
                (n("attn_k.bias"), vec![kv], GgmlDType::F32),
                (n("attn_v.bias"), vec![kv], GgmlDType::F32),
            ]);
        }
    }
    out
}

fn check_directory(ct: &Content, s: &ModelShape) {
    let want = expected_tensors(s);
    assert_eq!(ct.tensor_infos.len(), want.len());
    for (name, dims, dtype) in want {
        let info = ct
            .tensor_infos
            .get(&name)
            .unwrap_or_else(|| panic!("no tensor {name}"));
        assert_eq!(info.shape.dims(), &dims[..], "{name}");
        assert_eq!(info.ggml_dtype, dtype, "{name}");
    }
    let arch = s.arch.gguf_name();
    let k = |key: &str| format!("{arch}.{key}");
    assert_eq!(
        ct.metadata["general.architecture"].to_string().unwrap(),
        arch
    );
    assert_eq!(
        ct.metadata["general.name"].to_string().unwrap(),
        &format!("random-weight {}", s.name)
    );
    assert_eq!(meta_u32(ct, &k("embedding_length")), s.hidden as u32);
    assert_eq!(meta_u32(ct, &k("feed_forward_length")), s.ffn as u32);
    assert_eq!(meta_u32(ct, &k("block_count")), s.layers as u32);
    assert_eq!(meta_u32(ct, &k("attention.head_count")), s.heads as u32);
    assert_eq!(
        meta_u32(ct, &k("attention.head_count_kv")),
        s.kv_heads as u32
    );
    assert_eq!(meta_u32(ct, &k("context_length")), s.ctx as u32);
    assert_eq!(meta_u32(ct, "general.alignment"), 32);
    let theta = ct.metadata[&k("rope.freq_base")].to_f32().unwrap();
    assert_eq!(theta, s.rope_theta);
    let tokens = ct.metadata["tokenizer.ggml.tokens"].to_vec().unwrap();
    assert_eq!(tokens.len(), s.vocab);
    assert_eq!(
        ct.metadata["tokenizer.ggml.model"].to_string().unwrap(),
        "gpt2"
    );
}

#[test]
fn tiny_llama_reads_back_and_values_are_scaled() {
    let s = tiny(Arch::Llama);
    let path = write(s.clone(), 1, "llama.gguf");
    let ct = read(&path);
    check_directory(&ct, &s);
    // Every tensor's data is inside the file and aligned.
    let len = std::fs::metadata(&path).unwrap().len();
    for (name, info) in &ct.tensor_infos {
        assert_eq!(info.offset % 32, 0, "{name}");
        assert!(ct.tensor_data_offset + info.offset < len, "{name}");
    }
    let mut f = std::fs::File::open(&path).unwrap();
    let dev = candle_core::Device::Cpu;
    let stats = |name: &str, f: &mut std::fs::File| {
        let t = ct.tensor(f, name, &dev).unwrap().dequantize(&dev).unwrap();
        let v: Vec<f32> = t.flatten_all().unwrap().to_vec1().unwrap();
        let mean = v.iter().sum::<f32>() / v.len() as f32;
        let std = (v.iter().map(|x| (x - mean).powi(2)).sum::<f32>() / v.len() as f32).sqrt();
        (mean, std)
    };
    let (_, std) = stats("token_embd.weight", &mut f);
    assert!((std - 1.0).abs() < 0.05, "embedding std {std}");
    let (_, std) = stats("blk.1.ffn_down.weight", &mut f);
    let want = 1.0 / (s.ffn as f32).sqrt();
    assert!((std - want).abs() < 0.05 * want, "ffn_down std {std}");
    let (mean, std) = stats("blk.0.attn_norm.weight", &mut f);
    assert!((mean - 1.0).abs() < 0.02 && std < 0.05, "norm {mean} {std}");
}

#[test]
fn tiny_qwen2_has_qkv_biases() {
    let s = tiny(Arch::Qwen2);
    let path = write(s.clone(), 1, "qwen2.gguf");
    let ct = read(&path);
    check_directory(&ct, &s);
    assert_eq!(meta_u32(&ct, "qwen2.attention.key_length"), 16);
}

#[test]
fn bytes_depend_on_the_seed_only() {
    let a = in_memory(tiny(Arch::Llama), 5);
    let one_thread = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .unwrap()
        .install(|| in_memory(tiny(Arch::Llama), 5));
    assert!(a == one_thread, "the thread count changed the bytes");
    let b = in_memory(tiny(Arch::Llama), 6);
    assert_eq!(a.len(), b.len());
    // Header equal, data different.
    let header = read_header_len(&a);
    assert_eq!(a[..header], b[..header]);
    let differing = a[header..]
        .iter()
        .zip(&b[header..])
        .filter(|(x, y)| x != y)
        .count();
    assert!(
        differing > (a.len() - header) / 2,
        "{differing} bytes differ"
    );
}

fn read_header_len(bytes: &[u8]) -> usize {
    let ct = Content::read(&mut std::io::Cursor::new(bytes)).unwrap();
    ct.tensor_data_offset as usize
}

fn greedy_run(s: &mut Session, decoder: &mut dyn lade::decode::Decoder, p: &[u32]) -> Vec<u32> {
    let rules = StopRules {
        max_tokens: 40,
        ..Default::default()
    };
    let sampler = Sampler::new(SamplingParams::greedy()).unwrap();
    generate(s, decoder, &sampler, p, &rules, None, &mut |_, _| {})
        .unwrap()
        .token_ids
}

#[test]
fn lade_decodes_it_with_sane_logits_and_lossless_lookahead() {
    let mut shape = tiny(Arch::Llama);
    shape.layers = 32;
    let path = write(shape, 3, "decode.gguf");
    let model = load(&path, &LoadOptions::default()).unwrap();
    assert_eq!(model.model.config.num_kv_heads, 2);
    let mut session = Session::new(model.model.clone(), 256).unwrap();
    let prompt = model
        .tokenizer
        .encode("the cat sat on the mat", false)
        .unwrap();
    assert!(prompt.len() > 5);
    let positions: Vec<u32> = (0..prompt.len() as u32).collect();
    let rows: Vec<usize> = (0..prompt.len()).collect();
    let logits = session
        .forward(&Batch {
            tokens: &prompt,
            positions: &positions,
            mask: &AttentionMask::Causal,
            logit_rows: &rows,
        })
        .unwrap();
    for r in 0..logits.rows() {
        let row = logits.row(r);
        assert!(row.iter().all(|x| x.is_finite()), "row {r} not finite");
        let mean = row.iter().sum::<f32>() / row.len() as f32;
        let std = (row.iter().map(|x| (x - mean).powi(2)).sum::<f32>() / row.len() as f32).sqrt();
        eprintln!("row {r}: logit std {std:.3}");
        // Spread out but not so much that softmax is one-hot.
        assert!((0.3..5.0).contains(&std), "row {r}: logit std {std}");
    }
    assert_ne!(logits.row(0), logits.row(1));

    let prompts = [
        prompt.clone(),
        model.tokenizer.encode("in the beginning", false).unwrap(),
    ];
    for p in &prompts {
        let plain = greedy_run(&mut session, &mut PlainDecoder, p);
        assert_eq!(plain.len(), 40);
        for (w, n, g) in [(4, 3, 4), (2, 2, 3), (5, 5, 5)] {
            let mut la = SpeculativeDecoder::lookahead(LookaheadConfig::new(w, n, g)).unwrap();
            let out = greedy_run(&mut session, &mut la, p);
            assert_eq!(out, plain, "W={w} N={n} G={g}");
        }
    }
}

#[test]
fn cli_writes_a_model_that_generate_and_profile_run() {
    let out = tmp("cli.gguf");
    let _ = std::fs::remove_file(&out);
    let o = out.to_str().unwrap();
    let args = [
        "synth-model",
        "--out",
        o,
        "--hidden",
        "64",
        "--ffn",
        "128",
        "--layers",
        "2",
        "--heads",
        "4",
        "--kv-heads",
        "2",
        "--vocab",
        "300",
        "--ctx",
        "512",
        "--seed",
        "9",
    ];
    let (ok, _, err) = lade(&args);
    assert!(ok, "{err}");
    assert!(err.contains("wrote"), "{err}");
    let ct = read(&out);
    assert_eq!(meta_u32(&ct, "llama.attention.head_count_kv"), 2);
    assert_eq!(meta_u32(&ct, "llama.vocab_size"), 300);

    // An existing file is kept unless --force.
    let (ok, _, err) = lade(&args);
    assert!(!ok && err.contains("--force"), "{err}");
    let mut forced = args.to_vec();
    forced.push("--force");
    let (ok, _, err) = lade(&forced);
    assert!(ok, "{err}");

    let (ok, text, err) = lade(&[
        "generate",
        "--model",
        o,
        "--device",
        "cpu",
        "--prompt",
        "hi",
        "--max-tokens",
        "8",
        "--temperature",
        "0",
        "--json",
        "-q",
    ]);
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(text.trim()).unwrap();
    assert_eq!(v["token_ids"].as_array().unwrap().len(), 8, "{text}");
    let (ok, text, err) = lade(&[
        "profile",
        "--model",
        o,
        "--device",
        "cpu",
        "--past",
        "32",
        "--repeat",
        "2",
        "--shapes",
        "plain;2,3,2",
        "-q",
    ]);
    assert!(ok, "{err}");
    assert!(text.contains("lookahead 2,3,2"), "{text}");
}

/// Fails cleanly: non-zero exit, an `error:` line mentioning `needle`, no panic.
fn fails_with(args: &[&str], needle: &str) {
    let (ok, _, err) = lade(args);
    assert!(!ok, "{args:?} should fail");
    assert!(!err.contains("panicked"), "{args:?} panicked: {err}");
    let line = err
        .lines()
        .find(|l| l.starts_with("error:"))
        .unwrap_or_else(|| panic!("{args:?}: no error line in {err}"));
    assert!(line.contains(needle), "{args:?}: {line:?} lacks {needle:?}");
}

#[test]
fn list_names_every_shape_with_its_size() {
    let (ok, text, err) = lade(&["synth-model", "--list"]);
    assert!(ok, "{err}");
    for name in synth::shape_names() {
        assert!(
            text.contains(&format!("| {name} |")),
            "{name} missing: {text}"
        );
    }
    assert!(text.contains("6.74 B"), "{text}");
    assert!(text.contains("13.48 GB"), "{text}");
}

#[test]
fn bad_input_fails_clearly_and_leaves_no_file() {
    let out = tmp("bad.gguf");
    let o = out.to_str().unwrap();
    fails_with(
        &["synth-model", "--shape", "llama-9000", "--out", o],
        "known: llama2-7b, llama3-8b, 1b-gqa, 13b, 70b-layer",
    );
    let custom = |heads: &'static str, kv: &'static str, vocab: &'static str| {
        [
            "synth-model",
            "--out",
            o,
            "--hidden",
            "64",
            "--ffn",
            "128",
            "--layers",
            "1",
            "--heads",
            heads,
            "--kv-heads",
            kv,
            "--vocab",
            vocab,
        ]
    };
    fails_with(
        &custom("6", "6", "300"),
        "6 attention heads do not divide the hidden size 64",
    );
    fails_with(
        &custom("4", "3", "300"),
        "3 key/value heads do not divide 4 attention heads",
    );
    fails_with(&custom("4", "4", "100"), "smaller than the tokenizer");
    fails_with(
        &["synth-model", "--out", o, "--hidden", "64"],
        "missing --ffn",
    );
    fails_with(
        &[
            "synth-model",
            "--shape",
            "1b-gqa",
            "--out",
            "/nonexistent-dir/x.gguf",
        ],
        "cannot create /nonexistent-dir/x.gguf.partial",
    );
    assert!(!out.exists() && !synth::partial_path(&out).exists());
}

/// A full disk (`/dev/full` behind the partial file's name) gives a clear error and the
/// partial file is removed.
#[cfg(target_os = "linux")]
#[test]
fn a_full_disk_is_reported_and_cleaned_up() {
    if !Path::new("/dev/full").exists() {
        return;
    }
    let out = tmp("full.gguf");
    let partial = synth::partial_path(&out);
    let _ = std::fs::remove_file(&partial);
    std::os::unix::fs::symlink("/dev/full", &partial).unwrap();
    fails_with(
        &[
            "synth-model",
            "--out",
            out.to_str().unwrap(),
            "--hidden",
            "64",
            "--ffn",
            "128",
            "--layers",
            "1",
            "--heads",
            "4",
            "--vocab",
            "300",
        ],
        "disk is full",
    );
    assert!(std::fs::symlink_metadata(&partial).is_err(), "partial left");
    assert!(!out.exists());
}

#[test]
fn tokenizer_can_be_copied_from_another_file() {
    let s = tiny(Arch::Llama);
    let src = write(s.clone(), 1, "tok-src.gguf");
    let mut bigger = s.clone();
    bigger.vocab = 400;
    let plan = Plan::new(&SynthSpec {
        shape: bigger,
        seed: 2,
        tokenizer: TokenizerSource::CopyFrom(src.clone()),
    })
    .unwrap();
    let path = tmp("tok-copy.gguf");
    synth::write_model(&plan, &path, &mut |_| {}).unwrap();
    let ct = read(&path);
    let tokens = ct.metadata["tokenizer.ggml.tokens"].to_vec().unwrap();
    assert_eq!(tokens.len(), 400);
    assert!(matches!(&tokens[399], Value::String(t) if t == "<|unused_399|>"));
    assert_eq!(
        ct.metadata["tokenizer.ggml.token_type"]
            .to_vec()
            .unwrap()
            .len(),
        400
    );
    let model = load(&path, &LoadOptions::default()).unwrap();
    assert_eq!(
        model.tokenizer.encode("the cat", false).unwrap(),
        load(&src, &LoadOptions::default())
            .unwrap()
            .tokenizer
            .encode("the cat", false)
            .unwrap()
    );
    // A tokenizer larger than the vocabulary is refused.
    let mut smaller = s;
    smaller.vocab = 280;
    let err = Plan::new(&SynthSpec {
        shape: smaller,
        seed: 2,
        tokenizer: TokenizerSource::CopyFrom(src),
    })
    .err()
    .unwrap()
    .to_string();
    assert!(
        err.contains("has 320 tokens, more than the vocabulary of 280"),
        "{err}"
    );
}
