//! Over-the-air (OTA) remote management codecs for Cardwright, pure and without I/O:
//!
//! * [`packet`]: ETSI TS 102 225 / 3GPP TS 31.115 secured command packets and response
//!   packets (PoR): SPI, KIc, KID, TAR, counters, ciphering, CC/RC (SCP80);
//! * [`script`]: ETSI TS 102 226 remote APDU scripts (compact and expanded formats);
//! * [`tpdu`]: 3GPP TS 23.040 SMS-DELIVER / SMS-SUBMIT TPDUs, user-data headers and
//!   concatenation;
//! * [`cat`]: 3GPP TS 31.111 / ETSI TS 102 223 card application toolkit: ENVELOPE (SMS-PP
//!   download, menu selection, event download), the proactive commands the download flow
//!   needs, TERMINAL RESPONSE;
//! * [`admin`]: GP Amendment B administration session triggering parameters (SCP81).
//!
//! The server side (SMPP, SCP81) and the card side use these codecs; none of them is here.
#![forbid(unsafe_code)]

pub mod admin;
pub mod cat;
pub mod packet;
pub mod script;
pub mod tpdu;
