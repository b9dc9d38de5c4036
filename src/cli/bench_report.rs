//! Results of `lade bench`: per-run records, their CSV form (written, and read back by
//! `--from-runs`), per-config summaries and the markdown tables.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::Context;
use serde::Serialize;

use super::bench_config::{BenchConfig, ABLATION};

/// One prompt decoded with one config.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Run {
    pub prompt: usize,
    pub config: String,
    pub tokens: usize,
    pub steps: usize,
    pub decode_ms: f64,
    pub tokens_per_s: f64,
    pub compression: f64,
    /// Whether the tokens equal the greedy baseline's (none for the baseline itself).
    pub identical_to_greedy: Option<bool>,
    /// `tokens_per_s / greedy tokens_per_s` on the same prompt.
    pub speedup: Option<f64>,
    /// The decoder that ran (what `auto` picked, say); empty in old CSV files.
    pub decoder: String,
    /// Query rows of all forward passes after the prefill (0 in old CSV files).
    pub rows: usize,
    /// Of `decode_ms`, the time in the model (0 in old CSV files).
    pub model_ms: f64,
    /// Steps by their query rows (not in the CSV: empty when read back).
    pub steps_by_rows: BTreeMap<usize, usize>,
}

const CSV_HEADER: &str =
    "prompt,config,tokens,steps,decode_ms,tokens_per_s,compression,identical_to_greedy,speedup,decoder,rows,model_ms";

/// Writes runs as CSV (labels contain no commas: `;`-free config syntax uses `,` inside
/// W,N,G, so the config and decoder columns are quoted).
pub fn write_csv(path: &Path, runs: &[Run]) -> anyhow::Result<()> {
    let mut csv = format!("{CSV_HEADER}\n");
    for r in runs {
        csv.push_str(&format!(
            "{},\"{}\",{},{},{:.3},{:.3},{:.4},{},{},\"{}\",{},{:.3}\n",
            r.prompt,
            r.config,
            r.tokens,
            r.steps,
            r.decode_ms,
            r.tokens_per_s,
            r.compression,
            r.identical_to_greedy
                .map_or(String::new(), |b| b.to_string()),
            r.speedup.map_or(String::new(), |x| format!("{x:.4}")),
            r.decoder,
            r.rows,
            r.model_ms,
        ));
    }
    std::fs::write(path, csv).with_context(|| format!("writing {}", path.display()))
}

/// Splits one CSV line, honouring double quotes (no escaped quotes inside fields).
fn split_csv(line: &str) -> Vec<String> {
    let mut out = vec![String::new()];
    let mut quoted = false;
    for ch in line.chars() {
        match ch {
            '"' => quoted = !quoted,
            ',' if !quoted => out.push(String::new()),
            c => out.last_mut().expect("one field").push(c),
        }
    }
    out
}

/// Reads runs written by [`write_csv`], or by older versions of `lade bench` (whose config
/// column was unquoted: the commas of `W,N,G` then split it, which is undone here).
pub fn read_csv(path: &Path) -> anyhow::Result<Vec<Run>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let mut lines = text.lines();
    let header = split_csv(lines.next().context("empty CSV")?);
    let want = [
        "prompt",
        "config",
        "tokens",
        "steps",
        "decode_ms",
        "tokens_per_s",
        "compression",
        "identical_to_greedy",
        "speedup",
    ];
    anyhow::ensure!(
        header.len() >= want.len() && header[..want.len()] == want,
        "{} is not a runs.csv of lade bench",
        path.display()
    );
    let mut runs = Vec::new();
    for (i, line) in lines.enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let ctx = || format!("{} line {}", path.display(), i + 2);
        let mut f = split_csv(line);
        // Unquoted `lookahead:W,N,G` spans three fields.
        let extra = f.len().saturating_sub(header.len());
        if extra > 0 {
            let joined = f[1..=1 + extra].join(",");
            f.splice(1..=1 + extra, [joined]);
        }
        anyhow::ensure!(f.len() >= want.len(), "{}: too few fields", ctx());
        let opt = |s: &str| (!s.is_empty()).then(|| s.to_string());
        runs.push(Run {
            prompt: f[0].parse().with_context(ctx)?,
            config: f[1].clone(),
            tokens: f[2].parse().with_context(ctx)?,
            steps: f[3].parse().with_context(ctx)?,
            decode_ms: f[4].parse().with_context(ctx)?,
            tokens_per_s: f[5].parse().with_context(ctx)?,
            compression: f[6].parse().with_context(ctx)?,
            identical_to_greedy: opt(&f[7])
                .map(|s| s.parse())
                .transpose()
                .with_context(ctx)?,
            speedup: opt(&f[8])
                .map(|s| s.parse())
                .transpose()
                .with_context(ctx)?,
            decoder: f.get(9).cloned().unwrap_or_default(),
            rows: f
                .get(10)
                .map(|s| s.parse())
                .transpose()
                .with_context(ctx)?
                .unwrap_or(0),
            model_ms: f
                .get(11)
                .map(|s| s.parse())
                .transpose()
                .with_context(ctx)?
                .unwrap_or(0.0),
            steps_by_rows: BTreeMap::new(),
        });
    }
    Ok(runs)
}

pub fn median(mut v: Vec<f64>) -> f64 {
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

/// Aggregates of one config over all prompts.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub config: String,
    pub prompts: usize,
    pub median_tokens_per_s: f64,
    /// Median over prompts of the per-prompt ratio to greedy (none for the baseline).
    pub median_speedup_vs_greedy: Option<f64>,
    /// All tokens over all steps.
    pub compression: f64,
    /// All query rows over all steps: the step's size, what a step costs on the device
    /// (0 when the runs did not record it).
    pub rows_per_step: f64,
    /// Host time per step in ms (decode time outside the model, over all steps): the
    /// decoder's own work, which a lookahead step adds to the model's.
    pub host_ms_per_step: f64,
    /// Steps by their query rows, over all prompts (what `auto`'s prior needs of a config
    /// whose steps vary in size).
    pub steps_by_rows: BTreeMap<usize, usize>,
    pub all_identical_to_greedy: bool,
    /// Decoders that ran under this label with their prompt counts (e.g. `plain: 20` for auto).
    pub decoders: BTreeMap<String, usize>,
}

/// One summary per config, in the order of `configs`.
pub fn summarize(configs: &[BenchConfig], runs: &[Run]) -> Vec<Summary> {
    configs
        .iter()
        .map(|cfg| {
            let mine: Vec<&Run> = runs.iter().filter(|r| r.config == cfg.label).collect();
            let tokens: usize = mine.iter().map(|r| r.tokens).sum();
            let steps: usize = mine.iter().map(|r| r.steps).sum();
            let rows: usize = mine.iter().map(|r| r.rows).sum();
            let host_ms: f64 = mine.iter().map(|r| r.decode_ms - r.model_ms).sum();
            let speedups: Vec<f64> = mine.iter().filter_map(|r| r.speedup).collect();
            let mut decoders = BTreeMap::new();
            let mut steps_by_rows = BTreeMap::new();
            for (&r, &n) in mine.iter().flat_map(|r| &r.steps_by_rows) {
                *steps_by_rows.entry(r).or_insert(0) += n;
            }
            for r in mine.iter().filter(|r| !r.decoder.is_empty()) {
                *decoders.entry(r.decoder.clone()).or_insert(0) += 1;
            }
            Summary {
                config: cfg.label.clone(),
                prompts: mine.len(),
                median_tokens_per_s: median(mine.iter().map(|r| r.tokens_per_s).collect()),
                median_speedup_vs_greedy: (!speedups.is_empty()).then(|| median(speedups)),
                compression: tokens as f64 / steps.max(1) as f64,
                rows_per_step: rows as f64 / steps.max(1) as f64,
                host_ms_per_step: host_ms / steps.max(1) as f64,
                steps_by_rows,
                all_identical_to_greedy: mine.iter().all(|r| r.identical_to_greedy.unwrap_or(true)),
                decoders,
            }
        })
        .collect()
}

fn speedup_cell(s: Option<f64>) -> String {
    s.map_or("–".into(), |x| format!("{x:.2}×"))
}

/// The main table: one row per config.
pub fn summary_markdown(summary: &[Summary]) -> String {
    let mut t = String::from(
        "| config | median tok/s | median speedup vs greedy | compression (tokens/step) | rows/step | identical to greedy |\n\
         | --- | --- | --- | --- | --- | --- |\n",
    );
    for s in summary {
        let picked = if s.config == "auto" && !s.decoders.is_empty() {
            let d: Vec<String> = s
                .decoders
                .iter()
                .map(|(k, v)| format!("{k} ×{v}"))
                .collect();
            format!(" (ran: {})", d.join(", "))
        } else {
            String::new()
        };
        t.push_str(&format!(
            "| {}{picked} | {:.1} | {} | {:.2} | {:.2} | {} |\n",
            s.config,
            s.median_tokens_per_s,
            speedup_cell(s.median_speedup_vs_greedy),
            s.compression,
            s.rows_per_step,
            if s.all_identical_to_greedy {
                "yes"
            } else {
                "NO"
            },
        ));
    }
    t
}

/// The ablation rows present in `summary`, as `(row name, summary)` in the paper's order.
pub fn ablation_rows(summary: &[Summary]) -> Vec<(&'static str, &Summary)> {
    ABLATION
        .iter()
        .filter_map(|(label, name)| {
            summary
                .iter()
                .find(|s| s.config == *label && s.prompts > 0)
                .map(|s| (*name, s))
        })
        .collect()
}

/// The ablation as a markdown table (like Table 3 of the lookahead paper).
pub fn ablation_markdown(summary: &[Summary], context: &str) -> String {
    let mut t = format!(
        "Ablation ({context}); step compression S = generated tokens / forward steps.\n\n\
         | variant | config | S (tokens/step) | median speedup vs greedy | identical to greedy |\n\
         | --- | --- | --- | --- | --- |\n"
    );
    for (name, s) in ablation_rows(summary) {
        t.push_str(&format!(
            "| {name} | `{}` | {:.2} | {} | {} |\n",
            s.config,
            s.compression,
            speedup_cell(s.median_speedup_vs_greedy),
            if s.all_identical_to_greedy {
                "yes"
            } else {
                "NO"
            },
        ));
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(prompt: usize, config: &str, tokens: usize, steps: usize, speedup: Option<f64>) -> Run {
        Run {
            prompt,
            config: config.into(),
            tokens,
            steps,
            decode_ms: 1000.0,
            tokens_per_s: tokens as f64,
            compression: tokens as f64 / steps as f64,
            identical_to_greedy: speedup.map(|_| true),
            speedup,
            decoder: String::new(),
            // Lookahead runs: steps of three rows.
            rows: if speedup.is_some() { 3 * steps } else { steps },
            steps_by_rows: BTreeMap::new(),
            model_ms: 900.0,
        }
    }

    #[test]
    fn median_of_even_and_odd_lists() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(vec![4.0, 1.0, 2.0, 3.0]), 2.5);
        assert!(median(vec![]).is_nan());
    }

    #[test]
    fn csv_round_trips_and_old_unquoted_files_are_read() {
        let dir = std::env::temp_dir().join(format!("lade-bench-csv-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut runs = vec![
            run(0, "greedy", 10, 10, None),
            run(0, "lookahead:15,5,15+ref", 10, 5, Some(0.5)),
        ];
        runs[1].decoder = "lookahead(15,5,15)".into();
        let p = dir.join("runs.csv");
        write_csv(&p, &runs).unwrap();
        let back = read_csv(&p).unwrap();
        assert_eq!(back.len(), 2);
        assert_eq!(back[1].config, "lookahead:15,5,15+ref");
        assert_eq!(back[1].speedup, Some(0.5));
        assert_eq!(back[1].identical_to_greedy, Some(true));
        assert_eq!(back[1].decoder, "lookahead(15,5,15)");
        // The format of earlier versions: no quotes, no decoder column.
        let old = "prompt,config,tokens,steps,decode_ms,tokens_per_s,compression,identical_to_greedy,speedup\n\
                   0,greedy,256,256,2700.000,94.800,1.0000,,\n\
                   0,lookahead:4,3,4,256,136,16400.000,15.600,1.8824,true,0.1646\n";
        std::fs::write(&p, old).unwrap();
        let back = read_csv(&p).unwrap();
        assert_eq!(back[1].config, "lookahead:4,3,4");
        assert_eq!((back[1].tokens, back[1].steps), (256, 136));
        assert_eq!(back[1].speedup, Some(0.1646));
        assert_eq!(back[0].speedup, None);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn summaries_pool_tokens_and_steps_and_take_median_speedups() {
        let configs = BenchConfig::parse_list("greedy;lookahead:4,3,4").unwrap();
        let runs = vec![
            run(0, "greedy", 10, 10, None),
            run(1, "greedy", 10, 10, None),
            run(0, "lookahead:4,3,4", 10, 4, Some(0.2)),
            run(1, "lookahead:4,3,4", 10, 6, Some(0.4)),
        ];
        let s = summarize(&configs, &runs);
        assert_eq!(s[0].compression, 1.0);
        assert_eq!(s[0].median_speedup_vs_greedy, None);
        assert!(
            (s[1].compression - 2.0).abs() < 1e-12,
            "20 tokens / 10 steps"
        );
        assert!((s[1].median_speedup_vs_greedy.unwrap() - 0.3).abs() < 1e-12);
        let md = summary_markdown(&s);
        assert!(
            md.contains("| lookahead:4,3,4 | 10.0 | 0.30× | 2.00 | 3.00 | yes |"),
            "{md}"
        );
        let configs = BenchConfig::parse_list("ablation").unwrap();
        let runs = vec![run(0, "lookahead:15,5,15", 10, 5, Some(0.1))];
        let s = summarize(&configs, &runs);
        let rows = ablation_rows(&s);
        assert_eq!(rows.len(), 1, "configs without runs are left out");
        let md = ablation_markdown(&s, "test");
        assert!(md.contains("| lookahead, balanced + prompt as reference | `lookahead:15,5,15` | 2.00 | 0.10× | yes |"), "{md}");
    }
}
