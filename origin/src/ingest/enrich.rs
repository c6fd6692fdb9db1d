//! Turns a validated batch into the records that go to the log: server
//! receipt time, clock-skew correction, User-Agent parsing, user attributes.

use std::sync::Arc;

use attune_core::routing::{partition_key, topic};
use attune_core::{Batch, Event};
use bytes::Bytes;

use crate::event_log::LogRecord;
use crate::record::{BatchEncoder, BatchFields, Device};
use crate::store::Attributes;

/// The device a User-Agent names (attune-core's parser, which the edge
/// classifies newcomers with too).
pub fn parse_user_agent(ua: &str) -> Device {
    attune_core::segment::parse_user_agent(ua).map_or_else(Device::default, |a| Device {
        class: Some(a.class),
        browser: a.browser,
        os: a.os,
    })
}

/// User-Agents parsed before. A site's traffic comes from a few thousand
/// distinct browsers, and parsing one (woothee's patterns) costs more than the
/// rest of a batch's enrichment; a lookup costs a hash of the string.
pub struct UserAgents {
    parsed: moka::sync::Cache<Box<str>, Arc<Device>>,
}

impl UserAgents {
    /// Remembers User-Agents up to `max_bytes` of their text in all, so odd
    /// or forged headers cannot grow it without bound.
    pub fn new(max_bytes: u64) -> Self {
        UserAgents {
            parsed: moka::sync::Cache::<Box<str>, Arc<Device>>::builder()
                .max_capacity(max_bytes)
                .weigher(|ua, _| u32::try_from(ua.len()).unwrap_or(u32::MAX))
                .build(),
        }
    }

    /// The device `user_agent` names.
    pub fn device(&self, user_agent: &str) -> Arc<Device> {
        if let Some(device) = self.parsed.get(user_agent) {
            return device;
        }
        let device = Arc::new(parse_user_agent(user_agent));
        self.parsed.insert(user_agent.into(), device.clone());
        device
    }
}

/// Who sent the batch, as resolved by ingest.
pub struct Sender<'a> {
    /// The user id events are keyed by.
    pub user_id: &'a str,
    /// From the User-Agent.
    pub device: &'a Device,
    /// Stored attributes.
    pub attributes: &'a Attributes,
    /// The store could not be asked for them ([`super::context`]).
    pub attributes_unknown: bool,
}

/// One log record per event, keyed `site/user`, on its kind's topic. The
/// records are encoded into one buffer, the sender's fields once, so a batch
/// costs a handful of allocations rather than a dozen per event. Each carries the
/// batch's popularity segments, which the consumers credit.
pub fn records(batch: &Batch, sender: &Sender, received_at_ms: i64) -> Vec<LogRecord> {
    let skew = received_at_ms - batch.sent_at_ms;
    let segments = batch.events.first().map_or_else(Vec::new, |first| {
        crate::segments::of_batch(
            sender.device.class,
            sender.attributes,
            corrected_ts(first, skew),
            &batch.events,
        )
    });
    let key: Arc<str> = partition_key(&batch.site_key, sender.user_id).into();
    let mut buf = Vec::with_capacity(batch.events.len() * 256);
    let mut ends = Vec::with_capacity(batch.events.len());
    let encoder = BatchEncoder::new(&BatchFields {
        site_key: &batch.site_key,
        user_id: sender.user_id,
        anonymous_id: &batch.anonymous_id,
        received_at_ms,
        clock_skew_ms: skew,
        device: sender.device,
        attributes: sender.attributes,
        segments: &segments,
        attributes_unknown: sender.attributes_unknown,
    });
    for event in &batch.events {
        encoder.encode_into(event, corrected_ts(event, skew), &mut buf);
        ends.push(buf.len());
    }
    let buf = Bytes::from(buf);
    let mut start = 0;
    batch
        .events
        .iter()
        .zip(ends)
        .map(|(event, end)| {
            let payload = buf.slice(start..end);
            start = end;
            LogRecord {
                topic: topic(event.kind()),
                key: key.clone(),
                payload,
            }
        })
        .collect()
}

/// The event's time on the server clock.
pub fn corrected_ts(event: &Event, skew_ms: i64) -> i64 {
    event.ts_ms.saturating_add(skew_ms)
}

#[cfg(test)]
mod tests {
    use super::*;
    use attune_core::DeviceClass;

    #[test]
    fn a_remembered_user_agent_gives_the_device_it_parses_to() {
        let agents = UserAgents::new(1 << 20);
        let ipad = "Mozilla/5.0 (iPad; CPU OS 17_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.0 Mobile/15E148 Safari/604.1";
        let first = agents.device(ipad);
        let again = agents.device(ipad);
        assert!(
            Arc::ptr_eq(&first, &again),
            "the second lookup is the cached parse"
        );
        assert_eq!(*again, parse_user_agent(ipad));
        assert_eq!(again.class, Some(DeviceClass::Tablet));
    }

    #[test]
    fn each_record_decodes_to_its_enriched_event() {
        use crate::record::EventRecord;
        use attune_core::Interaction;
        let event = |i: u8, interaction, item: Option<&str>| Event {
            id: uuid::Uuid::from_bytes([i; 16]),
            ts_ms: 1_000 + i64::from(i),
            interaction,
            item: item.map(Into::into),
            context: None,
            slot: None,
        };
        let batch = Batch {
            site_key: "s".into(),
            anonymous_id: "a".into(),
            user_token: None,
            sent_at_ms: 2_000,
            dropped: 0,
            events: vec![
                event(1, Interaction::Click, Some("x")),
                event(2, Interaction::Dwell { visible_ms: 5 }, Some("y")),
            ],
        };
        let device = parse_user_agent("Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36");
        let attributes = Attributes::from([("locale".to_string(), "fr".to_string())]);
        let sender = Sender {
            user_id: "u",
            device: &device,
            attributes: &attributes,
            attributes_unknown: false,
        };
        let records = records(&batch, &sender, 2_500);
        assert_eq!(records.len(), 2);
        for (r, e) in records.iter().zip(&batch.events) {
            assert_eq!(r.topic, topic(e.kind()));
            assert_eq!(&*r.key, "s/u");
            let owned = EventRecord {
                site_key: "s".into(),
                user_id: "u".into(),
                anonymous_id: "a".into(),
                event: e.clone(),
                received_at_ms: 2_500,
                clock_skew_ms: 500,
                corrected_ts_ms: e.ts_ms + 500,
                device: device.clone(),
                attributes: attributes.clone(),
                segments: vec![
                    "attr:locale=fr".into(),
                    "device:desktop".into(),
                    "hour:night".into(),
                ],
                attributes_unknown: false,
            };
            // The shared fields and the event's own make one whole record,
            // version first.
            assert_eq!(EventRecord::decode(&r.payload).unwrap(), owned);
            assert_eq!(r.payload[..2], owned.encode()[..2]);
        }
    }
}
