//! Counters and histograms, written in the Prometheus text format by `GET /metrics`.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::time::Duration;

use crate::generate::{FinishReason, GenerationStats};

/// A Prometheus histogram: counts per bucket (not cumulative), sum and count.
#[derive(Debug, Clone)]
struct Histogram {
    bounds: &'static [f64],
    counts: Vec<u64>,
    sum: f64,
    count: u64,
}

impl Histogram {
    fn new(bounds: &'static [f64]) -> Self {
        Self {
            bounds,
            counts: vec![0; bounds.len() + 1],
            sum: 0.0,
            count: 0,
        }
    }

    fn observe_n(&mut self, v: f64, n: u64) {
        let i = self
            .bounds
            .iter()
            .position(|&b| v <= b)
            .unwrap_or(self.bounds.len());
        self.counts[i] += n;
        self.sum += v * n as f64;
        self.count += n;
    }

    fn observe(&mut self, v: f64) {
        self.observe_n(v, 1);
    }

    fn mean(&self) -> Option<f64> {
        (self.count > 0).then(|| self.sum / self.count as f64)
    }

    fn render(&self, out: &mut String, name: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        let mut cumulative = 0;
        for (b, c) in self.bounds.iter().zip(&self.counts) {
            cumulative += c;
            let _ = writeln!(out, "{name}_bucket{{le=\"{b}\"}} {cumulative}");
        }
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {}", self.count);
        let _ = writeln!(out, "{name}_sum {}", self.sum);
        let _ = writeln!(out, "{name}_count {}", self.count);
    }
}

const SECONDS: &[f64] = &[
    0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0,
];
const TOKENS_PER_STEP: &[f64] = &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0, 12.0, 16.0, 24.0, 32.0];

#[derive(Debug)]
struct Inner {
    /// (endpoint, status code) → responses.
    requests: BTreeMap<(&'static str, u16), u64>,
    /// finish reason → generations.
    finished: BTreeMap<&'static str, u64>,
    prompt_tokens: u64,
    generated_tokens: u64,
    steps: u64,
    drafted_tokens: u64,
    rejected_queue_full: u64,
    accepted_per_step: Histogram,
    ttft: Histogram,
    latency: Histogram,
}

/// Every metric of a server.
#[derive(Debug)]
pub struct Metrics {
    inner: Mutex<Inner>,
}

/// Values read at scrape time.
#[derive(Debug, Clone, Copy, Default)]
pub struct Gauges {
    pub queue_depth: usize,
    pub running: usize,
    pub max_concurrent: usize,
    pub queue_capacity: usize,
    pub model_loaded: bool,
}

fn finish_label(f: FinishReason) -> &'static str {
    match f {
        FinishReason::Stop => "stop",
        FinishReason::Length => "length",
        FinishReason::Cancelled => "cancelled",
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self {
            inner: Mutex::new(Inner {
                requests: BTreeMap::new(),
                finished: BTreeMap::new(),
                prompt_tokens: 0,
                generated_tokens: 0,
                steps: 0,
                drafted_tokens: 0,
                rejected_queue_full: 0,
                accepted_per_step: Histogram::new(TOKENS_PER_STEP),
                ttft: Histogram::new(SECONDS),
                latency: Histogram::new(SECONDS),
            }),
        }
    }
}

impl Metrics {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// One HTTP response (`endpoint` is a fixed label, never the raw path).
    pub fn response(&self, endpoint: &'static str, status: u16) {
        *self.lock().requests.entry((endpoint, status)).or_default() += 1;
    }

    pub fn queue_full(&self) {
        self.lock().rejected_queue_full += 1;
    }

    /// One finished generation: `ttft` is the time to its first text (None: it produced none).
    pub fn generation(
        &self,
        prompt_tokens: usize,
        stats: &GenerationStats,
        finish: FinishReason,
        ttft: Option<Duration>,
        latency: Duration,
    ) {
        let mut m = self.lock();
        *m.finished.entry(finish_label(finish)).or_default() += 1;
        m.prompt_tokens += prompt_tokens as u64;
        m.generated_tokens += stats.generated_tokens as u64;
        m.steps += stats.steps as u64;
        m.drafted_tokens += stats.drafted_tokens_accepted as u64;
        for (k, &n) in stats.accepted_per_step.iter().enumerate().skip(1) {
            if n > 0 {
                m.accepted_per_step.observe_n(k as f64, n as u64);
            }
        }
        if let Some(t) = ttft {
            m.ttft.observe(t.as_secs_f64());
        }
        m.latency.observe(latency.as_secs_f64());
    }

    /// Mean request latency in seconds, if any request finished.
    pub fn mean_latency(&self) -> Option<f64> {
        self.lock().latency.mean()
    }

    /// The Prometheus text exposition.
    pub fn render(&self, g: Gauges) -> String {
        let m = self.lock();
        let mut out = String::new();
        let mut scalar = |name: &str, kind: &str, help: &str, v: f64| {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {v}"
            );
        };
        scalar(
            "lade_model_loaded",
            "gauge",
            "1 once the model is loaded and requests are served.",
            g.model_loaded as u8 as f64,
        );
        scalar(
            "lade_queue_depth",
            "gauge",
            "Requests waiting for a generation slot.",
            g.queue_depth as f64,
        );
        scalar(
            "lade_queue_capacity",
            "gauge",
            "Most requests that may wait (--queue).",
            g.queue_capacity as f64,
        );
        scalar(
            "lade_requests_running",
            "gauge",
            "Generations running now.",
            g.running as f64,
        );
        scalar(
            "lade_max_concurrent",
            "gauge",
            "Generation slots (--max-concurrent).",
            g.max_concurrent as f64,
        );
        scalar(
            "lade_prompt_tokens_total",
            "counter",
            "Prompt tokens of finished generations.",
            m.prompt_tokens as f64,
        );
        scalar(
            "lade_generated_tokens_total",
            "counter",
            "Tokens decoded by finished generations (a final end-of-generation token included).",
            m.generated_tokens as f64,
        );
        scalar(
            "lade_decode_steps_total",
            "counter",
            "Forward passes after the prefill.",
            m.steps as f64,
        );
        scalar(
            "lade_drafted_tokens_accepted_total",
            "counter",
            "Tokens that came from verified lookahead n-grams.",
            m.drafted_tokens as f64,
        );
        scalar(
            "lade_step_compression",
            "gauge",
            "Generated tokens per decode step over all generations (1 = plain decoding).",
            if m.steps > 0 {
                m.generated_tokens as f64 / m.steps as f64
            } else {
                0.0
            },
        );
        scalar(
            "lade_requests_rejected_total",
            "counter",
            "Requests answered 429 because the queue was full.",
            m.rejected_queue_full as f64,
        );
        scalar(
            "lade_requests_cancelled_total",
            "counter",
            "Generations ended early because the client went away or the server shut down.",
            m.finished.get("cancelled").copied().unwrap_or(0) as f64,
        );

        let _ = writeln!(
            out,
            "# HELP lade_requests_total HTTP responses by endpoint and status code.\n\
             # TYPE lade_requests_total counter"
        );
        for ((endpoint, code), n) in &m.requests {
            let _ = writeln!(
                out,
                "lade_requests_total{{endpoint=\"{endpoint}\",code=\"{code}\"}} {n}"
            );
        }
        let _ = writeln!(
            out,
            "# HELP lade_generations_total Finished generations by finish reason.\n\
             # TYPE lade_generations_total counter"
        );
        for (reason, n) in &m.finished {
            let _ = writeln!(
                out,
                "lade_generations_total{{finish_reason=\"{reason}\"}} {n}"
            );
        }
        m.accepted_per_step.render(
            &mut out,
            "lade_accepted_tokens_per_step",
            "Tokens committed by one decode step.",
        );
        m.ttft.render(
            &mut out,
            "lade_time_to_first_token_seconds",
            "From the request's arrival to its first text.",
        );
        m.latency.render(
            &mut out,
            "lade_request_duration_seconds",
            "From a generation request's arrival to its last token.",
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histograms_are_cumulative() {
        let m = Metrics::default();
        let stats = GenerationStats {
            steps: 3,
            generated_tokens: 5,
            accepted_per_step: vec![0, 2, 0, 1],
            ..Default::default()
        };
        m.generation(
            7,
            &stats,
            FinishReason::Stop,
            Some(Duration::from_millis(30)),
            Duration::from_millis(200),
        );
        m.response("/v1/completions", 200);
        let text = m.render(Gauges::default());
        for line in [
            "lade_prompt_tokens_total 7",
            "lade_generated_tokens_total 5",
            "lade_decode_steps_total 3",
            "lade_accepted_tokens_per_step_bucket{le=\"1\"} 2",
            "lade_accepted_tokens_per_step_bucket{le=\"2\"} 2",
            "lade_accepted_tokens_per_step_bucket{le=\"3\"} 3",
            "lade_accepted_tokens_per_step_bucket{le=\"+Inf\"} 3",
            "lade_accepted_tokens_per_step_sum 5",
            "lade_time_to_first_token_seconds_bucket{le=\"0.025\"} 0",
            "lade_time_to_first_token_seconds_bucket{le=\"0.05\"} 1",
            "lade_request_duration_seconds_count 1",
            "lade_requests_total{endpoint=\"/v1/completions\",code=\"200\"} 1",
            "lade_generations_total{finish_reason=\"stop\"} 1",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} missing in\n{text}");
        }
    }
}
