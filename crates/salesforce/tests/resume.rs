//! A result body that breaks midway is fetched again and resumed without duplicating or
//! skipping records. The simulator's faults fail whole requests, never half a body, so these
//! tests use a tiny HTTP server that cuts chosen responses after a chosen number of bytes.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use parking_lot::Mutex;
use salesforce::{Backoff, Client, ClientConfig, Credentials, QueryOperation, Secret};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// What the server answers for a path: status, headers, body; and after how many body bytes
/// to cut the connection, per fetch (fetch 0, fetch 1, ...; missing means "send it all").
#[derive(Clone)]
struct Route {
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    cut_at: Vec<Option<usize>>,
    /// Per fetch: end the body cleanly (matching content-length) after this many bytes.
    short_at: Vec<Option<usize>>,
}

#[derive(Default)]
struct Server {
    routes: HashMap<String, Route>,
    /// Requests seen per target.
    fetches: HashMap<String, usize>,
}

async fn serve(server: Arc<Mutex<Server>>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        loop {
            let Ok((socket, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(handle(socket, server.clone()));
        }
    });
    url
}

async fn handle(mut socket: TcpStream, server: Arc<Mutex<Server>>) {
    let mut buf = Vec::new();
    let mut tmp = [0u8; 4096];
    let head_end = loop {
        let n = socket.read(&mut tmp).await.unwrap_or(0);
        if n == 0 {
            return;
        }
        buf.extend_from_slice(&tmp[..n]);
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let length: usize = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-length:")
                .map(|v| v.trim().parse().unwrap())
        })
        .unwrap_or(0);
    while buf.len() < head_end + length {
        let n = socket.read(&mut tmp).await.unwrap_or(0);
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&tmp[..n]);
    }
    let target = head.split_whitespace().nth(1).unwrap_or("").to_owned();
    let (route, fetch) = {
        let mut s = server.lock();
        let fetch = *s
            .fetches
            .entry(target.clone())
            .and_modify(|n| *n += 1)
            .or_insert(1)
            - 1;
        (s.routes.get(&target).cloned(), fetch)
    };
    let Some(route) = route else {
        let _ = socket
            .write_all(b"HTTP/1.1 404 Not Found\r\ncontent-type: application/json\r\ncontent-length: 2\r\nconnection: close\r\n\r\n[]")
            .await;
        return;
    };
    let body = match route.short_at.get(fetch).copied().flatten() {
        Some(n) => &route.body[..n],
        None => &route.body[..],
    };
    let mut out = format!(
        "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n",
        body.len()
    );
    for (k, v) in &route.headers {
        out.push_str(&format!("{k}: {v}\r\n"));
    }
    out.push_str("\r\n");
    let mut bytes = out.into_bytes();
    let cut = route
        .cut_at
        .get(fetch)
        .copied()
        .flatten()
        .unwrap_or(body.len());
    bytes.extend_from_slice(&body[..cut]);
    let _ = socket.write_all(&bytes).await;
    let _ = socket.flush().await;
    // Dropping the socket here, short of content-length, is the broken body.
}

fn json_route(body: &str) -> Route {
    Route {
        headers: vec![("content-type".into(), "application/json".into())],
        body: body.as_bytes().to_vec(),
        cut_at: vec![],
        short_at: vec![],
    }
}

const HEADER: &str = "\"Id\",\"Name\"\n";

fn row(i: usize) -> String {
    format!("\"{i:06}\",\"name with \"\"quotes\"\" and\nnewline {i}\"\n")
}

fn csv_page(first: usize, count: usize) -> Vec<u8> {
    let mut s = String::from(HEADER);
    for i in first..first + count {
        s.push_str(&row(i));
    }
    s.into_bytes()
}

/// Byte offset just after the `n`-th data row of `csv_page(first, _)`.
fn after_rows(first: usize, n: usize) -> usize {
    HEADER.len() + (first..first + n).map(|i| row(i).len()).sum::<usize>()
}

fn base_server() -> Server {
    let mut s = Server::default();
    s.routes.insert(
        "/services/oauth2/token".into(),
        json_route(
            r#"{"access_token":"00Dx!mock-token","instance_url":"INSTANCE","id":"https://x/id/00Dx0000000001AAA/005x0000000001AAA","token_type":"Bearer","issued_at":"1"}"#,
        ),
    );
    s
}

async fn client_for(server: Arc<Mutex<Server>>) -> Client {
    let url = serve(server.clone()).await;
    // The token answer names the instance, which is this same server.
    let token = server
        .lock()
        .routes
        .get_mut("/services/oauth2/token")
        .map(|r| {
            r.body = String::from_utf8(r.body.clone())
                .unwrap()
                .replace("INSTANCE", &url)
                .into_bytes();
        });
    assert!(token.is_some());
    let mut config = ClientConfig::new(
        url,
        Credentials::ClientCredentials {
            client_id: "id".into(),
            client_secret: Secret::new("secret"),
        },
    );
    config.retry = Backoff {
        base: Duration::from_millis(5),
        cap: Duration::from_millis(20),
        max_attempts: 5,
    };
    config.bulk_v2_page_size = 10;
    Client::connect(config).await.unwrap()
}

async fn collect_ids(client: &Client, stream: salesforce::RecordStream) -> Vec<String> {
    let _ = client;
    stream
        .map(|r| r.unwrap().id().unwrap().to_owned())
        .collect()
        .await
}

fn expected_ids(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{i:06}")).collect()
}

#[tokio::test]
async fn bulk_v2_page_cut_midway_resumes_after_the_yielded_records() {
    let mut s = base_server();
    s.routes.insert(
        "/services/data/v62.0/jobs/query/750J".into(),
        json_route(r#"{"id":"750J","state":"JobComplete","numberRecordsProcessed":30}"#),
    );
    let page = |first, locator: &str, cut_at| Route {
        headers: vec![
            ("content-type".into(), "text/csv".into()),
            ("sforce-locator".into(), locator.into()),
            ("sforce-numberofrecords".into(), "10".into()),
        ],
        body: csv_page(first, 10),
        cut_at,
        short_at: vec![],
    };
    let p1 = csv_page(0, 10);
    let p2 = csv_page(10, 10);
    // Page 1 breaks inside its header (nothing yielded yet: plain restart), page 2 breaks twice
    // after some rows (resume after 4, then after 7), page 3 arrives whole.
    s.routes.insert(
        "/services/data/v62.0/jobs/query/750J/results?maxRecords=10".into(),
        page(0, "L2", vec![Some(5)]),
    );
    s.routes.insert(
        "/services/data/v62.0/jobs/query/750J/results?maxRecords=10&locator=L2".into(),
        page(
            10,
            "L3",
            vec![Some(after_rows(10, 4) + 3), Some(after_rows(10, 7) + 1)],
        ),
    );
    s.routes.insert(
        "/services/data/v62.0/jobs/query/750J/results?maxRecords=10&locator=L3".into(),
        page(20, "null", vec![]),
    );
    assert_eq!(after_rows(0, 10), p1.len());
    assert_eq!(after_rows(10, 10), p2.len());
    let server = Arc::new(Mutex::new(s));
    let client = client_for(server.clone()).await;
    let job = salesforce_job_v2(&client, "750J");
    let ids = collect_ids(&client, job).await;
    assert_eq!(ids, expected_ids(30));
    let fetches = server.lock().fetches.clone();
    assert_eq!(
        fetches["/services/data/v62.0/jobs/query/750J/results?maxRecords=10"],
        2
    );
    assert_eq!(
        fetches["/services/data/v62.0/jobs/query/750J/results?maxRecords=10&locator=L2"],
        3
    );
}

#[tokio::test]
async fn bulk_v1_result_cut_midway_resumes_by_result_id() {
    let mut s = base_server();
    let xml = |body: &str| Route {
        headers: vec![("content-type".into(), "application/xml".into())],
        body: body.as_bytes().to_vec(),
        cut_at: vec![],
        short_at: vec![],
    };
    s.routes.insert(
        "/services/async/62.0/job".into(),
        json_route(r#"{"id":"750B","state":"Open","contentType":"CSV"}"#),
    );
    s.routes.insert(
        "/services/async/62.0/job/750B/batch".into(),
        xml(r#"<batchInfo xmlns="http://www.force.com/2009/06/asyncapi/dataload"><id>751B</id><jobId>750B</jobId><state>Queued</state></batchInfo>"#),
    );
    s.routes.insert(
        "/services/async/62.0/job/750B".into(),
        json_route(r#"{"id":"750B","state":"Closed"}"#),
    );
    s.routes.insert(
        "/services/async/62.0/job/750B/batch/751B".into(),
        xml(r#"<batchInfo xmlns="http://www.force.com/2009/06/asyncapi/dataload"><id>751B</id><jobId>750B</jobId><state>Completed</state><numberRecordsProcessed>25</numberRecordsProcessed></batchInfo>"#),
    );
    s.routes.insert(
        "/services/async/62.0/job/750B/batch/751B/result".into(),
        xml(r#"<result-list xmlns="http://www.force.com/2009/06/asyncapi/dataload"><result>752A</result><result>752B</result></result-list>"#),
    );
    let r1 = csv_page(0, 15);
    let r2 = csv_page(15, 10);
    let cut1 = after_rows(0, 9) + 2;
    s.routes.insert(
        "/services/async/62.0/job/750B/batch/751B/result/752A".into(),
        Route {
            headers: vec![("content-type".into(), "text/csv".into())],
            body: r1,
            cut_at: vec![Some(cut1)],
            short_at: vec![],
        },
    );
    s.routes.insert(
        "/services/async/62.0/job/750B/batch/751B/result/752B".into(),
        Route {
            headers: vec![("content-type".into(), "text/csv".into())],
            body: r2,
            cut_at: vec![Some(0)],
            short_at: vec![],
        },
    );
    let server = Arc::new(Mutex::new(s));
    let client = client_for(server.clone()).await;
    let job = client
        .bulk_v1_query(
            "Account",
            QueryOperation::QueryAll,
            &["SELECT Id, Name FROM Account".into()],
            &Default::default(),
        )
        .await
        .unwrap();
    let ids = collect_ids(&client, job.stream()).await;
    assert_eq!(ids, expected_ids(25));
    let fetches = server.lock().fetches.clone();
    assert_eq!(
        fetches["/services/async/62.0/job/750B/batch/751B/result/752A"],
        2
    );
    assert_eq!(
        fetches["/services/async/62.0/job/750B/batch/751B/result/752B"],
        2
    );
}

#[tokio::test]
async fn a_page_that_keeps_breaking_ends_the_stream_with_a_transient_error() {
    let mut s = base_server();
    s.routes.insert(
        "/services/data/v62.0/jobs/query/750K".into(),
        json_route(r#"{"id":"750K","state":"JobComplete","numberRecordsProcessed":10}"#),
    );
    let p = csv_page(0, 10);
    let cut = after_rows(0, 3);
    s.routes.insert(
        "/services/data/v62.0/jobs/query/750K/results?maxRecords=10".into(),
        Route {
            headers: vec![
                ("content-type".into(), "text/csv".into()),
                ("sforce-locator".into(), "null".into()),
            ],
            body: p,
            cut_at: vec![Some(cut); 10],
            short_at: vec![],
        },
    );
    let server = Arc::new(Mutex::new(s));
    let client = client_for(server).await;
    let items: Vec<_> = salesforce_job_v2(&client, "750K").collect().await;
    let (ok, err): (Vec<_>, Vec<_>) = items.into_iter().partition(|r| r.is_ok());
    assert_eq!(
        ok.len(),
        3,
        "the rows before the first break are yielded once"
    );
    assert_eq!(err.len(), 1);
    assert_eq!(
        err[0].as_ref().unwrap_err().action(),
        salesforce::Action::Retry
    );
}

#[tokio::test]
async fn a_page_that_ends_cleanly_but_short_is_fetched_again() {
    let mut s = base_server();
    s.routes.insert(
        "/services/data/v62.0/jobs/query/750S".into(),
        json_route(r#"{"id":"750S","state":"JobComplete","numberRecordsProcessed":10}"#),
    );
    s.routes.insert(
        "/services/data/v62.0/jobs/query/750S/results?maxRecords=10".into(),
        Route {
            headers: vec![
                ("content-type".into(), "text/csv".into()),
                ("sforce-locator".into(), "null".into()),
                ("sforce-numberofrecords".into(), "10".into()),
            ],
            body: csv_page(0, 10),
            cut_at: vec![],
            short_at: vec![Some(after_rows(0, 6))],
        },
    );
    let server = Arc::new(Mutex::new(s));
    let client = client_for(server.clone()).await;
    let ids = collect_ids(&client, salesforce_job_v2(&client, "750S")).await;
    assert_eq!(ids, expected_ids(10));
    assert_eq!(
        server.lock().fetches["/services/data/v62.0/jobs/query/750S/results?maxRecords=10"],
        2
    );
}

/// A Bulk 2.0 stream for a job the mock already has.
fn salesforce_job_v2(client: &Client, id: &str) -> salesforce::RecordStream {
    client.bulk_v2_job(id).stream()
}
