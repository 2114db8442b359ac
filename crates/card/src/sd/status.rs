//! GET STATUS (GP 2.3.1 §11.4) and SET STATUS (§11.10).

use apdu::{Command, Response, StatusWord};

use super::Sw;
use crate::card::VirtualCard;
use crate::channel::StatusCursor;
use crate::model::{app_lc, card_lc, privs, Aid, AppRec, LoadFileRec, ISD_AID};
use crate::tlv;

/// Most response bytes per GET STATUS page: with an R-MAC (8) and R-ENCRYPTION padding the
/// wrapped response still fits a short R-APDU.
const PAGE: usize = 238;

/// `6310`: more data available (GP 2.3.1 §11.4.3.1).
const SW_MORE: StatusWord = StatusWord(0x6310);

/// What GET STATUS lists (P1, GP 2.3.1 Table 11-33).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Subset {
    Isd,
    Apps,
    LoadFiles,
    LoadFilesAndModules,
}

impl VirtualCard {
    pub(super) fn get_status(&mut self, ch: usize, sd: &Aid, cmd: &Command) -> Sw<Response> {
        let subset = match cmd.p1 {
            0x80 => Subset::Isd,
            0x40 => Subset::Apps,
            0x20 => Subset::LoadFiles,
            0x10 => Subset::LoadFilesAndModules,
            _ => return Err(StatusWord::INCORRECT_P1P2),
        };
        if cmd.p2 & !0x03 != 0 {
            return Err(StatusWord::INCORRECT_P1P2);
        }
        let next = cmd.p2 & 0x01 != 0;
        let tlv_format = cmd.p2 & 0x02 != 0;
        let (criteria, start) = if next {
            match self.channel(ch).and_then(|c| c.status.clone()) {
                Some(c) if c.p1 == cmd.p1 && c.tlv == tlv_format => (c.data, c.next),
                _ => return Err(StatusWord::CONDITIONS_NOT_SATISFIED),
            }
        } else {
            (cmd.data.clone(), 0)
        };
        if let Some(c) = self.channel_mut(ch) {
            c.status = None;
        }
        // Search criteria: '4F' AID (prefix match, '4F00' = all), optionally '5C' tag list.
        let objs = tlv::parse_all(&criteria).map_err(|_| StatusWord::WRONG_DATA)?;
        if objs.iter().any(|o| !matches!(o.tag, 0x4F | 0x5C)) {
            return Err(StatusWord::WRONG_DATA);
        }
        let prefix = tlv::find(&objs, 0x4F).unwrap_or(&[]);
        let tags = match tlv::find(&objs, 0x5C) {
            Some(_) if !tlv_format => return Err(StatusWord::WRONG_DATA),
            Some(list) => Some(read_tag_list(list).ok_or(StatusWord::WRONG_DATA)?),
            None => None,
        };
        let records = self.status_records(sd, subset, tlv_format, prefix, tags.as_deref());
        if records.is_empty() {
            return Err(StatusWord::REFERENCED_DATA_NOT_FOUND);
        }
        let mut out = Vec::new();
        let mut n = start;
        while let Some(r) = records.get(n) {
            if !out.is_empty() && out.len() + r.len() > PAGE {
                break;
            }
            out.extend_from_slice(r);
            n += 1;
        }
        if n < records.len() {
            if let Some(c) = self.channel_mut(ch) {
                c.status = Some(StatusCursor {
                    p1: cmd.p1,
                    tlv: tlv_format,
                    data: criteria,
                    next: n,
                });
            }
            Ok(Response::new(out, SW_MORE))
        } else if start >= records.len() {
            Err(StatusWord::REFERENCED_DATA_NOT_FOUND)
        } else {
            Ok(Response::ok(out))
        }
    }

    /// The GET STATUS records visible to `sd`: everything for the ISD and security domains
    /// with Global Registry, else the objects associated with `sd`.
    fn status_records(
        &self,
        sd: &Aid,
        subset: Subset,
        tlv_format: bool,
        prefix: &[u8],
        tags: Option<&[u32]>,
    ) -> Vec<Vec<u8>> {
        let global = sd.0 == ISD_AID
            || self
                .state
                .app(&sd.0)
                .is_some_and(|a| a.has(privs::GLOBAL_REGISTRY));
        let visible = |owner: &Aid, aid: &Aid| global || owner == sd || aid == sd;
        let mut out = Vec::new();
        match subset {
            Subset::Isd | Subset::Apps => {
                for a in &self.state.apps {
                    let is_isd = a.aid.0 == ISD_AID;
                    if is_isd != (subset == Subset::Isd)
                        || !a.aid.0.starts_with(prefix)
                        || !visible(&a.sd, &a.aid)
                    {
                        continue;
                    }
                    let lc = if is_isd {
                        self.state.life_cycle
                    } else {
                        a.life_cycle
                    };
                    out.push(if tlv_format {
                        app_record(a, lc, tags)
                    } else {
                        let mut v = vec![a.aid.0.len() as u8];
                        v.extend_from_slice(&a.aid.0);
                        v.push(lc);
                        v.push((a.privileges >> 16) as u8);
                        v
                    });
                }
            }
            Subset::LoadFiles | Subset::LoadFilesAndModules => {
                let modules = subset == Subset::LoadFilesAndModules;
                for l in &self.state.load_files {
                    if !l.aid.0.starts_with(prefix) || !visible(&l.sd, &l.aid) {
                        continue;
                    }
                    out.push(if tlv_format {
                        load_file_record(l, modules, tags)
                    } else {
                        let mut v = vec![l.aid.0.len() as u8];
                        v.extend_from_slice(&l.aid.0);
                        v.extend_from_slice(&[app_lc::LOADED, 0x00]);
                        if modules {
                            v.push(l.modules.len() as u8);
                            for m in &l.modules {
                                v.push(m.0.len() as u8);
                                v.extend_from_slice(&m.0);
                            }
                        }
                        v
                    });
                }
            }
        }
        out
    }

    /// SET STATUS (GP 2.3.1 §11.10): card life cycle (P1 `80`), an application or security
    /// domain (`40`), a security domain and its applications (`60`).
    pub(super) fn set_status(&mut self, sd: &Aid, cmd: &Command) -> Sw<Response> {
        match cmd.p1 {
            0x80 => self.set_card_status(sd, cmd)?,
            0x40 | 0x60 => self.set_app_status(sd, cmd)?,
            _ => return Err(StatusWord::INCORRECT_P1P2),
        }
        Ok(Response::ok(Vec::new()))
    }

    /// Card life cycle transitions (GP 2.3.1 §5.1.1, Figure 5-1): OP_READY → INITIALIZED →
    /// SECURED (irreversible, ISD only; OP_READY → SECURED directly is accepted),
    /// SECURED ↔ CARD_LOCKED (Card Lock privilege), any → TERMINATED (Card Terminate).
    fn set_card_status(&mut self, sd: &Aid, cmd: &Command) -> Sw<()> {
        if !(cmd.data.is_empty() || cmd.data == ISD_AID) {
            return Err(StatusWord::WRONG_DATA);
        }
        use card_lc::*;
        let cur = self.state.life_cycle;
        let next = cmd.p2;
        if !matches!(next, INITIALIZED | SECURED | CARD_LOCKED | TERMINATED) {
            return Err(StatusWord::WRONG_DATA);
        }
        let rec = self.sd_rec(sd)?;
        let allowed = match (cur, next) {
            (OP_READY, INITIALIZED | SECURED) | (INITIALIZED, SECURED) => sd.0 == ISD_AID,
            (SECURED, CARD_LOCKED) | (CARD_LOCKED, SECURED) => rec.has(privs::CARD_LOCK),
            (c, TERMINATED) if c != TERMINATED => rec.has(privs::CARD_TERMINATE),
            _ => return Err(StatusWord::CONDITIONS_NOT_SATISFIED),
        };
        if !allowed {
            return Err(StatusWord::SECURITY_NOT_SATISFIED);
        }
        self.state.life_cycle = next;
        Ok(())
    }

    /// Locks or unlocks an application (b8 of P2 set: lock; clear: unlock, restoring the
    /// previous state), or moves a security domain to PERSONALIZED (`0F`).
    fn set_app_status(&mut self, sd: &Aid, cmd: &Command) -> Sw<()> {
        if !Aid::is_valid_len(&cmd.data) {
            return Err(StatusWord::WRONG_DATA);
        }
        if cmd.data == ISD_AID {
            // The ISD's state is the card's: SET STATUS P1 = 80.
            return Err(StatusWord::CONDITIONS_NOT_SATISFIED);
        }
        let target = self
            .state
            .app(&cmd.data)
            .ok_or(StatusWord::REFERENCED_DATA_NOT_FOUND)?;
        let global_lock = self.sd_rec(sd)?.has(privs::GLOBAL_LOCK);
        if !(self.manages(sd, &target.sd) || global_lock || target.aid == *sd) {
            return Err(StatusWord::SECURITY_NOT_SATISFIED);
        }
        let is_sd = target.is_sd();
        if cmd.p1 == 0x60 && !is_sd {
            return Err(StatusWord::WRONG_DATA);
        }
        let lc = target.life_cycle;
        let new = if cmd.p2 & app_lc::LOCKED_BIT != 0 {
            if app_lc::is_locked(lc) {
                return Err(StatusWord::CONDITIONS_NOT_SATISFIED);
            }
            lc | app_lc::LOCKED_BIT
        } else if is_sd && cmd.p2 == app_lc::PERSONALIZED {
            if lc != app_lc::SELECTABLE {
                return Err(StatusWord::CONDITIONS_NOT_SATISFIED);
            }
            app_lc::PERSONALIZED
        } else if cmd.p2 == 0x00 || cmd.p2 == lc & !app_lc::LOCKED_BIT {
            if !app_lc::is_locked(lc) {
                return Err(StatusWord::CONDITIONS_NOT_SATISFIED);
            }
            lc & !app_lc::LOCKED_BIT
        } else {
            // Application-specific states are set by the application itself.
            return Err(StatusWord::WRONG_DATA);
        };
        let locking = new & app_lc::LOCKED_BIT != 0;
        let unlocking = app_lc::is_locked(lc) && !locking;
        let target_aid = Aid::new(&cmd.data);
        if let Some(a) = self.state.app_mut(&cmd.data) {
            a.life_cycle = new;
        }
        if cmd.p1 == 0x60 && (locking || unlocking) {
            for a in self
                .state
                .apps
                .iter_mut()
                .filter(|a| a.sd == target_aid && a.aid != target_aid)
            {
                a.life_cycle = if locking {
                    a.life_cycle | app_lc::LOCKED_BIT
                } else {
                    a.life_cycle & !app_lc::LOCKED_BIT
                };
            }
        }
        Ok(())
    }
}

/// Reads a '5C' tag list (concatenated BER tags).
fn read_tag_list(list: &[u8]) -> Option<Vec<u32>> {
    let mut out = Vec::new();
    let mut p = 0;
    while p < list.len() {
        let first = list[p];
        let mut tag = first as u32;
        p += 1;
        if first & 0x1F == 0x1F {
            loop {
                let b = *list.get(p)?;
                tag = (tag << 8) | b as u32;
                p += 1;
                if b & 0x80 == 0 {
                    break;
                }
                if tag > 0xFF_FFFF {
                    return None;
                }
            }
        }
        out.push(tag);
    }
    Some(out)
}

/// Wraps the objects of one registry entry in `E3`, keeping only the listed tags.
fn record(objs: Vec<(u32, Vec<u8>)>, tags: Option<&[u32]>) -> Vec<u8> {
    let mut body = Vec::new();
    for (t, v) in objs {
        if !matches!(tags, Some(l) if !l.contains(&t)) {
            body.extend(tlv::encode(t, &v));
        }
    }
    tlv::encode(0xE3, &body)
}

/// GlobalPlatform Registry Data for an application or SD (GP 2.3.1 Table 11-36).
fn app_record(a: &AppRec, lc: u8, tags: Option<&[u32]>) -> Vec<u8> {
    let mut objs = vec![
        (0x4F, a.aid.0.clone()),
        (0x9F70, vec![lc]),
        (0xC5, privs::to_bytes(a.privileges).to_vec()),
    ];
    if let Some(i) = a.implicit_selection {
        objs.push((0xCF, vec![i]));
    }
    objs.push((0xC4, a.load_file.0.clone()));
    objs.push((0xCC, a.sd.0.clone()));
    record(objs, tags)
}

/// GlobalPlatform Registry Data for an Executable Load File (and its modules).
fn load_file_record(l: &LoadFileRec, modules: bool, tags: Option<&[u32]>) -> Vec<u8> {
    let mut objs = vec![(0x4F, l.aid.0.clone()), (0x9F70, vec![app_lc::LOADED])];
    if !l.version.is_empty() {
        objs.push((0xCE, l.version.clone()));
    }
    if modules {
        objs.extend(l.modules.iter().map(|m| (0x84, m.0.clone())));
    }
    objs.push((0xCC, l.sd.0.clone()));
    record(objs, tags)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tag_lists() {
        assert_eq!(
            read_tag_list(&[0x4F, 0x9F, 0x70, 0xC5]),
            Some(vec![0x4F, 0x9F70, 0xC5])
        );
        assert_eq!(read_tag_list(&[0x9F]), None);
        assert_eq!(read_tag_list(&[]), Some(vec![]));
    }
}
