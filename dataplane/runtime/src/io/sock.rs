//! Socket preparation for the workers: nonblocking, large kernel buffers.

use std::net::UdpSocket;

/// Kernel buffer sizes we ask for, largest first; the kernel caps them at rmem_max.
const BUF_SIZES: [usize; 3] = [4 << 20, 2 << 20, 1 << 20];

/// Makes `sock` ready for a worker. Buffer sizing failures are ignored on purpose: the
/// socket still works, just with less room for bursts.
pub fn prepare(sock: &UdpSocket) -> std::io::Result<()> {
    sock.set_nonblocking(true)?;
    let s = socket2::SockRef::from(sock);
    for size in BUF_SIZES {
        if s.set_recv_buffer_size(size).is_ok() {
            break;
        }
    }
    for size in BUF_SIZES {
        if s.set_send_buffer_size(size).is_ok() {
            break;
        }
    }
    Ok(())
}
