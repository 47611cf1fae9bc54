//! The model of kv-top: plain data, changed only by the pure functions here. The I/O task
//! produces [`Poll`]s and [`CommandResult`]s; the terminal produces keys; drawing reads the
//! model and nothing else.

use std::collections::VecDeque;

use crate::replay::Replay;

/// How many throughput and latency samples the charts keep.
pub const HISTORY: usize = 120;
/// How many events the log keeps.
pub const EVENTS: usize = 200;

/// What one node said when asked for its status (the fields kv-top shows).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct NodeStatus {
    pub node_id: u64,
    pub role: Role,
    pub ballot: (u64, u64),
    pub leader_id: u64,
    pub commit_index: u64,
    pub applied_index: u64,
    pub revision: u64,
    pub key_count: u64,
    pub lease_count: u64,
    pub requests_total: u64,
    pub peers: Vec<PeerView>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Role {
    #[default]
    Follower,
    Candidate,
    Leader,
}

impl Role {
    pub fn name(self) -> &'static str {
        match self {
            Role::Follower => "follower",
            Role::Candidate => "candidate",
            Role::Leader => "leader",
        }
    }
}

/// What a node knows of one peer.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PeerView {
    pub node_id: u64,
    pub reachable: bool,
    pub last_contact_ms: u64,
    pub lag_entries: u64,
}

/// The membership as the leader answered it.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Membership {
    /// The log index of the newest configuration (its id).
    pub configuration_index: u64,
    /// True while that configuration is not committed.
    pub change_in_progress: bool,
    pub voters: Vec<u64>,
    pub learners: Vec<u64>,
}

impl Membership {
    /// `voters 1,2,3 · learners 4 · config 57 (changing)`, for the header and the events.
    pub fn summary(&self) -> String {
        let list = |ids: &[u64]| ids.iter().map(u64::to_string).collect::<Vec<_>>().join(",");
        let mut text = format!("voters {}", list(&self.voters));
        if !self.learners.is_empty() {
            text.push_str(&format!(" · learners {}", list(&self.learners)));
        }
        text.push_str(&format!(" · config {}", self.configuration_index));
        if self.change_in_progress {
            text.push_str(" (changing)");
        }
        text
    }

    pub fn is_learner(&self, node_id: u64) -> bool {
        self.learners.contains(&node_id)
    }
}

/// One round of asking every node, and the cluster, what it looks like.
#[derive(Debug, Clone, PartialEq)]
pub struct Poll {
    /// Milliseconds since kv-top started.
    pub at_ms: u64,
    /// Per endpoint, in the order of `--endpoints`: its status or why there was none.
    pub nodes: Vec<Result<NodeStatus, String>>,
    /// Round trip of one linearizable read, if it succeeded.
    pub probe_latency_us: Option<u64>,
    /// Keys under the browser's prefix, or why they could not be read.
    pub keys: Result<Vec<KeyRow>, String>,
    /// The members, if the leader answered.
    pub members: Option<Membership>,
}

/// One key in the browser.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct KeyRow {
    pub key: String,
    pub value_preview: String,
    pub revision: u64,
    /// Milliseconds left of its own TTL, if it has one.
    pub ttl_ms: Option<u64>,
    pub lease: u64,
}

/// A get / put / del typed on the command line, for the I/O task to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Get(String),
    Put(String, String),
    Delete(String),
}

/// What a command did, as one line of text.
pub type CommandResult = Result<String, String>;

/// One node as shown: its endpoint, its last answer, and when it last answered.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct NodeView {
    pub endpoint: String,
    pub status: Option<NodeStatus>,
    pub error: Option<String>,
    pub last_answer_ms: Option<u64>,
}

impl NodeView {
    pub fn is_up(&self) -> bool {
        self.error.is_none() && self.status.is_some()
    }
}

/// Which line the keyboard is typing into, if any.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Typing {
    #[default]
    Nothing,
    Command,
    Prefix,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct App {
    pub nodes: Vec<NodeView>,
    pub refresh_ms: u64,
    /// Cluster requests per second, one sample per poll.
    pub throughput: VecDeque<u64>,
    /// Probe round trips in microseconds, one per poll that had one.
    pub latencies_us: VecDeque<u64>,
    /// (milliseconds since start, what happened), oldest first.
    pub events: VecDeque<(u64, String)>,
    pub keys: Vec<KeyRow>,
    pub keys_error: Option<String>,
    pub prefix: String,
    pub selected_key: usize,
    pub typing: Typing,
    pub input: String,
    pub command_output: Option<CommandResult>,
    pub show_help: bool,
    pub quit: bool,
    pub leader: Option<u64>,
    pub polls: u64,
    last_requests: Option<(u64, u64)>,
    /// Set when playing a simulator trace instead of watching a cluster.
    pub replay: Option<Replay>,
    /// The members as last answered.
    pub members: Option<Membership>,
}

/// What a key press asks the outside world to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    None,
    Run(Command),
    /// The key browser's prefix changed: poll again now.
    Refresh,
}

/// A key press, independent of the terminal library.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Key {
    Char(char),
    Enter,
    Escape,
    Backspace,
    Up,
    Down,
    Left,
    Right,
    Home,
    End,
    CtrlC,
}

impl App {
    pub fn new(endpoints: &[String], refresh_ms: u64) -> App {
        App {
            nodes: endpoints
                .iter()
                .map(|endpoint| NodeView {
                    endpoint: endpoint.clone(),
                    ..NodeView::default()
                })
                .collect(),
            refresh_ms,
            ..App::default()
        }
    }

    pub fn replaying(replay: Replay) -> App {
        App {
            replay: Some(replay),
            ..App::default()
        }
    }

    pub fn leader_view(&self) -> Option<&NodeView> {
        self.nodes.iter().find(|node| {
            node.is_up()
                && node
                    .status
                    .as_ref()
                    .is_some_and(|status| status.role == Role::Leader)
        })
    }

    fn event(&mut self, at_ms: u64, text: String) {
        self.events.push_back((at_ms, text));
        while self.events.len() > EVENTS {
            self.events.pop_front();
        }
    }
}

fn push_sample(samples: &mut VecDeque<u64>, sample: u64) {
    samples.push_back(sample);
    while samples.len() > HISTORY {
        samples.pop_front();
    }
}

/// Takes in one poll: node rows, events for what changed, throughput and latency samples.
pub fn apply_poll(app: &mut App, poll: Poll) {
    let first = app.polls == 0;
    app.polls += 1;
    for (index, answer) in poll.nodes.into_iter().enumerate() {
        let Some(node) = app.nodes.get_mut(index) else {
            break;
        };
        let was_up = node.is_up();
        let endpoint = node.endpoint.clone();
        match answer {
            Ok(status) => {
                node.status = Some(status);
                node.error = None;
                node.last_answer_ms = Some(poll.at_ms);
                if !was_up && !first {
                    app.event(poll.at_ms, format!("{endpoint} is back"));
                }
            }
            Err(error) => {
                node.error = Some(error.clone());
                if was_up || first {
                    app.event(poll.at_ms, format!("{endpoint} unreachable: {error}"));
                }
            }
        }
    }
    let leader = app
        .leader_view()
        .and_then(|node| node.status.as_ref())
        .map(|status| (status.node_id, status.ballot));
    match (app.leader, leader) {
        (old, Some((id, ballot))) if old != Some(id) => {
            let text = match old {
                Some(old) => format!("leader n{old} -> n{id} (ballot {}.{})", ballot.0, ballot.1),
                None => format!("n{id} leads (ballot {}.{})", ballot.0, ballot.1),
            };
            app.event(poll.at_ms, text);
            app.leader = Some(id);
        }
        (Some(old), None) => {
            app.event(
                poll.at_ms,
                format!("no leader (n{old} lost or stepped down)"),
            );
            app.leader = None;
        }
        _ => {}
    }
    let campaigning: Vec<String> = app
        .nodes
        .iter()
        .filter(|node| {
            node.is_up()
                && node
                    .status
                    .as_ref()
                    .is_some_and(|status| status.role == Role::Candidate)
        })
        .map(|node| format!("{} is campaigning (election)", node.endpoint))
        .collect();
    for text in campaigning {
        if app.events.back().map(|(_, last)| last) != Some(&text) {
            app.event(poll.at_ms, text);
        }
    }
    let requests: u64 = app
        .nodes
        .iter()
        .filter(|node| node.is_up())
        .filter_map(|node| node.status.as_ref())
        .map(|status| status.requests_total)
        .sum();
    if let Some((at_ms, before)) = app.last_requests {
        let elapsed_ms = poll.at_ms.saturating_sub(at_ms).max(1);
        // A node that restarts counts from zero again: never a negative rate.
        let rate = requests.saturating_sub(before) * 1000 / elapsed_ms;
        push_sample(&mut app.throughput, rate);
    }
    app.last_requests = Some((poll.at_ms, requests));
    if let Some(members) = poll.members {
        let changed = app.members.as_ref().is_none_or(|known| *known != members);
        if changed && !first {
            app.event(poll.at_ms, format!("membership: {}", members.summary()));
        }
        app.members = Some(members);
    }
    if let Some(latency) = poll.probe_latency_us {
        push_sample(&mut app.latencies_us, latency);
    }
    match poll.keys {
        Ok(keys) => {
            app.keys = keys;
            app.keys_error = None;
            app.selected_key = app.selected_key.min(app.keys.len().saturating_sub(1));
        }
        Err(error) => app.keys_error = Some(error),
    }
}

/// The p-th percentile (0-100) of `samples`, nearest rank.
pub fn percentile(samples: &VecDeque<u64>, p: u64) -> Option<u64> {
    if samples.is_empty() {
        return None;
    }
    let mut sorted: Vec<u64> = samples.iter().copied().collect();
    sorted.sort_unstable();
    let rank = (p as usize * sorted.len()).div_ceil(100).max(1);
    Some(sorted[rank - 1])
}

/// Parses a command line: `get KEY`, `put KEY VALUE...`, `del KEY`.
pub fn parse_command(line: &str) -> Result<Command, String> {
    let line = line.trim();
    let (verb, rest) = line.split_once(' ').unwrap_or((line, ""));
    let rest = rest.trim();
    match verb {
        "get" if !rest.is_empty() && !rest.contains(' ') => Ok(Command::Get(rest.into())),
        "del" | "delete" if !rest.is_empty() && !rest.contains(' ') => {
            Ok(Command::Delete(rest.into()))
        }
        "put" => match rest.split_once(' ') {
            Some((key, value)) if !key.is_empty() => {
                Ok(Command::Put(key.into(), value.trim().into()))
            }
            _ => Err("usage: put KEY VALUE".into()),
        },
        "" => Err("type get KEY, put KEY VALUE or del KEY".into()),
        other => Err(format!(
            "unknown command {other:?}: use get KEY, put KEY VALUE or del KEY"
        )),
    }
}

/// Takes in a key press; returns what the outside world should do about it.
pub fn on_key(app: &mut App, key: Key) -> Effect {
    if key == Key::CtrlC {
        app.quit = true;
        return Effect::None;
    }
    match app.typing {
        Typing::Command | Typing::Prefix => return on_typing_key(app, key),
        Typing::Nothing => {}
    }
    if app.show_help {
        // Any key closes the help; q still quits.
        app.show_help = false;
        if key != Key::Char('q') {
            return Effect::None;
        }
    }
    if let Some(replay) = app.replay.as_mut() {
        if crate::replay::on_key(replay, key) {
            return Effect::None;
        }
    }
    match key {
        Key::Char('q') => app.quit = true,
        Key::Char('?') | Key::Char('h') => app.show_help = true,
        Key::Char(':') if app.replay.is_none() => {
            app.typing = Typing::Command;
            app.input.clear();
        }
        Key::Char('/') if app.replay.is_none() => {
            app.typing = Typing::Prefix;
            app.input = app.prefix.clone();
        }
        Key::Up => app.selected_key = app.selected_key.saturating_sub(1),
        Key::Down => {
            app.selected_key = (app.selected_key + 1).min(app.keys.len().saturating_sub(1));
        }
        _ => {}
    }
    Effect::None
}

fn on_typing_key(app: &mut App, key: Key) -> Effect {
    match key {
        Key::Escape => {
            app.typing = Typing::Nothing;
            app.input.clear();
            Effect::None
        }
        Key::Backspace => {
            app.input.pop();
            Effect::None
        }
        Key::Char(c) => {
            app.input.push(c);
            Effect::None
        }
        Key::Enter => {
            let line = std::mem::take(&mut app.input);
            let typing = std::mem::take(&mut app.typing);
            if typing == Typing::Prefix {
                app.prefix = line;
                app.selected_key = 0;
                return Effect::Refresh;
            }
            match parse_command(&line) {
                Ok(command) => Effect::Run(command),
                Err(problem) => {
                    app.command_output = Some(Err(problem));
                    Effect::None
                }
            }
        }
        _ => Effect::None,
    }
}

/// Takes in what a command did.
pub fn apply_command_result(app: &mut App, result: CommandResult) {
    app.command_output = Some(result);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(id: u64, role: Role, requests: u64) -> NodeStatus {
        NodeStatus {
            node_id: id,
            role,
            ballot: (3, 2),
            leader_id: 2,
            requests_total: requests,
            ..NodeStatus::default()
        }
    }

    fn poll(at_ms: u64, nodes: Vec<Result<NodeStatus, String>>) -> Poll {
        Poll {
            at_ms,
            nodes,
            probe_latency_us: Some(at_ms),
            keys: Ok(Vec::new()),
            members: None,
        }
    }

    fn endpoints() -> Vec<String> {
        (1..=3).map(|id| format!("[::1]:700{id}")).collect()
    }

    #[test]
    fn leader_changes_and_lost_nodes_become_events() {
        let mut app = App::new(&endpoints(), 500);
        apply_poll(
            &mut app,
            poll(
                0,
                vec![
                    Ok(status(1, Role::Follower, 0)),
                    Ok(status(2, Role::Leader, 0)),
                    Ok(status(3, Role::Follower, 0)),
                ],
            ),
        );
        assert_eq!(app.leader, Some(2));
        apply_poll(
            &mut app,
            poll(
                1000,
                vec![
                    Ok(status(1, Role::Leader, 10)),
                    Err("connection refused".into()),
                    Ok(status(3, Role::Follower, 20)),
                ],
            ),
        );
        assert_eq!(app.leader, Some(1));
        let texts: Vec<&str> = app.events.iter().map(|(_, text)| text.as_str()).collect();
        assert_eq!(
            texts,
            [
                "n2 leads (ballot 3.2)",
                "[::1]:7002 unreachable: connection refused",
                "leader n2 -> n1 (ballot 3.2)"
            ]
        );
        apply_poll(
            &mut app,
            poll(
                2000,
                vec![
                    Ok(status(1, Role::Leader, 110)),
                    Ok(status(2, Role::Follower, 0)),
                    Ok(status(3, Role::Follower, 20)),
                ],
            ),
        );
        assert_eq!(
            app.events.back().map(|(at, text)| (*at, text.as_str())),
            Some((2000, "[::1]:7002 is back"))
        );
        // 30 requests in the first second (the lost node is not counted), 100 in the next.
        assert_eq!(app.throughput, [30, 100]);
        assert_eq!(app.latencies_us, [0, 1000, 2000]);
    }

    #[test]
    fn percentiles_are_nearest_rank() {
        let samples: VecDeque<u64> = (1..=100).collect();
        assert_eq!(percentile(&samples, 50), Some(50));
        assert_eq!(percentile(&samples, 99), Some(99));
        assert_eq!(percentile(&VecDeque::new(), 50), None);
    }

    #[test]
    fn command_lines_parse_or_say_how_to_write_them() {
        assert_eq!(parse_command("get a"), Ok(Command::Get("a".into())));
        assert_eq!(
            parse_command("put a hello world"),
            Ok(Command::Put("a".into(), "hello world".into()))
        );
        assert_eq!(parse_command(" del a "), Ok(Command::Delete("a".into())));
        assert!(parse_command("put a").unwrap_err().contains("usage"));
        assert!(parse_command("drop a").unwrap_err().contains("unknown"));
    }

    #[test]
    fn typing_a_command_runs_it_and_escape_cancels() {
        let mut app = App::new(&endpoints(), 500);
        on_key(&mut app, Key::Char(':'));
        for c in "get k".chars() {
            on_key(&mut app, Key::Char(c));
        }
        assert_eq!(
            on_key(&mut app, Key::Enter),
            Effect::Run(Command::Get("k".into()))
        );
        on_key(&mut app, Key::Char('/'));
        on_key(&mut app, Key::Char('x'));
        assert_eq!(on_key(&mut app, Key::Escape), Effect::None);
        assert_eq!(app.prefix, "");
        on_key(&mut app, Key::Char('/'));
        on_key(&mut app, Key::Char('y'));
        assert_eq!(on_key(&mut app, Key::Enter), Effect::Refresh);
        assert_eq!(app.prefix, "y");
        on_key(&mut app, Key::Char('q'));
        assert!(app.quit);
    }
}
