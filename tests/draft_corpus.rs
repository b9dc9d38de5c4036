//! `lade draft-corpus` and `--draft-corpus` end to end on the default model: the corpus file
//! is written, drafts from it are used, the output equals plain greedy decoding, and bad or
//! foreign corpus files get a clear error (never a panic).

mod common;

use std::path::{Path, PathBuf};

use common::run_lade as lade;
use lade::decode::CorpusFile;

fn dir() -> PathBuf {
    let d = std::env::temp_dir().join(format!("lade-corpus-test-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/prompts/mt_bench.jsonl")
}

/// `lade draft-corpus` on the MT-Bench fixtures with `extra` options.
fn draft_corpus(extra: &[&str]) -> (bool, String, String) {
    let model = common::model_path().display().to_string();
    let fixtures = fixtures().display().to_string();
    let mut args = vec!["draft-corpus", "--model", &model, "--dataset", &fixtures];
    args.extend_from_slice(extra);
    lade(&args)
}

fn generate_json(extra: &[&str]) -> serde_json::Value {
    let model = common::model_path().display().to_string();
    let mut args = vec![
        "generate",
        "--model",
        &model,
        "-q",
        "--chat",
        "--json",
        "--temperature",
        "0",
        "-n",
        "48",
        "-p",
        "Write a short note to a friend about your weekend, then list three things you did.",
    ];
    args.extend_from_slice(extra);
    let (ok, out, err) = lade(&args);
    assert!(ok, "{args:?}: {err}");
    serde_json::from_str(&out).unwrap()
}

#[test]
fn a_built_corpus_drafts_without_changing_the_output() {
    let file = dir().join("mt.corpus");
    let file_s = file.display().to_string();
    let (ok, _, err) = draft_corpus(&[
        "--chat",
        "--skip",
        "2",
        "--limit",
        "3",
        "--max-tokens",
        "64",
        "--out",
        &file_s,
    ]);
    assert!(ok, "{err}");
    assert!(err.contains("3 texts"), "{err}");
    let corpus = CorpusFile::read(&file).unwrap();
    assert_eq!(corpus.texts.len(), 3);
    let tok = lade::loader::load_tokenizer(&common::model_path()).unwrap();
    corpus.check_tokenizer(&tok, "mt.corpus").unwrap();
    // --append adds to it.
    let (ok, _, err) = draft_corpus(&[
        "--chat",
        "--skip",
        "5",
        "--limit",
        "1",
        "--max-tokens",
        "16",
        "--append",
        "--out",
        &file_s,
    ]);
    assert!(ok, "{err}");
    assert_eq!(CorpusFile::read(&file).unwrap().texts.len(), 4);

    let plain = generate_json(&["--no-lookahead"]);
    let with = generate_json(&["--lookahead", "0,8,1", "--draft-corpus", &file_s]);
    let without = generate_json(&["--lookahead", "0,8,1", "--no-draft-corpus"]);
    assert_eq!(with["token_ids"], plain["token_ids"]);
    assert_eq!(without["token_ids"], plain["token_ids"]);
    let la = &with["stats"]["lookahead"];
    assert_eq!(la["corpus"]["texts"], 4, "{la}");
    assert!(la["corpus_drafts"].as_u64().unwrap() > 0, "{la}");
    assert!(without["stats"]["lookahead"]["corpus"].is_null());
    assert_eq!(without["stats"]["lookahead"]["corpus_drafts"], 0);
}

#[test]
fn bad_and_foreign_corpora_are_refused_clearly() {
    let model = common::model_path().display().to_string();
    let fails = |path: &Path, needle: &str| {
        let p = path.display().to_string();
        let (ok, _, err) = lade(&[
            "generate",
            "--model",
            &model,
            "-q",
            "-n",
            "4",
            "-p",
            "hi",
            "--lookahead",
            "0,8,1",
            "--draft-corpus",
            &p,
        ]);
        assert!(!ok && !err.contains("panicked"), "{err}");
        let line = err.lines().find(|l| l.starts_with("error:")).unwrap_or("");
        assert!(line.contains(needle), "{line:?} lacks {needle:?}: {err}");
    };
    let d = dir();
    let junk = d.join("junk.corpus");
    std::fs::write(&junk, b"not a corpus at all").unwrap();
    fails(&junk, "bad magic");
    let tok = lade::loader::load_tokenizer(&common::model_path()).unwrap();
    let mut file = CorpusFile::for_tokenizer(&tok);
    file.texts.push(vec![1, 2, 3]);
    let good = file.to_bytes();
    let cut = d.join("cut.corpus");
    std::fs::write(&cut, &good[..good.len() - 2]).unwrap();
    fails(&cut, "truncated");
    file.fingerprint ^= 1;
    let foreign = d.join("foreign.corpus");
    file.write(&foreign).unwrap();
    fails(&foreign, "another tokenizer");
    fails(&d.join("missing.corpus"), "missing.corpus");
    // The builder refuses a prompt set it would leave empty.
    let out = d.join("x.corpus").display().to_string();
    let (ok, _, err) = draft_corpus(&["--skip", "100", "--out", &out]);
    assert!(!ok && err.contains("left out by --skip"), "{err}");
}

#[test]
fn self_prompts_are_user_turns_the_model_writes_and_answers() {
    let model = common::model_path().display().to_string();
    let d = dir();
    let build = |name: &str, seed: &str| -> (PathBuf, String) {
        let out = d.join(name);
        let out_s = out.display().to_string();
        let (ok, _, err) = lade(&[
            "draft-corpus",
            "--model",
            &model,
            "--self-prompts",
            "3",
            "--self-prompt-seed",
            seed,
            "--max-tokens",
            "12",
            "--out",
            &out_s,
        ]);
        assert!(ok, "{err}");
        (out, err)
    };
    let (a, log) = build("self-a.corpus", "1");
    let texts = CorpusFile::read(&a).unwrap().texts;
    assert!(!texts.is_empty() && texts.len() <= 3, "{log}");
    assert!(log.contains(&format!("{} new", texts.len())), "{log}");
    let tok = lade::loader::load_tokenizer(&common::model_path()).unwrap();
    let mut users = Vec::new();
    for t in &texts {
        let s = tok.decode_with_specials(t).unwrap();
        // The chat template's user turn, written by the model, then the assistant's answer.
        let user = s.split("<|im_start|>user\n").nth(1).expect(&s);
        let (question, answer) = user
            .split_once("<|im_end|>\n<|im_start|>assistant\n")
            .expect(&s);
        assert!(!question.trim().is_empty() && !answer.is_empty(), "{s:?}");
        users.push(question.to_string());
    }
    users.dedup();
    assert_eq!(
        users.len(),
        texts.len(),
        "each seed writes its own prompt: {users:?}"
    );
    // The same seeds write the same corpus; other seeds another.
    let (b, _) = build("self-b.corpus", "1");
    assert_eq!(std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap());
    let (c, _) = build("self-c.corpus", "7");
    assert_ne!(CorpusFile::read(&c).unwrap().texts, texts);

    let out = d.join("never.corpus").display().to_string();
    for (args, needle) in [
        (
            vec!["--self-prompts", "0"],
            "--self-prompts must be at least 1",
        ),
        (
            vec!["--self-prompts", "2", "--self-prompt-temperature", "0"],
            "--self-prompt-temperature must be above 0",
        ),
        (vec![], "--dataset"),
    ] {
        let mut all = vec!["draft-corpus", "--model", &model, "--out", &out];
        all.extend(args);
        let (ok, _, err) = lade(&all);
        assert!(
            !ok && !err.contains("panicked") && err.contains(needle),
            "{all:?}: {err}"
        );
    }
}

/// A corpus beside the model file (`M.corpus` for `M.gguf`) is found without flags; `lade
/// draft-corpus` writes there by default; a missing one means drafting from the text alone and
/// a damaged one is reported and left out. The output is the same every time.
#[test]
fn the_corpus_beside_a_model_is_used_and_a_bad_one_degrades_gracefully() {
    let d = dir().join("beside");
    std::fs::create_dir_all(&d).unwrap();
    let model = d.join("m.gguf");
    let _ = std::fs::remove_file(&model);
    std::os::unix::fs::symlink(common::model_path(), &model).unwrap();
    let model_s = model.display().to_string();
    let corpus = d.join("m.corpus");
    let _ = std::fs::remove_file(&corpus);
    let run = |extra: &[&str]| -> (serde_json::Value, String) {
        let mut args = vec![
            "generate",
            "--model",
            &model_s,
            "--chat",
            "--json",
            "--temperature",
            "0",
            "-n",
            "32",
            "-p",
            "Write a short note to a friend about your weekend.",
        ];
        args.extend_from_slice(extra);
        let (ok, out, err) = lade(&args);
        assert!(ok, "{args:?}: {err}");
        (serde_json::from_str(&out).unwrap(), err)
    };
    let (plain, _) = run(&["-q", "--no-lookahead"]);
    let (none, _) = run(&["-q", "--lookahead", "0,8,1"]);
    assert_eq!(none["token_ids"], plain["token_ids"]);
    assert!(none["stats"]["lookahead"]["corpus"].is_null());

    let fixtures = fixtures().display().to_string();
    let (ok, _, err) = lade(&[
        "draft-corpus",
        "--model",
        &model_s,
        "--dataset",
        &fixtures,
        "--chat",
        "--limit",
        "2",
        "--max-tokens",
        "32",
    ]);
    assert!(ok, "{err}");
    assert_eq!(CorpusFile::read(&corpus).unwrap().texts.len(), 2);
    let (found, err) = run(&["--lookahead", "0,8,1"]);
    assert_eq!(found["token_ids"], plain["token_ids"]);
    assert_eq!(found["stats"]["lookahead"]["corpus"]["texts"], 2, "{err}");
    assert!(err.contains(&corpus.display().to_string()), "{err}");

    std::fs::write(&corpus, b"not a corpus").unwrap();
    let (damaged, err) = run(&["--lookahead", "0,8,1"]);
    assert!(!err.contains("panicked"), "{err}");
    assert_eq!(damaged["token_ids"], plain["token_ids"]);
    assert!(damaged["stats"]["lookahead"]["corpus"].is_null());
    assert!(
        err.contains("bad magic") && err.contains("drafting from the text alone"),
        "{err}"
    );
    // Told not to, it does not look.
    let (off, err) = run(&["--lookahead", "0,8,1", "--no-draft-corpus"]);
    assert_eq!(off["token_ids"], plain["token_ids"]);
    assert!(!err.contains("bad magic"), "{err}");
    std::fs::remove_dir_all(&d).unwrap();
}
