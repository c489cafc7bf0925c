//! Bulk API 2.0 query jobs under `/services/data/vNN.N/jobs/query`.

use actix_web::web;

#[derive(Default)]
pub struct BulkV2State {}

pub fn routes(_cfg: &mut web::ServiceConfig) {}
