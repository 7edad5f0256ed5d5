//! Shared Key authorization: the official crate authenticates with Entra ID or a SAS only, so requests made
//! with the account key are signed here, by a per-try pipeline policy (per try, because `x-ms-date` and the
//! signature must be fresh on every retry).
//!
//! Why a policy rather than an account SAS made from the key: a SAS expires, and a consumer may run for
//! weeks; signing each request costs one HMAC-SHA256 (about a microsecond) and never expires. The signed
//! string is the one Azure documents for Shared Key (service version 2009-09-19 and later):
//! <https://learn.microsoft.com/rest/api/storageservices/authorize-with-shared-key>.

use std::sync::Arc;

use async_trait::async_trait;
use azure_core::credentials::Secret as CoreSecret;
use azure_core::http::policies::{Policy, PolicyResult};
use azure_core::http::{Context, Request};
use azure_core::time::{OffsetDateTime, to_rfc7231};

/// Signs every request with the account key.
pub(crate) struct SharedKeyPolicy {
    account: String,
    key: CoreSecret,
}

impl std::fmt::Debug for SharedKeyPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedKeyPolicy")
            .field("account", &self.account)
            .finish_non_exhaustive()
    }
}

impl SharedKeyPolicy {
    pub(crate) fn new(account: &str, key: &super::credential::Secret) -> Arc<SharedKeyPolicy> {
        Arc::new(SharedKeyPolicy {
            account: account.to_string(),
            key: CoreSecret::new(key.expose().to_string()),
        })
    }
}

#[async_trait]
impl Policy for SharedKeyPolicy {
    async fn send(
        &self,
        ctx: &Context,
        request: &mut Request,
        next: &[Arc<dyn Policy>],
    ) -> PolicyResult {
        request.insert_header("x-ms-date", to_rfc7231(&OffsetDateTime::now_utc()));
        let to_sign = string_to_sign(&self.account, request);
        let signature = azure_core::hmac::hmac_sha256(&to_sign, &self.key)?;
        request.insert_header(
            "authorization",
            format!("SharedKey {}:{signature}", self.account),
        );
        next[0].send(ctx, request, &next[1..]).await
    }
}

/// The standard headers signed, in the order Azure signs them, less `Content-Length` (from the body) and
/// `Date` (signed empty: `x-ms-date` is always set and takes precedence), which go between the 4th and 5th.
const SIGNED: [&str; 9] = [
    "content-encoding",
    "content-language",
    "content-md5",
    "content-type",
    "if-modified-since",
    "if-match",
    "if-none-match",
    "if-unmodified-since",
    "range",
];

/// The canonical string Azure recomputes on its side.
///
/// It reads the request's headers in one pass: looking each of the ten signed headers up by name would
/// build (and, with `RUST_BACKTRACE` set, unwind for) an SDK error for every one that is absent, which was
/// most of our CPU per message. Header names are lowercase in the SDK's `Headers`.
fn string_to_sign(account: &str, request: &Request) -> String {
    let mut standard = [""; SIGNED.len()];
    let mut ms: Vec<(&str, &str)> = Vec::with_capacity(8);
    for (k, v) in request.headers().iter() {
        let name = k.as_str();
        if name.starts_with("x-ms-") {
            ms.push((name, v.as_str().trim()));
        } else if let Some(i) = SIGNED.iter().position(|s| *s == name) {
            standard[i] = v.as_str();
        }
    }
    ms.sort_unstable();
    // Content-Length is signed empty when zero (service versions from 2015-02-21 on).
    let length = match request.body().len() {
        Some(0) | None => String::new(),
        Some(n) => n.to_string(),
    };
    let mut s = String::with_capacity(256);
    s.push_str(request.method().as_ref());
    s.push('\n');
    for part in [
        standard[0],
        standard[1],
        &length,
        standard[2],
        standard[3],
        "",
    ] {
        s.push_str(part);
        s.push('\n');
    }
    for part in &standard[4..9] {
        s.push_str(part);
        s.push('\n');
    }
    for (k, v) in ms {
        s.push_str(k);
        s.push(':');
        s.push_str(v);
        s.push('\n');
    }
    let url = request.url();
    s.push('/');
    s.push_str(account);
    s.push_str(url.path());
    let mut params: Vec<(String, String)> = url
        .query_pairs()
        .map(|(k, v)| (k.to_ascii_lowercase(), v.into_owned()))
        .collect();
    params.sort();
    let mut i = 0;
    while i < params.len() {
        let name = &params[i].0;
        s.push('\n');
        s.push_str(name);
        s.push(':');
        let mut first = true;
        while i < params.len() && &params[i].0 == name {
            if !first {
                s.push(',');
            }
            s.push_str(&params[i].1);
            first = false;
            i += 1;
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use azure_core::http::{Method, Url};

    #[test]
    fn string_to_sign_is_the_documented_canonical_form() {
        let url = Url::parse(
            "http://127.0.0.1:10001/devstoreaccount1/jobs/messages?visibilitytimeout=30&NumOfMessages=32",
        )
        .unwrap();
        let mut req = Request::new(url, Method::Get);
        req.insert_header("x-ms-version", "2025-11-05");
        req.insert_header("x-ms-date", "Tue, 25 Nov 2026 10:00:00 GMT");
        req.insert_header("user-agent", "ignored");
        let s = string_to_sign("devstoreaccount1", &req);
        assert_eq!(
            s,
            "GET\n\n\n\n\n\n\n\n\n\n\n\nx-ms-date:Tue, 25 Nov 2026 10:00:00 GMT\nx-ms-version:2025-11-05\n\
             /devstoreaccount1/devstoreaccount1/jobs/messages\nnumofmessages:32\nvisibilitytimeout:30"
        );
    }
}
