//! Prompt lookup decoding (the first row of the lookahead paper's ablation) against the exact
//! mock model: the output equals plain decoding (greedy and seeded sampling), and every step
//! feeds only `t0` and continuations of `t0` found in the prompt and output so far.

mod common;

use common::mock::{markov2, sticky, MockLm, Table};
use common::record::Recorder;
use lade::decode::{Decoder, PlainDecoder, PromptLookupConfig, SpeculativeDecoder};
use lade::generate::{generate, Generation, StopRules};
use lade::model::CausalLm;
use lade::sampling::{Sampler, SamplingParams};

const VOCAB: usize = 12;

fn prompt(seed: u32, len: usize) -> Vec<u32> {
    (0..len as u32)
        .map(|i| (i * 3 + seed * 5 + i * i * seed) % VOCAB as u32)
        .collect()
}

fn run(
    lm: &mut dyn CausalLm,
    dec: &mut dyn Decoder,
    p: &[u32],
    params: SamplingParams,
    max_tokens: usize,
) -> Generation {
    let rules = StopRules {
        max_tokens,
        ..StopRules::default()
    };
    let sampler = Sampler::new(params).unwrap();
    generate(lm, dec, &sampler, p, &rules, None, &mut |_, _| {}).unwrap()
}

fn mock(table: Table, context: usize) -> MockLm {
    let mut lm = MockLm::new(VOCAB, context);
    lm.table = table;
    lm
}

#[test]
fn equals_plain_decoding_greedy_and_sampled() {
    let mut best = 0f64;
    let settings = [
        SamplingParams::greedy(),
        SamplingParams {
            temperature: 0.8,
            seed: 3,
            ..SamplingParams::greedy()
        },
        SamplingParams {
            temperature: 1.0,
            top_k: 4,
            seed: 9,
            ..SamplingParams::greedy()
        },
    ];
    for table in [markov2 as Table, sticky as Table] {
        for params in settings {
            for s in 0..5 {
                let p = prompt(s, 6 + 3 * s as usize);
                let plain = run(&mut mock(table, 512), &mut PlainDecoder, &p, params, 70);
                for (n, g) in [(2, 1), (2, 4), (3, 3), (4, 8), (5, 15), (4, 0)] {
                    let cfg = PromptLookupConfig::new(n, g);
                    let mut dec = SpeculativeDecoder::prompt_lookup(cfg).unwrap();
                    let out = run(&mut mock(table, 512), &mut dec, &p, params, 70);
                    assert_eq!(out.token_ids, plain.token_ids, "N={n} G={g} {params:?}");
                    assert!(
                        out.stats.accepted_per_step.len() <= n + 1,
                        "at most N per step"
                    );
                    if g == 0 {
                        assert_eq!(out.stats.compression, 1.0);
                    }
                    best = best.max(out.stats.compression);
                }
            }
        }
    }
    assert!(best > 1.5, "drafts were hardly accepted (best {best:.2})");
}

#[test]
fn candidates_are_continuations_of_t0_in_the_committed_text() {
    let (n, g) = (4, 3);
    let p = prompt(2, 20);
    let mut rec = Recorder::new(sticky, VOCAB, 512);
    let mut dec = SpeculativeDecoder::prompt_lookup(PromptLookupConfig::new(n, g)).unwrap();
    let out = run(&mut rec, &mut dec, &p, SamplingParams::greedy(), 60);
    let seq: Vec<u32> = [&p[..], &out.token_ids].concat();
    // The first pass is the prefill; every later one is a step.
    let mut with_candidates = 0;
    for pass in &rec.passes[1..] {
        let committed = &seq[..pass.past + 1];
        let t0 = committed[committed.len() - 1];
        let p0 = pass.past as u32;
        assert_eq!(pass.positions[0], p0);
        assert_eq!(pass.tokens[0], t0, "row 0 is the pending token");
        // No window: every other row is a candidate token at p+1 .. p+N-1.
        let q = pass.tokens.len();
        assert_eq!((q - 1) % (n - 1), 0);
        let c = (q - 1) / (n - 1);
        assert!(c <= g);
        // The continuations of t0 in the committed text (n-grams starting with t0).
        let mut conts: Vec<Vec<u32>> = Vec::new();
        for w in committed.windows(n) {
            if w[0] == t0 && !conts.contains(&w[1..].to_vec()) {
                conts.push(w[1..].to_vec());
            }
        }
        let fed: Vec<Vec<u32>> = (0..q)
            .filter(|&r| pass.positions[r] == p0 + n as u32 - 1)
            .map(|r| pass.chain(r))
            .collect();
        assert_eq!(fed.len(), c);
        for chain in &fed {
            assert_eq!(chain[0], t0);
            assert!(
                conts.contains(&chain[1..].to_vec()),
                "{chain:?} is no n-gram of the text"
            );
        }
        if conts.len() <= g {
            assert_eq!(c, conts.len(), "every continuation is verified");
        }
        with_candidates += usize::from(c > 0);
    }
    assert!(
        with_candidates > 10,
        "{with_candidates} steps had candidates"
    );
}

#[test]
fn lookahead_without_a_window_is_prompt_lookup_plus_the_context_match() {
    // W = 0 without the context match runs the same steps as the prompt lookup decoder (an
    // independent implementation of that step); with it, the same tokens in no more steps
    // here, where the output repeats itself.
    use lade::decode::LookaheadConfig;
    let mut fewer = 0;
    for table in [markov2 as Table, sticky as Table] {
        for s in 0..5 {
            let p = prompt(s, 6 + 3 * s as usize);
            let plain = run(
                &mut mock(table, 512),
                &mut PlainDecoder,
                &p,
                SamplingParams::greedy(),
                70,
            );
            for (n, g) in [(2, 1), (3, 3), (8, 1), (5, 15)] {
                let pld_cfg = PromptLookupConfig::new(n, g);
                let pld = run(
                    &mut mock(table, 512),
                    &mut SpeculativeDecoder::prompt_lookup(pld_cfg).unwrap(),
                    &p,
                    SamplingParams::greedy(),
                    70,
                );
                let mut steps = Vec::new();
                for ctx in [false, true] {
                    let mut cfg = LookaheadConfig::new(0, n, g);
                    cfg.switches.context_match = ctx;
                    let out = run(
                        &mut mock(table, 512),
                        &mut SpeculativeDecoder::lookahead(cfg).unwrap(),
                        &p,
                        SamplingParams::greedy(),
                        70,
                    );
                    assert_eq!(out.token_ids, plain.token_ids, "0,{n},{g} ctx={ctx}");
                    steps.push(out.stats.steps);
                }
                assert_eq!(
                    steps[0], pld.stats.steps,
                    "0,{n},{g} = prompt-lookup:{n},{g}"
                );
                fewer += usize::from(steps[1] < steps[0]);
            }
        }
    }
    assert!(fewer > 0, "the context match never helped");
}
