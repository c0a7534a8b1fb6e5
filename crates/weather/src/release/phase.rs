//! A step of the train: what it routes, whichever API applies it.

/// What a step routes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "phase", rename_all = "kebab-case")]
pub enum Phase {
    /// Requests that satisfy `match` take the new lane; everyone else the old.
    AB { iteration: u32 },
    /// That share of all requests takes the new lane at the gateway.
    Weighted { weight: u32 },
    /// Every request on the new versions; the old kept at weight 0.
    Promote,
    /// Every request on the old versions; the new kept at weight 0.
    Rollback,
}

impl std::fmt::Display for Phase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Phase::AB { iteration } => write!(f, "A/B iteration {iteration}"),
            Phase::Weighted { weight } => write!(f, "weight {weight}%"),
            Phase::Promote => write!(f, "promotion"),
            Phase::Rollback => write!(f, "rollback"),
        }
    }
}

impl Phase {
    /// The gateway's weights, old and new.
    pub fn weights(self) -> (u32, u32) {
        match self {
            Phase::AB { .. } | Phase::Rollback => (100, 0),
            Phase::Weighted { weight } => (100 - weight, weight),
            Phase::Promote => (0, 100),
        }
    }

    /// Whether the step is judged by the checks (promotion and rollback are
    /// where the train ends).
    pub fn analysed(self) -> bool {
        matches!(self, Phase::AB { .. } | Phase::Weighted { .. })
    }
}
