//! Small deterministic pseudo-random generators.
//!
//! [`Minstd`] is the generator whose state lives in the backend (per queue): the random strategy
//! and retry jitter draw from it. It is the Park–Miller "minimal standard" generator,
//! `x ← x · 48271 mod (2³¹ − 1)`, chosen because every intermediate value stays below 2⁴⁷ and is
//! therefore exact in the doubles of Redis's Lua: the Lua scripts and this Rust code produce the
//! same sequence for the same seed. [`SplitMix64`] is a fast 64-bit generator for client-side
//! randomness (ids, the demo's workload).

/// 64 fresh bits for seeding, different on every call and in every process, without an extra
/// dependency: the std hasher is randomly keyed per process (and per call), and the time and
/// process id go in as well.
///
/// ```
/// use switchyard_core::rng::entropy;
/// assert_ne!(entropy(), entropy());
/// ```
pub fn entropy() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u64(crate::clock::system_millis());
    hasher.write_u32(std::process::id());
    hasher.finish()
}

/// Modulus of [`Minstd`]: the Mersenne prime 2³¹ − 1.
pub const MINSTD_MODULUS: u64 = 2_147_483_647;
/// Multiplier of [`Minstd`].
pub const MINSTD_MULTIPLIER: u64 = 48_271;

/// The Park–Miller minimal standard generator (see the module docs).
///
/// ```
/// use switchyard_core::rng::Minstd;
/// let mut rng = Minstd::from_seed(0); // seeds map to states 1..=2^31-2
/// assert_eq!(rng.state(), 1);
/// assert_eq!(rng.next_u32(), 48_271);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Minstd {
    state: u64,
}

impl Minstd {
    /// A generator from any seed; the state is reduced into `1..=2³¹−2`.
    pub fn from_seed(seed: u64) -> Self {
        Minstd {
            state: seed % (MINSTD_MODULUS - 1) + 1,
        }
    }

    /// A generator resumed from a stored state (as returned by [`Minstd::state`]).
    /// Out-of-range states are reduced as by [`Minstd::from_seed`].
    pub fn from_state(state: u64) -> Self {
        if (1..MINSTD_MODULUS).contains(&state) {
            Minstd { state }
        } else {
            Minstd::from_seed(state)
        }
    }

    /// The current state, in `1..=2³¹−2`.
    pub fn state(&self) -> u64 {
        self.state
    }

    /// Advances and returns the new state, in `1..=2³¹−2`.
    pub fn next_u32(&mut self) -> u32 {
        self.state = self.state * MINSTD_MULTIPLIER % MINSTD_MODULUS;
        // Always below 2^31.
        u32::try_from(self.state).unwrap_or(u32::MAX)
    }

    /// A draw in `0..n` (`n > 0`), as `next mod n`. The bias is below n / 2³¹.
    pub fn below(&mut self, n: u64) -> u64 {
        u64::from(self.next_u32()) % n.max(1)
    }
}

/// SplitMix64: a fast, well-mixed 64-bit generator for client-side randomness.
#[derive(Debug, Clone)]
pub struct SplitMix64 {
    state: u64,
}

impl SplitMix64 {
    /// A generator from a seed.
    pub fn new(seed: u64) -> Self {
        SplitMix64 { state: seed }
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A uniform float in `[0, 1)`.
    pub fn next_f64(&mut self) -> f64 {
        // 53 random bits, exactly representable.
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// A draw in `0..n` (`n > 0`) without modulo bias worth mentioning (Lemire's method).
    pub fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n.max(1))) >> 64) as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minstd_known_value() {
        // Park & Miller: starting from 1, the 10,000th state is 399,268,537 for multiplier 48271.
        let mut rng = Minstd::from_seed(0);
        assert_eq!(rng.state(), 1);
        let mut last = 0;
        for _ in 0..10_000 {
            last = rng.next_u32();
        }
        assert_eq!(last, 399_268_537);
    }

    #[test]
    fn minstd_state_stays_in_range() {
        for seed in [
            0,
            1,
            MINSTD_MODULUS - 2,
            MINSTD_MODULUS - 1,
            MINSTD_MODULUS,
            u64::MAX,
        ] {
            let rng = Minstd::from_seed(seed);
            assert!((1..MINSTD_MODULUS).contains(&rng.state()), "seed {seed}");
            assert_eq!(Minstd::from_state(rng.state()), rng);
        }
    }

    #[test]
    fn splitmix_below_is_in_range() {
        let mut rng = SplitMix64::new(3);
        for n in 1..100 {
            assert!(rng.below(n) < n);
        }
        let x = rng.next_f64();
        assert!((0.0..1.0).contains(&x));
    }
}
