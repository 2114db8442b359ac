//! The OTA service (issue 12, `docs/OTA.md`): the [`SmsGateway`] the platform sends and
//! receives OTA SMS through, and [`OtaService`], which feeds MO SMS (reassembled) to
//! `tsm::ota::engine::Engine`, sends what it answers and re-sends on PoR time-outs.
//!
//! [`SmppGateway`] is the production gateway over `smpp::Esme` (`serve --ota --smpp …`);
//! [`MemoryGateway`] stands in for tests. The HTTP routes (`/api/v1/ota/…`) and the SCP81
//! listener come next.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ota::tpdu::{self, Address, Dcs, Progress, Reassembler, UserData};
use tsm::ota::engine::{Engine, MoOutcome, Outbound};
use tsm::ota::SessionState;

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
    /// PoR time-outs armed by [`OtaService::send`]: (session, counter, due).
    armed: Mutex<Vec<(i64, u64, Instant)>>,
    /// One engine call at a time (MO, time-outs, pending sessions).
    busy: Mutex<()>,
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
            armed: Mutex::new(Vec::new()),
            busy: Mutex::new(()),
        }
    }

    /// The engine it runs.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    fn lock_engine(&self) -> Result<std::sync::MutexGuard<'_, ()>, String> {
        self.busy
            .lock()
            .map_err(|_| "OTA service poisoned".to_string())
    }

    /// Sends the SMS of each outbound message; a command packet of a session arms its
    /// PoR time-out ([`OtaService::run_due_timeouts`]), even when the gateway failed (the
    /// time-out then resends it).
    pub fn send(&self, out: &[Outbound]) -> Result<(), String> {
        let due = Instant::now() + self.engine.config().por_timeout;
        if let Ok(mut armed) = self.armed.lock() {
            for o in out {
                if let (Some(session), Some(counter)) = (o.session, o.counter) {
                    if o.kind == "script" || o.kind == "create-sd" {
                        armed.retain(|(s, _, _)| *s != session);
                        armed.push((session, counter, due));
                    }
                }
            }
        }
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
        let _busy = self.lock_engine()?;
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
        let _busy = self.lock_engine()?;
        let out = self.engine.resume().map_err(|e| e.to_string())?;
        self.send(&out)
    }

    /// A PoR time-out for `session` armed at `counter`: resend or abandon.
    pub fn on_timeout(&self, session: i64, counter: u64) -> Result<(), String> {
        let _busy = self.lock_engine()?;
        let out = self
            .engine
            .on_timeout(session, counter)
            .map_err(|e| e.to_string())?;
        self.send(&out)
    }

    /// Runs the PoR time-outs that fell due ([`OtaService::on_timeout`] for each);
    /// returns how many ran.
    pub fn run_due_timeouts(&self) -> Result<usize, String> {
        let now = Instant::now();
        let due: Vec<(i64, u64)> = {
            let mut armed = self
                .armed
                .lock()
                .map_err(|_| "time-outs poisoned".to_string())?;
            let due = armed
                .iter()
                .filter(|(_, _, at)| *at <= now)
                .map(|(s, c, _)| (*s, *c))
                .collect();
            armed.retain(|(_, _, at)| *at > now);
            due
        };
        for (session, counter) in &due {
            tracing::info!(session, counter, "OTA: no PoR in time");
            self.on_timeout(*session, *counter)?;
        }
        Ok(due.len())
    }

    /// Starts the sessions waiting in the database as `pending` (opened by `ota push`
    /// while the server runs); returns how many were started.
    pub fn start_pending(&self) -> Result<usize, String> {
        let _busy = self.lock_engine()?;
        let pending: Vec<i64> = self
            .engine
            .store()
            .ota_open_sessions()
            .map_err(|e| e.to_string())?
            .into_iter()
            .filter(|s| s.state == SessionState::Pending)
            .map(|s| s.id)
            .collect();
        let mut out = Vec::new();
        for id in &pending {
            match self.engine.start(*id) {
                Ok(o) => out.extend(o),
                Err(e) => tracing::warn!(session = id, "OTA: cannot start the session: {e}"),
            }
        }
        self.send(&out)?;
        Ok(pending.len())
    }
}

/// The production [`SmsGateway`]: an SMPP 3.4 ESME bound to an SMSC (`smpp::Esme`, which
/// reconnects by itself with back-off). MT SMS go out as submit_sm from the platform's
/// address with esm_class `40`, PID `7F`, DCS `F6` and a delivery receipt requested; MO
/// SMS are queued by [`SmppGateway::take_inbound`] from the ESME's inbound channel
/// (receipts are logged, not queued).
///
/// [`SmsGateway::submit`] blocks on the ESME: call it outside the async runtime's worker
/// threads (`tokio::task::spawn_blocking`), as [`OtaService`] calls are.
#[derive(Debug)]
pub struct SmppGateway {
    esme: smpp::EsmeHandle,
    source: smpp::Address,
    runtime: tokio::runtime::Handle,
    submit_timeout: Duration,
    inbox: Mutex<VecDeque<Sms>>,
}

/// An SMPP address for a platform address: a leading `+` makes it international (TON 1,
/// NPI 1), otherwise it is a short code (TON 0, NPI 1) — as the card's download agent
/// codes the same address (`docs/OTA.md`).
pub fn platform_address(address: &str) -> smpp::Address {
    match address.strip_prefix('+') {
        Some(digits) => smpp::Address::international(digits),
        None => smpp::Address::new(0, 1, address),
    }
}

impl SmppGateway {
    /// A gateway over a running ESME; `platform_address` is the source address of MT SMS
    /// (where the cards' agents send their requests), `runtime` the ESME's runtime.
    pub fn new(
        esme: smpp::EsmeHandle,
        platform_address: &str,
        runtime: tokio::runtime::Handle,
    ) -> Self {
        Self {
            esme,
            source: self::platform_address(platform_address),
            runtime,
            submit_timeout: Duration::from_secs(30),
            inbox: Mutex::new(VecDeque::new()),
        }
    }

    /// The ESME's handle.
    pub fn esme(&self) -> &smpp::EsmeHandle {
        &self.esme
    }

    /// Takes one inbound message from the ESME: an MO SMS is returned (and is not queued
    /// for [`SmsGateway::receive`]); a delivery receipt is logged and gives `None`.
    pub fn take_inbound(&self, inbound: smpp::Inbound) -> Option<Sms> {
        match inbound {
            smpp::Inbound::Mo(m) => Some(Sms {
                msisdn: m.source.address.trim_start_matches('+').to_string(),
                user_data: m.user_data().to_vec(),
                pid: m.protocol_id,
                dcs: m.data_coding,
                esm_class: m.esm_class,
            }),
            smpp::Inbound::Receipt(r) => {
                tracing::info!(
                    id = r.message_id().unwrap_or("?"),
                    stat = r.stat().unwrap_or("?"),
                    "SMSC delivery receipt"
                );
                None
            }
        }
    }

    /// Queues an MO SMS for [`SmsGateway::receive`].
    pub fn queue(&self, sms: Sms) {
        if let Ok(mut q) = self.inbox.lock() {
            q.push_back(sms);
        }
    }
}

impl SmsGateway for SmppGateway {
    fn submit(&self, sms: &Sms) -> Result<(), String> {
        let mut m = smpp::ShortMessage::sim_data_download(
            self.source.clone(),
            smpp::Address::international(sms.msisdn.trim_start_matches('+')),
            sms.user_data.clone(),
        )
        .with_receipt();
        m.esm_class = sms.esm_class;
        m.protocol_id = sms.pid;
        m.data_coding = sms.dcs;
        let limit = self.submit_timeout;
        let esme = self.esme.clone();
        let r = self
            .runtime
            .block_on(async move { tokio::time::timeout(limit, esme.submit(m)).await });
        match r {
            Ok(Ok(id)) => {
                tracing::info!(msisdn = %sms.msisdn, id = %id, bytes = sms.user_data.len(), "OTA SMS submitted");
                Ok(())
            }
            Ok(Err(e)) => Err(format!("SMSC: {e}")),
            Err(_) => Err(format!("SMSC: no submit_sm_resp in {limit:?}")),
        }
    }

    fn receive(&self) -> Option<Sms> {
        self.inbox.lock().ok()?.pop_front()
    }
}

#[cfg(test)]
mod tests {
    use super::platform_address;

    #[test]
    fn platform_addresses_are_international_with_plus_else_short_codes() {
        assert_eq!(
            platform_address("+4900"),
            smpp::Address::international("4900")
        );
        assert_eq!(platform_address("4900"), smpp::Address::new(0, 1, "4900"));
    }
}
