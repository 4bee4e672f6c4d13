//! The one place that decides what PostgreSQL may forget.
//!
//! PostgreSQL is told "confirmed up to L" only when every transaction whose commit precedes L
//! is durable in the output. Transactions are tracked by their commit end position (the LSN
//! after the commit record): confirming it makes the slot skip that transaction on restart.
//! When nothing is in flight, the server's keepalive position may be confirmed too, so an
//! idle slot holds no WAL; the server sends a keepalive only after every transaction that
//! committed before its position, so no undelivered change can hide behind it. The
//! confirmed position never moves backwards.

use std::collections::VecDeque;

use crate::lsn::Lsn;

#[derive(Debug)]
pub struct AckTracker {
    /// A transaction is being received: its Begin arrived, its Commit not yet.
    open: bool,
    /// Commit end positions handed to the output and not yet durable, in commit order.
    in_flight: VecDeque<Lsn>,
    durable: Lsn,
    idle_server_position: Lsn,
    confirmed: Lsn,
}

impl AckTracker {
    /// Starts from the slot's confirmed position.
    pub fn new(confirmed: Lsn) -> AckTracker {
        AckTracker {
            open: false,
            in_flight: VecDeque::new(),
            durable: confirmed,
            idle_server_position: confirmed,
            confirmed,
        }
    }

    pub fn begin(&mut self) {
        self.open = true;
    }

    /// The transaction's Commit was handed to the output.
    pub fn commit(&mut self, end_lsn: Lsn) {
        self.open = false;
        self.in_flight.push_back(end_lsn);
    }

    /// The output made everything up to and including the transaction ending at `end_lsn`
    /// durable.
    pub fn durable(&mut self, end_lsn: Lsn) {
        while self.in_flight.front().is_some_and(|&l| l <= end_lsn) {
            self.in_flight.pop_front();
        }
        self.durable = self.durable.max(end_lsn);
    }

    /// A keepalive from the server: its position counts only while nothing is in flight.
    pub fn keepalive(&mut self, server_position: Lsn) {
        if self.idle() {
            self.idle_server_position = self.idle_server_position.max(server_position);
        }
    }

    pub fn idle(&self) -> bool {
        !self.open && self.in_flight.is_empty()
    }

    /// Transactions handed to the output and not yet durable.
    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    /// The position that may be confirmed now; never lower than the last one returned.
    pub fn confirmable(&mut self) -> Lsn {
        let candidate = if self.idle() {
            self.durable.max(self.idle_server_position)
        } else {
            self.durable
        };
        self.confirmed = self.confirmed.max(candidate);
        self.confirmed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn confirms_only_durable_transactions_in_order() {
        let mut ack = AckTracker::new(Lsn(100));
        ack.begin();
        ack.commit(Lsn(200));
        ack.begin();
        ack.commit(Lsn(300));
        assert_eq!(ack.confirmable(), Lsn(100), "nothing durable yet");
        ack.durable(Lsn(200));
        assert_eq!(ack.confirmable(), Lsn(200));
        ack.durable(Lsn(300));
        assert_eq!(ack.confirmable(), Lsn(300));
    }

    #[test]
    fn keepalive_never_confirms_past_an_undelivered_change() {
        let mut ack = AckTracker::new(Lsn(100));
        ack.begin();
        ack.keepalive(Lsn(500));
        assert_eq!(ack.confirmable(), Lsn(100), "a transaction is open");
        ack.commit(Lsn(400));
        ack.keepalive(Lsn(600));
        assert_eq!(ack.confirmable(), Lsn(100), "its commit is not durable");
        ack.durable(Lsn(400));
        assert_eq!(
            ack.confirmable(),
            Lsn(400),
            "keepalives seen while busy do not count"
        );
        ack.keepalive(Lsn(700));
        assert_eq!(
            ack.confirmable(),
            Lsn(700),
            "idle: the server position is safe"
        );
    }

    #[test]
    fn never_moves_backwards() {
        let mut ack = AckTracker::new(Lsn(100));
        ack.keepalive(Lsn(900));
        assert_eq!(ack.confirmable(), Lsn(900));
        ack.begin();
        ack.commit(Lsn(950));
        ack.durable(Lsn(120));
        assert_eq!(ack.confirmable(), Lsn(900));
        ack.durable(Lsn(950));
        assert_eq!(ack.confirmable(), Lsn(950));
    }
}
