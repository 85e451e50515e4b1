//! The per-task nftables changes — publishing and withdrawing a task's ports, and
//! dropping our table — as nf_tables netlink batches on one kept socket, instead of one
//! `nft -f -` process per change.
//!
//! Why (measured on kernel 6.18, see docs/benchmarks.md "Network"): the kernel commits
//! such a batch in ~20–70 µs; the cost of `nft` was its process start and cache dumps
//! (2–6 ms) and, after any batch that *deletes* something, closing its netlink socket:
//! releasing an `NETLINK_NETFILTER` socket waits for nf_tables' pending destroy work,
//! which waits for an RCU grace period (7–16 ms here) while holding nf_tables' commit
//! mutex. This socket is kept for the life of the [`Nfnl`] and, if it deleted something
//! recently, closed by a short-lived thread once the grace period is over.
//!
//! Only the messages the crate needs are encoded here: the table with its port maps,
//! chains and rules ([`create_table_ops`], once per network), `NEWSETELEM`/`DELSETELEM`
//! for the `inet_service : ipv4_addr . inet_service` maps, `DELTABLE`, and the metadata
//! port rewrite inside each task namespace ([`redirect_ops`]). The `nft`
//! binary writes the table only when a configuration names one (`NetworkConfig::nft`,
//! see [`crate::nft`]). No pure-Rust crate
//! with a licence compatible with ours covers nf_tables set elements (`rustables` is
//! GPL-3.0; `nftnl` binds the C libnftnl and libmnl).
//!
//! Ref: linux include/uapi/linux/netfilter/nf_tables.h, nfnetlink.h; batches are
//! processed synchronously in `sendmsg` (net/netfilter/nfnetlink.c), so every
//! acknowledgement is queued by the time the send returns.

use std::io;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use netlink_sys::{Socket, SocketAddr, protocols::NETLINK_NETFILTER};

use crate::Protocol;
use crate::ipam::Subnet;
use crate::nft::NftError;
use crate::state::Reservation;

const NLMSG_ERROR: u16 = 2;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_ACK: u16 = 0x4;
const NLM_F_APPEND: u16 = 0x800;
const NLM_F_CREATE: u16 = 0x400;
const NLA_F_NESTED: u16 = 0x8000;

const NFNL_MSG_BATCH_BEGIN: u16 = 0x10;
const NFNL_MSG_BATCH_END: u16 = 0x11;
const NFNL_SUBSYS_NFTABLES: u16 = 10;
const NFT_MSG_NEWTABLE: u16 = 0;
const NFT_MSG_GETTABLE: u16 = 1;
const NFT_MSG_DELTABLE: u16 = 2;
const NFT_MSG_NEWCHAIN: u16 = 3;
const NFT_MSG_NEWRULE: u16 = 6;
const NFT_MSG_NEWSET: u16 = 9;
const NFT_MSG_NEWSETELEM: u16 = 12;
const NFT_MSG_GETSETELEM: u16 = 13;
const NFT_MSG_DELSETELEM: u16 = 14;
const NLM_F_DUMP: u16 = 0x300;
const NLMSG_DONE: u16 = 3;

const NFTA_TABLE_NAME: u16 = 1;
const NFTA_CHAIN_TABLE: u16 = 1;
const NFTA_CHAIN_NAME: u16 = 3;
const NFTA_CHAIN_HOOK: u16 = 4;
const NFTA_CHAIN_POLICY: u16 = 5;
const NFTA_CHAIN_TYPE: u16 = 7;
const NFTA_HOOK_HOOKNUM: u16 = 1;
const NFTA_HOOK_PRIORITY: u16 = 2;
const NFTA_SET_TABLE: u16 = 1;
const NFTA_SET_NAME: u16 = 2;
const NFTA_SET_FLAGS: u16 = 3;
const NFTA_SET_KEY_TYPE: u16 = 4;
const NFTA_SET_KEY_LEN: u16 = 5;
const NFTA_SET_DATA_TYPE: u16 = 6;
const NFTA_SET_DATA_LEN: u16 = 7;
const NFTA_SET_ID: u16 = 10;
const NFT_SET_MAP: u32 = 0x8;
const NFTA_RULE_TABLE: u16 = 1;
const NFTA_RULE_CHAIN: u16 = 2;
const NFTA_RULE_EXPRESSIONS: u16 = 4;
const NFTA_EXPR_NAME: u16 = 1;
const NFTA_EXPR_DATA: u16 = 2;
/// nft's datatypes (src/datatype.h): `inet_service`, and `ipv4_addr . inet_service`
/// (a concatenation: the types shifted by 6 bits each).
const TYPE_INET_SERVICE: u32 = 13;
const TYPE_IPV4_ADDR: u32 = 7;
const NF_ACCEPT: u32 = 1;
/// Where the checksum is in a TCP header (RFC 9293 3.1).
const TCP_CHECKSUM_OFFSET: u32 = 16;
/// The loopback device's index, the same in every network namespace (LOOPBACK_IFINDEX).
const LOOPBACK_IFINDEX: u32 = 1;
/// The 16-byte register 1 and the 32-bit register 9 (the second word of register 1).
const REG_1: u32 = 1;
const REG32_01: u32 = 9;
const NFTA_SET_ELEM_LIST_TABLE: u16 = 1;
const NFTA_SET_ELEM_LIST_SET: u16 = 2;
const NFTA_SET_ELEM_LIST_ELEMENTS: u16 = 3;
const NFTA_LIST_ELEM: u16 = 1;
const NFTA_SET_ELEM_KEY: u16 = 1;
const NFTA_SET_ELEM_DATA: u16 = 2;
const NFTA_DATA_VALUE: u16 = 1;
const NFTA_DATA_VERDICT: u16 = 2;
const NFTA_VERDICT_CODE: u16 = 1;

const AF_UNSPEC: u8 = 0;
const AF_INET: u8 = 2;

/// The port map of `protocol` in our table.
pub fn map_name(p: Protocol) -> &'static str {
    match p {
        Protocol::Tcp => "tcp_ports",
        Protocol::Udp => "udp_ports",
    }
}

/// One netlink message under construction, with nested attributes.
struct Msg {
    buf: Vec<u8>,
    nests: Vec<usize>,
}

impl Msg {
    fn new(kind: u16, flags: u16, seq: u32, family: u8, res_id: u16) -> Self {
        let mut buf = Vec::with_capacity(128);
        buf.extend_from_slice(&0u32.to_ne_bytes()); // length, set by finish
        buf.extend_from_slice(&kind.to_ne_bytes());
        buf.extend_from_slice(&flags.to_ne_bytes());
        buf.extend_from_slice(&seq.to_ne_bytes());
        buf.extend_from_slice(&0u32.to_ne_bytes()); // port id: the kernel
        buf.push(family);
        buf.push(0); // NFNETLINK_V0
        buf.extend_from_slice(&res_id.to_be_bytes());
        Self {
            buf,
            nests: Vec::new(),
        }
    }

    fn pad(&mut self) {
        while !self.buf.len().is_multiple_of(4) {
            self.buf.push(0);
        }
    }

    fn attr(&mut self, kind: u16, value: &[u8]) -> &mut Self {
        let len = u16::try_from(4 + value.len()).expect("attribute fits");
        self.buf.extend_from_slice(&len.to_ne_bytes());
        self.buf.extend_from_slice(&kind.to_ne_bytes());
        self.buf.extend_from_slice(value);
        self.pad();
        self
    }

    fn str_attr(&mut self, kind: u16, s: &str) -> &mut Self {
        let mut v = s.as_bytes().to_vec();
        v.push(0);
        self.attr(kind, &v)
    }

    fn begin(&mut self, kind: u16) -> &mut Self {
        self.nests.push(self.buf.len());
        self.buf.extend_from_slice(&0u16.to_ne_bytes());
        self.buf
            .extend_from_slice(&(kind | NLA_F_NESTED).to_ne_bytes());
        self
    }

    fn end(&mut self) -> &mut Self {
        let at = self.nests.pop().expect("balanced nests");
        let len = u16::try_from(self.buf.len() - at).expect("nest fits");
        self.buf[at..at + 2].copy_from_slice(&len.to_ne_bytes());
        self
    }

    fn finish(mut self) -> Vec<u8> {
        assert!(self.nests.is_empty(), "unbalanced nests");
        let len = u32::try_from(self.buf.len()).expect("message fits");
        self.buf[0..4].copy_from_slice(&len.to_ne_bytes());
        self.buf
    }
}

fn nft_type(msg: u16) -> u16 {
    (NFNL_SUBSYS_NFTABLES << 8) | msg
}

/// A netfilter hook of a base chain (`enum nf_inet_hooks`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hook {
    Prerouting = 0,
    Output = 3,
    Postrouting = 4,
}

/// The type of a base chain: `nat` chains make the kernel track connections in the
/// namespace (nf_conntrack's hooks), `filter` chains see packets without any state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChainType {
    Nat,
    Filter,
}

impl ChainType {
    fn name(self) -> &'static str {
        match self {
            ChainType::Nat => "nat",
            ChainType::Filter => "filter",
        }
    }
}

/// The nf_tables expressions our rules use; all load into, compare and write from
/// register 1.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expr {
    /// `fib daddr type`: the route type of the destination address.
    FibDaddrType,
    /// `meta l4proto`.
    MetaL4proto,
    /// `meta oifname`.
    MetaOifname,
    /// `meta oif`: the output interface's index.
    MetaOif,
    /// `ct status`.
    CtStatus,
    /// `rt classid`: the realm of the route the packet takes.
    RtClassid,
    /// Load `len` bytes at `offset` of the network (`transport: false`) or transport
    /// header.
    Payload {
        transport: bool,
        offset: u32,
        len: u32,
    },
    /// `reg1 = reg1 & mask` (xor 0), over `mask.len()` bytes.
    And {
        mask: Vec<u8>,
    },
    /// Compare register 1 with `data`: equal, or not equal.
    Cmp {
        eq: bool,
        data: Vec<u8>,
    },
    /// Look register 1 up in map `set`; the data goes to registers 1 and 9.
    Lookup {
        set: &'static str,
        set_id: u32,
    },
    /// Load `data` into register 1 (`immediate`).
    Immediate {
        data: Vec<u8>,
    },
    /// Write register 1 over `len` bytes at `offset` of the TCP header, updating the TCP
    /// checksum for the change (`tcp dport set …`). Stateless: no connection tracking.
    WriteTcp {
        offset: u32,
        len: u32,
    },
    /// The verdict `accept`: the rest of the chain is skipped.
    Accept,
    /// DNAT to address register 1, port register 9.
    Dnat,
    Masquerade,
}

/// One change in a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    NewTable,
    /// A map `inet_service : ipv4_addr . inet_service` (host port → task ip . port).
    NewPortMap {
        name: &'static str,
        id: u32,
    },
    /// A base chain with policy accept.
    NewChain {
        name: &'static str,
        kind: ChainType,
        hook: Hook,
        priority: i32,
    },
    NewRule {
        chain: &'static str,
        exprs: Vec<Expr>,
    },
    Add {
        set: &'static str,
        key: Vec<u8>,
        data: Vec<u8>,
    },
    Del {
        set: &'static str,
        key: Vec<u8>,
    },
    /// Every element of a map (`nft flush map`).
    FlushMap {
        set: &'static str,
    },
    DelTable,
}

/// The map key of a host port (`inet_service`, network order).
fn port_key(port: u16) -> Vec<u8> {
    port.to_be_bytes().to_vec()
}

/// The map data `ip . port` (a concatenation: each part padded to 32 bits).
fn dnat_data(ip: Ipv4Addr, port: u16) -> Vec<u8> {
    let mut v = ip.octets().to_vec();
    v.extend_from_slice(&port.to_be_bytes());
    v.extend_from_slice(&[0, 0]);
    v
}

/// The elements that publish `ports` of the task at `ip`.
pub fn publish_ops(ip: Ipv4Addr, ports: &[Reservation]) -> Vec<Op> {
    ports
        .iter()
        .map(|r| Op::Add {
            set: map_name(r.protocol),
            key: port_key(r.host_port),
            data: dnat_data(ip, r.container_port),
        })
        .collect()
}

/// The batch that withdraws `ports`. Each element is (re-)added before it is deleted,
/// so the batch also succeeds when a crash stopped setup before the elements existed.
pub fn withdraw_ops(ip: Ipv4Addr, ports: &[Reservation]) -> Vec<Op> {
    let mut ops = publish_ops(ip, ports);
    ops.extend(ports.iter().map(|r| Op::Del {
        set: map_name(r.protocol),
        key: port_key(r.host_port),
    }));
    ops
}

/// Encodes `ops` on table `table` as one batch; returns the bytes and the sequence
/// numbers of the operations (each is acknowledged).
fn encode_batch(table: &str, ops: &[Op], first_seq: u32) -> (Vec<u8>, Vec<u32>) {
    let mut out = Msg::new(
        NFNL_MSG_BATCH_BEGIN,
        NLM_F_REQUEST,
        first_seq,
        AF_UNSPEC,
        NFNL_SUBSYS_NFTABLES,
    )
    .finish();
    let mut seqs = Vec::with_capacity(ops.len());
    for (i, op) in ops.iter().enumerate() {
        let seq = first_seq.wrapping_add(1 + i as u32);
        seqs.push(seq);
        let m = match op {
            Op::Add { set, key, data } => {
                let mut m = Msg::new(
                    nft_type(NFT_MSG_NEWSETELEM),
                    NLM_F_REQUEST | NLM_F_CREATE | NLM_F_ACK,
                    seq,
                    AF_INET,
                    0,
                );
                m.str_attr(NFTA_SET_ELEM_LIST_TABLE, table)
                    .str_attr(NFTA_SET_ELEM_LIST_SET, set)
                    .begin(NFTA_SET_ELEM_LIST_ELEMENTS)
                    .begin(NFTA_LIST_ELEM)
                    .begin(NFTA_SET_ELEM_KEY)
                    .attr(NFTA_DATA_VALUE, key)
                    .end()
                    .begin(NFTA_SET_ELEM_DATA)
                    .attr(NFTA_DATA_VALUE, data)
                    .end()
                    .end()
                    .end();
                m
            }
            Op::Del { set, key } => {
                let mut m = delsetelem(table, set, seq);
                m.begin(NFTA_SET_ELEM_LIST_ELEMENTS)
                    .begin(NFTA_LIST_ELEM)
                    .begin(NFTA_SET_ELEM_KEY)
                    .attr(NFTA_DATA_VALUE, key)
                    .end()
                    .end()
                    .end();
                m
            }
            // DELSETELEM without a list of elements flushes the set. Ref: linux
            // net/netfilter/nf_tables_api.c, nf_tables_delsetelem (`nft_set_flush`).
            Op::FlushMap { set } => delsetelem(table, set, seq),
            Op::NewTable => table_msg(NFT_MSG_NEWTABLE, NLM_F_CREATE, table, seq),
            Op::NewPortMap { name, id } => {
                let mut m = Msg::new(
                    nft_type(NFT_MSG_NEWSET),
                    NLM_F_REQUEST | NLM_F_CREATE | NLM_F_ACK,
                    seq,
                    AF_INET,
                    0,
                );
                m.str_attr(NFTA_SET_TABLE, table)
                    .str_attr(NFTA_SET_NAME, name)
                    .attr(NFTA_SET_FLAGS, &NFT_SET_MAP.to_be_bytes())
                    .attr(NFTA_SET_KEY_TYPE, &TYPE_INET_SERVICE.to_be_bytes())
                    .attr(NFTA_SET_KEY_LEN, &2u32.to_be_bytes())
                    .attr(
                        NFTA_SET_DATA_TYPE,
                        &(TYPE_IPV4_ADDR << 6 | TYPE_INET_SERVICE).to_be_bytes(),
                    )
                    .attr(NFTA_SET_DATA_LEN, &8u32.to_be_bytes())
                    .attr(NFTA_SET_ID, &id.to_be_bytes());
                m
            }
            Op::NewChain {
                name,
                kind,
                hook,
                priority,
            } => {
                let mut m = Msg::new(
                    nft_type(NFT_MSG_NEWCHAIN),
                    NLM_F_REQUEST | NLM_F_CREATE | NLM_F_ACK,
                    seq,
                    AF_INET,
                    0,
                );
                m.str_attr(NFTA_CHAIN_TABLE, table)
                    .str_attr(NFTA_CHAIN_NAME, name)
                    .begin(NFTA_CHAIN_HOOK)
                    .attr(NFTA_HOOK_HOOKNUM, &(*hook as u32).to_be_bytes())
                    .attr(NFTA_HOOK_PRIORITY, &priority.to_be_bytes())
                    .end()
                    .attr(NFTA_CHAIN_POLICY, &NF_ACCEPT.to_be_bytes())
                    .str_attr(NFTA_CHAIN_TYPE, kind.name());
                m
            }
            Op::NewRule { chain, exprs } => {
                let mut m = Msg::new(
                    nft_type(NFT_MSG_NEWRULE),
                    NLM_F_REQUEST | NLM_F_CREATE | NLM_F_APPEND | NLM_F_ACK,
                    seq,
                    AF_INET,
                    0,
                );
                m.str_attr(NFTA_RULE_TABLE, table)
                    .str_attr(NFTA_RULE_CHAIN, chain)
                    .begin(NFTA_RULE_EXPRESSIONS);
                for e in exprs {
                    encode_expr(&mut m, e);
                }
                m.end();
                m
            }
            Op::DelTable => table_msg(NFT_MSG_DELTABLE, 0, table, seq),
        };
        out.extend_from_slice(&m.finish());
    }
    let end_seq = first_seq.wrapping_add(1 + ops.len() as u32);
    out.extend_from_slice(
        &Msg::new(
            NFNL_MSG_BATCH_END,
            NLM_F_REQUEST,
            end_seq,
            AF_UNSPEC,
            NFNL_SUBSYS_NFTABLES,
        )
        .finish(),
    );
    (out, seqs)
}

/// A table message (`kind`, acked, with `flags` besides) naming `table` alone.
fn table_msg(kind: u16, flags: u16, table: &str, seq: u32) -> Msg {
    let mut m = Msg::new(
        nft_type(kind),
        NLM_F_REQUEST | NLM_F_ACK | flags,
        seq,
        AF_INET,
        0,
    );
    m.str_attr(NFTA_TABLE_NAME, table);
    m
}

/// A DELSETELEM message naming `table` and `set`: with elements added it deletes them,
/// without it flushes the set.
fn delsetelem(table: &str, set: &str, seq: u32) -> Msg {
    setelem_msg(
        NFT_MSG_DELSETELEM,
        NLM_F_REQUEST | NLM_F_ACK,
        table,
        set,
        seq,
    )
}

/// A set-element message of type `msg` (DELSETELEM, GETSETELEM) naming `table` and `set`.
fn setelem_msg(msg: u16, flags: u16, table: &str, set: &str, seq: u32) -> Msg {
    let mut m = Msg::new(nft_type(msg), flags, seq, AF_INET, 0);
    m.str_attr(NFTA_SET_ELEM_LIST_TABLE, table)
        .str_attr(NFTA_SET_ELEM_LIST_SET, set);
    m
}

fn be(v: u32) -> [u8; 4] {
    v.to_be_bytes()
}

/// Appends one expression (`NFTA_LIST_ELEM { name, data { … } }`) to a rule.
/// Ref: include/uapi/linux/netfilter/nf_tables.h for each expression's attributes.
fn encode_expr(m: &mut Msg, e: &Expr) {
    let name = match e {
        Expr::FibDaddrType => "fib",
        Expr::MetaL4proto | Expr::MetaOifname | Expr::MetaOif => "meta",
        Expr::CtStatus => "ct",
        Expr::RtClassid => "rt",
        Expr::Payload { .. } | Expr::WriteTcp { .. } => "payload",
        Expr::And { .. } => "bitwise",
        Expr::Cmp { .. } => "cmp",
        Expr::Lookup { .. } => "lookup",
        Expr::Immediate { .. } | Expr::Accept => "immediate",
        Expr::Dnat => "nat",
        Expr::Masquerade => "masq",
    };
    m.begin(NFTA_LIST_ELEM).str_attr(NFTA_EXPR_NAME, name);
    if *e != Expr::Masquerade {
        m.begin(NFTA_EXPR_DATA);
        match e {
            // NFTA_FIB_DREG, _RESULT (NFT_FIB_RESULT_ADDRTYPE), _FLAGS (NFTA_FIB_F_DADDR)
            Expr::FibDaddrType => {
                m.attr(1, &be(REG_1)).attr(2, &be(3)).attr(3, &be(1 << 1));
            }
            // NFTA_META_DREG, _KEY (NFT_META_L4PROTO / NFT_META_OIFNAME / NFT_META_OIF)
            Expr::MetaL4proto => {
                m.attr(1, &be(REG_1)).attr(2, &be(16));
            }
            Expr::MetaOifname => {
                m.attr(1, &be(REG_1)).attr(2, &be(7));
            }
            Expr::MetaOif => {
                m.attr(1, &be(REG_1)).attr(2, &be(5));
            }
            // NFTA_CT_DREG, _KEY (NFT_CT_STATUS)
            Expr::CtStatus => {
                m.attr(1, &be(REG_1)).attr(2, &be(2));
            }
            // NFTA_RT_DREG, _KEY (NFT_RT_CLASSID)
            Expr::RtClassid => {
                m.attr(1, &be(REG_1)).attr(2, &be(0));
            }
            // NFTA_PAYLOAD_DREG, _BASE (network 1, transport 2), _OFFSET, _LEN
            Expr::Payload {
                transport,
                offset,
                len,
            } => {
                m.attr(1, &be(REG_1))
                    .attr(2, &be(if *transport { 2 } else { 1 }))
                    .attr(3, &be(*offset))
                    .attr(4, &be(*len));
            }
            // NFTA_PAYLOAD_SREG, _BASE (transport), _OFFSET, _LEN, _CSUM_TYPE
            // (NFT_PAYLOAD_CSUM_INET: the RFC 1624 incremental update), _CSUM_OFFSET (of
            // the checksum in the TCP header, `struct tcphdr` `check`). No
            // NFTA_PAYLOAD_CSUM_FLAGS: ports are not in the pseudo-header. The kernel
            // leaves the checksum alone on CHECKSUM_PARTIAL packets (local TCP on `lo`),
            // whose sum the device or `skb_checksum_help` completes after the write.
            // Ref: net/netfilter/nft_payload.c (`nft_payload_set_eval`).
            Expr::WriteTcp { offset, len } => {
                m.attr(5, &be(REG_1))
                    .attr(2, &be(2))
                    .attr(3, &be(*offset))
                    .attr(4, &be(*len))
                    .attr(6, &be(1))
                    .attr(7, &be(TCP_CHECKSUM_OFFSET));
            }
            // NFTA_BITWISE_SREG, _DREG, _LEN, _MASK { value }, _XOR { value }
            Expr::And { mask } => {
                m.attr(1, &be(REG_1))
                    .attr(2, &be(REG_1))
                    .attr(3, &be(mask.len() as u32))
                    .begin(4)
                    .attr(NFTA_DATA_VALUE, mask)
                    .end()
                    .begin(5)
                    .attr(NFTA_DATA_VALUE, &vec![0; mask.len()])
                    .end();
            }
            // NFTA_CMP_SREG, _OP (NFT_CMP_EQ 0, NFT_CMP_NEQ 1), _DATA { value }
            Expr::Cmp { eq, data } => {
                m.attr(1, &be(REG_1))
                    .attr(2, &be(if *eq { 0 } else { 1 }))
                    .begin(3)
                    .attr(NFTA_DATA_VALUE, data)
                    .end();
            }
            // NFTA_LOOKUP_SET, _SREG, _DREG, _SET_ID
            Expr::Lookup { set, set_id } => {
                m.str_attr(1, set)
                    .attr(2, &be(REG_1))
                    .attr(3, &be(REG_1))
                    .attr(4, &be(*set_id));
            }
            // NFTA_IMMEDIATE_DREG, _DATA { value }
            Expr::Immediate { data } => {
                m.attr(1, &be(REG_1))
                    .begin(2)
                    .attr(NFTA_DATA_VALUE, data)
                    .end();
            }
            // NFTA_IMMEDIATE_DREG (NFT_REG_VERDICT), _DATA { NFTA_DATA_VERDICT {
            // NFTA_VERDICT_CODE } }
            Expr::Accept => {
                m.attr(1, &be(0))
                    .begin(2)
                    .begin(NFTA_DATA_VERDICT)
                    .attr(NFTA_VERDICT_CODE, &be(NF_ACCEPT))
                    .end()
                    .end();
            }
            // NFTA_NAT_TYPE (NFT_NAT_DNAT), _FAMILY (NFPROTO_IPV4), _REG_ADDR_MIN,
            // _REG_PROTO_MIN; the kernel derives the range flags from the registers.
            Expr::Dnat => {
                m.attr(1, &be(1))
                    .attr(2, &be(2))
                    .attr(3, &be(REG_1))
                    .attr(5, &be(REG32_01));
            }
            Expr::Masquerade => unreachable!(),
        }
        m.end();
    }
    m.end();
}

/// `ip saddr|daddr <subnet>` (or `!=`): load the address, mask it, compare.
fn match_subnet(daddr: bool, subnet: Subnet, eq: bool) -> [Expr; 3] {
    let mask = u32::MAX
        .checked_shl(32 - u32::from(subnet.prefix()))
        .unwrap_or(0);
    [
        Expr::Payload {
            transport: false,
            offset: if daddr { 16 } else { 12 },
            len: 4,
        },
        Expr::And {
            mask: mask.to_be_bytes().to_vec(),
        },
        Expr::Cmp {
            eq,
            data: subnet.network().octets().to_vec(),
        },
    ]
}

/// `oifname "<name>"`: interface names compare as 16 zero-padded bytes (IFNAMSIZ).
fn match_oifname(name: &str) -> [Expr; 2] {
    let mut data = name.as_bytes().to_vec();
    data.resize(16, 0);
    [Expr::MetaOifname, Expr::Cmp { eq: true, data }]
}

/// The batch that deletes our table, and succeeds if it does not exist.
pub fn delete_table_ops() -> Vec<Op> {
    vec![Op::NewTable, Op::DelTable]
}

/// The batch that empties our table's port maps: every task's published ports, and any
/// element a failed withdrawal left. The last task's teardown runs it; the table, its
/// chains and rules stay for the next task.
pub fn flush_maps_ops() -> Vec<Op> {
    [Protocol::Tcp, Protocol::Udp]
        .into_iter()
        .map(|p| Op::FlushMap { set: map_name(p) })
        .collect()
}

/// A short id of the batch `ops` on table `table` (FNV-1a of its bytes): two ids differ
/// when the rulesets do (another subnet or bridge, or a build that writes other rules).
pub fn ruleset_id(table: &str, ops: &[Op]) -> String {
    let (bytes, _) = encode_batch(table, ops, 0);
    format!("netlink-{:08x}", crate::fnv_bytes(&bytes))
}

/// The batch that creates our table — the same ruleset as
/// [`crate::nft::create_table_script`] (a test compares the two as `nft` lists them):
/// port maps, DNAT of local destinations in prerouting and output, and masquerade of
/// the subnet's egress, of 127.0.0.0/8 sources DNATed onto the bridge and of hairpin
/// traffic.
pub fn create_table_ops(bridge: &str, subnet: Subnet) -> Vec<Op> {
    let maps = [(Protocol::Tcp, 1u32, 6u8), (Protocol::Udp, 2, 17)];
    let dnat = |proto: u8, set: &'static str, set_id: u32| {
        vec![
            Expr::FibDaddrType,
            // RTN_LOCAL, as a host-order u32
            Expr::Cmp {
                eq: true,
                data: 2u32.to_ne_bytes().to_vec(),
            },
            Expr::MetaL4proto,
            Expr::Cmp {
                eq: true,
                data: vec![proto],
            },
            Expr::Payload {
                transport: true,
                offset: 2,
                len: 2,
            },
            Expr::Lookup { set, set_id },
            Expr::Dnat,
        ]
    };
    // A stale copy left by a crash goes in the same batch: declaring the table first
    // makes the delete never fail (a failed batch costs an RCU grace period in the
    // kernel's abort path; `DESTROYTABLE` needs Linux 6.3).
    let mut ops = delete_table_ops();
    ops.push(Op::NewTable);
    for (p, id, _) in maps {
        ops.push(Op::NewPortMap {
            name: map_name(p),
            id,
        });
    }
    for (chain, hook, priority) in [
        ("prerouting", Hook::Prerouting, -100),
        ("output", Hook::Output, -100),
        ("postrouting", Hook::Postrouting, 100),
    ] {
        ops.push(Op::NewChain {
            name: chain,
            kind: ChainType::Nat,
            hook,
            priority,
        });
    }
    for chain in ["prerouting", "output"] {
        for (p, id, proto) in maps {
            ops.push(Op::NewRule {
                chain,
                exprs: dnat(proto, map_name(p), id),
            });
        }
    }
    let mut egress = match_subnet(false, subnet, true).to_vec();
    egress.extend(match_subnet(true, subnet, false));
    // Not what a route to another box's task subnet carries (crate::routes).
    egress.extend([
        Expr::RtClassid,
        Expr::Cmp {
            eq: false,
            data: u32::from(crate::routes::PEER_REALM).to_ne_bytes().to_vec(),
        },
    ]);
    egress.push(Expr::Masquerade);
    let mut local = match_oifname(bridge).to_vec();
    local.extend(match_subnet(
        false,
        Subnet::new(Ipv4Addr::new(127, 0, 0, 0), 8).expect("valid"),
        true,
    ));
    local.push(Expr::Masquerade);
    let mut hairpin = match_oifname(bridge).to_vec();
    hairpin.extend(match_subnet(false, subnet, true));
    hairpin.extend([
        Expr::CtStatus,
        // IPS_DST_NAT, host order
        Expr::And {
            mask: 0x20u32.to_ne_bytes().to_vec(),
        },
        Expr::Cmp {
            eq: false,
            data: vec![0; 4],
        },
        Expr::Masquerade,
    ]);
    for exprs in [egress, local, hairpin] {
        ops.push(Op::NewRule {
            chain: "postrouting",
            exprs,
        });
    }
    ops
}

/// The batch, applied inside a task's own namespace, that answers TCP to `addr:from`
/// from a server listening on `addr:to`, without connection tracking: a `filter` output
/// chain rewrites ports in place. The task metadata endpoint listens on `to`, so `from`
/// (80) stays free for the task's own servers that bind `0.0.0.0:80`.
///
/// `addr` is on the namespace's `lo`, so a connection to it is local: each segment of
/// it, either way, is generated in the namespace and crosses output → postrouting →
/// (`lo`) → prerouting → input, and the socket lookup comes last (`tcp_v4_rcv`). One
/// output chain therefore sees both directions before any socket does:
/// - to `addr:from` on `lo`: destination port set to `to` (the client's segments);
/// - from `addr:to` on `lo`: source port set to `from` (the server's segments, its
///   resets and TIME_WAIT acks included), so the client sees its peer as `addr:from`.
///
/// Each rewrite ends the chain (`accept`), so a segment is rewritten at most once.
/// Nothing else can send from `addr:to`: the listener holds that port in the namespace,
/// which also keeps it out of the ephemeral ports `connect` picks. The price of having
/// no state: a client that connects to `addr:to` directly gets its answers from
/// `addr:from` and never connects (real Fargate serves only port 80).
///
/// Why not DNAT (as until issue 39): a `nat` chain or expression turns connection
/// tracking on in the namespace. Its hooks then see every IPv4 packet of the task, each
/// of the task's connections leaves an entry, and removing a namespace that holds
/// entries walks the whole conntrack table (262 144 buckets here, shared by all
/// namespaces) in a kworker: 0.6–0.8 ms of CPU per task (docs/benchmarks.md, "The
/// metadata redirect without conntrack").
pub fn redirect_ops(addr: Ipv4Addr, from: u16, to: u16) -> Vec<Op> {
    let rewrite = |addr_offset: u32, port_offset: u32, match_port: u16, set_port: u16| {
        vec![
            Expr::Payload {
                transport: false,
                offset: addr_offset,
                len: 4,
            },
            Expr::Cmp {
                eq: true,
                data: addr.octets().to_vec(),
            },
            Expr::MetaOif,
            Expr::Cmp {
                eq: true,
                data: LOOPBACK_IFINDEX.to_ne_bytes().to_vec(),
            },
            Expr::MetaL4proto,
            Expr::Cmp {
                eq: true,
                data: vec![6],
            },
            Expr::Payload {
                transport: true,
                offset: port_offset,
                len: 2,
            },
            Expr::Cmp {
                eq: true,
                data: match_port.to_be_bytes().to_vec(),
            },
            Expr::Immediate {
                data: set_port.to_be_bytes().to_vec(),
            },
            Expr::WriteTcp {
                offset: port_offset,
                len: 2,
            },
            Expr::Accept,
        ]
    };
    let mut ops = delete_table_ops();
    ops.push(Op::NewTable);
    ops.push(Op::NewChain {
        name: "output",
        kind: ChainType::Filter,
        hook: Hook::Output,
        priority: 0,
    });
    // `ip daddr` is at offset 16 of the IPv4 header, `ip saddr` at 12; `tcp dport` at
    // offset 2 of the TCP header, `tcp sport` at 0.
    for exprs in [rewrite(16, 2, from, to), rewrite(12, 0, to, from)] {
        ops.push(Op::NewRule {
            chain: "output",
            exprs,
        });
    }
    ops
}

/// A kept `NETLINK_NETFILTER` socket.
pub struct Nfnl {
    sock: Option<Socket>,
    seq: u32,
    /// When this socket last committed a deletion (see the module doc: closing the
    /// socket within a grace period of it would wait for that grace period).
    deleted_at: Option<Instant>,
}

impl Nfnl {
    /// Opens the socket in the calling thread's network namespace.
    pub fn open() -> Result<Self, NftError> {
        let err = |source| NftError::Netlink {
            what: "open an nf_tables netlink socket".into(),
            source,
        };
        let mut sock = Socket::new(NETLINK_NETFILTER).map_err(err)?;
        sock.bind_auto().map_err(err)?;
        Ok(Self {
            sock: Some(sock),
            seq: fastrand::u32(1..u32::MAX / 2),
            deleted_at: None,
        })
    }

    /// Commits `ops` on table `table` as one atomic batch; on any error nothing changed.
    pub fn apply(&mut self, table: &str, ops: &[Op], what: &str) -> Result<(), NftError> {
        if ops.is_empty() {
            return Ok(());
        }
        let err = |source| NftError::Netlink {
            what: what.into(),
            source,
        };
        let first = self.seq;
        self.seq = self.seq.wrapping_add(ops.len() as u32 + 2);
        let (bytes, seqs) = encode_batch(table, ops, first);
        let sock = self.sock.as_ref().expect("open until dropped");
        sock.send_to(&bytes, &SocketAddr::new(0, 0), 0)
            .map_err(err)?;
        if ops
            .iter()
            .any(|o| matches!(o, Op::Del { .. } | Op::FlushMap { .. } | Op::DelTable))
        {
            self.deleted_at = Some(Instant::now());
        }
        // The kernel has processed the batch when send returns: read the acks without
        // blocking. An error for the batch header itself ends the batch early.
        let mut pending: Vec<u32> = seqs.clone();
        let mut first_error: Option<i32> = None;
        let mut buf = Vec::with_capacity(16 * 1024);
        while !pending.is_empty() {
            buf.clear();
            let n = recv_now(
                sock,
                &mut buf,
                "the kernel did not acknowledge every message of the batch",
            )
            .map_err(err)?;
            for (seq, code) in parse_acks(&buf[..n]).map_err(err)? {
                if seq == first && code != 0 {
                    return Err(err(io::Error::from_raw_os_error(-code)));
                }
                pending.retain(|&s| s != seq);
                if code != 0 && first_error.is_none() {
                    first_error = Some(code);
                }
            }
        }
        match first_error {
            None => Ok(()),
            Some(c) => Err(err(io::Error::from_raw_os_error(-c))),
        }
    }
}

impl Nfnl {
    /// Whether table `table` exists in this socket's namespace: one `GETTABLE` request
    /// (answered in `sendmsg`, as a batch is); it changes nothing.
    pub fn table_exists(&mut self, table: &str) -> Result<bool, NftError> {
        let err = |source| NftError::Netlink {
            what: format!("look up table ip {table}"),
            source,
        };
        let seq = self.seq;
        self.seq = self.seq.wrapping_add(1);
        let m = table_msg(NFT_MSG_GETTABLE, 0, table, seq);
        let sock = self.sock.as_ref().expect("open until dropped");
        sock.send_to(&m.finish(), &SocketAddr::new(0, 0), 0)
            .map_err(err)?;
        // The table (NEWTABLE) if found, then the ack, or only the error.
        let mut buf = Vec::with_capacity(4096);
        loop {
            buf.clear();
            let n =
                recv_now(sock, &mut buf, "the kernel did not answer the lookup").map_err(err)?;
            for (s, code) in parse_acks(&buf[..n]).map_err(err)? {
                if s != seq {
                    continue;
                }
                return match code {
                    0 => Ok(true),
                    c if -c == nix::libc::ENOENT => Ok(false),
                    c => Err(err(io::Error::from_raw_os_error(-c))),
                };
            }
        }
    }
}

/// A map element as the kernel lists it: its key's bytes and its data's.
pub type Element = (Vec<u8>, Vec<u8>);

impl Nfnl {
    /// The elements of map `set` of table `table`, as (key, data) bytes: one `GETSETELEM`
    /// dump (it changes nothing). None when the table or the map is not there.
    /// Ref: linux net/netfilter/nf_tables_api.c, nf_tables_getsetelem and
    /// nf_tables_dump_set (one `NEWSETELEM` message per batch of elements, then
    /// `NLMSG_DONE`); the first part is queued in `sendmsg`, each next one by the
    /// `recvmsg` that reads the part before it.
    pub fn map_elements(&mut self, table: &str, set: &str) -> Result<Vec<Element>, NftError> {
        let err = |source| NftError::Netlink {
            what: format!("list map {set} of table ip {table}"),
            source,
        };
        let seq = self.seq;
        self.seq = self.seq.wrapping_add(1);
        let m = setelem_msg(
            NFT_MSG_GETSETELEM,
            NLM_F_REQUEST | NLM_F_DUMP,
            table,
            set,
            seq,
        );
        let sock = self.sock.as_ref().expect("open until dropped");
        sock.send_to(&m.finish(), &SocketAddr::new(0, 0), 0)
            .map_err(err)?;
        let mut out = Vec::new();
        let mut buf = Vec::with_capacity(64 * 1024);
        loop {
            buf.clear();
            let n =
                recv_now(sock, &mut buf, "the kernel did not answer the listing").map_err(err)?;
            match parse_elements(&buf[..n], seq, &mut out).map_err(err)? {
                Dump::More => {}
                Dump::Done => return Ok(out),
                Dump::Missing => return Ok(Vec::new()),
            }
        }
    }
}

/// Where a listing ([`Nfnl::map_elements`]) stands after one read.
#[derive(Debug, PartialEq, Eq)]
enum Dump {
    More,
    Done,
    /// The table or map is not there.
    Missing,
}

/// The attributes in `b` as (type, value), the nested and byte-order flags cleared.
fn attrs(mut b: &[u8]) -> Vec<(u16, &[u8])> {
    let mut out = Vec::new();
    while b.len() >= 4 {
        let len = usize::from(u16::from_ne_bytes([b[0], b[1]]));
        if len < 4 || len > b.len() {
            break;
        }
        out.push((u16::from_ne_bytes([b[2], b[3]]) & 0x3fff, &b[4..len]));
        b = &b[((len + 3) & !3).min(b.len())..];
    }
    out
}

/// The `NFTA_DATA_VALUE` inside the nested data attribute `b`.
fn data_value(b: &[u8]) -> Option<Vec<u8>> {
    attrs(b)
        .into_iter()
        .find(|(k, _)| *k == NFTA_DATA_VALUE)
        .map(|(_, v)| v.to_vec())
}

/// Adds the elements of the dump messages (sequence `seq`) in `buf` to `out`.
fn parse_elements(mut buf: &[u8], seq: u32, out: &mut Vec<(Vec<u8>, Vec<u8>)>) -> io::Result<Dump> {
    let bad = |m: &str| io::Error::new(io::ErrorKind::InvalidData, m.to_string());
    let mut state = Dump::More;
    while buf.len() >= 16 {
        let len = u32::from_ne_bytes(buf[0..4].try_into().expect("4 bytes")) as usize;
        if len < 16 || len > buf.len() {
            return Err(bad("malformed netlink reply"));
        }
        let kind = u16::from_ne_bytes(buf[4..6].try_into().expect("2 bytes"));
        let s = u32::from_ne_bytes(buf[8..12].try_into().expect("4 bytes"));
        let body = &buf[16..len];
        buf = &buf[((len + 3) & !3).min(buf.len())..];
        if s != seq {
            continue;
        }
        if kind == NLMSG_DONE {
            state = Dump::Done;
        } else if kind == NLMSG_ERROR {
            let code = body
                .get(0..4)
                .map(|c| i32::from_ne_bytes(c.try_into().expect("4 bytes")))
                .ok_or_else(|| bad("short netlink error message"))?;
            match -code {
                0 => state = Dump::Done,
                nix::libc::ENOENT => state = Dump::Missing,
                e => return Err(io::Error::from_raw_os_error(e)),
            }
        } else if kind == nft_type(NFT_MSG_NEWSETELEM) && body.len() >= 4 {
            // After the nfgenmsg (family, version, resource id).
            for (k, list) in attrs(&body[4..]) {
                if k != NFTA_SET_ELEM_LIST_ELEMENTS {
                    continue;
                }
                for (k, elem) in attrs(list) {
                    if k != NFTA_LIST_ELEM {
                        continue;
                    }
                    let (mut key, mut data) = (None, None);
                    for (k, v) in attrs(elem) {
                        match k {
                            NFTA_SET_ELEM_KEY => key = data_value(v),
                            NFTA_SET_ELEM_DATA => data = data_value(v),
                            _ => {}
                        }
                    }
                    if let (Some(key), Some(data)) = (key, data) {
                        out.push((key, data));
                    }
                }
            }
        }
    }
    Ok(state)
}

/// The elements of `elements` (a port map's (key, data), [`Nfnl::map_elements`]) that
/// send a host port to `ip`, withdrawn: each (re-)added as it is, then deleted, so the
/// batch fails, changing nothing, when one of them changed meanwhile (the kernel refuses
/// an element that exists with other data: EBUSY).
pub fn withdraw_by_address_ops(set: &'static str, ip: Ipv4Addr, elements: &[Element]) -> Vec<Op> {
    let ours: Vec<&Element> = elements
        .iter()
        .filter(|(_, data)| data.get(0..4) == Some(&ip.octets()[..]))
        .collect();
    let mut ops: Vec<Op> = ours
        .iter()
        .map(|(key, data)| Op::Add {
            set,
            key: key.clone(),
            data: data.clone(),
        })
        .collect();
    ops.extend(ours.iter().map(|(key, _)| Op::Del {
        set,
        key: key.clone(),
    }));
    ops
}

/// Reads what the kernel has queued for `sock` without blocking: it answers a request
/// within the `sendmsg` that sent it, so nothing queued means `missing` (an error).
fn recv_now(sock: &Socket, buf: &mut Vec<u8>, missing: &str) -> io::Result<usize> {
    sock.recv(buf, nix::libc::MSG_DONTWAIT).map_err(|e| {
        if e.kind() == io::ErrorKind::WouldBlock {
            io::Error::new(io::ErrorKind::UnexpectedEof, missing.to_string())
        } else {
            e
        }
    })
}

/// The (sequence, error code) of every `NLMSG_ERROR` (code 0: an ack) in `buf`.
fn parse_acks(mut buf: &[u8]) -> io::Result<Vec<(u32, i32)>> {
    let bad = |m: &str| io::Error::new(io::ErrorKind::InvalidData, m.to_string());
    let mut out = Vec::new();
    while buf.len() >= 16 {
        let len = u32::from_ne_bytes(buf[0..4].try_into().expect("4 bytes")) as usize;
        if len < 16 || len > buf.len() {
            return Err(bad("malformed netlink reply"));
        }
        let kind = u16::from_ne_bytes(buf[4..6].try_into().expect("2 bytes"));
        let seq = u32::from_ne_bytes(buf[8..12].try_into().expect("4 bytes"));
        if kind == NLMSG_ERROR {
            if len < 20 {
                return Err(bad("short netlink error message"));
            }
            let code = i32::from_ne_bytes(buf[16..20].try_into().expect("4 bytes"));
            out.push((seq, code));
        }
        buf = &buf[((len + 3) & !3).min(buf.len())..];
    }
    Ok(out)
}

/// How long after a deletion closing the socket may still wait for its grace period
/// (and hold nf_tables' commit mutex meanwhile, stalling every other nf_tables change
/// on the host). Grace periods measured 7–16 ms here.
const CLOSE_AFTER_DELETE: Duration = Duration::from_millis(50);

impl Drop for Nfnl {
    fn drop(&mut self) {
        let Some(sock) = self.sock.take() else { return };
        // Closing right after a deletion waits for nf_tables' destroy work (an RCU grace
        // period) with the commit mutex held. A thread closes it once that work is done,
        // so neither the caller nor other nf_tables users wait. If the process exits
        // first, its exit pays the rest of the grace period instead.
        let Some(wait) = self
            .deleted_at
            .and_then(|t| CLOSE_AFTER_DELETE.checked_sub(t.elapsed()))
        else {
            return;
        };
        let spawned = threadgate::spawn(
            std::thread::Builder::new().name("nfnl-close".into()),
            move || {
                std::thread::sleep(wait);
                drop(sock);
            },
        );
        if let Err(e) = spawned {
            tracing::debug!(error = %e, "closed the nf_tables socket inline");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What `nft` 1.0.6 sent (strace) for
    /// `add element ip mfgperf_probe tcp_ports { 45678 : 10.99.0.5 . 80 }`, minus its
    /// flags (it asks for no ack), sequence numbers and the set id (only needed for a
    /// set created in the same batch).
    #[test]
    fn add_element_matches_what_nft_sends() {
        let ops = publish_ops(
            Ipv4Addr::new(10, 99, 0, 5),
            &[Reservation {
                protocol: Protocol::Tcp,
                host_port: 45678,
                container_port: 80,
            }],
        );
        let (bytes, seqs) = encode_batch("mfgperf_probe", &ops, 7);
        assert_eq!(seqs, [8]);
        assert_eq!(bytes.len(), 20 + 92 + 20);
        let begin = &bytes[..20];
        assert_eq!(&begin[4..6], &NFNL_MSG_BATCH_BEGIN.to_ne_bytes());
        assert_eq!(&begin[16..20], &[0, 0, 0, 10]); // AF_UNSPEC, v0, res_id 10 (BE)
        let m = &bytes[20..112];
        assert_eq!(u32::from_ne_bytes(m[0..4].try_into().unwrap()), 92);
        assert_eq!(&m[4..6], &((10u16 << 8) | 12).to_ne_bytes());
        assert_eq!(u16::from_ne_bytes(m[6..8].try_into().unwrap()), 0x405);
        assert_eq!(&m[16..20], &[2, 0, 0, 0]);
        let mut attrs = Vec::new();
        attrs.extend_from_slice(b"\x12\x00\x01\x00mfgperf_probe\x00\x00\x00");
        attrs.extend_from_slice(b"\x0e\x00\x02\x00tcp_ports\x00\x00\x00");
        attrs.extend_from_slice(b"\x24\x00\x03\x80");
        attrs.extend_from_slice(b"\x20\x00\x01\x80\x0c\x00\x01\x80\x06\x00\x01\x00\xb2\x6e\x00\x00\x10\x00\x02\x80\x0c\x00\x01\x00\x0a\x63\x00\x05\x00\x50\x00\x00");
        assert_eq!(&m[20..], &attrs[..]);
        assert_eq!(&bytes[116..118], &NFNL_MSG_BATCH_END.to_ne_bytes());
    }

    #[test]
    fn withdraw_adds_then_deletes_each_port() {
        let ports = [
            Reservation {
                protocol: Protocol::Tcp,
                host_port: 8080,
                container_port: 80,
            },
            Reservation {
                protocol: Protocol::Udp,
                host_port: 5353,
                container_port: 53,
            },
        ];
        let ops = withdraw_ops(Ipv4Addr::new(10, 94, 0, 5), &ports);
        assert_eq!(ops.len(), 4);
        assert!(
            matches!(&ops[0], Op::Add { set: "tcp_ports", data, .. } if data == &[10, 94, 0, 5, 0, 80, 0, 0])
        );
        assert!(
            matches!(&ops[3], Op::Del { set: "udp_ports", key } if key == &5353u16.to_be_bytes())
        );
        let (bytes, seqs) = encode_batch("t", &ops, u32::MAX - 1);
        assert_eq!(seqs, [u32::MAX, 0, 1, 2], "sequence numbers wrap");
        // The delete of the key in the nft layout: 16-byte LIST_ELEM with only the key.
        let del = [
            0x10, 0, 1, 0x80, 0x0c, 0, 1, 0x80, 6, 0, 1, 0, 0x14, 0xe9, 0, 0,
        ];
        assert!(bytes.windows(del.len()).any(|w| w == del));
    }

    /// `nft flush map`: a DELSETELEM naming the table and the map and no element.
    #[test]
    fn flushing_the_maps_names_each_map_and_no_element() {
        let ops = flush_maps_ops();
        assert_eq!(
            ops,
            [
                Op::FlushMap { set: "tcp_ports" },
                Op::FlushMap { set: "udp_ports" }
            ]
        );
        let (bytes, seqs) = encode_batch("t", &ops, 1);
        assert_eq!(seqs, [2, 3]);
        // Header 16, nfgenmsg 4, the table "t" (8) and the map "tcp_ports" (16).
        assert_eq!(bytes.len(), 20 + 2 * 44 + 20);
        let m = &bytes[20..64];
        assert_eq!(u32::from_ne_bytes(m[0..4].try_into().unwrap()), 44);
        assert_eq!(&m[4..6], &((10u16 << 8) | 14).to_ne_bytes());
        assert_eq!(u16::from_ne_bytes(m[6..8].try_into().unwrap()), 0x5);
        assert_eq!(&m[20..28], b"\x06\x00\x01\x00t\x00\x00\x00");
        assert_eq!(&m[28..44], b"\x0e\x00\x02\x00tcp_ports\x00\x00\x00");
    }

    #[test]
    fn the_ruleset_id_changes_with_the_ruleset_only() {
        let subnet: Subnet = "10.94.0.0/16".parse().unwrap();
        let id = |table: &str, bridge: &str, subnet| {
            ruleset_id(table, &create_table_ops(bridge, subnet))
        };
        let ours = id("minifargate_mfg0", "mfg0", subnet);
        assert!(ours.starts_with("netlink-") && ours.len() == 16, "{ours}");
        assert_eq!(ours, id("minifargate_mfg0", "mfg0", subnet), "stable");
        assert_ne!(
            ours,
            id("minifargate_mfg0", "mfg0", "10.95.0.0/16".parse().unwrap())
        );
        assert_ne!(ours, id("minifargate_mfg0", "mfg1", subnet));
        assert_ne!(ours, id("minifargate_mfg1", "mfg0", subnet));
    }

    /// The metadata redirect: a filter chain (no nat chain, no nat or ct expression, so
    /// no connection tracking in the namespace), one rule per direction, on `lo`.
    #[test]
    fn redirect_rewrites_ports_in_a_filter_chain() {
        let addr = Ipv4Addr::new(169, 254, 170, 2);
        let ops = redirect_ops(addr, 80, 51679);
        assert_eq!(ops[..3], [Op::NewTable, Op::DelTable, Op::NewTable]);
        assert_eq!(
            ops[3],
            Op::NewChain {
                name: "output",
                kind: ChainType::Filter,
                hook: Hook::Output,
                priority: 0,
            }
        );
        let rules: Vec<&Vec<Expr>> = ops
            .iter()
            .filter_map(|o| match o {
                Op::NewRule { chain, exprs } => {
                    assert_eq!(*chain, "output");
                    Some(exprs)
                }
                _ => None,
            })
            .collect();
        assert_eq!(rules.len(), 2);
        // (address offset, port offset, port matched, port written) of each direction.
        for (rule, (addr_off, port_off, from, to)) in rules
            .iter()
            .zip([(16, 2, 80u16, 51679u16), (12, 0, 51679, 80)])
        {
            assert_eq!(
                rule[0],
                Expr::Payload {
                    transport: false,
                    offset: addr_off,
                    len: 4
                }
            );
            assert_eq!(
                rule[1],
                Expr::Cmp {
                    eq: true,
                    data: vec![169, 254, 170, 2]
                }
            );
            assert_eq!(rule[2], Expr::MetaOif);
            assert_eq!(
                rule[3],
                Expr::Cmp {
                    eq: true,
                    data: 1u32.to_ne_bytes().to_vec()
                }
            );
            assert_eq!(
                rule[5],
                Expr::Cmp {
                    eq: true,
                    data: vec![6]
                }
            );
            assert_eq!(
                rule[6],
                Expr::Payload {
                    transport: true,
                    offset: port_off,
                    len: 2
                }
            );
            assert_eq!(
                rule[7],
                Expr::Cmp {
                    eq: true,
                    data: from.to_be_bytes().to_vec()
                }
            );
            assert_eq!(
                rule[8],
                Expr::Immediate {
                    data: to.to_be_bytes().to_vec()
                }
            );
            assert_eq!(
                rule[9],
                Expr::WriteTcp {
                    offset: port_off,
                    len: 2
                }
            );
            assert_eq!(rule[10], Expr::Accept);
            assert!(
                !rule
                    .iter()
                    .any(|e| matches!(e, Expr::Dnat | Expr::Masquerade | Expr::CtStatus)),
                "nothing that needs connection tracking: {rule:?}"
            );
        }
        let (bytes, _) = encode_batch(crate::METADATA_TABLE, &ops, 1);
        let has = |s: &[u8]| bytes.windows(s.len()).any(|w| w == s);
        assert!(has(b"\x0b\x00\x07\x00filter\x00"), "chain type filter");
        assert!(!has(b"nat\x00"), "no nat chain or expression");
        assert!(!has(b"\x07\x00\x01\x00ct\x00"), "no ct expression");
    }

    /// What `nft` 1.0.6 sends (`--debug=mnl`) for `tcp dport set 51679` (an immediate,
    /// then a payload write with the TCP checksum update) and for `accept`.
    #[test]
    fn tcp_port_write_matches_what_nft_sends() {
        let ops = [Op::NewRule {
            chain: "output",
            exprs: vec![
                Expr::Immediate {
                    data: 51679u16.to_be_bytes().to_vec(),
                },
                Expr::WriteTcp { offset: 2, len: 2 },
                Expr::Accept,
            ],
        }];
        let (bytes, _) = encode_batch("t", &ops, 1);
        let mut want = Vec::new();
        // immediate: DREG 1, DATA { VALUE c9 df }
        want.extend_from_slice(b"\x2c\x00\x01\x80\x0e\x00\x01\x00immediate\x00\x00\x00");
        want.extend_from_slice(b"\x18\x00\x02\x80\x08\x00\x01\x00\x00\x00\x00\x01");
        want.extend_from_slice(b"\x0c\x00\x02\x80\x06\x00\x01\x00\xc9\xdf\x00\x00");
        // payload write: SREG 1, BASE transport, OFFSET 2, LEN 2, CSUM_TYPE inet,
        // CSUM_OFFSET 16
        want.extend_from_slice(b"\x44\x00\x01\x80\x0c\x00\x01\x00payload\x00\x34\x00\x02\x80");
        for (kind, value) in [(5u8, 1u8), (2, 2), (3, 2), (4, 2), (6, 1), (7, 16)] {
            want.extend_from_slice(&[8, 0, kind, 0, 0, 0, 0, value]);
        }
        // immediate verdict: DREG 0 (verdict), DATA { VERDICT { CODE NF_ACCEPT } }
        want.extend_from_slice(b"\x30\x00\x01\x80\x0e\x00\x01\x00immediate\x00\x00\x00");
        want.extend_from_slice(b"\x1c\x00\x02\x80\x08\x00\x01\x00\x00\x00\x00\x00");
        want.extend_from_slice(b"\x10\x00\x02\x80\x0c\x00\x02\x80\x08\x00\x01\x00\x00\x00\x00\x01");
        let at = bytes
            .windows(4)
            .position(|w| w == [0x2c, 0, 1, 0x80])
            .expect("the first expression");
        assert_eq!(&bytes[at..at + want.len()], &want[..]);
        // Nested in NFTA_RULE_EXPRESSIONS, which holds exactly these three.
        assert_eq!(
            u16::from_ne_bytes(bytes[at - 4..at - 2].try_into().unwrap()) as usize,
            4 + want.len()
        );
    }

    #[test]
    fn acks_are_parsed_by_sequence() {
        let mut buf = Vec::new();
        for (seq, code) in [(5u32, 0i32), (6, -17)] {
            buf.extend_from_slice(&36u32.to_ne_bytes());
            buf.extend_from_slice(&NLMSG_ERROR.to_ne_bytes());
            buf.extend_from_slice(&0u16.to_ne_bytes());
            buf.extend_from_slice(&seq.to_ne_bytes());
            buf.extend_from_slice(&0u32.to_ne_bytes());
            buf.extend_from_slice(&code.to_ne_bytes());
            buf.extend_from_slice(&[0u8; 16]);
        }
        assert_eq!(parse_acks(&buf).unwrap(), [(5, 0), (6, -17)]);
        assert!(parse_acks(&buf[..20].iter().map(|_| 0xff).collect::<Vec<_>>()).is_err());
    }
}
