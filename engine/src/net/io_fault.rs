//! An operating-system error that can be kept, cloned and compared: faults carry one
//! across the engine's boundary (into states, events and last errors), where
//! `std::io::Error`, which is neither `Clone` nor `PartialEq`, cannot go.

use std::fmt;
use std::io;
use std::sync::Arc;

/// A shared `io::Error`; two are equal when their kind and words are.
#[derive(Clone, Debug)]
pub struct IoFault(Arc<io::Error>);

impl IoFault {
    pub fn kind(&self) -> io::ErrorKind {
        self.0.kind()
    }

    pub fn raw_os_error(&self) -> Option<i32> {
        self.0.raw_os_error()
    }
}

impl From<io::Error> for IoFault {
    fn from(error: io::Error) -> IoFault {
        IoFault(Arc::new(error))
    }
}

impl fmt::Display for IoFault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for IoFault {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.0.source()
    }
}

impl PartialEq for IoFault {
    fn eq(&self, other: &IoFault) -> bool {
        self.kind() == other.kind() && self.0.to_string() == other.0.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clones_compare_equal_and_read_as_the_error() {
        let fault = IoFault::from(io::Error::from(io::ErrorKind::ConnectionRefused));
        assert_eq!(fault.clone(), fault);
        assert_eq!(fault.kind(), io::ErrorKind::ConnectionRefused);
        assert_eq!(
            fault.to_string(),
            io::Error::from(io::ErrorKind::ConnectionRefused).to_string()
        );
        assert_ne!(fault, IoFault::from(io::Error::other("else")));
    }
}
