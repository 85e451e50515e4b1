//! `WWW-Authenticate` values from a registry's 401: parsing never panics, and a Bearer
//! challenge always has its realm.
#![no_main]
use libfuzzer_sys::fuzz_target;
use rootfs_cache::auth::{Challenge, parse_challenge};

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    if let Some(Challenge::Bearer { realm, .. }) = parse_challenge(s) {
        assert!(s.to_ascii_lowercase().contains("realm"), "{s:?} -> {realm:?}");
    }
});
