//! `--lookahead auto` end to end on mock devices whose forward time is a known function of the
//! rows (a sleep): a CPU-like device (time grows with rows) gets plain decoding, a GPU-like
//! one (flat time) a lookahead config, a device that cannot run long mask chains (like a GPU
//! kernel with a cap on the rows one row sees) never gets a config it cannot run, and the
//! measurement is made once per process and key.

mod common;

use std::time::Duration;

use common::mock::{sticky, MockLm};
use lade::decode::{Decoder, DecoderKind, DecoderSpec, LookaheadConfig, PlainDecoder};
use lade::generate::{generate, StopRules};
use lade::model::{Batch, CausalLm, Logits};
use lade::sampling::{Sampler, SamplingParams};
use lade::tune::{
    self as auto, build, choose_on, AcceptanceTable, AutoOptions, DecoderEnv, SamplingMode,
    Strategy,
};
use lade::{LadeError, Result};

const VOCAB: usize = 12;

/// The mock model, slowed down to `base + per_row * rows`; passes in which a row sees more
/// than `max_seen` new rows fail.
struct Device {
    lm: MockLm,
    base: Duration,
    per_row: Duration,
    max_seen: usize,
}

impl Device {
    fn new(base_us: u64, per_row_us: u64, max_seen: usize) -> Self {
        let mut lm = MockLm::new(VOCAB, 4096);
        lm.table = sticky;
        Self {
            lm,
            base: Duration::from_micros(base_us),
            per_row: Duration::from_micros(per_row_us),
            max_seen,
        }
    }
}

impl CausalLm for Device {
    fn forward(&mut self, batch: &Batch<'_>) -> Result<Logits> {
        let past = self.lm.cache_len();
        let q = batch.tokens.len();
        let widest = (0..q)
            .map(|i| {
                (0..q)
                    .filter(|&j| batch.mask.sees(past, q, i, past + j))
                    .count()
            })
            .max()
            .unwrap_or(0);
        let causal =
            (0..q).all(|i| (0..q).all(|j| batch.mask.sees(past, q, i, past + j) == (j <= i)));
        if widest > self.max_seen && !causal {
            return Err(LadeError::Unsupported(format!(
                "a row sees {widest} new rows"
            )));
        }
        std::thread::sleep(self.base + self.per_row * q as u32);
        self.lm.forward(batch)
    }
    fn cache_len(&self) -> usize {
        self.lm.cache_len()
    }
    fn truncate(&mut self, len: usize) {
        self.lm.truncate(len)
    }
    fn keep_rows(&mut self, start: usize, rows: &[usize]) -> Result<()> {
        self.lm.keep_rows(start, rows)
    }
    fn context_size(&self) -> usize {
        self.lm.context_size()
    }
    fn vocab_size(&self) -> usize {
        self.lm.vocab_size()
    }
}

fn table() -> AcceptanceTable {
    AcceptanceTable::from_prior(&[(4, 3, 4, 1.3), (8, 4, 8, 1.5), (15, 5, 15, 1.7)])
}

#[test]
fn a_cpu_like_device_decodes_plainly() {
    // 1 ms + 2 ms per row: a 2-row pass already costs 1.7 single-row passes.
    let mut dev = Device::new(1000, 2000, usize::MAX);
    let choice = choose_on(&mut dev, &table(), &AutoOptions::default()).unwrap();
    assert_eq!(choice.strategy, Strategy::Plain, "{}", choice.describe());
    assert_eq!(dev.cache_len(), 0, "the throwaway sequence is left empty");
    // The ladder stopped early: nothing near the 120 rows of 15,5,15 was timed.
    assert!(choice.cost.max_rows() <= 4, "{:?}", choice.cost);
    let spec = DecoderSpec::new(choice.strategy.kind());
    let dec = build(&spec, &DecoderEnv::bare()).unwrap().decoder;
    assert_eq!(dec.name(), "plain");
}

#[test]
fn a_gpu_like_device_gets_the_best_config_it_can_run() {
    // Flat 3 ms per pass up to any size: the best acceptance wins.
    let mut dev = Device::new(3000, 0, usize::MAX);
    let choice = choose_on(&mut dev, &table(), &AutoOptions::default()).unwrap();
    assert_eq!(
        choice.strategy,
        Strategy::Lookahead(LookaheadConfig::new(15, 5, 15)),
        "{}",
        choice.describe()
    );
    assert!(choice.expected_tokens_per_s > 1.1 * choice.plain_tokens_per_s);
    // Rows may see at most 16 new rows (15,5,15 needs 18): the next best that runs.
    let mut dev = Device::new(3000, 0, 16);
    let choice = choose_on(&mut dev, &table(), &AutoOptions::default()).unwrap();
    assert_eq!(
        choice.strategy,
        Strategy::Lookahead(LookaheadConfig::new(8, 4, 8)),
        "{}",
        choice.describe()
    );
    // A context with room for 40 rows only: 4,3,4 (16 rows).
    let opts = AutoOptions {
        max_rows: 40,
        ..AutoOptions::default()
    };
    let choice = choose_on(&mut Device::new(3000, 0, usize::MAX), &table(), &opts).unwrap();
    assert_eq!(
        choice.strategy,
        Strategy::Lookahead(LookaheadConfig::new(4, 3, 4))
    );

    // The pick decodes exactly like plain decoding.
    let spec = DecoderSpec::new(choice.strategy.kind()).with_seed(4);
    let mut dec = build(&spec, &DecoderEnv::bare()).unwrap().decoder;
    let p: Vec<u32> = (0..20).map(|i| (i * 7 + 3) % VOCAB as u32).collect();
    let rules = StopRules {
        max_tokens: 40,
        ..StopRules::default()
    };
    let sampler = Sampler::new(SamplingParams::greedy()).unwrap();
    let mut lm = MockLm::new(VOCAB, 512);
    lm.table = sticky;
    let la = generate(
        &mut lm,
        dec.as_mut(),
        &sampler,
        &p,
        &rules,
        None,
        &mut |_, _| {},
    )
    .unwrap();
    let mut lm = MockLm::new(VOCAB, 512);
    lm.table = sticky;
    let plain = generate(
        &mut lm,
        &mut PlainDecoder,
        &sampler,
        &p,
        &rules,
        None,
        &mut |_, _| {},
    )
    .unwrap();
    assert_eq!(la.token_ids, plain.token_ids);
    assert!(la.stats.compression > 1.0);
}

#[test]
fn choose_measures_once_per_key_and_learns_from_runs() {
    let key = format!("test-device-{}", std::process::id());
    let opts = AutoOptions::default();
    let first = auto::choose(
        &key,
        |_| Ok(Box::new(Device::new(3000, 0, usize::MAX))),
        &opts,
    )
    .unwrap();
    assert!(auto::cached_cost(&key).is_some());
    // Cached: no throwaway sequence is made again.
    let again = auto::choose(
        &key,
        |_| -> Result<Box<dyn CausalLm>> { panic!("measured twice") },
        &opts,
    )
    .unwrap();
    assert_eq!(first.strategy, again.strategy);
    // Observed runs of the pick at one token per step make lookahead pointless: after
    // enough of them the same device gets plain decoding.
    let Strategy::Lookahead(cfg) = first.strategy else {
        panic!("a flat device should get lookahead: {}", first.describe());
    };
    let before = auto::current_table(SamplingMode::Greedy);
    let sampled = auto::current_table(SamplingMode::Sampled);
    let rows = cfg.step_tokens(cfg.guesses);
    auto::record(
        &cfg,
        SamplingMode::Greedy,
        100_000,
        &std::collections::BTreeMap::from([(rows, 100_000)]),
    );
    let after = auto::current_table(SamplingMode::Greedy);
    let e = |t: &AcceptanceTable| {
        t.entries()
            .iter()
            .find(|e| e.config() == LookaheadConfig::new(cfg.window, cfg.ngram, cfg.guesses))
            .map(|e| t.expected(e))
            .unwrap()
    };
    assert!(e(&after) < e(&before));
    assert!(e(&after) < 1.01);
    // Greedy runs say nothing about sampled ones, which keep their own statistics.
    assert_eq!(auto::current_table(SamplingMode::Sampled), sampled);
    // The next pick reads what was learned (without measuring the curve again): greedy
    // generations now decode plainly, sampled ones keep the config.
    let device =
        |_| -> Result<Box<dyn CausalLm>> { Ok(Box::new(Device::new(3000, 0, usize::MAX))) };
    let later = auto::choose(&key, device, &opts).unwrap();
    assert_eq!(later.strategy, Strategy::Plain, "{}", later.describe());
    let sampled_opts = AutoOptions {
        mode: SamplingMode::Sampled,
        ..opts
    };
    let sampled = auto::choose(&key, device, &sampled_opts).unwrap();
    assert_eq!(sampled.strategy, first.strategy, "{}", sampled.describe());
}

/// The server feeds every finished single-device lookahead request into the acceptance
/// statistics of its sampling mode, which later `auto` picks read.
#[test]
fn a_server_request_feeds_what_auto_learns() {
    use lade::loader::{load, LoadOptions};
    use lade::server::engine::{run, Job};
    use lade::server::Ready;
    use std::sync::atomic::AtomicBool;
    use std::sync::Arc;
    let loaded = load(&common::model_path(), &LoadOptions::default()).unwrap();
    let prompt = loaded.tokenizer.encode_prompt("def add(a, b):").unwrap();
    let ready = Ready::new(loaded, 256, DecoderKind::Plain).with_learning(true);
    // A config no other test here records.
    let cfg = LookaheadConfig::new(3, 3, 3);
    let steps = |mode| {
        let t = auto::current_table(mode);
        let e = t.entries().iter().find(|e| e.config() == cfg).cloned();
        e.expect("3,3,3 is in the shipped prior").observed_steps()
    };
    let before = (steps(SamplingMode::Greedy), steps(SamplingMode::Sampled));
    let job = |sampling: SamplingParams| Job {
        prompt: prompt.clone(),
        max_tokens: 24,
        sampling,
        stop: Vec::new(),
        ignore_eos: true,
        kind: DecoderKind::lookahead(3, 3, 3).unwrap(),
        cancel: Arc::new(AtomicBool::new(false)),
    };
    let greedy = run(&ready, &job(SamplingParams::greedy()), &mut |_| {}).unwrap();
    assert_eq!(greedy.decoder, "lookahead(3,3,3)");
    let n = greedy.generation.stats.steps;
    assert!(n > 0);
    assert_eq!(steps(SamplingMode::Greedy), before.0 + n);
    assert_eq!(steps(SamplingMode::Sampled), before.1);
    let sampling = SamplingParams {
        temperature: 0.8,
        seed: 3,
        ..SamplingParams::greedy()
    };
    let sampled = run(&ready, &job(sampling), &mut |_| {}).unwrap();
    assert_eq!(steps(SamplingMode::Greedy), before.0 + n);
    assert_eq!(
        steps(SamplingMode::Sampled),
        before.1 + sampled.generation.stats.steps
    );
    // Without learning, `auto` requests decode as decided at start-up.
    let fixed = Ready::new(
        load(&common::model_path(), &LoadOptions::default()).unwrap(),
        256,
        DecoderKind::Plain,
    );
    assert_eq!(
        fixed.pick(DecoderKind::Auto, SamplingMode::Greedy),
        DecoderKind::Plain
    );
}

/// A curve measured on one start is read back by the next (a new process: another key of the
/// in-process cache here) on the same device, model and build, without timing anything; a
/// different fingerprint measures afresh.
#[test]
fn the_next_start_reuses_the_curve_kept_on_disk() {
    let dir = std::env::temp_dir().join(format!("lade-auto-cache-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let cache = auto::CostCache::with_fingerprint(&dir, "flat mock device".into());
    let opts = AutoOptions::default();
    let key = |n: &str| format!("test-disk-{n}-{}", std::process::id());
    let first = auto::choose_cached(
        &key("first"),
        Some(&cache),
        |_| Ok(Box::new(Device::new(3000, 0, usize::MAX))),
        &opts,
    )
    .unwrap();
    let written: Vec<_> = std::fs::read_dir(&dir).unwrap().collect();
    assert_eq!(written.len(), 1, "one curve file: {written:?}");
    let again = auto::choose_cached(
        &key("second"),
        Some(&cache),
        |_| -> Result<Box<dyn CausalLm>> { panic!("measured again despite the kept curve") },
        &opts,
    )
    .unwrap();
    assert_eq!(first.strategy, again.strategy);
    assert_eq!(
        auto::cached_cost(&key("first")),
        auto::cached_cost(&key("second"))
    );
    // Another device (fingerprint): measured, and kept beside the first.
    let mut made = false;
    let other = auto::CostCache::with_fingerprint(&dir, "another device".into());
    auto::choose_cached(
        &key("third"),
        Some(&other),
        |_| {
            made = true;
            Ok(Box::new(Device::new(3000, 0, usize::MAX)))
        },
        &opts,
    )
    .unwrap();
    assert!(made);
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 2);
    let _ = std::fs::remove_dir_all(&dir);
}

/// `auto` through the one construction of decoders: measured on the source it is given (a
/// CPU-like device here: plain decoding), with the decision kept for the logs.
#[test]
fn build_resolves_auto_on_its_source() {
    use lade::tune::{AutoDecision, AutoSource};
    let source = AutoSource {
        key: format!("test-build-cpu-{}", std::process::id()),
        session: Box::new(|_| Ok(Box::new(Device::new(1000, 2000, usize::MAX)))),
        max_rows: 4096,
        cache: None,
        mode: SamplingMode::Greedy,
    };
    let env = DecoderEnv {
        auto: Some(source),
        ..DecoderEnv::bare()
    };
    let built = build(&DecoderSpec::new(DecoderKind::Auto), &env).unwrap();
    let Some(AutoDecision::Measured(choice)) = &built.auto else {
        panic!("auto is measured on the source");
    };
    assert_eq!(choice.strategy, Strategy::Plain, "{}", choice.describe());
    assert_eq!(built.spec.kind, DecoderKind::Plain);
    assert_eq!(built.decoder.name(), "plain");
    assert!(built.group.is_none());
}

/// A built lookahead decoder is the decoder its config describes: the same tokens and steps
/// as one made by hand from the composed config, and the tokens of plain decoding.
#[test]
fn a_built_lookahead_decoder_decodes_as_its_config() {
    let sampler = Sampler::new(SamplingParams::greedy()).unwrap();
    let rules = StopRules {
        max_tokens: 40,
        ..StopRules::default()
    };
    let p: Vec<u32> = (0..20).map(|i| (i * 5 + 1) % VOCAB as u32).collect();
    let run = |dec: &mut dyn Decoder| {
        let mut lm = MockLm::new(VOCAB, 512);
        lm.table = sticky;
        generate(&mut lm, dec, &sampler, &p, &rules, None, &mut |_, _| {}).unwrap()
    };
    let plain = run(&mut PlainDecoder);
    for config in [
        "lookahead:4,3,4",
        "lookahead:2,4,3-pool+ref",
        "lookahead:0,5,1-ctx",
    ] {
        let spec = DecoderSpec::parse_config(config).unwrap().with_seed(3);
        let built = build(&spec, &DecoderEnv::bare()).unwrap();
        let mut dec = built.decoder;
        let got = run(dec.as_mut());
        let cfg = spec.lookahead_config().unwrap();
        let mut by_hand = lade::decode::SpeculativeDecoder::lookahead(cfg).unwrap();
        let want = run(&mut by_hand);
        assert_eq!(got.token_ids, plain.token_ids, "{config}");
        assert_eq!(got.token_ids, want.token_ids, "{config}");
        assert_eq!(got.stats.steps, want.stats.steps, "{config}");
        assert_eq!(dec.stats_json(), by_hand.stats_json(), "{config}");
    }
}
