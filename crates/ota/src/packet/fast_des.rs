//! DES and triple DES (FIPS 46-3, NIST SP 800-67) with S-box/permutation tables built at
//! compile time: about four times the speed of a bit-permuting implementation, which
//! SCP80 needs (a single-SMS packet is ~60 3DES blocks to secure and open). Triple DES
//! skips the inner FP/IP pairs, which cancel. Checked against RustCrypto `des` in the
//! tests and against the known answers of `tests/vectors/`.

/// Builds lookup tables for a bit permutation: `table[o]` is the 1-based input bit (of an
/// `in_bits`-wide value, bit 1 the most significant) that goes to output bit `o + 1` (of a
/// `table.len()`-wide value). The result is the OR of one lookup per input byte.
const fn perm<const BYTES: usize>(table: &[u8], in_bits: u32) -> [[u64; 256]; BYTES] {
    let out_bits = table.len() as u32;
    let mut t = [[0u64; 256]; BYTES];
    let mut b = 0;
    while b < BYTES {
        let mut v = 0;
        while v < 256 {
            let mut out = 0u64;
            let mut o = 0;
            while o < table.len() {
                let j = table[o] as u32; // 1-based input bit
                if j > 8 * b as u32 && j <= 8 * b as u32 + 8 {
                    let bit_in_byte = 8 - (j - 8 * b as u32); // 0 = least significant
                    if (v >> bit_in_byte) & 1 == 1 {
                        out |= 1 << (out_bits - 1 - o as u32);
                    }
                }
                o += 1;
            }
            t[b][v] = out;
            v += 1;
        }
        b += 1;
    }
    let _ = in_bits;
    t
}

#[inline(always)]
fn apply<const BYTES: usize>(t: &[[u64; 256]; BYTES], x: u64, in_bits: u32) -> u64 {
    let mut out = 0;
    let mut b = 0;
    while b < BYTES {
        out |= t[b][((x >> (in_bits - 8 * b as u32 - 8)) & 0xFF) as usize];
        b += 1;
    }
    out
}

const IP_T: [u8; 64] = [
    58, 50, 42, 34, 26, 18, 10, 2, 60, 52, 44, 36, 28, 20, 12, 4, 62, 54, 46, 38, 30, 22, 14, 6,
    64, 56, 48, 40, 32, 24, 16, 8, 57, 49, 41, 33, 25, 17, 9, 1, 59, 51, 43, 35, 27, 19, 11, 3, 61,
    53, 45, 37, 29, 21, 13, 5, 63, 55, 47, 39, 31, 23, 15, 7,
];
const FP_T: [u8; 64] = [
    40, 8, 48, 16, 56, 24, 64, 32, 39, 7, 47, 15, 55, 23, 63, 31, 38, 6, 46, 14, 54, 22, 62, 30,
    37, 5, 45, 13, 53, 21, 61, 29, 36, 4, 44, 12, 52, 20, 60, 28, 35, 3, 43, 11, 51, 19, 59, 27,
    34, 2, 42, 10, 50, 18, 58, 26, 33, 1, 41, 9, 49, 17, 57, 25,
];
const P_T: [u8; 32] = [
    16, 7, 20, 21, 29, 12, 28, 17, 1, 15, 23, 26, 5, 18, 31, 10, 2, 8, 24, 14, 32, 27, 3, 9, 19,
    13, 30, 6, 22, 11, 4, 25,
];
const PC1_T: [u8; 56] = [
    57, 49, 41, 33, 25, 17, 9, 1, 58, 50, 42, 34, 26, 18, 10, 2, 59, 51, 43, 35, 27, 19, 11, 3, 60,
    52, 44, 36, 63, 55, 47, 39, 31, 23, 15, 7, 62, 54, 46, 38, 30, 22, 14, 6, 61, 53, 45, 37, 29,
    21, 13, 5, 28, 20, 12, 4,
];
const PC2_T: [u8; 48] = [
    14, 17, 11, 24, 1, 5, 3, 28, 15, 6, 21, 10, 23, 19, 12, 4, 26, 8, 16, 7, 27, 20, 13, 2, 41, 52,
    31, 37, 47, 55, 30, 40, 51, 45, 33, 48, 44, 49, 39, 56, 34, 53, 46, 42, 50, 36, 29, 32,
];
const SHIFTS: [u32; 16] = [1, 1, 2, 2, 2, 2, 2, 2, 1, 2, 2, 2, 2, 2, 2, 1];
const S: [[u8; 64]; 8] = [
    [
        14, 4, 13, 1, 2, 15, 11, 8, 3, 10, 6, 12, 5, 9, 0, 7, 0, 15, 7, 4, 14, 2, 13, 1, 10, 6, 12,
        11, 9, 5, 3, 8, 4, 1, 14, 8, 13, 6, 2, 11, 15, 12, 9, 7, 3, 10, 5, 0, 15, 12, 8, 2, 4, 9,
        1, 7, 5, 11, 3, 14, 10, 0, 6, 13,
    ],
    [
        15, 1, 8, 14, 6, 11, 3, 4, 9, 7, 2, 13, 12, 0, 5, 10, 3, 13, 4, 7, 15, 2, 8, 14, 12, 0, 1,
        10, 6, 9, 11, 5, 0, 14, 7, 11, 10, 4, 13, 1, 5, 8, 12, 6, 9, 3, 2, 15, 13, 8, 10, 1, 3, 15,
        4, 2, 11, 6, 7, 12, 0, 5, 14, 9,
    ],
    [
        10, 0, 9, 14, 6, 3, 15, 5, 1, 13, 12, 7, 11, 4, 2, 8, 13, 7, 0, 9, 3, 4, 6, 10, 2, 8, 5,
        14, 12, 11, 15, 1, 13, 6, 4, 9, 8, 15, 3, 0, 11, 1, 2, 12, 5, 10, 14, 7, 1, 10, 13, 0, 6,
        9, 8, 7, 4, 15, 14, 3, 11, 5, 2, 12,
    ],
    [
        7, 13, 14, 3, 0, 6, 9, 10, 1, 2, 8, 5, 11, 12, 4, 15, 13, 8, 11, 5, 6, 15, 0, 3, 4, 7, 2,
        12, 1, 10, 14, 9, 10, 6, 9, 0, 12, 11, 7, 13, 15, 1, 3, 14, 5, 2, 8, 4, 3, 15, 0, 6, 10, 1,
        13, 8, 9, 4, 5, 11, 12, 7, 2, 14,
    ],
    [
        2, 12, 4, 1, 7, 10, 11, 6, 8, 5, 3, 15, 13, 0, 14, 9, 14, 11, 2, 12, 4, 7, 13, 1, 5, 0, 15,
        10, 3, 9, 8, 6, 4, 2, 1, 11, 10, 13, 7, 8, 15, 9, 12, 5, 6, 3, 0, 14, 11, 8, 12, 7, 1, 14,
        2, 13, 6, 15, 0, 9, 10, 4, 5, 3,
    ],
    [
        12, 1, 10, 15, 9, 2, 6, 8, 0, 13, 3, 4, 14, 7, 5, 11, 10, 15, 4, 2, 7, 12, 9, 5, 6, 1, 13,
        14, 0, 11, 3, 8, 9, 14, 15, 5, 2, 8, 12, 3, 7, 0, 4, 10, 1, 13, 11, 6, 4, 3, 2, 12, 9, 5,
        15, 10, 11, 14, 1, 7, 6, 0, 8, 13,
    ],
    [
        4, 11, 2, 14, 15, 0, 8, 13, 3, 12, 9, 7, 5, 10, 6, 1, 13, 0, 11, 7, 4, 9, 1, 10, 14, 3, 5,
        12, 2, 15, 8, 6, 1, 4, 11, 13, 12, 3, 7, 14, 10, 15, 6, 8, 0, 5, 9, 2, 6, 11, 13, 8, 1, 4,
        10, 7, 9, 5, 0, 15, 14, 2, 3, 12,
    ],
    [
        13, 2, 8, 4, 6, 15, 11, 1, 10, 9, 3, 14, 5, 0, 12, 7, 1, 15, 13, 8, 10, 3, 7, 4, 12, 5, 6,
        11, 0, 14, 9, 2, 7, 11, 4, 1, 9, 12, 14, 2, 0, 6, 10, 13, 15, 3, 5, 8, 2, 1, 14, 7, 4, 10,
        8, 13, 15, 12, 9, 0, 3, 5, 6, 11,
    ],
];

/// `SP[i][v]`: S-box `i` applied to the 6-bit `v`, placed in nibble `i` and permuted by P.
const SP: [[u32; 64]; 8] = {
    let mut t = [[0u32; 64]; 8];
    let mut i = 0;
    while i < 8 {
        let mut v = 0;
        while v < 64 {
            let row = ((v >> 4) & 2) | (v & 1);
            let col = (v >> 1) & 0xF;
            let pre = (S[i][row * 16 + col] as u32) << (28 - 4 * i);
            let mut out = 0u32;
            let mut o = 0;
            while o < 32 {
                let j = P_T[o] as u32;
                if (pre >> (32 - j)) & 1 == 1 {
                    out |= 1 << (31 - o);
                }
                o += 1;
            }
            t[i][v] = out;
            v += 1;
        }
        i += 1;
    }
    t
};

/// The round function's tables, indexed by a whole byte so that no masking is needed:
/// `T[i][x] = SP[i][x >> 2]` rotated right by one bit.
///
/// Why this shape (the classic layout of table DES, derived here from the E table): with
/// a half `R` kept rotated right by one bit (`R' = R >>> 1`), the E-expansion chunks of
/// S-boxes 1, 3, 5, 7 sit in bits 7..2 of bytes 3, 2, 1, 0 of `R'`, and those of S-boxes
/// 2, 4, 6, 8 in bits 7..2 of bytes 2, 1, 0, 3 of `R' >>> 4`. The round key is stored in
/// the same two positions ([`RoundKey`]), so a round is two XORs, one rotation and eight
/// byte-indexed lookups. The halves stay rotated through all rounds (rotation commutes
/// with XOR), hence the rotated table values; IP and FP rotate in and out.
static T: [[u32; 256]; 8] = {
    let mut t = [[0u32; 256]; 8];
    let mut i = 0;
    while i < 8 {
        let mut x = 0;
        while x < 256 {
            t[i][x] = SP[i][x >> 2].rotate_right(1);
            x += 1;
        }
        i += 1;
    }
    t
};

static IP: [[u64; 256]; 8] = perm::<8>(&IP_T, 64);
static FP: [[u64; 256]; 8] = perm::<8>(&FP_T, 64);
static PC1: [[u64; 256]; 8] = perm::<8>(&PC1_T, 64);

/// One round key in the layout of [`T`]: `[0]` holds the 6-bit chunks of S-boxes 1, 3,
/// 5, 7 in bits 7..2 of bytes 3, 2, 1, 0; `[1]` those of S-boxes 2, 4, 6, 8 in bytes 2,
/// 1, 0, 3.
type RoundKey = [u32; 2];

/// The 16 round keys of one DES key, in the order they are used.
type Schedule = [RoundKey; 16];

/// PC2 and the packing into a [`RoundKey`] at once, by table: `KS[g][v]` is the round key
/// (`[0]` in the high half) that the 7-bit group `g` of C‖D (bits `7g+1..7g+7`, 1-based
/// from the most significant of 56) contributes when it holds `v`. PC2 and the packing
/// only move bits, so a round key is the OR of the eight groups' contributions.
static KS: [[u64; 128]; 8] = {
    let mut t = [[0u64; 128]; 8];
    let mut g = 0;
    while g < 8 {
        let mut v = 0;
        while v < 128 {
            let cd = (v as u64) << (49 - 7 * g);
            // PC2: output bit o + 1 (of 48, most significant first) is input bit PC2_T[o].
            let mut k48 = 0u64;
            let mut o = 0;
            while o < 48 {
                if (cd >> (56 - PC2_T[o] as u32)) & 1 == 1 {
                    k48 |= 1 << (47 - o);
                }
                o += 1;
            }
            let mut a = 0u32;
            let mut b = 0u32;
            let mut j = 0;
            while j < 4 {
                a |= (((k48 >> (42 - 12 * j)) & 0x3F) as u32) << (8 * (3 - j) + 2);
                b |= (((k48 >> (36 - 12 * j)) & 0x3F) as u32) << (8 * ((6 - j) % 4) + 2);
                j += 1;
            }
            t[g][v] = (a as u64) << 32 | b as u64;
            v += 1;
        }
        g += 1;
    }
    t
};

fn schedule(key: &[u8]) -> Schedule {
    let k = u64::from_be_bytes(key.try_into().expect("8-byte DES key"));
    let cd = apply(&PC1, k, 64);
    let mut c = (cd >> 28) as u32 & 0x0FFF_FFFF;
    let mut d = cd as u32 & 0x0FFF_FFFF;
    let mut out = [[0u32; 2]; 16];
    for (round, shift) in SHIFTS.iter().enumerate() {
        c = ((c << shift) | (c >> (28 - shift))) & 0x0FFF_FFFF;
        d = ((d << shift) | (d >> (28 - shift))) & 0x0FFF_FFFF;
        let k = KS[0][(c >> 21) as usize & 0x7F]
            | KS[1][(c >> 14) as usize & 0x7F]
            | KS[2][(c >> 7) as usize & 0x7F]
            | KS[3][c as usize & 0x7F]
            | KS[4][(d >> 21) as usize & 0x7F]
            | KS[5][(d >> 14) as usize & 0x7F]
            | KS[6][(d >> 7) as usize & 0x7F]
            | KS[7][d as usize & 0x7F];
        out[round] = [(k >> 32) as u32, k as u32];
    }
    out
}

fn reversed(s: &Schedule) -> Schedule {
    let mut r = *s;
    r.reverse();
    r
}

/// `f(R, K)` on a rotated half, rotated ([`T`]), XORed into `acc`.
///
/// The eight S-boxes' outputs occupy disjoint bits (each its own nibble, then permuted
/// by P), so OR, XOR and addition all combine them alike. One block alone (`split`)
/// waits on each round: the two groups of four are added, so that the compiler keeps
/// them as two short chains of dependent operations instead of one chain of eight
/// through `acc`. Several blocks in lockstep are limited by the number of operations
/// instead, and one chain per block needs fewer registers.
#[inline(always)]
fn f_into(split: bool, acc: u32, r: u32, k: &RoundKey) -> u32 {
    let u = r ^ k[0];
    let t = r.rotate_right(4) ^ k[1];
    let odd = T[0][(u >> 24) as u8 as usize]
        ^ T[2][(u >> 16) as u8 as usize]
        ^ T[4][(u >> 8) as u8 as usize]
        ^ T[6][u as u8 as usize];
    let even = T[1][(t >> 16) as u8 as usize]
        ^ T[3][(t >> 8) as u8 as usize]
        ^ T[5][t as u8 as usize]
        ^ T[7][(t >> 24) as u8 as usize];
    if split {
        acc ^ odd.wrapping_add(even)
    } else {
        acc ^ odd ^ even
    }
}

/// Sixteen rounds on `N` independent blocks in lockstep: the lanes' table lookups do not
/// depend on each other, so the CPU overlaps them (one block alone waits on each lookup).
/// Rounds come in pairs, `a ^= f(b); b ^= f(a)`, so that no halves are swapped; after
/// the sixteenth round the pre-output is `(b, a)`.
#[inline(always)]
fn rounds<const N: usize>(a: &mut [u32; N], b: &mut [u32; N], keys: &Schedule) {
    for pair in keys.chunks_exact(2) {
        for i in 0..N {
            a[i] = f_into(N == 1, a[i], b[i], &pair[0]);
        }
        for i in 0..N {
            b[i] = f_into(N == 1, b[i], a[i], &pair[1]);
        }
    }
}

/// How many blocks [`Des::encrypt_lanes`] and [`Des::decrypt_lanes`] take at once; the
/// batch paths of `packet` fill this many lanes.
pub(super) const LANES: usize = 4;

/// Single DES (8-byte key) or triple DES EDE (16-byte key: K1 K2 K1; 24-byte: K1 K2 K3).
/// Triple DES runs its three stages back to back on the same halves: the FP of one stage
/// and the IP of the next cancel.
pub(super) struct Des {
    /// The round keys of each stage for encryption: K1, K2 reversed, K3.
    enc: [Schedule; 3],
    /// For decryption: K3 reversed, K2, K1 reversed.
    dec: [Schedule; 3],
    /// 1 for DES, 3 for triple DES.
    stages: usize,
}

impl Drop for Des {
    fn drop(&mut self) {
        // Round keys are key material.
        self.enc = [[[0; 2]; 16]; 3];
        self.dec = [[[0; 2]; 16]; 3];
        core::hint::black_box(&self.enc);
        core::hint::black_box(&self.dec);
    }
}

impl Des {
    /// Key schedules for an 8-, 16- or 24-byte key; `None` for other sizes.
    pub(super) fn new(key: &[u8]) -> Option<Self> {
        let (k1, k2, k3, stages) = match key.len() {
            8 => {
                let k = schedule(key);
                (k, [[0; 2]; 16], k, 1)
            }
            16 => {
                let k1 = schedule(&key[..8]);
                (k1, schedule(&key[8..]), k1, 3)
            }
            24 => (
                schedule(&key[..8]),
                schedule(&key[8..16]),
                schedule(&key[16..]),
                3,
            ),
            _ => return None,
        };
        let (enc, dec) = if stages == 1 {
            ([k1, k2, k3], [reversed(&k1), k2, k3])
        } else {
            ([k1, reversed(&k2), k3], [reversed(&k3), k2, reversed(&k1)])
        };
        Some(Self { enc, dec, stages })
    }

    /// Encrypts (or decrypts) `N` independent blocks, each a big-endian `u64`.
    #[inline(always)]
    fn run<const N: usize>(&self, blocks: &mut [u64; N], decrypt: bool) {
        let keys = if decrypt { &self.dec } else { &self.enc };
        let mut a = [0u32; N];
        let mut b = [0u32; N];
        for i in 0..N {
            let x = apply(&IP, blocks[i], 64);
            a[i] = ((x >> 32) as u32).rotate_right(1);
            b[i] = (x as u32).rotate_right(1);
        }
        rounds(&mut a, &mut b, &keys[0]);
        if self.stages == 3 {
            // Each stage's output (b, a) is the next one's input.
            rounds(&mut b, &mut a, &keys[1]);
            rounds(&mut a, &mut b, &keys[2]);
        }
        for i in 0..N {
            let pre = (b[i].rotate_left(1) as u64) << 32 | a[i].rotate_left(1) as u64;
            blocks[i] = apply(&FP, pre, 64);
        }
    }

    /// Encrypts one block, a big-endian `u64`.
    pub(super) fn encrypt_u64(&self, block: u64) -> u64 {
        let mut b = [block];
        self.run(&mut b, false);
        b[0]
    }

    /// Decrypts one block, a big-endian `u64`.
    pub(super) fn decrypt_u64(&self, block: u64) -> u64 {
        let mut b = [block];
        self.run(&mut b, true);
        b[0]
    }

    /// Encrypts [`LANES`] independent blocks at once.
    pub(super) fn encrypt_lanes(&self, blocks: &mut [u64; LANES]) {
        self.run(blocks, false)
    }

    /// Decrypts [`LANES`] independent blocks at once.
    pub(super) fn decrypt_lanes(&self, blocks: &mut [u64; LANES]) {
        self.run(blocks, true)
    }

    /// Encrypts one 8-byte block in place.
    pub(super) fn encrypt(&self, block: &mut [u8]) {
        let x = u64::from_be_bytes((&*block).try_into().expect("8-byte block"));
        block.copy_from_slice(&self.encrypt_u64(x).to_be_bytes());
    }

    /// Decrypts one 8-byte block in place.
    pub(super) fn decrypt(&self, block: &mut [u8]) {
        let x = u64::from_be_bytes((&*block).try_into().expect("8-byte block"));
        block.copy_from_slice(&self.decrypt_u64(x).to_be_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::Des;
    use cipher::{BlockCipherDecrypt, BlockCipherEncrypt, KeyInit};

    fn lcg(seed: &mut u64) -> u8 {
        *seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (*seed >> 56) as u8
    }

    #[test]
    fn matches_rustcrypto_des() {
        let mut seed = 1;
        for len in [8usize, 16, 24] {
            for _ in 0..200 {
                let key: Vec<u8> = (0..len).map(|_| lcg(&mut seed)).collect();
                let block: [u8; 8] = core::array::from_fn(|_| lcg(&mut seed));
                let ours = Des::new(&key).unwrap();
                let mut a = block;
                ours.encrypt(&mut a);
                let mut b = block;
                match len {
                    8 => des::Des::new_from_slice(&key)
                        .unwrap()
                        .encrypt_block((&mut b).into()),
                    16 => des::TdesEde2::new_from_slice(&key)
                        .unwrap()
                        .encrypt_block((&mut b).into()),
                    _ => des::TdesEde3::new_from_slice(&key)
                        .unwrap()
                        .encrypt_block((&mut b).into()),
                }
                assert_eq!(a, b, "encrypt, key {key:02X?}");
                ours.decrypt(&mut a);
                assert_eq!(a, block, "decrypt");
                match len {
                    8 => des::Des::new_from_slice(&key)
                        .unwrap()
                        .decrypt_block((&mut b).into()),
                    16 => des::TdesEde2::new_from_slice(&key)
                        .unwrap()
                        .decrypt_block((&mut b).into()),
                    _ => des::TdesEde3::new_from_slice(&key)
                        .unwrap()
                        .decrypt_block((&mut b).into()),
                }
                assert_eq!(b, block);
            }
        }
    }

    #[test]
    fn lanes_match_one_block_at_a_time() {
        let mut seed = 7;
        for len in [8usize, 16, 24] {
            for _ in 0..50 {
                let key: Vec<u8> = (0..len).map(|_| lcg(&mut seed)).collect();
                let d = Des::new(&key).unwrap();
                let blocks: [u64; super::LANES] = core::array::from_fn(|_| {
                    u64::from_be_bytes(core::array::from_fn(|_| lcg(&mut seed)))
                });
                let mut e = blocks;
                d.encrypt_lanes(&mut e);
                for (x, y) in blocks.iter().zip(&e) {
                    assert_eq!(d.encrypt_u64(*x), *y);
                }
                d.decrypt_lanes(&mut e);
                assert_eq!(e, blocks);
            }
        }
    }

    #[test]
    fn fips_known_answer() {
        // The classic example: key 133457799BBCDFF1, plaintext 0123456789ABCDEF.
        let d = Des::new(&[0x13, 0x34, 0x57, 0x79, 0x9B, 0xBC, 0xDF, 0xF1]).unwrap();
        let mut b = [0x01, 0x23, 0x45, 0x67, 0x89, 0xAB, 0xCD, 0xEF];
        d.encrypt(&mut b);
        assert_eq!(b, [0x85, 0xE8, 0x13, 0x54, 0x0F, 0x0A, 0xB4, 0x05]);
    }
}
