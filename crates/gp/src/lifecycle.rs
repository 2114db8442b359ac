//! Life cycle states (GlobalPlatform Card Specification 2.3.1 §5.1 and §11.1.1).
//!
//! * [`CardLifeCycle`]: the card as a whole (§5.1.1; coding §11.1.1).
//! * [`AppLifeCycle`]: an application (§5.3.1; coding §11.1.1).
//! * [`SdLifeCycle`]: a security domain (§5.3.2; coding §11.1.1).
//! * [`LoadFileLifeCycle`]: an executable load file (§5.2; coding §11.1.1).
//!
//! Application and security domain states are kept as their byte coding, because
//! application-specific states (`0xxxx111`) and LOCKED (bit 8 set on top of the
//! previous state) carry information that an enum would lose.

use core::fmt;

use crate::{Error, Result};

/// Card life cycle state (GP 2.3.1 §5.1.1, coding in §11.1.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum CardLifeCycle {
    /// `01`: the ISD is ready; the card is being pre-personalised.
    OpReady,
    /// `07`: initial data (keys) loaded; still under the issuer's control.
    Initialized,
    /// `0F`: the card is in post-issuance; security policies are enforced.
    Secured,
    /// `7F`: the ISD is the only selectable application (reversible, §5.1.1.4).
    CardLocked,
    /// `FF`: the card is dead to card content management (final, §5.1.1.5).
    Terminated,
}

impl CardLifeCycle {
    /// The byte coding of GP 2.3.1 §11.1.1.
    pub const fn to_byte(self) -> u8 {
        match self {
            Self::OpReady => 0x01,
            Self::Initialized => 0x07,
            Self::Secured => 0x0F,
            Self::CardLocked => 0x7F,
            Self::Terminated => 0xFF,
        }
    }

    /// Decodes the §11.1.1 coding; any other byte is an error.
    pub fn from_byte(b: u8) -> Result<Self> {
        Ok(match b {
            0x01 => Self::OpReady,
            0x07 => Self::Initialized,
            0x0F => Self::Secured,
            0x7F => Self::CardLocked,
            0xFF => Self::Terminated,
            _ => {
                return Err(Error::InvalidValue {
                    context: "card life cycle",
                    field: "state",
                    reason: format!("{b:02X} is not a card life cycle state"),
                })
            }
        })
    }

    /// The specification's name: `OP_READY`, `INITIALIZED`, `SECURED`, `CARD_LOCKED`, `TERMINATED`.
    pub const fn name(self) -> &'static str {
        match self {
            Self::OpReady => "OP_READY",
            Self::Initialized => "INITIALIZED",
            Self::Secured => "SECURED",
            Self::CardLocked => "CARD_LOCKED",
            Self::Terminated => "TERMINATED",
        }
    }

    /// Whether SET STATUS may move the card from `self` to `next` (GP 2.3.1 §5.1.1, Figure 5-1):
    ///
    /// * OP_READY → INITIALIZED → SECURED, one step at a time and irreversible
    ///   (§5.1.1.2, §5.1.1.3); OP_READY → SECURED directly is refused.
    /// * SECURED ⇄ CARD_LOCKED: locking is only possible from SECURED (§5.1.1.4).
    /// * Any state except TERMINATED → TERMINATED; TERMINATED is final (§5.1.1.5).
    ///
    /// A transition to the same state is not a transition and returns `false`.
    pub fn can_transition_to(self, next: Self) -> bool {
        use CardLifeCycle::*;
        matches!(
            (self, next),
            (OpReady, Initialized)
                | (Initialized, Secured)
                | (Secured, CardLocked)
                | (CardLocked, Secured)
                | (OpReady | Initialized | Secured | CardLocked, Terminated)
        )
    }
}

impl fmt::Display for CardLifeCycle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Bit 8 of an application or security domain life cycle byte: LOCKED.
pub const LOCKED_BIT: u8 = 0x80;

/// Application life cycle state byte (GP 2.3.1 §5.3.1, coding in §11.1.1).
///
/// `03` INSTALLED, `07` SELECTABLE, `0xxxx111` application specific, and LOCKED = bit 8
/// set on top of the state it was locked from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AppLifeCycle(pub u8);

impl AppLifeCycle {
    /// `03`: installed, not yet selectable.
    pub const INSTALLED: Self = Self(0x03);
    /// `07`: selectable.
    pub const SELECTABLE: Self = Self(0x07);
    /// `83`: locked while INSTALLED (bit 8 on top of the previous state).
    pub const LOCKED_INSTALLED: Self = Self(0x83);
    /// `87`: locked while SELECTABLE.
    pub const LOCKED_SELECTABLE: Self = Self(0x87);

    /// Whether bit 8 (LOCKED) is set.
    pub const fn is_locked(self) -> bool {
        self.0 & LOCKED_BIT != 0
    }
    /// The state with LOCKED cleared (the state it returns to when unlocked).
    pub const fn unlocked(self) -> Self {
        Self(self.0 & !LOCKED_BIT)
    }
    /// The state with LOCKED set.
    pub const fn locked(self) -> Self {
        Self(self.0 | LOCKED_BIT)
    }
    /// Whether the application can be selected (SELECTABLE or application specific, not locked).
    pub const fn is_selectable(self) -> bool {
        !self.is_locked() && self.0 & 0x07 == 0x07
    }
    /// Application-specific bits b7..b4 of a `0xxxx111` state (0 for SELECTABLE).
    pub const fn application_specific(self) -> u8 {
        (self.0 >> 3) & 0x0F
    }
    /// Whether the byte is a coding allowed by §11.1.1 (`03`, `0xxxx111`, either with bit 8).
    pub const fn is_valid(self) -> bool {
        let s = self.0 & !LOCKED_BIT;
        s == 0x03 || s & 0x07 == 0x07
    }
    /// Whether an application may move from `self` to `next` (§5.3.1, Figure 5-2):
    /// INSTALLED → SELECTABLE (irreversible, §5.3.1.2); SELECTABLE or application specific →
    /// another application specific state (managed by the application itself, §5.3.1.5);
    /// any unlocked state → the same state locked; locked → the state it was locked from
    /// (§5.3.1.3). Nothing returns to INSTALLED or SELECTABLE.
    pub fn can_transition_to(self, next: Self) -> bool {
        if !self.is_valid() || !next.is_valid() || self == next {
            return false;
        }
        match (self.is_locked(), next.is_locked()) {
            (true, true) => false,
            (true, false) => self.unlocked() == next,
            (false, true) => next.unlocked() == self,
            (false, false) => {
                (self == Self::INSTALLED && next == Self::SELECTABLE)
                    || (self.0 & 0x07 == 0x07 && next.0 & 0x07 == 0x07 && next != Self::SELECTABLE)
            }
        }
    }
    /// `INSTALLED`, `SELECTABLE`, `APPLICATION_SPECIFIC(n)`, with ` LOCKED` appended when locked.
    pub fn name(self) -> String {
        let base = match self.unlocked() {
            Self::INSTALLED => "INSTALLED".to_string(),
            Self::SELECTABLE => "SELECTABLE".to_string(),
            s if s.is_valid() => format!("APPLICATION_SPECIFIC({:X})", s.application_specific()),
            s => format!("UNKNOWN({:02X})", s.0),
        };
        if self.is_locked() {
            format!("LOCKED ({base})")
        } else {
            base
        }
    }
}

impl fmt::Display for AppLifeCycle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name())
    }
}

/// Security domain life cycle state byte (GP 2.3.1 §5.3.2, coding in §11.1.1).
///
/// `03` INSTALLED, `07` SELECTABLE, `0F` PERSONALIZED, LOCKED = bit 8 set on top of the
/// previous state (`83` when locked from INSTALLED).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SdLifeCycle(pub u8);

impl SdLifeCycle {
    /// `03`: installed.
    pub const INSTALLED: Self = Self(0x03);
    /// `07`: selectable.
    pub const SELECTABLE: Self = Self(0x07);
    /// `0F`: keys and data personalised.
    pub const PERSONALIZED: Self = Self(0x0F);
    /// `83`: locked (from INSTALLED).
    pub const LOCKED: Self = Self(0x83);

    /// Whether bit 8 (LOCKED) is set.
    pub const fn is_locked(self) -> bool {
        self.0 & LOCKED_BIT != 0
    }
    /// The state with LOCKED cleared.
    pub const fn unlocked(self) -> Self {
        Self(self.0 & !LOCKED_BIT)
    }
    /// The state with LOCKED set.
    pub const fn locked(self) -> Self {
        Self(self.0 | LOCKED_BIT)
    }
    /// Whether the byte is `03`, `07` or `0F`, with or without bit 8.
    pub const fn is_valid(self) -> bool {
        matches!(self.0 & !LOCKED_BIT, 0x03 | 0x07 | 0x0F)
    }
    /// Whether the security domain can be selected (SELECTABLE or PERSONALIZED, not locked).
    pub const fn is_selectable(self) -> bool {
        matches!(self.0, 0x07 | 0x0F)
    }
    /// Whether a security domain may move from `self` to `next` (§5.3.2, Figure 5-3):
    /// INSTALLED → SELECTABLE → PERSONALIZED forward only; any unlocked state ⇄ locked.
    pub fn can_transition_to(self, next: Self) -> bool {
        if !self.is_valid() || !next.is_valid() || self == next {
            return false;
        }
        match (self.is_locked(), next.is_locked()) {
            (true, true) => false,
            (true, false) => self.unlocked() == next,
            (false, true) => next.unlocked() == self,
            (false, false) => {
                matches!((self.0, next.0), (0x03, 0x07) | (0x03, 0x0F) | (0x07, 0x0F))
            }
        }
    }
    /// `INSTALLED`, `SELECTABLE`, `PERSONALIZED`, with `LOCKED (…)` around it when locked.
    pub fn name(self) -> String {
        let base = match self.0 & !LOCKED_BIT {
            0x03 => "INSTALLED".to_string(),
            0x07 => "SELECTABLE".to_string(),
            0x0F => "PERSONALIZED".to_string(),
            s => format!("UNKNOWN({s:02X})"),
        };
        if self.is_locked() {
            format!("LOCKED ({base})")
        } else {
            base
        }
    }
}

impl fmt::Display for SdLifeCycle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name())
    }
}

/// Executable load file life cycle (GP 2.3.1 §5.2, coding in §11.1.1): only LOADED (`01`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct LoadFileLifeCycle(pub u8);

impl LoadFileLifeCycle {
    /// `01`: loaded.
    pub const LOADED: Self = Self(0x01);
    /// `LOADED` or `UNKNOWN(xx)`.
    pub fn name(self) -> String {
        if self == Self::LOADED {
            "LOADED".into()
        } else {
            format!("UNKNOWN({:02X})", self.0)
        }
    }
}

impl fmt::Display for LoadFileLifeCycle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use CardLifeCycle::*;

    #[test]
    fn card_codes_round_trip() {
        for s in [OpReady, Initialized, Secured, CardLocked, Terminated] {
            assert_eq!(CardLifeCycle::from_byte(s.to_byte()).unwrap(), s);
        }
        assert_eq!(Secured.to_byte(), 0x0F);
        assert_eq!(CardLocked.to_string(), "CARD_LOCKED");
        assert!(CardLifeCycle::from_byte(0x03).is_err());
    }

    #[test]
    fn card_transitions_follow_figure_5_1() {
        assert!(OpReady.can_transition_to(Initialized));
        assert!(!OpReady.can_transition_to(Secured));
        assert!(Initialized.can_transition_to(Secured));
        assert!(!Secured.can_transition_to(Initialized));
        assert!(!Initialized.can_transition_to(CardLocked));
        assert!(!OpReady.can_transition_to(CardLocked));
        assert!(Secured.can_transition_to(CardLocked));
        assert!(CardLocked.can_transition_to(Secured));
        for s in [OpReady, Initialized, Secured, CardLocked] {
            assert!(s.can_transition_to(Terminated));
            assert!(!Terminated.can_transition_to(s));
        }
        assert!(!Terminated.can_transition_to(Terminated));
    }

    #[test]
    fn application_states() {
        let a = AppLifeCycle::INSTALLED;
        assert!(!a.is_selectable());
        assert!(a.can_transition_to(AppLifeCycle::SELECTABLE));
        assert!(!AppLifeCycle::SELECTABLE.can_transition_to(a));
        let specific = AppLifeCycle(0x0F);
        assert!(specific.is_valid() && specific.is_selectable());
        assert_eq!(specific.application_specific(), 1);
        assert!(AppLifeCycle::SELECTABLE.can_transition_to(specific));
        assert!(!specific.can_transition_to(AppLifeCycle::SELECTABLE));
        assert!(!a.can_transition_to(specific));
        assert!(specific.can_transition_to(AppLifeCycle(0x1F)));
        let locked = specific.locked();
        assert_eq!(locked.0, 0x8F);
        assert!(specific.can_transition_to(locked));
        assert!(locked.can_transition_to(specific));
        assert!(!locked.can_transition_to(AppLifeCycle::SELECTABLE));
        assert!(!locked.is_selectable());
        assert_eq!(locked.to_string(), "LOCKED (APPLICATION_SPECIFIC(1))");
        assert!(!AppLifeCycle(0x05).is_valid());
    }

    #[test]
    fn security_domain_states() {
        assert!(SdLifeCycle::INSTALLED.can_transition_to(SdLifeCycle::SELECTABLE));
        assert!(SdLifeCycle::SELECTABLE.can_transition_to(SdLifeCycle::PERSONALIZED));
        assert!(!SdLifeCycle::PERSONALIZED.can_transition_to(SdLifeCycle::SELECTABLE));
        assert_eq!(SdLifeCycle::INSTALLED.locked(), SdLifeCycle::LOCKED);
        assert!(SdLifeCycle::PERSONALIZED.can_transition_to(SdLifeCycle(0x8F)));
        assert!(SdLifeCycle(0x8F).can_transition_to(SdLifeCycle::PERSONALIZED));
        assert_eq!(SdLifeCycle(0x8F).to_string(), "LOCKED (PERSONALIZED)");
        assert_eq!(LoadFileLifeCycle::LOADED.to_string(), "LOADED");
    }
}
