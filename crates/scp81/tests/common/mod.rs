//! Shared helpers: a server on loopback, and an agent shuttled over a real TcpStream.
#![allow(dead_code)] // each test binary uses a part

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use gp::Aid;
use scp81::{
    AdminQueue, AdminServer, AgentConfig, AgentError, AgentSession, Event, ScriptStatus,
    ServerConfig, SessionReport,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use zeroize::Zeroizing;

/// The test card's PSK identity and key.
pub const IDENTITY: &str = "card-0001";
pub const PSK: [u8; 16] = [
    0x40, 0x41, 0x42, 0x43, 0x44, 0x45, 0x46, 0x47, 0x48, 0x49, 0x4a, 0x4b, 0x4c, 0x4d, 0x4e, 0x4f,
];
pub const AGENT_ID: &str = "//se-id/CUD/0102030405060708;//aa-id/aid/A000000151/000000";

pub fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02X}")).collect()
}

pub fn sd_aid() -> Aid {
    Aid::new(&[0xA0, 0x00, 0x00, 0x01, 0x51, 0x53, 0x50, 0x41]).unwrap()
}

pub struct TestServer {
    pub addr: SocketAddr,
    pub queue: AdminQueue,
    pub audit: mpsc::UnboundedReceiver<SessionReport>,
    task: JoinHandle<()>,
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl TestServer {
    pub async fn start(config: ServerConfig) -> Self {
        let keys: HashMap<Vec<u8>, Vec<u8>> =
            HashMap::from([(IDENTITY.as_bytes().to_vec(), PSK.to_vec())]);
        let store = Arc::new(move |id: &[u8]| keys.get(id).cloned().map(Zeroizing::new));
        let queue = AdminQueue::new();
        let (tx, audit) = mpsc::unbounded_channel();
        let server = AdminServer::bind("127.0.0.1:0", config, store, queue.clone())
            .await
            .expect("bind")
            .with_audit(move |r| {
                let _ = tx.send(r.clone());
            });
        let addr = server.local_addr().unwrap();
        let task = tokio::spawn(async move {
            let _ = server.run().await;
        });
        Self {
            addr,
            queue,
            audit,
            task,
        }
    }

    pub fn uri(&self) -> String {
        format!("https://{}/gp/admin", self.addr)
    }

    pub async fn next_report(&mut self) -> SessionReport {
        tokio::time::timeout(Duration::from_secs(10), self.audit.recv())
            .await
            .expect("audit report in time")
            .expect("audit channel open")
    }
}

/// What the agent saw.
#[derive(Debug, Default)]
pub struct AgentRun {
    pub cipher: Option<String>,
    pub scripts: Vec<(Vec<u8>, Option<Aid>, bool)>,
    pub done: bool,
    pub error: Option<String>,
}

/// Run `config`'s agent against `addr` over a real TCP socket, shuttling bytes
/// between the agent's memory interface and the socket; `answer` gives each script's
/// response.
pub async fn run_agent(
    addr: SocketAddr,
    config: AgentConfig,
    mut answer: impl FnMut(usize, &[u8]) -> (Vec<u8>, ScriptStatus),
) -> AgentRun {
    let mut run = AgentRun::default();
    let mut tcp = TcpStream::connect(addr).await.expect("connect");
    let mut agent = match AgentSession::start(config) {
        Ok(a) => a,
        Err(e) => {
            run.error = Some(e.to_string());
            return run;
        }
    };
    let mut buf = vec![0u8; 8192];
    let result: Result<(), AgentError> = async {
        loop {
            while let Some(ev) = agent.poll_event() {
                match ev {
                    Event::Connected { cipher } => run.cipher = Some(cipher),
                    Event::Script {
                        bytes,
                        target,
                        expects_response,
                    } => {
                        let (resp, status) = answer(run.scripts.len(), &bytes);
                        run.scripts.push((bytes, target, expects_response));
                        agent.send_response(&resp, status)?;
                    }
                    Event::Done => run.done = true,
                }
            }
            let out = agent.take_network_bytes();
            if !out.is_empty() {
                tcp.write_all(&out).await.expect("tcp write");
            }
            if run.done {
                return Ok(());
            }
            let n = tokio::time::timeout(Duration::from_secs(10), tcp.read(&mut buf))
                .await
                .expect("server answers in time")
                .unwrap_or(0);
            if n == 0 {
                return Err(AgentError::Protocol("tcp closed".into()));
            }
            agent.on_network_bytes(&buf[..n])?;
        }
    }
    .await;
    if let Err(e) = result {
        // Let a queued alert go out, as the handset would relay it.
        let out = agent.take_network_bytes();
        let _ = tcp.write_all(&out).await;
        run.error = Some(e.to_string());
    }
    run
}

pub fn agent_config(uri: &str, psk: &[u8], cipher: &str) -> AgentConfig {
    let mut c = AgentConfig::new(
        IDENTITY.as_bytes().to_vec(),
        Zeroizing::new(psk.to_vec()),
        AGENT_ID,
        uri,
    );
    c.cipher_list = cipher.to_owned();
    c
}
