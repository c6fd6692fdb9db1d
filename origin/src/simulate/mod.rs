//! `attune-origin simulate`: readers whose tastes are known ([`readers`])
//! visiting a running origin. Each visit asks for the reader's rail
//! (`GET /v1/recommendations`, with the API key), draws what the reader
//! examines and clicks, and sends it back as a tracker would
//! (`POST /v1/events`, MessagePack): impressions and clicks with the rail's
//! serve id and position, and a dwell on each clicked article; and, on half
//! the visits, a page view and dwell on an article the reader found on
//! their own, by taste (without those, readers only ever see what rails
//! show them, and rails only learn what they already show). A client of
//! the origin's public API only, so it works against either backend and
//! shows on the dashboard like real traffic.

pub mod readers;

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use attune_core::codec::encode_msgpack;
use attune_core::{Batch, Event, Interaction, Slot};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde::Deserialize;

use crate::config::SimulateArgs;
use readers::{look, World};

/// Items per rail.
const RAIL: usize = 6;
/// A clicked article's visible dwell.
const DWELL_MS: u32 = 45_000;
/// The chance that a visit also reads an article the reader found on their
/// own (a section page, a link), as readers of a real site do.
const BROWSE: f64 = 0.5;
/// How often progress is printed.
const REPORT_EVERY: Duration = Duration::from_secs(10);

#[derive(Deserialize)]
struct CatalogItem {
    id: String,
    #[serde(default)]
    tags: Vec<String>,
}

#[derive(Deserialize)]
struct Catalog {
    items: Vec<CatalogItem>,
}

#[derive(Deserialize)]
struct RailItem {
    item: String,
}

#[derive(Deserialize)]
struct Rail {
    serve_id: String,
    model: String,
    items: Vec<RailItem>,
}

/// The catalog as the world sees it: ids, and each item's category (its
/// first tag) as an index.
struct Items {
    ids: Vec<String>,
    index: HashMap<String, usize>,
    category_of: Vec<usize>,
    categories: usize,
}

impl Items {
    fn new(catalog: Catalog) -> Items {
        let mut tags: Vec<String> = catalog
            .items
            .iter()
            .map(|i| i.tags.first().cloned().unwrap_or_default())
            .collect();
        tags.sort();
        tags.dedup();
        let category_of = catalog
            .items
            .iter()
            .map(|i| {
                let tag = i.tags.first().cloned().unwrap_or_default();
                tags.binary_search(&tag).unwrap_or(0)
            })
            .collect();
        let ids: Vec<String> = catalog.items.into_iter().map(|i| i.id).collect();
        let index = ids
            .iter()
            .enumerate()
            .map(|(n, id)| (id.clone(), n))
            .collect();
        Items {
            ids,
            index,
            category_of,
            categories: tags.len(),
        }
    }
}

/// What a run did.
#[derive(Debug)]
pub struct Simulated {
    /// The readers and the catalog (items in the catalog's id order).
    pub world: World,
    /// The catalog's item ids, by the world's item index.
    pub ids: Vec<String>,
    /// Per reader, the items they have read (clicked or found on their
    /// own): a reader does not click what they have read.
    pub read: Vec<HashSet<usize>>,
    /// Clicks sent in batches the origin accepted, per reader.
    pub clicks: Vec<u64>,
    /// Batches the origin did not accept (their events are not counted).
    pub refused: u64,
}

/// Running totals, printed every [`REPORT_EVERY`].
#[derive(Default)]
struct Totals {
    visits: u64,
    impressions: u64,
    clicks: u64,
    refused: u64,
    first_personal: Option<Duration>,
}

/// Runs the readers until `args.visits` visits (or forever with 0).
pub async fn run(args: &SimulateArgs) -> Result<Simulated> {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()?;
    let items = wait_for_catalog(&http, args).await?;
    let world = World::new(
        args.seed,
        args.readers.max(1),
        items.category_of.clone(),
        items.categories,
    );
    println!(
        "simulating {} readers over {} items in {} categories at {} visits/s against {}",
        world.readers(),
        items.ids.len(),
        items.categories,
        args.visits_per_second,
        args.origin
    );
    let mut rng = SmallRng::seed_from_u64(args.seed ^ 0x5eed);
    let pause = Duration::from_secs_f64(1.0 / args.visits_per_second.max(0.01));
    let started = Instant::now();
    let (mut totals, mut reported) = (Totals::default(), Instant::now());
    let mut read = vec![HashSet::new(); world.readers()];
    let mut clicks = vec![0; world.readers()];
    while args.visits == 0 || totals.visits < args.visits {
        let reader = rng.random_range(0..world.readers());
        let visited = visit(
            &http,
            args,
            (&world, &items),
            (reader, &mut read[reader], &mut clicks[reader]),
            &mut rng,
            &mut totals,
        );
        match visited.await {
            Ok(personal) => {
                if personal && totals.first_personal.is_none() {
                    totals.first_personal = Some(started.elapsed());
                    report(&totals, started.elapsed());
                }
            }
            Err(e) => {
                eprintln!("simulate: a visit failed: {e:#}");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
        if reported.elapsed() >= REPORT_EVERY {
            reported = Instant::now();
            report(&totals, started.elapsed());
        }
        tokio::time::sleep(pause).await;
    }
    report(&totals, started.elapsed());
    Ok(Simulated {
        world,
        ids: items.ids,
        read,
        clicks,
        refused: totals.refused,
    })
}

fn report(t: &Totals, elapsed: Duration) {
    let ctr = t.clicks as f64 / t.impressions.max(1) as f64;
    let personal = t.first_personal.map_or_else(
        || "no personal rail yet".to_owned(),
        |d| format!("first personal rail after {:.1} s", d.as_secs_f64()),
    );
    println!(
        "simulate: {:.0} s · {} visits · {} impressions · {} clicks (CTR {:.1} %) · {} batches refused · {personal}",
        elapsed.as_secs_f64(),
        t.visits,
        t.impressions,
        t.clicks,
        100.0 * ctr,
        t.refused
    );
}

/// What a reader did with a served rail (`ids` in rail order, `seen` from
/// [`look`]), as a tracker reports it: an impression of each examined item
/// and, for each clicked one, the click and a [`DWELL_MS`] visible dwell,
/// with the rail's serve id and position on the impressions and clicks.
pub fn rail_events(serve_id: &str, ids: &[&str], seen: &[(bool, bool)], ts_ms: i64) -> Vec<Event> {
    let mut events = Vec::new();
    for (p, (id, &(examined, clicked))) in ids.iter().zip(seen).enumerate() {
        let slot = Some((serve_id, p));
        if examined {
            events.push(event(Interaction::Impression, id, slot, ts_ms));
        }
        if clicked {
            events.push(event(Interaction::Click, id, slot, ts_ms));
            let dwell = Interaction::Dwell {
                visible_ms: DWELL_MS,
            };
            events.push(event(dwell, id, None, ts_ms));
        }
    }
    events
}

/// One event with a fresh id; `slot` is the rail's serve id and position.
fn event(interaction: Interaction, item: &str, slot: Option<(&str, usize)>, ts_ms: i64) -> Event {
    Event {
        id: uuid::Uuid::now_v7(),
        ts_ms,
        interaction,
        item: Some(item.to_owned()),
        context: None,
        slot: slot.map(|(serve_id, p)| Slot {
            serve_id: serve_id.to_owned(),
            position: p as u8,
        }),
    }
}

/// The site's catalog, once it has items (the demo loads it after the
/// origin starts).
async fn wait_for_catalog(http: &reqwest::Client, args: &SimulateArgs) -> Result<Items> {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let reply = http
            .get(format!("{}/v1/items", args.origin))
            .bearer_auth(&args.api_key)
            .send()
            .await;
        match reply {
            Ok(r) if r.status().is_success() => {
                let catalog: Catalog = r.json().await.context("read the catalog")?;
                if !catalog.items.is_empty() {
                    return Ok(Items::new(catalog));
                }
            }
            Ok(r) if r.status().is_client_error() => bail!(
                "the origin refused the catalog read ({}): check --api-key and --site-key",
                r.status()
            ),
            _ => {}
        }
        if Instant::now() > deadline {
            bail!(
                "no catalog at {} after 2 minutes: load items with POST /v1/items first",
                args.origin
            );
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// One visit: the rail, what the reader did with it, sent back. True when
/// the rail was personal (ranked with what the reader did before).
async fn visit(
    http: &reqwest::Client,
    args: &SimulateArgs,
    (world, items): (&World, &Items),
    (reader, read, clicks): (usize, &mut HashSet<usize>, &mut u64),
    rng: &mut SmallRng,
    totals: &mut Totals,
) -> Result<bool> {
    let anon = format!("sim-{reader}");
    let rail: Rail = http
        .get(format!(
            "{}/v1/recommendations?user=anon:{anon}&k={RAIL}",
            args.origin
        ))
        .bearer_auth(&args.api_key)
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    totals.visits += 1;
    let personal = rail.model != "popularity";
    let shown: Vec<usize> = rail
        .items
        .iter()
        .filter_map(|i| items.index.get(&i.item).copied())
        .collect();
    let (_, mut seen) = look(world, reader, &shown, rng);
    for (item, (_, clicked)) in shown.iter().zip(seen.iter_mut()) {
        // What they have read, they pass over.
        if *clicked {
            *clicked = read.insert(*item);
        }
    }
    totals.impressions += seen.iter().filter(|(e, _)| *e).count() as u64;
    totals.clicks += seen.iter().filter(|(_, c)| *c).count() as u64;
    let now = crate::clock::now_ms();
    let ids: Vec<&str> = shown.iter().map(|&n| items.ids[n].as_str()).collect();
    let mut events = rail_events(&rail.serve_id, &ids, &seen, now);
    // A click opens the article: its page view too.
    for (id, _) in ids.iter().zip(&seen).filter(|(_, (_, c))| *c) {
        events.push(event(Interaction::PageView, id, None, now));
    }
    if rng.random::<f64>() < BROWSE {
        let item = world.browse(reader, rng);
        read.insert(item);
        let id = &items.ids[item];
        events.push(event(Interaction::PageView, id, None, now));
        let dwell = Interaction::Dwell {
            visible_ms: DWELL_MS,
        };
        events.push(event(dwell, id, None, now));
    }
    if events.is_empty() {
        return Ok(personal);
    }
    let body = encode_msgpack(&Batch {
        site_key: args.site_key.clone(),
        anonymous_id: anon,
        user_token: None,
        sent_at_ms: now,
        dropped: 0,
        events,
    });
    let r = http
        .post(format!("{}/v1/events", args.origin))
        .header("content-type", "application/msgpack")
        .body(body)
        .send()
        .await?;
    if r.status() == reqwest::StatusCode::ACCEPTED {
        *clicks += seen.iter().filter(|(_, c)| *c).count() as u64;
    } else {
        totals.refused += 1;
    }
    Ok(personal)
}
