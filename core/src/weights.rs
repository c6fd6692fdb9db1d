//! How much each interaction says about a person's interest in an item.

use serde::{Deserialize, Serialize};

use crate::event::{Event, Interaction};

/// Feedback weight per kind. The defaults order the signals
/// click on a recommended item > click > long dwell > full scroll > page
/// view. An impression says nothing of interest in a category (weight 0 for
/// affinities and popularity); an impression of a served item is an exposure,
/// which the model takes as a weak negative (`exposure`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FeedbackWeights {
    /// A page view.
    pub page_view: f64,
    /// A click on an item.
    pub click: f64,
    /// A click on an item a rail served (the event carries its slot): the
    /// reader took what was recommended.
    pub served_click: f64,
    /// A scroll to 100 %; shallower scrolls count in proportion.
    pub scroll_full: f64,
    /// A dwell of at least `long_dwell_ms`; shorter dwells count in proportion.
    pub dwell_long: f64,
    /// Visible time from which a dwell counts fully, on an item whose length
    /// is not known.
    pub long_dwell_ms: u32,
    /// An impression, for affinities and popularity.
    pub impression: f64,
    /// The model's step toward 0 for an impression of a served item: shown,
    /// and (so far) not taken. A later click outweighs it.
    pub exposure: f64,
    /// Reading speed, words per minute: an item of known length takes
    /// `words / words_per_minute` to read, and a dwell counts fully then.
    pub words_per_minute: f64,
    /// The share of an item's expected reading time that makes a *read*
    /// (not a glance).
    pub read_fraction: f64,
    /// Scroll depth (percent) at which a reader has been through an item:
    /// then half a read's time is a read ([`Self::is_read_through`]).
    pub read_through_pct: u8,
}

impl Default for FeedbackWeights {
    fn default() -> Self {
        FeedbackWeights {
            page_view: 0.25,
            click: 3.0,
            served_click: 4.0,
            scroll_full: 1.0,
            dwell_long: 2.0,
            long_dwell_ms: 30_000,
            impression: 0.0,
            exposure: 0.25,
            words_per_minute: 230.0,
            read_fraction: 0.5,
            read_through_pct: 90,
        }
    }
}

/// A weight configuration that cannot be used.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("feedback weight `{field}` is {value}; weights must be finite numbers (`long_dwell_ms` and `words_per_minute` positive, `read_fraction` within 0..=1)")]
pub struct InvalidWeights {
    /// The offending weight.
    pub field: &'static str,
    /// Its value.
    pub value: f64,
}

impl FeedbackWeights {
    /// Checks that every weight is a finite number and `long_dwell_ms` is positive.
    pub fn validate(&self) -> Result<(), InvalidWeights> {
        let fields = [
            ("page_view", self.page_view),
            ("click", self.click),
            ("served_click", self.served_click),
            ("exposure", self.exposure),
            ("scroll_full", self.scroll_full),
            ("dwell_long", self.dwell_long),
            ("impression", self.impression),
            ("long_dwell_ms", f64::from(self.long_dwell_ms)),
            ("words_per_minute", self.words_per_minute),
            ("read_fraction", self.read_fraction),
            ("read_through_pct", f64::from(self.read_through_pct)),
        ];
        let bad = |name: &str, v: f64| match name {
            _ if !v.is_finite() => true,
            "long_dwell_ms" | "words_per_minute" => v <= 0.0,
            "read_fraction" => !(0.0..=1.0).contains(&v),
            "read_through_pct" => v > 100.0,
            _ => false,
        };
        match fields.into_iter().find(|(name, v)| bad(name, *v)) {
            Some((field, value)) => Err(InvalidWeights { field, value }),
            None => Ok(()),
        }
    }

    /// The weight of one interaction.
    pub fn weight(&self, interaction: &Interaction) -> f64 {
        match *interaction {
            Interaction::PageView => self.page_view,
            Interaction::Click => self.click,
            Interaction::Impression => self.impression,
            Interaction::Scroll { depth_pct } => {
                self.scroll_full * f64::from(depth_pct.min(100)) / 100.0
            }
            Interaction::Dwell { visible_ms } => self.dwell_weight(visible_ms, None),
        }
    }

    /// The weight of one event: [`Self::weight`] of its interaction, except
    /// that a click on a served item (with a slot) is a `served_click`.
    pub fn event_weight(&self, event: &Event) -> f64 {
        match (event.interaction, &event.slot) {
            (Interaction::Click, Some(_)) => self.served_click,
            (interaction, _) => self.weight(&interaction),
        }
    }

    /// How long a person needs for an item of `words` words (unknown:
    /// `long_dwell_ms`), in ms.
    pub fn expected_ms(&self, words: Option<u32>) -> f64 {
        match words {
            Some(w) if w > 0 && self.words_per_minute > 0.0 => {
                f64::from(w) / self.words_per_minute * 60_000.0
            }
            _ => f64::from(self.long_dwell_ms.max(1)),
        }
    }

    /// A dwell's weight on an item of `words` words: in proportion to the
    /// item's expected reading time, full from it on.
    pub fn dwell_weight(&self, visible_ms: u32, words: Option<u32>) -> f64 {
        self.dwell_long * (f64::from(visible_ms) / self.expected_ms(words)).min(1.0)
    }

    /// Whether `visible_ms` on an item of `words` words is a read rather
    /// than a glance: at least `read_fraction` of its expected reading time.
    pub fn is_read(&self, visible_ms: u32, words: Option<u32>) -> bool {
        f64::from(visible_ms) >= self.read_fraction * self.expected_ms(words)
    }

    /// Whether `visible_ms` on an item of `words` words is a read once the
    /// reader has scrolled it to `read_through_pct`: half of what
    /// [`Self::is_read`] needs (a reader who went through it to the end
    /// read faster, or skimmed what they did not need).
    pub fn is_read_through(&self, visible_ms: u32, words: Option<u32>) -> bool {
        f64::from(visible_ms) >= self.read_fraction * self.expected_ms(words) / 2.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_order_is_click_long_dwell_scroll_view() {
        let w = FeedbackWeights::default();
        let click = w.weight(&Interaction::Click);
        let long_dwell = w.weight(&Interaction::Dwell { visible_ms: 60_000 });
        let scroll = w.weight(&Interaction::Scroll { depth_pct: 100 });
        let view = w.weight(&Interaction::PageView);
        assert!(click > long_dwell && long_dwell > scroll && scroll > view);
    }

    #[test]
    fn a_click_on_a_served_item_outweighs_any_other_click() {
        let w = FeedbackWeights::default();
        let mut e = Event {
            id: uuid::Uuid::nil(),
            ts_ms: 0,
            interaction: Interaction::Click,
            item: Some("a".into()),
            context: None,
            slot: None,
        };
        assert_eq!(w.event_weight(&e), w.click);
        e.slot = Some(crate::Slot {
            serve_id: "edge.0".into(),
            position: 2,
        });
        assert_eq!(w.event_weight(&e), w.served_click);
        assert!(w.served_click > w.click);
        e.interaction = Interaction::Impression;
        assert_eq!(w.event_weight(&e), w.impression);
    }

    #[test]
    fn partial_signals_count_in_proportion() {
        let w = FeedbackWeights::default();
        assert_eq!(w.weight(&Interaction::Scroll { depth_pct: 50 }), 0.5);
        assert_eq!(w.weight(&Interaction::Dwell { visible_ms: 15_000 }), 1.0);
    }

    #[test]
    fn non_finite_weights_are_refused() {
        let w = FeedbackWeights {
            click: f64::NAN,
            ..FeedbackWeights::default()
        };
        assert_eq!(w.validate().unwrap_err().field, "click");
        assert!(FeedbackWeights::default().validate().is_ok());
        let w = FeedbackWeights {
            read_fraction: 1.5,
            ..FeedbackWeights::default()
        };
        assert_eq!(w.validate().unwrap_err().field, "read_fraction");
    }

    #[test]
    fn a_read_depends_on_the_items_length_and_a_glance_is_not_one() {
        let w = FeedbackWeights::default();
        // 1,150 words at 230 wpm: five minutes.
        assert_eq!(w.expected_ms(Some(1_150)), 300_000.0);
        assert!(!w.is_read(2_000, Some(1_150)), "a glance");
        assert!(!w.is_read(120_000, Some(1_150)), "two fifths");
        assert!(w.is_read(150_000, Some(1_150)), "half of it");
        // Scrolled to the end: half of that.
        assert!(!w.is_read_through(74_999, Some(1_150)));
        assert!(w.is_read_through(75_000, Some(1_150)));
        // Unknown length: half of `long_dwell_ms`.
        assert!(!w.is_read(14_999, None) && w.is_read(15_000, None));
        // Dwell weighs in proportion to the item's own reading time.
        assert_eq!(w.dwell_weight(150_000, Some(1_150)), w.dwell_long / 2.0);
        assert_eq!(w.dwell_weight(600_000, Some(1_150)), w.dwell_long);
        assert_eq!(
            w.weight(&Interaction::Dwell { visible_ms: 15_000 }),
            w.dwell_weight(15_000, None)
        );
    }
}
