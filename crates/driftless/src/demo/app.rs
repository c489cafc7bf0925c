//! The application side of the demo: what an app on Heroku Connect does, inserting and updating
//! rows of the read_write table in Postgres, for write-back to send to Salesforce.

use std::time::Duration;

use super::postgres::connect_client;
use super::scenario::WRITE_BACK_OBJECT;
use super::DemoError;

/// One insert per tick; every third tick also updates an earlier row.
const TICK: Duration = Duration::from_millis(100);

pub struct App {
    stop: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<Result<u64, DemoError>>,
}

impl App {
    pub async fn start(database_url: &str) -> Result<App, DemoError> {
        let client = connect_client(database_url).await?;
        let table = format!("salesforce.{}", WRITE_BACK_OBJECT.to_lowercase());
        let (stop, mut rx) = tokio::sync::watch::channel(false);
        let task = tokio::spawn(async move {
            let mut n: u64 = 0;
            loop {
                n += 1;
                // Every value is generated here, so formatting them into the SQL is safe.
                let mut sql = format!(
                    "INSERT INTO {table} (name, external_id__c, amount__c, status__c) \
                     VALUES ('INV-{n:06}', 'demo-{n}', {}, 'Draft');",
                    100 + n % 900
                );
                if n.is_multiple_of(3) {
                    sql.push_str(&format!(
                        "UPDATE {table} SET status__c = 'Sent', amount__c = amount__c + 1 \
                         WHERE external_id__c = 'demo-{}';",
                        n / 2
                    ));
                }
                client
                    .batch_execute(&sql)
                    .await
                    .map_err(|e| DemoError::Postgres(format!("{table}: {e}")))?;
                tokio::select! {
                    _ = tokio::time::sleep(TICK) => {}
                    _ = rx.changed() => return Ok(n),
                }
            }
        });
        Ok(App { stop, task })
    }

    /// Stops writing; returns the rows inserted.
    pub async fn stop(self) -> Result<u64, DemoError> {
        let _ = self.stop.send(true);
        self.task
            .await
            .map_err(|e| DemoError::Setup(format!("application task: {e}")))?
    }
}
