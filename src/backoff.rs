//! Capped doubling: the pause between tries of something that keeps failing (a registry call,
//! the engine's event stream, a ZooKeeper reconnect).

use std::time::Duration;

#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    min: Duration,
    max: Duration,
    delay: Duration,
}

impl Backoff {
    pub const fn new(min: Duration, max: Duration) -> Backoff {
        Backoff {
            min,
            max,
            delay: min,
        }
    }

    /// The pause before the next try: `min` first, then twice the last one, up to `max`.
    pub fn pause(&mut self) -> Duration {
        let d = self.delay;
        self.delay = (d * 2).min(self.max);
        d
    }

    /// After a success: the next pause is `min` again.
    pub fn reset(&mut self) {
        self.delay = self.min;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_up_to_the_cap_and_starts_over_after_a_reset() {
        let ms = Duration::from_millis;
        let mut b = Backoff::new(ms(250), ms(1000));
        let pauses: Vec<Duration> = (0..5).map(|_| b.pause()).collect();
        assert_eq!(pauses, [ms(250), ms(500), ms(1000), ms(1000), ms(1000)]);
        b.reset();
        assert_eq!(b.pause(), ms(250));
    }
}
