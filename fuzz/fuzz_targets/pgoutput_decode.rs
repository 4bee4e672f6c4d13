//! `cargo +nightly fuzz run pgoutput_decode`: the decoder must never panic, and whatever it
//! accepts must survive an encode/decode round trip unchanged.

#![no_main]

use bytes::Bytes;
use freshet::source::pgoutput::{decode, encode};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(msg) = decode(Bytes::copy_from_slice(data)) {
        assert_eq!(decode(Bytes::from(encode(&msg))), Ok(msg));
    }
});
