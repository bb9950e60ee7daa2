//! The markdown table of a run: one row per load and server, with each row's rate against
//! the oidc-provider row of its group and against the trivial handler.

use std::path::Path;

use anyhow::Context;
use serde_json::Value;

fn num(v: &Value, key: &str) -> f64 {
    v[key].as_f64().unwrap_or(0.0)
}

pub fn table(file: &Path) -> anyhow::Result<()> {
    let text =
        std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    let rows: Vec<Value> = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(serde_json::from_str)
        .collect::<Result<_, _>>()
        .context("a line is not JSON")?;
    let trivial = rows
        .iter()
        .find(|r| r["mode"] == "trivial")
        .map(|r| num(r, "rate"));
    let mut groups: Vec<&str> = Vec::new();
    for r in &rows {
        let g = r["group"].as_str().unwrap_or("");
        if !groups.contains(&g) {
            groups.push(g);
        }
    }
    println!(
        "| load | server | rate | p50 ms | p99 ms | p999 ms | slow_down | unexpected | server CPU µs/req | server RSS MB | × oidc-provider | × trivial |"
    );
    println!("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for g in groups {
        let in_group: Vec<&Value> = rows.iter().filter(|r| r["group"] == g).collect();
        let peer = in_group
            .iter()
            .find(|r| {
                r["label"]
                    .as_str()
                    .is_some_and(|l| l.starts_with("oidc-provider"))
            })
            .map(|r| num(r, "rate"));
        for r in in_group {
            let rate = num(r, "rate");
            // Devices poll at their server's interval: their rate is set by the interval.
            let vs_peer = match peer {
                Some(p) if p > 0.0 && r["mode"] != "devices" => format!("{:.2}×", rate / p),
                _ => "—".into(),
            };
            let per_request = matches!(r["mode"].as_str(), Some("poll" | "authorize"));
            let vs_trivial = match trivial {
                Some(t) if t > 0.0 && per_request => format!("{:.0}%", 100.0 * rate / t),
                _ => "—".into(),
            };
            let server = &r["server"];
            let (cpu, rss) = if server.is_object() {
                (
                    format!("{:.0}", num(server, "cpu_us_per_request")),
                    // Several processes (PostgreSQL): PSS, so shared memory counts once.
                    if server["processes"].as_u64().unwrap_or(1) > 1 {
                        format!("{:.0} (PSS)", num(server, "pss_mb_after"))
                    } else {
                        format!("{:.0}", num(server, "rss_mb_after"))
                    },
                )
            } else {
                ("—".into(), "—".into())
            };
            println!(
                "| {g} | {} | {:.0} {} | {:.2} | {:.2} | {:.2} | {} | {} | {cpu} | {rss} | {vs_peer} | {vs_trivial} |",
                r["label"].as_str().unwrap_or(""),
                rate,
                r["unit"].as_str().unwrap_or(""),
                num(r, "p50_ms"),
                num(r, "p99_ms"),
                num(r, "p999_ms"),
                r["slow_down"],
                r["unexpected"],
            );
        }
    }
    let memory: Vec<&Value> = rows
        .iter()
        .filter(|r| r.get("rss_bytes_per_pending_code").is_some())
        .collect();
    if !memory.is_empty() {
        println!();
        println!("| server | idle RSS MB | pending codes | RSS growth per pending code, bytes |");
        println!("|---|---:|---:|---:|");
        for r in memory {
            println!(
                "| {} | {:.1} | {} | {:.0} |",
                r["label"].as_str().unwrap_or(""),
                num(&r["server"], "idle_rss_mb"),
                r["pending_codes"],
                num(r, "rss_bytes_per_pending_code"),
            );
        }
    }
    Ok(())
}
