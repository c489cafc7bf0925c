//! OAuth2 token endpoint, SOAP partner login and the identity URL.

use actix_web::web;

pub fn routes(_cfg: &mut web::ServiceConfig) {}
