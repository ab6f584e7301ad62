//! `decode_state` must never panic, and whatever it accepts (a cache nothing vouches for) must
//! survive a re-encode and rendering the incident JSON.
#![no_main]

use gridsync_core::codec;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(state) = codec::decode_state(data) else {
        return;
    };
    let again = codec::encode_state(&state).expect("a decoded state re-encodes");
    assert_eq!(codec::decode_state(&again).as_ref(), Ok(&state));
    let _ = state.view();
    let _ = state.visible_photos();
});
