//! A reverse tunnel's pooled connection on the wire (docs/REVERSE.md): control messages
//! sealed into ordinary data packets, read one packet at a time and never past it, so
//! that when a client is joined the data phase starts on a packet boundary with nothing
//! buffered aside. Reading is cancel-safe (the partial packet lives in the reader).

use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::net::io_fault::IoFault;
use crate::net::stream::NetStream;
use crate::protocol::health::TargetDownCause;
use crate::protocol::reverse::{Control, ControlError};
use crate::protocol::{PACKET_LEN, PacketError, PacketOpener, PacketSealer};

/// Why a pooled connection ended, or could not be pooled.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum ReverseFault {
    #[error(
        "a client with the key connected to the reverse-in port, but it is not a reverse-out end (stock spiped -e, or a forward Encrypt tunnel pointed here): run sluiced --reverse-out there, or point it at a Decrypt tunnel"
    )]
    NotReverseOut,
    #[error(
        "a reverse-out end dialled this forward Decrypt tunnel: point it at a reverse-in end (sluiced --reverse-in)"
    )]
    NotForward,
    #[error(
        "the far end completed the handshake but sent no reverse-tunnel greeting within {:.1} s: it is not a Sluice reverse-in end (stock spiped -d, or a forward Decrypt tunnel); run sluiced --reverse-in there",
        .0.as_secs_f64()
    )]
    NoGreeting(Duration),
    #[error("the far end holds all the reverse connections it takes; trying again later")]
    Full,
    #[error("the far end did not answer a keep-alive within {:.1} s", .0.as_secs_f64())]
    NoPong(Duration),
    #[error(
        "no connection from the reverse-out end was ready within {:.1} s: is it running (sluiced --reverse-out), and does it reach this machine?",
        .0.as_secs_f64()
    )]
    NoneReady(Duration),
    #[error("the reverse-out end could not reach its service ({})", .0.label())]
    ServiceDown(TargetDownCause),
    #[error("the far end sent {0:?} out of turn")]
    OutOfTurn(Control),
    #[error(transparent)]
    Control(ControlError),
    #[error("{0}; the reverse connection was closed")]
    Rejected(PacketError),
    #[error("the far end closed the reverse connection")]
    Closed,
    #[error("reverse connection: {0}")]
    Io(IoFault),
}

impl From<std::io::Error> for ReverseFault {
    fn from(e: std::io::Error) -> Self {
        ReverseFault::Io(e.into())
    }
}

/// Reads whole packets, one at a time, keeping a partial one across cancellations.
pub struct PacketReader {
    packet: Box<[u8; PACKET_LEN]>,
    filled: usize,
}

impl Default for PacketReader {
    fn default() -> Self {
        PacketReader {
            packet: Box::new([0; PACKET_LEN]),
            filled: 0,
        }
    }
}

impl PacketReader {
    /// The next packet's plaintext. Cancel-safe: dropping the future loses nothing.
    pub async fn next(
        &mut self,
        input: &mut (impl AsyncRead + Unpin),
        opener: &mut PacketOpener,
    ) -> Result<Vec<u8>, ReverseFault> {
        while self.filled < PACKET_LEN {
            let n = input.read(&mut self.packet[self.filled..]).await?;
            if n == 0 {
                return Err(ReverseFault::Closed);
            }
            self.filled += n;
        }
        self.filled = 0;
        let len = opener
            .open(&mut self.packet)
            .map_err(ReverseFault::Rejected)?;
        Ok(self.packet[..len].to_vec())
    }

    /// The next packet, as a control message.
    pub async fn control(
        &mut self,
        input: &mut (impl AsyncRead + Unpin),
        opener: &mut PacketOpener,
    ) -> Result<Control, ReverseFault> {
        let payload = self.next(input, opener).await?;
        Control::decode(&payload).map_err(ReverseFault::Control)
    }
}

/// Seals and sends one control message.
pub async fn send(
    output: &mut (impl AsyncWrite + Unpin),
    sealer: &mut PacketSealer,
    control: Control,
) -> Result<(), ReverseFault> {
    let mut packet = [0u8; PACKET_LEN];
    sealer
        .seal(&control.encode(), &mut packet)
        .map_err(ReverseFault::Rejected)?;
    output.write_all(&packet).await?;
    Ok(())
}

/// A pooled connection after its handshake: the socket, its codecs, and the reader
/// holding whatever part of the next packet has arrived.
pub struct Slot {
    pub stream: NetStream,
    pub sealer: PacketSealer,
    pub opener: PacketOpener,
    pub reader: PacketReader,
}

impl Slot {
    pub fn new(stream: NetStream, codecs: (PacketSealer, PacketOpener)) -> Slot {
        Slot {
            stream,
            sealer: codecs.0,
            opener: codecs.1,
            reader: PacketReader::default(),
        }
    }

    pub async fn send(&mut self, control: Control) -> Result<(), ReverseFault> {
        send(&mut self.stream, &mut self.sealer, control).await
    }

    /// Cancel-safe, as [`PacketReader::next`].
    pub async fn receive(&mut self) -> Result<Control, ReverseFault> {
        self.reader
            .control(&mut self.stream, &mut self.opener)
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One direction's sealer and the matching opener.
    fn codecs() -> (PacketSealer, PacketOpener) {
        (
            PacketSealer::from_keys(&[1; 32], &[2; 32]),
            PacketOpener::from_keys(&[1; 32], &[2; 32]),
        )
    }

    #[tokio::test]
    async fn controls_cross_in_order_and_a_read_cut_short_loses_nothing() {
        let (mut sealer, mut opener) = codecs();
        let (mut near, mut far) = tokio::io::duplex(4 * PACKET_LEN);
        send(&mut near, &mut sealer, Control::Hello).await.unwrap();
        send(&mut near, &mut sealer, Control::Go).await.unwrap();
        let mut reader = PacketReader::default();
        assert_eq!(
            reader.control(&mut far, &mut opener).await,
            Ok(Control::Hello)
        );
        // Half a packet arrives; the read is abandoned; the rest arrives later.
        let mut packet = [0u8; PACKET_LEN];
        sealer.seal(&Control::Ready.encode(), &mut packet).unwrap();
        assert_eq!(reader.control(&mut far, &mut opener).await, Ok(Control::Go));
        near.write_all(&packet[..500]).await.unwrap();
        let cut = tokio::time::timeout(
            Duration::from_millis(50),
            reader.control(&mut far, &mut opener),
        )
        .await;
        assert!(cut.is_err(), "waits for the rest of the packet");
        near.write_all(&packet[500..]).await.unwrap();
        assert_eq!(
            reader.control(&mut far, &mut opener).await,
            Ok(Control::Ready)
        );
        drop(near);
        assert_eq!(
            reader.control(&mut far, &mut opener).await,
            Err(ReverseFault::Closed)
        );
    }

    #[tokio::test]
    async fn data_where_a_signal_is_due_is_refused() {
        let (mut sealer, mut opener) = codecs();
        let (mut near, mut far) = tokio::io::duplex(4 * PACKET_LEN);
        let mut sealed = Vec::new();
        sealer.seal_all(b"+OK redis here\r\n", &mut sealed);
        near.write_all(&sealed).await.unwrap();
        let got = PacketReader::default().control(&mut far, &mut opener).await;
        assert_eq!(got, Err(ReverseFault::Control(ControlError::NotControl)));
    }
}
