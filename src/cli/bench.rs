//! `lade bench`: every prompt of a dataset under every decoding config, interleaved in one
//! process, with per-prompt speed ratios against greedy and step compression.

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use lade::decode::{Decoder, LookaheadConfig, LookaheadDecoder, PlainDecoder};
use lade::generate::{generate, StopRules};
use lade::model::Session;
use lade::sampling::Sampler;
use serde::Serialize;
use serde_json::json;

use super::generate::prompt_ids;
use super::ModelArgs;

#[derive(Debug, Args)]
pub struct BenchArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// JSONL file with a `prompt` field per line (e.g. ../shared/data/mt_bench.jsonl).
    #[arg(long)]
    pub dataset: PathBuf,
    /// Use only the first K prompts.
    #[arg(long)]
    pub limit: Option<usize>,
    /// Tokens to generate per prompt (end-of-generation ids are ignored so that every config
    /// decodes the same length).
    #[arg(long, default_value_t = 256)]
    pub max_tokens: usize,
    /// Wrap prompts in the model's chat template.
    #[arg(long)]
    pub chat: bool,
    /// Configs separated by `;`: `greedy` or `lookahead:W,N,G` (suffix `+ref` for the
    /// authors' mode, `-pool` to disable prompt n-grams). The first greedy one is the baseline.
    #[arg(long, default_value = "greedy;lookahead:8,4,8")]
    pub configs: String,
    /// Print the summary as JSON.
    #[arg(long)]
    pub json: bool,
    /// Write per-run CSV and summary JSON into this directory.
    #[arg(long)]
    pub out: Option<PathBuf>,
}

/// One decoding configuration of a benchmark.
#[derive(Debug, Clone, Serialize)]
pub struct BenchConfig {
    pub label: String,
    pub lookahead: Option<LookaheadConfig>,
}

impl BenchConfig {
    pub fn parse_list(s: &str) -> anyhow::Result<Vec<BenchConfig>> {
        let mut out = Vec::new();
        for item in s.split(';').map(str::trim).filter(|x| !x.is_empty()) {
            if item == "greedy" {
                out.push(BenchConfig {
                    label: "greedy".into(),
                    lookahead: None,
                });
                continue;
            }
            let spec = item
                .strip_prefix("lookahead:")
                .with_context(|| format!("unknown config `{item}` (greedy or lookahead:W,N,G)"))?;
            let (wng, compat) = match spec.strip_suffix("+ref") {
                Some(x) => (x, true),
                None => (spec, false),
            };
            let (wng, no_pool) = match wng.strip_suffix("-pool") {
                Some(x) => (x, true),
                None => (wng, false),
            };
            let (w, n, g) = LookaheadConfig::parse_wng(wng)?;
            let mut cfg = LookaheadConfig::new(w, n, g);
            cfg.reference_compat = compat;
            cfg.pool_from_prompt = !no_pool;
            cfg.validate()?;
            out.push(BenchConfig {
                label: item.to_string(),
                lookahead: Some(cfg),
            });
        }
        anyhow::ensure!(!out.is_empty(), "--configs is empty");
        Ok(out)
    }

    fn decoder(&self) -> anyhow::Result<Box<dyn Decoder>> {
        Ok(match self.lookahead {
            None => Box::new(PlainDecoder),
            Some(c) => Box::new(LookaheadDecoder::new(c)?),
        })
    }
}

#[derive(Debug, Clone, Serialize)]
struct Run {
    prompt: usize,
    config: String,
    tokens: usize,
    steps: usize,
    decode_ms: f64,
    tokens_per_s: f64,
    compression: f64,
    identical_to_greedy: Option<bool>,
    speedup: Option<f64>,
}

fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

pub fn run(args: BenchArgs) -> anyhow::Result<()> {
    let configs = BenchConfig::parse_list(&args.configs)?;
    let text = std::fs::read_to_string(&args.dataset)
        .with_context(|| format!("reading {}", args.dataset.display()))?;
    let mut prompts = Vec::new();
    for (i, line) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let v: serde_json::Value = serde_json::from_str(line)
            .with_context(|| format!("{} line {}", args.dataset.display(), i + 1))?;
        let p = v["prompt"]
            .as_str()
            .with_context(|| format!("line {} has no `prompt`", i + 1))?;
        prompts.push(p.to_string());
        if args.limit.is_some_and(|k| prompts.len() >= k) {
            break;
        }
    }
    anyhow::ensure!(
        !prompts.is_empty(),
        "no prompts in {}",
        args.dataset.display()
    );
    let loaded = args.model.load()?;
    let context = args
        .model
        .context(loaded.model.config.max_position_embeddings)?;
    let mut session = Session::new(loaded.model.clone(), context)?;
    let sampler = Sampler::new(Default::default())?;
    let rules = StopRules {
        max_tokens: args.max_tokens,
        ..Default::default()
    };

    let mut runs: Vec<Run> = Vec::new();
    for (pi, p) in prompts.iter().enumerate() {
        let ids = prompt_ids(&loaded.tokenizer, p, args.chat, None)?;
        let mut greedy: Option<(Vec<u32>, f64)> = None;
        for cfg in &configs {
            let mut dec = cfg.decoder()?;
            let g = generate(
                &mut session,
                dec.as_mut(),
                &sampler,
                &ids,
                &rules,
                None,
                &mut |_, _| {},
            )?;
            let s = &g.stats;
            let (identical, speedup) = match (&greedy, cfg.lookahead) {
                (Some((toks, tps)), Some(_)) => (
                    Some(*toks == g.token_ids),
                    Some(s.decode_tokens_per_s / tps),
                ),
                _ => (None, None),
            };
            if cfg.lookahead.is_none() && greedy.is_none() {
                greedy = Some((g.token_ids.clone(), s.decode_tokens_per_s));
            }
            args.model.log(&format!(
                "prompt {pi:>3} {:<24} {:>4} tokens {:>4} steps {:>8.1} tok/s compression {:.2}",
                cfg.label, s.generated_tokens, s.steps, s.decode_tokens_per_s, s.compression
            ));
            runs.push(Run {
                prompt: pi,
                config: cfg.label.clone(),
                tokens: s.generated_tokens,
                steps: s.steps,
                decode_ms: s.decode_ms,
                tokens_per_s: s.decode_tokens_per_s,
                compression: s.compression,
                identical_to_greedy: identical,
                speedup,
            });
        }
    }

    let device = "cpu";
    let mut summary = Vec::new();
    for cfg in &configs {
        let mine: Vec<&Run> = runs.iter().filter(|r| r.config == cfg.label).collect();
        let tokens: usize = mine.iter().map(|r| r.tokens).sum();
        let steps: usize = mine.iter().map(|r| r.steps).sum();
        summary.push(json!({
            "config": cfg.label,
            "prompts": mine.len(),
            "median_tokens_per_s": median(mine.iter().map(|r| r.tokens_per_s).collect()),
            // Per-prompt ratio, then the median (null for the baseline itself).
            "median_speedup_vs_greedy": median(mine.iter().filter_map(|r| r.speedup).collect()),
            "compression": tokens as f64 / steps.max(1) as f64,
            "mean_accepted_per_step": tokens as f64 / steps.max(1) as f64,
            "all_identical_to_greedy": mine.iter().all(|r| r.identical_to_greedy.unwrap_or(true)),
        }));
    }
    let report = json!({
        "dataset": args.dataset.display().to_string(),
        "model": loaded.path.display().to_string(),
        "device": device,
        "max_tokens": args.max_tokens,
        "chat": args.chat,
        "summary": summary,
    });
    if let Some(dir) = &args.out {
        std::fs::create_dir_all(dir)?;
        let mut csv = String::from("prompt,config,tokens,steps,decode_ms,tokens_per_s,compression,identical_to_greedy,speedup\n");
        for r in &runs {
            csv.push_str(&format!(
                "{},{},{},{},{:.3},{:.3},{:.4},{},{}\n",
                r.prompt,
                r.config,
                r.tokens,
                r.steps,
                r.decode_ms,
                r.tokens_per_s,
                r.compression,
                r.identical_to_greedy
                    .map_or(String::new(), |b| b.to_string()),
                r.speedup.map_or(String::new(), |x| format!("{x:.4}"))
            ));
        }
        std::fs::write(dir.join("runs.csv"), csv)?;
        std::fs::write(
            dir.join("summary.json"),
            serde_json::to_string_pretty(&report)?,
        )?;
    }
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        println!(
            "device: {device}; {} prompts; {} new tokens each",
            prompts.len(),
            args.max_tokens
        );
        println!("| config | median tok/s | median speedup vs greedy | compression (tokens/step) | identical to greedy |");
        println!("| --- | --- | --- | --- | --- |");
        for s in &summary {
            println!(
                "| {} | {:.1} | {} | {:.2} | {} |",
                s["config"].as_str().unwrap_or(""),
                s["median_tokens_per_s"].as_f64().unwrap_or(f64::NAN),
                s["median_speedup_vs_greedy"]
                    .as_f64()
                    .map_or("–".into(), |x| format!("{x:.2}×")),
                s["compression"].as_f64().unwrap_or(f64::NAN),
                if s["all_identical_to_greedy"].as_bool() == Some(true) {
                    "yes"
                } else {
                    "NO"
                },
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_config_lists() {
        let c = BenchConfig::parse_list(
            "greedy; lookahead:15,5,15;lookahead:7,4,7+ref;lookahead:5,3,5-pool",
        )
        .unwrap();
        assert_eq!(c.len(), 4);
        assert!(c[0].lookahead.is_none());
        let l = c[1].lookahead.unwrap();
        assert_eq!((l.window, l.ngram, l.guesses), (15, 5, 15));
        assert!(c[2].lookahead.unwrap().reference_compat);
        assert!(!c[3].lookahead.unwrap().pool_from_prompt);
        assert!(BenchConfig::parse_list("lookahead:1,1,1").is_err());
        assert!(BenchConfig::parse_list("beam:3").is_err());
        assert!(BenchConfig::parse_list(" ; ").is_err());
    }

    #[test]
    fn median_of_even_and_odd_lists() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(vec![4.0, 1.0, 2.0, 3.0]), 2.5);
        assert!(median(vec![]).is_nan());
    }
}
