//! A client generated from the origin's own OpenAPI document, as a mobile
//! or server team would make one, on real Kafka and Redis: if a request
//! body, a parameter or a response is typed wrong, the generator refuses the
//! document, skips the endpoint, or the generated call fails to parse.

use serde_json::Value;

use crate::common::kafka::{setup, Consumer};
use crate::common::{run_client, sdk_dir};

/// openapi-python-client (PyPI, in the tests' Python) generates a client
/// from `/openapi.json`; origin/tests/sdk/generated_client.py uses it for
/// the catalog, a typed `/v1/events` batch, a Segment batch, the profile
/// and the recommendations. (It failed before the query parameters were
/// declared as such and the viewport was a plain array: the generator
/// skipped `/v1/profile` and `/v1/recommendations`.)
#[tokio::test]
async fn a_client_generated_from_the_openapi_document_calls_the_api() {
    let (prefix, origin) = setup().await;
    let _consumer = Consumer::start(&prefix, &format!("g-{prefix}"));
    let scratch = tempfile::tempdir().unwrap();
    let mut cmd = std::process::Command::new(crate::common::python());
    cmd.arg(sdk_dir().join("generated_client.py")).args([
        origin.url("").trim_end_matches('/'),
        origin.site.api_key.as_str(),
        origin.site.site_key.as_str(),
        scratch.path().to_str().unwrap(),
    ]);
    let seen: Value = serde_json::from_slice(&run_client(cmd).await.stdout).unwrap();
    assert_eq!(seen["events_accepted"], 1, "{seen}");
    assert_eq!(seen["segment_accepted"], 1, "{seen}");
    assert_eq!(seen["profile_counts"]["click"], 1, "{seen}");
    assert_eq!(seen["recommendations_user"], "u-gen", "{seen}");
    assert!(
        !seen["recommended"].as_array().unwrap().is_empty(),
        "{seen}"
    );
}
