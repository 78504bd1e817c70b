//! The hold queue's bound: at most `limit` requests wait for a ready group at once.
//! A request past the bound is refused at once (503 + Retry-After) rather than queued
//! without limit, so a front with no group never grows without bound.

use prometheus_client::metrics::gauge::Gauge;

pub struct Hold {
    limit: usize,
    held: Gauge,
}

/// One held request; dropping it (forwarded, refused or the client left) frees its place.
pub struct Held(Gauge);

impl Drop for Held {
    fn drop(&mut self) {
        self.0.dec();
    }
}

impl Hold {
    /// `held` is the exported gauge, which is also the count the bound is checked on.
    pub fn new(limit: usize, held: Gauge) -> Self {
        Hold { limit, held }
    }

    /// A place in the queue, or `None` when `limit` requests are held already.
    pub fn enter(&self) -> Option<Held> {
        // inc returns the count before this request: atomic, so no two take the last place.
        if self.held.inc() >= self.limit as i64 {
            self.held.dec();
            return None;
        }
        Some(Held(self.held.clone()))
    }

    pub fn held(&self) -> i64 {
        self.held.get()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bound_is_exact_and_places_come_back() {
        let hold = Hold::new(2, Gauge::default());
        let a = hold.enter().expect("first place");
        let b = hold.enter().expect("second place");
        assert!(hold.enter().is_none(), "a third request is over the bound");
        assert_eq!(hold.held(), 2);
        drop(a);
        let c = hold.enter().expect("a freed place is taken again");
        drop((b, c));
        assert_eq!(hold.held(), 0);
        assert!(
            Hold::new(0, Gauge::default()).enter().is_none(),
            "size 0 holds nothing"
        );
    }
}
