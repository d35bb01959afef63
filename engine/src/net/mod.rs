//! The tokio layer: sockets around the sans-I/O protocol. Resolving addresses, listeners,
//! dialling out, one connection's handshake loop and pumps, the pool of precomputed DH key
//! pairs and the workers that compute Diffie-Hellman work at background priority.

pub mod background;
pub mod buffers;
pub mod conn;
pub mod dhpool;
pub mod dial;
pub mod io_fault;
pub mod listener;
pub mod probe;
pub mod proxy;
pub mod resolve;
pub mod reverse;
pub mod spipe;
pub mod stream;
