//! Class byte decoding and logical channels (ISO/IEC 7816-4 §5.4.1; GP 2.3.1 §11.1.4).

use crate::model::Aid;

/// Logical channels supported: the basic channel and 19 more (ISO/IEC 7816-4 allows 0..=19).
pub(crate) const MAX_CHANNELS: usize = 20;

/// A decoded class byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Cla {
    /// Logical channel number 0..=19.
    pub channel: u8,
    /// Secure messaging indicated (GP: C-MAC present).
    pub sm: bool,
    /// Command chaining (ISO/IEC 7816-4 §5.3.3).
    pub chaining: bool,
    /// Proprietary class (b8 = 1): the GlobalPlatform commands (`80`/`84`).
    pub proprietary: bool,
}

impl Cla {
    /// Decodes CLA; `None` for RFU or invalid values (answered with `6E00`).
    ///
    /// * `0x`/`1x` and `8x`/`9x`: first interindustry / GP-proprietary form: b4-b3 secure
    ///   messaging, b2-b1 channel 0..=3, b5 chaining.
    /// * `4x`..`7x` and `Cx`..`Fx` (not `FF`): further form: b6 secure messaging, b5
    ///   chaining, b4-b1 channel 4..=19.
    pub fn decode(cla: u8) -> Option<Cla> {
        if cla == 0xFF {
            return None;
        }
        let proprietary = cla & 0x80 != 0;
        match cla & 0x60 {
            0x00 => Some(Cla {
                channel: cla & 0x03,
                sm: cla & 0x0C != 0,
                chaining: cla & 0x10 != 0,
                proprietary,
            }),
            0x40 | 0x60 => Some(Cla {
                channel: 4 + (cla & 0x0F),
                sm: cla & 0x20 != 0,
                chaining: cla & 0x10 != 0,
                proprietary,
            }),
            // 001x xxxx and 101x xxxx are RFU (ISO/IEC 7816-4 Table 2).
            _ => None,
        }
    }

    /// The same class on the basic channel, in the first interindustry form (what hosted
    /// applets see).
    pub fn on_basic_channel(self) -> u8 {
        (if self.proprietary { 0x80 } else { 0 })
            | (if self.chaining { 0x10 } else { 0 })
            | (if self.sm { 0x04 } else { 0 })
    }
}

/// A pending LOAD: what INSTALL [for load] announced and the blocks received so far.
#[derive(Debug, Clone)]
pub(crate) struct LoadProcess {
    pub load_file: Aid,
    pub sd: Aid,
    pub hash: Vec<u8>,
    pub assembler: gp::commands::LoadAssembler,
    /// How the INSTALL [for load] was authorised (a delegated load answers a receipt).
    pub authority: crate::sd::dm::Authority,
}

/// Where a paged GET STATUS stopped (GP 2.3.1 §11.4.2: P2 b1 = "next occurrence").
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct StatusCursor {
    pub p1: u8,
    pub tlv: bool,
    pub data: Vec<u8>,
    pub next: usize,
}

/// A PERFORM SECURITY OPERATION chain in progress: the trust anchor (KID, KVN) and the
/// certificates received and verified so far.
pub(crate) type PsoChain = ((u8, u8), Vec<Vec<u8>>);

/// The state of one secure channel on a logical channel.
#[derive(Debug, Default)]
pub(crate) enum Secure {
    /// No session.
    #[default]
    None,
    /// INITIALIZE UPDATE answered; EXTERNAL AUTHENTICATE expected next.
    Pending {
        auth: scp::CardAuth,
        sd: Aid,
        kvn: u8,
    },
    /// Authenticated session with its security level.
    Open { session: scp::CardSession },
}

impl Secure {
    pub fn is_open(&self) -> bool {
        matches!(self, Secure::Open { .. })
    }
}

/// One open logical channel.
#[derive(Debug, Default)]
pub(crate) struct Channel {
    /// The selected application, if any.
    pub selected: Option<Aid>,
    pub secure: Secure,
    pub load: Option<LoadProcess>,
    /// INSTALL [for personalization] target receiving STORE DATA.
    pub perso: Option<Aid>,
    pub status: Option<StatusCursor>,
    /// Response bytes waiting for GET RESPONSE.
    pub pending: Vec<u8>,
    /// A PUT KEY split over several commands (P1 b8): (P1, P2, data so far).
    pub put_key: Option<(u8, u8, Vec<u8>)>,
    /// ISO/IEC 7816-4 command chaining (CLA b5) in progress: (INS, data so far).
    pub chain: Option<(u8, Vec<u8>)>,
    /// SCP11 PERFORM SECURITY OPERATION in progress: the trust anchor (KID, KVN) and the
    /// certificates verified so far.
    pub pso: Option<PsoChain>,
    /// The OCE key of a completely verified certificate chain, for MUTUAL AUTHENTICATE.
    pub oce: Option<scp::scp11::PublicKey>,
}

impl Channel {
    /// Drops everything tied to the selected application.
    pub fn end_session(&mut self) {
        self.secure = Secure::None;
        self.load = None;
        self.perso = None;
        self.status = None;
        self.put_key = None;
        self.chain = None;
        self.pso = None;
        self.oce = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_classes() {
        assert_eq!(
            Cla::decode(0x80).map(|c| (c.channel, c.sm, c.proprietary)),
            Some((0, false, true))
        );
        assert_eq!(
            Cla::decode(0x84).map(|c| (c.channel, c.sm)),
            Some((0, true))
        );
        assert_eq!(Cla::decode(0x03).map(|c| c.channel), Some(3));
        assert_eq!(
            Cla::decode(0x87).map(|c| (c.channel, c.sm)),
            Some((3, true))
        );
        assert_eq!(Cla::decode(0x40).map(|c| c.channel), Some(4));
        assert_eq!(
            Cla::decode(0x6F).map(|c| (c.channel, c.sm)),
            Some((19, true))
        );
        assert_eq!(
            Cla::decode(0xC1).map(|c| (c.channel, c.proprietary)),
            Some((5, true))
        );
        assert_eq!(
            Cla::decode(0xE0).map(|c| (c.channel, c.sm)),
            Some((4, true))
        );
        assert_eq!(Cla::decode(0x10).map(|c| c.chaining), Some(true));
        assert!(Cla::decode(0x20).is_none());
        assert!(Cla::decode(0xA0).is_none());
        assert!(Cla::decode(0xFF).is_none());
        assert_eq!(Cla::decode(0xE5).map(|c| c.on_basic_channel()), Some(0x84));
    }
}
