//! Sessions kept between requests. A finished request's session (its KV cache, its step
//! buffers and, on a GPU, its captured step graphs) serves a later request that fits in it,
//! instead of being freed and made again: on a GPU, making one allocates the cache and
//! captures every step shape anew, several milliseconds of each request.
//!
//! A pooled session serves one request at a time, like a fresh one: it is taken out of the
//! pool for the request and put back, its cache emptied, when the request has finished.
//! Outputs do not depend on it: a longer session only has room the request does not use.

use std::sync::Mutex;

use crate::model::CausalLm;
use crate::Result;

/// A session of one sequence, as the server runs it.
pub type PooledSession = Box<dyn CausalLm + Send>;

/// Idle sessions, at most `keep` of them.
pub struct SessionPool {
    idle: Mutex<Vec<PooledSession>>,
    keep: usize,
}

/// Smallest session made for the pool: requests of a few hundred positions then share sizes.
const MIN_POOLED: usize = 512;

impl SessionPool {
    /// A pool keeping at most `keep` idle sessions (0: every request gets a fresh session).
    pub fn new(keep: usize) -> Self {
        Self {
            idle: Mutex::new(Vec::new()),
            keep,
        }
    }

    /// A session of at least `capacity` positions: the smallest idle one that holds them, or
    /// one made by `make(size)`, where `size` is `capacity` rounded up to a power of two (at
    /// least 512, at most `limit`) so that later requests of similar length fit in it too.
    pub fn take(
        &self,
        capacity: usize,
        limit: usize,
        make: impl FnOnce(usize) -> Result<PooledSession>,
    ) -> Result<PooledSession> {
        if self.keep == 0 {
            return make(capacity);
        }
        {
            let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
            let best = idle
                .iter()
                .enumerate()
                .filter(|(_, s)| s.context_size() >= capacity)
                .min_by_key(|(_, s)| s.context_size())
                .map(|(i, _)| i);
            if let Some(i) = best {
                return Ok(idle.swap_remove(i));
            }
        }
        make(
            capacity
                .next_power_of_two()
                .max(MIN_POOLED)
                .min(limit)
                .max(capacity),
        )
    }

    /// Keeps `session` (its cache emptied) for later requests; when `keep` sessions are idle
    /// already, the smallest of them all is dropped.
    pub fn put(&self, mut session: PooledSession) {
        if self.keep == 0 {
            return;
        }
        session.truncate(0);
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        idle.push(session);
        if idle.len() > self.keep {
            if let Some(i) = idle
                .iter()
                .enumerate()
                .min_by_key(|(_, s)| s.context_size())
                .map(|(i, _)| i)
            {
                idle.swap_remove(i);
            }
        }
    }

    /// Idle sessions now.
    pub fn idle(&self) -> usize {
        self.idle.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Batch, Logits};

    /// A sequence of `size` positions whose cache length is whatever was fed.
    struct Fake {
        size: usize,
        len: usize,
    }

    impl CausalLm for Fake {
        fn forward(&mut self, batch: &Batch<'_>) -> Result<Logits> {
            self.len += batch.tokens.len();
            Ok(Logits::new(Vec::new(), 0, 1))
        }
        fn cache_len(&self) -> usize {
            self.len
        }
        fn truncate(&mut self, len: usize) {
            self.len = self.len.min(len);
        }
        fn keep_rows(&mut self, start: usize, rows: &[usize]) -> Result<()> {
            self.len = start + rows.len();
            Ok(())
        }
        fn context_size(&self) -> usize {
            self.size
        }
        fn vocab_size(&self) -> usize {
            1
        }
    }

    fn fake(size: usize) -> Result<PooledSession> {
        Ok(Box::new(Fake { size, len: 0 }))
    }

    #[test]
    fn sessions_are_reused_smallest_fit_first_and_come_back_empty() {
        let pool = SessionPool::new(2);
        // New sessions are rounded up (at least 512, a power of two, at most the limit).
        let a = pool.take(300, 4096, fake).unwrap();
        assert_eq!(a.context_size(), 512);
        let mut b = pool.take(1500, 4096, fake).unwrap();
        assert_eq!(b.context_size(), 2048);
        assert_eq!(pool.take(3000, 3500, fake).unwrap().context_size(), 3500);
        b.keep_rows(0, &[0, 1, 2]).unwrap();
        pool.put(a);
        pool.put(b);
        assert_eq!(pool.idle(), 2);
        // The smallest that fits, emptied; a request too long for every idle one gets a new one.
        let made = std::cell::Cell::new(false);
        let make = |n| {
            made.set(true);
            fake(n)
        };
        let c = pool.take(600, 4096, make).unwrap();
        assert_eq!(
            (c.context_size(), c.cache_len(), made.get()),
            (2048, 0, false)
        );
        let d = pool.take(400, 4096, make).unwrap();
        assert_eq!((d.context_size(), made.get()), (512, false));
        assert_eq!(pool.idle(), 0);
        assert_eq!(pool.take(400, 4096, make).unwrap().context_size(), 512);
        assert!(made.get());
        // At most `keep` stay idle: the smallest goes.
        pool.put(c);
        pool.put(d);
        pool.put(fake(8192).unwrap());
        assert_eq!(pool.idle(), 2);
        assert_eq!(pool.take(100, 8192, fake).unwrap().context_size(), 2048);
        // keep = 0: every request makes its own, of the size it asked for.
        let none = SessionPool::new(0);
        assert_eq!(none.take(300, 4096, fake).unwrap().context_size(), 300);
        none.put(fake(512).unwrap());
        assert_eq!(none.idle(), 0);
    }
}
