//! Helpers of the `lade serve` tests: start the real binary on a free loopback port, talk
//! HTTP and server-sent events to it, read its metrics.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// A `lade serve` process, killed when dropped.
pub struct Server {
    child: Option<Child>,
    pub base: String,
    pub log: PathBuf,
}

impl Server {
    /// Starts `lade serve --port 0 --model <default model> ARGS` and waits for its
    /// "listening on" line (not for the model: see [`Server::wait_ready`]).
    pub fn start(model: &str, args: &[&str]) -> Server {
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let log =
            std::env::temp_dir().join(format!("lade-serve-test-{}-{n}.log", std::process::id()));
        let mut child = Command::new(env!("CARGO_BIN_EXE_lade"))
            .args([
                "serve",
                "--host",
                "127.0.0.1",
                "--port",
                "0",
                "--model",
                model,
            ])
            .args(args)
            .env_remove("LADE_API_KEY")
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).expect("log file"))
            .spawn()
            .expect("start lade serve");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let base = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| {
                let _ = child.kill();
                panic!(
                    "no listening line (got {line:?}); log:\n{}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                )
            })
            .to_string();
        Server {
            child: Some(child),
            base,
            log,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Polls `/health` until 200 (the model is loaded).
    pub async fn wait_ready(&self, client: &reqwest::Client) {
        let t = Instant::now();
        loop {
            if let Ok(r) = client.get(self.url("/health")).send().await {
                if r.status() == 200 {
                    return;
                }
                assert_eq!(r.status(), 503, "health while loading");
            }
            assert!(
                t.elapsed() < Duration::from_secs(300),
                "model not ready after 300 s; log:\n{}",
                self.log_text()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Sends SIGTERM.
    pub fn terminate(&self) {
        let ok = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status()
            .expect("run kill")
            .success();
        assert!(ok, "kill -TERM failed");
    }

    /// Waits for the process to exit (at most `timeout`); its exit code.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<i32> {
        let t = Instant::now();
        let child = self.child.as_mut().unwrap();
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                self.child = None;
                return status.code();
            }
            if t.elapsed() > timeout {
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        if !std::thread::panicking() {
            let _ = std::fs::remove_file(&self.log);
        } else {
            eprintln!("server log kept at {}", self.log.display());
        }
    }
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(600))
        .build()
        .unwrap()
}

/// Reads server-sent events from a streaming response, one `data:` payload at a time.
pub struct SseReader {
    pub resp: reqwest::Response,
    buf: String,
}

impl SseReader {
    pub fn new(resp: reqwest::Response) -> Self {
        assert_eq!(resp.status(), 200, "stream status");
        let ct = resp.headers()["content-type"].to_str().unwrap().to_string();
        assert!(ct.starts_with("text/event-stream"), "content type {ct}");
        Self {
            resp,
            buf: String::new(),
        }
    }

    /// The next `data:` payload; None at the end of the body.
    pub async fn next(&mut self) -> Option<String> {
        loop {
            if let Some(end) = self.buf.find("\n\n") {
                let event: String = self.buf[..end].to_string();
                self.buf.drain(..end + 2);
                let data: Vec<&str> = event
                    .lines()
                    .filter_map(|l| l.strip_prefix("data:"))
                    .map(|d| d.strip_prefix(' ').unwrap_or(d))
                    .collect();
                if data.is_empty() {
                    continue; // a comment or keep-alive
                }
                return Some(data.join("\n"));
            }
            match self.resp.chunk().await.expect("stream chunk") {
                Some(bytes) => self.buf.push_str(std::str::from_utf8(&bytes).unwrap()),
                None => {
                    assert!(self.buf.trim().is_empty(), "trailing bytes {:?}", self.buf);
                    return None;
                }
            }
        }
    }

    /// Every remaining payload.
    pub async fn rest(&mut self) -> Vec<String> {
        let mut out = Vec::new();
        while let Some(d) = self.next().await {
            out.push(d);
        }
        out
    }
}

/// What a stream carried: the text, the finish reason, the usage chunk, whether it ended
/// with `[DONE]`.
#[derive(Debug, Default)]
pub struct Streamed {
    pub text: String,
    pub finish_reason: Option<String>,
    pub usage: Option<Value>,
    pub done: bool,
    pub chunks: usize,
    pub role_chunk: bool,
}

/// Folds stream payloads into a [`Streamed`], checking their shape on the way.
pub fn fold_stream(payloads: &[String]) -> Streamed {
    let mut s = Streamed::default();
    for p in payloads {
        assert!(!s.done, "data after [DONE]: {p}");
        if p == "[DONE]" {
            s.done = true;
            continue;
        }
        let v: Value = serde_json::from_str(p).unwrap_or_else(|e| panic!("{e}: {p}"));
        assert!(v.get("error").is_none(), "error in stream: {p}");
        s.chunks += 1;
        let choices = v["choices"].as_array().expect("choices");
        if choices.is_empty() {
            s.usage = Some(v["usage"].clone());
            continue;
        }
        let c = &choices[0];
        if let Some(d) = c.get("delta") {
            assert_eq!(v["object"], "chat.completion.chunk");
            if d.get("role").is_some() {
                s.role_chunk = true;
            }
            if let Some(t) = d.get("content").and_then(Value::as_str) {
                s.text.push_str(t);
            }
        } else {
            assert_eq!(v["object"], "text_completion");
            s.text.push_str(c["text"].as_str().unwrap());
        }
        if let Some(f) = c["finish_reason"].as_str() {
            assert!(s.finish_reason.is_none(), "two finish reasons");
            s.finish_reason = Some(f.to_string());
        }
    }
    s
}

/// The value of an unlabelled metric line `name value`.
pub fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("metric {name} not found in\n{text}"))
}

pub async fn metrics(client: &reqwest::Client, s: &Server) -> String {
    client
        .get(s.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// Polls `/metrics` until `cond` holds (at most `timeout`); the last text.
pub async fn wait_metrics(
    client: &reqwest::Client,
    s: &Server,
    timeout: Duration,
    cond: impl Fn(&str) -> bool,
) -> String {
    let t = Instant::now();
    loop {
        let m = metrics(client, s).await;
        if cond(&m) {
            return m;
        }
        assert!(t.elapsed() < timeout, "metrics condition not met:\n{m}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Asserts an OpenAI-style error answer: status, and `error.{message,type,param,code}`.
pub async fn expect_error(resp: reqwest::Response, status: u16) -> Value {
    let got = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    assert_eq!(got, status, "body: {text}");
    let v: Value =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("error body not JSON ({e}): {text}"));
    let e = &v["error"];
    assert!(
        e["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{text}"
    );
    assert!(e["type"].is_string(), "{text}");
    assert!(
        e.get("param").is_some() && e.get("code").is_some(),
        "{text}"
    );
    e.clone()
}

/// Checks the token accounting of a response's `usage` against itself: every step commits at
/// least one token, `accepted_per_step` adds up to the steps and to the generated tokens,
/// `steps_by_rows` to the steps, `compression` is their ratio, and the completion is the
/// generated tokens less a final end-of-generation token. Plain decoding commits exactly one
/// token per step. Returns `(steps, generated tokens)`.
pub fn check_accounting(usage: &Value) -> (u64, u64) {
    let la = &usage["lookahead"];
    let n = |v: &Value| {
        v.as_u64()
            .unwrap_or_else(|| panic!("not a count: {v} in {usage}"))
    };
    let steps = n(&la["steps"]);
    let generated = n(&la["generated_tokens"]);
    let completion = n(&usage["completion_tokens"]);
    let hist: Vec<u64> = la["accepted_per_step"]
        .as_array()
        .expect("accepted_per_step")
        .iter()
        .map(n)
        .collect();
    assert_eq!(
        hist.first().copied().unwrap_or(0),
        0,
        "a step committed nothing: {usage}"
    );
    assert_eq!(hist.iter().sum::<u64>(), steps, "{usage}");
    let committed: u64 = hist.iter().enumerate().map(|(k, &c)| k as u64 * c).sum();
    assert_eq!(committed, generated, "{usage}");
    let by_rows: u64 = la["steps_by_rows"]
        .as_object()
        .expect("steps_by_rows")
        .values()
        .map(n)
        .sum();
    assert_eq!(by_rows, steps, "{usage}");
    assert!(steps >= 1 && steps <= generated, "{usage}");
    assert!(
        generated == completion || generated == completion + 1,
        "{usage}"
    );
    let compression = la["compression"].as_f64().expect("compression");
    assert!(
        (compression - generated as f64 / steps as f64).abs() < 1e-9,
        "{usage}"
    );
    assert!(
        n(&la["drafted_tokens_accepted"]) <= generated - steps,
        "{usage}"
    );
    if la["decoder"] == "plain" {
        assert_eq!(
            steps, generated,
            "plain decoding: one token a step: {usage}"
        );
    }
    (steps, generated)
}
