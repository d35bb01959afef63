//! The tokio layer: sockets around the sans-I/O protocol. Resolving addresses, listeners, one
//! connection's handshake and pumps, and the pool of precomputed DH key pairs.

pub mod conn;
pub mod dhpool;
pub mod listener;
pub mod probe;
pub mod resolve;
pub mod stream;
