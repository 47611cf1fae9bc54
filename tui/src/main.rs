//! kv-top: watch a paxkv cluster, or play a simulator trace.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;
use crossterm::event::{Event, KeyCode, KeyEvent, KeyEventKind, KeyModifiers};
use paxkv_cli::ClusterArgs;
use paxkv_client::Client;
use paxkv_tui::app::{self, App, Effect, Key};
use paxkv_tui::{io, replay, ui};
use tokio::sync::mpsc;

/// A terminal monitor of a paxkv cluster: who leads, who is behind or cut off, how fast it
/// serves, what happened; a key browser and a command line. With --replay, it plays a
/// `kv-sim replay SEED --trace FILE` trace instead. Press ? for the keys.
#[derive(Parser, Debug)]
#[command(version)]
struct Args {
    #[command(flatten)]
    cluster: ClusterArgs,
    /// How often to ask the nodes, in milliseconds.
    #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(u64).range(50..=60_000))]
    refresh_ms: u64,
    /// Play a simulator trace (JSON lines) instead of watching a cluster.
    #[arg(long, value_name = "TRACE")]
    replay: Option<PathBuf>,
}

/// What the main loop waits for.
enum Input {
    Key(Key),
    Redraw,
}

fn key_of(event: KeyEvent) -> Option<Key> {
    if event.kind != KeyEventKind::Press {
        return None;
    }
    Some(match event.code {
        KeyCode::Char('c') if event.modifiers.contains(KeyModifiers::CONTROL) => Key::CtrlC,
        KeyCode::Char(c) => Key::Char(c),
        KeyCode::Enter => Key::Enter,
        KeyCode::Esc => Key::Escape,
        KeyCode::Backspace => Key::Backspace,
        KeyCode::Up => Key::Up,
        KeyCode::Down => Key::Down,
        KeyCode::Left => Key::Left,
        KeyCode::Right => Key::Right,
        KeyCode::Home => Key::Home,
        KeyCode::End => Key::End,
        _ => return None,
    })
}

/// Reads the terminal on a thread of its own (crossterm's read blocks).
fn read_terminal(inputs: mpsc::UnboundedSender<Input>) {
    std::thread::spawn(move || loop {
        let input = match crossterm::event::read() {
            Ok(Event::Key(event)) => key_of(event).map(Input::Key),
            Ok(Event::Resize(..)) => Some(Input::Redraw),
            Ok(_) => None,
            Err(_) => return,
        };
        if let Some(input) = input {
            if inputs.send(input).is_err() {
                return;
            }
        }
    });
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let mut app = match &args.replay {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read the trace {}", path.display()))?;
            let replay = replay::load(&text)
                .map_err(|problem| anyhow::anyhow!("{}: {problem}", path.display()))?;
            App::replaying(replay)
        }
        None => App::new(&args.cluster.endpoint_list(), args.refresh_ms),
    };
    let client = if app.replay.is_none() {
        let timeout = io::poll_timeout(Duration::from_millis(args.refresh_ms));
        Some(Client::new(args.cluster.config(timeout)?)?)
    } else {
        None
    };
    let mut terminal = ratatui::init();
    let result = run(&mut terminal, &mut app, client, args.refresh_ms).await;
    ratatui::restore();
    result
}

async fn run(
    terminal: &mut ratatui::DefaultTerminal,
    app: &mut App,
    client: Option<Client>,
    refresh_ms: u64,
) -> anyhow::Result<()> {
    let (inputs_tx, mut inputs) = mpsc::unbounded_channel();
    read_terminal(inputs_tx);
    let (polls_tx, mut polls) = mpsc::unbounded_channel();
    let (results_tx, mut results) = mpsc::unbounded_channel();
    let (prefix_tx, prefix_rx) = tokio::sync::watch::channel(String::new());
    if let Some(client) = client.clone() {
        tokio::spawn(poll_forever(client, refresh_ms, prefix_rx, polls_tx));
    }
    let mut tick = tokio::time::interval(Duration::from_millis(50));
    let mut last_tick = Instant::now();
    while !app.quit {
        terminal.draw(|frame| ui::draw(frame, app))?;
        tokio::select! {
            biased;
            input = inputs.recv() => match input {
                Some(Input::Key(key)) => match app::on_key(app, key) {
                    Effect::Run(command) => {
                        if let Some(client) = client.clone() {
                            let results = results_tx.clone();
                            tokio::spawn(async move {
                                let _ = results.send(io::run(&client, command).await);
                            });
                        }
                    }
                    Effect::Refresh => {
                        let _ = prefix_tx.send(app.prefix.clone());
                    }
                    Effect::None => {}
                },
                Some(Input::Redraw) => {}
                None => app.quit = true,
            },
            Some(poll) = polls.recv() => app::apply_poll(app, poll),
            Some(result) = results.recv() => app::apply_command_result(app, result),
            _ = tick.tick(), if app.replay.as_ref().is_some_and(|replay| replay.playing) => {
                let now = Instant::now();
                if let Some(replay) = app.replay.as_mut() {
                    replay::advance(replay, now.duration_since(last_tick).as_millis() as u64);
                }
                last_tick = now;
            }
        }
        if app.replay.as_ref().is_some_and(|replay| !replay.playing) {
            last_tick = Instant::now();
        }
    }
    Ok(())
}

/// Polls the cluster every `refresh_ms`, and at once when the key prefix changes.
async fn poll_forever(
    client: Client,
    refresh_ms: u64,
    mut prefix: tokio::sync::watch::Receiver<String>,
    polls: mpsc::UnboundedSender<app::Poll>,
) {
    let started = Instant::now();
    let mut every = tokio::time::interval(Duration::from_millis(refresh_ms));
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let current = prefix.borrow_and_update().clone();
        if polls
            .send(io::poll(&client, &current, started).await)
            .is_err()
        {
            return;
        }
        tokio::select! {
            biased;
            _ = prefix.changed() => {}
            _ = every.tick() => {}
        }
    }
}
