//! Cold-start segments: the contexts a newcomer is ranked by. Popularity is
//! kept per segment as well as per site, so a reader the model knows nothing
//! about still gets what people like them take: same device class, same time
//! of day, same kind of referrer, same stated attributes (demographics,
//! locale).
//!
//! The origin counts events toward these segments and reads them for a
//! newcomer's rail; the edge keys its cached newcomer lists by them. Both
//! classify with the functions here, so a list cached for `device:mobile`
//! is the one the origin ranked for `device:mobile`.

use crate::DeviceClass;

/// What a User-Agent names, as woothee (a maintained parser with built-in
/// data, small enough for the edge's wasm) reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Agent {
    /// Coarse class.
    pub class: DeviceClass,
    /// Browser name, e.g. `Chrome`.
    pub browser: Option<String>,
    /// Operating system, e.g. `Android`.
    pub os: Option<String>,
}

/// Parses a User-Agent; `None` when woothee does not know it.
pub fn parse_user_agent(ua: &str) -> Option<Agent> {
    let unknown = woothee::woothee::VALUE_UNKNOWN;
    let parsed = woothee::parser::Parser::new()
        .parse(ua)
        .filter(|p| p.category != unknown)?;
    let known = |s: &str| (!s.is_empty() && s != unknown).then(|| s.to_owned());
    let class = match (parsed.category, parsed.os) {
        (_, "iPad") => DeviceClass::Tablet,
        ("pc", _) => DeviceClass::Desktop,
        ("smartphone" | "mobilephone", _) => DeviceClass::Mobile,
        _ => DeviceClass::Other,
    };
    Some(Agent {
        class,
        browser: known(parsed.name),
        os: known(parsed.os),
    })
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

/// A device class's segment.
pub fn device_segment(class: DeviceClass) -> String {
    format!("device:{}", class.as_str())
}

/// A stated attribute's segment.
pub fn attribute_segment(name: &str, value: &str) -> String {
    format!("attr:{name}={value}")
}

/// The segments of a request for a newcomer's rail, in this order: device
/// class, time of day (of `now_ms`), kind of referrer (when the page has
/// one), then the stated attributes.
pub fn of_request<'a>(
    device: Option<DeviceClass>,
    referrer: Option<&str>,
    attributes: impl IntoIterator<Item = (&'a str, &'a str)>,
    now_ms: i64,
) -> Vec<String> {
    let mut out: Vec<String> = device.map(device_segment).into_iter().collect();
    out.push(hour_bucket(now_ms).to_owned());
    out.extend(
        referrer
            .filter(|r| !r.is_empty())
            .map(|r| referrer_class(r).to_owned()),
    );
    out.extend(attributes.into_iter().map(|(k, v)| attribute_segment(k, v)));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contexts_map_to_segments() {
        assert_eq!(hour_bucket(3 * 3_600_000), "hour:night");
        assert_eq!(hour_bucket(86_400_000 + 20 * 3_600_000), "hour:evening");
        assert_eq!(hour_bucket(-3_600_000), "hour:evening");
        for (referrer, class) in [
            ("https://www.google.com/search?q=x", "ref:search"),
            ("https://t.co/abc", "ref:social"),
            ("https://news.example/a", "ref:other"),
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
        let s = of_request(Some(DeviceClass::Mobile), None, [("locale", "de-DE")], 0);
        assert_eq!(s, ["device:mobile", "hour:night", "attr:locale=de-DE"]);
        let s = of_request(None, Some("https://t.co/x"), [], 0);
        assert_eq!(s, ["hour:night", "ref:social"]);
        assert_eq!(of_request(None, Some(""), [], 0), ["hour:night"]);
    }

    #[test]
    fn user_agents_map_to_device_classes() {
        let class = |ua: &str| parse_user_agent(ua).map(|a| a.class);
        let iphone = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.0 Mobile/15E148 Safari/604.1";
        let agent = parse_user_agent(iphone).expect("known");
        assert_eq!(agent.class, DeviceClass::Mobile);
        assert_eq!(agent.os.as_deref(), Some("iPhone"));
        let chrome = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36";
        let agent = parse_user_agent(chrome).expect("known");
        assert_eq!(agent.class, DeviceClass::Desktop);
        assert_eq!(agent.browser.as_deref(), Some("Chrome"));
        let ipad = "Mozilla/5.0 (iPad; CPU OS 17_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.0 Mobile/15E148 Safari/604.1";
        assert_eq!(class(ipad), Some(DeviceClass::Tablet));
        let pixel = "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Mobile Safari/537.36";
        assert_eq!(class(pixel), Some(DeviceClass::Mobile));
        assert_eq!(class(""), None);
        // Tools and crawlers are a class of their own.
        assert_eq!(class("curl/8.5.0"), Some(DeviceClass::Other));
        assert_eq!(class("no browser at all"), None);
    }
}
