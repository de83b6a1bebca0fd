//! The real `streamgate` binary in a child process: what an operator runs, signals and all.
//! Its stderr (the logs) is collected line by line, and its port read from the startup line,
//! so it can listen on port 0 like every other test server.

use std::process::{ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::Notify;

pub struct Gateway {
    pub address: String,
    pub client: reqwest::Client,
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
    new_line: Arc<Notify>,
    dir: std::path::PathBuf,
}

impl Gateway {
    /// Starts the binary with exactly these variables (plus `PORT=0`, loopback, JSON logs,
    /// an instant mock model) in an empty directory, so neither the test's environment nor
    /// a developer's `.env` leaks in.
    pub async fn start(vars: &[(&str, &str)]) -> Gateway {
        static COUNT: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "streamgate-test-{}-{}",
            std::process::id(),
            COUNT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let mut command = Command::new(env!("CARGO_BIN_EXE_streamgate"));
        command
            .env_clear()
            .current_dir(&dir)
            .envs([
                ("HOST", "127.0.0.1"),
                ("PORT", "0"),
                ("LOG_FORMAT", "json"),
                ("HEARTBEAT_SECS", "60"),
                ("MOCK_TTFT_MS", "0"),
                ("MOCK_TOKENS_PER_SEC", "0"),
                ("RATE_LIMIT_RPM", "0"),
            ])
            .envs(vars.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = command.spawn().expect("the streamgate binary starts");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let new_line = Arc::new(Notify::new());
        let mut stderr = BufReader::new(child.stderr.take().unwrap()).lines();
        let (sink, notify) = (lines.clone(), new_line.clone());
        tokio::spawn(async move {
            while let Ok(Some(line)) = stderr.next_line().await {
                sink.lock().unwrap().push(line);
                notify.notify_waiters();
            }
            // EOF: wake waiters so they see the process is gone rather than time out.
            notify.notify_waiters();
        });
        let mut gateway = Gateway {
            address: String::new(),
            client: reqwest::Client::new(),
            child,
            lines,
            new_line,
            dir,
        };
        let startup = gateway
            .wait_for_log("the startup line", |l| l["port"].is_u64())
            .await;
        gateway.address = format!("http://127.0.0.1:{}", startup["port"]);
        gateway
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.address)
    }

    /// Every line logged so far, as written.
    pub fn log_lines(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }

    /// Every line logged so far, parsed (each must be one JSON object).
    pub fn json_lines(&self) -> Vec<Value> {
        self.log_lines()
            .iter()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
            .collect()
    }

    /// Waits (at most 10 s) for a JSON log line that satisfies `matches`.
    pub async fn wait_for_log(&self, what: &str, matches: impl Fn(&Value) -> bool) -> Value {
        let wait = async {
            loop {
                let notified = self.new_line.notified();
                if let Some(found) = self.json_lines().into_iter().find(|l| matches(l)) {
                    return found;
                }
                notified.await;
            }
        };
        tokio::time::timeout(Duration::from_secs(10), wait)
            .await
            .unwrap_or_else(|_| panic!("no log line for {what}; log:\n{:#?}", self.log_lines()))
    }

    /// Sends SIGTERM, as an orchestrator stopping the container does.
    pub fn terminate(&self) {
        let pid = self.child.id().expect("still running");
        let status = std::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success());
    }

    /// Waits (at most `limit`) for the process to exit.
    pub async fn exit_status(&mut self, limit: Duration) -> ExitStatus {
        tokio::time::timeout(limit, self.child.wait())
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "still running after {limit:?}; log:\n{:#?}",
                    self.log_lines()
                )
            })
            .unwrap()
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
