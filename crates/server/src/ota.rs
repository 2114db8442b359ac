//! The OTA service (issue 12, `docs/OTA.md`): the [`SmsGateway`] the platform sends and
//! receives OTA SMS through, and [`OtaService`], which feeds MO SMS (reassembled) to
//! `tsm::ota::engine::Engine`, sends what it answers and re-sends on PoR time-outs.
//!
//! [`SmppGateway`] is the production gateway over `smpp::Esme` (`serve --ota --smpp …`);
//! [`MemoryGateway`] stands in for tests. With an [`HttpsBearer`] (`serve --ota-https`)
//! HTTPS sessions run through the SCP81 admin server: their scripts are queued for the
//! card's PSK identity before the triggering SMS goes, and each response the card POSTs
//! goes to the engine as it comes.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, Weak};
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

/// The SCP81 side of the OTA service: the queue of the admin server
/// (`scp81::AdminServer`, whose PSKs come from [`OtaService::psk_store`]) and the runtime
/// the sessions are followed on.
#[derive(Debug, Clone)]
pub struct HttpsBearer {
    /// The admin server's queue.
    pub queue: scp81::AdminQueue,
    /// The runtime the admin server runs on.
    pub runtime: tokio::runtime::Handle,
}

/// The OTA service: reassembles MO SMS, runs the engine, sends through the gateway.
pub struct OtaService {
    engine: Engine,
    gateway: Arc<dyn SmsGateway>,
    https: Option<HttpsBearer>,
    reassembler: Mutex<Reassembler>,
    /// PoR time-outs armed by [`OtaService::send`]: (session, counter, due).
    armed: Mutex<Vec<(i64, u64, Instant)>>,
    /// HTTPS sessions waited for: (session, trigger counter, due).
    https_waits: Mutex<Vec<(i64, u64, Instant)>>,
    /// The PSK identity each queued HTTPS session waits under.
    https_queued: Mutex<HashMap<i64, Vec<u8>>>,
    /// One engine call at a time (MO, time-outs, pending sessions, HTTPS responses).
    busy: Arc<Mutex<()>>,
    me: Weak<OtaService>,
}

impl std::fmt::Debug for OtaService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OtaService").finish_non_exhaustive()
    }
}

impl OtaService {
    /// A service over an engine and a gateway; `https`: the SCP81 admin server's queue
    /// (the engine's `EngineConfig::https` says where cards find that server).
    pub fn new(
        engine: Engine,
        gateway: Arc<dyn SmsGateway>,
        https: Option<HttpsBearer>,
    ) -> Arc<Self> {
        Arc::new_cyclic(|me| Self {
            engine,
            gateway,
            https,
            reassembler: Mutex::new(Reassembler::new()),
            armed: Mutex::new(Vec::new()),
            https_waits: Mutex::new(Vec::new()),
            https_queued: Mutex::new(HashMap::new()),
            busy: Arc::new(Mutex::new(())),
            me: me.clone(),
        })
    }

    /// The admin server's key lookup: a card's PSK by its PSK identity (its ICCID), derived
    /// from the key store. Runs inside the TLS handshake: one database read and one key
    /// derivation.
    pub fn psk_store(engine: Engine) -> Arc<dyn scp81::PskStore> {
        Arc::new(move |identity: &[u8]| engine.psk_for_identity(identity))
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
                    if tsm::ota::engine::awaits_por(&o.kind) {
                        armed.retain(|(s, _, _)| *s != session);
                        armed.push((session, counter, due));
                    }
                }
            }
        }
        // An HTTPS session's scripts wait in the admin server's queue before the trigger
        // leaves.
        for o in out.iter().filter(|o| o.kind == "trigger") {
            if let (Some(session), Some(counter)) = (o.session, o.counter) {
                self.queue_https(session, counter)?;
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

    /// Queues the scripts an HTTPS session has left for the card's PSK identity (what
    /// waited there before is withdrawn) and follows the session: each response goes to
    /// `Engine::on_https_response`, its end to `Engine::on_https_end`.
    fn queue_https(&self, session: i64, counter: u64) -> Result<(), String> {
        let https = self
            .https
            .as_ref()
            .ok_or("an HTTPS session, but serve runs without --ota-https")?;
        let work = self
            .engine
            .https_scripts(session)
            .map_err(|e| e.to_string())?;
        let steps: Vec<u32> = work.scripts.iter().map(|s| s.step).collect();
        let scripts = work
            .scripts
            .into_iter()
            .map(|s| scp81::Script::new(s.bytes, s.target))
            .collect();
        https.queue.cancel(&work.identity);
        let mut handle = https
            .queue
            .submit(&work.identity, scripts)
            .map_err(|e| format!("SCP81 queue: {e}"))?;
        if let Ok(mut q) = self.https_queued.lock() {
            q.insert(session, work.identity);
        }
        if let Ok(mut w) = self.https_waits.lock() {
            w.retain(|(s, _, _)| *s != session);
            w.push((
                session,
                counter,
                Instant::now() + self.engine.config().https_wait,
            ));
        }
        let me = self.me.clone();
        https.runtime.spawn(async move {
            while let Some(r) = handle.next_response().await {
                let Some(step) = steps.get(r.index).copied() else {
                    continue;
                };
                let me = me.clone();
                let done = tokio::task::spawn_blocking(move || {
                    let me = me.upgrade()?;
                    let _busy = me.busy.lock().ok()?;
                    Some(
                        me.engine
                            .on_https_response(session, step, r.status.as_str(), &r.body),
                    )
                })
                .await;
                match done {
                    Ok(Some(Err(e))) => tracing::warn!(session, "OTA: HTTPS response: {e}"),
                    Err(e) => tracing::error!(session, "OTA: HTTPS response task: {e}"),
                    _ => {}
                }
            }
            // Withdrawn (a new trigger queued the scripts again): nothing ended.
            let Ok(result) = handle.finished().await else {
                return;
            };
            let report = &result.report;
            tracing::info!(
                session,
                identity = report.identity.as_deref().unwrap_or("?"),
                cipher = report.cipher.as_deref().unwrap_or("?"),
                scripts = report.scripts_sent,
                outcome = ?report.outcome,
                duration_ms = report.duration.as_millis() as u64,
                "OTA: HTTPS session ended"
            );
            let outcome = format!("{:?}", report.outcome);
            let _ = tokio::task::spawn_blocking(move || {
                let Some(me) = me.upgrade() else { return };
                let out = {
                    let Ok(_busy) = me.busy.lock() else { return };
                    me.engine.on_https_end(session, None, &outcome)
                };
                match out.map_err(|e| e.to_string()).and_then(|o| me.send(&o)) {
                    Ok(()) => {}
                    Err(e) => tracing::warn!(session, "OTA: after the HTTPS session: {e}"),
                }
            })
            .await;
        });
        Ok(())
    }

    /// HTTPS sessions whose card did not connect in time ([`Engine::on_https_end`]: a
    /// new trigger or abandonment), and queues withdrawn for sessions that ended.
    fn run_https_waits(&self) -> Result<usize, String> {
        let now = Instant::now();
        let due: Vec<(i64, u64)> = {
            let mut w = self
                .https_waits
                .lock()
                .map_err(|_| "HTTPS waits poisoned".to_string())?;
            let due = w
                .iter()
                .filter(|(_, _, at)| *at <= now)
                .map(|(s, c, _)| (*s, *c))
                .collect();
            w.retain(|(_, _, at)| *at > now);
            due
        };
        let wait = self.engine.config().https_wait;
        // Only running sessions wait for their card.
        let mut running = Vec::with_capacity(due.len());
        for (session, counter) in due {
            let open = self
                .engine
                .store()
                .ota_session(session)
                .map_err(|e| e.to_string())?
                .is_some_and(|s| s.state == SessionState::Running);
            if open {
                running.push((session, counter));
            }
        }
        let due = running;
        // A card whose connection took the scripts is in session: its end decides (the
        // admin server bounds a session's length), not the wait.
        let (in_session, due): (Vec<_>, Vec<_>) = due.into_iter().partition(|(session, _)| {
            let identity = self
                .https_queued
                .lock()
                .ok()
                .and_then(|q| q.get(session).cloned());
            match (&self.https, identity) {
                (Some(h), Some(id)) => !h.queue.is_waiting(&id),
                _ => false,
            }
        });
        if !in_session.is_empty() {
            if let Ok(mut w) = self.https_waits.lock() {
                for (session, counter) in in_session {
                    w.push((session, counter, now + wait));
                }
            }
        }
        for (session, counter) in &due {
            let out = {
                let _busy = self.lock_engine()?;
                self.engine
                    .on_https_end(
                        *session,
                        Some(*counter),
                        &format!("the card did not open its HTTPS session within {wait:?}"),
                    )
                    .map_err(|e| e.to_string())?
            };
            self.send(&out)?;
        }
        // Sessions that ended (done, failed, abandoned) keep nothing queued.
        let queued: Vec<(i64, Vec<u8>)> = self
            .https_queued
            .lock()
            .map(|q| q.iter().map(|(s, i)| (*s, i.clone())).collect())
            .unwrap_or_default();
        for (session, identity) in queued {
            let open = self
                .engine
                .store()
                .ota_session(session)
                .map_err(|e| e.to_string())?
                .is_some_and(|s| s.state == SessionState::Running);
            if !open {
                if let Some(h) = &self.https {
                    h.queue.cancel(&identity);
                }
                if let Ok(mut q) = self.https_queued.lock() {
                    q.remove(&session);
                }
            }
        }
        Ok(due.len())
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
        Ok(due.len() + self.run_https_waits()?)
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
