//! Playing a `kv-sim replay --trace FILE` trace: the events, a cursor in simulated time, and
//! the state of the cluster at the cursor, folded from the events before it.

use serde_json::Value;

use crate::app::{Key, Role};

/// One line of a trace.
#[derive(Debug, Clone, PartialEq)]
pub struct TraceEvent {
    pub t_ms: u64,
    pub event: String,
    pub fields: Value,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Replay {
    pub events: Vec<TraceEvent>,
    pub seed: u64,
    pub nodes: usize,
    pub end_ms: u64,
    pub cursor_ms: u64,
    pub playing: bool,
    /// Simulated milliseconds per wall millisecond while playing.
    pub speed: u64,
}

/// Events that are the nemesis at work (the ones "next fault" jumps to).
const FAULTS: &[&str] = &[
    "crash",
    "restart",
    "one_way_link",
    "link_restored",
    "split",
    "network_healed",
    "whole_cluster_crashed",
    "leader_without_quorum",
    "cut_from_leader",
    "chain",
    "disk_fault",
    "network",
    "healed",
    "node_stopped",
    "add_node",
    "promote_learner",
    "remove_member",
    "wiped_node_rejoins",
    "add_phantom_learner",
];

/// Other events the log shows: what the membership became, and the end of the run.
const SHOWN: &[&str] = &[
    "membership",
    "member_request_failed",
    "node_removed",
    "node_refused_to_start",
    "node_refused",
    "join_failed",
    "converged",
    "end",
];

impl TraceEvent {
    pub fn is_fault(&self) -> bool {
        FAULTS.contains(&self.event.as_str())
    }

    fn node(&self, field: &str) -> Option<usize> {
        self.fields.get(field)?.as_u64().map(|node| node as usize)
    }

    /// The event in a few words, as the event log shows it.
    pub fn describe(&self) -> String {
        let field = |name: &str| {
            self.fields
                .get(name)
                .map_or(String::new(), Value::to_string)
        };
        match self.event.as_str() {
            "crash" => format!("n{} crashed", field("node")),
            "restart" => format!("n{} restarted", field("node")),
            "node_start" => format!(
                "n{} started (clock {} ms off)",
                field("node"),
                field("clock_offset_ms")
            ),
            "one_way_link" => format!("link n{} -> n{} cut", field("from"), field("to")),
            "link_restored" => format!("link {} restored", field("between")),
            "split" => format!("network split: {} apart", field("side")),
            "network_healed" | "healed" => "network healed".into(),
            "whole_cluster_crashed" => "whole cluster crashed (power cut)".into(),
            "leader_without_quorum" => format!("leader n{} hears no follower", field("leader")),
            "cut_from_leader" => format!("n{} cut from leader n{}", field("node"), field("leader")),
            "chain" => format!("chain {}", field("order")),
            "disk_fault" => format!("n{} fsync fails", field("node")),
            "network" => format!("network weather: {}", field("weather")),
            "node_stopped" => format!("n{} stopped: {}", field("node"), field("error")),
            "add_node" => format!("n{} joins the cluster (--join)", field("node")),
            "add_phantom_learner" => format!(
                "a learner is added at {} and never started",
                field("peer_address")
            ),
            "node_serving" => format!("n{} serves as id {}", field("node"), field("id")),
            "promote_learner" => format!("promote learner id {}", field("id")),
            "remove_member" => format!("remove member id {}", field("id")),
            "membership" => format!(
                "configuration {}: voters {} learners {}",
                field("configuration_index"),
                field("voters"),
                field("learners")
            ),
            "member_request_failed" => format!("membership change refused: {}", field("error")),
            "node_removed" => format!(
                "n{} (id {}) was removed and stopped",
                field("node"),
                field("id")
            ),
            "node_refused_to_start" => format!("n{} refused to start: removed", field("node")),
            "node_refused" => format!("n{} refused by the members: wiped", field("node")),
            "wiped_node_rejoins" => {
                format!("n{} comes back wiped under its old id", field("node"))
            }
            "join_failed" => format!("n{} could not join: {}", field("node"), field("error")),
            "client" => format!(
                "c{} {} {} {}",
                field("process"),
                field("type").trim_matches('"'),
                field("f").trim_matches('"'),
                field("key").trim_matches('"')
            ),
            "start" => format!("seed {} with {} nodes", field("seed"), field("nodes")),
            "converged" => format!(
                "replicas converged ({} ms after the clients)",
                field("after_clients_stopped_ms")
            ),
            "end" => format!("end: problems {}", field("problems")),
            other => other.to_string(),
        }
    }
}

/// Reads a trace (JSON lines, each with `t_ms` and `event`).
pub fn load(text: &str) -> Result<Replay, String> {
    let mut events = Vec::new();
    for (number, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let fields: Value = serde_json::from_str(line)
            .map_err(|error| format!("line {}: not JSON: {error}", number + 1))?;
        let t_ms = fields.get("t_ms").and_then(Value::as_u64);
        let event = fields
            .get("event")
            .and_then(Value::as_str)
            .map(str::to_string);
        let (Some(t_ms), Some(event)) = (t_ms, event) else {
            return Err(format!(
                "line {}: no t_ms or event; is this a kv-sim trace?",
                number + 1
            ));
        };
        events.push(TraceEvent {
            t_ms,
            event,
            fields,
        });
    }
    let start = events
        .iter()
        .find(|event| event.event == "start")
        .ok_or("no start event; is this a kv-sim replay trace?")?;
    // Nodes added at runtime run on further addresses: show every address the trace names.
    let started_with = start
        .fields
        .get("nodes")
        .and_then(Value::as_u64)
        .unwrap_or(0) as usize;
    let nodes = events
        .iter()
        .filter_map(|event| event.node("node"))
        .fold(started_with, usize::max);
    let seed = start
        .fields
        .get("seed")
        .and_then(Value::as_u64)
        .unwrap_or(0);
    let end_ms = events.iter().map(|event| event.t_ms).max().unwrap_or(0);
    Ok(Replay {
        events,
        seed,
        nodes,
        end_ms,
        cursor_ms: 0,
        playing: false,
        speed: 1,
    })
}

/// One node at the cursor.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ReplayNode {
    pub up: bool,
    pub role: Role,
    pub ballot: (u64, u64),
    pub leader: u64,
    pub commit_index: u64,
    pub applied_index: u64,
    pub revision: u64,
    pub keys: u64,
}

/// The cluster at the cursor.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Frame {
    pub nodes: Vec<ReplayNode>,
    /// Network conditions in force (cut links, splits, weather).
    pub network: Vec<String>,
    /// The last faults and leader changes, (t_ms, text), oldest first.
    pub log: Vec<(u64, String)>,
    /// The last client events, (t_ms, text), oldest first.
    pub operations: Vec<(u64, String)>,
    /// Client operations completed in the second before the cursor.
    pub ops_last_second: u64,
}

/// How many log and operation lines a frame keeps.
const FRAME_LINES: usize = 50;

fn keep_last(lines: &mut Vec<(u64, String)>, line: (u64, String)) {
    lines.push(line);
    if lines.len() > FRAME_LINES * 2 {
        lines.drain(..FRAME_LINES);
    }
}

/// The state at the cursor: every event at or before it, in order.
pub fn frame_at(replay: &Replay, cursor_ms: u64) -> Frame {
    let mut frame = Frame {
        nodes: vec![ReplayNode::default(); replay.nodes],
        ..Frame::default()
    };
    let mut leader = 0;
    for event in replay
        .events
        .iter()
        .take_while(|event| event.t_ms <= cursor_ms)
    {
        let node = event
            .node("node")
            .filter(|node| (1..=replay.nodes).contains(node));
        match event.event.as_str() {
            "node_start" | "restart" => {
                if let Some(node) = node {
                    frame.nodes[node - 1] = ReplayNode {
                        up: true,
                        ..ReplayNode::default()
                    };
                }
            }
            "crash"
            | "node_stopped"
            | "node_removed"
            | "node_refused_to_start"
            | "node_refused" => {
                if let Some(node) = node {
                    frame.nodes[node - 1].up = false;
                }
            }
            "whole_cluster_crashed" => frame.nodes.iter_mut().for_each(|node| node.up = false),
            "status" => {
                if let Some(node) = node {
                    let number =
                        |name: &str| event.fields.get(name).and_then(Value::as_u64).unwrap_or(0);
                    let ballot = event.fields.get("ballot").and_then(Value::as_array);
                    let part = |index: usize| {
                        ballot
                            .and_then(|ballot| ballot.get(index))
                            .and_then(Value::as_u64)
                            .unwrap_or(0)
                    };
                    let role = match event.fields.get("role").and_then(Value::as_str) {
                        Some("ROLE_LEADER") => Role::Leader,
                        Some("ROLE_CANDIDATE") => Role::Candidate,
                        _ => Role::Follower,
                    };
                    frame.nodes[node - 1] = ReplayNode {
                        up: true,
                        role,
                        ballot: (part(0), part(1)),
                        leader: number("leader"),
                        commit_index: number("commit_index"),
                        applied_index: number("applied_index"),
                        revision: number("revision"),
                        keys: number("keys"),
                    };
                    if role == Role::Leader && leader != node {
                        leader = node;
                        keep_last(
                            &mut frame.log,
                            (
                                event.t_ms,
                                format!("n{node} leads (ballot {}.{})", part(0), part(1)),
                            ),
                        );
                    }
                }
            }
            "client" => {
                if event.fields.get("type").and_then(Value::as_str) != Some("invoke")
                    && cursor_ms.saturating_sub(event.t_ms) < 1000
                {
                    frame.ops_last_second += 1;
                }
                keep_last(&mut frame.operations, (event.t_ms, event.describe()));
            }
            _ => {}
        }
        match event.event.as_str() {
            "network_healed" | "healed" => frame.network.clear(),
            "link_restored" => {
                let between = event
                    .fields
                    .get("between")
                    .map(Value::to_string)
                    .unwrap_or_default();
                frame
                    .network
                    .retain(|condition| !condition.contains(&between));
            }
            "one_way_link" | "split" | "chain" | "leader_without_quorum" | "cut_from_leader" => {
                let pair = event.fields.get("from").zip(event.fields.get("to"));
                let tag = pair.map_or(String::new(), |(from, to)| format!(" [{from},{to}]"));
                frame.network.push(format!("{}{tag}", event.describe()));
            }
            _ => {}
        }
        if event.is_fault() || SHOWN.contains(&event.event.as_str()) {
            keep_last(&mut frame.log, (event.t_ms, event.describe()));
        }
    }
    let tail = |lines: &mut Vec<(u64, String)>| {
        let skip = lines.len().saturating_sub(FRAME_LINES);
        lines.drain(..skip);
    };
    tail(&mut frame.log);
    tail(&mut frame.operations);
    frame
}

/// The time of the first fault after `after_ms`, if any.
pub fn next_fault(replay: &Replay, after_ms: u64) -> Option<u64> {
    replay
        .events
        .iter()
        .find(|event| event.t_ms > after_ms && event.is_fault())
        .map(|event| event.t_ms)
}

/// The time of the last fault before `before_ms`, if any.
pub fn previous_fault(replay: &Replay, before_ms: u64) -> Option<u64> {
    replay
        .events
        .iter()
        .rev()
        .find(|event| event.t_ms < before_ms && event.is_fault())
        .map(|event| event.t_ms)
}

/// Moves the cursor by wall time while playing; stops at the end.
pub fn advance(replay: &mut Replay, wall_ms: u64) {
    if replay.playing {
        replay.cursor_ms = (replay.cursor_ms + wall_ms * replay.speed).min(replay.end_ms);
        if replay.cursor_ms == replay.end_ms {
            replay.playing = false;
        }
    }
}

/// Replay keys; returns whether the key was one of them.
pub fn on_key(replay: &mut Replay, key: Key) -> bool {
    let step = 100;
    match key {
        Key::Char(' ') => replay.playing = !replay.playing,
        Key::Right | Key::Char('l') => {
            replay.cursor_ms = (replay.cursor_ms + step).min(replay.end_ms)
        }
        Key::Left => replay.cursor_ms = replay.cursor_ms.saturating_sub(step),
        Key::Char('L') => replay.cursor_ms = (replay.cursor_ms + 10 * step).min(replay.end_ms),
        Key::Char('H') => replay.cursor_ms = replay.cursor_ms.saturating_sub(10 * step),
        Key::Char('n') => {
            if let Some(at) = next_fault(replay, replay.cursor_ms) {
                replay.cursor_ms = at;
            }
        }
        Key::Char('p') => {
            if let Some(at) = previous_fault(replay, replay.cursor_ms) {
                replay.cursor_ms = at;
            }
        }
        Key::Home | Key::Char('g') => replay.cursor_ms = 0,
        Key::End | Key::Char('G') => replay.cursor_ms = replay.end_ms,
        Key::Char('+') | Key::Char(']') => replay.speed = (replay.speed * 2).min(64),
        Key::Char('-') | Key::Char('[') => replay.speed = (replay.speed / 2).max(1),
        Key::Char(digit @ '0'..='9') => {
            let tenth = u64::from(digit as u8 - b'0');
            replay.cursor_ms = replay.end_ms * tenth / 10;
        }
        _ => return false,
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    pub const TRACE: &str = r#"{"event":"start","seed":7,"nodes":3,"sim_secs":30,"clients":4,"t_ms":0}
{"event":"node_start","node":1,"clock_offset_ms":5,"drift_ppm":0,"t_ms":0}
{"event":"node_start","node":2,"clock_offset_ms":5,"drift_ppm":0,"t_ms":0}
{"event":"node_start","node":3,"clock_offset_ms":5,"drift_ppm":0,"t_ms":0}
{"event":"status","node":2,"role":"ROLE_LEADER","ballot":[1,2],"leader":2,"commit_index":4,"applied_index":4,"revision":3,"keys":2,"log_time_ms":10,"t_ms":250}
{"event":"client","type":"invoke","f":"put","key":"k1","process":1,"t_ms":300}
{"event":"client","type":"ok","f":"put","key":"k1","process":1,"t_ms":310}
{"event":"one_way_link","from":1,"to":3,"t_ms":400}
{"event":"crash","node":2,"unsynced_writes_kept":0,"unsynced_writes_lost":1,"t_ms":500}
{"event":"status","node":1,"role":"ROLE_LEADER","ballot":[2,1],"leader":1,"commit_index":6,"applied_index":6,"revision":4,"keys":2,"log_time_ms":900,"t_ms":1500}
{"event":"network_healed","t_ms":2000}
{"event":"end","problems":[],"t_ms":3000}
"#;

    #[test]
    fn a_frame_folds_every_event_up_to_the_cursor() {
        let replay = load(TRACE).unwrap();
        assert_eq!((replay.seed, replay.nodes, replay.end_ms), (7, 3, 3000));
        let before = frame_at(&replay, 450);
        assert_eq!(before.nodes[1].role, Role::Leader);
        assert!(before.nodes.iter().all(|node| node.up));
        assert_eq!(before.network, ["link n1 -> n3 cut [1,3]"]);
        assert_eq!(before.ops_last_second, 1);
        let after = frame_at(&replay, 1600);
        assert!(!after.nodes[1].up);
        assert_eq!(after.nodes[0].role, Role::Leader);
        let log: Vec<&str> = after.log.iter().map(|(_, text)| text.as_str()).collect();
        assert_eq!(
            log,
            [
                "n2 leads (ballot 1.2)",
                "link n1 -> n3 cut",
                "n2 crashed",
                "n1 leads (ballot 2.1)"
            ]
        );
        assert!(frame_at(&replay, 2500).network.is_empty());
    }

    #[test]
    fn membership_changes_show_in_the_log_and_added_nodes_get_rows() {
        let trace = r#"{"event":"start","seed":9,"nodes":3,"t_ms":0}
{"event":"add_node","node":4,"t_ms":100}
{"event":"node_start","node":4,"clock_offset_ms":1,"drift_ppm":0,"joining":true,"t_ms":100}
{"event":"promote_learner","id":4,"t_ms":200}
{"event":"membership","promoted":4,"voters":[1,2,3,4],"learners":[],"configuration_index":57,"t_ms":210}
{"event":"node_removed","node":2,"id":2,"configuration_index":60,"t_ms":300}
{"event":"end","problems":[],"t_ms":400}
"#;
        let replay = load(trace).unwrap();
        assert_eq!(replay.nodes, 4, "the added node has a row");
        let frame = frame_at(&replay, 400);
        assert!(frame.nodes[3].up && !frame.nodes[1].up);
        let log: Vec<&str> = frame.log.iter().map(|(_, text)| text.as_str()).collect();
        assert_eq!(
            log,
            [
                "n4 joins the cluster (--join)",
                "promote learner id 4",
                "configuration 57: voters [1,2,3,4] learners []",
                "n2 (id 2) was removed and stopped",
                "end: problems []"
            ]
        );
    }

    #[test]
    fn keys_step_seek_and_jump_between_faults() {
        let mut replay = load(TRACE).unwrap();
        on_key(&mut replay, Key::Char('n'));
        assert_eq!(replay.cursor_ms, 400);
        on_key(&mut replay, Key::Char('n'));
        assert_eq!(replay.cursor_ms, 500);
        on_key(&mut replay, Key::Char('p'));
        assert_eq!(replay.cursor_ms, 400);
        on_key(&mut replay, Key::Right);
        assert_eq!(replay.cursor_ms, 500);
        on_key(&mut replay, Key::Char('5'));
        assert_eq!(replay.cursor_ms, 1500);
        on_key(&mut replay, Key::Char(' '));
        advance(&mut replay, 10_000);
        assert_eq!((replay.cursor_ms, replay.playing), (3000, false));
        assert!(!on_key(&mut replay, Key::Char('x')));
    }

    #[test]
    fn a_file_that_is_not_a_trace_is_refused_with_a_reason() {
        assert!(load("not json").unwrap_err().contains("line 1"));
        assert!(load(r#"{"t_ms":0,"event":"status"}"#)
            .unwrap_err()
            .contains("start"));
    }
}
