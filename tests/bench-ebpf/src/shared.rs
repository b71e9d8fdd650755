//! Types shared by the benchmark's XDP programs and the benchmark driver
//! (tests/bench/src/object.rs, which includes this file with `#[path]`): plain
//! `#[repr(C)]` integers, no dependencies.

/// Names of the programs and maps in the bench object.
pub mod names {
    /// The flood generator, run with BPF_PROG_RUN in live-frames mode.
    pub const GENERATOR: &str = "bench_gen";
    /// `return XDP_DROP`: the floor every drop path is compared with.
    pub const DROP: &str = "bench_drop";
    /// XDP_DROP returned by a function it calls: the floor plus one
    /// BPF-to-BPF call and its return, what each global function of the
    /// filter's dispatcher costs a packet on this CPU.
    pub const CALL: &str = "bench_call";
    /// Reads the headers every filter reads, then XDP_DROP: the floor plus
    /// the cost of touching the packet.
    pub const TOUCH: &str = "bench_touch";
    /// `return XDP_PASS`: the floor of pass paths.
    pub const PASS: &str = "bench_pass";
    /// Drops packets to the spoofed source ranges (the victim's replies to
    /// the flood), passes everything else.
    pub const SINK: &str = "bench_sink";
    pub const GEN_CONFIG: &str = "GEN_CONFIG";
    pub const GEN_STATE: &str = "GEN_STATE";
}

/// What the generator rewrites in its template frame, per packet. Offsets
/// are from the start of the frame; 0 means "not used".
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GenConfig {
    /// Time between two packets in 1/16 ns; 0: as fast as possible.
    pub interval_fp16: u64,
    /// How far ahead of the schedule the generator may run, in 1/16 ns:
    /// `(burst - 1) * interval`, so packets leave in bursts of `burst` at
    /// the same average rate, as a NIC's interrupt moderation would hand
    /// them to NAPI.
    pub ahead_fp16: u64,
    /// Packet `i` gets source word `src_base + (i % src_count)` (big-endian on the wire).
    pub src_base: u32,
    pub src_count: u32,
    /// The 32-bit word of the source address that varies: the IPv4 address,
    /// or bytes 4..8 of an IPv6 address (so each source is its own /64 and /48).
    pub src_off: u16,
    /// The IPv4 header checksum (covers the address).
    pub ip_csum_off: u16,
    /// The UDP or TCP checksum (covers the address, the port and the random word).
    pub l4_csum_off: u16,
    /// A port set to `port_min + random % port_span` per packet.
    pub port_off: u16,
    pub port_min: u16,
    pub port_span: u16,
    /// A 16-bit field set at random per packet (DNS id, TCP sequence number).
    pub rand_off: u16,
    pub _padding: u16,
}

/// The generator's counters and pacing state (one slot; the generator runs on one CPU).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GenState {
    /// When the next packet is due, in 1/16 ns of bpf_ktime_get_ns.
    pub next_fp16: u64,
    /// Frames handed to XDP_TX.
    pub sent: u64,
    /// Calls that found no packet due yet (the pacing spin).
    pub idle: u64,
    /// Times the schedule was more than `MAX_LAG_NS` (main.rs) behind and restarted
    /// from now (the generator was preempted): the lost packets are not sent later.
    pub restarts: u64,
}

/// The spoofed ranges of the flood, where the sink drops the victim's replies:
/// 198.18.0.0/15 and 2001:db8:8000::/33 (the source words the generator
/// writes into bytes 4..8 of 2001:db8::/32 start at 0x8000_0000).
pub const SPOOF4_NET: u32 = 0xc612_0000;
pub const SPOOF4_MASK: u32 = 0xfffe_0000;
pub const SPOOF6_WORD0: u32 = 0x2001_0db8;
pub const SPOOF6_WORD1_MIN: u32 = 0x8000_0000;
