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
//! number of helpers; which thread runs a part does not change what it computes.

use std::any::Any;
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::sync::atomic::{AtomicPtr, AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::{self, Thread};
use std::time::{Duration, Instant};

/// How long a helper spins for the next product before it parks.
const SPIN: Duration = Duration::from_millis(2);

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
    /// The first panic of a part on a helper.
    panic: Mutex<Option<Box<dyn Any + Send>>>,
    /// Serialises callers: one job at a time.
    caller: Mutex<()>,
}

/// The process's team: as many threads as rayon's pool has (the caller included).
struct Team {
    shared: Arc<Shared>,
    helpers: Vec<Thread>,
}

/// Runs `work(part)` for every part of `0..parts`, on the calling thread and the team's
/// helpers; returns when all are done (a part's panic is raised here).
pub(super) fn run(parts: usize, work: &(dyn Fn(usize) + Sync)) {
    let team = TEAM.get_or_init(Team::start);
    if parts <= 1 || team.helpers.is_empty() {
        (0..parts).for_each(work);
        return;
    }
    team.run(parts, work);
}

static TEAM: OnceLock<Team> = OnceLock::new();

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
        let helpers = (1..rayon::current_num_threads())
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
        let mine = catch_unwind(AssertUnwindSafe(|| claim(shared, &job)));
        while shared.done.load(SeqCst) < parts {
            std::hint::spin_loop();
        }
        shared.epoch.fetch_add(1, SeqCst);
        while shared.inside.load(SeqCst) > 0 {
            std::hint::spin_loop();
        }
        shared.job.store(std::ptr::null_mut(), SeqCst);
        if let Err(panic) = mine {
            resume_unwind(panic);
        }
        let helper_panic = shared
            .panic
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(panic) = helper_panic {
            resume_unwind(panic);
        }
    }
}

/// Claims and runs parts of `job` until none is left.
fn claim(shared: &Shared, job: &Job) {
    loop {
        let part = shared.next.fetch_add(1, SeqCst);
        if part >= job.parts {
            return;
        }
        let result = catch_unwind(AssertUnwindSafe(|| (job.work)(part)));
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

/// Waits until an epoch other than `served` is open (odd) and returns it: spinning for
/// [`SPIN`], then parked until the next job's caller unparks the helpers.
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
        if spins.is_multiple_of(1024) && since.elapsed() > SPIN {
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
