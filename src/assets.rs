//! The data files shipped in this source tree's `assets/` folder: draft corpora and lookahead
//! priors of the built-in models (installed beside a model when it is fetched), fonts for plots.

use std::path::PathBuf;

/// This source tree's `assets/` folder.
pub fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("assets")
}

/// The folder of the shipped lookahead priors (one `<model>.prior` per built-in model).
pub fn lookahead_priors() -> PathBuf {
    dir().join("lookahead-prior")
}
