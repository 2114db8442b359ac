//! Decimal amounts ↔ minor units, by the ISO 4217 minor-unit exponent of the currency.

/// The number of decimal places of a currency's minor unit (ISO 4217 list one, "Minor
/// unit" column): 0, 2 (the default), 3 or 4.
pub fn minor_unit_exponent(currency: &str) -> u32 {
    match currency {
        // Minor unit 0.
        "BIF" | "CLP" | "DJF" | "GNF" | "ISK" | "JPY" | "KMF" | "KRW" | "PYG" | "RWF" | "UGX"
        | "UYI" | "VND" | "VUV" | "XAF" | "XOF" | "XPF" => 0,
        // Minor unit 3.
        "BHD" | "IQD" | "JOD" | "KWD" | "LYD" | "OMR" | "TND" => 3,
        // Minor unit 4.
        "CLF" | "UYW" => 4,
        _ => 2,
    }
}

/// Why an amount cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AmountError {
    /// Not a plain decimal number such as `12.34`.
    #[error("amount {0:?} is not a decimal number such as 12.34")]
    Syntax(String),
    /// More decimals than the currency has.
    #[error("amount {amount:?} has more than {exponent} decimals for {currency}")]
    TooPrecise {
        /// The text.
        amount: String,
        /// The currency.
        currency: String,
        /// Its minor-unit exponent.
        exponent: u32,
    },
    /// Too large for 64 bits of minor units.
    #[error("amount {0:?} is too large")]
    Overflow(String),
    /// Zero.
    #[error("amount must be positive")]
    Zero,
}

/// The largest amount accepted, in minor units, given as `amount` or `amount_minor` alike:
/// 10^18 − 1 (15 integer digits and 3 decimals always fit).
pub const MAX_MINOR: u64 = 999_999_999_999_999_999;

/// `12.34` EUR → 1234; `5` JPY → 5; `1.5` KWD → 1500. Digits, at most one `.`; no sign,
/// no exponent, no grouping.
pub fn parse_amount(text: &str, currency: &str) -> Result<u64, AmountError> {
    let exponent = minor_unit_exponent(currency);
    let syntax = || AmountError::Syntax(text.to_string());
    let (int, frac) = match text.split_once('.') {
        Some((i, f)) => (i, f),
        None => (text, ""),
    };
    if int.is_empty() || !int.bytes().all(|b| b.is_ascii_digit()) {
        return Err(syntax());
    }
    if !frac.bytes().all(|b| b.is_ascii_digit()) || (text.contains('.') && frac.is_empty()) {
        return Err(syntax());
    }
    let frac = frac.trim_end_matches('0');
    if frac.len() > exponent as usize {
        return Err(AmountError::TooPrecise {
            amount: text.to_string(),
            currency: currency.to_string(),
            exponent,
        });
    }
    let overflow = || AmountError::Overflow(text.to_string());
    let mut minor: u64 = int.parse().map_err(|_| overflow())?;
    minor = minor
        .checked_mul(10u64.pow(exponent))
        .ok_or_else(overflow)?;
    if !frac.is_empty() {
        let f: u64 = frac.parse().map_err(|_| syntax())?;
        let scale = 10u64.pow(exponent - frac.len() as u32);
        minor = minor.checked_add(f * scale).ok_or_else(overflow)?;
    }
    if minor == 0 {
        return Err(AmountError::Zero);
    }
    if minor > MAX_MINOR {
        return Err(AmountError::Overflow(text.to_string()));
    }
    Ok(minor)
}

/// 1234 EUR → `12.34`; 5 JPY → `5`.
pub fn format_amount(minor: u64, currency: &str) -> String {
    let exponent = minor_unit_exponent(currency);
    if exponent == 0 {
        return minor.to_string();
    }
    let scale = 10u64.pow(exponent);
    format!(
        "{}.{:0width$}",
        minor / scale,
        minor % scale,
        width = exponent as usize
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts() {
        assert_eq!(parse_amount("12.34", "EUR"), Ok(1234));
        assert_eq!(parse_amount("12.3", "EUR"), Ok(1230));
        assert_eq!(parse_amount("12", "EUR"), Ok(1200));
        assert_eq!(parse_amount("12.340", "EUR"), Ok(1234));
        assert_eq!(parse_amount("5", "JPY"), Ok(5));
        assert_eq!(parse_amount("1.5", "KWD"), Ok(1500));
        assert!(matches!(
            parse_amount("1.5", "JPY"),
            Err(AmountError::TooPrecise { .. })
        ));
        assert_eq!(parse_amount("0.00", "EUR"), Err(AmountError::Zero));
        for bad in ["", ".5", "1.", "-1", "1e3", "1,5", " 1", "1.2.3", "+1"] {
            assert!(
                matches!(parse_amount(bad, "EUR"), Err(AmountError::Syntax(_))),
                "{bad}"
            );
        }
        assert!(matches!(
            parse_amount("184467440737095516.16", "EUR"),
            Err(AmountError::Overflow(_))
        ));
        assert_eq!(format_amount(1234, "EUR"), "12.34");
        assert_eq!(format_amount(5, "EUR"), "0.05");
        assert_eq!(format_amount(5, "JPY"), "5");
        assert_eq!(format_amount(1500, "KWD"), "1.500");
    }
}
