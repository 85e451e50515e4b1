//! The image side of minifargate: OCI registry client (auth, ECR, mirrors), a
//! content-addressed blob store, layers unpacked once and shared, overlay rootfs.
#![forbid(unsafe_code)]
