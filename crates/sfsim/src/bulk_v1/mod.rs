//! Bulk API 1.0 under `/services/async/NN.N/`.

use actix_web::web;

#[derive(Default)]
pub struct BulkV1State {}

pub fn routes(_cfg: &mut web::ServiceConfig) {}
