//! The OTA service (issue 12, `docs/OTA.md`): the [`SmsGateway`] the platform sends and
//! receives OTA SMS through, and [`OtaService`], which feeds MO SMS (reassembled) to
//! `tsm::ota::engine::Engine`, sends what it answers and re-sends on PoR time-outs.
//!
//! The gateway over `smpp::Esme`, the HTTP routes (`/api/v1/ota/…`) and the SCP81
//! listener come next; [`MemoryGateway`] stands in for tests.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use ota::tpdu::{self, Address, Dcs, Progress, Reassembler, UserData};
use tsm::ota::engine::{Engine, MoOutcome, Outbound};

/// One SMS to or from a card: the TP-UD with its header, and the TP-PID / TP-DCS /
/// `esm_class` an SMSC needs to carry it unchanged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sms {
    /// The card's MSISDN (international, digits).
    pub msisdn: String,
    /// TP-UD, user data header included.
    pub user_data: Vec<u8>,
    /// TP-PID (`7F`: SIM data download).
    pub pid: u8,
    /// TP-DCS (`F6`: class 2, 8-bit).
    pub dcs: u8,
    /// SMPP `esm_class` (`40`: UDHI set).
    pub esm_class: u8,
}

/// What the platform sends OTA SMS through and receives MO SMS from (an SMPP ESME in
/// production).
pub trait SmsGateway: Send + Sync {
    /// Submits one SMS (MT).
    fn submit(&self, sms: &Sms) -> Result<(), String>;
    /// The next MO SMS received, if any (delivery receipts are not returned).
    fn receive(&self) -> Option<Sms>;
}

/// An in-memory gateway: what is submitted is kept in `sent`; MO SMS are queued with
/// [`MemoryGateway::deliver`].
#[derive(Debug, Default)]
pub struct MemoryGateway {
    /// Every SMS submitted, in order.
    pub sent: Mutex<Vec<Sms>>,
    inbox: Mutex<VecDeque<Sms>>,
}

impl MemoryGateway {
    /// Queues an MO SMS.
    pub fn deliver(&self, sms: Sms) {
        if let Ok(mut q) = self.inbox.lock() {
            q.push_back(sms);
        }
    }
}

impl SmsGateway for MemoryGateway {
    fn submit(&self, sms: &Sms) -> Result<(), String> {
        self.sent
            .lock()
            .map_err(|_| "gateway poisoned".to_string())?
            .push(sms.clone());
        Ok(())
    }
    fn receive(&self) -> Option<Sms> {
        self.inbox.lock().ok()?.pop_front()
    }
}

/// The OTA service: reassembles MO SMS, runs the engine, sends through the gateway.
pub struct OtaService {
    engine: Engine,
    gateway: Arc<dyn SmsGateway>,
    reassembler: Mutex<Reassembler>,
}

impl std::fmt::Debug for OtaService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OtaService").finish_non_exhaustive()
    }
}

impl OtaService {
    /// A service over an engine and a gateway.
    pub fn new(engine: Engine, gateway: Arc<dyn SmsGateway>) -> Self {
        Self {
            engine,
            gateway,
            reassembler: Mutex::new(Reassembler::new()),
        }
    }

    /// Sends the SMS of each outbound message.
    pub fn send(&self, out: &[Outbound]) -> Result<(), String> {
        for o in out {
            for ud in &o.user_data {
                self.gateway.submit(&Sms {
                    msisdn: o.msisdn.clone(),
                    user_data: ud.clone(),
                    pid: tpdu::Pid::SIM_DATA_DOWNLOAD.0,
                    dcs: Dcs::CLASS2_8BIT.0,
                    esm_class: 0x40,
                })?;
            }
        }
        Ok(())
    }

    /// Takes one MO SMS: when it completes a packet, the engine decides and its answers
    /// are sent. Returns the engine's outcome for a complete packet, `None` while parts
    /// are missing or for SMS that are not OTA packets.
    pub fn on_sms(&self, sms: &Sms) -> Result<Option<MoOutcome>, String> {
        let ud = UserData::decode(
            sms.esm_class & 0x40 != 0,
            Dcs(sms.dcs),
            sms.user_data.len() as u8,
            &sms.user_data,
        )
        .map_err(|e| format!("MO user data: {e}"))?;
        let from = Address::international(&sms.msisdn);
        let progress = self
            .reassembler
            .lock()
            .map_err(|_| "reassembler poisoned".to_string())?
            .push(&from, &ud)
            .map_err(|e| format!("MO SMS: {e}"))?;
        let Progress::Complete { kind, packet } = progress else {
            return Ok(None);
        };
        let outcome = self
            .engine
            .on_mo(&sms.msisdn, kind, &packet)
            .map_err(|e| e.to_string())?;
        if let MoOutcome::Handled(out) = &outcome {
            self.send(out)?;
        }
        Ok(Some(outcome))
    }

    /// Handles every MO SMS waiting in the gateway.
    pub fn poll(&self) -> Vec<Result<Option<MoOutcome>, String>> {
        let mut r = Vec::new();
        while let Some(sms) = self.gateway.receive() {
            r.push(self.on_sms(&sms));
        }
        r
    }

    /// Picks up unfinished and pending sessions (after a start, or `ota push` over the
    /// database) and sends what they need.
    pub fn resume(&self) -> Result<(), String> {
        let out = self.engine.resume().map_err(|e| e.to_string())?;
        self.send(&out)
    }

    /// A PoR time-out for `session` armed at `counter`: resend or abandon.
    pub fn on_timeout(&self, session: i64, counter: u64) -> Result<(), String> {
        let out = self
            .engine
            .on_timeout(session, counter)
            .map_err(|e| e.to_string())?;
        self.send(&out)
    }
}
