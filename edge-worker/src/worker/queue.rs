//! `FORWARD = "queue"`: a batch goes to a Cloudflare Queue, which stores it
//! durably before `send` resolves, and the 202 follows at once; this worker's
//! queue handler then hands each message to the origin, retrying (the queue's
//! `retry_delay`, or the origin's Retry-After) until the origin stores it.
//! A message that keeps failing goes to the queue's dead-letter queue after
//! `max_retries`; one the origin refuses for good goes there at once (binding
//! `EVENTS_DEAD_LETTERS`), so nothing acknowledged disappears without a trace.

use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;
use worker::{
    console_error, event, Context, Env, MessageBatch, MessageBuilder, MessageExt, QueueContentType,
    QueueRetryOptionsBuilder, Result,
};

use super::forward::{self, Upload};
use super::Config;

/// The producer binding of the events queue.
pub const EVENTS: &str = "EVENTS_QUEUE";
/// The producer binding of the dead-letter queue (optional).
pub const DEAD_LETTERS: &str = "EVENTS_DEAD_LETTERS";
/// Queues takes messages up to 128 KB; larger batches go to the origin directly.
pub const MAX_MESSAGE_BYTES: usize = 120 * 1024;

/// One batch in the queue: the tracker's bytes and the headers the origin reads.
#[derive(Serialize, Deserialize)]
pub struct Queued {
    body: ByteBuf,
    content_type: String,
    user_agent: Option<String>,
    client_ip: Option<String>,
    /// The page's `Origin` (absent in messages queued before it was kept).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    page_origin: Option<String>,
    /// Why the origin refused it (dead letters only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    refused: Option<String>,
}

impl Queued {
    fn upload<'a>(&'a self, origin_url: &str, edge_secret: Option<&'a str>) -> Upload<'a> {
        Upload {
            url: format!("{origin_url}/v1/events"),
            body: &self.body,
            content_type: &self.content_type,
            user_agent: self.user_agent.clone(),
            client_ip: self.client_ip.clone(),
            page_origin: self.page_origin.clone(),
            edge_secret,
        }
    }
}

async fn send_to(env: &Env, binding: &str, message: &Queued) -> Result<()> {
    // V8 (structured clone) keeps the bytes a Uint8Array, not JSON numbers.
    let message = MessageBuilder::new(message)
        .content_type(QueueContentType::V8)
        .build();
    env.queue(binding)?.send(message).await
}

/// Stores `upload` in the events queue; resolves once the queue has it.
pub async fn enqueue(env: &Env, upload: &Upload<'_>) -> Result<()> {
    let message = Queued {
        body: ByteBuf::from(upload.body.to_vec()),
        content_type: upload.content_type.to_owned(),
        user_agent: upload.user_agent.clone(),
        client_ip: upload.client_ip.clone(),
        page_origin: upload.page_origin.clone(),
        refused: None,
    };
    send_to(env, EVENTS, &message).await
}

#[event(queue)]
async fn consume(batch: MessageBatch<Queued>, env: Env, _ctx: Context) -> Result<()> {
    let config = Config::from_env(&env).map_err(worker::Error::RustError)?;
    for message in batch.raw_iter() {
        // Undecodable (never written by this worker): left unacknowledged, so
        // the queue retries and then dead-letters it.
        let queued: Queued = match serde_wasm_bindgen::from_value(message.body()) {
            Ok(q) => q,
            Err(e) => {
                console_error!("an undecodable message in the events queue: {e}");
                message.retry();
                continue;
            }
        };
        let upload = queued.upload(&config.origin_url, config.origin_edge_secret.as_deref());
        match forward::send(&upload).await {
            Ok((status, _, _)) if status < 300 => message.ack(),
            Ok((status, body, _)) if forward::is_final(status) => {
                let reason = format!("{status} {}", String::from_utf8_lossy(&body));
                console_error!("the origin refused a queued batch: {reason}");
                let dead = Queued {
                    refused: Some(reason),
                    ..queued
                };
                match send_to(&env, DEAD_LETTERS, &dead).await {
                    Ok(()) => message.ack(),
                    // No dead-letter binding: the retries end in the queue's own.
                    Err(_) => message.retry(),
                }
            }
            Ok((_, _, Some(seconds))) => message.retry_with_options(
                &QueueRetryOptionsBuilder::new()
                    .with_delay_seconds(seconds)
                    .build(),
            ),
            Ok(_) | Err(_) => message.retry(),
        }
    }
    Ok(())
}
