//! GrowthBook's cross-language assignment vectors (`testdata/growthbook.json`)
//! through attune-core's experiments module: every hash, bucket range,
//! variation choice, namespace and equal-weights case.

use attune_core::experiments::{
    assign, bucket_ranges, choose_arm, equal_weights, hash, in_namespace, Namespace,
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

/// `assign` is the reference's steps in its order: the namespace, then the
/// hash, the ranges and the choice; and arms fill by weight.
#[test]
fn assignment_follows_namespace_coverage_and_weights() {
    let weights = [0.2, 0.8];
    let ns = Namespace {
        id: "rails".into(),
        start: 0.0,
        end: 0.5,
    };
    let mut per_arm = [0u32; 2];
    let (mut outside_ns, mut uncovered) = (0, 0);
    for i in 0..20_000 {
        let unit = format!("anon:{i}");
        let got = assign("exp-seed", &unit, 0.5, &weights, Some(&ns));
        if !in_namespace(&unit, &ns) {
            assert_eq!(got, None, "{unit} is outside the namespace");
            outside_ns += 1;
            continue;
        }
        let ranges = bucket_ranges(2, 0.5, Some(&weights));
        assert_eq!(
            got,
            choose_arm(hash("exp-seed", &unit, 2).unwrap(), &ranges),
            "{unit}"
        );
        match got {
            Some(arm) => per_arm[arm] += 1,
            None => uncovered += 1,
        }
    }
    // Half the units are in the namespace; half of those are covered, and
    // arm 1 holds four times arm 0.
    assert!((9_000..11_000).contains(&outside_ns), "{outside_ns}");
    assert!((4_400..5_600).contains(&uncovered), "{uncovered}");
    let ratio = f64::from(per_arm[1]) / f64::from(per_arm[0]);
    assert!((3.5..4.5).contains(&ratio), "{per_arm:?}");
}

mod interleaving {
    use attune_core::experiments::{credit, team_draft, Team};

    fn ranking(order: &[u32]) -> Vec<u32> {
        order.to_vec()
    }

    #[test]
    fn each_team_places_its_own_best_remaining_items_and_counts_stay_even() {
        let a = ranking(&[1, 2, 3, 4, 5, 6, 7, 8]);
        let b = ranking(&[8, 3, 1, 9, 10, 2, 11, 12]);
        for seed in 0..200 {
            let rail = team_draft(&a, &b, 6, seed);
            assert_eq!(rail.len(), 6);
            for (i, (item, team)) in rail.iter().enumerate() {
                assert!(!rail[..i].iter().any(|(x, _)| x == item), "no item twice");
                // The team's highest-ranked item not placed before it.
                let own = if *team == Team::A { &a } else { &b };
                let best = own.iter().find(|x| !rail[..i].iter().any(|(y, _)| y == *x));
                assert_eq!(best, Some(item), "seed {seed}, position {i}");
                let count = |t| rail[..=i].iter().filter(|(_, x)| *x == t).count() as i64;
                assert!(
                    (count(Team::A) - count(Team::B)).abs() <= 1,
                    "teams stay even"
                );
            }
        }
        assert_eq!(
            team_draft(&a, &b, 6, 9),
            team_draft(&a, &b, 6, 9),
            "repeatable"
        );
        let firsts = (0..200)
            .filter(|&s| team_draft(&a, &b, 1, s)[0].1 == Team::A)
            .count();
        assert!(
            (70..=130).contains(&firsts),
            "a fair coin decides who starts: {firsts}/200"
        );
    }

    #[test]
    fn a_short_ranking_hands_its_turns_to_the_other() {
        let rail = team_draft(&[1u32], &[2, 3, 4], 4, 1);
        let items: Vec<u32> = rail.iter().map(|(x, _)| *x).collect();
        assert_eq!(items.len(), 4);
        assert!(items.contains(&1) && items.contains(&4));
    }

    /// Readers click the items they like (a known set) with a chance that
    /// falls with position: the ranker that ranks liked items higher wins
    /// most rails, and two identical rankers split them evenly.
    #[test]
    fn clicks_credit_the_better_ranker() {
        let liked = |x: u32| x.is_multiple_of(3);
        let better: Vec<u32> = (0..30)
            .filter(|&x| liked(x))
            .chain((0..30).filter(|&x| !liked(x)))
            .collect();
        let worse: Vec<u32> = (0..30).collect();
        let mut state = 12345u64;
        let mut uniform = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 11) as f64 / (1u64 << 53) as f64
        };
        let mut play = |a: &[u32], b: &[u32]| {
            let (mut wins_a, mut wins_b) = (0, 0);
            for seed in 0..2_000 {
                let rail = team_draft(a, b, 8, seed);
                let clicked: Vec<usize> = (0..rail.len())
                    .filter(|&p| liked(rail[p].0) && uniform() < 0.5 / (p as f64 + 1.0))
                    .collect();
                let teams: Vec<Team> = rail.iter().map(|(_, t)| *t).collect();
                match credit(&teams, &clicked) {
                    Some(Team::A) => wins_a += 1,
                    Some(Team::B) => wins_b += 1,
                    None => {}
                }
            }
            (wins_a, wins_b)
        };
        let (worse_wins, better_wins) = play(&worse, &better);
        assert!(
            better_wins > 3 * worse_wins,
            "better {better_wins}, worse {worse_wins}"
        );
        let (x, y) = play(&worse, &worse);
        let share = x as f64 / (x + y) as f64;
        assert!(
            (0.4..=0.6).contains(&share),
            "identical rankers split: {x} vs {y}"
        );
    }
}
