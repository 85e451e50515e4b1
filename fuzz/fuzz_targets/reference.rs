//! Image references: parsing never panics, and a parsed reference prints as a name
//! that parses back to itself.
#![no_main]
use libfuzzer_sys::fuzz_target;
use rootfs_cache::reference::ImageRef;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(r) = ImageRef::parse(s) {
        let name = r.to_string();
        let again = ImageRef::parse(&name).expect("a normalised name parses");
        assert_eq!(again.to_string(), name);
        assert_eq!(again.registry(), r.registry());
        assert_eq!(again.repository(), r.repository());
    }
});
