//! Which seeds a command runs: ranges from the command line (`A..B`, `fresh:N`), pinned seeds
//! from a file, and the command that replays one.

use std::path::{Path, PathBuf};

/// One seed to run, with the length it runs for and, if given, the cluster size that
/// overrides the one the seed draws.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seed {
    pub seed: u64,
    pub nodes: Option<u64>,
    pub sim_secs: u64,
}

impl Seed {
    /// The command that runs this seed again, with `nodes` (the cluster size the run had, when
    /// known) and the planted bug it ran with.
    pub fn replay_command(self, nodes: Option<u64>, bug: Option<&str>) -> String {
        let features = if bug.is_some() {
            " --features planted-bugs"
        } else {
            ""
        };
        let nodes = nodes
            .or(self.nodes)
            .map_or(String::new(), |nodes| format!(" --nodes {nodes}"));
        let bug = bug.map_or(String::new(), |bug| format!(" --bug {bug}"));
        format!(
            "RUSTFLAGS=\"--cfg madsim\" CARGO_TARGET_DIR=target/madsim cargo run --release -p paxkv-sim{features} --bin kv-sim -- replay {}{nodes} --sim-secs {}{bug}",
            self.seed, self.sim_secs
        )
    }
}

/// Seeds `first..end` (`end` excluded, never empty).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SeedRange {
    pub first: u64,
    pub end: u64,
}

impl SeedRange {
    /// Parses `A..B`, or `fresh:N`: N seeds from a start drawn from the wall clock.
    pub fn parse(text: &str) -> Result<SeedRange, String> {
        let number = |text: &str| {
            text.parse::<u64>()
                .map_err(|_| format!("`{text}` is not a number"))
        };
        let (first, end) = if let Some(count) = text.strip_prefix("fresh:") {
            let start = fresh_start();
            (start, start + number(count)?)
        } else {
            let (first, end) = text.split_once("..").ok_or("--seeds takes A..B")?;
            (number(first)?, number(end)?)
        };
        if end <= first {
            return Err("--seeds A..B needs A < B".into());
        }
        Ok(SeedRange { first, end })
    }

    pub fn seeds(self, nodes: Option<u64>, sim_secs: u64) -> Vec<Seed> {
        (self.first..self.end)
            .map(|seed| Seed {
                seed,
                nodes,
                sim_secs,
            })
            .collect()
    }
}

/// A start for fresh seeds, from the wall clock: different on every CI run.
fn fresh_start() -> u64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs());
    (now % 100_000_000) * 1000
}

/// Why a file of pinned seeds was refused.
#[derive(Debug, thiserror::Error)]
pub enum PinnedSeedsError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}:{line}: expected SEED NODES(3|5) SIM_SECS(>=3)")]
    Line { path: PathBuf, line: usize },
    #[error("{path} pins no seeds")]
    Empty { path: PathBuf },
}

/// Reads pinned seeds: `SEED NODES SIM_SECS [# why]` per line; `#` starts a comment.
pub fn read_pinned(path: &Path) -> Result<Vec<Seed>, PinnedSeedsError> {
    let text = std::fs::read_to_string(path).map_err(|source| PinnedSeedsError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    parse_pinned(&text, path)
}

fn parse_pinned(text: &str, path: &Path) -> Result<Vec<Seed>, PinnedSeedsError> {
    let mut seeds = Vec::new();
    for (number, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or_default().trim();
        if line.is_empty() {
            continue;
        }
        let bad_line = || PinnedSeedsError::Line {
            path: path.to_path_buf(),
            line: number + 1,
        };
        let fields: Vec<u64> = line
            .split_whitespace()
            .map(|field| field.parse::<u64>())
            .collect::<Result<_, _>>()
            .map_err(|_| bad_line())?;
        match fields.as_slice() {
            [seed, nodes @ (3 | 5), sim_secs] if *sim_secs >= 3 => seeds.push(Seed {
                seed: *seed,
                nodes: Some(*nodes),
                sim_secs: *sim_secs,
            }),
            _ => return Err(bad_line()),
        }
    }
    if seeds.is_empty() {
        return Err(PinnedSeedsError::Empty {
            path: path.to_path_buf(),
        });
    }
    Ok(seeds)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // tests may unwrap: a panic is the failure report

    use super::*;

    #[test]
    fn a_range_is_first_to_end_excluded_and_never_empty() {
        assert_eq!(SeedRange::parse("3..7").unwrap().seeds(None, 30).len(), 4);
        assert!(SeedRange::parse("5..5").is_err());
        assert!(SeedRange::parse("7..3").is_err());
        assert!(SeedRange::parse("3-7").is_err());
        assert!(SeedRange::parse("a..7").is_err());
    }

    #[test]
    fn fresh_seeds_are_as_many_as_asked() {
        let range = SeedRange::parse("fresh:20").unwrap();
        assert_eq!(range.end - range.first, 20);
        assert!(SeedRange::parse("fresh:0").is_err());
    }

    #[test]
    fn pinned_seeds_keep_their_cluster_size_and_skip_comments() {
        let text = "# why\n\n1 3 30  # a comment\n96193461300 5 12\n";
        let seeds = parse_pinned(text, Path::new("pins")).unwrap();
        assert_eq!(
            seeds,
            vec![
                Seed {
                    seed: 1,
                    nodes: Some(3),
                    sim_secs: 30
                },
                Seed {
                    seed: 96193461300,
                    nodes: Some(5),
                    sim_secs: 12
                }
            ]
        );
    }

    #[test]
    fn a_bad_pinned_line_is_named_by_its_number() {
        for text in [
            "1 3 30\n2 4 30\n",
            "1 3 30\n2 3 2\n",
            "1 3 30\n2 3\n",
            "1 3 30\nx 3 30\n",
        ] {
            let error = parse_pinned(text, Path::new("pins")).unwrap_err();
            assert!(
                matches!(error, PinnedSeedsError::Line { line: 2, .. }),
                "{text:?}: {error}"
            );
        }
        assert!(matches!(
            parse_pinned("# nothing\n", Path::new("pins")),
            Err(PinnedSeedsError::Empty { .. })
        ));
    }

    #[test]
    fn a_replay_command_names_the_cluster_size_and_the_bug() {
        let seed = Seed {
            seed: 42,
            nodes: None,
            sim_secs: 30,
        };
        let command = seed.replay_command(Some(5), Some("stale-clock"));
        assert!(command.contains("--features planted-bugs"), "{command}");
        assert!(
            command.ends_with("replay 42 --nodes 5 --sim-secs 30 --bug stale-clock"),
            "{command}"
        );
        let command = seed.replay_command(None, None);
        assert!(command.ends_with("replay 42 --sim-secs 30"), "{command}");
        assert!(!command.contains("--features"), "{command}");
    }
}
