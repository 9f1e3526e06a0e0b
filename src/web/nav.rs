//! What the site navigation (`templates/web/base.html`) shows beyond the
//! owner's own pages: an "Admin" link, for admins only.
//!
//! [`scope`] wraps every request in a flag that starts false;
//! `owner::signed_in` sets it from the signed-in mailbox's admin mark
//! (`boxtrap mailbox set X --admin on`), and the page template reads it
//! with [`admin`] while rendering, in the same request. So no template
//! struct needs a field for it, and a page nobody signed in to never shows
//! the link.

use axum::extract::Request;
use axum::middleware::Next;
use axum::response::Response;
use std::cell::Cell;

tokio::task_local! {
    static ADMIN: Cell<bool>;
}

/// Whether this request's signed-in owner is an admin; false outside a
/// request or before sign-in is known.
pub fn admin() -> bool {
    ADMIN.try_with(Cell::get).unwrap_or(false)
}

/// Records the signed-in owner's admin mark for this request's pages.
pub(super) fn set_admin(admin: bool) {
    let _ = ADMIN.try_with(|c| c.set(admin));
}

/// Middleware: runs the request with the flag, false until set.
pub(super) async fn scope(req: Request, next: Next) -> Response {
    ADMIN.scope(Cell::new(false), next.run(req)).await
}
