//! What the CI checks before it signs a Delegated Management token (GP 2.3.1 §9.1.3.3,
//! Appendix C.4): the token input is rebuilt into its command and the command must stay
//! inside the partner's contract.

use apdu::Command;
use gp::aid::Aid;
use gp::commands::{Delete, Install};

use super::auth::Refusal;

/// Rebuilds the command a token input (`P1 ‖ P2 ‖ Lc ‖ data without the token`) stands
/// for and checks it: INSTALL [for load] into the partner's SSD; INSTALL [for install],
/// [for make selectable], [for install and make selectable] of an instance under the
/// partner's AID prefix; INSTALL [for extradition] of an object under the prefix to the
/// SSD; DELETE of an object under the prefix. Returns what it is, for the audit log.
pub fn check_input(input: &[u8], ssd: &Aid, prefix: &[u8]) -> Result<String, Refusal> {
    let (p1, p2) = match input {
        [p1, p2, ..] => (*p1, *p2),
        _ => return Err(Refusal::AidOutsidePrefix),
    };
    let (lc, start) = match input.get(2) {
        Some(0) if input.len() > 5 => (usize::from(u16::from_be_bytes([input[3], input[4]])), 5),
        Some(n) => (usize::from(*n), 3),
        None => return Err(Refusal::AidOutsidePrefix),
    };
    let body = input
        .get(start..)
        .filter(|b| b.len() == lc)
        .ok_or(Refusal::AidOutsidePrefix)?;
    let under = |a: &Aid| a.as_bytes().starts_with(prefix) && a.len() > prefix.len();
    if p1 == 0x00 {
        // DELETE: the data field without the token object.
        let cmd = Command::new(0x80, 0xE4, p1, p2).with_data(body.to_vec());
        return match Delete::parse(&cmd) {
            Ok(Delete::Object { aid, .. }) if under(&aid) => Ok(format!("delete {aid}")),
            _ => Err(Refusal::AidOutsidePrefix),
        };
    }
    // INSTALL: the data field ends with the token length, here 0.
    let mut data = body.to_vec();
    data.push(0);
    let cmd = Command::new(0x80, 0xE6, p1, p2).with_data(data);
    match Install::parse(&cmd) {
        Ok(Install::ForLoad {
            load_file,
            security_domain,
            ..
        }) if security_domain.as_ref() == Some(ssd) => Ok(format!("load {load_file}")),
        Ok(Install::ForInstall { application, .. }) if under(&application) => {
            Ok(format!("install {application}"))
        }
        Ok(Install::ForMakeSelectable { application, .. }) if under(&application) => {
            Ok(format!("make selectable {application}"))
        }
        Ok(Install::ForExtradition {
            security_domain,
            application,
            ..
        }) if security_domain == *ssd && under(&application) => {
            Ok(format!("extradite {application}"))
        }
        _ => Err(Refusal::AidOutsidePrefix),
    }
}
