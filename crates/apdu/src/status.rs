use core::fmt;

/// The two status bytes SW1 SW2 that end every R-APDU (ISO/IEC 7816-4 §5.6).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct StatusWord(pub u16);

impl StatusWord {
    /// `9000`: normal processing.
    pub const SUCCESS: Self = Self(0x9000);
    /// `6310`: more data available (GP GET STATUS).
    pub const MORE_DATA_AVAILABLE: Self = Self(0x6310);
    /// `6700`: wrong length.
    pub const WRONG_LENGTH: Self = Self(0x6700);
    /// `6982`: security status not satisfied.
    pub const SECURITY_NOT_SATISFIED: Self = Self(0x6982);
    /// `6983`: authentication method blocked.
    pub const AUTH_METHOD_BLOCKED: Self = Self(0x6983);
    /// `6985`: conditions of use not satisfied.
    pub const CONDITIONS_NOT_SATISFIED: Self = Self(0x6985);
    /// `6986`: command not allowed (no current EF).
    pub const COMMAND_NOT_ALLOWED: Self = Self(0x6986);
    /// `6987`: expected secure messaging data objects missing.
    pub const SM_DATA_MISSING: Self = Self(0x6987);
    /// `6988`: incorrect secure messaging data objects.
    pub const SM_DATA_INCORRECT: Self = Self(0x6988);
    /// `6A80`: incorrect parameters in the command data field.
    pub const WRONG_DATA: Self = Self(0x6A80);
    /// `6A81`: function not supported.
    pub const FUNC_NOT_SUPPORTED: Self = Self(0x6A81);
    /// `6A82`: file or application not found.
    pub const FILE_NOT_FOUND: Self = Self(0x6A82);
    /// `6A84`: not enough memory space.
    pub const NOT_ENOUGH_MEMORY: Self = Self(0x6A84);
    /// `6A86`: incorrect parameters P1-P2.
    pub const INCORRECT_P1P2: Self = Self(0x6A86);
    /// `6A88`: referenced data or reference data not found.
    pub const REFERENCED_DATA_NOT_FOUND: Self = Self(0x6A88);
    /// `6B00`: wrong parameters P1-P2.
    pub const WRONG_P1P2: Self = Self(0x6B00);
    /// `6D00`: instruction code not supported or invalid.
    pub const INS_NOT_SUPPORTED: Self = Self(0x6D00);
    /// `6E00`: class not supported.
    pub const CLA_NOT_SUPPORTED: Self = Self(0x6E00);
    /// `6F00`: no precise diagnosis.
    pub const UNKNOWN: Self = Self(0x6F00);
    /// `6581`: memory failure.
    pub const MEMORY_FAILURE: Self = Self(0x6581);

    /// The status word SW1 SW2.
    pub const fn new(sw1: u8, sw2: u8) -> Self {
        Self(((sw1 as u16) << 8) | sw2 as u16)
    }
    /// SW1, the first byte.
    pub const fn sw1(self) -> u8 {
        (self.0 >> 8) as u8
    }
    /// SW2, the second byte.
    pub const fn sw2(self) -> u8 {
        self.0 as u8
    }
    /// SW1 SW2 as bytes.
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

impl StatusWord {
    /// This status word as a [`Status`], for `match`ing.
    pub const fn status(self) -> Status {
        Status::from_u16(self.0)
    }
}

impl From<Status> for StatusWord {
    fn from(s: Status) -> Self {
        Self(s.to_u16())
    }
}

impl From<StatusWord> for Status {
    fn from(sw: StatusWord) -> Self {
        sw.status()
    }
}

/// A status word as an enum: the ISO/IEC 7816-4 §5.6 (table 6) and GlobalPlatform
/// Card Specification 2.3.1 (§11.1.3 and the command tables) cases by name, the
/// value-carrying families with their value, everything else in [`Status::Unknown`].
///
/// The mapping is lossless: `StatusWord::from(sw.status()) == sw` for every `sw`.
/// [`Status::Unknown`] is only produced for codes without a variant of their own, so
/// `Unknown(0x9000)` converts to `9000` but reads back as [`Status::Success`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Status {
    /// `9000`: normal processing.
    Success,
    /// `61xx`: success, `xx` more response bytes available with GET RESPONSE
    /// (`00` = 256 or more).
    MoreData(u8),
    /// `6200`: warning, no information given, non-volatile memory unchanged.
    WarningNvmUnchanged,
    /// `6281`: part of the returned data may be corrupted.
    DataMayBeCorrupted,
    /// `6282`: end of file or record reached before reading Ne bytes.
    EndOfFileReached,
    /// `6283`: selected file deactivated; for GP SELECT, the card is locked.
    SelectedFileInvalidated,
    /// `6284`: file control information not formatted per §7.4.
    FciNotFormatted,
    /// `6300`: warning, non-volatile memory changed; GP EXTERNAL AUTHENTICATE:
    /// authentication of the host cryptogram failed.
    AuthenticationFailed,
    /// `6310`: more data available (GP GET STATUS: issue the command again with
    /// "get next occurrence").
    MoreDataAvailable,
    /// `63Cx`: verification failed, `x` retries left (counter).
    VerifyFailed {
        /// The retry counter, 0 to 15.
        tries_left: u8,
    },
    /// `6400`: execution error, non-volatile memory unchanged.
    ExecutionErrorNvmUnchanged,
    /// `6500`: execution error, non-volatile memory changed.
    ExecutionErrorNvmChanged,
    /// `6581`: memory failure.
    MemoryFailure,
    /// `6700`: wrong length (Lc or Le).
    WrongLength,
    /// `6800`: functions in CLA not supported.
    ClaFunctionNotSupported,
    /// `6881`: logical channel not supported.
    LogicalChannelNotSupported,
    /// `6882`: secure messaging not supported.
    SecureMessagingNotSupported,
    /// `6883`: last command of the chain expected.
    LastCommandOfChainExpected,
    /// `6884`: command chaining not supported.
    ChainingNotSupported,
    /// `6900`: command not allowed, no information given.
    CommandNotAllowed,
    /// `6981`: command incompatible with file structure.
    IncompatibleFileStructure,
    /// `6982`: security status not satisfied.
    SecurityNotSatisfied,
    /// `6983`: authentication method blocked.
    AuthMethodBlocked,
    /// `6984`: reference data not usable.
    ReferenceDataNotUsable,
    /// `6985`: conditions of use not satisfied.
    ConditionsNotSatisfied,
    /// `6986`: command not allowed (no current EF).
    NoCurrentEf,
    /// `6987`: expected secure messaging data objects missing.
    SmDataMissing,
    /// `6988`: incorrect secure messaging data objects.
    SmDataIncorrect,
    /// `6999`: applet selection failed (Java Card `SW_APPLET_SELECT_FAILED`).
    SelectionFailed,
    /// `6A80`: incorrect parameters in the command data field.
    WrongData,
    /// `6A81`: function not supported.
    FuncNotSupported,
    /// `6A82`: file or application not found.
    FileNotFound,
    /// `6A83`: record not found.
    RecordNotFound,
    /// `6A84`: not enough memory space.
    NotEnoughMemory,
    /// `6A85`: Nc inconsistent with TLV structure.
    NcInconsistentWithTlv,
    /// `6A86`: incorrect parameters P1-P2.
    IncorrectP1P2,
    /// `6A87`: Nc inconsistent with parameters P1-P2.
    NcInconsistentWithP1P2,
    /// `6A88`: referenced data or reference data not found.
    ReferencedDataNotFound,
    /// `6A89`: file already exists.
    FileAlreadyExists,
    /// `6A8A`: DF name already exists.
    DfNameAlreadyExists,
    /// `6B00`: wrong parameters P1-P2.
    WrongP1P2,
    /// `6Cxx`: wrong Le; exactly `xx` bytes available (`00` = 256).
    WrongLe(u8),
    /// `6D00`: instruction code not supported or invalid.
    InsNotSupported,
    /// `6E00`: class not supported.
    ClaNotSupported,
    /// `6F00`: no precise diagnosis.
    NoPreciseDiagnosis,
    /// `9484`: algorithm not supported (GP PUT KEY, INITIALIZE UPDATE).
    AlgorithmNotSupported,
    /// `9485`: invalid key check value (GP PUT KEY).
    InvalidKeyCheckValue,
    /// Any other status word, kept as is.
    Unknown(u16),
}

impl Status {
    /// The status for a status word (total: every value maps to some variant).
    pub const fn from_u16(sw: u16) -> Self {
        use Status::*;
        let (sw1, sw2) = ((sw >> 8) as u8, sw as u8);
        match sw {
            0x9000 => Success,
            0x6200 => WarningNvmUnchanged,
            0x6281 => DataMayBeCorrupted,
            0x6282 => EndOfFileReached,
            0x6283 => SelectedFileInvalidated,
            0x6284 => FciNotFormatted,
            0x6300 => AuthenticationFailed,
            0x6310 => MoreDataAvailable,
            0x6400 => ExecutionErrorNvmUnchanged,
            0x6500 => ExecutionErrorNvmChanged,
            0x6581 => MemoryFailure,
            0x6700 => WrongLength,
            0x6800 => ClaFunctionNotSupported,
            0x6881 => LogicalChannelNotSupported,
            0x6882 => SecureMessagingNotSupported,
            0x6883 => LastCommandOfChainExpected,
            0x6884 => ChainingNotSupported,
            0x6900 => CommandNotAllowed,
            0x6981 => IncompatibleFileStructure,
            0x6982 => SecurityNotSatisfied,
            0x6983 => AuthMethodBlocked,
            0x6984 => ReferenceDataNotUsable,
            0x6985 => ConditionsNotSatisfied,
            0x6986 => NoCurrentEf,
            0x6987 => SmDataMissing,
            0x6988 => SmDataIncorrect,
            0x6999 => SelectionFailed,
            0x6A80 => WrongData,
            0x6A81 => FuncNotSupported,
            0x6A82 => FileNotFound,
            0x6A83 => RecordNotFound,
            0x6A84 => NotEnoughMemory,
            0x6A85 => NcInconsistentWithTlv,
            0x6A86 => IncorrectP1P2,
            0x6A87 => NcInconsistentWithP1P2,
            0x6A88 => ReferencedDataNotFound,
            0x6A89 => FileAlreadyExists,
            0x6A8A => DfNameAlreadyExists,
            0x6B00 => WrongP1P2,
            0x6D00 => InsNotSupported,
            0x6E00 => ClaNotSupported,
            0x6F00 => NoPreciseDiagnosis,
            0x9484 => AlgorithmNotSupported,
            0x9485 => InvalidKeyCheckValue,
            _ => match sw1 {
                0x61 => MoreData(sw2),
                0x6C => WrongLe(sw2),
                0x63 if sw2 & 0xF0 == 0xC0 => VerifyFailed {
                    tries_left: sw2 & 0x0F,
                },
                _ => Unknown(sw),
            },
        }
    }

    /// The status word value, `9000` for [`Status::Success`].
    /// A `tries_left` above 15 is truncated to its low four bits.
    pub const fn to_u16(self) -> u16 {
        use Status::*;
        match self {
            Success => 0x9000,
            MoreData(n) => 0x6100 | n as u16,
            WarningNvmUnchanged => 0x6200,
            DataMayBeCorrupted => 0x6281,
            EndOfFileReached => 0x6282,
            SelectedFileInvalidated => 0x6283,
            FciNotFormatted => 0x6284,
            AuthenticationFailed => 0x6300,
            MoreDataAvailable => 0x6310,
            VerifyFailed { tries_left } => 0x63C0 | (tries_left & 0x0F) as u16,
            ExecutionErrorNvmUnchanged => 0x6400,
            ExecutionErrorNvmChanged => 0x6500,
            MemoryFailure => 0x6581,
            WrongLength => 0x6700,
            ClaFunctionNotSupported => 0x6800,
            LogicalChannelNotSupported => 0x6881,
            SecureMessagingNotSupported => 0x6882,
            LastCommandOfChainExpected => 0x6883,
            ChainingNotSupported => 0x6884,
            CommandNotAllowed => 0x6900,
            IncompatibleFileStructure => 0x6981,
            SecurityNotSatisfied => 0x6982,
            AuthMethodBlocked => 0x6983,
            ReferenceDataNotUsable => 0x6984,
            ConditionsNotSatisfied => 0x6985,
            NoCurrentEf => 0x6986,
            SmDataMissing => 0x6987,
            SmDataIncorrect => 0x6988,
            SelectionFailed => 0x6999,
            WrongData => 0x6A80,
            FuncNotSupported => 0x6A81,
            FileNotFound => 0x6A82,
            RecordNotFound => 0x6A83,
            NotEnoughMemory => 0x6A84,
            NcInconsistentWithTlv => 0x6A85,
            IncorrectP1P2 => 0x6A86,
            NcInconsistentWithP1P2 => 0x6A87,
            ReferencedDataNotFound => 0x6A88,
            FileAlreadyExists => 0x6A89,
            DfNameAlreadyExists => 0x6A8A,
            WrongP1P2 => 0x6B00,
            WrongLe(n) => 0x6C00 | n as u16,
            InsNotSupported => 0x6D00,
            ClaNotSupported => 0x6E00,
            NoPreciseDiagnosis => 0x6F00,
            AlgorithmNotSupported => 0x9484,
            InvalidKeyCheckValue => 0x9485,
            Unknown(sw) => sw,
        }
    }

    /// `9000` or `61xx` (see [`StatusWord::is_success`]).
    pub const fn is_success(self) -> bool {
        StatusWord(self.to_u16()).is_success()
    }
}

impl From<u16> for Status {
    fn from(sw: u16) -> Self {
        Self::from_u16(sw)
    }
}

/// Same as the [`StatusWord`]: `6A82 (file or application not found)`.
impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&StatusWord(self.to_u16()), f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_status_word_round_trips() {
        for v in 0..=u16::MAX {
            let sw = StatusWord(v);
            let s = sw.status();
            assert_eq!(StatusWord::from(s), sw, "{s:?}");
            if let Status::Unknown(u) = s {
                assert_eq!(u, v);
            }
        }
    }

    #[test]
    fn value_carrying_variants() {
        assert_eq!(StatusWord(0x6110).status(), Status::MoreData(0x10));
        assert_eq!(StatusWord(0x6C00).status(), Status::WrongLe(0));
        assert_eq!(
            StatusWord(0x63C2).status(),
            Status::VerifyFailed { tries_left: 2 }
        );
        assert_eq!(StatusWord(0x6310).status(), Status::MoreDataAvailable);
        assert_eq!(StatusWord(0x6A82).status(), Status::FileNotFound);
        assert_eq!(StatusWord(0x6A90).status(), Status::Unknown(0x6A90));
        assert_eq!(
            StatusWord::from(Status::Unknown(0x9000)).status(),
            Status::Success
        );
        assert_eq!(
            StatusWord::from(Status::VerifyFailed { tries_left: 0x13 }),
            StatusWord(0x63C3)
        );
        assert!(Status::MoreData(3).is_success());
        assert!(!Status::WrongLe(3).is_success());
        assert_eq!(
            Status::FileNotFound.to_string(),
            "6A82 (file or application not found)"
        );
    }

    #[test]
    fn named_constants_agree() {
        assert_eq!(StatusWord::SUCCESS.status(), Status::Success);
        assert_eq!(
            StatusWord::MORE_DATA_AVAILABLE.status(),
            Status::MoreDataAvailable
        );
        assert_eq!(
            StatusWord::SECURITY_NOT_SATISFIED.status(),
            Status::SecurityNotSatisfied
        );
        assert_eq!(StatusWord::MEMORY_FAILURE.status(), Status::MemoryFailure);
        assert_eq!(StatusWord::UNKNOWN.status(), Status::NoPreciseDiagnosis);
    }
}
