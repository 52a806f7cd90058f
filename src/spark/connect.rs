//! `kefu run --engine spark --spark-remote sc://HOST:PORT`: the script of
//! `kefu sql` ([`crate::spark::script`]), submitted statement by statement
//! over one Spark Connect session (Apache's Rust client, behind the cargo
//! feature `spark-connect`).

use crate::error::{Error, Result};

/// The statements of a script of [`crate::spark::script`], in order: it ends
/// every statement with `;` at the end of a line and puts comments on lines
/// of their own (`-- ...`), which are dropped.
pub fn statements(script: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    for line in script.lines() {
        if line.trim_start().starts_with("--") {
            continue;
        }
        let trimmed = line.trim_end();
        if let Some(body) = trimmed.strip_suffix(';') {
            current.push_str(body);
            let st = current.trim().to_string();
            if !st.is_empty() {
                out.push(st);
            }
            current.clear();
        } else {
            current.push_str(trimmed);
            current.push('\n');
        }
    }
    let st = current.trim().to_string();
    if !st.is_empty() {
        out.push(st);
    }
    out
}

/// Runs `script` on the Spark Connect server at `remote`, one statement
/// after the other; `progress` gets a line per statement. A failure to
/// connect is an I/O error (exit 75: worth retrying); a failing statement,
/// such as the bad-row check, is a data error (exit 65) naming it.
#[cfg(feature = "spark-connect")]
pub fn submit(remote: &str, script: &str, progress: &mut dyn FnMut(&str)) -> Result<()> {
    // The client retries an unreachable server for a long time: fail fast.
    let (host, port) = host_port(remote)?;
    let reachable = std::net::ToSocketAddrs::to_socket_addrs(&(host.as_str(), port))
        .ok()
        .into_iter()
        .flatten()
        .any(|a| {
            std::net::TcpStream::connect_timeout(&a, std::time::Duration::from_secs(10)).is_ok()
        });
    if !reachable {
        return Err(Error::Io(format!(
            "cannot connect to Spark Connect at {remote}: nothing answers on {host}:{port}"
        )));
    }
    let session = spark_connect::SparkSession::builder()
        .remote(remote)
        .get_or_create()
        .map_err(|e| Error::Io(format!("cannot connect to Spark Connect at {remote}: {e}")))?;
    let all = statements(script);
    for (k, st) in all.iter().enumerate() {
        let head: String = st
            .lines()
            .next()
            .unwrap_or_default()
            .chars()
            .take(90)
            .collect();
        progress(&format!("spark: statement {}/{}: {head}", k + 1, all.len()));
        session.sql(st).and_then(|df| df.collect()).map_err(|e| {
            Error::BadData(format!(
                "Spark at {remote} failed statement {} of {} ({head}...): {e}",
                k + 1,
                all.len()
            ))
        })?;
    }
    Ok(())
}

/// Host and port of a Spark Connect URL, `sc://HOST[:PORT][/;param=value...]`
/// (port 15002 by default).
pub fn host_port(remote: &str) -> Result<(String, u16)> {
    let bad = || {
        Error::Usage(format!(
            "--spark-remote {remote}: expected sc://HOST[:PORT]"
        ))
    };
    let rest = remote.strip_prefix("sc://").ok_or_else(bad)?;
    let authority = rest.split(['/', ';']).next().unwrap_or_default();
    if authority.is_empty() {
        return Err(bad());
    }
    match authority.rsplit_once(':') {
        Some((h, p)) if !h.is_empty() && !h.ends_with(':') => {
            let port = p.parse().map_err(|_| bad())?;
            Ok((h.trim_matches(['[', ']']).to_string(), port))
        }
        _ => Ok((authority.trim_matches(['[', ']']).to_string(), 15002)),
    }
}

/// Without the `spark-connect` feature: a usage error saying how to build it.
#[cfg(not(feature = "spark-connect"))]
pub fn submit(_remote: &str, _script: &str, _progress: &mut dyn FnMut(&str)) -> Result<()> {
    Err(Error::Usage(
        "--engine spark needs a kefu built with Spark Connect: \
         cargo build --release --features spark-connect"
            .into(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spark_remote_urls() {
        assert_eq!(
            host_port("sc://spark:15099").unwrap(),
            ("spark".to_string(), 15099)
        );
        assert_eq!(
            host_port("sc://spark").unwrap(),
            ("spark".to_string(), 15002)
        );
        assert_eq!(
            host_port("sc://h.example:443/;use_ssl=true;token=x").unwrap(),
            ("h.example".to_string(), 443)
        );
        for bad in ["spark:15002", "sc://", "sc://h:port", "http://h:1"] {
            assert!(host_port(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn statements_split_at_line_ends_and_drop_comments() {
        let s = "-- header\nSET a=1;\n\nSELECT 1,\n  ';' AS x -- not a comment line\nFROM t;\n-- tail\nINSERT INTO t SELECT 2";
        assert_eq!(
            statements(s),
            vec![
                "SET a=1".to_string(),
                "SELECT 1,\n  ';' AS x -- not a comment line\nFROM t".to_string(),
                "INSERT INTO t SELECT 2".to_string(),
            ]
        );
    }

    #[test]
    fn every_preset_script_splits_into_whole_statements() {
        use crate::rules::{RuleSet, PLATFORMS};
        let d = chrono::NaiveDate::from_ymd_opt(2026, 3, 14).unwrap();
        for (p, _) in PLATFORMS {
            let rules = RuleSet::preset(p).unwrap();
            let sql =
                crate::spark::compile(&rules, p, d, d, None, "/in/x.parquet", "/out").unwrap();
            let st = statements(&sql);
            assert!(st.len() > 5, "{p}");
            assert!(
                st.iter().all(|s| !s.ends_with(';') && !s.starts_with("--")),
                "{p}"
            );
            assert!(
                st.iter().any(|s| s.starts_with("INSERT OVERWRITE TABLE")),
                "{p}"
            );
        }
    }
}
