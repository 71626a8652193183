//! Child processes under a time limit: a test whose command hangs fails, naming the command,
//! instead of stalling the suite.

use std::io::Read;
use std::process::{Child, Command, Output, Stdio};
use std::thread;
use std::time::{Duration, Instant};

/// The longest any one command of the tests may run; the slowest (`xception check` on
/// software OpenGL with a cold shader cache) takes a few minutes.
pub const TIME_LIMIT: Duration = Duration::from_secs(600);

/// `Command::output` under [`TIME_LIMIT`]: standard input empty, both outputs captured.
pub trait OutputWithinLimit {
    fn output_within_limit(&mut self) -> Output;
}

impl OutputWithinLimit for Command {
    fn output_within_limit(&mut self) -> Output {
        let what = format!("{self:?}");
        let child = self
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("{what} did not start: {e}"));
        wait_within_limit(child, &what)
    }
}

/// Waits for `child` for at most [`TIME_LIMIT`], collecting whichever of its outputs are
/// piped; past the limit it is killed and the test fails naming `what`.
pub fn wait_within_limit(mut child: Child, what: &str) -> Output {
    fn drain(pipe: Option<impl Read + Send + 'static>) -> thread::JoinHandle<Vec<u8>> {
        thread::spawn(move || {
            let mut bytes = Vec::new();
            if let Some(mut pipe) = pipe {
                let _ = pipe.read_to_end(&mut bytes);
            }
            bytes
        })
    }
    let stdout = drain(child.stdout.take());
    let stderr = drain(child.stderr.take());
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("the child can be waited for") {
            break status;
        }
        if started.elapsed() > TIME_LIMIT {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what} was still running after {TIME_LIMIT:?}: killed");
        }
        thread::sleep(Duration::from_millis(20));
    };
    Output {
        status,
        stdout: stdout.join().expect("stdout reader"),
        stderr: stderr.join().expect("stderr reader"),
    }
}
