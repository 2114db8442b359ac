//! A virtual ICC as seen by vsmartcard's `vpcd` driver for pcscd.
//!
//! `vpcd` (Debian `vsmartcard-vpcd`) is a pcscd reader driver that listens on TCP
//! (port 35963 for "Virtual PCD 00 00", 35964 for "… 00 01") and waits for a virtual
//! card to connect. Every frame in both directions is a 2-byte big-endian length followed
//! by that many bytes. A 1-byte frame from vpcd is a control code:
//! `00` power off, `01` power on, `02` reset, `04` send the ATR (answered with an ATR frame).
//! Any longer frame is a C-APDU, answered with the R-APDU.
//!
//! [`serve`] connects to vpcd, answers it until the connection drops, and reconnects
//! (pcscd restarts, vpcd reloads) until told to stop.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

use std::io::{self, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// The card behind the reader.
pub trait Icc {
    /// The answer-to-reset, ISO/IEC 7816-3 §8.
    fn atr(&mut self) -> Vec<u8>;
    /// Power on or warm reset: transient state (sessions, selections) is dropped.
    fn reset(&mut self);
    /// Power off.
    fn power_off(&mut self) {
        self.reset()
    }
    /// One C-APDU in, the complete R-APDU out.
    fn transmit(&mut self, apdu: &[u8]) -> Vec<u8>;
}

/// vpcd control codes (vsmartcard `vpcd.h`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Control {
    /// `00`: power off.
    PowerOff,
    /// `01`: power on.
    PowerOn,
    /// `02`: reset.
    Reset,
    /// `04`: send the ATR.
    GetAtr,
}

/// One frame received from vpcd.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// A 1-byte control code.
    Control(Control),
    /// A C-APDU for the card.
    Apdu(Vec<u8>),
}

/// What went wrong talking to vpcd.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The TCP connection failed.
    #[error("vpcd connection: {0}")]
    Io(#[from] io::Error),
    /// A control code vsmartcard does not define.
    #[error("vpcd sent an unknown control code {0:#04x}")]
    UnknownControl(u8),
    /// A frame of length 0.
    #[error("vpcd sent an empty frame")]
    EmptyFrame,
}

impl Frame {
    /// Decodes a frame payload (the bytes after the length prefix).
    pub fn decode(payload: &[u8]) -> Result<Frame, Error> {
        match payload {
            [] => Err(Error::EmptyFrame),
            [c] => Ok(Frame::Control(match c {
                0 => Control::PowerOff,
                1 => Control::PowerOn,
                2 => Control::Reset,
                4 => Control::GetAtr,
                other => return Err(Error::UnknownControl(*other)),
            })),
            apdu => Ok(Frame::Apdu(apdu.to_vec())),
        }
    }
}

/// Reads one length-prefixed frame; `Ok(None)` on a clean end of stream.
pub fn read_frame(r: &mut impl Read) -> Result<Option<Vec<u8>>, Error> {
    let mut len = [0u8; 2];
    match r.read_exact(&mut len) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e.into()),
    }
    let mut buf = vec![0u8; u16::from_be_bytes(len) as usize];
    r.read_exact(&mut buf)?;
    Ok(Some(buf))
}

/// Writes one length-prefixed frame.
pub fn write_frame(w: &mut impl Write, payload: &[u8]) -> Result<(), Error> {
    let len = u16::try_from(payload.len())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "frame over 65535 bytes"))?;
    let mut out = Vec::with_capacity(payload.len() + 2);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(payload);
    w.write_all(&out)?;
    w.flush()?;
    Ok(())
}

/// Answers vpcd on one established connection until it closes.
pub fn run_connection(stream: &mut (impl Read + Write), icc: &mut impl Icc) -> Result<(), Error> {
    run_connection_with(stream, icc, |_| {})
}

/// [`run_connection`], calling `before_read` before each frame is awaited.
fn run_connection_with<S: Read + Write>(
    stream: &mut S,
    icc: &mut impl Icc,
    before_read: impl Fn(&S),
) -> Result<(), Error> {
    loop {
        before_read(stream);
        let Some(payload) = read_frame(stream)? else {
            break;
        };
        match Frame::decode(&payload)? {
            Frame::Control(Control::PowerOff) => icc.power_off(),
            Frame::Control(Control::PowerOn) | Frame::Control(Control::Reset) => icc.reset(),
            Frame::Control(Control::GetAtr) => {
                let atr = icc.atr();
                write_frame(stream, &atr)?
            }
            Frame::Apdu(apdu) => {
                let rapdu = icc.transmit(&apdu);
                write_frame(stream, &rapdu)?
            }
        }
    }
    Ok(())
}

/// Connects to vpcd at `addr` and serves `icc`, reconnecting every `retry` after the
/// connection fails or closes, until `stop` is set. Connection events go to `tracing`.
pub fn serve(
    addr: impl ToSocketAddrs + Copy + std::fmt::Debug,
    icc: &mut impl Icc,
    retry: Duration,
    stop: &AtomicBool,
) -> Result<(), Error> {
    let mut was_connected = true;
    while !stop.load(Ordering::Relaxed) {
        match TcpStream::connect(addr) {
            Ok(mut stream) => {
                stream.set_nodelay(true)?;
                was_connected = true;
                if !await_first_contact(&stream, &addr, FIRST_CONTACT)? {
                    tracing::info!(
                        "vpcd closed the connection before using the card; reconnecting"
                    );
                    std::thread::sleep(retry);
                    continue;
                }
                // vpcd writes a frame's length and its payload in two send() calls; with
                // Nagle on its side, the payload waits for our ACK of the length, which
                // Linux delays by up to 40 ms. Acknowledge at once instead.
                match run_connection_with(&mut stream, icc, quick_ack) {
                    Ok(()) => tracing::info!("vpcd closed the connection; reconnecting"),
                    Err(e) => tracing::warn!("vpcd connection lost: {e}; reconnecting"),
                }
                icc.power_off();
            }
            Err(e) => {
                if was_connected {
                    tracing::info!(?addr, "waiting for vpcd ({e})");
                    was_connected = false;
                }
            }
        }
        std::thread::sleep(retry);
    }
    Ok(())
}

/// How long vpcd may stay silent after accepting a card. pcscd polls a reader for its card
/// every 400 ms (pcsc-lite `PCSCLITE_STATUS_POLL_RATE`), and vpcd's presence check asks
/// the card for its ATR, so a card in the reader hears from vpcd well within this.
pub const FIRST_CONTACT: Duration = Duration::from_secs(3);

/// Waits for vpcd's first frame on a new connection without consuming it; returns `false`
/// if vpcd closed the connection first.
///
/// vpcd serves one card per port: while a card is in the reader it accepts no other
/// (vsmartcard `vpcd.c`, `vicc_connect`), but the kernel still completes a second card's
/// TCP connection in the listen backlog. Such a card would wait unseen while commands go to
/// the first one, so after `patience` without a word from vpcd this says so, and keeps
/// waiting: the card enters the reader when the other one leaves.
fn await_first_contact(
    stream: &TcpStream,
    addr: &impl std::fmt::Debug,
    patience: Duration,
) -> Result<bool, Error> {
    let mut byte = [0u8; 1];
    stream.set_read_timeout(Some(patience))?;
    let first = stream.peek(&mut byte);
    stream.set_read_timeout(None)?;
    let n = match first {
        Ok(n) => n,
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
            ) =>
        {
            tracing::warn!(
                ?addr,
                "connected to vpcd, but the reader has not talked to this card for {} s: \
                 another card is most likely in this reader (vpcd takes one card per port), \
                 and commands go to that card. This card waits until it leaves; stop the \
                 other card, or use another port (35963 is reader 00 00, 35964 is 00 01)",
                patience.as_secs()
            );
            stream.peek(&mut byte)?
        }
        Err(e) => return Err(e.into()),
    };
    if n > 0 {
        tracing::info!(?addr, "connected to vpcd: the card is in the reader");
    }
    Ok(n > 0)
}

#[cfg(any(target_os = "linux", target_os = "android"))]
fn quick_ack(stream: &TcpStream) {
    // TCP_QUICKACK is reset by the kernel after use, so it is set before every read.
    let _ = socket2::SockRef::from(stream).set_tcp_quickack(true);
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn quick_ack(_stream: &TcpStream) {}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    struct Echo {
        resets: usize,
    }
    impl Icc for Echo {
        fn atr(&mut self) -> Vec<u8> {
            vec![0x3B, 0x00]
        }
        fn reset(&mut self) {
            self.resets += 1;
        }
        fn transmit(&mut self, apdu: &[u8]) -> Vec<u8> {
            let mut r = apdu.to_vec();
            r.extend_from_slice(&[0x90, 0x00]);
            r
        }
    }

    /// A duplex stream over a scripted input and a captured output.
    struct Duplex {
        input: Cursor<Vec<u8>>,
        output: Vec<u8>,
    }
    impl Read for Duplex {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            self.input.read(buf)
        }
    }
    impl Write for Duplex {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.output.write(buf)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn answers_controls_and_apdus() {
        let mut input = Vec::new();
        for frame in [&[1u8][..], &[4], &[0x00, 0xA4, 0x04, 0x00], &[2], &[0]] {
            write_frame(&mut input, frame).unwrap();
        }
        let mut io = Duplex {
            input: Cursor::new(input),
            output: Vec::new(),
        };
        let mut icc = Echo { resets: 0 };
        run_connection(&mut io, &mut icc).unwrap();
        assert_eq!(
            io.output,
            [
                &[0, 2, 0x3B, 0][..],
                &[0, 6, 0x00, 0xA4, 0x04, 0x00, 0x90, 0x00]
            ]
            .concat()
        );
        assert_eq!(icc.resets, 3);
    }

    #[test]
    fn first_contact_waits_for_vpcd_to_speak() {
        use std::net::TcpListener;
        // vpcd speaks at once: the card is in the reader; the frame is left for the loop.
        let vpcd = TcpListener::bind("127.0.0.1:0").unwrap();
        let card = TcpStream::connect(vpcd.local_addr().unwrap()).unwrap();
        let (mut server, _) = vpcd.accept().unwrap();
        write_frame(&mut server, &[4]).unwrap();
        assert!(await_first_contact(&card, &"vpcd", Duration::from_secs(5)).unwrap());
        assert_eq!(read_frame(&mut &card).unwrap(), Some(vec![4]));
        // vpcd is busy with another card and speaks only later: still connected.
        let card = TcpStream::connect(vpcd.local_addr().unwrap()).unwrap();
        let (mut server, _) = vpcd.accept().unwrap();
        let later = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(300));
            write_frame(&mut server, &[1]).unwrap();
            server
        });
        assert!(await_first_contact(&card, &"vpcd", Duration::from_millis(50)).unwrap());
        drop(later.join().unwrap());
        // vpcd closes the connection without a word.
        let card = TcpStream::connect(vpcd.local_addr().unwrap()).unwrap();
        drop(vpcd.accept().unwrap());
        assert!(!await_first_contact(&card, &"vpcd", Duration::from_secs(5)).unwrap());
    }

    #[test]
    fn rejects_unknown_control_and_truncation() {
        assert!(matches!(Frame::decode(&[9]), Err(Error::UnknownControl(9))));
        let mut truncated = Cursor::new(vec![0u8, 5, 1, 2]);
        assert!(read_frame(&mut truncated).is_err());
        assert!(read_frame(&mut Cursor::new(Vec::new())).unwrap().is_none());
    }
}
