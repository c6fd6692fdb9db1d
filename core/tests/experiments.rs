//! GrowthBook's cross-language assignment vectors (`testdata/growthbook.json`)
//! through attune-core's experiments module: every hash, bucket range,
//! variation choice, namespace and equal-weights case.

use attune_core::experiments::{
    bucket_ranges, choose_arm, equal_weights, hash, in_namespace, Namespace,
};
use serde_json::Value;

fn vectors() -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/testdata/growthbook.json");
    serde_json::from_str(&std::fs::read_to_string(path).expect("read growthbook.json"))
        .expect("growthbook.json parses")
}

fn cases<'a>(v: &'a Value, section: &str) -> &'a Vec<Value> {
    let cases = v[section].as_array().expect("a section of cases");
    assert!(!cases.is_empty(), "{section} has cases");
    cases
}

fn floats(v: &Value) -> Vec<f64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect()
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-9
}

#[test]
fn hashes_match() {
    let v = vectors();
    for c in cases(&v, "hash") {
        let (seed, value, version) = (
            c[0].as_str().unwrap(),
            c[1].as_str().unwrap(),
            c[2].as_u64().unwrap(),
        );
        assert_eq!(hash(seed, value, version as u32), c[3].as_f64(), "{c}");
    }
}

#[test]
fn bucket_ranges_match() {
    let v = vectors();
    for c in cases(&v, "getBucketRange") {
        let args = &c[1];
        let weights = args[2].as_array().map(|_| floats(&args[2]));
        let got = bucket_ranges(
            args[0].as_i64().unwrap(),
            args[1].as_f64().unwrap(),
            weights.as_deref(),
        );
        let want: Vec<(f64, f64)> = c[2]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| (r[0].as_f64().unwrap(), r[1].as_f64().unwrap()))
            .collect();
        assert_eq!(got.len(), want.len(), "{c}");
        for (g, w) in got.iter().zip(&want) {
            assert!(close(g.0, w.0) && close(g.1, w.1), "{c}: {got:?}");
        }
    }
}

#[test]
fn arms_are_chosen_as_the_reference_chooses() {
    let v = vectors();
    for c in cases(&v, "chooseVariation") {
        let ranges: Vec<(f64, f64)> = c[2]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| (r[0].as_f64().unwrap(), r[1].as_f64().unwrap()))
            .collect();
        let want = c[3].as_i64().unwrap();
        let got = choose_arm(c[1].as_f64().unwrap(), &ranges).map_or(-1, |i| i as i64);
        assert_eq!(got, want, "{c}");
    }
}

#[test]
fn namespaces_match() {
    let v = vectors();
    for c in cases(&v, "inNamespace") {
        let ns = &c[2];
        let namespace = Namespace {
            id: ns[0].as_str().unwrap().into(),
            start: ns[1].as_f64().unwrap(),
            end: ns[2].as_f64().unwrap(),
        };
        assert_eq!(
            in_namespace(c[1].as_str().unwrap(), &namespace),
            c[3].as_bool().unwrap(),
            "{c}"
        );
    }
}

#[test]
fn equal_weights_match() {
    let v = vectors();
    for c in cases(&v, "getEqualWeights") {
        let got = equal_weights(c[0].as_i64().unwrap());
        let want = floats(&c[1]);
        assert_eq!(got.len(), want.len(), "{c}");
        // The reference rounds its fixture to 8 decimals.
        assert!(
            got.iter().zip(&want).all(|(g, w)| (g - w).abs() < 1e-8),
            "{c}: {got:?}"
        );
    }
}
