//! Manifests, indexes and image configs as a registry may send them: parsing never
//! panics, whatever the bytes and the Content-Type.
#![no_main]
use libfuzzer_sys::fuzz_target;
use rootfs_cache::manifest::{self, Parsed, Platform};

const TYPES: [Option<&str>; 5] = [
    None,
    Some("application/vnd.oci.image.index.v1+json"),
    Some("application/vnd.oci.image.manifest.v1+json"),
    Some("application/vnd.docker.distribution.manifest.v2+json"),
    Some("application/vnd.docker.distribution.manifest.v1+prettyjws"),
];

fuzz_target!(|data: &[u8]| {
    let Some((&sel, bytes)) = data.split_first() else {
        return;
    };
    let ct = TYPES[usize::from(sel) % TYPES.len()];
    match manifest::parse(bytes, ct) {
        Ok(Parsed::Index(index)) => {
            for p in ["linux/amd64", "linux/arm64", "linux/arm/v7"] {
                let _ = manifest::select_platform(&index, &p.parse::<Platform>().unwrap());
            }
        }
        Ok(Parsed::Image(m)) => {
            let _ = manifest::parse_config(bytes, m.layers.len());
        }
        Err(_) => {}
    }
    let _ = manifest::parse_config(bytes, usize::from(sel % 4));
});
