//! GET STATUS (GP 2.3.1 §11.4) and SET STATUS (§11.10).

use apdu::{Command, Response, StatusWord};

use super::Sw;
use crate::card::VirtualCard;
use crate::channel::StatusCursor;
use crate::model::{app_lc, card_lc, privs, Aid, ISD_AID};
use gp::commands::{
    GetStatus, RegistryEntry, RegistryKind, StatusFormat, StatusPage, StatusSubset,
};
use gp::Privileges;

/// Most response bytes per GET STATUS page: with an R-MAC (8) and R-ENCRYPTION padding the
/// wrapped response still fits a short R-APDU.
const PAGE: usize = 238;

impl VirtualCard {
    /// GET STATUS (§11.4): the registry entries visible to this security domain that match
    /// the `4F` AID prefix, in the legacy or the TLV format, as many whole entries per
    /// response as fit [`PAGE`], `6310` while more remain (P2 b1 asks for the next page).
    pub(super) fn get_status(&mut self, ch: usize, sd: &Aid, cmd: &Command) -> Sw<Response> {
        let req = GetStatus::parse(cmd).map_err(|e| match e {
            gp::Error::BadParameters { .. } => StatusWord::INCORRECT_P1P2,
            _ => StatusWord::WRONG_DATA,
        })?;
        let tlv_format = req.format == StatusFormat::Tlv;
        let (req, start) = if req.next {
            match self.channel(ch).and_then(|c| c.status.clone()) {
                Some(c) if c.p1 == cmd.p1 && c.tlv == tlv_format => {
                    let first =
                        Command::new(cmd.cla, cmd.ins, cmd.p1, cmd.p2 & !1).with_data(c.data);
                    (
                        GetStatus::parse(&first).map_err(|_| StatusWord::WRONG_DATA)?,
                        c.next,
                    )
                }
                _ => return Err(StatusWord::CONDITIONS_NOT_SATISFIED),
            }
        } else {
            (req, 0)
        };
        if let Some(c) = self.channel_mut(ch) {
            c.status = None;
        }
        if req.tag_list.is_some() && !tlv_format {
            return Err(StatusWord::WRONG_DATA);
        }
        let tags = match &req.tag_list {
            Some(list) => Some(read_tag_list(list).ok_or(StatusWord::WRONG_DATA)?),
            None => None,
        };
        let entries = self.registry_entries(sd, req.subset, &req.search, tags.as_deref());
        if !entries.is_empty() && start >= entries.len() {
            return Err(StatusWord::REFERENCED_DATA_NOT_FOUND);
        }
        let page = StatusPage::build(req.subset, req.format, &entries, start, PAGE)
            .map_err(|_| StatusWord::UNKNOWN)?;
        if let Some(next) = page.next_index {
            if let Some(c) = self.channel_mut(ch) {
                let data = req.to_command().map(|c| c.data).unwrap_or_default();
                c.status = Some(StatusCursor {
                    p1: cmd.p1,
                    tlv: tlv_format,
                    data,
                    next,
                });
            }
        }
        Ok(page.response)
    }

    /// The registry entries visible to `sd`: everything for the ISD and security domains
    /// with Global Registry, else the objects associated with `sd` (and `sd` itself).
    fn registry_entries(
        &self,
        sd: &Aid,
        subset: StatusSubset,
        prefix: &[u8],
        tags: Option<&[u32]>,
    ) -> Vec<RegistryEntry> {
        let global = sd.0 == ISD_AID
            || self
                .state
                .app(&sd.0)
                .is_some_and(|a| a.has(privs::GLOBAL_REGISTRY));
        let visible = |owner: &Aid, aid: &Aid| global || owner == sd || aid == sd;
        let gp_aid = |a: &Aid| gp::Aid::new(&a.0).ok();
        let mut out = Vec::new();
        match subset {
            StatusSubset::IssuerSecurityDomain | StatusSubset::Applications => {
                let isd_wanted = subset == StatusSubset::IssuerSecurityDomain;
                for a in &self.state.apps {
                    let is_isd = a.aid.0 == ISD_AID;
                    if is_isd != isd_wanted
                        || !a.aid.0.starts_with(prefix)
                        || !visible(&a.sd, &a.aid)
                    {
                        continue;
                    }
                    let Some(id) = gp_aid(&a.aid) else { continue };
                    let kind = match (is_isd, a.is_sd()) {
                        (true, _) => RegistryKind::IssuerSecurityDomain,
                        (false, true) => RegistryKind::SecurityDomain,
                        (false, false) => RegistryKind::Application,
                    };
                    let lc = if is_isd {
                        self.state.life_cycle
                    } else {
                        a.life_cycle
                    };
                    let mut e = RegistryEntry::new(kind, id, lc);
                    e.privileges = Some(Privileges(privs::to_bytes(a.privileges)));
                    e.implicit_selection = a.implicit_selection.into_iter().collect();
                    e.load_file = gp_aid(&a.load_file);
                    e.associated_sd = gp_aid(&a.sd);
                    out.push(only_tags(e, tags));
                }
            }
            StatusSubset::LoadFiles | StatusSubset::LoadFilesAndModules => {
                for l in &self.state.load_files {
                    if !l.aid.0.starts_with(prefix) || !visible(&l.sd, &l.aid) {
                        continue;
                    }
                    let Some(id) = gp_aid(&l.aid) else { continue };
                    let mut e = RegistryEntry::new(RegistryKind::LoadFile, id, app_lc::LOADED);
                    e.version = (!l.version.is_empty()).then(|| l.version.clone());
                    if subset == StatusSubset::LoadFilesAndModules {
                        e.modules = l.modules.iter().filter_map(gp_aid).collect();
                    }
                    e.associated_sd = gp_aid(&l.sd);
                    out.push(only_tags(e, tags));
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

    /// Card life cycle transitions (GP 2.3.1 §5.1.1): OP_READY → INITIALIZED →
    /// SECURED, one step at a time and irreversible (ISD only); SECURED ↔ CARD_LOCKED (Card
    /// Lock privilege); any state but TERMINATED → TERMINATED (Card Terminate privilege).
    /// Anything else, including a transition to the current state, is `6985`.
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
            (OP_READY, INITIALIZED) | (INITIALIZED, SECURED) => sd.0 == ISD_AID,
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
    /// previous state), moves a security domain to PERSONALIZED (`0F`), or an application
    /// to an application-specific state.
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
        } else if !is_sd
            && app_lc::is_selectable(cmd.p2)
            && cmd.p2 != app_lc::SELECTABLE
            && app_lc::is_selectable(lc)
            && cmd.p2 != lc
        {
            // An application-specific state (`0xxxx111` above SELECTABLE, GP 2.3.1
            // §11.1.1 Table 11-5) from SELECTABLE or another such state, set by the
            // security domain that manages the application (§11.10.2.2): e.g. `0F` once
            // the registration of an application is complete (issue #11).
            if !self.manages(sd, &target.sd) {
                return Err(StatusWord::SECURITY_NOT_SATISFIED);
            }
            cmd.p2
        } else {
            // Anything else (back to SELECTABLE or INSTALLED, the same state again).
            return Err(StatusWord::CONDITIONS_NOT_SATISFIED);
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

/// Drops the fields whose tags are not in the `5C` tag list (`4F` and `9F70` stay).
fn only_tags(mut e: RegistryEntry, tags: Option<&[u32]>) -> RegistryEntry {
    let Some(l) = tags else { return e };
    if !l.contains(&0xC5) {
        e.privileges = None;
    }
    if !l.contains(&0xCF) {
        e.implicit_selection.clear();
    }
    if !l.contains(&0xC4) {
        e.load_file = None;
    }
    if !l.contains(&0xCE) {
        e.version = None;
    }
    if !l.contains(&0x84) {
        e.modules.clear();
    }
    if !l.contains(&0xCC) {
        e.associated_sd = None;
    }
    e
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
