//! `lade serve` driven by the official `openai` Python client (tools/server/openai_test.sh
//! installs it from PyPI into target/pyenv-server): chat, completion, streaming, errors.

mod common;

use std::process::Command;

#[test]
fn the_official_openai_python_client_works() {
    if Command::new("python3").arg("--version").output().is_err() {
        eprintln!("SKIPPED: python3 is not installed, so the openai client test cannot run");
        return;
    }
    let root = env!("CARGO_MANIFEST_DIR");
    let out = Command::new("bash")
        .arg(format!("{root}/tools/server/openai_test.sh"))
        .env("LADE_BIN", env!("CARGO_BIN_EXE_lade"))
        .env("LADE_MODEL", common::model_path())
        .current_dir(root)
        .output()
        .expect("run tools/server/openai_test.sh");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "openai client test failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
    assert!(stdout.contains("all checks passed"), "{stdout}");
    eprintln!("{stdout}");
}
