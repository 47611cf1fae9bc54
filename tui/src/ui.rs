//! Drawing: pure functions of the model onto a ratatui frame.

use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Cell, Clear, List, ListItem, Paragraph, Row, Sparkline, Table};
use ratatui::Frame;

use crate::app::{percentile, App, NodeView, Role, Typing};
use crate::replay::{self, Replay};

const LEADER: Style = Style::new().fg(Color::Green).add_modifier(Modifier::BOLD);
const DOWN: Style = Style::new().fg(Color::Red).add_modifier(Modifier::BOLD);
const DIM: Style = Style::new().fg(Color::DarkGray);
const TITLE: Style = Style::new().add_modifier(Modifier::BOLD);

/// Draws the whole screen.
pub fn draw(frame: &mut Frame, app: &App) {
    match &app.replay {
        Some(replay) => draw_replay(frame, replay),
        None => draw_live(frame, app),
    }
    if app.show_help {
        draw_help(frame, app.replay.is_some());
    }
}

fn millis(ms: u64) -> String {
    if ms == u64::MAX {
        "never".into()
    } else if ms >= 10_000 {
        format!("{} s", ms / 1000)
    } else {
        format!("{ms} ms")
    }
}

fn header(frame: &mut Frame, area: Rect, left: String) {
    let right = " ?: help  q: quit ";
    let [left_area, right_area] =
        Layout::horizontal([Constraint::Min(0), Constraint::Length(right.len() as u16)])
            .areas(area);
    frame.render_widget(Paragraph::new(Line::styled(left, TITLE)), left_area);
    frame.render_widget(Paragraph::new(Line::styled(right, DIM)), right_area);
}

fn draw_live(frame: &mut Frame, app: &App) {
    let node_rows = app.nodes.len() as u16 + 3;
    let [top, nodes, chart, bottom, footer] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Length(node_rows),
        Constraint::Length(7),
        Constraint::Min(5),
        Constraint::Length(1),
    ])
    .areas(frame.area());
    let leader = app.leader_view().and_then(|node| node.status.as_ref());
    let members = app
        .members
        .as_ref()
        .map_or(String::new(), |members| format!(" · {}", members.summary()));
    let summary = match leader {
        Some(status) => format!(
            " kv-top · {} nodes · leader n{}{members} · revision {} · {} keys · {} leases",
            app.nodes.len(),
            status.node_id,
            status.revision,
            status.key_count,
            status.lease_count
        ),
        None if app.nodes.iter().all(|node| !node.is_up()) && app.polls > 0 => format!(
            " kv-top · {} nodes · NO NODE ANSWERS (cluster down?) · retrying every {} ms",
            app.nodes.len(),
            app.refresh_ms
        ),
        None => format!(" kv-top · {} nodes · no leader", app.nodes.len()),
    };
    header(frame, top, summary);
    draw_nodes(frame, nodes, app);
    draw_chart(frame, chart, app);
    let [events, keys] =
        Layout::horizontal([Constraint::Percentage(50), Constraint::Percentage(50)]).areas(bottom);
    let lines: Vec<(u64, String)> = app.events.iter().cloned().collect();
    draw_log(frame, events, "Events", &lines);
    draw_keys(frame, keys, app);
    draw_footer(frame, footer, app);
}

fn node_cells(
    node: &NodeView,
    leader: Option<&crate::app::NodeStatus>,
    members: Option<&crate::app::Membership>,
) -> (Vec<String>, Style) {
    let id = node
        .status
        .as_ref()
        .map_or("?".to_string(), |status| format!("n{}", status.node_id));
    let Some(status) = node.status.as_ref().filter(|_| node.is_up()) else {
        let seen = node.status.is_some();
        let mut cells = vec![id, node.endpoint.clone(), "DOWN".into()];
        cells.extend(["-", "-", "-", "-", "no"].map(String::from));
        cells.push(if seen {
            "unreachable".into()
        } else {
            "-".into()
        });
        cells.push(node.error.clone().unwrap_or_default());
        return (cells, DOWN);
    };
    let from_leader = leader.and_then(|leader| {
        leader
            .peers
            .iter()
            .find(|peer| peer.node_id == status.node_id)
    });
    let lag = leader.map_or("-".to_string(), |leader| {
        leader
            .commit_index
            .saturating_sub(status.applied_index)
            .to_string()
    });
    let (sees, contact) = match (status.role, from_leader) {
        (Role::Leader, _) => ("(leader)".to_string(), "-".to_string()),
        (_, Some(peer)) => (
            if peer.reachable { "yes" } else { "NO" }.to_string(),
            millis(peer.last_contact_ms),
        ),
        (_, None) => ("?".into(), "-".into()),
    };
    let cells = vec![
        id,
        node.endpoint.clone(),
        if members.is_some_and(|members| members.is_learner(status.node_id)) {
            "learner".into()
        } else {
            status.role.name().into()
        },
        format!("{}.{}", status.ballot.0, status.ballot.1),
        status.commit_index.to_string(),
        status.applied_index.to_string(),
        lag,
        "yes".into(),
        sees,
        contact,
    ];
    let style = if status.role == Role::Leader {
        LEADER
    } else {
        Style::new()
    };
    (cells, style)
}

fn draw_nodes(frame: &mut Frame, area: Rect, app: &App) {
    let leader = app.leader_view().and_then(|node| node.status.as_ref());
    let rows = app.nodes.iter().map(|node| {
        let (cells, style) = node_cells(node, leader, app.members.as_ref());
        Row::new(cells.into_iter().map(Cell::from)).style(style)
    });
    let header = Row::new(
        [
            "id",
            "address",
            "role",
            "ballot",
            "commit",
            "applied",
            "lag",
            "here",
            "leader sees",
            "contact",
        ]
        .map(Cell::from),
    )
    .style(TITLE);
    let widths = [
        Constraint::Length(4),
        Constraint::Length(22),
        Constraint::Length(10),
        Constraint::Length(8),
        Constraint::Length(8),
        Constraint::Length(8),
        Constraint::Length(6),
        Constraint::Length(5),
        Constraint::Length(12),
        Constraint::Min(8),
    ];
    let table = Table::new(rows, widths)
        .header(header)
        .block(Block::bordered().title(" Nodes "));
    frame.render_widget(table, area);
}

fn draw_chart(frame: &mut Frame, area: Rect, app: &App) {
    let now = app.throughput.back().copied().unwrap_or(0);
    let peak = app.throughput.iter().copied().max().unwrap_or(0);
    let latency = |p| {
        percentile(&app.latencies_us, p).map_or("-".to_string(), |us| {
            format!("{:.2} ms", us as f64 / 1000.0)
        })
    };
    let title = format!(
        " Throughput {now} ops/s (peak {peak}) · read latency p50 {} p99 {} ",
        latency(50),
        latency(99)
    );
    let width = area.width.saturating_sub(2) as usize;
    let skip = app.throughput.len().saturating_sub(width);
    let data: Vec<u64> = app.throughput.iter().skip(skip).copied().collect();
    let chart = Sparkline::default()
        .block(Block::bordered().title(title))
        .data(&data)
        .style(Style::new().fg(Color::Cyan));
    frame.render_widget(chart, area);
}

fn draw_log(frame: &mut Frame, area: Rect, title: &str, lines: &[(u64, String)]) {
    let height = area.height.saturating_sub(2) as usize;
    let skip = lines.len().saturating_sub(height);
    let items: Vec<ListItem> = lines
        .iter()
        .skip(skip)
        .map(|(at_ms, text)| {
            ListItem::new(Line::from(vec![
                Span::styled(format!("{:>8.2}s ", *at_ms as f64 / 1000.0), DIM),
                Span::raw(text.clone()),
            ]))
        })
        .collect();
    frame.render_widget(
        List::new(items).block(Block::bordered().title(format!(" {title} "))),
        area,
    );
}

fn draw_keys(frame: &mut Frame, area: Rect, app: &App) {
    let title = format!(" Keys under {:?} ({}) ", app.prefix, app.keys.len());
    let block = Block::bordered().title(title);
    if let Some(error) = &app.keys_error {
        frame.render_widget(
            Paragraph::new(format!("cannot read keys: {error}"))
                .style(DOWN)
                .block(block),
            area,
        );
        return;
    }
    let rows = app.keys.iter().enumerate().map(|(index, row)| {
        let ttl = match (row.ttl_ms, row.lease) {
            (Some(ms), _) => millis(ms),
            (None, 0) => "-".into(),
            (None, lease) => format!("lease {lease}"),
        };
        let style = if index == app.selected_key {
            Style::new().add_modifier(Modifier::REVERSED)
        } else {
            Style::new()
        };
        Row::new([
            row.key.clone(),
            row.value_preview.clone(),
            row.revision.to_string(),
            ttl,
        ])
        .style(style)
    });
    let widths = [
        Constraint::Percentage(35),
        Constraint::Percentage(35),
        Constraint::Length(7),
        Constraint::Min(6),
    ];
    let table = Table::new(rows, widths)
        .header(Row::new(["key", "value", "rev", "ttl"]).style(TITLE))
        .block(block);
    frame.render_widget(table, area);
}

fn draw_footer(frame: &mut Frame, area: Rect, app: &App) {
    let line = match app.typing {
        Typing::Command => Line::from(vec![
            Span::styled(":", TITLE),
            Span::raw(app.input.clone()),
            Span::raw("█"),
        ]),
        Typing::Prefix => Line::from(vec![
            Span::styled("prefix /", TITLE),
            Span::raw(app.input.clone()),
            Span::raw("█"),
        ]),
        Typing::Nothing => match &app.command_output {
            Some(Ok(text)) => Line::raw(text.clone()),
            Some(Err(problem)) => Line::styled(problem.clone(), DOWN),
            None => Line::styled(
                " :  get / put / del     /  key prefix     ↑↓  select key",
                DIM,
            ),
        },
    };
    frame.render_widget(Paragraph::new(line), area);
}

fn draw_replay(frame: &mut Frame, replay: &Replay) {
    let state = replay::frame_at(replay, replay.cursor_ms);
    let node_rows = replay.nodes as u16 + 3;
    let [top, timeline, nodes, network, bottom] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Length(3),
        Constraint::Length(node_rows),
        Constraint::Length(4),
        Constraint::Min(5),
    ])
    .areas(frame.area());
    let mode = if replay.playing {
        format!("playing x{}", replay.speed)
    } else {
        "paused".to_string()
    };
    header(
        frame,
        top,
        format!(
            " kv-top replay · seed {} · {} nodes · t = {:.3} s of {:.3} s · {mode} · {} client ops/s",
            replay.seed,
            replay.nodes,
            replay.cursor_ms as f64 / 1000.0,
            replay.end_ms as f64 / 1000.0,
            state.ops_last_second
        ),
    );
    draw_timeline(frame, timeline, replay);
    let rows = state.nodes.iter().enumerate().map(|(index, node)| {
        let id = format!("n{}", index + 1);
        if !node.up {
            return Row::new([id, "DOWN".into()]).style(DOWN);
        }
        let style = if node.role == Role::Leader {
            LEADER
        } else {
            Style::new()
        };
        Row::new([
            id,
            node.role.name().into(),
            format!("{}.{}", node.ballot.0, node.ballot.1),
            if node.leader == 0 {
                "-".into()
            } else {
                format!("n{}", node.leader)
            },
            node.commit_index.to_string(),
            node.applied_index.to_string(),
            node.revision.to_string(),
            node.keys.to_string(),
        ])
        .style(style)
    });
    let header_row = Row::new([
        "id", "role", "ballot", "follows", "commit", "applied", "revision", "keys",
    ])
    .style(TITLE);
    let table = Table::new(rows, [Constraint::Length(9); 8])
        .header(header_row)
        .block(Block::bordered().title(" Nodes (last status sample) "));
    frame.render_widget(table, nodes);
    let conditions = if state.network.is_empty() {
        "all links up".to_string()
    } else {
        state.network.join(" · ")
    };
    frame.render_widget(
        Paragraph::new(conditions).block(Block::bordered().title(" Network ")),
        network,
    );
    let [log, operations] =
        Layout::horizontal([Constraint::Percentage(50), Constraint::Percentage(50)]).areas(bottom);
    draw_log(frame, log, "Faults and leaders", &state.log);
    draw_log(frame, operations, "Client operations", &state.operations);
}

/// A bar of simulated time: `|` for each fault, `▲` at the cursor.
fn draw_timeline(frame: &mut Frame, area: Rect, replay: &Replay) {
    let width = area.width.saturating_sub(2).max(1) as usize;
    let column = |t_ms: u64| (t_ms as usize * (width - 1)) / (replay.end_ms.max(1) as usize);
    let mut bar = vec!['─'; width];
    for event in replay.events.iter().filter(|event| event.is_fault()) {
        bar[column(event.t_ms)] = '|';
    }
    bar[column(replay.cursor_ms)] = '▲';
    let line: String = bar.into_iter().collect();
    frame.render_widget(
        Paragraph::new(line).block(Block::bordered().title(" Time (| fault, ▲ now) ")),
        area,
    );
}

const LIVE_HELP: &[(&str, &str)] = &[
    ("q / Ctrl-C", "quit"),
    ("?", "this help (any key closes it)"),
    (":", "command line: get KEY, put KEY VALUE, del KEY"),
    ("/", "key browser prefix"),
    ("↑ / ↓", "select a key"),
    ("Enter / Esc", "run / cancel what you typed"),
];

const REPLAY_HELP: &[(&str, &str)] = &[
    ("q / Ctrl-C", "quit"),
    ("?", "this help (any key closes it)"),
    ("space", "play / pause"),
    ("→ / ←  (l)", "step 100 ms forward / back"),
    ("L / H", "step 1 s forward / back"),
    ("n / p", "next / previous fault"),
    ("0-9", "seek to 0%-90% of the run"),
    ("g / G", "start / end"),
    ("+ / -", "play faster / slower"),
];

fn draw_help(frame: &mut Frame, replay: bool) {
    let bindings = if replay { REPLAY_HELP } else { LIVE_HELP };
    let area = frame.area();
    let width = 72.min(area.width);
    let height = (bindings.len() as u16 + 2).min(area.height);
    let popup = Rect {
        x: area.x + (area.width - width) / 2,
        y: area.y + (area.height - height) / 2,
        width,
        height,
    };
    let lines: Vec<Line> = bindings
        .iter()
        .map(|(keys, what)| {
            Line::from(vec![
                Span::styled(format!(" {keys:<14}"), TITLE),
                Span::raw(*what),
            ])
        })
        .collect();
    frame.render_widget(Clear, popup);
    frame.render_widget(
        Paragraph::new(lines).block(Block::bordered().title(" Keys ")),
        popup,
    );
}
