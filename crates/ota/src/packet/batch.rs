//! Batches of command packets under one key set: [`secure_commands`] and
//! [`open_commands`], with the same results as [`secure_command`] and [`open_command`]
//! one packet at a time, byte for byte.
//!
//! Why: a 3DES packet is a CBC-MAC chain then a CBC chain (TS 102 225 §5.1.2, §5.1.3.1),
//! each block waiting for the one before, so one packet at a time leaves the CPU waiting
//! on table lookups. Independent packets' chains have no such dependency: here the DES
//! family's chains of several packets run in lockstep, [`fast_des::LANES`] blocks per
//! step ([`des_cbc_chains`]), and the key schedules are built once per batch instead of
//! once per packet. Packets of any length mix; a lane whose chain ends takes the next.
//!
//! Only what the DES family needs is batched: a packet with AES (already fast one at a
//! time), an unusable key or anything the single path would refuse takes that path
//! unchanged, so errors are the same as well.

use core::cell::OnceCell;

use super::{
    des_cbc_chains, des_decrypt_blocks, fast_des, for_each_block, open_command, secure_command,
    Algorithm, Checksum, CommandHeader, CommandLayout, Counter, DesMode, Error, Key, KeySet,
    OpenedCommand, OpenedPlain, COMMAND_HEADER_MIN,
};

/// The DES key schedules of a batch's key set, built once, when a packet first needs
/// them (a batch of AES packets builds none).
struct Schedules<'k> {
    keys: &'k KeySet,
    kic: OnceCell<Option<fast_des::Des>>,
    kid: OnceCell<Option<fast_des::Des>>,
}

impl<'k> Schedules<'k> {
    fn new(keys: &'k KeySet) -> Self {
        Self {
            keys,
            kic: OnceCell::new(),
            kid: OnceCell::new(),
        }
    }

    fn kic(&self) -> Option<&fast_des::Des> {
        self.kic.get_or_init(|| des(&self.keys.kic)).as_ref()
    }

    fn kid(&self) -> Option<&fast_des::Des> {
        self.kid.get_or_init(|| des(&self.keys.kid)).as_ref()
    }
}

fn des(key: &Option<Key>) -> Option<fast_des::Des> {
    key.as_ref().and_then(|k| fast_des::Des::new(k.expose()))
}

/// Whether `algorithm` is a DES-family cipher the key `key` fits, i.e. whether
/// `BlockCipher::new` would accept it: DES 8 bytes, 3DES 2-key 16, 3-key 24.
fn des_fits(algorithm: Algorithm, key: Option<&Key>) -> bool {
    let need = match algorithm {
        Algorithm::Des(DesMode::Cbc) => 8,
        Algorithm::Des(DesMode::Tdes2Key) => 16,
        Algorithm::Des(DesMode::Tdes3Key) => 24,
        _ => return false,
    };
    key.is_some_and(|k| k.len() == need)
}

/// Whether a packet's checksum can run in the batch: no MAC (none or a CRC, computed
/// directly) or a DES-family CBC-MAC with a fitting KID key.
fn checksum_fits(checksum: Checksum, s: &Schedules) -> bool {
    match checksum {
        Checksum::Mac(a) => des_fits(a, s.keys.kid.as_ref()) && s.kid().is_some(),
        _ => true,
    }
}

fn cipher_fits(ciphering: bool, algorithm: Algorithm, s: &Schedules) -> bool {
    !ciphering || des_fits(algorithm, s.keys.kic.as_ref()) && s.kic().is_some()
}

/// The zero-padded 8-byte blocks of a CBC-MAC input, big-endian.
fn mac_blocks(parts: &[&[u8]]) -> Vec<u64> {
    let mut v = Vec::with_capacity(parts.iter().map(|p| p.len()).sum::<usize>() / 8 + 1);
    for_each_block(parts, 8, |b| v.push(super::be64(b)));
    v
}

/// The last block of a finished CBC chain: the CBC-MAC.
fn mac_of(chain: &[u64]) -> Vec<u8> {
    chain.last().copied().unwrap_or(0).to_be_bytes().to_vec()
}

/// Secures several command packets under one key set: the result for each
/// `(header, data)` is what [`secure_command`] gives for it, in the same order. With
/// DES-family keys the packets' CBC-MAC and CBC chains run interleaved (see the module
/// documentation), more than twice the throughput of one packet at a time; give it the
/// packets of a download (consecutive counters) or of many cards under one key set.
pub fn secure_commands(
    items: &[(CommandHeader, &[u8])],
    keys: &KeySet,
) -> Vec<Result<Vec<u8>, Error>> {
    let s = Schedules::new(keys);
    let mut results: Vec<Result<Vec<u8>, Error>> = Vec::with_capacity(items.len());
    // Packets laid out for the batch: (result index, layout, MAC by DES, cipher by DES).
    let mut pending: Vec<(usize, CommandLayout, bool, bool)> = Vec::new();
    for (i, (header, data)) in items.iter().enumerate() {
        let spi = header.spi;
        let planned = Checksum::resolve(spi.integrity, header.kid)
            .ok()
            .filter(|&c| {
                checksum_fits(c, &s) && cipher_fits(spi.ciphering, header.kic.algorithm, &s)
            });
        let Some(checksum) = planned else {
            results.push(secure_command(header, keys, data));
            continue;
        };
        let block = spi.ciphering.then_some(8);
        match CommandLayout::new(header, checksum, block, data) {
            Ok(p) => {
                results.push(Ok(Vec::new()));
                let mac = matches!(checksum, Checksum::Mac(_));
                if !mac {
                    // None or a CRC: nothing to batch.
                    match checksum.compute(None, &p.mac_parts()) {
                        Ok(cs) => {
                            let mut p = p;
                            p.set_checksum(&cs);
                            pending.push((i, p, false, spi.ciphering));
                        }
                        Err(e) => results[i] = Err(e),
                    }
                } else {
                    pending.push((i, p, true, spi.ciphering));
                }
            }
            Err(e) => results.push(Err(e)),
        }
    }

    // The CBC-MACs, interleaved.
    if let Some(kid) = s.kid.get().and_then(Option::as_ref) {
        let mut chains: Vec<Vec<u64>> = pending
            .iter()
            .filter(|p| p.2)
            .map(|(_, p, _, _)| mac_blocks(&p.mac_parts()))
            .collect();
        des_cbc_chains(kid, &mut chains);
        for ((_, p, _, _), chain) in pending.iter_mut().filter(|p| p.2).zip(&chains) {
            p.set_checksum(&mac_of(chain));
        }
    }

    // Then the ciphering, interleaved.
    if let Some(kic) = s.kic.get().and_then(Option::as_ref) {
        let mut chains: Vec<Vec<u64>> = pending
            .iter_mut()
            .filter(|p| p.3)
            .map(|(_, p, _, _)| p.ciphered().chunks_exact(8).map(super::be64).collect())
            .collect();
        des_cbc_chains(kic, &mut chains);
        for ((_, p, _, _), chain) in pending.iter_mut().filter(|p| p.3).zip(&chains) {
            for (b, c) in p.ciphered().chunks_exact_mut(8).zip(chain) {
                b.copy_from_slice(&c.to_be_bytes());
            }
        }
    }

    for (i, p, _, _) in pending {
        results[i] = Ok(p.out);
    }
    results
}

/// Opens several command packets under one key set, each with the counter its receiver
/// has stored: the result for each `(packet, stored_counter)` is what [`open_command`]
/// gives for it, in the same order. With DES-family keys the deciphering of all the
/// packets' blocks and their CBC-MAC chains run interleaved (see the module
/// documentation).
///
/// Each packet is checked against its own stored counter: for a run of packets with
/// consecutive counters to one card, pass the counter each would find (the previous
/// packet's) and store the last one accepted.
pub fn open_commands(
    packets: &[(&[u8], Counter)],
    keys: &KeySet,
) -> Vec<Result<OpenedCommand, Error>> {
    let s = Schedules::new(keys);
    let mut results: Vec<Option<Result<OpenedCommand, Error>>> =
        (0..packets.len()).map(|_| None).collect();
    // Packets checked and copied for deciphering: (result index, info, checksum, CNTR to end).
    let mut pending = Vec::new();
    for (i, &(packet, stored)) in packets.iter().enumerate() {
        let (info, checksum) = match super::check_command(packet) {
            Ok(v) => v,
            Err(e) => {
                results[i] = Some(Err(e));
                continue;
            }
        };
        if !checksum_fits(checksum, &s) || !cipher_fits(info.spi.ciphering, info.kic.algorithm, &s)
        {
            results[i] = Some(open_command(packet, keys, stored));
            continue;
        }
        let plain = packet[COMMAND_HEADER_MIN..].to_vec();
        if info.spi.ciphering {
            if let Err(e) = super::check_ciphered_len(plain.len(), 8) {
                results[i] = Some(Err(e));
                continue;
            }
        }
        pending.push((i, info, checksum, plain));
    }

    // Deciphering: CBC decryption has no chain, so every block of every packet goes
    // through DES in lanes, then is XORed with the ciphertext block before it.
    if let Some(kic) = s.kic.get().and_then(Option::as_ref) {
        let mut blocks: Vec<u64> = pending
            .iter()
            .filter(|p| p.1.spi.ciphering)
            .flat_map(|p| p.3.chunks_exact(8).map(super::be64))
            .collect();
        des_decrypt_blocks(kic, &mut blocks);
        let mut next = blocks.into_iter();
        for (_, _, _, plain) in pending.iter_mut().filter(|p| p.1.spi.ciphering) {
            let mut prev = 0u64;
            for (block, d) in plain.chunks_exact_mut(8).zip(&mut next) {
                let c = super::be64(block);
                block.copy_from_slice(&(d ^ prev).to_be_bytes());
                prev = c;
            }
        }
    }

    // Padding checks, then the RC/CC: CBC-MACs interleaved, CRCs directly.
    let mut opened: Vec<(usize, OpenedPlain, Vec<u8>)> = Vec::with_capacity(pending.len());
    let mut chains: Vec<Vec<u64>> = Vec::new();
    let mut chain_of: Vec<usize> = Vec::new();
    for (i, info, checksum, plain) in pending {
        let packet = packets[i].0;
        let block = if info.spi.ciphering { 8 } else { 1 };
        let o = match OpenedPlain::new(packet, info, checksum, plain, block) {
            Ok(o) => o,
            Err(e) => {
                results[i] = Some(Err(e));
                continue;
            }
        };
        if matches!(checksum, Checksum::Mac(_)) {
            chains.push(mac_blocks(&o.mac_parts(packet)));
            chain_of.push(opened.len());
            opened.push((i, o, Vec::new()));
        } else {
            match checksum.compute(None, &o.mac_parts(packet)) {
                Ok(cs) => opened.push((i, o, cs)),
                Err(e) => results[i] = Some(Err(e)),
            }
        }
    }
    if let Some(kid) = s.kid.get().and_then(Option::as_ref) {
        des_cbc_chains(kid, &mut chains);
        for (k, chain) in chain_of.into_iter().zip(&chains) {
            opened[k].2 = mac_of(chain);
        }
    }
    for (i, o, expected) in opened {
        results[i] = Some(o.finish(&expected, packets[i].1));
    }
    results
        .into_iter()
        .map(|r| r.expect("every packet has a result"))
        .collect()
}
