//! The I/O shell: two backends that move datagrams between sockets and the engine.

pub mod addr;
pub mod bufring;
pub mod mmsg;
pub mod sock;
pub mod table;
pub mod uring;

/// Bytes per receive buffer: a full Ethernet-MTU datagram plus the io_uring recvmsg
/// header and source name, plus the engine's tail room.
pub const BUF_SIZE: usize = 2048;
