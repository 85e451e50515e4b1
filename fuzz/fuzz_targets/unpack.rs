//! Layer unpacking: whatever the tar says, nothing is created outside the layer
//! directory, and unpacking never panics. The input is used twice: as a raw tar, and
//! as a list of crafted entries (hostile names, links and types) built into a tar.
#![no_main]
use libfuzzer_sys::fuzz_target;
use rootfs_cache::unpack::{UnpackOptions, unpack};
use std::path::Path;

/// Everything below `dir`, not following symlinks.
fn listing(dir: &Path, out: &mut Vec<String>) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        let p = e.path();
        out.push(p.display().to_string());
        if e.file_type().is_ok_and(|t| t.is_dir()) {
            listing(&p, out);
        }
    }
}

/// Builds a tar from `data`: each entry is a type byte, a name and a link target
/// (NUL-separated) and a little content; names are written unchecked.
fn crafted(data: &[u8]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for rec in data.split(|c| *c == 0xff).take(64) {
        let Some((&kind, rest)) = rec.split_first() else {
            continue;
        };
        let mut parts = rest.splitn(3, |c| *c == 0);
        let name = parts.next().unwrap_or_default();
        let link = parts.next().unwrap_or_default();
        let body = parts.next().unwrap_or_default();
        let mut h = tar::Header::new_gnu();
        let (ty, body) = match kind % 7 {
            0 => (tar::EntryType::Regular, body),
            1 => (tar::EntryType::Directory, &[][..]),
            2 => (tar::EntryType::Symlink, &[][..]),
            3 => (tar::EntryType::Link, &[][..]),
            4 => (tar::EntryType::Fifo, &[][..]),
            5 => (tar::EntryType::Char, &[][..]),
            _ => (tar::EntryType::Regular, &[][..]),
        };
        h.set_entry_type(ty);
        h.set_mode(u32::from(kind) << 4 | 0o644);
        h.set_size(body.len() as u64);
        let old = h.as_old_mut();
        let n = name.len().min(100);
        old.name[..n].copy_from_slice(&name[..n]);
        let n = link.len().min(100);
        old.linkname[..n].copy_from_slice(&link[..n]);
        h.set_cksum();
        let _ = b.append(&h, body);
    }
    b.into_inner().unwrap_or_default()
}

fn check(tar: &[u8]) {
    let outer = tempfile::tempdir().unwrap();
    let layer = outer.path().join("layer");
    std::fs::create_dir(&layer).unwrap();
    let opts = UnpackOptions {
        max_unpacked_bytes: 1 << 20,
        free_space_bytes: None,
        free_inodes: Some(10_000),
    };
    let _ = unpack(&mut &tar[..], &layer, &opts);
    let mut beside = Vec::new();
    listing(outer.path(), &mut beside);
    let escaped: Vec<_> = beside
        .iter()
        .filter(|p| !Path::new(p).starts_with(&layer))
        .collect();
    assert!(escaped.is_empty(), "written outside the layer: {escaped:?}");
    // Nothing the layer made may point a later write outside: every symlink stays a
    // symlink (it is never followed by the unpacker), checked by the listing above.
}

fuzz_target!(|data: &[u8]| {
    check(data);
    check(&crafted(data));
});
