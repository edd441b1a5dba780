//! An anvil L1 dev node (from the npm package `@foundry-rs/anvil`).

use crate::{
    DevnetError, Result, io,
    process::{die_with_parent, stop_child},
};
use std::{
    fs,
    net::TcpStream,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

/// The standard test mnemonic anvil and hardhat fund.
pub const DEV_MNEMONIC: &str = "test test test test test test test test test test test junk";

/// How to run anvil.
#[derive(Debug, Clone)]
pub struct AnvilOptions {
    /// TCP port on 127.0.0.1.
    pub port: u16,
    /// Mine a block every this many seconds (`None`: automine; it stalls under load).
    pub block_time_secs: Option<u64>,
    /// Keep the chain in this file across restarts.
    pub state_file: Option<PathBuf>,
    /// Where anvil's output goes.
    pub log_file: PathBuf,
    /// Delete the log file when the handle drops.
    pub remove_log_on_drop: bool,
}

impl AnvilOptions {
    /// A throwaway node mining every second, logging to the temp folder.
    pub fn throwaway(port: u16) -> Self {
        Self {
            port,
            block_time_secs: Some(1),
            state_file: None,
            log_file: std::env::temp_dir().join(format!("rollup-anvil-{port}.log")),
            remove_log_on_drop: true,
        }
    }
}

/// A running anvil; dropping it stops it.
#[derive(Debug)]
pub struct Anvil {
    child: Child,
    port: u16,
    log_to_remove: Option<PathBuf>,
}

/// Finds a binary from an `@foundry-rs/<name>` npm package: `$<NAME>_BIN`,
/// then `node_modules` in the current folder or any parent (also of this
/// crate's source), then `PATH`.
pub fn find_node_binary(name: &str) -> Result<PathBuf> {
    let env_key = format!("{}_BIN", name.to_uppercase());
    if let Some(path) = std::env::var_os(&env_key) {
        return Ok(PathBuf::from(path));
    }
    let platform = if cfg!(target_arch = "aarch64") { "linux-arm64" } else { "linux-amd64" };
    let relative = PathBuf::from(format!("node_modules/@foundry-rs/{name}-{platform}/bin/{name}"));
    let starts = [std::env::current_dir().ok(), Some(PathBuf::from(env!("CARGO_MANIFEST_DIR")))];
    for start in starts.into_iter().flatten() {
        for dir in start.ancestors() {
            let candidate = dir.join(&relative);
            if candidate.is_file() {
                return Ok(candidate);
            }
        }
    }
    let in_path = std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).map(|p| p.join(name)).find(|p| p.is_file()));
    in_path
        .flatten()
        .ok_or_else(|| DevnetError::NotInstalled(format!("{name} (npm @foundry-rs/{name})")))
}

/// The anvil binary.
pub fn find_anvil() -> Result<PathBuf> {
    find_node_binary("anvil")
}

impl Anvil {
    /// Starts anvil and waits until it accepts connections.
    pub fn spawn(options: &AnvilOptions) -> Result<Self> {
        let binary = find_anvil()?;
        let log = fs::File::create(&options.log_file)
            .map_err(io(format!("create {}", options.log_file.display())))?;
        let mut command = Command::new(binary);
        command.args(["--host", "127.0.0.1", "--port", &options.port.to_string()]);
        command.args(["--mnemonic", DEV_MNEMONIC]);
        if let Some(seconds) = options.block_time_secs {
            command.args(["--block-time", &seconds.to_string()]);
        }
        if let Some(state) = &options.state_file {
            command.arg("--state").arg(state).args(["--state-interval", "1"]);
        }
        command
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(io("clone log handle"))?)
            .stderr(log);
        die_with_parent(&mut command, libc::SIGTERM);
        let child = command.spawn().map_err(io("spawn anvil"))?;
        let log_to_remove = options.remove_log_on_drop.then(|| options.log_file.clone());
        let mut anvil = Self { child, port: options.port, log_to_remove };
        anvil.wait_ready(&options.log_file)?;
        Ok(anvil)
    }

    /// The HTTP JSON-RPC URL.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The TCP port.
    pub const fn port(&self) -> u16 {
        self.port
    }

    fn wait_ready(&mut self, log: &Path) -> Result<()> {
        let seconds = 30;
        let deadline = Instant::now() + Duration::from_secs(seconds);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(DevnetError::CommandFailed {
                    command: "anvil".into(),
                    detail: format!("exited with {status}; see {}", log.display()),
                });
            }
            if TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Err(DevnetError::NotReady { what: "anvil".into(), seconds, log: log.to_owned() })
    }
}

impl Drop for Anvil {
    fn drop(&mut self) {
        // SIGTERM lets anvil write its state file before it exits.
        stop_child(&mut self.child, libc::SIGTERM, Duration::from_secs(10));
        if let Some(log) = &self.log_to_remove {
            let _ = fs::remove_file(log);
        }
    }
}
