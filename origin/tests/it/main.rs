//! The origin's integration tests, one binary (the rdkafka-heavy crate is
//! linked once): real Kafka and Redis from `cargo xtask test` (or `cargo xtask
//! stack up` and the variables in target/stack/env), the embedded default in
//! temporary directories. Each suite keeps to its own topics, site or group;
//! topics a test creates go when it ends (`common::kafka::OwnedTopics`).
//!
//! Fault injection that disturbs the shared broker (`broker_outage.rs`) is a
//! binary of its own: cargo runs test binaries one at a time.

#[path = "../common/mod.rs"]
mod common;

mod alerts;
mod audit;
mod consumer;
mod embedded;
mod experiments;
mod generated_client;
mod ingest_kafka;
mod layering;
mod model_versions;
mod profile_rules;
mod records_contract;
mod segment;
mod simulate;
mod slow_clients;
