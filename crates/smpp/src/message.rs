//! Short messages as plain values (what submit_sm and deliver_sm carry), delivery receipts, and
//! their conversion to and from rusmpp's PDUs.

use std::str::FromStr;

use rusmpp::pdus::{DeliverSm, SubmitSm};
use rusmpp::tlvs::{MessageDeliveryRequestTlvValue, MessageSubmissionRequestTlvValue, TlvTag};
use rusmpp::types::{AnyOctetString, COctetString, EmptyOrFullCOctetString, OctetString};
use rusmpp::values::{
    DataCoding, EsmClass, MessagePayload, Npi, PriorityFlag, RegisteredDelivery,
    ReplaceIfPresentFlag, ServiceType, Ton,
};

use crate::error::MessageError;

/// The TLV tag of message_payload.
pub const TAG_MESSAGE_PAYLOAD: u16 = 0x0424;
/// The TLV tag of receipted_message_id.
pub const TAG_RECEIPTED_MESSAGE_ID: u16 = 0x001E;
/// The TLV tag of message_state.
pub const TAG_MESSAGE_STATE: u16 = 0x0427;
/// The TLV tag of network_error_code.
pub const TAG_NETWORK_ERROR_CODE: u16 = 0x0423;

/// esm_class with the UDH indicator (GSM feature bit 6) set, default message mode.
pub const ESM_CLASS_UDHI: u8 = 0x40;
/// esm_class of an SMSC delivery receipt (message type bits 5–2 = 0001).
pub const ESM_CLASS_DELIVERY_RECEIPT: u8 = 0x04;
/// TP-PID of a (U)SIM data download message (3GPP TS 23.040), as SCP80 uses.
pub const PID_SIM_DATA_DOWNLOAD: u8 = 0x7F;
/// TP-DCS: 8-bit data, message class 2 ((U)SIM-specific).
pub const DCS_8BIT_CLASS2: u8 = 0xF6;

/// A source or destination address.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Address {
    /// Type of number (1 = international, …).
    pub ton: u8,
    /// Numbering plan indicator (1 = E.164, …).
    pub npi: u8,
    /// The digits (at most 20 characters).
    pub address: String,
}

impl Address {
    /// An international E.164 number (TON 1, NPI 1).
    pub fn international(digits: &str) -> Self {
        Self {
            ton: 1,
            npi: 1,
            address: digits.to_owned(),
        }
    }

    /// An address with an explicit TON and NPI.
    pub fn new(ton: u8, npi: u8, address: &str) -> Self {
        Self {
            ton,
            npi,
            address: address.to_owned(),
        }
    }
}

/// An optional parameter as it is on the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawTlv {
    /// The tag.
    pub tag: u16,
    /// The value octets.
    pub value: Vec<u8>,
}

/// What a submit_sm or deliver_sm carries: the mandatory parameters, message_payload and any
/// other TLVs (kept as raw octets).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ShortMessage {
    /// service_type (usually empty).
    pub service_type: String,
    /// The originator.
    pub source: Address,
    /// The recipient.
    pub destination: Address,
    /// esm_class (0x40: UDH indicator; 0x04: delivery receipt).
    pub esm_class: u8,
    /// protocol_id (TP-PID; 0x7F for SIM data download).
    pub protocol_id: u8,
    /// priority_flag.
    pub priority_flag: u8,
    /// schedule_delivery_time (empty or 16 characters).
    pub schedule_delivery_time: String,
    /// validity_period (empty or 16 characters).
    pub validity_period: String,
    /// registered_delivery (bit 0: a delivery receipt is wanted).
    pub registered_delivery: u8,
    /// replace_if_present_flag.
    pub replace_if_present_flag: u8,
    /// data_coding (TP-DCS; 0xF6 for 8-bit class 2).
    pub data_coding: u8,
    /// sm_default_msg_id.
    pub sm_default_msg_id: u8,
    /// short_message: the user data, UDH included when esm_class has the UDH indicator.
    pub short_message: Vec<u8>,
    /// The message_payload TLV, when the user data travels there instead.
    pub message_payload: Option<Vec<u8>>,
    /// Every other TLV, in order.
    pub tlvs: Vec<RawTlv>,
}

/// What the ESME submits.
pub type Submit = ShortMessage;

impl ShortMessage {
    /// A binary SMS for a SIM (SCP80 over SMS): esm_class 0x40 (UDHI), TP-PID 0x7F,
    /// TP-DCS 0xF6, `user_data` being the UDH followed by the secured packet.
    pub fn sim_data_download(source: Address, destination: Address, user_data: Vec<u8>) -> Self {
        Self {
            source,
            destination,
            esm_class: ESM_CLASS_UDHI,
            protocol_id: PID_SIM_DATA_DOWNLOAD,
            data_coding: DCS_8BIT_CLASS2,
            short_message: user_data,
            ..Self::default()
        }
    }

    /// This message with registered_delivery 0x01 (SMSC delivery receipt on success or failure).
    pub fn with_receipt(mut self) -> Self {
        self.registered_delivery |= 0x01;
        self
    }

    /// The user data: message_payload if present, else short_message.
    pub fn user_data(&self) -> &[u8] {
        self.message_payload
            .as_deref()
            .unwrap_or(&self.short_message)
    }

    /// The first TLV with this tag.
    pub fn tlv(&self, tag: u16) -> Option<&[u8]> {
        self.tlvs
            .iter()
            .find(|t| t.tag == tag)
            .map(|t| t.value.as_slice())
    }

    /// Whether esm_class says this is a delivery receipt or intermediate notification.
    pub fn is_receipt(&self) -> bool {
        matches!(self.esm_class & 0x3C, 0x04 | 0x08 | 0x10 | 0x20)
    }
}

fn c_string<const MIN: usize, const MAX: usize>(
    value: &str,
    field: &'static str,
) -> Result<COctetString<MIN, MAX>, MessageError> {
    COctetString::from_str(value).map_err(|_| MessageError::Field(field))
}

fn address(value: &Address) -> Result<COctetString<1, 21>, MessageError> {
    COctetString::from_str(&value.address).map_err(|_| MessageError::Address(value.address.clone()))
}

fn time(value: &str, field: &'static str) -> Result<EmptyOrFullCOctetString<17>, MessageError> {
    if value.is_empty() {
        return Ok(EmptyOrFullCOctetString::empty());
    }
    EmptyOrFullCOctetString::from_str(value).map_err(|_| MessageError::Field(field))
}

fn raw_tlvs(tlvs: &[rusmpp::tlvs::Tlv]) -> (Option<Vec<u8>>, Vec<RawTlv>) {
    use rusmpp::encode::{Encode, Length};
    let mut payload = None;
    let mut out = Vec::new();
    for tlv in tlvs {
        let mut buf = vec![0u8; tlv.length()];
        tlv.encode(&mut buf);
        let tag = u16::from_be_bytes([buf[0], buf[1]]);
        let value = buf[4..].to_vec();
        if tag == TAG_MESSAGE_PAYLOAD && payload.is_none() {
            payload = Some(value);
        } else {
            out.push(RawTlv { tag, value });
        }
    }
    (payload, out)
}

macro_rules! to_pdu {
    ($msg:expr, $builder:expr, $tlv:ident) => {{
        let m: &ShortMessage = $msg;
        if m.short_message.len() > 254 {
            return Err(MessageError::ShortMessageTooLong(m.short_message.len()));
        }
        let mut tlvs = Vec::new();
        if let Some(payload) = &m.message_payload {
            tlvs.push($tlv::MessagePayload(MessagePayload::new(
                AnyOctetString::from_slice(payload),
            )));
        }
        for t in &m.tlvs {
            tlvs.push($tlv::Other {
                tag: TlvTag::from(t.tag),
                value: AnyOctetString::from_slice(&t.value),
            });
        }
        let short_message = OctetString::from_slice(&m.short_message)
            .map_err(|_| MessageError::ShortMessageTooLong(m.short_message.len()))?;
        Ok($builder
            .service_type(ServiceType::new(c_string(&m.service_type, "service_type")?))
            .source_addr_ton(Ton::from(m.source.ton))
            .source_addr_npi(Npi::from(m.source.npi))
            .source_addr(address(&m.source)?)
            .dest_addr_ton(Ton::from(m.destination.ton))
            .dest_addr_npi(Npi::from(m.destination.npi))
            .destination_addr(address(&m.destination)?)
            .esm_class(EsmClass::from(m.esm_class))
            .protocol_id(m.protocol_id)
            .priority_flag(PriorityFlag::from(m.priority_flag))
            .schedule_delivery_time(time(&m.schedule_delivery_time, "schedule_delivery_time")?)
            .validity_period(time(&m.validity_period, "validity_period")?)
            .registered_delivery(RegisteredDelivery::from(m.registered_delivery))
            .replace_if_present_flag(ReplaceIfPresentFlag::from(m.replace_if_present_flag))
            .data_coding(DataCoding::from(m.data_coding))
            .sm_default_msg_id(m.sm_default_msg_id)
            .short_message(short_message)
            .tlvs(tlvs)
            .build())
    }};
}

macro_rules! from_pdu {
    ($pdu:expr) => {{
        let p = $pdu;
        let (message_payload, tlvs) = raw_tlvs(p.tlvs());
        ShortMessage {
            service_type: p.service_type.value().as_str().to_owned(),
            source: Address {
                ton: p.source_addr_ton.into(),
                npi: p.source_addr_npi.into(),
                address: p.source_addr.as_str().to_owned(),
            },
            destination: Address {
                ton: p.dest_addr_ton.into(),
                npi: p.dest_addr_npi.into(),
                address: p.destination_addr.as_str().to_owned(),
            },
            esm_class: p.esm_class.into(),
            protocol_id: p.protocol_id,
            priority_flag: p.priority_flag.into(),
            schedule_delivery_time: p.schedule_delivery_time.as_str().to_owned(),
            validity_period: p.validity_period.as_str().to_owned(),
            registered_delivery: p.registered_delivery.into(),
            replace_if_present_flag: p.replace_if_present_flag.into(),
            data_coding: p.data_coding.into(),
            sm_default_msg_id: p.sm_default_msg_id,
            short_message: p.short_message().as_ref().to_vec(),
            message_payload,
            tlvs,
        }
    }};
}

impl ShortMessage {
    /// This message as a submit_sm.
    pub fn to_submit_sm(&self) -> Result<SubmitSm, MessageError> {
        to_pdu!(self, SubmitSm::builder(), MessageSubmissionRequestTlvValue)
    }

    /// This message as a deliver_sm.
    pub fn to_deliver_sm(&self) -> Result<DeliverSm, MessageError> {
        to_pdu!(self, DeliverSm::builder(), MessageDeliveryRequestTlvValue)
    }

    /// The message a submit_sm carries.
    pub fn from_submit_sm(pdu: &SubmitSm) -> Self {
        from_pdu!(pdu)
    }

    /// The message a deliver_sm carries.
    pub fn from_deliver_sm(pdu: &DeliverSm) -> Self {
        from_pdu!(pdu)
    }
}

/// A delivery receipt (a deliver_sm whose esm_class says so), parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryReceipt {
    /// The receipted_message_id TLV.
    pub receipted_message_id: Option<String>,
    /// The message_state TLV (2 = DELIVERED, 5 = UNDELIVERABLE, …).
    pub message_state: Option<u8>,
    /// The fields of the text (`id:… sub:… dlvrd:… submit date:… done date:… stat:… err:…
    /// text:…`), those that are present.
    pub text: ReceiptText,
    /// The deliver_sm as received.
    pub message: ShortMessage,
}

/// The fields of a delivery receipt's text (SMPP 3.4 appendix B), those that are present.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ReceiptText {
    /// `id:` the message ID the SMSC gave in submit_sm_resp.
    pub id: Option<String>,
    /// `sub:`.
    pub sub: Option<String>,
    /// `dlvrd:`.
    pub dlvrd: Option<String>,
    /// `submit date:`.
    pub submit_date: Option<String>,
    /// `done date:`.
    pub done_date: Option<String>,
    /// `stat:` (DELIVRD, EXPIRED, DELETED, UNDELIV, ACCEPTD, UNKNOWN, REJECTD, ENROUTE).
    pub stat: Option<String>,
    /// `err:`.
    pub err: Option<String>,
    /// `text:` (the rest of the text).
    pub text: Option<String>,
}

impl ReceiptText {
    /// Parses a receipt's text; keys are matched case-insensitively, unknown ones ignored.
    pub fn parse(text: &str) -> Self {
        const KEYS: [&str; 8] = [
            "id:",
            "sub:",
            "dlvrd:",
            "submit date:",
            "done date:",
            "stat:",
            "err:",
            "text:",
        ];
        let lower = text.to_ascii_lowercase();
        // Where each key starts (at the start or after a space), in order of position.
        let mut found: Vec<(usize, usize)> = Vec::new();
        for (k, key) in KEYS.iter().enumerate() {
            let mut from = 0;
            while let Some(pos) = lower[from..].find(key) {
                let at = from + pos;
                if at == 0 || lower.as_bytes()[at - 1] == b' ' {
                    if !found.iter().any(|&(kk, _)| kk == k) {
                        found.push((k, at));
                    }
                    break;
                }
                from = at + 1;
            }
        }
        found.sort_by_key(|&(_, at)| at);
        let mut out = Self::default();
        for (i, &(k, at)) in found.iter().enumerate() {
            let start = at + KEYS[k].len();
            let end = if k == 7 {
                text.len()
            } else {
                found.get(i + 1).map(|&(_, a)| a).unwrap_or(text.len())
            };
            let value = text[start..end.max(start)].trim().to_owned();
            let slot = match k {
                0 => &mut out.id,
                1 => &mut out.sub,
                2 => &mut out.dlvrd,
                3 => &mut out.submit_date,
                4 => &mut out.done_date,
                5 => &mut out.stat,
                6 => &mut out.err,
                _ => &mut out.text,
            };
            *slot = Some(value);
        }
        out
    }

    /// The text of a receipt with these fields, in the SMPP 3.4 appendix B layout.
    pub fn format(&self) -> String {
        let f = |v: &Option<String>| v.clone().unwrap_or_default();
        format!(
            "id:{} sub:{} dlvrd:{} submit date:{} done date:{} stat:{} err:{} text:{}",
            f(&self.id),
            f(&self.sub),
            f(&self.dlvrd),
            f(&self.submit_date),
            f(&self.done_date),
            f(&self.stat),
            f(&self.err),
            f(&self.text)
        )
    }
}

impl DeliveryReceipt {
    /// Parses a receipt from the deliver_sm's message.
    pub fn from_message(message: ShortMessage) -> Self {
        let receipted_message_id = message.tlv(TAG_RECEIPTED_MESSAGE_ID).map(|v| {
            let v = v.strip_suffix(&[0]).unwrap_or(v);
            String::from_utf8_lossy(v).into_owned()
        });
        let message_state = message
            .tlv(TAG_MESSAGE_STATE)
            .and_then(|v| v.first().copied());
        let text = ReceiptText::parse(&String::from_utf8_lossy(message.user_data()));
        Self {
            receipted_message_id,
            message_state,
            text,
            message,
        }
    }

    /// The ID of the receipted message: the receipted_message_id TLV, else the text's `id:`.
    pub fn message_id(&self) -> Option<&str> {
        self.receipted_message_id
            .as_deref()
            .or(self.text.id.as_deref())
    }

    /// The final state: the text's `stat:`, else the name of the message_state TLV.
    pub fn stat(&self) -> Option<&str> {
        if let Some(stat) = self.text.stat.as_deref() {
            return Some(stat);
        }
        Some(match self.message_state? {
            0 => "SCHEDULED",
            1 => "ENROUTE",
            2 => "DELIVRD",
            3 => "EXPIRED",
            4 => "DELETED",
            5 => "UNDELIV",
            6 => "ACCEPTD",
            7 => "UNKNOWN",
            8 => "REJECTD",
            _ => return None,
        })
    }

    /// Whether the receipt says the message was delivered.
    pub fn is_delivered(&self) -> bool {
        self.stat()
            .is_some_and(|s| s.eq_ignore_ascii_case("DELIVRD"))
    }
}

/// The message_state value for a receipt `stat:` name (DELIVRD → 2, …).
pub fn message_state_for(stat: &str) -> u8 {
    match stat.to_ascii_uppercase().as_str() {
        "SCHEDULED" => 0,
        "ENROUTE" => 1,
        "DELIVRD" => 2,
        "EXPIRED" => 3,
        "DELETED" => 4,
        "UNDELIV" => 5,
        "ACCEPTD" => 6,
        "REJECTD" => 8,
        _ => 7,
    }
}

/// An inbound message the SMSC delivered to the ESME.
// Moved once through a channel; boxing the receipt would only complicate matching on it.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Inbound {
    /// A mobile-originated message.
    Mo(ShortMessage),
    /// A delivery receipt.
    Receipt(DeliveryReceipt),
}

impl Inbound {
    /// Sorts a deliver_sm's message into MO or receipt by its esm_class.
    pub fn from_message(message: ShortMessage) -> Self {
        if message.is_receipt() {
            Inbound::Receipt(DeliveryReceipt::from_message(message))
        } else {
            Inbound::Mo(message)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn receipt_text_parses() {
        let t = ReceiptText::parse(
            "id:4a3f-1 sub:001 dlvrd:001 submit date:2612041530 done date:2612041531 stat:DELIVRD err:000 text:hello world",
        );
        assert_eq!(t.id.as_deref(), Some("4a3f-1"));
        assert_eq!(t.sub.as_deref(), Some("001"));
        assert_eq!(t.submit_date.as_deref(), Some("2612041530"));
        assert_eq!(t.done_date.as_deref(), Some("2612041531"));
        assert_eq!(t.stat.as_deref(), Some("DELIVRD"));
        assert_eq!(t.err.as_deref(), Some("000"));
        assert_eq!(t.text.as_deref(), Some("hello world"));
        assert_eq!(ReceiptText::parse(&t.format()), t);
        let partial = ReceiptText::parse("id:77 stat:UNDELIV");
        assert_eq!(partial.id.as_deref(), Some("77"));
        assert_eq!(partial.stat.as_deref(), Some("UNDELIV"));
        assert_eq!(partial.err, None);
    }
}
