//! Packet classifier: the lowest-priority-number rule whose five fields all match a key.
//!
//! CONTRACT (owned by the classifier work; the engine and compiler rely only on this):
//! - A rule has five fields: `src` and `dst` as inclusive u32 ranges (an IPv4 prefix, or a range
//!   of identity ids), `proto` as value/mask, `sport` and `dport` as inclusive u16 ranges.
//! - `classify` returns the `RuleId` of the matching rule with the smallest `priority`
//!   (ties: smallest `RuleId`), or `None`.
//! - Built off the hot path by [`ClassifierBuilder`]; `classify` allocates nothing.
//!
//! This placeholder is the naive linear scan; it doubles as the reference evaluator.

/// Index of a rule within its tier (its position in the builder's input order).
pub type RuleId = u32;

/// The five header fields a classifier looks at.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct ClassifierKey {
    pub src: u32,
    pub dst: u32,
    pub proto: u8,
    pub sport: u16,
    pub dport: u16,
}

/// One classifier rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ClassifierRule {
    pub src: (u32, u32),
    pub dst: (u32, u32),
    /// (value, mask): matches when `proto & mask == value & mask`.
    pub proto: (u8, u8),
    pub sport: (u16, u16),
    pub dport: (u16, u16),
    /// Lower wins.
    pub priority: u32,
}

impl ClassifierRule {
    /// The rule that matches everything, with the given priority.
    pub fn any(priority: u32) -> Self {
        Self {
            src: (0, u32::MAX),
            dst: (0, u32::MAX),
            proto: (0, 0),
            sport: (0, u16::MAX),
            dport: (0, u16::MAX),
            priority,
        }
    }

    #[inline]
    pub fn matches(&self, k: &ClassifierKey) -> bool {
        k.src >= self.src.0
            && k.src <= self.src.1
            && k.dst >= self.dst.0
            && k.dst <= self.dst.1
            && (k.proto & self.proto.1) == (self.proto.0 & self.proto.1)
            && k.sport >= self.sport.0
            && k.sport <= self.sport.1
            && k.dport >= self.dport.0
            && k.dport <= self.dport.1
    }
}

/// Collects rules, then builds an immutable [`Classifier`].
#[derive(Debug, Default, Clone)]
pub struct ClassifierBuilder {
    rules: Vec<ClassifierRule>,
}

impl ClassifierBuilder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a rule; its `RuleId` is its insertion index.
    pub fn push(&mut self, rule: ClassifierRule) -> RuleId {
        self.rules.push(rule);
        (self.rules.len() - 1) as RuleId
    }

    pub fn build(self) -> Classifier {
        Classifier { rules: self.rules }
    }
}

/// An immutable classifier.
#[derive(Debug, Clone)]
pub struct Classifier {
    rules: Vec<ClassifierRule>,
}

impl Classifier {
    #[inline]
    pub fn classify(&self, key: &ClassifierKey) -> Option<RuleId> {
        reference_classify(&self.rules, key)
    }

    pub fn len(&self) -> usize {
        self.rules.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }
}

/// The naive reference: a linear scan for the best matching rule.
pub fn reference_classify(rules: &[ClassifierRule], key: &ClassifierKey) -> Option<RuleId> {
    let mut best: Option<(u32, RuleId)> = None;
    for (i, r) in rules.iter().enumerate() {
        if r.matches(key) && best.is_none_or(|(p, _)| r.priority < p) {
            best = Some((r.priority, i as RuleId));
        }
    }
    best.map(|(_, i)| i)
}
