//! GET DATA (GP 2.3.1 §11.3) and STORE DATA (§11.11) of a security domain.

use apdu::tlv::{self, Tag};
use apdu::{Command, Response, StatusWord};
use gp::commands::{CardData, KeyComponent, KeyInfo, KeyInfoEntry, ScpOption};
use scp::scp11::Variant;

use super::Sw;
use crate::card::VirtualCard;
use crate::channel::{Channel, Secure};
use crate::model::{app_lc, Aid, AppKind};
use zeroize::{Zeroize, Zeroizing};

/// `{iso(1) org(3) dod(6) internet(1) private(4) enterprise(1) sun(42) 2 110 1 3}`: Java
/// Card 3, as JCOP cards report in the chip details (`66`).
const JAVA_CARD_OID: [u8; 10] = [0x2B, 0x06, 0x01, 0x04, 0x01, 0x2A, 0x02, 0x6E, 0x01, 0x03];

/// The Card Data (GP 2.3.1 §H.2, Table H-1): GP 2.3.1 card management, the card
/// identification scheme, the ISD's Secure Channel Protocol with its "i", Java Card chip.
pub(crate) fn card_data(scp: u8, i: u8, scp11: &[Variant]) -> CardData {
    let mut options = vec![ScpOption { scp, i }];
    // SCP11 with its i per variant (OID {globalPlatform 4 11 i}), when the SD has the keys.
    options.extend(scp11.iter().map(|v| ScpOption {
        scp: 0x11,
        i: v.i(),
    }));
    CardData {
        gp_version: Some(vec![2, 3, 1]),
        identification_scheme: true,
        scp: options,
        configuration_details: None,
        chip_details: Some(tlv::encode(Tag::new(0x06), &JAVA_CARD_OID)),
        other: Vec::new(),
    }
}

/// The value of the Card Recognition Data template `73` (inside `66`, and in an SD's FCI).
pub(crate) fn card_recognition_data(scp: u8, i: u8, scp11: &[Variant]) -> Vec<u8> {
    let bytes = card_data(scp, i, scp11).to_bytes();
    tlv::find_in(&bytes, &[Tag::new(0x66), Tag::new(0x73)])
        .ok()
        .flatten()
        .map(|t73| t73.value().to_vec())
        .unwrap_or_default()
}

/// Free memory reported in Extended Card Resources Information (a fixed, generous value).
const FREE_MEMORY: u32 = 0x0010_0000;

impl VirtualCard {
    /// GET DATA (GP 2.3.1 §11.3): P1-P2 is the tag.
    pub(super) fn get_data(&mut self, sd: &Aid, cmd: &Command) -> Sw<Response> {
        match (cmd.p1, cmd.p2) {
            // SCP11 certificate store (Amendment F; `A6{83 KID KVN}`).
            (0xBF, 0x21) => return self.get_certificates(sd, cmd).map(Response::ok),
            (0xFF, 0x33) => return self.ca_identifiers(sd, false).map(Response::ok),
            (0xFF, 0x34) => return self.ca_identifiers(sd, true).map(Response::ok),
            // The download agent's configuration (ISD only).
            (0xBF, 0x70) if sd.0 == crate::model::ISD_AID && cmd.data.is_empty() => {
                let agent = self.agent().ok_or(StatusWord::REFERENCED_DATA_NOT_FOUND)?;
                return Ok(Response::ok(agent.to_tlv()));
            }
            _ => {}
        }
        if !cmd.data.is_empty() {
            return Err(StatusWord::WRONG_DATA);
        }
        let tag = u16::from_be_bytes([cmd.p1, cmd.p2]);
        let rec = self.sd_rec(sd)?;
        let data = rec.sd_data().ok_or(StatusWord::UNKNOWN)?;
        let isd_data = self.state.isd().and_then(|a| a.sd_data());
        // Personalised value of this SD, else of the ISD (the card's).
        let personal = |t: &str| {
            data.data
                .get(t)
                .or_else(|| isd_data.and_then(|d| d.data.get(t)))
                .and_then(|h| apdu::parse_hex(h).ok())
        };
        let out = match tag {
            // Card Production Life Cycle data.
            0x9F7F => tlv::encode(Tag::new(0x9F7F), &self.state.cplc),
            // Card Data: Card Recognition Data (§H.2).
            0x0066 => tlv::encode(
                Tag::new(0x66),
                &tlv::encode(
                    Tag::new(0x73),
                    &card_recognition_data(
                        self.state.scp,
                        self.state.scp_i,
                        &super::scp11::variants(data),
                    ),
                ),
            ),
            // Key Information Template (§11.3): C0 {id, KVN, type, length}.
            0x00E0 => KeyInfo {
                entries: data
                    .key_sets
                    .iter()
                    .flat_map(|set| {
                        set.keys.iter().map(|k| KeyInfoEntry {
                            id: k.id,
                            version: set.kvn,
                            components: k
                                .components()
                                .into_iter()
                                .map(|(key_type, length)| KeyComponent { key_type, length })
                                .collect(),
                            extended: None,
                        })
                    })
                    .collect(),
            }
            .to_bytes(),
            // Issuer Identification Number and Card Image Number (Appendix H).
            0x0042 => tlv::encode(
                Tag::new(0x42),
                &personal("42").ok_or(StatusWord::REFERENCED_DATA_NOT_FOUND)?,
            ),
            0x0045 => tlv::encode(
                Tag::new(0x45),
                &personal("45").ok_or(StatusWord::REFERENCED_DATA_NOT_FOUND)?,
            ),
            // Key Diversification Data.
            0x00CF => tlv::encode(Tag::new(0xCF), &data.kdd),
            // Sequence counter of the default key version number (§11.3).
            0x00C1 => {
                let aes = data
                    .key_sets
                    .first()
                    .and_then(|s| s.keys.first())
                    .is_some_and(|k| k.key_type == crate::model::key_type::AES);
                let c = data.seq_counter.to_be_bytes();
                tlv::encode(Tag::new(0xC1), if aes { &c[1..] } else { &c[2..] })
            }
            // Extended Card Resources Information (ETSI TS 102 226 §8.2.1.7.2; GP Amd C).
            0xFF21 => {
                let apps = self.state.apps.len() as u16;
                let mut body = tlv::encode(Tag::new(0x81), &apps.to_be_bytes());
                body.extend(tlv::encode(Tag::new(0x82), &FREE_MEMORY.to_be_bytes()));
                body.extend(tlv::encode(Tag::new(0x83), &FREE_MEMORY.to_be_bytes()));
                tlv::encode(Tag::new(0xFF21), &body)
            }
            _ => return Err(StatusWord::REFERENCED_DATA_NOT_FOUND),
        };
        Ok(Response::ok(out))
    }

    /// STORE DATA (GP 2.3.1 §11.11). After INSTALL [for personalization] the data goes to
    /// that application until the last block; otherwise it personalises this security
    /// domain: BER-TLV (or DGI) objects are kept by tag, `42` and `45` answer GET DATA and
    /// `CF` (10 bytes) replaces the key diversification data.
    pub(super) fn store_data(&mut self, ch: usize, sd: &Aid, cmd: &Command) -> Sw<Response> {
        let last = cmd.p1 & 0x80 != 0;
        let target = self.channel(ch).and_then(|c| c.perso.clone());
        let resp = match target {
            Some(app) if app != *sd => self.personalize(ch, &app, cmd),
            _ => self.store_sd_data(sd, cmd),
        };
        if last {
            if let Some(c) = self.channel_mut(ch) {
                c.perso = None;
            }
        }
        resp
    }

    fn personalize(&mut self, ch: usize, app: &Aid, cmd: &Command) -> Sw<Response> {
        let rec = self
            .state
            .app(&app.0)
            .ok_or(StatusWord::REFERENCED_DATA_NOT_FOUND)?;
        if rec.is_sd() {
            return self.store_sd_data(app, cmd);
        }
        if app_lc::is_locked(rec.life_cycle) {
            return Err(StatusWord::CONDITIONS_NOT_SATISFIED);
        }
        if self.live_applet(app).is_none() {
            return Err(StatusWord::CONDITIONS_NOT_SATISFIED);
        }
        let mut plain = cmd.clone();
        plain.cla = 0x80;
        if cmd.p1 & 0x60 == 0x60 && (cmd.p1 >> 3) & 0x03 == 0x01 {
            plain.data = self.decrypt_dgis(ch, &cmd.data)?;
        }
        let resp = match self.live_applet(app) {
            Some(applet) => applet.process_data(&plain),
            None => Response::status(StatusWord::CONDITIONS_NOT_SATISFIED),
        };
        // The decrypted keys go no further than the application.
        plain.data.zeroize();
        self.sync_applet_state(app);
        Ok(resp)
    }

    /// Encrypted personalisation data in the DGI format (P1 b7-b6 = `11`, b5-b4 = `01`):
    /// whole DGIs, those in `8000`–`8FFF` encrypted under the channel's DEK (EMV CPS), are
    /// decrypted here for the application (the role of the GP API's
    /// `SecureChannel.decryptData`), with the cipher PUT KEY uses
    /// ([`scp::CardSession::decrypt_secret`]: SCP02 3DES-ECB with the session DEK, SCP03
    /// AES-CBC with the Key-DEK). Values are whole cipher blocks and no padding is removed;
    /// other DGIs pass as they are. `6A80` if a DGI is incomplete or not whole blocks.
    fn decrypt_dgis(&self, ch: usize, data: &[u8]) -> Sw<Vec<u8>> {
        let Some(Channel {
            secure: Secure::Open { session },
            ..
        }) = self.channel(ch)
        else {
            return Err(StatusWord::SECURITY_NOT_SATISFIED);
        };
        let dgis = gp::commands::parse_dgis(data).map_err(|_| StatusWord::WRONG_DATA)?;
        let mut out = Zeroizing::new(Vec::with_capacity(data.len()));
        for dgi in dgis {
            let value = if dgi.is_encrypted() {
                session
                    .decrypt_secret(&dgi.value)
                    .map_err(|_| StatusWord::WRONG_DATA)?
            } else {
                Zeroizing::new(dgi.value)
            };
            let header = gp::commands::dgi::header(dgi.id, value.len())
                .map_err(|_| StatusWord::WRONG_DATA)?;
            out.extend_from_slice(&header);
            out.extend_from_slice(&value);
        }
        Ok(out.to_vec())
    }

    fn store_sd_data(&mut self, sd: &Aid, cmd: &Command) -> Sw<Response> {
        if let Some(r) = self.store_scp11(sd, &cmd.data) {
            return r;
        }
        // The download agent's configuration (`crate::uicc::DownloadAgent`), ISD only.
        if sd.0 == crate::model::ISD_AID && cmd.p1 & 0x60 == 0 && (cmd.p1 >> 3) & 0x03 != 0x01 {
            if let Some(r) = self.store_agent_config(&cmd.data) {
                return r.map(|()| Response::ok(Vec::new()));
            }
        }
        // SCP81 administration session triggering parameters (Amendment B).
        if cmd.p1 & 0x60 == 0 && (cmd.p1 >> 3) & 0x03 != 0x01 {
            if let Some(r) = self.store_trigger(sd, &cmd.data) {
                return r.map(|()| Response::ok(Vec::new()));
            }
        }
        if cmd.p1 & 0x60 != 0 {
            // Encrypted personalisation data for the SD itself is not supported.
            return Err(StatusWord::WRONG_DATA);
        }
        let objs: Vec<(String, Vec<u8>)> = if (cmd.p1 >> 3) & 0x03 == 0x01 {
            parse_dgis(&cmd.data).ok_or(StatusWord::WRONG_DATA)?
        } else {
            tlv::parse_all(&cmd.data)
                .map_err(|_| StatusWord::WRONG_DATA)?
                .into_iter()
                .map(|t| (t.tag.to_string(), t.value))
                .collect()
        };
        if objs.iter().any(|(t, v)| t == "CF" && v.len() != 10) {
            return Err(StatusWord::WRONG_DATA);
        }
        let rec = self.state.app_mut(&sd.0).ok_or(StatusWord::UNKNOWN)?;
        let AppKind::SecurityDomain(data) = &mut rec.kind else {
            return Err(StatusWord::UNKNOWN);
        };
        for (tag, value) in objs {
            if tag == "CF" {
                data.kdd = value.clone();
            }
            data.data.insert(tag, apdu::hex(&value));
        }
        Ok(Response::ok(Vec::new()))
    }
}

/// Reads a sequence of whole DGIs (`gp::commands::dgi`); the DGI is returned as 4 hex
/// digits.
fn parse_dgis(d: &[u8]) -> Option<Vec<(String, Vec<u8>)>> {
    let dgis = gp::commands::parse_dgis(d).ok()?;
    Some(
        dgis.into_iter()
            .map(|g| (apdu::hex(&g.id.to_be_bytes()), g.value))
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use apdu::parse_hex as h;

    #[test]
    fn recognition_data_encoding() {
        // GP 2.3.1 §H.2 structure, SCP03 i=70.
        let v = card_recognition_data(0x03, 0x70, &[]);
        let expect = h(concat!(
            "06072A864886FC6B01",
            "600C060A2A864886FC6B02020301",
            "630906072A864886FC6B03",
            "640B06092A864886FC6B040370",
            "660C060A2B060104012A026E0103"
        ))
        .unwrap();
        assert_eq!(v, expect);
    }

    #[test]
    fn dgis() {
        assert_eq!(
            parse_dgis(&h("0101 02 AABB").unwrap()).unwrap(),
            vec![("0101".into(), vec![0xAA, 0xBB])]
        );
        assert!(parse_dgis(&h("0101 03 AABB").unwrap()).is_none());
        assert!(parse_dgis(&h("01").unwrap()).is_none());
        assert_eq!(
            parse_dgis(&h("8000 FF0001 11").unwrap()).unwrap()[0].1,
            vec![0x11]
        );
    }
}
