//! The benchmark's XDP programs (see `shared.rs` for the names):
//!
//! - `bench_gen`: a flood generator for BPF_PROG_RUN in live-frames mode
//!   (BPF_F_TEST_XDP_LIVE_FRAMES). The kernel hands it copies of one template
//!   frame; it rewrites the source address, a port and a random 16-bit field,
//!   fixes the checksums incrementally (RFC 1624), and returns XDP_TX, which
//!   live mode turns into a transmit out of the interface given in the context.
//!   Paced: it waits (reading the clock, a bounded number of times) until the
//!   next packet is due, and returns XDP_DROP (nothing sent, the frame
//!   recycled) if it is still not, so one long call sends at a fixed rate.
//! - `bench_drop` / `bench_pass`: one-line floors, measured like the filter.
//! - `bench_call`: the drop floor through one call to a global function.
//! - `bench_sink`: on the generator's side, drops the victim's replies to the
//!   spoofed sources so they cost nothing there, and passes the rest.
#![no_std]
#![no_main]

#[allow(dead_code)]
mod shared;

use aya_ebpf::{
    bindings::{xdp_action, xdp_md},
    helpers::{bpf_get_prandom_u32, bpf_ktime_get_ns},
    macros::{map, xdp},
    maps::Array,
    programs::XdpContext,
};

use crate::shared::{GenConfig, GenState, SPOOF4_MASK, SPOOF4_NET, SPOOF6_WORD0, SPOOF6_WORD1_MIN};

/// How far behind schedule the generator may fall before it gives up on the
/// missed packets instead of sending them back to back.
const MAX_LAG_NS: u64 = 20_000;

#[map]
static GEN_CONFIG: Array<GenConfig> = Array::with_max_entries(1, 0);

#[map]
static GEN_STATE: Array<GenState> = Array::with_max_entries(1, 0);

#[xdp]
pub fn bench_drop(_ctx: XdpContext) -> u32 {
    xdp_action::XDP_DROP
}

#[xdp]
pub fn bench_call(ctx: XdpContext) -> u32 {
    bench_called(ctx.ctx)
}

/// A global function (verified on its own, called, not inlined), as the
/// filter's are. A kernel that mitigates return-address attacks (SRSO "Safe
/// RET" on some AMD CPUs) JITs its return as a jump to a return thunk.
/// It reads the context so that its verdict is not a constant the linker
/// would fold into the caller, leaving no call (every frame has data, so it
/// drops).
#[unsafe(no_mangle)]
#[inline(never)]
pub extern "C" fn bench_called(ctx: *mut xdp_md) -> u32 {
    let ctx = XdpContext::new(ctx);
    if ctx.data() < ctx.data_end() {
        xdp_action::XDP_DROP
    } else {
        xdp_action::XDP_PASS
    }
}

/// Reads what every filter must read (EtherType, IP protocol, the UDP/TCP
/// ports of an untagged IPv4 or IPv6 packet) and drops: the floor plus the
/// cost of touching the packet's first cache line, which the CPU that runs
/// XDP may not have in its cache (here: the generator on the other CPU wrote it).
#[xdp]
pub fn bench_touch(ctx: XdpContext) -> u32 {
    let (start, end) = (ctx.data(), ctx.data_end());
    let l4 = match read_be16(start, end, 12) {
        Some(0x0800) => ETH_HLEN + 20,
        Some(0x86dd) => ETH_HLEN + 40,
        _ => return xdp_action::XDP_PASS,
    };
    let protocol_at = if l4 == ETH_HLEN + 20 {
        ETH_HLEN + 9
    } else {
        ETH_HLEN + 6
    };
    let protocol = read_be16(start, end, protocol_at).map_or(0, |v| v >> 8);
    match read_be32(start, end, l4) {
        Some(ports) if protocol != 0 && ports != 0 => xdp_action::XDP_DROP,
        _ => xdp_action::XDP_PASS,
    }
}

#[xdp]
pub fn bench_pass(_ctx: XdpContext) -> u32 {
    xdp_action::XDP_PASS
}

const ETH_HLEN: usize = 14;

/// Clock reads one call may wait for its packet to be due (tens of µs).
const MAX_WAIT_LOOPS: u32 = 2048;

#[xdp]
pub fn bench_sink(ctx: XdpContext) -> u32 {
    let (start, end) = (ctx.data(), ctx.data_end());
    let Some(ethertype) = read_be16(start, end, 12) else {
        return xdp_action::XDP_PASS;
    };
    let spoofed = match ethertype {
        // IPv4 destination address: bytes 16..20 of the header.
        0x0800 => {
            read_be32(start, end, ETH_HLEN + 16).is_some_and(|dst| dst & SPOOF4_MASK == SPOOF4_NET)
        }
        // IPv6 destination address: bytes 24..40 of the header.
        0x86dd => {
            read_be32(start, end, ETH_HLEN + 24) == Some(SPOOF6_WORD0)
                && read_be32(start, end, ETH_HLEN + 28).is_some_and(|w| w >= SPOOF6_WORD1_MIN)
        }
        _ => false,
    };
    if spoofed {
        xdp_action::XDP_DROP
    } else {
        xdp_action::XDP_PASS
    }
}

#[xdp]
pub fn bench_gen(ctx: XdpContext) -> u32 {
    generate(&ctx).unwrap_or(xdp_action::XDP_ABORTED)
}

#[inline(always)]
fn generate(ctx: &XdpContext) -> Option<u32> {
    let config = GEN_CONFIG.get(0)?;
    // SAFETY: a valid slot of the array map; only this program writes it, on one CPU.
    let state = unsafe { &mut *GEN_STATE.get_ptr_mut(0)? };

    if config.interval_fp16 != 0 {
        // SAFETY: a helper without arguments.
        let mut now = unsafe { bpf_ktime_get_ns() } << 4;
        // Wait here rather than return the frame: in live-frames mode every
        // call takes a page from the test run's page_pool and every XDP_DROP
        // puts it back through the pool's shared ring, under the lock the
        // DUT's CPU takes to return the frames it received. Spinning on
        // calls would make the DUT pay for the generator's idle time.
        let mut waited = 0;
        while now + config.ahead_fp16 < state.next_fp16 && waited < MAX_WAIT_LOOPS {
            // SAFETY: as above.
            now = unsafe { bpf_ktime_get_ns() } << 4;
            waited += 1;
        }
        if now + config.ahead_fp16 < state.next_fp16 {
            state.idle += 1;
            return Some(xdp_action::XDP_DROP);
        }
        if now > state.next_fp16 && now - state.next_fp16 > MAX_LAG_NS << 4 {
            state.next_fp16 = now;
            state.restarts += 1;
        }
        state.next_fp16 += config.interval_fp16;
    }

    let (start, end) = (ctx.data(), ctx.data_end());
    let n = state.sent;
    // Sum of (~old + new) over the 16-bit words changed, for the L4 checksum.
    let mut l4_delta: u32 = 0;

    if config.src_off != 0 {
        let count = if config.src_count == 0 {
            1
        } else {
            u64::from(config.src_count)
        };
        let source = config.src_base.wrapping_add((n % count) as u32).to_be();
        let delta = write32(start, end, usize::from(config.src_off & 0xff), source)?;
        l4_delta += delta;
        if config.ip_csum_off != 0 {
            fix_checksum(start, end, usize::from(config.ip_csum_off & 0xff), delta)?;
        }
    }
    if config.port_off != 0 {
        let span = if config.port_span == 0 {
            1
        } else {
            u32::from(config.port_span)
        };
        // SAFETY: a helper without arguments.
        let random = unsafe { bpf_get_prandom_u32() };
        let port = config.port_min.wrapping_add((random % span) as u16).to_be();
        l4_delta += write16(start, end, usize::from(config.port_off & 0xff), port)?;
    }
    if config.rand_off != 0 {
        // SAFETY: a helper without arguments.
        let random = unsafe { bpf_get_prandom_u32() } as u16;
        l4_delta += write16(start, end, usize::from(config.rand_off & 0xff), random)?;
    }
    if config.l4_csum_off != 0 {
        fix_checksum(start, end, usize::from(config.l4_csum_off & 0xff), l4_delta)?;
    }
    state.sent = n + 1;
    Some(xdp_action::XDP_TX)
}

/// Writes a 16-bit word as given (already in wire order); returns `~old + new`.
#[inline(always)]
fn write16(start: usize, end: usize, offset: usize, value: u16) -> Option<u32> {
    let at = start + offset;
    if at + 2 > end {
        return None;
    }
    let p = at as *mut u16;
    // SAFETY: the two bytes lie inside the packet (checked above); unaligned access.
    let old = unsafe { p.read_unaligned() };
    unsafe { p.write_unaligned(value) };
    Some(u32::from(!old) + u32::from(value))
}

/// Writes a 32-bit word as given (already in wire order); returns the sum of
/// `~old + new` over its two 16-bit halves. The one's-complement sum does
/// not depend on byte order, so raw halves are fine.
#[inline(always)]
fn write32(start: usize, end: usize, offset: usize, value: u32) -> Option<u32> {
    let at = start + offset;
    if at + 4 > end {
        return None;
    }
    let p = at as *mut u32;
    // SAFETY: the four bytes lie inside the packet (checked above); unaligned access.
    let old = unsafe { p.read_unaligned() };
    unsafe { p.write_unaligned(value) };
    let halves = |v: u32| (v & 0xffff, v >> 16);
    let ((old_lo, old_hi), (new_lo, new_hi)) = (halves(old), halves(value));
    Some((!old_lo & 0xffff) + new_lo + (!old_hi & 0xffff) + new_hi)
}

/// RFC 1624 eqn. 3: HC' = ~(~HC + sum of (~m + m')).
#[inline(always)]
fn fix_checksum(start: usize, end: usize, offset: usize, delta: u32) -> Option<()> {
    let at = start + offset;
    if at + 2 > end {
        return None;
    }
    let p = at as *mut u16;
    // SAFETY: the two bytes lie inside the packet (checked above); unaligned access.
    let old = unsafe { p.read_unaligned() };
    let mut sum = u32::from(!old) + delta;
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    let mut new = !(sum as u16);
    // 0 and 0xffff are the same one's-complement number; UDP reserves 0 for "none".
    if new == 0 {
        new = 0xffff;
    }
    unsafe { p.write_unaligned(new) };
    Some(())
}

#[inline(always)]
fn read_be16(start: usize, end: usize, offset: usize) -> Option<u16> {
    if start + offset + 2 > end {
        return None;
    }
    // SAFETY: inside the packet (checked above); unaligned read.
    Some(u16::from_be(unsafe {
        ((start + offset) as *const u16).read_unaligned()
    }))
}

#[inline(always)]
fn read_be32(start: usize, end: usize, offset: usize) -> Option<u32> {
    if start + offset + 4 > end {
        return None;
    }
    // SAFETY: inside the packet (checked above); unaligned read.
    Some(u32::from_be(unsafe {
        ((start + offset) as *const u32).read_unaligned()
    }))
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
