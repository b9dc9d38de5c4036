//! Building a tokenizer from GGUF metadata (`tokenizer.ggml.*`).
//!
//! Two vocabulary kinds are supported:
//!
//! * `gpt2`: byte-level BPE from `tokenizer.ggml.tokens` and
//!   `tokenizer.ggml.merges`. The pre-tokenizer follows `tokenizer.ggml.pre`
//!   as llama.cpp does, see [`PreTokenizerKind`].
//! * `llama`: SentencePiece BPE (Llama-2, CodeLlama, Mistral-7B). Merges are
//!   derived from the piece scores as the Hugging Face slow→fast converter
//!   does; unknown characters fall back to `<0xNN>` byte tokens.
//!
//! Token types (`tokenizer.ggml.token_type`, llama.cpp's numbering) decide
//! which pieces are added tokens matched verbatim in the input text:
//! unknown (2) and control (3) become special tokens (left out by
//! [`TextTokenizer::decode`](super::TextTokenizer::decode)), user-defined (4)
//! become plain added tokens. When the array is missing, the bos/eos/eot/
//! eom/unk/pad ids are treated as control tokens.
//!
//! `tokenizer.ggml.add_eos_token` is ignored: EOS is never appended.
//!
//! A token text that appears more than once in `tokenizer.ggml.tokens` maps
//! to its first id when encoding.

use std::collections::HashMap;

use candle_core::quantized::gguf_file::{Content, Value};
use tokenizers::decoders::byte_fallback::ByteFallback;
use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
use tokenizers::decoders::fuse::Fuse;
use tokenizers::decoders::sequence::Sequence as DecoderSequence;
use tokenizers::decoders::strip::Strip;
use tokenizers::decoders::DecoderWrapper;
use tokenizers::models::bpe::{Merges, Vocab, BPE};
use tokenizers::normalizers::{NormalizerWrapper, Prepend, Replace, NFC};
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::digits::Digits;
use tokenizers::pre_tokenizers::sequence::Sequence as PreSequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::pre_tokenizers::PreTokenizerWrapper;
use tokenizers::{AddedToken, SplitDelimiterBehavior, Tokenizer};

use super::{tok_err, Parts};
use crate::error::{LadeError, Result};

/// llama.cpp's token types (`llama_token_type`).
const TYPE_UNDEFINED: i64 = 0;
const TYPE_NORMAL: i64 = 1;
const TYPE_UNKNOWN: i64 = 2;
const TYPE_CONTROL: i64 = 3;
const TYPE_USER_DEFINED: i64 = 4;
const TYPE_BYTE: i64 = 6;

// GPT-2's split regex, `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+|
// ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+`, is built into `ByteLevel` (`use_regex`).
/// Llama-3's split regex: like Qwen2 but numbers in groups of up to three.
const REGEX_LLAMA3: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
/// Qwen2's split regex: every digit on its own.
const REGEX_QWEN2: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
/// DeepSeek-Coder's split regexes, applied one after the other.
const REGEX_DEEPSEEK_CODER: &[&str] = &[
    r"[\r\n]",
    r"\s?\p{L}+",
    r"\s?\p{P}+",
    r"[一-龥ࠀ-一가-퟿]+",
    r"\p{N}",
];

/// How a byte-level BPE vocabulary splits text before BPE, chosen from
/// `tokenizer.ggml.pre`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PreTokenizerKind {
    /// `llama-bpe`, `llama3`, `llama-v3`, `smaug-bpe`, `dbrx`, `falcon3`,
    /// `pixtral`, `lfm2`: Llama-3 regex (`\p{N}{1,3}`), whole words found
    /// in the vocabulary skip the merges (`ignore_merges`), BOS by default.
    Llama3,
    /// `qwen2`, `deepseek-r1-qwen`, `stablelm2`: NFC, then the Qwen2 regex
    /// (digits one by one).
    Qwen2,
    /// `smollm`, `starcoder`, `refact`, `command-r`, `codeshell`, `exaone`,
    /// `minerva`: every digit on its own, then the GPT-2 regex.
    DigitsThenGpt2,
    /// `deepseek-coder`: its sequence of regexes (transcribed from
    /// llama.cpp; not checked against a real model here).
    DeepseekCoder,
    /// `gpt-2`, `gpt2`, `default`, `mpt`, `olmo`, `jais`, `phi-2`, and any
    /// value not listed above (or a missing key): the GPT-2 regex, with no
    /// space added in front of the text. Unknown values may tokenize a
    /// little differently from the model's reference tokenizer.
    Gpt2,
}

impl PreTokenizerKind {
    pub fn from_pre(pre: &str) -> Self {
        match pre {
            "llama-bpe" | "llama3" | "llama-v3" | "smaug-bpe" | "dbrx" | "falcon3" | "pixtral"
            | "lfm2" => Self::Llama3,
            "qwen2" | "deepseek-r1-qwen" | "stablelm2" => Self::Qwen2,
            "smollm" | "starcoder" | "refact" | "command-r" | "codeshell" | "exaone"
            | "minerva-7b" => Self::DigitsThenGpt2,
            "deepseek-coder" => Self::DeepseekCoder,
            _ => Self::Gpt2,
        }
    }

    fn normalizer(self) -> Option<NormalizerWrapper> {
        match self {
            Self::Qwen2 => Some(NFC.into()),
            _ => None,
        }
    }

    fn pre_tokenizer(self) -> Result<PreTokenizerWrapper> {
        // ByteLevel(add_prefix_space, trim_offsets, use_regex)
        let byte_level_only = || ByteLevel::new(false, true, false).into();
        Ok(match self {
            Self::Gpt2 => ByteLevel::new(false, true, true).into(),
            Self::DigitsThenGpt2 => PreSequence::new(vec![
                Digits::new(true).into(),
                ByteLevel::new(false, true, true).into(),
            ])
            .into(),
            Self::Llama3 => PreSequence::new(vec![split(REGEX_LLAMA3)?, byte_level_only()]).into(),
            Self::Qwen2 => PreSequence::new(vec![split(REGEX_QWEN2)?, byte_level_only()]).into(),
            Self::DeepseekCoder => {
                let mut steps = REGEX_DEEPSEEK_CODER
                    .iter()
                    .map(|r| split(r))
                    .collect::<Result<Vec<_>>>()?;
                steps.push(byte_level_only());
                PreSequence::new(steps).into()
            }
        })
    }

    fn ignore_merges(self) -> bool {
        self == Self::Llama3
    }

    fn add_bos(self) -> bool {
        self == Self::Llama3
    }
}

fn split(regex: &str) -> Result<PreTokenizerWrapper> {
    Split::new(
        SplitPattern::Regex(regex.to_string()),
        SplitDelimiterBehavior::Isolated,
        false,
    )
    .map(Into::into)
    .map_err(tok_err)
}

// ---------------------------------------------------------------------------
// Metadata access

fn meta<'a>(ct: &'a Content, key: &str) -> Option<&'a Value> {
    ct.metadata.get(key)
}

fn bad_type(key: &str, want: &str, got: &Value) -> LadeError {
    LadeError::Tokenizer(format!(
        "GGUF key `{key}` should be {want}, found {:?}",
        got.value_type()
    ))
}

fn as_int(v: &Value) -> Option<i64> {
    Some(match v {
        Value::U8(x) => i64::from(*x),
        Value::I8(x) => i64::from(*x),
        Value::U16(x) => i64::from(*x),
        Value::I16(x) => i64::from(*x),
        Value::U32(x) => i64::from(*x),
        Value::I32(x) => i64::from(*x),
        Value::U64(x) => i64::try_from(*x).unwrap_or(i64::MAX),
        Value::I64(x) => *x,
        _ => return None,
    })
}

fn as_f32(v: &Value) -> Option<f32> {
    match v {
        Value::F32(x) => Some(*x),
        Value::F64(x) => Some(*x as f32),
        other => as_int(other).map(|x| x as f32),
    }
}

fn meta_str<'a>(ct: &'a Content, key: &str) -> Result<Option<&'a str>> {
    match meta(ct, key) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.as_str())),
        Some(v) => Err(bad_type(key, "a string", v)),
    }
}

fn meta_bool(ct: &Content, key: &str) -> Result<Option<bool>> {
    match meta(ct, key) {
        None => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(v) => as_int(v)
            .map(|x| Some(x != 0))
            .ok_or_else(|| bad_type(key, "a bool", v)),
    }
}

/// A token id; negative or out-of-vocabulary values (llama.cpp writes -1
/// for "none") read as `None`.
fn meta_id(ct: &Content, key: &str, n_vocab: usize) -> Result<Option<u32>> {
    match meta(ct, key) {
        None => Ok(None),
        Some(v) => {
            let x = as_int(v).ok_or_else(|| bad_type(key, "an integer", v))?;
            Ok(u32::try_from(x).ok().filter(|&id| (id as usize) < n_vocab))
        }
    }
}

fn meta_array<'a>(ct: &'a Content, key: &str) -> Result<Option<&'a [Value]>> {
    match meta(ct, key) {
        None => Ok(None),
        Some(Value::Array(a)) => Ok(Some(a.as_slice())),
        Some(v) => Err(bad_type(key, "an array", v)),
    }
}

fn meta_str_array<'a>(ct: &'a Content, key: &str) -> Result<Option<Vec<&'a str>>> {
    let Some(arr) = meta_array(ct, key)? else {
        return Ok(None);
    };
    arr.iter()
        .map(|v| match v {
            Value::String(s) => Ok(s.as_str()),
            other => Err(bad_type(key, "an array of strings", other)),
        })
        .collect::<Result<Vec<_>>>()
        .map(Some)
}

fn required<T>(v: Option<T>, key: &str) -> Result<T> {
    v.ok_or_else(|| LadeError::Tokenizer(format!("GGUF metadata has no `{key}`")))
}

/// Everything common to both vocabulary kinds.
struct Common<'a> {
    tokens: Vec<&'a str>,
    /// One type per token (normal when the array is missing or short).
    types: Vec<i64>,
    bos: Option<u32>,
    eos: Option<u32>,
    unk: Option<u32>,
    explicit_eog: Vec<u32>,
    chat_template: Option<String>,
}

fn read_common(ct: &Content) -> Result<Common<'_>> {
    let tokens = required(
        meta_str_array(ct, "tokenizer.ggml.tokens")?,
        "tokenizer.ggml.tokens",
    )?;
    if tokens.is_empty() || tokens.len() > u32::MAX as usize {
        return Err(LadeError::Tokenizer(format!(
            "GGUF vocabulary has {} tokens",
            tokens.len()
        )));
    }
    let n = tokens.len();
    let id = |key: &str| meta_id(ct, key, n);
    let bos = id("tokenizer.ggml.bos_token_id")?;
    let eos = id("tokenizer.ggml.eos_token_id")?;
    let unk = id("tokenizer.ggml.unknown_token_id")?;
    let pad = id("tokenizer.ggml.padding_token_id")?;
    let eot = id("tokenizer.ggml.eot_token_id")?;
    let eom = id("tokenizer.ggml.eom_token_id")?;

    let types = match meta_array(ct, "tokenizer.ggml.token_type")? {
        Some(arr) => {
            let mut types = arr
                .iter()
                .map(|v| as_int(v).ok_or_else(|| bad_type("tokenizer.ggml.token_type", "ints", v)))
                .collect::<Result<Vec<_>>>()?;
            types.resize(n, TYPE_NORMAL);
            types
        }
        None => {
            let mut types = vec![TYPE_NORMAL; n];
            for id in [bos, eos, unk, pad, eot, eom].into_iter().flatten() {
                types[id as usize] = TYPE_CONTROL;
            }
            types
        }
    };

    Ok(Common {
        tokens,
        types,
        bos,
        eos,
        unk,
        explicit_eog: [eos, eot, eom].into_iter().flatten().collect(),
        chat_template: meta_str(ct, "tokenizer.chat_template")?.map(str::to_string),
    })
}

/// Vocabulary map, first id winning for duplicated texts.
fn vocab_of(tokens: &[&str]) -> HashMap<String, u32> {
    let mut vocab = HashMap::with_capacity(tokens.len());
    for (id, tok) in tokens.iter().enumerate() {
        vocab.entry((*tok).to_string()).or_insert(id as u32);
    }
    vocab
}

/// Registers unknown/control tokens as special added tokens and
/// user-defined ones as plain added tokens (both matched verbatim).
fn add_typed_tokens(tokenizer: &mut Tokenizer, common: &Common<'_>) -> Result<()> {
    let mut specials = Vec::new();
    let mut user = Vec::new();
    for (tok, &ty) in common.tokens.iter().zip(&common.types) {
        if tok.is_empty() {
            continue;
        }
        match ty {
            TYPE_UNKNOWN | TYPE_CONTROL => {
                specials.push(AddedToken::from(*tok, true).normalized(false));
            }
            TYPE_USER_DEFINED => user.push(AddedToken::from(*tok, false).normalized(false)),
            _ => {}
        }
    }
    tokenizer.add_special_tokens(specials).map_err(tok_err)?;
    tokenizer.add_tokens(user).map_err(tok_err)?;
    Ok(())
}

pub(crate) fn build(ct: &Content) -> Result<Parts> {
    let model = required(
        meta_str(ct, "tokenizer.ggml.model")?,
        "tokenizer.ggml.model",
    )?;
    match model {
        "gpt2" => build_gpt2(ct),
        "llama" => build_llama(ct),
        other => Err(LadeError::Unsupported(format!(
            "GGUF tokenizer model `{other}` (supported: gpt2 byte-level BPE, llama SentencePiece BPE)"
        ))),
    }
}

fn build_gpt2(ct: &Content) -> Result<Parts> {
    let common = read_common(ct)?;
    let pre = meta_str(ct, "tokenizer.ggml.pre")?.unwrap_or("default");
    let kind = PreTokenizerKind::from_pre(pre);

    let merges = required(
        meta_str_array(ct, "tokenizer.ggml.merges")?,
        "tokenizer.ggml.merges",
    )?
    .into_iter()
    .map(|m| {
        m.split_once(' ')
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .ok_or_else(|| LadeError::Tokenizer(format!("invalid GGUF merge `{m}`")))
    })
    .collect::<Result<Merges>>()?;
    let vocab: Vocab = vocab_of(&common.tokens).into_iter().collect();
    let ignore_merges =
        meta_bool(ct, "tokenizer.ggml.ignore_merges")?.unwrap_or(kind.ignore_merges());
    let bpe = BPE::builder()
        .vocab_and_merges(vocab, merges)
        .ignore_merges(ignore_merges)
        .build()
        .map_err(tok_err)?;

    let mut tokenizer = Tokenizer::new(bpe);
    if let Some(n) = kind.normalizer() {
        tokenizer.with_normalizer(Some(n)).map_err(tok_err)?;
    }
    tokenizer.with_pre_tokenizer(Some(kind.pre_tokenizer()?));
    tokenizer.with_decoder(Some(ByteLevelDecoder::default()));
    add_typed_tokens(&mut tokenizer, &common)?;

    let add_bos = meta_bool(ct, "tokenizer.ggml.add_bos_token")?.unwrap_or(kind.add_bos());
    Ok(Parts {
        inner: tokenizer,
        bos_id: common.bos,
        eos_id: common.eos,
        add_bos,
        explicit_eog: common.explicit_eog,
        chat_template: common.chat_template,
        description: format!("gguf gpt2 byte-level BPE (pre={pre}, {kind:?})"),
    })
}

/// SentencePiece BPE merges from piece scores, as Hugging Face's
/// `SentencePieceExtractor` derives them: every split of a piece into two
/// pieces of the vocabulary is a merge, ranked by the merged piece's score
/// (higher first); ties keep vocabulary order, then (left id, right id).
/// Only normal (or untyped) pieces are merge results.
pub fn spm_merges(tokens: &[&str], scores: &[f32], types: &[i64]) -> Merges {
    let vocab = vocab_of(tokens);
    let mut ranked: Vec<(f32, u32, u32, u32)> = Vec::new();
    for (id, piece) in tokens.iter().enumerate() {
        let ty = types.get(id).copied().unwrap_or(TYPE_NORMAL);
        if ty != TYPE_NORMAL && ty != TYPE_UNDEFINED {
            continue;
        }
        // Only the first id of a duplicated text takes part.
        if vocab.get(*piece) != Some(&(id as u32)) {
            continue;
        }
        let score = scores.get(id).copied().unwrap_or(-(id as f32));
        for (pos, _) in piece.char_indices().skip(1) {
            let (left, right) = piece.split_at(pos);
            if let (Some(&l), Some(&r)) = (vocab.get(left), vocab.get(right)) {
                ranked.push((score, id as u32, l, r));
            }
        }
    }
    ranked.sort_by(|a, b| {
        b.0.total_cmp(&a.0)
            .then(a.1.cmp(&b.1))
            .then(a.2.cmp(&b.2))
            .then(a.3.cmp(&b.3))
    });
    ranked
        .into_iter()
        .map(|(_, _, l, r)| {
            (
                tokens[l as usize].to_string(),
                tokens[r as usize].to_string(),
            )
        })
        .collect()
}

fn build_llama(ct: &Content) -> Result<Parts> {
    let common = read_common(ct)?;
    let n = common.tokens.len();
    let scores: Vec<f32> = match meta_array(ct, "tokenizer.ggml.scores")? {
        Some(arr) => arr
            .iter()
            .map(|v| as_f32(v).ok_or_else(|| bad_type("tokenizer.ggml.scores", "floats", v)))
            .collect::<Result<_>>()?,
        // Without scores, earlier pieces rank higher.
        None => (0..n).map(|i| -(i as f32)).collect(),
    };
    let merges = spm_merges(&common.tokens, &scores, &common.types);
    let byte_fallback = common
        .tokens
        .iter()
        .zip(&common.types)
        .any(|(t, &ty)| ty == TYPE_BYTE || *t == "<0x00>");
    let unk = common
        .unk
        .map(|id| common.tokens[id as usize])
        .or_else(|| common.tokens.iter().copied().find(|t| *t == "<unk>"));

    let vocab: Vocab = vocab_of(&common.tokens).into_iter().collect();
    let mut builder = BPE::builder()
        .vocab_and_merges(vocab, merges)
        .byte_fallback(byte_fallback)
        .fuse_unk(true);
    if let Some(unk) = unk {
        builder = builder.unk_token(unk.to_string());
    }
    let bpe = builder.build().map_err(tok_err)?;

    let add_space_prefix = meta_bool(ct, "tokenizer.ggml.add_space_prefix")?.unwrap_or(true);
    let mut normalizers: Vec<NormalizerWrapper> = Vec::new();
    if add_space_prefix {
        normalizers.push(Prepend::new("▁".to_string()).into());
    }
    normalizers.push(Replace::new(" ", "▁").map_err(tok_err)?.into());
    let mut decoders: Vec<DecoderWrapper> = vec![
        Replace::new("▁", " ").map_err(tok_err)?.into(),
        ByteFallback::new().into(),
        Fuse::new().into(),
    ];
    if add_space_prefix {
        decoders.push(Strip::new(' ', 1, 0).into());
    }

    let mut tokenizer = Tokenizer::new(bpe);
    tokenizer
        .with_normalizer(Some(tokenizers::normalizers::Sequence::new(normalizers)))
        .map_err(tok_err)?;
    tokenizer.with_decoder(Some(DecoderSequence::new(decoders)));
    add_typed_tokens(&mut tokenizer, &common)?;

    let add_bos = meta_bool(ct, "tokenizer.ggml.add_bos_token")?.unwrap_or(true);
    Ok(Parts {
        inner: tokenizer,
        bos_id: common.bos,
        eos_id: common.eos,
        add_bos,
        explicit_eog: common.explicit_eog,
        chat_template: common.chat_template,
        description: format!(
            "gguf llama SentencePiece BPE (byte_fallback={byte_fallback}, add_space_prefix={add_space_prefix})"
        ),
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::tokenizer::TextTokenizer;
    use candle_core::quantized::gguf_file::VersionedMagic;

    pub(crate) fn empty_content() -> Content {
        Content {
            magic: VersionedMagic::GgufV3,
            metadata: HashMap::new(),
            tensor_infos: HashMap::new(),
            tensor_data_offset: 0,
        }
    }

    fn strings(v: &[&str]) -> Value {
        Value::Array(v.iter().map(|s| Value::String(s.to_string())).collect())
    }

    /// A tiny SentencePiece vocabulary:
    /// 0 `<unk>`, 1 `<s>`, 2 `</s>`, 3..=258 `<0x00>`..`<0xFF>`, then the
    /// pieces below from id 259 on (scores decreasing), and a user-defined
    /// `<|user|>`.
    fn spm_content(add_space_prefix: Option<bool>) -> Content {
        let mut tokens: Vec<String> = vec!["<unk>".into(), "<s>".into(), "</s>".into()];
        let mut types: Vec<i32> = vec![2, 3, 3];
        let mut scores: Vec<f32> = vec![0.0, 0.0, 0.0];
        for b in 0..=255u8 {
            tokens.push(format!("<0x{b:02X}>"));
            types.push(6);
            scores.push(0.0);
        }
        let pieces: &[(&str, f32, i32)] = &[
            ("▁", -1.0, 1),       // 259
            ("H", -2.0, 1),       // 260
            ("e", -3.0, 1),       // 261
            ("l", -4.0, 1),       // 262
            ("o", -5.0, 1),       // 263
            ("▁H", -6.0, 1),      // 264
            ("ll", -7.0, 1),      // 265
            ("llo", -7.5, 1),     // 266
            ("ell", -8.0, 1),     // 267
            ("ello", -8.5, 1),    // 268
            ("▁Hello", -9.0, 1),  // 269
            ("w", -10.0, 1),      // 270
            ("r", -11.0, 1),      // 271
            ("d", -12.0, 1),      // 272
            ("▁w", -13.0, 1),     // 273
            ("or", -14.0, 1),     // 274
            ("ld", -15.0, 1),     // 275
            ("<|user|>", 0.0, 4), // 276
        ];
        for (p, s, t) in pieces {
            tokens.push(p.to_string());
            scores.push(*s);
            types.push(*t);
        }
        let mut ct = empty_content();
        let md = &mut ct.metadata;
        md.insert("tokenizer.ggml.model".into(), Value::String("llama".into()));
        let refs: Vec<&str> = tokens.iter().map(String::as_str).collect();
        md.insert("tokenizer.ggml.tokens".into(), strings(&refs));
        md.insert(
            "tokenizer.ggml.scores".into(),
            Value::Array(scores.into_iter().map(Value::F32).collect()),
        );
        md.insert(
            "tokenizer.ggml.token_type".into(),
            Value::Array(types.into_iter().map(Value::I32).collect()),
        );
        md.insert("tokenizer.ggml.bos_token_id".into(), Value::U32(1));
        md.insert("tokenizer.ggml.eos_token_id".into(), Value::U32(2));
        md.insert("tokenizer.ggml.unknown_token_id".into(), Value::U32(0));
        md.insert("tokenizer.ggml.padding_token_id".into(), Value::I32(-1));
        if let Some(b) = add_space_prefix {
            md.insert("tokenizer.ggml.add_space_prefix".into(), Value::Bool(b));
        }
        ct
    }

    const UNK: u32 = 0;
    const BOS: u32 = 1;
    const EOS: u32 = 2;
    const fn byte(b: u8) -> u32 {
        3 + b as u32
    }
    const SPACE: u32 = 259;
    const H: u32 = 260;
    const SP_H: u32 = 264;
    const ELL: u32 = 267;
    const ELLO: u32 = 268;
    const SP_HELLO: u32 = 269;
    const SP_W: u32 = 273;
    const OR: u32 = 274;
    const LD: u32 = 275;
    const USER: u32 = 276;

    #[test]
    fn spm_merges_follow_scores() {
        let ct = spm_content(None);
        let common = read_common(&ct).unwrap();
        let scores: Vec<f32> = meta_array(&ct, "tokenizer.ggml.scores")
            .unwrap()
            .unwrap()
            .iter()
            .map(|v| as_f32(v).unwrap())
            .collect();
        let merges = spm_merges(&common.tokens, &scores, &common.types);
        let m: Vec<(&str, &str)> = merges
            .iter()
            .map(|(a, b)| (a.as_str(), b.as_str()))
            .collect();
        // Ranked by the merged piece's score; `ello` has two splits, ordered
        // by left id; byte and control pieces are never merge results.
        assert_eq!(
            m,
            [
                ("▁", "H"),
                ("l", "l"),
                ("ll", "o"),
                ("e", "ll"),
                ("e", "llo"),
                ("ell", "o"),
                ("▁H", "ello"),
                ("▁", "w"),
                ("o", "r"),
                ("l", "d"),
            ]
        );
    }

    #[test]
    fn spm_encode_decode() {
        let tok = TextTokenizer::from_gguf(&spm_content(None)).unwrap();
        assert!(tok.add_bos_default());
        assert_eq!(tok.bos_id(), Some(BOS));
        assert_eq!(tok.eos_id(), Some(EOS));
        assert_eq!(tok.eog_ids(), &[EOS]);
        assert_eq!(tok.vocab_size(), 277);
        assert!(tok.is_special(BOS) && tok.is_special(UNK) && !tok.is_special(USER));

        // "▁Hello": ▁+H, l+l, ll+o (beats e+ll), e+llo, ▁H+ello.
        let ids = tok.encode("Hello", false).unwrap();
        assert_eq!(ids, [SP_HELLO]);
        assert_eq!(tok.decode(&ids).unwrap(), "Hello");
        // "▁Hell": no `o`, so e+ll wins.
        assert_eq!(tok.encode("Hell", false).unwrap(), [SP_H, ELL]);
        // "▁llor": ll+o (-7.5) is taken before o+r (-14).
        assert_eq!(tok.encode("llor", false).unwrap(), [SPACE, 266, 271]);
        assert_eq!(tok.encode("Hellor", false).unwrap(), [SP_HELLO, 271]);

        // Spaces become `▁`; BOS on request.
        let ids = tok.encode("Hello world", true).unwrap();
        assert_eq!(ids, [BOS, SP_HELLO, SP_W, OR, LD]);
        assert_eq!(tok.decode(&ids).unwrap(), "Hello world");
        assert_eq!(tok.decode_with_specials(&ids).unwrap(), "<s> Hello world");

        // Special and user-defined tokens are matched in the text, and the
        // text after a special token gets the prefix space again.
        let ids = tok.encode("<s><|user|>Hello</s>", false).unwrap();
        assert_eq!(ids, [BOS, USER, SP_HELLO, EOS]);
        assert_eq!(tok.decode(&ids).unwrap(), "<|user|> Hello");

        // Characters missing from the vocabulary fall back to UTF-8 bytes.
        let ids = tok.encode("Hé", false).unwrap();
        assert_eq!(ids, [SP_H, byte(0xC3), byte(0xA9)]);
        assert_eq!(tok.decode(&ids).unwrap(), "Hé");
        let ids = tok.encode("w 日", false).unwrap();
        assert_eq!(ids, [SP_W, SPACE, byte(0xE6), byte(0x97), byte(0xA5)]);
        assert_eq!(tok.decode(&ids).unwrap(), "w 日");
        assert_eq!(tok.encode("\n", false).unwrap(), [SPACE, byte(0x0A)]);
        assert_eq!(tok.token_text(byte(0x0A)).as_deref(), Some("<0x0A>"));
        // A lone invalid byte decodes to U+FFFD instead of failing.
        assert_eq!(tok.decode(&[byte(0xFF)]).unwrap(), "\u{FFFD}");
    }

    #[test]
    fn spm_without_space_prefix() {
        let tok = TextTokenizer::from_gguf(&spm_content(Some(false))).unwrap();
        // "Hello▁world": H e l l o → H ello (no `Hello` piece), ▁w or ld.
        let ids = tok.encode("Hello world", false).unwrap();
        assert_eq!(ids, [H, ELLO, SP_W, OR, LD]);
        assert_eq!(tok.decode(&ids).unwrap(), "Hello world");
    }

    #[test]
    fn spm_stream_decoding_waits_for_whole_characters() {
        let tok = TextTokenizer::from_gguf(&spm_content(None)).unwrap();
        let ids = tok.encode("Hello 日本 world é", false).unwrap();
        let mut stream = tok.stream_decoder(true);
        let mut pieces = Vec::new();
        for &id in &ids {
            pieces.push(stream.push(id).unwrap());
        }
        pieces.push(stream.finish().unwrap());
        assert!(pieces.iter().all(|p| !p.contains('\u{FFFD}')), "{pieces:?}");
        // The three byte tokens of 日 give text only at the third.
        assert!(pieces.iter().any(|p| p.is_empty()));
        assert_eq!(pieces.concat(), tok.decode(&ids).unwrap());
        assert_eq!(pieces.concat(), "Hello 日本 world é");
    }

    fn gpt2_content(pre: Option<&str>) -> Content {
        // Byte-level pieces for "a", "b", "1", "2", " " (Ġ), plus merges.
        let tokens = [
            "<|endoftext|>",
            "a",
            "b",
            "1",
            "2",
            "Ġ",
            "ab",
            "Ġab",
            "12",
            "Ġ1",
        ];
        let mut ct = empty_content();
        let md = &mut ct.metadata;
        md.insert("tokenizer.ggml.model".into(), Value::String("gpt2".into()));
        if let Some(pre) = pre {
            md.insert("tokenizer.ggml.pre".into(), Value::String(pre.into()));
        }
        md.insert("tokenizer.ggml.tokens".into(), strings(&tokens));
        md.insert(
            "tokenizer.ggml.merges".into(),
            strings(&["a b", "Ġ ab", "1 2", "Ġ 1"]),
        );
        md.insert("tokenizer.ggml.eos_token_id".into(), Value::U32(0));
        md.insert("tokenizer.ggml.bos_token_id".into(), Value::U32(0));
        ct
    }

    #[test]
    fn gpt2_pre_tokenizer_choice() {
        // The GPT-2 regex and Llama-3 keep "12" together; the smollm family
        // and Qwen2 split digits. No family adds a space in front.
        let split_digits = [1, 5, 2, 7, 5, 3, 4];
        let grouped = [1, 5, 2, 7, 5, 8];
        let cases: [(Option<&str>, &[u32]); 8] = [
            (None, &grouped),
            (Some("gpt-2"), &grouped),
            (Some("some-future-pre"), &grouped),
            (Some("llama-bpe"), &grouped),
            (Some("smollm"), &split_digits),
            (Some("starcoder"), &split_digits),
            (Some("refact"), &split_digits),
            (Some("qwen2"), &split_digits),
        ];
        for (pre, want) in cases {
            let tok = TextTokenizer::from_gguf(&gpt2_content(pre)).unwrap();
            let ids = tok.encode("a b ab 12", false).unwrap();
            assert_eq!(ids, want, "pre={pre:?}");
            assert_eq!(tok.decode(&ids).unwrap(), "a b ab 12", "pre={pre:?}");
        }
        let add_bos = |pre: &str| {
            TextTokenizer::from_gguf(&gpt2_content(Some(pre)))
                .unwrap()
                .add_bos_default()
        };
        assert!(add_bos("llama-bpe"));
        assert!(!add_bos("smollm"));
        assert_eq!(
            PreTokenizerKind::from_pre("deepseek-coder"),
            PreTokenizerKind::DeepseekCoder
        );
        assert!(TextTokenizer::from_gguf(&gpt2_content(Some("deepseek-coder"))).is_ok());
    }

    #[test]
    fn gguf_errors_are_reported() {
        let mut ct = gpt2_content(None);
        ct.metadata.remove("tokenizer.ggml.merges");
        let err = TextTokenizer::from_gguf(&ct).unwrap_err();
        assert!(err.to_string().contains("tokenizer.ggml.merges"), "{err}");

        let mut ct = gpt2_content(None);
        ct.metadata
            .insert("tokenizer.ggml.merges".into(), strings(&["nospace"]));
        assert!(TextTokenizer::from_gguf(&ct).is_err());

        let mut ct = gpt2_content(None);
        ct.metadata
            .insert("tokenizer.ggml.tokens".into(), Value::U32(3));
        let err = TextTokenizer::from_gguf(&ct).unwrap_err();
        assert!(err.to_string().contains("array"), "{err}");
    }
}
