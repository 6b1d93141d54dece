//! The threads that run packed products: the calling thread and helpers that wait for the next
//! product spinning, not sleeping.
//!
//! A decoding step makes ~120 packed products, each a few tens of microseconds to a few
//! milliseconds of streaming, with Burn's small operations in between. Through rayon, every
//! product woke a sleeping worker and put the caller to sleep until it was done (futex waits and
//! wakes, which a VM turns into interrupts between cores): a profile of batch-1 greedy decoding
//! found ~20% of the time in the scheduler. The helpers here spin for up to [`SPIN`] after a
//! product before they park, so between the products of a step they are awake, and the caller
//! works on the product too and waits for the others spinning.
//!
//! Parts are claimed from a counter, so a product may have any number of parts whatever the
//! number of helpers; which thread runs a part does not change what it computes. Callers on
//! several threads take turns (one product at a time); a part that runs a product itself runs
//! it on its own thread.

use std::any::Any;
use std::cell::Cell;
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::sync::atomic::{AtomicPtr, AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::{self, Thread};
use std::time::{Duration, Instant};

/// How long a helper waits for the next product before it parks: spinning at first, then
/// yielding its core to any other runnable thread (rayon's workers run Burn's operations between
/// the products) after [`SPIN_ONLY`].
const SPIN: Duration = Duration::from_millis(2);
/// How long a wait spins before it yields between checks.
const SPIN_ONLY: Duration = Duration::from_micros(50);

/// The work of one product: `work(part)` for every part of `0..parts`.
struct Job<'a> {
    work: &'a (dyn Fn(usize) + Sync),
    parts: usize,
}

/// What the caller and the helpers share.
struct Shared {
    /// The current job, null between jobs.
    job: AtomicPtr<Job<'static>>,
    /// Bumped when a job is published and again when it is closed: odd while one is open.
    epoch: AtomicUsize,
    /// The next part to claim.
    next: AtomicUsize,
    /// Parts finished.
    done: AtomicUsize,
    /// Helpers inside the open job (the caller closes it only when none is).
    inside: AtomicUsize,
    /// Helpers parked or about to park.
    parked: AtomicUsize,
    /// The first panic of a part of the current job.
    panic: Mutex<Option<Box<dyn Any + Send>>>,
    /// Serialises callers: one job at a time.
    caller: Mutex<()>,
}

/// The process's team: as many threads as rayon's global pool has by default (the caller
/// included): `RAYON_NUM_THREADS`, else the available cores.
struct Team {
    shared: Arc<Shared>,
    helpers: Vec<Thread>,
}

/// Runs `work(part)` for every part of `0..parts`, on the calling thread and the team's
/// helpers; returns when all are done (a part's panic is raised here).
pub(super) fn run(parts: usize, work: &(dyn Fn(usize) + Sync)) {
    if parts > 1 && !IN_PART.get() {
        let team = TEAM.get_or_init(Team::start);
        if !team.helpers.is_empty() {
            return team.run(parts, work);
        }
    }
    (0..parts).for_each(work);
}

static TEAM: OnceLock<Team> = OnceLock::new();

/// The number of threads a product runs on: the caller and the helpers.
pub(super) fn size() -> usize {
    TEAM.get_or_init(Team::start).helpers.len() + 1
}

thread_local! {
    /// Set on a thread while it runs a part: a product inside a part runs on that thread alone
    /// (the team is busy with the outer one).
    static IN_PART: Cell<bool> = const { Cell::new(false) };
}

/// The team's size: rayon's default for its global pool.
fn team_size() -> usize {
    std::env::var("RAYON_NUM_THREADS")
        .ok()
        .and_then(|n| n.parse::<usize>().ok())
        .filter(|&n| n > 0)
        .or_else(|| thread::available_parallelism().ok().map(usize::from))
        .unwrap_or(1)
}

impl Team {
    fn start() -> Team {
        let shared = Arc::new(Shared {
            job: AtomicPtr::new(std::ptr::null_mut()),
            epoch: AtomicUsize::new(0),
            next: AtomicUsize::new(0),
            done: AtomicUsize::new(0),
            inside: AtomicUsize::new(0),
            parked: AtomicUsize::new(0),
            panic: Mutex::new(None),
            caller: Mutex::new(()),
        });
        let helpers = (1..team_size())
            .filter_map(|i| {
                let shared = shared.clone();
                thread::Builder::new()
                    .name(format!("bpo-product-{i}"))
                    .spawn(move || help(&shared))
                    .ok()
                    .map(|handle| handle.thread().clone())
            })
            .collect();
        Team { shared, helpers }
    }

    fn run(&self, parts: usize, work: &(dyn Fn(usize) + Sync)) {
        let shared = &*self.shared;
        let _one_job = shared.caller.lock().unwrap_or_else(|e| e.into_inner());
        let job = Job { work, parts };
        shared.next.store(0, SeqCst);
        shared.done.store(0, SeqCst);
        // SAFETY (lifetime): helpers touch the job only while counted in `inside` under the
        // epoch it was published with, and this function returns only after closing the epoch
        // and seeing `inside` at zero.
        let erased = (&job as *const Job).cast_mut().cast::<Job<'static>>();
        shared.job.store(erased, SeqCst);
        shared.epoch.fetch_add(1, SeqCst);
        if shared.parked.load(SeqCst) > 0 {
            self.helpers.iter().for_each(Thread::unpark);
        }
        claim(shared, &job);
        wait_until(|| shared.done.load(SeqCst) == parts);
        shared.epoch.fetch_add(1, SeqCst);
        wait_until(|| shared.inside.load(SeqCst) == 0);
        shared.job.store(std::ptr::null_mut(), SeqCst);
        let panic = shared
            .panic
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(panic) = panic {
            resume_unwind(panic);
        }
    }
}

/// Spins until `done()`, yielding the core between checks after [`SPIN_ONLY`] (a helper
/// holding a part may have been preempted).
fn wait_until(done: impl Fn() -> bool) {
    let since = Instant::now();
    let mut spins = 0u32;
    while !done() {
        std::hint::spin_loop();
        spins = spins.wrapping_add(1);
        if spins.is_multiple_of(256) && since.elapsed() > SPIN_ONLY {
            thread::yield_now();
        }
    }
}

/// Claims and runs parts of `job` until none is left; a part's panic is kept for the caller.
fn claim(shared: &Shared, job: &Job) {
    loop {
        let part = shared.next.fetch_add(1, SeqCst);
        if part >= job.parts {
            return;
        }
        IN_PART.set(true);
        let result = catch_unwind(AssertUnwindSafe(|| (job.work)(part)));
        IN_PART.set(false);
        if let Err(panic) = result {
            shared
                .panic
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get_or_insert(panic);
        }
        shared.done.fetch_add(1, SeqCst);
    }
}

/// A helper's life: wait for an open epoch it has not served, join it, claim parts.
fn help(shared: &Shared) {
    let mut served = 0;
    loop {
        let epoch = wait_for_job(shared, served);
        served = epoch;
        shared.inside.fetch_add(1, SeqCst);
        // The job may have closed between seeing the epoch and entering: then leave it alone.
        if shared.epoch.load(SeqCst) == epoch {
            let job = shared.job.load(SeqCst);
            // SAFETY: the epoch is still open and we are counted in `inside`, so the caller
            // has not returned and `job` points at its live `Job`.
            if let Some(job) = unsafe { job.as_ref() } {
                claim(shared, job);
            }
        }
        shared.inside.fetch_sub(1, SeqCst);
    }
}

/// Waits until an epoch other than `served` is open (odd) and returns it: spinning, then
/// yielding, for [`SPIN`], then parked until the next job's caller unparks the helpers.
fn wait_for_job(shared: &Shared, served: usize) -> usize {
    let open = |epoch: usize| !epoch.is_multiple_of(2) && epoch != served;
    let mut since = Instant::now();
    let mut spins = 0u32;
    loop {
        let epoch = shared.epoch.load(SeqCst);
        if open(epoch) {
            return epoch;
        }
        std::hint::spin_loop();
        spins = spins.wrapping_add(1);
        if !spins.is_multiple_of(256) {
            continue;
        }
        let waited = since.elapsed();
        if waited > SPIN_ONLY && waited <= SPIN {
            thread::yield_now();
        } else if waited > SPIN {
            shared.parked.fetch_add(1, SeqCst);
            // A job published after this check unparks us (the token makes `park` return).
            if !open(shared.epoch.load(SeqCst)) {
                thread::park();
            }
            shared.parked.fetch_sub(1, SeqCst);
            since = Instant::now();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts(parts: usize) -> Vec<usize> {
        let runs: Vec<AtomicUsize> = (0..parts).map(|_| AtomicUsize::new(0)).collect();
        run(parts, &|part| {
            runs[part].fetch_add(1, SeqCst);
        });
        runs.into_iter().map(AtomicUsize::into_inner).collect()
    }

    #[test]
    fn every_part_runs_once_whatever_the_count_and_the_callers() {
        for parts in [0, 1, 2, 3, 17, 200] {
            assert_eq!(counts(parts), vec![1; parts], "{parts} parts");
        }
        // Callers on several threads at once take turns.
        thread::scope(|s| {
            for caller in 0..4 {
                s.spawn(move || {
                    for job in 0..50 {
                        let parts = 1 + (caller * 7 + job) % 9;
                        assert_eq!(counts(parts), vec![1; parts], "caller {caller}, job {job}");
                    }
                });
            }
        });
    }

    #[test]
    fn helpers_take_parts_also_after_parking_and_a_nested_product_runs_inline() {
        let caller = thread::current().id();
        for job in 0..3 {
            if job > 0 {
                // Past the helpers' spinning: they park and must be woken.
                thread::sleep(SPIN * 3);
            }
            let threads = Mutex::new(Vec::new());
            run(8, &|_| {
                thread::sleep(Duration::from_millis(1));
                threads.lock().unwrap().push(thread::current().id());
            });
            let threads = threads.into_inner().unwrap();
            assert_eq!(threads.len(), 8, "job {job}");
            if team_size() > 1 {
                assert!(
                    threads.iter().any(|&t| t != caller),
                    "job {job}: no helper ran"
                );
            }
        }
        let inner = Mutex::new(Vec::new());
        run(3, &|outer| {
            run(2, &|part| inner.lock().unwrap().push((outer, part)));
        });
        let mut inner = inner.into_inner().unwrap();
        inner.sort_unstable();
        assert_eq!(inner, vec![(0, 0), (0, 1), (1, 0), (1, 1), (2, 0), (2, 1)]);
    }

    #[test]
    fn a_panicking_part_panics_the_caller_and_the_team_goes_on() {
        for failing in [0, 3] {
            let result = catch_unwind(|| {
                run(5, &|part| {
                    assert_ne!(part, failing, "part {part} fails");
                })
            });
            assert!(result.is_err(), "part {failing} panicked");
        }
        assert_eq!(counts(5), vec![1; 5]);
    }
}
