//! The text syntax of decoder specs, shared by every front end:
//!
//! - `--lookahead` of `lade generate` and `lade serve`: `auto`, `off` (also `none`, `false`,
//!   `plain`) or `W,N,G` ([`DecoderKind::parse`]);
//! - a config of `lade bench --configs`: `greedy`, `auto`,
//!   `lookahead:W,N,G[-pool][-ctx][-adapt][-corpus][+ref]` or `prompt-lookup:N,G`
//!   ([`DecoderSpec::parse_config`]).
//!
//! The fields of a request's `lookahead` object are read by the server
//! ([`crate::server::request`]) and checked by [`DecoderKind::lookahead`].

use super::{DecoderKind, DecoderSpec};
use crate::decode::lookahead::{DraftSwitches, LookaheadConfig};
use crate::{LadeError, Result};

/// The forms of one benchmark config, for error messages.
pub const CONFIG_SYNTAX: &str =
    "greedy, auto, lookahead:W,N,G[-pool][-ctx][-adapt][-corpus][+ref], prompt-lookup:N,G";

impl DecoderKind {
    /// Parses `auto`, `off` (or `none`, `false`, `plain`) or `W,N,G` (checked).
    pub fn parse(s: &str) -> Result<Self> {
        match s.trim() {
            "auto" => Ok(Self::Auto),
            "off" | "none" | "false" | "plain" => Ok(Self::Plain),
            wng => {
                let (w, n, g) = LookaheadConfig::parse_wng(wng)?;
                Self::lookahead(w, n, g)
            }
        }
    }
}

impl DecoderSpec {
    /// Parses one benchmark config (see [`CONFIG_SYNTAX`]): the suffixes of `lookahead:`
    /// turn drafting switches off ([`DraftSwitches::strip_suffixes`]). The seed is 0 and
    /// there are no devices.
    pub fn parse_config(item: &str) -> Result<Self> {
        let item = item.trim();
        if item == "greedy" {
            return Ok(Self::new(DecoderKind::Plain));
        }
        if item == "auto" {
            return Ok(Self::new(DecoderKind::Auto));
        }
        if let Some(spec) = item.strip_prefix("lookahead:") {
            let (wng, switches) = DraftSwitches::strip_suffixes(spec.trim());
            let (w, n, g) = LookaheadConfig::parse_wng(wng)?;
            return Ok(Self::new(DecoderKind::lookahead(w, n, g)?).with_switches(switches));
        }
        if let Some(spec) = item.strip_prefix("prompt-lookup:") {
            let bad = || {
                LadeError::InvalidArgument(format!(
                    "prompt-lookup config must be N,G, got `{spec}`"
                ))
            };
            let parts: Vec<&str> = spec.split(',').map(str::trim).collect();
            let [n, g] = parts[..] else {
                return Err(bad());
            };
            let n: usize = n.parse().map_err(|_| bad())?;
            let g: usize = g.parse().map_err(|_| bad())?;
            return Ok(Self::new(DecoderKind::prompt_lookup(n, g)?));
        }
        Err(LadeError::InvalidArgument(format!(
            "unknown config `{item}` ({CONFIG_SYNTAX})"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flag_values() {
        assert_eq!(DecoderKind::parse("auto").unwrap(), DecoderKind::Auto);
        for off in ["off", "none", "false", "plain", " off "] {
            assert_eq!(
                DecoderKind::parse(off).unwrap(),
                DecoderKind::Plain,
                "{off}"
            );
        }
        assert_eq!(
            DecoderKind::parse("4, 3,2").unwrap(),
            DecoderKind::lookahead(4, 3, 2).unwrap()
        );
        let e = DecoderKind::parse("4,1,2").unwrap_err().to_string();
        assert!(e.contains("at least 2"), "{e}");
        for bad in ["fast", "a,b", "1,2", "1,2,3,4", "-1,3,3", ""] {
            let e = DecoderKind::parse(bad).unwrap_err().to_string();
            assert!(e.contains("W,N,G"), "{bad}: {e}");
        }
    }

    #[test]
    fn bench_configs() {
        let c = |s: &str| DecoderSpec::parse_config(s).unwrap();
        assert_eq!(c("greedy"), DecoderSpec::new(DecoderKind::Plain));
        assert_eq!(c("auto"), DecoderSpec::new(DecoderKind::Auto));
        // The same W,N,G as the flag syntax, with the default switches.
        assert_eq!(
            c("lookahead:15,5,15"),
            DecoderSpec::new(DecoderKind::parse("15,5,15").unwrap())
        );
        let s = c("lookahead:1,5,1-pool-ctx+ref");
        assert_eq!(s.kind, DecoderKind::lookahead(1, 5, 1).unwrap());
        assert_eq!(s.switches, DraftSwitches::strip_suffixes("-pool-ctx+ref").1);
        assert!(!s.switches.pool_from_prompt && s.switches.reference_compat);
        assert_eq!(
            c("prompt-lookup:4,10").kind,
            DecoderKind::prompt_lookup(4, 10).unwrap()
        );
        for bad in [
            "lookahead:1,1,1",
            "beam:3",
            "prompt-lookup:1,3",
            "prompt-lookup:5",
            "prompt-lookup:a,3",
            "lookahead:a,b",
            "lookahead:8,4,8+ref-pool",
        ] {
            assert!(DecoderSpec::parse_config(bad).is_err(), "{bad}");
        }
        let e = DecoderSpec::parse_config("beam:3").unwrap_err().to_string();
        assert!(e.contains(CONFIG_SYNTAX), "{e}");
    }
}
