//! Snapshot tests of the drawing: a model built by the pure update functions, drawn on
//! ratatui's TestBackend, compared with the screens in tests/snapshots/. After a deliberate
//! change of the drawing, `UPDATE_SNAPSHOTS=1 cargo test -p paxkv-tui` writes them anew
//! (review the diff).

#![allow(clippy::unwrap_used)] // tests may unwrap: a panic is the failure report

use paxkv_tui::app::{self, App, Key, KeyRow, Membership, NodeStatus, PeerView, Poll, Role};
use paxkv_tui::{replay, ui};
use ratatui::backend::TestBackend;
use ratatui::Terminal;

fn screen(app: &App, width: u16, height: u16) -> String {
    let mut terminal = Terminal::new(TestBackend::new(width, height)).unwrap();
    terminal.draw(|frame| ui::draw(frame, app)).unwrap();
    let buffer = terminal.backend().buffer();
    let mut text = String::new();
    for y in 0..height {
        let line: String = (0..width)
            .map(|x| buffer[(x, y)].symbol().to_string())
            .collect();
        text.push_str(line.trim_end());
        text.push('\n');
    }
    text
}

fn check(name: &str, actual: &str) {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join(format!("tests/snapshots/{name}.txt"));
    if std::env::var_os("UPDATE_SNAPSHOTS").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_else(|_| {
        panic!(
            "no snapshot {}; run with UPDATE_SNAPSHOTS=1",
            path.display()
        )
    });
    assert!(
        expected == actual,
        "screen {name} differs from {}:\n{actual}",
        path.display()
    );
}

fn status(id: u64, role: Role, commit: u64, applied: u64, requests: u64) -> NodeStatus {
    let peers = (1..=3)
        .filter(|peer| *peer != id)
        .map(|peer| PeerView {
            node_id: peer,
            reachable: peer != 3,
            last_contact_ms: if peer == 3 { 4200 } else { 40 },
            lag_entries: 0,
        })
        .collect();
    NodeStatus {
        node_id: id,
        role,
        ballot: (4, 2),
        leader_id: 2,
        commit_index: commit,
        applied_index: applied,
        revision: 812,
        key_count: 2,
        lease_count: 1,
        requests_total: requests,
        peers,
    }
}

fn watched_cluster() -> App {
    let endpoints: Vec<String> = (1..=3).map(|id| format!("[::1]:700{id}")).collect();
    let mut app = App::new(&endpoints, 500);
    for second in 0..30u64 {
        let third = if second < 20 {
            Ok(status(3, Role::Follower, 900, 880, second * 100))
        } else {
            Err("cannot connect: Connection refused".to_string())
        };
        app::apply_poll(
            &mut app,
            Poll {
                at_ms: second * 1000,
                nodes: vec![
                    Ok(status(1, Role::Follower, 1000, 999, second * 150)),
                    Ok(status(
                        2,
                        Role::Leader,
                        1000,
                        1000,
                        second * (200 + second * 10),
                    )),
                    third,
                ],
                probe_latency_us: Some(300 + second * 20),
                keys: Ok(vec![
                    KeyRow {
                        key: "app/config".into(),
                        value_preview: "{\"mode\":\"fast\"}".into(),
                        revision: 811,
                        ttl_ms: None,
                        lease: 0,
                    },
                    KeyRow {
                        key: "app/session/1".into(),
                        value_preview: "alice".into(),
                        revision: 812,
                        ttl_ms: Some(118_000),
                        lease: 0,
                    },
                ]),
                // Node 1 joined as a learner; a change is in progress in the last polls.
                members: Some(Membership {
                    configuration_index: if second < 28 { 41 } else { 57 },
                    change_in_progress: second >= 28,
                    voters: vec![2, 3],
                    learners: vec![1],
                }),
            },
        );
    }
    app
}

#[test]
fn the_cluster_view_shows_leader_lag_reachability_and_a_down_node() {
    let app = watched_cluster();
    let text = screen(&app, 110, 32);
    check("live", &text);
}

#[test]
fn the_help_overlay_lists_the_keys() {
    let mut app = watched_cluster();
    app::on_key(&mut app, Key::Char('?'));
    check("help", &screen(&app, 110, 32));
    app::on_key(&mut app, Key::Char('x'));
    assert!(!app.show_help, "any key closes the help");
}

#[test]
fn a_small_terminal_is_drawn_without_panicking_and_the_whole_cluster_down_is_said() {
    let endpoints: Vec<String> = (1..=3).map(|id| format!("[::1]:700{id}")).collect();
    let mut app = App::new(&endpoints, 500);
    app::apply_poll(
        &mut app,
        Poll {
            at_ms: 0,
            nodes: vec![
                Err("refused".into()),
                Err("refused".into()),
                Err("refused".into()),
            ],
            probe_latency_us: None,
            keys: Err("cluster unavailable".into()),
            members: None,
        },
    );
    check("all-down", &screen(&app, 100, 24));
    for (width, height) in [(20, 5), (1, 1), (300, 80)] {
        screen(&app, width, height);
    }
}

#[test]
fn the_replay_view_shows_the_cluster_at_the_cursor() {
    let trace = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/trace-seed-1.jsonl"),
    )
    .unwrap();
    let mut app = App::replaying(replay::load(&trace).unwrap());
    for _ in 0..3 {
        app::on_key(&mut app, Key::Char('n'));
    }
    check("replay", &screen(&app, 110, 36));
    app::on_key(&mut app, Key::Char('?'));
    check("replay-help", &screen(&app, 110, 36));
}
