//! Benchmark: gridsync's photo pipeline against ImageMagick.
//!
//! ```text
//! cargo run --release -p gridsync-bench --bin photo -- [--runs N] [FILE]
//! ```
//!
//! Each run is one child process, so that wall time and peak memory (max RSS, from `wait4`)
//! belong to that run alone: this binary re-executes itself as `photo --child IN OUT` (read the
//! file, `gridsync_media::process`, write the photo JPEG) and runs
//! `/usr/bin/convert IN -auto-orient -resize 1600x1600 -strip -quality 80 OUT`, interleaved.
//! Prints medians and the ratios gridsync/convert against the goal (<= 0.5 for both). Also runs
//! the decompression-bomb PNG through the child and reports its max RSS (goal < 200 MB).
//! Prints figures only; nothing here fails on timing.

use std::fs::File;
use std::io;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use gridsync_bench::{median, verdict, workspace_root, Args};
use gridsync_media::Limits;

const CONVERT: &str = "/usr/bin/convert";
const DEFAULT_FILE: &str = "fixtures/photos/garbage-12mp-rot6.jpg";
const BOMB_FILE: &str = "fixtures/photos/bomb-40000x40000.png";
const GOAL_RATIO: f64 = 0.5;
const BOMB_GOAL_MB: f64 = 200.0;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--child") {
        return child(&args[1..]);
    }
    if args.iter().any(|a| a == "-h" || a == "--help") {
        println!("usage: photo [--runs N] [FILE]\n  default FILE: {DEFAULT_FILE} (relative to the workspace root); default N: 5");
        return ExitCode::SUCCESS;
    }
    match parent(args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("photo: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `--child IN OUT`: one run of the gridsync pipeline. Prints `WIDTHxHEIGHT` of the stored
/// photo; on a refused input prints the error and exits 1.
fn child(args: &[String]) -> ExitCode {
    let [input, output] = args else {
        eprintln!("usage: photo --child IN OUT");
        return ExitCode::from(2);
    };
    let bytes = match std::fs::read(input) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("{input}: {e}");
            return ExitCode::from(2);
        }
    };
    match gridsync_media::process(&bytes, &Limits::default()) {
        Ok(out) => {
            if let Err(e) = std::fs::write(output, &out.photo.bytes) {
                eprintln!("{output}: {e}");
                return ExitCode::from(2);
            }
            println!("{}x{}", out.photo.width, out.photo.height);
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{input}: {e}");
            ExitCode::FAILURE
        }
    }
}

/// What one child process cost.
#[derive(Debug, Clone, Copy)]
struct Run {
    status: ExitStatus,
    wall: Duration,
    /// Peak resident set size, bytes.
    max_rss: u64,
    /// User + system CPU time.
    cpu: Duration,
}

/// Waits for child `pid` and returns its exit status and resource usage.
///
/// `wait4` is the one call that reports a single child's own rusage (`getrusage(RUSAGE_CHILDREN)`
/// mixes all reaped children and keeps only the largest max RSS), hence the unsafe code here,
/// kept to this function: both pointers are to live, writable locals of the right types.
#[allow(unsafe_code)]
fn wait4(pid: u32) -> io::Result<(ExitStatus, libc::rusage)> {
    let pid = libc::pid_t::try_from(pid).map_err(io::Error::other)?;
    let mut status: libc::c_int = 0;
    // SAFETY: rusage is a plain C struct of integers, for which all-zero bytes are valid.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    loop {
        // SAFETY: `status` and `usage` are valid for writes for the duration of the call.
        let r = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
        if r == pid {
            return Ok((ExitStatus::from_raw(status), usage));
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

fn tv(t: libc::timeval) -> Duration {
    Duration::from_secs(t.tv_sec.max(0) as u64) + Duration::from_micros(t.tv_usec.max(0) as u64)
}

/// Runs `cmd` to completion with stdout and stderr sent to files, timing it and reaping it
/// with `wait4`. The `Child` is never waited on through std (it is already reaped).
fn measure(mut cmd: Command, stdout: &Path, stderr: &Path) -> io::Result<Run> {
    cmd.stdin(Stdio::null())
        .stdout(File::create(stdout)?)
        .stderr(File::create(stderr)?);
    let start = Instant::now();
    let child = cmd.spawn()?;
    let (status, usage) = wait4(child.id())?;
    let wall = start.elapsed();
    Ok(Run {
        status,
        wall,
        // Linux reports ru_maxrss in KiB.
        max_rss: usage.ru_maxrss.max(0) as u64 * 1024,
        cpu: tv(usage.ru_utime) + tv(usage.ru_stime),
    })
}

fn mb(bytes: u64) -> f64 {
    bytes as f64 / 1e6
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

struct Bench {
    exe: PathBuf,
    dir: tempfile::TempDir,
}

impl Bench {
    fn gridsync(&self, input: &Path, out: &Path) -> io::Result<Run> {
        let mut cmd = Command::new(&self.exe);
        cmd.arg("--child").arg(input).arg(out);
        measure(
            cmd,
            &self.path("gridsync.stdout"),
            &self.path("gridsync.stderr"),
        )
    }

    fn convert(&self, input: &Path, out: &Path) -> io::Result<Run> {
        let mut cmd = Command::new(CONVERT);
        cmd.arg(input)
            .args([
                "-auto-orient",
                "-resize",
                "1600x1600",
                "-strip",
                "-quality",
                "80",
            ])
            .arg(out);
        measure(
            cmd,
            &self.path("convert.stdout"),
            &self.path("convert.stderr"),
        )
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn tail(&self, name: &str) -> String {
        std::fs::read_to_string(self.path(name))
            .unwrap_or_default()
            .trim()
            .to_owned()
    }

    /// Fails unless the run succeeded, with the child's stderr.
    fn check(&self, who: &str, run: &Run) -> Result<(), String> {
        if run.status.success() {
            return Ok(());
        }
        Err(format!(
            "{who} failed ({}): {}",
            run.status,
            self.tail(&format!("{who}.stderr"))
        ))
    }
}

/// `WIDTHxHEIGHT` of a JPEG or PNG file, read from its header.
fn dimensions(path: &Path) -> String {
    let limits = Limits {
        max_pixels: u64::MAX,
        max_bytes: u64::MAX,
        ..Limits::default()
    };
    match std::fs::read(path).map(|b| (b.len(), gridsync_media::probe(&b, &limits))) {
        Ok((len, Ok((fmt, w, h)))) => format!("{w}x{h} {fmt}, {len} bytes"),
        Ok((_, Err(e))) => format!("unreadable: {e}"),
        Err(e) => format!("unreadable: {e}"),
    }
}

fn parent(args: Vec<String>) -> Result<ExitCode, Box<dyn std::error::Error>> {
    let args = Args::parse(args, &["--runs"])?;
    let runs: usize = args.get("--runs", 5)?;
    if runs == 0 {
        return Err("--runs must be at least 1".into());
    }
    let input = match args.positional.as_slice() {
        [] => workspace_root().join(DEFAULT_FILE),
        [one] => PathBuf::from(one),
        _ => return Err("give at most one FILE".into()),
    };
    let input = input
        .canonicalize()
        .map_err(|e| format!("{}: {e}", input.display()))?;
    if !Path::new(CONVERT).exists() {
        eprintln!(
            "photo: {CONVERT} (ImageMagick) is missing; install it with\n    apt-get update && apt-get install -y imagemagick\n(/usr/local/bin/convert is a stand-in and is not measured)"
        );
        return Ok(ExitCode::from(2));
    }
    let version = Command::new(CONVERT)
        .arg("-version")
        .output()
        .ok()
        .and_then(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .next()
                .map(str::to_owned)
        })
        .unwrap_or_else(|| "version unknown".into());
    let bench = Bench {
        exe: std::env::current_exe()?,
        dir: tempfile::tempdir()?,
    };
    let out_g = bench.path("gridsync.jpg");
    let out_c = bench.path("convert.jpg");

    println!("photo pipeline: gridsync_media::process vs ImageMagick convert");
    println!("input:    {} ({})", input.display(), dimensions(&input));
    println!(
        "gridsync: {} --child IN OUT  (read, process with Limits::default(), write the photo JPEG)",
        bench.exe.display()
    );
    println!("convert:  {CONVERT} IN -auto-orient -resize 1600x1600 -strip -quality 80 OUT");
    println!("          ({version})");
    println!(
        "method:   {runs} runs each, interleaved (the order alternates each round), after 1 untimed warm-up each;"
    );
    println!("          every run is its own child process; wall = spawn to reaped, max RSS and CPU from wait4");
    println!();

    // Warm-up: page cache for the input, both programs and their libraries.
    bench.check("gridsync", &bench.gridsync(&input, &out_g)?)?;
    bench.check("convert", &bench.convert(&input, &out_c)?)?;

    let mut g = Vec::with_capacity(runs);
    let mut c = Vec::with_capacity(runs);
    println!(
        "{:>5}  {:>12} {:>10} {:>10}   {:>12} {:>10} {:>10}",
        "run", "gridsync ms", "RSS MB", "CPU ms", "convert ms", "RSS MB", "CPU ms"
    );
    for i in 0..runs {
        let (rg, rc) = if i % 2 == 0 {
            let rg = bench.gridsync(&input, &out_g)?;
            (rg, bench.convert(&input, &out_c)?)
        } else {
            let rc = bench.convert(&input, &out_c)?;
            (bench.gridsync(&input, &out_g)?, rc)
        };
        bench.check("gridsync", &rg)?;
        bench.check("convert", &rc)?;
        println!(
            "{:>5}  {:>12.1} {:>10.1} {:>10.1}   {:>12.1} {:>10.1} {:>10.1}",
            i + 1,
            ms(rg.wall),
            mb(rg.max_rss),
            ms(rg.cpu),
            ms(rc.wall),
            mb(rc.max_rss),
            ms(rc.cpu)
        );
        g.push(rg);
        c.push(rc);
    }

    let med = |runs: &[Run], f: fn(&Run) -> f64| {
        median(&runs.iter().map(f).collect::<Vec<_>>()).unwrap_or(f64::NAN)
    };
    let wall = |r: &Run| ms(r.wall);
    let rss = |r: &Run| mb(r.max_rss);
    let cpu = |r: &Run| ms(r.cpu);
    let (gw, gr, gc) = (med(&g, wall), med(&g, rss), med(&g, cpu));
    let (cw, cr, cc) = (med(&c, wall), med(&c, rss), med(&c, cpu));
    println!();
    println!(
        "{:<10} {:>14} {:>16} {:>14}   output",
        "median", "wall ms", "max RSS MB", "CPU ms"
    );
    println!(
        "{:<10} {:>14.1} {:>16.1} {:>14.1}   {} ({})",
        "gridsync",
        gw,
        gr,
        gc,
        dimensions(&out_g),
        bench.tail("gridsync.stdout")
    );
    println!(
        "{:<10} {:>14.1} {:>16.1} {:>14.1}   {}",
        "convert",
        cw,
        cr,
        cc,
        dimensions(&out_c)
    );
    let (rw, rr) = (gw / cw, gr / cr);
    println!();
    println!(
        "ratio gridsync/convert: wall {rw:.2} (goal <= {GOAL_RATIO}: {}), max RSS {rr:.2} (goal <= {GOAL_RATIO}: {}), CPU {:.2} (informative)",
        verdict(rw, GOAL_RATIO),
        verdict(rr, GOAL_RATIO),
        gc / cc
    );

    // The decompression bomb: must be refused from the header, with bounded memory.
    let bomb = workspace_root().join(BOMB_FILE);
    let bomb = bomb
        .canonicalize()
        .map_err(|e| format!("{}: {e}", bomb.display()))?;
    let out_b = bench.path("bomb.jpg");
    let mut b = Vec::with_capacity(runs);
    for _ in 0..runs {
        b.push(bench.gridsync(&bomb, &out_b)?);
    }
    let (bw, br) = (med(&b, wall), med(&b, rss));
    let refused = b.iter().all(|r| !r.status.success());
    println!();
    println!("bomb:     {} ({})", bomb.display(), dimensions(&bomb));
    println!(
        "          gridsync child, {runs} runs: {} ({}); median wall {bw:.1} ms, median max RSS {br:.1} MB (goal < {BOMB_GOAL_MB} MB: {})",
        b.last().map_or_else(|| "?".into(), |r| r.status.to_string()),
        if refused { "refused, as expected" } else { "NOT refused" },
        if br < BOMB_GOAL_MB { "PASS" } else { "MISS" },
    );
    println!("          child stderr: {}", bench.tail("gridsync.stderr"));
    Ok(ExitCode::SUCCESS)
}
