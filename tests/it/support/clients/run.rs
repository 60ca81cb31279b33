//! Running a command with a timeout, capturing its output, and panicking with everything useful.

use std::io::Read;
use std::process::{Command, ExitStatus, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// Timeout for one client command.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(180);

/// What a command did.
pub struct Finished {
    pub output: Output,
    pub timed_out: bool,
    pub elapsed: Duration,
}

/// Runs `cmd` with [`COMMAND_TIMEOUT`]; panics unless it exits successfully.
pub fn run(cmd: &mut Command) -> Output {
    run_with_timeout(cmd, COMMAND_TIMEOUT)
}

/// Runs `cmd` with `timeout`; panics unless it exits successfully.
pub fn run_with_timeout(cmd: &mut Command, timeout: Duration) -> Output {
    let finished = try_run(cmd, timeout);
    if finished.timed_out || !finished.output.status.success() {
        panic!("{}", failure_report(cmd, &finished, timeout));
    }
    finished.output
}

/// Runs `cmd` (stdin closed, output captured) and kills its process group after `timeout`.
pub fn try_run(cmd: &mut Command, timeout: Duration) -> Finished {
    cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    #[cfg(unix)]
    {
        use std::os::unix::process::CommandExt as _;
        cmd.process_group(0); // so a timeout can kill the client's children too
    }
    let started = Instant::now();
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", describe(cmd)));
    let stdout = Drain::start(child.stdout.take());
    let stderr = Drain::start(child.stderr.take());
    let mut timed_out = false;
    let status: ExitStatus = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) => {}
            Err(e) => panic!("waiting for {}: {e}", describe(cmd)),
        }
        if started.elapsed() > timeout {
            timed_out = true;
            #[cfg(unix)]
            {
                // The group leader isn't reaped yet, so its pgid still names this group.
                let _ = Command::new("kill")
                    .args(["-KILL", "--", &format!("-{}", child.id())])
                    .stderr(Stdio::null())
                    .status();
            }
            let _ = child.kill();
            break child
                .wait()
                .unwrap_or_else(|e| panic!("waiting for {}: {e}", describe(cmd)));
        }
        thread::sleep(Duration::from_millis(20));
    };
    // A grandchild that outlives the client may hold the pipes open: don't wait for it forever.
    let drain_deadline = Instant::now() + Duration::from_secs(10);
    let output = Output {
        status,
        stdout: stdout.finish(drain_deadline),
        stderr: stderr.finish(drain_deadline),
    };
    Finished {
        output,
        timed_out,
        elapsed: started.elapsed(),
    }
}

struct Drain {
    buffer: Arc<Mutex<Vec<u8>>>,
    handle: Option<JoinHandle<()>>,
}

impl Drain {
    fn start(pipe: Option<impl Read + Send + 'static>) -> Drain {
        let buffer = Arc::new(Mutex::new(Vec::new()));
        let handle = pipe.map(|mut pipe| {
            let buffer = Arc::clone(&buffer);
            thread::spawn(move || {
                let mut chunk = [0u8; 8192];
                while let Ok(n) = pipe.read(&mut chunk) {
                    if n == 0 {
                        break;
                    }
                    buffer.lock().expect("drain buffer").extend_from_slice(&chunk[..n]);
                }
            })
        });
        Drain { buffer, handle }
    }

    fn finish(mut self, deadline: Instant) -> Vec<u8> {
        if let Some(handle) = self.handle.take() {
            while !handle.is_finished() && Instant::now() < deadline {
                thread::sleep(Duration::from_millis(10));
            }
            if handle.is_finished() {
                let _ = handle.join();
            }
        }
        self.buffer.lock().expect("drain buffer").clone()
    }
}

/// The command line, for messages (no environment: tokens never go on command lines).
pub fn describe(cmd: &Command) -> String {
    let mut line = shell_word(&cmd.get_program().to_string_lossy());
    for arg in cmd.get_args() {
        line.push(' ');
        line.push_str(&shell_word(&arg.to_string_lossy()));
    }
    if let Some(dir) = cmd.get_current_dir() {
        line = format!("(cd {} && {line})", shell_word(&dir.to_string_lossy()));
    }
    line
}

fn shell_word(word: &str) -> String {
    let plain = !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:@%+,^~".contains(c));
    if plain {
        word.to_owned()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

fn failure_report(cmd: &Command, finished: &Finished, timeout: Duration) -> String {
    let outcome = if finished.timed_out {
        format!("timed out after {timeout:?} and was killed")
    } else {
        format!("failed with {} after {:.1?}", finished.output.status, finished.elapsed)
    };
    format!(
        "command {outcome}:\n  {}\n--- stdout ---\n{}\n--- stderr ---\n{}\n--------------",
        describe(cmd),
        tail(&finished.output.stdout),
        tail(&finished.output.stderr),
    )
}

/// The last 20 000 bytes of a stream, as text.
fn tail(bytes: &[u8]) -> String {
    const LIMIT: usize = 20_000;
    let text = String::from_utf8_lossy(bytes);
    if text.len() <= LIMIT {
        return text.into_owned();
    }
    let mut start = text.len() - LIMIT;
    while !text.is_char_boundary(start) {
        start += 1;
    }
    format!("[… {start} bytes cut …]\n{}", &text[start..])
}
