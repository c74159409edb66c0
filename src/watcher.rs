//! The event reader: the thread that holds the `/events` subscription and never gives up.
//!
//! It pings the engine, subscribes (with `since=` so nothing between subscribing and listing,
//! or between a lost stream and the new one, is missed), tells the worker to sync, then passes
//! every container event on in stream order. When the stream ends or the engine goes away it
//! reconnects with capped backoff and replays from the last event it saw.

use std::sync::mpsc::Sender;
use std::thread;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::backoff::Backoff;
use crate::bridge::{Arrival, Msg};
use crate::docker::events::since_param;
use crate::docker::{Client, Endpoint, EventStream};

const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);
const REPLAY_MARGIN_NS: i64 = 1_000_000_000;
/// How far ahead of our clock an event's time may be and still count for `since=`.
const FUTURE_SLACK_S: i64 = 24 * 3600;
/// Events stamped before the engine's clock at subscription plus this are taken as possibly
/// replayed (`since=`): the engine's `Date` has whole seconds, and the subscription follows the
/// ping that read it by milliseconds.
const LIVE_AFTER_S: i64 = 2;

/// With `swarm` (`-swarm`), the subscription includes swarm service and node events.
pub fn run(endpoint: Endpoint, tx: Sender<Msg>, swarm: bool) {
    let mut client = Client::new(endpoint.clone());
    let mut backoff = Backoff::new(BACKOFF_MIN, BACKOFF_MAX);
    let mut last_nano: Option<i64> = None;
    let mut connected_before = false;
    let mut down_logged = false;
    loop {
        let (since, live_from) = match client.ping() {
            // Replay from a little before the newest event seen: events published out of order
            // around it are not lost (the sync after reconnecting catches anything older).
            Ok(date) => {
                let engine_now = date.unwrap_or_else(local_now);
                let since = last_nano
                    .map(|t| since_param(t.saturating_sub(REPLAY_MARGIN_NS)))
                    .unwrap_or_else(|| {
                        // First subscription: from the engine's "now" (its Date header, else
                        // ours), so events between subscribing and listing are replayed, not
                        // lost.
                        engine_now.to_string()
                    });
                (since, live_from(date))
            }
            Err(e) => {
                if !down_logged {
                    log::warn!(
                        "docker: {endpoint}: {e}; retrying with backoff up to {BACKOFF_MAX:?}"
                    );
                    down_logged = true;
                } else {
                    log::debug!("docker: {endpoint}: {e}");
                }
                thread::sleep(backoff.pause());
                continue;
            }
        };
        let mut stream = match EventStream::open(&endpoint, Some(&since), swarm) {
            Ok(s) => s,
            Err(e) => {
                log::warn!("docker: subscribe to events: {e}");
                thread::sleep(backoff.pause());
                continue;
            }
        };
        down_logged = false;
        if connected_before {
            log::info!(
                "docker: reconnected to {endpoint}; replaying events since {since}, then syncing"
            );
        } else {
            log::info!("docker: listening for events on {endpoint}");
            connected_before = true;
        }
        if tx.send(Msg::Sync).is_err() {
            return;
        }
        loop {
            match stream.next_event() {
                Ok(Some(ev)) => {
                    backoff.reset();
                    // Not a filter: the engine publishes concurrent events slightly out of
                    // `timeNano` order, and every event is safe to apply twice.
                    // A stamp far in the future (a broken engine clock, a hostile one) would
                    // make every later `since=` skip what happens meanwhile.
                    if ev.time_nano
                        <= local_now()
                            .saturating_add(FUTURE_SLACK_S)
                            .saturating_mul(1_000_000_000)
                    {
                        last_nano = last_nano.max(Some(ev.time_nano));
                    }
                    let arrival = arrival(ev.time_nano, live_from);
                    if tx.send(Msg::Event(ev, arrival)).is_err() {
                        return;
                    }
                }
                Ok(None) => {
                    log::warn!("docker: event stream ended; reconnecting");
                    break;
                }
                Err(e) => {
                    log::warn!("docker: event stream: {e}; reconnecting");
                    break;
                }
            }
        }
        thread::sleep(backoff.pause());
    }
}

/// From when (ns since the epoch, on the engine's clock) an event is live: the engine's `Date`
/// at the ping before subscribing, plus [`LIVE_AFTER_S`]. Without a `Date` the engine's clock is
/// unknown (ours may differ from a remote engine's): every event counts as replayed.
fn live_from(engine_date: Option<i64>) -> i64 {
    engine_date.map_or(i64::MAX, |d| {
        d.saturating_add(LIVE_AFTER_S).saturating_mul(1_000_000_000)
    })
}

/// A replayed event may be stale (a `die` of a container started again since); a live one is
/// news. An event without a stamp (0) is taken as replayed.
fn arrival(time_nano: i64, live_from: i64) -> Arrival {
    if time_nano > 0 && time_nano >= live_from {
        Arrival::Live
    } else {
        Arrival::Replayed
    }
}

fn local_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_after_the_subscription_are_live_and_earlier_ones_replayed() {
        const S: i64 = 1_000_000_000;
        let date = 1_795_273_445; // the engine's Date at the ping, in seconds
        let from = live_from(Some(date));
        assert_eq!(from, (date + LIVE_AFTER_S) * S);
        // Replayed: before the ping, within its second, and within the margin after it.
        for t in [
            (date - 3600) * S,
            date * S,
            date * S + 999_999_999,
            from - 1,
        ] {
            assert_eq!(arrival(t, from), Arrival::Replayed, "{t}");
        }
        // Live: from the end of the margin on.
        for t in [from, from + 1, (date + 60) * S] {
            assert_eq!(arrival(t, from), Arrival::Live, "{t}");
        }
        // No stamp, or no Date from the engine: replayed (checked with an inspect).
        assert_eq!(arrival(0, from), Arrival::Replayed);
        assert_eq!(arrival((date + 60) * S, live_from(None)), Arrival::Replayed);
    }
}
