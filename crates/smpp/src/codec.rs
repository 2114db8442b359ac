//! Framing: SMPP PDUs on a byte stream, decoded and encoded by rusmpp.
//!
//! The framing (command_length) is done here so that a PDU rusmpp cannot decode costs only that
//! PDU (answered with generic_nack), not the connection.

use std::io;

use rusmpp::Command;
use tokio_util::bytes::{Buf, BytesMut};
use tokio_util::codec::{Decoder, Encoder};

/// The longest PDU accepted (command_length), well above any SMS PDU.
pub const MAX_PDU_LEN: usize = 64 * 1024;

/// One PDU read from the stream.
#[derive(Debug)]
pub enum Frame {
    /// A PDU rusmpp decoded.
    Command(Box<Command>),
    /// A well-framed PDU whose body could not be decoded.
    Malformed {
        /// Its command_id.
        command_id: u32,
        /// Its command_status.
        command_status: u32,
        /// Its sequence_number.
        sequence_number: u32,
        /// Why it could not be decoded.
        reason: String,
    },
}

/// A tokio codec for SMPP PDUs.
#[derive(Debug, Default, Clone, Copy)]
pub struct SmppCodec;

impl Decoder for SmppCodec {
    type Item = Frame;
    type Error = io::Error;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Frame>, io::Error> {
        if src.len() < 4 {
            return Ok(None);
        }
        let len = u32::from_be_bytes([src[0], src[1], src[2], src[3]]) as usize;
        if !(16..=MAX_PDU_LEN).contains(&len) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("SMPP command_length {len} out of range"),
            ));
        }
        if src.len() < len {
            src.reserve(len - src.len());
            return Ok(None);
        }
        let mut pdu = src.split_to(len);
        Ok(Some(decode_frame(&mut pdu)))
    }
}

fn decode_frame(pdu: &mut BytesMut) -> Frame {
    let command_id = u32::from_be_bytes([pdu[4], pdu[5], pdu[6], pdu[7]]);
    let command_status = u32::from_be_bytes([pdu[8], pdu[9], pdu[10], pdu[11]]);
    let sequence_number = u32::from_be_bytes([pdu[12], pdu[13], pdu[14], pdu[15]]);
    let malformed = |reason: String| Frame::Malformed {
        command_id,
        command_status,
        sequence_number,
        reason,
    };
    let mut inner = rusmpp::tokio_codec::CommandCodec::new().without_max_length();
    match inner.decode(pdu) {
        Ok(Some(command)) if !pdu.has_remaining() => Frame::Command(Box::new(command)),
        Ok(Some(_)) => malformed("trailing octets after the PDU body".into()),
        Ok(None) => malformed("truncated PDU".into()),
        Err(e) => malformed(e.to_string()),
    }
}

impl Encoder<&Command> for SmppCodec {
    type Error = io::Error;

    fn encode(&mut self, command: &Command, dst: &mut BytesMut) -> Result<(), io::Error> {
        rusmpp::tokio_codec::CommandCodec::new()
            .encode(command, dst)
            .map_err(|e| io::Error::other(e.to_string()))
    }
}

/// A command as PDU octets.
pub fn encode(command: &Command) -> Vec<u8> {
    let mut buf = BytesMut::new();
    // Encoding into memory does not fail.
    let _ = SmppCodec.encode(command, &mut buf);
    buf.to_vec()
}

/// PDU octets (one whole PDU) as a command.
pub fn decode(octets: &[u8]) -> Result<Command, String> {
    let mut buf = BytesMut::from(octets);
    match SmppCodec.decode(&mut buf) {
        Ok(Some(Frame::Command(c))) if buf.is_empty() => Ok(*c),
        Ok(Some(Frame::Command(_))) => Err("octets after the PDU".into()),
        Ok(Some(Frame::Malformed { reason, .. })) => Err(reason),
        Ok(None) => Err("incomplete PDU".into()),
        Err(e) => Err(e.to_string()),
    }
}
