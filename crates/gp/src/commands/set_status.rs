//! SET STATUS (GP 2.3.1 §11.10).

use apdu::Command;

use super::{bad_p1p2, expect_ins, ins, CLA_GP};
use crate::aid::Aid;
use crate::lifecycle::CardLifeCycle;
use crate::{Error, Result};

/// Whose state SET STATUS changes (P1, GP 2.3.1 §11.10.2.1, Table 11-86).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SetStatusScope {
    /// P1 `80`: the card (the Issuer Security Domain's life cycle).
    Card,
    /// P1 `40`: an application or supplementary security domain.
    Application,
    /// P1 `60`: a security domain and all its associated applications.
    SecurityDomainAndApplications,
}

impl SetStatusScope {
    /// P1.
    pub const fn p1(self) -> u8 {
        match self {
            Self::Card => 0x80,
            Self::Application => 0x40,
            Self::SecurityDomainAndApplications => 0x60,
        }
    }
}

/// SET STATUS: `80 F0 P1 P2 [Lc AID]`; P2 is the new state coding (§11.1.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetStatus {
    /// P1.
    pub scope: SetStatusScope,
    /// P2: the new life cycle state; for applications bit 8 locks (`80`) or unlocks (`00`).
    pub state: u8,
    /// The target's AID; may be omitted for [`SetStatusScope::Card`].
    pub aid: Option<Aid>,
}

impl SetStatus {
    /// Changes the card life cycle state.
    pub fn card(state: CardLifeCycle) -> Self {
        Self {
            scope: SetStatusScope::Card,
            state: state.to_byte(),
            aid: None,
        }
    }
    /// Sets an application's (or SSD's) state byte.
    pub fn application(aid: Aid, state: u8) -> Self {
        Self {
            scope: SetStatusScope::Application,
            state,
            aid: Some(aid),
        }
    }
    /// Locks an application or SSD (P2 `80`).
    pub fn lock(aid: Aid) -> Self {
        Self::application(aid, 0x80)
    }
    /// Unlocks an application or SSD (P2 `00`).
    pub fn unlock(aid: Aid) -> Self {
        Self::application(aid, 0x00)
    }

    /// The command (case 3, or case 1 without AID).
    pub fn to_command(&self) -> Result<Command> {
        if self.aid.is_none() && self.scope != SetStatusScope::Card {
            return Err(Error::Encoding(
                "SET STATUS of an application needs its AID".into(),
            ));
        }
        let data = self.aid.map(|a| a.as_bytes().to_vec()).unwrap_or_default();
        Ok(Command::new(CLA_GP, ins::SET_STATUS, self.scope.p1(), self.state).with_data(data))
    }

    /// Reads SET STATUS.
    pub fn parse(cmd: &Command) -> Result<Self> {
        expect_ins(cmd, ins::SET_STATUS, "SET STATUS")?;
        let scope = match cmd.p1 {
            0x80 => SetStatusScope::Card,
            0x40 => SetStatusScope::Application,
            0x60 => SetStatusScope::SecurityDomainAndApplications,
            _ => return Err(bad_p1p2(cmd, "SET STATUS")),
        };
        let aid = match (&cmd.data[..], scope) {
            ([], SetStatusScope::Card) => None,
            ([], _) => {
                return Err(Error::MissingTag {
                    context: "SET STATUS",
                    tag: 0x4F,
                })
            }
            (d, _) => Some(Aid::new(d)?),
        };
        Ok(Self {
            scope,
            state: cmd.p2,
            aid,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use apdu::hex;

    #[test]
    fn bytes_and_round_trip() {
        let s = SetStatus::card(CardLifeCycle::Secured);
        let c = s.to_command().unwrap();
        assert_eq!(hex(&c.to_bytes().unwrap()), "80F0800F");
        assert_eq!(SetStatus::parse(&c).unwrap(), s);
        let l = SetStatus::lock("D07002CA44900101".parse().unwrap());
        let c = l.to_command().unwrap();
        assert_eq!(hex(&c.to_bytes().unwrap()), "80F0408008D07002CA44900101");
        assert_eq!(SetStatus::parse(&c).unwrap(), l);
        assert!(SetStatus::parse(&Command::new(0x80, 0xF0, 0x40, 0x80)).is_err());
    }
}
