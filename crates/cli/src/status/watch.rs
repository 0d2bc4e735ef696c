//! `status --watch`: the canaries as the API server's watch reports them (no polling). A terminal
//! gets the whole picture redrawn in colour on every change; a pipe gets one line per change, so
//! `| grep Failed` or a log file reads naturally.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};

use flagger_api::Canary;
use futures::StreamExt;
use kube::Api;
use kube::runtime::{WatchStreamExt, watcher};

use flagger_core::Settings;

use super::model::{CanaryView, view_with};
use super::render_text::{Style, change_line, detail, table};
use super::{CANARIES, get_canary};
use crate::cluster::{CliError, api_error};
use crate::output::Output;

/// Clears the screen and homes the cursor before a frame.
const CLEAR: &str = "\x1b[H\x1b[2J";

/// How the frames or lines reach the user.
enum Sink {
    Terminal,
    Lines,
    Documents(Output),
}

pub async fn watch(
    api: &Api<Canary>,
    name: Option<&str>,
    namespace: &str,
    output: Output,
    settings: &Settings,
) -> Result<(), CliError> {
    let mut config = watcher::Config::default();
    if let Some(name) = name {
        // A missing canary is an error now rather than an empty screen forever.
        get_canary(api, name, namespace).await?;
        config = config.fields(&format!("metadata.name={name}"));
    }
    let sink = match output {
        Output::Text if std::io::stdout().is_terminal() => Sink::Terminal,
        Output::Text => Sink::Lines,
        other => Sink::Documents(other),
    };
    let mut canaries: BTreeMap<(String, String), Canary> = BTreeMap::new();
    // What was last shown of each canary, without the fields that only age.
    let mut shown: BTreeMap<(String, String), CanaryView> = BTreeMap::new();
    let mut listed = false;
    let mut events = watcher(api.clone(), config).default_backoff().boxed();
    while let Some(event) = events.next().await {
        let changed = match event {
            Ok(watcher::Event::Init) => {
                canaries.clear();
                Vec::new()
            }
            Ok(watcher::Event::InitApply(c)) => {
                canaries.insert(key(&c), c);
                Vec::new()
            }
            Ok(watcher::Event::InitDone) => {
                listed = true;
                canaries.keys().cloned().collect()
            }
            Ok(watcher::Event::Apply(c)) => {
                let k = key(&c);
                canaries.insert(k.clone(), c);
                vec![k]
            }
            Ok(watcher::Event::Delete(c)) => {
                let k = key(&c);
                canaries.remove(&k);
                shown.remove(&k);
                Vec::new()
            }
            Err(e) if !listed => return Err(watch_error(e, namespace)),
            Err(e) => {
                // The watcher lists again after a backoff; say why the picture may lag.
                eprintln!("warning: {}", watch_error(e, namespace));
                continue;
            }
        };
        if listed {
            show(
                &sink,
                settings,
                name.is_some(),
                &canaries,
                &changed,
                &mut shown,
            );
        }
    }
    Ok(())
}

fn key(c: &Canary) -> (String, String) {
    (
        c.metadata.namespace.clone().unwrap_or_default(),
        c.metadata.name.clone().unwrap_or_default(),
    )
}

/// The view with the fields that change by the clock alone cleared: two views with the same
/// `settled` form show the same run.
fn settled(v: &CanaryView) -> CanaryView {
    CanaryView {
        seconds_in_phase: None,
        seconds_to_promotion: None,
        ..v.clone()
    }
}

fn show(
    sink: &Sink,
    settings: &Settings,
    one: bool,
    canaries: &BTreeMap<(String, String), Canary>,
    changed: &[(String, String)],
    shown: &mut BTreeMap<(String, String), CanaryView>,
) {
    let now = jiff::Timestamp::now();
    let mut out = std::io::stdout().lock();
    match sink {
        Sink::Terminal => {
            let style = Style { colour: true };
            let views: Vec<CanaryView> = canaries
                .values()
                .map(|c| view_with(c, settings, now))
                .collect();
            let frame = if one {
                views.iter().map(|v| detail(v, style)).collect::<String>()
            } else {
                table(&views, style)
            };
            let _ = write!(out, "{CLEAR}{frame}");
        }
        Sink::Lines | Sink::Documents(_) => {
            for k in changed {
                let Some(c) = canaries.get(k) else { continue };
                let v = view_with(c, settings, now);
                let was = shown.insert(k.clone(), settled(&v));
                if was.as_ref() == Some(&settled(&v)) {
                    continue;
                }
                let line = match sink {
                    Sink::Documents(Output::Yaml) => crate::output::structured(&v, Output::Yaml)
                        .map(|y| format!("---\n{}", y.trim_end())),
                    Sink::Documents(_) => {
                        serde_json::to_string(&v).map_err(|e| CliError::Usage(e.to_string()))
                    }
                    _ => Ok(change_line(&v, now)),
                };
                match line {
                    Ok(line) => {
                        let _ = writeln!(out, "{line}");
                    }
                    Err(e) => eprintln!("warning: {e}"),
                }
            }
        }
    }
    let _ = out.flush();
}

fn watch_error(e: watcher::Error, namespace: &str) -> CliError {
    match e {
        watcher::Error::InitialListFailed(e) => api_error(&e, "list", CANARIES, namespace),
        watcher::Error::WatchStartFailed(e) | watcher::Error::WatchFailed(e) => {
            api_error(&e, "watch", CANARIES, namespace)
        }
        watcher::Error::WatchError(status) => {
            api_error(&kube::Error::Api(status), "watch", CANARIES, namespace)
        }
        watcher::Error::NoResourceVersion => CliError::Api(format!(
            "cannot watch {CANARIES}: the server gave no resourceVersion"
        )),
    }
}
