//! READMEs as safe HTML: Markdown (GFM) rendered by comrak, then sanitised by ammonia,
//! so a package's README cannot run script, attach event handlers, link to
//! `javascript:` or load remote images (which would tell a third party who reads it).
//! Rendered once per packument change and kept, keyed by the document's ETag.

use std::sync::Arc;

use moka::future::Cache;

/// READMEs longer than this are cut before rendering (npmjs caps them at 64 KiB).
pub const MAX_README_BYTES: usize = 256 * 1024;

/// Rendered READMEs, by the ETag of the document they came from.
pub struct Readmes {
    cache: Cache<String, Arc<str>>,
}

impl Readmes {
    pub fn new() -> Self {
        Readmes {
            cache: Cache::builder()
                .max_capacity(32 * 1024 * 1024)
                .weigher(|key: &String, html: &Arc<str>| u32::try_from(key.len() + html.len()).unwrap_or(u32::MAX))
                .build(),
        }
    }

    /// The safe HTML of `markdown`, rendered off the runtime the first time.
    pub async fn html(&self, etag: &str, markdown: String) -> Arc<str> {
        self.cache
            .get_with(etag.to_owned(), async move {
                tokio::task::spawn_blocking(move || Arc::<str>::from(render(&markdown)))
                    .await
                    .unwrap_or_else(|_| Arc::from(""))
            })
            .await
    }
}

impl Default for Readmes {
    fn default() -> Self {
        Self::new()
    }
}

/// Markdown to sanitised HTML.
pub fn render(markdown: &str) -> String {
    let mut end = markdown.len().min(MAX_README_BYTES);
    while !markdown.is_char_boundary(end) {
        end -= 1;
    }
    let mut options = comrak::Options::default();
    options.extension.table = true;
    options.extension.strikethrough = true;
    options.extension.tasklist = true;
    options.extension.autolink = true;
    options.extension.footnotes = true;
    // Raw HTML is let through here only because ammonia removes what is unsafe next.
    options.render.r#unsafe = true;
    let html = comrak::markdown_to_html(&markdown[..end], &options);
    ammonia::Builder::default()
        .add_tags(["input", "section"])
        .add_tag_attributes("input", ["type", "checked", "disabled"])
        .link_rel(Some("nofollow noopener noreferrer"))
        .id_prefix(Some("user-content-"))
        // Links into this server's own pages would be relative to the wrong place.
        .url_relative(ammonia::UrlRelative::Deny)
        .attribute_filter(|element, attribute, value| match (element, attribute) {
            // Remote images are not loaded: the alt text stands in for them.
            ("img", "src") if !value.starts_with("data:image/") => None,
            ("input", "type") if value != "checkbox" => None,
            _ => Some(value.into()),
        })
        .clean(&html)
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::render;

    #[test]
    fn script_handlers_and_javascript_links_are_removed() {
        let html = render(
            "# Title\n\n<script>alert(1)</script>\n\n<img src=x onerror=\"alert(2)\">\n\n\
             [click](javascript:alert(3))\n\n<a href=\"javascript:alert(4)\">a</a>\n\n\
             <div onmouseover=\"alert(5)\">hover</div>\n\n<iframe src=\"https://evil.example\"></iframe>\n",
        );
        for bad in ["<script", "onerror", "javascript:", "onmouseover", "<iframe", "alert("] {
            assert!(!html.contains(bad), "{bad} survived in {html}");
        }
        assert!(html.contains("<h1"), "{html}");
        assert!(html.contains("hover"), "{html}");
    }

    #[test]
    fn remote_images_keep_only_their_alt_text() {
        let html = render("![build status](https://ci.example.com/badge.svg)\n");
        assert!(!html.contains("ci.example.com"), "{html}");
        assert!(html.contains("alt=\"build status\""), "{html}");
    }

    #[test]
    fn gfm_tables_and_safe_links_stay() {
        let html = render("| a | b |\n|---|---|\n| 1 | 2 |\n\n<https://example.com>\n");
        assert!(html.contains("<table>"), "{html}");
        assert!(html.contains("href=\"https://example.com\""), "{html}");
        assert!(html.contains("rel=\"nofollow noopener noreferrer\""), "{html}");
    }

    #[test]
    fn long_readmes_are_cut_on_a_character_boundary() {
        let text = "é".repeat(super::MAX_README_BYTES);
        assert!(render(&text).len() < super::MAX_README_BYTES * 2);
    }
}
