//! [`CanFrame`]: a classic CAN 2.0 frame as plain data, so decoders and the
//! slcan codec are exercised without a socket.

use std::fmt;

use embedded_can::{ExtendedId, Frame, Id, StandardId};

/// Most data bytes in a classic CAN frame.
pub const MAX_DATA_LEN: usize = 8;

/// A classic CAN 2.0 frame (standard or extended id, data or remote), up to
/// [`MAX_DATA_LEN`] data bytes. Implements [`embedded_can::Frame`].
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct CanFrame {
    id: Id,
    data: [u8; MAX_DATA_LEN],
    /// Data length code: the number of data bytes of a data frame, the
    /// requested length of a remote frame.
    dlc: u8,
    remote: bool,
}

impl CanFrame {
    /// A data frame with a standard (11-bit) id; `None` when the id is above
    /// 0x7FF or `data` is longer than 8 bytes.
    pub fn standard(id: u16, data: &[u8]) -> Option<Self> {
        StandardId::new(id).and_then(|id| Self::new(id, data))
    }

    /// A data frame with an extended (29-bit) id; `None` when the id is
    /// above 0x1FFF_FFFF or `data` is longer than 8 bytes.
    pub fn extended(id: u32, data: &[u8]) -> Option<Self> {
        ExtendedId::new(id).and_then(|id| Self::new(id, data))
    }

    /// Copies any [`embedded_can::Frame`] (a SocketCAN frame, say) into a
    /// `CanFrame`; `None` for a frame with more than 8 data bytes.
    pub fn from_frame(frame: &impl Frame) -> Option<Self> {
        if frame.is_remote_frame() {
            Self::new_remote(frame.id(), frame.dlc())
        } else {
            Self::new(frame.id(), frame.data())
        }
    }

    /// The raw id value, without saying whether it is standard or extended.
    pub fn raw_id(&self) -> u32 {
        raw_id(self.id)
    }

    /// The 11-bit id of a standard frame, `None` for an extended one.
    pub fn standard_id(&self) -> Option<u16> {
        match self.id {
            Id::Standard(id) => Some(id.as_raw()),
            Id::Extended(_) => None,
        }
    }
}

/// The raw value of an [`Id`].
pub fn raw_id(id: Id) -> u32 {
    match id {
        Id::Standard(id) => u32::from(id.as_raw()),
        Id::Extended(id) => id.as_raw(),
    }
}

impl Frame for CanFrame {
    fn new(id: impl Into<Id>, data: &[u8]) -> Option<Self> {
        if data.len() > MAX_DATA_LEN {
            return None;
        }
        let mut bytes = [0u8; MAX_DATA_LEN];
        bytes[..data.len()].copy_from_slice(data);
        Some(Self {
            id: id.into(),
            data: bytes,
            dlc: data.len() as u8,
            remote: false,
        })
    }

    fn new_remote(id: impl Into<Id>, dlc: usize) -> Option<Self> {
        if dlc > MAX_DATA_LEN {
            return None;
        }
        Some(Self {
            id: id.into(),
            data: [0; MAX_DATA_LEN],
            dlc: dlc as u8,
            remote: true,
        })
    }

    fn is_extended(&self) -> bool {
        matches!(self.id, Id::Extended(_))
    }

    fn is_remote_frame(&self) -> bool {
        self.remote
    }

    fn id(&self) -> Id {
        self.id
    }

    fn dlc(&self) -> usize {
        usize::from(self.dlc)
    }

    fn data(&self) -> &[u8] {
        if self.remote {
            &[]
        } else {
            &self.data[..usize::from(self.dlc)]
        }
    }
}

/// `356#1415E6FF` (candump's compact form), `356#R2` for a remote frame,
/// an extended id in 8 hex digits.
impl fmt::Display for CanFrame {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.id {
            Id::Standard(id) => write!(f, "{:03X}#", id.as_raw())?,
            Id::Extended(id) => write!(f, "{:08X}#", id.as_raw())?,
        }
        if self.remote {
            return write!(f, "R{}", self.dlc);
        }
        for byte in self.data() {
            write!(f, "{byte:02X}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for CanFrame {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CanFrame({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constructors_check_id_and_length() {
        assert!(CanFrame::standard(0x800, &[]).is_none());
        assert!(CanFrame::standard(0x7FF, &[0; 9]).is_none());
        assert!(CanFrame::extended(0x2000_0000, &[]).is_none());
        let f = CanFrame::standard(0x356, &[1, 2, 3]).unwrap();
        assert_eq!(f.data(), &[1, 2, 3]);
        assert_eq!(f.dlc(), 3);
        assert_eq!(f.standard_id(), Some(0x356));
        assert_eq!(f.to_string(), "356#010203");
        let r = CanFrame::new_remote(ExtendedId::new(0x1234).unwrap(), 4).unwrap();
        assert!(r.is_remote_frame() && r.is_extended());
        assert_eq!(r.data(), &[] as &[u8]);
        assert_eq!(r.to_string(), "00001234#R4");
        assert_eq!(CanFrame::from_frame(&r), Some(r));
        assert!(CanFrame::new_remote(ExtendedId::new(1).unwrap(), 9).is_none());
    }
}
