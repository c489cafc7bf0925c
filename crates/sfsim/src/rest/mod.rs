//! REST API under `/services/data/vNN.N/`.

use actix_web::web;

#[derive(Default)]
pub struct RestState {}

pub fn routes(_cfg: &mut web::ServiceConfig) {}
