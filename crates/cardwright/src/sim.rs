//! The built-in virtual card: in process (`--sim FILE`) or in a pcscd reader (`sim run --vpcd`).

use crate::cli::{SimCaCertArgs, SimCreateArgs, SimCreateOptions, SimRunArgs};
use anyhow::{bail, Context, Result};
use card::{CardConfig, VirtualCard};
use std::io::BufRead;
use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

/// The virtual card as a [`transport::CardChannel`], in this process.
pub type SimChannel = card::VirtualChannel;

/// Opens the existing card in `path` as a channel; a missing file is an error (a mistyped
/// path must not become a new card): cards are made with `sim create`.
pub fn open_channel(path: &Path) -> Result<SimChannel> {
    if !path.exists() {
        bail!(
            "there is no virtual card {}: make one with `cardwright sim create --state {}`",
            path.display(),
            path.display()
        );
    }
    let card = open_card(path, &SimCreateOptions::defaults())?;
    Ok(SimChannel::named(
        card,
        format!("virtual card ({})", path.display()),
    ))
}

impl SimCreateOptions {
    pub fn defaults() -> Self {
        Self {
            scp: "03".into(),
            key: None,
            keyver: None,
            kdd: None,
            cplc: None,
            max_auth_failures: 10,
            no_piv: false,
            no_scp11: false,
        }
    }

    /// The manufacturing parameters these options describe.
    pub fn config(&self) -> Result<CardConfig> {
        let mut cfg = match self.scp.as_str() {
            "02" => CardConfig::scp02(),
            _ => CardConfig::default(),
        };
        if let Some(k) = &self.key {
            let bytes = zeroize::Zeroizing::new(apdu::parse_hex(k).context("--key")?);
            let key = match self.scp.as_str() {
                "02" => scp::Key::des3(&bytes),
                _ => scp::Key::aes(&bytes),
            }
            .context("--key")?;
            cfg.keys = scp::StaticKeys::same(key);
        }
        if let Some(v) = self.keyver {
            if !(1..=0x7F).contains(&v) {
                bail!("--keyver must be 1 to 127 (0x01-0x7F, GP 2.3.1 §11.1.8)");
            }
            cfg.key_version = v;
        }
        if let Some(k) = &self.kdd {
            let b = apdu::parse_hex(k).context("--kdd")?;
            cfg.kdd = b
                .try_into()
                .map_err(|_| anyhow::anyhow!("--kdd must be 10 bytes"))?;
        }
        match &self.cplc {
            Some(c) => cfg.cplc = apdu::parse_hex(c).context("--cplc")?,
            None => {
                // Each new card gets its own IC serial number (CPLC bytes 12..16, GP 2.3.1
                // §H.6), which is also its PIV serial.
                let mut serial = [0u8; 4];
                getrandom::getrandom(&mut serial)
                    .map_err(|e| anyhow::anyhow!("random number generator: {e}"))?;
                if let Some(s) = cfg.cplc.get_mut(12..16) {
                    s.copy_from_slice(&serial);
                }
            }
        }
        cfg.max_auth_failures = self.max_auth_failures;
        cfg.with_piv = !self.no_piv;
        cfg.scp11 = !self.no_scp11;
        Ok(cfg)
    }
}

fn open_card(path: &Path, opts: &SimCreateOptions) -> Result<VirtualCard> {
    let card = VirtualCard::open(path, opts.config()?)
        .with_context(|| format!("virtual card state file {}", path.display()))?;
    Ok(card)
}

/// `sim create`: a new state file; refuses to overwrite a card.
pub fn create(a: SimCreateArgs) -> Result<()> {
    if a.state.exists() {
        bail!(
            "{} already exists: it is a card; delete the file first to make a new one",
            a.state.display()
        );
    }
    let cfg = a.create.config()?;
    let card = VirtualCard::open(&a.state, cfg.clone())
        .with_context(|| format!("virtual card state file {}", a.state.display()))?;
    println!("created virtual card {}", a.state.display());
    print!("{}", identity(&card, &cfg));
    Ok(())
}

/// What `sim create` prints: the card's identity and its keys. Key values are printed only
/// when they are the published GlobalPlatform test key; any other key is shown by its check
/// value (GP 2.3.1 §B.6), as key ceremonies do.
fn identity(card: &VirtualCard, cfg: &CardConfig) -> String {
    let keys = &cfg.keys;
    let (protocol, cipher) = match cfg.protocol {
        scp::Protocol::Scp02 { .. } => ("SCP02", "3DES"),
        scp::Protocol::Scp03 { .. } => ("SCP03", "AES"),
    };
    let key = &keys.enc;
    let which = if key.expose() == card::DEFAULT_KEY {
        format!(" = the GlobalPlatform test key {}", apdu::hex(key.expose()))
    } else {
        String::new()
    };
    let serial = cfg
        .cplc
        .get(12..16)
        .map(apdu::hex)
        .unwrap_or_else(|| "(none)".into());
    let mut out = format!(
        "ATR:        {}\n\
         IC serial:  {serial} (CPLC; also the PIV serial)\n\
         KDD:        {}\n\
         ISD keys:   {protocol}, {cipher}-{} key version {:#04x}, ENC = MAC = DEK, KCV {}{which}\n",
        apdu::hex(&card.atr()),
        apdu::hex(&cfg.kdd),
        key.len() * 8,
        cfg.key_version,
        apdu::hex(&key.kcv()),
    );
    out.push_str(&format!(
        "Key lock:   after {} failed authentications in a row\n",
        cfg.max_auth_failures
    ));
    if card.manufacturer_ca().is_some() {
        out.push_str(
            "SCP11b:     SD key pair KID 0x13 KVN 0x01 (P-256), certificate chain in GET DATA BF21 \
             (manufacturer CA: `cardwright sim ca-cert --state FILE`)\n",
        );
    } else {
        out.push_str("SCP11b:     no factory key set (--no-scp11)\n");
    }
    if cfg.with_piv {
        out.push_str(
            "PIV:        A000000308000010000100, PIN 123456, PUK 12345678, 3DES management key \
             010203040506070801020304050607080102030405060708 (factory defaults)\n",
        );
    } else {
        out.push_str("PIV:        not installed (--no-piv)\n");
    }
    out
}

/// `sim ca-cert`: the manufacturer CA certificate of the factory SCP11b key set, PEM.
pub fn ca_cert(a: SimCaCertArgs) -> Result<()> {
    let card = VirtualCard::snapshot(&a.state)
        .with_context(|| format!("virtual card state file {}", a.state.display()))?;
    let Some(der) = card.manufacturer_ca() else {
        bail!(
            "{} has no factory SCP11b certificate chain (made with --no-scp11, or replaced)",
            a.state.display()
        );
    };
    print!("{}", card::pem(&der));
    Ok(())
}

/// `sim run`: serve the card to vpcd (pcscd), or read hex APDUs from standard input.
pub fn run(a: SimRunArgs) -> Result<()> {
    let new = !a.state.exists();
    let mut card = open_card(&a.state, &a.create)?;
    if new {
        eprintln!(
            "created virtual card {} (it did not exist)",
            a.state.display()
        );
    }
    match &a.vpcd {
        Some(addr) => {
            let sock: std::net::SocketAddr = addr.parse().with_context(|| {
                format!("--vpcd {addr}: expected HOST:PORT such as 127.0.0.1:35963")
            })?;
            tracing::info!(state = %a.state.display(), "virtual card ready; connecting to vpcd at {sock}");
            let stop = AtomicBool::new(false);
            let mut icc = Icc(&mut card);
            vpcd::serve(sock, &mut icc, Duration::from_millis(200), &stop)?;
            Ok(())
        }
        None => {
            eprintln!(
                "virtual card {}: type C-APDUs in hex, one per line",
                a.state.display()
            );
            for line in std::io::stdin().lock().lines() {
                let line = line?;
                let t = line.trim();
                if t.is_empty() || t.starts_with('#') {
                    continue;
                }
                match apdu::parse_hex(t) {
                    Ok(b) => println!("{}", apdu::hex(&card.transmit(&b))),
                    Err(e) => eprintln!("not hex: {e}"),
                }
            }
            Ok(())
        }
    }
}

struct Icc<'a>(&'a mut VirtualCard);

impl vpcd::Icc for Icc<'_> {
    fn atr(&mut self) -> Vec<u8> {
        self.0.atr()
    }
    fn reset(&mut self) {
        self.0.reset()
    }
    fn transmit(&mut self, apdu: &[u8]) -> Vec<u8> {
        self.0.transmit(apdu)
    }
}
