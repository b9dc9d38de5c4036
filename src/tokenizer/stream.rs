//! Incremental detokenization for streaming generated text.
//!
//! Decoding token by token goes wrong in two ways: a character can span
//! several tokens (byte-level BPE pieces or `<0xNN>` byte-fallback tokens),
//! and decoders look at neighbours (SentencePiece strips the leading space
//! of the first piece only). [`StreamDecoder`] therefore decodes a small
//! sliding window of ids: the last emitted chunk (as context) plus the ids
//! not emitted yet. The new text is the window's decoding minus the
//! context's, emitted only once it does not end in U+FFFD, i.e. once the
//! last character is complete.
//!
//! The concatenation of everything [`StreamDecoder::push`] and
//! [`StreamDecoder::finish`] return equals decoding all ids at once.

use std::ops::Deref;

use super::TextTokenizer;
use crate::error::Result;

/// After this many pending ids whose text still ends in U+FFFD, the text is
/// emitted anyway (the bytes are then invalid UTF-8 for good: no character
/// is longer than 4 bytes).
const MAX_PENDING: usize = 8;

/// Turns a stream of token ids into a stream of text chunks that never
/// split a UTF-8 character.
///
/// Works with `&TextTokenizer`, `Arc<TextTokenizer>`, `Box<TextTokenizer>`.
#[derive(Debug, Clone)]
pub struct StreamDecoder<T: Deref<Target = TextTokenizer>> {
    tokenizer: T,
    skip_special: bool,
    ids: Vec<u32>,
    /// Start of the context window (ids already emitted, kept for context).
    prefix_offset: usize,
    /// First id not emitted yet.
    read_offset: usize,
}

impl<T: Deref<Target = TextTokenizer>> StreamDecoder<T> {
    /// A decoder for a fresh generation. With `skip_special`, special
    /// tokens give no text (as with [`TextTokenizer::decode`]).
    pub fn new(tokenizer: T, skip_special: bool) -> Self {
        Self {
            tokenizer,
            skip_special,
            ids: Vec::new(),
            prefix_offset: 0,
            read_offset: 0,
        }
    }

    /// A decoder continuing after `context` (e.g. the prompt's ids), which
    /// is not emitted but makes the first chunks decode as they would in
    /// the middle of the text (e.g. keeping a SentencePiece leading space).
    /// Only the last few ids of `context` are kept.
    pub fn with_context(tokenizer: T, skip_special: bool, context: &[u32]) -> Self {
        let tail = &context[context.len().saturating_sub(4)..];
        Self {
            tokenizer,
            skip_special,
            ids: tail.to_vec(),
            prefix_offset: 0,
            read_offset: tail.len(),
        }
    }

    pub fn tokenizer(&self) -> &TextTokenizer {
        &self.tokenizer
    }

    /// Adds one id; returns the text it completes (often empty: e.g. the
    /// first byte of a multi-byte character, or a skipped special token).
    /// An invalid id gives an error and is not kept.
    pub fn push(&mut self, id: u32) -> Result<String> {
        self.ids.push(id);
        let result = self.step();
        if result.is_err() {
            self.ids.pop();
        }
        result
    }

    fn step(&mut self) -> Result<String> {
        let prefix = self.decode(self.prefix_offset, self.read_offset)?;
        let full = self.decode(self.prefix_offset, self.ids.len())?;
        let pending = self.ids.len() - self.read_offset;
        if full.len() <= prefix.len() || (full.ends_with('\u{FFFD}') && pending < MAX_PENDING) {
            return Ok(String::new());
        }
        let new_text = suffix_after(&prefix, &full).to_string();
        self.advance();
        Ok(new_text)
    }

    /// Adds several ids; returns the text they complete.
    pub fn push_all(&mut self, ids: &[u32]) -> Result<String> {
        let mut out = String::new();
        for &id in ids {
            out.push_str(&self.push(id)?);
        }
        Ok(out)
    }

    /// Returns whatever text is still held back (an incomplete character
    /// shows as U+FFFD) and starts over, keeping the emitted text as
    /// context.
    pub fn finish(&mut self) -> Result<String> {
        if self.read_offset == self.ids.len() {
            return Ok(String::new());
        }
        let prefix = self.decode(self.prefix_offset, self.read_offset)?;
        let full = self.decode(self.prefix_offset, self.ids.len())?;
        let new_text = suffix_after(&prefix, &full).to_string();
        self.advance();
        Ok(new_text)
    }

    /// Forgets all ids, as a fresh decoder.
    pub fn reset(&mut self) {
        self.ids.clear();
        self.prefix_offset = 0;
        self.read_offset = 0;
    }

    /// Ids pushed but not yet turned into text.
    pub fn pending(&self) -> &[u32] {
        &self.ids[self.read_offset..]
    }

    fn decode(&self, from: usize, to: usize) -> Result<String> {
        self.tokenizer
            .decode_inner(&self.ids[from..to], self.skip_special)
    }

    /// Everything pushed so far is emitted: it becomes the next context.
    fn advance(&mut self) {
        self.ids.drain(..self.read_offset);
        self.prefix_offset = 0;
        self.read_offset = self.ids.len();
    }
}

/// The part of `full` after `prefix`. When the decoding of the context
/// changed (only possible with invalid UTF-8), the part after the longest
/// common prefix.
fn suffix_after<'a>(prefix: &str, full: &'a str) -> &'a str {
    if let Some(rest) = full.strip_prefix(prefix) {
        return rest;
    }
    let common = prefix
        .char_indices()
        .zip(full.chars())
        .find(|((_, a), b)| a != b)
        .map_or(prefix.len().min(full.len()), |((i, _), _)| i);
    full.get(common..).unwrap_or("")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tokenizer::tests::smollm;
    use std::sync::Arc;

    fn stream_pieces(tok: &TextTokenizer, ids: &[u32], skip_special: bool) -> Vec<String> {
        let mut stream = StreamDecoder::new(tok, skip_special);
        let mut pieces: Vec<String> = ids.iter().map(|&id| stream.push(id).unwrap()).collect();
        pieces.push(stream.finish().unwrap());
        pieces
    }

    #[test]
    fn stream_multibyte_characters() {
        let tok = smollm();
        let text = "naïve café — ünïcödé 日本語 🦀👍🏽 done";
        let ids = tok.encode(text, false).unwrap();
        // Some character of the text spans several tokens.
        let split = ids
            .iter()
            .filter(|&&id| tok.decode(&[id]).unwrap().contains('\u{FFFD}'))
            .count();
        assert!(split >= 2, "expected split characters in {ids:?}");
        let pieces = stream_pieces(tok, &ids, true);
        assert!(pieces.iter().all(|p| !p.contains('\u{FFFD}')), "{pieces:?}");
        assert!(pieces.iter().any(String::is_empty));
        assert_eq!(pieces.concat(), tok.decode(&ids).unwrap());
        assert_eq!(pieces.concat(), text);
    }

    #[test]
    fn stream_emoji_alone() {
        // 🦀 is 4 bytes; SmolLM2 has no single token for it.
        let tok = smollm();
        let ids = tok.encode("🦀", false).unwrap();
        assert!(ids.len() > 1, "{ids:?}");
        let pieces = stream_pieces(tok, &ids, true);
        assert_eq!(pieces.concat(), "🦀");
        assert_eq!(pieces.iter().filter(|p| !p.is_empty()).count(), 1);
    }

    #[test]
    fn stream_special_tokens() {
        let tok = smollm();
        let text = "<|im_start|>assistant\nHi there!<|im_end|>";
        let ids = tok.encode(text, false).unwrap();
        assert_eq!(stream_pieces(tok, &ids, false).concat(), text);
        assert_eq!(
            stream_pieces(tok, &ids, true).concat(),
            "assistant\nHi there!"
        );
    }

    #[test]
    fn stream_with_context_and_arc() {
        let tok = Arc::new(smollm().clone());
        let prompt = tok.encode("Hello", false).unwrap();
        let generated = tok.encode(" world! 日本", false).unwrap();
        let mut stream = StreamDecoder::with_context(Arc::clone(&tok), true, &prompt);
        let mut out = stream.push_all(&generated).unwrap();
        out.push_str(&stream.finish().unwrap());
        assert_eq!(out, " world! 日本");
        assert!(stream.pending().is_empty());
        assert_eq!(stream.finish().unwrap(), "");
        stream.reset();
        assert_eq!(stream.push_all(&prompt).unwrap(), "Hello");
    }

    #[test]
    fn stream_incomplete_tail_and_bad_ids() {
        let tok = smollm();
        let ids = tok.encode("日", false).unwrap();
        assert!(ids.len() > 1, "{ids:?}");
        let mut stream = tok.stream_decoder(true);
        assert_eq!(stream.push(ids[0]).unwrap(), "");
        // Ending mid-character flushes the replacement character.
        assert_eq!(stream.finish().unwrap(), "\u{FFFD}");
        assert!(stream.push(u32::MAX).is_err());
        assert!(stream.pending().is_empty());
        assert_eq!(
            stream.push_all(&tok.encode("ok", false).unwrap()).unwrap(),
            "ok"
        );
    }

    #[test]
    fn suffix_after_handles_changed_prefix() {
        assert_eq!(suffix_after("ab", "abcd"), "cd");
        assert_eq!(suffix_after("a\u{FFFD}", "a日x"), "日x");
        assert_eq!(suffix_after("abc", "ab"), "");
    }
}
