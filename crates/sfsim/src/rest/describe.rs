//! describeGlobal, sObject basic info and describe (reference sections 2.3 and 2.4).

use super::{object_or_404, Ctx, Reply, Result};
use serde_json::{json, Value as Json};

pub(super) fn global(ctx: &Ctx) -> Result {
    let sobjects: Vec<Json> = ctx
        .org()
        .schema
        .objects
        .iter()
        .map(|o| o.global_describe(&ctx.version))
        .collect();
    Ok(Reply::ok(
        &json!({"encoding": "UTF-8", "maxBatchSize": 200, "sobjects": sobjects}),
    ))
}

pub(super) fn basic(ctx: &Ctx, obj: &str) -> Result {
    let idx = object_or_404(ctx, obj)?;
    let def = &ctx.org().schema.objects[idx];
    Ok(Reply::ok(
        &json!({"objectDescribe": def.global_describe(&ctx.version), "recentItems": []}),
    ))
}

pub(super) fn describe(ctx: &Ctx, obj: &str) -> Result {
    let idx = object_or_404(ctx, obj)?;
    let schema = &ctx.org().schema;
    Ok(Reply::ok(
        &schema.objects[idx].describe(&ctx.version, schema),
    ))
}
