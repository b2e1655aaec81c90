//! systemd readiness and watchdog (`Type=notify`, `WatchdogSec=`) through `$NOTIFY_SOCKET`.
//! Outside systemd (no `NOTIFY_SOCKET`) every call does nothing.

use std::time::{Duration, Instant};

use sd_notify::NotifyState;

/// Pings systemd's watchdog from the loop that does the work, so a stuck pipeline (not merely
/// a live process) gets the service restarted.
#[derive(Debug)]
pub struct Watchdog {
    /// Half the watchdog timeout, when systemd set one for this process.
    every: Option<Duration>,
    next: Instant,
}

impl Watchdog {
    /// Tells systemd the service is ready (with `status` as its status line) and reads the
    /// watchdog interval.
    pub fn ready(status: &str) -> Watchdog {
        let mut usec = 0u64;
        let every = sd_notify::watchdog_enabled(false, &mut usec)
            .then(|| Duration::from_micros(usec / 2))
            .filter(|d| !d.is_zero());
        if let Err(e) = sd_notify::notify(false, &[NotifyState::Ready, NotifyState::Status(status)])
        {
            tracing::warn!("cannot notify systemd of readiness: {e}");
        }
        if let Some(d) = every {
            tracing::debug!("systemd watchdog: pinging every {d:?}");
        }
        Watchdog {
            every,
            next: Instant::now(),
        }
    }

    /// Pings the watchdog when half its timeout has passed since the last ping.
    pub fn tick(&mut self, now: Instant) {
        let Some(every) = self.every else { return };
        if now >= self.next {
            let _ = sd_notify::notify(false, &[NotifyState::Watchdog]);
            self.next = now + every;
        }
    }
}

/// Tells systemd the service is stopping (so a slow drain is not mistaken for a hang).
pub fn stopping() {
    let _ = sd_notify::notify(false, &[NotifyState::Stopping]);
}
