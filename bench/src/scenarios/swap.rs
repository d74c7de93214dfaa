//! Scenario placeholder (being written).

use crate::report::Report;
use crate::Settings;

pub fn run(s: &Settings) -> Report {
    let mut r = Report::new(s.quick);
    r.notes.push("swap: not implemented yet".into());
    r
}
