//! Rust client for `oracle.py`, the libsrtp oracle, shared by the test crates that
//! check ferrelay's SRTP against libsrtp (include it with `#[path] mod oracle;`).
//!
//! Needs a Python with `pylibsrtp`: the interpreter named by `FERRELAY_PYTHON`
//! (scripts/test.sh points it at the project's virtualenv), else `python3`.
//! Without it `Oracle::start` panics with the install line, unless
//! `FERRELAY_SKIP_INTEROP=1` is set, when it returns `None`.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};

/// A running `oracle.py`, spoken to one request line at a time.
#[derive(Debug)]
pub struct Oracle {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl Oracle {
    /// Starts the oracle, or explains why it cannot (None only when skipping is allowed).
    pub fn start() -> Option<Oracle> {
        // Both including crates sit below the repository root, which holds the script.
        let script = Path::new(env!("CARGO_MANIFEST_DIR"))
            .ancestors()
            .map(|d| d.join("tests/interop/srtp/oracle.py"))
            .find(|p| p.exists())
            .expect("tests/interop/srtp/oracle.py above the crate directory");
        let skip = std::env::var("FERRELAY_SKIP_INTEROP").is_ok_and(|v| v == "1");
        let fail = |why: String| -> Option<Oracle> {
            if skip {
                eprintln!("libsrtp interop SKIPPED (FERRELAY_SKIP_INTEROP=1): {why}");
                None
            } else {
                panic!(
                    "libsrtp interop cannot run: {why}\n\
                     install it with `python3 -m pip install pylibsrtp`, \
                     or set FERRELAY_SKIP_INTEROP=1 to skip this test"
                );
            }
        };
        let python = std::env::var("FERRELAY_PYTHON").unwrap_or_else(|_| "python3".into());
        let mut child = match Command::new(&python)
            .arg(&script)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
        {
            Ok(c) => c,
            Err(e) => return fail(format!("cannot start {python} {}: {e}", script.display())),
        };
        let stdin = child.stdin.take().unwrap();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut first = String::new();
        stdout.read_line(&mut first).unwrap_or(0);
        if !first.starts_with("ready") {
            let _ = child.kill();
            let _ = child.wait();
            return fail(format!("oracle said {:?}", first.trim()));
        }
        Some(Oracle {
            child,
            stdin,
            stdout,
        })
    }

    /// Sends one request line; `Ok(bytes)` for `ok [hex]`, `Err(line)` for anything else.
    pub fn ask(&mut self, line: &str) -> Result<Vec<u8>, String> {
        writeln!(self.stdin, "{line}").expect("oracle stdin");
        self.stdin.flush().expect("oracle flush");
        let mut reply = String::new();
        self.stdout.read_line(&mut reply).expect("oracle stdout");
        let reply = reply.trim();
        if let Some(rest) = reply.strip_prefix("ok") {
            Ok(unhex(rest.trim()))
        } else {
            Err(reply.to_string())
        }
    }
}

impl Drop for Oracle {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Lower-case hex, the oracle's wire form for bytes.
pub fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Inverse of [`hex`]; panics on malformed input (the oracle only writes valid hex).
pub fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}
