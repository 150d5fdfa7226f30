//! ferrelay-ng: an NG command-line client for operators, for ferrelay and
//! rtpengine alike. Prints the reply as bencode (default) or JSON (`--json`);
//! offer and answer read their SDP from a file or stdin (`-`).

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use clap::{Args as ClapArgs, Parser, Subcommand};
use ferrelay::ng::Value;
use ferrelay_tools::NgClient;
use ferrelay_tools::ng::{request, result, to_json};

/// NG control client (rtpengine's bencode protocol over UDP).
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// The relay's NG address.
    #[arg(
        long,
        short = 'n',
        default_value = "127.0.0.1:2223",
        env = "FERRELAY_NG"
    )]
    ng: SocketAddr,
    /// Print the reply as JSON instead of bencode.
    #[arg(long, global = true)]
    json: bool,
    /// Reply timeout per try, ms (three tries).
    #[arg(long, default_value_t = 1000, global = true)]
    timeout_ms: u64,
    #[command(subcommand)]
    cmd: Cmd,
}

/// Keys every call command takes.
#[derive(Debug, ClapArgs)]
struct CallKeys {
    #[arg(long)]
    call_id: String,
    #[arg(long)]
    from_tag: Option<String>,
    #[arg(long)]
    to_tag: Option<String>,
    /// NG flags, repeatable (e.g. --flag trust-address).
    #[arg(long = "flag")]
    flags: Vec<String>,
    /// Extra string keys as key=value, repeatable (e.g. --set transport-protocol=RTP/SAVP).
    #[arg(long = "set")]
    set: Vec<String>,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Liveness check: the relay answers pong.
    Ping,
    /// Offer SDP for a call (SDP from --sdp FILE, or stdin with -).
    Offer {
        #[command(flatten)]
        keys: CallKeys,
        #[arg(long, default_value = "-")]
        sdp: String,
    },
    /// Answer SDP for a call.
    Answer {
        #[command(flatten)]
        keys: CallKeys,
        #[arg(long, default_value = "-")]
        sdp: String,
    },
    /// Delete a call (or one party with --from-tag/--to-tag).
    Delete {
        #[command(flatten)]
        keys: CallKeys,
    },
    /// A call's streams and counters.
    Query {
        #[command(flatten)]
        keys: CallKeys,
    },
    /// Call-ids the relay holds.
    List {
        /// Most call-ids returned.
        #[arg(long)]
        limit: Option<i64>,
    },
    /// Relay-wide counters.
    Statistics,
}

fn read_sdp(from: &str) -> anyhow::Result<String> {
    let mut s = String::new();
    if from == "-" {
        std::io::stdin()
            .read_to_string(&mut s)
            .context("reading SDP from stdin")?;
    } else {
        s = std::fs::read_to_string(from).with_context(|| format!("reading SDP from {from}"))?;
    }
    anyhow::ensure!(
        s.starts_with("v="),
        "{from} does not look like SDP (no v= first)"
    );
    Ok(s)
}

fn call_request(command: &str, k: &CallKeys, sdp: Option<String>) -> anyhow::Result<Value> {
    let mut d = vec![
        ("command", Value::str(command)),
        ("call-id", Value::str(&k.call_id)),
    ];
    if let Some(t) = &k.from_tag {
        d.push(("from-tag", Value::str(t)));
    }
    if let Some(t) = &k.to_tag {
        d.push(("to-tag", Value::str(t)));
    }
    if let Some(s) = &sdp {
        d.push(("sdp", Value::str(s)));
    }
    if !k.flags.is_empty() {
        d.push((
            "flags",
            Value::List(k.flags.iter().map(|f| Value::str(f)).collect()),
        ));
    }
    let mut v = request(d);
    if let Value::Dict(entries) = &mut v {
        for kv in &k.set {
            let (key, val) = kv
                .split_once('=')
                .with_context(|| format!("--set {kv}: expected key=value"))?;
            entries.push((key.as_bytes().to_vec(), Value::str(val)));
        }
    }
    Ok(v)
}

fn main() -> anyhow::Result<()> {
    let a = Args::parse();
    let req = match &a.cmd {
        Cmd::Ping => request(vec![("command", Value::str("ping"))]),
        Cmd::Offer { keys, sdp } => call_request("offer", keys, Some(read_sdp(sdp)?))?,
        Cmd::Answer { keys, sdp } => call_request("answer", keys, Some(read_sdp(sdp)?))?,
        Cmd::Delete { keys } => call_request("delete", keys, None)?,
        Cmd::Query { keys } => call_request("query", keys, None)?,
        Cmd::List { limit } => {
            let mut d = vec![("command", Value::str("list"))];
            if let Some(l) = limit {
                d.push(("limit", Value::Int(*l)));
            }
            request(d)
        }
        Cmd::Statistics => request(vec![("command", Value::str("statistics"))]),
    };
    let mut client = NgClient::new(a.ng, Duration::from_millis(a.timeout_ms))?;
    let reply = client.call(&req)?;
    let mut out = std::io::stdout().lock();
    if a.json {
        writeln!(out, "{}", serde_json::to_string_pretty(&to_json(&reply))?)?;
    } else {
        out.write_all(&reply.encode())?;
        writeln!(out)?;
    }
    // Exit status tells scripts whether the relay did it.
    match result(&reply) {
        "ok" | "pong" => Ok(()),
        r => {
            drop(out);
            let reason = reply
                .get("error-reason")
                .and_then(Value::as_str)
                .unwrap_or("");
            eprintln!("ferrelay-ng: result {r} {reason}");
            std::process::exit(1)
        }
    }
}
