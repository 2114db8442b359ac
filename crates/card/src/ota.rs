//! Remote management over the air, card side: which security domain a TAR addresses, its
//! SCP80 keys and counters, and the execution of remote APDU scripts under that SD's
//! authority (ETSI TS 102 225 §5, TS 102 226 §5; GP UICC Configuration §4).
//!
//! The secured packets themselves are taken apart by the `ota` crate; this module is what
//! the card does with them once they verified.

use apdu::{Command, Response, StatusWord};

use crate::card::VirtualCard;
use crate::channel::{Channel, MAX_CHANNELS};
use crate::model::Aid;

/// The logical channel slot remote scripts run on: one past the last channel a CLA byte can
/// name, so nothing from the terminal can reach or disturb it (its LOAD in progress, its
/// chaining state).
pub(crate) const OTA_CHANNEL: usize = MAX_CHANNELS;

/// TARs of the Issuer Security Domain: `000000` (GP card manager) and `B20100` (ETSI TS
/// 101 220 Annex D, Remote Application Management of the ISD).
pub const ISD_TARS: [[u8; 3]; 2] = [[0x00, 0x00, 0x00], [0xB2, 0x01, 0x00]];

/// SCP80 key version numbers: `01`..=`0F` (GP UICC Configuration §4.2; ETSI TS 102 225 §5.1.1,
/// the KVN is the high nibble of KIc/KID).
pub const SCP80_KVNS: std::ops::RangeInclusive<u8> = 0x01..=0x0F;

/// Key identifiers inside an SCP80 key set: KIc, KID, DEK.
pub(crate) mod scp80_kid {
    pub const KIC: u8 = 0x01;
    pub const KID: u8 = 0x02;
}

/// What a remote script did (ETSI TS 102 226 §5.1.2 / §5.2.2): the responses of the commands
/// executed, in order; the last one is the one that stopped the script if it failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScriptOutcome {
    /// One response per command executed.
    pub responses: Vec<Response>,
}

impl ScriptOutcome {
    /// How many commands were executed (the `80` / first byte of the response data).
    pub fn executed(&self) -> usize {
        self.responses.len()
    }
    /// The last response (compact format answers only this one), if any command ran.
    pub fn last(&self) -> Option<&Response> {
        self.responses.last()
    }
}

/// Whether a remote script goes on after a command answered `sw` (ETSI TS 102 226 §5.1.2:
/// processing stops at the first status word other than `9000`, `61xx`, `62xx`, `63xx`,
/// `91xx` or `92xx`).
pub(crate) fn continues_after(sw: StatusWord) -> bool {
    matches!(sw.0 >> 8, 0x61 | 0x62 | 0x63 | 0x91 | 0x92) || sw == StatusWord::SUCCESS
}

impl VirtualCard {
    /// The security domain a TAR addresses: the ISD for [`ISD_TARS`]; otherwise the SD that
    /// lists the TAR, or whose AID ends in it (ETSI TS 101 220 Annex D: the TAR of an
    /// application is coded in its AID).
    pub fn sd_for_tar(&self, tar: [u8; 3]) -> Option<Aid> {
        if ISD_TARS.contains(&tar) {
            return self.state.isd().map(|a| a.aid.clone());
        }
        let hex = apdu::hex(&tar);
        let sds = self.state.apps.iter().filter(|a| a.is_sd());
        let mut by_aid = None;
        for app in sds {
            let Some(data) = app.sd_data() else { continue };
            if data.ota.tars.iter().any(|t| t.eq_ignore_ascii_case(&hex)) {
                return Some(app.aid.clone());
            }
            if app.aid.0.len() >= 8 && app.aid.0[app.aid.0.len() - 3..] == tar && by_aid.is_none() {
                by_aid = Some(app.aid.clone());
            }
        }
        by_aid
    }

    /// The SCP80 keys (KIc, KID) of `sd`'s key set `kvn`, with their key type byte
    /// (`80` DES, `88` AES). `None` if the SD has no such key set.
    pub(crate) fn scp80_keys(&self, sd: &Aid, kvn: u8) -> Option<(u8, Vec<u8>, Vec<u8>)> {
        if !SCP80_KVNS.contains(&kvn) {
            return None;
        }
        let set = self
            .state
            .app(&sd.0)?
            .sd_data()?
            .key_sets
            .iter()
            .find(|s| s.kvn == kvn)?;
        let kic = set.key(scp80_kid::KIC)?;
        let kid = set.key(scp80_kid::KID)?;
        Some((kic.key_type, kic.value.0.to_vec(), kid.value.0.to_vec()))
    }

    /// The last counter `sd` accepted with key set `kvn` (0 before the first).
    pub(crate) fn ota_counter(&self, sd: &Aid, kvn: u8) -> u64 {
        self.state
            .app(&sd.0)
            .and_then(|a| a.sd_data())
            .and_then(|d| d.ota.counters.get(&format!("{kvn:02X}")).copied())
            .unwrap_or(0)
    }

    /// Records the counter of a packet about to be executed. It is saved with the rest of the
    /// state before the answer leaves the card, so a replay of the same packet after a power
    /// loss is still refused.
    pub(crate) fn set_ota_counter(&mut self, sd: &Aid, kvn: u8, counter: u64) {
        if let Ok(d) = self.sd_data_mut(sd) {
            d.ota.counters.insert(format!("{kvn:02X}"), counter);
        }
    }

    /// Runs `commands` one after the other as if each came through an authenticated secure
    /// channel of `sd` (a verified SCP80 packet or SCP81 session is that channel), so GP 2.3.1
    /// content management rules apply as they are: privileges, ownership, life cycles.
    /// Stops after the first command that fails (a status word other than `9000`, `61xx`,
    /// `62xx`, `63xx`, `91xx`, `92xx`: TS 102 226 §5.1.2). The responses are
    /// complete (no `61xx` chunking: the script answers all the data).
    pub fn run_remote_script(&mut self, sd: &Aid, commands: &[Command]) -> ScriptOutcome {
        let usable = self.state.app(&sd.0).is_some_and(|a| a.is_sd());
        if !usable {
            return ScriptOutcome {
                responses: vec![Response::status(StatusWord::CONDITIONS_NOT_SATISFIED)],
            };
        }
        // The slot lives from one script of an SD to the next, so that a load file can
        // arrive in several packets (its LOAD blocks in sequence, as OTA servers send
        // them); a script for another SD, or a power cycle, starts a fresh one and drops an
        // unfinished LOAD (GP 2.3.1 §11.6: the sequence must be complete).
        while self.channels.len() <= OTA_CHANNEL {
            self.channels.push(None);
        }
        let same_sd = self.channels[OTA_CHANNEL]
            .as_ref()
            .is_some_and(|c| c.selected.as_ref() == Some(sd));
        if !same_sd {
            self.channels[OTA_CHANNEL] = Some(Channel {
                selected: Some(sd.clone()),
                ..Channel::default()
            });
        }
        let mut responses = Vec::with_capacity(commands.len());
        for cmd in commands {
            let resp = self.remote_command(sd, cmd);
            let go_on = continues_after(resp.sw);
            responses.push(resp);
            if !go_on {
                break;
            }
        }
        ScriptOutcome { responses }
    }

    /// One command of a remote script: the SD's own commands (GP card and content
    /// management, GET DATA, STORE DATA…) with the authority of an authenticated channel.
    /// Secure messaging classes are refused: the packet's security already covers it.
    fn remote_command(&mut self, sd: &Aid, cmd: &Command) -> Response {
        let Some(cla) = crate::channel::Cla::decode(cmd.cla) else {
            return Response::status(StatusWord::CLA_NOT_SUPPORTED);
        };
        if cla.sm || cla.channel != 0 {
            return Response::status(StatusWord::CLA_NOT_SUPPORTED);
        }
        match self.sd_command(OTA_CHANNEL, sd, cmd, true, false) {
            Ok(r) => r,
            Err(sw) => Response::status(sw),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::CardConfig;
    use crate::model::ISD_AID;

    fn get_status_isd() -> Command {
        Command::new(0x80, 0xF2, 0x80, 0x02)
            .with_data(vec![0x4F, 0x00])
            .with_le(256)
    }

    #[test]
    fn isd_answers_its_tars() {
        let card = VirtualCard::new(CardConfig::default());
        for tar in ISD_TARS {
            assert_eq!(card.sd_for_tar(tar), Some(Aid::new(ISD_AID)));
        }
        assert_eq!(card.sd_for_tar([0xB2, 0x01, 0x01]), None);
    }

    #[test]
    fn script_runs_with_the_sds_authority_and_stops_at_an_error() {
        let mut card = VirtualCard::new(CardConfig::default());
        let isd = Aid::new(ISD_AID);
        // A plain GET STATUS needs an authenticated channel from the terminal...
        assert_eq!(
            Response::parse(&card.transmit(&get_status_isd().to_bytes().unwrap()))
                .unwrap()
                .sw,
            StatusWord::SECURITY_NOT_SATISFIED
        );
        // ...and runs in a remote script.
        let bad = Command::new(0x80, 0xE4, 0x00, 0x00).with_data(vec![0x4F, 0x05, 1, 2, 3, 4, 5]);
        let out = card.run_remote_script(&isd, &[get_status_isd(), bad, get_status_isd()]);
        assert_eq!(out.executed(), 2, "stops after the failing DELETE");
        assert_eq!(out.responses[0].sw, StatusWord::SUCCESS);
        assert_eq!(
            out.last().unwrap().sw,
            StatusWord::REFERENCED_DATA_NOT_FOUND
        );
        // A power cycle drops the OTA slot.
        card.reset();
        assert!(card.channels.get(OTA_CHANNEL).is_none_or(|c| c.is_none()));
    }

    #[test]
    fn secure_messaging_and_other_channels_are_refused_in_scripts() {
        let mut card = VirtualCard::new(CardConfig::default());
        let isd = Aid::new(ISD_AID);
        let sm = Command::new(0x84, 0xF2, 0x40, 0x02).with_data(vec![0x4F, 0x00]);
        let ch1 = Command::new(0x81, 0xF2, 0x40, 0x02).with_data(vec![0x4F, 0x00]);
        for c in [sm, ch1] {
            let out = card.run_remote_script(&isd, &[c]);
            assert_eq!(out.last().unwrap().sw, StatusWord::CLA_NOT_SUPPORTED);
        }
    }

    #[test]
    fn counters_are_kept_per_sd_and_key_set_and_persist() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("card.json");
        let isd = Aid::new(ISD_AID);
        {
            let mut card = VirtualCard::open(&path, CardConfig::default()).unwrap();
            assert_eq!(card.ota_counter(&isd, 1), 0);
            card.set_ota_counter(&isd, 1, 41);
            card.set_ota_counter(&isd, 2, 7);
            // Saved with the next command's answer.
            card.transmit(&[0x80, 0xCA, 0x00, 0x66, 0x00]);
        }
        let card = VirtualCard::open(&path, CardConfig::default()).unwrap();
        assert_eq!(card.ota_counter(&isd, 1), 41);
        assert_eq!(card.ota_counter(&isd, 2), 7);
    }
}
