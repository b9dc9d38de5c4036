//! Spec invariants of Lookahead Decoding checked step by step against the exact mock model
//! (`../shared/spec/algorithm.md`, section e): E2 (y0), E3 (each accepted token is the
//! model's choice at the row of its draft prefix), E6 (batch size), E7 (the cache after a
//! step is exactly the committed prefix, including steps won by a later candidate and steps
//! where no candidate matched), E8 (pool: harvest of at most W n-grams per step, each a
//! column of the window plus the new top token; candidates are the entries under `t0`; shape
//! of every stored value), E9 (warm-up and window shift), E11 (acceptance rate of sampled
//! verification = the probability mass of the distinct draft tokens) and E15 (ids at both
//! ends of the vocabulary); with the context match on, the candidates are its continuation
//! (found by scanning the committed text) followed by the pool's values.
//!
//! Every oracle here is computed from the mock's table and the spec's definitions, never from
//! the decoder's own helpers.

mod common;

use std::collections::HashSet;

use common::mock::{markov2, sticky, MockLm, Table};
use common::record::Recorder;
use lade::decode::lookahead::JacobiWindow;
use lade::decode::{Decoder, LookaheadConfig, PlainDecoder, SequenceView, SpeculativeDecoder};
use lade::generate::{generate, StopRules};
use lade::model::{Batch, CausalLm};
use lade::sampling::{argmax, Sampler, SamplingParams};

const VOCAB: usize = 12;

fn greedy() -> Sampler {
    Sampler::new(SamplingParams::greedy()).unwrap()
}

fn prompt(seed: u32, len: usize) -> Vec<u32> {
    (0..len as u32)
        .map(|i| (i * 5 + seed * 7 + i * i * (seed + 1)) % VOCAB as u32)
        .collect()
}

/// Every (key, value) of the pool.
fn pool_entries(dec: &SpeculativeDecoder) -> Vec<(u32, Vec<u32>)> {
    (0..VOCAB as u32)
        .flat_map(|k| dec.pool().get(k).iter().map(move |v| (k, v.clone())))
        .collect()
}

/// The context-matched candidate from its definition: the `arity` tokens after the latest
/// earlier end of the sequence's last 3 tokens (else its last 2) whose continuation is
/// committed.
fn context_candidate(seq: &[u32], arity: usize) -> Option<Vec<u32>> {
    let len = seq.len();
    for k in (2..=3.min(len)).rev() {
        let tail = &seq[len - k..];
        for end in (k - 1..len.saturating_sub(arity)).rev() {
            if &seq[end + 1 - k..=end] == tail {
                return Some(seq[end + 1..=end + arity].to_vec());
            }
        }
    }
    None
}

/// A step's candidates: the pool's values under `t0` once warm (oldest first), led by the
/// context match when on and found (each once, the oldest pool value dropped beyond G).
fn expected_candidates(
    cfg: &LookaheadConfig,
    seq: &[u32],
    pool: &[Vec<u32>],
    warm: bool,
) -> Vec<Vec<u32>> {
    let mut pool: Vec<Vec<u32>> = if warm { pool.to_vec() } else { Vec::new() };
    let found = if cfg.switches.context_match && cfg.guesses > 0 {
        context_candidate(seq, cfg.ngram - 1)
    } else {
        None
    };
    let Some(m) = found else { return pool };
    pool.retain(|v| *v != m);
    while pool.len() + 1 > cfg.guesses {
        pool.remove(0);
    }
    std::iter::once(m).chain(pool).collect()
}

/// The window after one step per spec a.6, written from the definition.
fn shifted(before: &JacobiWindow, new_top: &[u32], depth: usize) -> Vec<Vec<u32>> {
    let levels = before.levels();
    if levels.len() < depth {
        // Warm-up: every level drops its first token; the new top level minus its first.
        let mut out: Vec<Vec<u32>> = levels.iter().map(|l| l[1..].to_vec()).collect();
        out.push(new_top[1..].to_vec());
        out
    } else if depth == 1 {
        vec![new_top[1..].to_vec()]
    } else {
        // L0 = L1[1..], Ll = L(l+1), top = new_top.
        let mut out = vec![levels[1][1..].to_vec()];
        out.extend(levels[2..].iter().cloned());
        out.push(new_top.to_vec());
        out
    }
}

/// Coverage counters of [`check_steps`], to keep the tests from passing vacuously.
#[derive(Debug, Default)]
struct Seen {
    steps_with_candidates: usize,
    multi_token_steps: usize,
    later_candidate_won: usize,
    nothing_matched: usize,
    harvested: usize,
    context_matched: usize,
}

/// Runs `steps` greedy steps of `cfg` on `table` and checks E2, E3, E6, E7, E8 and E9 after
/// each one.
fn check_steps(table: Table, cfg: LookaheadConfig, p: &[u32], steps: usize, seen: &mut Seen) {
    let (w, n, g) = (cfg.window, cfg.ngram, cfg.guesses);
    let depth = n - 1;
    let mut rec = Recorder::new(table, VOCAB, 4096);
    let mut dec = SpeculativeDecoder::lookahead(cfg).unwrap();
    dec.begin(p).unwrap();
    // Prefill all but the last prompt token.
    let positions: Vec<u32> = (0..p.len() as u32 - 1).collect();
    if p.len() > 1 {
        rec.lm
            .forward(&Batch {
                tokens: &p[..p.len() - 1],
                positions: &positions,
                mask: &lade::model::AttentionMask::Causal,
                logit_rows: &[],
            })
            .unwrap();
    }
    let mut seq = p.to_vec();
    let mut warm_up_steps = 0;
    for step in 0..steps {
        let pending = *seq.last().unwrap();
        let before = dec.window().unwrap().clone();
        let pool_before = pool_entries(&dec);
        let candidates = expected_candidates(&cfg, &seq, dec.pool().get(pending), before.is_warm());
        let cached = rec.cache_len();
        assert_eq!(cached, seq.len() - 1, "E7: cache = committed prefix");
        let out = dec
            .step(
                &mut rec,
                SequenceView {
                    tokens: &seq,
                    prompt_len: p.len(),
                },
                &greedy(),
            )
            .unwrap();
        let pass = rec.passes.last().unwrap().clone();
        let ctx = format!("W={w} N={n} G={g} step {step}");
        assert_eq!(pass.past, cached);

        // E2: y0 is the plain greedy choice on the committed prefix.
        assert_eq!(out.tokens[0], argmax(&table(&seq, VOCAB)), "E2 {ctx}");

        // E6 / E8 / E9: batch size, candidates, warm-up.
        let warm = before.is_warm();
        let cols = before.columns();
        let window_rows = cols + (before.num_levels() - 1) * cols;
        if warm {
            assert_eq!(cols, w, "E9: W columns after warm-up {ctx}");
            let c = candidates.len();
            assert!(c <= g, "E8: at most G candidates");
            assert_eq!(pass.tokens.len(), (w + c) * (n - 1), "E6 {ctx}");
            seen.steps_with_candidates += usize::from(c > 0);
        } else {
            warm_up_steps += 1;
            // No pool candidates in warm-up; the context match may already offer one.
            assert_eq!(
                pass.tokens.len(),
                window_rows + candidates.len() * (n - 1),
                "E9: no pool candidates in warm-up {ctx}"
            );
            if candidates.is_empty() {
                assert_eq!(out.tokens.len(), 1, "E9: one token per warm-up step");
            }
        }
        // Each candidate under t0 is fed as its own chain t0, v0, .., v(N-2).
        for cand in &candidates {
            let want: Vec<u32> = std::iter::once(pending).chain(cand.clone()).collect();
            assert!(
                (0..pass.tokens.len()).any(|r| pass.chain(r) == want),
                "E8: candidate {cand:?} under {pending} not fed {ctx}"
            );
        }
        seen.context_matched += usize::from(cfg.switches.context_match && !candidates.is_empty());

        // E3: y_i (i >= 1) is the argmax at a row whose chain is t0, y0, .., y(i-1).
        let k = out.tokens.len() - 1;
        assert!(k < n, "E3: at most N tokens");
        assert_eq!(out.from_draft, k);
        for i in 1..=k {
            let want: Vec<u32> = std::iter::once(pending)
                .chain(out.tokens[..i].iter().copied())
                .collect();
            let ok = pass.logit_rows.iter().enumerate().any(|(li, &r)| {
                pass.chain(r) == want && argmax(pass.logits.row(li)) == out.tokens[i]
            });
            assert!(ok, "E3: token {i} of {:?} not verified {ctx}", out.tokens);
        }
        // Which candidate won: the first with the longest verified prefix.
        if !candidates.is_empty() {
            let matched = |cand: &Vec<u32>| {
                (0..cand.len())
                    .take_while(|&i| cand[i] == out.tokens[i] && i < k)
                    .count()
            };
            let lens: Vec<usize> = candidates.iter().map(matched).collect();
            assert_eq!(*lens.iter().max().unwrap(), k, "E3: longest prefix wins");
            let winner = lens.iter().position(|&l| l == k).unwrap();
            if k == 0 {
                seen.nothing_matched += 1;
            } else if winner > 0 {
                seen.later_candidate_won += 1;
            }
        }
        seen.multi_token_steps += usize::from(k > 0);

        // The new top level, from the mock's table along each column's chain.
        let prefix = &seq[..seq.len() - 1];
        let levels_now = before.num_levels();
        let new_top: Vec<u32> = (0..cols)
            .map(|j| {
                let mut c = prefix.to_vec();
                c.extend((0..=j).map(|i| before.token(0, i, pending)));
                c.extend((1..levels_now).map(|l| before.token(l, j, pending)));
                argmax(&table(&c, VOCAB))
            })
            .collect();
        // E9: the shift of spec a.6.
        let after = dec.window().unwrap();
        assert_eq!(
            after.levels(),
            &shifted(&before, &new_top, depth)[..],
            "E9 {ctx}"
        );

        // E8: the harvest. Without prompt n-grams the pool only gains window n-grams.
        let pool_after = pool_entries(&dec);
        let before_set: HashSet<(u32, Vec<u32>)> = pool_before.into_iter().collect();
        let new: Vec<&(u32, Vec<u32>)> = pool_after
            .iter()
            .filter(|e| !before_set.contains(*e))
            .collect();
        let expected: Vec<(u32, Vec<u32>)> = if warm {
            (0..w)
                .map(|j| {
                    let key = before.token(0, j, pending);
                    let mut v: Vec<u32> = (1..depth).map(|l| before.token(l, j, pending)).collect();
                    v.push(new_top[j]);
                    (key, v)
                })
                .collect()
        } else {
            Vec::new()
        };
        if !cfg.switches.pool_from_prompt {
            assert!(new.len() <= w, "E8: at most W new n-grams per step {ctx}");
            for e in &new {
                assert!(expected.contains(e), "E8: {e:?} is no column of {ctx}");
            }
            if g >= w {
                // No eviction can hit this step's own n-grams: all of them are stored.
                for e in &expected {
                    assert!(pool_after.contains(e), "E8: {e:?} missing {ctx}");
                }
            }
            seen.harvested += new.len();
        }
        for (key, _) in &pool_after {
            let vals = dec.pool().get(*key);
            assert!(vals.len() <= g, "E8: at most G values per key");
            let distinct: HashSet<&Vec<u32>> = vals.iter().collect();
            assert_eq!(distinct.len(), vals.len(), "E8: no duplicate under a key");
            assert!(vals.iter().all(|v| v.len() == n - 1), "E8: N-1 tokens");
        }

        seq.extend(&out.tokens);
        // E7: exactly the committed prefix stays cached (the mock caches token ids, so a
        // window or rejected-candidate entry would show).
        assert_eq!(rec.lm.cache, seq[..seq.len() - 1], "E7 {ctx}");
    }
    assert_eq!(
        warm_up_steps,
        n - 2,
        "E9: N-2 warm-up steps (prefill excluded)"
    );
}

#[test]
fn every_step_follows_the_spec() {
    let mut seen = Seen::default();
    for &(w, n, g) in &[
        (1, 2, 3),
        (4, 3, 4),
        (5, 4, 5),
        (6, 4, 2),
        (7, 5, 7),
        (3, 6, 5),
    ] {
        for (pool, context) in [(false, false), (true, false), (false, true), (true, true)] {
            for (s, table) in [(0u32, markov2 as Table), (1, sticky as Table)] {
                let mut cfg = LookaheadConfig::new(w, n, g);
                cfg.switches.pool_from_prompt = pool;
                cfg.switches.context_match = context;
                check_steps(table, cfg, &prompt(s + w as u32, 14), 60, &mut seen);
            }
        }
    }
    eprintln!("{seen:?}");
    assert!(seen.multi_token_steps > 50, "{seen:?}");
    assert!(seen.later_candidate_won > 0, "{seen:?}");
    assert!(seen.nothing_matched > 0, "{seen:?}");
    assert!(seen.harvested > 100, "{seen:?}");
    assert!(seen.context_matched > 50, "{seen:?}");
}

/// Exact probability that a sampled step commits 1, 2 or 3 tokens, from the candidates and
/// the sampler's distribution: position 1 accepts when y0 is among the distinct first draft
/// tokens, position 2 when y1 is among the distinct second tokens of the drafts starting
/// with y0.
fn acceptance_law(table: Table, sampler: &Sampler, ctx: &[u32], cands: &[Vec<u32>]) -> [f64; 3] {
    let dist = |c: &[u32]| sampler.distribution(&table(c, VOCAB), c);
    let firsts: HashSet<u32> = cands.iter().map(|c| c[0]).collect();
    let (mut two, mut three) = (0f64, 0f64);
    for (d, pd) in dist(ctx) {
        if !firsts.contains(&d) {
            continue;
        }
        let seconds: HashSet<u32> = cands.iter().filter(|c| c[0] == d).map(|c| c[1]).collect();
        let c1 = [ctx, &[d]].concat();
        let pe: f64 = dist(&c1)
            .into_iter()
            .filter(|(e, _)| seconds.contains(e))
            .map(|(_, p)| p as f64)
            .sum();
        two += pd as f64 * (1.0 - pe);
        three += pd as f64 * pe;
    }
    [1.0 - two - three, two, three]
}

#[test]
fn sampled_acceptance_rate_is_the_mass_of_the_distinct_draft_tokens() {
    // E11: N = 3; the warm-up step runs greedily (same state for every seed), then one
    // sampled step with the prompt's n-grams under t0 as candidates; over 20,000 seeds the
    // frequency of 1, 2 and 3 committed tokens must fit the exact law (chi-square, p = 0.001).
    let table = sticky as Table;
    let p: Vec<u32> = vec![3, 4, 5, 9, 4, 6, 2, 4, 5, 7, 4, 5, 6, 1, 3];
    for (temperature, top_p) in [(1.0f32, 1.0f32), (0.7, 0.9)] {
        let mut counts = [0usize; 3];
        let mut law = None;
        let runs = 20_000;
        for seed in 0..runs {
            let mut lm = MockLm::new(VOCAB, 256);
            lm.table = table;
            let mut cfg = LookaheadConfig::new(2, 3, 8);
            cfg.seed = 5;
            let mut dec = SpeculativeDecoder::lookahead(cfg).unwrap();
            let rules = StopRules {
                max_tokens: 1,
                ..StopRules::default()
            };
            // Warm-up step: prefill + one greedy step.
            let first = generate(
                &mut lm,
                &mut dec,
                &greedy(),
                &p,
                &rules,
                None,
                &mut |_, _| {},
            )
            .unwrap();
            let seq: Vec<u32> = [&p[..], &first.token_ids].concat();
            assert_eq!(lm.cache_len(), seq.len() - 1);
            assert!(dec.window().unwrap().is_warm());
            let sampler = Sampler::new(SamplingParams {
                temperature,
                top_p,
                seed,
                ..SamplingParams::greedy()
            })
            .unwrap();
            let pending = *seq.last().unwrap();
            if law.is_none() {
                let cands = expected_candidates(&cfg, &seq, dec.pool().get(pending), true);
                law = Some(acceptance_law(table, &sampler, &seq, &cands));
            }
            let out = dec
                .step(
                    &mut lm,
                    SequenceView {
                        tokens: &seq,
                        prompt_len: p.len(),
                    },
                    &sampler,
                )
                .unwrap();
            counts[out.tokens.len() - 1] += 1;
        }
        let law = law.unwrap();
        assert!(
            law[1] > 0.05 && law[2] > 0.05,
            "drafts must be accepted, and the second draft rejected, sometimes: {law:?}"
        );
        let mut chi2 = 0f64;
        let mut cells = 0;
        for i in 0..3 {
            let e = law[i] * runs as f64;
            if e == 0.0 {
                assert_eq!(counts[i], 0, "an impossible outcome happened: {counts:?}");
                continue;
            }
            chi2 += (counts[i] as f64 - e).powi(2) / e;
            cells += 1;
        }
        // P(chi2 > x) = 0.001 for 1 and 2 degrees of freedom.
        let crit = if cells == 3 { 13.82 } else { 10.83 };
        assert!(
            chi2 < crit,
            "T={temperature} top_p={top_p}: counts {counts:?} vs law {law:?} (chi2 {chi2:.1})"
        );
        eprintln!("T={temperature} top_p={top_p}: counts {counts:?} law {law:?} chi2 {chi2:.2}");
    }
}

/// A table that keeps jumping between the first and the last id of the vocabulary.
fn extremes(ctx: &[u32], vocab: usize) -> Vec<f32> {
    let last = ctx.last().copied().unwrap_or(0) as usize;
    let mut l: Vec<f32> = markov2(ctx, vocab).iter().map(|x| x * 0.4).collect();
    let target = if last % 3 == 0 { vocab - 1 } else { 0 };
    l[target] += 3.0;
    l
}

#[test]
fn token_ids_at_both_ends_of_the_vocabulary() {
    // E15: ids 0 and V-1 in the prompt, as drafts and as outputs.
    let p: Vec<u32> = vec![0, 11, 0, 5, 11, 11, 0, 3, 11];
    let rules = StopRules {
        max_tokens: 60,
        ..StopRules::default()
    };
    let run = |dec: &mut dyn Decoder| {
        let mut lm = MockLm::new(VOCAB, 512);
        lm.table = extremes;
        generate(&mut lm, dec, &greedy(), &p, &rules, None, &mut |_, _| {}).unwrap()
    };
    let plain = run(&mut PlainDecoder);
    assert!(plain.token_ids.contains(&0) && plain.token_ids.contains(&(VOCAB as u32 - 1)));
    let mut drafted = 0;
    for &(w, n, g) in &[(3, 3, 3), (5, 4, 5), (1, 2, 4)] {
        let la = run(&mut SpeculativeDecoder::lookahead(LookaheadConfig::new(w, n, g)).unwrap());
        assert_eq!(la.token_ids, plain.token_ids, "W={w} N={n} G={g}");
        drafted += la.stats.drafted_tokens_accepted;
    }
    assert!(
        drafted > 10,
        "drafts of extreme ids were accepted {drafted} times"
    );
}
