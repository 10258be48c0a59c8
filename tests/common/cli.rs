//! Running the `cete` client commands: one-shot (with a deadline) or in the background.

use std::fs::{self, File};
use std::io::Write;
use std::process::{Child, ExitStatus, Output, Stdio};
use std::thread;
use std::time::Instant;

use tempfile::TempDir;

use super::{hermetic_command, temp_dir, EXIT_TIMEOUT, POLL_INTERVAL};

/// Runs `cete ARGS` with no stdin; never hangs past [`EXIT_TIMEOUT`].
pub fn cli(args: &[&str]) -> Output {
    run_cli(args, None)
}

/// Runs `cete ARGS` with `input` on stdin.
pub fn cli_with_stdin(args: &[&str], input: &[u8]) -> Output {
    run_cli(args, Some(input))
}

/// Runs `cete ARGS`, asserts it succeeded and returns its stdout.
pub fn cli_ok(args: &[&str]) -> String {
    let output = cli(args);
    assert_cli_success(args, &output);
    String::from_utf8_lossy(&output.stdout).into_owned()
}

pub fn assert_cli_success(args: &[&str], output: &Output) {
    assert!(
        output.status.success(),
        "`cete {}` failed with {}\nstdout: {}\nstderr: {}",
        args.join(" "),
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// A client command that runs until stopped (`cete watch`); killed when dropped.
pub struct BackgroundCli {
    child: Child,
    dir: TempDir,
}

impl BackgroundCli {
    pub fn spawn(args: &[&str]) -> BackgroundCli {
        let dir = temp_dir();
        let stdout = File::create(dir.path().join("stdout")).expect("create stdout file");
        let stderr = File::create(dir.path().join("stderr")).expect("create stderr file");
        let child = hermetic_command()
            .args(args)
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            .spawn()
            .expect("spawn the cete CLI");
        BackgroundCli { child, dir }
    }

    /// What it printed so far.
    pub fn stdout(&self) -> String {
        fs::read_to_string(self.dir.path().join("stdout")).unwrap_or_default()
    }

    pub fn stderr(&self) -> String {
        fs::read_to_string(self.dir.path().join("stderr")).unwrap_or_default()
    }
}

impl Drop for BackgroundCli {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn run_cli(args: &[&str], input: Option<&[u8]>) -> Output {
    // Files, not pipes, so a chatty command cannot block while we poll it against a deadline.
    let dir = temp_dir();
    let (stdout_path, stderr_path) = (dir.path().join("stdout"), dir.path().join("stderr"));
    let mut command = hermetic_command();
    command
        .args(args)
        .stdin(if input.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(File::create(&stdout_path).expect("create stdout file"))
        .stderr(File::create(&stderr_path).expect("create stderr file"));
    let mut child = command.spawn().expect("spawn the cete CLI");
    if let (Some(input), Some(mut stdin)) = (input, child.stdin.take()) {
        stdin.write_all(input).expect("write the CLI's stdin");
    }
    let status = wait_with_deadline(&mut child, args);
    Output {
        status,
        stdout: fs::read(stdout_path).expect("read the CLI's stdout"),
        stderr: fs::read(stderr_path).expect("read the CLI's stderr"),
    }
}

fn wait_with_deadline(child: &mut Child, args: &[&str]) -> ExitStatus {
    let deadline = Instant::now() + EXIT_TIMEOUT;
    while Instant::now() < deadline {
        if let Some(status) = child.try_wait().expect("poll the CLI") {
            return status;
        }
        thread::sleep(POLL_INTERVAL / 5);
    }
    let _ = child.kill();
    panic!("`cete {}` did not exit within {EXIT_TIMEOUT:?}", args.join(" "));
}
