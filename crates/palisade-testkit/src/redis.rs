//! A real `redis-server` on a free loopback port, stopped on drop. `scripts/test` installs the
//! server; a missing one fails the test with a message that says so.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::{free_port, TempDir};

/// A running (or stopped) redis-server.
pub struct RedisServer {
    port: u16,
    password: Option<String>,
    tls: Option<(PathBuf, PathBuf, PathBuf)>,
    child: Option<Child>,
    dir: TempDir,
}

impl RedisServer {
    /// Starts a server without a password.
    pub fn start() -> Self {
        Self::start_with(None, None)
    }

    /// Starts a server with `requirepass` and, with `tls` = (cert, key, ca), TLS only.
    pub fn start_with(password: Option<&str>, tls: Option<(PathBuf, PathBuf, PathBuf)>) -> Self {
        let mut s = RedisServer {
            port: free_port(),
            password: password.map(str::to_string),
            tls,
            child: None,
            dir: TempDir::new("redis"),
        };
        s.resume();
        s
    }

    /// Its port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `redis://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        let scheme = if self.tls.is_some() {
            "rediss"
        } else {
            "redis"
        };
        format!("{scheme}://127.0.0.1:{}", self.port)
    }

    /// Kills the server (as a crash would: no shutdown, data gone).
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts the server again on the same port, empty.
    pub fn resume(&mut self) {
        self.kill();
        let port = self.port.to_string();
        let mut cmd = Command::new("redis-server");
        cmd.current_dir(self.dir.path())
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .args(["--protected-mode", "no"]);
        match &self.tls {
            None => {
                cmd.args(["--port", &port]);
            }
            Some((cert, key, ca)) => {
                cmd.args(["--port", "0", "--tls-port", &port])
                    .arg("--tls-cert-file")
                    .arg(cert)
                    .arg("--tls-key-file")
                    .arg(key)
                    .arg("--tls-ca-cert-file")
                    .arg(ca)
                    .args(["--tls-auth-clients", "no"]);
            }
        }
        if let Some(p) = &self.password {
            cmd.args(["--requirepass", p]);
        }
        let child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start redis-server ({e}); scripts/test installs it (apt-get install redis-server)")
            });
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Runs one command over plain TCP (servers without TLS only) and returns the raw reply.
    pub fn command(&self, args: &[&str]) -> String {
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut out = String::new();
        let mut send = |args: &[&str]| {
            let mut frame = format!("*{}\r\n", args.len());
            for a in args {
                frame.push_str(&format!("${}\r\n{a}\r\n", a.len()));
            }
            s.write_all(frame.as_bytes()).unwrap();
            let mut buf = [0u8; 65536];
            let n = s.read(&mut buf).unwrap();
            String::from_utf8_lossy(&buf[..n]).into_owned()
        };
        if let Some(p) = &self.password {
            send(&["AUTH", p]);
        }
        out.push_str(&send(args));
        out
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}
