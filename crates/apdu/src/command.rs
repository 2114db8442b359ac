use crate::Error;
use core::fmt;

/// A command APDU (ISO/IEC 7816-4 §5.1).
///
/// `le` is Ne, the number of response bytes expected: `None` for cases 1 and 3,
/// `Some(1..=65536)` for cases 2 and 4 (`Some(256)` encodes as short `00`,
/// `Some(65536)` as extended `0000`). Encoding picks the short form whenever both
/// Nc ≤ 255 and Ne ≤ 256, the extended form otherwise.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Command {
    /// Class byte: command family, secure messaging, chaining and logical channel bits.
    pub cla: u8,
    /// Instruction byte.
    pub ins: u8,
    /// Parameter 1.
    pub p1: u8,
    /// Parameter 2.
    pub p2: u8,
    /// Command data field (Nc = its length, at most 65535).
    pub data: Vec<u8>,
    /// Ne, the maximum number of response bytes expected, if any (cases 2 and 4).
    pub le: Option<u32>,
}

/// CLA bit b5: "command is not the last of a chain" (ISO/IEC 7816-4 §5.1.1.1).
pub const CLA_CHAINING: u8 = 0x10;

impl Command {
    /// A case 1 command: header only.
    pub fn new(cla: u8, ins: u8, p1: u8, p2: u8) -> Self {
        Self {
            cla,
            ins,
            p1,
            p2,
            data: Vec::new(),
            le: None,
        }
    }
    /// Sets the command data field (case 3, or 4 with [`Command::with_le`]).
    pub fn with_data(mut self, data: impl Into<Vec<u8>>) -> Self {
        self.data = data.into();
        self
    }
    /// Sets Ne; 256 is "up to 256" in a short APDU (`Le = 00`).
    pub fn with_le(mut self, ne: u32) -> Self {
        self.le = Some(ne);
        self
    }
    /// Whether the encoding needs the extended length form.
    pub fn is_extended(&self) -> bool {
        self.data.len() > 255 || self.le.is_some_and(|ne| ne > 256)
    }
    /// The ISO case number, 1 to 4.
    pub fn case(&self) -> u8 {
        match (self.data.is_empty(), self.le.is_some()) {
            (true, false) => 1,
            (true, true) => 2,
            (false, false) => 3,
            (false, true) => 4,
        }
    }

    /// Whether CLA bit b5 marks this command as not the last of a chain
    /// (ISO/IEC 7816-4 §5.1.1.1; also used by GlobalPlatform CLA `8x`/`Cx`/`Ex`).
    pub fn is_chained(&self) -> bool {
        self.cla & CLA_CHAINING != 0
    }

    /// Splits the command data into a chain of commands of at most `max_data` data
    /// bytes each (command chaining, ISO/IEC 7816-4 §5.1.1.1): every command but the
    /// last has CLA bit b5 (`0x10`) set and no Le; the last keeps the original CLA and
    /// Le. INS, P1 and P2 are repeated in every part.
    ///
    /// A command whose data fits in `max_data` (including cases 1 and 2) is returned
    /// alone and unchanged. A `max_data` of 0 is treated as 1.
    pub fn chain(&self, max_data: usize) -> Vec<Command> {
        let max_data = max_data.max(1);
        if self.data.len() <= max_data {
            return vec![self.clone()];
        }
        let parts = self.data.chunks(max_data);
        let count = parts.len();
        parts
            .enumerate()
            .map(|(i, chunk)| {
                let last = i + 1 == count;
                Command {
                    cla: if last {
                        self.cla
                    } else {
                        self.cla | CLA_CHAINING
                    },
                    ins: self.ins,
                    p1: self.p1,
                    p2: self.p2,
                    data: chunk.to_vec(),
                    le: if last { self.le } else { None },
                }
            })
            .collect()
    }

    /// Encodes the command. Fails only for Nc > 65535 or Ne outside 1..=65536.
    pub fn to_bytes(&self) -> Result<Vec<u8>, Error> {
        let nc = self.data.len();
        if nc > 65535 {
            return Err(Error::DataTooLong(nc));
        }
        if let Some(ne) = self.le {
            if ne == 0 || ne > 65536 {
                return Err(Error::BadLe(ne));
            }
        }
        let mut v = Vec::with_capacity(4 + 3 + nc + 3);
        v.extend_from_slice(&[self.cla, self.ins, self.p1, self.p2]);
        if self.is_extended() {
            if nc > 0 {
                v.push(0);
                v.extend_from_slice(&(nc as u16).to_be_bytes());
                v.extend_from_slice(&self.data);
            }
            if let Some(ne) = self.le {
                if nc == 0 {
                    v.push(0);
                }
                v.extend_from_slice(&((ne % 65536) as u16).to_be_bytes());
            }
        } else {
            if nc > 0 {
                v.push(nc as u8);
                v.extend_from_slice(&self.data);
            }
            if let Some(ne) = self.le {
                v.push((ne % 256) as u8);
            }
        }
        Ok(v)
    }

    /// Reads a C-APDU in any of the seven encodings of ISO/IEC 7816-4 §5.1
    /// (cases 1, 2S, 3S, 4S, 2E, 3E, 4E). Rejects trailing or missing bytes.
    pub fn parse(bytes: &[u8]) -> Result<Self, Error> {
        if bytes.len() < 4 {
            return Err(Error::CommandTooShort(bytes.len()));
        }
        let mut cmd = Self::new(bytes[0], bytes[1], bytes[2], bytes[3]);
        let body = &bytes[4..];
        match body.len() {
            0 => {}
            1 => cmd.le = Some(if body[0] == 0 { 256 } else { body[0] as u32 }),
            _ if body[0] != 0 => {
                // Short: Lc data [Le]
                let nc = body[0] as usize;
                match body.len() - 1 {
                    n if n == nc => {}
                    n if n == nc + 1 => {
                        let le = body[nc + 1];
                        cmd.le = Some(if le == 0 { 256 } else { le as u32 });
                    }
                    n => return Err(Error::BadLength(format!("Lc={nc} but {n} bytes follow it"))),
                }
                cmd.data = body[1..1 + nc].to_vec();
            }
            3 => {
                // Case 2E: 00 Le1 Le2
                let le = u16::from_be_bytes([body[1], body[2]]);
                cmd.le = Some(if le == 0 { 65536 } else { le as u32 });
            }
            n if n > 3 => {
                // Case 3E / 4E: 00 Lc1 Lc2 data [Le1 Le2]
                let nc = u16::from_be_bytes([body[1], body[2]]) as usize;
                if nc == 0 {
                    return Err(Error::BadLength("extended Lc of zero".into()));
                }
                match n - 3 {
                    m if m == nc => {}
                    m if m == nc + 2 => {
                        let le = u16::from_be_bytes([body[3 + nc], body[4 + nc]]);
                        cmd.le = Some(if le == 0 { 65536 } else { le as u32 });
                    }
                    m => {
                        return Err(Error::BadLength(format!(
                            "extended Lc={nc} but {m} bytes follow it"
                        )))
                    }
                }
                cmd.data = body[3..3 + nc].to_vec();
            }
            n => return Err(Error::BadLength(format!("{n} bytes after the header"))),
        }
        Ok(cmd)
    }
}

impl fmt::Debug for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.to_bytes() {
            Ok(b) => write!(f, "Command({})", crate::hex(&b)),
            Err(_) => write!(
                f,
                "Command({:02X}{:02X}{:02X}{:02X} invalid)",
                self.cla, self.ins, self.p1, self.p2
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse_hex;

    fn rt(hex: &str) -> Command {
        let b = parse_hex(hex).unwrap();
        let c = Command::parse(&b).unwrap();
        assert_eq!(c.to_bytes().unwrap(), b, "round trip of {hex}");
        c
    }

    #[test]
    fn seven_encodings() {
        assert_eq!(rt("80F22002").case(), 1);
        assert_eq!(rt("80CA006600").le, Some(256));
        let c = rt("80F220020A4F0212345C054F9F70C5");
        assert_eq!((c.case(), c.data.len()), (3, 10));
        assert_eq!(rt("80F28002024F0000").le, Some(256));
        assert_eq!(rt("00B0000000FFFF").le, Some(65535));
        assert_eq!(rt("00B00000000000").le, Some(65536));
        let big = format!("00DA0000000100{}", "AB".repeat(256));
        assert_eq!(rt(&big).data.len(), 256);
        let big4 = format!("00DA0000000100{}0000", "AB".repeat(256));
        assert_eq!(rt(&big4).le, Some(65536));
    }

    #[test]
    fn chain_splits_data() {
        let cmd = Command::new(0x80, 0xE2, 0x00, 0x00)
            .with_data(vec![1, 2, 3, 4, 5])
            .with_le(256);
        let parts = cmd.chain(2);
        let hexes: Vec<String> = parts
            .iter()
            .map(|c| crate::hex(&c.to_bytes().unwrap()))
            .collect();
        assert_eq!(
            hexes,
            ["90E20000020102", "90E20000020304", "80E20000010500"]
        );
        assert!(parts[0].is_chained() && !parts[2].is_chained());
        // Exact multiple: no empty trailing part.
        assert_eq!(cmd.chain(5), vec![cmd.clone()]);
        assert_eq!(cmd.chain(1).len(), 5);
        assert_eq!(cmd.chain(0).len(), 5);
        let case2 = Command::new(0, 0xCA, 0, 0x66).with_le(256);
        assert_eq!(case2.chain(1), vec![case2.clone()]);
        let six = Command::new(0x84, 0xE8, 0, 0).with_data(vec![9; 6]);
        let parts = six.chain(3);
        assert_eq!(parts.len(), 2);
        assert_eq!((parts[0].cla, parts[1].cla), (0x94, 0x84));
        let joined: Vec<u8> = parts.iter().flat_map(|c| c.data.clone()).collect();
        assert_eq!(joined, six.data);
    }

    #[test]
    fn extended_form_of_short_values_is_read() {
        // Found by fuzzing: Le 0100 in extended form is Ne = 256, which encodes short.
        let c = Command::parse(&parse_hex("06FFF5F1000100").unwrap()).unwrap();
        assert_eq!(c.le, Some(256));
        assert_eq!(crate::hex(&c.to_bytes().unwrap()), "06FFF5F100");
        let c = Command::parse(&parse_hex("00DA000000000201020000").unwrap()).unwrap();
        assert_eq!((c.data.clone(), c.le), (vec![1, 2], Some(65536)));
        let c = Command::parse(&parse_hex("00DA0000000002AABB").unwrap()).unwrap();
        assert_eq!(crate::hex(&c.to_bytes().unwrap()), "00DA000002AABB");
    }

    #[test]
    fn rejects_bad_lengths() {
        assert!(Command::parse(&[0, 0xA4]).is_err());
        assert!(Command::parse(&parse_hex("00A4040005A000").unwrap()).is_err());
        assert!(Command::parse(&parse_hex("00A4040002A0000000").unwrap()).is_err());
        assert!(Command::parse(&parse_hex("00A404000000").unwrap()).is_err());
    }
}
