//! Streams Bulk CSV results page by page (Bulk 1.0 result ids, Bulk 2.0 locators), record by
//! record, and resumes a page that failed midway without duplicating or skipping records.
//!
//! A page is immutable on the server while the job exists, so a page fetched again yields the
//! same rows in the same order. When the body breaks after `n` records of a page were yielded,
//! the page is fetched again and its first `n` rows are decoded and dropped. With `n == 0` that
//! is simply a restart of the page.

use std::future::Future;

use futures::StreamExt;

use crate::csv_stream::CsvDecoder;
use crate::error::{Error, ErrorKind, Result};
use crate::http::{Auth, Call, Response};
use crate::{Client, Record, RecordStream};

pub(crate) enum Pages {
    /// Bulk 1.0: the result ids of one batch.
    V1 {
        job_id: String,
        batch_id: String,
        result_ids: Vec<String>,
        idx: usize,
    },
    /// Bulk 2.0: `locator` is the page to read (`None` for the first); `last` once the page
    /// being read is the final one.
    V2 {
        job_id: String,
        locator: Option<String>,
        page_size: u32,
        last: bool,
    },
}

struct OpenPage {
    resp: Response,
    decoder: CsvDecoder,
    /// Received bytes not yet decoded (see [`OFFLOAD_BYTES`]).
    pending: Vec<u8>,
    /// The body broke after `pending` arrived: its rows go out first, then this error.
    broken: Option<Error>,
    eof: bool,
    /// Rows decoded from this fetch of the page, skipped ones included.
    rows: u64,
    /// `Sforce-NumberOfRecords` (Bulk 2.0).
    expected_rows: Option<u64>,
    /// `Sforce-Locator` of the next page (Bulk 2.0); `None` on the last page.
    next_locator: Option<String>,
}

pub(crate) struct PagedCsv {
    client: Client,
    pages: Pages,
    open: Option<OpenPage>,
    /// Records of the current page already handed to the caller.
    yielded_in_page: u64,
    /// Rows to drop from the current fetch because an earlier fetch already yielded them.
    skip: u64,
    retries_in_page: u32,
    /// Records handed to the caller from all pages.
    total: u64,
    /// What the job or batch says it produced, checked at the end.
    expected_total: Option<u64>,
    done: bool,
}

impl PagedCsv {
    pub fn new(client: Client, pages: Pages, expected_total: Option<u64>) -> PagedCsv {
        let expected_total = expected_total.filter(|_| client.config().verify_counts);
        PagedCsv {
            client,
            pages,
            open: None,
            yielded_in_page: 0,
            skip: 0,
            retries_in_page: 0,
            total: 0,
            expected_total,
            done: false,
        }
    }

    pub fn into_stream(self) -> RecordStream {
        Box::pin(futures::stream::unfold(self, |mut s| async move {
            let item = s.next_record().await?;
            Some((item, s))
        }))
    }

    /// A stream that first runs `init` (wait for the batch or job, list its pages), then pages.
    pub fn after<F>(client: Client, init: F) -> RecordStream
    where
        F: Future<Output = Result<(Pages, Option<u64>)>> + Send + 'static,
    {
        Box::pin(
            futures::stream::once(init)
                .map(move |r| match r {
                    Ok((pages, expected)) => {
                        PagedCsv::new(client.clone(), pages, expected).into_stream()
                    }
                    Err(e) => {
                        Box::pin(futures::stream::once(async move { Err(e) })) as RecordStream
                    }
                })
                .flatten(),
        )
    }

    fn current_call(&self) -> Option<Call> {
        match &self.pages {
            Pages::V1 {
                job_id,
                batch_id,
                result_ids,
                idx,
            } => {
                let rid = result_ids.get(*idx)?;
                let path = self
                    .client
                    .async_path(&format!("job/{job_id}/batch/{batch_id}/result/{rid}"));
                Some(Call::new("bulk_v1.result", Auth::Session, path).long_running())
            }
            Pages::V2 {
                job_id,
                locator,
                page_size,
                ..
            } => {
                let mut rest = format!("jobs/query/{job_id}/results?maxRecords={page_size}");
                if let Some(locator) = locator {
                    rest.push_str("&locator=");
                    rest.push_str(&urlencoding::encode(locator));
                }
                Some(
                    Call::new(
                        "bulk_v2.results",
                        Auth::Bearer,
                        self.client.data_path(&rest),
                    )
                    .long_running(),
                )
            }
        }
    }

    /// Moves to the next page; false when there is none.
    fn advance(&mut self, next_locator: Option<String>) -> bool {
        self.yielded_in_page = 0;
        self.skip = 0;
        self.retries_in_page = 0;
        match &mut self.pages {
            Pages::V1 {
                result_ids, idx, ..
            } => {
                *idx += 1;
                *idx < result_ids.len()
            }
            Pages::V2 { locator, last, .. } => match next_locator {
                Some(next) if !*last => {
                    *locator = Some(next);
                    true
                }
                _ => {
                    *last = true;
                    false
                }
            },
        }
    }

    async fn open_page(&mut self) -> Result<Option<OpenPage>> {
        let Some(call) = self.current_call() else {
            return Ok(None);
        };
        let resp = self.client.execute(&call).await?;
        let header = |name: &str| resp.header_str(name).map(str::trim).map(str::to_owned);
        let expected_rows = header("sforce-numberofrecords").and_then(|n| n.parse().ok());
        let next_locator = header("sforce-locator").filter(|l| !l.is_empty() && l != "null");
        Ok(Some(OpenPage {
            resp,
            decoder: CsvDecoder::new(b','),
            pending: Vec::new(),
            broken: None,
            eof: false,
            rows: 0,
            expected_rows,
            next_locator,
        }))
    }

    async fn next_record(&mut self) -> Option<Result<Record>> {
        if self.done {
            return None;
        }
        match self.step().await {
            Ok(Some(record)) => Some(Ok(record)),
            Ok(None) => {
                self.done = true;
                None
            }
            Err(e) => {
                self.done = true;
                Some(Err(e))
            }
        }
    }

    async fn step(&mut self) -> Result<Option<Record>> {
        loop {
            if self.open.is_none() {
                match self.open_page().await? {
                    Some(page) => {
                        self.skip = self.yielded_in_page;
                        self.open = Some(page);
                    }
                    None => return self.check_total().map(|()| None),
                }
            }
            let page = self.open.as_mut().expect("page is open");
            match read_row(page, &self.client).await {
                Ok(Some(record)) => {
                    if self.skip > 0 {
                        self.skip -= 1;
                        continue;
                    }
                    self.yielded_in_page += 1;
                    self.total += 1;
                    self.client.usage_tracker().count_records(1);
                    return Ok(Some(record));
                }
                Ok(None) => {
                    let mut page = self.open.take().expect("page is open");
                    page.resp.finish(Some(page.rows));
                    match page
                        .expected_rows
                        .filter(|_| self.client.config().verify_counts)
                    {
                        // A body that ended cleanly but short was cut somewhere on the way.
                        Some(expected) if page.rows < expected => {
                            let err = Error::new(
                                ErrorKind::Transient,
                                format!(
                                    "result page announced {expected} records but ended after {}",
                                    page.rows
                                ),
                            );
                            self.retry_page(err).await?;
                            continue;
                        }
                        Some(expected) if page.rows > expected => {
                            return Err(Error::protocol(format!(
                                "result page announced {expected} records but held {}",
                                page.rows
                            )));
                        }
                        _ => {}
                    }
                    if !self.advance(page.next_locator) {
                        return self.check_total().map(|()| None);
                    }
                }
                Err(err) if err.kind() == ErrorKind::Transient => self.retry_page(err).await?,
                Err(err) => return Err(err),
            }
        }
    }

    /// Drops the open page so the next step fetches it again (skipping what was yielded), after
    /// a backoff; gives up with `err` when the page's retry budget is spent.
    async fn retry_page(&mut self, err: Error) -> Result<()> {
        self.open = None;
        let policy = self.client.retry_policy();
        if self.retries_in_page + 1 >= policy.max_attempts {
            return Err(err);
        }
        let delay = policy.delay(self.retries_in_page);
        self.retries_in_page += 1;
        tracing::warn!(
            error = %err,
            resume_after = self.yielded_in_page,
            delay_ms = delay.as_millis() as u64,
            "result page interrupted; fetching it again"
        );
        tokio::time::sleep(delay).await;
        Ok(())
    }

    fn check_total(&self) -> Result<()> {
        match self.expected_total {
            Some(expected) if expected != self.total => Err(Error::protocol(format!(
                "bulk result announced {expected} records but streamed {}",
                self.total
            ))),
            _ => Ok(()),
        }
    }
}

async fn read_row(page: &mut OpenPage, client: &Client) -> Result<Option<Record>> {
    loop {
        if let Some(row) = page.decoder.pop() {
            page.rows += 1;
            let header = page
                .decoder
                .header()
                .expect("rows come after the header")
                .clone();
            return Ok(Some(Record::new(header, row)));
        }
        if let Some(err) = page.broken.take() {
            return Err(err);
        }
        if page.eof {
            return Ok(None);
        }
        let chunk = match page.resp.chunk(client.usage_tracker()).await {
            Ok(chunk) => chunk,
            // The rows that arrived before the break are yielded first, as if nothing were
            // pending: they count as yielded, so the page's re-fetch skips them.
            Err(err) if !page.pending.is_empty() => {
                let rest = std::mem::take(&mut page.pending);
                page.decoder.feed(&rest)?;
                page.broken = Some(err);
                continue;
            }
            Err(err) => return Err(err),
        };
        match chunk {
            Some(chunk) => {
                page.pending.extend_from_slice(&chunk);
                if page.pending.len() >= OFFLOAD_BYTES {
                    decode_off_runtime(page).await?;
                }
            }
            None => {
                let rest = std::mem::take(&mut page.pending);
                page.decoder.feed(&rest)?;
                page.decoder.finish()?;
                page.eof = true;
            }
        }
    }
}

/// Bytes gathered before they are decoded on the blocking pool: decoding is the CPU-heavy part of
/// a download, and a runtime thread decoding a large result would stall every other task on it.
const OFFLOAD_BYTES: usize = 64 * 1024;

async fn decode_off_runtime(page: &mut OpenPage) -> Result<()> {
    let input = std::mem::take(&mut page.pending);
    // The decoder is moved to the blocking thread and back; should this future be dropped
    // meanwhile, the page it belongs to is dropped with it.
    let mut decoder = std::mem::replace(&mut page.decoder, CsvDecoder::new(b','));
    let (decoder, result) = tokio::task::spawn_blocking(move || {
        let result = decoder.feed(&input);
        (decoder, result)
    })
    .await
    .map_err(|e| Error::protocol(format!("csv decoding stopped: {e}")))?;
    page.decoder = decoder;
    result
}
