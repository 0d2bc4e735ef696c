//! Runs an external command with a deadline, capturing stdout and stderr interleaved in one
//! stream, like Go's `CombinedOutput` that Flagger's loadtester uses.

use std::fmt;
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::process::ExitStatusExt;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio::net::unix::pipe;
use tokio::process::Command;
use tokio::time::{Instant, sleep_until, timeout};

/// Output kept per command; the rest is read and dropped so a chatty command cannot fill memory.
pub const MAX_OUTPUT: usize = 1 << 20;

/// How long to keep reading after the command exited, for output still held by a background child.
const DRAIN_GRACE: Duration = Duration::from_secs(1);

#[derive(Debug)]
pub struct CommandOutput {
    pub outcome: Outcome,
    pub output: Vec<u8>,
}

#[derive(Debug)]
pub enum Outcome {
    Exited(ExitStatus),
    TimedOut(Duration),
    SpawnFailed(io::Error),
}

impl CommandOutput {
    pub fn success(&self) -> bool {
        matches!(&self.outcome, Outcome::Exited(s) if s.success())
    }

    pub fn output_text(&self) -> String {
        String::from_utf8_lossy(&self.output).into_owned()
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Outcome::Exited(s) => match (s.code(), s.signal()) {
                (Some(code), _) => write!(f, "exit status {code}"),
                (None, Some(sig)) => write!(f, "signal: {sig}"),
                (None, None) => write!(f, "{s}"),
            },
            Outcome::TimedOut(d) => {
                write!(
                    f,
                    "killed after timeout {}",
                    flagger_api::duration::format(*d)
                )
            }
            Outcome::SpawnFailed(e) => write!(f, "could not start: {e}"),
        }
    }
}

pub async fn run(program: &str, args: &[&str], limit: Duration) -> CommandOutput {
    match run_inner(program, args, limit).await {
        Ok(out) => out,
        Err(e) => CommandOutput {
            outcome: Outcome::SpawnFailed(e),
            output: Vec::new(),
        },
    }
}

async fn run_inner(program: &str, args: &[&str], limit: Duration) -> io::Result<CommandOutput> {
    let deadline = Instant::now() + limit;
    let (reader, writer) = io::pipe()?;
    let mut child = {
        let mut cmd = Command::new(program);
        cmd.args(args)
            .stdin(Stdio::null())
            .stdout(writer.try_clone()?)
            .stderr(writer)
            // Its own process group, so a timeout kills what the shell started too.
            .process_group(0)
            .kill_on_drop(true);
        cmd.spawn()?
        // `cmd` drops here with our copies of the write end, so EOF comes when the child is done.
    };
    let pgid = child.id();
    let mut rx = pipe::Receiver::from_owned_fd(OwnedFd::from(reader))?;

    let mut output = Vec::new();
    let mut chunk = vec![0u8; 16 * 1024];
    let mut status = None;
    let mut eof = false;
    let mut read_until = deadline;
    loop {
        if eof && let Some(status) = status {
            return Ok(CommandOutput {
                outcome: Outcome::Exited(status),
                output,
            });
        }
        tokio::select! {
            read = rx.read(&mut chunk), if !eof => match read {
                Ok(0) | Err(_) => eof = true,
                Ok(n) => {
                    let room = MAX_OUTPUT.saturating_sub(output.len());
                    output.extend_from_slice(&chunk[..n.min(room)]);
                }
            },
            waited = child.wait(), if status.is_none() => {
                status = Some(waited?);
                read_until = deadline.min(Instant::now() + DRAIN_GRACE);
            }
            () = sleep_until(read_until) => {
                if let Some(status) = status {
                    return Ok(CommandOutput { outcome: Outcome::Exited(status), output });
                }
                kill_group(pgid);
                let _ = child.start_kill();
                let _ = timeout(DRAIN_GRACE, child.wait()).await;
                return Ok(CommandOutput { outcome: Outcome::TimedOut(limit), output });
            }
        }
    }
}

fn kill_group(pgid: Option<u32>) {
    let Some(pgid) = pgid.and_then(|p| i32::try_from(p).ok()) else {
        return;
    };
    // SAFETY: kill(2) takes plain integers and touches no memory of ours; a negative pid names
    // the process group created for this child with `process_group(0)`.
    unsafe {
        libc::kill(-pgid, libc::SIGKILL);
    }
}
