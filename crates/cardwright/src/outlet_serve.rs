//! `cardwright outlet serve`: the outlet's page (`server::outlet`) on a loopback address,
//! over the security module in `--dir` and the card in a PC/SC reader. It never contacts
//! the platform: `outlet sync` uploads the install records when a connection exists.

use anyhow::{Context, Result};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use transport::{CardChannel, TransportError};

#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// Loopback address to listen on (127.0.0.1, `[::1]` or localhost; port 0: any free
    /// port). The page's URL is printed on stdout.
    #[arg(long, default_value = "127.0.0.1:7070")]
    pub listen: String,
    /// The reader whose card the page serves (its name, or part of it); default: the first
    /// reader holding a card.
    #[arg(long, env = "CARDWRIGHT_READER")]
    pub reader: Option<String>,
    /// Serve the virtual card in this state file, in process, instead of a reader (a demo
    /// without pcscd; the card is "present" while the file exists).
    #[arg(
        long = "virtual",
        alias = "sim",
        value_name = "FILE",
        conflicts_with = "reader"
    )]
    pub virtual_card: Option<PathBuf>,
}

/// The virtual card in a state file, opened for each operation.
struct VirtualCard(PathBuf);

impl server::outlet::CardSource for VirtualCard {
    fn reader(&self) -> String {
        format!("virtual card ({})", self.0.display())
    }

    fn present(&self) -> Result<bool, TransportError> {
        Ok(self.0.exists())
    }

    fn open(&self) -> Result<Box<dyn CardChannel>, TransportError> {
        if !self.0.exists() {
            return Err(TransportError::NoCard(self.reader()));
        }
        let chan = crate::sim::open_channel(&self.0).map_err(|e| {
            TransportError::Other(
                e.chain()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(": "),
            )
        })?;
        Ok(Box::new(chan))
    }
}

/// The card in a PC/SC reader, opened for each operation.
#[cfg(feature = "pcsc")]
struct Reader(Option<String>);

#[cfg(feature = "pcsc")]
impl server::outlet::CardSource for Reader {
    fn reader(&self) -> String {
        self.0
            .clone()
            .unwrap_or_else(|| "the first reader holding a card".into())
    }

    fn present(&self) -> Result<bool, TransportError> {
        let readers = transport::pcsc::list_readers()?;
        match &self.0 {
            None => Ok(readers.iter().any(|r| r.card_present)),
            Some(want) => transport::pcsc::find_reader(&readers, want)
                .map(|r| r.card_present)
                .ok_or_else(|| TransportError::NoReader(format!(" named '{want}'"))),
        }
    }

    fn open(&self) -> Result<Box<dyn CardChannel>, TransportError> {
        Ok(Box::new(transport::pcsc::PcscChannel::connect(
            self.0.as_deref(),
        )?))
    }
}

#[cfg(feature = "pcsc")]
fn reader_source(reader: Option<String>) -> Result<Arc<dyn server::outlet::CardSource>> {
    Ok(Arc::new(Reader(reader)))
}

#[cfg(not(feature = "pcsc"))]
fn reader_source(_reader: Option<String>) -> Result<Arc<dyn server::outlet::CardSource>> {
    anyhow::bail!("this cardwright was built without PC/SC support: use --virtual FILE, or rebuild with `--features pcsc`")
}

/// `outlet serve` for the outlet in `dir`.
pub fn run(a: ServeArgs, dir: &Path) -> Result<()> {
    // Refused before anything is opened: the page must not be reachable from the network.
    let addr = server::outlet::loopback_listen_addr(&a.listen)?;
    let card: Arc<dyn server::outlet::CardSource> = match a.virtual_card {
        Some(path) => Arc::new(VirtualCard(path)),
        None => reader_source(a.reader)?,
    };
    let module = Arc::new(
        outlet::Module::open(dir).with_context(|| format!("the outlet in {}", dir.display()))?,
    );
    server::block_on(async move {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("--listen {}", a.listen))?;
        let addr = listener.local_addr()?;
        tracing::info!(reader = %card.reader(), "outlet page ready");
        let app = server::outlet::router(module, card, addr);
        println!("cardwright outlet: the catalog at http://{addr}/");
        use std::io::Write;
        std::io::stdout().flush()?;
        server::serve(listener, app).await?;
        Ok(())
    })
    .context("starting the async runtime")?
}
