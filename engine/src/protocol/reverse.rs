//! The signalling of a reverse tunnel's pooled connections (docs/REVERSE.md), sans-I/O.
//! After an ordinary spiped handshake (the dialling reverse-out end is the client, its
//! nonce tagged `NonceTag::ReverseSlot`), both ends exchange control messages, each the
//! plaintext of one ordinary data packet, until the connection carries a client: then
//! data packets follow, as in any spiped connection.
//!
//! A control message is 11 bytes: `SLUICERV`, version 1, its kind, one detail byte.

use super::health::TargetDownCause;

/// Bytes of an encoded control message.
pub const CONTROL_LEN: usize = 11;
const MAGIC: &[u8; 8] = b"SLUICERV";
const VERSION: u8 = 1;

/// One control message. Which end sends which, and when, is docs/REVERSE.md's table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Control {
    /// Reverse-in → reverse-out, first: the connection is pooled.
    Hello,
    /// Reverse-in → reverse-out, first, instead of `Hello`: it holds all the pooled
    /// connections it will; try again later.
    Full,
    /// Reverse-out → reverse-in, on an idle pooled connection: still there? (Also keeps
    /// NATs from dropping the idle connection.)
    Ping,
    /// Reverse-in → reverse-out: the answer to a `Ping`.
    Pong,
    /// Reverse-in → reverse-out: a client is joined to this connection; connect the
    /// service. The client's data may follow at once.
    Go,
    /// Reverse-out → reverse-in: the service is connected; the service's data follows.
    Ready,
    /// Reverse-out → reverse-in: the service could not be reached; the connection ends.
    Refused(TargetDownCause),
}

/// Why a payload is not the control message expected.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ControlError {
    #[error(
        "the far end sent data where a reverse tunnel's signal was due: it is not a Sluice reverse tunnel end (stock spiped, or a forward tunnel)"
    )]
    NotControl,
    #[error(
        "the far end speaks a newer version ({0}) of Sluice's reverse tunnels: update this end"
    )]
    Version(u8),
    #[error("the far end sent an unknown reverse-tunnel signal ({0})")]
    Unknown(u8),
}

impl Control {
    pub fn encode(self) -> [u8; CONTROL_LEN] {
        let (kind, detail) = match self {
            Control::Hello => (1, 0),
            Control::Full => (2, 0),
            Control::Ping => (3, 0),
            Control::Pong => (4, 0),
            Control::Go => (5, 0),
            Control::Ready => (6, 0),
            Control::Refused(cause) => (7, cause.code()),
        };
        let mut out = [0u8; CONTROL_LEN];
        out[..8].copy_from_slice(MAGIC);
        out[8] = VERSION;
        out[9] = kind;
        out[10] = detail;
        out
    }

    pub fn decode(payload: &[u8]) -> Result<Control, ControlError> {
        let payload: &[u8; CONTROL_LEN] =
            payload.try_into().map_err(|_| ControlError::NotControl)?;
        if &payload[..8] != MAGIC {
            return Err(ControlError::NotControl);
        }
        if payload[8] != VERSION {
            return Err(ControlError::Version(payload[8]));
        }
        let plain = |control| match payload[10] {
            0 => Ok(control),
            _ => Err(ControlError::Unknown(payload[9])),
        };
        match payload[9] {
            1 => plain(Control::Hello),
            2 => plain(Control::Full),
            3 => plain(Control::Ping),
            4 => plain(Control::Pong),
            5 => plain(Control::Go),
            6 => plain(Control::Ready),
            7 => TargetDownCause::from_code(payload[10])
                .map(Control::Refused)
                .ok_or(ControlError::Unknown(7)),
            kind => Err(ControlError::Unknown(kind)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::key::hex;

    /// docs/REVERSE.md's table, byte for byte.
    #[test]
    fn known_answers() {
        let table = [
            (Control::Hello, "534c55494345525601 01 00"),
            (Control::Full, "534c55494345525601 02 00"),
            (Control::Ping, "534c55494345525601 03 00"),
            (Control::Pong, "534c55494345525601 04 00"),
            (Control::Go, "534c55494345525601 05 00"),
            (Control::Ready, "534c55494345525601 06 00"),
            (
                Control::Refused(TargetDownCause::Refused),
                "534c55494345525601 07 01",
            ),
            (
                Control::Refused(TargetDownCause::Other),
                "534c55494345525601 07 04",
            ),
        ];
        for (control, expected) in table {
            let encoded = control.encode();
            assert_eq!(hex(&encoded), expected.replace(' ', ""), "{control:?}");
            assert_eq!(Control::decode(&encoded), Ok(control));
        }
    }

    #[test]
    fn anything_else_is_refused_with_its_reason() {
        assert_eq!(
            Control::decode(b"GET / HTTP/1.1\r\n"),
            Err(ControlError::NotControl)
        );
        assert_eq!(
            Control::decode(b"SLUICERVxyz"),
            Err(ControlError::Version(b'x'))
        );
        let mut bad = Control::Go.encode();
        bad[9] = 99;
        assert_eq!(Control::decode(&bad), Err(ControlError::Unknown(99)));
        bad = Control::Go.encode();
        bad[10] = 1;
        assert_eq!(Control::decode(&bad), Err(ControlError::Unknown(5)));
        bad = Control::Refused(TargetDownCause::TimedOut).encode();
        bad[10] = 0;
        assert_eq!(Control::decode(&bad), Err(ControlError::Unknown(7)));
        assert_eq!(
            Control::decode(&Control::Go.encode()[..10]),
            Err(ControlError::NotControl)
        );
    }
}
