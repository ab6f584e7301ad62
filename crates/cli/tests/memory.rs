//! Peak memory of the photo pipeline, measured on the real binary.
//!
//! This file holds a single test so that no other child process of this test binary shares the
//! measurement: `getrusage(RUSAGE_CHILDREN)` reports the largest peak resident set of all the
//! children waited for so far.

// The one libc call below (`getrusage`) needs `unsafe`; it only fills a plain C struct that we
// own, and nothing else in this file is unsafe.
#![allow(unsafe_code)]

mod common;

use common::{fixture, Gs};

const MB: u64 = 1024 * 1024;

/// The largest peak resident set size, in bytes, of any child process waited for so far.
fn children_peak_rss() -> u64 {
    // SAFETY: `getrusage` writes a `struct rusage` into the zeroed, properly aligned buffer we
    // pass and nothing else; `rusage` is plain integers, valid once the call returned 0.
    let usage = unsafe {
        let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
        let rc = libc::getrusage(libc::RUSAGE_CHILDREN, usage.as_mut_ptr());
        assert_eq!(
            rc,
            0,
            "getrusage failed: {}",
            std::io::Error::last_os_error()
        );
        usage.assume_init()
    };
    let max_rss = u64::try_from(usage.ru_maxrss).expect("ru_maxrss is not negative");
    // Linux reports kilobytes; macOS reports bytes.
    if cfg!(target_os = "macos") {
        max_rss
    } else {
        max_rss * 1024
    }
}

#[test]
fn photo_pipeline_memory_stays_bounded() {
    let (gs, _) = Gs::init(); // a tiny child
    let before = gs.snapshot();

    // A 194 KB PNG declaring 40000x40000 pixels (6.4 GB of RGBA if decoded).
    let bomb = fixture("bomb-40000x40000.png");
    let line = gs.fail(&[
        "report",
        "--category",
        "garbage",
        "--description",
        "bomb",
        "--photo",
        bomb.to_str().expect("utf-8 path"),
    ]);
    assert!(
        line.contains("bomb-40000x40000.png"),
        "the error should name the file: {line}"
    );
    let peak = children_peak_rss();
    assert!(
        peak > MB,
        "implausible peak RSS {peak} bytes: nothing measured?"
    );
    assert!(
        peak < 200 * MB,
        "peak RSS with the bomb is {} MB, over 200 MB",
        peak / MB
    );
    assert_eq!(gs.snapshot(), before, "the refused bomb changed the store");

    // A real 12 MP photo (48 MB as RGBA) goes through in well under that.
    let big = fixture("garbage-12mp-rot6.jpg");
    gs.report(&[
        "--category",
        "garbage",
        "--description",
        "12 MP",
        "--photo",
        big.to_str().expect("utf-8 path"),
    ]);
    let peak = children_peak_rss();
    assert!(
        peak < 150 * MB,
        "peak RSS with the 12 MP photo is {} MB, over 150 MB",
        peak / MB
    );
    assert_eq!(gs.status()["incidents"], serde_json::json!(1));
}
