//! Content management: INSTALL (GP 2.3.1 §11.5), LOAD (§11.6), DELETE (§11.2).

use apdu::{Command, Response, StatusWord};
use gp::cap::{HashAlgorithm, LoadFile};
use gp::commands::{Delete, Install, InstallParams, Load, LoadAssembler};
use gp::dm::{ReceiptContext, TokenInput};
use gp::Privileges;

use super::dm::Authority;

use super::Sw;
use crate::card::VirtualCard;
use crate::channel::LoadProcess;
use crate::model::{
    app_lc, privs, Aid, AppKind, AppRec, LoadFileRec, SdData, ISD_AID, SD_MODULE, SD_PACKAGE,
};

/// Largest load file data block accepted (the card's "free memory").
pub(crate) const MAX_LOAD_FILE: usize = 1 << 20;

/// Maps a codec error to the status word GP 2.3.1 §11.5.3.2 / §11.6.3.2 give.
fn gp_sw(e: gp::Error) -> StatusWord {
    match e {
        gp::Error::BadParameters { .. } => StatusWord::INCORRECT_P1P2,
        _ => StatusWord::WRONG_DATA,
    }
}

fn aid(a: &gp::Aid) -> Aid {
    Aid::new(a.as_bytes())
}

fn privileges(p: Privileges) -> Sw<u32> {
    let v = privs::from_bytes(&p.to_bytes()).ok_or(StatusWord::WRONG_DATA)?;
    // GP 2.3.1 §6.6.1: DAP Verification, Delegated Management, Mandated DAP only for
    // security domains; Authorized and Delegated Management exclude each other.
    if !p.is_consistent()
        || v & (privs::AUTHORIZED_MANAGEMENT | privs::DELEGATED_MANAGEMENT)
            == privs::AUTHORIZED_MANAGEMENT | privs::DELEGATED_MANAGEMENT
    {
        return Err(StatusWord::WRONG_DATA);
    }
    Ok(v)
}

impl VirtualCard {
    /// INSTALL in all its roles; answers `00`, or the confirmation with a receipt after a
    /// delegated operation (GP 2.3.1 §11.5.3.1).
    pub(super) fn install(&mut self, ch: usize, sd: &Aid, cmd: &Command) -> Sw<Response> {
        let install = Install::parse(cmd).map_err(gp_sw)?;
        let authority = match &install {
            Install::ForPersonalization { .. } => Authority::Own,
            i => self.authorise(sd, || i.token_input(), i.token())?,
        };
        let ctx = match install {
            Install::ForLoad {
                load_file,
                security_domain,
                hash,
                params,
                ..
            } => {
                self.install_for_load(
                    ch,
                    sd,
                    aid(&load_file),
                    security_domain.map(|a| aid(&a)),
                    hash,
                    &params,
                    authority,
                )?;
                // The load receipt comes with the last LOAD.
                None
            }
            Install::ForInstall {
                load_file,
                module,
                application,
                privileges: p,
                params,
                make_selectable,
                ..
            } => {
                self.install_for_install(
                    sd,
                    aid(&load_file),
                    aid(&module),
                    aid(&application),
                    privileges(p)?,
                    params,
                    make_selectable,
                    authority,
                )?;
                Some(ReceiptContext::Install {
                    load_file,
                    application,
                })
            }
            Install::ForMakeSelectable { application, .. } => {
                self.make_selectable(sd, &aid(&application))?;
                let lf = self
                    .state
                    .app(application.as_bytes())
                    .map(|a| a.load_file.0.clone())
                    .unwrap_or_default();
                Some(ReceiptContext::Install {
                    load_file: gp::Aid::new(&lf).map_err(gp_sw)?,
                    application,
                })
            }
            Install::ForExtradition {
                security_domain,
                application,
                ..
            } => {
                let from = self.owner_of(&aid(&application))?;
                self.extradite(sd, &aid(&security_domain), &aid(&application), true)?;
                Some(ReceiptContext::Extradition {
                    from: gp::Aid::new(&from.0).map_err(gp_sw)?,
                    object: application,
                    to: security_domain,
                })
            }
            Install::ForPersonalization { application } => {
                self.install_for_personalization(ch, sd, &aid(&application))?;
                None
            }
            Install::ForRegistryUpdate {
                security_domain,
                application,
                privileges: p,
                params,
                ..
            } => {
                let object = application.or(security_domain);
                let from = match &object {
                    Some(o) => self.owner_of(&aid(o)).ok(),
                    None => None,
                };
                self.registry_update(
                    sd,
                    security_domain.map(|a| aid(&a)),
                    application.map(|a| aid(&a)),
                    p,
                    &params,
                    authority,
                )?;
                match (object, from) {
                    (Some(o), Some(from)) => {
                        let from = gp::Aid::new(&from.0).map_err(gp_sw)?;
                        Some(ReceiptContext::RegistryUpdate {
                            to: security_domain.unwrap_or(from),
                            from,
                            application: o,
                            privileges: p.map(|p| p.to_bytes().to_vec()).unwrap_or_default(),
                            params,
                        })
                    }
                    _ => None,
                }
            }
        };
        let data = match ctx {
            Some(ctx) => self.confirm(sd, authority, ctx)?,
            None => vec![0x00],
        };
        Ok(Response::ok(data))
    }

    /// The security domain an application or load file is associated with.
    fn owner_of(&self, object: &Aid) -> Sw<Aid> {
        self.state
            .app(&object.0)
            .map(|a| a.sd.clone())
            .or_else(|| self.state.load_file(&object.0).map(|l| l.sd.clone()))
            .ok_or(StatusWord::REFERENCED_DATA_NOT_FOUND)
    }

    #[allow(clippy::too_many_arguments)]
    /// INSTALL [for load] (§11.5): announces the load file, its security domain and
    /// optionally the hash of its data block.
    fn install_for_load(
        &mut self,
        ch: usize,
        sd: &Aid,
        load_file: Aid,
        target: Option<Aid>,
        hash: Vec<u8>,
        params: &[u8],
        authority: Authority,
    ) -> Sw<()> {
        if authority == Authority::Own {
            return Err(StatusWord::SECURITY_NOT_SATISFIED);
        }
        if self.state.aid_in_use(&load_file.0) {
            return Err(StatusWord::CONDITIONS_NOT_SATISFIED);
        }
        let target = target.unwrap_or_else(|| sd.clone());
        if !self.usable_sd(&target.0) {
            return Err(StatusWord::REFERENCED_DATA_NOT_FOUND);
        }
        // A supplementary SD loads for itself; the ISD may associate with any SD.
        if sd.0 != ISD_AID && target != *sd {
            return Err(StatusWord::SECURITY_NOT_SATISFIED);
        }
        InstallParams::parse(params).map_err(gp_sw)?;
        if !matches!(hash.len(), 0 | 20 | 32 | 48 | 64) {
            return Err(StatusWord::WRONG_DATA);
        }
        let c = self.channel_mut(ch).ok_or(StatusWord::UNKNOWN)?;
        c.load = Some(LoadProcess {
            load_file,
            sd: target,
            hash,
            assembler: LoadAssembler::new(),
            authority,
        });
        Ok(())
    }

    /// LOAD (§11.6): blocks in sequence; after the last, the load file data block (`C4`)
    /// is checked against the announced hash, parsed as CAP components and registered.
    pub(super) fn load(&mut self, ch: usize, sd: &Aid, cmd: &Command) -> Sw<Response> {
        let load = Load::parse(cmd).map_err(gp_sw)?;
        let c = self.channel_mut(ch).ok_or(StatusWord::UNKNOWN)?;
        let Some(process) = c.load.as_mut() else {
            return Err(StatusWord::CONDITIONS_NOT_SATISFIED);
        };
        let pushed = process.assembler.push(&load);
        let too_big = process.assembler.received() > MAX_LOAD_FILE + 16;
        let structure = match pushed {
            _ if too_big => {
                c.load = None;
                return Err(StatusWord::NOT_ENOUGH_MEMORY);
            }
            Ok(None) => return Ok(Response::ok(Vec::new())),
            Ok(Some(s)) => s,
            Err(gp::Error::InvalidValue {
                field: "block number",
                ..
            }) => {
                c.load = None;
                return Err(StatusWord::INCORRECT_P1P2);
            }
            Err(_) => {
                c.load = None;
                return Err(StatusWord::WRONG_DATA);
            }
        };
        let Some(process) = c.load.take() else {
            return Err(StatusWord::UNKNOWN);
        };
        if structure.ciphered {
            // Ciphered load file data blocks (Amendment A) are not supported.
            return Err(StatusWord::WRONG_DATA);
        }
        let block = structure.data_block;
        if block.len() > MAX_LOAD_FILE {
            return Err(StatusWord::NOT_ENOUGH_MEMORY);
        }
        if !process.hash.is_empty() {
            let alg = match process.hash.len() {
                20 => HashAlgorithm::Sha1,
                32 => HashAlgorithm::Sha256,
                48 => HashAlgorithm::Sha384,
                _ => HashAlgorithm::Sha512,
            };
            if alg.digest(&block) != process.hash {
                return Err(StatusWord::WRONG_DATA);
            }
        }
        // DAP verification (GP 2.3.1 §9.2.1) before anything is registered.
        self.check_dap(&process.sd, &process.hash, &structure.dap_blocks)?;
        let lf = LoadFile::parse(&block).map_err(|_| StatusWord::WRONG_DATA)?;
        if lf.package_aid().as_bytes() != process.load_file.0 {
            return Err(StatusWord::WRONG_DATA);
        }
        if self.state.aid_in_use(&process.load_file.0) {
            return Err(StatusWord::CONDITIONS_NOT_SATISFIED);
        }
        let (major, minor) = lf.version();
        let ctx = ReceiptContext::Load {
            load_file: gp::Aid::new(&process.load_file.0).map_err(gp_sw)?,
            security_domain: gp::Aid::new(&process.sd.0).map_err(gp_sw)?,
        };
        self.state.load_files.push(LoadFileRec {
            aid: process.load_file,
            version: vec![major, minor],
            modules: lf.applet_aids().iter().map(aid).collect(),
            sd: process.sd,
            rom: false,
        });
        Ok(Response::ok(self.confirm(sd, process.authority, ctx)?))
    }

    /// INSTALL [for install] (§11.5), optionally [and make selectable]: a new
    /// application instance, or a new supplementary security domain when the module is
    /// the security domain module.
    #[allow(clippy::too_many_arguments)]
    fn install_for_install(
        &mut self,
        sd: &Aid,
        load_file: Aid,
        module: Aid,
        app: Aid,
        privileges: u32,
        params: Vec<u8>,
        make_selectable: bool,
        authority: Authority,
    ) -> Sw<()> {
        if authority == Authority::Own {
            return Err(StatusWord::SECURITY_NOT_SATISFIED);
        }
        let lf = self
            .state
            .load_file(&load_file.0)
            .ok_or(StatusWord::REFERENCED_DATA_NOT_FOUND)?;
        if !lf.modules.contains(&module) {
            return Err(StatusWord::REFERENCED_DATA_NOT_FOUND);
        }
        if self.state.aid_in_use(&app.0) {
            // One AID space for applications and load files (GP 2.3.1 §6.5.1.1).
            return Err(StatusWord::CONDITIONS_NOT_SATISFIED);
        }
        let parsed = InstallParams::parse(&params).map_err(gp_sw)?;
        if privileges & privs::CARD_RESET != 0 && !make_selectable {
            // Card Reset needs the application selectable in the same command (GP 2.3.1 §11.5).
            return Err(StatusWord::WRONG_DATA);
        }
        let is_sd_module = load_file.0 == SD_PACKAGE && module.0 == SD_MODULE;
        if is_sd_module != (privileges & privs::SECURITY_DOMAIN != 0) {
            // The SD privilege goes with the SD code and only with it.
            return Err(StatusWord::WRONG_DATA);
        }
        let life_cycle = if make_selectable {
            app_lc::SELECTABLE
        } else {
            app_lc::INSTALLED
        };
        let kind = if is_sd_module {
            let kdd = self
                .state
                .isd()
                .and_then(|a| a.sd_data())
                .map(|d| d.kdd.clone());
            AppKind::SecurityDomain(SdData {
                kdd: kdd.unwrap_or_else(|| vec![0; 10]),
                key_sets: vec![self.state.initial_keys.clone()],
                seq_counter: 1,
                data: Default::default(),
                confirmation_counter: 0,
                scp11: Default::default(),
                ota: Default::default(),
            })
        } else {
            let state = match self.factories.find(&load_file.0).cloned() {
                Some(f) => {
                    let c9 = parsed.application.clone().unwrap_or_default();
                    let applet = f.install(&module.0, &app.0, &c9)?;
                    let s = applet.state();
                    self.live.insert(app.clone(), applet);
                    Some(s)
                }
                None => None,
            };
            AppKind::Applet { state }
        };
        if privileges & privs::CARD_RESET != 0 {
            // Only one application holds Card Reset (implicit selection on the basic
            // channel, GP 2.3.1 §6.6.1).
            for a in &mut self.state.apps {
                a.privileges &= !privs::CARD_RESET;
            }
        }
        self.state.apps.push(AppRec {
            aid: app,
            load_file,
            module,
            life_cycle,
            privileges,
            sd: sd.clone(),
            install_params: params,
            implicit_selection: None,
            kind,
        });
        Ok(())
    }

    /// INSTALL [for make selectable] (§11.5): INSTALLED → SELECTABLE.
    fn make_selectable(&mut self, sd: &Aid, app: &Aid) -> Sw<()> {
        let rec = self
            .state
            .app(&app.0)
            .ok_or(StatusWord::REFERENCED_DATA_NOT_FOUND)?;
        if !self.manages(sd, &rec.sd) {
            return Err(StatusWord::SECURITY_NOT_SATISFIED);
        }
        if rec.life_cycle != app_lc::INSTALLED {
            return Err(StatusWord::CONDITIONS_NOT_SATISFIED);
        }
        if let Some(r) = self.state.app_mut(&app.0) {
            r.life_cycle = app_lc::SELECTABLE;
        }
        Ok(())
    }

    /// INSTALL [for extradition] (§11.5): associates an application, security domain
    /// or load file with another security domain. A security domain may be associated
    /// with itself: it then leaves its parent's hierarchy (GP 2.3.1 §6.4.1, §11.5.2.3.5;
    /// the way an issuer hands an SSD with Authorized Management over to its owner); an
    /// application may not (it is no security domain).
    fn extradite(&mut self, sd: &Aid, target: &Aid, object: &Aid, check_manager: bool) -> Sw<()> {
        if !self.usable_sd(&target.0) {
            return Err(StatusWord::REFERENCED_DATA_NOT_FOUND);
        }
        if let Some(rec) = self.state.app(&object.0) {
            if rec.aid.0 == ISD_AID || (object == target && !rec.is_sd()) {
                return Err(StatusWord::CONDITIONS_NOT_SATISFIED);
            }
            if check_manager && !self.manages(sd, &rec.sd) {
                return Err(StatusWord::SECURITY_NOT_SATISFIED);
            }
            if object == target {
                if let Some(r) = self.state.app_mut(&object.0) {
                    r.sd = target.clone();
                }
                return Ok(());
            }
            // No cycles: the target must not be under the object.
            let mut up = target.clone();
            for _ in 0..self.state.apps.len() {
                if up == *object {
                    return Err(StatusWord::CONDITIONS_NOT_SATISFIED);
                }
                match self.state.app(&up.0) {
                    Some(a) if a.sd != up => up = a.sd.clone(),
                    _ => break,
                }
            }
            if let Some(r) = self.state.app_mut(&object.0) {
                r.sd = target.clone();
            }
            return Ok(());
        }
        let owner = self.state.load_file(&object.0).map(|l| l.sd.clone());
        let Some(owner) = owner else {
            return Err(StatusWord::REFERENCED_DATA_NOT_FOUND);
        };
        if check_manager && !self.manages(sd, &owner) {
            return Err(StatusWord::SECURITY_NOT_SATISFIED);
        }
        if let Some(l) = self.state.load_files.iter_mut().find(|l| l.aid == *object) {
            l.sd = target.clone();
        }
        Ok(())
    }

    /// INSTALL [for personalization] (§11.5): STORE DATA on this channel goes to the
    /// application until its last block.
    fn install_for_personalization(&mut self, ch: usize, sd: &Aid, app: &Aid) -> Sw<()> {
        let rec = self
            .state
            .app(&app.0)
            .ok_or(StatusWord::REFERENCED_DATA_NOT_FOUND)?;
        if !self.manages(sd, &rec.sd) {
            return Err(StatusWord::SECURITY_NOT_SATISFIED);
        }
        if app_lc::is_locked(rec.life_cycle) {
            return Err(StatusWord::CONDITIONS_NOT_SATISFIED);
        }
        if !rec.is_sd() {
            // The target must implement personalisation (GP 2.3.1 §7.3.2; §11.5.3.2: 6A80).
            let accepts = self
                .live_applet(app)
                .is_some_and(|a| a.accepts_personalization());
            if !accepts {
                return Err(StatusWord::WRONG_DATA);
            }
        }
        let c = self.channel_mut(ch).ok_or(StatusWord::UNKNOWN)?;
        c.perso = Some(app.clone());
        Ok(())
    }

    /// INSTALL [for registry update] (§11.5), ISD only: new associated security
    /// domain, new privileges, implicit selection parameter (`CF`).
    fn registry_update(
        &mut self,
        sd: &Aid,
        new_sd: Option<Aid>,
        app: Option<Aid>,
        p: Option<Privileges>,
        params: &[u8],
        authority: Authority,
    ) -> Sw<()> {
        if sd.0 != ISD_AID && authority != Authority::Delegated {
            return Err(StatusWord::SECURITY_NOT_SATISFIED);
        }
        let object = app
            .or_else(|| new_sd.clone())
            .ok_or(StatusWord::WRONG_DATA)?;
        let rec = self
            .state
            .app(&object.0)
            .ok_or(StatusWord::REFERENCED_DATA_NOT_FOUND)?;
        if sd.0 != ISD_AID && !self.manages(sd, &rec.sd) {
            // A delegated registry update changes only what the domain manages.
            return Err(StatusWord::SECURITY_NOT_SATISFIED);
        }
        let new_privs = match p {
            Some(p) => {
                let v = privileges(p)?;
                if (v & privs::SECURITY_DOMAIN != 0) != rec.is_sd() || rec.aid.0 == ISD_AID {
                    return Err(StatusWord::WRONG_DATA);
                }
                Some(v)
            }
            None => None,
        };
        let implicit = InstallParams::parse(params)
            .map_err(gp_sw)?
            .other
            .iter()
            .find(|(t, _)| *t == apdu::tlv::Tag::new(0xCF))
            .and_then(|(_, v)| v.first().copied());
        if let Some(target) = new_sd.filter(|t| *t != object) {
            self.extradite(sd, &target, &object, false)?;
        }
        if let Some(v) = new_privs {
            if v & privs::CARD_RESET != 0 {
                for a in &mut self.state.apps {
                    a.privileges &= !privs::CARD_RESET;
                }
            }
        }
        if let Some(r) = self.state.app_mut(&object.0) {
            if let Some(v) = new_privs {
                r.privileges = v;
            }
            if implicit.is_some() {
                r.implicit_selection = implicit;
            }
        }
        Ok(())
    }

    /// DELETE (§11.2): an application, a security domain, a load file (with its
    /// applications when P2 = `80`), or keys of this security domain. Answers `00`, or the
    /// confirmation with a receipt after a delegated deletion (§11.2.3.1).
    pub(super) fn delete(&mut self, _ch: usize, sd: &Aid, cmd: &Command) -> Sw<Response> {
        // yubikit's SecurityDomainSession.delete_key sends P2 = 01 ("delete the last key
        // too") with D0/D2: read it as a key deletion.
        let mut cmd = cmd.clone();
        if cmd.p2 == 0x01 && matches!(cmd.data.first(), Some(0xD0 | 0xD2)) {
            cmd.p2 = 0x00;
        }
        let d = Delete::parse(&cmd).map_err(gp_sw)?;
        match &d {
            Delete::Object {
                aid: a, related, ..
            } => {
                let authority = self.authorise(sd, || d.token_input(), d.token())?;
                self.delete_object(sd, &aid(a), *related)?;
                let ctx = ReceiptContext::Delete { aid: *a };
                Ok(Response::ok(self.confirm(sd, authority, ctx)?))
            }
            Delete::Key { id, version } => {
                self.delete_key(sd, *id, *version)?;
                self.forget_stale_scp11(sd);
                Ok(Response::ok(vec![0x00]))
            }
        }
    }

    fn may_delete(&self, sd: &Aid, owner: &Aid) -> bool {
        self.manages(sd, owner)
            || self
                .state
                .app(&sd.0)
                .is_some_and(|a| a.has(privs::GLOBAL_DELETE))
    }

    /// Whether an application or security domain can go: not the ISD, not selected on any
    /// channel, and for a security domain nothing associated with it.
    fn deletable(&self, app: &Aid) -> Sw<()> {
        if app.0 == ISD_AID || self.is_selected_anywhere(app) {
            return Err(StatusWord::CONDITIONS_NOT_SATISFIED);
        }
        let has_children = self
            .state
            .apps
            .iter()
            .any(|a| a.sd == *app && a.aid != *app)
            || self.state.load_files.iter().any(|l| l.sd == *app);
        if has_children {
            return Err(StatusWord::CONDITIONS_NOT_SATISFIED);
        }
        Ok(())
    }

    /// Removes an application from the registry. If it held Card Reset, the ISD gets the
    /// privilege back (GP 2.3.1 §6.6.2).
    fn remove_app(&mut self, app: &Aid) {
        let had_reset = self
            .state
            .app(&app.0)
            .is_some_and(|a| a.has(privs::CARD_RESET));
        self.state.apps.retain(|a| a.aid != *app);
        self.forget_app(app);
        if had_reset {
            if let Some(isd) = self.state.app_mut(ISD_AID) {
                isd.privileges |= privs::CARD_RESET;
            }
        }
    }

    fn delete_object(&mut self, sd: &Aid, object: &Aid, related: bool) -> Sw<()> {
        if let Some(rec) = self.state.app(&object.0) {
            if !self.may_delete(sd, &rec.sd) {
                return Err(StatusWord::SECURITY_NOT_SATISFIED);
            }
            self.deletable(object)?;
            self.remove_app(object);
            return Ok(());
        }
        let Some(lf) = self.state.load_file(&object.0) else {
            return Err(StatusWord::REFERENCED_DATA_NOT_FOUND);
        };
        if lf.rom {
            return Err(StatusWord::CONDITIONS_NOT_SATISFIED);
        }
        if !self.may_delete(sd, &lf.sd) {
            return Err(StatusWord::SECURITY_NOT_SATISFIED);
        }
        let instances: Vec<Aid> = self
            .state
            .apps
            .iter()
            .filter(|a| a.load_file == *object)
            .map(|a| a.aid.clone())
            .collect();
        if !instances.is_empty() && !related {
            // GP 2.3.1 §11.2: a load file with applications goes only with them (P2 = 80).
            return Err(StatusWord::CONDITIONS_NOT_SATISFIED);
        }
        for i in &instances {
            self.deletable(i)?;
        }
        for i in &instances {
            self.remove_app(i);
        }
        self.state.load_files.retain(|l| l.aid != *object);
        Ok(())
    }

    /// Deletes keys of `sd` by identifier and/or key version number (§11.2); the last
    /// key set of a security domain cannot be deleted.
    fn delete_key(&mut self, sd: &Aid, id: Option<u8>, version: Option<u8>) -> Sw<()> {
        let data = self.sd_data_mut(sd)?;
        let mut sets = data.key_sets.clone();
        let before: usize = sets.iter().map(|s| s.keys.len()).sum();
        for s in &mut sets {
            if version.is_some_and(|v| v != s.kvn) {
                continue;
            }
            s.keys.retain(|k| id.is_some_and(|i| i != k.id));
        }
        sets.retain(|s| !s.keys.is_empty());
        let after: usize = sets.iter().map(|s| s.keys.len()).sum();
        if after == before {
            return Err(StatusWord::REFERENCED_DATA_NOT_FOUND);
        }
        if sets.is_empty() {
            return Err(StatusWord::CONDITIONS_NOT_SATISFIED);
        }
        data.key_sets = sets;
        Ok(())
    }
}
