//! Turns a validated batch into the records that go to the log: server
//! receipt time, clock-skew correction, User-Agent parsing, user attributes.

use attune_core::routing::{partition_key, topic};
use attune_core::{Batch, DeviceClass};

use crate::event_log::LogRecord;
use crate::record::{Device, EventRecord};
use crate::store::Attributes;

/// Parses a User-Agent with woothee (a maintained parser with built-in data).
pub fn parse_user_agent(ua: &str) -> Device {
    let unknown = woothee::woothee::VALUE_UNKNOWN;
    let Some(parsed) = woothee::parser::Parser::new()
        .parse(ua)
        .filter(|p| p.category != unknown)
    else {
        return Device::default();
    };
    let known = |s: &str| (!s.is_empty() && s != unknown).then(|| s.to_owned());
    let class = match (parsed.category, parsed.os) {
        (_, "iPad") => DeviceClass::Tablet,
        ("pc", _) => DeviceClass::Desktop,
        ("smartphone" | "mobilephone", _) => DeviceClass::Mobile,
        _ => DeviceClass::Other,
    };
    Device {
        class: Some(class),
        browser: known(parsed.name),
        os: known(parsed.os),
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
}

/// One log record per event, keyed `site/user`, on its kind's topic.
pub fn records(
    batch: &Batch,
    sender: &Sender,
    received_at_ms: i64,
) -> Vec<(EventRecord, LogRecord)> {
    let skew = received_at_ms - batch.sent_at_ms;
    let key = partition_key(&batch.site_key, sender.user_id);
    batch
        .events
        .iter()
        .map(|event| {
            let record = EventRecord {
                site_key: batch.site_key.clone(),
                user_id: sender.user_id.to_owned(),
                anonymous_id: batch.anonymous_id.clone(),
                event: event.clone(),
                received_at_ms,
                clock_skew_ms: skew,
                corrected_ts_ms: event.ts_ms.saturating_add(skew),
                device: sender.device.clone(),
                attributes: sender.attributes.clone(),
            };
            let log = LogRecord {
                topic: topic(event.kind()),
                key: key.clone(),
                payload: record.encode(),
            };
            (record, log)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_agents_map_to_device_classes() {
        let iphone = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.0 Mobile/15E148 Safari/604.1";
        let d = parse_user_agent(iphone);
        assert_eq!(d.class, Some(DeviceClass::Mobile));
        assert_eq!(d.os.as_deref(), Some("iPhone"));
        let chrome = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36";
        let d = parse_user_agent(chrome);
        assert_eq!(d.class, Some(DeviceClass::Desktop));
        assert_eq!(d.browser.as_deref(), Some("Chrome"));
        assert_eq!(parse_user_agent("").class, None);
    }
}
