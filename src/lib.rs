//! lade: a LLaMA-family inference engine built around Lookahead Decoding.

pub mod assets;
pub mod chat_template;
pub mod decode;
pub mod error;
pub mod fetch;
pub mod generate;
pub mod loader;
pub mod model;
pub mod sampling;
pub mod server;
pub mod synth;
pub mod tokenizer;
pub mod tune;

pub use error::{LadeError, Result};
