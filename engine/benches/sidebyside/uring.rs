//! One hop of the plain forwarder (no crypto) on io_uring instead of a readiness loop: the
//! measure of what a completion-based data path could gain over tokio's epoll loop for
//! small messages, before any such path is built into the engine (docs/PERFORMANCE.md).
//! Linux only.

use std::io;
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::fd::{AsRawFd, FromRawFd};

use io_uring::{IoUring, opcode, squeue, types};

/// Each direction's buffer: larger than any small message, as the readiness forwarder's.
const BUF_LEN: usize = 16 << 10;
/// The accept's completion; every other one names a link's slot, a direction and an op.
const ACCEPT: u64 = u64::MAX;

/// One forwarded connection: direction 0 reads the client and writes the target,
/// direction 1 the reverse. Each direction has exactly one receive or one send in flight
/// until it ends; the buffers stay put (boxed) while the kernel holds their addresses.
struct Link {
    streams: [TcpStream; 2],
    bufs: [Box<[u8]>; 2],
    filled: [usize; 2],
    sent: [usize; 2],
    ended: [bool; 2],
    in_flight: u32,
}

fn user_data(slot: usize, direction: usize, send: bool) -> u64 {
    ((slot as u64) << 2) | ((direction as u64) << 1) | u64::from(send)
}

/// Serves `listener` on the calling thread, forwarding each connection to
/// 127.0.0.1:`target`, until the ring fails. Every turn submits what the last completions
/// asked for and waits for the next completion in one `io_uring_enter`.
pub fn forward(listener: TcpListener, target: u16) -> io::Result<()> {
    // One thread submits and reaps: completions' task work runs when it asks for them
    // (DEFER_TASKRUN), not as interrupts of whatever it is doing.
    let mut ring: IoUring = IoUring::builder()
        .setup_single_issuer()
        .setup_defer_taskrun()
        .build(4096)?;
    let mut links: Vec<Option<Link>> = Vec::new();
    let mut free: Vec<usize> = Vec::new();
    let accept = opcode::Accept::new(
        types::Fd(listener.as_raw_fd()),
        std::ptr::null_mut(),
        std::ptr::null_mut(),
    )
    .build()
    .user_data(ACCEPT);
    let mut queued: Vec<squeue::Entry> = vec![accept.clone()];
    loop {
        for entry in queued.drain(..) {
            // SAFETY: every entry's buffer is a boxed slice of a link that stays in `links`
            // until its in-flight count is back to zero; its descriptors live as long.
            while unsafe { ring.submission().push(&entry) }.is_err() {
                ring.submit()?;
            }
        }
        ring.submit_and_wait(1)?;
        let done: Vec<(u64, i32)> = ring
            .completion()
            .map(|c| (c.user_data(), c.result()))
            .collect();
        for (data, result) in done {
            if data == ACCEPT {
                if result >= 0 {
                    // SAFETY: a successful accept's result is a new descriptor we own.
                    let inbound = unsafe { TcpStream::from_raw_fd(result) };
                    if let Ok(outbound) = TcpStream::connect(("127.0.0.1", target)) {
                        let _ = inbound.set_nodelay(true);
                        let _ = outbound.set_nodelay(true);
                        let link = Link {
                            streams: [inbound, outbound],
                            bufs: [vec![0; BUF_LEN].into(), vec![0; BUF_LEN].into()],
                            filled: [0; 2],
                            sent: [0; 2],
                            ended: [false; 2],
                            in_flight: 0,
                        };
                        let slot = free.pop().unwrap_or(links.len());
                        if slot == links.len() {
                            links.push(None);
                        }
                        let link = links[slot].insert(link);
                        queued.push(receive(link, slot, 0));
                        queued.push(receive(link, slot, 1));
                    }
                }
                queued.push(accept.clone());
                continue;
            }
            let slot = (data >> 2) as usize;
            let direction = ((data >> 1) & 1) as usize;
            let Some(link) = links.get_mut(slot).and_then(Option::as_mut) else {
                continue;
            };
            link.in_flight -= 1;
            if data & 1 == 0 {
                // A receive: pass the bytes on, or pass the end of the stream on.
                if result > 0 {
                    link.filled[direction] = result as usize;
                    link.sent[direction] = 0;
                    queued.push(send(link, slot, direction));
                } else {
                    link.ended[direction] = true;
                    let _ = link.streams[1 - direction].shutdown(Shutdown::Write);
                }
            } else if result < 0 {
                // The far side is gone: end both directions (the other receive returns).
                link.ended[direction] = true;
                for stream in &link.streams {
                    let _ = stream.shutdown(Shutdown::Both);
                }
            } else {
                link.sent[direction] += result as usize;
                queued.push(if link.sent[direction] < link.filled[direction] {
                    send(link, slot, direction)
                } else {
                    receive(link, slot, direction)
                });
            }
            if link.ended == [true; 2] && link.in_flight == 0 {
                links[slot] = None;
                free.push(slot);
            }
        }
    }
}

fn receive(link: &mut Link, slot: usize, direction: usize) -> squeue::Entry {
    link.in_flight += 1;
    let buf = &mut link.bufs[direction];
    opcode::Recv::new(
        types::Fd(link.streams[direction].as_raw_fd()),
        buf.as_mut_ptr(),
        buf.len() as u32,
    )
    .build()
    .user_data(user_data(slot, direction, false))
}

fn send(link: &mut Link, slot: usize, direction: usize) -> squeue::Entry {
    link.in_flight += 1;
    let pending = &link.bufs[direction][link.sent[direction]..link.filled[direction]];
    opcode::Send::new(
        types::Fd(link.streams[1 - direction].as_raw_fd()),
        pending.as_ptr(),
        pending.len() as u32,
    )
    .build()
    .user_data(user_data(slot, direction, true))
}
