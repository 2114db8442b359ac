//! Host-side channels to a card: whatever carries APDU bytes to a card and back.
//!
//! * [`CardChannel`]: the one trait every transport implements (raw bytes in and out).
//! * [`Traced`]: wraps any channel and writes `>> C-APDU` / `<< R-APDU` lines, like `gp -d`.
//! * [`pcsc::PcscChannel`] (feature `pcsc`): a reader through pcsc-lite.
//! * The in-process virtual card channel lives in the `card` crate's users (see `cardwright`).
#![forbid(unsafe_code)]
#![warn(missing_docs)]

use std::fmt;
use std::io::Write;
use std::sync::{Arc, Mutex};

/// Real readers through pcsc-lite (feature `pcsc`).
#[cfg(feature = "pcsc")]
pub mod pcsc;

/// Why an exchange with the card did not complete.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TransportError {
    /// The card left the reader (or was reset by someone else) during the exchange.
    #[error("the card was removed from the reader")]
    CardRemoved,
    /// The reader (named) holds no card.
    #[error("no card in reader '{0}'")]
    NoCard(String),
    /// No reader, or none matching (the text says which filter).
    #[error("no reader found{0}")]
    NoReader(String),
    /// The card or the link to it gave no answer.
    #[error("the card did not answer: {0}")]
    NoResponse(String),
    /// The answer is not an R-APDU.
    #[error("invalid response from the card: {0}")]
    BadResponse(#[from] apdu::Error),
    /// The PC/SC service reported an error.
    #[error("PC/SC: {0}")]
    Pcsc(String),
    /// Anything else, described.
    #[error("{0}")]
    Other(String),
}

/// A channel that carries one C-APDU to the card and returns its R-APDU.
pub trait CardChannel: Send {
    /// Sends raw C-APDU bytes; returns the raw R-APDU (data and SW1 SW2).
    fn transmit_raw(&mut self, capdu: &[u8]) -> Result<Vec<u8>, TransportError>;
    /// The card's answer-to-reset.
    fn atr(&self) -> Vec<u8>;
    /// Resets the card (warm reset): secure channels and selections are lost.
    fn reset(&mut self) -> Result<(), TransportError>;
    /// A name for messages: the reader name, or "virtual card (FILE)".
    fn name(&self) -> String;

    /// Sends one command and returns its response as the card gave it (no GET RESPONSE).
    fn transmit(&mut self, cmd: &apdu::Command) -> Result<apdu::Response, TransportError> {
        let bytes = cmd.to_bytes()?;
        let raw = self.transmit_raw(&bytes)?;
        Ok(apdu::Response::parse(&raw)?)
    }
}

impl<C: CardChannel + ?Sized> CardChannel for Box<C> {
    fn transmit_raw(&mut self, capdu: &[u8]) -> Result<Vec<u8>, TransportError> {
        (**self).transmit_raw(capdu)
    }
    fn atr(&self) -> Vec<u8> {
        (**self).atr()
    }
    fn reset(&mut self) -> Result<(), TransportError> {
        (**self).reset()
    }
    fn name(&self) -> String {
        (**self).name()
    }
}

/// A borrowed channel is a channel: run a workflow on a card without giving it away.
impl<C: CardChannel + ?Sized> CardChannel for &mut C {
    fn transmit_raw(&mut self, capdu: &[u8]) -> Result<Vec<u8>, TransportError> {
        (**self).transmit_raw(capdu)
    }
    fn atr(&self) -> Vec<u8> {
        (**self).atr()
    }
    fn reset(&mut self) -> Result<(), TransportError> {
        (**self).reset()
    }
    fn name(&self) -> String {
        (**self).name()
    }
}

/// Where trace lines go (stderr for the CLI; a buffer in tests).
pub type TraceSink = Arc<Mutex<dyn Write + Send>>;

/// Writes every exchange as it crosses the wire: `>> HEX` for the C-APDU as sent and
/// `<< HEX` for the R-APDU with its status word. [`Traced::note`] adds `# text` lines,
/// used for the plain command before secure-messaging wrapping.
pub struct Traced<C> {
    inner: C,
    sink: Option<TraceSink>,
}

impl<C> fmt::Debug for Traced<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Traced")
            .field("enabled", &self.sink.is_some())
            .finish()
    }
}

impl<C: CardChannel> Traced<C> {
    /// `sink: None` disables tracing at no cost.
    pub fn new(inner: C, sink: Option<TraceSink>) -> Self {
        Self { inner, sink }
    }
    /// Traces to standard error.
    pub fn stderr(inner: C) -> Self {
        Self::new(inner, Some(Arc::new(Mutex::new(std::io::stderr()))))
    }
    /// Whether lines are written (a sink was given).
    pub fn is_enabled(&self) -> bool {
        self.sink.is_some()
    }
    /// Writes a `# text` line when tracing.
    pub fn note(&self, text: &str) {
        self.line("#", text);
    }
    /// The wrapped channel.
    pub fn inner(&self) -> &C {
        &self.inner
    }
    /// The wrapped channel, mutably (exchanges through it are not traced).
    pub fn inner_mut(&mut self) -> &mut C {
        &mut self.inner
    }
    /// Unwraps the channel.
    pub fn into_inner(self) -> C {
        self.inner
    }
    fn line(&self, prefix: &str, text: &str) {
        if let Some(sink) = &self.sink {
            if let Ok(mut w) = sink.lock() {
                let _ = writeln!(w, "{prefix} {text}");
            }
        }
    }
}

impl<C: CardChannel> CardChannel for Traced<C> {
    fn transmit_raw(&mut self, capdu: &[u8]) -> Result<Vec<u8>, TransportError> {
        self.line(">>", &apdu::hex(capdu));
        let r = self.inner.transmit_raw(capdu);
        match &r {
            Ok(resp) => self.line("<<", &apdu::hex(resp)),
            Err(e) => self.line("<<", &format!("(error: {e})")),
        }
        r
    }
    fn atr(&self) -> Vec<u8> {
        self.inner.atr()
    }
    fn reset(&mut self) -> Result<(), TransportError> {
        self.line("#", "reset");
        self.inner.reset()
    }
    fn name(&self) -> String {
        self.inner.name()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fixed;
    impl CardChannel for Fixed {
        fn transmit_raw(&mut self, _: &[u8]) -> Result<Vec<u8>, TransportError> {
            Ok(vec![0x01, 0x90, 0x00])
        }
        fn atr(&self) -> Vec<u8> {
            vec![0x3B, 0x00]
        }
        fn reset(&mut self) -> Result<(), TransportError> {
            Ok(())
        }
        fn name(&self) -> String {
            "fixed".into()
        }
    }

    #[derive(Clone, Default)]
    struct Buf(Arc<Mutex<Vec<u8>>>);
    impl Write for Buf {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn trace_lines() {
        let buf = Buf::default();
        let mut t = Traced::new(Fixed, Some(Arc::new(Mutex::new(buf.clone()))));
        t.note("SELECT ISD");
        let r = t
            .transmit(&apdu::Command::new(0x00, 0xA4, 0x04, 0x00).with_le(256))
            .unwrap();
        assert_eq!(r.data, vec![1]);
        let text = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
        assert_eq!(text, "# SELECT ISD\n>> 00A4040000\n<< 019000\n");
    }
}
