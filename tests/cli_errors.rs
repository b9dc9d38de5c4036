//! Bad input gets a clear one-line error and a non-zero exit, never a panic.

mod common;

use std::path::PathBuf;
use std::process::Command;

use common::run_lade as lade;

/// Fails cleanly: non-zero exit, an `error:` line mentioning `needle`, no panic.
fn fails_with(args: &[&str], needle: &str) {
    let (ok, _, err) = lade(args);
    assert!(!ok, "{args:?} should fail");
    assert!(!err.contains("panicked"), "{args:?} panicked: {err}");
    let line = err
        .lines()
        .find(|l| l.starts_with("error:"))
        .unwrap_or_else(|| panic!("{args:?}: no error line in {err}"));
    assert!(
        line.to_lowercase().contains(&needle.to_lowercase()),
        "{args:?}: {line:?} lacks {needle:?}"
    );
}

fn tmp(name: &str, bytes: &[u8]) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("lade-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    p
}

fn model() -> String {
    common::model_path().display().to_string()
}

#[test]
fn missing_model_file() {
    fails_with(
        &["generate", "--model", "/nonexistent/x.gguf", "-p", "hi"],
        "not found",
    );
}

#[test]
fn truncated_and_random_gguf() {
    let real = std::fs::read(common::model_path()).unwrap();
    let half = tmp("half.gguf", &real[..real.len() / 2]);
    fails_with(
        &["generate", "--model", half.to_str().unwrap(), "-p", "hi"],
        "truncated",
    );
    let header_cut = tmp("header.gguf", &real[..4096]);
    fails_with(
        &[
            "generate",
            "--model",
            header_cut.to_str().unwrap(),
            "-p",
            "hi",
        ],
        "corrupt",
    );
    let mut x = 0x1234_5678_9abc_def0u64;
    let noise: Vec<u8> = (0..1 << 16)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    let random = tmp("random.gguf", &noise);
    fails_with(
        &["generate", "--model", random.to_str().unwrap(), "-p", "hi"],
        "not a GGUF",
    );
    let mut magic_then_noise = b"GGUF".to_vec();
    magic_then_noise.extend(&noise);
    let m = tmp("magic.gguf", &magic_then_noise);
    fails_with(
        &["generate", "--model", m.to_str().unwrap(), "-p", "hi"],
        "corrupt",
    );
}

#[test]
fn unsupported_architecture() {
    // Rewrite the architecture string of the real file in place ("llama" → "gpt99").
    let mut real = std::fs::read(common::model_path()).unwrap();
    let key = b"general.architecture";
    let at = real.windows(key.len()).position(|w| w == key).unwrap();
    let value = at + key.len() + 4 + 8; // type u32, string length u64
    real[value..value + 5].copy_from_slice(b"gpt99");
    let p = tmp("arch.gguf", &real);
    fails_with(
        &["generate", "--model", p.to_str().unwrap(), "-p", "hi"],
        "architecture `gpt99` is not supported",
    );
}

#[test]
fn prompt_longer_than_context() {
    let long = "word ".repeat(300);
    fails_with(
        &[
            "generate",
            "--model",
            &model(),
            "--ctx-size",
            "64",
            "-p",
            &long,
        ],
        "context",
    );
}

#[test]
fn invalid_sampling_values_and_empty_prompt() {
    let m = model();
    fails_with(
        &["generate", "--model", &m, "-p", "hi", "--top-p", "1.5"],
        "--top-p",
    );
    fails_with(
        &["generate", "--model", &m, "-p", "hi", "--temperature", "-1"],
        "--temperature",
    );
    fails_with(
        &["generate", "--model", &m, "-p", "hi", "--min-p", "2"],
        "--min-p",
    );
    fails_with(
        &[
            "generate",
            "--model",
            &m,
            "-p",
            "hi",
            "--repeat-penalty",
            "0",
        ],
        "--repeat-penalty",
    );
    fails_with(&["generate", "--model", &m, "-p", ""], "empty");
    fails_with(
        &[
            "generate",
            "--model",
            &m,
            "-p",
            "hi",
            "--lookahead",
            "3,1,2",
        ],
        "at least 2",
    );
    fails_with(
        &["generate", "--model", &m, "-p", "hi", "--lookahead", "a,b"],
        "W,N,G",
    );
    fails_with(
        &["generate", "--model", &m, "-p", "hi", "--max-tokens", "0"],
        "max-tokens",
    );
    fails_with(
        &[
            "generate",
            "--model",
            &m,
            "--prompt-file",
            "/nonexistent/prompt.txt",
        ],
        "prompt file",
    );
}

#[test]
fn generate_json_and_tokenize_work() {
    let m = model();
    let (ok, out, err) = lade(&["tokenize", "--model", &m, "--json", "Hello world!"]);
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["ids"], serde_json::json!([19556, 905, 17]));
    for extra in [&["--no-lookahead"][..], &["--lookahead", "4,3,4"][..]] {
        let mut args = vec![
            "generate", "--model", &m, "--chat", "-p", "Say hi.", "-n", "8", "--json", "-q",
        ];
        args.extend_from_slice(extra);
        let (ok, out, err) = lade(&args);
        assert!(ok, "{err}");
        let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
        let s = &v["stats"];
        assert!(v["token_ids"].as_array().unwrap().len() <= 8);
        assert!(["stop", "length"].contains(&v["finish_reason"].as_str().unwrap()));
        let c = s["generated_tokens"].as_f64().unwrap() / s["steps"].as_f64().unwrap();
        assert!((s["compression"].as_f64().unwrap() - c).abs() < 1e-9);
        // Steps by tokens committed add up to the steps and the generated tokens; plain
        // decoding commits one token a step.
        let hist: Vec<u64> = s["accepted_per_step"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap())
            .collect();
        let steps = s["steps"].as_u64().unwrap();
        let generated = s["generated_tokens"].as_u64().unwrap();
        assert_eq!(hist.iter().sum::<u64>(), steps, "{s}");
        let committed: u64 = hist.iter().enumerate().map(|(k, &n)| k as u64 * n).sum();
        assert_eq!(committed, generated, "{s}");
        let ids = v["token_ids"].as_array().unwrap().len() as u64;
        assert!(generated == ids || generated == ids + 1, "{v}");
        if extra == ["--no-lookahead"] {
            assert_eq!(steps, generated, "{s}");
        }
    }
}

/// Without sampling flags `generate` samples with llama.cpp's defaults (the default model's
/// files recommend nothing) and a fresh seed, which it prints; that seed, given back, repeats
/// the run token for token, with or without lookahead. `--temperature 0` is greedy.
#[test]
fn default_sampling_prints_a_seed_that_repeats_the_run() {
    let m = model();
    let run = |extra: &[&str]| -> (serde_json::Value, String) {
        let mut args = vec![
            "generate",
            "--model",
            &m,
            "--chat",
            "-p",
            "Write a haiku about the sea.",
            "-n",
            "24",
            "--json",
        ];
        args.extend_from_slice(extra);
        let (ok, out, err) = lade(&args);
        assert!(ok, "{err}");
        (serde_json::from_str(out.trim()).unwrap(), err)
    };
    let (first, err) = run(&["--no-lookahead"]);
    let s = &first["stats"];
    let seed = s["seed"].as_u64().expect("stats.seed");
    assert_eq!(s["sampling"]["seed"].as_u64(), Some(seed));
    for (key, want) in [
        ("temperature", 0.8),
        ("top_k", 40.0),
        ("top_p", 0.95),
        ("min_p", 0.05),
        ("repeat_penalty", 1.0),
    ] {
        let got = s["sampling"][key].as_f64().unwrap();
        assert!((got - want).abs() < 1e-6, "{key}: {got}");
    }
    assert!(
        err.contains(&format!("repeat with --seed {seed}")),
        "stderr lacks the seed: {err}"
    );
    let seed_arg = seed.to_string();
    let (again, _) = run(&["-q", "--lookahead", "7,4,7", "--seed", &seed_arg]);
    assert_eq!(again["token_ids"], first["token_ids"]);
    assert_eq!(again["stats"]["seed"].as_u64(), Some(seed));
    let (explicit, _) = run(&[
        "-q",
        "--no-lookahead",
        "--temperature",
        "0.8",
        "--top-k",
        "40",
        "--top-p",
        "0.95",
        "--min-p",
        "0.05",
        "--seed",
        &seed_arg,
    ]);
    assert_eq!(explicit["token_ids"], first["token_ids"]);
    // Another run without --seed draws another seed.
    let (other, _) = run(&["-q", "--no-lookahead"]);
    assert_ne!(other["stats"]["seed"].as_u64(), Some(seed));

    let (greedy, err) = run(&["--no-lookahead", "--temperature", "0"]);
    assert_eq!(greedy["stats"]["seed"].as_u64(), Some(0));
    assert_eq!(
        greedy["stats"]["sampling"]["temperature"].as_f64(),
        Some(0.0)
    );
    assert_eq!(greedy["stats"]["sampling"]["top_k"].as_u64(), Some(0));
    assert!(err.contains("sampling: greedy"), "{err}");
    assert!(!err.contains("--seed"), "{err}");
}

#[test]
fn profile_rejects_bad_shapes_and_gpu_only_flags_on_the_cpu() {
    let m = model();
    let base = ["profile", "--model", &m, "--device", "cpu", "-q"];
    let with = |extra: &[&'static str]| -> Vec<String> {
        base.iter().chain(extra).map(|s| s.to_string()).collect()
    };
    let fails = |extra: &[&'static str], needle: &str| {
        let args = with(extra);
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        fails_with(&refs, needle);
    };
    fails(&["--shapes", "plain;banana"], "--shapes");
    fails(&["--shapes", "4,1,4"], "--shapes");
    fails(&["--past", "100000"], "exceeds the context");
    fails(&["--repeat", "0"], "--repeat");
    // Arguments are checked before the model loads: a bad shape with a missing model file
    // names the shape.
    fails_with(
        &[
            "profile",
            "--model",
            "/nonexistent/model.gguf",
            "--shapes",
            "plain;0,64,1",
        ],
        "0,64,1",
    );
    fails(&["--kernels"], "gpu");
}

#[test]
fn profile_times_plain_and_lookahead_steps_on_the_cpu() {
    let m = model();
    let (ok, out, err) = lade(&[
        "profile",
        "--model",
        &m,
        "--device",
        "cpu",
        "-q",
        "--past",
        "8",
        "--shapes",
        "plain;2,3,2",
        "--repeat",
        "1",
        "--json",
    ]);
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).expect("json");
    let steps = v["steps"].as_array().expect("steps");
    assert_eq!(steps.len(), 2);
    // plain: one row; 2,3,2: (W + G)(N - 1) = 8 rows.
    assert_eq!(steps[0]["rows"], 1);
    assert_eq!(steps[1]["rows"], 8);
    for s in steps {
        assert!(s["step_ms"].as_f64().is_some_and(|ms| ms > 0.0), "{s}");
    }
    assert!((steps[0]["vs_one_row"].as_f64().unwrap() - 1.0).abs() < 1e-9);
}

#[test]
fn bench_runs_its_configs_side_by_side_and_writes_runs() {
    let m = model();
    let data = tmp(
        "bench.jsonl",
        b"{\"prompt\": \"def add(a, b):\\n    return\"}\n{\"prompt\": \"The capital of France is\"}\n",
    );
    let out_dir = std::env::temp_dir().join(format!("lade-cli-bench-{}", std::process::id()));
    let base = [
        "bench",
        "--model",
        &m,
        "--device",
        "cpu",
        "-q",
        "--dataset",
        data.to_str().unwrap(),
    ];
    let with = |extra: &[&str]| -> Vec<String> {
        base.iter().chain(extra).map(|s| s.to_string()).collect()
    };
    let args = with(&[
        "--max-tokens",
        "12",
        "--configs",
        "greedy;lookahead:2,3,2",
        "--out",
        out_dir.to_str().unwrap(),
    ]);
    let (ok, out, err) = lade(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(ok, "{err}");
    assert!(!err.contains("not run on this device"), "{err}");
    // One table row per config; the lookahead row decoded exactly what greedy did.
    let row = |label: &str| {
        out.lines()
            .find(|l| l.starts_with(&format!("| {label} |")))
            .unwrap_or_else(|| panic!("no {label} row in {out}"))
            .to_string()
    };
    assert!(row("greedy").ends_with("| 1.00 | yes |"), "{out}");
    assert!(row("lookahead:2,3,2").ends_with("| yes |"), "{out}");
    // runs.csv: 2 prompts x 2 configs, 12 tokens each, never more steps than tokens.
    let csv = std::fs::read_to_string(out_dir.join("runs.csv")).expect("runs.csv");
    // Fields split at commas outside quotes (the config labels hold commas).
    let fields = |line: &str| -> Vec<String> {
        let (mut out, mut cur, mut quoted) = (Vec::new(), String::new(), false);
        for c in line.chars() {
            match c {
                '"' => quoted = !quoted,
                ',' if !quoted => out.push(std::mem::take(&mut cur)),
                _ => cur.push(c),
            }
        }
        out.push(cur);
        out
    };
    let rows: Vec<Vec<String>> = csv.lines().skip(1).map(fields).collect();
    assert_eq!(rows.len(), 4, "{csv}");
    for r in &rows {
        let (tokens, steps): (usize, usize) = (r[2].parse().unwrap(), r[3].parse().unwrap());
        assert_eq!(tokens, 12, "{csv}");
        assert!(steps >= 1 && steps <= tokens, "{csv}");
        if r[1] == "lookahead:2,3,2" {
            assert_eq!(r[7], "true", "{csv}");
        }
    }
    assert_eq!(
        rows.iter().filter(|r| r[1] == "lookahead:2,3,2").count(),
        2,
        "{csv}"
    );
    std::fs::remove_dir_all(&out_dir).ok();
    // A config the decoder rejects is an error before anything runs.
    let args = with(&["--configs", "greedy;lookahead:2,1,2"]);
    fails_with(
        &args.iter().map(String::as_str).collect::<Vec<_>>(),
        "lookahead",
    );
}

#[test]
fn a_reader_that_stops_early_gets_no_panic() {
    use std::io::Read;
    use std::process::Stdio;
    // A long output whose reader hangs up after 16 bytes (as `| head -c 16` does).
    let text = "word ".repeat(20_000);
    let mut child = Command::new(env!("CARGO_BIN_EXE_lade"))
        .args(["tokenize", "--model", &model(), "--json", &text])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut head = [0u8; 16];
    child.stdout.take().unwrap().read_exact(&mut head).unwrap();
    // stdout is closed here: the rest of the output meets a broken pipe.
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("panicked"), "{err}");
    assert!(out.status.success(), "{:?}: {err}", out.status);
    assert!(head.starts_with(b"{\"ids\":["));
}

/// `lade generate` and `lade serve` with `--lookahead-prior prior` (and `--lookahead` as given
/// to each) both fail, saying `needle`; the server before it loads the model or binds its port.
fn prior_fails(
    m: &str,
    generate_lookahead: &str,
    serve_lookahead: &str,
    prior: &str,
    needle: &str,
) {
    let generate = [
        "generate",
        "--model",
        m,
        "-p",
        "hi",
        "-n",
        "2",
        "--lookahead",
        generate_lookahead,
    ];
    let serve = [
        "serve",
        "--model",
        m,
        "--port",
        "0",
        "--lookahead",
        serve_lookahead,
    ];
    for command in [&generate[..], &serve[..]] {
        let args: Vec<&str> = command
            .iter()
            .copied()
            .chain(["--lookahead-prior", prior])
            .collect();
        fails_with(&args, needle);
    }
}

#[test]
fn a_bad_lookahead_prior_is_a_clear_error() {
    let m = model();
    let missing = std::env::temp_dir().join("lade-no-such-prior");
    let missing = missing.display().to_string();
    let bad = tmp("bad.prior", b"# W,N,G,tokens_per_step\n4,3,4\n");
    let bad = bad.display().to_string();
    for (prior, needle) in [(&missing, "lade-no-such-prior"), (&bad, "line 2")] {
        prior_fails(&m, "auto", "auto", prior, needle);
    }
}

#[test]
fn a_lookahead_prior_without_auto_is_a_clear_error() {
    let m = model();
    let prior = tmp("unused.prior", b"# W,N,G,tokens_per_step\n4,3,4,1.5\n");
    let prior = prior.display().to_string();
    prior_fails(&m, "4,3,4", "off", &prior, "only `--lookahead auto`");
}
