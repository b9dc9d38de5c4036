//! `lade serve --devices`: Lookahead Parallelism in the HTTP server. With two host devices
//! (`--devices cpu,cpu`, the code path of several GPUs with host exchange) every lookahead
//! request runs the parallel decoder on a device group of its own and answers exactly what
//! a single-device server answers, which is plain greedy decoding for greedy requests.

mod common;
mod server_common;

use std::process::Command;

use lade::decode::PlainDecoder;
use lade::generate::{generate, StopRules};
use lade::model::WeightFormat;
use lade::sampling::{Sampler, SamplingParams};
use serde_json::{json, Value};
use server_common::{client, fold_stream, metric, metrics, Server, SseReader};

const MAX_TOKENS: usize = 16;

fn model() -> String {
    common::model_path().display().to_string()
}

async fn completion(c: &reqwest::Client, s: &Server, body: &Value) -> Value {
    let resp = c
        .post(s.url("/v1/completions"))
        .json(body)
        .send()
        .await
        .unwrap();
    let status = resp.status();
    let text = resp.text().await.unwrap();
    assert_eq!(status, 200, "{text}\nlog:\n{}", s.log_text());
    serde_json::from_str(&text).unwrap()
}

fn text(v: &Value) -> &str {
    v["choices"][0]["text"].as_str().unwrap()
}

/// Text and token count of plain greedy decoding, in process.
fn plain_greedy(prompt: &[u32]) -> (String, usize) {
    let m = common::model(WeightFormat::Auto);
    let mut session = m.new_session(512).unwrap();
    let rules = StopRules {
        max_tokens: MAX_TOKENS,
        stop_ids: m.tokenizer.eog_ids().to_vec(),
        ..StopRules::default()
    };
    let g = generate(
        session.as_mut(),
        &mut PlainDecoder,
        &Sampler::new(SamplingParams::greedy()).unwrap(),
        prompt,
        &rules,
        Some(&m.tokenizer),
        &mut |_, _| {},
    )
    .unwrap();
    (g.text, g.token_ids.len())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn devices_cpu_cpu_answer_what_one_device_answers() {
    // Both servers load at once.
    let par = Server::start(&model(), &["--devices", "cpu,cpu", "--lookahead", "4,3,4"]);
    let one = Server::start(&model(), &["--lookahead", "4,3,4"]);
    let c = client();
    par.wait_ready(&c).await;
    one.wait_ready(&c).await;
    assert!(
        par.log_text().contains("Lookahead Parallelism on cpu,cpu"),
        "{}",
        par.log_text()
    );

    let tok = &common::model(WeightFormat::Auto).tokenizer;
    let prompts = [
        "one, two, three, four, five, six, seven, eight, one, two, three, four,",
        "def fibonacci(n):\n    if n < 2:\n        return n\n    return",
    ];
    let (mut steps, mut generated) = (0.0, 0.0);
    let mut greedy_bodies = Vec::new();
    for p in prompts {
        let ids = tok.encode(p, tok.add_bos_default()).unwrap();
        let (plain_text, plain_len) = plain_greedy(&ids);
        // A seed: it also seeds the lookahead window's initialisation, so both servers take
        // the same steps (without one, each request draws its own).
        let body = json!({"prompt": ids, "max_tokens": MAX_TOKENS, "temperature": 0,
                          "seed": 1});
        let a = completion(&c, &par, &body).await;
        let b = completion(&c, &one, &body).await;
        assert_eq!(text(&a), plain_text, "parallel vs plain greedy, {p:?}");
        assert_eq!(text(&b), plain_text, "one device vs plain greedy, {p:?}");
        let (ua, ub) = (&a["usage"], &b["usage"]);
        assert_eq!(ua["completion_tokens"], json!(plain_len), "{ua}");
        assert_eq!(ub["completion_tokens"], json!(plain_len), "{ub}");
        // The parallel decoder ran, on both devices, and took the single-device steps.
        let (la, lb) = (&ua["lookahead"], &ub["lookahead"]);
        assert_eq!(la["decoder"], "lookahead(4,3,4)-parallel", "{la}");
        assert_eq!(la["devices"], json!(["cpu", "cpu"]), "{la}");
        assert_eq!(lb["decoder"], "lookahead(4,3,4)", "{lb}");
        assert!(lb.get("devices").is_none(), "{lb}");
        for k in [
            "steps",
            "generated_tokens",
            "accepted_per_step",
            "drafted_tokens_accepted",
        ] {
            assert_eq!(la[k], lb[k], "{k}: {la} vs {lb}");
        }
        assert!(la["steps"].as_u64().unwrap() <= plain_len as u64, "{la}");
        steps += la["steps"].as_f64().unwrap();
        generated += la["generated_tokens"].as_f64().unwrap();
        greedy_bodies.push((body, plain_text));
    }

    // Seeded sampling is split too and gives the single-device text; a request asking for
    // plain decoding runs on the first device alone.
    let sampled = json!({"prompt": prompts[0], "max_tokens": MAX_TOKENS, "temperature": 0.8,
                         "seed": 7});
    let a = completion(&c, &par, &sampled).await;
    let b = completion(&c, &one, &sampled).await;
    assert_eq!(text(&a), text(&b));
    assert_eq!(
        a["usage"]["lookahead"]["decoder"],
        "lookahead(4,3,4)-parallel"
    );
    assert_eq!(
        a["usage"]["lookahead"]["steps"],
        b["usage"]["lookahead"]["steps"]
    );
    steps += a["usage"]["lookahead"]["steps"].as_f64().unwrap();
    generated += a["usage"]["lookahead"]["generated_tokens"]
        .as_f64()
        .unwrap();
    let mut off = greedy_bodies[0].0.clone();
    off["lookahead"] = json!(false);
    let a = completion(&c, &par, &off).await;
    assert_eq!(text(&a), greedy_bodies[0].1);
    let la = &a["usage"]["lookahead"];
    assert_eq!(la["decoder"], "plain", "{la}");
    assert!(la.get("devices").is_none(), "{la}");
    steps += la["steps"].as_f64().unwrap();
    generated += la["generated_tokens"].as_f64().unwrap();

    // The metrics count what the requests reported.
    let m = metrics(&c, &par).await;
    assert_eq!(metric(&m, "lade_decode_steps_total"), steps);
    assert_eq!(metric(&m, "lade_generated_tokens_total"), generated);

    // Concurrent requests, each on its own group, one of them streamed: the solo answers.
    let mut streamed = greedy_bodies[1].0.clone();
    streamed["stream"] = json!(true);
    streamed["stream_options"] = json!({"include_usage": true});
    let stream_task = {
        let (c, url) = (c.clone(), par.url("/v1/completions"));
        tokio::spawn(async move {
            let resp = c.post(url).json(&streamed).send().await.unwrap();
            fold_stream(&SseReader::new(resp).rest().await)
        })
    };
    let tasks: Vec<_> = greedy_bodies
        .iter()
        .map(|(body, _)| {
            let (c, url, body) = (c.clone(), par.url("/v1/completions"), body.clone());
            tokio::spawn(async move {
                let v: Value = c
                    .post(url)
                    .json(&body)
                    .send()
                    .await
                    .unwrap()
                    .json()
                    .await
                    .unwrap();
                text(&v).to_string()
            })
        })
        .collect();
    for (t, (_, want)) in tasks.into_iter().zip(&greedy_bodies) {
        assert_eq!(&t.await.unwrap(), want);
    }
    let st = stream_task.await.unwrap();
    assert!(st.done);
    assert_eq!(st.text, greedy_bodies[1].1);
    assert_eq!(
        st.usage.unwrap()["lookahead"]["decoder"],
        "lookahead(4,3,4)-parallel"
    );
}

/// One entry is single-device serving on that device; `--lookahead auto` with several
/// devices means the default config, without measuring.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_listed_device_is_plain_serving_and_auto_means_the_default() {
    let single = Server::start(&model(), &["--devices", "cpu", "--lookahead", "3,3,3"]);
    let auto = Server::start(&model(), &["--devices", "cpu,cpu"]);
    let c = client();
    single.wait_ready(&c).await;
    auto.wait_ready(&c).await;
    let body = json!({"prompt": "The capital of France is", "max_tokens": 4,
                      "temperature": 0});
    let a = completion(&c, &single, &body).await;
    let la = &a["usage"]["lookahead"];
    assert_eq!(la["decoder"], "lookahead(3,3,3)", "{la}");
    assert!(la.get("devices").is_none(), "{la}");
    let b = completion(&c, &auto, &body).await;
    assert_eq!(text(&a), text(&b));
    let lb = &b["usage"]["lookahead"];
    assert_eq!(lb["decoder"], "lookahead(8,4,8)-parallel", "{lb}");
    assert_eq!(lb["devices"], json!(["cpu", "cpu"]), "{lb}");
}

/// A bad `--devices` ends `lade serve` before it listens: an `error:` line, no panic.
#[test]
fn bad_devices_fail_at_startup() {
    let m = model();
    let fails = |devices: &str, extra: &[&str], needle: &str| {
        let out = Command::new(env!("CARGO_BIN_EXE_lade"))
            .args(["serve", "--port", "0", "--model", &m, "--devices", devices])
            .args(extra)
            .env_remove("LADE_API_KEY")
            .output()
            .unwrap();
        let (stdout, err) = (
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
        );
        assert!(!out.status.success(), "--devices {devices} should fail");
        assert!(!err.contains("panicked"), "{err}");
        assert!(!stdout.contains("listening"), "{stdout}");
        let line = err
            .lines()
            .find(|l| l.starts_with("error:"))
            .unwrap_or_else(|| panic!("no error line in {err}"));
        assert!(line.contains(needle), "{line:?} lacks {needle:?}");
    };
    fails("cpu,banana", &[], "--devices cpu,banana");
    fails("cpu,", &[], "expected auto, cpu, cuda or cuda:N");
    fails("cpu,cuda:x", &[], "cuda:N");
    fails("cpu,cuda:0", &[], "only CPU or only CUDA");
    fails("cpu,cpu", &["--device", "cpu"], "cannot be used with");
    if !lade::loader::Backend::cuda_available() {
        fails("cuda:0,cuda:1", &[], "no CUDA device can be used");
    }
}
