//! Memory for packed weights: one allocation aligned to 2 MiB pages, which Linux is asked to
//! back with transparent huge pages before anything touches it.
//!
//! A decoding step streams every packed weight from memory once. On 4 KiB pages that stream
//! crosses a page every 4 KiB, each a TLB entry to walk and a boundary the hardware prefetcher
//! stops at; on 2 MiB pages it crosses 512 times fewer. On this project's 2-core VM a throwaway
//! C loop that summed 538 MB with two threads read 50-57 GB/s from huge pages against 38-42 GB/s
//! from 4 KiB pages, alternating in one process; so did one streaming SmolLM2's packed decoding
//! weights panel by panel (15.1-16.2 ms against 17.6-19.6 ms a pass). Faulting in huge pages
//! also halves packing (`decode_products/pack`). Buffers under 2 MiB, other systems, or a
//! kernel that declines the advice get ordinary memory.

use std::alloc::{Layout, alloc, dealloc, handle_alloc_error};
use std::mem::MaybeUninit;
use std::ptr::NonNull;

use rayon::prelude::*;

/// The huge-page size the allocation is aligned to.
const HUGE_PAGE: usize = 2 << 20;

/// `len` f32 values in one allocation aligned to [`HUGE_PAGE`] (see the module doc).
pub(crate) struct PageMemory {
    ptr: NonNull<f32>,
    len: usize,
}

// SAFETY: `PageMemory` owns its allocation like a `Box<[f32]>`.
unsafe impl Send for PageMemory {}
// SAFETY: shared access only reads (`&[f32]`), as for a `Box<[f32]>`.
unsafe impl Sync for PageMemory {}

impl PageMemory {
    /// Memory for consecutive chunks of `lengths` values, each of which `init(chunk, values)`
    /// writes in parallel after it was zeroed: the first touch of every page comes after the
    /// huge-page advice, on the pool's threads.
    pub(crate) fn filled(lengths: &[usize], init: impl Fn(usize, &mut [f32]) + Sync) -> Self {
        let len = lengths.iter().sum();
        let Some(layout) = Self::layout(len) else {
            return PageMemory {
                ptr: NonNull::dangling(),
                len: 0,
            };
        };
        // SAFETY: `layout` has a non-zero size.
        let raw = unsafe { alloc(layout) };
        let Some(ptr) = NonNull::new(raw.cast::<f32>()) else {
            handle_alloc_error(layout)
        };
        // Owned from here: a panic below frees the allocation.
        let memory = PageMemory { ptr, len };
        if layout.size() >= HUGE_PAGE {
            advise_huge_pages(raw, layout.size());
        }
        // SAFETY: the allocation holds `len` (uninitialised) f32 values.
        let mut rest =
            unsafe { std::slice::from_raw_parts_mut(raw.cast::<MaybeUninit<f32>>(), len) };
        let mut chunks = Vec::with_capacity(lengths.len());
        for &length in lengths {
            let (chunk, tail) = rest.split_at_mut(length);
            chunks.push(chunk);
            rest = tail;
        }
        chunks.into_par_iter().enumerate().for_each(|(i, values)| {
            values.fill(MaybeUninit::new(0.0));
            // SAFETY: every value of the chunk was just written.
            let values = unsafe {
                std::slice::from_raw_parts_mut(values.as_mut_ptr().cast::<f32>(), values.len())
            };
            init(i, values);
        });
        memory
    }

    /// The layout of `len` values; `None` when empty.
    fn layout(len: usize) -> Option<Layout> {
        let bytes = len.checked_mul(size_of::<f32>()).expect("size overflows");
        (bytes > 0).then(|| Layout::from_size_align(bytes, HUGE_PAGE).expect("valid layout"))
    }
}

impl std::ops::Deref for PageMemory {
    type Target = [f32];

    fn deref(&self) -> &[f32] {
        // SAFETY: `ptr` holds `len` initialised values (or is dangling with `len` 0).
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
}

impl Drop for PageMemory {
    fn drop(&mut self) {
        if let Some(layout) = Self::layout(self.len) {
            // SAFETY: allocated by `filled` with this layout.
            unsafe { dealloc(self.ptr.as_ptr().cast(), layout) };
        }
    }
}

impl std::fmt::Debug for PageMemory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PageMemory({} values)", self.len)
    }
}

/// Asks Linux to back `bytes` from `start` (2 MiB-aligned) with huge pages; advice only, so a
/// refusal changes nothing but speed.
#[cfg(target_os = "linux")]
fn advise_huge_pages(start: *mut u8, bytes: usize) {
    // SAFETY: the range is one allocation of ours; MADV_HUGEPAGE changes no contents.
    unsafe { libc::madvise(start.cast(), bytes, libc::MADV_HUGEPAGE) };
}

/// Huge-page advice is Linux's; elsewhere the memory is ordinary.
#[cfg(not(target_os = "linux"))]
fn advise_huge_pages(_start: *mut u8, _bytes: usize) {}
