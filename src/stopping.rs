//! The node's stop signal: what `cete start` raises on SIGINT or SIGTERM, and what everything
//! that must end then listens to — the listeners (they stop accepting and drain) and the
//! long-lived streams they serve.
//!
//! A graceful drain waits for every call in flight, and a stream call (a peer's replication or
//! forward stream, a watch) is in flight until one side ends it. The client side of a peer's
//! stream ends only when that peer stops its Raft, which it does after its own drain: with a
//! whole cluster stopping at once, every node waited on the others' streams until its grace
//! period ran out. So the serving side ends its streams itself as soon as it is stopping.

use futures::{Stream, StreamExt};
use tokio::sync::watch;

/// A handle on the stop signal; clones all see the same signal.
#[derive(Clone)]
pub struct Stopping(watch::Receiver<bool>);

/// Raises the stop signal.
pub struct StopSignal(watch::Sender<bool>);

impl StopSignal {
    pub fn new() -> (StopSignal, Stopping) {
        let (tx, rx) = watch::channel(false);
        (StopSignal(tx), Stopping(rx))
    }

    pub fn raise(&self) {
        let _ = self.0.send(true);
    }
}

impl Stopping {
    /// Resolves once the node is stopping.
    pub async fn wait(mut self) {
        // An error means the signal was dropped: nothing will raise it any more, so nothing
        // waits for it either — the node is going away.
        let _ = self.0.wait_for(|stop| *stop).await;
    }

    fn is_stopping(&self) -> bool {
        *self.0.borrow()
    }

    /// `stream`, ended when the node starts stopping with `farewell` as its last item (the
    /// client learns why its stream ended); a stream that ends by itself first ends as it did.
    pub fn cut_off<S>(&self, stream: S, farewell: S::Item) -> impl Stream<Item = S::Item>
    where
        S: Stream,
    {
        let stopping = self.clone();
        let farewell = futures::stream::once(async move { stopping.is_stopping().then_some(farewell) })
            .filter_map(std::future::ready);
        stream.take_until(self.clone().wait()).chain(farewell)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_stream_is_cut_off_with_its_farewell_when_stopping() {
        let (signal, stopping) = StopSignal::new();
        let endless = futures::stream::pending::<u32>();
        let mut cut = Box::pin(stopping.cut_off(futures::stream::iter([1, 2]).chain(endless), 99));
        assert_eq!(cut.next().await, Some(1));
        assert_eq!(cut.next().await, Some(2));
        signal.raise();
        assert_eq!(cut.next().await, Some(99));
        assert_eq!(cut.next().await, None);
    }

    #[tokio::test]
    async fn a_stream_that_ends_by_itself_says_no_farewell() {
        let (_signal, stopping) = StopSignal::new();
        let cut = stopping.cut_off(futures::stream::iter([1, 2]), 99);
        assert_eq!(cut.collect::<Vec<_>>().await, [1, 2]);
    }
}
