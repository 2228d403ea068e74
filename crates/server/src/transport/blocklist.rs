//! Addresses blocked in the kernel: a classic BPF filter on the listening socket drops every
//! packet from them (their SYNs included), so a flood of connection attempts from one address
//! costs the server no accept, no close and no wake-up while the block lasts. The admission
//! rules decide whom to block (`admission.flood_block_refusals_per_second`); this module only
//! keeps the list and the filter in step. Linux only: elsewhere a block is recorded and
//! expires, but filters nothing, and such sockets keep being refused one by one.

use std::net::IpAddr;
use std::time::{Duration, Instant};

/// Most addresses blocked at once; the filter's jumps are 8-bit offsets, which bounds its
/// length. Past it a flooding address is refused one socket at a time, as without blocking.
pub const MAX_BLOCKED: usize = 48;

/// The blocked addresses of one listener (IPv4 addresses, IPv6 /64 prefixes as
/// `admission::key` gives them).
pub struct Blocklist {
    #[cfg(target_os = "linux")]
    fd: std::os::fd::RawFd,
    blocked: Vec<(IpAddr, Instant)>,
}

impl Blocklist {
    /// A list for `listener`, which must outlive it.
    pub fn new(listener: &tokio::net::TcpListener) -> Blocklist {
        #[cfg(not(target_os = "linux"))]
        let _ = listener;
        Blocklist {
            #[cfg(target_os = "linux")]
            fd: std::os::fd::AsRawFd::as_raw_fd(listener),
            blocked: Vec::new(),
        }
    }

    /// Whether no address is blocked (accepted sockets otherwise shed the inherited filter).
    pub fn is_empty(&self) -> bool {
        self.blocked.is_empty()
    }

    /// How many addresses are blocked.
    pub fn len(&self) -> usize {
        self.blocked.len()
    }

    /// Blocks `ip` for `secs`. False when the list is full or the filter could not be set.
    pub fn block(&mut self, ip: IpAddr, secs: u64) -> bool {
        let until = Instant::now() + Duration::from_secs(secs);
        if let Some(entry) = self.blocked.iter_mut().find(|(a, _)| *a == ip) {
            entry.1 = until;
            return true;
        }
        if self.blocked.len() >= MAX_BLOCKED {
            return false;
        }
        self.blocked.push((ip, until));
        if let Err(e) = self.apply() {
            tracing::warn!(error = %e, "could not set the listener's block filter");
            self.blocked.pop();
            return false;
        }
        true
    }

    /// Lifts the blocks that are over; returns the addresses lifted.
    pub fn expire(&mut self, now: Instant) -> Vec<IpAddr> {
        let mut lifted = Vec::new();
        self.blocked.retain(|&(ip, until)| {
            let keep = until > now;
            if !keep {
                lifted.push(ip);
            }
            keep
        });
        if !lifted.is_empty()
            && let Err(e) = self.apply()
        {
            tracing::warn!(error = %e, "could not update the listener's block filter");
        }
        lifted
    }

    /// Sets the listener's filter to the current list, or removes it when the list is empty.
    #[cfg(target_os = "linux")]
    fn apply(&self) -> std::io::Result<()> {
        if self.blocked.is_empty() {
            return detach(self.fd);
        }
        let program = program(self.blocked.iter().map(|(ip, _)| *ip));
        let prog = libc::sock_fprog {
            len: program.len() as u16,
            filter: program.as_ptr() as *mut libc::sock_filter,
        };
        // SAFETY: `prog` points at `program`, alive for the call; the kernel copies it.
        let rc = unsafe {
            libc::setsockopt(
                self.fd,
                libc::SOL_SOCKET,
                libc::SO_ATTACH_FILTER,
                &prog as *const libc::sock_fprog as *const libc::c_void,
                std::mem::size_of::<libc::sock_fprog>() as libc::socklen_t,
            )
        };
        if rc == 0 {
            Ok(())
        } else {
            Err(std::io::Error::last_os_error())
        }
    }

    #[cfg(not(target_os = "linux"))]
    fn apply(&self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Removes a socket's filter. An accepted socket inherits its listener's filter: shed it so its
/// packets are not checked against the list for the socket's whole life.
#[cfg(target_os = "linux")]
pub fn detach(fd: std::os::fd::RawFd) -> std::io::Result<()> {
    let zero: libc::c_int = 0;
    // SAFETY: a plain integer option on a descriptor the caller owns.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_DETACH_FILTER,
            &zero as *const libc::c_int as *const libc::c_void,
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    // ENOENT: there was no filter.
    if rc == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::ENOENT) {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

#[cfg(not(target_os = "linux"))]
pub fn detach(_fd: i32) -> std::io::Result<()> {
    Ok(())
}

#[cfg(target_os = "linux")]
mod bpf {
    // Classic BPF opcodes (linux/filter.h).
    pub const LD_W_ABS: u16 = 0x20;
    pub const LD_B_ABS: u16 = 0x30;
    pub const LD_MEM: u16 = 0x60;
    pub const ST: u16 = 0x02;
    pub const RSH_K: u16 = 0x74;
    pub const JEQ_K: u16 = 0x15;
    pub const RET_K: u16 = 0x06;
    /// Offsets from the network header, wherever the socket layer has moved `data` to.
    pub const NET: u32 = 0xfff0_0000;
}

#[cfg(target_os = "linux")]
fn op(code: u16, jt: u8, jf: u8, k: u32) -> libc::sock_filter {
    libc::sock_filter { code, jt, jf, k }
}

/// The filter: IPv4 packets are checked against the IPv4 addresses, IPv6 packets' first 64
/// bits of source against the /64 prefixes; a match is dropped (return 0), the rest kept whole.
/// At most [`MAX_BLOCKED`] entries keep every jump within 255 instructions.
#[cfg(target_os = "linux")]
fn program(blocked: impl Iterator<Item = IpAddr>) -> Vec<libc::sock_filter> {
    use bpf::*;
    let (mut v4, mut v6) = (Vec::new(), Vec::new());
    for ip in blocked {
        match ip {
            IpAddr::V4(a) => v4.push(u32::from(a)),
            IpAddr::V6(a) => {
                let bits = u128::from(a);
                v6.push(((bits >> 96) as u32, (bits >> 64) as u32));
            }
        }
    }
    // Layout: version check; IPv4 compares; keep; IPv6 loads and compares; keep; drop.
    let v4_len = 1 + v4.len() + 1; // load, compares, keep
    let v6_len = 5 + 4 * v6.len() + 1; // version check, two loads and stores, compares, keep
    let mut p = Vec::with_capacity(3 + v4_len + v6_len + 1);
    p.push(op(LD_B_ABS, 0, 0, NET));
    p.push(op(RSH_K, 0, 0, 4));
    p.push(op(JEQ_K, 0, v4_len as u8, 4));
    p.push(op(LD_W_ABS, 0, 0, NET + 12));
    for (i, a) in v4.iter().enumerate() {
        // To the drop at the very end: past the rest of the compares, the keep and the IPv6 part.
        let to_drop = (v4.len() - i - 1) + 1 + v6_len;
        p.push(op(JEQ_K, to_drop as u8, 0, *a));
    }
    p.push(op(RET_K, 0, 0, u32::MAX));
    // IPv6 (the accumulator still holds the version when the IPv4 branch was not taken).
    // Neither version: to the keep.
    p.push(op(JEQ_K, 0, (v6_len - 2) as u8, 6));
    p.push(op(LD_W_ABS, 0, 0, NET + 8));
    p.push(op(ST, 0, 0, 0));
    p.push(op(LD_W_ABS, 0, 0, NET + 12));
    p.push(op(ST, 0, 0, 1));
    for (i, (hi, lo)) in v6.iter().enumerate() {
        let to_drop = 4 * (v6.len() - i - 1) + 1;
        p.push(op(LD_MEM, 0, 0, 0));
        p.push(op(JEQ_K, 0, 2, *hi));
        p.push(op(LD_MEM, 0, 0, 1));
        p.push(op(JEQ_K, to_drop as u8, 0, *lo));
    }
    p.push(op(RET_K, 0, 0, u32::MAX));
    p.push(op(RET_K, 0, 0, 0));
    p
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    /// Runs the filter on a packet given as its network header, as the kernel would.
    fn run(p: &[libc::sock_filter], net: &[u8]) -> u32 {
        let (mut a, mut mem, mut pc) = (0u32, [0u32; 16], 0usize);
        let word = |off: usize| u32::from_be_bytes(net[off..off + 4].try_into().unwrap());
        loop {
            let i = p[pc];
            pc += 1;
            match i.code {
                bpf::LD_B_ABS => a = u32::from(net[(i.k - bpf::NET) as usize]),
                bpf::LD_W_ABS => a = word((i.k - bpf::NET) as usize),
                bpf::LD_MEM => a = mem[i.k as usize],
                bpf::ST => mem[i.k as usize] = a,
                bpf::RSH_K => a >>= i.k,
                bpf::JEQ_K => pc += usize::from(if a == i.k { i.jt } else { i.jf }),
                bpf::RET_K => return i.k,
                c => panic!("opcode {c:#x}"),
            }
        }
    }

    fn v4_packet(src: [u8; 4]) -> Vec<u8> {
        let mut p = vec![0u8; 20];
        p[0] = 0x45;
        p[12..16].copy_from_slice(&src);
        p
    }

    fn v6_packet(src: std::net::Ipv6Addr) -> Vec<u8> {
        let mut p = vec![0u8; 40];
        p[0] = 0x60;
        p[8..24].copy_from_slice(&src.octets());
        p
    }

    #[test]
    fn drops_exactly_the_blocked_addresses() {
        let v6: std::net::Ipv6Addr = "2001:db8:1:2::".parse().unwrap();
        let mut list: Vec<IpAddr> = (0..MAX_BLOCKED as u8 / 2)
            .map(|i| IpAddr::from([10, 0, 0, i]))
            .collect();
        list.extend(
            (0..MAX_BLOCKED as u16 / 2 - 1)
                .map(|i| IpAddr::from(std::net::Ipv6Addr::new(0x2001, 0xdb8, 9, i, 0, 0, 0, 0))),
        );
        list.push(IpAddr::V6(v6));
        let p = program(list.iter().copied());
        assert!(p.len() < 256);
        for i in 0..MAX_BLOCKED as u8 / 2 {
            assert_eq!(run(&p, &v4_packet([10, 0, 0, i])), 0);
        }
        assert_eq!(run(&p, &v4_packet([10, 0, 0, 200])), u32::MAX);
        assert_eq!(run(&p, &v4_packet([127, 0, 0, 1])), u32::MAX);
        // Any address of a blocked /64 is dropped; its neighbours are not.
        assert_eq!(run(&p, &v6_packet("2001:db8:1:2::77".parse().unwrap())), 0);
        assert_eq!(run(&p, &v6_packet("2001:db8:9:5::1".parse().unwrap())), 0);
        assert_eq!(
            run(&p, &v6_packet("2001:db8:1:3::".parse().unwrap())),
            u32::MAX
        );
        assert_eq!(run(&p, &v6_packet("::1".parse().unwrap())), u32::MAX);
        // Only one kind blocked: the other kind passes.
        let only4 = program([IpAddr::from([10, 0, 0, 1])].into_iter());
        assert_eq!(run(&only4, &v6_packet(v6)), u32::MAX);
        assert_eq!(run(&only4, &v4_packet([10, 0, 0, 1])), 0);
        let only6 = program([IpAddr::V6(v6)].into_iter());
        assert_eq!(run(&only6, &v4_packet([10, 0, 0, 1])), u32::MAX);
        assert_eq!(run(&only6, &v6_packet(v6)), 0);
    }
}
