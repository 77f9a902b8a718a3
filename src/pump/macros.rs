//! TEMPORARY stand-in, replaced by the real expansion (branch wt-scan).
use super::directives::{Define, Spelling, Token};
#[derive(Default)]
pub struct Table {
    n: usize,
}
impl Table {
    pub fn add(&mut self, _d: &Define) {
        self.n += 1;
    }
    pub fn is_empty(&self) -> bool {
        self.n == 0
    }
}
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ExpandError {
    TooMany,
    TooDeep,
}
pub fn header_names(_t: &[Token], _table: &Table, _limit: usize) -> Result<Vec<Spelling>, ExpandError> {
    Ok(vec![])
}
