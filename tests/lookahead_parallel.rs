//! Lookahead Parallelism (spec a.11, invariant E16) with several host devices: the step split
//! across K replicas (one thread each, token ids over host channels) gives exactly the tokens
//! and the step count of the single-device lookahead decoder and of plain decoding, and every
//! replica's cache stays the committed sequence. Mock devices (an exact synthetic model whose
//! caches the test can read) and the real default model on K CPU sessions.

mod common;

use std::sync::{Arc, Mutex};

use common::mock::{markov2, sticky, MockLm, Table};
use lade::decode::speculative::Partition;
use lade::decode::DeviceGroup;
use lade::decode::{Decoder, LookaheadConfig, PlainDecoder, SequenceView, SpeculativeDecoder};
use lade::generate::{generate, Generation, StopRules};
use lade::model::{AttentionMask, Batch, CausalLm, Logits, WeightFormat};
use lade::sampling::{Sampler, SamplingParams};

const VOCAB: usize = 12;

/// A mock device the test can still read after the group's thread took it.
struct SharedMock(Arc<Mutex<MockLm>>);

impl SharedMock {
    fn lock(&self) -> std::sync::MutexGuard<'_, MockLm> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl CausalLm for SharedMock {
    fn forward(&mut self, batch: &Batch<'_>) -> lade::Result<Logits> {
        self.lock().forward(batch)
    }
    fn cache_len(&self) -> usize {
        self.lock().cache_len()
    }
    fn truncate(&mut self, len: usize) {
        self.lock().truncate(len)
    }
    fn keep_rows(&mut self, start: usize, rows: &[usize]) -> lade::Result<()> {
        self.lock().keep_rows(start, rows)
    }
    fn context_size(&self) -> usize {
        self.lock().context_size()
    }
    fn vocab_size(&self) -> usize {
        self.lock().vocab_size()
    }
}

fn mock(table: Table, context: usize) -> MockLm {
    let mut lm = MockLm::new(VOCAB, context);
    lm.table = table;
    lm
}

fn mock_group(k: usize, table: Table, context: usize) -> (DeviceGroup, Vec<Arc<Mutex<MockLm>>>) {
    let mocks: Vec<Arc<Mutex<MockLm>>> = (0..k)
        .map(|_| Arc::new(Mutex::new(mock(table, context))))
        .collect();
    let sessions: Vec<Box<dyn CausalLm + Send>> = mocks
        .iter()
        .map(|m| Box::new(SharedMock(m.clone())) as Box<dyn CausalLm + Send>)
        .collect();
    let group = DeviceGroup::new(sessions, vec![]).unwrap();
    (group, mocks)
}

fn rules(max_tokens: usize) -> StopRules {
    StopRules {
        max_tokens,
        ..StopRules::default()
    }
}

fn prompt(seed: u32, len: usize) -> Vec<u32> {
    (0..len as u32)
        .map(|i| (i * 7 + seed * 3 + i * i * seed) % VOCAB as u32)
        .collect()
}

fn gen(
    lm: &mut dyn CausalLm,
    dec: &mut dyn Decoder,
    p: &[u32],
    params: SamplingParams,
    max: usize,
) -> Generation {
    let sampler = Sampler::new(params).unwrap();
    generate(lm, dec, &sampler, p, &rules(max), None, &mut |_, _| {}).unwrap()
}

/// Every device's cache is a prefix of the committed sequence, and what it lacks is exactly
/// what it has still to feed.
fn check_caches(group: &DeviceGroup, mocks: &[Arc<Mutex<MockLm>>], committed: &[u32]) {
    let logical = group.cache_len();
    assert_eq!(
        logical,
        committed.len() - 1,
        "cache = committed minus pending"
    );
    for (d, (m, (len, missing))) in mocks
        .iter()
        .zip(
            group
                .device_cache_lens()
                .into_iter()
                .zip(group.device_missing()),
        )
        .enumerate()
    {
        let cache = m.lock().unwrap().cache.clone();
        assert_eq!(cache.len(), len, "device {d} length");
        assert_eq!(
            len + missing,
            logical,
            "device {d} lags by its missing tokens"
        );
        assert_eq!(
            cache[..],
            committed[..len],
            "device {d} holds the committed prefix"
        );
    }
}

/// A probe step: `last` fed at the group's length on every replica; their next-token logits.
fn probe_all(group: &mut DeviceGroup, last: u32) -> Vec<Logits> {
    let at = group.cache_len() as u32;
    group
        .forward_all(&Batch {
            tokens: &[last],
            positions: &[at],
            mask: &AttentionMask::Causal,
            logit_rows: &[0],
        })
        .unwrap()
}

const GRID: &[(usize, usize, usize)] = &[
    (1, 2, 0),
    (1, 3, 2),
    (2, 3, 4),
    (4, 3, 0),
    (5, 4, 5),
    (3, 5, 3),
    (8, 4, 8),
    (2, 2, 3),
    (6, 6, 2),
];

#[test]
fn mock_parallel_greedy_equals_single_device_and_plain_with_equal_steps() {
    let greedy = SamplingParams::greedy();
    let mut drafted = 0;
    for table in [markov2 as Table, sticky] {
        for seed in 0..3u32 {
            let p = prompt(seed, 5 + 3 * seed as usize);
            let plain = gen(&mut mock(table, 256), &mut PlainDecoder, &p, greedy, 40);
            for &(w, n, g) in GRID {
                let cfg = LookaheadConfig::new(w, n, g);
                let single = gen(
                    &mut mock(table, 256),
                    &mut SpeculativeDecoder::lookahead(cfg).unwrap(),
                    &p,
                    greedy,
                    40,
                );
                assert_eq!(single.token_ids, plain.token_ids);
                for k in [2, 3] {
                    let (mut group, mocks) = mock_group(k, table, 256);
                    let mut dec =
                        SpeculativeDecoder::lookahead_parallel(cfg, group.clone()).unwrap();
                    let par = gen(&mut group, &mut dec, &p, greedy, 40);
                    let what = format!("K={k} W={w} N={n} G={g} seed={seed}");
                    assert_eq!(par.token_ids, plain.token_ids, "{what}");
                    assert_eq!(par.stats.steps, single.stats.steps, "{what}: steps");
                    assert_eq!(par.stats.accepted_per_step, single.stats.accepted_per_step);
                    assert_eq!(dec.pool().len(), {
                        let mut d = SpeculativeDecoder::lookahead(cfg).unwrap();
                        gen(&mut mock(table, 256), &mut d, &p, greedy, 40);
                        d.pool().len()
                    });
                    for m in &mocks {
                        let f = m.lock().unwrap().forwards;
                        assert_eq!(f, par.stats.steps + 1, "{what}: one forward per step");
                    }
                    drafted += par.stats.drafted_tokens_accepted;
                }
            }
        }
    }
    assert!(drafted > 100, "drafts were accepted ({drafted})");
}

#[test]
fn mock_caches_of_all_devices_stay_the_committed_sequence_after_every_step() {
    let sampler = Sampler::new(SamplingParams::greedy()).unwrap();
    let mut lagged = 0;
    let mut non_first_winner = 0;
    for &(w, n, g, k) in &[(5, 4, 6, 2), (4, 5, 7, 3), (2, 3, 5, 3)] {
        let p = prompt(1, 9);
        let (mut group, mocks) = mock_group(k, sticky, 256);
        let mut dec =
            SpeculativeDecoder::lookahead_parallel(LookaheadConfig::new(w, n, g), group.clone())
                .unwrap();
        // The prefill as `generate` does it, then steps by hand.
        let body = &p[..p.len() - 1];
        let pos: Vec<u32> = (0..body.len() as u32).collect();
        group
            .forward(&Batch {
                tokens: body,
                positions: &pos,
                mask: &AttentionMask::Causal,
                logit_rows: &[],
            })
            .unwrap();
        dec.begin(&p).unwrap();
        let mut tokens = p.clone();
        for _ in 0..25 {
            let out = dec
                .step(
                    &mut group,
                    SequenceView {
                        tokens: &tokens,
                        prompt_len: p.len(),
                    },
                    &sampler,
                )
                .unwrap();
            tokens.extend_from_slice(&out.tokens);
            check_caches(&group, &mocks, &tokens);
            let missing = group.device_missing();
            lagged += missing.iter().filter(|&&m| m > 0).count();
            if missing.first().is_some_and(|&m| m > 0) {
                non_first_winner += 1;
            }
        }
        // A probe step: every replica gives the same logits.
        let all = probe_all(&mut group, *tokens.last().unwrap());
        for l in &all[1..] {
            assert_eq!(l, &all[0]);
        }
        assert!(group.device_missing().iter().all(|&m| m == 0));
    }
    assert!(lagged > 0, "some device had to catch up");
    assert!(
        non_first_winner > 0,
        "a winner outside device 0 was exercised"
    );
}

#[test]
fn mock_parallel_sampling_equals_plain_sampling() {
    let params = [
        SamplingParams {
            temperature: 0.8,
            seed: 3,
            ..SamplingParams::greedy()
        },
        SamplingParams {
            temperature: 1.0,
            top_k: 5,
            top_p: 0.9,
            seed: 11,
            ..SamplingParams::greedy()
        },
        // Greedy with a repetition penalty: rows are chosen on the devices, not by argmax.
        SamplingParams {
            repeat_penalty: 1.3,
            ..SamplingParams::greedy()
        },
    ];
    for sp in params {
        for seed in 0..3u32 {
            let p = prompt(seed, 7);
            let plain = gen(&mut mock(sticky, 256), &mut PlainDecoder, &p, sp, 30);
            for &(w, n, g) in &[(3, 4, 4), (1, 3, 2), (5, 3, 0)] {
                let cfg = LookaheadConfig::new(w, n, g);
                let single = gen(
                    &mut mock(sticky, 256),
                    &mut SpeculativeDecoder::lookahead(cfg).unwrap(),
                    &p,
                    sp,
                    30,
                );
                for k in [2, 3] {
                    let (mut group, _) = mock_group(k, sticky, 256);
                    let mut dec =
                        SpeculativeDecoder::lookahead_parallel(cfg, group.clone()).unwrap();
                    let par = gen(&mut group, &mut dec, &p, sp, 30);
                    assert_eq!(par.token_ids, plain.token_ids, "K={k} {w},{n},{g} {sp:?}");
                    assert_eq!(par.stats.steps, single.stats.steps);
                }
            }
        }
    }
}

#[test]
fn mock_parallel_near_the_context_limit_falls_back_like_one_device() {
    let greedy = SamplingParams::greedy();
    let p = prompt(2, 6);
    for context in [12, 20, 33] {
        let cfg = LookaheadConfig::new(4, 4, 4);
        let single = gen(
            &mut mock(sticky, context),
            &mut SpeculativeDecoder::lookahead(cfg).unwrap(),
            &p,
            greedy,
            100,
        );
        let (mut group, mocks) = mock_group(3, sticky, context);
        let mut dec = SpeculativeDecoder::lookahead_parallel(cfg, group.clone()).unwrap();
        let par = gen(&mut group, &mut dec, &p, greedy, 100);
        assert_eq!(par.token_ids, single.token_ids, "context {context}");
        assert_eq!(par.stats.steps, single.stats.steps);
        assert!(par.hit_context_limit);
        let committed = [p.clone(), par.token_ids.clone()].concat();
        check_caches(&group, &mocks, &committed);
    }
}

#[test]
fn parallel_decoder_decodes_its_own_device_group_and_the_partition_is_exact() {
    let sampler = Sampler::new(SamplingParams::greedy()).unwrap();
    let p = prompt(0, 5);
    let mut lm = mock(markov2, 64);
    let (group, _) = mock_group(3, markov2, 64);
    let mut dec =
        SpeculativeDecoder::lookahead_parallel(LookaheadConfig::new(3, 3, 3), group).unwrap();
    let err = generate(
        &mut lm,
        &mut dec,
        &sampler,
        &p,
        &rules(5),
        None,
        &mut |_, _| {},
    )
    .unwrap_err();
    assert!(err.to_string().contains("device group"), "{err}");

    // Every column and every candidate belongs to exactly one device, in order.
    for cols in 0..12 {
        for cands in 0..12 {
            for k in 1..6 {
                let part = Partition::new(cols, cands, k);
                for j in 0..cols {
                    let owners = part.outputs.iter().filter(|r| r.contains(&j)).count();
                    assert_eq!(owners, 1);
                }
                for c in 0..cands {
                    let owners = part.drafts.iter().filter(|r| r.contains(&c)).count();
                    assert_eq!(owners, 1);
                }
                assert_eq!(part.outputs.iter().map(|r| r.len()).sum::<usize>(), cols);
                assert_eq!(part.drafts.iter().map(|r| r.len()).sum::<usize>(), cands);
            }
        }
    }
}

/// The real default model on K CPU sessions (one thread each) against one session.
fn real_model_equality(format: WeightFormat, grid: &[(usize, usize, usize)], tokens: usize) {
    let model = common::model(format);
    let prompts: Vec<Vec<u32>> =
        ["def fibonacci(n):\n    \"\"\"Return the n-th Fibonacci number.\"\"\"\n"]
            .iter()
            .map(|t| model.tokenizer.encode(t, true).unwrap())
            .collect();
    let greedy = SamplingParams::greedy();
    for p in &prompts {
        let mut one = model.new_session(512).unwrap();
        let plain = gen(one.as_mut(), &mut PlainDecoder, p, greedy, tokens);
        for &(w, n, g) in grid {
            let cfg = LookaheadConfig::new(w, n, g);
            let single = gen(
                one.as_mut(),
                &mut SpeculativeDecoder::lookahead(cfg).unwrap(),
                p,
                greedy,
                tokens,
            );
            assert_eq!(
                single.token_ids, plain.token_ids,
                "{format:?} single {w},{n},{g}"
            );
            for k in [2, 3] {
                let sessions = (0..k).map(|_| model.new_session(512).unwrap()).collect();
                let mut group = DeviceGroup::new(sessions, vec![]).unwrap();
                let mut dec = SpeculativeDecoder::lookahead_parallel(cfg, group.clone()).unwrap();
                let par = gen(&mut group, &mut dec, p, greedy, tokens);
                let what = format!("{format:?} K={k} {w},{n},{g}");
                assert_eq!(par.token_ids, plain.token_ids, "{what}");
                assert_eq!(par.stats.steps, single.stats.steps, "{what}: steps");
                // Probe: every replica's cache gives the same next-token logits.
                let all = probe_all(&mut group, *par.token_ids.last().unwrap());
                for (d, l) in all.iter().enumerate().skip(1) {
                    let diff = common::max_abs_diff(l.row(0), all[0].row(0));
                    assert!(diff < 1e-3, "{what}: device {d} differs by {diff}");
                    assert_eq!(common::argmax(l.row(0)), common::argmax(all[0].row(0)));
                }
            }
        }
    }
}

#[test]
fn real_model_parallel_equals_single_device_default_dtype() {
    // (1, 3, 2): fewer window columns than devices.
    real_model_equality(WeightFormat::Auto, &[(4, 3, 4), (1, 3, 2)], 16);
}

#[test]
fn real_model_parallel_equals_single_device_f32() {
    real_model_equality(WeightFormat::F32, &[(3, 4, 3)], 12);
}
