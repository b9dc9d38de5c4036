//! The forward pass built for speculation: batching, rollback and branch keeping must not change
//! a single bit of the logits on CPU; the CPU attention agrees with an f64 softmax and gives a
//! row of a step what it gives alone.

mod common;

use candle_core::{Device, Tensor};
use common::attention_case::{
    first_difference, relative_error, AttentionData, Rng, ATTENTION_HEADS, ATTENTION_STEPS,
};
use lade::model::attention::{attend_cpu, visible_keys};
use lade::model::{AttentionMask, Batch, CausalLm, Session, WeightFormat};

const PROMPT: [u32; 12] = [1, 4093, 198, 19556, 905, 17, 504, 713, 216, 34, 32, 2];

fn session(format: WeightFormat) -> Session {
    Session::new(common::model(format).model.clone(), 256).unwrap()
}

fn causal(s: &mut Session, tokens: &[u32]) -> Vec<Vec<f32>> {
    common::causal(s, tokens, true)
}

fn batched_equals_single_steps(format: WeightFormat) {
    let mut batched = session(format);
    let all = causal(&mut batched, &PROMPT);
    let mut single = session(format);
    for (i, &t) in PROMPT.iter().enumerate() {
        let one = causal(&mut single, &[t]);
        assert_eq!(
            one[0], all[i],
            "{format:?}: row {i} differs between batched and single"
        );
    }
    assert_eq!(batched.cache_len(), PROMPT.len());
}

#[test]
fn k_tokens_in_one_call_equal_k_single_calls_q8() {
    batched_equals_single_steps(WeightFormat::Auto);
}

#[test]
fn k_tokens_in_one_call_equal_k_single_calls_f32() {
    batched_equals_single_steps(WeightFormat::F32);
}

#[test]
fn truncate_then_recompute_equals_original() {
    let mut s = session(WeightFormat::Auto);
    let first = causal(&mut s, &PROMPT);
    s.truncate(5);
    assert_eq!(s.cache_len(), 5);
    // Overwrite the forgotten slots with different tokens, roll back again, recompute.
    causal(&mut s, &[7, 8, 9, 10]);
    s.truncate(5);
    let again = causal(&mut s, &PROMPT[5..]);
    for (i, row) in again.iter().enumerate() {
        assert_eq!(row, &first[5 + i], "row {} after rollback", 5 + i);
    }
}

#[test]
fn keeping_a_branch_equals_a_fresh_causal_forward() {
    // Feed the prefix, then a block of 6 tokens where rows 0, 2, 3 form one chain (tree mask),
    // keep those rows, decode one more token, and compare with a plain causal run over
    // prefix + [b0, b2, b3] + next.
    let prefix = &PROMPT[..6];
    let block = [504u32, 11, 713, 216, 22, 33];
    let chain = [0usize, 2, 3];
    let mut s = session(WeightFormat::Auto);
    causal(&mut s, prefix);
    let p = prefix.len() as u32;
    // Row i sees the rows of its own chain position; non-chain rows see only themselves.
    let q = block.len();
    let mut visible = vec![false; q * q];
    for i in 0..q {
        visible[i * q + i] = true;
    }
    for (ci, &r) in chain.iter().enumerate() {
        for &earlier in &chain[..ci] {
            visible[r * q + earlier] = true;
        }
    }
    let positions = [p, p + 1, p + 1, p + 2, p + 1, p + 1];
    let rows: Vec<usize> = (0..q).collect();
    let tree = s
        .forward(&Batch {
            tokens: &block,
            positions: &positions,
            mask: &AttentionMask::Block { q, visible },
            logit_rows: &rows,
        })
        .unwrap();
    s.keep_rows(prefix.len(), &chain).unwrap();
    assert_eq!(s.cache_len(), prefix.len() + chain.len());
    let next = causal(&mut s, &[905]);

    let mut fresh = session(WeightFormat::Auto);
    let mut seq = prefix.to_vec();
    seq.extend(chain.iter().map(|&r| block[r]));
    seq.push(905);
    let reference = causal(&mut fresh, &seq);
    for (ci, &r) in chain.iter().enumerate() {
        assert_eq!(
            tree.row(r),
            &reference[prefix.len() + ci][..],
            "chain row {r}"
        );
    }
    assert_eq!(
        next[0],
        reference[seq.len() - 1],
        "token after the kept branch"
    );
}

#[test]
fn forward_rejects_bad_batches_without_panicking() {
    let mut s = session(WeightFormat::Auto);
    let vocab = s.vocab_size() as u32;
    let bad_token = s.forward(&Batch {
        tokens: &[vocab],
        positions: &[0],
        mask: &AttentionMask::Causal,
        logit_rows: &[0],
    });
    assert!(bad_token.is_err());
    let bad_row = s.forward(&Batch {
        tokens: &[1],
        positions: &[0],
        mask: &AttentionMask::Causal,
        logit_rows: &[1],
    });
    assert!(bad_row.is_err());
    let too_far = s.forward(&Batch {
        tokens: &[1],
        positions: &[1_000_000],
        mask: &AttentionMask::Causal,
        logit_rows: &[0],
    });
    assert!(too_far.is_err());
    assert_eq!(s.cache_len(), 0, "failed forwards leave the cache alone");
}

/// `attend_cpu` on a case: (rows, heads * head dim).
fn cpu_attention(d: &AttentionData) -> Vec<f32> {
    let (nh, nkv, hd) = d.heads;
    let keys = d.past + d.rows;
    // q: (heads, rows, head dim)
    let mut q = vec![0f32; nh * d.rows * hd];
    for i in 0..d.rows {
        for h in 0..nh {
            q[(h * d.rows + i) * hd..][..hd].copy_from_slice(&d.q[(i * nh + h) * hd..][..hd]);
        }
    }
    let cpu = Device::Cpu;
    let q = Tensor::from_vec(q, (nh, d.rows, hd), &cpu).unwrap();
    let k = Tensor::from_vec(d.k.clone(), (nkv, keys, hd), &cpu).unwrap();
    let v = Tensor::from_vec(d.v.clone(), (nkv, keys, hd), &cpu).unwrap();
    let rows = visible_keys(&d.mask, d.past, d.rows);
    attend_cpu(&q, &k, &v, &rows, nkv)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap()
}

#[test]
fn cpu_attention_agrees_with_an_f64_softmax() {
    let mut rng = Rng::new(0xc9a7_7e11);
    for heads in ATTENTION_HEADS {
        let (nh, _, hd) = heads;
        for (past, rows, kind) in ATTENTION_STEPS {
            let d = AttentionData::random(&mut rng, heads, past, rows, kind);
            let got = cpu_attention(&d);
            for i in 0..rows {
                let head = rng.below(nh);
                let want = d.reference(i, head);
                let rel = relative_error(&got[(i * nh + head) * hd..][..hd], &want);
                assert!(
                    rel < 1e-5,
                    "{heads:?}, {past} cached, {rows} rows ({kind:?}): row {i} head {head} \
                     relative error {rel:e} against the f64 softmax"
                );
            }
        }
    }
}

#[test]
fn cpu_attention_gives_a_row_in_a_step_what_it_gives_alone() {
    let mut rng = Rng::new(0x5eed_c9a7);
    for heads in ATTENTION_HEADS {
        let width = heads.0 * heads.2;
        for (past, rows, kind) in ATTENTION_STEPS {
            let d = AttentionData::random(&mut rng, heads, past, rows, kind);
            let together = cpu_attention(&d);
            for i in [0, rows / 2, rows - 1] {
                let alone = cpu_attention(&d.alone(i));
                let first = first_difference(&alone, &together[i * width..(i + 1) * width]);
                assert!(
                    first.is_none(),
                    "{heads:?}, {past} cached, {rows} rows ({kind:?}): row {i} alone differs \
                     from the row in the step at element {first:?}"
                );
            }
        }
    }
}
