//! Reading a topic outside the export, through a subscription of Sluice's own (the dead
//! letters' `sluice-dead-letters`, a replay's `sluice-replay-…`): a durable consumer from the
//! earliest message the subscription holds, and messages taken one at a time, each within a
//! timeout, since the caller knows from the admin API how many to expect.

use std::time::Duration;

use futures::StreamExt;
use pulsar::consumer::{InitialPosition, Message};
use pulsar::{Consumer, ConsumerOptions, SubType, TokioExecutor};

use super::{detached, unavailable, Context, SharedError, NO_TOPIC_REFRESH};
use crate::buffer::BufferError;

/// How long to wait for the next message the backlog says is there.
const RECEIVE_TIMEOUT: Duration = Duration::from_secs(10);

pub(super) type Reader = Consumer<Vec<u8>, TokioExecutor>;

pub(super) async fn subscribe(
    ctx: &Context,
    topic: &str,
    subscription: &str,
    kind: SubType,
) -> Result<Reader, BufferError> {
    let build = ctx
        .client
        .consumer()
        .with_topic(topic)
        .with_subscription(subscription)
        .with_subscription_type(kind)
        .with_topic_refresh(NO_TOPIC_REFRESH)
        .with_options(
            ConsumerOptions::default()
                .durable(true)
                .with_initial_position(InitialPosition::Earliest),
        )
        .build::<Vec<u8>>();
    detached(ctx.config.send_timeout, build)
        .await
        .map_err(|e| unavailable(&format!("cannot read {topic}"), e))
}

/// The next message; `None` when none comes in time (fewer than the backlog said: another
/// reader, or an eviction).
pub(super) async fn next(
    reader: &mut Reader,
    topic: &str,
) -> Result<Option<Message<Vec<u8>>>, BufferError> {
    match tokio::time::timeout(RECEIVE_TIMEOUT, reader.next()).await {
        Ok(Some(Ok(message))) => Ok(Some(message)),
        Ok(Some(Err(e))) => Err(unavailable(
            &format!("cannot read {topic}"),
            SharedError::new(e),
        )),
        Ok(None) | Err(_) => Ok(None),
    }
}
