//! The device's window on the world: the wall clock and a random source, injectable so that
//! tests and simulations are deterministic.

use std::fmt::Debug;

/// Time and randomness for a [`crate::Device`].
pub trait Env: Debug + Send {
    /// The wall clock, Unix milliseconds.
    fn now_ms(&self) -> u64;
    /// Fills `buf` with cryptographically secure random bytes.
    fn fill_random(&mut self, buf: &mut [u8]) -> Result<(), crate::DeviceError>;
}

/// The real clock and the operating system's random source.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemEnv;

impl Env for SystemEnv {
    fn now_ms(&self) -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64)
    }

    fn fill_random(&mut self, buf: &mut [u8]) -> Result<(), crate::DeviceError> {
        getrandom::getrandom(buf).map_err(|e| crate::DeviceError::Random(e.to_string()))
    }
}

/// A scripted clock and a seeded (not secure) random source, for tests and simulations.
#[derive(Debug, Clone)]
pub struct FixedEnv {
    /// The time returned by `now_ms`; advance it by hand.
    pub now_ms: u64,
    state: u64,
}

impl FixedEnv {
    /// A fixed clock at `now_ms` and a random stream from `seed`.
    pub fn new(now_ms: u64, seed: u64) -> Self {
        // splitmix64 of the seed: distinct seeds give distinct streams (and never the
        // all-zero state xorshift cannot leave).
        let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        Self {
            now_ms,
            state: (z ^ (z >> 31)) | 1,
        }
    }
}

impl Env for FixedEnv {
    fn now_ms(&self) -> u64 {
        self.now_ms
    }

    fn fill_random(&mut self, buf: &mut [u8]) -> Result<(), crate::DeviceError> {
        for b in buf {
            // xorshift64*
            self.state ^= self.state >> 12;
            self.state ^= self.state << 25;
            self.state ^= self.state >> 27;
            *b = (self.state.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 56) as u8;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn neighbouring_seeds_give_different_streams() {
        let draw = |seed| {
            let mut buf = [0u8; 32];
            FixedEnv::new(0, seed).fill_random(&mut buf).unwrap();
            buf
        };
        assert_ne!(draw(100), draw(101));
        assert_ne!(draw(0), draw(1));
        assert_eq!(draw(7), draw(7));
    }
}
