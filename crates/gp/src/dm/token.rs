//! Token input (GP 2.3.1 Appendix C.4, Tables C-4 … C-9).
//!
//! A token signs the command it authorises: `P1 ‖ P2 ‖ Lc ‖ data`, where *data* is the
//! command's data field without the token (for INSTALL: without the token length byte and
//! the token; for DELETE: without the `9E` object) and *Lc* its length — one byte up to 255,
//! otherwise `00` followed by two bytes (the data then goes in chained commands). P1 is the
//! role (`02`, `04`, `08`, `0C`, `10`, `40` for INSTALL; `00` for DELETE) without b8 (more
//! commands), P2 the command's (`00`, or `80` for DELETE of related objects).

use crate::commands::{Delete, Install};
use crate::{Error, Result};

/// A command that carries a Delegated Management token.
pub trait TokenInput: Sized {
    /// The exact bytes the token signs.
    fn token_input(&self) -> Result<Vec<u8>>;
    /// The token it carries (empty when none).
    fn token(&self) -> &[u8];
    /// The same command with `token` put in (an empty token removes it).
    fn with_token(self, token: Vec<u8>) -> Result<Self>;
}

/// `P1 ‖ P2 ‖ Lc ‖ body` with the one- or three-byte Lc of Appendix C.4.
pub fn with_lc(p1: u8, p2: u8, body: &[u8]) -> Result<Vec<u8>> {
    let mut v = Vec::with_capacity(body.len() + 5);
    v.extend_from_slice(&[p1, p2]);
    match body.len() {
        n @ 0..=255 => v.push(n as u8),
        n @ 256..=65535 => {
            v.push(0);
            v.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            return Err(Error::Encoding(format!(
                "token input data of {n} bytes exceeds 65535"
            )))
        }
    }
    v.extend_from_slice(body);
    Ok(v)
}

fn token_field(i: &mut Install) -> Option<&mut Vec<u8>> {
    match i {
        Install::ForLoad { token, .. }
        | Install::ForInstall { token, .. }
        | Install::ForMakeSelectable { token, .. }
        | Install::ForExtradition { token, .. }
        | Install::ForRegistryUpdate { token, .. } => Some(token),
        Install::ForPersonalization { .. } => None,
    }
}

fn no_token(what: &str) -> Error {
    Error::Encoding(format!("{what} carries no Delegated Management token"))
}

impl TokenInput for Install {
    fn token_input(&self) -> Result<Vec<u8>> {
        let mut bare = self.clone();
        token_field(&mut bare)
            .ok_or_else(|| no_token("INSTALL [for personalization]"))?
            .clear();
        let mut data = bare.data()?;
        // The data field ends with the token length (`00` now): not part of the input.
        data.pop();
        with_lc(self.p1(), 0x00, &data)
    }

    fn token(&self) -> &[u8] {
        match self {
            Install::ForLoad { token, .. }
            | Install::ForInstall { token, .. }
            | Install::ForMakeSelectable { token, .. }
            | Install::ForExtradition { token, .. }
            | Install::ForRegistryUpdate { token, .. } => token,
            Install::ForPersonalization { .. } => &[],
        }
    }

    fn with_token(mut self, token: Vec<u8>) -> Result<Self> {
        *token_field(&mut self).ok_or_else(|| no_token("INSTALL [for personalization]"))? = token;
        Ok(self)
    }
}

impl TokenInput for Delete {
    fn token_input(&self) -> Result<Vec<u8>> {
        match self {
            Delete::Object {
                aid,
                related,
                control_reference,
                ..
            } => {
                let bare = Delete::Object {
                    aid: *aid,
                    related: *related,
                    control_reference: control_reference.clone(),
                    token: None,
                };
                let cmd = bare.to_command()?;
                with_lc(0x00, cmd.p2, &cmd.data)
            }
            Delete::Key { .. } => Err(no_token("DELETE of keys")),
        }
    }

    fn token(&self) -> &[u8] {
        match self {
            Delete::Object { token: Some(t), .. } => t,
            _ => &[],
        }
    }

    fn with_token(self, t: Vec<u8>) -> Result<Self> {
        match self {
            Delete::Object {
                aid,
                related,
                control_reference,
                ..
            } => Ok(Delete::Object {
                aid,
                related,
                control_reference,
                token: (!t.is_empty()).then_some(t),
            }),
            Delete::Key { .. } => Err(no_token("DELETE of keys")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Aid, Privileges};
    use apdu::hex;

    fn aid(s: &str) -> Aid {
        s.parse().unwrap()
    }

    #[test]
    fn install_for_load_input_is_p1_p2_lc_and_data_without_token() {
        let i = Install::ForLoad {
            load_file: aid("A000000151000001"),
            security_domain: Some(aid("A000000151535344")),
            hash: vec![0xAB; 20],
            params: vec![],
            token: vec![1, 2, 3],
        };
        let input = i.token_input().unwrap();
        assert_eq!(
            hex(&input),
            format!(
                "0200{:02X}08A00000015100000108A00000015153534414{}00",
                1 + 8 + 1 + 8 + 1 + 20 + 1,
                "AB".repeat(20)
            )
        );
        // The command's data field is the input's body, then the token LV.
        let cmd = i.to_command().unwrap();
        assert_eq!(&cmd.data[..cmd.data.len() - 4], &input[3..]);
        assert_eq!(&cmd.data[cmd.data.len() - 4..], &[3, 1, 2, 3]);
    }

    #[test]
    fn install_and_make_selectable_uses_p1_0c() {
        let i = Install::for_install_and_make_selectable(
            aid("D07002CA44"),
            aid("D07002CA44900101"),
            aid("D07002CA44900101"),
            Privileges::NONE,
        );
        assert_eq!(
            hex(&i.token_input().unwrap()),
            "0C001D05D07002CA4408D07002CA4490010108D07002CA44900101010002C900"
        );
    }

    #[test]
    fn long_data_takes_a_three_byte_lc() {
        let i = Install::ForInstall {
            load_file: aid("D07002CA44"),
            module: aid("D07002CA44900101"),
            application: aid("D07002CA44900101"),
            privileges: Privileges::NONE,
            params: {
                let mut p = vec![0xC9, 0x81, 0xF0];
                p.extend(std::iter::repeat_n(0x55, 0xF0));
                p
            },
            token: vec![],
            make_selectable: false,
        };
        let input = i.token_input().unwrap();
        assert_eq!(&input[..5], &[0x04, 0x00, 0x00, 0x01, 0x0E]);
        assert_eq!(input.len(), 5 + 0x10E);
    }

    #[test]
    fn delete_input_leaves_out_the_9e_object() {
        let d = Delete::object(aid("D0D1D2D3D4D501"), true)
            .with_token(vec![9; 8])
            .unwrap();
        assert_eq!(hex(&d.token_input().unwrap()), "0080094F07D0D1D2D3D4D501");
        let c = d.to_command().unwrap();
        assert_eq!(hex(&c.data[9..]), "9E080909090909090909");
        assert!(Delete::Key {
            id: Some(1),
            version: None
        }
        .token_input()
        .is_err());
    }

    #[test]
    fn extradition_and_registry_update() {
        let e = Install::ForExtradition {
            security_domain: aid("A000000151535344"),
            application: aid("D07002CA44900101"),
            params: vec![],
            token: vec![],
        };
        assert_eq!(
            hex(&e.token_input().unwrap()),
            "10001508A0000001515353440008D07002CA449001010000"
        );
        assert!(Install::ForPersonalization {
            application: aid("D07002CA44900101")
        }
        .token_input()
        .is_err());
    }
}
