//! `lade tokenize`: token ids of a text, with no special tokens beyond those written in it.

use clap::Args;
use serde_json::json;

use super::ModelArgs;

#[derive(Debug, Args)]
pub struct TokenizeArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// Print `{"ids": [...], "tokens": [...]}`.
    #[arg(long)]
    pub json: bool,
    /// Wrap the text in the model's chat template as a user message (as `generate --chat`).
    #[arg(long)]
    pub chat: bool,
    /// Text to tokenize.
    pub text: String,
}

pub fn run(args: TokenizeArgs) -> anyhow::Result<()> {
    let path = args.model.model_path()?;
    let tok = lade::loader::load_tokenizer(&path)?;
    let ids = if args.chat {
        super::generate::prompt_ids(&tok, &args.text, true, None)?
    } else {
        tok.encode(&args.text, false)?
    };
    if args.json {
        let tokens: Vec<String> = ids
            .iter()
            .map(|&i| tok.token_text(i).unwrap_or_default())
            .collect();
        println!("{}", json!({ "ids": ids, "tokens": tokens }));
    } else {
        let ids: Vec<String> = ids.iter().map(u32::to_string).collect();
        println!("{}", ids.join(" "));
    }
    Ok(())
}
