//! Mints an account SAS for the queue service from the account key, for tools and tests that need a SAS
//! (a SAS URL for a bare HTTP load tool, the SAS credential test against Azurite). The backend itself signs
//! with Shared Key when it has the key (see [`super::shared_key`]), because a SAS expires.
//!
//! The string signed is Azure's account SAS form for service versions 2020-12-06 and later:
//! <https://learn.microsoft.com/rest/api/storageservices/create-account-sas>.

use azure_core::credentials::Secret as CoreSecret;
use azure_core::time::{Duration, OffsetDateTime};

use super::credential::Secret;

/// An account SAS token (without the leading `?`) for the queue service, valid for `lifetime` from now,
/// allowing every queue operation the suite uses.
///
/// # Errors
/// When the key is not base64.
pub fn account_sas(
    account: &str,
    key: &Secret,
    lifetime: std::time::Duration,
) -> Result<Secret, String> {
    let version = "2021-12-02";
    let permissions = "rwdlacup";
    let expiry = OffsetDateTime::now_utc() + Duration::seconds(lifetime.as_secs() as i64);
    let expiry = format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        expiry.year(),
        u8::from(expiry.month()),
        expiry.day(),
        expiry.hour(),
        expiry.minute(),
        expiry.second()
    );
    let to_sign =
        format!("{account}\n{permissions}\nq\nsco\n\n{expiry}\n\nhttps,http\n{version}\n\n");
    let sig = azure_core::hmac::hmac_sha256(&to_sign, &CoreSecret::new(key.expose().to_string()))
        .map_err(|_| "the account key is not base64".to_string())?;
    let enc = |s: &str| {
        s.bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                    (b as char).to_string()
                }
                _ => format!("%{b:02X}"),
            })
            .collect::<String>()
    };
    Ok(Secret::new(format!(
        "sv={version}&ss=q&srt=sco&sp={permissions}&se={}&spr=https,http&sig={}",
        enc(&expiry),
        enc(&sig)
    )))
}
