//! Loading a tokenizer from a Hugging Face model directory.
//!
//! * `tokenizer.json` (required): the whole `tokenizers` pipeline.
//! * `tokenizer_config.json` (optional): `bos_token`, `eos_token` (a string
//!   or an added-token object with `content`), `add_bos_token`,
//!   `chat_template` (a string, or a list of `{name, template}` where
//!   `default` wins).
//! * `chat_template.jinja` (optional, newer `transformers`): the chat
//!   template, preferred over the config's.
//! * `generation_config.json` (optional): `eos_token_id` (an int or a
//!   list; all are end-of-generation ids) and `bos_token_id`.
//!
//! When `add_bos_token` is not configured, it is read off the
//! post-processor: BOS is expected if encoding with special tokens puts it
//! first (e.g. Llama-3's `TemplateProcessing`).

use std::path::Path;

use serde_json::Value as Json;

use super::{tok_err, Parts};
use crate::error::{LadeError, Result};

fn read_json(path: &Path) -> Result<Option<Json>> {
    match std::fs::read_to_string(path) {
        Ok(text) => serde_json::from_str(&text)
            .map(Some)
            .map_err(|e| LadeError::Tokenizer(format!("cannot parse {}: {e}", path.display()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(LadeError::Tokenizer(format!(
            "cannot read {}: {e}",
            path.display()
        ))),
    }
}

/// `"<s>"` or `{"content": "<s>", ...}`.
fn token_content(v: &Json) -> Option<&str> {
    match v {
        Json::String(s) => Some(s),
        Json::Object(o) => o.get("content").and_then(Json::as_str),
        _ => None,
    }
}

fn json_ids(v: Option<&Json>) -> Vec<u32> {
    let to_id = |x: &Json| x.as_u64().and_then(|x| u32::try_from(x).ok());
    match v {
        Some(Json::Array(a)) => a.iter().filter_map(to_id).collect(),
        Some(x) => to_id(x).into_iter().collect(),
        None => Vec::new(),
    }
}

fn config_template(config: &Json) -> Option<String> {
    match config.get("chat_template")? {
        Json::String(s) => Some(s.clone()),
        Json::Array(list) => {
            let named = |name: &str| {
                list.iter().find_map(|t| {
                    (t.get("name")?.as_str()? == name)
                        .then(|| t.get("template")?.as_str())
                        .flatten()
                })
            };
            named("default")
                .or_else(|| list.first()?.get("template")?.as_str())
                .map(str::to_string)
        }
        _ => None,
    }
}

pub(crate) fn build(dir: &Path) -> Result<Parts> {
    let tokenizer_path = dir.join("tokenizer.json");
    if !tokenizer_path.is_file() {
        return Err(LadeError::ModelNotFound(tokenizer_path));
    }
    let inner = tokenizers::Tokenizer::from_file(&tokenizer_path)
        .map_err(|e| LadeError::Tokenizer(format!("{}: {e}", tokenizer_path.display())))?;

    let config = read_json(&dir.join("tokenizer_config.json"))?.unwrap_or(Json::Null);
    let generation = read_json(&dir.join("generation_config.json"))?.unwrap_or(Json::Null);

    let config_id = |key: &str| {
        config
            .get(key)
            .and_then(token_content)
            .and_then(|t| inner.token_to_id(t))
    };
    let gen_eos = json_ids(generation.get("eos_token_id"));
    let bos_id = config_id("bos_token")
        .or_else(|| json_ids(generation.get("bos_token_id")).first().copied());
    let eos_id = config_id("eos_token").or_else(|| gen_eos.first().copied());

    let add_bos = match config.get("add_bos_token").and_then(Json::as_bool) {
        Some(b) => b,
        None => match bos_id {
            Some(bos) => {
                let with = inner.encode_fast("a", true).map_err(tok_err)?;
                let without = inner.encode_fast("a", false).map_err(tok_err)?;
                with.get_ids().first() == Some(&bos) && without.get_ids().first() != Some(&bos)
            }
            None => false,
        },
    };

    let chat_template = match std::fs::read_to_string(dir.join("chat_template.jinja")) {
        Ok(t) => Some(t),
        Err(_) => config_template(&config),
    };

    let mut explicit_eog = gen_eos;
    explicit_eog.extend(eos_id);

    Ok(Parts {
        inner,
        bos_id,
        eos_id,
        add_bos,
        explicit_eog,
        chat_template,
        description: format!("tokenizer.json ({})", dir.display()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tokenizer::tests::smollm;
    use crate::tokenizer::TextTokenizer;
    use tokenizers::processors::template::TemplateProcessing;

    fn temp_dir(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("lade-hf-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn hf_dir_round_trip() {
        // Save the GGUF-built SmolLM2 tokenizer as tokenizer.json and load it
        // back with a config that names its special tokens.
        let dir = temp_dir("smollm");
        smollm()
            .inner()
            .save(dir.join("tokenizer.json"), false)
            .unwrap();
        std::fs::write(
            dir.join("tokenizer_config.json"),
            r#"{"bos_token": "<|im_start|>",
                "eos_token": {"content": "<|im_end|>", "special": true},
                "add_bos_token": false,
                "chat_template": [{"name": "tool_use", "template": "T"},
                                  {"name": "default", "template": "D"}]}"#,
        )
        .unwrap();
        std::fs::write(
            dir.join("generation_config.json"),
            r#"{"bos_token_id": 1, "eos_token_id": [2, 0]}"#,
        )
        .unwrap();
        let tok = TextTokenizer::from_hf_dir(&dir).unwrap();
        assert_eq!(tok.encode("Hello world!", false).unwrap(), [19556, 905, 17]);
        assert_eq!(
            tok.encode("<|im_start|>user\nHi<|im_end|>", false).unwrap(),
            [1, 4093, 198, 26843, 2]
        );
        assert_eq!(tok.bos_id(), Some(1));
        assert_eq!(tok.eos_id(), Some(2));
        assert!(!tok.add_bos_default());
        assert_eq!(tok.eog_ids(), &[0, 2]);
        assert_eq!(tok.chat_template(), Some("D"));
        assert_eq!(tok.vocab_size(), 49152);
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn hf_add_bos_from_post_processor() {
        let dir = temp_dir("bos");
        let mut inner = smollm().inner().clone();
        let pp = TemplateProcessing::builder()
            .try_single("<|im_start|> $0")
            .unwrap()
            .special_tokens(vec![("<|im_start|>", 1)])
            .build()
            .unwrap();
        inner.with_post_processor(Some(pp));
        inner.save(dir.join("tokenizer.json"), false).unwrap();
        std::fs::write(
            dir.join("tokenizer_config.json"),
            r#"{"bos_token": "<|im_start|>", "chat_template": "{{ bos_token }}"}"#,
        )
        .unwrap();
        std::fs::write(dir.join("chat_template.jinja"), "J").unwrap();
        let tok = TextTokenizer::from_hf_dir(&dir).unwrap();
        assert!(tok.add_bos_default());
        // The post-processor never inserts BOS on its own.
        assert_eq!(tok.encode("Hello world!", false).unwrap(), [19556, 905, 17]);
        assert_eq!(
            tok.encode("Hello world!", true).unwrap(),
            [1, 19556, 905, 17]
        );
        assert_eq!(tok.chat_template(), Some("J"));
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn hf_missing_or_broken() {
        let dir = temp_dir("missing");
        let err = TextTokenizer::from_hf_dir(&dir).unwrap_err();
        assert!(matches!(err, LadeError::ModelNotFound(_)), "{err}");
        std::fs::write(dir.join("tokenizer.json"), "{ not json").unwrap();
        let err = TextTokenizer::from_hf_dir(&dir).unwrap_err();
        assert!(matches!(err, LadeError::Tokenizer(_)), "{err}");
        std::fs::remove_dir_all(&dir).ok();
    }
}
