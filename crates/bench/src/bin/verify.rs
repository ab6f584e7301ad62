//! Benchmark: what event signatures cost.
//!
//! ```text
//! cargo run --release -p gridsync-bench --bin verify -- [--rounds 20] [--batch 512]
//! ```
//!
//! - **sign**: `Writer::write` of a report event with and without a signing key (what a device
//!   report adds, per event).
//! - **admit**: `Admission::admit` of a `batch`-event upload (decode, rules, signature, scope,
//!   clock), as a parent runs it on every `Events` batch, against the same checks without the
//!   signature (events admitted under the unsigned opt-in), in events/s.
//! - **authz**: the signed batch from a street child, each origin checked against the node
//!   records that vouch for it (PROTOCOL.md §8.9), against signatures alone.
//! - **verify**: the signatures alone, one by one (`Event::verify`, what admission uses)
//!   against one Ed25519 batch verification (`gridsync_core::verify_batch`), in events/s.
//!
//! Events come from 16 origins, as a street's upload would. Prints medians over `rounds`;
//! asserts nothing about timing.

use std::process::ExitCode;
use std::time::Instant;

use gridsync_bench::{median, Args};
use gridsync_core::{
    codec, hlc, Category, Event, Hlc, IncidentId, NodeId, Payload, Report, Scope, Severity, Writer,
};
use gridsync_proto::{Admission, Origins};

type Error = Box<dyn std::error::Error>;

const NOW: u64 = 1_790_000_000_000;

fn report(i: usize) -> Result<Payload, Error> {
    Ok(Payload::Reported(Report {
        category: Category::from_catalogue("garbage")?,
        description: format!("Bags piled by the east gate, report {i}"),
        location: None,
        observed_at: None,
        severity: Severity::Normal,
    }))
}

fn events(n: usize, signed: bool) -> Result<Vec<Event>, Error> {
    let grid = "110101/002/014/03".parse()?;
    let mut writers: Vec<Writer> = (0..16u8)
        .map(|k| {
            let secret = [k + 1; 32];
            if signed {
                Writer::signing(&secret, "patrol", 1, Hlc::default())
            } else {
                Writer::new(NodeId::from_secret(&secret), "patrol", 1, Hlc::default())
            }
        })
        .collect();
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let w = &mut writers[i % 16];
        let mut random = [0u8; 10];
        random[..8].copy_from_slice(&(i as u64).to_le_bytes());
        out.push(w.write(IncidentId::new_v7(NOW, random), &grid, report(i)?, NOW));
    }
    Ok(out)
}

/// Median seconds of `rounds` runs of `f`.
fn time(rounds: usize, mut f: impl FnMut() -> Result<(), Error>) -> Result<f64, Error> {
    let mut secs = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        let t = Instant::now();
        f()?;
        secs.push(t.elapsed().as_secs_f64());
    }
    median(&secs).ok_or_else(|| "no rounds".into())
}

fn run() -> Result<(), Error> {
    let args = Args::parse(std::env::args().skip(1), &["--rounds", "--batch"])?;
    let rounds: usize = args.get("--rounds", 20)?;
    let batch: usize = args.get("--batch", 512)?;
    let scope: Scope = "110101/002".parse()?;
    let admission = |unsigned: bool| Admission {
        from: NodeId::from_secret(&[99; 32]),
        scope: &scope,
        origins: Origins::Any,
        max_events: batch,
        max_drift_ms: hlc::DEFAULT_MAX_DRIFT_MS,
        accept_unsigned_before: unsigned.then_some(u64::MAX),
        authority: gridsync_proto::Authority::Unchecked,
    };

    let sign_s = time(rounds, || events(batch, true).map(|_| ()))?;
    let plain_s = time(rounds, || events(batch, false).map(|_| ()))?;
    let per_event_us = |s: f64| s / batch as f64 * 1e6;
    println!(
        "sign:   write {batch} events signed {:.1} us/event, unsigned {:.1} us/event: signing adds {:.1} us per event",
        per_event_us(sign_s),
        per_event_us(plain_s),
        per_event_us(sign_s - plain_s)
    );

    let signed = events(batch, true)?;
    let unsigned = events(batch, false)?;
    let bodies = |es: &[Event]| -> Result<Vec<Vec<u8>>, Error> {
        Ok(es
            .iter()
            .map(codec::encode_event)
            .collect::<Result<_, _>>()?)
    };
    let (signed_bodies, unsigned_bodies) = (bodies(&signed)?, bodies(&unsigned)?);
    let with = time(rounds, || {
        admission(false).admit(&signed_bodies, NOW)?;
        Ok(())
    })?;
    let without = time(rounds, || {
        admission(true).admit(&unsigned_bodies, NOW)?;
        Ok(())
    })?;
    // The same signed batch from a street child, each origin checked against node records
    // (PROTOCOL.md §8.9): what authorisation adds on top of the signatures.
    let directory = Street16::new(&scope)?;
    let authorised = time(rounds, || {
        Admission {
            authority: gridsync_proto::Authority::Relay(&directory),
            ..admission(false)
        }
        .admit(&signed_bodies, NOW)?;
        Ok(())
    })?;
    let rate = |s: f64| batch as f64 / s;
    println!(
        "authz:  the signed batch checked against node records {:.0} events/s ({:.2} ms/batch, {:+.1}% over signatures alone)",
        rate(authorised),
        authorised * 1e3,
        (authorised / with - 1.0) * 100.0
    );
    println!(
        "admit:  {batch}-event batch with signatures {:.0} events/s ({:.2} ms/batch), without {:.0} events/s ({:.2} ms/batch)",
        rate(with),
        with * 1e3,
        rate(without),
        without * 1e3
    );

    let single = time(rounds, || {
        for e in &signed {
            e.verify()?;
        }
        Ok(())
    })?;
    let batched = time(rounds, || {
        gridsync_core::verify_batch(&signed)?;
        Ok(())
    })?;
    println!(
        "verify: one by one {:.0} events/s, batch verification {:.0} events/s ({:.2}x)",
        rate(single),
        rate(batched),
        single / batched
    );
    Ok(())
}

/// A district that enrolled the street `[99; 32]`, which sent records for the 16 origins.
struct Street16 {
    street: gridsync_proto::Enrolled,
    records: Vec<gridsync_proto::NodeRecord>,
}

impl Street16 {
    fn new(scope: &Scope) -> Result<Self, Error> {
        let street_key = [99; 32];
        let records = (0..16u8)
            .map(|k| {
                gridsync_proto::NodeRecord::issue(
                    &street_key,
                    NodeId::from_secret(&[k + 1; 32]),
                    gridsync_proto::Role::Device,
                    "110101/002/014/03".parse()?,
                    1,
                    None,
                )
                .map_err(Error::from)
            })
            .collect::<Result<_, Error>>()?;
        Ok(Self {
            street: gridsync_proto::Enrolled {
                node: NodeId::from_secret(&street_key),
                role: gridsync_proto::Role::Street,
                scope: scope.clone(),
            },
            records,
        })
    }
}

impl gridsync_proto::directory::Records for Street16 {
    fn me(&self) -> NodeId {
        NodeId::from_secret(&[98; 32])
    }
    fn enrolled_here(
        &self,
        node: &NodeId,
    ) -> Result<Option<gridsync_proto::Enrolled>, gridsync_proto::StorageError> {
        Ok((*node == self.street.node).then(|| self.street.clone()))
    }
    fn records_about(
        &self,
        node: &NodeId,
    ) -> Result<Vec<gridsync_proto::NodeRecord>, gridsync_proto::StorageError> {
        Ok(self
            .records
            .iter()
            .filter(|r| r.node == *node)
            .cloned()
            .collect())
    }
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("verify: {e}");
            ExitCode::FAILURE
        }
    }
}
