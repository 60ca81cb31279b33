//! Trusted publishing's parsers: a bearer credential read as a JWT (before it is
//! verified), the trust configurations `npm trust` posts, and matching claims
//! against them. Input: a credential, 0xFF, a trust body, 0xFF, claims.

#![no_main]

use gatehouse_npm::trust::{PublishedBy, PublisherKind, TrustRule, jwt_parts};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

fuzz_target!(|data: &[u8]| {
    let mut parts = data.splitn(3, |b| *b == 0xFF);
    let (credential, body, claims) = (parts.next(), parts.next(), parts.next());
    if let Some(Ok(text)) = credential.map(std::str::from_utf8) {
        let _ = jwt_parts(text);
    }
    let Some(Ok(body)) = body.map(serde_json::from_slice::<Value>) else {
        return;
    };
    let Ok(rules) = TrustRule::parse_npm_body(&body) else {
        return;
    };
    let claims = claims
        .and_then(|c| serde_json::from_slice::<Value>(c).ok())
        .and_then(|c| c.as_object().cloned())
        .unwrap_or_default();
    for rule in rules {
        // What is listed reads back as the same configuration.
        let listed = rule.to_npm("1");
        assert_eq!(TrustRule::parse_npm(&listed).as_ref(), Ok(&rule), "{listed}");
        if rule.check(&claims).is_ok() {
            let by = PublishedBy::from_claims(rule.kind, "1", &claims);
            assert_eq!(by.kind, rule.kind);
            assert!(by.npm_user()["trustedPublisher"]["id"].is_string());
        }
    }
    let _ = PublishedBy::from_claims(PublisherKind::Github, "1", &claims);
});
