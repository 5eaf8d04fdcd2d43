//! The OpenAPI document (utoipa), covering every route this crate serves.

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::routes;

#[derive(Debug, OpenApi)]
#[openapi(
    info(
        title = "jobpulse",
        description = "Where your long-running jobs are: progress read model, media and job APIs."
    ),
    paths(
        routes::progress::video_progress,
        routes::progress::job_progress,
        routes::batch::batch_get,
        routes::batch::batch_post,
        routes::stream::stream,
        routes::media::upload,
        routes::media::list,
        routes::media::detail,
        routes::media::retry,
        routes::media::delete,
        routes::direct_upload::init,
        routes::direct_upload::refresh_url,
        routes::direct_upload::complete,
        routes::direct_upload::multipart_init,
        routes::direct_upload::multipart_presign,
        routes::direct_upload::multipart_complete,
        routes::direct_upload::multipart_abort,
        routes::direct_upload::receive,
        routes::jobs::submit,
        routes::jobs::list,
        routes::jobs::detail,
        routes::jobs::result,
        routes::jobs::cancel,
        routes::jobs::file,
        routes::playback::media,
        routes::playback::stats::stats,
        routes::enroll::enroll,
        routes::files::lectures,
        routes::webhooks::create,
        routes::webhooks::list,
        routes::webhooks::remove,
        routes::webhooks::deliveries,
        routes::ingest::ingest,
        routes::ops::healthz,
        routes::ops::readyz,
        routes::ops::metrics,
        routes::ops::openapi,
    ),
    // The UNKNOWN bodies are named so typed clients (clients/js) can tell the two shapes apart.
    components(schemas(crate::render::VideoUnknown, crate::render::JobUnknown<'static>)),
    modifiers(&BearerAuth),
    tags(
        (name = "progress", description = "Drop-in progress polling (docs/contract.md §2–3)"),
        (name = "media", description = "Video upload and management (database-backed)"),
        (name = "upload", description = "Direct uploads the way the front end starts a video (docs/contract.md §7): init, PUT to storage, complete; multipart"),
        (name = "jobs", description = "AI/tool jobs (database-backed)"),
        (name = "webhooks", description = "Completion webhooks: endpoints and their deliveries (staff; docs/contract.md Webhooks)"),
        (name = "ingest", description = "Fenced writes from workers written in other languages (worker tokens)"),
        (name = "ops", description = "Health, readiness, metrics"),
    )
)]
pub struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
        );
    }
}

/// The document as JSON text.
pub fn document() -> String {
    ApiDoc::openapi()
        .to_pretty_json()
        .unwrap_or_else(|_| "{}".to_owned())
}
