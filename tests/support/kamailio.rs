//! Kamailio in the foreground (`-DD -E`) with a configuration the test writes from a
//! template in `tests/kamailio/`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use crate::process::Peer;

/// A running Kamailio proxy on one loopback UDP port.
#[derive(Debug)]
pub struct Kamailio {
    pub peer: Peer,
    pub sip: SocketAddr,
}

impl Kamailio {
    /// Writes `tests/kamailio/<template>` with SIP_PORT and NG_PORT filled (plus
    /// `vars`), checks it with `kamailio -c`, then starts it and waits until its
    /// `rtpengine` module has reached the relay.
    pub fn start(
        template: &str,
        sip_port: u16,
        ng: SocketAddr,
        vars: &[(&str, String)],
    ) -> Kamailio {
        let bin = crate::require("kamailio", "kamailio");
        let dir = crate::scratch_dir("kamailio");
        let mut all = vec![
            ("SIP_PORT", sip_port.to_string()),
            ("NG_PORT", ng.port().to_string()),
            ("MODULES", module_dir().display().to_string()),
        ];
        all.extend(vars.iter().cloned());
        let cfg = dir.join("kamailio.cfg");
        std::fs::write(
            &cfg,
            crate::fill_template(&format!("kamailio/{template}"), &all),
        )
        .expect("write kamailio.cfg");
        let check = Command::new(&bin)
            .arg("-c")
            .arg("-f")
            .arg(&cfg)
            .output()
            .expect("run kamailio -c");
        assert!(
            check.status.success(),
            "kamailio rejects {}:\n{}",
            cfg.display(),
            String::from_utf8_lossy(&check.stderr)
        );
        let mut cmd = Command::new(&bin);
        cmd.args(["-DD", "-E", "-m", "32", "-M", "8", "-f"])
            .arg(&cfg)
            .args(["-Y", &dir.display().to_string(), "-P"])
            .arg(dir.join("kamailio.pid"));
        let mut peer = Peer::spawn("kamailio", cmd, &dir.join("kamailio.log"));
        peer.wait_log("support for it enabled", Duration::from_secs(10));
        Kamailio {
            peer,
            sip: SocketAddr::from(([127, 0, 0, 1], sip_port)),
        }
    }
}

/// Debian keeps Kamailio's modules under the multiarch directory
/// (`/usr/lib/<triplet>/kamailio/modules`); the stock `rtpengine.so` must be there.
fn module_dir() -> PathBuf {
    let multiarch = std::fs::read_dir("/usr/lib")
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .map(|e| e.path().join("kamailio/modules"));
    std::iter::once(PathBuf::from("/usr/lib/kamailio/modules"))
        .chain(multiarch)
        .find(|d| d.join("rtpengine.so").is_file())
        .unwrap_or_else(|| {
            panic!("Kamailio's rtpengine.so not found: install the Debian package `kamailio`")
        })
}
