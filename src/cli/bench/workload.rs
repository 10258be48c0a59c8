//! What each bench client asks for next: the operation (put or get), the key, and the value.
//!
//! Keys are lower-case hex numbers zero-padded to `--key-size` characters, so they need no
//! escaping in a URL path and every system stores exactly the same bytes. Each client draws
//! from its own generator: nothing here is shared between clients, so choosing a key costs no
//! synchronisation.

use bytes::Bytes;

/// The load to apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Workload {
    /// Writes only
    Put,
    /// Reads only, over `--keys` keys written before the clock starts
    Get,
    /// Reads and writes over `--keys` preloaded keys, `--read-ratio` of them reads
    Mixed,
}

impl Workload {
    pub fn name(self) -> &'static str {
        match self {
            Workload::Put => "put",
            Workload::Get => "get",
            Workload::Mixed => "mixed",
        }
    }

    /// Whether the keys must exist before the measured run starts.
    pub fn needs_preload(self) -> bool {
        matches!(self, Workload::Get | Workload::Mixed)
    }
}

/// Which keys the writes go to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum KeySpace {
    /// Every write creates a new key
    Unique,
    /// Writes overwrite keys drawn uniformly from `--keys`
    Random,
}

/// One request of the load.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Put(u64),
    Get(u64),
}

/// The shape of the load, shared (read-only) by every client.
#[derive(Debug, Clone)]
pub struct Mix {
    pub workload: Workload,
    pub key_space: KeySpace,
    /// Width of every key, in characters.
    pub key_size: usize,
    /// How many distinct keys `random` writes and all reads draw from.
    pub keys: u64,
    /// Share of reads in `mixed`, in [0, 1].
    pub read_ratio: f64,
}

impl Mix {
    /// Checks that the keys fit their width; returns a message for the user otherwise.
    pub fn validate(&self) -> Result<(), String> {
        if self.key_size == 0 {
            return Err("--key-size must be at least 1".into());
        }
        if self.keys == 0 {
            return Err("--keys must be at least 1".into());
        }
        if !(0.0..=1.0).contains(&self.read_ratio) {
            return Err(format!("--read-ratio must be between 0 and 1, not {}", self.read_ratio));
        }
        let needed = hex_digits(self.keys - 1);
        if needed > self.key_size {
            return Err(format!("--keys {} needs keys of {needed} characters; raise --key-size", self.keys));
        }
        Ok(())
    }

    /// The name of key number `index`: zero-padded hex, `key_size` characters (wider only when a
    /// unique-key run outgrows them, which keeps keys unique).
    pub fn key_name(&self, index: u64) -> String {
        format!("{index:0width$x}", width = self.key_size)
    }
}

fn hex_digits(value: u64) -> usize {
    (64 - value.leading_zeros() as usize).div_ceil(4).max(1)
}

/// The next operations of one client.
pub struct OpSource {
    mix: Mix,
    rng: XorShift,
    /// Unique keys are `client + n * clients`: disjoint between clients without a shared counter.
    next_unique: u64,
    stride: u64,
}

impl OpSource {
    pub fn new(mix: Mix, client: usize, clients: usize) -> Self {
        OpSource {
            mix,
            rng: XorShift::seeded(client as u64),
            next_unique: client as u64,
            stride: clients.max(1) as u64,
        }
    }

    pub fn next_op(&mut self) -> Op {
        let read = match self.mix.workload {
            Workload::Put => false,
            Workload::Get => true,
            Workload::Mixed => self.rng.unit() < self.mix.read_ratio,
        };
        if read {
            return Op::Get(self.rng.below(self.mix.keys));
        }
        match self.mix.key_space {
            KeySpace::Unique => {
                let index = self.next_unique;
                self.next_unique += self.stride;
                Op::Put(index)
            }
            KeySpace::Random => Op::Put(self.rng.below(self.mix.keys)),
        }
    }
}

/// A value of `size` printable bytes, the same for every request (shared, never copied).
pub fn value_of_size(size: usize) -> Bytes {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    (0..size).map(|i| ALPHABET[i % ALPHABET.len()]).collect::<Vec<u8>>().into()
}

/// xorshift64*: plenty for picking keys, and deterministic per client.
struct XorShift(u64);

impl XorShift {
    fn seeded(seed: u64) -> Self {
        // Any non-zero state works; the odd constant spreads small seeds apart.
        XorShift(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in [0, bound); the modulo bias is negligible for bounds far below 2^64.
    fn below(&mut self, bound: u64) -> u64 {
        self.next_u64() % bound.max(1)
    }

    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    fn mix(workload: Workload, key_space: KeySpace) -> Mix {
        Mix { workload, key_space, key_size: 8, keys: 100, read_ratio: 0.9 }
    }

    #[test]
    fn keys_are_fixed_width_hex() {
        let mix = mix(Workload::Put, KeySpace::Unique);
        assert_eq!(mix.key_name(0), "00000000");
        assert_eq!(mix.key_name(255), "000000ff");
        assert_eq!(mix.key_name(u64::from(u32::MAX) + 1), "100000000");
    }

    #[test]
    fn too_many_keys_for_their_width_is_refused() {
        let mut mix = mix(Workload::Get, KeySpace::Random);
        mix.key_size = 2;
        mix.keys = 256;
        assert!(mix.validate().is_ok());
        mix.keys = 257;
        assert!(mix.validate().unwrap_err().contains("--key-size"));
        mix.read_ratio = 1.5;
        mix.keys = 1;
        assert!(mix.validate().unwrap_err().contains("--read-ratio"));
    }

    #[test]
    fn unique_puts_never_collide_across_clients() {
        let mut seen = HashSet::new();
        for client in 0..4 {
            let mut source = OpSource::new(mix(Workload::Put, KeySpace::Unique), client, 4);
            for _ in 0..1000 {
                let Op::Put(index) = source.next_op() else { panic!("a put workload read") };
                assert!(seen.insert(index), "key {index} written twice");
            }
        }
    }

    #[test]
    fn reads_and_random_puts_stay_in_the_key_space() {
        let mut source = OpSource::new(mix(Workload::Mixed, KeySpace::Random), 3, 8);
        let (mut reads, mut writes) = (0, 0);
        for _ in 0..10_000 {
            match source.next_op() {
                Op::Get(index) => {
                    assert!(index < 100);
                    reads += 1;
                }
                Op::Put(index) => {
                    assert!(index < 100);
                    writes += 1;
                }
            }
        }
        let ratio = f64::from(reads) / f64::from(reads + writes);
        assert!((0.87..0.93).contains(&ratio), "read ratio {ratio}");
    }

    #[test]
    fn values_have_the_asked_size() {
        assert_eq!(value_of_size(128).len(), 128);
        assert!(value_of_size(0).is_empty());
        assert!(value_of_size(100).is_ascii());
    }
}
