//! Where cold-start segments live in the stores. What a segment is, and how
//! a request or a User-Agent maps to one, is attune-core's `segment` module
//! (the edge keys its newcomer lists by the same classification).

use attune_core::segment::{attribute_segment, device_segment, hour_bucket, referrer_class};
use attune_core::{DeviceClass, Event};

use crate::store::Attributes;

/// The popularity scope of `segment` within `site` (site keys cannot contain `~`).
pub fn scope(site: &str, segment: &str) -> String {
    format!("{site}~{segment}")
}

/// The segments a batch's events count toward: the sender's device class and
/// attributes, the time of day of its first event (on the server clock), and
/// the kind of referrer of any page view in it. Sorted, without duplicates.
pub fn of_batch(
    device: Option<DeviceClass>,
    attrs: &Attributes,
    corrected_ts_ms: i64,
    events: &[Event],
) -> Vec<String> {
    let mut out: Vec<String> = device.map(device_segment).into_iter().collect();
    out.push(hour_bucket(corrected_ts_ms).to_owned());
    for referrer in events
        .iter()
        .filter_map(|e| e.context.as_ref()?.referrer.as_deref())
    {
        out.push(referrer_class(referrer).to_owned());
    }
    out.extend(attrs.iter().map(|(k, v)| attribute_segment(k, v)));
    out.sort();
    out.dedup();
    out
}

/// The segments of a recommendations request (attune-core's rule).
pub fn of_request(
    device: Option<DeviceClass>,
    referrer: Option<&str>,
    attrs: &Attributes,
    now_ms: i64,
) -> Vec<String> {
    attune_core::segment::of_request(
        device,
        referrer,
        attrs.iter().map(|(k, v)| (k.as_str(), v.as_str())),
        now_ms,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_counts_toward_its_senders_segments_once_each() {
        let event = |referrer: Option<&str>| Event {
            id: uuid::Uuid::nil(),
            ts_ms: 0,
            interaction: attune_core::Interaction::PageView,
            item: None,
            context: Some(attune_core::Context {
                referrer: referrer.map(Into::into),
                ..Default::default()
            }),
            slot: None,
        };
        let attrs = Attributes::from([("locale".to_string(), "de-DE".to_string())]);
        let events = [
            event(Some("https://www.google.com/")),
            event(Some("https://bing.com/")),
            event(None),
        ];
        let s = of_batch(Some(DeviceClass::Mobile), &attrs, 0, &events);
        assert_eq!(
            s,
            [
                "attr:locale=de-DE",
                "device:mobile",
                "hour:night",
                "ref:search"
            ]
        );
    }
}
