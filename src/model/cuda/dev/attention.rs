//! The attention's dev harness: the production launch (`attention.cu`, its tile height picked
//! per launch), each production tile height on its own, and every variant of
//! `dev/cuda/attention_variants.cu` launched on given queries, cache keys and values and an
//! in-step mask, outside a model, and timed. `tests/gpu_kernels.rs` checks each against a CPU
//! twin, checks that a row's result does not depend on the step it is in, and times them.

use std::sync::Arc;

use candle_core::cuda_backend::cudarc::driver::{CudaFunction, CudaModule, CudaSlice, CudaStream};
use half::f16;

use super::{entry_names, median_launch_us, Loaded};
use crate::model::cuda::gpu_err;
use crate::model::cuda::kernels::{
    allow_smem, attn_smem, AttentionArgs, Kernels, ACT_PLANES, ATT_QT, CHUNK,
};
use crate::model::step_io::StepIo;
use crate::model::{AttentionMask, Batch};
use crate::{LadeError, Result};

const VARIANTS_PTX: &str = include_str!(concat!(env!("OUT_DIR"), "/attention_variants.ptx"));

/// One attention kernel for one head dim: the production launch, or a kernel of fixed height
/// (a production tile or a variant).
pub struct AttentionKernel {
    pub name: String,
    pub head_dim: usize,
    /// The kernel and its query vectors a block (`_qt<n>` in its name, else the most); `None`
    /// for the production launch ([`Kernels::attention`]: the tile height its rule picks).
    fixed: Option<(CudaFunction, usize)>,
}

impl AttentionKernel {
    /// Whether this is the production launch.
    pub fn production(&self) -> bool {
        self.fixed.is_none()
    }
}

/// One attention problem: `rows` query rows after `past` cached positions.
pub struct AttentionCase<'a> {
    /// (query heads, key/value heads, head dim).
    pub heads: (usize, usize, usize),
    pub past: usize,
    pub rows: usize,
    /// Which of the step's rows each row sees (every row sees the whole cache).
    pub mask: &'a AttentionMask,
    /// q: (rows, heads, head dim).
    pub q: &'a [f32],
    /// k, v: (kv heads, past + rows, head dim); position `past + i` holds row i's key/value.
    pub k: &'a [f32],
    pub v: &'a [f32],
}

/// A case on the device, with `copies` copies of the caches (timing rotates through them so
/// that the keys and values come from memory, not from the L2 cache).
pub struct AttentionProblem {
    heads: (usize, usize, usize),
    rows: usize,
    qb: usize,
    cap: usize,
    splits: usize,
    qkv: CudaSlice<f32>,
    io: CudaSlice<i32>,
    kc: Vec<CudaSlice<f32>>,
    vc: Vec<CudaSlice<f32>>,
    part: CudaSlice<f32>,
    done: CudaSlice<i32>,
    out: CudaSlice<u16>,
}

impl AttentionProblem {
    /// Bytes of keys and values a launch reads from the cache (every row sees the whole
    /// cache; the in-step keys are few).
    pub fn cache_bytes(&self) -> usize {
        let (_, nkv, hd) = self.heads;
        2 * 4 * nkv * (self.cap - self.qb) * hd
    }
}

pub struct AttentionHarness {
    stream: Arc<CudaStream>,
    kernels: Kernels,
    _variants: Arc<CudaModule>,
    all: Vec<AttentionKernel>,
}

impl AttentionHarness {
    pub fn new(ordinal: usize) -> Result<Self> {
        let Loaded {
            stream,
            kernels,
            variants,
            optin,
        } = Loaded::new(ordinal, VARIANTS_PTX)?;
        let mut all: Vec<AttentionKernel> = [64, 128]
            .into_iter()
            .map(|hd| AttentionKernel {
                name: format!("attention_hd{hd}"),
                head_dim: hd,
                fixed: None,
            })
            .collect();
        // The variants, and the production tiles the file includes, each at its own height.
        for name in entry_names(VARIANTS_PTX, "attention_") {
            let hd = name
                .rsplit_once("_hd")
                .and_then(|(_, d)| d.parse::<usize>().ok())
                .filter(|d| [64, 128].contains(d))
                .ok_or_else(|| {
                    LadeError::Gpu(format!("attention variant {name}: no _hd64/_hd128 suffix"))
                })?;
            let qt = variant_qt(name)?;
            let func = variants.load_function(name).map_err(gpu_err)?;
            allow_smem(&func, attn_smem(hd, qt), optin)?;
            all.push(AttentionKernel {
                name: name.to_string(),
                head_dim: hd,
                fixed: Some((func, qt)),
            });
        }
        Ok(AttentionHarness {
            stream,
            kernels,
            _variants: variants,
            all,
        })
    }

    /// The kernels of head dim `hd`: the production one first.
    pub fn kernels(&self, hd: usize) -> Vec<&AttentionKernel> {
        let mut v: Vec<&AttentionKernel> = self.all.iter().filter(|k| k.head_dim == hd).collect();
        v.sort_by_key(|k| (!k.production(), k.name.clone()));
        v
    }

    /// Uploads a case (the step's io block packed as the model packs it).
    pub fn problem(&self, c: &AttentionCase<'_>, copies: usize) -> Result<AttentionProblem> {
        let (nh, nkv, hd) = c.heads;
        let keys = c.past + c.rows;
        if c.rows == 0
            || nkv == 0
            || nh % nkv != 0
            || c.q.len() != c.rows * nh * hd
            || c.k.len() != nkv * keys * hd
            || c.v.len() != c.k.len()
        {
            return Err(LadeError::InvalidArgument(
                "attention case: rows > 0, heads a multiple of kv heads, q (rows, heads, hd), \
                 k and v (kv heads, past + rows, hd)"
                    .into(),
            ));
        }
        let tokens = vec![0u32; c.rows];
        let positions: Vec<u32> = (c.past..keys).map(|p| p as u32).collect();
        let io = StepIo::pack(
            &Batch {
                tokens: &tokens,
                positions: &positions,
                mask: c.mask,
                logit_rows: &[],
            },
            c.past,
        )?;
        let qb = io.qb;
        let cap = c.past + qb;
        let splits = cap.div_ceil(CHUNK);
        let s = &self.stream;
        // qkv rows: the queries, then k and v (unread: the kernel reads keys from the cache).
        let ld = (nh + 2 * nkv) * hd;
        let mut qkv = vec![0f32; qb * ld];
        for i in 0..c.rows {
            qkv[i * ld..i * ld + nh * hd].copy_from_slice(&c.q[i * nh * hd..(i + 1) * nh * hd]);
        }
        // Caches (kv heads, cap, hd); the padding rows' positions hold zeros.
        let cache = |x: &[f32]| -> Result<Vec<CudaSlice<f32>>> {
            let mut host = vec![0f32; nkv * cap * hd];
            for h in 0..nkv {
                host[h * cap * hd..(h * cap + keys) * hd]
                    .copy_from_slice(&x[h * keys * hd..(h + 1) * keys * hd]);
            }
            (0..copies.max(1))
                .map(|_| s.clone_htod(&host).map_err(gpu_err))
                .collect()
        };
        Ok(AttentionProblem {
            heads: c.heads,
            rows: c.rows,
            qb,
            cap,
            splits,
            kc: cache(c.k)?,
            vc: cache(c.v)?,
            qkv: s.clone_htod(&qkv).map_err(gpu_err)?,
            io: s.clone_htod(&io.data).map_err(gpu_err)?,
            part: s
                .alloc_zeros::<f32>(qb * nh * splits * (hd + 4))
                .map_err(gpu_err)?,
            done: s.alloc_zeros::<i32>(qb * nh).map_err(gpu_err)?,
            out: s
                .alloc_zeros::<u16>(ACT_PLANES * qb * nh * hd)
                .map_err(gpu_err)?,
        })
    }

    fn launch(&self, kernel: &AttentionKernel, p: &AttentionProblem, copy: usize) -> Result<()> {
        if kernel.head_dim != p.heads.2 {
            return Err(LadeError::InvalidArgument(format!(
                "{} takes head dim {}, the problem has {}",
                kernel.name, kernel.head_dim, p.heads.2
            )));
        }
        let (nh, _, hd) = p.heads;
        let c = copy % p.kc.len();
        let args = AttentionArgs {
            qkv: &p.qkv,
            io: &p.io,
            qb: p.qb,
            kc: p.kc[c].slice(..),
            vc: p.vc[c].slice(..),
            part: &p.part,
            done: &p.done,
            out: &p.out,
            out_plane: p.qb * nh * hd,
            heads: p.heads,
            cap: p.cap,
            splits: p.splits,
        };
        match &kernel.fixed {
            Some((func, qt)) => self.kernels.attention_on(func, *qt, &self.stream, &args),
            None => self.kernels.attention(&self.stream, &args),
        }
    }

    /// The attention output of every row, (rows, heads * head dim), as the kernel writes it
    /// for the o projection (f16 activation planes, read back as f32). The output is poisoned
    /// (NaN) before the launch, so an element the kernel does not write shows.
    pub fn run(&self, kernel: &AttentionKernel, p: &mut AttentionProblem) -> Result<Vec<f32>> {
        let s = &self.stream;
        let (nh, _, hd) = p.heads;
        let plane = p.qb * nh * hd;
        s.memcpy_htod(&vec![f16::NAN.to_bits(); ACT_PLANES * plane], &mut p.out)
            .map_err(gpu_err)?;
        self.launch(kernel, p, 0)?;
        let got = s.clone_dtoh(&p.out).map_err(gpu_err)?;
        s.synchronize().map_err(gpu_err)?;
        Ok((0..p.rows * nh * hd)
            .map(|x| {
                (0..ACT_PLANES)
                    .map(|pl| f16::from_bits(got[pl * plane + x]).to_f32())
                    .sum()
            })
            .collect())
    }

    /// Median microseconds of one launch over `batches` timed batches of `reps` launches each
    /// (after a warm-up), the launches rotating through the problem's cache copies.
    pub fn time(
        &self,
        kernel: &AttentionKernel,
        p: &AttentionProblem,
        reps: usize,
        batches: usize,
    ) -> Result<f64> {
        median_launch_us(&self.stream, reps, batches, |copy| {
            self.launch(kernel, p, copy)
        })
    }
}

/// Query vectors a block of the variant `name`: n for a name with `_qt<n>_`, else the production
/// count.
fn variant_qt(name: &str) -> Result<usize> {
    let Some((_, rest)) = name.split_once("_qt") else {
        return Ok(ATT_QT);
    };
    rest.split('_')
        .next()
        .and_then(|n| n.parse::<usize>().ok())
        .filter(|&n| n > 0 && n <= ATT_QT && n.is_power_of_two())
        .ok_or_else(|| LadeError::Gpu(format!("attention variant {name}: a bad _qt<n> count")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_variant_name_gives_its_query_vectors_a_block() {
        assert_eq!(variant_qt("attention_qt8_hd128").unwrap(), 8);
        assert_eq!(variant_qt("attention_qt16_hd64").unwrap(), 16);
        assert_eq!(variant_qt("attention_qt8_b3_hd64").unwrap(), 8);
        assert_eq!(variant_qt("attention_grouped_hd64").unwrap(), ATT_QT);
        for bad in [
            "attention_qt12_hd64",
            "attention_qt64_hd64",
            "attention_qtx_hd64",
        ] {
            assert!(variant_qt(bad).is_err(), "{bad}");
        }
    }
}
