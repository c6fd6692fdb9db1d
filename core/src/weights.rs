//! How much each interaction says about a person's interest in an item.

use serde::{Deserialize, Serialize};

use crate::event::Interaction;

/// Feedback weight per kind. The defaults order the signals
/// click > long dwell > full scroll > page view; impressions say nothing of
/// interest on their own (weight 0: nothing learns from them yet).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FeedbackWeights {
    /// A page view.
    pub page_view: f64,
    /// A click on an item.
    pub click: f64,
    /// A scroll to 100 %; shallower scrolls count in proportion.
    pub scroll_full: f64,
    /// A dwell of at least `long_dwell_ms`; shorter dwells count in proportion.
    pub dwell_long: f64,
    /// Visible time from which a dwell counts fully.
    pub long_dwell_ms: u32,
    /// An impression.
    pub impression: f64,
}

impl Default for FeedbackWeights {
    fn default() -> Self {
        FeedbackWeights {
            page_view: 0.25,
            click: 3.0,
            scroll_full: 1.0,
            dwell_long: 2.0,
            long_dwell_ms: 30_000,
            impression: 0.0,
        }
    }
}

/// A weight configuration that cannot be used.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("feedback weight `{field}` is {value}; weights must be finite numbers")]
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
            ("scroll_full", self.scroll_full),
            ("dwell_long", self.dwell_long),
            ("impression", self.impression),
            ("long_dwell_ms", f64::from(self.long_dwell_ms)),
        ];
        match fields
            .into_iter()
            .find(|(name, v)| !v.is_finite() || (*name == "long_dwell_ms" && *v <= 0.0))
        {
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
            Interaction::Dwell { visible_ms } => {
                let long = f64::from(self.long_dwell_ms.max(1));
                self.dwell_long * (f64::from(visible_ms) / long).min(1.0)
            }
        }
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
    }
}
