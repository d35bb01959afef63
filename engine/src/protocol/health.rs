//! The report a Sluice server sends a health probe (a client whose nonce carries the
//! probe tag, `super::tag`) instead of connecting to its target: the first packet's
//! payload, `SLUICEHC`, a version byte, the target's state, a cause byte, and the age of
//! what it reports in seconds (big-endian u32). docs/HEALTH.md has the whole exchange.

/// Bytes of an encoded report.
pub const REPORT_LEN: usize = 15;
const REPORT_MAGIC: &[u8; 8] = b"SLUICEHC";
const REPORT_VERSION: u8 = 1;

/// What a Sluice server knows of its own target when a probe arrives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TargetReport {
    /// Nothing yet: no connection to the target has been tried.
    Unknown,
    /// A connection to the target succeeded `age_secs` seconds ago.
    Up { age_secs: u32 },
    /// The last connection to the target, `age_secs` seconds ago, failed.
    Down {
        age_secs: u32,
        cause: TargetDownCause,
    },
}

/// Why the server could not reach its target, as far as the report says.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TargetDownCause {
    /// Connection refused: nothing listening.
    Refused,
    TimedOut,
    /// The target's host name did not resolve.
    Unresolved,
    /// Anything else (unreachable network, no usable address, …).
    Other,
}

impl TargetDownCause {
    /// In words, for a sentence about the far end's target.
    pub fn label(self) -> &'static str {
        match self {
            TargetDownCause::Refused => "nothing listening",
            TargetDownCause::TimedOut => "no answer",
            TargetDownCause::Unresolved => "its name does not resolve",
            TargetDownCause::Other => "unreachable",
        }
    }

    pub(crate) fn code(self) -> u8 {
        match self {
            TargetDownCause::Refused => 1,
            TargetDownCause::TimedOut => 2,
            TargetDownCause::Unresolved => 3,
            TargetDownCause::Other => 4,
        }
    }

    pub(crate) fn from_code(code: u8) -> Option<Self> {
        Some(match code {
            1 => TargetDownCause::Refused,
            2 => TargetDownCause::TimedOut,
            3 => TargetDownCause::Unresolved,
            4 => TargetDownCause::Other,
            _ => return None,
        })
    }
}

impl TargetReport {
    /// The report as the first packet's payload.
    pub fn encode(self) -> [u8; REPORT_LEN] {
        let (state, cause, age) = match self {
            TargetReport::Unknown => (0, 0, 0),
            TargetReport::Up { age_secs } => (1, 0, age_secs),
            TargetReport::Down { age_secs, cause } => (2, cause.code(), age_secs),
        };
        let mut out = [0u8; REPORT_LEN];
        out[..8].copy_from_slice(REPORT_MAGIC);
        out[8] = REPORT_VERSION;
        out[9] = state;
        out[10] = cause;
        out[11..].copy_from_slice(&age.to_be_bytes());
        out
    }

    /// The report in a packet's payload; `None` when the payload is not one (a stock
    /// spiped server's target spoke first) or comes from a version this one cannot read.
    pub fn decode(payload: &[u8]) -> Option<TargetReport> {
        let payload: &[u8; REPORT_LEN] = payload.try_into().ok()?;
        if &payload[..8] != REPORT_MAGIC || payload[8] != REPORT_VERSION {
            return None;
        }
        let age_secs = u32::from_be_bytes([payload[11], payload[12], payload[13], payload[14]]);
        match (payload[9], payload[10]) {
            (0, 0) => Some(TargetReport::Unknown),
            (1, 0) => Some(TargetReport::Up { age_secs }),
            (2, code) => Some(TargetReport::Down {
                age_secs,
                cause: TargetDownCause::from_code(code)?,
            }),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_survive_encoding_and_junk_is_not_a_report() {
        for report in [
            TargetReport::Unknown,
            TargetReport::Up { age_secs: 0 },
            TargetReport::Up { age_secs: u32::MAX },
            TargetReport::Down {
                age_secs: 42,
                cause: TargetDownCause::Refused,
            },
            TargetReport::Down {
                age_secs: 1,
                cause: TargetDownCause::Other,
            },
        ] {
            assert_eq!(TargetReport::decode(&report.encode()), Some(report));
        }
        let good = TargetReport::Up { age_secs: 3 }.encode();
        assert_eq!(TargetReport::decode(&good[..REPORT_LEN - 1]), None);
        assert_eq!(TargetReport::decode(b"SSH-2.0-OpenSSH_9.6\r\n"), None);
        let mut future = good;
        future[8] = 2;
        assert_eq!(TargetReport::decode(&future), None, "a later version");
        let mut odd = good;
        odd[9] = 9;
        assert_eq!(TargetReport::decode(&odd), None);
        let mut bad_cause = TargetReport::Down {
            age_secs: 0,
            cause: TargetDownCause::TimedOut,
        }
        .encode();
        bad_cause[10] = 0;
        assert_eq!(TargetReport::decode(&bad_cause), None);
    }
}
