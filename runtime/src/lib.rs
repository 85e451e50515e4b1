//! Runs containers for minifargate: an OCI spec built from a plain `ContainerSpec`,
//! started through youki's libcontainer, with task and container cgroups.
#![forbid(unsafe_code)]
