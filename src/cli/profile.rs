//! `lade profile`: the time of one decode step as a function of its shape (a plain one-row
//! step, and warm lookahead steps W,N,G with their real tree mask), and on the GPU where that
//! time goes, kernel by kernel, plus the same steps with a materialised attention mask.

use std::time::Instant;

use anyhow::Context;
use clap::Args;
use lade::decode::lookahead::synthetic_step;
use lade::decode::speculative::StepTree;
use lade::decode::LookaheadConfig;
use lade::model::CausalLm;
use lade::tune::{fill_cache, timing_id};
use serde_json::json;

use super::ModelArgs;

#[derive(Debug, Args)]
pub struct ProfileArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// Cached positions before the timed step.
    #[arg(long, default_value_t = 512)]
    pub past: usize,
    /// Step shapes separated by `;`: `plain` (one row) or `W,N,G` (a warm lookahead step with
    /// all G candidates, laid out as the decoder does: (W + G)(N - 1) rows).
    #[arg(
        long,
        default_value = "plain;2,3,2;4,3,4;7,4,7;10,5,10;15,5,15;20,5,20;30,5,30"
    )]
    pub shapes: String,
    /// Timed runs per shape; the median is reported.
    #[arg(long, default_value_t = 30)]
    pub repeat: usize,
    /// Per-kernel breakdown of every shape (GPU only): eager launches timed with events, and
    /// each kernel's cost inside the replayed step (the step less the same step without it).
    #[arg(long)]
    pub kernels: bool,
    /// Print JSON instead of markdown tables.
    #[arg(long)]
    pub json: bool,
}

/// One profiled step shape.
struct Shape {
    label: String,
    layout: StepTree,
}

/// The shapes of `--shapes`, checked before the model loads: `None` for `plain`, else W,N,G.
fn parse_shapes(s: &str) -> anyhow::Result<Vec<Option<(usize, usize, usize)>>> {
    let mut out = Vec::new();
    for part in s.split(';').map(str::trim).filter(|p| !p.is_empty()) {
        if part == "plain" {
            out.push(None);
            continue;
        }
        let (w, n, g) = LookaheadConfig::parse_wng(part)
            .with_context(|| format!("--shapes: `{part}` is neither `plain` nor W,N,G"))?;
        LookaheadConfig::new(w, n, g)
            .validate()
            .with_context(|| format!("--shapes: `{part}`"))?;
        out.push(Some((w, n, g)));
    }
    anyhow::ensure!(!out.is_empty(), "--shapes is empty");
    Ok(out)
}

/// The step of each shape after `past` positions, with token ids of a `vocab`-token model.
fn build_shapes(specs: &[Option<(usize, usize, usize)>], past: usize, vocab: usize) -> Vec<Shape> {
    specs
        .iter()
        .map(|spec| {
            let ((w, n, g), label) = match *spec {
                None => ((0, 1, 0), "plain".to_string()),
                Some((w, n, g)) => ((w, n, g), format!("lookahead {w},{n},{g}")),
            };
            Shape {
                label,
                layout: synthetic_step(w, n, g, past, |i| timing_id(i, vocab)),
            }
        })
        .collect()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Median wall time (ms) of a step of `layout` after `past` positions: upload, forward,
/// argmax of its logit rows back on the host; the cache is rolled back after each run.
fn time_step(
    lm: &mut dyn CausalLm,
    layout: &StepTree,
    past: usize,
    repeat: usize,
) -> anyhow::Result<f64> {
    let mut times = Vec::with_capacity(repeat);
    for rep in 0..repeat + 3 {
        let t = Instant::now();
        let out = lm.forward_argmax(&layout.batch());
        let ms = t.elapsed().as_secs_f64() * 1e3;
        lm.truncate(past);
        out?;
        if rep >= 3 {
            times.push(ms);
        }
    }
    Ok(median(times))
}

pub fn run(args: ProfileArgs) -> anyhow::Result<()> {
    anyhow::ensure!(args.repeat > 0, "--repeat must be at least 1");
    // Everything the arguments alone decide is checked before a model of many gigabytes loads.
    let specs = parse_shapes(&args.shapes)?;
    #[cfg(not(feature = "cuda"))]
    anyhow::ensure!(
        !args.kernels,
        "--kernels needs a GPU (a build with tools/build-cuda.sh)"
    );
    let loaded = args.model.load()?;
    let c = &loaded.model.config;
    let ctx = args.model.context(c.max_position_embeddings)?;
    let shapes = build_shapes(&specs, args.past, c.vocab_size);
    let most = shapes.iter().map(|s| s.layout.len()).max().unwrap_or(1);
    anyhow::ensure!(
        args.past + most <= ctx,
        "--past {} plus a step of {most} rows exceeds the context of {ctx} positions",
        args.past
    );
    let mut lm = loaded.new_session(ctx)?;
    fill_cache(lm.as_mut(), args.past)?;
    let mut rows = Vec::new();
    for s in &shapes {
        let ms = time_step(lm.as_mut(), &s.layout, args.past, args.repeat)?;
        rows.push(json!({
            "shape": s.label,
            "rows": s.layout.len(),
            "logit_rows": s.layout.logit_rows.len(),
            "step_ms": ms,
        }));
    }
    drop(lm);
    let one = rows
        .iter()
        .find(|r| r["rows"] == 1)
        .and_then(|r| r["step_ms"].as_f64());
    if let Some(one) = one {
        for r in &mut rows {
            let ms = r["step_ms"].as_f64().unwrap_or(f64::NAN);
            r["vs_one_row"] = json!(ms / one);
        }
    }
    #[cfg_attr(not(feature = "cuda"), allow(unused_mut))]
    let mut report = json!({
        "device": loaded.device_label(),
        "model": loaded.path.display().to_string(),
        "past": args.past,
        "repeat": args.repeat,
        "weight_bytes_per_step": loaded.weight_bytes(),
        "steps": rows,
    });
    #[cfg(feature = "cuda")]
    cuda_extras(&loaded, ctx, &args, &shapes, &mut report)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_markdown(&report);
    }
    Ok(())
}

/// GPU only: the physical floor, the matmul schedule and the per-kernel breakdown.
#[cfg(feature = "cuda")]
fn cuda_extras(
    loaded: &lade::loader::LoadedModel,
    ctx: usize,
    args: &ProfileArgs,
    shapes: &[Shape],
    report: &mut serde_json::Value,
) -> anyhow::Result<()> {
    let Some(session) = loaded.cuda_session(ctx) else {
        anyhow::ensure!(!args.kernels, "--kernels needs --device cuda");
        return Ok(());
    };
    let mut session = session?;
    if let lade::loader::Backend::Cuda { model, .. } = &loaded.backend {
        if let Some(bw) = model.memory_bandwidth() {
            report["memory_bandwidth_bytes_per_s"] = json!(bw);
            report["floor_ms"] = json!(loaded.weight_bytes() as f64 / bw * 1e3);
        }
        let (one_row, splits) = session.matmul_schedule(1);
        report["matmul"] = json!({
            "kernels_1_row_qkv_o_gateup_down_lmhead": one_row,
            "kernels_128_rows_qkv_o_gateup_down_lmhead": session.matmul_schedule(128).0,
            "k_splits_qkv_o_gateup_down_lmhead": splits,
            "activation_planes": lade::model::cuda::ACT_PLANES,
            "overlapped_launches": session.kernels_overlap(),
        });
        if let Some(steps) = report["steps"].as_array_mut() {
            for (step, s) in steps.iter_mut().zip(shapes) {
                step["attention_vectors_a_block"] =
                    json!(session.attention_vectors_a_block(s.layout.len(), args.past)?);
            }
        }
    }
    if args.kernels {
        fill_cache(&mut session, args.past)?;
        let mut table = Vec::new();
        for s in shapes {
            let mut runs = Vec::new();
            for _ in 0..6 {
                runs.push(session.profile_step(&s.layout.batch())?);
            }
            // Median per kernel over the runs after the first.
            let names: Vec<&'static str> = runs[0].iter().map(|(n, _)| *n).collect();
            // In a replayed step a kernel overlaps its neighbours (programmatic dependent
            // launch), so its eager time is not what it adds to the step: that is the step's
            // time less the time of the step without it.
            let whole = time_step(&mut session, &s.layout, args.past, args.repeat)?;
            let mut per = Vec::new();
            for name in &names {
                let v: Vec<f64> = runs[1..]
                    .iter()
                    .filter_map(|r| r.iter().find(|(n, _)| n == name).map(|(_, ms)| *ms))
                    .collect();
                session.omit_kernels(&[*name]);
                let without = time_step(&mut session, &s.layout, args.past, args.repeat);
                session.omit_kernels(&[]);
                per.push(json!({
                    "kernel": name,
                    "ms": median(v),
                    "replayed_ms": whole - without?,
                }));
            }
            table.push(json!({ "shape": s.label, "replayed_step_ms": whole, "kernels": per }));
        }
        report["kernels"] = json!(table);
    }
    Ok(())
}

fn print_markdown(r: &serde_json::Value) {
    println!(
        "device: {}  |  cache before the step: {} positions  |  median of {} runs",
        r["device"].as_str().unwrap_or("?"),
        r["past"],
        r["repeat"]
    );
    let mb = r["weight_bytes_per_step"].as_f64().unwrap_or(0.0) / 1e6;
    match (
        r["memory_bandwidth_bytes_per_s"].as_f64(),
        r["floor_ms"].as_f64(),
    ) {
        (Some(bw), Some(floor)) => println!(
            "weights read per step: {mb:.1} MB; peak memory bandwidth {:.2} TB/s; floor {:.3} ms/step",
            bw / 1e12,
            floor
        ),
        _ => println!("weights read per step: {mb:.1} MB"),
    }
    if let Some(m) = r.get("matmul") {
        println!(
            "matmul kernels (qkv, o, gate/up, down, LM head): {} (1 row), {} (128 rows); K splits {}; activation f16 planes {}; kernels overlap their predecessor (programmatic dependent launch): {}",
            m["kernels_1_row_qkv_o_gateup_down_lmhead"], m["kernels_128_rows_qkv_o_gateup_down_lmhead"], m["k_splits_qkv_o_gateup_down_lmhead"],
            m["activation_planes"], m["overlapped_launches"]
        );
    }
    let steps = r["steps"].as_array().cloned().unwrap_or_default();
    let heights: Vec<String> = steps
        .iter()
        .filter_map(|s| {
            let v = s.get("attention_vectors_a_block")?;
            Some(format!("{} {v}", s["shape"].as_str().unwrap_or("?")))
        })
        .collect();
    if !heights.is_empty() {
        println!(
            "attention query vectors a block, by step: {}",
            heights.join(", ")
        );
    }
    println!();
    println!("| step | rows | logit rows | step ms | vs 1 row |");
    println!("|{}", " --- |".repeat(5));
    let f = |v: &serde_json::Value, d: usize| {
        v.as_f64()
            .map_or("–".to_string(), |x| format!("{x:.prec$}", prec = d))
    };
    for s in &steps {
        println!(
            "| {} | {} | {} | {} | {} |",
            s["shape"].as_str().unwrap_or("?"),
            s["rows"],
            s["logit_rows"],
            f(&s["step_ms"], 3),
            f(&s["vs_one_row"], 2)
        );
    }
    if let Some(k) = r["kernels"].as_array() {
        let names: Vec<String> = k[0]["kernels"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|e| e["kernel"].as_str().unwrap_or("?").to_string())
                    .collect()
            })
            .unwrap_or_default();
        println!("\nPer-kernel time of one eagerly launched step (ms, summed over layers):\n");
        let totals = print_kernel_table(k, &names, "ms");
        print!("| **total (eager)** |");
        for t in totals {
            print!(" **{t:.3}** |");
        }
        println!();
        println!(
            "\nWhat each kernel adds to the replayed step (ms, summed over layers: the step less \
             the same step without that kernel):\n"
        );
        print_kernel_table(k, &names, "replayed_ms");
        print!("| **step (replayed)** |");
        for s in k {
            let ms = s["replayed_step_ms"].as_f64().unwrap_or(f64::NAN);
            print!(" **{ms:.3}** |");
        }
        println!();
    }
}

/// One row per kernel, one column per shape, of the kernels' `field` (ms); returns each shape's
/// sum.
fn print_kernel_table(k: &[serde_json::Value], names: &[String], field: &str) -> Vec<f64> {
    print!("| kernel |");
    for s in k {
        print!(" {} |", s["shape"].as_str().unwrap_or("?"));
    }
    println!("\n|{}", " --- |".repeat(k.len() + 1));
    let mut totals = vec![0.0; k.len()];
    for name in names {
        print!("| {name} |");
        for (i, s) in k.iter().enumerate() {
            let ms = s["kernels"]
                .as_array()
                .and_then(|a| a.iter().find(|e| e["kernel"] == name.as_str()))
                .and_then(|e| e[field].as_f64())
                .unwrap_or(0.0);
            totals[i] += ms;
            print!(" {ms:.3} |");
        }
        println!();
    }
    totals
}
