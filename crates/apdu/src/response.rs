use crate::{Error, StatusWord};
use core::fmt;

/// A response APDU: the response data field followed by SW1 SW2 (ISO/IEC 7816-4 §5.1).
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Response {
    pub data: Vec<u8>,
    pub sw: StatusWord,
}

impl Default for StatusWord {
    fn default() -> Self {
        StatusWord::SUCCESS
    }
}

impl Response {
    pub fn new(data: Vec<u8>, sw: StatusWord) -> Self {
        Self { data, sw }
    }
    /// A response with no data and this status word.
    pub fn status(sw: StatusWord) -> Self {
        Self { data: Vec::new(), sw }
    }
    /// Data with `9000`.
    pub fn ok(data: Vec<u8>) -> Self {
        Self { data, sw: StatusWord::SUCCESS }
    }
    pub fn is_success(&self) -> bool {
        self.sw.is_success()
    }
    /// Reads an R-APDU: at least the two status bytes.
    pub fn parse(bytes: &[u8]) -> Result<Self, Error> {
        if bytes.len() < 2 {
            return Err(Error::ResponseTooShort(bytes.len()));
        }
        let (data, sw) = bytes.split_at(bytes.len() - 2);
        Ok(Self { data: data.to_vec(), sw: StatusWord::new(sw[0], sw[1]) })
    }
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(self.data.len() + 2);
        v.extend_from_slice(&self.data);
        v.extend_from_slice(&self.sw.to_bytes());
        v
    }
}

impl fmt::Debug for Response {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Response({} {:04X})", crate::hex(&self.data), self.sw.0)
    }
}
