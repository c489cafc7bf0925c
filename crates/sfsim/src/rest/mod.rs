//! REST API under `/services/data/` (reference section 2).
//!
//! Every request under `/services/data/` goes through one hand-written router, [`dispatch`], so
//! that composite batch can run its subrequests through exactly the code a direct request takes.
//! The session, quota, faults and `Sforce-Limit-Info` are the guard's business
//! ([`crate::http::api_guard`]), not this module's.

mod composite;
mod describe;
mod limits;
mod query;
mod replication;
mod sobjects;

use crate::error::SfError;
use crate::http::respond::JSON_UTF8;
use crate::http::AppState;
use actix_web::http::header::HeaderMap;
use actix_web::http::{Method, StatusCode};
use actix_web::{web, HttpRequest, HttpResponse};
use bytes::Bytes;
use serde_json::{json, Value as Json};

pub use query::Cursors;

/// REST state that outlives a request: open query cursors.
#[derive(Default)]
pub struct RestState {
    pub cursors: Cursors,
}

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/services/data{tail:.*}").to(handle));
}

/// One REST request, owned so that it can run on the blocking pool.
pub(crate) struct Ctx {
    pub state: web::Data<AppState>,
    pub method: Method,
    /// Without the `v`: `62.0`.
    pub version: String,
    /// Percent-decoded path segments after the version, empty ones dropped.
    pub segs: Vec<String>,
    pub params: Vec<(String, String)>,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Ctx {
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The API version as a number, for behaviour that changed between versions.
    pub fn version_num(&self) -> f64 {
        self.version.parse().unwrap_or(0.0)
    }

    pub fn org(&self) -> &std::sync::Arc<crate::store::Org> {
        &self.state.org
    }

    /// `/services/data/vNN.N`, the prefix every URL in a response starts with.
    pub fn base(&self) -> String {
        format!("/services/data/v{}", self.version)
    }

    /// The body as JSON; Salesforce's parser error otherwise.
    pub fn json_body(&self) -> Result<Json> {
        if self.body.iter().all(u8::is_ascii_whitespace) {
            return Err(Reply::bad(SfError::new(
                "JSON_PARSER_ERROR",
                "The request body is either invalid or incomplete",
            )));
        }
        serde_json::from_slice(&self.body).map_err(|e| {
            Reply::bad(SfError::new(
                "JSON_PARSER_ERROR",
                format!(
                    "Unexpected character: was expecting a JSON value at [line:{}, column:{}]",
                    e.line(),
                    e.column()
                ),
            ))
        })
    }

    /// Stages a write in a fresh transaction, and stages it again while it fails only because
    /// another transaction holds a record lock: Salesforce waits for a lock (about 10 s) before it
    /// gives up with UNABLE_TO_LOCK_ROW, and long transactions of the workload hold locks for
    /// seconds.
    pub fn stage<T>(
        &self,
        mut stage: impl FnMut(&mut crate::store::Txn) -> T,
        locked: impl Fn(&T) -> bool,
    ) -> (crate::store::Txn, T) {
        let deadline = std::time::Instant::now() + LOCK_WAIT;
        loop {
            let mut txn = self.org().begin();
            let out = stage(&mut txn);
            if !locked(&out) || std::time::Instant::now() >= deadline {
                return (txn, out);
            }
            self.org().rollback(txn);
            std::thread::sleep(std::time::Duration::from_millis(25));
        }
    }

    /// Commits, after the delay `X-Sim-Commit-Delay-Ms` asks for: the transaction stays open
    /// meanwhile, holding its records invisible and latestDateCovered back. As on Salesforce, the
    /// response is sent only after the commit, so this waits (on the blocking pool the request
    /// runs on, so nothing else waits with it).
    pub fn finish(&self, txn: crate::store::Txn) {
        let delay = self
            .header("x-sim-commit-delay-ms")
            .and_then(|v| v.trim().parse::<u64>().ok())
            .unwrap_or(0);
        if delay > 0 {
            std::thread::sleep(std::time::Duration::from_millis(delay));
        }
        self.org().commit(txn);
    }
}

/// A REST answer, independent of actix so composite batch can embed it.
pub(crate) struct Reply {
    pub status: StatusCode,
    /// Serialised JSON; None for an empty body (204).
    pub body: Option<String>,
}

impl Reply {
    pub fn json(status: StatusCode, v: &Json) -> Reply {
        Reply {
            status,
            body: Some(v.to_string()),
        }
    }

    pub fn ok(v: &Json) -> Reply {
        Reply::json(StatusCode::OK, v)
    }

    /// Already-serialised JSON, for bodies whose key order matters (records).
    pub fn raw(status: StatusCode, body: String) -> Reply {
        Reply {
            status,
            body: Some(body),
        }
    }

    pub fn no_content() -> Reply {
        Reply {
            status: StatusCode::NO_CONTENT,
            body: None,
        }
    }

    pub fn error(status: StatusCode, err: &SfError) -> Reply {
        Reply::json(status, &Json::Array(vec![err.rest_json()]))
    }

    pub fn bad(err: SfError) -> Reply {
        Reply::error(StatusCode::BAD_REQUEST, &err)
    }

    pub fn not_found() -> Reply {
        Reply::error(StatusCode::NOT_FOUND, &SfError::not_found())
    }

    pub fn method_not_allowed(method: &Method, allowed: &str) -> Reply {
        Reply::error(
            StatusCode::METHOD_NOT_ALLOWED,
            &SfError::new(
                "METHOD_NOT_ALLOWED",
                format!("HTTP Method '{method}' not allowed. Allowed are {allowed}"),
            ),
        )
    }

    fn into_http(self) -> HttpResponse {
        let mut b = HttpResponse::build(self.status);
        match self.body {
            Some(body) => b.content_type(JSON_UTF8).body(body),
            None => b.finish(),
        }
    }
}

impl From<SfError> for Reply {
    fn from(e: SfError) -> Reply {
        Reply::bad(e)
    }
}

/// How long a write waits for a record lock held by another transaction.
const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

pub(crate) fn is_lock_error<T>(r: &std::result::Result<T, SfError>) -> bool {
    matches!(r, Err(e) if e.code == "UNABLE_TO_LOCK_ROW")
}

pub(crate) type Result<T = Reply> = std::result::Result<T, Reply>;

async fn handle(req: HttpRequest, body: web::Bytes, state: web::Data<AppState>) -> HttpResponse {
    let path = req
        .path()
        .strip_prefix("/services/data")
        .unwrap_or_default();
    let mut segs: Vec<String> = path
        .split('/')
        .filter(|s| !s.is_empty())
        .map(pct_decode)
        .collect();
    if segs.is_empty() {
        return versions().into_http();
    }
    let version_seg = segs.remove(0);
    let Some(version) = parse_version(&version_seg) else {
        return Reply::not_found().into_http();
    };
    let ctx = Ctx {
        state,
        method: req.method().clone(),
        version,
        segs,
        params: serde_urlencoded::from_str(req.query_string()).unwrap_or_default(),
        headers: req.headers().clone(),
        body,
    };
    // Queries over large tables scan and sort for a while: keep that off the async workers.
    match web::block(move || dispatch(&ctx)).await {
        Ok(reply) => reply.into_http(),
        Err(_) => Reply::error(
            StatusCode::INTERNAL_SERVER_ERROR,
            &SfError::new("UNKNOWN_EXCEPTION", "An unexpected error occurred."),
        )
        .into_http(),
    }
}

/// `v62.0` → `62.0`; None for anything that is not `v<digits>.<digits>`.
fn parse_version(seg: &str) -> Option<String> {
    let v = seg.strip_prefix('v')?;
    let (major, minor) = v.split_once('.')?;
    let digits = |s: &str| !s.is_empty() && s.len() <= 3 && s.bytes().all(|b| b.is_ascii_digit());
    (digits(major) && digits(minor)).then(|| v.to_string())
}

/// Percent-decoding for path segments (`+` stays `+` in a path).
fn pct_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let Some(v) = std::str::from_utf8(&b[i + 1..i + 3])
                .ok()
                .and_then(|h| u8::from_str_radix(h, 16).ok())
            {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Routes one request (direct, or a composite batch subrequest).
pub(crate) fn dispatch(ctx: &Ctx) -> Reply {
    route(ctx).unwrap_or_else(|e| e)
}

fn route(ctx: &Ctx) -> Result {
    let segs: Vec<&str> = ctx.segs.iter().map(String::as_str).collect();
    let m = &ctx.method;
    match segs.as_slice() {
        [] => only_get(m, "GET,HEAD").map(|_| resources(ctx)),
        ["sobjects"] => only_get(m, "GET,HEAD").and_then(|_| describe::global(ctx)),
        ["sobjects", obj] => match *m {
            Method::GET => describe::basic(ctx, obj),
            Method::POST => sobjects::create(ctx, obj),
            _ => Err(Reply::method_not_allowed(m, "GET,HEAD,POST")),
        },
        ["sobjects", obj, "describe"] => {
            only_get(m, "GET,HEAD").and_then(|_| describe::describe(ctx, obj))
        }
        ["sobjects", obj, "updated"] => {
            only_get(m, "GET,HEAD").and_then(|_| replication::updated(ctx, obj))
        }
        ["sobjects", obj, "deleted"] => {
            only_get(m, "GET,HEAD").and_then(|_| replication::deleted(ctx, obj))
        }
        ["sobjects", obj, id] => sobjects::by_id(ctx, obj, id),
        ["sobjects", obj, field, value] => sobjects::by_external_id(ctx, obj, field, value),
        ["query"] => only_get(m, "GET,HEAD").and_then(|_| query::query(ctx, false)),
        ["queryAll"] => only_get(m, "GET,HEAD").and_then(|_| query::query(ctx, true)),
        ["query" | "queryAll", locator] => {
            only_get(m, "GET,HEAD").and_then(|_| query::more(ctx, locator))
        }
        ["limits"] => only_get(m, "GET,HEAD").map(|_| limits::limits(ctx)),
        ["composite", "sobjects"] => composite::collection(ctx),
        ["composite", "sobjects", obj] => match *m {
            Method::GET | Method::HEAD | Method::POST => composite::retrieve(ctx, obj),
            _ => Err(Reply::method_not_allowed(m, "GET,HEAD,POST")),
        },
        ["composite", "sobjects", obj, field] => match *m {
            Method::PATCH => composite::upsert(ctx, obj, field),
            _ => Err(Reply::method_not_allowed(m, "PATCH")),
        },
        ["composite", "batch"] => match *m {
            Method::POST => composite::batch(ctx),
            _ => Err(Reply::method_not_allowed(m, "POST")),
        },
        _ => Err(Reply::not_found()),
    }
}

fn only_get(m: &Method, allowed: &str) -> Result<()> {
    if *m == Method::GET || *m == Method::HEAD {
        Ok(())
    } else {
        Err(Reply::method_not_allowed(m, allowed))
    }
}

/// Oldest and newest API versions served; clients use 20.0 through 62.0.
const VERSIONS: std::ops::RangeInclusive<u32> = 20..=62;

/// The release name of an API version: v20.0 was Winter '11, and three releases follow a year.
fn release_label(major: u32) -> String {
    let n = major - 20;
    let season = ["Winter", "Spring", "Summer"][(n % 3) as usize];
    format!("{season} '{:02}", 11 + n / 3)
}

fn versions() -> Reply {
    let list: Vec<Json> = VERSIONS
        .map(|v| json!({"label": release_label(v), "url": format!("/services/data/v{v}.0"), "version": format!("{v}.0")}))
        .collect();
    Reply::ok(&Json::Array(list))
}

fn resources(ctx: &Ctx) -> Reply {
    let base = ctx.base();
    let mut map = serde_json::Map::new();
    for key in [
        "tooling",
        "metadata",
        "eclair",
        "folders",
        "jsonxform",
        "chatter",
        "tabs",
        "appMenu",
        "quickActions",
        "queryAll",
        "commerce",
        "wave",
        "analytics",
        "search",
        "composite",
        "parameterizedSearch",
        "theme",
        "nouns",
        "event",
        "recent",
        "connect",
        "licensing",
        "limits",
        "process",
        "async-queries",
        "query",
        "match",
        "compactLayouts",
        "knowledgeManagement",
        "sobjects",
        "actions",
        "support",
        "jobs",
    ] {
        map.insert(key.into(), Json::String(format!("{base}/{key}")));
    }
    let st = &ctx.state;
    map.insert(
        "identity".into(),
        Json::String(format!(
            "{}/id/{}/{}",
            st.info.login_url, st.org.org_id, st.org.admin_user_id
        )),
    );
    Reply::ok(&Json::Object(map))
}

/// Resolves an object named in a path; Salesforce answers an unknown one with 404 NOT_FOUND.
pub(crate) fn object_or_404(ctx: &Ctx, name: &str) -> Result<usize> {
    ctx.org()
        .schema
        .object_index(name)
        .ok_or_else(Reply::not_found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_and_labels() {
        assert_eq!(parse_version("v62.0").as_deref(), Some("62.0"));
        assert_eq!(parse_version("62.0"), None);
        assert_eq!(parse_version("vX.0"), None);
        assert_eq!(release_label(31), "Summer '14");
        assert_eq!(release_label(62), "Winter '25");
        assert_eq!(pct_decode("a%20b+c%2"), "a b+c%2");
    }
}
