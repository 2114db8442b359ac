//! The handset's Bearer Independent Protocol relay (ETSI TS 102 223 §6.4.27–31, §7.5.10–11):
//! the card's OPEN CHANNEL becomes a TCP connection, SEND DATA writes to it, the bytes the
//! peer sends wait in the Rx buffer until the card reads them with RECEIVE DATA (announced
//! by ENVELOPE event download "data available"), and the peer closing the connection is an
//! ENVELOPE "channel status" (link dropped). One channel at a time, channel 1.
//!
//! The socket is read by a thread of its own, which hands what it read to the card thread
//! as a [`BipEvent`] (through the same queue as SMS and menu requests), so the card still
//! sees one APDU at a time.

use std::collections::VecDeque;
use std::io::{Read, Write};
use std::net::{IpAddr, Shutdown, SocketAddr, TcpStream};
use std::sync::mpsc::Sender;
use std::time::Duration;

use ota::cat::{
    self, CatResult, ChannelStatus, CommandBody, Device, Envelope, Event, OpenChannel,
    OtherAddress, ProactiveCommand, ResultCode, TerminalResponse,
};

use crate::handset_phone::Request;

/// The channel this handset hands out (one at a time).
pub const CHANNEL_ID: u8 = 1;
/// How long connecting and writing may take.
const NET_TIMEOUT: Duration = Duration::from_secs(10);
/// TS 102 223 §8.12.13, BIP error additional information: no channel available.
const NO_CHANNEL_AVAILABLE: u8 = 0x01;
/// … channel closed.
const CHANNEL_CLOSED: u8 = 0x02;
/// … channel identifier not valid.
const CHANNEL_ID_NOT_VALID: u8 = 0x03;
/// … requested UICC/terminal interface transport level not available.
const TRANSPORT_NOT_AVAILABLE: u8 = 0x06;
/// Channel status further information (§8.56): link dropped.
const LINK_DROPPED: u8 = 0x05;

/// What the socket's reader thread saw.
#[derive(Debug)]
pub enum BipEvent {
    /// Bytes from the peer.
    Data {
        /// The connection they came on (a closed one's are dropped).
        connection: u64,
        /// The bytes.
        bytes: Vec<u8>,
    },
    /// The peer closed the connection (or it failed).
    Closed {
        /// The connection.
        connection: u64,
    },
}

struct Channel {
    connection: u64,
    stream: TcpStream,
    peer: SocketAddr,
    buffer_size: u16,
    tx: Vec<u8>,
    rx: VecDeque<u8>,
    /// The card was told about the bytes in `rx` (data available sent).
    announced: bool,
    /// The peer closed; the card is told once `rx` is empty.
    peer_closed: bool,
    /// The link drop was reported.
    drop_reported: bool,
    sent: usize,
    received: usize,
}

/// The BIP state of the handset: the events the card asked for and the open channel.
pub struct Bip {
    wake: Sender<Request>,
    data_available: bool,
    channel_status: bool,
    channel: Option<Channel>,
    connections: u64,
}

/// A channel data length object's value: the count, `FF` for more than 255.
fn length_byte(n: usize) -> u8 {
    u8::try_from(n).unwrap_or(0xFF)
}

fn bip_error(info: u8) -> CatResult {
    CatResult::new(ResultCode::BIP_ERROR, vec![info])
}

impl Bip {
    /// No channel, no events; the socket's reader threads report through `wake`.
    pub fn new(wake: Sender<Request>) -> Self {
        Self {
            wake,
            data_available: false,
            channel_status: false,
            channel: None,
            connections: 0,
        }
    }

    /// Whether `cmd` is one this relay carries out (SET UP EVENT LIST and the BIP commands).
    pub fn handles(cmd: &ProactiveCommand) -> bool {
        matches!(
            cmd.body,
            CommandBody::OpenChannel(_)
                | CommandBody::SendData(_)
                | CommandBody::ReceiveData(_)
                | CommandBody::CloseChannel(_)
        ) || cmd.body.type_of_command() == cat::command_type::SET_UP_EVENT_LIST
    }

    /// Carries out one of the commands [`Bip::handles`]; its TERMINAL RESPONSE.
    pub fn command(&mut self, cmd: &ProactiveCommand) -> TerminalResponse {
        let mut tr = TerminalResponse::new(cmd, CatResult::success());
        match &cmd.body {
            CommandBody::OpenChannel(o) => self.open(o, &mut tr),
            CommandBody::SendData(d) => {
                let immediate = cmd.qualifier & 0x01 != 0;
                tr.result = match self.channel_for(cmd) {
                    Err(r) => r,
                    Ok(ch) => match send(ch, &d.data, immediate) {
                        Ok(free) => {
                            tr.channel_data_length = Some(length_byte(free));
                            CatResult::success()
                        }
                        Err(r) => r,
                    },
                };
            }
            CommandBody::ReceiveData(r) => {
                tr.result = match self.channel_for(cmd) {
                    Err(e) => e,
                    Ok(ch) => {
                        let n = usize::from(r.length).min(ch.rx.len());
                        let data: Vec<u8> = ch.rx.drain(..n).collect();
                        ch.received += n;
                        if ch.rx.is_empty() {
                            ch.announced = false;
                        }
                        tr.channel_data = Some(data);
                        tr.channel_data_length = Some(length_byte(ch.rx.len()));
                        if n < usize::from(r.length) {
                            // §6.4.29: fewer bytes than asked for.
                            CatResult::new(ResultCode::MISSING_INFORMATION, vec![])
                        } else {
                            CatResult::success()
                        }
                    }
                };
            }
            CommandBody::CloseChannel(_) => {
                tr.result = match self.channel_for(cmd) {
                    Err(e) => e,
                    Ok(_) => {
                        self.close("closed by the card");
                        CatResult::success()
                    }
                };
            }
            CommandBody::Unknown { objects, .. } => {
                let list = objects
                    .iter()
                    .find(|o| o.tag.value == cat::tag::EVENT_LIST)
                    .map(|o| o.value.as_slice())
                    .unwrap_or_default();
                self.data_available = list.contains(&cat::event::DATA_AVAILABLE);
                self.channel_status = list.contains(&cat::event::CHANNEL_STATUS);
                tracing::info!(
                    "BIP: event list: data available {}, channel status {}",
                    if self.data_available { "on" } else { "off" },
                    if self.channel_status { "on" } else { "off" }
                );
            }
            _ => tr.result = CatResult::new(ResultCode::BEYOND_CAPABILITIES, vec![]),
        }
        tr
    }

    /// The open channel, if `cmd` is addressed to it.
    fn channel_for(&mut self, cmd: &ProactiveCommand) -> Result<&mut Channel, CatResult> {
        if cmd.devices.destination != Device::Channel(CHANNEL_ID) {
            return Err(bip_error(CHANNEL_ID_NOT_VALID));
        }
        self.channel
            .as_mut()
            .ok_or_else(|| bip_error(CHANNEL_CLOSED))
    }

    fn open(&mut self, o: &OpenChannel, tr: &mut TerminalResponse) {
        tr.bearer = Some(o.bearer.clone());
        tr.buffer_size = Some(o.buffer_size);
        if self.channel.is_some() {
            tracing::warn!("BIP: OPEN CHANNEL while channel {CHANNEL_ID} is open: refused");
            tr.result = bip_error(NO_CHANNEL_AVAILABLE);
            return;
        }
        let tcp = o
            .transport
            .filter(|t| t.protocol == cat::transport_protocol::TCP_CLIENT_REMOTE);
        let ip = match &o.destination {
            Some(OtherAddress::Ipv4(a)) => Some(IpAddr::V4(*a)),
            Some(OtherAddress::Ipv6(a)) => Some(IpAddr::V6(*a)),
            _ => None,
        };
        let (Some(port), Some(ip)) = (tcp.and_then(|t| t.port), ip) else {
            tracing::warn!(
                "BIP: OPEN CHANNEL: only TCP client (remote) to an IP address is relayed"
            );
            tr.result = bip_error(TRANSPORT_NOT_AVAILABLE);
            return;
        };
        let peer = SocketAddr::new(ip, port);
        let stream = match TcpStream::connect_timeout(&peer, NET_TIMEOUT) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!("BIP: OPEN CHANNEL: connecting to {peer}: {e}");
                tr.result = CatResult::new(ResultCode::NETWORK_UNABLE, vec![0x00]);
                tr.channel_status = Some(ChannelStatus::new(CHANNEL_ID, false, 0));
                return;
            }
        };
        let _ = stream.set_nodelay(true);
        let _ = stream.set_write_timeout(Some(NET_TIMEOUT));
        let reader = match stream.try_clone() {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!("BIP: OPEN CHANNEL: {e}");
                tr.result = CatResult::new(ResultCode::TERMINAL_UNABLE, vec![0x00]);
                return;
            }
        };
        self.connections += 1;
        let connection = self.connections;
        let wake = self.wake.clone();
        let spawned = std::thread::Builder::new()
            .name("handset-bip".into())
            .spawn(move || read_socket(reader, connection, wake));
        if let Err(e) = spawned {
            tracing::warn!("BIP: OPEN CHANNEL: reader thread: {e}");
            tr.result = CatResult::new(ResultCode::TERMINAL_UNABLE, vec![0x00]);
            return;
        }
        tracing::info!(
            "BIP: channel {CHANNEL_ID} open: TCP to {peer} (buffer {})",
            o.buffer_size
        );
        self.channel = Some(Channel {
            connection,
            stream,
            peer,
            buffer_size: o.buffer_size,
            tx: Vec::new(),
            rx: VecDeque::new(),
            announced: false,
            peer_closed: false,
            drop_reported: false,
            sent: 0,
            received: 0,
        });
        tr.channel_status = Some(ChannelStatus::new(CHANNEL_ID, true, 0));
    }

    /// Closes the channel (if open).
    pub fn close(&mut self, why: &str) {
        if let Some(ch) = self.channel.take() {
            let _ = ch.stream.shutdown(Shutdown::Both);
            tracing::info!(
                "BIP: channel {CHANNEL_ID} to {} {why} ({} bytes sent, {} received)",
                ch.peer,
                ch.sent,
                ch.received
            );
        }
    }

    /// Takes what the socket's reader saw.
    pub fn event(&mut self, ev: BipEvent) {
        let Some(ch) = self.channel.as_mut() else {
            return;
        };
        match ev {
            BipEvent::Data { connection, bytes } if connection == ch.connection => {
                ch.rx.extend(bytes);
            }
            BipEvent::Closed { connection } if connection == ch.connection => {
                if !ch.peer_closed {
                    tracing::info!("BIP: {} closed the connection", ch.peer);
                }
                ch.peer_closed = true;
            }
            _ => {}
        }
    }

    /// The next ENVELOPE the card is owed: data available (bytes wait, not yet announced),
    /// else channel status link dropped (the peer closed and everything was read). Only
    /// events the card asked for with SET UP EVENT LIST.
    pub fn next_envelope(&mut self) -> Option<Envelope> {
        let ch = self.channel.as_mut()?;
        if !ch.rx.is_empty() && !ch.announced {
            ch.announced = true;
            if self.data_available {
                return Some(Envelope::EventDownload(Event::DataAvailable {
                    status: ChannelStatus::new(CHANNEL_ID, !ch.peer_closed, 0),
                    length: length_byte(ch.rx.len()),
                }));
            }
        }
        if ch.peer_closed && ch.rx.is_empty() && !ch.drop_reported {
            ch.drop_reported = true;
            if self.channel_status {
                return Some(Envelope::EventDownload(Event::ChannelStatus {
                    status: ChannelStatus::new(CHANNEL_ID, false, LINK_DROPPED),
                    other: Vec::new(),
                }));
            }
        }
        None
    }
}

/// SEND DATA: stores `data` in the Tx buffer and, when `immediate`, writes the buffer out.
/// The free space left in the Tx buffer.
fn send(ch: &mut Channel, data: &[u8], immediate: bool) -> Result<usize, CatResult> {
    let size = usize::from(ch.buffer_size);
    if ch.tx.len() + data.len() > size {
        // §6.4.30: more than the buffer holds.
        return Err(bip_error(0x00));
    }
    ch.tx.extend_from_slice(data);
    if immediate {
        if ch.peer_closed {
            return Err(bip_error(CHANNEL_CLOSED));
        }
        if let Err(e) = ch.stream.write_all(&ch.tx) {
            tracing::warn!("BIP: sending to {}: {e}", ch.peer);
            ch.tx.clear();
            return Err(bip_error(CHANNEL_CLOSED));
        }
        ch.sent += ch.tx.len();
        ch.tx.clear();
    }
    Ok(size - ch.tx.len())
}

/// The reader thread: everything the peer sends, then its close, to the card thread.
fn read_socket(mut stream: TcpStream, connection: u64, wake: Sender<Request>) {
    let mut buf = vec![0u8; 4096];
    loop {
        let ev = match stream.read(&mut buf) {
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Ok(0) | Err(_) => BipEvent::Closed { connection },
            Ok(n) => BipEvent::Data {
                connection,
                bytes: buf[..n].to_vec(),
            },
        };
        let last = matches!(ev, BipEvent::Closed { .. });
        if wake.send(Request::Bip(ev)).is_err() || last {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ota::cat::{
        BearerDescription, CloseChannel, Ctlv, DeviceIdentities, ReceiveData, SendData,
        TransportLevel,
    };

    fn cmd(qualifier: u8, to: Device, body: CommandBody) -> ProactiveCommand {
        ProactiveCommand {
            number: 1,
            qualifier,
            devices: DeviceIdentities::new(Device::Uicc, to),
            body,
        }
    }

    fn open(port: u16) -> ProactiveCommand {
        cmd(
            0x01,
            Device::Terminal,
            CommandBody::OpenChannel(Box::new(OpenChannel {
                alpha: None,
                bearer: BearerDescription::default_bearer(),
                buffer_size: 300,
                network_access_name: None,
                local_address: None,
                login: None,
                password: None,
                transport: Some(TransportLevel::tcp_client(port)),
                destination: Some(OtherAddress::Ipv4([127, 0, 0, 1].into())),
                other: Vec::new(),
            })),
        )
    }

    fn events(list: &[u8]) -> ProactiveCommand {
        cmd(
            0,
            Device::Terminal,
            CommandBody::Unknown {
                type_of_command: cat::command_type::SET_UP_EVENT_LIST,
                objects: vec![Ctlv::required(cat::tag::EVENT_LIST, list.to_vec())],
            },
        )
    }

    #[test]
    fn one_channel_relayed_both_ways() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let (wake, requests) = std::sync::mpsc::channel();
        let mut bip = Bip::new(wake);
        assert!(bip
            .command(&events(&[0x09, 0x0A]))
            .result
            .general
            .is_success());

        let tr = bip.command(&open(port));
        assert!(tr.result.general.is_success());
        assert_eq!(tr.channel_status, Some(ChannelStatus::new(1, true, 0)));
        assert_eq!(tr.buffer_size, Some(300));
        let (mut peer, _) = listener.accept().unwrap();
        // A second channel: BIP error, no channel available.
        let again = bip.command(&open(port));
        assert_eq!(again.result, bip_error(NO_CHANNEL_AVAILABLE));

        // SEND DATA: stored (qualifier 00), then sent (01); free space in the Tx buffer.
        let send = |q: u8, to: u8, data: &[u8]| {
            cmd(
                q,
                Device::Channel(to),
                CommandBody::SendData(SendData {
                    alpha: None,
                    data: data.to_vec(),
                    other: Vec::new(),
                }),
            )
        };
        let tr = bip.command(&send(0, 1, b"hel"));
        assert_eq!(tr.channel_data_length, Some(0xFF), "297 free");
        assert_eq!(
            bip.command(&send(0, 2, b"x")).result,
            bip_error(CHANNEL_ID_NOT_VALID)
        );
        let tr = bip.command(&send(1, 1, b"lo"));
        assert!(tr.result.general.is_success());
        let mut got = [0u8; 5];
        peer.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"hello");

        // The peer answers: data available, RECEIVE DATA, then its close: link dropped.
        peer.write_all(&[7u8; 300]).unwrap();
        drop(peer);
        let mut closed = false;
        while !closed {
            let Ok(Request::Bip(ev)) = requests.recv_timeout(Duration::from_secs(5)) else {
                panic!("no BIP event")
            };
            closed = matches!(ev, BipEvent::Closed { .. });
            bip.event(ev);
        }
        let Some(Envelope::EventDownload(Event::DataAvailable { length, .. })) =
            bip.next_envelope()
        else {
            panic!("data available expected")
        };
        assert_eq!(length, 0xFF);
        assert!(bip.next_envelope().is_none(), "announced once");
        let receive = |n: u8| {
            cmd(
                0,
                Device::Channel(1),
                CommandBody::ReceiveData(ReceiveData {
                    alpha: None,
                    length: n,
                    other: Vec::new(),
                }),
            )
        };
        let tr = bip.command(&receive(237));
        assert_eq!(tr.channel_data.as_ref().map(Vec::len), Some(237));
        assert_eq!(tr.channel_data_length, Some(63));
        let tr = bip.command(&receive(237));
        assert_eq!(tr.channel_data.as_ref().map(Vec::len), Some(63));
        assert_eq!(tr.result.general, ResultCode::MISSING_INFORMATION);
        let Some(Envelope::EventDownload(Event::ChannelStatus { status, .. })) =
            bip.next_envelope()
        else {
            panic!("link dropped expected")
        };
        assert_eq!(status, ChannelStatus::new(1, false, LINK_DROPPED));
        let close = cmd(
            0,
            Device::Channel(1),
            CommandBody::CloseChannel(CloseChannel {
                alpha: None,
                other: Vec::new(),
            }),
        );
        assert!(bip.command(&close).result.general.is_success());
        assert_eq!(bip.command(&close).result, bip_error(CHANNEL_CLOSED));
    }

    #[test]
    fn events_not_asked_for_are_not_sent() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let (wake, _requests) = std::sync::mpsc::channel();
        let mut bip = Bip::new(wake);
        assert!(bip.command(&open(port)).result.general.is_success());
        let connection = bip.connections;
        bip.event(BipEvent::Data {
            connection,
            bytes: vec![1, 2, 3],
        });
        bip.event(BipEvent::Closed { connection });
        assert!(bip.next_envelope().is_none());
        // Nobody listens: the connection fails, network unable.
        drop(listener);
        bip.close("test");
        assert_eq!(
            bip.command(&open(port)).result.general,
            ResultCode::NETWORK_UNABLE
        );
    }
}
