//! `lade serve` over HTTP: the real binary on a loopback port, driven with reqwest.

mod common;
mod server_common;

use std::time::{Duration, Instant};

use lade::decode::PlainDecoder;
use lade::generate::{generate, StopRules};
use lade::model::WeightFormat;
use lade::sampling::{Sampler, SamplingParams};
use serde_json::{json, Value};
use server_common::{
    check_accounting, client, expect_error, fold_stream, metric, metrics, wait_metrics, Server,
    SseReader,
};

fn model() -> String {
    common::model_path().display().to_string()
}

fn greedy() -> SamplingParams {
    SamplingParams::greedy()
}

/// The text of plain decoding of the raw `prompt` with `sampling` by the library (the default
/// model as the server loads it, `--dtype auto`), stopped as a completion request is.
fn plain_generation(prompt: &str, max_tokens: usize, sampling: SamplingParams) -> String {
    let loaded = common::model(WeightFormat::Auto);
    let tok = &loaded.tokenizer;
    let ids = tok.encode_prompt(prompt).unwrap();
    let mut session = loaded.new_session(512).unwrap();
    let rules = StopRules {
        max_tokens,
        stop_ids: tok.eog_ids().to_vec(),
        ..StopRules::default()
    };
    generate(
        session.as_mut(),
        &mut PlainDecoder,
        &Sampler::new(sampling).unwrap(),
        &ids,
        &rules,
        Some(tok),
        &mut |_, _| {},
    )
    .unwrap()
    .text
}

async fn post(c: &reqwest::Client, s: &Server, path: &str, body: &Value) -> reqwest::Response {
    c.post(s.url(path)).json(body).send().await.unwrap()
}

async fn ok_json(resp: reqwest::Response) -> Value {
    let status = resp.status();
    let text = resp.text().await.unwrap();
    assert_eq!(status, 200, "{text}");
    serde_json::from_str(&text).unwrap()
}

async fn stream(c: &reqwest::Client, s: &Server, path: &str, body: &Value) -> SseReader {
    SseReader::new(post(c, s, path, body).await)
}

fn chat(content: &str, extra: Value) -> Value {
    let mut v = json!({"messages": [{"role": "user", "content": content}]});
    v.as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    v
}

fn chat_text(v: &Value) -> String {
    v["choices"][0]["message"]["content"]
        .as_str()
        .unwrap()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoints_streaming_and_lookahead() {
    let s = Server::start(&model(), &["--model-name", "smol"]);
    let c = client();
    s.wait_ready(&c).await;

    let h = ok_json(c.get(s.url("/health")).send().await.unwrap()).await;
    assert_eq!(h["status"], "ok");
    let m = ok_json(c.get(s.url("/v1/models")).send().await.unwrap()).await;
    assert_eq!(m["object"], "list");
    assert_eq!(m["data"][0]["id"], "smol");
    assert_eq!(m["data"][0]["object"], "model");
    let one = ok_json(c.get(s.url("/v1/models/smol")).send().await.unwrap()).await;
    assert_eq!(one["id"], "smol");

    // Chat, non-streaming, greedy.
    let body = chat(
        "Write a haiku about the sea.",
        json!({"model": "smol", "max_tokens": 24, "temperature": 0}),
    );
    let r = ok_json(post(&c, &s, "/v1/chat/completions", &body).await).await;
    assert_eq!(r["object"], "chat.completion");
    assert!(r["id"].as_str().unwrap().starts_with("chatcmpl-"));
    assert_eq!(r["model"], "smol");
    assert_eq!(r["choices"][0]["message"]["role"], "assistant");
    let text = chat_text(&r);
    assert!(!text.is_empty());
    let u = &r["usage"];
    let (prompt, completion) = (
        u["prompt_tokens"].as_u64().unwrap(),
        u["completion_tokens"].as_u64().unwrap(),
    );
    assert!(prompt > 5 && (1..=24).contains(&completion), "{u}");
    assert_eq!(u["total_tokens"].as_u64().unwrap(), prompt + completion);
    let la = &u["lookahead"];
    // `--lookahead auto` picks by a measured cost model: on the CPU usually plain decoding, on a
    // busy machine whose measured rows look cheap maybe lookahead.
    let auto = la["decoder"].as_str().unwrap();
    assert!(auto == "plain" || auto.starts_with("lookahead("), "{auto}");
    check_accounting(u);
    // Plain decoding commits one token a step (whatever `auto` ran here).
    let plain_steps = la["generated_tokens"].as_u64().unwrap();
    if completion == 24 {
        assert_eq!(r["choices"][0]["finish_reason"], "length");
    }

    // The same as a stream, with usage: same text, role chunk first, [DONE] last.
    let mut sb = body.clone();
    sb["stream"] = json!(true);
    sb["stream_options"] = json!({"include_usage": true});
    let st = fold_stream(
        &stream(&c, &s, "/v1/chat/completions", &sb)
            .await
            .rest()
            .await,
    );
    assert!(st.done && st.role_chunk);
    assert_eq!(st.text, text);
    assert_eq!(
        st.finish_reason.as_deref(),
        r["choices"][0]["finish_reason"].as_str()
    );
    let su = st.usage.expect("usage chunk");
    assert_eq!(su["completion_tokens"], u["completion_tokens"]);
    assert_eq!(su["prompt_tokens"], u["prompt_tokens"]);

    // Without include_usage: no usage chunk.
    sb.as_object_mut().unwrap().remove("stream_options");
    let st = fold_stream(
        &stream(&c, &s, "/v1/chat/completions", &sb)
            .await
            .rest()
            .await,
    );
    assert!(st.done && st.usage.is_none());
    assert_eq!(st.text, text);

    // Lookahead on this request: greedy lookahead is exact, and the usage says it ran.
    let mut lb = body.clone();
    lb["lookahead"] = json!({"w": 4, "n": 3, "g": 4});
    let lr = ok_json(post(&c, &s, "/v1/chat/completions", &lb).await).await;
    assert_eq!(chat_text(&lr), text);
    let lu = &lr["usage"]["lookahead"];
    assert_eq!(lu["decoder"], "lookahead(4,3,4)");
    assert_eq!(lr["usage"]["completion_tokens"], u["completion_tokens"]);
    let (steps, _) = check_accounting(&lr["usage"]);
    assert!(steps <= plain_steps);
    assert_eq!(lu["mean_accepted"], lu["compression"]);
    // The decoder's own counters, and the steps by query rows (a step of 4,3,4 has at most
    // (W + G)(N - 1) = 16).
    assert_eq!(lu["decoder_stats"]["window"], 4);
    // The server loaded the draft corpus installed beside the default model for its
    // lookahead requests.
    assert!(
        lu["decoder_stats"]["corpus"]["texts"].as_u64().unwrap() > 0,
        "{lu}"
    );
    let by_rows = lu["steps_by_rows"].as_object().unwrap();
    let steps: u64 = by_rows.values().map(|n| n.as_u64().unwrap()).sum();
    assert_eq!(steps, lu["steps"].as_u64().unwrap());
    assert!(by_rows.keys().all(|r| r.parse::<usize>().unwrap() <= 16));
    lb["lookahead"] = json!(false);
    let off = ok_json(post(&c, &s, "/v1/chat/completions", &lb).await).await;
    assert_eq!(chat_text(&off), text);
    assert_eq!(off["usage"]["lookahead"]["decoder"], "plain");
    check_accounting(&off["usage"]);

    // Completions: text prompt, token-id prompt, streaming; max_completion_tokens.
    let cb = json!({"model": "smol", "prompt": "The capital of France is", "max_tokens": 8,
                    "temperature": 0, "lookahead": {"w": 3, "n": 3, "g": 3}});
    let cr = ok_json(post(&c, &s, "/v1/completions", &cb).await).await;
    assert_eq!(cr["object"], "text_completion");
    assert!(cr["id"].as_str().unwrap().starts_with("cmpl-"));
    let ctext = cr["choices"][0]["text"].as_str().unwrap().to_string();
    assert!(!ctext.is_empty());
    check_accounting(&cr["usage"]);
    // The oracle: plain greedy decoding of the same prompt by the library, in this process.
    assert_eq!(
        ctext,
        plain_generation("The capital of France is", 8, greedy())
    );
    let mut csb = cb.clone();
    csb["stream"] = json!(true);
    csb["stream_options"] = json!({"include_usage": true});
    let cst = fold_stream(&stream(&c, &s, "/v1/completions", &csb).await.rest().await);
    assert!(cst.done);
    assert_eq!(cst.text, ctext);
    assert_eq!(
        cst.usage.unwrap()["lookahead"]["decoder"],
        "lookahead(3,3,3)"
    );
    let tok = lade::loader::load_tokenizer(&common::model_path()).unwrap();
    let ids = tok.encode("The capital of France is", false).unwrap();
    let ir = ok_json(
        post(
            &c,
            &s,
            "/v1/completions",
            &json!({"prompt": ids, "max_completion_tokens": 8, "temperature": 0}),
        )
        .await,
    )
    .await;
    assert_eq!(ir["choices"][0]["text"], ctext.as_str());

    // Stop strings cut the text (string or list), finish_reason "stop".
    if let Some(cut) = ctext.char_indices().nth(3).map(|(i, _)| i) {
        let stop = ctext[cut..].chars().take(2).collect::<String>();
        for stop_field in [json!(stop), json!(["@@never@@", stop])] {
            let mut sb = cb.clone();
            sb["stop"] = stop_field;
            let sr = ok_json(post(&c, &s, "/v1/completions", &sb).await).await;
            let got = sr["choices"][0]["text"].as_str().unwrap();
            assert_eq!(got, &ctext[..ctext.find(&stop).unwrap()]);
            assert_eq!(sr["choices"][0]["finish_reason"], "stop");
        }
    }

    // Seeded sampling is reproducible, with and without lookahead.
    let sampled = |la: Value| {
        chat(
            "Name three colours.",
            json!({"max_tokens": 16, "temperature": 0.9, "top_p": 0.95, "top_k": 40,
                   "min_p": 0.02, "seed": 1234, "lookahead": la}),
        )
    };
    let a = ok_json(post(&c, &s, "/v1/chat/completions", &sampled(json!(false))).await).await;
    let b = ok_json(post(&c, &s, "/v1/chat/completions", &sampled(json!(false))).await).await;
    let l = ok_json(
        post(
            &c,
            &s,
            "/v1/chat/completions",
            &sampled(json!({"w": 4, "n": 3, "g": 4})),
        )
        .await,
    )
    .await;
    assert_eq!(chat_text(&a), chat_text(&b));
    assert_eq!(chat_text(&a), chat_text(&l));
    check_accounting(&l["usage"]);
    // Seeded sampling on a completion: the server's lookahead text is the library's plain
    // seeded sampling of the same prompt.
    let seeded = SamplingParams {
        temperature: 0.9,
        top_k: 40,
        top_p: 0.95,
        min_p: 0.02,
        seed: 1234,
        ..SamplingParams::greedy()
    };
    let sr = ok_json(
        post(
            &c,
            &s,
            "/v1/completions",
            &json!({"prompt": "Once upon a time", "max_tokens": 16, "temperature": 0.9,
                    "top_p": 0.95, "top_k": 40, "min_p": 0.02, "seed": 1234,
                    "lookahead": {"w": 4, "n": 3, "g": 4}}),
        )
        .await,
    )
    .await;
    check_accounting(&sr["usage"]);
    assert_eq!(
        sr["choices"][0]["text"].as_str().unwrap(),
        plain_generation("Once upon a time", 16, seeded)
    );

    // Metrics: Prometheus text with every metric family the server exports.
    let m = metrics(&c, &s).await;
    for family in [
        "lade_requests_total",
        "lade_prompt_tokens_total",
        "lade_generated_tokens_total",
        "lade_decode_steps_total",
        "lade_step_compression",
        "lade_accepted_tokens_per_step",
        "lade_time_to_first_token_seconds",
        "lade_request_duration_seconds",
        "lade_queue_depth",
    ] {
        assert!(
            m.contains(&format!("# TYPE {family} ")),
            "{family} missing:\n{m}"
        );
    }
    // The counters agree with each other: the histogram of tokens per step counts every
    // step and adds up to the generated tokens, and the compression is their ratio.
    let steps = metric(&m, "lade_decode_steps_total");
    let generated = metric(&m, "lade_generated_tokens_total");
    assert!(steps > 0.0 && steps <= generated, "{m}");
    assert_eq!(metric(&m, "lade_accepted_tokens_per_step_count"), steps);
    assert_eq!(metric(&m, "lade_accepted_tokens_per_step_sum"), generated);
    assert!((metric(&m, "lade_step_compression") - generated / steps).abs() < 1e-9);
    assert!(metric(&m, "lade_time_to_first_token_seconds_count") > 0.0);
    assert_eq!(metric(&m, "lade_queue_depth"), 0.0);
    assert!(
        m.contains("lade_requests_total{endpoint=\"/v1/chat/completions\",code=\"200\"}"),
        "{m}"
    );
}

/// Each request of a concurrent batch gets exactly what it gets alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_requests_equal_solo_requests() {
    let s = Server::start(&model(), &["--max-concurrent", "4"]);
    let c = client();
    s.wait_ready(&c).await;
    let bodies: Vec<(&str, Value)> = vec![
        (
            "/v1/chat/completions",
            chat(
                "Explain how a hash map works.",
                json!({"max_tokens": 20, "temperature": 0}),
            ),
        ),
        (
            "/v1/chat/completions",
            chat(
                "List five uses of vinegar.",
                json!({"max_tokens": 20, "temperature": 0.8, "seed": 7,
                       "lookahead": {"w": 3, "n": 3, "g": 3}}),
            ),
        ),
        (
            "/v1/completions",
            json!({"prompt": "def fibonacci(n):", "max_tokens": 20, "temperature": 0,
                   "lookahead": {"w": 4, "n": 3, "g": 4}}),
        ),
        (
            "/v1/completions",
            json!({"prompt": "Once upon a time", "max_tokens": 20, "temperature": 1.0,
                   "top_k": 20, "seed": 99}),
        ),
        (
            "/v1/chat/completions",
            chat(
                "What is the boiling point of water?",
                json!({"max_tokens": 20, "temperature": 0, "stream": true}),
            ),
        ),
    ];
    let mut solo = Vec::new();
    for (path, body) in &bodies {
        solo.push(text_of_url(&c, &s.base, path, body).await);
    }
    // Twice each, all at once.
    let tasks: Vec<_> = bodies
        .iter()
        .chain(bodies.iter())
        .map(|(path, body)| {
            let (c, url, path, body) = (c.clone(), s.base.clone(), *path, body.clone());
            tokio::spawn(async move { text_of_url(&c, &url, path, &body).await })
        })
        .collect();
    let mut together = Vec::new();
    for t in tasks {
        together.push(t.await.unwrap());
    }
    for (i, got) in together.iter().enumerate() {
        assert_eq!(got, &solo[i % bodies.len()], "request {i}");
    }
    let m = metrics(&c, &s).await;
    assert_eq!(
        metric(
            &m,
            "lade_requests_total{endpoint=\"/v1/chat/completions\",code=\"200\"}"
        ),
        9.0
    );
}

/// The text of a completion or chat answer, streamed or not.
async fn text_of_url(c: &reqwest::Client, base: &str, path: &str, body: &Value) -> String {
    let resp = c
        .post(format!("{base}{path}"))
        .json(body)
        .send()
        .await
        .unwrap();
    if body["stream"] == json!(true) {
        let st = fold_stream(&SseReader::new(resp).rest().await);
        assert!(st.done);
        return st.text;
    }
    let v = ok_json(resp).await;
    let ch = &v["choices"][0];
    ch.get("message")
        .map_or(&ch["text"], |m| &m["content"])
        .as_str()
        .unwrap()
        .to_string()
}

/// A long generation: the model keeps going through end-of-generation tokens.
fn long_stream(max_tokens: usize) -> Value {
    json!({"prompt": "Count from one to one thousand: one, two,", "max_tokens": max_tokens,
           "temperature": 0, "ignore_eos": true, "stream": true})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_queue_answers_429_with_retry_after() {
    let s = Server::start(&model(), &["--max-concurrent", "1", "--queue", "1"]);
    let c = client();
    s.wait_ready(&c).await;
    // A holds the only slot.
    let mut a = stream(&c, &s, "/v1/completions", &long_stream(2000)).await;
    assert!(a.next().await.is_some());
    // B waits in the queue.
    let b = {
        let (c, base) = (c.clone(), s.base.clone());
        tokio::spawn(async move {
            let body = json!({"prompt": "Hello", "max_tokens": 4, "temperature": 0});
            text_of_url(&c, &base, "/v1/completions", &body).await
        })
    };
    wait_metrics(&c, &s, Duration::from_secs(300), |m| {
        metric(m, "lade_queue_depth") == 1.0
    })
    .await;
    // C finds the queue full.
    let r = post(
        &c,
        &s,
        "/v1/chat/completions",
        &chat("hi", json!({"max_tokens": 4})),
    )
    .await;
    let retry: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(retry >= 1);
    let e = expect_error(r, 429).await;
    assert_eq!(e["code"], "rate_limit_exceeded");
    // A leaves; B is served.
    drop(a);
    let text = tokio::time::timeout(Duration::from_secs(300), b)
        .await
        .expect("queued request served")
        .unwrap();
    assert!(!text.is_empty());
    let m = metrics(&c, &s).await;
    assert_eq!(metric(&m, "lade_requests_rejected_total"), 1.0);
    assert_eq!(metric(&m, "lade_queue_depth"), 0.0);
    // Served again afterwards.
    ok_json(
        post(
            &c,
            &s,
            "/v1/completions",
            &json!({"prompt": "Hi", "max_tokens": 2}),
        )
        .await,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_disconnects_stops_its_generation() {
    let s = Server::start(&model(), &[]);
    let c = client();
    s.wait_ready(&c).await;

    // Streaming: read a few chunks, then hang up.
    let mut r = stream(&c, &s, "/v1/completions", &long_stream(3000)).await;
    for _ in 0..3 {
        assert!(r.next().await.is_some());
    }
    let t = Instant::now();
    drop(r);
    // Waits for the events (the generation counted as cancelled and no longer running), not
    // for a time: the bound is only there so that a hung server fails the test.
    let m = wait_metrics(&c, &s, Duration::from_secs(300), |m| {
        metric(m, "lade_requests_cancelled_total") == 1.0
            && metric(m, "lade_requests_running") == 0.0
    })
    .await;
    let generated = metric(&m, "lade_generated_tokens_total");
    // The hang-up is seen as soon as the socket closes and the loop checks the flag before
    // every step: only the tokens in flight when the client left were generated, a small
    // part of the 3000 asked for however slow or busy the machine (a busy machine slows the
    // generation as much as the client).
    eprintln!(
        "streaming: {generated} tokens generated, stopped {:?} after hang-up",
        t.elapsed()
    );
    assert!(generated < 256.0, "generated {generated} of 3000");

    // Non-streaming: the client gives up while the server generates.
    let body = json!({"prompt": "Count to a thousand:", "max_tokens": 3000,
                      "temperature": 0, "ignore_eos": true});
    let quick = reqwest::Client::builder()
        .timeout(Duration::from_millis(1500))
        .build()
        .unwrap();
    let err = quick
        .post(s.url("/v1/completions"))
        .json(&body)
        .send()
        .await
        .expect_err("times out");
    assert!(err.is_timeout(), "{err}");
    let m = wait_metrics(&c, &s, Duration::from_secs(300), |m| {
        metric(m, "lade_requests_cancelled_total") == 2.0
            && metric(m, "lade_requests_running") == 0.0
    })
    .await;
    let second = metric(&m, "lade_generated_tokens_total") - generated;
    eprintln!("non-streaming: {second} tokens generated before the client gave up");
    assert!(second < 1500.0, "generated {second} of 3000");
    // Still serving.
    ok_json(
        post(
            &c,
            &s,
            "/v1/completions",
            &json!({"prompt": "Hi", "max_tokens": 2}),
        )
        .await,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_key_is_required_when_set() {
    let s = Server::start(&model(), &["--api-key", "sk-lade-test"]);
    let c = client();
    // /health is open, even while loading.
    s.wait_ready(&c).await;
    for (path, post_body) in [
        ("/v1/models", None),
        ("/metrics", None),
        (
            "/v1/chat/completions",
            Some(chat("hi", json!({"max_tokens": 2}))),
        ),
        (
            "/v1/completions",
            Some(json!({"prompt": "hi", "max_tokens": 2})),
        ),
    ] {
        for auth in [
            None,
            Some("Bearer wrong"),
            Some("Bearer sk-lade-tes"),
            Some("Basic sk-lade-test"),
        ] {
            let mut req = match &post_body {
                Some(b) => c.post(s.url(path)).json(b),
                None => c.get(s.url(path)),
            };
            if let Some(a) = auth {
                req = req.header("authorization", a);
            }
            let r = req.send().await.unwrap();
            assert_eq!(r.headers()["www-authenticate"], "Bearer");
            let e = expect_error(r, 401).await;
            assert_eq!(e["code"], "invalid_api_key", "{path} {auth:?}");
        }
        let req = match &post_body {
            Some(b) => c.post(s.url(path)).json(b),
            None => c.get(s.url(path)),
        };
        let r = req.bearer_auth("sk-lade-test").send().await.unwrap();
        assert_eq!(r.status(), 200, "{path}");
    }
}

/// Bad input gets a 4xx OpenAI error, never a 500, and the server keeps serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_a_4xx_openai_error() {
    let s = Server::start(
        &model(),
        &[
            "--ctx-size",
            "128",
            "--max-body-bytes",
            "65536",
            "--model-name",
            "smol",
        ],
    );
    let c = client();
    s.wait_ready(&c).await;
    let chat_url = s.url("/v1/chat/completions");
    let raw = |body: &'static [u8]| {
        c.post(&chat_url)
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    // Malformed bodies.
    for body in [
        &b"{\"messages\": ["[..],
        b"not json",
        b"",
        b"[1, 2, 3]",
        b"\"a string\"",
        b"{\"messages\": [{\"role\": \"user\", \"content\": \"\xff\xfe\"}]}",
    ] {
        expect_error(raw(body).await.unwrap(), 400).await;
    }
    let long_prompt = "word ".repeat(400);
    let user = |extra: Value| chat("Say hi.", extra);
    // (path, body, status, param, code)
    type Case<'a> = (&'a str, Value, u16, Option<&'a str>, Option<&'a str>);
    let cases: Vec<Case> = vec![
        (
            "/v1/chat/completions",
            json!({"messages": []}),
            400,
            Some("messages"),
            None,
        ),
        (
            "/v1/chat/completions",
            json!({"messages": "hi"}),
            400,
            Some("messages"),
            None,
        ),
        (
            "/v1/chat/completions",
            json!({"model": "smol"}),
            400,
            Some("messages"),
            None,
        ),
        (
            "/v1/chat/completions",
            json!({"messages": [{"role": "user"}]}),
            400,
            Some("messages[0].content"),
            None,
        ),
        (
            "/v1/chat/completions",
            json!({"messages": [{"role": 5, "content": "x"}]}),
            400,
            Some("messages[0].role"),
            None,
        ),
        (
            "/v1/chat/completions",
            json!({"messages": [{"role": "user", "content":
            [{"type": "image_url", "image_url": {"url": "x"}}]}]}),
            400,
            Some("messages[0].content[0]"),
            None,
        ),
        (
            "/v1/chat/completions",
            user(json!({"model": "gpt-4"})),
            404,
            Some("model"),
            Some("model_not_found"),
        ),
        (
            "/v1/chat/completions",
            user(json!({"model": 7})),
            400,
            Some("model"),
            None,
        ),
        (
            "/v1/chat/completions",
            user(json!({"temperature": "hot"})),
            400,
            Some("temperature"),
            None,
        ),
        (
            "/v1/chat/completions",
            user(json!({"temperature": -1})),
            400,
            Some("temperature"),
            None,
        ),
        (
            "/v1/chat/completions",
            user(json!({"temperature": 2.5})),
            400,
            Some("temperature"),
            None,
        ),
        (
            "/v1/chat/completions",
            user(json!({"top_p": 0})),
            400,
            Some("top_p"),
            None,
        ),
        (
            "/v1/chat/completions",
            user(json!({"top_p": 1.5})),
            400,
            Some("top_p"),
            None,
        ),
        (
            "/v1/chat/completions",
            user(json!({"top_k": -3})),
            400,
            Some("top_k"),
            None,
        ),
        (
            "/v1/chat/completions",
            user(json!({"top_k": 2.5})),
            400,
            Some("top_k"),
            None,
        ),
        (
            "/v1/chat/completions",
            user(json!({"min_p": 2})),
            400,
            Some("min_p"),
            None,
        ),
        (
            "/v1/chat/completions",
            user(json!({"seed": "x"})),
            400,
            Some("seed"),
            None,
        ),
        (
            "/v1/chat/completions",
            user(json!({"max_tokens": 0})),
            400,
            Some("max_tokens"),
            None,
        ),
        (
            "/v1/chat/completions",
            user(json!({"max_tokens": -5})),
            400,
            Some("max_tokens"),
            None,
        ),
        (
            "/v1/chat/completions",
            user(json!({"max_tokens": "ten"})),
            400,
            Some("max_tokens"),
            None,
        ),
        (
            "/v1/chat/completions",
            user(json!({"max_tokens": 100000})),
            400,
            Some("max_tokens"),
            Some("context_length_exceeded"),
        ),
        (
            "/v1/chat/completions",
            user(json!({"max_completion_tokens": 500})),
            400,
            Some("max_tokens"),
            Some("context_length_exceeded"),
        ),
        (
            "/v1/chat/completions",
            chat(&long_prompt, json!({})),
            400,
            Some("messages"),
            Some("context_length_exceeded"),
        ),
        (
            "/v1/completions",
            json!({"prompt": long_prompt}),
            400,
            Some("prompt"),
            Some("context_length_exceeded"),
        ),
        (
            "/v1/chat/completions",
            user(json!({"n": 2})),
            400,
            Some("n"),
            None,
        ),
        (
            "/v1/chat/completions",
            user(json!({"n": 0})),
            400,
            Some("n"),
            None,
        ),
        (
            "/v1/chat/completions",
            user(json!({"stop": 5})),
            400,
            Some("stop"),
            None,
        ),
        (
            "/v1/chat/completions",
            user(json!({"stop": ["a", 1]})),
            400,
            Some("stop"),
            None,
        ),
        (
            "/v1/chat/completions",
            user(json!({"stream": "yes"})),
            400,
            Some("stream"),
            None,
        ),
        (
            "/v1/chat/completions",
            user(json!({"stream_options": {"include_usage": true}})),
            400,
            Some("stream_options"),
            None,
        ),
        (
            "/v1/chat/completions",
            user(json!({"lookahead": {"w": 0, "n": 3, "g": 0}})),
            400,
            Some("lookahead"),
            None,
        ),
        (
            "/v1/chat/completions",
            user(json!({"lookahead": {"w": 500, "n": 30, "g": 500}})),
            400,
            Some("lookahead"),
            None,
        ),
        (
            "/v1/chat/completions",
            user(json!({"lookahead": "yes"})),
            400,
            Some("lookahead"),
            None,
        ),
        (
            "/v1/chat/completions",
            user(json!({"logprobs": true})),
            400,
            Some("logprobs"),
            None,
        ),
        (
            "/v1/chat/completions",
            user(json!({"frequency_penalty": 1})),
            400,
            Some("frequency_penalty"),
            None,
        ),
        ("/v1/completions", json!({}), 400, Some("prompt"), None),
        (
            "/v1/completions",
            json!({"prompt": ""}),
            400,
            Some("prompt"),
            None,
        ),
        (
            "/v1/completions",
            json!({"prompt": 12}),
            400,
            Some("prompt"),
            None,
        ),
        (
            "/v1/completions",
            json!({"prompt": ["a", "b"]}),
            400,
            Some("prompt"),
            None,
        ),
        (
            "/v1/completions",
            json!({"prompt": [1, 99999999]}),
            400,
            Some("prompt"),
            None,
        ),
        (
            "/v1/completions",
            json!({"prompt": [1, -1]}),
            400,
            Some("prompt"),
            None,
        ),
        (
            "/v1/completions",
            json!({"prompt": "x", "echo": true}),
            400,
            Some("echo"),
            None,
        ),
    ];
    for (path, body, status, param, code) in &cases {
        let e = expect_error(post(&c, &s, path, body).await, *status).await;
        assert_eq!(e["param"].as_str(), *param, "{body}: {e}");
        if let Some(code) = code {
            assert_eq!(e["code"], *code, "{body}: {e}");
        }
    }
    // Too large a body.
    let big = json!({"prompt": "x".repeat(70_000)});
    let e = expect_error(post(&c, &s, "/v1/completions", &big).await, 413).await;
    assert_eq!(e["code"], "request_too_large");
    // Unknown route, wrong method.
    expect_error(c.get(s.url("/v2/nothing")).send().await.unwrap(), 404).await;
    expect_error(c.get(&chat_url).send().await.unwrap(), 405).await;
    expect_error(c.get(s.url("/v1/models/gpt-4")).send().await.unwrap(), 404).await;

    // Still serving, and nothing answered 5xx.
    let r = ok_json(
        post(
            &c,
            &s,
            "/v1/chat/completions",
            &user(json!({"max_tokens": 4})),
        )
        .await,
    )
    .await;
    assert!(r["usage"]["completion_tokens"].as_u64().unwrap() >= 1);
    let h = c.get(s.url("/health")).send().await.unwrap();
    assert_eq!(h.status(), 200);
    let m = metrics(&c, &s).await;
    assert!(
        !m.lines()
            .any(|l| l.starts_with("lade_requests_total{endpoint=\"/v1") && l.contains("code=\"5")),
        "{m}"
    );
}

/// SIGTERM: no new connections, in-flight streams finish; with no grace they end cleanly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_finishes_in_flight_streams() {
    let mut s = Server::start(&model(), &[]);
    let c = client();
    s.wait_ready(&c).await;
    let mut body = long_stream(24);
    body["stream_options"] = json!({"include_usage": true});
    let mut r = stream(&c, &s, "/v1/completions", &body).await;
    let first = r.next().await.unwrap();
    s.terminate();
    // The listener closes: new connections are refused (waited for as an event; the bound
    // only fails a server that never closes it).
    let fresh = reqwest::Client::new();
    let t = Instant::now();
    while fresh.get(s.url("/health")).send().await.is_ok() {
        assert!(
            t.elapsed() < Duration::from_secs(120),
            "the listener stays open"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut payloads = vec![first];
    payloads.extend(r.rest().await);
    let st = fold_stream(&payloads);
    assert!(st.done);
    assert_eq!(st.finish_reason.as_deref(), Some("length"));
    assert_eq!(st.usage.unwrap()["completion_tokens"], 24);
    assert_eq!(s.wait_exit(Duration::from_secs(120)), Some(0));

    // No grace: the stream is ended within a step, still with a finish reason and [DONE].
    let mut s = Server::start(&model(), &["--shutdown-grace", "0"]);
    s.wait_ready(&c).await;
    let mut r = stream(&c, &s, "/v1/completions", &long_stream(3000)).await;
    let first = r.next().await.unwrap();
    s.terminate();
    let mut payloads = vec![first];
    payloads.extend(r.rest().await);
    let st = fold_stream(&payloads);
    assert!(st.done);
    assert_eq!(st.finish_reason.as_deref(), Some("cancelled"));
    assert_eq!(s.wait_exit(Duration::from_secs(120)), Some(0));
}

/// `/health` is 503 and generation requests 503 until the model is loaded (in-process server
/// whose loader waits for the test's signal).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_is_503_while_loading() {
    use lade::server::{serve, ModelLoader, ServerConfig};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (go_tx, go_rx) = std::sync::mpsc::channel::<()>();
    let loader: ModelLoader = Box::new(move || {
        go_rx.recv()?;
        let loaded = lade::loader::load(&common::model_path(), &Default::default())?;
        Ok((loaded, 512))
    });
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let mut config = ServerConfig::new("m");
    config.log = false;
    let server = tokio::spawn(serve(listener, config, loader, async {
        let _ = stop_rx.await;
    }));
    let c = client();
    let h = c.get(format!("{base}/health")).send().await.unwrap();
    assert_eq!(h.status(), 503);
    assert_eq!(h.headers()["retry-after"], "1");
    assert_eq!(h.json::<Value>().await.unwrap()["status"], "loading");
    let r = c
        .post(format!("{base}/v1/chat/completions"))
        .json(&chat("hi", json!({"max_tokens": 2})))
        .send()
        .await
        .unwrap();
    let e = expect_error(r, 503).await;
    assert_eq!(e["code"], "model_loading");
    // Models and metrics answer while loading.
    assert_eq!(
        c.get(format!("{base}/v1/models"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let m = c
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(metric(&m, "lade_model_loaded"), 0.0);

    go_tx.send(()).unwrap();
    let t = Instant::now();
    loop {
        let h = c.get(format!("{base}/health")).send().await.unwrap();
        if h.status() == 200 {
            break;
        }
        assert!(t.elapsed() < Duration::from_secs(300));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let r = c
        .post(format!("{base}/v1/chat/completions"))
        .json(&chat("hi", json!({"max_tokens": 2, "model": "m"})))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    stop_tx.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(120), server)
        .await
        .expect("server stops")
        .unwrap()
        .unwrap();
}

/// Start-up failures: a clear `error:` line and a non-zero exit, never a panic.
#[test]
fn startup_errors_exit_cleanly() {
    use std::process::Command;
    let run = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_lade"))
            .arg("serve")
            .args(args)
            .env_remove("LADE_API_KEY")
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(!out.status.success(), "{args:?} should fail");
        assert!(!err.contains("panicked"), "{err}");
        err
    };
    let err = run(&["--port", "0", "--model", "/nonexistent/model.gguf", "-q"]);
    assert!(
        err.contains("error: loading the model") && err.contains("not found"),
        "{err}"
    );
    let err = run(&["--port", "0", "--lookahead", "4,1,4"]);
    assert!(err.contains("error: --lookahead"), "{err}");
    let err = run(&["--port", "0", "--max-concurrent", "0"]);
    assert!(err.contains("--max-concurrent"), "{err}");
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let err = run(&["--port", &port, "--model", &model()]);
    assert!(err.contains("cannot listen on 127.0.0.1:"), "{err}");
}
