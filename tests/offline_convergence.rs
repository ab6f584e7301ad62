//! Three handhelds work offline on the same incident, edit it concurrently, then exchange
//! their logs in every order (some twice). Whatever the order, all three stores end with the
//! same incident JSON, the concurrent edit shown as a conflict, and every photo's blobs.

use std::path::{Path, PathBuf};

use gridsync_core::{BlobHash, Category, Change, NodeId, PhotoKind, Severity, Status};
use gridsync_device::{Device, FixedEnv, NewReport, PhotoInput};
use gridsync_scenarios::{admit_from, hand_over_at, incident_json};
use gridsync_store::Store;

const T0: u64 = 1_764_000_000_000;

/// Every hand-over happens a minute after the story starts, on the receiver's clock.
fn hand_over(from: &Path, to: &Path) -> usize {
    hand_over_at(from, to, T0 + 60_000)
}

fn fixture(name: &str) -> PhotoInput {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/photos")
        .join(name);
    PhotoInput::from_path(&path, &Default::default()).expect("fixture photo")
}

struct Pda {
    path: PathBuf,
}

impl Pda {
    fn open(&self, now: u64) -> Device<FixedEnv> {
        Device::open_with(&self.path, FixedEnv::new(now, 1)).expect("open device")
    }
}

fn three_pdas(dir: &Path) -> Vec<Pda> {
    ["wang-li", "zhao-min", "sub-center"]
        .iter()
        .enumerate()
        .map(|(i, name)| {
            let path = dir.join(format!("{name}.db"));
            let env = FixedEnv::new(T0, 100 + i as u64);
            if *name == "sub-center" {
                // The sub-center makes the decision (accepting): a relay's store.
                Device::init_node(&path, name, "street", "110101/002", env).expect("init");
            } else {
                Device::init_with(&path, name, "110101/002/014/03".parse().expect("grid"), env)
                    .expect("init");
            }
            Pda { path }
        })
        .collect()
}

/// Builds the shared history: A reports with a photo; everyone gets it; then, offline, B and
/// C both rewrite the description, C accepts, A adds an after photo while B removes the first
/// one, and A comments. Returns the incident's first photo hash.
fn diverge(p: &[Pda]) -> BlobHash {
    let mut a = p[0].open(T0 + 1_000);
    let id = a
        .report(NewReport {
            category: Category::from_catalogue("garbage").expect("category"),
            description: "Bags by the gate".into(),
            location: None,
            severity: Severity::Normal,
            observed_at: None,
            photos: vec![fixture("street-640x427-gps.jpg")],
        })
        .expect("report");
    let first = a.get(id).expect("get").expect("incident").view().photos[0]
        .hash
        .parse()
        .expect("hash");
    drop(a);
    hand_over(&p[0].path, &p[1].path);
    hand_over(&p[0].path, &p[2].path);

    // Offline and concurrent from here on. Clocks differ by seconds, as real ones do.
    let mut b = p[1].open(T0 + 5_000);
    b.edit(
        id,
        vec![Change::Description("Six bags by the east gate".into())],
        vec![],
    )
    .expect("b edits");
    b.edit(id, vec![Change::RemovePhoto(first)], vec![])
        .expect("b removes the photo");
    let mut c = p[2].open(T0 + 3_000);
    c.edit(
        id,
        vec![
            Change::Description("Bags and a broken chair by the gate".into()),
            Change::Status(Status::Accepted),
        ],
        vec![],
    )
    .expect("c edits");
    let mut a = p[0].open(T0 + 4_000);
    a.edit(
        id,
        vec![Change::Comment("More bags this morning".into())],
        vec![(fixture("cat-2400x1600-rot8.jpg"), Some(PhotoKind::Before))],
    )
    .expect("a adds");
    first
}

#[test]
fn any_exchange_order_converges_with_the_conflict_visible() {
    let orders: [&[(usize, usize)]; 3] = [
        &[(0, 1), (1, 2), (2, 0), (0, 1)],
        &[(2, 1), (1, 0), (0, 2), (2, 1), (2, 1)],
        &[(1, 2), (0, 2), (2, 0), (2, 1), (1, 0)],
    ];
    let mut finals = Vec::new();
    for order in orders {
        let dir = tempfile::tempdir().expect("temp dir");
        let pdas = three_pdas(dir.path());
        let removed = diverge(&pdas);
        for &(from, to) in order {
            hand_over(&pdas[from].path, &pdas[to].path);
        }
        let views: Vec<_> = pdas.iter().map(|p| incident_json(&p.path)).collect();
        assert_eq!(views[0], views[1], "A and B differ after {order:?}");
        assert_eq!(views[1], views[2], "B and C differ after {order:?}");

        let incident = views[0]
            .as_object()
            .and_then(|m| m.values().next())
            .expect("one incident");
        let conflicts = incident["conflicts"].as_array().expect("conflicts");
        assert_eq!(conflicts.len(), 1, "{conflicts:?}");
        assert_eq!(conflicts[0]["field"], "description");
        // B's write is stamped later (its clock read T0 + 5 s): it wins, C's is kept visible.
        assert_eq!(conflicts[0]["kept"], "Six bags by the east gate");
        assert_eq!(conflicts[0]["lost"], "Bags and a broken chair by the gate");
        assert_eq!(conflicts[0]["lost_by"], "sub-center");
        assert_eq!(incident["status"], "accepted");
        // B removed the first photo; A's concurrent add of another one stays.
        let photos = incident["photos"].as_array().expect("photos");
        assert_eq!(photos.len(), 1);
        assert_ne!(photos[0]["hash"], removed.to_hex());
        assert_eq!(
            (&photos[0]["width"], &photos[0]["height"]),
            (&1067.into(), &1600.into())
        );
        assert_eq!(incident["comments"].as_array().map(Vec::len), Some(1));
        assert_eq!(incident["event_count"], 8);

        for p in &pdas {
            let store = Store::open(&p.path).expect("open");
            for photo in photos {
                let hash: BlobHash = photo["hash"].as_str().expect("hash").parse().expect("hex");
                let bytes = store
                    .blob(&hash)
                    .expect("read")
                    .expect("photo blob present");
                assert_eq!(BlobHash::of(&bytes), hash);
                let thumb: BlobHash = photo["thumb"]
                    .as_str()
                    .expect("thumb")
                    .parse()
                    .expect("hex");
                assert!(
                    store.blob(&thumb).expect("read").is_some(),
                    "thumbnail present"
                );
            }
        }
        // Handing everything over again changes nothing anywhere.
        for (from, to) in [(0, 1), (1, 2), (2, 0)] {
            assert_eq!(hand_over(&pdas[from].path, &pdas[to].path), 0);
        }
        finals.push(views.into_iter().next().expect("view"));
    }
    // Separate runs with the same seeds and clocks give the same events, hence the same JSON
    // except for the incident id's random part, which is seeded too: compare whole documents.
    assert_eq!(finals[0], finals[1]);
    assert_eq!(finals[1], finals[2]);
}

#[test]
fn a_settling_edit_after_seeing_both_clears_the_conflict_everywhere() {
    let dir = tempfile::tempdir().expect("temp dir");
    let pdas = three_pdas(dir.path());
    diverge(&pdas);
    hand_over(&pdas[1].path, &pdas[2].path);
    hand_over(&pdas[0].path, &pdas[2].path);
    // The sub-center has seen both descriptions and settles it.
    let mut c = pdas[2].open(T0 + 60_000);
    let id = c.list().expect("list")[0].id;
    assert_eq!(
        c.get(id)
            .expect("get")
            .expect("incident")
            .view()
            .conflicts
            .len(),
        1
    );
    c.edit(
        id,
        vec![Change::Description(
            "Six bags and a chair by the east gate".into(),
        )],
        vec![],
    )
    .expect("settle");
    drop(c);
    for (from, to) in [(2, 0), (2, 1), (0, 1), (1, 0)] {
        hand_over(&pdas[from].path, &pdas[to].path);
    }
    for p in &pdas {
        let json = incident_json(&p.path);
        let incident = json
            .as_object()
            .and_then(|m| m.values().next())
            .expect("incident");
        assert_eq!(
            incident["description"],
            "Six bags and a chair by the east gate"
        );
        assert_eq!(incident["conflicts"], serde_json::json!([]));
    }
}

#[test]
fn a_handheld_with_a_clock_an_hour_fast_is_refused_and_nothing_is_taken() {
    let dir = tempfile::tempdir().expect("temp dir");
    let pdas = three_pdas(dir.path());
    // wang-li's clock runs an hour fast.
    let mut a = pdas[0].open(T0 + 3_600_000);
    a.report(NewReport {
        category: Category::from_catalogue("fire-hazard").expect("category"),
        description: "Gas cylinders in the stairwell".into(),
        location: None,
        severity: Severity::High,
        observed_at: None,
        photos: vec![],
    })
    .expect("report");
    drop(a);
    let before = incident_json(&pdas[1].path);
    let b = Store::open(&pdas[1].path).expect("open");
    let events = Store::open(&pdas[0].path)
        .expect("open")
        .incidents()
        .expect("list")
        .iter()
        .flat_map(|s| {
            Store::open(&pdas[0].path)
                .expect("open")
                .events_of(&s.id)
                .expect("events")
        })
        .collect::<Vec<_>>();
    let err =
        admit_from(NodeId([1; 32]), &events, T0 + 60_000).expect_err("an hour ahead is refused");
    assert!(
        matches!(err, gridsync_proto::AdmitError::ClockAhead { .. }),
        "{err}"
    );
    assert!(err.to_string().contains("ahead"), "{err}");
    drop(b);
    assert_eq!(incident_json(&pdas[1].path), before);
    // Once the receiver's clock has caught up, the same batch is taken.
    assert_eq!(
        hand_over_at(&pdas[0].path, &pdas[1].path, T0 + 3_600_000),
        1
    );
}
