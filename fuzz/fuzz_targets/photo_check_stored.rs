//! `gridsync_media::check_stored`, a parent's check of an uploaded photo or thumbnail blob,
//! never panics for either kind. What it accepts is within the kind's side bound; a thumbnail
//! it accepts is also a photo it accepts (same form, smaller bound); and an accepted blob can
//! go through the pipeline again.
#![no_main]

use gridsync_media::{check_stored, process, Limits, StoredKind};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let photo = check_stored(StoredKind::Photo, data);
    let thumb = check_stored(StoredKind::Thumb, data);
    for (kind, result) in [(StoredKind::Photo, &photo), (StoredKind::Thumb, &thumb)] {
        match result {
            Ok(facts) => {
                assert!(facts.width >= 1 && facts.height >= 1);
                assert!(facts.width.max(facts.height) <= kind.max_side());
            }
            Err(e) => {
                let text = e.to_string();
                assert!(
                    !text.is_empty() && !text.contains('\n'),
                    "one line: {text:?}"
                );
            }
        }
    }
    if let Ok(t) = thumb {
        assert_eq!(
            photo.as_ref(),
            Ok(&t),
            "an accepted thumbnail is an accepted photo"
        );
    }
    if photo.is_ok() {
        if let Err(e) = process(data, &Limits::default()) {
            panic!("a blob check_stored accepts does not process again: {e}");
        }
    }
});
