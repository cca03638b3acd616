//! The container agent. Placeholder while the container module compiles.

use std::convert::Infallible;

use crate::error::Error;

pub fn run() -> Result<Infallible, Error> {
    Err(Error::Invalid("not yet".into()))
}
