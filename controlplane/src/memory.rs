//! Handing freed memory back to the OS.
//!
//! An allocator keeps the pages it frees for reuse: mimalloc returns them
//! (`MADV_DONTNEED`) only once their purge delay has passed *and* a later
//! allocator call gets round to it. A relay whose NG threads fall quiet after a
//! burst of set-ups (the reply cache lets the burst's replies go 30–60 s later)
//! would keep that memory resident for good. After such a release the ticker
//! calls the hook the binary registered for its global allocator
//! ([`on_release`]); this library stays allocator-agnostic (and free of
//! `unsafe`), and without a hook nothing happens.
//!
//! The replies are freed on the ticker's thread, not on the NG threads that
//! allocated them, and with mimalloc's hook that is enough: after 6,000
//! set-up+delete cycles and no request since, the relay's RSS went from 27.7 to
//! 15.9 MB at the second rotation, and stayed at 27.7 MB without the hook
//! (`perf/ng/README.md`, session 8).

use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// Bytes let go at once that make it worth asking the allocator to return memory.
pub const RETURN_AFTER_BYTES: usize = 1 << 20;

static HOOK: OnceLock<fn()> = OnceLock::new();

/// Registers what returns freed memory to the OS; the first registration holds.
pub fn on_release(hook: fn()) {
    let _ = HOOK.set(hook);
}

/// Runs the registered hook after `released` bytes were let go, when that is
/// worth it; how long it took when it ran.
pub fn released(released: usize) -> Option<Duration> {
    match HOOK.get() {
        Some(hook) if released >= RETURN_AFTER_BYTES => {
            let t = Instant::now();
            hook();
            Some(t.elapsed())
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    static CALLS: AtomicUsize = AtomicUsize::new(0);

    fn count() {
        CALLS.fetch_add(1, Ordering::Relaxed);
    }

    #[test]
    fn the_hook_runs_only_after_a_release_worth_it() {
        // No other test in this binary registers a hook.
        assert!(released(usize::MAX).is_none(), "no hook, nothing runs");
        on_release(count);
        assert!(released(0).is_none());
        assert!(released(RETURN_AFTER_BYTES - 1).is_none());
        assert_eq!(CALLS.load(Ordering::Relaxed), 0);
        assert!(released(RETURN_AFTER_BYTES).is_some());
        assert_eq!(CALLS.load(Ordering::Relaxed), 1);
    }
}
