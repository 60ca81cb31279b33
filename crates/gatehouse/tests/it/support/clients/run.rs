//! Running a command with a timeout, capturing its output, and panicking with everything useful.
//! [`start`] runs one in the background instead, to answer its prompts ([`Running::expect`],
//! [`Running::send_line`]) or act on what it prints ([`Running::wait_for_line`]).

use std::io::{Read, Write as _};
use std::process::{Child, ChildStdin, Command, Output, Stdio};
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
        panic!("{}", failure_report(&describe(cmd), &finished, timeout));
    }
    finished.output
}

/// Runs `cmd`, typing each answer after its prompt appears (in order), as a person at a terminal
/// would; panics unless it succeeds within [`COMMAND_TIMEOUT`].
pub fn run_answering(cmd: &mut Command, answers: &[(&str, &str)]) -> Output {
    let mut running = start(cmd);
    for (prompt, answer) in answers {
        running.expect(prompt);
        running.send_line(answer);
    }
    running.finish_ok()
}

/// Runs `cmd` with [`COMMAND_TIMEOUT`] for a refusal: panics unless it exits unsuccessfully in
/// time, and returns its output.
pub fn run_failing(cmd: &mut Command) -> Output {
    let finished = try_run(cmd, COMMAND_TIMEOUT);
    if finished.timed_out || finished.output.status.success() {
        let report = failure_report(&describe(cmd), &finished, COMMAND_TIMEOUT);
        panic!("expected a failure, but the {report}");
    }
    finished.output
}

/// stdout and stderr of `output`, one after the other, as text.
pub fn output_text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// Runs `cmd` (stdin closed, output captured) and kills its process group after `timeout`.
pub fn try_run(cmd: &mut Command, timeout: Duration) -> Finished {
    spawn(cmd, Stdio::null(), timeout).finish()
}

/// Starts `cmd` with a stdin to type into and its output captured; everything it does must end
/// within [`COMMAND_TIMEOUT`] of now.
pub fn start(cmd: &mut Command) -> Running {
    spawn(cmd, Stdio::piped(), COMMAND_TIMEOUT)
}

fn spawn(cmd: &mut Command, stdin: Stdio, timeout: Duration) -> Running {
    cmd.stdin(stdin).stdout(Stdio::piped()).stderr(Stdio::piped());
    #[cfg(unix)]
    {
        use std::os::unix::process::CommandExt as _;
        cmd.process_group(0); // so a timeout can kill the client's children too
    }
    let started = Instant::now();
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", describe(cmd)));
    Running {
        description: describe(cmd),
        stdin: child.stdin.take(),
        stdout: Drain::start(child.stdout.take()),
        stderr: Drain::start(child.stderr.take()),
        cursors: [0, 0],
        child,
        started,
        timeout,
        reaped: false,
    }
}

/// A command running in the background (see [`start`]). Dropping it kills its process group.
pub struct Running {
    child: Child,
    description: String,
    stdin: Option<ChildStdin>,
    stdout: Drain,
    stderr: Drain,
    /// How far [`Running::expect`] has read stdout and stderr.
    cursors: [usize; 2],
    started: Instant,
    timeout: Duration,
    reaped: bool,
}

impl Running {
    /// Waits until `needle` appears on stdout or stderr after the previous match (a prompt,
    /// say); panics if the command exits or runs out of time first.
    pub fn expect(&mut self, needle: &str) {
        self.wait_until(&format!("{needle:?}"), |texts, cursors| {
            (0..2).find_map(|i| {
                let found = texts[i].get(cursors[i]..)?.find(needle)?;
                cursors[i] += found + needle.len();
                Some(())
            })
        });
    }

    /// Waits for a complete line (stdout or stderr) for which `pick` returns something, and
    /// returns that; panics if the command exits or runs out of time first.
    pub fn wait_for_line<T>(&mut self, what: &str, pick: impl Fn(&str) -> Option<T>) -> T {
        self.wait_until(what, |texts, _| {
            texts
                .iter()
                .flat_map(|text| text.split_inclusive('\n').filter(|line| line.ends_with('\n')))
                .find_map(|line| pick(line.trim_end()))
        })
    }

    /// True while the command hasn't exited.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Types `line` and Enter into the command's stdin.
    pub fn send_line(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("stdin is open until finish()");
        if let Err(e) = stdin
            .write_all(format!("{line}\n").as_bytes())
            .and_then(|()| stdin.flush())
        {
            let report = self.report(&format!("could not type into stdin: {e}"));
            panic!("{report}");
        }
    }

    /// Closes stdin and waits for the command to exit (killing it at the deadline).
    pub fn finish(mut self) -> Finished {
        self.stdin = None;
        let mut timed_out = false;
        let status = loop {
            match self.child.try_wait() {
                Ok(Some(status)) => break status,
                Ok(None) => {}
                Err(e) => panic!("waiting for {}: {e}", self.description),
            }
            if self.started.elapsed() > self.timeout {
                timed_out = true;
                self.kill_group();
                break self
                    .child
                    .wait()
                    .unwrap_or_else(|e| panic!("waiting for {}: {e}", self.description));
            }
            thread::sleep(Duration::from_millis(20));
        };
        self.reaped = true;
        // A grandchild that outlives the client may hold the pipes open: don't wait for it forever.
        let drain_deadline = Instant::now() + Duration::from_secs(10);
        let output = Output {
            status,
            stdout: self.stdout.finish(drain_deadline),
            stderr: self.stderr.finish(drain_deadline),
        };
        Finished {
            output,
            timed_out,
            elapsed: self.started.elapsed(),
        }
    }

    /// Like [`Running::finish`], but panics (with all output) unless the command succeeded.
    pub fn finish_ok(self) -> Output {
        let description = self.description.clone();
        let timeout = self.timeout;
        let finished = self.finish();
        if finished.timed_out || !finished.output.status.success() {
            panic!("{}", failure_report(&description, &finished, timeout));
        }
        finished.output
    }

    /// Polls the output until `found` returns something (it may move the cursors).
    fn wait_until<T>(&mut self, what: &str, mut found: impl FnMut(&[String; 2], &mut [usize; 2]) -> Option<T>) -> T {
        loop {
            let texts = [self.stdout.text(), self.stderr.text()];
            if let Some(value) = found(&texts, &mut self.cursors) {
                return value;
            }
            let exited = !matches!(self.child.try_wait(), Ok(None));
            if exited || self.started.elapsed() > self.timeout {
                // One last look: the output may have arrived just before the exit.
                let texts = [self.stdout.text(), self.stderr.text()];
                if let Some(value) = found(&texts, &mut self.cursors) {
                    return value;
                }
                let why = if exited { "the command exited" } else { "time ran out" };
                let report = self.report(&format!("{why} while waiting for {what}"));
                panic!("{report}");
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    fn report(&mut self, problem: &str) -> String {
        self.kill_group();
        format!(
            "{problem} after {:.1?}:\n  {}\n--- stdout ---\n{}\n--- stderr ---\n{}\n--------------",
            self.started.elapsed(),
            self.description,
            tail(self.stdout.text().as_bytes()),
            tail(self.stderr.text().as_bytes()),
        )
    }

    fn kill_group(&mut self) {
        #[cfg(unix)]
        {
            // Until the leader is reaped, its pgid still names this group.
            let _ = Command::new("kill")
                .args(["-KILL", "--", &format!("-{}", self.child.id())])
                .stderr(Stdio::null())
                .status();
        }
        let _ = self.child.kill();
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if !self.reaped {
            self.kill_group();
            let _ = self.child.wait();
        }
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

    /// What arrived so far, as text.
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.buffer.lock().expect("drain buffer")).into_owned()
    }

    fn finish(&mut self, deadline: Instant) -> Vec<u8> {
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

fn failure_report(description: &str, finished: &Finished, timeout: Duration) -> String {
    let outcome = if finished.timed_out {
        format!("timed out after {timeout:?} and was killed")
    } else if finished.output.status.success() {
        format!("succeeded after {:.1?}", finished.elapsed)
    } else {
        format!("failed with {} after {:.1?}", finished.output.status, finished.elapsed)
    };
    format!(
        "command {outcome}:\n  {}\n--- stdout ---\n{}\n--- stderr ---\n{}\n--------------",
        description,
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
