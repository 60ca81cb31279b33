//! The web app's stylesheet and script, compiled into the binary. Pages link them
//! with `?v=VERSION` (a hash of their bytes), so they can be cached for good.

use std::sync::LazyLock;

use axum::extract::Path;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

const APP_CSS: &[u8] = include_bytes!("../../../assets/app.css");
const APP_JS: &[u8] = include_bytes!("../../../assets/app.js");

/// Changes whenever an asset does.
pub static VERSION: LazyLock<String> = LazyLock::new(|| {
    use sha2::{Digest as _, Sha256};
    let digest = Sha256::new().chain_update(APP_CSS).chain_update(APP_JS).finalize();
    hex::encode(&digest[..6])
});

/// `GET /-/ui/assets/{file}`
pub async fn serve(Path(file): Path<String>) -> Response {
    let (body, content_type) = match file.as_str() {
        "app.css" => (APP_CSS, "text/css; charset=utf-8"),
        "app.js" => (APP_JS, "text/javascript; charset=utf-8"),
        _ => return (StatusCode::NOT_FOUND, "no such asset").into_response(),
    };
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "public, max-age=31536000, immutable"),
        ],
        body,
    )
        .into_response()
}
