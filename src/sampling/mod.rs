//! The sampling layer: from logits to the next token, independent of any model.
//!
//! - [`SamplingParams`]: user settings (temperature, top-k, top-p, min-p,
//!   repetition penalty, seed) and their validation; [`PartialSampling`]: the
//!   settings a user, a request or a model's files give, resolved over
//!   llama.cpp's defaults.
//! - [`rng`]: a stateless counter-based RNG; the draw for output position `i`
//!   is `uniform(seed, i)`, which lets exact speculative decoding reproduce
//!   plain sampling token for token.
//! - [`Sampler`]: applies the penalty and filters and picks a token.

pub mod params;
pub mod rng;
pub mod sampler;

pub use params::{PartialSampling, SamplingParams};
pub use rng::{fresh_seed, random_u64, uniform};
pub use sampler::{argmax, draw, Sampler};
