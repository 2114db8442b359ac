//! The answer-to-reset (ISO/IEC 7816-3 §8.2; historical bytes ISO/IEC 7816-4 §8.1.1).

/// The ATR of the virtual card:
///
/// ```text
/// 3B        TS  direct convention
/// 8E        T0  TD1 present, 14 historical bytes
/// 81        TD1 TD2 present, T=1
/// 31        TD2 TA3 and TB3 present, T=1
/// FE        TA3 IFSC = 254
/// 45        TB3 BWI = 4, CWI = 5
/// 80        category indicator: COMPACT-TLV objects follow (7816-4 §8.1.1.1)
/// 71 C0     card capabilities, 1 byte: DF selection by full and by partial DF name
/// 5A ...    card issuer's data (tag 5, 10 bytes): "Cardwright"
/// TCK       exclusive-or of T0 to the last historical byte (7816-3 §8.2.5)
/// ```
pub(crate) fn atr() -> Vec<u8> {
    let mut hist = vec![0x80, 0x71, 0xC0, 0x5A];
    hist.extend_from_slice(b"Cardwright");
    let mut v = vec![0x3B, 0x80 | hist.len() as u8, 0x81, 0x31, 0xFE, 0x45];
    v.extend_from_slice(&hist);
    let tck = v[1..].iter().fold(0u8, |a, b| a ^ b);
    v.push(tck);
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atr_is_well_formed() {
        let a = atr();
        assert_eq!(a[0], 0x3B);
        let k = (a[1] & 0x0F) as usize;
        // TS T0 TD1 TD2 TA3 TB3 + K historical + TCK
        assert_eq!(a.len(), 6 + k + 1);
        // TCK: XOR of all bytes from T0 to TCK inclusive is zero.
        assert_eq!(a[1..].iter().fold(0u8, |x, y| x ^ y), 0);
        assert_eq!(&a[10..20], b"Cardwright");
        assert!(a.len() <= 33, "ISO/IEC 7816-3 limits the ATR to 33 bytes");
    }
}
