//! tokio I/O around the sans-I/O protocol: addresses, listeners and connections.
//! Only this layer (and the engine above it) touches sockets.

pub mod addr;
