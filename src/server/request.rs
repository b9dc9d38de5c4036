//! Parsing and validating the JSON of `/v1/chat/completions` and `/v1/completions`.
//!
//! Fields are read one by one from the JSON object (not through a derived struct) so that each
//! wrong value is answered with the name of its field (`param`) and a plain message. Unknown
//! fields are ignored, as most OpenAI-compatible servers do; known OpenAI fields this server
//! cannot honour (`logprobs`, `tools`, non-zero penalties, ...) are refused, never silently
//! dropped.

use serde_json::{Map, Value};

use super::error::ApiError;
use crate::chat_template::ChatMessage;
use crate::decode::{DecoderKind, DecoderSpec, LookaheadConfig};
use crate::sampling::{PartialSampling, SamplingParams};

/// Which endpoint a request came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    Chat,
    Completion,
}

impl Endpoint {
    pub fn path(self) -> &'static str {
        match self {
            Endpoint::Chat => "/v1/chat/completions",
            Endpoint::Completion => "/v1/completions",
        }
    }
}

/// What to generate from.
#[derive(Debug, Clone, PartialEq)]
pub enum PromptInput {
    /// Chat messages, rendered with the model's template.
    Messages(Vec<ChatMessage>),
    /// Raw text (completions).
    Text(String),
    /// Token ids (completions).
    Tokens(Vec<u32>),
}

/// A validated generation request.
#[derive(Debug, Clone, PartialEq)]
pub struct GenRequest {
    pub endpoint: Endpoint,
    pub model: Option<String>,
    pub prompt: PromptInput,
    /// `max_completion_tokens`, else `max_tokens`; `None`: up to the end of the context.
    pub max_tokens: Option<usize>,
    /// The sampling settings the request gives; the others are the server's defaults (the
    /// model's recommendation, else llama.cpp's: [`PartialSampling::resolve`]).
    pub sampling: PartialSampling,
    /// `None`: the server picks a seed.
    pub seed: Option<u64>,
    pub stop: Vec<String>,
    pub stream: bool,
    pub include_usage: bool,
    /// The `lookahead` extension field: `None` (absent or `null`) for the server's
    /// `--lookahead` setting, plain decoding for `false`, lookahead for `true` (the default
    /// W, N, G) or `{w, n, g}` (each field defaulting to the default config's).
    pub lookahead: Option<DecoderKind>,
    /// Extension: keep generating through end-of-generation tokens (benchmarks).
    pub ignore_eos: bool,
}

/// Most stop strings per request.
pub const MAX_STOP_STRINGS: usize = 16;
/// Most query tokens one lookahead step may feed, `(W + G) × (N - 1)`: bounds the compute and
/// memory one request can ask for.
pub const MAX_LOOKAHEAD_STEP_TOKENS: usize = 1024;

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Field access with OpenAI-style errors; `null` counts as absent.
struct Fields<'a> {
    obj: &'a Map<String, Value>,
}

impl<'a> Fields<'a> {
    fn get(&self, key: &str) -> Option<&'a Value> {
        self.obj.get(key).filter(|v| !v.is_null())
    }

    fn number(&self, key: &str) -> Result<Option<f64>, ApiError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Number(n)) => match n.as_f64() {
                Some(x) if x.is_finite() => Ok(Some(x)),
                _ => Err(ApiError::invalid(
                    key,
                    format!("`{key}` must be a finite number"),
                )),
            },
            Some(v) => Err(ApiError::invalid(
                key,
                format!("`{key}` must be a number, got {}", type_name(v)),
            )),
        }
    }

    fn uint(&self, key: &str) -> Result<Option<u64>, ApiError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Number(n)) => match n.as_u64() {
                Some(x) => Ok(Some(x)),
                None => Err(ApiError::invalid(
                    key,
                    format!("`{key}` must be a non-negative integer, got {n}"),
                )),
            },
            Some(v) => Err(ApiError::invalid(
                key,
                format!("`{key}` must be an integer, got {}", type_name(v)),
            )),
        }
    }

    fn boolean(&self, key: &str) -> Result<Option<bool>, ApiError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(v) => Err(ApiError::invalid(
                key,
                format!("`{key}` must be a boolean, got {}", type_name(v)),
            )),
        }
    }

    fn string(&self, key: &str) -> Result<Option<&'a str>, ApiError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(v) => Err(ApiError::invalid(
                key,
                format!("`{key}` must be a string, got {}", type_name(v)),
            )),
        }
    }
}

/// Parses a request body for `endpoint`.
pub fn parse(endpoint: Endpoint, body: &[u8]) -> Result<GenRequest, ApiError> {
    let value: Value = serde_json::from_slice(body).map_err(|e| {
        ApiError::bad_request(format!(
            "The request body is not valid JSON ({e}). Send a JSON object with \
             Content-Type: application/json."
        ))
    })?;
    let Value::Object(obj) = value else {
        return Err(ApiError::bad_request(format!(
            "The request body must be a JSON object, got {}.",
            type_name(&value)
        )));
    };
    let f = Fields { obj: &obj };

    let model = f.string("model")?.map(str::to_string);
    let prompt = match endpoint {
        Endpoint::Chat => PromptInput::Messages(messages(&f)?),
        Endpoint::Completion => completion_prompt(&f)?,
    };
    refuse_unsupported(endpoint, &f)?;

    let max_tokens = match (f.uint("max_completion_tokens")?, f.uint("max_tokens")?) {
        (Some(m), _) => Some(("max_completion_tokens", m)),
        (None, Some(m)) => Some(("max_tokens", m)),
        (None, None) => None,
    };
    let max_tokens = match max_tokens {
        Some((key, 0)) => {
            return Err(ApiError::invalid(
                key,
                format!("`{key}` must be at least 1"),
            ))
        }
        Some((_, m)) => Some(usize::try_from(m).unwrap_or(usize::MAX)),
        None => None,
    };

    if let Some(n) = f.uint("n")? {
        if n != 1 {
            return Err(ApiError::unsupported(
                "n",
                format!("Only `n` = 1 is supported (one choice per request), got {n}."),
            ));
        }
    }

    let sampling = sampling(&f)?;
    let seed = seed(&f)?;
    let stop = stop(&f)?;
    let stream = f.boolean("stream")?.unwrap_or(false);
    let include_usage = match f.get("stream_options") {
        None => false,
        Some(Value::Object(o)) => {
            if !stream {
                return Err(ApiError::invalid(
                    "stream_options",
                    "`stream_options` is only allowed when `stream` is true",
                ));
            }
            let so = Fields { obj: o };
            so.boolean("include_usage")
                .map_err(|e| e.param("stream_options.include_usage"))?
                .unwrap_or(false)
        }
        Some(v) => {
            return Err(ApiError::invalid(
                "stream_options",
                format!("`stream_options` must be an object, got {}", type_name(v)),
            ))
        }
    };
    let lookahead = lookahead(f.get("lookahead"))?;
    let ignore_eos = f.boolean("ignore_eos")?.unwrap_or(false);

    Ok(GenRequest {
        endpoint,
        model,
        prompt,
        max_tokens,
        sampling,
        seed,
        stop,
        stream,
        include_usage,
        lookahead,
        ignore_eos,
    })
}

fn messages(f: &Fields<'_>) -> Result<Vec<ChatMessage>, ApiError> {
    let list = match f.get("messages") {
        None => {
            return Err(ApiError::invalid(
                "messages",
                "`messages` is required: a non-empty array of {role, content} objects",
            ))
        }
        Some(Value::Array(a)) => a,
        Some(v) => {
            return Err(ApiError::invalid(
                "messages",
                format!("`messages` must be an array, got {}", type_name(v)),
            ))
        }
    };
    if list.is_empty() {
        return Err(ApiError::invalid(
            "messages",
            "`messages` must contain at least one message",
        ));
    }
    list.iter()
        .enumerate()
        .map(|(i, m)| message(i, m))
        .collect()
}

fn message(i: usize, m: &Value) -> Result<ChatMessage, ApiError> {
    let at = |field: &str| format!("messages[{i}]{field}");
    let Value::Object(obj) = m else {
        return Err(ApiError::invalid(
            &at(""),
            format!("`{}` must be an object, got {}", at(""), type_name(m)),
        ));
    };
    let f = Fields { obj };
    let role = match f.string("role").map_err(|e| e.param(&at(".role")))? {
        Some(r) => r,
        None => {
            return Err(ApiError::invalid(
                &at(".role"),
                format!("`{}` is required", at(".role")),
            ))
        }
    };
    let role = match role {
        "system" | "user" | "assistant" | "tool" => role,
        // OpenAI's newer name for the system role.
        "developer" => "system",
        other => {
            return Err(ApiError::invalid(
                &at(".role"),
                format!(
                    "`{}` must be one of system, developer, user, assistant, tool; got `{other}`",
                    at(".role")
                ),
            ))
        }
    };
    let content = match f.get("content") {
        None if role == "assistant" => String::new(),
        None => {
            return Err(ApiError::invalid(
                &at(".content"),
                format!("`{}` is required", at(".content")),
            ))
        }
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(parts)) => {
            let mut text = String::new();
            for (j, p) in parts.iter().enumerate() {
                let param = at(&format!(".content[{j}]"));
                let kind = p.get("type").and_then(Value::as_str);
                match (kind, p.get("text")) {
                    (Some("text"), Some(Value::String(t))) => text.push_str(t),
                    (Some("text"), _) => {
                        return Err(ApiError::invalid(
                            &param,
                            format!("`{param}.text` must be a string"),
                        ))
                    }
                    _ => {
                        return Err(ApiError::unsupported(
                            &param,
                            format!(
                                "Only text content parts ({{\"type\": \"text\", \"text\": ...}}) \
                                 are supported; `{param}` is not one"
                            ),
                        ))
                    }
                }
            }
            text
        }
        Some(v) => {
            return Err(ApiError::invalid(
                &at(".content"),
                format!(
                    "`{}` must be a string or an array of text parts, got {}",
                    at(".content"),
                    type_name(v)
                ),
            ))
        }
    };
    Ok(ChatMessage::new(role, content))
}

fn completion_prompt(f: &Fields<'_>) -> Result<PromptInput, ApiError> {
    let bad = |what: String| ApiError::invalid("prompt", what);
    let as_ids = |items: &[Value]| -> Result<Vec<u32>, ApiError> {
        items
            .iter()
            .map(|v| {
                v.as_u64()
                    .and_then(|x| u32::try_from(x).ok())
                    .ok_or_else(|| bad(format!("token ids in `prompt` must be integers, got {v}")))
            })
            .collect()
    };
    match f.get("prompt") {
        None => Err(bad(
            "`prompt` is required: a string, or an array of token ids".into(),
        )),
        Some(Value::String(s)) => Ok(PromptInput::Text(s.clone())),
        Some(Value::Array(items)) => match items.first() {
            None => Err(bad("`prompt` must not be an empty array".into())),
            Some(Value::Number(_)) => Ok(PromptInput::Tokens(as_ids(items)?)),
            Some(Value::String(_)) | Some(Value::Array(_)) if items.len() > 1 => {
                Err(ApiError::unsupported(
                    "prompt",
                    format!(
                        "Only one prompt per request is supported, got {}",
                        items.len()
                    ),
                ))
            }
            Some(Value::String(s)) => Ok(PromptInput::Text(s.clone())),
            Some(Value::Array(ids)) => Ok(PromptInput::Tokens(as_ids(ids)?)),
            Some(v) => Err(bad(format!(
                "`prompt` must be a string or an array of token ids, found {} inside",
                type_name(v)
            ))),
        },
        Some(v) => Err(bad(format!(
            "`prompt` must be a string or an array of token ids, got {}",
            type_name(v)
        ))),
    }
}

/// OpenAI fields with no implementation here: refused when set to anything but their off value.
fn refuse_unsupported(endpoint: Endpoint, f: &Fields<'_>) -> Result<(), ApiError> {
    for key in ["presence_penalty", "frequency_penalty"] {
        if let Some(x) = f.number(key)? {
            if x != 0.0 {
                return Err(ApiError::unsupported(
                    key,
                    format!(
                        "`{key}` is not supported (only 0); use the `repeat_penalty` \
                         extension for a repetition penalty"
                    ),
                ));
            }
        }
    }
    let set = |key: &str| match f.get(key) {
        None | Some(Value::Bool(false)) => false,
        Some(Value::Array(a)) => !a.is_empty(),
        Some(Value::Object(o)) => !o.is_empty(),
        Some(Value::Number(n)) => n.as_f64() != Some(0.0),
        Some(_) => true,
    };
    let mut keys = vec![
        "logprobs",
        "top_logprobs",
        "logit_bias",
        "tools",
        "functions",
    ];
    if endpoint == Endpoint::Completion {
        keys.extend(["echo", "suffix"]);
    }
    for key in keys {
        if set(key) {
            return Err(ApiError::unsupported(
                key,
                format!("`{key}` is not supported by this server"),
            ));
        }
    }
    if let Some(b) = f.uint("best_of")? {
        if b > 1 {
            return Err(ApiError::unsupported(
                "best_of",
                "Only `best_of` = 1 is supported",
            ));
        }
    }
    match f.get("response_format") {
        None => {}
        Some(v) if v.get("type").and_then(Value::as_str) == Some("text") => {}
        Some(_) => {
            return Err(ApiError::unsupported(
                "response_format",
                "Only `response_format` {\"type\": \"text\"} is supported",
            ))
        }
    }
    Ok(())
}

/// The sampling fields of a request. A field left out is not OpenAI's default (temperature 1,
/// top-p 1, which suit OpenAI's models) but the server's, as `lade generate` and llama.cpp's
/// server do: the model's recommended settings, else llama.cpp's (temperature 0.8, top-k 40,
/// top-p 0.95, min-p 0.05); see [`PartialSampling::resolve`].
fn sampling(f: &Fields<'_>) -> Result<PartialSampling, ApiError> {
    let mut p = PartialSampling::default();
    if let Some(t) = f.number("temperature")? {
        if !(0.0..=2.0).contains(&t) {
            return Err(ApiError::invalid(
                "temperature",
                format!("`temperature` must be between 0 and 2, got {t}"),
            ));
        }
        p.temperature = Some(t as f32);
    }
    if let Some(x) = f.number("top_p")? {
        if !(x > 0.0 && x <= 1.0) {
            return Err(ApiError::invalid(
                "top_p",
                format!("`top_p` must be in (0, 1], got {x}"),
            ));
        }
        p.top_p = Some(x as f32);
    }
    if let Some(k) = f.uint("top_k")? {
        p.top_k = Some(usize::try_from(k).unwrap_or(usize::MAX));
    }
    if let Some(x) = f.number("min_p")? {
        if !(0.0..=1.0).contains(&x) {
            return Err(ApiError::invalid(
                "min_p",
                format!("`min_p` must be in [0, 1], got {x}"),
            ));
        }
        p.min_p = Some(x as f32);
    }
    if let Some(x) = f.number("repeat_penalty")? {
        if x <= 0.0 {
            return Err(ApiError::invalid(
                "repeat_penalty",
                format!("`repeat_penalty` must be > 0, got {x}"),
            ));
        }
        p.repeat_penalty = Some(x as f32);
    }
    if let Some(n) = f.uint("repeat_last_n")? {
        p.repeat_last_n = Some(usize::try_from(n).unwrap_or(usize::MAX));
    }
    // f64 → f32 may still overflow or flush: the library's own check is the last word.
    p.over(SamplingParams::LLAMA_CPP)
        .validate()
        .map_err(|e| ApiError::bad_request(format!("invalid sampling settings: {e}")))?;
    Ok(p)
}

fn seed(f: &Fields<'_>) -> Result<Option<u64>, ApiError> {
    match f.get("seed") {
        None => Ok(None),
        Some(Value::Number(n)) => n
            .as_u64()
            .or_else(|| n.as_i64().map(|x| x as u64))
            .map(Some)
            .ok_or_else(|| {
                ApiError::invalid("seed", format!("`seed` must be an integer, got {n}"))
            }),
        Some(v) => Err(ApiError::invalid(
            "seed",
            format!("`seed` must be an integer, got {}", type_name(v)),
        )),
    }
}

fn stop(f: &Fields<'_>) -> Result<Vec<String>, ApiError> {
    let list = match f.get("stop") {
        None => return Ok(Vec::new()),
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| match v {
                Value::String(s) => Ok(s.clone()),
                other => Err(ApiError::invalid(
                    "stop",
                    format!(
                        "`stop` must be a string or an array of strings, found {} inside",
                        type_name(other)
                    ),
                )),
            })
            .collect::<Result<_, _>>()?,
        Some(v) => {
            return Err(ApiError::invalid(
                "stop",
                format!(
                    "`stop` must be a string or an array of strings, got {}",
                    type_name(v)
                ),
            ))
        }
    };
    if list.len() > MAX_STOP_STRINGS {
        return Err(ApiError::invalid(
            "stop",
            format!(
                "`stop` holds {} strings; at most {MAX_STOP_STRINGS} are allowed",
                list.len()
            ),
        ));
    }
    Ok(list)
}

fn lookahead(v: Option<&Value>) -> Result<Option<DecoderKind>, ApiError> {
    let bad = |m: String| ApiError::invalid("lookahead", m);
    let kind = match v {
        None => return Ok(None),
        Some(Value::Bool(false)) => return Ok(Some(DecoderKind::Plain)),
        Some(Value::Bool(true)) => DecoderKind::DEFAULT_LOOKAHEAD,
        Some(Value::Object(o)) => {
            if let Some(k) = o.keys().find(|k| !["w", "n", "g"].contains(&k.as_str())) {
                return Err(bad(format!(
                    "`lookahead` takes the fields w, n and g; `{k}` is not one"
                )));
            }
            let f = Fields { obj: o };
            let field = |k: &str, default: usize| -> Result<usize, ApiError> {
                Ok(f.uint(k)
                    .map_err(|e| e.param(&format!("lookahead.{k}")))?
                    .map_or(default, |x| usize::try_from(x).unwrap_or(usize::MAX)))
            };
            let d = LookaheadConfig::DEFAULT;
            DecoderKind::lookahead(
                field("w", d.window)?,
                field("n", d.ngram)?,
                field("g", d.guesses)?,
            )
            .map_err(|e| bad(format!("`lookahead`: {e}")))?
        }
        Some(v) => {
            return Err(bad(format!(
                "`lookahead` must be false, true or an object {{w, n, g}}, got {}",
                type_name(v)
            )))
        }
    };
    let step = DecoderSpec::new(kind).step_tokens();
    if let DecoderKind::Lookahead {
        window,
        ngram,
        guesses,
    } = kind
    {
        if step > MAX_LOOKAHEAD_STEP_TOKENS {
            return Err(bad(format!(
                "`lookahead` {{w: {window}, n: {ngram}, g: {guesses}}} feeds {step} tokens per \
                 step; this server allows at most {MAX_LOOKAHEAD_STEP_TOKENS} ((w + g) × (n - 1))"
            )));
        }
    }
    Ok(Some(kind))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chat(body: &str) -> Result<GenRequest, ApiError> {
        parse(Endpoint::Chat, body.as_bytes())
    }

    fn param_of(r: Result<GenRequest, ApiError>) -> Option<String> {
        let e = r.unwrap_err();
        assert_eq!(e.status, 400, "{e:?}");
        e.param
    }

    #[test]
    fn a_full_chat_request() {
        let r = chat(
            r#"{"model":"m","messages":[{"role":"developer","content":"be brief"},
                {"role":"user","content":[{"type":"text","text":"hi "},{"type":"text","text":"there"}]}],
                "max_tokens":5,"temperature":0,"top_p":0.9,"top_k":4,"min_p":0.1,"seed":-1,
                "stop":"\n","n":1,"stream":true,"stream_options":{"include_usage":true},
                "lookahead":{"w":4,"n":3,"g":2},"user":"ignored"}"#,
        )
        .unwrap();
        assert_eq!(
            r.prompt,
            PromptInput::Messages(vec![
                ChatMessage::system("be brief"),
                ChatMessage::user("hi there")
            ])
        );
        assert_eq!(r.max_tokens, Some(5));
        assert_eq!(
            r.sampling,
            PartialSampling {
                temperature: Some(0.0),
                top_k: Some(4),
                top_p: Some(0.9),
                min_p: Some(0.1),
                ..PartialSampling::default()
            }
        );
        assert_eq!(r.seed, Some(u64::MAX));
        assert!(r.stream && r.include_usage);
        assert_eq!(r.stop, vec!["\n"]);
        assert_eq!(r.lookahead, Some(DecoderKind::parse("4,3,2").unwrap()));
    }

    #[test]
    fn defaults() {
        let r = chat(r#"{"messages":[{"role":"user","content":"x"}]}"#).unwrap();
        // No sampling field given: the server's defaults apply (resolved per request).
        assert!(r.sampling.is_empty());
        assert_eq!(r.max_tokens, None);
        assert!(r.seed.is_none() && !r.stream);
        assert_eq!(r.lookahead, None);
        let r = chat(r#"{"messages":[{"role":"user","content":"x"}],"lookahead":false}"#).unwrap();
        assert_eq!(r.lookahead, Some(DecoderKind::Plain));
        let r = chat(r#"{"messages":[{"role":"user","content":"x"}],"lookahead":true}"#).unwrap();
        assert_eq!(r.lookahead, Some(DecoderKind::DEFAULT_LOOKAHEAD));
        // Fields left out are the default config's.
        let r =
            chat(r#"{"messages":[{"role":"user","content":"x"}],"lookahead":{"w":3}}"#).unwrap();
        let d = LookaheadConfig::DEFAULT;
        assert_eq!(
            r.lookahead,
            Some(DecoderKind::lookahead(3, d.ngram, d.guesses).unwrap())
        );
    }

    #[test]
    fn each_bad_field_is_named() {
        let m = r#""messages":[{"role":"user","content":"x"}]"#;
        for (extra, param) in [
            (r#""temperature":"hot""#, "temperature"),
            (r#""temperature":3"#, "temperature"),
            (r#""top_p":0"#, "top_p"),
            (r#""min_p":-1"#, "min_p"),
            (r#""top_k":-1"#, "top_k"),
            (r#""max_tokens":0"#, "max_tokens"),
            (r#""max_tokens":1.5"#, "max_tokens"),
            (r#""n":2"#, "n"),
            (r#""stop":[1]"#, "stop"),
            (r#""stream":"yes""#, "stream"),
            (
                r#""stream_options":{"include_usage":true}"#,
                "stream_options",
            ),
            (r#""lookahead":{"w":0,"n":3,"g":0}"#, "lookahead"),
            (r#""lookahead":{"w":512,"n":32,"g":512}"#, "lookahead"),
            (r#""lookahead":{"x":1}"#, "lookahead"),
            (r#""lookahead":"on""#, "lookahead"),
            (r#""logprobs":true"#, "logprobs"),
            (r#""presence_penalty":0.5"#, "presence_penalty"),
            (r#""seed":"1""#, "seed"),
        ] {
            let body = format!("{{{m},{extra}}}");
            assert_eq!(param_of(chat(&body)).as_deref(), Some(param), "{body}");
        }
        for (body, param) in [
            (r#"{"messages":[]}"#, Some("messages")),
            (r#"{"messages":"hi"}"#, Some("messages")),
            (r#"{}"#, Some("messages")),
            (
                r#"{"messages":[{"role":"king","content":"x"}]}"#,
                Some("messages[0].role"),
            ),
            (
                r#"{"messages":[{"role":"user"}]}"#,
                Some("messages[0].content"),
            ),
            (
                r#"{"messages":[{"role":"user","content":5}]}"#,
                Some("messages[0].content"),
            ),
            (r#"[1,2]"#, None),
            (r#"{"messages": [ "#, None),
        ] {
            assert_eq!(param_of(chat(body)).as_deref(), param, "{body}");
        }
    }

    #[test]
    fn completion_prompts() {
        let c = |b: &str| parse(Endpoint::Completion, b.as_bytes());
        assert_eq!(
            c(r#"{"prompt":"abc"}"#).unwrap().prompt,
            PromptInput::Text("abc".into())
        );
        assert_eq!(
            c(r#"{"prompt":["abc"]}"#).unwrap().prompt,
            PromptInput::Text("abc".into())
        );
        assert_eq!(
            c(r#"{"prompt":[1,2,3]}"#).unwrap().prompt,
            PromptInput::Tokens(vec![1, 2, 3])
        );
        assert_eq!(
            c(r#"{"prompt":[[4,5]]}"#).unwrap().prompt,
            PromptInput::Tokens(vec![4, 5])
        );
        for b in [
            r#"{}"#,
            r#"{"prompt":5}"#,
            r#"{"prompt":[]}"#,
            r#"{"prompt":["a","b"]}"#,
            r#"{"prompt":[-1]}"#,
            r#"{"prompt":"a","echo":true}"#,
        ] {
            assert_eq!(
                param_of(c(b)).as_deref(),
                Some(if b.contains("echo") { "echo" } else { "prompt" }),
                "{b}"
            );
        }
    }
}
