//! Relaying a generation to a client in one of the two dialects, and accounting for it.

pub mod browser;
pub mod openai;
mod outcome;

pub use outcome::{Finish, Outcome};
