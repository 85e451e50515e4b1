//! Links `minifargate` as a position-dependent executable on glibc Linux (`-no-pie`).
//!
//! A position-independent Rust binary of this size carries ~58,000 relative relocations:
//! at every start the dynamic loader writes ~1 MB of `.data.rel.ro` (vtables, string
//! tables), and each of those pages becomes a private copy. Every `run-task` starts the
//! binary twice (CLI, task supervisor) and every running task keeps a supervisor, so that
//! is ~1 MB of private memory per task and the loader's work at each start
//! (docs/benchmarks.md, "run-task"). Linked at a fixed address there is nothing to
//! relocate and the pages stay shared page cache. The cost: the executable's own image
//! is not randomised (libraries, heap, stack and mmaps still are), as with Go's default
//! builds of docker, containerd and runc. `MINIFARGATE_PIE=1` at build time keeps PIE,
//! for distributions whose policy requires it. The static musl binaries are linked
//! static (not static-pie) by `scripts/release` itself (`-C relocation-model=static`, the
//! same `MINIFARGATE_PIE=1` opt-out), as a link argument here cannot change that.
//!
//! Also compresses the CLI's ECS model (`src/cli/ecs_model.json`, 130 KB of JSON) with
//! zstd into `OUT_DIR`: ~12 KB in the binary, decompressed once on first use
//! (`cli::model`; binary size, docs/packaging.md "Sizes"). The web console's files
//! (`src/api/console/assets/*`, docs/how-isolation-works.md; ~64 KB) likewise
//! (`api::console`, decompressed once on the first request).
fn main() {
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    for (src, name) in [
        ("src/api/console/assets/index.html", "index.html"),
        ("src/api/console/assets/app.js", "app.js"),
        ("src/api/console/assets/style.css", "style.css"),
        ("docs/how-isolation-works.md", "how-isolation-works.md"),
    ] {
        println!("cargo:rerun-if-changed={src}");
        let text = std::fs::read(src).unwrap_or_else(|e| panic!("{src} is readable: {e}"));
        let packed = zstd::encode_all(&text[..], 19).expect("zstd compresses a console file");
        std::fs::write(out.join(format!("{name}.zst")), packed).expect("OUT_DIR is writable");
    }
    const MODEL: &str = "src/cli/ecs_model.json";
    println!("cargo:rerun-if-changed={MODEL}");
    let json = std::fs::read(MODEL).expect("src/cli/ecs_model.json is readable");
    let packed = zstd::encode_all(&json[..], 19).expect("zstd compresses the ECS model");
    std::fs::write(out.join("ecs_model.json.zst"), packed).expect("OUT_DIR is writable");

    println!("cargo:rerun-if-env-changed=MINIFARGATE_PIE");
    let var = |k: &str| std::env::var(k).unwrap_or_default();
    let glibc_linux = var("CARGO_CFG_TARGET_OS") == "linux" && var("CARGO_CFG_TARGET_ENV") == "gnu";
    if glibc_linux && var("MINIFARGATE_PIE") != "1" {
        println!("cargo:rustc-link-arg-bins=-no-pie");
    }
}
