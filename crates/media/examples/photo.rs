//! Runs the photo pipeline on one file, for manual checks and rough timing:
//!
//! ```text
//! cargo run --release -p gridsync-media --example photo -- IN.jpg [PHOTO_OUT.jpg [THUMB_OUT.jpg]]
//! ```
//!
//! Prints what `process` returned and how long it took (reading and writing the files are not
//! timed). Under `/usr/bin/time -v` it gives the peak memory of one whole run.

use std::process::ExitCode;
use std::time::Instant;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(input) = args.first() else {
        eprintln!("usage: photo IN [PHOTO_OUT [THUMB_OUT]]");
        return ExitCode::from(2);
    };
    let bytes = match std::fs::read(input) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("{input}: {e}");
            return ExitCode::FAILURE;
        }
    };
    let start = Instant::now();
    let result = gridsync_media::process(&bytes, &gridsync_media::Limits::default());
    let elapsed = start.elapsed();
    match result {
        Ok(out) => {
            println!(
                "{input}: {} {}x{} -> photo {}x{} ({} bytes, {}), thumb {}x{} ({} bytes); exif {:?}; {:.1} ms",
                out.source,
                out.source_width,
                out.source_height,
                out.photo.width,
                out.photo.height,
                out.photo.bytes.len(),
                out.photo.hash,
                out.thumb.width,
                out.thumb.height,
                out.thumb.bytes.len(),
                out.exif,
                elapsed.as_secs_f64() * 1e3
            );
            for (path, blob) in args.iter().skip(1).zip([&out.photo, &out.thumb]) {
                if let Err(e) = std::fs::write(path, &blob.bytes) {
                    eprintln!("{path}: {e}");
                    return ExitCode::FAILURE;
                }
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{input}: {e} ({:.1} ms)", elapsed.as_secs_f64() * 1e3);
            ExitCode::FAILURE
        }
    }
}
