//! The pumps' batch buffers, lent for one wake-up from a small stock kept per thread: an
//! idle connection holds none (as before), and a thread that moves many small messages
//! does not go to the allocator for a 34 KB buffer each time one arrives.

use std::cell::RefCell;
use std::ops::{Deref, DerefMut};

use crate::protocol::PACKET_LEN;

/// Packets sealed or opened per read/write: one syscall moves up to this many.
pub const PACKETS_PER_BATCH: usize = 32;
/// Every lent buffer's capacity: a batch of whole packets, which also holds a batch of
/// plaintext (1024 bytes per packet).
pub const BATCH: usize = PACKETS_PER_BATCH * PACKET_LEN;
/// Buffers a thread keeps between wake-ups.
const KEPT: usize = 16;

thread_local! {
    // Const already: Windows' clippy 1.96 still asks for it (its thread_local expands
    // differently), hence the allow.
    #[allow(clippy::missing_const_for_thread_local)]
    static STOCK: RefCell<Vec<Vec<u8>>> = const { RefCell::new(Vec::new()) };
}

/// An empty buffer of capacity [`BATCH`], back to the stock when dropped.
pub struct Lent(Vec<u8>);

impl Lent {
    pub fn new() -> Lent {
        let stocked = STOCK.with(|stock| stock.borrow_mut().pop());
        Lent(stocked.unwrap_or_else(|| Vec::with_capacity(BATCH)))
    }
}

impl Drop for Lent {
    fn drop(&mut self) {
        let mut buffer = std::mem::take(&mut self.0);
        // One grown past a batch (it never is) is not kept.
        if buffer.capacity() != BATCH {
            return;
        }
        buffer.clear();
        // A thread being torn down has no stock left; the buffer is freed then.
        let _ = STOCK.try_with(|stock| {
            let mut stock = stock.borrow_mut();
            if stock.len() < KEPT {
                stock.push(buffer);
            }
        });
    }
}

impl Deref for Lent {
    type Target = Vec<u8>;
    fn deref(&self) -> &Vec<u8> {
        &self.0
    }
}

impl DerefMut for Lent {
    fn deref_mut(&mut self) -> &mut Vec<u8> {
        &mut self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_buffer_comes_back_empty_and_is_lent_again() {
        let first = {
            let mut lent = Lent::new();
            assert!(lent.is_empty() && lent.capacity() == BATCH);
            lent.extend_from_slice(b"payload");
            lent.as_ptr()
        };
        let again = Lent::new();
        assert!(again.is_empty(), "returned cleared");
        assert_eq!(
            again.as_ptr(),
            first,
            "the same buffer, not a new allocation"
        );
    }
}
