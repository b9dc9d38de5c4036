//! The draft-corpus file: token texts of one tokenizer, written by `lade draft-corpus` and
//! indexed into a [`DraftCorpus`] at load.
//!
//! Layout (little-endian):
//!
//! ```text
//! "LADECORP"        8 bytes, magic
//! version           u32 (1)
//! fingerprint       u64, of the tokenizer the ids belong to (TextTokenizer::fingerprint)
//! vocab size        u32
//! texts             u32
//! per text:         u32 length, then `length` u32 token ids
//! ```

use std::path::{Path, PathBuf};

use super::corpus::DraftCorpus;
use crate::tokenizer::TextTokenizer;
use crate::{LadeError, Result};

const MAGIC: &[u8; 8] = b"LADECORP";
const VERSION: u32 = 1;

/// Where the draft corpus of the model at `model` lives: beside a model file, the same name
/// with the extension `corpus` (`M.Q4_1.gguf` → `M.Q4_1.corpus`); in a checkpoint directory,
/// `draft.corpus`. `lade generate`, `bench` and `serve` draft from the corpus found there
/// unless told otherwise, and `lade draft-corpus` writes there unless given `--out`. The
/// built-in default model's corpus is installed there when the model is fetched or verified.
pub fn corpus_beside(model: &Path) -> PathBuf {
    if model.is_dir() {
        model.join("draft.corpus")
    } else {
        model.with_extension("corpus")
    }
}

/// The texts of a draft corpus and the tokenizer they were written with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CorpusFile {
    pub fingerprint: u64,
    pub vocab_size: u32,
    pub texts: Vec<Vec<u32>>,
}

impl CorpusFile {
    /// An empty corpus for `tokenizer`.
    pub fn for_tokenizer(tokenizer: &TextTokenizer) -> Self {
        Self {
            fingerprint: tokenizer.fingerprint(),
            vocab_size: tokenizer.vocab_size() as u32,
            texts: Vec::new(),
        }
    }

    /// Reads and checks the file at `path`.
    pub fn read(path: &Path) -> Result<Self> {
        let bytes = std::fs::read(path).map_err(|e| bad(&path.display().to_string(), e))?;
        Self::parse(&bytes, &path.display().to_string())
    }

    /// Parses file contents; `origin` names them in errors.
    pub fn parse(bytes: &[u8], origin: &str) -> Result<Self> {
        let mut r = Reader { bytes, at: 0 };
        if r.take(8).ok() != Some(&MAGIC[..]) {
            return Err(bad(origin, "not a lade draft corpus (bad magic)"));
        }
        let version = r.u32().map_err(|e| bad(origin, e))?;
        if version != VERSION {
            return Err(bad(
                origin,
                format!("version {version}, this lade reads version {VERSION}"),
            ));
        }
        let fingerprint = r.u64().map_err(|e| bad(origin, e))?;
        let vocab_size = r.u32().map_err(|e| bad(origin, e))?;
        let n = r.u32().map_err(|e| bad(origin, e))? as usize;
        let mut texts = Vec::with_capacity(n.min(1 << 16));
        for i in 0..n {
            let len = r.u32().map_err(|e| bad(origin, format!("text {i}: {e}")))? as usize;
            let raw = r
                .take(len.saturating_mul(4))
                .map_err(|e| bad(origin, format!("text {i}: {e}")))?;
            let text: Vec<u32> = raw
                .chunks_exact(4)
                .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect();
            if let Some(t) = text.iter().find(|&&t| t >= vocab_size) {
                return Err(bad(
                    origin,
                    format!("text {i} holds token id {t}, outside its vocabulary of {vocab_size}"),
                ));
            }
            texts.push(text);
        }
        if r.at != bytes.len() {
            return Err(bad(
                origin,
                format!("{} bytes after the last text", bytes.len() - r.at),
            ));
        }
        Ok(Self {
            fingerprint,
            vocab_size,
            texts,
        })
    }

    /// The file's bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        let tokens: usize = self.texts.iter().map(Vec::len).sum();
        let mut out = Vec::with_capacity(28 + 4 * (self.texts.len() + tokens));
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&VERSION.to_le_bytes());
        out.extend_from_slice(&self.fingerprint.to_le_bytes());
        out.extend_from_slice(&self.vocab_size.to_le_bytes());
        out.extend_from_slice(&(self.texts.len() as u32).to_le_bytes());
        for t in &self.texts {
            out.extend_from_slice(&(t.len() as u32).to_le_bytes());
            for id in t {
                out.extend_from_slice(&id.to_le_bytes());
            }
        }
        out
    }

    /// Writes the file (through a temporary beside it, so a reader never sees half of it).
    pub fn write(&self, path: &Path) -> Result<()> {
        let tmp = path.with_extension("partial");
        std::fs::write(&tmp, self.to_bytes())?;
        std::fs::rename(&tmp, path)?;
        Ok(())
    }

    /// Fails unless the ids were written with `tokenizer`.
    pub fn check_tokenizer(&self, tokenizer: &TextTokenizer, origin: &str) -> Result<()> {
        let (fp, vocab) = (tokenizer.fingerprint(), tokenizer.vocab_size() as u32);
        if self.fingerprint != fp || self.vocab_size != vocab {
            return Err(bad(
                origin,
                format!(
                    "written for another tokenizer (fingerprint {:016x}, {} ids; this model's \
                     is {fp:016x}, {vocab} ids): build one for this model with `lade draft-corpus`",
                    self.fingerprint, self.vocab_size
                ),
            ));
        }
        Ok(())
    }

    /// The drafting index of these texts.
    pub fn index(&self) -> DraftCorpus {
        DraftCorpus::from_texts(self.texts.iter().map(Vec::as_slice))
    }
}

fn bad(origin: &str, reason: impl std::fmt::Display) -> LadeError {
    LadeError::BadDraftCorpus {
        origin: origin.to_string(),
        reason: reason.to_string(),
    }
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> std::result::Result<&'a [u8], String> {
        let end = self.at.checked_add(n).filter(|&e| e <= self.bytes.len());
        let Some(end) = end else {
            return Err(format!(
                "truncated: {n} bytes needed at offset {}, {} left",
                self.at,
                self.bytes.len() - self.at
            ));
        };
        let s = &self.bytes[self.at..end];
        self.at = end;
        Ok(s)
    }

    fn u32(&mut self) -> std::result::Result<u32, String> {
        self.take(4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn u64(&mut self) -> std::result::Result<u64, String> {
        let lo = self.u32()? as u64;
        let hi = self.u32()? as u64;
        Ok(lo | (hi << 32))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> CorpusFile {
        CorpusFile {
            fingerprint: 0x0123_4567_89ab_cdef,
            vocab_size: 100,
            texts: vec![vec![1, 2, 3], vec![], vec![99, 0]],
        }
    }

    #[test]
    fn round_trips_and_names_what_is_wrong() {
        let f = sample();
        let bytes = f.to_bytes();
        assert_eq!(bytes.len(), 8 + 4 + 8 + 4 + 4 + (4 + 12) + 4 + (4 + 8));
        assert_eq!(CorpusFile::parse(&bytes, "x").unwrap(), f);
        let err = |b: &[u8]| CorpusFile::parse(b, "c.corpus").unwrap_err().to_string();
        assert!(err(b"GGUF....").contains("bad magic"), "{}", err(b"GGUF"));
        assert!(err(&bytes[..bytes.len() - 3]).contains("text 2: truncated"));
        assert!(err(&[&bytes[..], &[0]].concat()).contains("1 bytes after"));
        let mut v2 = bytes.clone();
        v2[8] = 2;
        assert!(err(&v2).contains("version 2"));
        let mut big = f.clone();
        big.texts[0][1] = 100;
        let e = err(&big.to_bytes());
        assert!(e.contains("c.corpus") && e.contains("token id 100"), "{e}");
        let dir = std::env::temp_dir().join(format!("lade-corpus-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("a.corpus");
        f.write(&p).unwrap();
        assert_eq!(CorpusFile::read(&p).unwrap(), f);
        let e = CorpusFile::read(&dir.join("none")).unwrap_err();
        assert!(e.to_string().contains("none"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_corpus_of_a_model_lives_beside_it() {
        assert_eq!(
            corpus_beside(Path::new("/m/SmolLM2-135M-Instruct.Q4_1.gguf")),
            Path::new("/m/SmolLM2-135M-Instruct.Q4_1.corpus")
        );
        assert_eq!(
            corpus_beside(Path::new("/m/model")),
            Path::new("/m/model.corpus")
        );
        let dir = std::env::temp_dir();
        assert_eq!(corpus_beside(&dir), dir.join("draft.corpus"));
    }
}
