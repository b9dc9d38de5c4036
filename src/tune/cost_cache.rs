//! The step-cost curve `auto` measured, kept on disk so that the next start on the same device,
//! model and build picks at once instead of timing forward passes again.
//!
//! One JSON file per (device, model file, lade executable, measurement plan) in the cache
//! folder: `$LADE_CACHE_DIR`, else `$XDG_CACHE_HOME/lade`, else `~/.cache/lade`. The file
//! holds the full description it was measured under (its fingerprint) and is used only when
//! that matches exactly: a rebuilt binary, a changed model file (size or modification time) or
//! another device measures afresh. A file that cannot be read or parsed is measured over.
//! Deleting the folder forgets every curve.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

use serde::{Deserialize, Serialize};

use super::cost::{CostSample, ForwardCost};

/// Where one measured curve is kept, and what it must have been measured under.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CostCache {
    dir: PathBuf,
    fingerprint: String,
}

/// What a cache file holds: the fingerprint, the curve, and the real step times of the
/// configs `auto` tried (`seconds: None`: the device could not run the step).
#[derive(Debug, Serialize, Deserialize)]
struct Stored {
    fingerprint: String,
    samples: Vec<CostSample>,
    checks: Vec<StoredCheck>,
}

#[derive(Debug, Serialize, Deserialize)]
struct StoredCheck {
    window: usize,
    ngram: usize,
    guesses: usize,
    seconds: Option<f64>,
}

/// The real step time of a tried config `(W, N, G)`: `None` when the device could not run it.
pub(super) type StepCheck = ((usize, usize, usize), Option<f64>);

/// A curve and the step checks read back from a cache file.
pub(super) type Cached = (ForwardCost, Vec<StepCheck>);

impl CostCache {
    /// The cache of `model` (a file or a checkpoint folder) decoded on `device` (its label) by
    /// this executable, in the default cache folder; `None` where there is no folder to use
    /// or the model or executable cannot be described.
    pub fn for_model(model: &Path, device: &str) -> Option<Self> {
        Self::in_dir(&default_dir()?, model, device)
    }

    /// As [`Self::for_model`], in `dir`.
    pub fn in_dir(dir: &Path, model: &Path, device: &str) -> Option<Self> {
        let model_path = model.canonicalize().ok()?;
        let exe = std::env::current_exe().ok()?;
        let fingerprint = format!(
            "lade {} ({}); device {device}; model {} ({})",
            env!("CARGO_PKG_VERSION"),
            file_stamp(&exe)?,
            model_path.display(),
            file_stamp(&model_path)?,
        );
        Some(Self::with_fingerprint(dir, fingerprint))
    }

    /// A cache under an explicit fingerprint (the description the curve is valid for).
    pub fn with_fingerprint(dir: &Path, fingerprint: String) -> Self {
        Self {
            dir: dir.to_path_buf(),
            fingerprint,
        }
    }

    /// The same cache for a measurement made under `plan` (its rows and cached positions),
    /// which is part of what the curve depends on.
    pub(super) fn for_plan(&self, plan: &str) -> Self {
        Self::with_fingerprint(&self.dir, format!("{}; plan {plan}", self.fingerprint))
    }

    /// The file the curve is kept in, named by a hash of the fingerprint.
    pub fn file(&self) -> PathBuf {
        let mut h = DefaultHasher::new();
        self.fingerprint.hash(&mut h);
        self.dir.join(format!("step-cost-{:016x}.json", h.finish()))
    }

    /// The curve and step checks stored under this fingerprint, if a valid file holds them.
    pub(super) fn load(&self) -> Option<Cached> {
        let text = std::fs::read_to_string(self.file()).ok()?;
        let stored: Stored = serde_json::from_str(&text).ok()?;
        if stored.fingerprint != self.fingerprint {
            return None;
        }
        let cost = ForwardCost::from_samples(stored.samples).ok()?;
        let checks = stored
            .checks
            .into_iter()
            .filter(|c| c.seconds.is_none_or(|s| s.is_finite() && s > 0.0))
            .map(|c| ((c.window, c.ngram, c.guesses), c.seconds))
            .collect();
        Some((cost, checks))
    }

    /// Keeps `cost` and `checks` for the next start (written to a temporary file and renamed,
    /// so a reader never sees half a file). A cache that cannot be written only costs the
    /// next start a measurement, so failures are returned for the caller to ignore or report.
    pub(super) fn store(&self, cost: &ForwardCost, checks: &[StepCheck]) -> std::io::Result<()> {
        let stored = Stored {
            fingerprint: self.fingerprint.clone(),
            samples: cost.samples().to_vec(),
            checks: checks
                .iter()
                .map(|&((window, ngram, guesses), seconds)| StoredCheck {
                    window,
                    ngram,
                    guesses,
                    seconds,
                })
                .collect(),
        };
        std::fs::create_dir_all(&self.dir)?;
        let file = self.file();
        let tmp = file.with_extension(format!("json.{}.partial", std::process::id()));
        std::fs::write(&tmp, serde_json::to_vec_pretty(&stored)?)?;
        std::fs::rename(&tmp, &file)
    }
}

/// `$LADE_CACHE_DIR`, else `$XDG_CACHE_HOME/lade`, else `$HOME/.cache/lade` (empty values
/// count as unset).
fn default_dir() -> Option<PathBuf> {
    let var = |k: &str| {
        std::env::var_os(k)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    var("LADE_CACHE_DIR")
        .or_else(|| var("XDG_CACHE_HOME").map(|d| d.join("lade")))
        .or_else(|| var("HOME").map(|d| d.join(".cache").join("lade")))
}

/// Size and modification time of a file (or folder), which change when it is replaced.
fn file_stamp(path: &Path) -> Option<String> {
    let meta = std::fs::metadata(path).ok()?;
    let modified = meta
        .modified()
        .ok()?
        .duration_since(UNIX_EPOCH)
        .ok()?
        .as_nanos();
    Some(format!("{} bytes, modified {modified}", meta.len()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("lade-cost-cache-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    fn curve() -> ForwardCost {
        ForwardCost::from_samples(vec![
            CostSample {
                rows: 1,
                seconds: 0.002,
            },
            CostSample {
                rows: 8,
                seconds: 0.003,
            },
        ])
        .unwrap()
    }

    #[test]
    fn a_stored_curve_comes_back_under_its_fingerprint_only() {
        let dir = temp_dir("roundtrip");
        let cache = CostCache::with_fingerprint(&dir, "device a; model m".into());
        assert!(cache.load().is_none(), "nothing stored yet");
        let checks = vec![((4, 3, 4), Some(0.0025)), ((30, 5, 30), None)];
        cache.store(&curve(), &checks).unwrap();
        let (cost, mut back) = cache.load().expect("stored");
        assert_eq!(cost, curve());
        back.sort_by_key(|c| c.0);
        assert_eq!(back, checks);
        // Another device, model or build: another file, nothing to load.
        let other = CostCache::with_fingerprint(&dir, "device b; model m".into());
        assert_ne!(other.file(), cache.file());
        assert!(other.load().is_none());
        // A file whose fingerprint does not match (a hash collision, an edited file) is not
        // used.
        std::fs::copy(cache.file(), other.file()).unwrap();
        assert!(other.load().is_none());
        // A plan is part of the fingerprint.
        assert!(cache.for_plan("past 512").load().is_none());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn unreadable_or_invalid_files_are_measured_over() {
        let dir = temp_dir("invalid");
        let cache = CostCache::with_fingerprint(&dir, "f".into());
        std::fs::create_dir_all(&dir).unwrap();
        for bad in [
            "",
            "{",
            r#"{"fingerprint":"f","samples":[],"checks":[]}"#,
            r#"{"fingerprint":"f","samples":[{"rows":2,"seconds":0.1}],"checks":[]}"#,
            r#"{"fingerprint":"f","samples":[{"rows":1,"seconds":-1.0}],"checks":[]}"#,
        ] {
            std::fs::write(cache.file(), bad).unwrap();
            assert!(cache.load().is_none(), "{bad:?}");
        }
        // Storing replaces a bad file.
        cache.store(&curve(), &[]).unwrap();
        assert!(cache.load().is_some());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_model_is_described_by_its_path_size_and_time() {
        let dir = temp_dir("model");
        std::fs::create_dir_all(&dir).unwrap();
        let model = dir.join("m.gguf");
        std::fs::write(&model, b"1234").unwrap();
        let a = CostCache::in_dir(&dir, &model, "cpu").unwrap();
        assert_eq!(a, CostCache::in_dir(&dir, &model, "cpu").unwrap());
        assert_ne!(a, CostCache::in_dir(&dir, &model, "cuda:0").unwrap());
        std::fs::write(&model, b"12345").unwrap();
        assert_ne!(a, CostCache::in_dir(&dir, &model, "cpu").unwrap());
        assert!(CostCache::in_dir(&dir, &dir.join("missing.gguf"), "cpu").is_none());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
