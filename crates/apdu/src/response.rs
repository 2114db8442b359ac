use crate::{Error, StatusWord};
use core::fmt;

/// A response APDU: the response data field followed by SW1 SW2 (ISO/IEC 7816-4 §5.1).
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Response {
    /// The response data field (possibly empty).
    pub data: Vec<u8>,
    /// SW1 SW2.
    pub sw: StatusWord,
}

impl Default for StatusWord {
    fn default() -> Self {
        StatusWord::SUCCESS
    }
}

impl Response {
    /// A response with this data and status word.
    pub fn new(data: Vec<u8>, sw: StatusWord) -> Self {
        Self { data, sw }
    }
    /// A response with no data and this status word.
    pub fn status(sw: StatusWord) -> Self {
        Self {
            data: Vec::new(),
            sw,
        }
    }
    /// Data with `9000`.
    pub fn ok(data: Vec<u8>) -> Self {
        Self {
            data,
            sw: StatusWord::SUCCESS,
        }
    }
    /// Whether the status word is `9000` or `61xx`.
    pub fn is_success(&self) -> bool {
        self.sw.is_success()
    }
    /// Reads an R-APDU: at least the two status bytes.
    pub fn parse(bytes: &[u8]) -> Result<Self, Error> {
        if bytes.len() < 2 {
            return Err(Error::ResponseTooShort(bytes.len()));
        }
        let (data, sw) = bytes.split_at(bytes.len() - 2);
        Ok(Self {
            data: data.to_vec(),
            sw: StatusWord::new(sw[0], sw[1]),
        })
    }
    /// The R-APDU bytes: data then SW1 SW2.
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_encode() {
        let r = Response::parse(&[0xAB, 0x61, 0x10]).unwrap();
        assert_eq!((r.data.clone(), r.sw), (vec![0xAB], StatusWord(0x6110)));
        assert!(r.is_success());
        assert_eq!(r.to_bytes(), vec![0xAB, 0x61, 0x10]);
        assert_eq!(Response::parse(&[0x90]), Err(Error::ResponseTooShort(1)));
        assert_eq!(Response::ok(vec![]).to_bytes(), vec![0x90, 0x00]);
        assert_eq!(
            format!("{:?}", Response::status(StatusWord::FILE_NOT_FOUND)),
            "Response( 6A82)"
        );
    }
}
