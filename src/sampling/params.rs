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
}
