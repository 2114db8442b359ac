//! The JSON answer of a Cardwright API, as the CLI's HTTP clients (`pay`, `ssd`) read it:
//! the value on success, else the documented `{"error", "reason"}` as one error line.

use anyhow::{anyhow, Context, Result};
use serde_json::Value;

/// The answer's JSON (its text as a string when it is not JSON); an error answer becomes
/// `REASON (CODE)`, or `URL answered HTTP STATUS` without the documented body.
pub fn json(url: &str, mut resp: ureq::http::Response<ureq::Body>) -> Result<Value> {
    let status = resp.status();
    let text = resp
        .body_mut()
        .read_to_string()
        .with_context(|| format!("reading the answer of {url}"))?;
    let value: Value = serde_json::from_str(&text).unwrap_or(Value::String(text));
    if status.is_success() {
        return Ok(value);
    }
    match (value.get("error"), value.get("reason")) {
        (Some(code), Some(reason)) => Err(anyhow!(
            "{} ({})",
            reason.as_str().unwrap_or_default(),
            code.as_str().unwrap_or_default()
        )),
        _ => Err(anyhow!("{url} answered HTTP {status}")),
    }
}
