//! The console's session: a cookie naming the manager, signed with a key derived from the
//! admin token (nothing is stored server-side), and a CSRF token derived from the session.

use super::super::AppState;
use crate::notification::{hmac_hex, hmac_verify};
use crate::ports::{LeadStore, Notifier, Queue};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Redirect, Response};
use chrono::{DateTime, Utc};

pub(super) const COOKIE: &str = "lr_console";
/// How long a login lasts.
pub(super) const HOURS: i64 = 12;

/// A logged-in manager.
pub struct Session {
    /// Their name, which becomes `by` on what they do.
    pub name: String,
    /// The token every form of this session carries.
    pub csrf: String,
}

fn key(admin_token: &str) -> String {
    hmac_hex(admin_token.as_bytes(), b"leadrouter console sessions")
}

/// The cookie's value for `name`, valid until `exp`: `exp.hex(name).sig`.
pub(super) fn issue(admin_token: &str, name: &str, exp: DateTime<Utc>) -> String {
    let body = format!("{}.{}", exp.timestamp(), hex::encode(name.as_bytes()));
    format!("{body}.{}", hmac_hex(key(admin_token).as_bytes(), body.as_bytes()))
}

/// The session a cookie value holds, if it was issued here and has not expired.
pub(super) fn verify(admin_token: &str, value: &str, now: DateTime<Utc>) -> Option<Session> {
    let (body, sig) = value.rsplit_once('.')?;
    let k = key(admin_token);
    if admin_token.is_empty() || !hmac_verify(k.as_bytes(), body.as_bytes(), sig) {
        return None;
    }
    let (exp, name) = body.split_once('.')?;
    if exp.parse::<i64>().ok()? < now.timestamp() {
        return None;
    }
    let name = String::from_utf8(hex::decode(name).ok()?).ok()?;
    let csrf = hmac_hex(k.as_bytes(), format!("csrf.{sig}").as_bytes())[..32].to_owned();
    Some(Session { name, csrf })
}

pub(super) fn cookie_of(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(k, _)| *k == COOKIE)
        .map(|(_, v)| v.to_owned())
}

/// The `Set-Cookie` header: HttpOnly, SameSite=Strict, Secure when the console is served over
/// https; an empty value with `Max-Age=0` logs out.
pub(super) fn set_cookie(value: &str, secure: bool, max_age: i64) -> String {
    format!(
        "{COOKIE}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age}{}",
        if secure { "; Secure" } else { "" }
    )
}

impl Session {
    /// Whether a form's token is this session's.
    pub fn check(&self, token: &str) -> bool {
        crate::sources::secret_matches(token, &self.csrf)
    }
}

impl<S: LeadStore, Q: Queue, N: Notifier> FromRequestParts<AppState<S, Q, N>> for Session {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, p: &AppState<S, Q, N>) -> Result<Session, Response> {
        let now = p.clock.now();
        cookie_of(&parts.headers)
            .and_then(|v| verify(p.secrets.admin_token.expose(), &v, now))
            .ok_or_else(|| Redirect::to("/login").into_response())
    }
}

/// A form posted by a logged-in manager, carrying this session's CSRF token (`csrf`) beside
/// its own fields; anything else is refused (403) before the handler runs.
pub struct Checked<F>(pub Session, pub F);

#[derive(serde::Deserialize)]
struct WithToken<F> {
    #[serde(default)]
    csrf: String,
    #[serde(flatten)]
    form: F,
}

impl<S, Q, N, F> FromRequest<AppState<S, Q, N>> for Checked<F>
where
    S: LeadStore,
    Q: Queue,
    N: Notifier,
    F: serde::de::DeserializeOwned + Send,
{
    type Rejection = Response;

    async fn from_request(req: Request, p: &AppState<S, Q, N>) -> Result<Checked<F>, Response> {
        let (mut parts, body) = req.into_parts();
        let session = Session::from_request_parts(&mut parts, p).await?;
        let axum::Form(f) = axum::Form::<WithToken<F>>::from_request(Request::from_parts(parts, body), p)
            .await
            .map_err(IntoResponse::into_response)?;
        if !session.check(&f.csrf) {
            return Err((
                axum::http::StatusCode::FORBIDDEN,
                "this form has no valid CSRF token; reload the page and try again",
            )
                .into_response());
        }
        Ok(Checked(session, f.form))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_is_what_was_issued_until_it_expires() {
        let now = Utc::now();
        let v = issue("tok", "Maria <Chen>", now + chrono::Duration::hours(1));
        let s = verify("tok", &v, now).unwrap();
        assert_eq!(s.name, "Maria <Chen>");
        assert!(s.check(&s.csrf) && !s.check("x"));
        assert!(verify("other", &v, now).is_none(), "another token's session");
        assert!(verify("tok", &v, now + chrono::Duration::hours(2)).is_none(), "expired");
        let forged = v.replacen(&v[..10], &(now + chrono::Duration::days(9)).timestamp().to_string(), 1);
        assert!(verify("tok", &forged, now).is_none(), "a changed expiry");
        let mut h = HeaderMap::new();
        h.insert(header::COOKIE, format!("a=b; {COOKIE}={v}").parse().unwrap());
        assert_eq!(cookie_of(&h).as_deref(), Some(v.as_str()));
    }
}
