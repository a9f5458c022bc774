//! The one way the CLI waits between retries of a broker that is away.
//!
//! Every loop that repeats a request (long-poll waits, `chan follow`,
//! `cipc work`, the Claude Code waiter) pauses with a [`Backoff`]: doubling
//! from [`FIRST_PAUSE`] up to [`MAX_PAUSE`], back to the start once the
//! broker answers. One policy means one cap to reason about: a broker that
//! comes back is found within [`MAX_PAUSE`], and a broker that stays away
//! gets at most one request per waiter every [`MAX_PAUSE`].

use std::time::Duration;
use tokio::time::Instant;

/// The first pause after a failed request.
pub const FIRST_PAUSE: Duration = Duration::from_millis(100);
/// The cap: no pause between retries is longer, so a broker that is back
/// is noticed within this long.
pub const MAX_PAUSE: Duration = Duration::from_secs(5);

/// Doubling pauses between retries, capped at [`MAX_PAUSE`]; [`Backoff::reset`]
/// once a request succeeds.
#[derive(Debug, Clone)]
pub struct Backoff {
    next: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff::new()
    }
}

impl Backoff {
    /// A backoff whose next pause is [`FIRST_PAUSE`].
    pub fn new() -> Backoff {
        Backoff { next: FIRST_PAUSE }
    }

    /// The pause to take now; the one after it is twice as long (at most
    /// [`MAX_PAUSE`]).
    pub fn next_pause(&mut self) -> Duration {
        let pause = self.next;
        self.next = (self.next * 2).min(MAX_PAUSE);
        pause
    }

    /// The next pause, cut short at `deadline` when there is one.
    pub fn next_pause_until(&mut self, deadline: Option<Instant>) -> Duration {
        let pause = self.next_pause();
        match deadline {
            Some(d) => pause.min(d.saturating_duration_since(Instant::now())),
            None => pause,
        }
    }

    /// Sleeps the next pause, cut short at `deadline` when there is one.
    pub async fn wait(&mut self, deadline: Option<Instant>) {
        tokio::time::sleep(self.next_pause_until(deadline)).await;
    }

    /// Starts over at [`FIRST_PAUSE`]: the broker answered.
    pub fn reset(&mut self) {
        self.next = FIRST_PAUSE;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pauses_double_up_to_the_cap_and_start_over() {
        let mut b = Backoff::new();
        let pauses: Vec<u64> = (0..9).map(|_| b.next_pause().as_millis() as u64).collect();
        assert_eq!(pauses, [100, 200, 400, 800, 1600, 3200, 5000, 5000, 5000]);
        b.reset();
        assert_eq!(b.next_pause(), FIRST_PAUSE);
    }

    #[test]
    fn a_deadline_cuts_the_pause_short() {
        let mut b = Backoff::new();
        assert_eq!(b.next_pause_until(Some(Instant::now())), Duration::ZERO);
        let far = Instant::now() + Duration::from_secs(60);
        assert_eq!(b.next_pause_until(Some(far)), Duration::from_millis(200));
        assert_eq!(b.next_pause_until(None), Duration::from_millis(400));
    }
}
