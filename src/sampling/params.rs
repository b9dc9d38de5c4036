//! User-facing sampling settings and their validation.

use serde::{Deserialize, Serialize};

use crate::error::{LadeError, Result};

/// How the next token is picked from the model's logits.
///
/// Every field has an "off" value; [`SamplingParams::default`] is plain
/// greedy decoding:
///
/// | field            | default | off value | meaning                                              |
/// |------------------|---------|-----------|------------------------------------------------------|
/// | `temperature`    | `0.0`   | —         | `0` = greedy (argmax), otherwise logits are divided by it |
/// | `top_k`          | `0`     | `0`       | keep only the `k` most likely tokens                  |
/// | `top_p`          | `1.0`   | `1.0`     | keep the smallest nucleus with cumulative prob ≥ `top_p` |
/// | `min_p`          | `0.0`   | `0.0`     | drop tokens with `p < min_p * p_max`                  |
/// | `repeat_penalty` | `1.0`   | `1.0`     | CTRL-style penalty on recently seen tokens            |
/// | `repeat_last_n`  | `64`    | `0`       | how many of the latest tokens the penalty looks at    |
/// | `seed`           | `0`     | —         | seed of the counter-based RNG ([`super::rng`])        |
///
/// Missing fields deserialize to their defaults, so `{"temperature": 0.8}`
/// is a valid configuration.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SamplingParams {
    /// Softmax temperature; `0.0` selects greedy decoding.
    pub temperature: f32,
    /// Top-k cutoff; `0` disables it.
    pub top_k: usize,
    /// Nucleus (top-p) threshold in `(0, 1]`; `1.0` disables it.
    pub top_p: f32,
    /// Min-p ratio in `[0, 1]`; `0.0` disables it.
    pub min_p: f32,
    /// Repetition penalty (`> 0`); `1.0` disables it.
    pub repeat_penalty: f32,
    /// Number of most recent tokens the repetition penalty considers; `0` disables it.
    pub repeat_last_n: usize,
    /// RNG seed. The draw for output position `i` depends only on `(seed, i)`.
    pub seed: u64,
}

impl SamplingParams {
    /// Default window of the repetition penalty (same as llama.cpp).
    pub const DEFAULT_REPEAT_LAST_N: usize = 64;

    /// Greedy decoding with every filter off (the [`Default`]).
    pub const fn greedy() -> Self {
        Self {
            temperature: 0.0,
            top_k: 0,
            top_p: 1.0,
            min_p: 0.0,
            repeat_penalty: 1.0,
            repeat_last_n: Self::DEFAULT_REPEAT_LAST_N,
            seed: 0,
        }
    }

    /// `true` when the temperature is zero, i.e. the sampler takes the argmax
    /// and never consults the RNG.
    pub fn is_greedy(&self) -> bool {
        self.temperature == 0.0
    }

    /// Checks every value; the error message names the command-line flag.
    pub fn validate(&self) -> Result<()> {
        let t = self.temperature;
        if !t.is_finite() || t < 0.0 {
            return Err(invalid(format!(
                "--temperature must be a finite number >= 0, got {t}"
            )));
        }
        let p = self.top_p;
        if !(p.is_finite() && p > 0.0 && p <= 1.0) {
            return Err(invalid(format!("--top-p must be in (0, 1], got {p}")));
        }
        let m = self.min_p;
        if !(m.is_finite() && (0.0..=1.0).contains(&m)) {
            return Err(invalid(format!("--min-p must be in [0, 1], got {m}")));
        }
        let r = self.repeat_penalty;
        if !(r.is_finite() && r > 0.0) {
            return Err(invalid(format!(
                "--repeat-penalty must be a finite number > 0, got {r}"
            )));
        }
        Ok(())
    }
}

impl Default for SamplingParams {
    fn default() -> Self {
        Self::greedy()
    }
}

/// Sampling settings of which only some are given: a user's flags, the fields of a request,
/// or the settings a model's files recommend. `None` = not given.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct PartialSampling {
    pub temperature: Option<f32>,
    pub top_k: Option<usize>,
    pub top_p: Option<f32>,
    pub min_p: Option<f32>,
    pub repeat_penalty: Option<f32>,
    pub repeat_last_n: Option<usize>,
}

impl PartialSampling {
    /// `true` when no field is given.
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }

    /// The given fields that [`SamplingParams::validate`] would accept, the others dropped
    /// (a model file's recommendation out of range is ignored rather than refused).
    pub fn valid_only(self) -> Self {
        Self {
            temperature: self.temperature.filter(|t| t.is_finite() && *t >= 0.0),
            top_k: self.top_k,
            top_p: self
                .top_p
                .filter(|p| p.is_finite() && *p > 0.0 && *p <= 1.0),
            min_p: self
                .min_p
                .filter(|m| m.is_finite() && (0.0..=1.0).contains(m)),
            repeat_penalty: self.repeat_penalty.filter(|r| r.is_finite() && *r > 0.0),
            repeat_last_n: self.repeat_last_n,
        }
    }

    /// `base` with every given field replaced (the seed is `base`'s).
    pub fn over(&self, base: SamplingParams) -> SamplingParams {
        SamplingParams {
            temperature: self.temperature.unwrap_or(base.temperature),
            top_k: self.top_k.unwrap_or(base.top_k),
            top_p: self.top_p.unwrap_or(base.top_p),
            min_p: self.min_p.unwrap_or(base.min_p),
            repeat_penalty: self.repeat_penalty.unwrap_or(base.repeat_penalty),
            repeat_last_n: self.repeat_last_n.unwrap_or(base.repeat_last_n),
            seed: base.seed,
        }
    }

    /// The settings of a generation: the `given` ones over the model's `recommended` ones
    /// over [`SamplingParams::LLAMA_CPP`]. A temperature of 0, given or recommended, is plain
    /// greedy decoding: then only the given settings apply, over [`SamplingParams::greedy`]
    /// (so that `--temperature 0` means the argmax of the model's logits whatever a model
    /// recommends).
    pub fn resolve(given: &Self, recommended: &Self, seed: u64) -> SamplingParams {
        let sampled = given.over(recommended.over(SamplingParams::LLAMA_CPP));
        let params = if sampled.is_greedy() {
            given.over(SamplingParams::greedy())
        } else {
            sampled
        };
        SamplingParams { seed, ..params }
    }
}

impl SamplingParams {
    /// llama.cpp's defaults, used where a model's files recommend nothing: temperature 0.8,
    /// top-k 40, top-p 0.95, min-p 0.05, no repetition penalty.
    pub const LLAMA_CPP: Self = Self {
        temperature: 0.8,
        top_k: 40,
        top_p: 0.95,
        min_p: 0.05,
        repeat_penalty: 1.0,
        repeat_last_n: Self::DEFAULT_REPEAT_LAST_N,
        seed: 0,
    };

    /// One line for logs: `temperature 0.8, top-k 40, top-p 0.95, min-p 0.05, seed 7`
    /// (filters that are off are left out; `greedy` for temperature 0).
    pub fn describe(&self) -> String {
        if self.is_greedy() {
            return match self.describe_penalty() {
                Some(p) => format!("greedy, {p}"),
                None => "greedy".into(),
            };
        }
        let mut parts = vec![format!("temperature {}", self.temperature)];
        if self.top_k > 0 {
            parts.push(format!("top-k {}", self.top_k));
        }
        if self.top_p < 1.0 {
            parts.push(format!("top-p {}", self.top_p));
        }
        if self.min_p > 0.0 {
            parts.push(format!("min-p {}", self.min_p));
        }
        parts.extend(self.describe_penalty());
        parts.push(format!("seed {}", self.seed));
        parts.join(", ")
    }

    fn describe_penalty(&self) -> Option<String> {
        if self.repeat_penalty == 1.0 || self.repeat_last_n == 0 {
            return None;
        }
        Some(if self.repeat_last_n == usize::MAX {
            format!("repeat penalty {} over the whole text", self.repeat_penalty)
        } else {
            format!(
                "repeat penalty {} over {} tokens",
                self.repeat_penalty, self.repeat_last_n
            )
        })
    }
}

fn invalid(msg: String) -> LadeError {
    LadeError::InvalidArgument(msg)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err_of(p: SamplingParams) -> String {
        match p.validate() {
            Err(LadeError::InvalidArgument(m)) => m,
            other => panic!("expected InvalidArgument, got {other:?}"),
        }
    }

    #[test]
    fn default_is_greedy_and_valid() {
        let p = SamplingParams::default();
        assert!(p.is_greedy());
        assert_eq!(p.temperature, 0.0);
        assert_eq!(p.top_k, 0);
        assert_eq!(p.top_p, 1.0);
        assert_eq!(p.min_p, 0.0);
        assert_eq!(p.repeat_penalty, 1.0);
        assert_eq!(p.repeat_last_n, 64);
        assert_eq!(p.seed, 0);
        p.validate().unwrap();
        let sampling = SamplingParams {
            temperature: 0.8,
            ..p
        };
        assert!(!sampling.is_greedy());
    }

    #[test]
    fn boundary_values_are_accepted() {
        let base = SamplingParams::default();
        for p in [
            SamplingParams {
                top_p: 1.0,
                min_p: 1.0,
                ..base
            },
            SamplingParams {
                top_p: 1e-6,
                min_p: 0.0,
                ..base
            },
            SamplingParams {
                temperature: 100.0,
                repeat_penalty: 1e-3,
                ..base
            },
        ] {
            p.validate().unwrap();
        }
    }

    #[test]
    fn bad_temperature() {
        let base = SamplingParams::default();
        for t in [-0.1, f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
            let m = err_of(SamplingParams {
                temperature: t,
                ..base
            });
            assert!(m.starts_with("--temperature "), "{m}");
        }
        assert_eq!(
            err_of(SamplingParams {
                temperature: -1.0,
                ..base
            }),
            "--temperature must be a finite number >= 0, got -1"
        );
    }

    #[test]
    fn bad_top_p() {
        let base = SamplingParams::default();
        assert_eq!(
            err_of(SamplingParams { top_p: 1.5, ..base }),
            "--top-p must be in (0, 1], got 1.5"
        );
        for v in [0.0, -0.5, 1.0001, f32::NAN, f32::INFINITY] {
            let m = err_of(SamplingParams { top_p: v, ..base });
            assert!(m.starts_with("--top-p must be in (0, 1], got "), "{m}");
        }
    }

    #[test]
    fn bad_min_p() {
        let base = SamplingParams::default();
        assert_eq!(
            err_of(SamplingParams {
                min_p: -0.1,
                ..base
            }),
            "--min-p must be in [0, 1], got -0.1"
        );
        for v in [1.5, f32::NAN, f32::NEG_INFINITY] {
            let m = err_of(SamplingParams { min_p: v, ..base });
            assert!(m.starts_with("--min-p must be in [0, 1], got "), "{m}");
        }
    }

    #[test]
    fn bad_repeat_penalty() {
        let base = SamplingParams::default();
        assert_eq!(
            err_of(SamplingParams {
                repeat_penalty: 0.0,
                ..base
            }),
            "--repeat-penalty must be a finite number > 0, got 0"
        );
        for v in [-1.0, f32::NAN, f32::INFINITY] {
            let m = err_of(SamplingParams {
                repeat_penalty: v,
                ..base
            });
            assert!(m.starts_with("--repeat-penalty "), "{m}");
        }
    }

    #[test]
    fn serde_round_trip_and_partial_config() {
        let p = SamplingParams {
            temperature: 0.7,
            top_k: 40,
            top_p: 0.9,
            min_p: 0.05,
            repeat_penalty: 1.1,
            repeat_last_n: 32,
            seed: 1234,
        };
        let json = serde_json::to_string(&p).unwrap();
        let back: SamplingParams = serde_json::from_str(&json).unwrap();
        assert_eq!(p, back);

        let partial: SamplingParams = serde_json::from_str(r#"{"temperature": 0.5}"#).unwrap();
        assert_eq!(
            partial,
            SamplingParams {
                temperature: 0.5,
                ..SamplingParams::default()
            }
        );
    }

    #[test]
    fn resolve_layers_given_over_recommended_over_llama_cpp() {
        let none = PartialSampling::default();
        assert_eq!(
            PartialSampling::resolve(&none, &none, 9),
            SamplingParams {
                seed: 9,
                ..SamplingParams::LLAMA_CPP
            }
        );
        let recommended = PartialSampling {
            temperature: Some(0.7),
            top_p: Some(0.8),
            top_k: Some(20),
            repeat_penalty: Some(1.05),
            ..none
        };
        let given = PartialSampling {
            top_p: Some(0.5),
            ..none
        };
        let p = PartialSampling::resolve(&given, &recommended, 3);
        assert_eq!(
            p,
            SamplingParams {
                temperature: 0.7,
                top_k: 20,
                top_p: 0.5,
                min_p: 0.05,
                repeat_penalty: 1.05,
                repeat_last_n: SamplingParams::DEFAULT_REPEAT_LAST_N,
                seed: 3,
            }
        );
        p.validate().unwrap();
    }

    #[test]
    fn temperature_zero_is_plain_greedy_whatever_is_recommended() {
        let recommended = PartialSampling {
            temperature: Some(0.7),
            top_k: Some(20),
            repeat_penalty: Some(1.1),
            ..PartialSampling::default()
        };
        let zero = PartialSampling {
            temperature: Some(0.0),
            ..PartialSampling::default()
        };
        assert_eq!(
            PartialSampling::resolve(&zero, &recommended, 0),
            SamplingParams::greedy()
        );
        // A penalty given with it still applies.
        let with_penalty = PartialSampling {
            repeat_penalty: Some(1.2),
            ..zero
        };
        assert_eq!(
            PartialSampling::resolve(&with_penalty, &recommended, 0),
            SamplingParams {
                repeat_penalty: 1.2,
                ..SamplingParams::greedy()
            }
        );
        // A model that recommends greedy decoding gets it.
        let greedy_model = PartialSampling {
            temperature: Some(0.0),
            top_k: Some(5),
            ..PartialSampling::default()
        };
        assert!(
            PartialSampling::resolve(&PartialSampling::default(), &greedy_model, 0).is_greedy()
        );
    }

    #[test]
    fn valid_only_drops_out_of_range_recommendations() {
        let bad = PartialSampling {
            temperature: Some(-1.0),
            top_k: Some(7),
            top_p: Some(1.5),
            min_p: Some(f32::NAN),
            repeat_penalty: Some(0.0),
            repeat_last_n: Some(32),
        };
        assert_eq!(
            bad.valid_only(),
            PartialSampling {
                top_k: Some(7),
                repeat_last_n: Some(32),
                ..PartialSampling::default()
            }
        );
        let good = PartialSampling {
            temperature: Some(0.6),
            top_p: Some(1.0),
            min_p: Some(0.0),
            repeat_penalty: Some(1.1),
            ..PartialSampling::default()
        };
        assert_eq!(good.valid_only(), good);
    }

    #[test]
    fn describe_names_what_is_on() {
        assert_eq!(SamplingParams::greedy().describe(), "greedy");
        assert_eq!(
            SamplingParams {
                seed: 5,
                ..SamplingParams::LLAMA_CPP
            }
            .describe(),
            "temperature 0.8, top-k 40, top-p 0.95, min-p 0.05, seed 5"
        );
        assert_eq!(
            SamplingParams {
                temperature: 1.0,
                repeat_penalty: 1.1,
                repeat_last_n: usize::MAX,
                ..SamplingParams::greedy()
            }
            .describe(),
            "temperature 1, repeat penalty 1.1 over the whole text, seed 0"
        );
    }
}
