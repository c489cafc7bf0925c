//! REST `query` / `queryAll` as a stream of records following `nextRecordsUrl`, and `COUNT()`.
//!
//! A page (at most 2,000 records) is read whole before any of it is yielded, so a page that
//! fails is simply fetched again by the same URL: nothing is duplicated or skipped.

use std::collections::VecDeque;

use crate::error::{Error, Result};
use crate::http::{Auth, Call, Target};
use crate::record::{QueryPage, RecordBuilder};
use crate::{Client, QueryOperation, Record, RecordStream};

struct QueryState {
    client: Client,
    /// The next page's path: the first query, then each `nextRecordsUrl`.
    next: Option<String>,
    buffer: VecDeque<Record>,
    builder: RecordBuilder,
    done: bool,
}

impl Client {
    /// `GET /query?q=`: live records, page after page.
    pub fn query(&self, soql: &str) -> RecordStream {
        self.rest_query(soql, QueryOperation::Query)
    }

    /// `GET /queryAll?q=`: also deleted and archived records.
    pub fn query_all(&self, soql: &str) -> RecordStream {
        self.rest_query(soql, QueryOperation::QueryAll)
    }

    pub fn rest_query(&self, soql: &str, operation: QueryOperation) -> RecordStream {
        let first = self.data_path(&format!(
            "{}?q={}",
            operation.as_str(),
            urlencoding::encode(soql)
        ));
        let state = QueryState {
            client: self.clone(),
            next: Some(first),
            buffer: VecDeque::new(),
            builder: RecordBuilder::default(),
            done: false,
        };
        Box::pin(futures::stream::unfold(state, |mut s| async move {
            let item = s.next_record().await?;
            Some((item, s))
        }))
    }

    /// `SELECT COUNT() FROM ...`: the `totalSize` of the answer.
    pub async fn count(&self, soql: &str) -> Result<u64> {
        let path = self.data_path(&format!("query?q={}", urlencoding::encode(soql)));
        let page: QueryPage = self.json(&Call::new("query", Auth::Bearer, path)).await?;
        Ok(page.total_size)
    }

    fn page_call(&self, path: String) -> Call {
        let absolute = path.starts_with("http://") || path.starts_with("https://");
        let mut call = Call::new("query", Auth::Bearer, String::new()).long_running();
        call.target = if absolute {
            Target::Absolute(path)
        } else {
            Target::Instance(path)
        };
        if let Some(size) = self.config().rest_batch_size {
            call = call.header("sforce-query-options", &format!("batchSize={size}"));
        }
        call
    }
}

impl QueryState {
    async fn next_record(&mut self) -> Option<Result<Record>> {
        loop {
            if let Some(record) = self.buffer.pop_front() {
                return Some(Ok(record));
            }
            if self.done {
                return None;
            }
            let path = self.next.take()?;
            match self.fetch(path).await {
                Ok(()) => {}
                Err(e) => {
                    self.done = true;
                    return Some(Err(e));
                }
            }
        }
    }

    async fn fetch(&mut self, path: String) -> Result<()> {
        let call = self.client.page_call(path);
        let (_, body, span) = self.client.bytes_in_span(&call).await?;
        let page: QueryPage = serde_json::from_slice(&body).map_err(|e| {
            Error::protocol(format!("unexpected query page: {e}")).with_route("query")
        })?;
        let n = page.records.len() as u64;
        self.client.usage_tracker().count_records(n);
        span.record("records", n);
        span.in_scope(|| {
            tracing::debug!(
                records = n,
                total_size = page.total_size,
                done = page.done,
                "query page"
            )
        });
        for pairs in page.records {
            self.buffer.push_back(self.builder.build(pairs));
        }
        match page.next_records_url {
            Some(url) if !page.done => self.next = Some(url),
            _ => self.done = true,
        }
        Ok(())
    }
}
