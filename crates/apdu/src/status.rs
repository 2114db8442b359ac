use core::fmt;

/// The two status bytes SW1 SW2 that end every R-APDU (ISO/IEC 7816-4 §5.6).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct StatusWord(pub u16);

impl StatusWord {
    pub const SUCCESS: Self = Self(0x9000);
    pub const MORE_DATA_AVAILABLE: Self = Self(0x6310);
    pub const WRONG_LENGTH: Self = Self(0x6700);
    pub const SECURITY_NOT_SATISFIED: Self = Self(0x6982);
    pub const AUTH_METHOD_BLOCKED: Self = Self(0x6983);
    pub const CONDITIONS_NOT_SATISFIED: Self = Self(0x6985);
    pub const COMMAND_NOT_ALLOWED: Self = Self(0x6986);
    pub const SM_DATA_MISSING: Self = Self(0x6987);
    pub const SM_DATA_INCORRECT: Self = Self(0x6988);
    pub const WRONG_DATA: Self = Self(0x6A80);
    pub const FUNC_NOT_SUPPORTED: Self = Self(0x6A81);
    pub const FILE_NOT_FOUND: Self = Self(0x6A82);
    pub const NOT_ENOUGH_MEMORY: Self = Self(0x6A84);
    pub const INCORRECT_P1P2: Self = Self(0x6A86);
    pub const REFERENCED_DATA_NOT_FOUND: Self = Self(0x6A88);
    pub const WRONG_P1P2: Self = Self(0x6B00);
    pub const INS_NOT_SUPPORTED: Self = Self(0x6D00);
    pub const CLA_NOT_SUPPORTED: Self = Self(0x6E00);
    pub const UNKNOWN: Self = Self(0x6F00);
    pub const MEMORY_FAILURE: Self = Self(0x6581);

    pub const fn new(sw1: u8, sw2: u8) -> Self {
        Self(((sw1 as u16) << 8) | sw2 as u16)
    }
    pub const fn sw1(self) -> u8 {
        (self.0 >> 8) as u8
    }
    pub const fn sw2(self) -> u8 {
        self.0 as u8
    }
    pub const fn to_bytes(self) -> [u8; 2] {
        self.0.to_be_bytes()
    }
    /// `9000`, or `61xx` (more bytes available: still a success, ISO/IEC 7816-4 §5.6).
    pub const fn is_success(self) -> bool {
        self.0 == 0x9000 || self.sw1() == 0x61
    }
    /// Warnings `62xx`/`63xx`: processing completed, with a caveat.
    pub const fn is_warning(self) -> bool {
        matches!(self.sw1(), 0x62 | 0x63)
    }

    /// The meaning of this status word, per ISO/IEC 7816-4 §5.6 table 6 and the
    /// GlobalPlatform Card Specification 2.3.1 (§11, command response tables).
    pub fn meaning(self) -> String {
        let (sw1, sw2) = (self.sw1(), self.sw2());
        let fixed = match self.0 {
            0x9000 => "success",
            0x6200 => "warning: state of non-volatile memory unchanged",
            0x6281 => "warning: part of returned data may be corrupted",
            0x6282 => "warning: end of file or record reached before reading Ne bytes",
            0x6283 => "warning: selected file invalidated / application locked",
            0x6284 => "warning: file control information not formatted",
            0x6300 => "warning: authentication failed / verification failed",
            0x6310 => "more data available (send the command again for the rest)",
            0x6400 => "execution error: state of non-volatile memory unchanged",
            0x6500 => "execution error: state of non-volatile memory changed",
            0x6581 => "memory failure",
            0x6700 => "wrong length",
            0x6800 => "functions in CLA not supported",
            0x6881 => "logical channel not supported",
            0x6882 => "secure messaging not supported",
            0x6883 => "last command of the chain expected",
            0x6884 => "command chaining not supported",
            0x6900 => "command not allowed",
            0x6981 => "command incompatible with file structure",
            0x6982 => "security status not satisfied",
            0x6983 => "authentication method blocked",
            0x6984 => "reference data not usable",
            0x6985 => "conditions of use not satisfied",
            0x6986 => "command not allowed (no current EF)",
            0x6987 => "expected secure messaging data objects missing",
            0x6988 => "incorrect secure messaging data objects",
            0x6999 => "applet selection failed",
            0x6A80 => "incorrect parameters in the command data field",
            0x6A81 => "function not supported",
            0x6A82 => "file or application not found",
            0x6A83 => "record not found",
            0x6A84 => "not enough memory space",
            0x6A85 => "Nc inconsistent with TLV structure",
            0x6A86 => "incorrect parameters P1-P2",
            0x6A87 => "Nc inconsistent with parameters P1-P2",
            0x6A88 => "referenced data or reference data not found",
            0x6A89 => "file already exists",
            0x6A8A => "DF name already exists",
            0x6B00 => "wrong parameters P1-P2",
            0x6D00 => "instruction code not supported or invalid",
            0x6E00 => "class not supported",
            0x6F00 => "no precise diagnosis",
            0x9484 => "algorithm not supported",
            0x9485 => "invalid key check value",
            _ => "",
        };
        if !fixed.is_empty() {
            return fixed.to_string();
        }
        match sw1 {
            0x61 => format!("success, {sw2} more bytes available (GET RESPONSE)"),
            0x63 if sw2 & 0xF0 == 0xC0 => {
                format!("verification failed, {} tries left", sw2 & 0x0F)
            }
            0x6C => format!("wrong Le: exactly {sw2} bytes available"),
            0x62 => "warning: state of non-volatile memory unchanged".into(),
            0x63 => "warning: state of non-volatile memory changed".into(),
            0x64 => "execution error: state of non-volatile memory unchanged".into(),
            0x65 => "execution error: state of non-volatile memory changed".into(),
            0x66 => "security-related issue".into(),
            0x67 => "wrong length".into(),
            0x68 => "functions in CLA not supported".into(),
            0x69 => "command not allowed".into(),
            0x6A => "wrong parameters P1-P2".into(),
            _ => "unknown status".into(),
        }
    }
}

impl From<u16> for StatusWord {
    fn from(v: u16) -> Self {
        Self(v)
    }
}

impl fmt::Debug for StatusWord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "StatusWord({:04X})", self.0)
    }
}

/// `6A82 (file or application not found)`.
impl fmt::Display for StatusWord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04X} ({})", self.0, self.meaning())
    }
}
