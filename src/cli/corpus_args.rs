//! `--draft-corpus` / `--no-draft-corpus`: which draft corpus lookahead steps without a
//! context match draft from.

use std::path::PathBuf;
use std::sync::Arc;

use clap::Args;
use lade::decode::corpus_file::corpus_beside;
use lade::decode::{CorpusFile, DraftCorpus};
use lade::loader::LoadedModel;

#[derive(Debug, Clone, Args)]
pub struct CorpusArgs {
    /// Draft corpus for lookahead steps whose text offers no draft (a file written by `lade
    /// draft-corpus` for this model's tokenizer) [default: the corpus beside the model file,
    /// `M.corpus` for `M.gguf` (installed with the built-in default model), if any]. Changes
    /// speed only, never the output.
    #[arg(long, value_name = "FILE", conflicts_with = "no_draft_corpus")]
    pub draft_corpus: Option<PathBuf>,
    /// Draft from the committed text alone.
    #[arg(long)]
    pub no_draft_corpus: bool,
}

impl CorpusArgs {
    /// The corpus these options ask for, checked against `loaded`'s tokenizer and indexed;
    /// `log` gets one line saying which.
    pub fn load(
        &self,
        loaded: &LoadedModel,
        log: &dyn Fn(&str),
    ) -> lade::Result<Option<Arc<DraftCorpus>>> {
        if self.no_draft_corpus {
            return Ok(None);
        }
        let (file, origin) = match &self.draft_corpus {
            Some(path) => {
                let origin = path.display().to_string();
                let file = CorpusFile::read(path)?;
                file.check_tokenizer(&loaded.tokenizer, &origin)?;
                (file, origin)
            }
            None => match beside(loaded, log) {
                Some(found) => found,
                None => return Ok(None),
            },
        };
        let corpus = file.index();
        log(&format!(
            "draft corpus ({origin}): {} texts, {} tokens, {} contexts",
            corpus.texts(),
            corpus.tokens(),
            corpus.contexts()
        ));
        Ok(Some(Arc::new(corpus)))
    }
}

/// The corpus beside `loaded`'s model file ([`corpus_beside`]), if one is there and fits the
/// model's tokenizer. A missing corpus of a built-in model is installed first; one that cannot
/// be read or belongs to another tokenizer is reported to `log` and left out: lookahead then
/// drafts from the text alone, with the same output.
fn beside(loaded: &LoadedModel, log: &dyn Fn(&str)) -> Option<(CorpusFile, String)> {
    let path = corpus_beside(&loaded.path);
    if !path.is_file() {
        let builtin = lade::fetch::builtin_at(&loaded.path).filter(|m| m.draft_corpus.is_some());
        let m = builtin?;
        lade::fetch::install_draft_corpus(m, &mut |l| log(l))?;
    }
    let origin = path.display().to_string();
    let read = CorpusFile::read(&path).and_then(|file| {
        file.check_tokenizer(&loaded.tokenizer, &origin)?;
        Ok(file)
    });
    match read {
        Ok(file) => Some((file, origin)),
        Err(e) => {
            log(&format!(
                "{e}; drafting from the text alone (rebuild it with `lade draft-corpus`, or \
                 pass --no-draft-corpus)"
            ));
            None
        }
    }
}
