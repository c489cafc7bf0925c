//! OAuth2 token endpoint, SOAP partner login and the identity URL (reference section 1).
//!
//! Credentials are checked strictly: the password must be exactly [`PASSWORD`]. Salesforce would
//! accept the password with the user's security token appended; the simulated user has no
//! security token, so clients pass an empty one (simple-salesforce's `security_token=''`).
//!
//! The JWT bearer grant checks only the assertion's structure and claims (`iss` = client id,
//! `sub` = username, `aud` present, `exp` in the future, as a number or a numeric string). The
//! signature cannot be verified: the simulator has no connected-app certificate to check it with.

use crate::config::{CLIENT_ID, CLIENT_SECRET, PASSWORD, USERNAME};
use crate::http::respond::{xml_escape, JSON_UTF8};
use crate::http::AppState;
use crate::sessions::token_from_headers;
use actix_web::http::header::HeaderMap;
use actix_web::{web, HttpRequest, HttpResponse};
use base64::Engine;
use hmac::{Hmac, Mac};
use quick_xml::events::Event;
use serde_json::json;
use std::collections::HashMap;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/services/oauth2/token", web::post().to(token))
        .route("/services/oauth2/revoke", web::post().to(revoke))
        .route("/services/oauth2/revoke", web::get().to(revoke))
        .route("/services/Soap/u/{version}", web::post().to(soap_login))
        .route(
            "/services/Soap/u/{version}/{org}",
            web::post().to(soap_login),
        )
        .route("/id/{org}/{user}", web::get().to(identity));
}

const JWT_BEARER: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";

fn oauth_error(error: &str, description: &str) -> HttpResponse {
    HttpResponse::BadRequest()
        .content_type(JSON_UTF8)
        .body(json!({"error": error, "error_description": description}).to_string())
}

fn auth_failure() -> HttpResponse {
    oauth_error("invalid_grant", "authentication failure")
}

fn bad_client_id() -> HttpResponse {
    oauth_error("invalid_client_id", "client identifier invalid")
}

fn bad_client_secret() -> HttpResponse {
    oauth_error("invalid_client", "invalid client credentials")
}

/// Form parameters from the body, with query-string parameters as a fallback: some clients put
/// the grant in the URL of the POST.
fn form_params(req: &HttpRequest, body: &[u8]) -> HashMap<String, String> {
    let mut params: HashMap<String, String> =
        serde_urlencoded::from_str::<Vec<(String, String)>>(req.query_string())
            .unwrap_or_default()
            .into_iter()
            .collect();
    if let Ok(pairs) = serde_urlencoded::from_bytes::<Vec<(String, String)>>(body) {
        params.extend(pairs);
    }
    params
}

/// `Authorization: Basic base64(client_id:client_secret)`, as simple-salesforce sends it for the
/// client_credentials grant.
fn basic_credentials(headers: &HeaderMap) -> Option<(String, String)> {
    let v = headers.get("authorization")?.to_str().ok()?.trim();
    let encoded = v
        .strip_prefix("Basic ")
        .or_else(|| v.strip_prefix("basic "))?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (id, secret) = text.split_once(':')?;
    Some((id.to_string(), secret.to_string()))
}

async fn token(req: HttpRequest, body: web::Bytes, state: web::Data<AppState>) -> HttpResponse {
    let p = form_params(&req, &body);
    let get = |k: &str| p.get(k).map(String::as_str).filter(|s| !s.is_empty());
    let Some(grant) = get("grant_type") else {
        return oauth_error("invalid_request", "grant type is missing");
    };
    match grant {
        "password" => {
            if get("client_id") != Some(CLIENT_ID) {
                return bad_client_id();
            }
            if get("client_secret") != Some(CLIENT_SECRET) {
                return bad_client_secret();
            }
            if !valid_user(get("username")) || get("password") != Some(PASSWORD) {
                return auth_failure();
            }
        }
        "client_credentials" => {
            let (id, secret) = match (get("client_id"), basic_credentials(req.headers())) {
                (Some(id), _) => (
                    id.to_string(),
                    get("client_secret").unwrap_or_default().to_string(),
                ),
                (None, Some(basic)) => basic,
                (None, None) => return bad_client_id(),
            };
            if id != CLIENT_ID {
                return bad_client_id();
            }
            if secret != CLIENT_SECRET {
                return bad_client_secret();
            }
        }
        "refresh_token" => {
            let (id, secret) = match (get("client_id"), basic_credentials(req.headers())) {
                (Some(id), _) => (
                    Some(id.to_string()),
                    get("client_secret").map(str::to_string),
                ),
                (None, Some((id, secret))) => (Some(id), Some(secret)),
                (None, None) => (None, None),
            };
            if id.as_deref() != Some(CLIENT_ID) {
                return bad_client_id();
            }
            // The secret is optional for the refresh grant, but a wrong one is still refused.
            if secret.as_deref().is_some_and(|s| s != CLIENT_SECRET) {
                return bad_client_secret();
            }
            if get("refresh_token") != Some(state.sessions.refresh_token.as_str()) {
                return oauth_error("invalid_grant", "expired access/refresh token");
            }
        }
        JWT_BEARER => {
            if let Err((error, description)) = check_jwt(get("assertion").unwrap_or_default()) {
                return oauth_error(error, description);
            }
        }
        _ => return oauth_error("unsupported_grant_type", "grant type not supported"),
    }
    let scope = if grant == "refresh_token" {
        "api refresh_token"
    } else {
        "api"
    };
    success(&state, scope)
}

fn valid_user(username: Option<&str>) -> bool {
    // Salesforce usernames compare case-insensitively.
    username.is_some_and(|u| u.eq_ignore_ascii_case(USERNAME))
}

fn identity_url(state: &AppState) -> String {
    format!(
        "{}/id/{}/{}",
        state.info.login_url, state.org.org_id, state.org.admin_user_id
    )
}

fn success(state: &AppState, scope: &str) -> HttpResponse {
    let access_token = state.sessions.issue();
    let id = identity_url(state);
    let issued_at = chrono::Utc::now().timestamp_millis().to_string();
    let mut mac =
        Hmac::<sha2::Sha256>::new_from_slice(CLIENT_SECRET.as_bytes()).expect("hmac takes any key");
    mac.update(id.as_bytes());
    mac.update(issued_at.as_bytes());
    let signature = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
    HttpResponse::Ok().content_type(JSON_UTF8).body(
        json!({
            "access_token": access_token,
            "instance_url": state.info.instance_url,
            "id": id,
            "token_type": "Bearer",
            "issued_at": issued_at,
            "signature": signature,
            "scope": scope,
        })
        .to_string(),
    )
}

/// Checks a JWT bearer assertion's shape and claims; see the module comment for what is not
/// checked. Error texts are those Salesforce gives for each failure.
fn check_jwt(assertion: &str) -> Result<(), (&'static str, &'static str)> {
    let invalid = || ("invalid_grant", "invalid assertion");
    let parts: Vec<&str> = assertion.split('.').collect();
    if parts.len() != 3 || parts.iter().any(|p| p.is_empty()) {
        return Err(invalid());
    }
    let decode = |s: &str| -> Option<serde_json::Value> {
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(s.trim_end_matches('='))
            .ok()?;
        serde_json::from_slice(&bytes).ok()
    };
    let (Some(header), Some(claims)) = (decode(parts[0]), decode(parts[1])) else {
        return Err(invalid());
    };
    if !header.get("alg").is_some_and(|a| a.is_string()) {
        return Err(invalid());
    }
    if claims.get("iss").and_then(|v| v.as_str()) != Some(CLIENT_ID) {
        return Err(("invalid_client_id", "client identifier invalid"));
    }
    if !claims
        .get("aud")
        .is_some_and(|a| a.as_str().is_some_and(|s| !s.is_empty()) || a.is_array())
    {
        return Err(("invalid_grant", "audience is invalid"));
    }
    if !valid_user(claims.get("sub").and_then(|v| v.as_str())) {
        return Err(("invalid_grant", "user hasn't approved this consumer"));
    }
    // simple-salesforce sends exp as a string of epoch seconds.
    let exp = match claims.get("exp") {
        Some(serde_json::Value::Number(n)) => n.as_f64(),
        Some(serde_json::Value::String(s)) => s.trim().parse::<f64>().ok(),
        _ => None,
    };
    match exp {
        Some(exp) if exp > chrono::Utc::now().timestamp() as f64 => Ok(()),
        Some(_) => Err(("invalid_grant", "expired authorization code")),
        None => Err(invalid()),
    }
}

/// Revokes an access token. The simulator's one refresh token stays valid for its whole run
/// (SPEC.md section 2), so revoking it is acknowledged without effect.
async fn revoke(req: HttpRequest, body: web::Bytes, state: web::Data<AppState>) -> HttpResponse {
    let p = form_params(&req, &body);
    let token = p.get("token").map(String::as_str).unwrap_or_default();
    if token == state.sessions.refresh_token || state.sessions.revoke(token) {
        HttpResponse::Ok().finish()
    } else {
        oauth_error("unsupported_token_type", "this token type is not supported")
    }
}

/// The identity service: who the session's user is, and where the org's APIs live.
async fn identity(
    req: HttpRequest,
    path: web::Path<(String, String)>,
    state: web::Data<AppState>,
) -> HttpResponse {
    let valid = token_from_headers(req.headers())
        .is_some_and(|t| state.sessions.is_valid(&t, state.session_ttl()));
    if !valid {
        return HttpResponse::Forbidden()
            .content_type("text/plain;charset=UTF-8")
            .body("Bad_OAuth_Token");
    }
    let (org, user) = path.into_inner();
    let same = |given: &str, ours: &str| crate::ids::normalize(given).is_some_and(|g| g == ours);
    if !same(&org, &state.org.org_id) || !same(&user, &state.org.admin_user_id) {
        return HttpResponse::NotFound()
            .content_type("text/plain;charset=UTF-8")
            .body("Bad_Id");
    }
    let base = &state.info.instance_url;
    let org15 = &state.org.org_id[..15];
    let user_id = &state.org.admin_user_id;
    let body = json!({
        "id": identity_url(&state),
        "asserted_user": true,
        "user_id": user_id,
        "organization_id": state.org.org_id,
        "username": USERNAME,
        "nick_name": "admin",
        "display_name": "Sim Admin",
        "email": USERNAME,
        "email_verified": true,
        "first_name": "Sim",
        "last_name": "Admin",
        "timezone": "GMT",
        "photos": {},
        "addr_street": null, "addr_city": null, "addr_state": null, "addr_country": null, "addr_zip": null,
        "mobile_phone": null,
        "mobile_phone_verified": false,
        "is_lightning_login_user": false,
        "status": {"created_date": null, "body": null},
        "urls": {
            "enterprise": format!("{base}/services/Soap/c/{{version}}/{org15}"),
            "metadata": format!("{base}/services/Soap/m/{{version}}/{org15}"),
            "partner": format!("{base}/services/Soap/u/{{version}}/{org15}"),
            "rest": format!("{base}/services/data/v{{version}}/"),
            "sobjects": format!("{base}/services/data/v{{version}}/sobjects/"),
            "search": format!("{base}/services/data/v{{version}}/search/"),
            "query": format!("{base}/services/data/v{{version}}/query/"),
            "recent": format!("{base}/services/data/v{{version}}/recent/"),
            "tooling_soap": format!("{base}/services/Soap/T/{{version}}/{org15}"),
            "tooling_rest": format!("{base}/services/data/v{{version}}/tooling/"),
            "profile": format!("{base}/{user_id}"),
            "custom_domain": base,
        },
        "active": true,
        "user_type": "STANDARD",
        "language": "en_US",
        "locale": "en_US",
        "utcOffset": 0,
        "last_modified_date": crate::value::format_rest_datetime(0),
        "is_app_installed": true,
    });
    HttpResponse::Ok()
        .content_type(JSON_UTF8)
        .body(body.to_string())
}

/// The session of a SOAP `logout` call (from its `SessionHeader`); None when the body is not a
/// logout. jsforce's `logout()` of a SOAP session sends one to the same endpoint as login.
fn parse_soap_logout(body: &[u8]) -> Option<String> {
    let mut reader = quick_xml::Reader::from_reader(body);
    let mut buf = Vec::new();
    let (mut is_logout, mut in_session, mut session) = (false, false, String::new());
    loop {
        match reader.read_event_into(&mut buf).ok()? {
            Event::Start(e) => match e.local_name().as_ref() {
                b"logout" => is_logout = true,
                b"sessionId" => in_session = true,
                _ => {}
            },
            Event::Empty(e) if e.local_name().as_ref() == b"logout" => is_logout = true,
            Event::Text(t) if in_session => session.push_str(&t.unescape().ok()?),
            Event::End(e) if e.local_name().as_ref() == b"sessionId" => in_session = false,
            Event::Eof => break,
            _ => {}
        }
        buf.clear();
    }
    is_logout.then_some(session)
}

/// The `<username>` and `<password>` of a SOAP `login` call, whatever namespace prefix the client
/// gives them (`n1:username`, `urn:username`).
fn parse_soap_login(body: &[u8]) -> Option<(String, String)> {
    let mut reader = quick_xml::Reader::from_reader(body);
    let mut buf = Vec::new();
    let mut in_login = false;
    let mut current: Option<&'static str> = None;
    let (mut username, mut password) = (None::<String>, None::<String>);
    loop {
        match reader.read_event_into(&mut buf).ok()? {
            Event::Start(e) => {
                let name = e.local_name();
                match name.as_ref() {
                    b"login" => in_login = true,
                    b"username" if in_login => current = Some("username"),
                    b"password" if in_login => current = Some("password"),
                    _ => {}
                }
                if current.is_some() {
                    let slot = if current == Some("username") {
                        &mut username
                    } else {
                        &mut password
                    };
                    slot.get_or_insert_with(String::new);
                }
            }
            Event::Text(t) => {
                if let Some(which) = current {
                    let text = t.unescape().ok()?.into_owned();
                    let slot = if which == "username" {
                        &mut username
                    } else {
                        &mut password
                    };
                    slot.get_or_insert_with(String::new).push_str(&text);
                }
            }
            Event::CData(t) => {
                if let Some(which) = current {
                    let text = String::from_utf8(t.into_inner().into_owned()).ok()?;
                    let slot = if which == "username" {
                        &mut username
                    } else {
                        &mut password
                    };
                    slot.get_or_insert_with(String::new).push_str(&text);
                }
            }
            Event::End(e) => match e.local_name().as_ref() {
                b"username" | b"password" => current = None,
                b"login" => in_login = false,
                _ => {}
            },
            Event::Eof => break,
            _ => {}
        }
        buf.clear();
    }
    Some((username?, password.unwrap_or_default()))
}

const SOAP_XML: &str = "text/xml;charset=UTF-8";

fn soap_fault(code: &str, exception: &str, message: &str) -> HttpResponse {
    let (code, exception, message) = (xml_escape(code), xml_escape(exception), xml_escape(message));
    HttpResponse::InternalServerError().content_type(SOAP_XML).body(format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?><soapenv:Envelope \
         xmlns:soapenv=\"http://schemas.xmlsoap.org/soap/envelope/\" xmlns:sf=\"urn:fault.partner.soap.sforce.com\" \
         xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\"><soapenv:Body><soapenv:Fault>\
         <faultcode>{code}</faultcode><faultstring>{exception}: {message}</faultstring><detail>\
         <sf:LoginFault xsi:type=\"sf:LoginFault\"><sf:exceptionCode>{exception}</sf:exceptionCode>\
         <sf:exceptionMessage>{message}</sf:exceptionMessage></sf:LoginFault></detail></soapenv:Fault>\
         </soapenv:Body></soapenv:Envelope>"
    ))
}

async fn soap_login(
    req: HttpRequest,
    body: web::Bytes,
    state: web::Data<AppState>,
) -> HttpResponse {
    let version = req
        .match_info()
        .get("version")
        .unwrap_or_default()
        .to_string();
    if let Some(session) = parse_soap_logout(&body) {
        state.sessions.revoke(session.trim());
        return HttpResponse::Ok().content_type(SOAP_XML).body(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?><soapenv:Envelope \
             xmlns:soapenv=\"http://schemas.xmlsoap.org/soap/envelope/\" xmlns=\"urn:partner.soap.sforce.com\">\
             <soapenv:Body><logoutResponse/></soapenv:Body></soapenv:Envelope>",
        );
    }
    let Some((username, password)) = parse_soap_login(&body) else {
        return soap_fault(
            "INVALID_LOGIN",
            "INVALID_LOGIN",
            "Invalid username, password, security token; or user locked out.",
        );
    };
    if !valid_user(Some(&username)) || password != PASSWORD {
        return soap_fault(
            "INVALID_LOGIN",
            "INVALID_LOGIN",
            "Invalid username, password, security token; or user locked out.",
        );
    }
    let session = state.sessions.issue();
    let base = &state.info.instance_url;
    let org_id = &state.org.org_id;
    let org15 = &org_id[..15];
    let user_id = &state.org.admin_user_id;
    let seconds = state.session_ttl().map_or(7200, |d| d.as_secs());
    let version = xml_escape(&version);
    let user = xml_escape(USERNAME);
    HttpResponse::Ok().content_type(SOAP_XML).body(format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?><soapenv:Envelope \
         xmlns:soapenv=\"http://schemas.xmlsoap.org/soap/envelope/\" xmlns=\"urn:partner.soap.sforce.com\" \
         xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\"><soapenv:Body><loginResponse><result>\
         <metadataServerUrl>{base}/services/Soap/m/{version}/{org15}</metadataServerUrl>\
         <passwordExpired>false</passwordExpired><sandbox>false</sandbox>\
         <serverUrl>{base}/services/Soap/u/{version}/{org15}</serverUrl>\
         <sessionId>{session}</sessionId><userId>{user_id}</userId><userInfo>\
         <accessibilityMode>false</accessibilityMode><chatterExternal>false</chatterExternal>\
         <currencySymbol>$</currencySymbol><orgAttachmentFileSizeLimit>5242880</orgAttachmentFileSizeLimit>\
         <orgDefaultCurrencyIsoCode>USD</orgDefaultCurrencyIsoCode>\
         <orgDefaultCurrencyLocale>en_US</orgDefaultCurrencyLocale>\
         <orgDisallowHtmlAttachments>false</orgDisallowHtmlAttachments>\
         <orgHasPersonAccounts>false</orgHasPersonAccounts><organizationId>{org_id}</organizationId>\
         <organizationMultiCurrency>false</organizationMultiCurrency>\
         <organizationName>Driftless Simulated Org</organizationName>\
         <profileId>00e5g0000000001AAA</profileId><roleId xsi:nil=\"true\"/>\
         <sessionSecondsValid>{seconds}</sessionSecondsValid>\
         <userDefaultCurrencyIsoCode xsi:nil=\"true\"/><userEmail>{user}</userEmail>\
         <userFullName>Sim Admin</userFullName><userId>{user_id}</userId><userLanguage>en_US</userLanguage>\
         <userLocale>en_US</userLocale><userName>{user}</userName><userTimeZone>GMT</userTimeZone>\
         <userType>Standard</userType><userUiSkin>Theme3</userUiSkin></userInfo>\
         </result></loginResponse></soapenv:Body></soapenv:Envelope>"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn soap_login_tolerates_prefixes() {
        let body = br#"<?xml version="1.0"?><env:Envelope xmlns:env="http://schemas.xmlsoap.org/soap/envelope/"
            xmlns:n1="urn:partner.soap.sforce.com"><env:Body><n1:login><n1:username>a@b.c</n1:username>
            <n1:password>p&amp;w</n1:password></n1:login></env:Body></env:Envelope>"#;
        assert_eq!(parse_soap_login(body), Some(("a@b.c".into(), "p&w".into())));
        assert_eq!(parse_soap_login(b"<nothing/>"), None);
    }
}
