//! The APDU bridge between the card issuer's flow and the application provider's HTTP calls.
//!
//! The card issuer's platform runs its flow (`tsm::ssd::CiPlatform::run`) in a worker thread
//! over a [`BridgeChannel`]: an ordinary [`CardChannel`] whose `transmit` hands the wrapped
//! C-APDU to whoever waits on the other end and blocks until the R-APDU comes back, or the
//! timeout passes (then a [`TransportError::NoResponse`], which the flows treat as an
//! interruption: the job stays resumable). The HTTP handler of
//! `POST /api/v1/partner/ssd-requests/{id}/exchange` holds the [`BridgeEnd`]: each call
//! delivers the last R-APDU and takes the next C-APDU ([`Step::Command`]), or learns that the
//! flow has finished with the card ([`Step::Done`]: the worker dropped its channel).
//!
//! Nothing here reads the bytes: they are wrapped end to end between the card issuer's key
//! store and the card (GP 2.3.1 §10.2, C-MAC and C-DEC).

use std::fmt;
use std::sync::mpsc as std_mpsc;
use std::time::Duration;
use tokio::sync::mpsc;
use transport::{CardChannel, TransportError};

/// What the channel side sends to the end.
#[derive(Debug)]
enum ToEnd {
    /// A C-APDU to relay.
    Command(Vec<u8>),
    /// A warm reset of the card was asked for.
    Reset,
}

/// The card side of the bridge: a [`CardChannel`] for the flow's worker thread. Its calls
/// block: never use it on an async task.
pub struct BridgeChannel {
    to_end: mpsc::UnboundedSender<ToEnd>,
    from_end: std_mpsc::Receiver<Vec<u8>>,
    timeout: Duration,
    atr: Vec<u8>,
}

impl fmt::Debug for BridgeChannel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BridgeChannel")
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

/// The relaying side of the bridge: the HTTP handler's.
pub struct BridgeEnd {
    from_channel: mpsc::UnboundedReceiver<ToEnd>,
    to_channel: std_mpsc::SyncSender<Vec<u8>>,
    /// A command was handed out and its response is owed.
    awaiting_response: bool,
}

impl fmt::Debug for BridgeEnd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BridgeEnd")
            .field("awaiting_response", &self.awaiting_response)
            .finish_non_exhaustive()
    }
}

/// What the relaying side does next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Send this C-APDU to the card and bring back its R-APDU.
    Command(Vec<u8>),
    /// The flow asked for a warm reset of the card; bring back the ATR.
    Reset,
    /// The flow is finished with the card (its channel was dropped).
    Done,
}

/// Why [`BridgeEnd::next`] could not give the next step.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BridgeError {
    /// A command is outstanding and no response was given.
    #[error("a response to the last command is owed")]
    ResponseMissing,
    /// A response was given but no command was outstanding.
    #[error("a response was given but no command is outstanding")]
    UnexpectedResponse,
    /// The flow gave no next command within the wait.
    #[error("the flow gave no next command within {0:?}")]
    Timeout(Duration),
    /// The flow stopped waiting for this response (its own timeout), so it was not delivered.
    #[error("the flow stopped waiting for the response")]
    FlowGone,
}

/// A bridge whose channel waits at most `timeout` for each response.
pub fn bridge(timeout: Duration) -> (BridgeChannel, BridgeEnd) {
    bridge_with_atr(timeout, Vec::new())
}

/// A bridge whose channel reports `atr` (the card's ATR as the relaying side knows it).
pub fn bridge_with_atr(timeout: Duration, atr: Vec<u8>) -> (BridgeChannel, BridgeEnd) {
    let (to_end, from_channel) = mpsc::unbounded_channel();
    // One response at a time: the channel sends a command only after the previous answer.
    let (to_channel, from_end) = std_mpsc::sync_channel(1);
    (
        BridgeChannel {
            to_end,
            from_end,
            timeout,
            atr,
        },
        BridgeEnd {
            from_channel,
            to_channel,
            awaiting_response: false,
        },
    )
}

impl BridgeChannel {
    fn round_trip(&mut self, message: ToEnd) -> Result<Vec<u8>, TransportError> {
        // A response left over from an exchange that timed out must not answer this one.
        while self.from_end.try_recv().is_ok() {}
        self.to_end.send(message).map_err(|_| {
            TransportError::NoResponse("the relaying platform is gone (bridge closed)".into())
        })?;
        match self.from_end.recv_timeout(self.timeout) {
            Ok(r) => Ok(r),
            Err(std_mpsc::RecvTimeoutError::Timeout) => Err(TransportError::NoResponse(format!(
                "the relaying platform brought no response within {:?}",
                self.timeout
            ))),
            Err(std_mpsc::RecvTimeoutError::Disconnected) => Err(TransportError::NoResponse(
                "the relaying platform is gone (bridge closed)".into(),
            )),
        }
    }
}

impl CardChannel for BridgeChannel {
    fn transmit_raw(&mut self, capdu: &[u8]) -> Result<Vec<u8>, TransportError> {
        let r = self.round_trip(ToEnd::Command(capdu.to_vec()))?;
        if r.len() < 2 {
            return Err(TransportError::BadResponse(apdu::Error::ResponseTooShort(
                r.len(),
            )));
        }
        Ok(r)
    }
    fn atr(&self) -> Vec<u8> {
        self.atr.clone()
    }
    fn reset(&mut self) -> Result<(), TransportError> {
        self.atr = self.round_trip(ToEnd::Reset)?;
        Ok(())
    }
    fn name(&self) -> String {
        "card relayed by the application provider's platform".into()
    }
}

impl BridgeEnd {
    /// Delivers `last_response` (the R-APDU of the last command, or the ATR after a reset;
    /// `None` before the first command) and waits up to `wait` for the next step.
    ///
    /// After an error the bridge is still usable: a [`BridgeError::Timeout`] may be retried
    /// (the response, if any, was delivered); after [`BridgeError::FlowGone`] the next call
    /// gives [`Step::Done`] or the flow's next command.
    pub async fn next(
        &mut self,
        last_response: Option<Vec<u8>>,
        wait: Duration,
    ) -> Result<Step, BridgeError> {
        match (self.awaiting_response, last_response) {
            (true, Some(r)) => {
                self.awaiting_response = false;
                if self.to_channel.try_send(r).is_err() {
                    return Err(BridgeError::FlowGone);
                }
            }
            (true, None) => return Err(BridgeError::ResponseMissing),
            (false, Some(_)) => return Err(BridgeError::UnexpectedResponse),
            (false, None) => {}
        }
        match tokio::time::timeout(wait, self.from_channel.recv()).await {
            Ok(Some(ToEnd::Command(c))) => {
                self.awaiting_response = true;
                Ok(Step::Command(c))
            }
            Ok(Some(ToEnd::Reset)) => {
                self.awaiting_response = true;
                Ok(Step::Reset)
            }
            Ok(None) => Ok(Step::Done),
            Err(_) => Err(BridgeError::Timeout(wait)),
        }
    }

    /// Whether the last step handed out still waits for its response.
    pub fn awaiting_response(&self) -> bool {
        self.awaiting_response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHORT: Duration = Duration::from_millis(200);
    const LONG: Duration = Duration::from_secs(5);

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .expect("runtime")
    }

    /// A flow of three commands relayed one by one; the end sees them in order, the flow
    /// gets each response, then the end learns the flow is done.
    #[test]
    fn relays_commands_and_responses_in_order() {
        let (mut channel, mut end) = bridge(LONG);
        let flow = std::thread::spawn(move || {
            let mut got = Vec::new();
            for c in [
                [0x00u8, 0xA4, 0x04, 0x00],
                [0x80, 0x50, 0x00, 0x00],
                [0x84, 0x82, 0x01, 0x00],
            ] {
                got.push(channel.transmit_raw(&c).expect("response"));
            }
            got
        });
        runtime().block_on(async {
            let mut last = None;
            let mut seen = Vec::new();
            loop {
                match end.next(last.take(), LONG).await.expect("step") {
                    Step::Command(c) => {
                        let mut r = vec![c[1]];
                        r.extend([0x90, 0x00]);
                        seen.push(c[1]);
                        last = Some(r);
                    }
                    Step::Reset => panic!("no reset asked"),
                    Step::Done => break,
                }
            }
            assert_eq!(seen, [0xA4, 0x50, 0x82]);
        });
        let got = flow.join().expect("flow");
        assert_eq!(
            got,
            [
                vec![0xA4, 0x90, 0x00],
                vec![0x50, 0x90, 0x00],
                vec![0x82, 0x90, 0x00]
            ]
        );
    }

    /// No response within the channel's timeout: `transmit` fails with NoResponse, and a
    /// late response is refused (the flow is gone), never handed to a later command.
    #[test]
    fn transmit_times_out_and_a_late_response_is_not_used() {
        let (mut channel, mut end) = bridge(SHORT);
        let flow = std::thread::spawn(move || {
            let first = channel.transmit_raw(&[0x00, 0xA4, 0x04, 0x00]);
            (channel, first)
        });
        let rt = runtime();
        let step = rt.block_on(end.next(None, LONG)).expect("step");
        assert_eq!(step, Step::Command(vec![0x00, 0xA4, 0x04, 0x00]));
        let (mut channel, first) = flow.join().expect("flow");
        match first {
            Err(TransportError::NoResponse(m)) => assert!(m.contains("no response within"), "{m}"),
            other => panic!("expected a timeout, got {other:?}"),
        }
        // The late response lands in the buffer; the next command must not take it.
        let late = rt.block_on(end.next(Some(vec![0x6A, 0x82]), SHORT));
        assert_eq!(late, Err(BridgeError::Timeout(SHORT)));
        let flow = std::thread::spawn(move || channel.transmit_raw(&[0x80, 0xCA, 0x00, 0x66]));
        let step = rt.block_on(end.next(None, LONG)).expect("step");
        assert_eq!(step, Step::Command(vec![0x80, 0xCA, 0x00, 0x66]));
        let step = rt
            .block_on(end.next(Some(vec![0x90, 0x00]), LONG))
            .expect("done");
        assert_eq!(step, Step::Done);
        assert_eq!(flow.join().expect("flow").expect("response"), [0x90, 0x00]);
    }

    /// The relaying end dropped: `transmit` fails at once instead of waiting out its timeout.
    #[test]
    fn dropped_end_fails_transmit_at_once() {
        let (mut channel, end) = bridge(LONG);
        drop(end);
        let start = std::time::Instant::now();
        match channel.transmit_raw(&[0x00, 0xA4, 0x04, 0x00]) {
            Err(TransportError::NoResponse(m)) => assert!(m.contains("gone"), "{m}"),
            other => panic!("expected NoResponse, got {other:?}"),
        }
        assert!(start.elapsed() < Duration::from_secs(1));
    }

    /// The end dropped while the flow waits for a response: the flow wakes with an error.
    #[test]
    fn end_dropped_while_flow_waits() {
        let (mut channel, mut end) = bridge(LONG);
        let flow = std::thread::spawn(move || channel.transmit_raw(&[0x00, 0xA4, 0x04, 0x00]));
        let rt = runtime();
        let step = rt.block_on(end.next(None, LONG)).expect("step");
        assert!(matches!(step, Step::Command(_)));
        let start = std::time::Instant::now();
        drop(end);
        assert!(matches!(
            flow.join().expect("flow"),
            Err(TransportError::NoResponse(_))
        ));
        assert!(start.elapsed() < Duration::from_secs(1));
    }

    /// The channel dropped (the flow finished or died): the end gets Done.
    #[test]
    fn dropped_channel_is_done() {
        let (channel, mut end) = bridge(LONG);
        drop(channel);
        let rt = runtime();
        assert_eq!(rt.block_on(end.next(None, SHORT)), Ok(Step::Done));
    }

    /// The end's own wait: no command within it is a Timeout, and the protocol is checked
    /// (a response owed, a response not owed).
    #[test]
    fn end_checks_wait_and_protocol() {
        let (mut channel, mut end) = bridge(LONG);
        let rt = runtime();
        assert_eq!(
            rt.block_on(end.next(Some(vec![0x90, 0x00]), SHORT)),
            Err(BridgeError::UnexpectedResponse)
        );
        assert_eq!(
            rt.block_on(end.next(None, SHORT)),
            Err(BridgeError::Timeout(SHORT))
        );
        let flow = std::thread::spawn(move || {
            let r = channel.transmit_raw(&[0x00, 0xA4, 0x04, 0x00]);
            (channel, r)
        });
        assert!(matches!(
            rt.block_on(end.next(None, LONG)),
            Ok(Step::Command(_))
        ));
        assert!(end.awaiting_response());
        assert_eq!(
            rt.block_on(end.next(None, SHORT)),
            Err(BridgeError::ResponseMissing)
        );
        // A one-byte "response" is not an R-APDU: the flow sees BadResponse.
        assert_eq!(
            rt.block_on(end.next(Some(vec![0x90]), SHORT)),
            Err(BridgeError::Timeout(SHORT))
        );
        let (_channel, r) = flow.join().expect("flow");
        assert!(matches!(r, Err(TransportError::BadResponse(_))), "{r:?}");
    }

    /// A reset goes through the bridge and brings back the new ATR.
    #[test]
    fn reset_brings_back_the_atr() {
        let (mut channel, mut end) = bridge_with_atr(LONG, vec![0x3B, 0x00]);
        assert_eq!(channel.atr(), [0x3B, 0x00]);
        let flow = std::thread::spawn(move || {
            channel.reset().expect("reset");
            channel.atr()
        });
        let rt = runtime();
        assert_eq!(rt.block_on(end.next(None, LONG)), Ok(Step::Reset));
        assert_eq!(
            rt.block_on(end.next(Some(vec![0x3B, 0x8F, 0x80]), LONG)),
            Ok(Step::Done)
        );
        assert_eq!(flow.join().expect("flow"), [0x3B, 0x8F, 0x80]);
    }
}
