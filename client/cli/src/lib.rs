//! The flags every paxkv command-line tool uses to reach a cluster (kvctl, kv-top,
//! kv-bench), kept out of the client library so that it depends on no argument parser.

use std::time::Duration;

use paxkv_client::{parse_endpoints, ClientConfig, ClientError};

/// The flags every command-line tool uses to reach a cluster (kvctl, kv-top).
#[derive(Debug, Clone, clap::Args)]
pub struct ClusterArgs {
    /// The nodes, host:port separated by commas (IPv6 in brackets).
    #[arg(
        long,
        global = true,
        env = "PAXKV_ENDPOINTS",
        default_value = "[::1]:7001,[::1]:7002,[::1]:7003"
    )]
    pub endpoints: String,
    /// File holding the cluster secret (or set PAXKV_CLUSTER_SECRET).
    #[arg(long, global = true, env = "PAXKV_CLUSTER_SECRET_FILE")]
    pub cluster_secret_file: Option<std::path::PathBuf>,
}

/// A duration as people write it: `300ms`, `5s`, `2m`, or a bare number of seconds (`1.5`);
/// zero is allowed (see `parse_timeout`).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: f64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration (such as 300ms, 5s or 2m)"))?;
    let seconds = match unit.trim() {
        "ms" => number / 1000.0,
        "" | "s" => number,
        "m" => number * 60.0,
        other => {
            return Err(format!(
                "unknown unit {other:?} in {text:?} (use ms, s or m)"
            ))
        }
    };
    if !(seconds >= 0.0 && seconds.is_finite() && seconds < 1e9) {
        return Err(format!("{text:?} is not a duration"));
    }
    Ok(Duration::from_secs_f64(seconds))
}

/// A duration that must be more than zero (a timeout).
pub fn parse_timeout(text: &str) -> Result<Duration, String> {
    match parse_duration(text)? {
        Duration::ZERO => Err(format!("{text:?}: a timeout must be more than zero")),
        duration => Ok(duration),
    }
}

impl ClusterArgs {
    pub fn endpoint_list(&self) -> Vec<String> {
        parse_endpoints(&self.endpoints)
    }

    /// The client settings: the endpoints, and the secret from the file if one is given, else
    /// from the `PAXKV_CLUSTER_SECRET` environment variable, else none.
    pub fn config(&self, timeout: Duration) -> Result<ClientConfig, ClientError> {
        let secret = match &self.cluster_secret_file {
            Some(file) => Some(std::fs::read(file).map_err(|error| {
                ClientError::InvalidArgument(
                    format!(
                        "cannot read the cluster secret file {}: {error}",
                        file.display()
                    )
                    .into(),
                )
            })?),
            None => std::env::var("PAXKV_CLUSTER_SECRET")
                .ok()
                .map(String::into_bytes),
        };
        let mut config = ClientConfig::new(self.endpoint_list()).timeout(timeout);
        config.secret = secret;
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_take_units_and_refuse_nonsense() {
        assert_eq!(parse_timeout("300ms"), Ok(Duration::from_millis(300)));
        assert_eq!(parse_timeout("5s"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_timeout("1.5"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_timeout("2m"), Ok(Duration::from_secs(120)));
        for bad in ["", "s", "0s", "-1s", "5h", "five", "1e999"] {
            assert!(parse_timeout(bad).is_err(), "{bad:?} was taken");
        }
        // (kv-bench's cases, from when it had a parser of its own)
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1.5"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("0s"), Ok(Duration::ZERO));
        assert!(parse_duration("ten").is_err());
        assert!(parse_duration("5h").is_err());
        assert!(parse_duration("-1s").is_err());
        assert!(parse_duration("99999999999999999999999").is_err());
    }
}
