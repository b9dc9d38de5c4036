//! `--draft-corpus` / `--no-draft-corpus`: which draft corpus lookahead steps without a
//! context match draft from.

use std::path::PathBuf;
use std::sync::Arc;

use clap::Args;
use lade::decode::corpus_file::DEFAULT_MODEL_CORPUS;
use lade::decode::{CorpusFile, DraftCorpus};
use lade::loader::LoadedModel;

#[derive(Debug, Clone, Args)]
pub struct CorpusArgs {
    /// Draft corpus for lookahead steps whose text offers no draft (a file written by `lade
    /// draft-corpus` for this model's tokenizer) [default: the embedded corpus when the model
    /// is the embedded default's tokenizer, else none]. Changes speed only, never the output.
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
    ) -> anyhow::Result<Option<Arc<DraftCorpus>>> {
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
            None => {
                let file = CorpusFile::parse(DEFAULT_MODEL_CORPUS, "(embedded)")?;
                // The embedded corpus belongs to the default model's tokenizer only.
                if file
                    .check_tokenizer(&loaded.tokenizer, "(embedded)")
                    .is_err()
                {
                    return Ok(None);
                }
                (file, "embedded".to_string())
            }
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
