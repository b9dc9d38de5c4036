//! PNG plots of `lade bench --out`: the scaling law (step compression and speedup against the
//! per-step tokens `(W+G)(N-1)`, one line per N) and the ablation bar chart.
//!
//! Pure Rust: plotters' bitmap backend and PNG encoder, text through ab_glyph with DejaVu Sans
//! embedded from `assets/fonts/` (its license is beside it), so no system library is needed.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::OnceLock;

use anyhow::Context;
use lade::decode::DecoderKind;
use plotters::coord::ranged1d::Ranged;
use plotters::prelude::*;
use plotters::style::FontStyle;

use super::bench_config::BenchConfig;
use super::bench_report::{ablation_rows, Summary};

const FONT: &str = "sans-serif";
const SIZE: (u32, u32) = (1100, 720);
const PALETTE: [RGBColor; 8] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
];

fn register_font() -> anyhow::Result<()> {
    static OK: OnceLock<bool> = OnceLock::new();
    let ok = *OK.get_or_init(|| {
        let bytes: &'static [u8] = include_bytes!("../../assets/fonts/DejaVuSans.ttf");
        plotters::style::register_font(FONT, FontStyle::Normal, bytes).is_ok()
    });
    anyhow::ensure!(ok, "the embedded font does not parse");
    Ok(())
}

/// One point of the scaling plots.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ScalingPoint {
    pub step_tokens: usize,
    pub compression: f64,
    pub speedup: Option<f64>,
}

/// Lookahead configs with G = W (not the authors' mode), grouped into lines by N (and by
/// prompt pool when both settings occur), sorted by per-step tokens.
pub fn scaling_lines(
    configs: &[BenchConfig],
    summary: &[Summary],
) -> Vec<(String, Vec<ScalingPoint>)> {
    let mut found: Vec<(usize, bool, ScalingPoint)> = Vec::new();
    for (cfg, s) in configs.iter().zip(summary) {
        let Some(c) = cfg.lookahead() else { continue };
        if c.window != c.guesses || c.switches.reference_compat || s.prompts == 0 {
            continue;
        }
        found.push((
            c.ngram,
            c.switches.pool_from_prompt,
            ScalingPoint {
                step_tokens: cfg.step_tokens(),
                compression: s.compression,
                speedup: s.median_speedup_vs_greedy,
            },
        ));
    }
    let both_pools = found.iter().any(|f| f.1) && found.iter().any(|f| !f.1);
    let mut lines: BTreeMap<(usize, bool), Vec<ScalingPoint>> = BTreeMap::new();
    for (n, pool, p) in found {
        lines.entry((n, pool)).or_default().push(p);
    }
    lines
        .into_iter()
        .map(|((n, pool), mut pts)| {
            pts.sort_by_key(|p| p.step_tokens);
            let name = match (both_pools, pool) {
                (true, false) => format!("N={n}, no prompt pool"),
                _ => format!("N={n}"),
            };
            (name, pts)
        })
        .collect()
}

/// Whether the configs hold a scaling grid worth plotting (at least three G = W configs).
pub fn has_scaling(configs: &[BenchConfig], summary: &[Summary]) -> bool {
    scaling_lines(configs, summary)
        .iter()
        .map(|(_, pts)| pts.len())
        .sum::<usize>()
        >= 3
}

/// Draws step compression (`speedup == false`) or median speedup vs greedy against the
/// per-step tokens, log-scaled.
pub fn plot_scaling(
    path: &Path,
    lines: &[(String, Vec<ScalingPoint>)],
    speedup: bool,
    subtitle: &str,
) -> anyhow::Result<()> {
    register_font()?;
    let value = |p: &ScalingPoint| {
        if speedup {
            p.speedup
        } else {
            Some(p.compression)
        }
    };
    let series: Vec<(String, Vec<(f64, f64)>)> = lines
        .iter()
        .map(|(name, pts)| {
            let name = name.clone();
            let xy = pts
                .iter()
                .filter_map(|p| value(p).map(|v| (p.step_tokens as f64, v)))
                .filter(|(_, v)| v.is_finite() && *v > 0.0)
                .collect();
            (name, xy)
        })
        .collect();
    let all: Vec<(f64, f64)> = series.iter().flat_map(|(_, v)| v.clone()).collect();
    anyhow::ensure!(!all.is_empty(), "nothing to plot for {}", path.display());
    let (xmin, xmax) = all
        .iter()
        .fold((f64::MAX, f64::MIN), |(a, b), p| (a.min(p.0), b.max(p.0)));
    let (ymin, ymax) = all
        .iter()
        .fold((f64::MAX, f64::MIN), |(a, b), p| (a.min(p.1), b.max(p.1)));
    let root = BitMapBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE)?;
    let title = if speedup {
        "Wall-clock speedup vs greedy against per-step tokens (G = W)"
    } else {
        "Step compression against per-step tokens (G = W)"
    };
    let (top, body) = root.split_vertically(70);
    top.draw(&Text::new(title, (20, 10), (FONT, 26).into_font()))?;
    top.draw(&Text::new(subtitle, (20, 42), (FONT, 17).into_font()))?;
    // Both axes are drawn linear over log values (log2 of tokens; log10 of speedups), with
    // labels at the powers of two and at round speedups.
    let lx = |x: f64| x.log2();
    let (x0, x1) = (lx(xmin).floor() - 0.3, lx(xmax).ceil() + 0.3);
    let x_labels = (x1.floor() - x0.ceil()) as usize + 1;
    let fmt_x = |x: &f64| format!("{:.0}", 2f64.powf(*x));
    let x_desc = "per-step tokens (W+G)(N-1), log scale";
    let mut chart = ChartBuilder::on(&body)
        .margin(20)
        .x_label_area_size(55)
        .y_label_area_size(75)
        .build_cartesian_2d(
            x0..x1,
            if speedup {
                (ymin.min(1.0).log10() - 0.15)..(ymax.max(1.0).log10() + 0.15)
            } else {
                (ymin.min(1.0) - 0.05)..(ymax + 0.15)
            },
        )?;
    let fmt_y = |y: &f64| {
        if speedup {
            let v = 10f64.powf(*y);
            if v >= 0.1 {
                format!("{v:.2}")
            } else {
                format!("{v:.3}")
            }
        } else {
            format!("{y:.2}")
        }
    };
    chart
        .configure_mesh()
        .x_desc(x_desc)
        .y_desc(if speedup {
            "median speedup vs greedy (log scale)"
        } else {
            "step compression (tokens per step)"
        })
        .x_labels(x_labels)
        .y_labels(12)
        .x_label_formatter(&fmt_x)
        .y_label_formatter(&fmt_y)
        .label_style((FONT, 16))
        .axis_desc_style((FONT, 18))
        .draw()?;
    let series: Vec<(String, Vec<(f64, f64)>)> = series
        .into_iter()
        .map(|(name, xy)| {
            let xy = xy
                .into_iter()
                .map(|(x, y)| (lx(x), if speedup { y.log10() } else { y }))
                .collect();
            (name, xy)
        })
        .collect();
    if speedup {
        chart
            .draw_series(DashedLineSeries::new(
                [(x0, 0.0), (x1, 0.0)],
                8,
                6,
                BLACK.stroke_width(1),
            ))?
            .label("greedy (1.0)")
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 24, y)], BLACK));
    }
    draw_lines(&mut chart, &series)?;
    root.present()
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

fn draw_lines<'a, DB: DrawingBackend + 'a, X, Y>(
    chart: &mut ChartContext<'a, DB, Cartesian2d<X, Y>>,
    series: &[(String, Vec<(f64, f64)>)],
) -> anyhow::Result<()>
where
    X: Ranged<ValueType = f64>,
    Y: Ranged<ValueType = f64>,
    DB::ErrorType: 'static,
{
    for (i, (name, xy)) in series.iter().enumerate() {
        let color = PALETTE[i % PALETTE.len()];
        chart
            .draw_series(LineSeries::new(xy.clone(), color.stroke_width(3)))
            .map_err(|e| anyhow::anyhow!("{e:?}"))?
            .label(name.as_str())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 24, y)], color.stroke_width(3))
            });
        chart
            .draw_series(xy.iter().map(|&p| Circle::new(p, 5, color.filled())))
            .map_err(|e| anyhow::anyhow!("{e:?}"))?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .label_font((FONT, 17))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .map_err(|e| anyhow::anyhow!("{e:?}"))?;
    Ok(())
}

/// Short names of the ablation rows for the x axis.
fn short_name(config: &BenchConfig) -> String {
    match (config.spec.kind, config.lookahead()) {
        (DecoderKind::PromptLookup(_), _) => "prompt lookup".into(),
        (_, Some(c)) => format!(
            "W={},G={}{}",
            c.window,
            c.guesses,
            if c.switches.pool_from_prompt {
                " +ref"
            } else {
                ""
            }
        ),
        _ => config.label.clone(),
    }
}

/// Bar charts of the ablation: step compression (left) and median speedup vs greedy (right).
pub fn plot_ablation(path: &Path, summary: &[Summary], subtitle: &str) -> anyhow::Result<()> {
    register_font()?;
    let rows = ablation_rows(summary);
    anyhow::ensure!(!rows.is_empty(), "no ablation configs to plot");
    let names: Vec<String> = rows
        .iter()
        .map(|(_, s)| BenchConfig::parse(&s.config).map(|c| short_name(&c)))
        .collect::<anyhow::Result<_>>()?;
    let root = BitMapBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE)?;
    let (top, body) = root.split_vertically(92);
    top.draw(&Text::new(
        "Ablation (lookahead paper, Table 3)",
        (20, 10),
        (FONT, 26).into_font(),
    ))?;
    top.draw(&Text::new(subtitle, (20, 42), (FONT, 17).into_font()))?;
    top.draw(&Text::new(
        "N = 5 throughout; +ref = prompt as reference (pool seeded with prompt and output n-grams)",
        (20, 66),
        (FONT, 17).into_font(),
    ))?;
    let panels = body.split_evenly((1, 2));
    let n = rows.len();
    for (k, panel) in panels.iter().enumerate() {
        let values: Vec<Option<f64>> = rows
            .iter()
            .map(|(_, s)| {
                if k == 0 {
                    Some(s.compression)
                } else {
                    s.median_speedup_vs_greedy
                }
            })
            .collect();
        let ymax = values.iter().flatten().fold(1.0f64, |a, &b| a.max(b));
        let mut chart = ChartBuilder::on(panel)
            .margin(15)
            .x_label_area_size(60)
            .y_label_area_size(65)
            .caption(
                if k == 0 {
                    "step compression (tokens/step)"
                } else {
                    "median speedup vs greedy"
                },
                (FONT, 20),
            )
            .build_cartesian_2d(-0.5f64..(n as f64 - 0.5), 0.0..ymax * 1.18)?;
        let label = |x: &f64| {
            let i = x.round();
            if (x - i).abs() < 1e-6 && i >= 0.0 && (i as usize) < n {
                names[i as usize].clone()
            } else {
                String::new()
            }
        };
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(n)
            .x_label_formatter(&label)
            .y_label_formatter(&|y| format!("{y:.2}"))
            .label_style((FONT, 14))
            .draw()?;
        if k == 1 {
            chart.draw_series(DashedLineSeries::new(
                [(-0.5, 1.0), (n as f64 - 0.5, 1.0)],
                8,
                6,
                BLACK.stroke_width(1),
            ))?;
        }
        for (i, v) in values.iter().enumerate() {
            let Some(v) = *v else { continue };
            let x = i as f64;
            let color = PALETTE[i % PALETTE.len()];
            chart.draw_series(std::iter::once(Rectangle::new(
                [(x - 0.32, 0.0), (x + 0.32, v)],
                color.filled(),
            )))?;
            chart.draw_series(std::iter::once(Text::new(
                format!("{v:.2}"),
                (x - 0.12, v + ymax * 0.06),
                (FONT, 17).into_font(),
            )))?;
        }
    }
    root.present()
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}
