//! Byte helpers shared by the golden-vector and never-panic tests of the core codec and of the
//! wire protocol (`crates/proto/tests` includes this file by path): a seeded generator, a
//! mutator of encodings, a hex dump, and the compare-or-bless check of a golden file.

// Each including test file uses a different subset.
#![allow(dead_code)]

use std::path::Path;

/// xorshift64 with a fixed seed: the same bytes on every run.
pub struct XorShift {
    state: u64,
    /// Bytes the format under test is touchy about, drawn a third of the time.
    interesting: &'static [u8],
}

impl XorShift {
    pub fn new(seed: u64, interesting: &'static [u8]) -> Self {
        Self {
            state: seed,
            interesting,
        }
    }

    pub fn next(&mut self) -> u64 {
        self.state ^= self.state << 13;
        self.state ^= self.state >> 7;
        self.state ^= self.state << 17;
        self.state
    }

    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    pub fn byte(&mut self) -> u8 {
        if self.below(3) == 0 {
            self.interesting[self.below(self.interesting.len())]
        } else {
            self.next() as u8
        }
    }
}

/// One random edit of `bytes`: flip a bit, replace, insert or delete bytes, truncate, write a
/// run of one byte, the format's own edit (`special`, which returns whether it applied), or
/// splice on the tail of one of `seeds`.
pub fn mutate(
    bytes: &mut Vec<u8>,
    rng: &mut XorShift,
    seeds: &[&[u8]],
    special: impl FnOnce(&mut Vec<u8>, &mut XorShift) -> bool,
) {
    let len = bytes.len();
    match rng.below(8) {
        0 if len > 0 => {
            let i = rng.below(len);
            bytes[i] ^= 1 << rng.below(8);
        }
        1 if len > 0 => {
            let i = rng.below(len);
            bytes[i] = rng.byte();
        }
        2 => {
            let i = rng.below(len + 1);
            let b = rng.byte();
            bytes.insert(i, b);
        }
        3 if len > 0 => {
            let i = rng.below(len);
            let n = 1 + rng.below((len - i).min(16));
            bytes.drain(i..i + n);
        }
        4 => {
            let keep = rng.below(len + 1);
            bytes.truncate(keep);
        }
        5 if len > 0 => {
            // A run of one byte: e.g. a length prefix turned into 0xfd 0xff 0xff ...
            let i = rng.below(len);
            let b = rng.byte();
            for x in bytes.iter_mut().skip(i).take(1 + rng.below(9)) {
                *x = b;
            }
        }
        6 if special(bytes, rng) => {}
        _ => {
            // Splice the tail of another seed on.
            let other = seeds[rng.below(seeds.len())];
            let from = rng.below(other.len());
            let at = rng.below(len + 1);
            bytes.truncate(at);
            bytes.extend_from_slice(&other[from..]);
        }
    }
}

/// `bytes` as lines of 16 hex bytes with their offset.
pub fn hexdump(bytes: &[u8]) -> String {
    let mut out = String::new();
    for (i, line) in bytes.chunks(16).enumerate() {
        let hex: Vec<String> = line.iter().map(|b| format!("{b:02x}")).collect();
        out.push_str(&format!("{:04x}  {}\n", i * 16, hex.join(" ")));
    }
    out
}

/// Compares `encoded` with the golden file `dir/name` (whose bytes, compiled in, are
/// `golden`); when `bless` is set, rewrites the file instead. `hint` says what to do when the
/// change is intended.
pub fn check_golden(
    dir: &Path,
    name: &str,
    golden: &[u8],
    encoded: &[u8],
    bless: bool,
    hint: &str,
) {
    if bless {
        if encoded != golden {
            std::fs::write(dir.join(name), encoded).expect("write golden file");
        }
        return;
    }
    assert!(
        encoded == golden,
        "{name}: the encoding changed.\nexpected (file):\n{}got:\n{}{hint}",
        hexdump(golden),
        hexdump(encoded),
    );
}

/// The names of the files in `dir`, sorted.
pub fn files_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| {
            e.expect("dir entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    names.sort();
    names
}
