//! Masked attention on the CPU, computed row by row in a fixed order so that a row's result
//! depends only on the keys it sees — never on how many other rows share the batch. This is
//! what makes "k tokens in one call equal k single calls" hold bit for bit, and with it the
//! exactness of speculative decoding on the CPU. The mask is applied by walking each row's
//! visible keys; it is never materialised as a matrix.

use candle_core::{Storage, Tensor};
use rayon::prelude::*;

use super::mask::AttentionMask;
use crate::{LadeError, Result};

/// Keys visible to one query row: cached keys `0..prefix`, then `extra` (absolute key
/// indices, increasing).
#[derive(Debug, Clone, PartialEq)]
pub struct RowKeys {
    pub prefix: usize,
    pub extra: Vec<u32>,
}

/// Visible keys of every row of a step of `q` new tokens over `past` cached ones.
pub fn visible_keys(mask: &AttentionMask, past: usize, q: usize) -> Vec<RowKeys> {
    (0..q)
        .map(|i| match mask {
            AttentionMask::Full { .. } => RowKeys {
                prefix: 0,
                extra: (0..past + q)
                    .filter(|&j| mask.sees(past, q, i, j))
                    .map(|j| j as u32)
                    .collect(),
            },
            _ => RowKeys {
                prefix: past,
                extra: (past..past + q)
                    .filter(|&j| mask.sees(past, q, i, j))
                    .map(|j| j as u32)
                    .collect(),
            },
        })
        .collect()
}

/// Dot product with eight independent accumulators in a fixed order.
#[inline]
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let chunks = a.len() / 8;
    for c in 0..chunks {
        for l in 0..8 {
            acc[l] += a[c * 8 + l] * b[c * 8 + l];
        }
    }
    let mut tail = 0f32;
    for i in chunks * 8..a.len() {
        tail += a[i] * b[i];
    }
    ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7])) + tail
}

fn cpu_f32(t: &Tensor) -> Result<(candle_core::StorageRef<'_>, usize)> {
    let (guard, layout) = t.storage_and_layout();
    if !layout.is_contiguous() {
        return Err(LadeError::InvalidArgument(
            "attention needs contiguous tensors".into(),
        ));
    }
    Ok((guard, layout.start_offset()))
}

/// `q`: (heads, q, head_dim) after RoPE; `keys`, `values`: the cache buffers
/// (kv_heads, capacity, head_dim) holding the new rows already. Returns (q, heads * head_dim).
pub fn attend_cpu(
    q: &Tensor,
    keys: &Tensor,
    values: &Tensor,
    rows: &[RowKeys],
    kv_heads: usize,
) -> Result<Tensor> {
    let (heads, qn, hd) = q.dims3()?;
    let capacity = keys.dim(1)?;
    let group = heads / kv_heads;
    let scale = 1.0 / (hd as f32).sqrt();
    let qv = q.flatten_all()?.to_vec1::<f32>()?;
    let (kg, k_off) = cpu_f32(keys)?;
    let (vg, v_off) = cpu_f32(values)?;
    let (Storage::Cpu(kc), Storage::Cpu(vc)) = (&*kg, &*vg) else {
        return Err(LadeError::InvalidArgument(
            "attend_cpu needs CPU tensors".into(),
        ));
    };
    let kall = &kc.as_slice::<f32>()?[k_off..];
    let vall = &vc.as_slice::<f32>()?[v_off..];

    let mut out = vec![0f32; qn * heads * hd];
    let work = |(i, out_row): (usize, &mut [f32])| {
        let keys_of = &rows[i];
        let n_keys = keys_of.prefix + keys_of.extra.len();
        let mut scores = vec![0f32; n_keys];
        for h in 0..heads {
            let kvh = h / group;
            let qrow = &qv[(h * qn + i) * hd..(h * qn + i + 1) * hd];
            let kbase = &kall[kvh * capacity * hd..(kvh + 1) * capacity * hd];
            let vbase = &vall[kvh * capacity * hd..(kvh + 1) * capacity * hd];
            let key_at = |n: usize| -> usize {
                if n < keys_of.prefix {
                    n
                } else {
                    keys_of.extra[n - keys_of.prefix] as usize
                }
            };
            let mut max = f32::NEG_INFINITY;
            for (n, s) in scores.iter_mut().enumerate() {
                let j = key_at(n);
                *s = dot(qrow, &kbase[j * hd..(j + 1) * hd]) * scale;
                max = max.max(*s);
            }
            let mut sum = 0f32;
            for s in scores.iter_mut() {
                *s = (*s - max).exp();
                sum += *s;
            }
            let inv = 1.0 / sum;
            let o = &mut out_row[h * hd..(h + 1) * hd];
            for (n, &s) in scores.iter().enumerate() {
                let j = key_at(n);
                let p = s * inv;
                for (od, &vd) in o.iter_mut().zip(&vbase[j * hd..(j + 1) * hd]) {
                    *od += p * vd;
                }
            }
        }
    };
    // Rows are independent; small steps stay on this thread (no pool hand-off).
    let total_keys: usize = rows.iter().map(|r| r.prefix + r.extra.len()).sum();
    if qn > 1 && total_keys * heads * hd > 1 << 18 {
        out.par_chunks_mut(heads * hd).enumerate().for_each(work);
    } else {
        out.chunks_mut(heads * hd).enumerate().for_each(work);
    }
    Ok(Tensor::from_vec(out, (qn, heads * hd), q.device())?)
}
