//! What a deterministic simulation (feature `simulation`) sets on its thread: where the
//! client's random seeds come from, and which test-only bug is planted. Kept behind the runtime
//! seam so that the core has no simulation `cfg`; without the feature nothing is simulated.

#[cfg(feature = "simulation")]
use std::cell::{Cell, RefCell};

#[cfg(feature = "simulation")]
thread_local! {
    static ENTROPY: RefCell<Option<Box<dyn FnMut() -> u64>>> = const { RefCell::new(None) };
    static PLANTED: Cell<Option<&'static str>> = const { Cell::new(None) };
}

/// Makes [`entropy`] on this thread draw from `entropy`, and plants the bug named `planted`
/// (`None`, `None`: not simulated any more).
#[cfg(feature = "simulation")]
pub(crate) fn simulate(entropy: Option<Box<dyn FnMut() -> u64>>, planted: Option<&'static str>) {
    ENTROPY.with(|e| *e.borrow_mut() = entropy);
    PLANTED.with(|p| p.set(planted));
}

/// A seed from the simulation running on this thread, if any.
pub(crate) fn entropy() -> Option<u64> {
    #[cfg(feature = "simulation")]
    return ENTROPY.with(|e| e.borrow_mut().as_mut().map(|next| next()));
    #[cfg(not(feature = "simulation"))]
    None
}

/// Whether the simulation running on this thread planted the bug called `name` (never outside
/// one).
pub(crate) fn planted(name: &str) -> bool {
    #[cfg(feature = "simulation")]
    return PLANTED.with(|p| p.get() == Some(name));
    #[cfg(not(feature = "simulation"))]
    {
        let _ = name;
        false
    }
}
