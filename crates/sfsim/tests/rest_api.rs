//! The REST, OAuth and SOAP-login surface of the simulator, exercised over HTTP as clients see it.

use base64::Engine;
use hmac::{Hmac, Mac};
use reqwest::{Client, Method, Response, StatusCode};
use serde_json::{json, Value};
use std::collections::HashSet;
use std::time::{Duration, Instant};

const V: &str = "/services/data/v62.0";

struct Sim {
    sim: sfsim::RunningSim,
    http: Client,
    base: String,
    token: String,
}

impl Sim {
    async fn start() -> Sim {
        let sim = sfsim::start(sfsim::SimConfig {
            dataset: vec![("Account".into(), 500)],
            ..Default::default()
        })
        .await
        .expect("simulator starts");
        let http = Client::new();
        let base = sim.base_url().to_string();
        let token = password_login(&http, &sim).await["access_token"]
            .as_str()
            .unwrap()
            .to_string();
        Sim {
            sim,
            http,
            base,
            token,
        }
    }

    fn req(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        let url = if path.starts_with("http") {
            path.to_string()
        } else {
            format!("{}{path}", self.base)
        };
        self.http.request(method, url).bearer_auth(&self.token)
    }

    async fn get(&self, path: &str) -> Response {
        self.req(Method::GET, path).send().await.unwrap()
    }

    async fn get_json(&self, path: &str) -> Value {
        let r = self.get(path).await;
        assert_eq!(r.status(), StatusCode::OK, "GET {path}");
        r.json().await.unwrap()
    }

    async fn send(&self, method: Method, path: &str, body: Value) -> (StatusCode, Value) {
        let r = self.req(method, path).json(&body).send().await.unwrap();
        status_json(r).await
    }

    /// Whether exactly `n` transactions are open.
    async fn open_transactions(&self, n: u64) -> bool {
        let stats: Value = self
            .http
            .get(format!("{}/_sim/stats", self.base))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        stats["open_transactions"] == n
    }

    async fn query(&self, soql: &str) -> Value {
        let r = self
            .req(Method::GET, &format!("{V}/query"))
            .query(&[("q", soql)])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{soql}");
        r.json().await.unwrap()
    }
}

async fn status_json(r: Response) -> (StatusCode, Value) {
    let status = r.status();
    let text = r.text().await.unwrap();
    (
        status,
        if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap()
        },
    )
}

async fn password_login(http: &Client, sim: &sfsim::RunningSim) -> Value {
    let i = &sim.info;
    let r = http
        .post(format!("{}/services/oauth2/token", i.login_url))
        .form(&[
            ("grant_type", "password"),
            ("client_id", &i.client_id),
            ("client_secret", &i.client_secret),
            ("username", &i.username),
            ("password", &i.password),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    r.json().await.unwrap()
}

async fn token_call(s: &Sim, form: &[(&str, &str)]) -> (StatusCode, Value) {
    let r = s
        .http
        .post(format!("{}/services/oauth2/token", s.base))
        .form(form)
        .send()
        .await
        .unwrap();
    status_json(r).await
}

fn assert_oauth_error(got: (StatusCode, Value), error: &str, description: &str) {
    assert_eq!(got.0, StatusCode::BAD_REQUEST, "{:?}", got.1);
    assert_eq!(
        got.1,
        json!({"error": error, "error_description": description})
    );
}

fn assert_sf_error(got: &(StatusCode, Value), status: u16, code: &str) {
    assert_eq!(got.0.as_u16(), status, "{:?}", got.1);
    assert_eq!(got.1[0]["errorCode"], code, "{:?}", got.1);
    assert!(got.1[0]["message"].is_string());
}

fn jwt(claims: Value) -> String {
    let e = |v: &Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
    format!(
        "{}.{}.c2lnbmF0dXJl",
        e(&json!({"alg": "RS256"})),
        e(&claims)
    )
}

/// Polls until `f` holds; conditions, not sleeps, decide how long tests wait.
async fn wait_for<F, Fut>(what: &str, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(15);
    while !f().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oauth_flows_and_errors() {
    let s = Sim::start().await;
    let i = s.sim.info.clone();

    let ok = password_login(&s.http, &s.sim).await;
    assert_eq!(ok["instance_url"], i.instance_url.as_str());
    assert_eq!(ok["token_type"], "Bearer");
    let id = ok["id"].as_str().unwrap();
    assert!(id.starts_with(&format!("{}/id/", i.login_url)));
    let parts: Vec<&str> = id.rsplit('/').take(2).collect();
    assert_eq!(parts[1], i.org_id);
    assert!(parts[0].starts_with("005"));
    let issued_at = ok["issued_at"].as_str().unwrap();
    assert!(issued_at.parse::<u64>().unwrap() > 1_600_000_000_000);
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(i.client_secret.as_bytes()).unwrap();
    mac.update(format!("{id}{issued_at}").as_bytes());
    let sig = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
    assert_eq!(ok["signature"], sig);
    assert!(ok["access_token"]
        .as_str()
        .unwrap()
        .starts_with(&format!("{}!", &i.org_id[..15])));
    assert!(ok["scope"].is_string());

    let pw = |user: &'static str, pass: &'static str, cid: &'static str, secret: &'static str| {
        vec![
            ("grant_type", "password"),
            ("client_id", cid),
            ("client_secret", secret),
            ("username", user),
            ("password", pass),
        ]
    };
    let (u, p, c, k) = (
        "admin@driftless.sim",
        "driftless",
        "driftless-sim",
        "driftless-sim-secret",
    );
    assert_oauth_error(
        token_call(&s, &pw(u, "wrong", c, k)).await,
        "invalid_grant",
        "authentication failure",
    );
    assert_oauth_error(
        token_call(&s, &pw("nobody@x.y", p, c, k)).await,
        "invalid_grant",
        "authentication failure",
    );
    assert_oauth_error(
        token_call(&s, &pw(u, p, "other", k)).await,
        "invalid_client_id",
        "client identifier invalid",
    );
    assert_oauth_error(
        token_call(&s, &pw(u, p, c, "nope")).await,
        "invalid_client",
        "invalid client credentials",
    );
    assert_oauth_error(
        token_call(&s, &[("username", u)]).await,
        "invalid_request",
        "grant type is missing",
    );
    assert_oauth_error(
        token_call(&s, &[("grant_type", "authorization_code")]).await,
        "unsupported_grant_type",
        "grant type not supported",
    );

    // client_credentials, in the body and as Basic auth.
    let (st, body) = token_call(
        &s,
        &[
            ("grant_type", "client_credentials"),
            ("client_id", c),
            ("client_secret", k),
        ],
    )
    .await;
    assert_eq!(st, StatusCode::OK);
    assert!(body["access_token"].is_string());
    let r = s
        .http
        .post(format!("{}/services/oauth2/token", s.base))
        .basic_auth(c, Some(k))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let r = s
        .http
        .post(format!("{}/services/oauth2/token", s.base))
        .basic_auth(c, Some("bad"))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap();
    assert_oauth_error(
        status_json(r).await,
        "invalid_client",
        "invalid client credentials",
    );

    // refresh_token, with and without the secret.
    let rt = i.refresh_token.as_str();
    let (st, body) = token_call(
        &s,
        &[
            ("grant_type", "refresh_token"),
            ("client_id", c),
            ("refresh_token", rt),
        ],
    )
    .await;
    assert_eq!(st, StatusCode::OK);
    let refreshed = body["access_token"].as_str().unwrap().to_string();
    let (st, _) = token_call(
        &s,
        &[
            ("grant_type", "refresh_token"),
            ("client_id", c),
            ("client_secret", k),
            ("refresh_token", rt),
        ],
    )
    .await;
    assert_eq!(st, StatusCode::OK);
    assert_oauth_error(
        token_call(
            &s,
            &[
                ("grant_type", "refresh_token"),
                ("client_id", c),
                ("refresh_token", "5Aep861nope"),
            ],
        )
        .await,
        "invalid_grant",
        "expired access/refresh token",
    );

    // JWT bearer: claims are checked, exp may be a string.
    let grant = "urn:ietf:params:oauth:grant-type:jwt-bearer";
    let exp = (chrono::Utc::now().timestamp() + 180).to_string();
    let good = jwt(json!({"iss": c, "sub": u, "aud": "https://login.salesforce.com", "exp": exp}));
    let (st, body) = token_call(&s, &[("grant_type", grant), ("assertion", &good)]).await;
    assert_eq!(st, StatusCode::OK, "{body}");
    let expired =
        jwt(json!({"iss": c, "sub": u, "aud": "https://login.salesforce.com", "exp": 1000}));
    assert_oauth_error(
        token_call(&s, &[("grant_type", grant), ("assertion", &expired)]).await,
        "invalid_grant",
        "expired authorization code",
    );
    let bad_iss =
        jwt(json!({"iss": "x", "sub": u, "aud": "https://login.salesforce.com", "exp": exp}));
    assert_oauth_error(
        token_call(&s, &[("grant_type", grant), ("assertion", &bad_iss)]).await,
        "invalid_client_id",
        "client identifier invalid",
    );
    let bad_sub = jwt(
        json!({"iss": c, "sub": "someone@else", "aud": "https://login.salesforce.com", "exp": exp}),
    );
    assert_oauth_error(
        token_call(&s, &[("grant_type", grant), ("assertion", &bad_sub)]).await,
        "invalid_grant",
        "user hasn't approved this consumer",
    );
    assert_oauth_error(
        token_call(&s, &[("grant_type", grant), ("assertion", "not-a-jwt")]).await,
        "invalid_grant",
        "invalid assertion",
    );

    // The identity URL needs the token.
    let r = s.http.get(id).bearer_auth(&refreshed).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let ident: Value = r.json().await.unwrap();
    assert_eq!(ident["organization_id"], i.org_id.as_str());
    assert_eq!(ident["username"], i.username.as_str());
    assert!(ident["urls"]["rest"]
        .as_str()
        .unwrap()
        .ends_with("/services/data/v{version}/"));
    assert_eq!(
        s.http
            .get(id)
            .bearer_auth("nope")
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::FORBIDDEN
    );

    // Revoked tokens stop working on REST, with the JSON array body.
    let r = s
        .http
        .get(format!("{}{V}/limits", s.base))
        .bearer_auth(&refreshed)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let r = s
        .http
        .post(format!("{}/services/oauth2/revoke", s.base))
        .form(&[("token", &refreshed)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let r = s
        .http
        .get(format!("{}{V}/limits", s.base))
        .bearer_auth(&refreshed)
        .send()
        .await
        .unwrap();
    assert_sf_error(&status_json(r).await, 401, "INVALID_SESSION_ID");
    let r = s
        .http
        .get(format!("{}{V}/sobjects", s.base))
        .bearer_auth("garbage")
        .send()
        .await
        .unwrap();
    let got = status_json(r).await;
    assert_sf_error(&got, 401, "INVALID_SESSION_ID");
    assert_eq!(got.1[0]["message"], "Session expired or invalid");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn soap_login_success_and_fault() {
    let s = Sim::start().await;
    let envelope = |user: &str, pass: &str| {
        format!(
            r#"<?xml version="1.0" encoding="utf-8" ?><env:Envelope xmlns:xsd="http://www.w3.org/2001/XMLSchema"
            xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xmlns:env="http://schemas.xmlsoap.org/soap/envelope/"
            xmlns:urn="urn:partner.soap.sforce.com"><env:Body><urn:login><urn:username>{user}</urn:username>
            <urn:password>{pass}</urn:password></urn:login></env:Body></env:Envelope>"#
        )
    };
    let post = |body: String| {
        s.http
            .post(format!("{}/services/Soap/u/59.0", s.base))
            .header("Content-Type", "text/xml; charset=UTF-8")
            .header("SOAPAction", "login")
            .body(body)
            .send()
    };
    let r = post(envelope("admin@driftless.sim", "driftless"))
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/xml"));
    let xml = r.text().await.unwrap();
    let tag = |name: &str| -> String {
        let open = format!("<{name}>");
        let start = xml.find(&open).unwrap_or_else(|| panic!("{name} in {xml}")) + open.len();
        xml[start..start + xml[start..].find('<').unwrap()].to_string()
    };
    let org15 = &s.sim.info.org_id[..15];
    assert_eq!(
        tag("serverUrl"),
        format!("{}/services/Soap/u/59.0/{org15}", s.base)
    );
    assert_eq!(
        tag("metadataServerUrl"),
        format!("{}/services/Soap/m/59.0/{org15}", s.base)
    );
    assert_eq!(tag("organizationId"), s.sim.info.org_id);
    assert_eq!(tag("passwordExpired"), "false");
    assert_eq!(tag("sandbox"), "false");
    assert!(tag("userId").starts_with("005"));
    assert!(tag("sessionSecondsValid").parse::<u64>().unwrap() > 0);
    let session = tag("sessionId");
    let r = s
        .http
        .get(format!("{}{V}/limits", s.base))
        .bearer_auth(&session)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);

    // jsforce's form: the default namespace on an unprefixed <login>.
    let jsforce = r#"<?xml version="1.0" encoding="utf-8"?><se:Envelope xmlns:se="http://schemas.xmlsoap.org/soap/envelope/"><se:Header/><se:Body><login xmlns="urn:partner.soap.sforce.com"><username>admin@driftless.sim</username><password><![CDATA[driftless]]></password></login></se:Body></se:Envelope>"#;
    let r = post(jsforce.to_string()).await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(r.text().await.unwrap().contains("<sessionId>"));

    // SOAP logout (jsforce's logout of a SOAP session) ends the session.
    let logout = format!(
        r#"<?xml version="1.0" encoding="utf-8"?><se:Envelope xmlns:se="http://schemas.xmlsoap.org/soap/envelope/"><se:Header><SessionHeader xmlns="urn:partner.soap.sforce.com"><sessionId>{session}</sessionId></SessionHeader></se:Header><se:Body><logout xmlns="urn:partner.soap.sforce.com"/></se:Body></se:Envelope>"#
    );
    let r = post(logout).await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(r.text().await.unwrap().contains("logoutResponse"));
    let r = s
        .http
        .get(format!("{}{V}/limits", s.base))
        .bearer_auth(&session)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);

    let r = post(envelope("admin@driftless.sim", "wrong"))
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::INTERNAL_SERVER_ERROR);
    let xml = r.text().await.unwrap();
    assert!(
        xml.contains("<faultcode>INVALID_LOGIN</faultcode>"),
        "{xml}"
    );
    assert!(
        xml.contains("<sf:exceptionCode>INVALID_LOGIN</sf:exceptionCode>"),
        "{xml}"
    );
    assert!(xml.contains("xmlns:sf=\"urn:fault.partner.soap.sforce.com\""));
    assert!(xml.contains("Invalid username, password, security token; or user locked out."));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn versions_describe_limits_and_headers() {
    let s = Sim::start().await;
    // The versions list needs no session.
    let r = s
        .http
        .get(format!("{}/services/data/", s.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let versions: Value = r.json().await.unwrap();
    let list = versions.as_array().unwrap();
    assert!(list
        .iter()
        .any(|v| v
            == &json!({"label": "Summer '14", "url": "/services/data/v31.0", "version": "31.0"})));
    assert!(list.iter().any(|v| v["version"] == "62.0"));

    let r = s.get(&format!("{V}/")).await;
    assert_eq!(
        r.headers()["content-type"],
        "application/json;charset=UTF-8"
    );
    let map: Value = r.json().await.unwrap();
    assert_eq!(map["query"], format!("{V}/query"));
    assert_eq!(map["sobjects"], format!("{V}/sobjects"));

    let r = s.get(&format!("{V}/sobjects")).await;
    let limit_info = r.headers()["sforce-limit-info"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        limit_info.starts_with("api-usage=") && limit_info.contains('/'),
        "{limit_info}"
    );
    let global: Value = r.json().await.unwrap();
    assert_eq!(global["encoding"], "UTF-8");
    assert_eq!(global["maxBatchSize"], 200);
    let account = global["sobjects"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["name"] == "Account")
        .unwrap();
    assert_eq!(account["keyPrefix"], "001");
    assert_eq!(
        account["urls"]["describe"],
        format!("{V}/sobjects/Account/describe")
    );

    let basic = s.get_json(&format!("{V}/sobjects/Account")).await;
    assert_eq!(basic["objectDescribe"]["name"], "Account");
    assert_eq!(basic["recentItems"], json!([]));
    let d = s
        .get_json("/services/data/v45.0/sobjects/Invoice__c/describe")
        .await;
    assert_eq!(d["name"], "Invoice__c");
    let fields = d["fields"].as_array().unwrap();
    let id = fields.iter().find(|f| f["name"] == "Id").unwrap();
    assert_eq!(id["type"], "id");
    assert!(fields
        .iter()
        .any(|f| f["name"] == "External_Id__c" && f["externalId"] == true));
    assert_eq!(
        d["urls"]["sobject"],
        "/services/data/v45.0/sobjects/Invoice__c"
    );

    for path in [
        format!("{V}/sobjects/Foo/describe"),
        format!("{V}/sobjects/Foo"),
        format!("{V}/nothing/here"),
        "/services/data/vBAD/sobjects".to_string(),
        "/services/data/62.0/sobjects".to_string(),
    ] {
        let got = status_json(s.get(&path).await).await;
        assert_eq!(
            got.1,
            json!([{"errorCode": "NOT_FOUND", "message": "The requested resource does not exist"}]),
            "{path}"
        );
        assert_eq!(got.0, StatusCode::NOT_FOUND);
    }

    for path in [format!("{V}/limits"), format!("{V}/limits/")] {
        let limits = s.get_json(&path).await;
        let api = &limits["DailyApiRequests"];
        assert!(api["Max"].as_u64().unwrap() > 0);
        assert!(api["Remaining"].as_u64().unwrap() < api["Max"].as_u64().unwrap());
        for key in [
            "DailyBulkApiBatches",
            "DailyBulkApiRequests",
            "DailyBulkV2QueryJobs",
            "DailyBulkV2QueryFileStorageMB",
            "DataStorageMB",
            "FileStorageMB",
        ] {
            assert!(
                limits[key]["Max"].is_u64() && limits[key]["Remaining"].is_u64(),
                "{key}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn query_paging_snapshot_and_count() {
    let s = Sim::start().await;
    let q = "SELECT Id, Name FROM Account ORDER BY Id";
    let first = s
        .req(Method::GET, &format!("{V}/query"))
        .query(&[("q", q)])
        .header("Sforce-Query-Options", "batchSize=200")
        .send()
        .await
        .unwrap();
    assert_eq!(first.status(), StatusCode::OK);
    let first: Value = first.json().await.unwrap();
    assert_eq!(first["totalSize"], 500);
    assert_eq!(first["done"], false);
    let records = first["records"].as_array().unwrap();
    assert_eq!(records.len(), 200);
    let rec0 = &records[0];
    let id0 = rec0["Id"].as_str().unwrap();
    assert_eq!(
        rec0["attributes"],
        json!({"type": "Account", "url": format!("{V}/sobjects/Account/{id0}")})
    );
    let next = first["nextRecordsUrl"].as_str().unwrap().to_string();
    let (prefix, offset) = next.rsplit_once('-').unwrap();
    assert_eq!(offset, "200");
    let locator = prefix.strip_prefix(&format!("{V}/query/")).unwrap();
    assert_eq!(locator.len(), 18);
    assert!(locator.starts_with("0r8"));

    // A change committed after the query ran does not show on its later pages.
    let mut seen: Vec<String> = records
        .iter()
        .map(|r| r["Id"].as_str().unwrap().to_string())
        .collect();
    let all = s.query("SELECT Id FROM Account ORDER BY Id").await;
    let last_id = all["records"][499]["Id"].as_str().unwrap().to_string();
    let (st, _) = s
        .send(
            Method::PATCH,
            &format!("{V}/sobjects/Account/{last_id}"),
            json!({"Name": "Changed later"}),
        )
        .await;
    assert_eq!(st, StatusCode::NO_CONTENT);
    let (st, _) = s
        .send(
            Method::POST,
            &format!("{V}/sobjects/Account/"),
            json!({"Name": "Born later"}),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED);

    let mut url = next.clone();
    let mut pages = 1;
    loop {
        let page = s.get_json(&url).await;
        pages += 1;
        assert_eq!(page["totalSize"], 500);
        for r in page["records"].as_array().unwrap() {
            seen.push(r["Id"].as_str().unwrap().to_string());
            assert_ne!(r["Name"], "Changed later");
        }
        match page["nextRecordsUrl"].as_str() {
            Some(n) => url = n.to_string(),
            None => {
                assert_eq!(page["done"], true);
                break;
            }
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(seen.len(), 500);
    assert_eq!(seen.iter().collect::<HashSet<_>>().len(), 500);
    assert!(seen.contains(&last_id));

    // The same locator continues under /queryAll/ too; unknown locators are refused.
    let again = s.get_json(&format!("{V}/queryAll/{locator}-400")).await;
    assert_eq!(again["records"].as_array().unwrap().len(), 100);
    let got = status_json(s.get(&format!("{V}/query/0r85g00000000ZZZZZ-200")).await).await;
    assert_sf_error(&got, 400, "INVALID_QUERY_LOCATOR");

    // The default page is 2,000 rows: everything fits, no locator.
    let one = s.query("SELECT Id FROM Account").await;
    assert_eq!(one["totalSize"], 501);
    assert_eq!(one["done"], true);
    assert!(one.get("nextRecordsUrl").is_none());

    let count = s.query("SELECT COUNT() FROM Account").await;
    assert_eq!(
        count,
        json!({"totalSize": 501, "done": true, "records": []})
    );

    // A raw '+' decodes to a space and is a syntax error, as on Salesforce.
    let raw = format!(
        "{}{V}/query?q=SELECT+Id+FROM+Account+WHERE+CreatedDate+>+2020-01-01T00:00:00+00:00",
        s.base
    );
    let got = status_json(s.get(&raw).await).await;
    assert_sf_error(&got, 400, "MALFORMED_QUERY");
    let got = status_json(s.get(&format!("{V}/query")).await).await;
    assert_sf_error(&got, 400, "MALFORMED_QUERY");

    // Parent fields nest under the relationship name, or are null.
    let acct = all["records"][0]["Id"].as_str().unwrap();
    let (_, c1) = s
        .send(
            Method::POST,
            &format!("{V}/sobjects/Contact"),
            json!({"LastName": "Linked", "AccountId": acct}),
        )
        .await;
    let (_, c2) = s
        .send(
            Method::POST,
            &format!("{V}/sobjects/Contact"),
            json!({"LastName": "Alone"}),
        )
        .await;
    let rows = s
        .query("SELECT Id, LastName, Account.Name FROM Contact ORDER BY LastName")
        .await;
    let recs = rows["records"].as_array().unwrap();
    assert_eq!(recs[0]["Id"], c2["id"]);
    assert_eq!(recs[0]["Account"], Value::Null);
    assert_eq!(recs[1]["Id"], c1["id"]);
    assert_eq!(recs[1]["Account"]["attributes"]["type"], "Account");
    assert_eq!(
        recs[1]["Account"]["attributes"]["url"],
        format!("{V}/sobjects/Account/{acct}")
    );
    assert!(recs[1]["Account"]["Name"].is_string());

    // The QUERY_TIMEOUT fault answers large queries with 400.
    let r = s
        .http
        .post(format!("{}/_sim/faults", s.base))
        .json(&json!({"query_timeout_above_rows": 100}))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());
    let r = s
        .req(Method::GET, &format!("{V}/query"))
        .query(&[("q", "SELECT Id FROM Account")])
        .send()
        .await
        .unwrap();
    let got = status_json(r).await;
    assert_sf_error(&got, 400, "QUERY_TIMEOUT");
    assert_eq!(
        s.query("SELECT Id FROM Account LIMIT 5").await["totalSize"],
        5
    );
    s.http
        .delete(format!("{}/_sim/faults", s.base))
        .send()
        .await
        .unwrap();

    let stats: Value = s
        .http
        .get(format!("{}/_sim/stats", s.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(stats["rest_queries"].as_u64().unwrap() >= 5);
    assert!(stats["records_served"].as_u64().unwrap() >= 1000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crud_and_upsert_status_codes() {
    let s = Sim::start().await;
    let (st, created) = s
        .send(
            Method::POST,
            &format!("{V}/sobjects/Account/"),
            json!({"attributes": {"type": "Account"}, "Name": "Acme", "NumberOfEmployees": 12}),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED);
    assert_eq!(created["success"], true);
    assert_eq!(created["errors"], json!([]));
    let id = created["id"].as_str().unwrap().to_string();
    assert_eq!(id.len(), 18);

    let got = s
        .send(
            Method::POST,
            &format!("{V}/sobjects/Account/"),
            json!({"Id": id, "Name": "x"}),
        )
        .await;
    assert_eq!(
        got.1,
        json!([{"message": "The Id field should not be specified in the sobject data.", "errorCode": "INVALID_FIELD"}])
    );
    assert_eq!(got.0, StatusCode::BAD_REQUEST);
    let got = s
        .send(
            Method::POST,
            &format!("{V}/sobjects/Account/"),
            json!({"Website": "x"}),
        )
        .await;
    assert_sf_error(&got, 400, "REQUIRED_FIELD_MISSING");
    let got = s
        .send(
            Method::POST,
            &format!("{V}/sobjects/Account/"),
            json!({"Name": "x", "Nope__c": 1}),
        )
        .await;
    assert_sf_error(&got, 400, "INVALID_FIELD");

    let rec = s.get_json(&format!("{V}/sobjects/Account/{id}")).await;
    assert_eq!(rec["Name"], "Acme");
    assert_eq!(
        rec["attributes"]["url"],
        format!("{V}/sobjects/Account/{id}")
    );
    assert!(rec["SystemModstamp"]
        .as_str()
        .unwrap()
        .ends_with(".000+0000"));
    let rec = s
        .get_json(&format!(
            "{V}/sobjects/Account/{}?fields=Name,NumberOfEmployees",
            &id[..15]
        ))
        .await;
    assert_eq!(rec.as_object().unwrap().len(), 3);
    assert_eq!(rec["NumberOfEmployees"], 12);

    let (st, body) = s
        .send(
            Method::PATCH,
            &format!("{V}/sobjects/Account/{id}"),
            json!({"Name": "Acme 2"}),
        )
        .await;
    assert_eq!((st, body), (StatusCode::NO_CONTENT, Value::Null));
    assert_eq!(
        s.get_json(&format!("{V}/sobjects/Account/{id}")).await["Name"],
        "Acme 2"
    );
    let r = s
        .req(Method::DELETE, &format!("{V}/sobjects/Account/{id}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_sf_error(
        &status_json(s.get(&format!("{V}/sobjects/Account/{id}")).await).await,
        404,
        "NOT_FOUND",
    );
    let got = s
        .send(
            Method::PATCH,
            &format!("{V}/sobjects/Account/{id}"),
            json!({"Name": "x"}),
        )
        .await;
    assert_eq!(got.0, StatusCode::NOT_FOUND);
    let missing = format!("001{}", &id[3..]).replace(&id[10..15], "zzzzz");
    assert_eq!(
        s.get(&format!("{V}/sobjects/Account/{}", &missing[..15]))
            .await
            .status(),
        StatusCode::NOT_FOUND
    );

    // Deleted records are visible to queryAll only.
    let soql = format!("SELECT Id, IsDeleted FROM Account WHERE Id = '{id}'");
    assert_eq!(s.query(&soql).await["totalSize"], 0);
    let r = s
        .req(Method::GET, &format!("{V}/queryAll"))
        .query(&[("q", &soql)])
        .send()
        .await
        .unwrap();
    let all: Value = r.json().await.unwrap();
    assert_eq!(all["totalSize"], 1);
    assert_eq!(all["records"][0]["IsDeleted"], true);

    // POST /sobjects/{obj}/Id is a create.
    let (st, _) = s
        .send(
            Method::POST,
            &format!("{V}/sobjects/Account/Id"),
            json!({"Name": "Via Id"}),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED);

    // Upsert: 201 created, 200 updated (v46+), 204 updated (older), 404 for a bad field.
    let path = format!("{V}/sobjects/Invoice__c/External_Id__c/EXT-1");
    let (st, body) = s
        .send(
            Method::PATCH,
            &path,
            json!({"Name": "INV-1", "Amount__c": 10}),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{body}");
    assert_eq!(body["created"], true);
    let inv = body["id"].as_str().unwrap().to_string();
    let (st, body) = s.send(Method::PATCH, &path, json!({"Amount__c": 20})).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(
        body,
        json!({"id": inv, "success": true, "errors": [], "created": false})
    );
    let (st, body) = s
        .send(
            Method::PATCH,
            "/services/data/v40.0/sobjects/Invoice__c/External_Id__c/EXT-1",
            json!({"Amount__c": 30}),
        )
        .await;
    assert_eq!((st, body), (StatusCode::NO_CONTENT, Value::Null));
    let rec = s.get_json(&format!("{V}/sobjects/Invoice__c/{inv}")).await;
    assert_eq!(rec["Amount__c"], 30.0);
    assert_eq!(rec["External_Id__c"], "EXT-1");
    let by_ext = s
        .get_json(&format!("{V}/sobjects/Invoice__c/External_Id__c/EXT-1"))
        .await;
    assert_eq!(by_ext["Id"], inv.as_str());
    let (st, body) = s
        .send(
            Method::PATCH,
            "/services/data/v40.0/sobjects/Invoice__c/External_Id__c/EXT-2",
            json!({"Name": "INV-2"}),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED);
    assert!(body.get("created").is_none());
    let got = s
        .send(
            Method::PATCH,
            &format!("{V}/sobjects/Invoice__c/Name/INV-1"),
            json!({"Amount__c": 1}),
        )
        .await;
    assert_eq!(
        got.1,
        json!([{"errorCode": "NOT_FOUND", "message": "The requested resource does not exist"}])
    );
    assert_eq!(got.0, StatusCode::NOT_FOUND);
    let got = s
        .send(
            Method::PATCH,
            &format!("{V}/sobjects/Invoice__c/Nope__c/1"),
            json!({"Amount__c": 1}),
        )
        .await;
    assert_eq!(got.0, StatusCode::NOT_FOUND);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn composite_collections_all_or_none() {
    let s = Sim::start().await;
    let before = s.query("SELECT COUNT() FROM Account").await["totalSize"].clone();
    let records = json!([
        {"attributes": {"type": "Account"}, "Name": "C1"},
        {"attributes": {"type": "Account"}, "Website": "no name"},
        {"attributes": {"type": "Account"}, "Name": "C3"},
    ]);
    let (st, res) = s
        .send(
            Method::POST,
            &format!("{V}/composite/sobjects"),
            json!({"allOrNone": true, "records": records}),
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    let res = res.as_array().unwrap().clone();
    assert_eq!(res.len(), 3);
    assert_eq!(res[1]["success"], false);
    assert_eq!(res[1]["errors"][0]["statusCode"], "REQUIRED_FIELD_MISSING");
    assert_eq!(res[1]["errors"][0]["fields"], json!(["Name"]));
    for i in [0, 2] {
        assert_eq!(res[i]["success"], false);
        assert_eq!(
            res[i]["errors"],
            json!([{"statusCode": "ALL_OR_NONE_OPERATION_ROLLED_BACK", "message": "Record rolled back because not all records were valid and the request was using AllOrNone header", "fields": []}])
        );
    }
    assert_eq!(
        s.query("SELECT COUNT() FROM Account").await["totalSize"],
        before
    );

    let (st, res) = s
        .send(
            Method::POST,
            &format!("{V}/composite/sobjects"),
            json!({"allOrNone": false, "records": records}),
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(res[0]["success"], true);
    assert_eq!(res[1]["success"], false);
    assert_eq!(res[2]["success"], true);
    let (a, c) = (
        res[0]["id"].as_str().unwrap().to_string(),
        res[2]["id"].as_str().unwrap().to_string(),
    );
    let stamps = s
        .query(&format!(
            "SELECT SystemModstamp FROM Account WHERE Id IN ('{a}','{c}')"
        ))
        .await;
    let recs = stamps["records"].as_array().unwrap();
    assert_eq!(recs.len(), 2);
    assert_eq!(
        recs[0]["SystemModstamp"], recs[1]["SystemModstamp"],
        "one transaction, one stamp"
    );

    // Retrieve several records at once, by GET or (jsforce) POST; unknown ids give null.
    let got = s
        .get_json(&format!(
            "{V}/composite/sobjects/Account?ids={a},{c},001000000000000AAA&fields=Id,Name"
        ))
        .await;
    assert_eq!(got[0]["Name"], "C1");
    assert_eq!(got[1]["Name"], "C3");
    assert_eq!(got[2], Value::Null);
    assert_eq!(got[0].as_object().unwrap().len(), 3);
    let (st, got) = s
        .send(
            Method::POST,
            &format!("{V}/composite/sobjects/Account"),
            json!({"ids": [a, c], "fields": ["Name"]}),
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(got[1]["Name"], "C3");

    // Update and delete collections.
    let (st, res) = s
        .send(
            Method::PATCH,
            &format!("{V}/composite/sobjects"),
            json!({"allOrNone": false, "records": [{"attributes": {"type": "Account"}, "id": a, "Name": "C1b"}, {"attributes": {"type": "Account"}, "Name": "no id"}]}),
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(res[0], json!({"id": a, "success": true, "errors": []}));
    assert_eq!(res[1]["success"], false);
    let r = s
        .req(
            Method::DELETE,
            &format!("{V}/composite/sobjects?ids={a},{c}&allOrNone=false"),
        )
        .send()
        .await
        .unwrap();
    let (st, res) = status_json(r).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(res[0]["success"], true);
    assert_eq!(res[1]["success"], true);
    assert_eq!(
        s.get(&format!("{V}/sobjects/Account/{a}")).await.status(),
        StatusCode::NOT_FOUND
    );

    // Upsert collection by external id says what it created.
    let (st, res) = s
        .send(
            Method::PATCH,
            &format!("{V}/composite/sobjects/Invoice__c/External_Id__c"),
            json!({"allOrNone": false, "records": [
                {"attributes": {"type": "Invoice__c"}, "External_Id__c": "U-1", "Name": "U1"},
                {"attributes": {"type": "Invoice__c"}, "External_Id__c": "U-2", "Name": "U2"}]}),
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(res[0]["created"], true);
    let (_, res) = s
        .send(
            Method::PATCH,
            &format!("{V}/composite/sobjects/Invoice__c/External_Id__c"),
            json!({"records": [{"attributes": {"type": "Invoice__c"}, "External_Id__c": "U-1", "Name": "U1b"}]}),
        )
        .await;
    assert_eq!(res[0]["created"], false);
    assert_eq!(res[0]["success"], true);

    let many: Vec<Value> = (0..201)
        .map(|i| json!({"attributes": {"type": "Account"}, "Name": format!("N{i}")}))
        .collect();
    let got = s
        .send(
            Method::POST,
            &format!("{V}/composite/sobjects"),
            json!({"records": many}),
        )
        .await;
    assert_sf_error(&got, 400, "EXCEEDED_ID_LIMIT");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn composite_batch_halts_on_error() {
    let s = Sim::start().await;
    let requests = json!([
        {"method": "GET", "url": "/services/data/v61.0/sobjects/Account/describe"},
        {"method": "GET", "url": "/services/data/v61.0/sobjects/Foo/describe"},
        {"method": "GET", "url": "v61.0/query?q=SELECT+COUNT()+FROM+Account"},
        {"method": "POST", "url": "v61.0/sobjects/Account", "richInput": {"Name": "From batch"}},
    ]);
    let (st, res) = s
        .send(
            Method::POST,
            &format!("{V}/composite/batch"),
            json!({"haltOnError": true, "batchRequests": requests}),
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(res["hasErrors"], true);
    let results = res["results"].as_array().unwrap();
    assert_eq!(results[0]["statusCode"], 200);
    assert_eq!(results[0]["result"]["name"], "Account");
    assert_eq!(results[1]["statusCode"], 404);
    assert_eq!(results[1]["result"][0]["errorCode"], "NOT_FOUND");
    for r in &results[2..] {
        assert_eq!(r["statusCode"], 412);
        assert_eq!(r["result"][0]["errorCode"], "BATCH_PROCESSING_HALTED");
    }

    let (_, res) = s
        .send(
            Method::POST,
            &format!("{V}/composite/batch"),
            json!({"haltOnError": false, "batchRequests": requests}),
        )
        .await;
    let results = res["results"].as_array().unwrap();
    assert_eq!(res["hasErrors"], true);
    assert_eq!(results[2]["statusCode"], 200);
    assert_eq!(results[2]["result"]["totalSize"], 500);
    assert_eq!(results[3]["statusCode"], 201);
    assert_eq!(results[3]["result"]["success"], true);

    let ok = json!([{"method": "GET", "url": "/services/data/v61.0/limits"}]);
    let (_, res) = s
        .send(
            Method::POST,
            &format!("{V}/composite/batch"),
            json!({"batchRequests": ok}),
        )
        .await;
    assert_eq!(res["hasErrors"], false);
    let too_many: Vec<Value> = (0..26)
        .map(|_| json!({"method": "GET", "url": "v61.0/limits"}))
        .collect();
    let got = s
        .send(
            Method::POST,
            &format!("{V}/composite/batch"),
            json!({"batchRequests": too_many}),
        )
        .await;
    assert_eq!(got.0, StatusCode::BAD_REQUEST);
}

fn iso(t: chrono::DateTime<chrono::Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%S+00:00").to_string()
}

fn parse_sf(s: &Value) -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::parse_from_str(s.as_str().unwrap(), "%Y-%m-%dT%H:%M:%S%.3f%z")
        .unwrap()
        .into()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn updated_deleted_and_open_transactions() {
    let s = Sim::start().await;
    let now = chrono::Utc::now();
    let start = iso(now - chrono::Duration::minutes(10));
    let end = iso(now + chrono::Duration::minutes(5));
    let updated = |start: String, end: String| {
        let s = &s;
        async move {
            let r = s
                .req(Method::GET, &format!("{V}/sobjects/Account/updated/"))
                .query(&[("start", start), ("end", end)])
                .send()
                .await
                .unwrap();
            status_json(r).await
        }
    };

    // A write whose transaction stays open: it is answered when it commits; until then the
    // record is invisible and latestDateCovered is held back to the transaction's start.
    let before_write = chrono::Utc::now();
    let pending = tokio::spawn(
        s.req(Method::POST, &format!("{V}/sobjects/Account"))
            .header("X-Sim-Commit-Delay-Ms", "3000")
            .json(&json!({"Name": "Slow"}))
            .send(),
    );
    wait_for("the write's open transaction", || s.open_transactions(1)).await;
    let (st, open) = updated(start.clone(), end.clone()).await;
    assert_eq!(st, StatusCode::OK, "{open}");
    let held = parse_sf(&open["latestDateCovered"]);
    assert!(
        held <= before_write + chrono::Duration::seconds(1),
        "{held}"
    );
    let q = s.query("SELECT Id FROM Account WHERE Name = 'Slow'").await;
    assert_eq!(q["totalSize"], 0);
    assert!(!pending.is_finished(), "answered before its commit");

    let (st, created) = status_json(pending.await.unwrap().unwrap()).await;
    assert_eq!(st, StatusCode::CREATED);
    let id = created["id"].as_str().unwrap().to_string();
    // Read-your-own-write: visible the moment the response arrives.
    assert_eq!(
        s.get(&format!("{V}/sobjects/Account/{id}")).await.status(),
        StatusCode::OK
    );
    assert!(!open["ids"]
        .as_array()
        .unwrap()
        .iter()
        .any(|i| i == id.as_str()));
    let committed_at = chrono::Utc::now();
    let rec = s.get_json(&format!("{V}/sobjects/Account/{id}")).await;
    let stamp = parse_sf(&rec["SystemModstamp"]);
    assert!(
        held <= stamp,
        "{held} should not pass the open transaction's start {stamp}"
    );
    assert!(
        stamp <= before_write + chrono::Duration::seconds(1),
        "stamped at its start: {stamp}"
    );
    assert!(
        committed_at - stamp >= chrono::Duration::seconds(2),
        "{committed_at} vs {stamp}"
    );
    let (_, after) = updated(start.clone(), end.clone()).await;
    assert!(after["ids"]
        .as_array()
        .unwrap()
        .iter()
        .any(|i| i == id.as_str()));
    assert!(parse_sf(&after["latestDateCovered"]) >= held);
    assert!(after["latestDateCovered"]
        .as_str()
        .unwrap()
        .ends_with(":00.000+0000"));

    // A literal '+' (decoded as a space) is read as the offset sign.
    let raw = format!(
        "{}{V}/sobjects/Account/updated/?start={start}&end={end}",
        s.base
    );
    let (st, _) = status_json(s.get(&raw).await).await;
    assert_eq!(st, StatusCode::OK);

    // Deletes show in deleted/, with deletedDate = SystemModstamp.
    let r = s
        .req(Method::DELETE, &format!("{V}/sobjects/Account/{id}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let r = s
        .req(Method::GET, &format!("{V}/sobjects/Account/deleted/"))
        .query(&[("start", &start), ("end", &end)])
        .send()
        .await
        .unwrap();
    let (st, del) = status_json(r).await;
    assert_eq!(st, StatusCode::OK, "{del}");
    let entry = del["deletedRecords"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["id"] == id.as_str())
        .expect("deleted record listed")
        .clone();
    assert!(entry["deletedDate"]
        .as_str()
        .unwrap()
        .ends_with(".000+0000"));
    assert!(del["earliestDateAvailable"].is_string());
    assert!(del["latestDateCovered"].is_string());
    let (_, upd) = updated(start.clone(), end.clone()).await;
    assert!(!upd["ids"]
        .as_array()
        .unwrap()
        .iter()
        .any(|i| i == id.as_str()));

    // Bad windows.
    assert_sf_error(
        &updated(end.clone(), start.clone()).await,
        400,
        "INVALID_REPLICATION_DATE",
    );
    assert_sf_error(
        &updated(start.clone(), start.clone()).await,
        400,
        "INVALID_REPLICATION_DATE",
    );
    let long_ago = iso(now - chrono::Duration::days(40));
    assert_sf_error(
        &updated(long_ago, end.clone()).await,
        400,
        "INVALID_REPLICATION_DATE",
    );
    let r = s
        .req(Method::GET, &format!("{V}/sobjects/Account/deleted/"))
        .query(&[
            ("start", iso(now - chrono::Duration::days(20))),
            ("end", end.clone()),
        ])
        .send()
        .await
        .unwrap();
    assert_sf_error(&status_json(r).await, 400, "INVALID_REPLICATION_DATE");
}

/// More than one match for an external id is HTTP 300. The standard schema's only External ID
/// field is unique, so this runs the REST routes in-process over an org whose
/// `Account.AccountNumber` is a non-unique External ID.
#[actix_web::test]
async fn ambiguous_external_id_is_300() {
    use actix_web::{middleware::from_fn, test, web, App};
    use sfsim::http::{api_guard, AppState};
    use sfsim::value::Value as SimValue;

    let mut schema = sfsim::schema::Schema::standard();
    let acct = schema.object_index("Account").unwrap();
    let number = schema.objects[acct].field_index("AccountNumber").unwrap();
    schema.objects[acct].fields[number].external_id = true;
    let name = schema.objects[acct].field_index("Name").unwrap();
    let org = sfsim::store::Org::new(schema);
    let mut txn = org.begin();
    for n in ["One", "Two"] {
        org.create(
            &mut txn,
            acct,
            vec![(name, SimValue::text(n)), (number, SimValue::text("A-1"))],
        )
        .unwrap();
    }
    org.create(
        &mut txn,
        acct,
        vec![
            (name, SimValue::text("Three")),
            (number, SimValue::text("A-3")),
        ],
    )
    .unwrap();
    org.commit(txn);

    let config = sfsim::SimConfig::default();
    let sessions = sfsim::sessions::Sessions::new(&org.org_id, 1);
    let info = sfsim::SimInfo {
        instance_url: "http://localhost".into(),
        login_url: "http://localhost".into(),
        org_id: org.org_id.clone(),
        username: "admin@driftless.sim".into(),
        password: "driftless".into(),
        client_id: "driftless-sim".into(),
        client_secret: "driftless-sim-secret".into(),
        refresh_token: sessions.refresh_token.clone(),
        ca_cert: None,
    };
    let cdc = sfsim::cdc::ChangeLog::new(
        &org.schema,
        &[],
        &org.admin_user_id,
        std::time::Duration::from_secs(60),
    );
    let state = web::Data::new(AppState {
        org,
        info,
        config,
        stats: Default::default(),
        faults: parking_lot::RwLock::new(Default::default()),
        sessions,
        rest: Default::default(),
        bulk_v1: Default::default(),
        bulk_v2: Default::default(),
        workload: Default::default(),
        cdc,
    });
    let token = state.sessions.issue();
    let app = test::init_service(
        App::new()
            .app_data(state.clone())
            .wrap(from_fn(api_guard))
            .configure(sfsim::rest::routes),
    )
    .await;
    let call = |method: actix_web::http::Method, path: &str, body: Option<Value>| {
        let mut req = test::TestRequest::default()
            .method(method)
            .uri(path)
            .insert_header(("Authorization", format!("Bearer {token}")));
        if let Some(b) = body {
            req = req.set_json(b);
        }
        req.to_request()
    };
    use actix_web::http::Method as M;

    let resp = test::call_service(
        &app,
        call(
            M::PATCH,
            &format!("{V}/sobjects/Account/AccountNumber/A-1"),
            Some(json!({"Phone": "1"})),
        ),
    )
    .await;
    assert_eq!(resp.status().as_u16(), 300);
    let urls: Value = test::read_body_json(resp).await;
    let urls = urls.as_array().unwrap();
    assert_eq!(urls.len(), 2);
    assert!(urls[0]
        .as_str()
        .unwrap()
        .starts_with(&format!("{V}/sobjects/Account/001")));
    let resp = test::call_service(
        &app,
        call(
            M::GET,
            &format!("{V}/sobjects/Account/AccountNumber/A-1"),
            None,
        ),
    )
    .await;
    assert_eq!(resp.status().as_u16(), 300);

    let resp = test::call_service(
        &app,
        call(
            M::PATCH,
            &format!("{V}/sobjects/Account/AccountNumber/A-3"),
            Some(json!({"Phone": "3"})),
        ),
    )
    .await;
    assert_eq!(resp.status().as_u16(), 200);
    let resp = test::call_service(
        &app,
        call(
            M::PATCH,
            &format!("{V}/sobjects/Account/AccountNumber/A-4"),
            Some(json!({"Name": "Four"})),
        ),
    )
    .await;
    assert_eq!(resp.status().as_u16(), 201);
    let body: Value = test::read_body_json(resp).await;
    assert_eq!(body["created"], true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cursor_store_is_bounded() {
    let s = Sim::start().await;
    let open = |s: &Sim| {
        let req = s
            .req(Method::GET, &format!("{V}/query"))
            .query(&[("q", "SELECT Id FROM Account")])
            .header("Sforce-Query-Options", "batchSize=200");
        async move {
            let page: Value = req.send().await.unwrap().json().await.unwrap();
            page["nextRecordsUrl"].as_str().unwrap().to_string()
        }
    };
    let first = open(&s).await;
    assert_eq!(s.get(&first).await.status(), StatusCode::OK);
    for _ in 0..200 {
        open(&s).await;
    }
    // The oldest of more than 200 cursors is gone; the newest still pages.
    let got = status_json(s.get(&first).await).await;
    assert_sf_error(&got, 400, "INVALID_QUERY_LOCATOR");
    assert_eq!(got.1[0]["message"], "invalid query locator");
    let last = open(&s).await;
    assert_eq!(s.get(&last).await.status(), StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_wait_for_record_locks() {
    let s = Sim::start().await;
    let (_, created) = s
        .send(
            Method::POST,
            &format!("{V}/sobjects/Account"),
            json!({"Name": "Locked"}),
        )
        .await;
    let id = created["id"].as_str().unwrap().to_string();
    // The first update keeps its transaction (and the record's lock) open for 1.5 s.
    let first = tokio::spawn(
        s.req(Method::PATCH, &format!("{V}/sobjects/Account/{id}"))
            .header("X-Sim-Commit-Delay-Ms", "1500")
            .json(&json!({"Name": "First"}))
            .send(),
    );
    wait_for("the first update's open transaction", || {
        s.open_transactions(1)
    })
    .await;
    let began = Instant::now();
    let (st, body) = s
        .send(
            Method::PATCH,
            &format!("{V}/sobjects/Account/{id}"),
            json!({"Name": "Second"}),
        )
        .await;
    assert_eq!(st, StatusCode::NO_CONTENT, "{body}");
    assert!(
        began.elapsed() >= Duration::from_millis(500),
        "waited for the lock: {:?}",
        began.elapsed()
    );
    assert_eq!(
        first.await.unwrap().unwrap().status(),
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        s.get_json(&format!("{V}/sobjects/Account/{id}")).await["Name"],
        "Second"
    );

    let third = tokio::spawn(
        s.req(Method::PATCH, &format!("{V}/sobjects/Account/{id}"))
            .header("X-Sim-Commit-Delay-Ms", "1000")
            .json(&json!({"Name": "Third"}))
            .send(),
    );
    wait_for("the third update's open transaction", || {
        s.open_transactions(1)
    })
    .await;
    let (st, res) = s
        .send(
            Method::PATCH,
            &format!("{V}/composite/sobjects"),
            json!({"allOrNone": true, "records": [{"attributes": {"type": "Account"}, "id": id, "Name": "Fourth"}]}),
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(res[0]["success"], true, "{res}");
    assert_eq!(
        third.await.unwrap().unwrap().status(),
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        s.get_json(&format!("{V}/sobjects/Account/{id}")).await["Name"],
        "Fourth"
    );
}

/// REST, composite collection and composite batch writes whose commit is delayed answer only once
/// committed; queries running meanwhile are served (not queued behind them) and see nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delayed_writes_answer_at_commit_while_queries_run() {
    let s = Sim::start().await;
    let delay = Duration::from_millis(1500);
    let writes: Vec<(&str, Method, String, Value)> = vec![
        (
            "sobject create",
            Method::POST,
            format!("{V}/sobjects/Account"),
            json!({"Name": "AtCommit 1"}),
        ),
        (
            "composite collection",
            Method::POST,
            format!("{V}/composite/sobjects"),
            json!({"allOrNone": true, "records": [{"attributes": {"type": "Account"}, "Name": "AtCommit 2"}]}),
        ),
        (
            "composite batch",
            Method::POST,
            format!("{V}/composite/batch"),
            json!({"batchRequests": [{"method": "POST", "url": "v62.0/sobjects/Account", "richInput": {"Name": "AtCommit 3"}}]}),
        ),
    ];
    for (n, (what, method, path, body)) in writes.into_iter().enumerate() {
        let name = format!("AtCommit {}", n + 1);
        let soql = format!("SELECT COUNT() FROM Account WHERE Name = '{name}'");
        let sent = Instant::now();
        let pending = tokio::spawn(
            s.req(method, &path)
                .header("X-Sim-Commit-Delay-Ms", delay.as_millis().to_string())
                .json(&body)
                .send(),
        );
        let mut served_meanwhile = 0;
        while !pending.is_finished() {
            let started = sent.elapsed();
            let seen = s.query(&soql).await["totalSize"].as_u64().unwrap();
            // A query that began well before the commit cannot see it.
            if started < delay - Duration::from_millis(300) {
                assert_eq!(seen, 0, "{what}: visible before its commit");
                served_meanwhile += 1;
            }
        }
        let resp = pending.await.unwrap().unwrap();
        assert!(resp.status().is_success(), "{what}: {}", resp.status());
        assert!(
            sent.elapsed() >= delay,
            "{what} answered after {:?}, before its commit",
            sent.elapsed()
        );
        assert!(
            served_meanwhile > 0,
            "{what}: no query was served while it waited"
        );
        assert_eq!(
            s.query(&soql).await["totalSize"],
            1,
            "{what}: its own write, read after the response"
        );
    }
}
