//! Contextual segments for cold start. Popularity is kept per segment as well
//! as per site, so a newcomer the model knows nothing about still gets what
//! people like them take: same device class, same time of day, same kind of
//! referrer, same stated attributes (demographics, locale).

use attune_core::{DeviceClass, Event};

use crate::store::Attributes;

/// The popularity scope of `segment` within `site` (site keys cannot contain `~`).
pub fn scope(site: &str, segment: &str) -> String {
    format!("{site}~{segment}")
}

/// The time of day of a Unix-ms instant, in four UTC buckets.
pub fn hour_bucket(t_ms: i64) -> &'static str {
    match (t_ms.rem_euclid(86_400_000) / 3_600_000) as u8 {
        0..=5 => "hour:night",
        6..=11 => "hour:morning",
        12..=17 => "hour:afternoon",
        _ => "hour:evening",
    }
}

/// Search engines, by a label of the host (`www.google.co.uk`, `cn.bing.com`).
const SEARCH_ENGINES: [&str; 7] = [
    "google",
    "bing",
    "duckduckgo",
    "yahoo",
    "baidu",
    "yandex",
    "ecosia",
];

/// Social networks, by domain: the host is the domain or one of its
/// subdomains (`l.facebook.com`, never `mint.com` for `t.co`).
const SOCIAL_DOMAINS: [&str; 10] = [
    "facebook.com",
    "fb.com",
    "t.co",
    "twitter.com",
    "x.com",
    "linkedin.com",
    "lnkd.in",
    "reddit.com",
    "instagram.com",
    "pinterest.com",
];

/// Search, social or other, from a referrer URL's host (parsed by `url`, so
/// ports, credentials and case do not matter). The lists are short on
/// purpose: Snowplow's referer database, the maintained source, is not
/// published to any package registry, and the Rust parsers around it load it
/// from a downloaded file at run time.
pub fn referrer_class(referrer: &str) -> &'static str {
    let Some(host) = url::Url::parse(referrer)
        .ok()
        .and_then(|u| u.host_str().map(|h| h.trim_end_matches('.').to_owned()))
    else {
        return "ref:other";
    };
    let labels: Vec<&str> = host.split('.').collect();
    // The last label is the top-level domain, never an engine's name.
    let named = &labels[..labels.len().saturating_sub(1)];
    if named.iter().any(|l| SEARCH_ENGINES.contains(l)) {
        "ref:search"
    } else if SOCIAL_DOMAINS
        .iter()
        .any(|d| host == *d || host.ends_with(&format!(".{d}")))
    {
        "ref:social"
    } else {
        "ref:other"
    }
}

fn attributes(attrs: &Attributes) -> impl Iterator<Item = String> + '_ {
    attrs.iter().map(|(k, v)| format!("attr:{k}={v}"))
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
    let mut out: Vec<String> = device
        .map(|d| format!("device:{}", d.as_str()))
        .into_iter()
        .collect();
    out.push(hour_bucket(corrected_ts_ms).to_owned());
    for referrer in events
        .iter()
        .filter_map(|e| e.context.as_ref()?.referrer.as_deref())
    {
        out.push(referrer_class(referrer).to_owned());
    }
    out.extend(attributes(attrs));
    out.sort();
    out.dedup();
    out
}

/// The segments of a recommendations request: the same kinds a batch
/// counts toward (the referrer when the caller passes the page's).
pub fn of_request(
    device: Option<DeviceClass>,
    referrer: Option<&str>,
    attrs: &Attributes,
    now_ms: i64,
) -> Vec<String> {
    let mut out: Vec<String> = device
        .map(|d| format!("device:{}", d.as_str()))
        .into_iter()
        .collect();
    out.push(hour_bucket(now_ms).to_owned());
    out.extend(
        referrer
            .filter(|r| !r.is_empty())
            .map(|r| referrer_class(r).to_owned()),
    );
    out.extend(attributes(attrs));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contexts_map_to_segments() {
        assert_eq!(hour_bucket(3 * 3_600_000), "hour:night");
        assert_eq!(hour_bucket(86_400_000 + 20 * 3_600_000), "hour:evening");
        assert_eq!(
            referrer_class("https://www.google.com/search?q=x"),
            "ref:search"
        );
        assert_eq!(referrer_class("https://t.co/abc"), "ref:social");
        assert_eq!(referrer_class("https://news.example/a"), "ref:other");
        for (referrer, class) in [
            ("https://www.google.co.uk/", "ref:search"),
            ("HTTPS://WWW.BING.COM:443/search", "ref:search"),
            ("https://l.facebook.com/l.php?u=x", "ref:social"),
            ("https://user:pw@x.com/post", "ref:social"),
            // Substrings of other sites' names are not those sites.
            ("https://mint.com/", "ref:other"),
            ("https://netflix.com/", "ref:other"),
            ("https://google/", "ref:other"),
            ("not a url", "ref:other"),
        ] {
            assert_eq!(referrer_class(referrer), class, "{referrer}");
        }
        let attrs = Attributes::from([("locale".to_string(), "de-DE".to_string())]);
        let s = of_request(Some(DeviceClass::Mobile), None, &attrs, 0);
        assert_eq!(s, ["device:mobile", "hour:night", "attr:locale=de-DE"]);
        let s = of_request(None, Some("https://t.co/x"), &Attributes::new(), 0);
        assert_eq!(s, ["hour:night", "ref:social"]);
    }
}
