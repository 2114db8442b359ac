//! One SMPP connection: framed PDUs, sequence numbers, and the small answers both sides give.

use std::io;

use futures::{SinkExt, StreamExt};
use rusmpp::pdus::{DeliverSmResp, SubmitSmResp};
use rusmpp::types::COctetString;
use rusmpp::{Command, CommandStatus, Pdu};
use tokio::net::TcpStream;
use tokio_util::codec::Framed;

use crate::codec::{Frame, SmppCodec};

/// command_status ESME_RSYSERR.
pub(crate) const ESME_RSYSERR: u32 = 0x08;
/// command_status ESME_RINVCMDID.
pub(crate) const ESME_RINVCMDID: u32 = 0x03;
/// command_status ESME_RINVBNDSTS.
pub(crate) const ESME_RINVBNDSTS: u32 = 0x04;
/// command_status ESME_RINVPASWD.
pub(crate) const ESME_RINVPASWD: u32 = 0x0E;
/// command_status ESME_RINVSYSID.
pub(crate) const ESME_RINVSYSID: u32 = 0x0F;

pub(crate) struct Link {
    framed: Framed<TcpStream, SmppCodec>,
    next_seq: u32,
}

impl Link {
    pub(crate) fn new(stream: TcpStream) -> Self {
        let _ = stream.set_nodelay(true);
        Self {
            framed: Framed::new(stream, SmppCodec),
            next_seq: 1,
        }
    }

    /// The next sequence number (1 to 0x7FFFFFFF, wrapping).
    pub(crate) fn next_seq(&mut self) -> u32 {
        let seq = self.next_seq;
        self.next_seq = if seq >= 0x7FFF_FFFF { 1 } else { seq + 1 };
        seq
    }

    pub(crate) async fn send(&mut self, command: &Command) -> io::Result<()> {
        tracing::trace!(id = ?command.id(), seq = command.sequence_number(), "smpp send");
        self.framed.send(command).await
    }

    /// The next frame; `None` when the peer closed the connection.
    pub(crate) async fn recv(&mut self) -> Option<io::Result<Frame>> {
        self.framed.next().await
    }

    /// Sends a response (or generic_nack) with this status and body.
    pub(crate) async fn respond(&mut self, seq: u32, status: u32, pdu: Pdu) -> io::Result<()> {
        self.send(&Command::new(CommandStatus::from(status), seq, pdu))
            .await
    }

    pub(crate) async fn generic_nack(&mut self, seq: u32, status: u32) -> io::Result<()> {
        self.respond(seq, status, Pdu::GenericNack).await
    }

    /// Answers a request that this side does not handle: generic_nack ESME_RINVCMDID for a
    /// request, nothing for a stray response.
    pub(crate) async fn reject_unexpected(&mut self, command: &Command) -> io::Result<()> {
        if u32::from(command.id()) & 0x8000_0000 == 0 {
            tracing::debug!(id = ?command.id(), "smpp: unsupported request, generic_nack");
            self.generic_nack(command.sequence_number(), ESME_RINVCMDID)
                .await
        } else {
            tracing::debug!(id = ?command.id(), seq = command.sequence_number(), "smpp: unexpected response ignored");
            Ok(())
        }
    }

    /// Answers a frame that could not be decoded: the request's response with ESME_RSYSERR
    /// where it is a request, else nothing.
    pub(crate) async fn reject_malformed(
        &mut self,
        command_id: u32,
        seq: u32,
        reason: &str,
    ) -> io::Result<()> {
        tracing::warn!(
            command_id = format_args!("0x{command_id:08X}"),
            seq,
            reason,
            "smpp: undecodable PDU"
        );
        if command_id & 0x8000_0000 != 0 {
            return Ok(());
        }
        match command_id {
            0x04 => {
                self.respond(
                    seq,
                    ESME_RSYSERR,
                    Pdu::SubmitSmResp(SubmitSmResp::builder().build()),
                )
                .await
            }
            0x05 => {
                self.respond(
                    seq,
                    ESME_RSYSERR,
                    Pdu::DeliverSmResp(DeliverSmResp::builder().build()),
                )
                .await
            }
            _ => self.generic_nack(seq, ESME_RSYSERR).await,
        }
    }
}

pub(crate) fn c_str<const MIN: usize, const MAX: usize>(s: &str) -> COctetString<MIN, MAX> {
    use std::str::FromStr;
    COctetString::from_str(s).unwrap_or_else(|_| COctetString::empty())
}
