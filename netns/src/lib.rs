//! Per-task network namespaces for minifargate: bridge, veth pairs, IPAM, egress NAT
//! and port publishing, awsvpc-like (one namespace shared by a task's containers).
#![forbid(unsafe_code)]
