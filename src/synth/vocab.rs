//! The tokenizer metadata of a random-weight file: a small byte-level BPE of its own, or the
//! tokenizer of another GGUF file, padded with unused tokens to the shape's vocabulary size.

use std::path::Path;

use candle_core::quantized::gguf_file::Value;

use crate::{LadeError, Result};

/// llama.cpp's token types.
const TYPE_NORMAL: i32 = 1;
const TYPE_CONTROL: i32 = 3;
const TYPE_UNUSED: i32 = 5;

/// Merges of the built-in tokenizer (each result is a token after the 256 byte tokens).
const MERGES: &[(&str, &str)] = &[
    ("Ġ", "t"),
    ("h", "e"),
    ("i", "n"),
    ("Ġ", "a"),
    ("e", "r"),
    ("o", "n"),
    ("r", "e"),
    ("Ġt", "he"),
];

/// Special tokens of the built-in tokenizer, after the merged tokens.
const SPECIALS: &[&str] = &["<|endoftext|>", "<|im_start|>", "<|im_end|>"];

/// ChatML, as Qwen2 and SmolLM2 use it.
const CHAT_TEMPLATE: &str = "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";

/// Tokens the built-in tokenizer needs before padding (256 bytes, merges, specials).
pub const BUILTIN_TOKENS: usize = 256 + MERGES.len() + SPECIALS.len();

/// GPT-2's byte-to-unicode map: printable bytes stand for themselves, the others for the
/// code points from 256 on, in byte order.
pub fn byte_symbol(b: u8) -> char {
    let printable = matches!(b, b'!'..=b'~' | 0xa1..=0xac | 0xae..=0xff);
    if printable {
        return char::from(b);
    }
    let rank = (0..b)
        .filter(|&x| !matches!(x, b'!'..=b'~' | 0xa1..=0xac | 0xae..=0xff))
        .count() as u32;
    char::from_u32(256 + rank).unwrap_or('?')
}

fn padding_token(id: usize) -> String {
    format!("<|unused_{id}|>")
}

fn strings(items: impl IntoIterator<Item = String>) -> Value {
    Value::Array(items.into_iter().map(Value::String).collect())
}

/// `tokenizer.ggml.*` metadata of the built-in byte-level BPE with `vocab` tokens: the 256
/// byte symbols, a few merges, `<|endoftext|>` (BOS), `<|im_start|>`, `<|im_end|>` (EOS), a
/// ChatML template, and `<|unused_N|>` tokens (type unused) up to `vocab`.
pub fn builtin(vocab: usize) -> Result<Vec<(String, Value)>> {
    if vocab < BUILTIN_TOKENS {
        return Err(LadeError::InvalidArgument(format!(
            "a vocabulary of {vocab} cannot hold the {BUILTIN_TOKENS} tokens of the built-in tokenizer"
        )));
    }
    let mut tokens: Vec<String> = (0..=255u8).map(|b| byte_symbol(b).to_string()).collect();
    let mut types = vec![TYPE_NORMAL; 256];
    for (a, b) in MERGES {
        tokens.push(format!("{a}{b}"));
        types.push(TYPE_NORMAL);
    }
    let first_special = tokens.len();
    for s in SPECIALS {
        tokens.push((*s).to_string());
        types.push(TYPE_CONTROL);
    }
    while tokens.len() < vocab {
        tokens.push(padding_token(tokens.len()));
        types.push(TYPE_UNUSED);
    }
    let id = |s: &str| first_special + SPECIALS.iter().position(|x| *x == s).unwrap_or(0);
    let k = |s: &str| format!("tokenizer.ggml.{s}");
    Ok(vec![
        (k("model"), Value::String("gpt2".into())),
        (k("pre"), Value::String("qwen2".into())),
        (k("tokens"), strings(tokens)),
        (
            k("token_type"),
            Value::Array(types.into_iter().map(Value::I32).collect()),
        ),
        (
            k("merges"),
            strings(MERGES.iter().map(|(a, b)| format!("{a} {b}"))),
        ),
        (k("bos_token_id"), Value::U32(id("<|endoftext|>") as u32)),
        (k("eos_token_id"), Value::U32(id("<|im_end|>") as u32)),
        (
            k("padding_token_id"),
            Value::U32(id("<|endoftext|>") as u32),
        ),
        (k("add_bos_token"), Value::Bool(false)),
        (
            "tokenizer.chat_template".into(),
            Value::String(CHAT_TEMPLATE.into()),
        ),
    ])
}

/// The `tokenizer.*` metadata of the GGUF file at `path`, its token list (and the per-token
/// scores and types) padded with `<|unused_N|>` tokens to `vocab`.
pub fn copied_from(path: &Path, vocab: usize) -> Result<Vec<(String, Value)>> {
    let (content, _) = crate::loader::gguf::read_header(path)?;
    let mut out: Vec<(String, Value)> = content
        .metadata
        .into_iter()
        .filter(|(k, _)| k.starts_with("tokenizer."))
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    let n = out
        .iter()
        .find_map(|(k, v)| match (k.as_str(), v) {
            ("tokenizer.ggml.tokens", Value::Array(a)) => Some(a.len()),
            _ => None,
        })
        .ok_or_else(|| LadeError::BadModelFile {
            path: path.to_path_buf(),
            reason: "has no tokenizer.ggml.tokens to copy".into(),
        })?;
    if n > vocab {
        return Err(LadeError::InvalidArgument(format!(
            "the tokenizer of {} has {n} tokens, more than the vocabulary of {vocab} \
             (give a vocabulary of at least {n})",
            path.display()
        )));
    }
    for (key, value) in &mut out {
        let Value::Array(items) = value else { continue };
        if items.len() != n {
            continue;
        }
        match key.as_str() {
            "tokenizer.ggml.tokens" => {
                items.extend((n..vocab).map(|i| Value::String(padding_token(i))))
            }
            "tokenizer.ggml.scores" => items.resize(vocab, Value::F32(0.0)),
            "tokenizer.ggml.token_type" => {
                let pad = match items.first() {
                    Some(Value::U32(_)) => Value::U32(TYPE_UNUSED as u32),
                    _ => Value::I32(TYPE_UNUSED),
                };
                items.resize(vocab, pad);
            }
            _ => {}
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_symbols_are_gpt2s() {
        assert_eq!(byte_symbol(b'a'), 'a');
        assert_eq!(byte_symbol(b' '), 'Ġ');
        assert_eq!(byte_symbol(b'\n'), 'Ċ');
        assert_eq!(byte_symbol(0), 'Ā');
        assert_eq!(byte_symbol(0xad), 'Ń');
        let all: std::collections::HashSet<char> = (0..=255u8).map(byte_symbol).collect();
        assert_eq!(all.len(), 256);
    }

    #[test]
    fn builtin_fills_the_vocabulary() {
        let meta = builtin(300).unwrap();
        let tokens = meta
            .iter()
            .find(|(k, _)| k == "tokenizer.ggml.tokens")
            .unwrap();
        let Value::Array(t) = &tokens.1 else { panic!() };
        assert_eq!(t.len(), 300);
        assert!(builtin(BUILTIN_TOKENS - 1).is_err());
    }
}
