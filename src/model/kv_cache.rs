//! Preallocated key/value cache. Rollback is a length change; accepting a speculative branch
//! copies its rows down to the end of the committed prefix.

use candle_core::{DType, Device, Tensor};

use crate::{LadeError, Result};

/// Keys and values of every layer for positions `0..len`, stored in fixed-capacity buffers.
///
/// A forward pass writes its `q` new rows at `len..len+q` and then calls [`KvCache::advance`];
/// callers roll back with [`KvCache::truncate`] (O(1)) or keep a subset of the new rows with
/// [`KvCache::keep_rows`].
#[derive(Debug, Clone)]
pub struct KvCache {
    keys: Vec<Tensor>,   // per layer: (n_kv_heads, capacity, head_dim)
    values: Vec<Tensor>, // per layer: (n_kv_heads, capacity, head_dim)
    len: usize,
    capacity: usize,
}

impl KvCache {
    pub fn new(
        num_layers: usize,
        num_kv_heads: usize,
        head_dim: usize,
        capacity: usize,
        dtype: DType,
        device: &Device,
    ) -> Result<Self> {
        let shape = (num_kv_heads, capacity, head_dim);
        let mut keys = Vec::with_capacity(num_layers);
        let mut values = Vec::with_capacity(num_layers);
        for _ in 0..num_layers {
            keys.push(Tensor::zeros(shape, dtype, device)?);
            values.push(Tensor::zeros(shape, dtype, device)?);
        }
        Ok(Self {
            keys,
            values,
            len: 0,
            capacity,
        })
    }

    /// Number of committed positions.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Forgets every position `>= len`. O(1): the buffers are left as they are.
    pub fn truncate(&mut self, len: usize) {
        self.len = self.len.min(len);
    }

    /// Fails early when `extra` more rows would not fit.
    pub fn ensure_room(&self, extra: usize) -> Result<()> {
        if self.len + extra > self.capacity {
            return Err(LadeError::ContextExceeded {
                needed: self.len + extra,
                limit: self.capacity,
            });
        }
        Ok(())
    }

    /// Writes `k`, `v`: (n_kv_heads, q, head_dim) of `layer` at `len..len+q` and returns views of
    /// keys and values for positions `0..len+q`: (n_kv_heads, len+q, head_dim).
    pub fn write_and_view(&self, layer: usize, k: &Tensor, v: &Tensor) -> Result<(Tensor, Tensor)> {
        let end = self.len + k.dim(1)?;
        let (kc, vc) = self.write(layer, k, v)?;
        Ok((kc.narrow(1, 0, end)?, vc.narrow(1, 0, end)?))
    }

    /// Writes `k`, `v`: (n_kv_heads, q, head_dim) of `layer` at `len..len+q` and returns the
    /// whole buffers (n_kv_heads, capacity, head_dim), for kernels that index them directly.
    pub fn write(&self, layer: usize, k: &Tensor, v: &Tensor) -> Result<(&Tensor, &Tensor)> {
        self.ensure_room(k.dim(1)?)?;
        let (kc, vc) = (&self.keys[layer], &self.values[layer]);
        kc.slice_set(&k.contiguous()?, 1, self.len)?;
        vc.slice_set(&v.contiguous()?, 1, self.len)?;
        Ok((kc, vc))
    }

    /// Marks `q` rows written by every layer as part of the cache.
    pub fn advance(&mut self, q: usize) -> Result<()> {
        self.ensure_room(q)?;
        self.len += q;
        Ok(())
    }

    /// Keeps, of the rows at `start..len`, only those at offsets `rows` (strictly increasing),
    /// moved down to `start..start+rows.len()`. Used to keep the accepted branch of a step.
    pub fn keep_rows(&mut self, start: usize, rows: &[usize]) -> Result<()> {
        if start > self.len {
            return Err(LadeError::InvalidArgument(format!(
                "keep_rows start {start} beyond cache length {}",
                self.len
            )));
        }
        let fresh = self.len - start;
        if rows.windows(2).any(|w| w[0] >= w[1]) || rows.last().is_some_and(|&r| r >= fresh) {
            return Err(LadeError::InvalidArgument(format!(
                "keep_rows offsets {rows:?} must be strictly increasing and below {fresh}"
            )));
        }
        let already_in_place = rows.iter().enumerate().all(|(i, &r)| i == r);
        if !already_in_place {
            let device = self.keys[0].device().clone();
            let idx: Vec<u32> = rows.iter().map(|&r| (start + r) as u32).collect();
            let idx = Tensor::new(idx.as_slice(), &device)?;
            for buf in self.keys.iter().chain(self.values.iter()) {
                let kept = buf.index_select(&idx, 1)?; // (n_kv_heads, rows, head_dim)
                buf.slice_set(&kept, 1, start)?;
            }
        }
        self.len = start + rows.len();
        Ok(())
    }

    /// Keys and values of `layer` at positions `0..len`: (n_kv_heads, len, head_dim) each.
    pub fn committed(&self, layer: usize) -> Result<(Tensor, Tensor)> {
        Ok((
            self.keys[layer].narrow(1, 0, self.len)?,
            self.values[layer].narrow(1, 0, self.len)?,
        ))
    }

    pub fn num_layers(&self) -> usize {
        self.keys.len()
    }
}
