//! Replays the fuzz inputs kept in the repository — the seeds (fuzz/seeds/<target>) and
//! every input that once found a bug (fuzz/regressions/<target>) — through the same
//! checks as the fuzz targets in fuzz/fuzz_targets, on the stable toolchain.

use rootfs_cache::auth::{Challenge, parse_challenge};
use rootfs_cache::manifest::{self, Parsed, Platform};
use rootfs_cache::reference::ImageRef;
use rootfs_cache::unpack::{UnpackOptions, unpack};
use std::path::{Path, PathBuf};

fn inputs(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let fuzz = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz");
    let mut out = Vec::new();
    for kind in ["seeds", "regressions"] {
        let Ok(rd) = std::fs::read_dir(fuzz.join(kind).join(target)) else {
            continue;
        };
        for e in rd.flatten() {
            out.push((e.path(), std::fs::read(e.path()).unwrap()));
        }
    }
    assert!(!out.is_empty(), "no inputs for {target}");
    out
}

#[test]
fn reference() {
    for (path, data) in inputs("reference") {
        let Ok(s) = std::str::from_utf8(&data) else {
            continue;
        };
        if let Ok(r) = ImageRef::parse(s) {
            let name = r.to_string();
            let again = ImageRef::parse(&name)
                .unwrap_or_else(|e| panic!("{}: {name:?} does not parse: {e}", path.display()));
            assert_eq!(again.to_string(), name, "{}", path.display());
            assert_eq!(again.registry(), r.registry(), "{}", path.display());
            assert_eq!(again.repository(), r.repository(), "{}", path.display());
        }
    }
}

#[test]
fn manifest() {
    const TYPES: [Option<&str>; 5] = [
        None,
        Some("application/vnd.oci.image.index.v1+json"),
        Some("application/vnd.oci.image.manifest.v1+json"),
        Some("application/vnd.docker.distribution.manifest.v2+json"),
        Some("application/vnd.docker.distribution.manifest.v1+prettyjws"),
    ];
    for (_, data) in inputs("manifest") {
        let Some((&sel, bytes)) = data.split_first() else {
            continue;
        };
        match manifest::parse(bytes, TYPES[usize::from(sel) % TYPES.len()]) {
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
    }
}

#[test]
fn www_authenticate() {
    for (path, data) in inputs("www_authenticate") {
        let Ok(s) = std::str::from_utf8(&data) else {
            continue;
        };
        if let Some(Challenge::Bearer { .. }) = parse_challenge(s) {
            assert!(
                s.to_ascii_lowercase().contains("realm"),
                "{}",
                path.display()
            );
        }
    }
}

#[test]
fn unpack_raw_tars() {
    // (The fuzz target also builds crafted tars from its input; the raw form is what
    // regressions keep.)
    for (path, data) in inputs("unpack") {
        let outer = tempfile::tempdir().unwrap();
        let layer = outer.path().join("layer");
        std::fs::create_dir(&layer).unwrap();
        let opts = UnpackOptions {
            max_unpacked_bytes: 1 << 20,
            free_space_bytes: None,
            free_inodes: Some(10_000),
        };
        let _ = unpack(&mut &data[..], &layer, &opts);
        let beside: Vec<_> = std::fs::read_dir(outer.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(
            beside,
            vec![std::ffi::OsString::from("layer")],
            "{}",
            path.display()
        );
    }
}
